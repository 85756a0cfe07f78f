//! Release codes: what lets a person release isolation (or stop the agent)
//! offline, without letting an attacker with a shell do it.
//!
//! A code is HMAC-SHA256(per-host secret, "vigie:<purpose>:<hour>") cut to 8
//! digits; it is valid for the current and the previous UTC hour. The secret
//! lives in the agent's state directory (root only) and on the manager,
//! which shows the code to the admin; `vigie agent release-code` prints it
//! from a copy of the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What a code authorises: a release code cannot stop the agent and the other
/// way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Release,
    Stop,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Release => "release",
            Purpose::Stop => "stop",
        }
    }
}

/// Hours since the epoch, UTC.
pub fn current_hour() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(3600)
}

/// The code for one hour.
pub fn code_for(secret: &[u8], purpose: Purpose, hour: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("vigie:{}:{hour}", purpose.label()).as_bytes());
    let tag = mac.finalize().into_bytes();
    let n = u32::from_be_bytes([tag[0] & 0x7f, tag[1], tag[2], tag[3]]);
    format!("{:08}", n % 100_000_000)
}

/// The code valid now.
pub fn current_code(secret: &[u8], purpose: Purpose) -> String {
    code_for(secret, purpose, current_hour())
}

/// Whether `code` is valid for this hour or the previous one. Compared in
/// constant time; spaces and dashes a person may type are ignored.
pub fn verify(secret: &[u8], purpose: Purpose, code: &str) -> bool {
    verify_at(secret, purpose, code, current_hour())
}

pub fn verify_at(secret: &[u8], purpose: Purpose, code: &str, hour: i64) -> bool {
    let typed: String = code.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let mut ok = subtle::Choice::from(0u8);
    for h in [hour, hour - 1] {
        let expected = code_for(secret, purpose, h);
        // Lengths differ only for malformed input; ct_eq then is false.
        ok |= expected.as_bytes().ct_eq(typed.as_bytes());
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_time_limited_and_purpose_bound() {
        let s = b"0123456789abcdef0123456789abcdef";
        let h = 500_000;
        let c = code_for(s, Purpose::Release, h);
        assert_eq!(c.len(), 8);
        assert!(verify_at(s, Purpose::Release, &c, h));
        assert!(verify_at(s, Purpose::Release, &c, h + 1));
        assert!(!verify_at(s, Purpose::Release, &c, h + 2));
        assert!(!verify_at(s, Purpose::Stop, &c, h));
        assert!(!verify_at(
            b"another secret of 32 bytes......",
            Purpose::Release,
            &c,
            h
        ));
        assert!(!verify_at(s, Purpose::Release, "", h));
        let spaced = format!("{}-{}", &c[..4], &c[4..]);
        assert!(verify_at(s, Purpose::Release, &spaced, h));
    }
}

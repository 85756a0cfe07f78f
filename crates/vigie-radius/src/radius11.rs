//! RADIUS/1.1 (RFC 9765): the RadSec profile negotiated by ALPN
//! ("radius/1.1") in which the shared secret and MD5 are gone.
//!
//! On the wire the header keeps its size, but the Identifier octet is
//! reserved (zero), the first 4 octets of the old Authenticator are the
//! Token that matches a response to its request, and the other 12 are
//! reserved (zero). User-Password travels as is (TLS protects it), and
//! Message-Authenticator and Original-Packet-Code are never sent and are
//! discarded when received. TLS 1.3 is required.
//!
//! [`Radius11`] is the server's setting (allow, require, forbid), [`decode`]
//! and [`encode`] the packet codec; the connection handling is in
//! [`crate::radsec`]. Like [`crate::packet`], the decoder never panics on any
//! input (property-tested in `tests/codec11.rs`).

use crate::packet::{Attribute, DecodeError, EncodeError, Packet, attr};

/// ALPN names (RFC 9765 §3.1): historic RADIUS/TLS, and RADIUS/1.1.
pub const ALPN_1_0: &[u8] = b"radius/1.0";
pub const ALPN_1_1: &[u8] = b"radius/1.1";

/// Original-Packet-Code (RFC 7930 §4): Extended-Type 241.4.
const EXTENDED_TYPE_1: u8 = 241;
const ORIGINAL_PACKET_CODE: u8 = 4;

/// Protocol-Error (RFC 7930) and Error-Cause "Unsupported Extension" (RFC 5176).
pub const PROTOCOL_ERROR: u8 = 52;
pub const ERROR_CAUSE: u8 = 101;
pub const UNSUPPORTED_EXTENSION: u32 = 406;

/// Whether RadSec clients may use RADIUS/1.1 (RFC 9765 §3.3, the "Version"
/// setting: "1.0, 1.1", "1.1", "1.0").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Radius11 {
    /// Offer "radius/1.1" and "radius/1.0": RADIUS/1.1 when the client
    /// offers it, historic RADIUS/TLS otherwise (the RFC's default).
    #[default]
    Allow,
    /// Only RADIUS/1.1: a client without ALPN is closed, one offering only
    /// "radius/1.0" gets the no_application_protocol alert.
    Require,
    /// Only historic RADIUS/TLS: "radius/1.0" is offered, a client offering
    /// only "radius/1.1" gets the no_application_protocol alert.
    Forbid,
}

impl Radius11 {
    /// The ALPN protocols the server offers, most preferred first (rustls
    /// picks the first of ours that the client also offered).
    pub fn alpn_protocols(self) -> Vec<Vec<u8>> {
        match self {
            Radius11::Allow => vec![ALPN_1_1.to_vec(), ALPN_1_0.to_vec()],
            Radius11::Require => vec![ALPN_1_1.to_vec()],
            Radius11::Forbid => vec![ALPN_1_0.to_vec()],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Radius11::Allow => "allow",
            Radius11::Require => "require",
            Radius11::Forbid => "forbid",
        }
    }
}

impl std::fmt::Display for Radius11 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Radius11 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Radius11::Allow),
            "require" => Ok(Radius11::Require),
            "forbid" => Ok(Radius11::Forbid),
            other => Err(format!(
                "unknown RADIUS/1.1 setting {other:?} (allow, require or forbid)"
            )),
        }
    }
}

/// A RADIUS/1.1 packet's Token.
pub type Token = [u8; 4];

/// The Token of a packet decoded by [`decode`] (or [`Packet::decode`]).
pub fn token(p: &Packet) -> Token {
    [
        p.authenticator[0],
        p.authenticator[1],
        p.authenticator[2],
        p.authenticator[3],
    ]
}

/// Attributes RADIUS/1.1 never carries (RFC 9765 §5.2, §5.4).
fn forbidden(a: &Attribute) -> bool {
    a.typ == attr::MESSAGE_AUTHENTICATOR
        || (a.typ == EXTENDED_TYPE_1 && a.value.first() == Some(&ORIGINAL_PACKET_CODE))
}

/// Decode a RADIUS/1.1 packet: the same layout checks as [`Packet::decode`];
/// Reserved-1 and Reserved-2 are ignored (zeroed in the result, so only the
/// Token remains), and Message-Authenticator / Original-Packet-Code are
/// discarded.
pub fn decode(buf: &[u8]) -> Result<Packet, DecodeError> {
    let mut p = Packet::decode(buf)?;
    p.identifier = 0;
    p.authenticator[4..].fill(0);
    p.attributes.retain(|a| !forbidden(a));
    Ok(p)
}

/// Encode a RADIUS/1.1 packet with `token`: Reserved fields zero, no
/// Message-Authenticator or Original-Packet-Code (removed if present).
pub fn encode(mut p: Packet, token: Token) -> Result<Vec<u8>, EncodeError> {
    p.identifier = 0;
    p.authenticator = [0; 16];
    p.authenticator[..4].copy_from_slice(&token);
    p.attributes.retain(|a| !forbidden(a));
    p.encode()
}

/// The User-Password of a RADIUS/1.1 request: the value as sent (no MD5
/// hiding, no padding), 1 to 128 octets (RFC 9765 §5.1.1); `None` otherwise.
pub fn user_password(value: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    (1..=128)
        .contains(&value.len())
        .then(|| zeroize::Zeroizing::new(value.to_vec()))
}

/// The Protocol-Error a server MAY send inside the tunnel before closing a
/// connection that did not negotiate the RADIUS/1.1 it requires (RFC 9765
/// §3.4.1): authenticator all zeros, a Reply-Message and Error-Cause 406.
pub fn alpn_required_error() -> Vec<u8> {
    let mut p = Packet::new(PROTOCOL_ERROR, 0, [0; 16]);
    p.push(
        attr::REPLY_MESSAGE,
        b"This server requires RADIUS/1.1 (ALPN radius/1.1)".to_vec(),
    );
    p.push(ERROR_CAUSE, UNSUPPORTED_EXTENSION.to_be_bytes().to_vec());
    p.encode().expect("a fixed packet of 80 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::code;

    #[test]
    fn token_round_trip_and_reserved_fields() {
        let mut p = Packet::new(code::ACCESS_ACCEPT, 77, [9; 16]);
        p.push(attr::MESSAGE_AUTHENTICATOR, vec![1; 16]);
        p.push(EXTENDED_TYPE_1, vec![ORIGINAL_PACKET_CODE, 0, 0, 0, 1]);
        p.push(EXTENDED_TYPE_1, vec![5, 1]);
        p.push(attr::REPLY_MESSAGE, b"ok".to_vec());
        let buf = encode(p, [1, 2, 3, 4]).unwrap();
        assert_eq!(buf[1], 0, "Reserved-1 is zero");
        assert_eq!(&buf[4..8], &[1, 2, 3, 4]);
        assert_eq!(&buf[8..20], &[0; 12], "Reserved-2 is zero");
        let back = decode(&buf).unwrap();
        assert_eq!(token(&back), [1, 2, 3, 4]);
        let types: Vec<u8> = back.attributes.iter().map(|a| a.typ).collect();
        assert_eq!(types, vec![EXTENDED_TYPE_1, attr::REPLY_MESSAGE]);
    }

    #[test]
    fn reserved_fields_ignored_on_receipt() {
        let mut raw = Packet::new(code::ACCESS_REQUEST, 0, [0; 16])
            .encode()
            .unwrap();
        raw[1] = 0xff;
        raw[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        raw[8..20].fill(0xaa);
        let p = decode(&raw).unwrap();
        assert_eq!((p.identifier, token(&p)), (0, [0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(&p.authenticator[4..], &[0; 12]);
    }

    #[test]
    fn password_limits() {
        assert!(user_password(b"").is_none());
        assert!(user_password(&[b'x'; 129]).is_none());
        assert_eq!(
            &user_password(b"pw\0").unwrap()[..],
            b"pw\0",
            "no padding removed"
        );
        assert_eq!(user_password(&[b'x'; 128]).unwrap().len(), 128);
    }

    #[test]
    fn settings_parse() {
        for m in [Radius11::Allow, Radius11::Require, Radius11::Forbid] {
            assert_eq!(m.as_str().parse::<Radius11>().unwrap(), m);
        }
        assert!("yes".parse::<Radius11>().is_err());
        assert_eq!(Radius11::default(), Radius11::Allow);
    }

    #[test]
    fn protocol_error_packet() {
        let p = Packet::decode(&alpn_required_error()).unwrap();
        assert_eq!((p.code, p.authenticator), (PROTOCOL_ERROR, [0; 16]));
        assert_eq!(p.get_u32(ERROR_CAUSE), Some(406));
    }
}

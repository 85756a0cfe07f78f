//! In-memory caches of the warm login path: [`CredentialCache`] (passwords
//! verified by argon2id) and [`UserCache`] (user records, see there).
//!
//! Verified-credential cache: after a password passed the argon2id check, a
//! keyed hash of it is kept in memory for a while, so that the user's next
//! logins (VPN reconnections, renegotiations) cost a microsecond instead of
//! an argon2 run.
//!
//! Why it is sound:
//! * only a *success* is cached; a wrong password never matches and still
//!   pays the full argon2 price, so online guessing does not get cheaper;
//! * the tag is HMAC-SHA256 under a random key that lives only in this
//!   process's memory (zeroised on drop), over the user name, the password
//!   and the stored PHC hash: a password change (new hash) invalidates it,
//!   also when made by another process or manager;
//! * comparison is constant-time (`subtle`); entries expire (`ttl`) and the
//!   map is bounded;
//! * nothing is written to disk: at rest there is only argon2id.
//!
//! The trade-off: someone able to read this process's memory gets keyed
//! hashes of recently used passwords (with the key next to them), which are
//! as weak as a fast salted hash against offline guessing. Set the lifetime
//! to zero (`Config::credential_cache_ttl`) to disable the cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::UserRecord;

/// More users than any single RADIUS server serves; a bound against memory abuse.
const MAX_ENTRIES: usize = 200_000;

pub struct CredentialCache {
    key: Zeroizing<[u8; 32]>,
    ttl: Duration,
    max_entries: usize,
    map: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> CredentialCache {
        CredentialCache::bounded(ttl, MAX_ENTRIES)
    }

    /// A cache of at most `max_entries` users: when full, expired entries go
    /// first, and if none had expired, all of them.
    fn bounded(ttl: Duration, max_entries: usize) -> CredentialCache {
        CredentialCache {
            key: Zeroizing::new(crate::crypto::random_bytes()),
            ttl,
            max_entries,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, user: &str, password: &[u8], phc: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
            .expect("HMAC takes any key length");
        // Length prefixes keep the fields apart ("ab"+"c" is not "a"+"bc").
        for part in [user.as_bytes(), password, phc.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// True when this exact password was verified against this exact hash
    /// less than `ttl` ago.
    pub fn check(&self, user: &str, password: &[u8], phc: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let want = self.tag(user, password, phc);
        let map = self.map.lock().expect("credential cache lock");
        map.get(user)
            .is_some_and(|(tag, exp)| *exp > Instant::now() && bool::from(tag.ct_eq(&want)))
    }

    /// Remember a password that just passed the argon2id check.
    pub fn insert(&self, user: &str, password: &[u8], phc: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let tag = self.tag(user, password, phc);
        let now = Instant::now();
        let mut map = self.map.lock().expect("credential cache lock");
        if map.len() >= self.max_entries {
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(user.to_string(), (tag, now + self.ttl));
    }

    /// Forget a user (disabled, locked, password reset by this process).
    pub fn forget(&self, user: &str) {
        self.map.lock().expect("credential cache lock").remove(user);
    }

    pub fn len(&self) -> usize {
        self.map.lock().expect("credential cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Users accepted recently, as read from the database, with the last TOTP
/// step this server accepted for them: the warm path reads the user here
/// instead of the database. A copy may be stale (an administrator disabled
/// the account, another manager accepted a later step): that is safe only
/// because the server takes nothing from it but an *accept*, and confirms
/// that accept in the database, in the same statement that records the
/// step, against the fields it relied on
/// ([`crate::store::StepUpdate`]). Anything else (a reject, a lockout) is
/// decided on a fresh read.
pub struct UserCache {
    ttl: Duration,
    max_entries: usize,
    map: Mutex<HashMap<String, CachedUser>>,
}

struct CachedUser {
    warm: WarmUser,
    expires: Instant,
}

/// What the warm path needs of a user accepted recently.
#[derive(Clone)]
pub struct WarmUser {
    pub record: Arc<UserRecord>,
    /// The last step accepted.
    pub last_step: i64,
    /// The TOTP secret, decrypted once when the user was cached
    /// (XChaCha20-Poly1305 per login was 4 % of the server's CPU); wiped
    /// when the entry goes. The master key that seals every secret is in
    /// memory anyway, so this exposes nothing it does not.
    pub totp_key: Arc<Zeroizing<Vec<u8>>>,
}

impl UserCache {
    pub fn new(ttl: Duration) -> UserCache {
        UserCache {
            ttl,
            max_entries: MAX_ENTRIES,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The cached user, if any and not expired.
    pub fn get(&self, user: &str) -> Option<WarmUser> {
        let map = self.map.lock().expect("user cache lock");
        map.get(user)
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.warm.clone())
    }

    /// Remember `record` (just accepted at `last_step`) and its decrypted
    /// TOTP secret.
    pub fn insert(&self, record: UserRecord, last_step: i64, totp_key: Zeroizing<Vec<u8>>) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.map.lock().expect("user cache lock");
        if map.len() >= self.max_entries {
            map.retain(|_, c| c.expires > now);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(
            record.name.clone(),
            CachedUser {
                warm: WarmUser {
                    record: Arc::new(record),
                    last_step,
                    totp_key: Arc::new(totp_key),
                },
                expires: now + self.ttl,
            },
        );
    }

    /// A later step was accepted for `user`.
    pub fn accepted(&self, user: &str, step: i64) {
        if let Some(c) = self.map.lock().expect("user cache lock").get_mut(user) {
            c.warm.last_step = c.warm.last_step.max(step);
        }
    }

    pub fn forget(&self, user: &str) {
        self.map.lock().expect("user cache lock").remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_verified_password_and_hash_match() {
        let c = CredentialCache::new(Duration::from_secs(60));
        assert!(!c.check("alice", b"pw", "$argon2id$h1"));
        c.insert("alice", b"pw", "$argon2id$h1");
        assert!(c.check("alice", b"pw", "$argon2id$h1"));
        assert!(!c.check("alice", b"pW", "$argon2id$h1"));
        assert!(!c.check("bob", b"pw", "$argon2id$h1"));
        // A new password hash (changed elsewhere) invalidates the entry.
        assert!(!c.check("alice", b"pw", "$argon2id$h2"));
        c.forget("alice");
        assert!(!c.check("alice", b"pw", "$argon2id$h1"));
    }

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        let c = CredentialCache::new(Duration::from_millis(20));
        c.insert("alice", b"pw", "h");
        assert!(c.check("alice", b"pw", "h"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!c.check("alice", b"pw", "h"));
        let off = CredentialCache::new(Duration::ZERO);
        off.insert("alice", b"pw", "h");
        assert!(!off.check("alice", b"pw", "h"));
        assert!(off.is_empty());
    }

    #[test]
    fn size_is_bounded_expired_entries_go_first() {
        let c = CredentialCache::bounded(Duration::from_millis(500), 2);
        c.insert("alice", b"pw", "h");
        std::thread::sleep(Duration::from_millis(600));
        c.insert("bob", b"pw", "h");
        // Full: alice's expired entry makes room, bob's stays.
        c.insert("carol", b"pw", "h");
        assert_eq!(c.len(), 2);
        assert!(c.check("bob", b"pw", "h"));
        assert!(c.check("carol", b"pw", "h"));

        // Full of live entries: the map is emptied, the new one kept.
        let c = CredentialCache::bounded(Duration::from_secs(60), 2);
        for user in ["alice", "bob", "carol"] {
            c.insert(user, b"pw", "h");
        }
        assert_eq!(c.len(), 1);
        assert!(!c.check("alice", b"pw", "h"));
        assert!(c.check("carol", b"pw", "h"));
    }
}

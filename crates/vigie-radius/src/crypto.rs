//! Secrets at rest: a key file kept apart from the database encrypts TOTP
//! secrets and NAS shared secrets (XChaCha20-Poly1305, bound to their row by
//! the associated data). Password hashing: argon2id.

use anyhow::{Context, Result, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::path::Path;
use zeroize::Zeroizing;

/// The 32-byte key from `DIR/keys/mfa.key`, wiped from memory on drop
/// (each clone too).
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Load the key file, creating it (mode 0600, directory 0700) on first use.
    pub fn load_or_create(path: &Path) -> Result<MasterKey> {
        use std::io::{Read, Write};
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                let mut k = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(&mut k[..]);
                f.write_all(&k[..])?;
                f.sync_all()?;
                Ok(MasterKey(k))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mut f = std::fs::File::open(path)
                    .with_context(|| format!("opening key file {}", path.display()))?;
                let mode = f.metadata()?.permissions().mode();
                if mode & 0o077 != 0 {
                    bail!(
                        "key file {} is readable by others (mode {:o}); run chmod 600",
                        path.display(),
                        mode & 0o777
                    );
                }
                let mut buf = Zeroizing::new(Vec::new());
                f.read_to_end(&mut buf)?;
                let k: [u8; 32] = buf[..]
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("key file {} is not 32 bytes", path.display()))?;
                Ok(MasterKey(Zeroizing::new(k)))
            }
            Err(e) => Err(e).with_context(|| format!("creating key file {}", path.display())),
        }
    }

    /// A key from bytes (tests, or a key the manager holds elsewhere).
    pub fn from_bytes(k: [u8; 32]) -> MasterKey {
        MasterKey(Zeroizing::new(k))
    }

    /// Encrypt; returns hex(nonce || ciphertext). `context` names the row
    /// (e.g. "totp:alice") so a ciphertext cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        hex::encode(out)
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Zeroizing<Vec<u8>>> {
        let raw = hex::decode(sealed).context("stored secret is not hex")?;
        if raw.len() < 24 + 16 {
            bail!("stored secret is truncated");
        }
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let pt = cipher
            .decrypt(
                XNonce::from_slice(&raw[..24]),
                Payload {
                    msg: &raw[24..],
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!("stored secret does not decrypt with this key (wrong key file?)")
            })?;
        Ok(Zeroizing::new(pt))
    }
}

/// argon2id hash in PHC format (default parameters of the `argon2` crate,
/// OWASP's recommendation: 19 MiB, 2 passes).
pub fn hash_password(password: &[u8]) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Verify against a PHC hash (the argon2 crate compares in constant time).
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password, &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Random bytes (TOTP secrets, challenge State).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_bound_to_context() {
        let k = MasterKey::from_bytes([9; 32]);
        let s = k.seal(b"topsecret", "totp:alice");
        assert_eq!(&k.open(&s, "totp:alice").unwrap()[..], b"topsecret");
        assert!(k.open(&s, "totp:bob").is_err());
        assert!(
            MasterKey::from_bytes([8; 32])
                .open(&s, "totp:alice")
                .is_err()
        );
        assert!(k.open("zz", "totp:alice").is_err());
    }

    #[test]
    fn key_file_created_0600_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys/mfa.key");
        let k1 = MasterKey::load_or_create(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let s = k1.seal(b"x", "c");
        let k2 = MasterKey::load_or_create(&p).unwrap();
        assert_eq!(&k2.open(&s, "c").unwrap()[..], b"x");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(MasterKey::load_or_create(&p).is_err());
    }

    #[test]
    fn argon2id_hash() {
        let h = hash_password(b"pw").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(b"pw", &h));
        assert!(!verify_password(b"pW", &h));
        assert!(!verify_password(b"pw", "garbage"));
    }
}

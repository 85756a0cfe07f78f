//! Administration used by `vigie mfa` and the manager's console: users,
//! enrolment (otpauth:// URI, QR code as terminal text or SVG), NAS clients.
//! Every change is written to the audit log.

use anyhow::{Result, bail};
use totp_rs::Secret;

use crate::crypto::{self, MasterKey};
use crate::store::{CodeTransport, Store};
use crate::totp::{self, Algorithm};

/// The result of an enrolment: what the user types or scans. Holds the secret
/// in clear: show it once, never log it.
pub struct Enrollment {
    pub uri: String,
    pub secret_base32: zeroize::Zeroizing<String>,
}

/// Add a local user (argon2id hash) or an LDAP user (no local password).
pub async fn add_user(
    store: &Store,
    actor: &str,
    name: &str,
    password: Option<&[u8]>,
) -> Result<()> {
    match password {
        Some(pw) => {
            if pw.is_empty() {
                bail!("empty password refused");
            }
            let pw = zeroize::Zeroizing::new(pw.to_vec());
            let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&pw)).await??;
            store.add_user(name, "local", Some(&hash)).await?;
            store
                .audit(actor, "mfa.user.add", name, "backend=local")
                .await
        }
        None => {
            store.add_user(name, "ldap", None).await?;
            store
                .audit(actor, "mfa.user.add", name, "backend=ldap")
                .await
        }
    }
}

/// Generate a fresh TOTP secret for `name` (replacing any previous one).
pub async fn enroll(
    store: &Store,
    key: &MasterKey,
    actor: &str,
    name: &str,
    alg: Algorithm,
    digits: u32,
    issuer: &str,
) -> Result<Enrollment> {
    if !matches!(digits, 6 | 8) {
        bail!("TOTP codes have 6 or 8 digits");
    }
    if store.get_user(name).await?.is_none() {
        bail!("no such user {name:?}");
    }
    // 20 bytes for SHA-1 (RFC 4226's recommendation), the hash size otherwise.
    let raw: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(match alg {
        Algorithm::SHA1 => crypto::random_bytes::<20>().to_vec(),
        Algorithm::SHA256 => crypto::random_bytes::<32>().to_vec(),
        Algorithm::SHA512 => crypto::random_bytes::<64>().to_vec(),
    });
    let sealed = key.seal(&raw, &format!("totp:{name}"));
    store
        .set_totp(name, &sealed, totp::algorithm_name(alg), digits)
        .await?;
    store
        .audit(
            actor,
            "mfa.user.enroll",
            name,
            &format!("algorithm={} digits={digits}", totp::algorithm_name(alg)),
        )
        .await?;
    let b32 = match Secret::Raw(raw.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        Secret::Raw(_) => unreachable!("to_encoded returns Encoded"),
    };
    Ok(Enrollment {
        uri: totp::otpauth_uri(&raw, alg, digits, name, issuer),
        secret_base32: zeroize::Zeroizing::new(b32),
    })
}

/// The QR code of an otpauth:// URI as terminal text (two rows per line).
pub fn qr_terminal(uri: &str) -> Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .build())
}

/// The QR code as an SVG document (for the console).
pub fn qr_svg(uri: &str) -> Result<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build())
}

#[allow(clippy::too_many_arguments)]
pub async fn add_client(
    store: &Store,
    key: &MasterKey,
    actor: &str,
    name: &str,
    address: &str,
    secret: &[u8],
    transport: CodeTransport,
    require_message_authenticator: bool,
) -> Result<()> {
    let net: ipnet::IpNet = match address.parse() {
        Ok(n) => n,
        Err(_) => match address.parse::<std::net::IpAddr>() {
            Ok(ip) => ipnet::IpNet::from(ip),
            Err(_) => bail!("{address:?} is not an IP address or CIDR network"),
        },
    };
    store
        .add_client(
            key,
            name,
            net,
            secret,
            transport,
            require_message_authenticator,
        )
        .await?;
    store
        .audit(
            actor,
            "mfa.client.add",
            name,
            &format!(
                "address={net} transport={} message_authenticator={}",
                transport.as_str(),
                if require_message_authenticator {
                    "required"
                } else {
                    "legacy"
                }
            ),
        )
        .await
}

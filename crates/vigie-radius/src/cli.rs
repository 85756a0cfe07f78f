//! What `vigie mfa ...` does, so the CLI crate only parses arguments. Each
//! function acts on a data folder (`DIR/vigie.db`, `DIR/keys/mfa.key`).

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::admin;
use crate::store::{CodeTransport, Store, now_unix};
use crate::totp;

/// Who the audit log names for command-line changes.
fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    )
}

fn block_on<F: std::future::Future<Output = Result<ExitCode>>>(f: F) -> Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// Read a secret from a file, or stdin with "-"; one trailing newline is removed.
pub fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut buf)?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("reading {}", path.display()))?
            .read_to_end(&mut buf)?;
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(buf)
}

pub fn client_add(
    data: &Path,
    name: &str,
    address: &str,
    secret_file: &Path,
    transport: &str,
    legacy_no_message_authenticator: bool,
    org: Option<&str>,
) -> Result<ExitCode> {
    let transport = CodeTransport::parse(transport)
        .with_context(|| format!("unknown code transport {transport:?} (append or challenge)"))?;
    let secret = read_secret(secret_file)?;
    block_on(async {
        let (store, key) = Store::open_data_dir(data).await?;
        admin::add_client(
            &store,
            &key,
            &actor(),
            name,
            address,
            &secret,
            transport,
            !legacy_no_message_authenticator,
        )
        .await?;
        if org.is_some() {
            store.set_client_org(name, org).await?;
        }
        println!(
            "client {name} added ({address}, code {}{})",
            transport.as_str(),
            org.map(|o| format!(", organisation {o}"))
                .unwrap_or_default()
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn client_list(data: &Path) -> Result<ExitCode> {
    block_on(async {
        let (store, _) = Store::open_data_dir(data).await?;
        println!(
            "{:<20} {:<24} {:<10} {:<16} MESSAGE-AUTHENTICATOR",
            "NAME", "ADDRESS", "CODE", "ORGANISATION"
        );
        for c in store.list_clients().await? {
            println!(
                "{:<20} {:<24} {:<10} {:<16} {}",
                c.name,
                c.address.to_string(),
                c.transport.as_str(),
                c.org.as_deref().unwrap_or("(default)"),
                if c.require_message_authenticator {
                    "required"
                } else {
                    "legacy"
                }
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn client_remove(data: &Path, name: &str) -> Result<ExitCode> {
    block_on(async {
        let (store, _) = Store::open_data_dir(data).await?;
        store.remove_client(name).await?;
        store.audit(&actor(), "mfa.client.remove", name, "").await?;
        println!("client {name} removed");
        Ok(ExitCode::SUCCESS)
    })
}

/// `password_stdin`: read the password from the first line of stdin.
pub fn user_add(data: &Path, name: &str, password_stdin: bool, ldap: bool) -> Result<ExitCode> {
    if password_stdin == ldap {
        bail!(
            "give exactly one of --password-stdin (local password) or --ldap (directory password)"
        );
    }
    let password = if password_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            bail!("empty password refused");
        }
        Some(zeroize::Zeroizing::new(pw))
    } else {
        None
    };
    block_on(async {
        let (store, _) = Store::open_data_dir(data).await?;
        admin::add_user(
            &store,
            &actor(),
            name,
            password.as_ref().map(|p| p.as_bytes()),
        )
        .await?;
        println!(
            "user {name} added ({}); next: vigie mfa enroll {name}",
            if ldap {
                "LDAP password"
            } else {
                "local password"
            }
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub fn user_list(data: &Path) -> Result<ExitCode> {
    block_on(async {
        let (store, _) = Store::open_data_dir(data).await?;
        let now = now_unix();
        println!(
            "{:<24} {:<8} {:<9} {:<10} {:>8} {:>6}  STATE",
            "NAME", "BACKEND", "ENROLLED", "ALGORITHM", "FAILURES", "DRIFT"
        );
        for u in store.list_users().await? {
            let state = if u.disabled {
                "disabled".to_string()
            } else if u.locked_until > now {
                format!("locked for {} s", u.locked_until - now)
            } else {
                "active".to_string()
            };
            println!(
                "{:<24} {:<8} {:<9} {:<10} {:>8} {:>6}  {}",
                u.name,
                u.backend,
                if u.totp_secret.is_some() { "yes" } else { "no" },
                format!("{}/{}", u.totp_algorithm, u.totp_digits),
                u.failures,
                u.drift,
                state
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `what`: "disable", "enable", "unlock" or "reset".
pub fn user_change(data: &Path, name: &str, what: &str) -> Result<ExitCode> {
    block_on(async {
        let (store, _) = Store::open_data_dir(data).await?;
        match what {
            "disable" => store.set_disabled(name, true).await?,
            "enable" => store.set_disabled(name, false).await?,
            "unlock" => store.unlock(name).await?,
            "reset" => store.reset_totp(name).await?,
            other => bail!("unknown change {other:?}"),
        }
        store
            .audit(&actor(), &format!("mfa.user.{what}"), name, "")
            .await?;
        println!("user {name}: {what} done");
        Ok(ExitCode::SUCCESS)
    })
}

pub fn enroll(
    data: &Path,
    name: &str,
    algorithm: &str,
    digits: u32,
    issuer: &str,
    qr: bool,
) -> Result<ExitCode> {
    let alg = totp::parse_algorithm(algorithm)
        .with_context(|| format!("unknown algorithm {algorithm:?} (SHA1, SHA256, SHA512)"))?;
    block_on(async {
        let (store, key) = Store::open_data_dir(data).await?;
        let e = admin::enroll(&store, &key, &actor(), name, alg, digits, issuer).await?;
        if qr {
            println!("{}", admin::qr_terminal(&e.uri)?);
        }
        println!("{}", e.uri);
        println!(
            "secret (type it if the QR code cannot be scanned): {}",
            &*e.secret_base32
        );
        Ok(ExitCode::SUCCESS)
    })
}

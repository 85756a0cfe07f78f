//! What the `vigie manager` subcommands do, so the CLI only parses
//! arguments: run the server, create and revoke tokens, revoke agents, add
//! users. Each opens the store and PKI of `--data` / `--database-url`.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Config, Manager, open};

/// Parse "24h", "30m", "7d".
pub fn parse_duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is not a duration (examples: 30m, 24h, 7d)"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Run the manager until Ctrl-C / SIGTERM.
pub fn serve(config: Config) -> Result<()> {
    runtime()?.block_on(async move {
        let mut handle = Manager::start(config).await?;
        println!(
            "Vigie manager: API https://{} , agents https://{}",
            handle.api_addr, handle.agent_addr
        );
        match &handle.radius {
            Some(r) => {
                let udp: Vec<String> = r.udp.iter().map(|a| a.to_string()).collect();
                let tls = r
                    .radsec
                    .map(|a| format!(", RadSec tls {a}"))
                    .unwrap_or_default();
                println!("RADIUS (VPN two-factor): udp {}{tls}", udp.join(" "));
            }
            None => println!("RADIUS (VPN two-factor): off (see the log for why)"),
        }
        // scripts/start reads the first-start lines right after this one:
        // keep them together and last.
        println!(
            "CA fingerprint (SHA-256): {}",
            handle.core.pki.ca_fingerprint()
        );
        if let Some(first) = &handle.first_start {
            // Printed once, never logged: only its hash is stored.
            println!(
                "First start: user {:?} created with the one-time password:",
                first.admin_user
            );
            println!("{}", first.admin_password);
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = handle.wait() => bail!("the manager stopped unexpectedly"),
        }
        handle.shutdown().await;
        Ok(())
    })
}

/// A one-time enrolment token, `SECRET.CA_FINGERPRINT`.
pub fn create_enroll_token(config: &Config, org: &str, ttl: Duration) -> Result<(String, String)> {
    runtime()?.block_on(async {
        let (store, pki) = open(config).await?;
        let (id, secret) = store
            .create_enroll_token(org, ttl.as_millis() as i64)
            .await?;
        store
            .append_audit(&crate::store::AuditEntry {
                org: org.to_string(),
                actor: "cli".into(),
                action: "create_enrollment_token".into(),
                target: id.clone(),
                reason: String::new(),
                outcome: "created".into(),
                details: serde_json::json!({"expires_in_s": ttl.as_secs()}),
            })
            .await?;
        Ok((id, format!("{secret}.{}", pki.ca_fingerprint())))
    })
}

pub fn revoke_enroll_token(config: &Config, token: &str) -> Result<bool> {
    runtime()?.block_on(async {
        let (store, _) = open(config).await?;
        store.revoke_enroll_token(token).await
    })
}

/// Revoke agents by host id or hostname; connected managers drop their
/// streams within a second.
pub fn revoke_agent(
    config: &Config,
    org: Option<&str>,
    host: &str,
    reason: &str,
) -> Result<Vec<String>> {
    runtime()?.block_on(async {
        let (store, _) = open(config).await?;
        let ids = store.revoke_agent(org, host).await?;
        for id in &ids {
            let org: String = sqlx::query_scalar("SELECT org_id FROM hosts WHERE id = $1")
                .bind(id)
                .fetch_one(&store.pool)
                .await?;
            store
                .append_audit(&crate::store::AuditEntry {
                    org,
                    actor: "cli".into(),
                    action: "revoke_agent".into(),
                    target: id.clone(),
                    reason: reason.to_string(),
                    outcome: "revoked".into(),
                    details: serde_json::json!({}),
                })
                .await?;
        }
        Ok(ids)
    })
}

pub fn add_user(
    config: &Config,
    org: &str,
    username: &str,
    password: &str,
    role: &str,
) -> Result<String> {
    runtime()?.block_on(async {
        let (store, _) = open(config).await?;
        store.add_user(org, username, password, role).await
    })
}

/// An API token (printed once).
pub fn create_api_token(
    config: &Config,
    org: &str,
    name: &str,
    role: &str,
    ttl: Option<Duration>,
) -> Result<String> {
    runtime()?.block_on(async {
        let (store, _) = open(config).await?;
        store
            .create_api_token(org, None, name, role, ttl.map(|t| t.as_millis() as i64))
            .await
    })
}

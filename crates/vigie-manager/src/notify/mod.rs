//! Notifications: alerts at or above a level go out by webhook (Slack,
//! Mattermost, Teams incoming webhooks, or any JSON receiver) and email
//! (SMTP), and every alert can be forwarded to a SIEM by syslog (RFC 5424,
//! ECS JSON or CEF).
//!
//! Delivery goes through an outbox table: [`enqueue`] adds one row per
//! (alert, channel) inside the ingest transaction, and [`run`] claims due
//! rows with a lease, sends them, and retries failures with backoff. So a
//! notification survives a manager restart, is sent by exactly one of
//! several managers sharing a database, and a receiver that is down only
//! delays it.
//!
//! Settings are per organisation, in the console's settings (names in
//! [`SETTING_NAMES`]); they are read at send time, so a corrected address
//! applies to notifications still waiting.

mod email;
mod syslog;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::Row;
use tokio::sync::watch;
use vigie_event::{Alert, Level};

use crate::Core;
use crate::store::{Store, now_ms};
use vigie_radius::MasterKey;

pub use syslog::{SyslogFormat, cef_line, rfc5424_line};

/// The settings this module reads (console settings, per organisation).
pub const SETTING_NAMES: &[&str] = &[
    "webhook_url",
    "notify_level",
    "email_to",
    "email_from",
    "smtp_url",
    "smtp_user",
    "smtp_password",
    "syslog_url",
    "syslog_format",
    "syslog_level",
    "console_url",
];

/// Give up on a notification after this many attempts (about 4 h of
/// backoff); the failure stays in the outbox with its last error.
const MAX_ATTEMPTS: i64 = 12;
/// A claimed row is someone's for this long; a manager that dies while
/// sending leaves it to another after the lease.
const LEASE_MS: i64 = 120_000;
/// Each send must finish within this.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Where an alert can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Webhook,
    Email,
    Syslog,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Syslog => "syslog",
        }
    }

    fn parse(s: &str) -> Option<Channel> {
        match s {
            "webhook" => Some(Channel::Webhook),
            "email" => Some(Channel::Email),
            "syslog" => Some(Channel::Syslog),
            _ => None,
        }
    }
}

/// A setting that must never reach a log: its Debug is a placeholder.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One organisation's notification settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub webhook_url: Option<String>,
    /// Webhook and email get alerts at or above this level (default high).
    pub notify_level: Option<Level>,
    pub email_to: Vec<String>,
    pub email_from: Option<String>,
    /// `smtp://host:25`, `smtp://host:587?tls=required`, `smtps://host`.
    pub smtp_url: Option<String>,
    pub smtp_user: Option<String>,
    /// Stored sealed ([`seal_smtp_password`]); opened by [`Settings::open_secrets`]
    /// just before sending.
    pub smtp_password: Option<Secret>,
    /// Why the stored SMTP password could not be opened (a key file that is
    /// not the one it was sealed with); email fails with this.
    pub secret_error: Option<String>,
    /// `udp://host:514` or `tcp://host:514`.
    pub syslog_url: Option<String>,
    pub syslog_format: SyslogFormat,
    /// Syslog gets alerts at or above this level (default low: a SIEM
    /// wants everything but the informational building blocks).
    pub syslog_level: Option<Level>,
    /// Base URL of the console, for links in messages.
    pub console_url: Option<String>,
}

impl Settings {
    fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Settings {
        let mut s = Settings::default();
        let some = |v: String| Some(v).filter(|v| !v.trim().is_empty());
        for (name, value) in pairs {
            match name.as_str() {
                "webhook_url" => s.webhook_url = some(value),
                "notify_level" => s.notify_level = value.parse().ok(),
                "email_to" => {
                    s.email_to = value
                        .split([',', ';', ' '])
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(String::from)
                        .collect()
                }
                "email_from" => s.email_from = some(value),
                "smtp_url" => s.smtp_url = some(value),
                "smtp_user" => s.smtp_user = some(value),
                "smtp_password" => s.smtp_password = some(value).map(Secret),
                "syslog_url" => s.syslog_url = some(value),
                "syslog_format" => s.syslog_format = value.parse().unwrap_or_default(),
                "syslog_level" => s.syslog_level = value.parse().ok(),
                "console_url" => s.console_url = some(value),
                _ => {}
            }
        }
        s
    }

    /// Read an organisation's settings.
    pub async fn load<'e, E>(db: E, org: &str) -> Result<Settings>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let rows = sqlx::query("SELECT name, value FROM console_settings WHERE org_id = $1")
            .bind(org)
            .fetch_all(db)
            .await?;
        Ok(Settings::from_pairs(
            rows.iter().map(|r| (r.get::<String, _>(0), r.get(1))),
        ))
    }

    /// Opens the sealed SMTP password with the manager's key. A value
    /// without the prefix was stored by an older version in clear: used as
    /// is (saving the settings again seals it).
    pub fn open_secrets(mut self, key: &MasterKey, org: &str) -> Settings {
        if let Some(Secret(stored)) = &self.smtp_password
            && let Some(sealed) = stored.strip_prefix(SEALED_PREFIX)
        {
            match key.open(sealed, &smtp_context(org)) {
                Ok(plain) => {
                    self.smtp_password = Some(Secret(String::from_utf8_lossy(&plain).into_owned()))
                }
                Err(e) => {
                    self.smtp_password = None;
                    self.secret_error = Some(format!("the SMTP password cannot be read: {e:#}"));
                }
            }
        }
        self
    }

    /// The channels an alert of this level goes to.
    pub fn channels_for(&self, level: Level) -> Vec<Channel> {
        let mut out = Vec::new();
        let notify = self.notify_level.unwrap_or(Level::High);
        if level >= notify {
            if self.webhook_url.is_some() {
                out.push(Channel::Webhook);
            }
            if self.smtp_url.is_some() && !self.email_to.is_empty() {
                out.push(Channel::Email);
            }
        }
        if self.syslog_url.is_some() && level >= self.syslog_level.unwrap_or(Level::Low) {
            out.push(Channel::Syslog);
        }
        out
    }
}

/// Marks a sealed secret in `console_settings`.
const SEALED_PREFIX: &str = "sealed:";

/// Binds the ciphertext to its row: it cannot be moved to another
/// organisation's settings.
fn smtp_context(org: &str) -> String {
    format!("smtp_password:{org}")
}

/// The SMTP password as stored: encrypted with the manager's key, which is
/// kept apart from the database (a database dump does not give the mail
/// account away).
pub fn seal_smtp_password(key: &MasterKey, org: &str, password: &str) -> String {
    format!(
        "{SEALED_PREFIX}{}",
        key.seal(password.as_bytes(), &smtp_context(org))
    )
}

/// Per-ingest cache of organisations' settings (one query per organisation
/// per batch, not per alert).
#[derive(Default)]
pub struct SettingsCache(HashMap<String, Settings>);

/// Queue the notifications for a newly stored alert, in the caller's
/// transaction.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cache: &mut SettingsCache,
    org: &str,
    alert_id: &str,
    level: Level,
) -> Result<()> {
    if !cache.0.contains_key(org) {
        let s = Settings::load(&mut **tx, org).await?;
        cache.0.insert(org.to_string(), s);
    }
    let now = now_ms();
    for channel in cache.0[org].channels_for(level) {
        sqlx::query("INSERT INTO notify_outbox (id, org_id, alert_id, channel, created_at, next_try) VALUES ($1, $2, $3, $4, $5, $5)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(org)
            .bind(alert_id)
            .bind(channel.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// What a notification says about an alert, in plain words.
pub struct Notice {
    pub alert: Alert,
    /// The host's name as the manager knows it.
    pub hostname: String,
    pub link: Option<String>,
}

impl Notice {
    pub fn subject(&self) -> String {
        format!(
            "[Vigie] {} alert on {}: {}",
            self.alert.level().as_str().to_uppercase(),
            self.hostname,
            self.alert.rule.name
        )
    }

    /// A few lines a person reads at 3 a.m.
    pub fn text(&self) -> String {
        let a = &self.alert;
        let mut t = format!(
            "{} alert on {} at {}: {}.",
            a.level().as_str().to_uppercase(),
            self.hostname,
            a.time.format("%Y-%m-%d %H:%M:%S UTC"),
            a.rule.name
        );
        if let Some(d) = a.rule.description.as_deref().filter(|d| !d.is_empty()) {
            t.push_str(&format!("\n{d}"));
        }
        if let Some(p) = a.event().and_then(|e| e.process()) {
            t.push_str(&format!("\nProcess: {} ({})", p.executable, p.command_line));
            if let Some(user) = p.user.as_ref().and_then(|u| u.name.as_deref()) {
                t.push_str(&format!(", user {user}"));
            }
        }
        if let Some(link) = &self.link {
            t.push_str(&format!("\nOpen in the console: {link}"));
        }
        t
    }
}

/// Send what is due until `stop`: every second, or sooner after a failure
/// leaves nothing else to do.
pub async fn run(core: Arc<Core>, mut stop: watch::Receiver<bool>) {
    let http = match reqwest::Client::builder().timeout(SEND_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("notifications disabled: no HTTP client: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = send_due(&core.store, &core.secrets, &http).await {
            tracing::warn!("notifications: {e:#}");
        }
    }
}

/// Claim up to 20 due notifications and send them.
pub async fn send_due(store: &Store, key: &MasterKey, http: &reqwest::Client) -> Result<usize> {
    let now = now_ms();
    // The outer conditions repeat the inner ones so that, under concurrent
    // managers on PostgreSQL, a row another manager has just claimed is not
    // claimed again (the UPDATE re-checks them on the locked row).
    let rows = sqlx::query("UPDATE notify_outbox SET claimed_until = $1, attempts = attempts + 1 WHERE id IN (SELECT id FROM notify_outbox WHERE state = 'pending' AND next_try <= $2 AND claimed_until < $2 ORDER BY next_try LIMIT 20) AND state = 'pending' AND claimed_until < $2 RETURNING id, org_id, alert_id, channel, attempts")
        .bind(now + LEASE_MS)
        .bind(now)
        .fetch_all(&store.pool)
        .await
        .context("claiming notifications")?;
    let mut settings: HashMap<String, Settings> = HashMap::new();
    for r in &rows {
        let (id, org, alert_id, channel, attempts): (String, String, String, String, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        if !settings.contains_key(&org) {
            let s = Settings::load(&store.pool, &org)
                .await?
                .open_secrets(key, &org);
            settings.insert(org.clone(), s);
        }
        let result = match Channel::parse(&channel) {
            Some(ch) => {
                let s = &settings[&org];
                match notice(store, s, &org, &alert_id).await {
                    Ok(n) => tokio::time::timeout(SEND_TIMEOUT, deliver(ch, s, &n, http))
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out"))),
                    Err(e) => Err(e),
                }
            }
            None => Err(anyhow::anyhow!("unknown channel {channel:?}")),
        };
        match result {
            Ok(()) => {
                sqlx::query(
                    "UPDATE notify_outbox SET state = 'sent', last_error = NULL WHERE id = $1",
                )
                .bind(&id)
                .execute(&store.pool)
                .await?;
                tracing::info!(%org, alert = %alert_id, %channel, "notification sent");
            }
            Err(e) => {
                // The error names the channel, never the URL (which may
                // carry credentials).
                let error = format!("{e:#}");
                let give_up = attempts >= MAX_ATTEMPTS;
                tracing::warn!(%org, alert = %alert_id, %channel, attempts, give_up, "notification failed: {error}");
                sqlx::query("UPDATE notify_outbox SET state = $1, next_try = $2, claimed_until = 0, last_error = $3 WHERE id = $4")
                    .bind(if give_up { "failed" } else { "pending" })
                    .bind(now_ms() + backoff_ms(attempts))
                    .bind(&error)
                    .bind(&id)
                    .execute(&store.pool)
                    .await?;
            }
        }
    }
    Ok(rows.len())
}

/// 5 s, 10 s, 20 s, ... capped at one hour.
fn backoff_ms(attempts: i64) -> i64 {
    let exp = attempts.clamp(1, 20) - 1;
    (5_000i64 << exp).min(3_600_000)
}

async fn notice(store: &Store, s: &Settings, org: &str, alert_id: &str) -> Result<Notice> {
    let (row, doc) = store
        .get_alert(org, alert_id)
        .await?
        .context("the alert is gone")?;
    let alert = vigie_event::ecs::parse_alert(&doc.to_string())
        .map_err(|e| anyhow::anyhow!("stored alert does not parse: {e}"))?;
    let host_id = row["host_id"].as_str().unwrap_or_default();
    let hostname = match store.get_host(org, host_id).await? {
        Some(h) => h["hostname"].as_str().unwrap_or(host_id).to_string(),
        None if !alert.host.name.is_empty() => alert.host.name.clone(),
        None => host_id.to_string(),
    };
    let link = s
        .console_url
        .as_deref()
        .map(|base| format!("{}/alerts/{alert_id}", base.trim_end_matches('/')));
    Ok(Notice {
        alert,
        hostname,
        link,
    })
}

async fn deliver(ch: Channel, s: &Settings, n: &Notice, http: &reqwest::Client) -> Result<()> {
    match ch {
        Channel::Webhook => {
            let url = s.webhook_url.as_deref().context("no webhook URL set")?;
            webhook::send(http, url, n).await
        }
        Channel::Email => email::send(s, n).await,
        Channel::Syslog => {
            let url = s.syslog_url.as_deref().context("no syslog URL set")?;
            syslog::send(url, s.syslog_format, n).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn smtp_password_is_sealed_per_organisation() {
        let key = MasterKey::from_bytes([7; 32]);
        let stored = seal_smtp_password(&key, "mairie", "hunter2-smtp");
        assert!(stored.starts_with(SEALED_PREFIX));
        assert!(
            !stored.contains("hunter2"),
            "never in clear in the database"
        );
        let open = |org: &str, value: &str, key: &MasterKey| {
            settings(&[("smtp_password", value)]).open_secrets(key, org)
        };
        let s = open("mairie", &stored, &key);
        assert_eq!(s.smtp_password.unwrap().0, "hunter2-smtp");
        assert!(s.secret_error.is_none());
        // Moved to another organisation's row, or another key: refused
        // with a reason, and the reason does not carry the secret.
        for s in [
            open("other", &stored, &key),
            open("mairie", &stored, &MasterKey::from_bytes([8; 32])),
        ] {
            assert!(s.smtp_password.is_none());
            let e = s.secret_error.unwrap();
            assert!(e.contains("SMTP password") && !e.contains("hunter2"), "{e}");
        }
        // A value stored in clear by an older version still works.
        let s = open("mairie", "legacy-clear", &key);
        assert_eq!(s.smtp_password.unwrap().0, "legacy-clear");
    }

    #[test]
    fn levels_choose_channels() {
        let s = settings(&[
            ("webhook_url", "https://hooks.example/x"),
            ("smtp_url", "smtp://mail.example"),
            ("email_to", "it@example.org, dpo@example.org"),
            ("syslog_url", "udp://siem.example:514"),
        ]);
        assert_eq!(s.email_to.len(), 2);
        assert_eq!(
            s.channels_for(Level::Critical),
            vec![Channel::Webhook, Channel::Email, Channel::Syslog]
        );
        assert_eq!(s.channels_for(Level::Medium), vec![Channel::Syslog]);
        assert!(s.channels_for(Level::Informational).is_empty());
        let s = settings(&[("webhook_url", " "), ("notify_level", "low")]);
        assert!(s.channels_for(Level::Critical).is_empty(), "blank is unset");
        let s = settings(&[("webhook_url", "http://x"), ("notify_level", "low")]);
        assert_eq!(s.channels_for(Level::Low), vec![Channel::Webhook]);
        // Email needs both a server and recipients.
        let s = settings(&[("email_to", "a@b.c")]);
        assert!(s.channels_for(Level::Critical).is_empty());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_ms(1), 5_000);
        assert_eq!(backoff_ms(2), 10_000);
        assert_eq!(backoff_ms(12), 3_600_000);
        assert_eq!(backoff_ms(0), 5_000);
    }
}

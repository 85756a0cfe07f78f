//! Email through an SMTP server (lettre), with optional credentials
//! (smtp_user / smtp_password settings), which are never logged.

use anyhow::{Context, Result, anyhow};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Notice, SEND_TIMEOUT, Settings};

pub async fn send(s: &Settings, n: &Notice) -> Result<()> {
    let url = s.smtp_url.as_deref().context("no SMTP server set")?;
    if let Some(e) = &s.secret_error {
        return Err(anyhow!("{e}"));
    }
    let from: Mailbox = s
        .email_from
        .clone()
        .unwrap_or_else(|| format!("Vigie <vigie@{}>", hostname()))
        .parse()
        .map_err(|e| anyhow!("email sender address: {e}"))?;
    let mut message = Message::builder()
        .from(from)
        .subject(n.subject())
        .header(ContentType::TEXT_PLAIN);
    for to in &s.email_to {
        let to: Mailbox = to
            .parse()
            .map_err(|e| anyhow!("email recipient {to:?}: {e}"))?;
        message = message.to(to);
    }
    let message = message
        .body(n.text())
        .map_err(|e| anyhow!("building the email: {e}"))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|_| anyhow!("the SMTP server URL is not valid"))?
        .timeout(Some(SEND_TIMEOUT));
    if let (Some(user), Some(password)) = (&s.smtp_user, &s.smtp_password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
    }
    let transport = builder.build();
    transport
        .send(message)
        .await
        .map_err(|e| anyhow!("SMTP: {}", smtp_error(&e)))?;
    Ok(())
}

/// lettre's errors do not carry the URL, but keep to the kind and code.
fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    match e.status() {
        Some(code) => format!("the server answered {code}"),
        None if e.is_timeout() => "timed out".into(),
        None => "connection or protocol error".into(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

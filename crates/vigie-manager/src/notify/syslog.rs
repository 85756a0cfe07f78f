//! Syslog forwarding to a SIEM: RFC 5424 messages over UDP (one datagram
//! each) or TCP (octet-counted framing, RFC 6587 §3.4.1), carrying the alert
//! as ECS JSON or as a CEF line.

use std::str::FromStr;

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use vigie_event::{Alert, Level};

use super::Notice;

/// What the syslog message body holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyslogFormat {
    /// The alert as Vigie's ECS JSON document (Elastic, OpenSearch, Wazuh...).
    #[default]
    Ecs,
    /// ArcSight Common Event Format (QRadar, ArcSight, many others).
    Cef,
}

impl FromStr for SyslogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ecs" | "json" => Ok(SyslogFormat::Ecs),
            "cef" => Ok(SyslogFormat::Cef),
            other => Err(format!("unknown syslog format {other:?} (ecs or cef)")),
        }
    }
}

/// Facility local4 (20): security tools commonly log there, and SIEMs
/// route on it. Severity follows the alert's level.
const FACILITY: u8 = 20;

fn severity(level: Level) -> u8 {
    match level {
        Level::Critical => 2,
        Level::High => 3,
        Level::Medium => 4,
        Level::Low => 5,
        Level::Informational => 6,
    }
}

/// RFC 5424 header fields are printable US-ASCII without spaces; a
/// hostile host name must not break the framing.
fn header_field(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// The whole RFC 5424 message (without transport framing).
pub fn rfc5424_line(alert: &Alert, hostname: &str, format: SyslogFormat) -> String {
    let pri = FACILITY * 8 + severity(alert.level());
    let ts = alert
        .time
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let msg = match format {
        SyslogFormat::Ecs => serde_json::to_string(alert).unwrap_or_default(),
        SyslogFormat::Cef => cef_line(alert, hostname),
    };
    format!(
        "<{pri}>1 {ts} {} vigie - alert - {msg}",
        header_field(hostname, 255)
    )
}

fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// `CEF:0|Vigie|Vigie|version|rule id|rule name|severity 0-10|extensions`.
pub fn cef_line(alert: &Alert, hostname: &str) -> String {
    let sev = (alert.level().severity() / 10).min(10);
    let mut ext = vec![
        ("rt", alert.time.timestamp_millis().to_string()),
        ("dvchost", hostname.to_string()),
        ("externalId", alert.id.to_string()),
        ("cs1Label", "level".into()),
        ("cs1", alert.level().as_str().into()),
    ];
    if !alert.rule.attack.is_empty() {
        ext.push(("cs2Label", "attack".into()));
        ext.push(("cs2", alert.rule.attack.join(",")));
    }
    if let Some(p) = alert.event().and_then(|e| e.process()) {
        ext.push(("dproc", p.executable.clone()));
        ext.push(("dpid", p.pid.to_string()));
        ext.push(("cs3Label", "command_line".into()));
        ext.push(("cs3", p.command_line.clone()));
        if let Some(u) = p.user.as_ref().and_then(|u| u.name.clone()) {
            ext.push(("duser", u));
        }
    }
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    format!(
        "CEF:0|Vigie|Vigie|{}|{}|{}|{sev}|{}",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(&alert.rule.id),
        cef_header(&alert.rule.name),
        ext.join(" ")
    )
}

pub async fn send(url: &str, format: SyslogFormat, n: &Notice) -> Result<()> {
    let line = rfc5424_line(&n.alert, &n.hostname, format);
    let (scheme, addr) = url
        .split_once("://")
        .context("syslog URL: expected udp://HOST:PORT or tcp://HOST:PORT")?;
    match scheme {
        "udp" => {
            let target = tokio::net::lookup_host(addr)
                .await
                .context("syslog: resolving the server")?
                .next()
                .context("syslog: the server name has no address")?;
            let bind = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let sock = tokio::net::UdpSocket::bind(bind).await?;
            sock.send_to(line.as_bytes(), target)
                .await
                .context("syslog: sending")?;
        }
        "tcp" => {
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .context("syslog: cannot connect")?;
            let framed = format!("{} {line}", line.len());
            s.write_all(framed.as_bytes())
                .await
                .context("syslog: sending")?;
            s.shutdown().await.ok();
        }
        other => bail!("syslog URL scheme {other:?}: use udp:// or tcp://"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_event::{Host, RuleRef};

    fn alert(name: &str) -> Alert {
        Alert {
            id: uuid::Uuid::nil(),
            time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            host: Host::named("pc"),
            rule: RuleRef {
                id: "r|1".into(),
                name: name.into(),
                level: Some(Level::Critical),
                ..Default::default()
            },
            events: vec![],
        }
    }

    #[test]
    fn rfc5424_header_is_well_formed() {
        let line = rfc5424_line(&alert("x"), "pc accueil\n03", SyslogFormat::Ecs);
        assert!(
            line.starts_with("<162>1 2023-11-14T22:13:20.000Z pcaccueil03 vigie - alert - {"),
            "{line}"
        );
    }

    #[test]
    fn cef_escapes_separators() {
        let line = cef_line(&alert("a|b\\c"), "h=1");
        assert!(line.contains("|r\\|1|a\\|b\\\\c|9|"), "{line}");
        assert!(line.contains("dvchost=h\\=1"), "{line}");
    }
}

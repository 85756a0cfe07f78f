//! `vigie radius`: the RADIUS / RadSec service alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run the VPN two-factor RADIUS service alone (for a DMZ; `vigie manager`
/// runs the same service itself). VPN gateways registered with
/// `vigie mfa client add` authenticate users with password + TOTP code.
/// Every attempt is an ECS authentication event, run through the detection
/// rules (brute force, password spraying, ...).
///
/// Example:
///   vigie radius --data /var/lib/vigie --events /var/log/vigie/auth.jsonl --alerts -
#[derive(clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Gateways registered with `vigie mfa client add` authenticate users with
password + TOTP code. Every attempt is an ECS authentication event, run through
the detection rules (brute force, password spraying, ...).

Example:
  vigie radius --data /var/lib/vigie --events /var/log/vigie/auth.jsonl --alerts -"
)]
pub struct Args {
    /// Data folder (same as `vigie mfa --data` and `vigie manager --data`).
    #[arg(long, default_value = "/var/lib/vigie", value_name = "DIR")]
    data: PathBuf,
    /// UDP address(es) to serve (authentication and accounting on each).
    #[arg(long, value_name = "ADDR", default_values = ["0.0.0.0:1812", "0.0.0.0:1813"])]
    listen: Vec<SocketAddr>,
    /// Write every attempt as an ECS JSON line to FILE (appended), or "-" for stdout.
    #[arg(long, value_name = "FILE|-")]
    events: Option<PathBuf>,
    /// Write alerts as ECS JSON lines to FILE (appended), or "-" for stdout.
    /// Every alert goes there; the log shows the first alert of each rule,
    /// then how many more it raised in the minute.
    #[arg(long, value_name = "FILE|-")]
    alerts: Option<PathBuf>,
    /// Rule folder [default: rules/ next to the binary, or /usr/share/vigie/rules].
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    service: Service,
}

/// RadSec and LDAP, the same for `vigie radius` and `vigie manager`.
#[derive(clap::Args)]
pub struct Service {
    /// Also serve RadSec (RADIUS over TLS) here, e.g. 0.0.0.0:2083; needs
    /// --tls-cert, --tls-key and --tls-client-ca.
    #[arg(long, value_name = "ADDR")]
    radsec: Option<SocketAddr>,
    /// Server certificate chain (PEM) for RadSec.
    #[arg(long, value_name = "FILE", requires = "radsec")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM) for RadSec.
    #[arg(long, value_name = "FILE", requires = "radsec")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) that signs the gateways' client certificates for RadSec.
    #[arg(long, value_name = "FILE", requires = "radsec")]
    tls_client_ca: Option<PathBuf>,
    /// RADIUS/1.1 (RFC 9765, ALPN "radius/1.1": no MD5, no shared secret) on
    /// RadSec: allow (gateways that offer it get it, the others historic
    /// RadSec), require (TLS 1.3 and RADIUS/1.1 only), forbid.
    #[arg(
        long,
        value_name = "MODE",
        default_value = "allow",
        requires = "radsec"
    )]
    radius11: vigie_radius::radsec::Radius11,
    /// LDAP / Active Directory for users added with `--ldap`: ldap://host or ldaps://host.
    #[arg(long, value_name = "URL")]
    ldap_url: Option<String>,
    /// Bind name template with {user}: "uid={user},ou=people,dc=example,dc=org",
    /// "{user}@corp.example" (UPN) or "CORP\{user}" (sAMAccountName).
    #[arg(long, value_name = "TEMPLATE", requires = "ldap_url")]
    ldap_bind: Option<String>,
    /// Use StartTLS on an ldap:// URL.
    #[arg(long, requires = "ldap_url")]
    ldap_starttls: bool,
    /// Seconds an Access-Reject waits, counted from the request's arrival
    /// (0 to 10, decimals allowed; 0 answers at once). Slows guessing, and
    /// every reject takes the same time whatever failed, so the timing does
    /// not tell an unknown user from a wrong password or a wrong code.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_reject_delay)]
    reject_delay: std::time::Duration,
}

fn parse_reject_delay(s: &str) -> Result<std::time::Duration, String> {
    let max = vigie_radius::MAX_REJECT_DELAY;
    match s.parse::<f64>() {
        Ok(v) if (0.0..=max.as_secs_f64()).contains(&v) => {
            Ok(std::time::Duration::from_secs_f64(v))
        }
        _ => Err(format!(
            "expected seconds from 0 to {} (e.g. 1 or 0.5)",
            max.as_secs()
        )),
    }
}

/// What the [`Service`] flags ask for.
pub struct ServiceParts {
    pub radsec: Option<vigie_radius::radsec::RadsecOptions>,
    pub ldap: Option<vigie_radius::ldap::LdapConfig>,
    pub reject_delay: std::time::Duration,
}

impl Service {
    /// The RadSec listener, LDAP directory and reject delay these flags ask for.
    pub fn parts(self) -> anyhow::Result<ServiceParts> {
        let radsec = match (self.radsec, self.tls_cert, self.tls_key, self.tls_client_ca) {
            (Some(listen), Some(cert), Some(key), Some(client_ca)) => {
                Some(vigie_radius::radsec::RadsecOptions {
                    listen,
                    cert,
                    key,
                    client_ca,
                    radius11: self.radius11,
                })
            }
            (None, ..) => None,
            _ => anyhow::bail!("--radsec needs --tls-cert, --tls-key and --tls-client-ca"),
        };
        let ldap = match (self.ldap_url, self.ldap_bind) {
            (Some(url), Some(bind_template)) => Some(vigie_radius::ldap::LdapConfig {
                url,
                starttls: self.ldap_starttls,
                bind_template,
                timeout: std::time::Duration::from_secs(5),
            }),
            (None, _) => None,
            (Some(_), None) => anyhow::bail!("--ldap-url needs --ldap-bind"),
        };
        Ok(ServiceParts {
            radsec,
            ldap,
            reject_delay: self.reject_delay,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let parts = args.service.parts()?;
    vigie_radius::standalone::run(vigie_radius::standalone::Options {
        data: args.data,
        listen: args.listen,
        radsec: parts.radsec,
        events: args.events,
        alerts: args.alerts,
        rules: args.rules,
        ldap: parts.ldap,
        reject_delay: parts.reject_delay,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_reject_delay;
    use std::time::Duration;

    #[test]
    fn reject_delay_takes_decimal_seconds_up_to_the_maximum() {
        assert_eq!(parse_reject_delay("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_reject_delay("0"), Ok(Duration::ZERO));
        assert_eq!(parse_reject_delay("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_reject_delay("10"), Ok(Duration::from_secs(10)));
        for bad in ["10.5", "-1", "one", "", "NaN", "inf"] {
            let err = parse_reject_delay(bad).unwrap_err();
            assert!(err.contains("from 0 to 10"), "{bad}: {err}");
        }
    }
}

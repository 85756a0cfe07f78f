//! `vigie manager`: run the manager, and administer it (enrolment tokens,
//! agents, users, API tokens). All logic is in `vigie_manager::admin`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use vigie_manager::{Config, admin};

const HELP: &str = "\
Without a subcommand, runs the manager: the HTTPS API (and later the web
console) on --listen, and the agents' gRPC port (mutual TLS) on
--agent-listen. At first start it creates a CA in DATA/pki/ and the user
`admin`, whose one-time password is printed on the console output.

Storage: SQLite in DATA/vigie.db by default; PostgreSQL with --database-url.
Several managers can share one PostgreSQL database (and a copy of DATA/pki/).

Production: --listen 0.0.0.0:8443 behind your firewall, agents on :8444.

VPN two-factor (RADIUS): the manager also serves RADIUS on 0.0.0.0:1812
(authentication) and 0.0.0.0:1813 (accounting) when at least one VPN gateway
(NAS client) is registered at start with `vigie mfa client add --data DATA`;
--radius-listen chooses the address (and starts it even without NAS client),
--no-radius turns it off. VPN logins are stored as events of the host
\"HOSTNAME VPN (RADIUS)\" and run through the built-in rules (brute force,
password spraying, ...); their alerts appear like any agent's. The startup
log says whether RADIUS runs and where. RadSec (--radsec with --tls-cert,
--tls-key, --tls-client-ca) and LDAP users (--ldap-url, --ldap-bind) take the
same flags as `vigie radius`. With PostgreSQL, every manager that serves
RADIUS needs the same DATA/keys/mfa.key (it encrypts the TOTP secrets).

Examples:
  vigie manager --data /var/lib/vigie
  vigie manager --database-url postgres://vigie@db/vigie --listen 0.0.0.0:8443
  vigie manager --data /var/lib/vigie --radius-listen 192.0.2.1:1812
  vigie manager token create --org townhall --expires 24h
  vigie agent --manager https://manager.example:8444 --enroll-token TOKEN";

#[derive(clap::Args)]
#[command(after_long_help = HELP, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
    /// Address of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Address of the agents' gRPC service (mutual TLS).
    #[arg(long, default_value = "0.0.0.0:8444")]
    agent_listen: SocketAddr,
    /// Extra DNS names or IP addresses for the server certificate (agents
    /// must reach the manager by one of them). localhost, 127.0.0.1, ::1 and
    /// this machine's hostname are always included.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Keep telemetry this long (alerts, incidents and the audit log stay).
    #[arg(long, default_value = "30d")]
    retention: String,
    #[command(flatten)]
    radius: Radius,
}

/// The VPN two-factor RADIUS service run by the manager.
#[derive(clap::Args)]
struct Radius {
    /// Serve RADIUS (UDP) on ADDR, repeatable; a port that cannot be had
    /// stops the start. [default: 0.0.0.0:1812 and 0.0.0.0:1813, only when
    /// a NAS client is registered]
    #[arg(long, value_name = "ADDR", conflicts_with = "no_radius")]
    radius_listen: Vec<SocketAddr>,
    /// Do not serve RADIUS.
    #[arg(long)]
    no_radius: bool,
    #[command(flatten)]
    service: super::radius::Service,
}

impl Radius {
    fn config(self) -> anyhow::Result<vigie_manager::radius::RadiusConfig> {
        use vigie_manager::radius::{Mode, RadiusConfig};
        let mode = if self.no_radius {
            Mode::Off
        } else if self.radius_listen.is_empty() {
            Mode::Auto
        } else {
            Mode::Listen(self.radius_listen)
        };
        let parts = self.service.parts()?;
        let (radsec, ldap) = (parts.radsec, parts.ldap);
        if self.no_radius && radsec.is_some() {
            anyhow::bail!("--radsec and --no-radius contradict each other");
        }
        Ok(RadiusConfig {
            mode,
            radsec,
            ldap,
            reject_delay: parts.reject_delay,
            ..RadiusConfig::default()
        })
    }
}

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Data directory: vigie.db (SQLite) and pki/.
    #[arg(long, default_value = "/var/lib/vigie/manager", global = true)]
    data: PathBuf,
    /// PostgreSQL URL (postgres://user:password@host/db); SQLite when absent.
    #[arg(long, env = "VIGIE_DATABASE_URL", global = true)]
    database_url: Option<String>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// One-time enrolment tokens for agents.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Enrolled agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Console and API users.
    #[command(subcommand)]
    User(UserCmd),
    /// API tokens for scripts.
    #[command(subcommand)]
    ApiToken(ApiTokenCmd),
}

#[derive(clap::Subcommand)]
enum TokenCmd {
    /// Create a one-time enrolment token; the token is on the last line.
    ///
    /// Example: vigie manager token create --org townhall --expires 24h
    Create {
        /// Organisation (tenant) the agent will belong to.
        #[arg(long, default_value = "default")]
        org: String,
        /// Validity (e.g. 30m, 24h, 7d).
        #[arg(long, default_value = "24h")]
        expires: String,
    },
    /// Revoke an enrolment token (its id or the token itself).
    Revoke { token: String },
}

#[derive(clap::Subcommand)]
enum AgentCmd {
    /// Revoke an agent's certificate: it is refused at once, and connected
    /// streams are closed within a second.
    ///
    /// Example: vigie manager agent revoke pc-accueil-03 --reason "stolen laptop"
    Revoke {
        /// Host id or hostname.
        host: String,
        /// Limit to one organisation.
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(clap::Subcommand)]
enum UserCmd {
    /// Add a user; the password is read from VIGIE_PASSWORD or standard input.
    ///
    /// Example: echo 'a long passphrase' | vigie manager user add alice --role analyst
    Add {
        username: String,
        /// admin, analyst or read-only.
        #[arg(long, default_value = "read-only")]
        role: String,
        #[arg(long, default_value = "default")]
        org: String,
    },
}

#[derive(clap::Subcommand)]
enum ApiTokenCmd {
    /// Create an API token (printed once, on the last line).
    ///
    /// Example: vigie manager api-token create --name siem --role read-only
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "read-only")]
        role: String,
        #[arg(long, default_value = "default")]
        org: String,
        /// Validity (e.g. 90d); no expiry when absent.
        #[arg(long)]
        expires: Option<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = Config::new(&args.common.data);
    config.database_url = args.common.database_url.clone();
    config.listen = args.listen;
    config.agent_listen = args.agent_listen;
    config.names.extend(args.names);
    config.retention = admin::parse_duration(&args.retention)?;
    config.radius = args.radius.config()?;
    match args.command {
        None => admin::serve(config)?,
        Some(Command::Token(TokenCmd::Create { org, expires })) => {
            let ttl = admin::parse_duration(&expires)?;
            let (id, token) = admin::create_enroll_token(&config, &org, ttl)?;
            println!("Enrolment token {id} for organisation {org}, valid {expires}, usable once:");
            println!("{token}");
        }
        Some(Command::Token(TokenCmd::Revoke { token })) => {
            if !admin::revoke_enroll_token(&config, &token)? {
                anyhow::bail!("no such unrevoked token");
            }
            println!("revoked");
        }
        Some(Command::Agent(AgentCmd::Revoke { host, org, reason })) => {
            let ids = admin::revoke_agent(&config, org.as_deref(), &host, &reason)?;
            if ids.is_empty() {
                anyhow::bail!("no agent {host:?} to revoke");
            }
            for id in ids {
                println!("revoked {id}");
            }
        }
        Some(Command::User(UserCmd::Add {
            username,
            role,
            org,
        })) => {
            let password = match std::env::var("VIGIE_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.len() < 12 {
                anyhow::bail!("password shorter than 12 characters");
            }
            let id = admin::add_user(&config, &org, &username, &password, &role)?;
            println!("user {username} ({role}, organisation {org}) created: {id}");
        }
        Some(Command::ApiToken(ApiTokenCmd::Create {
            name,
            role,
            org,
            expires,
        })) => {
            let ttl = expires.as_deref().map(admin::parse_duration).transpose()?;
            let token = admin::create_api_token(&config, &org, &name, &role, ttl)?;
            println!("API token {name:?} ({role}, organisation {org}):");
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

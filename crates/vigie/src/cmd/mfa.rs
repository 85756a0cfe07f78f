//! `vigie mfa`: VPN two-factor administration (users, enrolment, NAS clients).

use std::path::PathBuf;
use std::process::ExitCode;

/// Manage VPN two-factor authentication: NAS clients (VPN gateways), users and
/// their authenticator apps. Acts on the data folder shared with
/// `vigie manager` and `vigie radius`.
///
/// Example, from nothing to a working login:
///   vigie mfa client add vpn-gw --address 192.0.2.10 --secret-file /root/vpn.secret
///   echo 'their password' | vigie mfa user add alice --password-stdin
///   vigie mfa enroll alice            # scan the QR code with the phone
///   vigie radius                      # then log in with password+6 digits
#[derive(clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Example, from nothing to a working login:
  vigie mfa client add vpn-gw --address 192.0.2.10 --secret-file /root/vpn.secret
  echo 'their password' | vigie mfa user add alice --password-stdin
  vigie mfa enroll alice            # scan the QR code with the phone
  vigie radius                      # then log in with password+6 digits

Acts on the data folder shared with `vigie manager` and `vigie radius`."
)]
pub struct Args {
    /// Data folder: vigie.db (the database) and keys/mfa.key (encrypts the
    /// TOTP and NAS secrets; back it up apart from the database).
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/vigie",
        value_name = "DIR"
    )]
    data: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// NAS clients: the VPN gateways allowed to ask.
    #[command(subcommand)]
    Client(ClientCommand),
    /// VPN users.
    #[command(subcommand)]
    User(UserCommand),
    /// Give USER a new TOTP secret: prints an otpauth:// URI and a QR code to
    /// scan with an authenticator app (replaces any previous enrolment).
    ///
    /// Example: vigie mfa enroll alice
    Enroll {
        user: String,
        /// HMAC algorithm: SHA1 (what every app supports), SHA256, SHA512.
        #[arg(long, default_value = "SHA1")]
        algorithm: String,
        /// Code length: 6 or 8.
        #[arg(long, default_value_t = 6)]
        digits: u32,
        /// Name shown in the authenticator app.
        #[arg(long, default_value = "Vigie")]
        issuer: String,
        /// Print the URI only, no QR code.
        #[arg(long)]
        no_qr: bool,
    },
}

#[derive(clap::Subcommand)]
enum ClientCommand {
    /// Register a VPN gateway.
    ///
    /// Example: vigie mfa client add vpn-gw --address 192.0.2.0/28 --secret-file gw.secret
    Add {
        name: String,
        /// Address or CIDR network the gateway sends from.
        #[arg(long, value_name = "CIDR")]
        address: String,
        /// File holding the shared secret (at least 16 characters; "-" reads stdin).
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
        /// How the code travels: "append" (password123456 or password,123456;
        /// OpenVPN's SCRV1 static challenge is always understood) or
        /// "challenge" (password first, then an Access-Challenge asks the code).
        #[arg(long, default_value = "append")]
        code: String,
        /// Accept requests without Message-Authenticator from this old gateway
        /// (BlastRADIUS risk; requests with Proxy-State are still dropped).
        #[arg(long)]
        legacy_no_message_authenticator: bool,
        /// Organisation (tenant) whose manager records this gateway's logins
        /// (events, alerts); the manager's default organisation when absent.
        #[arg(long)]
        org: Option<String>,
    },
    /// List gateways (secrets are never shown).
    List,
    /// Remove a gateway.
    Remove { name: String },
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Add a user with a local password (read from the first line of stdin)
    /// or whose password is checked by the LDAP directory.
    ///
    /// Example: echo 'pa55word' | vigie mfa user add alice --password-stdin
    Add {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        ldap: bool,
    },
    /// List users: backend, enrolment, failures, clock drift, locked or disabled.
    List,
    /// Refuse every login of USER until enabled again.
    Disable { name: String },
    /// Allow USER again after `disable`.
    Enable { name: String },
    /// Clear USER's failure count and lock.
    Unlock { name: String },
    /// Forget USER's authenticator (lost phone); enrol again afterwards.
    Reset { name: String },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    use vigie_radius::cli;
    let d = &args.data;
    match args.command {
        Command::Client(ClientCommand::Add {
            name,
            address,
            secret_file,
            code,
            legacy_no_message_authenticator,
            org,
        }) => cli::client_add(
            d,
            &name,
            &address,
            &secret_file,
            &code,
            legacy_no_message_authenticator,
            org.as_deref(),
        ),
        Command::Client(ClientCommand::List) => cli::client_list(d),
        Command::Client(ClientCommand::Remove { name }) => cli::client_remove(d, &name),
        Command::User(UserCommand::Add {
            name,
            password_stdin,
            ldap,
        }) => cli::user_add(d, &name, password_stdin, ldap),
        Command::User(UserCommand::List) => cli::user_list(d),
        Command::User(UserCommand::Disable { name }) => cli::user_change(d, &name, "disable"),
        Command::User(UserCommand::Enable { name }) => cli::user_change(d, &name, "enable"),
        Command::User(UserCommand::Unlock { name }) => cli::user_change(d, &name, "unlock"),
        Command::User(UserCommand::Reset { name }) => cli::user_change(d, &name, "reset"),
        Command::Enroll {
            user,
            algorithm,
            digits,
            issuer,
            no_qr,
        } => cli::enroll(d, &user, &algorithm, digits, &issuer, !no_qr),
    }
}

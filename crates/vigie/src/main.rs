//! `vigie`: the one binary. Each subcommand lives in `cmd/<name>.rs`, parses
//! its arguments and calls the crate that does the work; no logic here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod allocator;
mod cmd;

/// Vigie: endpoint detection and response, and two-factor authentication for
/// your VPN.
#[derive(Parser)]
#[command(name = "vigie", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the endpoint agent (eBPF sensor + detection), or act on it
    /// (isolate, release, status...).
    Agent(cmd::agent::Args),
    /// Hunt for attacks in log files (EVTX, JSON lines) with Sigma rules.
    Hunt(cmd::hunt::Args),
    /// Run the manager (agents' enrolment and ingest, API), or administer it
    /// (enrolment tokens, agents, users).
    Manager(cmd::manager::Args),
    /// Check, list and update detection rules.
    #[command(subcommand)]
    Rules(cmd::rules::Command),
    /// VPN two-factor administration: NAS clients, users, enrolment (QR code).
    Mfa(cmd::mfa::Args),
    /// Run the VPN two-factor RADIUS / RadSec service alone.
    Radius(cmd::radius::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Agent(args) => {
            allocator::favour_memory();
            cmd::agent::run(args)
        }
        Command::Hunt(args) => cmd::hunt::run(args),
        Command::Manager(args) => cmd::manager::run(args),
        Command::Rules(command) => cmd::rules::run(command, cli.verbose),
        Command::Mfa(args) => cmd::mfa::run(args),
        Command::Radius(args) => cmd::radius::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("vigie: error: {err:#}");
            ExitCode::from(1)
        }
    }
}

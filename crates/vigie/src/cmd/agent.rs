//! `vigie agent`: run the endpoint agent (with a manager, or `--standalone`),
//! print its default configuration, or act on a running agent (`isolate`,
//! `release`, `status`, ... from agent_actions).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use super::agent_actions::{self, AgentAction};

/// Run the Vigie endpoint agent, or act on it.
///
/// The agent runs the eBPF sensor (fallback: proc connector + fanotify,
/// reported as degraded mode), the Sigma detection engine and the automatic
/// response policy (default: critical alert → kill + isolate, high → kill;
/// see the `[response]` section of --print-default-config). A saved
/// isolation is re-applied at start, before anything connects.
///
/// With a manager: the first start enrols with a one-time token (identity
/// saved in the state directory); later starts reuse it. Events, alerts and
/// actions go to the manager through an on-disk spool (nothing lost while
/// it is unreachable); the manager's commands (isolate, release, kill,
/// quarantine, restore, rules, policy) come back with verified outcomes.
/// The link to the manager keeps working while the host is isolated.
///
/// `--standalone`: no manager; everything stays in the local outputs.
/// SIGTERM or Ctrl-C flushes and exits 0; SIGHUP reloads the rules. Needs
/// root.
///
/// Defaults: alerts and actions to standard output, events nowhere, rules
/// from the configuration file only, state in /var/lib/vigie/agent.
///
/// Examples:
///   vigie agent --manager https://manager.example:8444 --enroll-token SECRET.FINGERPRINT --rules /etc/vigie/sigma/linux
///   vigie agent --rules /etc/vigie/sigma/linux          (later starts: saved identity)
///   vigie agent --standalone --rules /etc/vigie/sigma/linux --events /var/log/vigie/events.jsonl --alerts -
///   vigie agent --print-default-config > /etc/vigie/agent.toml
#[derive(ClapArgs, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<AgentAction>,

    /// Run locally without a manager: sensor → detection → response →
    /// outputs.
    #[arg(long, conflicts_with_all = ["manager", "enroll_token"])]
    pub standalone: bool,

    /// The manager's agent URL (gRPC, mutual TLS), for the first start:
    /// `https://HOST:8444` (`vigie manager` prints it).
    #[arg(long, value_name = "URL", requires = "enroll_token")]
    pub manager: Option<String>,

    /// One-time enrolment token from `vigie manager token create` (first
    /// start only; ignored once enrolled).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "VIGIE_ENROLL_TOKEN",
        hide_env_values = true
    )]
    pub enroll_token: Option<String>,

    /// Folder of Sigma rules (repeatable), added to the configuration's.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,

    /// Write every event as an ECS JSON line to FILE (appended), or `-` for
    /// standard output. Default: the configuration's (nowhere).
    #[arg(long, value_name = "FILE|-")]
    pub events: Option<String>,

    /// Write alerts as ECS JSON lines to FILE (appended), or `-` for
    /// standard output. Default: the configuration's (standard output).
    #[arg(long, value_name = "FILE|-")]
    pub alerts: Option<String>,

    /// Write response actions (what, why, verified outcome, how to undo)
    /// as ECS JSON lines to FILE, or `-`. Default: the configuration's
    /// (standard output). Always also in STATE/actions.jsonl.
    #[arg(long, value_name = "FILE|-")]
    pub actions: Option<String>,

    /// Configuration file (TOML). See --print-default-config.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The agent's state directory.
    #[arg(long, env = "VIGIE_STATE_DIR", default_value = "/var/lib/vigie/agent")]
    pub state_dir: PathBuf,

    /// Use the fallback sensor even if eBPF loads (degraded mode; testing).
    #[arg(long)]
    pub fallback: bool,

    /// Print the default configuration, every key documented, and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(action) = args.action {
        return agent_actions::run(action, Some(&args.state_dir));
    }
    if args.print_default_config {
        print!("{}", vigie_agent::DEFAULT_CONFIG);
        return Ok(ExitCode::SUCCESS);
    }
    vigie_agent::run(vigie_agent::AgentOptions {
        config: args.config,
        rules: args.rules,
        events: args.events,
        alerts: args.alerts,
        actions: args.actions,
        state_dir: args.state_dir,
        force_fallback: args.fallback,
        standalone: args.standalone,
        manager: args.manager,
        enroll_token: args.enroll_token,
    })
}

//! `vigie agent`: run the endpoint agent (`--standalone`: sensor → detection
//! → ECS JSON lines, no manager), print its default configuration, or act on
//! a running agent (`isolate`, `release`, `status`, ... from agent_actions).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args as ClapArgs;

use super::agent_actions::{self, AgentAction};

/// Run the Vigie endpoint agent, or act on it.
///
/// `--standalone` runs the eBPF sensor (fallback: proc connector + fanotify,
/// reported as degraded mode) and the Sigma detection engine locally,
/// without a manager. Events and alerts are written as ECS JSON lines.
/// SIGTERM or Ctrl-C flushes and exits 0; SIGHUP reloads the rules. Needs
/// root.
///
/// Defaults: alerts to standard output, events nowhere, rules from the
/// configuration file only, state in /var/lib/vigie/agent.
///
/// Example:
///   vigie agent --standalone --rules /etc/vigie/sigma/linux --events /var/log/vigie/events.jsonl --alerts -
///   vigie agent --print-default-config > /etc/vigie/agent.toml
#[derive(ClapArgs, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<AgentAction>,

    /// Run locally without a manager: sensor → detection → outputs.
    #[arg(long)]
    pub standalone: bool,

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
    if !args.standalone {
        anyhow::bail!(
            "only standalone mode exists yet: run `vigie agent --standalone` (see --help)"
        );
    }
    vigie_agent::run_standalone(vigie_agent::Standalone {
        config: args.config,
        rules: args.rules,
        events: args.events,
        alerts: args.alerts,
        state_dir: args.state_dir,
        force_fallback: args.fallback,
    })
}

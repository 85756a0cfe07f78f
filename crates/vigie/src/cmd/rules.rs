//! `vigie rules`: check and update detection rules.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

const CHECK_HELP: &str = "\
Every .yml / .yaml file below the folders is read (recursively); each YAML
document in it (detection rule, correlation or filter) is reported as loaded,
unsupported or error, with the file, the line where the document starts (or
where the parser found the problem) and the reason. Totals come last.

Text output lists only the rules that did not load, unless --all (or the
global -v / --verbose) is given.

Exit status: 0 when the check ran (even if some rules did not load), 2 when no
rule could be read at all.

Examples:
  vigie rules check ./rules
  vigie rules check --verbose ~/sigma/rules ~/sigma/rules-emerging-threats
  vigie rules check --format json ./rules > report.json";

#[derive(clap::Subcommand)]
pub enum Command {
    /// Load Sigma rules and report, per rule, whether it loaded and why not.
    #[command(after_long_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Download, verify and install SigmaHQ's rules into your rule folder.
    #[command(after_long_help = super::rules_update::UPDATE_HELP)]
    Update(super::rules_update::UpdateArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Folders (or single files' folders) of Sigma rules, searched recursively.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,

    /// Output format: `text` for people, `json` for scripts (every rule and
    /// the totals).
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,

    /// In text mode, list loaded rules too (as does the global --verbose).
    #[arg(long)]
    all: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

/// `verbose`: the global -v count.
pub fn run(command: Command, verbose: u8) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => check(args, verbose > 0),
        Command::Update(args) => super::rules_update::run(args),
    }
}

fn check(args: CheckArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let (_engine, report) = vigie_detect::Engine::load(&args.dirs);
    let mut out = std::io::stdout().lock();
    match args.format {
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        CheckFormat::Text => write!(
            out,
            "{}",
            vigie_detect::render_report(&report, args.all || verbose)
        )
        .context("writing the report")?,
    }
    Ok(if report.nothing_read() {
        eprintln!("vigie: no rule could be read in the given folders");
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

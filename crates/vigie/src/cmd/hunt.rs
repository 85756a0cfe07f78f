//! `vigie hunt`: Sigma rules over log files.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use vigie_event::Level;
use vigie_hunt::output::Format;

const AFTER_HELP: &str = "\
Inputs:
  .evtx            Windows event logs (Sysmon, Security, System, PowerShell...)
  .json / .jsonl   one JSON object per line, or pretty-printed objects one after
                   another: Vigie's own ECS events, flat key/value objects, or
                   the {\"Event\":{\"System\":..,\"EventData\":..}} rendering of EVTX
  Folders are searched recursively for those extensions.

Rules:
  Without --rules, Vigie's built-in rule pack and the user's rule folder are
  used (the folder is $VIGIE_RULES_DIR, else /var/lib/vigie/rules as root, else
  ~/.local/share/vigie/rules; `vigie rules update` installs SigmaHQ's rules
  there). With --rules, only the folders given.

Bad input:
  Corrupt EVTX chunks, invalid UTF-8, lines that are not JSON and unreadable
  files are reported on stderr with their path, counted, and skipped.

Exit status: 0 when the hunt ran (with or without detections), 2 on usage
errors or when no input could be read at all.

Examples:
  vigie hunt C:/Logs/Sysmon.evtx
  vigie hunt --rules ./sigma/rules --min-level high --format jsonl -o hits.jsonl logs/
  vigie hunt --format csv agent-events.jsonl > detections.csv";

/// Hunt for attacks in log files (EVTX, JSON lines) with Sigma rules.
#[derive(clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct Args {
    /// Files or folders to hunt in (folders are searched recursively).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// A folder of Sigma rules; repeat for several. Default: the built-in
    /// pack plus the user's rule folder (see below).
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,

    /// Show only detections at or above this level.
    #[arg(long, value_name = "LEVEL", default_value = "low",
          value_parser = ["informational", "low", "medium", "high", "critical"])]
    min_level: String,

    /// How to write detections.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,

    /// Write detections to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Files read in parallel. Default: the number of CPU cores.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Also write the closing summary as JSON to FILE (for scripts).
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,

    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutputFormat {
    /// Aligned columns for people, coloured on a terminal.
    Table,
    /// One ECS JSON alert per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let min_level: Level = args.min_level.parse()?;
    let load_started = Instant::now();
    let (engine, report) = if args.rules.is_empty() {
        let user_dir = vigie_rules::user_rules_dir();
        let dirs: Vec<PathBuf> = user_dir.is_dir().then_some(user_dir).into_iter().collect();
        vigie_detect::Engine::load_with_documents(&dirs, vigie_rules::pack())
    } else {
        for dir in &args.rules {
            if !dir.exists() {
                eprintln!("vigie: error: rule folder {} does not exist", dir.display());
                return Ok(ExitCode::from(2));
            }
        }
        vigie_detect::Engine::load(&args.rules)
    };
    let load_time = load_started.elapsed();
    let problems = report.total() - report.loaded();
    eprintln!(
        "rules: {} loaded in {:.2} s{}",
        report.loaded(),
        load_time.as_secs_f64(),
        if problems > 0 {
            format!(" ({problems} not loaded: see `vigie rules check`)")
        } else {
            String::new()
        }
    );

    let (files, input_problems) = vigie_hunt::input::discover(&args.paths);
    for problem in &input_problems {
        eprintln!("vigie: {}: {}", problem.path.display(), problem.reason);
    }
    if files.is_empty() {
        eprintln!("vigie: error: no input file (.evtx, .json, .jsonl) found");
        return Ok(ExitCode::from(2));
    }

    let stdout_is_tty = std::io::stdout().is_terminal();
    let (out, color): (Box<dyn Write + Send>, bool) = match &args.output {
        Some(path) => (
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )),
            false,
        ),
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout())),
            stdout_is_tty,
        ),
    };
    let format = match args.format {
        OutputFormat::Table => Format::Table,
        OutputFormat::Jsonl => Format::Jsonl,
        OutputFormat::Csv => Format::Csv,
    };
    let mut writer = vigie_hunt::output::writer(format, out, color);
    let options = vigie_hunt::HuntOptions {
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        min_level,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
        classify: vigie_detect::windows_logsource,
    };
    let summary = vigie_hunt::run_with_engine(&files, &options, &engine, writer.as_mut())
        .context("writing detections failed")?;
    eprintln!("{summary}");
    if let Some(path) = &args.stats {
        let stats = serde_json::json!({
            "rules_loaded": report.loaded(),
            "rules_total": report.total(),
            "rule_load_seconds": load_time.as_secs_f64(),
            // Rule indexes are built on the first event of each logsource,
            // during the hunt: this is their share of `seconds`.
            "rule_index_build_seconds": engine.index_build_seconds(),
            "files": summary.files,
            "files_failed": summary.files_failed,
            "bytes": summary.bytes,
            "events": summary.events,
            "detections": summary.detections_total(),
            "skipped": summary.skipped_total(),
            "seconds": summary.elapsed.as_secs_f64(),
            "events_per_second": summary.events_per_second(),
        });
        std::fs::write(path, stats.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if summary.nothing_read() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

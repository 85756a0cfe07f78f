//! `vigie-seed-incident`: plays the incident Vigie was born from, end to
//! end, in network namespaces, and prints the measured timeline. Argument
//! parsing and the exit code only; the work is in `vigie_scenario::seed`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Builds a small public body in network namespaces (VPN gateway, manager,
/// file server and workstation with their agents, an attacker outside),
/// runs ordinary work, then the attack step by step (VPN spraying and brute
/// force, foothold, persistence, credential access, download-and-execute,
/// ransomware), checks the response (kill, isolation, incident, release)
/// and prints a timeline table with the measured delays against the
/// targets. Exits 1 if a target is missed or a check fails. Needs root.
/// Everything it creates is removed at the end, also on Ctrl-C.
///
/// Example (what scripts/scenario/seed-incident does):
///   vigie-seed-incident --vigie target/debug/vigie
#[derive(Parser)]
#[command(name = "vigie-seed-incident", version, verbatim_doc_comment)]
struct Args {
    /// The `vigie` binary [default: `vigie` next to this program].
    #[arg(long, value_name = "FILE")]
    vigie: Option<PathBuf>,
    /// The encryption simulator [default: `vigie-ransim` next to this program].
    #[arg(long, value_name = "FILE")]
    ransim: Option<PathBuf>,
    /// Files per second the simulator encrypts.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Keep the logs (manager, agents, workloads, incident report) in DIR
    /// [default: a temporary directory removed at the end].
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// Do not plant canary files in the share: measure the ransomware
    /// behaviour detector alone (canaries usually stop the simulator first).
    #[arg(long)]
    no_canaries: bool,
}

fn beside_me(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> ExitCode {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("vigie-seed-incident: run as root (network namespaces, eBPF, nftables)");
        return ExitCode::from(2);
    }
    let opts = vigie_scenario::seed::Options {
        vigie: args.vigie.unwrap_or_else(|| beside_me("vigie")),
        ransim: args.ransim.unwrap_or_else(|| beside_me("vigie-ransim")),
        rate: args.rate,
        logs: args.logs,
        canaries: !args.no_canaries,
    };
    for (what, p) in [("vigie", &opts.vigie), ("vigie-ransim", &opts.ransim)] {
        if !p.is_file() {
            eprintln!(
                "vigie-seed-incident: {what} not found at {} (build it: cargo build -p vigie -p vigie-scenario)",
                p.display()
            );
            return ExitCode::from(2);
        }
    }
    if let Err(e) = vigie_scenario::seed::install_signal_handlers() {
        eprintln!("vigie-seed-incident: {e:#}");
        return ExitCode::from(2);
    }
    let outcome = match vigie_scenario::seed::run(&opts) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vigie-seed-incident: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("\nTimeline of the seed incident:\n");
    outcome.print_table();
    if outcome.passed() {
        println!("\nAll targets met, all checks passed.");
        ExitCode::SUCCESS
    } else {
        println!("\nFAILED: a target was missed or a check failed (see above).");
        ExitCode::from(1)
    }
}

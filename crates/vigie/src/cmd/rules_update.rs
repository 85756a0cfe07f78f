//! `vigie rules update`: install SigmaHQ's rules into the user's rule folder.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

pub const UPDATE_HELP: &str = "\
Downloads SigmaHQ's release archive (or takes a local archive, for hosts
without internet access), checks it, and installs its rules into the rule
folder in one step. Checks: the SHA-256 when --sha256 is given; a readable zip
whose entries stay inside the folder and within size bounds; at least 90 % of
its rules load with Vigie's engine. The folder it replaces is kept next to it
as <folder>.previous. Nothing changes when a check fails.

SigmaHQ's rules are their authors' work under the Detection Rule License 1.1;
Vigie does not ship them.

Examples:
  vigie rules update
  vigie rules update --from ./sigma_all_rules.zip --sha256 3b1f...
  vigie rules update --dest /srv/vigie/rules --from https://mirror.example/sigma_all_rules.zip";

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Where to get the archive: an http(s) URL or a local .zip file.
    #[arg(long, value_name = "URL|FILE", default_value = vigie_rules::update::DEFAULT_URL)]
    from: String,

    /// The archive's expected SHA-256 (hex); refused if it differs.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,

    /// The rule folder to install into. Default: the user's rule folder
    /// ($VIGIE_RULES_DIR, else /var/lib/vigie/rules as root, else
    /// ~/.local/share/vigie/rules).
    #[arg(long, value_name = "DIR")]
    dest: Option<PathBuf>,
}

pub fn run(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let dest = args.dest.unwrap_or_else(vigie_rules::user_rules_dir);
    let options = vigie_rules::update::UpdateOptions {
        from: args.from,
        sha256: args.sha256,
        dest,
    };
    eprintln!("fetching {}", options.from);
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: u64, total: Option<u64>| {
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
    };
    let result = vigie_rules::update::update(&options, &mut progress);
    bar.finish_and_clear();
    let report = result.context("rules update failed; the rule folder was not changed")?;
    println!(
        "installed {} rule files into {} ({} of {} rules load; archive {} bytes, sha256 {})",
        report.rule_files,
        report.dest.display(),
        report.rules_loaded,
        report.rules_total,
        report.archive_bytes,
        report.sha256
    );
    if let Some(previous) = &report.previous {
        println!("the previous rules are kept in {}", previous.display());
    }
    Ok(ExitCode::SUCCESS)
}

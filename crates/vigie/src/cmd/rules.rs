use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Load rules and report.
    Check,
}

pub fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rules is being built")
}

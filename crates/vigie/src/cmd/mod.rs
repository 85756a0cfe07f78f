//! One module per subcommand: `Args`/`Command` (clap) and `run`.

pub mod agent;
// Mounted under `vigie agent` by cmd/agent.rs.
pub mod agent_actions;
pub mod hunt;
pub mod manager;
pub mod mfa;
pub mod radius;
pub mod rules;
pub mod rules_update;

/// `tracing` to stderr; `RUST_LOG` wins over `-v`.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn,vigie=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

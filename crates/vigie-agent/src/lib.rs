//! vigie-agent: the wiring of the endpoint agent, and nothing else.
//!
//! sensor ([`vigie_sensor::Sensor`]) → detection ([`vigie_detect::Engine`])
//! → outputs (ECS JSON lines of events and alerts). Later: policy → respond,
//! and spool → uplink to the manager. No detection, sensing or response
//! logic lives here.
//!
//! Main types: [`AgentConfig`] (one TOML file, documented defaults in
//! [`DEFAULT_CONFIG`]), [`Standalone`] (the options of
//! `vigie agent --standalone`), [`run_standalone`].

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vigie_detect::Engine;
use vigie_sensor::{Sensor, SensorConfig};

/// The agent's configuration file, with every default documented. Printed
/// by `vigie agent --print-default-config`; a test checks it parses to
/// [`AgentConfig::default`].
pub const DEFAULT_CONFIG: &str = r#"# Vigie agent configuration. Every value shown is the default.

[detect]
# Folders of Sigma rules (searched recursively for .yml/.yaml). Command-line
# --rules options are added to these.
rules = []

[output]
# Where to write events and alerts as ECS JSON lines: a file path (appended),
# "-" for standard output, or "" for nowhere.
events = ""
alerts = "-"

[sensor]
# Bytes of argv copied per exec (64..4095); longer argv is cut and flagged
# process.vigie.args_truncated.
arg_max = 4095
# Kernel ring buffer size in MiB (rounded up to a power of two). Events that
# do not fit are counted and reported as health events, never silently lost.
ring_buffer_mb = 16
# Event families.
file_events = true
network_events = true
dns_events = true
# Path prefixes whose file events are dropped in the kernel (absolute paths,
# at most 128 bytes each).
noise_paths = ["/proc/", "/sys/"]
# Executables (exact path) whose file/network events are dropped in the
# kernel; their exec and exit are still reported.
noise_executables = []
# Drop the agent's own file and network events (its outputs would feed back).
ignore_self = true
# Executables larger than this (MiB) are not hashed.
max_hash_mb = 256
# Run the fallback sensor (proc connector + fanotify) even if eBPF loads.
force_fallback = false
# When eBPF cannot load, run the fallback sensor (degraded mode) instead of
# failing.
fallback_on_failure = true
"#;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub detect: DetectConfig,
    pub output: OutputConfig,
    pub sensor: SensorConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    pub rules: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    pub events: String,
    pub alerts: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            events: String::new(),
            alerts: "-".into(),
        }
    }
}

impl AgentConfig {
    /// Reads a TOML file; errors name the file and the bad key.
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read configuration {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("configuration {}", path.display()))
    }
}

/// Options of `vigie agent --standalone` (command line over file).
#[derive(Debug, Clone, Default)]
pub struct Standalone {
    pub config: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub events: Option<String>,
    pub alerts: Option<String>,
    pub state_dir: PathBuf,
    pub force_fallback: bool,
}

fn open_output(spec: &str) -> Result<Option<Box<dyn Write + Send>>> {
    Ok(match spec {
        "" => None,
        "-" => Some(Box::new(BufWriter::new(std::io::stdout()))),
        path => Some(Box::new(BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open output {path}"))?,
        ))),
    })
}

fn load_engine(dirs: &[PathBuf]) -> Engine {
    let (engine, report) = Engine::load(dirs);
    tracing::info!(
        rules = engine.rule_count(),
        "detection rules loaded: {}",
        serde_json::to_string(&report.totals).unwrap_or_default()
    );
    engine
}

/// Runs sensor → detection → outputs until SIGTERM/SIGINT (flush, exit 0).
/// SIGHUP reloads the rules.
pub fn run_standalone(opts: Standalone) -> Result<ExitCode> {
    let mut cfg = match &opts.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    cfg.detect.rules.extend(opts.rules.iter().cloned());
    if let Some(e) = &opts.events {
        cfg.output.events = e.clone();
    }
    if let Some(a) = &opts.alerts {
        cfg.output.alerts = a.clone();
    }
    cfg.sensor.force_fallback |= opts.force_fallback;
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("create state directory {}", opts.state_dir.display()))?;

    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).context("install signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("install signal handler")?;

    let mut events_out = open_output(&cfg.output.events)?;
    let mut alerts_out = open_output(&cfg.output.alerts)?;
    let mut engine = load_engine(&cfg.detect.rules);

    let (tx, rx) = sync_channel(1 << 16);
    let sensor = Sensor::start(cfg.sensor.clone(), tx)?;
    tracing::info!(mode = sensor.mode().as_str(), "agent running");
    // Ready marker for scripts and tests: the probes are attached.
    let _ = File::create(opts.state_dir.join("agent.ready"));

    let handle = |ev: vigie_event::Event,
                  engine: &mut Engine,
                  events_out: &mut Option<Box<dyn Write + Send>>,
                  alerts_out: &mut Option<Box<dyn Write + Send>>|
     -> Result<()> {
        if let Some(w) = events_out {
            writeln!(w, "{}", serde_json::to_string(&ev)?)?;
        }
        for alert in engine.process(&ev) {
            if let Some(w) = alerts_out {
                writeln!(w, "{}", serde_json::to_string(&alert)?)?;
            }
        }
        Ok(())
    };

    let mut last_flush = Instant::now();
    let mut sensor = Some(sensor);
    loop {
        if hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading rules");
            engine = load_engine(&cfg.detect.rules);
        }
        if term.load(Ordering::Relaxed) {
            // Stop the probes (they drain the kernel buffer), then drain the
            // channel and flush: nothing seen is lost.
            if let Some(s) = sensor.take() {
                s.stop()?;
            }
            while let Ok(ev) = rx.try_recv() {
                handle(ev, &mut engine, &mut events_out, &mut alerts_out)?;
            }
            break;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => handle(ev, &mut engine, &mut events_out, &mut alerts_out)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the sensor stopped unexpectedly")
            }
        }
        if last_flush.elapsed() >= Duration::from_millis(500) {
            for w in [&mut events_out, &mut alerts_out].into_iter().flatten() {
                w.flush()?;
            }
            last_flush = Instant::now();
        }
    }
    for w in [&mut events_out, &mut alerts_out].into_iter().flatten() {
        w.flush()?;
    }
    let _ = std::fs::remove_file(opts.state_dir.join("agent.ready"));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_text_is_the_default() {
        let parsed: AgentConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(parsed, AgentConfig::default());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<AgentConfig>("[sensor]\narg_maxx = 1\n").unwrap_err();
        assert!(e.to_string().contains("arg_maxx"), "{e}");
    }
}

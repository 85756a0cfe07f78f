//! `vigie agent status`: what the running agent last wrote about itself
//! (`STATE/agent-status.json`, rewritten when it changes and every 5 s) with
//! the response state that vigie-respond reads from the state directory.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The running agent's own status file.
pub const STATUS_FILE: &str = "agent-status.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub pid: u32,
    pub started: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    /// "standalone" or "managed".
    pub mode: String,
    /// "ebpf" or "fallback".
    pub sensor: String,
    pub sensor_health: String,
    pub sensor_lost: u64,
    pub rules_loaded: usize,
    pub rule_dirs: Vec<String>,
    pub response_mode: String,
    pub manager_url: Option<String>,
    pub manager_connected: Option<bool>,
    pub spool_pending: Option<u64>,
    pub spool_dropped: Option<u64>,
}

pub(crate) fn write_status(state_dir: &Path, st: &AgentStatus) -> Result<()> {
    vigie_respond::state::write_atomic(
        &state_dir.join(STATUS_FILE),
        &serde_json::to_vec_pretty(st)?,
        0o600,
    )
}

/// Everything `vigie agent status` shows.
pub struct Status {
    /// `None`: no agent has written a status (never started, or stopped).
    pub agent: Option<AgentStatus>,
    /// Whether the process that wrote it is alive.
    pub agent_alive: bool,
    pub response: vigie_respond::Status,
}

/// Read the status of the agent that owns `state_dir`.
pub fn status(state_dir: &Path, last: usize) -> Result<Status> {
    let response = vigie_respond::Responder::open(state_dir)?.status(last)?;
    let path = state_dir.join(STATUS_FILE);
    let agent: Option<AgentStatus> = match std::fs::read(&path) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("{} is unreadable: {e}", path.display());
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let agent_alive = agent
        .as_ref()
        .is_some_and(|a| Path::new(&format!("/proc/{}", a.pid)).exists());
    Ok(Status {
        agent,
        agent_alive,
        response,
    })
}

pub fn status_json(s: &Status) -> String {
    let response: serde_json::Value =
        serde_json::from_str(&vigie_respond::status_json(&s.response)).unwrap_or_default();
    serde_json::to_string_pretty(&serde_json::json!({
        "agent": s.agent,
        "agent_running": s.agent_alive,
        "response": response,
    }))
    .expect("serialisable")
}

pub fn status_text(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    match &s.agent {
        None => {
            let _ = writeln!(o, "agent: not running (no status file)");
        }
        Some(a) => {
            let age = (chrono::Utc::now() - a.updated).num_seconds();
            let _ = writeln!(
                o,
                "agent: {} (pid {}, {} mode, started {}, status {}s old)",
                if s.agent_alive && age < 10 {
                    "running"
                } else {
                    "NOT RUNNING (stale status)"
                },
                a.pid,
                a.mode,
                a.started.format("%F %T"),
                age
            );
            let _ = writeln!(
                o,
                "sensor: {} ({}), {} event(s) lost",
                a.sensor_health, a.sensor, a.sensor_lost
            );
            let _ = writeln!(
                o,
                "rules loaded: {} (from {})",
                a.rules_loaded,
                a.rule_dirs.join(", ")
            );
            let _ = writeln!(o, "automatic response: {}", a.response_mode);
            match &a.manager_url {
                None => {
                    let _ = writeln!(o, "manager: none (standalone)");
                }
                Some(url) => {
                    let _ = writeln!(
                        o,
                        "manager: {url}, {}; spool: {} record(s) waiting, {} dropped",
                        if a.manager_connected == Some(true) {
                            "connected"
                        } else {
                            "NOT CONNECTED (records wait in the spool)"
                        },
                        a.spool_pending.unwrap_or(0),
                        a.spool_dropped.unwrap_or(0)
                    );
                }
            }
        }
    }
    o.push_str(&vigie_respond::status_text(&s.response));
    o
}

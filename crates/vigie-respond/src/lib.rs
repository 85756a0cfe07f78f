//! Vigie's response actions: what the agent does when it detects an attack,
//! safely and reversibly. This crate decides nothing about *whether* to act
//! (that is [`policy`], fed by detection); it acts, verifies, and records.
//!
//! * [`Responder`]: one agent's state directory ([`StateDir`]) and the actions
//!   on it: [`Responder::isolate`], [`Responder::release_with_code`],
//!   [`Responder::reconcile`] (call first thing at agent start),
//!   [`Responder::watch`] (restores a deleted or edited table within a second).
//! * [`isolation`]: the nftables table `inet vigie`, flow cutting, self-check.
//! * [`release`]: time-limited release/stop codes from a per-host secret.
//! * [`kill`]: kill a process tree, never a protected process, verified.
//! * [`quarantine`]: move a file into the state directory and restore it exactly.
//! * [`execblock`]: deny execution by SHA-256 or path with fanotify, fail-open.
//! * [`policy`]: the TOML policy and `decide(&Policy, &Alert, host) -> Vec<Action>`.
//! * [`supervisor`]: restart the agent when it dies; a stop without the code
//!   is a tamper event.
//!
//! * [`ResponseService`]: all of the above for the agent in one handle
//!   (reconcile, watcher, exec blocker, `on_alert`).
//!
//! Every action returns a `vigie_event::Event` (`Payload::Response`: what,
//! why, verified outcome, how to undo), also appended to `actions.jsonl` in
//! the state directory.

pub mod events;
pub mod execblock;
pub mod isolation;
pub mod kill;
pub mod policy;
pub mod quarantine;
pub mod release;
mod responder;
pub mod service;
pub mod state;
pub mod supervisor;

pub use events::Cause;
pub use isolation::{AGENT_MARK, IsolationSpec, SelfCheck, mark_socket};
pub use responder::{IsolationState, Responder, Status};
pub use service::{ResponseService, ServiceOptions};
pub use state::StateDir;

/// Whether BPF LSM programs could be used on this kernel: `bpf` must be in
/// the active LSM list. (On these machines loading them is refused anyway;
/// Vigie then relies on the supervisor and tamper detection.)
pub fn bpf_lsm_available() -> (bool, String) {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) => {
            let list = list.trim().to_string();
            let on = list.split(',').any(|l| l == "bpf");
            (
                on,
                if on {
                    format!("BPF LSM active (lsm={list})")
                } else {
                    format!(
                        "BPF LSM not active (lsm={list}): tamper protection by supervisor and detection"
                    )
                },
            )
        }
        Err(e) => (
            false,
            format!(
                "cannot read /sys/kernel/security/lsm ({e}): tamper protection by supervisor and detection"
            ),
        ),
    }
}

/// `vigie agent status --json`.
pub fn status_json(s: &Status) -> String {
    let mut v = serde_json::to_value(s).expect("serialisable");
    v["last_actions"] = serde_json::Value::Array(
        s.last_actions
            .iter()
            .map(|e| serde_json::to_value(e).expect("serialisable"))
            .collect(),
    );
    serde_json::to_string_pretty(&v).expect("serialisable")
}

/// `vigie agent status` for a person.
pub fn status_text(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "state directory: {}", s.state_dir);
    match &s.isolation {
        None => {
            let _ = writeln!(o, "isolation: not isolated");
        }
        Some(i) => {
            let _ = writeln!(
                o,
                "isolation: ISOLATED since {} by {}{}{}",
                i.since,
                i.actor,
                i.alert_id
                    .as_ref()
                    .map(|a| format!(" (alert {a})"))
                    .unwrap_or_default(),
                i.reason
                    .as_ref()
                    .map(|r| format!(", reason: {r}"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                o,
                "  table inet vigie: {}",
                if s.table_intact == Some(true) {
                    "present, as applied"
                } else {
                    "MISSING OR CHANGED (the agent restores it)"
                }
            );
            let _ = writeln!(
                o,
                "  allowed: {:?}; resolvers: {:?}; manager: {}",
                i.spec.allow,
                i.spec.resolvers,
                i.spec.manager.as_deref().unwrap_or("-")
            );
        }
    }
    let _ = writeln!(o, "quarantine: {} file(s)", s.quarantine.len());
    for q in &s.quarantine {
        let _ = writeln!(
            o,
            "  {}  {}  sha256 {}  {} bytes",
            q.id, q.original_path, q.sha256, q.size
        );
    }
    let _ = writeln!(
        o,
        "exec deny list: {} hash(es), {} path(s)",
        s.deny_list.sha256.len(),
        s.deny_list.paths.len()
    );
    let _ = writeln!(o, "tamper protection: {}", s.bpf_lsm);
    let _ = writeln!(o, "last actions:");
    for e in &s.last_actions {
        let _ = writeln!(o, "  {}  {}", e.time.format("%F %T"), state::summary(e));
    }
    o
}

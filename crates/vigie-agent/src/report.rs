//! Where the agent's records go: the local outputs (ECS JSON lines) and,
//! when the agent has a manager, the uplink's on-disk spool. Callable from
//! any thread that is not a tokio worker (the detection loop, the response
//! thread, the isolation watcher, blocking command tasks).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use vigie_event::{Alert, Event};
use vigie_uplink::UplinkHandle;

pub(crate) type Output = Option<Box<dyn Write + Send>>;

/// Open an output: a file path (appended), `-` for standard output, `""`
/// for nowhere.
pub(crate) fn open_output(spec: &str) -> Result<Output> {
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

pub(crate) struct Outputs {
    pub events: Output,
    pub alerts: Output,
    pub actions: Output,
}

/// The link, once it is up: the handle and the runtime it lives on.
struct Link {
    uplink: Arc<UplinkHandle>,
    rt: tokio::runtime::Handle,
}

pub struct Reporter {
    outputs: Mutex<Outputs>,
    link: OnceLock<Link>,
    /// Action events produced before the link existed (reconcile at start,
    /// the watcher), sent as soon as it does: the manager sees every action.
    early: Mutex<Vec<Event>>,
    managed: bool,
}

fn write_line(out: &mut Output, json: &str) {
    if let Some(w) = out
        && let Err(e) = writeln!(w, "{json}")
    {
        tracing::error!("cannot write an output: {e}");
    }
}

impl Reporter {
    /// `managed`: a link will be set (keep early actions for it).
    pub(crate) fn new(outputs: Outputs, managed: bool) -> Arc<Reporter> {
        Arc::new(Reporter {
            outputs: Mutex::new(outputs),
            link: OnceLock::new(),
            early: Mutex::new(Vec::new()),
            managed,
        })
    }

    pub(crate) fn set_link(&self, uplink: Arc<UplinkHandle>, rt: tokio::runtime::Handle) {
        // Drain and publish the link under the same lock that `action`
        // pushes under: an action from another thread lands either in the
        // drained list or on the link, never in a list nobody reads again.
        let mut early = self.early.lock().expect("lock");
        for ev in early.drain(..) {
            rt.block_on(uplink.send_action_result(&ev));
        }
        let _ = self.link.set(Link { uplink, rt });
    }

    /// Telemetry.
    pub fn event(&self, ev: &Event) {
        if let Ok(mut o) = self.outputs.lock()
            && o.events.is_some()
        {
            match serde_json::to_string(ev) {
                Ok(j) => write_line(&mut o.events, &j),
                Err(e) => tracing::error!("cannot serialise event {}: {e}", ev.id),
            }
        }
        if let Some(l) = self.link.get() {
            l.rt.block_on(l.uplink.send_event(ev));
        }
    }

    pub fn alert(&self, alert: &Alert) {
        if let Ok(mut o) = self.outputs.lock() {
            match serde_json::to_string(alert) {
                Ok(j) => write_line(&mut o.alerts, &j),
                Err(e) => tracing::error!("cannot serialise alert {}: {e}", alert.id),
            }
        }
        if let Some(l) = self.link.get() {
            l.rt.block_on(l.uplink.send_alert(alert));
        }
    }

    /// A response or tamper event (what, why, verified outcome, undo).
    pub fn action(&self, ev: &Event) {
        if let Ok(mut guard) = self.outputs.lock() {
            let o = &mut *guard;
            match serde_json::to_string(ev) {
                Ok(j) => {
                    write_line(&mut o.actions, &j);
                    write_line(&mut o.events, &j);
                }
                Err(e) => tracing::error!("cannot serialise action {}: {e}", ev.id),
            }
            // Actions are rare and someone may be waiting for them.
            for w in [&mut o.actions, &mut o.events].into_iter().flatten() {
                let _ = w.flush();
            }
        }
        if let Some(l) = self.link.get() {
            l.rt.block_on(l.uplink.send_action_result(ev));
        } else if self.managed {
            let mut early = self.early.lock().expect("lock");
            match self.link.get() {
                // The link was set while we waited for the lock.
                Some(l) => l.rt.block_on(l.uplink.send_action_result(ev)),
                None => early.push(ev.clone()),
            }
        }
    }

    pub(crate) fn flush(&self) {
        if let Ok(mut o) = self.outputs.lock() {
            let o = &mut *o;
            for w in [&mut o.events, &mut o.alerts, &mut o.actions]
                .into_iter()
                .flatten()
            {
                if let Err(e) = w.flush() {
                    tracing::error!("cannot flush an output: {e}");
                }
            }
        }
    }
}

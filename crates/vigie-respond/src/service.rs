//! Everything the agent needs from this crate in one handle: reconcile at
//! start, the isolation watcher, optionally the exec blocker, and
//! `on_alert` (policy → actions). The agent calls [`ResponseService::start`]
//! first thing, before it connects anywhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use vigie_event::{Alert, Event};

use crate::execblock::ExecBlocker;
use crate::policy::Policy;
use crate::responder::Responder;

#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// How often the watcher checks the table (200 ms: restored well within 1 s).
    pub watch_interval: Duration,
    /// Mounts to guard with the exec blocker; `None`: no exec blocking.
    /// [`crate::execblock::executable_mounts`] lists a host's mounts.
    pub exec_block_mounts: Option<Vec<PathBuf>>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            watch_interval: Duration::from_millis(200),
            exec_block_mounts: None,
        }
    }
}

/// A running response service. Dropping it stops the watcher and the exec
/// blocker; the isolation (on disk and in nftables) stays.
pub struct ResponseService {
    responder: Responder,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    blocker: Option<ExecBlocker>,
}

impl ResponseService {
    /// Reconcile (re-apply a saved isolation), then start the watcher and,
    /// if asked, the exec blocker. `on_event` gets every event they produce
    /// (tamper, restore, exec denial), from their own threads. Returns the
    /// service and the reconcile events.
    pub fn start(
        state_dir: &Path,
        options: ServiceOptions,
        on_event: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Result<(Self, Vec<Event>)> {
        let responder = Responder::open(state_dir)?;
        let (lsm_on, lsm) = crate::bpf_lsm_available();
        tracing::info!("response: {lsm}");
        if !lsm_on {
            tracing::info!("response: tampering is detected and answered, not prevented");
        }
        let reconciled = responder.reconcile()?;
        let on_event = Arc::new(on_event);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (r, stop, cb) = (responder.clone(), stop.clone(), on_event.clone());
            std::thread::Builder::new()
                .name("vigie-isolation-watch".into())
                .spawn(move || r.watch(&stop, options.watch_interval, |e| cb(e)))?
        };
        let blocker = match &options.exec_block_mounts {
            None => None,
            Some(mounts) => {
                let cb = on_event.clone();
                Some(ExecBlocker::start(
                    responder.state().clone(),
                    mounts,
                    move |e| cb(e),
                )?)
            }
        };
        Ok((
            ResponseService {
                responder,
                stop,
                watcher: Some(watcher),
                blocker,
            },
            reconciled,
        ))
    }

    pub fn responder(&self) -> &Responder {
        &self.responder
    }

    /// Decide and act on one alert (see [`crate::policy::decide`]).
    pub fn on_alert(&self, policy: &Policy, alert: &Alert) -> Vec<Result<Event>> {
        self.responder.on_alert(policy, alert)
    }

    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.blocker.take() {
            b.stop();
        }
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

impl Drop for ResponseService {
    fn drop(&mut self) {
        self.stop_all();
    }
}

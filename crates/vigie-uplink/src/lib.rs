//! The agent's side of the link to the manager: enrolment, the identity on
//! disk, the bounded on-disk spool, the mutual-TLS gRPC stream with
//! heartbeats, reconnection with backoff, and command dispatch.
//!
//! ```no_run
//! # async fn demo(handler: impl vigie_uplink::CommandHandler, event: vigie_event::Event) -> anyhow::Result<()> {
//! use std::path::Path;
//! use vigie_uplink::{Options, Uplink};
//! let state = Path::new("/var/lib/vigie/agent");
//! if !vigie_uplink::Identity::exists(state) {
//!     Uplink::enroll("https://manager.example:8444", "SECRET.FINGERPRINT", state).await?;
//! }
//! let uplink = Uplink::start(state, handler, Options::default()).await?;
//! uplink.send_event(&event).await;
//! # Ok(()) }
//! ```
//!
//! Main types: [`Uplink`] (enrol, start), [`UplinkHandle`] (send events,
//! alerts, action events; update host facts), [`CommandHandler`] (what the
//! agent implements to isolate, kill, ...), [`Command`], [`CommandOutcome`],
//! [`Identity`], [`spool::Spool`].

mod identity;
mod session;
pub mod spool;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::{Notify, mpsc, watch};
use vigie_proto::pb;

pub use identity::{Identity, Token, enroll, parse_token};
pub use session::{SessionStats, connect_session, connect_session_marked};
use spool::{Kind, Spool};

/// What the manager asks the agent to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Isolate the host from the network, keeping the manager reachable.
    Isolate,
    Release,
    Kill {
        pid: u32,
    },
    Quarantine {
        path: String,
    },
    Restore {
        quarantine_id: String,
    },
    /// A rules bundle (the format is the detection engine's).
    RulesUpdate {
        bundle: Vec<u8>,
    },
    /// A policy document (JSON).
    PolicyUpdate {
        document: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: String,
    /// Who asked ("user:alice", "policy:auto").
    pub actor: String,
    pub reason: String,
    pub action: Action,
    /// Every argument the manager sent, for forward compatibility.
    pub args: HashMap<String, String>,
}

/// The verified result of a command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    /// True only if the effect was checked on the host (not just attempted).
    pub success: bool,
    /// Plain words: "host isolated; nft table inet vigie has 6 rules".
    pub outcome: String,
    pub error: Option<String>,
}

impl CommandOutcome {
    pub fn ok(outcome: impl Into<String>) -> Self {
        CommandOutcome {
            success: true,
            outcome: outcome.into(),
            error: None,
        }
    }
    pub fn failed(error: impl Into<String>) -> Self {
        let error = error.into();
        CommandOutcome {
            success: false,
            outcome: String::new(),
            error: Some(error),
        }
    }
}

/// The agent implements this to carry out commands from the manager. It
/// must be idempotent: after a reconnect the manager may send a command
/// again if its result had not arrived.
pub trait CommandHandler: Send + Sync + 'static {
    fn handle(&self, command: Command) -> impl Future<Output = CommandOutcome> + Send;
}

/// Turn a protobuf command into a typed one (or say why it is invalid).
pub fn parse_command(c: &pb::Command) -> Result<Command, String> {
    use pb::CommandKind as K;
    let arg = |k: &str| {
        c.args
            .get(k)
            .cloned()
            .ok_or_else(|| format!("command {} has no {k:?} argument", c.id))
    };
    let action = match K::try_from(c.kind) {
        Ok(K::Isolate) => Action::Isolate,
        Ok(K::Release) => Action::Release,
        Ok(K::Kill) => Action::Kill {
            pid: arg("pid")?
                .parse()
                .map_err(|_| format!("command {}: pid is not a number", c.id))?,
        },
        Ok(K::Quarantine) => Action::Quarantine { path: arg("path")? },
        Ok(K::Restore) => Action::Restore {
            quarantine_id: arg("quarantine_id")?,
        },
        Ok(K::RulesUpdate) => Action::RulesUpdate {
            bundle: c.blob.clone(),
        },
        Ok(K::PolicyUpdate) => Action::PolicyUpdate {
            document: c.blob.clone(),
        },
        Ok(K::Unspecified) | Err(_) => return Err(format!("unknown command kind {}", c.kind)),
    };
    Ok(Command {
        id: c.id.clone(),
        actor: c.actor.clone(),
        reason: c.reason.clone(),
        action,
        args: c.args.clone(),
    })
}

/// Tuning knobs; the defaults suit an endpoint.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bound of the on-disk spool (telemetry beyond it is dropped, counted).
    pub max_spool_bytes: u64,
    pub heartbeat: Duration,
    /// Records per batch.
    pub batch_max: usize,
    /// Batches sent before waiting for acknowledgements.
    pub window: usize,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
    /// `SO_MARK` for the sockets to the manager (the agent passes
    /// `vigie_respond::AGENT_MARK`, which its isolation table lets through).
    /// Setting it needs CAP_NET_ADMIN.
    pub socket_mark: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_spool_bytes: 256 * 1024 * 1024,
            heartbeat: Duration::from_secs(10),
            batch_max: 1000,
            window: 8,
            backoff_max: Duration::from_secs(30),
            socket_mark: None,
        }
    }
}

/// What this host looks like, read from /proc and /etc/os-release.
pub fn local_facts() -> pb::HostFacts {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    pb::HostFacts {
        hostname: read("/proc/sys/kernel/hostname"),
        os,
        kernel: read("/proc/sys/kernel/osrelease"),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        addresses: vec![],
        sensor_health: "unknown".into(),
        sensor_lost: 0,
        isolated: false,
    }
}

pub struct Uplink;

impl Uplink {
    /// First start: enrol with a one-time token and save the identity.
    pub async fn enroll(manager_url: &str, token: &str, state_dir: &Path) -> Result<Identity> {
        identity::enroll(
            manager_url,
            token,
            state_dir,
            local_facts(),
            None,
            Vec::new(),
        )
        .await
    }

    /// [`Uplink::enroll`] over a socket marked `mark` (so enrolment works
    /// on a host that is already isolated), handing the manager the host's
    /// release secret (so it can show offline release codes).
    pub async fn enroll_marked(
        manager_url: &str,
        token: &str,
        state_dir: &Path,
        mark: Option<u32>,
        release_secret: &[u8],
    ) -> Result<Identity> {
        identity::enroll(
            manager_url,
            token,
            state_dir,
            local_facts(),
            mark,
            release_secret.to_vec(),
        )
        .await
    }

    /// Open the spool and run the link in the background until the handle
    /// is shut down (or dropped).
    pub async fn start<H: CommandHandler>(
        state_dir: &Path,
        handler: H,
        options: Options,
    ) -> Result<UplinkHandle> {
        let identity = Identity::load(state_dir)?;
        let spool =
            Arc::new(Spool::open(&state_dir.join("spool.db"), options.max_spool_bytes).await?);
        let (tx, rx) = mpsc::channel::<ToSpool>(8192);
        let notify = Arc::new(Notify::new());
        let facts = Arc::new(Mutex::new(local_facts()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (connected_tx, connected_rx) = watch::channel(false);
        let writer = tokio::spawn(writer(rx, spool.clone(), notify.clone()));
        let shared = session::Shared {
            identity,
            spool: spool.clone(),
            notify: notify.clone(),
            facts: facts.clone(),
            options,
            results: tx.clone(),
            connected: connected_tx,
        };
        let link = tokio::spawn(session::run(shared, Arc::new(handler), stop_rx));
        Ok(UplinkHandle {
            tx,
            facts,
            spool,
            stop: stop_tx,
            connected: connected_rx,
            tasks: vec![writer, link],
        })
    }
}

/// What the writer task receives: a record, or a request to confirm that
/// everything sent before it is on disk.
pub(crate) enum ToSpool {
    Record(Kind, Vec<u8>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

async fn writer(mut rx: mpsc::Receiver<ToSpool>, spool: Arc<Spool>, notify: Arc<Notify>) {
    let mut buf = Vec::with_capacity(1024);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ToSpool::Record(k, b) => buf.push((k, b)),
                ToSpool::Flush(done) => flushes.push(done),
            }
            if buf.len() < 2048 {
                next = rx.try_recv().ok();
            }
        }
        // A failed write is retried: losing records silently is not an option.
        let mut delay = Duration::from_millis(100);
        while let Err(e) = spool.push(&buf).await {
            tracing::error!("spool write failed, retrying: {e:#}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        buf.clear();
        notify.notify_one();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// The running link. Sending never waits for the network: records go to the
/// spool first.
pub struct UplinkHandle {
    tx: mpsc::Sender<ToSpool>,
    facts: Arc<Mutex<pb::HostFacts>>,
    spool: Arc<Spool>,
    stop: watch::Sender<bool>,
    connected: watch::Receiver<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl UplinkHandle {
    /// Telemetry: may be dropped (and counted) if the spool overflows.
    pub async fn send_event(&self, event: &vigie_event::Event) {
        let _ = self
            .tx
            .send(ToSpool::Record(
                Kind::Event,
                vigie_proto::event_record(event),
            ))
            .await;
    }

    /// Alerts are never dropped.
    pub async fn send_alert(&self, alert: &vigie_event::Alert) {
        let _ = self
            .tx
            .send(ToSpool::Record(
                Kind::Alert,
                vigie_proto::alert_record(alert),
            ))
            .await;
    }

    /// An action the agent took by itself (a `Payload::Response` event):
    /// never dropped; the manager stores it and writes it to the audit log.
    pub async fn send_action_result(&self, event: &vigie_event::Event) {
        let _ = self
            .tx
            .send(ToSpool::Record(
                Kind::Action,
                vigie_proto::event_record(event),
            ))
            .await;
    }

    /// Change the facts sent with the next heartbeat (isolation state,
    /// sensor health, ...).
    pub fn update_facts(&self, f: impl FnOnce(&mut pb::HostFacts)) {
        if let Ok(mut facts) = self.facts.lock() {
            f(&mut facts);
        }
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Wait until the stream to the manager is up (or the timeout passes).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok()
    }

    /// Records still waiting for the manager's acknowledgement.
    pub async fn pending(&self) -> Result<u64> {
        self.spool.pending().await
    }

    /// Telemetry dropped because the spool was full.
    pub fn dropped(&self) -> u64 {
        self.spool.dropped()
    }

    /// Wait until everything sent so far is written to the spool.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(ToSpool::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Flush, then stop the link; what is spooled stays on disk for the
    /// next start.
    pub async fn shutdown(self) {
        self.stop().await;
        // Drop aborts the tasks.
    }

    /// [`Self::shutdown`] for a shared handle: flush to the spool, stop the
    /// link (the tasks end with their runtime).
    pub async fn stop(&self) {
        self.flush().await;
        let _ = self.stop.send(true);
    }
}

impl Drop for UplinkHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

//! `vigie radius`: the RADIUS service alone (e.g. in a DMZ), with its
//! authentication events written as ECS JSON lines and run through the
//! detection engine with the rule pack.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use vigie_event::Event;

use crate::server::{Config, EventSink, PasswordBackend, Server};
use crate::store::Store;

pub struct Options {
    pub data: PathBuf,
    /// UDP addresses (authentication and accounting on each).
    pub listen: Vec<SocketAddr>,
    /// RadSec (RADIUS over TLS) listener, if any.
    pub radsec: Option<crate::radsec::RadsecOptions>,
    /// ECS JSON lines of every attempt: a file (appended) or "-" for stdout.
    pub events: Option<PathBuf>,
    /// Alerts as ECS JSON lines: a file (appended) or "-" for stdout.
    pub alerts: Option<PathBuf>,
    /// Rule folder; `None`: the pack next to the binary or installed.
    pub rules: Option<PathBuf>,
    pub ldap: Option<crate::ldap::LdapConfig>,
    /// See [`Config::reject_delay`].
    pub reject_delay: std::time::Duration,
}

/// Where the rule pack is when `--rules` is not given: `rules/` of a source
/// checkout the binary was built in, next to the binary, or installed.
pub fn default_rules() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut candidates = Vec::new();
    for anc in exe.ancestors().skip(1).take(4) {
        candidates.push(anc.join("rules"));
    }
    candidates.push(PathBuf::from("/usr/share/vigie/rules"));
    // The checkout this binary was built from (development, CI).
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules"));
    candidates.into_iter().find(|p| p.join("vpn").is_dir())
}

fn open_out(path: &Path) -> Result<Box<dyn Write + Send>> {
    // Buffered: `event_loop` flushes after each batch of events.
    if path == Path::new("-") {
        Ok(Box::new(std::io::BufWriter::new(std::io::stdout())))
    } else {
        Ok(Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        )))
    }
}

/// Events waiting for detection and the writer before new ones are dropped.
pub const QUEUE: usize = 8192;

/// The server's sink in `vigie radius`: a bounded queue to the event thread.
/// The answer never waits on it; when the thread falls behind, events are
/// dropped, counted, and the count logged (at most once a second).
pub struct QueueSink {
    tx: std::sync::mpsc::SyncSender<Event>,
    dropped: std::sync::atomic::AtomicU64,
    last_warning: std::sync::Mutex<Option<std::time::Instant>>,
}

impl QueueSink {
    /// The sink and the receiving end for [`event_loop`].
    pub fn new(capacity: usize) -> (QueueSink, std::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let sink = QueueSink {
            tx,
            dropped: Default::default(),
            last_warning: Default::default(),
        };
        (sink, rx)
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl EventSink for QueueSink {
    fn emit(&self, event: Event) {
        use std::sync::mpsc::TrySendError;
        match self.tx.try_send(event) {
            Ok(()) => {}
            // The event thread stopped (shutting down): nothing to tell.
            Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                let mut last = self.last_warning.lock().expect("warning lock");
                if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                    *last = Some(std::time::Instant::now());
                    tracing::error!(
                        dropped,
                        "authentication event queue full (detection or the event file too slow): events dropped"
                    );
                }
            }
        }
    }
}

/// Most events written between two flushes of the output files.
const EVENT_BATCH: usize = 512;

/// Consume events: write them, run detection, write alerts. Returns when the
/// sending side is dropped.
pub fn event_loop(
    rx: std::sync::mpsc::Receiver<Event>,
    mut events: Option<Box<dyn Write + Send>>,
    mut alerts: Option<Box<dyn Write + Send>>,
    mut engine: vigie_detect::Engine,
) {
    let mut log = crate::alert_log::AlertLog::new("alert", crate::alert_log::WINDOW);
    // Blocks while idle (waking once a second to log the counts of alert
    // windows that ended); once woken, takes what arrived meanwhile (up to a
    // bound, so that a steady stream still gets flushed), and flushes once
    // for all of it: a write per event was a system call per login.
    loop {
        let first = match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(ev) => ev,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                log.flush_due(std::time::Instant::now());
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let now = std::time::Instant::now();
        for ev in std::iter::once(first).chain(rx.try_iter().take(EVENT_BATCH - 1)) {
            if let Some(w) = events.as_mut() {
                match serde_json::to_string(&ev) {
                    Ok(line) => {
                        let _ = writeln!(w, "{line}");
                    }
                    Err(e) => tracing::error!(error = %e, "serialising event failed"),
                }
            }
            for alert in engine.process(&ev) {
                log.alert(&alert, now);
                if let Some(w) = alerts.as_mut()
                    && let Ok(line) = serde_json::to_string(&alert)
                {
                    let _ = writeln!(w, "{line}");
                }
            }
        }
        for w in [events.as_mut(), alerts.as_mut()].into_iter().flatten() {
            let _ = w.flush();
        }
        log.flush_due(now);
    }
    log.flush_all();
}

pub fn run(opts: Options) -> Result<ExitCode> {
    let rules = opts.rules.clone().or_else(default_rules);
    let engine = match &rules {
        Some(dir) => {
            let (engine, report) = vigie_detect::Engine::load(&[dir]);
            tracing::info!(rules = engine.rule_count(), correlations = engine.correlation_count(), dir = %dir.display(), "rules loaded");
            for e in report.rules.iter().filter(|e| e.reason.is_some()) {
                tracing::warn!(path = %e.path, reason = ?e.reason, "rule not loaded");
            }
            engine
        }
        None => {
            tracing::warn!("no rule pack found (use --rules DIR): events are not analysed");
            vigie_detect::Engine::empty()
        }
    };
    let events = opts.events.as_deref().map(open_out).transpose()?;
    let alerts = opts.alerts.as_deref().map(open_out).transpose()?;
    let (sink, rx) = QueueSink::new(QUEUE);
    let consumer = std::thread::Builder::new()
        .name("vigie-events".into())
        .spawn(move || event_loop(rx, events, alerts, engine))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let (store, key) = Store::open_data_dir(&opts.data).await?;
        let ldap: Option<Arc<dyn PasswordBackend>> = opts
            .ldap
            .map(|c| Arc::new(crate::ldap::Ldap::new(c)) as Arc<dyn PasswordBackend>);
        let cfg = Config {
            reject_delay: opts.reject_delay,
            ..Config::default()
        };
        let server = Server::new(store, key, Arc::new(sink), ldap, cfg).await?;
        let n = server.reload_clients().await?;
        if n == 0 {
            tracing::warn!("no NAS client registered: add one with `vigie mfa client add`");
        }
        let mut tasks = tokio::task::JoinSet::new();
        for addr in &opts.listen {
            let sock = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("listening on udp {addr}"))?;
            tracing::info!(%addr, "RADIUS listening (udp)");
            tasks.spawn(server.clone().serve_udp(sock));
        }
        if let Some(r) = opts.radsec {
            let addr = r.listen;
            let acceptor = crate::radsec::acceptor(&r)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on tcp {addr}"))?;
            tracing::info!(%addr, "RadSec listening (tls)");
            tasks.spawn(crate::radsec::serve(server.clone(), listener, acceptor));
        }
        // Clients added with `vigie mfa client add` while running are picked up.
        let reload = server.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                if let Err(e) = reload.reload_clients().await {
                    tracing::error!(error = %e, "reloading NAS clients failed");
                }
            }
        });
        tokio::select! {
            r = tasks.join_next() => match r {
                Some(Ok(Err(e))) => Err(e),
                Some(Err(e)) => Err(e.into()),
                _ => Ok(()),
            },
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("stopping");
                Ok(())
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    let _ = consumer.join();
    result.map(|_| ExitCode::SUCCESS)
}

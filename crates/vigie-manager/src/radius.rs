//! The manager runs Vigie's RADIUS service (VPN two-factor authentication,
//! [`vigie_radius::Server`]) on its own database and data folder, and treats
//! every VPN login like an agent's telemetry: the authentication events go
//! through detection with Vigie's built-in rule pack, and events, alerts and
//! lockouts are stored through the same ingest path as agents' batches (so
//! de-duplication, incidents and notifications behave the same).
//!
//! The RADIUS answer never waits on the database: the server hands each
//! event to a bounded queue; one writer task runs detection and stores. A
//! full queue drops the event, counts it ([`crate::Counters`]) and says so
//! in the log. Several managers on one PostgreSQL database each record only
//! the requests they served.
//!
//! The logins are recorded in the organisation of the NAS client they came
//! through (`vigie mfa client add --org`; the manager's default one
//! otherwise), under one host per organisation and manager, "HOSTNAME VPN
//! (RADIUS)", with a stable id ([`service_host_id`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use vigie_event::{Event, Level};
use vigie_radius::alert_log::AlertLog;
use vigie_radius::{EventSink, Lockout, PasswordBackend, Server};

use crate::Core;
use crate::store::{AuditEntry, IngestBatch};

/// The standard RADIUS ports: authentication, accounting.
pub const DEFAULT_LISTEN: [&str; 2] = ["0.0.0.0:1812", "0.0.0.0:1813"];

/// Events waiting for the writer before new ones are dropped (a few seconds
/// of a mass reconnection; the writer commits them [`BATCH`] at a time).
pub const QUEUE: usize = 8192;

/// Whether and where the manager serves RADIUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// On [`DEFAULT_LISTEN`] when at least one NAS client is registered at
    /// start; a port already taken is logged, not fatal.
    Auto,
    /// On these UDP addresses (authentication and accounting on each),
    /// whatever the NAS clients; a bind failure stops the start.
    Listen(Vec<SocketAddr>),
    /// Not at all.
    Off,
}

/// The RADIUS part of the manager's configuration.
#[derive(Debug, Clone)]
pub struct RadiusConfig {
    pub mode: Mode,
    /// Also RADIUS over TLS (RFC 6614), when RADIUS runs.
    pub radsec: Option<vigie_radius::radsec::RadsecOptions>,
    /// Directory for users added with `vigie mfa user add --ldap`.
    pub ldap: Option<vigie_radius::ldap::LdapConfig>,
    /// Capacity of the event queue (see [`QUEUE`]).
    pub queue: usize,
    /// See [`vigie_radius::Config::reject_delay`].
    pub reject_delay: std::time::Duration,
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            mode: Mode::Auto,
            radsec: None,
            ldap: None,
            queue: QUEUE,
            reject_delay: vigie_radius::DEFAULT_REJECT_DELAY,
        }
    }
}

/// A running RADIUS service.
pub struct RadiusService {
    /// UDP addresses served (the real ports when 0 was asked).
    pub udp: Vec<SocketAddr>,
    /// RadSec (TLS) address, if served.
    pub radsec: Option<SocketAddr>,
    pub server: Arc<Server>,
}

/// The host id the RADIUS service's events and alerts are recorded under:
/// stable for one organisation and manager hostname, distinct per pair.
pub fn service_host_id(org: &str, hostname: &str) -> String {
    let d = Sha256::digest(format!("vigie-radius\0{org}\0{hostname}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Uuid::from_bytes(b).to_string()
}

enum Note {
    Event(Box<Event>),
    Lockout(Lockout),
}

/// The server's [`EventSink`]: never waits, drops (and counts) when full.
struct Sink {
    tx: mpsc::Sender<Note>,
    core: Arc<Core>,
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl Sink {
    fn push(&self, note: Note) {
        let full = match self.tx.try_send(note) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        let dropped = self
            .core
            .counters
            .radius_dropped
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        // One line a second at most: a flood must not also flood the log.
        let mut last = self.last_warning.lock().expect("warning lock");
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            if full {
                tracing::error!(
                    dropped,
                    "RADIUS event queue full (the database is too slow): authentication events dropped"
                );
            } else {
                tracing::warn!(
                    dropped,
                    "manager stopping: RADIUS authentication events dropped"
                );
            }
        }
    }
}

impl EventSink for Sink {
    fn emit(&self, event: Event) {
        self.push(Note::Event(Box::new(event)));
    }
    fn lockout(&self, lockout: Lockout) {
        self.push(Note::Lockout(lockout));
    }
}

/// Where the service's records go: the organisation of the NAS client
/// (`vigie mfa client add --org`), else the manager's default one; in each,
/// the service's host.
struct Routing {
    default_org: String,
    /// This machine's hostname (for the host ids).
    machine: String,
    /// The service host's name, "HOSTNAME VPN (RADIUS)".
    hostname: String,
    server: Arc<Server>,
    /// Organisations whose host row exists.
    ready: std::collections::HashSet<String>,
    /// When each service host's `last_seen` was last written.
    seen: std::collections::HashMap<String, Instant>,
}

impl Routing {
    fn org_of(&self, nas: Option<&str>) -> String {
        match nas.and_then(|n| self.server.client_org(n)) {
            Some(org) if crate::store::validate_org(&org).is_ok() => org,
            Some(org) => {
                tracing::warn!(%org, "NAS client with an invalid organisation: default used");
                self.default_org.clone()
            }
            None => self.default_org.clone(),
        }
    }

    fn host_id(&self, org: &str) -> String {
        service_host_id(org, &self.machine)
    }
}

/// Start RADIUS as `cfg` says (nothing for [`Mode::Off`], or [`Mode::Auto`]
/// without NAS clients). Its tasks are pushed on `tasks` and stop with `stop`.
pub(crate) async fn start(
    config: &crate::Config,
    core: Arc<Core>,
    stop: watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Option<RadiusService>> {
    let cfg = &config.radius;
    if cfg.mode == Mode::Off {
        tracing::info!("RADIUS service off (--no-radius)");
        return Ok(None);
    }
    let store = match core.store.dialect {
        // Logins get their own connections to the file: sharing the
        // manager's four would queue them behind the API and the ingest.
        crate::store::Dialect::Sqlite => {
            vigie_radius::Store::connect(&config.database_url()).await?
        }
        crate::store::Dialect::Postgres => {
            let s = vigie_radius::Store::from_pool(core.store.pool.clone());
            s.migrate().await?;
            s
        }
    };
    let clients = store.list_clients().await?.len();
    if cfg.mode == Mode::Auto && clients == 0 {
        tracing::info!(
            "RADIUS service off: no NAS client registered (add one with `vigie mfa client add` and restart, or give --radius-listen)"
        );
        return Ok(None);
    }

    // Bind first: a taken port is the likeliest failure.
    let (addrs, explicit) = match &cfg.mode {
        Mode::Listen(a) => (a.clone(), true),
        _ => (
            DEFAULT_LISTEN
                .iter()
                .map(|a| a.parse().expect("valid address"))
                .collect(),
            false,
        ),
    };
    let mut sockets = Vec::new();
    for addr in &addrs {
        match tokio::net::UdpSocket::bind(addr).await {
            Ok(s) => sockets.push(s),
            Err(e) if explicit => {
                return Err(e)
                    .with_context(|| format!("RADIUS: listening on udp {addr} (--radius-listen)"));
            }
            Err(e) => {
                tracing::error!(
                    %addr,
                    error = %e,
                    "RADIUS service NOT started: cannot listen (is another RADIUS server running? choose the address with --radius-listen)"
                );
                return Ok(None);
            }
        }
    }
    let radsec = match &cfg.radsec {
        Some(r) => {
            let acceptor = vigie_radius::radsec::acceptor(r)?;
            let l = tokio::net::TcpListener::bind(r.listen)
                .await
                .with_context(|| format!("RadSec: listening on tcp {} (--radsec)", r.listen))?;
            Some((l, acceptor))
        }
        None => None,
    };

    // Read once at start by the manager (`Core::secrets`).
    let key = core.secrets.clone();
    let engine = tokio::task::spawn_blocking(|| {
        let (engine, report) = vigie_detect::Engine::from_yaml(vigie_rules::pack());
        let problems: Vec<_> = report.problems().map(|p| &p.path).collect();
        if !problems.is_empty() {
            tracing::warn!(
                ?problems,
                "built-in rules not loaded (see `vigie rules check`)"
            );
        }
        engine
    })
    .await?;
    let mut rcfg = vigie_radius::Config {
        reject_delay: cfg.reject_delay,
        ..vigie_radius::Config::default()
    };
    let hostname = rcfg.host.clone();
    rcfg.host = format!("{hostname} VPN (RADIUS)");
    let service_hostname = rcfg.host.clone();
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    let sink = Arc::new(Sink {
        tx,
        core: core.clone(),
        last_warning: Default::default(),
    });
    let ldap = cfg
        .ldap
        .clone()
        .map(|c| Arc::new(vigie_radius::ldap::Ldap::new(c)) as Arc<dyn PasswordBackend>);
    let server = Server::new(store, key, sink, ldap, rcfg).await?;
    let routing = Routing {
        default_org: config.default_org.clone(),
        machine: hostname,
        hostname: service_hostname,
        server: server.clone(),
        ready: Default::default(),
        seen: Default::default(),
    };
    tasks.push(tokio::spawn(writer(
        core.clone(),
        rx,
        engine,
        routing,
        stop.clone(),
    )));
    let mut udp = Vec::new();
    for sock in sockets {
        udp.push(sock.local_addr()?);
        let (s, mut stop) = (server.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                r = s.serve_udp(sock) => if let Err(e) = r {
                    tracing::error!(error = %e, "RADIUS udp service stopped");
                },
                _ = stop.changed() => {}
            }
        }));
    }
    let mut radsec_addr = None;
    if let Some((listener, acceptor)) = radsec {
        radsec_addr = Some(listener.local_addr()?);
        let (s, mut stop) = (server.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                r = vigie_radius::radsec::serve(s, listener, acceptor) => if let Err(e) = r {
                    tracing::error!(error = %e, "RadSec service stopped");
                },
                _ = stop.changed() => {}
            }
        }));
    }
    // NAS clients added with `vigie mfa client add` (or by another manager)
    // while running are picked up.
    let (s, mut stop) = (server.clone(), stop);
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = s.reload_clients().await {
                tracing::error!(error = %e, "reloading NAS clients failed");
            }
        }
    }));
    tracing::info!(
        udp = ?udp,
        radsec = ?radsec_addr,
        nas_clients = clients,
        "RADIUS service listening (VPN two-factor authentication)"
    );
    Ok(Some(RadiusService {
        udp,
        radsec: radsec_addr,
        server,
    }))
}

/// Most notes stored in one ingest batch.
/// Small: on SQLite every batch holds the single writer lock while it is
/// stored, and logins wait for it to record their TOTP step (500 notes that
/// each raise an alert held it for tens of milliseconds).
const BATCH: usize = 64;

/// Detection and storage, off the answer path. Correlations (brute force,
/// spraying) need this one engine to see every event, in order.
async fn writer(
    core: Arc<Core>,
    mut rx: mpsc::Receiver<Note>,
    mut engine: vigie_detect::Engine,
    mut routing: Routing,
    mut stop: watch::Receiver<bool>,
) {
    let mut log = AlertLog::new("VPN alert", vigie_radius::alert_log::WINDOW);
    // Once a second, busy or idle: log the counts of alert windows that ended.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            n = rx.recv() => match n { Some(n) => n, None => { log.flush_all(); return } },
            _ = tick.tick() => {
                log.flush_due(Instant::now());
                continue;
            }
            _ = stop.changed() => {
                // Store what is already queued, then stop.
                rx.close();
                let mut rest = Vec::new();
                while let Ok(n) = rx.try_recv() {
                    rest.push(n);
                }
                while !rest.is_empty() {
                    let chunk: Vec<Note> = rest.drain(..rest.len().min(BATCH)).collect();
                    store_notes(&core, &mut engine, &mut log, &mut routing, chunk).await;
                }
                log.flush_all();
                return;
            }
        };
        let mut notes = vec![first];
        while notes.len() < BATCH {
            match rx.try_recv() {
                Ok(n) => notes.push(n),
                Err(_) => break,
            }
        }
        store_notes(&core, &mut engine, &mut log, &mut routing, notes).await;
    }
}

async fn store_notes(
    core: &Core,
    engine: &mut vigie_detect::Engine,
    log: &mut AlertLog,
    routing: &mut Routing,
    notes: Vec<Note>,
) {
    let now = Instant::now();
    let mut batches: std::collections::BTreeMap<String, IngestBatch> = Default::default();
    for note in notes {
        let nas = match &note {
            Note::Event(e) => match &e.payload {
                vigie_event::Payload::Authentication(a) => a.auth.nas.clone(),
                _ => None,
            },
            Note::Lockout(l) => Some(l.nas.clone()),
        };
        let org = routing.org_of(nas.as_deref());
        let host_id = routing.host_id(&org);
        let batch = batches.entry(org.clone()).or_insert_with(|| IngestBatch {
            org: org.clone(),
            host_id: host_id.clone(),
            ..Default::default()
        });
        match note {
            Note::Event(mut event) => {
                event.host.id = Some(host_id);
                for alert in engine.process(&event) {
                    // The rule pack's per-login building blocks ("VPN login
                    // failure/success") are informational: the event is
                    // stored anyway, and an alert and incident per login
                    // would bury the correlations that matter.
                    if alert.level() <= Level::Informational {
                        continue;
                    }
                    log.alert(&alert, now);
                    match crate::grpc::alert_row(&alert) {
                        Ok(row) => batch.alerts.push(row),
                        Err(e) => tracing::error!(error = %e, "serialising an alert failed"),
                    }
                }
                match crate::grpc::event_row(&event) {
                    Ok(row) => batch.events.push(row),
                    Err(e) => tracing::error!(error = %e, "serialising an event failed"),
                }
            }
            Note::Lockout(l) => batch.actions.push(AuditEntry {
                org,
                actor: "radius".into(),
                action: "vpn.lockout".into(),
                target: l.user.clone(),
                reason: format!("{} failed VPN logins", l.failures),
                outcome: format!(
                    "locked until {}",
                    chrono::DateTime::from_timestamp(l.until, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| l.until.to_string())
                ),
                details: json!({"until": l.until, "failures": l.failures, "nas": l.nas, "source": l.source}),
            }),
        }
    }
    for (org, batch) in batches {
        if !routing.ready.contains(&org) {
            match ensure_host(core, &org, &batch.host_id, &routing.hostname).await {
                Ok(()) => {
                    routing.ready.insert(org);
                }
                Err(e) => tracing::error!("recording the RADIUS service as a host: {e:#}"),
            }
        }
        // `last_seen` is another write: once a second is enough.
        let touch = routing
            .seen
            .get(&batch.host_id)
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if touch {
            routing.seen.insert(batch.host_id.clone(), Instant::now());
        }
        store_batch(core, batch, touch).await;
    }
}

/// Through the agents' ingest writer (group commit, dedup, incidents,
/// notifications).
async fn store_batch(core: &Core, batch: IngestBatch, touch: bool) {
    let (events, alerts) = (batch.events.len() as u64, batch.alerts.len() as u64);
    // A database hiccup is retried; what still fails is counted and logged.
    for attempt in 1..=3 {
        let (done, wait) = oneshot::channel();
        let result = match core.ingest.send((batch.clone(), done)).await {
            Ok(()) => wait
                .await
                .map_err(|_| "the ingest writer stopped".to_string()),
            Err(_) => Err("the ingest writer stopped".to_string()),
        }
        .and_then(|r| r);
        // At shutdown the ingest writer may stop before this one has
        // drained its queue: write directly rather than lose the tail.
        let result = match result {
            Err(e) if core.ingest.is_closed() => core
                .store
                .ingest(std::slice::from_ref(&batch))
                .await
                .map(|_| ())
                .map_err(|e2| format!("{e}; directly: {e2:#}")),
            r => r,
        };
        match result {
            Ok(()) => {
                core.counters
                    .radius_events
                    .fetch_add(events, Ordering::Relaxed);
                if touch {
                    let _ = sqlx::query("UPDATE hosts SET last_seen = $1 WHERE id = $2")
                        .bind(crate::store::now_ms())
                        .bind(&batch.host_id)
                        .execute(&core.store.pool)
                        .await;
                }
                return;
            }
            Err(e) => tracing::warn!(attempt, "storing RADIUS events failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
    }
    core.counters
        .radius_dropped
        .fetch_add(events, Ordering::Relaxed);
    tracing::error!(
        events,
        alerts,
        "RADIUS authentication events and alerts NOT stored (see the errors above)"
    );
}

/// The hosts row the service's records hang on (the console and the API
/// list it like an agent's host; it has no certificate, so no agent can
/// ever authenticate as it).
async fn ensure_host(core: &Core, org: &str, host_id: &str, hostname: &str) -> Result<()> {
    core.store.ensure_org(org).await?;
    sqlx::query("INSERT INTO hosts (id, org_id, hostname, os, agent_version, enrolled_at, cert_fingerprint, cert_not_after) VALUES ($1, $2, $3, $4, $5, $6, $7, 0) ON CONFLICT (id) DO NOTHING")
        .bind(host_id)
        .bind(org)
        .bind(hostname)
        .bind("RADIUS service (VPN two-factor)")
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(crate::store::now_ms())
        // Not a certificate fingerprint (those are hex): unique, never matched.
        .bind(format!("radius:{host_id}"))
        .execute(&core.store.pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_are_stable_and_distinct() {
        let a = service_host_id("default", "mgr1");
        assert_eq!(a, service_host_id("default", "mgr1"));
        assert_ne!(a, service_host_id("townhall", "mgr1"));
        assert_ne!(a, service_host_id("default", "mgr2"));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}

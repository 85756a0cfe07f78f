//! The Vigie manager: enrolment and PKI, the agents' gRPC ingest, the store
//! (SQLite or PostgreSQL), the REST API, and command dispatch to agents.
//!
//! Main types: [`Config`] (what `vigie manager` parses), [`Manager`]
//! (start it; [`ManagerHandle`] tells its addresses and stops it), [`Core`]
//! (shared state: store, PKI, live agent sessions), [`store::Store`],
//! [`pki::Pki`]. The API lives in [`api`], the web console in [`console`],
//! the agent service in [`grpc`], the VPN RADIUS service in [`radius`].
//!
//! The manager keeps no state outside its database and `DATA/pki/`: live
//! sessions are only a cache of who is connected here; commands and their
//! results go through the `commands` table, so several managers can share
//! one PostgreSQL database.

pub mod admin;
pub mod api;
pub mod config_sync;
pub mod console;
pub mod grpc;
pub mod notify;
pub mod pki;
pub mod radius;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use vigie_proto::pb::{self, manager_message::Msg as Down};
use vigie_proto::tonic::{self, Status};

use store::{AgentAuth, AuditEntry, CommandRow, IngestBatch, Store};

/// How the manager is started (`vigie manager ...`).
#[derive(Debug, Clone)]
pub struct Config {
    /// DATA: `vigie.db` (SQLite) and `pki/`.
    pub data: PathBuf,
    /// `postgres://...`; SQLite in DATA when None.
    pub database_url: Option<String>,
    /// HTTPS API (and later the console).
    pub listen: SocketAddr,
    /// Agents' gRPC (mutual TLS).
    pub agent_listen: SocketAddr,
    /// Names and addresses in the server certificate.
    pub names: Vec<String>,
    /// Telemetry older than this is deleted.
    pub retention: Duration,
    /// Organisation of the first admin user.
    pub default_org: String,
    /// The VPN RADIUS service (on when NAS clients are registered).
    pub radius: radius::RadiusConfig,
}

impl Config {
    pub fn new(data: impl Into<PathBuf>) -> Config {
        Config {
            data: data.into(),
            database_url: None,
            listen: "127.0.0.1:8443".parse().expect("valid"),
            agent_listen: "0.0.0.0:8444".parse().expect("valid"),
            names: default_names(),
            retention: Duration::from_secs(30 * 24 * 3600),
            default_org: "default".into(),
            radius: radius::RadiusConfig::default(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url(&self.data))
    }
}

/// localhost, loopback addresses and this machine's hostname.
pub fn default_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() && h != "localhost" {
            names.push(h.to_string());
        }
    }
    names
}

struct SessionEntry {
    conn: u64,
    org: String,
    tx: mpsc::Sender<Result<pb::ManagerMessage, Status>>,
    cancel: watch::Sender<bool>,
}

/// Ingest and refusal counters (for tests and the benchmark).
#[derive(Default, Debug)]
pub struct Counters {
    pub events_stored: AtomicU64,
    pub alerts_stored: AtomicU64,
    pub batches: AtomicU64,
    pub refused: AtomicU64,
    /// RADIUS authentication events stored.
    pub radius_events: AtomicU64,
    /// RADIUS authentication events dropped (queue full or database down).
    pub radius_dropped: AtomicU64,
}

/// What the API and the agent service share.
pub struct Core {
    pub store: Store,
    pub pki: pki::Pki,
    sessions: Mutex<HashMap<String, SessionEntry>>,
    next_conn: AtomicU64,
    pub ingest: mpsc::Sender<(IngestBatch, oneshot::Sender<Result<(), String>>)>,
    pub counters: Counters,
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// The manager's secret key (`DATA/keys/mfa.key`, apart from the
    /// database): seals TOTP secrets, the SMTP password and the console's
    /// pre-login tokens.
    pub secrets: vigie_radius::MasterKey,
    /// The organisation created at first start; it runs the VPN service, so
    /// its audit view includes the service's own log.
    pub default_org: String,
}

impl Core {
    fn drop_all_sessions(&self) {
        let all: Vec<_> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .drain()
            .collect();
        for (_, e) in all {
            let _ = e.cancel.send(true);
        }
    }

    fn register(
        &self,
        host: &str,
        org: &str,
        tx: mpsc::Sender<Result<pb::ManagerMessage, Status>>,
        cancel: watch::Sender<bool>,
    ) -> u64 {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let old = self.sessions.lock().expect("sessions lock").insert(
            host.to_string(),
            SessionEntry {
                conn,
                org: org.to_string(),
                tx,
                cancel,
            },
        );
        if let Some(old) = old {
            // A reconnect replaces a stale stream of the same agent.
            let _ = old.cancel.send(true);
        }
        conn
    }

    fn unregister(&self, host: &str, conn: u64) {
        let mut s = self.sessions.lock().expect("sessions lock");
        if s.get(host).is_some_and(|e| e.conn == conn) {
            s.remove(host);
        }
    }

    /// Whether the agent has a live stream to this manager.
    pub fn is_online(&self, host: &str) -> bool {
        self.sessions
            .lock()
            .expect("sessions lock")
            .contains_key(host)
    }

    pub fn online_count(&self) -> usize {
        self.sessions.lock().expect("sessions lock").len()
    }

    /// Cut a revoked agent's stream now.
    pub fn drop_session(&self, host: &str) {
        if let Some(e) = self.sessions.lock().expect("sessions lock").remove(host) {
            let _ = e.cancel.send(true);
        }
    }

    /// Send a stored command down the agent's stream, if it is connected here.
    pub async fn push_command(&self, cmd: &CommandRow) -> Result<bool> {
        let tx = {
            let s = self.sessions.lock().expect("sessions lock");
            match s.get(&cmd.host_id) {
                Some(e) if e.org == cmd.org => e.tx.clone(),
                _ => return Ok(false),
            }
        };
        let args: HashMap<String, String> = cmd
            .args
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = match cmd.kind.as_str() {
            "isolate" => pb::CommandKind::Isolate,
            "release" => pb::CommandKind::Release,
            "kill" => pb::CommandKind::Kill,
            "quarantine" => pb::CommandKind::Quarantine,
            "restore" => pb::CommandKind::Restore,
            "rules_update" => pb::CommandKind::RulesUpdate,
            "policy_update" => pb::CommandKind::PolicyUpdate,
            _ => pb::CommandKind::Unspecified,
        };
        // Only configuration updates carry content.
        let blob = if matches!(cmd.kind.as_str(), "rules_update" | "policy_update") {
            self.store
                .command_blob(&cmd.id)
                .await?
                .unwrap_or_default()
                .into_bytes()
        } else {
            Vec::new()
        };
        let msg = pb::ManagerMessage {
            msg: Some(Down::Command(pb::Command {
                id: cmd.id.clone(),
                kind: kind as i32,
                actor: cmd.actor.clone(),
                reason: cmd.reason.clone(),
                args,
                blob,
            })),
        };
        if tx.send(Ok(msg)).await.is_err() {
            return Ok(false);
        }
        self.store.mark_sent(&cmd.id).await?;
        Ok(true)
    }

    /// Create a command, audit the request, send it if the agent is here.
    pub async fn request_command(
        &self,
        org: &str,
        host_id: &str,
        kind: &str,
        actor: &str,
        reason: &str,
        args: serde_json::Value,
    ) -> Result<CommandRow> {
        self.request_command_with_blob(org, host_id, kind, actor, reason, args, None)
            .await
    }

    /// [`Core::request_command`] with content (a rules bundle, a policy).
    #[allow(clippy::too_many_arguments)]
    pub async fn request_command_with_blob(
        &self,
        org: &str,
        host_id: &str,
        kind: &str,
        actor: &str,
        reason: &str,
        args: serde_json::Value,
        blob: Option<&str>,
    ) -> Result<CommandRow> {
        let cmd = CommandRow {
            id: uuid::Uuid::now_v7().to_string(),
            org: org.to_string(),
            host_id: host_id.to_string(),
            kind: kind.to_string(),
            actor: actor.to_string(),
            reason: reason.to_string(),
            args,
            created_at: store::now_ms(),
            status: "pending".into(),
            outcome: None,
            error: None,
        };
        self.store.create_command(&cmd).await?;
        if let Some(blob) = blob {
            self.store.set_command_blob(&cmd.id, blob).await?;
        }
        self.store
            .append_audit(&AuditEntry {
                org: org.to_string(),
                actor: actor.to_string(),
                action: format!("{kind}_requested"),
                target: host_id.to_string(),
                reason: reason.to_string(),
                outcome: "sent to the agent".into(),
                details: json!({"command_id": cmd.id, "args": cmd.args}),
            })
            .await?;
        self.push_command(&cmd).await?;
        Ok(cmd)
    }

    /// Wait until the agent reports a command's verified outcome.
    pub async fn wait_command(&self, id: &str, timeout: Duration) -> Result<CommandRow> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let cmd = self
                .store
                .get_command(id)
                .await?
                .context("command vanished")?;
            if cmd.status != "pending" && cmd.status != "sent" {
                return Ok(cmd);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(cmd);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn command_result(&self, auth: &AgentAuth, r: &pb::CommandResult) -> Result<()> {
        // The host's isolation state changes before the command shows as
        // finished, so whoever waits on the command sees both.
        let open = self.store.get_command(&r.command_id).await?;
        if let Some(c) = open.filter(|c| {
            r.success && c.host_id == auth.host_id && (c.status == "pending" || c.status == "sent")
        }) {
            {
                match c.kind.as_str() {
                    "isolate" => self.store.set_isolated(&auth.host_id, true).await?,
                    "release" => self.store.set_isolated(&auth.host_id, false).await?,
                    _ => {}
                }
            }
        }
        let Some(cmd) = self
            .store
            .finish_command(
                &auth.host_id,
                &r.command_id,
                r.success,
                &r.outcome,
                &r.error,
            )
            .await?
        else {
            return Ok(()); // unknown, another host's, or already finished
        };
        self.store
            .append_audit(&AuditEntry {
                org: auth.org.clone(),
                actor: cmd.actor.clone(),
                action: cmd.kind.clone(),
                target: auth.host_id.clone(),
                reason: cmd.reason.clone(),
                outcome: if r.success {
                    format!("succeeded: {}", r.outcome)
                } else {
                    format!("failed: {}", r.error)
                },
                details: json!({"command_id": cmd.id, "verified_by": "agent"}),
            })
            .await
    }
}

/// Start-up output for the operator.
#[derive(Debug, Clone)]
pub struct FirstStart {
    pub admin_user: String,
    /// Printed once on the console; only its argon2id hash is stored.
    pub admin_password: String,
}

pub struct Manager;

/// A running manager.
pub struct ManagerHandle {
    pub api_addr: SocketAddr,
    pub agent_addr: SocketAddr,
    pub core: Arc<Core>,
    pub first_start: Option<FirstStart>,
    /// The RADIUS service, when it runs.
    pub radius: Option<radius::RadiusService>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ManagerHandle {
    /// Stop serving: agents' streams are closed (they reconnect later),
    /// listeners are closed, pending ingest is committed.
    pub async fn shutdown(mut self) {
        self.core.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        self.core.drop_all_sessions();
        for t in std::mem::take(&mut self.tasks) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Wait until stopped (Ctrl-C is handled by the caller).
    pub async fn wait(&mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for ManagerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Open the store and PKI (for the admin subcommands, without serving).
pub async fn open(config: &Config) -> Result<(Store, pki::Pki)> {
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating {}", config.data.display()))?;
    let store = Store::connect(&config.database_url()).await?;
    let pki = pki::Pki::load_or_create(&config.data.join("pki"), &config.names)?;
    Ok((store, pki))
}

impl Manager {
    pub async fn start(config: Config) -> Result<ManagerHandle> {
        // tonic's TLS takes the process-wide rustls provider; when a binary
        // links both ring and aws-lc (through other crates) rustls cannot
        // pick one itself. Ours is ring; an already installed one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (store, pki) = open(&config).await?;
        store.ensure_org(&config.default_org).await?;
        let first_start = if store.user_count().await? == 0 {
            let password = store::random_secret();
            store
                .add_user(&config.default_org, "admin", &password, "admin")
                .await?;
            Some(FirstStart {
                admin_user: "admin".into(),
                admin_password: password,
            })
        } else {
            None
        };
        let (ingest_tx, ingest_rx) = mpsc::channel(1024);
        let secrets =
            vigie_radius::MasterKey::load_or_create(&config.data.join("keys").join("mfa.key"))?;
        let core = Arc::new(Core {
            store: store.clone(),
            pki,
            sessions: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            ingest: ingest_tx,
            counters: Counters::default(),
            shutting_down: Default::default(),
            secrets,
            default_org: config.default_org.clone(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // First: a RADIUS port that cannot be had stops the start here.
        let radius = radius::start(&config, core.clone(), stop_rx.clone(), &mut tasks).await?;
        tasks.push(tokio::spawn(ingest_writer(
            core.clone(),
            ingest_rx,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(notify::run(core.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(housekeeping(
            core.clone(),
            config.retention,
            stop_rx.clone(),
        )));

        // Agents: gRPC with mutual TLS (client certificate optional at the
        // TLS layer so that Enroll works; Session requires it).
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &core.pki.server_chain_pem,
                &core.pki.server_key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&core.pki.ca_pem))
            .client_auth_optional(true);
        let agent_listener = tokio::net::TcpListener::bind(config.agent_listen)
            .await
            .with_context(|| format!("listening on {} for agents", config.agent_listen))?;
        let agent_addr = agent_listener.local_addr()?;
        let service = pb::agent_service_server::AgentServiceServer::new(grpc::AgentService {
            core: core.clone(),
        })
        .max_decoding_message_size(vigie_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(vigie_proto::MAX_MESSAGE_BYTES);
        let mut stop = stop_rx.clone();
        let grpc = tonic::transport::Server::builder()
            .tls_config(tls)?
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(16))
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(agent_listener),
                async move {
                    let _ = stop.changed().await;
                },
            );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!("agent service stopped: {e}");
            }
        }));

        // API over HTTPS.
        let api_listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} for the API", config.listen))?;
        let api_addr = api_listener.local_addr()?;
        let console = console::ConsoleState::new(core.clone()).await?;
        let router = api::router(core.clone()).merge(console::router(console));
        let acceptor = api::tls_acceptor(&core.pki)?;
        tasks.push(tokio::spawn(api::serve_https(
            api_listener,
            acceptor,
            router,
            stop_rx,
        )));
        tracing::info!(%api_addr, %agent_addr, "manager started");
        Ok(ManagerHandle {
            api_addr,
            agent_addr,
            core,
            first_start,
            radius,
            stop: stop_tx,
            tasks,
        })
    }
}

/// One writer: batches from many agents share one transaction (group
/// commit), which is what makes SQLite keep up with thousands of agents.
async fn ingest_writer(
    core: Arc<Core>,
    mut rx: mpsc::Receiver<(IngestBatch, oneshot::Sender<Result<(), String>>)>,
    mut stop: watch::Receiver<bool>,
) {
    const MAX_ROWS: usize = 20_000;
    loop {
        let first = tokio::select! {
            f = rx.recv() => match f { Some(f) => f, None => return },
            _ = stop.changed() => {
                // Commit what is already queued, then stop.
                rx.close();
                match rx.try_recv() { Ok(f) => f, Err(_) => return }
            }
        };
        let mut jobs = vec![first];
        let mut rows = jobs[0].0.events.len();
        while rows < MAX_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.0.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let result = core.store.ingest(&batches).await;
        match result {
            Ok((events, alerts)) => {
                core.counters
                    .events_stored
                    .fetch_add(events, Ordering::Relaxed);
                core.counters
                    .alerts_stored
                    .fetch_add(alerts, Ordering::Relaxed);
                core.counters
                    .batches
                    .fetch_add(batches.len() as u64, Ordering::Relaxed);
                for r in replies {
                    let _ = r.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!("ingest failed: {e:#}");
                for r in replies {
                    let _ = r.send(Err(e.to_string()));
                }
            }
        }
    }
}

/// Every second: the SQLite write-ahead log into the database file (see
/// [`store::Store::checkpoint`]: off every writer's commit), drop revoked
/// agents (revoked by another manager or the CLI), send commands created
/// elsewhere; hourly: telemetry retention.
async fn housekeeping(core: Arc<Core>, retention: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_purge = std::time::Instant::now() - Duration::from_secs(3600);
    let mut last_config_sync = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = core.store.checkpoint().await {
            tracing::debug!("WAL checkpoint: {e:#}");
        }
        let hosts: Vec<String> = core
            .sessions
            .lock()
            .expect("sessions lock")
            .keys()
            .cloned()
            .collect();
        if hosts.is_empty() {
            continue;
        }
        if let Err(e) = sweep(&core, &hosts).await {
            tracing::warn!("housekeeping: {e:#}");
        }
        // Rules and policies: every 3 s is soon enough for a human edit and
        // cheap with thousands of agents (one query, plus one per change).
        if last_config_sync.elapsed() >= Duration::from_secs(3) {
            last_config_sync = std::time::Instant::now();
            if let Err(e) = config_sync::sync(&core, &hosts).await {
                tracing::warn!("configuration sync: {e:#}");
            }
        }
        if last_purge.elapsed() > Duration::from_secs(3600) {
            last_purge = std::time::Instant::now();
            let cutoff = store::now_ms() - retention.as_millis() as i64;
            match core.store.purge_events(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "telemetry retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!("retention: {e:#}"),
            }
        }
    }
}

async fn sweep(core: &Core, connected: &[String]) -> Result<()> {
    use sqlx::Row;
    let revoked = sqlx::query("SELECT id FROM hosts WHERE revoked_at IS NOT NULL")
        .fetch_all(&core.store.pool)
        .await?;
    for r in revoked {
        let id: String = r.get(0);
        if connected.contains(&id) {
            tracing::warn!(host_id = %id, "dropping revoked agent");
            core.drop_session(&id);
        }
    }
    let pending = sqlx::query("SELECT id FROM commands WHERE status = 'pending'")
        .fetch_all(&core.store.pool)
        .await?;
    for r in pending {
        let id: String = r.get(0);
        if let Some(cmd) = core.store.get_command(&id).await?
            && connected.contains(&cmd.host_id)
        {
            core.push_command(&cmd).await?;
        }
    }
    Ok(())
}

pub use store::TokenError;

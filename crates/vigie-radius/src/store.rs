//! Storage of MFA users, NAS clients, VPN sessions and the audit log, through
//! `sqlx`'s `Any` driver so the same code runs on SQLite (default, DIR/vigie.db)
//! and PostgreSQL (the manager's `--database-url`). Tables are prefixed `mfa_`;
//! migrations are embedded.

use anyhow::{Context, Result, bail};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyPoolOptions;
use std::path::Path;

use crate::crypto::MasterKey;

/// How the TOTP code travels from a given NAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeTransport {
    /// Appended to the password, `secret123456` or `secret,123456`.
    Append,
    /// Password alone, then an Access-Challenge asks for the code.
    Challenge,
}

impl CodeTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeTransport::Append => "append",
            CodeTransport::Challenge => "challenge",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "append" => Some(CodeTransport::Append),
            "challenge" => Some(CodeTransport::Challenge),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// "local" (argon2id hash here) or "ldap" (bind).
    pub backend: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
    /// Sealed TOTP secret (see [`MasterKey::seal`]); `None` until enrolled.
    pub totp_secret: Option<String>,
    pub totp_algorithm: String,
    pub totp_digits: u32,
    pub last_step: i64,
    pub drift: i64,
    pub failures: i64,
    pub last_failure: i64,
    pub locked_until: i64,
}

/// An accepted TOTP step to record, with what the decision relied on. The
/// step is written only if the account still is as it was read: enabled,
/// not locked, the same TOTP secret and (local users) the same password
/// hash. A decision taken on a cached copy of the user therefore never
/// outlives an administrator's change, made by any process or manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpdate {
    pub name: String,
    pub step: i64,
    pub drift: i64,
    /// The sealed TOTP secret the code was checked against.
    pub totp_secret: String,
    /// The password hash the password was checked against (`None`: a
    /// directory user, checked by the directory).
    pub password_hash: Option<String>,
}

impl StepUpdate {
    /// The step accepted for `u`, guarded by `u` as read.
    pub fn for_user(u: &UserRecord, step: i64, drift: i64) -> Option<StepUpdate> {
        Some(StepUpdate {
            name: u.name.clone(),
            step,
            drift,
            totp_secret: u.totp_secret.clone()?,
            password_hash: if u.backend == "ldap" {
                None
            } else {
                Some(u.password_hash.clone()?)
            },
        })
    }
}

/// Group commit of accepted TOTP steps: concurrent logins queue here and one
/// task writes them together, one statement per batch
/// ([`Store::accept_steps`]). Each caller gets its own answer once its batch
/// is committed, so an Access-Accept still waits for its step to be durably
/// written, and the compare-and-set stays in the database (several managers
/// on one PostgreSQL). On SQLite this also keeps logins from contending for
/// the single writer lock.
#[derive(Clone)]
pub struct StepWriter {
    tx: tokio::sync::mpsc::Sender<StepRequest>,
}

type StepRequest = (
    StepUpdate,
    tokio::sync::oneshot::Sender<Result<bool, String>>,
);

/// Most steps written in one statement (5 parameters each: well under
/// SQLite's 32,766 and PostgreSQL's 65,535).
const STEP_BATCH: usize = 512;
// Padded batches (see `accept_steps_on`) never exceed it.
const _: () = assert!(STEP_BATCH.is_power_of_two());

impl StepWriter {
    /// Start the writer task (on the current tokio runtime); it ends when
    /// the last `StepWriter` clone is dropped.
    pub fn spawn(store: Store) -> StepWriter {
        let (tx, rx) = tokio::sync::mpsc::channel(8 * STEP_BATCH);
        tokio::spawn(write_steps(store, rx));
        StepWriter { tx }
    }

    /// Record `update` (see [`Store::accept_step`]), with other logins'.
    pub async fn accept(&self, update: StepUpdate) -> Result<bool> {
        let stopped = || anyhow::anyhow!("the TOTP step writer stopped");
        let (done, wait) = tokio::sync::oneshot::channel();
        // The channel almost always has room: a send future (the request
        // and a semaphore wait, a third of a warm accept's future) is built,
        // boxed, only when it is full, instead of sitting in every login's task.
        match self.tx.try_send((update, done)) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(r)) => {
                Box::pin(self.tx.send(r)).await.map_err(|_| stopped())?
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
        }
        wait.await
            .map_err(|_| stopped())?
            .map_err(|e| anyhow::anyhow!(e))
    }
}

/// The step writer's own SQLite connection: SQLite's busy handler sleeps
/// up to 100 ms between tries, so a batch waiting behind another writer
/// (the manager's event ingest on the same file) would wait that long after
/// the lock is free; this one fails at once and [`write_steps`] retries
/// every millisecond. Its commits never run a WAL checkpoint either (a
/// checkpoint writes and syncs the database file): [`write_steps`] asks a
/// pool connection for a passive one, off the answer path.
async fn step_connection(url: &str) -> Result<sqlx::AnyConnection> {
    use sqlx::Connection as _;
    let mut c = sqlx::AnyConnection::connect(url).await?;
    for pragma in [
        "PRAGMA busy_timeout = 0",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA wal_autocheckpoint = 0",
    ] {
        sqlx::query(pragma).fetch_all(&mut c).await?;
    }
    Ok(c)
}

/// SQLITE_BUSY or SQLITE_LOCKED (primary codes 5 and 6).
fn is_busy(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(d)) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

async fn write_steps(store: Store, mut rx: tokio::sync::mpsc::Receiver<StepRequest>) {
    let mut conn = match &store.sqlite_url {
        Some(url) => match step_connection(url).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "TOTP step writer: own connection failed, using the pool");
                None
            }
        },
        None => None,
    };
    let mut last_checkpoint = std::time::Instant::now();
    let mut dirty = false;
    let mut waiting: std::collections::VecDeque<StepRequest> = Default::default();
    loop {
        if dirty && conn.is_some() && last_checkpoint.elapsed() >= std::time::Duration::from_secs(1)
        {
            let pool = store.pool.clone();
            tokio::spawn(async move {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_all(&pool)
                    .await
                {
                    tracing::debug!(error = %e, "WAL checkpoint");
                }
            });
            (dirty, last_checkpoint) = (false, std::time::Instant::now());
        }
        if waiting.is_empty() {
            match tokio::time::timeout(std::time::Duration::from_secs(1), rx.recv()).await {
                Ok(Some(r)) => waiting.push_back(r),
                Ok(None) => return,
                Err(_) => continue,
            }
        }
        while waiting.len() < 4 * STEP_BATCH {
            match rx.try_recv() {
                Ok(r) => waiting.push_back(r),
                Err(_) => break,
            }
        }
        // One row per user in a statement: a second login of the same user
        // waits for the next batch (and is then refused if its step is not newer).
        let mut names = std::collections::HashSet::new();
        let mut batch = Vec::new();
        let mut later = std::collections::VecDeque::new();
        for r in waiting.drain(..) {
            if batch.len() < STEP_BATCH && names.insert(r.0.name.clone()) {
                batch.push(r);
            } else {
                later.push_back(r);
            }
        }
        waiting = later;
        let updates: Vec<StepUpdate> = batch.iter().map(|(u, _)| u.clone()).collect();
        let start = std::time::Instant::now();
        let result = loop {
            let r = match conn.as_mut() {
                Some(c) => accept_steps_on(&mut *c, true, &updates).await,
                None => accept_steps_on(&store.pool, store.sqlite(), &updates).await,
            };
            match r {
                Err(e) if is_busy(&e) && start.elapsed() < std::time::Duration::from_secs(5) => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                r => break r,
            }
        };
        dirty = true;
        match result {
            Ok(done) => {
                for ((_, reply), ok) in batch.into_iter().zip(done) {
                    let _ = reply.send(Ok(ok));
                }
            }
            Err(e) => {
                if conn.take().is_some() {
                    tracing::warn!(error = %e, "TOTP step writer: own connection failed, using the pool");
                }
                let e = format!("{e:#}");
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A NAS client as stored (secret sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub name: String,
    pub address: ipnet::IpNet,
    pub sealed_secret: String,
    pub transport: CodeTransport,
    pub require_message_authenticator: bool,
    /// The manager's organisation its logins belong to (`None`: the default).
    pub org: Option<String>,
}

/// One accounting update (RFC 2866 Start / Interim-Update / Stop).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionUpdate {
    pub nas: String,
    pub session_id: String,
    pub user_name: String,
    pub client_ip: Option<String>,
    pub tunnel_ip: Option<String>,
    pub now: i64,
    pub stop: bool,
    pub duration: i64,
    pub input_octets: i64,
    pub output_octets: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub nas: String,
    pub session_id: String,
    pub user_name: String,
    pub client_ip: Option<String>,
    pub tunnel_ip: Option<String>,
    pub started: i64,
    pub stopped: Option<i64>,
    pub duration: i64,
    pub input_octets: i64,
    pub output_octets: i64,
}

/// Lockout policy: after `max_failures` failures within `window` seconds the
/// account is locked for `base_lock` seconds, doubling with each further failure.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub max_failures: i64,
    pub window: i64,
    pub base_lock: i64,
    pub max_lock: i64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failures: 5,
            window: 15 * 60,
            base_lock: 60,
            max_lock: 24 * 3600,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// The SQLite URL when opened by [`Store::connect`] (the step writer
    /// opens its own connection to it).
    sqlite_url: Option<std::sync::Arc<str>>,
}

pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Names go into logs, events and SQL parameters: refuse what a NAS would not send.
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 253 || name.chars().any(|c| c.is_control()) {
        bail!("invalid {kind} name {name:?}: 1 to 253 printable characters");
    }
    Ok(())
}

impl Store {
    /// Connect (`sqlite://PATH?mode=rwc` or `postgres://...`) and migrate.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            // WAL lets readers run while a login records its TOTP step; the
            // mode is kept in the file, so set it once before the pool opens.
            use sqlx::Connection as _;
            let mut c = sqlx::AnyConnection::connect(url)
                .await
                .context("opening the database")?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_all(&mut c)
                .await?;
            c.close().await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // With WAL, NORMAL syncs at checkpoints instead of at
                        // every commit: a process crash loses nothing, a power
                        // cut may forget the last moments (docs/vigie-radius.md).
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| "connecting to the database".to_string())?;
        let mut s = Store::from_pool(pool);
        s.sqlite_url = sqlite.then(|| url.into());
        s.migrate().await?;
        Ok(s)
    }

    /// The manager builds its pool and hands it over (call [`Store::migrate`]).
    pub fn from_pool(pool: AnyPool) -> Store {
        Store {
            pool,
            sqlite_url: None,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database is SQLite (else PostgreSQL).
    pub fn sqlite(&self) -> bool {
        self.pool.connect_options().database_url.scheme() == "sqlite"
    }

    pub async fn migrate(&self) -> Result<()> {
        let mut m = sqlx::migrate!("./migrations");
        // The manager keeps its own migrations in the same bookkeeping table.
        m.set_ignore_missing(true);
        m.run(&self.pool).await.context("running mfa_ migrations")?;
        Ok(())
    }

    /// The standalone layout: DIR/vigie.db and DIR/keys/mfa.key.
    pub async fn open_data_dir(dir: &Path) -> Result<(Store, MasterKey)> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = MasterKey::load_or_create(&dir.join("keys").join("mfa.key"))?;
        let db = dir.join("vigie.db");
        let url = format!("sqlite://{}?mode=rwc", db.display());
        Ok((Store::connect(&url).await?, key))
    }

    // ---- users

    pub async fn add_user(
        &self,
        name: &str,
        backend: &str,
        password_hash: Option<&str>,
    ) -> Result<()> {
        validate_name("user", name)?;
        let r = sqlx::query(
            "INSERT INTO mfa_users (name, backend, password_hash, created) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(backend)
        .bind(password_hash)
        .bind(now_unix())
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => bail!("user {name:?} already exists"),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn set_password_hash(&self, name: &str, hash: &str) -> Result<()> {
        self.update_one(
            sqlx::query("UPDATE mfa_users SET password_hash = $1 WHERE name = $2")
                .bind(hash)
                .bind(name),
            name,
        )
        .await
    }

    pub async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT name, backend, password_hash, disabled, totp_secret, totp_algorithm, totp_digits, \
             last_step, drift, failures, last_failure, locked_until FROM mfa_users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query(
            "SELECT name, backend, password_hash, disabled, totp_secret, totp_algorithm, totp_digits, \
             last_step, drift, failures, last_failure, locked_until FROM mfa_users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        self.update_one(
            sqlx::query("UPDATE mfa_users SET disabled = $1 WHERE name = $2")
                .bind(disabled as i64)
                .bind(name),
            name,
        )
        .await
    }

    pub async fn unlock(&self, name: &str) -> Result<()> {
        self.update_one(
            sqlx::query("UPDATE mfa_users SET failures = 0, locked_until = 0 WHERE name = $1")
                .bind(name),
            name,
        )
        .await
    }

    /// Forget the TOTP enrolment (the user must enrol again). `last_step`
    /// is kept: steps only move forward.
    pub async fn reset_totp(&self, name: &str) -> Result<()> {
        self.update_one(
            sqlx::query("UPDATE mfa_users SET totp_secret = NULL, drift = 0 WHERE name = $1")
                .bind(name),
            name,
        )
        .await
    }

    pub async fn set_totp(
        &self,
        name: &str,
        sealed: &str,
        algorithm: &str,
        digits: u32,
    ) -> Result<()> {
        self.update_one(
            sqlx::query(
                "UPDATE mfa_users SET totp_secret = $1, totp_algorithm = $2, totp_digits = $3, drift = 0 \
                 WHERE name = $4",
            )
            .bind(sealed)
            .bind(algorithm)
            .bind(digits as i64)
            .bind(name),
            name,
        )
        .await
    }

    /// Record an accepted TOTP step. Returns false when another request (or
    /// another manager) already used this step or a later one, or when the
    /// account changed since it was read (see [`StepUpdate`]): the update is
    /// a compare-and-set so a code is never accepted twice.
    pub async fn accept_step(&self, update: &StepUpdate) -> Result<bool> {
        Ok(self.accept_steps(std::slice::from_ref(update)).await?[0])
    }

    /// [`Store::accept_step`] for many users in one statement (one
    /// transaction, one commit: see [`StepWriter`]). Names must be distinct.
    /// Returns, in order, whether each step was recorded.
    pub async fn accept_steps(&self, updates: &[StepUpdate]) -> Result<Vec<bool>> {
        accept_steps_on(&self.pool, self.sqlite(), updates).await
    }

    /// Count a failure; returns the failures now counted in the policy's
    /// window and the time until which the account is locked (0 if not).
    pub async fn record_failure(
        &self,
        name: &str,
        now: i64,
        p: &LockoutPolicy,
    ) -> Result<(i64, i64)> {
        let Some(u) = self.get_user(name).await? else {
            return Ok((0, 0));
        };
        let failures = if now - u.last_failure > p.window {
            1
        } else {
            u.failures + 1
        };
        let locked_until = if failures >= p.max_failures {
            let exp = (failures - p.max_failures).min(20) as u32;
            now + (p.base_lock.saturating_mul(1 << exp)).min(p.max_lock)
        } else {
            u.locked_until
        };
        sqlx::query("UPDATE mfa_users SET failures = $1, last_failure = $2, locked_until = $3 WHERE name = $4")
            .bind(failures)
            .bind(now)
            .bind(locked_until)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok((failures, locked_until))
    }

    // ---- clients

    pub async fn add_client(
        &self,
        key: &MasterKey,
        name: &str,
        address: ipnet::IpNet,
        secret: &[u8],
        transport: CodeTransport,
        require_message_authenticator: bool,
    ) -> Result<()> {
        validate_name("client", name)?;
        if secret.len() < 16 {
            bail!("the shared secret of a NAS client must be at least 16 characters");
        }
        let sealed = key.seal(secret, &format!("nas:{name}"));
        let r = sqlx::query(
            "INSERT INTO mfa_clients (name, address, secret, code_transport, require_message_authenticator, created) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(name)
        .bind(address.to_string())
        .bind(sealed)
        .bind(transport.as_str())
        .bind(require_message_authenticator as i64)
        .bind(now_unix())
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => bail!("client {name:?} already exists"),
            Err(e) => Err(e.into()),
        }
    }

    /// The organisation a NAS client's logins are recorded in by the manager.
    pub async fn set_client_org(&self, name: &str, org: Option<&str>) -> Result<()> {
        if let Some(o) = org {
            validate_name("organisation", o)?;
        }
        self.update_one(
            sqlx::query("UPDATE mfa_clients SET org = $1 WHERE name = $2")
                .bind(org)
                .bind(name),
            name,
        )
        .await
    }

    pub async fn remove_client(&self, name: &str) -> Result<()> {
        self.update_one(
            sqlx::query("DELETE FROM mfa_clients WHERE name = $1").bind(name),
            name,
        )
        .await
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>> {
        let rows = sqlx::query(
            "SELECT name, address, secret, code_transport, require_message_authenticator, org FROM mfa_clients ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                let addr: String = r.try_get(1)?;
                let transport: String = r.try_get(3)?;
                Ok(ClientRecord {
                    address: addr
                        .parse()
                        .with_context(|| format!("client {name:?}: bad stored address {addr:?}"))?,
                    sealed_secret: r.try_get(2)?,
                    transport: CodeTransport::parse(&transport).with_context(|| {
                        format!("client {name:?}: bad code transport {transport:?}")
                    })?,
                    require_message_authenticator: r.try_get::<i64, _>(4)? != 0,
                    org: r.try_get(5)?,
                    name,
                })
            })
            .collect()
    }

    // ---- accounting

    pub async fn upsert_session(&self, u: &SessionUpdate) -> Result<()> {
        sqlx::query(
            "INSERT INTO mfa_sessions (nas, session_id, user_name, client_ip, tunnel_ip, started, updated, stopped, \
             duration, input_octets, output_octets) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10) \
             ON CONFLICT (nas, session_id) DO UPDATE SET updated = $6, stopped = $7, duration = $8, \
             input_octets = $9, output_octets = $10, \
             client_ip = COALESCE($4, mfa_sessions.client_ip), tunnel_ip = COALESCE($5, mfa_sessions.tunnel_ip)",
        )
        .bind(&u.nas)
        .bind(&u.session_id)
        .bind(&u.user_name)
        .bind(u.client_ip.as_deref())
        .bind(u.tunnel_ip.as_deref())
        .bind(u.now)
        .bind(if u.stop { Some(u.now) } else { None })
        .bind(u.duration)
        .bind(u.input_octets)
        .bind(u.output_octets)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_sessions(&self) -> Result<Vec<SessionRecord>> {
        let rows = sqlx::query(
            "SELECT nas, session_id, user_name, client_ip, tunnel_ip, started, stopped, duration, input_octets, \
             output_octets FROM mfa_sessions ORDER BY started, session_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SessionRecord {
                    nas: r.try_get(0)?,
                    session_id: r.try_get(1)?,
                    user_name: r.try_get(2)?,
                    client_ip: r.try_get(3)?,
                    tunnel_ip: r.try_get(4)?,
                    started: r.try_get(5)?,
                    stopped: r.try_get(6)?,
                    duration: r.try_get(7)?,
                    input_octets: r.try_get(8)?,
                    output_octets: r.try_get(9)?,
                })
            })
            .collect()
    }

    // ---- audit

    pub async fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> Result<()> {
        sqlx::query("INSERT INTO mfa_audit (id, time, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(now_unix())
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Audit entries, oldest first: (time, actor, action, target, detail).
    pub async fn audit_log(&self) -> Result<Vec<(i64, String, String, String, String)>> {
        let rows =
            sqlx::query("SELECT time, actor, action, target, detail FROM mfa_audit ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }

    async fn update_one<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        name: &str,
    ) -> Result<()> {
        let r = q.execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            bail!("no such entry {name:?}");
        }
        Ok(())
    }
}

/// [`Store::accept_steps`] on a pool or a connection. `sqlite`: the
/// database is SQLite (see [`Store::sqlite`]).
async fn accept_steps_on<'c, E>(exec: E, sqlite: bool, updates: &[StepUpdate]) -> Result<Vec<bool>>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    // UPDATE ... FROM (VALUES ...) RETURNING: SQLite >= 3.35 and
    // PostgreSQL both name the VALUES columns column1, column2, ...
    // Batches are padded to a power of two with rows no user matches (an
    // empty name is never valid), so that a connection prepares at most ten
    // statements and then reuses them: parsing and planning a fresh
    // statement per batch was a third of the writer's CPU.
    let rows = updates.len().next_power_of_two();
    // SQLite gets anonymous `?` parameters: binding a numbered one looks
    // its number up in a list, which made binding quadratic in the batch.
    // Either way the values are bound in the order they appear.
    use std::fmt::Write as _;
    let mut n = 0;
    let mut param = |sql: &mut String| {
        n += 1;
        if sqlite {
            sql.push('?');
        } else {
            let _ = write!(sql, "${n}");
        }
    };
    let mut sql = String::from(
        "UPDATE mfa_users SET last_step = v.column2, drift = v.column3, failures = 0, locked_until = 0 \
             FROM (VALUES ",
    );
    for i in 0..rows {
        sql.push_str(if i > 0 { ", (" } else { "(" });
        for c in 0..5 {
            if c > 0 {
                sql.push_str(", ");
            }
            param(&mut sql);
        }
        sql.push(')');
    }
    sql.push_str(
        ") AS v WHERE mfa_users.name = v.column1 AND mfa_users.last_step < v.column2 \
             AND mfa_users.disabled = 0 AND mfa_users.locked_until <= ",
    );
    param(&mut sql);
    sql.push_str(
        " AND mfa_users.totp_secret = v.column4 \
             AND (v.column5 = '' OR mfa_users.password_hash = v.column5) \
             RETURNING mfa_users.name",
    );
    let mut q = sqlx::query(&sql);
    for u in updates {
        q = q
            .bind(u.name.as_str())
            .bind(u.step)
            .bind(u.drift)
            .bind(u.totp_secret.as_str())
            // '' is never an argon2 PHC string: "no hash to compare".
            .bind(u.password_hash.as_deref().unwrap_or(""));
    }
    for _ in updates.len()..rows {
        q = q.bind("").bind(0i64).bind(0i64).bind("").bind("");
    }
    let rows = q.bind(now_unix()).persistent(true).fetch_all(exec).await?;
    let done: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    Ok(updates.iter().map(|u| done.contains(&u.name)).collect())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        name: r.try_get(0)?,
        backend: r.try_get(1)?,
        password_hash: r.try_get(2)?,
        disabled: r.try_get::<i64, _>(3)? != 0,
        totp_secret: r.try_get(4)?,
        totp_algorithm: r.try_get(5)?,
        totp_digits: r.try_get::<i64, _>(6)? as u32,
        last_step: r.try_get(7)?,
        drift: r.try_get(8)?,
        failures: r.try_get(9)?,
        last_failure: r.try_get(10)?,
        locked_until: r.try_get(11)?,
    })
}

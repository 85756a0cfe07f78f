//! The manager's database: SQLite (default, `DATA/vigie.db`, WAL) or
//! PostgreSQL, through sqlx's `Any` driver with runtime-checked SQL. The
//! same statements run on both (`$N` placeholders, `ON CONFLICT`); only the
//! migrations differ, for the audit log's append-only trigger.
//!
//! Every row carries `org_id` and every query a caller can reach filters on
//! it. The audit log has an `append_audit` and readers, nothing else.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A random secret, URL-safe base64 of 32 bytes.
pub fn random_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pub pool: AnyPool,
    pub dialect: Dialect,
}

/// Organisation names go into certificates, URLs and SQL parameters.
pub fn validate_org(org: &str) -> Result<()> {
    if org.is_empty()
        || org.len() > 64
        || !org
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!("invalid organisation name {org:?}: 1 to 64 letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

/// Why an enrolment token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("unknown enrolment token")]
    Unknown,
    #[error("enrolment token expired")]
    Expired,
    #[error("enrolment token already used")]
    Used,
    #[error("enrolment token revoked")]
    Revoked,
}

/// An agent as its certificate identifies it.
#[derive(Debug, Clone)]
pub struct AgentAuth {
    pub host_id: String,
    pub org: String,
    pub revoked: bool,
}

/// A row to insert in `events`.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub time: i64,
    pub dataset: String,
    pub action: String,
    pub process_name: Option<String>,
    pub process_pid: Option<i64>,
    pub user_name: Option<String>,
    pub doc: String,
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: String,
    pub time: i64,
    pub rule_id: String,
    pub rule_name: String,
    pub level: String,
    pub severity: i64,
    pub doc: String,
}

/// One agent batch, ready for the database.
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    pub org: String,
    pub host_id: String,
    pub events: Vec<EventRow>,
    pub alerts: Vec<AlertRow>,
    /// Actions the agent took by itself, for the audit log.
    pub actions: Vec<AuditEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub org: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: String,
    pub outcome: String,
    pub details: Value,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandRow {
    pub id: String,
    pub org: String,
    pub host_id: String,
    pub kind: String,
    pub actor: String,
    pub reason: String,
    pub args: Value,
    pub created_at: i64,
    pub status: String,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// Who made an API call.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub org: String,
    pub role: String,
    /// "user:alice" or "token:ci".
    pub actor: String,
}

/// An incident an ingest call adds alerts to (see [`Store::ingest`]).
struct OpenIncident {
    org: String,
    host: String,
    id: String,
    /// Not in the database yet.
    created: bool,
    title: String,
    first_time: i64,
    last_time: i64,
    /// Alerts added by this call.
    alerts: Vec<String>,
}

/// The incidents an ingest call adds alerts to, in the order it first
/// touched them: a host's current incident is its last one in the list.
#[derive(Default)]
struct Incidents(Vec<OpenIncident>);

/// Alerts of one host this close to the incident's last one join it.
const INCIDENT_GAP_MS: i64 = 3_600_000;

/// Most parameters bound in one ingest statement (multi-row VALUES lists,
/// IN lists): well under SQLite's 32,766 and PostgreSQL's 65,535, and
/// small enough that one statement does not hold the write lock long.
const STATEMENT_PARAMS: usize = 500;

impl Incidents {
    /// Put the new alert `a` of batch `b` into an incident: the host's
    /// current one if its last alert is at most an hour older, else the
    /// host's most recent open incident within the hour in the database
    /// (asked once per host and call), else a new one. The current incident
    /// is always the host's most recent open one, so when it does not match
    /// none does: the result is the same as asking the database for every
    /// alert.
    async fn add(
        &mut self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        b: &IngestBatch,
        a: &AlertRow,
    ) -> Result<()> {
        let current = self
            .0
            .iter_mut()
            .rev()
            .find(|i| i.org == b.org && i.host == b.host_id);
        let seen_host = current.is_some();
        if let Some(i) = current.filter(|i| i.last_time >= a.time - INCIDENT_GAP_MS) {
            i.first_time = i.first_time.min(a.time);
            i.last_time = i.last_time.max(a.time);
            i.alerts.push(a.id.clone());
            return Ok(());
        }
        let open: Option<AnyRow> = if seen_host {
            None
        } else {
            sqlx::query("SELECT id, first_time, last_time FROM incidents WHERE org_id = $1 AND host_id = $2 AND status = 'open' AND last_time >= $3 ORDER BY last_time DESC LIMIT 1")
                .bind(b.org.as_str())
                .bind(b.host_id.as_str())
                .bind(a.time - INCIDENT_GAP_MS)
                .fetch_optional(&mut **tx)
                .await?
        };
        let (id, created, first, last) = match open {
            Some(r) => (r.get(0), false, r.get::<i64, _>(1), r.get::<i64, _>(2)),
            None => (uuid::Uuid::now_v7().to_string(), true, a.time, a.time),
        };
        self.0.push(OpenIncident {
            org: b.org.clone(),
            host: b.host_id.clone(),
            id,
            created,
            title: a.rule_name.clone(),
            first_time: first.min(a.time),
            last_time: last.max(a.time),
            alerts: vec![a.id.clone()],
        });
        Ok(())
    }

    /// Write the incidents and the alerts' `incident_id`.
    async fn write(self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, store: &Store) -> Result<()> {
        for i in self.0 {
            let n = i.alerts.len() as i64;
            if i.created {
                sqlx::query("INSERT INTO incidents (id, org_id, host_id, title, first_time, last_time, alert_count) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(&i.id)
                    .bind(&i.org)
                    .bind(&i.host)
                    .bind(&i.title)
                    .bind(i.first_time)
                    .bind(i.last_time)
                    .bind(n)
                    .execute(&mut **tx)
                    .await?;
            } else {
                sqlx::query("UPDATE incidents SET last_time = CASE WHEN last_time > $1 THEN last_time ELSE $1 END, first_time = CASE WHEN first_time < $2 THEN first_time ELSE $2 END, alert_count = alert_count + $3 WHERE id = $4")
                    .bind(i.last_time)
                    .bind(i.first_time)
                    .bind(n)
                    .bind(&i.id)
                    .execute(&mut **tx)
                    .await?;
            }
            // Two parameters besides the ids.
            for ids in i.alerts.chunks(STATEMENT_PARAMS - 2) {
                let sql = format!(
                    "UPDATE alerts SET incident_id = {} WHERE org_id = {} AND id IN {}",
                    store.param(1),
                    store.param(2),
                    store.placeholders(3, 1, ids.len())
                );
                let mut q = sqlx::query(&sql).bind(&i.id).bind(&i.org);
                for id in ids {
                    q = q.bind(id.as_str());
                }
                q.execute(&mut **tx).await?;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Connect and migrate. `url`: `sqlite://PATH` or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres") {
            Dialect::Postgres
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            bail!("unsupported database URL (expected sqlite://PATH or postgres://...)");
        };
        let mut opts = AnyPoolOptions::new().max_connections(match dialect {
            Dialect::Sqlite => 4,
            Dialect::Postgres => 16,
        });
        if dialect == Dialect::Sqlite {
            // WAL lets the API read while ingest writes; busy_timeout makes
            // writers wait for each other instead of failing. No automatic
            // checkpoint: it ran inside the commit that crossed 1,000 WAL
            // pages (copying them to the database file and syncing it, with
            // the write lock held while VPN logins waited to record their
            // TOTP step); `Store::checkpoint` runs from a task instead.
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = opts
            .connect(url)
            .await
            .context("connecting to the database")?;
        let store = Store { pool, dialect };
        store.migrate().await?;
        Ok(store)
    }

    /// SQLite: copy what the write-ahead log holds into the database file
    /// (a passive checkpoint: it waits for no reader or writer, and what it
    /// could not copy is copied next time). The manager runs it every
    /// second (the connections' automatic checkpoints are off). PostgreSQL:
    /// nothing to do.
    pub async fn checkpoint(&self) -> Result<()> {
        if self.dialect == Dialect::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_all(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// SQLite in `DATA/vigie.db`.
    pub fn sqlite_url(data: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", data.join("vigie.db").display())
    }

    async fn migrate(&self) -> Result<()> {
        let mut m = match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        // vigie-radius keeps its migrations in the same bookkeeping table.
        m.set_ignore_missing(true);
        m.run(&self.pool)
            .await
            .context("running the manager's migrations")?;
        Ok(())
    }

    // ---- organisations and enrolment tokens

    pub async fn ensure_org(&self, org: &str) -> Result<()> {
        validate_org(org)?;
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(org)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A new one-time enrolment token; returns (token id, secret).
    pub async fn create_enroll_token(&self, org: &str, ttl_ms: i64) -> Result<(String, String)> {
        self.ensure_org(org).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let secret = random_secret();
        let now = now_ms();
        sqlx::query("INSERT INTO enroll_tokens (id, org_id, secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(org)
            .bind(sha256_hex(&secret))
            .bind(now)
            .bind(now + ttl_ms)
            .execute(&self.pool)
            .await?;
        Ok((id, secret))
    }

    /// Revoke an enrolment token by id (or by the token itself).
    pub async fn revoke_enroll_token(&self, id_or_token: &str) -> Result<bool> {
        let secret = id_or_token.split('.').next().unwrap_or_default();
        let r = sqlx::query("UPDATE enroll_tokens SET revoked_at = $1 WHERE (id = $2 OR secret_hash = $3) AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id_or_token)
            .bind(sha256_hex(secret))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Use a token once: atomically marks it used, or says why it cannot be.
    pub async fn consume_enroll_token(
        &self,
        secret: &str,
        host_id: &str,
    ) -> Result<Result<String, TokenError>> {
        let hash = sha256_hex(secret);
        let now = now_ms();
        let r = sqlx::query("UPDATE enroll_tokens SET used_at = $1, used_by = $2 WHERE secret_hash = $3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1")
            .bind(now)
            .bind(host_id)
            .bind(&hash)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT org_id, expires_at, used_at, revoked_at, used_by FROM enroll_tokens WHERE secret_hash = $1")
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(Err(TokenError::Unknown));
        };
        if r.rows_affected() == 1 {
            return Ok(Ok(row.get(0)));
        }
        Ok(Err(if row.get::<Option<i64>, _>(3).is_some() {
            TokenError::Revoked
        } else if row.get::<Option<i64>, _>(2).is_some() {
            TokenError::Used
        } else {
            TokenError::Expired
        }))
    }

    // ---- hosts

    #[allow(clippy::too_many_arguments)]
    pub async fn add_host(
        &self,
        host_id: &str,
        org: &str,
        hostname: &str,
        facts: &Value,
        fingerprint: &str,
        not_after: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO hosts (id, org_id, hostname, os, kernel, agent_version, enrolled_at, cert_fingerprint, cert_not_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(host_id)
            .bind(org)
            .bind(hostname)
            .bind(facts["os"].as_str().unwrap_or_default())
            .bind(facts["kernel"].as_str().unwrap_or_default())
            .bind(facts["agent_version"].as_str().unwrap_or_default())
            .bind(now_ms())
            .bind(fingerprint)
            .bind(not_after)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keep the host's release secret (from its enrolment).
    pub async fn set_release_secret(&self, host_id: &str, secret: &[u8]) -> Result<()> {
        sqlx::query("UPDATE hosts SET release_secret = $1 WHERE id = $2")
            .bind(hex::encode(secret))
            .bind(host_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The host's release secret: None if the host is not in `org`,
    /// Some(None) if it enrolled without one.
    pub async fn release_secret(
        &self,
        org: &str,
        host_id: &str,
    ) -> Result<Option<Option<Vec<u8>>>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT release_secret FROM hosts WHERE org_id = $1 AND id = $2")
                .bind(org)
                .bind(host_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(s,)| s.and_then(|h| hex::decode(h).ok())))
    }

    pub async fn agent_by_fingerprint(&self, fp: &str) -> Result<Option<AgentAuth>> {
        let row =
            sqlx::query("SELECT id, org_id, revoked_at FROM hosts WHERE cert_fingerprint = $1")
                .bind(fp)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| AgentAuth {
            host_id: r.get(0),
            org: r.get(1),
            revoked: r.get::<Option<i64>, _>(2).is_some(),
        }))
    }

    pub async fn is_revoked(&self, host_id: &str) -> Result<bool> {
        let v: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM hosts WHERE id = $1")
                .bind(host_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(!matches!(v, Some(None)))
    }

    /// Revoke an agent's certificate (by host id or hostname within `org`,
    /// or any org when `org` is None).
    pub async fn revoke_agent(&self, org: Option<&str>, host: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM hosts WHERE (id = $1 OR hostname = $1) AND ($2 = '' OR org_id = $2) AND revoked_at IS NULL")
            .bind(host)
            .bind(org.unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        for id in &ids {
            sqlx::query("UPDATE hosts SET revoked_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(ids)
    }

    pub async fn heartbeat(&self, host_id: &str, hb: &vigie_proto::pb::Heartbeat) -> Result<()> {
        let f = hb.facts.clone().unwrap_or_default();
        sqlx::query("UPDATE hosts SET last_seen = $1, hostname = CASE WHEN $2 = '' THEN hostname ELSE $2 END, os = $3, kernel = $4, agent_version = $5, addresses = $6, sensor_health = $7, sensor_lost = $8, spool_dropped = $9, spool_pending = $10 WHERE id = $11")
            .bind(now_ms())
            .bind(truncate(&f.hostname, 253))
            .bind(truncate(&f.os, 200))
            .bind(truncate(&f.kernel, 200))
            .bind(truncate(&f.agent_version, 64))
            .bind(serde_json::to_string(&f.addresses.iter().take(64).collect::<Vec<_>>())?)
            .bind(truncate(&f.sensor_health, 500))
            .bind(f.sensor_lost.min(i64::MAX as u64) as i64)
            .bind(hb.spool_dropped.min(i64::MAX as u64) as i64)
            .bind(hb.spool_pending.min(i64::MAX as u64) as i64)
            .bind(host_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn touch(&self, host_id: &str) -> Result<()> {
        sqlx::query("UPDATE hosts SET last_seen = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(host_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_isolated(&self, host_id: &str, isolated: bool) -> Result<()> {
        sqlx::query("UPDATE hosts SET isolated = $1 WHERE id = $2")
            .bind(isolated as i64)
            .bind(host_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn host_json(r: &AnyRow) -> Value {
        json!({
            "id": r.get::<String, _>(0), "org": r.get::<String, _>(1), "hostname": r.get::<String, _>(2),
            "os": r.get::<String, _>(3), "kernel": r.get::<String, _>(4), "agent_version": r.get::<String, _>(5),
            "addresses": serde_json::from_str::<Value>(&r.get::<String, _>(6)).unwrap_or(Value::Null),
            "sensor_health": r.get::<String, _>(7), "sensor_lost": r.get::<i64, _>(8),
            "spool_dropped": r.get::<i64, _>(9), "spool_pending": r.get::<i64, _>(10),
            "isolated": r.get::<i64, _>(11) != 0, "group": r.get::<String, _>(12),
            "enrolled_at": r.get::<i64, _>(13), "last_seen": r.get::<i64, _>(14),
            "revoked": r.get::<Option<i64>, _>(15).is_some(),
        })
    }

    const HOST_COLS: &'static str = "id, org_id, hostname, os, kernel, agent_version, addresses, sensor_health, sensor_lost, spool_dropped, spool_pending, isolated, group_name, enrolled_at, last_seen, revoked_at";

    pub async fn list_hosts(&self, org: &str) -> Result<Vec<Value>> {
        let sql = format!(
            "SELECT {} FROM hosts WHERE org_id = $1 ORDER BY hostname",
            Self::HOST_COLS
        );
        let rows = sqlx::query(&sql).bind(org).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(Self::host_json).collect())
    }

    pub async fn get_host(&self, org: &str, id: &str) -> Result<Option<Value>> {
        let sql = format!(
            "SELECT {} FROM hosts WHERE org_id = $1 AND id = $2",
            Self::HOST_COLS
        );
        let row = sqlx::query(&sql)
            .bind(org)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::host_json))
    }

    // ---- ingest

    /// Write several agents' batches in one transaction. Events and alerts
    /// already stored (same organisation and id) are skipped. Returns the
    /// numbers of (events, alerts) newly stored.
    pub async fn ingest(&self, batches: &[IngestBatch]) -> Result<(u64, u64)> {
        const EV_COLS: usize = 10;
        const ALERT_COLS: usize = 9;
        let mut tx = self.pool.begin().await?;
        let mut new_events = 0;
        let mut new_alerts = 0;
        let mut notify_cache = crate::notify::SettingsCache::default();
        let mut rows: Vec<(&IngestBatch, &EventRow)> = Vec::new();
        for b in batches {
            rows.extend(b.events.iter().map(|e| (b, e)));
        }
        for chunk in rows.chunks(STATEMENT_PARAMS / EV_COLS) {
            let sql = format!(
                "INSERT INTO events (org_id, id, host_id, time, dataset, action, process_name, process_pid, user_name, doc) VALUES {} ON CONFLICT (org_id, id) DO NOTHING",
                self.placeholders(1, chunk.len(), EV_COLS)
            );
            let mut q = sqlx::query(&sql);
            for (b, e) in chunk {
                q = q
                    .bind(b.org.as_str())
                    .bind(e.id.as_str())
                    .bind(b.host_id.as_str())
                    .bind(e.time)
                    .bind(e.dataset.as_str())
                    .bind(e.action.as_str())
                    .bind(e.process_name.as_deref())
                    .bind(e.process_pid)
                    .bind(e.user_name.as_deref())
                    .bind(e.doc.as_str());
            }
            new_events += q.execute(&mut *tx).await?.rows_affected();
        }
        // Alerts: inserted a chunk at a time; only the new ones (not a
        // retransmission's) are notified and counted into incidents.
        let mut rows: Vec<(&IngestBatch, &AlertRow)> = Vec::new();
        for b in batches {
            rows.extend(b.alerts.iter().map(|a| (b, a)));
        }
        let mut fresh = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(STATEMENT_PARAMS / ALERT_COLS) {
            let sql = format!(
                "INSERT INTO alerts (org_id, id, host_id, time, rule_id, rule_name, level, severity, doc) VALUES {} ON CONFLICT (org_id, id) DO NOTHING RETURNING org_id, id",
                self.placeholders(1, chunk.len(), ALERT_COLS)
            );
            let mut q = sqlx::query_as::<_, (String, String)>(&sql);
            for (b, a) in chunk {
                q = q
                    .bind(b.org.as_str())
                    .bind(a.id.as_str())
                    .bind(b.host_id.as_str())
                    .bind(a.time)
                    .bind(a.rule_id.as_str())
                    .bind(a.rule_name.as_str())
                    .bind(a.level.as_str())
                    .bind(a.severity)
                    .bind(a.doc.as_str());
            }
            let mut ids: std::collections::HashSet<(String, String)> =
                q.fetch_all(&mut *tx).await?.into_iter().collect();
            // Taken once: an alert twice in the chunk is new once.
            fresh.extend(
                chunk
                    .iter()
                    .map(|(b, a)| ids.remove(&(b.org.clone(), a.id.clone()))),
            );
        }
        // Incidents: alerts of one host within an hour of each other form
        // one. Decided here for the whole call, in the alerts' order, then
        // written once per incident: a query or three per alert held
        // SQLite's write lock while VPN logins waited to record their step.
        let mut incidents = Incidents::default();
        for ((b, a), _) in rows.iter().zip(&fresh).filter(|(_, new)| **new) {
            new_alerts += 1;
            let level = a.level.parse().unwrap_or(vigie_event::Level::Medium);
            crate::notify::enqueue(&mut tx, &mut notify_cache, &b.org, &a.id, level).await?;
            incidents.add(&mut tx, b, a).await?;
        }
        incidents.write(&mut tx, self).await?;
        for b in batches {
            for entry in &b.actions {
                Self::append_audit_in(&mut tx, entry).await?;
                // The isolation state follows verified outcomes only (here:
                // the agent's own automatic actions), not heartbeats.
                if entry.outcome == "success"
                    && (entry.action == "isolate" || entry.action == "release")
                {
                    sqlx::query("UPDATE hosts SET isolated = $1 WHERE id = $2")
                        .bind((entry.action == "isolate") as i64)
                        .bind(b.host_id.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await.context("committing an ingest batch")?;
        Ok((new_events, new_alerts))
    }

    /// Parameter number `n` (1-based) of a statement: anonymous on SQLite
    /// (bound in order; a numbered one is looked up in a list, quadratic in
    /// the parameters), numbered on PostgreSQL.
    fn param(&self, n: usize) -> String {
        let mut sql = String::new();
        self.push_param(&mut sql, n);
        sql
    }

    fn push_param(&self, sql: &mut String, n: usize) {
        match self.dialect {
            Dialect::Sqlite => sql.push('?'),
            Dialect::Postgres => {
                use std::fmt::Write as _;
                let _ = write!(sql, "${n}");
            }
        }
    }

    /// `rows` parenthesised groups of `cols` parameters, numbered from
    /// `first`: a multi-row VALUES list, or (one row) an IN list.
    fn placeholders(&self, first: usize, rows: usize, cols: usize) -> String {
        let mut sql = String::with_capacity(rows * (cols * 2 + 2));
        for i in 0..rows {
            sql.push_str(if i > 0 { ",(" } else { "(" });
            for c in 0..cols {
                if c > 0 {
                    sql.push(',');
                }
                self.push_param(&mut sql, first + i * cols + c);
            }
            sql.push(')');
        }
        sql
    }

    // ---- audit (append-only: there is deliberately no update or delete)

    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        Self::append_audit_in(&mut conn, entry).await
    }

    async fn append_audit_in(conn: &mut sqlx::AnyConnection, e: &AuditEntry) -> Result<()> {
        sqlx::query("INSERT INTO audit (id, org_id, time, actor, action, target, reason, outcome, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(e.org.as_str())
            .bind(now_ms())
            .bind(e.actor.as_str())
            .bind(e.action.as_str())
            .bind(e.target.as_str())
            .bind(e.reason.as_str())
            .bind(e.outcome.as_str())
            .bind(e.details.to_string())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub async fn list_audit(&self, org: &str, limit: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT id, time, actor, action, target, reason, outcome, details FROM audit WHERE org_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(org)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({"id": r.get::<String, _>(0), "time": r.get::<i64, _>(1), "actor": r.get::<String, _>(2),
                "action": r.get::<String, _>(3), "target": r.get::<String, _>(4), "reason": r.get::<String, _>(5),
                "outcome": r.get::<String, _>(6), "details": serde_json::from_str::<Value>(&r.get::<String, _>(7)).unwrap_or(Value::Null)})
            })
            .collect())
    }

    /// The VPN two-factor service's own audit log (`mfa_audit`: what `vigie
    /// mfa ...` and `vigie radius` did on this data folder or database), in
    /// the shape of [`Store::list_audit`], newest first. Empty when the
    /// service's tables do not exist yet. The service's own entries (actor
    /// "radius": lockouts) are left out: the manager that runs the service
    /// audits those itself, in the NAS client's organisation.
    pub async fn list_mfa_audit(&self, limit: i64) -> Result<Vec<Value>> {
        // The VPN service creates its tables when it first runs: a manager
        // that never ran it (`--no-radius`) has none, and nothing to show.
        if !self.table_exists("mfa_audit").await? {
            return Ok(vec![]);
        }
        let rows = sqlx::query(
            "SELECT id, time, actor, action, target, detail FROM mfa_audit WHERE actor <> 'radius' ORDER BY time DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let detail: String = r.get(5);
                // mfa_audit keeps seconds; the manager's audit milliseconds.
                json!({"id": r.get::<String, _>(0), "time": r.get::<i64, _>(1) * 1000,
                "actor": r.get::<String, _>(2), "action": r.get::<String, _>(3),
                "target": r.get::<String, _>(4), "reason": "", "outcome": "done",
                "details": serde_json::from_str::<Value>(&detail).unwrap_or(Value::String(detail))})
            })
            .collect())
    }

    /// Whether the database has a table called `name`.
    async fn table_exists(&self, name: &str) -> Result<bool> {
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Dialect::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let n: i64 = sqlx::query_scalar(sql)
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// The audit log an organisation's administrators see: theirs, and for
    /// the default organisation (the one that runs the VPN service) the
    /// service's own entries too, merged newest first.
    pub async fn audit_view(&self, org: &str, default_org: &str, limit: i64) -> Result<Vec<Value>> {
        let mut all = self.list_audit(org, limit).await?;
        if org == default_org {
            all.extend(self.list_mfa_audit(limit).await?);
            all.sort_by_key(|e| std::cmp::Reverse(e["time"].as_i64().unwrap_or(0)));
            all.truncate(limit.max(0) as usize);
        }
        Ok(all)
    }

    // ---- alerts, incidents, events

    pub async fn list_alerts(
        &self,
        org: &str,
        host: Option<&str>,
        status: Option<&str>,
        min_severity: i64,
        limit: i64,
    ) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT id, host_id, time, rule_id, rule_name, level, status, assignee, verdict, incident_id FROM alerts WHERE org_id = $1 AND ($2 = '' OR host_id = $2) AND ($3 = '' OR status = $3) AND severity >= $4 ORDER BY time DESC LIMIT $5")
            .bind(org)
            .bind(host.unwrap_or_default())
            .bind(status.unwrap_or_default())
            .bind(min_severity)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({"id": r.get::<String, _>(0), "host_id": r.get::<String, _>(1), "time": r.get::<i64, _>(2),
                "rule_id": r.get::<String, _>(3), "rule_name": r.get::<String, _>(4), "level": r.get::<String, _>(5),
                "status": r.get::<String, _>(6), "assignee": r.get::<Option<String>, _>(7),
                "verdict": r.get::<Option<String>, _>(8), "incident_id": r.get::<Option<String>, _>(9)})
            })
            .collect())
    }

    pub async fn get_alert(&self, org: &str, id: &str) -> Result<Option<(Value, Value)>> {
        let row = sqlx::query("SELECT id, host_id, time, rule_id, rule_name, level, status, assignee, verdict, incident_id, doc FROM alerts WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let summary = json!({"id": r.get::<String, _>(0), "host_id": r.get::<String, _>(1), "time": r.get::<i64, _>(2),
            "rule_id": r.get::<String, _>(3), "rule_name": r.get::<String, _>(4), "level": r.get::<String, _>(5),
            "status": r.get::<String, _>(6), "assignee": r.get::<Option<String>, _>(7),
            "verdict": r.get::<Option<String>, _>(8), "incident_id": r.get::<Option<String>, _>(9)});
        let doc: Value = serde_json::from_str(&r.get::<String, _>(10)).unwrap_or(Value::Null);
        Ok(Some((summary, doc)))
    }

    pub async fn update_alert(
        &self,
        org: &str,
        id: &str,
        status: Option<&str>,
        assignee: Option<&str>,
        verdict: Option<&str>,
    ) -> Result<bool> {
        let r = sqlx::query("UPDATE alerts SET status = COALESCE($1, status), assignee = COALESCE($2, assignee), verdict = COALESCE($3, verdict) WHERE org_id = $4 AND id = $5")
            .bind(status)
            .bind(assignee)
            .bind(verdict)
            .bind(org)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn add_comment(
        &self,
        org: &str,
        alert: &str,
        author: &str,
        body: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO alert_comments (id, org_id, alert_id, author, time, body) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(org)
            .bind(alert)
            .bind(author)
            .bind(now_ms())
            .bind(body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn list_incidents(&self, org: &str, limit: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT id, host_id, title, status, first_time, last_time, alert_count FROM incidents WHERE org_id = $1 ORDER BY last_time DESC LIMIT $2")
            .bind(org)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                json!({"id": r.get::<String, _>(0), "host_id": r.get::<String, _>(1), "title": r.get::<String, _>(2),
                "status": r.get::<String, _>(3), "first_time": r.get::<i64, _>(4), "last_time": r.get::<i64, _>(5),
                "alert_count": r.get::<i64, _>(6)})
            })
            .collect())
    }

    /// Search telemetry by host, time range, process name and user.
    #[allow(clippy::too_many_arguments)]
    pub async fn search_events(
        &self,
        org: &str,
        host: Option<&str>,
        from: i64,
        to: i64,
        process: Option<&str>,
        user: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT doc FROM events WHERE org_id = $1 AND ($2 = '' OR host_id = $2) AND time >= $3 AND time <= $4 AND ($5 = '' OR process_name = $5) AND ($6 = '' OR user_name = $6) ORDER BY time DESC LIMIT $7")
            .bind(org)
            .bind(host.unwrap_or_default())
            .bind(from)
            .bind(to)
            .bind(process.unwrap_or_default())
            .bind(user.unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| serde_json::from_str(&r.get::<String, _>(0)).unwrap_or(Value::Null))
            .collect())
    }

    pub async fn count(&self, table: &str, org: &str) -> Result<i64> {
        // `table` is one of our own names, never user input.
        assert!(matches!(
            table,
            "events" | "alerts" | "audit" | "hosts" | "incidents"
        ));
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE org_id = $1"))
            .bind(org)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Delete telemetry older than the retention period.
    pub async fn purge_events(&self, older_than_ms: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM events WHERE time < $1")
            .bind(older_than_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    // ---- commands

    pub async fn create_command(&self, c: &CommandRow) -> Result<()> {
        sqlx::query("INSERT INTO commands (id, org_id, host_id, kind, actor, reason, args, created_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')")
            .bind(&c.id)
            .bind(&c.org)
            .bind(&c.host_id)
            .bind(&c.kind)
            .bind(&c.actor)
            .bind(&c.reason)
            .bind(c.args.to_string())
            .bind(c.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Attach content to a command (rules bundle, policy document).
    pub async fn set_command_blob(&self, id: &str, blob: &str) -> Result<()> {
        sqlx::query("UPDATE commands SET blob = $1 WHERE id = $2")
            .bind(blob)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn command_blob(&self, id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar::<_, Option<String>>("SELECT blob FROM commands WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    fn command_from(r: &AnyRow) -> CommandRow {
        CommandRow {
            id: r.get(0),
            org: r.get(1),
            host_id: r.get(2),
            kind: r.get(3),
            actor: r.get(4),
            reason: r.get(5),
            args: serde_json::from_str(&r.get::<String, _>(6)).unwrap_or(Value::Null),
            created_at: r.get(7),
            status: r.get(8),
            outcome: r.get(9),
            error: r.get(10),
        }
    }

    const CMD_COLS: &'static str =
        "id, org_id, host_id, kind, actor, reason, args, created_at, status, outcome, error";

    /// Commands not yet finished for a host, oldest first.
    pub async fn open_commands(&self, host_id: &str) -> Result<Vec<CommandRow>> {
        let sql = format!(
            "SELECT {} FROM commands WHERE host_id = $1 AND status IN ('pending', 'sent') ORDER BY created_at",
            Self::CMD_COLS
        );
        let rows = sqlx::query(&sql)
            .bind(host_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::command_from).collect())
    }

    pub async fn get_command(&self, id: &str) -> Result<Option<CommandRow>> {
        let sql = format!("SELECT {} FROM commands WHERE id = $1", Self::CMD_COLS);
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::command_from))
    }

    pub async fn mark_sent(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE commands SET status = 'sent', sent_at = $1 WHERE id = $2 AND status = 'pending'")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record a command's result, once: returns the command if this call
    /// finished it (a re-sent result changes nothing).
    pub async fn finish_command(
        &self,
        host_id: &str,
        id: &str,
        success: bool,
        outcome: &str,
        error: &str,
    ) -> Result<Option<CommandRow>> {
        let r = sqlx::query("UPDATE commands SET status = $1, outcome = $2, error = $3, finished_at = $4 WHERE id = $5 AND host_id = $6 AND status IN ('pending', 'sent')")
            .bind(if success { "succeeded" } else { "failed" })
            .bind(truncate(outcome, 4000))
            .bind(truncate(error, 4000))
            .bind(now_ms())
            .bind(id)
            .bind(host_id)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 1 {
            self.get_command(id).await
        } else {
            Ok(None)
        }
    }

    // ---- users and API tokens

    pub async fn add_user(
        &self,
        org: &str,
        username: &str,
        password: &str,
        role: &str,
    ) -> Result<String> {
        self.ensure_org(org).await?;
        check_role(role)?;
        if username.is_empty() || username.len() > 128 || username.chars().any(|c| c.is_control()) {
            bail!("invalid user name {username:?}");
        }
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query("INSERT INTO users (id, org_id, username, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&id)
            .bind(org)
            .bind(username)
            .bind(hash_password(password)?)
            .bind(role)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .with_context(|| format!("adding user {username:?} (does it already exist?)"))?;
        Ok(id)
    }

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Check a password; returns (user id, org, role).
    pub async fn verify_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<(String, String, String)>> {
        let row = sqlx::query("SELECT id, org_id, role, password_hash FROM users WHERE username = $1 AND disabled_at IS NULL")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else {
            // Same work for unknown users, so timing does not tell names.
            let _ = verify_password(password, DUMMY_HASH);
            return Ok(None);
        };
        if verify_password(password, &r.get::<String, _>(3)) {
            Ok(Some((r.get(0), r.get(1), r.get(2))))
        } else {
            Ok(None)
        }
    }

    /// A new API token; returns the secret (shown once; only its hash is kept).
    pub async fn create_api_token(
        &self,
        org: &str,
        user_id: Option<&str>,
        name: &str,
        role: &str,
        ttl_ms: Option<i64>,
    ) -> Result<String> {
        self.ensure_org(org).await?;
        check_role(role)?;
        let secret = format!("vgt_{}", random_secret());
        sqlx::query("INSERT INTO api_tokens (id, org_id, user_id, name, token_hash, role, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(org)
            .bind(user_id)
            .bind(name)
            .bind(sha256_hex(&secret))
            .bind(role)
            .bind(now_ms())
            .bind(ttl_ms.map(|t| now_ms() + t))
            .execute(&self.pool)
            .await?;
        Ok(secret)
    }

    /// Look up a bearer token (by its SHA-256: the secret is never stored).
    pub async fn api_principal(&self, secret: &str) -> Result<Option<Principal>> {
        let row = sqlx::query("SELECT t.org_id, t.role, t.name, u.username FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)")
            .bind(sha256_hex(secret))
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| {
            let user: Option<String> = r.get(3);
            Principal {
                org: r.get(0),
                role: r.get(1),
                actor: match user {
                    Some(u) => format!("user:{u}"),
                    None => format!("token:{}", r.get::<String, _>(2)),
                },
            }
        }))
    }

    pub async fn list_api_tokens(&self, org: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT id, name, role, created_at, expires_at, revoked_at FROM api_tokens WHERE org_id = $1 ORDER BY created_at")
            .bind(org)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| json!({"id": r.get::<String, _>(0), "name": r.get::<String, _>(1), "role": r.get::<String, _>(2),
                "created_at": r.get::<i64, _>(3), "expires_at": r.get::<Option<i64>, _>(4), "revoked": r.get::<Option<i64>, _>(5).is_some()}))
            .collect())
    }

    pub async fn revoke_api_token(&self, org: &str, id: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(org)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn list_users(&self, org: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT id, username, role, created_at FROM users WHERE org_id = $1 ORDER BY username",
        )
        .bind(org)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| json!({"id": r.get::<String, _>(0), "username": r.get::<String, _>(1), "role": r.get::<String, _>(2), "created_at": r.get::<i64, _>(3)}))
            .collect())
    }
}

pub const ROLES: [&str; 3] = ["admin", "analyst", "read-only"];

pub fn check_role(role: &str) -> Result<()> {
    if !ROLES.contains(&role) {
        bail!("unknown role {role:?} (expected admin, analyst or read-only)");
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// argon2id hash of a random string, checked for unknown users.
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Bt3TtY0jF8W1J3jv7m0YV4k5LIVx0fQ0nM0G1m5m0nQ";

pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// argon2's verifier compares in constant time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unknown users are checked against DUMMY_HASH so that they take as long
    /// as known ones: it must parse (else verify_password returns at once)
    /// and carry the same algorithm and cost as the hashes we make.
    #[test]
    fn dummy_hash_costs_as_much_as_a_real_one() {
        use argon2::password_hash::PasswordHash;
        let dummy = PasswordHash::new(DUMMY_HASH).expect("DUMMY_HASH parses");
        let real_s = hash_password("correct horse").unwrap();
        let real = PasswordHash::new(&real_s).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert!(dummy.hash.is_some());
        assert!(!verify_password("correct horse", DUMMY_HASH));
        assert!(verify_password("correct horse", &real_s));
    }

    /// A manager that never ran the VPN service has no `mfa_audit` table:
    /// its audit view is the manager's own; once the service has written
    /// to it, its entries (other than the RADIUS server's) show.
    #[tokio::test]
    async fn mfa_audit_without_and_with_the_vpn_service() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url(dir.path()))
            .await
            .unwrap();
        assert!(!store.table_exists("mfa_audit").await.unwrap());
        assert!(store.list_mfa_audit(10).await.unwrap().is_empty());

        let radius = vigie_radius::Store::from_pool(store.pool.clone());
        radius.migrate().await.unwrap();
        radius
            .audit("admin", "user.disable", "bob", "{}")
            .await
            .unwrap();
        radius
            .audit("radius", "lockout", "carol", "{}")
            .await
            .unwrap();
        assert!(store.table_exists("mfa_audit").await.unwrap());
        let rows = store.list_mfa_audit(10).await.unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["target"], "bob");
    }
}

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
        let s = Store::from_pool(pool);
        s.migrate().await?;
        Ok(s)
    }

    /// The manager builds its pool and hands it over (call [`Store::migrate`]).
    pub fn from_pool(pool: AnyPool) -> Store {
        Store { pool }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
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
    /// another manager) already used this step or a later one: the update is a
    /// compare-and-set so a code is never accepted twice.
    pub async fn accept_step(&self, name: &str, step: i64, drift: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE mfa_users SET last_step = $1, drift = $2, failures = 0, locked_until = 0 \
             WHERE name = $3 AND last_step < $1",
        )
        .bind(step)
        .bind(drift)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
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

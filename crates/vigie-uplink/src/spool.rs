//! The bounded on-disk spool: everything the agent sends goes through it, so
//! a manager outage (or a crash) loses nothing. One SQLite file
//! (`STATE/spool.db`, WAL): a durable, crash-safe append log without
//! hand-written file formats.
//!
//! Rows leave the spool only when the manager acknowledges them. When the
//! spool passes its byte bound, the oldest *telemetry* is dropped and
//! counted; alerts and command results are never dropped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// What a spooled record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event = 0,
    Alert = 1,
    /// A `CommandResult` protobuf message.
    Result = 2,
    /// An action the agent took by itself (ECS JSON event): never dropped.
    Action = 3,
}

impl Kind {
    fn from_i64(v: i64) -> Kind {
        match v {
            0 => Kind::Event,
            1 => Kind::Alert,
            3 => Kind::Action,
            _ => Kind::Result,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub seq: i64,
    pub kind: Kind,
    pub body: Vec<u8>,
}

pub struct Spool {
    pool: SqlitePool,
    max_bytes: u64,
    bytes: AtomicU64,
    dropped: AtomicU64,
}

impl Spool {
    /// Open (or create) the spool; `max_bytes` bounds the stored records.
    pub async fn open(path: &Path, max_bytes: u64) -> Result<Spool> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives process crashes; a power cut may
            // lose the last transactions, which the sensor cannot avoid anyway.
            .synchronous(SqliteSynchronous::Normal);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .with_context(|| format!("opening the spool {}", path.display()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL, body BLOB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        let bytes: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(LENGTH(body)), 0) FROM spool")
            .fetch_one(&pool)
            .await?;
        let dropped: Option<i64> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'dropped'")
                .fetch_optional(&pool)
                .await?;
        Ok(Spool {
            pool,
            max_bytes,
            bytes: AtomicU64::new(bytes as u64),
            dropped: AtomicU64::new(dropped.unwrap_or(0) as u64),
        })
    }

    /// Append records in one transaction, then enforce the bound.
    pub async fn push(&self, records: &[(Kind, Vec<u8>)]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut added = 0u64;
        for (kind, body) in records {
            sqlx::query("INSERT INTO spool (kind, body) VALUES (?, ?)")
                .bind(*kind as i64)
                .bind(body.as_slice())
                .execute(&mut *tx)
                .await?;
            added += body.len() as u64;
        }
        tx.commit().await.context("writing to the spool")?;
        let total = self.bytes.fetch_add(added, Ordering::Relaxed) + added;
        if total > self.max_bytes {
            self.shrink().await?;
        }
        Ok(())
    }

    /// Drop the oldest telemetry until the spool is back under 90 % of its
    /// bound (hysteresis, so we do not shrink on every push).
    async fn shrink(&self) -> Result<()> {
        let target = self.max_bytes / 10 * 9;
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT seq, LENGTH(body) FROM spool WHERE kind = 0 ORDER BY seq")
            .fetch_all(&mut *tx)
            .await?;
        let mut bytes = self.bytes.load(Ordering::Relaxed);
        let mut last = None;
        let mut n = 0u64;
        for row in rows {
            if bytes <= target {
                break;
            }
            bytes -= row.get::<i64, _>(1) as u64;
            last = Some(row.get::<i64, _>(0));
            n += 1;
        }
        let Some(last) = last else {
            return Ok(()); // only alerts and results left: never dropped
        };
        sqlx::query("DELETE FROM spool WHERE kind = 0 AND seq <= ?")
            .bind(last)
            .execute(&mut *tx)
            .await?;
        let dropped = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        sqlx::query("INSERT INTO meta (key, value) VALUES ('dropped', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(dropped as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.bytes.store(bytes, Ordering::Relaxed);
        tracing::warn!(
            dropped = n,
            total_dropped = dropped,
            "spool full: dropped the oldest telemetry"
        );
        Ok(())
    }

    /// Up to `limit` records after `after_seq`, oldest first.
    pub async fn read_after(&self, after_seq: i64, limit: i64) -> Result<Vec<Record>> {
        let rows =
            sqlx::query("SELECT seq, kind, body FROM spool WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(after_seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| Record {
                seq: r.get(0),
                kind: Kind::from_i64(r.get(1)),
                body: r.get(2),
            })
            .collect())
    }

    /// Remove acknowledged records `first..=last`.
    pub async fn ack(&self, first: i64, last: i64) -> Result<()> {
        let freed: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM spool WHERE seq BETWEEN ? AND ?",
        )
        .bind(first)
        .bind(last)
        .fetch_one(&self.pool)
        .await?;
        sqlx::query("DELETE FROM spool WHERE seq BETWEEN ? AND ?")
            .bind(first)
            .bind(last)
            .execute(&self.pool)
            .await?;
        self.bytes.fetch_sub(freed as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Records waiting.
    pub async fn pending(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM spool")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// Telemetry records dropped because the spool was full, ever.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bound_drops_oldest_telemetry_never_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let spool = Spool::open(&path, 10_000).await.unwrap();
        spool.push(&[(Kind::Alert, vec![1; 3000])]).await.unwrap();
        for i in 0..20u8 {
            spool.push(&[(Kind::Event, vec![i; 1000])]).await.unwrap();
        }
        spool.push(&[(Kind::Result, vec![9; 3000])]).await.unwrap();
        assert!(spool.dropped() > 0);
        let all = spool.read_after(0, 1000).await.unwrap();
        assert_eq!(all.iter().filter(|r| r.kind == Kind::Alert).count(), 1);
        assert_eq!(all.iter().filter(|r| r.kind == Kind::Result).count(), 1);
        let events: Vec<u8> = all
            .iter()
            .filter(|r| r.kind == Kind::Event)
            .map(|r| r.body[0])
            .collect();
        // The newest events survive, in order; dropped + kept = sent.
        assert_eq!(*events.last().unwrap(), 19);
        assert!(events.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(events.len() as u64 + spool.dropped(), 20);
        // Counts and content survive a reopen.
        let dropped = spool.dropped();
        drop(spool);
        let spool = Spool::open(&path, 10_000).await.unwrap();
        assert_eq!(spool.dropped(), dropped);
        assert_eq!(spool.pending().await.unwrap() as usize, all.len());
        let first = all[0].seq;
        let last = all[all.len() - 1].seq;
        spool.ack(first, last).await.unwrap();
        assert_eq!(spool.pending().await.unwrap(), 0);
        assert_eq!(spool.bytes(), 0);
    }
}

//! The console's own reads and writes (the store's API covers the rest).
//! Every query filters on the caller's organisation.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::{Value, json};
use sqlx::Row;

use crate::store::{Store, now_ms};

/// Alerts per level since `since` (ms), highest level first.
pub async fn alerts_by_level(s: &Store, org: &str, since: i64) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT level, COUNT(*) FROM alerts WHERE org_id = $1 AND time >= $2 GROUP BY level",
    )
    .bind(org)
    .bind(since)
    .fetch_all(&s.pool)
    .await?;
    let mut v: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let rank = |l: &str| match l {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        _ => 4,
    };
    v.sort_by_key(|(l, _)| rank(l));
    Ok(v)
}

pub async fn open_incident_count(s: &Store, org: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM incidents WHERE org_id = $1 AND status = 'open'")
            .bind(org)
            .fetch_one(&s.pool)
            .await?,
    )
}

/// Filters of the alert list.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct AlertFilter {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub level: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub q: String,
    /// Show alerts older than this time (ms): the "older" link...
    pub before: Option<i64>,
    /// ...and, at that same millisecond, those with a smaller id (the last
    /// one shown): alerts stored in the same millisecond are neither
    /// skipped nor shown twice across pages.
    #[serde(default)]
    pub before_id: String,
    #[serde(default)]
    pub msg: Option<String>,
}

pub async fn alerts(s: &Store, org: &str, f: &AlertFilter, limit: i64) -> Result<Vec<Value>> {
    let min = f
        .level
        .parse::<vigie_event::Level>()
        .map(|l| l.severity() as i64)
        .unwrap_or(0);
    let q = f.q.trim();
    let like = format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query("SELECT a.id, a.host_id, a.time, a.rule_name, a.level, a.status, a.assignee, a.verdict, h.hostname FROM alerts a LEFT JOIN hosts h ON h.id = a.host_id WHERE a.org_id = $1 AND ($2 = '' OR a.status = $2) AND a.severity >= $3 AND ($4 = '' OR a.host_id = $4) AND ($5 = '' OR a.rule_name LIKE $6 ESCAPE '\\') AND (a.time < $7 OR (a.time = $7 AND a.id < $9)) ORDER BY a.time DESC, a.id DESC LIMIT $8")
        .bind(org)
        .bind(&f.status)
        .bind(min)
        .bind(&f.host)
        .bind(q)
        .bind(&like)
        .bind(f.before.unwrap_or(i64::MAX))
        .bind(limit)
        .bind(&f.before_id)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({"id": r.get::<String, _>(0), "host_id": r.get::<String, _>(1), "time": r.get::<i64, _>(2),
            "rule_name": r.get::<String, _>(3), "level": r.get::<String, _>(4), "status": r.get::<String, _>(5),
            "assignee": r.get::<Option<String>, _>(6), "verdict": r.get::<Option<String>, _>(7),
            "hostname": r.get::<Option<String>, _>(8)})
        })
        .collect())
}

/// Recent telemetry of a host, newest first (the host's timeline).
pub async fn host_events(s: &Store, org: &str, host: &str, limit: i64) -> Result<Vec<Value>> {
    let rows = sqlx::query("SELECT time, action, process_name, user_name, doc FROM events WHERE org_id = $1 AND host_id = $2 ORDER BY time DESC LIMIT $3")
        .bind(org)
        .bind(host)
        .bind(limit)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let doc: Value = serde_json::from_str(&r.get::<String, _>(4)).unwrap_or(Value::Null);
            let what = doc["process"]["command_line"]
                .as_str()
                .or(doc["file"]["path"].as_str())
                .or(doc["destination"]["ip"].as_str())
                .unwrap_or_default()
                .to_string();
            json!({"time": r.get::<i64, _>(0), "action": r.get::<String, _>(1),
                "process": r.get::<Option<String>, _>(2), "user": r.get::<Option<String>, _>(3), "what": what})
        })
        .collect())
}

/// Commands sent to a host, newest first.
pub async fn host_commands(
    s: &Store,
    org: &str,
    host: &str,
    since: i64,
    limit: i64,
) -> Result<Vec<Value>> {
    let rows = sqlx::query("SELECT kind, actor, reason, created_at, status, outcome, error FROM commands WHERE org_id = $1 AND host_id = $2 AND created_at >= $3 ORDER BY created_at DESC LIMIT $4")
        .bind(org)
        .bind(host)
        .bind(since)
        .bind(limit)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({"kind": r.get::<String, _>(0), "actor": r.get::<String, _>(1), "reason": r.get::<String, _>(2),
            "time": r.get::<i64, _>(3), "status": r.get::<String, _>(4), "outcome": r.get::<Option<String>, _>(5),
            "error": r.get::<Option<String>, _>(6)})
        })
        .collect())
}

/// Audit entries about a target (a host, an alert) since a time.
pub async fn audit_for(s: &Store, org: &str, target: &str, since: i64) -> Result<Vec<Value>> {
    let rows = sqlx::query("SELECT time, actor, action, reason, outcome FROM audit WHERE org_id = $1 AND target = $2 AND time >= $3 ORDER BY id DESC LIMIT 100")
        .bind(org)
        .bind(target)
        .bind(since)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({"time": r.get::<i64, _>(0), "actor": r.get::<String, _>(1), "action": r.get::<String, _>(2),
            "reason": r.get::<String, _>(3), "outcome": r.get::<String, _>(4)})
        })
        .collect())
}

pub async fn comments(s: &Store, org: &str, alert: &str) -> Result<Vec<(i64, String, String)>> {
    let rows = sqlx::query("SELECT time, author, body FROM alert_comments WHERE org_id = $1 AND alert_id = $2 ORDER BY time")
        .bind(org)
        .bind(alert)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

pub async fn incident(s: &Store, org: &str, id: &str) -> Result<Option<Value>> {
    let r = sqlx::query("SELECT i.id, i.host_id, i.title, i.status, i.first_time, i.last_time, i.alert_count, h.hostname FROM incidents i LEFT JOIN hosts h ON h.id = i.host_id WHERE i.org_id = $1 AND i.id = $2")
        .bind(org)
        .bind(id)
        .fetch_optional(&s.pool)
        .await?;
    Ok(r.map(|r| {
        json!({"id": r.get::<String, _>(0), "host_id": r.get::<String, _>(1), "title": r.get::<String, _>(2),
        "status": r.get::<String, _>(3), "first_time": r.get::<i64, _>(4), "last_time": r.get::<i64, _>(5),
        "alert_count": r.get::<i64, _>(6), "hostname": r.get::<Option<String>, _>(7)})
    }))
}

/// Alerts with their documents and host names; the caller adds the
/// conditions after `org_id = $1 AND`.
const ALERTS_WITH_DOC: &str = "SELECT a.id, a.host_id, a.time, a.rule_name, a.level, a.status, a.doc, h.hostname FROM alerts a LEFT JOIN hosts h ON h.id = a.host_id WHERE a.org_id = $1 AND ";

fn alert_with_doc(r: &sqlx::any::AnyRow) -> (Value, Value) {
    (
        json!({"id": r.get::<String, _>(0), "host_id": r.get::<String, _>(1), "time": r.get::<i64, _>(2),
        "rule_name": r.get::<String, _>(3), "level": r.get::<String, _>(4), "status": r.get::<String, _>(5),
        "hostname": r.get::<Option<String>, _>(7)}),
        serde_json::from_str(&r.get::<String, _>(6)).unwrap_or(Value::Null),
    )
}

/// An incident's alerts, oldest first, with their documents (for export).
pub async fn incident_alerts(s: &Store, org: &str, id: &str) -> Result<Vec<(Value, Value)>> {
    let sql = format!("{ALERTS_WITH_DOC}a.incident_id = $2 ORDER BY a.time LIMIT 1000");
    let rows = sqlx::query(&sql)
        .bind(org)
        .bind(id)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows.iter().map(alert_with_doc).collect())
}

pub async fn rules(s: &Store, org: &str) -> Result<Vec<Value>> {
    let rows = sqlx::query("SELECT id, title, enabled, uploaded_by, uploaded_at, groups FROM console_rules WHERE org_id = $1 ORDER BY uploaded_at DESC")
        .bind(org)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({"id": r.get::<String, _>(0), "title": r.get::<String, _>(1), "enabled": r.get::<i64, _>(2) != 0,
            "uploaded_by": r.get::<String, _>(3), "uploaded_at": r.get::<i64, _>(4),
            "groups": r.get::<String, _>(5).split(',').filter(|g| !g.is_empty()).collect::<Vec<_>>()})
        })
        .collect())
}

pub async fn add_rule(s: &Store, org: &str, title: &str, source: &str, by: &str) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO console_rules (id, org_id, title, source, enabled, uploaded_by, uploaded_at) VALUES ($1, $2, $3, $4, 1, $5, $6)")
        .bind(&id)
        .bind(org)
        .bind(title)
        .bind(source)
        .bind(by)
        .bind(now_ms())
        .execute(&s.pool)
        .await?;
    Ok(id)
}

/// A rule's host groups as stored (comma-separated; empty: every group),
/// from names as typed; an error says what is wrong.
pub fn rule_groups<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<String, &'static str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names.into_iter().map(str::trim) {
        if n.is_empty() || n.contains(',') || n.len() > 200 {
            return Err("group names: 1 to 200 characters, no comma");
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out.join(","))
}

/// Enable/disable a rule and/or set its groups (stored form, see
/// [`rule_groups`]); false if there is no such rule.
pub async fn update_rule(
    s: &Store,
    org: &str,
    id: &str,
    enabled: Option<bool>,
    groups: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query("UPDATE console_rules SET enabled = COALESCE($1, enabled), groups = COALESCE($2, groups) WHERE org_id = $3 AND id = $4")
        .bind(enabled.map(|e| e as i64))
        .bind(groups)
        .bind(org)
        .bind(id)
        .execute(&s.pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Flip a rule's state; returns the new state, None if no such rule.
pub async fn toggle_rule(s: &Store, org: &str, id: &str) -> Result<Option<bool>> {
    let r =
        sqlx::query("UPDATE console_rules SET enabled = 1 - enabled WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(&s.pool)
            .await?;
    if r.rows_affected() != 1 {
        return Ok(None);
    }
    let e: i64 =
        sqlx::query_scalar("SELECT enabled FROM console_rules WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .fetch_one(&s.pool)
            .await?;
    Ok(Some(e != 0))
}

pub async fn groups(s: &Store, org: &str) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT group_name, COUNT(*) FROM hosts WHERE org_id = $1 GROUP BY group_name ORDER BY group_name")
        .bind(org)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// All of an organisation's settings, by name.
pub async fn settings(s: &Store, org: &str) -> Result<HashMap<String, String>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM console_settings WHERE org_id = $1")
            .bind(org)
            .fetch_all(&s.pool)
            .await?;
    Ok(rows.into_iter().collect())
}

pub async fn setting(s: &Store, org: &str, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT value FROM console_settings WHERE org_id = $1 AND name = $2")
            .bind(org)
            .bind(name)
            .fetch_optional(&s.pool)
            .await?,
    )
}

pub async fn set_setting(s: &Store, org: &str, name: &str, value: &str) -> Result<()> {
    sqlx::query("INSERT INTO console_settings (org_id, name, value) VALUES ($1, $2, $3) ON CONFLICT (org_id, name) DO UPDATE SET value = excluded.value")
        .bind(org)
        .bind(name)
        .bind(value)
        .execute(&s.pool)
        .await?;
    Ok(())
}

/// Alerts of the organisation on other hosts than `host` between two times
/// (the incident report's "related activity": the VPN service records its
/// alerts under its own host), oldest first, with their documents.
pub async fn related_alerts(
    s: &Store,
    org: &str,
    host: &str,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<(Value, Value)>> {
    let sql = format!(
        "{ALERTS_WITH_DOC}a.host_id <> $2 AND a.time >= $3 AND a.time <= $4 ORDER BY a.time LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(org)
        .bind(host)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows.iter().map(alert_with_doc).collect())
}

/// Audit entries about an incident since a time, oldest first: actions on
/// its host (manual ones target the host; the agent's automatic ones are
/// recorded with the agent as actor), triage of its alerts, and changes to
/// the incident itself.
pub async fn incident_audit(
    s: &Store,
    org: &str,
    incident: &str,
    host: &str,
    since: i64,
) -> Result<Vec<Value>> {
    let agent = format!(
        "agent:{}/%",
        host.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let rows = sqlx::query("SELECT time, actor, action, target, reason, outcome, details FROM audit WHERE org_id = $1 AND time >= $2 AND (target = $3 OR target = $4 OR actor LIKE $5 ESCAPE '\\' OR target IN (SELECT id FROM alerts WHERE org_id = $1 AND incident_id = $4)) ORDER BY time, id LIMIT 1000")
        .bind(org)
        .bind(since)
        .bind(host)
        .bind(incident)
        .bind(&agent)
        .fetch_all(&s.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({"time": r.get::<i64, _>(0), "actor": r.get::<String, _>(1), "action": r.get::<String, _>(2),
            "target": r.get::<String, _>(3), "reason": r.get::<String, _>(4), "outcome": r.get::<String, _>(5),
            "details": serde_json::from_str::<Value>(&r.get::<String, _>(6)).unwrap_or(Value::Null)})
        })
        .collect())
}

/// What a person filled in for an incident's breach notification.
pub async fn incident_notes(
    s: &Store,
    org: &str,
    incident: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let rows = sqlx::query(
        "SELECT field, value FROM incident_notes WHERE org_id = $1 AND incident_id = $2",
    )
    .bind(org)
    .bind(incident)
    .fetch_all(&s.pool)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Save one filled-in field (an empty value removes it).
pub async fn set_incident_note(
    s: &Store,
    org: &str,
    incident: &str,
    field: &str,
    value: &str,
    by: &str,
) -> Result<()> {
    if value.is_empty() {
        sqlx::query(
            "DELETE FROM incident_notes WHERE org_id = $1 AND incident_id = $2 AND field = $3",
        )
        .bind(org)
        .bind(incident)
        .bind(field)
        .execute(&s.pool)
        .await?;
        return Ok(());
    }
    sqlx::query("INSERT INTO incident_notes (org_id, incident_id, field, value, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, incident_id, field) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, updated_at = excluded.updated_at")
        .bind(org)
        .bind(incident)
        .bind(field)
        .bind(value)
        .bind(by)
        .bind(now_ms())
        .execute(&s.pool)
        .await?;
    Ok(())
}

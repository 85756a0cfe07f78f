//! End to end, on SQLite and on a private PostgreSQL: enrol a test agent
//! (built on vigie-uplink) with a one-time token, stream events and an
//! alert over mutual TLS, read them back through the HTTPS API with the
//! process tree, isolate and release through the API (the test agent
//! acknowledges), and find who did it in the audit log.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use vigie_uplink::{Action, Options, Uplink};

async fn end_to_end(db: Db) {
    let m = start_manager(&db).await;
    let agent_dir = tempfile::tempdir().unwrap();
    let token = m.enroll_token("default", 3_600_000).await;
    let id = Uplink::enroll(&m.agent_url(), &token, agent_dir.path())
        .await
        .expect("enrolment");
    assert_eq!(id.org, "default");
    let recorder = Recorder::default();
    let opts = Options {
        heartbeat: Duration::from_millis(500),
        ..Options::default()
    };
    let up = Uplink::start(agent_dir.path(), recorder.clone(), opts)
        .await
        .unwrap();
    assert!(
        up.wait_connected(Duration::from_secs(20)).await,
        "agent connects"
    );

    let events: Vec<_> = (0..200).map(|n| exec_event("pc-01", n)).collect();
    for e in &events {
        up.send_event(e).await;
    }
    let alert = alert_for(&events[7]);
    up.send_alert(&alert).await;
    // At-least-once: the same events again are stored once.
    for e in &events[..50] {
        up.send_event(e).await;
    }
    up.flush().await;
    let (e, a) = m
        .wait_counts("default", 200, 1, Duration::from_secs(30))
        .await;
    assert_eq!((e, a), (200, 1));
    // Wait until the spool is empty so late duplicates are counted too.
    for _ in 0..100 {
        if up.pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.pending().await.unwrap(), 0);
    assert_eq!(
        m.h().core.store.count("events", "default").await.unwrap(),
        200
    );

    let tok = Some(m.admin_token.as_str());
    let (code, hosts) = m.get("/api/v1/hosts", tok).await;
    assert_eq!(code, 200);
    let host = &hosts["hosts"][0];
    assert_eq!(host["id"], json!(id.host_id));
    assert_eq!(host["online"], json!(true));

    let (code, alerts) = m.get("/api/v1/alerts?level=high", tok).await;
    assert_eq!(code, 200);
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1);
    let alert_id = alerts["alerts"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(alert_id, alert.id.to_string());
    let (code, detail) = m.get(&format!("/api/v1/alerts/{alert_id}"), tok).await;
    assert_eq!(code, 200);
    let tree = detail["process_tree"].as_array().expect("process tree");
    assert_eq!(tree[0]["name"], json!("bash"));
    assert_eq!(tree[1]["command_line"], json!("curl http://evil.example/7"));
    assert_eq!(tree[1]["culprit"], json!(true));
    assert_eq!(detail["document"]["host"]["id"], json!(id.host_id));
    let (code, inc) = m.get("/api/v1/incidents", tok).await;
    assert_eq!(code, 200);
    assert_eq!(inc["incidents"][0]["alert_count"], json!(1));
    let (code, ev) = m
        .get(
            &format!("/api/v1/events?host={}&process=curl&limit=5", id.host_id),
            tok,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(ev["events"].as_array().unwrap().len(), 5);

    // Isolate through the API: returns with the agent's verified outcome.
    let path = format!("/api/v1/hosts/{}/isolate", id.host_id);
    let (code, r) = m
        .post(&path, tok, json!({"reason": "curl to a known-bad site"}))
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["command"]["status"], json!("succeeded"));
    assert!(
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.action == Action::Isolate)
    );
    let (_, h) = m.get(&format!("/api/v1/hosts/{}", id.host_id), tok).await;
    assert_eq!(h["isolated"], json!(true));
    let (code, r) = m
        .post(
            &format!("/api/v1/hosts/{}/release", id.host_id),
            tok,
            json!({"reason": "cleaned"}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let (_, h) = m.get(&format!("/api/v1/hosts/{}", id.host_id), tok).await;
    assert_eq!(h["isolated"], json!(false));

    let (code, audit) = m.get("/api/v1/audit", tok).await;
    assert_eq!(code, 200);
    let audit = audit["audit"].as_array().unwrap();
    let done = |action: &str| {
        audit
            .iter()
            .find(|e| e["action"] == json!(action))
            .unwrap_or_else(|| panic!("no {action} in {audit:?}"))
            .clone()
    };
    let iso = done("isolate");
    assert_eq!(iso["actor"], json!("user:admin"));
    assert_eq!(iso["reason"], json!("curl to a known-bad site"));
    assert!(iso["outcome"].as_str().unwrap().starts_with("succeeded"));
    assert_eq!(done("release")["actor"], json!("user:admin"));
    done("isolate_requested");
    done("enroll");

    // OpenAPI is served.
    let (code, doc) = m.get("/api/v1/openapi.json", None).await;
    assert_eq!(code, 200);
    assert!(doc["paths"]["/api/v1/hosts/{id}/isolate"].is_object());
    up.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_sqlite() {
    end_to_end(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_postgres() {
    let pg = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    end_to_end(Db::Postgres(pg)).await;
}

/// SQLite: the connections' automatic WAL checkpoints are off (they ran
/// inside whichever commit crossed 1,000 pages, holding the write lock); the
/// manager's own task copies the log into the database file instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_reaches_the_database_file_without_autocheckpoint() {
    let m = start_manager(&Db::Sqlite).await;
    let pool = &m.h().core.store.pool;
    let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(auto, 0, "automatic checkpoints are on");
    let db = m.data.path().join("vigie.db");
    let before = std::fs::metadata(&db).unwrap().len();
    sqlx::query("CREATE TABLE ballast (x BLOB)")
        .execute(pool)
        .await
        .unwrap();
    for _ in 0..8 {
        sqlx::query("INSERT INTO ballast VALUES (zeroblob(262144))")
            .execute(pool)
            .await
            .unwrap();
    }
    // 2 MiB went to the WAL; the database file grows once it is copied.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = std::fs::metadata(&db).unwrap().len();
        if now >= before + 2 * 1024 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vigie.db still {now} bytes (was {before}): no checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Incidents: alerts of one host within an hour of each other form one,
/// decided for a whole ingest call at once; a retransmitted alert counts
/// once; each alert points to its incident.
async fn ingest_groups_alerts_into_incidents(url: &str) {
    use vigie_manager::store::{AlertRow, IngestBatch, Store};
    let store = Store::connect(url).await.unwrap();
    const MIN: i64 = 60_000;
    let t0 = 1_800_000_000_000;
    let alert = |id: &str, t: i64| AlertRow {
        id: id.into(),
        time: t,
        rule_id: "r".into(),
        rule_name: format!("rule of {id}"),
        level: "high".into(),
        severity: 73,
        doc: "{}".into(),
    };
    let batch = |host: &str, alerts: Vec<AlertRow>| IngestBatch {
        org: "o".into(),
        host_id: host.into(),
        alerts,
        ..IngestBatch::default()
    };
    // One call: h1 three alerts within the hour, then one two hours later
    // (a new incident); h2 one alert; a1 twice (a retransmission).
    let (_, new) = store
        .ingest(&[
            batch("h1", vec![alert("a1", t0), alert("a2", t0 + 10 * MIN)]),
            batch("h2", vec![alert("b1", t0 + 5 * MIN)]),
            batch(
                "h1",
                vec![
                    alert("a1", t0),
                    alert("a3", t0 + 30 * MIN),
                    alert("a4", t0 + 150 * MIN),
                ],
            ),
        ])
        .await
        .unwrap();
    assert_eq!(new, 5);
    // A later call: a4's incident (open, within the hour) takes a5; a2
    // again changes nothing.
    let (_, new) = store
        .ingest(&[batch(
            "h1",
            vec![alert("a2", t0 + 10 * MIN), alert("a5", t0 + 170 * MIN)],
        )])
        .await
        .unwrap();
    assert_eq!(new, 1);

    let incidents: Vec<(String, String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, host_id, title, first_time, last_time, alert_count FROM incidents ORDER BY host_id, first_time",
    )
    .fetch_all(&store.pool)
    .await
    .unwrap();
    let shape: Vec<_> = incidents
        .iter()
        .map(|(_, h, title, f, l, n)| {
            (
                h.as_str(),
                title.as_str(),
                (f - t0) / MIN,
                (l - t0) / MIN,
                *n,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("h1", "rule of a1", 0, 30, 3),
            ("h1", "rule of a4", 150, 170, 2),
            ("h2", "rule of b1", 5, 5, 1),
        ]
    );
    let of = |id: &str| {
        let pool = store.pool.clone();
        let id = id.to_string();
        async move {
            sqlx::query_scalar::<_, String>("SELECT incident_id FROM alerts WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    for (alert, incident) in [
        ("a1", 0),
        ("a2", 0),
        ("a3", 0),
        ("a4", 1),
        ("a5", 1),
        ("b1", 2),
    ] {
        assert_eq!(of(alert).await, incidents[incident].0, "{alert}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_groups_alerts_into_incidents_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = vigie_manager::store::Store::sqlite_url(dir.path());
    ingest_groups_alerts_into_incidents(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_groups_alerts_into_incidents_postgres() {
    let pg = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    ingest_groups_alerts_into_incidents(&pg.url()).await;
}

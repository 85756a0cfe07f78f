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

//! Outage: the manager is stopped for 60 s (VIGIE_OUTAGE_SECS to change)
//! while the agent produces events at a steady rate, then restarted on the
//! same ports and database; every event and alert arrives exactly once.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use vigie_uplink::{Options, Uplink};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manager_outage_loses_nothing() {
    let outage: u64 = std::env::var("VIGIE_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut m = start_manager(&Db::Sqlite).await;
    let agent_dir = tempfile::tempdir().unwrap();
    let token = m.enroll_token("default", 3_600_000).await;
    Uplink::enroll(&m.agent_url(), &token, agent_dir.path())
        .await
        .unwrap();
    let opts = Options {
        backoff_max: Duration::from_secs(2),
        ..Options::default()
    };
    let up = Uplink::start(agent_dir.path(), Recorder::default(), opts)
        .await
        .unwrap();
    assert!(up.wait_connected(Duration::from_secs(20)).await);

    // 20 events/s and one alert every 50 events, before, during and after
    // the outage.
    let mut ids = HashSet::new();
    let mut alerts = HashSet::new();
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let phase = |secs: u64| Instant::now() + Duration::from_secs(secs);
    for (stage, secs) in [("before", 3u64), ("outage", outage), ("after", 3)] {
        if stage == "outage" {
            m.stop().await;
        }
        if stage == "after" {
            m.restart().await;
        }
        let until = phase(secs);
        while Instant::now() < until {
            tick.tick().await;
            let e = exec_event("pc-outage", n);
            ids.insert(e.id);
            up.send_event(&e).await;
            if n.is_multiple_of(50) {
                let a = alert_for(&e);
                alerts.insert(a.id);
                up.send_alert(&a).await;
            }
            n += 1;
        }
        if stage == "outage" {
            assert!(!up.is_connected(), "the agent noticed the outage");
            assert!(up.pending().await.unwrap() > 0, "events wait in the spool");
        }
    }
    up.flush().await;
    let (e, a) = m
        .wait_counts(
            "default",
            ids.len() as i64,
            alerts.len() as i64,
            Duration::from_secs(120),
        )
        .await;
    // Let any duplicate resend land before counting.
    for _ in 0..200 {
        if up.pending().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.pending().await.unwrap(), 0);
    assert_eq!(up.dropped(), 0);
    let store = &m.h().core.store;
    assert_eq!((e, a), (ids.len() as i64, alerts.len() as i64));
    assert_eq!(
        store.count("events", "default").await.unwrap(),
        ids.len() as i64
    );
    // Every id we sent is there (exactly once: the key is (org, id)).
    let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM events")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    let stored: HashSet<String> = stored.into_iter().collect();
    assert_eq!(stored, ids.iter().map(|i| i.to_string()).collect());
    println!(
        "outage {outage}s: {} events and {} alerts sent, all stored once",
        ids.len(),
        alerts.len()
    );
    up.shutdown().await;
}

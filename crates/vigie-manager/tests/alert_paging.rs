//! The console's alert list pages by (time, id): alerts stored in the same
//! millisecond are neither skipped nor shown twice across pages.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Db, alert_for, exec_event, start_manager};
use vigie_manager::console::queries::{AlertFilter, alerts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_millisecond_alerts_page_without_gaps() {
    let m = start_manager(&Db::Sqlite).await;
    let (up, _, _dir) = m.connected_agent().await;
    // 120 alerts, every one at the same instant.
    let first = exec_event("pc-compta", 1);
    let mut sent = HashSet::new();
    for n in 0..120 {
        let mut ev = exec_event("pc-compta", n + 1);
        ev.time = first.time;
        let alert = alert_for(&ev);
        sent.insert(alert.id.to_string());
        up.send_event(&ev).await;
        up.send_alert(&alert).await;
    }
    up.flush().await;
    let (_, stored) = m
        .wait_counts("default", 120, 120, Duration::from_secs(30))
        .await;
    assert_eq!(stored, 120);

    // Page as the console's "older" link does: after the last one shown.
    let store = &m.h().core.store;
    let mut filter = AlertFilter::default();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = alerts(store, "default", &filter, 50).await.unwrap();
        pages += 1;
        assert!(pages <= 4, "paging does not end");
        seen.extend(page.iter().map(|a| a["id"].as_str().unwrap().to_string()));
        if page.len() < 50 {
            break;
        }
        let last = page.last().unwrap();
        filter.before = last["time"].as_i64();
        filter.before_id = last["id"].as_str().unwrap().to_string();
    }
    assert_eq!(pages, 3);
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 120, "nothing shown twice");
    assert_eq!(unique, sent, "nothing skipped");
    up.shutdown().await;
}

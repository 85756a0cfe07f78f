//! Each Sigma v2.1 correlation type, grouped, with window edges: an event
//! just inside the timespan completes the correlation, one just outside
//! does not. Times are the events' own times.

mod common;

use common::record;
use serde_json::json;
use vigie_detect::Engine;
use vigie_event::{Alert, Fields, LogSource};

const AUTH: LogSource = LogSource::new(Some("windows"), None, Some("security"));

const BASE: &str = "
title: Failed logon
id: 0b2d7a10-0000-4000-8000-000000000001
name: failed_logon
logsource:
  product: windows
  service: security
detection:
  sel:
    EventID: 4625
  condition: sel
level: low
---
title: Successful logon
id: 0b2d7a10-0000-4000-8000-000000000002
name: good_logon
logsource:
  product: windows
  service: security
detection:
  sel:
    EventID: 4624
  condition: sel
level: low
";

fn engine(correlation: &str) -> Engine {
    let yaml = format!("{BASE}---\n{correlation}");
    let (engine, report) = Engine::from_yaml(&[("corr.yml", &yaml)]);
    assert_eq!(
        report.loaded(),
        3,
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    assert_eq!(engine.correlation_count(), 1);
    engine
}

fn logon(
    engine: &mut Engine,
    id: u64,
    user: &str,
    secs: i64,
    extra: serde_json::Value,
) -> Vec<Alert> {
    let mut fields = json!({"EventID": id, "TargetUserName": user, "Computer": "dc1"});
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
    engine.process(&record(AUTH, fields, secs))
}

fn correlation_alerts(alerts: &[Alert]) -> Vec<&Alert> {
    alerts
        .iter()
        .filter(|a| a.rule.ruleset == "sigma-correlation")
        .collect()
}

#[test]
fn event_count_with_group_by_and_window_edges() {
    let corr = "title: Brute force
id: 0b2d7a10-0000-4000-8000-0000000000c1
correlation:
  type: event_count
  rules:
    - failed_logon
  group-by:
    - TargetUserName
  timespan: 60s
  condition:
    gte: 3
level: high
tags:
  - attack.credential-access
  - attack.t1110
";
    // Three failures at 0, 30, 60: the last is just inside the 60 s window.
    let mut e = engine(corr);
    assert!(correlation_alerts(&logon(&mut e, 4625, "alice", 0, json!({}))).is_empty());
    assert!(correlation_alerts(&logon(&mut e, 4625, "alice", 30, json!({}))).is_empty());
    // Another user does not count towards alice.
    assert!(correlation_alerts(&logon(&mut e, 4625, "bob", 45, json!({}))).is_empty());
    let alerts = logon(&mut e, 4625, "alice", 60, json!({}));
    let fired = correlation_alerts(&alerts);
    assert_eq!(fired.len(), 1, "{alerts:#?}");
    let alert = fired[0];
    assert_eq!(alert.rule.name, "Brute force");
    assert_eq!(alert.rule.attack, vec!["T1110"]);
    assert_eq!(alert.time, common::at(60));
    // The contributing events: the triggering one first, then the others.
    assert_eq!(alert.events.len(), 3);
    assert_eq!(alert.events[0].time, common::at(60));
    // ...alice's, whole and in order (not bob's, which is in no alice window).
    let times: Vec<_> = alert.events.iter().map(|e| e.time).collect();
    assert_eq!(times, [common::at(60), common::at(0), common::at(30)]);
    for e in &alert.events {
        let user = e
            .field("TargetUserName")
            .and_then(|v| v.to_text().map(|t| t.into_owned()));
        assert_eq!(user.as_deref(), Some("alice"));
    }
    // Detections used only by a correlation do not alert on their own.
    assert_eq!(alerts.len(), 1);

    // Same, but the third failure comes at 61 s: just outside.
    let mut e = engine(corr);
    logon(&mut e, 4625, "alice", 0, json!({}));
    logon(&mut e, 4625, "alice", 30, json!({}));
    assert!(correlation_alerts(&logon(&mut e, 4625, "alice", 61, json!({}))).is_empty());
}

#[test]
fn value_count() {
    let corr = "title: Password spraying
id: 0b2d7a10-0000-4000-8000-0000000000c2
correlation:
  type: value_count
  rules:
    - failed_logon
  group-by:
    - IpAddress
  timespan: 10m
  condition:
    field: TargetUserName
    gte: 3
level: high
";
    let ip = |ip: &str| json!({"IpAddress": ip});
    let mut e = engine(corr);
    logon(&mut e, 4625, "alice", 0, ip("10.0.0.9"));
    logon(&mut e, 4625, "alice", 10, ip("10.0.0.9")); // same user: still 1 value
    logon(&mut e, 4625, "bob", 20, ip("10.0.0.9"));
    logon(&mut e, 4625, "carol", 30, ip("10.0.0.8")); // other source
    assert!(correlation_alerts(&logon(&mut e, 4625, "bob", 40, ip("10.0.0.9"))).is_empty());
    let fired = logon(&mut e, 4625, "dave", 600, ip("10.0.0.9"));
    assert_eq!(correlation_alerts(&fired).len(), 1, "just inside 10 min");

    let mut e = engine(corr);
    logon(&mut e, 4625, "alice", 0, ip("10.0.0.9"));
    logon(&mut e, 4625, "bob", 20, ip("10.0.0.9"));
    let late = logon(&mut e, 4625, "dave", 601, ip("10.0.0.9"));
    assert!(
        correlation_alerts(&late).is_empty(),
        "alice fell out of the window"
    );
}

fn temporal(kind: &str) -> String {
    format!(
        "title: Failures then success
id: 0b2d7a10-0000-4000-8000-0000000000c3
correlation:
  type: {kind}
  rules:
    - failed_logon
    - good_logon
  group-by:
    - TargetUserName
  timespan: 5m
level: high
"
    )
}

#[test]
fn temporal_any_order() {
    let corr = temporal("temporal");
    let mut e = engine(&corr);
    assert!(correlation_alerts(&logon(&mut e, 4624, "alice", 0, json!({}))).is_empty());
    assert!(correlation_alerts(&logon(&mut e, 4625, "bob", 10, json!({}))).is_empty());
    assert_eq!(
        correlation_alerts(&logon(&mut e, 4625, "alice", 300, json!({}))).len(),
        1
    );

    let mut e = engine(&corr);
    logon(&mut e, 4624, "alice", 0, json!({}));
    assert!(correlation_alerts(&logon(&mut e, 4625, "alice", 301, json!({}))).is_empty());
}

#[test]
fn temporal_ordered() {
    let corr = temporal("temporal_ordered");
    // Success before failure: wrong order, no alert.
    let mut e = engine(&corr);
    logon(&mut e, 4624, "alice", 0, json!({}));
    assert!(correlation_alerts(&logon(&mut e, 4625, "alice", 10, json!({}))).is_empty());
    // Failure then success within 5 min: alert.
    let mut e = engine(&corr);
    logon(&mut e, 4625, "alice", 0, json!({}));
    assert_eq!(
        correlation_alerts(&logon(&mut e, 4624, "alice", 300, json!({}))).len(),
        1
    );
    // Failure then success 5 min 1 s later: no alert.
    let mut e = engine(&corr);
    logon(&mut e, 4625, "alice", 0, json!({}));
    assert!(correlation_alerts(&logon(&mut e, 4624, "alice", 301, json!({}))).is_empty());
}

fn numeric(kind: &str, condition: &str) -> String {
    format!(
        "title: Big transfers
id: 0b2d7a10-0000-4000-8000-0000000000c4
correlation:
  type: {kind}
  rules:
    - failed_logon
  group-by:
    - TargetUserName
  timespan: 1h
  condition:
    field: Bytes
{condition}
level: medium
"
    )
}

/// Feeds values at the given seconds; returns whether the last one fired.
fn feed(corr: &str, values: &[(i64, f64)]) -> bool {
    let mut e = engine(corr);
    let mut last = Vec::new();
    for (secs, bytes) in values {
        last = logon(&mut e, 4625, "alice", *secs, json!({"Bytes": bytes}));
    }
    !correlation_alerts(&last).is_empty()
}

#[test]
fn value_sum() {
    let corr = numeric("value_sum", "    gt: 1000");
    assert!(feed(&corr, &[(0, 600.0), (3600, 500.0)]));
    assert!(!feed(&corr, &[(0, 600.0), (3601, 500.0)]));
    assert!(!feed(&corr, &[(0, 400.0), (10, 500.0)]));
}

#[test]
fn value_avg() {
    let corr = numeric("value_avg", "    gte: 100");
    assert!(feed(&corr, &[(0, 50.0), (10, 150.0)]));
    assert!(!feed(&corr, &[(0, 50.0), (10, 140.0)]));
}

#[test]
fn value_percentile() {
    let corr = numeric("value_percentile", "    percentile: 90\n    gte: 900");
    assert!(feed(
        &corr,
        &[(0, 1.0), (1, 2.0), (2, 3.0), (3, 1000.0), (4, 1000.0)]
    ));
    assert!(!feed(&corr, &[(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]));
}

#[test]
fn value_median() {
    let corr = numeric("value_median", "    gte: 10");
    assert!(feed(&corr, &[(0, 5.0), (1, 10.0), (2, 50.0)]));
    assert!(!feed(&corr, &[(0, 5.0), (1, 9.0), (2, 50.0)]));
}

/// Each detector keeps its own windows: two streams do not add up.
#[test]
fn detectors_do_not_share_windows() {
    let corr = "title: Brute force
id: 0b2d7a10-0000-4000-8000-0000000000c5
correlation:
  type: event_count
  rules:
    - failed_logon
  group-by:
    - TargetUserName
  timespan: 60s
  condition:
    gte: 2
level: high
";
    let e = engine(corr);
    let mut a = e.detector();
    let mut b = e.detector();
    let ev = |secs| {
        record(
            AUTH,
            json!({"EventID": 4625, "TargetUserName": "alice"}),
            secs,
        )
    };
    assert!(a.process(&ev(0)).is_empty());
    assert!(b.process(&ev(1)).is_empty());
    assert_eq!(a.process(&ev(2)).len(), 1);
}

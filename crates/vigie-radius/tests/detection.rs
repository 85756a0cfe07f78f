//! Must show #6: attempts replayed through the real server (radclient), the
//! events it produced run through the detection engine with rules/vpn.

mod common;
use common::*;
use vigie_event::{Event, Payload};
use vigie_radius::CodeTransport;

fn req(user: &str, password: &str, from: &str) -> String {
    format!(
        "User-Name = \"{user}\", User-Password = \"{password}\", Calling-Station-Id = \"{from}\", Message-Authenticator = 0x00"
    )
}

fn alerts(events: &[Event]) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/vpn");
    let (mut engine, report) = vigie_detect::Engine::load(&[dir]);
    assert_eq!(
        report.problems().count(),
        0,
        "{:#?}",
        report.problems().collect::<Vec<_>>()
    );
    assert!(engine.correlation_count() >= 4);
    let mut out = Vec::new();
    for e in events {
        for a in engine.process(e) {
            if a.rule.ruleset == "sigma-correlation" || a.level() >= vigie_event::Level::Medium {
                out.push(a.rule.name.clone());
            }
        }
    }
    out
}

/// The same events through `vigie radius`'s event thread (queue, batched
/// writes, detection): every event written once, and the brute force alert.
fn through_the_event_thread(events: &[Event]) {
    use vigie_radius::EventSink as _;
    use vigie_radius::standalone::{QueueSink, event_loop};
    let dir = tempfile::tempdir().unwrap();
    let (events_path, alerts_path) = (dir.path().join("events"), dir.path().join("alerts"));
    let file = |p: &std::path::Path| {
        Some(
            Box::new(std::io::BufWriter::new(std::fs::File::create(p).unwrap()))
                as Box<dyn std::io::Write + Send>,
        )
    };
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/vpn");
    let (engine, _) = vigie_detect::Engine::load(&[rules]);
    let (sink, rx) = QueueSink::new(events.len());
    for e in events {
        sink.emit(e.clone());
    }
    drop(sink);
    event_loop(rx, file(&events_path), file(&alerts_path), engine);
    let written = std::fs::read_to_string(&events_path).unwrap();
    let ids: Vec<String> = written
        .lines()
        .map(|l| vigie_event::ecs::parse_event(l).unwrap().id.to_string())
        .collect();
    let sent: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, sent);
    let alerts = std::fs::read_to_string(&alerts_path).unwrap();
    assert!(
        alerts.contains("VPN brute force on one account"),
        "{alerts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_spraying_and_friends_raise_alerts() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    let victim = f.user("victim", "victim pw").await;
    let carol = f.user("carol", "carol pw").await;
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        f.user(u, "pw").await;
    }

    // Brute force: 12 guesses on one account from one address.
    for i in 0..12 {
        let out = f
            .radclient(&req("victim", &format!("guess{i}123456"), "203.0.113.9"))
            .await;
        assert!(rejected(&out), "{out}");
    }
    let brute = f.events.0.lock().unwrap().clone();
    let titles = alerts(&brute);
    assert!(
        titles.contains(&"VPN brute force on one account".to_string()),
        "{titles:?}"
    );
    assert!(
        !titles.contains(&"VPN password spraying from one source".to_string()),
        "{titles:?}"
    );
    let _ = victim;
    through_the_event_thread(&brute);

    // Spraying: one guess on each of 5 accounts from another address.
    f.events.0.lock().unwrap().clear();
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        let out = f
            .radclient(&req(u, "Spring2026!123456", "198.51.100.66"))
            .await;
        assert!(rejected(&out), "{out}");
    }
    let spray = f.events.0.lock().unwrap().clone();
    let titles = alerts(&spray);
    assert!(
        titles.contains(&"VPN password spraying from one source".to_string()),
        "{titles:?}"
    );
    assert!(
        !titles.contains(&"VPN brute force on one account".to_string()),
        "{titles:?}"
    );

    // Failures then success, then the same account from a second address.
    f.events.0.lock().unwrap().clear();
    for _ in 0..3 {
        let out = f.radclient(&req("carol", "typo123456", "192.0.2.20")).await;
        assert!(rejected(&out), "{out}");
    }
    let out = f
        .radclient(&req(
            "carol",
            &format!("carol pw{}", oathtool(&carol, 0)),
            "192.0.2.20",
        ))
        .await;
    assert!(accepted(&out), "{out}");
    let first = f.events.0.lock().unwrap().clone();
    let titles = alerts(&first);
    assert!(
        titles.contains(&"VPN failures then success on one account".to_string()),
        "{titles:?}"
    );
    assert!(
        !titles.contains(&"VPN logins from two sources at once".to_string()),
        "{titles:?}"
    );
    let out = f
        .radclient(&req(
            "carol",
            &format!("carol pw{}", oathtool(&carol, 1)),
            "203.0.113.200",
        ))
        .await;
    assert!(accepted(&out), "{out}");
    let both = f.events.0.lock().unwrap().clone();
    let titles = alerts(&both);
    assert!(
        titles.contains(&"VPN logins from two sources at once".to_string()),
        "{titles:?}"
    );

    // Outside working hours: the server stamps the local hour; the rule reads it.
    let mut success = both.last().unwrap().clone();
    let Payload::Authentication(a) = &mut success.payload else {
        panic!()
    };
    assert!(a.auth.local_hour.is_some());
    a.auth.local_hour = Some(3);
    assert!(
        alerts(std::slice::from_ref(&success))
            .contains(&"VPN login outside working hours".to_string())
    );
    let Payload::Authentication(a) = &mut success.payload else {
        panic!()
    };
    a.auth.local_hour = Some(10);
    assert!(
        !alerts(std::slice::from_ref(&success))
            .contains(&"VPN login outside working hours".to_string())
    );
}

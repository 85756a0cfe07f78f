//! What an authentication event costs `vigie radius`'s event thread: the
//! logins `scripts/bench/radius` makes (many users, each once per TOTP
//! step), through detection with the whole rule pack, against the same
//! events through an engine without rules (the baseline: queueing and the
//! loop itself), in the same run.
//!
//! Run: `cargo bench -p vigie-radius --bench events`
//! (`VIGIE_BENCH_EVENTS`, default 200000; `VIGIE_BENCH_USERS`, default 2000).

use std::time::Instant;

use vigie_event::{AuthDetails, AuthEvent, Endpoint, Event, Host, Outcome, Payload, User};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One accepted login, built the way the server builds it.
fn login(user: usize, time: chrono::DateTime<chrono::Utc>) -> Event {
    let ev = AuthEvent {
        outcome: Outcome::Success,
        user: User {
            name: Some(format!("user{user:05}")),
            ..User::default()
        },
        source: Endpoint {
            ip: Some(std::net::IpAddr::from([
                10,
                1,
                (user >> 8) as u8,
                user as u8,
            ])),
            ..Endpoint::default()
        },
        auth: AuthDetails {
            service: "vpn".into(),
            nas: Some("bench".into()),
            nas_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            reason: None,
            step: Some("totp".into()),
            calling_station_id: Some(format!("10.1.{}.{}", (user >> 8) as u8, user as u8)),
            local_hour: Some(10),
        },
    };
    Event::new(time, Host::named("bench"), Payload::Authentication(ev))
}

/// Seconds (wall clock, one thread) to run `events` through `engine`.
fn run(engine: &mut vigie_detect::Engine, events: &[Event]) -> (f64, usize) {
    let start = Instant::now();
    let mut alerts = 0;
    for e in events {
        alerts += engine.process(e).len();
    }
    (start.elapsed().as_secs_f64(), alerts)
}

fn main() {
    let n = env_usize("VIGIE_BENCH_EVENTS", 200_000);
    let users = env_usize("VIGIE_BENCH_USERS", 2_000).max(1);
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    // As under `scripts/bench/radius`: each user logs in once per 30 s TOTP
    // step, five steps in a row (a cold pass and four warm ones), at 50,000
    // logins/s; then the next `users` users do the same.
    let start = chrono::Utc::now();
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let (round, nth) = (i / users, i % users);
            let user = (round / 5) * users + nth;
            let at = chrono::Duration::seconds(30 * round as i64)
                + chrono::Duration::microseconds(20 * nth as i64);
            login(user, start + at)
        })
        .collect();
    let (mut engine, report) = vigie_detect::Engine::load(&[&rules]);
    assert_eq!(report.problems().count(), 0, "the rule pack loads whole");
    let mut empty = vigie_detect::Engine::empty();
    // Warm up both (allocator, caches), then measure.
    run(&mut engine, &events[..n.min(20_000)]);
    run(&mut empty, &events[..n.min(20_000)]);
    let (base, _) = run(&mut empty, &events);
    let (with, alerts) = run(&mut engine, &events);
    let per = |s: f64| s * 1e6 / n as f64;
    println!(
        "{n} logins of {users} users, {} rules ({} correlations), {alerts} alerts",
        engine.rule_count(),
        engine.correlation_count()
    );
    println!("no rules (baseline): {:.2} us per event", per(base));
    println!("rule pack:           {:.2} us per event", per(with));
    println!("ratio rule pack / baseline: {:.1}", with / base);
}

//! What an authentication event costs `vigie radius`'s event thread: the
//! logins `scripts/bench/radius` makes (many users, each once per TOTP
//! step), through detection with the whole rule pack, against the other
//! per-event work of the same thread measured in the same run (the
//! baseline): writing each event as its JSON line (`vigie radius
//! --events`). An engine without rules would not do as a baseline: it
//! returns before looking at the event.
//!
//! Run: `cargo bench -p vigie-radius --bench events`
//! (`VIGIE_BENCH_EVENTS`, default 200000; `VIGIE_BENCH_USERS`, default 2000;
//! `VIGIE_BENCH_HOUR`, the logins' local hour, default 10: an hour outside
//! the rule pack's working hours, e.g. 3, makes every login an alert).

use std::time::Instant;

use vigie_event::{AuthDetails, AuthEvent, Endpoint, Event, Host, Outcome, Payload, User};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One accepted login at local hour `hour`, built the way the server builds it.
fn login(user: usize, time: chrono::DateTime<chrono::Utc>, hour: u8) -> Event {
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
            local_hour: Some(hour),
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

/// Seconds (wall clock, one thread) to write `events` as JSON lines, as
/// the event thread does for `--events` (into memory here: no disk noise).
fn write_lines(events: &[Event]) -> f64 {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    for e in events {
        out.clear();
        let line = serde_json::to_string(e).expect("an event serialises");
        let _ = writeln!(out, "{line}");
        std::hint::black_box(&out);
    }
    start.elapsed().as_secs_f64()
}

fn main() {
    let n = env_usize("VIGIE_BENCH_EVENTS", 200_000);
    let users = env_usize("VIGIE_BENCH_USERS", 2_000).max(1);
    let hour = env_usize("VIGIE_BENCH_HOUR", 10).min(23) as u8;
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
            login(user, start + at, hour)
        })
        .collect();
    let (mut engine, report) = vigie_detect::Engine::load(&[&rules]);
    assert_eq!(report.problems().count(), 0, "the rule pack loads whole");
    // Warm up both (allocator, caches), then measure, on a fresh engine:
    // the warm-up's events would otherwise sit in its correlation windows.
    run(&mut engine, &events[..n.min(20_000)]);
    write_lines(&events[..n.min(20_000)]);
    let (mut engine, _) = vigie_detect::Engine::load(&[&rules]);
    let base = write_lines(&events);
    let (with, alerts) = run(&mut engine, &events);
    let per = |s: f64| s * 1e6 / n as f64;
    println!(
        "{n} logins of {users} users, {} rules ({} correlations), {alerts} alerts",
        engine.rule_count(),
        engine.correlation_count()
    );
    println!("JSON line (baseline): {:.2} us per event", per(base));
    println!("rule pack:            {:.2} us per event", per(with));
    println!("ratio rule pack / JSON line: {:.2}", with / base);
}

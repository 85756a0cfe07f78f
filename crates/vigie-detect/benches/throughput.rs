//! Detection throughput: SigmaHQ's rules over flattened EVTX-style records
//! (the JSON renderings of SigmaHQ's regression samples), on one core,
//! against an engine with zero rules over the same events (the baseline).
//! Also prints the rule load time.
//!
//! Run: `cargo bench -p vigie-detect --bench throughput`
//! (`VIGIE_SHARED_DIR` points at the shared data if not at `../shared`;
//! `VIGIE_BENCH_EVENTS` sets how many events are evaluated, default 200000).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};
use vigie_detect::{Engine, windows_logsource};
use vigie_event::{Event, Host, LogRecord, Payload};

fn shared() -> PathBuf {
    std::env::var_os("VIGIE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// `{"Event":{"System":..,"EventData":..}}` → flat Sigma-style fields, the
/// way Vigie's log readers flatten Windows records.
fn flatten(v: &Value) -> Option<Map<String, Value>> {
    let event = v.get("Event")?;
    let mut out = Map::new();
    if let Some(Value::Object(system)) = event.get("System") {
        for (k, val) in system {
            match val {
                Value::Object(o) => {
                    if let Some(Value::Object(attrs)) = o.get("#attributes") {
                        for (ak, av) in attrs {
                            out.insert(format!("{k}_{ak}"), av.clone());
                        }
                    }
                    if let Some(text) = o.get("#text") {
                        out.insert(k.clone(), text.clone());
                    }
                }
                other => {
                    out.insert(k.clone(), other.clone());
                }
            }
        }
    }
    for section in ["EventData", "UserData"] {
        if let Some(Value::Object(data)) = event.get(section) {
            for (k, val) in data {
                match val {
                    Value::Object(inner) if section == "UserData" => {
                        for (ik, iv) in inner {
                            out.insert(ik.clone(), iv.clone());
                        }
                    }
                    other => {
                        out.insert(k.clone(), other.clone());
                    }
                }
            }
        }
    }
    Some(out)
}

fn corpus() -> Vec<Event> {
    let mut events = Vec::new();
    let root = shared().join("data/sigmahq/regression_data");
    for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
        let entry = entry.expect("regression data readable");
        if entry.path().extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for value in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            let Ok(value) = value else { break };
            let Some(fields) = flatten(&value) else {
                continue;
            };
            let logsource = windows_logsource(&fields);
            let host = fields
                .get("Computer")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            events.push(Event::new(
                chrono::Utc::now(),
                Host::named(host),
                Payload::Log(LogRecord { logsource, fields }),
            ));
        }
    }
    events
}

/// Nanoseconds this thread has spent on a CPU (Linux schedstat): the machine
/// is shared, so wall time alone would count other processes' work.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (current, peak) resident memory in MiB, from /proc/self/status.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

struct Rate {
    wall: f64,
    cpu: Option<f64>,
    alerts: usize,
}

fn run(engine: &Engine, events: &[Event], n: usize) -> Rate {
    let mut detector = engine.detector();
    let mut alerts = 0;
    let cpu0 = thread_cpu_ns();
    let started = Instant::now();
    for event in events.iter().cycle().take(n) {
        alerts += detector.process(event).len();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu0
        .zip(thread_cpu_ns())
        .map(|(a, b)| n as f64 / ((b - a) as f64 / 1e9));
    Rate {
        wall: n as f64 / wall,
        cpu,
        alerts,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument would be ignored.
    let n: usize = std::env::var("VIGIE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let base = shared().join("data/sigmahq");
    let dirs: Vec<PathBuf> = [
        "rules",
        "rules-emerging-threats",
        "rules-threat-hunting",
        "rules-placeholder",
    ]
    .iter()
    .map(|d| base.join(d))
    .collect();

    let (rss_before, _) = rss_mib();
    let cpu0 = thread_cpu_ns();
    let started = Instant::now();
    let (engine, report) = Engine::load(&dirs);
    let load = started.elapsed().as_secs_f64();
    let (rss_after, rss_peak) = rss_mib();
    println!(
        "rule load: {} of {} SigmaHQ rules in {:.3} s ({} threads)",
        report.loaded(),
        report.total(),
        load,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
        // Only this thread's share: the parser threads add their own.
        println!(
            "rule load: main thread on CPU {:.3} s",
            (b - a) as f64 / 1e9
        );
    }
    println!(
        "memory: {:.0} MiB resident before loading, {:.0} MiB after (peak {:.0} MiB)",
        rss_before, rss_after, rss_peak
    );

    let events = corpus();
    println!(
        "corpus: {} distinct flattened records from regression_data, {} evaluated per run",
        events.len(),
        n
    );
    let empty = Engine::empty();
    // Warm up caches and routing.
    run(&engine, &events, events.len());
    let base = run(&empty, &events, n);
    let full = run(&engine, &events, n);
    let cpu = |r: &Rate| r.cpu.map_or("n/a".to_string(), |c| format!("{c:.0}"));
    println!(
        "baseline (no rules): {:>10.0} events/s wall, {:>10} events/s of CPU time",
        base.wall,
        cpu(&base)
    );
    println!(
        "all SigmaHQ rules:   {:>10.0} events/s wall, {:>10} events/s of CPU time, one core ({} alerts)",
        full.wall,
        cpu(&full),
        full.alerts
    );
    let per_core = full.cpu.unwrap_or(full.wall);
    println!(
        "ratio: {:.4} (rules / baseline, wall); target >= 30000 events/s per core: {}",
        full.wall / base.wall,
        if per_core >= 30_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}

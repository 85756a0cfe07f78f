//! Benchmark (issue 4, "Must show" 3): from the exec of a command that
//! matches a critical rule to the moment a probe connection from the
//! endpoint to "outside" fails, with the real agent (eBPF sensor, Sigma
//! engine, policy, nftables) running in an "endpoint" network namespace.
//! Baseline, same run and same agent: exec → the triggering process is
//! dead (detection + kill, the first action of the same response). The
//! ratio is what isolating costs beyond the kill. Prints p50/p99 of both.
//!
//! Needs root. Run: scripts/bench/time-to-isolate [RUNS]
//! Namespaces, processes and temp files are removed at the end (Drop).

#[path = "../../vigie-respond/tests/common/mod.rs"]
mod netns;
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use vigie_respond::release::{self, Purpose};
use vigie_respond::{Cause, Responder, StateDir, isolation};

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Connect to `to` from namespace `ns` until a connection fails.
fn probe_until_blocked(ns: &str, to: SocketAddr) -> std::thread::JoinHandle<Instant> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns");
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        loop {
            if isolation::try_connect(to, false, Duration::from_millis(50)).is_err() {
                return Instant::now();
            }
            // 1 ms resolution without flooding the echo server.
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

fn main() {
    // Started again by support::Agent as the agent process itself.
    if std::env::var_os("VIGIE_TEST_CONFIG").is_some() {
        support::helper_main();
        return;
    }
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    assert!(netns::is_root(), "needs root");
    let lab = netns::Lab::new("tti");
    netns::start_servers(&lab.outside);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let rules = tmp.path().join("rules");
    let marker = format!("vigie-bench-trigger-{}", std::process::id());
    support::marker_rule(&rules, &marker, "critical");
    let acts = tmp.path().join("actions.jsonl");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nrules = [{rules:?}]\nbuiltin = false\n[output]\nalerts = \"\"\nactions = {acts:?}\n\
             [response.isolation]\nresolvers = [\"10.77.0.2\"]\nprobes = [\"10.77.0.3:7000\"]\n"
        ),
    )
    .unwrap();
    let _agent = support::Agent::start(&lab.endpoint, &state, &config, None);
    let outside: SocketAddr = "10.77.0.3:7000".parse().unwrap();
    let secret = StateDir::open(&state).unwrap().secret().unwrap();

    let (mut to_isolated, mut to_killed) = (Vec::new(), Vec::new());
    for run in 0..runs {
        assert!(
            netns::tcp_ok(&lab.endpoint, "10.77.0.3:7000", false),
            "run {run}: outside reachable before the trigger"
        );
        let isolates_before = support::actions(
            &support::wait_lines(&acts, Duration::ZERO, |_| true),
            "isolate",
        )
        .len();
        let prober = probe_until_blocked(&lab.endpoint, outside);
        let script = format!("sleep 30; : {marker}");
        let t0 = Instant::now();
        let mut child = netns::ChildGuard(netns::in_ns(&lab.endpoint, move || {
            Command::new("/bin/sh")
                .args(["-c", &script])
                .spawn()
                .unwrap()
        }));
        let killed = loop {
            if child.0.try_wait().unwrap().is_some() {
                break Instant::now();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "run {run}: not killed"
            );
            std::thread::sleep(Duration::from_micros(500));
        };
        let blocked = prober.join().unwrap();
        to_killed.push((killed - t0).as_secs_f64() * 1000.0);
        to_isolated.push((blocked - t0).as_secs_f64() * 1000.0);
        // Let the isolation finish (self-check, event), then release it.
        let lines = support::wait_lines(&acts, Duration::from_secs(20), |l| {
            support::actions(l, "isolate").len() > isolates_before
        });
        assert!(
            support::actions(&lines, "isolate").len() > isolates_before,
            "run {run}: no isolate event"
        );
        let code = release::current_code(&secret, Purpose::Release);
        let st = state.clone();
        netns::in_ns(&lab.endpoint, move || {
            Responder::open(&st)
                .unwrap()
                .release_with_code(&code, &Cause::user())
                .unwrap()
        });
        eprintln!(
            "run {run}: exec → killed {:.1} ms, exec → isolated {:.1} ms",
            to_killed[run], to_isolated[run]
        );
    }
    let (i50, i99) = (pct(&to_isolated, 50.0), pct(&to_isolated, 99.0));
    let (k50, k99) = (pct(&to_killed, 50.0), pct(&to_killed, 99.0));
    println!("time-to-isolate over {runs} runs (real agent, eBPF sensor, nftables in a namespace)");
    println!(
        "  exec → probe to outside fails: p50 {i50:.1} ms, p99 {i99:.1} ms (target p99 ≤ 200 ms)"
    );
    println!("  baseline exec → process killed: p50 {k50:.1} ms, p99 {k99:.1} ms");
    println!(
        "  ratio isolated/killed: p50 {:.2}x, p99 {:.2}x",
        i50 / k50.max(0.001),
        i99 / k99.max(0.001)
    );
}

//! Benchmark: from a critical alert handed to the responder to the moment a
//! probe connection to "outside" fails (kill of the alerting process, then
//! isolation), in network namespaces made for the run and removed after it.
//! Baseline, same run: loading the same nftables table with a bare `nft -f`
//! (the floor for any nftables isolation). Prints p50/p99 of both and the
//! ratio. Needs root. Run: scripts/bench/time-to-isolate-respond [RUNS]
//!
//! This measures the response part only; the agent's end-to-end figure (from
//! the exec of the triggering command) adds sensor and detection latency.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigie_respond::policy::Policy;
use vigie_respond::{Cause, Responder, isolation};

struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn run(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "{args:?} failed");
}

fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns");
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread")
}

/// Probe until a connection fails; returns when it did.
fn probe_until_blocked(ns: &str, to: SocketAddr) -> std::thread::JoinHandle<Instant> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns");
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        loop {
            if isolation::try_connect(to, false, Duration::from_millis(50)).is_err() {
                return Instant::now();
            }
        }
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[i.min(v.len() - 1)]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let id = std::process::id();
    let (ep, out) = (format!("vbe{id}"), format!("vbo{id}"));
    let _guard = Netns(vec![ep.clone(), out.clone()]);
    for n in [&ep, &out] {
        run(&["ip", "netns", "add", n]);
        run(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    run(&[
        "ip", "-n", &ep, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
        &out,
    ]);
    for (n, a) in [(&ep, "10.78.0.1/24"), (&out, "10.78.0.2/24")] {
        run(&["ip", "-n", n, "addr", "add", a, "dev", "eth0"]);
        run(&["ip", "-n", n, "link", "set", "eth0", "up"]);
    }
    in_ns(&out, || {
        let l = TcpListener::bind("0.0.0.0:7000").unwrap();
        std::thread::spawn(move || for _ in l.incoming() {});
    });
    let target: SocketAddr = "10.78.0.2:7000".parse().unwrap();
    let tmp = std::env::temp_dir().join(format!("vigie-bench-{id}"));
    let policy = Policy::from_toml(
        "[isolation]\nresolvers = [\"10.78.0.53\"]\nprobes = [\"10.78.0.2:7000\"]\n",
    )
    .unwrap();
    let table = isolation::render_table(&policy.isolation).unwrap();
    let host = vigie_respond::state::this_host();

    let mut ours = Vec::new();
    let mut base = Vec::new();
    for _ in 0..runs {
        // Vigie: alert -> kill + isolate.
        let victim = Command::new("sleep").arg("300").spawn().unwrap();
        let alert = alert_for(&host, victim.id());
        let (p, a, t, e) = (policy.clone(), alert.clone(), tmp.clone(), ep.clone());
        let prober = probe_until_blocked(&ep, target);
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        let r = in_ns(&e, move || {
            let r = Responder::open(&t).unwrap();
            let res = r.on_alert(&p, &a);
            assert!(res.iter().all(|x| x.is_ok()), "{res:?}");
            r
        });
        let blocked = prober.join().unwrap();
        ours.push(blocked.duration_since(t0).as_secs_f64() * 1e3);
        let mut victim = victim;
        let _ = victim.wait();
        in_ns(&ep, move || r.release_authorised(&Cause::user()).unwrap());

        // Baseline: the same table with a bare nft -f.
        let prober = probe_until_blocked(&ep, target);
        std::thread::sleep(Duration::from_millis(20));
        let tb = table.clone();
        let t0 = Instant::now();
        in_ns(&ep, move || isolation::apply_table(&tb).unwrap());
        let blocked = prober.join().unwrap();
        base.push(blocked.duration_since(t0).as_secs_f64() * 1e3);
        in_ns(&ep, || isolation::delete_table().unwrap());
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let (o50, o99) = (pct(&mut ours, 50.0), pct(&mut ours, 99.0));
    let (b50, b99) = (pct(&mut base, 50.0), pct(&mut base, 99.0));
    println!("time to isolate, alert -> probe to outside fails, {runs} runs");
    println!("  vigie (kill + isolate): p50 {o50:.1} ms  p99 {o99:.1} ms");
    println!("  baseline (bare nft -f): p50 {b50:.1} ms  p99 {b99:.1} ms");
    println!(
        "  ratio vigie/baseline:   p50 {:.2}x  p99 {:.2}x   (target: p99 <= 200 ms end to end)",
        o50 / b50,
        o99 / b99
    );
}

fn alert_for(host: &vigie_event::Host, pid: u32) -> vigie_event::Alert {
    let ev = vigie_event::Event::new(
        chrono::Utc::now(),
        host.clone(),
        vigie_event::Payload::Process(vigie_event::ProcessEvent {
            action: vigie_event::ProcessAction::Exec,
            process: vigie_event::Process {
                pid,
                executable: "/usr/bin/sleep".into(),
                ..Default::default()
            },
            target: None,
            error: None,
        }),
    );
    vigie_event::Alert {
        id: uuid::Uuid::now_v7(),
        time: chrono::Utc::now(),
        host: host.clone(),
        rule: vigie_event::RuleRef {
            id: "bench".into(),
            name: "benchmark critical rule".into(),
            level: Some(vigie_event::Level::Critical),
            ..Default::default()
        },
        events: vec![ev],
    }
}

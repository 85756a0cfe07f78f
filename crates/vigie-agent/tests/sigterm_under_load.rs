//! SIGTERM in the middle of an exec storm: the agent stops within seconds
//! with success. (The sensor drains the kernel buffer into a bounded queue
//! while it stops; if the agent stopped reading that queue first, both
//! would wait for each other forever.) Its own test binary: signals are
//! process-wide.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use vigie_agent::{Standalone, run_standalone};

#[test]
fn sigterm_during_a_storm_stops_the_agent() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (eBPF)");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("agent.toml");
    // Detection only, with SigmaHQ's Linux rules and every event written as
    // JSON: a consumer slow enough that the queue fills during the storm.
    std::fs::write(&config, "[response]\nmode = \"alert-only\"\n").unwrap();
    let shared = std::env::var_os("VIGIE_SHARED_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
        });
    let opts = Standalone {
        config: Some(config),
        rules: vec![shared.join("data/sigmahq/rules/linux")],
        events: Some(dir.path().join("events.jsonl").to_str().unwrap().into()),
        alerts: Some(String::new()),
        actions: Some(String::new()),
        state_dir: state.clone(),
        ..Default::default()
    };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(run_standalone(opts).map_err(|e| format!("{e:#}")));
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state.join("agent.ready").exists() {
        assert!(Instant::now() < deadline, "agent never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Storming threads; SIGTERM while they run.
    let stop = Arc::new(AtomicBool::new(false));
    let storms: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 5000 {
                    let _ = Command::new("/bin/true").status();
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    unsafe { libc::raise(libc::SIGTERM) };
    let result = done_rx.recv_timeout(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let spawned: usize = storms.into_iter().map(|t| t.join().unwrap()).sum();
    let code = result.expect("the agent stops within 30 s of SIGTERM");
    assert_eq!(code.expect("agent ran"), std::process::ExitCode::SUCCESS);
    assert!(spawned > 0);
}

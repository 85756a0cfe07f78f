//! Zero lost process events: an exec storm of 20,000 short processes gives
//! exactly 20,000 exec and 20,000 exit events for them.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use common::Harness;
use vigie_event::{HealthAction, Payload, ProcessAction};

const N: usize = 20_000;

#[test]
fn exec_storm_of_20000_processes_loses_nothing() {
    let mut h = Harness::start(common::cfg());
    let marker = format!("vigie-storm-{}", std::process::id());
    // Consume concurrently, as the agent does, while the storm runs.
    let rx = std::mem::replace(&mut h.rx, std::sync::mpsc::sync_channel(1).1);
    let m = marker.clone();
    let consumer = std::thread::spawn(move || {
        let mut execs = HashSet::new();
        let mut exits = 0usize;
        let mut exec_pids = HashSet::new();
        let mut lost = 0u64;
        let mut idle_since = Instant::now();
        let mut done_at: Option<Instant> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(e) => {
                    idle_since = Instant::now();
                    match &e.payload {
                        Payload::Process(p)
                            if p.action == ProcessAction::Exec
                                && p.process.args.get(1).map(String::as_str)
                                    == Some(m.as_str()) =>
                        {
                            execs.insert(p.process.entity_id.clone());
                            exec_pids.insert(p.process.entity_id.clone());
                        }
                        Payload::Process(p)
                            if p.action == ProcessAction::Exit
                                && exec_pids.contains(&p.process.entity_id) =>
                        {
                            exits += 1;
                        }
                        Payload::Health(hh) if hh.action == HealthAction::EventsLost => {
                            lost = hh.health.counters.get("lost.total").copied().unwrap_or(0);
                        }
                        _ => {}
                    }
                    if execs.len() == N && exits == N && done_at.is_none() {
                        done_at = Some(Instant::now());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
            // Stop a little after completion, or after 30 s of silence.
            if done_at.is_some_and(|d| d.elapsed() > Duration::from_secs(1))
                || idle_since.elapsed() > Duration::from_secs(30)
            {
                break;
            }
        }
        (execs.len(), exits, lost)
    });
    // 20,000 fork+exec of /bin/true from a shell loop (one process each).
    let script = format!("i=0; while [ $i -lt {N} ]; do /bin/true {marker}; i=$((i+1)); done");
    let st = Command::new("/bin/sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
    let (execs, exits, lost) = consumer.join().unwrap();
    assert_eq!(lost, 0, "ring buffer losses reported");
    assert_eq!(execs, N, "exec events");
    assert_eq!(exits, N, "exit events");
}

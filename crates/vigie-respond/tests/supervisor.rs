//! Tamper handling without BPF LSM: a `kill -9` of the agent by another
//! process is answered by a restart and a tamper event; the stop code stops
//! it cleanly; a wrong code does not.

use std::time::{Duration, Instant};

use vigie_event::{HealthAction, Outcome, Payload};
use vigie_respond::StateDir;
use vigie_respond::release::{Purpose, current_code};
use vigie_respond::supervisor::{agent_pid, request_stop, supervise};

fn wait_pid(state: &StateDir, not: Option<i32>) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Some(p) = agent_pid(state).unwrap()
            && Some(p) != not
        {
            return p;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no agent running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_restarts_and_stop_code_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::open(tmp.path().join("state")).unwrap();
    let st = state.clone();
    let sup = std::thread::spawn(move || {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("600");
        supervise(&st, cmd, Some(5), |_| {})
    });
    let first = wait_pid(&state, None);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t0 = Instant::now();
    let second = wait_pid(&state, Some(first));
    eprintln!("restarted as {second} after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5));
    let evs = state.last_actions(100).unwrap();
    let tamper = evs
        .iter()
        .find_map(|e| match &e.payload {
            Payload::Health(h) if h.action == HealthAction::Tamper => Some(&h.health.message),
            _ => None,
        })
        .expect("tamper event");
    assert!(tamper.contains("SIGKILL"), "{tamper}");

    // A wrong code, or a release code, does not stop it.
    assert!(request_stop(&state, "12345678", Duration::from_secs(1)).is_err());
    let secret = state.secret().unwrap();
    let release = current_code(&secret, Purpose::Release);
    assert!(request_stop(&state, &release, Duration::from_secs(1)).is_err());
    assert_eq!(agent_pid(&state).unwrap(), Some(second));

    let code = current_code(&secret, Purpose::Stop);
    let ev = request_stop(&state, &code, Duration::from_secs(10)).unwrap();
    assert!(matches!(&ev.payload, Payload::Response(r) if r.outcome == Outcome::Success));
    sup.join().unwrap().unwrap();
    let evs = state.last_actions(100).unwrap();
    assert!(evs.iter().any(|e| matches!(&e.payload,
        Payload::Response(r) if r.response.action == "stop" && r.outcome == Outcome::Success)));
    assert_eq!(agent_pid(&state).unwrap(), None);
}

#[test]
fn a_killed_supervisor_is_reported_at_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::open(tmp.path().join("state")).unwrap();
    // What a supervisor killed with SIGKILL leaves behind.
    state.write_atomic("agent.pid", b"999999", 0o600).unwrap();
    let st = state.clone();
    let sup = std::thread::spawn(move || {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("600");
        supervise(&st, cmd, Some(0), |_| {})
    });
    let pid = wait_pid(&state, None);
    let evs = state.last_actions(10).unwrap();
    assert!(evs.iter().any(|e| matches!(&e.payload,
        Payload::Health(h) if h.action == HealthAction::Tamper
            && h.health.message.contains("previous agent run"))));
    let code = current_code(&state.secret().unwrap(), Purpose::Stop);
    request_stop(&state, &code, Duration::from_secs(10)).unwrap();
    sup.join().unwrap().unwrap();
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err());
}

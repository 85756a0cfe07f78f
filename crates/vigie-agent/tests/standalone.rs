//! The standalone agent end to end, as root: real eBPF sensor, SigmaHQ's
//! Linux rules unchanged, a real suspicious command, SIGTERM to stop.
//! One test function: signals are process-wide.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vigie_agent::{Standalone, run_standalone};

fn sigma_linux() -> PathBuf {
    let shared = std::env::var_os("VIGIE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    shared.join("data/sigmahq/rules/linux")
}

fn wait_for(path: &Path, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(path)
            && pred(&text)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sigmahq_rule_fires_on_a_real_action_and_sigterm_flushes() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "needs root (eBPF)");
    let rules = sigma_linux();
    assert!(rules.is_dir(), "SigmaHQ rules at {}", rules.display());
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let alerts = dir.path().join("alerts.jsonl");
    let state = dir.path().join("state");
    // This agent runs in the host's own namespace: it must never act on it
    // (SigmaHQ's high and critical rules would kill or isolate).
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[response]\nmode = \"alert-only\"\n").unwrap();
    let opts = Standalone {
        config: Some(config),
        rules: vec![rules],
        events: Some(events.to_str().unwrap().into()),
        alerts: Some(alerts.to_str().unwrap().into()),
        actions: Some(String::new()),
        state_dir: state.clone(),
        ..Default::default()
    };
    let agent = std::thread::spawn(move || run_standalone(opts));
    assert!(
        wait_for(&state.join("agent.ready"), Duration::from_secs(120), |_| {
            true
        }),
        "agent ready"
    );

    // Linux Base64 Encoded Pipe to Shell (ba592c6d-6888-43c3-b8c6-689b8fe47337).
    let out = Command::new("/bin/sh")
        .args(["-c", "echo ZWNobyB2aWdpZS1iNjQK | base64 -d | sh"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "echo vigie-b64".replace("echo ", "")
    );

    assert!(
        wait_for(&alerts, Duration::from_secs(20), |t| t
            .contains("ba592c6d-6888-43c3-b8c6-689b8fe47337")),
        "alert from the SigmaHQ rule; alerts: {}",
        std::fs::read_to_string(&alerts).unwrap_or_default()
    );

    // SIGTERM: flush and return success.
    unsafe { libc::raise(libc::SIGTERM) };
    let code = agent.join().unwrap().expect("agent ran");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let text = std::fs::read_to_string(&events).unwrap();
    let mut exec_seen = false;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        if v["process"]["command_line"]
            .as_str()
            .is_some_and(|c| c.contains("ZWNobyB2aWdpZS1iNjQK | base64 -d | sh"))
            && v["event"]["action"] == "exec"
        {
            exec_seen = true;
        }
    }
    assert!(exec_seen, "the exec event is in the events file (ECS)");
    let alert_text = std::fs::read_to_string(&alerts).unwrap();
    let alert: serde_json::Value =
        serde_json::from_str(alert_text.lines().find(|l| l.contains("ba592c6d")).unwrap()).unwrap();
    assert!(
        alert.to_string().contains("base64"),
        "the alert carries the event: {alert}"
    );
}

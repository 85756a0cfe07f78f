//! Automatic response end to end (issue 4, "Must show" 2), as root: a real
//! agent process (real eBPF sensor) runs inside an "endpoint" network
//! namespace with a critical rule; a matching command runs there; the agent
//! kills it and isolates the host; its outputs record both actions with the
//! alert's id; traffic to "outside" fails while a marked (agent) connection
//! to "manager" still works; the release code restores everything.
//! Namespaces, processes and temp dirs are removed even on failure (Drop).

#[path = "../../vigie-respond/tests/common/mod.rs"]
mod netns;
mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use netns::{ChildGuard, Lab, in_ns, start_servers, tcp_ok, udp_ok};
use support::{Agent, actions, marker_rule, wait_lines};
use vigie_respond::release::{self, Purpose};
use vigie_respond::{Cause, Responder, StateDir};

#[test]
#[ignore = "helper: the agent process started by the tests"]
fn helper_agent_process() {
    support::helper_main();
}

#[test]
fn critical_alert_kills_and_isolates() {
    assert!(netns::is_root(), "needs root (eBPF, nftables, namespaces)");
    let lab = Lab::new("ar");
    start_servers(&lab.outside);
    start_servers(&lab.manager);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let rules = tmp.path().join("rules");
    let marker = format!("vigie-trigger-{}", std::process::id());
    marker_rule(&rules, &marker, "critical");
    let alerts = tmp.path().join("alerts.jsonl");
    let acts = tmp.path().join("actions.jsonl");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nrules = [{rules:?}]\nbuiltin = false\n\
             [output]\nevents = \"\"\nalerts = {alerts:?}\nactions = {acts:?}\n\
             [response.isolation]\nresolvers = [\"10.77.0.2\"]\nprobes = [\"10.77.0.3:7000\"]\n"
        ),
    )
    .unwrap();

    assert!(
        tcp_ok(&lab.endpoint, "10.77.0.3:7000", false),
        "before: outside reachable"
    );
    let _agent = Agent::start(&lab.endpoint, &state, &config, None);

    // The triggering command, started in the endpoint namespace: the shell
    // carries the marker, its `sleep` child does not.
    let script = format!("sleep 60; : {marker}");
    let started = Instant::now();
    let mut child = ChildGuard(in_ns(&lab.endpoint, move || {
        Command::new("/bin/sh")
            .args(["-c", &script])
            .spawn()
            .unwrap()
    }));
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the triggering command was not killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "killed by the agent: {status}"
    );

    let lines = wait_lines(&acts, Duration::from_secs(30), |l| {
        !actions(l, "kill").is_empty() && !actions(l, "isolate").is_empty()
    });
    let alert_lines = wait_lines(&alerts, Duration::from_secs(5), |l| !l.is_empty());
    let alert = alert_lines
        .iter()
        .find(|a| {
            a["rule"]["name"]
                .as_str()
                .is_some_and(|n| n.contains(&marker))
        })
        .unwrap_or_else(|| panic!("the alert is in the alerts output: {alert_lines:?}"));
    let alert_id = alert["event"]["id"].as_str().unwrap();
    let kill = actions(&lines, "kill");
    let isolate = actions(&lines, "isolate");
    assert!(
        !kill.is_empty() && !isolate.is_empty(),
        "actions: {lines:#?}"
    );
    for a in [kill[0], isolate[0]] {
        assert_eq!(a["event"]["outcome"], "success", "{a:#}");
        assert_eq!(
            a["vigie"]["response"]["alert_id"], alert_id,
            "why: the alert"
        );
        assert_eq!(a["vigie"]["response"]["actor"], "policy");
        assert!(
            a["vigie"]["response"]["undo"].is_string(),
            "how to undo: {a:#}"
        );
    }
    assert!(
        isolate[0]["vigie"]["response"]["detail"]
            .as_str()
            .unwrap()
            .contains("10.77.0.3:7000: blocked"),
        "the self-check verified the probe: {:#}",
        isolate[0]
    );
    // The state directory's audit trail has them too.
    let trail = std::fs::read_to_string(state.join("actions.jsonl")).unwrap();
    assert!(trail.contains(alert_id));

    // Isolated: outside unreachable (TCP, UDP); the agent's marked
    // connection to the manager still works.
    assert!(
        !tcp_ok(&lab.endpoint, "10.77.0.3:7000", false),
        "outside blocked (TCP)"
    );
    assert!(
        !udp_ok(&lab.endpoint, "10.77.0.3:7001"),
        "outside blocked (UDP)"
    );
    assert!(
        !tcp_ok(&lab.endpoint, "[fd77::3]:7000", false),
        "outside blocked (IPv6)"
    );
    assert!(
        tcp_ok(&lab.endpoint, "10.77.0.2:7000", true),
        "marked link to the manager"
    );

    // Release with the code (as an admin would, offline).
    let secret = StateDir::open(&state).unwrap().secret().unwrap();
    let code = release::current_code(&secret, Purpose::Release);
    let st = state.clone();
    let ev = in_ns(&lab.endpoint, move || {
        Responder::open(&st)
            .unwrap()
            .release_with_code(&code, &Cause::user())
            .unwrap()
    });
    assert!(
        vigie_respond::state::summary(&ev).contains("success"),
        "{ev:?}"
    );
    assert!(
        tcp_ok(&lab.endpoint, "10.77.0.3:7000", false),
        "released: outside reachable"
    );
    // Still released a second later: the watcher does not undo a release.
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        tcp_ok(&lab.endpoint, "10.77.0.3:7000", false),
        "still released"
    );
}

//! The agent and the manager end to end (issue 5, "Must show" 1 and 2), as
//! root, on SQLite and on a private PostgreSQL. Three network namespaces
//! (vigie-respond's test lab): the manager runs in "manager" (in this test
//! process, on a runtime whose threads live in that namespace), the agent
//! is a real process (real eBPF sensor) in "endpoint", enrolled with a
//! one-time token; "outside" is the rest of the world.
//!
//! A real command fires a rule; the alert is read back through the API with
//! its process tree; `POST /api/v1/hosts/{id}/isolate` returns the agent's
//! verified outcome; endpoint → outside fails while the agent's link to the
//! manager keeps working (the release command arrives over it); the audit
//! log says who did it; release restores traffic.

#[path = "../../vigie-manager/tests/common/mod.rs"]
#[allow(unused_imports)]
mod manager;
#[path = "../../vigie-respond/tests/common/mod.rs"]
mod netns;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use manager::{Db, PgCluster, TestManager, start_manager_with};
use netns::{Lab, in_ns, start_servers, tcp_ok};
use serde_json::{Value, json};
use support::{Agent, marker_rule};

#[test]
#[ignore = "helper: the agent process started by the tests"]
fn helper_agent_process() {
    support::helper_main();
}

/// Run `f` on a tokio runtime whose threads are all in namespace `ns`.
fn in_ns_runtime<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce(&tokio::runtime::Runtime) -> T + Send + 'static,
) -> T {
    in_ns(ns, move || {
        // Threads inherit the namespace of the thread that makes them.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        f(&rt)
    })
}

async fn wait_json(
    m: &TestManager,
    path: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, v) = m.get(path, Some(&m.admin_token)).await;
        if code == 200 && pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timeout waiting on {path}: {code} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn end_to_end(tag: &str, postgres: bool) {
    assert!(netns::is_root(), "needs root (eBPF, nftables, namespaces)");
    let lab = Lab::new(tag);
    start_servers(&lab.outside);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let rules = tmp.path().join("rules");
    let marker = format!("vigie-e2e-{tag}-{}", std::process::id());
    // Medium: alert only, so isolation is the admin's act through the API.
    marker_rule(&rules, &marker, "medium");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nrules = [{rules:?}]\nbuiltin = false\n[output]\nalerts = \"\"\nactions = \"\"\n\
             [response.isolation]\nresolvers = [\"10.77.0.2\"]\nprobes = [\"10.77.0.3:7000\"]\n"
        ),
    )
    .unwrap();
    let (endpoint, mgr_ns) = (lab.endpoint.clone(), lab.manager.clone());

    in_ns_runtime(&mgr_ns, move |rt| {
        // PostgreSQL (when asked) lives in the manager's namespace too.
        let db = if postgres {
            Db::Postgres(PgCluster::start())
        } else {
            Db::Sqlite
        };
        let mut m = rt.block_on(start_manager_with(&db, |c| {
            c.agent_listen = "10.77.0.2:0".parse().unwrap();
            c.names.push("10.77.0.2".into());
        }));
        let token = rt.block_on(m.enroll_token("default", 3_600_000));
        let url = format!("https://10.77.0.2:{}", m.config.agent_listen.port());
        let agent = Agent::start(&endpoint, &state, &config, Some((&url, &token)));
        rt.block_on(scenario(&m, &endpoint, &marker, &state));
        drop(agent);
        rt.block_on(m.stop());
        drop(db);
    });
}

async fn scenario(m: &TestManager, endpoint: &str, marker: &str, state: &std::path::Path) {
    let tok = Some(m.admin_token.as_str());
    let hosts = wait_json(m, "/api/v1/hosts", Duration::from_secs(60), |v| {
        v["hosts"][0]["online"] == json!(true)
    })
    .await;
    let host_id = hosts["hosts"][0]["id"].as_str().unwrap().to_string();
    assert!(state.join("identity.json").exists(), "identity saved");

    // A real command on the endpoint fires the rule.
    let script = format!("sleep 0.3; : {marker}");
    let ep = endpoint.to_string();
    let status = tokio::task::spawn_blocking(move || {
        in_ns(&ep, move || {
            Command::new("/bin/sh")
                .args(["-c", &script])
                .status()
                .unwrap()
        })
    })
    .await
    .unwrap();
    assert!(status.success());
    let alerts = wait_json(m, "/api/v1/alerts", Duration::from_secs(60), |v| {
        v["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["rule_name"].as_str().is_some_and(|n| n.contains(marker)))
        })
    })
    .await;
    let alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule_name"].as_str().is_some_and(|n| n.contains(marker)))
        .unwrap();
    let (code, detail) = m
        .get(
            &format!("/api/v1/alerts/{}", alert["id"].as_str().unwrap()),
            tok,
        )
        .await;
    assert_eq!(code, 200, "{detail}");
    let tree = detail["process_tree"].as_array().expect("process tree");
    let culprit = tree.last().unwrap();
    assert_eq!(culprit["culprit"], json!(true));
    assert!(
        culprit["command_line"].as_str().unwrap().contains(marker),
        "{tree:?}"
    );
    assert!(tree.len() >= 2, "the parent is in the tree: {tree:?}");
    assert_eq!(detail["document"]["host"]["id"], json!(host_id));

    // Before: outside reachable.
    assert!(tcp_ok(endpoint, "10.77.0.3:7000", false));
    // Isolate through the API: the answer is the agent's verified outcome.
    let (code, r) = m
        .post(
            &format!("/api/v1/hosts/{host_id}/isolate"),
            tok,
            json!({"reason": "e2e: suspicious shell"}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["command"]["status"], json!("succeeded"), "{r}");
    let outcome = r["command"].to_string();
    assert!(
        outcome.contains("manager reachable"),
        "self-check: {outcome}"
    );
    assert!(
        outcome.contains("10.77.0.3:7000: blocked"),
        "self-check: {outcome}"
    );
    assert!(
        !tcp_ok(endpoint, "10.77.0.3:7000", false),
        "endpoint → outside blocked"
    );
    // The agent's link survives: still online after several heartbeats.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, h) = m.get(&format!("/api/v1/hosts/{host_id}"), tok).await;
    assert_eq!(h["isolated"], json!(true), "{h}");
    assert_eq!(h["online"], json!(true), "link kept while isolated: {h}");

    // Release over that same link.
    let (code, r) = m
        .post(
            &format!("/api/v1/hosts/{host_id}/release"),
            tok,
            json!({"reason": "e2e: cleaned"}),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["command"]["status"], json!("succeeded"), "{r}");
    assert!(
        tcp_ok(endpoint, "10.77.0.3:7000", false),
        "released: outside reachable"
    );
    let (_, h) = m.get(&format!("/api/v1/hosts/{host_id}"), tok).await;
    assert_eq!(h["isolated"], json!(false), "{h}");

    // The audit log: who isolated and released, and the agent's own records.
    let audit = wait_json(m, "/api/v1/audit", Duration::from_secs(30), |v| {
        v["audit"].as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["actor"].as_str().is_some_and(|s| s.starts_with("agent:")))
        })
    })
    .await;
    let audit = audit["audit"].as_array().unwrap();
    let by = |action: &str, actor: &str| {
        audit
            .iter()
            .any(|e| e["action"] == json!(action) && e["actor"] == json!(actor))
    };
    assert!(by("isolate", "user:admin"), "{audit:#?}");
    assert!(by("release", "user:admin"), "{audit:#?}");
    assert!(
        audit.iter().any(|e| e["action"] == json!("isolate")
            && e["actor"].as_str().is_some_and(|a| a.starts_with("agent:"))),
        "the agent's isolate event reached the audit log: {audit:#?}"
    );
}

#[test]
fn agent_and_manager_end_to_end_sqlite() {
    end_to_end("es", false);
}

#[test]
fn agent_and_manager_end_to_end_postgres() {
    end_to_end("ep", true);
}

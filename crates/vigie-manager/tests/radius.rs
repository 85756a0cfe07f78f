//! The manager runs the VPN RADIUS service: a real manager on loopback with
//! RADIUS on an ephemeral port, real `radclient` requests and real
//! `oathtool` codes; the VPN attacks must come out as alerts in the API, the
//! lockout in the audit log. SQLite and PostgreSQL.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use test_support::radius::{accepted, oathtool, rejected};
use vigie_manager::radius::Mode;
use vigie_radius::totp::Algorithm;
use vigie_radius::{CodeTransport, MasterKey, admin};

const SECRET: &str = "manager-radius-secret-0123";

async fn radclient(addr: SocketAddr, attrs: String) -> String {
    tokio::task::spawn_blocking(move || {
        test_support::radius::radclient(addr, "auth", SECRET, &attrs)
    })
    .await
    .unwrap()
}

fn req(user: &str, password: &str, from: &str) -> String {
    format!(
        "User-Name = \"{user}\", User-Password = \"{password}\", Calling-Station-Id = \"{from}\", Message-Authenticator = 0x00"
    )
}

/// The manager's RADIUS service with the NAS client "vpn" (127.0.0.1) and
/// enrolled local users; returns the RADIUS address and the users' TOTP
/// secrets, by name.
async fn setup(m: &TestManager, users: &[(&str, &str)]) -> (SocketAddr, Vec<String>) {
    let h = m.h();
    let radius = h.radius.as_ref().expect("--radius-listen starts RADIUS");
    let store = vigie_radius::Store::from_pool(h.core.store.pool.clone());
    let key = MasterKey::load_or_create(&m.data.path().join("keys/mfa.key")).unwrap();
    admin::add_client(
        &store,
        &key,
        "test",
        "vpn",
        "127.0.0.1/32",
        SECRET.as_bytes(),
        CodeTransport::Append,
        true,
    )
    .await
    .unwrap();
    // Without waiting for the periodic reload.
    assert_eq!(radius.server.reload_clients().await.unwrap(), 1);
    let mut secrets = Vec::new();
    for (name, password) in users {
        admin::add_user(&store, "test", name, Some(password.as_bytes()))
            .await
            .unwrap();
        let e = admin::enroll(&store, &key, "test", name, Algorithm::SHA1, 6, "Vigie")
            .await
            .unwrap();
        secrets.push(e.secret_base32.to_string());
    }
    (radius.udp[0], secrets)
}

/// Poll `path` until `found` holds on its JSON, or 30 s.
async fn wait_for(m: &TestManager, path: &str, found: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = m.get(path, Some(&m.admin_token)).await;
        assert_eq!(code, 200, "{body}");
        if found(&body) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn alert_names(body: &Value) -> Vec<String> {
    body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule_name"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn vpn_attacks_reach_the_api(db: Db) {
    let mut m = start_manager_with(&db, |c| {
        c.radius.mode = Mode::Listen(vec!["127.0.0.1:0".parse().unwrap()]);
        // Rejects at once (the delay has its own test in vigie-radius).
        c.radius.reject_delay = std::time::Duration::ZERO;
    })
    .await;
    let mut users = vec![("victim", "victim pw"), ("alice", "alice pw")];
    let sprayed = ["u1", "u2", "u3", "u4", "u5", "u6"];
    users.extend(sprayed.iter().map(|u| (*u, "their own pw")));
    let (addr, secrets) = setup(&m, &users).await;
    let alice = &secrets[1];

    // Password spraying: one wrong password on each of 6 accounts, one source.
    for u in sprayed {
        let out = radclient(addr, req(u, "Spring2026!123456", "198.51.100.66")).await;
        assert!(rejected(&out), "{out}");
    }
    // Brute force: 12 guesses on one account (locked after the 5th).
    for i in 0..12 {
        let out = radclient(
            addr,
            req("victim", &format!("guess{i}123456"), "203.0.113.9"),
        )
        .await;
        assert!(rejected(&out), "{out}");
    }
    // The right password with a wrong code is refused; with the code, accepted.
    let wrong = format!(
        "{:06}",
        (oathtool(alice, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let out = radclient(
        addr,
        req("alice", &format!("alice pw{wrong}"), "192.0.2.20"),
    )
    .await;
    assert!(rejected(&out), "{out}");
    let code = oathtool(alice, 0);
    let out = radclient(addr, req("alice", &format!("alice pw{code}"), "192.0.2.20")).await;
    assert!(accepted(&out), "{out}");

    let want = [
        "VPN password spraying from one source",
        "VPN brute force on one account",
    ];
    let body = wait_for(&m, "/api/v1/alerts?limit=1000", |b| {
        let names = alert_names(b);
        want.iter().all(|w| names.iter().any(|n| n == w))
    })
    .await;
    let names = alert_names(&body);
    for w in want {
        assert!(names.iter().any(|n| n == w), "{w:?} not in {names:?}");
    }
    // The building blocks (one per login) are not alerts.
    assert!(!names.iter().any(|n| n == "VPN login failure"), "{names:?}");

    // The alerts are the RADIUS service host's, listed like an agent's host.
    let host_id = body["alerts"][0]["host_id"].as_str().unwrap().to_string();
    let (_, hosts) = m.get("/api/v1/hosts", Some(&m.admin_token)).await;
    let host = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == host_id.as_str())
        .unwrap_or_else(|| panic!("host {host_id} not in {hosts}"));
    assert!(
        host["hostname"].as_str().unwrap().ends_with("VPN (RADIUS)"),
        "{host}"
    );

    // Every attempt is an event: 6 + 12 + 1 failures, 1 success.
    let events = wait_for(
        &m,
        &format!("/api/v1/events?host={host_id}&limit=1000"),
        |b| b["events"].as_array().unwrap().len() >= 20,
    )
    .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 20, "{events:#?}");
    let outcomes = |o: &str| events.iter().filter(|e| e["event"]["outcome"] == o).count();
    assert_eq!((outcomes("failure"), outcomes("success")), (19, 1));
    let (_, by_user) = m
        .get("/api/v1/events?user=victim", Some(&m.admin_token))
        .await;
    assert_eq!(by_user["events"].as_array().unwrap().len(), 12);

    // The lockout is in the audit log, once.
    let audit = wait_for(&m, "/api/v1/audit", |b| {
        b["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "vpn.lockout")
    })
    .await;
    let lockouts: Vec<&Value> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "vpn.lockout")
        .collect();
    assert_eq!(lockouts.len(), 1, "{lockouts:#?}");
    assert_eq!(lockouts[0]["actor"], "radius");
    assert_eq!(lockouts[0]["target"], "victim");
    // The administration of the VPN users (`vigie mfa ...`, here the
    // setup's enrolment) shows in the same audit view, newest first.
    let enrolments: Vec<&Value> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "mfa.user.enroll" && a["target"] == "victim")
        .collect();
    assert_eq!(enrolments.len(), 1, "{audit:#}");
    assert_eq!(enrolments[0]["actor"], "test");
    let times: Vec<i64> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["time"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(
        m.h()
            .core
            .counters
            .radius_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpn_attacks_reach_the_api_sqlite() {
    vpn_attacks_reach_the_api(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpn_attacks_reach_the_api_postgres() {
    let pg = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    vpn_attacks_reach_the_api(Db::Postgres(pg)).await;
}

/// Without NAS client, the default (auto) does not serve RADIUS; --no-radius
/// never does. (With a NAS client, auto takes port 1812: not tried here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius_off_without_nas_client_or_when_disabled() {
    let m = start_manager(&Db::Sqlite).await;
    assert!(m.h().radius.is_none());
    let m2 = start_manager_with(&Db::Sqlite, |c| c.radius.mode = Mode::Off).await;
    assert!(m2.h().radius.is_none());
}

/// An address that cannot be had is a startup error naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius_listen_bind_failure_stops_the_start() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = vigie_manager::Config::new(data.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    config.radius.mode = Mode::Listen(vec![addr]);
    let err = match vigie_manager::Manager::start(config).await {
        Ok(_) => panic!("started on a taken port"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&addr.to_string()) && err.contains("--radius-listen"),
        "{err}"
    );
}

/// Two managers on one PostgreSQL database: each stores the requests it
/// answered, once; none stores the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_record_each_request_once() {
    use std::sync::atomic::Ordering::Relaxed;
    let pg = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let db = Db::Postgres(pg);
    let listen = |c: &mut vigie_manager::Config| {
        c.radius.mode = Mode::Listen(vec!["127.0.0.1:0".parse().unwrap()]);
        // Rejects at once (the delay has its own test in vigie-radius).
        c.radius.reject_delay = std::time::Duration::ZERO;
    };
    let m1 = start_manager_with(&db, listen).await;
    let (addr1, secrets) = setup(&m1, &[("alice", "alice pw")]).await;
    // The second manager: same database, same key file, its own folder.
    let data2 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data2.path().join("keys")).unwrap();
    std::fs::copy(
        m1.data.path().join("keys/mfa.key"),
        data2.path().join("keys/mfa.key"),
    )
    .unwrap();
    let mut config = vigie_manager::Config::new(data2.path());
    config.database_url = db.url();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.agent_listen = "127.0.0.1:0".parse().unwrap();
    listen(&mut config);
    let m2 = vigie_manager::Manager::start(config).await.unwrap();
    let addr2 = m2.radius.as_ref().unwrap().udp[0];

    // Four failures: a fifth would lock the account.
    for (i, addr) in [addr1, addr1, addr2, addr2].into_iter().enumerate() {
        let out = radclient(addr, req("alice", &format!("wrong{i}123456"), "192.0.2.7")).await;
        assert!(rejected(&out), "{out}");
    }
    let code = oathtool(&secrets[0], 0);
    let out = radclient(addr2, req("alice", &format!("alice pw{code}"), "192.0.2.7")).await;
    assert!(accepted(&out), "{out}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let c1 = &m1.h().core.counters;
    let c2 = &m2.core.counters;
    while c1.radius_events.load(Relaxed) + c2.radius_events.load(Relaxed) < 5
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (
            c1.radius_events.load(Relaxed),
            c2.radius_events.load(Relaxed)
        ),
        (2, 3)
    );
    let (_, body) = m1
        .get("/api/v1/events?user=alice&limit=100", Some(&m1.admin_token))
        .await;
    let events = body["events"].as_array().unwrap();
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((events.len(), ids.len()), (5, 5), "{events:#?}");
    m2.shutdown().await;
}

/// A NAS client registered for an organisation: its logins are that
/// organisation's, under that organisation's service host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nas_client_organisation_owns_its_logins() {
    let m = start_manager_with(&Db::Sqlite, |c| {
        c.radius.mode = Mode::Listen(vec!["127.0.0.1:0".parse().unwrap()]);
        // Rejects at once (the delay has its own test in vigie-radius).
        c.radius.reject_delay = std::time::Duration::ZERO;
    })
    .await;
    let (addr, _) = setup(&m, &[("bob", "bob pw")]).await;
    let core = &m.h().core;
    let mfa = vigie_radius::Store::from_pool(core.store.pool.clone());
    mfa.set_client_org("vpn", Some("townhall")).await.unwrap();
    let server = &m.h().radius.as_ref().unwrap().server;
    server.reload_clients().await.unwrap();
    assert_eq!(server.client_org("vpn").as_deref(), Some("townhall"));

    let out = radclient(addr, req("bob", "wrong123456", "192.0.2.9")).await;
    assert!(rejected(&out), "{out}");
    let (events, _) = m
        .wait_counts("townhall", 1, 0, Duration::from_secs(30))
        .await;
    assert_eq!(events, 1);
    assert_eq!(core.store.count("events", "default").await.unwrap(), 0);
    let hosts = core.store.list_hosts("townhall").await.unwrap();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert!(
        hosts[0]["hostname"]
            .as_str()
            .unwrap()
            .ends_with("VPN (RADIUS)")
    );
    assert_eq!(core.store.list_hosts("default").await.unwrap().len(), 0);
}

/// Stopping the manager stores the logins still queued: none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_logins_are_stored_at_shutdown() {
    let mut m = start_manager_with(&Db::Sqlite, |c| {
        c.radius.mode = Mode::Listen(vec!["127.0.0.1:0".parse().unwrap()]);
        // Rejects at once (the delay has its own test in vigie-radius).
        c.radius.reject_delay = std::time::Duration::ZERO;
    })
    .await;
    let (addr, _) = setup(&m, &[("carol", "carol pw")]).await;
    for i in 0..4 {
        let out = radclient(addr, req("carol", &format!("bad{i}123456"), "192.0.2.3")).await;
        assert!(rejected(&out), "{out}");
    }
    m.stop().await;
    let store = vigie_manager::store::Store::connect(&m.config.database_url())
        .await
        .unwrap();
    assert_eq!(store.count("events", "default").await.unwrap(), 4);
}

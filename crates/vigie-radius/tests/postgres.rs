//! The `mfa_` tables on PostgreSQL (the multi-manager setup): the core flow
//! against a private PostgreSQL cluster, and two RADIUS servers sharing that
//! database, as two managers behind a load balancer would. A code accepted by
//! one is refused by the other; a lockout counted by one holds on the other.

mod common;
use common::*;
use test_support::PgCluster;
use vigie_radius::store::LockoutPolicy;
use vigie_radius::{CodeTransport, Config, MasterKey, Store};

fn req(user: &str, password: &str) -> String {
    format!(
        "User-Name = \"{user}\", User-Password = \"{password}\", Calling-Station-Id = \"198.51.100.9\", Message-Authenticator = 0x00"
    )
}

fn cfg() -> Config {
    Config {
        lockout: LockoutPolicy {
            max_failures: 3,
            ..LockoutPolicy::default()
        },
        ..common::config()
    }
}

/// A second server on the same database, with a copy of the key file (as a
/// second manager would have).
async fn second(first: &Fixture, store: Store) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let from = first.dir.path().join("keys/mfa.key");
    let to = dir.path().join("keys/mfa.key");
    std::fs::copy(&from, &to).unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    serve(dir, store, sock, cfg(), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_flow_and_two_servers_on_postgresql() {
    let pg = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    let store = Store::connect(&pg.url()).await.expect("PostgreSQL store");
    // Migrations run twice (two managers starting) without harm.
    store.migrate().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::load_or_create(&dir.path().join("keys/mfa.key")).unwrap();
    add_nas(&store, &key, CodeTransport::Append, true).await;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = serve(dir, store.clone(), sock, cfg(), None).await;
    let b = second(&a, store.clone()).await;
    let b32 = a.user("alice", "alice pw").await;

    // Accepted by A; the same code refused by B (replay across managers).
    let code = oathtool(&b32, 0);
    let out = a.radclient(&req("alice", &format!("alice pw{code}"))).await;
    assert!(accepted(&out), "{out}");
    let out = b.radclient(&req("alice", &format!("alice pw{code}"))).await;
    assert!(rejected(&out), "{out}");
    // The next step's code works on B.
    let next = oathtool(&b32, 1);
    let out = b.radclient(&req("alice", &format!("alice pw{next}"))).await;
    assert!(accepted(&out), "{out}");

    // Wrong password: failures counted in the database, whichever server
    // answers; the third locks the account for both.
    for f in [&a, &b, &a] {
        let out = f.radclient(&req("alice", "wrong pw000000")).await;
        assert!(rejected(&out), "{out}");
    }
    let u = store.get_user("alice").await.unwrap().unwrap();
    assert_eq!(u.failures, 3);
    assert!(u.locked_until > 0);
    let fresh = oathtool(&b32, -1);
    let out = b
        .radclient(&req("alice", &format!("alice pw{fresh}")))
        .await;
    assert!(rejected(&out), "locked account accepted: {out}");
    store.unlock("alice").await.unwrap();
    let u = store.get_user("alice").await.unwrap().unwrap();
    assert_eq!((u.failures, u.locked_until), (0, 0));

    // Accounting lands in mfa_sessions on PostgreSQL.
    let out = radclient(
        a.addr,
        "acct",
        SECRET,
        "Acct-Status-Type = Start, Acct-Session-Id = \"pg-1\", User-Name = \"alice\", \
         Calling-Station-Id = \"198.51.100.9\", Framed-IP-Address = 10.8.0.6",
    )
    .await;
    assert!(out.contains("Received Accounting-Response"), "{out}");
    let sessions = store.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].tunnel_ip.as_deref(), Some("10.8.0.6"));

    // The audit log of the admin actions is in the same database.
    let actions: Vec<String> = store
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, _, action, _, _)| action)
        .collect();
    assert!(actions.iter().any(|a| a == "mfa.user.add"), "{actions:?}");
}

//! Console security over real HTTPS against a manager started here, with a
//! real agent enrolled over mutual TLS (vigie-uplink): CSRF, session
//! fixation, XSS, role enforcement, lockout, and the admin's TOTP.

mod common;
mod console_web;

use std::time::Duration;

use common::*;
use console_web::*;
use vigie_uplink::{Options, Uplink};

struct Setup {
    m: TestManager,
    host_id: String,
    alert_id: String,
    recorder: Recorder,
    _up: vigie_uplink::UplinkHandle,
    _dir: tempfile::TempDir,
}

/// A manager, an agent with one alert whose rule title and command line
/// carry markup, and users of each role.
async fn setup() -> Setup {
    let m = start_manager(&Db::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let token = m.enroll_token("default", 3_600_000).await;
    let id = Uplink::enroll(&m.agent_url(), &token, dir.path())
        .await
        .unwrap();
    let recorder = Recorder::default();
    let opts = Options {
        heartbeat: Duration::from_millis(500),
        ..Options::default()
    };
    let up = Uplink::start(dir.path(), recorder.clone(), opts)
        .await
        .unwrap();
    assert!(up.wait_connected(Duration::from_secs(20)).await);
    let mut ev = exec_event("pc-xss", 1);
    if let vigie_event::Payload::Process(p) = &mut ev.payload {
        p.process.command_line = "sh -c '<script>alert(\"cmd\")</script>'".into();
    }
    let mut alert = alert_for(&ev);
    alert.rule.name = "<script>alert('title')</script> rule".into();
    up.send_event(&ev).await;
    up.send_alert(&alert).await;
    up.flush().await;
    let (_, a) = m
        .wait_counts("default", 1, 1, Duration::from_secs(30))
        .await;
    assert_eq!(a, 1);
    let store = &m.h().core.store;
    for (name, role) in [("ana", "analyst"), ("reader", "read-only")] {
        store
            .add_user("default", name, "a long test password", role)
            .await
            .unwrap();
    }
    Setup {
        host_id: id.host_id,
        alert_id: alert.id.to_string(),
        m,
        recorder,
        _up: up,
        _dir: dir,
    }
}

async fn alert_status(m: &TestManager, id: &str) -> String {
    let (sum, _) = m
        .h()
        .core
        .store
        .get_alert("default", id)
        .await
        .unwrap()
        .unwrap();
    sum["status"].as_str().unwrap().to_string()
}

async fn session_rows(m: &TestManager) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(&m.h().core.store.pool)
        .await
        .unwrap()
}

async fn command_count(m: &TestManager) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM commands")
        .fetch_one(&m.h().core.store.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_security() {
    // fantoccini brings a second rustls provider: pick ring, as the manager does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = setup().await;
    let m = &s.m;

    // Not signed in: every page sends to the login form.
    let anon = Web::new(m);
    let r = anon.get("/console/alerts").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/console/login"));

    // --- Session fixation: an id planted before login is not the one after.
    let web = Web::new(m);
    let csrf = web.csrf("/console/login").await;
    let before = web.session().expect("a pre-login session cookie");
    let r = web
        .post(
            "/console/login",
            &[
                ("csrf", &csrf),
                ("username", "ana"),
                ("password", "a long test password"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let after = web.session().unwrap();
    assert_ne!(before, after, "the session id changes at login");
    // The old id is worth nothing now.
    let attacker = Web::new(m);
    attacker.plant_session(&before);
    assert_eq!(attacker.get("/console/").await.status, 303);
    assert_eq!(web.get("/console/").await.status, 200);
    // A planted, made-up id does not survive login either.
    let victim = Web::new(m);
    victim.plant_session("attacker-chosen-id");
    let r = victim.login("ana", "a long test password").await;
    assert_eq!(r.status, 303);
    assert_ne!(victim.session().as_deref(), Some("attacker-chosen-id"));

    // --- Opening the login page writes nothing to the database (anyone can
    // open it, as often as they like), and a login form's token only works
    // with the cookie it was made for.
    let rows = session_rows(m).await;
    for _ in 0..20 {
        Web::new(m).csrf("/console/login").await;
    }
    assert_eq!(session_rows(m).await, rows, "no row per visitor");
    let a = Web::new(m);
    let token_a = a.csrf("/console/login").await;
    let b = Web::new(m);
    b.csrf("/console/login").await;
    let form = [
        ("csrf", token_a.as_str()),
        ("username", "ana"),
        ("password", "a long test password"),
    ];
    let r = b.post("/console/login", &form).await;
    assert_eq!(r.status, 403, "a token of another visitor");
    let r = a.post("/console/login", &form).await;
    assert_eq!(r.status, 303, "{}", r.body);

    // --- CSRF: a form post without or with a wrong token is refused.
    let path = format!("/console/alerts/{}", s.alert_id);
    let r = web.post(&path, &[("status", "closed")]).await;
    assert_eq!(r.status, 403);
    let r = web
        .post(&path, &[("csrf", "not-the-token"), ("status", "closed")])
        .await;
    assert_eq!(r.status, 403);
    // Another session's token is wrong too.
    let other = Web::new(m);
    other.login("ana", "a long test password").await;
    let other_csrf = other.csrf("/console/alerts").await;
    let r = web
        .post(&path, &[("csrf", &other_csrf), ("status", "closed")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(alert_status(m, &s.alert_id).await, "new", "nothing changed");
    // With the right token it works.
    let csrf = web.csrf(&path).await;
    let r = web
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("status", "acknowledged"),
                ("comment", "looking"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(alert_status(m, &s.alert_id).await, "acknowledged");
    // The login form is protected too.
    let fresh = Web::new(m);
    fresh.csrf("/console/login").await;
    let r = fresh
        .post(
            "/console/login",
            &[("username", "ana"), ("password", "a long test password")],
        )
        .await;
    assert_eq!(r.status, 403);

    // --- XSS: the rule title and the command line are shown escaped.
    for page in [
        "/console/alerts".to_string(),
        path.clone(),
        format!("/console/hosts/{}", s.host_id),
    ] {
        let r = web.get(&page).await;
        assert_eq!(r.status, 200, "{page}");
        assert!(!r.body.contains("<script>alert"), "{page} has raw markup");
    }
    let list = web.get("/console/alerts").await.body;
    assert!(
        list.contains("&lt;script&gt;alert('title')&lt;/script&gt; rule"),
        "{list}"
    );
    let detail = web.get(&path).await.body;
    assert!(
        detail.contains("&lt;script&gt;alert(&quot;cmd&quot;)&lt;/script&gt;"),
        "{detail}"
    );
    // And the browser would refuse inline script anyway.
    let r = web.client.get(web.url(&path)).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    // --- Roles: a read-only user cannot isolate: 403 and nothing sent.
    let reader = Web::new(m);
    assert_eq!(
        reader.login("reader", "a long test password").await.status,
        303
    );
    let host_page = format!("/console/hosts/{}", s.host_id);
    let page = reader.get(&host_page).await;
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("name=\"reason\""),
        "no isolate form for read-only"
    );
    let csrf = csrf_of(&page.body);
    let r = reader
        .post(
            &format!("{host_page}/isolate"),
            &[
                ("csrf", &csrf),
                ("reason", "should not work"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    // Nor triage alerts, nor open admin pages.
    let r = reader
        .post(&path, &[("csrf", &csrf), ("status", "closed")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(reader.get("/console/vpn-users").await.status, 403);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(command_count(m).await, 0, "no command created");
    assert!(
        s.recorder.0.lock().unwrap().is_empty(),
        "nothing reached the agent"
    );
    let (_, h) = m
        .get(
            &format!("/api/v1/hosts/{}", s.host_id),
            Some(&m.admin_token),
        )
        .await;
    assert_eq!(h["isolated"], false);

    // --- Lockout: five wrong passwords lock the account, even for the
    // right password afterwards.
    let guesser = Web::new(m);
    for _ in 0..5 {
        assert_eq!(guesser.login("ana", "wrong guess").await.status, 401);
    }
    assert_eq!(
        guesser.login("ana", "a long test password").await.status,
        401
    );
    let audit = m.h().core.store.list_audit("default", 1000).await.unwrap();
    assert!(audit.iter().any(|e| e["action"] == "console_login_failed"
        && e["outcome"].as_str().unwrap().contains("locked")));

    // --- Admin: password + TOTP (enrolled at the first login), a code is
    // never accepted twice, and logout ends the session.
    let first = m.h().first_start.clone().unwrap();
    let admin = Web::new(m);
    let mut secret = None;
    let used = admin
        .login_admin(&first.admin_user, &first.admin_password, &mut secret)
        .await;
    assert_eq!(admin.get("/console/vpn-users").await.status, 200);
    let replay = Web::new(m);
    let r = replay.login(&first.admin_user, &first.admin_password).await;
    assert_eq!(r.location.as_deref(), Some("/console/login/totp"));
    let page = replay.get("/console/login/totp").await;
    assert!(
        !page.body.contains("totp-secret"),
        "the secret is shown only at enrolment"
    );
    let csrf = csrf_of(&page.body);
    let r = replay
        .post("/console/login/totp", &[("csrf", &csrf), ("code", &used)])
        .await;
    assert_eq!(r.status, 401, "a TOTP code is never accepted twice");
    let csrf = admin.csrf("/console/").await;
    let r = admin.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(admin.get("/console/").await.status, 303);
    assert!(audit_has(m, "console_totp_enrolled").await);
}

/// Wrong passwords sent at the same time each count: the lockout cannot be
/// outrun by guessing in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_all_count() {
    let m = start_manager(&Db::Sqlite).await;
    let store = &m.h().core.store;
    store
        .add_user("default", "ana", "a long test password", "analyst")
        .await
        .unwrap();
    const GUESSES: i64 = 8;
    let mut guessers = Vec::new();
    for _ in 0..GUESSES {
        let web = Web::new(&m);
        let csrf = web.csrf("/console/login").await;
        guessers.push((web, csrf));
    }
    let mut tries = tokio::task::JoinSet::new();
    for (web, csrf) in guessers {
        tries.spawn(async move {
            web.post(
                "/console/login",
                &[
                    ("csrf", csrf.as_str()),
                    ("username", "ana"),
                    ("password", "wrong guess"),
                ],
            )
            .await
            .status
        });
    }
    for status in tries.join_all().await {
        assert_eq!(status, 401);
    }
    let failures: i64 =
        sqlx::query_scalar("SELECT failed_logins FROM users WHERE username = 'ana'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
    assert_eq!(failures, GUESSES);
    let locked: i64 = sqlx::query_scalar("SELECT locked_until FROM users WHERE username = 'ana'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert!(locked > 0, "locked after {GUESSES} failures");
}

async fn audit_has(m: &TestManager, action: &str) -> bool {
    m.h()
        .core
        .store
        .list_audit("default", 1000)
        .await
        .unwrap()
        .iter()
        .any(|e| e["action"] == action)
}

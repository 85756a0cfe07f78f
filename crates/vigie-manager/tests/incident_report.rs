//! The incident report over real HTTPS, on SQLite and on a private
//! PostgreSQL: two agents enrolled over mutual TLS (vigie-uplink) send
//! alerts (one with markup in its command line; the other host's alert,
//! half an hour earlier, is the related activity), the host is isolated
//! through the API, then the report is read through the API (bearer token,
//! English and French, another organisation gets 404) and the console
//! (read-only user), and an analyst fills in the breach-notification
//! fields (CSRF, role, audit).

mod common;
mod console_web;

use std::time::Duration;

use common::*;
use console_web::*;
use serde_json::json;
use vigie_uplink::{Options, Uplink, UplinkHandle};

const PASSWORD: &str = "a long test password";

async fn agent(m: &TestManager, dir: &std::path::Path) -> (String, UplinkHandle) {
    let token = m.enroll_token("default", 3_600_000).await;
    let id = Uplink::enroll(&m.agent_url(), &token, dir).await.unwrap();
    let opts = Options {
        heartbeat: Duration::from_millis(500),
        ..Options::default()
    };
    let up = Uplink::start(dir, Recorder::default(), opts).await.unwrap();
    assert!(up.wait_connected(Duration::from_secs(20)).await);
    (id.host_id, up)
}

/// GET with a bearer token and headers; (status, content type, CSP, body).
async fn get_html(
    m: &TestManager,
    path: &str,
    token: Option<&str>,
    lang: Option<&str>,
) -> (u16, String, String, String) {
    let mut r = m.client.get(m.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(l) = lang {
        r = r.header("accept-language", l);
    }
    let resp = r.send().await.unwrap();
    let header = |h: &str| {
        resp.headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (ct, csp) = (header("content-type"), header("content-security-policy"));
    (resp.status().as_u16(), ct, csp, resp.text().await.unwrap())
}

async fn report(db: Db) {
    let m = start_manager(&db).await;
    let store = &m.h().core.store;
    let (dir_fs, dir_vpn) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (fs_id, fs) = agent(&m, dir_fs.path()).await;
    let (vpn_id, vpn) = agent(&m, dir_vpn.path()).await;

    // The file server: a download run through a shell, with markup.
    let mut ev = exec_event("fileserver", 1);
    if let vigie_event::Payload::Process(p) = &mut ev.payload {
        p.process.command_line = "sh -c '<script>alert(\"cmd\")</script>'".into();
        p.process.user = Some(vigie_event::User {
            name: Some("www-data".into()),
            ..Default::default()
        });
    }
    let alert = alert_for(&ev);
    fs.send_event(&ev).await;
    fs.send_alert(&alert).await;
    fs.flush().await;
    // Another host of the organisation, half an hour before: related.
    let mut early = exec_event("vpn-gateway", 2);
    early.time -= chrono::Duration::minutes(30);
    let mut early_alert = alert_for(&early);
    early_alert.rule.name = "Earlier activity on the gateway".into();
    vpn.send_alert(&early_alert).await;
    // And one two hours before: outside the window.
    let mut old = exec_event("vpn-gateway", 3);
    old.time -= chrono::Duration::minutes(120);
    let mut old_alert = alert_for(&old);
    old_alert.rule.name = "Old unrelated activity".into();
    vpn.send_alert(&old_alert).await;
    vpn.flush().await;
    let (_, n) = m
        .wait_counts("default", 1, 3, Duration::from_secs(30))
        .await;
    assert_eq!(n, 3);
    let incidents = store.list_incidents("default", 10).await.unwrap();
    let inc = incidents
        .iter()
        .find(|i| i["host_id"] == fs_id.as_str())
        .expect("the file server's incident");
    let id = inc["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/incidents/{id}/report");

    // Isolate through the API: the action and its verified outcome.
    let (code, _) = m
        .post(
            &format!("/api/v1/hosts/{fs_id}/isolate"),
            Some(&m.admin_token),
            json!({"reason": "download run by the web server"}),
        )
        .await;
    assert_eq!(code, 200);
    // The command shows as done just before its audit entry is written.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store
        .list_audit("default", 100)
        .await
        .unwrap()
        .iter()
        .any(|e| e["action"] == "isolate")
    {
        assert!(std::time::Instant::now() < deadline, "isolation audited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // --- API: a token is needed.
    let (code, _, _, _) = get_html(&m, &path, None, None).await;
    assert_eq!(code, 401);
    let (code, _, _, _) = get_html(&m, &path, Some("not-a-token"), None).await;
    assert_eq!(code, 401);
    let (code, ct, csp, html) = get_html(&m, &path, Some(&m.admin_token), None).await;
    assert_eq!(code, 200, "{html}");
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    for section in [
        "summary", "timeline", "involved", "actions", "cnil", "contacts",
    ] {
        assert!(
            html.contains(&format!("id=\"{section}\"")),
            "{section} section"
        );
    }
    assert!(html.contains("Personal-data breach notification (CNIL, GDPR art. 33)"));
    assert!(html.contains("To complete"));
    let timeline =
        &html[html.find("id=\"timeline\"").unwrap()..html.find("id=\"involved\"").unwrap()];
    assert!(timeline.contains("Download with curl"));
    assert!(timeline.contains("Earlier activity on the gateway"));
    assert!(
        !timeline.contains("Old unrelated activity"),
        "outside the window"
    );
    assert_eq!(timeline.matches("class=\"alert related\"").count(), 1);
    assert!(timeline.contains("www-data"));
    assert!(
        timeline.contains("user:admin: succeeded: Isolate done by the test agent"),
        "{timeline}"
    );
    assert!(timeline.contains("user:admin"));
    // The command line is shown, escaped.
    assert!(!html.contains("<script>"), "raw markup in the report");
    assert!(html.contains("&lt;script&gt;alert(&quot;cmd&quot;)&lt;/script&gt;"));
    // Both hosts are listed, the file server isolated.
    let involved =
        &html[html.find("id=\"involved\"").unwrap()..html.find("id=\"actions\"").unwrap()];
    assert!(involved.contains(&fs_id) && involved.contains(&vpn_id));
    assert!(involved.contains("<strong>Isolated</strong>"));

    // French: by query or by Accept-Language.
    let (code, _, _, fr) =
        get_html(&m, &format!("{path}?lang=fr"), Some(&m.admin_token), None).await;
    assert_eq!(code, 200);
    assert!(fr.contains("lang=\"fr\"") && fr.contains("À compléter"));
    assert!(fr.contains("Notification de violation de données personnelles (CNIL, RGPD art. 33)"));
    let (_, _, _, fr) = get_html(&m, &path, Some(&m.admin_token), Some("fr-FR,fr;q=0.9")).await;
    assert!(fr.contains("Chronologie"));
    let (code, _, _, _) =
        get_html(&m, &format!("{path}?lang=de"), Some(&m.admin_token), None).await;
    assert_eq!(code, 400);
    let (code, _, _, _) = get_html(
        &m,
        "/api/v1/incidents/no-such-incident/report",
        Some(&m.admin_token),
        None,
    )
    .await;
    assert_eq!(code, 404);

    // --- Another organisation sees nothing of it.
    store.ensure_org("other").await.unwrap();
    store
        .add_user("other", "otto", PASSWORD, "admin")
        .await
        .unwrap();
    let other_token = store
        .create_api_token("other", None, "other-ci", "read-only", None)
        .await
        .unwrap();
    let (code, _, _, body) = get_html(&m, &path, Some(&other_token), None).await;
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("Download with curl"));

    // --- Console: a read-only user reads the report from the incident page.
    for (name, role) in [("reader", "read-only"), ("ana", "analyst")] {
        store
            .add_user("default", name, PASSWORD, role)
            .await
            .unwrap();
    }
    let reader = Web::new(&m);
    assert_eq!(reader.login("reader", PASSWORD).await.status, 303);
    let page = reader.get(&format!("/console/incidents/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("href=\"/console/incidents/{id}/report\""))
    );
    assert!(page.body.contains(">Report<"));
    // The incident page's timeline crosses hosts: the gateway's alert half an
    // hour before is there, marked related and before the file server's; the
    // one two hours before is not.
    let tl = &page.body[page.body.find("id=\"incident-timeline\"").unwrap()..];
    let related = tl
        .find("Earlier activity on the gateway")
        .expect("related alert");
    let own = tl.find("Download with curl").expect("the incident's alert");
    assert!(related < own, "time order across hosts");
    assert!(tl.contains("[related]"));
    assert!(!tl.contains("Old unrelated activity"));
    let r = reader.get(&format!("/console/incidents/{id}/report")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"timeline\"") && r.body.contains("id=\"cnil\""));
    assert!(!r.body.contains("<script>"));
    // A read-only user cannot fill in the notification.
    let notes = format!("/console/incidents/{id}/notification");
    let form = reader.get(&notes).await;
    assert_eq!(form.status, 200);
    let csrf = csrf_of(&form.body);
    let r = reader
        .post(&notes, &[("csrf", &csrf), ("dpo", "reader was here")])
        .await;
    assert_eq!(r.status, 403);
    // The other organisation's console user gets 404 for this incident.
    let otto = Web::new(&m);
    store
        .add_user("other", "otto2", PASSWORD, "read-only")
        .await
        .unwrap();
    assert_eq!(otto.login("otto2", PASSWORD).await.status, 303);
    assert_eq!(
        otto.get(&format!("/console/incidents/{id}/report"))
            .await
            .status,
        404
    );
    assert_eq!(otto.get(&notes).await.status, 404);

    // --- An analyst fills in fields: CSRF needed, saved, audited, shown.
    let ana = Web::new(&m);
    assert_eq!(ana.login("ana", PASSWORD).await.status, 303);
    let r = ana.post(&notes, &[("dpo", "no token")]).await;
    assert_eq!(r.status, 403);
    let csrf = ana.csrf(&notes).await;
    let r = ana
        .post(&notes, &[("csrf", &csrf), ("nonsense", "x")])
        .await;
    assert_eq!(r.status, 400, "unknown fields are refused");
    let r = ana
        .post(
            &notes,
            &[
                ("csrf", &csrf),
                ("dpo", "Jeanne Martin <dpo@cc.example>"),
                ("persons_count", "about 12 000"),
                ("inform", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let (_, _, _, html) = get_html(&m, &path, Some(&m.admin_token), None).await;
    assert!(html.contains("Jeanne Martin &lt;dpo@cc.example&gt;"));
    assert!(html.contains("about 12 000"));
    assert!(!html.contains("<dpo@"));
    let audit = store.list_audit("default", 1000).await.unwrap();
    let saved: Vec<_> = audit
        .iter()
        .filter(|e| e["action"] == "incident_note" && e["target"] == id.as_str())
        .collect();
    assert_eq!(saved.len(), 2, "one entry per field saved: {saved:?}");
    assert!(saved.iter().all(|e| e["actor"] == "user:ana"));
    // Saving the same values again records nothing new.
    let r = ana
        .post(
            &notes,
            &[("csrf", &csrf), ("dpo", "Jeanne Martin <dpo@cc.example>")],
        )
        .await;
    assert_eq!(r.status, 303);
    let audit = store.list_audit("default", 1000).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["action"] == "incident_note")
            .count(),
        2
    );
    // The note belongs to this organisation's incident only.
    let (_, _, _, fr) = get_html(&m, &format!("{path}?lang=fr"), Some(&m.admin_token), None).await;
    assert!(fr.contains("about 12 000"));

    fs.shutdown().await;
    vpn.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_report_sqlite() {
    report(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn incident_report_postgres() {
    let pg = tokio::task::spawn_blocking(PgCluster::start).await.unwrap();
    report(Db::Postgres(pg)).await;
}

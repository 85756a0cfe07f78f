//! Offline release codes: the agent hands its release secret over at
//! enrolment; the manager derives the code an admin reads out to the person
//! at the isolated host, and that code is the one the agent accepts.

mod common;
mod console_web;

use common::*;
use console_web::{Web, between};
use serde_json::json;
use vigie_respond::release::{self, Purpose};
use vigie_uplink::Uplink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_issues_the_code_the_agent_accepts() {
    let m = start_manager(&Db::Sqlite).await;
    let store = m.h().core.store.clone();

    // A host enrolled the way the agent does it: with its state directory's
    // secret.
    let dir = tempfile::tempdir().unwrap();
    let secret = vigie_respond::StateDir::open(dir.path())
        .unwrap()
        .secret()
        .unwrap();
    let token = m.enroll_token("default", 3_600_000).await;
    let id = Uplink::enroll_marked(&m.agent_url(), &token, dir.path(), None, &secret)
        .await
        .unwrap();
    let path = format!("/api/v1/hosts/{}/release-code", id.host_id);

    let analyst = store
        .create_api_token("default", None, "analyst", "analyst", None)
        .await
        .unwrap();
    let read_only = store
        .create_api_token("default", None, "ro", "read-only", None)
        .await
        .unwrap();

    let (code, body) = m
        .post(
            &path,
            Some(&analyst),
            json!({"reason": "cleaned, phone call with Mme Durand"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let issued = body["code"].as_str().unwrap().to_string();
    assert_eq!(issued.len(), 8);
    assert!(
        release::verify(&secret, Purpose::Release, &issued),
        "the agent accepts the manager's code"
    );
    assert!(
        !release::verify(&secret, Purpose::Stop, &issued),
        "a release code does not stop the agent"
    );
    assert!(
        body["how"]
            .as_str()
            .unwrap()
            .contains("vigie agent release --code")
    );

    // The stop code needs an admin; read-only gets nothing; a reason is
    // required.
    let (code, _) = m
        .post(
            &path,
            Some(&analyst),
            json!({"reason": "x", "purpose": "stop"}),
        )
        .await;
    assert_eq!(code, 403);
    let (code, body) = m
        .post(
            &path,
            Some(&m.admin_token),
            json!({"reason": "uninstall", "purpose": "stop"}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert!(release::verify(
        &secret,
        Purpose::Stop,
        body["code"].as_str().unwrap()
    ));
    let (code, _) = m
        .post(&path, Some(&read_only), json!({"reason": "x"}))
        .await;
    assert_eq!(code, 403);
    let (code, _) = m.post(&path, Some(&analyst), json!({})).await;
    assert_eq!(code, 400);
    let (code, _) = m
        .post(
            &path,
            Some(&analyst),
            json!({"reason": "x", "purpose": "format-disk"}),
        )
        .await;
    assert_eq!(code, 400);

    // Another organisation cannot get codes for this host.
    store.ensure_org("elsewhere").await.unwrap();
    let other = store
        .create_api_token("elsewhere", None, "other", "admin", None)
        .await
        .unwrap();
    let (code, _) = m.post(&path, Some(&other), json!({"reason": "x"})).await;
    assert_eq!(code, 404);

    // An agent that enrolled without a secret: a clear 409.
    let old = tempfile::tempdir().unwrap();
    let token = m.enroll_token("default", 3_600_000).await;
    let old_id = Uplink::enroll(&m.agent_url(), &token, old.path())
        .await
        .unwrap();
    let (code, body) = m
        .post(
            &format!("/api/v1/hosts/{}/release-code", old_id.host_id),
            Some(&analyst),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("re-enrol"));

    // The audit log says who asked and why, never the code.
    let (_, audit) = m.get("/api/v1/audit", Some(&m.admin_token)).await;
    let text = audit.to_string();
    assert!(text.contains("release_code"), "{text}");
    assert!(text.contains("cleaned, phone call with Mme Durand"));
    assert!(text.contains("stop_code"));
    assert!(!text.contains(&issued), "the code is not in the audit log");

    // The console: an analyst asks for the code on the host's page; the page
    // shows it (never a URL). A read-only user and a forged form get nothing.
    for (name, role) in [("ana", "analyst"), ("reader", "read-only")] {
        store
            .add_user("default", name, "a long test password", role)
            .await
            .unwrap();
    }
    let host_page = format!("/console/hosts/{}", id.host_id);
    let code_path = format!("{host_page}/release-code");
    let ana = Web::new(&m);
    assert_eq!(ana.login("ana", "a long test password").await.status, 303);
    let csrf = ana.csrf(&host_page).await;
    let forged = ana
        .post(&code_path, &[("csrf", "forged"), ("reason", "x")])
        .await;
    assert_eq!(forged.status, 403);
    let r = ana
        .post(
            &code_path,
            &[("csrf", &csrf), ("reason", "user on the phone")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shown = between(&r.body, "id=\"release-code\"><code>", "<").expect("code shown");
    assert!(
        release::verify(&secret, Purpose::Release, &shown),
        "{shown}"
    );
    let reader = Web::new(&m);
    assert_eq!(
        reader.login("reader", "a long test password").await.status,
        303
    );
    let csrf = reader.csrf(&host_page).await;
    let r = reader
        .post(&code_path, &[("csrf", &csrf), ("reason", "x")])
        .await;
    assert_eq!(r.status, 403);
}

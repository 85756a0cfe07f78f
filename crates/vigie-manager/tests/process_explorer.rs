//! The host's process tree explorer, over HTTPS with a logged-in analyst:
//! exec events sent by an agent become a tree under their parent, the
//! process that raised an alert is framed and linked, the search keeps
//! matches with their ancestors, and hostile command lines are escaped.

mod common;
mod console_web;

use std::time::Duration;

use common::*;
use console_web::Web;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_shows_the_tree_with_the_culprit() {
    let m = start_manager(&Db::Sqlite).await;
    let (up, host_id, _dir) = m.connected_agent().await;
    // Three children of the same bash (see exec_event); the second raises
    // an alert, the third carries markup.
    let events: Vec<_> = (1..=3).map(|n| exec_event("pc-tree", n)).collect();
    let mut hostile = events[2].clone();
    if let vigie_event::Payload::Process(p) = &mut hostile.payload {
        p.process.command_line = "sh -c '<script>alert(1)</script>'".into();
    }
    for e in [&events[0], &events[1], &hostile] {
        up.send_event(e).await;
    }
    let alert = alert_for(&events[1]);
    up.send_alert(&alert).await;
    up.flush().await;
    m.wait_counts("default", 3, 1, Duration::from_secs(30))
        .await;

    m.h()
        .core
        .store
        .add_user("default", "ana", "a long test password", "analyst")
        .await
        .unwrap();
    let web = Web::new(&m);
    assert_eq!(web.login("ana", "a long test password").await.status, 303);
    let host = web.get(&format!("/console/hosts/{}", host_id)).await;
    assert!(host.body.contains("id=\"process-explorer-link\""));

    let page = web
        .get(&format!("/console/hosts/{}/processes", host_id))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let tree = &page.body[page.body.find("id=\"process-explorer\"").unwrap()..];
    // bash heads the tree; its three children follow it.
    let bash = tree.find(">bash<").expect("the parent heads the tree");
    for n in 1..=2 {
        let child = tree
            .find(&format!("curl http://evil.example/{n}"))
            .expect("child shown");
        assert!(child > bash, "child {n} under its parent");
    }
    assert!(tree.contains(&format!("/console/alerts/{}", alert.id)));
    assert!(tree.contains("class=\"culprit\""));
    assert!(tree.contains("&lt;script&gt;"));
    assert!(!tree.contains("<script>alert(1)"));

    // Search: one match, its ancestor kept, the others gone.
    let found = web
        .get(&format!(
            "/console/hosts/{}/processes?q=evil.example/2",
            host_id
        ))
        .await;
    assert!(found.body.contains("curl http://evil.example/2"));
    assert!(found.body.contains(">bash<"));
    assert!(!found.body.contains("curl http://evil.example/1"));

    // Another organisation's host: 404.
    let nobody = web.get("/console/hosts/nope/processes").await;
    assert_eq!(nobody.status, 404);
    up.shutdown().await;
}

//! Notifications against real receivers: a webhook endpoint on loopback
//! (that fails once, to prove the retry), a real SMTP server (Debian's
//! python3-aiosmtpd, writing a maildir) and a real syslog daemon (rsyslogd
//! with UDP and TCP inputs on loopback, writing what it parsed).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use vigie_event::Level;
use vigie_manager::console::queries::set_setting;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Webhook receiver: answers 500 to the first request, 200 after; keeps
/// every body.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let s = s.clone();
            async move {
                let mut v = s.lock().unwrap();
                v.push(body.0);
                if v.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn smtp_server(port: u16, maildir: &Path) -> KillOnDrop {
    let child = Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3-aiosmtpd is installed (scripts/apt-packages.txt)");
    KillOnDrop(child)
}

fn syslog_server(dir: &Path, udp: u16, tcp: u16) -> KillOnDrop {
    let out = dir.join("received.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="parsed" type="string" string="%hostname%|%app-name%|%msgid%|%syslogseverity%|%msg%\n")
*.* action(type="omfile" file="{out}" template="parsed")
"#,
            work = dir.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .spawn()
        .expect("rsyslog is installed (scripts/apt-packages.txt)");
    KillOnDrop(child)
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server on port {port} never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn maildir_messages(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("new"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn syslog_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("received.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_webhook_email_and_syslog() {
    let tmp = tempfile::tempdir().unwrap();
    let (hook_url, hooks) = webhook_receiver().await;
    let smtp_port = test_support::free_port();
    let maildir = tmp.path().join("mail");
    let _smtp = smtp_server(smtp_port, &maildir);
    let (udp, tcp) = (test_support::free_port(), test_support::free_port());
    let _syslog = syslog_server(tmp.path(), udp, tcp);
    wait_port(smtp_port);
    wait_port(tcp);

    let m = start_manager(&Db::Sqlite).await;
    let store = &m.h().core.store;
    for (k, v) in [
        ("webhook_url", hook_url.as_str()),
        ("notify_level", "high"),
        ("smtp_url", &format!("smtp://127.0.0.1:{smtp_port}")),
        ("email_to", "it@mairie.example, dpo@mairie.example"),
        ("email_from", "Vigie <vigie@mairie.example>"),
        ("syslog_url", &format!("tcp://127.0.0.1:{tcp}")),
        ("syslog_format", "cef"),
        ("console_url", "https://vigie.mairie.example/console"),
    ] {
        set_setting(store, "default", k, v).await.unwrap();
    }

    let (up, _, _agent_dir) = m.connected_agent().await;

    // One high alert (everywhere) and one low alert (syslog only).
    let high_event = exec_event("pc-accueil", 1);
    let high = alert_for(&high_event);
    let mut low = alert_for(&exec_event("pc-accueil", 2));
    low.rule.level = Some(Level::Low);
    low.rule.name = "Low noise".into();
    up.send_alert(&high).await;
    up.send_alert(&low).await;
    up.flush().await;

    // The webhook failed once: the retry (5 s later) delivers it.
    let bodies = wait_for("the webhook retry", Duration::from_secs(30), || {
        let v = hooks.lock().unwrap();
        (v.len() >= 2).then(|| v.clone())
    })
    .await;
    let text = bodies[1]["text"].as_str().unwrap();
    assert!(text.contains("HIGH alert on"), "{text}");
    assert!(text.contains("Download with curl"), "{text}");
    assert!(
        text.contains(&format!(
            "https://vigie.mairie.example/console/alerts/{}",
            high.id
        )),
        "{text}"
    );
    assert_eq!(bodies[1]["vigie"]["alert_id"], high.id.to_string());

    let mail = wait_for("the email", Duration::from_secs(30), || {
        maildir_messages(&maildir).into_iter().next()
    })
    .await;
    assert!(
        mail.contains("Subject: [Vigie] HIGH alert on"),
        "subject: {mail}"
    );
    assert!(mail.contains("it@mairie.example"), "{mail}");
    assert!(mail.contains("curl http://evil.example/1"), "{mail}");

    // rsyslog parsed our RFC 5424 header: host, app-name, msgid and the
    // severity mapped from the level; the body is CEF.
    let lines = wait_for("two syslog messages", Duration::from_secs(30), || {
        let l = syslog_lines(tmp.path());
        (l.len() >= 2).then_some(l)
    })
    .await;
    let high_line = lines
        .iter()
        .find(|l| l.contains("Download with curl"))
        .expect("high alert forwarded");
    assert!(
        high_line.contains("|vigie|alert|3|CEF:0|Vigie|Vigie|"),
        "{high_line}"
    );
    assert!(
        high_line.contains(&format!("externalId={}", high.id)),
        "{high_line}"
    );
    assert!(
        lines.iter().any(|l| l.contains("Low noise")),
        "low alert forwarded to syslog: {lines:?}"
    );

    // Exactly once: no more deliveries turn up, the outbox says sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hooks.lock().unwrap().len(), 2, "one failure, one success");
    assert_eq!(maildir_messages(&maildir).len(), 1);
    assert_eq!(syslog_lines(tmp.path()).len(), 2);
    let states: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT channel, state, attempts FROM notify_outbox ORDER BY channel")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    let mut states: Vec<_> = states
        .into_iter()
        .map(|(c, s, a)| format!("{c}:{s}:{a}"))
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            "email:sent:1",
            "syslog:sent:1",
            "syslog:sent:1",
            "webhook:sent:2"
        ]
    );

    // ECS over UDP: the body is the alert's JSON.
    set_setting(
        store,
        "default",
        "syslog_url",
        &format!("udp://127.0.0.1:{udp}"),
    )
    .await
    .unwrap();
    set_setting(store, "default", "syslog_format", "ecs")
        .await
        .unwrap();
    let third = alert_for(&exec_event("pc-accueil", 3));
    up.send_alert(&third).await;
    up.flush().await;
    let lines = wait_for("the UDP syslog message", Duration::from_secs(30), || {
        let l = syslog_lines(tmp.path());
        (l.len() >= 3).then_some(l)
    })
    .await;
    let json_part = lines[2].splitn(5, '|').nth(4).unwrap();
    let doc: serde_json::Value = serde_json::from_str(json_part.trim()).unwrap_or_else(|e| {
        panic!("syslog body is ECS JSON ({e}): {}", lines[2]);
    });
    assert_eq!(doc["rule"]["name"], "Download with curl");
    up.shutdown().await;
}

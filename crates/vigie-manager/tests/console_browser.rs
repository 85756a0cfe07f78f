//! The console in a real browser: Debian's chromium, headless, driven over
//! WebDriver (chromedriver) from this test, against a manager started here
//! with real data: an agent enrolled over mutual TLS (vigie-uplink) that
//! sends the events of samples/linux-fileserver-intrusion.jsonl and the
//! alerts vigie-detect's built-in rules raise on them. The agent's command
//! handler isolates for real with vigie-respond (nftables) inside a network
//! namespace this test creates, so "isolated" is checked with `nft`.
//!
//! With VIGIE_SCREENSHOTS=1, screenshots of the main pages go to
//! docs/screenshots/ (the committed ones the docs show); otherwise the test
//! leaves the tracked files alone.

mod common;
mod console_web;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use console_web::{between, oathtool};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use vigie_respond::{Cause, IsolationSpec, Responder};
use vigie_uplink::{
    Action, Command as AgentCommand, CommandHandler, CommandOutcome, Options, Uplink,
};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A network namespace (loopback only) standing for the endpoint; deleted
/// on drop, also when the test fails.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("vcon{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add (the test runs as root)");
        let ns = Netns(name);
        assert!(
            Command::new("ip")
                .args(["-n", &ns.0, "link", "set", "lo", "up"])
                .status()
                .unwrap()
                .success()
        );
        ns
    }

    fn isolated(&self) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", &self.0, "nft", "list", "table", "inet", "vigie",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Run `f` on a thread inside the namespace (nft, spawned from there,
/// works on that namespace's tables).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// The test agent's hands: vigie-respond's isolation, for real, in the
/// namespace; the outcome is what the responder verified.
#[derive(Clone)]
struct Isolator {
    ns: String,
    state: PathBuf,
}

impl CommandHandler for Isolator {
    async fn handle(&self, command: AgentCommand) -> CommandOutcome {
        let (ns, state) = (self.ns.clone(), self.state.clone());
        let action = command.action.clone();
        let reason = command.reason.clone();
        tokio::task::spawn_blocking(move || {
            in_ns(&ns, move || {
                let r = match Responder::open(&state) {
                    Ok(r) => r,
                    Err(e) => return CommandOutcome::failed(format!("{e:#}")),
                };
                let cause = Cause {
                    actor: "manager".into(),
                    alert_id: None,
                    reason: Some(reason),
                };
                let ev = match action {
                    Action::Isolate => r.isolate(&IsolationSpec::default(), &cause),
                    Action::Release => r.release_authorised(&cause),
                    other => return CommandOutcome::failed(format!("{other:?} not handled here")),
                };
                match ev {
                    Ok(ev) => match &ev.payload {
                        vigie_event::Payload::Response(resp)
                            if resp.outcome == vigie_event::Outcome::Success =>
                        {
                            CommandOutcome::ok(resp.response.detail.clone())
                        }
                        vigie_event::Payload::Response(resp) => {
                            CommandOutcome::failed(resp.response.detail.clone())
                        }
                        _ => CommandOutcome::failed("no response event"),
                    },
                    Err(e) => CommandOutcome::failed(format!("{e:#}")),
                }
            })
        })
        .await
        .unwrap_or_else(|e| CommandOutcome::failed(e.to_string()))
    }
}

/// chromedriver on a free loopback port, and a directory for the browser's
/// profile and temporary files; killed and deleted on drop (Chromium would
/// otherwise leave them in /tmp at every run).
struct Driver(Child, u16, tempfile::TempDir);

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile = tempfile::Builder::new()
            .prefix("vigie-chromium-")
            .tempdir()
            .unwrap();
        // The browser's own temporary files (shared memory with
        // --disable-dev-shm-usage) go there too.
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("TMPDIR", profile.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (chromium-driver, scripts/apt-packages.txt)");
        let d = Driver(child, port, profile);
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium", "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100", "--lang=en-GB", format!("--user-data-dir={}", d.2.path().display())]}),
    );
    tokio::time::timeout(
        Duration::from_secs(60),
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", d.1)),
    )
    .await
    .expect("browser session within 60 s")
    .expect("browser session")
}

async fn shot(c: &Client, name: &str) {
    if std::env::var_os("VIGIE_SCREENSHOTS").is_none_or(|v| v != "1") {
        return;
    }
    let png = c.screenshot().await.unwrap();
    let dir = workspace().join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits for the element: a click that submits a form does not wait for
/// the next page on every chromedriver.
async fn fill(c: &Client, css: &str, text: &str) {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn body(c: &Client) -> String {
    c.source().await.unwrap()
}

/// Isolate or release from the host page (reason, confirmation, submit) and
/// return the page that follows. The POST returns once the agent reported
/// its verified outcome; the page is the new one only when the URL changed
/// (a release starts on the isolate's result page, which shows a flash too).
async fn host_action(c: &Client, kind: &str, reason: &str) -> String {
    let before = c.current_url().await.unwrap();
    fill(c, &format!("#{kind}-reason"), reason).await;
    click(c, &format!("#{kind}-confirm")).await;
    click(c, "form.action button").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.current_url().await.unwrap() == before {
        assert!(Instant::now() < deadline, "no page after {kind}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("p.flash.ok, p.error"))
        .await
        .expect("the command's outcome is shown");
    body(c).await
}

/// Events of the sample, and the alerts the built-in Linux rules raise.
fn sample_events_and_alerts() -> (Vec<vigie_event::Event>, Vec<vigie_event::Alert>) {
    let text =
        std::fs::read_to_string(workspace().join("samples/linux-fileserver-intrusion.jsonl"))
            .unwrap();
    let events: Vec<_> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| vigie_event::ecs::parse_event(l).expect("sample event"))
        .collect();
    let (engine, report) = vigie_detect::Engine::load(&[workspace().join("rules/linux")]);
    assert!(report.totals.loaded > 0);
    let mut d = engine.detector();
    let alerts: Vec<_> = events.iter().flat_map(|e| d.process(e)).collect();
    assert!(!alerts.is_empty(), "the built-in rules fire on the sample");
    (events, alerts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_in_a_real_browser() {
    // fantoccini brings a second rustls provider: pick ring, as the manager does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::time::timeout(Duration::from_secs(240), run())
        .await
        .expect("browser test within 4 minutes");
}

async fn run() {
    let ns = Netns::new();
    let m = start_manager(&Db::Sqlite).await;
    let agent_dir = tempfile::tempdir().unwrap();
    let token = m.enroll_token("default", 3_600_000).await;
    let id = Uplink::enroll(&m.agent_url(), &token, agent_dir.path())
        .await
        .unwrap();
    let handler = Isolator {
        ns: ns.0.clone(),
        state: agent_dir.path().join("respond"),
    };
    let opts = Options {
        heartbeat: Duration::from_millis(500),
        ..Options::default()
    };
    let up = Uplink::start(agent_dir.path(), handler, opts)
        .await
        .unwrap();
    assert!(up.wait_connected(Duration::from_secs(20)).await);
    let (events, alerts) = sample_events_and_alerts();
    for e in &events {
        up.send_event(e).await;
    }
    for a in &alerts {
        up.send_alert(a).await;
    }
    up.flush().await;
    let (_, n) = m
        .wait_counts(
            "default",
            events.len() as i64,
            alerts.len() as i64,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(n, alerts.len() as i64);
    // The alert with the deepest process tree is the one we open.
    let shown = alerts
        .iter()
        .max_by_key(|a| {
            (
                a.rule.level.map(|l| l.severity()).unwrap_or(0),
                a.events.len(),
            )
        })
        .unwrap()
        .clone();

    let driver = Driver::start();
    let c = browser(&driver).await;
    browse(&c, &m, &ns, &id.host_id, &shown).await;
    let _ = c.close().await;
    up.shutdown().await;
}

async fn browse(
    c: &Client,
    m: &TestManager,
    ns: &Netns,
    host_id: &str,
    shown: &vigie_event::Alert,
) {
    let base = format!("https://localhost:{}", m.config.listen.port());
    let first = m.h().first_start.clone().unwrap();

    // Log in: password, then the admin's second factor, enrolled now.
    c.goto(&format!("{base}/console/")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/login")
    );
    shot(c, "login").await;
    fill(c, "#username", &first.admin_user).await;
    fill(c, "#password", &first.admin_password).await;
    click(c, "form.login button").await;
    // Clicking does not wait for the next page on every chromedriver.
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#totp-secret"))
        .await
        .expect("TOTP enrolment page after the password");
    let page = body(c).await;
    let secret = between(&page, "id=\"totp-secret\">", "<").expect("TOTP enrolment page");
    assert!(page.contains("<svg"), "QR code for the admin");
    for _ in 0..3 {
        fill(c, "#code", &oathtool(&secret)).await;
        click(c, "form button[type=submit]").await;
        // Either the dashboard, or the enrolment page again with an error.
        c.wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("#code, main h1"))
            .await
            .expect("a page after the TOTP code");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while c.current_url().await.unwrap().path() != "/console/"
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if c.current_url().await.unwrap().path() == "/console/" {
            break;
        }
        // Refused (a step boundary): try the next step's code.
        tokio::time::sleep(Duration::from_secs(
            31 - chrono::Utc::now().timestamp() as u64 % 30,
        ))
        .await;
    }
    assert_eq!(c.current_url().await.unwrap().path(), "/console/");
    let page = body(c).await;
    assert!(page.contains("Alerts, last 24 hours") || page.contains("Alertes"));
    shot(c, "dashboard").await;

    // See the alert.
    c.goto(&format!("{base}/console/alerts")).await.unwrap();
    let title = &shown.rule.name;
    let link = c
        .find(Locator::LinkText(title))
        .await
        .expect("the alert is listed");
    shot(c, "alerts").await;
    link.click().await.unwrap();
    // Open its process tree: the culprit is marked.
    let tree = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#process-tree"))
        .await
        .expect("the alert page with its process tree");
    let culprit = tree
        .find(Locator::Css("li.culprit"))
        .await
        .expect("culprit highlighted");
    let text = culprit.text().await.unwrap();
    let first_ev = &shown.events[0];
    if let vigie_event::Payload::Process(p) = &first_ev.payload {
        assert!(text.contains(&p.process.name), "{text}");
    }
    let page = body(c).await;
    assert!(page.contains("What happened"));
    shot(c, "alert").await;

    // Isolate the host with a reason; the agent isolates for real.
    assert!(!ns.isolated());
    c.goto(&format!("{base}/console/hosts/{host_id}"))
        .await
        .unwrap();
    let page = host_action(c, "isolate", "suspicious download on the file server").await;
    assert!(page.contains("verified by the agent"), "{page}");
    assert!(
        ns.isolated(),
        "nft table inet vigie exists in the endpoint namespace"
    );
    shot(c, "host-isolated").await;
    // Release.
    let page = host_action(c, "release", "cleaned and checked").await;
    assert!(page.contains("verified by the agent"), "{page}");
    assert!(!ns.isolated(), "the table is gone after release");
    let audit = m.h().core.store.list_audit("default", 1000).await.unwrap();
    for action in ["isolate", "release"] {
        assert!(
            audit.iter().any(|e| e["action"] == action
                && e["actor"] == "user:admin"
                && e["outcome"].as_str().unwrap().starts_with("succeeded")),
            "{action} audited"
        );
    }

    // The incident's report, from the incident page: the timeline (with the
    // isolation and release just done) and the CNIL section.
    let incidents = m
        .h()
        .core
        .store
        .list_incidents("default", 10)
        .await
        .unwrap();
    let incident = incidents[0]["id"].as_str().unwrap();
    c.goto(&format!("{base}/console/incidents/{incident}"))
        .await
        .unwrap();
    click(c, "#report-link").await;
    let cnil = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("section#cnil h2"))
        .await
        .expect("the report's CNIL section");
    assert!(
        cnil.text()
            .await
            .unwrap()
            .contains("Personal-data breach notification (CNIL, GDPR art. 33)")
    );
    let timeline = c
        .find(Locator::Css("section#timeline"))
        .await
        .expect("the report's timeline");
    let text = timeline.text().await.unwrap();
    assert!(text.contains("2. Timeline"), "{text}");
    let rows = c
        .find_all(Locator::Css("section#timeline tr.alert"))
        .await
        .unwrap();
    assert!(
        !rows.is_empty(),
        "the incident's alerts are in the timeline"
    );
    assert!(
        text.contains("release") && text.contains("cleaned and checked"),
        "{text}"
    );
    let todo = c
        .find_all(Locator::Css("section#cnil .todo"))
        .await
        .unwrap();
    assert!(!todo.is_empty(), "fields to complete are marked");
    // The inline style sheet applies (the CSP allows it by hash): the
    // navigation bar is styled, and hidden when printed.
    let border = c
        .execute(
            "return getComputedStyle(document.querySelector('nav.no-print')).borderTopStyle",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        border,
        json!("solid"),
        "the report's style sheet is applied"
    );
    shot(c, "incident-report").await;
    // Printed (A4, the browser's own PDF): one section per page at least.
    let pdf = c
        .print(
            fantoccini::wd::PrintConfiguration::builder()
                .size(fantoccini::wd::PrintSize::A4)
                .build()
                .unwrap(),
        )
        .await
        .expect("the report prints");
    assert!(pdf.starts_with(b"%PDF"));
    let pages = pdf
        .windows(12)
        .filter(|w| w.starts_with(b"/Type /Page") && w[11] != b's')
        .count();
    eprintln!("report printed on {pages} A4 pages");
    assert!(pages >= 6, "{pages} printed pages for 6 sections");

    // Enrol a VPN user and see the QR code.
    c.goto(&format!("{base}/console/vpn-users")).await.unwrap();
    fill(c, "#vpn-name", "marie.dupont").await;
    fill(c, "#vpn-password", "a VPN password for Marie").await;
    click(c, "form[action='/console/vpn-users'] button").await;
    click(
        c,
        "form[action='/console/vpn-users/marie.dupont/enrol'] button",
    )
    .await;
    let qr = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#qr svg"))
        .await
        .expect("QR code shown");
    assert!(qr.attr("viewBox").await.unwrap().is_some() || body(c).await.contains("<path"));
    shot(c, "vpn-enrol").await;

    // Upload a broken Sigma rule: the error is shown at its line.
    c.goto(&format!("{base}/console/rules")).await.unwrap();
    let broken = "title: Broken rule\nid: 9b1f1c3e-0000-4000-8000-000000000001\nlogsource:\n  category: process_creation\n  product: linux\ndetection:\n  selection:\n    Image|endswithh: /curl\n  condition: selection\n";
    c.find(Locator::Css("#source"))
        .await
        .unwrap()
        .send_keys(broken)
        .await
        .unwrap();
    click(c, "form[action='/console/rules'] button").await;
    // The page comes back after vigie-detect validated the rule.
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#rule-errors, p.flash"))
        .await
        .unwrap();
    let errors = c
        .find(Locator::Css("#rule-errors"))
        .await
        .expect("errors shown");
    let etext = errors.text().await.unwrap();
    assert!(
        etext.to_lowercase().contains("endswithh") || etext.contains("modifier"),
        "{etext}"
    );
    let errline = c
        .find(Locator::Css("ol.source li.errline"))
        .await
        .expect("the error line is marked");
    assert!(!errline.text().await.unwrap().is_empty());
    shot(c, "rule-error").await;

    // The corrected rule is saved; it goes to one host group only.
    let source = c.find(Locator::Css("#source")).await.unwrap();
    source.clear().await.unwrap();
    source
        .send_keys(&broken.replace("endswithh", "endswith"))
        .await
        .unwrap();
    click(c, "form[action='/console/rules'] button").await;
    let field = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("form[action$='/groups'] input[name=groups]"))
        .await
        .expect("the saved rule is listed with its groups");
    field.send_keys("compta, mairie-annexe").await.unwrap();
    click(c, "form[action$='/groups'] button").await;
    // The rules page before showed a flash too: wait for the new URL.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("msg=updated")
    {
        assert!(Instant::now() < deadline, "no page after the assignment");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, rules) = m.get("/api/v1/rules", Some(&m.admin_token)).await;
    assert_eq!(
        rules["rules"][0]["groups"],
        serde_json::json!(["compta", "mairie-annexe"]),
        "{rules:#}"
    );
    let (_, audit) = m.get("/api/v1/audit", Some(&m.admin_token)).await;
    assert!(
        audit["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "assign_rule" && a["reason"] == "compta,mairie-annexe"),
        "{audit:#}"
    );

    // Settings: the SMTP password is write-only and stored sealed.
    c.goto(&format!("{base}/console/settings")).await.unwrap();
    fill(c, "#smtp_url", "smtp://127.0.0.1:2525").await;
    fill(c, "#smtp_password", "Mairie-SMTP-2026").await;
    click(c, "form[action='/console/settings'] button").await;
    let kept = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#smtp_password:not([placeholder=''])"))
        .await
        .expect("the page says a password is kept");
    assert!(!kept.attr("placeholder").await.unwrap().unwrap().is_empty());
    let page = body(c).await;
    assert!(page.contains("smtp://127.0.0.1:2525") && !page.contains("Mairie-SMTP-2026"));
    let stored =
        vigie_manager::console::queries::setting(&m.h().core.store, "default", "smtp_password")
            .await
            .unwrap()
            .unwrap();
    assert!(
        stored.starts_with("sealed:") && !stored.contains("Mairie"),
        "{stored}"
    );

    // The same console in French.
    c.goto(&format!("{base}/console/lang?to=fr&back=/console/"))
        .await
        .unwrap();
    assert!(body(c).await.contains("Tableau de bord"));
    shot(c, "dashboard-fr").await;
}

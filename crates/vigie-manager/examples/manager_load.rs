//! Load generator for scripts/bench/manager-load.
//!
//! `manager_load serve DIR PORT_FILE`: run a manager (SQLite in DIR) on
//! loopback, write "API_PORT AGENT_PORT API_TOKEN CA_FINGERPRINT" to PORT_FILE.
//! `manager_load agents DIR N SECONDS`: N simulated agents, each on its own
//! mutual-TLS stream (real enrolment, real certificates), sending batches of
//! 100 events back to back (one batch in flight each) for SECONDS, while
//! isolate commands go through the API to random agents, which acknowledge.
//! Prints acknowledged (committed) events/s and isolate→ack latencies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vigie_proto::pb::{self, agent_message::Msg as Up, manager_message::Msg as Down};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(&args[2], &args[3]).await,
        Some("agents") => agents(&args[2], args[3].parse()?, args[4].parse()?).await,
        _ => anyhow::bail!("usage: manager_load serve DIR PORT_FILE | agents DIR N SECONDS"),
    }
}

async fn serve(dir: &str, port_file: &str) -> Result<()> {
    let mut config = vigie_manager::Config::new(dir);
    config.listen = "127.0.0.1:0".parse()?;
    config.agent_listen = "127.0.0.1:0".parse()?;
    let handle = vigie_manager::Manager::start(config).await?;
    let token = handle
        .core
        .store
        .create_api_token("default", None, "bench", "admin", None)
        .await?;
    let line = format!(
        "{} {} {} {}",
        handle.api_addr.port(),
        handle.agent_addr.port(),
        token,
        handle.core.pki.ca_fingerprint()
    );
    std::fs::write(format!("{port_file}.tmp"), line)?;
    std::fs::rename(format!("{port_file}.tmp"), port_file)?;
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

struct Info {
    api: u16,
    agent: u16,
    token: String,
}

fn read_info(dir: &str) -> Result<Info> {
    let text = std::fs::read_to_string(format!("{dir}/ports")).context("ports file")?;
    let f: Vec<&str> = text.split_whitespace().collect();
    Ok(Info {
        api: f[0].parse()?,
        agent: f[1].parse()?,
        token: f[2].to_string(),
    })
}

async fn agents(dir: &str, n: usize, seconds: u64) -> Result<()> {
    let info = read_info(dir)?;
    // Enrolment tokens are created by the manager's store directly.
    let store = vigie_manager::store::Store::connect(&vigie_manager::store::Store::sqlite_url(
        std::path::Path::new(dir),
    ))
    .await?;
    let pki = vigie_manager::pki::Pki::load_or_create(
        &std::path::Path::new(dir).join("pki"),
        &vigie_manager::default_names(),
    )?;
    let url = format!("https://localhost:{}", info.agent);
    let state = tempfile::tempdir()?;
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let (_, secret) = store.create_enroll_token("default", 3_600_000).await?;
        let token = format!("{secret}.{}", pki.ca_fingerprint());
        let mut facts = vigie_uplink::local_facts();
        facts.hostname = format!("sim-{i:04}");
        let sd = state.path().join(format!("a{i}"));
        ids.push(vigie_uplink::enroll(&url, &token, &sd, facts, None, Vec::new()).await?);
    }
    eprintln!("enrolled {n} agents in {:.1}s", t0.elapsed().as_secs_f64());
    let template = serde_json::to_string(&sample_event())?;
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let acked = acked.clone();
        let stop = stop.clone();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = run_agent(id, template, acked, stop).await {
                eprintln!("agent: {e:#}");
            }
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start_count = acked.load(Ordering::Relaxed);
    let start = Instant::now();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?)
        .build()?;
    let mut latencies = Vec::new();
    let mut k = 0usize;
    while start.elapsed() < Duration::from_secs(seconds) {
        let id = &ids[(k * 7919) % ids.len()];
        k += 1;
        let kind = if k.is_multiple_of(2) {
            "release"
        } else {
            "isolate"
        };
        let t = Instant::now();
        let r = client
            .post(format!(
                "https://localhost:{}/api/v1/hosts/{}/{kind}",
                info.api, id.host_id
            ))
            .bearer_auth(&info.token)
            .json(&serde_json::json!({"reason": "load benchmark", "wait_seconds": 10}))
            .send()
            .await?;
        let code = r.status().as_u16();
        if code == 200 {
            latencies.push(t.elapsed());
        } else {
            eprintln!("{kind}: HTTP {code}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let events = acked.load(Ordering::Relaxed) - start_count;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "agents={n} seconds={elapsed:.1} events={events} events_per_s={:.0} commands={} p50_ms={:.1} p99_ms={:.1}",
        events as f64 / elapsed,
        latencies.len(),
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

async fn run_agent(
    id: vigie_uplink::Identity,
    template: String,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let (tx, mut rx) = vigie_uplink::connect_session(&id).await?;
    let placeholder = "00000000-0000-7000-8000-000000000000";
    let mut seq = 0u64;
    let make_batch = |seq: u64| {
        let events: Vec<Vec<u8>> = (0..100)
            .map(|_| {
                template
                    .replace(placeholder, &uuid::Uuid::now_v7().to_string())
                    .into_bytes()
            })
            .collect();
        vigie_proto::encode_batch(seq, events, vec![])
    };
    seq += 1;
    tx.send(pb::AgentMessage {
        msg: Some(Up::Batch(make_batch(seq))),
    })
    .await?;
    while let Some(msg) = rx.message().await? {
        match msg.msg {
            Some(Down::Ack(a)) if a.error.is_empty() && a.seq != 0 && a.seq == seq => {
                acked.fetch_add(100, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                seq += 1;
                tx.send(pb::AgentMessage {
                    msg: Some(Up::Batch(make_batch(seq))),
                })
                .await?;
            }
            Some(Down::Ack(_)) => {}
            Some(Down::Command(c)) => {
                // Acknowledge at once (the real agent verifies its action first).
                let result = pb::CommandResult {
                    seq: 0,
                    command_id: c.id,
                    success: true,
                    outcome: "simulated".into(),
                    error: String::new(),
                };
                tx.send(pb::AgentMessage {
                    msg: Some(Up::Result(result)),
                })
                .await?;
            }
            None => {}
        }
    }
    Ok(())
}

fn sample_event() -> vigie_event::Event {
    use vigie_event::*;
    let mut e = Event::new(
        chrono::Utc::now(),
        Host::named("sim"),
        Payload::Process(ProcessEvent {
            action: ProcessAction::Exec,
            process: Process {
                entity_id: "e-1".into(),
                pid: 4242,
                name: "curl".into(),
                executable: "/usr/bin/curl".into(),
                command_line: "curl -s https://example.org/update.sh".into(),
                args: vec![
                    "curl".into(),
                    "-s".into(),
                    "https://example.org/update.sh".into(),
                ],
                working_directory: Some("/home/alice".into()),
                ..Default::default()
            },
            target: None,
            error: None,
        }),
    );
    e.id = uuid::Uuid::parse_str("00000000-0000-7000-8000-000000000000").expect("valid");
    e
}

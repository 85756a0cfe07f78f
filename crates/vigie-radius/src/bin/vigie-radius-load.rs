//! Load generator for `scripts/bench/radius`: sends one signed
//! Access-Request (password + current TOTP code) per user, `--concurrency`
//! in flight, and prints authentications/s and p50/p99 latency.
//!
//! Usage: vigie-radius-load --server 127.0.0.1:18120 --secret S --users FILE
//!        [--concurrency 32] [--label NAME] [--fresh-step] [--step-offset N]
//! FILE has one "name<TAB>password<TAB>base32-secret" line per user.
//! `--fresh-step` first waits for the next 30 s TOTP step, so that users who
//! logged in during an earlier pass get a code the server has not seen.
//! `--step-offset N` sends the codes of N steps later (-1, 0 or 1: what the
//! server accepts), so that up to three passes fit in one step (profiling).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vigie_radius::packet::{self, Packet, attr, code};
use vigie_radius::totp;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let server: std::net::SocketAddr = arg(&args, "--server")
        .ok_or_else(|| anyhow::anyhow!("--server ADDR is required"))?
        .parse()?;
    let secret = arg(&args, "--secret").ok_or_else(|| anyhow::anyhow!("--secret is required"))?;
    let users_file =
        arg(&args, "--users").ok_or_else(|| anyhow::anyhow!("--users FILE is required"))?;
    let concurrency: usize = arg(&args, "--concurrency")
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(32);
    let label = arg(&args, "--label").unwrap_or_else(|| server.to_string());
    let offset: i64 = arg(&args, "--step-offset")
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(0);
    if args.iter().any(|a| a == "--fresh-step") {
        let now = chrono::Utc::now().timestamp_millis();
        let next = (now / 30_000 + 1) * 30_000;
        // A little margin so a clock read at the boundary is in the new step.
        tokio::time::sleep(Duration::from_millis((next - now) as u64 + 50)).await;
    }
    let mut users = Vec::new();
    for line in std::fs::read_to_string(&users_file)?.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 {
            anyhow::bail!("bad line in {users_file}: {line:?}");
        }
        let raw = totp_rs::Secret::Encoded(f[2].to_string())
            .to_bytes()
            .map_err(|e| anyhow::anyhow!("bad base32 secret: {e:?}"))?;
        users.push((f[0].to_string(), f[1].to_string(), raw));
    }
    let users = Arc::new(users);
    let next = Arc::new(AtomicUsize::new(0));
    let secret = Arc::new(secret.into_bytes());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (users, next, secret) = (users.clone(), next.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(server).await?;
            let mut lat = Vec::new();
            let (mut ok, mut bad) = (0usize, 0usize);
            let mut buf = vec![0u8; 4096];
            let mut id: u8 = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, pw, raw)) = users.get(i) else {
                    break;
                };
                let now = (chrono::Utc::now().timestamp() + offset * totp::STEP as i64) as u64;
                let pwcode = format!("{pw}{}", totp::code_at(raw, totp::Algorithm::SHA1, 6, now));
                let auth: [u8; 16] = vigie_radius::crypto::random_bytes();
                id = id.wrapping_add(1);
                let mut p = Packet::new(code::ACCESS_REQUEST, id, auth);
                p.push(attr::USER_NAME, name.as_bytes().to_vec());
                p.push(
                    attr::USER_PASSWORD,
                    packet::hide_password(pwcode.as_bytes(), &secret, &auth),
                );
                p.push(attr::NAS_IDENTIFIER, b"bench".to_vec());
                let raw_req = packet::encode_signed_request(p, &secret)?;
                let t = Instant::now();
                sock.send(&raw_req).await?;
                match tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await {
                    Ok(Ok(n))
                        if packet::verify_response(&buf[..n], &auth, &secret)
                            && buf[0] == code::ACCESS_ACCEPT =>
                    {
                        ok += 1
                    }
                    _ => bad += 1,
                }
                lat.push(t.elapsed());
            }
            anyhow::Ok((lat, ok, bad))
        }));
    }
    let mut lat = Vec::new();
    let (mut ok, mut bad) = (0, 0);
    for t in tasks {
        let (l, o, b) = t.await??;
        lat.extend(l);
        ok += o;
        bad += b;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{label}: {} requests, {ok} accepted, {bad} failed, {:.0} auth/s, p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        ok as f64 / secs,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    Ok(())
}

//! RadSec load generator for `scripts/bench/radsec11`: one TLS connection,
//! Status-Server requests kept `WINDOW` in flight, historic RadSec (signed
//! with the secret "radsec", answers verified) or RADIUS/1.1 (Token, no MD5).
//! Prints requests/s and p50/p99 latency as one line of JSON.
//!
//!   vigie-radsec-load ADDR CA CERT KEY PROTOCOL REQUESTS WINDOW
//!   (PROTOCOL: 1.0 for ALPN radius/1.0, 1.1 for radius/1.1)
//!
//! Arguments are positional (no clap in this crate): the script is its only caller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use vigie_radius::packet::{self, Packet, code};
use vigie_radius::radius11;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [addr, ca, cert, key, proto, n, window] = &a[..] else {
        bail!("usage: vigie-radsec-load ADDR CA CERT KEY 1.0|1.1 REQUESTS WINDOW");
    };
    let v11 = match proto.as_str() {
        "1.0" => false,
        "1.1" => true,
        p => bail!("protocol {p:?}: 1.0 or 1.1"),
    };
    let n: u32 = n.parse().context("REQUESTS")?;
    let window: u32 = window.parse().context("WINDOW")?;
    // Historic RadSec has 256 Identifiers per connection.
    let window = if v11 { window } else { window.min(256) };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca)?)?;
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?;
    cfg.alpn_protocols = vec![
        if v11 {
            radius11::ALPN_1_1
        } else {
            radius11::ALPN_1_0
        }
        .to_vec(),
    ];
    let tcp = tokio::net::TcpStream::connect(addr.as_str()).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let got = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    if v11 && got.as_deref() != Some(radius11::ALPN_1_1) {
        bail!("the server did not negotiate radius/1.1");
    }
    let (mut rd, mut wr) = tokio::io::split(tls);

    // In flight: key (Token, or Identifier) -> (sent at, request authenticator).
    let mut pending: HashMap<u32, (Instant, [u8; 16])> = HashMap::new();
    let mut lat = Vec::with_capacity(n as usize);
    let (mut sent, mut next_id) = (0u32, 0u32);
    let mut buf = vec![0u8; packet::MAX_LEN];
    let start = Instant::now();
    while lat.len() < n as usize {
        while sent < n && (pending.len() as u32) < window {
            let (key, bytes, auth) = if v11 {
                let token = next_id.to_be_bytes();
                let b = radius11::encode(Packet::new(code::STATUS_SERVER, 0, [0; 16]), token)?;
                (next_id, b, [0; 16])
            } else {
                // the next Identifier not in flight
                while pending.contains_key(&(next_id % 256)) {
                    next_id += 1;
                }
                let auth: [u8; 16] = rand_auth(next_id);
                let id = (next_id % 256) as u8;
                let p = Packet::new(code::STATUS_SERVER, id, auth);
                (
                    u32::from(id),
                    packet::encode_signed_request(p, b"radsec")?,
                    auth,
                )
            };
            next_id = next_id.wrapping_add(1);
            pending.insert(key, (Instant::now(), auth));
            wr.write_all(&bytes).await?;
            sent += 1;
        }
        let read = async {
            rd.read_exact(&mut buf[..4]).await?;
            let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            if !(packet::MIN_LEN..=packet::MAX_LEN).contains(&len) {
                anyhow::bail!("bad answer length {len}");
            }
            rd.read_exact(&mut buf[4..len]).await?;
            Ok::<usize, anyhow::Error>(len)
        };
        let len = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .context("no answer within 10 s")??;
        let raw = &buf[..len];
        let key = if v11 {
            u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]])
        } else {
            u32::from(raw[1])
        };
        let Some((t, auth)) = pending.remove(&key) else {
            bail!("an answer to no request in flight ({key})");
        };
        if !v11 && !packet::verify_response(raw, &auth, b"radsec") {
            bail!("bad Response Authenticator");
        }
        if raw[0] != code::ACCESS_ACCEPT {
            bail!("answer code {}", raw[0]);
        }
        lat.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{{\"protocol\":\"{proto}\",\"requests\":{n},\"window\":{window},\"rate\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        f64::from(n) / secs,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

/// A Request Authenticator: unique per request is all a Status-Server needs.
fn rand_auth(i: u32) -> [u8; 16] {
    let mut a = [0x42u8; 16];
    a[..4].copy_from_slice(&i.to_be_bytes());
    a
}

//! RadSec: RADIUS over TLS (RFC 6614), port 2083 by default. Clients present
//! a certificate signed by the configured CA and must also be a registered
//! NAS client by address; the RADIUS shared secret is "radsec" as the RFC says.
//!
//! RADIUS/1.1 (RFC 9765): the server offers the ALPN protocols "radius/1.1"
//! and "radius/1.0" ([`Radius11`] decides which). A client that negotiates
//! "radius/1.1" (over TLS 1.3) gets RADIUS/1.1 framing ([`crate::radius11`]);
//! one that offers no ALPN or "radius/1.0" gets historic RADIUS/TLS; one that
//! offers only protocols we do not serve gets the no_application_protocol
//! alert from rustls. Session resumption is off: a resumed session could
//! otherwise negotiate down from RADIUS/1.1 (RFC 9765 §3.5), and RadSec
//! connections are long-lived, so it saves nothing worth that.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::packet;
pub use crate::radius11::Radius11;
use crate::radius11::{self as r11, ALPN_1_1};
use crate::server::Server;

#[derive(Debug, Clone)]
pub struct RadsecOptions {
    pub listen: std::net::SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that signs client certificates.
    pub client_ca: PathBuf,
    /// RADIUS/1.1 (RFC 9765): allow (default), require or forbid.
    pub radius11: Radius11,
}

pub fn acceptor(o: &RadsecOptions) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&o.cert)
        .with_context(|| format!("reading {}", o.cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&o.key)
        .with_context(|| format!("reading {}", o.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&o.client_ca)
        .with_context(|| format!("reading {}", o.client_ca.display()))?
    {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    // RADIUS/1.1 needs TLS 1.3 (RFC 9765 §3.4); historic RadSec clients
    // may still speak TLS 1.2 unless RADIUS/1.1 is required.
    let versions: &[&rustls::SupportedProtocolVersion] = match o.radius11 {
        Radius11::Require => &[&rustls::version::TLS13],
        _ => rustls::DEFAULT_VERSIONS,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = o.radius11.alpn_protocols();
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        if server.client_for(peer.ip()).is_none() {
            tracing::warn!(%peer, "RadSec connection from an unknown client closed");
            continue;
        }
        // Small answers, often several in flight: without this, Nagle and
        // the peer's delayed ACK hold an answer up to 40 ms
        // (scripts/bench/radsec11 showed it in p99).
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        // Among others: no common ALPN protocol (the client got
                        // the no_application_protocol alert).
                        tracing::warn!(%peer, error = %e, "RadSec handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "RadSec handshake timed out");
                        return;
                    }
                };
            let conn = tls.get_ref().1;
            let radius11 = conn.alpn_protocol() == Some(ALPN_1_1);
            let protocol = match conn.alpn_protocol() {
                Some(p) => String::from_utf8_lossy(p).into_owned(),
                None => "none (historic RadSec)".into(),
            };
            let tls13 = conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
            // `serve` keeps its signature for its callers: the setting is
            // read back from the ALPN list `acceptor` built from it.
            let required = acceptor.config().alpn_protocols == Radius11::Require.alpn_protocols();
            let (rd, mut wr) = tokio::io::split(tls);
            if radius11 && !tls13 {
                tracing::warn!(%peer, "RADIUS/1.1 negotiated over TLS 1.2: closed (RFC 9765 needs TLS 1.3)");
                let _ = wr.shutdown().await;
                return;
            }
            if required && !radius11 {
                // rustls only sends no_application_protocol when the client
                // offered ALPN; without ALPN, say why in the tunnel (RFC 9765
                // §3.4.1 allows this Protocol-Error), then close.
                tracing::warn!(%peer, "RadSec client without ALPN closed (RADIUS/1.1 is required)");
                let _ = wr.write_all(&r11::alpn_required_error()).await;
                let _ = wr.shutdown().await;
                return;
            }
            // Tells the administrator when every client speaks RADIUS/1.1
            // (RFC 9765 §3.3: then set it to require).
            tracing::info!(%peer, alpn = %protocol, "RadSec connection");
            if radius11 {
                serve_radius11(server, rd, wr, peer).await;
            } else {
                serve_radius10(server, rd, wr, peer).await;
            }
        });
    }
}

/// Read one RADIUS packet from the stream into `buf`; `None` at the end of
/// the stream or on a bad length (the stream cannot be resynchronised).
async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut [u8],
    peer: SocketAddr,
) -> Option<usize> {
    rd.read_exact(&mut buf[..4]).await.ok()?;
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if !(packet::MIN_LEN..=packet::MAX_LEN).contains(&len) {
        tracing::warn!(%peer, len, "bad RadSec packet length: closing");
        return None;
    }
    rd.read_exact(&mut buf[4..len]).await.ok()?;
    Some(len)
}

/// Historic RADIUS/TLS: RADIUS packets with the shared secret "radsec".
/// One connection often carries every user of a gateway (radsecproxy), so
/// requests run side by side, as over UDP: a first login (argon2) or a slow
/// directory must not hold up the others. Answers go out as they are ready
/// and the client matches them by Identifier (256 of them: the bound).
/// Duplicates are found by `Server::handle_radsec`, as for UDP (source,
/// Identifier, Request Authenticator).
async fn serve_radius10<R, W>(server: Arc<Server>, mut rd: R, wr: W, peer: SocketAddr)
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, writer) = answer_writer(wr, IN_FLIGHT_MAX_10);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX_10));
    let mut buf = vec![0u8; packet::MAX_LEN];
    while let Some(len) = read_packet(&mut rd, &mut buf, peer).await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let raw = buf[..len].to_vec();
        let (server, tx) = (server.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some(a) = server.handle_radsec(&raw, peer).await {
                let _ = tx.send(a).await;
            }
            drop(slot);
        });
    }
    // As for RADIUS/1.1 below: pending answers are written, then close.
    drop(tx);
    drop(rd);
    let _ = writer.await;
}

/// The task that writes a connection's answers in the order they are ready;
/// it shuts the connection down once every sender is gone.
fn answer_writer<W>(
    mut wr: W,
    queue: usize,
) -> (
    tokio::sync::mpsc::Sender<Vec<u8>>,
    tokio::task::JoinHandle<()>,
)
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(queue);
    let writer = tokio::spawn(async move {
        while let Some(answer) = rx.recv().await {
            if wr.write_all(&answer).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    (tx, writer)
}

/// Requests of one historic RadSec connection processed at once: one per
/// Identifier.
const IN_FLIGHT_MAX_10: usize = 256;

/// How long an answer is kept for a repeated Token, and how many at most.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(30);
const DUPLICATE_MAX: usize = 65_536;
/// Requests of one RADIUS/1.1 connection processed at once; past that the
/// connection is not read until one finishes (back-pressure on the client).
/// A reject holds its slot while it waits out the reject delay (a second by
/// default), so this is also the rejects per second one connection can get
/// before its other requests queue: as many as historic RadSec's 256
/// Identifiers (wrong passwords cost an argon2 check each, far fewer).
const IN_FLIGHT_MAX: usize = 256;

/// Tokens seen on one connection: when, and the answer (`None` while the
/// request is being processed).
type Seen = HashMap<r11::Token, (Instant, Option<Vec<u8>>)>;

/// RADIUS/1.1. The Token lets a client keep many requests outstanding on
/// one connection, so each request runs in its own task (a password check
/// must not hold up the others) and answers go out as they are ready.
/// Duplicates are detected on the Token alone and per connection (RFC 9765
/// §4.2.2): a request whose Token was answered on this connection gets the
/// same answer again, one still being processed is ignored (its answer is
/// coming), and neither is processed twice (that would count a failure
/// twice or burn a code).
async fn serve_radius11<R, W>(server: Arc<Server>, mut rd: R, wr: W, peer: SocketAddr)
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, writer) = answer_writer(wr, IN_FLIGHT_MAX);
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_MAX));
    let mut buf = vec![0u8; packet::MAX_LEN];
    while let Some(len) = read_packet(&mut rd, &mut buf, peer).await {
        let token: r11::Token = [buf[4], buf[5], buf[6], buf[7]];
        let now = Instant::now();
        let duplicate = {
            let mut seen = seen.lock().expect("seen lock");
            match seen.get(&token) {
                Some((t, answer)) if now.duration_since(*t) < DUPLICATE_WINDOW => {
                    Some(answer.clone())
                }
                _ => {
                    if seen.len() >= DUPLICATE_MAX {
                        seen.retain(|_, (t, a)| {
                            a.is_none() || now.duration_since(*t) < DUPLICATE_WINDOW
                        });
                    }
                    if seen.len() >= DUPLICATE_MAX {
                        // Still full within the window: forget the answers
                        // (best effort), never the requests in progress.
                        seen.retain(|_, (_, a)| a.is_none());
                    }
                    seen.insert(token, (now, None));
                    None
                }
            }
        };
        if let Some(answer) = duplicate {
            tracing::debug!(%peer, token = %hex::encode(token), "duplicate RADIUS/1.1 request");
            if let Some(a) = answer
                && tx.send(a).await.is_err()
            {
                break;
            }
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let raw = buf[..len].to_vec();
        let (server, seen, tx) = (server.clone(), seen.clone(), tx.clone());
        tokio::spawn(async move {
            let answer = server.handle_radius11(&raw, peer).await;
            {
                let mut seen = seen.lock().expect("seen lock");
                match &answer {
                    Some(a) => seen.insert(token, (Instant::now(), Some(a.clone()))),
                    None => seen.remove(&token),
                };
            }
            if let Some(a) = answer {
                let _ = tx.send(a).await;
            }
            drop(slot);
        });
    }
    // The client closed, or sent a bad length: answers still being
    // computed are written, then the connection closes.
    drop(tx);
    drop(rd);
    let _ = writer.await;
}

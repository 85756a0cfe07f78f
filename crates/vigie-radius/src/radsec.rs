//! RadSec: RADIUS over TLS (RFC 6614), port 2083 by default. Clients present
//! a certificate signed by the configured CA and must also be a registered
//! NAS client by address; the RADIUS shared secret is "radsec" as the RFC says.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::packet;
use crate::server::Server;

#[derive(Debug, Clone)]
pub struct RadsecOptions {
    pub listen: std::net::SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that signs client certificates.
    pub client_ca: PathBuf,
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
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
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
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "RadSec handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "RadSec handshake timed out");
                    return;
                }
            };
            let (mut rd, mut wr) = tokio::io::split(tls);
            let mut buf = vec![0u8; packet::MAX_LEN];
            loop {
                if rd.read_exact(&mut buf[..4]).await.is_err() {
                    return;
                }
                let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
                if !(packet::MIN_LEN..=packet::MAX_LEN).contains(&len) {
                    // The stream cannot be resynchronised after a bad length.
                    tracing::warn!(%peer, len, "bad RadSec packet length: closing");
                    return;
                }
                if rd.read_exact(&mut buf[4..len]).await.is_err() {
                    return;
                }
                if let Some(resp) = server.handle_radsec(&buf[..len], peer).await
                    && wr.write_all(&resp).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

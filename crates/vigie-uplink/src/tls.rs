//! rustls client configurations (ring provider) and the tonic channel that
//! uses them. tonic's own `ClientTlsConfig` cannot pin a CA by fingerprint,
//! which enrolment needs, so both enrolment and sessions go through one
//! small connector built on tokio-rustls.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use vigie_proto::tonic;

/// The crypto provider every Vigie TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate, lower-case hex (what enrolment tokens pin).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Trust exactly one CA, and present the agent's client certificate.
pub fn mtls_config(ca_der: &[u8], cert_der: &[u8], key_der: &[u8]) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .context("the saved CA certificate is not valid")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec()));
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(cert_der.to_vec())], key)
        .context("the saved agent certificate or key is not valid")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// For enrolment: accept the manager's certificate only if its chain holds
/// the CA whose SHA-256 the token pins, and the leaf verifies against it.
pub fn pinned_config(ca_sha256_hex: &str) -> Result<ClientConfig> {
    let pin = hex::decode(ca_sha256_hex).ok().filter(|p| p.len() == 32);
    let Some(pin) = pin else {
        bail!("the enrolment token's CA fingerprint is not 64 hex digits");
    };
    let verifier = PinnedCa {
        pin,
        provider: provider(),
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct PinnedCa {
    pin: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.pin.as_slice())
            .ok_or_else(|| {
                rustls::Error::General(
                    "the manager's CA does not match the fingerprint in the enrolment token".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(format!("pinned CA: {e}")))?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("pinned CA: {e}")))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Split `https://host:port` into host and port (default 8444).
pub fn host_port(url: &str) -> Result<(String, u16)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("manager URL {url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("https") | None => {}
        Some(other) => bail!("manager URL {url:?}: scheme {other} (expected https)"),
    }
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("manager URL {url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(8444)))
}

/// A gRPC channel to the manager over our own TLS configuration.
pub async fn channel(url: &str, config: ClientConfig) -> Result<Channel> {
    channel_marked(url, config, None).await
}

/// Open a TCP connection to `host:port`, giving the socket the mark `mark`
/// (`SO_MARK`) before it connects: the agent's isolation table lets marked
/// sockets through, whatever the manager's address is.
pub async fn connect_tcp(host: &str, port: u16, mark: Option<u32>) -> std::io::Result<TcpStream> {
    let Some(mark) = mark else {
        return TcpStream::connect((host, port)).await;
    };
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket2::SockRef::from(&sock).set_mark(mark)?;
        match sock.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )
    }))
}

/// [`channel`], with every socket marked `mark` (see [`connect_tcp`]).
pub async fn channel_marked(url: &str, config: ClientConfig, mark: Option<u32>) -> Result<Channel> {
    let (host, port) = host_port(url)?;
    let server_name = ServerName::try_from(host.clone())
        .with_context(|| format!("{host:?} is not a valid server name"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The scheme is http because TLS is done by the connector below.
    let endpoint = Endpoint::from_shared(format!("http://{}", authority(&host, port)))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let host = host.clone();
            async move {
                let tcp = connect_tcp(&host, port, mark).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .with_context(|| format!("connecting to the manager at {url}"))?;
    Ok(channel)
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

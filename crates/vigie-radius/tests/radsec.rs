//! Must show #4: a real TLS RADIUS client (Debian's radsecproxy, fed by
//! radclient over UDP) authenticates against our RadSec listener; and
//! RADIUS/1.1 (RFC 9765) on the same listener with a rustls client that
//! negotiates it by ALPN, with codes from oathtool.

mod common;
use common::*;
use rcgen::ExtendedKeyUsagePurpose;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, AlertDescription, ProtocolVersion};
use vigie_radius::CodeTransport;
use vigie_radius::packet::{self, Packet, attr, code};
use vigie_radius::radius11::{self, ALPN_1_0, ALPN_1_1};
use vigie_radius::radsec::{Radius11, RadsecOptions, acceptor, serve};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private CA, a server certificate for us and a client one for the
/// gateway, written to `d` (ca.pem, srv.pem/key, cli.pem/key).
fn write_certs(d: &Path) {
    let ca = TestCa::new("Vigie test CA");
    let (srv_pem, srv_key) = ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (cli_pem, cli_key) = ca.leaf("vpn-gw", ExtendedKeyUsagePurpose::ClientAuth);
    for (n, c) in [
        ("ca.pem", ca.pem()),
        ("srv.pem", srv_pem),
        ("srv.key", srv_key),
        ("cli.pem", cli_pem),
        ("cli.key", cli_key),
    ] {
        std::fs::write(d.join(n), c).unwrap();
    }
}

/// The RadSec listener task, stopped when dropped (also on failure).
struct Listener {
    port: u16,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(f: &Fixture, radius11: Radius11) -> Listener {
    let d = f.dir.path();
    let opts = RadsecOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: d.join("srv.pem"),
        key: d.join("srv.key"),
        client_ca: d.join("ca.pem"),
        radius11,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(serve(f.server.clone(), listener, acceptor(&opts).unwrap()));
    Listener { port, task }
}

/// A TLS connection from the gateway's certificate, offering `alpn`.
async fn connect(
    d: &Path,
    port: u16,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<TlsStream<TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(d.join("ca.pem")).unwrap())
        .unwrap();
    let chain = CertificateDer::pem_file_iter(d.join("cli.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(d.join("cli.key")).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// The alert a failed handshake received, if that is why it failed.
fn alert(e: &std::io::Error) -> Option<AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

/// Read one RADIUS packet; `None` when the server closed the connection.
async fn read_packet(s: &mut TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let read = async {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.ok()?;
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let mut buf = head.to_vec();
        buf.resize(len.max(4), 0);
        s.read_exact(&mut buf[4..]).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the server neither answered nor closed within 30 s")
}

/// Send one RADIUS/1.1 request and read the answer, checking its framing:
/// Reserved-1 zero, our Token echoed, Reserved-2 zero, no Message-Authenticator.
async fn exchange11(s: &mut TlsStream<TcpStream>, token: [u8; 4], req: Packet) -> Packet {
    s.write_all(&radius11::encode(req, token).unwrap())
        .await
        .unwrap();
    let raw = read_packet(s).await.expect("an answer");
    check11(&raw, token)
}

fn check11(raw: &[u8], token: [u8; 4]) -> Packet {
    assert_eq!(raw[1], 0, "Reserved-1");
    assert_eq!(&raw[4..8], &token, "Token echoed");
    assert_eq!(&raw[8..20], &[0; 12], "Reserved-2");
    let p = Packet::decode(raw).unwrap();
    assert!(
        p.get(attr::MESSAGE_AUTHENTICATOR).is_none(),
        "no Message-Authenticator in RADIUS/1.1"
    );
    p
}

fn access_request(user: &str, password: &[u8]) -> Packet {
    let mut p = Packet::new(code::ACCESS_REQUEST, 0, [0; 16]);
    p.push(attr::USER_NAME, user.as_bytes().to_vec());
    p.push(attr::USER_PASSWORD, password.to_vec());
    p.push(attr::CALLING_STATION_ID, b"198.51.100.7".to_vec());
    p
}

fn status_server() -> Packet {
    Packet::new(code::STATUS_SERVER, 0, [0; 16])
}

/// Historic RADIUS/TLS Status-Server (signed with the secret "radsec"): true
/// when answered with a valid Response Authenticator.
async fn status_server10(s: &mut TlsStream<TcpStream>) -> bool {
    let auth = [0x5a; 16];
    let req = packet::encode_signed_request(Packet::new(code::STATUS_SERVER, 7, auth), b"radsec")
        .unwrap();
    s.write_all(&req).await.unwrap();
    match read_packet(s).await {
        Some(raw) => raw[1] == 7 && packet::verify_response(&raw, &auth, b"radsec"),
        None => false,
    }
}

/// The reason of each authentication event so far (None for successes).
fn reasons(f: &Fixture) -> Vec<Option<String>> {
    f.events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.payload {
            vigie_event::Payload::Authentication(a) => Some(a.auth.reason.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radsecproxy_and_radius11_on_one_listener() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    let b32 = f.user("alice", "alice pw").await;
    let d = f.dir.path();
    write_certs(d);
    let l = listen(&f, Radius11::Allow).await;

    // RADIUS/1.1: password + code in clear inside TLS 1.3, no Message-Authenticator.
    let mut s = connect(d, l.port, &[ALPN_1_1], TLS13).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(ALPN_1_1));
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let code0 = oathtool(&b32, 0);
    let pw = format!("alice pw{code0}");
    let a = exchange11(&mut s, [0, 0, 0, 1], access_request("alice", pw.as_bytes())).await;
    assert_eq!(a.code, code::ACCESS_ACCEPT, "{a:?} {:?}", reasons(&f));
    // the same code again (new Token): a replay, rejected
    let a = exchange11(&mut s, [0, 0, 0, 2], access_request("alice", pw.as_bytes())).await;
    assert_eq!(a.code, code::ACCESS_REJECT);
    // a wrong code
    let wrong = format!(
        "alice pw{:06}",
        (code0.parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let a = exchange11(
        &mut s,
        [0, 0, 0, 3],
        access_request("alice", wrong.as_bytes()),
    )
    .await;
    assert_eq!(a.code, code::ACCESS_REJECT);
    assert_eq!(
        reasons(&f),
        vec![None, Some("code reused".into()), Some("wrong code".into())]
    );
    drop(s);

    // Historic RadSec on the same port: radsecproxy (no ALPN) fed by radclient.
    let udp_port = free_udp_port();
    let conf = format!(
        "ListenUDP 127.0.0.1:{udp_port}\n\
         LogLevel 3\n\
         LogDestination file://{d}/radsecproxy.log\n\
         tls default {{\n CACertificateFile {d}/ca.pem\n CertificateFile {d}/cli.pem\n CertificateKeyFile {d}/cli.key\n}}\n\
         client local {{\n host 127.0.0.1\n type udp\n secret local-secret-0123456789\n}}\n\
         server vigie {{\n host 127.0.0.1\n port {tls_port}\n type tls\n tls default\n CertificateNameCheck off\n secret radsec\n}}\n\
         realm * {{\n server vigie\n}}\n",
        d = d.display(),
        tls_port = l.port,
    );
    std::fs::write(d.join("radsecproxy.conf"), conf).unwrap();
    let _proxy = KillOnDrop(
        Command::new("radsecproxy")
            .args(["-f", "-c", d.join("radsecproxy.conf").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("radsecproxy must be installed"),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    let proxy: std::net::SocketAddr = format!("127.0.0.1:{udp_port}").parse().unwrap();
    let req = |pw: String| {
        format!("User-Name = \"alice\", User-Password = \"{pw}\", Message-Authenticator = 0x00")
    };
    let mut out = String::new();
    // radsecproxy may still be connecting: retry a few times.
    for _ in 0..5 {
        out = radclient(
            proxy,
            "auth",
            "local-secret-0123456789",
            &req(format!("alice pw{}", oathtool(&b32, 1))),
        )
        .await;
        if out.contains("Received ") {
            break;
        }
    }
    assert!(
        accepted(&out),
        "{out}\n{}",
        std::fs::read_to_string(d.join("radsecproxy.log")).unwrap_or_default()
    );
    let out = radclient(
        proxy,
        "auth",
        "local-secret-0123456789",
        &req(format!("wrong{}", oathtool(&b32, 1))),
    )
    .await;
    assert!(rejected(&out), "{out}");
    // (radclient may have retried while radsecproxy connected: a late copy
    // of the first request would be one more "code reused" event.)
    let r = reasons(&f);
    assert!(
        r[3..].contains(&None) && r.last() == Some(&Some("wrong password".into())),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_negotiation_allow_require_forbid() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    let d = f.dir.path();
    write_certs(d);

    let allow = listen(&f, Radius11::Allow).await;
    // Only a protocol we do not speak: refused at the handshake.
    let e = connect(d, allow.port, &[b"radius/2.0"], TLS13)
        .await
        .expect_err("radius/2.0 must be refused");
    assert_eq!(
        alert(&e),
        Some(AlertDescription::NoApplicationProtocol),
        "{e}"
    );
    // No ALPN, or radius/1.0: historic RadSec (shared secret "radsec").
    for alpn in [&[][..], &[ALPN_1_0][..]] {
        let mut s = connect(d, allow.port, alpn, TLS13).await.unwrap();
        assert_eq!(s.get_ref().1.alpn_protocol(), alpn.first().copied());
        assert!(status_server10(&mut s).await, "{alpn:?}");
    }
    // Both offered: the server picks radius/1.1.
    let mut s = connect(d, allow.port, &[ALPN_1_0, ALPN_1_1], TLS13)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(ALPN_1_1));
    let a = exchange11(&mut s, [9, 9, 9, 9], status_server()).await;
    assert_eq!(a.code, code::ACCESS_ACCEPT);
    // radius/1.1 over TLS 1.2 is not RADIUS/1.1 (RFC 9765 needs TLS 1.3): closed.
    let mut s = connect(d, allow.port, &[ALPN_1_1], TLS12).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(ALPN_1_1));
    let _ = s
        .write_all(&radius11::encode(status_server(), [1; 4]).unwrap())
        .await;
    assert_eq!(read_packet(&mut s).await, None);

    let require = listen(&f, Radius11::Require).await;
    let e = connect(d, require.port, &[ALPN_1_0], TLS13)
        .await
        .expect_err("radius/1.0 refused when RADIUS/1.1 is required");
    assert_eq!(
        alert(&e),
        Some(AlertDescription::NoApplicationProtocol),
        "{e}"
    );
    // No ALPN: a Protocol-Error (Error-Cause 406) in the tunnel, then closed.
    let mut s = connect(d, require.port, &[], TLS13).await.unwrap();
    let raw = read_packet(&mut s).await.expect("a Protocol-Error");
    let p = Packet::decode(&raw).unwrap();
    assert_eq!((p.code, p.get_u32(radius11::ERROR_CAUSE)), (52, Some(406)));
    assert_eq!(read_packet(&mut s).await, None);
    assert!(
        connect(d, require.port, &[ALPN_1_1], TLS12).await.is_err(),
        "TLS 1.2 refused when RADIUS/1.1 is required"
    );
    let mut s = connect(d, require.port, &[ALPN_1_1], TLS13).await.unwrap();
    let a = exchange11(&mut s, [0, 0, 0, 0], status_server()).await;
    assert_eq!(a.code, code::ACCESS_ACCEPT);

    let forbid = listen(&f, Radius11::Forbid).await;
    let e = connect(d, forbid.port, &[ALPN_1_1], TLS13)
        .await
        .expect_err("radius/1.1 refused when forbidden");
    assert_eq!(
        alert(&e),
        Some(AlertDescription::NoApplicationProtocol),
        "{e}"
    );
    let mut s = connect(d, forbid.port, &[ALPN_1_1, ALPN_1_0], TLS13)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(ALPN_1_0));
    assert!(status_server10(&mut s).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius11_tokens_duplicates_and_hostile_input() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    let b32 = f.user("bob", "bob pw").await;
    let d = f.dir.path();
    write_certs(d);
    let l = listen(&f, Radius11::Allow).await;
    let mut s = connect(d, l.port, &[ALPN_1_1], TLS13).await.unwrap();

    // A request sent twice with one Token is processed once: same answer,
    // one event, the code not burnt by the duplicate.
    let pw = format!("bob pw,{}", oathtool(&b32, 0));
    let req = radius11::encode(access_request("bob", pw.as_bytes()), [0xca, 0xfe, 0, 1]).unwrap();
    s.write_all(&req).await.unwrap();
    let first = read_packet(&mut s).await.unwrap();
    assert_eq!(
        check11(&first, [0xca, 0xfe, 0, 1]).code,
        code::ACCESS_ACCEPT
    );
    s.write_all(&req).await.unwrap();
    assert_eq!(read_packet(&mut s).await.unwrap(), first);
    assert_eq!(reasons(&f), vec![None]);

    // Pipelined requests: each answer carries its request's Token.
    let mut two = radius11::encode(status_server(), [0, 0, 0, 2]).unwrap();
    two.extend(radius11::encode(access_request("bob", b"bob pw,000000"), [0, 0, 0, 3]).unwrap());
    s.write_all(&two).await.unwrap();
    let mut codes = std::collections::HashMap::new();
    for _ in 0..2 {
        let raw = read_packet(&mut s).await.unwrap();
        codes.insert(raw[4..8].to_vec(), raw[0]);
    }
    assert_eq!(codes[&vec![0, 0, 0, 2]], code::ACCESS_ACCEPT);
    assert_eq!(codes[&vec![0, 0, 0, 3]], code::ACCESS_REJECT);

    // Requests run side by side: a slow one (a first password check, argon2)
    // does not hold up a Status-Server sent after it; its duplicate, sent
    // while it is still being processed, is not processed again nor answered
    // twice.
    f.user("erin", "erin pw").await;
    let slow = radius11::encode(access_request("erin", b"wrong,123456"), [0, 0, 0, 0x10]).unwrap();
    let mut burst = slow.clone();
    burst.extend(&slow);
    burst.extend(radius11::encode(status_server(), [0, 0, 0, 0x11]).unwrap());
    s.write_all(&burst).await.unwrap();
    let first = read_packet(&mut s).await.unwrap();
    assert_eq!(
        &first[4..8],
        &[0, 0, 0, 0x11],
        "Status-Server answered first"
    );
    let second = read_packet(&mut s).await.unwrap();
    assert_eq!(check11(&second, [0, 0, 0, 0x10]).code, code::ACCESS_REJECT);
    let a = exchange11(&mut s, [0, 0, 0, 0x12], status_server()).await;
    assert_eq!(
        a.code,
        code::ACCESS_ACCEPT,
        "no second answer to the duplicate"
    );
    let wrong = reasons(&f)
        .iter()
        .filter(|r| r.as_deref() == Some("wrong password"))
        .count();
    assert_eq!(wrong, 1, "the duplicate was not processed");

    // A Message-Authenticator (garbage) and an Original-Packet-Code are
    // ignored, not a reason to drop the request (RFC 9765 §5.2, §5.4).
    let mut p = status_server();
    p.push(attr::MESSAGE_AUTHENTICATOR, vec![0xee; 16]);
    p.push(241, vec![4, 0, 0, 0, 1]);
    let a = exchange11(&mut s, [0, 0, 0, 4], p).await;
    assert_eq!(a.code, code::ACCESS_ACCEPT);

    // User-Password must be 1..=128 octets.
    let a = exchange11(&mut s, [0, 0, 0, 5], access_request("bob", b"")).await;
    assert_eq!(a.code, code::ACCESS_REJECT);
    assert_eq!(
        reasons(&f).last().unwrap().as_deref(),
        Some("malformed User-Password")
    );

    // Accounting: no Request Authenticator to check any more.
    let mut acct = Packet::new(code::ACCOUNTING_REQUEST, 0, [0; 16]);
    acct.push(attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes().to_vec());
    acct.push(attr::ACCT_SESSION_ID, b"s-11".to_vec());
    acct.push(attr::USER_NAME, b"bob".to_vec());
    let a = exchange11(&mut s, [0, 0, 0, 6], acct).await;
    assert_eq!(a.code, code::ACCOUNTING_RESPONSE);
    let sessions = f.store.list_sessions().await.unwrap();
    assert!(
        sessions.iter().any(|x| x.session_id == "s-11"),
        "{sessions:?}"
    );

    // A malformed packet (an attribute runs past the end) is dropped, and
    // the connection goes on.
    let mut bad = radius11::encode(status_server(), [0, 0, 0, 7]).unwrap();
    bad.extend_from_slice(&[attr::REPLY_MESSAGE, 40, b'x']);
    let len = bad.len() as u16;
    bad[2..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&bad).await.unwrap();
    let a = exchange11(&mut s, [0, 0, 0, 8], status_server()).await;
    assert_eq!(a.code, code::ACCESS_ACCEPT);

    // A length below 20 cannot be resynchronised: closed.
    s.write_all(&[code::STATUS_SERVER, 0, 0, 5]).await.unwrap();
    assert_eq!(read_packet(&mut s).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius11_access_challenge_round_trip() {
    let f = fixture(CodeTransport::Challenge, true, common::config()).await;
    let b32 = f.user("dave", "dave pw").await;
    let d = f.dir.path();
    write_certs(d);
    let l = listen(&f, Radius11::Require).await;
    let mut s = connect(d, l.port, &[ALPN_1_1], TLS13).await.unwrap();

    // The password alone: an Access-Challenge with a State, Token echoed.
    let c = exchange11(&mut s, [7, 0, 0, 1], access_request("dave", b"dave pw")).await;
    assert_eq!(c.code, code::ACCESS_CHALLENGE, "{:?}", reasons(&f));
    let state = c.get(attr::STATE).expect("a State").to_vec();
    // The code with that State: accepted; the State is single-use.
    let mut answer = access_request("dave", oathtool(&b32, 0).as_bytes());
    answer.push(attr::STATE, state.clone());
    let a = exchange11(&mut s, [7, 0, 0, 2], answer.clone()).await;
    assert_eq!(a.code, code::ACCESS_ACCEPT, "{:?}", reasons(&f));
    let a = exchange11(&mut s, [7, 0, 0, 3], answer).await;
    assert_eq!(a.code, code::ACCESS_REJECT);
    assert_eq!(
        reasons(&f),
        vec![None, Some("invalid or expired challenge".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius10_requests_run_side_by_side() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    f.user("erin", "erin pw").await;
    let d = f.dir.path();
    write_certs(d);
    let l = listen(&f, Radius11::Allow).await;
    // Historic RadSec (no ALPN): one connection carries every user of a
    // gateway, so a slow request (a first password check: argon2) must not
    // hold up a Status-Server sent after it on the same connection.
    let mut s = connect(d, l.port, &[], TLS13).await.unwrap();
    let slow_auth = [0x11; 16];
    let mut slow = Packet::new(code::ACCESS_REQUEST, 1, slow_auth);
    slow.push(attr::USER_NAME, b"erin".to_vec());
    slow.push(
        attr::USER_PASSWORD,
        packet::hide_password(b"wrong,123456", b"radsec", &slow_auth),
    );
    let mut burst = packet::encode_signed_request(slow, b"radsec").unwrap();
    let fast_auth = [0x22; 16];
    burst.extend(
        packet::encode_signed_request(Packet::new(code::STATUS_SERVER, 2, fast_auth), b"radsec")
            .unwrap(),
    );
    s.write_all(&burst).await.unwrap();
    let first = read_packet(&mut s).await.unwrap();
    assert_eq!(first[1], 2, "the Status-Server is answered first");
    assert!(packet::verify_response(&first, &fast_auth, b"radsec"));
    let second = read_packet(&mut s).await.unwrap();
    assert_eq!((second[0], second[1]), (code::ACCESS_REJECT, 1));
    assert!(packet::verify_response(&second, &slow_auth, b"radsec"));
    assert_eq!(reasons(&f), vec![Some("wrong password".into())]);
}

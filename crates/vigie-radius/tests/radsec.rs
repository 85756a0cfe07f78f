//! Must show #4: a real TLS RADIUS client (Debian's radsecproxy, fed by
//! radclient over UDP) authenticates against our RadSec listener.

mod common;
use common::*;
use rcgen::ExtendedKeyUsagePurpose;
use std::process::{Command, Stdio};
use std::time::Duration;
use vigie_radius::radsec::{RadsecOptions, acceptor, serve};
use vigie_radius::{CodeTransport, Config};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radsecproxy_authenticates_over_tls() {
    let f = fixture(CodeTransport::Append, true, Config::default()).await;
    let b32 = f.user("alice", "alice pw").await;
    let d = f.dir.path();

    // A private CA, a server certificate for us, a client one for radsecproxy.
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

    let opts = RadsecOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: d.join("srv.pem"),
        key: d.join("srv.key"),
        client_ca: d.join("ca.pem"),
    };
    let listener = tokio::net::TcpListener::bind(opts.listen).await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(serve(f.server.clone(), listener, acceptor(&opts).unwrap()));
    struct Abort(tokio::task::JoinHandle<anyhow::Result<()>>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _task = Abort(task);

    let udp_port = free_udp_port();
    let conf = format!(
        "ListenUDP 127.0.0.1:{udp_port}\n\
         LogLevel 3\n\
         LogDestination file://{d}/radsecproxy.log\n\
         tls default {{\n CACertificateFile {d}/ca.pem\n CertificateFile {d}/cli.pem\n CertificateKeyFile {d}/cli.key\n}}\n\
         client local {{\n host 127.0.0.1\n type udp\n secret local-secret-0123456789\n}}\n\
         server vigie {{\n host 127.0.0.1\n port {tls_port}\n type tls\n tls default\n CertificateNameCheck off\n secret radsec\n}}\n\
         realm * {{\n server vigie\n}}\n",
        d = d.display()
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
            &req(format!("alice pw{}", oathtool(&b32, 0))),
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
    // the attempts reached our server (events carry the NAS name)
    let outcomes: Vec<&str> = f
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| match &e.payload {
            vigie_event::Payload::Authentication(a) => a.outcome.as_str(),
            _ => "other",
        })
        .collect();
    assert!(
        outcomes.contains(&"success") && outcomes.last() == Some(&"failure"),
        "{outcomes:?}"
    );
}

//! Must show #5: a real VPN end to end. An OpenVPN server and an OpenVPN
//! client run in two network namespaces made here (joined by a veth pair);
//! the server asks Vigie over RADIUS (Debian's openvpn-auth-radius plugin)
//! and Vigie serves inside the server's namespace. The tunnel comes up with
//! password + TOTP (from oathtool) and stays down without the code, with a
//! wrong code, and with a replayed one.

mod common;
use common::*;
use rcgen::ExtendedKeyUsagePurpose;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vigie_radius::{CodeTransport, Config};

const PLUGIN: &str = "/usr/lib/openvpn/radiusplugin.so";

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair: the VPN server at 10.213.0.1, the
/// client at 10.213.0.2. Drop kills what runs in them and deletes them, also
/// when the test fails.
struct Net {
    server: String,
    client: String,
}

impl Net {
    fn new() -> Net {
        let id = std::process::id();
        let net = Net {
            server: format!("vovs{id}"),
            client: format!("vovc{id}"),
        };
        for ns in [&net.server, &net.client] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &net.server,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &net.client,
        ]);
        for (ns, addr) in [
            (&net.server, "10.213.0.1/24"),
            (&net.client, "10.213.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            // Only processes this test started run in namespaces it made
            // (the OpenVPN daemons and the plugin's helpers).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A UDP socket bound to 127.0.0.1:1812 inside namespace `ns` (a socket keeps
/// the namespace it was made in; the thread that entered it ends right away).
/// The namespace is ours, so the standard port is free; openvpn-auth-radius
/// reads at most 4 digits of a port number anyway (18999 becomes 1899).
fn udp_socket_in(ns: &str) -> std::net::UdpSocket {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::UdpSocket::bind("127.0.0.1:1812").unwrap()
    })
    .join()
    .unwrap()
}

fn openvpn(ns: &str, conf: &Path, log: &Path) -> KillOnDrop {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "openvpn", "--config"])
        .arg(conf)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("openvpn (Debian package) must be installed");
    KillOnDrop(child)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Wait until `log` shows one of `marks`; returns the first found.
fn wait_for(log: &Path, marks: &[&'static str], secs: u64) -> Option<&'static str> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        let text = read(log);
        if let Some(m) = marks.iter().find(|m| text.contains(**m)) {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

const UP: &str = "Initialization Sequence Completed";
const DENIED: &str = "AUTH_FAILED";

/// Connect a client with this password field; returns the mark seen and the
/// client (kept running while the caller checks the tunnel).
fn connect(
    net: &Net,
    dir: &Path,
    n: u32,
    password: &str,
) -> (Option<&'static str>, KillOnDrop, PathBuf) {
    let creds = dir.join(format!("creds{n}"));
    std::fs::write(&creds, format!("alice\n{password}\n")).unwrap();
    let conf = dir.join(format!("client{n}.conf"));
    std::fs::write(
        &conf,
        format!(
            "client\ndev tun\nproto udp\nremote 10.213.0.1 1194\nnobind\ndisable-dco\n\
             ca {ca}\nauth-user-pass {creds}\nauth-retry none\nconnect-retry-max 1\n\
             resolv-retry 0\nverb 3\n",
            ca = dir.join("ca.pem").display(),
            creds = creds.display()
        ),
    )
    .unwrap();
    let log = dir.join(format!("client{n}.log"));
    let d = openvpn(&net.client, &conf, &log);
    (wait_for(&log, &[UP, DENIED], 40), d, log)
}

/// One client connection; asserts the tunnel is up (and carries traffic) or
/// refused, then disconnects.
fn attempt(net: &Net, d: &Path, n: u32, password: &str, want_up: bool) {
    let (mark, client, log) = connect(net, d, n, password);
    let what = format!(
        "attempt {n}: {mark:?}\n--- client:\n{}\n--- server:\n{}",
        read(&log),
        read(&d.join("server.log"))
    );
    if want_up {
        assert_eq!(mark, Some(UP), "{what}");
        assert!(tunnel_ping(net), "no traffic through the tunnel\n{what}");
    } else {
        assert_eq!(mark, Some(DENIED), "{what}");
        assert!(!tunnel_ping(net), "tunnel up without a valid code\n{what}");
    }
    drop(client);
}

fn tunnel_ping(net: &Net) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.client,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.214.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openvpn_tunnel_needs_password_and_totp() {
    assert!(
        Path::new(PLUGIN).exists(),
        "{PLUGIN} missing: apt-get install openvpn-auth-radius"
    );
    // Vigie's own log (drops and decisions) shows in the output of a failure.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let net = Net::new();
    let sock = udp_socket_in(&net.server);
    let port = sock.local_addr().unwrap().port();
    // openvpn-auth-radius 2.1 does not send Message-Authenticator: this NAS
    // uses the per-client legacy exception (requests with Proxy-State and no
    // Message-Authenticator are still dropped).
    let f = fixture_on(sock, CodeTransport::Append, false, Config::default(), None).await;
    let b32 = f.user("alice", "alice vpn pw").await;
    let d = f.dir.path().to_path_buf();

    // PKI for the TLS channel: a CA and the server's certificate (the client
    // authenticates by password + code only).
    let ca = TestCa::new("Vigie VPN test CA");
    let (srv_pem, srv_key) = ca.leaf("vpn-server", ExtendedKeyUsagePurpose::ServerAuth);
    std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(d.join("server.pem"), srv_pem).unwrap();
    std::fs::write(d.join("server.key"), srv_key).unwrap();

    let server_conf = d.join("server.conf");
    std::fs::write(
        d.join("radiusplugin.cnf"),
        format!(
            "NAS-Identifier=vigie-test-vpn\nService-Type=5\nFramed-Protocol=1\nNAS-Port-Type=5\n\
             NAS-IP-Address=127.0.0.1\nOpenVPNConfig={conf}\nsubnet=255.255.255.0\n\
             overwriteccfiles=false\n\
             server\n{{\n\tacctport={port}\n\tauthport={port}\n\tname=127.0.0.1\n\tretry=2\n\twait=3\n\tsharedsecret={SECRET}\n}}\n",
            conf = server_conf.display()
        ),
    )
    .unwrap();
    std::fs::write(
        &server_conf,
        format!(
            "dev tun\nproto udp\nlocal 10.213.0.1\nport 1194\ntopology subnet\n\
             server 10.214.0.0 255.255.255.0\ndisable-dco\n\
             ca {d}/ca.pem\ncert {d}/server.pem\nkey {d}/server.key\ndh none\n\
             verify-client-cert none\nusername-as-common-name\n\
             plugin {PLUGIN} {d}/radiusplugin.cnf\nstatus {d}/status.log 1\nverb 3\n",
            d = d.display()
        ),
    )
    .unwrap();
    let server_log = d.join("server.log");
    let _server = openvpn(&net.server, &server_conf, &server_log);
    assert_eq!(
        wait_for(&server_log, &[UP], 30),
        Some(UP),
        "OpenVPN server did not start:\n{}",
        read(&server_log)
    );

    // Blocking waits run on this worker thread; the RADIUS server keeps the other.
    let code = oathtool(&b32, 0);
    tokio::task::block_in_place(|| {
        attempt(&net, &d, 1, "alice vpn pw", false); // no code
        attempt(&net, &d, 2, "alice vpn pw000000", false); // wrong code
        attempt(&net, &d, 3, &format!("alice vpn pw{code}"), true);
        attempt(&net, &d, 4, &format!("alice vpn pw{code}"), false); // replayed
    });

    let reasons: Vec<String> = f
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match &e.payload {
            vigie_event::Payload::Authentication(a) => Some(format!(
                "{}:{}",
                a.outcome.as_str(),
                a.auth.reason.clone().unwrap_or_default()
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "failure:code missing",
            "failure:wrong code",
            "success:",
            "failure:code reused"
        ],
        "{reasons:?}"
    );
    // The plugin's Accounting-Request Start became a VPN session record.
    let sessions = f.store.list_sessions().await.unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s.user_name == "alice" && s.client_ip.as_deref() == Some("10.213.0.2")),
        "{sessions:?}"
    );
}

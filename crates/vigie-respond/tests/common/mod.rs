//! Test scaffolding shared by the integration tests: network namespaces made
//! and removed by the test (Drop guards), servers bound inside them, clients
//! run from a thread that entered a namespace.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Run a command, panic with its stderr if it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn run_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Namespaces "endpoint", "manager", "outside" on one bridge (in a fourth
/// namespace, "lan"), with IPv4 10.77.0.{1,2,3}/24 and IPv6 fd77::{1,2,3}/64.
/// Dropping it deletes every namespace it made, also when the test panics.
pub struct Lab {
    pub endpoint: String,
    pub manager: String,
    pub outside: String,
    pub lan: String,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        let id = format!("{}{}", tag, std::process::id());
        let lab = Lab {
            endpoint: format!("ve{id}"),
            manager: format!("vm{id}"),
            outside: format!("vo{id}"),
            lan: format!("vl{id}"),
        };
        for ns in lab.all() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&["ip", "-n", &lab.lan, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &lab.lan, "link", "set", "br0", "up"]);
        for (i, ns) in [&lab.endpoint, &lab.manager, &lab.outside]
            .iter()
            .enumerate()
        {
            let n = i + 1;
            let port = format!("p{n}");
            run(&[
                "ip", "-n", &lab.lan, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ]);
            run(&[
                "ip", "-n", &lab.lan, "link", "set", &port, "master", "br0", "up",
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.77.0.{n}/24"),
                "dev",
                "eth0",
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("fd77::{n}/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            run(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        }
        // Links come up asynchronously: wait until the endpoint reaches the
        // others, so a slow machine does not fail the "before" checks.
        for ip in ["10.77.0.2", "10.77.0.3", "fd77::2", "fd77::3"] {
            let t0 = std::time::Instant::now();
            while !ping_ok(&lab.endpoint, ip) {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "lab network not up: {ip}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        lab
    }

    pub fn all(&self) -> [&str; 4] {
        [&self.endpoint, &self.manager, &self.outside, &self.lan]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.all() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Run `f` on a thread that has entered network namespace `ns` (a netns is
/// per thread, so the rest of the test process is unaffected; sockets made
/// there stay in that namespace, and commands spawned from it run there).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// In namespace `ns`: TCP echo on 7000, UDP echo on 7001 and 53, dual-stack.
pub fn start_servers(ns: &str) {
    in_ns(ns, || {
        let tcp = TcpListener::bind("[::]:7000").expect("bind tcp");
        let udp = UdpSocket::bind("[::]:7001").expect("bind udp");
        let dns = UdpSocket::bind("[::]:53").expect("bind dns");
        std::thread::spawn(move || {
            for s in tcp.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 512];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        for u in [udp, dns] {
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok((n, from)) = u.recv_from(&mut buf) {
                    let _ = u.send_to(&buf[..n], from);
                }
            });
        }
    });
}

// Generous for a loaded machine; blocked cases fail at once (EPERM on output).
const T: Duration = Duration::from_millis(1500);

/// TCP connect + echo round trip.
pub fn tcp_ok(ns: &str, addr: &str, marked: bool) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    in_ns(ns, move || {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        if marked {
            sock.set_mark(vigie_respond::AGENT_MARK).unwrap();
        }
        if sock.connect_timeout(&addr.into(), T).is_err() {
            return false;
        }
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(T)).unwrap();
        echo(&mut s)
    })
}

pub fn echo(s: &mut TcpStream) -> bool {
    if s.write_all(b"ping").is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// UDP datagram + echo.
pub fn udp_ok(ns: &str, addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    in_ns(ns, move || {
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let u = UdpSocket::bind(bind).unwrap();
        u.set_read_timeout(Some(T)).unwrap();
        if u.send_to(b"q", addr).is_err() {
            return false;
        }
        let mut buf = [0u8; 8];
        matches!(u.recv_from(&mut buf), Ok((1, _)))
    })
}

pub fn ping_ok(ns: &str, ip: &str) -> bool {
    run_ok(&["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", ip])
}

/// A connected TCP stream made in `ns`.
pub fn tcp_open(ns: &str, addr: &str, marked: bool) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    in_ns(ns, move || {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        if marked {
            sock.set_mark(vigie_respond::AGENT_MARK).unwrap();
        }
        sock.connect_timeout(&addr.into(), T).expect("connect");
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(T)).unwrap();
        s
    })
}

/// Kill a child process on drop.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

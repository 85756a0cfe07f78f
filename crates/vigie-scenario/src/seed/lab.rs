//! The small public body's network, built from network namespaces, and the
//! processes started in it. Everything made here is removed by `Drop`
//! (namespaces, and with them their links, bridge and nftables tables;
//! processes), also on error or interruption. Nothing touches the root
//! namespace's network configuration.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub const GW_LAN: &str = "10.20.0.1";
pub const MANAGER: &str = "10.20.0.2";
pub const FILESERVER: &str = "10.20.0.10";
pub const WORKSTATION: &str = "10.20.0.11";
pub const GW_WAN: &str = "198.51.100.1";
pub const ATTACKER: &str = "198.51.100.66";

/// Runs `ip ARGS`, failing with its error output.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// An open handle on a named network namespace (/run/netns/NAME).
#[derive(Clone)]
pub struct Netns {
    pub name: String,
    file: Arc<File>,
}

impl Netns {
    fn open(name: &str) -> Result<Netns> {
        let file = File::open(format!("/run/netns/{name}"))
            .with_context(|| format!("opening network namespace {name}"))?;
        Ok(Netns {
            name: name.to_string(),
            file: Arc::new(file),
        })
    }

    /// `program` to be run inside this namespace (setns in the child before
    /// exec, so no `ip netns exec` process shows up in the sensors), killed
    /// if this process dies. Spawn long-lived children from the main thread:
    /// the death signal follows the thread that forks.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command_host(program, None)
    }

    /// Same, in a new UTS namespace named `hostname` (so each agent reports
    /// its own host name to the manager).
    pub fn command_host(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        hostname: Option<&str>,
    ) -> Command {
        let fd = self.file.as_raw_fd();
        let host = hostname.map(|h| h.as_bytes().to_vec());
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(h) = &host
                    && (libc::unshare(libc::CLONE_NEWUTS) != 0
                        || libc::sethostname(h.as_ptr().cast(), h.len()) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd
    }

    /// Runs `f` on a thread that entered this namespace (sockets made there
    /// stay in it).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let file = self.file.clone();
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a valid descriptor.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow::anyhow!(
                    "setns: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    }

    /// A TCP connection from this namespace, or the error after `timeout`.
    pub fn connect(&self, to: &str, timeout: Duration) -> Result<TcpStream> {
        let addr: SocketAddr = to.parse()?;
        self.run(move || TcpStream::connect_timeout(&addr, timeout))?
            .with_context(|| format!("connecting to {to}"))
    }

    /// True when this namespace opens a TCP connection to `to` and gets its
    /// line echoed back within `timeout`.
    pub fn echo_ok(&self, to: &str, timeout: Duration) -> bool {
        self.connect(to, timeout)
            .is_ok_and(|mut s| echo(&mut s, timeout))
    }
}

/// Sends a line and waits for it to come back.
pub fn echo(s: &mut TcpStream, timeout: Duration) -> bool {
    let _ = s.set_read_timeout(Some(timeout));
    if s.write_all(b"ping\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"ping\n"
}

/// An echo service listening in `ns` on `addr` (the file server's share, as
/// far as the network can tell), served by detached threads.
pub fn echo_server(ns: &Netns, addr: &str) -> Result<()> {
    let addr: SocketAddr = addr.parse()?;
    let listener = ns.run(move || TcpListener::bind(addr))??;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

/// The namespaces: a LAN switch (a bridge in its own namespace), the VPN
/// gateway (LAN ↔ outside router, RADIUS client), the manager, the file
/// server, the workstation, and the attacker outside.
pub struct Lab {
    pub lan: Netns,
    pub gateway: Netns,
    pub manager: Netns,
    pub fileserver: Netns,
    pub workstation: Netns,
    pub attacker: Netns,
    made: Vec<String>,
}

/// Deletes the namespaces it holds when dropped.
struct Made(Vec<String>);

impl Drop for Made {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Lab {
    pub fn new() -> Result<Lab> {
        let pid = std::process::id();
        let mut made = Made(Vec::new());
        let mut make = |role: &str| -> Result<Netns> {
            let name = format!("vs{pid}{role}");
            ip(&["netns", "add", &name])?;
            made.0.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            Netns::open(&name)
        };
        let lan = make("lan")?;
        let gateway = make("gw")?;
        let manager = make("mgr")?;
        let fileserver = make("fs")?;
        let workstation = make("ws")?;
        let attacker = make("att")?;
        let l = lan.name.as_str();
        ip(&["-n", l, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", l, "link", "set", "br0", "up"])?;
        for (i, (ns, addr)) in [
            (&gateway, GW_LAN),
            (&manager, MANAGER),
            (&fileserver, FILESERVER),
            (&workstation, WORKSTATION),
        ]
        .into_iter()
        .enumerate()
        {
            let port = format!("p{i}");
            let n = ns.name.as_str();
            ip(&[
                "-n", l, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", n,
            ])?;
            ip(&["-n", l, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&["-n", n, "link", "set", "eth0", "up"])?;
            if addr != GW_LAN {
                ip(&["-n", n, "route", "add", "default", "via", GW_LAN])?;
            }
        }
        let (g, a) = (gateway.name.as_str(), attacker.name.as_str());
        ip(&[
            "-n", g, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", a,
        ])?;
        ip(&[
            "-n",
            g,
            "addr",
            "add",
            &format!("{GW_WAN}/24"),
            "dev",
            "wan0",
        ])?;
        ip(&["-n", g, "link", "set", "wan0", "up"])?;
        ip(&[
            "-n",
            a,
            "addr",
            "add",
            &format!("{ATTACKER}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", a, "link", "set", "eth0", "up"])?;
        ip(&["-n", a, "route", "add", "default", "via", GW_WAN])?;
        // The gateway routes between the LAN and the outside (per-namespace sysctl).
        let st = gateway
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"])
            .status()
            .context("sysctl")?;
        if !st.success() {
            bail!("cannot enable forwarding in the gateway's namespace");
        }
        let lab = Lab {
            lan,
            gateway,
            manager,
            fileserver,
            workstation,
            attacker,
            made: std::mem::take(&mut made.0),
        };
        // Links come up asynchronously: wait for the file server to reach
        // the attacker through the gateway.
        let t0 = Instant::now();
        while !lab.ping(&lab.fileserver, ATTACKER) {
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("the lab network did not come up in 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(lab)
    }

    fn ping(&self, from: &Netns, to: &str) -> bool {
        from.command("ping")
            .args(["-c1", "-W1", "-q", to])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn names(&self) -> &[String] {
        &self.made
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(Made(std::mem::take(&mut self.made)));
    }
}

/// A process of the scenario: SIGTERM, then SIGKILL after 5 s, on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Proc> {
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
        })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.alive() {
            return;
        }
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Output file for a process's standard output or error.
pub fn log_file(dir: &Path, name: &str) -> Result<Stdio> {
    let f = File::create(dir.join(name))
        .with_context(|| format!("creating {}", dir.join(name).display()))?;
    Ok(Stdio::from(f))
}

//! Shared helpers for the root integration tests: start a real sensor and
//! wait for events matching a predicate.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use vigie_event::{Event, Payload};
use vigie_sensor::{Sensor, SensorConfig};

pub struct Harness {
    pub sensor: Option<Sensor>,
    pub rx: Receiver<Event>,
    pub seen: Vec<Event>,
}

impl Harness {
    pub fn start(cfg: SensorConfig) -> Harness {
        Self::start_with_channel(cfg, 1 << 16)
    }

    /// With a channel of `cap` events (small: the consumer falls behind fast).
    pub fn start_with_channel(cfg: SensorConfig, cap: usize) -> Harness {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests load eBPF programs and must run as root"
        );
        let (tx, rx) = sync_channel(cap);
        let sensor = Sensor::start(cfg, tx).expect("sensor starts");
        Harness {
            sensor: Some(sensor),
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `timeout`) for an event matching `pred`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return Some(e.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(e) => {
                    let hit = pred(&e);
                    self.seen.push(e.clone());
                    if hit {
                        return Some(e);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Everything received within `d`.
    pub fn drain_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(e) = self.rx.recv_timeout(left) {
                self.seen.push(e);
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(s) = self.sensor.take() {
            // The sensor thread may be blocked sending to a full channel
            // (tests with a small one stop reading): keep reading while it
            // stops, or the join in stop() never returns.
            let stopper = std::thread::spawn(move || s.stop());
            while !stopper.is_finished() {
                let _ = self.rx.recv_timeout(Duration::from_millis(10));
            }
            let _ = stopper.join();
        }
    }
}

/// The default configuration, but the test process's own events are kept.
pub fn cfg() -> SensorConfig {
    SensorConfig {
        ignore_self: false,
        ..SensorConfig::default()
    }
}

pub fn is_exec_of(e: &Event, pid: u32) -> bool {
    matches!(&e.payload, Payload::Process(p) if p.action == vigie_event::ProcessAction::Exec && p.process.pid == pid)
}

/// A network namespace `vigie-<tag>-<pid>` with loopback up, deleted on
/// drop (also when the test panics).
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("vigie-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(ok.success(), "ip netns add {name}");
        let ns = Netns(name);
        let ok = Command::new("ip")
            .args(["-n", &ns.0, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(ok.success());
        ns
    }

    /// The namespace's inode (`net:[N]` of its processes).
    pub fn inode(&self) -> u32 {
        std::fs::metadata(format!("/run/netns/{}", self.0))
            .unwrap()
            .ino() as u32
    }

    /// Moves the calling thread (only) into the namespace.
    pub fn enter(&self) {
        enter_netns(&self.0);
    }
}

/// `sh -c SCRIPT` in namespace `ns` (with `ip netns exec`; None: the root
/// namespace), input and output to /dev/null.
pub fn sh_command(ns: Option<&Netns>, script: &str) -> Command {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.0, "sh", "-c", script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    };
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    c
}

/// Moves the calling thread (only) into network namespace `name`.
pub fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    assert_eq!(
        unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
        0,
        "setns {name}"
    );
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

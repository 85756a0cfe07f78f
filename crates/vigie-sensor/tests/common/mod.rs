//! Shared helpers for the root integration tests: start a real sensor and
//! wait for events matching a predicate.
#![allow(dead_code)]

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
            let _ = s.stop();
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

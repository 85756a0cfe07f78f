//! vigie-sensor: the agent's eyes on Linux. It turns what processes do into
//! typed [`vigie_event::Event`]s and decides nothing.
//!
//! * eBPF programs in C (`src/bpf/vigie.bpf.c`, CO-RE against the committed
//!   `vmlinux.h`) on tracepoints: `sched_process_exec/fork/exit`, and the
//!   `sys_exit_*` tracepoints of the file, network, DNS, credential, ptrace
//!   and kernel-integrity syscalls (arguments read from the registers saved
//!   at entry), with one ring buffer to user space and per-kind loss
//!   counters reported as health events.
//! * A process table (seeded from /proc) gives every event its parent and
//!   ancestors; executables are hashed (SHA-256) in user space, cached by
//!   (device, inode, mtime, size).
//! * A fallback sensor (netlink proc connector + fanotify) runs when eBPF
//!   cannot load, reported as degraded mode.
//!
//! * A scope ([`Scope`]): the whole machine, or only the processes of the
//!   sensor's own network namespace (namespace inode read in the kernel per
//!   event, `process.vigie.netns`).
//!
//! Main types: [`SensorConfig`] (TOML-friendly settings), [`Sensor`] (a
//! running sensor; events arrive on the channel given to [`Sensor::start`],
//! one by one or in batches: [`EventSink`], whose buffers a [`BatchPool`]
//! can recycle), [`SensorMode`], [`Scope`].

mod content;
mod decode;
mod ebpf;
mod fallback;
mod process;
mod raw;
mod syscalls;

#[allow(clippy::all, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/vigie.skel.rs"));
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vigie_event::{Event, Health, HealthAction, HealthEvent, Host, Payload};

pub use content::{header_of, shannon_entropy};
pub use raw::bytes_to_string;

/// Events handed over per batch at most (see [`EventSink::Batches`]).
/// Each queued event is a few KB (its process with parent and ancestors),
/// and up to ten batches are in flight between sensor, detection and writer:
/// 256 put the agent's peak RSS over its 64 MB budget under a file storm;
/// 64 keep the handover to a few thousand wake-ups a second.
pub const BATCH_MAX: usize = 64;

/// Where a sensor sends its events. Both are bounded channels: when the
/// consumer falls behind, the kernel ring buffer fills and the loss is
/// counted and reported.
#[derive(Clone)]
pub enum EventSink {
    /// One event per send (simple consumers, tests).
    Single(SyncSender<Event>),
    /// Up to [`BATCH_MAX`] events per send: under a storm one handover (one
    /// wake-up of the consumer) per batch instead of per event. A batch is
    /// sent as soon as the kernel buffer is empty, so a quiet host sees no
    /// added delay. New batches come from the pool, which the consumer may
    /// refill ([`EventSink::pooled`]).
    Batches(SyncSender<Vec<Event>>, BatchPool),
}

impl From<SyncSender<Event>> for EventSink {
    fn from(tx: SyncSender<Event>) -> Self {
        EventSink::Single(tx)
    }
}

impl From<SyncSender<Vec<Event>>> for EventSink {
    fn from(tx: SyncSender<Vec<Event>>) -> Self {
        // A pool nobody gives back to: every batch is a new one.
        EventSink::Batches(tx, BatchPool::default())
    }
}

impl EventSink {
    /// Batches taken from `pool`, which the consumer refills with the
    /// batches it is done with ([`BatchPool::give`]).
    pub fn pooled(tx: SyncSender<Vec<Event>>, pool: BatchPool) -> Self {
        EventSink::Batches(tx, pool)
    }

    /// Sends one event on its own (low-rate senders: the fallback sensor).
    pub(crate) fn send_one(&self, ev: Event) -> Result<(), Gone> {
        match self {
            EventSink::Single(tx) => tx.send(ev).map_err(|_| Gone),
            EventSink::Batches(tx, _) => tx.send(vec![ev]).map_err(|_| Gone),
        }
    }
}

/// Batches handed back by the last consumer for the sensor to empty and
/// fill again. A batch's buffer (64 events of 984 bytes: 62 KB) is larger than
/// the allocator's small sizes: freed by the writer thread, its pages went
/// back to the kernel at once (the agent's allocator keeps no free pages,
/// for its RSS) and the sensor's next batch faulted them in again: under a
/// file storm, 78 % of the sensor thread's page faults were its pushes
/// into new batches.
#[derive(Clone, Default)]
pub struct BatchPool(Arc<Mutex<Vec<Vec<Event>>>>);

/// Batches a [`BatchPool`] keeps at most: more than the agent can have in
/// flight (about ten: four queued for detection, one the sensor waits to
/// send, one being filled, one in detection, two queued for the writer,
/// one being written).
const POOL_MAX: usize = 16;

impl BatchPool {
    /// Takes `batch` back for reuse, events and all: they are dropped by
    /// [`BatchPool::take`], on the sensor's thread, which allocated their
    /// strings. Freed on the consumer's thread, each of those blocks went
    /// through the allocator's cross-thread free list, and the sensor then
    /// collected them again: 6 % of the agent's samples under a file storm
    /// (`mi_free_block_delayed_mt`, `_mi_page_free_collect`).
    pub fn give(&self, batch: Vec<Event>) {
        if batch.capacity() < BATCH_MAX {
            return;
        }
        let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOL_MAX {
            free.push(batch);
        }
        // else: dropped here, after the lock.
    }

    /// An empty batch with room for [`BATCH_MAX`] events.
    fn take(&self) -> Vec<Event> {
        let reused = self.0.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(mut batch) => {
                batch.clear();
                batch
            }
            None => Vec::with_capacity(BATCH_MAX),
        }
    }
}

/// The consumer hung up.
#[derive(Debug)]
pub(crate) struct Gone;

/// An [`EventSink`] with the batch being filled.
pub(crate) struct Batcher {
    sink: EventSink,
    batch: Vec<Event>,
    /// Entropy and magic of written/renamed files, filled per batch just
    /// before it is sent (None: disabled).
    sampler: Option<content::ContentSampler>,
}

impl Batcher {
    pub(crate) fn new(sink: EventSink) -> Self {
        Batcher {
            sink,
            batch: Vec::new(),
            sampler: None,
        }
    }

    /// Samples the content of written and renamed files (entropy, magic).
    pub(crate) fn with_content_sampling(mut self, on: bool) -> Self {
        self.sampler = on.then(content::ContentSampler::new);
        self
    }

    /// Queues one event (sent at once to a [`EventSink::Single`]).
    pub(crate) fn push(&mut self, mut ev: Event) -> Result<(), Gone> {
        match &self.sink {
            EventSink::Single(tx) => {
                if let Some(s) = self.sampler.as_mut() {
                    s.fill_batch(std::slice::from_mut(&mut ev));
                }
                tx.send(ev).map_err(|_| Gone)
            }
            EventSink::Batches(..) => {
                self.batch.push(ev);
                if self.batch.len() >= BATCH_MAX {
                    self.flush()
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Sends the events queued so far.
    pub(crate) fn flush(&mut self) -> Result<(), Gone> {
        if let EventSink::Batches(tx, pool) = &self.sink
            && !self.batch.is_empty()
        {
            if let Some(s) = self.sampler.as_mut() {
                s.fill_batch(&mut self.batch);
            }
            let batch = std::mem::replace(&mut self.batch, pool.take());
            tx.send(batch).map_err(|_| Gone)?;
        }
        Ok(())
    }

    /// Queues and sends one event at once (health events: rare, and a
    /// consumer may be waiting for them).
    pub(crate) fn send_now(&mut self, ev: Event) -> Result<(), Gone> {
        self.push(ev)?;
        self.flush()
    }
}

/// A health event of the sensor named `sensor` ("ebpf", "fallback").
pub(crate) fn health(
    host: &Host,
    sensor: &str,
    action: HealthAction,
    message: String,
    counters: BTreeMap<String, u64>,
) -> Event {
    Event::new(
        chrono::Utc::now(),
        host.clone(),
        Payload::Health(HealthEvent {
            action,
            health: Health {
                message,
                sensor: Some(sensor.into()),
                counters,
            },
        }),
    )
}

/// Sensor settings: the `[sensor]` table of the agent's TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorConfig {
    /// Bytes of argv copied per exec (64..4095); longer argv is cut and
    /// flagged `process.vigie.args_truncated`.
    pub arg_max: u32,
    /// Ring buffer size in MiB (rounded up to a power of two). It counts
    /// twice in the agent's RSS (the data pages are mapped twice so records
    /// never wrap); 8 MiB holds about 20,000 exec events.
    pub ring_buffer_mb: u32,
    /// File events (create, write-close, rename, delete, chmod, chown, truncate).
    pub file_events: bool,
    /// Network events (connect, accept, listen).
    pub network_events: bool,
    /// DNS queries and answers (UDP/TCP port 53 payloads).
    pub dns_events: bool,
    /// Path prefixes whose file events are dropped in the kernel (absolute
    /// paths as the process gave them; at most 128 bytes each).
    pub noise_paths: Vec<String>,
    /// Executables (exact path as exec'd) whose file, network and syscall
    /// events are dropped in the kernel; their exec/exit are still reported.
    pub noise_executables: Vec<String>,
    /// Drop the agent's own file and network events in the kernel (its
    /// output files would otherwise feed back into the sensor).
    pub ignore_self: bool,
    /// Executables larger than this (MiB) are not hashed.
    pub max_hash_mb: u64,
    /// Sample written and renamed files in user space (first 64 KiB):
    /// Shannon entropy and magic-number format, with the values the same
    /// inode had when last sampled (`file.vigie.entropy`, `previous_entropy`,
    /// `header`, `previous_header`). The ransomware detector needs it.
    pub content_sampling: bool,
    /// Run the fallback sensor even if eBPF would load (for tests and
    /// kernels where the eBPF sensor misbehaves).
    pub force_fallback: bool,
    /// When eBPF cannot load, run the fallback sensor (degraded mode)
    /// instead of failing.
    pub fallback_on_failure: bool,
    /// Which processes are watched: the whole machine, or only those in the
    /// sensor's own network namespace.
    pub scope: Scope,
}

/// Which processes the sensor reports (`[sensor] scope`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every process of the machine.
    #[default]
    Host,
    /// Only processes whose network namespace is the one the sensor was
    /// started in (`/proc/thread-self/ns/net` of the thread calling
    /// [`Sensor::start`]; for the agent, its own): one agent per simulated
    /// host (`ip netns exec`) or per container. The process table still
    /// follows every process, so ancestry crosses namespaces.
    Netns,
}

impl Scope {
    /// The network namespace inode to keep (None: everything).
    fn netns(self) -> Result<Option<u32>> {
        match self {
            Scope::Host => Ok(None),
            Scope::Netns => process::netns_at("/proc/thread-self/ns/net")
                .map(Some)
                .context("scope = \"netns\": cannot read /proc/thread-self/ns/net"),
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            arg_max: 4095,
            ring_buffer_mb: 8,
            file_events: true,
            network_events: true,
            dns_events: true,
            noise_paths: vec!["/proc/".into(), "/sys/".into()],
            noise_executables: Vec::new(),
            ignore_self: true,
            max_hash_mb: 256,
            content_sampling: true,
            force_fallback: false,
            fallback_on_failure: true,
            scope: Scope::Host,
        }
    }
}

/// Which sensor is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorMode {
    /// The eBPF sensor: everything.
    Ebpf,
    /// Degraded: proc connector + fanotify (exec/exit and file writes).
    Fallback,
}

impl SensorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SensorMode::Ebpf => "ebpf",
            SensorMode::Fallback => "fallback",
        }
    }
}

/// A running sensor. Dropping it stops it (without waiting for the drain;
/// call [`Sensor::stop`] to flush).
pub struct Sensor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
    mode: SensorMode,
}

/// Name of this host for events.
pub fn host() -> Host {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let id = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string());
    Host { name, id }
}

impl Sensor {
    /// Starts the sensor; events go to `tx` (a bounded channel of events or
    /// of batches, see [`EventSink`]: when the consumer falls behind, the
    /// kernel ring buffer fills and the loss is counted and reported).
    /// Returns once the probes are attached.
    pub fn start(cfg: SensorConfig, tx: impl Into<EventSink>) -> Result<Sensor> {
        let tx = tx.into();
        let host = host();
        // Resolved here, on the caller's thread: its namespace is the scope.
        let netns = cfg.scope.netns()?;
        if !cfg.force_fallback {
            let stop = Arc::new(AtomicBool::new(false));
            let (ready_tx, ready_rx) = mpsc::channel();
            let (c, h, t, s) = (cfg.clone(), host.clone(), tx.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name("vigie-sensor".into())
                .spawn(move || ebpf::run(c, netns, h, t, s, ready_tx))
                .context("spawn sensor thread")?;
            match ready_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Ok(())) => {
                    return Ok(Sensor {
                        stop,
                        thread: Some(thread),
                        mode: SensorMode::Ebpf,
                    });
                }
                Ok(Err(e)) => {
                    let _ = thread.join();
                    if !cfg.fallback_on_failure {
                        return Err(e.context("eBPF sensor failed to start"));
                    }
                    tracing::warn!(
                        "eBPF sensor failed to start ({e:#}): running the fallback sensor"
                    );
                    return Self::start_fallback(cfg, netns, tx, host, format!("{e:#}"));
                }
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    anyhow::bail!("eBPF sensor did not start within 60 s");
                }
            }
        }
        Self::start_fallback(cfg, netns, tx, host, "forced by configuration".into())
    }

    fn start_fallback(
        cfg: SensorConfig,
        netns: Option<u32>,
        tx: EventSink,
        host: Host,
        why: String,
    ) -> Result<Sensor> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = fallback::start(cfg, netns, host, tx, stop.clone(), why)?;
        Ok(Sensor {
            stop,
            thread: Some(thread),
            mode: SensorMode::Fallback,
        })
    }

    pub fn mode(&self) -> SensorMode {
        self.mode
    }

    /// Stops the probes after draining what the kernel already sent. The
    /// drain goes into the event channel, so the caller must keep reading
    /// it until this returns (call it from another thread, as the agent
    /// does): a full channel nobody reads blocks the drain and this join.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("sensor thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        health(
            &Host::default(),
            "test",
            HealthAction::Heartbeat,
            "x".into(),
            BTreeMap::new(),
        )
    }

    #[test]
    fn a_batch_given_back_is_filled_again() {
        let (tx, rx) = mpsc::sync_channel(4);
        let pool = BatchPool::default();
        let mut batcher = Batcher::new(EventSink::pooled(tx, pool.clone()));
        // Two full batches: the second is filled in the first's buffer once
        // the consumer gave it back.
        for _ in 0..BATCH_MAX {
            batcher.push(event()).unwrap();
        }
        let first = rx.try_recv().expect("a full batch is sent");
        assert_eq!(first.len(), BATCH_MAX);
        let buffer = first.as_ptr();
        pool.give(first);
        for _ in 0..BATCH_MAX {
            batcher.push(event()).unwrap();
        }
        // The batch being filled when `first` came back was taken before:
        // the one after it reuses `first`'s buffer.
        for _ in 0..BATCH_MAX {
            batcher.push(event()).unwrap();
        }
        let (_, third) = (rx.try_recv().unwrap(), rx.try_recv().unwrap());
        assert_eq!(third.as_ptr(), buffer);
        assert_eq!(third.len(), BATCH_MAX, "its old events were cleared");
    }

    #[test]
    fn the_pool_keeps_only_full_sized_buffers_and_a_few() {
        let pool = BatchPool::default();
        pool.give(vec![event()]);
        assert!(
            pool.0.lock().unwrap().is_empty(),
            "a one-event vector is not kept"
        );
        for _ in 0..POOL_MAX + 5 {
            pool.give(Vec::with_capacity(BATCH_MAX));
        }
        assert_eq!(pool.0.lock().unwrap().len(), POOL_MAX);
        assert!(pool.take().capacity() >= BATCH_MAX);
    }

    #[test]
    fn events_given_back_are_dropped_by_the_thread_that_takes_the_batch() {
        let pool = BatchPool::default();
        let shared = Arc::new(vigie_event::ProcessSummary::default());
        let mut batch = Vec::with_capacity(BATCH_MAX);
        for _ in 0..BATCH_MAX {
            let mut ev = event();
            ev.payload = Payload::File(vigie_event::FileEvent {
                action: vigie_event::FileAction::Create,
                file: vigie_event::File::default(),
                process: vigie_event::Process {
                    parent: Some(shared.clone()),
                    ..Default::default()
                },
            });
            batch.push(ev);
        }
        let giver = pool.clone();
        std::thread::spawn(move || giver.give(batch))
            .join()
            .unwrap();
        assert_eq!(
            Arc::strong_count(&shared),
            BATCH_MAX + 1,
            "the consumer's thread kept the events"
        );
        let taken = pool.take();
        assert!(taken.is_empty());
        assert_eq!(Arc::strong_count(&shared), 1, "dropped on this thread");
    }
}

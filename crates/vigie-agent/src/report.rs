//! Where the agent's records go: the local outputs (ECS JSON lines) and,
//! when the agent has a manager, the uplink's on-disk spool. Callable from
//! any thread that is not a tokio worker (the detection loop, the response
//! thread, the isolation watcher, blocking command tasks).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use vigie_event::{Alert, Event};
use vigie_uplink::UplinkHandle;

pub(crate) type Output = Option<Box<dyn Write + Send>>;

/// Open an output: a file path (appended), `-` for standard output, `""`
/// for nowhere.
pub(crate) fn open_output(spec: &str) -> Result<Output> {
    // Telemetry arrives in batches of hundreds of lines: a large buffer
    // makes one write(2) per batch rather than one per 8 KiB.
    Ok(match spec {
        "" => None,
        "-" => Some(Box::new(BufWriter::with_capacity(
            OUTPUT_BUFFER,
            std::io::stdout(),
        ))),
        path => Some(Box::new(BufWriter::with_capacity(
            OUTPUT_BUFFER,
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open output {path}"))?,
        ))),
    })
}

const OUTPUT_BUFFER: usize = 256 * 1024;

/// Batches of telemetry waiting for the writer thread. When it falls behind,
/// detection waits, then the sensor, and the kernel counts what its ring
/// buffer cannot hold: loss is reported, never silent.
const WRITER_QUEUE: usize = 2;

pub(crate) struct Outputs {
    pub events: Output,
    pub alerts: Output,
    pub actions: Output,
}

/// The link, once it is up: the handle and the runtime it lives on.
struct Link {
    uplink: Arc<UplinkHandle>,
    rt: tokio::runtime::Handle,
}

pub struct Reporter {
    outputs: Mutex<Outputs>,
    link: OnceLock<Link>,
    /// Action events produced before the link existed (reconcile at start,
    /// the watcher), sent as soon as it does: the manager sees every action.
    early: Mutex<Vec<Event>>,
    managed: bool,
    /// Whether there is an events output (fixed at start): without one, and
    /// without a manager, telemetry is not serialised at all.
    has_events: bool,
}

/// The thread that serialises telemetry and writes it (to the events output
/// and the uplink's spool), off the detection thread: JSON of every event
/// costs as much as detecting on it. Dropping it writes what is queued and
/// waits for the thread.
pub(crate) struct EventWriter {
    tx: Option<SyncSender<Vec<Event>>>,
    thread: Option<JoinHandle<()>>,
}

impl EventWriter {
    /// Queues a batch (waits while the writer is [`WRITER_QUEUE`] batches
    /// behind).
    pub(crate) fn send(&self, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx
            && tx.send(batch).is_err()
        {
            tracing::error!("the event writer stopped; telemetry is not written");
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the event writer panicked");
        }
    }
}

fn writer_loop(reporter: &Reporter, rx: Receiver<Vec<Event>>) {
    let mut buf = Vec::with_capacity(OUTPUT_BUFFER);
    while let Ok(batch) = rx.recv() {
        reporter.events(&batch, &mut buf);
        // Write out whenever the queue is empty: quiet hosts see their
        // events at once, storms get large writes.
        loop {
            match rx.try_recv() {
                Ok(batch) => reporter.events(&batch, &mut buf),
                Err(TryRecvError::Empty) => {
                    reporter.flush();
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    reporter.flush();
                    return;
                }
            }
        }
    }
    reporter.flush();
}

fn write_line(out: &mut Output, json: &str) {
    if let Some(w) = out
        && let Err(e) = writeln!(w, "{json}")
    {
        tracing::error!("cannot write an output: {e}");
    }
}

impl Reporter {
    /// `managed`: a link will be set (keep early actions for it).
    pub(crate) fn new(outputs: Outputs, managed: bool) -> Arc<Reporter> {
        Arc::new(Reporter {
            has_events: outputs.events.is_some(),
            outputs: Mutex::new(outputs),
            link: OnceLock::new(),
            early: Mutex::new(Vec::new()),
            managed,
        })
    }

    pub(crate) fn set_link(&self, uplink: Arc<UplinkHandle>, rt: tokio::runtime::Handle) {
        // Drain and publish the link under the same lock that `action`
        // pushes under: an action from another thread lands either in the
        // drained list or on the link, never in a list nobody reads again.
        let mut early = self.early.lock().expect("lock");
        for ev in early.drain(..) {
            rt.block_on(uplink.send_action_result(&ev));
        }
        let _ = self.link.set(Link { uplink, rt });
    }

    /// Starts the thread that writes telemetry (see [`EventWriter`]).
    pub(crate) fn spawn_writer(self: &Arc<Self>) -> Result<EventWriter> {
        let (tx, rx) = sync_channel(WRITER_QUEUE);
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("vigie-writer".into())
            .spawn(move || writer_loop(&me, rx))
            .context("start the event writer thread")?;
        Ok(EventWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Telemetry.
    pub fn event(&self, ev: &Event) {
        let mut buf = Vec::new();
        self.events(std::slice::from_ref(ev), &mut buf);
    }

    /// A batch of telemetry: serialised into `buf` (reused; the lock is
    /// taken once per batch), then handed to the uplink in order.
    fn events(&self, batch: &[Event], buf: &mut Vec<u8>) {
        if self.has_events {
            buf.clear();
            for ev in batch {
                let start = buf.len();
                match sonic_rs::to_writer(&mut *buf, ev) {
                    Ok(()) => buf.push(b'\n'),
                    Err(e) => {
                        buf.truncate(start);
                        tracing::error!("cannot serialise event {}: {e}", ev.id);
                    }
                }
            }
            if let Ok(mut o) = self.outputs.lock()
                && let Some(w) = o.events.as_mut()
                && let Err(e) = w.write_all(buf)
            {
                tracing::error!("cannot write an output: {e}");
            }
        }
        if let Some(l) = self.link.get() {
            for ev in batch {
                l.rt.block_on(l.uplink.send_event(ev));
            }
        }
    }

    pub fn alert(&self, alert: &Alert) {
        if let Ok(mut o) = self.outputs.lock() {
            match serde_json::to_string(alert) {
                Ok(j) => write_line(&mut o.alerts, &j),
                Err(e) => tracing::error!("cannot serialise alert {}: {e}", alert.id),
            }
        }
        if let Some(l) = self.link.get() {
            l.rt.block_on(l.uplink.send_alert(alert));
        }
    }

    /// A response or tamper event (what, why, verified outcome, undo).
    pub fn action(&self, ev: &Event) {
        if let Ok(mut guard) = self.outputs.lock() {
            let o = &mut *guard;
            match serde_json::to_string(ev) {
                Ok(j) => {
                    write_line(&mut o.actions, &j);
                    write_line(&mut o.events, &j);
                }
                Err(e) => tracing::error!("cannot serialise action {}: {e}", ev.id),
            }
            // Actions are rare and someone may be waiting for them.
            for w in [&mut o.actions, &mut o.events].into_iter().flatten() {
                let _ = w.flush();
            }
        }
        if let Some(l) = self.link.get() {
            l.rt.block_on(l.uplink.send_action_result(ev));
        } else if self.managed {
            let mut early = self.early.lock().expect("lock");
            match self.link.get() {
                // The link was set while we waited for the lock.
                Some(l) => l.rt.block_on(l.uplink.send_action_result(ev)),
                None => early.push(ev.clone()),
            }
        }
    }

    pub(crate) fn flush(&self) {
        if let Ok(mut o) = self.outputs.lock() {
            let o = &mut *o;
            for w in [&mut o.events, &mut o.alerts, &mut o.actions]
                .into_iter()
                .flatten()
            {
                if let Err(e) = w.flush() {
                    tracing::error!("cannot flush an output: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod json_tests {
    use vigie_event::{Event, File, FileAction, FileEvent, Host, Payload, Process};

    /// The writer's serialiser (sonic-rs) writes what serde_json writes:
    /// escapes, non-ASCII, floats, nested objects.
    #[test]
    fn event_json_is_the_same_as_serde_json() {
        let mut file = File::at("/tmp/a\nb\u{1}\"q\\é\u{7f}\u{2028}.txt");
        file.vigie.entropy = Some(7.99);
        file.vigie.previous_entropy = Some(0.1);
        file.vigie.bytes_written = Some(u64::MAX);
        let process = Process {
            pid: 42,
            name: "sh".into(),
            executable: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), "echo\t\u{0}x | base64 -d".into()],
            command_line: "sh -c 'echo x'".into(),
            exit_code: Some(-1),
            ..Process::default()
        };
        for action in [FileAction::Write, FileAction::Rename, FileAction::Delete] {
            let ev = Event::new(
                chrono::Utc::now(),
                Host::default(),
                Payload::File(FileEvent {
                    action,
                    file: file.clone(),
                    process: process.clone(),
                }),
            );
            let mut ours = Vec::new();
            sonic_rs::to_writer(&mut ours, &ev).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&ev).unwrap()
            );
        }
    }
}

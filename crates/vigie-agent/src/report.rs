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
use vigie_event::{Alert, Event, Payload, Process};
use vigie_sensor::BatchPool;
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

fn writer_loop(reporter: &Reporter, rx: Receiver<Vec<Event>>, pool: &BatchPool) {
    let mut buf = Vec::with_capacity(OUTPUT_BUFFER);
    let mut json = EventJson::new();
    let mut write = |mut batch: Vec<Event>| {
        reporter.events(&mut batch, &mut buf, &mut json);
        pool.give(batch);
    };
    while let Ok(batch) = rx.recv() {
        write(batch);
        // Write out whenever the queue is empty: quiet hosts see their
        // events at once, storms get large writes.
        loop {
            match rx.try_recv() {
                Ok(batch) => write(batch),
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

/// The acting process of an event, when it has one.
fn process_mut(ev: &mut Event) -> Option<&mut Process> {
    match &mut ev.payload {
        Payload::Process(e) => Some(&mut e.process),
        Payload::File(e) => Some(&mut e.process),
        Payload::Network(e) => Some(&mut e.process),
        Payload::Dns(e) => Some(&mut e.process),
        Payload::Kernel(e) => Some(&mut e.process),
        Payload::Authentication(_)
        | Payload::Health(_)
        | Payload::Response(_)
        | Payload::Log(_) => None,
    }
}

/// ECS JSON of events, reusing the JSON of the acting process while it
/// stays the same. The process (with parent, ancestors, users: seven
/// timestamps) is about 85 % of a file event's 2.9 KB, and a storm's events
/// come from one process in a row. vigie-event's serialiser stays the one
/// source of the layout: the event is serialised with a placeholder process
/// whose JSON is then replaced by the real one's.
struct EventJson {
    /// Swapped into the event while it is serialised.
    placeholder: Process,
    /// Finds `"process":{…placeholder…}`, as the serialiser writes it.
    placeholder_json: memchr::memmem::Finder<'static>,
    /// What follows the process in an event (reused).
    tail: Vec<u8>,
    /// The last process and its `"process":{…}` (and `,"user":{…}`) JSON.
    last: Option<(Process, Vec<u8>)>,
    /// Events written the plain way because the placeholder was not found.
    fallbacks: u64,
}

impl EventJson {
    fn new() -> Self {
        // Control characters are escaped in JSON strings, and a quote inside
        // a string is escaped too: this key and value can only appear where
        // the serialiser put the placeholder.
        let placeholder = Process {
            entity_id: "\u{1}vigie-writer-placeholder\u{1}".into(),
            ..Process::default()
        };
        let mut placeholder_json = b"\"process\":".to_vec();
        sonic_rs::to_writer(&mut placeholder_json, &placeholder).expect("a process serialises");
        EventJson {
            placeholder,
            placeholder_json: memchr::memmem::Finder::new(&placeholder_json).into_owned(),
            tail: Vec::new(),
            last: None,
            fallbacks: 0,
        }
    }

    /// Appends the event's JSON (no newline) to `buf`.
    fn write(&mut self, ev: &mut Event, buf: &mut Vec<u8>) -> sonic_rs::Result<()> {
        let start = buf.len();
        let Some(process) = process_mut(ev) else {
            return sonic_rs::to_writer(&mut *buf, &*ev);
        };
        if let Some((last, _)) = self.last.as_mut()
            && last == process
        {
            // The sensor rebuilds the shared parent and ancestors whenever
            // its process table changes: adopting the new ones keeps the
            // next comparisons to a pointer comparison (the parent's `Arc`
            // and `ProcessExtra`'s equality check the pointer first) instead
            // of comparing every ancestor of every event field by field
            // until the process changes.
            last.parent.clone_from(&process.parent);
            last.vigie.ancestors.clone_from(&process.vigie.ancestors);
        } else {
            let mut json = b"\"process\":".to_vec();
            sonic_rs::to_writer(&mut json, &*process)?;
            // vigie-event writes the acting user next to the process.
            if let Some(user) = &process.user {
                json.extend_from_slice(b",\"user\":");
                sonic_rs::to_writer(&mut json, user)?;
            }
            self.last = Some((process.clone(), json));
        }
        std::mem::swap(process, &mut self.placeholder);
        let written = sonic_rs::to_writer(&mut *buf, &*ev);
        if let Some(process) = process_mut(ev) {
            std::mem::swap(process, &mut self.placeholder);
        }
        written?;
        let at = self.placeholder_json.find(&buf[start..]);
        match (at, &self.last) {
            (Some(at), Some((_, json))) => {
                // Two copies (Vec::splice goes byte by byte).
                let at = start + at;
                self.tail.clear();
                let end = at + self.placeholder_json.needle().len();
                self.tail.extend_from_slice(&buf[end..]);
                buf.truncate(at);
                buf.extend_from_slice(json);
                buf.extend_from_slice(&self.tail);
                Ok(())
            }
            // Not where expected (a serialiser change): the plain way.
            _ => {
                self.fallbacks += 1;
                buf.truncate(start);
                sonic_rs::to_writer(&mut *buf, &*ev)
            }
        }
    }
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
    /// Written batches go back to `pool`.
    pub(crate) fn spawn_writer(self: &Arc<Self>, pool: BatchPool) -> Result<EventWriter> {
        let (tx, rx) = sync_channel(WRITER_QUEUE);
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("vigie-writer".into())
            .spawn(move || writer_loop(&me, rx, &pool))
            .context("start the event writer thread")?;
        Ok(EventWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// A batch of telemetry: serialised into `buf` (reused; the lock is
    /// taken once per batch), then handed to the uplink in order. The
    /// events are only borrowed mutably while each is serialised.
    fn events(&self, batch: &mut [Event], buf: &mut Vec<u8>, json: &mut EventJson) {
        if self.has_events {
            buf.clear();
            for ev in batch.iter_mut() {
                let start = buf.len();
                match json.write(ev, buf) {
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
            for ev in batch.iter() {
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

    /// Reusing a process's JSON changes nothing in the output: every event
    /// kind, the same process in a row, a process that changes (its user,
    /// its ancestors), none at all.
    #[test]
    fn reused_process_json_is_the_plain_json() {
        use vigie_event::{
            Endpoint, HealthAction, HealthEvent, NetworkAction, NetworkEvent, ProcessAction,
            ProcessEvent, ProcessSummary, Transport, User,
        };
        let mut sh = Process {
            entity_id: "42-7".into(),
            pid: 42,
            start: Some(chrono::Utc::now()),
            name: "sh".into(),
            executable: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), "\"process\":{\u{1}".into()],
            command_line: "sh -c '\"process\":{'".into(),
            user: Some(User {
                id: Some("0".into()),
                name: Some("root".into()),
                ..User::default()
            }),
            parent: Some(std::sync::Arc::new(ProcessSummary {
                entity_id: "1-1".into(),
                pid: 1,
                name: "init".into(),
                ..ProcessSummary::default()
            })),
            ..Process::default()
        };
        sh.vigie.ancestors = vec![ProcessSummary {
            entity_id: "0-0".into(),
            ..ProcessSummary::default()
        }]
        .into();
        let mut other_user = sh.clone();
        other_user.user.as_mut().unwrap().id = Some("1000".into());
        let mut no_user = sh.clone();
        no_user.user = None;
        let file = |action, p: &Process| {
            Payload::File(FileEvent {
                action,
                file: File::at("/tmp/\"process\":{\"entity_id\":\"x"),
                process: p.clone(),
            })
        };
        let payloads = vec![
            Payload::Process(ProcessEvent {
                action: ProcessAction::Exec,
                process: sh.clone(),
                target: None,
                error: None,
            }),
            file(FileAction::Create, &sh),
            file(FileAction::Write, &sh),
            file(FileAction::Rename, &other_user),
            file(FileAction::Delete, &other_user),
            Payload::Health(HealthEvent {
                action: HealthAction::SensorStart,
                health: Default::default(),
            }),
            file(FileAction::Delete, &no_user),
            Payload::Network(NetworkEvent {
                action: NetworkAction::Connect,
                transport: Transport::Tcp,
                source: Endpoint::default(),
                destination: Endpoint::default(),
                process: no_user.clone(),
            }),
            file(FileAction::Create, &Process::default()),
            file(FileAction::Create, &sh),
        ];
        let mut json = super::EventJson::new();
        for payload in payloads {
            let mut ev = Event::new(chrono::Utc::now(), Host::named("h"), payload);
            let plain = serde_json::to_string(&ev).unwrap();
            let mut ours = b"previous line\n".to_vec();
            json.write(&mut ev, &mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                format!("previous line\n{plain}")
            );
            // The event is left as it was.
            assert_eq!(serde_json::to_string(&ev).unwrap(), plain);
        }
        assert_eq!(json.fallbacks, 0, "the placeholder was always found");
    }

    /// An equal process whose ancestry the sensor rebuilt (new `Arc`s):
    /// the writer adopts the new ones, so the next event of the process
    /// compares pointers, not every ancestor.
    #[test]
    fn an_equal_process_hands_over_its_shared_ancestry() {
        use std::sync::Arc;
        use vigie_event::ProcessSummary;
        let summary = |id: &str| ProcessSummary {
            entity_id: id.into(),
            command_line: "a long command line".into(),
            ..ProcessSummary::default()
        };
        let process = || {
            let mut p = Process {
                entity_id: "42-7".into(),
                parent: Some(Arc::new(summary("1-1"))),
                ..Process::default()
            };
            p.vigie.ancestors = vec![summary("0-0")].into();
            p
        };
        let (first, rebuilt) = (process(), process());
        assert!(!Arc::ptr_eq(
            &first.vigie.ancestors,
            &rebuilt.vigie.ancestors
        ));
        let mut json = super::EventJson::new();
        let mut out = Vec::new();
        for p in [&first, &rebuilt] {
            let payload = Payload::File(FileEvent {
                action: FileAction::Write,
                file: File::at("/tmp/x"),
                process: p.clone(),
            });
            let mut ev = Event::new(chrono::Utc::now(), Host::named("h"), payload);
            json.write(&mut ev, &mut out).unwrap();
        }
        let (last, _) = json.last.as_ref().unwrap();
        assert!(Arc::ptr_eq(&last.vigie.ancestors, &rebuilt.vigie.ancestors));
        assert!(Arc::ptr_eq(
            last.parent.as_ref().unwrap(),
            rebuilt.parent.as_ref().unwrap()
        ));
    }
}

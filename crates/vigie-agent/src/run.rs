//! The agent's main loop: response state first (a saved isolation is
//! re-applied before anything connects), then the manager link, then the
//! sensor; events → detection → outputs/uplink, alerts → the response
//! thread (policy → actions).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, sync_channel};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use vigie_detect::Engine;
use vigie_detect::behaviour::{Canaries, Ransomware};
use vigie_event::{Alert, HealthAction, Payload};
use vigie_respond::policy::Policy;
use vigie_respond::{ResponseService, ServiceOptions};
use vigie_sensor::{BatchPool, EventSink, Sensor};
use vigie_uplink::{Identity, Uplink, UplinkHandle};

use crate::AgentConfig;
use crate::commands::{self, Commands};
use crate::report::{Outputs, Reporter, open_output};
use crate::status::{AgentStatus, write_status};

/// Batches (of up to [`vigie_sensor::BATCH_MAX`] events, a few KB each)
/// between the sensor's reader and detection.
const SENSOR_QUEUE: usize = 4;

/// What `vigie agent` was given (command line over configuration file).
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    pub config: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub events: Option<String>,
    pub alerts: Option<String>,
    pub actions: Option<String>,
    pub state_dir: PathBuf,
    pub force_fallback: bool,
    /// No manager: everything stays local.
    pub standalone: bool,
    /// The manager's agent (gRPC) URL, for the first start.
    pub manager: Option<String>,
    /// One-time enrolment token, for the first start.
    pub enroll_token: Option<String>,
}

/// The options of `vigie agent --standalone` (the same type).
pub type Standalone = AgentOptions;

/// [`run`] without a manager.
pub fn run_standalone(mut opts: AgentOptions) -> Result<ExitCode> {
    opts.standalone = true;
    run(opts)
}

fn load_engine(dirs: &[PathBuf], builtin: bool) -> Engine {
    // STATE/rules exists only once the manager sent rules.
    let dirs: Vec<&PathBuf> = dirs
        .iter()
        .filter(|d| !d.ends_with(commands::RULES_DIR) || d.exists())
        .collect();
    let (engine, report) = if builtin {
        Engine::load_with_documents(&dirs, vigie_rules::pack())
    } else {
        Engine::load(&dirs)
    };
    for p in report.problems() {
        tracing::warn!(
            "rule {}:{}: {}",
            p.path,
            p.line.unwrap_or(1),
            p.reason.as_deref().unwrap_or("not loaded")
        );
    }
    tracing::info!(
        rules = engine.rule_count(),
        "detection rules loaded: {}",
        serde_json::to_string(&report.totals).unwrap_or_default()
    );
    engine
}

/// The ransomware detector, watching the `[ransomware] canaries` files
/// configured by hand and the ones planted in `[canaries] dirs`. Call it
/// before the sensor starts, so planting raises nothing.
fn ransomware_detector(cfg: &AgentConfig) -> Ransomware {
    let mut rc = cfg.ransomware.clone();
    if !cfg.canaries.dirs.is_empty() {
        match Canaries::plant(&cfg.canaries) {
            Ok(c) => {
                let planted = c.paths();
                tracing::info!(canaries = planted.len(), "canary files planted");
                rc.canaries.extend(planted);
            }
            Err(e) => tracing::error!("planting canary files: {e}"),
        }
    }
    Ransomware::new(rc)
}

/// `host:port` of a manager URL (for the isolation's self-check).
fn manager_host_port(url: &str) -> Option<String> {
    let (h, p) = vigie_uplink::tls::host_port(url).ok()?;
    Some(if h.contains(':') {
        format!("[{h}]:{p}")
    } else {
        format!("{h}:{p}")
    })
}

/// Runs the agent until SIGTERM/SIGINT (flush, exit 0). SIGHUP reloads the
/// rules.
pub fn run(opts: AgentOptions) -> Result<ExitCode> {
    let mut cfg = match &opts.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    cfg.detect.rules.extend(opts.rules.iter().cloned());
    for (out, given) in [
        (&mut cfg.output.events, &opts.events),
        (&mut cfg.output.alerts, &opts.alerts),
        (&mut cfg.output.actions, &opts.actions),
    ] {
        if let Some(g) = given {
            *out = g.clone();
        }
    }
    cfg.sensor.force_fallback |= opts.force_fallback;
    let state_dir = opts.state_dir.clone();
    // Mode 0700: the state holds the agent's key and quarantined files.
    vigie_respond::StateDir::open(&state_dir)?;

    let enrolled = Identity::exists(&state_dir);
    if !opts.standalone && !enrolled && (opts.manager.is_none() || opts.enroll_token.is_none()) {
        anyhow::bail!(
            "this agent is not enrolled (no identity in {}): start it once with \
             --manager URL --enroll-token TOKEN, or run it without a manager with --standalone",
            state_dir.display()
        );
    }

    let term = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).context("install signal handler")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("install signal handler")?;

    let reporter = Reporter::new(
        Outputs {
            events: open_output(&cfg.output.events)?,
            alerts: open_output(&cfg.output.alerts)?,
            actions: open_output(&cfg.output.actions)?,
        },
        !opts.standalone,
    );

    // 1. Response first: re-apply a saved isolation before connecting
    //    anywhere, start the watcher that restores a tampered table.
    let (service, reconciled) = {
        let r = reporter.clone();
        ResponseService::start(&state_dir, ServiceOptions::default(), move |ev| {
            r.action(ev)
        })?
    };
    for ev in &reconciled {
        reporter.action(ev);
    }
    let service = Arc::new(service);
    let policy = match commands::load_policy_file(&state_dir.join(commands::POLICY_FILE)) {
        Ok(Some(p)) => {
            tracing::info!(
                "response policy from the manager ({})",
                commands::POLICY_FILE
            );
            p
        }
        Ok(None) => cfg.response.clone(),
        Err(e) => {
            tracing::error!("{e:#}; using the configuration's policy");
            cfg.response.clone()
        }
    };
    let policy = Arc::new(RwLock::new(policy));

    // 2. The manager link (its sockets carry the mark isolation lets through).
    let mut manager = None;
    let mut manager_url = None;
    let mut runtime = None;
    let mut uplink: Option<Arc<UplinkHandle>> = None;
    if !opts.standalone {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vigie-uplink")
            .enable_all()
            .build()
            .context("start the uplink runtime")?;
        let mark = Some(vigie_respond::AGENT_MARK);
        if !enrolled {
            let url = opts.manager.as_deref().expect("checked above");
            let token = opts.enroll_token.as_deref().expect("checked above");
            // The manager keeps the release secret to show offline codes.
            let secret = vigie_respond::StateDir::open(&state_dir)?.secret()?;
            let id = rt
                .block_on(Uplink::enroll_marked(url, token, &state_dir, mark, &secret))
                .with_context(|| format!("enrolment with the manager at {url}"))?;
            tracing::info!(host_id = %id.host_id, org = %id.org, "enrolled with {url}");
        } else if opts.enroll_token.is_some() {
            tracing::info!(
                "already enrolled (identity in {}): the enrolment token is not used",
                state_dir.display()
            );
        }
        let id = Identity::load(&state_dir)?;
        if let Some(m) = &opts.manager
            && m != &id.manager_url
        {
            tracing::warn!(
                "--manager {m} ignored: this agent is enrolled with {}",
                id.manager_url
            );
        }
        manager = manager_host_port(&id.manager_url);
        manager_url = Some(id.manager_url);
        let handler = Commands {
            responder: service.responder().clone(),
            policy: policy.clone(),
            reporter: reporter.clone(),
            manager: manager.clone(),
            reload: reload.clone(),
        };
        let options = vigie_uplink::Options {
            socket_mark: mark,
            ..vigie_uplink::Options::default()
        };
        let up = Arc::new(rt.block_on(Uplink::start(&state_dir, handler, options))?);
        reporter.set_link(up.clone(), rt.handle().clone());
        uplink = Some(up);
        runtime = Some(rt);
    }

    // 3. Detection, then the sensor.
    let rule_dirs = {
        let mut d = cfg.detect.rules.clone();
        d.push(state_dir.join(commands::RULES_DIR));
        d
    };
    let builtin = cfg.detect.builtin;
    let mut engine = load_engine(&rule_dirs, builtin);
    // Behaviour detection next to the rules (before the sensor starts).
    let mut ransomware = ransomware_detector(&cfg);

    // The response thread: actions can take a second (nft, self-check);
    // detection must not wait for them.
    let (alert_tx, alert_rx) = mpsc::channel::<Alert>();
    let responder_thread = {
        let (service, policy, reporter, manager) = (
            service.clone(),
            policy.clone(),
            reporter.clone(),
            manager.clone(),
        );
        std::thread::Builder::new()
            .name("vigie-response".into())
            .spawn(move || respond_loop(alert_rx, &service, &policy, manager.as_deref(), &reporter))
            .context("start the response thread")?
    };

    // A bounded array channel allocates (and touches) every slot up front:
    // 65,536 events cost 65 MB of RSS before the first one. Bursts belong
    // in the kernel's ring buffer, which is sized for them and counts what
    // it cannot hold; this queue only smooths the handover.
    let (tx, rx) = sync_channel::<Vec<vigie_event::Event>>(SENSOR_QUEUE);
    // The writer hands written batches back for the sensor to refill.
    let pool = BatchPool::default();
    let writer = reporter.spawn_writer(pool.clone())?;
    let sensor = Sensor::start(cfg.sensor.clone(), EventSink::pooled(tx, pool))?;
    let mut st = AgentStatus {
        pid: std::process::id(),
        started: chrono::Utc::now(),
        updated: chrono::Utc::now(),
        mode: if opts.standalone {
            "standalone"
        } else {
            "managed"
        }
        .into(),
        sensor: sensor.mode().as_str().into(),
        sensor_health: match sensor.mode() {
            vigie_sensor::SensorMode::Ebpf => "ok".into(),
            vigie_sensor::SensorMode::Fallback => {
                "degraded: fallback sensor (proc connector + fanotify)".into()
            }
        },
        sensor_lost: 0,
        rules_loaded: engine.rule_count(),
        rule_dirs: rule_dirs.iter().map(|d| d.display().to_string()).collect(),
        response_mode: String::new(), // set by tick, from the policy in force
        manager_url,
        manager_connected: None,
        spool_pending: None,
        spool_dropped: None,
    };
    tracing::info!(mode = sensor.mode().as_str(), "agent running");
    // Ready marker for scripts and tests: the probes are attached.
    let _ = File::create(state_dir.join("agent.ready"));

    // Detection here; serialisation and writing on the writer thread. An
    // alert is written and handed to the response thread at once (before
    // its batch of telemetry is written).
    let mut handle = |batch: Vec<vigie_event::Event>, engine: &mut Engine, st: &mut AgentStatus| {
        for ev in &batch {
            if let Payload::Health(h) = &ev.payload
                && h.action == HealthAction::EventsLost
            {
                st.sensor_lost = st.sensor_lost.max(h.health.counters.values().sum());
            }
            for alert in engine.process(ev).into_iter().chain(ransomware.process(ev)) {
                reporter.alert(&alert);
                let _ = alert_tx.send(alert);
            }
        }
        writer.send(batch);
    };

    let mut last_flush = Instant::now();
    let mut last_tick: Option<Instant> = None;
    let mut written: Option<(AgentStatus, Instant)> = None;
    let mut sensor = Some(sensor);
    let result = loop {
        if reload.swap(false, Ordering::Relaxed) {
            tracing::info!("reloading rules");
            engine = load_engine(&rule_dirs, builtin);
            st.rules_loaded = engine.rule_count();
        }
        if term.load(Ordering::Relaxed) {
            // Stop the probes and keep reading while they stop: the sensor
            // empties the kernel buffer into the channel, and a full channel
            // nobody reads would block it, and its join, forever. Nothing
            // seen is lost.
            let stopper = sensor.take().map(|s| std::thread::spawn(move || s.stop()));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(ev) => handle(ev, &mut engine, &mut st),
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout)
                        if stopper.as_ref().is_none_or(|t| t.is_finished())
                            || Instant::now() > deadline =>
                    {
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            // What is left in the queue, bounded: a sensor that did not
            // stop would otherwise refill it forever.
            for _ in 0..SENSOR_QUEUE {
                match rx.try_recv() {
                    Ok(ev) => handle(ev, &mut engine, &mut st),
                    Err(_) => break,
                }
            }
            // The queue closes as the sensor thread ends, a moment before
            // the thread that joins it does: wait for it (within the
            // deadline) rather than report a stop that did not fail.
            while stopper.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            match stopper {
                Some(t) if t.is_finished() => match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!("stopping the sensor: {e:#}"),
                    Err(_) => tracing::error!("stopping the sensor: its thread panicked"),
                },
                Some(_) => tracing::error!("the sensor did not stop within 10 s; exiting anyway"),
                None => {}
            }
            break Ok(ExitCode::SUCCESS);
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(ev) => handle(ev, &mut engine, &mut st),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                break Err(anyhow::anyhow!("the sensor stopped unexpectedly"));
            }
        }
        // Alerts; telemetry is flushed by the writer thread.
        if last_flush.elapsed() >= Duration::from_millis(500) {
            reporter.flush();
            last_flush = Instant::now();
        }
        if last_tick.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            tick(
                &mut st,
                &mut written,
                &state_dir,
                &service,
                &policy,
                uplink.as_deref(),
                runtime.as_ref(),
            );
            last_tick = Some(Instant::now());
        }
    };

    // Shutdown: write the queued telemetry, finish the pending responses,
    // flush, hand the spool over.
    drop(writer);
    drop(alert_tx);
    let _ = responder_thread.join();
    reporter.flush();
    if let (Some(up), Some(rt)) = (uplink.take(), runtime.as_ref()) {
        // Everything sent so far reaches the spool; unacknowledged records
        // go to the manager at the next start.
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), up.stop()).await;
        });
    }
    if let Some(rt) = runtime {
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    let _ = std::fs::remove_file(state_dir.join("agent.ready"));
    let _ = std::fs::remove_file(state_dir.join(crate::STATUS_FILE));
    drop(service);
    result
}

/// How often the status and the heartbeat facts are refreshed (heartbeats
/// go every 10 s).
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// The status file is rewritten when something in it changed, and at least
/// this often so that `updated` shows the agent alive (`vigie agent status`
/// calls a status older than 10 s stale).
const STATUS_REWRITE: Duration = Duration::from_secs(5);

/// Every [`STATUS_EVERY`]: the facts the next heartbeat carries, and the
/// status file for `vigie agent status` (`written`: what was last written,
/// and when).
fn tick(
    st: &mut AgentStatus,
    written: &mut Option<(AgentStatus, Instant)>,
    state_dir: &Path,
    service: &ResponseService,
    policy: &RwLock<Policy>,
    uplink: Option<&UplinkHandle>,
    rt: Option<&tokio::runtime::Runtime>,
) {
    // The manager's policy_update can change the mode at any time.
    st.response_mode = format!("{:?}", policy.read().map(|p| p.mode).unwrap_or_default());
    let isolated = service.responder().isolation().is_ok_and(|i| i.is_some());
    if let (Some(up), Some(rt)) = (uplink, rt) {
        st.manager_connected = Some(up.is_connected());
        st.spool_pending = rt.block_on(up.pending()).ok();
        st.spool_dropped = Some(up.dropped());
        let health = format!(
            "{} ({} sensor); {} rules loaded; response {}",
            st.sensor_health, st.sensor, st.rules_loaded, st.response_mode
        );
        let lost = st.sensor_lost;
        up.update_facts(|f| {
            f.isolated = isolated;
            f.sensor_health = health;
            f.sensor_lost = lost;
        });
    }
    // `updated` only changes here, when the file is written.
    if written
        .as_ref()
        .is_some_and(|(w, at)| w == st && at.elapsed() < STATUS_REWRITE)
    {
        return;
    }
    st.updated = chrono::Utc::now();
    match write_status(state_dir, st) {
        Ok(()) => *written = Some((st.clone(), Instant::now())),
        Err(e) => tracing::warn!("cannot write the status file: {e:#}"),
    }
}

fn respond_loop(
    alerts: mpsc::Receiver<Alert>,
    service: &ResponseService,
    policy: &RwLock<Policy>,
    manager: Option<&str>,
    reporter: &Reporter,
) {
    for alert in alerts {
        let p = commands::effective_policy(policy, manager);
        for res in service.on_alert(&p, &alert) {
            match res {
                Ok(ev) => reporter.action(&ev),
                Err(e) => {
                    // The failure was recorded in actions.jsonl by the
                    // responder; report that record too.
                    tracing::warn!("response to alert {} failed: {e:#}", alert.id);
                    if let Ok(last) = service.responder().state().last_actions(1)
                        && let Some(ev) = last.into_iter().next()
                        && matches!(&ev.payload, Payload::Response(r)
                            if r.response.alert_id.as_deref() == Some(&alert.id.to_string()))
                    {
                        reporter.action(&ev);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_event::{Event, File as FileRef, FileAction, FileEvent, Host, Level, Process};

    fn delete(path: &str) -> Event {
        Event::new(
            chrono::Utc::now(),
            Host::named("test"),
            Payload::File(FileEvent {
                action: FileAction::Delete,
                file: FileRef::at(path),
                process: Process {
                    entity_id: "4242-100".into(),
                    pid: 4242,
                    executable: "/usr/bin/rm".into(),
                    ..Process::default()
                },
            }),
        )
    }

    #[test]
    fn status_file_is_rewritten_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _) =
            ResponseService::start(dir.path(), ServiceOptions::default(), |_| {}).unwrap();
        let policy = RwLock::new(Policy::default());
        let now = chrono::Utc::now();
        let mut st = AgentStatus {
            pid: std::process::id(),
            started: now,
            updated: now,
            mode: "standalone".into(),
            sensor: "ebpf".into(),
            sensor_health: "ok".into(),
            sensor_lost: 0,
            rules_loaded: 1,
            rule_dirs: Vec::new(),
            response_mode: String::new(),
            manager_url: None,
            manager_connected: None,
            spool_pending: None,
            spool_dropped: None,
        };
        let mut written = None;
        let read = || -> AgentStatus {
            serde_json::from_slice(&std::fs::read(dir.path().join(crate::STATUS_FILE)).unwrap())
                .unwrap()
        };
        tick(
            &mut st,
            &mut written,
            dir.path(),
            &service,
            &policy,
            None,
            None,
        );
        let first = read();
        assert_eq!(first.response_mode, "Respond", "derived from the policy");
        std::thread::sleep(Duration::from_millis(20));
        tick(
            &mut st,
            &mut written,
            dir.path(),
            &service,
            &policy,
            None,
            None,
        );
        assert_eq!(read(), first, "nothing changed: not rewritten");
        st.sensor_lost = 7;
        tick(
            &mut st,
            &mut written,
            dir.path(),
            &service,
            &policy,
            None,
            None,
        );
        let second = read();
        assert_eq!(second.sensor_lost, 7);
        assert!(second.updated > first.updated);
    }

    #[test]
    fn planted_canaries_add_to_the_configured_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = AgentConfig::default();
        cfg.ransomware.canaries = vec!["/srv/partage/by-hand.pdf".into()];
        cfg.canaries.dirs = vec![dir.path().to_path_buf()];
        let mut d = ransomware_detector(&cfg);
        let planted = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(planted, 2, "two canaries planted");
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let alerts = d.process(&delete(path.to_str().unwrap()));
            assert!(
                alerts.iter().any(|a| a.level() == Level::Critical),
                "planted canary {} watched",
                path.display()
            );
        }
        let alerts = d.process(&delete("/srv/partage/by-hand.pdf"));
        assert!(
            alerts.iter().any(|a| a.level() == Level::Critical),
            "configured canary still watched"
        );
    }
}

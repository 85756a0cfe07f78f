//! The agent's response state and the isolation lifecycle.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use vigie_event::{Event, Host, Outcome};

use crate::events::{self, Cause};
use crate::isolation::{self, IsolationSpec};
use crate::release::{self, Purpose};
use crate::state::{self, StateDir};

const ISOLATION_FILE: &str = "isolation.json";

/// What `isolation.json` holds while the host is isolated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationState {
    pub spec: IsolationSpec,
    pub since: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub alert_id: Option<String>,
    pub reason: Option<String>,
    /// SHA-256 of `nft list table inet vigie` right after applying: the
    /// watcher compares against it to see deletions and edits.
    pub listing_sha256: String,
}

/// `vigie agent status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state_dir: String,
    pub isolation: Option<IsolationState>,
    /// Whether the table is present and as applied (when isolated).
    pub table_intact: Option<bool>,
    pub quarantine: Vec<crate::quarantine::QuarantineMeta>,
    pub deny_list: crate::execblock::DenyList,
    pub bpf_lsm: String,
    #[serde(skip)]
    pub last_actions: Vec<Event>,
}

/// One agent's response actions over its state directory.
#[derive(Debug, Clone)]
pub struct Responder {
    state: StateDir,
    host: Host,
}

impl Responder {
    pub fn open(state_dir: &Path) -> Result<Self> {
        Ok(Responder {
            state: StateDir::open(state_dir)?,
            host: state::this_host(),
        })
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Record an event in the audit trail and hand it back.
    pub fn record(&self, ev: Event) -> Result<Event> {
        self.state.record(&ev)?;
        Ok(ev)
    }

    /// Serialise changes to the isolation state between processes (the
    /// agent's watcher and a `vigie agent isolate` in a shell).
    fn lock(&self, wait: bool) -> Result<Option<Flock<File>>> {
        let path = self.state.join(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let arg = if wait {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockExclusiveNonblock
        };
        match Flock::lock(f, arg) {
            Ok(l) => Ok(Some(l)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// The isolation in force, if any.
    pub fn isolation(&self) -> Result<Option<IsolationState>> {
        match self.state.read_optional(ISOLATION_FILE)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map(Some).with_context(|| {
                format!(
                    "{} is corrupt; the host stays as it is",
                    self.state.join(ISOLATION_FILE).display()
                )
            }),
        }
    }

    /// Apply the table, save it, cut flows, self-check. Caller holds the lock.
    fn apply_locked(
        &self,
        spec: &IsolationSpec,
        cause: &Cause,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<(String, isolation::SelfCheck)> {
        let table = isolation::render_table(spec)?;
        // Someone deleting the table at this very moment (a tamper attempt)
        // must not make the isolation fail: apply again, a few times.
        let mut listing = None;
        for _ in 0..3 {
            isolation::apply_table(&table)?;
            listing = isolation::current_listing()?;
            if listing.is_some() {
                break;
            }
        }
        let listing = listing.context("the table keeps vanishing right after it is applied")?;
        let st = IsolationState {
            spec: spec.clone(),
            since,
            actor: cause.actor.clone(),
            alert_id: cause.alert_id.clone(),
            reason: cause.reason.clone(),
            listing_sha256: isolation::listing_hash(&listing),
        };
        self.state.write_atomic(
            ISOLATION_FILE,
            &serde_json::to_vec_pretty(&st).expect("serialisable"),
            0o600,
        )?;
        let cut = match isolation::cut_flows(spec) {
            Ok(s) => s,
            Err(e) => format!("cutting open connections failed: {e:#}"),
        };
        let check = isolation::self_check(spec);
        Ok((cut, check))
    }

    /// Isolate the host (or change the allow-list of an isolation in force).
    pub fn isolate(&self, spec: &IsolationSpec, cause: &Cause) -> Result<Event> {
        spec.validate()?;
        let _lock = self.lock(true)?;
        match self.apply_locked(spec, cause, chrono::Utc::now()) {
            Ok((cut, check)) => {
                let outcome = if check.ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                };
                self.record(events::response(
                    &self.host,
                    "isolate",
                    &self.host.name,
                    cause,
                    outcome,
                    format!("table inet vigie applied; {cut}; {}", check.describe()),
                    Some("vigie agent release --code CODE".into()),
                ))
            }
            Err(e) => {
                self.record(events::response(
                    &self.host,
                    "isolate",
                    &self.host.name,
                    cause,
                    Outcome::Failure,
                    format!("isolation failed: {e:#}"),
                    None,
                ))?;
                Err(e)
            }
        }
    }

    /// Release with a code (offline break-glass). A wrong code is recorded.
    pub fn release_with_code(&self, code: &str, cause: &Cause) -> Result<Event> {
        let secret = self.state.secret()?;
        if !release::verify(&secret, Purpose::Release, code) {
            self.record(events::response(
                &self.host,
                "release",
                &self.host.name,
                cause,
                Outcome::Failure,
                "release refused: wrong or expired release code",
                None,
            ))?;
            bail!("wrong or expired release code; the host stays isolated");
        }
        self.release_authorised(cause)
    }

    /// Release an isolation the caller has authorised (the manager, or a
    /// checked code). Verified: the table must be gone afterwards.
    pub fn release_authorised(&self, cause: &Cause) -> Result<Event> {
        let _lock = self.lock(true)?;
        let was = self.isolation()?;
        isolation::delete_table()?;
        self.state.remove(ISOLATION_FILE)?;
        let gone = isolation::current_listing()?.is_none();
        let undo = was.as_ref().map(|w| {
            let mut s = String::from("vigie agent isolate");
            for a in &w.spec.allow {
                s.push_str(&format!(" --allow {a}"));
            }
            s
        });
        self.record(events::response(
            &self.host,
            "release",
            &self.host.name,
            cause,
            if gone {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            if gone {
                "table inet vigie removed; traffic restored"
            } else {
                "table inet vigie still present after delete"
            },
            undo,
        ))
    }

    /// Call first thing at agent start (before connecting anywhere): re-apply
    /// the isolation saved on disk, so a crash, kill or reboot changes nothing.
    pub fn reconcile(&self) -> Result<Vec<Event>> {
        let _lock = self.lock(true)?;
        let Some(st) = self.isolation()? else {
            if isolation::current_listing()?.is_some() {
                tracing::warn!(
                    "table inet vigie exists but the state directory has no isolation; left as it is"
                );
            }
            return Ok(Vec::new());
        };
        let cause = Cause {
            actor: "reconcile".into(),
            alert_id: st.alert_id.clone(),
            reason: st.reason.clone(),
        };
        let ev = match self.apply_locked(&st.spec, &cause, st.since) {
            Ok((cut, check)) => events::response(
                &self.host,
                "isolate",
                &self.host.name,
                &cause,
                if check.ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
                format!(
                    "isolation re-applied at start (isolated since {}); {cut}; {}",
                    st.since,
                    check.describe()
                ),
                Some("vigie agent release --code CODE".into()),
            ),
            Err(e) => events::response(
                &self.host,
                "isolate",
                &self.host.name,
                &cause,
                Outcome::Failure,
                format!("re-applying isolation at start failed: {e:#}"),
                None,
            ),
        };
        Ok(vec![self.record(ev)?])
    }

    /// One watcher step: if isolated and the table is missing or not as
    /// applied, restore it and return a tamper event and the re-apply event.
    pub fn check_once(&self) -> Result<Vec<Event>> {
        self.check_remembering(&mut None)
    }

    /// [`Self::check_once`], also restoring `isolation.json` if it vanished
    /// or was corrupted while `remembered` (the watcher's memory) says the
    /// host is isolated and no release was recorded since.
    pub fn check_remembering(&self, remembered: &mut Option<IsolationState>) -> Result<Vec<Event>> {
        // Someone is changing the isolation right now: look next time.
        let Some(_lock) = self.lock(false)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let st = match (self.isolation(), remembered.as_ref()) {
            (Ok(Some(st)), _) => st,
            (Ok(None), None) => return Ok(Vec::new()),
            (Ok(None), Some(r)) if self.released_since(r.since)? => {
                *remembered = None;
                return Ok(Vec::new());
            }
            (Err(e), None) => return Err(e),
            (Ok(None) | Err(_), Some(r)) => {
                let r = r.clone();
                out.push(self.record(events::tamper(
                    &self.host,
                    "isolation state removed or corrupted without a release; restored",
                ))?);
                self.state.write_atomic(
                    ISOLATION_FILE,
                    &serde_json::to_vec_pretty(&r).expect("serialisable"),
                    0o600,
                )?;
                r
            }
        };
        *remembered = Some(st.clone());
        let what = match isolation::current_listing()? {
            None => "table inet vigie was deleted",
            Some(l) if isolation::listing_hash(&l) != st.listing_sha256 => {
                "table inet vigie was edited"
            }
            Some(_) => return Ok(out),
        };
        let tamper = self.record(events::tamper(
            &self.host,
            format!("{what} while the host is isolated; restored"),
        ))?;
        let cause = Cause {
            actor: "watcher".into(),
            alert_id: st.alert_id.clone(),
            reason: Some(what.into()),
        };
        let table = isolation::render_table(&st.spec)?;
        let res = isolation::apply_table(&table).and_then(|()| {
            let l = isolation::current_listing()?.context("table missing after restore")?;
            let mut st = st.clone();
            st.listing_sha256 = isolation::listing_hash(&l);
            self.state.write_atomic(
                ISOLATION_FILE,
                &serde_json::to_vec_pretty(&st).expect("serialisable"),
                0o600,
            )?;
            isolation::cut_flows(&st.spec)
        });
        let ev = events::response(
            &self.host,
            "isolate",
            &self.host.name,
            &cause,
            if res.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            match &res {
                Ok(cut) => format!("table restored and verified by listing; {cut}"),
                Err(e) => format!("restoring the table failed: {e:#}"),
            },
            Some("vigie agent release --code CODE".into()),
        );
        out.push(tamper);
        out.push(self.record(ev)?);
        if let Ok(Some(now)) = self.isolation() {
            *remembered = Some(now);
        }
        Ok(out)
    }

    /// Whether a successful release was recorded after `since`.
    fn released_since(&self, since: chrono::DateTime<chrono::Utc>) -> Result<bool> {
        Ok(self.state.last_actions(200)?.iter().any(|e| {
            e.time >= since
                && matches!(&e.payload, vigie_event::Payload::Response(r)
                    if r.response.action == "release" && r.outcome == Outcome::Success)
        }))
    }

    /// Watch the table until `stop` is set, every `interval` (200 ms keeps the
    /// restore well under a second). Errors are logged, never fatal.
    pub fn watch(&self, stop: &AtomicBool, interval: Duration, mut on_event: impl FnMut(&Event)) {
        let mut remembered = None;
        while !stop.load(Ordering::Relaxed) {
            match self.check_remembering(&mut remembered) {
                Ok(evs) => evs.iter().for_each(&mut on_event),
                Err(e) => tracing::warn!("isolation watcher: {e:#}"),
            }
            std::thread::sleep(interval);
        }
    }

    /// Everything `vigie agent status` shows.
    pub fn status(&self, last: usize) -> Result<Status> {
        let isolation = self.isolation()?;
        let table_intact = match &isolation {
            None => None,
            Some(st) => Some(
                isolation::current_listing()?
                    .is_some_and(|l| isolation::listing_hash(&l) == st.listing_sha256),
            ),
        };
        Ok(Status {
            state_dir: self.state.path().display().to_string(),
            isolation,
            table_intact,
            quarantine: crate::quarantine::list(&self.state)?,
            deny_list: crate::execblock::DenyList::load(&self.state)?,
            bpf_lsm: crate::bpf_lsm_available().1,
            last_actions: self.state.last_actions(last)?,
        })
    }
}

impl Responder {
    /// Kill a process tree (see [`crate::kill`]); the event says which
    /// processes died, verified in /proc.
    pub fn kill(&self, pid: i32, protected: &[String], cause: &Cause) -> Result<Event> {
        self.kill_checked(pid, None, protected, cause)
    }

    /// [`Self::kill`], refusing if `pid` no longer has the start time
    /// `expected_start` (the process the alert is about has exited and its
    /// pid was reused).
    pub fn kill_checked(
        &self,
        pid: i32,
        expected_start: Option<u64>,
        protected: &[String],
        cause: &Cause,
    ) -> Result<Event> {
        let res = crate::kill::kill_tree(pid, protected, expected_start);
        let (outcome, detail, target) = match &res {
            Ok(r) if r.survivors.is_empty() => (
                Outcome::Success,
                format!(
                    "killed {} process(es) {:?}, each verified dead{}",
                    r.killed.len(),
                    r.killed,
                    if r.spared.is_empty() {
                        String::new()
                    } else {
                        format!("; spared protected {:?}", r.spared)
                    }
                ),
                format!("pid {pid} ({})", r.root_exe),
            ),
            Ok(r) => (
                Outcome::Failure,
                format!("still alive after SIGKILL: {:?}", r.survivors),
                format!("pid {pid} ({})", r.root_exe),
            ),
            Err(e) => (Outcome::Failure, format!("{e:#}"), format!("pid {pid}")),
        };
        let ev = self.record(events::response(
            &self.host,
            "kill",
            &target,
            cause,
            outcome,
            detail,
            Some(
                "a killed process cannot be revived; restart the program if it was legitimate"
                    .into(),
            ),
        ))?;
        res.map(|_| ev)
    }

    /// Quarantine a file (see [`crate::quarantine`]).
    pub fn quarantine(&self, path: &Path, cause: &Cause) -> Result<Event> {
        let res = crate::quarantine::quarantine(&self.state, path);
        let ev = match &res {
            Ok(m) => events::response(
                &self.host,
                "quarantine",
                &m.original_path,
                cause,
                if Path::new(&m.original_path).exists() || m.nlink > 1 {
                    Outcome::Failure
                } else {
                    Outcome::Success
                },
                format!(
                    "moved to quarantine id {} (sha256 {}, {} bytes, mode {:o}, owner {}:{}); original path verified empty{}",
                    m.id,
                    m.sha256,
                    m.size,
                    m.mode,
                    m.uid,
                    m.gid,
                    if m.nlink > 1 {
                        format!(
                            "; BUT {} other hard link(s) to the same content remain elsewhere (find / -samefile)",
                            m.nlink - 1
                        )
                    } else {
                        String::new()
                    }
                ),
                Some(format!("vigie agent restore {}", m.id)),
            ),
            Err(e) => events::response(
                &self.host,
                "quarantine",
                &path.display().to_string(),
                cause,
                Outcome::Failure,
                format!("{e:#}"),
                None,
            ),
        };
        let ev = self.record(ev)?;
        res.map(|_| ev)
    }

    /// Restore a quarantined file.
    pub fn restore(&self, id: &str, cause: &Cause) -> Result<Event> {
        let res = crate::quarantine::restore(&self.state, id);
        let ev = match &res {
            Ok(m) => events::response(
                &self.host,
                "restore",
                &m.original_path,
                cause,
                Outcome::Success,
                format!(
                    "restored quarantine id {id}; SHA-256 {} verified; owner, mode and times set back",
                    m.sha256
                ),
                Some(format!("vigie agent quarantine {}", m.original_path)),
            ),
            Err(e) => events::response(
                &self.host,
                "restore",
                id,
                cause,
                Outcome::Failure,
                format!("{e:#}"),
                None,
            ),
        };
        let ev = self.record(ev)?;
        res.map(|_| ev)
    }
}

impl Responder {
    /// Add a deny-list entry; a running [`crate::execblock::ExecBlocker`]
    /// picks it up within a fraction of a second.
    pub fn block(
        &self,
        entry: crate::execblock::DenyEntry,
        force: bool,
        cause: &Cause,
    ) -> Result<Event> {
        use crate::execblock::DenyEntry;
        let shown = match &entry {
            DenyEntry::Sha256(h) | DenyEntry::Path(h) => h.clone(),
        };
        let res = crate::execblock::add(&self.state, entry, force);
        let ev = match &res {
            Ok(e) => {
                let v = match e {
                    DenyEntry::Sha256(h) | DenyEntry::Path(h) => h.clone(),
                };
                events::response(
                    &self.host,
                    "block",
                    &v,
                    cause,
                    Outcome::Success,
                    "added to the execution deny list (denylist.json, re-read by the agent)",
                    Some(format!("vigie agent unblock {v}")),
                )
            }
            Err(e) => events::response(
                &self.host,
                "block",
                &shown,
                cause,
                Outcome::Failure,
                format!("{e:#}"),
                None,
            ),
        };
        let ev = self.record(ev)?;
        res.map(|_| ev)
    }

    pub fn unblock(&self, entry: &str, cause: &Cause) -> Result<Event> {
        let found = crate::execblock::remove(&self.state, entry)?;
        if !found {
            bail!("{entry} is not on the deny list");
        }
        self.record(events::response(
            &self.host,
            "unblock",
            entry,
            cause,
            Outcome::Success,
            "removed from the execution deny list",
            Some(format!("vigie agent block --path/--sha256 {entry}")),
        ))
    }
}

impl Responder {
    /// Decide and act on one alert: what the agent calls for each alert.
    ///
    /// An isolation already in force is left as it is: isolating again
    /// would redo the table and its ~1 s self-check for nothing, and
    /// replace who isolated, since when, why and any allow-list the manager
    /// gave it. (A corrupt `isolation.json` does not count as isolated.)
    pub fn on_alert(
        &self,
        policy: &crate::policy::Policy,
        alert: &vigie_event::Alert,
    ) -> Vec<Result<Event>> {
        let mut actions = crate::policy::decide(policy, alert, &self.host.name);
        if actions.contains(&crate::policy::Action::Isolate)
            && let Ok(Some(st)) = self.isolation()
        {
            tracing::info!(
                "alert {}: the host is already isolated (since {} by {}); isolation left as it is",
                alert.id,
                st.since,
                st.actor
            );
            actions.retain(|a| *a != crate::policy::Action::Isolate);
        }
        self.execute(policy, alert, &actions)
    }

    /// Carry out what [`crate::policy::decide`] returned for `alert`, in
    /// order. Each action gives its event (or the error, also recorded).
    pub fn execute(
        &self,
        policy: &crate::policy::Policy,
        alert: &vigie_event::Alert,
        actions: &[crate::policy::Action],
    ) -> Vec<Result<Event>> {
        use crate::policy::Action;
        let cause = Cause::policy(
            alert.id.to_string(),
            format!("{} ({})", alert.rule.name, alert.level()),
        );
        actions
            .iter()
            .map(|a| match a {
                Action::Kill { pid, start_ticks } => self.kill_checked(
                    *pid as i32,
                    *start_ticks,
                    &policy.protected_processes,
                    &cause,
                ),
                Action::Quarantine { path } => self.quarantine(Path::new(path), &cause),
                Action::Isolate => {
                    // No resolvers in the policy: keep the host's own, so
                    // the agent can still resolve its manager's name.
                    let mut spec = policy.isolation.clone();
                    if spec.resolvers.is_empty() {
                        spec.resolvers = isolation::system_resolvers();
                    }
                    self.isolate(&spec, &cause)
                }
            })
            .collect()
    }
}

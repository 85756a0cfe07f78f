//! Block execution of known-bad binaries, by SHA-256 or path, before they
//! run: fanotify permission events (`FAN_OPEN_EXEC_PERM`).
//!
//! A permission listener that stops answering freezes every exec on the
//! marked mounts, so the design fails open:
//! * decisions come from one dedicated thread that never does disk I/O and
//!   never takes a lock: the deny list is an `ArcSwap` snapshot, the hash
//!   cache (keyed by device, inode, mtime, ctime and size) belongs to that thread;
//! * a binary not in the cache is hashed by another thread; the decision
//!   waits at most [`HASH_DEADLINE`] and allows on timeout (the hash still
//!   lands in the cache for the next exec);
//! * any internal error or panic answers "allow";
//! * if the process dies, the kernel releases the group and allows every
//!   pending event.
//!
//! The deny list lives in `denylist.json` in the state directory and is
//! re-read when it changes (no restart). Entries that would block the system
//! itself (shells, init, the agent) are refused unless forced.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use arc_swap::ArcSwap;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags,
    Response,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vigie_event::{Event, Outcome};

use crate::events::{self, Cause};
use crate::state::StateDir;

/// How long a decision waits for a hash before allowing.
pub const HASH_DEADLINE: Duration = Duration::from_millis(250);
const FILE: &str = "denylist.json";

/// The deny list as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DenyList {
    /// Lower-case hex SHA-256 of denied executables.
    pub sha256: BTreeSet<String>,
    /// Absolute paths of denied executables.
    pub paths: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyEntry {
    Sha256(String),
    Path(String),
}

impl DenyList {
    pub fn load(state: &StateDir) -> Result<Self> {
        match state.read_optional(FILE)? {
            None => Ok(DenyList::default()),
            Some(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is corrupt", state.join(FILE).display())),
        }
    }

    pub fn save(&self, state: &StateDir) -> Result<()> {
        state.write_atomic(
            FILE,
            &serde_json::to_vec_pretty(self).expect("serialisable"),
            0o600,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.sha256.is_empty() && self.paths.is_empty()
    }
}

/// Binaries the system cannot live without: never denied unless forced.
fn critical_paths() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [
        "/bin/sh",
        "/bin/bash",
        "/bin/dash",
        "/usr/bin/sh",
        "/usr/bin/bash",
        "/usr/bin/dash",
        "/sbin/init",
        "/usr/sbin/init",
        "/lib/systemd/systemd",
        "/usr/lib/systemd/systemd",
        "/usr/bin/env",
        "/usr/bin/sudo",
        "/usr/bin/su",
        "/usr/sbin/sshd",
        "/usr/sbin/nft",
        "/usr/bin/login",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Ok(me) = std::env::current_exe() {
        v.push(me);
    }
    v
}

/// Why an entry would block the system, if it would.
pub fn system_critical(entry: &DenyEntry) -> Option<String> {
    let crit = critical_paths();
    match entry {
        DenyEntry::Path(p) => {
            let canon = std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
            crit.iter()
                .find(|c| {
                    *c == Path::new(p) || std::fs::canonicalize(c).is_ok_and(|cc| cc == canon)
                })
                .map(|c| format!("{p} is {} (a system binary)", c.display()))
        }
        DenyEntry::Sha256(h) => crit
            .iter()
            .filter(|c| c.is_file())
            .find(|c| crate::quarantine::sha256_file(c).is_ok_and(|x| x == *h))
            .map(|c| format!("{h} is the SHA-256 of {} (a system binary)", c.display())),
    }
}

/// Validate and normalise an entry.
pub fn normalise(entry: DenyEntry) -> Result<DenyEntry> {
    match entry {
        DenyEntry::Sha256(h) => {
            let h = h.trim().to_ascii_lowercase();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{h:?} is not a SHA-256 (64 hex digits)");
            }
            Ok(DenyEntry::Sha256(h))
        }
        DenyEntry::Path(p) => {
            if !p.starts_with('/') {
                bail!("{p:?}: give an absolute path");
            }
            Ok(DenyEntry::Path(p))
        }
    }
}

/// Add an entry (refusing system binaries unless `force`).
pub fn add(state: &StateDir, entry: DenyEntry, force: bool) -> Result<DenyEntry> {
    let entry = normalise(entry)?;
    if let Some(why) = system_critical(&entry)
        && !force
    {
        bail!("refused: {why}; denying it would break the system (use --force to insist)");
    }
    let mut l = DenyList::load(state)?;
    match &entry {
        DenyEntry::Sha256(h) => l.sha256.insert(h.clone()),
        DenyEntry::Path(p) => l.paths.insert(p.clone()),
    };
    l.save(state)?;
    Ok(entry)
}

/// Remove an entry (a SHA-256 or a path). Returns whether it was there.
pub fn remove(state: &StateDir, entry: &str) -> Result<bool> {
    let mut l = DenyList::load(state)?;
    let e = entry.trim();
    let found = l.sha256.remove(&e.to_ascii_lowercase()) | l.paths.remove(e);
    l.save(state)?;
    Ok(found)
}

/// Mount points worth marking on a real host: every mounted filesystem that
/// can hold executables (not proc, sysfs, cgroup, ...). The agent passes
/// these to [`ExecBlocker::start`].
pub fn executable_mounts() -> Vec<PathBuf> {
    const SKIP: &[&str] = &[
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "devpts",
        "mqueue",
        "debugfs",
        "tracefs",
        "securityfs",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "hugetlbfs",
        "autofs",
        "binfmt_misc",
        "rpc_pipefs",
        "nsfs",
        "efivarfs",
    ];
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || SKIP.contains(&f[2]) || f[3].split(',').any(|o| o == "noexec") {
            continue;
        }
        // /proc/self/mounts escapes spaces and the like as octal.
        let p = PathBuf::from(f[1].replace("\\040", " "));
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Cache key: device, inode, mtime, ctime (ns) and size. ctime is in it
/// because mtime can be set back by anyone who can write the file; ctime
/// cannot, so a rewritten binary is always hashed again.
type Key = (u64, u64, i64, i64, i64, i64, i64);

fn key_of(fd: &impl AsFd) -> Option<Key> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    Some((
        st.st_dev,
        st.st_ino,
        st.st_mtime,
        st.st_mtime_nsec,
        st.st_ctime,
        st.st_ctime_nsec,
        st.st_size,
    ))
}

struct HashJob {
    key: Key,
    fd: OwnedFd,
    reply: mpsc::Sender<(Key, String)>,
}

fn hash_fd(fd: OwnedFd) -> std::io::Result<String> {
    let f = std::fs::File::from(fd);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        // pread: the event's fd offset is shared with nobody else, but
        // positioned reads keep this independent of it anyway.
        let n = f.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(hex::encode(h.finalize()))
}

/// A running exec blocker. Dropping it (or [`ExecBlocker::stop`]) ends the
/// threads; the kernel then allows whatever is pending.
pub struct ExecBlocker {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ExecBlocker {
    /// Mark the mounts containing `mounts` for `FAN_OPEN_EXEC_PERM` and start
    /// answering. `on_event` receives each denial event (also recorded in the
    /// state directory); it runs on the event thread, never the decision one.
    pub fn start(
        state: StateDir,
        mounts: &[PathBuf],
        on_event: impl FnMut(&Event) + Send + 'static,
    ) -> Result<Self> {
        Self::start_with_deadline(state, mounts, HASH_DEADLINE, on_event)
    }

    /// [`Self::start`] with another hash deadline.
    pub fn start_with_deadline(
        state: StateDir,
        mounts: &[PathBuf],
        hash_deadline: Duration,
        on_event: impl FnMut(&Event) + Send + 'static,
    ) -> Result<Self> {
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .context("fanotify_init failed (needs root and CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")?;
        for m in mounts {
            fan.mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_MOUNT,
                MaskFlags::FAN_OPEN_EXEC_PERM,
                nix::fcntl::AT_FDCWD,
                Some(m.as_path()),
            )
            .with_context(|| format!("cannot mark mount of {}", m.display()))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let list = Arc::new(ArcSwap::from_pointee(DenyList::load(&state)?));
        let mut threads = Vec::new();

        // Reloader: re-reads the deny list when the file changes.
        {
            let (stop, list, state) = (stop.clone(), list.clone(), state.clone());
            threads.push(std::thread::spawn(move || {
                let mut seen: Option<SystemTime> = None;
                while !stop.load(Ordering::Relaxed) {
                    let m = std::fs::metadata(state.join(FILE))
                        .and_then(|m| m.modified())
                        .ok();
                    if m != seen {
                        match DenyList::load(&state) {
                            Ok(l) => {
                                list.store(Arc::new(l));
                                seen = m;
                            }
                            Err(e) => tracing::warn!("deny list not reloaded: {e:#}"),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }));
        }

        // Hasher: does the disk I/O the decision thread must not.
        let (job_tx, job_rx) = mpsc::channel::<HashJob>();
        threads.push(std::thread::spawn(move || {
            for job in job_rx {
                if let Ok(h) = hash_fd(job.fd) {
                    let _ = job.reply.send((job.key, h));
                }
            }
        }));

        // Events: recorded off the decision thread.
        let (ev_tx, ev_rx) = mpsc::channel::<Event>();
        {
            let state = state.clone();
            let mut on_event = on_event;
            threads.push(std::thread::spawn(move || {
                for ev in ev_rx {
                    if let Err(e) = state.record(&ev) {
                        tracing::warn!("cannot record exec-block event: {e:#}");
                    }
                    on_event(&ev);
                }
            }));
        }

        // Decisions.
        {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                decide_loop(fan, stop, list, job_tx, ev_tx, hash_deadline);
            }));
        }
        Ok(ExecBlocker { stop, threads })
    }

    pub fn stop(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The decision thread polls with a short timeout and then exits,
        // which closes the job and event channels and ends the others.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ExecBlocker {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

enum Verdict {
    Allow,
    /// Allowed without the check it needed (fail open): recorded.
    AllowUnchecked(String),
    Deny(String),
}

fn decide_loop(
    fan: Fanotify,
    stop: Arc<AtomicBool>,
    list: Arc<ArcSwap<DenyList>>,
    job_tx: mpsc::Sender<HashJob>,
    ev_tx: mpsc::Sender<Event>,
    hash_deadline: Duration,
) {
    let host = crate::state::this_host();
    let me = std::process::id() as i32;
    let mut cache: HashMap<Key, String> = HashMap::new();
    let (reply_tx, reply_rx) = mpsc::channel::<(Key, String)>();
    let hashing = Hashing {
        job_tx,
        reply_tx,
        reply_rx,
        deadline: hash_deadline,
    };
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = [PollFd::new(fan.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, PollTimeout::from(100u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::error!("fanotify poll failed: {e}; exec blocking stops (fail open)");
                return;
            }
        }
        let evs = match fan.read_events() {
            Ok(v) => v,
            Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => {
                tracing::error!("fanotify read failed: {e}; exec blocking stops (fail open)");
                return;
            }
        };
        for ev in evs {
            let Some(fd) = ev.fd() else { continue };
            let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decide(&ev, me, &list.load(), &mut cache, &hashing)
            }))
            .unwrap_or_else(|_| {
                Verdict::AllowUnchecked("internal error in the decision (fail open)".into())
            });
            let response = match &verdict {
                Verdict::Allow | Verdict::AllowUnchecked(_) => Response::FAN_ALLOW,
                Verdict::Deny(_) => Response::FAN_DENY,
            };
            if let Err(e) = fan.write_response(FanotifyResponse::new(fd, response)) {
                tracing::warn!("fanotify answer failed: {e}");
            }
            let (outcome, detail, undo) = match verdict {
                Verdict::Allow => continue,
                Verdict::Deny(d) => (
                    Outcome::Success,
                    format!("execution denied by fanotify for pid {}: {d}", ev.pid()),
                    true,
                ),
                Verdict::AllowUnchecked(d) => (
                    Outcome::Unknown,
                    format!("execution allowed unchecked for pid {}: {d}", ev.pid()),
                    false,
                ),
            };
            let path = fd_path(&ev).unwrap_or_default();
            let _ = ev_tx.send(events::response(
                &host,
                "block-exec",
                &path,
                &Cause {
                    actor: "deny-list".into(),
                    ..Cause::default()
                },
                outcome,
                detail,
                undo.then(|| format!("vigie agent unblock {path}")),
            ));
        }
    }
}

fn fd_path(ev: &FanotifyEvent) -> Option<String> {
    let fd = ev.fd()?;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .map(|p| p.display().to_string())
}

/// The decision thread's side of the hasher.
struct Hashing {
    job_tx: mpsc::Sender<HashJob>,
    reply_tx: mpsc::Sender<(Key, String)>,
    reply_rx: mpsc::Receiver<(Key, String)>,
    deadline: Duration,
}

fn decide(
    ev: &FanotifyEvent,
    me: i32,
    list: &DenyList,
    cache: &mut HashMap<Key, String>,
    hashing: &Hashing,
) -> Verdict {
    let Hashing {
        job_tx,
        reply_tx,
        reply_rx,
        deadline: hash_deadline,
    } = hashing;
    let hash_deadline = *hash_deadline;
    if ev.pid() == me || list.is_empty() {
        return Verdict::Allow;
    }
    let Some(fd) = ev.fd() else {
        return Verdict::Allow;
    };
    if !list.paths.is_empty()
        && let Some(p) = fd_path(ev)
        && list.paths.contains(&p)
    {
        return Verdict::Deny(format!("path {p} is on the deny list"));
    }
    if list.sha256.is_empty() {
        return Verdict::Allow;
    }
    // Hashes that arrived late (after an earlier timeout).
    while let Ok((k, h)) = reply_rx.try_recv() {
        cache.insert(k, h);
    }
    let Some(key) = key_of(&fd) else {
        return Verdict::Allow;
    };
    if !cache.contains_key(&key) {
        // Bound memory; a cleared cache only costs re-hashing.
        if cache.len() > 100_000 {
            cache.clear();
        }
        let Ok(dup) = fd.try_clone_to_owned() else {
            return Verdict::Allow;
        };
        if job_tx
            .send(HashJob {
                key,
                fd: dup,
                reply: reply_tx.clone(),
            })
            .is_err()
        {
            return Verdict::Allow;
        }
        let deadline = std::time::Instant::now() + hash_deadline;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match reply_rx.recv_timeout(left) {
                Ok((k, h)) => {
                    let done = k == key;
                    cache.insert(k, h);
                    if done {
                        break;
                    }
                }
                // Not hashed in time: allow now; the hash lands in the cache.
                Err(_) => {
                    return Verdict::AllowUnchecked(format!(
                        "hashing took over {} ms (the hash is cached for the next exec)",
                        hash_deadline.as_millis()
                    ));
                }
            }
        }
    }
    match cache.get(&key) {
        Some(h) if list.sha256.contains(h) => {
            Verdict::Deny(format!("SHA-256 {h} is on the deny list"))
        }
        _ => Verdict::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_entries() {
        let m = executable_mounts();
        assert!(m.contains(&PathBuf::from("/")), "{m:?}");
        assert!(!m.contains(&PathBuf::from("/proc")));
        assert!(normalise(DenyEntry::Sha256("xyz".into())).is_err());
        assert!(normalise(DenyEntry::Path("relative/x".into())).is_err());
        let h = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(
            normalise(DenyEntry::Sha256(h.into())).unwrap(),
            DenyEntry::Sha256(h.to_ascii_lowercase())
        );
        assert!(system_critical(&DenyEntry::Path("/bin/sh".into())).is_some());
        assert!(system_critical(&DenyEntry::Path("/tmp/nothing-here".into())).is_none());
    }
}

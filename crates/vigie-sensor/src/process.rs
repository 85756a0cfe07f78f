//! The process table: what the sensor knows about each live process, seeded
//! from /proc at start, updated by fork/exec/exit events, entries evicted a
//! little after exit (late events of a process still find it).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use vigie_event::{Group, Hash, Process, ProcessSummary, User};

use crate::raw::bytes_to_string;

/// How long an exited process stays in the table.
const EVICT_AFTER: Duration = Duration::from_secs(5);
/// Ancestors kept in `process.vigie.ancestors`.
const MAX_ANCESTORS: usize = 16;
/// Bytes of an ancestor's command line kept in `process.vigie.ancestors`
/// (the parent's is kept whole: Sigma's ParentCommandLine).
pub(crate) const ANCESTOR_CMDLINE_MAX: usize = 256;

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Clock ticks per second of /proc/<pid>/stat starttime (USER_HZ).
fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Converts kernel times (boot-time ns) to wall time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// Wall-clock ns minus boot-time ns, measured once at start.
    offset_ns: i128,
    tick_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let now = Utc::now().timestamp_nanos_opt().unwrap_or(0) as i128;
        Clock {
            offset_ns: now - boot,
            tick_ns: 1_000_000_000 / clk_tck(),
        }
    }

    pub fn wall(&self, boot_ns: u64) -> DateTime<Utc> {
        let ns = boot_ns as i128 + self.offset_ns;
        DateTime::from_timestamp_nanos(ns as i64)
    }

    /// Start time in clock ticks: the unit /proc uses, so ids made from
    /// /proc and from kernel events agree.
    pub fn ticks(&self, boot_ns: u64) -> u64 {
        boot_ns / self.tick_ns
    }

    pub fn ticks_to_boot_ns(&self, ticks: u64) -> u64 {
        ticks * self.tick_ns
    }
}

/// Inode of the network namespace at `path` (`/proc/PID/ns/net`, the
/// `N` of `net:[N]`); None if the process is gone.
pub(crate) fn netns_at(path: &str) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.ino() as u32)
}

/// Inode of a process's network namespace, from /proc (racy for processes
/// that may exit; the eBPF sensor reads it in the kernel instead).
pub(crate) fn netns_of(pid: u32) -> Option<u32> {
    netns_at(&format!("/proc/{pid}/ns/net"))
}

pub(crate) fn entity_id(pid: u32, start_ticks: u64) -> String {
    format!("{pid}-{start_ticks}")
}

#[derive(Debug, Clone)]
struct Entry {
    process: Process,
    start_ticks: u64,
    ppid: u32,
    exited: bool,
}

/// A process's parent summary and ancestors, as events carry them.
pub(crate) type Ancestry = (Option<Arc<ProcessSummary>>, Arc<[ProcessSummary]>);

#[derive(Default)]
pub(crate) struct ProcessTable {
    procs: HashMap<u32, Entry>,
    /// [`ProcessTable::ancestry`] by parent pid, built once and shared by
    /// every event of the parent's children until the table changes (any
    /// insert or removal clears it): copying the chain into each event was
    /// a fifth of the agent's CPU in a file storm.
    ancestry: HashMap<u32, Ancestry>,
    evictions: VecDeque<(Instant, u32, u64)>,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl ProcessTable {
    pub fn new() -> Self {
        let mut t = ProcessTable::default();
        t.load_names();
        t
    }

    fn load_names(&mut self) {
        for (file, map) in [
            ("/etc/passwd", &mut self.users),
            ("/etc/group", &mut self.groups),
        ] {
            if let Ok(text) = fs::read_to_string(file) {
                for line in text.lines() {
                    let mut it = line.split(':');
                    if let (Some(name), _, Some(id)) = (it.next(), it.next(), it.next())
                        && let Ok(id) = id.parse()
                    {
                        map.entry(id).or_insert_with(|| name.to_string());
                    }
                }
            }
        }
    }

    pub fn user(&self, uid: u32) -> User {
        User {
            id: Some(uid.to_string()),
            name: self.users.get(&uid).cloned(),
            domain: None,
        }
    }

    pub fn group(&self, gid: u32) -> Group {
        Group {
            id: Some(gid.to_string()),
            name: self.groups.get(&gid).cloned(),
        }
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Reads every /proc/<pid> (processes started before the sensor).
    pub fn seed_from_proc(&mut self, clock: &Clock) {
        self.forget_ancestry();
        let Ok(dir) = fs::read_dir("/proc") else {
            return;
        };
        for ent in dir.flatten() {
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if self.procs.contains_key(&pid) {
                continue; // an event already told us more
            }
            if let Some((p, ticks, ppid)) = self.read_proc(pid, clock) {
                self.procs.insert(
                    pid,
                    Entry {
                        process: p,
                        start_ticks: ticks,
                        ppid,
                        exited: false,
                    },
                );
            }
        }
    }

    /// One process from /proc; None if it is gone.
    pub fn read_proc(&self, pid: u32, clock: &Clock) -> Option<(Process, u64, u32)> {
        let base = format!("/proc/{pid}");
        let stat = fs::read(format!("{base}/stat")).ok()?;
        // comm may hold spaces and parentheses: fields follow the last ')'.
        let close = stat.iter().rposition(|&c| c == b')')?;
        let open = stat.iter().position(|&c| c == b'(')?;
        let comm = bytes_to_string(stat.get(open + 1..close)?);
        let rest = String::from_utf8_lossy(stat.get(close + 2..)?).into_owned();
        let f: Vec<&str> = rest.split(' ').collect();
        let ppid: u32 = f.get(1)?.parse().ok()?;
        let ticks: u64 = f.get(19)?.parse().ok()?;
        let status = fs::read_to_string(format!("{base}/status")).unwrap_or_default();
        let ids = |key: &str| -> Vec<u32> {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .map(|l| {
                    l[key.len()..]
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let uids = ids("Uid:");
        let gids = ids("Gid:");
        let args: Vec<String> = fs::read(format!("{base}/cmdline"))
            .unwrap_or_default()
            .split(|&c| c == 0)
            .filter(|a| !a.is_empty())
            .map(bytes_to_string)
            .collect();
        let exe = fs::read_link(format!("{base}/exe"))
            .map(|p| bytes_to_string(p.as_os_str().as_encoded_bytes()))
            .unwrap_or_default();
        let cwd = fs::read_link(format!("{base}/cwd"))
            .ok()
            .map(|p| bytes_to_string(p.as_os_str().as_encoded_bytes()));
        let login_uid = fs::read_to_string(format!("{base}/loginuid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let mut p = Process {
            entity_id: entity_id(pid, ticks),
            pid,
            start: Some(clock.wall(clock.ticks_to_boot_ns(ticks))),
            name: comm,
            executable: exe,
            command_line: args.join(" "),
            args_count: Some(args.len() as u32),
            args,
            working_directory: cwd,
            ..Process::default()
        };
        if let (Some(&ruid), Some(&euid)) = (uids.first(), uids.get(1)) {
            p.user = Some(self.user(euid));
            p.real_user = Some(self.user(ruid));
        }
        if let Some(&g) = gids.get(1) {
            p.group = Some(self.group(g));
        }
        p.vigie.ppid = Some(ppid);
        p.vigie.login_uid = login_uid;
        p.vigie.netns = netns_of(pid);
        Some((p, ticks, ppid))
    }

    /// The current entry for a pid if it is the process that started at
    /// `start_ticks` (pid reuse never mixes two processes).
    pub fn get(&self, pid: u32, start_ticks: u64) -> Option<&Process> {
        self.procs
            .get(&pid)
            .filter(|e| e.start_ticks == start_ticks)
            .map(|e| &e.process)
    }

    pub fn insert(&mut self, p: Process, start_ticks: u64, ppid: u32) {
        self.forget_ancestry();
        self.procs.insert(
            p.pid,
            Entry {
                process: p,
                start_ticks,
                ppid,
                exited: false,
            },
        );
    }

    /// The current entry for a pid, whatever its start time.
    pub fn get_any(&self, pid: u32) -> Option<Process> {
        self.procs.get(&pid).map(|e| e.process.clone())
    }

    pub fn remove(&mut self, pid: u32) {
        self.forget_ancestry();
        self.procs.remove(&pid);
    }

    /// Drops the shared ancestry chains (the table changed). An exec storm
    /// inserts thousands of processes a second: clearing an empty map must
    /// cost nothing.
    fn forget_ancestry(&mut self) {
        if !self.ancestry.is_empty() {
            self.ancestry.clear();
        }
    }

    pub fn mark_exited(&mut self, pid: u32, start_ticks: u64) {
        if let Some(e) = self.procs.get_mut(&pid)
            && e.start_ticks == start_ticks
        {
            e.exited = true;
            self.evictions
                .push_back((Instant::now() + EVICT_AFTER, pid, start_ticks));
        }
    }

    pub fn evict_expired(&mut self) {
        let now = Instant::now();
        while let Some(&(when, pid, ticks)) = self.evictions.front() {
            if when > now {
                break;
            }
            self.evictions.pop_front();
            if self
                .procs
                .get(&pid)
                .is_some_and(|e| e.exited && e.start_ticks == ticks)
            {
                self.forget_ancestry();
                self.procs.remove(&pid);
            }
        }
    }

    /// Parent summary (with its argv: `process.parent.args`) and ancestors
    /// (nearest first; their argv is in `command_line`) of a process.
    pub fn ancestry(&mut self, ppid: u32, parent_ticks: Option<u64>) -> Ancestry {
        let Some(parent) = self.procs.get(&ppid) else {
            return Default::default();
        };
        if parent_ticks.is_some_and(|t| t != parent.start_ticks) {
            return Default::default();
        }
        if let Some(known) = self.ancestry.get(&ppid) {
            return known.clone();
        }
        let mut ancestors = Vec::new();
        let (mut cur, mut seen) = (parent.ppid, ppid);
        while ancestors.len() < MAX_ANCESTORS && cur != 0 && cur != seen {
            let Some(e) = self.procs.get(&cur) else {
                break;
            };
            // Without `args` (the command line says the same) and with the
            // command line cut at ANCESTOR_CMDLINE_MAX bytes: a long-lived
            // ancestor with a long command line (an interpreter with its
            // script inline, a service with its whole environment) would
            // otherwise be copied and serialised into every event of every
            // descendant. Its own exec event has it in full.
            let p = &e.process;
            ancestors.push(ProcessSummary {
                entity_id: p.entity_id.clone(),
                pid: p.pid,
                name: p.name.clone(),
                executable: p.executable.clone(),
                command_line: cut(&p.command_line, ANCESTOR_CMDLINE_MAX),
                args: Vec::new(),
                start: p.start,
                user: p.user.clone(),
            });
            (seen, cur) = (cur, e.ppid);
        }
        let built: Ancestry = (
            Some(Arc::new(ProcessSummary::from(&parent.process))),
            ancestors.into(),
        );
        // Bounded: the table is cleared on every insert and removal, so
        // this only fills while nothing starts or ends.
        if self.ancestry.len() >= 4096 {
            self.ancestry.clear();
        }
        self.ancestry.insert(ppid, built.clone());
        built
    }
}

/// What the kernel saw of an executable at exec: device (kernel
/// encoding), inode, size, mtime (s, ns).
pub(crate) type KernelFileKey = (u64, u64, i64, i64, u32);

/// SHA-256 of executables, cached by (device, inode, mtime, size).
#[derive(Default)]
pub(crate) struct HashCache {
    cache: HashMap<(u64, u64, i64, i64, u64), String>,
    /// The same hashes by what the kernel reported at exec: a known binary
    /// costs no open and no stat (an exec storm runs one binary thousands
    /// of times).
    by_kernel: HashMap<KernelFileKey, String>,
    max_size: u64,
}

impl HashCache {
    pub fn new(max_size: u64) -> Self {
        HashCache {
            cache: HashMap::new(),
            by_kernel: HashMap::new(),
            max_size,
        }
    }

    /// [`HashCache::sha256`] of an executable the kernel described with
    /// `key`; a file whose metadata no longer matches `key` when we open
    /// it (replaced or modified since the exec) is not hashed.
    pub fn sha256_exec(
        &mut self,
        key: KernelFileKey,
        path: &Path,
        fallback: Option<&Path>,
    ) -> Option<String> {
        if let Some(h) = self.by_kernel.get(&key) {
            return Some(h.clone());
        }
        let (kdev, kino, ksize, ksec, knsec) = key;
        let f = fs::File::open(path)
            .ok()
            .or_else(|| fallback.and_then(|p| fs::File::open(p).ok()))?;
        let m = f.metadata().ok()?;
        // Kernel dev_t is major<<20|minor; user space encodes it otherwise.
        let (maj, min) = (kdev >> 20, kdev & 0xfffff);
        let same = m.ino() == kino
            && libc::major(m.dev()) as u64 == maj
            && libc::minor(m.dev()) as u64 == min
            && m.size() as i64 == ksize
            && m.mtime() == ksec
            && m.mtime_nsec() == knsec as i64;
        if !same {
            return None;
        }
        let h = self.hash_open(f, &m)?;
        if self.by_kernel.len() > 8192 {
            self.by_kernel.clear(); // bounded memory; cheap to refill
        }
        self.by_kernel.insert(key, h.clone());
        Some(h)
    }

    /// Hashes `path` (or `fallback`, e.g. /proc/<pid>/exe, if the path is
    /// gone). `expect` is the kernel's (dev, ino) of the file that ran: a
    /// file replaced since is not hashed, rather than hashed wrongly.
    pub fn sha256(
        &mut self,
        path: &Path,
        fallback: Option<&Path>,
        expect: Option<(u64, u64)>,
    ) -> Option<String> {
        let f = fs::File::open(path)
            .ok()
            .or_else(|| fallback.and_then(|p| fs::File::open(p).ok()))?;
        let m = f.metadata().ok()?;
        if !m.is_file() || m.len() > self.max_size {
            return None;
        }
        if let Some((kdev, kino)) = expect {
            // Kernel dev_t is major<<20|minor; user space encodes it otherwise.
            let (maj, min) = (kdev >> 20, kdev & 0xfffff);
            let udev = m.dev();
            if m.ino() != kino || libc::major(udev) as u64 != maj || libc::minor(udev) as u64 != min
            {
                return None;
            }
        }
        self.hash_open(f, &m)
    }

    /// The hash of an open file with metadata `m`, from the cache or read.
    fn hash_open(&mut self, mut f: fs::File, m: &fs::Metadata) -> Option<String> {
        if !m.is_file() || m.len() > self.max_size {
            return None;
        }
        let key = (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len());
        if let Some(h) = self.cache.get(&key) {
            return Some(h.clone());
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let h = hex::encode(hasher.finalize());
        if self.cache.len() > 8192 {
            self.cache.clear(); // bounded memory; cheap to refill
        }
        self.cache.insert(key, h.clone());
        Some(h)
    }
}

pub(crate) fn hash_of(h: Option<String>) -> Hash {
    Hash { sha256: h }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, cmd: &str) -> Process {
        Process {
            entity_id: entity_id(pid, 1),
            pid,
            name: format!("p{pid}"),
            command_line: cmd.into(),
            args: cmd.split(' ').map(str::to_string).collect(),
            ..Process::default()
        }
    }

    #[test]
    fn ancestors_carry_a_bounded_command_line_and_the_parent_its_argv() {
        let mut t = ProcessTable::default();
        let long = format!("python3 -c {}", "é".repeat(400));
        t.insert(proc(1, "/sbin/init"), 1, 0);
        t.insert(proc(10, &long), 1, 1);
        t.insert(proc(20, "bash -i"), 1, 10);
        let (parent, ancestors) = t.ancestry(20, Some(1));
        let parent = parent.unwrap();
        assert_eq!(parent.args, ["bash", "-i"], "the parent keeps its argv");
        assert_eq!(ancestors.len(), 2);
        let a = &ancestors[0];
        assert_eq!(a.pid, 10);
        assert!(a.args.is_empty(), "ancestors carry the command line only");
        assert!(a.command_line.len() <= ANCESTOR_CMDLINE_MAX);
        assert!(long.starts_with(&a.command_line), "cut, not altered");
        assert!(a.command_line.len() > ANCESTOR_CMDLINE_MAX - 4);
        assert_eq!(ancestors[1].command_line, "/sbin/init");
    }

    /// Children of one parent share its chain until the table changes; an
    /// exec of an ancestor or its eviction is seen by the next event.
    #[test]
    fn shared_ancestry_follows_the_table() {
        let mut t = ProcessTable::default();
        t.insert(proc(1, "/sbin/init"), 1, 0);
        t.insert(proc(10, "sshd"), 1, 1);
        t.insert(proc(20, "bash -i"), 1, 10);
        let first = t.ancestry(20, Some(1));
        let again = t.ancestry(20, Some(1));
        assert!(Arc::ptr_eq(&first.1, &again.1), "built once, then shared");
        assert!(Arc::ptr_eq(
            first.0.as_ref().unwrap(),
            again.0.as_ref().unwrap()
        ));
        // The grand-parent execs something else.
        t.insert(proc(10, "sshd: alice [priv]"), 1, 1);
        let (_, ancestors) = t.ancestry(20, Some(1));
        assert_eq!(ancestors[0].command_line, "sshd: alice [priv]");
        // The parent execs.
        t.insert(proc(20, "vim notes"), 1, 10);
        let (parent, _) = t.ancestry(20, Some(1));
        assert_eq!(parent.unwrap().command_line, "vim notes");
        // The grand-parent exits and is evicted.
        t.mark_exited(10, 1);
        t.evictions.iter_mut().for_each(|e| e.0 = Instant::now());
        t.evict_expired();
        let (parent, ancestors) = t.ancestry(20, Some(1));
        assert!(parent.is_some());
        assert!(ancestors.is_empty(), "{ancestors:?}");
        // Another start time of the same pid is not this parent.
        assert_eq!(t.ancestry(20, Some(2)), Default::default());
    }
}

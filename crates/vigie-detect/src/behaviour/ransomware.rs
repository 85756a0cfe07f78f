//! The ransomware detector: per process (or worker pool), what it did to
//! files within a window, scored on evidence that ordinary work (compilers,
//! archivers, package managers, backups, log rotation) does not produce.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigie_event::{
    Alert, Event, Fields, FileAction, FileEvent, Level, Payload, Process, ProcessAction, RuleRef,
};

/// `rule.id` of the mass-encryption alert.
pub const RANSOMWARE_RULE_ID: &str = "5b0c1f4e-2a7d-4c39-9e61-3f8a0d2b7c01";
/// `rule.id` of the canary alert.
pub const CANARY_RULE_ID: &str = "5b0c1f4e-2a7d-4c39-9e61-3f8a0d2b7c02";
/// `rule.id` of the backup/shadow-copy deletion alert.
pub const BACKUP_RULE_ID: &str = "5b0c1f4e-2a7d-4c39-9e61-3f8a0d2b7c03";

/// Extensions of text formats: random-looking bytes there mean the content
/// is no longer what the name says.
const TEXT_EXTS: &[&str] = &[
    "txt", "csv", "md", "rtf", "html", "htm", "xml", "json", "yaml", "yml", "ini", "conf", "cfg",
    "log", "sql", "c", "h", "cpp", "rs", "py", "js", "ts", "java", "php", "sh", "tex", "eml",
    "vcf", "ics", "svg", "css",
];
/// Extensions of formats with a magic number the sampler recognises: a file
/// so named whose first bytes show no known format was rewritten.
const MAGIC_EXTS: &[&str] = &[
    "pdf", "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "zip", "docx", "xlsx",
    "pptx", "odt", "ods", "odp", "epub", "gz", "bz2", "xz", "7z", "rar", "tar", "mp3", "mp4",
    "avi", "mkv", "wav", "flac", "ogg", "sqlite", "doc", "xls", "ppt", "msg", "psd", "exe", "dll",
    "elf",
];
/// Extensions appended by ordinary tools when they rename (backups, package
/// managers, editors): never counted as a ransomware extension.
const BENIGN_APPENDED: &[&str] = &[
    "lz4",
    "lz",
    "lzma",
    "lzo",
    "br",
    "sz",
    "z",
    "bak",
    "old",
    "orig",
    "tmp",
    "temp",
    "save",
    "swp",
    "part",
    "new",
    "prev",
    "backup",
    "dpkg-old",
    "dpkg-new",
    "dpkg-dist",
    "dpkg-bak",
    "dpkg-tmp",
    "ucf-old",
    "ucf-dist",
    "rpmsave",
    "rpmnew",
    "lock",
    "gz",
    "xz",
    "bz2",
    "zst",
];
/// Extensions of backup files (their mass deletion is suspicious).
const BACKUP_EXTS: &[&str] = &[
    "bak", "backup", "bkp", "bkf", "vbk", "vib", "vbm", "vrb", "tib", "wbcat", "dmp", "snap",
];
/// Words in a ransom note's name.
const NOTE_WORDS: &[&str] = &[
    "readme",
    "read_me",
    "read-me",
    "decrypt",
    "recover",
    "restore",
    "how_to",
    "howto",
    "how-to",
    "ransom",
    "unlock",
    "instruction",
    "!!!",
    "_help_",
    "help_",
    "your_files",
    "files_encrypted",
];

/// Settings (thresholds in files; times in seconds). The defaults fire on
/// tens of files, not thousands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RansomwareConfig {
    /// Evidence older than this is forgotten (sliding window).
    pub window_secs: u64,
    /// A process with no file activity for this long is forgotten.
    pub idle_secs: u64,
    /// Files rewritten to random-looking content that contradicts what they
    /// were (name, magic number, earlier entropy): critical alone.
    pub encrypted_files: usize,
    /// Fewer encrypted files suffice with a second signal (same new
    /// extension on many files, ransom notes, backup deletion).
    pub corroborated_files: usize,
    /// Files renamed to the same new extension, as a second signal.
    pub same_extension: usize,
    /// Directories that received the same note-like file, as a second signal.
    pub note_dirs: usize,
    /// Backup files (`.bak`, `.vbk`, ...) deleted by one process: high alert.
    pub backup_deletes: usize,
    /// Canary files: any write, rename, truncate or delete is critical.
    pub canaries: Vec<String>,
    /// Executables never scored (exact paths).
    pub ignore_executables: Vec<String>,
    /// Processes tracked at once; the least recently active is dropped.
    pub max_processes: usize,
    /// Files remembered per process; the oldest is dropped.
    pub max_files: usize,
}

impl Default for RansomwareConfig {
    fn default() -> Self {
        RansomwareConfig {
            window_secs: 300,
            idle_secs: 600,
            encrypted_files: 10,
            corroborated_files: 5,
            same_extension: 5,
            note_dirs: 3,
            backup_deletes: 10,
            canaries: Vec::new(),
            ignore_executables: Vec::new(),
            max_processes: 4096,
            max_files: 2048,
        }
    }
}

/// The process whose tree the response should kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub entity_id: String,
    pub executable: String,
}

/// The process an alert of this module is about: the acting process, or
/// its parent when the actor is a worker forked from the same executable
/// (kill the parent's tree and the whole pool goes).
pub fn kill_target(alert: &Alert) -> Option<Target> {
    let p = alert.event()?.process()?;
    Some(leader(p))
}

fn leader(p: &Process) -> Target {
    match p.parent.as_deref() {
        Some(parent)
            if !p.executable.is_empty() && parent.executable == p.executable && parent.pid > 1 =>
        {
            Target {
                pid: parent.pid,
                entity_id: parent.entity_id.clone(),
                executable: parent.executable.clone(),
            }
        }
        _ => Target {
            pid: p.pid,
            entity_id: p.entity_id.clone(),
            executable: p.executable.clone(),
        },
    }
}

const HIGH: u8 = 1; // random-looking content with no known format header
const CHANGED: u8 = 2; // ...that contradicts the name or the earlier content
const APPENDED: u8 = 4; // renamed to gain a new, unusual extension

#[derive(Debug, Clone)]
struct FileState {
    first: DateTime<Utc>,
    flags: u8,
    new_ext: Option<String>,
}

impl FileState {
    fn encrypted(&self) -> bool {
        self.flags & HIGH != 0 && self.flags & (CHANGED | APPENDED) != 0
    }
}

struct Group {
    target: Target,
    last_seen: DateTime<Utc>,
    files: HashMap<String, FileState>,
    order: VecDeque<(DateTime<Utc>, String)>,
    /// Written path without its last extension → path (copy-then-delete).
    stems: HashMap<String, String>,
    high: usize,
    encrypted: usize,
    exts: HashMap<String, usize>,
    notes: HashMap<String, HashSet<String>>,
    backup_deletes: usize,
    backup_cmds: Vec<String>,
    examples: Vec<Event>,
    alerted: bool,
    backup_alerted: bool,
}

impl Group {
    fn new(target: Target, now: DateTime<Utc>) -> Self {
        Group {
            target,
            last_seen: now,
            files: HashMap::new(),
            order: VecDeque::new(),
            stems: HashMap::new(),
            high: 0,
            encrypted: 0,
            exts: HashMap::new(),
            notes: HashMap::new(),
            backup_deletes: 0,
            backup_cmds: Vec::new(),
            examples: Vec::new(),
            alerted: false,
            backup_alerted: false,
        }
    }

    fn account(&mut self, f: &FileState, sign: isize) {
        let add = |n: &mut usize| *n = n.saturating_add_signed(sign);
        if f.flags & HIGH != 0 {
            add(&mut self.high);
        }
        if f.encrypted() {
            add(&mut self.encrypted);
        }
        if f.flags & APPENDED != 0
            && let Some(x) = &f.new_ext
        {
            let n = self.exts.entry(x.clone()).or_default();
            add(n);
            if *n == 0 {
                self.exts.remove(x);
            }
        }
    }

    fn remove(&mut self, path: &str) -> Option<FileState> {
        let f = self.files.remove(path)?;
        self.account(&f, -1);
        if let Some(stem) = stem(path) {
            self.stems.remove(stem);
        }
        Some(f)
    }

    fn upsert(&mut self, path: &str, f: FileState, max_files: usize) {
        let first = f.first;
        if let Some(old) = self.files.remove(path) {
            self.account(&old, -1);
        } else {
            self.order.push_back((first, path.to_string()));
        }
        self.account(&f, 1);
        self.files.insert(path.to_string(), f);
        if let Some(stem) = stem(path) {
            self.stems.insert(stem.to_string(), path.to_string());
        }
        while self.files.len() > max_files {
            let Some((_, p)) = self.order.pop_front() else {
                break;
            };
            self.remove(&p);
        }
        // A file written again and again leaves stale entries in `order`:
        // rebuild it from the live files when it grows past a bound.
        if self.order.len() > 4 * max_files.max(16) {
            let mut live: Vec<_> = self
                .files
                .iter()
                .map(|(p, f)| (f.first, p.clone()))
                .collect();
            live.sort_unstable();
            self.order = live.into();
        }
    }

    /// Forgets files first seen before `cutoff`.
    fn prune(&mut self, cutoff: DateTime<Utc>) {
        while let Some((t, _)) = self.order.front() {
            if *t >= cutoff {
                break;
            }
            let (t, p) = self.order.pop_front().expect("front");
            if self.files.get(&p).is_some_and(|f| f.first == t) {
                self.remove(&p);
            }
        }
    }

    fn top_ext(&self) -> Option<(&str, usize)> {
        self.exts
            .iter()
            .max_by_key(|(x, n)| (**n, std::cmp::Reverse(x.as_str())))
            .map(|(x, n)| (x.as_str(), *n))
    }

    fn top_note(&self) -> Option<(&str, usize)> {
        self.notes
            .iter()
            .max_by_key(|(x, d)| (d.len(), std::cmp::Reverse(x.as_str())))
            .map(|(x, d)| (x.as_str(), d.len()))
    }
}

/// The ransomware behaviour detector. Feed it every event (file, process and
/// log events; others are ignored) in time order.
pub struct Ransomware {
    cfg: RansomwareConfig,
    canaries: HashSet<String>,
    canary_hits: HashSet<(String, String)>,
    groups: HashMap<String, Group>,
    seen: u64,
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn ext_of(name: &str) -> Option<&str> {
    name.rsplit_once('.')
        .filter(|(s, e)| !s.is_empty() && !e.is_empty())
        .map(|(_, e)| e)
}

/// The path without its last extension.
fn stem(path: &str) -> Option<&str> {
    let name = name_of(path);
    let (s, _) = name.rsplit_once('.').filter(|(s, _)| !s.is_empty())?;
    Some(&path[..path.len() - name.len() + s.len()])
}

/// Entropy a sample of `n` random bytes reaches, less a margin: an
/// estimate of 8 bits/byte minus the small-sample bias (Miller-Madow).
fn random_threshold(n: u64) -> f32 {
    let n = n.clamp(1, 64 * 1024) as f64;
    (8.0 - 255.0 / (2.0 * n * std::f64::consts::LN_2) - 0.5).max(5.5) as f32
}

fn is_note_name(name: &str) -> bool {
    let l = name.to_ascii_lowercase();
    NOTE_WORDS.iter().any(|w| l.contains(w))
}

/// The new extension a rename gave, when it is the kind ransomware adds:
/// `a.docx` → `a.docx.locked`, or `a.docx` → `a.locked`.
fn appended_ext<'a>(old: &str, new: &'a str) -> Option<&'a str> {
    let (on, nn) = (name_of(old), name_of(new));
    let x = if let Some(rest) = nn.strip_prefix(on).and_then(|r| r.strip_prefix('.')) {
        rest
    } else {
        let (os, oe) = on.rsplit_once('.')?;
        let (ns, ne) = nn.rsplit_once('.')?;
        if os != ns || oe == ne || os.is_empty() {
            return None;
        }
        ne
    };
    let l = x.to_ascii_lowercase();
    let benign = x.is_empty()
        || x.len() > 32
        || x.bytes().all(|c| c.is_ascii_digit())
        || BENIGN_APPENDED.contains(&l.as_str())
        || TEXT_EXTS.contains(&l.as_str())
        || MAGIC_EXTS.contains(&l.as_str());
    (!benign).then_some(x)
}

/// Command lines that destroy shadow copies, backups or snapshots.
fn backup_destruction(cmd: &str) -> bool {
    let c = cmd.to_ascii_lowercase();
    let has = |w: &str| c.contains(w);
    (has("vssadmin") && (has("delete shadows") || has("resize shadowstorage")))
        || (has("wmic") && has("shadowcopy") && has("delete"))
        || (has("win32_shadowcopy") && (has("delete") || has("remove-")))
        || (has("wbadmin") && has("delete"))
        || (has("bcdedit") && (has("recoveryenabled no") || has("ignoreallfailures")))
        || (has("btrfs") && has("subvolume") && (has(" delete") || has(" del ")))
        || (has("snapper") && (has(" delete") || has(" rm ")))
        || (has("zfs") && has("destroy") && c.contains('@'))
        || (has("timeshift") && has("--delete"))
        || (has("lvremove") && has("snap"))
}

impl Ransomware {
    pub fn new(cfg: RansomwareConfig) -> Self {
        let canaries = cfg.canaries.iter().cloned().collect();
        Ransomware {
            cfg,
            canaries,
            canary_hits: HashSet::new(),
            groups: HashMap::new(),
            seen: 0,
        }
    }

    pub fn config(&self) -> &RansomwareConfig {
        &self.cfg
    }

    /// Replaces the canary paths (e.g. from [`super::Canaries::paths`]).
    pub fn set_canaries(&mut self, paths: impl IntoIterator<Item = String>) {
        self.canaries = paths.into_iter().collect();
    }

    /// Processes tracked now (for tests and health counters).
    pub fn tracked(&self) -> usize {
        self.groups.len()
    }

    /// One event in, alerts out.
    pub fn process(&mut self, ev: &Event) -> Vec<Alert> {
        self.seen += 1;
        if self.seen.is_multiple_of(1024) {
            self.expire(ev.time);
        }
        match &ev.payload {
            Payload::File(f) => self.file(ev, f),
            Payload::Process(p) if p.action == ProcessAction::Exec => {
                self.command(ev, Some(&p.process))
            }
            Payload::Log(_) => self.command(ev, None),
            _ => Vec::new(),
        }
    }

    /// Drops processes idle for `idle_secs`.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        let idle = TimeDelta::seconds(self.cfg.idle_secs as i64);
        self.groups.retain(|_, g| now - g.last_seen < idle);
        if self.canary_hits.len() > 65_536 {
            self.canary_hits.clear();
        }
    }

    fn group(&mut self, p: &Process, now: DateTime<Utc>) -> &mut Group {
        let target = leader(p);
        let key = target.entity_id.clone();
        if !self.groups.contains_key(&key) && self.groups.len() >= self.cfg.max_processes {
            self.expire(now);
            if self.groups.len() >= self.cfg.max_processes
                && let Some(oldest) = self
                    .groups
                    .iter()
                    .min_by_key(|(_, g)| g.last_seen)
                    .map(|(k, _)| k.clone())
            {
                self.groups.remove(&oldest);
            }
        }
        let window = TimeDelta::seconds(self.cfg.window_secs as i64);
        let g = self
            .groups
            .entry(key)
            .or_insert_with(|| Group::new(target, now));
        if now > g.last_seen {
            g.last_seen = now;
        }
        g.prune(now - window);
        g
    }

    fn file(&mut self, ev: &Event, fe: &FileEvent) -> Vec<Alert> {
        let mut out = Vec::new();
        let p = &fe.process;
        // Canaries first: any process, no threshold.
        if !self.canaries.is_empty()
            && matches!(
                fe.action,
                FileAction::Write | FileAction::Rename | FileAction::Delete | FileAction::Truncate
            )
        {
            let hit = [Some(&fe.file.path), fe.file.vigie.original_path.as_ref()]
                .into_iter()
                .flatten()
                .find(|path| self.canaries.contains(*path))
                .cloned();
            if let Some(path) = hit
                && self
                    .canary_hits
                    .insert((leader(p).entity_id.clone(), path.clone()))
            {
                out.push(canary_alert(ev, fe, &path));
            }
        }
        if self.cfg.ignore_executables.contains(&p.executable) {
            return out;
        }
        let now = ev.time;
        let max_files = self.cfg.max_files;
        let g = self.group(p, now);
        let file = &fe.file;
        let path = file.path.as_str();
        let mut evidence = false;
        match fe.action {
            FileAction::Write | FileAction::Rename => {
                let mut st = match fe.action {
                    FileAction::Rename => file
                        .vigie
                        .original_path
                        .as_deref()
                        .and_then(|o| g.remove(o)),
                    _ => g.remove(path),
                }
                .unwrap_or(FileState {
                    first: now,
                    flags: 0,
                    new_ext: None,
                });
                // The name the content is judged against: before the rename.
                let judged = match fe.action {
                    FileAction::Rename => file.vigie.original_path.as_deref().unwrap_or(path),
                    _ => path,
                };
                if let Some(e) = file.vigie.entropy {
                    let n = file.size.or(file.vigie.bytes_written).unwrap_or(0);
                    let high = n >= 64 && file.vigie.header.is_none() && e >= random_threshold(n);
                    if high {
                        st.flags |= HIGH;
                        let ext = ext_of(name_of(judged)).map(|x| x.to_ascii_lowercase());
                        let named = ext
                            .as_deref()
                            .is_some_and(|x| TEXT_EXTS.contains(&x) || MAGIC_EXTS.contains(&x));
                        let was_lower = file.vigie.previous_entropy.is_some_and(|pe| pe < e - 1.0);
                        if named || was_lower || file.vigie.previous_header.is_some() {
                            st.flags |= CHANGED;
                        }
                    } else if fe.action == FileAction::Write {
                        // Rewritten to something structured: not encrypted.
                        st.flags &= !(HIGH | CHANGED);
                    }
                }
                if fe.action == FileAction::Rename
                    && let Some(old) = &file.vigie.original_path
                    && let Some(x) = appended_ext(old, path)
                {
                    st.flags |= APPENDED;
                    st.new_ext = Some(x.to_string());
                }
                evidence = st.encrypted();
                g.upsert(path, st, max_files);
                // A note: the same text-like, note-named file in many dirs.
                let name = name_of(path);
                if fe.action == FileAction::Write
                    && is_note_name(name)
                    && file.vigie.entropy.is_none_or(|e| e < 6.0)
                    && (g.notes.len() < 64 || g.notes.contains_key(name))
                {
                    let dirs = g.notes.entry(name.to_string()).or_default();
                    if dirs.len() < 256 {
                        dirs.insert(dir_of(path).to_string());
                    }
                }
            }
            FileAction::Delete => {
                // An encrypted copy written next to it, original deleted.
                if let Some(copy) = g.stems.get(path).cloned()
                    && let Some(mut st) = g.remove(&copy)
                {
                    // Not for compressors (`lz4 --rm`, `zstd --rm`): their
                    // extensions are not unusual.
                    if st.flags & HIGH != 0
                        && let Some(x) = appended_ext(path, &copy)
                    {
                        st.flags |= CHANGED | APPENDED;
                        st.new_ext = Some(x.to_string());
                    }
                    evidence = st.encrypted();
                    g.upsert(&copy, st, max_files);
                } else {
                    g.remove(path);
                }
                let ext = ext_of(name_of(path)).map(|x| x.to_ascii_lowercase());
                if ext.is_some_and(|x| BACKUP_EXTS.contains(&x.as_str())) {
                    g.backup_deletes += 1;
                }
            }
            _ => {}
        }
        if evidence && g.examples.len() < 5 {
            g.examples.push(ev.clone());
        }
        if let Some(a) = self.verdict(ev, &leader(p).entity_id) {
            out.push(a);
        }
        out
    }

    fn command(&mut self, ev: &Event, p: Option<&Process>) -> Vec<Alert> {
        let Some(cmd) = ev
            .field("CommandLine")
            .and_then(|v| v.to_text().map(|c| c.into_owned()))
        else {
            return Vec::new();
        };
        if !backup_destruction(&cmd) {
            return Vec::new();
        }
        let Some(p) = p else {
            // A Windows log record: no process state to score, alert now.
            return vec![backup_alert(ev, &[cmd], 0, None)];
        };
        let key = leader(p).entity_id;
        // Also count it for the parent when the parent is being watched:
        // the encryptor runs `vssadmin`, it does not become it.
        if let Some(parent) = p.parent.as_deref()
            && let Some(pg) = self.groups.get_mut(&parent.entity_id)
            && pg.backup_cmds.len() < 8
        {
            pg.backup_cmds.push(cmd.clone());
        }
        let g = self.group(p, ev.time);
        if g.backup_cmds.len() < 8 {
            g.backup_cmds.push(cmd);
        }
        let mut out: Vec<Alert> = self.verdict(ev, &key).into_iter().collect();
        // The parent's verdict is reported on its own latest evidence, so
        // the alert names the encryptor, not `vssadmin`.
        if let Some(parent) = p.parent.as_deref()
            && let Some(last) = self
                .groups
                .get(&parent.entity_id)
                .and_then(|g| g.examples.last().cloned())
        {
            out.extend(self.verdict(&last, &parent.entity_id));
        }
        out
    }

    /// Decides for one process after an event.
    fn verdict(&mut self, ev: &Event, key: &str) -> Option<Alert> {
        let cfg = &self.cfg;
        let g = self.groups.get_mut(key)?;
        let top_ext = g.top_ext();
        let top_note = g.top_note();
        let backup = !g.backup_cmds.is_empty() || g.backup_deletes >= cfg.backup_deletes;
        let corroborated = top_ext.is_some_and(|(_, n)| n >= cfg.same_extension)
            || top_note.is_some_and(|(_, n)| n >= cfg.note_dirs)
            || backup;
        if !g.alerted
            && (g.encrypted >= cfg.encrypted_files
                || (g.encrypted >= cfg.corroborated_files && corroborated))
        {
            g.alerted = true;
            g.backup_alerted = true;
            return Some(ransomware_alert(ev, g));
        }
        if !g.backup_alerted && backup {
            g.backup_alerted = true;
            let cmds = g.backup_cmds.clone();
            let level = if g.high >= 3 {
                Level::Critical
            } else {
                Level::High
            };
            return Some(backup_alert(ev, &cmds, g.backup_deletes, Some(level)));
        }
        None
    }
}

fn rule(id: &str, name: String, level: Level, description: String, attack: &[&str]) -> RuleRef {
    RuleRef {
        id: id.into(),
        name,
        level: Some(level),
        status: Some("stable".into()),
        tags: std::iter::once("attack.impact".to_string())
            .chain(
                attack
                    .iter()
                    .map(|t| format!("attack.{}", t.to_ascii_lowercase())),
            )
            .collect(),
        attack: attack.iter().map(|t| t.to_string()).collect(),
        description: Some(description),
        author: Some("Vigie".into()),
        ruleset: "behaviour".into(),
        ..RuleRef::default()
    }
}

fn who(p: &Process) -> String {
    let t = leader(p);
    let exe = if t.executable.is_empty() {
        p.name.as_str()
    } else {
        t.executable.as_str()
    };
    let mut s = format!("{exe} (pid {}", t.pid);
    if t.pid != p.pid {
        s.push_str(&format!(", with worker pid {}", p.pid));
    } else if let Some(parent) = p.parent.as_deref()
        && !parent.executable.is_empty()
    {
        s.push_str(&format!(
            ", started by {} pid {}",
            parent.executable, parent.pid
        ));
    }
    if let Some(u) = p
        .user
        .as_ref()
        .and_then(|u| u.name.as_ref().or(u.id.as_ref()))
    {
        s.push_str(&format!(", user {u}"));
    }
    s.push(')');
    s
}

fn alert(ev: &Event, rule: RuleRef, mut events: Vec<Event>) -> Alert {
    events.retain(|e| e.id != ev.id);
    events.insert(0, ev.clone());
    Alert {
        id: Uuid::now_v7(),
        time: ev.time,
        host: ev.host.clone(),
        rule,
        events,
    }
}

fn ransomware_alert(ev: &Event, g: &Group) -> Alert {
    let p = ev.process().cloned().unwrap_or_default();
    let mut examples: Vec<&str> = g
        .files
        .iter()
        .filter(|(_, f)| f.encrypted())
        .map(|(p, _)| p.as_str())
        .collect();
    examples.sort_unstable();
    examples.truncate(3);
    let since = g
        .files
        .values()
        .map(|f| f.first)
        .min()
        .map(|t| (ev.time - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    let mut d = format!(
        "{} rewrote {} files with random-looking content in {:.2} s (e.g. {})",
        who(&p),
        g.encrypted,
        since,
        examples.join(", ")
    );
    if let Some((x, n)) = g.top_ext().filter(|(_, n)| *n > 1) {
        d.push_str(&format!("; renamed {n} files to *.{x}"));
    }
    if let Some((name, n)) = g.top_note().filter(|(_, n)| *n > 1) {
        d.push_str(&format!("; dropped {name} in {n} directories"));
    }
    if !g.backup_cmds.is_empty() {
        d.push_str(&format!("; ran {}", g.backup_cmds.join(" ; ")));
    }
    if g.backup_deletes > 0 {
        d.push_str(&format!("; deleted {} backup files", g.backup_deletes));
    }
    d.push_str(&format!(
        ". Files touched so far: {}. This is how ransomware encrypts files. \
         Kill its process tree (pid {}), isolate the host, then restore the files from backup.",
        g.files.len(),
        g.target.pid
    ));
    let name = format!(
        "Ransomware behaviour: {} is encrypting files",
        name_of(&g.target.executable)
    );
    let r = rule(
        RANSOMWARE_RULE_ID,
        name,
        Level::Critical,
        d,
        &["T1486", "T1490"],
    );
    alert(ev, r, g.examples.clone())
}

fn canary_alert(ev: &Event, fe: &FileEvent, path: &str) -> Alert {
    let verb = match fe.action {
        FileAction::Write => "wrote to",
        FileAction::Rename => "renamed",
        FileAction::Delete => "deleted",
        _ => "truncated",
    };
    let d = format!(
        "{} {verb} the canary file {path}, a decoy no person or program has a reason to touch. \
         Ransomware hits such files first. Kill its process tree (pid {}) and isolate the host.",
        who(&fe.process),
        leader(&fe.process).pid
    );
    let r = rule(
        CANARY_RULE_ID,
        format!("Canary file touched by {}", fe.process.name),
        Level::Critical,
        d,
        &["T1486"],
    );
    alert(ev, r, Vec::new())
}

fn backup_alert(ev: &Event, cmds: &[String], deletes: usize, level: Option<Level>) -> Alert {
    let actor = ev
        .process()
        .map(who)
        .or_else(|| {
            ev.field("Image")
                .and_then(|v| v.to_text().map(|s| s.into_owned()))
        })
        .unwrap_or_else(|| "a process".into());
    let mut what = Vec::new();
    if !cmds.is_empty() {
        what.push(format!("ran {}", cmds.join(" ; ")));
    }
    if deletes > 0 {
        what.push(format!("deleted {deletes} backup files"));
    }
    let d = format!(
        "{actor} {}: shadow copies, backups or snapshots are being destroyed, which ransomware \
         does before encrypting. Check who ran it; if nobody planned it, isolate the host.",
        what.join(" and ")
    );
    let r = rule(
        BACKUP_RULE_ID,
        "Backups or shadow copies deleted".into(),
        level.unwrap_or(Level::High),
        d,
        &["T1490"],
    );
    alert(ev, r, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_extensions() {
        assert_eq!(
            appended_ext("/d/a.docx", "/d/a.docx.locked"),
            Some("locked")
        );
        assert_eq!(appended_ext("/d/a.docx", "/d/a.locked"), Some("locked"));
        assert_eq!(appended_ext("/d/app.log", "/d/app.log.1"), None);
        assert_eq!(appended_ext("/d/x.conf.dpkg-new", "/d/x.conf"), None);
        assert_eq!(appended_ext("/d/.a.txt.Xy12ab", "/d/a.txt"), None);
        assert_eq!(appended_ext("/d/a.txt", "/d/a.txt.bak"), None);
        assert_eq!(appended_ext("/d/a.txt", "/d/b.zzz"), None);
    }

    #[test]
    fn stems_and_thresholds() {
        assert_eq!(stem("/d/a.txt.locked"), Some("/d/a.txt"));
        assert_eq!(stem("/d/.hidden"), None);
        assert!(random_threshold(65536) > 7.4);
        assert!(random_threshold(100) >= 5.5);
        assert!(backup_destruction(
            "vssadmin.exe Delete Shadows /All /Quiet"
        ));
        assert!(backup_destruction("btrfs subvolume delete /snapshots/1"));
        assert!(!backup_destruction("btrfs subvolume list /"));
    }
}

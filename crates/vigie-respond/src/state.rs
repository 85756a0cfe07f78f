//! The agent's state directory: the one place response state lives, so that a
//! crash, a `kill -9` or a reboot loses nothing and any `vigie agent ...`
//! command acts on the agent that owns the directory.
//!
//! Layout (all files written atomically: temp file, fsync, rename):
//! * `isolation.json`: present while the host is isolated ([`crate::isolation::IsolationState`]).
//! * `actions.jsonl`: every response and tamper event, ECS JSON, one a line.
//! * `secret`: the per-host secret release codes derive from (mode 0600).
//! * `quarantine/<id>/`: quarantined files (`data`, mode 000) and `meta.json`.
//! * `denylist.json`: the execution deny list, re-read without restart.
//! * `agent.pid`, `stop.ok`: supervisor hand-shake for an authorised stop.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use vigie_event::{Event, Host};

/// Default when neither `--state-dir` nor `VIGIE_STATE_DIR` is given.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vigie/agent";
/// The environment variable that names the state directory.
pub const STATE_DIR_ENV: &str = "VIGIE_STATE_DIR";

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `explicit` (from `--state-dir`) wins, then `VIGIE_STATE_DIR`, then the default.
    pub fn resolve(explicit: Option<&Path>) -> PathBuf {
        if let Some(p) = explicit {
            return p.to_path_buf();
        }
        match std::env::var_os(STATE_DIR_ENV) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => PathBuf::from(DEFAULT_STATE_DIR),
        }
    }

    /// Open (creating it with mode 0700 if needed) the state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)
            .with_context(|| format!("cannot create state directory {}", root.display()))?;
        // Only root reads response state: quarantined malware, the secret.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set mode of {}", root.display()))?;
        Ok(StateDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Write a file atomically: a reader sees the old or the new content,
    /// never half of it, even across a crash.
    pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        write_atomic(&self.join(name), bytes, mode)
    }

    /// Read a file of the state directory; `None` if it does not exist.
    pub fn read_optional(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.join(name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        let path = self.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    /// Append one event to `actions.jsonl` (the audit trail) and fsync it.
    pub fn record(&self, event: &Event) -> Result<()> {
        let path = self.join("actions.jsonl");
        let mut line = serde_json::to_string(event).context("cannot serialise event")?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .with_context(|| format!("cannot append to {}", path.display()))?;
        tracing::info!(target: "vigie", "{}", summary(event));
        Ok(())
    }

    /// The last `n` recorded events, oldest first. Lines that do not parse
    /// are skipped (and counted in the log), never fatal.
    pub fn last_actions(&self, n: usize) -> Result<Vec<Event>> {
        let path = self.join("actions.jsonl");
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let mut out = std::collections::VecDeque::new();
        let mut bad = 0usize;
        for line in BufReader::new(f).lines() {
            let line = line.with_context(|| format!("cannot read {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            match vigie_event::ecs::parse_event(&line) {
                Ok(ev) => {
                    out.push_back(ev);
                    if out.len() > n {
                        out.pop_front();
                    }
                }
                Err(_) => bad += 1,
            }
        }
        if bad > 0 {
            tracing::warn!("{bad} unreadable line(s) in {}", path.display());
        }
        Ok(out.into())
    }

    /// The per-host secret, created (32 random bytes, mode 0600) on first use.
    pub fn secret(&self) -> Result<Vec<u8>> {
        if let Some(b) = self.read_optional("secret")? {
            return decode_secret(&b).with_context(|| {
                format!("{} is not a valid secret", self.join("secret").display())
            });
        }
        let mut raw = [0u8; 32];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .context("cannot read /dev/urandom")?;
        self.write_atomic("secret", hex::encode(raw).as_bytes(), 0o600)?;
        Ok(raw.to_vec())
    }
}

/// A secret file holds hex (as written by [`StateDir::secret`]).
pub fn decode_secret(bytes: &[u8]) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(bytes).context("not UTF-8")?.trim();
    let raw = hex::decode(text).context("not hex")?;
    anyhow::ensure!(raw.len() >= 16, "too short ({} bytes, need 16+)", raw.len());
    Ok(raw)
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// This machine's name, for the `host` of events.
pub fn this_host() -> Host {
    let name = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    Host::named(name)
}

/// One line for the log: what, on what, outcome. Never a secret.
pub fn summary(ev: &Event) -> String {
    match &ev.payload {
        vigie_event::Payload::Response(r) => format!(
            "response {} {} by {}: {} ({})",
            r.response.action,
            r.response.target,
            r.response.actor,
            r.outcome.as_str(),
            r.response.detail
        ),
        vigie_event::Payload::Health(h) => {
            format!("{}: {}", h.action.as_str(), h.health.message)
        }
        _ => format!("event {}", ev.id),
    }
}

//! Kill a process tree, verified. Never pid 1, kernel threads, the agent
//! itself or its ancestors (its supervisor), or a configured protected list.
//!
//! The tree is frozen with SIGSTOP first (repeatedly, until no new child
//! appears) so a fork bomb cannot outrun the kill, then every process gets
//! SIGKILL, then each death is checked in /proc (gone, zombie, or pid reused
//! with another start time).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Linux `PF_KTHREAD` in /proc/PID/stat's flags.
const PF_KTHREAD: u64 = 0x0020_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcStat {
    ppid: i32,
    state: char,
    flags: u64,
    start: u64,
}

fn stat(pid: i32) -> Option<ProcStat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        flags: f.get(6)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

fn exe(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What was killed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillReport {
    pub root: i32,
    pub root_exe: String,
    pub killed: Vec<i32>,
    /// Processes of the tree left alive because they are protected.
    pub spared: Vec<(i32, String)>,
    /// Processes still alive after the deadline (should be empty).
    pub survivors: Vec<i32>,
}

/// Why a pid may never be killed, if it may not.
pub fn protected_reason(pid: i32, protected: &[String]) -> Option<String> {
    if pid <= 1 {
        return Some("pid 1 (init) or invalid pid".into());
    }
    let me = std::process::id() as i32;
    let mut p = me;
    // The agent and its ancestors (its supervisor, the shell that runs it).
    for _ in 0..64 {
        if p == pid {
            return Some(if p == me {
                "the agent itself".into()
            } else {
                "an ancestor of the agent".into()
            });
        }
        match stat(p) {
            Some(s) if s.ppid > 0 => p = s.ppid,
            _ => break,
        }
    }
    let st = stat(pid)?;
    if st.flags & PF_KTHREAD != 0 || pid == 2 || st.ppid == 2 {
        return Some("a kernel thread".into());
    }
    let (e, c) = (exe(pid), comm(pid));
    protected
        .iter()
        .find(|p| **p == e || **p == c)
        .map(|p| format!("protected by policy ({p})"))
}

fn children_map() -> BTreeMap<i32, Vec<i32>> {
    let mut m: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok())
                && let Some(s) = stat(pid)
            {
                m.entry(s.ppid).or_default().push(pid);
            }
        }
    }
    m
}

fn tree(root: i32) -> Vec<i32> {
    let m = children_map();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = m.get(&out[i]) {
            for p in c {
                if !out.contains(p) {
                    out.push(*p);
                }
            }
        }
        i += 1;
    }
    out
}

fn dead(pid: i32, start: u64) -> bool {
    match stat(pid) {
        None => true,
        Some(s) => s.state == 'Z' || s.state == 'X' || s.start != start,
    }
}

/// Start time of a process in clock ticks since boot (/proc/PID/stat
/// field 22), the unit the sensor's `entity_id` ("PID-TICKS") uses.
pub fn start_ticks(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.start)
}

/// Parse an `entity_id` of the form "PID-TICKS".
pub fn parse_entity_id(id: &str) -> Option<(u32, u64)> {
    let (p, t) = id.split_once('-')?;
    Some((p.parse().ok()?, t.parse().ok()?))
}

/// Kill `root` and all its descendants; `protected` holds executable paths
/// or process names never to kill. With `expected_start` (from the alert's
/// `entity_id`), a pid now used by another process is refused.
pub fn kill_tree(
    root: i32,
    protected: &[String],
    expected_start: Option<u64>,
) -> Result<KillReport> {
    if let Some(why) = protected_reason(root, protected) {
        bail!("refusing to kill pid {root}: {why}");
    }
    let Some(root_stat) = stat(root) else {
        bail!("no process {root} (already exited)");
    };
    if let Some(t) = expected_start
        && t != root_stat.start
    {
        bail!(
            "pid {root} is now another process (started at tick {}, the alert's at {t}): the alerting process already exited; nothing killed",
            root_stat.start
        );
    }
    let mut report = KillReport {
        root,
        root_exe: exe(root),
        ..KillReport::default()
    };
    // Freeze until the tree stops growing.
    let mut frozen: BTreeMap<i32, u64> = BTreeMap::new();
    let mut spared = BTreeSet::new();
    for _ in 0..20 {
        let mut grew = false;
        for pid in tree(root) {
            if frozen.contains_key(&pid) || spared.contains(&pid) {
                continue;
            }
            if let Some(why) = protected_reason(pid, protected) {
                spared.insert(pid);
                report.spared.push((pid, why));
                continue;
            }
            let Some(s) = stat(pid) else { continue };
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            frozen.insert(pid, s.start);
            grew = true;
        }
        if !grew {
            break;
        }
    }
    frozen.entry(root).or_insert(root_stat.start);
    for pid in frozen.keys() {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let alive: Vec<i32> = frozen
            .iter()
            .filter(|(p, s)| !dead(**p, **s))
            .map(|(p, _)| *p)
            .collect();
        if alive.is_empty() || Instant::now() > deadline {
            report.survivors = alive;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    report.killed = frozen
        .keys()
        .copied()
        .filter(|p| !report.survivors.contains(p))
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_init_self_and_kernel_threads() {
        assert!(kill_tree(1, &[], None).is_err());
        assert!(kill_tree(std::process::id() as i32, &[], None).is_err());
        if stat(2).is_some() {
            assert!(protected_reason(2, &[]).is_some());
        }
    }

    #[test]
    fn kills_a_whole_tree_and_verifies() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & (sleep 300 & wait) & wait"])
            .spawn()
            .unwrap();
        let root = child.id() as i32;
        // Let the shell start its children.
        let t0 = Instant::now();
        while tree(root).len() < 5 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let members = tree(root);
        assert!(members.len() >= 5, "tree: {members:?}");
        let start = start_ticks(root).unwrap();
        // A pid reused by another process: refused.
        assert!(kill_tree(root, &[], Some(start + 1)).is_err());
        let r = kill_tree(root, &[], Some(start)).unwrap();
        let _ = child.wait();
        assert!(r.survivors.is_empty(), "{r:?}");
        for p in &members {
            assert!(r.killed.contains(p), "{p} not in {r:?}");
            // Children of the reaped shell are reparented and reaped by init
            // (or are zombies of a subreaper): none may still run.
            let s = stat(*p);
            assert!(s.is_none() || s.unwrap().state == 'Z', "{p} alive");
        }
    }

    #[test]
    fn protected_names_are_spared() {
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let err = kill_tree(pid, &["sleep".into()], None).unwrap_err();
        assert!(err.to_string().contains("protected"), "{err}");
        child.kill().unwrap();
        let _ = child.wait();
    }
}

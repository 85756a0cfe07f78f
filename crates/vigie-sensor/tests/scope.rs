//! `scope = "netns"`: a sensor started inside network namespace A (one
//! simulated host among several on one machine) reports the processes of A
//! and nothing of namespace B or of the root namespace, while ancestry still
//! crosses into the root namespace (`ip netns exec` starts from there).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use common::{Harness, Netns, sh_command};
use vigie_event::{Event, FileAction, Payload, ProcessAction};
use vigie_sensor::{Scope, SensorConfig};

/// Short processes per namespace.
const N: usize = 20;

/// Namespaces A and B, a directory for the processes' files, and a sensor
/// with `scope = "netns"` started on a thread that entered A.
struct Lab {
    h: Harness,
    a: Netns,
    b: Netns,
    tag: String,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Lab {
    fn new(name: &str, force_fallback: bool) -> Lab {
        let (a, b) = (
            Netns::new(&format!("{name}-a")),
            Netns::new(&format!("{name}-b")),
        );
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let cfg = SensorConfig {
            scope: Scope::Netns,
            force_fallback,
            ..common::cfg()
        };
        let ns = a.0.clone();
        let h = std::thread::spawn(move || {
            common::enter_netns(&ns);
            Harness::start(cfg)
        })
        .join()
        .expect("sensor thread");
        Lab {
            h,
            a,
            b,
            tag: format!("vigie-{name}-{}", std::process::id()),
            dir,
            _tmp: tmp,
        }
    }

    /// `sh -c SCRIPT` in A, B and the root namespace, with `{ns}` in the
    /// script replaced by "A", "B" or "root".
    fn spawn_in_each(&self, script: &str) -> Vec<Child> {
        [(Some(&self.a), "A"), (Some(&self.b), "B"), (None, "root")]
            .into_iter()
            .map(|(ns, name)| {
                sh_command(ns, &script.replace("{ns}", name))
                    .spawn()
                    .expect("spawn")
            })
            .collect()
    }
}

/// Events of one action whose command line carries `tag`, counted per
/// command line.
fn by_command_line(seen: &[Event], action: ProcessAction, tag: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in seen {
        if let Payload::Process(p) = &e.payload
            && p.action == action
            && p.process.command_line.contains(tag)
        {
            *m.entry(p.process.command_line.clone()).or_default() += 1;
        }
    }
    m
}

/// Names of the files of `dir` created or written, sorted, once each.
fn written_in(seen: &[Event], dir: &std::path::Path) -> Vec<String> {
    let dir = format!("{}/", dir.display());
    let mut names: Vec<String> = seen
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::File(f) if matches!(f.action, FileAction::Write | FileAction::Create) => {
                f.file.path.strip_prefix(&dir).map(str::to_string)
            }
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every event with a process is of namespace `a`.
fn assert_all_in(seen: &[Event], a: u32) {
    for e in seen {
        if let Some(p) = e.process() {
            assert_eq!(
                p.vigie.netns,
                Some(a),
                "an event of another namespace got through: {e:?}"
            );
        }
    }
}

#[test]
fn netns_scope_reports_exactly_its_namespace() {
    let mut lab = Lab::new("scope", false);
    let (tag, dir) = (lab.tag.clone(), lab.dir.clone());
    for i in 0..N {
        let script = format!("echo {tag}-{{ns}}-{i} > {}/{{ns}}-{i}", dir.display());
        // One at a time: short processes, each exec and exit counted.
        for mut c in lab.spawn_in_each(&script) {
            assert!(c.wait().unwrap().success());
        }
    }
    let h = &mut lab.h;
    let want = |i| {
        format!(
            "sh -c echo {tag}-A-{i} > {}",
            dir.join(format!("A-{i}")).display()
        )
    };
    h.wait_for(Duration::from_secs(30), |e| {
        matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::Exit
            && p.process.command_line == want(N - 1))
    })
    .expect("exit of the last process of A");
    // Anything that would come late from B or the root namespace.
    h.drain_for(Duration::from_secs(1));

    let execs = by_command_line(&h.seen, ProcessAction::Exec, &tag);
    let exits = by_command_line(&h.seen, ProcessAction::Exit, &tag);
    let expected: BTreeMap<String, usize> = (0..N).map(|i| (want(i), 1)).collect();
    assert_eq!(execs, expected, "exactly one exec per process of A");
    assert_eq!(exits, expected, "exactly one exit per process of A");
    let mut files: Vec<String> = (0..N).map(|i| format!("A-{i}")).collect();
    files.sort();
    assert_eq!(written_in(&h.seen, &dir), files, "files of A only");
    assert_all_in(&h.seen, lab.a.inode());

    // Ancestry crosses namespaces: the parent is this test process, in the
    // root namespace, known to the process table.
    let exec = h
        .seen
        .iter()
        .find(|e| matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::Exec && p.process.command_line == want(0)))
        .unwrap();
    let parent = exec.process().unwrap().parent.as_ref().unwrap();
    assert_eq!(parent.pid, std::process::id());
    assert!(!parent.executable.is_empty(), "{parent:?}");
}

#[test]
fn fallback_netns_scope_reports_only_its_namespace() {
    let mut lab = Lab::new("fscope", true);
    let (tag, dir) = (lab.tag.clone(), lab.dir.clone());
    // The fallback reads /proc: processes live long enough to be read
    // (namespaces included). Each writes a file of its own, then waits.
    let mut children = Vec::new();
    for i in 0..N / 2 {
        let script = format!(
            "echo x > {}/{{ns}}-{i}; sleep 0.5; : {tag}-{{ns}}-{i}",
            dir.display()
        );
        children.extend(lab.spawn_in_each(&script));
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let h = &mut lab.h;
    let last_a = dir.join(format!("A-{}", N / 2 - 1));
    let last_a = last_a.to_str().unwrap();
    h.wait_for(Duration::from_secs(30), |e| {
        matches!(&e.payload, Payload::File(f) if f.action == FileAction::Write && f.file.path == last_a)
    })
    .expect("write of the last process of A");
    h.drain_for(Duration::from_secs(2));

    // Best effort (/proc read after the fact): every process of A seen,
    // possibly twice (`ip` may have become `sh` before /proc is read); none
    // of B or the root namespace.
    let execs = by_command_line(&h.seen, ProcessAction::Exec, &tag);
    for i in 0..N / 2 {
        assert!(
            execs.keys().any(|c| c.ends_with(&format!("{tag}-A-{i}"))),
            "exec of A's process {i}: {execs:?}"
        );
    }
    assert!(
        execs.keys().all(|c| c.contains(&format!("{tag}-A-"))),
        "only A's processes: {execs:?}"
    );
    let mut files: Vec<String> = (0..N / 2).map(|i| format!("A-{i}")).collect();
    files.sort();
    assert_eq!(written_in(&h.seen, &dir), files, "files of A only");
    assert_all_in(&h.seen, lab.a.inode());
}

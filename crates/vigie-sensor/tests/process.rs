//! Root integration tests with real processes: exec/exit, ancestry, hashes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Harness;
use sha2::{Digest, Sha256};
use vigie_event::{Payload, ProcessAction};

const T: Duration = Duration::from_secs(10);

#[test]
fn exec_of_sh_has_argv_cwd_parent_chain_and_sha256() {
    let mut h = Harness::start(common::cfg());
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("vigie-exec-{}", std::process::id());
    // The child is forked from this thread and has its comm until it execs.
    let spawner_comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let child = Command::new("/bin/sh")
        .args(["-c", &format!("echo {marker} > /dev/null; exit 3")])
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));

    let exec = h
        .wait_for(T, |e| common::is_exec_of(e, pid))
        .expect("exec event");
    let Payload::Process(pe) = &exec.payload else {
        unreachable!()
    };
    let p = &pe.process;
    // The header's comm: the current task's (exec) and the new child's (fork).
    assert_eq!(p.name, "sh");
    let fork = h
        .wait_for(T, |e| matches!(&e.payload, Payload::Process(x) if x.action == ProcessAction::Fork && x.process.pid == pid))
        .expect("fork event");
    let Payload::Process(fe) = &fork.payload else {
        unreachable!()
    };
    assert_eq!(fe.process.name, spawner_comm.trim_end_matches('\n'));
    assert_eq!(
        p.args,
        vec![
            "/bin/sh".to_string(),
            "-c".into(),
            format!("echo {marker} > /dev/null; exit 3")
        ]
    );
    assert_eq!(p.command_line, p.args.join(" "));
    assert!(!p.vigie.args_truncated);
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(p.working_directory.as_deref(), Some(cwd.to_str().unwrap()));
    // /bin/sh is a symlink (dash): the executable is the real file.
    let real = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(p.executable, real.to_str().unwrap());
    let want = hex::encode(Sha256::digest(std::fs::read(&real).unwrap()));
    assert_eq!(p.hash.sha256.as_deref(), Some(want.as_str()));
    // Parent: this test process; its ancestors go on from there.
    let parent = p.parent.as_ref().expect("parent");
    assert_eq!(parent.pid, std::process::id());
    assert!(
        !parent.executable.is_empty(),
        "parent known to the process table"
    );
    let my_ppid = std::os::unix::process::parent_id();
    assert_eq!(
        p.vigie.ancestors.first().map(|a| a.pid),
        Some(my_ppid),
        "grand-parent is our parent"
    );
    assert_eq!(p.user.as_ref().and_then(|u| u.id.as_deref()), Some("0"));
    assert!(p.entity_id.starts_with(&format!("{pid}-")));

    let exit = h
        .wait_for(T, |e| matches!(&e.payload, Payload::Process(x) if x.action == ProcessAction::Exit && x.process.pid == pid))
        .expect("exit event");
    let Payload::Process(xe) = &exit.payload else {
        unreachable!()
    };
    assert_eq!(xe.process.exit_code, Some(3));
    assert_eq!(xe.process.entity_id, p.entity_id, "same process, same id");
}

#[test]
fn process_started_before_the_sensor_has_ancestry() {
    // A shell started before the sensor execs a child after it.
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; /bin/true vigie-early",
        go.display()
    );
    let early = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let mut early = KillOnDrop(early);
    let early_pid = early.0.id();
    std::thread::sleep(Duration::from_millis(200));
    let mut h = Harness::start(common::cfg());
    std::fs::write(&go, b"").unwrap();
    early.0.wait().unwrap();
    let exec = h
        .wait_for(T, |e| matches!(&e.payload, Payload::Process(x) if x.action == ProcessAction::Exec && x.process.args.last().map(String::as_str) == Some("vigie-early")))
        .expect("exec of the child");
    let p = exec.process().unwrap();
    let parent = p.parent.as_ref().unwrap();
    assert_eq!(parent.pid, early_pid);
    assert_eq!(
        parent.args.first().map(String::as_str),
        Some("/bin/sh"),
        "parent seeded from /proc: {parent:?}"
    );
    assert_eq!(
        p.vigie.ancestors.first().map(|a| a.pid),
        Some(std::process::id())
    );
}

#[test]
fn process_that_exits_at_once_is_complete() {
    // Exit before user space could look at /proc: everything comes from the kernel.
    let mut h = Harness::start(common::cfg());
    let st = Command::new("/bin/true")
        .arg("vigie-quick")
        .status()
        .unwrap();
    assert!(st.success());
    let exec = h
        .wait_for(T, |e| matches!(&e.payload, Payload::Process(x) if x.action == ProcessAction::Exec && x.process.args == ["/bin/true", "vigie-quick"]))
        .expect("exec");
    let p = exec.process().unwrap();
    assert!(p.executable.ends_with("/true"));
    assert!(p.hash.sha256.is_some());
    assert!(p.working_directory.is_some());
}

/// Kills the child if the test fails before it ends (no stray processes).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

//! Execution blocking with real fanotify permission events, on a tmpfs the
//! test mounts (never a system mount). The blocker runs in a separate
//! process (this binary re-run as `helper_exec_blocker`) so the test can
//! freeze and kill it mid-decision; a watchdog kills it after 60 s whatever
//! happens.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vigie_event::{Outcome, Payload};
use vigie_respond::execblock::{DenyEntry, ExecBlocker};
use vigie_respond::{Cause, Responder, StateDir};

#[test]
#[ignore = "helper process started by exec_blocking"]
fn helper_exec_blocker() {
    let dir = std::env::var("VIGIE_STATE_DIR").unwrap();
    let mark = std::env::var("VIGIE_TEST_MARK").unwrap();
    let state = StateDir::open(&dir).unwrap();
    let deadline = std::env::var("VIGIE_TEST_DEADLINE_MS")
        .ok()
        .and_then(|d| d.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(vigie_respond::execblock::HASH_DEADLINE);
    let _b =
        ExecBlocker::start_with_deadline(state, &[PathBuf::from(mark)], deadline, |_| {}).unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(60));
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

fn copy_exec(from: &str, to: &Path) {
    std::fs::copy(from, to).unwrap();
}

fn exec_result(p: &Path) -> Result<bool, i32> {
    match Command::new(p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) => Ok(s.success()),
        Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exec_blocking() {
    if !is_root() {
        eprintln!("SKIP exec_blocking: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64m",
        "vigie-test",
        mnt.to_str().unwrap(),
    ]);
    let _mount = Tmpfs(mnt.clone());
    let bad = mnt.join("bad");
    let good = mnt.join("good");
    let by_path = mnt.join("by-path");
    let later = mnt.join("later");
    copy_exec("/usr/bin/id", &bad);
    copy_exec("/usr/bin/true", &good);
    copy_exec("/usr/bin/true", &by_path);
    copy_exec("/usr/bin/true", &later);

    let state_dir = tmp.path().join("state");
    let r = Responder::open(&state_dir).unwrap();
    let bad_hash = vigie_respond::quarantine::sha256_file(&bad).unwrap();
    r.block(DenyEntry::Sha256(bad_hash.clone()), false, &Cause::user())
        .unwrap();
    r.block(
        DenyEntry::Path(by_path.display().to_string()),
        false,
        &Cause::user(),
    )
    .unwrap();
    // Entries that would block the system are refused unless forced.
    assert!(
        r.block(DenyEntry::Path("/bin/sh".into()), false, &Cause::user())
            .is_err()
    );
    let bash = vigie_respond::quarantine::sha256_file(Path::new("/bin/bash")).unwrap();
    assert!(
        r.block(DenyEntry::Sha256(bash), false, &Cause::user())
            .is_err()
    );
    let me = std::env::current_exe().unwrap().display().to_string();
    assert!(r.block(DenyEntry::Path(me), false, &Cause::user()).is_err());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_exec_blocker", "--ignored", "--nocapture"])
        .env("VIGIE_STATE_DIR", &state_dir)
        .env("VIGIE_TEST_MARK", &mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let helper_pid = child.id() as i32;
    let guard = ChildGuard(child);
    // Watchdog: whatever happens, the listener dies within 60 s.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(helper_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let mut lines = BufReader::new(out).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("READY"))
    );

    // Listed by hash and by path: denied with EPERM. Others run.
    assert_eq!(
        exec_result(&bad),
        Err(libc::EPERM),
        "hash-listed binary ran"
    );
    assert_eq!(
        exec_result(&by_path),
        Err(libc::EPERM),
        "path-listed binary ran"
    );
    assert_eq!(exec_result(&good), Ok(true));
    assert_eq!(exec_result(&later), Ok(true));
    // From a shell: exit status 126, the shell itself unaffected.
    let s = Command::new("sh")
        .arg("-c")
        .arg(format!("{}; echo $?", bad.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&s.stdout).trim(), "126");

    // Each denial is an event.
    let state = StateDir::open(&state_dir).unwrap();
    let bad_s = bad.display().to_string();
    wait_for("block-exec event", Duration::from_secs(3), || {
        state.last_actions(100).unwrap().iter().any(|e| {
            matches!(&e.payload, Payload::Response(r)
                if r.response.action == "block-exec" && r.response.target == bad_s
                    && r.outcome == Outcome::Success && r.response.detail.contains(&bad_hash))
        })
    });

    // Deny list updated without restart.
    r.block(
        DenyEntry::Path(later.display().to_string()),
        false,
        &Cause::user(),
    )
    .unwrap();
    wait_for("new entry applied", Duration::from_secs(3), || {
        exec_result(&later) == Err(libc::EPERM)
    });
    r.unblock(&later.display().to_string(), &Cause::user())
        .unwrap();
    wait_for("entry removed", Duration::from_secs(3), || {
        exec_result(&later) == Ok(true)
    });

    // The listener stops answering (frozen) then dies mid-decision: the
    // pending exec must go through once it is dead.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper_pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let g = good.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(exec_result(&g));
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "exec did not wait for the (frozen) listener: the mark is not active"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helper_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t0 = Instant::now();
    let res = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("exec still frozen after the listener died");
    eprintln!("pending exec released {:?} after the kill", t0.elapsed());
    assert_eq!(res, Ok(true));
    drop(guard);
    // And the host is usable: the once-denied binary runs without a listener.
    assert_eq!(exec_result(&bad), Ok(true));
}

/// A binary that cannot be hashed within the deadline runs (fail open) and
/// the run is recorded as unchecked; the hash lands in the cache, so the next
/// exec of the same file is denied.
#[test]
fn hash_deadline_fails_open_then_caches() {
    if !is_root() {
        eprintln!("SKIP hash_deadline_fails_open_then_caches: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=96m",
        "vigie-test2",
        mnt.to_str().unwrap(),
    ]);
    let _mount = Tmpfs(mnt.clone());
    // A real executable made big (the loader ignores trailing bytes), so
    // hashing it takes far longer than the 0 ms deadline.
    let big = mnt.join("big");
    let mut bytes = std::fs::read("/usr/bin/true").unwrap();
    bytes.resize(bytes.len() + 48 * 1024 * 1024, 0x5a);
    std::fs::write(&big, &bytes).unwrap();
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    drop(bytes);
    let state_dir = tmp.path().join("state");
    let r = Responder::open(&state_dir).unwrap();
    let h = vigie_respond::quarantine::sha256_file(&big).unwrap();
    r.block(DenyEntry::Sha256(h), false, &Cause::user())
        .unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_exec_blocker", "--ignored", "--nocapture"])
        .env("VIGIE_STATE_DIR", &state_dir)
        .env("VIGIE_TEST_MARK", &mnt)
        .env("VIGIE_TEST_DEADLINE_MS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _guard = ChildGuard(child);
    assert!(
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("READY"))
    );
    assert_eq!(exec_result(&big), Ok(true), "first exec must fail open");
    wait_for("the hash in the cache", Duration::from_secs(10), || {
        exec_result(&big) == Err(libc::EPERM)
    });
    let state = StateDir::open(&state_dir).unwrap();
    wait_for("the unchecked event", Duration::from_secs(3), || {
        state.last_actions(100).unwrap().iter().any(|e| {
            matches!(&e.payload, Payload::Response(r)
                if r.response.action == "block-exec" && r.outcome == Outcome::Unknown)
        })
    });
}

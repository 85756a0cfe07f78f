//! Root integration tests: file and network events from real syscalls.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::Harness;
use vigie_event::{FileAction, NetworkAction, Payload};

const T: Duration = Duration::from_secs(10);

fn file_event(h: &mut Harness, action: FileAction, path: &str) -> Option<vigie_event::FileEvent> {
    let me = std::process::id();
    h.wait_for(T, |e| {
        matches!(&e.payload, Payload::File(f) if f.action == action && f.file.path == path && f.process.pid == me)
    })
    .map(|e| match e.payload {
        Payload::File(f) => f,
        _ => unreachable!(),
    })
}

#[test]
fn create_write_rename_chmod_unlink_of_a_temp_file() {
    let mut h = Harness::start(common::cfg());
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let a = dir.join("report.txt");
    let b = dir.join("report.locked");
    {
        let mut f = std::fs::File::create(&a).unwrap();
        for _ in 0..100 {
            f.write_all(b"0123456789").unwrap();
        }
    } // close: one write event for the session
    std::fs::rename(&a, &b).unwrap();
    std::fs::set_permissions(&b, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::remove_file(&b).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    file_event(&mut h, FileAction::Create, a).expect("create");
    let w = file_event(&mut h, FileAction::Write, a).expect("write on close");
    assert_eq!(w.file.vigie.bytes_written, Some(1000));
    let r = file_event(&mut h, FileAction::Rename, b).expect("rename");
    assert_eq!(r.file.vigie.original_path.as_deref(), Some(a));
    let c = file_event(&mut h, FileAction::Chmod, b).expect("chmod");
    assert!(c.file.vigie.setuid);
    assert_eq!(c.file.mode.as_deref(), Some("4755"));
    file_event(&mut h, FileAction::Delete, b).expect("unlink");
    // One write session, one event: not one per write().
    let writes = h
        .seen
        .iter()
        .filter(|e| matches!(&e.payload, Payload::File(f) if f.action == FileAction::Write && f.file.path == a))
        .count();
    assert_eq!(writes, 1);
}

#[test]
fn relative_paths_are_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let mut h = Harness::start(common::cfg());
    // A child with its own cwd so the test process's cwd is left alone.
    let st = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            "echo x > rel.txt && mv rel.txt rel2.txt && rm rel2.txt",
        ])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let want = dir.join("rel2.txt");
    let want = want.to_str().unwrap();
    let ev = h
        .wait_for(T, |e| matches!(&e.payload, Payload::File(f) if f.action == FileAction::Rename && f.file.path == want))
        .expect("rename with absolute path");
    let Payload::File(f) = &ev.payload else {
        unreachable!()
    };
    assert_eq!(
        f.file.vigie.original_path.as_deref(),
        Some(dir.join("rel.txt").to_str().unwrap())
    );
    h.wait_for(T, |e| matches!(&e.payload, Payload::File(f) if f.action == FileAction::Delete && f.file.path == want))
        .expect("delete with absolute path");
}

/// The probes read a syscall's arguments at exit from the registers the
/// task entered with: renameat2 has its new path in the fourth (r10, not
/// rcx on x86-64) and both directories as descriptors; a failed execve
/// leaves its registers as the caller set them.
#[test]
fn arguments_come_from_the_entry_registers() {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use vigie_event::ProcessAction;

    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(src.join("ledger.csv"), b"a;b\n").unwrap();
    let mut h = Harness::start(common::cfg());
    let (sfd, dfd) = (
        std::fs::File::open(&src).unwrap(),
        std::fs::File::open(&dst).unwrap(),
    );
    let (old, new) = (
        CString::new("ledger.csv").unwrap(),
        CString::new("ledger.csv.enc").unwrap(),
    );
    // SAFETY: valid descriptors and NUL-terminated names that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            sfd.as_raw_fd(),
            old.as_ptr(),
            dfd.as_raw_fd(),
            new.as_ptr(),
            0,
        )
    };
    assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
    let want = dst.join("ledger.csv.enc");
    let r =
        file_event(&mut h, FileAction::Rename, want.to_str().unwrap()).expect("renameat2 event");
    assert_eq!(
        r.file.vigie.original_path.as_deref(),
        Some(src.join("ledger.csv").to_str().unwrap())
    );

    let missing = dir.join("no-such-program");
    let err = std::process::Command::new(&missing).status().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let missing = missing.to_str().unwrap();
    let ev = h
        .wait_for(T, |e| {
            matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::ExecFailed && p.process.executable == missing)
        })
        .expect("failed exec event");
    let Payload::Process(p) = &ev.payload else {
        unreachable!()
    };
    assert_eq!(p.error, Some(libc::ENOENT));
}

#[test]
fn tcp_connect_accept_listen_on_loopback() {
    let mut h = Harness::start(common::cfg());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let cport = client.local_addr().unwrap().port();
    let (_server, _) = listener.accept().unwrap();
    let me = std::process::id();
    let net = |h: &mut Harness, action: NetworkAction| {
        h.wait_for(T, |e| matches!(&e.payload, Payload::Network(n) if n.action == action && n.process.pid == me && (n.destination.port == Some(port) || n.source.port == Some(port))))
            .map(|e| match e.payload { Payload::Network(n) => n, _ => unreachable!() })
    };
    let l = net(&mut h, NetworkAction::Listen).expect("listen");
    assert_eq!(l.destination.port, Some(port));
    let c = net(&mut h, NetworkAction::Connect).expect("connect");
    assert_eq!(c.destination.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(c.destination.port, Some(port));
    assert_eq!(c.transport, vigie_event::Transport::Tcp);
    let a = net(&mut h, NetworkAction::Accept).expect("accept");
    assert_eq!(
        a.source.port,
        Some(cport),
        "accept: the remote side is the client"
    );
    assert_eq!(a.destination.port, Some(port));
}

#[test]
fn ipv6_connect() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here");
        return;
    };
    let mut h = Harness::start(common::cfg());
    let port = listener.local_addr().unwrap().port();
    let _c = TcpStream::connect(("::1", port)).unwrap();
    let me = std::process::id();
    let ev = h
        .wait_for(T, |e| matches!(&e.payload, Payload::Network(n) if n.action == NetworkAction::Connect && n.process.pid == me && n.destination.port == Some(port)))
        .expect("connect over IPv6");
    let Payload::Network(n) = &ev.payload else {
        unreachable!()
    };
    assert_eq!(n.destination.ip, Some("::1".parse().unwrap()));
}

/// `noise_paths` drops, in the kernel, the file events whose absolute path
/// argument lies under a listed prefix: a create (checked on the open's
/// argument), its write session, a rename, a chmod and an unlink there leave
/// nothing, while the same actions elsewhere are all reported.
#[test]
fn noise_paths_are_dropped_in_the_kernel() {
    let quiet = tempfile::tempdir().unwrap();
    let quiet = std::fs::canonicalize(quiet.path()).unwrap();
    let loud = tempfile::tempdir().unwrap();
    let loud = std::fs::canonicalize(loud.path()).unwrap();
    let mut cfg = common::cfg();
    cfg.noise_paths = vec![format!("{}/", quiet.display())];
    let mut h = Harness::start(cfg);

    let act = |dir: &std::path::Path| {
        let a = dir.join("cache.tmp");
        let b = dir.join("cache.db");
        std::fs::File::create(&a)
            .unwrap()
            .write_all(b"page")
            .unwrap();
        std::fs::rename(&a, &b).unwrap();
        std::fs::set_permissions(&b, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::remove_file(&b).unwrap();
        (
            a.to_str().unwrap().to_owned(),
            b.to_str().unwrap().to_owned(),
        )
    };
    act(&quiet);
    let (a, b) = act(&loud);

    file_event(&mut h, FileAction::Create, &a).expect("create outside the noise prefix");
    file_event(&mut h, FileAction::Write, &a).expect("write outside the noise prefix");
    file_event(&mut h, FileAction::Rename, &b).expect("rename outside the noise prefix");
    file_event(&mut h, FileAction::Chmod, &b).expect("chmod outside the noise prefix");
    file_event(&mut h, FileAction::Delete, &b).expect("unlink outside the noise prefix");
    // The quiet directory's actions came first, from the same thread: had
    // any been reported, it would be here by now.
    let quiet = quiet.to_str().unwrap();
    let leaked: Vec<_> = h
        .seen
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::File(f) if f.file.path.starts_with(quiet) => {
                Some(format!("{:?} {}", f.action, f.file.path))
            }
            _ => None,
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "events under the noise prefix: {leaked:?}"
    );
}

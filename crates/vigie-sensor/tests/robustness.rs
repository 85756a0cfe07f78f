//! Robustness with real processes: newlines and invalid UTF-8 in paths and
//! argv, argv over the limit, and a full ring buffer (loss counted, the
//! sensor keeps running).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;
use std::time::Duration;

use common::Harness;
use vigie_event::{FileAction, HealthAction, Payload, ProcessAction};
use vigie_sensor::{SensorConfig, bytes_to_string};

const T: Duration = Duration::from_secs(10);

#[test]
fn newlines_and_invalid_utf8_in_argv_and_paths() {
    let mut h = Harness::start(common::cfg());
    let dir = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(dir.path()).unwrap();
    let weird: &[u8] = b"line1\nline2-\xff\xfe-end";
    let st = Command::new("/bin/echo")
        .arg(OsStr::from_bytes(weird))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let want = bytes_to_string(weird);
    assert_eq!(want, "line1\nline2-\\xff\\xfe-end");
    h.wait_for(T, |e| matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::Exec && p.process.args.get(1) == Some(&want)))
        .expect("argv kept, invalid bytes escaped");

    let mut path = dir.as_os_str().as_bytes().to_vec();
    path.extend_from_slice(b"/new\nline-\xff.txt");
    std::fs::write(OsStr::from_bytes(&path), b"x").unwrap();
    std::fs::remove_file(OsStr::from_bytes(&path)).unwrap();
    let want = bytes_to_string(&path);
    let ev = h
        .wait_for(T, |e| matches!(&e.payload, Payload::File(f) if f.action == FileAction::Delete && f.file.path == want))
        .expect("file path kept");
    // ECS JSON of such an event is valid and round-trips the text.
    let json = serde_json::to_string(&ev).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["file"]["path"], want.as_str());
}

#[test]
fn argv_longer_than_the_limit_is_cut_and_flagged() {
    let mut h = Harness::start(SensorConfig {
        arg_max: 256,
        ..common::cfg()
    });
    let long = "A".repeat(1000);
    let st = Command::new("/bin/true")
        .arg(&long)
        .arg("tail")
        .status()
        .unwrap();
    assert!(st.success());
    let ev = h
        .wait_for(T, |e| matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::Exec && p.process.args.get(1).is_some_and(|a| a.starts_with("AAAA"))))
        .expect("exec");
    let p = ev.process().unwrap();
    assert!(p.vigie.args_truncated);
    assert!(p.command_line.len() <= 256);
    assert!(
        !p.args.iter().any(|a| a == "tail"),
        "cut args are not invented"
    );
}

#[test]
fn full_ring_buffer_counts_losses_and_keeps_running() {
    // A 1 MiB buffer and a consumer that does not read for a while.
    let mut h = Harness::start_with_channel(
        SensorConfig {
            ring_buffer_mb: 1,
            ..common::cfg()
        },
        16,
    );
    let dir = tempfile::tempdir().unwrap();
    // Nobody reads: the channel (16) fills, the sensor thread blocks, then
    // the 1 MiB ring fills.
    let script = format!(
        "cd {}; i=0; while [ $i -lt 3000 ]; do echo x > f$i; mv f$i g$i; rm g$i; i=$((i+1)); done",
        dir.path().display()
    );
    for _ in 0..2 {
        let st = Command::new("/bin/sh")
            .args(["-c", &script])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let lost = h
        .wait_for(Duration::from_secs(120), |e| matches!(&e.payload, Payload::Health(x) if x.action == HealthAction::EventsLost && x.health.counters.get("lost.total").copied().unwrap_or(0) > 0))
        .expect("loss reported as a health event");
    let Payload::Health(x) = &lost.payload else {
        unreachable!()
    };
    assert!(x.health.message.contains("lost"));
    // Still running: a new exec is seen.
    h.seen.clear();
    while h.rx.try_recv().is_ok() {}
    let st = Command::new("/bin/true")
        .arg("vigie-after-loss")
        .status()
        .unwrap();
    assert!(st.success());
    h.wait_for(Duration::from_secs(60), |e| matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::Exec && p.process.args.get(1).map(String::as_str) == Some("vigie-after-loss")))
        .expect("sensor still running after losses");
}

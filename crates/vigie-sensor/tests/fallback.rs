//! The fallback sensor, forced by configuration: degraded mode is reported,
//! exec/exit come from the proc connector and file writes from fanotify.

mod common;

use std::process::Command;
use std::time::Duration;

use common::Harness;
use vigie_event::{FileAction, HealthAction, Payload, ProcessAction};
use vigie_sensor::{SensorConfig, SensorMode};

#[test]
fn forced_fallback_reports_degraded_mode_and_sees_exec_exit_and_writes() {
    let mut h = Harness::start(SensorConfig {
        force_fallback: true,
        ..common::cfg()
    });
    assert_eq!(h.sensor.as_ref().unwrap().mode(), SensorMode::Fallback);
    h.wait_for(
        Duration::from_secs(5),
        |e| matches!(&e.payload, Payload::Health(x) if x.action == HealthAction::Degraded),
    )
    .expect("degraded mode reported");
    // A process that lives long enough for /proc to be read.
    let mut child = Command::new("/bin/sleep").arg("0.5").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    h.wait_for(Duration::from_secs(10), |e| matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::Exec && p.process.pid == pid))
        .expect("exec from the proc connector");
    h.wait_for(Duration::from_secs(10), |e| matches!(&e.payload, Payload::Process(p) if p.action == ProcessAction::Exit && p.process.pid == pid))
        .expect("exit from the proc connector");
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::canonicalize(dir.path())
        .unwrap()
        .join("written.txt");
    std::fs::write(&f, b"data").unwrap();
    let want = f.to_str().unwrap().to_string();
    let w = h.wait_for(Duration::from_secs(10), |e| matches!(&e.payload, Payload::File(x) if x.action == FileAction::Write && x.file.path == want))
        .expect("write from fanotify");
    // Content sampled in the fallback too: "data" is 1.5 bits per byte.
    let Payload::File(w) = &w.payload else {
        unreachable!()
    };
    assert_eq!(w.file.vigie.entropy, Some(1.5), "{w:?}");
    assert_eq!(w.file.size, Some(4));
}

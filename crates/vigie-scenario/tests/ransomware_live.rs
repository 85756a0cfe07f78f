//! The ransomware detector on real kernel events (root): the real eBPF
//! sensor feeds `vigie_detect::behaviour::Ransomware` while `vigie-ransim`
//! encrypts a temp directory, or while ordinary tools work on one. Each test
//! only scores events about its own temp directory (other activity on the
//! host is not this test's business) and cleans up on drop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use vigie_detect::behaviour::{
    CANARY_RULE_ID, Canaries, CanaryOptions, RANSOMWARE_RULE_ID, Ransomware, RansomwareConfig,
    kill_target,
};
use vigie_event::{Alert, Event, Level, Payload};
use vigie_sensor::{Sensor, SensorConfig};

const RANSIM: &str = env!("CARGO_BIN_EXE_vigie-ransim");

/// One test at a time: a compile running beside the simulator would slow
/// the pipeline and blur the files-touched figure.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The sensor and the detector, scoring events under `root` only.
struct Live {
    sensor: Option<Sensor>,
    rx: Receiver<vigie_event::Event>,
    det: Ransomware,
    root: String,
    alerts: Vec<Alert>,
    scored: usize,
    sampled: usize,
}

impl Live {
    fn start(root: &Path, canaries: Vec<String>) -> Live {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "these tests load eBPF programs and must run as root"
        );
        let (tx, rx) = sync_channel(1 << 16);
        let sensor = Sensor::start(SensorConfig::default(), tx).expect("sensor starts");
        let mut det = Ransomware::new(RansomwareConfig::default());
        det.set_canaries(canaries);
        Live {
            sensor: Some(sensor),
            rx,
            det,
            root: format!("{}/", root.display()),
            alerts: Vec::new(),
            scored: 0,
            sampled: 0,
        }
    }

    fn mine(&self, e: &Event) -> bool {
        match &e.payload {
            Payload::File(f) => {
                f.file.path.starts_with(&self.root)
                    || f.file
                        .vigie
                        .original_path
                        .as_deref()
                        .is_some_and(|p| p.starts_with(&self.root))
            }
            _ => false,
        }
    }

    /// Feeds one event if it is ours; returns the alerts it raised.
    fn feed(&mut self, e: &Event) -> Vec<Alert> {
        if !self.mine(e) {
            return Vec::new();
        }
        self.scored += 1;
        if let Payload::File(f) = &e.payload
            && f.file.vigie.entropy.is_some()
        {
            self.sampled += 1;
        }
        let a = self.det.process(e);
        self.alerts.extend(a.iter().cloned());
        a
    }

    /// Scores events until `quiet` passes with none of ours (at most `max`).
    fn settle(&mut self, quiet: Duration, max: Duration) {
        let end = Instant::now() + max;
        let mut last = Instant::now();
        while Instant::now() < end && last.elapsed() < quiet {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(e) => {
                    if self.mine(&e) {
                        last = Instant::now();
                    }
                    self.feed(&e);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("sensor stopped"),
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(s) = self.sensor.take() {
            let _ = s.stop();
        }
    }
}

/// Kills the child on drop (a failing test leaves no simulator running).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn populate(root: &Path, dirs: usize, per_dir: usize) -> HashMap<PathBuf, Vec<u8>> {
    vigie_scenario::share::populate(root, dirs, per_dir).expect("populate the test share")
}

/// Runs the simulator at `rate` until the first critical alert that names
/// it, kills it as the response would, prints what it took and returns
/// (alert, touched files).
fn run_simulator(canaries: bool) -> (Alert, usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("partage");
    std::fs::create_dir(&root).unwrap();
    let files = populate(&root, 10, 20);
    let planted = if canaries {
        let opts = CanaryOptions {
            dirs: std::iter::once(root.clone())
                .chain((0..10).map(|d| root.join(format!("service-{d:02}"))))
                .collect(),
            ..CanaryOptions::default()
        };
        Canaries::plant(&opts).unwrap().paths()
    } else {
        Vec::new()
    };
    let mut live = Live::start(&root, planted);
    let started = Instant::now();
    let child = Command::new(RANSIM)
        .args(["--dir", root.to_str().unwrap(), "--rate", "100"])
        .stdout(Stdio::null())
        .spawn()
        .expect("run vigie-ransim");
    let mut child = Reap(child);
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut hit = None;
    while hit.is_none() && Instant::now() < deadline {
        let e = match live.rx.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => panic!("sensor stopped"),
        };
        for a in live.feed(&e) {
            if a.level() == Level::Critical && kill_target(&a).is_some_and(|t| t.pid == pid) {
                // The response: kill the process tree named by the alert.
                let _ = child.0.kill();
                hit = Some(a);
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    let _ = child.0.wait();
    let n = vigie_scenario::share::touched(&files);
    let alert = hit.unwrap_or_else(|| {
        panic!(
            "no critical alert naming pid {pid} within 30 s; {} events scored, {} sampled, \
             alerts: {:#?}",
            live.scored, live.sampled, live.alerts
        )
    });
    println!(
        "{}: alert after {n} files touched, {} ms after the simulator started: {}",
        if canaries { "canary" } else { "ransomware" },
        elapsed.as_millis(),
        alert.rule.description.as_deref().unwrap_or_default()
    );
    (alert, n)
}

#[test]
fn simulator_is_detected_within_fifty_files() {
    let (alert, n) = run_simulator(false);
    assert_eq!(alert.rule.id, RANSOMWARE_RULE_ID);
    assert!(n > 0, "the simulator did nothing");
    assert!(
        n <= 50,
        "{n} files touched before the alert (target: <= 50)"
    );
}

#[test]
fn canaries_stop_the_simulator_at_the_first_files() {
    let (alert, n) = run_simulator(true);
    assert_eq!(alert.rule.id, CANARY_RULE_ID);
    assert!(n <= 5, "{n} files touched before the canary alert");
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiling, archiving, backing up, rotating logs and upgrading a package,
/// for real, on a few hundred files: not one alert.
#[test]
fn ordinary_work_raises_no_alert() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("work");
    std::fs::create_dir(&root).unwrap();
    let docs = root.join("docs");
    std::fs::create_dir(&docs).unwrap();
    populate(&docs, 6, 20);
    // Some already-compressed and random-looking content, as real shares have.
    sh(
        &docs,
        "for i in 1 2 3 4 5; do head -c 200000 /dev/urandom > blob$i.bin; \
         gzip -c service-00/dossier-00$i.* > archive$i.gz; done",
    );
    let mut live = Live::start(&root, Vec::new());
    let mut report = Vec::new();
    let mut step = |live: &mut Live, name: &str, script: &str| {
        let before = (live.scored, live.alerts.len());
        sh(&root, script);
        live.settle(Duration::from_millis(1500), Duration::from_secs(30));
        report.push(format!(
            "{name}: {} events, {} alerts",
            live.scored - before.0,
            live.alerts.len() - before.1
        ));
    };
    step(
        &mut live,
        "cc",
        "mkdir -p cc && cd cc && for i in 1 2 3 4 5 6; do \
           printf '#include <stdio.h>\\nint f%d(void){return %d;}\\n' $i $i > f$i.c; done && \
         printf 'int f1(void);\\nint main(void){return f1()-1;}\\n' > main.c && \
         for f in *.c; do cc -O2 -c $f; done && cc -o prog *.o && ./prog",
    );
    step(
        &mut live,
        "cargo",
        "mkdir -p crate/src && cd crate && \
         printf '[package]\\nname = \"tiny\"\\nversion = \"0.1.0\"\\nedition = \"2021\"\\n' > Cargo.toml && \
         printf 'fn main() { println!(\"{}\", (1..10u64).product::<u64>()); }\\n' > src/main.rs && \
         CARGO_TARGET_DIR=$PWD/target cargo build --offline -q && ./target/debug/tiny",
    );
    step(
        &mut live,
        "tar",
        "tar czf docs.tar.gz docs && mkdir -p untar && tar xzf docs.tar.gz -C untar",
    );
    step(
        &mut live,
        "zip",
        "zip -qr docs.zip docs && mkdir -p unzip && unzip -q docs.zip -d unzip",
    );
    step(
        &mut live,
        "rsync",
        "rsync -a docs/ backup/ && for f in docs/service-01/*; do echo modif >> $f; done && \
         rsync -a docs/ backup/",
    );
    step(
        &mut live,
        "logrotate",
        "mkdir -p logs && for i in $(seq 1 15); do seq 1 3000 | sed \"s/^/app$i GET \\/index /\" > logs/app$i.log; done && \
         printf '%s/logs/*.log {\\n  rotate 4\\n  compress\\n  missingok\\n}\\n' \"$PWD\" > lr.conf && \
         for n in 1 2 3; do logrotate -f -s lr.state lr.conf; \
           for i in $(seq 1 15); do seq 1 3000 >> logs/app$i.log; done; done",
    );
    step(
        &mut live,
        "dpkg",
        "mkdir -p deb/admin/updates deb/admin/info deb/inst && touch deb/admin/status && \
         for v in 1.0 1.1; do \
           rm -rf deb/pkg && mkdir -p deb/pkg/DEBIAN deb/pkg/opt/vigie-test/bin deb/pkg/opt/vigie-test/share && \
           printf 'Package: vigie-test\\nVersion: %s\\nArchitecture: all\\nMaintainer: t <t@example.org>\\nDescription: test\\n' $v > deb/pkg/DEBIAN/control && \
           for i in $(seq 1 30); do echo \"config $i version $v\" > deb/pkg/opt/vigie-test/share/f$i.conf; done && \
           cp /bin/true deb/pkg/opt/vigie-test/bin/tool && \
           seq 1 2000 | gzip -9 > deb/pkg/opt/vigie-test/share/changelog.gz && \
           dpkg-deb --build deb/pkg deb/v$v.deb > /dev/null && \
           dpkg --instdir=$PWD/deb/inst --admindir=$PWD/deb/admin --force-script-chrootless --force-not-root -i deb/v$v.deb > /dev/null; \
         done",
    );
    println!("{}", report.join("\n"));
    println!(
        "benign workloads: {} events scored, {} with a content sample",
        live.scored, live.sampled
    );
    // The test can fail: the detector did see the work, with samples.
    assert!(live.scored > 500, "{report:?}");
    assert!(live.sampled > 100, "{report:?}");
    assert!(
        live.alerts.is_empty(),
        "false positives:\n{}",
        live.alerts
            .iter()
            .map(|a| a.rule.description.clone().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! The ransomware detector on synthetic events: thresholds, what ordinary
//! tools do, expiry, bounds, canaries, worker pools, backup deletion. (The
//! real sensor and simulator run in crates/vigie-scenario/tests.)

use chrono::{DateTime, TimeDelta, Utc};
use vigie_detect::behaviour::{
    BACKUP_RULE_ID, CANARY_RULE_ID, RANSOMWARE_RULE_ID, Ransomware, RansomwareConfig, kill_target,
};
use vigie_event::{
    Alert, Event, File, FileAction, FileEvent, Host, Level, LogRecord, LogSource, Payload, Process,
    ProcessAction, ProcessEvent, ProcessSummary,
};

fn t0() -> DateTime<Utc> {
    "2026-11-27T03:00:00Z".parse().unwrap()
}

fn proc_(pid: u32, exe: &str, parent: (u32, &str)) -> Process {
    Process {
        entity_id: format!("{pid}-100"),
        pid,
        name: exe.rsplit('/').next().unwrap().into(),
        executable: exe.into(),
        parent: Some(std::sync::Arc::new(ProcessSummary {
            entity_id: format!("{}-50", parent.0),
            pid: parent.0,
            executable: parent.1.into(),
            ..ProcessSummary::default()
        })),
        ..Process::default()
    }
}

fn file_event(
    t: DateTime<Utc>,
    p: &Process,
    action: FileAction,
    path: &str,
    f: impl FnOnce(&mut File),
) -> Event {
    let mut file = File::at(path);
    f(&mut file);
    Event::new(
        t,
        Host::named("fileserver"),
        Payload::File(FileEvent {
            action,
            file,
            process: p.clone(),
        }),
    )
}

/// A write-close whose content the sensor sampled.
fn write(
    t: DateTime<Utc>,
    p: &Process,
    path: &str,
    size: u64,
    entropy: f32,
    header: Option<&str>,
) -> Event {
    file_event(t, p, FileAction::Write, path, |f| {
        f.size = Some(size);
        f.vigie.bytes_written = Some(size);
        f.vigie.entropy = Some(entropy);
        f.vigie.header = header.map(str::to_string);
    })
}

/// A write whose sampled content looks random (no known header).
fn encrypted_write(t: DateTime<Utc>, p: &Process, path: &str) -> Event {
    write(t, p, path, 4096, 7.95, None)
}

fn rename(t: DateTime<Utc>, p: &Process, from: &str, to: &str, entropy: Option<f32>) -> Event {
    file_event(t, p, FileAction::Rename, to, |f| {
        f.vigie.original_path = Some(from.into());
        f.size = Some(4096);
        f.vigie.entropy = entropy;
    })
}

fn feed(d: &mut Ransomware, events: impl IntoIterator<Item = Event>) -> Vec<Alert> {
    events.into_iter().flat_map(|e| d.process(&e)).collect()
}

fn encryptor() -> Process {
    proc_(4242, "/tmp/.x/enc", (4000, "/usr/bin/bash"))
}

#[test]
fn in_place_encryption_fires_at_the_threshold_and_once() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let p = encryptor();
    let ev = |i: u32| {
        encrypted_write(
            t0() + TimeDelta::milliseconds(i as i64 * 10),
            &p,
            &format!("/srv/partage/doc{i}.txt"),
        )
    };
    assert!(feed(&mut d, (0..9).map(ev)).is_empty());
    let alerts = feed(&mut d, [ev(9)]);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.rule.id, RANSOMWARE_RULE_ID);
    assert_eq!(a.level(), Level::Critical);
    assert_eq!(a.rule.ruleset, "behaviour");
    assert!(a.rule.attack.contains(&"T1486".to_string()));
    let text = a.rule.description.as_deref().unwrap();
    assert!(text.contains("rewrote 10 files"), "{text}");
    assert!(text.contains("/tmp/.x/enc (pid 4242"), "{text}");
    assert!(text.contains("/srv/partage/doc0.txt"), "{text}");
    let target = kill_target(a).unwrap();
    assert_eq!(target.pid, 4242);
    // Evidence events travel with the alert.
    assert!(a.events.len() > 1);
    // No repeat for the same process.
    assert!(feed(&mut d, (10..40).map(ev)).is_empty());
}

#[test]
fn rename_to_one_new_extension_corroborates_at_five() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let p = encryptor();
    let mut alerts = Vec::new();
    let mut at = None;
    for i in 0..20u32 {
        let t = t0() + TimeDelta::milliseconds(i as i64 * 10);
        // Unknown extension: content alone is not enough.
        let path = format!("/srv/data/blob{i}.dat");
        alerts.extend(d.process(&encrypted_write(t, &p, &path)));
        alerts.extend(d.process(&rename(t, &p, &path, &format!("{path}.crypt"), Some(7.95))));
        if !alerts.is_empty() && at.is_none() {
            at = Some(i + 1);
        }
    }
    assert_eq!(at, Some(5), "{alerts:#?}");
    assert_eq!(alerts.len(), 1);
    let text = alerts[0].rule.description.as_deref().unwrap();
    assert!(text.contains("renamed 5 files to *.crypt"), "{text}");
}

#[test]
fn notes_in_several_directories_corroborate() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let p = encryptor();
    let mut alerts = Vec::new();
    for i in 0..5u32 {
        let t = t0() + TimeDelta::seconds(i as i64);
        let note = format!("/srv/d{i}/HOW_TO_RECOVER_FILES.txt");
        alerts.extend(d.process(&write(t, &p, &note, 900, 4.6, None)));
        alerts.extend(d.process(&encrypted_write(t, &p, &format!("/srv/d{i}/x.pdf"))));
    }
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert!(
        alerts[0]
            .rule
            .description
            .as_deref()
            .unwrap()
            .contains("dropped HOW_TO_RECOVER_FILES.txt in 5 directories")
    );
}

#[test]
fn encrypted_copy_then_delete_counts() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let p = encryptor();
    let mut n = 0;
    for i in 0..30u32 {
        let t = t0() + TimeDelta::milliseconds(i as i64);
        let orig = format!("/home/alice/Documents/f{i}");
        n += d
            .process(&encrypted_write(t, &p, &format!("{orig}.odt.Lck")))
            .len();
        n += d
            .process(&file_event(
                t,
                &p,
                FileAction::Delete,
                &format!("{orig}.odt"),
                |_| {},
            ))
            .len();
        if n > 0 {
            // Five copies whose originals were deleted, all with one new
            // extension: corroborated.
            assert_eq!(i + 1, 5);
            return;
        }
    }
    panic!("no alert");
}

#[test]
fn ordinary_tools_do_not_fire() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let t = t0();
    // gzip/logrotate/tar: compressed output has a header.
    let gzip = proc_(10, "/usr/bin/gzip", (9, "/usr/sbin/logrotate"));
    let lr = proc_(9, "/usr/sbin/logrotate", (1, "/usr/lib/systemd/systemd"));
    let mut alerts = Vec::new();
    for i in 0..200u32 {
        let log = format!("/var/log/app{i}.log");
        alerts.extend(d.process(&rename(t, &lr, &log, &format!("{log}.1"), Some(4.0))));
        let gz = format!("{log}.1.gz");
        alerts.extend(d.process(&write(t, &gzip, &gz, 9000, 7.97, Some("gz"))));
        alerts.extend(d.process(&file_event(
            t,
            &gzip,
            FileAction::Delete,
            &format!("{log}.1"),
            |_| {},
        )));
    }
    // git objects / caches: random-looking, no extension, never renamed to
    // a new extension.
    let git = proc_(20, "/usr/bin/git", (19, "/usr/bin/bash"));
    for i in 0..200u32 {
        alerts.extend(d.process(&encrypted_write(
            t,
            &git,
            &format!("/src/.git/objects/{:02x}/{i:038}", i % 256),
        )));
    }
    // rsync: temp name, then renamed to the real name.
    let rsync = proc_(30, "/usr/bin/rsync", (29, "/usr/bin/rsync"));
    for i in 0..200u32 {
        let tmp = format!("/backup/docs/.r{i}.jpg.AbC123");
        alerts.extend(d.process(&write(t, &rsync, &tmp, 50_000, 7.9, Some("jpg"))));
        alerts.extend(d.process(&rename(
            t,
            &rsync,
            &tmp,
            &format!("/backup/docs/r{i}.jpg"),
            Some(7.9),
        )));
    }
    // dpkg: *.dpkg-new renamed over the old file.
    let dpkg = proc_(40, "/usr/bin/dpkg", (39, "/usr/bin/apt"));
    for i in 0..200u32 {
        let f = format!("/usr/share/foo/f{i}.conf");
        let new = format!("{f}.dpkg-new");
        alerts.extend(d.process(&write(t, &dpkg, &new, 700, 4.8, None)));
        alerts.extend(d.process(&rename(t, &dpkg, &format!("{f}.dpkg-new"), &f, Some(4.8))));
    }
    // lz4/zstd --rm: a compressed copy, then the original deleted.
    let lz4 = proc_(50, "/usr/bin/lz4", (49, "/usr/bin/bash"));
    for i in 0..50u32 {
        let f = format!("/home/alice/exports/e{i}.csv");
        alerts.extend(d.process(&encrypted_write(t, &lz4, &format!("{f}.lz4"))));
        alerts.extend(d.process(&file_event(t, &lz4, FileAction::Delete, &f, |_| {})));
    }
    // A logger closing and reopening one file many times: one file.
    let logger = proc_(60, "/usr/sbin/rsyslogd", (1, "/sbin/init"));
    for i in 0..20_000i64 {
        let t = t + TimeDelta::milliseconds(i);
        alerts.extend(d.process(&write(t, &logger, "/var/log/syslog", 1000, 5.1, None)));
    }
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[test]
fn evidence_expires_after_the_window_and_idle_processes_are_dropped() {
    let cfg = RansomwareConfig {
        window_secs: 60,
        idle_secs: 120,
        ..RansomwareConfig::default()
    };
    let mut d = Ransomware::new(cfg);
    let p = encryptor();
    // Nine files, then one every 61 s: never ten within the window.
    let mut alerts = feed(
        &mut d,
        (0..9).map(|i| encrypted_write(t0(), &p, &format!("/srv/a{i}.txt"))),
    );
    for i in 0..5 {
        let t = t0() + TimeDelta::seconds(61 * (i + 1));
        alerts.extend(d.process(&encrypted_write(t, &p, &format!("/srv/b{i}.txt"))));
    }
    assert!(alerts.is_empty(), "{alerts:#?}");
    assert_eq!(d.tracked(), 1);
    d.expire(t0() + TimeDelta::seconds(61 * 5 + 121));
    assert_eq!(d.tracked(), 0);
}

#[test]
fn memory_is_bounded() {
    let cfg = RansomwareConfig {
        max_processes: 100,
        max_files: 50,
        ..RansomwareConfig::default()
    };
    let mut d = Ransomware::new(cfg);
    for pid in 0..5000u32 {
        let p = proc_(pid + 2, &format!("/usr/bin/tool{pid}"), (1, "/sbin/init"));
        d.process(&encrypted_write(t0(), &p, "/tmp/x.bin"));
    }
    assert!(d.tracked() <= 100, "{}", d.tracked());
    // One process, many files: bounded, and still detected.
    let p = encryptor();
    let alerts = feed(
        &mut d,
        (0..5000).map(|i| encrypted_write(t0(), &p, &format!("/srv/f{i}.txt"))),
    );
    assert_eq!(alerts.len(), 1);
}

#[test]
fn canary_write_rename_or_delete_is_critical_at_once() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let canary = "/srv/partage/.!000-factures-2026.pdf";
    d.set_canaries([canary.to_string()]);
    let p = encryptor();
    // Reading is not an event; a write is.
    let a = d.process(&encrypted_write(t0(), &p, canary));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule.id, CANARY_RULE_ID);
    assert_eq!(a[0].level(), Level::Critical);
    let text = a[0].rule.description.as_deref().unwrap();
    assert!(text.contains(canary) && text.contains("pid 4242"), "{text}");
    // Once per process and canary.
    assert!(d.process(&encrypted_write(t0(), &p, canary)).is_empty());
    // Another process renaming it away.
    let q = proc_(77, "/usr/bin/mv", (76, "/usr/bin/bash"));
    let a = d.process(&rename(t0(), &q, canary, "/tmp/x", None));
    assert_eq!(a.len(), 1);
    assert_eq!(kill_target(&a[0]).unwrap().pid, 77);
    let r = proc_(78, "/usr/bin/rm", (76, "/usr/bin/bash"));
    assert_eq!(
        d.process(&file_event(t0(), &r, FileAction::Delete, canary, |_| {}))
            .len(),
        1
    );
    // Other files of the same directory are not canaries.
    assert!(
        d.process(&file_event(
            t0(),
            &r,
            FileAction::Delete,
            "/srv/partage/x.pdf",
            |_| {}
        ))
        .is_empty()
    );
}

#[test]
fn a_worker_pool_is_one_process_tree() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let exe = "/tmp/.x/enc";
    let mut alerts = Vec::new();
    for i in 0..10u32 {
        let w = proc_(5000 + i, exe, (4242, exe));
        alerts.extend(d.process(&encrypted_write(t0(), &w, &format!("/srv/w{i}.docx"))));
    }
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let t = kill_target(&alerts[0]).unwrap();
    assert_eq!((t.pid, t.entity_id.as_str()), (4242, "4242-50"));
}

#[test]
fn shadow_copy_and_snapshot_deletion() {
    let mut d = Ransomware::new(RansomwareConfig::default());
    let exec = |cmd: &str| {
        let mut p = proc_(900, "/usr/sbin/btrfs", (4242, "/tmp/.x/enc"));
        p.command_line = cmd.into();
        Event::new(
            t0(),
            Host::named("fileserver"),
            Payload::Process(ProcessEvent {
                action: ProcessAction::Exec,
                process: p,
                target: None,
                error: None,
            }),
        )
    };
    assert!(d.process(&exec("btrfs subvolume list /")).is_empty());
    let a = d.process(&exec("btrfs subvolume delete /.snapshots/12/snapshot"));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule.id, BACKUP_RULE_ID);
    assert_eq!(a[0].level(), Level::High);
    // A Windows record (EVTX / Sysmon) with the classic command.
    let mut fields = serde_json::Map::new();
    fields.insert("EventID".into(), 1.into());
    fields.insert("Image".into(), "C:\\Windows\\System32\\vssadmin.exe".into());
    fields.insert(
        "CommandLine".into(),
        "vssadmin.exe delete shadows /all /quiet".into(),
    );
    let rec = Event::new(
        t0(),
        Host::named("ws12"),
        Payload::Log(LogRecord {
            logsource: LogSource::default(),
            fields,
        }),
    );
    let a = d.process(&rec);
    assert_eq!(a.len(), 1);
    assert!(
        a[0].rule
            .description
            .as_deref()
            .unwrap()
            .contains("vssadmin.exe delete shadows")
    );
    // Mass deletion of backup files by one process.
    let rm = proc_(950, "/usr/bin/rm", (4000, "/usr/bin/bash"));
    let a = feed(
        &mut d,
        (0..12).map(|i| {
            file_event(
                t0(),
                &rm,
                FileAction::Delete,
                &format!("/backup/job{i}.vbk"),
                |_| {},
            )
        }),
    );
    assert_eq!(a.len(), 1);
    assert!(
        a[0].rule
            .description
            .as_deref()
            .unwrap()
            .contains("deleted 10 backup files")
    );
}

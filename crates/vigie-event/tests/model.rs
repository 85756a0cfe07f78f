//! ECS round trips for every payload, and field access by Sigma name.

use std::net::IpAddr;

use chrono::TimeZone;
use vigie_event::ecs::{self, is_vigie_event, parse_alert, parse_event};
use vigie_event::*;

fn process() -> Process {
    Process {
        entity_id: "4242@1700000000000".into(),
        pid: 4242,
        name: "bash".into(),
        executable: "/usr/bin/bash".into(),
        args: vec!["bash".into(), "-c".into(), "echo <script>".into()],
        args_count: Some(3),
        command_line: "bash -c 'echo <script>'".into(),
        working_directory: Some("/tmp".into()),
        hash: Hash {
            sha256: Some("ab".repeat(32)),
        },
        user: Some(User {
            id: Some("1000".into()),
            name: Some("alice".into()),
            domain: None,
        }),
        parent: Some(std::sync::Arc::new(ProcessSummary {
            entity_id: "1@1".into(),
            pid: 1,
            name: "sshd".into(),
            executable: "/usr/sbin/sshd".into(),
            command_line: "sshd: alice".into(),
            user: Some(User::uid(0)),
            ..Default::default()
        })),
        vigie: ProcessExtra {
            ppid: Some(1),
            args_truncated: true,
            login_uid: Some(1000),
            exe_on_tmp: true,
            netns: Some(4026531840),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn event(payload: Payload) -> Event {
    let time = chrono::Utc.with_ymd_and_hms(2026, 11, 27, 3, 4, 5).unwrap();
    let mut e = Event::new(time, Host::named("fileserver"), payload);
    e.source = Some(SourceRef {
        path: "/var/log/x.jsonl".into(),
        record_id: Some(7),
    });
    e
}

fn all_payloads() -> Vec<Payload> {
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    let mut record = serde_json::Map::new();
    record.insert("EventID".into(), 1.into());
    record.insert("Image".into(), "C:\\Windows\\System32\\cmd.exe".into());
    let mut out = Vec::new();
    for action in ProcessAction::ALL {
        out.push(Payload::Process(ProcessEvent {
            action,
            process: process(),
            target: (action == ProcessAction::Ptrace).then(|| ProcessSummary::from(&process())),
            error: (action == ProcessAction::ExecFailed).then_some(2),
        }));
    }
    for action in FileAction::ALL {
        let mut file = File::at("/home/alice/report.docx.locked");
        file.vigie.original_path = Some("/home/alice/report.docx".into());
        file.vigie.entropy = Some(7.5);
        file.vigie.previous_entropy = Some(4.25);
        file.vigie.header = Some("zip".into());
        file.vigie.previous_header = Some("pdf".into());
        out.push(Payload::File(FileEvent {
            action,
            file,
            process: process(),
        }));
    }
    for action in NetworkAction::ALL {
        out.push(Payload::Network(NetworkEvent {
            action,
            transport: Transport::Udp,
            source: Endpoint {
                ip: ip("fd00::1"),
                port: Some(40000),
                domain: None,
            },
            destination: Endpoint {
                ip: ip("192.0.2.7"),
                port: Some(443),
                domain: Some("evil.example".into()),
            },
            process: process(),
        }));
    }
    out.push(Payload::Dns(DnsEvent {
        dns: Dns {
            kind: "answer".into(),
            question: DnsQuestion {
                name: "evil.example".into(),
                kind: "A".into(),
            },
            answers: vec![],
            response_code: Some("NOERROR".into()),
            resolved_ip: vec!["192.0.2.7".parse().unwrap()],
        },
        destination: Endpoint {
            ip: ip("10.0.0.53"),
            port: Some(53),
            domain: None,
        },
        process: process(),
    }));
    out.push(Payload::Authentication(AuthEvent {
        outcome: Outcome::Failure,
        user: User {
            name: Some("bob".into()),
            ..Default::default()
        },
        source: Endpoint {
            ip: ip("198.51.100.4"),
            ..Default::default()
        },
        auth: AuthDetails {
            service: "vpn".into(),
            nas: Some("gw1".into()),
            reason: Some("wrong code".into()),
            local_hour: Some(3),
            ..Default::default()
        },
    }));
    for action in [
        KernelAction::ModuleLoad,
        KernelAction::BpfLoad,
        KernelAction::Mount,
    ] {
        out.push(Payload::Kernel(KernelEvent {
            action,
            detail: KernelDetail {
                name: "rootkit".into(),
                kind: Some("kprobe".into()),
                source: None,
            },
            process: process(),
        }));
    }
    out.push(Payload::Health(HealthEvent {
        action: HealthAction::EventsLost,
        health: Health {
            message: "ring buffer full".into(),
            sensor: Some("ebpf".into()),
            counters: [("process".to_string(), 12u64)].into_iter().collect(),
        },
    }));
    out.push(Payload::Response(ResponseEvent {
        outcome: Outcome::Success,
        response: ResponseDetail {
            action: "isolate".into(),
            target: "host".into(),
            actor: "policy".into(),
            alert_id: Some("a1".into()),
            detail: "manager reachable, probe blocked".into(),
            undo: Some("vigie agent release".into()),
        },
    }));
    out.push(Payload::Log(LogRecord {
        logsource: LogSource {
            product: Some("windows".into()),
            category: Some("process_creation".into()),
            service: None,
        },
        fields: record,
    }));
    out
}

#[test]
fn every_payload_round_trips_through_ecs() {
    for payload in all_payloads() {
        let e = event(payload);
        let json = serde_json::to_string(&e).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(is_vigie_event(&value), "{json}");
        let back = parse_event(&json).unwrap_or_else(|err| panic!("{err}: {json}"));
        assert_eq!(back, e, "{json}");
    }
}

#[test]
fn ecs_shape_has_the_standard_fields() {
    let e = event(all_payloads().remove(0));
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["@timestamp"], "2026-11-27T03:04:05Z");
    assert_eq!(v["event"]["category"][0], "process");
    assert_eq!(v["event"]["type"][0], "start");
    assert_eq!(v["event"]["action"], "exec");
    assert_eq!(v["process"]["executable"], "/usr/bin/bash");
    assert_eq!(v["process"]["parent"]["executable"], "/usr/sbin/sshd");
    assert_eq!(v["process"]["hash"]["sha256"], "ab".repeat(32));
    assert_eq!(v["process"]["vigie"]["netns"], 4026531840u32);
    assert_eq!(v["user"]["name"], "alice");
    assert_eq!(v["host"]["name"], "fileserver");
    assert_eq!(v["vigie"]["source"]["record_id"], 7);
}

#[test]
fn sigma_names_read_typed_events() {
    let payloads = all_payloads();
    let exec = event(payloads[0].clone());
    let text = |e: &Event, name: &str| {
        e.field(name)
            .and_then(|v| v.to_text().map(|s| s.into_owned()))
    };
    assert_eq!(text(&exec, "Image").as_deref(), Some("/usr/bin/bash"));
    assert_eq!(
        text(&exec, "CommandLine").as_deref(),
        Some("bash -c 'echo <script>'")
    );
    assert_eq!(
        text(&exec, "ParentImage").as_deref(),
        Some("/usr/sbin/sshd")
    );
    assert_eq!(text(&exec, "ParentProcessId").as_deref(), Some("1"));
    assert_eq!(text(&exec, "User").as_deref(), Some("alice"));
    assert_eq!(text(&exec, "CurrentDirectory").as_deref(), Some("/tmp"));
    assert_eq!(
        text(&exec, "Hashes"),
        Some(format!("SHA256={}", "ab".repeat(32)))
    );
    assert_eq!(
        text(&exec, "process.vigie.exe_on_tmp").as_deref(),
        Some("true")
    );
    assert_eq!(
        text(&exec, "process.vigie.netns").as_deref(),
        Some("4026531840")
    );
    assert_eq!(text(&exec, "TargetFilename"), None);
    assert_eq!(exec.logsource(), LogSource::linux("process_creation"));

    let rename = payloads
        .iter()
        .find(|p| matches!(p, Payload::File(f) if f.action == FileAction::Rename))
        .unwrap();
    let rename = event(rename.clone());
    assert_eq!(
        text(&rename, "TargetFilename").as_deref(),
        Some("/home/alice/report.docx.locked")
    );
    assert_eq!(
        text(&rename, "SourceFilename").as_deref(),
        Some("/home/alice/report.docx")
    );
    assert_eq!(text(&rename, "file.extension").as_deref(), Some("locked"));
    assert_eq!(rename.logsource(), LogSource::linux("file_rename"));
    assert_eq!(
        text(&rename, "file.vigie.previous_entropy").as_deref(),
        Some("4.25")
    );
    assert_eq!(text(&rename, "file.vigie.header").as_deref(), Some("zip"));
    assert_eq!(
        text(&rename, "file.vigie.previous_header").as_deref(),
        Some("pdf")
    );

    let connect = payloads
        .iter()
        .find(|p| matches!(p, Payload::Network(n) if n.action == NetworkAction::Connect))
        .unwrap();
    let connect = event(connect.clone());
    assert_eq!(
        text(&connect, "DestinationIp").as_deref(),
        Some("192.0.2.7")
    );
    assert_eq!(text(&connect, "DestinationPort").as_deref(), Some("443"));
    assert_eq!(text(&connect, "Initiated").as_deref(), Some("true"));
    assert_eq!(text(&connect, "SourceIp").as_deref(), Some("fd00::1"));
    assert_eq!(text(&connect, "Protocol").as_deref(), Some("udp"));

    let auth = payloads
        .iter()
        .find(|p| matches!(p, Payload::Authentication(_)))
        .unwrap();
    let auth = event(auth.clone());
    assert_eq!(text(&auth, "user.name").as_deref(), Some("bob"));
    assert_eq!(text(&auth, "event.outcome").as_deref(), Some("failure"));
    assert_eq!(text(&auth, "source.ip").as_deref(), Some("198.51.100.4"));
    assert_eq!(text(&auth, "vigie.auth.local_hour").as_deref(), Some("3"));
    assert_eq!(text(&auth, "vigie.auth.nas").as_deref(), Some("gw1"));
    assert_eq!(text(&auth, "Image"), None);
}

#[test]
fn log_records_are_read_as_they_are() {
    let mut fields = serde_json::Map::new();
    fields.insert("EventID".into(), 4688.into());
    fields.insert("nested".into(), serde_json::json!({"a": {"b": ["x", "y"]}}));
    let e = event(Payload::Log(LogRecord {
        logsource: LogSource::default(),
        fields,
    }));
    assert_eq!(
        e.field("EventID"),
        Some(FieldValue::Json(&serde_json::json!(4688)))
    );
    assert_eq!(
        e.field("nested.a.b.1"),
        Some(FieldValue::Json(&serde_json::json!("y")))
    );
    assert_eq!(e.field("nested.a.c"), None);
    let mut strings = Vec::new();
    e.visit_strings(&mut |s| strings.push(s.to_string()));
    assert_eq!(strings, vec!["x", "y"]);
}

/// What a Sigma keyword search sees of a typed event: the process's strings
/// at its exec only, then what each event adds.
#[test]
fn keyword_strings_are_what_the_event_brings() {
    let strings = |payload: Payload| {
        let mut out = Vec::new();
        event(payload).visit_strings(&mut |s| out.push(s.to_string()));
        out
    };
    let process_strings = [
        "/usr/bin/bash",
        "bash -c 'echo <script>'",
        "/usr/sbin/sshd",
        "sshd: alice",
    ];
    for payload in all_payloads() {
        let kind = format!("{:?}", event(payload.clone()).logsource());
        let seen = strings(payload.clone());
        let execs = matches!(&payload, Payload::Process(p)
            if matches!(p.action, ProcessAction::Exec | ProcessAction::ExecFailed));
        for s in process_strings {
            assert_eq!(
                seen.iter().any(|x| x == s),
                execs,
                "{kind}: {s} in {seen:?}"
            );
        }
        match &payload {
            Payload::File(_) => assert_eq!(
                seen,
                ["/home/alice/report.docx.locked", "/home/alice/report.docx"]
            ),
            Payload::Network(_) => assert_eq!(seen, ["evil.example"]),
            Payload::Dns(_) => assert_eq!(seen, ["evil.example"]),
            _ => {}
        }
    }
}

#[test]
fn alerts_round_trip_with_rule_fields() {
    let e = event(all_payloads().remove(0));
    let alert = Alert {
        id: uuid::Uuid::now_v7(),
        time: e.time,
        host: e.host.clone(),
        rule: RuleRef {
            id: "5f1c3a7e-0000-4000-8000-000000000001".into(),
            name: "Base64 decoded and executed".into(),
            level: Some(Level::High),
            tags: vec!["attack.execution".into(), "attack.t1059.004".into()],
            attack: vec!["T1059.004".into()],
            ..Default::default()
        },
        events: vec![e],
    };
    let json = serde_json::to_string(&alert).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["rule"]["name"], "Base64 decoded and executed");
    assert_eq!(v["rule"]["level"], "high");
    assert_eq!(v["rule"]["tags"][1], "attack.t1059.004");
    assert_eq!(v["event"]["kind"], "alert");
    assert_eq!(v["threat"]["technique"]["id"][0], "T1059.004");
    assert_eq!(v["vigie"]["source"]["path"], "/var/log/x.jsonl");
    assert_eq!(v["vigie"]["events"][0]["process"]["pid"], 4242);
    assert_eq!(parse_alert(&json).unwrap(), alert);
}

/// A writer may render the events and the rule first (once for several
/// alerts): `AlertParts` with them writes the same JSON as the alert.
#[test]
fn alert_parts_with_rendered_events_write_the_alert() {
    let e = event(all_payloads().remove(0));
    let other = event(all_payloads().remove(1));
    let alert = Alert {
        id: uuid::Uuid::now_v7(),
        time: e.time,
        host: e.host.clone(),
        rule: RuleRef {
            id: "r1".into(),
            name: "Correlated".into(),
            level: None,
            tags: vec!["attack.t1059".into()],
            attack: vec!["T1059".into()],
            ..Default::default()
        },
        events: vec![e, other],
    };
    let rendered: Vec<Box<serde_json::value::RawValue>> = alert
        .events
        .iter()
        .map(|e| serde_json::value::to_raw_value(e).unwrap())
        .collect();
    let rule = serde_json::value::to_raw_value(&alert.rule).unwrap();
    let parts = ecs::AlertParts {
        id: alert.id,
        time: alert.time,
        host: &alert.host,
        rule: &alert.rule,
        rule_section: &rule,
        source: alert.events[0].source.as_ref(),
        events: &rendered,
    };
    let json = serde_json::to_string(&parts).unwrap();
    assert_eq!(json, serde_json::to_string(&alert).unwrap());
    assert_eq!(parse_alert(&json).unwrap(), alert);
    // No level: an alert counts as medium.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["event"]["severity"], Level::Medium.severity());
}

#[test]
fn malformed_ecs_is_an_error_not_a_panic() {
    for bad in [
        "",
        "{}",
        "[1,2]",
        r#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"dataset":"vigie.nope"}}"#,
        r#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"dataset":"vigie.process","action":"exec"}}"#,
        r#"{"@timestamp":"2026-01-01T00:00:00Z","event":{"dataset":"vigie.process","action":"dance"},"process":{}}"#,
        r#"{"@timestamp":"yesterday","event":{}}"#,
    ] {
        assert!(parse_event(bad).is_err(), "{bad}");
    }
}

#[test]
fn levels_order_and_parse() {
    assert!(Level::Critical > Level::High);
    assert_eq!("HIGH".parse::<Level>().unwrap(), Level::High);
    assert!("severe".parse::<Level>().is_err());
}

/// docs/fields.md is generated from the mapping table; this keeps them equal.
#[test]
fn field_mapping_doc_is_current() {
    let mut doc = String::from(
        "# Field names: Sigma ⇄ ECS\n\n\
         Generated from `SIGMA_ECS_MAPPING` in `crates/vigie-event/src/fields.rs` \
         (the test `field_mapping_doc_is_current` regenerates it with `VIGIE_BLESS=1`).\n\n\
         Rules may use either name: a Sigma name is looked up through this table, \
         any other name is read as an ECS path (`process.vigie.exe_memfd`, `event.outcome`...). \
         Log records (EVTX, JSON) are read by their own field names.\n\n\
         | Sigma | ECS | note |\n|---|---|---|\n",
    );
    for row in SIGMA_ECS_MAPPING {
        doc.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            row.sigma, row.ecs, row.note
        ));
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fields.md");
    if std::env::var_os("VIGIE_BLESS").is_some() {
        std::fs::write(path, &doc).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        on_disk, doc,
        "run with VIGIE_BLESS=1 to regenerate docs/fields.md"
    );
}

#[test]
fn processes_compare_by_content_whether_or_not_they_share_ancestors() {
    let ancestor = |name: &str| ProcessSummary {
        entity_id: format!("{name}@1"),
        name: name.into(),
        ..Default::default()
    };
    let mut a = process();
    a.vigie.ancestors = vec![ancestor("bash"), ancestor("init")].into();
    let shared = a.clone();
    assert!(std::sync::Arc::ptr_eq(
        &a.vigie.ancestors,
        &shared.vigie.ancestors
    ));
    assert_eq!(a, shared);

    // The same ancestors rebuilt (another allocation) are still equal...
    let mut rebuilt = a.clone();
    rebuilt.vigie.ancestors = vec![ancestor("bash"), ancestor("init")].into();
    assert_eq!(a, rebuilt);
    // ...and other ancestors are not.
    let mut other = a.clone();
    other.vigie.ancestors = vec![ancestor("bash"), ancestor("sshd")].into();
    assert_ne!(a, other);

    // Every other field of the extras still counts next to shared ancestors.
    let mut moved = a.clone();
    moved.vigie.netns = Some(1);
    assert_ne!(a, moved);
    let mut container = a.clone();
    container.vigie.container_id = Some("abc".into());
    assert_ne!(a, container);
}

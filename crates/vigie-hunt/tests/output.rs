//! A hunt writes one detection per rule that fired, in each format; an event
//! several rules matched is rendered once but every JSON line is still the
//! whole alert, the same as the detection engine's own `Alert`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use vigie_event::{Event, Level};
use vigie_hunt::input;
use vigie_hunt::output::{self, Format};

/// A Windows process creation rule.
fn rule(title: &str, id: &str, level: &str, tags: &str, selection: &str) -> String {
    format!(
        "title: {title}\nid: {id}\nlevel: {level}\ntags: [{tags}]\n\
         logsource: {{product: windows, category: process_creation}}\n\
         detection:\n  sel: {{{selection}}}\n  condition: sel\n"
    )
}

/// Two rules on the same process creation, one on another, one too low.
fn rules() -> Vec<(String, String)> {
    [
        (
            "Whoami",
            "11111111-1111-4111-8111-111111111111",
            "high",
            "attack.discovery, attack.t1033",
            "Image|endswith: '\\whoami.exe'",
        ),
        (
            "Child of cmd",
            "22222222-2222-4222-8222-222222222222",
            "medium",
            "",
            "ParentImage|endswith: '\\cmd.exe'",
        ),
        (
            "Any process",
            "33333333-3333-4333-8333-333333333333",
            "informational",
            "",
            "Image|contains: 'exe'",
        ),
        (
            "Net use",
            "44444444-4444-4444-8444-444444444444",
            "low",
            "",
            "CommandLine|contains: 'net use'",
        ),
    ]
    .iter()
    .map(|(title, id, level, tags, sel)| {
        (format!("{title}.yml"), rule(title, id, level, tags, sel))
    })
    .collect()
}

fn engine() -> vigie_detect::Engine {
    let rules = rules();
    let documents: Vec<(&str, &str)> = rules
        .iter()
        .map(|(n, y)| (n.as_str(), y.as_str()))
        .collect();
    let (engine, report) = vigie_detect::Engine::from_yaml(&documents);
    assert_eq!(report.loaded(), documents.len(), "{report:?}");
    engine
}

fn sysmon_line(record_id: u64, image: &str, parent: &str, command_line: &str) -> String {
    serde_json::json!({"Event": {
        "System": {
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
            "EventID": 1,
            "EventRecordID": record_id,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": "ws1",
            "TimeCreated": {"#attributes": {"SystemTime": "2026-11-28T05:00:00.000000Z"}},
        },
        "EventData": {"Image": image, "ParentImage": parent, "CommandLine": command_line},
    }})
    .to_string()
}

/// A writer target the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Hunted {
    lines: Vec<String>,
    summary: vigie_hunt::Summary,
    /// The events as read, for the reference alerts.
    events: Vec<Event>,
}

fn hunt(format: Format) -> Hunted {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sysmon.jsonl");
    let lines = [
        sysmon_line(
            1,
            "C:\\Windows\\System32\\whoami.exe",
            "C:\\Windows\\System32\\cmd.exe",
            "whoami /all",
        ),
        sysmon_line(
            2,
            "C:\\Windows\\System32\\net.exe",
            "C:\\Windows\\explorer.exe",
            "net use \\\\srv\\c$",
        ),
        sysmon_line(3, "C:\\Tools\\app.bin", "C:\\Windows\\explorer.exe", "app"),
        // The same rules again (the JSON writer renders each rule once).
        sysmon_line(
            4,
            "C:\\Windows\\System32\\whoami.exe",
            "C:\\Windows\\System32\\cmd.exe",
            "whoami",
        ),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let engine = engine();
    let (files, problems) = input::discover(&[path]);
    assert!(problems.is_empty());
    let sink = Shared::default();
    let mut writer = output::writer(format, Box::new(sink.clone()), false);
    let options = vigie_hunt::HuntOptions {
        threads: 1,
        min_level: Level::Low,
        progress: false,
        classify: vigie_detect::windows_logsource,
    };
    let summary = vigie_hunt::run_with_engine(&files, &options, &engine, writer.as_mut()).unwrap();
    let events = input::read(&files[0], vigie_detect::windows_logsource)
        .filter_map(|r| match r {
            input::Record::Event(e) => Some(*e),
            _ => None,
        })
        .collect();
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    Hunted {
        lines: text.lines().map(str::to_string).collect(),
        summary,
        events,
    }
}

#[test]
fn jsonl_lines_are_the_engine_alerts() {
    let hunted = hunt(Format::Jsonl);
    // whoami.exe under cmd, twice: 2 rules (+1 informational, below
    // --min-level); net use: 1 rule (+1 informational); app.bin: none.
    assert_eq!(hunted.lines.len(), 5, "{:#?}", hunted.lines);
    assert_eq!(hunted.summary.detections_total(), 5);
    assert_eq!(hunted.summary.below_min_level, 3);
    assert_eq!(hunted.summary.detections.get(&Level::High), Some(&2));
    assert_eq!(hunted.summary.detections.get(&Level::Medium), Some(&2));
    assert_eq!(hunted.summary.detections.get(&Level::Low), Some(&1));

    let mut engine = engine();
    let mut expected: Vec<vigie_event::Alert> = hunted
        .events
        .iter()
        .flat_map(|e| engine.process(e))
        .filter(|a| a.level() >= Level::Low)
        .collect();
    let mut written: Vec<vigie_event::Alert> = hunted
        .lines
        .iter()
        .map(|l| vigie_event::ecs::parse_alert(l).expect("a whole alert per line"))
        .collect();
    assert_eq!(written.len(), expected.len());
    // Alert ids are new on each run, and the event ids were drawn when read.
    for (w, e) in written.iter_mut().zip(expected.iter_mut()) {
        w.id = e.id;
        w.events[0].id = e.events[0].id;
        assert_eq!(w, e);
    }
    let v: serde_json::Value = serde_json::from_str(&hunted.lines[0]).unwrap();
    assert_eq!(v["rule"]["id"], "11111111-1111-4111-8111-111111111111");
    assert_eq!(v["threat"]["technique"]["id"][0], "T1033");
    assert_eq!(v["vigie"]["source"]["record_id"], 1);
    assert_eq!(
        v["vigie"]["events"][0]["vigie"]["record"]["CommandLine"],
        "whoami /all"
    );
}

#[test]
fn table_and_csv_have_a_line_per_rule() {
    let table = hunt(Format::Table);
    assert_eq!(table.lines.len(), 1 + 5, "{:#?}", table.lines);
    assert!(table.lines[0].starts_with("TIME (UTC)"));
    assert!(table.lines[1].contains("high") && table.lines[1].contains("Whoami"));
    assert!(table.lines[2].contains("medium") && table.lines[2].contains("Child of cmd"));
    // The same telling fields on both lines of the event.
    assert!(table.lines[1].contains("CommandLine=whoami /all"));
    assert!(table.lines[2].contains("CommandLine=whoami /all"));
    assert!(table.lines[3].contains("Net use"));

    let csv = hunt(Format::Csv);
    assert_eq!(csv.lines.len(), 1 + 5, "{:#?}", csv.lines);
    assert!(csv.lines[0].starts_with("time,host,level,rule_id"));
    assert!(csv.lines[1].contains(",high,11111111-1111-4111-8111-111111111111,Whoami,"));
    assert!(csv.lines[1].contains("attack.discovery attack.t1033"));
    assert!(csv.lines[2].contains(",medium,22222222-2222-4222-8222-222222222222,"));
    assert!(csv.lines[3].contains(",low,44444444-4444-4444-8444-444444444444,"));
}

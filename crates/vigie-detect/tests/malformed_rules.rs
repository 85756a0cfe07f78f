//! Bad rules are reported with file, line and reason; good rules next to
//! them still load.

mod common;

use std::path::Path;

use serde_json::json;
use vigie_detect::{Engine, RuleKind, RuleStatus};

const GOOD: &str = "title: Good rule
id: 5a0c1f4e-0000-4000-8000-000000000001
logsource:
  product: windows
  category: process_creation
detection:
  sel:
    Image|endswith: '\\evil.exe'
  condition: sel
level: high
";

fn write(dir: &Path, name: &str, text: &[u8]) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn bad_rules_are_reported_and_good_ones_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("sub")).unwrap();
    write(dir, "good.yml", GOOD.as_bytes());
    write(
        dir,
        "invalid_yaml.yml",
        b"title: broken\ndetection:\n  sel: [unclosed\n",
    );
    write(
        dir,
        "unknown_modifier.yaml",
        b"title: Unknown modifier\nlogsource:\n  product: windows\ndetection:\n  sel:\n    Image|sortof: x\n  condition: sel\n",
    );
    write(
        dir,
        "sub/bad_condition.yml",
        b"title: Bad condition\nlogsource:\n  product: windows\ndetection:\n  sel:\n    Image: x\n  condition: sel and (\n",
    );
    write(
        dir,
        "sub/not_a_rule.yml",
        b"name: some config\nvalues:\n  - 1\n  - 2\n",
    );
    write(dir, "latin1.yml", b"title: caf\xe9\n");
    write(dir, "notes.txt", b"not a rule file, ignored");
    // A file of three documents, the middle one broken, and a correlation
    // that names a rule that does not exist.
    let multi = format!(
        "{GOOD}---\ntitle: Middle\nlogsource:\n  product: windows\ndetection:\n  sel:\n    Image|nosuch: x\n  condition: sel\n---\ntitle: Dangling correlation\ncorrelation:\n  type: event_count\n  rules:\n    - no_such_rule\n  timespan: 1m\n  condition:\n    gte: 2\n"
    );
    write(dir, "multi.yml", multi.as_bytes());

    let (mut engine, report) = Engine::load(&[dir]);
    let by_file = |name: &str| {
        report
            .rules
            .iter()
            .filter(|r| r.path.ends_with(name))
            .collect::<Vec<_>>()
    };
    let problems: Vec<String> = report.problems().map(|p| p.to_string()).collect();
    eprintln!("{}", problems.join("\n"));

    assert_eq!(by_file("good.yml")[0].status, RuleStatus::Loaded);

    let e = by_file("invalid_yaml.yml");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].status, RuleStatus::Error);
    assert!(e[0].line.is_some(), "YAML errors carry a line");
    assert!(
        e[0].reason
            .as_deref()
            .unwrap()
            .to_lowercase()
            .contains("yaml")
    );

    let e = by_file("unknown_modifier.yaml");
    assert_eq!(e[0].status, RuleStatus::Error);
    assert!(e[0].reason.as_deref().unwrap().contains("sortof"));
    assert_eq!(e[0].title.as_deref(), Some("Unknown modifier"));

    let e = by_file("bad_condition.yml");
    assert_eq!(e[0].status, RuleStatus::Error);
    assert!(
        e[0].reason
            .as_deref()
            .unwrap()
            .to_lowercase()
            .contains("condition")
    );

    let e = by_file("not_a_rule.yml");
    assert_eq!(e[0].status, RuleStatus::Error);
    assert!(e[0].reason.is_some());

    let e = by_file("latin1.yml");
    assert_eq!(e[0].status, RuleStatus::Error);
    assert!(e[0].reason.as_deref().unwrap().contains("UTF-8"));

    assert!(by_file("notes.txt").is_empty());

    let e = by_file("multi.yml");
    assert_eq!(e.len(), 3);
    assert_eq!((e[0].status, e[0].line), (RuleStatus::Loaded, Some(1)));
    let middle_line = GOOD.lines().count() + 1;
    assert_eq!(
        (e[1].status, e[1].line),
        (RuleStatus::Error, Some(middle_line))
    );
    assert!(e[1].reason.as_deref().unwrap().contains("nosuch"));
    assert_eq!(e[2].kind, RuleKind::Correlation);
    assert_eq!(e[2].status, RuleStatus::Error);
    assert!(e[2].reason.as_deref().unwrap().contains("no_such_rule"));

    assert_eq!(report.total(), 9);
    assert_eq!(report.loaded(), 2);
    assert_eq!(report.errors(), 7);

    // The good rules work.
    let event = common::record(common::PROC, json!({"Image": "C:\\evil.exe"}), 0);
    assert_eq!(engine.process(&event).len(), 2);

    // The text report lists the problems with file and line, totals last.
    let text = vigie_detect::render_report(&report, false);
    assert!(text.contains(&format!("multi.yml:{middle_line}: error")));
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("9 rule(s) in 7 file(s): 2 loaded")
    );
}

#[test]
fn missing_folder_is_reported_not_fatal() {
    let (_engine, report) = Engine::load(&["/nonexistent/vigie-rules"]);
    assert_eq!(report.loaded(), 0);
    assert!(report.nothing_read());
    assert!(
        report.rules[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("cannot read")
    );
}

#[test]
fn filters_apply_to_named_rules() {
    let filter = "title: Not on the build server
filter:
  rules:
    - 5a0c1f4e-0000-4000-8000-000000000001
  selection:
    Computer: build01
  condition: not selection
logsource:
  product: windows
";
    let (mut engine, report) = Engine::from_yaml(&[("good", GOOD), ("filter", filter)]);
    assert_eq!(
        report.loaded(),
        2,
        "{:?}",
        report.problems().collect::<Vec<_>>()
    );
    assert_eq!(report.totals.filters, 1);
    let ev = |host: &str| {
        common::record(
            common::PROC,
            json!({"Image": "C:\\evil.exe", "Computer": host}),
            0,
        )
    };
    assert_eq!(engine.process(&ev("ws17")).len(), 1);
    assert!(engine.process(&ev("build01")).is_empty());

    let orphan = filter.replace("5a0c1f4e-0000-4000-8000-000000000001", "no-such-id");
    let (_e, report) = Engine::from_yaml(&[("good", GOOD), ("filter", &orphan)]);
    let p: Vec<_> = report.problems().collect();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].kind, RuleKind::Filter);
    assert!(p[0].reason.as_deref().unwrap().contains("no-such-id"));
}

#[test]
fn filter_that_does_not_compile_is_reported_at_load() {
    // Rule indexes are built on the first event, but a filter's own
    // detections are checked when the rules load.
    let filter = "title: Broken filter
filter:
  rules:
    - 5a0c1f4e-0000-4000-8000-000000000001
  selection:
    Computer|re: '(unclosed'
  condition: not selection
logsource:
  product: windows
";
    let (mut engine, report) = Engine::from_yaml(&[("good", GOOD), ("filter", filter)]);
    let p: Vec<_> = report.problems().collect();
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].kind, RuleKind::Filter);
    assert_eq!(p[0].status, RuleStatus::Error);
    // The rule it named still works, unfiltered.
    let ev = common::record(
        common::PROC,
        json!({"Image": "C:\\evil.exe", "Computer": "build01"}),
        0,
    );
    assert_eq!(engine.process(&ev).len(), 1);
}

#[test]
fn rule_indexes_are_built_on_first_use() {
    let dns = "title: Bad domain
logsource:
  product: windows
  category: dns_query
detection:
  sel:
    QueryName|endswith: '.evil.example'
  condition: sel
level: high
";
    let (mut engine, report) = Engine::from_yaml(&[("good", GOOD), ("dns", dns)]);
    assert_eq!(report.loaded(), 2);
    assert_eq!(engine.groups_built(), (2, 0));
    let ev = common::record(common::PROC, json!({"Image": "C:\\evil.exe"}), 0);
    assert_eq!(engine.process(&ev).len(), 1);
    assert_eq!(engine.groups_built(), (2, 1), "only the process group");
    // Another detector shares the built index.
    let mut other = engine.detector();
    assert_eq!(other.process(&ev).len(), 1);
    assert_eq!(engine.groups_built(), (2, 1));
    engine.prepare_all();
    assert_eq!(engine.groups_built(), (2, 2));
    let dns_ls = vigie_event::LogSource::new(Some("windows"), Some("dns_query"), None);
    let q = common::record(dns_ls, json!({"QueryName": "x.evil.example"}), 0);
    assert_eq!(engine.process(&q).len(), 1);
}

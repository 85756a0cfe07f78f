//! Every Sigma feature SigmaHQ's rules use, each with an event that fires
//! the rule and a near miss that does not.

mod common;

use common::{PROC, record};
use serde_json::{Value, json};
use vigie_detect::Engine;
use vigie_event::{Event, Host, LogSource, Payload, Process, ProcessAction, ProcessEvent};

struct Case {
    name: &'static str,
    detection: &'static str,
    hit: Value,
    miss: Value,
}

fn rule_yaml(name: &str, logsource: &str, detection: &str) -> String {
    format!(
        "title: {name}\nid: 00000000-0000-4000-8000-{:012}\nstatus: test\nlogsource:\n{logsource}\ndetection:\n{detection}\nlevel: high\ntags:\n  - attack.execution\n  - attack.t1059.001\n",
        name.len()
    )
}

const WIN_PROC: &str = "  product: windows\n  category: process_creation";

fn fires(engine: &mut Engine, event: &Event) -> bool {
    !engine.process(event).is_empty()
}

fn check(cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let yaml = rule_yaml(case.name, WIN_PROC, case.detection);
        let (mut engine, report) = Engine::from_yaml(&[(case.name, &yaml)]);
        if report.loaded() != 1 {
            failures.push(format!(
                "{}: did not load: {:?}",
                case.name, report.rules[0].reason
            ));
            continue;
        }
        let hit = record(PROC, case.hit.clone(), 0);
        let miss = record(PROC, case.miss.clone(), 0);
        if !fires(&mut engine, &hit) {
            failures.push(format!("{}: did not fire on {}", case.name, case.hit));
        }
        if fires(&mut engine, &miss) {
            failures.push(format!("{}: fired on near miss {}", case.name, case.miss));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn string_modifiers() {
    check(&[
        Case {
            name: "contains",
            detection: "  sel:\n    CommandLine|contains: whoami\n  condition: sel",
            hit: json!({"CommandLine": "cmd /c WHOAMI /all"}),
            miss: json!({"CommandLine": "cmd /c who ami"}),
        },
        Case {
            name: "startswith",
            detection: "  sel:\n    Image|startswith: 'C:\\Windows\\'\n  condition: sel",
            hit: json!({"Image": "c:\\windows\\system32\\cmd.exe"}),
            miss: json!({"Image": "D:\\Windows\\cmd.exe"}),
        },
        Case {
            name: "endswith",
            detection: "  sel:\n    Image|endswith: '\\cmd.exe'\n  condition: sel",
            hit: json!({"Image": "C:\\Windows\\System32\\CMD.EXE"}),
            miss: json!({"Image": "C:\\Windows\\System32\\cmd.exe.bak"}),
        },
        Case {
            name: "contains-all",
            detection: "  sel:\n    CommandLine|contains|all:\n      - ' -enc '\n      - 'hidden'\n  condition: sel",
            hit: json!({"CommandLine": "powershell -w hidden -enc AAAA"}),
            miss: json!({"CommandLine": "powershell -enc AAAA"}),
        },
        Case {
            name: "re",
            detection: "  sel:\n    CommandLine|re: '^foo\\d+$'\n  condition: sel",
            hit: json!({"CommandLine": "foo12"}),
            // Regular expressions are case-sensitive unless |i.
            miss: json!({"CommandLine": "FOO12"}),
        },
        Case {
            name: "re-i",
            detection: "  sel:\n    CommandLine|re|i: '^foo\\d+$'\n  condition: sel",
            hit: json!({"CommandLine": "FOO12"}),
            miss: json!({"CommandLine": "FOO12x"}),
        },
        Case {
            name: "re-m",
            detection: "  sel:\n    CommandLine|re|m: '^bar$'\n  condition: sel",
            hit: json!({"CommandLine": "x\nbar\ny"}),
            miss: json!({"CommandLine": "x bar y"}),
        },
        Case {
            name: "re-s",
            detection: "  sel:\n    CommandLine|re|s: 'a.b'\n  condition: sel",
            hit: json!({"CommandLine": "a\nb"}),
            miss: json!({"CommandLine": "a\n\nb"}),
        },
        Case {
            name: "windash",
            detection: "  sel:\n    CommandLine|windash|contains: ' -exec '\n  condition: sel",
            hit: json!({"CommandLine": "tool.exe /exec bypass"}),
            miss: json!({"CommandLine": "tool.exe exec bypass"}),
        },
        Case {
            name: "base64",
            detection: "  sel:\n    CommandLine|base64|contains: 'secret'\n  condition: sel",
            hit: json!({"CommandLine": "echo c2VjcmV0 | base64 -d"}),
            miss: json!({"CommandLine": "echo secret"}),
        },
        Case {
            name: "base64offset",
            detection: "  sel:\n    CommandLine|base64offset|contains: 'http://evil/'\n  condition: sel",
            hit: json!({"CommandLine": "powershell -e eGh0dHA6Ly9ldmlsLw=="}),
            miss: json!({"CommandLine": "powershell -e eGh0dHBzOi8vZ29vZC8="}),
        },
        Case {
            name: "wide-base64offset",
            detection: "  sel:\n    CommandLine|wide|base64offset|contains: 'ping'\n  condition: sel",
            hit: json!({"CommandLine": "powershell -enc cABpAG4AZwAgADEALgAyAC4AMwAuADQA"}),
            miss: json!({"CommandLine": "powershell -enc eABwAG8AbgBnACAAMQAuADIALgAzAC4ANAA="}),
        },
        Case {
            name: "utf16le-base64offset",
            detection: "  sel:\n    CommandLine|utf16le|base64offset|contains: 'ping'\n  condition: sel",
            hit: json!({"CommandLine": "x cABpAG4AZwAgADEALgAyAC4AMwAuADQA"}),
            miss: json!({"CommandLine": "x eABwAG8AbgBnACAAMQAuADIALgAzAC4ANAA="}),
        },
        Case {
            name: "utf16be-base64offset",
            detection: "  sel:\n    CommandLine|utf16be|base64offset|contains: 'ping'\n  condition: sel",
            hit: json!({"CommandLine": "x AHAAaQBuAGcAIAAxAC4AMgAuADMALgA0"}),
            miss: json!({"CommandLine": "x eABwAG8AbgBnACAAMQAuADIALgAzAC4ANAA="}),
        },
        Case {
            name: "cased",
            detection: "  sel:\n    CommandLine|contains|cased: 'Invoke-Mimikatz'\n  condition: sel",
            hit: json!({"CommandLine": "x Invoke-Mimikatz y"}),
            miss: json!({"CommandLine": "x invoke-mimikatz y"}),
        },
        Case {
            name: "plain-case-insensitive",
            detection: "  sel:\n    Image: 'C:\\Windows\\System32\\CMD.EXE'\n  condition: sel",
            hit: json!({"Image": "c:\\windows\\system32\\cmd.exe"}),
            miss: json!({"Image": "c:\\windows\\system32\\cmd.exe2"}),
        },
        Case {
            name: "wildcards",
            detection: "  sel:\n    Image: '*\\ps?xec.exe'\n  condition: sel",
            hit: json!({"Image": "C:\\Tools\\PsExec.exe"}),
            miss: json!({"Image": "C:\\Tools\\PsExxec.exe"}),
        },
        Case {
            name: "expand",
            detection: "  sel:\n    TargetFilename|expand: 'C:\\Users\\%User%\\x.exe'\n  condition: sel",
            hit: json!({"User": "alice", "TargetFilename": "C:\\Users\\alice\\x.exe"}),
            miss: json!({"User": "bob", "TargetFilename": "C:\\Users\\alice\\x.exe"}),
        },
    ]);
}

#[test]
fn network_and_numbers() {
    check(&[
        Case {
            name: "cidr",
            detection: "  sel:\n    DestinationIp|cidr:\n      - '10.0.0.0/8'\n      - 'fe80::/10'\n  condition: sel",
            hit: json!({"DestinationIp": "10.1.2.3"}),
            miss: json!({"DestinationIp": "11.0.0.1"}),
        },
        Case {
            name: "cidr-v6",
            detection: "  sel:\n    DestinationIp|cidr: 'fe80::/10'\n  condition: sel",
            hit: json!({"DestinationIp": "fe80::1"}),
            miss: json!({"DestinationIp": "2001:db8::1"}),
        },
        Case {
            name: "gt",
            detection: "  sel:\n    ProcessId|gt: 100\n  condition: sel",
            hit: json!({"ProcessId": 101}),
            miss: json!({"ProcessId": 100}),
        },
        Case {
            name: "gte",
            detection: "  sel:\n    ProcessId|gte: 100\n  condition: sel",
            hit: json!({"ProcessId": "100"}),
            miss: json!({"ProcessId": 99}),
        },
        Case {
            name: "lt",
            detection: "  sel:\n    ProcessId|lt: 100\n  condition: sel",
            hit: json!({"ProcessId": 99.5}),
            miss: json!({"ProcessId": 100}),
        },
        Case {
            name: "lte",
            detection: "  sel:\n    ProcessId|lte: 100\n  condition: sel",
            hit: json!({"ProcessId": 100}),
            miss: json!({"ProcessId": 101}),
        },
        Case {
            name: "integer-equality",
            detection: "  sel:\n    EventID: 4688\n  condition: sel",
            hit: json!({"EventID": 4688}),
            miss: json!({"EventID": 46880}),
        },
    ]);
}

#[test]
fn field_presence_and_values() {
    check(&[
        Case {
            name: "fieldref",
            detection: "  sel:\n    ParentImage|fieldref: Image\n  condition: sel",
            hit: json!({"Image": "C:\\a.exe", "ParentImage": "C:\\a.exe"}),
            miss: json!({"Image": "C:\\a.exe", "ParentImage": "C:\\b.exe"}),
        },
        Case {
            name: "exists-true",
            detection: "  sel:\n    User|exists: true\n  condition: sel",
            hit: json!({"User": "alice"}),
            miss: json!({"Image": "x"}),
        },
        Case {
            name: "exists-false",
            detection: "  sel:\n    User|exists: false\n  condition: sel",
            hit: json!({"Image": "x"}),
            miss: json!({"User": "alice"}),
        },
        Case {
            name: "null-value",
            detection: "  sel:\n    Image: 'C:\\a.exe'\n    CommandLine: null\n  condition: sel",
            hit: json!({"Image": "C:\\a.exe", "CommandLine": null}),
            miss: json!({"Image": "C:\\a.exe", "CommandLine": "a.exe /x"}),
        },
        Case {
            name: "null-absent",
            detection: "  sel:\n    Image: 'C:\\a.exe'\n    CommandLine: null\n  condition: sel",
            hit: json!({"Image": "C:\\a.exe"}),
            miss: json!({"Image": "C:\\a.exe", "CommandLine": ""}),
        },
        Case {
            name: "empty-string",
            detection: "  sel:\n    Image: 'C:\\a.exe'\n    CommandLine: ''\n  condition: sel",
            hit: json!({"Image": "C:\\a.exe", "CommandLine": ""}),
            miss: json!({"Image": "C:\\a.exe", "CommandLine": "x"}),
        },
        Case {
            name: "list-is-or",
            detection: "  sel:\n    Image|endswith:\n      - '\\a.exe'\n      - '\\b.exe'\n  condition: sel",
            hit: json!({"Image": "C:\\b.exe"}),
            miss: json!({"Image": "C:\\c.exe"}),
        },
        Case {
            name: "map-is-and",
            detection: "  sel:\n    Image|endswith: '\\a.exe'\n    CommandLine|contains: '/x'\n  condition: sel",
            hit: json!({"Image": "C:\\a.exe", "CommandLine": "a.exe /x"}),
            miss: json!({"Image": "C:\\a.exe", "CommandLine": "a.exe /y"}),
        },
        Case {
            name: "list-of-maps-is-or",
            detection: "  sel:\n    - Image|endswith: '\\a.exe'\n    - CommandLine|contains: '/x'\n  condition: sel",
            hit: json!({"Image": "C:\\z.exe", "CommandLine": "z.exe /x"}),
            miss: json!({"Image": "C:\\z.exe", "CommandLine": "z.exe /y"}),
        },
        Case {
            name: "array-field-any-member",
            detection: "  sel:\n    Tags|contains: 'bad'\n  condition: sel",
            hit: json!({"Tags": ["good", "very bad"]}),
            miss: json!({"Tags": ["good", "fine"]}),
        },
        Case {
            name: "nested-path",
            detection: "  sel:\n    process.parent.name: 'winword.exe'\n  condition: sel",
            hit: json!({"process": {"parent": {"name": "WINWORD.EXE"}}}),
            miss: json!({"process": {"name": "winword.exe"}}),
        },
    ]);
}

#[test]
fn conditions() {
    check(&[
        Case {
            name: "one-of-pattern",
            detection: "  selection_a:\n    Image|endswith: '\\a.exe'\n  selection_b:\n    CommandLine|contains: '/b'\n  condition: 1 of selection_*",
            hit: json!({"Image": "C:\\z.exe", "CommandLine": "z /b"}),
            miss: json!({"Image": "C:\\z.exe", "CommandLine": "z /c"}),
        },
        Case {
            name: "all-of-pattern",
            detection: "  selection_a:\n    Image|endswith: '\\a.exe'\n  selection_b:\n    CommandLine|contains: '/b'\n  condition: all of selection_*",
            hit: json!({"Image": "C:\\a.exe", "CommandLine": "a /b"}),
            miss: json!({"Image": "C:\\a.exe", "CommandLine": "a /c"}),
        },
        Case {
            name: "one-of-them",
            detection: "  a:\n    Image|endswith: '\\a.exe'\n  b:\n    CommandLine|contains: '/b'\n  condition: 1 of them",
            hit: json!({"Image": "C:\\a.exe"}),
            miss: json!({"Image": "C:\\z.exe"}),
        },
        Case {
            name: "all-of-them",
            detection: "  a:\n    Image|endswith: '\\a.exe'\n  b:\n    CommandLine|contains: '/b'\n  condition: all of them",
            hit: json!({"Image": "C:\\a.exe", "CommandLine": "a /b"}),
            miss: json!({"Image": "C:\\a.exe", "CommandLine": "a"}),
        },
        Case {
            name: "and-not",
            detection: "  selection:\n    Image|endswith: '\\a.exe'\n  filter:\n    CommandLine|contains: '/safe'\n  condition: selection and not filter",
            hit: json!({"Image": "C:\\a.exe", "CommandLine": "a /x"}),
            miss: json!({"Image": "C:\\a.exe", "CommandLine": "a /safe"}),
        },
        Case {
            name: "parentheses",
            detection: "  a:\n    Image|endswith: '\\a.exe'\n  b:\n    Image|endswith: '\\b.exe'\n  c:\n    CommandLine|contains: '/safe'\n  condition: (a or b) and not c",
            hit: json!({"Image": "C:\\b.exe", "CommandLine": "b /x"}),
            miss: json!({"Image": "C:\\b.exe", "CommandLine": "b /safe"}),
        },
        Case {
            name: "not-one-of",
            detection: "  selection:\n    Image|endswith: '\\a.exe'\n  filter_1:\n    User: 'SYSTEM'\n  filter_2:\n    CommandLine|contains: '/safe'\n  condition: selection and not 1 of filter_*",
            hit: json!({"Image": "C:\\a.exe", "User": "alice", "CommandLine": "a"}),
            miss: json!({"Image": "C:\\a.exe", "User": "alice", "CommandLine": "a /safe"}),
        },
        Case {
            name: "keywords-list",
            detection: "  keywords:\n    - 'mimikatz'\n    - 'sekurlsa::'\n  condition: keywords",
            hit: json!({"CommandLine": "run sekurlsa::logonpasswords"}),
            miss: json!({"CommandLine": "run procdump"}),
        },
        Case {
            name: "keywords-all",
            // As SigmaHQ uses it: every keyword in the same log line.
            detection: "  keywords:\n    '|all':\n      - ':179'\n      - 'BADAUTH'\n  condition: keywords",
            hit: json!({"Message": "10.0.0.1:179 %TCP-6-BADAUTH invalid MD5"}),
            miss: json!({"Message": "10.0.0.1:22 %TCP-6-BADAUTH invalid MD5"}),
        },
    ]);
}

/// Linux typed events: `Image` is `process.executable`.
#[test]
fn typed_linux_process_event() {
    let yaml = rule_yaml(
        "linux-bash",
        "  product: linux\n  category: process_creation",
        "  sel:\n    Image|endswith: '/bash'\n    CommandLine|contains: '-i'\n    process.parent.executable: '/usr/sbin/sshd'\n  condition: sel",
    );
    let (mut engine, report) = Engine::from_yaml(&[("linux", &yaml)]);
    assert_eq!(report.loaded(), 1, "{:?}", report.rules);
    let event = |exe: &str, parent: &str, action: ProcessAction| {
        Event::new(
            common::at(0),
            Host::named("srv"),
            Payload::Process(ProcessEvent {
                action,
                process: Process {
                    pid: 42,
                    name: "bash".into(),
                    executable: exe.into(),
                    command_line: format!("{exe} -i"),
                    parent: Some(std::sync::Arc::new(vigie_event::ProcessSummary {
                        executable: parent.into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
                target: None,
                error: None,
            }),
        )
    };
    let alerts = engine.process(&event(
        "/usr/bin/bash",
        "/usr/sbin/sshd",
        ProcessAction::Exec,
    ));
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.rule.attack, vec!["T1059.001"]);
    assert_eq!(alert.host.name, "srv");
    assert_eq!(alert.time, common::at(0));
    assert!(
        engine
            .process(&event(
                "/usr/bin/zsh",
                "/usr/sbin/sshd",
                ProcessAction::Exec
            ))
            .is_empty()
    );
    assert!(
        engine
            .process(&event(
                "/usr/bin/bash",
                "/usr/sbin/cron",
                ProcessAction::Exec
            ))
            .is_empty()
    );
    // An exit is not a process creation: routing keeps the rule away.
    assert!(
        engine
            .process(&event(
                "/usr/bin/bash",
                "/usr/sbin/sshd",
                ProcessAction::Exit
            ))
            .is_empty()
    );
}

#[test]
fn logsource_routing() {
    let proc_rule = rule_yaml(
        "proc",
        WIN_PROC,
        "  sel:\n    Image|endswith: '\\evil.exe'\n  condition: sel",
    );
    let reg_rule = rule_yaml(
        "registry umbrella",
        "  product: windows\n  category: registry_event",
        "  sel:\n    TargetObject|contains: '\\Run\\'\n  condition: sel",
    );
    let svc_rule = rule_yaml(
        "security service",
        "  product: windows\n  service: security",
        "  sel:\n    EventID: 4688\n    NewProcessName|endswith: '\\evil.exe'\n  condition: sel",
    );
    let (mut engine, report) =
        Engine::from_yaml(&[("proc", &proc_rule), ("reg", &reg_rule), ("svc", &svc_rule)]);
    assert_eq!(report.loaded(), 3);
    let ids = |engine: &mut Engine, ls: LogSource, v: Value| -> Vec<String> {
        engine
            .process(&record(ls, v, 0))
            .into_iter()
            .map(|a| a.rule.name)
            .collect()
    };
    let fields = json!({"Image": "C:\\evil.exe", "TargetObject": "HKLM\\...\\Run\\x",
                        "EventID": 4688, "NewProcessName": "C:\\evil.exe"});
    assert_eq!(ids(&mut engine, PROC, fields.clone()), vec!["proc"]);
    let file = LogSource::new(Some("windows"), Some("file_event"), None);
    assert!(ids(&mut engine, file, fields.clone()).is_empty());
    let set = LogSource::new(Some("windows"), Some("registry_set"), Some("sysmon"));
    assert_eq!(
        ids(&mut engine, set, fields.clone()),
        vec!["registry umbrella"]
    );
    let linux = LogSource::new(Some("linux"), Some("process_creation"), None);
    assert!(ids(&mut engine, linux, fields.clone()).is_empty());
    let security = LogSource::new(Some("windows"), None, Some("security"));
    assert_eq!(
        ids(&mut engine, security, fields.clone()),
        vec!["security service"]
    );
    // A record of unknown origin is shown to every rule.
    let mut all = ids(&mut engine, LogSource::default(), fields);
    all.sort();
    assert_eq!(all, vec!["proc", "registry umbrella", "security service"]);
}

/// Windows records classified by `windows_logsource` reach the right rules.
#[test]
fn windows_records_route_by_channel() {
    let rule = rule_yaml(
        "sysmon proc",
        WIN_PROC,
        "  sel:\n    Image|endswith: '\\evil.exe'\n  condition: sel",
    );
    let (mut engine, _) = Engine::from_yaml(&[("r", &rule)]);
    let mk = |v: Value| {
        let Value::Object(map) = v else {
            unreachable!()
        };
        let ls = vigie_detect::windows_logsource(&map);
        record(ls, Value::Object(map), 0)
    };
    let hit = mk(
        json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
                        "Image": "C:\\evil.exe"}),
    );
    let miss = mk(
        json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 11,
                         "Image": "C:\\evil.exe"}),
    );
    assert_eq!(engine.process(&hit).len(), 1);
    assert!(engine.process(&miss).is_empty());
}

/// Alerts carry the rule's metadata and the event.
#[test]
fn alert_carries_metadata() {
    let yaml = "title: Meta\nid: 6c1d3a34-0e0e-4a55-9f53-2f1b7c0d0001\nstatus: experimental\ndescription: says what\nreferences:\n  - https://example.org/a\nauthor: Vigie\nfalsepositives:\n  - admins\nlevel: critical\ntags:\n  - attack.persistence\n  - attack.t1053.003\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  sel:\n    Image: x\n  condition: sel\n";
    let (mut engine, _) = Engine::from_yaml(&[("m", yaml)]);
    let event = record(PROC, json!({"Image": "X"}), 5);
    let alerts = engine.process(&event);
    assert_eq!(alerts.len(), 1);
    let r = &alerts[0].rule;
    assert_eq!(r.id, "6c1d3a34-0e0e-4a55-9f53-2f1b7c0d0001");
    assert_eq!(r.name, "Meta");
    assert_eq!(r.level, Some(vigie_event::Level::Critical));
    assert_eq!(r.status.as_deref(), Some("experimental"));
    assert_eq!(r.description.as_deref(), Some("says what"));
    assert_eq!(r.reference, vec!["https://example.org/a"]);
    assert_eq!(r.falsepositives, vec!["admins"]);
    assert_eq!(r.author.as_deref(), Some("Vigie"));
    assert_eq!(r.attack, vec!["T1053.003"]);
    assert_eq!(r.tags.len(), 2);
    assert_eq!(alerts[0].events, vec![event.clone()]);
    assert_eq!(alerts[0].time, event.time);
}

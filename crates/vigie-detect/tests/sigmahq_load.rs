//! Loading all of SigmaHQ's rules: no panic, every document accounted for,
//! at least 99 % loaded, the rest with a reason.

mod common;

use std::collections::BTreeMap;

use vigie_detect::{Engine, RuleStatus};

/// Documents in a YAML file, counted with the YAML parser itself (not the
/// engine's splitter): every document that is not empty.
fn count_documents(text: &str) -> usize {
    use serde::Deserialize;
    let mut n = 0;
    for doc in yaml_serde::Deserializer::from_str(text) {
        match yaml_serde::Value::deserialize(doc) {
            Ok(yaml_serde::Value::Null) => {}
            Ok(_) => n += 1,
            Err(_) => {
                n += 1;
                break;
            }
        }
    }
    n
}

#[test]
fn every_sigmahq_rule_is_accounted_for() {
    let dirs = common::sigmahq_dirs();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for dir in &dirs {
        for entry in walkdir::WalkDir::new(dir) {
            let entry = entry.unwrap();
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                let text = std::fs::read_to_string(path).unwrap();
                expected.insert(path.to_string_lossy().into_owned(), count_documents(&text));
            }
        }
    }
    let (engine, report) = Engine::load(&dirs);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in &report.rules {
        *seen.entry(r.path.clone()).or_default() += 1;
    }
    assert_eq!(seen, expected, "rule documents per file");
    let total: usize = expected.values().sum();
    assert_eq!(report.total(), total);
    assert_eq!(report.totals.files, expected.len());

    let loaded = report.loaded();
    eprintln!(
        "SigmaHQ: {} files, {} rules, {} loaded, {} unsupported, {} errors, in {:.3} s",
        report.totals.files,
        total,
        loaded,
        report.unsupported(),
        report.errors(),
        report.seconds
    );
    for p in report.problems() {
        eprintln!("  {p}");
        assert!(p.reason.as_deref().is_some_and(|r| !r.is_empty()), "{p}");
    }
    assert!(
        loaded * 100 >= total * 99,
        "only {loaded} of {total} rules loaded"
    );
    assert_eq!(
        engine.rule_count(),
        loaded - report.totals.correlations - report.totals.filters
    );
    assert!(
        report
            .rules
            .iter()
            .all(|r| r.status != RuleStatus::Loaded || r.title.is_some())
    );

    // The report serialises for `--format json`.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["totals"]["rules"], total);
}

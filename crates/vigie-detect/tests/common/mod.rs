//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use vigie_event::{Event, Host, LogRecord, LogSource, Payload};

/// `../shared` next to the repository, or `$VIGIE_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("VIGIE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

pub fn sigmahq_dirs() -> Vec<PathBuf> {
    let base = shared_dir().join("data/sigmahq");
    assert!(
        base.join("rules").is_dir(),
        "SigmaHQ rules not found at {} (set VIGIE_SHARED_DIR)",
        base.display()
    );
    [
        "rules",
        "rules-emerging-threats",
        "rules-threat-hunting",
        "rules-placeholder",
    ]
    .iter()
    .map(|d| base.join(d))
    .collect()
}

pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// A log record with the given logsource and fields.
pub fn record(ls: LogSource, fields: Value, secs: i64) -> Event {
    let Value::Object(map) = fields else {
        panic!("fields must be an object")
    };
    Event::new(
        at(secs),
        Host::named("test-host"),
        Payload::Log(LogRecord {
            logsource: ls,
            fields: map,
        }),
    )
}

pub const PROC: LogSource = LogSource::new(Some("windows"), Some("process_creation"), None);

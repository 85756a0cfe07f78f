//! Elastic Common Schema JSON for events and alerts.
//!
//! Writing streams the sections with serde (no intermediate `Value`);
//! reading parses a document with every section optional, then rebuilds the
//! typed payload from `event.dataset` and `event.action`.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::model::*;
use crate::{Alert, Level, LogSource, RuleRef};

/// Why a JSON document is not a Vigie ECS event.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    #[error("not ECS JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("`event.dataset` {0:?} is not a Vigie dataset")]
    UnknownDataset(String),
    #[error("`event.action` {action:?} is not valid for dataset {dataset}")]
    UnknownAction { dataset: String, action: String },
    #[error("dataset {dataset} needs the `{section}` section")]
    MissingSection {
        dataset: &'static str,
        section: &'static str,
    },
}

pub(crate) fn dataset(p: &Payload) -> &'static str {
    match p {
        Payload::Process(_) => "vigie.process",
        Payload::File(_) => "vigie.file",
        Payload::Network(_) => "vigie.network",
        Payload::Dns(_) => "vigie.dns",
        Payload::Authentication(_) => "vigie.authentication",
        Payload::Kernel(_) => "vigie.kernel",
        Payload::Health(_) => "vigie.health",
        Payload::Response(_) => "vigie.response",
        Payload::Log(_) => "vigie.log",
    }
}

pub(crate) fn action(p: &Payload) -> &'static str {
    match p {
        Payload::Process(e) => e.action.as_str(),
        Payload::File(e) => e.action.as_str(),
        Payload::Network(e) => e.action.as_str(),
        Payload::Dns(_) => "dns_query",
        Payload::Authentication(_) => "authentication",
        Payload::Kernel(e) => e.action.as_str(),
        Payload::Health(e) => e.action.as_str(),
        Payload::Response(_) => "response",
        Payload::Log(_) => "log",
    }
}

pub(crate) fn categories(p: &Payload) -> &'static [&'static str] {
    match p {
        Payload::Process(_) => &["process"],
        Payload::File(_) => &["file"],
        Payload::Network(_) | Payload::Dns(_) => &["network"],
        Payload::Authentication(_) => &["authentication"],
        Payload::Kernel(e) => match e.action {
            KernelAction::ModuleLoad => &["driver"],
            KernelAction::BpfLoad | KernelAction::Mount => &["configuration"],
        },
        Payload::Health(_) => &["host"],
        Payload::Response(_) => &["configuration"],
        Payload::Log(_) => &[],
    }
}

pub(crate) fn types(p: &Payload) -> &'static [&'static str] {
    match p {
        Payload::Process(e) => match e.action {
            ProcessAction::Exec | ProcessAction::Fork | ProcessAction::ExecFailed => &["start"],
            ProcessAction::Exit => &["end"],
            ProcessAction::CredentialChange => &["change"],
            ProcessAction::Ptrace => &["access"],
        },
        Payload::File(e) => match e.action {
            FileAction::Create => &["creation"],
            FileAction::Delete => &["deletion"],
            _ => &["change"],
        },
        Payload::Network(e) => match e.action {
            NetworkAction::Listen => &["start"],
            _ => &["connection", "start"],
        },
        Payload::Dns(_) => &["protocol"],
        Payload::Authentication(_) => &["start"],
        Payload::Kernel(_) => &["start"],
        Payload::Health(_) => &["info"],
        Payload::Response(_) => &["change"],
        Payload::Log(_) => &[],
    }
}

pub(crate) fn outcome(p: &Payload) -> Option<Outcome> {
    match p {
        Payload::Authentication(a) => Some(a.outcome),
        Payload::Response(r) => Some(r.outcome),
        Payload::Process(e) if e.action == ProcessAction::ExecFailed => Some(Outcome::Failure),
        _ => None,
    }
}

pub(crate) fn direction(a: NetworkAction) -> &'static str {
    match a {
        NetworkAction::Connect => "egress",
        NetworkAction::Accept => "ingress",
        NetworkAction::Listen => "internal",
    }
}

/// The `event` section as read: what parsing needs (other keys, such as
/// `kind`, `category` and `type`, follow from the dataset and action).
#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    outcome: Option<Outcome>,
}

/// The `event` section as written, borrowed from the payload's static
/// names (every event written would otherwise allocate its category, type,
/// action and dataset).
#[derive(Serialize)]
struct MetaOut {
    id: Uuid,
    kind: &'static str,
    category: &'static [&'static str],
    #[serde(rename = "type")]
    kind_types: &'static [&'static str],
    action: &'static str,
    dataset: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u8>,
}

/// A time as chrono serialises a `DateTime<Utc>` (RFC 3339, `Z`, the
/// fraction in 0, 3, 6 or 9 digits, whichever is the shortest exact),
/// written directly: chrono goes through `core::fmt` a character at a
/// time, which was about 5 % of the agent's CPU under a file storm.
/// Years outside 0..=9999 and leap seconds go to chrono.
struct Timestamp<'a>(&'a DateTime<Utc>);

impl Serialize for Timestamp<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match rfc3339(self.0, &mut buf) {
            Some(text) => s.serialize_str(text),
            None => self.0.serialize(s),
        }
    }
}

fn rfc3339<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    use chrono::{Datelike as _, Timelike as _};
    let (year, nano) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return None;
    }
    let year = year as u32;
    let two = |b: &mut [u8; 30], at: usize, v: u32| {
        b[at] = b'0' + (v / 10) as u8;
        b[at + 1] = b'0' + (v % 10) as u8;
    };
    two(buf, 0, year / 100);
    two(buf, 2, year % 100);
    buf[4] = b'-';
    two(buf, 5, t.month());
    buf[7] = b'-';
    two(buf, 8, t.day());
    buf[10] = b'T';
    two(buf, 11, t.hour());
    buf[13] = b':';
    two(buf, 14, t.minute());
    buf[16] = b':';
    two(buf, 17, t.second());
    let (digits, mut fraction) = match nano {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (3, n / 1_000_000),
        n if n % 1_000 == 0 => (6, n / 1_000),
        n => (9, n),
    };
    let mut end = 19;
    if digits > 0 {
        buf[end] = b'.';
        for i in (0..digits).rev() {
            buf[end + 1 + i] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        end += 1 + digits;
    }
    buf[end] = b'Z';
    std::str::from_utf8(&buf[..=end]).ok()
}

#[derive(Serialize, Deserialize, Default)]
struct Network {
    transport: String,
    #[serde(default)]
    direction: String,
}

/// Vigie's own section: what ECS has no place for. Written borrowed from
/// the event (a log record is not copied first: alerts write whole records,
/// and a hunt writes many alerts), read owned.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct VigieSection<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<Cow<'a, SourceRef>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Cow<'a, ProcessSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Cow<'a, AuthDetails>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<Cow<'a, KernelDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<Cow<'a, Health>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Cow<'a, ResponseDetail>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logsource: Option<Cow<'a, LogSource>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<Cow<'a, serde_json::Map<String, serde_json::Value>>>,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = &self.payload;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("@timestamp", &Timestamp(&self.time))?;
        map.serialize_entry(
            "event",
            &MetaOut {
                id: self.id,
                kind: "event",
                category: categories(p),
                kind_types: types(p),
                action: action(p),
                dataset: dataset(p),
                outcome: outcome(p),
                severity: None,
            },
        )?;
        map.serialize_entry("host", &self.host)?;
        let mut vigie = VigieSection {
            source: self.source.as_ref().map(Cow::Borrowed),
            ..VigieSection::default()
        };
        if let Some(process) = self.process() {
            map.serialize_entry("process", process)?;
            if let Some(user) = &process.user {
                map.serialize_entry("user", user)?;
            }
        }
        match p {
            Payload::Process(e) => {
                vigie.error = e.error;
                vigie.target = e.target.as_ref().map(Cow::Borrowed);
            }
            Payload::File(e) => map.serialize_entry("file", &e.file)?,
            Payload::Network(e) => {
                map.serialize_entry("source", &e.source)?;
                map.serialize_entry("destination", &e.destination)?;
                map.serialize_entry(
                    "network",
                    &Network {
                        transport: e.transport.as_str().into(),
                        direction: direction(e.action).into(),
                    },
                )?;
            }
            Payload::Dns(e) => {
                map.serialize_entry("dns", &e.dns)?;
                if !e.destination.is_empty() {
                    map.serialize_entry("destination", &e.destination)?;
                }
            }
            Payload::Authentication(e) => {
                map.serialize_entry("user", &e.user)?;
                if !e.source.is_empty() {
                    map.serialize_entry("source", &e.source)?;
                }
                vigie.auth = Some(Cow::Borrowed(&e.auth));
            }
            Payload::Kernel(e) => vigie.kernel = Some(Cow::Borrowed(&e.detail)),
            Payload::Health(e) => vigie.health = Some(Cow::Borrowed(&e.health)),
            Payload::Response(e) => vigie.response = Some(Cow::Borrowed(&e.response)),
            Payload::Log(r) => {
                vigie.logsource = Some(Cow::Borrowed(&r.logsource));
                vigie.record = Some(Cow::Borrowed(&r.fields));
            }
        }
        map.serialize_entry("vigie", &vigie)?;
        map.end()
    }
}

/// An ECS document with every section optional.
#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: DateTime<Utc>,
    event: Meta,
    #[serde(default)]
    host: Host,
    process: Option<Process>,
    user: Option<User>,
    file: Option<File>,
    source: Option<Endpoint>,
    destination: Option<Endpoint>,
    network: Option<Network>,
    dns: Option<Dns>,
    #[serde(default)]
    vigie: VigieSection<'a>,
}

/// Parse one Vigie ECS event (as written by `serde_json::to_string(&event)`).
pub fn parse_event(json: &str) -> Result<Event, EcsError> {
    let doc: Doc = serde_json::from_str(json)?;
    event_from_doc(doc)
}

/// Parse one Vigie ECS event from an already parsed value.
pub fn event_from_value(value: &serde_json::Value) -> Result<Event, EcsError> {
    let doc = Doc::deserialize(value)?;
    event_from_doc(doc)
}

/// Whether a JSON object looks like an event Vigie wrote (so a reader can
/// choose between typed parsing and a generic log record).
pub fn is_vigie_event(value: &serde_json::Value) -> bool {
    value
        .get("event")
        .and_then(|e| e.get("dataset"))
        .and_then(|d| d.as_str())
        .is_some_and(|d| d.starts_with("vigie."))
        && value.get("@timestamp").is_some()
}

fn event_from_doc(doc: Doc<'_>) -> Result<Event, EcsError> {
    let dataset = doc.event.dataset.unwrap_or_default();
    let action = doc.event.action.unwrap_or_default();
    let bad_action = || EcsError::UnknownAction {
        dataset: dataset.clone(),
        action: action.clone(),
    };
    fn need<T>(v: Option<T>, dataset: &'static str, section: &'static str) -> Result<T, EcsError> {
        v.ok_or(EcsError::MissingSection { dataset, section })
    }
    let outcome = doc.event.outcome.unwrap_or(Outcome::Unknown);
    let v = doc.vigie;
    let payload = match dataset.as_str() {
        "vigie.process" => Payload::Process(ProcessEvent {
            action: *ProcessAction::ALL
                .iter()
                .find(|a| a.as_str() == action)
                .ok_or_else(bad_action)?,
            process: need(doc.process, "vigie.process", "process")?,
            target: v.target.map(Cow::into_owned),
            error: v.error,
        }),
        "vigie.file" => Payload::File(FileEvent {
            action: *FileAction::ALL
                .iter()
                .find(|a| a.as_str() == action)
                .ok_or_else(bad_action)?,
            file: need(doc.file, "vigie.file", "file")?,
            process: need(doc.process, "vigie.file", "process")?,
        }),
        "vigie.network" => Payload::Network(NetworkEvent {
            action: *NetworkAction::ALL
                .iter()
                .find(|a| a.as_str() == action)
                .ok_or_else(bad_action)?,
            transport: match doc.network.as_ref().map(|n| n.transport.as_str()) {
                Some("udp") => Transport::Udp,
                _ => Transport::Tcp,
            },
            source: doc.source.unwrap_or_default(),
            destination: doc.destination.unwrap_or_default(),
            process: need(doc.process, "vigie.network", "process")?,
        }),
        "vigie.dns" => Payload::Dns(DnsEvent {
            dns: need(doc.dns, "vigie.dns", "dns")?,
            destination: doc.destination.unwrap_or_default(),
            process: need(doc.process, "vigie.dns", "process")?,
        }),
        "vigie.authentication" => Payload::Authentication(AuthEvent {
            outcome,
            user: doc.user.unwrap_or_default(),
            source: doc.source.unwrap_or_default(),
            auth: v.auth.map(Cow::into_owned).unwrap_or_default(),
        }),
        "vigie.kernel" => Payload::Kernel(KernelEvent {
            action: match action.as_str() {
                "module_load" => KernelAction::ModuleLoad,
                "bpf_load" => KernelAction::BpfLoad,
                "mount" => KernelAction::Mount,
                _ => return Err(bad_action()),
            },
            detail: v.kernel.map(Cow::into_owned).unwrap_or_default(),
            process: need(doc.process, "vigie.kernel", "process")?,
        }),
        "vigie.health" => Payload::Health(HealthEvent {
            action: match action.as_str() {
                "sensor_start" => HealthAction::SensorStart,
                "degraded" => HealthAction::Degraded,
                "events_lost" => HealthAction::EventsLost,
                "heartbeat" => HealthAction::Heartbeat,
                "tamper" => HealthAction::Tamper,
                _ => return Err(bad_action()),
            },
            health: v.health.map(Cow::into_owned).unwrap_or_default(),
        }),
        "vigie.response" => Payload::Response(ResponseEvent {
            outcome,
            response: v.response.map(Cow::into_owned).unwrap_or_default(),
        }),
        "vigie.log" => Payload::Log(LogRecord {
            logsource: v.logsource.map(Cow::into_owned).unwrap_or_default(),
            fields: v.record.map(Cow::into_owned).unwrap_or_default(),
        }),
        _ => return Err(EcsError::UnknownDataset(dataset)),
    };
    Ok(Event {
        id: doc.event.id.unwrap_or_else(Uuid::now_v7),
        time: doc.timestamp,
        host: doc.host,
        source: v.source.map(Cow::into_owned),
        payload,
    })
}

// ---------------------------------------------------------------------------
// Alerts

#[derive(Serialize, Deserialize)]
struct Threat {
    framework: String,
    technique: ThreatTechnique,
}

#[derive(Serialize, Deserialize)]
struct ThreatTechnique {
    id: Vec<String>,
}

/// The alert's `vigie` section as read (written by `AlertVigieOut`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct AlertVigie {
    source: Option<SourceRef>,
    events: Vec<serde_json::Value>,
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AlertParts {
            id: self.id,
            time: self.time,
            host: &self.host,
            rule: &self.rule,
            rule_section: &self.rule,
            source: self.event().and_then(|e| e.source.as_ref()),
            events: &self.events,
        }
        .serialize(s)
    }
}

/// An alert's parts, borrowed, serialised exactly like [`Alert`]: lets a
/// writer give the events already rendered (e.g. as
/// `serde_json::value::RawValue`), so that an event several rules matched
/// is rendered once rather than once per alert, and likewise the rule.
pub struct AlertParts<'a, E, R: ?Sized = RuleRef> {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub host: &'a Host,
    /// Gives the severity and the ATT&CK section.
    pub rule: &'a RuleRef,
    /// Written as the `rule` section: `rule` itself, or `rule` rendered
    /// beforehand.
    pub rule_section: &'a R,
    /// Where the triggering event was read (its `source`).
    pub source: Option<&'a SourceRef>,
    /// The triggering event first, then a correlation's others.
    pub events: &'a [E],
}

impl<E: Serialize, R: Serialize + ?Sized> Serialize for AlertParts<'_, E, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("@timestamp", &Timestamp(&self.time))?;
        map.serialize_entry(
            "event",
            &MetaOut {
                id: self.id,
                kind: "alert",
                category: &["intrusion_detection"],
                kind_types: &["info"],
                action: "detection",
                dataset: "vigie.alert",
                outcome: None,
                severity: Some(self.rule.level.unwrap_or(Level::Medium).severity()),
            },
        )?;
        map.serialize_entry("host", self.host)?;
        map.serialize_entry("rule", self.rule_section)?;
        if !self.rule.attack.is_empty() {
            map.serialize_entry(
                "threat",
                &Threat {
                    framework: "MITRE ATT&CK".into(),
                    technique: ThreatTechnique {
                        id: self.rule.attack.clone(),
                    },
                },
            )?;
        }
        // The events are written straight from the alert, not through an
        // intermediate `Value`.
        #[derive(Serialize)]
        struct AlertVigieOut<'a, E> {
            #[serde(skip_serializing_if = "Option::is_none")]
            source: Option<&'a SourceRef>,
            events: &'a [E],
        }
        map.serialize_entry(
            "vigie",
            &AlertVigieOut {
                source: self.source,
                events: self.events,
            },
        )?;
        map.end()
    }
}

#[derive(Deserialize)]
struct AlertDoc {
    #[serde(rename = "@timestamp")]
    timestamp: DateTime<Utc>,
    event: Meta,
    #[serde(default)]
    host: Host,
    rule: RuleRef,
    #[serde(default)]
    vigie: AlertVigie,
}

/// Parse an alert as written by `serde_json::to_string(&alert)`.
pub fn parse_alert(json: &str) -> Result<Alert, EcsError> {
    let doc: AlertDoc = serde_json::from_str(json)?;
    let events = doc
        .vigie
        .events
        .iter()
        .map(event_from_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Alert {
        id: doc.event.id.unwrap_or_else(Uuid::now_v7),
        time: doc.timestamp,
        host: doc.host,
        rule: doc.rule,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    /// The fast path writes what chrono writes, and the rest is chrono's.
    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let chrono_json = |t: &DateTime<Utc>| serde_json::to_string(t).unwrap();
        let ours = |t: &DateTime<Utc>| serde_json::to_string(&Timestamp(t)).unwrap();
        let mut checked = 0;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000u64 {
            // xorshift: spread over 0000..=9999 and every fraction shape.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % 315_537_897_600) as i64 - 62_167_219_200; // 0000-01-01 .. 9999-12-31
            let nanos = match i % 5 {
                0 => 0,
                1 => (x >> 40) as u32 % 1_000 * 1_000_000,
                2 => (x >> 34) as u32 % 1_000_000 * 1_000,
                3 => (x >> 32) as u32 % 1_000_000_000,
                _ => 1,
            };
            let t = Utc.timestamp_opt(secs, nanos).unwrap();
            assert_eq!(ours(&t), chrono_json(&t), "{secs} s {nanos} ns");
            checked += 1;
        }
        assert_eq!(checked, 20_000);
        // Chrono's own path: years past 9999 or before 0, a leap second.
        let far = Utc.with_ymd_and_hms(12_345, 6, 7, 8, 9, 10).unwrap();
        let before = Utc.with_ymd_and_hms(-44, 3, 15, 12, 0, 0).unwrap();
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        for t in [far, before, leap] {
            assert_eq!(ours(&t), chrono_json(&t));
        }
        assert_eq!(
            ours(&Utc.with_ymd_and_hms(2026, 11, 29, 3, 4, 5).unwrap()),
            "\"2026-11-29T03:04:05Z\""
        );
    }
}

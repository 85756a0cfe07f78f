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

#[derive(Serialize, Deserialize, Default)]
struct Meta<'a> {
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    category: Vec<String>,
    #[serde(default, rename = "type")]
    kind_types: Vec<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<u8>,
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
        map.serialize_entry("@timestamp", &self.time)?;
        map.serialize_entry(
            "event",
            &Meta {
                id: Some(self.id),
                kind: Some("event".into()),
                category: categories(p).iter().map(|c| c.to_string()).collect(),
                kind_types: types(p).iter().map(|t| t.to_string()).collect(),
                action: Some(action(p).into()),
                dataset: Some(dataset(p).into()),
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
    #[serde(borrow)]
    event: Meta<'a>,
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
        map.serialize_entry("@timestamp", &self.time)?;
        map.serialize_entry(
            "event",
            &Meta {
                id: Some(self.id),
                kind: Some("alert".into()),
                category: vec!["intrusion_detection".into()],
                kind_types: vec!["info".into()],
                action: Some("detection".into()),
                dataset: Some("vigie.alert".into()),
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
struct AlertDoc<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: DateTime<Utc>,
    #[serde(borrow)]
    event: Meta<'a>,
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

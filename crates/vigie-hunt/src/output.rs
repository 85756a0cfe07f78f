//! Writing detections: a table for people, JSON lines and CSV for machines.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use vigie_detect::Match;
use vigie_event::ecs::AlertParts;
use vigie_event::{Event, Fields, Host, Level, RuleRef, SourceRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns, coloured levels on a terminal.
    #[default]
    Table,
    /// One ECS alert per line (`rule.*`, `@timestamp`, `host.name`,
    /// `vigie.source.*`, `vigie.events`).
    Jsonl,
    Csv,
}

/// Writes detections: one per match of `event` (an event that fired several
/// rules is written once per rule, as if each were its own alert).
pub trait AlertWriter: Send {
    fn write(&mut self, event: &Detected, matches: &[Match]) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
    /// What the worker threads make of an event that fired rules before it
    /// goes to [`AlertWriter::write`]; by default the event itself.
    fn preparer(&self) -> Preparer {
        Detected::Event
    }
}

/// Runs on a worker thread, see [`AlertWriter::preparer`].
pub type Preparer = fn(Box<Event>) -> Detected;

/// An event that fired rules, on its way to the writer.
pub enum Detected {
    /// The event itself (the table and CSV read its fields).
    Event(Box<Event>),
    /// The event rendered to JSON on the worker thread that read it, which
    /// also frees it: the allocator then does not hand every one of its
    /// strings back across threads.
    Rendered(RenderedEvent),
}

/// What a JSON alert takes from its event, the event itself rendered.
pub struct RenderedEvent {
    pub time: DateTime<Utc>,
    pub host: Host,
    pub source: Option<SourceRef>,
    pub json: Box<RawValue>,
}

impl RenderedEvent {
    fn of(event: &Event) -> serde_json::Result<Self> {
        Ok(RenderedEvent {
            time: event.time,
            host: event.host.clone(),
            source: event.source.clone(),
            json: serde_json::value::to_raw_value(event)?,
        })
    }

    /// The [`Preparer`] of JSON writers (an event that cannot be rendered
    /// stays whole, and the writer reports the error).
    pub fn prepare(event: Box<Event>) -> Detected {
        match RenderedEvent::of(&event) {
            Ok(rendered) => Detected::Rendered(rendered),
            Err(_) => Detected::Event(event),
        }
    }
}

/// The event of a detection for writers that read its fields (table, CSV),
/// which never ask for it rendered.
fn whole(event: &Detected) -> io::Result<&Event> {
    match event {
        Detected::Event(e) => Ok(e),
        Detected::Rendered(_) => Err(io::Error::other("this writer needs the whole event")),
    }
}

pub fn writer(format: Format, out: Box<dyn Write + Send>, color: bool) -> Box<dyn AlertWriter> {
    match format {
        Format::Table => Box::new(Table {
            out,
            color,
            header: false,
        }),
        Format::Jsonl => Box::new(Jsonl {
            out,
            rules: HashMap::new(),
        }),
        Format::Csv => Box::new(Csv {
            out: csv::Writer::from_writer(out),
            header: false,
        }),
    }
}

/// Fields that tell a person most about an event, in order of preference.
const TELLING_FIELDS: &[&str] = &[
    "CommandLine",
    "Image",
    "TargetFilename",
    "TargetObject",
    "Details",
    "ImageLoaded",
    "QueryName",
    "DestinationIp",
    "DestinationPort",
    "ScriptBlockText",
    "ServiceName",
    "ServiceFileName",
    "PipeName",
    "TargetUserName",
    "user.name",
    "source.ip",
    "ParentImage",
];

/// The two or three most telling `name=value` pairs of an event.
pub fn telling_fields(event: &Event, max: usize) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for name in TELLING_FIELDS {
        if out.len() == max {
            break;
        }
        if let Some(text) = event.field(name).as_ref().and_then(|v| v.to_text()) {
            let text = text.trim();
            if !text.is_empty() && text != "-" {
                out.push((*name, text.to_string()));
            }
        }
    }
    out
}

/// `s` on one line, at most `max` characters (an ellipsis marks a cut).
fn one_line(s: &str, max: usize) -> String {
    let flat = s.chars().map(|c| if c.is_control() { ' ' } else { c });
    if s.chars().count() <= max {
        return flat.collect();
    }
    let mut out: String = flat.take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn level_style(level: Level) -> console::Style {
    let s = console::Style::new();
    match level {
        Level::Critical => s.red().bold(),
        Level::High => s.red(),
        Level::Medium => s.yellow(),
        Level::Low => s.cyan(),
        Level::Informational => s.dim(),
    }
}

struct Table {
    out: Box<dyn Write + Send>,
    color: bool,
    header: bool,
}

impl AlertWriter for Table {
    fn write(&mut self, event: &Detected, matches: &[Match]) -> io::Result<()> {
        let event = whole(event)?;
        if !self.header {
            self.header = true;
            writeln!(
                self.out,
                "{:<19}  {:<16}  {:<13}  {:<50}  DETAILS",
                "TIME (UTC)", "HOST", "LEVEL", "RULE"
            )?;
        }
        let details: Vec<String> = telling_fields(event, 3)
            .into_iter()
            .map(|(k, v)| format!("{k}={}", one_line(&v, 100)))
            .collect();
        let details = details.join("  ");
        let time = event.time.format("%Y-%m-%d %H:%M:%S").to_string();
        let host = one_line(&event.host.name, 16);
        for m in matches {
            let level = m.level();
            let level_text = format!("{:<13}", level.as_str());
            let level_text = if self.color {
                level_style(level).apply_to(level_text).to_string()
            } else {
                level_text
            };
            writeln!(
                self.out,
                "{time:<19}  {host:<16}  {level_text}  {:<50}  {details}",
                one_line(&m.rule.name, 50),
            )?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Jsonl {
    out: Box<dyn Write + Send>,
    /// Each rule's `rule` section, rendered on its first detection. Keyed by
    /// the rule itself (compared by address: the map holds the `Arc`, so an
    /// address is never reused while its entry exists).
    rules: HashMap<ByAddress, Box<RawValue>>,
}

/// An `Arc<RuleRef>` hashed and compared by address: every match of a rule
/// shares the engine's one `Arc`.
struct ByAddress(Arc<RuleRef>);

impl PartialEq for ByAddress {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ByAddress {}

impl std::hash::Hash for ByAddress {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state)
    }
}

/// Rules rendered at most; beyond it (rule sets are a few thousand rules)
/// a rule is rendered with each detection.
const RENDERED_RULES: usize = 20_000;

impl AlertWriter for Jsonl {
    fn write(&mut self, event: &Detected, matches: &[Match]) -> io::Result<()> {
        // Rendered once for all the rules it fired (normally on the worker
        // thread); each line is still a whole alert (the same JSON as
        // `vigie_event::Alert`'s).
        let here;
        let event = match event {
            Detected::Rendered(r) => r,
            Detected::Event(e) => {
                here = RenderedEvent::of(e)?;
                &here
            }
        };
        let rendered = &event.json;
        for m in matches {
            let related: Vec<Box<RawValue>> = m
                .related
                .iter()
                .map(serde_json::value::to_raw_value)
                .collect::<Result<_, _>>()?;
            let mut events: Vec<&RawValue> = Vec::with_capacity(1 + related.len());
            events.push(rendered);
            events.extend(related.iter().map(|r| &**r));
            let key = ByAddress(Arc::clone(&m.rule));
            let uncached;
            let rule_section: &RawValue = match self.rules.get(&key) {
                Some(r) => r,
                None => {
                    let rendered = serde_json::value::to_raw_value(&*m.rule)?;
                    if self.rules.len() < RENDERED_RULES {
                        self.rules.entry(key).or_insert(rendered)
                    } else {
                        uncached = rendered;
                        &uncached
                    }
                }
            };
            let alert = AlertParts {
                id: uuid::Uuid::now_v7(),
                time: event.time,
                host: &event.host,
                rule: &m.rule,
                rule_section,
                source: event.source.as_ref(),
                events: &events,
            };
            serde_json::to_writer(&mut self.out, &alert)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn preparer(&self) -> Preparer {
        RenderedEvent::prepare
    }
}

struct Csv {
    out: csv::Writer<Box<dyn Write + Send>>,
    header: bool,
}

impl AlertWriter for Csv {
    fn write(&mut self, event: &Detected, matches: &[Match]) -> io::Result<()> {
        let event = whole(event)?;
        if !self.header {
            self.header = true;
            self.out.write_record([
                "time",
                "host",
                "level",
                "rule_id",
                "rule_title",
                "tags",
                "source_path",
                "record_id",
                "details",
            ])?;
        }
        let source = event.source.as_ref();
        let details: Vec<String> = telling_fields(event, 3)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let details = details.join(" | ");
        let time = event.time.to_rfc3339();
        let path = source.map(|s| s.path.as_str()).unwrap_or_default();
        let record_id = source
            .and_then(|s| s.record_id)
            .map(|r| r.to_string())
            .unwrap_or_default();
        for m in matches {
            self.out.write_record([
                time.as_str(),
                event.host.name.as_str(),
                m.level().as_str(),
                m.rule.id.as_str(),
                m.rule.name.as_str(),
                m.rule.tags.join(" ").as_str(),
                path,
                record_id.as_str(),
                details.as_str(),
            ])?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

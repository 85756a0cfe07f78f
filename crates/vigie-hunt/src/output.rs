//! Writing detections: a table for people, JSON lines and CSV for machines.

use std::io::{self, Write};

use vigie_event::{Alert, Event, Fields, Level};

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

pub trait AlertWriter: Send {
    fn write(&mut self, alert: &Alert) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

pub fn writer(format: Format, out: Box<dyn Write + Send>, color: bool) -> Box<dyn AlertWriter> {
    match format {
        Format::Table => Box::new(Table {
            out,
            color,
            header: false,
        }),
        Format::Jsonl => Box::new(Jsonl { out }),
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
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
        if !self.header {
            self.header = true;
            writeln!(
                self.out,
                "{:<19}  {:<16}  {:<13}  {:<50}  DETAILS",
                "TIME (UTC)", "HOST", "LEVEL", "RULE"
            )?;
        }
        let level = alert.level();
        let level_text = format!("{:<13}", level.as_str());
        let level_text = if self.color {
            level_style(level).apply_to(level_text).to_string()
        } else {
            level_text
        };
        let details: Vec<String> = alert
            .event()
            .map(|e| telling_fields(e, 3))
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={}", one_line(&v, 100)))
            .collect();
        writeln!(
            self.out,
            "{:<19}  {:<16}  {}  {:<50}  {}",
            alert.time.format("%Y-%m-%d %H:%M:%S"),
            one_line(&alert.host.name, 16),
            level_text,
            one_line(&alert.rule.name, 50),
            details.join("  ")
        )
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Jsonl {
    out: Box<dyn Write + Send>,
}

impl AlertWriter for Jsonl {
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, alert)?;
        self.out.write_all(b"\n")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

struct Csv {
    out: csv::Writer<Box<dyn Write + Send>>,
    header: bool,
}

impl AlertWriter for Csv {
    fn write(&mut self, alert: &Alert) -> io::Result<()> {
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
        let event = alert.event();
        let source = event.and_then(|e| e.source.as_ref());
        let details: Vec<String> = event
            .map(|e| telling_fields(e, 3))
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        self.out.write_record([
            alert.time.to_rfc3339(),
            alert.host.name.clone(),
            alert.level().as_str().to_string(),
            alert.rule.id.clone(),
            alert.rule.name.clone(),
            alert.rule.tags.join(" "),
            source.map(|s| s.path.clone()).unwrap_or_default(),
            source
                .and_then(|s| s.record_id)
                .map(|r| r.to_string())
                .unwrap_or_default(),
            details.join(" | "),
        ])?;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

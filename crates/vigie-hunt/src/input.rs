//! Finding input files and turning their records into [`Event`]s.
//!
//! Every reader is an iterator of [`Record`]: an event, or a record that was
//! skipped and why. Readers stream: memory does not grow with file size
//! (EVTX is read chunk by chunk, JSON line by line with a bound on one value).

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use vigie_event::{Event, Host, LogRecord, LogSource, Payload, SourceRef};

use crate::flat::Parsed;

/// Decides the Sigma logsource of a Windows record from its flattened fields
/// (the detection engine owns that knowledge; see
/// `vigie_detect::windows_logsource`).
pub type Classifier = fn(&Map<String, Value>) -> LogSource;

/// One JSON value may not be larger than this; a larger one is skipped so that
/// a file without line breaks cannot exhaust memory.
pub const MAX_JSON_VALUE: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Evtx,
    Json,
}

#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub kind: InputKind,
    pub size: u64,
}

/// A path that could not be used as input.
#[derive(Debug, Clone)]
pub struct InputProblem {
    pub path: PathBuf,
    pub reason: String,
}

const EVTX_MAGIC: &[u8] = b"ElfFile\0";

fn kind_by_extension(path: &Path) -> Option<InputKind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "evtx" => Some(InputKind::Evtx),
        "json" | "jsonl" | "ndjson" => Some(InputKind::Json),
        _ => None,
    }
}

/// A file named on the command line with an unknown extension is sniffed.
fn sniff(path: &Path) -> io::Result<InputKind> {
    let mut magic = [0u8; 8];
    let n = fs::File::open(path)?.read(&mut magic)?;
    Ok(if magic[..n] == *EVTX_MAGIC {
        InputKind::Evtx
    } else {
        InputKind::Json
    })
}

/// Expands files and directories (recursively) into input files, sorted by
/// path. Inside directories only `.evtx`, `.json`, `.jsonl` and `.ndjson` are
/// taken; a file named explicitly is taken whatever its name.
pub fn discover(paths: &[PathBuf]) -> (Vec<InputFile>, Vec<InputProblem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for root in paths {
        let meta = match fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                problems.push(InputProblem {
                    path: root.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if meta.is_file() {
            let kind = kind_by_extension(root)
                .map(Ok)
                .unwrap_or_else(|| sniff(root));
            match kind {
                Ok(kind) => files.push(InputFile {
                    path: root.clone(),
                    kind,
                    size: meta.len(),
                }),
                Err(e) => problems.push(InputProblem {
                    path: root.clone(),
                    reason: e.to_string(),
                }),
            }
            continue;
        }
        for entry in walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
        {
            match entry {
                Ok(entry) if entry.file_type().is_file() => {
                    if let Some(kind) = kind_by_extension(entry.path()) {
                        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                        files.push(InputFile {
                            path: entry.into_path(),
                            kind,
                            size,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => problems.push(InputProblem {
                    path: e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.clone()),
                    reason: e.to_string(),
                }),
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    (files, problems)
}

/// Why a record was skipped. The summary counts records per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The file could not be opened or read.
    Unreadable,
    /// An EVTX chunk or record that the parser could not decode.
    CorruptEvtx,
    InvalidUtf8,
    NotJson,
    /// Valid JSON, but not an object (a number, an array...).
    NotAnObject,
    /// A JSON value larger than [`MAX_JSON_VALUE`].
    TooLarge,
    /// Claims to be a Vigie ECS event but does not parse as one.
    InvalidEvent,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unreadable => "unreadable file",
            SkipReason::CorruptEvtx => "corrupt EVTX data",
            SkipReason::InvalidUtf8 => "invalid UTF-8",
            SkipReason::NotJson => "not JSON",
            SkipReason::NotAnObject => "JSON but not an object",
            SkipReason::TooLarge => "record too large",
            SkipReason::InvalidEvent => "invalid Vigie event",
        }
    }
}

/// What a reader yields.
#[derive(Debug)]
pub enum Record {
    Event(Box<Event>),
    Skipped {
        reason: SkipReason,
        /// Record number or line where the problem is, when known.
        at: Option<u64>,
        detail: String,
    },
}

/// Opens a reader for `file`. Errors opening the file come back as one
/// `Skipped(Unreadable)` record so callers handle all problems one way.
pub fn read(file: &InputFile, classify: Classifier) -> Box<dyn Iterator<Item = Record> + Send> {
    let opened = match file.kind {
        InputKind::Evtx => evtx_records(&file.path, classify),
        InputKind::Json => fs::File::open(&file.path)
            .map(|f| Box::new(JsonRecords::new(f, &file.path, classify)) as Box<_>),
    };
    match opened {
        Ok(it) => it,
        Err(e) => Box::new(std::iter::once(Record::Skipped {
            reason: SkipReason::Unreadable,
            at: None,
            detail: e.to_string(),
        })),
    }
}

// ---------------------------------------------------------------------------
// EVTX

fn evtx_records(
    path: &Path,
    classify: Classifier,
) -> io::Result<Box<dyn Iterator<Item = Record> + Send>> {
    let parser = evtx::EvtxParser::from_path(path)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        .with_configuration(settings_for_chunks());
    let source = path.display().to_string();
    Ok(Box::new(EvtxRecords {
        chunks: parser.into_chunks(),
        settings: std::sync::Arc::new(settings_for_chunks()),
        pending: std::collections::VecDeque::new(),
        done: false,
        chunk: 0,
        source,
        classify,
    }))
}

fn settings_for_chunks() -> evtx::ParserSettings {
    evtx::ParserSettings::new()
        .num_threads(1)
        .separate_json_attributes(false)
}

struct EvtxRecords {
    chunks: evtx::IntoIterChunks<fs::File>,
    settings: std::sync::Arc<evtx::ParserSettings>,
    pending: std::collections::VecDeque<Record>,
    done: bool,
    chunk: u64,
    source: String,
    classify: Classifier,
}

impl EvtxRecords {
    /// Decodes the next chunk into `pending`. A corrupt chunk becomes one
    /// skipped record and reading goes on with the next.
    fn fill(&mut self) {
        let index = self.chunk;
        let next = self.chunks.next();
        self.chunk += 1;
        let Some(chunk) = next else {
            self.done = true;
            return;
        };
        let mut chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                self.pending.push_back(Record::Skipped {
                    reason: SkipReason::CorruptEvtx,
                    at: None,
                    detail: format!("chunk {index}: {e}"),
                });
                return;
            }
        };
        match chunk.parse(self.settings.clone()) {
            Ok(mut parsed) => {
                for record in parsed.iter() {
                    let rendered = record.and_then(|r| r.into_json_value());
                    self.pending.push_back(match rendered {
                        Ok(rec) => {
                            let id = rec.event_record_id;
                            match windows_event(rec.data, &self.source, Some(id), self.classify) {
                                Ok(event) => Record::Event(Box::new(event)),
                                Err(reason) => Record::Skipped {
                                    reason,
                                    at: Some(id),
                                    detail: "record is not a Windows event".into(),
                                },
                            }
                        }
                        Err(e) => Record::Skipped {
                            reason: SkipReason::CorruptEvtx,
                            at: None,
                            detail: format!("chunk {index}: {e}"),
                        },
                    });
                }
            }
            Err(e) => self.pending.push_back(Record::Skipped {
                reason: SkipReason::CorruptEvtx,
                at: None,
                detail: format!("chunk {index}: {e}"),
            }),
        }
    }
}

impl Iterator for EvtxRecords {
    type Item = Record;
    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(r);
            }
            if self.done {
                return None;
            }
            self.fill();
        }
    }
}

// ---------------------------------------------------------------------------
// Windows event flattening

/// Flattens `{"Event": {"System": .., "EventData": .., "UserData": ..}}` (the
/// JSON rendering of an EVTX record) to Sigma's field names: System scalars
/// at the top (`EventID`, `Channel`, `Computer`), attributes as
/// `<Element>_<Attribute>` (`Provider_Name`, `TimeCreated_SystemTime`),
/// EventData and UserData values at the top by their names. The record is
/// taken by value: its strings move into the flat map instead of being
/// copied (this runs once per hunted record). None when the value is not a
/// Windows rendering.
pub fn flatten_windows(value: Value) -> Option<Map<String, Value>> {
    let Value::Object(mut root) = value else {
        return None;
    };
    let Some(Value::Object(mut event)) = root.remove("Event") else {
        return None;
    };
    let Some(Value::Object(system)) = event.remove("System") else {
        return None;
    };
    // Sized once: System's children, the data fields and a few attributes.
    let data_len = |v: Option<&Value>| v.and_then(Value::as_object).map_or(0, Map::len);
    let mut out = Map::with_capacity(
        system.len() + 8 + data_len(event.get("EventData")) + data_len(event.get("UserData")),
    );
    for (key, v) in system {
        flatten_element(key, v, &mut out);
    }
    if let Some(data) = event.remove("EventData") {
        flatten_data(data, &mut out);
    }
    if let Some(Value::Object(user_data)) = event.remove("UserData") {
        // UserData holds one element named after the event; its children are
        // the fields.
        for (key, inner) in user_data {
            if key == "#attributes" {
                continue;
            }
            flatten_data(inner, &mut out);
        }
    }
    Some(out)
}

/// A System child: a scalar, an element with attributes, or an element with
/// text and attributes (`EventID` with `Qualifiers`).
pub(crate) fn flatten_element(key: String, v: Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(obj) => {
            let mut children = Vec::new();
            for (child, cv) in obj {
                match child.as_str() {
                    "#text" => {
                        out.insert(key.clone(), cv);
                    }
                    "#attributes" => {
                        if let Value::Object(attrs) = cv {
                            for (attr, av) in attrs {
                                out.insert(format!("{key}_{attr}"), av);
                            }
                        }
                    }
                    c if c.starts_with('#') => {}
                    _ => children.push((child, cv)),
                }
            }
            for (child, cv) in children {
                flatten_element(format!("{key}_{child}"), cv, out);
            }
        }
        other => {
            out.insert(key, other);
        }
    }
}

pub(crate) fn flatten_data(data: Value, out: &mut Map<String, Value>) {
    match data {
        Value::Object(obj) => {
            for (k, v) in obj {
                if k != "#attributes" {
                    flatten_data_member(k, v, out);
                }
            }
        }
        Value::Null => {}
        other => {
            out.insert("EventData".into(), other);
        }
    }
}

/// One member of EventData (or of UserData's element).
pub(crate) fn flatten_data_member(k: String, v: Value, out: &mut Map<String, Value>) {
    // `<Data>` without a Name renders as "Data" (a list or one value);
    // `#text` is the text of EventData itself.
    let v = match v {
        Value::Object(mut inner) if inner.contains_key("#text") => {
            inner.remove("#text").unwrap_or(Value::Null)
        }
        other => other,
    };
    // Some providers (Windows Defender) name data with spaces
    // ("Threat Name"); Sigma's taxonomy writes them without.
    if k.contains(' ') {
        out.insert(k.replace(' ', ""), v.clone());
    }
    out.insert(k, v);
}

fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // Sysmon's UtcTime: "2025-11-27 07:40:10.132".
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

fn record_event(
    fields: Map<String, Value>,
    logsource: LogSource,
    time_keys: &[&str],
    host_keys: &[&str],
    source: &str,
    record_id: Option<u64>,
) -> Event {
    let time = time_keys
        .iter()
        .find_map(|k| parse_time(fields.get(*k)))
        .unwrap_or_else(Utc::now);
    let host = host_keys
        .iter()
        .find_map(|k| fields.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let mut event = Event::new(
        time,
        Host::named(host),
        Payload::Log(LogRecord { logsource, fields }),
    );
    event.source = Some(SourceRef {
        path: source.to_string(),
        record_id,
    });
    event
}

fn windows_event(
    value: Value,
    source: &str,
    record_id: Option<u64>,
    classify: Classifier,
) -> Result<Event, SkipReason> {
    let fields = flatten_windows(value).ok_or(SkipReason::NotAnObject)?;
    Ok(windows_fields_event(fields, source, record_id, classify))
}

/// The event of a flattened Windows record.
fn windows_fields_event(
    fields: Map<String, Value>,
    source: &str,
    record_id: Option<u64>,
    classify: Classifier,
) -> Event {
    let record_id = record_id.or_else(|| fields.get("EventRecordID").and_then(Value::as_u64));
    let logsource = classify(&fields);
    record_event(
        fields,
        logsource,
        &["TimeCreated_SystemTime", "UtcTime"],
        &["Computer"],
        source,
        record_id,
    )
}

/// Any JSON object: a Vigie ECS event, a rendered Windows event, or a flat
/// (or nested) object read as it is.
pub fn json_event(
    value: Value,
    source: &str,
    record_id: Option<u64>,
    classify: Classifier,
) -> Result<Event, SkipReason> {
    if !value.is_object() {
        return Err(SkipReason::NotAnObject);
    }
    if vigie_event::ecs::is_vigie_event(&value) {
        let mut event =
            vigie_event::ecs::event_from_value(&value).map_err(|_| SkipReason::InvalidEvent)?;
        event.source = Some(SourceRef {
            path: source.to_string(),
            record_id,
        });
        return Ok(event);
    }
    if value.get("Event").and_then(|e| e.get("System")).is_some() {
        return windows_event(value, source, record_id, classify);
    }
    let Value::Object(fields) = value else {
        return Err(SkipReason::NotAnObject);
    };
    // Flat Windows records (from a forwarder) still route by channel.
    let logsource = if fields.contains_key("Channel") || fields.contains_key("EventID") {
        classify(&fields)
    } else {
        LogSource::default()
    };
    Ok(record_event(
        fields,
        logsource,
        &[
            "@timestamp",
            "timestamp",
            "TimeCreated_SystemTime",
            "UtcTime",
            "time",
        ],
        &["Computer", "hostname", "host"],
        source,
        record_id,
    ))
}

// ---------------------------------------------------------------------------
// JSON lines, and concatenated (pretty-printed) JSON values

/// Reads JSON values one after another. A file whose first value ends on the
/// line it starts is read as JSON lines: each line stands alone, so a corrupt
/// line costs only itself. Otherwise values may span lines and are delimited
/// by tracking brackets outside strings.
struct JsonRecords<R> {
    reader: BufReader<R>,
    source: String,
    classify: Classifier,
    line_no: u64,
    line: Vec<u8>,
    value: Vec<u8>,
    value_start: u64,
    scan: Scanner,
    /// None until the first value tells which kind of file this is.
    line_mode: Option<bool>,
    done: bool,
}

#[derive(Default)]
struct Scanner {
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
    broken: bool,
}

impl Scanner {
    /// Feeds bytes; returns true when a complete top-level value has ended.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    self.started = true;
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    self.started = true;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        self.broken = true;
                    } else {
                        self.depth -= 1;
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => self.started = true,
            }
        }
        self.started && self.depth == 0 && !self.in_string
    }
}

impl<R: Read> JsonRecords<R> {
    fn new(inner: R, path: &Path, classify: Classifier) -> Self {
        JsonRecords {
            reader: BufReader::with_capacity(256 * 1024, inner),
            source: path.display().to_string(),
            classify,
            line_no: 0,
            line: Vec::new(),
            value: Vec::new(),
            value_start: 0,
            scan: Scanner::default(),
            line_mode: None,
            done: false,
        }
    }

    fn skipped(&self, reason: SkipReason, at: u64, detail: String) -> Record {
        Record::Skipped {
            reason,
            at: Some(at),
            detail,
        }
    }

    fn parse(&self, bytes: &[u8], at: u64) -> Record {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return self.skipped(SkipReason::InvalidUtf8, at, "line is not UTF-8".into());
        };
        // From the checked `str`: the parser does not check UTF-8 again.
        // Windows renderings are flattened as they are parsed.
        let event = match crate::flat::parse(text) {
            Ok(Parsed::Windows(fields)) => Ok(windows_fields_event(
                fields,
                &self.source,
                Some(at),
                self.classify,
            )),
            Ok(Parsed::BrokenWindows) => Err(SkipReason::NotAnObject),
            Ok(Parsed::Other(v)) => json_event(v, &self.source, Some(at), self.classify),
            Err(e) => return self.skipped(SkipReason::NotJson, at, e.to_string()),
        };
        match event {
            Ok(e) => Record::Event(Box::new(e)),
            Err(reason) => self.skipped(reason, at, reason.as_str().into()),
        }
    }

    fn reset_value(&mut self) {
        self.value.clear();
        self.scan = Scanner::default();
    }
}

impl<R: Read> Iterator for JsonRecords<R> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        while !self.done {
            self.line.clear();
            // Read at most one byte past the bound, so a file without line
            // breaks is refused without being loaded.
            let read = (&mut self.reader)
                .take(MAX_JSON_VALUE as u64 + 1)
                .read_until(b'\n', &mut self.line);
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    return Some(self.skipped(SkipReason::Unreadable, self.line_no, e.to_string()));
                }
            };
            if n == 0 {
                self.done = true;
                if self.value.iter().any(|b| !b.is_ascii_whitespace()) {
                    let at = self.value_start;
                    self.reset_value();
                    return Some(self.skipped(
                        SkipReason::NotJson,
                        at,
                        "file ends inside a JSON value".into(),
                    ));
                }
                return None;
            }
            self.line_no += 1;
            if self.line.len() > MAX_JSON_VALUE {
                // Drain the rest of this oversized line.
                let mut sink = Vec::new();
                while self.line.last() != Some(&b'\n') {
                    sink.clear();
                    match (&mut self.reader)
                        .take(MAX_JSON_VALUE as u64)
                        .read_until(b'\n', &mut sink)
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => self.line = std::mem::take(&mut sink),
                    }
                }
                self.reset_value();
                return Some(self.skipped(
                    SkipReason::TooLarge,
                    self.line_no,
                    format!("longer than {MAX_JSON_VALUE} bytes"),
                ));
            }
            if self.line_mode == Some(true) {
                if self.line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let line = std::mem::take(&mut self.line);
                let record = self.parse(&line, self.line_no);
                self.line = line;
                return Some(record);
            }
            if self.value.is_empty() {
                if self.line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                self.value_start = self.line_no;
            }
            let complete = self.scan.feed(&self.line);
            self.value.extend_from_slice(&self.line);
            if self.scan.broken {
                let at = self.value_start;
                self.reset_value();
                return Some(self.skipped(SkipReason::NotJson, at, "unbalanced brackets".into()));
            }
            if self.value.len() > MAX_JSON_VALUE {
                let at = self.value_start;
                self.reset_value();
                return Some(self.skipped(
                    SkipReason::TooLarge,
                    at,
                    format!("value longer than {MAX_JSON_VALUE} bytes"),
                ));
            }
            if complete {
                if self.line_mode.is_none() {
                    self.line_mode = Some(self.value_start == self.line_no);
                }
                let value = std::mem::take(&mut self.value);
                let at = self.value_start;
                self.scan = Scanner::default();
                let record = self.parse(&value, at);
                self.value = value;
                self.value.clear();
                return Some(record);
            }
        }
        None
    }
}

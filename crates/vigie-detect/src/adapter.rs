//! rsigma's `Event` trait over a borrowed [`vigie_event::Event`], without a
//! JSON round trip.
//!
//! * Typed events (process, file, network...) answer through
//!   [`vigie_event::Fields`]: Sigma names (`Image`) and ECS paths
//!   (`process.executable`).
//! * Log records (`Payload::Log`) are read the way rsigma's own `JsonEvent`
//!   reads a JSON object: the flat key first, then a dotted path that fans out
//!   over arrays, with `name[N]` positional indices. rsigma's walker is
//!   private and needs a whole `serde_json::Value`, while a record holds a
//!   `Map`; wrapping it would clone every record, so the same few rules are
//!   written here (a differential test against `JsonEvent` keeps them equal).

use std::borrow::Cow;
use std::cell::OnceCell;

use rsigma_eval::event::{Event as SigmaEvent, EventValue};
use rsigma_eval::matcher::ascii_lowercase_cow;
use rsigma_parser::fieldpath::{first_unescaped, unescape_brackets};
use serde_json::{Map, Value};
use vigie_event::{Event, FieldValue, Fields, Payload};

use crate::lowered;

/// rsigma's own nesting bound for recursive walks over JSON.
const MAX_DEPTH: usize = 64;

/// A borrowed Vigie event as rsigma sees it.
pub(crate) struct SigmaView<'a> {
    event: &'a Event,
    record: Option<&'a Map<String, Value>>,
    /// Set when a correlation window took a reference to the event (see
    /// [`SigmaEvent::to_json`]): the detector must then keep a copy.
    referenced: std::cell::Cell<bool>,
    /// The reference a correlation window keeps ([`crate::kept`]).
    reference: u64,
    /// The record's fields by name. A record's fields are looked up many
    /// times (the rule gate, then each detection item of each rule it
    /// lets through); `serde_json::Map` hashes with SipHash, this with
    /// aHash (randomly keyed too: field names come from the input).
    index: FieldIndex<'a>,
    /// A record field's value lowercased, by its position in the record,
    /// computed on the first read of its alias (crate::lowered).
    lowered: Vec<OnceCell<Cow<'a, str>>>,
}

/// A record's fields by name: their position and value.
type FieldIndex<'a> = std::collections::HashMap<&'a str, (usize, &'a Value), ahash::RandomState>;

impl<'a> SigmaView<'a> {
    /// `reference`: the number correlation windows keep for this event
    /// ([`crate::kept::KeptEvents::next_reference`]).
    pub(crate) fn new(event: &'a Event, reference: u64) -> Self {
        let record = match &event.payload {
            Payload::Log(r) => Some(&r.fields),
            _ => None,
        };
        let mut index = FieldIndex::with_capacity_and_hasher(
            record.map_or(0, Map::len),
            ahash::RandomState::new(),
        );
        index.extend(
            record
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, (k, v))| (k.as_str(), (i, v))),
        );
        let lowered = std::iter::repeat_with(OnceCell::new)
            .take(index.len())
            .collect();
        SigmaView {
            event,
            record,
            referenced: std::cell::Cell::new(false),
            reference,
            index,
            lowered,
        }
    }

    /// The lowercased value of `field` (the answer for its alias name): a
    /// record's string field is lowercased once per event, anything else
    /// at each read.
    fn get_lowered(&self, field: &str) -> Option<EventValue<'_>> {
        if self.record.is_some()
            && let Some(&(slot, Value::String(s))) = self.index.get(field)
            && let Some(cell) = self.lowered.get(slot)
        {
            let lowered = cell.get_or_init(|| ascii_lowercase_cow(s));
            return Some(EventValue::Str(Cow::Borrowed(lowered.as_ref())));
        }
        self.get_field(field).map(lower_value)
    }

    /// Whether a correlation window now refers to this event.
    pub(crate) fn referenced(&self) -> bool {
        self.referenced.get()
    }
}

/// `value` as rsigma's case-insensitive matchers compare it: strings (and
/// floats, by their text, which may read `NaN`) lowercased, integers and
/// booleans as they are (their text has no capitals), lists member by member.
fn lower_value(value: EventValue<'_>) -> EventValue<'_> {
    match value {
        EventValue::Str(Cow::Borrowed(s)) => EventValue::Str(ascii_lowercase_cow(s)),
        EventValue::Str(Cow::Owned(s)) => {
            EventValue::Str(Cow::Owned(ascii_lowercase_cow(&s).into_owned()))
        }
        EventValue::Float(f) => EventValue::Str(Cow::Owned(f.to_string().to_lowercase())),
        EventValue::Array(items) => EventValue::Array(items.into_iter().map(lower_value).collect()),
        other => other,
    }
}

fn from_field(value: FieldValue<'_>) -> EventValue<'_> {
    match value {
        FieldValue::Str(s) => EventValue::Str(s),
        FieldValue::Int(n) => EventValue::Int(n),
        FieldValue::Float(f) => EventValue::Float(f),
        FieldValue::Bool(b) => EventValue::Bool(b),
        FieldValue::Null => EventValue::Null,
        FieldValue::List(items) => EventValue::Array(items.into_iter().map(from_field).collect()),
        FieldValue::Json(v) => EventValue::from(v),
    }
}

impl SigmaEvent for SigmaView<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        if let Some(field) = lowered::aliased(path) {
            return self.get_lowered(field);
        }
        match self.record {
            Some(_) => record_get(&self.index, path),
            None => self.event.field(path).map(from_field),
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut found = false;
        self.visit_string_values(&mut |s| {
            if !found && pred(s) {
                found = true;
            }
        });
        found
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        match self.record {
            Some(map) => {
                for v in map.values() {
                    collect_strings(v, &mut out, MAX_DEPTH - 1);
                }
            }
            None => self
                .event
                .visit_strings(&mut |s| out.push(Cow::Owned(s.to_string()))),
        }
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        match self.record {
            Some(map) => {
                for v in map.values() {
                    visit_strings(v, visit, MAX_DEPTH - 1);
                }
            }
            None => self.event.visit_strings(visit),
        }
    }

    fn to_json(&self) -> Value {
        // Only called when a correlation window stores the event. rsigma
        // keeps the `id` of what this returns; the detector keeps the event
        // itself (crate::kept), once, instead of a JSON copy per window.
        // A number, not the event's uuid: the detector finds it by binary
        // search, without formatting and parsing a uuid per reference.
        self.referenced.set(true);
        let mut m = Map::with_capacity(1);
        m.insert("id".into(), Value::from(self.reference));
        Value::Object(m)
    }
}

fn visit_strings(v: &Value, visit: &mut dyn FnMut(&str), depth: usize) {
    if depth == 0 {
        return;
    }
    match v {
        Value::String(s) => visit(s),
        Value::Array(items) => items
            .iter()
            .for_each(|i| visit_strings(i, visit, depth - 1)),
        Value::Object(map) => map
            .values()
            .for_each(|i| visit_strings(i, visit, depth - 1)),
        _ => {}
    }
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<Cow<'a, str>>, depth: usize) {
    if depth == 0 {
        return;
    }
    match v {
        Value::String(s) => out.push(Cow::Borrowed(s)),
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_strings(i, out, depth - 1)),
        Value::Object(map) => map
            .values()
            .for_each(|i| collect_strings(i, out, depth - 1)),
        _ => {}
    }
}

/// A record's field, with rsigma `JsonEvent` semantics.
fn record_get<'a>(map: &FieldIndex<'a>, path: &str) -> Option<EventValue<'a>> {
    if let Some(&(_, v)) = map.get(path) {
        return Some(EventValue::from(v));
    }
    if !(path.contains('.') || path.contains('[') || path.contains('\\')) {
        return None;
    }
    let ops = parse_ops(path);
    let (first, rest) = ops.split_first()?;
    // The root is an object: an index op there selects nothing, a key op
    // selects one member.
    let Op::Key(key) = first else {
        return None;
    };
    let (_, root) = *map.get(key.as_ref())?;
    let mut hits = Vec::new();
    collect(root, rest, &mut hits);
    match hits.len() {
        0 => None,
        1 => hits.pop(),
        _ => Some(EventValue::Array(hits)),
    }
}

enum Op<'a> {
    Key(Cow<'a, str>),
    Index(i64),
}

fn parse_ops(path: &str) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    for part in path.split('.') {
        match first_unescaped(part, b'[') {
            Some(pos) if index_groups(&part[pos..]).is_some() => {
                let name = &part[..pos];
                if !name.is_empty() {
                    ops.push(Op::Key(unescape_brackets(name)));
                }
                ops.extend(
                    index_groups(&part[pos..])
                        .unwrap_or_default()
                        .into_iter()
                        .map(Op::Index),
                );
            }
            _ => ops.push(Op::Key(unescape_brackets(part))),
        }
    }
    ops
}

fn index_groups(s: &str) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        out.push(inner[..close].parse().ok()?);
        rest = &inner[close + 1..];
    }
    Some(out)
}

fn collect<'a>(current: &'a Value, ops: &[Op<'_>], out: &mut Vec<EventValue<'a>>) {
    let Some((op, rest)) = ops.split_first() else {
        out.push(EventValue::from(current));
        return;
    };
    match op {
        Op::Key(key) => match current {
            Value::Object(map) => {
                if let Some(next) = map.get(key.as_ref()) {
                    collect(next, rest, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    collect(item, ops, out);
                }
            }
            _ => {}
        },
        Op::Index(i) => {
            if let Value::Array(items) = current {
                let len = items.len() as i64;
                let idx = if *i >= 0 { *i } else { len + *i };
                if (0..len).contains(&idx) {
                    collect(&items[idx as usize], rest, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsigma_eval::event::JsonEvent;
    use serde_json::json;
    use vigie_event::{Host, LogRecord, LogSource};

    #[test]
    fn record_fields_read_like_json_event() {
        let value = json!({
            "EventID": 1,
            "Image": "C:\\x.exe",
            "Float": 1.5,
            "Flag": true,
            "Nothing": null,
            "a.b": "flat wins",
            "a": {"b": "nested", "c": [1, 2, {"d": "deep"}]},
            "list": [{"n": "x"}, {"n": "y"}, {"m": 3}],
            "arr": [[1, 2], [3]],
            "esc[0]": "literal",
            "big": 18446744073709551615u64,
        });
        let Value::Object(map) = value.clone() else {
            unreachable!()
        };
        let event = Event::new(
            chrono::Utc::now(),
            Host::named("h"),
            Payload::Log(LogRecord {
                logsource: LogSource::default(),
                fields: map,
            }),
        );
        let view = SigmaView::new(&event, 0);
        let reference = JsonEvent::borrow(&value);
        for path in [
            "EventID",
            "Image",
            "Float",
            "Flag",
            "Nothing",
            "missing",
            "a.b",
            "a.c",
            "a.c.d",
            "a.c[2].d",
            "a.c[-1].d",
            "a.c[9]",
            "list.n",
            "list[1].n",
            "list.m",
            "arr[0][1]",
            "arr[-1][0]",
            "esc\\[0\\]",
            "big",
            "a",
            "a.zz",
            "[0]",
            ".a",
        ] {
            assert_eq!(
                view.get_field(path),
                reference.get_field(path),
                "field {path:?}"
            );
        }
        let mut ours = view.all_string_values();
        let mut theirs = reference.all_string_values();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
        assert!(view.any_string_value(&|s| s == "deep"));
        assert!(!view.any_string_value(&|s| s == "absent"));
    }
}

//! One-pass parsing of a JSON record: a `{"Event":{"System":..,"EventData":..}}`
//! rendering of a Windows event is flattened while it is deserialised, so
//! its `System` and `EventData` children go straight into the flat field
//! map instead of into nested maps that [`crate::input::flatten_windows`]
//! then takes apart (each map insertion hashes its key; this halves them).
//!
//! The result is the same as `serde_json::from_str::<Value>` followed by
//! `flatten_windows` (a differential test over SigmaHQ's regression data and
//! odd shapes holds that), with one difference on malformed renderings: a
//! name given twice inside `System` (or `System` itself twice) is flattened
//! twice, in the order read, where the two-step path keeps only the last
//! value. Anything that is not such a rendering comes back as a plain
//! [`Value`].

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::input::{flatten_data, flatten_data_member, flatten_element};

/// A parsed JSON record.
pub(crate) enum Parsed {
    /// A Windows event rendering, already flattened to Sigma's field names.
    Windows(Map<String, Value>),
    /// A Windows rendering whose `System` is not an object.
    BrokenWindows,
    /// Anything else, as parsed.
    Other(Value),
}

/// Parses one JSON text.
pub(crate) fn parse(text: &str) -> serde_json::Result<Parsed> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de::Deserializer::deserialize_any(&mut de, RootVisitor)?;
    de.end()?;
    Ok(parsed)
}

/// Scalars and arrays as `Value`, for the visitors below: a value that is
/// not the object they look for is kept as it is.
macro_rules! scalar_visits {
    ($out:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($out(Value::Bool(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok($out(Value::from(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok($out(Value::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok($out(Value::from(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($out(Value::String(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok($out(Value::String(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($out(Value::Null))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($out(Value::Null))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(v) = seq.next_element::<Value>()? {
                items.push(v);
            }
            Ok($out(Value::Array(items)))
        }
    };
}

struct RootVisitor;

impl<'de> Visitor<'de> for RootVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalar_visits!(Parsed::Other);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Parsed::Other(Value::Object(Map::new())));
        };
        if first != "Event" {
            // Not a rendering (or `Event` comes later: the two-step path
            // handles that).
            let mut out = Map::new();
            out.insert(first, map.next_value()?);
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                out.insert(k, v);
            }
            return Ok(Parsed::Other(Value::Object(out)));
        }
        let event = map.next_value_seed(EventSeed)?;
        let mut rest = Map::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            rest.insert(k, v);
        }
        if let EventPart::Other(v) = event {
            let mut out = Map::with_capacity(1 + rest.len());
            out.insert(first, v);
            out.extend(rest);
            return Ok(Parsed::Other(Value::Object(out)));
        }
        // A second `Event` wins, as in a parsed `Value`; a Vigie ECS event
        // is read as ECS (which ignores `Event`). Both go the general way,
        // without the flattened first `Event`.
        let duplicate = rest.contains_key("Event");
        let rest = Value::Object(rest);
        if duplicate || vigie_event::ecs::is_vigie_event(&rest) {
            let Value::Object(mut rest) = rest else {
                return Ok(Parsed::Other(rest));
            };
            let mut out = Map::with_capacity(rest.len());
            if let Some(v) = rest.remove("Event") {
                out.insert(first, v);
            }
            out.extend(rest);
            return Ok(Parsed::Other(Value::Object(out)));
        }
        Ok(match event {
            EventPart::Flat(fields) => Parsed::Windows(fields),
            EventPart::BrokenSystem | EventPart::Other(_) => Parsed::BrokenWindows,
        })
    }
}

/// The value of the top-level `Event`.
enum EventPart {
    /// An object with an object `System`: flattened.
    Flat(Map<String, Value>),
    /// An object whose `System` is not an object.
    BrokenSystem,
    /// No `System`, or not an object: as parsed.
    Other(Value),
}

struct EventSeed;

impl<'de> DeserializeSeed<'de> for EventSeed {
    type Value = EventPart;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<EventPart, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventSeed {
    type Value = EventPart;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalar_visits!(EventPart::Other);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventPart, A::Error> {
        // Until an object `System` shows up, every member is kept as it is
        // (without one, this is not a rendering and the value is returned
        // whole). From then on the flat map fills in the order of
        // `flatten_windows`: System, EventData, UserData.
        let mut kept = Map::new();
        let mut flat: Option<Map<String, Value>> = None;
        let mut broken = false;
        let mut event_data: Option<Value> = None;
        let mut user_data: Option<Value> = None;
        while let Some(key) = map.next_key::<String>()? {
            match (key.as_str(), flat.as_mut()) {
                ("System", None) => {
                    let mut out = Map::with_capacity(48);
                    match map.next_value_seed(IntoFlat {
                        out: &mut out,
                        element: Element::System,
                    })? {
                        None => {
                            // An earlier, non-object `System` is replaced.
                            kept.remove("System");
                            event_data = kept.remove("EventData");
                            user_data = kept.remove("UserData");
                            flat = Some(out);
                        }
                        Some(other) => {
                            kept.insert(key, other);
                        }
                    }
                }
                ("System", Some(out)) => {
                    if map
                        .next_value_seed(IntoFlat {
                            out,
                            element: Element::System,
                        })?
                        .is_some()
                    {
                        broken = true;
                    }
                }
                ("EventData", Some(out)) if event_data.is_none() && user_data.is_none() => {
                    if let Some(other) = map.next_value_seed(IntoFlat {
                        out: &mut *out,
                        element: Element::Data,
                    })? {
                        flatten_data(other, out);
                    }
                }
                ("EventData", Some(_)) => event_data = Some(map.next_value()?),
                ("UserData", Some(_)) => user_data = Some(map.next_value()?),
                (_, Some(_)) => {
                    map.next_value::<IgnoredAny>()?;
                }
                (_, None) => {
                    let v = map.next_value()?;
                    kept.insert(key, v);
                }
            }
        }
        let Some(mut out) = flat else {
            if matches!(kept.get("System"), Some(v) if !v.is_object()) {
                return Ok(EventPart::BrokenSystem);
            }
            return Ok(EventPart::Other(Value::Object(kept)));
        };
        if broken {
            return Ok(EventPart::BrokenSystem);
        }
        if let Some(data) = event_data {
            flatten_data(data, &mut out);
        }
        if let Some(Value::Object(user_data)) = user_data {
            for (key, inner) in user_data {
                if key != "#attributes" {
                    flatten_data(inner, &mut out);
                }
            }
        }
        Ok(EventPart::Flat(out))
    }
}

/// Which element [`IntoFlat`] reads.
#[derive(Clone, Copy)]
enum Element<'k> {
    /// `System`: each child as `flatten_element` does it.
    System,
    /// A child of `System` named so: its `#text` under that name, its
    /// attributes as `<name>_<attribute>`, its own children after them.
    Child(&'k str),
    /// The `#attributes` of the child named so.
    Attributes(&'k str),
    /// `EventData`: each member as `flatten_data` does it.
    Data,
}

/// An element flattened into `out` as it is read (None), or its value when
/// it is not an object.
struct IntoFlat<'a, 'k> {
    out: &'a mut Map<String, Value>,
    element: Element<'k>,
}

impl<'de> DeserializeSeed<'de> for IntoFlat<'_, '_> {
    type Value = Option<Value>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IntoFlat<'_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalar_visits!(Some);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        // A child's own children come after its text and attributes.
        let mut nested = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.element {
                Element::System => {
                    let child = IntoFlat {
                        out: &mut *self.out,
                        element: Element::Child(&key),
                    };
                    if let Some(v) = map.next_value_seed(child)? {
                        self.out.insert(key, v);
                    }
                }
                Element::Child(name) => match key.as_str() {
                    "#text" => {
                        let v = map.next_value()?;
                        self.out.insert(name.to_owned(), v);
                    }
                    "#attributes" => {
                        let attributes = IntoFlat {
                            out: &mut *self.out,
                            element: Element::Attributes(name),
                        };
                        // Attributes that are not an object are dropped.
                        map.next_value_seed(attributes)?;
                    }
                    k if k.starts_with('#') => {
                        map.next_value::<IgnoredAny>()?;
                    }
                    _ => nested.push((key, map.next_value::<Value>()?)),
                },
                Element::Attributes(name) => {
                    let v = map.next_value()?;
                    self.out.insert(format!("{name}_{key}"), v);
                }
                Element::Data if key == "#attributes" => {
                    map.next_value::<IgnoredAny>()?;
                }
                Element::Data => flatten_data_member(key, map.next_value()?, self.out),
            }
        }
        if let Element::Child(name) = self.element {
            for (child, v) in nested {
                flatten_element(format!("{name}_{child}"), v, self.out);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::flatten_windows;
    use vigie_event::ecs::is_vigie_event;

    /// What the hunt makes of a record, as compact JSON (key order counts).
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Windows(String),
        Skipped,
        Ecs,
        Other(String),
    }

    /// What `json_event` does with a parsed value.
    fn outcome_of_value(v: Value) -> Outcome {
        if is_vigie_event(&v) {
            return Outcome::Ecs;
        }
        if v.get("Event").and_then(|e| e.get("System")).is_some() {
            return match flatten_windows(v) {
                Some(m) => Outcome::Windows(serde_json::to_string(&m).unwrap()),
                None => Outcome::Skipped,
            };
        }
        Outcome::Other(serde_json::to_string(&v).unwrap())
    }

    fn two_step(text: &str) -> Outcome {
        outcome_of_value(serde_json::from_str(text).unwrap())
    }

    fn one_pass(text: &str) -> Outcome {
        match parse(text).unwrap() {
            Parsed::Windows(m) => Outcome::Windows(serde_json::to_string(&m).unwrap()),
            Parsed::BrokenWindows => Outcome::Skipped,
            Parsed::Other(v) => outcome_of_value(v),
        }
    }

    #[test]
    fn same_as_parsing_then_flattening() {
        let cases = [
            r##"{"Event":{"System":{"EventID":1,"Channel":"c","Provider":{"#attributes":{"Name":"p"}}},"EventData":{"Image":"x","A B":"y","Data":{"#text":"t"}}}}"##,
            r##"{"Event":{"EventData":{"Image":"x"},"#attributes":{"xmlns":"n"},"System":{"EventID":{"#text":4688,"#attributes":{"Qualifiers":0}}}}}"##,
            r##"{"Event":{"System":{"EventID":1},"UserData":{"Ev":{"#attributes":{},"Param":"u"}},"EventData":{"Image":"x"}}}"##,
            r##"{"Event":{"System":{"EventID":1},"EventData":"text","UserData":5}}"##,
            r##"{"Event":{"System":{"EventID":1},"EventData":null}}"##,
            r##"{"Event":{"System":{"P":{"#attributes":"odd","#text":"t","#x":1,"Sub":{"#attributes":{"a":1},"Deep":{"#text":2}},"Other":[1]}}}}"##,
            r##"{"Event":{"System":{"P":{"Sub":{"#text":1},"#attributes":{"N":"n"}},"E":{},"F":null,"G":[{"a":1}]}}}"##,
            r##"{"Event":{"System":{"P":{"#text":1,"#text":2},"P_N":"x"}}}"##,
            r##"{"Event":{"System":{"EventID":1},"EventData":{"Image":"a","Image":"b"}}}"##,
            r##"{"Event":{"System":"not an object","EventData":{"Image":"x"}}}"##,
            r##"{"Event":{"System":"first","System":{"EventID":2}}}"##,
            r##"{"Event":{"EventData":{"Image":"x"}}}"##,
            r##"{"Event":[1,2,{"System":{}}]}"##,
            r##"{"Event":"scalar","other":1}"##,
            r##"{"Event":{"System":{"EventID":1}},"extra":[1,{"a":null}]}"##,
            r##"{"Event":{"System":{"EventID":1}},"Event":{"System":{"EventID":2}}}"##,
            r##"{"Event":{"System":{"EventID":1}},"Event":"replaced"}"##,
            r##"{"Event":{"System":{}},"event":{"dataset":"vigie.process"},"@timestamp":"2026-01-01T00:00:00Z"}"##,
            r##"{"event":{"dataset":"other"},"@timestamp":"t","Event":{"System":{"EventID":1}}}"##,
            r##"{"Image":"x","EventID":1,"n":-1.5e3,"b":true,"z":null}"##,
            r##"{}"##,
            r##"[1,"a"]"##,
            r##""just a string""##,
            r##"  {"Event" : {"System" : {"EventID" : 18446744073709551615}} }  "##,
        ];
        for text in cases {
            assert_eq!(one_pass(text), two_step(text), "{text}");
        }
        // Malformed: a name given twice in `System`. Both are kept, in the
        // order read (the two-step path keeps the last `P`, at the first's
        // place).
        let twice =
            r##"{"Event":{"System":{"P":{"#text":1},"P_N":"x","P":{"#attributes":{"N":"y"}}}}}"##;
        assert_eq!(
            one_pass(twice),
            Outcome::Windows(r#"{"P":1,"P_N":"y"}"#.into())
        );
        assert!(parse(r##"{"Event":{"System":{}}} x"##).is_err());
        assert!(parse(r##"{"Event":{"System":{"##).is_err());
    }

    #[test]
    fn same_on_sigmahq_regression_data() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/sigmahq/regression_data");
        let root = std::env::var_os("VIGIE_SHARED_DIR")
            .map(|d| std::path::PathBuf::from(d).join("data/sigmahq/regression_data"))
            .unwrap_or(root);
        let mut seen = 0;
        for entry in walkdir::WalkDir::new(&root) {
            let entry = entry.expect("regression data readable");
            if entry.path().extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            for value in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
                let line = serde_json::to_string(&value.unwrap()).unwrap();
                let outcome = one_pass(&line);
                assert!(matches!(outcome, Outcome::Windows(_)), "{line}");
                assert_eq!(outcome, two_step(&line), "{}", entry.path().display());
                seen += 1;
            }
        }
        assert!(
            seen >= 200,
            "only {seen} regression samples under {}",
            root.display()
        );
    }
}

//! Case-insensitive comparisons against values lowercased once per event.
//!
//! rsigma 0.23's case-insensitive string matchers lowercase the event's value
//! into a fresh `String` at every comparison: an event evaluated against ~40
//! candidate rules lowercases its `CommandLine` dozens of times. Its public
//! types let Vigie rewrite a compiled rule before the engine indexes it: a
//! detection item whose matchers are all case-insensitive string matchers
//! reads the field under an alias name ([`alias`]), for which
//! [`crate::adapter::SigmaView`] answers the value already lowercased (once
//! per event and field), and its plain matchers compare case-sensitively
//! against their (already lowercased) pattern.
//!
//! Exact by construction: rsigma lowercases with `str::to_lowercase`
//! (`ascii_lowercase_cow` is the same function with an ASCII fast path), so
//! `lower(v).contains(p)` is what it computed before. A case-insensitive
//! `AhoCorasickSet` only lowered the value before searching lowercased
//! needles: it searches as it is. A `CaseInsensitiveGroup` lowers the value
//! once for its children: in `Any` mode, when every child tests one value at
//! a time, it becomes the `AnyOf` of its children compared as above (its
//! regexes see the same lowercased value); otherwise it is kept, and
//! lowercasing an already lowercased value changes nothing (test
//! `lowercase_is_idempotent`). Anything else (regexes outside a group,
//! case-sensitive, numeric, CIDR, field references, `exists`, null) leaves
//! the item untouched.

use rsigma_eval::compiler::{CompiledDetection, CompiledDetectionItem};
use rsigma_eval::matcher::GroupMode;
use rsigma_eval::{CompiledMatcher, CompiledRule};

/// Marks an alias field name: a control character no Sigma rule or log
/// field name uses.
pub(crate) const SUFFIX: &str = "\u{1}lc";

/// The name under which `field`'s lowercased value is read.
pub(crate) fn alias(field: &str) -> String {
    let mut s = String::with_capacity(field.len() + SUFFIX.len());
    s.push_str(field);
    s.push_str(SUFFIX);
    s
}

/// The field an alias name stands for, if `path` is one.
pub(crate) fn aliased(path: &str) -> Option<&str> {
    path.strip_suffix(SUFFIX)
}

/// Rewrites every item of `rule` that only compares strings
/// case-insensitively (see the module doc). Returns how many were rewritten.
pub(crate) fn rewrite(rule: &mut CompiledRule) -> usize {
    rule.detections.values_mut().map(rewrite_detection).sum()
}

fn rewrite_detection(detection: &mut CompiledDetection) -> usize {
    match detection {
        CompiledDetection::AllOf(items) => items.iter_mut().map(rewrite_item).sum(),
        CompiledDetection::AnyOf(subs) | CompiledDetection::And(subs) => {
            subs.iter_mut().map(rewrite_detection).sum()
        }
        // Keywords read every value; array bodies read members, not fields;
        // conditional detections are left to rsigma as they are.
        _ => 0,
    }
}

fn rewrite_item(item: &mut CompiledDetectionItem) -> usize {
    let Some(field) = &item.field else { return 0 };
    if item.exists.is_some() || aliased(field).is_some() || !lowerable(&item.matcher) {
        return 0;
    }
    item.field = Some(alias(field));
    to_case_sensitive(&mut item.matcher);
    1
}

/// Whether the matcher only compares the value lowercased.
fn lowerable(m: &CompiledMatcher) -> bool {
    match m {
        // Lowers the value itself before every child (rsigma's invariant).
        CompiledMatcher::CaseInsensitiveGroup { .. } => true,
        CompiledMatcher::AnyOf(children) | CompiledMatcher::AllOf(children) => {
            children.iter().all(lowerable)
        }
        CompiledMatcher::Not(inner) => lowerable(inner),
        leaf => case_insensitive_string(leaf),
    }
}

/// A single string comparison (or a set of substrings) made on the value
/// lowercased.
fn case_insensitive_string(m: &CompiledMatcher) -> bool {
    match m {
        CompiledMatcher::Exact {
            case_insensitive, ..
        }
        | CompiledMatcher::Contains {
            case_insensitive, ..
        }
        | CompiledMatcher::StartsWith {
            case_insensitive, ..
        }
        | CompiledMatcher::EndsWith {
            case_insensitive, ..
        }
        | CompiledMatcher::AhoCorasickSet {
            case_insensitive, ..
        } => *case_insensitive,
        _ => false,
    }
}

/// The plain string matchers of a [`lowerable`] matcher compare as they are:
/// their pattern is stored lowercased and the value will be too. A pattern
/// that is not ASCII stays case-insensitive (lowering it again is a no-op),
/// so the rule gate (crate::gate) still gets it as a literal.
fn to_case_sensitive(m: &mut CompiledMatcher) {
    match m {
        CompiledMatcher::Exact {
            value,
            case_insensitive,
        }
        | CompiledMatcher::Contains {
            value,
            case_insensitive,
        }
        | CompiledMatcher::StartsWith {
            value,
            case_insensitive,
        }
        | CompiledMatcher::EndsWith {
            value,
            case_insensitive,
        } if value.is_ascii() => *case_insensitive = false,
        // Its needles are stored lowercased and its automaton built case
        // sensitive: rsigma only lowered the value before searching.
        CompiledMatcher::AhoCorasickSet {
            case_insensitive, ..
        } => *case_insensitive = false,
        CompiledMatcher::CaseInsensitiveGroup {
            children,
            mode: GroupMode::Any,
        } if children.iter().all(per_value) => {
            let mut children = std::mem::take(children);
            children.iter_mut().for_each(to_case_sensitive);
            *m = CompiledMatcher::AnyOf(children);
        }
        CompiledMatcher::AnyOf(children) | CompiledMatcher::AllOf(children) => {
            children.iter_mut().for_each(to_case_sensitive)
        }
        CompiledMatcher::Not(inner) => to_case_sensitive(inner),
        // Other groups lower the (already lowercased) value again: kept.
        _ => {}
    }
}

/// Whether, inside a `CaseInsensitiveGroup` in `Any` mode, the matcher
/// tests one value at a time: then "some member of a list passes some
/// child" (the group) equals "some child passes for some member" (`AnyOf`,
/// whose children each try every member). A negation or a conjunction
/// would not commute that way.
fn per_value(m: &CompiledMatcher) -> bool {
    match m {
        CompiledMatcher::Regex(_) | CompiledMatcher::RegexSetMatch { .. } => true,
        CompiledMatcher::AnyOf(children)
        | CompiledMatcher::CaseInsensitiveGroup {
            children,
            mode: GroupMode::Any,
        } => children.iter().all(per_value),
        leaf => case_insensitive_string(leaf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_is_idempotent() {
        // Every scalar value, and the context-dependent final sigma.
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let once: String = c.to_lowercase().collect();
            assert_eq!(once.to_lowercase(), once, "{c:?} (U+{:04X})", c as u32);
        }
        for s in ["ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "A\u{130}Σ x", "ǅ", "ẞ"] {
            let once = s.to_lowercase();
            assert_eq!(once.to_lowercase(), once, "{s}");
        }
    }

    /// Rules exercising every matcher shape the rewrite touches (plain
    /// modifiers, value lists long enough for rsigma's Aho-Corasick and
    /// case-insensitive groups, regexes in and out of groups, negations,
    /// `all`, non-ASCII patterns) and some it must leave alone.
    const RULES: &str = r#"
title: plain
logsource: {product: windows}
detection:
    sel: {Image|endswith: '\CMD.exe', CommandLine|contains: 'Whoami'}
    condition: sel
---
title: lists
logsource: {product: windows}
detection:
    sel:
        CommandLine|contains: ['-Enc', 'iex', 'DownloadString', 'bypass', 'hidden', 'nop', 'W', 'Ü']
        Image|startswith: ['C:\Windows\', 'c:\users\']
    filter:
        CommandLine|contains|all: ['FOO', 'bar']
    condition: sel and not filter
---
title: mixed group
logsource: {product: windows}
detection:
    sel:
        - CommandLine|endswith: ['.PS1', '.vbs']
        - CommandLine|re|i: 'inv[o]ke-'
        - Tags|contains: 'ß'
    condition: sel
---
title: negated value
logsource: {product: windows}
detection:
    sel:
        Image|endswith: '.exe'
        User|contains: 'SYSTEM'
    not_admin:
        User: 'Administrator'
    condition: sel and not not_admin
---
title: untouched
logsource: {product: windows}
detection:
    sel:
        CommandLine|re: 'Whoami'
        Ratio|gt: 1
        User|cased: 'ALICE'
    condition: sel
---
title: exact and arrays
logsource: {product: windows}
detection:
    sel:
        Tags: ['NaN', 'İstanbul', 'GROß']
    condition: sel
"#;

    fn event(fields: serde_json::Value) -> vigie_event::Event {
        let serde_json::Value::Object(fields) = fields else {
            unreachable!()
        };
        vigie_event::Event::new(
            chrono::Utc::now(),
            vigie_event::Host::named("h"),
            vigie_event::Payload::Log(vigie_event::LogRecord {
                logsource: vigie_event::LogSource::default(),
                fields,
            }),
        )
    }

    /// Each rule, rewritten or not, gives the same verdict on every event
    /// (rsigma's own evaluation of one rule over Vigie's view).
    #[test]
    fn rewritten_rules_match_exactly_like_the_originals() {
        use serde_json::json;
        let collection = rsigma_parser::parse_sigma_yaml(RULES).unwrap();
        let originals: Vec<CompiledRule> = collection
            .rules
            .iter()
            .map(|r| rsigma_eval::compile_rule(r).unwrap())
            .collect();
        let mut rewritten = originals.clone();
        let changed: usize = rewritten.iter_mut().map(rewrite).sum();
        assert!(changed >= 8, "only {changed} items rewritten");
        // The rule that only compares case-sensitively is left as it is.
        let untouched = rewritten.iter().find(|r| r.title == "untouched").unwrap();
        assert_eq!(rewrite(&mut untouched.clone()), 0);

        let events = [
            json!({"Image": "C:\\Windows\\System32\\cmd.EXE", "CommandLine": "cmd /c WHOAMI /all"}),
            json!({"Image": "C:\\Windows\\cmd.exe", "CommandLine": "whoami"}),
            json!({"Image": "C:\\Windows\\notcmd.exe", "CommandLine": "who ami"}),
            json!({"Image": "C:\\Users\\x\\p.exe", "CommandLine": "powershell -NoP -W Hidden"}),
            json!({"Image": "C:\\Users\\x\\p.exe", "CommandLine": "FOO and BAR -enc"}),
            json!({"Image": "C:\\Program Files\\p.exe", "CommandLine": "IEX (x)"}),
            json!({"Image": "C:\\Windows\\p.exe", "CommandLine": "MÜLLER"}),
            json!({"CommandLine": "run X.Ps1"}),
            json!({"CommandLine": "Invoke-Thing"}),
            json!({"CommandLine": ["a.txt", "b.VBS"]}),
            json!({"CommandLine": ["invoKE-x", 3]}),
            json!({"Tags": ["x", "STRASSE ẞ"]}),
            json!({"Tags": "İSTANBUL"}),
            json!({"Tags": "istanbul"}),
            json!({"Tags": ["gross", "GROSS", "groß"]}),
            json!({"Tags": "nan"}),
            json!({"Tags": 12}),
            json!({"Tags": null}),
            json!({"Image": "a.EXE", "User": "NT AUTHORITY\\SYSTEM"}),
            json!({"Image": "a.exe", "User": "administrator"}),
            json!({"Image": "a.exe", "User": ["ADMINISTRATOR", "system"]}),
            json!({"Image": "a.exe", "User": {"name": "SYSTEM"}}),
            json!({"CommandLine": "Whoami", "Ratio": 2, "User": "ALICE"}),
            json!({"CommandLine": "whoami", "Ratio": 2, "User": "alice"}),
            json!({}),
        ];
        let mut fired = 0;
        for fields in &events {
            let e = event(fields.clone());
            let view = crate::adapter::SigmaView::new(&e, 0);
            for (a, b) in originals.iter().zip(&rewritten) {
                let before = rsigma_eval::evaluate_rule(a, &view).is_some();
                let after = rsigma_eval::evaluate_rule(b, &view).is_some();
                assert_eq!(before, after, "rule {:?} on {fields}", a.title);
                fired += usize::from(after);
            }
        }
        // Not a vacuous comparison: some rules fire, most do not.
        assert!((8..60).contains(&fired), "{fired} matches");
    }

    #[test]
    fn alias_round_trips() {
        assert_eq!(aliased(&alias("CommandLine")), Some("CommandLine"));
        assert_eq!(aliased("CommandLine"), None);
    }
}

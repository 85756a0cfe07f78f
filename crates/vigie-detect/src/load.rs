//! Reading rule files: every YAML document becomes a parsed, compiled item or
//! a report entry that says why not. Nothing here aborts on a bad rule.

use std::path::{Path, PathBuf};

use rsigma_eval::CompiledRule;
use rsigma_parser::{CorrelationRule, FilterRule, SigmaRule, parse_sigma_yaml};

use crate::report::{RuleEntry, RuleKind, RuleStatus};

/// One rule source: a file's text, or an in-memory document.
pub(crate) struct Source {
    pub name: String,
    pub text: Result<String, String>,
}

/// A document that parsed (and, for detections, compiled).
pub(crate) enum Item {
    Detection(Box<SigmaRule>, Box<CompiledRule>),
    Correlation(Box<CorrelationRule>),
    Filter(Box<FilterRule>),
}

pub(crate) struct Parsed {
    pub entry: RuleEntry,
    pub item: Option<Item>,
}

/// Every `.yml` / `.yaml` file below `dirs` (recursively, sorted, symlinks
/// followed), or read errors as report entries.
pub(crate) fn find_files(dirs: &[impl AsRef<Path>]) -> (Vec<PathBuf>, Vec<RuleEntry>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for dir in dirs {
        let dir = dir.as_ref();
        let walker = walkdir::WalkDir::new(dir)
            .follow_links(true)
            .sort_by_file_name();
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_file() && is_yaml(e.path()) => {
                    files.push(e.into_path());
                }
                Ok(_) => {}
                Err(err) => problems.push(RuleEntry {
                    path: err.path().unwrap_or(dir).to_string_lossy().into_owned(),
                    line: None,
                    kind: RuleKind::Unknown,
                    id: None,
                    title: None,
                    status: RuleStatus::Error,
                    reason: Some(format!("cannot read: {err}")),
                    unreadable: true,
                }),
            }
        }
    }
    (files, problems)
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
}

pub(crate) fn read_source(path: &Path) -> Source {
    Source {
        name: path.to_string_lossy().into_owned(),
        text: std::fs::read(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))),
    }
}

/// A YAML document of a file and the 1-based line it starts on.
struct Chunk<'a> {
    line: usize,
    text: &'a str,
}

/// Splits a YAML stream on its document markers (`---` / `...` at column
/// 0), so that each document is parsed alone and a bad one costs only itself.
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_start = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "...";
        if (is_start || is_end) && offset > start {
            chunks.push(Chunk {
                line: start_line,
                text: &text[start..offset],
            });
            start = offset;
            start_line = i + 1;
        }
        offset += line.len();
        if is_end {
            // The end marker belongs to nothing.
            start = offset;
            start_line = i + 2;
        }
    }
    if offset > start {
        chunks.push(Chunk {
            line: start_line,
            text: &text[start..],
        });
    }
    chunks.retain(|c| has_content(c.text));
    chunks
}

/// Whether a chunk holds more than markers, comments and blank lines.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || t.starts_with('%'))
    })
}

/// A legacy collection (`action: global/reset/repeat`) must be parsed whole.
fn uses_actions(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("action:"))
}

/// Parses and compiles every document of a source; a panic in the parser is
/// reported as an error of that file instead of losing its neighbours.
pub(crate) fn parse_source(source: &Source) -> Vec<Parsed> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_source_inner(source))) {
        Ok(parsed) => parsed,
        Err(_) => vec![Parsed {
            entry: entry(&source.name, None, RuleKind::Unknown, RuleStatus::Error)
                .with_reason("the rule parser crashed on this file".into()),
            item: None,
        }],
    }
}

fn parse_source_inner(source: &Source) -> Vec<Parsed> {
    let text = match &source.text {
        Ok(t) => t,
        Err(reason) => {
            let mut e = entry(&source.name, None, RuleKind::Unknown, RuleStatus::Error)
                .with_reason(reason.clone());
            e.unreadable = true;
            return vec![Parsed {
                entry: e,
                item: None,
            }];
        }
    };
    if uses_actions(text) {
        return parse_chunk(&source.name, text, None);
    }
    let chunks = split_documents(text);
    if chunks.is_empty() {
        return vec![Parsed {
            entry: entry(&source.name, None, RuleKind::Unknown, RuleStatus::Error)
                .with_reason("no YAML document in the file".into()),
            item: None,
        }];
    }
    chunks
        .iter()
        .flat_map(|c| parse_chunk(&source.name, c.text, Some(c.line)))
        .collect()
}

fn entry(path: &str, line: Option<usize>, kind: RuleKind, status: RuleStatus) -> RuleEntry {
    RuleEntry {
        path: path.to_string(),
        line,
        kind,
        id: None,
        title: None,
        status,
        reason: None,
        unreadable: false,
    }
}

impl RuleEntry {
    fn with_reason(mut self, reason: String) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// Rewrites "line N" in a parser message, relative to the chunk, into a line
/// of the file; returns that line too.
fn relocate(message: &str, first_line: usize) -> (String, Option<usize>) {
    let Some(pos) = message.find("line ") else {
        return (message.to_string(), None);
    };
    let digits: String = message[pos + 5..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let Ok(n) = digits.parse::<usize>() else {
        return (message.to_string(), None);
    };
    let line = n + first_line - 1;
    let fixed = format!(
        "{}line {line}{}",
        &message[..pos],
        &message[pos + 5 + digits.len()..]
    );
    (fixed, Some(line))
}

/// Title and id of a document that did not parse as a rule, if its YAML can
/// still be read.
fn peek_identity(text: &str) -> (Option<String>, Option<String>) {
    let Ok(value) = yaml_serde::from_str::<yaml_serde::Value>(text) else {
        return (None, None);
    };
    let get = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
    (get("id"), get("title"))
}

fn parse_chunk(path: &str, text: &str, line: Option<usize>) -> Vec<Parsed> {
    let first = line.unwrap_or(1);
    let collection = match parse_sigma_yaml(text) {
        Ok(c) => c,
        Err(e) => {
            let (reason, at) = relocate(&e.to_string(), first);
            let (id, title) = peek_identity(text);
            return vec![Parsed {
                entry: RuleEntry {
                    id,
                    title,
                    line: at.or(line),
                    ..entry(path, None, RuleKind::Unknown, RuleStatus::Error)
                }
                .with_reason(reason),
                item: None,
            }];
        }
    };
    let messages: Vec<String> = collection
        .errors
        .iter()
        .map(|m| relocate(m, first).0)
        .collect();
    let produced =
        collection.rules.len() + collection.correlations.len() + collection.filters.len();
    if produced == 0 {
        let (id, title) = peek_identity(text);
        let at = collection
            .errors
            .iter()
            .find_map(|m| relocate(m, first).1)
            .or(line);
        let reason = if messages.is_empty() {
            "not a Sigma rule (no detection, correlation or filter section)".to_string()
        } else {
            messages.join("; ")
        };
        return vec![Parsed {
            entry: RuleEntry {
                id,
                title,
                line: at,
                ..entry(path, None, RuleKind::Unknown, RuleStatus::Error)
            }
            .with_reason(reason),
            item: None,
        }];
    }
    // Messages next to a produced document are warnings.
    let warning = (!messages.is_empty()).then(|| format!("warning: {}", messages.join("; ")));
    let mut out = Vec::with_capacity(produced);
    for mut rule in collection.rules {
        keyword_all_contains(&mut rule);
        let mut e = entry(path, line, RuleKind::Detection, RuleStatus::Loaded);
        e.id = rule.id.clone();
        e.title = Some(rule.title.clone());
        match rsigma_eval::compile_rule(&rule) {
            Ok(compiled) => {
                e.reason = warning.clone();
                out.push(Parsed {
                    entry: e,
                    item: Some(Item::Detection(Box::new(rule), Box::new(compiled))),
                });
            }
            Err(err) => {
                e.status = classify(&err);
                e.reason = Some(err.to_string());
                out.push(Parsed {
                    entry: e,
                    item: None,
                });
            }
        }
    }
    for corr in collection.correlations {
        let mut e = entry(path, line, RuleKind::Correlation, RuleStatus::Loaded);
        e.id = corr.id.clone();
        e.title = Some(corr.title.clone());
        e.reason = warning.clone();
        out.push(Parsed {
            entry: e,
            item: Some(Item::Correlation(Box::new(corr))),
        });
    }
    for filter in collection.filters {
        let mut e = entry(path, line, RuleKind::Filter, RuleStatus::Loaded);
        e.id = filter.id.clone();
        e.title = Some(filter.title.clone());
        e.reason = warning.clone();
        out.push(Parsed {
            entry: e,
            item: Some(Item::Filter(Box::new(filter))),
        });
    }
    out
}

/// Keyword lists match anywhere in a value (rsigma compiles them as
/// "contains"), but rsigma 0.23 compiles the `'|all': [..]` keyword form as
/// exact matches, so SigmaHQ's rules that use it never fire. Give those
/// field-less items the `contains` that plain keywords have.
fn keyword_all_contains(rule: &mut SigmaRule) {
    use rsigma_parser::{Detection, Modifier};
    fn walk(d: &mut Detection) {
        match d {
            Detection::AllOf(items) => {
                for item in items {
                    let m = &mut item.field.modifiers;
                    let positional = [
                        Modifier::Contains,
                        Modifier::StartsWith,
                        Modifier::EndsWith,
                        Modifier::Re,
                        Modifier::Cidr,
                        Modifier::Base64,
                        Modifier::Base64Offset,
                        Modifier::Exists,
                        Modifier::Expand,
                        Modifier::FieldRef,
                    ];
                    if item.field.name.is_none()
                        && m.contains(&Modifier::All)
                        && !m.iter().any(|x| positional.contains(x))
                    {
                        m.push(Modifier::Contains);
                    }
                }
            }
            Detection::AnyOf(ds) | Detection::And(ds) => ds.iter_mut().for_each(walk),
            _ => {}
        }
    }
    rule.detection.named.values_mut().for_each(walk);
}

/// A compile error is "unsupported" when the rule is valid Sigma that the
/// engine cannot run, and an "error" when the rule itself is wrong.
fn classify(err: &rsigma_eval::EvalError) -> RuleStatus {
    use rsigma_eval::EvalError as E;
    match err {
        E::InvalidModifiers(_) | E::Ir(_) | E::CorrelationError(_) => RuleStatus::Unsupported,
        _ => {
            let text = err.to_string().to_ascii_lowercase();
            if text.contains("unsupported") || text.contains("not supported") {
                RuleStatus::Unsupported
            } else {
                RuleStatus::Error
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_lines() {
        let text = "# c\ntitle: a\n---\ntitle: b\n...\n---\n\n# only comment\n---\ntitle: c\n";
        let chunks = split_documents(text);
        let lines: Vec<usize> = chunks.iter().map(|c| c.line).collect();
        assert_eq!(lines, vec![1, 3, 9]);
        assert!(chunks[1].text.contains("title: b"));
        assert!(chunks[2].text.contains("title: c"));
    }

    #[test]
    fn relocates_line_numbers() {
        let (m, l) = relocate("bad thing at line 3 column 4", 10);
        assert_eq!(m, "bad thing at line 12 column 4");
        assert_eq!(l, Some(12));
        assert_eq!(relocate("no position", 10), ("no position".into(), None));
    }
}

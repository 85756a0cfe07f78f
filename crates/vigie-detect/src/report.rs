//! What loading rules did: one entry per rule document, and totals.

use serde::Serialize;

/// How one rule document fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    /// Compiled and active.
    Loaded,
    /// A valid Sigma document using something the engine does not support.
    Unsupported,
    /// Not a valid rule: bad YAML, unknown modifier, bad condition, missing
    /// referenced rule, unreadable file...
    Error,
}

impl RuleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleStatus::Loaded => "loaded",
            RuleStatus::Unsupported => "unsupported",
            RuleStatus::Error => "error",
        }
    }
}

/// What kind of Sigma document it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    Detection,
    Correlation,
    Filter,
    /// The document could not be parsed far enough to tell.
    Unknown,
}

/// One rule document.
#[derive(Debug, Clone, Serialize)]
pub struct RuleEntry {
    /// The file (or the name given to an in-memory document).
    pub path: String,
    /// 1-based line where the document starts in the file (or where the
    /// error is, when the parser says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub kind: RuleKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub status: RuleStatus,
    /// Why it is not loaded (or a warning for a loaded rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The file (or folder) could not be read at all.
    #[serde(skip)]
    pub unreadable: bool,
}

/// Counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Rule files read (YAML files found below the folders, plus in-memory
    /// documents).
    pub files: usize,
    /// Rule documents found.
    pub rules: usize,
    pub loaded: usize,
    pub unsupported: usize,
    pub errors: usize,
    pub correlations: usize,
    pub filters: usize,
}

/// The outcome of loading rules: every document accounted for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub rules: Vec<RuleEntry>,
    pub totals: Totals,
    /// Seconds spent reading, parsing and compiling.
    pub seconds: f64,
}

impl LoadReport {
    /// Rule documents found.
    pub fn total(&self) -> usize {
        self.totals.rules
    }

    /// Rule documents loaded (detections, correlations and filters).
    pub fn loaded(&self) -> usize {
        self.totals.loaded
    }

    pub fn unsupported(&self) -> usize {
        self.totals.unsupported
    }

    pub fn errors(&self) -> usize {
        self.totals.errors
    }

    /// The entries that did not load.
    pub fn problems(&self) -> impl Iterator<Item = &RuleEntry> {
        self.rules.iter().filter(|r| r.status != RuleStatus::Loaded)
    }

    /// No rule file could be read at all (none found, or none readable).
    pub fn nothing_read(&self) -> bool {
        self.rules.iter().all(|r| r.unreadable)
    }

    pub(crate) fn push(&mut self, entry: RuleEntry) {
        self.rules.push(entry);
    }

    pub(crate) fn finish(&mut self) {
        let mut t = Totals {
            files: self.totals.files,
            ..Totals::default()
        };
        for r in &self.rules {
            t.rules += 1;
            match r.status {
                RuleStatus::Loaded => t.loaded += 1,
                RuleStatus::Unsupported => t.unsupported += 1,
                RuleStatus::Error => t.errors += 1,
            }
            if r.status == RuleStatus::Loaded {
                match r.kind {
                    RuleKind::Correlation => t.correlations += 1,
                    RuleKind::Filter => t.filters += 1,
                    _ => {}
                }
            }
        }
        self.totals = t;
    }
}

impl std::fmt::Display for RuleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.status.as_str())?;
        if let Some(title) = &self.title {
            write!(f, ": {title:?}")?;
        }
        if let Some(id) = &self.id {
            write!(f, " ({id})")?;
        }
        if let Some(reason) = &self.reason {
            // One line per rule: parser messages can span several.
            let flat: Vec<&str> = reason.split_whitespace().collect();
            write!(f, ": {}", flat.join(" "))?;
        }
        Ok(())
    }
}

/// The report as text for people: the rules that did not load (all rules
/// with `verbose`), then the totals.
pub fn render_report(report: &LoadReport, verbose: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for r in &report.rules {
        if verbose || r.status != RuleStatus::Loaded {
            let _ = writeln!(out, "{r}");
        }
    }
    let t = &report.totals;
    let _ = writeln!(
        out,
        "{} rule(s) in {} file(s): {} loaded ({} correlation(s), {} filter(s)), {} unsupported, {} error(s); {:.2} s",
        t.rules,
        t.files,
        t.loaded,
        t.correlations,
        t.filters,
        t.unsupported,
        t.errors,
        report.seconds
    );
    out
}

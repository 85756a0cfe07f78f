use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, Host};

/// Sigma's levels, ordered: `Level::High > Level::Medium`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Informational,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    /// ECS `event.severity`: a number that sorts like the level.
    pub fn severity(self) -> u8 {
        match self {
            Level::Informational => 10,
            Level::Low => 30,
            Level::Medium => 50,
            Level::High => 70,
            Level::Critical => 90,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?} (expected informational, low, medium, high or critical)")]
pub struct ParseLevelError(pub String);

impl std::str::FromStr for Level {
    type Err = ParseLevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "informational" | "info" => Ok(Level::Informational),
            "low" => Ok(Level::Low),
            "medium" => Ok(Level::Medium),
            "high" => Ok(Level::High),
            "critical" => Ok(Level::Critical),
            _ => Err(ParseLevelError(s.to_string())),
        }
    }
}

/// The rule an alert came from, as ECS `rule.*` (plus Sigma's level, status,
/// tags and false positives, which ECS has no field for).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleRef {
    pub id: String,
    /// The rule's title.
    pub name: String,
    pub level: Option<Level>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// MITRE ATT&CK technique ids (`T1059.004`) parsed from the tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attack: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub falsepositives: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// "sigma", "sigma-correlation", "ioc", "behaviour".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ruleset: String,
}

/// A detection: a rule matched one event, or a correlation matched several.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub host: Host,
    pub rule: RuleRef,
    /// The matching event first; for a correlation, every contributing event
    /// that the engine kept.
    pub events: Vec<Event>,
}

impl Alert {
    pub fn level(&self) -> Level {
        self.rule.level.unwrap_or(Level::Medium)
    }

    /// The event that triggered the alert.
    pub fn event(&self) -> Option<&Event> {
        self.events.first()
    }
}

//! The response policy: which alerts lead to which actions on which hosts.
//!
//! In the agent's TOML config (the manager distributes one per host group):
//!
//! ```toml
//! mode = "respond"                 # or "alert-only"
//! protected_hosts = ["dc01"]       # never isolated automatically...
//! isolate_protected = []           # ...unless named here too
//! protected_processes = ["sshd"]   # never killed (names or paths)
//!
//! [isolation]                      # what stays reachable when isolated
//! resolvers = ["10.0.0.53"]        # empty: the nameservers of /etc/resolv.conf
//! manager = "vigie.example.org:8443"
//! allow = ["10.0.0.5:22"]
//!
//! [[rules]]
//! min_level = "critical"
//! actions = ["kill", "isolate"]
//!
//! [[rules]]
//! tags = ["attack.impact"]         # any of these tags (and the level, if given)
//! actions = ["kill", "quarantine"]
//! ```
//!
//! Defaults (no `[[rules]]`): critical → kill + isolate, high → kill, the
//! rest alert only. Why: a small public body has nobody watching at 3 a.m.,
//! so the rare, specific critical rules (ransomware, credential dumping)
//! must act alone; high-level rules fire more often with false positives,
//! and killing one process is a narrow act, while cutting a town hall's
//! workstation off the network in office hours on a false positive costs a
//! day's work and the admin's trust.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vigie_event::{Alert, Level, Payload};

use crate::isolation::IsolationSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Detect and report, never act.
    AlertOnly,
    /// Act as the rules say.
    #[default]
    Respond,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Kill,
    Quarantine,
    Isolate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The alert's level must be at least this (any level if absent).
    #[serde(default)]
    pub min_level: Option<Level>,
    /// The alert must carry one of these tags (any alert if empty).
    #[serde(default)]
    pub tags: Vec<String>,
    pub actions: Vec<ActionKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub mode: Mode,
    pub rules: Vec<Rule>,
    pub protected_hosts: Vec<String>,
    pub isolate_protected: Vec<String>,
    pub protected_processes: Vec<String>,
    pub isolation: IsolationSpec,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Respond,
            rules: vec![
                Rule {
                    min_level: Some(Level::Critical),
                    tags: vec![],
                    actions: vec![ActionKind::Kill, ActionKind::Isolate],
                },
                Rule {
                    min_level: Some(Level::High),
                    tags: vec![],
                    actions: vec![ActionKind::Kill],
                },
            ],
            protected_hosts: vec![],
            isolate_protected: vec![],
            protected_processes: vec![],
            isolation: IsolationSpec::default(),
        }
    }
}

impl Policy {
    /// Parse a policy; missing keys take the defaults above.
    pub fn from_toml(text: &str) -> Result<Self> {
        let p: Policy = toml::from_str(text).context("invalid response policy")?;
        p.isolation.validate()?;
        Ok(p)
    }

    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in {}", path.display()))
    }
}

/// One action to take, with its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `start_ticks` from the event's `entity_id`, so a reused pid is never
    /// killed.
    Kill {
        pid: u32,
        start_ticks: Option<u64>,
    },
    Quarantine {
        path: String,
    },
    Isolate,
}

/// What the policy says to do about `alert` on `host`, in the order to do it
/// (kill first: stop the damage; isolate last).
pub fn decide(policy: &Policy, alert: &Alert, host: &str) -> Vec<Action> {
    if policy.mode == Mode::AlertOnly {
        return Vec::new();
    }
    // An alert about another host is never acted on here.
    if !alert.host.name.is_empty() && !alert.host.name.eq_ignore_ascii_case(host) {
        return Vec::new();
    }
    let level = alert.level();
    let mut kinds: Vec<ActionKind> = policy
        .rules
        .iter()
        .filter(|r| r.min_level.is_none_or(|m| level >= m))
        .filter(|r| {
            r.tags.is_empty()
                || r.tags
                    .iter()
                    .any(|t| alert.rule.tags.iter().any(|a| a.eq_ignore_ascii_case(t)))
        })
        .flat_map(|r| r.actions.iter().copied())
        .collect();
    kinds.sort();
    kinds.dedup();

    let named = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(host));
    let ev = alert.event();
    let mut out = Vec::new();
    for k in kinds {
        match k {
            ActionKind::Kill => {
                if let Some(p) = ev.and_then(|e| e.process())
                    && p.pid > 1
                {
                    let start_ticks = crate::kill::parse_entity_id(&p.entity_id)
                        .filter(|(pid, _)| *pid == p.pid)
                        .map(|(_, t)| t);
                    out.push(Action::Kill {
                        pid: p.pid,
                        start_ticks,
                    });
                }
            }
            ActionKind::Quarantine => {
                let path = ev.and_then(|e| match &e.payload {
                    Payload::File(f) => Some(f.file.path.clone()),
                    _ => e.process().map(|p| p.executable.clone()),
                });
                if let Some(path) = path.filter(|p| p.starts_with('/')) {
                    out.push(Action::Quarantine { path });
                }
            }
            ActionKind::Isolate => {
                if !named(&policy.protected_hosts) || named(&policy.isolate_protected) {
                    out.push(Action::Isolate);
                } else {
                    tracing::info!(
                        "{host} is a protected host: not isolated automatically (alert {})",
                        alert.id
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_event::{Event, Host, Process, ProcessAction, ProcessEvent, RuleRef};

    fn alert(level: Level, tags: &[&str], host: &str) -> Alert {
        let ev = Event::new(
            chrono::Utc::now(),
            Host::named(host),
            Payload::Process(ProcessEvent {
                action: ProcessAction::Exec,
                process: Process {
                    pid: 4242,
                    entity_id: "4242-777".into(),
                    executable: "/tmp/evil".into(),
                    ..Process::default()
                },
                target: None,
                error: None,
            }),
        );
        Alert {
            id: uuid::Uuid::now_v7(),
            time: chrono::Utc::now(),
            host: Host::named(host),
            rule: RuleRef {
                id: "r1".into(),
                name: "test".into(),
                level: Some(level),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..RuleRef::default()
            },
            events: vec![ev],
        }
    }

    #[test]
    fn defaults() {
        let p = Policy::default();
        assert_eq!(
            decide(&p, &alert(Level::Critical, &[], "pc1"), "pc1"),
            vec![
                Action::Kill {
                    pid: 4242,
                    start_ticks: Some(777)
                },
                Action::Isolate
            ]
        );
        assert_eq!(
            decide(&p, &alert(Level::High, &[], "pc1"), "pc1"),
            vec![Action::Kill {
                pid: 4242,
                start_ticks: Some(777)
            }]
        );
        assert!(decide(&p, &alert(Level::Medium, &[], "pc1"), "pc1").is_empty());
        // Not this host's alert.
        assert!(decide(&p, &alert(Level::Critical, &[], "pc2"), "pc1").is_empty());
    }

    #[test]
    fn toml_policy_with_tags_protected_hosts_and_alert_only() {
        let p = Policy::from_toml(
            r#"
            protected_hosts = ["DC01", "dc02"]
            isolate_protected = ["dc02"]
            [isolation]
            resolvers = ["10.0.0.53"]
            allow = ["10.0.0.5:22"]
            [[rules]]
            tags = ["attack.impact"]
            actions = ["quarantine", "isolate"]
            "#,
        )
        .unwrap();
        let a = alert(Level::Low, &["attack.impact"], "dc01");
        assert_eq!(
            decide(&p, &a, "dc01"),
            vec![Action::Quarantine {
                path: "/tmp/evil".into()
            }],
            "protected host isolated"
        );
        let a = alert(Level::Low, &["attack.impact"], "dc02");
        assert!(decide(&p, &a, "dc02").contains(&Action::Isolate));
        let a = alert(Level::Critical, &["attack.execution"], "pc1");
        assert!(decide(&p, &a, "pc1").is_empty(), "rules replace defaults");

        let p = Policy::from_toml("mode = \"alert-only\"").unwrap();
        assert!(decide(&p, &alert(Level::Critical, &[], "pc1"), "pc1").is_empty());
        assert!(Policy::from_toml("mode = \"nuke\"").is_err());
        assert!(Policy::from_toml("[isolation]\nallow = [\"nonsense\"]").is_err());
    }
}

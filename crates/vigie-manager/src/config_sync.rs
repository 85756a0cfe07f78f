//! Rules and response policies, from the console and the API to the agents.
//!
//! The desired state is per organisation and host group: the rule bundle is
//! the organisation's enabled uploaded Sigma rules; the policy is the
//! group's choice on the Policies page (alert only, kill, isolate), when one
//! was made (otherwise the agent keeps the `[response]` of its own
//! configuration). [`sync`] runs in the manager's housekeeping: an agent
//! connected here whose last *sent* versions differ from the desired ones,
//! and with no update in flight, gets a `rules_update` or `policy_update`
//! command carrying the content. The agent compiles or validates before it
//! applies, and answers with its verified outcome like any command, so the
//! command list shows which hosts run which version and why one refused.
//!
//! A failed update is not resent until the desired state changes again
//! (resending the same broken bundle every few seconds helps nobody).

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use vigie_respond::policy::{ActionKind, Mode, Policy, Rule};

use crate::Core;
use crate::store::Store;

/// The choices of the Policies page.
pub const POLICY_CHOICES: &[&str] = &["alert_only", "kill", "isolate"];

/// Version of a content: its SHA-256, short.
fn version(content: &[u8]) -> String {
    hex::encode(&Sha256::digest(content)[..12])
}

/// What the empty bundle hashes to: an agent that never got rules has it.
fn empty_rules() -> String {
    version(b"")
}

/// The agent policy for a Policies-page choice.
pub fn policy_for(choice: &str) -> Option<Policy> {
    let rule = |level, actions: &[ActionKind]| Rule {
        min_level: Some(level),
        tags: vec![],
        actions: actions.to_vec(),
    };
    use vigie_event::Level::{Critical, High};
    Some(match choice {
        "alert_only" => Policy {
            mode: Mode::AlertOnly,
            ..Policy::default()
        },
        "kill" => Policy {
            rules: vec![rule(High, &[ActionKind::Kill])],
            ..Policy::default()
        },
        // Vigie's default: critical → kill and isolate, high → kill.
        "isolate" => Policy {
            rules: vec![
                rule(Critical, &[ActionKind::Kill, ActionKind::Isolate]),
                rule(High, &[ActionKind::Kill]),
            ],
            ..Policy::default()
        },
        _ => return None,
    })
}

/// A rule document as the console and the API check it before keeping it:
/// the first rule's title, or every problem with its line.
pub fn validate_rule_source(source: &str) -> Result<String, Vec<(Option<usize>, String)>> {
    let (_, report) = vigie_detect::Engine::from_yaml(&[("uploaded.yml", source)]);
    let mut errors: Vec<(Option<usize>, String)> = report
        .rules
        .iter()
        .filter(|r| r.status != vigie_detect::RuleStatus::Loaded)
        .map(|r| {
            (
                r.line,
                r.reason
                    .clone()
                    .unwrap_or_else(|| r.status.as_str().to_string()),
            )
        })
        .collect();
    if errors.is_empty() && report.totals.loaded == 0 {
        errors.push((None, "no rule found in this document".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(report
        .rules
        .iter()
        .filter_map(|r| r.title.clone())
        .next()
        .unwrap_or_else(|| "untitled".into()))
}

/// Whether a rule with this `groups` value (comma-separated names, empty
/// for all) goes to `group`.
pub fn rule_applies(groups: &str, group: &str) -> bool {
    groups.trim().is_empty() || groups.split(',').any(|g| g.trim() == group)
}

/// The desired configuration of one (organisation, group).
pub struct Desired {
    pub bundle: String,
    pub rules_version: String,
    /// None: the group has no policy set on the console.
    pub policy: Option<String>,
    pub policy_version: Option<String>,
}

pub async fn desired(store: &Store, org: &str, group: &str) -> Result<Desired> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT source, groups FROM console_rules WHERE org_id = $1 AND enabled = 1 ORDER BY uploaded_at, id",
    )
    .bind(org)
    .fetch_all(&store.pool)
    .await?;
    // A rule assigned to groups goes to those groups only.
    let sources: Vec<String> = rows
        .into_iter()
        .filter(|(_, groups)| rule_applies(groups, group))
        .map(|(source, _)| source)
        .collect();
    // Each upload is one or more YAML documents: join them as documents.
    let bundle = sources
        .iter()
        .map(|s| s.trim_matches(|c| c == '\n' || c == '-' || c == ' '))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n---\n");
    let choice: Option<String> =
        sqlx::query_scalar("SELECT value FROM console_settings WHERE org_id = $1 AND name = $2")
            .bind(org)
            .bind(format!("policy:{group}"))
            .fetch_optional(&store.pool)
            .await?;
    let policy = choice
        .as_deref()
        .and_then(policy_for)
        .map(|p| serde_json::to_string(&p))
        .transpose()?;
    Ok(Desired {
        rules_version: version(bundle.as_bytes()),
        policy_version: policy.as_deref().map(|p| version(p.as_bytes())),
        bundle,
        policy,
    })
}

/// Send what the agents connected here are missing.
pub async fn sync(core: &Core, connected: &[String]) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT id, org_id, group_name, rules_sent, policy_sent FROM hosts WHERE revoked_at IS NULL",
    )
    .fetch_all(&core.store.pool)
    .await?;
    // Thousands of hosts every few seconds: a set, not a scan per host.
    let connected: HashSet<&str> = connected.iter().map(String::as_str).collect();
    let mut wanted: HashMap<(String, String), Desired> = HashMap::new();
    let mut sent = 0;
    for r in rows {
        let host: String = r.get(0);
        if !connected.contains(host.as_str()) {
            continue;
        }
        let (org, group): (String, String) = (r.get(1), r.get(2));
        let rules_sent: Option<String> = r.get(3);
        let policy_sent: Option<String> = r.get(4);
        let key = (org.clone(), group.clone());
        if !wanted.contains_key(&key) {
            let d = desired(&core.store, &org, &group).await?;
            wanted.insert(key.clone(), d);
        }
        let d = &wanted[&key];
        if rules_sent.unwrap_or_else(empty_rules) != d.rules_version
            && !in_flight(&core.store, &host, "rules_update").await?
        {
            send(
                core,
                &org,
                &host,
                "rules_update",
                &d.rules_version,
                &d.bundle,
            )
            .await?;
            sent += 1;
        }
        if let (Some(p), Some(v)) = (&d.policy, &d.policy_version)
            && policy_sent.as_ref() != Some(v)
            && !in_flight(&core.store, &host, "policy_update").await?
        {
            send(core, &org, &host, "policy_update", v, p).await?;
            sent += 1;
        }
    }
    Ok(sent)
}

async fn in_flight(store: &Store, host: &str, kind: &str) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM commands WHERE host_id = $1 AND kind = $2 AND status IN ('pending', 'sent')",
    )
    .bind(host)
    .bind(kind)
    .fetch_one(&store.pool)
    .await?;
    Ok(n > 0)
}

async fn send(
    core: &Core,
    org: &str,
    host: &str,
    kind: &str,
    version: &str,
    content: &str,
) -> Result<()> {
    let column = if kind == "rules_update" {
        "rules_sent"
    } else {
        "policy_sent"
    };
    // Recorded first: a manager that stops right after sending does not
    // send the same version twice; the command's outcome tells the rest.
    sqlx::query(&format!("UPDATE hosts SET {column} = $1 WHERE id = $2"))
        .bind(version)
        .bind(host)
        .execute(&core.store.pool)
        .await?;
    core.request_command_with_blob(
        org,
        host,
        kind,
        "manager",
        "configuration changed on the console or the API",
        json!({"version": version}),
        Some(content),
    )
    .await?;
    tracing::info!(host_id = %host, %kind, %version, "configuration sent");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_map_to_policies() {
        for c in POLICY_CHOICES {
            let p = policy_for(c).unwrap();
            p.isolation.validate().unwrap();
        }
        assert_eq!(policy_for("alert_only").unwrap().mode, Mode::AlertOnly);
        let kill = policy_for("kill").unwrap();
        assert!(
            kill.rules
                .iter()
                .all(|r| !r.actions.contains(&ActionKind::Isolate))
        );
        assert!(policy_for("format").is_none());
    }

    #[test]
    fn rules_go_to_their_groups() {
        assert!(rule_applies("", "servers"));
        assert!(rule_applies("servers, desktops", "desktops"));
        assert!(!rule_applies("servers", "desktops"));
        assert!(!rule_applies("servers", "serv"));
    }

    #[test]
    fn rule_validation_reports_lines() {
        let ok = "title: t\nlogsource:\n  category: process_creation\n  product: linux\ndetection:\n  sel:\n    Image: /x\n  condition: sel\n";
        assert_eq!(validate_rule_source(ok).unwrap(), "t");
        let bad = "title: t\nlogsource:\n  product: linux\ndetection:\n  sel:\n    Image|nosuchmodifier: /x\n  condition: sel\n";
        let errors = validate_rule_source(bad).unwrap_err();
        assert!(!errors.is_empty());
        assert!(validate_rule_source("just: text\n").is_err());
    }
}

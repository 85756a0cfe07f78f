//! The manager's commands, carried out by vigie-respond (isolate, release,
//! kill, quarantine, restore) or by the agent's own state (rules, policy).
//! Each answer is the verified outcome of the action's event, never "sent".

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use vigie_event::{Event, Outcome, Payload};
use vigie_respond::policy::Policy;
use vigie_respond::{Cause, Responder};
use vigie_uplink::{Action, Command, CommandHandler, CommandOutcome};

use crate::report::Reporter;

/// File names in the state directory for what the manager distributes.
pub const POLICY_FILE: &str = "policy.json";
pub const RULES_DIR: &str = "rules";
pub const RULES_FILE: &str = "manager.yml";

#[derive(Clone)]
pub(crate) struct Commands {
    pub responder: Responder,
    pub policy: Arc<RwLock<Policy>>,
    pub reporter: Arc<Reporter>,
    /// The manager as `host:port`: added to the isolation so the
    /// self-check proves it is still reachable.
    pub manager: Option<String>,
    /// Set to make the detection loop reload its rules.
    pub reload: Arc<AtomicBool>,
}

impl CommandHandler for Commands {
    async fn handle(&self, command: Command) -> CommandOutcome {
        let this = self.clone();
        // nft, ss, kill and file moves block: keep them off the runtime.
        match tokio::task::spawn_blocking(move || this.execute(command)).await {
            Ok(o) => o,
            Err(e) => CommandOutcome::failed(format!("the command's task failed: {e}")),
        }
    }
}

/// The policy an isolation of this agent uses: the configured one, with
/// the manager added so the self-check verifies it stays reachable. (Empty
/// resolvers are filled in by vigie-respond when the policy isolates, and
/// by [`Commands::execute`] for the manager's isolate.)
pub(crate) fn effective_policy(policy: &RwLock<Policy>, manager: Option<&str>) -> Policy {
    let mut p = policy.read().map(|p| p.clone()).unwrap_or_default();
    if p.isolation.manager.is_none() {
        p.isolation.manager = manager.map(str::to_string);
    }
    p
}

fn outcome_of(res: Result<Event>) -> (CommandOutcome, Option<Event>) {
    match res {
        Ok(ev) => {
            let summary = vigie_respond::state::summary(&ev);
            let ok = matches!(&ev.payload, Payload::Response(r) if r.outcome == Outcome::Success);
            let o = if ok {
                CommandOutcome::ok(summary)
            } else {
                CommandOutcome::failed(summary)
            };
            (o, Some(ev))
        }
        Err(e) => (CommandOutcome::failed(format!("{e:#}")), None),
    }
}

impl Commands {
    pub(crate) fn execute(&self, c: Command) -> CommandOutcome {
        let cause = Cause {
            actor: format!("manager:{}", c.actor),
            alert_id: c.args.get("alert_id").cloned(),
            reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
        };
        tracing::info!(command = %c.id, actor = %c.actor, "manager command {:?}", kind(&c.action));
        let (outcome, event) = match &c.action {
            Action::Isolate => {
                let mut spec = effective_policy(&self.policy, self.manager.as_deref()).isolation;
                if spec.resolvers.is_empty() {
                    // Keep the host's resolvers so the manager's name still
                    // resolves (as vigie-respond does for the policy's isolate).
                    spec.resolvers = vigie_respond::isolation::system_resolvers();
                }
                // Extra destinations for this isolation: "allow" is a
                // comma-separated list (IP, CIDR, IP:port, host:port).
                if let Some(extra) = c.args.get("allow") {
                    spec.allow.extend(
                        extra
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string),
                    );
                }
                outcome_of(self.responder.isolate(&spec, &cause))
            }
            Action::Release => outcome_of(self.responder.release_authorised(&cause)),
            Action::Kill { pid } => {
                let protected = self
                    .policy
                    .read()
                    .map(|p| p.protected_processes.clone())
                    .unwrap_or_default();
                match i32::try_from(*pid) {
                    Ok(pid) => outcome_of(self.responder.kill(pid, &protected, &cause)),
                    Err(_) => (
                        CommandOutcome::failed(format!("pid {pid} out of range")),
                        None,
                    ),
                }
            }
            Action::Quarantine { path } => outcome_of(
                self.responder
                    .quarantine(std::path::Path::new(path), &cause),
            ),
            Action::Restore { quarantine_id } => {
                outcome_of(self.responder.restore(quarantine_id, &cause))
            }
            Action::RulesUpdate { bundle } => (self.rules_update(bundle), None),
            Action::PolicyUpdate { document } => (self.policy_update(document), None),
        };
        if let Some(ev) = &event {
            self.reporter.action(ev);
        }
        outcome
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.responder.state().join(name)
    }

    /// A rules bundle is Sigma YAML (one or more documents separated by
    /// `---`). It is compiled first: a bundle with an error changes nothing.
    /// An empty bundle removes the manager's rules (all were disabled).
    fn rules_update(&self, bundle: &[u8]) -> CommandOutcome {
        let res = (|| -> Result<String> {
            let text = std::str::from_utf8(bundle).context("the rules bundle is not UTF-8")?;
            if text.trim().is_empty() {
                let file = self.state_path(RULES_DIR).join(RULES_FILE);
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot remove {}", file.display()));
                    }
                }
                self.reload.store(true, Ordering::Relaxed);
                return Ok("no rules from the manager: its rules are removed".into());
            }
            let (engine, report) = vigie_detect::Engine::from_yaml(&[("manager bundle", text)]);
            if report.errors() > 0 {
                let why: Vec<String> = report
                    .problems()
                    .map(|p| {
                        format!(
                            "line {}: {}",
                            p.line.unwrap_or(1),
                            p.reason.as_deref().unwrap_or("not loaded")
                        )
                    })
                    .collect();
                anyhow::bail!("rules bundle refused: {}", why.join("; "));
            }
            anyhow::ensure!(
                engine.rule_count() > 0,
                "rules bundle refused: it holds no rule"
            );
            let dir = self.state_path(RULES_DIR);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            vigie_respond::state::write_atomic(&dir.join(RULES_FILE), bundle, 0o600)?;
            self.reload.store(true, Ordering::Relaxed);
            Ok(format!(
                "{} rule(s) compiled and saved to {}; the detection engine reloads them now",
                engine.rule_count(),
                dir.join(RULES_FILE).display()
            ))
        })();
        match res {
            Ok(s) => CommandOutcome::ok(s),
            Err(e) => CommandOutcome::failed(format!("{e:#}")),
        }
    }

    /// A policy is the JSON form of the `[response]` section.
    fn policy_update(&self, document: &[u8]) -> CommandOutcome {
        let res = (|| -> Result<String> {
            let p: Policy =
                serde_json::from_slice(document).context("the policy is not valid JSON")?;
            p.isolation.validate()?;
            vigie_respond::state::write_atomic(
                &self.state_path(POLICY_FILE),
                &serde_json::to_vec_pretty(&p)?,
                0o600,
            )?;
            // Verified: what is on disk reads back as what was sent.
            let back = load_policy_file(&self.state_path(POLICY_FILE))?;
            anyhow::ensure!(
                back.as_ref() == Some(&p),
                "the saved policy reads back differently"
            );
            *self.policy.write().expect("policy lock") = p.clone();
            Ok(format!(
                "policy in force: mode {:?}, {} rule(s), {} protected host(s)",
                p.mode,
                p.rules.len(),
                p.protected_hosts.len()
            ))
        })();
        match res {
            Ok(s) => CommandOutcome::ok(s),
            Err(e) => CommandOutcome::failed(format!("{e:#}")),
        }
    }
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::Isolate => "isolate",
        Action::Release => "release",
        Action::Kill { .. } => "kill",
        Action::Quarantine { .. } => "quarantine",
        Action::Restore { .. } => "restore",
        Action::RulesUpdate { .. } => "rules update",
        Action::PolicyUpdate { .. } => "policy update",
    }
}

/// The policy the manager sent last, if any.
pub(crate) fn load_policy_file(path: &std::path::Path) -> Result<Option<Policy>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .with_context(|| format!("{} is not a valid policy", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

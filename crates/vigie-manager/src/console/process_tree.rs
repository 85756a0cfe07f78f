//! The host's process tree explorer: every process started in a time window
//! (the exec events the agent sent), arranged by parent, with the processes
//! that raised an alert marked and linked. Processes started before the
//! window appear through the ancestry each exec event carries, so a shell
//! opened yesterday still heads the tree of what it ran today.
//!
//! [`Forest::build`] is pure (tested below); [`page`] reads the store and
//! renders.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row;

use super::layout::{level, page as layout_page, time};
use super::{ConsoleState, Ctx, internal};

/// At most this many exec events are read for one window.
const MAX_EVENTS: i64 = 5000;

/// One process of the tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proc {
    pub entity_id: String,
    pub parent: Option<String>,
    pub pid: i64,
    pub name: String,
    pub command_line: String,
    pub user: String,
    /// Start time (ms); None for an ancestor started before the window.
    pub time: Option<i64>,
    /// Alerts raised on this process: (alert id, level, rule title).
    pub alerts: Vec<(String, String, String)>,
}

/// Processes by entity id, with children in start order.
#[derive(Debug, Default)]
pub struct Forest {
    pub procs: HashMap<String, Proc>,
    pub children: HashMap<String, Vec<String>>,
    pub roots: Vec<String>,
}

fn summary(v: &Value) -> Proc {
    Proc {
        entity_id: v["entity_id"].as_str().unwrap_or_default().to_string(),
        pid: v["pid"].as_i64().unwrap_or_default(),
        name: v["name"].as_str().unwrap_or_default().to_string(),
        command_line: v["command_line"].as_str().unwrap_or_default().to_string(),
        ..Proc::default()
    }
}

impl Forest {
    /// `events`: ECS process exec documents, oldest first. `alerts`: the
    /// culprit's entity id → (alert id, level, title).
    pub fn build(events: &[Value], alerts: &[(String, (String, String, String))]) -> Forest {
        let mut f = Forest::default();
        let mut order: Vec<String> = Vec::new();
        for doc in events {
            let p = &doc["process"];
            let Some(id) = p["entity_id"].as_str().filter(|s| !s.is_empty()) else {
                continue;
            };
            // Ancestors known from the event (root first), then the parent.
            let mut chain: Vec<Proc> = p["vigie"]["ancestors"]
                .as_array()
                .map(|a| a.iter().rev().map(summary).collect())
                .unwrap_or_default();
            if p["parent"].is_object() {
                chain.push(summary(&p["parent"]));
            }
            chain.retain(|a| !a.entity_id.is_empty() && a.entity_id != id);
            let mut above: Option<String> = None;
            for mut a in chain {
                let aid = a.entity_id.clone();
                if !f.procs.contains_key(&aid) {
                    a.parent = above.clone();
                    order.push(aid.clone());
                    f.procs.insert(aid.clone(), a);
                } else if let Some(known) = f.procs.get_mut(&aid)
                    && known.parent.is_none()
                {
                    known.parent = above.clone();
                }
                above = Some(aid);
            }
            let node = Proc {
                entity_id: id.to_string(),
                parent: above,
                pid: p["pid"].as_i64().unwrap_or_default(),
                name: p["name"].as_str().unwrap_or_default().to_string(),
                command_line: p["command_line"].as_str().unwrap_or_default().to_string(),
                user: p["user"]["name"].as_str().unwrap_or_default().to_string(),
                time: doc["@timestamp"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_millis()),
                alerts: vec![],
            };
            match f.procs.get_mut(id) {
                // Seen before as someone's ancestor: now we know it fully.
                Some(known) => {
                    let parent = known.parent.take().or(node.parent.clone());
                    *known = Proc { parent, ..node };
                }
                None => {
                    order.push(id.to_string());
                    f.procs.insert(id.to_string(), node);
                }
            }
        }
        for (entity, alert) in alerts {
            if let Some(p) = f.procs.get_mut(entity) {
                p.alerts.push(alert.clone());
            }
        }
        for id in order {
            match f.procs[&id].parent.clone() {
                Some(parent) if f.procs.contains_key(&parent) && !f.descends(&parent, &id) => {
                    f.children.entry(parent).or_default().push(id)
                }
                // No known parent, or hostile data making a loop: a root
                // (and the loop is cut here for the checks that follow).
                _ => {
                    if let Some(p) = f.procs.get_mut(&id) {
                        p.parent = None;
                    }
                    f.roots.push(id)
                }
            }
        }
        f
    }

    /// Whether `id` is `of` or one of its ancestors' chain passes through
    /// `of` (bounded: a loop in the data cannot hang the page).
    fn descends(&self, id: &str, of: &str) -> bool {
        let mut cur = Some(id.to_string());
        for _ in 0..=self.procs.len() {
            match cur {
                Some(c) if c == of => return true,
                Some(c) => cur = self.procs.get(&c).and_then(|p| p.parent.clone()),
                None => return false,
            }
        }
        true
    }

    /// Keep only the processes matching `q` (command line, name or user,
    /// case-insensitive) and their ancestors.
    pub fn filter(&mut self, q: &str) {
        let q = q.to_lowercase();
        let mut keep = std::collections::HashSet::new();
        for p in self.procs.values() {
            let hit = [&p.command_line, &p.name, &p.user]
                .iter()
                .any(|s| s.to_lowercase().contains(&q));
            if hit {
                let mut cur = Some(p.entity_id.clone());
                while let Some(id) = cur {
                    if !keep.insert(id.clone()) {
                        break;
                    }
                    cur = self.procs.get(&id).and_then(|p| p.parent.clone());
                }
            }
        }
        self.roots.retain(|r| keep.contains(r));
        for kids in self.children.values_mut() {
            kids.retain(|k| keep.contains(k));
        }
    }

    fn render(&self, id: &str, depth: usize) -> Markup {
        let p = &self.procs[id];
        let kids = self.children.get(id).map(Vec::as_slice).unwrap_or_default();
        let label = html! {
            span.pname { (p.name) } " " span.pid { "pid " (p.pid) }
            @if !p.user.is_empty() { " · " (p.user) }
            " · " @match p.time { Some(t) => (time(t)), None => span.muted { "…" } }
            @for (aid, lvl, title) in &p.alerts {
                " " a href={ "/console/alerts/" (aid) } { (level(lvl)) " " (title) }
            }
            br; code.cmd { (p.command_line) }
        };
        html! {
            li.culprit[!p.alerts.is_empty()] {
                // Deep trees stay readable: levels past the fourth start closed.
                @if kids.is_empty() { (label) } @else {
                    details open[depth < 4 || !p.alerts.is_empty()] {
                        summary { (label) }
                        ul { @for k in kids { (self.render(k, depth + 1)) } }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct TreeQuery {
    /// Window end (ms since the epoch); now by default.
    at: Option<i64>,
    /// Window length in minutes (default 60, at most a week).
    minutes: Option<i64>,
    /// Search in command lines, names and users.
    q: Option<String>,
}

pub async fn page(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(tq): Query<TreeQuery>,
) -> Result<Response, Response> {
    let l = ctx.lang;
    let org = &ctx.session.org;
    let store = &st.core.store;
    let err = |e: anyhow::Error| internal(l, format!("{e:#}"));
    let Some(host) = store.get_host(org, &id).await.map_err(err)? else {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    };
    let to = tq.at.unwrap_or_else(crate::store::now_ms);
    let minutes = tq.minutes.unwrap_or(60).clamp(1, 7 * 24 * 60);
    let from = to - minutes * 60_000;
    let rows = sqlx::query("SELECT doc FROM events WHERE org_id = $1 AND host_id = $2 AND dataset = 'vigie.process' AND action = 'exec' AND time >= $3 AND time <= $4 ORDER BY time DESC LIMIT $5")
        .bind(org)
        .bind(&id)
        .bind(from)
        .bind(to)
        .bind(MAX_EVENTS)
        .fetch_all(&store.pool)
        .await
        .map_err(|e| err(e.into()))?;
    let truncated = rows.len() as i64 == MAX_EVENTS;
    let mut events: Vec<Value> = rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.get::<String, _>(0)).ok())
        .collect();
    events.reverse();
    let alert_rows = sqlx::query("SELECT id, level, rule_name, doc FROM alerts WHERE org_id = $1 AND host_id = $2 AND time >= $3 AND time <= $4")
        .bind(org)
        .bind(&id)
        .bind(from)
        .bind(to)
        .fetch_all(&store.pool)
        .await
        .map_err(|e| err(e.into()))?;
    let alerts: Vec<(String, (String, String, String))> = alert_rows
        .iter()
        .filter_map(|r| {
            let doc: Value = serde_json::from_str(&r.get::<String, _>(3)).ok()?;
            let entity = doc["vigie"]["events"][0]["process"]["entity_id"]
                .as_str()?
                .to_string();
            Some((entity, (r.get(0), r.get(1), r.get(2))))
        })
        .collect();
    let mut forest = Forest::build(&events, &alerts);
    let q = tq.q.clone().unwrap_or_default();
    if !q.trim().is_empty() {
        forest.filter(q.trim());
    }
    let hostname = host["hostname"].as_str().unwrap_or(&id).to_string();
    let content = html! {
        p { a href={ "/console/hosts/" (id) } { "← " (hostname) } }
        p { (l.t("ptree_help")) }
        form method="get" action={ "/console/hosts/" (id) "/processes" } {
            input type="hidden" name="at" value=(to);
            label for="ptree-q" { (l.t("ptree_search")) } " "
            input #ptree-q name="q" value=(q) size="30";
            " " label for="ptree-minutes" { (l.t("ptree_minutes")) } " "
            input #ptree-minutes name="minutes" type="number" min="1" max="10080" value=(minutes);
            " " button type="submit" { (l.t("ptree_show")) }
        }
        p.meta { (time(from)) " → " (time(to)) " · " (events.len()) " " (l.t("ptree_processes"))
            @if truncated { " · " strong { (l.t("ptree_truncated")) } } }
        div.tree #process-explorer {
            @if forest.roots.is_empty() { p { (l.t("none")) } } @else {
                ul { @for r in &forest.roots { (forest.render(r, 0)) } }
            }
        }
    };
    Ok(layout_page(&ctx, l.t("ptree_title"), "/console/hosts", content).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exec(id: &str, parent: (&str, &str), ancestors: &[(&str, &str)], cmd: &str) -> Value {
        json!({
            "@timestamp": "2026-11-28T10:00:00Z",
            "process": {
                "entity_id": id, "pid": 10, "name": cmd.split(' ').next().unwrap(),
                "command_line": cmd, "user": {"name": "alice"},
                "parent": {"entity_id": parent.0, "pid": 9, "name": parent.1, "command_line": parent.1},
                "vigie": {"ancestors": ancestors.iter().map(|(i, n)| json!({"entity_id": i, "name": n, "pid": 1})).collect::<Vec<_>>()},
            }
        })
    }

    #[test]
    fn builds_the_tree_from_execs_and_ancestry() {
        // sshd (before the window) → bash (before) → curl, and bash → sh → cat.
        let events = vec![
            exec(
                "curl",
                ("bash", "bash"),
                &[("sshd", "sshd")],
                "curl http://x",
            ),
            exec("sh", ("bash", "bash"), &[("sshd", "sshd")], "sh -c cat"),
            exec(
                "cat",
                ("sh", "sh"),
                &[("bash", "bash"), ("sshd", "sshd")],
                "cat /etc/shadow",
            ),
        ];
        let alerts = vec![(
            "cat".to_string(),
            ("a1".into(), "high".into(), "Shadow read".into()),
        )];
        let f = Forest::build(&events, &alerts);
        assert_eq!(f.roots, vec!["sshd"]);
        assert_eq!(f.children["sshd"], vec!["bash"]);
        assert_eq!(f.children["bash"], vec!["curl", "sh"]);
        assert_eq!(f.children["sh"], vec!["cat"]);
        assert_eq!(f.procs["cat"].alerts.len(), 1);
        assert!(f.procs["sh"].time.is_some(), "sh is known in full");
        assert!(
            f.procs["bash"].time.is_none(),
            "bash started before the window"
        );
        let html = f.render("sshd", 0).into_string();
        assert!(html.contains("/console/alerts/a1"));
        assert!(html.contains("class=\"culprit\""));
    }

    #[test]
    fn filter_keeps_matches_and_their_ancestors() {
        let events = vec![
            exec("curl", ("bash", "bash"), &[], "curl http://x"),
            exec("ls", ("bash", "bash"), &[], "ls /"),
        ];
        let mut f = Forest::build(&events, &[]);
        f.filter("CURL");
        assert_eq!(f.roots, vec!["bash"]);
        assert_eq!(f.children["bash"], vec!["curl"]);
    }

    #[test]
    fn hostile_text_is_escaped_and_cycles_do_not_loop() {
        let events = vec![
            exec("a", ("b", "b"), &[], "<script>x</script>"),
            exec("b", ("a", "a"), &[], "b"),
        ];
        let f = Forest::build(&events, &[]);
        assert_eq!(f.roots.len(), 1, "the loop is broken at one place");
        let html = f.render(&f.roots[0], 0).into_string();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
    }
}

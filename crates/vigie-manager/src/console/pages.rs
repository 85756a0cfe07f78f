//! The console's pages and form actions. Each action checks the CSRF token
//! and the role on the server before doing anything.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::i18n::{Lang, alert_summary};
use super::layout::{csrf, flash, level, page, query_value, time, trusted_svg};
use super::queries::{self, AlertFilter};
use super::{ConsoleState, CsrfForm, Ctx, internal};
use crate::store::{AuditEntry, now_ms};

type Page = Result<Response, Response>;

fn ie(lang: Lang) -> impl Fn(anyhow::Error) -> Response {
    move |e| internal(lang, format!("{e:#}"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

#[derive(Deserialize, Default)]
pub struct Msg {
    pub msg: Option<String>,
    cmd: Option<String>,
}

// ---------------------------------------------------------------- dashboard

pub async fn dashboard(State(st): State<ConsoleState>, ctx: Ctx) -> Page {
    let l = ctx.lang;
    let store = &st.core.store;
    let org = &ctx.session.org;
    let hosts = store.list_hosts(org).await.map_err(ie(l))?;
    let online = hosts
        .iter()
        .filter(|h| st.core.is_online(s(h, "id")))
        .count();
    let isolated = hosts
        .iter()
        .filter(|h| h["isolated"] == json!(true))
        .count();
    let now = now_ms();
    let day = queries::alerts_by_level(store, org, now - 86_400_000)
        .await
        .map_err(ie(l))?;
    let week = queries::alerts_by_level(store, org, now - 7 * 86_400_000)
        .await
        .map_err(ie(l))?;
    let open = queries::open_incident_count(store, org)
        .await
        .map_err(ie(l))?;
    let incidents = store.list_incidents(org, 5).await.map_err(ie(l))?;
    let by_level = |caption: &str, rows: &[(String, i64)]| {
        html! {
            table {
                caption { (caption) }
                thead { tr { th scope="col" { (l.t("level")) } th scope="col" { (l.t("count")) } } }
                tbody {
                    @for (lv, n) in rows {
                        tr { td { a href={ "/console/alerts?level=" (lv) } { (level(lv)) } } td.num { (n) } }
                    }
                    @if rows.is_empty() { tr { td colspan="2" { (l.t("none")) } } }
                }
            }
        }
    };
    let content = html! {
        section.cards aria-label=(l.t("hosts")) {
            a.card href="/console/hosts?status=online" { span.n { (online) } span { (l.t("online")) } }
            a.card href="/console/hosts?status=offline" { span.n { (hosts.len() - online) } span { (l.t("offline")) } }
            a.card.warn[isolated > 0] href="/console/hosts?status=isolated" { span.n { (isolated) } span { (l.t("isolated")) } }
            a.card href="/console/incidents" { span.n { (open) } span { (l.t("open_incidents")) } }
        }
        div.cols {
            (by_level(l.t("alerts_24h"), &day))
            (by_level(l.t("alerts_7d"), &week))
        }
        h2 { (l.t("open_incidents")) }
        (incident_table(l, &incidents))
    };
    Ok(page(&ctx, l.t("dashboard"), "/console/", content).into_response())
}

fn incident_table(l: Lang, incidents: &[Value]) -> Markup {
    html! {
        table {
            thead { tr {
                th scope="col" { (l.t("title")) } th scope="col" { (l.t("host")) } th scope="col" { (l.t("status")) }
                th scope="col" { (l.t("first_seen")) } th scope="col" { (l.t("last")) } th scope="col" { (l.t("alerts")) }
            } }
            tbody {
                @for i in incidents {
                    tr {
                        td { a href={ "/console/incidents/" (s(i, "id")) } { (s(i, "title")) } }
                        td { a href={ "/console/hosts/" (s(i, "host_id")) } { (s(i, "host_id")) } }
                        td { (s(i, "status")) }
                        td { (time(i["first_time"].as_i64().unwrap_or(0))) }
                        td { (time(i["last_time"].as_i64().unwrap_or(0))) }
                        td.num { (i["alert_count"]) }
                    }
                }
                @if incidents.is_empty() { tr { td colspan="6" { (l.t("none")) } } }
            }
        }
    }
}

// ---------------------------------------------------------------- hosts

#[derive(Deserialize, Default)]
pub struct HostFilter {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
}

pub async fn hosts(State(st): State<ConsoleState>, ctx: Ctx, Query(f): Query<HostFilter>) -> Page {
    let l = ctx.lang;
    let mut hosts = st
        .core
        .store
        .list_hosts(&ctx.session.org)
        .await
        .map_err(ie(l))?;
    for h in &mut hosts {
        let on = st.core.is_online(s(h, "id"));
        h["online"] = json!(on);
    }
    let q = f.q.to_lowercase();
    hosts.retain(|h| {
        (q.is_empty()
            || s(h, "hostname").to_lowercase().contains(&q)
            || s(h, "id").contains(&q)
            || h["addresses"].to_string().contains(&q))
            && match f.status.as_str() {
                "online" => h["online"] == json!(true),
                "offline" => h["online"] == json!(false),
                "isolated" => h["isolated"] == json!(true),
                _ => true,
            }
    });
    let content = html! {
        form.filters method="get" action="/console/hosts" role="search" {
            label for="q" { (l.t("search")) } " "
            input #q name="q" value=(f.q) type="search";
            " " label for="status" { (l.t("status")) } " "
            select #status name="status" {
                @for (v, k) in [("", "all"), ("online", "online"), ("offline", "offline"), ("isolated", "isolated")] {
                    option value=(v) selected[f.status == v] { (l.t(k)) }
                }
            }
            " " button type="submit" { (l.t("filter")) }
        }
        table {
            thead { tr {
                th scope="col" { (l.t("hostname")) } th scope="col" { (l.t("status")) } th scope="col" { (l.t("isolated")) }
                th scope="col" { (l.t("os")) } th scope="col" { (l.t("last_seen")) } th scope="col" { (l.t("agent_version")) }
            } }
            tbody {
                @for h in &hosts {
                    tr {
                        td { a href={ "/console/hosts/" (s(h, "id")) } { (s(h, "hostname")) } }
                        td { @if h["online"] == json!(true) { span.ok { (l.t("online")) } } @else { span.muted { (l.t("offline")) } } }
                        td { @if h["isolated"] == json!(true) { span.lvl.high { (l.t("isolated")) } } @else { (l.t("not_isolated")) } }
                        td { (s(h, "os")) }
                        td { (time(h["last_seen"].as_i64().unwrap_or(0))) }
                        td { (s(h, "agent_version")) }
                    }
                }
                @if hosts.is_empty() { tr { td colspan="6" { (l.t("none")) } } }
            }
        }
    };
    Ok(page(&ctx, l.t("hosts"), "/console/hosts", content).into_response())
}

pub async fn host(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(m): Query<Msg>,
) -> Page {
    let l = ctx.lang;
    let org = &ctx.session.org;
    let store = &st.core.store;
    let Some(h) = store.get_host(org, &id).await.map_err(ie(l))? else {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    };
    let online = st.core.is_online(&id);
    let isolated = h["isolated"] == json!(true);
    let alerts = store
        .list_alerts(org, Some(&id), None, 0, 20)
        .await
        .map_err(ie(l))?;
    let events = queries::host_events(store, org, &id, 50)
        .await
        .map_err(ie(l))?;
    let commands = queries::host_commands(store, org, &id, 0, 20)
        .await
        .map_err(ie(l))?;
    let cmd = match &m.cmd {
        Some(c) => store
            .get_command(c)
            .await
            .map_err(ie(l))?
            .filter(|c| &c.org == org && c.host_id == id),
        None => None,
    };
    let action_form = |action: &str, confirm_key: &'static str, label_key: &'static str| {
        html! {
            form.action method="post" action={ "/console/hosts/" (id) "/" (action) } {
                (csrf(&ctx))
                p { label for={ (action) "-reason" } { (l.t("reason")) } br;
                    input id={ (action) "-reason" } name="reason" required maxlength="1000" size="50"; }
                p { input id={ (action) "-confirm" } type="checkbox" name="confirm" value="yes" required;
                    " " label for={ (action) "-confirm" } { (l.t(confirm_key)) } }
                p { button.big.danger[action == "isolate"] type="submit" { (l.t(label_key)) } }
            }
        }
    };
    let content = html! {
        (flash(l, m.msg.as_deref()))
        @if let Some(c) = &cmd {
            @match c.status.as_str() {
                "succeeded" => p.flash.ok role="status" { (l.t("cmd_succeeded")) " " (c.kind) " — " (c.outcome.clone().unwrap_or_default()) },
                "failed" => p.error role="alert" { (l.t("cmd_failed")) " " (c.kind) " — " (c.error.clone().unwrap_or_default()) },
                _ => p.flash role="status" { (l.t("cmd_pending")) },
            }
        }
        section aria-labelledby="facts" {
            h2 #facts { (l.t("facts")) }
            dl.facts {
                dt { (l.t("status")) } dd { @if online { span.ok { (l.t("online")) } } @else { span.muted { (l.t("offline")) } } }
                dt { (l.t("isolated")) } dd #isolation-state { @if isolated { span.lvl.high { (l.t("isolated")) } } @else { (l.t("not_isolated")) } }
                dt { (l.t("last_seen")) } dd { (time(h["last_seen"].as_i64().unwrap_or(0))) }
                dt { (l.t("os")) } dd { (s(&h, "os")) }
                dt { (l.t("kernel")) } dd { (s(&h, "kernel")) }
                dt { (l.t("agent_version")) } dd { (s(&h, "agent_version")) }
                dt { (l.t("addresses")) } dd { @for a in h["addresses"].as_array().into_iter().flatten() { (a.as_str().unwrap_or_default()) " " } }
                dt { (l.t("group")) } dd { (s(&h, "group")) }
                dt { (l.t("sensor_health")) } dd { (s(&h, "sensor_health")) }
                dt { (l.t("events_lost")) } dd { (h["sensor_lost"]) }
                dt { (l.t("spool")) } dd { (h["spool_pending"]) " / " (h["spool_dropped"]) }
            }
        }
        section aria-labelledby="respond" {
            h2 #respond { @if isolated { (l.t("release")) } @else { (l.t("isolate")) } }
            p { (l.t("isolate_help")) }
            @if !ctx.can("analyst") {
                p.muted { (l.t("forbidden")) }
            } @else if isolated {
                (action_form("release", "confirm_release", "release"))
                p.muted { (l.t("offline_release")) }
                form.action method="post" action={ "/console/hosts/" (id) "/release-code" } {
                    (csrf(&ctx))
                    p { label for="code-reason" { (l.t("reason")) } br;
                        input #code-reason name="reason" required maxlength="1000" size="50"; }
                    p { button type="submit" { (l.t("get_code")) } }
                }
            } @else {
                (action_form("isolate", "confirm_isolate", "isolate"))
            }
        }
        section aria-labelledby="recent" {
            h2 #recent { (l.t("recent_alerts")) }
            (alert_table(l, &alerts, None))
            p { a href={ "/console/alerts?host=" (id) } { (l.t("alerts")) " →" } " · "
                a #process-explorer-link href={ "/console/hosts/" (id) "/processes" } { (l.t("ptree_title")) " →" } }
        }
        section aria-labelledby="done" {
            h2 #done { (l.t("actions_taken")) }
            (command_table(l, &commands))
        }
        section aria-labelledby="timeline" {
            h2 #timeline { (l.t("timeline")) }
            table {
                thead { tr { th scope="col" { (l.t("time")) } th scope="col" { (l.t("event")) } th scope="col" { (l.t("process")) } th scope="col" { (l.t("user")) } th scope="col" { "" } } }
                tbody {
                    @for e in &events {
                        tr { td { (time(e["time"].as_i64().unwrap_or(0))) } td { (s(e, "action")) } td { (s(e, "process")) } td { (s(e, "user")) } td.cmd { code { (s(e, "what")) } } }
                    }
                    @if events.is_empty() { tr { td colspan="5" { (l.t("none")) } } }
                }
            }
        }
    };
    Ok(page(&ctx, s(&h, "hostname"), "/console/hosts", content).into_response())
}

fn command_table(l: Lang, commands: &[Value]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { (l.t("time")) } th scope="col" { (l.t("action")) } th scope="col" { (l.t("actor")) } th scope="col" { (l.t("reason")) } th scope="col" { (l.t("outcome")) } } }
            tbody {
                @for c in commands {
                    tr { td { (time(c["time"].as_i64().unwrap_or(0))) } td { (s(c, "kind")) } td { (s(c, "actor")) } td { (s(c, "reason")) }
                         td { (s(c, "status")) " " (s(c, "outcome")) (s(c, "error")) } }
                }
                @if commands.is_empty() { tr { td colspan="5" { (l.t("none")) } } }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

async fn host_action(st: &ConsoleState, ctx: &Ctx, id: &str, kind: &str, f: ActionForm) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("analyst")?;
    if f.confirm != "yes" || f.reason.trim().is_empty() {
        return Ok(Redirect::to(&format!("/console/hosts/{id}?msg=need_confirm")).into_response());
    }
    // The same path as POST /api/v1/hosts/{id}/isolate: command, wait for
    // the agent's verified outcome, audit.
    match crate::api::host_action(
        &st.core,
        &ctx.principal(),
        id,
        kind,
        &f.reason,
        None,
        Duration::from_secs(30),
    )
    .await
    {
        Ok((_, cmd)) => {
            Ok(Redirect::to(&format!("/console/hosts/{id}?cmd={}", cmd.id)).into_response())
        }
        Err(crate::api::ApiError(StatusCode::FORBIDDEN, _)) => {
            Err(ctx.error(StatusCode::FORBIDDEN, "forbidden"))
        }
        Err(crate::api::ApiError(StatusCode::NOT_FOUND, _)) => {
            Err(ctx.error(StatusCode::NOT_FOUND, "not_found"))
        }
        Err(crate::api::ApiError(_, m)) => Err(internal(ctx.lang, m)),
    }
}

pub async fn isolate(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Page {
    host_action(&st, &ctx, &id, "isolate", f).await
}

pub async fn release(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Page {
    host_action(&st, &ctx, &id, "release", f).await
}

/// Shows an offline release code (never in a URL or a redirect: the page
/// itself carries it, once).
pub async fn release_code(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("analyst")?;
    let l = ctx.lang;
    let issued =
        crate::api::release_code(&st.core, &ctx.principal(), &id, "release", &f.reason).await;
    let v = match issued {
        Ok(v) => v,
        Err(crate::api::ApiError(StatusCode::NOT_FOUND, _)) => {
            return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
        }
        Err(crate::api::ApiError(StatusCode::CONFLICT, _)) => {
            return Err(ctx.error(StatusCode::CONFLICT, "no_release_secret"));
        }
        Err(crate::api::ApiError(StatusCode::FORBIDDEN, _)) => {
            return Err(ctx.error(StatusCode::FORBIDDEN, "forbidden"));
        }
        Err(_) => {
            return Ok(
                Redirect::to(&format!("/console/hosts/{id}?msg=need_confirm")).into_response(),
            );
        }
    };
    let code = s(&v, "code");
    let content = html! {
        p { (l.t("release_code_help")) }
        p.big #release-code { code { (code) } }
        p { code { "vigie agent release --code " (code) } }
        p { (l.t("valid_until")) " " (s(&v, "valid_until")) }
        p { a href={ "/console/hosts/" (id) } { "← " (l.t("hosts")) } }
    };
    Ok(page(&ctx, l.t("release_code"), "/console/hosts", content).into_response())
}

// ---------------------------------------------------------------- alerts

const PAGE: i64 = 50;

fn alert_table(l: Lang, alerts: &[Value], select: Option<&str>) -> Markup {
    html! {
        table.alerts {
            thead { tr {
                @if select.is_some() { th scope="col" { input #select-all type="checkbox" aria-label=(l.t("select_all")); } }
                th scope="col" { (l.t("time")) } th scope="col" { (l.t("level")) } th scope="col" { (l.t("rule")) }
                th scope="col" { (l.t("host")) } th scope="col" { (l.t("status")) } th scope="col" { (l.t("assignee")) }
            } }
            tbody {
                @for a in alerts {
                    tr {
                        @if let Some(form) = select {
                            td { input.pick type="checkbox" name="ids" value=(s(a, "id")) form=(form) aria-label={ (l.t("select")) " " (s(a, "rule_name")) }; }
                        }
                        td { (time(a["time"].as_i64().unwrap_or(0))) }
                        td { (level(s(a, "level"))) }
                        td { a href={ "/console/alerts/" (s(a, "id")) } { (s(a, "rule_name")) } }
                        td { a href={ "/console/hosts/" (s(a, "host_id")) } { (a["hostname"].as_str().unwrap_or(s(a, "host_id"))) } }
                        td { (l.t(status_key(s(a, "status")))) @if let Some(v) = a["verdict"].as_str() { " (" (l.t(verdict_key(v))) ")" } }
                        td { (s(a, "assignee")) }
                    }
                }
                @if alerts.is_empty() { tr { td colspan="7" { (l.t("none")) } } }
            }
        }
    }
}

fn status_key(s: &str) -> &'static str {
    match s {
        "acknowledged" => "acknowledged",
        "closed" => "closed",
        _ => "new",
    }
}

fn verdict_key(s: &str) -> &'static str {
    match s {
        "true_positive" => "true_positive",
        "false_positive" => "false_positive",
        _ => "benign",
    }
}

pub async fn alerts(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Query(f): Query<AlertFilter>,
) -> Page {
    let l = ctx.lang;
    let list = queries::alerts(&st.core.store, &ctx.session.org, &f, PAGE)
        .await
        .map_err(ie(l))?;
    // The next page starts after the last alert shown: (time, id).
    let older = (list.len() as i64 == PAGE)
        .then(|| {
            list.last()
                .and_then(|a| Some((a["time"].as_i64()?, s(a, "id"))))
        })
        .flatten();
    let analyst = ctx.can("analyst");
    let content = html! {
        (flash(l, f.msg.as_deref()))
        form.filters method="get" action="/console/alerts" role="search" {
            label for="q" { (l.t("rule")) } " " input #q name="q" type="search" value=(f.q);
            " " label for="status" { (l.t("status")) } " "
            select #status name="status" {
                @for (v, k) in [("", "all"), ("new", "new"), ("acknowledged", "acknowledged"), ("closed", "closed")] {
                    option value=(v) selected[f.status == v] { (l.t(k)) }
                }
            }
            " " label for="level" { (l.t("min_level")) } " "
            select #level name="level" {
                @for v in ["", "informational", "low", "medium", "high", "critical"] {
                    option value=(v) selected[f.level == v] { @if v.is_empty() { (l.t("all")) } @else { (v) } }
                }
            }
            input type="hidden" name="host" value=(f.host);
            " " button type="submit" { (l.t("filter")) }
        }
        @if analyst {
            form #bulk.bulk method="post" action="/console/alerts" {
                (csrf(&ctx))
                fieldset {
                    legend { (l.t("bulk")) }
                    label for="bulk-action" { (l.t("action")) } " "
                    select #bulk-action name="action" {
                        option value="acknowledge" { (l.t("acknowledge")) }
                        option value="close" { (l.t("close")) }
                        option value="assign" { (l.t("assign")) }
                    }
                    " " label for="bulk-verdict" { (l.t("verdict")) } " "
                    select #bulk-verdict name="verdict" {
                        option value="" { "—" }
                        @for v in ["true_positive", "false_positive", "benign"] { option value=(v) { (l.t(verdict_key(v))) } }
                    }
                    " " label for="bulk-assignee" { (l.t("assignee")) } " "
                    input #bulk-assignee name="assignee" size="12";
                    " " button type="submit" { (l.t("apply")) }
                }
            }
        }
        (alert_table(l, &list, analyst.then_some("bulk")))
        @if let Some((t, id)) = older {
            p { a href={ "/console/alerts?status=" (query_value(&f.status)) "&level=" (query_value(&f.level)) "&host=" (query_value(&f.host)) "&q=" (query_value(&f.q)) "&before=" (t) "&before_id=" (query_value(id)) } { (l.t("older")) " →" } }
        }
    };
    Ok(page(&ctx, l.t("alerts"), "/console/alerts", content).into_response())
}

#[derive(Deserialize)]
pub struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    assignee: String,
}

/// Apply one triage change to an alert, with the same checks and audit as
/// PATCH /api/v1/alerts/{id}. Returns false when the alert does not exist.
async fn triage(
    st: &ConsoleState,
    ctx: &Ctx,
    id: &str,
    status: Option<&str>,
    assignee: Option<&str>,
    verdict: Option<&str>,
    comment: Option<&str>,
) -> anyhow::Result<bool> {
    let org = &ctx.session.org;
    let status = status.filter(|s| ["new", "acknowledged", "closed"].contains(s));
    let verdict = verdict.filter(|v| ["true_positive", "false_positive", "benign"].contains(v));
    let assignee = assignee
        .map(str::trim)
        .filter(|a| !a.is_empty() && a.len() <= 128);
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if !st
        .core
        .store
        .update_alert(org, id, status, assignee, verdict)
        .await?
    {
        return Ok(false);
    }
    if let Some(c) = comment {
        let c: String = c.chars().take(10_000).collect();
        st.core
            .store
            .add_comment(org, id, &ctx.principal().actor, &c)
            .await?;
    }
    st.core
        .store
        .append_audit(&AuditEntry {
            org: org.clone(),
            actor: ctx.principal().actor,
            action: "update_alert".into(),
            target: id.to_string(),
            reason: comment.unwrap_or_default().chars().take(1000).collect(),
            outcome: "updated".into(),
            details: json!({"status": status, "assignee": assignee, "verdict": verdict, "via": "console"}),
        })
        .await?;
    Ok(true)
}

pub async fn alerts_bulk(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Form(f): Form<BulkForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("analyst")?;
    let verdict = (!f.verdict.is_empty()).then_some(f.verdict.as_str());
    let (status, assignee) = match f.action.as_str() {
        "acknowledge" => (Some("acknowledged"), None),
        "close" => (Some("closed"), None),
        "assign" => (None, Some(f.assignee.as_str())),
        _ => return Err(ctx.error(StatusCode::BAD_REQUEST, "error")),
    };
    for id in f.ids.iter().take(1000) {
        triage(&st, &ctx, id, status, assignee, verdict, None)
            .await
            .map_err(ie(ctx.lang))?;
    }
    Ok(Redirect::to("/console/alerts?msg=updated").into_response())
}

fn attack_url(t: &str) -> String {
    // T1059.004 -> https://attack.mitre.org/techniques/T1059/004/
    let t = t.trim().to_ascii_uppercase();
    if !t.starts_with('T') || !t[1..].chars().all(|c| c.is_ascii_digit() || c == '.') {
        return "https://attack.mitre.org/".into();
    }
    format!(
        "https://attack.mitre.org/techniques/{}/",
        t.replace('.', "/")
    )
}

/// The process tree as nested lists: each ancestor contains the next; the
/// culprit is marked and contains what it started.
fn tree(l: Lang, chain: &[Value]) -> Markup {
    let Some((node, rest)) = chain.split_first() else {
        return html! {};
    };
    let culprit = node["culprit"] == json!(true);
    let label = |n: &Value| {
        html! {
            span.pname { (n["name"].as_str().unwrap_or("?")) } " "
            span.pid { "pid " (n["pid"]) } " "
            code.cmd { (n["command_line"].as_str().or(n["executable"].as_str()).unwrap_or_default()) }
        }
    };
    html! {
        ul {
            li.culprit[culprit] {
                @if culprit { strong.tag { (l.t("culprit")) } " " }
                (label(node))
                @if culprit {
                    @let kids = node["children"].as_array().cloned().unwrap_or_default();
                    @if !kids.is_empty() {
                        ul { @for k in &kids { li { (label(k)) } } }
                    }
                }
                (tree(l, rest))
            }
        }
    }
}

pub async fn alert(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(m): Query<Msg>,
) -> Page {
    let l = ctx.lang;
    let org = &ctx.session.org;
    let store = &st.core.store;
    let Some((sum, doc)) = store.get_alert(org, &id).await.map_err(ie(l))? else {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    };
    let host_id = s(&sum, "host_id").to_string();
    let host = store.get_host(org, &host_id).await.map_err(ie(l))?;
    let hostname = host
        .as_ref()
        .map(|h| s(h, "hostname").to_string())
        .or_else(|| doc["host"]["name"].as_str().map(String::from))
        .unwrap_or_else(|| host_id.clone());
    let at = sum["time"].as_i64().unwrap_or(0);
    let chain = crate::api::process_tree(&doc);
    let chain = chain.as_array().cloned().unwrap_or_default();
    let culprit = chain.last().cloned().unwrap_or(Value::Null);
    let parent = if chain.len() >= 2 {
        chain[chain.len() - 2].clone()
    } else {
        Value::Null
    };
    let first = &doc["vigie"]["events"][0];
    let user = first["user"]["name"].as_str().unwrap_or_default();
    let rule = &doc["rule"];
    let summary = alert_summary(
        l,
        &hostname,
        &time(at),
        culprit["name"].as_str().unwrap_or_default(),
        culprit["command_line"].as_str().unwrap_or_default(),
        parent["name"].as_str().unwrap_or_default(),
        user,
        s(&sum, "rule_name"),
    );
    let commands = queries::host_commands(store, org, &host_id, at, 20)
        .await
        .map_err(ie(l))?;
    let mut done = queries::audit_for(store, org, &host_id, at)
        .await
        .map_err(ie(l))?;
    done.retain(|a| !s(a, "action").ends_with("_requested"));
    let triaged = queries::audit_for(store, org, &id, 0)
        .await
        .map_err(ie(l))?;
    let comments = queries::comments(store, org, &id).await.map_err(ie(l))?;
    let isolated = host.as_ref().is_some_and(|h| h["isolated"] == json!(true));
    let severe = matches!(s(&sum, "level"), "high" | "critical");
    let content = html! {
        (flash(l, m.msg.as_deref()))
        p.meta { (level(s(&sum, "level"))) " " (time(at)) " · " a href={ "/console/hosts/" (host_id) } { (hostname) }
            " · " (l.t(status_key(s(&sum, "status")))) }
        section aria-labelledby="what" {
            h2 #what { (l.t("what_happened")) }
            p.summary { (summary) }
        }
        section aria-labelledby="did" {
            h2 #did { (l.t("what_vigie_did")) }
            @if commands.is_empty() && done.is_empty() {
                p { (l.t("nothing_done")) }
            } @else {
                (command_table(l, &commands))
                @if !done.is_empty() {
                    ul { @for a in &done { li { (time(a["time"].as_i64().unwrap_or(0))) " — " (s(a, "actor")) ": " (s(a, "action")) " — " (s(a, "outcome")) } } }
                }
            }
        }
        section aria-labelledby="next" {
            h2 #next { (l.t("what_next")) }
            p { @if severe && !isolated { (l.t("next_high")) } @else { (l.t("next_low")) } }
            p { a.button href={ "/console/hosts/" (host_id) "#respond" } { (l.t("hosts")) ": " (hostname) " →" } }
        }
        section aria-labelledby="tree" {
            h2 #tree { (l.t("process_tree")) }
            div.tree #process-tree { (tree(l, &chain)) }
        }
        section aria-labelledby="about" {
            h2 #about { (l.t("rule_description")) }
            p { strong { (s(rule, "name")) } " " span.muted { (s(rule, "id")) } }
            @if let Some(d) = rule["description"].as_str() { p { (d) } }
            @let attack = rule["attack"].as_array().cloned().unwrap_or_default();
            @if !attack.is_empty() {
                p { (l.t("attack")) ": " @for t in &attack { @let t = t.as_str().unwrap_or_default(); a href=(attack_url(t)) rel="noreferrer" { (t) } " " } }
            }
            @let refs = rule["reference"].as_array().cloned().unwrap_or_default();
            @if !refs.is_empty() {
                h3 { (l.t("references")) }
                ul { @for r in &refs { @let r = r.as_str().unwrap_or_default();
                    li { @if r.starts_with("https://") || r.starts_with("http://") { a href=(r) rel="noreferrer" { (r) } } @else { (r) } } } }
            }
            @let fps = rule["falsepositives"].as_array().cloned().unwrap_or_default();
            @if !fps.is_empty() {
                h3 { (l.t("false_positives")) }
                ul { @for f in &fps { li { (f.as_str().unwrap_or_default()) } } }
            }
        }
        section aria-labelledby="triage" {
            h2 #triage { (l.t("triage")) }
            @if ctx.can("analyst") {
                form method="post" action={ "/console/alerts/" (id) } {
                    (csrf(&ctx))
                    p { label for="status" { (l.t("status")) } " "
                        select #status name="status" { @for v in ["new", "acknowledged", "closed"] { option value=(v) selected[s(&sum, "status") == v] { (l.t(status_key(v))) } } }
                        " " label for="verdict" { (l.t("verdict")) } " "
                        select #verdict name="verdict" { option value="" { "—" } @for v in ["true_positive", "false_positive", "benign"] { option value=(v) selected[s(&sum, "verdict") == v] { (l.t(verdict_key(v))) } } }
                        " " label for="assignee" { (l.t("assignee")) } " "
                        input #assignee name="assignee" value=(s(&sum, "assignee")) size="12"; }
                    p { label for="comment" { (l.t("comment")) } br; textarea #comment name="comment" rows="3" cols="60" {} }
                    p { button type="submit" { (l.t("save")) } }
                }
            }
            h3 { (l.t("comments")) }
            ul { @for (t, who, body) in &comments { li { (time(*t)) " — " (who) ": " (body) } } @if comments.is_empty() { li { (l.t("none")) } } }
            ul.muted { @for a in &triaged { li { (time(a["time"].as_i64().unwrap_or(0))) " — " (s(a, "actor")) ": " (s(a, "action")) } } }
        }
    };
    Ok(page(&ctx, s(&sum, "rule_name"), "/console/alerts", content).into_response())
}

#[derive(Deserialize)]
pub struct AlertForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    comment: String,
}

pub async fn alert_update(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<AlertForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("analyst")?;
    let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let found = triage(
        &st,
        &ctx,
        &id,
        opt(&f.status).as_deref(),
        opt(&f.assignee).as_deref(),
        opt(&f.verdict).as_deref(),
        opt(&f.comment).as_deref(),
    )
    .await
    .map_err(ie(ctx.lang))?;
    if !found {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    }
    Ok(Redirect::to(&format!("/console/alerts/{id}?msg=updated")).into_response())
}

// ---------------------------------------------------------------- incidents

pub async fn incidents(State(st): State<ConsoleState>, ctx: Ctx) -> Page {
    let l = ctx.lang;
    let list = st
        .core
        .store
        .list_incidents(&ctx.session.org, 200)
        .await
        .map_err(ie(l))?;
    Ok(page(
        &ctx,
        l.t("incidents"),
        "/console/incidents",
        incident_table(l, &list),
    )
    .into_response())
}

pub async fn incident(State(st): State<ConsoleState>, ctx: Ctx, Path(id): Path<String>) -> Page {
    let l = ctx.lang;
    let org = &ctx.session.org;
    let Some(inc) = queries::incident(&st.core.store, org, &id)
        .await
        .map_err(ie(l))?
    else {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    };
    let alerts = queries::incident_alerts(&st.core.store, org, &id)
        .await
        .map_err(ie(l))?;
    let host_id = s(&inc, "host_id");
    let first = inc["first_time"].as_i64().unwrap_or(0);
    let last = inc["last_time"].as_i64().unwrap_or(first);
    let mut actions = queries::audit_for(&st.core.store, org, host_id, first)
        .await
        .map_err(ie(l))?;
    actions.reverse();
    // Other hosts' alerts an hour around (the VPN's, a neighbour's): an
    // attack rarely stays on one machine.
    let related = queries::related_alerts(
        &st.core.store,
        org,
        host_id,
        first - 3_600_000,
        last + 3_600_000,
        200,
    )
    .await
    .map_err(ie(l))?;
    // One timeline, in time order: (time, row).
    let mut rows: Vec<(i64, Markup)> = Vec::new();
    for (a, doc) in &alerts {
        rows.push((a["time"].as_i64().unwrap_or(0), html! {
            (level(s(a, "level"))) " " a href={ "/console/alerts/" (s(a, "id")) } { (s(a, "rule_name")) } " "
            code.cmd { (doc["vigie"]["events"][0]["process"]["command_line"].as_str().unwrap_or_default()) }
        }));
    }
    for a in &actions {
        rows.push((
            a["time"].as_i64().unwrap_or(0),
            html! {
                (s(a, "actor")) ": " (s(a, "action")) " — " (s(a, "outcome"))
            },
        ));
    }
    for (a, _) in &related {
        rows.push((a["time"].as_i64().unwrap_or(0), html! {
            span.related { "[" (l.t("rep_related")) "] " }
            a href={ "/console/hosts/" (s(a, "host_id")) } { (a["hostname"].as_str().unwrap_or(s(a, "host_id"))) } " · "
            (level(s(a, "level"))) " " a href={ "/console/alerts/" (s(a, "id")) } { (s(a, "rule_name")) }
        }));
    }
    rows.sort_by_key(|(t, _)| *t);
    let content = html! {
        p.meta { a href={ "/console/hosts/" (host_id) } { (inc["hostname"].as_str().unwrap_or(host_id)) } " · "
            (time(first)) " → " (time(inc["last_time"].as_i64().unwrap_or(0))) " · " (s(&inc, "status")) }
        p { a.button #report-link href={ "/console/incidents/" (id) "/report" } { (l.t("rep_link")) } " "
            a.button href={ "/console/incidents/" (id) "/export" } download { (l.t("export")) } " "
            a href={ "/console/incidents/" (id) "/notification" } { (l.t("rep_complete_link")) } }
        h2 { (l.t("timeline")) }
        ol.timeline #incident-timeline {
            @for (t, row) in &rows { li { (time(*t)) " — " (row) } }
        }
    };
    Ok(page(&ctx, s(&inc, "title"), "/console/incidents", content).into_response())
}

/// The incident as JSON: its alerts with their events and the actions on
/// the host, for the responder's report.
pub async fn incident_export(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Page {
    let l = ctx.lang;
    let org = &ctx.session.org;
    let Some(inc) = queries::incident(&st.core.store, org, &id)
        .await
        .map_err(ie(l))?
    else {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    };
    let alerts = queries::incident_alerts(&st.core.store, org, &id)
        .await
        .map_err(ie(l))?;
    let actions = queries::audit_for(
        &st.core.store,
        org,
        s(&inc, "host_id"),
        inc["first_time"].as_i64().unwrap_or(0),
    )
    .await
    .map_err(ie(l))?;
    let body = json!({
        "incident": inc,
        "alerts": alerts.iter().map(|(_, d)| d).collect::<Vec<_>>(),
        "actions": actions,
        "exported_at": time(now_ms()),
        "exported_by": ctx.principal().actor,
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"incident-{}.json\"",
                    id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
                ),
            ),
        ],
        serde_json::to_string_pretty(&body).unwrap_or_default(),
    )
        .into_response())
}

// ---------------------------------------------------------------- rules

#[derive(Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    source: String,
}

fn rules_page(
    ctx: &Ctx,
    rules: &[Value],
    source: &str,
    errors: &[(Option<usize>, String)],
    msg: Option<&str>,
) -> Response {
    let l = ctx.lang;
    let error_lines: Vec<usize> = errors.iter().filter_map(|(n, _)| *n).collect();
    let content = html! {
        (flash(l, msg))
        table {
            thead { tr { th scope="col" { (l.t("title")) } th scope="col" { (l.t("status")) } th scope="col" { (l.t("rule_groups")) } th scope="col" { (l.t("uploaded_by")) } th scope="col" { (l.t("time")) } th scope="col" { (l.t("action")) } } }
            tbody {
                @for r in rules {
                    @let groups = r["groups"].as_array().map(|g| g.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
                    tr {
                        td { (s(r, "title")) }
                        td { @if r["enabled"] == json!(true) { (l.t("enabled")) } @else { (l.t("disabled")) } }
                        td {
                            @if ctx.can("admin") {
                                form.inline method="post" action={ "/console/rules/" (s(r, "id")) "/groups" } { (csrf(ctx))
                                    @let field = format!("groups-{}", s(r, "id"));
                                    label.visually-hidden for=(field) { (l.t("rule_groups")) }
                                    input id=(field) name="groups" type="text" size="20" value=(groups) placeholder=(l.t("all_groups")) title=(l.t("rule_groups_help"));
                                    " " button type="submit" { (l.t("assign")) } }
                            } @else if groups.is_empty() { (l.t("all_groups")) } @else { (groups) }
                        }
                        td { (s(r, "uploaded_by")) }
                        td { (time(r["uploaded_at"].as_i64().unwrap_or(0))) }
                        td { @if ctx.can("admin") {
                            form method="post" action={ "/console/rules/" (s(r, "id")) "/toggle" } { (csrf(ctx))
                                button type="submit" { @if r["enabled"] == json!(true) { (l.t("disable")) } @else { (l.t("enable")) } } } } }
                    }
                }
                @if rules.is_empty() { tr { td colspan="6" { (l.t("none")) } } }
            }
        }
        h2 #upload { (l.t("upload_rule")) }
        @if !errors.is_empty() {
            div.error role="alert" #rule-errors {
                p { (l.t("rule_errors")) }
                ul { @for (line, reason) in errors {
                    li { @if let Some(n) = line { a href={ "#L" (n) } { (l.t("line")) " " (n) } ": " } (reason) }
                } }
            }
            ol.source aria-label=(l.t("rule_source")) {
                @for (i, text) in source.lines().enumerate() {
                    @let n = i + 1;
                    li id={ "L" (n) } class=[error_lines.contains(&n).then_some("errline")] {
                        code { (text) }
                        @for (line, reason) in errors { @if *line == Some(n) { " " span.errmsg { "← " (reason) } } }
                    }
                }
            }
        }
        @if ctx.can("admin") {
            form method="post" action="/console/rules" {
                (csrf(ctx))
                p { label for="rule-file" { (l.t("rule_file")) } " " input #rule-file type="file" accept=".yml,.yaml,text/yaml"; }
                p { label for="source" { (l.t("rule_source")) } br;
                    textarea #source name="source" rows="20" cols="80" spellcheck="false" required { (source) } }
                p { button type="submit" { (l.t("validate_save")) } }
            }
        } @else {
            p.muted { (l.t("forbidden")) }
        }
    };
    let code = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (code, page(ctx, l.t("rules"), "/console/rules", content)).into_response()
}

pub async fn rules(State(st): State<ConsoleState>, ctx: Ctx, Query(m): Query<Msg>) -> Page {
    let list = queries::rules(&st.core.store, &ctx.session.org)
        .await
        .map_err(ie(ctx.lang))?;
    Ok(rules_page(&ctx, &list, "", &[], m.msg.as_deref()))
}

/// Validate with vigie-detect (the engine the agents run); save only a rule
/// that loads.
pub async fn rule_upload(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Form(f): Form<RuleForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("admin")?;
    let l = ctx.lang;
    let source = f.source.replace("\r\n", "\n");
    let src = source.clone();
    let checked =
        tokio::task::spawn_blocking(move || crate::config_sync::validate_rule_source(&src))
            .await
            .map_err(|e| internal(l, e))?;
    let title = match checked {
        Ok(title) => title,
        Err(errors) => {
            let list = queries::rules(&st.core.store, &ctx.session.org)
                .await
                .map_err(ie(l))?;
            return Ok(rules_page(&ctx, &list, &source, &errors, None));
        }
    };
    let id = queries::add_rule(
        &st.core.store,
        &ctx.session.org,
        &title,
        &source,
        &ctx.principal().actor,
    )
    .await
    .map_err(ie(l))?;
    admin_audit(&st, &ctx, "upload_rule", &id, &title).await?;
    Ok(Redirect::to("/console/rules?msg=rule_saved").into_response())
}

#[derive(Deserialize)]
pub struct RuleGroupsForm {
    #[serde(default)]
    csrf: String,
    /// Comma-separated host group names; empty: every group.
    #[serde(default)]
    groups: String,
}

/// Assign an uploaded rule to host groups (the agents of those groups get
/// it at the next configuration sync).
pub async fn rule_groups(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<RuleGroupsForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("admin")?;
    let l = ctx.lang;
    let names = f.groups.split(',').map(str::trim).filter(|g| !g.is_empty());
    let groups =
        queries::rule_groups(names).map_err(|_| ctx.error(StatusCode::BAD_REQUEST, "error"))?;
    if !queries::update_rule(&st.core.store, &ctx.session.org, &id, None, Some(&groups))
        .await
        .map_err(ie(l))?
    {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    }
    let what = if groups.is_empty() {
        "all groups"
    } else {
        groups.as_str()
    };
    admin_audit(&st, &ctx, "assign_rule", &id, what).await?;
    Ok(Redirect::to("/console/rules?msg=updated").into_response())
}

pub async fn rule_toggle(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("admin")?;
    match queries::toggle_rule(&st.core.store, &ctx.session.org, &id)
        .await
        .map_err(ie(ctx.lang))?
    {
        Some(on) => {
            admin_audit(
                &st,
                &ctx,
                if on { "enable_rule" } else { "disable_rule" },
                &id,
                "",
            )
            .await?;
            Ok(Redirect::to("/console/rules?msg=updated").into_response())
        }
        None => Err(ctx.error(StatusCode::NOT_FOUND, "not_found")),
    }
}

async fn admin_audit(
    st: &ConsoleState,
    ctx: &Ctx,
    action: &str,
    target: &str,
    reason: &str,
) -> Result<(), Response> {
    st.core
        .store
        .append_audit(&AuditEntry {
            org: ctx.session.org.clone(),
            actor: ctx.principal().actor,
            action: action.into(),
            target: target.into(),
            reason: reason.into(),
            outcome: "succeeded".into(),
            details: json!({"via": "console"}),
        })
        .await
        .map_err(ie(ctx.lang))
}

// ---------------------------------------------------------------- policies

pub async fn policies(State(st): State<ConsoleState>, ctx: Ctx) -> Page {
    let l = ctx.lang;
    let groups = queries::groups(&st.core.store, &ctx.session.org)
        .await
        .map_err(ie(l))?;
    let mut rows = Vec::new();
    for (g, n) in groups {
        let p = queries::setting(&st.core.store, &ctx.session.org, &format!("policy:{g}"))
            .await
            .map_err(ie(l))?
            .unwrap_or_else(|| "alert_only".into());
        rows.push((g, n, p));
    }
    let content = html! {
        p { (l.t("policies_help")) }
        form method="post" action="/console/settings" {
            (csrf(&ctx))
            table {
                thead { tr { th scope="col" { (l.t("group")) } th scope="col" { (l.t("host_count")) } th scope="col" { (l.t("policy")) } } }
                tbody {
                    @for (g, n, p) in &rows {
                        tr { td { (g) } td.num { (n) }
                            td { select name={ "policy:" (g) } aria-label={ (l.t("policy")) " " (g) } disabled[!ctx.can("admin")] {
                                @for (v, k) in [("alert_only", "alert_only"), ("kill", "kill"), ("isolate", "isolate_auto")] {
                                    option value=(v) selected[p == v] { (l.t(k)) }
                                }
                            } } }
                    }
                    @if rows.is_empty() { tr { td colspan="3" { (l.t("none")) } } }
                }
            }
            @if ctx.can("admin") && !rows.is_empty() { p { button type="submit" { (l.t("save")) } } }
        }
    };
    Ok(page(&ctx, l.t("policies"), "/console/policies", content).into_response())
}

// ---------------------------------------------------------------- settings

pub async fn settings(State(st): State<ConsoleState>, ctx: Ctx, Query(m): Query<Msg>) -> Page {
    let l = ctx.lang;
    let org = &ctx.session.org;
    // One query for the whole page.
    let all = queries::settings(&st.core.store, org)
        .await
        .map_err(ie(l))?;
    let get = |k: &str, default: &str| all.get(k).cloned().unwrap_or_else(|| default.into());
    let retention = get("retention_days", "30");
    let webhook = get("webhook_url", "");
    let notify = get("notify_level", "high");
    let mut text = HashMap::new();
    for k in [
        "email_to",
        "email_from",
        "smtp_url",
        "smtp_user",
        "syslog_url",
        "console_url",
    ] {
        text.insert(k, get(k, ""));
    }
    let password_set = !get("smtp_password", "").is_empty();
    let syslog_format = get("syslog_format", "ecs");
    let syslog_level = get("syslog_level", "low");
    let admin = ctx.can("admin");
    let field = |k: &'static str, kind: &'static str| {
        html! { p { label for=(k) { (l.t(k)) } br; input id=(k) name=(k) type=(kind) size="60" value=(text[k]) disabled[!admin]; } }
    };
    let levels = ["low", "medium", "high", "critical"];
    let content = html! {
        (flash(l, m.msg.as_deref()))
        form method="post" action="/console/settings" {
            (csrf(&ctx))
            p { label for="retention" { (l.t("retention_days")) } br; input #retention name="retention_days" type="number" min="1" max="3650" value=(retention) disabled[!admin]; }
            p { label for="webhook" { (l.t("webhook")) } br; input #webhook name="webhook_url" type="url" size="60" value=(webhook) disabled[!admin]; }
            p { label for="notify" { (l.t("notify_level")) } br;
                select #notify name="notify_level" disabled[!admin] { @for v in levels { option value=(v) selected[notify == v] { (v) } } } }
            fieldset {
                legend { (l.t("email")) }
                (field("email_to", "text"))
                (field("email_from", "text"))
                (field("smtp_url", "text"))
                (field("smtp_user", "text"))
                p { label for="smtp_password" { (l.t("smtp_password")) } br;
                    // Write-only: never sent back to the browser.
                    input #smtp_password name="smtp_password" type="password" size="30" autocomplete="new-password"
                        placeholder=(if password_set { l.t("secret_kept") } else { "" }) disabled[!admin]; }
            }
            fieldset {
                legend { (l.t("syslog")) }
                (field("syslog_url", "text"))
                p { label for="syslog_format" { (l.t("syslog_format")) } br;
                    select #syslog_format name="syslog_format" disabled[!admin] { @for v in ["ecs", "cef"] { option value=(v) selected[syslog_format == v] { (v) } } } }
                p { label for="syslog_level" { (l.t("syslog_level")) } br;
                    select #syslog_level name="syslog_level" disabled[!admin] { @for v in levels { option value=(v) selected[syslog_level == v] { (v) } } } }
            }
            (field("console_url", "url"))
            @if admin { p { button type="submit" { (l.t("save")) } } }
        }
    };
    Ok(page(&ctx, l.t("settings"), "/console/settings", content).into_response())
}

/// Saves settings and group policies (admin). Unknown names are refused.
pub async fn settings_save(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Form(f): Form<HashMap<String, String>>,
) -> Page {
    ctx.check_csrf(f.get("csrf").map(String::as_str).unwrap_or_default())?;
    ctx.require("admin")?;
    let l = ctx.lang;
    let org = &ctx.session.org;
    let mut back = "/console/settings?msg=updated";
    for (k, v) in &f {
        let ok = match k.as_str() {
            "csrf" => continue,
            "retention_days" => v.parse::<u32>().is_ok_and(|d| (1..=3650).contains(&d)),
            "webhook_url" => {
                v.is_empty()
                    || ((v.starts_with("https://") || v.starts_with("http://")) && v.len() < 2000)
            }
            "notify_level" | "syslog_level" => {
                ["low", "medium", "high", "critical"].contains(&v.as_str())
            }
            "console_url" => {
                v.is_empty()
                    || ((v.starts_with("https://") || v.starts_with("http://")) && v.len() < 2000)
            }
            "email_to" | "email_from" | "smtp_user" => v.len() < 2000 && !v.contains(['\r', '\n']),
            // Credentials go in smtp_user / smtp_password, not in the URL
            // (the URL is shown on this page).
            "smtp_url" => {
                v.is_empty()
                    || ((v.starts_with("smtp://") || v.starts_with("smtps://"))
                        && !v.contains('@')
                        && v.len() < 2000)
            }
            // Write-only: an empty field keeps the stored password.
            "smtp_password" if v.is_empty() => continue,
            "smtp_password" => v.len() < 1000,
            "syslog_url" => {
                v.is_empty()
                    || ((v.starts_with("udp://") || v.starts_with("tcp://")) && v.len() < 300)
            }
            "syslog_format" => ["ecs", "cef"].contains(&v.as_str()),
            _ if k.starts_with("policy:") => {
                back = "/console/policies";
                ["alert_only", "kill", "isolate"].contains(&v.as_str()) && k.len() < 200
            }
            _ => false,
        };
        if !ok {
            return Err(ctx.error(StatusCode::BAD_REQUEST, "error"));
        }
        // Secrets are stored sealed with the manager's key.
        let stored = if k == "smtp_password" {
            crate::notify::seal_smtp_password(&st.core.secrets, org, v)
        } else {
            v.clone()
        };
        queries::set_setting(&st.core.store, org, k, &stored)
            .await
            .map_err(ie(l))?;
        // The audit log records that a secret changed, not the secret.
        let logged = if k == "smtp_password" { "(secret)" } else { v };
        admin_audit(&st, &ctx, "change_setting", k, logged).await?;
    }
    Ok(Redirect::to(back).into_response())
}

// ---------------------------------------------------------------- audit

pub async fn audit(State(st): State<ConsoleState>, ctx: Ctx) -> Page {
    let l = ctx.lang;
    let entries = st
        .core
        .store
        .audit_view(&ctx.session.org, &st.core.default_org, 500)
        .await
        .map_err(ie(l))?;
    let content = html! {
        table {
            thead { tr { th scope="col" { (l.t("time")) } th scope="col" { (l.t("actor")) } th scope="col" { (l.t("action")) } th scope="col" { (l.t("target")) } th scope="col" { (l.t("reason")) } th scope="col" { (l.t("outcome")) } } }
            tbody {
                @for e in &entries {
                    tr { td { (time(e["time"].as_i64().unwrap_or(0))) } td { (s(e, "actor")) } td { (s(e, "action")) } td { (s(e, "target")) } td { (s(e, "reason")) } td { (s(e, "outcome")) } }
                }
            }
        }
    };
    Ok(page(&ctx, l.t("audit"), "/console/audit", content).into_response())
}

// ---------------------------------------------------------------- VPN users

fn vpn_page(
    ctx: &Ctx,
    users: &[vigie_radius::store::UserRecord],
    enrolled: Option<(&str, &str)>,
    msg: Option<&str>,
) -> Response {
    let l = ctx.lang;
    let now = chrono::Utc::now().timestamp();
    let content = html! {
        (flash(l, msg))
        @if let Some((name, svg)) = enrolled {
            section.enrolment aria-labelledby="enrolled" {
                h2 #enrolled { (l.t("enrol_for")) " " (name) }
                figure.qr #qr role="img" aria-label=(l.t("qr_code")) { (trusted_svg(svg)) }
                p { (l.t("enrol_once")) }
            }
        }
        table {
            thead { tr { th scope="col" { (l.t("username")) } th scope="col" { (l.t("backend")) } th scope="col" { (l.t("status")) } th scope="col" { (l.t("second_factor_col")) } th scope="col" { (l.t("failures")) } th scope="col" { (l.t("action")) } } }
            tbody {
                @for u in users {
                    tr {
                        td { (u.name) }
                        td { (u.backend) }
                        td { @if u.locked_until > now { span.lvl.high { (l.t("locked_until")) " " (time(u.locked_until * 1000)) } } @else if u.disabled { (l.t("disabled")) } @else { (l.t("not_locked")) } }
                        td { @if u.totp_secret.is_some() { (l.t("enrolled")) } @else { (l.t("not_enrolled")) } }
                        td.num { (u.failures) }
                        td.actions {
                            @for (action, key) in [("enrol", "enrol"), ("reset", "reset"), ("unlock", "unlock")] {
                                form method="post" action={ "/console/vpn-users/" (u.name) "/" (action) } {
                                    (csrf(ctx)) button type="submit" aria-label={ (l.t(key)) " " (u.name) } { (l.t(key)) }
                                }
                            }
                        }
                    }
                }
                @if users.is_empty() { tr { td colspan="6" { (l.t("none")) } } }
            }
        }
        h2 { (l.t("create_user")) }
        form method="post" action="/console/vpn-users" {
            (csrf(ctx))
            p { label for="vpn-name" { (l.t("username")) } br; input #vpn-name name="name" required maxlength="253"; }
            p { label for="vpn-password" { (l.t("local_password")) } br; input #vpn-password name="password" type="password" autocomplete="new-password"; }
            p { button type="submit" { (l.t("create")) } }
        }
    };
    page(ctx, l.t("vpn_users"), "/console/vpn-users", content).into_response()
}

pub async fn vpn_users(State(st): State<ConsoleState>, ctx: Ctx, Query(m): Query<Msg>) -> Page {
    ctx.require("admin")?;
    let users = st.mfa.list_users().await.map_err(ie(ctx.lang))?;
    Ok(vpn_page(&ctx, &users, None, m.msg.as_deref()))
}

#[derive(Deserialize)]
pub struct VpnUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub async fn vpn_user_create(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Form(f): Form<VpnUserForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("admin")?;
    let actor = ctx.principal().actor;
    let pw = (!f.password.is_empty()).then_some(f.password.as_bytes());
    if let Err(e) = vigie_radius::store::validate_name("user", f.name.trim()) {
        tracing::info!("console: VPN user refused: {e}");
        return Err(ctx.error(StatusCode::BAD_REQUEST, "error"));
    }
    vigie_radius::admin::add_user(&st.mfa, &actor, f.name.trim(), pw)
        .await
        .map_err(ie(ctx.lang))?;
    admin_audit(&st, &ctx, "vpn_user_add", f.name.trim(), "").await?;
    Ok(Redirect::to("/console/vpn-users?msg=done").into_response())
}

pub async fn vpn_user_action(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Page {
    ctx.check_csrf(&f.csrf)?;
    ctx.require("admin")?;
    let l = ctx.lang;
    if st.mfa.get_user(&name).await.map_err(ie(l))?.is_none() {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    }
    let actor = ctx.principal().actor;
    match action.as_str() {
        "enrol" => {
            let e = vigie_radius::admin::enroll(
                &st.mfa,
                &st.core.secrets,
                &actor,
                &name,
                vigie_radius::totp::Algorithm::SHA1,
                6,
                "Vigie VPN",
            )
            .await
            .map_err(ie(l))?;
            let svg = vigie_radius::admin::qr_svg(&e.uri).map_err(ie(l))?;
            admin_audit(&st, &ctx, "vpn_user_enrol", &name, "").await?;
            let users = st.mfa.list_users().await.map_err(ie(l))?;
            Ok(vpn_page(&ctx, &users, Some((&name, &svg)), None))
        }
        "reset" => {
            st.mfa.reset_totp(&name).await.map_err(ie(l))?;
            admin_audit(&st, &ctx, "vpn_user_reset", &name, "").await?;
            Ok(Redirect::to("/console/vpn-users?msg=done").into_response())
        }
        "unlock" => {
            st.mfa.unlock(&name).await.map_err(ie(l))?;
            admin_audit(&st, &ctx, "vpn_user_unlock", &name, "").await?;
            Ok(Redirect::to("/console/vpn-users?msg=done").into_response())
        }
        _ => Err(ctx.error(StatusCode::NOT_FOUND, "not_found")),
    }
}

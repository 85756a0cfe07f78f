//! The REST API under `/api/v1`: JSON, bearer tokens (hashed at rest),
//! errors as `{"error": "..."}` with the right 4xx code. Roles: read-only
//! reads; analyst also triages alerts and isolates/releases hosts; admin
//! also manages tokens, users and agents. Every call sees only its
//! organisation.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Core;
use crate::store::{AuditEntry, Principal};

type AppState = Arc<Core>;

/// An API error: status code and a message for the caller.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!("API: {e:#}");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the manager's log)".into(),
        )
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}
fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

/// The authenticated caller.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, core: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "missing Authorization: Bearer TOKEN header".into(),
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .filter(|t| !t.is_empty() && t.len() < 512)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "malformed Authorization header (expected Bearer TOKEN)".into(),
                )
            })?;
        match core.store.api_principal(token).await? {
            Some(p) => Ok(Auth(p)),
            None => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "invalid, expired or revoked API token".into(),
            )),
        }
    }
}

impl Auth {
    fn require(&self, role: &str) -> Result<(), ApiError> {
        require_role(&self.0, role)
    }
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| bad(format!("invalid JSON body: {}", e.body_text())))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| bad(format!("invalid query: {}", e.body_text())))
}

pub fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/login", post(login))
        .route("/api/v1/hosts", get(list_hosts))
        .route("/api/v1/hosts/{id}", get(get_host))
        .route("/api/v1/hosts/{id}/isolate", post(isolate))
        .route("/api/v1/hosts/{id}/release", post(release))
        .route("/api/v1/hosts/{id}/kill", post(kill))
        .route("/api/v1/hosts/{id}/revoke", post(revoke_host))
        .route("/api/v1/hosts/{id}/release-code", post(release_code_api))
        .route("/api/v1/commands/{id}", get(get_command))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert).patch(update_alert))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}/report", get(incident_report))
        .route("/api/v1/events", get(search_events))
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/rules", get(list_rules).post(upload_rule))
        .route("/api/v1/rules/validate", post(validate_rule))
        .route("/api/v1/rules/{id}", patch(set_rule_enabled))
        .route("/api/v1/policies", get(list_policies))
        .route("/api/v1/policies/{group}", axum::routing::put(set_policy))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/api/v1/enrollment-tokens", post(create_enroll_token))
        .route("/api/v1/users", get(list_users).post(add_user))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such API endpoint".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(core)
}

// Routes unused by `patch` import otherwise.
#[allow(dead_code)]
fn _unused() -> axum::routing::MethodRouter<AppState> {
    patch(|| async {})
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

/// Password login: returns a bearer token valid 12 hours.
async fn login(
    State(core): State<AppState>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> ApiResult {
    let b = json_body(body)?;
    let Some((user_id, org, role)) = core.store.verify_user(&b.username, &b.password).await? else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        ));
    };
    let token = core
        .store
        .create_api_token(
            &org,
            Some(&user_id),
            &format!("login:{}", b.username),
            &role,
            Some(12 * 3600 * 1000),
        )
        .await?;
    core.store
        .append_audit(&AuditEntry {
            org: org.clone(),
            actor: format!("user:{}", b.username),
            action: "login".into(),
            target: "api".into(),
            reason: String::new(),
            outcome: "succeeded".into(),
            details: json!({}),
        })
        .await?;
    ok(json!({"token": token, "org": org, "role": role, "expires_in": 43200}))
}

async fn list_hosts(State(core): State<AppState>, auth: Auth) -> ApiResult {
    let mut hosts = core.store.list_hosts(&auth.0.org).await?;
    for h in &mut hosts {
        let online = h["id"].as_str().is_some_and(|id| core.is_online(id));
        h["online"] = json!(online);
    }
    ok(json!({"hosts": hosts}))
}

async fn get_host(State(core): State<AppState>, auth: Auth, Path(id): Path<String>) -> ApiResult {
    let mut host = core
        .store
        .get_host(&auth.0.org, &id)
        .await?
        .ok_or_else(|| not_found("host"))?;
    host["online"] = json!(core.is_online(&id));
    host["recent_alerts"] = json!(
        core.store
            .list_alerts(&auth.0.org, Some(&id), None, 0, 20)
            .await?
    );
    ok(host)
}

#[derive(Deserialize, Default)]
struct ActionBody {
    #[serde(default)]
    reason: String,
    /// How long to wait for the agent's verified outcome (default 30, max 120).
    wait_seconds: Option<u64>,
    pid: Option<u32>,
}

async fn host_command(
    core: &Core,
    auth: &Auth,
    id: &str,
    kind: &str,
    body: ActionBody,
) -> ApiResult {
    let wait = Duration::from_secs(body.wait_seconds.unwrap_or(30).min(120));
    let (code, cmd) = host_action(core, &auth.0, id, kind, &body.reason, body.pid, wait).await?;
    Ok((code, Json(json!({"command": cmd}))).into_response())
}

/// Refuse a caller whose role ranks below `role` (read-only < analyst < admin).
pub fn require_role(p: &Principal, role: &str) -> Result<(), ApiError> {
    let rank = |r: &str| match r {
        "admin" => 3,
        "analyst" => 2,
        _ => 1,
    };
    if rank(&p.role) < rank(role) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("this needs the {role} role (you are {})", p.role),
        ));
    }
    Ok(())
}

/// Isolate, release or kill on a host, for the API and the console alike:
/// role check first (nothing is sent for a caller without the right),
/// a reason for the audit log, the command to the agent, then its verified
/// outcome (200 succeeded, 502 failed, 202 still waiting).
pub async fn host_action(
    core: &Core,
    who: &Principal,
    id: &str,
    kind: &str,
    reason: &str,
    pid: Option<u32>,
    wait: Duration,
) -> Result<(StatusCode, crate::store::CommandRow), ApiError> {
    require_role(who, "analyst")?;
    if reason.trim().is_empty() {
        return Err(bad("a reason is required (it goes to the audit log)"));
    }
    if reason.len() > 1000 {
        return Err(bad("reason longer than 1000 characters"));
    }
    core.store
        .get_host(&who.org, id)
        .await?
        .ok_or_else(|| not_found("host"))?;
    let args = match (kind, pid) {
        ("kill", Some(pid)) => json!({"pid": pid.to_string()}),
        ("kill", None) => return Err(bad("kill needs a pid")),
        _ => json!({}),
    };
    let cmd = core
        .request_command(&who.org, id, kind, &who.actor, reason.trim(), args)
        .await?;
    let cmd = core.wait_command(&cmd.id, wait).await?;
    let code = match cmd.status.as_str() {
        "succeeded" => StatusCode::OK,
        "failed" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::ACCEPTED, // still waiting for the agent
    };
    Ok((code, cmd))
}

async fn isolate(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> ApiResult {
    host_command(&core, &auth, &id, "isolate", json_body(body)?).await
}
async fn release(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> ApiResult {
    host_command(&core, &auth, &id, "release", json_body(body)?).await
}
async fn kill(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> ApiResult {
    host_command(&core, &auth, &id, "kill", json_body(body)?).await
}

#[derive(Deserialize, Default)]
struct ReleaseCodeBody {
    #[serde(default)]
    reason: String,
    /// "release" (default) or "stop".
    #[serde(default)]
    purpose: Option<String>,
}

async fn release_code_api(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<ReleaseCodeBody>, JsonRejection>,
) -> ApiResult {
    let b = json_body(body)?;
    let purpose = b.purpose.as_deref().unwrap_or("release");
    ok(release_code(&core, &auth.0, &id, purpose, &b.reason).await?)
}

/// An offline code for a host, for the API and the console: "release"
/// (analyst) lifts isolation, "stop" (admin) lets a local admin stop the
/// agent. The person on the host types it into `vigie agent release
/// --code`; the agent checks it against the secret it sent at enrolment.
/// Valid for the current and the next UTC hour. The audit log records who
/// asked and why, never the code.
pub async fn release_code(
    core: &Core,
    who: &Principal,
    id: &str,
    purpose: &str,
    reason: &str,
) -> Result<Value, ApiError> {
    use vigie_respond::release::{self, Purpose};
    let (p, role, command) = match purpose {
        "release" => (Purpose::Release, "analyst", "vigie agent release --code"),
        "stop" => (Purpose::Stop, "admin", "vigie agent stop --code"),
        _ => return Err(bad("purpose is \"release\" or \"stop\"")),
    };
    require_role(who, role)?;
    if reason.trim().is_empty() {
        return Err(bad("a reason is required (it goes to the audit log)"));
    }
    if reason.len() > 1000 {
        return Err(bad("reason longer than 1000 characters"));
    }
    let secret = match core.store.release_secret(&who.org, id).await? {
        None => return Err(not_found("host")),
        Some(None) => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                "this agent enrolled without a release secret (older agent): \
                 re-enrol it, or read the code on the host with `vigie agent release-code`"
                    .into(),
            ));
        }
        Some(Some(s)) => s,
    };
    let hour = release::current_hour();
    let code = release::code_for(&secret, p, hour);
    // The agent accepts the code of this hour and of the previous one.
    let valid_until = chrono::DateTime::from_timestamp((hour + 2) * 3600, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    core.store
        .append_audit(&AuditEntry {
            org: who.org.clone(),
            actor: who.actor.clone(),
            action: format!("{purpose}_code"),
            target: id.to_string(),
            reason: reason.trim().to_string(),
            outcome: "issued".into(),
            details: json!({"valid_until": valid_until}),
        })
        .await?;
    Ok(json!({
        "code": code,
        "purpose": purpose,
        "valid_until": valid_until,
        "how": format!("on the host, as root: {command} {code}"),
    }))
}

async fn revoke_host(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> ApiResult {
    auth.require("admin")?;
    let body = json_body(body)?;
    core.store
        .get_host(&auth.0.org, &id)
        .await?
        .ok_or_else(|| not_found("host"))?;
    let ids = core.store.revoke_agent(Some(&auth.0.org), &id).await?;
    for h in &ids {
        core.drop_session(h);
    }
    core.store
        .append_audit(&AuditEntry {
            org: auth.0.org.clone(),
            actor: auth.0.actor.clone(),
            action: "revoke_agent".into(),
            target: id.clone(),
            reason: body.reason,
            outcome: if ids.is_empty() {
                "already revoked".into()
            } else {
                "revoked; stream closed".into()
            },
            details: json!({}),
        })
        .await?;
    ok(json!({"revoked": ids}))
}

async fn get_command(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult {
    match core.store.get_command(&id).await? {
        Some(c) if c.org == auth.0.org => ok(json!({"command": c})),
        _ => Err(not_found("command")),
    }
}

#[derive(Deserialize)]
struct AlertQuery {
    host: Option<String>,
    status: Option<String>,
    level: Option<String>,
    limit: Option<i64>,
}

async fn list_alerts(
    State(core): State<AppState>,
    auth: Auth,
    q: Result<Query<AlertQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let min = match &q.level {
        Some(l) => l
            .parse::<vigie_event::Level>()
            .map_err(|e| bad(e.to_string()))?
            .severity() as i64,
        None => 0,
    };
    let alerts = core
        .store
        .list_alerts(
            &auth.0.org,
            q.host.as_deref(),
            q.status.as_deref(),
            min,
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    ok(json!({"alerts": alerts}))
}

/// The process tree of an alert: ancestors (oldest first), then the
/// process that matched, then what else the alert's events show it started.
pub fn process_tree(doc: &Value) -> Value {
    let events = doc["vigie"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(first) = events.first() else {
        return Value::Null;
    };
    let p = &first["process"];
    let node = |v: &Value| json!({"pid": v["pid"], "name": v["name"], "executable": v["executable"], "command_line": v["command_line"], "entity_id": v["entity_id"]});
    let mut chain: Vec<Value> = p["vigie"]["ancestors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .rev()
        .map(node)
        .collect();
    if p["parent"].is_object() {
        chain.push(node(&p["parent"]));
    }
    let mut culprit = node(p);
    culprit["culprit"] = json!(true);
    let children: Vec<Value> = events
        .iter()
        .skip(1)
        .filter(|e| e["process"]["parent"]["entity_id"] == p["entity_id"])
        .map(|e| node(&e["process"]))
        .collect();
    culprit["children"] = json!(children);
    chain.push(culprit);
    json!(chain)
}

async fn get_alert(State(core): State<AppState>, auth: Auth, Path(id): Path<String>) -> ApiResult {
    let (mut summary, doc) = core
        .store
        .get_alert(&auth.0.org, &id)
        .await?
        .ok_or_else(|| not_found("alert"))?;
    summary["process_tree"] = process_tree(&doc);
    summary["rule"] = doc["rule"].clone();
    summary["document"] = doc;
    ok(summary)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertUpdate {
    status: Option<String>,
    assignee: Option<String>,
    verdict: Option<String>,
    comment: Option<String>,
}

async fn update_alert(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<AlertUpdate>, JsonRejection>,
) -> ApiResult {
    auth.require("analyst")?;
    let b = json_body(body)?;
    if b.status
        .as_deref()
        .is_some_and(|s| !["new", "acknowledged", "closed"].contains(&s))
    {
        return Err(bad("status must be new, acknowledged or closed"));
    }
    if b.verdict
        .as_deref()
        .is_some_and(|v| !["true_positive", "false_positive", "benign"].contains(&v))
    {
        return Err(bad(
            "verdict must be true_positive, false_positive or benign",
        ));
    }
    if !core
        .store
        .update_alert(
            &auth.0.org,
            &id,
            b.status.as_deref(),
            b.assignee.as_deref(),
            b.verdict.as_deref(),
        )
        .await?
    {
        return Err(not_found("alert"));
    }
    if let Some(c) = &b.comment {
        core.store
            .add_comment(&auth.0.org, &id, &auth.0.actor, c)
            .await?;
    }
    core.store
        .append_audit(&AuditEntry {
            org: auth.0.org.clone(),
            actor: auth.0.actor.clone(),
            action: "update_alert".into(),
            target: id.clone(),
            reason: b.comment.clone().unwrap_or_default(),
            outcome: "updated".into(),
            details: json!({"status": b.status, "assignee": b.assignee, "verdict": b.verdict}),
        })
        .await?;
    let (summary, _) = core
        .store
        .get_alert(&auth.0.org, &id)
        .await?
        .ok_or_else(|| not_found("alert"))?;
    ok(summary)
}

async fn list_incidents(State(core): State<AppState>, auth: Auth) -> ApiResult {
    ok(json!({"incidents": core.store.list_incidents(&auth.0.org, 200).await?}))
}

#[derive(Deserialize)]
struct ReportQuery {
    /// "en" or "fr"; else the Accept-Language header, else English.
    lang: Option<String>,
}

/// The incident report as HTML (the same document as the console's), in
/// the caller's language; another organisation's incident is not found.
async fn incident_report(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> ApiResult {
    use crate::console::{i18n::Lang, report};
    let q = query(q)?;
    let lang = match q.lang.as_deref() {
        Some(l) => Lang::parse(l).ok_or_else(|| bad("lang must be en or fr"))?,
        None => Lang::pick(
            None,
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|h| h.to_str().ok()),
        ),
    };
    let r = report::Report::load(&core.store, &auth.0.org, &id, &auth.0.actor)
        .await?
        .ok_or_else(|| not_found("incident"))?;
    Ok(report::respond(report::render(lang, &r), &id))
}

#[derive(Deserialize)]
struct EventQuery {
    host: Option<String>,
    /// Milliseconds since the epoch.
    from: Option<i64>,
    to: Option<i64>,
    process: Option<String>,
    user: Option<String>,
    limit: Option<i64>,
}

async fn search_events(
    State(core): State<AppState>,
    auth: Auth,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let events = core
        .store
        .search_events(
            &auth.0.org,
            q.host.as_deref(),
            q.from.unwrap_or(0),
            q.to.unwrap_or(i64::MAX),
            q.process.as_deref(),
            q.user.as_deref(),
            q.limit.unwrap_or(100).clamp(1, 10_000),
        )
        .await?;
    ok(json!({"events": events}))
}

async fn list_audit(State(core): State<AppState>, auth: Auth) -> ApiResult {
    let audit = core
        .store
        .audit_view(&auth.0.org, &core.default_org, 1000)
        .await?;
    ok(json!({ "audit": audit }))
}

async fn list_tokens(State(core): State<AppState>, auth: Auth) -> ApiResult {
    auth.require("admin")?;
    ok(json!({"tokens": core.store.list_api_tokens(&auth.0.org).await?}))
}

#[derive(Deserialize)]
struct TokenBody {
    name: String,
    role: String,
    expires_hours: Option<i64>,
}

async fn create_token(
    State(core): State<AppState>,
    auth: Auth,
    body: Result<Json<TokenBody>, JsonRejection>,
) -> ApiResult {
    auth.require("admin")?;
    let b = json_body(body)?;
    crate::store::check_role(&b.role).map_err(|e| bad(e.to_string()))?;
    let secret = core
        .store
        .create_api_token(
            &auth.0.org,
            None,
            &b.name,
            &b.role,
            b.expires_hours.map(|h| h * 3_600_000),
        )
        .await?;
    audit(&core, &auth, "create_api_token", &b.name, "created").await?;
    Ok((StatusCode::CREATED, Json(json!({"token": secret}))).into_response())
}

async fn revoke_token(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult {
    auth.require("admin")?;
    if !core.store.revoke_api_token(&auth.0.org, &id).await? {
        return Err(not_found("token"));
    }
    audit(&core, &auth, "revoke_api_token", &id, "revoked").await?;
    ok(json!({"revoked": id}))
}

#[derive(Deserialize)]
struct EnrollTokenBody {
    expires_hours: Option<i64>,
}

async fn create_enroll_token(
    State(core): State<AppState>,
    auth: Auth,
    body: Result<Json<EnrollTokenBody>, JsonRejection>,
) -> ApiResult {
    auth.require("admin")?;
    let b = json_body(body)?;
    let hours = b.expires_hours.unwrap_or(24).clamp(1, 24 * 30);
    let (id, secret) = core
        .store
        .create_enroll_token(&auth.0.org, hours * 3_600_000)
        .await?;
    audit(&core, &auth, "create_enrollment_token", &id, "created").await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "token": format!("{secret}.{}", core.pki.ca_fingerprint())})),
    )
        .into_response())
}

async fn list_users(State(core): State<AppState>, auth: Auth) -> ApiResult {
    auth.require("admin")?;
    ok(json!({"users": core.store.list_users(&auth.0.org).await?}))
}

#[derive(Deserialize)]
struct UserBody {
    username: String,
    password: String,
    role: String,
}

async fn add_user(
    State(core): State<AppState>,
    auth: Auth,
    body: Result<Json<UserBody>, JsonRejection>,
) -> ApiResult {
    auth.require("admin")?;
    let b = json_body(body)?;
    crate::store::check_role(&b.role).map_err(|e| bad(e.to_string()))?;
    if b.password.len() < 12 {
        return Err(bad("password shorter than 12 characters"));
    }
    let id = core
        .store
        .add_user(&auth.0.org, &b.username, &b.password, &b.role)
        .await
        .map_err(|e| ApiError(StatusCode::CONFLICT, format!("{e:#}")))?;
    audit(&core, &auth, "add_user", &b.username, "created").await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

// ---- rules and policies (pushed to the agents by config_sync)

#[derive(Deserialize)]
struct RuleBody {
    source: String,
}

fn problems_json(problems: &[(Option<usize>, String)]) -> Value {
    problems
        .iter()
        .map(|(line, reason)| json!({"line": line, "reason": reason}))
        .collect()
}

async fn check_rule(
    source: String,
) -> Result<Result<String, Vec<(Option<usize>, String)>>, ApiError> {
    if source.len() > 1_000_000 {
        return Err(bad("rule document larger than 1 MB"));
    }
    // Compiling rules is CPU work: off the async threads.
    tokio::task::spawn_blocking(move || crate::config_sync::validate_rule_source(&source))
        .await
        .map_err(|e| ApiError::from(anyhow::anyhow!("rule check: {e}")))
}

async fn list_rules(State(core): State<AppState>, auth: Auth) -> ApiResult {
    let rules = crate::console::queries::rules(&core.store, &auth.0.org).await?;
    ok(json!({"rules": rules}))
}

async fn validate_rule(
    State(_core): State<AppState>,
    auth: Auth,
    body: Result<Json<RuleBody>, JsonRejection>,
) -> ApiResult {
    auth.require("analyst")?;
    let b = json_body(body)?;
    ok(match check_rule(b.source).await? {
        Ok(title) => json!({"valid": true, "title": title, "problems": []}),
        Err(p) => json!({"valid": false, "problems": problems_json(&p)}),
    })
}

/// Keep a Sigma rule document (admin); the agents of the organisation get
/// it within seconds. 422 with every problem and its line if it does not
/// compile.
async fn upload_rule(
    State(core): State<AppState>,
    auth: Auth,
    body: Result<Json<RuleBody>, JsonRejection>,
) -> ApiResult {
    auth.require("admin")?;
    let source = json_body(body)?.source.replace("\r\n", "\n");
    let title = match check_rule(source.clone()).await? {
        Ok(t) => t,
        Err(p) => {
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": "the rule does not compile", "problems": problems_json(&p)})),
            )
                .into_response());
        }
    };
    let id =
        crate::console::queries::add_rule(&core.store, &auth.0.org, &title, &source, &auth.0.actor)
            .await?;
    audit(&core, &auth, "upload_rule", &id, &title).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "title": title}))).into_response())
}

#[derive(Deserialize)]
struct RuleState {
    enabled: Option<bool>,
    /// Host groups the rule goes to; empty: every group.
    groups: Option<Vec<String>>,
}

async fn set_rule_enabled(
    State(core): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Result<Json<RuleState>, JsonRejection>,
) -> ApiResult {
    auth.require("admin")?;
    let b = json_body(body)?;
    if b.enabled.is_none() && b.groups.is_none() {
        return Err(bad("give enabled and/or groups"));
    }
    let groups = match &b.groups {
        Some(g) => {
            Some(crate::console::queries::rule_groups(g.iter().map(String::as_str)).map_err(bad)?)
        }
        None => None,
    };
    if !crate::console::queries::update_rule(
        &core.store,
        &auth.0.org,
        &id,
        b.enabled,
        groups.as_deref(),
    )
    .await?
    {
        return Err(not_found("rule"));
    }
    if let Some(e) = b.enabled {
        let what = if e { "enabled" } else { "disabled" };
        audit(&core, &auth, "toggle_rule", &id, what).await?;
    }
    if let Some(g) = &groups {
        let what = if g.is_empty() {
            "all groups"
        } else {
            g.as_str()
        };
        audit(&core, &auth, "assign_rule", &id, what).await?;
    }
    ok(json!({"id": id, "enabled": b.enabled, "groups": groups}))
}

/// Each group's policy and how many of its hosts run the current version.
async fn list_policies(State(core): State<AppState>, auth: Auth) -> ApiResult {
    let org = &auth.0.org;
    let mut out = Vec::new();
    for (group, hosts) in crate::console::queries::groups(&core.store, org).await? {
        let choice =
            crate::console::queries::setting(&core.store, org, &format!("policy:{group}")).await?;
        let d = crate::config_sync::desired(&core.store, org, &group).await?;
        out.push(json!({
            "group": group, "hosts": hosts, "policy": choice,
            "policy_version": d.policy_version, "rules_version": d.rules_version,
        }));
    }
    ok(json!({"policies": out, "choices": crate::config_sync::POLICY_CHOICES}))
}

#[derive(Deserialize)]
struct PolicyBody {
    policy: String,
}

async fn set_policy(
    State(core): State<AppState>,
    auth: Auth,
    Path(group): Path<String>,
    body: Result<Json<PolicyBody>, JsonRejection>,
) -> ApiResult {
    auth.require("admin")?;
    let b = json_body(body)?;
    if !crate::config_sync::POLICY_CHOICES.contains(&b.policy.as_str()) {
        return Err(bad(format!(
            "policy is one of {}",
            crate::config_sync::POLICY_CHOICES.join(", ")
        )));
    }
    if group.is_empty() || group.len() > 200 {
        return Err(bad("group name of 1 to 200 characters"));
    }
    crate::console::queries::set_setting(
        &core.store,
        &auth.0.org,
        &format!("policy:{group}"),
        &b.policy,
    )
    .await?;
    audit(&core, &auth, "set_policy", &group, &b.policy).await?;
    ok(json!({"group": group, "policy": b.policy}))
}

async fn audit(
    core: &Core,
    auth: &Auth,
    action: &str,
    target: &str,
    outcome: &str,
) -> Result<(), ApiError> {
    core.store
        .append_audit(&AuditEntry {
            org: auth.0.org.clone(),
            actor: auth.0.actor.clone(),
            action: action.into(),
            target: target.into(),
            reason: String::new(),
            outcome: outcome.into(),
            details: json!({}),
        })
        .await?;
    Ok(())
}

/// The OpenAPI 3.1 document. Written as data next to the route table
/// rather than derived (utoipa would need an annotation on every handler
/// for the same result).
async fn openapi() -> Json<Value> {
    let op = |summary: &str| json!({"summary": summary, "security": [{"bearer": []}], "responses": {"200": {"description": "OK"}, "401": {"description": "missing or bad token"}, "403": {"description": "role too low"}}});
    let paths = json!({
        "/api/v1/login": {"post": {"summary": "Password login; returns a bearer token valid 12 h", "responses": {"200": {"description": "token"}, "401": {"description": "wrong credentials"}}}},
        "/api/v1/hosts": {"get": op("List hosts (facts, last seen, isolation, online)")},
        "/api/v1/hosts/{id}": {"get": op("Host detail with recent alerts")},
        "/api/v1/hosts/{id}/isolate": {"post": op("Isolate the host; waits for the agent's verified outcome (body: reason, wait_seconds)")},
        "/api/v1/hosts/{id}/release": {"post": op("Release the host from isolation (body: reason)")},
        "/api/v1/hosts/{id}/kill": {"post": op("Kill a process tree (body: pid, reason)")},
        "/api/v1/hosts/{id}/revoke": {"post": op("Revoke the agent's certificate; its stream is closed at once (admin)")},
        "/api/v1/hosts/{id}/release-code": {"post": op("An offline release code for the host, valid this hour and the next (body: reason, purpose=release|stop; stop needs admin); 409 if the agent enrolled without a release secret")},
        "/api/v1/commands/{id}": {"get": op("A command and its outcome")},
        "/api/v1/alerts": {"get": op("Filter alerts (host, status, level, limit)")},
        "/api/v1/alerts/{id}": {"get": op("Alert detail with process tree"), "patch": op("Update status, assignee, verdict, add a comment")},
        "/api/v1/incidents": {"get": op("Incidents: alerts grouped by host and time")},
        "/api/v1/incidents/{id}/report": {"get": op("The incident report (text/html, prints on A4): timeline, hosts, accounts, indicators, actions, CNIL breach-notification facts, who to call (query: lang=en|fr, else Accept-Language)")},
        "/api/v1/events": {"get": op("Search telemetry (host, from, to, process, user, limit)")},
        "/api/v1/audit": {"get": op("The audit log (append-only)")},
        "/api/v1/rules": {"get": op("Uploaded Sigma rules"), "post": op("Upload a Sigma rule document (admin; body: source); 422 with problems and lines if it does not compile; the organisation's agents get it within seconds")},
        "/api/v1/rules/validate": {"post": op("Check a Sigma rule document without keeping it (analyst; body: source)")},
        "/api/v1/rules/{id}": {"patch": op("Enable or disable an uploaded rule, or assign it to host groups (admin; body: enabled, groups = [names], [] for every group)")},
        "/api/v1/policies": {"get": op("Each host group's response policy and the current rule and policy versions")},
        "/api/v1/policies/{group}": {"put": op("Set a group's response policy (admin; body: policy = alert_only | kill | isolate); its agents get it within seconds")},
        "/api/v1/tokens": {"get": op("List API tokens (admin)"), "post": op("Create an API token (admin; body: name, role, expires_hours)")},
        "/api/v1/tokens/{id}": {"delete": op("Revoke an API token (admin)")},
        "/api/v1/enrollment-tokens": {"post": op("Create a one-time agent enrolment token (admin; body: expires_hours)")},
        "/api/v1/users": {"get": op("List users (admin)"), "post": op("Add a user (admin; body: username, password, role)")}
    });
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "Vigie manager API", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths
    }))
}

/// rustls server configuration for the API (the manager's certificate).
pub fn tls_acceptor(pki: &crate::pki::Pki) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(pki.server_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("server.pem")?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).context("server.key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serve the router over TLS until `stop` changes.
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => { tracing::warn!("API accept: {e}"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            _ = stop.changed() => return,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    _ => return,
                };
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

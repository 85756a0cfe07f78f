//! The web console, served by the manager on the API's HTTPS listener
//! under `/console/`: server-rendered HTML (maud: checked at compile time,
//! every interpolation escaped), CSS and a few lines of JavaScript embedded
//! in the binary, nothing fetched at run time.
//!
//! Security: password (argon2id) and, for admins, TOTP (vigie-radius's
//! code); sessions in the database (only the SHA-256 of the id is kept),
//! cookie `HttpOnly; Secure; SameSite=Strict`, a new id at each login step
//! (no fixation); a synchroniser CSRF token per session on every form,
//! compared in constant time (before sign-in, a token sealed with the
//! manager's key and bound to the visitor's cookie: see [`Prelogin`], so
//! opening the login page writes nothing to the database); lockout after
//! repeated failures; roles enforced on the server for every action; admin
//! actions in the audit log.
//!
//! Main types: [`ConsoleState`], [`Ctx`] (the signed-in user of a request),
//! [`i18n::Lang`]. Pages are in [`pages`], login in [`auth`].

// Handlers return a rendered error page as their Err: the axum idiom.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod i18n;
pub mod layout;
pub mod pages;
pub mod process_tree;
pub mod queries;
pub mod report;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::Core;
use crate::store::{Principal, now_ms, random_secret, sha256_hex};
use i18n::Lang;

pub const SESSION_COOKIE: &str = "vigie_session";
/// A signed-in session lasts 8 hours; a login in progress 15 minutes.
pub const SESSION_MS: i64 = 8 * 3600 * 1000;
pub const PRELOGIN_MS: i64 = 15 * 60 * 1000;

/// What every console handler shares.
#[derive(Clone)]
pub struct ConsoleState {
    pub core: Arc<Core>,
    /// VPN users (vigie-radius tables in the same database).
    pub mfa: vigie_radius::store::Store,
}

impl ConsoleState {
    pub async fn new(core: Arc<Core>) -> anyhow::Result<ConsoleState> {
        let mfa = vigie_radius::store::Store::from_pool(core.store.pool.clone());
        mfa.migrate().await?;
        Ok(ConsoleState { core, mfa })
    }
}

/// A session row.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub user_id: Option<String>,
    pub org: String,
    pub username: String,
    pub role: String,
    /// "anon" (login form), "totp", "totp_enrol", "full".
    pub stage: String,
    pub csrf: String,
    pub pending_totp: Option<String>,
}

impl Session {
    /// Constant-time comparison of the form's token with the session's.
    pub fn csrf_ok(&self, token: &str) -> bool {
        !token.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// A session just created: the cookie value (only its hash is stored) and
/// the session's CSRF token.
pub struct NewSession {
    pub id: String,
    pub csrf: String,
}

/// Create a session.
pub async fn create_session(
    st: &ConsoleState,
    user: Option<(&str, &str, &str, &str)>,
    stage: &str,
    ttl_ms: i64,
) -> anyhow::Result<NewSession> {
    let id = random_secret();
    let csrf = random_secret();
    let (uid, org, name, role) = user.unwrap_or(("", "", "", ""));
    sqlx::query("INSERT INTO console_sessions (id_hash, user_id, org_id, username, role, stage, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(sha256_hex(&id))
        .bind(if uid.is_empty() { None } else { Some(uid) })
        .bind(org)
        .bind(name)
        .bind(role)
        .bind(stage)
        .bind(&csrf)
        .bind(now_ms())
        .bind(now_ms() + ttl_ms)
        .execute(&st.core.store.pool)
        .await?;
    // Expired sessions go when new ones come.
    sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
        .bind(now_ms())
        .execute(&st.core.store.pool)
        .await?;
    Ok(NewSession { id, csrf })
}

pub async fn delete_session(st: &ConsoleState, id_hash: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&st.core.store.pool)
        .await?;
    Ok(())
}

pub async fn load_session(st: &ConsoleState, jar: &CookieJar) -> anyhow::Result<Option<Session>> {
    let Some(c) = jar.get(SESSION_COOKIE) else {
        return Ok(None);
    };
    if c.value().is_empty() || c.value().len() > 100 || c.value().starts_with(PRELOGIN_PREFIX) {
        return Ok(None);
    }
    let row = sqlx::query("SELECT id_hash, user_id, org_id, username, role, stage, csrf, pending_totp FROM console_sessions WHERE id_hash = $1 AND expires_at > $2")
        .bind(sha256_hex(c.value()))
        .bind(now_ms())
        .fetch_optional(&st.core.store.pool)
        .await?;
    Ok(row.map(|r| Session {
        id_hash: r.get(0),
        user_id: r.get(1),
        org: r.get::<Option<String>, _>(2).unwrap_or_default(),
        username: r.get::<Option<String>, _>(3).unwrap_or_default(),
        role: r.get::<Option<String>, _>(4).unwrap_or_default(),
        stage: r.get(5),
        csrf: r.get(6),
        pending_totp: r.get(7),
    }))
}

/// Marks the cookie of a visitor who has not signed in (no session id has
/// this form: those are URL-safe base64 without dots).
const PRELOGIN_PREFIX: &str = "pre.";
const PRELOGIN_CONTEXT: &str = "console-prelogin";

/// A visitor who has not signed in yet. Anyone may open the login page, as
/// often as they like, so this costs no database row: the cookie holds a
/// random nonce, and the login form's CSRF token is that nonce and the time,
/// sealed with the manager's key. The token is good for [`PRELOGIN_MS`] and
/// only with the cookie it was made for.
pub struct Prelogin {
    nonce: String,
}

impl Prelogin {
    /// The visitor's pre-login cookie, if the request carries one.
    pub fn from_jar(jar: &CookieJar) -> Option<Prelogin> {
        let value = jar.get(SESSION_COOKIE)?.value();
        let nonce = value.strip_prefix(PRELOGIN_PREFIX)?;
        (!nonce.is_empty() && nonce.len() <= 64).then(|| Prelogin {
            nonce: nonce.to_string(),
        })
    }

    pub fn new() -> Prelogin {
        Prelogin {
            nonce: random_secret(),
        }
    }

    pub fn cookie(&self) -> Cookie<'static> {
        session_cookie(format!("{PRELOGIN_PREFIX}{}", self.nonce))
    }

    /// A fresh CSRF token for the login form.
    pub fn token(&self, key: &vigie_radius::crypto::MasterKey) -> String {
        key.seal(
            format!("{}|{}", now_ms(), self.nonce).as_bytes(),
            PRELOGIN_CONTEXT,
        )
    }

    /// Whether `token` was made by this manager for this cookie, at most
    /// [`PRELOGIN_MS`] before `now` (milliseconds).
    pub fn token_ok(&self, key: &vigie_radius::crypto::MasterKey, token: &str, now: i64) -> bool {
        let Ok(plain) = key.open(token, PRELOGIN_CONTEXT) else {
            return false;
        };
        let Some((made, nonce)) = std::str::from_utf8(&plain)
            .ok()
            .and_then(|p| p.split_once('|'))
        else {
            return false;
        };
        let fresh = made
            .parse::<i64>()
            .is_ok_and(|t| t <= now && now - t <= PRELOGIN_MS);
        fresh && bool::from(nonce.as_bytes().ct_eq(self.nonce.as_bytes()))
    }
}

impl Default for Prelogin {
    fn default() -> Self {
        Prelogin::new()
    }
}

pub fn session_cookie(id: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, id))
        .path("/console")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .build()
}

pub fn lang_of(jar: &CookieJar, headers: &HeaderMap) -> Lang {
    Lang::pick(
        jar.get("lang").map(|c| c.value()),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|h| h.to_str().ok()),
    )
}

/// The signed-in user of a request (stage "full"); anyone else is sent to
/// the login page.
pub struct Ctx {
    pub session: Session,
    pub lang: Lang,
    pub jar: CookieJar,
}

impl Ctx {
    pub fn principal(&self) -> Principal {
        Principal {
            org: self.session.org.clone(),
            role: self.session.role.clone(),
            actor: format!("user:{}", self.session.username),
        }
    }

    pub fn can(&self, role: &str) -> bool {
        crate::api::require_role(&self.principal(), role).is_ok()
    }

    /// Role check on the server, before anything is done.
    pub fn require(&self, role: &str) -> Result<(), Response> {
        if self.can(role) {
            Ok(())
        } else {
            Err(self.error(StatusCode::FORBIDDEN, "forbidden"))
        }
    }

    /// CSRF check for a form post.
    pub fn check_csrf(&self, token: &str) -> Result<(), Response> {
        if self.session.csrf_ok(token) {
            Ok(())
        } else {
            tracing::warn!(user = %self.session.username, "console: form refused (CSRF token)");
            Err(csrf_refused(self.lang))
        }
    }

    pub fn error(&self, code: StatusCode, key: &'static str) -> Response {
        (code, layout::error_page(self.lang, key)).into_response()
    }
}

impl FromRequestParts<ConsoleState> for Ctx {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, st: &ConsoleState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let lang = lang_of(&jar, &parts.headers);
        match load_session(st, &jar).await {
            Ok(Some(s)) if s.stage == "full" => Ok(Ctx {
                session: s,
                lang,
                jar,
            }),
            Ok(_) => Err(Redirect::to("/console/login").into_response()),
            Err(e) => {
                tracing::error!("console session: {e:#}");
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    layout::error_page(lang, "error"),
                )
                    .into_response())
            }
        }
    }
}

/// A form whose CSRF token is missing or wrong: 403 and nothing done.
pub fn csrf_refused(lang: Lang) -> Response {
    (
        StatusCode::FORBIDDEN,
        layout::error_page(lang, "csrf_refused"),
    )
        .into_response()
}

/// The body of a form that carries only its CSRF token.
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Internal errors become a generic page; the detail goes to the log.
pub fn internal(lang: Lang, e: impl std::fmt::Display) -> Response {
    tracing::error!("console: {e}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        layout::error_page(lang, "error"),
    )
        .into_response()
}

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}
async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// Headers on every console response: a strict CSP (no inline script or
/// style, nothing from elsewhere), no framing, no caching of pages.
async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // A page that brings its own policy keeps it (the incident report: no
    // script at all, only its own inline style sheet, allowed by hash).
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

async fn set_lang(
    State(_st): State<ConsoleState>,
    jar: CookieJar,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let lang = q.get("to").and_then(|l| Lang::parse(l)).unwrap_or(Lang::En);
    let back = q
        .get("back")
        .filter(|b| b.starts_with("/console/") && !b.starts_with("//"))
        .cloned()
        .unwrap_or_else(|| "/console/".into());
    let c = Cookie::build(("lang", lang.code()))
        .path("/console")
        .secure(true)
        .same_site(SameSite::Strict)
        .build();
    (jar.add(c), Redirect::to(&back)).into_response()
}

/// The console's routes (merged into the API router by the manager).
pub fn router(st: ConsoleState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/lang", get(set_lang))
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/login/totp", get(auth::totp_form).post(auth::totp))
        .route("/console/logout", post(auth::logout))
        .route("/console/", get(pages::dashboard))
        .route("/console/hosts", get(pages::hosts))
        .route("/console/hosts/{id}", get(pages::host))
        .route("/console/hosts/{id}/isolate", post(pages::isolate))
        .route("/console/hosts/{id}/release", post(pages::release))
        .route("/console/hosts/{id}/processes", get(process_tree::page))
        .route(
            "/console/hosts/{id}/release-code",
            post(pages::release_code),
        )
        .route(
            "/console/alerts",
            get(pages::alerts).post(pages::alerts_bulk),
        )
        .route(
            "/console/alerts/{id}",
            get(pages::alert).post(pages::alert_update),
        )
        .route("/console/incidents", get(pages::incidents))
        .route("/console/incidents/{id}", get(pages::incident))
        .route(
            "/console/incidents/{id}/export",
            get(pages::incident_export),
        )
        .route(
            "/console/incidents/{id}/report",
            get(report::incident_report),
        )
        .route(
            "/console/incidents/{id}/notification",
            get(report::notes_form).post(report::notes_save),
        )
        .route("/console/rules", get(pages::rules).post(pages::rule_upload))
        .route("/console/rules/{id}/toggle", post(pages::rule_toggle))
        .route("/console/rules/{id}/groups", post(pages::rule_groups))
        .route("/console/policies", get(pages::policies))
        .route(
            "/console/vpn-users",
            get(pages::vpn_users).post(pages::vpn_user_create),
        )
        .route(
            "/console/vpn-users/{name}/{action}",
            post(pages::vpn_user_action),
        )
        .route("/console/audit", get(pages::audit))
        .route(
            "/console/settings",
            get(pages::settings).post(pages::settings_save),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(512 * 1024))
        .with_state(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelogin_token_is_bound_to_its_cookie_and_expires() {
        let key = vigie_radius::crypto::MasterKey::from_bytes([7; 32]);
        let visitor = Prelogin::new();
        let token = visitor.token(&key);
        let now = now_ms();
        assert!(visitor.token_ok(&key, &token, now));
        assert!(visitor.token_ok(&key, &token, now + PRELOGIN_MS - 1_000));
        assert!(
            !visitor.token_ok(&key, &token, now + PRELOGIN_MS + 1_000),
            "expired"
        );
        assert!(
            !visitor.token_ok(&key, &token, now - 60_000),
            "from the future"
        );
        assert!(
            !Prelogin::new().token_ok(&key, &token, now),
            "another cookie"
        );
        let other_key = vigie_radius::crypto::MasterKey::from_bytes([8; 32]);
        assert!(
            !visitor.token_ok(&other_key, &token, now),
            "another manager"
        );
        for bad in ["", "x", &token[..token.len() - 1], &format!("{token}A")] {
            assert!(!visitor.token_ok(&key, bad, now), "{bad:?}");
        }
    }
}

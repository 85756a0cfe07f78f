//! Login: password (argon2id, the manager's users), then for admins a TOTP
//! code (vigie-radius's TOTP: window of one step, never the same step
//! twice), with enrolment at the first admin login. Each step gives a new
//! session id. Lockout: 5 failures lock the account for 1 minute, doubling
//! with each further failure up to 1 hour.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::Form;
use maud::html;
use serde::Deserialize;
use serde_json::json;
use sqlx::Row;
use vigie_radius::totp;

use super::i18n::Lang;
use super::layout::{bare, trusted_svg};
use super::{
    ConsoleState, CsrfForm, PRELOGIN_MS, Prelogin, SESSION_MS, create_session, csrf_refused,
    delete_session, internal, lang_of, load_session, session_cookie,
};
use crate::store::{AuditEntry, now_ms, verify_password};

pub const MAX_FAILURES: i64 = 5;
const ISSUER: &str = "Vigie console";

fn login_page(lang: Lang, csrf: &str, failed: bool) -> maud::Markup {
    html! {
        @if failed { p.error role="alert" { (lang.t("login_failed")) } }
        form.login method="post" action="/console/login" {
            input type="hidden" name="csrf" value=(csrf);
            p { label for="username" { (lang.t("username")) } br; input #username name="username" autocomplete="username" required autofocus; }
            p { label for="password" { (lang.t("password")) } br; input #password name="password" type="password" autocomplete="current-password" required; }
            p { button type="submit" { (lang.t("login")) } }
        }
    }
}

/// GET /console/login: a pre-login session carries the form's CSRF token.
pub async fn login_form(
    State(st): State<ConsoleState>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&jar, &headers);
    let session = match load_session(&st, &jar).await {
        Ok(s) => s,
        Err(e) => return internal(lang, format!("{e:#}")),
    };
    if session.is_some_and(|s| s.stage == "full") {
        return Redirect::to("/console/").into_response();
    }
    let visitor = Prelogin::from_jar(&jar).unwrap_or_default();
    let token = visitor.token(&st.core.secrets);
    (
        jar.add(visitor.cookie()),
        bare(lang, lang.t("login"), login_page(lang, &token, false)),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

struct UserRow {
    id: String,
    org: String,
    role: String,
    hash: String,
    locked_until: i64,
    totp_secret: Option<String>,
    totp_last_step: i64,
}

async fn user_by_name(st: &ConsoleState, name: &str) -> anyhow::Result<Option<UserRow>> {
    let r = sqlx::query("SELECT id, org_id, role, password_hash, locked_until, totp_secret, totp_last_step FROM users WHERE username = $1 AND disabled_at IS NULL")
        .bind(name)
        .fetch_optional(&st.core.store.pool)
        .await?;
    Ok(r.map(|r| UserRow {
        id: r.get(0),
        org: r.get(1),
        role: r.get(2),
        hash: r.get(3),
        locked_until: r.get(4),
        totp_secret: r.get(5),
        totp_last_step: r.get(6),
    }))
}

/// Count a failure; lock when there are too many. The count is
/// incremented in the database, not from the row read before argon2, so
/// guesses sent in parallel each count.
async fn record_failure(
    st: &ConsoleState,
    u: &UserRow,
    name: &str,
    step: &str,
) -> anyhow::Result<()> {
    let failures: i64 = sqlx::query_scalar(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
    )
    .bind(&u.id)
    .fetch_one(&st.core.store.pool)
    .await?;
    let locked_until = if failures >= MAX_FAILURES {
        let shift = (failures - MAX_FAILURES).min(6) as u32;
        let until = now_ms() + (60_000i64 << shift).min(3_600_000);
        sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2")
            .bind(until)
            .bind(&u.id)
            .execute(&st.core.store.pool)
            .await?;
        until
    } else {
        0
    };
    st.core
        .store
        .append_audit(&AuditEntry {
            org: u.org.clone(),
            actor: format!("user:{name}"),
            action: "console_login_failed".into(),
            target: "console".into(),
            reason: String::new(),
            outcome: if locked_until > 0 {
                format!("wrong {step}; account locked")
            } else {
                format!("wrong {step}")
            },
            details: json!({"failures": failures}),
        })
        .await
}

pub async fn login(
    State(st): State<ConsoleState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang_of(&jar, &headers);
    // The form is only ever served with a pre-login token (`login_form`), so
    // a login always comes from a visitor's cookie, never from a session.
    let Some(visitor) =
        Prelogin::from_jar(&jar).filter(|v| v.token_ok(&st.core.secrets, &f.csrf, now_ms()))
    else {
        tracing::warn!("console: login form refused (CSRF token)");
        return csrf_refused(lang);
    };
    let failed = || {
        (
            StatusCode::UNAUTHORIZED,
            bare(
                lang,
                lang.t("login"),
                login_page(lang, &visitor.token(&st.core.secrets), true),
            ),
        )
            .into_response()
    };
    let user = match user_by_name(&st, &f.username).await {
        Ok(u) => u,
        Err(e) => return internal(lang, format!("{e:#}")),
    };
    let hash = user
        .as_ref()
        .map(|u| u.hash.clone())
        .unwrap_or_else(|| crate::store::DUMMY_HASH.to_string());
    let password = f.password;
    // argon2 on a blocking thread; the same work for unknown and locked users.
    let good = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(u) = user else {
        return failed();
    };
    if u.locked_until > now_ms() {
        return failed();
    }
    if !good {
        if let Err(e) = record_failure(&st, &u, &f.username, "password").await {
            return internal(lang, format!("{e:#}"));
        }
        return failed();
    }
    let stage = if u.role == "admin" {
        if u.totp_secret.is_some() {
            "totp"
        } else {
            "totp_enrol"
        }
    } else {
        "full"
    };
    let result = async {
        if stage == "full" {
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = $1")
                .bind(&u.id)
                .execute(&st.core.store.pool)
                .await?;
            audit_login(&st, &u, &f.username, "password").await?;
        }
        // A new session id (the visitor's cookie held none): nothing planted
        // before login survives it.
        let ttl = if stage == "full" {
            SESSION_MS
        } else {
            PRELOGIN_MS
        };
        create_session(&st, Some((&u.id, &u.org, &f.username, &u.role)), stage, ttl)
            .await
            .map(|s| s.id)
    }
    .await;
    match result {
        Ok(id) => {
            let to = if stage == "full" {
                "/console/"
            } else {
                "/console/login/totp"
            };
            (jar.add(session_cookie(id)), Redirect::to(to)).into_response()
        }
        Err(e) => internal(lang, format!("{e:#}")),
    }
}

async fn audit_login(
    st: &ConsoleState,
    u: &UserRow,
    name: &str,
    factors: &str,
) -> anyhow::Result<()> {
    st.core
        .store
        .append_audit(&AuditEntry {
            org: u.org.clone(),
            actor: format!("user:{name}"),
            action: "console_login".into(),
            target: "console".into(),
            reason: String::new(),
            outcome: "succeeded".into(),
            details: json!({"factors": factors}),
        })
        .await
}

fn totp_context(user_id: &str) -> String {
    format!("console-totp:{user_id}")
}

/// The base32 secret as the otpauth URI carries it (for typing by hand).
fn uri_secret(uri: &str) -> &str {
    uri.split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap_or_default()
}

pub async fn totp_form(
    State(st): State<ConsoleState>,
    jar: CookieJar,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(&jar, &headers);
    totp_page(&st, &jar, lang, false).await
}

async fn totp_page(st: &ConsoleState, jar: &CookieJar, lang: Lang, failed: bool) -> Response {
    let mut s = match load_session(st, jar).await {
        Ok(Some(s)) if s.stage == "totp" || s.stage == "totp_enrol" => s,
        Ok(_) => return Redirect::to("/console/login").into_response(),
        Err(e) => return internal(lang, format!("{e:#}")),
    };
    let uid = s.user_id.clone().unwrap_or_default();
    let mut enrol = None;
    if s.stage == "totp_enrol" {
        if s.pending_totp.is_none() {
            let raw = vigie_radius::crypto::random_bytes::<20>();
            let sealed = st.core.secrets.seal(&raw, &totp_context(&uid));
            if let Err(e) =
                sqlx::query("UPDATE console_sessions SET pending_totp = $1 WHERE id_hash = $2")
                    .bind(&sealed)
                    .bind(&s.id_hash)
                    .execute(&st.core.store.pool)
                    .await
            {
                return internal(lang, e);
            }
            s.pending_totp = Some(sealed);
        }
        let raw = match st.core.secrets.open(
            s.pending_totp.as_deref().unwrap_or_default(),
            &totp_context(&uid),
        ) {
            Ok(r) => r,
            Err(e) => return internal(lang, format!("{e:#}")),
        };
        let uri = totp::otpauth_uri(&raw, totp::Algorithm::SHA1, 6, &s.username, ISSUER);
        let svg = match vigie_radius::admin::qr_svg(&uri) {
            Ok(svg) => svg,
            Err(e) => return internal(lang, format!("{e:#}")),
        };
        enrol = Some((uri_secret(&uri).to_string(), svg));
    }
    let title = if enrol.is_some() {
        lang.t("totp_enrol_title")
    } else {
        lang.t("totp_title")
    };
    let body = html! {
        @if failed { p.error role="alert" { (lang.t("totp_failed")) } }
        @if let Some((secret, svg)) = &enrol {
            p { (lang.t("totp_enrol_help")) }
            figure.qr role="img" aria-label=(lang.t("qr_code")) { (trusted_svg(svg)) }
            p { (lang.t("secret")) ": " code #totp-secret { (secret) } }
        }
        form method="post" action="/console/login/totp" {
            input type="hidden" name="csrf" value=(s.csrf);
            p { label for="code" { (lang.t("totp_code")) } br;
                input #code name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required autofocus; }
            p { button type="submit" { (lang.t("confirm")) } }
        }
    };
    let code = if failed {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (code, bare(lang, title, body)).into_response()
}

#[derive(Deserialize)]
pub struct TotpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

pub async fn totp(
    State(st): State<ConsoleState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(f): Form<TotpForm>,
) -> Response {
    let lang = lang_of(&jar, &headers);
    let s = match load_session(&st, &jar).await {
        Ok(Some(s)) if s.stage == "totp" || s.stage == "totp_enrol" => s,
        Ok(_) => return Redirect::to("/console/login").into_response(),
        Err(e) => return internal(lang, format!("{e:#}")),
    };
    if !s.csrf_ok(&f.csrf) {
        return csrf_refused(lang);
    }
    let result: anyhow::Result<Option<String>> = async {
        let Some(u) = user_by_name(&st, &s.username).await? else {
            return Ok(None);
        };
        if u.locked_until > now_ms() {
            delete_session(&st, &s.id_hash).await?;
            return Ok(None);
        }
        let sealed = if s.stage == "totp_enrol" {
            s.pending_totp.clone()
        } else {
            u.totp_secret.clone()
        };
        let Some(sealed) = sealed else { return Ok(None) };
        let raw = st.core.secrets.open(&sealed, &totp_context(&u.id))?;
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let code = f.code.trim();
        let accepted = totp::verify(&raw, totp::Algorithm::SHA1, 6, code, now, u.totp_last_step);
        let Some(a) = accepted else {
            record_failure(&st, &u, &s.username, "second factor").await?;
            return Ok(None);
        };
        // Compare-and-set: the same step is never accepted twice.
        let r = sqlx::query("UPDATE users SET totp_last_step = $1, totp_secret = $2, failed_logins = 0, locked_until = 0 WHERE id = $3 AND totp_last_step < $1")
            .bind(a.step)
            .bind(&sealed)
            .bind(&u.id)
            .execute(&st.core.store.pool)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        if s.stage == "totp_enrol" {
            st.core
                .store
                .append_audit(&AuditEntry {
                    org: u.org.clone(),
                    actor: format!("user:{}", s.username),
                    action: "console_totp_enrolled".into(),
                    target: format!("user:{}", s.username),
                    reason: String::new(),
                    outcome: "succeeded".into(),
                    details: json!({}),
                })
                .await?;
        }
        audit_login(&st, &u, &s.username, "password+totp").await?;
        delete_session(&st, &s.id_hash).await?;
        Ok(Some(
            create_session(&st, Some((&u.id, &u.org, &s.username, &u.role)), "full", SESSION_MS).await?.id,
        ))
    }
    .await;
    match result {
        Ok(Some(id)) => (jar.add(session_cookie(id)), Redirect::to("/console/")).into_response(),
        Ok(None) => totp_page(&st, &jar, lang, true).await,
        Err(e) => internal(lang, format!("{e:#}")),
    }
}

pub async fn logout(
    State(st): State<ConsoleState>,
    jar: CookieJar,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = lang_of(&jar, &headers);
    match load_session(&st, &jar).await {
        Ok(Some(s)) if s.csrf_ok(&f.csrf) => {
            if let Err(e) = delete_session(&st, &s.id_hash).await {
                return internal(lang, format!("{e:#}"));
            }
            let jar = jar.remove(
                axum_extra::extract::cookie::Cookie::build(super::SESSION_COOKIE).path("/console"),
            );
            (jar, Redirect::to("/console/login")).into_response()
        }
        Ok(_) => csrf_refused(lang),
        Err(e) => internal(lang, format!("{e:#}")),
    }
}

//! The page frame (landmarks: header, nav, main), small view helpers.

use axum::response::Html;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Ctx;
use super::i18n::Lang;

const MENU: &[(&str, &str)] = &[
    ("/console/", "dashboard"),
    ("/console/hosts", "hosts"),
    ("/console/alerts", "alerts"),
    ("/console/incidents", "incidents"),
    ("/console/rules", "rules"),
    ("/console/policies", "policies"),
    ("/console/vpn-users", "vpn_users"),
    ("/console/audit", "audit"),
    ("/console/settings", "settings"),
];

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · " (lang.t("app")) }
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

fn lang_switch(lang: Lang, back: &str) -> Markup {
    html! {
        span.lang {
            (lang.t("language")) ": "
            @for l in [Lang::En, Lang::Fr] {
                @if l == lang {
                    strong lang=(l.code()) { (l.code().to_uppercase()) }
                } @else {
                    a lang=(l.code()) href={ "/console/lang?to=" (l.code()) "&back=" (back) } { (l.code().to_uppercase()) }
                }
                " "
            }
        }
    }
}

/// A full page for a signed-in user; `active` is the menu entry's path.
pub fn page(ctx: &Ctx, title: &str, active: &str, content: Markup) -> Html<String> {
    let lang = ctx.lang;
    Html(
        html! {
            (DOCTYPE)
            html lang=(lang.code()) {
                (head(lang, title))
                body {
                    a.skip href="#main" { (lang.t("skip")) }
                    header {
                        span.brand { "Vigie" }
                        nav aria-label=(lang.t("nav")) {
                            ul {
                                @for (href, key) in MENU {
                                    li {
                                        a href=(href) aria-current=[(*href == active).then_some("page")] { (lang.t(key)) }
                                    }
                                }
                            }
                        }
                        div.who {
                            (lang.t("signed_in_as")) " " strong { (ctx.session.username) } " (" (ctx.session.role) ") "
                            (lang_switch(lang, active))
                            form method="post" action="/console/logout" {
                                (csrf(ctx))
                                button type="submit" { (lang.t("logout")) }
                            }
                        }
                    }
                    main #main tabindex="-1" {
                        h1 { (title) }
                        (content)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A page without the menu (login steps, errors).
pub fn bare(lang: Lang, title: &str, content: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang=(lang.code()) {
                (head(lang, title))
                body.bare {
                    header { span.brand { "Vigie" } (lang_switch(lang, "/console/login")) }
                    main #main {
                        h1 { (title) }
                        (content)
                    }
                }
            }
        }
        .into_string(),
    )
}

pub fn error_page(lang: Lang, key: &'static str) -> Html<String> {
    bare(
        lang,
        lang.t("app"),
        html! { p.error role="alert" { (lang.t(key)) } p { a href="/console/" { (lang.t("dashboard")) } } },
    )
}

pub fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.session.csrf); }
}

/// A value for a link's query string, percent-encoded (maud escapes for
/// HTML, not for URLs: a search for "a&b" or "#1" must stay one value).
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "—".into();
    }
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

pub fn level(l: &str) -> Markup {
    let class = match l {
        "critical" => "lvl critical",
        "high" => "lvl high",
        "medium" => "lvl medium",
        _ => "lvl low",
    };
    html! { span class=(class) { (l) } }
}

/// A status message after an action.
pub fn flash(lang: Lang, msg: Option<&str>) -> Markup {
    let key: Option<&'static str> = match msg {
        Some("updated") => Some("updated"),
        Some("done") => Some("done"),
        Some("rule_saved") => Some("rule_saved"),
        Some("need_confirm") => Some("need_confirm"),
        _ => None,
    };
    html! {
        @if let Some(k) = key {
            p.flash role="status" { (lang.t(k)) }
        }
    }
}

/// Trusted markup (only for SVG the qrcode crate generated from our data).
pub fn trusted_svg(svg: &str) -> Markup {
    // qrcode emits an XML declaration before <svg>; inline SVG needs none.
    let start = svg.find("<svg").unwrap_or(0);
    PreEscaped(svg[start..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_stay_one_value() {
        assert_eq!(query_value("curl"), "curl");
        assert_eq!(query_value("a&b=c #1+%"), "a%26b%3Dc%20%231%2B%25");
        assert_eq!(query_value("règle"), "r%C3%A8gle");
        // What the alert list's query parser reads back is what was typed.
        #[derive(serde::Deserialize)]
        struct Q {
            q: String,
        }
        let typed = "a&b=c #1+%/règle";
        let back: Q = axum::extract::Query::try_from_uri(
            &format!("/x?q={}", query_value(typed)).parse().unwrap(),
        )
        .unwrap()
        .0;
        assert_eq!(back.q, typed);
    }
}

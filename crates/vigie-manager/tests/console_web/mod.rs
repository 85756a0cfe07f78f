//! Console test helpers: an HTTPS client with a cookie jar (a browser
//! without JavaScript), login including the admin's TOTP computed by the
//! real `oathtool`, and reading CSRF tokens out of pages.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};

use crate::common::TestManager;

pub struct Web {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    pub port: u16,
}

pub struct Resp {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
}

impl Web {
    pub fn new(m: &TestManager) -> Web {
        let jar = Arc::new(Jar::default());
        let ca = reqwest::Certificate::from_pem(m.h().core.pki.ca_pem.as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Web {
            client,
            jar,
            port: m.config.listen.port(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.port, path)
    }

    pub async fn get(&self, path: &str) -> Resp {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        Self::resp(r).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        let r = self
            .client
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap();
        Self::resp(r).await
    }

    async fn resp(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        Resp {
            status,
            body: r.text().await.unwrap_or_default(),
            location,
        }
    }

    /// The session cookie the browser holds now.
    pub fn session(&self) -> Option<String> {
        let url = self.url("/console/").parse().unwrap();
        let h = self.jar.cookies(&url)?;
        h.to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("vigie_session="))
            .map(String::from)
    }

    /// Put a cookie in the jar as an attacker could (fixation attempt).
    pub fn plant_session(&self, id: &str) {
        let url = self.url("/console/").parse().unwrap();
        self.jar.add_cookie_str(
            &format!("vigie_session={id}; Path=/console; Secure; HttpOnly"),
            &url,
        );
    }

    /// The CSRF token of the first form on a page.
    pub async fn csrf(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        csrf_of(&r.body)
    }

    /// Password login of a user without a second factor; returns the
    /// status of the POST (303 on success).
    pub async fn login(&self, user: &str, password: &str) -> Resp {
        let csrf = self.csrf("/console/login").await;
        self.post(
            "/console/login",
            &[("csrf", &csrf), ("username", user), ("password", password)],
        )
        .await
    }

    /// Admin login: password, then TOTP. At the first login the console
    /// shows a new secret; `secret` keeps it for the next logins. Codes come
    /// from oathtool, one 30 s step apart when the last one was used.
    /// Returns the code that was accepted.
    pub async fn login_admin(
        &self,
        user: &str,
        password: &str,
        secret: &mut Option<String>,
    ) -> String {
        let r = self.login(user, password).await;
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.location.as_deref(), Some("/console/login/totp"));
        let page = self.get("/console/login/totp").await;
        assert_eq!(page.status, 200);
        if secret.is_none() {
            *secret = Some(
                between(&page.body, "id=\"totp-secret\">", "<").expect("enrolment secret shown"),
            );
        }
        let csrf = csrf_of(&page.body);
        for _ in 0..3 {
            let code = oathtool(secret.as_deref().unwrap());
            let r = self
                .post("/console/login/totp", &[("csrf", &csrf), ("code", &code)])
                .await;
            if r.status == 303 {
                assert_eq!(r.location.as_deref(), Some("/console/"));
                return code;
            }
            // The same step was already used: wait for the next one.
            tokio::time::sleep(Duration::from_secs(
                31 - chrono::Utc::now().timestamp() as u64 % 30,
            ))
            .await;
        }
        panic!("TOTP login failed");
    }
}

pub fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_string())
}

pub fn csrf_of(html: &str) -> String {
    between(html, "name=\"csrf\" value=\"", "\"").expect("a CSRF token in the page")
}

/// The current TOTP code, from the real oathtool.
pub fn oathtool(secret_b32: &str) -> String {
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", secret_b32])
        .output()
        .expect("oathtool is installed (scripts/apt-packages.txt)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

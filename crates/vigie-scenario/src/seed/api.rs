//! The admin's view: the manager's REST API through `curl`, run in the
//! manager's namespace, trusting the manager's own CA. The bearer token is
//! read by curl from a 0600 file (`-H @file`), never put on a command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::lab::Netns;

#[derive(Clone)]
pub struct Api {
    pub ns: Netns,
    pub base: String,
    pub ca: PathBuf,
    pub auth_header: PathBuf,
}

impl Api {
    /// One request; returns the status and the body.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
        let mut cmd = self.ns.command("curl");
        cmd.args(["-sS", "--max-time", "60", "-X", method, "--cacert"])
            .arg(&self.ca)
            .arg("-H")
            .arg(format!("@{}", self.auth_header.display()))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{}{path}", self.base))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if body.is_some() {
            cmd.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                "@-",
            ])
            .stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().context("running curl")?;
        if let Some(b) = body {
            let mut stdin = child.stdin.take().context("curl stdin")?;
            stdin.write_all(b.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{method} {path}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code.trim().parse().unwrap_or(0);
        Ok((code, body.to_string()))
    }

    /// GET returning JSON; any status but 200 is an error.
    pub fn get(&self, path: &str) -> Result<Value> {
        let (code, body) = self.request("GET", path, None)?;
        if code != 200 {
            bail!("GET {path}: HTTP {code}: {}", body.trim());
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON"))
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let (code, text) = self.request("POST", path, Some(body))?;
        Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// The alerts (newest first), optionally of one host.
    pub fn alerts(&self, host: Option<&str>) -> Result<Vec<Value>> {
        let path = match host {
            Some(h) => format!("/api/v1/alerts?limit=1000&host={h}"),
            None => "/api/v1/alerts?limit=1000".to_string(),
        };
        Ok(self.get(&path)?["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    pub fn host(&self, id: &str) -> Result<Value> {
        self.get(&format!("/api/v1/hosts/{id}"))
    }
}

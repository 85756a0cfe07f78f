//! Webhook: one JSON POST per alert. `text` is what Slack, Mattermost and
//! Teams incoming webhooks display; `vigie` carries the alert for receivers
//! that want structure (they ignore what they do not know).

use anyhow::{Result, bail};
use serde_json::json;

use super::Notice;

pub async fn send(http: &reqwest::Client, url: &str, n: &Notice) -> Result<()> {
    let a = &n.alert;
    let body = json!({
        "text": n.text(),
        "vigie": {
            "alert_id": a.id.to_string(),
            "time": a.time.to_rfc3339(),
            "level": a.level().as_str(),
            "rule": { "id": a.rule.id, "name": a.rule.name, "attack": a.rule.attack },
            "host": n.hostname,
            "link": n.link,
        }
    });
    // reqwest's errors can include the URL, which may hold a token
    // (Slack's hooks do): report the kind of failure only.
    let resp = match http.post(url).json(&body).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => bail!("webhook: timed out"),
        Err(e) if e.is_connect() => bail!("webhook: cannot connect"),
        Err(_) => bail!("webhook: request failed"),
    };
    if !resp.status().is_success() {
        bail!("webhook: the receiver answered {}", resp.status());
    }
    Ok(())
}

//! Events every action produces: what, on what, who/why, verified outcome and
//! how to undo it (DESIGN.md §6.6).

use vigie_event::{
    Event, Health, HealthAction, HealthEvent, Host, Outcome, Payload, ResponseDetail, ResponseEvent,
};

/// Who asked for an action and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cause {
    /// "policy", "user:root", "manager", "watcher".
    pub actor: String,
    /// The alert that triggered an automatic action.
    pub alert_id: Option<String>,
    /// Free text from the person or the rule.
    pub reason: Option<String>,
}

impl Cause {
    pub fn user() -> Self {
        let uid = nix::unistd::getuid().as_raw();
        let name = std::env::var("SUDO_USER")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("uid{uid}"));
        Cause {
            actor: format!("user:{name}"),
            ..Cause::default()
        }
    }

    pub fn policy(alert_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Cause {
            actor: "policy".into(),
            alert_id: Some(alert_id.into()),
            reason: Some(reason.into()),
        }
    }

    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }
}

/// A `Payload::Response` event.
pub fn response(
    host: &Host,
    action: &str,
    target: &str,
    cause: &Cause,
    outcome: Outcome,
    detail: impl Into<String>,
    undo: Option<String>,
) -> Event {
    let mut detail = detail.into();
    if let Some(r) = &cause.reason {
        detail = format!("{detail}; reason: {r}");
    }
    Event::new(
        chrono::Utc::now(),
        host.clone(),
        Payload::Response(ResponseEvent {
            outcome,
            response: ResponseDetail {
                action: action.into(),
                target: target.into(),
                actor: cause.actor.clone(),
                alert_id: cause.alert_id.clone(),
                detail,
                undo,
            },
        }),
    )
}

/// A tamper event (`Payload::Health`, action `tamper`): alert-worthy.
pub fn tamper(host: &Host, message: impl Into<String>) -> Event {
    Event::new(
        chrono::Utc::now(),
        host.clone(),
        Payload::Health(HealthEvent {
            action: HealthAction::Tamper,
            health: Health {
                message: message.into(),
                ..Health::default()
            },
        }),
    )
}

/// Whether an event should raise an alert: a tamper, or an action that failed.
pub fn is_alert_worthy(ev: &Event) -> bool {
    match &ev.payload {
        Payload::Health(h) => h.action == HealthAction::Tamper,
        Payload::Response(r) => r.outcome == Outcome::Failure,
        _ => false,
    }
}

//! Alerts in the service's log without flooding it.
//!
//! Every alert goes to the alert output (`vigie radius --alerts`, the
//! manager's database); the log is for the person watching the service. A
//! rule that fires on every login (logins outside working hours, a night
//! batch of reconnections) would otherwise write a log line per login: tens
//! of thousands a second under load, a write(2) each on the event thread.
//! So the log shows the first alert of each rule, then, once a window has
//! passed, how many more that rule raised meanwhile.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigie_event::Alert;

/// How long a rule's further alerts are counted before their total is logged.
pub const WINDOW: Duration = Duration::from_secs(60);

struct Window {
    started: Instant,
    /// Alerts of the rule since `started` that were not logged one by one.
    counted: u64,
}

/// What [`AlertLog::alert`] did with an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Written to the log (the first of its rule in a window).
    Line,
    /// Counted; the count is logged when the window ends.
    Counted,
}

/// Per-rule windows. Bounded by the number of rules loaded.
pub struct AlertLog {
    window: Duration,
    rules: HashMap<String, Window>,
    /// Written by the log: a service name ("VPN alert", "alert").
    what: &'static str,
}

impl AlertLog {
    pub fn new(what: &'static str, window: Duration) -> AlertLog {
        AlertLog {
            window,
            rules: HashMap::new(),
            what,
        }
    }

    /// Log `alert`, or count it if its rule was logged less than a window ago.
    pub fn alert(&mut self, alert: &Alert, now: Instant) -> Logged {
        let name = alert.rule.name.as_str();
        if let Some(w) = self.rules.get_mut(name) {
            if now.duration_since(w.started) < self.window {
                w.counted += 1;
                return Logged::Counted;
            }
            let counted = std::mem::take(&mut w.counted);
            w.started = now;
            summary(self.what, name, counted, self.window);
        } else {
            self.rules.insert(
                name.to_string(),
                Window {
                    started: now,
                    counted: 0,
                },
            );
        }
        let user = alert.events.first().and_then(|e| match &e.payload {
            vigie_event::Payload::Authentication(a) => a.user.name.as_deref(),
            _ => None,
        });
        tracing::warn!(rule = %name, level = %alert.level(), user, "{}", self.what);
        Logged::Line
    }

    /// Log the counts of windows that have ended (call now and then, so a
    /// burst's total shows even when the rule stops firing). Returns the
    /// rules and counts it logged.
    pub fn flush_due(&mut self, now: Instant) -> Vec<(String, u64)> {
        let window = self.window;
        self.flush(|w| now.duration_since(w.started) >= window)
    }

    /// Log every pending count (at shutdown).
    pub fn flush_all(&mut self) -> Vec<(String, u64)> {
        self.flush(|_| true)
    }

    fn flush(&mut self, due: impl Fn(&Window) -> bool) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        // Ended windows with nothing counted are dropped: the rule's next
        // alert is logged again.
        self.rules.retain(|name, w| {
            if !due(w) {
                return true;
            }
            if w.counted > 0 {
                summary(self.what, name, w.counted, self.window);
                out.push((name.clone(), w.counted));
            }
            false
        });
        out
    }
}

fn summary(what: &str, rule: &str, more: u64, window: Duration) {
    if more > 0 {
        tracing::warn!(
            rule = %rule,
            more,
            window_s = window.as_secs(),
            "{what}: {more} more of this rule, not logged one by one (every alert is in the alert output)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigie_event::{Host, Level, RuleRef};

    fn alert(rule: &str) -> Alert {
        Alert {
            id: Default::default(),
            time: chrono::Utc::now(),
            host: Host::named("h"),
            rule: RuleRef {
                name: rule.into(),
                level: Some(Level::Medium),
                ..RuleRef::default()
            },
            events: vec![],
        }
    }

    #[test]
    fn first_alert_of_a_rule_is_logged_the_rest_counted_per_window() {
        let mut log = AlertLog::new("alert", Duration::from_secs(60));
        let t0 = Instant::now();
        let (a, b) = (alert("outside hours"), alert("brute force"));
        assert_eq!(log.alert(&a, t0), Logged::Line);
        assert_eq!(log.alert(&b, t0), Logged::Line);
        for i in 1..=1000 {
            assert_eq!(
                log.alert(&a, t0 + Duration::from_millis(i)),
                Logged::Counted
            );
        }
        assert_eq!(log.flush_due(t0 + Duration::from_secs(59)), vec![]);
        // The window ended: the count is logged, and the rule starts afresh.
        assert_eq!(
            log.flush_due(t0 + Duration::from_secs(60)),
            vec![("outside hours".to_string(), 1000)]
        );
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(log.alert(&a, t1), Logged::Line);
        assert_eq!(log.alert(&a, t1), Logged::Counted);
        // An alert after its window ended logs the count itself and starts
        // a new window.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(log.alert(&a, t2), Logged::Line);
        assert_eq!(log.alert(&a, t2), Logged::Counted);
        assert_eq!(log.flush_all(), vec![("outside hours".to_string(), 1)]);
        assert_eq!(log.flush_all(), vec![]);
    }
}

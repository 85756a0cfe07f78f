//! The events a correlation alert carries ("contributing events").
//!
//! rsigma can keep them itself (`CorrelationEventMode::Full`), but it
//! serialises every event that enters a correlation window to JSON and
//! deflates it with a fresh compressor, whose set-up zeroes some 256 KiB:
//! about a fifth of the RADIUS server's CPU per login, where each attempt
//! feeds several correlations. Instead rsigma keeps references
//! (`CorrelationEventMode::Refs`: the event's id, see
//! [`crate::adapter::SigmaView`]), and the detector keeps one copy of each
//! referenced event here, as long as a window can still use it.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;
use vigie_event::Event;

/// Most events kept at once (about 1 KiB each): under a flood of matching
/// events the oldest go first, and an alert then carries fewer of them.
pub(crate) const MAX_KEPT: usize = 10_000;

/// Events referenced by correlation windows, by id, oldest first.
pub(crate) struct KeptEvents {
    by_id: HashMap<Uuid, Event>,
    order: VecDeque<(i64, Uuid)>,
    /// The longest correlation timespan (seconds): older events cannot be
    /// in any window.
    horizon: i64,
    newest: i64,
    cap: usize,
}

impl KeptEvents {
    pub(crate) fn new(horizon_secs: u64, cap: usize) -> Self {
        KeptEvents {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            horizon: i64::try_from(horizon_secs).unwrap_or(i64::MAX),
            newest: i64::MIN,
            cap: cap.max(1),
        }
    }

    /// Keep a copy of `event` (once), and forget what no window can hold.
    pub(crate) fn keep(&mut self, event: &Event) {
        let ts = event.time.timestamp();
        self.newest = self.newest.max(ts);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.by_id.entry(event.id) {
            slot.insert(event.clone());
            self.order.push_back((ts, event.id));
        }
        let cutoff = self.newest.saturating_sub(self.horizon);
        while let Some(&(t, id)) = self.order.front() {
            if t >= cutoff && self.order.len() <= self.cap {
                break;
            }
            self.order.pop_front();
            self.by_id.remove(&id);
        }
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<&Event> {
        self.by_id.get(id)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use vigie_event::{Host, LogRecord, Payload};

    fn event_at(secs: i64) -> Event {
        Event::new(
            Utc.timestamp_opt(secs, 0).unwrap(),
            Host::named("h"),
            Payload::Log(LogRecord::default()),
        )
    }

    #[test]
    fn forgets_events_older_than_the_longest_window() {
        let mut kept = KeptEvents::new(60, 100);
        let old = event_at(1_000);
        kept.keep(&old);
        let recent = event_at(1_050);
        kept.keep(&recent);
        assert!(
            kept.get(&old.id).is_some(),
            "50 s old: still in a 60 s window"
        );
        kept.keep(&event_at(1_061));
        assert!(kept.get(&old.id).is_none(), "61 s old: in no window");
        assert!(kept.get(&recent.id).is_some());
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn bounded_by_count_and_each_event_kept_once() {
        let mut kept = KeptEvents::new(3600, 3);
        let events: Vec<Event> = (0..5).map(|i| event_at(100 + i)).collect();
        for e in &events {
            kept.keep(e);
            kept.keep(e);
        }
        assert_eq!(kept.len(), 3);
        assert!(kept.get(&events[1].id).is_none());
        assert!(kept.get(&events[2].id).is_some());
        assert!(kept.get(&events[4].id).is_some());
    }
}

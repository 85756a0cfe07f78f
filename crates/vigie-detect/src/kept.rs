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

use std::collections::VecDeque;

use vigie_event::Event;

/// Most events kept at once (about 1 KiB each): under a flood of matching
/// events the oldest go first, and an alert then carries fewer of them.
pub(crate) const MAX_KEPT: usize = 10_000;

/// Events referenced by correlation windows, oldest first. Each event
/// offered to the engine gets the next reference number (what rsigma
/// stores, see [`crate::adapter::SigmaView`]), so the kept ones are in
/// increasing order and found by binary search: no map to hash into and
/// rehash under churn (a hash map by uuid was a fifth of the RADIUS event
/// thread's CPU).
pub(crate) struct KeptEvents {
    events: VecDeque<Kept>,
    /// The longest correlation timespan (seconds): older events cannot be
    /// in any window.
    horizon: i64,
    newest: i64,
    cap: usize,
    next: u64,
}

struct Kept {
    reference: u64,
    time: i64,
    event: Event,
}

impl KeptEvents {
    pub(crate) fn new(horizon_secs: u64, cap: usize) -> Self {
        KeptEvents {
            events: VecDeque::new(),
            horizon: i64::try_from(horizon_secs).unwrap_or(i64::MAX),
            newest: i64::MIN,
            cap: cap.max(1),
            next: 0,
        }
    }

    /// The reference for the next event offered to the engine.
    pub(crate) fn next_reference(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Keep a copy of `event`, referenced as `reference` (from
    /// [`KeptEvents::next_reference`], once per event), and forget what no
    /// window can hold.
    pub(crate) fn keep(&mut self, reference: u64, event: &Event) {
        let time = event.time.timestamp();
        self.newest = self.newest.max(time);
        if self.events.back().is_none_or(|k| k.reference < reference) {
            self.events.push_back(Kept {
                reference,
                time,
                event: event.clone(),
            });
        }
        let cutoff = self.newest.saturating_sub(self.horizon);
        while let Some(front) = self.events.front() {
            if front.time >= cutoff && self.events.len() <= self.cap {
                break;
            }
            self.events.pop_front();
        }
    }

    pub(crate) fn get(&self, reference: u64) -> Option<&Event> {
        let i = self
            .events
            .binary_search_by_key(&reference, |k| k.reference)
            .ok()?;
        Some(&self.events[i].event)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.events.len()
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
        let old = kept.next_reference();
        kept.keep(old, &event_at(1_000));
        let recent = kept.next_reference();
        kept.keep(recent, &event_at(1_050));
        assert!(kept.get(old).is_some(), "50 s old: still in a 60 s window");
        let newest = kept.next_reference();
        kept.keep(newest, &event_at(1_061));
        assert!(kept.get(old).is_none(), "61 s old: in no window");
        assert_eq!(kept.get(recent).map(|e| e.time.timestamp()), Some(1_050));
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn bounded_by_count_and_each_event_kept_once() {
        let mut kept = KeptEvents::new(3600, 3);
        let mut refs = Vec::new();
        for i in 0..5 {
            let e = event_at(100 + i);
            let r = kept.next_reference();
            // Several windows referring to one event keep it once.
            kept.keep(r, &e);
            kept.keep(r, &e);
            refs.push((r, e.id));
        }
        assert_eq!(kept.len(), 3);
        assert!(kept.get(refs[1].0).is_none());
        assert_eq!(kept.get(refs[2].0).map(|e| e.id), Some(refs[2].1));
        assert_eq!(kept.get(refs[4].0).map(|e| e.id), Some(refs[4].1));
        // A reference never handed out, or between kept ones, finds nothing.
        assert!(kept.get(0).is_none());
        assert!(kept.get(1_000).is_none());
    }
}

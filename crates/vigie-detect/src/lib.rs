//! Vigie's detection engine: events in, alerts out.
//!
//! One job: load detection rules and evaluate events against them. Sigma
//! rules (detections, correlations, filters) are parsed and compiled by the
//! `rsigma` crates; this crate wraps them so they could be replaced (no
//! rsigma type appears in the API), routes events to rules by logsource, and
//! turns matches into [`vigie_event::Alert`]s.
//!
//! * [`Engine`]: a loaded rule set. [`Engine::load`] reads every `.yml` /
//!   `.yaml` file below some folders, [`Engine::from_yaml`] takes in-memory
//!   documents. Loading never aborts: each rule is loaded or reported.
//! * [`Detector`]: one stream's state (correlation windows). The compiled
//!   rules are shared (`Arc`) by every detector of an engine, so threads
//!   hunting different files each take [`Engine::detector`] without
//!   compiling anything again. Correlations count within one detector.
//!   Each logsource group's gate is built on the first event of that
//!   logsource, once, for all detectors; [`Engine::prepare_all`] builds
//!   them all up front.
//! * [`Match`]: a rule that fired, from [`Detector::matches`], without a
//!   copy of the event ([`Detector::process`] makes the alerts).
//! * [`LoadReport`]: one [`RuleEntry`] per rule document (path, line, id,
//!   title, [`RuleStatus`], reason) and [`Totals`]; serialisable to JSON.
//! * [`behaviour`]: detectors Sigma cannot express, fed the same events:
//!   [`Ransomware`] (mass rewrite/rename with high entropy, notes, backup
//!   deletion, canary files planted with [`Canaries`]).
//! * [`windows_logsource`]: the Sigma logsource of a flattened Windows event
//!   record (Sysmon EventID → category, channel → service), which the log
//!   readers call for each record.
//!
//! Two ways of using rsigma's public API for speed, both exact: detection
//! items that compare strings case-insensitively read their field
//! lowercased once per event (`lowered.rs`), and a gate in front of
//! rsigma's `evaluate_rule` (`gate.rs`, in place of rsigma's candidate
//! index) turns each rule into a formula of cheap facts about the event
//! that its match implies, so most rules that cannot match are never
//! evaluated ([`Detector::set_gate`] turns it off, for checks).
//!
//! Routing: a rule sees an event only when every logsource field the rule
//! names (product, category, service) is present and equal in the event's
//! [`vigie_event::Fields::logsource`] (case-insensitive). SigmaHQ's umbrella
//! category `registry_event` also sees `registry_add/delete/set/rename`
//! events. An event with an empty logsource (a JSON record of unknown
//! origin) is shown to every rule.

mod adapter;
pub mod behaviour;
mod engine;
mod gate;
mod kept;
mod load;
mod lowered;
mod report;
mod windows;

pub use behaviour::{Canaries, CanaryOptions, Ransomware, RansomwareConfig};
pub use engine::{Detector, Engine, MAX_CORRELATION_EVENTS, Match, attack_techniques};
pub use report::{LoadReport, RuleEntry, RuleKind, RuleStatus, Totals, render_report};
pub use windows::windows_logsource;

//! Vigie's event model: the one vocabulary every other crate speaks.
//!
//! * [`Event`] is what a sensor, a log reader or the RADIUS server produces: a
//!   header (id, time, host, where it was read from) and a typed [`Payload`].
//! * [`Fields`] gives field access by **Sigma name** (`Image`, `CommandLine`,
//!   `DestinationIp`, ...) or by **ECS path** (`process.executable`, ...), so
//!   the detection engine reads typed events without a JSON round trip.
//! * [`ecs`] turns events into Elastic Common Schema JSON and back, the format
//!   of everything Vigie writes (agent output, `vigie hunt --format jsonl`).
//! * [`Alert`] is what detection produces from events.
//!
//! This crate does no I/O.

mod alert;
pub mod ecs;
mod fields;
mod logsource;
mod model;

pub use alert::{Alert, Level, ParseLevelError, RuleRef};
pub use fields::{FieldValue, Fields, SIGMA_ECS_MAPPING, SigmaMapping, sigma_to_ecs};
pub use logsource::LogSource;
pub use model::*;

//! Behaviour detectors: what Sigma rules cannot express because it needs
//! state across many events (rates, before/after comparisons, spread over
//! directories).
//!
//! * [`Ransomware`]: fed every event, returns alerts. It keeps, per process
//!   (and per worker pool: forks running the same executable as their
//!   parent), the files it rewrote, renamed and deleted within a window, and
//!   fires a critical alert on encryption-like evidence: content that became
//!   random-looking (entropy and magic number, before vs after), many files
//!   gaining the same new extension, ransom notes dropped in several
//!   directories, shadow-copy/backup/snapshot deletion, and any write, rename
//!   or delete of a canary file. Memory is bounded; idle state expires.
//! * [`Canaries`]: plants decoy files (hidden, named to be hit first,
//!   realistic content) and gives their paths to the detector.
//! * [`kill_target`]: the process whose tree the response should kill for an
//!   alert of this module.

mod canary;
mod ransomware;

pub use canary::{Canaries, CanaryOptions};
pub use ransomware::{
    BACKUP_RULE_ID, CANARY_RULE_ID, RANSOMWARE_RULE_ID, Ransomware, RansomwareConfig, Target,
    kill_target,
};

//! Quarantine (stub, filled below).
use crate::state::StateDir;
use anyhow::Result;
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineMeta {
    pub id: String,
}
pub fn list(_s: &StateDir) -> Result<Vec<QuarantineMeta>> {
    Ok(Vec::new())
}

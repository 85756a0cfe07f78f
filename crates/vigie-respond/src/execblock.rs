//! Exec blocking (stub).
use crate::state::StateDir;
use anyhow::Result;
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyList {
    pub sha256: Vec<String>,
    pub paths: Vec<String>,
}
impl DenyList {
    pub fn load(_s: &StateDir) -> Result<Self> {
        Ok(Self::default())
    }
}

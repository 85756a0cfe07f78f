//! Where Vigie's rules come from.
//!
//! * [`pack`]: Vigie's own rule pack (`rules/` in the repository), embedded
//!   in the binary at build time so an installed `vigie` always has it.
//! * [`user_rules_dir`]: the user's rule folder, where `vigie rules update`
//!   installs SigmaHQ's rules (which the project does not ship: they are
//!   others' work under the DRL licence).
//! * [`update`]: download (or take a local file), verify, and atomically
//!   install a SigmaHQ release archive.

use std::path::PathBuf;

pub mod update;

include!(concat!(env!("OUT_DIR"), "/pack.rs"));

/// Vigie's own rules: (path inside `rules/`, YAML text).
pub fn pack() -> &'static [(&'static str, &'static str)] {
    PACK
}

/// The user's rule folder: `$VIGIE_RULES_DIR`, else `/var/lib/vigie/rules`
/// for root, else `$XDG_DATA_HOME/vigie/rules` (`~/.local/share/vigie/rules`).
pub fn user_rules_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VIGIE_RULES_DIR") {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/vigie/rules");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("vigie/rules")
}

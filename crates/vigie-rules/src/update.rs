//! `vigie rules update`: fetch SigmaHQ's release archive, verify it, install
//! it into the user's rule folder in one step.
//!
//! Verification, in order: the SHA-256 when the admin gives one; the archive
//! is a readable zip whose entries stay inside the folder (no absolute paths,
//! no `..`, no links) and within size bounds; the extracted rules load with
//! Vigie's engine (at least [`MIN_LOADED_RATIO`] of them). Only then is the
//! previous folder swapped out (kept as `<dir>.previous`), so a bad download
//! never leaves the host without rules.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// SigmaHQ's release archive with every rule set.
pub const DEFAULT_URL: &str =
    "https://github.com/SigmaHQ/sigma/releases/latest/download/sigma_all_rules.zip";

/// A download larger than this is refused.
pub const MAX_ARCHIVE_BYTES: u64 = 256 * 1024 * 1024;
/// Uncompressed size bound (zip bombs).
pub const MAX_EXTRACTED_BYTES: u64 = 1024 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 100_000;
/// The share of rules that must load for an archive to be installed.
pub const MIN_LOADED_RATIO: f64 = 0.9;

#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// `http(s)://` URL, or a local path to an archive (air-gapped hosts).
    pub from: String,
    /// Expected SHA-256 of the archive, hex.
    pub sha256: Option<String>,
    /// The rule folder to install into.
    pub dest: PathBuf,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UpdateReport {
    pub from: String,
    pub sha256: String,
    pub archive_bytes: u64,
    pub rule_files: usize,
    pub rules_loaded: usize,
    pub rules_total: usize,
    pub dest: PathBuf,
    /// Where the folder that was replaced now is, if there was one.
    pub previous: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("download from {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("archive is larger than {MAX_ARCHIVE_BYTES} bytes")]
    TooLarge,
    #[error("SHA-256 mismatch: expected {expected}, got {actual}")]
    Checksum { expected: String, actual: String },
    #[error("not a valid zip archive: {0}")]
    Archive(String),
    #[error("archive entry {0:?} would be written outside the rule folder")]
    UnsafePath(String),
    #[error(
        "archive is too large once extracted (more than {MAX_EXTRACTED_BYTES} bytes or {MAX_ENTRIES} entries)"
    )]
    Bomb,
    #[error("archive contains no Sigma rule")]
    NoRules,
    #[error("only {loaded} of {total} rules load; the archive was not installed")]
    TooManyBroken { loaded: usize, total: usize },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> UpdateError {
    let context = context.into();
    move |source| UpdateError::Io { context, source }
}

/// Runs the whole update. `progress(done, total)` is called while downloading.
pub fn update(
    options: &UpdateOptions,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<UpdateReport, UpdateError> {
    let parent = options
        .dest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    fs::create_dir_all(&parent).map_err(io_err(format!("create {}", parent.display())))?;
    let pid = std::process::id();
    let archive_path = parent.join(format!(".vigie-rules-download-{pid}.zip"));
    let staging = parent.join(format!(".vigie-rules-staging-{pid}"));
    let _cleanup = Cleanup(vec![archive_path.clone(), staging.clone()]);

    let (sha256, archive_bytes) = fetch(&options.from, &archive_path, progress)?;
    if let Some(expected) = &options.sha256 {
        let expected = expected.trim().to_ascii_lowercase();
        // Not a secret: a plain comparison is fine.
        if expected != sha256 {
            return Err(UpdateError::Checksum {
                expected,
                actual: sha256,
            });
        }
    }
    let rule_files = extract(&archive_path, &staging)?;
    if rule_files == 0 {
        return Err(UpdateError::NoRules);
    }
    let (_engine, report) = vigie_detect::Engine::load(&[&staging]);
    let (loaded, total) = (report.loaded(), report.total());
    if total == 0 {
        return Err(UpdateError::NoRules);
    }
    if (loaded as f64) < MIN_LOADED_RATIO * total as f64 {
        return Err(UpdateError::TooManyBroken { loaded, total });
    }
    let provenance = serde_json::json!({
        "from": options.from,
        "sha256": sha256,
        "installed": chrono::Utc::now().to_rfc3339(),
        "rules_loaded": loaded,
        "rules_total": total,
    });
    fs::write(staging.join(".vigie-source.json"), provenance.to_string())
        .map_err(io_err("write provenance"))?;

    let previous = options.dest.with_extension("previous");
    let had_previous = options.dest.exists();
    if had_previous {
        if previous.exists() {
            fs::remove_dir_all(&previous)
                .map_err(io_err(format!("remove {}", previous.display())))?;
        }
        fs::rename(&options.dest, &previous)
            .map_err(io_err(format!("move aside {}", options.dest.display())))?;
    }
    if let Err(e) = fs::rename(&staging, &options.dest) {
        // Put the old rules back rather than leave none.
        if had_previous {
            let _ = fs::rename(&previous, &options.dest);
        }
        return Err(io_err(format!("install into {}", options.dest.display()))(
            e,
        ));
    }
    Ok(UpdateReport {
        from: options.from.clone(),
        sha256,
        archive_bytes,
        rule_files,
        rules_loaded: loaded,
        rules_total: total,
        dest: options.dest.clone(),
        previous: had_previous.then_some(previous),
    })
}

/// Removes temporary paths when the update ends, whatever happened.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            if path.is_dir() {
                let _ = fs::remove_dir_all(path);
            } else {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Copies the archive to `to`, returning its SHA-256 and size.
fn fetch(
    from: &str,
    to: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(String, u64), UpdateError> {
    let out = fs::File::create(to).map_err(io_err(format!("create {}", to.display())))?;
    if from.starts_with("http://") || from.starts_with("https://") {
        let download = |reason: String| UpdateError::Download {
            url: from.to_string(),
            reason,
        };
        let response = ureq::get(from)
            .call()
            .map_err(|e| download(e.to_string()))?;
        let total = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if total.is_some_and(|t| t > MAX_ARCHIVE_BYTES) {
            return Err(UpdateError::TooLarge);
        }
        let reader = response.into_body().into_reader();
        copy_hashing(reader, out, total, progress).map_err(|e| match e {
            CopyError::TooLarge => UpdateError::TooLarge,
            CopyError::Io(e) => download(e.to_string()),
        })
    } else {
        let path = from.strip_prefix("file://").unwrap_or(from);
        let file = fs::File::open(path).map_err(io_err(format!("open {path}")))?;
        let total = file.metadata().ok().map(|m| m.len());
        copy_hashing(file, out, total, progress).map_err(|e| match e {
            CopyError::TooLarge => UpdateError::TooLarge,
            CopyError::Io(e) => io_err(format!("read {path}"))(e),
        })
    }
}

enum CopyError {
    TooLarge,
    Io(io::Error),
}

fn copy_hashing(
    mut reader: impl Read,
    mut out: fs::File,
    total: Option<u64>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(String, u64), CopyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(CopyError::Io)?;
        if n == 0 {
            break;
        }
        done += n as u64;
        if done > MAX_ARCHIVE_BYTES {
            return Err(CopyError::TooLarge);
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Io)?;
        progress(done, total);
    }
    out.sync_all().map_err(CopyError::Io)?;
    Ok((hex::encode(hasher.finalize()), done))
}

/// A relative path inside the archive, or `None` when it would escape.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Extracts rule files (and licence/readme texts) into `dir`; returns how many
/// rule files there were.
fn extract(archive: &Path, dir: &Path) -> Result<usize, UpdateError> {
    let file = fs::File::open(archive).map_err(io_err("open downloaded archive"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| UpdateError::Archive(e.to_string()))?;
    if zip.len() > MAX_ENTRIES {
        return Err(UpdateError::Bomb);
    }
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let mut written = 0u64;
    let mut rules = 0usize;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| UpdateError::Archive(e.to_string()))?;
        let name = entry
            .name()
            .map_err(|e| UpdateError::Archive(format!("entry {i}: {e}")))?
            .into_owned();
        let relative = safe_relative(&name).ok_or_else(|| UpdateError::UnsafePath(name.clone()))?;
        if entry.is_symlink() {
            return Err(UpdateError::UnsafePath(name));
        }
        if entry.is_dir() {
            continue;
        }
        let file_name = relative
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let is_rule = file_name.ends_with(".yml") || file_name.ends_with(".yaml");
        let is_text = file_name.starts_with("license") || file_name.starts_with("readme");
        if !is_rule && !is_text {
            continue;
        }
        let target = dir.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
        }
        let mut out =
            fs::File::create(&target).map_err(io_err(format!("create {}", target.display())))?;
        // Bound what one entry may expand to, whatever its header claims.
        let budget = MAX_EXTRACTED_BYTES.saturating_sub(written) + 1;
        let copied = io::copy(&mut (&mut entry).take(budget), &mut out)
            .map_err(|e| UpdateError::Archive(format!("{name}: {e}")))?;
        written += copied;
        if written > MAX_EXTRACTED_BYTES {
            return Err(UpdateError::Bomb);
        }
        if is_rule {
            rules += 1;
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn paths_that_escape_are_refused() {
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("rules/../../x.yml").is_none());
        assert!(safe_relative("").is_none());
        assert_eq!(
            safe_relative("./rules/linux/a.yml").unwrap(),
            std::path::PathBuf::from("rules/linux/a.yml")
        );
    }
}

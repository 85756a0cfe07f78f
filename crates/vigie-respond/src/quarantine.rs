//! Quarantine: move a file into the state directory (`quarantine/<id>/data`,
//! mode 000) with its metadata, and put it back exactly: bytes, owner, mode,
//! access and modification times.
//!
//! Nothing is lost on a crash: the metadata is written and the copy synced
//! before the original is removed; restore verifies the SHA-256 before it
//! removes the quarantined copy.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{StateDir, write_atomic};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineMeta {
    pub id: String,
    pub original_path: String,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    pub sha256: String,
    pub atime: (i64, i64),
    pub mtime: (i64, i64),
    pub quarantined_at: chrono::DateTime<chrono::Utc>,
    /// Hard links the file had: more than 1 means the content is still
    /// reachable under other names after quarantine.
    #[serde(default)]
    pub nlink: u64,
}

fn dir(state: &StateDir) -> PathBuf {
    state.join("quarantine")
}

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Copy `from` to `to` (new file), synced, then give it `mode`.
fn copy_synced(from: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    let f = File::open(to)?;
    f.sync_all()?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Move `path` into quarantine.
pub fn quarantine(state: &StateDir, path: &Path) -> Result<QuarantineMeta> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let md =
        fs::symlink_metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !md.file_type().is_file() {
        bail!("{} is not a regular file; not quarantined", path.display());
    }
    let sha256 = sha256_file(&path)?;
    let meta = QuarantineMeta {
        id: uuid::Uuid::now_v7().to_string(),
        original_path: path.display().to_string(),
        uid: md.uid(),
        gid: md.gid(),
        mode: md.mode() & 0o7777,
        size: md.size(),
        sha256,
        atime: (md.atime(), md.atime_nsec()),
        mtime: (md.mtime(), md.mtime_nsec()),
        quarantined_at: chrono::Utc::now(),
        nlink: md.nlink(),
    };
    let qdir = dir(state).join(&meta.id);
    fs::create_dir_all(&qdir).with_context(|| format!("cannot create {}", qdir.display()))?;
    fs::set_permissions(dir(state), fs::Permissions::from_mode(0o700))?;
    write_atomic(
        &qdir.join("meta.json"),
        &serde_json::to_vec_pretty(&meta).expect("serialisable"),
        0o600,
    )?;
    let data = qdir.join("data");
    match fs::rename(&path, &data) {
        Ok(()) => fs::set_permissions(&data, fs::Permissions::from_mode(0o000))?,
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            copy_synced(&path, &data, 0o000)?;
            if sha256_file(&data)? != meta.sha256 {
                let _ = fs::remove_dir_all(&qdir);
                bail!(
                    "{} changed while quarantined; left in place",
                    path.display()
                );
            }
            fs::remove_file(&path)
                .with_context(|| format!("copied but cannot remove {}", path.display()))?;
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&qdir);
            return Err(e).with_context(|| format!("cannot move {}", path.display()));
        }
    }
    Ok(meta)
}

/// Everything in quarantine, oldest first. Unreadable entries are skipped.
pub fn list(state: &StateDir) -> Result<Vec<QuarantineMeta>> {
    let d = dir(state);
    let rd = match fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", d.display())),
    };
    let mut out: Vec<QuarantineMeta> = rd
        .flatten()
        .filter_map(|e| fs::read(e.path().join("meta.json")).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn valid_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

/// Put a quarantined file back where it was, exactly. Refuses to overwrite a
/// file that now exists at the original path.
pub fn restore(state: &StateDir, id: &str) -> Result<QuarantineMeta> {
    if !valid_id(id) {
        bail!("{id:?} is not a quarantine id (see vigie agent status)");
    }
    let qdir = dir(state).join(id);
    let meta: QuarantineMeta = serde_json::from_slice(
        &fs::read(qdir.join("meta.json"))
            .with_context(|| format!("no quarantined file with id {id}"))?,
    )
    .with_context(|| format!("{} is corrupt", qdir.join("meta.json").display()))?;
    let target = PathBuf::from(&meta.original_path);
    if fs::symlink_metadata(&target).is_ok() {
        bail!(
            "{} exists again; move it away before restoring",
            target.display()
        );
    }
    let data = qdir.join("data");
    match fs::rename(&data, &target) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            copy_synced(&data, &target, 0o000)?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot restore {}", target.display())),
    }
    // Hash before setting the times: reading updates the access time.
    if sha256_file(&target)? != meta.sha256 {
        bail!(
            "{} restored but its SHA-256 differs; metadata kept in quarantine",
            target.display()
        );
    }
    std::os::unix::fs::lchown(&target, Some(meta.uid), Some(meta.gid))
        .with_context(|| format!("cannot chown {}", target.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode))
        .with_context(|| format!("cannot chmod {}", target.display()))?;
    utimensat(
        nix::fcntl::AT_FDCWD,
        &target,
        &TimeSpec::new(meta.atime.0, meta.atime.1),
        &TimeSpec::new(meta.mtime.0, meta.mtime.1),
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("cannot set times of {}", target.display()))?;
    fs::remove_dir_all(&qdir).with_context(|| format!("cannot remove {}", qdir.display()))?;
    Ok(meta)
}

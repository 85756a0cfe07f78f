//! The encryption simulator. It walks a directory it is given, rewrites each
//! regular file with a ChaCha20 keystream XORed over its content (uniform,
//! high-entropy bytes, like real ransomware output), renames it with a new
//! extension and drops a note in each directory, at a configurable rate.
//!
//! Safety: it refuses `/`, home directories, system directories and any
//! directory without the marker file (created by the test that wants it
//! run), never follows symbolic links and never leaves the directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use clap::Parser;

/// The marker file a directory must hold for the simulator to touch it.
pub const MARKER: &str = ".vigie-ransim-target";

/// Encrypts the files of a TEST directory the way ransomware does (not malware: no
/// spreading, no key exfiltration, confined to DIR).
///
/// It refuses `/`, home and system directories, and any DIR that does not contain
/// the marker file `.vigie-ransim-target` (create it to consent). Each regular
/// file below DIR is rewritten in place with a ChaCha20 keystream, then renamed
/// to `<name>.<EXT>`; a note is dropped in each directory first.
///
/// Example: `touch /srv/test/.vigie-ransim-target && vigie-ransim --dir /srv/test --rate 50`
#[derive(Debug, Clone, Parser)]
#[command(name = "vigie-ransim", version)]
pub struct Options {
    /// The directory to encrypt (must contain the marker file).
    #[arg(long)]
    pub dir: PathBuf,
    /// Files per second; 0 means as fast as possible.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Extension added to encrypted files.
    #[arg(long, default_value = "vigielock")]
    pub ext: String,
    /// Name of the note dropped in each directory.
    #[arg(long, default_value = "HOW_TO_RECOVER_FILES.txt")]
    pub note: String,
    /// Stop after this many files (default: all).
    #[arg(long)]
    pub max_files: Option<usize>,
    /// Write an encrypted copy and delete the original instead of rewriting
    /// in place.
    #[arg(long)]
    pub copy: bool,
    /// Print each file as it is encrypted.
    #[arg(long)]
    pub verbose: bool,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub files: usize,
    pub dirs: usize,
    pub notes: usize,
    pub seconds: f64,
}

/// Refuses what must never be encrypted; returns the canonical directory.
pub fn check_target(dir: &Path) -> Result<PathBuf> {
    let root = dir
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve", dir.display()))?;
    if !root.is_dir() {
        bail!("{}: not a directory", root.display());
    }
    let forbidden = [
        "/", "/root", "/home", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/var", "/boot",
        "/opt", "/srv", "/tmp", "/proc", "/sys", "/dev", "/run",
    ];
    if forbidden.iter().any(|f| root == Path::new(f)) {
        bail!(
            "{}: refusing a system or top-level directory",
            root.display()
        );
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from)
        && home.canonicalize().ok().is_some_and(|h| h == root)
    {
        bail!("{}: refusing the home directory", root.display());
    }
    if root.parent() == Some(Path::new("/home")) {
        bail!("{}: refusing a home directory", root.display());
    }
    let marker = root.join(MARKER);
    if !marker.symlink_metadata().is_ok_and(|m| m.is_file()) {
        bail!(
            "{}: no marker file {MARKER}; create it to allow the simulator here",
            root.display()
        );
    }
    Ok(root)
}

fn cipher(seed: u64) -> ChaCha20 {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(b"vigiesim");
    ChaCha20::new(&key.into(), &[0u8; 12].into())
}

/// Runs the simulator; stops at the first I/O error it cannot skip.
pub fn run(opts: &Options) -> Result<Summary> {
    let root = check_target(&opts.dir)?;
    let started = Instant::now();
    let period = (opts.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / opts.rate));
    let mut next = Instant::now();
    let mut sum = Summary::default();
    let mut noted = std::collections::HashSet::new();
    let suffix = format!(".{}", opts.ext);
    // Collect first: renaming while walking would revisit files.
    let files: Vec<PathBuf> = walkdir::WalkDir::new(&root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
            n.is_some_and(|n| n != MARKER && n != opts.note && !n.ends_with(&suffix))
        })
        .collect();
    for (i, path) in files.iter().enumerate() {
        if opts.max_files.is_some_and(|m| sum.files >= m) {
            break;
        }
        // Confinement: never leave the root (walkdir does not follow links,
        // this guards against a directory swapped for a link meanwhile).
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        if !real.starts_with(&root) {
            continue;
        }
        let dir = real.parent().unwrap_or(&root).to_path_buf();
        if noted.insert(dir.clone()) {
            sum.dirs += 1;
            let note = dir.join(&opts.note);
            let text = format!(
                "Your files in {} were encrypted by vigie-ransim, Vigie's test simulator.\n\
                 This is a drill. The key is derived from a constant seed.\n",
                dir.display()
            );
            if std::fs::write(&note, text).is_ok() {
                sum.notes += 1;
            }
        }
        if let Some(p) = period {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += p;
        }
        let Ok(mut data) = std::fs::read(&real) else {
            continue;
        };
        cipher(i as u64).apply_keystream(&mut data);
        let mut name = real.file_name().unwrap_or_default().to_os_string();
        name.push(&suffix);
        let target = real.with_file_name(name);
        if opts.copy {
            let mut f = std::fs::File::create(&target)
                .with_context(|| format!("create {}", target.display()))?;
            f.write_all(&data)?;
            drop(f);
            std::fs::remove_file(&real)?;
        } else {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&real)
                .with_context(|| format!("open {}", real.display()))?;
            f.write_all(&data)?;
            drop(f);
            std::fs::rename(&real, &target)?;
        }
        sum.files += 1;
        if opts.verbose {
            println!("{}", target.display());
            let _ = std::io::stdout().flush();
        }
    }
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> Options {
        Options {
            dir: dir.to_path_buf(),
            rate: 0.0,
            ext: "vigielock".into(),
            note: "HOW_TO_RECOVER_FILES.txt".into(),
            max_files: None,
            copy: false,
            verbose: false,
        }
    }

    #[test]
    fn refuses_root_home_and_unmarked_dirs() {
        assert!(check_target(Path::new("/")).is_err());
        assert!(check_target(Path::new("/tmp")).is_err());
        if let Some(home) = std::env::var_os("HOME") {
            assert!(check_target(Path::new(&home)).is_err());
        }
        let d = tempfile::tempdir().unwrap();
        let e = check_target(d.path()).unwrap_err().to_string();
        assert!(e.contains("no marker file"), "{e}");
        std::fs::write(d.path().join("a.txt"), b"hello").unwrap();
        assert!(run(&opts(d.path())).is_err());
        assert_eq!(std::fs::read(d.path().join("a.txt")).unwrap(), b"hello");
    }

    #[test]
    fn encrypts_renames_and_drops_notes_inside_only() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep.txt"), b"outside").unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(MARKER), b"").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let text = b"water billing, sanitation, waste ".repeat(100);
        std::fs::write(d.path().join("a.txt"), &text).unwrap();
        std::fs::write(d.path().join("sub/b.csv"), &text).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("link")).unwrap();
        let s = run(&opts(d.path())).unwrap();
        assert_eq!((s.files, s.dirs, s.notes), (2, 2, 2));
        let enc = std::fs::read(d.path().join("a.txt.vigielock")).unwrap();
        assert_eq!(enc.len(), text.len());
        assert_ne!(enc, text);
        assert!(!d.path().join("a.txt").exists());
        assert!(d.path().join("sub/HOW_TO_RECOVER_FILES.txt").exists());
        assert_eq!(
            std::fs::read(outside.path().join("keep.txt")).unwrap(),
            b"outside"
        );
        // A second run finds nothing left to encrypt.
        assert_eq!(run(&opts(d.path())).unwrap().files, 0);
    }
}

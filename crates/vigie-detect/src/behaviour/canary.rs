//! Canary files: decoys planted where ransomware looks first. Each watched
//! directory gets one file whose name sorts before everything (hidden with
//! a leading dot) and one whose name sorts after everything, with realistic
//! content (an invoice PDF, an accounts CSV). Nobody has a reason to touch
//! them; [`super::Ransomware`] raises a critical alert when anything writes,
//! renames, truncates or deletes one.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where and how to plant canaries (the agent's `[canaries]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryOptions {
    /// Directories that get canaries (shares, home and document folders).
    /// Missing directories are skipped, not created.
    pub dirs: Vec<PathBuf>,
    /// Name sorting first (hidden: leading dot).
    pub first_name: String,
    /// Name sorting last.
    pub last_name: String,
}

impl Default for CanaryOptions {
    fn default() -> Self {
        CanaryOptions {
            dirs: Vec::new(),
            // '.' and '!' sort before digits and letters, '~' after them.
            first_name: ".!000-factures-2026.pdf".into(),
            last_name: "~zz-comptes-2026.csv".into(),
        }
    }
}

/// Planted canary files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Canaries {
    paths: Vec<PathBuf>,
}

/// A small, valid one-page PDF: looks like an invoice to a file walker that
/// checks magic numbers.
fn pdf(seed: &str) -> Vec<u8> {
    let text = format!("Facture 2026-{seed} eau et assainissement");
    let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{stream}\nendstream",
            stream.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).bytes());
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).bytes());
    for off in offsets {
        out.extend(format!("{off:010} 00000 n \n").bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .bytes(),
    );
    out
}

fn csv(seed: &str) -> Vec<u8> {
    let mut out = String::from("compte;libelle;debit;credit\n");
    for i in 0..40u32 {
        let n = i.wrapping_mul(7919).wrapping_add(seed.len() as u32 * 31) % 100_000;
        out.push_str(&format!(
            "6{:05};Facture fournisseur {i};{}.{:02};0.00\n",
            n,
            n / 7,
            n % 100
        ));
    }
    out.into_bytes()
}

/// What a canary named `name` in `dir` holds.
fn content(name: &str, dir: &Path) -> Vec<u8> {
    let seed = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".pdf") {
        pdf(&seed)
    } else {
        csv(&seed)
    }
}

impl Canaries {
    /// Plants the canaries (missing directories are skipped). A canary that
    /// is already there with the expected content is kept; a different file
    /// with that name is left alone and not watched (never overwrite a
    /// person's file).
    pub fn plant(opts: &CanaryOptions) -> std::io::Result<Canaries> {
        let mut paths = Vec::new();
        for dir in &opts.dirs {
            if !dir.is_dir() {
                tracing::warn!(dir = %dir.display(), "canary directory missing: skipped");
                continue;
            }
            for name in [&opts.first_name, &opts.last_name] {
                let path = dir.join(name);
                let want = content(name, dir);
                match std::fs::read(&path) {
                    Ok(have) if have == want => paths.push(path),
                    Ok(_) => {
                        tracing::warn!(path = %path.display(), "a different file has the canary's name: not watched");
                    }
                    Err(_) => {
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&path)?;
                        f.write_all(&want)?;
                        f.sync_all()?;
                        paths.push(path);
                    }
                }
            }
        }
        Ok(Canaries { paths })
    }

    /// The planted paths, for [`super::Ransomware::set_canaries`].
    pub fn paths(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// Canaries that are gone or changed (to re-plant or to report).
    pub fn damaged(&self) -> Vec<PathBuf> {
        self.paths.iter().filter(|p| !intact(p)).cloned().collect()
    }

    /// Removes the canaries that still hold what was planted.
    pub fn remove(&self) -> std::io::Result<()> {
        for p in self.paths.iter().filter(|p| intact(p)) {
            std::fs::remove_file(p)?;
        }
        Ok(())
    }
}

/// Whether the canary at `path` still holds what was planted there.
fn intact(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::read(path).ok() == name.map(|n| content(&n, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plant_is_idempotent_and_never_overwrites() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("partage");
        std::fs::create_dir(&a).unwrap();
        let b = root.path().join("missing");
        let opts = CanaryOptions {
            dirs: vec![a.clone(), b],
            ..CanaryOptions::default()
        };
        let c = Canaries::plant(&opts).unwrap();
        assert_eq!(c.paths().len(), 2);
        let first = std::fs::read(a.join(&opts.first_name)).unwrap();
        assert!(first.starts_with(b"%PDF-1.4"));
        assert!(first.ends_with(b"%%EOF\n"));
        // Sorting: the first canary before any ordinary name, the last after.
        assert!(opts.first_name.as_str() < "0" && opts.last_name.as_str() > "zz");
        assert_eq!(Canaries::plant(&opts).unwrap(), c);
        assert!(c.damaged().is_empty());
        std::fs::write(a.join(&opts.last_name), b"encrypted").unwrap();
        assert_eq!(c.damaged(), vec![a.join(&opts.last_name)]);
        // A file of a person with the canary's name is not taken over.
        let again = Canaries::plant(&opts).unwrap();
        assert_eq!(again.paths().len(), 1);
        assert_eq!(
            std::fs::read(a.join(&opts.last_name)).unwrap(),
            b"encrypted"
        );
        c.remove().unwrap();
        assert!(!a.join(&opts.first_name).exists());
        assert!(a.join(&opts.last_name).exists());
    }
}

//! A small file share to encrypt or to work on: directories of documents
//! with realistic text content, and how many of them changed since.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Fills `root` with `dirs` directories (`service-00`, ...) of `per_dir`
/// documents and the simulator's consent marker; returns what each file held.
pub fn populate(root: &Path, dirs: usize, per_dir: usize) -> Result<HashMap<PathBuf, Vec<u8>>> {
    let mut files = HashMap::new();
    let kinds = ["txt", "csv", "md", "html", "pdf"];
    for d in 0..dirs {
        let dir = root.join(format!("service-{d:02}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for i in 0..per_dir {
            let ext = kinds[(d + i) % kinds.len()];
            let path = dir.join(format!("dossier-{i:03}.{ext}"));
            let mut body = if ext == "pdf" {
                b"%PDF-1.4\n".to_vec()
            } else {
                Vec::new()
            };
            for line in 0..(40 + (i * 13) % 120) {
                body.extend(
                    format!(
                        "{line};Facture eau/assainissement {d}-{i};abonne {};montant {}.{:02} EUR\n",
                        (d * 7919 + i * 104_729 + line) % 100_000,
                        (i * 37 + line) % 900,
                        line % 100
                    )
                    .bytes(),
                );
            }
            std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
            files.insert(path, body);
        }
    }
    std::fs::write(root.join(crate::ransim::MARKER), b"")?;
    Ok(files)
}

/// Files no longer holding what they held (encrypted, renamed, or gone).
pub fn touched(files: &HashMap<PathBuf, Vec<u8>>) -> usize {
    files
        .iter()
        .filter(|(p, body)| std::fs::read(p).ok().as_ref() != Some(*body))
        .count()
}

//! `vigie rules update` against a real HTTP server on loopback serving an
//! archive made from the pinned SigmaHQ rule set.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;
use vigie_rules::update::{UpdateError, UpdateOptions, update};

fn sigma_dir() -> PathBuf {
    let shared = std::env::var_os("VIGIE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = shared.join("data/sigmahq");
    assert!(
        dir.join("rules").is_dir(),
        "no SigmaHQ data at {}",
        dir.display()
    );
    dir
}

/// A zip of `rules/` and `rules-emerging-threats/` as SigmaHQ lays out its
/// release, plus optional extra entries.
fn make_archive(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let sigma = sigma_dir();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for top in ["rules", "rules-emerging-threats"] {
        for path in walk(&sigma.join(top)) {
            let name = path
                .strip_prefix(&sigma)
                .unwrap()
                .to_string_lossy()
                .to_string();
            zip.start_file(name, options).unwrap();
            zip.write_all(&std::fs::read(&path).unwrap()).unwrap();
        }
    }
    zip.start_file("LICENSE", options).unwrap();
    zip.write_all(&std::fs::read(sigma.join("LICENSE")).unwrap())
        .unwrap();
    for (name, bytes) in extra {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A minimal HTTP/1.1 server on 127.0.0.1: `/archive.zip` answers the bytes,
/// anything else 404. It serves `requests` connections, then stops.
fn serve(body: Arc<Vec<u8>>, requests: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            if request_line.starts_with("GET /archive.zip ") {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/zip\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .unwrap();
                stream.write_all(&body).unwrap();
            } else {
                stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap();
            }
        }
    });
    (format!("http://{addr}"), handle)
}

fn count_rules(dir: &Path) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .count()
}

#[test]
fn installs_verifies_and_keeps_the_previous_rules() {
    let archive = Arc::new(make_archive(&[]));
    let sha = hex::encode(sha2::Sha256::digest(archive.as_slice()));
    let (base, server) = serve(archive.clone(), 3);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("rules");

    // First install, with the right checksum.
    let options = UpdateOptions {
        from: format!("{base}/archive.zip"),
        sha256: Some(sha.to_uppercase()),
        dest: dest.clone(),
    };
    let mut last = (0, None);
    let report = update(&options, &mut |done, total| last = (done, total)).unwrap();
    assert_eq!(last, (archive.len() as u64, Some(archive.len() as u64)));
    assert_eq!(report.sha256, sha);
    assert!(report.rules_total > 3000, "{report:?}");
    assert!(report.rules_loaded as f64 >= 0.99 * report.rules_total as f64);
    assert_eq!(count_rules(&dest), report.rule_files);
    assert!(dest.join("LICENSE").is_file());
    assert!(dest.join(".vigie-source.json").is_file());
    assert!(report.previous.is_none());

    // A wrong checksum changes nothing.
    let wrong = UpdateOptions {
        sha256: Some("00".repeat(32)),
        ..options.clone()
    };
    let err = update(&wrong, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, UpdateError::Checksum { .. }), "{err}");
    assert_eq!(count_rules(&dest), report.rule_files);

    // A second good install keeps the first as .previous.
    let report2 = update(&options, &mut |_, _| {}).unwrap();
    assert_eq!(
        report2.previous.as_deref(),
        Some(dest.with_extension("previous").as_path())
    );
    assert_eq!(
        count_rules(&dest.with_extension("previous")),
        report.rule_files
    );
    server.join().unwrap();

    // Nothing is left behind next to the folder.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".vigie-rules"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_archives_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("rules");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("mine.yml"), "title: keep me\n").unwrap();
    let attempt = |bytes: Vec<u8>| {
        let file = tmp.path().join("archive.zip");
        std::fs::write(&file, bytes).unwrap();
        update(
            &UpdateOptions {
                from: file.display().to_string(),
                sha256: None,
                dest: dest.clone(),
            },
            &mut |_, _| {},
        )
        .unwrap_err()
    };

    let err = attempt(make_archive(&[("../escape.yml", b"title: x\n")]));
    assert!(matches!(err, UpdateError::UnsafePath(_)), "{err}");
    let err = attempt(b"PK\x03\x04 this is not a zip".to_vec());
    assert!(matches!(err, UpdateError::Archive(_)), "{err}");

    // An archive of broken rules is not installed.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..10 {
        zip.start_file(
            format!("rules/bad{i}.yml"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(b"title: broken\ndetection: [unclosed\n")
            .unwrap();
    }
    let err = attempt(zip.finish().unwrap().into_inner());
    assert!(
        matches!(
            err,
            UpdateError::TooManyBroken { .. } | UpdateError::NoRules
        ),
        "{err}"
    );

    // A 404 from the server.
    let (base, server) = serve(Arc::new(Vec::new()), 1);
    let err = update(
        &UpdateOptions {
            from: format!("{base}/missing.zip"),
            sha256: None,
            dest: dest.clone(),
        },
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, UpdateError::Download { .. }), "{err}");
    server.join().unwrap();

    let mut kept = String::new();
    std::fs::File::open(dest.join("mine.yml"))
        .unwrap()
        .read_to_string(&mut kept)
        .unwrap();
    assert_eq!(kept, "title: keep me\n");
    assert_eq!(count_rules(&dest), 1);
}

//! Content sampling for file events: the Shannon entropy of the first
//! 64 KiB of a file that was just written or renamed, and the format its
//! magic number shows, with the values seen the last time the same inode was
//! sampled. The kernel cannot compute entropy cheaply; user space reads at
//! most [`SAMPLE_MAX`] bytes of regular files only, so the cost per event is
//! bounded (one open, one fstat, one read from the page cache).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use vigie_event::{Event, FileAction, Payload};

/// Bytes read per sample.
pub(crate) const SAMPLE_MAX: usize = 64 * 1024;
/// Inodes remembered (for `previous_entropy`); the map is cleared when full,
/// which only loses history, never events.
const CACHE_MAX: usize = 16_384;
/// Paths whose last write was sampled (for the rename that follows); the
/// map is cleared when full, which only costs a second open at a rename.
const WRITTEN_MAX: usize = 4096;
/// FUSE: a user-space file system may never answer a read.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// What a sample says about a file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub entropy: f32,
    pub header: Option<&'static str>,
    pub size: u64,
    pub inode: u64,
    pub previous_entropy: Option<f32>,
    pub previous_header: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Birth time, where the file system records it: an inode number freed
    /// by a deletion and given to a new file must not pass the old file's
    /// content off as this one's history.
    born: Option<std::time::SystemTime>,
    mtime: (i64, i64),
    size: u64,
    entropy: f32,
    header: Option<&'static str>,
    previous: Option<(f32, Option<&'static str>)>,
}

pub(crate) struct ContentSampler {
    cache: HashMap<(u64, u64), Entry>,
    /// The sample of each path's last write session, by path.
    written: HashMap<String, Sample>,
    buf: Vec<u8>,
}

/// Shannon entropy in bits per byte (0 for empty input).
pub fn shannon_entropy(data: &[u8]) -> f32 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    let h: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    h as f32
}

/// The format a file's first bytes show, by magic number (the `infer`
/// crate's signature table), as its usual extension.
pub fn header_of(data: &[u8]) -> Option<&'static str> {
    infer::get(data).map(|t| t.extension())
}

impl ContentSampler {
    pub fn new() -> Self {
        ContentSampler {
            cache: HashMap::new(),
            written: HashMap::new(),
            buf: vec![0u8; SAMPLE_MAX],
        }
    }

    fn open(path: &Path) -> Option<File> {
        let base = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        // O_NOATIME keeps our reads invisible to atime; it is refused for
        // files we do not own without CAP_FOWNER, so retry without.
        // Only EPERM is worth a retry: after ENOENT (a file already renamed
        // or deleted, most of them under a file storm) a second lookup would
        // only wait on the directory's lock again.
        match OpenOptions::new()
            .read(true)
            .custom_flags(base | libc::O_NOATIME)
            .open(path)
        {
            Ok(f) => Some(f),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => OpenOptions::new()
                .read(true)
                .custom_flags(base)
                .open(path)
                .ok(),
            Err(_) => None,
        }
    }

    /// Samples the written and renamed files of a batch of events, in
    /// order, skipping a path that a later event of the same batch renamed
    /// away or deleted: that event is already done in the kernel (records
    /// are sent at syscall exit), so the path names nothing or another file
    /// by now, and its open would only contend with the writer for the
    /// directory's lock. A rename of a path whose write was sampled takes
    /// that sample (a rename does not change content) instead of opening
    /// the file again.
    pub fn fill_batch(&mut self, batch: &mut [Event]) {
        let mut skip = vec![false; batch.len()];
        {
            let mut gone: HashSet<&str> = HashSet::new();
            for (i, ev) in batch.iter().enumerate().rev() {
                let Payload::File(fe) = &ev.payload else {
                    continue;
                };
                match fe.action {
                    FileAction::Write => skip[i] = gone.contains(fe.file.path.as_str()),
                    FileAction::Rename => {
                        skip[i] = gone.contains(fe.file.path.as_str());
                        if let Some(old) = &fe.file.vigie.original_path {
                            gone.insert(old);
                        }
                    }
                    FileAction::Delete => {
                        gone.insert(&fe.file.path);
                    }
                    _ => {}
                }
            }
        }
        for (ev, skip) in batch.iter_mut().zip(skip) {
            let Payload::File(fe) = &mut ev.payload else {
                continue;
            };
            match fe.action {
                FileAction::Write => {
                    if skip {
                        self.written.remove(&fe.file.path);
                        continue;
                    }
                    let sample = self.sample(fe.file.path.as_bytes());
                    if let Some(x) = &sample {
                        if self.written.len() >= WRITTEN_MAX {
                            self.written.clear();
                        }
                        self.written.insert(fe.file.path.clone(), x.clone());
                    } else {
                        self.written.remove(&fe.file.path);
                    }
                    Self::fill_with(sample, &mut fe.file);
                }
                FileAction::Rename => {
                    let earlier = fe
                        .file
                        .vigie
                        .original_path
                        .as_ref()
                        .and_then(|old| self.written.remove(old));
                    if skip {
                        continue;
                    }
                    let sample = match earlier {
                        Some(x) => {
                            self.written.insert(fe.file.path.clone(), x.clone());
                            Some(x)
                        }
                        None => self.sample(fe.file.path.as_bytes()),
                    };
                    Self::fill_with(sample, &mut fe.file);
                }
                FileAction::Delete => {
                    self.written.remove(&fe.file.path);
                }
                _ => {}
            }
        }
    }

    /// Fills a file event's entropy, header, size and inode (and the
    /// previous values) from a file already open for reading at
    /// offset 0 (the fanotify event's descriptor): no second open by path.
    pub fn fill_open(&mut self, file: &File, f: &mut vigie_event::File) {
        let sample = self.sample_open(file);
        Self::fill_with(sample, f);
    }

    fn fill_with(sample: Option<Sample>, f: &mut vigie_event::File) {
        if let Some(x) = sample {
            f.size = Some(x.size);
            f.inode = Some(x.inode.to_string());
            // Two decimals are plenty and keep the JSON short.
            let round = |e: f32| (e * 100.0).round() / 100.0;
            f.vigie.entropy = Some(round(x.entropy));
            f.vigie.previous_entropy = x.previous_entropy.map(round);
            f.vigie.header = x.header.map(str::to_string);
            f.vigie.previous_header = x.previous_header.map(str::to_string);
        }
    }

    /// Samples `path`; None when it is gone, not a regular file, empty, on a
    /// FUSE mount or in a pseudo file system.
    pub fn sample(&mut self, path: &[u8]) -> Option<Sample> {
        if !path.starts_with(b"/")
            || [&b"/proc/"[..], b"/sys/", b"/dev/"]
                .iter()
                .any(|p| path.starts_with(p))
        {
            return None;
        }
        let path = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path));
        self.sample_open(&Self::open(path)?)
    }

    /// Samples a file open for reading at offset 0; None when it is not a
    /// regular file, empty or on a FUSE mount.
    fn sample_open(&mut self, mut f: &File) -> Option<Sample> {
        let m = f.metadata().ok()?;
        if !m.is_file() || m.len() == 0 {
            return None;
        }
        // SAFETY: fstatfs writes into a zeroed struct we own; fd is open.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(f.as_raw_fd(), &mut sfs) } == 0
            && sfs.f_type as i64 == FUSE_SUPER_MAGIC
        {
            return None;
        }
        let key = (m.dev(), m.ino());
        let mtime = (m.mtime(), m.mtime_nsec());
        let born = m.created().ok();
        // Same inode number, other file: forget what it held.
        if self.cache.get(&key).is_some_and(|e| e.born != born) {
            self.cache.remove(&key);
        }
        if let Some(e) = self.cache.get(&key)
            && e.mtime == mtime
            && e.size == m.len()
        {
            // Unchanged since the last sample (e.g. a rename after a write).
            return Some(Sample {
                entropy: e.entropy,
                header: e.header,
                size: e.size,
                inode: m.ino(),
                previous_entropy: e.previous.map(|p| p.0),
                previous_header: e.previous.and_then(|p| p.1),
            });
        }
        let mut n = 0;
        while n < self.buf.len() {
            match f.read(&mut self.buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if n == 0 {
            return None;
        }
        let data = &self.buf[..n];
        let entropy = shannon_entropy(data);
        let header = header_of(data);
        let previous = self.cache.get(&key).map(|e| (e.entropy, e.header));
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(
            key,
            Entry {
                born,
                mtime,
                size: m.len(),
                entropy,
                header,
                previous,
            },
        );
        Some(Sample {
            entropy,
            header,
            size: m.len(),
            inode: m.ino(),
            previous_entropy: previous.map(|p| p.0),
            previous_header: previous.and_then(|p| p.1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn entropy_of_known_inputs() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(&[7u8; 1000]), 0.0);
        let all: Vec<u8> = (0..=255u8).collect();
        assert!((shannon_entropy(&all) - 8.0).abs() < 1e-5);
        assert!((shannon_entropy(b"abab") - 1.0).abs() < 1e-6);
    }

    #[test]
    fn sample_remembers_the_previous_content_of_an_inode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.pdf");
        let mut text = b"%PDF-1.7\n".to_vec();
        text.extend(b"quarterly water billing report ".repeat(200));
        std::fs::write(&p, &text).unwrap();
        let mut s = ContentSampler::new();
        let pb = p.as_os_str().as_encoded_bytes();
        let first = s.sample(pb).unwrap();
        assert_eq!(first.header, Some("pdf"));
        assert!(first.entropy < 5.0, "{first:?}");
        assert_eq!(first.previous_entropy, None);
        // Rewrite in place with random-looking bytes (same inode).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..text.len())
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all(&noise).unwrap();
        drop(f);
        let second = s.sample(pb).unwrap();
        assert!(second.entropy > 7.5, "{second:?}");
        assert_eq!(second.header, None);
        assert_eq!(second.previous_header, Some("pdf"));
        assert_eq!(second.previous_entropy, Some(first.entropy));
        // Unchanged file: same answer without a new history step.
        assert_eq!(s.sample(pb).unwrap(), second);
    }

    #[test]
    fn a_reused_inode_number_has_no_history() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.pdf");
        let mut text = b"%PDF-1.7\n".to_vec();
        text.extend(b"minutes of the council meeting ".repeat(200));
        std::fs::write(&old, &text).unwrap();
        let mut s = ContentSampler::new();
        assert_eq!(
            s.sample(old.as_os_str().as_encoded_bytes()).unwrap().header,
            Some("pdf")
        );
        // The kernel may or may not hand the number out again: give the new
        // file the deleted one's cache entry, as a reuse would.
        std::thread::sleep(std::time::Duration::from_millis(10));
        let new = dir.path().join("blob");
        std::fs::write(&new, b"random-looking \x8f\x11\xd3 payload").unwrap();
        let m = std::fs::metadata(&new).unwrap();
        let Ok(born) = m.created() else {
            return; // no birth time on this file system: nothing to compare
        };
        let entry = s.cache.values().next().unwrap().clone();
        assert_ne!(entry.born, Some(born), "two files, two birth times");
        s.cache.insert((m.dev(), m.ino()), entry);
        std::fs::remove_file(&old).unwrap();
        let sample = s.sample(new.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(sample.previous_header, None, "{sample:?}");
        assert_eq!(sample.previous_entropy, None, "{sample:?}");
    }

    fn file_event(
        action: FileAction,
        path: &std::path::Path,
        old: Option<&std::path::Path>,
    ) -> Event {
        let mut file = vigie_event::File::at(path.to_string_lossy());
        file.vigie.original_path = old.map(|o| o.to_string_lossy().into_owned());
        Event::new(
            chrono::Utc::now(),
            vigie_event::Host::default(),
            Payload::File(vigie_event::FileEvent {
                action,
                file,
                process: vigie_event::Process::default(),
            }),
        )
    }

    fn entropy(ev: &Event) -> Option<f32> {
        match &ev.payload {
            Payload::File(fe) => fe.file.vigie.entropy,
            _ => None,
        }
    }

    #[test]
    fn a_batch_samples_what_is_still_there_and_a_rename_reuses_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        let b = dir.path().join("b.txt");
        let mut s = ContentSampler::new();
        // Written, then renamed and deleted in the same batch: by the time
        // the batch is read the file is gone, nothing is opened (a file of
        // the same name made since is not passed off as this one).
        std::fs::write(&b, b"a later file under the old name").unwrap();
        let mut batch = vec![
            file_event(FileAction::Write, &b, None),
            file_event(FileAction::Rename, &a, Some(&b)),
            file_event(FileAction::Delete, &a, None),
        ];
        s.fill_batch(&mut batch);
        assert_eq!(
            batch.iter().map(entropy).collect::<Vec<_>>(),
            [None, None, None]
        );
        // Written in one batch, renamed in the next after the file was
        // deleted: the rename carries the write's sample without an open.
        let mut w = vec![file_event(FileAction::Write, &b, None)];
        s.fill_batch(&mut w);
        let written = entropy(&w[0]).expect("the written file is there");
        std::fs::remove_file(&b).unwrap();
        let mut r = vec![file_event(FileAction::Rename, &a, Some(&b))];
        s.fill_batch(&mut r);
        assert_eq!(entropy(&r[0]), Some(written));
        // A rename with no sampled write opens the file.
        std::fs::write(&b, [0u8; 100]).unwrap();
        let c = dir.path().join("c.bin");
        std::fs::rename(&b, &c).unwrap();
        let mut r = vec![file_event(FileAction::Rename, &c, Some(&b))];
        s.fill_batch(&mut r);
        assert_eq!(entropy(&r[0]), Some(0.0));
    }

    #[test]
    fn special_and_missing_files_are_skipped() {
        let mut s = ContentSampler::new();
        assert!(s.sample(b"/dev/null").is_none());
        assert!(s.sample(b"/nonexistent/file").is_none());
        assert!(s.sample(b"relative").is_none());
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A FIFO must not block the sensor.
        assert!(s.sample(fifo.as_os_str().as_encoded_bytes()).is_none());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(s.sample(empty.as_os_str().as_encoded_bytes()).is_none());
    }
}

//! `vigie hunt`: run detection rules over log files.
//!
//! [`input`] finds files and reads their records into events (EVTX, JSON
//! lines, concatenated JSON); [`run`] spreads files over threads, hands each
//! event to a detector (one per file, so correlation state is per file) and
//! streams each matched event with the rules it fired ([`Match`]) to an
//! [`output::AlertWriter`] on the calling thread, which writes one detection
//! per rule without copying the event; [`Summary`] counts what happened,
//! including every skipped record by reason.
//!
//! Memory does not grow with input: readers stream and the channel between
//! the worker threads and the writer is bounded.

mod flat;
pub mod input;
pub mod output;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vigie_detect::Match;
use vigie_event::{Event, Level};

use input::{Classifier, InputFile, Record, SkipReason};
use output::{AlertWriter, Detected, Preparer};

/// How many problems per file are printed before they are only counted.
const PROBLEMS_SHOWN_PER_FILE: usize = 5;

pub struct HuntOptions {
    /// Worker threads (files are read in parallel, one file per thread).
    pub threads: usize,
    /// Detections below this level are counted but not written.
    pub min_level: Level,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Sigma logsource of Windows records.
    pub classify: Classifier,
}

/// What a hunt did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub files: usize,
    /// Files that could not be read at all.
    pub files_failed: usize,
    pub bytes: u64,
    pub events: u64,
    /// Detections written, by level.
    pub detections: BTreeMap<Level, u64>,
    /// Detections under `min_level`, not written.
    pub below_min_level: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn detections_total(&self) -> u64 {
        self.detections.values().sum()
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub fn events_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }

    /// Nothing could be read: every file failed, or there was no file.
    pub fn nothing_read(&self) -> bool {
        self.files == self.files_failed
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} file(s) ({:.1} MB, {} unreadable), {} event(s) in {:.2} s ({:.0} events/s)",
            self.files,
            self.bytes as f64 / 1e6,
            self.files_failed,
            self.events,
            self.elapsed.as_secs_f64(),
            self.events_per_second()
        )?;
        let by_level: Vec<String> = Level::ALL
            .iter()
            .rev()
            .filter_map(|l| self.detections.get(l).map(|n| format!("{n} {l}")))
            .collect();
        write!(f, "{} detection(s)", self.detections_total())?;
        if !by_level.is_empty() {
            write!(f, ": {}", by_level.join(", "))?;
        }
        if self.below_min_level > 0 {
            write!(
                f,
                " ({} below --min-level, not shown)",
                self.below_min_level
            )?;
        }
        if self.skipped_total() > 0 {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(r, n)| format!("{n} {}", r.as_str()))
                .collect();
            write!(
                f,
                "\n{} record(s) skipped: {}",
                self.skipped_total(),
                reasons.join(", ")
            )?;
        }
        Ok(())
    }
}

/// An event and the rules it fired.
struct Hit {
    event: Detected,
    matches: Vec<Match>,
}

enum Message {
    Hits(Vec<Hit>),
    Skipped {
        path: PathBuf,
        reason: SkipReason,
        at: Option<u64>,
        detail: String,
    },
    Progress {
        bytes: u64,
        events: u64,
    },
    FileDone {
        failed: bool,
    },
}

/// [`run`] with one `engine` detector per file: what `vigie hunt` does.
pub fn run_with_engine(
    files: &[InputFile],
    options: &HuntOptions,
    engine: &vigie_detect::Engine,
    writer: &mut dyn AlertWriter,
) -> std::io::Result<Summary> {
    run(
        files,
        options,
        || {
            let mut detector = engine.detector();
            move |event: &Event| detector.matches(event)
        },
        writer,
    )
}

/// Runs `detector()` (one per file) over every record of `files`, writing
/// detections at or above `min_level` to `writer` as they come.
/// The detector is typically `vigie_detect::Detector::matches`.
pub fn run<F, D>(
    files: &[InputFile],
    options: &HuntOptions,
    detector: F,
    writer: &mut dyn AlertWriter,
) -> std::io::Result<Summary>
where
    F: Fn() -> D + Sync,
    D: FnMut(&Event) -> Vec<Match>,
{
    let started = Instant::now();
    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };
    // Largest files first, so the last thread does not finish alone on a big one.
    let mut order: Vec<&InputFile> = files.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse(f.size));
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let bar = progress_bar(options.progress, total_bytes);
    let next = AtomicUsize::new(0);
    let (tx, rx) = crossbeam_channel::bounded::<Message>(256);
    let threads = options.threads.clamp(1, files.len().max(1));
    let prepare = writer.preparer();

    let mut write_error = None;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let order = &order;
            let next = &next;
            let detector = &detector;
            scope.spawn(move || {
                while let Some(file) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    hunt_file(file, options.classify, detector(), prepare, &tx);
                }
            });
        }
        drop(tx);
        let mut shown: BTreeMap<PathBuf, usize> = BTreeMap::new();
        for message in rx {
            match message {
                Message::Hits(hits) => {
                    for mut hit in hits {
                        hit.matches.retain(|m| {
                            let level = m.level();
                            if level < options.min_level {
                                summary.below_min_level += 1;
                                return false;
                            }
                            *summary.detections.entry(level).or_default() += 1;
                            true
                        });
                        if write_error.is_none() && !hit.matches.is_empty() {
                            let result = bar.suspend(|| writer.write(&hit.event, &hit.matches));
                            write_error = result.err();
                        }
                    }
                }
                Message::Skipped {
                    path,
                    reason,
                    at,
                    detail,
                } => {
                    *summary.skipped.entry(reason).or_default() += 1;
                    let count = shown.entry(path.clone()).or_default();
                    *count += 1;
                    let at = at
                        .map(|n| format!(" (record/line {n})"))
                        .unwrap_or_default();
                    if *count <= PROBLEMS_SHOWN_PER_FILE {
                        bar.suspend(|| {
                            tracing::warn!(
                                "{}{at}: skipped, {}: {detail}",
                                path.display(),
                                reason.as_str()
                            )
                        });
                    } else if *count == PROBLEMS_SHOWN_PER_FILE + 1 {
                        bar.suspend(|| {
                            tracing::warn!(
                                "{}: more skipped records, only counted from now on",
                                path.display()
                            )
                        });
                    }
                }
                Message::Progress { bytes, events } => {
                    summary.bytes += bytes;
                    summary.events += events;
                    bar.inc(bytes);
                    bar.set_message(format!("{} events", summary.events));
                }
                Message::FileDone { failed } => {
                    if failed {
                        summary.files_failed += 1;
                    }
                }
            }
        }
    });
    bar.finish_and_clear();
    writer.finish()?;
    if let Some(e) = write_error {
        return Err(e);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn hunt_file<D>(
    file: &InputFile,
    classify: Classifier,
    mut detector: D,
    prepare: Preparer,
    tx: &crossbeam_channel::Sender<Message>,
) where
    D: FnMut(&Event) -> Vec<Match>,
{
    // Progress is reported in slices so the bar moves on big files.
    const BATCH: u64 = 2048;
    let mut events = 0u64;
    let mut pending_hits = Vec::new();
    let mut failed = false;
    let mut any_record = false;
    for record in input::read(file, classify) {
        match record {
            Record::Event(event) => {
                any_record = true;
                events += 1;
                let matches = detector(&event);
                if !matches.is_empty() {
                    // The event moves to the writer, once for all its rules.
                    pending_hits.push(Hit {
                        event: prepare(event),
                        matches,
                    });
                }
                if events.is_multiple_of(BATCH) {
                    let _ = tx.send(Message::Hits(std::mem::take(&mut pending_hits)));
                    let _ = tx.send(Message::Progress { bytes: 0, events });
                    events = 0;
                }
            }
            Record::Skipped { reason, at, detail } => {
                if reason == SkipReason::Unreadable && !any_record {
                    failed = true;
                }
                any_record = true;
                let _ = tx.send(Message::Skipped {
                    path: file.path.clone(),
                    reason,
                    at,
                    detail,
                });
            }
        }
    }
    let _ = tx.send(Message::Hits(pending_hits));
    let _ = tx.send(Message::Progress {
        bytes: file.size,
        events,
    });
    let _ = tx.send(Message::FileDone { failed });
}

fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

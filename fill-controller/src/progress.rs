//! How `run` shows its progress to people: on a terminal, one progress bar per appliance
//! (indicatif: bytes done of planned, rate, ETA, renditions filled and failed), redrawn a
//! few times a second; otherwise (a pipe, a file, journald) a plain line per appliance
//! whose figures moved, every [`PLAIN_EVERY`]. Both go to stderr, so `run`'s result lines on
//! stdout stay as they are. [`Snapshot::line`] is the plain line (pure, tested).
//!
//! What it does not do: decide anything, or read the journal (`status` does that).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{DecimalBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::execute::{ApplianceProgress, Progress};

/// Pause between two plain progress lines of one appliance.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// One appliance's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Bytes of its fills in the plan.
    pub planned: u64,
    /// Bytes done.
    pub done: u64,
    /// Fills in the plan.
    pub fills: u64,
    /// Fills committed.
    pub filled: u64,
    /// Fills given up for the night.
    pub failed: u64,
    /// Its worker stopped.
    pub finished: bool,
}

impl Snapshot {
    /// The figures of `p` now.
    pub fn of(p: &ApplianceProgress) -> Snapshot {
        Snapshot {
            planned: p.planned_bytes.load(Ordering::Relaxed),
            done: p.done_bytes.load(Ordering::Relaxed),
            fills: p.fills.load(Ordering::Relaxed),
            filled: p.filled.load(Ordering::Relaxed),
            failed: p.failed.load(Ordering::Relaxed),
            finished: p.finished.load(Ordering::Relaxed),
        }
    }

    /// Percent of the planned bytes done (100 when nothing is planned), at most 100.
    pub fn percent(&self) -> u64 {
        if self.planned == 0 {
            100
        } else {
            (u128::from(self.done.min(self.planned)) * 100 / u128::from(self.planned)) as u64
        }
    }

    /// Renditions and failures, as the bar's message and in the plain line (why a worker
    /// stopped is in `run`'s result lines).
    pub fn counts(&self) -> String {
        let mut s = format!("{}/{} renditions", self.filled, self.fills);
        if self.failed > 0 {
            s += &format!(", {} failed", self.failed);
        }
        s
    }

    /// The plain progress line of appliance `id` (pure).
    pub fn line(&self, id: &str) -> String {
        format!(
            "{id}: {}, {} of {} ({}%)",
            self.counts(),
            DecimalBytes(self.done.min(self.planned)),
            DecimalBytes(self.planned),
            self.percent()
        )
    }
}

/// Where progress goes.
#[derive(Debug, Clone)]
pub enum Display {
    /// Progress bars on the terminal (stderr).
    Bars(MultiProgress),
    /// Plain lines on stderr.
    Plain,
}

impl Display {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub fn detect() -> Display {
        use std::io::IsTerminal as _;
        if std::io::stderr().is_terminal() {
            Display::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Display::Plain
        }
    }

    /// Writes `bytes` (a log line) to stderr without tearing the bars.
    pub fn write_stderr(&self, bytes: &[u8]) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(bytes);
        };
        match self {
            Display::Bars(mp) => mp.suspend(write),
            Display::Plain => write(),
        }
    }
}

/// Shows `progress` until the task is aborted (`run` aborts it when the run returns, then
/// calls [`finish`]).
pub async fn show(progress: Progress, display: Display) {
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut last: BTreeMap<String, (Snapshot, tokio::time::Instant)> = BTreeMap::new();
    let tick = match display {
        Display::Bars(_) => Duration::from_millis(200),
        Display::Plain => Duration::from_secs(1),
    };
    loop {
        let now: Vec<(String, Arc<ApplianceProgress>)> = progress
            .lock()
            .map(|g| g.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (id, p) in now {
            let snap = Snapshot::of(&p);
            match &display {
                Display::Bars(mp) => {
                    let bar = bars.entry(id.clone()).or_insert_with(|| {
                        let b = mp.add(ProgressBar::new(snap.planned));
                        b.set_style(style());
                        b.set_prefix(id.clone());
                        b
                    });
                    bar.set_length(snap.planned);
                    bar.set_position(snap.done.min(snap.planned));
                    bar.set_message(snap.counts());
                    if snap.finished && !bar.is_finished() {
                        bar.finish();
                    }
                }
                Display::Plain => {
                    let due = last.get(&id).is_none_or(|(s, at)| {
                        *s != snap && (at.elapsed() >= PLAIN_EVERY || snap.finished)
                    });
                    if due {
                        eprintln!("{}", snap.line(&id));
                        last.insert(id, (snap, tokio::time::Instant::now()));
                    }
                }
            }
        }
        tokio::time::sleep(tick).await;
    }
}

/// The end of a run: bars are cleared (the result lines on stdout follow); plain mode
/// prints every appliance's final line.
pub fn finish(progress: &Progress, display: &Display) {
    match display {
        Display::Bars(mp) => {
            let _ = mp.clear();
        }
        Display::Plain => {
            if let Ok(g) = progress.lock() {
                for (id, p) in g.iter() {
                    eprintln!("{}", Snapshot::of(p).line(id));
                }
            }
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>14} [{bar:32}] {decimal_bytes}/{decimal_total_bytes} \
         {decimal_bytes_per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_renditions_bytes_and_percent() {
        let s = Snapshot {
            planned: 5_000_000_000,
            done: 1_250_000_000,
            fills: 10,
            filled: 3,
            failed: 0,
            finished: false,
        };
        assert_eq!(
            s.line("oca-a1"),
            "oca-a1: 3/10 renditions, 1.25 GB of 5.00 GB (25%)"
        );
        let s = Snapshot {
            failed: 1,
            finished: true,
            done: 6_000_000_000, // retries can send more than planned
            ..s
        };
        assert_eq!(
            s.line("oca-a1"),
            "oca-a1: 3/10 renditions, 1 failed, 5.00 GB of 5.00 GB (100%)"
        );
        assert_eq!(Snapshot::default().percent(), 100);
        // The template parses (a bad one would fall back to the default style silently).
        assert!(
            ProgressStyle::with_template(
                "{prefix:>14} [{bar:32}] {decimal_bytes}/{decimal_total_bytes} \
                 {decimal_bytes_per_sec} eta {eta} {msg}"
            )
            .is_ok()
        );
    }
}

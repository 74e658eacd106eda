//! The fill journal: append-only JSON lines under the state dir (`journal.jsonl`) recording
//! the plan being run, each object ingested, each rendition committed or deleted, renditions
//! given up for the night, and the bytes each appliance used per night. After a crash, `run`
//! reopens it and skips what is done; a torn last line (a crash mid-append) is cut off.
//!
//! Every entry is written with one `write` and `fdatasync`ed before the work it records is
//! counted as done, so the journal never claims more than happened. It may claim less (a
//! crash after an ingest but before its entry): the appliance then answers the repeated
//! `PUT` with 200 "present", so nothing is sent twice. Bytes of a transfer cut by a crash
//! are not counted against the budget. What it does not do: compact (a night's journal is
//! small: one line per object), or share state between processes (one controller per state
//! dir).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::FillError;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Entry {
    /// A run of plan `plan` started (entries below belong to it).
    Plan {
        /// Plan id.
        plan: String,
    },
    /// An object is on the appliance (ingested, or already present).
    File {
        /// Plan id.
        plan: String,
        /// Appliance id.
        appliance: String,
        /// Object key.
        key: String,
    },
    /// A rendition's manifest was committed on the appliance.
    Fill {
        /// Plan id.
        plan: String,
        /// Appliance id.
        appliance: String,
        /// `title/rendition`.
        rendition: String,
    },
    /// A rendition was deleted from the appliance.
    Delete {
        /// Plan id.
        plan: String,
        /// Appliance id.
        appliance: String,
        /// `title/rendition`.
        rendition: String,
    },
    /// A rendition was given up for the night (every source failed).
    Failed {
        /// Plan id.
        plan: String,
        /// Appliance id.
        appliance: String,
        /// `title/rendition`.
        rendition: String,
        /// Local date of the night.
        night: String,
        /// Why.
        reason: String,
    },
    /// Bytes an appliance received during a night (added up over the lines).
    Bytes {
        /// Appliance id.
        appliance: String,
        /// Local date of the night.
        night: String,
        /// Bytes.
        bytes: u64,
    },
}

/// What the journal says, for the current plan.
#[derive(Debug, Default, Clone)]
pub struct JournalState {
    /// The plan of the last `Plan` entry.
    pub plan: Option<String>,
    /// `(appliance, key)` of objects done.
    pub files: HashSet<(String, String)>,
    /// `(appliance, rendition)` committed.
    pub fills: HashSet<(String, String)>,
    /// `(appliance, rendition)` deleted.
    pub deletes: HashSet<(String, String)>,
    /// `(appliance, rendition, night)` given up.
    pub failed: HashSet<(String, String, String)>,
    /// Bytes used per `(appliance, night)`, over all plans.
    pub bytes: HashMap<(String, String), u64>,
}

impl JournalState {
    fn apply(&mut self, e: &Entry, plan: &str) {
        match e {
            Entry::Plan { plan: p } => self.plan = Some(p.clone()),
            Entry::Bytes {
                appliance,
                night,
                bytes,
            } => {
                *self
                    .bytes
                    .entry((appliance.clone(), night.clone()))
                    .or_default() += bytes;
            }
            Entry::File {
                plan: p,
                appliance,
                key,
            } if p == plan => {
                self.files.insert((appliance.clone(), key.clone()));
            }
            Entry::Fill {
                plan: p,
                appliance,
                rendition,
            } if p == plan => {
                self.fills.insert((appliance.clone(), rendition.clone()));
            }
            Entry::Delete {
                plan: p,
                appliance,
                rendition,
            } if p == plan => {
                self.deletes.insert((appliance.clone(), rendition.clone()));
            }
            Entry::Failed {
                plan: p,
                appliance,
                rendition,
                night,
                ..
            } if p == plan => {
                self.failed
                    .insert((appliance.clone(), rendition.clone(), night.clone()));
            }
            _ => {}
        }
    }
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    state: Mutex<JournalState>,
}

impl Journal {
    /// The journal file inside a state dir.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("journal.jsonl")
    }

    /// Open (or create) `{state_dir}/journal.jsonl` for a run of `plan`: replays it, cuts a
    /// torn last line, and appends a `Plan` entry when the plan changed.
    pub fn open(state_dir: &Path, plan: &str) -> Result<Journal, FillError> {
        let path = Journal::path_in(state_dir);
        let err = |message: String| FillError::Journal {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(state_dir).map_err(|e| err(e.to_string()))?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| err(e.to_string()))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| err(format!("not UTF-8 or unreadable: {e}")))?;
        let mut state = JournalState::default();
        let mut good_len = 0usize;
        let mut offset = 0usize;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            offset += line.len();
            let complete = line.ends_with('\n');
            match serde_json::from_str::<Entry>(line.trim_end()) {
                Ok(e) if complete => {
                    state.apply(&e, plan);
                    good_len = offset;
                }
                _ if i + 1 == lines.len() => {
                    // A torn last line from a crash mid-append: dropped below.
                }
                Err(e) => return Err(err(format!("line {}: {e}", i + 1))),
                // Only the last line can lack its newline.
                Ok(_) => {}
            }
        }
        if good_len < text.len() {
            file.set_len(good_len as u64)
                .map_err(|e| err(format!("cutting a torn last line: {e}")))?;
            file.seek(SeekFrom::End(0))
                .map_err(|e| err(e.to_string()))?;
        }
        let j = Journal {
            path: path.clone(),
            file: Mutex::new(file),
            state: Mutex::new(JournalState::default()),
        };
        let changed = state.plan.as_deref() != Some(plan);
        // Entries of another plan do not count (except bytes, applied above for all).
        if changed {
            let bytes = std::mem::take(&mut state.bytes);
            state = JournalState {
                bytes,
                ..JournalState::default()
            };
        }
        *j.state.lock().map_err(|_| err("poisoned lock".into()))? = state;
        if changed {
            j.append(&Entry::Plan {
                plan: plan.to_owned(),
            })?;
        }
        Ok(j)
    }

    /// What the journal in `state_dir` says about `plan`, read only (for `status`, while a
    /// run may be appending): a torn last line is skipped, not cut; a missing journal is an
    /// empty state.
    pub fn read_state(state_dir: &Path, plan: &str) -> Result<JournalState, FillError> {
        let path = Journal::path_in(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(FillError::Journal {
                    path,
                    message: e.to_string(),
                });
            }
        };
        let mut state = JournalState::default();
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            if let Ok(e) = serde_json::from_str::<Entry>(line.trim_end()) {
                state.apply(&e, plan);
            }
        }
        if state.plan.as_deref() != Some(plan) {
            let bytes = std::mem::take(&mut state.bytes);
            state = JournalState {
                bytes,
                ..JournalState::default()
            };
        }
        Ok(state)
    }

    /// Append one entry (one write + fdatasync) and apply it to the state.
    pub fn append(&self, e: &Entry) -> Result<(), FillError> {
        let err = |message: String| FillError::Journal {
            path: self.path.clone(),
            message,
        };
        let mut line = serde_json::to_string(e).map_err(|e| err(e.to_string()))?;
        line.push('\n');
        {
            let mut f = self.file.lock().map_err(|_| err("poisoned lock".into()))?;
            f.write_all(line.as_bytes())
                .map_err(|e| err(e.to_string()))?;
            f.sync_data().map_err(|e| err(e.to_string()))?;
        }
        let mut st = self.state.lock().map_err(|_| err("poisoned lock".into()))?;
        let plan = st.plan.clone().unwrap_or_default();
        st.apply(e, &plan);
        Ok(())
    }

    /// A copy of the state.
    pub fn state(&self) -> JournalState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Bytes `appliance` used in `night`.
    pub fn bytes_used(&self, appliance: &str, night: &str) -> u64 {
        self.state
            .lock()
            .ok()
            .and_then(|s| {
                s.bytes
                    .get(&(appliance.to_owned(), night.to_owned()))
                    .copied()
            })
            .unwrap_or(0)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(plan: &str, key: &str) -> Entry {
        Entry::File {
            plan: plan.into(),
            appliance: "a1".into(),
            key: key.into(),
        }
    }

    #[test]
    fn replays_done_work_of_the_same_plan_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path(), "p1").unwrap();
            j.append(&file("p1", "t/r/a")).unwrap();
            j.append(&Entry::Bytes {
                appliance: "a1".into(),
                night: "2026-11-22".into(),
                bytes: 100,
            })
            .unwrap();
            j.append(&Entry::Fill {
                plan: "p1".into(),
                appliance: "a1".into(),
                rendition: "t/r".into(),
            })
            .unwrap();
        }
        // A crash mid-append leaves half a line.
        let path = Journal::path_in(dir.path());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"t\":\"file\",\"plan\":\"p1\",\"appl")
            .unwrap();
        drop(f);
        let j = Journal::open(dir.path(), "p1").unwrap();
        let st = j.state();
        assert!(st.files.contains(&("a1".into(), "t/r/a".into())));
        assert!(st.fills.contains(&("a1".into(), "t/r".into())));
        assert_eq!(j.bytes_used("a1", "2026-11-22"), 100);
        // The torn line is gone and new lines parse.
        j.append(&file("p1", "t/r/b")).unwrap();
        drop(j);
        let j = Journal::open(dir.path(), "p1").unwrap();
        assert_eq!(j.state().files.len(), 2);
        // A new plan starts from scratch but keeps the night's bytes.
        drop(j);
        let j = Journal::open(dir.path(), "p2").unwrap();
        assert!(j.state().files.is_empty());
        assert_eq!(j.bytes_used("a1", "2026-11-22"), 100);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            Journal::path_in(dir.path()),
            "{\"t\":\"plan\",\"plan\":\"p\"}\ngarbage\n{\"t\":\"plan\",\"plan\":\"p\"}\n",
        )
        .unwrap();
        let e = Journal::open(dir.path(), "p").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}

//! A bounded cache of open object files, so a request for a hot object costs no `open` and
//! `close` (each an extra trip to the ring thread). nginx's `open_file_cache` does the same.
//!
//! Objects are immutable and purge is deletion (DESIGN §2): a cached descriptor always reads
//! the bytes its index entry describes. The tiered store's delete path must call
//! [`OpenFiles::forget`] so a purged object's space is freed.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Open files by path, at most `capacity` of them.
#[derive(Debug)]
pub struct OpenFiles {
    map: Mutex<HashMap<PathBuf, Arc<File>>>,
    capacity: usize,
}

impl OpenFiles {
    pub fn new(capacity: usize) -> OpenFiles {
        OpenFiles {
            map: Mutex::new(HashMap::with_capacity(capacity.min(1 << 16))),
            capacity,
        }
    }

    /// A cached descriptor for `path`, if any.
    pub fn get(&self, path: &Path) -> Option<Arc<File>> {
        if self.capacity == 0 {
            return None;
        }
        self.map.lock().ok()?.get(path).cloned()
    }

    /// Remember a descriptor; when full, an arbitrary entry makes room (hot files come back
    /// at once, so recency tracking is not worth a lock-held list update per hit).
    pub fn insert(&self, path: PathBuf, file: Arc<File>) {
        if self.capacity == 0 {
            return;
        }
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.capacity && !map.contains_key(&path) {
            let victim = map.keys().next().cloned();
            if let Some(v) = victim {
                map.remove(&v);
            }
        }
        map.insert(path, file);
    }

    /// Drop the descriptor of a deleted object.
    pub fn forget(&self, path: &Path) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(path);
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_forgetful() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..5)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, [i as u8]).unwrap();
                p
            })
            .collect();
        let cache = OpenFiles::new(3);
        for p in &files {
            cache.insert(p.clone(), Arc::new(File::open(p).unwrap()));
            assert!(cache.get(p).is_some());
        }
        assert_eq!(cache.len(), 3);
        cache.forget(&files[4]);
        assert!(cache.get(&files[4]).is_none());
        let off = OpenFiles::new(0);
        off.insert(files[0].clone(), Arc::new(File::open(&files[0]).unwrap()));
        assert!(off.get(&files[0]).is_none());
    }
}

//! The foundation's store: one directory of object files, indexed once at start.
//!
//! `root/{title}/{file}` and `root/{title}/{rendition}/{file}` are objects; the index maps
//! their keys to size, ETag, mtime and where the bytes are. ETags (first 16 bytes of the
//! SHA-256, in hex) are cached in `root/.oca/etags.json` so hand-placed files are hashed
//! once. A byte budget of objects is copied into locked memory (the RAM tier): playlists
//! and manifests first, then init segments, then the rest in key order.
//!
//! Opening runs before serving, so it uses blocking std I/O.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_lc_rs::digest;
use bytes::Bytes;
use oca_common::ObjectKey;
use oca_common::wire::Tier;
use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::ram::LockedRegion;
use crate::{ObjectData, ObjectHandle, ObjectMeta, ObjectStore, StoreStats};

/// Default largest object admitted to the RAM tier.
pub const DEFAULT_RAM_MAX_OBJECT: u64 = 4 * 1024 * 1024;
/// Folder under the root for the store's own files (never indexed).
pub const META_DIR: &str = ".oca";
/// ETag cache file inside [`META_DIR`].
pub const ETAG_CACHE_FILE: &str = "etags.json";

/// Where a [`DirStore`] lives and how much of it goes to RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirStoreOptions {
    /// The directory holding the objects.
    pub root: PathBuf,
    /// Byte budget of the RAM tier; 0 turns it off.
    pub ram_bytes: u64,
    /// Objects larger than this never go to RAM (default 4 MiB).
    pub ram_max_object: u64,
}

impl DirStoreOptions {
    /// Options for `root` with the RAM tier off.
    pub fn new(root: impl Into<PathBuf>) -> DirStoreOptions {
        DirStoreOptions {
            root: root.into(),
            ram_bytes: 0,
            ram_max_object: DEFAULT_RAM_MAX_OBJECT,
        }
    }
}

/// One directory of object files with an in-memory index built by [`DirStore::open`].
pub struct DirStore {
    root: PathBuf,
    index: HashMap<String, ObjectHandle>,
    stats: StoreStats,
    skipped: u64,
}

/// One ETag cache entry (`root/.oca/etags.json` is a JSON object of key → entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CacheEntry {
    size: u64,
    mtime_ns: i64,
    etag: String,
}

/// A file found by the walk.
struct Found {
    key: ObjectKey,
    path: PathBuf,
}

impl DirStore {
    /// Walks `opts.root`, builds the index (hashing files whose ETag is not cached), and
    /// loads the RAM tier.
    ///
    /// Entries that are not regular files at depth 2 or 3 with a valid key (symlinks, other
    /// depths, bad names, anything under `.oca/`) are skipped with a debug log and counted
    /// ([`skipped`](DirStore::skipped)); so are files that cannot be read (with a warning).
    /// A missing or non-directory root is [`StorageError::BadRoot`].
    pub fn open(opts: DirStoreOptions) -> Result<DirStore, StorageError> {
        let root = match fs::metadata(&opts.root) {
            Ok(meta) if meta.is_dir() => {
                fs::canonicalize(&opts.root).map_err(|e| StorageError::io(&opts.root, e))?
            }
            Ok(_) => {
                return Err(StorageError::BadRoot(format!(
                    "{} is not a directory",
                    opts.root.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::BadRoot(format!(
                    "{} does not exist",
                    opts.root.display()
                )));
            }
            Err(e) => return Err(StorageError::io(&opts.root, e)),
        };

        let mut found = Vec::new();
        let mut skipped = 0u64;
        walk(&root, &root, &mut Vec::new(), &mut found, &mut skipped)?;
        found.sort_by(|a, b| a.key.cmp(&b.key));

        let cache_path = root.join(META_DIR).join(ETAG_CACHE_FILE);
        let old_cache = load_cache(&cache_path);
        let mut new_cache = BTreeMap::new();
        let mut entries: Vec<(ObjectKey, PathBuf, ObjectMeta)> = Vec::with_capacity(found.len());
        let mut hashed = 0u64;
        for Found { key, path } in found {
            match index_file(&path, key.as_str(), old_cache.as_ref(), &mut hashed) {
                Ok((meta, entry)) => {
                    new_cache.insert(key.as_str().to_owned(), entry);
                    entries.push((key, path, meta));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable object file");
                    skipped += 1;
                }
            }
        }
        if old_cache.as_ref() != Some(&new_cache)
            && let Err(e) = write_cache(&cache_path, &new_cache)
        {
            tracing::warn!(
                path = %cache_path.display(),
                error = %e,
                "cannot write the ETag cache; files will be hashed again at the next start"
            );
        }

        let ram = load_ram_tier(&entries, opts.ram_bytes, opts.ram_max_object);

        let mut index = HashMap::with_capacity(entries.len());
        let mut stats = StoreStats {
            ram_locked: ram.locked,
            ..StoreStats::default()
        };
        for (i, (key, path, mut meta)) in entries.into_iter().enumerate() {
            stats.objects += 1;
            stats.bytes += meta.size;
            let data = match ram.slices.get(&i) {
                Some(bytes) => {
                    meta.tier = Tier::Ram;
                    stats.ram_objects += 1;
                    stats.ram_bytes += meta.size;
                    ObjectData::Ram(bytes.clone())
                }
                None => ObjectData::File(path.clone()),
            };
            index.insert(
                key.as_str().to_owned(),
                ObjectHandle {
                    meta,
                    data,
                    path,
                    drive: None,
                },
            );
        }
        tracing::info!(
            root = %root.display(),
            objects = stats.objects,
            bytes = stats.bytes,
            hashed,
            skipped,
            ram_objects = stats.ram_objects,
            ram_bytes = stats.ram_bytes,
            ram_locked = stats.ram_locked,
            "object directory indexed"
        );
        Ok(DirStore {
            root,
            index,
            stats,
            skipped,
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Entries skipped by the walk (bad names, wrong depth, symlinks, unreadable files…).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Keys of every indexed object, unordered.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

impl ObjectStore for DirStore {
    fn lookup(&self, key: &ObjectKey) -> Option<ObjectHandle> {
        self.index.get(key.as_str()).cloned()
    }

    fn stats(&self) -> StoreStats {
        self.stats
    }
}

impl fmt::Debug for DirStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirStore")
            .field("root", &self.root)
            .field("stats", &self.stats)
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Collects regular files at depth 2 and 3 below `root` whose relative path is a key.
fn walk(
    root: &Path,
    dir: &Path,
    rel: &mut Vec<String>,
    found: &mut Vec<Found>,
    skipped: &mut u64,
) -> Result<(), StorageError> {
    let read_dir = match fs::read_dir(dir) {
        Ok(rd) => rd,
        // The root must be readable; a subdirectory that is not is skipped.
        Err(e) if dir == root => return Err(StorageError::io(dir, e)),
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "skipping unreadable directory");
            *skipped += 1;
            return Ok(());
        }
    };
    for entry in read_dir {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "error while listing a directory");
                *skipped += 1;
                continue;
            }
        };
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            tracing::debug!(path = %path.display(), "skipping a name that is not UTF-8");
            *skipped += 1;
            continue;
        };
        if rel.is_empty() && name == META_DIR {
            continue; // the store's own files
        }
        // DirEntry::file_type does not follow symlinks.
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot stat; skipping");
                *skipped += 1;
                continue;
            }
        };
        let depth = rel.len() + 1;
        if file_type.is_dir() {
            if depth < 3 {
                rel.push(name);
                walk(root, &path, rel, found, skipped)?;
                rel.pop();
            } else {
                tracing::debug!(path = %path.display(), "skipping a directory below object depth");
                *skipped += 1;
            }
            continue;
        }
        if !file_type.is_file() {
            tracing::debug!(path = %path.display(), "skipping a symlink or special file");
            *skipped += 1;
            continue;
        }
        if depth < 2 {
            tracing::debug!(path = %path.display(), "skipping a file directly under the root");
            *skipped += 1;
            continue;
        }
        let mut key = rel.join("/");
        key.push('/');
        key.push_str(&name);
        match ObjectKey::parse(&key) {
            Ok(key) => found.push(Found { key, path }),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "skipping: not an object key");
                *skipped += 1;
            }
        }
    }
    Ok(())
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Stats `path` and takes its ETag from the cache or by hashing it.
fn index_file(
    path: &Path,
    key: &str,
    cache: Option<&BTreeMap<String, CacheEntry>>,
    hashed: &mut u64,
) -> io::Result<(ObjectMeta, CacheEntry)> {
    // O_NOFOLLOW: a file swapped for a symlink after the walk is refused, not followed.
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let size = meta.len();
    let mtime = mtime_ns(&meta);
    let last_modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let cached = cache
        .and_then(|c| c.get(key))
        .filter(|e| e.size == size && e.mtime_ns == mtime && is_etag(&e.etag));
    let etag = match cached {
        Some(entry) => entry.etag.clone(),
        None => {
            let (etag, read) = hash_etag(&mut file)?;
            if read != size {
                return Err(io::Error::other(format!(
                    "file changed while being hashed ({size} bytes at open, {read} read)"
                )));
            }
            *hashed += 1;
            etag
        }
    };
    let entry = CacheEntry {
        size,
        mtime_ns: mtime,
        etag: etag.clone(),
    };
    let meta = ObjectMeta {
        size,
        etag,
        last_modified,
        tier: Tier::Disk,
    };
    Ok((meta, entry))
}

/// The ETag of a byte string: the first 16 bytes of its SHA-256, in lowercase hex.
pub fn etag_of(data: &[u8]) -> String {
    let digest = digest::digest(&digest::SHA256, data);
    hex::encode(&digest.as_ref()[..16])
}

/// Hashes a reader to its ETag; returns the ETag and the bytes read.
fn hash_etag(reader: &mut impl Read) -> io::Result<(String, u64)> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                ctx.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let digest = ctx.finish();
    Ok((hex::encode(&digest.as_ref()[..16]), total))
}

fn is_etag(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Reads the ETag cache; `None` when missing or unusable (a corrupt one is warned about).
fn load_cache(path: &Path) -> Option<BTreeMap<String, CacheEntry>> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the ETag cache; rehashing");
            return None;
        }
    };
    match serde_json::from_slice(&text) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "corrupt ETag cache ignored; rehashing");
            None
        }
    }
}

/// Writes the ETag cache atomically: temp file, fsync, rename, fsync of the directory.
fn write_cache(path: &Path, cache: &BTreeMap<String, CacheEntry>) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("cache path has no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{ETAG_CACHE_FILE}.tmp.{}", std::process::id()));
    let result = (|| {
        let json = serde_json::to_vec_pretty(cache).map_err(io::Error::other)?;
        let mut file = File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Placement class in the RAM tier: playlists and manifests, then init segments, then the rest.
fn ram_class(key: &ObjectKey) -> u8 {
    let name = key.file_name();
    if name.ends_with(".m3u8") || name.ends_with(".mpd") {
        0
    } else if name.starts_with("init") {
        1
    } else {
        2
    }
}

struct RamTier {
    /// Index into the (key-sorted) entries → the object's bytes in the region.
    slices: HashMap<usize, Bytes>,
    locked: bool,
}

/// Picks the objects of the RAM tier (first fit in placement order: an object that does not
/// fit the remaining budget is passed over and smaller later ones may still go) and copies
/// them into one locked region.
fn load_ram_tier(
    entries: &[(ObjectKey, PathBuf, ObjectMeta)],
    budget: u64,
    max_object: u64,
) -> RamTier {
    let mut tier = RamTier {
        slices: HashMap::new(),
        locked: false,
    };
    if budget == 0 {
        return tier;
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // `entries` is in key order, and the sort is stable.
    order.sort_by_key(|&i| ram_class(&entries[i].0));
    let mut chosen = Vec::new();
    let mut total = 0u64;
    for i in order {
        let size = entries[i].2.size;
        if size <= max_object && total + size <= budget {
            chosen.push(i);
            total += size;
        }
    }
    if chosen.is_empty() {
        return tier;
    }
    let Ok(total) = usize::try_from(total) else {
        return tier;
    };

    // Copy each file into its place; a file that fails to read stays on disk.
    let mut placed: Vec<(usize, usize, usize)> = Vec::with_capacity(chosen.len());
    let filled = LockedRegion::fill(total, |region| {
        let mut at = 0usize;
        for &i in &chosen {
            let (_, path, meta) = &entries[i];
            let len = meta.size as usize; // ≤ total, which fits usize
            let Some(dst) = region.get_mut(at..at + len) else {
                break;
            };
            match File::open(path).and_then(|mut f| f.read_exact(dst)) {
                Ok(()) => {
                    placed.push((i, at, len));
                    at += len;
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot load into the RAM tier; serving from disk");
                }
            }
        }
        Ok(())
    });
    match filled {
        Ok((bytes, locked)) => {
            tier.locked = locked;
            for (i, at, len) in placed {
                tier.slices.insert(i, bytes.slice(at..at + len));
            }
        }
        Err(e) => {
            tracing::warn!(bytes = total, error = %e, "cannot map the RAM tier; serving everything from disk");
        }
    }
    tier
}

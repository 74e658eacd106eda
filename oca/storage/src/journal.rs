//! A drive's index on disk: an append-only journal of puts and deletes, group-committed, and
//! a compacted snapshot that loads with `memmap2` (DESIGN §4 "Storage").
//!
//! **Journal** (`{drive}/index/journal`): frames of `len: u32 | crc32: u32 | body`, little
//! endian, where the body is `kind: u8 | key_len: u16 | key | …` and a put adds
//! `size: u64 | sha256: [u8; 32] | mtime: u64`. Replay stops at the first frame that is torn
//! or fails its CRC (a crash mid-append) and the file is cut back there. A [`Journal`] is a
//! writer thread: appends queue up while it is writing or syncing and go out together, one
//! `write` and one `fdatasync` per batch (group commit).
//!
//! **Snapshot** (`{drive}/index/snapshot`): a 32-byte header (`OCASNAP1`, version, count,
//! CRC-32 of the records) and fixed 48-byte records `key_hash: u128 | etag: [u8; 16] |
//! size: u64 | mtime: u64`. It is written to a temp file, fsynced, renamed over the old one and
//! the directory fsynced; the journal is truncated only after that, so a crash in between
//! replays a journal whose records the snapshot already holds (replay is idempotent: the last
//! record of a key wins).
//!
//! What it does not do: keep key strings in memory or in the snapshot (the index is keyed by a
//! 128-bit hash of the key, as Traffic Server and Varnish key their caches by digest).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// 128-bit hash of an object key: the in-memory and snapshot index key.
pub type KeyHash = u128;

/// The index key of `key` (XXH3-128: fast, and at 10⁷ objects the chance of any collision
/// is ~10⁻²⁵).
pub fn key_hash(key: &str) -> KeyHash {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

/// A journal record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// An object was written (its file is fsynced in `tmp/` or already in place).
    Put(PutRecord),
    /// An object was deleted.
    Del {
        /// The object key.
        key: String,
    },
}

impl Record {
    /// The object key the record is about.
    pub fn key(&self) -> &str {
        match self {
            Record::Put(p) => &p.key,
            Record::Del { key } => key,
        }
    }
}

/// What a put records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecord {
    /// The object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// `Last-Modified`, Unix seconds.
    pub mtime: u64,
}

const KIND_PUT: u8 = 1;
const KIND_DEL: u8 = 2;
/// Largest frame body accepted on replay (a key is ≤ 512 bytes).
const MAX_BODY: usize = 4096;

/// Appends the frame of `rec` to `out`.
pub fn encode(rec: &Record, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64 + rec.key().len());
    let key = rec.key().as_bytes();
    let key_len = u16::try_from(key.len()).unwrap_or(u16::MAX);
    let key = &key[..key_len as usize];
    match rec {
        Record::Put(p) => {
            body.push(KIND_PUT);
            body.extend_from_slice(&key_len.to_le_bytes());
            body.extend_from_slice(key);
            body.extend_from_slice(&p.size.to_le_bytes());
            body.extend_from_slice(&p.sha256);
            body.extend_from_slice(&p.mtime.to_le_bytes());
        }
        Record::Del { .. } => {
            body.push(KIND_DEL);
            body.extend_from_slice(&key_len.to_le_bytes());
            body.extend_from_slice(key);
        }
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

fn decode_body(mut body: &[u8]) -> Option<Record> {
    let kind = *take(&mut body, 1)?.first()?;
    let key_len = u16::from_le_bytes(take(&mut body, 2)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(take(&mut body, key_len)?)
        .ok()?
        .to_owned();
    let rec = match kind {
        KIND_PUT => {
            let size = u64::from_le_bytes(take(&mut body, 8)?.try_into().ok()?);
            let sha256: [u8; 32] = take(&mut body, 32)?.try_into().ok()?;
            let mtime = u64::from_le_bytes(take(&mut body, 8)?.try_into().ok()?);
            Record::Put(PutRecord {
                key,
                size,
                sha256,
                mtime,
            })
        }
        KIND_DEL => Record::Del { key },
        _ => return None,
    };
    body.is_empty().then_some(rec)
}

/// Decodes frames from the start of `buf`. Returns the records and the length of the valid
/// prefix: decoding stops at the first torn or corrupt frame.
pub fn decode_all(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    loop {
        let mut rest = &buf[pos..];
        let Some(head) = take(&mut rest, 8) else {
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_BODY {
            break;
        }
        let Some(body) = take(&mut rest, len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let Some(rec) = decode_body(body) else {
            break;
        };
        records.push(rec);
        pos += 8 + len;
    }
    (records, pos)
}

/// Reads a journal file, cutting a torn or corrupt tail off the file. A missing file is
/// empty. Returns the records and how many bytes were cut.
pub fn replay(path: &Path) -> io::Result<(Vec<Record>, u64)> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    }
    let (records, good) = decode_all(&buf);
    let cut = (buf.len() - good) as u64;
    if cut > 0 {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(good as u64)?;
        f.sync_all()?;
    }
    Ok((records, cut))
}

/// One snapshot record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapEntry {
    /// [`key_hash`] of the key.
    pub key: KeyHash,
    /// The first 16 bytes of the SHA-256.
    pub etag: [u8; 16],
    /// Size in bytes.
    pub size: u64,
    /// `Last-Modified`, Unix seconds.
    pub mtime: u64,
}

const SNAP_MAGIC: &[u8; 8] = b"OCASNAP1";
const SNAP_VERSION: u32 = 1;
const SNAP_HEADER: usize = 32;
/// Bytes per snapshot record.
pub const SNAP_RECORD: usize = 48;

/// Buckets of a hash table sized for `n` entries: hashbrown's rule (the table behind
/// `std::collections::HashMap`), a power of two at most 7/8 full.
fn table_buckets(n: usize) -> usize {
    if n < 8 {
        return if n < 4 { 4 } else { 8 };
    }
    (n.saturating_mul(8) / 7).next_power_of_two()
}

/// Where `key` lands in a table of `buckets` buckets when its hash is the key's low 64 bits
/// (the store's `IdHasher`): hashbrown takes the bucket from the hash's low bits.
pub fn table_slot(key: u128, buckets: usize) -> usize {
    (key as u64 as usize) & (buckets - 1)
}

/// Writes `entries` as the snapshot at `path` (temp file, fsync, rename, directory fsync).
///
/// Records are written in the order of the bucket each lands in when loaded into a table
/// sized for them, so loading fills the table front to back instead of at random: 10M
/// inserts at random into a ~500 MiB table cost a cache and TLB miss each (most of the load
/// time); in bucket order they stream. A table of twice or half that size still sees two
/// sequential sweeps. Lookups do not depend on the order.
pub fn write_snapshot(path: &Path, entries: &[SnapEntry]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let buckets = table_buckets(entries.len());
    let mut order: Vec<&SnapEntry> = entries.iter().collect();
    order.sort_unstable_by_key(|e| table_slot(e.key, buckets));
    let mut body = Vec::with_capacity(entries.len() * SNAP_RECORD);
    for e in order {
        body.extend_from_slice(&e.key.to_le_bytes());
        body.extend_from_slice(&e.etag);
        body.extend_from_slice(&e.size.to_le_bytes());
        body.extend_from_slice(&e.mtime.to_le_bytes());
    }
    let mut header = Vec::with_capacity(SNAP_HEADER);
    header.extend_from_slice(SNAP_MAGIC);
    header.extend_from_slice(&SNAP_VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    header.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&header)?;
        f.write_all(&body)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Loads the snapshot at `path` through a read-only memory map and calls `f` for every
/// record. A missing file is an empty snapshot; a corrupt one is `InvalidData`.
pub fn load_snapshot(path: &Path, mut f: impl FnMut(SnapEntry)) -> io::Result<u64> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len() as usize;
    if len < SNAP_HEADER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot shorter than its header",
        ));
    }
    #[allow(unsafe_code)]
    // SAFETY: a snapshot is written to a temp file and renamed into place, never modified
    // afterwards, so nothing changes the mapped bytes; the map does not outlive this function.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot {what}"));
    if &map[..8] != SNAP_MAGIC {
        return Err(bad("has a bad magic number"));
    }
    let version = u32::from_le_bytes(map[8..12].try_into().map_err(|_| bad("header"))?);
    if version != SNAP_VERSION {
        return Err(bad("has an unknown version"));
    }
    let count = u64::from_le_bytes(map[16..24].try_into().map_err(|_| bad("header"))?);
    let crc = u32::from_le_bytes(map[24..28].try_into().map_err(|_| bad("header"))?);
    let body = &map[SNAP_HEADER..];
    if (body.len() as u64) != count.saturating_mul(SNAP_RECORD as u64) {
        return Err(bad("length does not match its record count"));
    }
    if crc32fast::hash(body) != crc {
        return Err(bad("fails its checksum"));
    }
    for rec in body.chunks_exact(SNAP_RECORD) {
        let mut key = [0u8; 16];
        key.copy_from_slice(&rec[..16]);
        let mut etag = [0u8; 16];
        etag.copy_from_slice(&rec[16..32]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&rec[32..40]);
        let mut mtime = [0u8; 8];
        mtime.copy_from_slice(&rec[40..48]);
        f(SnapEntry {
            key: u128::from_le_bytes(key),
            etag,
            size: u64::from_le_bytes(size),
            mtime: u64::from_le_bytes(mtime),
        });
    }
    Ok(count)
}

/// `fsync` of a directory, so renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

type Waiter = oneshot::Sender<io::Result<()>>;

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    waiters: Vec<Waiter>,
    truncate: Vec<Waiter>,
    shutdown: bool,
}

struct Inner {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The group-committing writer of one journal file.
pub struct Journal {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating) the journal at `path` for appending and starts its writer thread.
    pub fn open(path: &Path) -> io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let inner = Arc::new(Inner {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let worker = inner.clone();
        let thread = std::thread::Builder::new()
            .name("oca-journal".into())
            .spawn(move || writer(worker, file))?;
        Ok(Journal {
            inner,
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// Appends `rec`; resolves once it is written and fdatasynced together with whatever else
    /// was queued meanwhile.
    pub fn append(
        &self,
        rec: &Record,
    ) -> impl std::future::Future<Output = io::Result<()>> + use<> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.inner.pending.lock() {
            if p.shutdown {
                drop(tx.send(Err(io::Error::other("journal closed"))));
            } else {
                encode(rec, &mut p.buf);
                p.waiters.push(tx);
            }
        }
        self.inner.wake.notify_one();
        async move {
            rx.await
                .unwrap_or_else(|_| Err(io::Error::other("journal writer stopped")))
        }
    }

    /// Empties the journal (after a snapshot holds its records); resolves once durable.
    pub fn truncate(&self) -> impl std::future::Future<Output = io::Result<()>> + use<> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.inner.pending.lock() {
            p.truncate.push(tx);
        }
        self.inner.wake.notify_one();
        async move {
            rx.await
                .unwrap_or_else(|_| Err(io::Error::other("journal writer stopped")))
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Ok(mut p) = self.inner.pending.lock() {
            p.shutdown = true;
        }
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fault_fsync() -> io::Result<()> {
    fail::fail_point!("journal::fsync", |a| Err(crate::tiered::fault_error(a)));
    Ok(())
}

/// The same error for another waiter (keeping the errno, which decides a drive's fate).
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

fn writer(inner: Arc<Inner>, mut file: File) {
    loop {
        let (buf, waiters, truncate, shutdown) = {
            let Ok(mut p) = inner.pending.lock() else {
                return;
            };
            while p.buf.is_empty() && p.truncate.is_empty() && !p.shutdown {
                p = match inner.wake.wait(p) {
                    Ok(p) => p,
                    Err(_) => return,
                };
            }
            (
                std::mem::take(&mut p.buf),
                std::mem::take(&mut p.waiters),
                std::mem::take(&mut p.truncate),
                p.shutdown,
            )
        };
        if !buf.is_empty() {
            let result = file
                .write_all(&buf)
                .and_then(|()| fault_fsync())
                .and_then(|()| file.sync_data());
            for w in waiters {
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(copy_error(e)),
                };
                drop(w.send(r));
            }
        }
        if !truncate.is_empty() {
            let result = file.set_len(0).and_then(|()| file.sync_all());
            for w in truncate {
                let r = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(copy_error(e)),
                };
                drop(w.send(r));
            }
        }
        if shutdown {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, size: u64) -> Record {
        Record::Put(PutRecord {
            key: key.into(),
            size,
            sha256: [7; 32],
            mtime: 1_700_000_000,
        })
    }

    #[test]
    fn frames_round_trip_and_stop_at_a_torn_tail() {
        let recs = vec![
            put("t/r/a.m4s", 10),
            Record::Del {
                key: "t/r/a.m4s".into(),
            },
            put("t/master.m3u8", 0),
        ];
        let mut buf = Vec::new();
        for r in &recs {
            encode(r, &mut buf);
        }
        let (got, good) = decode_all(&buf);
        assert_eq!(got, recs);
        assert_eq!(good, buf.len());
        // Every cut inside the last frame keeps exactly the first two records.
        let second_end = {
            let mut b = Vec::new();
            encode(&recs[0], &mut b);
            encode(&recs[1], &mut b);
            b.len()
        };
        for cut in second_end..buf.len() {
            let (got, good) = decode_all(&buf[..cut]);
            assert_eq!(got, recs[..2].to_vec(), "cut at {cut}");
            assert_eq!(good, second_end);
        }
        // A flipped bit in the last frame's body is caught by its CRC.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode_all(&bad).0.len(), 2);
    }

    #[test]
    fn replay_cuts_the_torn_tail_off_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut buf = Vec::new();
        encode(&put("t/r/a", 1), &mut buf);
        let good = buf.len();
        encode(&put("t/r/b", 2), &mut buf);
        buf.truncate(buf.len() - 3);
        fs::write(&path, &buf).unwrap();
        let (recs, cut) = replay(&path).unwrap();
        assert_eq!(recs, vec![put("t/r/a", 1)]);
        assert_eq!(cut as usize, buf.len() - good);
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, good);
        assert_eq!(replay(&dir.path().join("none")).unwrap().0, vec![]);
    }

    #[test]
    fn snapshot_round_trips_and_rejects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        let entries: Vec<SnapEntry> = (0..1000u64)
            .map(|i| SnapEntry {
                key: key_hash(&format!("t/r/{i}")),
                etag: [i as u8; 16],
                size: i * 3,
                mtime: i + 5,
            })
            .collect();
        write_snapshot(&path, &entries).unwrap();
        let mut got = Vec::new();
        assert_eq!(load_snapshot(&path, |e| got.push(e)).unwrap(), 1000);
        // Written in table-bucket order (the order is what makes loading stream), same set.
        let buckets = table_buckets(1000);
        assert!(
            got.windows(2)
                .all(|w| table_slot(w[0].key, buckets) <= table_slot(w[1].key, buckets))
        );
        got.sort_by_key(|e| e.mtime);
        assert_eq!(got, entries);
        let mut bytes = fs::read(&path).unwrap();
        bytes[100] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = load_snapshot(&path, |_| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(load_snapshot(&dir.path().join("none"), |_| {}).unwrap(), 0);
    }

    #[tokio::test]
    async fn group_commit_appends_then_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let j = Journal::open(&path).unwrap();
        let futs: Vec<_> = (0..50)
            .map(|i| j.append(&put(&format!("t/r/{i}"), i)))
            .collect();
        for f in futs {
            f.await.unwrap();
        }
        let (recs, _) = replay(&path).unwrap();
        assert_eq!(recs.len(), 50);
        assert_eq!(recs[49], put("t/r/49", 49));
        j.truncate().await.unwrap();
        j.append(&put("t/r/x", 1)).await.unwrap();
        drop(j);
        assert_eq!(replay(&path).unwrap().0, vec![put("t/r/x", 1)]);
    }
}

//! Trace files: libCacheSim `oracleGeneral` (write, streaming read), next-access indices,
//! and the catalog/calendar JSON.
//!
//! A record is 24 bytes, little-endian, packed: `u32 time, u64 id, u32 bytes,
//! i64 next_access_index` (the index of the next request for the same id, `i64::MAX` when
//! there is none).

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::Path;

use super::{Catalog, IdMap, Request, VodsynError};

/// Record size of `oracleGeneral`.
pub const RECORD_BYTES: usize = 24;
/// "Never requested again".
pub const NEVER: u64 = u64::MAX;

/// One `oracleGeneral` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OracleRecord {
    /// Timestamp, seconds (`floor(t) + 1` in VODSYN traces).
    pub time: u32,
    /// Object id.
    pub id: u64,
    /// Object bytes.
    pub bytes: u32,
    /// Index of the next request for `id`, or [`NEVER`].
    pub next: u64,
}

impl OracleRecord {
    /// The 24 bytes of the record.
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0..4].copy_from_slice(&self.time.to_le_bytes());
        b[4..12].copy_from_slice(&self.id.to_le_bytes());
        b[12..16].copy_from_slice(&self.bytes.to_le_bytes());
        let next = if self.next == NEVER || self.next > i64::MAX as u64 {
            i64::MAX
        } else {
            self.next as i64
        };
        b[16..24].copy_from_slice(&next.to_le_bytes());
        b
    }

    /// Parses 24 bytes. A negative next index (as some tools write for "never") is read as
    /// [`NEVER`].
    pub fn decode(b: &[u8; RECORD_BYTES]) -> OracleRecord {
        let next = i64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        OracleRecord {
            time: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            id: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
            bytes: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
            next: if next < 0 || next == i64::MAX {
                NEVER
            } else {
                next as u64
            },
        }
    }
}

/// Next-access index of every request (`u32::MAX` = never), by one backward pass.
pub fn next_access(requests: &[Request]) -> Vec<u32> {
    let mut next = vec![u32::MAX; requests.len()];
    let mut last: IdMap<u32> = IdMap::default();
    for (i, r) in requests.iter().enumerate().rev() {
        if let Some(j) = last.insert(r.id, i as u32) {
            next[i] = j;
        }
    }
    next
}

/// Writes `requests` as `oracleGeneral` with their next-access indices.
pub fn write_oracle(path: &Path, requests: &[Request], next: &[u32]) -> Result<(), VodsynError> {
    let f = File::create(path).map_err(|e| VodsynError::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    for (r, &n) in requests.iter().zip(next) {
        let rec = OracleRecord {
            time: r.trace_time(),
            id: r.id,
            bytes: r.bytes,
            next: if n == u32::MAX { NEVER } else { u64::from(n) },
        };
        w.write_all(&rec.encode())
            .map_err(|e| VodsynError::io(path, e))?;
    }
    w.flush().map_err(|e| VodsynError::io(path, e))
}

/// Streams `oracleGeneral` records from a reader, one at a time, through a buffer.
#[derive(Debug)]
pub struct OracleReader<R> {
    inner: BufReader<R>,
    offset: u64,
    failed: bool,
}

impl OracleReader<File> {
    /// Opens a trace file.
    pub fn open(path: &Path) -> Result<Self, VodsynError> {
        let f = File::open(path).map_err(|e| VodsynError::io(path, e))?;
        Ok(OracleReader::new(f))
    }
}

impl<R: Read> OracleReader<R> {
    /// Wraps a reader (buffered, 1 MiB).
    pub fn new(r: R) -> Self {
        OracleReader {
            inner: BufReader::with_capacity(1 << 20, r),
            offset: 0,
            failed: false,
        }
    }
}

impl<R: Read> Iterator for OracleReader<R> {
    type Item = Result<OracleRecord, VodsynError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut buf = [0u8; RECORD_BYTES];
        let mut got = 0;
        while got < RECORD_BYTES {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(VodsynError::Io {
                        path: "<trace>".into(),
                        source: e,
                    }));
                }
            }
        }
        if got == 0 {
            return None;
        }
        if got < RECORD_BYTES {
            self.failed = true;
            return Some(Err(VodsynError::Truncated {
                offset: self.offset,
            }));
        }
        self.offset += RECORD_BYTES as u64;
        Some(Ok(OracleRecord::decode(&buf)))
    }
}

/// Writes the catalog/calendar JSON.
pub fn write_catalog(path: &Path, catalog: &Catalog) -> Result<(), VodsynError> {
    let f = File::create(path).map_err(|e| VodsynError::io(path, e))?;
    let mut w = BufWriter::new(f);
    serde_json::to_writer(&mut w, catalog).map_err(|e| VodsynError::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    w.flush().map_err(|e| VodsynError::io(path, e))
}

/// Reads the catalog/calendar JSON.
pub fn read_catalog(path: &Path) -> Result<Catalog, VodsynError> {
    let f = File::open(path).map_err(|e| VodsynError::io(path, e))?;
    serde_json::from_reader(BufReader::new(f)).map_err(|e| VodsynError::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

//! The same suite against both engines. The io_uring variant must run here: if the probe
//! fails, those tests fail (they do not skip).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oca_storage::engine::UringEngine;
use oca_storage::{
    EngineKind, EngineOptions, EnginePref, IoEngine, select_engine, uring_available,
};

const FILE_SIZE: usize = 3 * 1024 * 1024;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    data: Vec<u8>,
}

fn fixture(seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.bin");
    let mut rng = Rng(seed | 1);
    let mut data = Vec::with_capacity(FILE_SIZE);
    while data.len() < FILE_SIZE {
        data.extend_from_slice(&rng.next().to_le_bytes());
    }
    data.truncate(FILE_SIZE);
    std::fs::write(&path, &data).unwrap();
    // Compare against what std reads back, not what we meant to write.
    let data = std::fs::read(&path).unwrap();
    assert_eq!(data.len(), FILE_SIZE);
    Fixture {
        _dir: dir,
        path,
        data,
    }
}

fn engine(pref: EnginePref, opts: &EngineOptions) -> Arc<dyn IoEngine> {
    let engine = select_engine(pref, opts)
        .unwrap_or_else(|e| panic!("engine {pref:?} must be available on this machine: {e}"));
    let want = match pref {
        EnginePref::IoUring => EngineKind::IoUring,
        EnginePref::Pread => EngineKind::Pread,
        EnginePref::Auto => engine.kind(),
    };
    assert_eq!(engine.kind(), want);
    engine
}

fn expected(data: &[u8], offset: u64, len: usize) -> &[u8] {
    let start = (offset as usize).min(data.len());
    let end = (offset as usize).saturating_add(len).min(data.len());
    &data[start..end]
}

async fn wait_pool_idle(engine: &dyn IoEngine) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = engine.pool_stats();
        if stats.in_use == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "buffers never came back to the pool: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn random_reads(pref: EnginePref) {
    let fx = fixture(1);
    let engine = engine(pref, &EngineOptions::default());
    let file = engine.open(fx.path.clone()).await.unwrap();
    let bs = engine.buffer_size();
    assert_eq!(bs, 256 * 1024);
    let mut rng = Rng(42);
    for _ in 0..400 {
        let offset = rng.below(FILE_SIZE as u64 + 4096);
        let len = 1 + rng.below(bs as u64) as usize;
        let got = engine.read_at(file.clone(), offset, len).await.unwrap();
        assert_eq!(
            &got[..],
            expected(&fx.data, offset, len),
            "offset {offset} len {len}"
        );
    }
    // Whole file, block by block, including an unaligned block size.
    for block in [bs, 100_003] {
        let mut all = Vec::with_capacity(FILE_SIZE);
        let mut offset = 0u64;
        loop {
            let chunk = engine.read_at(file.clone(), offset, block).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            all.extend_from_slice(&chunk);
        }
        assert!(all == fx.data, "whole-file read with block {block} differs");
    }
}

async fn eof_reads(pref: EnginePref) {
    let fx = fixture(2);
    let engine = engine(pref, &EngineOptions::default());
    let file = engine.open(fx.path.clone()).await.unwrap();
    let size = FILE_SIZE as u64;
    assert!(
        engine
            .read_at(file.clone(), size, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        engine
            .read_at(file.clone(), size + 12_345, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let tail = engine.read_at(file.clone(), size - 10, 100).await.unwrap();
    assert_eq!(&tail[..], &fx.data[FILE_SIZE - 10..]);
    assert!(engine.read_at(file.clone(), 0, 0).await.unwrap().is_empty());
    let too_big = engine
        .read_at(file.clone(), 0, engine.buffer_size() + 1)
        .await;
    assert_eq!(too_big.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    let huge_offset = engine.read_at(file.clone(), u64::MAX, 10).await;
    match huge_offset {
        Ok(b) => assert!(b.is_empty()),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
    }
    let empty_path = fx.path.with_file_name("empty.bin");
    std::fs::write(&empty_path, b"").unwrap();
    let empty = engine.open(empty_path).await.unwrap();
    assert!(engine.read_at(empty, 0, 4096).await.unwrap().is_empty());
}

async fn concurrent_reads(pref: EnginePref) {
    let fx = fixture(3);
    // Small rings and pool, two ring threads: exercises the backlog and round-robin.
    let opts = EngineOptions {
        buffer_size: 64 * 1024,
        pooled_buffers: 16,
        ring_entries: 8,
        ring_threads: 2,
        page_cache_fast_path: false,
    };
    let engine = engine(pref, &opts);
    let file = engine.open(fx.path.clone()).await.unwrap();
    let data = Arc::new(fx.data.clone());
    let mut tasks = Vec::new();
    for t in 0..48u64 {
        let engine = Arc::clone(&engine);
        let file = Arc::clone(&file);
        let data = Arc::clone(&data);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(1000 + t);
            for _ in 0..40 {
                let offset = rng.below(FILE_SIZE as u64);
                let len = 1 + rng.below(64 * 1024) as usize;
                let got = engine
                    .read_at(Arc::clone(&file), offset, len)
                    .await
                    .unwrap();
                assert_eq!(&got[..], expected(&data, offset, len));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    wait_pool_idle(&*engine).await;
    let stats = engine.pool_stats();
    assert!(stats.free <= 16, "free list is bounded: {stats:?}");
}

async fn cancellation(pref: EnginePref) {
    let fx = fixture(4);
    let engine = engine(pref, &EngineOptions::default());
    let file = engine.open(fx.path.clone()).await.unwrap();
    let bs = engine.buffer_size();
    let mut rng = Rng(7);
    for round in 0..50u64 {
        // Never polled.
        let f1 = engine.read_at(file.clone(), rng.below(FILE_SIZE as u64), bs);
        // Polled once, then dropped (most likely still in flight).
        let f2 = engine.read_at(file.clone(), rng.below(FILE_SIZE as u64), bs);
        let _ = tokio::time::timeout(Duration::ZERO, f2).await;
        drop(f1);
        // Spawned and aborted.
        let task = tokio::spawn(engine.read_at(file.clone(), rng.below(FILE_SIZE as u64), bs));
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        task.abort();
        let _ = task.await;
        // Dropping an open is safe too (the fd is closed when it completes).
        let _ = tokio::time::timeout(Duration::ZERO, engine.open(fx.path.clone())).await;
        // Reads still work and are correct.
        let offset = rng.below(FILE_SIZE as u64);
        let got = engine.read_at(file.clone(), offset, bs).await.unwrap();
        assert_eq!(&got[..], expected(&fx.data, offset, bs));
    }
    wait_pool_idle(&*engine).await;
}

async fn pool_reuse(pref: EnginePref) {
    let fx = fixture(5);
    let engine = engine(pref, &EngineOptions::default());
    let file = engine.open(fx.path.clone()).await.unwrap();
    let before = engine.pool_stats();
    for i in 0..100u64 {
        let got = engine.read_at(file.clone(), i * 1000, 4096).await.unwrap();
        assert_eq!(&got[..], expected(&fx.data, i * 1000, 4096));
        drop(got);
        // The buffer goes back when the Bytes is dropped (for pread, possibly a moment after
        // the future resolves, when the blocking task has finished with it).
        wait_pool_idle(&*engine).await;
    }
    let after = engine.pool_stats();
    let allocated = after.allocated_total - before.allocated_total;
    let reused = after.reused_total - before.reused_total;
    assert!(
        allocated <= 1,
        "one buffer should serve sequential reads: {after:?}"
    );
    assert!(reused >= 99, "buffers must be reused: {after:?}");
    // A live Bytes keeps its buffer out of the pool, slices included.
    let held = engine.read_at(file.clone(), 0, 10).await.unwrap();
    let slice = held.slice(2..5);
    drop(held);
    assert_eq!(engine.pool_stats().in_use, 1);
    assert_eq!(&slice[..], &fx.data[2..5]);
    drop(slice);
    wait_pool_idle(&*engine).await;
}

async fn open_missing(pref: EnginePref) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(pref, &EngineOptions::default());
    let err = engine.open(dir.path().join("nope")).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let err = engine
        .open(PathBuf::from("/definitely/not/here/x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

/// Dropping the engine with reads in flight: they complete (correctly or with an error,
/// never garbage), and the engine's threads are gone.
async fn drop_in_flight(pref: EnginePref) {
    let fx = fixture(6);
    let engine = engine(pref, &EngineOptions::default());
    let file = engine.open(fx.path.clone()).await.unwrap();
    let bs = engine.buffer_size();
    let futures: Vec<_> = (0..64u64)
        .map(|i| {
            let offset = (i * 40_000) % FILE_SIZE as u64;
            (offset, engine.read_at(file.clone(), offset, bs))
        })
        .collect();
    drop(engine);
    for (offset, fut) in futures {
        match fut.await {
            Ok(got) => assert_eq!(&got[..], expected(&fx.data, offset, bs)),
            Err(e) => assert!(e.to_string().contains("shut down"), "{e}"),
        }
    }
}

fn task_exists(tid: i32) -> bool {
    Path::new(&format!("/proc/self/task/{tid}")).exists()
}

#[test]
fn io_uring_is_available_here() {
    uring_available().expect("io_uring must work on this machine (the IoUring tests rely on it)");
}

#[test]
fn auto_prefers_io_uring_and_kinds_have_names() {
    let auto = select_engine(EnginePref::Auto, &EngineOptions::default()).unwrap();
    assert_eq!(auto.kind(), EngineKind::IoUring);
    assert_eq!(EngineKind::IoUring.as_str(), "io_uring");
    assert_eq!(EngineKind::Pread.as_str(), "pread");
    let prefs: Vec<EnginePref> = serde_json::from_str(r#"["auto", "io-uring", "pread"]"#).unwrap();
    assert_eq!(
        prefs,
        [EnginePref::Auto, EnginePref::IoUring, EnginePref::Pread]
    );
}

#[test]
fn bad_options_are_errors() {
    for opts in [
        EngineOptions {
            buffer_size: 0,
            ..EngineOptions::default()
        },
        EngineOptions {
            ring_threads: 0,
            ..EngineOptions::default()
        },
    ] {
        for pref in [EnginePref::Auto, EnginePref::IoUring, EnginePref::Pread] {
            assert!(select_engine(pref, &opts).is_err(), "{opts:?} {pref:?}");
        }
    }
}

#[test]
fn uring_engine_drop_joins_threads() {
    let opts = EngineOptions {
        ring_threads: 2,
        ..EngineOptions::default()
    };
    let engine = UringEngine::new(&opts).unwrap();
    let tids = engine.ring_thread_ids();
    assert_eq!(tids.len(), 2);
    for &tid in &tids {
        assert!(
            tid > 0 && task_exists(tid),
            "ring thread {tid} should be running"
        );
    }
    drop(engine);
    // join() returns when the thread has run its exit path; /proc drops the entry right
    // after, so allow a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while tids.iter().any(|&t| task_exists(t)) {
        assert!(
            Instant::now() < deadline,
            "ring threads survived the engine: {tids:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The `RWF_NOWAIT` fast path: cached bytes are read on the caller's thread (counted), and
/// bytes evicted from the page cache still come back right through the engine.
async fn page_cache_fast_path(pref: EnginePref) {
    let fx = fixture(7);
    let opts = EngineOptions {
        page_cache_fast_path: true,
        ..EngineOptions::default()
    };
    let engine = engine(pref, &opts);
    let file = engine.open(fx.path.clone()).await.unwrap();
    let mut rng = Rng(9);
    for _ in 0..50 {
        let offset = rng.below(FILE_SIZE as u64 + 4096);
        let len = 1 + rng.below(engine.buffer_size() as u64) as usize;
        let got = engine.read_at(file.clone(), offset, len).await.unwrap();
        // A fast-path read may be short when only a leading part is cached; never wrong.
        let want = expected(&fx.data, offset, len);
        assert!(
            !got.is_empty() || want.is_empty(),
            "offset {offset}: empty before EOF"
        );
        assert_eq!(&got[..], &want[..got.len()], "offset {offset} len {len}");
    }
    // The file was just written, so its pages are cached: the fast path answered.
    assert!(
        engine.page_cache_reads() > 0,
        "no read took the page-cache path"
    );

    // Evict the pages (where the filesystem allows it) and read again: whatever path
    // answers, the bytes are exact.
    file.sync_all().unwrap();
    nix::fcntl::posix_fadvise(
        &*file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )
    .unwrap();
    let mut all = Vec::with_capacity(FILE_SIZE);
    let mut offset = 0u64;
    loop {
        let chunk = engine
            .read_at(file.clone(), offset, engine.buffer_size())
            .await
            .unwrap();
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        all.extend_from_slice(&chunk);
    }
    assert!(all == fx.data, "whole-file read after eviction differs");

    // Off by default: every read goes to the engine.
    let plain = engine_without_fast_path(pref);
    let file = plain.open(fx.path.clone()).await.unwrap();
    let got = plain.read_at(file, 0, 4096).await.unwrap();
    assert_eq!(&got[..], &fx.data[..4096]);
    assert_eq!(plain.page_cache_reads(), 0);
}

fn engine_without_fast_path(pref: EnginePref) -> Arc<dyn IoEngine> {
    engine(pref, &EngineOptions::default())
}

macro_rules! both_engines {
    ($($test:ident),* $(,)?) => {
        mod uring {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(oca_storage::EnginePref::IoUring).await;
                }
            )*
        }
        mod pread {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(oca_storage::EnginePref::Pread).await;
                }
            )*
        }
    };
}

both_engines!(
    random_reads,
    eof_reads,
    concurrent_reads,
    cancellation,
    pool_reuse,
    open_missing,
    drop_in_flight,
    page_cache_fast_path,
);

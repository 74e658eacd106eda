//! DirStore: indexing, ETags and their cache, the RAM tier.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use oca_common::ObjectKey;
use oca_common::wire::Tier;
use oca_storage::{DirStore, DirStoreOptions, ObjectData, ObjectStore, StorageError};

/// Independent ETag: SHA-256 via aws-lc-rs directly, first 16 bytes, hex.
fn sha_prefix(data: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn cache(root: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(root.join(".oca/etags.json")).unwrap()).unwrap()
}

#[test]
fn known_sha256_vector() {
    // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
    assert_eq!(sha_prefix(b"abc"), "ba7816bf8f01cfea414140de5dae2223");
    assert_eq!(
        oca_storage::dir::etag_of(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223"
    );
}

#[test]
fn indexes_valid_names_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let valid = [
        ("movie/master.m3u8", bytes_of(120, 1)),
        ("movie/1080p/init.mp4", bytes_of(900, 2)),
        ("movie/1080p/seg-00001.m4s", bytes_of(70_000, 3)),
        ("movie/720p/seg-00001.m4s", bytes_of(0, 4)),
        ("other_title/manifest.mpd", bytes_of(333, 5)),
    ];
    for (rel, data) in &valid {
        put(root, rel, data);
    }
    // Invalid: depth 1, bad characters, depth 4, a symlink, the store's own folder.
    put(root, "top-level.txt", b"x");
    put(root, "movie/1080p/bad name.m4s", b"x");
    put(root, "movie/1080p/bad$name.m4s", b"x");
    put(root, "movie/1080p/deeper/seg.m4s", b"x");
    std::os::unix::fs::symlink(
        root.join("movie/1080p/init.mp4"),
        root.join("movie/1080p/link.mp4"),
    )
    .unwrap();
    put(root, ".oca/not-an-object.m4s", b"x");

    let store = DirStore::open(DirStoreOptions::new(root)).unwrap();
    let stats = store.stats();
    assert_eq!(stats.objects, valid.len() as u64);
    assert_eq!(
        stats.bytes,
        valid.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
    );
    assert_eq!((stats.ram_objects, stats.ram_bytes), (0, 0));
    assert_eq!(
        store.skipped(),
        5,
        "top-level, 2 bad names, deeper dir, symlink"
    );
    for (rel, data) in &valid {
        let h = store
            .lookup(&key(rel))
            .unwrap_or_else(|| panic!("{rel} not indexed"));
        assert_eq!(h.meta.size, data.len() as u64);
        assert_eq!(h.meta.etag, sha_prefix(data), "{rel}");
        assert_eq!(h.meta.tier, Tier::Disk);
        let mtime = fs::metadata(root.join(rel)).unwrap().modified().unwrap();
        assert_eq!(h.meta.last_modified, mtime);
        match &h.data {
            ObjectData::File(path) => {
                assert!(path.is_absolute());
                assert_eq!(&fs::read(path).unwrap(), data);
            }
            ObjectData::Ram(_) => panic!("RAM tier is off"),
        }
    }
    assert!(store.lookup(&key("movie/1080p/link.mp4")).is_none());
    assert!(store.lookup(&key("movie/none.m3u8")).is_none());
    assert!(store.lookup(&key(".oca/not-an-object.m4s")).is_none());
}

#[test]
fn missing_or_non_directory_root_is_bad_root() {
    let dir = tempfile::tempdir().unwrap();
    let err = DirStore::open(DirStoreOptions::new(dir.path().join("missing"))).unwrap_err();
    assert!(matches!(err, StorageError::BadRoot(_)), "{err}");
    put(dir.path(), "file", b"x");
    let err = DirStore::open(DirStoreOptions::new(dir.path().join("file"))).unwrap_err();
    assert!(matches!(err, StorageError::BadRoot(_)), "{err}");
}

#[test]
fn etag_cache_is_written_reused_and_invalidated() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "t/r/a.m4s", &bytes_of(5000, 1));
    put(root, "t/r/b.m4s", &bytes_of(6000, 2));

    DirStore::open(DirStoreOptions::new(root)).unwrap();
    let c = cache(root);
    assert_eq!(c["t/r/a.m4s"]["etag"], sha_prefix(&bytes_of(5000, 1)));
    assert_eq!(c["t/r/a.m4s"]["size"], 5000);
    assert!(c["t/r/a.m4s"]["mtime_ns"].as_i64().unwrap() > 0);
    assert_eq!(c.as_object().unwrap().len(), 2);

    // Forge the cached ETag of a.m4s (size and mtime still match): the store must trust the
    // cache rather than rehash, which proves the cache is used.
    let mut forged = c.clone();
    let fake = "0123456789abcdef0123456789abcdef";
    forged["t/r/a.m4s"]["etag"] = fake.into();
    fs::write(
        root.join(".oca/etags.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let store = DirStore::open(DirStoreOptions::new(root)).unwrap();
    assert_eq!(store.lookup(&key("t/r/a.m4s")).unwrap().meta.etag, fake);
    assert_eq!(
        store.lookup(&key("t/r/b.m4s")).unwrap().meta.etag,
        sha_prefix(&bytes_of(6000, 2))
    );

    // New content of the same size and a new mtime: rehashed, cache rewritten.
    let path = root.join("t/r/a.m4s");
    let new = bytes_of(5000, 99);
    fs::write(&path, &new).unwrap();
    let when = SystemTime::now() + Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let store = DirStore::open(DirStoreOptions::new(root)).unwrap();
    let h = store.lookup(&key("t/r/a.m4s")).unwrap();
    assert_eq!(h.meta.etag, sha_prefix(&new));
    assert_eq!(h.meta.last_modified, when);
    assert_eq!(cache(root)["t/r/a.m4s"]["etag"], sha_prefix(&new));

    // A deleted file leaves the cache.
    fs::remove_file(root.join("t/r/b.m4s")).unwrap();
    DirStore::open(DirStoreOptions::new(root)).unwrap();
    assert!(cache(root).get("t/r/b.m4s").is_none());
    // No temp file is left behind.
    let leftovers: Vec<_> = fs::read_dir(root.join(".oca"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "etags.json")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn corrupt_etag_cache_is_ignored_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "t/a.m3u8", b"#EXTM3U\n");
    put(root, ".oca/etags.json", b"{ not json");
    let store = DirStore::open(DirStoreOptions::new(root)).unwrap();
    assert_eq!(
        store.lookup(&key("t/a.m3u8")).unwrap().meta.etag,
        sha_prefix(b"#EXTM3U\n")
    );
    assert_eq!(cache(root)["t/a.m3u8"]["etag"], sha_prefix(b"#EXTM3U\n"));

    // An entry with a malformed ETag is not trusted either.
    let mut c = cache(root);
    c["t/a.m3u8"]["etag"] = "NOT-HEX".into();
    fs::write(
        root.join(".oca/etags.json"),
        serde_json::to_vec(&c).unwrap(),
    )
    .unwrap();
    let store = DirStore::open(DirStoreOptions::new(root)).unwrap();
    assert_eq!(
        store.lookup(&key("t/a.m3u8")).unwrap().meta.etag,
        sha_prefix(b"#EXTM3U\n")
    );
}

fn ram_tree(root: &Path) {
    put(root, "t/master.m3u8", &bytes_of(100, 1));
    put(root, "t/r/init.mp4", &bytes_of(1000, 2));
    put(root, "t/r/a.m4s", &bytes_of(5000, 3)); // above ram_max_object below
    put(root, "t/r/b.m4s", &bytes_of(3000, 4));
    put(root, "t/r/c.m4s", &bytes_of(500, 5));
    put(root, "u/x.mpd", &bytes_of(200, 6));
}

fn in_ram(store: &DirStore, k: &str) -> bool {
    let h = store.lookup(&key(k)).unwrap();
    match &h.data {
        ObjectData::Ram(bytes) => {
            assert_eq!(h.meta.tier, Tier::Ram);
            assert_eq!(bytes.len() as u64, h.meta.size);
            true
        }
        ObjectData::File(_) => {
            assert_eq!(h.meta.tier, Tier::Disk);
            false
        }
    }
}

#[test]
fn ram_tier_order_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ram_tree(root);
    let open = |ram_bytes| {
        DirStore::open(DirStoreOptions {
            root: root.to_path_buf(),
            ram_bytes,
            ram_max_object: 4096,
        })
        .unwrap()
    };

    // Playlists/manifests (300 B) first, then the init segment (1000 B), then the rest in
    // key order: a.m4s is over ram_max_object, b.m4s (3000 B) fits, c.m4s (500 B) no longer does (4300 + 500 > 4700).
    let store = open(4700);
    let ram: Vec<&str> = [
        "t/master.m3u8",
        "u/x.mpd",
        "t/r/init.mp4",
        "t/r/a.m4s",
        "t/r/b.m4s",
        "t/r/c.m4s",
    ]
    .into_iter()
    .filter(|k| in_ram(&store, k))
    .collect();
    assert_eq!(
        ram,
        ["t/master.m3u8", "u/x.mpd", "t/r/init.mp4", "t/r/b.m4s"]
    );
    let stats = store.stats();
    assert_eq!(stats.ram_objects, 4);
    assert_eq!(stats.ram_bytes, 4300);
    assert_eq!(stats.objects, 6);

    // 1200 B: manifests (300) go, init (1000) does not fit, b does not, c (500) does.
    let store = open(1200);
    let ram: Vec<&str> = [
        "t/master.m3u8",
        "u/x.mpd",
        "t/r/init.mp4",
        "t/r/a.m4s",
        "t/r/b.m4s",
        "t/r/c.m4s",
    ]
    .into_iter()
    .filter(|k| in_ram(&store, k))
    .collect();
    assert_eq!(ram, ["t/master.m3u8", "u/x.mpd", "t/r/c.m4s"]);
    assert_eq!(store.stats().ram_bytes, 800);

    // Budget 0: RAM tier off.
    let store = open(0);
    assert_eq!(store.stats().ram_objects, 0);
    assert!(!store.stats().ram_locked);
}

#[test]
fn ram_data_is_byte_equal_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ram_tree(root);
    let store = DirStore::open(DirStoreOptions {
        root: root.to_path_buf(),
        ram_bytes: 1 << 20,
        ram_max_object: 1 << 20,
    })
    .unwrap();
    let stats = store.stats();
    assert_eq!(stats.ram_objects, 6);
    eprintln!("RAM tier locked: {}", stats.ram_locked);
    for k in [
        "t/master.m3u8",
        "t/r/init.mp4",
        "t/r/a.m4s",
        "t/r/b.m4s",
        "t/r/c.m4s",
        "u/x.mpd",
    ] {
        let h = store.lookup(&key(k)).unwrap();
        let ObjectData::Ram(bytes) = &h.data else {
            panic!("{k} should be in RAM");
        };
        let on_disk = fs::read(root.join(k)).unwrap();
        assert_eq!(&bytes[..], &on_disk[..], "{k}");
        assert_eq!(h.meta.etag, sha_prefix(&on_disk));
    }
    // The bytes outlive the store.
    let h = store.lookup(&key("t/r/a.m4s")).unwrap();
    drop(store);
    let ObjectData::Ram(bytes) = h.data else {
        panic!()
    };
    assert_eq!(&bytes[..], &bytes_of(5000, 3)[..]);
}

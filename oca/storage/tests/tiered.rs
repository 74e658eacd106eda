//! TieredStore: ingest, restart, crash recovery, checksums, space, renditions, inventory,
//! compaction, RAM admission, promotion. (Fault injection with failpoints lives in the
//! `oca-tests` crate, which builds this crate with its `failpoints` feature.)

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oca_common::ObjectKey;
use oca_common::wire::{ManifestFile, RenditionId, RenditionManifest, Tier};
use oca_storage::journal::{self, PutRecord, Record};
use oca_storage::{
    DriveConfig, EngineOptions, EnginePref, IngestOutcome, IngestStart, ObjectData, ObjectStore,
    StorageError, TieredOptions, TieredStore, select_engine,
};

fn sha(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

struct Rig {
    dir: tempfile::TempDir,
    opts: TieredOptions,
}

impl Rig {
    fn new(drives: &[(Tier, u64)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = TieredOptions::new(dir.path().join("state"));
        for (i, (tier, cap)) in drives.iter().enumerate() {
            let p = dir.path().join(format!("d{i}"));
            fs::create_dir_all(&p).unwrap();
            opts.drives.push(DriveConfig {
                tier: *tier,
                path: p,
                capacity: *cap,
            });
        }
        Rig { dir, opts }
    }

    fn drive(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("d{i}"))
    }

    fn open(&self) -> Arc<TieredStore> {
        let engine = select_engine(EnginePref::Auto, &EngineOptions::default()).unwrap();
        TieredStore::open(self.opts.clone(), engine).unwrap()
    }
}

async fn ingest(
    s: &TieredStore,
    k: &str,
    body: &[u8],
    tier: Option<Tier>,
) -> Result<IngestOutcome, StorageError> {
    ingest_with_sha(s, k, body, &sha(body), tier).await
}

async fn ingest_with_sha(
    s: &TieredStore,
    k: &str,
    body: &[u8],
    sha_hex: &str,
    tier: Option<Tier>,
) -> Result<IngestOutcome, StorageError> {
    match s
        .begin_ingest(
            key(k),
            sha_hex,
            body.len() as u64,
            tier,
            Some(1_700_000_000),
        )
        .await?
    {
        IngestStart::AlreadyPresent => Ok(IngestOutcome::AlreadyPresent),
        IngestStart::Started(mut ing) => {
            for chunk in body.chunks(100_000) {
                ing.write(Bytes::copy_from_slice(chunk)).await?;
            }
            ing.finish().await
        }
    }
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

fn etag(body: &[u8]) -> String {
    sha(body)[..32].to_owned()
}

#[tokio::test]
async fn ingest_is_served_and_survives_restart() {
    let rig = Rig::new(&[(Tier::Flash, 1 << 30), (Tier::Disk, 1 << 30)]);
    let body = data(300_000, 1);
    let s = rig.open();
    assert_eq!(
        ingest(&s, "t/r/seg1.m4s", &body, None).await.unwrap(),
        IngestOutcome::Created {
            tier: Tier::Flash,
            size: body.len() as u64
        }
    );
    let small = data(10, 2);
    ingest(&s, "t/r/seg2.m4s", &small, Some(Tier::Disk))
        .await
        .unwrap();
    let h = s.lookup(&key("t/r/seg1.m4s")).unwrap();
    assert_eq!(h.meta.size, body.len() as u64);
    assert_eq!(h.meta.etag, etag(&body));
    assert_eq!(h.meta.tier, Tier::Flash);
    assert_eq!(fs::read(&h.path).unwrap(), body);
    assert_eq!(h.path, rig.drive(0).join("objects/t/r/seg1.m4s"));
    assert_eq!(
        s.lookup(&key("t/r/seg2.m4s")).unwrap().meta.tier,
        Tier::Disk
    );
    drop(s);
    let s = rig.open();
    let h = s.lookup(&key("t/r/seg1.m4s")).unwrap();
    assert_eq!(h.meta.etag, etag(&body));
    assert_eq!(
        h.meta.last_modified,
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
    assert_eq!(s.stats().objects, 2);
    assert_eq!(s.stats().bytes, 300_010);
    // Same bytes again: a no-op; other bytes: a conflict.
    assert_eq!(
        ingest(&s, "t/r/seg1.m4s", &body, None).await.unwrap(),
        IngestOutcome::AlreadyPresent
    );
    let err = ingest(&s, "t/r/seg1.m4s", &data(300_000, 9), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn checksum_mismatch_keeps_nothing() {
    let rig = Rig::new(&[(Tier::Disk, 1 << 30)]);
    let s = rig.open();
    let body = data(50_000, 3);
    let wrong = sha(b"something else");
    let err = ingest_with_sha(&s, "t/r/a.m4s", &body, &wrong, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(s.lookup(&key("t/r/a.m4s")).is_none());
    assert_eq!(count_files(&rig.drive(0).join("tmp")), 0);
    assert!(!rig.drive(0).join("objects/t/r/a.m4s").exists());
    // Bad digest syntax and a body longer or shorter than declared are 400s.
    let err = s
        .begin_ingest(key("t/r/b"), "XYZ", 3, None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::BadInput(_)));
    let IngestStart::Started(mut ing) = s
        .begin_ingest(key("t/r/c"), &sha(b"abc"), 3, None, None)
        .await
        .unwrap()
    else {
        panic!("expected a new ingest")
    };
    assert!(matches!(
        ing.write(Bytes::from_static(b"abcd")).await,
        Err(StorageError::BadInput(_))
    ));
    ing.write(Bytes::from_static(b"ab")).await.unwrap();
    assert!(matches!(ing.finish().await, Err(StorageError::BadInput(_))));
    assert_eq!(count_files(&rig.drive(0).join("tmp")), 0);
    drop(s);
    assert_eq!(rig.open().stats().objects, 0);
}

#[tokio::test]
async fn no_space_is_refused_before_writing() {
    let rig = Rig::new(&[(Tier::Disk, 100_000)]);
    let s = rig.open();
    ingest(&s, "t/r/a", &data(60_000, 1), None).await.unwrap();
    let err = ingest(&s, "t/r/b", &data(60_000, 2), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSpace(_)), "{err}");
    assert_eq!(count_files(&rig.drive(0).join("tmp")), 0);
    // No flash drive at all is also "no space" for a flash ingest.
    let err = ingest(&s, "t/r/c", &data(10, 2), Some(Tier::Flash))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSpace(_)), "{err}");
    // After a delete there is room again.
    assert!(s.delete(&key("t/r/a")).await.unwrap().is_some());
    ingest(&s, "t/r/b", &data(60_000, 2), None).await.unwrap();
}

#[tokio::test]
async fn concurrent_ingest_of_one_key_is_a_conflict() {
    let rig = Rig::new(&[(Tier::Disk, 1 << 30)]);
    let s = rig.open();
    let first = s
        .begin_ingest(key("t/r/a"), &sha(b"x"), 1, None, None)
        .await
        .unwrap();
    let err = s
        .begin_ingest(key("t/r/a"), &sha(b"x"), 1, None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict(_)));
    drop(first); // abandoned: its temp file goes, the key is free again
    assert_eq!(count_files(&rig.drive(0).join("tmp")), 0);
    ingest(&s, "t/r/a", b"x", None).await.unwrap();
}

#[tokio::test]
async fn restart_rolls_journaled_ingests_forward_and_removes_stray_temps() {
    let rig = Rig::new(&[(Tier::Disk, 1 << 30)]);
    drop(rig.open()); // lays out the drive
    let d = rig.drive(0);
    // A crash after the journal record but before the rename: temp present, record written.
    let body = data(4096, 7);
    let k = "t/r/rolled.m4s";
    let h = journal::key_hash(k);
    fs::write(d.join(format!("tmp/{h:032x}")), &body).unwrap();
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&hex::decode(sha(&body)).unwrap());
    let mut buf = Vec::new();
    journal::encode(
        &Record::Put(PutRecord {
            key: k.into(),
            size: body.len() as u64,
            sha256,
            mtime: 5,
        }),
        &mut buf,
    );
    // A record whose file never made it anywhere is dropped.
    journal::encode(
        &Record::Put(PutRecord {
            key: "t/r/lost".into(),
            size: 1,
            sha256,
            mtime: 5,
        }),
        &mut buf,
    );
    // Plus a torn half record at the end.
    let mut torn = Vec::new();
    journal::encode(&Record::Del { key: k.into() }, &mut torn);
    buf.extend_from_slice(&torn[..torn.len() - 2]);
    fs::write(d.join("index/journal"), &buf).unwrap();
    // A temp file of an ingest that never reached the journal.
    fs::write(d.join("tmp/0123abcd"), b"partial").unwrap();
    let s = rig.open();
    let h = s.lookup(&key(k)).expect("rolled forward");
    assert_eq!(fs::read(&h.path).unwrap(), body);
    assert!(s.lookup(&key("t/r/lost")).is_none());
    assert_eq!(count_files(&d.join("tmp")), 0);
    assert_eq!(s.stats().objects, 1);
}

#[tokio::test]
async fn deletes_and_compaction_survive_restart() {
    let mut rig = Rig::new(&[(Tier::Disk, 1 << 30)]);
    rig.opts.compact_after = 5;
    let s = rig.open();
    for i in 0..12u8 {
        ingest(&s, &format!("t/r/{i}"), &data(100 + i as usize, i), None)
            .await
            .unwrap();
    }
    assert!(s.delete(&key("t/r/3")).await.unwrap().is_some());
    assert!(s.delete(&key("t/r/3")).await.unwrap().is_none());
    assert!(!rig.drive(0).join("objects/t/r/3").exists());
    // Compaction ran (every 5 records): a snapshot exists and the journal is short.
    assert!(rig.drive(0).join("index/snapshot").exists());
    let journal_len = fs::metadata(rig.drive(0).join("index/journal"))
        .unwrap()
        .len();
    assert!(
        journal_len < 12 * 60,
        "journal not compacted: {journal_len}"
    );
    drop(s);
    let s = rig.open();
    assert_eq!(s.stats().objects, 11);
    assert!(s.lookup(&key("t/r/3")).is_none());
    let h = s.lookup(&key("t/r/11")).unwrap();
    assert_eq!(h.meta.etag, etag(&data(111, 11)));
}

fn manifest(title: &str, rend: &str, files: &[(&str, &[u8])], total: u32) -> RenditionManifest {
    RenditionManifest {
        title: title.into(),
        rendition: rend.into(),
        files: files
            .iter()
            .map(|(n, b)| ManifestFile {
                name: (*n).into(),
                size: b.len() as u64,
                sha256: sha(b),
            })
            .collect(),
        total_files: total,
        published: None,
    }
}

#[tokio::test]
async fn renditions_commit_inventory_deltas_and_delete() {
    let rig = Rig::new(&[(Tier::Flash, 1 << 30), (Tier::Disk, 1 << 30)]);
    let s = rig.open();
    let a = data(1000, 1);
    let b = data(2000, 2);
    ingest(&s, "t/720p/a.m4s", &a, None).await.unwrap();
    let id = RenditionId::new("t", "720p").unwrap();
    // b is not there yet: the commit names it.
    let m = manifest("t", "720p", &[("a.m4s", &a), ("b.m4s", &b)], 2);
    let err = s.commit_rendition(&id, m.clone()).unwrap_err();
    assert!(
        matches!(&err, StorageError::Conflict(msg) if msg.contains("b.m4s is missing")),
        "{err}"
    );
    assert_eq!(s.inventory(None).generation, 0);
    ingest(&s, "t/720p/b.m4s", &b, None).await.unwrap();
    let entry = s.commit_rendition(&id, m.clone()).unwrap();
    assert_eq!(entry.files_held, 2);
    assert_eq!(entry.bytes, 3000);
    assert_eq!(entry.tier, Tier::Flash);
    let inv = s.inventory(Some(0));
    assert_eq!((inv.generation, inv.full), (1, false));
    assert_eq!(inv.added, vec![entry.clone()]);
    assert!(s.inventory(Some(1)).added.is_empty());
    // A partial rendition (first file of 10).
    let c = data(10, 3);
    ingest(&s, "t/1080p/c.m4s", &c, Some(Tier::Disk))
        .await
        .unwrap();
    let id2 = RenditionId::new("t", "1080p").unwrap();
    let e2 = s
        .commit_rendition(&id2, manifest("t", "1080p", &[("c.m4s", &c)], 10))
        .unwrap();
    assert_eq!(
        (e2.files_held, e2.total_files, e2.tier),
        (1, 10, Tier::Disk)
    );
    // Deleting a file of a held rendition cuts it to its leading part.
    s.delete(&key("t/720p/b.m4s")).await.unwrap();
    let inv = s.inventory(Some(2));
    assert_eq!(inv.generation, 3);
    assert_eq!(inv.added.len(), 1);
    assert_eq!(inv.added[0].files_held, 1);
    // Restart: manifests and generation persist; old deltas are no longer known → full.
    drop(s);
    let s = rig.open();
    let inv = s.inventory(Some(1));
    assert!(inv.full);
    assert_eq!(inv.generation, 3);
    assert_eq!(inv.added.len(), 2);
    assert!(!s.inventory(Some(3)).full);
    // Delete the rendition: gone from the inventory, its files deleted.
    assert!(s.delete_rendition(&id).await.unwrap().is_some());
    let inv = s.inventory(Some(3));
    assert_eq!(inv.removed, vec![id.clone()]);
    assert!(s.lookup(&key("t/720p/a.m4s")).is_none());
    assert!(s.delete_rendition(&id).await.unwrap().is_none());
    // A manifest naming another rendition than the path is bad input.
    let err = s
        .commit_rendition(&id, manifest("t", "1080p", &[("c.m4s", &c)], 10))
        .unwrap_err();
    assert!(matches!(err, StorageError::BadInput(_)));
}

#[tokio::test]
async fn a_failed_drive_is_dropped_persisted_and_the_rest_keeps_serving() {
    let rig = Rig::new(&[(Tier::Disk, 1 << 30), (Tier::Disk, 1 << 30)]);
    let s = rig.open();
    // Spread objects: fill drive 0 first by making it the one with most room.
    for i in 0..6u8 {
        ingest(&s, &format!("t/r/{i}"), &data(1000, i), None)
            .await
            .unwrap();
    }
    let on: Vec<u16> = (0..6)
        .map(|i| s.lookup(&key(&format!("t/r/{i}"))).unwrap().drive.unwrap())
        .collect();
    assert!(on.contains(&0) && on.contains(&1), "{on:?}");
    let id = RenditionId::new("t", "r").unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..6u8).map(|i| (i.to_string(), data(1000, i))).collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    s.commit_rendition(&id, manifest("t", "r", &refs, 6))
        .unwrap();
    // A read error on drive 0.
    let victim = (0..6).find(|i| on[*i] == 0).unwrap();
    let h = s.lookup(&key(&format!("t/r/{victim}"))).unwrap();
    s.read_failed(&h, &std::io::Error::from_raw_os_error(libc::EIO));
    let st = s.drives();
    assert!(!st[0].up && st[1].up);
    assert_eq!(st[0].errors, 1);
    for (i, &held) in on.iter().enumerate() {
        let got = s.lookup(&key(&format!("t/r/{i}")));
        assert_eq!(got.is_some(), held == 1, "object {i}");
    }
    // The rendition is cut to its leading files on drive 1 (or gone).
    let lead = on.iter().take_while(|d| **d == 1).count() as u32;
    let inv = s.inventory(None);
    assert_eq!(inv.added.first().map_or(0, |e| e.files_held), lead);
    // New ingests go to the healthy drive.
    ingest(&s, "t/r/new", b"new", None).await.unwrap();
    assert_eq!(s.lookup(&key("t/r/new")).unwrap().drive, Some(1));
    // Persisted: still out after a restart.
    drop(s);
    let s = rig.open();
    assert!(!s.drives()[0].up);
    assert_eq!(
        s.tier_status()
            .iter()
            .find(|t| t.tier == Tier::Disk)
            .unwrap()
            .failed_drives,
        1
    );
    for (i, &held) in on.iter().enumerate() {
        assert_eq!(s.lookup(&key(&format!("t/r/{i}"))).is_some(), held == 1);
    }
    // A not-EIO error (e.g. a vanished file) does not fail a drive.
    let h = s.lookup(&key("t/r/new")).unwrap();
    s.read_failed(&h, &std::io::Error::from_raw_os_error(libc::ENOENT));
    assert!(s.drives()[1].up);
}

#[tokio::test]
async fn ram_tier_admits_by_frequency_and_serves_bytes() {
    let mut rig = Rig::new(&[(Tier::Disk, 1 << 30)]);
    rig.opts.ram_bytes = 1 << 20;
    let s = rig.open();
    let hot = data(10_000, 1);
    ingest(&s, "t/r/hot", &hot, None).await.unwrap();
    let k = key("t/r/hot");
    // Repeated reads: admitted, loaded in the background, then served from RAM.
    let mut served_from_ram = false;
    for _ in 0..200 {
        let h = s.lookup(&k).unwrap();
        if let ObjectData::Ram(b) = &h.data {
            assert_eq!(&b[..], &hot[..]);
            assert_eq!(h.meta.tier, Tier::Ram);
            served_from_ram = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(served_from_ram, "a hot object never reached the RAM tier");
    let (objects, bytes, cap, hits) = s.ram_status();
    assert_eq!((objects, bytes, cap), (1, 10_000, 1 << 20));
    assert!(hits >= 1);
    // Deleting purges the RAM copy too.
    s.delete(&k).await.unwrap();
    assert!(s.lookup(&k).is_none());
    assert_eq!(s.ram_status().0, 0);
}

#[tokio::test]
async fn hot_disk_objects_are_promoted_to_flash_under_a_rate_cap() {
    let mut rig = Rig::new(&[(Tier::Flash, 30_000), (Tier::Disk, 1 << 30)]);
    rig.opts.ram_bytes = 1 << 20;
    rig.opts.promote_min_frequency = 2;
    let s = rig.open();
    let body = data(20_000, 4);
    ingest(&s, "t/r/x", &body, Some(Tier::Disk)).await.unwrap();
    // A cold object already on flash that must make room (demotion).
    let cold = data(20_000, 5);
    ingest(&s, "t/r/cold", &cold, Some(Tier::Flash))
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let promoter = tokio::spawn(s.clone().run_promoter(10 << 20, async move {
        let _ = stop_rx.await;
    }));
    let k = key("t/r/x");
    let mut promoted = false;
    // The promoter publishes the move in the index and then counts it: wait for both.
    for _ in 0..400 {
        let h = s.lookup(&k).unwrap();
        if h.drive == Some(0) && s.moves().0 == 1 {
            promoted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        promoted,
        "a hot disk object was never promoted (and counted)"
    );
    assert_eq!(s.moves(), (1, 1));
    assert_eq!(s.lookup(&key("t/r/cold")).unwrap().drive, Some(1));
    let _ = stop_tx.send(());
    promoter.await.unwrap();
    drop(s);
    // Both moves are durable.
    let s = rig.open();
    let h = s.lookup(&k).unwrap();
    assert_eq!(h.drive, Some(0));
    assert_eq!(fs::read(&h.path).unwrap(), body);
    let h = s.lookup(&key("t/r/cold")).unwrap();
    assert_eq!(h.drive, Some(1));
    assert_eq!(fs::read(&h.path).unwrap(), cold);
    assert_eq!(s.stats().objects, 2);
}

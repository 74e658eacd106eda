//! The SQLite store (rusqlite, SQLite bundled): WAL mode, foreign keys on, numbered
//! migrations from `control-plane/migrations/` applied at open inside a transaction each and
//! recorded in `schema_migrations`, so opening again is a no-op.

use std::path::Path;
use std::time::Duration;

use oca_common::wire::RenditionId;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoredContentKey, StoredSigningKey, User};
use crate::auth::Plan;
use crate::catalog::{FileEntry, Rendition, Title};
use crate::drm::KeyId;
use crate::error::{Error, Result};
use crate::forecast::{DailyViews, Exposure};
use crate::recommend::ViewEvent;

/// The migrations, in order: `(version, SQL)`.
pub const MIGRATIONS: &[(u32, &str)] = &[(1, include_str!("../../migrations/0001_init.sql"))];

/// The SQLite store. Not `Sync`: the facade wraps it in a mutex.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (or creates) the database file and applies pending migrations.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<SqliteStore> {
        let conn = Connection::open(path)
            .map_err(|e| Error::Database(format!("{}: {e}", path.display())))?;
        Self::setup(conn, busy_timeout, true)
    }

    /// An in-memory database (tests, benches).
    pub fn open_in_memory() -> Result<SqliteStore> {
        Self::setup(Connection::open_in_memory()?, Duration::from_secs(1), false)
    }

    fn setup(conn: Connection, busy_timeout: Duration, wal: bool) -> Result<SqliteStore> {
        conn.busy_timeout(busy_timeout)?;
        if wal {
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::Database(format!(
                    "could not enable WAL mode (got {mode})"
                )));
            }
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = SqliteStore { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at INTEGER NOT NULL DEFAULT (unixepoch())
             )",
        )?;
        let current = self.schema_version()?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > known {
            return Err(Error::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .map_err(|e| Error::Database(format!("migration {version}: {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                [version],
            )?;
            tx.commit()?;
        }
        Ok(())
    }

    fn load_title(&self, id: &str) -> Result<Option<Title>> {
        let row = self
            .conn
            .query_row(
                "SELECT name, genres, launch, regions FROM titles WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((name, genres, launch, regions)) = row else {
            return Ok(None);
        };
        let genres: Vec<String> =
            serde_json::from_str(&genres).map_err(|e| corrupt("title genres", e))?;
        let regions: Vec<String> =
            serde_json::from_str(&regions).map_err(|e| corrupt("title regions", e))?;
        let mut files_stmt = self.conn.prepare_cached(
            "SELECT name, size, sha256 FROM files
             WHERE title = ?1 AND rendition IS ?2 ORDER BY seq",
        )?;
        let mut files_of = |rendition: Option<&str>| -> Result<Vec<FileEntry>> {
            let rows = files_stmt.query_map(params![id, rendition], |r| {
                Ok(FileEntry {
                    name: r.get(0)?,
                    size: to_u64(r.get(1)?),
                    sha256: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        };
        let title_files = files_of(None)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, codec, width, height, bitrate_kbps FROM renditions
             WHERE title = ?1 ORDER BY height DESC, id",
        )?;
        let rends = stmt
            .query_map([id], |r| {
                Ok(Rendition {
                    id: r.get(0)?,
                    codec: r.get(1)?,
                    width: r.get(2)?,
                    height: r.get(3)?,
                    bitrate_kbps: r.get(4)?,
                    files: Vec::new(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut renditions = Vec::with_capacity(rends.len());
        for mut r in rends {
            r.files = files_of(Some(&r.id))?;
            renditions.push(r);
        }
        Ok(Some(Title {
            id: id.to_owned(),
            name,
            genres,
            launch: launch.map(to_u64),
            regions,
            renditions,
            files: title_files,
        }))
    }
}

fn content_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Vec<u8>, Vec<u8>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn decode_content_key(
    (rendition, kid, wrapped): (String, Vec<u8>, Vec<u8>),
) -> Result<StoredContentKey> {
    let rendition =
        RenditionId::parse(&rendition).map_err(|e| corrupt("content key rendition", e))?;
    let kid: [u8; 16] = kid
        .try_into()
        .map_err(|_| Error::Corrupt(format!("content key id of {rendition} is not 16 bytes")))?;
    Ok(StoredContentKey {
        rendition,
        kid: KeyId(kid),
        wrapped,
    })
}

impl Store for SqliteStore {
    fn schema_version(&self) -> Result<u32> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    fn put_titles(&mut self, titles: &[Title]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for t in titles {
            tx.execute("DELETE FROM titles WHERE id = ?1", [&t.id])?;
            let genres = serde_json::to_string(&t.genres).map_err(|e| corrupt("genres", e))?;
            let regions = serde_json::to_string(&t.regions).map_err(|e| corrupt("regions", e))?;
            tx.execute(
                "INSERT INTO titles (id, name, genres, launch, regions) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.id, t.name, genres, t.launch.map(to_i64), regions],
            )?;
            let mut file_stmt = tx.prepare_cached(
                "INSERT INTO files (key, title, rendition, seq, name, size, sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (seq, f) in t.files.iter().enumerate() {
                file_stmt.execute(params![
                    format!("{}/{}", t.id, f.name),
                    t.id,
                    Option::<String>::None,
                    seq,
                    f.name,
                    to_i64(f.size),
                    f.sha256
                ])?;
            }
            for r in &t.renditions {
                tx.execute(
                    "INSERT INTO renditions (title, id, codec, width, height, bitrate_kbps)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![t.id, r.id, r.codec, r.width, r.height, r.bitrate_kbps],
                )?;
                for (seq, f) in r.files.iter().enumerate() {
                    file_stmt.execute(params![
                        format!("{}/{}/{}", t.id, r.id, f.name),
                        t.id,
                        r.id,
                        seq,
                        f.name,
                        to_i64(f.size),
                        f.sha256
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn title(&self, id: &str) -> Result<Option<Title>> {
        self.load_title(id)
    }

    fn titles(&self) -> Result<Vec<Title>> {
        let mut stmt = self.conn.prepare("SELECT id FROM titles ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.load_title(&id)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn put_content_key_if_absent(
        &mut self,
        key: &StoredContentKey,
        now: u64,
    ) -> Result<StoredContentKey> {
        self.conn.execute(
            "INSERT INTO content_keys (rendition, kid, wrapped, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (rendition) DO NOTHING",
            params![
                key.rendition.as_str(),
                &key.kid.0[..],
                key.wrapped,
                to_i64(now)
            ],
        )?;
        self.content_key(&key.rendition)?
            .ok_or_else(|| Error::Database("content key vanished after insert".into()))
    }

    fn content_key(&self, rendition: &RenditionId) -> Result<Option<StoredContentKey>> {
        self.conn
            .query_row(
                "SELECT rendition, kid, wrapped FROM content_keys WHERE rendition = ?1",
                [rendition.as_str()],
                content_key_row,
            )
            .optional()?
            .map(decode_content_key)
            .transpose()
    }

    fn content_key_by_kid(&self, kid: &KeyId) -> Result<Option<StoredContentKey>> {
        self.conn
            .query_row(
                "SELECT rendition, kid, wrapped FROM content_keys WHERE kid = ?1",
                [&kid.0[..]],
                content_key_row,
            )
            .optional()?
            .map(decode_content_key)
            .transpose()
    }

    fn put_plan(&mut self, plan: &Plan) -> Result<()> {
        self.conn.execute(
            "INSERT INTO plans (name, max_height) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET max_height = excluded.max_height",
            params![plan.name, plan.max_height],
        )?;
        Ok(())
    }

    fn plan(&self, name: &str) -> Result<Option<Plan>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, max_height FROM plans WHERE name = ?1",
                [name],
                |r| {
                    Ok(Plan {
                        name: r.get(0)?,
                        max_height: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn plans(&self) -> Result<Vec<Plan>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, max_height FROM plans ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Plan {
                name: r.get(0)?,
                max_height: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn put_user(&mut self, user: &User) -> Result<()> {
        self.conn.execute(
            "INSERT INTO users (id, plan) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET plan = excluded.plan",
            params![user.id, user.plan],
        )?;
        Ok(())
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        Ok(self
            .conn
            .query_row("SELECT id, plan FROM users WHERE id = ?1", [id], |r| {
                Ok(User {
                    id: r.get(0)?,
                    plan: r.get(1)?,
                })
            })
            .optional()?)
    }

    fn revoke_token(&mut self, token_id: &str, expires_at: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO revoked_tokens (token_id, expires_at) VALUES (?1, ?2)
             ON CONFLICT (token_id) DO NOTHING",
            params![token_id, to_i64(expires_at)],
        )?;
        Ok(())
    }

    fn is_revoked(&self, token_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM revoked_tokens WHERE token_id = ?1",
                [token_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn prune_revocations(&mut self, now: u64) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM revoked_tokens WHERE expires_at < ?1",
            [to_i64(now)],
        )?)
    }

    fn put_appliance(&mut self, id: &str, secret_sha256: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT INTO appliances (id, secret_sha256) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET secret_sha256 = excluded.secret_sha256",
            params![id, secret_sha256],
        )?;
        Ok(())
    }

    fn appliance_secret_hash(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT secret_sha256 FROM appliances WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn add_signing_key(&mut self, key: &StoredSigningKey) -> Result<()> {
        self.conn.execute(
            "INSERT INTO signing_keys (kid, seq, wrapped, created_at, retired_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                key.kid,
                to_i64(key.seq),
                key.wrapped,
                to_i64(key.created_at),
                key.retired_at.map(to_i64)
            ],
        )?;
        Ok(())
    }

    fn signing_keys(&self) -> Result<Vec<StoredSigningKey>> {
        let mut stmt = self.conn.prepare(
            "SELECT kid, seq, wrapped, created_at, retired_at FROM signing_keys ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredSigningKey {
                kid: r.get(0)?,
                seq: to_u64(r.get(1)?),
                wrapped: r.get(2)?,
                created_at: to_u64(r.get(3)?),
                retired_at: r.get::<_, Option<i64>>(4)?.map(to_u64),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn retire_signing_key(&mut self, kid: &str, at: u64) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL",
            params![kid, to_i64(at)],
        )? == 1)
    }

    fn record_views(&mut self, events: &[ViewEvent]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO views (at, user, rendition, region) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for e in events {
                stmt.execute(params![
                    to_i64(e.at),
                    e.user,
                    e.rendition.as_str(),
                    e.region
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn views(&self, from: u64, to: u64) -> Result<Vec<ViewEvent>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, user, rendition, region FROM views WHERE at >= ?1 AND at < ?2 ORDER BY at, id",
        )?;
        let rows = stmt.query_map(params![to_i64(from), to_i64(to)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, user, rendition, region) = row?;
            out.push(ViewEvent {
                at: to_u64(at),
                user,
                rendition: RenditionId::parse(&rendition)
                    .map_err(|e| corrupt("view rendition", e))?,
                region,
            });
        }
        Ok(out)
    }

    fn daily_views(&self, from_day: i64, to_day: i64) -> Result<Vec<DailyViews>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at / 86400 AS day, rendition, region, COUNT(*) FROM views
             WHERE at >= ?1 AND at < ?2 GROUP BY day, rendition, region ORDER BY day, rendition, region",
        )?;
        let rows = stmt.query_map(
            params![
                from_day.saturating_mul(86_400),
                to_day.saturating_mul(86_400)
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (day, rendition, region, n) = row?;
            out.push(DailyViews {
                day,
                rendition: RenditionId::parse(&rendition)
                    .map_err(|e| corrupt("view rendition", e))?,
                region,
                views: n as f64,
            });
        }
        Ok(out)
    }

    fn record_impressions(&mut self, day: i64, region: &str, titles: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO impressions (day, region, title, count) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (day, region, title) DO UPDATE SET count = count + 1",
            )?;
            for t in titles {
                stmt.execute(params![day, region, t])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn impressions(&self, from_day: i64, to_day: i64) -> Result<Vec<Exposure>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT title, region, SUM(count) FROM impressions WHERE day >= ?1 AND day < ?2
             GROUP BY title, region ORDER BY title, region",
        )?;
        let rows = stmt.query_map(params![from_day, to_day], |r| {
            Ok(Exposure {
                title: r.get(0)?,
                region: r.get(1)?,
                impressions: r.get::<_, i64>(2)? as f64,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_recorded_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.db");
        let s = SqliteStore::open(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(s.schema_version().unwrap(), 1);
        assert_eq!(s.plans().unwrap().len(), 3, "seeded plans");
        drop(s);
        let s = SqliteStore::open(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(s.schema_version().unwrap(), 1);
        assert_eq!(s.plans().unwrap().len(), 3, "seed not applied twice");
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // A database from the future is refused.
        s.conn
            .execute("INSERT INTO schema_migrations (version) VALUES (99)", [])
            .unwrap();
        drop(s);
        assert!(matches!(
            SqliteStore::open(&path, Duration::from_secs(1)),
            Err(Error::SchemaTooNew {
                found: 99,
                known: 1
            })
        ));
    }

    #[test]
    fn not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = SqliteStore::open(&path, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, Error::Database(_)), "{err}");
        let err = SqliteStore::open(&dir.path().join("no/such/dir/x.db"), Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }

    #[test]
    fn daily_views_group_by_utc_day() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        let r = RenditionId::parse("t/720p").unwrap();
        let ev = |at| ViewEvent {
            at,
            user: "u".into(),
            rendition: r.clone(),
            region: "NL".into(),
        };
        s.record_views(&[
            ev(86_400 * 10),
            ev(86_400 * 10 + 5),
            ev(86_400 * 11 - 1),
            ev(86_400 * 11),
        ])
        .unwrap();
        let d = s.daily_views(10, 12).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].day, d[0].views), (10, 3.0));
        assert_eq!((d[1].day, d[1].views), (11, 1.0));
        assert_eq!(s.views(86_400 * 10, 86_400 * 11).unwrap().len(), 3);
        s.record_impressions(10, "NL", &["t".into(), "t".into()])
            .unwrap();
        assert_eq!(s.impressions(10, 11).unwrap()[0].impressions, 2.0);
    }
}

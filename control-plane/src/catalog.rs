//! The catalog: titles, their renditions and files (pure, no I/O).
//!
//! Two ways in:
//! - a **catalog file** (TOML, [`parse_catalog_toml`]); `control-plane/examples/catalog.toml`
//!   is a complete example:
//!   ```toml
//!   [[title]]
//!   id = "tears-of-steel"            # a key segment: [A-Za-z0-9._-]{1,128}
//!   name = "Tears of Steel"
//!   genres = ["sci-fi"]
//!   launch = "2026-11-20T00:00:00Z"  # RFC 3339, quoted; optional
//!   regions = ["NL", "US"]           # where it may be shown; empty = everywhere
//!
//!   [[title.rendition]]
//!   id = "1080p-h264"
//!   codec = "avc1.640028"
//!   width = 1920
//!   height = 1080                    # 0 (with width 0) for audio
//!   bitrate-kbps = 5800              # 0 = unknown
//!
//!   [[title.rendition.file]]         # in playback order
//!   name = "init.mp4"
//!   size = 1342
//!   sha256 = "e3b0…"                 # 64 lowercase hex digits
//!
//!   [[title.file]]                   # title-level files, e.g. the master playlist
//!   name = "master.m3u8"
//!   size = 512
//!   sha256 = "…"
//!   ```
//! - an **origin listing** (JSON array of `{"key", "size", "sha256"}`, what an S3 listing plus
//!   manifests yields, [`parse_listing_json`]) merged into the existing catalog by
//!   [`merge_listing`]: keys are grouped into titles and renditions; a new rendition's height
//!   and codec are inferred from its name (`1080p-h264`, `aac-128k`).
//!
//! [`validate`] reports **every** problem, each naming the title, rendition or file and the
//! field. What this module does not do: store anything (see [`crate::store`]).

use std::collections::{BTreeMap, HashSet};
use std::time::UNIX_EPOCH;

use oca_common::ObjectKey;
use oca_common::key::validate_segment;
use oca_common::wire::{ManifestFile, RenditionId, RenditionManifest, valid_sha256_hex};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{CatalogIssue, Error, Result};

/// Tallest picture accepted (16K).
pub const MAX_HEIGHT: u32 = 8640;

/// One file of a rendition (or a title-level file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileEntry {
    /// Last key segment.
    pub name: String,
    /// Size in bytes (at least 1).
    pub size: u64,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
}

/// A rendition: one encode of a title, the unit of placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Rendition {
    /// Rendition segment of the key (`1080p-h264`).
    pub id: String,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Width in pixels, 0 for audio.
    pub width: u32,
    /// Height in pixels, 0 for audio. Plans cap this.
    pub height: u32,
    /// Average bitrate in kbit/s; 0 = unknown.
    #[serde(default)]
    pub bitrate_kbps: u32,
    /// Files in playback order.
    #[serde(default, rename = "file")]
    pub files: Vec<FileEntry>,
}

/// A title with its renditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Title {
    /// Title segment of the key.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Genres, for recommendation.
    #[serde(default)]
    pub genres: Vec<String>,
    /// Launch time, Unix seconds (RFC 3339 in the file).
    #[serde(
        default,
        deserialize_with = "rfc3339_opt",
        serialize_with = "ser_opt_u64"
    )]
    pub launch: Option<u64>,
    /// Regions where it may be shown; empty = everywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Renditions.
    #[serde(default, rename = "rendition")]
    pub renditions: Vec<Rendition>,
    /// Title-level files (two-segment keys such as `{title}/master.m3u8`).
    #[serde(default, rename = "file")]
    pub files: Vec<FileEntry>,
}

impl Title {
    /// The rendition with this id.
    pub fn rendition(&self, id: &str) -> Option<&Rendition> {
        self.renditions.iter().find(|r| r.id == id)
    }

    /// True if the title may be shown in `region` (an empty list means everywhere).
    pub fn available_in(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }

    /// The rendition manifest the fill controller commits to appliances (DESIGN §2).
    pub fn manifest(&self, rendition: &str) -> Option<RenditionManifest> {
        let r = self.rendition(rendition)?;
        Some(RenditionManifest {
            title: self.id.clone(),
            rendition: r.id.clone(),
            files: r
                .files
                .iter()
                .map(|f| ManifestFile {
                    name: f.name.clone(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                })
                .collect(),
            total_files: u32::try_from(r.files.len()).unwrap_or(u32::MAX),
            published: self.launch,
        })
    }
}

fn ser_opt_u64<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(v),
        None => s.serialize_none(),
    }
}

fn rfc3339_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let s = String::deserialize(d)?;
    let t = humantime::parse_rfc3339_weak(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "launch {s:?} is not an RFC 3339 time such as \"2026-11-20T00:00:00Z\": {e}"
        ))
    })?;
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| serde::de::Error::custom("launch is before 1970"))?
        .as_secs();
    Ok(Some(secs))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    title: Vec<Title>,
}

/// Parses a catalog file (TOML, see the module docs) and validates it.
pub fn parse_catalog_toml(text: &str) -> Result<Vec<Title>> {
    let file: CatalogFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
        let msg = e.message().trim_end().to_owned();
        Error::CatalogSyntax(match line {
            Some(line) => format!("line {line}: {msg}"),
            None => msg,
        })
    })?;
    validate(&file.title).map_err(Error::Catalog)?;
    Ok(file.title)
}

fn region_ok(r: &str) -> bool {
    (1..=32).contains(&r.len())
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_files(files: &[FileEntry], path: &str, need_one: bool, issues: &mut Vec<CatalogIssue>) {
    if need_one && files.is_empty() {
        issues.push(CatalogIssue {
            path: path.to_owned(),
            field: "file",
            message: "a rendition needs at least one file".into(),
        });
    }
    let mut seen = HashSet::new();
    for f in files {
        let fpath = format!("{path} file {:?}", f.name);
        if let Err(e) = validate_segment(&f.name) {
            issues.push(CatalogIssue {
                path: fpath.clone(),
                field: "name",
                message: e.to_string(),
            });
        }
        if !seen.insert(f.name.as_str()) {
            issues.push(CatalogIssue {
                path: fpath.clone(),
                field: "name",
                message: "duplicate file name".into(),
            });
        }
        if f.size == 0 {
            issues.push(CatalogIssue {
                path: fpath.clone(),
                field: "size",
                message: "must be at least 1 byte".into(),
            });
        }
        if !valid_sha256_hex(&f.sha256) {
            issues.push(CatalogIssue {
                path: fpath,
                field: "sha256",
                message: "must be 64 lowercase hex digits".into(),
            });
        }
    }
}

fn issue(issues: &mut Vec<CatalogIssue>, path: &str, field: &'static str, message: String) {
    issues.push(CatalogIssue {
        path: path.to_owned(),
        field,
        message,
    });
}

/// Validates titles; returns every issue found.
pub fn validate(titles: &[Title]) -> Result<(), Vec<CatalogIssue>> {
    let mut issues = Vec::new();
    let mut ids = HashSet::new();
    for (i, t) in titles.iter().enumerate() {
        let tpath = format!("title[{i}] {:?}", t.id);
        if let Err(e) = validate_segment(&t.id) {
            issue(&mut issues, &tpath, "id", e.to_string());
        }
        if !ids.insert(t.id.as_str()) {
            issue(&mut issues, &tpath, "id", "duplicate title id".into());
        }
        if t.name.trim().is_empty() {
            issue(&mut issues, &tpath, "name", "must not be empty".into());
        }
        for g in &t.genres {
            if g.trim().is_empty() || g.len() > 64 {
                issue(
                    &mut issues,
                    &tpath,
                    "genres",
                    format!("genre {g:?} must be 1-64 characters"),
                );
            }
        }
        for r in &t.regions {
            if !region_ok(r) {
                issue(
                    &mut issues,
                    &tpath,
                    "regions",
                    format!("region {r:?} must be 1-32 characters of [A-Za-z0-9_-]"),
                );
            }
        }
        let mut rids = HashSet::new();
        for r in &t.renditions {
            let rpath = format!("title {:?} rendition {:?}", t.id, r.id);
            if let Err(e) = validate_segment(&r.id) {
                issue(&mut issues, &rpath, "id", e.to_string());
            }
            if !rids.insert(r.id.as_str()) {
                issue(
                    &mut issues,
                    &rpath,
                    "id",
                    "duplicate rendition id in this title".into(),
                );
            }
            if r.codec.trim().is_empty() {
                issue(&mut issues, &rpath, "codec", "must not be empty".into());
            }
            if r.height > MAX_HEIGHT {
                issue(
                    &mut issues,
                    &rpath,
                    "height",
                    format!("must be at most {MAX_HEIGHT}"),
                );
            }
            if (r.width == 0) != (r.height == 0) {
                issue(
                    &mut issues,
                    &rpath,
                    "width",
                    "width and height must both be 0 (audio) or both positive".into(),
                );
            }
            check_files(&r.files, &rpath, true, &mut issues);
        }
        check_files(&t.files, &format!("title {:?}", t.id), false, &mut issues);
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

/// One object of an origin listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingEntry {
    /// Object key (`{title}/{rendition}/{file}` or `{title}/{file}`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// Parses an origin listing: a JSON array of [`ListingEntry`].
pub fn parse_listing_json(text: &str) -> Result<Vec<ListingEntry>> {
    serde_json::from_str(text).map_err(|e| {
        Error::CatalogSyntax(format!(
            "listing line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}

/// What a rendition's name says about it: `(codec, width, height)`, or `None` when the name
/// does not say its height and is not audio. `1080p-h264` → `("avc1", 1920, 1080)`,
/// `aac-128k` → `("mp4a.40.2", 0, 0)`.
pub fn infer_rendition(name: &str) -> Option<(String, u32, u32)> {
    let lower = name.to_ascii_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let has = |t: &str| tokens.contains(&t);
    let codec = if has("hevc") || has("h265") || has("hvc1") {
        "hvc1"
    } else if has("av1") || has("av01") {
        "av01"
    } else if has("vp9") || has("vp09") {
        "vp09"
    } else if has("aac") || has("audio") || has("mp4a") {
        return Some(("mp4a.40.2".into(), 0, 0));
    } else {
        "avc1"
    };
    let height = tokens.iter().find_map(|t| {
        let digits = t.strip_suffix('p')?;
        let h: u32 = digits.parse().ok()?;
        (144..=MAX_HEIGHT).contains(&h).then_some(h)
    })?;
    // 16:9, rounded to an even width.
    let width = (height * 16 / 9 + 1) & !1;
    Some((codec.into(), width, height))
}

/// Files in playback order: `init*` first, then by name (segment numbers are zero-padded).
fn playback_order(files: &mut [FileEntry]) {
    files.sort_by(|a, b| {
        (!a.name.starts_with("init"), &a.name).cmp(&(!b.name.starts_with("init"), &b.name))
    });
}

/// Merges an origin listing into the `existing` catalog and returns the titles that change
/// (to be stored). A listed rendition's files replace the stored ones; an existing rendition
/// keeps its metadata; a new one takes what [`infer_rendition`] reads from its name, or is an
/// issue when its name says nothing. New titles take their id as name.
pub fn merge_listing(
    existing: &[Title],
    entries: &[ListingEntry],
) -> Result<Vec<Title>, Vec<CatalogIssue>> {
    let mut issues = Vec::new();
    // title -> (title-level files, rendition -> files)
    type Group = (Vec<FileEntry>, BTreeMap<String, Vec<FileEntry>>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut seen_keys = HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let path = format!("listing[{i}] {:?}", e.key);
        let key = match ObjectKey::parse(&e.key) {
            Ok(k) => k,
            Err(err) => {
                issues.push(CatalogIssue {
                    path,
                    field: "key",
                    message: err.to_string(),
                });
                continue;
            }
        };
        if !seen_keys.insert(e.key.as_str()) {
            issues.push(CatalogIssue {
                path: path.clone(),
                field: "key",
                message: "listed twice".into(),
            });
        }
        if !valid_sha256_hex(&e.sha256) {
            issues.push(CatalogIssue {
                path: path.clone(),
                field: "sha256",
                message: "must be 64 lowercase hex digits".into(),
            });
        }
        if e.size == 0 {
            issues.push(CatalogIssue {
                path: path.clone(),
                field: "size",
                message: "must be at least 1 byte".into(),
            });
        }
        let file = FileEntry {
            name: key.file_name().to_owned(),
            size: e.size,
            sha256: e.sha256.clone(),
        };
        let g = groups.entry(key.title().to_owned()).or_default();
        match key.rendition() {
            None => g.0.push(file),
            Some(r) => g.1.entry(r.to_owned()).or_default().push(file),
        }
    }
    let mut out = Vec::new();
    for (tid, (mut tfiles, renditions)) in groups {
        let mut title = existing
            .iter()
            .find(|t| t.id == tid)
            .cloned()
            .unwrap_or_else(|| Title {
                id: tid.clone(),
                name: tid.clone(),
                genres: Vec::new(),
                launch: None,
                regions: Vec::new(),
                renditions: Vec::new(),
                files: Vec::new(),
            });
        if !tfiles.is_empty() {
            playback_order(&mut tfiles);
            title.files = tfiles;
        }
        for (rid, mut files) in renditions {
            playback_order(&mut files);
            if let Some(r) = title.renditions.iter_mut().find(|r| r.id == rid) {
                r.files = files;
                continue;
            }
            match infer_rendition(&rid) {
                Some((codec, width, height)) => title.renditions.push(Rendition {
                    id: rid,
                    codec,
                    width,
                    height,
                    bitrate_kbps: 0,
                    files,
                }),
                None => issues.push(CatalogIssue {
                    path: format!("title {tid:?} rendition {rid:?}"),
                    field: "height",
                    message: "new rendition whose name does not say its height (e.g. \
                              \"1080p-h264\"); add it to the catalog file first"
                        .into(),
                }),
            }
        }
        out.push(title);
    }
    if let Err(more) = validate(&out) {
        issues.extend(more);
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}

/// The rendition id of `rendition` in `title`, checked.
pub fn rendition_id(title: &Title, rendition: &Rendition) -> Result<RenditionId> {
    RenditionId::new(&title.id, &rendition.id).map_err(|e| {
        Error::Corrupt(format!(
            "rendition {:?}/{:?} is not a valid id: {e}",
            title.id, rendition.id
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn toml_title(extra: &str) -> String {
        format!(
            "[[title]]\nid = \"t1\"\nname = \"T\"\n{extra}\n[[title.rendition]]\nid = \"720p\"\n\
             codec = \"avc1\"\nwidth = 1280\nheight = 720\n[[title.rendition.file]]\n\
             name = \"init.mp4\"\nsize = 10\nsha256 = \"{H}\"\n"
        )
    }

    #[test]
    fn parses_a_minimal_catalog() {
        let titles = parse_catalog_toml(&toml_title("launch = \"2026-11-20T00:00:00Z\"")).unwrap();
        assert_eq!(titles.len(), 1);
        assert_eq!(titles[0].launch, Some(1_795_132_800));
        assert_eq!(titles[0].renditions[0].height, 720);
        let m = titles[0].manifest("720p").unwrap();
        assert!(m.validate().is_ok());
        assert_eq!(m.total_files, 1);
    }

    #[test]
    fn errors_name_title_rendition_file_and_field() {
        let bad = toml_title("").replace(H, "XYZ");
        let Err(Error::Catalog(issues)) = parse_catalog_toml(&bad) else {
            panic!("expected catalog issues");
        };
        assert_eq!(issues.len(), 1);
        let msg = issues[0].to_string();
        assert!(msg.contains("\"t1\""), "{msg}");
        assert!(msg.contains("\"720p\""), "{msg}");
        assert!(msg.contains("\"init.mp4\""), "{msg}");
        assert!(msg.contains("sha256"), "{msg}");

        let dup = format!("{}{}", toml_title(""), toml_title(""));
        let Err(Error::Catalog(issues)) = parse_catalog_toml(&dup) else {
            panic!("expected duplicate id");
        };
        assert!(
            issues
                .iter()
                .any(|i| i.field == "id" && i.message.contains("duplicate"))
        );
    }

    #[test]
    fn syntax_errors_give_a_line() {
        let err =
            parse_catalog_toml("[[title]]\nid = \"t\"\nname = \"x\"\nbogus = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 4") && msg.contains("bogus"), "{msg}");
        let err = parse_catalog_toml(&toml_title("launch = \"yesterday\"")).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        assert!(parse_catalog_toml("[[title]\n").is_err());
    }

    #[test]
    fn many_issues_at_once() {
        let titles = vec![Title {
            id: "bad/id".into(),
            name: " ".into(),
            genres: vec![],
            launch: None,
            regions: vec!["N L".into()],
            renditions: vec![Rendition {
                id: "r".into(),
                codec: "".into(),
                width: 100,
                height: 0,
                bitrate_kbps: 0,
                files: vec![],
            }],
            files: vec![],
        }];
        let issues = validate(&titles).unwrap_err();
        let fields: Vec<&str> = issues.iter().map(|i| i.field).collect();
        for f in ["id", "name", "regions", "codec", "width", "file"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn infers_renditions_from_names() {
        assert_eq!(
            infer_rendition("1080p-h264"),
            Some(("avc1".into(), 1920, 1080))
        );
        assert_eq!(
            infer_rendition("2160p_hevc"),
            Some(("hvc1".into(), 3840, 2160))
        );
        assert_eq!(
            infer_rendition("720p-av1"),
            Some(("av01".into(), 1280, 720))
        );
        assert_eq!(
            infer_rendition("aac-128k"),
            Some(("mp4a.40.2".into(), 0, 0))
        );
        assert_eq!(infer_rendition("high"), None);
        assert_eq!(infer_rendition("99999999999p"), None);
    }

    #[test]
    fn listing_groups_keys_and_keeps_existing_metadata() {
        let e = |key: &str| ListingEntry {
            key: key.into(),
            size: 5,
            sha256: H.into(),
        };
        let existing = parse_catalog_toml(&toml_title("")).unwrap();
        let entries = vec![
            e("t1/720p/seg-00002.m4s"),
            e("t1/720p/seg-00001.m4s"),
            e("t1/720p/init.mp4"),
            e("t2/master.m3u8"),
            e("t2/1080p-h264/seg-00001.m4s"),
        ];
        let out = merge_listing(&existing, &entries).unwrap();
        assert_eq!(out.len(), 2);
        let t1 = &out[0];
        assert_eq!(t1.name, "T", "existing metadata kept");
        let names: Vec<&str> = t1.renditions[0]
            .files
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["init.mp4", "seg-00001.m4s", "seg-00002.m4s"]);
        let t2 = &out[1];
        assert_eq!(t2.files[0].name, "master.m3u8");
        assert_eq!(t2.renditions[0].height, 1080);

        let bad = vec![
            e("no-slash"),
            ListingEntry {
                key: "t3/720p/a".into(),
                size: 0,
                sha256: "nope".into(),
            },
            e("t4/mystery/a"),
            e("t2/master.m3u8"),
            e("t2/master.m3u8"),
        ];
        let issues = merge_listing(&existing, &bad).unwrap_err();
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("listing[0]") && t.contains("key")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("listing[1]") && t.contains("sha256"))
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("listing[1]") && t.contains("size"))
        );
        assert!(
            text.iter()
                .any(|t| t.contains("\"mystery\"") && t.contains("height"))
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("listing[4]") && t.contains("twice"))
        );
        assert!(parse_listing_json("[{\"key\": 1}]").is_err());
    }
}

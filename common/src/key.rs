//! Object keys (DESIGN §2).
//!
//! A key is `{title}/{rendition}/{file}` (three segments) or `{title}/{file}` (two segments, a
//! title-level file such as a master playlist). Every segment matches `[A-Za-z0-9._-]{1,128}`
//! and is neither `.` nor `..`; the whole key is at most [`MAX_KEY_LEN`] bytes. Anything else is
//! rejected, so a valid key is always safe to use as a relative file path and as a URL path
//! without escaping.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Maximum length of a whole key, in bytes.
pub const MAX_KEY_LEN: usize = 512;
/// Maximum length of one segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 128;
/// Fewest segments in a key.
pub const MIN_SEGMENTS: usize = 2;
/// Most segments in a key.
pub const MAX_SEGMENTS: usize = 3;

/// Why a string is not a valid object key (or key segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyError {
    /// The key is the empty string.
    #[error("object key is empty")]
    Empty,
    /// The key is longer than 512 bytes.
    #[error("object key is longer than 512 bytes")]
    TooLong,
    /// The key does not have 2 or 3 segments.
    #[error("object key must have 2 or 3 '/'-separated segments")]
    SegmentCount,
    /// A segment is empty (leading, trailing or doubled '/').
    #[error("object key has an empty segment (leading, trailing or double '/')")]
    EmptySegment,
    /// A segment is longer than 128 bytes.
    #[error("object key segment is longer than 128 bytes")]
    SegmentTooLong,
    /// A segment contains a character outside `[A-Za-z0-9._-]`.
    #[error("object key contains a character outside [A-Za-z0-9._-]")]
    BadChar,
    /// A segment is `.` or `..`.
    #[error("object key segment is '.' or '..'")]
    DotSegment,
}

/// Checks one key segment: `[A-Za-z0-9._-]{1,128}`, not `.` or `..`.
///
/// Used for keys, rendition ids and manifest file names alike.
pub fn validate_segment(seg: &str) -> Result<(), KeyError> {
    if seg.is_empty() {
        return Err(KeyError::EmptySegment);
    }
    if !seg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(KeyError::BadChar);
    }
    if seg.len() > MAX_SEGMENT_LEN {
        return Err(KeyError::SegmentTooLong);
    }
    if seg == "." || seg == ".." {
        return Err(KeyError::DotSegment);
    }
    Ok(())
}

/// A validated object key, e.g. `tears-of-steel/1080p-h264/seg-00001.m4s`.
///
/// Serializes as its string form; deserializing validates it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `s` as an object key.
    ///
    /// Errors are reported in this order: empty, too long, bad segment count, then the first
    /// bad segment (empty, bad character, too long, dot segment).
    pub fn parse(s: &str) -> Result<ObjectKey, KeyError> {
        if s.is_empty() {
            return Err(KeyError::Empty);
        }
        if s.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong);
        }
        let count = s.split('/').count();
        if !(MIN_SEGMENTS..=MAX_SEGMENTS).contains(&count) {
            return Err(KeyError::SegmentCount);
        }
        for seg in s.split('/') {
            validate_segment(seg)?;
        }
        Ok(ObjectKey(s.to_owned()))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments, in order.
    pub fn segments(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Number of segments: 2 or 3.
    pub fn segment_count(&self) -> usize {
        self.segments().count()
    }

    /// The first segment.
    pub fn title(&self) -> &str {
        self.segments().next().unwrap_or_default()
    }

    /// The second segment of a three-segment key; `None` for a title-level file.
    pub fn rendition(&self) -> Option<&str> {
        let mut it = self.segments();
        let _title = it.next();
        let rendition = it.next();
        // Only a three-segment key has a rendition.
        it.next().and(rendition)
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The first `n` segments joined with `/`, plus a trailing `/` (the scope a signed URL
    /// token covers, DESIGN §3). `None` if `n` is 0 or more than the segment count.
    ///
    /// `scope(1)` of `t/r/f.m4s` is `t/`, `scope(3)` is `t/r/f.m4s/`.
    pub fn scope(&self, n: usize) -> Option<String> {
        if n == 0 || n > self.segment_count() {
            return None;
        }
        let mut out = String::with_capacity(self.0.len() + 1);
        for seg in self.segments().take(n) {
            out.push_str(seg);
            out.push('/');
        }
        Some(out)
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ObjectKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectKey::parse(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ObjectKey::parse(&s)?;
        Ok(ObjectKey(s))
    }
}

impl Serialize for ObjectKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ObjectKey::try_from(s).map_err(serde::de::Error::custom)
    }
}

/// The `Content-Type` for a key, from its file extension (ASCII case-insensitive).
///
/// | extension | type |
/// |---|---|
/// | `.m3u8` | `application/vnd.apple.mpegurl` |
/// | `.mpd` | `application/dash+xml` |
/// | `.m4s` | `video/iso.segment` |
/// | `.mp4`, `.m4v` | `video/mp4` |
/// | `.ts` | `video/mp2t` |
/// | `.m4a` | `audio/mp4` |
/// | `.aac` | `audio/aac` |
/// | `.vtt` | `text/vtt` |
/// | `.json` | `application/json` |
/// | anything else | `application/octet-stream` |
pub fn content_type_for(key: &ObjectKey) -> &'static str {
    const TABLE: &[(&str, &str)] = &[
        ("m3u8", "application/vnd.apple.mpegurl"),
        ("mpd", "application/dash+xml"),
        ("m4s", "video/iso.segment"),
        ("mp4", "video/mp4"),
        ("ts", "video/mp2t"),
        ("m4a", "audio/mp4"),
        ("vtt", "text/vtt"),
        ("m4v", "video/mp4"),
        ("aac", "audio/aac"),
        ("json", "application/json"),
    ];
    let Some((_, ext)) = key.file_name().rsplit_once('.') else {
        return "application/octet-stream";
    };
    TABLE
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or("application/octet-stream", |(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let seg128 = "a".repeat(128);
        let seg129 = "a".repeat(129);
        let ok_long = format!("{seg128}/{seg128}/{seg128}"); // 386 bytes
        let too_long = format!("t/{}", "a".repeat(511)); // 513 bytes
        let long_seg = format!("t/{seg129}");
        let ok_seg = format!("t/{seg128}");
        let cases: Vec<(&str, Result<(), KeyError>)> = vec![
            ("title/master.m3u8", Ok(())),
            ("title/1080p/seg-00001.m4s", Ok(())),
            ("A.b_c-9/x", Ok(())),
            ("t/.hidden", Ok(())),
            ("t/...", Ok(())),
            (&ok_long, Ok(())),
            (&ok_seg, Ok(())),
            ("", Err(KeyError::Empty)),
            ("title", Err(KeyError::SegmentCount)),
            ("a/b/c/d", Err(KeyError::SegmentCount)),
            ("/a/b", Err(KeyError::EmptySegment)),
            ("a/b/", Err(KeyError::EmptySegment)),
            ("a//b", Err(KeyError::EmptySegment)),
            ("/", Err(KeyError::EmptySegment)),
            ("//", Err(KeyError::EmptySegment)),
            ("a/./b", Err(KeyError::DotSegment)),
            ("../a/b", Err(KeyError::DotSegment)),
            ("a/..", Err(KeyError::DotSegment)),
            ("a/%2e%2e/b", Err(KeyError::BadChar)),
            ("a/b\0/c", Err(KeyError::BadChar)),
            ("a/b c", Err(KeyError::BadChar)),
            ("a\\b/c", Err(KeyError::BadChar)),
            ("a/b?c", Err(KeyError::BadChar)),
            ("t/caf\u{e9}.mp4", Err(KeyError::BadChar)),
            ("t/\u{1F600}", Err(KeyError::BadChar)),
            ("t/\u{FF0E}\u{FF0E}", Err(KeyError::BadChar)),
            (&long_seg, Err(KeyError::SegmentTooLong)),
            (&too_long, Err(KeyError::TooLong)),
        ];
        for (input, want) in cases {
            let got = ObjectKey::parse(input).map(|k| {
                assert_eq!(k.as_str(), input);
            });
            assert_eq!(got, want, "input {input:?}");
        }
        assert_eq!(too_long.len(), 513);
        // Three maximal segments (386 bytes) are the longest possible valid key, so the
        // 512-byte cap only matters as a cheap early rejection of huge inputs.
        assert_eq!(ok_long.len(), 386);
        assert_eq!(ObjectKey::parse(&"a/".repeat(5000)), Err(KeyError::TooLong));
    }

    #[test]
    fn accessors() {
        let k = ObjectKey::parse("movie/720p/seg-1.m4s").unwrap();
        assert_eq!(k.segment_count(), 3);
        assert_eq!(k.title(), "movie");
        assert_eq!(k.rendition(), Some("720p"));
        assert_eq!(k.file_name(), "seg-1.m4s");
        assert_eq!(
            k.segments().collect::<Vec<_>>(),
            ["movie", "720p", "seg-1.m4s"]
        );
        assert_eq!(k.scope(0), None);
        assert_eq!(k.scope(1).as_deref(), Some("movie/"));
        assert_eq!(k.scope(2).as_deref(), Some("movie/720p/"));
        assert_eq!(k.scope(3).as_deref(), Some("movie/720p/seg-1.m4s/"));
        assert_eq!(k.scope(4), None);
        assert_eq!(k.to_string(), "movie/720p/seg-1.m4s");

        let m = ObjectKey::parse("movie/master.m3u8").unwrap();
        assert_eq!(m.segment_count(), 2);
        assert_eq!(m.title(), "movie");
        assert_eq!(m.rendition(), None);
        assert_eq!(m.file_name(), "master.m3u8");
        assert_eq!(m.scope(2).as_deref(), Some("movie/master.m3u8/"));
        assert_eq!(m.scope(3), None);
    }

    #[test]
    fn serde_validates() {
        let k: ObjectKey = serde_json::from_str("\"t/r/f.ts\"").unwrap();
        assert_eq!(k.as_str(), "t/r/f.ts");
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"t/r/f.ts\"");
        assert!(serde_json::from_str::<ObjectKey>("\"t/../f\"").is_err());
        assert!(serde_json::from_str::<ObjectKey>("\"t\"").is_err());
        assert!(serde_json::from_str::<ObjectKey>("7").is_err());
    }

    #[test]
    fn content_types() {
        let ct = |k: &str| content_type_for(&ObjectKey::parse(k).unwrap());
        assert_eq!(ct("t/master.m3u8"), "application/vnd.apple.mpegurl");
        assert_eq!(ct("t/manifest.mpd"), "application/dash+xml");
        assert_eq!(ct("t/r/1.m4s"), "video/iso.segment");
        assert_eq!(ct("t/r/init.mp4"), "video/mp4");
        assert_eq!(ct("t/r/1.ts"), "video/mp2t");
        assert_eq!(ct("t/r/a.m4a"), "audio/mp4");
        assert_eq!(ct("t/r/s.vtt"), "text/vtt");
        assert_eq!(ct("t/r/v.M4V"), "video/mp4");
        assert_eq!(ct("t/r/a.aac"), "audio/aac");
        assert_eq!(ct("t/info.json"), "application/json");
        assert_eq!(ct("t/r/noext"), "application/octet-stream");
        assert_eq!(ct("t/r/x.bin"), "application/octet-stream");
        assert_eq!(ct("t/r/.m3u8"), "application/vnd.apple.mpegurl");
    }
}

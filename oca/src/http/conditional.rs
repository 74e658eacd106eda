//! Conditional requests, RFC 9110 §13. Pure: request validators and the object's validators
//! in, an outcome out. Objects are immutable, so the ETag is strong (DESIGN §2).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The validators a request carries (raw header values).
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
}

/// What the preconditions say, evaluated in the order of RFC 9110 §13.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Carry on with the request.
    Proceed,
    /// 304 Not Modified (GET/HEAD only).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluate preconditions for a GET or HEAD of an object with `etag` (quoted, strong) and
/// `last_modified`.
pub fn evaluate(c: &Conditions<'_>, etag: &str, last_modified: SystemTime) -> Precondition {
    // Step 1: If-Match (strong comparison).
    if let Some(v) = c.if_match {
        if !etag_list_matches(v, etag, true) {
            return Precondition::Failed;
        }
    } else if let Some(v) = c.if_unmodified_since {
        // Step 2: If-Unmodified-Since, only without If-Match; an invalid date is ignored.
        if let Some(date) = parse_date(v)
            && secs(last_modified) > secs(date)
        {
            return Precondition::Failed;
        }
    }
    // Step 3: If-None-Match (weak comparison); for GET/HEAD a match is 304.
    if let Some(v) = c.if_none_match {
        if etag_list_matches(v, etag, false) {
            return Precondition::NotModified;
        }
    } else if let Some(v) = c.if_modified_since {
        // Step 4: If-Modified-Since, only without If-None-Match.
        if let Some(date) = parse_date(v)
            && secs(last_modified) <= secs(date)
        {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// RFC 9110 §13.1.5: should a Range be honoured given `If-Range`? `true` when there is no
/// If-Range, or it matches the current representation (strong ETag comparison, or a date
/// equal to Last-Modified).
pub fn if_range_allows(if_range: Option<&[u8]>, etag: &str, last_modified: SystemTime) -> bool {
    let Some(v) = if_range else {
        return true;
    };
    let Ok(text) = std::str::from_utf8(v) else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        // A weak entity tag never matches in If-Range (strong comparison).
        return !text.starts_with("W/") && text == etag;
    }
    match parse_date(v) {
        Some(date) => secs(date) == secs(last_modified),
        None => false,
    }
}

/// Format an HTTP-date (IMF-fixdate).
pub fn format_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

fn parse_date(v: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(v).ok()?;
    httpdate::parse_http_date(s.trim()).ok()
}

/// HTTP dates have one-second resolution; compare at that resolution.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Does an `If-Match`/`If-None-Match` list match `etag`? `*` matches any existing object.
fn etag_list_matches(v: &[u8], etag: &str, strong: bool) -> bool {
    let Ok(text) = std::str::from_utf8(v) else {
        return false;
    };
    let text = text.trim();
    if text == "*" {
        return true;
    }
    text.split(',').map(str::trim).any(|tag| {
        if let Some(weak) = tag.strip_prefix("W/") {
            !strong && weak == etag
        } else {
            tag == etag
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"0123456789abcdef0123456789abcdef\"";

    fn lm() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn eval(f: impl FnOnce(&mut Conditions<'static>)) -> Precondition {
        let mut c = Conditions::default();
        f(&mut c);
        evaluate(&c, ETAG, lm())
    }

    #[test]
    fn none_match() {
        let tag: &'static [u8] = b"\"0123456789abcdef0123456789abcdef\"";
        assert_eq!(
            eval(|c| c.if_none_match = Some(tag)),
            Precondition::NotModified
        );
        assert_eq!(
            eval(|c| c.if_none_match = Some(b"\"x\", W/\"0123456789abcdef0123456789abcdef\"")),
            Precondition::NotModified
        );
        assert_eq!(
            eval(|c| c.if_none_match = Some(b"*")),
            Precondition::NotModified
        );
        assert_eq!(
            eval(|c| c.if_none_match = Some(b"\"other\"")),
            Precondition::Proceed
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            eval(|c| {
                c.if_none_match = Some(b"\"other\"");
                c.if_modified_since = Some(b"Tue, 14 Nov 2023 22:13:20 GMT");
            }),
            Precondition::Proceed
        );
    }

    #[test]
    fn modified_since() {
        // 1_700_000_000 = Tue, 14 Nov 2023 22:13:20 GMT
        assert_eq!(
            eval(|c| c.if_modified_since = Some(b"Tue, 14 Nov 2023 22:13:20 GMT")),
            Precondition::NotModified
        );
        assert_eq!(
            eval(|c| c.if_modified_since = Some(b"Tue, 14 Nov 2023 22:13:19 GMT")),
            Precondition::Proceed
        );
        assert_eq!(
            eval(|c| c.if_modified_since = Some(b"not a date")),
            Precondition::Proceed
        );
    }

    #[test]
    fn match_and_unmodified() {
        assert_eq!(
            eval(|c| c.if_match = Some(b"\"other\"")),
            Precondition::Failed
        );
        assert_eq!(
            eval(|c| c.if_match = Some(b"W/\"0123456789abcdef0123456789abcdef\"")),
            Precondition::Failed
        );
        assert_eq!(eval(|c| c.if_match = Some(b"*")), Precondition::Proceed);
        assert_eq!(
            eval(|c| c.if_unmodified_since = Some(b"Tue, 14 Nov 2023 22:13:19 GMT")),
            Precondition::Failed
        );
        assert_eq!(
            eval(|c| c.if_unmodified_since = Some(b"Tue, 14 Nov 2023 22:13:20 GMT")),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(None, ETAG, lm()));
        assert!(if_range_allows(Some(ETAG.as_bytes()), ETAG, lm()));
        assert!(!if_range_allows(Some(b"\"other\""), ETAG, lm()));
        assert!(!if_range_allows(
            Some(b"W/\"0123456789abcdef0123456789abcdef\""),
            ETAG,
            lm()
        ));
        assert!(if_range_allows(
            Some(b"Tue, 14 Nov 2023 22:13:20 GMT"),
            ETAG,
            lm()
        ));
        assert!(!if_range_allows(
            Some(b"Tue, 14 Nov 2023 22:13:21 GMT"),
            ETAG,
            lm()
        ));
        assert!(!if_range_allows(Some(b"garbage"), ETAG, lm()));
        assert_eq!(format_date(lm()), "Tue, 14 Nov 2023 22:13:20 GMT");
    }
}

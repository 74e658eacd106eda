//! Byte ranges, RFC 9110 §14. Pure: a header value and an object length in, a decision out.
//!
//! oca answers one range with 206, several ranges with the whole object (200, which §14.2
//! permits: "a server MAY ignore the Range header field"), and a range that cannot be satisfied
//! with 416 and `Content-Range: bytes */len`. A `Range` header that does not parse is ignored
//! (§14.2: a server MAY ignore a Range it does not understand), so the client gets the whole
//! object rather than an error it cannot act on.

/// What a request's `Range` header asks for, resolved against an object's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// Serve the whole object (no Range header, an ignored one, or several ranges).
    Full,
    /// Serve `len` bytes starting at `start` with 206.
    Partial { start: u64, len: u64 },
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Resolve a `Range` header value against an object of `total` bytes (RFC 9110 §14.1.2).
pub fn decide(header: Option<&[u8]>, total: u64) -> RangeDecision {
    let Some(raw) = header else {
        return RangeDecision::Full;
    };
    let Ok(text) = std::str::from_utf8(raw) else {
        return RangeDecision::Full;
    };
    let text = text.trim();
    // range-unit is case-insensitive (§14.1).
    let Some(unit_end) = text.find('=') else {
        return RangeDecision::Full;
    };
    if !text[..unit_end].trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    let set = &text[unit_end + 1..];
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let Some(first) = specs.next() else {
        return RangeDecision::Full;
    };
    if specs.next().is_some() {
        // Several ranges: answered with the whole object (DESIGN §4), which avoids
        // multipart/byteranges and the amplification attacks it invites.
        return RangeDecision::Full;
    }
    match parse_spec(first) {
        Some(spec) => resolve(spec, total),
        None => RangeDecision::Full,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `a-b` or `a-` (last = None).
    FromTo { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

fn parse_spec(s: &str) -> Option<Spec> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return Some(Spec::Suffix(parse_pos(b)?));
    }
    let first = parse_pos(a)?;
    let last = if b.is_empty() {
        None
    } else {
        Some(parse_pos(b)?)
    };
    if let Some(last) = last
        && last < first
    {
        // §14.1.1: invalid range-spec; the header is ignored.
        return None;
    }
    Some(Spec::FromTo { first, last })
}

/// 1*DIGIT; a value too large for u64 saturates (it is beyond any object anyway).
fn parse_pos(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn resolve(spec: Spec, total: u64) -> RangeDecision {
    match spec {
        Spec::FromTo { first, last } => {
            if first >= total {
                return RangeDecision::Unsatisfiable;
            }
            let last = last.map_or(total - 1, |l| l.min(total - 1));
            RangeDecision::Partial {
                start: first,
                len: last - first + 1,
            }
        }
        Spec::Suffix(n) => {
            if n == 0 || total == 0 {
                return RangeDecision::Unsatisfiable;
            }
            let n = n.min(total);
            RangeDecision::Partial {
                start: total - n,
                len: n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::{Full, Partial, Unsatisfiable};
    use super::*;

    fn d(h: &str, total: u64) -> RangeDecision {
        decide(Some(h.as_bytes()), total)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(d("bytes=0-0", 10), Partial { start: 0, len: 1 });
        assert_eq!(d("bytes=0-9", 10), Partial { start: 0, len: 10 });
        assert_eq!(d("bytes=2-5", 10), Partial { start: 2, len: 4 });
        assert_eq!(d("bytes=2-500", 10), Partial { start: 2, len: 8 });
        assert_eq!(d("bytes=7-", 10), Partial { start: 7, len: 3 });
        assert_eq!(d("bytes=-3", 10), Partial { start: 7, len: 3 });
        assert_eq!(d("bytes=-30", 10), Partial { start: 0, len: 10 });
        assert_eq!(d("BYTES = 1-2 ", 10), Partial { start: 1, len: 2 });
        assert_eq!(
            d("bytes=0-99999999999999999999999", 10),
            Partial { start: 0, len: 10 }
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(d("bytes=10-", 10), Unsatisfiable);
        assert_eq!(d("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(d("bytes=-0", 10), Unsatisfiable);
        assert_eq!(d("bytes=0-", 0), Unsatisfiable);
        assert_eq!(d("bytes=-5", 0), Unsatisfiable);
        assert_eq!(d("bytes=99999999999999999999999-", 10), Unsatisfiable);
    }

    #[test]
    fn ignored_and_multi() {
        assert_eq!(decide(None, 10), Full);
        for h in [
            "bytes=5-2",
            "bytes=abc",
            "bytes=",
            "bytes=-",
            "bytes=1-2-3",
            "items=0-1",
            "bytes 0-1",
            "bytes=+1-2",
            "bytes=0x1-2",
            "",
        ] {
            assert_eq!(d(h, 10), Full, "{h:?}");
        }
        assert_eq!(d("bytes=0-1,3-4", 10), Full);
        assert_eq!(d("bytes=0-1, 20-30", 10), Full);
        assert_eq!(decide(Some(&[0xff, 0xfe]), 10), Full);
    }
}

//! Human byte sizes for configuration files.
//!
//! [`parse_bytes`] accepts a plain integer (`"512"`) or a number with a unit, with optional
//! space between: decimal `KB MB GB TB PB` (powers of 1000) and binary `KiB MiB GiB TiB PiB`
//! (powers of 1024), case-insensitive, the trailing `B` optional (`"16Ki"`, `"10m"`); `B`
//! alone means bytes. A fraction is allowed when the result is a whole number of bytes
//! (`"1.5GB"`, `"0.5KiB"`).
//!
//! Use [`bytes`] (or [`bytes_opt`]) with `#[serde(with = "oca_common::units::bytes")]` to
//! accept either an integer or such a string in a config file.

use std::fmt;

/// Why a byte size could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The input is empty or only whitespace.
    #[error("empty size")]
    Empty,
    /// The number part is missing or not a plain decimal number.
    #[error("invalid number in size {0:?}")]
    BadNumber(String),
    /// The unit is not one of B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB.
    #[error("unknown size unit {0:?} (expected B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB or PiB)")]
    UnknownUnit(String),
    /// The size does not fit in 64 bits.
    #[error("size {0:?} is too large")]
    Overflow(String),
    /// The size is not a whole number of bytes.
    #[error("size {0:?} is not a whole number of bytes")]
    Fractional(String),
}

/// Most fraction digits accepted (keeps the arithmetic exact in 128 bits).
const MAX_FRACTION_DIGITS: usize = 18;

fn unit_multiplier(unit: &str) -> Option<u64> {
    let u = unit.to_ascii_lowercase();
    let u = u.strip_suffix('b').unwrap_or(&u);
    Some(match u {
        "" => 1,
        "k" => 1000,
        "m" => 1000u64.pow(2),
        "g" => 1000u64.pow(3),
        "t" => 1000u64.pow(4),
        "p" => 1000u64.pow(5),
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        "pi" => 1 << 50,
        _ => return None,
    })
}

/// Parses a byte size: `"512"`, `"16KiB"`, `"64 GiB"`, `"1.5GB"`, `"10MB"`, `"1TiB"`.
pub fn parse_bytes(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(UnitError::Empty);
    }
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let unit = unit.trim_start();
    let bad_number = || UnitError::BadNumber(s.to_owned());
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int_part.is_empty()
        || frac_part.contains('.')
        || (num.contains('.') && frac_part.is_empty())
        || frac_part.len() > MAX_FRACTION_DIGITS
    {
        return Err(bad_number());
    }
    let mult = unit_multiplier(unit).ok_or_else(|| UnitError::UnknownUnit(unit.to_owned()))?;
    let overflow = || UnitError::Overflow(s.to_owned());
    // Leading zeros are harmless; strip them so long zero runs cannot overflow the parse.
    let int_digits = int_part.trim_start_matches('0');
    let int: u128 = if int_digits.is_empty() {
        0
    } else if int_digits.len() > 20 {
        return Err(overflow());
    } else {
        int_digits.parse().map_err(|_| bad_number())?
    };
    let mut total = int.checked_mul(u128::from(mult)).ok_or_else(overflow)?;
    if !frac_part.is_empty() {
        let frac: u128 = frac_part.parse().map_err(|_| bad_number())?;
        let denom = 10u128.pow(frac_part.len() as u32);
        let scaled = frac * u128::from(mult);
        if !scaled.is_multiple_of(denom) {
            return Err(UnitError::Fractional(s.to_owned()));
        }
        total = total.checked_add(scaled / denom).ok_or_else(overflow)?;
    }
    u64::try_from(total).map_err(|_| overflow())
}

/// Formats a byte size with the largest binary unit it reaches: `"512 B"`, `"2 MiB"`,
/// `"1.5 GiB"` (at most two decimals, trailing zeros dropped). Exact multiples print exactly,
/// so they parse back to the same number.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut idx = 0;
    while idx + 1 < UNITS.len() && n >= 1u64 << (10 * (idx + 2)) {
        idx += 1;
    }
    let mut unit = 1u128 << (10 * (idx + 1));
    let n = u128::from(n);
    // Hundredths of the unit, rounded half up.
    let mut hundredths = (n * 100 + unit / 2) / unit;
    if hundredths >= 1024 * 100 && idx + 1 < UNITS.len() {
        idx += 1;
        unit <<= 10;
        hundredths = (n * 100 + unit / 2) / unit;
    }
    let whole = hundredths / 100;
    let frac = hundredths % 100;
    let name = UNITS[idx];
    if n % unit == 0 {
        format!("{} {name}", n / unit)
    } else if frac == 0 {
        format!("{whole} {name}")
    } else if frac.is_multiple_of(10) {
        format!("{whole}.{} {name}", frac / 10)
    } else {
        format!("{whole}.{frac:02} {name}")
    }
}

/// Serde helpers for a `u64` byte count written as an integer or a size string:
/// `#[serde(with = "oca_common::units::bytes")]`.
///
/// Serializes as a string like `"64 GiB"` when that is exact, else as an integer.
pub mod bytes {
    use serde::{Deserializer, Serializer};

    /// Writes `"N Unit"` when exact, else the integer.
    pub fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        let s = super::format_bytes(*value);
        if super::parse_bytes(&s) == Ok(*value) {
            serializer.serialize_str(&s)
        } else {
            serializer.serialize_u64(*value)
        }
    }

    /// Reads a non-negative integer or a size string (see [`super::parse_bytes`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(super::BytesVisitor)
    }
}

/// Serde helpers for an optional byte count: `#[serde(default, with =
/// "oca_common::units::bytes_opt")]`. `None` serializes as nothing (`null` in JSON; use
/// `skip_serializing_if = "Option::is_none"` to omit it).
pub mod bytes_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the size like [`super::bytes::serialize`], or none.
    pub fn serialize<S: Serializer>(value: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::bytes::serialize(v, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an optional integer or size string.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::bytes")] u64);
        Ok(Option::<Wrap>::deserialize(deserializer)?.map(|w| w.0))
    }
}

struct BytesVisitor;

impl serde::de::Visitor<'_> for BytesVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte count: a non-negative integer or a string like \"64 GiB\"")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom("byte count must not be negative"))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        parse_bytes(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        const KI: u64 = 1024;
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("512", 512),
            ("  512  ", 512),
            ("512B", 512),
            ("512 b", 512),
            ("16KiB", 16 * KI),
            ("16 kib", 16 * KI),
            ("16Ki", 16 * KI),
            ("16KIB", 16 * KI),
            ("64 GiB", 64 * KI * KI * KI),
            ("1TiB", KI.pow(4)),
            ("2PiB", 2 * KI.pow(5)),
            ("1.5GB", 1_500_000_000),
            ("10MB", 10_000_000),
            ("10m", 10_000_000),
            ("1kb", 1000),
            ("3 TB", 3_000_000_000_000),
            ("1PB", 1_000_000_000_000_000),
            ("0.5KiB", 512),
            ("1.25 MiB", 1_310_720),
            ("007", 7),
            ("1.000", 1),
            ("18446744073709551615", u64::MAX),
        ];
        for &(input, want) in ok {
            assert_eq!(parse_bytes(input), Ok(want), "{input:?}");
        }
        let bad: &[(&str, UnitError)] = &[
            ("", UnitError::Empty),
            ("   ", UnitError::Empty),
            ("GiB", UnitError::BadNumber("GiB".into())),
            ("-1", UnitError::BadNumber("-1".into())),
            ("+1", UnitError::BadNumber("+1".into())),
            (".5KB", UnitError::BadNumber(".5KB".into())),
            ("5.KB", UnitError::BadNumber("5.KB".into())),
            ("1.2.3KB", UnitError::BadNumber("1.2.3KB".into())),
            ("1e3", UnitError::UnknownUnit("e3".into())),
            ("10 XB", UnitError::UnknownUnit("XB".into())),
            ("10 bytes", UnitError::UnknownUnit("bytes".into())),
            ("10 K iB", UnitError::UnknownUnit("K iB".into())),
            ("15EiB", UnitError::UnknownUnit("EiB".into())),
            ("10 KiBB", UnitError::UnknownUnit("KiBB".into())),
            ("1.5", UnitError::Fractional("1.5".into())),
            ("1.0001KB", UnitError::Fractional("1.0001KB".into())),
            (
                "18446744073709551616",
                UnitError::Overflow("18446744073709551616".into()),
            ),
            ("20000PiB", UnitError::Overflow("20000PiB".into())),
            (
                "99999999999999999999999999",
                UnitError::Overflow("99999999999999999999999999".into()),
            ),
        ];
        for (input, want) in bad {
            assert_eq!(parse_bytes(input).as_ref(), Err(want), "{input:?}");
        }
        // Very long inputs are refused without panicking.
        let long = format!("1.{}KB", "0".repeat(100));
        assert!(matches!(parse_bytes(&long), Err(UnitError::BadNumber(_))));
        assert_eq!(parse_bytes(&"0".repeat(1000)), Ok(0));
    }

    #[test]
    fn format_table() {
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (2 * 1024 * 1024, "2 MiB"),
            (1_500_000, "1.43 MiB"),
            (1_048_575, "1 MiB"),
            (64 << 30, "64 GiB"),
            (1 << 40, "1 TiB"),
            (3 << 50, "3 PiB"),
            (u64::MAX, "16 EiB"),
        ];
        for &(n, want) in cases {
            assert_eq!(format_bytes(n), want, "{n}");
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Cfg {
        #[serde(with = "bytes")]
        size: u64,
        #[serde(default, with = "bytes_opt", skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
    }

    #[test]
    fn serde_helpers() {
        let c: Cfg = toml::from_str("size = \"64 GiB\"\nlimit = 1000\n").unwrap();
        assert_eq!(
            c,
            Cfg {
                size: 64 << 30,
                limit: Some(1000)
            }
        );
        let c: Cfg = serde_json::from_str(r#"{"size": 4096}"#).unwrap();
        assert_eq!(
            c,
            Cfg {
                size: 4096,
                limit: None
            }
        );
        assert!(serde_json::from_str::<Cfg>(r#"{"size": -1}"#).is_err());
        assert!(serde_json::from_str::<Cfg>(r#"{"size": "lots"}"#).is_err());
        assert!(serde_json::from_str::<Cfg>(r#"{"size": 1.5}"#).is_err());
        let c = Cfg {
            size: 2 << 20,
            limit: Some(1_500_000),
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"size":"2 MiB","limit":1500000}"#);
        assert_eq!(serde_json::from_str::<Cfg>(&s).unwrap(), c);
        let t = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Cfg>(&t).unwrap(), c);
    }
}

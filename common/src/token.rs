//! Signed URL tokens (DESIGN §3).
//!
//! Players reach appliances through `https://{oca}/t/{token}/{key}` where
//! `token = v1.{exp}.{kid}.{n}.{cp}.{sig}`:
//! - `exp`: expiry in Unix seconds (decimal, at most 20 digits, no sign, no leading zero);
//! - `kid`: key id, `[a-z0-9]{1,16}`;
//! - `n`: how many leading key segments the token covers, one digit `1`–`9` (1 = the whole
//!   title, 2 = one rendition);
//! - `cp`: the client prefix the URL is bound to in token form (`203.0.113.0_24`,
//!   `2001.db8.._32`, see [`ClientPrefix::to_token_form`]) or `-` for none;
//! - `sig`: unpadded base64url of
//!   `HMAC-SHA256(secret[kid], "oca-v1\n{exp}\n{kid}\n{n}\n{cp}\n{scope}")`, where `scope` is
//!   [`ObjectKey::scope`]`(n)`: the first `n` key segments joined with `/`, plus a trailing `/`.
//!
//! An IPv6 `cp` contains dots, so a token is split as: `v1`, `exp`, `kid`, `n` from the left,
//! `sig` from the right (it never contains a dot), and `cp` is everything in between.
//!
//! [`verify`] checks, in this order: token syntax ([`TokenError::Malformed`], then
//! [`TokenError::Scope`]), known kid, expiry with skew, the signature in constant time, and the
//! client address against `cp`. Errors never carry secret material, so they are safe to log.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};

use crate::key::ObjectKey;

/// Longest accepted token, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;
/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest key id.
pub const MAX_KID_LEN: usize = 16;
/// The clock skew DESIGN §3 allows when checking expiry, in seconds.
pub const DEFAULT_SKEW_SECS: u64 = 30;

/// Length of the base64url (unpadded) encoding of a 32-byte HMAC-SHA256 tag.
const SIG_B64_LEN: usize = 43;
/// Length of an HMAC-SHA256 tag.
const SIG_LEN: usize = 32;
/// Longest token-form client prefix (`ffff.ffff.ffff.ffff.ffff.ffff.ffff.ffff_128`).
const MAX_PREFIX_TOKEN_LEN: usize = 43;

/// Standard base64 alphabet, padding optional: what key files may use.
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a token could not be made or was refused.
///
/// [`TokenError::reason`] gives a stable label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TokenError {
    /// The token is not `v1.{exp}.{kid}.{n}.{cp}.{sig}` with valid fields, or is too long.
    #[error("malformed token")]
    Malformed,
    /// The token's key id is not in the key set (or, when signing, differs from the key's).
    #[error("unknown signing key id")]
    UnknownKid,
    /// The token expired (beyond the allowed clock skew).
    #[error("token expired")]
    Expired,
    /// The signature does not match the token fields and the requested key's scope.
    #[error("bad token signature")]
    BadSignature,
    /// `n` is 0 or more than the number of segments in the requested key.
    #[error("token scope does not fit the object key")]
    Scope,
    /// The client address is outside the prefix the token is bound to.
    #[error("client address outside the token's client prefix")]
    ClientPrefix,
    /// A client prefix could not be parsed or is not canonical (bad address, length too large).
    #[error("invalid client prefix")]
    BadPrefix,
}

impl TokenError {
    /// Stable snake_case label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::Expired => "expired",
            TokenError::BadSignature => "bad_signature",
            TokenError::Scope => "scope",
            TokenError::ClientPrefix => "client_prefix",
            TokenError::BadPrefix => "bad_prefix",
        }
    }
}

/// Why a key set or key file was refused. Never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    /// The key file is not valid TOML, or has the wrong shape (message and line, without the
    /// offending text, since that may be a secret).
    #[error("key file: {0}")]
    Toml(String),
    /// A key id does not match `[a-z0-9]{1,16}`.
    #[error("key id {0:?} must match [a-z0-9]{{1,16}}")]
    BadKid(String),
    /// The secret of this kid is shorter than 16 bytes.
    #[error("secret of key {0:?} is shorter than 16 bytes")]
    ShortSecret(String),
    /// The secret of this kid is not valid standard base64.
    #[error("secret of key {0:?} is not valid base64")]
    BadBase64(String),
    /// A key table has a field other than `secret`.
    #[error("key {kid:?} has unknown field {field:?}")]
    UnknownField {
        /// The key id whose table has the field.
        kid: String,
        /// The unknown field's name.
        field: String,
    },
    /// A key table has no `secret`.
    #[error("key {0:?} has no secret")]
    MissingSecret(String),
    /// The same kid appears twice.
    #[error("key id {0:?} appears more than once")]
    Duplicate(String),
    /// There are no keys at all.
    #[error("no signing keys")]
    Empty,
}

/// One URL-signing key. `Debug` shows the kid only, never the secret.
#[derive(Clone)]
pub struct SigningKey {
    /// Key id, `[a-z0-9]{1,16}`.
    pub kid: String,
    /// HMAC secret, at least 16 bytes.
    pub secret: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[derive(Clone)]
struct Entry {
    key: SigningKey,
    /// The HMAC key prepared once, so verifying does not redo the key schedule.
    hmac: hmac::Key,
}

/// The set of valid signing keys, by kid. Several are valid at once while keys rotate.
/// `Debug` lists the kids only.
#[derive(Clone)]
pub struct KeySet {
    keys: BTreeMap<String, Entry>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// Builds a key set. Each kid must match `[a-z0-9]{1,16}` and appear once; each secret
    /// must be at least 16 bytes; the set must not be empty.
    pub fn new(keys: Vec<SigningKey>) -> Result<KeySet, KeyFileError> {
        if keys.is_empty() {
            return Err(KeyFileError::Empty);
        }
        let mut map = BTreeMap::new();
        for key in keys {
            if !valid_kid(&key.kid) {
                return Err(KeyFileError::BadKid(key.kid));
            }
            if key.secret.len() < MIN_SECRET_LEN {
                return Err(KeyFileError::ShortSecret(key.kid));
            }
            if map.contains_key(&key.kid) {
                return Err(KeyFileError::Duplicate(key.kid));
            }
            let hmac = hmac::Key::new(hmac::HMAC_SHA256, &key.secret);
            map.insert(key.kid.clone(), Entry { key, hmac });
        }
        Ok(KeySet { keys: map })
    }

    /// Parses a key file: one TOML table per kid, `secret` in standard base64 (padded or
    /// not), e.g.
    ///
    /// ```toml
    /// [k1]
    /// secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg="
    /// ```
    ///
    /// Any field other than `secret` is an error naming the kid and the field. Error messages
    /// never quote the file's text.
    pub fn from_toml(text: &str) -> Result<KeySet, KeyFileError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(text).lines().count().max(1));
            let msg = e.message().trim_end();
            KeyFileError::Toml(match line {
                Some(line) => format!("line {line}: {msg}"),
                None => msg.to_owned(),
            })
        })?;
        let mut keys = Vec::with_capacity(table.len());
        for (kid, value) in table {
            if !valid_kid(&kid) {
                return Err(KeyFileError::BadKid(kid));
            }
            let toml::Value::Table(fields) = value else {
                return Err(KeyFileError::Toml(format!(
                    "{kid:?} must be a table with a `secret`"
                )));
            };
            let mut secret = None;
            for (field, v) in fields {
                if field != "secret" {
                    return Err(KeyFileError::UnknownField { kid, field });
                }
                let toml::Value::String(s) = v else {
                    return Err(KeyFileError::Toml(format!(
                        "secret of key {kid:?} must be a string"
                    )));
                };
                secret = Some(s);
            }
            let Some(secret) = secret else {
                return Err(KeyFileError::MissingSecret(kid));
            };
            let Ok(secret) = STANDARD_ANY_PAD.decode(secret.trim()) else {
                return Err(KeyFileError::BadBase64(kid));
            };
            keys.push(SigningKey { kid, secret });
        }
        KeySet::new(keys)
    }

    /// The key with this kid.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.get(kid).map(|e| &e.key)
    }

    /// All kids, in ascending order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The key with the lexicographically greatest kid: the one to sign with by default.
    pub fn newest(&self) -> Option<&SigningKey> {
        self.keys.values().next_back().map(|e| &e.key)
    }

    /// Signs like [`sign`] with the key `params.kid` of this set, reusing its prepared HMAC
    /// key (no key schedule per token: for servers that sign on every request).
    ///
    /// Errors: as [`sign`]; [`TokenError::UnknownKid`] if the set has no such kid.
    pub fn sign(&self, params: &TokenParams, object: &ObjectKey) -> Result<String, TokenError> {
        let e = self.keys.get(&params.kid).ok_or(TokenError::UnknownKid)?;
        sign_prepared(&e.key.kid, &e.hmac, params, object)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if there are no keys (never the case for a set built by [`KeySet::new`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A client network prefix a token is bound to. Built through [`ClientPrefix::new`] the host
/// bits of `addr` are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientPrefix {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length: at most 32 for IPv4, 128 for IPv6.
    pub len: u8,
}

fn mask_v4(a: Ipv4Addr, len: u8) -> u32 {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(a) & mask
}

fn mask_v6(a: Ipv6Addr, len: u8) -> u128 {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(a) & mask
}

/// Writes an IPv6 address in RFC 5952 shape (lowercase hex, longest run of two or more zero
/// groups compressed) with `sep` between groups; never uses the dotted-quad IPv4 form.
fn write_v6(out: &mut String, a: Ipv6Addr, sep: char) {
    use fmt::Write as _;
    let segs = a.segments();
    let (mut best_start, mut best_len) = (0usize, 0usize);
    let mut i = 0;
    while i < segs.len() {
        if segs[i] == 0 {
            let start = i;
            while i < segs.len() && segs[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_start, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let join = |out: &mut String, groups: &[u16]| {
        for (j, g) in groups.iter().enumerate() {
            if j > 0 {
                out.push(sep);
            }
            let _ = write!(out, "{g:x}");
        }
    };
    if best_len >= 2 {
        join(out, &segs[..best_start]);
        out.push(sep);
        out.push(sep);
        join(out, &segs[best_start + best_len..]);
    } else {
        join(out, &segs);
    }
}

impl ClientPrefix {
    /// A prefix of `len` bits of `addr`, with the host bits cleared. `len` must be at most 32
    /// for IPv4 and 128 for IPv6.
    pub fn new(addr: IpAddr, len: u8) -> Result<ClientPrefix, TokenError> {
        let addr = match addr {
            IpAddr::V4(a) if len <= 32 => IpAddr::V4(Ipv4Addr::from(mask_v4(a, len))),
            IpAddr::V6(a) if len <= 128 => IpAddr::V6(Ipv6Addr::from(mask_v6(a, len))),
            _ => return Err(TokenError::BadPrefix),
        };
        Ok(ClientPrefix { addr, len })
    }

    /// Parses CIDR notation, `203.0.113.0/24` or `2001:db8::/32`. Host bits are cleared.
    pub fn parse_cidr(s: &str) -> Result<ClientPrefix, TokenError> {
        let (addr, len) = s.split_once('/').ok_or(TokenError::BadPrefix)?;
        let addr: IpAddr = addr.parse().map_err(|_| TokenError::BadPrefix)?;
        ClientPrefix::new(addr, parse_len(len)?)
    }

    /// Parses the token form, `203.0.113.0_24` or `2001.db8.._32` (`.` stands for `:` in
    /// IPv6). Only the canonical form [`ClientPrefix::to_token_form`] produces is accepted
    /// (no host bits, no leading zeros, RFC 5952 zero compression, lowercase).
    pub fn parse_token_form(s: &str) -> Result<ClientPrefix, TokenError> {
        if s.len() > MAX_PREFIX_TOKEN_LEN {
            return Err(TokenError::BadPrefix);
        }
        let (addr, len) = s.rsplit_once('_').ok_or(TokenError::BadPrefix)?;
        if addr.contains(':') {
            return Err(TokenError::BadPrefix);
        }
        let addr = match addr.parse::<Ipv4Addr>() {
            Ok(a) => IpAddr::V4(a),
            Err(_) => IpAddr::V6(
                addr.replace('.', ":")
                    .parse::<Ipv6Addr>()
                    .map_err(|_| TokenError::BadPrefix)?,
            ),
        };
        let prefix = ClientPrefix::new(addr, parse_len(len)?)?;
        if prefix.addr != addr || prefix.to_token_form() != s {
            return Err(TokenError::BadPrefix);
        }
        Ok(prefix)
    }

    /// The form used inside tokens: `203.0.113.0_24`, `2001.db8.._32`.
    pub fn to_token_form(&self) -> String {
        let mut out = String::with_capacity(MAX_PREFIX_TOKEN_LEN);
        match self.addr {
            IpAddr::V4(a) => out.push_str(&a.to_string()),
            IpAddr::V6(a) => write_v6(&mut out, a, '.'),
        }
        out.push('_');
        out.push_str(&self.len.to_string());
        out
    }

    /// True if `ip` is inside this prefix. An IPv4-mapped IPv6 client address
    /// (`::ffff:a.b.c.d`, as a dual-stack socket reports it) matches IPv4 prefixes, and an
    /// IPv4 client matches an IPv6 prefix covering its mapped form. A prefix with an
    /// out-of-range length contains nothing.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ClientPrefix::new(self.addr, self.len).is_err() {
            return false;
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(c)) => mask_v4(net, self.len) == mask_v4(c, self.len),
            (IpAddr::V6(net), IpAddr::V6(c)) => mask_v6(net, self.len) == mask_v6(c, self.len),
            (IpAddr::V6(net), IpAddr::V4(c)) => {
                mask_v6(net, self.len) == mask_v6(c.to_ipv6_mapped(), self.len)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl fmt::Display for ClientPrefix {
    /// CIDR notation, `203.0.113.0/24`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A prefix length: 1–3 decimal digits, no sign, no leading zero (except `0`).
fn parse_len(s: &str) -> Result<u8, TokenError> {
    if s.is_empty()
        || s.len() > 3
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(TokenError::BadPrefix);
    }
    s.parse().map_err(|_| TokenError::BadPrefix)
}

/// What to put in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParams {
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Key id; must equal the signing key's kid.
    pub kid: String,
    /// Leading key segments covered: 1 = the whole title, 2 = one rendition.
    pub n: u8,
    /// Client prefix the URL is bound to, if any.
    pub client_prefix: Option<ClientPrefix>,
}

/// What a successful [`verify`] vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The key id that signed the token.
    pub kid: String,
    /// Leading key segments covered.
    pub n: u8,
}

/// The exact signed message: `oca-v1\n{exp}\n{kid}\n{n}\n{cp}\n{scope}`.
fn message(exp: u64, kid: &str, n: u8, cp: &str, scope: &str) -> String {
    format!("oca-v1\n{exp}\n{kid}\n{n}\n{cp}\n{scope}")
}

/// Signs a token for `object` (any key under the same first `params.n` segments is covered).
///
/// Errors: [`TokenError::Malformed`] if the key's kid is not `[a-z0-9]{1,16}`,
/// [`TokenError::UnknownKid`] if `params.kid` differs from `key.kid`, [`TokenError::Scope`] if
/// `n` is 0 or more than the key's segment count, [`TokenError::BadPrefix`] if the client
/// prefix has host bits set or a bad length.
pub fn sign(
    key: &SigningKey,
    params: &TokenParams,
    object: &ObjectKey,
) -> Result<String, TokenError> {
    if !valid_kid(&key.kid) {
        return Err(TokenError::Malformed);
    }
    if params.kid != key.kid {
        return Err(TokenError::UnknownKid);
    }
    let hkey = hmac::Key::new(hmac::HMAC_SHA256, &key.secret);
    sign_prepared(&key.kid, &hkey, params, object)
}

/// [`sign`] with the HMAC key already prepared (`kid` is the key's id, equal to
/// `params.kid`).
fn sign_prepared(
    kid: &str,
    hkey: &hmac::Key,
    params: &TokenParams,
    object: &ObjectKey,
) -> Result<String, TokenError> {
    if !valid_kid(kid) {
        return Err(TokenError::Malformed);
    }
    let scope = object
        .scope(usize::from(params.n))
        .ok_or(TokenError::Scope)?;
    let cp = match params.client_prefix {
        None => "-".to_owned(),
        Some(p) => {
            if ClientPrefix::new(p.addr, p.len)? != p {
                return Err(TokenError::BadPrefix);
            }
            p.to_token_form()
        }
    };
    let tag = hmac::sign(
        hkey,
        message(params.exp, kid, params.n, &cp, &scope).as_bytes(),
    );
    let sig = URL_SAFE_NO_PAD.encode(tag.as_ref());
    Ok(format!(
        "v1.{}.{}.{}.{}.{}",
        params.exp, kid, params.n, cp, sig
    ))
}

/// The fields of a syntactically valid token.
struct Parsed<'a> {
    exp: u64,
    kid: &'a str,
    n: u8,
    cp_text: &'a str,
    cp: Option<ClientPrefix>,
    sig: [u8; SIG_LEN],
}

fn parse_token(token: &str) -> Result<Parsed<'_>, TokenError> {
    const BAD: TokenError = TokenError::Malformed;
    if token.len() > MAX_TOKEN_LEN {
        return Err(BAD);
    }
    let rest = token.strip_prefix("v1.").ok_or(BAD)?;
    let (exp_s, rest) = rest.split_once('.').ok_or(BAD)?;
    let (kid, rest) = rest.split_once('.').ok_or(BAD)?;
    let (n_s, rest) = rest.split_once('.').ok_or(BAD)?;
    let (cp_text, sig_s) = rest.rsplit_once('.').ok_or(BAD)?;

    if exp_s.is_empty()
        || exp_s.len() > 20
        || !exp_s.bytes().all(|b| b.is_ascii_digit())
        || (exp_s.len() > 1 && exp_s.starts_with('0'))
    {
        return Err(BAD);
    }
    let exp: u64 = exp_s.parse().map_err(|_| BAD)?;
    if !valid_kid(kid) {
        return Err(BAD);
    }
    let n = match n_s.as_bytes() {
        [d @ b'0'..=b'9'] => d - b'0',
        _ => return Err(BAD),
    };
    let cp = if cp_text == "-" {
        None
    } else {
        Some(ClientPrefix::parse_token_form(cp_text).map_err(|_| BAD)?)
    };
    if sig_s.len() != SIG_B64_LEN {
        return Err(BAD);
    }
    let mut sig = [0u8; SIG_LEN];
    match URL_SAFE_NO_PAD.decode_slice(sig_s, &mut sig) {
        Ok(SIG_LEN) => {}
        _ => return Err(BAD),
    }
    Ok(Parsed {
        exp,
        kid,
        n,
        cp_text,
        cp,
        sig,
    })
}

/// Verifies `token` for a request of `object` from `client` at `now_unix`.
///
/// Checks in DESIGN §3 order, returning the first failure: token syntax
/// ([`TokenError::Malformed`]), `n` within 1..=segment count ([`TokenError::Scope`]), known
/// kid ([`TokenError::UnknownKid`]), expiry: valid while `now_unix <= exp + skew_secs`
/// ([`TokenError::Expired`]), the signature compared in constant time
/// ([`TokenError::BadSignature`]), then the client address inside `cp`
/// ([`TokenError::ClientPrefix`]).
pub fn verify(
    token: &str,
    object: &ObjectKey,
    keys: &KeySet,
    client: IpAddr,
    now_unix: u64,
    skew_secs: u64,
) -> Result<Verified, TokenError> {
    let t = parse_token(token)?;
    let scope = object.scope(usize::from(t.n)).ok_or(TokenError::Scope)?;
    let entry = keys.keys.get(t.kid).ok_or(TokenError::UnknownKid)?;
    if now_unix > t.exp.saturating_add(skew_secs) {
        return Err(TokenError::Expired);
    }
    let msg = message(t.exp, t.kid, t.n, t.cp_text, &scope);
    hmac::verify(&entry.hmac, msg.as_bytes(), &t.sig).map_err(|_| TokenError::BadSignature)?;
    if let Some(cp) = t.cp
        && !cp.contains(client)
    {
        return Err(TokenError::ClientPrefix);
    }
    Ok(Verified {
        exp: t.exp,
        kid: t.kid.to_owned(),
        n: t.n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const SKEW: u64 = 30;
    const SECRET1: &[u8] = b"secret-secret-secret-12345678";
    const SECRET2: &[u8] = b"another-secret-of-enough-length!";

    fn k(s: &str) -> ObjectKey {
        ObjectKey::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key1() -> SigningKey {
        SigningKey {
            kid: "k1".into(),
            secret: SECRET1.to_vec(),
        }
    }

    fn keys() -> KeySet {
        KeySet::new(vec![
            key1(),
            SigningKey {
                kid: "k2".into(),
                secret: SECRET2.to_vec(),
            },
        ])
        .unwrap()
    }

    fn params(n: u8, cp: Option<&str>) -> TokenParams {
        TokenParams {
            exp: NOW + 3600,
            kid: "k1".into(),
            n,
            client_prefix: cp.map(|c| ClientPrefix::parse_cidr(c).unwrap()),
        }
    }

    fn check(token: &str, key: &str, client: &str, now: u64) -> Result<Verified, TokenError> {
        verify(token, &k(key), &keys(), ip(client), now, SKEW)
    }

    #[test]
    fn round_trip() {
        let obj = k("movie/720p/seg-1.m4s");
        let t = sign(&key1(), &params(1, None), &obj).unwrap();
        assert!(t.starts_with(&format!("v1.{}.k1.1.-.", NOW + 3600)), "{t}");
        assert!(t.len() <= MAX_TOKEN_LEN);
        let v = check(&t, "movie/720p/seg-1.m4s", "198.51.100.7", NOW).unwrap();
        assert_eq!(
            v,
            Verified {
                exp: NOW + 3600,
                kid: "k1".into(),
                n: 1
            }
        );
        // n = 1 covers every rendition and the title-level files.
        assert!(check(&t, "movie/1080p/seg-9.m4s", "198.51.100.7", NOW).is_ok());
        assert!(check(&t, "movie/master.m3u8", "198.51.100.7", NOW).is_ok());
        // ...but not another title.
        assert_eq!(
            check(&t, "other/720p/seg-1.m4s", "198.51.100.7", NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn keyset_sign_equals_sign_and_names_unknown_kids() {
        let obj = k("movie/720p/seg-1.m4s");
        for p in [params(2, None), params(1, Some("198.51.100.0/24"))] {
            assert_eq!(keys().sign(&p, &obj), sign(&key1(), &p, &obj));
        }
        let mut p = params(2, None);
        p.kid = "k9".into();
        assert_eq!(keys().sign(&p, &obj), Err(TokenError::UnknownKid));
        p.kid = "k1".into();
        p.n = 9;
        assert_eq!(keys().sign(&p, &obj), Err(TokenError::Scope));
    }

    #[test]
    fn known_answer() {
        // Independent computation of the exact message layout.
        let obj = k("movie/720p/seg-1.m4s");
        let p = TokenParams {
            exp: 1_800_003_600,
            kid: "k1".into(),
            n: 2,
            client_prefix: Some(ClientPrefix::parse_cidr("2001:db8::/32").unwrap()),
        };
        let t = sign(&key1(), &p, &obj).unwrap();
        let msg = "oca-v1\n1800003600\nk1\n2\n2001.db8.._32\nmovie/720p/";
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET1), msg.as_bytes());
        let want_sig = URL_SAFE_NO_PAD.encode(tag.as_ref());
        assert_eq!(t, format!("v1.1800003600.k1.2.2001.db8.._32.{want_sig}"));
        // Fixed value computed outside this code (Python hmac/hashlib/base64).
        assert_eq!(want_sig, KNOWN_SIG);
    }

    /// `base64.urlsafe_b64encode(hmac.new(b"secret-secret-secret-12345678",
    /// b"oca-v1\n1800003600\nk1\n2\n2001.db8.._32\nmovie/720p/", "sha256").digest())`
    /// without padding.
    const KNOWN_SIG: &str = "hzSuvABKlV3FqTS9-yBmr7q-P4yG5SR4q1UQVZJjNAU";

    #[test]
    fn every_reason_reachable() {
        let obj = k("movie/720p/seg-1.m4s");
        let good = sign(&key1(), &params(2, Some("203.0.113.0/24")), &obj).unwrap();
        let client = "203.0.113.9";
        assert!(check(&good, obj.as_str(), client, NOW).is_ok());

        // Tampered signature: flip the last character.
        let mut tampered = good.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let e = check(&tampered, obj.as_str(), client, NOW).unwrap_err();
        assert!(
            e == TokenError::BadSignature || e == TokenError::Malformed,
            "{e:?}"
        );
        // Tamper a middle character so trailing-bit rules cannot interfere.
        let mut bytes = good.clone().into_bytes();
        let i = bytes.len() - 10;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            check(&tampered, obj.as_str(), client, NOW),
            Err(TokenError::BadSignature)
        );
        // Tampered expiry.
        let later = good.replacen(&format!("{}", NOW + 3600), &format!("{}", NOW + 7200), 1);
        assert_eq!(
            check(&later, obj.as_str(), client, NOW),
            Err(TokenError::BadSignature)
        );
        // Signed with k2's secret but claiming k1.
        let forged = sign(
            &SigningKey {
                kid: "k1".into(),
                secret: SECRET2.to_vec(),
            },
            &params(2, Some("203.0.113.0/24")),
            &obj,
        )
        .unwrap();
        assert_eq!(
            check(&forged, obj.as_str(), client, NOW),
            Err(TokenError::BadSignature)
        );

        // Unknown kid.
        let k9 = SigningKey {
            kid: "k9".into(),
            secret: SECRET1.to_vec(),
        };
        let mut p = params(2, None);
        p.kid = "k9".into();
        let t9 = sign(&k9, &p, &obj).unwrap();
        assert_eq!(
            check(&t9, obj.as_str(), client, NOW),
            Err(TokenError::UnknownKid)
        );
        let e = check(&t9, obj.as_str(), client, NOW).unwrap_err();
        assert_eq!(e.reason(), "unknown_kid");

        // Expiry: OK up to exp + skew, expired after.
        let exp = NOW + 3600;
        assert!(check(&good, obj.as_str(), client, exp).is_ok());
        assert!(check(&good, obj.as_str(), client, exp + SKEW).is_ok());
        assert_eq!(
            check(&good, obj.as_str(), client, exp + SKEW + 1),
            Err(TokenError::Expired)
        );
        // Expiry at u64::MAX does not overflow.
        let mut pmax = params(1, None);
        pmax.exp = u64::MAX;
        let tmax = sign(&key1(), &pmax, &obj).unwrap();
        assert!(check(&tmax, obj.as_str(), client, u64::MAX).is_ok());

        // Scope: a rendition token (n=2) for movie/720p does not open movie/1080p.
        assert_eq!(
            check(&good, "movie/1080p/seg-1.m4s", client, NOW),
            Err(TokenError::BadSignature)
        );
        // Scope: n = 3 on a two-segment key.
        let t3 = sign(&key1(), &params(3, None), &obj).unwrap();
        assert_eq!(
            check(&t3, "movie/master.m3u8", client, NOW),
            Err(TokenError::Scope)
        );
        // n = 0 is a scope error, checked before the kid.
        let t0 = t9.replacen(".k9.2.", ".k9.0.", 1);
        assert_eq!(
            check(&t0, obj.as_str(), client, NOW),
            Err(TokenError::Scope)
        );

        // Client prefix.
        assert_eq!(
            check(&good, obj.as_str(), "203.0.114.9", NOW),
            Err(TokenError::ClientPrefix)
        );
        assert_eq!(
            check(&good, obj.as_str(), "::ffff:203.0.113.200", NOW).map(|v| v.n),
            Ok(2)
        );
        assert_eq!(
            check(&good, obj.as_str(), "::ffff:203.0.114.1", NOW),
            Err(TokenError::ClientPrefix)
        );
        assert_eq!(
            check(&good, obj.as_str(), "2001:db8::1", NOW),
            Err(TokenError::ClientPrefix)
        );
        let t6 = sign(&key1(), &params(2, Some("2001:db8:aa::/48")), &obj).unwrap();
        assert!(t6.contains(".2001.db8.aa.._48."), "{t6}");
        assert!(check(&t6, obj.as_str(), "2001:db8:aa:1::5", NOW).is_ok());
        assert_eq!(
            check(&t6, obj.as_str(), "2001:db8:ab::5", NOW),
            Err(TokenError::ClientPrefix)
        );
        assert_eq!(
            check(&t6, obj.as_str(), "203.0.113.9", NOW),
            Err(TokenError::ClientPrefix)
        );

        // Malformed.
        assert_eq!(
            check("garbage", obj.as_str(), client, NOW)
                .unwrap_err()
                .reason(),
            "malformed"
        );

        // BadPrefix, from the signing and parsing APIs.
        let mut bad = params(2, None);
        bad.client_prefix = Some(ClientPrefix {
            addr: ip("203.0.113.5"),
            len: 24,
        });
        assert_eq!(sign(&key1(), &bad, &obj), Err(TokenError::BadPrefix));
        assert_eq!(
            ClientPrefix::parse_cidr("203.0.113.0/33")
                .unwrap_err()
                .reason(),
            "bad_prefix"
        );

        let all = [
            TokenError::Malformed,
            TokenError::UnknownKid,
            TokenError::Expired,
            TokenError::BadSignature,
            TokenError::Scope,
            TokenError::ClientPrefix,
            TokenError::BadPrefix,
        ];
        let reasons: Vec<_> = all.iter().map(|e| e.reason()).collect();
        assert_eq!(
            reasons,
            [
                "malformed",
                "unknown_kid",
                "expired",
                "bad_signature",
                "scope",
                "client_prefix",
                "bad_prefix"
            ]
        );
    }

    #[test]
    fn sign_errors() {
        let obj = k("movie/720p/seg-1.m4s");
        assert_eq!(
            sign(&key1(), &params(0, None), &obj),
            Err(TokenError::Scope)
        );
        assert_eq!(
            sign(&key1(), &params(4, None), &obj),
            Err(TokenError::Scope)
        );
        assert_eq!(
            sign(&key1(), &params(3, None), &k("movie/master.m3u8")),
            Err(TokenError::Scope)
        );
        let mut p = params(1, None);
        p.kid = "k2".into();
        assert_eq!(sign(&key1(), &p, &obj), Err(TokenError::UnknownKid));
        let bad_kid = SigningKey {
            kid: "K1".into(),
            secret: SECRET1.to_vec(),
        };
        let mut p = params(1, None);
        p.kid = "K1".into();
        assert_eq!(sign(&bad_kid, &p, &obj), Err(TokenError::Malformed));
        let mut p = params(1, None);
        p.client_prefix = Some(ClientPrefix {
            addr: ip("10.0.0.0"),
            len: 40,
        });
        assert_eq!(sign(&key1(), &p, &obj), Err(TokenError::BadPrefix));
    }

    #[test]
    fn malformed_tokens() {
        let obj = k("movie/720p/seg-1.m4s");
        let good = sign(&key1(), &params(2, Some("203.0.113.0/24")), &obj).unwrap();
        let sig = good.rsplit_once('.').unwrap().1.to_owned();
        let exp = NOW + 3600;
        let long = "A".repeat(10_000);
        let many_dots = ".".repeat(300);
        let mut cases: Vec<String> = vec![
            String::new(),
            "v1".into(),
            "v1.".into(),
            "garbage".into(),
            long,
            many_dots,
            format!("v2.{exp}.k1.2.-.{sig}"),
            format!("V1.{exp}.k1.2.-.{sig}"),
            format!("v1..k1.2.-.{sig}"),
            format!("v1.+{exp}.k1.2.-.{sig}"),
            format!("v1.-1.k1.2.-.{sig}"),
            format!("v1.0{exp}.k1.2.-.{sig}"),
            format!("v1.{exp}00000000000.k1.2.-.{sig}"), // > 20 digits
            "v1.99999999999999999999.k1.2.-.AAAA".into(),
            format!("v1.99999999999999999999.k1.2.-.{sig}"), // 20 digits, > u64::MAX
            format!("v1.{exp}..2.-.{sig}"),
            format!("v1.{exp}.K1.2.-.{sig}"),
            format!("v1.{exp}.k_1.2.-.{sig}"),
            format!("v1.{exp}.abcdefghijklmnopq.2.-.{sig}"), // 17-char kid
            format!("v1.{exp}.k1..-.{sig}"),
            format!("v1.{exp}.k1.12.-.{sig}"),
            format!("v1.{exp}.k1.a.-.{sig}"),
            format!("v1.{exp}.k1.2..{sig}"),
            format!("v1.{exp}.k1.2.{sig}"),
            format!("v1.{exp}.k1.2.-.{sig}="),
            format!("v1.{exp}.k1.2.-.{sig}AAAA"),
            format!("v1.{exp}.k1.2.-.{}", &sig[..42]),
            format!(
                "v1.{exp}.k1.2.-.{}",
                sig.replace(|_| true, "+").get(..43).unwrap()
            ),
            format!("v1.{exp}.k1.2.-"),
            format!("v1.{exp}.k1.2.203.0.113.5_24.{sig}"), // host bits
            format!("v1.{exp}.k1.2.203.0.113.0_024.{sig}"),
            format!("v1.{exp}.k1.2.203.0.113.0_33.{sig}"),
            format!("v1.{exp}.k1.2.203.0.113.0/24.{sig}"),
            format!("v1.{exp}.k1.2.2001:db8::_32.{sig}"),
            format!("v1.{exp}.k1.2.2001.DB8.._32.{sig}"),
            format!("v1.{exp}.k1.2.2001.0db8.._32.{sig}"),
            format!("v1.{exp}.k1.2...ffff.cb00.7101_120.{sig}"),
            format!("v1.{exp}.k1.2.\u{e9}.{sig}"),
            format!(" v1.{exp}.k1.2.-.{sig}"),
            format!("v1.{exp}.k1.2.-.{sig} "),
        ];
        // Every truncation of a good token is malformed (or, at exactly the whole token, fine).
        for i in 0..good.len() {
            cases.push(good[..i].to_owned());
        }
        for t in &cases {
            assert_eq!(
                check(t, obj.as_str(), "203.0.113.9", NOW),
                Err(TokenError::Malformed),
                "token {t:?}"
            );
        }
        // A non-ASCII token never panics either (slicing is by byte, on char boundaries).
        let weird = "v1.\u{10FFFF}.\u{e9}\u{e9}.\u{1F600}.-.x";
        assert_eq!(
            check(weird, obj.as_str(), "203.0.113.9", NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn prefixes() {
        let cases = [
            ("203.0.113.0/24", "203.0.113.0_24"),
            ("203.0.113.77/24", "203.0.113.0_24"),
            ("0.0.0.0/0", "0.0.0.0_0"),
            ("10.1.2.3/32", "10.1.2.3_32"),
            ("2001:db8::/32", "2001.db8.._32"),
            ("2001:db8:1:2:3:4:5:6/128", "2001.db8.1.2.3.4.5.6_128"),
            ("2001:db8:0:1:0:0:0:0/64", "2001.db8.0.1.._64"),
            ("::/0", ".._0"),
            ("::1/128", "..1_128"),
            ("::ffff:203.0.113.0/120", "..ffff.cb00.7100_120"),
            ("2001:0:0:1::/64", "2001.0.0.1.._64"),
            ("1:0:0:2:0:0:0:3/128", "1.0.0.2..3_128"),
        ];
        for (cidr, token_form) in cases {
            let p = ClientPrefix::parse_cidr(cidr).unwrap();
            assert_eq!(p.to_token_form(), token_form, "{cidr}");
            assert_eq!(ClientPrefix::parse_token_form(token_form), Ok(p), "{cidr}");
        }
        for bad in [
            "",
            "/",
            "203.0.113.0",
            "203.0.113.0/",
            "203.0.113.0/33",
            "2001:db8::/129",
            "203.0.113.0/-1",
            "203.0.113.0/+24",
            "203.0.113.0/1000",
            "example.com/24",
            "203.0.113.0/24/24",
        ] {
            assert_eq!(
                ClientPrefix::parse_cidr(bad),
                Err(TokenError::BadPrefix),
                "{bad}"
            );
        }
        for bad in [
            "",
            "_",
            "-",
            "203.0.113.0",
            "203.0.113.0_",
            "203.0.113.1_24",
            "2001:db8::_32",
            "2001.db8.0.0.0.0.0.0_32",
            "2001.0db8.._32",
            "1.2.3.4.5_32",
            "..ffff.cb00.7100_96",
            "..ffff.203.0.113.1_119",
        ] {
            assert_eq!(
                ClientPrefix::parse_token_form(bad),
                Err(TokenError::BadPrefix),
                "{bad}"
            );
        }
        assert_eq!(
            ClientPrefix::new(ip("10.0.0.0"), 33),
            Err(TokenError::BadPrefix)
        );
        assert_eq!(ClientPrefix::new(ip("::"), 129), Err(TokenError::BadPrefix));
        let p = ClientPrefix::new(ip("198.51.100.200"), 25).unwrap();
        assert_eq!(p.addr, ip("198.51.100.128"));
        assert_eq!(p.to_string(), "198.51.100.128/25");

        let v4 = ClientPrefix::parse_cidr("198.51.100.0/24").unwrap();
        assert!(v4.contains(ip("198.51.100.255")));
        assert!(v4.contains(ip("::ffff:198.51.100.1")));
        assert!(!v4.contains(ip("198.51.101.0")));
        assert!(!v4.contains(ip("::198.51.100.1")));
        assert!(!v4.contains(ip("64:ff9b::198.51.100.1")));
        let all4 = ClientPrefix::parse_cidr("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("1.2.3.4")));
        assert!(!all4.contains(ip("2001:db8::1")));
        let mapped = ClientPrefix::parse_cidr("::ffff:0:0/96").unwrap();
        assert!(mapped.contains(ip("1.2.3.4")));
        assert!(mapped.contains(ip("::ffff:1.2.3.4")));
        let v6 = ClientPrefix::parse_cidr("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("1.2.3.4")));
        // Out-of-range length built by hand contains nothing.
        let broken = ClientPrefix {
            addr: ip("10.0.0.0"),
            len: 200,
        };
        assert!(!broken.contains(ip("10.0.0.1")));
    }

    #[test]
    fn key_sets() {
        let ks = keys();
        assert_eq!(ks.len(), 2);
        assert!(!ks.is_empty());
        assert_eq!(ks.kids().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(ks.newest().map(|k| k.kid.as_str()), Some("k2"));
        assert_eq!(ks.get("k1").map(|k| k.secret.as_slice()), Some(SECRET1));
        assert!(ks.get("k3").is_none());
        let dbg = format!("{ks:?} {:?}", key1());
        assert!(!dbg.contains("secret-secret"), "{dbg}");
        assert!(dbg.contains("k1") && dbg.contains("k2"), "{dbg}");

        let mk = |kid: &str, secret: &[u8]| SigningKey {
            kid: kid.into(),
            secret: secret.to_vec(),
        };
        assert_eq!(KeySet::new(vec![]).unwrap_err(), KeyFileError::Empty);
        assert_eq!(
            KeySet::new(vec![mk("K1", SECRET1)]).unwrap_err(),
            KeyFileError::BadKid("K1".into())
        );
        assert_eq!(
            KeySet::new(vec![mk("", SECRET1)]).unwrap_err(),
            KeyFileError::BadKid(String::new())
        );
        assert_eq!(
            KeySet::new(vec![mk("abcdefghijklmnopq", SECRET1)]).unwrap_err(),
            KeyFileError::BadKid("abcdefghijklmnopq".into())
        );
        assert!(KeySet::new(vec![mk("abcdefghijklmnop", SECRET1)]).is_ok());
        assert_eq!(
            KeySet::new(vec![mk("k1", b"short-secret-15")]).unwrap_err(),
            KeyFileError::ShortSecret("k1".into())
        );
        assert!(KeySet::new(vec![mk("k1", b"exactly16bytes!!")]).is_ok());
        assert_eq!(
            KeySet::new(vec![mk("k1", SECRET1), mk("k1", SECRET2)]).unwrap_err(),
            KeyFileError::Duplicate("k1".into())
        );
    }

    #[test]
    fn key_files() {
        let ks = KeySet::from_toml(
            "[k1]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg=\"\n\
             [k2]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg\"\n",
        )
        .unwrap();
        assert_eq!(ks.kids().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(
            ks.get("k1").unwrap().secret,
            b"secret-secret-secret-12345678"
        );
        assert_eq!(ks.get("k2").unwrap().secret, ks.get("k1").unwrap().secret);

        let err = |text: &str| KeySet::from_toml(text).unwrap_err();
        assert_eq!(err(""), KeyFileError::Empty);
        assert_eq!(err("# nothing\n"), KeyFileError::Empty);
        assert_eq!(
            err("[k1]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg=\"\nnote = 1\n"),
            KeyFileError::UnknownField {
                kid: "k1".into(),
                field: "note".into()
            }
        );
        assert_eq!(err("[k1]\n"), KeyFileError::MissingSecret("k1".into()));
        assert_eq!(
            err("[k1]\nsecret = \"not base64!\"\n"),
            KeyFileError::BadBase64("k1".into())
        );
        // URL-safe alphabet is not standard base64.
        assert_eq!(
            err("[k1]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nz_-\"\n"),
            KeyFileError::BadBase64("k1".into())
        );
        assert_eq!(
            err("[k1]\nsecret = \"c2hvcnQ=\"\n"),
            KeyFileError::ShortSecret("k1".into())
        );
        assert_eq!(
            err("[Key1]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg=\"\n"),
            KeyFileError::BadKid("Key1".into())
        );
        assert!(matches!(err("k1 = 5\n"), KeyFileError::Toml(_)));
        assert!(matches!(err("[k1]\nsecret = 5\n"), KeyFileError::Toml(_)));
        // A TOML syntax error does not echo the (secret) text.
        let e = err("[k1]\nsecret = \"topsecretvalue-unterminated\n");
        let KeyFileError::Toml(msg) = &e else {
            panic!("{e:?}")
        };
        assert!(!msg.contains("topsecretvalue"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        // Duplicate table is a TOML error.
        assert!(matches!(
            err("[k1]\nsecret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQtMTIzNDU2Nzg=\"\n[k1]\n"),
            KeyFileError::Toml(_)
        ));
    }
}

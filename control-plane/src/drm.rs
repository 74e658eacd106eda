//! DRM: content keys wrapped at rest, W3C EME **ClearKey** license request and response
//! (EME §9.1.3/§9.1.4), and the license policy (pure functions, no I/O).
//!
//! - A [`Kek`] (key-encryption key, 32 bytes) wraps every secret the store keeps (content
//!   keys, URL-signing secrets, the player-token secret) with AES-256-GCM, a random 96-bit
//!   nonce and the row's identity as additional data, so a wrapped value cannot be moved to
//!   another row. A wrong KEK fails to unwrap: [`crate::Error::WrongKek`].
//! - [`parse_license_request`] reads `{"kids":["…"],"type":"temporary"}`; [`LicenseResponse`]
//!   serializes to `{"keys":[{"kty":"oct","k":"…","kid":"…"}],"type":"temporary"}`; both use
//!   base64url without padding (16-byte key ids and keys).
//! - [`license_policy`] decides which kids a user gets and until when.
//!
//! What it does not do: encrypt media (the packager does, with the same keys), persistent
//! licenses, or any other key system.

use std::collections::HashSet;
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use oca_common::wire::RenditionId;
use serde::{Deserialize, Serialize};

use crate::auth::{Plan, PlayerClaims};
use crate::error::{Error, Result};

/// Fills a buffer from the system random generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Crypto("system random generator failed"))?;
    Ok(b)
}

/// The key-encryption key. `Debug` never shows it.
pub struct Kek(LessSafeKey);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek> {
        if bytes.len() != 32 {
            return Err(Error::Kek(format!("must be 32 bytes, got {}", bytes.len())));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::Kek("AES-256 key rejected".into()))?;
        Ok(Kek(LessSafeKey::new(key)))
    }

    /// From standard base64 (padded or not, surrounding whitespace ignored) of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Kek> {
        let t = text.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(t)
            .map_err(|_| Error::Kek("not valid base64".into()))?;
        Kek::from_bytes(&bytes)
    }

    /// A fresh random key, as base64 (for `control-plane` setup and tests).
    pub fn generate_base64() -> Result<String> {
        Ok(STANDARD.encode(random::<32>()?))
    }

    /// Encrypts `plaintext` bound to `aad`: `nonce || ciphertext || tag`.
    pub fn wrap(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce_bytes = random::<NONCE_LEN>()?;
        let mut buf = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::Crypto("AES-GCM seal failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts what [`Kek::wrap`] made with the same `aad`; [`Error::WrongKek`] if the key
    /// (or the binding) differs.
    pub fn unwrap(&self, aad: &str, blob: &[u8]) -> Result<Vec<u8>> {
        if blob.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(Error::Corrupt(format!(
                "wrapped value for {aad} is too short"
            )));
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::Corrupt("bad nonce".into()))?;
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| Error::WrongKek)?;
        Ok(plain.to_vec())
    }
}

/// A 16-byte ClearKey key id. Displayed (and serialized) as unpadded base64url.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// Parses unpadded base64url of 16 bytes.
    pub fn from_b64url(s: &str) -> Option<KeyId> {
        let mut out = [0u8; 16];
        // decode_slice into exactly 16 bytes: a longer input fails, a shorter one is caught.
        match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
            Ok(16) => Some(KeyId(out)),
            _ => None,
        }
    }

    /// Unpadded base64url.
    pub fn to_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Lowercase hex (the form packagers such as shaka-packager take).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_b64url())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b64url())
    }
}

/// Why a license was refused. [`LicenseError::code`] is a stable label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    /// The request is not the ClearKey JSON request format (message says what is wrong).
    #[error("bad license request: {0}")]
    BadRequest(String),
    /// A session type other than `temporary` (persistent licenses are not issued).
    #[error("session type {0:?} is not supported (only \"temporary\")")]
    UnsupportedSessionType(String),
    /// A requested kid is not a content key of any rendition.
    #[error("unknown key id {0}")]
    UnknownKid(String),
    /// None of the requested keys belongs to a rendition the user's plan allows.
    #[error("plan {plan:?} (up to {max_height}p) is not entitled to any requested key")]
    NotEntitled {
        /// The user's plan.
        plan: String,
        /// Its height cap.
        max_height: u32,
    },
}

impl LicenseError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            LicenseError::BadRequest(_) => "bad_license_request",
            LicenseError::UnsupportedSessionType(_) => "unsupported_session_type",
            LicenseError::UnknownKid(_) => "unknown_kid",
            LicenseError::NotEntitled { .. } => "not_entitled",
        }
    }

    /// HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            LicenseError::NotEntitled { .. } => 403,
            LicenseError::UnknownKid(_) => 404,
            _ => 400,
        }
    }
}

/// Most kids accepted in one request.
pub const MAX_KIDS: usize = 64;

#[derive(Deserialize)]
struct RawRequest {
    kids: Vec<String>,
    #[serde(rename = "type", default)]
    session_type: Option<String>,
}

/// Parses a ClearKey license request (EME §9.1.3): a JSON object with `kids` (unpadded
/// base64url key ids) and an optional `type` (default `temporary`). Returns the distinct kids
/// in request order.
pub fn parse_license_request(body: &[u8]) -> Result<Vec<KeyId>, LicenseError> {
    let raw: RawRequest = serde_json::from_slice(body)
        .map_err(|e| LicenseError::BadRequest(format!("not a ClearKey JSON request: {e}")))?;
    match raw.session_type.as_deref() {
        None | Some("temporary") => {}
        Some(other) => return Err(LicenseError::UnsupportedSessionType(other.to_owned())),
    }
    if raw.kids.is_empty() {
        return Err(LicenseError::BadRequest("\"kids\" is empty".into()));
    }
    if raw.kids.len() > MAX_KIDS {
        return Err(LicenseError::BadRequest(format!(
            "more than {MAX_KIDS} kids"
        )));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, k) in raw.kids.iter().enumerate() {
        let kid = KeyId::from_b64url(k).ok_or_else(|| {
            LicenseError::BadRequest(format!("kids[{i}] is not unpadded base64url of 16 bytes"))
        })?;
        if seen.insert(kid) {
            out.push(kid);
        }
    }
    Ok(out)
}

/// One key of a ClearKey license: a JSON Web Key of type `oct`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `oct`.
    pub kty: String,
    /// The key, unpadded base64url.
    pub k: String,
    /// The key id, unpadded base64url.
    pub kid: String,
}

/// A ClearKey license (EME §9.1.4): a JSON Web Key set plus the session type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseResponse {
    /// The keys.
    pub keys: Vec<Jwk>,
    /// Session type, `temporary`.
    #[serde(rename = "type")]
    pub session_type: String,
}

impl LicenseResponse {
    /// A temporary license with these `(kid, key)` pairs.
    pub fn temporary(keys: &[(KeyId, [u8; 16])]) -> LicenseResponse {
        LicenseResponse {
            keys: keys
                .iter()
                .map(|(kid, k)| Jwk {
                    kty: "oct".into(),
                    k: URL_SAFE_NO_PAD.encode(k),
                    kid: kid.to_b64url(),
                })
                .collect(),
            session_type: "temporary".into(),
        }
    }

    /// The compact JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What the store knows about a requested kid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id.
    pub kid: KeyId,
    /// The rendition it encrypts.
    pub rendition: RenditionId,
    /// That rendition's height (0 for audio).
    pub height: u32,
}

/// What a license grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseGrant {
    /// Kids to hand out, in request order.
    pub kids: Vec<KeyId>,
    /// Kids refused because the plan does not allow their rendition.
    pub refused: Vec<KeyId>,
    /// When the license stops being valid: `min(now + ttl, token expiry)`.
    pub expires_at: u64,
}

/// The license policy: every requested kid must be known ([`LicenseError::UnknownKid`]); the
/// user gets those whose rendition height the plan allows, and at least one
/// ([`LicenseError::NotEntitled`]); the license lasts `ttl_secs` but never past the player
/// token.
pub fn license_policy(
    claims: &PlayerClaims,
    plan: &Plan,
    requested: &[KeyId],
    known: &[KeyInfo],
    now: u64,
    ttl_secs: u64,
) -> Result<LicenseGrant, LicenseError> {
    let mut kids = Vec::new();
    let mut refused = Vec::new();
    for kid in requested {
        let info = known
            .iter()
            .find(|k| k.kid == *kid)
            .ok_or_else(|| LicenseError::UnknownKid(kid.to_b64url()))?;
        if plan.allows(info.height) {
            kids.push(*kid);
        } else {
            refused.push(*kid);
        }
    }
    if kids.is_empty() {
        return Err(LicenseError::NotEntitled {
            plan: plan.name.clone(),
            max_height: plan.max_height,
        });
    }
    Ok(LicenseGrant {
        kids,
        refused,
        expires_at: now.saturating_add(ttl_secs).min(claims.exp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key ids and key of the EME spec's examples (§9.1.3 request, §9.1.4 license).
    const SPEC_KID1: &str = "LwVHf8JLtPrv2GUXFW2v_A";
    const SPEC_KID2: &str = "0DdtU9od-Bh5L3xbv0Xf_A";
    const SPEC_KEY: &str = "tQ0bJVWb6b0KPL6KtZIy_A";

    #[test]
    fn spec_request_example_parses() {
        let body = br#"{
            "kids":
              [
                "LwVHf8JLtPrv2GUXFW2v_A",
                "0DdtU9od-Bh5L3xbv0Xf_A"
              ],
            "type":"temporary"
          }"#;
        let kids = parse_license_request(body).unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].to_hex(), "2f05477fc24bb4faefd86517156daffc");
        assert_eq!(kids[0].to_b64url(), SPEC_KID1);
        assert_eq!(kids[1].to_b64url(), SPEC_KID2);
        // `type` is optional.
        assert_eq!(
            parse_license_request(br#"{"kids":["LwVHf8JLtPrv2GUXFW2v_A"]}"#).unwrap(),
            vec![kids[0]]
        );
    }

    #[test]
    fn spec_license_example_is_reproduced_exactly() {
        let kid = KeyId::from_b64url(SPEC_KID1).unwrap();
        let key: [u8; 16] = URL_SAFE_NO_PAD
            .decode(SPEC_KEY)
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(hex::encode(key), "b50d1b25559be9bd0a3cbe8ab59232fc");
        let resp = LicenseResponse::temporary(&[(kid, key)]);
        assert_eq!(
            resp.to_json(),
            r#"{"keys":[{"kty":"oct","k":"tQ0bJVWb6b0KPL6KtZIy_A","kid":"LwVHf8JLtPrv2GUXFW2v_A"}],"type":"temporary"}"#
        );
    }

    #[test]
    fn bad_requests_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "bad_license_request"),
            (br#"{"kids":[]}"#, "bad_license_request"),
            (
                br#"{"kids":["LwVHf8JLtPrv2GUXFW2v_A=="]}"#,
                "bad_license_request",
            ),
            (br#"{"kids":["AAAA"]}"#, "bad_license_request"),
            (
                br#"{"kids":["LwVHf8JLtPrv2GUXFW2v_A"],"type":"persistent-license"}"#,
                "unsupported_session_type",
            ),
            (
                br#"{"kids":"LwVHf8JLtPrv2GUXFW2v_A"}"#,
                "bad_license_request",
            ),
        ];
        for (body, code) in cases {
            let e = parse_license_request(body).unwrap_err();
            assert_eq!(e.code(), *code, "{}", String::from_utf8_lossy(body));
        }
        let many = format!(
            "{{\"kids\":[{}]}}",
            vec!["\"LwVHf8JLtPrv2GUXFW2v_A\""; 65].join(",")
        );
        assert!(parse_license_request(many.as_bytes()).is_err());
    }

    fn claims(exp: u64) -> PlayerClaims {
        PlayerClaims {
            user: "u".into(),
            plan: "basic".into(),
            exp,
            token_id: "t".into(),
        }
    }

    #[test]
    fn policy_hands_out_only_allowed_heights() {
        let now = 1_800_000_000;
        let basic = Plan {
            name: "basic".into(),
            max_height: 720,
        };
        let k = |b: u8| KeyId([b; 16]);
        let known = vec![
            KeyInfo {
                kid: k(1),
                rendition: RenditionId::parse("t/720p").unwrap(),
                height: 720,
            },
            KeyInfo {
                kid: k(2),
                rendition: RenditionId::parse("t/2160p").unwrap(),
                height: 2160,
            },
            KeyInfo {
                kid: k(3),
                rendition: RenditionId::parse("t/aac").unwrap(),
                height: 0,
            },
        ];
        let g = license_policy(
            &claims(now + 86_400),
            &basic,
            &[k(1), k(2), k(3)],
            &known,
            now,
            3600,
        )
        .unwrap();
        assert_eq!(g.kids, vec![k(1), k(3)]);
        assert_eq!(g.refused, vec![k(2)]);
        assert_eq!(g.expires_at, now + 3600);
        // Never past the token's expiry.
        let g = license_policy(&claims(now + 60), &basic, &[k(1)], &known, now, 3600).unwrap();
        assert_eq!(g.expires_at, now + 60);
        assert_eq!(
            license_policy(&claims(now + 60), &basic, &[k(2)], &known, now, 3600),
            Err(LicenseError::NotEntitled {
                plan: "basic".into(),
                max_height: 720
            })
        );
        assert_eq!(
            license_policy(&claims(now + 60), &basic, &[k(1), k(9)], &known, now, 3600)
                .unwrap_err()
                .code(),
            "unknown_kid"
        );
    }

    #[test]
    fn kek_wraps_and_detects_the_wrong_key() {
        let kek = Kek::from_base64(&Kek::generate_base64().unwrap()).unwrap();
        let blob = kek.wrap("content-key:t/720p", b"0123456789abcdef").unwrap();
        assert_eq!(
            kek.unwrap("content-key:t/720p", &blob).unwrap(),
            b"0123456789abcdef"
        );
        // Bound to its row.
        assert!(matches!(
            kek.unwrap("content-key:t/1080p", &blob),
            Err(Error::WrongKek)
        ));
        let other = Kek::from_bytes(&[7u8; 32]).unwrap();
        assert!(matches!(
            other.unwrap("content-key:t/720p", &blob),
            Err(Error::WrongKek)
        ));
        assert!(matches!(
            kek.unwrap("x", &blob[..10]),
            Err(Error::Corrupt(_))
        ));
        assert!(Kek::from_base64("c2hvcnQ=").is_err());
        assert!(Kek::from_base64("!!!").is_err());
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
    }
}

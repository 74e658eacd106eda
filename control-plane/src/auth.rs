//! Player and appliance authentication, and plans (pure, no I/O; the store keeps the
//! revocation list, users and hashed appliance secrets).
//!
//! **Player token** (bearer on `POST /v1/playback` and `/v1/license`):
//! `p1.{user}.{plan}.{exp}.{tid}.{sig}` where `user` is `[A-Za-z0-9_-]{1,64}`, `plan` is
//! `[a-z0-9-]{1,32}`, `exp` is Unix seconds, `tid` the token id (16 random bytes, base64url,
//! what revocation lists) and `sig` unpadded base64url of
//! `HMAC-SHA256(secret, "oca-player-v1\n{user}\n{plan}\n{exp}\n{tid}")`. The plan in the token
//! holds until it expires; revoke it to apply a plan change at once.
//!
//! **Appliance token** (bearer on heartbeats): `oa1.{appliance id}.{secret}`; the store keeps
//! SHA-256 of the secret (32 random bytes, so a plain hash suffices), compared in constant time.

use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Why a player token was refused. [`TokenRejection::reason`] is a stable label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TokenRejection {
    /// Not `p1.{user}.{plan}.{exp}.{tid}.{sig}` with valid fields.
    #[error("malformed token")]
    Malformed,
    /// Past its expiry (beyond the allowed clock skew).
    #[error("token expired")]
    Expired,
    /// The signature does not match (forged or altered).
    #[error("bad token signature")]
    BadSignature,
    /// The token id is on the revocation list.
    #[error("token revoked")]
    Revoked,
}

impl TokenRejection {
    /// Stable snake_case label for metrics and error bodies.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenRejection::Malformed => "token_malformed",
            TokenRejection::Expired => "token_expired",
            TokenRejection::BadSignature => "token_bad_signature",
            TokenRejection::Revoked => "token_revoked",
        }
    }
}

/// What a valid player token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerClaims {
    /// User id.
    pub user: String,
    /// Plan name.
    pub plan: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Token id (for revocation).
    pub token_id: String,
}

/// A subscription plan: the tallest picture its users may decrypt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Plan name, `[a-z0-9-]{1,32}`.
    pub name: String,
    /// Largest rendition height whose content key a license hands out. Audio (height 0) is
    /// always allowed.
    pub max_height: u32,
}

impl Plan {
    /// True if a rendition of this height may be watched on this plan.
    pub fn allows(&self, height: u32) -> bool {
        height <= self.max_height
    }
}

/// `[A-Za-z0-9_-]{1,64}`.
pub fn valid_user_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `[a-z0-9-]{1,32}`.
pub fn valid_plan_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `[A-Za-z0-9._-]{1,64}`, as the appliance's `server.id`.
pub fn valid_appliance_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn player_message(c: &PlayerClaims) -> String {
    format!(
        "oca-player-v1\n{}\n{}\n{}\n{}",
        c.user, c.plan, c.exp, c.token_id
    )
}

/// Signs a player token. The caller checks ids first ([`valid_user_id`], [`valid_plan_name`]);
/// a token id must be base64url without dots.
pub fn sign_player_token(secret: &[u8], claims: &PlayerClaims) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, player_message(claims).as_bytes());
    format!(
        "p1.{}.{}.{}.{}.{}",
        claims.user,
        claims.plan,
        claims.exp,
        claims.token_id,
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// Checks syntax, expiry (valid while `now <= exp + skew`) and the signature (constant
/// time). Revocation is checked by the caller against the store.
pub fn verify_player_token(
    secret: &[u8],
    token: &str,
    now: u64,
    skew: u64,
) -> Result<PlayerClaims, TokenRejection> {
    const BAD: TokenRejection = TokenRejection::Malformed;
    if token.len() > 512 {
        return Err(BAD);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [v, user, plan, exp, tid, sig] = parts.as_slice() else {
        return Err(BAD);
    };
    if *v != "p1" || !valid_user_id(user) || !valid_plan_name(plan) {
        return Err(BAD);
    }
    if exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    let exp: u64 = exp.parse().map_err(|_| BAD)?;
    if tid.is_empty()
        || tid.len() > 64
        || !tid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(BAD);
    }
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| BAD)?;
    if sig.len() != 32 {
        return Err(BAD);
    }
    let claims = PlayerClaims {
        user: (*user).to_owned(),
        plan: (*plan).to_owned(),
        exp,
        token_id: (*tid).to_owned(),
    };
    if now > exp.saturating_add(skew) {
        return Err(TokenRejection::Expired);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, player_message(&claims).as_bytes(), &sig)
        .map_err(|_| TokenRejection::BadSignature)?;
    Ok(claims)
}

/// SHA-256 of an appliance secret, as stored.
pub fn hash_appliance_secret(secret: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Splits `oa1.{id}.{secret}` into `(id, secret)` (the id may contain dots, the secret never
/// does).
pub fn parse_appliance_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("oa1.")?;
    let (id, secret) = rest.rsplit_once('.')?;
    (valid_appliance_id(id) && !secret.is_empty() && secret.len() <= 128).then_some((id, secret))
}

/// Compares a presented secret with the stored hash, in constant time.
pub fn appliance_secret_matches(secret: &str, stored_sha256: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(&hash_appliance_secret(secret), stored_sha256).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn claims() -> PlayerClaims {
        PlayerClaims {
            user: "alice".into(),
            plan: "basic".into(),
            exp: NOW + 3600,
            token_id: "AAECAwQFBgcICQoLDA0ODw".into(),
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let t = sign_player_token(SECRET, &claims());
        assert!(t.starts_with("p1.alice.basic."));
        assert_eq!(verify_player_token(SECRET, &t, NOW, 30), Ok(claims()));
        assert_eq!(
            verify_player_token(SECRET, &t, NOW + 3630, 30),
            Ok(claims())
        );
        assert_eq!(
            verify_player_token(SECRET, &t, NOW + 3631, 30),
            Err(TokenRejection::Expired)
        );
    }

    #[test]
    fn forgeries_are_refused() {
        let t = sign_player_token(SECRET, &claims());
        // Upgrade the plan without re-signing.
        let forged = t.replace(".basic.", ".premium.");
        assert_eq!(
            verify_player_token(SECRET, &forged, NOW, 30),
            Err(TokenRejection::BadSignature)
        );
        assert_eq!(
            verify_player_token(b"another-secret-another-secret!!!", &t, NOW, 30),
            Err(TokenRejection::BadSignature)
        );
        for bad in [
            "",
            "p1",
            "p2.alice.basic.1.x.AAAA",
            "p1.al ice.basic.1.x.AAAA",
            "p1.alice.BASIC.1.x.AAAA",
            "p1.alice.basic.-1.x.AAAA",
            "p1.alice.basic.1.x.not*b64",
            "p1.alice.basic.1.x.AAAA",
            "p1.alice.basic.99999999999999999999999.x.AAAA",
        ] {
            assert_eq!(
                verify_player_token(SECRET, bad, NOW, 30),
                Err(TokenRejection::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify_player_token(SECRET, &"p".repeat(600), NOW, 30),
            Err(TokenRejection::Malformed)
        );
    }

    #[test]
    fn plans_cap_height() {
        let basic = Plan {
            name: "basic".into(),
            max_height: 720,
        };
        assert!(basic.allows(0) && basic.allows(720));
        assert!(!basic.allows(1080));
    }

    #[test]
    fn appliance_tokens() {
        let (id, secret) = parse_appliance_token("oa1.oca-isp1.01.c2VjcmV0").unwrap();
        assert_eq!((id, secret), ("oca-isp1.01", "c2VjcmV0"));
        let stored = hash_appliance_secret(secret);
        assert!(appliance_secret_matches(secret, &stored));
        assert!(!appliance_secret_matches("c2VjcmV1", &stored));
        assert!(parse_appliance_token("oa1.noscret").is_none());
        assert!(parse_appliance_token("bearer xyz").is_none());
        assert!(parse_appliance_token("oa1.bad id.x").is_none());
    }

    #[test]
    fn id_rules() {
        assert!(valid_user_id("user_1-A"));
        assert!(!valid_user_id("a.b") && !valid_user_id(""));
        assert!(valid_plan_name("premium-4k"));
        assert!(!valid_plan_name("Premium"));
        assert!(valid_appliance_id("oca-isp1.01"));
    }
}

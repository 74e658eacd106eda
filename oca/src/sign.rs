//! Signing URLs for ops, benches and the demo (`oca sign-url`). Steering signs the URLs that
//! players get; this is the same [`oca_common::token::sign`].

use std::time::Duration;

use oca_common::ObjectKey;
use oca_common::token::{self, ClientPrefix, KeySet, TokenParams};

/// What to sign.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    /// Key id; the newest key when `None`.
    pub kid: Option<&'a str>,
    pub key: &'a ObjectKey,
    pub ttl: Duration,
    /// Leading key segments covered: 1 = the whole title, 2 = one rendition.
    pub n: u8,
    pub client_prefix: Option<ClientPrefix>,
    /// e.g. `https://oca1.example.net`; no trailing slash needed.
    pub base: &'a str,
    pub now_unix: u64,
}

/// Build `{base}/t/{token}/{key}`.
pub fn sign_url(keys: &KeySet, r: &SignRequest<'_>) -> Result<String, String> {
    let signing = match r.kid {
        Some(kid) => keys
            .get(kid)
            .ok_or_else(|| format!("no signing key with kid {kid:?}"))?,
        None => keys.newest().ok_or("the key file has no keys")?,
    };
    let params = TokenParams {
        exp: r.now_unix.saturating_add(r.ttl.as_secs()),
        kid: signing.kid.clone(),
        n: r.n,
        client_prefix: r.client_prefix,
    };
    let tok = token::sign(signing, &params, r.key).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}/t/{}/{}",
        r.base.trim_end_matches('/'),
        tok,
        r.key.as_str()
    ))
}

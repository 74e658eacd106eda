//! URL-signing key rotation (pure parts). Kids are `k` + the rotation number in 10 digits
//! (`k0000000001`), so the lexicographically greatest kid — the one
//! [`oca_common::token::KeySet::newest`] signs with — is the newest key. A rotation adds a key
//! and retires the oldest live keys beyond `max-live-keys`; a retired kid no longer verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oca_common::token::SigningKey;

/// The kid of rotation number `seq`.
pub fn kid_for_seq(seq: u64) -> String {
    format!("k{seq:010}")
}

/// Which of the live keys (by ascending `seq`) to retire so that at most `max_live` remain.
pub fn to_retire(live_seqs: &[u64], max_live: usize) -> Vec<u64> {
    let mut s = live_seqs.to_vec();
    s.sort_unstable();
    let excess = s.len().saturating_sub(max_live.max(1));
    s.truncate(excess);
    s
}

/// A key file (one TOML table per kid, `secret` in standard base64) that appliances read
/// with [`oca_common::token::KeySet::from_toml`] (DESIGN §3).
pub fn key_file(keys: &[SigningKey]) -> String {
    let mut out = String::from("# URL-signing keys, written by control-plane. Newest kid signs.\n");
    for k in keys {
        out.push_str(&format!(
            "\n[{}]\nsecret = \"{}\"\n",
            k.kid,
            STANDARD.encode(&k.secret)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oca_common::token::KeySet;

    #[test]
    fn kids_sort_by_rotation() {
        assert_eq!(kid_for_seq(1), "k0000000001");
        assert!(kid_for_seq(10) > kid_for_seq(9));
        assert!(kid_for_seq(u64::from(u32::MAX)).len() <= 16);
    }

    #[test]
    fn retires_the_oldest_beyond_the_limit() {
        assert_eq!(to_retire(&[3, 1, 2, 4], 3), vec![1]);
        assert_eq!(to_retire(&[1, 2], 3), Vec::<u64>::new());
        assert_eq!(to_retire(&[1, 2, 3], 1), vec![1, 2]);
        assert_eq!(to_retire(&[1, 2], 0), vec![1], "at least one key stays");
    }

    #[test]
    fn key_file_round_trips_through_oca_common() {
        let keys = vec![
            SigningKey {
                kid: kid_for_seq(1),
                secret: vec![1; 32],
            },
            SigningKey {
                kid: kid_for_seq(2),
                secret: vec![2; 32],
            },
        ];
        let set = KeySet::from_toml(&key_file(&keys)).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.newest().unwrap().kid, "k0000000002");
        assert_eq!(set.get("k0000000001").unwrap().secret, vec![1; 32]);
    }
}

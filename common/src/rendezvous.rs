//! Rendezvous (highest random weight) hashing, shared by steering's in-cluster order
//! (DESIGN §5 step 3) and the fill controller's placement (DESIGN §6 step 2), so that the
//! appliance a rendition is filled to first is the one steering ranks first.
//!
//! The functions are fixed (FNV-1a 64 and SplitMix64's finalizer), so every process and
//! replica computes the same order. Pure, no I/O. The values are pinned by a test: changing
//! them reshuffles every placement in every cluster.

/// FNV-1a 64 of a string (a rendition id, or an appliance id as its seed).
pub fn rendition_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finalizer: a bijective mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rendezvous weight of an appliance (by its seed, [`rendition_hash`] of its id) for a
/// rendition (by its [`rendition_hash`]). Higher ranks first.
pub fn weight(rendition: u64, appliance_seed: u64) -> u64 {
    mix64(rendition ^ mix64(appliance_seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_pinned() {
        // FNV-1a 64 reference values.
        assert_eq!(rendition_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(rendition_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(mix64(0), 0);
        // SplitMix64's first output for seed 0 is mix64(0x9e3779b97f4a7c15).
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
        let r = rendition_hash("tears-of-steel/1080p-h264");
        let (a, b) = (rendition_hash("oca-1"), rendition_hash("oca-2"));
        assert_ne!(weight(r, a), weight(r, b));
        assert_eq!(weight(r, a), mix64(r ^ mix64(a)));
    }
}

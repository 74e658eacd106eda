//! IPv4 and IPv6 prefix tables with longest-prefix match (DESIGN §5, ranking step 1).
//!
//! Prefixes live in `prefix-trie`'s [`PrefixMap`] (a tree-bitmap trie: multi-bit nodes of
//! five binary levels each, not a scan). [`PrefixTable::matches`] returns every stored
//! prefix that covers an address, most specific first. After [`PrefixTable::freeze`] (the
//! registry freezes each table it publishes), IPv4 lookups take a faster path: a
//! DIR-24-style array of 2^24 entries (64 MiB) gives the most specific prefix of length
//! ≤ 24 covering an address in one memory access, and each prefix links to the next less
//! specific one, so all covering prefixes come without walking the trie (prefixes longer
//! than /24, rare in BGP, are still looked up in the trie first). Any change un-freezes the
//! table. Pure data structure: no I/O, no clock.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Most covering prefixes one lookup returns (one per prefix length at most).
pub const MAX_MATCHES: usize = 129;

const NONE: u32 = u32::MAX;

/// The frozen IPv4 fast path.
#[derive(Debug, Clone)]
struct Fast4 {
    /// Per /24: index of the most specific prefix of length ≤ 24 covering it, or [`NONE`].
    dir: Vec<u32>,
    /// Per value index: the prefix and its next less specific covering prefix, side by side
    /// (one cache line per step of a walk).
    link: Vec<Link>,
    /// Some prefix is longer than /24 (then the trie is asked first).
    long: bool,
}

/// One IPv4 prefix of the fast path: its address, length, and parent (the next less
/// specific IPv4 prefix covering it, or [`NONE`]).
#[derive(Debug, Clone, Copy)]
struct Link {
    addr: u32,
    parent: u32,
    len: u8,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            addr: 0,
            parent: NONE,
            len: 0,
        }
    }
}

/// A map from IP prefixes (both families) to values.
#[derive(Debug, Clone)]
pub struct PrefixTable<V> {
    v4: PrefixMap<Ipv4Net, u32>,
    v6: PrefixMap<Ipv6Net, u32>,
    values: Vec<V>,
    fast4: Option<Box<Fast4>>,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        PrefixTable {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
            values: Vec::new(),
            fast4: None,
        }
    }
}

impl<V> PrefixTable<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of prefixes stored.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if no prefix is stored.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value stored for exactly `prefix` (host bits ignored), inserting `V::default()`
    /// first if there is none.
    pub fn entry_or_default(&mut self, prefix: IpNet) -> &mut V
    where
        V: Default,
    {
        self.fast4 = None;
        let next = self.values.len() as u32;
        let idx = match prefix {
            IpNet::V4(p) => *self.v4.entry(p.trunc()).or_insert(next),
            IpNet::V6(p) => *self.v6.entry(p.trunc()).or_insert(next),
        };
        if idx == next {
            self.values.push(V::default());
        }
        &mut self.values[idx as usize]
    }

    /// Insert or replace the value for `prefix` (host bits ignored); returns the old value.
    pub fn insert(&mut self, prefix: IpNet, value: V) -> Option<V>
    where
        V: Default,
    {
        let existed = match prefix {
            IpNet::V4(p) => self.v4.contains_key(&p.trunc()),
            IpNet::V6(p) => self.v6.contains_key(&p.trunc()),
        };
        let old = std::mem::replace(self.entry_or_default(prefix), value);
        existed.then_some(old)
    }

    /// Builds the IPv4 fast path (64 MiB plus 12 bytes per prefix). Lookups work without it,
    /// only slower; any later change drops it.
    pub fn freeze(&mut self) {
        let n = self.values.len();
        let mut link = vec![Link::default(); n];
        let mut by_len: Vec<(u8, u32, Ipv4Net)> = Vec::with_capacity(self.v4.len());
        let mut long = false;
        for (p, &i) in self.v4.iter() {
            link[i as usize].addr = u32::from(p.network());
            link[i as usize].len = p.prefix_len();
            long |= p.prefix_len() > 24;
            by_len.push((p.prefix_len(), i, p));
            if p.prefix_len() > 0 {
                let sup = Ipv4Net::new(p.network(), p.prefix_len() - 1)
                    .map(|s| s.trunc())
                    .unwrap_or_default();
                if let Some((_, &j)) = self.v4.get_lpm(&sup) {
                    link[i as usize].parent = j;
                }
            }
        }
        by_len.sort_unstable_by_key(|&(len, _, _)| len);
        let mut dir = vec![NONE; 1 << 24];
        for (len, i, p) in by_len {
            if len > 24 {
                break;
            }
            let start = (u32::from(p.network()) >> 8) as usize;
            let count = 1usize << (24 - len);
            dir[start..start + count].fill(i);
        }
        self.fast4 = Some(Box::new(Fast4 { dir, link, long }));
    }

    /// True if the IPv4 fast path is built.
    pub fn is_frozen(&self) -> bool {
        self.fast4.is_some()
    }

    /// Calls `f` with every stored prefix covering `addr`, most specific first, until `f`
    /// returns false. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is looked up as IPv4.
    pub fn for_each_match<'a>(&'a self, addr: IpAddr, f: impl FnMut(IpNet, &'a V) -> bool) {
        let addr = canonical(addr);
        if let (IpAddr::V4(a), Some(fast)) = (addr, &self.fast4) {
            self.walk_fast4(fast, a, f);
            return;
        }
        match addr {
            IpAddr::V6(a) => self.walk_lpm6(a, f),
            IpAddr::V4(_) => self.walk_cover(addr, f),
        }
    }

    /// IPv6: the most specific prefix by one trie descent ([`PrefixMap::get_lpm`]), then the
    /// next less specific one by another descent from its parent prefix, and so on (no
    /// allocation; a covering set is a few prefixes deep).
    fn walk_lpm6<'a>(&'a self, a: std::net::Ipv6Addr, mut f: impl FnMut(IpNet, &'a V) -> bool) {
        let mut q = Ipv6Net::from(a);
        while let Some((p, &i)) = self.v6.get_lpm(&q) {
            if !f(IpNet::V6(p), &self.values[i as usize]) || p.prefix_len() == 0 {
                return;
            }
            q = Ipv6Net::new(p.network(), p.prefix_len() - 1)
                .map(|n| n.trunc())
                .unwrap_or_default();
        }
    }

    /// Any family, from `cover` (least specific first: the hits are collected, then walked
    /// backwards). The unfrozen IPv4 path, and the reference the other paths must equal.
    fn walk_cover<'a>(&'a self, addr: IpAddr, mut f: impl FnMut(IpNet, &'a V) -> bool) {
        let mut hits: smallbuf::Buf = smallbuf::Buf::new();
        match canonical(addr) {
            IpAddr::V4(a) => {
                for (p, &i) in self.v4.cover(&Ipv4Net::from(a)) {
                    hits.push(IpNet::V4(p), i);
                }
            }
            IpAddr::V6(a) => {
                for (p, &i) in self.v6.cover(&Ipv6Net::from(a)) {
                    hits.push(IpNet::V6(p), i);
                }
            }
        }
        for (p, i) in hits.iter_rev() {
            if !f(p, &self.values[i as usize]) {
                return;
            }
        }
    }

    fn walk_fast4<'a>(
        &'a self,
        fast: &Fast4,
        a: Ipv4Addr,
        mut f: impl FnMut(IpNet, &'a V) -> bool,
    ) {
        let mut i = NONE;
        if fast.long
            && let Some((p, &j)) = self.v4.get_lpm(&Ipv4Net::from(a))
            && p.prefix_len() > 24
        {
            i = j;
        }
        if i == NONE {
            i = fast.dir[(u32::from(a) >> 8) as usize];
        }
        while let Some(l) = fast.link.get(i as usize) {
            let net = Ipv4Net::new(Ipv4Addr::from(l.addr), l.len).unwrap_or_default();
            if !f(IpNet::V4(net), &self.values[i as usize]) {
                return;
            }
            i = l.parent;
        }
    }

    /// Every stored prefix covering `addr` with its value, most specific first.
    pub fn matches(&self, addr: IpAddr) -> Vec<(IpNet, &V)> {
        let mut out = Vec::new();
        self.for_each_match(addr, |p, v| {
            out.push((p, v));
            true
        });
        out
    }

    /// The most specific stored prefix covering `addr`.
    pub fn longest_match(&self, addr: IpAddr) -> Option<(IpNet, &V)> {
        let mut best = None;
        self.for_each_match(addr, |p, v| {
            best = Some((p, v));
            false
        });
        best
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`; everything else is unchanged.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// A fixed-capacity buffer on the stack for the covering prefixes of one lookup.
mod smallbuf {
    use ipnet::IpNet;

    const CAP: usize = super::MAX_MATCHES;

    pub struct Buf {
        items: [(IpNet, u32); CAP],
        len: usize,
    }

    impl Buf {
        pub fn new() -> Self {
            Buf {
                items: [(IpNet::default(), 0); CAP],
                len: 0,
            }
        }

        pub fn push(&mut self, p: IpNet, v: u32) {
            // A prefix length occurs once per address, so there are at most 129 hits.
            if let Some(slot) = self.items.get_mut(self.len) {
                *slot = (p, v);
                self.len += 1;
            }
        }

        pub fn iter_rev(&self) -> impl Iterator<Item = (IpNet, u32)> + '_ {
            self.items[..self.len].iter().rev().copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn most_specific_first_both_families() {
        let mut t = PrefixTable::new();
        t.insert(net("10.0.0.0/8"), "a8");
        t.insert(net("10.1.0.0/16"), "b16");
        t.insert(net("10.1.2.0/24"), "c24");
        t.insert(net("10.1.3.0/24"), "other");
        t.insert(net("0.0.0.0/0"), "default4");
        t.insert(net("2001:db8::/32"), "v6-32");
        t.insert(net("2001:db8:100::/40"), "v6-40");
        assert_eq!(t.len(), 7);
        let got: Vec<&str> = t
            .matches(ip("10.1.2.3"))
            .into_iter()
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(got, ["c24", "b16", "a8", "default4"]);
        let got: Vec<String> = t
            .matches(ip("10.9.9.9"))
            .into_iter()
            .map(|(p, _)| p.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.0/8", "0.0.0.0/0"]);
        let got: Vec<&str> = t
            .matches(ip("2001:db8:1ff::1"))
            .into_iter()
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(got, ["v6-40", "v6-32"]);
        assert!(t.matches(ip("2001:db9::1")).is_empty());
        // IPv4-mapped IPv6 is looked up as IPv4.
        assert_eq!(
            t.longest_match(ip("::ffff:10.1.2.9")).map(|x| *x.1),
            Some("c24")
        );
        assert_eq!(
            t.longest_match(ip("2001:db8:100::9")).map(|x| *x.1),
            Some("v6-40")
        );
    }

    #[test]
    fn host_bits_are_ignored_and_entries_merge() {
        let mut t: PrefixTable<Vec<u32>> = PrefixTable::new();
        t.entry_or_default(net("192.0.2.77/24")).push(1);
        t.entry_or_default(net("192.0.2.0/24")).push(2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.matches(ip("192.0.2.1"))[0].1, &vec![1, 2]);
        assert_eq!(t.matches(ip("192.0.2.1"))[0].0, net("192.0.2.0/24"));
    }

    #[test]
    fn early_stop() {
        let mut t = PrefixTable::new();
        t.insert(net("10.0.0.0/8"), 8);
        t.insert(net("10.0.0.0/16"), 16);
        let mut seen = Vec::new();
        t.for_each_match(ip("10.0.0.1"), |_, v| {
            seen.push(*v);
            false
        });
        assert_eq!(seen, [16]);
    }
}

#[cfg(test)]
mod entry_tests {
    use super::*;

    #[test]
    fn entries_of_distinct_prefixes_stay_apart() {
        let mut t: PrefixTable<Vec<u32>> = PrefixTable::new();
        let nets = [
            "10.0.0.0/16",
            "10.1.0.0/16",
            "192.168.4.0/22",
            "172.16.0.0/12",
            "10.1.2.0/24",
        ];
        for (i, n) in nets.iter().enumerate() {
            t.entry_or_default(n.parse().unwrap()).push(i as u32);
        }
        assert_eq!(t.len(), 5);
        let m = t.matches("10.1.2.3".parse().unwrap());
        let got: Vec<(String, Vec<u32>)> = m
            .into_iter()
            .map(|(p, v)| (p.to_string(), v.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.1.2.0/24".to_string(), vec![4]),
                ("10.1.0.0/16".to_string(), vec![1])
            ]
        );
        assert_eq!(t.matches("192.168.5.1".parse().unwrap())[0].1, &vec![2]);
    }
}

#[cfg(test)]
mod fast_tests {
    use super::*;

    /// The frozen IPv4 path answers exactly like the trie, for nested, long (> /24), default
    /// and random prefixes.
    #[test]
    fn frozen_equals_trie() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = crate::rank::mix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
            seed
        };
        let mut t: PrefixTable<u32> = PrefixTable::new();
        let fixed = [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.0/24",
            "10.1.2.128/25",
            "10.1.2.130/32",
            "192.168.0.0/23",
            "2001:db8::/32",
        ];
        for (i, n) in fixed.iter().enumerate() {
            t.insert(n.parse().unwrap(), i as u32);
        }
        for i in 0..2000u32 {
            let len = (rnd() % 33) as u8;
            let p = Ipv4Net::new(Ipv4Addr::from(rnd() as u32 & 0x0aff_ffff), len)
                .unwrap()
                .trunc();
            *t.entry_or_default(IpNet::V4(p)) = 100 + i;
        }
        let mut probes: Vec<IpAddr> = [
            "10.1.2.130",
            "10.1.2.131",
            "10.1.2.1",
            "10.9.9.9",
            "192.168.1.255",
            "11.0.0.0",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for _ in 0..5000 {
            probes.push(IpAddr::V4(Ipv4Addr::from(rnd() as u32 & 0x0aff_ffff)));
        }
        let before: Vec<Vec<(IpNet, u32)>> = probes
            .iter()
            .map(|a| t.matches(*a).into_iter().map(|(p, v)| (p, *v)).collect())
            .collect();
        assert!(!t.is_frozen());
        t.freeze();
        assert!(t.is_frozen());
        for (a, want) in probes.iter().zip(&before) {
            let got: Vec<(IpNet, u32)> = t.matches(*a).into_iter().map(|(p, v)| (p, *v)).collect();
            assert_eq!(&got, want, "{a}");
        }
        assert_eq!(
            t.matches("10.1.2.130".parse().unwrap())[0].0.to_string(),
            "10.1.2.130/32"
        );
        assert_eq!(
            t.matches("10.1.2.130".parse().unwrap())
                .last()
                .unwrap()
                .0
                .to_string(),
            "0.0.0.0/0"
        );
        // IPv6 is unaffected; a change un-freezes.
        assert_eq!(
            *t.longest_match("2001:db8::1".parse().unwrap()).unwrap().1,
            7
        );
        t.entry_or_default("172.16.0.0/12".parse().unwrap());
        assert!(!t.is_frozen());
    }

    /// The IPv6 walk (one `get_lpm` descent per covering prefix) lists the same prefixes,
    /// in the same order, as the `cover` reference, on nested random prefixes.
    #[test]
    fn ipv6_walk_equals_cover() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = crate::rank::mix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15));
            seed
        };
        let mut t: PrefixTable<u32> = PrefixTable::new();
        t.insert("::/0".parse().unwrap(), 0);
        // Few distinct high bits, so prefixes nest often.
        let base = 0x2001_0db8u128 << 96;
        for i in 0..3000u32 {
            let len = 16 + (rnd() % 65) as u8;
            let a = base | (u128::from(rnd() & 0x0303_0303_0303_0303) << 32);
            let p = Ipv6Net::new(std::net::Ipv6Addr::from(a), len)
                .unwrap()
                .trunc();
            *t.entry_or_default(IpNet::V6(p)) = 1 + i;
        }
        let mut deep = 0;
        for _ in 0..5000 {
            let a = base | (u128::from(rnd() & 0x0303_0303_0303_0303) << 32) | u128::from(rnd());
            let a = IpAddr::V6(std::net::Ipv6Addr::from(a));
            let mut got = Vec::new();
            t.for_each_match(a, |p, v| {
                got.push((p, *v));
                true
            });
            let mut want = Vec::new();
            t.walk_cover(a, |p, v| {
                want.push((p, *v));
                true
            });
            assert_eq!(got, want, "{a}");
            deep += usize::from(got.len() >= 3);
        }
        assert!(deep > 100, "only {deep} probes with 3+ covering prefixes");
    }
}

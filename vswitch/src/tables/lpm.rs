//! Longest-prefix match over IPv4: which route covers an address.
//!
//! The control thread builds a table with [`Lpm::insert`] and
//! [`Lpm::remove`] and publishes it in a snapshot, after which it is only
//! read. A lookup goes through one exact-match hash table per distinct
//! prefix length, longest length first, and stops at the first hit.
//!
//! Why this and not DIR-24-8: a Calico node's routes come in very few
//! lengths (/32 for node and host addresses, /26 for IPAM blocks, the pool
//! CIDRs, perhaps a /0), so a lookup is two to four probes into small tables
//! that stay in the CPU caches. DIR-24-8 answers in one or two memory reads,
//! but its first-level table has 2^24 entries (32 MiB at two bytes each),
//! which would have to be rebuilt or copied for every snapshot (every pod
//! or block change) and whose reads miss the caches for scattered
//! destinations. Should a deployment ever carry many lengths, the cost grows
//! with their number, not with the number of routes.
//!
//! Each length's table is open-addressed with linear probing, at most half
//! full, keyed by the masked address under Fibonacci hashing (the high bits
//! of a 64-bit product, so that keys whose low bits are all zero, as masked
//! prefixes are, still spread). Removal shifts the following entries back
//! instead of leaving tombstones, so lookups never slow down with churn.

use std::fmt;

const FIB: u64 = 0x9e37_79b9_7f4a_7c15;
/// The smallest table a length gets: 2^3 slots.
const MIN_BITS: u32 = 3;

/// A prefix length above 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("prefix length {0} is longer than 32")]
pub struct BadPrefixLen(pub u8);

/// The network mask of a prefix length, host order; `None` above 32.
#[inline]
pub fn mask_of(len: u8) -> Option<u32> {
    match len {
        0 => Some(0),
        1..=32 => Some(u32::MAX << (32 - u32::from(len))),
        _ => None,
    }
}

/// The prefixes of one length.
#[derive(Clone)]
struct Level<V> {
    len: u8,
    mask: u32,
    /// log2 of the slot count.
    bits: u32,
    slots: Box<[Option<(u32, V)>]>,
    count: usize,
}

impl<V: Copy> Level<V> {
    fn new(len: u8, mask: u32, bits: u32) -> Self {
        Level {
            len,
            mask,
            bits,
            slots: vec![None; 1 << bits].into_boxed_slice(),
            count: 0,
        }
    }

    #[inline(always)]
    fn home(&self, key: u32) -> usize {
        (u64::from(key).wrapping_mul(FIB) >> (64 - self.bits)) as usize
    }

    #[inline(always)]
    fn slot_mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot holding `key`, if any.
    #[inline(always)]
    fn position(&self, key: u32) -> Option<usize> {
        let m = self.slot_mask();
        let mut i = self.home(key);
        // at most half full: an empty slot ends every probe sequence
        loop {
            match self.slots[i] {
                None => return None,
                Some((k, _)) if k == key => return Some(i),
                Some(_) => i = (i + 1) & m,
            }
        }
    }

    #[inline(always)]
    fn get(&self, key: u32) -> Option<V> {
        let m = self.slot_mask();
        let mut i = self.home(key);
        loop {
            match self.slots[i] {
                None => return None,
                Some((k, v)) if k == key => return Some(v),
                Some(_) => i = (i + 1) & m,
            }
        }
    }

    fn insert(&mut self, key: u32, v: V) -> Option<V> {
        if let Some(i) = self.position(key) {
            let old = self.slots[i].map(|(_, old)| old);
            self.slots[i] = Some((key, v));
            return old;
        }
        if (self.count + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let m = self.slot_mask();
        let mut i = self.home(key);
        while self.slots[i].is_some() {
            i = (i + 1) & m;
        }
        self.slots[i] = Some((key, v));
        self.count += 1;
        None
    }

    fn grow(&mut self) {
        let mut bigger = Level::new(self.len, self.mask, self.bits + 1);
        for &(k, v) in self.slots.iter().flatten() {
            bigger.insert(k, v);
        }
        *self = bigger;
    }

    fn remove(&mut self, key: u32) -> Option<V> {
        let mut hole = self.position(key)?;
        let old = self.slots[hole].map(|(_, v)| v);
        self.slots[hole] = None;
        self.count -= 1;
        // Backward-shift deletion: move up every later entry of the run
        // whose home is not between the hole and itself, so that no probe
        // sequence crosses an empty slot before reaching its key.
        let m = self.slot_mask();
        let mut j = hole;
        loop {
            j = (j + 1) & m;
            let Some((k, _)) = self.slots[j] else {
                break;
            };
            let home = self.home(k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        old
    }
}

/// Longest-prefix match from IPv4 prefixes (host order) to `V`.
#[derive(Clone)]
pub struct Lpm<V: Copy> {
    /// Longest prefix length first; no empty levels.
    levels: Vec<Level<V>>,
    len: usize,
}

impl<V: Copy> Default for Lpm<V> {
    fn default() -> Self {
        Lpm::new()
    }
}

impl<V: Copy + fmt::Debug> fmt::Debug for Lpm<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(p, l, v)| {
                let [a, b, c, d] = p.to_be_bytes();
                (format!("{a}.{b}.{c}.{d}/{l}"), v)
            }))
            .finish()
    }
}

impl<V: Copy> Lpm<V> {
    pub fn new() -> Self {
        Lpm {
            levels: Vec::new(),
            len: 0,
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of the longest prefix that covers `ip`.
    #[inline]
    pub fn lookup(&self, ip: u32) -> Option<V> {
        for l in &self.levels {
            if let Some(v) = l.get(ip & l.mask) {
                return Some(v);
            }
        }
        None
    }

    /// Like [`Lpm::lookup`], with the matching prefix length.
    #[inline]
    pub fn lookup_with_len(&self, ip: u32) -> Option<(u8, V)> {
        self.levels
            .iter()
            .find_map(|l| l.get(ip & l.mask).map(|v| (l.len, v)))
    }

    /// Adds or replaces `prefix/len` and returns the value it replaced.
    /// Host bits set in `prefix` are ignored (10.65.0.7/26 is 10.65.0.0/26).
    pub fn insert(&mut self, prefix: u32, len: u8, v: V) -> Result<Option<V>, BadPrefixLen> {
        let mask = mask_of(len).ok_or(BadPrefixLen(len))?;
        let at = match self.levels.binary_search_by(|l| len.cmp(&l.len)) {
            Ok(at) => at,
            Err(at) => {
                self.levels.insert(at, Level::new(len, mask, MIN_BITS));
                at
            }
        };
        let old = self.levels[at].insert(prefix & mask, v);
        if old.is_none() {
            self.len += 1;
        }
        Ok(old)
    }

    /// Removes `prefix/len` and returns its value, if it was there.
    pub fn remove(&mut self, prefix: u32, len: u8) -> Option<V> {
        let mask = mask_of(len)?;
        let at = self.levels.binary_search_by(|l| len.cmp(&l.len)).ok()?;
        let old = self.levels[at].remove(prefix & mask)?;
        self.len -= 1;
        if self.levels[at].count == 0 {
            self.levels.remove(at);
        }
        Some(old)
    }

    /// The value of exactly `prefix/len`.
    pub fn get(&self, prefix: u32, len: u8) -> Option<V> {
        let mask = mask_of(len)?;
        let at = self.levels.binary_search_by(|l| len.cmp(&l.len)).ok()?;
        self.levels[at].get(prefix & mask)
    }

    /// Every prefix as (prefix, length, value), longest length first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u8, V)> + '_ {
        self.levels
            .iter()
            .flat_map(|l| l.slots.iter().flatten().map(move |&(k, v)| (k, l.len, v)))
    }

    /// The distinct prefix lengths, longest first: what a lookup may probe.
    pub fn lengths(&self) -> impl Iterator<Item = u8> + '_ {
        self.levels.iter().map(|l| l.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    /// The longest covering prefix by brute force.
    fn reference(routes: &[(u32, u8, u32)], addr: u32) -> Option<u32> {
        routes
            .iter()
            .filter(|&&(p, l, _)| addr & mask_of(l).unwrap() == p & mask_of(l).unwrap())
            .max_by_key(|&&(_, l, _)| l)
            .map(|&(_, _, v)| v)
    }

    #[test]
    fn masks() {
        assert_eq!(mask_of(0), Some(0));
        assert_eq!(mask_of(1), Some(0x8000_0000));
        assert_eq!(mask_of(26), Some(0xffff_ffc0));
        assert_eq!(mask_of(32), Some(u32::MAX));
        assert_eq!(mask_of(33), None);
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t: Lpm<u16> = Lpm::new();
        assert_eq!(t.lookup(ip(10, 0, 0, 1)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn default_route_matches_everything() {
        let mut t = Lpm::new();
        assert_eq!(t.insert(ip(1, 2, 3, 4), 0, 7u16), Ok(None));
        assert_eq!(t.lookup(0), Some(7));
        assert_eq!(t.lookup(u32::MAX), Some(7));
        assert_eq!(t.lookup_with_len(ip(8, 8, 8, 8)), Some((0, 7)));
        assert_eq!(t.get(0, 0), Some(7), "host bits of a /0 are all bits");
    }

    #[test]
    fn host_routes_match_only_their_address() {
        let mut t = Lpm::new();
        t.insert(ip(192, 168, 1, 10), 32, 1u16).unwrap();
        assert_eq!(t.lookup(ip(192, 168, 1, 10)), Some(1));
        assert_eq!(t.lookup(ip(192, 168, 1, 11)), None);
        assert_eq!(t.lookup(ip(192, 168, 1, 9)), None);
    }

    #[test]
    fn overlapping_prefixes_take_the_longest() {
        let mut t = Lpm::new();
        t.insert(0, 0, 0u16).unwrap();
        t.insert(ip(10, 65, 0, 0), 16, 16).unwrap();
        t.insert(ip(10, 65, 0, 64), 26, 26).unwrap();
        t.insert(ip(10, 65, 0, 70), 32, 32).unwrap();
        assert_eq!(t.lookup(ip(10, 65, 0, 70)), Some(32));
        assert_eq!(t.lookup(ip(10, 65, 0, 71)), Some(26));
        assert_eq!(t.lookup(ip(10, 65, 0, 127)), Some(26));
        assert_eq!(t.lookup(ip(10, 65, 0, 128)), Some(16));
        assert_eq!(t.lookup(ip(10, 66, 0, 1)), Some(0));
        assert_eq!(t.lengths().collect::<Vec<_>>(), vec![32, 26, 16, 0]);
        // removing the more specific ones uncovers the shorter ones
        assert_eq!(t.remove(ip(10, 65, 0, 70), 32), Some(32));
        assert_eq!(t.lookup(ip(10, 65, 0, 70)), Some(26));
        assert_eq!(
            t.remove(ip(10, 65, 0, 65), 26),
            Some(26),
            "host bits ignored"
        );
        assert_eq!(t.lookup(ip(10, 65, 0, 70)), Some(16));
        assert_eq!(t.lengths().collect::<Vec<_>>(), vec![16, 0]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn replace_and_reject() {
        let mut t = Lpm::new();
        assert_eq!(t.insert(ip(10, 0, 0, 0), 8, 1u16), Ok(None));
        assert_eq!(t.insert(ip(10, 1, 2, 3), 8, 2), Ok(Some(1)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(ip(10, 9, 9, 9)), Some(2));
        assert_eq!(t.insert(0, 33, 3), Err(BadPrefixLen(33)));
        assert_eq!(t.remove(0, 33), None);
        assert_eq!(t.remove(ip(11, 0, 0, 0), 8), None);
        assert_eq!(t.get(0, 33), None);
        assert_eq!(format!("{t:?}"), "{\"10.0.0.0/8\": 2}");
    }

    #[test]
    fn calico_shaped_table() {
        // 512 blocks of a /16 pool and 300 nodes' /32s, then a lookup per address
        let mut t = Lpm::new();
        let mut routes = vec![];
        for b in 0..512u32 {
            let p = ip(10, 244, 0, 0) + b * 64;
            t.insert(p, 26, b).unwrap();
            routes.push((p, 26, b));
        }
        for n in 0..300u32 {
            let p = ip(192, 168, 0, 0) + n;
            t.insert(p, 32, 10_000 + n).unwrap();
            routes.push((p, 32, 10_000 + n));
        }
        t.insert(ip(10, 244, 0, 0), 16, 99_999).unwrap();
        routes.push((ip(10, 244, 0, 0), 16, 99_999));
        assert_eq!(t.len(), routes.len());
        for a in (ip(10, 243, 255, 0)..ip(10, 245, 0, 255)).step_by(7) {
            assert_eq!(t.lookup(a), reference(&routes, a), "{a:#x}");
        }
        for a in ip(192, 168, 0, 0)..ip(192, 168, 2, 0) {
            assert_eq!(t.lookup(a), reference(&routes, a), "{a:#x}");
        }
    }

    #[test]
    fn random_churn_matches_brute_force() {
        // xorshift: deterministic, no dependency
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut t = Lpm::new();
        let mut routes: Vec<(u32, u8, u32)> = vec![];
        for step in 0..4000u32 {
            let r = rnd();
            // few distinct addresses and lengths so that prefixes overlap and repeat
            let len = [0u8, 8, 16, 24, 26, 31, 32][(r % 7) as usize];
            let p = ((r >> 8) as u32 & 0x0f0f_00ff) & mask_of(len).unwrap();
            if r >> 60 < 5 && !routes.is_empty() {
                let (p, l, v) = routes.swap_remove((r >> 16) as usize % routes.len());
                assert_eq!(t.remove(p, l), Some(v));
            } else {
                let old = t.insert(p, len, step).unwrap();
                let prev = routes.iter().position(|&(q, l, _)| q == p && l == len);
                assert_eq!(old, prev.map(|i| routes[i].2));
                match prev {
                    Some(i) => routes[i].2 = step,
                    None => routes.push((p, len, step)),
                }
            }
            assert_eq!(t.len(), routes.len());
            for _ in 0..8 {
                let a = rnd() as u32 & 0x0f0f_00ff | (rnd() as u32 & 0x0000_ff00);
                assert_eq!(t.lookup(a), reference(&routes, a), "step {step} {a:#x}");
            }
        }
        for &(p, l, v) in &routes {
            assert_eq!(t.get(p, l), Some(v));
        }
        let mut all: Vec<_> = t.iter().collect();
        all.sort_unstable();
        routes.sort_unstable_by_key(|&(p, l, v)| (p, l, v));
        assert_eq!(all, routes);
    }
}

//! The forwarding database: which port each learned MAC lives behind.
//!
//! One table shared by every worker, without locks. An entry is one 64-bit
//! word, the MAC in the high 48 bits and the port in the low 16, so a reader
//! sees either the old or the new entry, never half of one. Beside each word
//! sits the second (since the switch started) the MAC was last seen.
//!
//! The table is set-associative: a MAC hashes to a bucket of eight slots, one
//! cache line, so learning and lookup each touch one line. It holds at most
//! `max_entries` live entries: when it is full, or a bucket is, the entry in
//! that bucket seen longest ago is evicted and counted. Expired entries stop
//! matching at once and are reused by inserts; the control thread's
//! [`Fdb::sweep`] clears the rest so that the count and `fdb show` are true.
//!
//! MACs are hashed with a seed and a multiplier drawn when the table is
//! made, so that nobody who picks source MACs can aim them at one bucket
//! and push out the entries there.
//!
//! Several workers may learn the same new MAC at the same moment and leave
//! two entries for it; lookups take the first, and the other ages out.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Slots per bucket: 8 words of 8 bytes fill a 64-byte cache line.
const WAYS: usize = 8;
const EMPTY: u64 = 0;

/// Learned-state counters of one worker (or of the control thread).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FdbCounters {
    pub learned: u64,
    pub moved: u64,
    pub aged: u64,
    pub evicted: u64,
}

/// Eight entries and their last-seen seconds: two adjacent cache lines,
/// which the CPU's adjacent-line prefetch brings in together.
#[repr(C, align(128))]
struct Bucket {
    words: [AtomicU64; WAYS],
    seen: [AtomicU32; WAYS],
}

pub struct Fdb {
    buckets: Box<[Bucket]>,
    mask: usize,
    /// Hash key: XORed in, then the multiplier.
    seed: u64,
    mult: u64,
    max_entries: u64,
    entries: AtomicU64,
    aging: AtomicU32,
}

/// Seconds since `seen`. Workers read the shared clock at slightly
/// different moments, so a stamp may be a second ahead of a reader's `now`:
/// that is age 0, not a wrapped-around eternity.
#[inline(always)]
fn age(seen: u32, now: u32) -> u32 {
    let a = now.wrapping_sub(seen);
    if a > u32::MAX / 2 {
        0
    } else {
        a
    }
}

#[inline(always)]
fn pack(mac: u64, port: u16) -> u64 {
    (mac << 16) | u64::from(port)
}

#[inline(always)]
fn mac_of(word: u64) -> u64 {
    word >> 16
}

#[inline(always)]
fn port_of(word: u64) -> u16 {
    word as u16
}

impl Fdb {
    /// A table for up to `max_entries` MACs, aging them after `aging_secs`.
    pub fn new(max_entries: usize, aging_secs: u32) -> Fdb {
        let max_entries = max_entries.max(1);
        // twice the slots the bound needs, so buckets rarely fill before the table does
        let nbuckets = (max_entries * 2).div_ceil(WAYS).next_power_of_two();
        let buckets = (0..nbuckets)
            .map(|_| Bucket {
                words: Default::default(),
                seen: Default::default(),
            })
            .collect();
        let random = || {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        Fdb {
            buckets,
            mask: nbuckets - 1,
            seed: random(),
            mult: random() | 1,
            max_entries: max_entries as u64,
            entries: AtomicU64::new(0),
            aging: AtomicU32::new(aging_secs.max(1)),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.max_entries
    }

    pub fn len(&self) -> u64 {
        self.entries.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn aging(&self) -> u32 {
        self.aging.load(Relaxed)
    }

    pub fn set_aging(&self, secs: u32) {
        self.aging.store(secs.max(1), Relaxed);
    }

    #[inline(always)]
    fn bucket_of(&self, mac: u64) -> usize {
        // a folded multiply (both halves of the 128-bit product) by a
        // random multiplier: every MAC bit reaches the bucket bits, in a way
        // no sender can predict, for one multiply
        let p = u128::from(mac ^ self.seed) * u128::from(self.mult);
        let h = (p as u64) ^ (p >> 64) as u64;
        (h ^ h >> 32) as usize & self.mask
    }

    #[inline(always)]
    fn live(&self, seen: u32, now: u32, aging: u32) -> bool {
        age(seen, now) <= aging
    }

    /// The port `mac` was learned on, if it was seen within the aging time.
    #[inline]
    pub fn lookup(&self, mac: u64, now: u32) -> Option<u16> {
        self.lookup_aged(mac, now, self.aging())
    }

    /// [`Fdb::lookup`] with the aging time read once per burst by the caller.
    #[inline]
    pub fn lookup_aged(&self, mac: u64, now: u32, aging: u32) -> Option<u16> {
        let bucket = &self.buckets[self.bucket_of(mac)];
        for (w, seen) in bucket.words.iter().zip(&bucket.seen) {
            let w = w.load(Relaxed);
            if w != EMPTY && mac_of(w) == mac {
                return self
                    .live(seen.load(Relaxed), now, aging)
                    .then_some(port_of(w));
            }
        }
        None
    }

    /// Records that a frame from `mac` arrived on `port` at second `now`.
    #[inline]
    pub fn learn(&self, mac: u64, port: u16, now: u32, ctr: &mut FdbCounters) {
        let b = self.bucket_of(mac);
        let bucket = &self.buckets[b];
        let new = pack(mac, port);
        for (w, seen) in bucket.words.iter().zip(&bucket.seen) {
            let cur = w.load(Relaxed);
            if cur != EMPTY && mac_of(cur) == mac {
                if cur != new {
                    // the MAC moved; another worker may have moved it too, either wins
                    if w.compare_exchange(cur, new, Relaxed, Relaxed).is_ok() {
                        ctr.moved += 1;
                    }
                }
                // written once a second at most, so the line stays shared between readers
                if seen.load(Relaxed) != now {
                    seen.store(now, Relaxed);
                }
                return;
            }
        }
        self.insert(b, new, now, ctr);
    }

    #[cold]
    fn insert(&self, b: usize, new: u64, now: u32, ctr: &mut FdbCounters) {
        let words = &self.buckets[b].words;
        let seen = &self.buckets[b].seen;
        let aging = self.aging.load(Relaxed);
        // an empty slot, while the bound allows one more entry
        if self.entries.load(Relaxed) < self.max_entries {
            for (i, w) in words.iter().enumerate() {
                if w.load(Relaxed) == EMPTY {
                    seen[i].store(now, Relaxed);
                    if w.compare_exchange(EMPTY, new, Relaxed, Relaxed).is_ok() {
                        self.entries.fetch_add(1, Relaxed);
                        ctr.learned += 1;
                        return;
                    }
                }
            }
        }
        // else reuse an expired slot, or evict the one seen longest ago
        match self.oldest(b, now) {
            Some((i, cur, age)) => {
                seen[i].store(now, Relaxed);
                if words[i]
                    .compare_exchange(cur, new, Relaxed, Relaxed)
                    .is_ok()
                {
                    ctr.learned += 1;
                    self.count_removal(age, aging, ctr);
                }
            }
            None => {
                // the table is at its bound but this bucket is empty: make room in
                // a neighbour so the bound holds and the new MAC is still learned
                for step in 1..=self.mask.min(WAYS) {
                    let nb = (b + step) & self.mask;
                    if let Some((i, cur, age)) = self.oldest(nb, now) {
                        if self.buckets[nb].words[i]
                            .compare_exchange(cur, EMPTY, Relaxed, Relaxed)
                            .is_ok()
                        {
                            self.count_removal(age, aging, ctr);
                            seen[0].store(now, Relaxed);
                            if words[0]
                                .compare_exchange(EMPTY, new, Relaxed, Relaxed)
                                .is_ok()
                            {
                                ctr.learned += 1;
                            } else {
                                self.entries.fetch_sub(1, Relaxed);
                            }
                        }
                        return;
                    }
                }
            }
        }
    }

    fn count_removal(&self, age: u32, aging: u32, ctr: &mut FdbCounters) {
        if age > aging {
            ctr.aged += 1;
        } else {
            ctr.evicted += 1;
        }
    }

    /// The occupied slot of bucket `b` seen longest ago: (slot, word, age).
    fn oldest(&self, b: usize, now: u32) -> Option<(usize, u64, u32)> {
        let mut victim: Option<(usize, u64, u32)> = None;
        for (i, w) in self.buckets[b].words.iter().enumerate() {
            let cur = w.load(Relaxed);
            if cur == EMPTY {
                continue;
            }
            let age = age(self.buckets[b].seen[i].load(Relaxed), now);
            if victim.is_none_or(|(_, _, a)| age > a) {
                victim = Some((i, cur, age));
            }
        }
        victim
    }

    /// Clears expired entries; returns how many.
    pub fn sweep(&self, now: u32) -> u64 {
        let aging = self.aging.load(Relaxed);
        self.clear_where(|_, seen| !self.live(seen, now, aging))
    }

    /// Clears the entries behind `port`, or all of them; returns how many.
    pub fn flush(&self, port: Option<u16>) -> u64 {
        self.clear_where(|w, _| port.is_none_or(|p| port_of(w) == p))
    }

    fn clear_where(&self, mut pred: impl FnMut(u64, u32) -> bool) -> u64 {
        let mut n = 0;
        for bucket in self.buckets.iter() {
            for (w, s) in bucket.words.iter().zip(&bucket.seen) {
                let cur = w.load(Relaxed);
                if cur != EMPTY
                    && pred(cur, s.load(Relaxed))
                    && w.compare_exchange(cur, EMPTY, Relaxed, Relaxed).is_ok()
                {
                    self.entries.fetch_sub(1, Relaxed);
                    n += 1;
                }
            }
        }
        n
    }

    /// Live entries as (mac, port, seconds since last seen).
    pub fn entries(&self, now: u32) -> Vec<(u64, u16, u32)> {
        let aging = self.aging.load(Relaxed);
        let mut out = Vec::new();
        for bucket in self.buckets.iter() {
            for (w, s) in bucket.words.iter().zip(&bucket.seen) {
                let cur = w.load(Relaxed);
                let s = s.load(Relaxed);
                if cur != EMPTY && self.live(s, now, aging) {
                    out.push((mac_of(cur), port_of(cur), age(s, now)));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0x0200_0000_00a0;
    const B: u64 = 0x0200_0000_00a1;

    #[test]
    fn the_hash_is_seeded_per_table() {
        // MACs that all land in one bucket of one table: what someone who
        // knew the hash would send to flood that bucket
        let a = Fdb::new(4096, 300);
        let target = a.bucket_of(A);
        let aimed: Vec<u64> = (0..1_000_000u64)
            .map(|i| 0x0200_0000_0000 | i)
            .filter(|&m| a.bucket_of(m) == target)
            .take(32)
            .collect();
        assert_eq!(aimed.len(), 32);
        // another table spreads them
        let b = Fdb::new(4096, 300);
        let spread: std::collections::HashSet<usize> =
            aimed.iter().map(|&m| b.bucket_of(m)).collect();
        assert!(spread.len() > 16, "{} buckets", spread.len());
    }

    #[test]
    fn learns_and_looks_up() {
        let f = Fdb::new(16, 300);
        let mut c = FdbCounters::default();
        assert_eq!(f.lookup(A, 0), None);
        f.learn(A, 3, 0, &mut c);
        f.learn(A, 3, 0, &mut c);
        assert_eq!(f.lookup(A, 1), Some(3));
        assert_eq!(f.lookup(B, 1), None);
        assert_eq!(c.learned, 1);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn ages_out_and_refreshes() {
        let f = Fdb::new(16, 10);
        let mut c = FdbCounters::default();
        f.learn(A, 1, 100, &mut c);
        // the clock ticks in whole seconds: an entry lives at least the aging time
        assert_eq!(f.lookup(A, 110), Some(1));
        assert_eq!(f.lookup(A, 111), None, "expired after the aging time");
        f.learn(A, 1, 105, &mut c); // seen again: refreshed
        assert_eq!(f.lookup(A, 115), Some(1));
        assert_eq!(f.sweep(115), 0);
        assert_eq!(f.sweep(116), 1);
        assert_eq!(f.len(), 0);
        assert!(f.entries(116).is_empty());
        f.set_aging(1000);
        f.learn(A, 1, 200, &mut c);
        assert_eq!(f.lookup(A, 1100), Some(1));
    }

    #[test]
    fn a_stamp_a_second_ahead_is_young() {
        let f = Fdb::new(16, 10);
        let mut c = FdbCounters::default();
        f.learn(A, 1, 101, &mut c); // another worker's clock read
        assert_eq!(f.lookup(A, 100), Some(1));
    }

    #[test]
    fn mac_move_updates_port() {
        let f = Fdb::new(16, 300);
        let mut c = FdbCounters::default();
        f.learn(A, 1, 0, &mut c);
        f.learn(A, 2, 1, &mut c);
        assert_eq!(f.lookup(A, 1), Some(2));
        assert_eq!((c.learned, c.moved), (1, 1));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn bound_holds_and_evictions_are_counted() {
        let f = Fdb::new(100, 300);
        let mut c = FdbCounters::default();
        for i in 0..1000u64 {
            f.learn(
                0x0200_0000_0000 + i,
                (i % 7) as u16,
                (i / 10) as u32,
                &mut c,
            );
            assert!(f.len() <= 100);
        }
        assert_eq!(f.len(), 100);
        assert_eq!(c.learned, 1000, "every new MAC is learned");
        assert!(c.evicted >= 900, "{c:?}");
        // the newest MAC is always present
        assert_eq!(f.lookup(0x0200_0000_0000 + 999, 99), Some((999 % 7) as u16));
        assert_eq!(f.entries(99).len(), 100);
    }

    #[test]
    fn full_bucket_evicts_oldest() {
        // one bucket: 4 entries bound -> 8 slots
        let f = Fdb::new(4, 300);
        assert_eq!(f.mask, 0);
        let mut c = FdbCounters::default();
        for i in 0..4u64 {
            f.learn(A + i, 1, i as u32, &mut c);
        }
        f.learn(B + 100, 2, 10, &mut c);
        assert_eq!(c.evicted, 1);
        assert_eq!(f.lookup(A, 10), None, "oldest went");
        assert_eq!(f.lookup(A + 1, 10), Some(1));
        assert_eq!(f.lookup(B + 100, 10), Some(2));
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn expired_slots_are_reused_as_aged_not_evicted() {
        let f = Fdb::new(4, 5);
        let mut c = FdbCounters::default();
        for i in 0..4u64 {
            f.learn(A + i, 1, 0, &mut c);
        }
        f.learn(B + 100, 2, 50, &mut c);
        assert_eq!((c.aged, c.evicted), (1, 0));
    }

    #[test]
    fn flush_by_port() {
        let f = Fdb::new(64, 300);
        let mut c = FdbCounters::default();
        for i in 0..10u64 {
            f.learn(A + i, (i % 2) as u16, 0, &mut c);
        }
        assert_eq!(f.flush(Some(1)), 5);
        assert_eq!(f.lookup(A + 1, 0), None);
        assert_eq!(f.lookup(A, 0), Some(0));
        assert_eq!(f.flush(None), 5);
        assert!(f.is_empty());
    }

    #[test]
    fn shared_between_threads() {
        // room to spare: with a random hash some buckets of a table sized
        // to the bound fill and evict, which is not what this is about
        let f = std::sync::Arc::new(Fdb::new(40_000, 300));
        let hs: Vec<_> = (0..2u16)
            .map(|t| {
                let f = f.clone();
                std::thread::spawn(move || {
                    let mut c = FdbCounters::default();
                    for i in 0..5000u64 {
                        f.learn((u64::from(t) << 32) | (i + 1), t, 0, &mut c);
                    }
                    c
                })
            })
            .collect();
        let total: u64 = hs.into_iter().map(|h| h.join().unwrap().learned).sum();
        assert_eq!(total, 10_000);
        assert_eq!(f.len(), 10_000);
        assert_eq!(f.lookup((1 << 32) | 77, 0), Some(1));
    }
}

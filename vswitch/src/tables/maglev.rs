//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) for Service
//! backends.
//!
//! A lookup table of a prime number of slots is filled at publish time:
//! each backend walks its own permutation of the slots (an offset and a
//! skip from two hashes of its address and port) and the backends take
//! turns claiming the next free slot of their walk. A flow goes to the
//! backend of slot `hash % size`. Every backend holds nearly the same
//! number of slots, and when one backend goes, nearly only its slots change
//! hands: the other backends' flows stay where they were.
//!
//! The hashes are fixed (no per-process seed), so every worker, every
//! snapshot and every node builds the same table from the same backends.

/// Slot counts to choose from: primes, so every skip is coprime with the size.
const SIZES: [usize; 4] = [251, 4099, 16411, 65537];

/// A built table: slot to backend index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    slots: Box<[u16]>,
}

/// FNV-1a over the bytes, from `basis`: deterministic, good enough to place
/// a few hundred backends.
fn fnv(basis: u64, bytes: &[u8]) -> u64 {
    let mut h = basis;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // finalise: FNV's low bits mix poorly for short keys
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

impl Maglev {
    /// The smallest table size that keeps the imbalance under about 1%
    /// (the paper asks for M > 100 N).
    pub fn size_for(backends: usize) -> usize {
        SIZES
            .iter()
            .copied()
            .find(|&m| m >= backends.saturating_mul(100))
            .unwrap_or(SIZES[SIZES.len() - 1])
    }

    /// A table over `backends` (each named by its bytes, e.g. address and
    /// port) of `size` slots (a prime). `None` for no backend, or more than
    /// a slot index can name.
    pub fn build(backends: &[[u8; 6]], size: usize) -> Option<Maglev> {
        let n = backends.len();
        if n == 0 || n > usize::from(u16::MAX) || size < 2 {
            return None;
        }
        let perm: Vec<(usize, usize)> = backends
            .iter()
            .map(|b| {
                let offset = (fnv(0xcbf2_9ce4_8422_2325, b) % size as u64) as usize;
                let skip = (fnv(0x8422_2325_cbf2_9ce4, b) % (size as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; n];
        let mut slots = vec![u16::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for i in 0..n {
                let (offset, skip) = perm[i];
                let mut c = (offset + next[i] * skip) % size;
                while slots[c] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % size;
                }
                slots[c] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Some(Maglev {
            slots: slots.into_boxed_slice(),
        })
    }

    /// The backend index for a flow hash.
    #[inline(always)]
    pub fn pick(&self, hash: u32) -> usize {
        // Lemire's multiply-shift instead of a division by the prime
        let i = (u64::from(hash) * self.slots.len() as u64) >> 32;
        usize::from(self.slots[i as usize])
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slot owners, for tests and reports.
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }
}

/// The name Maglev hashes for a backend: its address and port.
pub fn backend_key(ip: u32, port: u16) -> [u8; 6] {
    let a = ip.to_be_bytes();
    let p = port.to_be_bytes();
    [a[0], a[1], a[2], a[3], p[0], p[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u32) -> Vec<[u8; 6]> {
        (0..n).map(|i| backend_key(0x0a41_0001 + i, 8080)).collect()
    }

    #[test]
    fn slots_spread_evenly() {
        for n in [1u32, 2, 3, 7, 40] {
            let size = Maglev::size_for(n as usize);
            let m = Maglev::build(&keys(n), size).expect("built");
            let mut count = vec![0usize; n as usize];
            for &s in m.slots() {
                count[usize::from(s)] += 1;
            }
            let fair = size as f64 / f64::from(n);
            for (i, &c) in count.iter().enumerate() {
                assert!(
                    (c as f64 - fair).abs() <= fair * 0.05 + 1.0,
                    "{n} backends: backend {i} has {c} slots, fair {fair}"
                );
            }
        }
    }

    #[test]
    fn flows_spread_over_all_backends() {
        let m = Maglev::build(&keys(3), Maglev::size_for(3)).expect("built");
        let mut count = [0usize; 3];
        let mut h = 0x1234_5678u32;
        for _ in 0..30_000 {
            h ^= h << 13;
            h ^= h >> 17;
            h ^= h << 5;
            count[m.pick(h)] += 1;
        }
        assert!(count.iter().all(|&c| c > 9_000), "{count:?}");
    }

    #[test]
    fn removing_one_backend_moves_only_its_slots() {
        for n in [3u32, 10, 40] {
            let all = keys(n);
            let size = Maglev::size_for(n as usize);
            let before = Maglev::build(&all, size).expect("built");
            let gone = (n / 2) as usize;
            let mut rest = all.clone();
            rest.remove(gone);
            let after = Maglev::build(&rest, size).expect("built");
            let mut moved = 0;
            for (b, a) in before.slots().iter().zip(after.slots()) {
                let b = usize::from(*b);
                // indices above the removed one shift down by one
                let a = usize::from(*a);
                let a_orig = if a >= gone { a + 1 } else { a };
                if b == gone {
                    continue;
                }
                if a_orig != b {
                    moved += 1;
                }
            }
            let theirs = before
                .slots()
                .iter()
                .filter(|&&s| usize::from(s) == gone)
                .count();
            // the paper measures a few percent of the other slots moving;
            // with M > 100 N it stays small (established connections keep
            // their backend whatever the table says: see svcnat)
            assert!(
                moved <= size * 3 / 100,
                "{n} backends: {moved} of {size} slots of staying backends moved"
            );
            let fair = size / n as usize;
            assert!(theirs.abs_diff(fair) <= fair / 10 + 1, "{theirs} vs {fair}");
        }
    }

    #[test]
    fn the_same_backends_give_the_same_table() {
        let a = Maglev::build(&keys(5), 4099).expect("built");
        let b = Maglev::build(&keys(5), 4099).expect("built");
        assert_eq!(a, b);
        assert!(Maglev::build(&[], 4099).is_none());
    }
}

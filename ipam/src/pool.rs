//! IP pools (Calico's `IPPool`, the IPAM-relevant fields): validation and cutting into blocks.
//!
//! A [`Pool`] can only be built through validation, so every pool the engine or a store holds has
//! a canonical CIDR and a block size that divides it; block arithmetic below relies on that.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::error::IpamError;
use crate::net::{self, Family};

pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;
/// Calico's limits: blocks larger than 4096 addresses make a block's allocation table (one
/// object in the datastore) too large, smaller than one address make no sense.
pub const BLOCK_SIZE_RANGE_V4: RangeInclusive<u8> = 20..=32;
pub const BLOCK_SIZE_RANGE_V6: RangeInclusive<u8> = 116..=128;

/// Ranges a pod address must never come from: the gateway trick (`169.254.1.1` / `fe80::` next
/// hop) lives in link-local, and loopback or multicast addresses cannot be routed to a pod.
const RESERVED: &[(&str, &str)] = &[
    ("127.0.0.0/8", "IPv4 loopback"),
    (
        "169.254.0.0/16",
        "IPv4 link-local (pods use 169.254.1.1 as their gateway)",
    ),
    ("224.0.0.0/4", "IPv4 multicast"),
    ("::1/128", "IPv6 loopback"),
    ("fe80::/10", "IPv6 link-local"),
    ("ff00::/8", "IPv6 multicast"),
];

/// The serialized form, as Calico spells it (`blockSize`, `disabled`), with the CIDR as text so
/// that a missing prefix or set host bits can be reported instead of silently fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default)]
    pub disabled: bool,
}

/// A validated pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PoolSpec", into = "PoolSpec")]
pub struct Pool {
    name: String,
    cidr: IpNetwork,
    block_size: u8,
    disabled: bool,
}

impl Pool {
    /// `block_size: None` takes Calico's default for the family (26 or 122).
    pub fn new(name: &str, cidr: &str, block_size: Option<u8>) -> Result<Pool, IpamError> {
        Pool::from_spec(PoolSpec {
            name: name.to_string(),
            cidr: cidr.to_string(),
            block_size,
            disabled: false,
        })
    }

    pub fn from_spec(spec: PoolSpec) -> Result<Pool, IpamError> {
        let bad = |reason: String| {
            Err(IpamError::BadPool {
                pool: spec.name.clone(),
                reason,
            })
        };
        if spec.name.is_empty() {
            return bad("the pool has no name".into());
        }
        if !spec.cidr.contains('/') {
            return bad(format!(
                "cidr {:?} has no prefix length; write it as a network, e.g. 10.244.0.0/16",
                spec.cidr
            ));
        }
        let cidr: IpNetwork = match spec.cidr.parse() {
            Ok(c) => c,
            Err(e) => return bad(format!("cidr {:?} is not a valid CIDR: {e}", spec.cidr)),
        };
        if !net::is_canonical(cidr) {
            return bad(format!(
                "cidr {} has host bits set; did you mean {}/{}?",
                spec.cidr,
                cidr.network(),
                cidr.prefix()
            ));
        }
        for (range, what) in RESERVED {
            let range: IpNetwork = range.parse().expect("reserved ranges are valid CIDRs");
            if net::overlaps(cidr, range) {
                return bad(format!("cidr {cidr} overlaps {range}, {what}"));
            }
        }
        let family = Family::of_net(cidr);
        let (default, allowed) = match family {
            Family::V4 => (DEFAULT_BLOCK_SIZE_V4, BLOCK_SIZE_RANGE_V4),
            Family::V6 => (DEFAULT_BLOCK_SIZE_V6, BLOCK_SIZE_RANGE_V6),
        };
        let block_size = spec.block_size.unwrap_or(default);
        if !allowed.contains(&block_size) {
            return bad(format!(
                "blockSize {block_size} is out of range for an {family} pool; use {} to {} (default {default})",
                allowed.start(),
                allowed.end()
            ));
        }
        if block_size < cidr.prefix() {
            return bad(format!(
                "blockSize /{block_size} is larger than the pool {cidr} itself; use a blockSize of at least {}",
                cidr.prefix()
            ));
        }
        Ok(Pool {
            name: spec.name,
            cidr,
            block_size,
            disabled: spec.disabled,
        })
    }

    pub fn spec(&self) -> PoolSpec {
        PoolSpec {
            name: self.name.clone(),
            cidr: self.cidr.to_string(),
            block_size: Some(self.block_size),
            disabled: self.disabled,
        }
    }

    /// A disabled pool keeps its blocks and addresses but hands out no new ones (Calico's way to
    /// drain a pool before deleting it).
    pub fn with_disabled(mut self, disabled: bool) -> Pool {
        self.disabled = disabled;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn cidr(&self) -> IpNetwork {
        self.cidr
    }

    pub fn block_size(&self) -> u8 {
        self.block_size
    }

    pub fn disabled(&self) -> bool {
        self.disabled
    }

    pub fn family(&self) -> Family {
        Family::of_net(self.cidr)
    }

    /// Fits in a `u128`: validation refuses `/0` (it overlaps loopback), so the exponent is at
    /// most 127.
    pub fn block_count(&self) -> u128 {
        1u128 << (self.block_size - self.cidr.prefix())
    }

    /// The `index`-th block, lowest first; `None` past the end.
    pub fn block(&self, index: u128) -> Option<IpNetwork> {
        if index >= self.block_count() {
            return None;
        }
        let host_bits = self.family().bits() - self.block_size;
        let base = net::to_u128(self.cidr.network());
        let addr = net::from_u128(self.family(), base + (index << host_bits));
        Some(IpNetwork::new(addr, self.block_size).expect("block size is valid for the family"))
    }

    /// Lazy, because an IPv6 pool has up to 2^127 blocks.
    pub fn blocks(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        (0..self.block_count()).map_while(|i| self.block(i))
    }

    /// The block of this pool that `addr` falls in.
    pub fn block_of(&self, addr: IpAddr) -> Option<IpNetwork> {
        if !self.cidr.contains(addr) {
            return None;
        }
        let host_bits = self.family().bits() - self.block_size;
        let start = (net::to_u128(addr) >> host_bits) << host_bits;
        let start = net::from_u128(self.family(), start);
        Some(IpNetwork::new(start, self.block_size).expect("block size is valid for the family"))
    }

    pub fn overlaps(&self, other: &Pool) -> bool {
        net::overlaps(self.cidr, other.cidr)
    }
}

impl TryFrom<PoolSpec> for Pool {
    type Error = IpamError;
    fn try_from(spec: PoolSpec) -> Result<Pool, IpamError> {
        Pool::from_spec(spec)
    }
}

impl From<Pool> for PoolSpec {
    fn from(pool: Pool) -> PoolSpec {
        pool.spec()
    }
}

/// Checks a whole set of pools, as `vsctl apply` needs: each one valid (guaranteed by the type),
/// names unique, and no two overlapping, since an address in two pools would have two blocks.
pub fn validate_pools(pools: &[Pool]) -> Result<(), IpamError> {
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[..i] {
            if a.name == b.name {
                return Err(IpamError::BadPool {
                    pool: a.name.clone(),
                    reason: "the name is given twice".into(),
                });
            }
            if a.overlaps(b) {
                return Err(IpamError::BadPool {
                    pool: a.name.clone(),
                    reason: format!(
                        "cidr {} overlaps pool {} ({}); pools must not overlap",
                        a.cidr, b.name, b.cidr
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<Pool, IpamError>) -> String {
        match r {
            Err(IpamError::BadPool { reason, .. }) => reason,
            other => panic!("expected BadPool, got {other:?}"),
        }
    }

    #[test]
    fn slash16_with_blocksize_26_has_1024_blocks_in_order() {
        let p = Pool::new("p", "10.0.0.0/16", Some(26)).unwrap();
        assert_eq!(p.block_count(), 1024);
        let blocks: Vec<_> = p.blocks().collect();
        assert_eq!(blocks.len(), 1024);
        assert_eq!(blocks[0].to_string(), "10.0.0.0/26");
        assert_eq!(blocks[1].to_string(), "10.0.0.64/26");
        assert_eq!(blocks[4].to_string(), "10.0.1.0/26");
        assert_eq!(blocks[1023].to_string(), "10.0.255.192/26");
        assert_eq!(p.block(1024), None);
        // Blocks tile the pool: each starts where the previous one ends.
        for w in blocks.windows(2) {
            assert_eq!(
                net::to_u128(w[1].network()) - net::to_u128(w[0].network()),
                64
            );
        }
    }

    #[test]
    fn defaults_follow_the_family() {
        assert_eq!(
            Pool::new("a", "10.0.0.0/16", None).unwrap().block_size(),
            26
        );
        assert_eq!(Pool::new("b", "fd00::/64", None).unwrap().block_size(), 122);
    }

    #[test]
    fn ipv6_blocks_are_cut_lazily() {
        let p = Pool::new("v6", "fd00:1::/64", None).unwrap();
        assert_eq!(p.block_count(), 1u128 << 58);
        assert_eq!(p.block(0).unwrap().to_string(), "fd00:1::/122");
        assert_eq!(p.block(1).unwrap().to_string(), "fd00:1::40/122");
        assert_eq!(
            p.block((1u128 << 58) - 1).unwrap().to_string(),
            "fd00:1::ffff:ffff:ffff:ffc0/122"
        );
        assert_eq!(p.blocks().nth(3).unwrap().to_string(), "fd00:1::c0/122");
    }

    #[test]
    fn block_of_finds_the_enclosing_block() {
        let p = Pool::new("p", "10.1.0.0/24", Some(28)).unwrap();
        assert_eq!(
            p.block_of("10.1.0.37".parse().unwrap())
                .unwrap()
                .to_string(),
            "10.1.0.32/28"
        );
        assert_eq!(p.block_of("10.2.0.1".parse().unwrap()), None);
    }

    #[test]
    fn block_size_is_validated() {
        assert!(reason(Pool::new("p", "10.0.0.0/16", Some(19))).contains("20 to 32"));
        assert!(reason(Pool::new("p", "10.0.0.0/16", Some(33))).contains("out of range"));
        assert!(reason(Pool::new("p", "fd00::/64", Some(115))).contains("116 to 128"));
        assert!(reason(Pool::new("p", "fd00::/64", Some(26))).contains("out of range"));
        assert!(reason(Pool::new("p", "10.0.0.0/28", Some(26))).contains("at least 28"));
        for ok in [20, 26, 32] {
            assert!(Pool::new("p", "10.0.0.0/16", Some(ok)).is_ok());
        }
        for ok in [116, 122, 128] {
            assert!(Pool::new("p", "fd00::/100", Some(ok)).is_ok());
        }
        // A pool exactly one block large is fine.
        assert_eq!(
            Pool::new("p", "10.0.0.0/26", None).unwrap().block_count(),
            1
        );
    }

    #[test]
    fn bad_cidrs_are_refused_with_a_hint() {
        assert!(reason(Pool::new("p", "10.0.0.1/16", None)).contains("did you mean 10.0.0.0/16"));
        assert!(reason(Pool::new("p", "10.0.0.0", None)).contains("no prefix length"));
        assert!(reason(Pool::new("p", "10.0.0.0/40", None)).contains("not a valid CIDR"));
        assert!(reason(Pool::new("p", "banana/8", None)).contains("not a valid CIDR"));
        assert!(reason(Pool::new("p", "169.254.0.0/16", None)).contains("link-local"));
        assert!(reason(Pool::new("p", "0.0.0.0/0", Some(20))).contains("loopback"));
        assert!(reason(Pool::new("p", "fe80::/64", None)).contains("link-local"));
        assert!(reason(Pool::new("", "10.0.0.0/16", None)).contains("no name"));
    }

    #[test]
    fn overlapping_pools_are_refused_with_both_names() {
        let a = Pool::new("a", "10.0.0.0/16", None).unwrap();
        let b = Pool::new("b", "10.0.128.0/17", None).unwrap();
        let c = Pool::new("c", "10.1.0.0/16", None).unwrap();
        let v6 = Pool::new("v6", "fd00::/64", None).unwrap();
        assert!(validate_pools(&[a.clone(), c.clone(), v6.clone()]).is_ok());
        let err = validate_pools(&[a.clone(), c, b]).unwrap_err().to_string();
        assert!(
            err.contains("pool \"b\"") && err.contains("overlaps pool a"),
            "{err}"
        );
        let dup = Pool::new("a", "10.9.0.0/16", None).unwrap();
        assert!(validate_pools(&[a, dup])
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn serde_uses_calico_field_names_and_validates() {
        let p: Pool = serde_json::from_str(
            r#"{"name":"default","cidr":"10.244.0.0/16","blockSize":24,"disabled":true}"#,
        )
        .unwrap();
        assert_eq!(p.block_size(), 24);
        assert!(p.disabled());
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["blockSize"], 24);
        let err =
            serde_json::from_str::<Pool>(r#"{"name":"x","cidr":"10.0.0.0/16","blockSize":8}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("blockSize 8"), "{err}");
    }
}

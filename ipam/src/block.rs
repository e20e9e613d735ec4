//! Allocation blocks (Calico's `IPAMBlock`): a power-of-two slice of a pool, claimed by one node,
//! whose ordinals are handed to handles.
//!
//! Ownership lives here and only here: an address is owned by whatever sits at its ordinal, so
//! "one address, one owner" holds by construction rather than by keeping two indexes in step.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::handle::HandleId;
use crate::net::{self, Family};

/// Free-form labels stored with an allocation (Calico keeps `namespace`, `pod`, `node` there),
/// so that `vsctl get blocks` can say who holds an address without asking the runtime.
pub type Attributes = BTreeMap<String, String>;

/// The owner of one address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub handle: HandleId,
    /// The node the address was assigned on. Kept per allocation rather than taken from the
    /// block's affinity, because a borrowed address sits in another node's block, and GC must
    /// judge it by the node whose runtime knows the pod.
    pub node: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    cidr: IpNetwork,
    /// The node that claimed the block. `None` once a node is gone but addresses remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    affinity: Option<String>,
    /// Ordinal → owner. Sparse: free ordinals are simply absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    allocations: BTreeMap<u32, Allocation>,
}

impl Block {
    pub(crate) fn new(cidr: IpNetwork, affinity: Option<String>) -> Block {
        Block {
            cidr,
            affinity,
            allocations: BTreeMap::new(),
        }
    }

    /// A block as a store read it: every allocation by ordinal. Refused if the CIDR has host bits
    /// set or an ordinal lies past the block, so a damaged record is reported, not used.
    pub fn from_parts(
        cidr: IpNetwork,
        affinity: Option<String>,
        allocations: BTreeMap<u32, Allocation>,
    ) -> Result<Block, String> {
        if !net::is_canonical(cidr) {
            return Err(format!("block {cidr} has host bits set"));
        }
        let b = Block {
            cidr,
            affinity,
            allocations,
        };
        b.check()?;
        Ok(b)
    }

    /// Every allocation by ordinal, lowest first (what a store writes).
    pub fn ordinals(&self) -> impl Iterator<Item = (u32, &Allocation)> + '_ {
        self.allocations.iter().map(|(&o, a)| (o, a))
    }

    pub fn cidr(&self) -> IpNetwork {
        self.cidr
    }

    pub fn affinity(&self) -> Option<&str> {
        self.affinity.as_deref()
    }

    /// Number of addresses. Block sizes are limited to 4096 addresses, so `u32` is ample.
    pub fn size(&self) -> u32 {
        1u32 << (Family::of_net(self.cidr).bits() - self.cidr.prefix())
    }

    pub fn allocated(&self) -> usize {
        self.allocations.len()
    }

    pub fn free(&self) -> u32 {
        self.size() - self.allocations.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    pub fn address(&self, ordinal: u32) -> IpAddr {
        let base = net::to_u128(self.cidr.network());
        net::from_u128(Family::of_net(self.cidr), base + u128::from(ordinal))
    }

    pub fn ordinal(&self, addr: IpAddr) -> Option<u32> {
        if !self.cidr.contains(addr) {
            return None;
        }
        Some((net::to_u128(addr) - net::to_u128(self.cidr.network())) as u32)
    }

    /// Every allocation with its address, lowest first.
    pub fn allocations(&self) -> impl Iterator<Item = (IpAddr, &Allocation)> + '_ {
        self.allocations
            .iter()
            .map(|(&ord, a)| (self.address(ord), a))
    }

    pub fn owner(&self, addr: IpAddr) -> Option<&Allocation> {
        self.allocations.get(&self.ordinal(addr)?)
    }

    /// The lowest free ordinal: the first gap in the (sorted) allocated ordinals.
    pub(crate) fn lowest_free(&self) -> Option<u32> {
        let mut expected = 0u32;
        for &ord in self.allocations.keys() {
            if ord != expected {
                return Some(expected);
            }
            expected += 1;
        }
        (expected < self.size()).then_some(expected)
    }

    /// Takes the lowest free address for `owner`.
    pub(crate) fn allocate(&mut self, owner: Allocation) -> Option<IpAddr> {
        let ord = self.lowest_free()?;
        self.allocations.insert(ord, owner);
        Some(self.address(ord))
    }

    /// Frees every address whose owner matches and says which.
    pub(crate) fn release_where(
        &mut self,
        mut matches: impl FnMut(&Allocation) -> bool,
    ) -> Vec<(HandleId, IpAddr)> {
        let ords: Vec<u32> = self
            .allocations
            .iter()
            .filter(|(_, a)| matches(a))
            .map(|(&o, _)| o)
            .collect();
        ords.into_iter()
            .map(|o| {
                let a = self
                    .allocations
                    .remove(&o)
                    .expect("ordinal was just listed");
                (a.handle, self.address(o))
            })
            .collect()
    }

    /// Ordinals outside the block can only come from a damaged or hand-edited state.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some((&ord, _)) = self.allocations.range(self.size()..).next() {
            return Err(format!(
                "block {} has an allocation at ordinal {ord}, past its {} addresses",
                self.cidr,
                self.size()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(h: &str) -> Allocation {
        Allocation {
            handle: HandleId::from_raw(h),
            node: "n".into(),
            attributes: Attributes::new(),
        }
    }

    #[test]
    fn all_addresses_are_usable_lowest_first_and_gaps_are_refilled() {
        let mut b = Block::new("10.0.0.0/30".parse().unwrap(), Some("n".into()));
        assert_eq!(b.size(), 4);
        let got: Vec<_> = (0..4)
            .map(|i| b.allocate(owner(&i.to_string())).unwrap().to_string())
            .collect();
        // Network and broadcast addresses are handed out too: pods get /32 routes.
        assert_eq!(got, ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(b.allocate(owner("x")), None);
        let freed = b.release_where(|a| a.handle.as_str() == "1" || a.handle.as_str() == "3");
        assert_eq!(freed.len(), 2);
        assert_eq!(b.free(), 2);
        assert_eq!(b.allocate(owner("y")).unwrap().to_string(), "10.0.0.1");
        assert_eq!(b.allocate(owner("z")).unwrap().to_string(), "10.0.0.3");
    }

    #[test]
    fn ordinals_map_both_ways_for_ipv6() {
        let b = Block::new("fd00::40/122".parse().unwrap(), None);
        assert_eq!(b.size(), 64);
        assert_eq!(b.address(5).to_string(), "fd00::45");
        assert_eq!(b.ordinal("fd00::7f".parse().unwrap()), Some(63));
        assert_eq!(b.ordinal("fd00::80".parse().unwrap()), None);
    }

    #[test]
    fn out_of_range_ordinals_fail_the_check() {
        let b: Block = serde_json::from_str(
            r#"{"cidr":"10.0.0.0/30","allocations":{"4":{"handle":"h","node":"n"}}}"#,
        )
        .unwrap();
        assert!(b.check().unwrap_err().contains("ordinal 4"));
    }
}

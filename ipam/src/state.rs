//! The whole IPAM state as one value: pools and claimed blocks. Stores persist it whole and the
//! engine replaces it whole, so every change is all-or-nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::block::{Allocation, Block};
use crate::handle::HandleId;
use crate::pool::{validate_pools, Pool};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StateParts", into = "StateParts")]
pub struct State {
    pools: BTreeMap<String, Pool>,
    /// Keyed by CIDR so that "lowest free block" and "is this block claimed" are map look-ups.
    blocks: BTreeMap<IpNetwork, Block>,
}

/// The serialized shape: plain lists, readable and diffable by a person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateParts {
    #[serde(default)]
    pub pools: Vec<Pool>,
    #[serde(default)]
    pub blocks: Vec<Block>,
}

impl State {
    /// Rebuilds a state from its parts (a store's representation) and refuses one that breaks an
    /// invariant, so a damaged store is reported instead of handing out a taken address.
    pub fn from_parts(parts: StateParts) -> Result<State, String> {
        let mut state = State::default();
        validate_pools(&parts.pools).map_err(|e| e.to_string())?;
        for p in parts.pools {
            state.pools.insert(p.name().to_string(), p);
        }
        for b in parts.blocks {
            let cidr = b.cidr();
            if state.blocks.insert(cidr, b).is_some() {
                return Err(format!("block {cidr} is listed twice"));
            }
        }
        state.check()?;
        Ok(state)
    }

    pub fn to_parts(&self) -> StateParts {
        StateParts {
            pools: self.pools.values().cloned().collect(),
            blocks: self.blocks.values().cloned().collect(),
        }
    }

    /// Every invariant the allocator relies on. Pools are validated by their type; here: pools
    /// don't overlap, each block is a whole block of exactly one pool (so blocks cannot overlap
    /// either), and each allocation's ordinal is inside its block.
    pub fn check(&self) -> Result<(), String> {
        let pools: Vec<Pool> = self.pools.values().cloned().collect();
        validate_pools(&pools).map_err(|e| e.to_string())?;
        for (&key, block) in &self.blocks {
            if key != block.cidr() {
                return Err(format!("block {} is filed under {key}", block.cidr()));
            }
            let Some(pool) = self.pool_of(block.cidr().ip()) else {
                return Err(format!("block {key} lies in no pool"));
            };
            if pool.block_of(key.ip()) != Some(key) {
                return Err(format!(
                    "block {key} is not a /{} block of pool {} ({})",
                    pool.block_size(),
                    pool.name(),
                    pool.cidr()
                ));
            }
            block.check()?;
        }
        Ok(())
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> + '_ {
        self.pools.values()
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.get(name)
    }

    /// The pool an address belongs to (at most one: pools don't overlap).
    pub fn pool_of(&self, addr: IpAddr) -> Option<&Pool> {
        self.pools.values().find(|p| p.cidr().contains(addr))
    }

    /// Lowest CIDR first, IPv4 before IPv6.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> + '_ {
        self.blocks.values()
    }

    pub fn block(&self, cidr: IpNetwork) -> Option<&Block> {
        self.blocks.get(&cidr)
    }

    /// Every allocated address with its owner, lowest first.
    pub fn allocations(&self) -> impl Iterator<Item = (IpAddr, &Allocation)> + '_ {
        self.blocks.values().flat_map(|b| b.allocations())
    }

    pub fn owner(&self, addr: IpAddr) -> Option<&Allocation> {
        let pool = self.pool_of(addr)?;
        self.blocks.get(&pool.block_of(addr)?)?.owner(addr)
    }

    /// The addresses a handle holds, sorted (IPv4 first). A scan: a node's state holds a few
    /// hundred allocations, and a second index would be one more thing to keep consistent.
    pub fn addresses_of(&self, handle: &HandleId) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .allocations()
            .filter(|(_, a)| &a.handle == handle)
            .map(|(ip, _)| ip)
            .collect();
        v.sort();
        v
    }

    pub(crate) fn pools_mut(&mut self) -> &mut BTreeMap<String, Pool> {
        &mut self.pools
    }

    pub(crate) fn blocks_mut(&mut self) -> &mut BTreeMap<IpNetwork, Block> {
        &mut self.blocks
    }
}

impl TryFrom<StateParts> for State {
    type Error = String;
    fn try_from(parts: StateParts) -> Result<State, String> {
        State::from_parts(parts)
    }
}

impl From<State> for StateParts {
    fn from(state: State) -> StateParts {
        state.to_parts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_states_are_refused() {
        let pool = r#"{"name":"p","cidr":"10.0.0.0/24","blockSize":26}"#;
        let cases = [
            (
                format!(r#"{{"pools":[{pool}],"blocks":[{{"cidr":"10.1.0.0/26"}}]}}"#),
                "in no pool",
            ),
            (
                format!(r#"{{"pools":[{pool}],"blocks":[{{"cidr":"10.0.0.0/27"}}]}}"#),
                "not a /26 block",
            ),
            (
                format!(
                    r#"{{"pools":[{pool}],"blocks":[{{"cidr":"10.0.0.0/26"}},{{"cidr":"10.0.0.0/26"}}]}}"#
                ),
                "listed twice",
            ),
            (
                format!(
                    r#"{{"pools":[{pool},{{"name":"q","cidr":"10.0.0.128/25"}}],"blocks":[]}}"#
                ),
                "overlaps",
            ),
        ];
        for (json, want) in cases {
            let err = serde_json::from_str::<State>(&json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}

//! The allocation policy, as pure functions on a [`State`]: which pool, which block, which
//! ordinal; what a release or GC frees; how pools may change. No I/O here, so the engine can run
//! these against a fresh snapshot on every retry and commit the result whole.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::block::{Allocation, Attributes, Block};
use crate::error::IpamError;
use crate::handle::HandleId;
use crate::net::Family;
use crate::pool::{validate_pools, Pool};
use crate::state::State;

/// Refuses requests that would only walk whole pools before failing; a pod needs one or two.
pub const MAX_PER_FAMILY: u32 = 64;

/// Which pools an assignment may draw from (the CNI config's `ipv4_pools`/`ipv6_pools`, or
/// all of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PoolSelection {
    /// Every enabled pool of the family, lowest CIDR first.
    #[default]
    Any,
    /// These pools, by name or by CIDR, tried in the given order. Disabled ones are skipped.
    Named(Vec<String>),
}

/// How many addresses of each family to assign.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyCount {
    pub v4: u32,
    pub v6: u32,
}

impl FamilyCount {
    pub const V4: FamilyCount = FamilyCount { v4: 1, v6: 0 };
    pub const V6: FamilyCount = FamilyCount { v4: 0, v6: 1 };
    pub const DUAL: FamilyCount = FamilyCount { v4: 1, v6: 1 };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// Sorted, IPv4 first, so a repeated ADD returns exactly the same list.
    pub addresses: Vec<IpAddr>,
    /// True when the handle already held these addresses and nothing was allocated: the CNI
    /// shim uses it to skip re-creating what the first ADD already set up.
    pub reused: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Freed {
    pub handle: HandleId,
    pub address: IpAddr,
}

pub(crate) struct AssignRequest<'a> {
    pub handle: &'a HandleId,
    pub node: &'a str,
    pub selection: &'a PoolSelection,
    pub count: FamilyCount,
    pub attributes: &'a Attributes,
    pub strict_affinity: bool,
}

pub(crate) fn assign(state: &mut State, req: &AssignRequest<'_>) -> Result<Assigned, IpamError> {
    let held = state.addresses_of(req.handle);
    if !held.is_empty() {
        return Ok(Assigned {
            addresses: held,
            reused: true,
        });
    }
    if req.node.is_empty() {
        return Err(IpamError::BadRequest {
            reason: "the node name is empty".into(),
        });
    }
    if req.count.v4 + req.count.v6 == 0 {
        return Err(IpamError::BadRequest {
            reason: "asked for no address (0 IPv4 and 0 IPv6)".into(),
        });
    }
    if req.count.v4.max(req.count.v6) > MAX_PER_FAMILY {
        return Err(IpamError::BadRequest {
            reason: format!(
                "asked for {} IPv4 and {} IPv6 addresses; at most {MAX_PER_FAMILY} per family",
                req.count.v4, req.count.v6
            ),
        });
    }
    let mut addresses = Vec::new();
    for (family, n) in [(Family::V4, req.count.v4), (Family::V6, req.count.v6)] {
        if n == 0 {
            continue;
        }
        let pools = eligible_pools(state, req.selection, family)?;
        for _ in 0..n {
            addresses.push(allocate_one(state, &pools, req, family)?);
        }
    }
    addresses.sort();
    Ok(Assigned {
        addresses,
        reused: false,
    })
}

fn eligible_pools(
    state: &State,
    selection: &PoolSelection,
    family: Family,
) -> Result<Vec<Pool>, IpamError> {
    let no_pool = |reason: String| Err(IpamError::NoEligiblePool { family, reason });
    match selection {
        PoolSelection::Any => {
            let mut of_family: Vec<&Pool> =
                state.pools().filter(|p| p.family() == family).collect();
            if of_family.is_empty() {
                return no_pool(format!(
                    "there is no {family} pool; create one (e.g. `vsctl apply -f pool.yaml` with a Calico IPPool)"
                ));
            }
            of_family.sort_by_key(|p| p.cidr());
            let enabled: Vec<Pool> = of_family
                .iter()
                .filter(|p| !p.disabled())
                .map(|p| (*p).clone())
                .collect();
            if enabled.is_empty() {
                let names: Vec<&str> = of_family.iter().map(|p| p.name()).collect();
                return no_pool(format!(
                    "every {family} pool is disabled ({}); enable one or add a pool",
                    names.join(", ")
                ));
            }
            Ok(enabled)
        }
        PoolSelection::Named(names) => {
            let mut picked = Vec::new();
            for name in names {
                let pool = state.pool(name).or_else(|| {
                    let cidr: IpNetwork = name.parse().ok()?;
                    state.pools().find(|p| p.cidr() == cidr)
                });
                let Some(pool) = pool else {
                    let known: Vec<&str> = state.pools().map(|p| p.name()).collect();
                    return no_pool(format!(
                        "pool {name:?} does not exist (known pools: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                };
                if pool.family() == family && !pool.disabled() && !picked.contains(pool) {
                    picked.push(pool.clone());
                }
            }
            if picked.is_empty() {
                return no_pool(format!(
                    "none of the selected pools [{}] is an enabled {family} pool",
                    names.join(", ")
                ));
            }
            Ok(picked)
        }
    }
}

/// The claimed blocks of a pool, in address order.
fn blocks_of<'s>(state: &'s State, pool: &Pool) -> impl Iterator<Item = &'s Block> + 's {
    let cidr = pool.cidr();
    state.blocks().filter(move |b| cidr.contains(b.cidr().ip()))
}

/// Calico's order: a free address in a block the node already has; else claim the pool's lowest
/// unclaimed block; else (unless strict affinity) borrow from another node's block.
fn allocate_one(
    state: &mut State,
    pools: &[Pool],
    req: &AssignRequest<'_>,
    family: Family,
) -> Result<IpAddr, IpamError> {
    let owner = Allocation {
        handle: req.handle.clone(),
        node: req.node.to_string(),
        attributes: req.attributes.clone(),
    };
    let affine = pools.iter().find_map(|p| {
        blocks_of(state, p)
            .find(|b| b.affinity() == Some(req.node) && b.free() > 0)
            .map(|b| b.cidr())
    });
    if let Some(cidr) = affine {
        return Ok(take(state, cidr, owner));
    }
    let unclaimed = pools.iter().find_map(|p| {
        // Ends after at most (claimed blocks + 1) steps, however large the pool.
        p.blocks().find(|b| state.block(*b).is_none())
    });
    if let Some(cidr) = unclaimed {
        state
            .blocks_mut()
            .insert(cidr, Block::new(cidr, Some(req.node.to_string())));
        return Ok(take(state, cidr, owner));
    }
    if !req.strict_affinity {
        let borrowable = pools
            .iter()
            .find_map(|p| blocks_of(state, p).find(|b| b.free() > 0).map(|b| b.cidr()));
        if let Some(cidr) = borrowable {
            return Ok(take(state, cidr, owner));
        }
    }
    let detail: Vec<String> = pools
        .iter()
        .map(|p| {
            let free: u64 = blocks_of(state, p).map(|b| u64::from(b.free())).sum();
            let mut s = format!(
                "pool {} ({}) has all {} blocks claimed",
                p.name(),
                p.cidr(),
                p.block_count()
            );
            if free > 0 {
                s += &format!(
                    " and {free} free addresses only in other nodes' blocks, which strict affinity forbids borrowing"
                );
            } else {
                s += " and full";
            }
            s
        })
        .collect();
    Err(IpamError::PoolExhausted {
        family,
        node: req.node.to_string(),
        detail: detail.join("; "),
    })
}

fn take(state: &mut State, cidr: IpNetwork, owner: Allocation) -> IpAddr {
    state
        .blocks_mut()
        .get_mut(&cidr)
        .and_then(|b| b.allocate(owner))
        .expect("caller picked a claimed block with a free address")
}

fn release_where(state: &mut State, mut matches: impl FnMut(&Allocation) -> bool) -> Vec<Freed> {
    let mut freed: Vec<Freed> = state
        .blocks_mut()
        .values_mut()
        .flat_map(|b| b.release_where(&mut matches))
        .map(|(handle, address)| Freed { handle, address })
        .collect();
    freed.sort();
    freed
}

/// Unknown handles free nothing and are not an error: CNI DEL must be idempotent.
pub(crate) fn release(state: &mut State, handle: &HandleId) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = release_where(state, |a| &a.handle == handle)
        .into_iter()
        .map(|f| f.address)
        .collect();
    v.sort();
    v
}

/// Judged by the allocation's node, not the block's affinity, so borrowed addresses are
/// collected by the node whose runtime knew the pod, and only by it.
pub(crate) fn gc(state: &mut State, node: &str, live: &HashSet<HandleId>) -> Vec<Freed> {
    release_where(state, |a| a.node == node && !live.contains(&a.handle))
}

/// Gives up the node's blocks that hold no address, for when the node scales down or leaves;
/// not done on release, because re-claiming a block on the next pod is churn for nothing.
pub(crate) fn release_empty_blocks(state: &mut State, node: &str) -> Vec<IpNetwork> {
    let empty: Vec<IpNetwork> = state
        .blocks()
        .filter(|b| b.affinity() == Some(node) && b.is_empty())
        .map(|b| b.cidr())
        .collect();
    for cidr in &empty {
        state.blocks_mut().remove(cidr);
    }
    empty
}

/// Replaces the whole pool set, all or nothing. A pool whose CIDR or block size changes, or that
/// disappears, must hold no address: its blocks would no longer be blocks of any pool. Its empty
/// blocks are dropped with it.
pub(crate) fn apply_pools(state: &mut State, pools: Vec<Pool>) -> Result<(), IpamError> {
    validate_pools(&pools)?;
    let mut dropped: Vec<IpNetwork> = Vec::new();
    for old in state.pools() {
        let kept = pools.iter().any(|p| {
            p.name() == old.name() && p.cidr() == old.cidr() && p.block_size() == old.block_size()
        });
        if kept {
            continue;
        }
        let blocks: Vec<&Block> = blocks_of(state, old).collect();
        let allocated: usize = blocks.iter().map(|b| b.allocated()).sum();
        if allocated > 0 {
            return Err(IpamError::PoolInUse {
                pool: old.name().to_string(),
                allocated,
            });
        }
        dropped.extend(blocks.iter().map(|b| b.cidr()));
    }
    for cidr in dropped {
        state.blocks_mut().remove(&cidr);
    }
    let map = state.pools_mut();
    map.clear();
    for p in pools {
        map.insert(p.name().to_string(), p);
    }
    debug_assert_eq!(state.check(), Ok(()));
    Ok(())
}

/// Creates the pool, or updates the one of that name (in practice: enables or disables it).
pub(crate) fn put_pool(state: &mut State, pool: Pool) -> Result<(), IpamError> {
    let mut pools: Vec<Pool> = state
        .pools()
        .filter(|p| p.name() != pool.name())
        .cloned()
        .collect();
    pools.push(pool);
    apply_pools(state, pools)
}

pub(crate) fn remove_pool(state: &mut State, name: &str) -> Result<bool, IpamError> {
    if state.pool(name).is_none() {
        return Ok(false);
    }
    let pools: Vec<Pool> = state
        .pools()
        .filter(|p| p.name() != name)
        .cloned()
        .collect();
    apply_pools(state, pools)?;
    Ok(true)
}

//! The IPAM engine: runs the allocation policy inside store transactions and retries when
//! another writer committed first.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;

use crate::allocator::{self, AssignRequest, Assigned, FamilyCount, Freed, PoolSelection};
use crate::block::{Attributes, Block};
use crate::error::{CommitError, IpamError};
use crate::handle::HandleId;
use crate::pool::Pool;
use crate::state::State;
use crate::store::{Snapshot, Store};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// Calico's `StrictAffinity`. Off (Calico's default): when a node can claim no new block it
    /// borrows a free address from another node's block, which works because pods get /32
    /// routes. On: such a node gets "pool exhausted" instead.
    pub strict_affinity: bool,
    /// Commits tried before giving up with [`IpamError::Contention`]. Only optimistic stores
    /// conflict; the file store queues writers on its lock and never needs a second attempt.
    pub max_attempts: u32,
}

impl Default for IpamConfig {
    fn default() -> IpamConfig {
        IpamConfig {
            strict_affinity: false,
            max_attempts: 100,
        }
    }
}

/// The IPAM API. Holds no state of its own, only the store: every call reads the state afresh,
/// so several engines (threads, processes, nodes) on one store always agree.
pub struct Ipam<S> {
    store: S,
    config: IpamConfig,
}

impl<S: Store> Ipam<S> {
    pub fn new(store: S) -> Ipam<S> {
        Ipam::with_config(store, IpamConfig::default())
    }

    pub fn with_config(store: S, config: IpamConfig) -> Ipam<S> {
        Ipam { store, config }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn config(&self) -> &IpamConfig {
        &self.config
    }

    pub fn snapshot(&self) -> Result<Snapshot, IpamError> {
        Ok(self.store.load()?)
    }

    pub fn pools(&self) -> Result<Vec<Pool>, IpamError> {
        Ok(self.snapshot()?.state.pools().cloned().collect())
    }

    pub fn blocks(&self) -> Result<Vec<Block>, IpamError> {
        Ok(self.snapshot()?.state.blocks().cloned().collect())
    }

    /// What a handle holds now (CNI CHECK).
    pub fn addresses(&self, handle: &HandleId) -> Result<Vec<IpAddr>, IpamError> {
        Ok(self.snapshot()?.state.addresses_of(handle))
    }

    /// Replaces the pool set, all or nothing (`vsctl apply`). Refused whole, with the reason, if
    /// any pool is invalid, two overlap, or a pool that would go or change still has addresses.
    pub fn apply_pools(&self, pools: Vec<Pool>) -> Result<(), IpamError> {
        self.update(|s| allocator::apply_pools(s, pools.clone()))
    }

    /// Adds a pool, or updates the one of that name.
    pub fn put_pool(&self, pool: Pool) -> Result<(), IpamError> {
        self.update(|s| allocator::put_pool(s, pool.clone()))
    }

    /// `Ok(false)` if there was no such pool.
    pub fn remove_pool(&self, name: &str) -> Result<bool, IpamError> {
        self.update(|s| allocator::remove_pool(s, name))
    }

    /// CNI ADD. Idempotent: if `handle` already holds addresses they are returned unchanged
    /// (whatever `count` says), so a runtime that retries an ADD never leaks a second address.
    /// Either every requested address is assigned or none is.
    pub fn assign(
        &self,
        handle: &HandleId,
        node: &str,
        pools: &PoolSelection,
        count: FamilyCount,
        attributes: &Attributes,
    ) -> Result<Assigned, IpamError> {
        let req = AssignRequest {
            handle,
            node,
            selection: pools,
            count,
            attributes,
            strict_affinity: self.config.strict_affinity,
        };
        self.update(|s| allocator::assign(s, &req))
    }

    /// CNI DEL: frees what the handle holds and returns it; an unknown handle frees nothing and
    /// is not an error. The block stays claimed by its node (see [`Ipam::release_empty_blocks`]).
    pub fn release(&self, handle: &HandleId) -> Result<Vec<IpAddr>, IpamError> {
        self.update(|s| Ok(allocator::release(s, handle)))
    }

    /// CNI GC: frees every address assigned on `node` whose handle is not in `live`. This is
    /// what makes a crash between "address committed" and "pod wired" cost nothing for good.
    pub fn gc(&self, node: &str, live: &HashSet<HandleId>) -> Result<Vec<Freed>, IpamError> {
        self.update(|s| Ok(allocator::gc(s, node, live)))
    }

    /// Gives back the blocks of `node` that hold no address, so other nodes can claim them.
    pub fn release_empty_blocks(&self, node: &str) -> Result<Vec<IpNetwork>, IpamError> {
        self.update(|s| Ok(allocator::release_empty_blocks(s, node)))
    }

    /// Read, change, commit; on a conflict start over from the newer state. A change that turns
    /// out to change nothing (a repeated ADD, an unknown DEL) is not written at all.
    fn update<T>(
        &self,
        mut change: impl FnMut(&mut State) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        let attempts = self.config.max_attempts.max(1);
        for attempt in 1..=attempts {
            let tx = self.store.begin()?;
            let mut state = tx.snapshot().state.clone();
            let out = change(&mut state)?;
            if state == tx.snapshot().state {
                return Ok(out);
            }
            match tx.commit(&state) {
                Ok(_) => return Ok(out),
                Err(CommitError::Conflict { .. }) => {
                    // Spread contending writers apart a little more on every round.
                    std::thread::sleep(Duration::from_micros(20 * u64::from(attempt)));
                }
                Err(CommitError::Store(e)) => return Err(e.into()),
            }
        }
        Err(IpamError::Contention { attempts })
    }
}

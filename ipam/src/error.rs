//! Errors. Each message names the thing at fault and, where there is one, what to do about it,
//! because they end up verbatim in a CNI error object or in `vsctl` output.

use std::io;
use std::path::PathBuf;

use crate::net::Family;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free {family} address for node {node}: {detail}; add a pool, enlarge the pool selection, or run GC to free addresses of pods that are gone")]
    PoolExhausted {
        family: Family,
        node: String,
        /// Which pools were tried and why each had nothing left.
        detail: String,
    },

    #[error("no eligible {family} pool: {reason}")]
    NoEligiblePool { family: Family, reason: String },

    #[error("invalid pool {pool:?}: {reason}")]
    BadPool { pool: String, reason: String },

    #[error("pool {pool:?} still holds {allocated} address(es); release them (or let GC do it) before removing or changing the pool")]
    PoolInUse { pool: String, allocated: usize },

    #[error("invalid handle: {reason}")]
    BadHandle { reason: String },

    #[error("invalid request: {reason}")]
    BadRequest { reason: String },

    #[error("gave up after {attempts} attempts: other writers changed the IPAM state each time; retry later")]
    Contention { attempts: u32 },

    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("IPAM state {} is damaged ({reason}); it was left untouched: restore it from a backup, or move it aside to start with no claims (existing pods keep their addresses only if re-added)", path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("IPAM state {} has schema {found}, but this build reads schema {supported}; use a vswitchd of the matching version", path.display())]
    Schema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },

    /// For stores that are not files (a later Kubernetes API store reports its failures here).
    #[error("IPAM store: {0}")]
    Backend(String),
}

/// Why a commit did not happen. A conflict is routine (someone else committed first: reload and
/// redo); a store error is not.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("IPAM state changed underneath: expected revision {expected}, found {found}")]
    Conflict { expected: u64, found: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

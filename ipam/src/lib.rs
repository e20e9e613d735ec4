//! Calico's block IPAM, without DPDK: pools are cut into blocks, a node claims blocks as it needs
//! them, and pods (handles) get addresses from their node's blocks.
//!
//! The state is one value ([`State`]) that the [`Ipam`] engine changes inside a store
//! transaction and commits whole, so an assignment is either durable in full or did not happen.
//! [`FileStore`] keeps it in one crash-safe file for standalone nodes; the `ipam-kube` crate
//! keeps it in the Kubernetes API, one object per block, with `resourceVersion`
//! compare-and-swap.
//!
//! ```
//! use ipam::{Attributes, FamilyCount, HandleId, Ipam, MemStore, Pool, PoolSelection};
//!
//! let ipam = Ipam::new(MemStore::new());
//! ipam.put_pool(Pool::new("default", "10.244.0.0/16", None)?)?;
//! let pod = HandleId::new("3f2a9c", "eth0")?;
//! let got = ipam.assign(&pod, "node-1", &PoolSelection::Any, FamilyCount::V4, &Attributes::new())?;
//! assert_eq!(got.addresses, ["10.244.0.0".parse::<std::net::IpAddr>()?]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod allocator;
mod block;
mod engine;
mod error;
mod file_store;
mod handle;
mod net;
mod pool;
mod state;
mod store;

pub use allocator::{Assigned, FamilyCount, Freed, PoolSelection, MAX_PER_FAMILY};
pub use block::{Allocation, Attributes, Block};
pub use engine::{Ipam, IpamConfig};
pub use error::{CommitError, IpamError, StoreError};
pub use file_store::{FileStore, SCHEMA};
pub use handle::{HandleId, HANDLE_PREFIX};
pub use ipnetwork::IpNetwork;
pub use net::Family;
pub use pool::{
    validate_pools, Pool, PoolSpec, BLOCK_SIZE_RANGE_V4, BLOCK_SIZE_RANGE_V6,
    DEFAULT_BLOCK_SIZE_V4, DEFAULT_BLOCK_SIZE_V6,
};
pub use state::{State, StateParts};
pub use store::{MemStore, Snapshot, Store, Transaction};

//! The IPAM state of a cluster as Kubernetes API objects: an [`ipam::Store`] over the API
//! server, so that every node's vswitchd draws pod addresses from one set of blocks.
//!
//! # Objects
//!
//! - `IPAMBlock` (`ipamblocks.vswitch.dev`, v1alpha1), one per claimed block, named after its
//!   CIDR (`10.244.0.0/26` → `10-244-0-0-26`). Calico's shape: `allocations` (per ordinal, an
//!   index into `attributes` or null), `unallocated`, `attributes` (handle, node, free-form
//!   `secondary`), `affinity: host:<node>`, sequence numbers.
//! - `BlockAffinity` (`blockaffinities.vswitch.dev`), one per claimed block, named
//!   `<node>-<block>`: the node's visible claim record, e.g. for `kubectl get blockaffinities`.
//! - Calico's `IPPool` (`ippools.crd.projectcalico.org`, v1): `spec.cidr`, `blockSize`,
//!   `disabled`. Read only: pools belong to the cluster's users. A commit that would change the
//!   pool set is refused with an error that says to use kubectl; vswitchd therefore does not push
//!   pools into this store (the agent's pools come from the same objects anyway). A block whose
//!   pool was deleted is kept under a disabled pool of its own (named `<pool>-retired-<block>`),
//!   so its addresses can still be released and none is handed out.
//!
//! # Which object is authoritative
//!
//! The `IPAMBlock`. Its `spec.affinity` says who owns the block and its allocations who holds
//! each address; every write to it carries the `resourceVersion` it was read at, and claiming a
//! block is *creating* its object, whose name follows from the CIDR. So two nodes cannot both
//! own a block (the second create gets AlreadyExists), and two writers cannot both take an
//! address (the second update gets a 409 Conflict): both become [`ipam::CommitError::Conflict`]
//! and the engine redoes its work on the fresh state. The `BlockAffinity` is written after the
//! block and only records the claim. Making it authoritative (Calico's order: pending affinity,
//! block, confirmed affinity) would need three writes per claim and a protocol to finish or roll
//! back half-done claims; here a crash between the two writes leaves a block without its record
//! (or a record of a block already released), which [`KubeStore::repair_affinities`] fixes at the
//! next start and which can never let an address out twice. Only the `confirmed` state is
//! written.
//!
//! # Revisions and commits
//!
//! `load` lists blocks, pools and affinities; the revision is the block list's
//! `resourceVersion` (etcd's revision). `commit` writes only the blocks that differ from what
//! was read: creates (claims) first, then updates, then deletes (an empty block given back),
//! each with its read `resourceVersion` as precondition (deletes too). Most operations touch one
//! block. Those that touch several:
//!
//! - `assign` of addresses of both families, or of more addresses than one block holds;
//! - `release` of a handle holding addresses in several blocks (dual stack);
//! - `gc`, `release_empty_blocks`, which sweep many blocks.
//!
//! Such a commit is not atomic in the API. If a write in the middle fails (a conflict, or an
//! error), the writes already made are undone, newest first, each conditional on the version it
//! produced; an undo that itself loses a race leaves that block as the other writer made it. The
//! engine then retries on the fresh state. No address is ever handed out twice, whatever happens
//! in between, because each block write is a compare-and-swap of the whole block. The worst a
//! failed undo leaves is a release or GC half done (the retry finishes it) or a dual-stack handle
//! with one family only (released by the CNI DEL that follows the failed ADD, or by GC).
//!
//! # Threads
//!
//! [`ipam::Store`] is synchronous; kube's client is async. The store runs its own
//! current-thread tokio runtime on a private thread and the caller blocks on a channel, so it
//! works from plain threads and from inside a tokio runtime alike (vswitchd's control thread is
//! a current-thread runtime, where `block_in_place` is not allowed).

#![forbid(unsafe_code)]

pub mod objects;
mod store;
mod worker;

pub use store::{KubeStore, StoreStats};

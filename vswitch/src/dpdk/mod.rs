//! The safe face of `dpdk-sys`: EAL, mempools, mbufs, ethdev ports, rings,
//! vhost-user interfaces.
//!
//! This room and `dpdk-sys` are the only places with `unsafe`; it knows
//! nothing of the pipeline above it, only the packet-buffer trait it
//! implements for mbufs. Everything per packet here is plain Rust over the
//! mbuf layout or one FFI call per burst.

pub mod eal;
pub mod error;
pub mod ethdev;
pub mod mbuf;
pub mod ring;
pub mod vhost;

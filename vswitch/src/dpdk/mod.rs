//! The safe face of `dpdk-sys` and of the kernel's packet interfaces: EAL,
//! mempools, mbufs, ethdev ports, rings, and the interfaces the switch drives
//! itself (TAP descriptors, vhost-user through librte_vhost).
//!
//! This room and `dpdk-sys` are the only places with `unsafe`; it knows
//! nothing of the pipeline above it, only the packet-buffer trait it
//! implements for mbufs. Everything per packet here is plain Rust over the
//! mbuf layout or one FFI call per burst (one system call per frame on a TAP).

pub mod eal;
pub mod error;
pub mod ethdev;
pub mod mbuf;
pub mod ring;
pub mod tap;
pub mod vhost;

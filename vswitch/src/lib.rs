//! vswitchd's library, in rooms that follow a packet and the configuration
//! that steers it (ARCHITECTURE.md at the repository root walks through them):
//!
//! - [`packet`]: the buffer trait the fast path is written over, and bursts;
//! - [`dpdk`]: the only unsafe code: EAL, mbufs, ethdevs, rings;
//! - [`wire`]: header formats as views and reprs, and the one checksum module;
//! - [`counters`]: per-worker counters and drop reasons;
//! - [`tables`]: what the fast path looks up: FDB, prefixes, conntrack, NAT,
//!   Services, neighbours, the underlay;
//! - [`pipeline`]: a burst through its stages (bridge, pods, firewall,
//!   Services, uplink, refusals), batched per output port;
//! - [`capture`]: copies of chosen ports' frames for `vsctl capture`;
//! - [`inquiry`]: questions to a worker about the tables it alone holds;
//! - [`snapshot`] and [`worker`]: what the workers run and the poll loop;
//! - [`control`]: the control thread: ports, pods, policies, the socket.
//!
//! Imports point down this list, never up.

#![deny(unsafe_code)]

pub mod capture;
pub mod control;
pub mod counters;
#[allow(unsafe_code)]
pub mod dpdk;
pub mod inquiry;
pub mod packet;
pub mod pipeline;
pub mod snapshot;
pub mod tables;
pub mod wire;
pub mod worker;

#[cfg(test)]
mod testing;

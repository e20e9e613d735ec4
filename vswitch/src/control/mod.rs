//! The control thread: the switch's ports and pods, IPAM, policy compilation,
//! the uplink's configuration, and the control socket. Every change is a new
//! [`crate::snapshot::Snapshot`] swapped in for the workers.

mod announce;
pub mod capacity;
pub mod capture;
pub mod config;
pub mod inspect;
pub mod metrics;
pub mod persist;
pub mod pods;
pub mod policies;
pub mod policy_state;
pub mod restore;
mod rule_hits;
pub mod socket;
mod sockets;
pub mod switch;
pub mod trace;
pub mod uplink;

//! vswitchd's library: the DPDK wrapper, the packet pipeline and its tables,
//! the workers and the control server.

pub mod conntrack;
pub mod control;
pub mod counters;
pub mod dpdk;
pub mod fdb;
pub mod firewall;
pub mod icmp;
pub mod l3;
pub mod lpm;
pub mod maglev;
pub mod nat;
pub mod neigh;
pub mod packet;
pub mod pipeline;
pub mod pods;
pub mod policies;
pub mod refuse;
pub mod services;
pub mod snapshot;
pub mod svcnat;
pub mod switch;
pub mod tunnel;
pub mod underlay;
pub mod uplink;
pub mod wire;
pub mod worker;

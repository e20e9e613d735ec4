//! vswitchd's library: the DPDK wrapper, the packet pipeline and its tables,
//! the workers and the control server.

pub mod control;
pub mod counters;
pub mod dpdk;
pub mod fdb;
pub mod l3;
pub mod packet;
pub mod pipeline;
pub mod pods;
pub mod snapshot;
pub mod switch;
pub mod wire;
pub mod worker;

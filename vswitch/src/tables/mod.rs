//! What the fast path looks up and remembers: the MAC table, longest-prefix
//! match, pods' endpoints and routes, connection tracking, natOutgoing, the
//! Service table and its translations, Maglev, the neighbour table and the
//! underlay's nodes. Tables hold no packet buffers and never transmit; the
//! stages in [`crate::pipeline`] look them up and act.

pub mod conntrack;
pub mod endpoints;
pub mod fdb;
pub mod lpm;
pub mod maglev;
pub mod nat;
pub mod neigh;
pub mod services;
pub mod svcnat;
pub mod templates;
pub mod underlay;

//! What the fast path looks up and remembers: the MAC table, longest-prefix
//! match, pods' endpoints and routes, connection tracking, natOutgoing, the
//! Service table and its translations, Maglev, the neighbour table and the
//! underlay's nodes. Tables know frames only through [`crate::wire`].

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

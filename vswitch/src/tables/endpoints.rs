//! Routed pods as the fast path sees them, and the table from a pod address
//! to the port behind which it lives.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// What the dataplane knows of a routed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub mac: u64,
    /// Its IPv4 addresses (host order).
    pub ips: Box<[u32]>,
    pub policy: EndpointPolicy,
    /// Its connection-tracking zone: new for every pod that takes the port,
    /// so no pod inherits the connections of the one before.
    pub zone: u16,
}

/// Where an endpoint's programs are in the compiled policy, and whether it
/// has any. The default is an endpoint not programmed yet: it passes
/// nothing but ARP, so that forgetting to program one fails closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointPolicy {
    /// Its index in the compiled policy.
    pub index: u32,
    /// Some policy of that direction selects it.
    pub ingress: bool,
    pub egress: bool,
    /// Its labels and the policy that selects it are known. Until they are,
    /// the pod may be one that its namespace's policy isolates.
    pub programmed: bool,
}

impl EndpointPolicy {
    /// Programmed, and no policy selects it: everything passes.
    pub const OPEN: EndpointPolicy = EndpointPolicy {
        index: 0,
        ingress: false,
        egress: false,
        programmed: true,
    };
}

impl Endpoint {
    #[inline(always)]
    pub(crate) fn owns(&self, ip: u32) -> bool {
        self.ips.contains(&ip)
    }
}

/// Where a pod address lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub port: u16,
    pub mac: u64,
}

/// Multiply-shift hashing for IPv4 keys: the table is built by the control
/// thread from trusted state, so speed matters more than flood resistance.
#[derive(Default)]
pub struct IpHasher(u64);

impl Hasher for IpHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Pod addresses to the ports behind which they live.
pub type Routes = HashMap<u32, Route, BuildHasherDefault<IpHasher>>;

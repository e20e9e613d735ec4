//! Kubernetes Services as the dataplane sees them: compiled into every
//! snapshot at publish from the applied `api::Service` list.
//!
//! - ClusterIP: (VIP, protocol, port) to a service port;
//! - NodePort: (protocol, nodePort) on this node's underlay address to a
//!   service port;
//! - per service port, its backends and a Maglev table over them, for
//!   ClusterIP and NodePort alike (`externalTrafficPolicy: Cluster`, the
//!   Kubernetes default: a NodePort connection may go to a backend on
//!   another node, see [`crate::tables::svcnat`]).
//!
//! The table is immutable once built; workers only read it. What a worker
//! learns (which connection went to which backend) lives in
//! [`crate::tables::svcnat`], beside the snapshot, and survives every swap.

use crate::tables::maglev::{backend_key, Maglev};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-xorshift over a 64-bit key: keys come from trusted state.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v);
    }
}

type Map<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// One backend: address and port, host order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub ip: u32,
    pub port: u16,
}

/// One port of one Service.
#[derive(Debug, Clone)]
pub struct ServicePort {
    /// `namespace/name` and the port, for reports.
    pub name: String,
    pub vip: u32,
    pub port: u16,
    pub proto: u8,
    pub node_port: Option<u16>,
    pub backends: Box<[Backend]>,
    /// Over `backends`; `None` when there are none.
    pub maglev: Option<Maglev>,
    /// Backends on this node (for reports, and for
    /// `externalTrafficPolicy: Local`, which the API does not carry yet).
    pub node_backends: Box<[Backend]>,
    /// `sessionAffinity: ClientIP`: seconds.
    pub affinity: Option<u32>,
}

/// Where a packet to a service address goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A service port (index into [`Services::ports`]).
    Port(u32),
    /// A service address, on a port (or protocol) it does not serve.
    UnknownPort,
    /// Not a service address.
    None,
}

/// The compiled Service table of one snapshot.
#[derive(Debug, Default)]
pub struct Services {
    pub ports: Vec<ServicePort>,
    /// (VIP, protocol, port) to port index.
    by_vip: Map<u32>,
    /// Every VIP, to refuse what goes to an unserved port.
    vips: HashSet<u32, BuildHasherDefault<KeyHasher>>,
    /// (protocol, nodePort) to port index (the `vip` of the entry is the
    /// service's first address; the node's address is in the underlay).
    by_node_port: Map<u32>,
}

#[inline(always)]
fn vip_key(vip: u32, proto: u8, port: u16) -> u64 {
    u64::from(vip) << 32 | u64::from(proto) << 16 | u64::from(port)
}

#[inline(always)]
fn node_key(proto: u8, port: u16) -> u64 {
    u64::from(proto) << 16 | u64::from(port)
}

impl Services {
    /// Compiles the applied Services; `local(ip)` says whether a backend
    /// address is a pod of this node.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a api::Service>,
        local: impl Fn(u32) -> bool,
    ) -> Services {
        let mut t = Services::default();
        for s in services {
            for p in &s.ports {
                let proto = p.protocol.number();
                if proto != 6 && proto != 17 {
                    // SCTP's CRC32c cannot be patched: not translated
                    continue;
                }
                let backends: Box<[Backend]> = p
                    .backends
                    .iter()
                    .map(|b| Backend {
                        ip: u32::from(b.ip),
                        port: b.port,
                    })
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let node_backends: Box<[Backend]> =
                    backends.iter().copied().filter(|b| local(b.ip)).collect();
                let maglev_of = |bs: &[Backend]| {
                    let keys: Vec<[u8; 6]> = bs.iter().map(|b| backend_key(b.ip, b.port)).collect();
                    Maglev::build(&keys, Maglev::size_for(keys.len()))
                };
                for (k, &vip) in s.cluster_ips.iter().enumerate() {
                    let idx = t.ports.len() as u32;
                    let vip = u32::from(vip);
                    t.ports.push(ServicePort {
                        name: format!("{}:{}/{}", s.name, p.port, p.protocol.as_str()),
                        vip,
                        port: p.port,
                        proto,
                        node_port: p.node_port,
                        maglev: maglev_of(&backends),
                        backends: backends.clone(),
                        node_backends: node_backends.clone(),
                        affinity: s.affinity_timeout,
                    });
                    t.by_vip.insert(vip_key(vip, proto, p.port), idx);
                    t.vips.insert(vip);
                    if k == 0 {
                        if let Some(np) = p.node_port {
                            t.by_node_port.insert(node_key(proto, np), idx);
                        }
                    }
                }
            }
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Whether `ip` is a Service address.
    #[inline(always)]
    pub fn is_vip(&self, ip: u32) -> bool {
        !self.vips.is_empty() && self.vips.contains(&ip)
    }

    /// The service port a packet to `dst`:`dport` over `proto` is for.
    #[inline]
    pub fn lookup(&self, dst: u32, proto: u8, dport: u16) -> Lookup {
        if self.vips.is_empty() || !self.vips.contains(&dst) {
            return Lookup::None;
        }
        match self.by_vip.get(&vip_key(dst, proto, dport)) {
            Some(&i) => Lookup::Port(i),
            None => Lookup::UnknownPort,
        }
    }

    /// The service port of a NodePort.
    #[inline]
    pub fn node_port(&self, proto: u8, port: u16) -> Option<u32> {
        if self.by_node_port.is_empty() {
            return None;
        }
        self.by_node_port.get(&node_key(proto, port)).copied()
    }

    #[inline(always)]
    pub fn port(&self, i: u32) -> Option<&ServicePort> {
        self.ports.get(i as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::{PROTO_TCP, PROTO_UDP};

    fn svc(json: serde_json::Value) -> api::Service {
        serde_json::from_value(json).expect("service")
    }

    #[test]
    fn vips_ports_and_node_ports_are_found() {
        let s = svc(serde_json::json!({
            "name": "default/web",
            "cluster_ips": ["10.96.0.10"],
            "ports": [
                {"protocol": "TCP", "port": 80, "node_port": 30080,
                 "backends": [{"ip": "10.65.0.1", "port": 8080}, {"ip": "10.65.1.1", "port": 8080}]},
                {"protocol": "UDP", "port": 53, "backends": []}
            ],
            "affinity_timeout": 60
        }));
        let t = Services::build([&s], |ip| ip == 0x0a41_0001);
        let vip = 0x0a60_000a;
        let Lookup::Port(i) = t.lookup(vip, PROTO_TCP, 80) else {
            panic!("tcp/80")
        };
        let p = t.port(i).expect("port");
        assert_eq!(p.backends.len(), 2);
        assert_eq!(p.node_backends.len(), 1, "one backend is local");
        assert_eq!(p.affinity, Some(60));
        assert!(p.maglev.is_some());
        assert!(matches!(t.lookup(vip, PROTO_UDP, 53), Lookup::Port(_)));
        assert_eq!(t.lookup(vip, PROTO_UDP, 80), Lookup::UnknownPort);
        assert_eq!(t.lookup(vip, PROTO_TCP, 81), Lookup::UnknownPort);
        assert_eq!(t.lookup(vip + 1, PROTO_TCP, 80), Lookup::None);
        assert_eq!(t.node_port(PROTO_TCP, 30080), Some(i));
        assert_eq!(t.node_port(PROTO_UDP, 30080), None);
        let Lookup::Port(u) = t.lookup(vip, PROTO_UDP, 53) else {
            panic!("udp/53")
        };
        assert!(t.port(u).expect("port").maglev.is_none(), "no backends");
    }
}

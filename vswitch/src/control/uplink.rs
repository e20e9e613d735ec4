//! The uplink's configuration turned into the [`Underlay`] of the next
//! snapshot: this node's address and subnet, the other nodes and their
//! blocks, each pool's encapsulation, the tunnel's MTU.

use crate::control::switch::Switch;
use crate::tables::lpm::{mask_of, Lpm};
use crate::tables::underlay::{encap_for, vtep_mac_of, Encap, RemoteNode, RemoteRoute, Underlay};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Parses "a.b.c.d/len" into (network, len), host order.
fn prefix(cidr: &str) -> Option<(u32, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    Some((u32::from(ip) & mask_of(len)?, len))
}

impl Switch {
    /// The underlay of the next snapshot: `None` without an uplink port or
    /// without this node's underlay address.
    pub(crate) fn build_underlay(&self, id: u64) -> Option<Underlay> {
        let cfg = &self.uplink;
        let uplink = self.port_id(cfg.port.as_deref()?)?;
        let host = cfg.host_port.as_deref().and_then(|p| self.port_id(p));
        let me = self.nodes.get(&self.node)?;
        let (ip, plen) = me.ipv4()?;
        let mut u = Underlay {
            id,
            uplink,
            host,
            mac: u64::from_be_bytes({
                let m = self.port_mac(uplink);
                [0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]
            }),
            ip: u32::from(ip),
            prefix: plen,
            gateway: cfg.gateway.map_or(0, u32::from),
            mtu: self.uplink_mtu(),
            ttl: cfg.tunnel_ttl,
            vtep_mac: me
                .vxlan_tunnel_mac
                .map_or_else(|| vtep_mac_of(&me.name), |m| m.to_u64()),
            vxlan_ip: me.vxlan_tunnel_ip.map_or(0, u32::from),
            ipip_ip: me.ipip_tunnel_ip.map_or(0, u32::from),
            nodes: Vec::new(),
            remote: Lpm::new(),
            peers: HashMap::new(),
            pools: Lpm::new(),
        };
        for p in self.pool_meta.values().filter(|p| !p.disabled) {
            if let Some((net, len)) = prefix(&p.cidr) {
                // prefix() checked the length: insert cannot refuse it
                let _ = u.pools.insert(net, len, p.nat_outgoing);
            }
        }
        for n in self.nodes.values().filter(|n| n.name != self.node) {
            let Some((nip, _)) = n.ipv4() else { continue };
            let nip = u32::from(nip);
            let idx = u.nodes.len() as u16;
            let same = u.in_subnet(nip);
            u.nodes.push(RemoteNode {
                name: n.name.clone(),
                ip: nip,
                next_hop: u.next_hop(nip),
                vtep_mac: n
                    .vxlan_tunnel_mac
                    .map_or_else(|| vtep_mac_of(&n.name), |m| m.to_u64()),
            });
            u.peers.insert(nip, idx);
            for b in &n.blocks {
                let Some((net, len)) = prefix(b) else {
                    continue;
                };
                // the pool the block was cut from decides; a block of no
                // known pool is routed natively
                let encap = self
                    .pool_meta
                    .values()
                    .find(|p| {
                        prefix(&p.cidr).is_some_and(|(pn, pl)| {
                            pl <= len && mask_of(pl).is_some_and(|m| net & m == pn)
                        })
                    })
                    .map_or(Encap::None, |p| encap_for(p, same));
                let _ = u.remote.insert(net, len, RemoteRoute { node: idx, encap });
            }
            if let Some(t) = n.vxlan_tunnel_ip {
                let _ = u.remote.insert(
                    u32::from(t),
                    32,
                    RemoteRoute {
                        node: idx,
                        encap: Encap::Vxlan,
                    },
                );
            }
            if let Some(t) = n.ipip_tunnel_ip {
                let _ = u.remote.insert(
                    u32::from(t),
                    32,
                    RemoteRoute {
                        node: idx,
                        encap: Encap::Ipip,
                    },
                );
            }
        }
        Some(u)
    }

    /// The MTU pods get: the uplink's, less the largest encapsulation any
    /// pool may use (Calico sizes pod MTUs the same way).
    pub(crate) fn pod_mtu(&self) -> u16 {
        let worst = self
            .pool_meta
            .values()
            .filter(|p| !p.disabled)
            .map(|p| {
                encap_for(p, false)
                    .overhead()
                    .max(encap_for(p, true).overhead())
            })
            .max()
            .unwrap_or(0);
        pod_mtu(self.uplink_mtu(), worst)
    }

    fn uplink_mtu(&self) -> u16 {
        self.uplink
            .port
            .as_deref()
            .and_then(|p| self.port_iface(p))
            .and_then(|iface| std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu")).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_masked() {
        assert_eq!(prefix("10.65.3.7/26"), Some((0x0a41_0300, 26)));
        assert_eq!(prefix("0.0.0.0/0"), Some((0, 0)));
        assert_eq!(prefix("10.65.3.7/33"), None);
    }
}

/// The pods' MTU: what the uplink carries after the largest encapsulation,
/// and never more than one buffer holds with its Ethernet header (a jumbo
/// uplink must not let pods send frames the switch cannot take whole).
fn pod_mtu(uplink_mtu: u16, overhead: u16) -> u16 {
    uplink_mtu
        .saturating_sub(overhead)
        .min(crate::dpdk::mbuf::FRAME_ROOM - 14)
}

#[cfg(test)]
mod mtu_tests {
    use super::pod_mtu;

    #[test]
    fn the_pod_mtu_fits_the_uplink_and_a_buffer() {
        assert_eq!(pod_mtu(1500, 50), 1450, "VXLAN on a standard uplink");
        assert_eq!(pod_mtu(1500, 0), 1500);
        assert_eq!(pod_mtu(9000, 50), 2034, "a jumbo uplink: one 2 KiB buffer");
        assert_eq!(pod_mtu(40, 50), 0);
    }
}

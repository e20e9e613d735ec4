//! The node's underlay: the uplink port, the remote nodes and their pod
//! blocks, and how each block is reached, as Calico decides it per IPPool.
//!
//! The control thread builds an [`Underlay`] into every snapshot from the
//! desired state: this node's underlay address (its Node object), the
//! other nodes (addresses, blocks, VXLAN tunnel MACs) and the pools'
//! `vxlanMode`/`ipipMode`. For a remote block the pool's mode gives the
//! encapsulation: Always encapsulates; CrossSubnet encapsulates only when
//! the remote node is outside this node's underlay subnet; Never (and
//! CrossSubnet within the subnet) routes natively, the pod packet sent to
//! the remote node's MAC as it is.
//!
//! What the uplink receives and the switch does not consume (ARP for
//! other hosts, traffic for the node's own address that is neither a tunnel
//! nor a natOutgoing reply) goes to the host port, a TAP whose kernel side
//! is the node's own network stack, and what the host sends goes out of the
//! uplink as it is: SSH, the agent and BGP keep working through the switch.

use crate::tables::lpm::{mask_of, Lpm};
use crate::wire::eth::mac_bytes;
use crate::wire::tunnel::{IpipOuter, IpipTemplate, VxlanOuter, VxlanTemplate};
use api::EncapMode;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// How packets for a remote block travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Routed natively: the pod packet goes to the remote node's MAC.
    None,
    Vxlan,
    Ipip,
}

impl Encap {
    /// Bytes the encapsulation adds in front of the pod's IPv4 packet.
    pub fn overhead(self) -> u16 {
        match self {
            Encap::None => 0,
            // outer Ethernet is not part of the MTU: IPv4 20 + UDP 8 +
            // VXLAN 8 + inner Ethernet 14
            Encap::Vxlan => 50,
            Encap::Ipip => 20,
        }
    }
}

/// Where a remote destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteRoute {
    /// Index into [`Underlay::nodes`].
    pub node: u16,
    pub encap: Encap,
}

/// Another node, as the dataplane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteNode {
    pub name: String,
    /// Its underlay address.
    pub ip: u32,
    /// Where packets for it go first: itself in this node's subnet, else
    /// the underlay gateway (0: none, unreachable).
    pub next_hop: u32,
    /// Its VXLAN device's MAC, the inner destination of VXLAN frames.
    pub vtep_mac: u64,
}

/// The underlay part of a snapshot.
pub struct Underlay {
    /// Tells one build from the next (template caches key on it).
    pub id: u64,
    pub uplink: u16,
    /// The host's exception port, if any.
    pub host: Option<u16>,
    /// The uplink's MAC and this node's underlay address.
    pub mac: u64,
    pub ip: u32,
    pub prefix: u8,
    pub gateway: u32,
    pub mtu: u16,
    /// The outer TTL of what the switch encapsulates.
    pub ttl: u8,
    /// This node's VXLAN MAC (the inner source of what it encapsulates).
    pub vtep_mac: u64,
    /// This node's VXLAN and IP-in-IP tunnel addresses (0: none).
    pub vxlan_ip: u32,
    pub ipip_ip: u32,
    pub nodes: Vec<RemoteNode>,
    /// Remote blocks and tunnel addresses.
    pub remote: Lpm<RemoteRoute>,
    /// Remote nodes by underlay address (the peers tunnels may come from).
    pub peers: HashMap<u32, u16>,
    /// Every pool: whether its pods' traffic to the outside is SNATed.
    pub pools: Lpm<bool>,
}

impl Underlay {
    #[inline]
    pub fn in_subnet(&self, ip: u32) -> bool {
        let mask = mask_of(self.prefix).unwrap_or(u32::MAX);
        ip & mask == self.ip & mask
    }

    /// The next hop towards an underlay address.
    #[inline]
    pub fn next_hop(&self, ip: u32) -> u32 {
        if self.in_subnet(ip) {
            ip
        } else {
            self.gateway
        }
    }

    /// The address this node sends a NodePort connection from, to a backend
    /// on another node reached by `encap`: its tunnel address when the
    /// packet is encapsulated (the address Linux would pick, the source of
    /// `vxlan.calico` or `tunl0`, as kube-proxy's MASQUERADE does under
    /// Calico), else its underlay address. The answer then comes back the
    /// way pod traffic does, in the tunnel: to an address of a pool, which
    /// the backend's node never SNATs for natOutgoing.
    #[inline]
    pub fn node_port_source(&self, encap: Encap) -> u32 {
        match encap {
            Encap::Vxlan if self.vxlan_ip != 0 => self.vxlan_ip,
            Encap::Ipip if self.ipip_ip != 0 => self.ipip_ip,
            _ => self.ip,
        }
    }

    /// Whether `ip` is one of this node's tunnel addresses.
    #[inline]
    pub fn is_tunnel_ip(&self, ip: u32) -> bool {
        ip != 0 && (ip == self.vxlan_ip || ip == self.ipip_ip)
    }

    /// Whether a packet from `src` to `dst` leaving through the uplink is
    /// SNATed: from a pod of a natOutgoing pool, to an address outside every
    /// pool and every remote node's blocks.
    #[inline]
    pub fn snat_needed(&self, src: u32, dst: u32) -> bool {
        self.pools.lookup(src) == Some(true)
            && self.pools.lookup(dst).is_none()
            && self.remote.lookup(dst).is_none()
    }

    /// The VXLAN headers towards `node` through the next hop `nh_mac`.
    pub fn vxlan_template(&self, node: &RemoteNode, nh_mac: u64) -> VxlanTemplate {
        VxlanTemplate::new(&VxlanOuter {
            ttl: self.ttl,
            ..VxlanOuter::new(
                mac_bytes(self.mac),
                mac_bytes(nh_mac),
                Ipv4Addr::from(self.ip),
                Ipv4Addr::from(node.ip),
            )
        })
    }

    /// The IP-in-IP headers towards `node` through the next hop `nh_mac`.
    pub fn ipip_template(&self, node: &RemoteNode, nh_mac: u64) -> IpipTemplate {
        IpipTemplate::new(&IpipOuter {
            ttl: self.ttl,
            ..IpipOuter::new(
                mac_bytes(self.mac),
                mac_bytes(nh_mac),
                Ipv4Addr::from(self.ip),
                Ipv4Addr::from(node.ip),
            )
        })
    }
}

/// The encapsulation a pool's modes give for a node in (or outside) this
/// node's subnet. A pool may not have both (refused when applied).
pub fn encap_for(pool: &api::IpPool, same_subnet: bool) -> Encap {
    let on = |m: Option<EncapMode>| match m.unwrap_or_default() {
        EncapMode::Always => true,
        EncapMode::CrossSubnet => !same_subnet,
        EncapMode::Never => false,
    };
    if on(pool.vxlan_mode) {
        Encap::Vxlan
    } else if on(pool.ipip_mode) {
        Encap::Ipip
    } else {
        Encap::None
    }
}

/// A locally administered MAC for a node's VXLAN device, stable per name,
/// for nodes whose Node object names none.
pub fn vtep_mac_of(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // 02:xx:xx:xx:xx:xx, unicast and locally administered
    0x02 << 40 | (h & 0x00ff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_modes_decide_the_encapsulation() {
        let mut p = api::IpPool::new("p", "10.65.0.0/16");
        assert_eq!(encap_for(&p, true), Encap::None);
        p.vxlan_mode = Some(EncapMode::Always);
        assert_eq!(encap_for(&p, true), Encap::Vxlan);
        p.vxlan_mode = Some(EncapMode::CrossSubnet);
        assert_eq!(encap_for(&p, true), Encap::None);
        assert_eq!(encap_for(&p, false), Encap::Vxlan);
        p.vxlan_mode = None;
        p.ipip_mode = Some(EncapMode::CrossSubnet);
        assert_eq!(encap_for(&p, false), Encap::Ipip);
        assert_eq!(encap_for(&p, true), Encap::None);
        p.ipip_mode = Some(EncapMode::Always);
        assert_eq!(encap_for(&p, true), Encap::Ipip);
    }

    #[test]
    fn vtep_macs_are_local_unicast_and_stable() {
        let m = mac_bytes(vtep_mac_of("node-1"));
        assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
        assert_eq!(vtep_mac_of("node-1"), vtep_mac_of("node-1"));
        assert_ne!(vtep_mac_of("node-1"), vtep_mac_of("node-2"));
    }
}

//! The pipeline stages of the underlay: pod packets for remote blocks
//! (encapsulated or routed natively) and for the outside world (natOutgoing),
//! and what arrives on the uplink (ARP, VXLAN, IP-in-IP, natively routed pod
//! traffic, natOutgoing replies, the host's own traffic).
//!
//! Next hops come from the shared neighbour table. A packet whose next hop
//! is not resolved yet is turned into the ARP request that resolves it (at
//! most one a second per address) and counted as `neigh_pending`: nothing is
//! held, nothing allocated.

use crate::counters::{DropReason, WorkerCounters};
use crate::packet::{Burst, PacketBuf};
use crate::pipeline::l3::{self, Verdict};
use crate::pipeline::services::FromPod;
use crate::pipeline::{slot, Context, Pipeline, TxSink};
use crate::tables::conntrack::Flow;
use crate::tables::endpoints::Endpoint;
use crate::tables::nat::{self, NatDrop};
use crate::tables::neigh::{self, Resolution, UplinkArp};
use crate::tables::underlay::{Encap, RemoteRoute, Underlay};
use crate::wire::eth::{mac_bytes, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HLEN};
use crate::wire::ipv4::ipv4_header;
use crate::wire::tunnel::{self, VxlanRx, IPPROTO_IPIP, IPPROTO_UDP};
use policy::Direction;
use std::net::Ipv4Addr;

const GATEWAY_MAC: [u8; 8] = {
    let m = api::GATEWAY_MAC.0;
    [0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]
};

#[inline(always)]
fn ip_dst(frame: &[u8]) -> u32 {
    u32::from_be_bytes([frame[30], frame[31], frame[32], frame[33]])
}

#[inline(always)]
fn set_macs(frame: &mut [u8], dst: u64, src: u64) {
    frame[0..6].copy_from_slice(&mac_bytes(dst));
    frame[6..12].copy_from_slice(&mac_bytes(src));
}

/// The reverse-path check of a natively routed packet from the underlay
/// with source `src`: `Some(next hop)` when only the MAC of that underlay
/// address may have sent it. Pool addresses are pods', and a pod's packet
/// comes from its node: a source in a remote block only through that
/// block's node (or the gateway in front of it), and only if this node
/// would send to that block natively too, so that pools which always
/// encapsulate take their sources only from the tunnel; a pool address in
/// no remote block (this node's own blocks, unclaimed ones) never.
/// Addresses outside every pool are the outside world's: policy judges them.
#[inline]
fn native_source(u: &Underlay, src: u32) -> Result<Option<u32>, DropReason> {
    match u.remote.lookup(src) {
        Some(rr) if rr.encap != Encap::None => Err(DropReason::RpfNotTunneled),
        Some(rr) => match u.nodes.get(usize::from(rr.node)).map(|n| n.next_hop) {
            Some(nh) if nh != 0 => Ok(Some(nh)),
            _ => Err(DropReason::RpfWrongNode),
        },
        None if u.pools.lookup(src).is_some() => Err(DropReason::RpfWrongNode),
        None => Ok(None),
    }
}

impl<P: PacketBuf> Pipeline<P> {
    /// A pod packet for an address no local pod owns (TTL already
    /// decremented): to a remote node, to the outside world, or nowhere.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn beyond<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        in_port: u16,
        ep: &Endpoint,
        mut pkt: P,
        dst: u32,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let Some(u) = cx.underlay else {
            return Err(DropReason::NoRoute);
        };
        let flow = Flow::parse(&pkt.data()[ETH_HLEN..]);
        if dst == u.ip {
            // the node itself: its stack is behind the host port
            self.zone(cx, in_port, ep, Direction::Egress, &flow, ctr)?;
            let host = u.host.ok_or(DropReason::NoRoute)?;
            let host_mac = u.mac;
            set_macs(
                pkt.data_mut(),
                host_mac,
                u64::from_be_bytes([0, 0, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee]),
            );
            self.enqueue(host, pkt, sink, ctr);
            return Ok(());
        }
        match u.remote.lookup(dst) {
            Some(rr) => {
                self.zone(cx, in_port, ep, Direction::Egress, &flow, ctr)?;
                self.send_remote(cx, u, rr, pkt, Some(in_port), sink, ctr)
            }
            // an address of a pool that no node has claimed
            None if u.pools.lookup(dst).is_some() => Err(DropReason::NoRoute),
            None => {
                self.zone(cx, in_port, ep, Direction::Egress, &flow, ctr)?;
                let nh = u.next_hop(dst);
                if nh == 0 {
                    return Err(DropReason::NoRoute);
                }
                let Some(mac) = self.next_hop_mac(cx, u, nh, sink, ctr) else {
                    return self.resolve(cx, u, nh, pkt, sink, ctr);
                };
                set_macs(pkt.data_mut(), mac, u.mac);
                self.send_uplink(cx, u, pkt, sink, ctr)
            }
        }
    }

    /// Out of the uplink: natOutgoing first, when this worker owns the
    /// uplink (otherwise its owner does it in `deliver_uplink`).
    fn send_uplink<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        mut pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        if cx.local.contains(u.uplink) {
            self.snat_if_needed(cx, u, &mut pkt)?;
        }
        self.enqueue(u.uplink, pkt, sink, ctr);
        Ok(())
    }

    /// SNATs a packet leaving through the uplink if its pool says so.
    fn snat_if_needed(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        pkt: &mut P,
    ) -> Result<(), DropReason> {
        let d = pkt.data();
        if d.len() < ETH_HLEN + 20 || u16::from_be_bytes([d[12], d[13]]) != ETHERTYPE_IPV4 {
            return Ok(());
        }
        if ipv4_header(d).is_some() && self.service_node_reply(cx, pkt) {
            // a NodePort backend's answer: from the node's NodePort already
            return Ok(());
        }
        let d = pkt.data();
        let src = u32::from_be_bytes([d[26], d[27], d[28], d[29]]);
        if !u.snat_needed(src, ip_dst(d)) {
            return Ok(());
        }
        let flow = Flow::parse(&d[ETH_HLEN..]);
        match self.snat.outbound(&flow, u.ip, cx.now) {
            Ok(port) => {
                nat::snat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], u.ip, port);
                Ok(())
            }
            Err(NatDrop::Exhausted) => Err(DropReason::NatExhausted),
            Err(_) => Err(DropReason::NatUnsupported),
        }
    }

    /// Packets other workers switched to the uplink, which this worker
    /// owns: natOutgoing, then out.
    pub(crate) fn deliver_uplink(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        pkts: &mut Burst<P>,
        ctr: &WorkerCounters,
    ) {
        let mut kept = Burst::new();
        for mut pkt in pkts.drain(..) {
            match self.snat_if_needed(cx, u, &mut pkt) {
                Ok(()) => kept.push(pkt),
                Err(why) => {
                    ctr.drop(why, 1);
                    ctr.ports[slot(u.uplink)].tx_drops.add(1);
                }
            }
        }
        *pkts = kept;
    }

    /// To a remote node's block: natively or through a tunnel. A packet
    /// too big for the tunnel is answered with "fragmentation needed" when
    /// it came from a pod (`in_port`).
    #[allow(clippy::too_many_arguments)]
    fn send_remote<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        rr: RemoteRoute,
        mut pkt: P,
        in_port: Option<u16>,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let Some(node) = u.nodes.get(usize::from(rr.node)) else {
            return Err(DropReason::NoRoute);
        };
        if node.next_hop == 0 {
            return Err(DropReason::NoRoute);
        }
        let Some(nh_mac) = self.next_hop_mac(cx, u, node.next_hop, sink, ctr) else {
            return self.resolve(cx, u, node.next_hop, pkt, sink, ctr);
        };
        let d = pkt.data();
        let total = u16::from_be_bytes([d[16], d[17]]);
        let df = d[20] & 0x40 != 0;
        if u32::from(total) + u32::from(rr.encap.overhead()) > u32::from(u.mtu) {
            if let (true, Some(port)) = (df, in_port) {
                let from = (u64::from_be_bytes(GATEWAY_MAC), u32::from(api::GATEWAY_IP));
                self.frag_needed(cx, u, rr.encap, pkt, port, from, sink, ctr);
            }
            return Err(DropReason::TooBig);
        }
        match rr.encap {
            Encap::None => set_macs(pkt.data_mut(), nh_mac, u.mac),
            Encap::Vxlan => {
                set_macs(pkt.data_mut(), node.vtep_mac, u.vtep_mac);
                let port = tunnel::flow_src_port(pkt.data());
                let Some(t) = self.templates.get(u, usize::from(rr.node), nh_mac) else {
                    return Err(DropReason::NoRoute);
                };
                t.vxlan
                    .encap(&mut pkt, port)
                    .map_err(|_| DropReason::TooBig)?;
            }
            Encap::Ipip => {
                let Some(t) = self.templates.get(u, usize::from(rr.node), nh_mac) else {
                    return Err(DropReason::NoRoute);
                };
                t.ipip.encap(&mut pkt).map_err(|_| DropReason::TooBig)?;
            }
        }
        self.enqueue(u.uplink, pkt, sink, ctr);
        Ok(())
    }

    /// Sends an ICMP "fragmentation needed" back to the sender (a pod, or a
    /// NodePort client) on `port`, from `from` (MAC, address), in the buffer
    /// of the packet that was too big.
    #[allow(clippy::too_many_arguments)]
    fn frag_needed<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        encap: Encap,
        mut pkt: P,
        port: u16,
        from: (u64, u32),
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        if !self.answer_allowed(cx.now, ctr) {
            return;
        }
        let d = pkt.data();
        let pod_mac = u64::from_be_bytes([0, 0, d[6], d[7], d[8], d[9], d[10], d[11]]);
        let mut quoted = [0u8; 60 + 8];
        let n = (d.len() - ETH_HLEN).min(quoted.len());
        quoted[..n].copy_from_slice(&d[ETH_HLEN..ETH_HLEN + n]);
        let mtu = u.mtu.saturating_sub(encap.overhead());
        let mut out = [0u8; 20 + 8 + 60 + 8];
        let len = crate::wire::icmp::frag_needed(&quoted[..n], mtu, from.1, &mut out);
        if len == 0 || !pkt.truncate(ETH_HLEN + len) {
            return;
        }
        let f = pkt.data_mut();
        f[0..6].copy_from_slice(&mac_bytes(pod_mac));
        f[6..12].copy_from_slice(&mac_bytes(from.0));
        f[ETH_HLEN..ETH_HLEN + len].copy_from_slice(&out[..len]);
        self.enqueue(port, pkt, sink, ctr);
    }

    /// The MAC of the next hop `nh`. A stale entry is still used while an
    /// ARP request of its own (one a second) confirms it, so traffic to a
    /// busy next hop never waits for its entry to expire.
    fn next_hop_mac<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        nh: u32,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Option<u64> {
        match cx.neigh.resolve(nh, cx.now) {
            Resolution::Reachable(mac) => Some(mac),
            Resolution::Stale(mac) => {
                if cx.neigh.mark_pending(nh, cx.now) {
                    if let Some(mut req) = sink.alloc(60) {
                        let mut arp = [0u8; 42];
                        neigh::arp_request(&mut arp, u.mac, u.ip, nh);
                        req.data_mut()[..42].copy_from_slice(&arp);
                        self.enqueue(u.uplink, req, sink, ctr);
                    }
                }
                Some(mac)
            }
            Resolution::Unknown => None,
        }
    }

    /// Sends an ARP request for `nh` (at most one a second per address) out
    /// of the uplink, in a new buffer, or in this packet's when none can be
    /// had; the packet itself is dropped as `neigh_pending`.
    fn resolve<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        nh: u32,
        mut pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        if !cx.neigh.mark_pending(nh, cx.now) {
            return Err(DropReason::NeighPending);
        }
        if !cx.neigh.request_allowed(cx.now) {
            ctr.arp_suppressed.add(1);
            return Err(DropReason::NeighPending);
        }
        let req = match sink.alloc(60) {
            Some(r) => Some(r),
            None if pkt.data().len() >= 60 && pkt.truncate(60) => Some(pkt),
            None => None,
        };
        if let Some(mut req) = req {
            let f = req.data_mut();
            let mut arp = [0u8; 42];
            neigh::arp_request(&mut arp, u.mac, u.ip, nh);
            f[..42].copy_from_slice(&arp);
            f[42..60].fill(0);
            self.enqueue(u.uplink, req, sink, ctr);
        }
        Err(DropReason::NeighPending)
    }

    /// A burst from the uplink.
    pub(crate) fn uplink_rx<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        pkts: &mut Burst<P>,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        let mut rx_drops = 0u64;
        for pkt in pkts.drain(..) {
            if let Err(why) = self.take_uplink(cx, u, pkt, sink, ctr) {
                ctr.drop(why, 1);
                rx_drops += 1;
            }
        }
        if rx_drops != 0 {
            ctr.ports[slot(u.uplink)].rx_drops.add(rx_drops);
        }
    }

    fn take_uplink<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        mut pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let d = pkt.data();
        if d.len() < ETH_HLEN {
            return Err(DropReason::Runt);
        }
        match u16::from_be_bytes([d[12], d[13]]) {
            ETHERTYPE_ARP => {
                match neigh::handle_arp(pkt.data_mut(), u.ip, u.mac, cx.neigh, cx.now) {
                    UplinkArp::Reply => {
                        self.enqueue(u.uplink, pkt, sink, ctr);
                        Ok(())
                    }
                    // the host resolves its own neighbours too
                    UplinkArp::Learned | UplinkArp::Ignore => {
                        self.punt_host(u, pkt, sink, ctr, DropReason::ArpIgnored)
                    }
                }
            }
            ETHERTYPE_IPV4 => {
                if d.len() < ETH_HLEN + 20 {
                    return Err(DropReason::BadLength);
                }
                // what is not sent to the switch's MAC (broadcasts, other
                // hosts' frames a bridge floods) is the host's business
                if d[0..6] != mac_bytes(u.mac) {
                    return self.punt_host(u, pkt, sink, ctr, DropReason::NotForUs);
                }
                let ip = &d[ETH_HLEN..];
                let dst = ip_dst(d);
                if dst == u.ip {
                    let proto = ip[9];
                    let ihl = usize::from(ip[0] & 0x0f) * 4;
                    let udp_dport = ip
                        .get(ihl + 2..ihl + 4)
                        .map(|p| u16::from_be_bytes([p[0], p[1]]));
                    let is_local = |a: Ipv4Addr| u32::from(a) == u.ip;
                    let is_peer = |a: Ipv4Addr| u.peers.contains_key(&u32::from(a));
                    if proto == IPPROTO_UDP && udp_dport == Some(tunnel::VXLAN_PORT) {
                        let info =
                            tunnel::decap_vxlan(d, &VxlanRx::default(), &(is_local, is_peer))
                                .map_err(DropReason::from)?;
                        if !tunnel::strip(&mut pkt, &info) {
                            return Err(DropReason::TunnelTruncated);
                        }
                        return self.decapsulated(cx, u, pkt, sink, ctr);
                    }
                    if proto == IPPROTO_IPIP {
                        let info = tunnel::decap_ipip(d, &(is_local, is_peer))
                            .map_err(DropReason::from)?;
                        if !tunnel::strip(&mut pkt, &info) {
                            return Err(DropReason::TunnelTruncated);
                        }
                        return self.decapsulated(cx, u, pkt, sink, ctr);
                    }
                    // a reply to a natOutgoing flow? (tunnel frames were
                    // checked by their decapsulation, with its own reasons)
                    if ipv4_header(d).is_none() {
                        return Err(DropReason::BadLength);
                    }
                    let flow = Flow::parse(ip);
                    let back = if flow.quoted.is_some() {
                        self.snat
                            .inbound_icmp_error(&flow, &mut pkt.data_mut()[ETH_HLEN..], cx.now)
                            .is_some()
                    } else {
                        match self.snat.inbound(&flow, cx.now) {
                            Some((pod, port)) => {
                                nat::dnat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], pod, port);
                                if !cx.routes.contains_key(&pod) {
                                    // no pod's: a NodePort client's, answered
                                    // by a backend on another node
                                    return self.node_port_answer(cx, u, pkt, sink, ctr);
                                }
                                true
                            }
                            None => false,
                        }
                    };
                    if back {
                        return self.deliver_pod(cx, pkt, sink, ctr);
                    }
                    match self.service_node_port(cx, u, &flow, &mut pkt, ctr) {
                        FromPod::Pass => {}
                        FromPod::Judge(f) if cx.routes.contains_key(&f.dst) => {
                            return self.deliver_pod(cx, pkt, sink, ctr)
                        }
                        FromPod::Judge(f) => {
                            return self.node_port_remote(cx, u, &flow, &f, pkt, sink, ctr)
                        }
                        FromPod::Refused(why) => {
                            self.enqueue(u.uplink, pkt, sink, ctr);
                            return Err(why);
                        }
                        FromPod::Drop(why) => return Err(why),
                    }
                    return self.punt_host(u, pkt, sink, ctr, DropReason::NotForUs);
                }
                // routed natively: by a node whose pool says Never (or
                // CrossSubnet within the subnet), or by a router that knows
                // the pod routes; the pods' policy judges it like any traffic
                // once its source passed the reverse-path check
                if cx.routes.contains_key(&dst) {
                    let src = u32::from_be_bytes([d[26], d[27], d[28], d[29]]);
                    // a local pod's source is deliver_pod's to refuse
                    if !cx.routes.contains_key(&src) {
                        if let Some(nh) = native_source(u, src)? {
                            let from =
                                u64::from_be_bytes([0, 0, d[6], d[7], d[8], d[9], d[10], d[11]]);
                            // a node that only sends may have let its entry
                            // expire: ask again, as for traffic towards it
                            match self.next_hop_mac(cx, u, nh, sink, ctr) {
                                Some(mac) if mac == from => {}
                                Some(_) => return Err(DropReason::RpfWrongNode),
                                None => return self.resolve(cx, u, nh, pkt, sink, ctr),
                            }
                        }
                    }
                    return self.deliver_pod(cx, pkt, sink, ctr);
                }
                self.punt_host(u, pkt, sink, ctr, DropReason::NotForUs)
            }
            _ => self.punt_host(u, pkt, sink, ctr, DropReason::NotForUs),
        }
    }

    /// A decapsulated packet: for a local pod, or, to this node's own tunnel
    /// address, the answer of a NodePort backend on another node.
    fn decapsulated<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        mut pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let d = pkt.data();
        if d.len() < ETH_HLEN + 20 || !u.is_tunnel_ip(ip_dst(d)) || ipv4_header(d).is_none() {
            return self.deliver_pod(cx, pkt, sink, ctr);
        }
        let flow = Flow::parse(&d[ETH_HLEN..]);
        let (client, port) = self
            .snat
            .inbound(&flow, cx.now)
            .ok_or(DropReason::NoRoute)?;
        nat::dnat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], client, port);
        self.node_port_answer(cx, u, pkt, sink, ctr)
    }

    /// A NodePort connection (`flow`, its destination already the backend's)
    /// to a backend on another node: from this node (see
    /// [`Underlay::node_port_source`]), on a port of
    /// the natOutgoing table, so that the answer comes back here; then to
    /// the backend's node as pod traffic goes. The backend's ingress policy
    /// sees this node as the client, as with kube-proxy in Cluster mode.
    #[allow(clippy::too_many_arguments)]
    fn node_port_remote<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        orig: &Flow,
        flow: &Flow,
        mut pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let rr = u.remote.lookup(flow.dst).ok_or(DropReason::NoRoute)?;
        let d = pkt.data();
        let total = u16::from_be_bytes([d[16], d[17]]);
        if u32::from(total) + u32::from(rr.encap.overhead()) > u32::from(u.mtu) {
            if d[20] & 0x40 != 0 {
                // path MTU discovery, as Linux in front of a tunnel does it:
                // the client learns the tunnel's MTU from this node, about
                // the packet it sent (its destination the NodePort again)
                nat::dnat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], orig.dst, orig.dport);
                self.frag_needed(cx, u, rr.encap, pkt, u.uplink, (u.mac, u.ip), sink, ctr);
            }
            return Err(DropReason::TooBig);
        }
        match l3::forward(pkt.data_mut(), cx.routes) {
            Verdict::Beyond(_) => {}
            Verdict::Drop(why) => return Err(why),
            _ => return Err(DropReason::NoRoute),
        }
        let src = u.node_port_source(rr.encap);
        let port = match self.snat.outbound(flow, src, cx.now) {
            Ok(port) => port,
            Err(NatDrop::Exhausted) => return Err(DropReason::NatExhausted),
            Err(_) => return Err(DropReason::NatUnsupported),
        };
        nat::snat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], src, port);
        self.send_remote(cx, u, rr, pkt, None, sink, ctr)
    }

    /// The answer of a NodePort backend on another node, its destination
    /// the client again: from this node's address and nodePort, out of the
    /// uplink towards the client.
    fn node_port_answer<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        mut pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        if !self.service_node_reply(cx, &mut pkt) {
            return Err(DropReason::NoRoute);
        }
        let dst = match l3::forward(pkt.data_mut(), cx.routes) {
            Verdict::Beyond(dst) => dst,
            Verdict::Drop(why) => return Err(why),
            _ => return Err(DropReason::NoRoute),
        };
        let nh = u.next_hop(dst);
        if nh == 0 {
            return Err(DropReason::NoRoute);
        }
        let Some(mac) = self.next_hop_mac(cx, u, nh, sink, ctr) else {
            return self.resolve(cx, u, nh, pkt, sink, ctr);
        };
        set_macs(pkt.data_mut(), mac, u.mac);
        self.enqueue(u.uplink, pkt, sink, ctr);
        Ok(())
    }

    /// The host's exception port takes what the switch does not.
    fn punt_host<S: TxSink<P>>(
        &mut self,
        u: &Underlay,
        pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
        otherwise: DropReason,
    ) -> Result<(), DropReason> {
        match u.host {
            Some(h) => {
                self.enqueue(h, pkt, sink, ctr);
                Ok(())
            }
            None => Err(otherwise),
        }
    }

    /// A burst from the host's port: out of the uplink as it is.
    pub(crate) fn host_rx<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        u: &Underlay,
        pkts: &mut Burst<P>,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        for pkt in pkts.drain(..) {
            // the host talks to its own pods (kubelet probes) through the
            // switch's routing and their ingress policy
            let d = pkt.data();
            let to_pod = ipv4_header(d).is_some()
                && u16::from_be_bytes([d[12], d[13]]) == ETHERTYPE_IPV4
                && cx.routes.contains_key(&ip_dst(d));
            if to_pod {
                if let Err(why) = self.deliver_pod(cx, pkt, sink, ctr) {
                    ctr.drop(why, 1);
                }
                continue;
            }
            self.enqueue(u.uplink, pkt, sink, ctr);
        }
    }

    /// An IPv4 frame from the underlay (decapsulated, untranslated or
    /// routed natively) for a local pod: routed, then the pod's ingress.
    fn deliver_pod<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        mut pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let d = pkt.data();
        if d.len() < ETH_HLEN + 20 || u16::from_be_bytes([d[12], d[13]]) != ETHERTYPE_IPV4 {
            return Err(DropReason::NotIpv4);
        }
        // a local pod's address never comes from the underlay: whoever sends
        // it there would borrow that pod's standing with the others' policy
        let src = u32::from_be_bytes([d[26], d[27], d[28], d[29]]);
        if cx.routes.contains_key(&src) {
            return Err(DropReason::SpoofedIp);
        }
        let out = match l3::forward(pkt.data_mut(), cx.routes) {
            Verdict::Out(out) => out,
            // never back into the underlay: no transit through this node
            Verdict::Beyond(_) => return Err(DropReason::NoRoute),
            Verdict::Reply(_) => return Err(DropReason::NoRoute),
            Verdict::Drop(why) => return Err(why),
        };
        if cx.local.contains(out) {
            if let Some(Some(dst)) = cx.endpoints.get(slot(out)) {
                let flow = Flow::parse(&pkt.data()[ETH_HLEN..]);
                self.zone(cx, out, dst, Direction::Ingress, &flow, ctr)?;
                self.service_to_pod(cx, dst.zone, &flow, &mut pkt);
            }
        }
        self.enqueue(out, pkt, sink, ctr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::firewall::PolicyView;
    use crate::pipeline::{Burst, PortSet, MAX_PORTS};
    use crate::tables::conntrack::Timeouts;
    use crate::tables::endpoints::{EndpointPolicy, Routes};
    use crate::tables::fdb::Fdb;
    use crate::tables::lpm::Lpm;
    use crate::tables::neigh::Neighbors;
    use crossbeam_queue::ArrayQueue;
    use std::collections::HashMap;

    const UPLINK: u16 = 9;
    const NODE: u32 = 0xc0a8_3201; // 192.168.50.1
    const EXTERNAL: u32 = 0xc0a8_3264; // 192.168.50.100
    const POD: u32 = 0x0a48_0101; // 10.72.1.1
    const POD_MAC: u64 = 0x0200_0a48_0101;
    const EXT_MAC: u64 = 0x0200_0000_0064;

    /// Keeps what is sent; gives buffers for frames the switch makes.
    #[derive(Default)]
    struct Sink {
        got: Vec<(u16, Vec<u8>)>,
    }

    impl TxSink<Vec<u8>> for Sink {
        fn send(&mut self, port: u16, pkts: &mut Burst<Vec<u8>>) -> DropReason {
            self.got.extend(pkts.drain(..).map(|p| (port, p)));
            DropReason::TxFull
        }
        fn alloc(&mut self, len: u16) -> Option<Vec<u8>> {
            Some(vec![0; usize::from(len)])
        }
    }

    fn underlay() -> Underlay {
        Underlay {
            id: 1,
            uplink: UPLINK,
            host: None,
            mac: 0x0200_0000_0001,
            ip: NODE,
            prefix: 24,
            gateway: 0,
            mtu: 1500,
            ttl: 64,
            vtep_mac: 0x0200_0000_00ff,
            vxlan_ip: 0,
            ipip_ip: 0,
            nodes: Vec::new(),
            remote: Lpm::new(),
            peers: HashMap::new(),
            pools: Lpm::new(),
        }
    }

    fn udp_to_external() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&api::GATEWAY_MAC.0);
        f.extend_from_slice(&POD_MAC.to_be_bytes()[2..]);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&POD.to_be_bytes());
        f.extend_from_slice(&EXTERNAL.to_be_bytes());
        crate::testing::fill_header_checksum(&mut f[14..]);
        f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        f
    }

    /// One pod packet to the external host at `now`; what left the uplink.
    fn send_at(pipe: &mut Pipeline<Vec<u8>>, neigh: &Neighbors, now: u32) -> Vec<Vec<u8>> {
        let u = underlay();
        let mut endpoints = vec![None; MAX_PORTS];
        endpoints[1] = Some(Endpoint {
            mac: POD_MAC,
            ips: vec![POD].into(),
            policy: EndpointPolicy::OPEN,
            zone: 1,
        });
        let routes = Routes::default();
        let fdb = Fdb::new(64, 300);
        let log = ArrayQueue::new(4);
        let compiled = policy::compile::Compiled::empty();
        let cx = Context {
            fdb: &fdb,
            domain: &[],
            endpoints: &endpoints,
            routes: &routes,
            now,
            local: &PortSet::ALL,
            policy: PolicyView {
                compiled: &compiled,
                generation: 0,
                rule_slots: &[],
            },
            log: &log,
            underlay: Some(&u),
            neigh,
            services: &crate::tables::services::Services::default(),
        };
        let ctr = WorkerCounters::new(MAX_PORTS);
        let mut sink = Sink::default();
        let mut b: Burst<Vec<u8>> = [udp_to_external()].into_iter().collect();
        pipe.process(&cx, 1, &mut b, &mut sink, &ctr);
        assert!(sink.got.iter().all(|(p, _)| *p == UPLINK));
        sink.got.into_iter().map(|(_, f)| f).collect()
    }

    #[test]
    fn a_stale_next_hop_is_used_while_a_request_of_its_own_confirms_it() {
        let neigh = Neighbors::new(64);
        let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1024, Timeouts::default());
        // unknown: the packet itself becomes the request
        let out = send_at(&mut pipe, &neigh, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][12..14], [0x08, 0x06], "an ARP request");
        assert!(neigh.learn(EXTERNAL, EXT_MAC, 2));
        // reachable: forwarded to it, nothing else
        let out = send_at(&mut pipe, &neigh, 10);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0..6], EXT_MAC.to_be_bytes()[2..]);
        // stale (past 4/5 of the reachable time): forwarded, and a request
        // in a buffer of its own, once a second
        let stale = 2 + neigh.reachable() * 4 / 5 + 1;
        let out = send_at(&mut pipe, &neigh, stale);
        assert_eq!(out.len(), 2, "the packet and a request");
        assert!(out
            .iter()
            .any(|f| f[0..6] == EXT_MAC.to_be_bytes()[2..] && f[12..14] == [0x08, 0x00]));
        let req = out
            .iter()
            .find(|f| f[12..14] == [0x08, 0x06])
            .expect("ARP request");
        assert_eq!(req[38..42], EXTERNAL.to_be_bytes(), "asks for the next hop");
        assert_eq!(
            send_at(&mut pipe, &neigh, stale).len(),
            1,
            "one request a second"
        );
    }

    /// A frame on the uplink for the local pod at `dst` from `src`, to `dst_mac`.
    fn from_underlay(dst_mac: u64, src: u32, dst: u32) -> Vec<u8> {
        let mut f = udp_to_external();
        f[0..6].copy_from_slice(&dst_mac.to_be_bytes()[2..]);
        f[6..12].copy_from_slice(&EXT_MAC.to_be_bytes()[2..]);
        f[26..30].copy_from_slice(&src.to_be_bytes());
        f[30..34].copy_from_slice(&dst.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        crate::testing::fill_header_checksum(&mut f[14..]);
        f
    }

    #[test]
    fn the_underlay_cannot_speak_for_a_local_pod() {
        let u = underlay();
        let other_pod: u32 = 0x0a48_0102;
        let mut endpoints = vec![None; MAX_PORTS];
        for (port, ip) in [(1usize, POD), (2, other_pod)] {
            endpoints[port] = Some(Endpoint {
                mac: POD_MAC + port as u64,
                ips: vec![ip].into(),
                policy: EndpointPolicy::OPEN,
                zone: port as u16,
            });
        }
        let mut routes = Routes::default();
        routes.insert(
            POD,
            crate::tables::endpoints::Route {
                port: 1,
                mac: POD_MAC + 1,
            },
        );
        routes.insert(
            other_pod,
            crate::tables::endpoints::Route {
                port: 2,
                mac: POD_MAC + 2,
            },
        );
        let fdb = Fdb::new(64, 300);
        let log = ArrayQueue::new(4);
        let neigh = Neighbors::new(16);
        let compiled = policy::compile::Compiled::empty();
        let cx = Context {
            fdb: &fdb,
            domain: &[],
            endpoints: &endpoints,
            routes: &routes,
            now: 1,
            local: &PortSet::ALL,
            policy: PolicyView {
                compiled: &compiled,
                generation: 0,
                rule_slots: &[],
            },
            log: &log,
            underlay: Some(&u),
            neigh: &neigh,
            services: &crate::tables::services::Services::default(),
        };
        let ctr = WorkerCounters::new(MAX_PORTS);
        let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1024, Timeouts::default());
        let mut sink = Sink::default();
        let mut b: Burst<Vec<u8>> = [
            // a remote sender: routed to the pod
            from_underlay(u.mac, 0x0a48_0201, other_pod),
            // a local pod's address from the underlay: refused
            from_underlay(u.mac, POD, other_pod),
            // not sent to the switch's MAC (a flooded frame): not for it
            from_underlay(0x0200_0000_0bad, 0x0a48_0201, other_pod),
        ]
        .into_iter()
        .collect();
        pipe.process(&cx, UPLINK, &mut b, &mut sink, &ctr);
        assert_eq!(sink.got.len(), 1, "{:?}", sink.got);
        assert_eq!(sink.got[0].0, 2);
        assert_eq!(ctr.drops_of(DropReason::SpoofedIp), 1);
        assert_eq!(ctr.drops_of(DropReason::NotForUs), 1);
    }

    #[test]
    fn natively_routed_pod_sources_come_from_their_node_only() {
        const NODE_B: u32 = 0xc0a8_3202;
        const NODE_C: u32 = 0xc0a8_3203;
        const MAC_B: u64 = 0x0200_0000_000b;
        const MAC_C: u64 = 0x0200_0000_000c;
        let mut u = underlay();
        let _ = u.pools.insert(0x0a48_0000, 16, false);
        for (name, ip) in [("b", NODE_B), ("c", NODE_C)] {
            u.nodes.push(crate::tables::underlay::RemoteNode {
                name: name.into(),
                ip,
                next_hop: ip,
                vtep_mac: 0,
            });
        }
        // node b's block is reached natively, node c's (an Always pool) by VXLAN
        let _ = u.remote.insert(
            0x0a48_0200,
            26,
            RemoteRoute {
                node: 0,
                encap: Encap::None,
            },
        );
        let _ = u.remote.insert(
            0x0a48_0300,
            26,
            RemoteRoute {
                node: 1,
                encap: Encap::Vxlan,
            },
        );
        let neigh = Neighbors::new(16);
        assert!(neigh.learn(NODE_B, MAC_B, 1));
        assert!(neigh.learn(NODE_C, MAC_C, 1));
        let mut endpoints = vec![None; MAX_PORTS];
        endpoints[1] = Some(Endpoint {
            mac: POD_MAC,
            ips: vec![POD].into(),
            policy: EndpointPolicy::OPEN,
            zone: 1,
        });
        let mut routes = Routes::default();
        routes.insert(
            POD,
            crate::tables::endpoints::Route {
                port: 1,
                mac: POD_MAC,
            },
        );
        let fdb = Fdb::new(64, 300);
        let log = ArrayQueue::new(4);
        let compiled = policy::compile::Compiled::empty();
        let services = crate::tables::services::Services::default();
        let cx = Context {
            fdb: &fdb,
            domain: &[],
            endpoints: &endpoints,
            routes: &routes,
            now: 2,
            local: &PortSet::ALL,
            policy: PolicyView {
                compiled: &compiled,
                generation: 0,
                rule_slots: &[],
            },
            log: &log,
            underlay: Some(&u),
            neigh: &neigh,
            services: &services,
        };
        let from = |mac: u64, src: u32| {
            let mut f = from_underlay(u.mac, src, POD);
            f[6..12].copy_from_slice(&mac.to_be_bytes()[2..]);
            f
        };
        let ctr = WorkerCounters::new(MAX_PORTS);
        let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1024, Timeouts::default());
        let mut sink = Sink::default();
        let mut b: Burst<Vec<u8>> = [
            // node b's pod, from node b: routed
            from(MAC_B, 0x0a48_0205),
            // node b's pod from any other host: refused
            from(EXT_MAC, 0x0a48_0205),
            from(MAC_C, 0x0a48_0205),
            // node c's pods come in VXLAN, never natively, even from node c
            from(MAC_C, 0x0a48_0305),
            // a pool address no node claims
            from(MAC_B, 0x0a48_0905),
            // the outside world: policy's to judge
            from(EXT_MAC, 0x0808_0808),
        ]
        .into_iter()
        .collect();
        pipe.process(&cx, UPLINK, &mut b, &mut sink, &ctr);
        let srcs: Vec<u32> = sink
            .got
            .iter()
            .map(|(port, f)| {
                assert_eq!(*port, 1);
                u32::from_be_bytes([f[26], f[27], f[28], f[29]])
            })
            .collect();
        assert_eq!(srcs, vec![0x0a48_0205, 0x0808_0808]);
        assert_eq!(ctr.drops_of(DropReason::RpfWrongNode), 3);
        assert_eq!(ctr.drops_of(DropReason::RpfNotTunneled), 1);
    }

    /// A TCP segment as an IPv4 packet (no Ethernet), checksums valid.
    fn tcp_ip(src: (u32, u16), dst: (u32, u16), flags: u8) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip.extend_from_slice(&src.0.to_be_bytes());
        ip.extend_from_slice(&dst.0.to_be_bytes());
        ip.extend_from_slice(&src.1.to_be_bytes());
        ip.extend_from_slice(&dst.1.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        ip.extend_from_slice(b"data");
        crate::testing::fill_checksums(&mut ip);
        ip
    }

    /// Source, destination and whether every checksum holds.
    fn tcp_of(ip: &[u8]) -> ((u32, u16), (u32, u16), bool) {
        let a = |at: usize| u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
        let p = |at: usize| u16::from_be_bytes([ip[at], ip[at + 1]]);
        let ok = crate::testing::checksums_hold(ip);
        ((a(12), p(20)), (a(16), p(22)), ok)
    }

    /// A NodePort connection from outside to a backend on node B, reached
    /// by `encap`, and its answers.
    fn node_port_to_node_b(encap: Encap) {
        const NODE_B: u32 = 0xc0a8_3202;
        const NODE_B_MAC: u64 = 0x0200_0000_0002;
        const BACKEND: u32 = 0x0a48_0201; // 10.72.2.1, node B's block
        const TUNNEL: u32 = 0x0a48_0100; // 10.72.1.0, this node's VXLAN address
        let mut u = underlay();
        u.vxlan_ip = TUNNEL;
        u.nodes.push(crate::tables::underlay::RemoteNode {
            name: "b".into(),
            ip: NODE_B,
            next_hop: NODE_B,
            vtep_mac: 0x66cb_0000_0002,
        });
        u.remote
            .insert(
                0x0a48_0200,
                26,
                crate::tables::underlay::RemoteRoute { node: 0, encap },
            )
            .expect("route");
        u.peers.insert(NODE_B, 0);
        let svcs: Vec<api::Service> = vec![serde_json::from_value(serde_json::json!({
            "name": "default/web",
            "cluster_ips": ["10.96.0.10"],
            "ports": [{"protocol": "TCP", "port": 80, "node_port": 30080,
                       "backends": [{"ip": "10.72.2.1", "port": 8080}]}]
        }))
        .expect("service")];
        let routes = Routes::default();
        let services =
            crate::tables::services::Services::build(&svcs, |ip| routes.contains_key(&ip));
        let endpoints = vec![None; MAX_PORTS];
        let fdb = Fdb::new(64, 300);
        let log = ArrayQueue::new(4);
        let neigh = Neighbors::new(16);
        assert!(neigh.learn(NODE_B, NODE_B_MAC, 1));
        assert!(neigh.learn(EXTERNAL, EXT_MAC, 1));
        let compiled = policy::compile::Compiled::empty();
        let cx = Context {
            fdb: &fdb,
            domain: &[],
            endpoints: &endpoints,
            routes: &routes,
            now: 1,
            local: &PortSet::ALL,
            policy: PolicyView {
                compiled: &compiled,
                generation: 0,
                rule_slots: &[],
            },
            log: &log,
            underlay: Some(&u),
            neigh: &neigh,
            services: &services,
        };
        let ctr = WorkerCounters::new(MAX_PORTS);
        let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1024, Timeouts::default());
        let frame = |from_mac: u64, to_mac: u64, ip: &[u8]| {
            let mut f = Vec::new();
            f.extend_from_slice(&mac_bytes(to_mac));
            f.extend_from_slice(&mac_bytes(from_mac));
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(ip);
            f
        };
        // what node B sends: VXLAN from its address, or the packet as it is
        let from_b = |ip: &[u8]| match encap {
            Encap::Vxlan => {
                let mut inner = frame(0x66cb_0000_0002, u.vtep_mac, ip);
                let t = tunnel::VxlanTemplate::new(&tunnel::VxlanOuter::new(
                    mac_bytes(NODE_B_MAC),
                    mac_bytes(u.mac),
                    Ipv4Addr::from(NODE_B),
                    Ipv4Addr::from(NODE),
                ));
                t.encap(&mut inner, 50000).expect("encap");
                inner
            }
            _ => frame(NODE_B_MAC, u.mac, ip),
        };
        // the packet node B gets, as an IPv4 packet
        let inner_at = ETH_HLEN + usize::from(encap.overhead());
        let source = if encap == Encap::Vxlan { TUNNEL } else { NODE };
        let mut rx = |f: Vec<u8>| {
            let mut sink = Sink::default();
            let mut b: Burst<Vec<u8>> = [f].into_iter().collect();
            pipe.process(&cx, UPLINK, &mut b, &mut sink, &ctr);
            sink.got
        };
        let mut nat_ports = std::collections::HashSet::new();
        for sport in [40000u16, 40001, 40002] {
            let syn = tcp_ip((EXTERNAL, sport), (NODE, 30080), 0x02);
            let out = rx(frame(EXT_MAC, u.mac, &syn));
            assert_eq!(out.len(), 1, "{out:02x?}");
            let (port, f) = &out[0];
            assert_eq!(*port, UPLINK);
            assert_eq!(f[0..6], mac_bytes(NODE_B_MAC), "to node B");
            if encap == Encap::Vxlan {
                assert_eq!(f[ETH_HLEN + 9], IPPROTO_UDP);
                assert_eq!(f[ETH_HLEN + 16..ETH_HLEN + 20], NODE_B.to_be_bytes());
                assert_eq!(f[ETH_HLEN + 22..ETH_HLEN + 24], 4789u16.to_be_bytes());
            }
            let inner = &f[inner_at..];
            let (src, dst, ok) = tcp_of(inner);
            assert!(ok, "checksums: {inner:02x?}");
            assert_eq!(dst, (BACKEND, 8080), "DNAT to the backend");
            assert_eq!(src.0, source, "SNAT to this node");
            assert!(nat::DEFAULT_PORTS.contains(&src.1), "a natOutgoing port");
            assert_eq!(inner[8], 63, "routed: TTL down by one");
            assert!(nat_ports.insert(src.1), "one port per connection");
            // the same connection keeps its port
            let ack = tcp_ip((EXTERNAL, sport), (NODE, 30080), 0x10);
            let again = rx(frame(EXT_MAC, u.mac, &ack));
            assert_eq!(tcp_of(&again[0].1[inner_at..]).0, src);
            // the backend answers, through node B, to the source it saw
            let back = rx(from_b(&tcp_ip((BACKEND, 8080), src, 0x12)));
            assert_eq!(back.len(), 1, "{back:02x?}");
            let (port, f) = &back[0];
            assert_eq!(*port, UPLINK);
            assert_eq!(f[0..6], mac_bytes(EXT_MAC), "to the client");
            assert_eq!(f[6..12], mac_bytes(u.mac));
            let (src, dst, ok) = tcp_of(&f[ETH_HLEN..]);
            assert!(ok);
            assert_eq!(src, (NODE, 30080), "from the NodePort");
            assert_eq!(dst, (EXTERNAL, sport), "to the client");
        }
        if encap == Encap::Vxlan {
            // too big for the tunnel, DF set: "fragmentation needed" from
            // this node to the client, about what the client sent
            let mut big = tcp_ip((EXTERNAL, 40000), (NODE, 30080), 0x10);
            big.resize(1500, 0x55);
            big[2..4].copy_from_slice(&1500u16.to_be_bytes());
            crate::testing::fill_header_checksum(&mut big);
            let out = rx(frame(EXT_MAC, u.mac, &big));
            assert_eq!(out.len(), 1, "{out:02x?}");
            let (port, f) = &out[0];
            assert_eq!(*port, UPLINK);
            assert_eq!(f[0..6], mac_bytes(EXT_MAC));
            assert_eq!(f[6..12], mac_bytes(u.mac));
            let ip = &f[ETH_HLEN..];
            assert_eq!((ip[9], ip[20], ip[21]), (1, 3, 4), "fragmentation needed");
            assert_eq!(ip[12..16], NODE.to_be_bytes());
            assert_eq!(ip[16..20], EXTERNAL.to_be_bytes());
            assert_eq!(ip[26..28], 1450u16.to_be_bytes(), "the tunnel's MTU");
            assert_eq!(
                ip[28 + 12..28 + 16],
                EXTERNAL.to_be_bytes(),
                "quotes the client's packet"
            );
            assert_eq!(ip[28 + 16..28 + 20], NODE.to_be_bytes());
            assert_eq!(ip[28 + 22..28 + 24], 30080u16.to_be_bytes());
            assert!(
                crate::testing::checksums_hold(ip),
                "checksums of the ICMP error"
            );
            assert_eq!(ctr.drops_of(DropReason::TooBig), 1);
        }
        // an answer on a port no connection holds goes nowhere
        let stray = rx(from_b(&tcp_ip((BACKEND, 8080), (source, 33333), 0x12)));
        assert!(stray.is_empty());
        let why = if encap == Encap::Vxlan {
            DropReason::NoRoute
        } else {
            DropReason::NotForUs
        };
        assert_eq!(ctr.drops_of(why), 1);
    }

    #[test]
    fn node_port_to_a_backend_on_another_node_over_vxlan() {
        node_port_to_node_b(Encap::Vxlan);
    }

    #[test]
    fn node_port_to_a_backend_on_another_node_natively() {
        node_port_to_node_b(Encap::None);
    }
}

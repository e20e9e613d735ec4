//! Routed pod ports, the way Calico routes pods.
//!
//! A pod on a routed port has `/32` addresses and a default route via
//! 169.254.1.1. The switch answers its ARP requests with the gateway MAC
//! (proxy ARP), checks that every frame carries the pod's own MAC and
//! address (anti-spoofing), and routes IPv4 by destination address to the
//! pod that owns it, rewriting both MACs and decrementing the TTL.

use crate::counters::DropReason;
use crate::tables::endpoints::{Endpoint, Routes};
use crate::wire::checksum::Delta;
use crate::wire::eth::ETH_HLEN;
use crate::wire::eth::{ETHERTYPE_ARP, ETHERTYPE_IPV4};
use crate::wire::ipv4::ipv4_header;

const GATEWAY_MAC_BYTES: [u8; 6] = api::GATEWAY_MAC.0;
const ARP_LEN: usize = 28;
const GATEWAY_IP: u32 = u32::from_be_bytes(api::GATEWAY_IP.octets());

/// What to do with a frame from a routed pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Routed and rewritten in place; send it out of this port.
    Out(u16),
    /// An answer from the switch (ARP): back out of this port, as is.
    Reply(u16),
    /// For this IPv4 destination, which no local pod owns: the underlay
    /// decides (a remote node, the outside world, or no route). The TTL is
    /// decremented already; the MACs are not rewritten.
    Beyond(u32),
    Drop(DropReason),
}

/// Handles one frame from the pod `ep` on port `in_port`, rewriting it in
/// place when it is answered or routed.
#[inline]
pub fn route(frame: &mut [u8], in_port: u16, ep: &Endpoint, routes: &Routes) -> Verdict {
    let Some(eth) = frame.first_chunk::<ETH_HLEN>() else {
        return Verdict::Drop(DropReason::Runt);
    };
    let src = u64::from_be_bytes([0, 0, eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]]);
    if src != ep.mac {
        return Verdict::Drop(DropReason::SpoofedMac);
    }
    match u16::from_be_bytes([eth[12], eth[13]]) {
        ETHERTYPE_IPV4 => route_ipv4(frame, in_port, ep, routes),
        ETHERTYPE_ARP => proxy_arp(frame, in_port, ep),
        _ => Verdict::Drop(DropReason::NotIpv4),
    }
}

fn route_ipv4(frame: &mut [u8], in_port: u16, ep: &Endpoint, routes: &Routes) -> Verdict {
    let Some(h) = ipv4_header(frame) else {
        return Verdict::Drop(DropReason::BadLength);
    };
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    if !ep.owns(src) {
        return Verdict::Drop(DropReason::SpoofedIp);
    }
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    if dst == GATEWAY_IP {
        return gateway_echo(frame, in_port);
    }
    forward(frame, routes)
}

/// Answers a pod's ping of its gateway, so that a pod (or an operator in
/// it) can tell that its interface reaches the switch. Nothing else sent to
/// the gateway goes anywhere.
fn gateway_echo(frame: &mut [u8], in_port: u16) -> Verdict {
    let Some(h) = ipv4_header(frame) else {
        return Verdict::Drop(DropReason::BadLength);
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    let (src, dst) = (ETH_HLEN + 12, ETH_HLEN + 16);
    let icmp = ETH_HLEN + ihl;
    if h[9] != 1 || fragment || total < ihl + 8 || frame[icmp] != 8 || frame[icmp + 1] != 0 {
        return Verdict::Drop(DropReason::NoRoute);
    }
    // an echo reply is the request with the addresses swapped (the header
    // checksum does not change) and type 0 (RFC 1624 for the ICMP sum)
    let mut delta = Delta::default();
    delta.word(0x0800, 0x0000);
    let csum = delta.apply(u16::from_be_bytes([frame[icmp + 2], frame[icmp + 3]]));
    frame[icmp] = 0;
    frame[icmp + 2..icmp + 4].copy_from_slice(&csum.to_be_bytes());
    for i in 0..4 {
        frame.swap(src + i, dst + i);
    }
    for i in 0..6 {
        frame[i] = frame[6 + i];
    }
    frame[6..12].copy_from_slice(&GATEWAY_MAC_BYTES);
    Verdict::Reply(in_port)
}

/// Routes an IPv4 frame by destination: to the local pod that owns it
/// (both MACs rewritten), or [`Verdict::Beyond`] this node. Either way
/// the TTL goes down by one, as at any router.
#[inline]
pub fn forward(frame: &mut [u8], routes: &Routes) -> Verdict {
    let Some(h) = ipv4_header(frame) else {
        return Verdict::Drop(DropReason::BadLength);
    };
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    let ttl = h[8];
    if ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    // TTL shares a 16-bit word with the protocol; patch the checksum for that
    // word alone (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'))
    let old = u16::from_be_bytes([ttl, h[9]]);
    let new = old - 0x0100;
    let mut delta = Delta::default();
    delta.word(old, new);
    let csum = delta.apply(u16::from_be_bytes([h[10], h[11]]));
    let ip = &mut frame[ETH_HLEN..];
    ip[8] = ttl - 1;
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    match routes.get(&dst) {
        Some(r) => {
            frame[0..6].copy_from_slice(&r.mac.to_be_bytes()[2..]);
            frame[6..12].copy_from_slice(&GATEWAY_MAC_BYTES);
            Verdict::Out(r.port)
        }
        None => Verdict::Beyond(dst),
    }
}

/// Answers the pod's ARP requests for anything but its own addresses with the
/// gateway MAC, as the host side of a Calico veth does with proxy_arp.
fn proxy_arp(frame: &mut [u8], in_port: u16, ep: &Endpoint) -> Verdict {
    let Some(arp) = frame.get(ETH_HLEN..ETH_HLEN + ARP_LEN) else {
        return Verdict::Drop(DropReason::BadLength);
    };
    // Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4
    if arp[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return Verdict::Drop(DropReason::ArpIgnored);
    }
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    let sha: [u8; 6] = [arp[8], arp[9], arp[10], arp[11], arp[12], arp[13]];
    let spa = u32::from_be_bytes([arp[14], arp[15], arp[16], arp[17]]);
    let tpa = u32::from_be_bytes([arp[24], arp[25], arp[26], arp[27]]);
    let sha_mac = u64::from_be_bytes([0, 0, sha[0], sha[1], sha[2], sha[3], sha[4], sha[5]]);
    if sha_mac != ep.mac {
        return Verdict::Drop(DropReason::SpoofedMac);
    }
    if spa != 0 && !ep.owns(spa) {
        return Verdict::Drop(DropReason::SpoofedIp);
    }
    // replies, gratuitous ARP and probes for the pod's own address need no answer
    if op != 1 || spa == 0 || ep.owns(tpa) {
        return Verdict::Drop(DropReason::ArpIgnored);
    }
    let a = &mut frame[ETH_HLEN..ETH_HLEN + ARP_LEN];
    a[6..8].copy_from_slice(&2u16.to_be_bytes());
    a[8..14].copy_from_slice(&GATEWAY_MAC_BYTES);
    a[14..18].copy_from_slice(&tpa.to_be_bytes());
    a[18..24].copy_from_slice(&sha);
    a[24..28].copy_from_slice(&spa.to_be_bytes());
    frame[0..6].copy_from_slice(&sha);
    frame[6..12].copy_from_slice(&GATEWAY_MAC_BYTES);
    Verdict::Reply(in_port)
}

/// An ARP reply from the gateway to a pod that did not ask. A pod's kernel
/// flushes its gateway entry when its TAP loses carrier (vswitchd went
/// away) and asks again only once a second; an entry waiting for an answer
/// takes this one (Linux updates entries it has, even with `arp_accept`
/// off), so a restarted switch sends it to every pod it takes up again.
pub fn gateway_announcement(pod_mac: [u8; 6], pod_ip: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + ARP_LEN);
    f.extend_from_slice(&pod_mac);
    f.extend_from_slice(&GATEWAY_MAC_BYTES);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&GATEWAY_MAC_BYTES);
    f.extend_from_slice(&GATEWAY_IP.to_be_bytes());
    f.extend_from_slice(&pod_mac);
    f.extend_from_slice(&pod_ip);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_announces_itself_as_it_answers() {
        let pod = [2, 0, 0, 0, 0, 7];
        let f = gateway_announcement(pod, [10, 0, 0, 7]);
        let e = etherparse::SlicedPacket::from_ethernet(&f).expect("an Ethernet frame");
        let Some(etherparse::NetSlice::Arp(a)) = e.net else {
            panic!("not ARP: {f:?}");
        };
        assert_eq!(a.operation(), etherparse::ArpOperation::REPLY);
        assert_eq!(a.sender_hw_addr(), GATEWAY_MAC_BYTES);
        assert_eq!(a.sender_protocol_addr(), api::GATEWAY_IP.octets());
        assert_eq!(a.target_hw_addr(), pod);
        assert_eq!(a.target_protocol_addr(), [10, 0, 0, 7]);
        assert_eq!(f[0..6], pod, "to the pod alone");
    }
    use crate::tables::endpoints::{EndpointPolicy, Route};

    const POD_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const POD_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const IP_A: [u8; 4] = [10, 65, 0, 1];
    const IP_B: [u8; 4] = [10, 65, 0, 2];

    fn ep(mac: [u8; 6], ip: [u8; 4]) -> Endpoint {
        Endpoint {
            mac: u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]),
            ips: vec![u32::from_be_bytes(ip)].into(),
            policy: EndpointPolicy::OPEN,
            zone: 1,
        }
    }

    fn routes() -> Routes {
        let mut r = Routes::default();
        r.insert(
            u32::from_be_bytes(IP_B),
            Route {
                port: 2,
                mac: ep(POD_B, IP_B).mac,
            },
        );
        r.insert(
            u32::from_be_bytes(IP_A),
            Route {
                port: 1,
                mac: ep(POD_A, IP_A).mac,
            },
        );
        r
    }

    /// An ICMP echo request from A to `dst`, with a valid header checksum.
    fn ping(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
        let mut f = vec![];
        f.extend_from_slice(&GATEWAY_MAC_BYTES);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 28, 0x12, 0x34, 0x40, 0, ttl, 1, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
        f
    }

    fn checksum(b: &[u8]) -> u16 {
        crate::testing::checksum(&[b])
    }

    fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&sha);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&sha);
        f.extend_from_slice(&spa);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&tpa);
        f
    }

    #[test]
    fn routes_to_the_pod_that_owns_the_address() {
        let mut f = ping(POD_A, IP_A, IP_B, 64);
        assert_eq!(
            route(&mut f, 1, &ep(POD_A, IP_A), &routes()),
            Verdict::Out(2)
        );
        assert_eq!(f[0..6], POD_B, "dst MAC is the destination pod's");
        assert_eq!(f[6..12], GATEWAY_MAC_BYTES, "src MAC is the gateway's");
        assert_eq!(f[14 + 8], 63, "TTL decremented");
        assert_eq!(checksum(&f[14..34]), 0, "header checksum still valid");
    }

    #[test]
    fn checksum_patch_holds_for_every_ttl_and_checksum() {
        for ttl in 2..=255u8 {
            for id in [0u16, 0x00ff, 0xff00, 0xfffe, 0x1234] {
                let mut f = ping(POD_A, IP_A, IP_B, ttl);
                f[18..20].copy_from_slice(&id.to_be_bytes());
                let c = checksum(&{
                    let mut h = f[14..34].to_vec();
                    h[10] = 0;
                    h[11] = 0;
                    h
                });
                f[24..26].copy_from_slice(&c.to_be_bytes());
                assert_eq!(
                    route(&mut f, 1, &ep(POD_A, IP_A), &routes()),
                    Verdict::Out(2)
                );
                assert_eq!(checksum(&f[14..34]), 0, "ttl {ttl} id {id:#x}");
            }
        }
    }

    #[test]
    fn the_gateway_answers_pings_and_nothing_else() {
        let a = ep(POD_A, IP_A);
        let gw = [169, 254, 1, 1];
        let mut f = ping(POD_A, IP_A, gw, 64);
        // an identifier, as ping sets one
        f[38..40].copy_from_slice(&[0x12, 0x34]);
        f[36..38].copy_from_slice(&[0, 0]);
        let c = checksum(&f[34..]);
        f[36..38].copy_from_slice(&c.to_be_bytes());
        assert_eq!(route(&mut f, 7, &a, &routes()), Verdict::Reply(7));
        assert_eq!(f[0..6], POD_A, "back to the pod");
        assert_eq!(f[6..12], GATEWAY_MAC_BYTES);
        assert_eq!(f[26..30], gw, "from the gateway");
        assert_eq!(f[30..34], IP_A);
        assert_eq!(f[34], 0, "an echo reply");
        assert_eq!(checksum(&f[14..34]), 0, "header checksum valid");
        assert_eq!(checksum(&f[34..]), 0, "ICMP checksum valid");
        // anything else to the gateway, and pings from a spoofed source, go nowhere
        let mut f = ping(POD_A, IP_A, gw, 64);
        f[34] = 13;
        assert_eq!(
            route(&mut f, 7, &a, &routes()),
            Verdict::Drop(DropReason::NoRoute)
        );
        let mut f = ping(POD_A, [10, 65, 0, 99], gw, 64);
        assert_eq!(
            route(&mut f, 7, &a, &routes()),
            Verdict::Drop(DropReason::SpoofedIp)
        );
    }

    #[test]
    fn spoofed_sources_are_dropped() {
        let a = ep(POD_A, IP_A);
        let mut f = ping(POD_B, IP_A, IP_B, 64);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::SpoofedMac)
        );
        let mut f = ping(POD_A, [10, 65, 0, 99], IP_B, 64);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::SpoofedIp)
        );
        let mut f = arp_request(POD_A, [10, 65, 0, 99], [169, 254, 1, 1]);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::SpoofedIp)
        );
    }

    #[test]
    fn unknown_destinations_go_beyond_and_expiring_ttls_are_dropped() {
        let a = ep(POD_A, IP_A);
        let mut f = ping(POD_A, IP_A, [8, 8, 8, 8], 64);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Beyond(0x0808_0808)
        );
        assert_eq!(f[14 + 8], 63, "routed: TTL decremented");
        assert_eq!(checksum(&f[14..34]), 0);
        let mut f = ping(POD_A, IP_A, [8, 8, 8, 8], 1);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::TtlExpired)
        );
        let mut f = ping(POD_A, IP_A, IP_B, 1);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::TtlExpired)
        );
        let mut f = ping(POD_A, IP_A, IP_B, 64);
        f[16..18].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::BadLength)
        );
        let mut f = ping(POD_A, IP_A, IP_B, 64);
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::NotIpv4)
        );
    }

    #[test]
    fn answers_arp_for_the_gateway() {
        let a = ep(POD_A, IP_A);
        let mut f = arp_request(POD_A, IP_A, [169, 254, 1, 1]);
        assert_eq!(route(&mut f, 1, &a, &routes()), Verdict::Reply(1));
        assert_eq!(f[0..6], POD_A);
        assert_eq!(f[6..12], GATEWAY_MAC_BYTES);
        assert_eq!(f[20..22], [0, 2], "a reply");
        assert_eq!(f[22..28], GATEWAY_MAC_BYTES, "sender is the gateway");
        assert_eq!(f[28..32], [169, 254, 1, 1]);
        assert_eq!(f[32..38], POD_A, "target is the asker");
        assert_eq!(f[38..42], IP_A);
    }

    #[test]
    fn probes_and_own_addresses_get_no_answer() {
        let a = ep(POD_A, IP_A);
        let mut f = arp_request(POD_A, [0, 0, 0, 0], IP_A);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::ArpIgnored)
        );
        let mut f = arp_request(POD_A, IP_A, IP_A);
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::ArpIgnored)
        );
        let mut f = arp_request(POD_A, IP_A, [169, 254, 1, 1]);
        f[21] = 2; // a reply
        assert_eq!(
            route(&mut f, 1, &a, &routes()),
            Verdict::Drop(DropReason::ArpIgnored)
        );
    }
}

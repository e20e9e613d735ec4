//! The Service stage: a pod's packets to a ClusterIP are translated to a
//! backend before policy and routing see them, answers are translated back,
//! and NodePort traffic from the uplink goes to a backend here or on another
//! node. The translations themselves live in [`crate::tables::svcnat`].
//!
//! A Service port with no backend, or a Service address on a port it does
//! not serve, refuses at once: a TCP RST, or an ICMP port (protocol)
//! unreachable from the Service address ([`super::refuse`]), sent back out
//! of the client's port and counted as a drop by reason.

use crate::counters::{DropReason, WorkerCounters};
use crate::packet::PacketBuf;
use crate::pipeline::refuse::{refusal, reshape};
use crate::pipeline::{Context, Pipeline};
use crate::tables::conntrack::{Flow, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::tables::endpoints::Endpoint;
use crate::tables::nat;
use crate::tables::services::Lookup;
use crate::tables::svcnat::rewrite;
use crate::wire::eth::{ETHERTYPE_IPV4, ETH_HLEN};
use crate::wire::ipv4::ipv4_header;

/// The gateway MAC pods address everything to.
const GATEWAY: u64 = u64::from_be_bytes([
    0,
    0,
    api::GATEWAY_MAC.0[0],
    api::GATEWAY_MAC.0[1],
    api::GATEWAY_MAC.0[2],
    api::GATEWAY_MAC.0[3],
    api::GATEWAY_MAC.0[4],
    api::GATEWAY_MAC.0[5],
]);

/// What the Service stage did with a packet from a pod.
pub(crate) enum FromPod {
    /// Not Service traffic: route it as it is.
    Pass,
    /// Translated: route it, and judge it (policy, conntrack) as `flow`.
    Judge(Flow),
    /// Turned into a refusal for the pod, with the reason counted.
    Refused(DropReason),
    /// Dropped for this reason.
    Drop(DropReason),
}

impl<P: PacketBuf> Pipeline<P> {
    /// The Service stage for a frame from a routed pod, ahead of routing.
    /// Frames that fail the anti-spoofing checks pass untouched, for
    /// routing to drop them by reason.
    #[inline]
    pub(crate) fn service_from_pod(
        &mut self,
        cx: &Context<'_>,
        ep: &Endpoint,
        pkt: &mut P,
        ctr: &WorkerCounters,
    ) -> FromPod {
        let d = pkt.data();
        // plain traffic pays for one set lookup
        if cx.services.is_empty()
            || d.len() < ETH_HLEN + 20
            || u16::from_be_bytes([d[12], d[13]]) != ETHERTYPE_IPV4
            || !cx
                .services
                .is_vip(u32::from_be_bytes([d[30], d[31], d[32], d[33]]))
        {
            return FromPod::Pass;
        }
        if d[6..12] != crate::wire::eth::mac_bytes(ep.mac) {
            return FromPod::Pass;
        }
        let Some(h) = ipv4_header(d) else {
            return FromPod::Pass;
        };
        let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        if !ep.ips.contains(&src) {
            return FromPod::Pass;
        }
        let f = Flow::parse(&d[ETH_HLEN..]);
        // a hairpin answer goes to the VIP on the client's port, which may
        // be any port
        if let Some(x) = self.svc.hairpin_reply(ep.zone, &f, cx.now) {
            rewrite(&mut pkt.data_mut()[ETH_HLEN..], &x);
            // judged as the pod answering itself
            return FromPod::Judge(Flow {
                dst: x.dst,
                dport: x.dport,
                ..f
            });
        }
        if f.proto != PROTO_TCP && f.proto != PROTO_UDP || f.quoted.is_some() {
            // ICMP to a Service address (and its errors, and SCTP): refused
            return self.refuse(
                cx,
                ctr,
                pkt,
                ep.mac,
                GATEWAY,
                DropReason::ServiceUnknownPort,
            );
        }
        let sp = match cx.services.lookup(dst, f.proto, f.dport) {
            Lookup::Port(i) => cx.services.port(i),
            _ => None,
        };
        match self.svc.outbound(ep.zone, sp, &f, cx.now) {
            Ok(x) => {
                rewrite(&mut pkt.data_mut()[ETH_HLEN..], &x);
                // policy sees the backend; a hairpin connection is the pod
                // talking to itself
                FromPod::Judge(Flow {
                    dst: x.dst,
                    dport: x.dport,
                    ..f
                })
            }
            Err(why) => self.refuse(cx, ctr, pkt, ep.mac, GATEWAY, why),
        }
    }

    /// Turns the packet into its refusal, from MAC `from` to `to`, within
    /// the worker's rate of refusals; past it the packet is only dropped.
    fn refuse(
        &mut self,
        cx: &Context<'_>,
        ctr: &WorkerCounters,
        pkt: &mut P,
        to: u64,
        from: u64,
        why: DropReason,
    ) -> FromPod {
        if !self.answer_allowed(cx.now, ctr) {
            return FromPod::Drop(why);
        }
        let mut out = [0u8; crate::wire::icmp::MAX_ERROR_LEN];
        let n = refusal(&pkt.data()[ETH_HLEN..], &mut out);
        if n == 0 {
            return FromPod::Drop(why);
        }
        let mut eth = [0u8; ETH_HLEN];
        eth[0..6].copy_from_slice(&crate::wire::eth::mac_bytes(to));
        eth[6..12].copy_from_slice(&crate::wire::eth::mac_bytes(from));
        eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        if !reshape(pkt, eth, &out[..n]) {
            return FromPod::Drop(why);
        }
        FromPod::Refused(why)
    }

    /// A packet about to reach a pod, after its zone let it in: the reply
    /// of a translated connection gets the Service address back.
    #[inline]
    pub(crate) fn service_to_pod(&mut self, cx: &Context<'_>, zone: u16, flow: &Flow, pkt: &mut P) {
        if !self.svc.active() {
            return;
        }
        if flow.quoted.is_none() {
            if let Some((vip, port)) = self.svc.reply(zone, flow, cx.now) {
                nat::snat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], vip, port);
            }
        } else if flow.proto == PROTO_ICMP {
            if let Some((vip, port)) = self.svc.reply_error(zone, flow, cx.now) {
                let from_backend = flow.quoted.is_some_and(|q| q.dst == flow.src);
                nat::icmp_error_rewrite_dst(
                    &mut pkt.data_mut()[ETH_HLEN..],
                    from_backend,
                    vip,
                    port,
                );
            }
        }
    }

    /// A packet from the uplink to this node's address: NodePort traffic is
    /// translated to a backend (its destination only: the caller SNATs it
    /// when the backend is on another node); a NodePort with no backend is
    /// refused back out of the uplink.
    pub(crate) fn service_node_port(
        &mut self,
        cx: &Context<'_>,
        u: &crate::tables::underlay::Underlay,
        flow: &Flow,
        pkt: &mut P,
        ctr: &WorkerCounters,
    ) -> FromPod {
        if flow.proto != PROTO_TCP && flow.proto != PROTO_UDP || flow.quoted.is_some() {
            return FromPod::Pass;
        }
        let sp = cx
            .services
            .node_port(flow.proto, flow.dport)
            .and_then(|i| cx.services.port(i));
        if sp.is_none() && !self.svc.active() {
            return FromPod::Pass;
        }
        match self.svc.node_inbound(sp, flow, cx.now) {
            Ok(Some((ip, port))) => {
                nat::dnat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], ip, port);
                FromPod::Judge(Flow {
                    dst: ip,
                    dport: port,
                    ..*flow
                })
            }
            Ok(None) => FromPod::Pass,
            Err(why) => {
                let d = pkt.data();
                let peer = u64::from_be_bytes([0, 0, d[6], d[7], d[8], d[9], d[10], d[11]]);
                self.refuse(cx, ctr, pkt, peer, u.mac, why)
            }
        }
    }

    /// A packet leaving through the uplink (on the uplink's worker): the
    /// answer of a NodePort backend gets the node's address and NodePort
    /// back as its source. True when it was one (no natOutgoing then).
    #[inline]
    pub(crate) fn service_node_reply(&mut self, cx: &Context<'_>, pkt: &mut P) -> bool {
        if !self.svc.active() {
            return false;
        }
        let f = Flow::parse(&pkt.data()[ETH_HLEN..]);
        match self.svc.node_reply(&f, cx.now) {
            Some((ip, port)) => {
                nat::snat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], ip, port);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::WorkerCounters;
    use crate::pipeline::firewall::PolicyView;
    use crate::pipeline::{Burst, PortSet, TxSink, MAX_PORTS};
    use crate::tables::conntrack::Timeouts;
    use crate::tables::endpoints::{EndpointPolicy, Route, Routes};
    use crate::tables::fdb::Fdb;
    use crate::tables::services::Lookup;
    use crate::tables::services::Services;
    use crate::tables::svcnat::SvcNat;
    use crate::wire::ipv4::{TCP_ACK, TCP_RST, TCP_SYN};
    use crossbeam_queue::ArrayQueue;
    use std::collections::HashMap;

    const CLIENT: u32 = 0x0a46_000a; // 10.70.0.10
    const B1: u32 = 0x0a46_0001;
    const B2: u32 = 0x0a46_0002;
    const VIP: u32 = 0x0a60_000a; // 10.96.0.10
    const EMPTY: u32 = 0x0a60_000c;

    fn mac(ip: u32) -> u64 {
        0x0200_0000_0000 | u64::from(ip & 0xffff)
    }

    #[derive(Default)]
    struct Sink {
        got: HashMap<u16, Vec<Vec<u8>>>,
    }

    impl TxSink<Vec<u8>> for Sink {
        fn send(&mut self, port: u16, pkts: &mut Burst<Vec<u8>>) -> DropReason {
            self.got.entry(port).or_default().extend(pkts.drain(..));
            DropReason::TxFull
        }
    }

    /// True when the IPv4 header and TCP/UDP checksums of `f` hold.
    fn checksums_hold(f: &[u8]) -> bool {
        crate::testing::checksums_hold(&f[ETH_HLEN..])
    }

    /// A TCP segment with 4 bytes of payload and valid checksums.
    fn tcp(src: (u32, u16), dst: (u32, u16), flags: u8) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&api::GATEWAY_MAC.0);
        f.extend_from_slice(&crate::wire::eth::mac_bytes(mac(src.0)));
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, PROTO_TCP, 0, 0];
        ip.extend_from_slice(&src.0.to_be_bytes());
        ip.extend_from_slice(&dst.0.to_be_bytes());
        ip.extend_from_slice(&src.1.to_be_bytes());
        ip.extend_from_slice(&dst.1.to_be_bytes());
        ip.extend_from_slice(&1000u32.to_be_bytes());
        ip.extend_from_slice(&0u32.to_be_bytes());
        ip.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        ip.extend_from_slice(b"data");
        crate::testing::fill_checksums(&mut ip);
        f.extend_from_slice(&ip);
        f
    }

    fn udp(src: (u32, u16), dst: (u32, u16)) -> Vec<u8> {
        let mut f = tcp(src, dst, 0);
        f.truncate(ETH_HLEN + 28);
        f[ETH_HLEN + 3] = 28;
        f[ETH_HLEN + 9] = PROTO_UDP;
        f[ETH_HLEN + 24..ETH_HLEN + 26].copy_from_slice(&8u16.to_be_bytes());
        f[ETH_HLEN + 26..ETH_HLEN + 28].fill(0);
        crate::testing::fill_header_checksum(&mut f[ETH_HLEN..]);
        f
    }

    fn addr(f: &[u8], at: usize) -> (u32, u16) {
        let ip = &f[ETH_HLEN..];
        let a = u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
        let p = if at == 12 { 20 } else { 22 };
        (a, u16::from_be_bytes([ip[p], ip[p + 1]]))
    }

    struct Rig {
        endpoints: Vec<Option<Endpoint>>,
        routes: Routes,
        services: Services,
        pipe: Pipeline<Vec<u8>>,
        ctr: WorkerCounters,
        now: u32,
    }

    fn service(backends: &[u32], affinity: Option<u32>) -> Vec<api::Service> {
        let b: Vec<serde_json::Value> = backends
            .iter()
            .map(|&ip| serde_json::json!({"ip": std::net::Ipv4Addr::from(ip), "port": 8080}))
            .collect();
        let mut s = serde_json::json!({
            "name": "default/web",
            "cluster_ips": [std::net::Ipv4Addr::from(VIP)],
            "ports": [{"protocol": "TCP", "port": 80, "backends": b}]
        });
        if let Some(a) = affinity {
            s["affinity_timeout"] = a.into();
        }
        let empty = serde_json::json!({
            "name": "default/empty",
            "cluster_ips": [std::net::Ipv4Addr::from(EMPTY)],
            "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 53}]
        });
        vec![
            serde_json::from_value(s).expect("service"),
            serde_json::from_value(empty).expect("service"),
        ]
    }

    impl Rig {
        fn new(backends: &[u32]) -> Rig {
            let mut endpoints = vec![None; MAX_PORTS];
            let mut routes = Routes::default();
            for (port, ip) in [(1u16, CLIENT), (2, B1), (3, B2)] {
                endpoints[usize::from(port)] = Some(Endpoint {
                    mac: mac(ip),
                    ips: vec![ip].into(),
                    policy: EndpointPolicy::OPEN,
                    zone: port,
                });
                routes.insert(ip, Route { port, mac: mac(ip) });
            }
            let svcs = service(backends, None);
            Rig {
                services: Services::build(&svcs, |ip| routes.contains_key(&ip)),
                endpoints,
                routes,
                pipe: Pipeline::new(1 << 14, Timeouts::default()),
                ctr: WorkerCounters::new(MAX_PORTS),
                now: 1,
            }
        }

        fn rx(&mut self, port: u16, frames: Vec<Vec<u8>>) -> Sink {
            let fdb = Fdb::new(16, 300);
            let log = ArrayQueue::new(4);
            let neigh = crate::tables::neigh::Neighbors::new(4);
            let compiled = policy::compile::Compiled::empty();
            let cx = Context {
                fdb: &fdb,
                domain: &[],
                endpoints: &self.endpoints,
                routes: &self.routes,
                now: self.now,
                local: &PortSet::ALL,
                policy: PolicyView {
                    compiled: &compiled,
                    generation: 0,
                    rule_slots: &[],
                },
                log: &log,
                underlay: None,
                neigh: &neigh,
                services: &self.services,
            };
            let mut sink = Sink::default();
            let mut b: Burst<Vec<u8>> = frames.into_iter().collect();
            self.pipe.process(&cx, port, &mut b, &mut sink, &self.ctr);
            sink
        }
    }

    #[test]
    fn a_connection_is_translated_both_ways_and_keeps_its_backend() {
        let mut r = Rig::new(&[B1, B2]);
        let mut seen = [0usize; 2];
        for sport in 40000..40064u16 {
            let out = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_SYN)]);
            let (port, f) = out
                .got
                .iter()
                .next()
                .map(|(p, v)| (*p, v[0].clone()))
                .expect("sent");
            let backend = if port == 2 { B1 } else { B2 };
            seen[usize::from(port == 3)] += 1;
            assert_eq!(addr(&f, 16), (backend, 8080), "DNAT to the backend");
            assert_eq!(addr(&f, 12), (CLIENT, sport), "source kept");
            assert!(checksums_hold(&f), "{f:02x?}");
            // the backend answers: the client sees the Service
            let back = r.rx(
                port,
                vec![tcp((backend, 8080), (CLIENT, sport), TCP_SYN | TCP_ACK)],
            );
            let f = &back.got[&1][0];
            assert_eq!(addr(f, 12), (VIP, 80), "reply from the VIP");
            assert_eq!(addr(f, 16), (CLIENT, sport));
            assert!(checksums_hold(f));
            // the next segment goes the same way
            let again = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_ACK)]);
            assert_eq!(addr(&again.got[&port][0], 16), (backend, 8080));
        }
        assert!(seen.iter().all(|&n| n > 10), "spread: {seen:?}");
        // a thousand more connections of this client, all open at once
        let mut chosen = HashMap::new();
        for sport in 20000..21000u16 {
            let out = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_SYN)]);
            chosen.insert(sport, *out.got.keys().next().expect("sent"));
        }
        // B2 leaves the Service: B1's connections and B2's keep their
        // backend, new ones go to B1
        let svcs = service(&[B1], None);
        let routes = &r.routes;
        r.services = Services::build(&svcs, |ip| routes.contains_key(&ip));
        for (&sport, &port) in &chosen {
            let again = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_ACK)]);
            assert_eq!(again.got.keys().collect::<Vec<_>>(), vec![&port], "{sport}");
        }
        assert_eq!(r.pipe.svc.stats.evicted, 0);
        let fresh = r.rx(1, vec![tcp((CLIENT, 50000), (VIP, 80), TCP_SYN)]);
        assert_eq!(addr(&fresh.got[&2][0], 16), (B1, 8080));
    }

    #[test]
    fn hairpin_comes_from_the_vip_and_its_answer_goes_back() {
        let mut r = Rig::new(&[CLIENT]);
        let out = r.rx(1, vec![tcp((CLIENT, 40000), (VIP, 80), TCP_SYN)]);
        let f = &out.got[&1][0];
        assert_eq!(addr(f, 12), (VIP, 40000), "source: the VIP");
        assert_eq!(addr(f, 16), (CLIENT, 8080));
        assert!(checksums_hold(f));
        let back = r.rx(
            1,
            vec![tcp((CLIENT, 8080), (VIP, 40000), TCP_SYN | TCP_ACK)],
        );
        let f = &back.got[&1][0];
        assert_eq!(addr(f, 12), (VIP, 80));
        assert_eq!(addr(f, 16), (CLIENT, 40000));
        assert!(checksums_hold(f));
    }

    #[test]
    fn refusals_are_rate_limited_per_worker_and_counted() {
        use crate::pipeline::ANSWERS_PER_SECOND;
        let mut r = Rig::new(&[B1]);
        let flood = |r: &mut Rig, n: u16| -> usize {
            let mut sent = 0;
            for sport in 0..n {
                let out = r.rx(
                    1,
                    vec![
                        tcp((CLIENT, 10_000 + sport), (EMPTY, 80), TCP_SYN),
                        udp((CLIENT, 10_000 + sport), (EMPTY, 53)),
                    ],
                );
                sent += out.got.values().map(Vec::len).sum::<usize>();
            }
            sent
        };
        let per = ANSWERS_PER_SECOND as usize;
        assert_eq!(
            flood(&mut r, 1000),
            per,
            "RSTs and unreachables share the rate"
        );
        assert_eq!(r.ctr.refusals_suppressed.get(), 2000 - per as u64);
        assert_eq!(r.ctr.drops_of(DropReason::ServiceNoBackend), 2000);
        // a second later there are answers again
        r.now += 1;
        assert_eq!(flood(&mut r, 10), 20);
    }

    #[test]
    fn no_backend_and_unknown_ports_are_refused() {
        let mut r = Rig::new(&[B1]);
        let out = r.rx(1, vec![tcp((CLIENT, 40000), (EMPTY, 80), TCP_SYN)]);
        let f = &out.got[&1][0];
        assert_eq!(f.len(), ETH_HLEN + 40, "a bare RST");
        assert_eq!(f[0..6], crate::wire::eth::mac_bytes(mac(CLIENT)));
        assert_eq!(addr(f, 12), (EMPTY, 80));
        assert_eq!(addr(f, 16), (CLIENT, 40000));
        let seg = &f[ETH_HLEN + 20..];
        assert_eq!(seg[13], TCP_RST | TCP_ACK);
        assert_eq!(
            seg[8..12],
            1005u32.to_be_bytes(),
            "acks the SYN and its 4 bytes"
        );
        assert!(checksums_hold(f));
        let out = r.rx(1, vec![udp((CLIENT, 5353), (EMPTY, 53))]);
        let f = &out.got[&1][0];
        let ip = &f[ETH_HLEN..];
        assert_eq!(
            (ip[9], ip[20], ip[21]),
            (PROTO_ICMP, 3, 3),
            "port unreachable"
        );
        assert_eq!(ip[12..16], EMPTY.to_be_bytes());
        assert_eq!(
            ip[28 + 16..28 + 20],
            EMPTY.to_be_bytes(),
            "quotes the datagram"
        );
        assert!(checksums_hold(f));
        assert_eq!(r.ctr.drops_of(DropReason::ServiceNoBackend), 2);
        // a port the Service does not have
        let out = r.rx(1, vec![tcp((CLIENT, 40001), (VIP, 81), TCP_SYN)]);
        assert_eq!(out.got[&1][0][ETH_HLEN + 33], TCP_RST | TCP_ACK);
        assert_eq!(r.ctr.drops_of(DropReason::ServiceUnknownPort), 1);
        // a RST is never answered
        let out = r.rx(1, vec![tcp((CLIENT, 40002), (EMPTY, 80), TCP_RST)]);
        assert!(out.got.is_empty());
    }

    #[test]
    fn affinity_keeps_a_client_on_one_backend() {
        let mut t = SvcNat::new(1024, Timeouts::default());
        let svcs = service(&[B1, B2, CLIENT + 1, CLIENT + 2], Some(30));
        let s = Services::build(&svcs, |_| true);
        let Lookup::Port(i) = s.lookup(VIP, PROTO_TCP, 80) else {
            panic!("port")
        };
        let sp = s.port(i);
        let f = |sport| Flow {
            src: CLIENT,
            dst: VIP,
            proto: PROTO_TCP,
            sport,
            dport: 80,
            tcp_flags: TCP_SYN,
            ..Flow::default()
        };
        let first = t.outbound(1, sp, &f(1000), 0).expect("backend").dst;
        for sport in 1001..1100 {
            assert_eq!(t.outbound(1, sp, &f(sport), 1).expect("backend").dst, first);
        }
        // after the timeout the client is balanced again (by its address,
        // so to the same backend while the backends stay)
        assert_eq!(t.outbound(1, sp, &f(2000), 40).expect("backend").dst, first);
    }

    #[test]
    fn icmp_errors_from_a_backend_reach_the_client_about_the_vip() {
        let mut r = Rig::new(&[B1]);
        let out = r.rx(1, vec![udp((CLIENT, 5353), (VIP, 80))]);
        let ip = &out.got[&1][0][ETH_HLEN..];
        assert_eq!((ip[20], ip[21]), (3, 3), "UDP/80 is not served: refused");
        // a UDP Service port
        let svcs: Vec<api::Service> = vec![serde_json::from_value(serde_json::json!({
            "name": "default/dns",
            "cluster_ips": [std::net::Ipv4Addr::from(VIP)],
            "ports": [{"protocol": "UDP", "port": 53,
                       "backends": [{"ip": std::net::Ipv4Addr::from(B1), "port": 5353}]}]
        }))
        .expect("service")];
        let routes = &r.routes;
        r.services = Services::build(&svcs, |ip| routes.contains_key(&ip));
        let out = r.rx(1, vec![udp((CLIENT, 4000), (VIP, 53))]);
        let sent = out.got[&2][0].clone();
        assert_eq!(addr(&sent, 16), (B1, 5353));
        // B1 answers with a port unreachable quoting the translated datagram
        let mut err = [0u8; crate::wire::icmp::MAX_ERROR_LEN];
        let n = crate::wire::icmp::unreachable(&sent[ETH_HLEN..], 3, B1, &mut err);
        let mut f = sent[..ETH_HLEN].to_vec();
        f[6..12].copy_from_slice(&crate::wire::eth::mac_bytes(mac(B1)));
        f.extend_from_slice(&err[..n]);
        let back = r.rx(2, vec![f]);
        let ip = &back.got[&1][0][ETH_HLEN..];
        assert_eq!(ip[12..16], VIP.to_be_bytes(), "from the VIP");
        assert_eq!(ip[28 + 16..28 + 20], VIP.to_be_bytes(), "about the VIP");
        assert_eq!(ip[28 + 22..28 + 24], 53u16.to_be_bytes(), "and its port");
        assert!(
            crate::testing::checksums_hold(ip),
            "ICMP and header checksums"
        );
    }
}

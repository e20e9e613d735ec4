//! The burst pipeline: a burst from one port goes through the stages
//! together, and what leaves is batched per output port.
//!
//! [`Pipeline::process`] picks the stage by input port: a routed pod
//! ([`pod`]), the uplink or the host port ([`uplink`]), or a bridge port
//! ([`bridge`]); those call on [`l3`], [`firewall`], [`services`] and
//! [`refuse`]. Every stage ends in [`Pipeline::enqueue`], which batches per
//! output port; batches go out when full and at the end of the burst.
//! Nothing here allocates, locks or calls the kernel.

pub mod bridge;
pub mod firewall;
pub mod l3;
pub mod pod;
pub mod refuse;
pub mod services;
pub mod trace;
pub mod uplink;

use crate::counters::{DropReason, WorkerCounters};
use crate::packet::{Burst, PacketBuf};
use crate::tables::conntrack::{Conntrack, Flow, Timeouts};
use crate::tables::endpoints::{Endpoint, Routes};
use crate::tables::fdb::Fdb;
use crate::tables::nat::{Snat, DEFAULT_PORTS};
use crate::tables::neigh::Neighbors;
use crate::tables::services::Services;
use crate::tables::svcnat::SvcNat;
use crate::tables::templates::Templates;
use crate::tables::underlay::Underlay;
use crossbeam_queue::ArrayQueue;
use firewall::{FlowLog, LogRecord, PolicyView, RateLimit};
use policy::Direction;
use std::ops::RangeInclusive;

/// Interfaces a switch holds. Port ids are the switch's own (not DPDK ethdev
/// ids): pods on vhost-user and TAP interfaces need no ethdev, and a node
/// holds far more of them than DPDK's `RTE_MAX_ETHPORTS`.
pub const MAX_PORTS: usize = 4096;

/// A set of port ids, one bit each.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet([u64; MAX_PORTS / 64]);

impl PortSet {
    pub const NONE: PortSet = PortSet([0; MAX_PORTS / 64]);
    /// Every port: for tests and benches where one worker owns them all.
    pub const ALL: PortSet = PortSet([u64::MAX; MAX_PORTS / 64]);

    pub fn insert(&mut self, port: u16) {
        let i = slot(port);
        self.0[i / 64] |= 1 << (i % 64);
    }

    #[inline(always)]
    pub fn contains(&self, port: u16) -> bool {
        let i = slot(port);
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

impl FromIterator<u16> for PortSet {
    fn from_iter<I: IntoIterator<Item = u16>>(it: I) -> Self {
        let mut s = PortSet::NONE;
        for p in it {
            s.insert(p);
        }
        s
    }
}

/// Where batches go.
pub trait TxSink<P> {
    /// Sends what it can from the front of `pkts` to `port` and removes what
    /// it took; says why the rest, if any, could not go.
    fn send(&mut self, port: u16, pkts: &mut Burst<P>) -> DropReason;
    /// A new frame of `len` zero bytes for the switch's own use (an ARP
    /// request), if buffers can be had.
    fn alloc(&mut self, _len: u16) -> Option<P> {
        None
    }
}

/// The forwarding context of one burst.
pub struct Context<'a> {
    pub fdb: &'a Fdb,
    /// Ports of the bridge domain: where unknown, broadcast and multicast go.
    pub domain: &'a [u16],
    /// Routed pods by port id (`None`: a bridge port).
    pub endpoints: &'a [Option<Endpoint>],
    /// Pod addresses to ports.
    pub routes: &'a Routes,
    /// Seconds since the switch started, for learning, aging and conntrack.
    pub now: u32,
    /// The ports this worker owns: a packet for another worker's port is
    /// handed over before its receiver's zone is checked.
    pub local: &'a PortSet,
    pub policy: PolicyView<'a>,
    /// Where Log rules write.
    pub log: &'a ArrayQueue<LogRecord>,
    /// The uplink and the remote nodes, when the switch has an uplink.
    pub underlay: Option<&'a Underlay>,
    /// Next hops on the underlay.
    pub neigh: &'a Neighbors,
    /// Service addresses and NodePorts.
    pub services: &'a Services,
}

/// Per-worker pipeline state: the tx batches, the connection table and the
/// flow-log rate limit.
///
/// Packets and bytes that ports receive and send are counted by the PMDs
/// themselves; the pipeline counts only what it drops.
pub struct Pipeline<P> {
    /// A batch per port (a few hundred kilobytes of pointers per worker:
    /// only the batches of ports that get traffic are ever touched).
    queues: Box<[Burst<P>]>,
    /// Ports whose batch holds packets, in the order they got their first.
    pending: Vec<u16>,
    pub ct: Conntrack,
    limiter: RateLimit,
    /// The TCP RSTs and ICMP errors this worker may send: a flood of
    /// packets that earn one gets few, and the uplink is not turned into
    /// a reflector.
    answers: RateLimit,
    /// natOutgoing translations (used by the worker owning the uplink).
    pub(crate) snat: Snat,
    pub(crate) templates: Templates,
    /// Service connections of this worker's clients (and NodePort).
    pub svc: SvcNat,
    /// The zones of the packet being traced ([`trace`]); `None` for all
    /// others.
    pub trace: Option<Box<trace::Trace>>,
}

/// Connections a worker tracks unless told otherwise.
pub const DEFAULT_CT_CAPACITY: usize = 1 << 20;
/// What one idle pass sweeps: a full conntrack table of 2^20 entries
/// (2^17 buckets) in about 2,000 passes.
const IDLE_SWEEP_BUCKETS: usize = 64;
const IDLE_SWEEP_ENTRIES: usize = 256;
/// RSTs and ICMP errors a worker may send per second, Linux's
/// `icmp_msgs_per_sec`.
pub const ANSWERS_PER_SECOND: u32 = 1000;
/// Flow-log records a worker may write per second (and in one burst).
pub const LOG_PER_SECOND: u32 = 100;

/// natOutgoing translations a worker keeps: as many as connections, up to
/// the ports one address has.
fn nat_capacity(ct_capacity: usize) -> usize {
    ct_capacity.min(1 << 16)
}

/// A port id as an index that needs no bounds check (MAX_PORTS is a power of two).
#[inline(always)]
pub(crate) fn slot(port: u16) -> usize {
    usize::from(port) & (MAX_PORTS - 1)
}

const _: () = assert!(MAX_PORTS.is_power_of_two() && MAX_PORTS <= 1 << 16);

impl<P: PacketBuf> Pipeline<P> {
    /// A pipeline that tracks up to `ct_capacity` connections.
    pub fn new(ct_capacity: usize, timeouts: Timeouts) -> Self {
        Self::small(ct_capacity, timeouts, DEFAULT_PORTS, MAX_PORTS)
    }

    /// The same with natOutgoing handing out only `nat_ports` and batches
    /// for port ids below `ports` alone (a packet for a port beyond is
    /// dropped as `no_port`): small enough to set up for every fuzzing
    /// input (the defaults cost a megabyte and a half), and a small port
    /// range runs out, so exhaustion is reached too.
    pub fn small(
        ct_capacity: usize,
        timeouts: Timeouts,
        nat_ports: RangeInclusive<u16>,
        ports: usize,
    ) -> Self {
        let ports = ports.min(MAX_PORTS);
        Pipeline {
            queues: (0..ports).map(|_| Burst::new()).collect(),
            // a port is listed once, and again each time its batch filled
            // and went out: a burst of 32 flooded to every port fills at
            // most as many batches again, so this never grows
            pending: Vec::with_capacity(2 * ports),
            ct: Conntrack::new(ct_capacity, timeouts),
            limiter: RateLimit::new(LOG_PER_SECOND, LOG_PER_SECOND),
            answers: RateLimit::new(ANSWERS_PER_SECOND, ANSWERS_PER_SECOND),
            snat: Snat::new(nat_capacity(ct_capacity), nat_ports, timeouts),
            templates: Templates::default(),
            // two entries a connection, at most as many connections as natOutgoing
            svc: SvcNat::new(2 * nat_capacity(ct_capacity), timeouts),
            trace: None,
        }
    }

    /// Switches one received burst, emptying `pkts`, and flushes the batches.
    pub fn process<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        in_port: u16,
        pkts: &mut Burst<P>,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        match cx.endpoints.get(slot(in_port)) {
            Some(Some(ep)) => self.route(cx, in_port, ep, pkts, sink, ctr),
            _ => match cx.underlay {
                Some(u) if u.uplink == in_port => self.uplink_rx(cx, u, pkts, sink, ctr),
                Some(u) if u.host == Some(in_port) => self.host_rx(cx, u, pkts, sink, ctr),
                _ => self.bridge(cx, in_port, pkts, sink, ctr),
            },
        }
        self.flush(sink, ctr);
    }

    /// Work for a pass that found no packets: reclaims expired
    /// connections and natOutgoing ports a little at a time, so that
    /// pods' shares of the table and the free ports follow the clock.
    pub fn idle(&mut self, now: u32) {
        self.ct.sweep(now, IDLE_SWEEP_BUCKETS);
        self.snat.sweep(now, IDLE_SWEEP_ENTRIES);
    }

    /// Whether the worker may send one more answer of its own (a RST, an
    /// unreachable, a fragmentation-needed) now; what it may not is counted.
    #[inline]
    pub(crate) fn answer_allowed(&mut self, now: u32, ctr: &WorkerCounters) -> bool {
        if self.answers.take(now) {
            return true;
        }
        ctr.refusals_suppressed.add(1);
        false
    }

    #[inline(always)]
    pub(crate) fn zone(
        &mut self,
        cx: &Context<'_>,
        port: u16,
        ep: &Endpoint,
        dir: Direction,
        flow: &Flow,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        if self.trace.is_some() {
            return self.zone_traced(cx, port, ep, dir, flow, ctr);
        }
        self.zone_untraced(cx, port, ep, dir, flow, ctr)
    }

    #[inline(always)]
    pub(crate) fn zone_untraced(
        &mut self,
        cx: &Context<'_>,
        port: u16,
        ep: &Endpoint,
        dir: Direction,
        flow: &Flow,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let mut log = FlowLog {
            queue: cx.log,
            limiter: &mut self.limiter,
        };
        firewall::check(
            &mut self.ct,
            port,
            ep,
            dir,
            flow,
            &cx.policy,
            cx.now,
            &mut log,
            ctr,
        )
    }

    #[inline(always)]
    pub(crate) fn enqueue<S: TxSink<P>>(
        &mut self,
        port: u16,
        pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        let Some(q) = self.queues.get_mut(slot(port)) else {
            ctr.drop(DropReason::NoPort, 1);
            return;
        };
        if q.is_empty() {
            self.pending.push(port);
        }
        q.push(pkt);
        if q.is_full() {
            transmit_counted(q, port, ctr, |q| sink.send(port, q));
        }
    }

    /// Sends every pending batch.
    pub fn flush<S: TxSink<P>>(&mut self, sink: &mut S, ctr: &WorkerCounters) {
        // a batch sent when it filled up and refilled since is listed twice;
        // the second visit finds it empty
        for i in 0..self.pending.len() {
            let port = self.pending[i];
            let Some(q) = self.queues.get_mut(slot(port)) else {
                continue;
            };
            if !q.is_empty() {
                transmit_counted(q, port, ctr, |q| sink.send(port, q));
            }
        }
        self.pending.clear();
    }
}

/// Hands a batch for `port` to `send`, counts what it refused and drops
/// (frees) that.
#[inline]
pub fn transmit_counted<P: PacketBuf>(
    q: &mut Burst<P>,
    port: u16,
    ctr: &WorkerCounters,
    send: impl FnOnce(&mut Burst<P>) -> DropReason,
) {
    let why = send(q);
    if !q.is_empty() {
        let unsent = q.len() as u64;
        q.clear();
        ctr.ports[slot(port)].tx_drops.add(unsent);
        ctr.drop(why, unsent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A sink that records what each port got; ports listed in `full` take nothing.
    #[derive(Default)]
    struct Recorder {
        got: HashMap<u16, Vec<Vec<u8>>>,
        full: Vec<u16>,
        limit: Option<usize>,
    }

    impl TxSink<Vec<u8>> for Recorder {
        fn send(&mut self, port: u16, pkts: &mut Burst<Vec<u8>>) -> DropReason {
            if self.full.contains(&port) {
                return DropReason::TxFull;
            }
            let n = self.limit.map_or(pkts.len(), |l| l.min(pkts.len()));
            self.got.entry(port).or_default().extend(pkts.drain(..n));
            DropReason::TxFull
        }
    }

    impl Recorder {
        fn count(&self, port: u16) -> usize {
            self.got.get(&port).map_or(0, Vec::len)
        }
    }

    fn mac(last: u8) -> [u8; 6] {
        [0x02, 0, 0, 0, 0, last]
    }

    #[test]
    fn batches_go_to_any_port_id_and_a_small_pipeline_drops_beyond_its_ports() {
        let ctr = WorkerCounters::new(MAX_PORTS);
        let mut sink = Recorder::default();
        let mut w: Pipeline<Vec<u8>> = Pipeline::new(16, Default::default());
        // far past 64 ports, and a batch that fills and is refilled
        for i in 0..40 {
            w.enqueue(4000, vec![i; 60], &mut sink, &ctr);
        }
        w.enqueue(70, vec![0; 60], &mut sink, &ctr);
        w.flush(&mut sink, &ctr);
        assert_eq!(sink.count(4000), 40);
        assert_eq!(sink.count(70), 1);
        assert!(w.pending.is_empty());
        let mut small: Pipeline<Vec<u8>> = Pipeline::small(16, Default::default(), 1..=2, 4);
        small.enqueue(3, vec![0; 60], &mut sink, &ctr);
        small.enqueue(9, vec![0; 60], &mut sink, &ctr);
        small.flush(&mut sink, &ctr);
        assert_eq!(sink.count(3), 1);
        assert_eq!(sink.count(9), 0);
        assert_eq!(ctr.drops_of(DropReason::NoPort), 1);
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&0x88b5u16.to_be_bytes());
        f.resize(60, 0);
        f
    }

    struct Rig {
        fdb: Fdb,
        domain: Vec<u16>,
        pipe: Pipeline<Vec<u8>>,
        ctr: WorkerCounters,
        sink: Recorder,
        now: u32,
    }

    impl Rig {
        fn new(ports: &[u16]) -> Rig {
            Rig {
                fdb: Fdb::new(1024, 300),
                domain: ports.to_vec(),
                pipe: Pipeline::new(1024, Default::default()),
                ctr: WorkerCounters::new(MAX_PORTS),
                sink: Recorder::default(),
                now: 0,
            }
        }

        fn rx(&mut self, port: u16, frames: Vec<Vec<u8>>) {
            let mut b: Burst<Vec<u8>> = frames.into_iter().collect();
            let routes = Routes::default();
            let compiled = policy::compile::Compiled::empty();
            let log = ArrayQueue::new(16);
            let neigh = crate::tables::neigh::Neighbors::new(16);
            let services = crate::tables::services::Services::default();
            let cx = Context {
                fdb: &self.fdb,
                domain: &self.domain,
                endpoints: &[],
                routes: &routes,
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
                services: &services,
            };
            self.pipe
                .process(&cx, port, &mut b, &mut self.sink, &self.ctr);
            assert!(b.is_empty());
        }

        fn drops(&self, r: DropReason) -> u64 {
            self.ctr.drops_of(r)
        }
    }

    #[test]
    fn unknown_unicast_floods_then_learned_goes_to_one_port() {
        let mut r = Rig::new(&[0, 1, 2, 3]);
        r.rx(0, vec![frame(mac(0xa1), mac(0xa0))]);
        assert_eq!(
            [
                r.sink.count(0),
                r.sink.count(1),
                r.sink.count(2),
                r.sink.count(3)
            ],
            [0, 1, 1, 1]
        );
        // the reply teaches the switch where a1 lives
        r.rx(1, vec![frame(mac(0xa0), mac(0xa1))]);
        assert_eq!(r.sink.count(0), 1, "a0 was learned on port 0: unicast");
        assert_eq!([r.sink.count(2), r.sink.count(3)], [1, 1], "no flood");
        r.rx(0, vec![frame(mac(0xa1), mac(0xa0)); 5]);
        assert_eq!(
            [r.sink.count(1), r.sink.count(2), r.sink.count(3)],
            [6, 1, 1]
        );
        assert!(r.sink.got[&1]
            .iter()
            .all(|f| f.len() == 60 && f[..6] == mac(0xa1)));
        assert_eq!(r.ctr.learned.get(), 2);
    }

    #[test]
    fn broadcast_and_multicast_flood_to_all_others() {
        let mut r = Rig::new(&[0, 1, 2]);
        r.rx(1, vec![frame([0xff; 6], mac(0xa0))]); // a0 behind port 1
        r.rx(
            0,
            vec![
                frame([0xff; 6], mac(0xb0)),
                frame([0x01, 0, 0x5e, 0, 0, 1], mac(0xb0)),
            ],
        );
        assert_eq!(
            [r.sink.count(0), r.sink.count(1), r.sink.count(2)],
            [1, 2, 3]
        );
        assert_eq!(r.sink.got[&2][1][..6], [0xff; 6]);
    }

    #[test]
    fn flood_with_no_other_port_is_counted() {
        let mut r = Rig::new(&[0]);
        r.rx(0, vec![frame([0xff; 6], mac(1))]);
        assert_eq!(r.drops(DropReason::NoPort), 1);
        assert_eq!(r.ctr.ports[0].rx_drops.get(), 1);
    }

    #[test]
    fn same_port_destination_is_dropped() {
        let mut r = Rig::new(&[0, 1]);
        r.rx(0, vec![frame(mac(2), mac(1))]);
        r.rx(0, vec![frame(mac(1), mac(2))]); // 2 is now on port 0 too
        assert_eq!(r.drops(DropReason::SamePort), 1);
        assert_eq!(r.sink.count(1), 1);
    }

    #[test]
    fn mac_move_follows_the_newest_port() {
        let mut r = Rig::new(&[0, 1, 2]);
        r.rx(1, vec![frame([0xff; 6], mac(0xaa))]);
        r.rx(0, vec![frame(mac(0xaa), mac(0xbb))]);
        assert_eq!(r.sink.count(1), 1);
        // aa moves to port 2
        r.rx(2, vec![frame([0xff; 6], mac(0xaa))]);
        r.rx(0, vec![frame(mac(0xaa), mac(0xbb))]);
        assert_eq!(r.sink.count(2), 2, "after the move frames go to port 2");
        assert_eq!(r.sink.count(1), 2, "the second broadcast only");
        assert_eq!(r.ctr.moved.get(), 1);
    }

    #[test]
    fn aged_entry_floods_again() {
        let mut r = Rig::new(&[0, 1, 2]);
        r.fdb.set_aging(10);
        r.rx(1, vec![frame([0xff; 6], mac(0xaa))]);
        r.now = 5;
        r.rx(0, vec![frame(mac(0xaa), mac(0xbb))]);
        assert_eq!(r.sink.count(2), 1, "only the broadcast");
        r.now = 20;
        r.rx(0, vec![frame(mac(0xaa), mac(0xbb))]);
        assert_eq!(r.sink.count(2), 2, "aged out: flooded");
    }

    #[test]
    fn malformed_frames_are_dropped_by_reason_and_others_flow() {
        let mut r = Rig::new(&[0, 1]);
        let mut bad_len = frame(mac(1), mac(2));
        bad_len[12..14].copy_from_slice(&1000u16.to_be_bytes());
        let mut bad_src = frame(mac(1), mac(2));
        bad_src[6] = 0x01;
        r.rx(
            0,
            vec![
                vec![0u8; 13],
                bad_len,
                frame(mac(1), mac(2)),
                bad_src,
                vec![],
            ],
        );
        assert_eq!(r.drops(DropReason::Runt), 2);
        assert_eq!(r.drops(DropReason::BadLength), 1);
        assert_eq!(r.drops(DropReason::BadSrcMac), 1);
        assert_eq!(r.sink.count(1), 1, "the good frame still went through");
        assert_eq!(r.ctr.ports[0].rx_drops.get(), 4);
    }

    #[test]
    fn full_batches_are_sent_early_and_refusals_counted() {
        let mut r = Rig::new(&[0, 1, 2]);
        r.rx(1, vec![frame([0xff; 6], mac(1))]);
        r.rx(2, vec![frame([0xff; 6], mac(2))]);
        r.sink.full = vec![2];
        r.sink.limit = Some(20);
        r.rx(0, vec![frame(mac(1), mac(9)); 32]);
        assert_eq!(r.sink.count(1), 1 + 20);
        assert_eq!(r.drops(DropReason::TxFull), 12);
        assert_eq!(r.ctr.ports[1].tx_drops.get(), 12);
        r.rx(0, vec![frame(mac(2), mac(9)); 3]);
        assert_eq!(r.ctr.ports[2].tx_drops.get(), 3);
        assert_eq!(r.drops(DropReason::TxFull), 15);
    }

    /// Two workers, each owning one pod's port: the sender's worker checks
    /// the sender's zone, the receiver's worker checks the receiver's zone
    /// when the packet is handed over, and each recognises the replies.
    mod handoff {
        use super::*;
        use crate::tables::endpoints::{EndpointPolicy, Route};
        use policy::compile::{Compiled, World};

        const A: [u8; 4] = [10, 65, 0, 1];
        const B: [u8; 4] = [10, 65, 0, 2];
        const MAC_A: u64 = 0x0200_0000_000a;
        const MAC_B: u64 = 0x0200_0000_000b;

        fn compiled() -> Compiled {
            // B takes UDP to port 53 and nothing else
            let world: World = serde_json::from_value(serde_json::json!({
                "namespaces": [{"name": "default"}],
                "endpoints": [
                    {"name": "default/a", "namespace": "default", "labels": {"app": "a"},
                     "ips": ["10.65.0.1"], "local": true},
                    {"name": "default/b", "namespace": "default", "labels": {"app": "b"},
                     "ips": ["10.65.0.2"], "local": true}
                ],
                "policies": [{"calico": {
                    "metadata": {"name": "b-dns", "namespace": "default"},
                    "spec": {"selector": "app == 'b'", "types": ["Ingress"],
                             "ingress": [{"action": "Allow", "protocol": "UDP",
                                          "destination": {"ports": [53]}}]}
                }}]
            }))
            .expect("test world");
            Compiled::compile(&world).expect("compiles")
        }

        fn udp(src: ([u8; 4], u64), dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
            let mut f = Vec::new();
            f.extend_from_slice(&api::GATEWAY_MAC.0);
            f.extend_from_slice(&src.1.to_be_bytes()[2..]);
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
            f.extend_from_slice(&src.0);
            f.extend_from_slice(&dst);
            crate::testing::fill_header_checksum(&mut f[14..]);
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            f.extend_from_slice(&[0, 8, 0, 0]);
            f
        }

        #[test]
        fn each_worker_checks_its_own_pods_zone() {
            let c = compiled();
            let ep = |name: &str, mac: u64, ip: [u8; 4]| {
                let i = c.endpoint_index(name).expect("endpoint");
                Endpoint {
                    mac,
                    ips: vec![u32::from_be_bytes(ip)].into(),
                    policy: EndpointPolicy {
                        index: i as u32,
                        ingress: c.has_policy(i, Direction::Ingress),
                        egress: c.has_policy(i, Direction::Egress),
                        programmed: true,
                    },
                    zone: (mac & 0xffff) as u16,
                }
            };
            let mut endpoints = vec![None; MAX_PORTS];
            endpoints[1] = Some(ep("default/a", MAC_A, A));
            endpoints[2] = Some(ep("default/b", MAC_B, B));
            let mut routes = Routes::default();
            routes.insert(
                u32::from_be_bytes(A),
                Route {
                    port: 1,
                    mac: MAC_A,
                },
            );
            routes.insert(
                u32::from_be_bytes(B),
                Route {
                    port: 2,
                    mac: MAC_B,
                },
            );
            let fdb = Fdb::new(64, 300);
            let log = ArrayQueue::new(16);
            let neigh = crate::tables::neigh::Neighbors::new(16);
            let services = crate::tables::services::Services::default();
            let (l1, l2): (PortSet, PortSet) =
                ([1].into_iter().collect(), [2].into_iter().collect());
            let cx = |local| Context {
                fdb: &fdb,
                domain: &[],
                endpoints: &endpoints,
                routes: &routes,
                now: 1,
                local,
                policy: PolicyView {
                    compiled: &c,
                    generation: 1,
                    rule_slots: &[],
                },
                log: &log,
                underlay: None,
                neigh: &neigh,
                services: &services,
            };
            let (cx1, cx2) = (cx(&l1), cx(&l2));
            let mut w1: Pipeline<Vec<u8>> = Pipeline::new(1024, Default::default());
            let mut w2: Pipeline<Vec<u8>> = Pipeline::new(1024, Default::default());
            let (c1, c2) = (
                WorkerCounters::new(MAX_PORTS),
                WorkerCounters::new(MAX_PORTS),
            );

            // A sends to B twice: DNS, then something B's policy refuses
            let mut sink = Recorder::default();
            let mut b: Burst<Vec<u8>> =
                [udp((A, MAC_A), B, 5000, 53), udp((A, MAC_A), B, 5001, 80)]
                    .into_iter()
                    .collect();
            w1.process(&cx1, 1, &mut b, &mut sink, &c1);
            assert_eq!(sink.count(2), 2, "worker 1 does not judge B's ingress");
            // worker 2 receives the hand-off
            let mut handed: Burst<Vec<u8>> = sink
                .got
                .remove(&2)
                .unwrap_or_default()
                .into_iter()
                .collect();
            w2.deliver(&cx2, 2, &mut handed, &c2);
            assert_eq!(handed.len(), 1, "B's policy let one through");
            assert_eq!(handed[0][36..38], 53u16.to_be_bytes());
            assert_eq!(c2.drops_of(DropReason::PolicyIngress), 1);

            // B answers the DNS query: its worker knows the connection, and so
            // does A's when the reply is handed over
            let mut sink = Recorder::default();
            let mut b: Burst<Vec<u8>> = [udp((B, MAC_B), A, 53, 5000)].into_iter().collect();
            w2.process(&cx2, 2, &mut b, &mut sink, &c2);
            let mut handed: Burst<Vec<u8>> = sink
                .got
                .remove(&1)
                .unwrap_or_default()
                .into_iter()
                .collect();
            w1.deliver(&cx1, 1, &mut handed, &c1);
            assert_eq!(handed.len(), 1, "the reply reaches A");
            assert_eq!(
                w2.ct.state_of(
                    (MAC_B & 0xffff) as u16,
                    &crate::tables::conntrack::Flow::parse(&handed[0][14..]),
                    1
                ),
                Some(crate::tables::conntrack::State::Replied)
            );
            // B may open flows of its own: A has no ingress policy, B no egress one
            let mut sink = Recorder::default();
            let mut b: Burst<Vec<u8>> = [udp((B, MAC_B), A, 7000, 80)].into_iter().collect();
            w2.process(&cx2, 2, &mut b, &mut sink, &c2);
            assert_eq!(sink.count(1), 1);
            assert_eq!(
                c1.drops_of(DropReason::PolicyIngress) + c2.drops_of(DropReason::PolicyEgress),
                0
            );
        }

        /// An ARP request from `mac`/`ip` for the gateway.
        fn arp_for_gateway(mac: u64, ip: [u8; 4]) -> Vec<u8> {
            let m = &mac.to_be_bytes()[2..];
            let mut f = vec![0xff; 6];
            f.extend_from_slice(m);
            f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            f.extend_from_slice(m);
            f.extend_from_slice(&ip);
            f.extend_from_slice(&[0; 6]);
            f.extend_from_slice(&[169, 254, 1, 1]);
            f.resize(60, 0);
            f
        }

        #[test]
        fn a_pod_not_programmed_passes_nothing_but_arp() {
            let c = compiled();
            let mut endpoints = vec![None; MAX_PORTS];
            endpoints[1] = Some(Endpoint {
                mac: MAC_A,
                ips: vec![u32::from_be_bytes(A)].into(),
                policy: EndpointPolicy::OPEN,
                zone: 1,
            });
            // B's labels are not known yet: whatever its namespace says
            // about it is not known either
            endpoints[2] = Some(Endpoint {
                mac: MAC_B,
                ips: vec![u32::from_be_bytes(B)].into(),
                policy: EndpointPolicy::default(),
                zone: 2,
            });
            let mut routes = Routes::default();
            for (ip, port, mac) in [(A, 1, MAC_A), (B, 2, MAC_B)] {
                routes.insert(u32::from_be_bytes(ip), Route { port, mac });
            }
            let fdb = Fdb::new(64, 300);
            let log = ArrayQueue::new(16);
            let neigh = crate::tables::neigh::Neighbors::new(16);
            let services = crate::tables::services::Services::default();
            let cx = Context {
                fdb: &fdb,
                domain: &[],
                endpoints: &endpoints,
                routes: &routes,
                now: 1,
                local: &PortSet::ALL,
                policy: PolicyView {
                    compiled: &c,
                    generation: 1,
                    rule_slots: &[],
                },
                log: &log,
                underlay: None,
                neigh: &neigh,
                services: &services,
            };
            let mut w: Pipeline<Vec<u8>> = Pipeline::new(1024, Default::default());
            let ctr = WorkerCounters::new(MAX_PORTS);
            let mut sink = Recorder::default();
            let mut b: Burst<Vec<u8>> = [udp((A, MAC_A), B, 5000, 53)].into_iter().collect();
            w.process(&cx, 1, &mut b, &mut sink, &ctr);
            let mut b: Burst<Vec<u8>> = [
                udp((B, MAC_B), A, 53, 5000),
                udp((B, MAC_B), A, 7000, 80),
                arp_for_gateway(MAC_B, B),
            ]
            .into_iter()
            .collect();
            w.process(&cx, 2, &mut b, &mut sink, &ctr);
            assert_eq!(sink.count(1), 0, "nothing from B reaches A");
            assert_eq!(
                sink.count(2),
                1,
                "B hears the answer to its ARP, and only that"
            );
            assert_eq!(sink.got[&2][0][12..14], [0x08, 0x06]);
            assert_eq!(ctr.drops_of(DropReason::Unprogrammed), 3);
            // a packet handed over by another worker meets the same gate
            let mut handed: Burst<Vec<u8>> = [udp((A, MAC_A), B, 5001, 53)].into_iter().collect();
            w.deliver(&cx, 2, &mut handed, &ctr);
            assert!(handed.is_empty());
            assert_eq!(ctr.drops_of(DropReason::Unprogrammed), 4);
            // and B's zone remembers nothing that would outlive the gate
            let f = udp((A, MAC_A), B, 5000, 53);
            let flow = crate::tables::conntrack::Flow::parse(&f[14..]);
            assert_eq!(w.ct.state_of(2, &flow, 1), None);
        }
    }
}

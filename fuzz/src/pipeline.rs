//! The pipeline on a switch as a node of a cluster has it, without DPDK:
//! pods with endpoints and policy (one of them on a second worker), a
//! ClusterIP and NodePort Service with local and remote backends, one
//! without backends, remote nodes over VXLAN, IP-in-IP and native routing,
//! natOutgoing, a host port and a small bridge domain.
//!
//! The tables that snapshots carry are built once; what workers learn
//! (FDB, neighbours, conntrack, NAT, Service translations) starts empty for
//! every input, so that a crash reproduces from its input alone.
//!
//! An input is one byte of flags, then records: a selector byte (which
//! port, how far the clock moves, whether a new burst starts), a 16-bit
//! length and the frame. Consecutive records for one port make one burst.
//! An empty record is the answer to the last frame the switch sent.

use crate::frames;
use crossbeam_queue::ArrayQueue;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use vswitch::counters::{DropReason, WorkerCounters};
use vswitch::packet::{Burst, Headroom, PacketBuf, BURST};
use vswitch::pipeline::firewall::{LogRecord, PolicyView};
use vswitch::pipeline::{Context, Pipeline, PortSet, TxSink, MAX_PORTS};
use vswitch::tables::conntrack::Timeouts;
use vswitch::tables::endpoints::{Endpoint, EndpointPolicy, Route, Routes};
use vswitch::tables::fdb::Fdb;
use vswitch::tables::lpm::Lpm;
use vswitch::tables::neigh::Neighbors;
use vswitch::tables::services::Services;
use vswitch::tables::underlay::{Encap, RemoteNode, RemoteRoute, Underlay};

/// Port ids the fuzzed switch has (all below this): its pipelines and
/// counters are sized for them, which keeps each input cheap to set up.
const PORTS: usize = 16;
pub const UPLINK: u16 = 8;
pub const HOST: u16 = 9;
/// The pod port owned by the second worker.
pub const OTHER_WORKER_POD: u16 = 4;
pub const BRIDGE: [u16; 2] = [10, 11];
pub const PODS: [u16; 4] = [1, 2, 3, OTHER_WORKER_POD];
const ALL: [u16; 8] = [
    1,
    2,
    3,
    OTHER_WORKER_POD,
    UPLINK,
    HOST,
    BRIDGE[0],
    BRIDGE[1],
];

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
pub const NODE_MAC: u64 = 0x0200_c0a8_3201;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 254);
pub const GATEWAY_MAC: u64 = 0x0200_c0a8_32fe;
pub const VTEP_MAC: u64 = 0x66ee_0000_0001;
pub const VXLAN_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const IPIP_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 65);
/// natOutgoing's ports: few, so that they run out.
pub const NAT_PORTS: std::ops::RangeInclusive<u16> = 32768..=32799;
/// The uplink's MTU: frames above it towards a tunnel are answered with
/// "fragmentation needed".
pub const MTU: u16 = 1500;

/// Remote nodes: name, underlay address, blocks with their encapsulation,
/// tunnel addresses.
pub const NODES: [(&str, Ipv4Addr, &str, Encap, Option<Ipv4Addr>); 3] = [
    (
        "node-b",
        Ipv4Addr::new(192, 168, 50, 2),
        "10.244.1.0/26",
        Encap::Vxlan,
        Some(Ipv4Addr::new(10, 244, 1, 1)),
    ),
    // outside this node's subnet: reached through the gateway
    (
        "node-c",
        Ipv4Addr::new(192, 168, 60, 3),
        "10.244.2.0/26",
        Encap::Ipip,
        Some(Ipv4Addr::new(10, 244, 2, 1)),
    ),
    (
        "node-d",
        Ipv4Addr::new(192, 168, 50, 4),
        "10.245.0.0/26",
        Encap::None,
        None,
    ),
];

/// Local pods: port, name (as policy knows it), namespace, app label, address.
pub const POD_INFO: [(u16, &str, &str, &str, Ipv4Addr); 4] = [
    (1, "pod1", "web", "web", Ipv4Addr::new(10, 244, 0, 2)),
    (2, "pod2", "web", "web", Ipv4Addr::new(10, 244, 0, 3)),
    (3, "pod3", "db", "db", Ipv4Addr::new(10, 244, 0, 4)),
    (4, "pod4", "web", "client", Ipv4Addr::new(10, 244, 0, 5)),
];

pub fn pod_mac(ip: Ipv4Addr) -> u64 {
    0x0200_0000_0000 | u64::from(u32::from(ip))
}

fn mac_of_remote(i: usize) -> u64 {
    0x0200_0000_0100 | i as u64
}

fn vtep_of_remote(i: usize) -> u64 {
    0x66ee_0000_0100 | i as u64
}

/// What snapshots carry: built once.
pub struct Tables {
    pub endpoints: Vec<Option<Endpoint>>,
    pub routes: Routes,
    pub compiled: policy::compile::Compiled,
    pub services: Services,
    pub underlay: Underlay,
}

fn cidr(s: &str) -> (u32, u8) {
    let (ip, len) = s.split_once('/').expect("a CIDR");
    (
        u32::from(ip.parse::<Ipv4Addr>().expect("an address")),
        len.parse().expect("a length"),
    )
}

fn world() -> policy::compile::World {
    let mut endpoints: Vec<serde_json::Value> = POD_INFO
        .iter()
        .map(|(_, name, ns, app, ip)| {
            serde_json::json!({"name": name, "namespace": ns, "labels": {"app": app},
                               "ips": [ip], "local": true,
                               "named_ports": [{"name": "pg", "protocol": "TCP", "port": 5432}]})
        })
        .collect();
    endpoints.push(serde_json::json!({"name": "web/remote", "namespace": "web",
        "labels": {"app": "web"}, "ips": ["10.244.1.5"]}));
    serde_json::from_value(serde_json::json!({
        "namespaces": [{"name": "web", "labels": {"team": "a"}}, {"name": "db"}],
        "endpoints": endpoints,
        "policies": [
            {"tier": {"metadata": {"name": "security"}, "spec": {"order": 10}}},
            // the database takes its port from web pods only, logged
            {"calico": {
                "metadata": {"name": "db-in", "namespace": "db"},
                "spec": {"selector": "app == 'db'", "types": ["Ingress"], "ingress": [
                    {"action": "Log", "protocol": "TCP", "destination": {"ports": ["pg"]}},
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": "app == 'web'", "namespaceSelector": "all()"},
                     "destination": {"ports": [5432]}},
                    {"action": "Allow", "protocol": "ICMP"}
                ]}
            }},
            // the client may not reach 8.8.8.0/24, nor the database but by DNS
            {"global": {
                "metadata": {"name": "client-out"},
                "spec": {"tier": "security", "order": 1, "selector": "app == 'client'",
                         "types": ["Egress"], "egress": [
                    {"action": "Deny", "destination": {"nets": ["8.8.8.0/24"]}},
                    {"action": "Pass", "protocol": "UDP", "destination": {"ports": [53]}},
                    {"action": "Deny", "destination": {"selector": "app == 'db'"}},
                    {"action": "Allow"}
                ]}
            }}
        ]
    }))
    .expect("the fuzzing world")
}

fn services_json() -> Vec<api::Service> {
    serde_json::from_value(serde_json::json!([
        {"name": "web/web", "cluster_ips": ["10.96.0.10"], "ports": [
            {"protocol": "TCP", "port": 80, "node_port": 30080, "backends": [
                {"ip": "10.244.0.2", "port": 8080}, {"ip": "10.244.0.3", "port": 8080},
                {"ip": "10.244.1.5", "port": 8080, "node": "node-b"}]}]},
        {"name": "web/dns", "cluster_ips": ["10.96.0.53"], "affinity_timeout": 10800, "ports": [
            {"protocol": "UDP", "port": 53, "backends": [{"ip": "10.244.0.3", "port": 5353}]},
            {"protocol": "TCP", "port": 53, "backends": [{"ip": "10.244.0.3", "port": 5353}]}]},
        {"name": "web/empty", "cluster_ips": ["10.96.0.99"], "ports": [
            {"protocol": "TCP", "port": 80, "node_port": 30099, "backends": []},
            {"protocol": "UDP", "port": 80, "backends": []}]},
        {"name": "db/db", "cluster_ips": ["10.96.0.20"], "ports": [
            {"protocol": "TCP", "port": 5432, "node_port": 30432,
             "backends": [{"ip": "10.244.0.4", "port": 5432}]}]}
    ]))
    .expect("the fuzzing services")
}

fn underlay() -> Underlay {
    let mut u = Underlay {
        id: 1,
        uplink: UPLINK,
        host: Some(HOST),
        mac: NODE_MAC,
        ip: u32::from(NODE_IP),
        prefix: 24,
        gateway: u32::from(GATEWAY),
        mtu: MTU,
        ttl: 64,
        vtep_mac: VTEP_MAC,
        vxlan_ip: u32::from(VXLAN_IP),
        ipip_ip: u32::from(IPIP_IP),
        nodes: Vec::new(),
        remote: Lpm::new(),
        peers: HashMap::new(),
        pools: Lpm::new(),
    };
    let (net, len) = cidr("10.244.0.0/16");
    let _ = u.pools.insert(net, len, true);
    let (net, len) = cidr("10.245.0.0/16");
    let _ = u.pools.insert(net, len, false);
    for (i, (name, ip, block, encap, tunnel)) in NODES.iter().enumerate() {
        let ip = u32::from(*ip);
        let node = i as u16;
        u.nodes.push(RemoteNode {
            name: (*name).into(),
            ip,
            next_hop: u.next_hop(ip),
            vtep_mac: vtep_of_remote(i),
        });
        u.peers.insert(ip, node);
        let (net, len) = cidr(block);
        let _ = u.remote.insert(
            net,
            len,
            RemoteRoute {
                node,
                encap: *encap,
            },
        );
        if let Some(t) = tunnel {
            let _ = u.remote.insert(
                u32::from(*t),
                32,
                RemoteRoute {
                    node,
                    encap: *encap,
                },
            );
        }
    }
    u
}

impl Tables {
    fn build() -> Tables {
        let compiled =
            policy::compile::Compiled::compile(&world()).expect("the fuzzing policy compiles");
        let mut endpoints = vec![None; MAX_PORTS];
        let mut routes = Routes::default();
        for (port, name, _, _, ip) in POD_INFO {
            let i = compiled.endpoint_index(name).expect("a local endpoint");
            let ip = u32::from(ip);
            endpoints[usize::from(port)] = Some(Endpoint {
                mac: pod_mac(ip.into()),
                ips: vec![ip].into(),
                policy: EndpointPolicy {
                    index: i as u32,
                    ingress: compiled.has_policy(i, policy::Direction::Ingress),
                    egress: compiled.has_policy(i, policy::Direction::Egress),
                    programmed: true,
                },
                zone: port,
            });
            routes.insert(
                ip,
                Route {
                    port,
                    mac: pod_mac(ip.into()),
                },
            );
        }
        let svcs = services_json();
        let services = Services::build(&svcs, |ip| routes.contains_key(&ip));
        Tables {
            endpoints,
            routes,
            compiled,
            services,
            underlay: underlay(),
        }
    }

    pub fn get() -> &'static Tables {
        static T: OnceLock<Tables> = OnceLock::new();
        T.get_or_init(Tables::build)
    }
}

/// A buffer the harness can make, as the sink's allocator.
pub trait Buf: PacketBuf {
    fn make(bytes: &[u8]) -> Self;
}

impl Buf for Vec<u8> {
    fn make(bytes: &[u8]) -> Self {
        bytes.to_vec()
    }
}

/// Like an mbuf: 128 bytes of headroom, so an encapsulation moves no bytes.
impl Buf for Headroom {
    fn make(bytes: &[u8]) -> Self {
        Headroom::new(128, bytes)
    }
}

/// Keeps what each port is sent.
struct Sink<P> {
    got: Vec<(u16, P)>,
    can_alloc: bool,
    refuse: bool,
}

impl<P: Buf> TxSink<P> for Sink<P> {
    fn send(&mut self, port: u16, pkts: &mut Burst<P>) -> DropReason {
        if !self.refuse {
            self.got.extend(pkts.drain(..).map(|p| (port, p)));
        }
        DropReason::TxFull
    }
    fn alloc(&mut self, len: u16) -> Option<P> {
        self.can_alloc.then(|| P::make(&vec![0; usize::from(len)]))
    }
}

/// Which ports a target's frames arrive on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Uplink,
    Host,
}

impl Kind {
    fn ports(self) -> &'static [u16] {
        match self {
            Kind::Pod => &PODS,
            Kind::Uplink => &[UPLINK],
            Kind::Host => &[HOST],
        }
    }
}

/// The flags of an input's first byte.
#[derive(Clone, Copy)]
struct Flags(u8);

impl Flags {
    fn headroom(self) -> bool {
        self.0 & 1 != 0
    }
    /// Inputs get right checksums, and outputs must have them.
    fn fix(self) -> bool {
        self.0 & 2 != 0
    }
    /// The gateway and the remote nodes are resolved from the start.
    fn neighbours(self) -> bool {
        self.0 & 4 != 0
    }
    fn no_buffers(self) -> bool {
        self.0 & 8 != 0
    }
    fn tx_refuses(self) -> bool {
        self.0 & 16 != 0
    }
}

/// Seconds the clock moves before a record, by the selector's bits 4-6:
/// mostly not at all, sometimes past ARP retries, conntrack and aging.
const ADVANCE: [u32; 8] = [0, 0, 0, 1, 1, 2, 30, 400];

/// A record's frame: its bytes, or (an empty record) an answer to the last
/// frame the switch sent, which no input could predict: a natOutgoing port
/// is chosen at random.
#[derive(Clone, Copy)]
enum In<'a> {
    Bytes(&'a [u8]),
    /// What kind of answer, by the selector's bits 4-6: odd ones are ICMP
    /// errors (3 and 7 "fragmentation needed", else "port unreachable"),
    /// even ones the peer's reply.
    Answer(u8),
}

type Bursts<'a> = Vec<(u16, u32, Vec<In<'a>>)>;

/// Splits an input into its flags and (port, clock, frames) bursts.
fn bursts(kind: Kind, data: &[u8]) -> (Flags, Bursts<'_>) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return (Flags(0), Vec::new());
    };
    let mut out: Bursts<'_> = Vec::new();
    let mut now = 1u32;
    let mut new_burst = true;
    while let [sel, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        let ports = if sel & 8 != 0 { &ALL[..] } else { kind.ports() };
        let port = ports[usize::from(sel & 7) % ports.len()];
        let bits = (sel >> 4) & 7;
        let frame = if frame.is_empty() {
            In::Answer(bits)
        } else {
            now += ADVANCE[usize::from(bits)];
            In::Bytes(frame)
        };
        let starts = new_burst
            || sel & 0x80 != 0
            || out
                .last()
                .is_none_or(|(p, t, f)| *p != port || *t != now || f.len() == BURST);
        if starts {
            out.push((port, now, Vec::new()));
        }
        if let Some(last) = out.last_mut() {
            last.2.push(frame);
        }
        new_burst = false;
    }
    (Flags(flags), out)
}

/// The answer of `orig`'s receiver to it, with right checksums: its reply
/// (addresses and ports swapped, a SYN answered with SYN-ACK, an echo
/// request with an echo reply) or an ICMP error quoting it.
fn answer(orig: &[u8], kind: u8) -> Option<Vec<u8>> {
    frames::ipv4_dst(orig)?;
    let ip = &orig[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let mut f = Vec::with_capacity(orig.len());
    f.extend_from_slice(&orig[6..12]);
    f.extend_from_slice(&orig[0..6]);
    f.extend_from_slice(&[0x08, 0x00]);
    if kind & 1 == 1 {
        let quoted = &ip[..(ihl + 8).min(total)];
        let len = 20 + 8 + quoted.len();
        f.extend_from_slice(&[
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0,
            0,
            64,
            1,
            0,
            0,
        ]);
        f.extend_from_slice(&ip[16..20]);
        f.extend_from_slice(&ip[12..16]);
        let frag = kind & 2 != 0;
        f.extend_from_slice(&[3, if frag { 4 } else { 3 }, 0, 0, 0, 0]);
        f.extend_from_slice(&if frag { [0x05, 0x78] } else { [0, 0] });
        f.extend_from_slice(quoted);
    } else {
        f.extend_from_slice(&ip[..total]);
        let r = &mut f[14..];
        let (src, dst) = ([r[12], r[13], r[14], r[15]], [r[16], r[17], r[18], r[19]]);
        r[12..16].copy_from_slice(&dst);
        r[16..20].copy_from_slice(&src);
        r[8] = 64;
        let proto = r[9];
        let l4 = &mut r[ihl..];
        match proto {
            6 | 17 if l4.len() >= 4 => {
                let (a, b) = ([l4[0], l4[1]], [l4[2], l4[3]]);
                l4[0..2].copy_from_slice(&b);
                l4[2..4].copy_from_slice(&a);
                if proto == 6 && l4.len() >= 14 {
                    let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
                    l4[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
                    l4[13] = if l4[13] & 0x12 == 0x02 { 0x12 } else { 0x10 };
                }
            }
            1 if !l4.is_empty() && l4[0] == 8 => l4[0] = 0,
            _ => {}
        }
    }
    frames::fix_frame(&mut f);
    Some(f)
}

/// Runs one input through two workers on frames of `kind`'s ports, and
/// checks what leaves.
pub fn run(kind: Kind, data: &[u8]) {
    let (flags, bursts) = bursts(kind, data);
    if flags.headroom() {
        run_with::<Headroom>(flags, &bursts)
    } else {
        run_with::<Vec<u8>>(flags, &bursts)
    }
}

fn run_with<P: Buf>(flags: Flags, bursts: &Bursts<'_>) {
    let t = Tables::get();
    let fdb = Fdb::new(64, 300);
    let neigh = Neighbors::new(64);
    if flags.neighbours() {
        neigh.learn(u32::from(GATEWAY), GATEWAY_MAC, 1);
        for (i, (_, ip, ..)) in NODES.iter().enumerate() {
            neigh.learn(u32::from(*ip), mac_of_remote(i), 1);
        }
    }
    let log: ArrayQueue<LogRecord> = ArrayQueue::new(16);
    let other: PortSet = [OTHER_WORKER_POD].into_iter().collect();
    let rest: PortSet = (0..MAX_PORTS as u16)
        .filter(|&p| p != OTHER_WORKER_POD)
        .collect();
    let cx = |local, now: u32| Context {
        fdb: &fdb,
        domain: &BRIDGE,
        endpoints: &t.endpoints,
        routes: &t.routes,
        now,
        local,
        policy: PolicyView {
            compiled: &t.compiled,
            generation: 1,
            rule_slots: &[],
        },
        log: &log,
        underlay: Some(&t.underlay),
        neigh: &neigh,
        services: &t.services,
    };
    // small tables: their eviction and exhaustion paths are reached
    let mut w = [
        Pipeline::<P>::small(64, Timeouts::default(), NAT_PORTS, PORTS),
        Pipeline::<P>::small(64, Timeouts::default(), NAT_PORTS, PORTS),
    ];
    let ctr = [WorkerCounters::new(PORTS), WorkerCounters::new(PORTS)];
    let mut last: Option<Vec<u8>> = None;
    for (port, now, recs) in bursts {
        let mut pkts: Burst<P> = Burst::new();
        for f in recs {
            match *f {
                In::Bytes(b) => {
                    let mut p = P::make(b);
                    if flags.fix() {
                        frames::fix_frame(p.data_mut());
                    }
                    pkts.push(p);
                }
                In::Answer(kind) => {
                    if let Some(a) = last.as_deref().and_then(|o| answer(o, kind)) {
                        pkts.push(P::make(&a));
                    }
                }
            }
        }
        let worker = usize::from(*port == OTHER_WORKER_POD);
        let local = if worker == 1 { &other } else { &rest };
        let mut sink = Sink {
            got: Vec::new(),
            can_alloc: !flags.no_buffers(),
            refuse: flags.tx_refuses(),
        };
        w[worker].process(&cx(local, *now), *port, &mut pkts, &mut sink, &ctr[worker]);
        assert!(pkts.is_empty(), "process leaves nothing behind");
        // what one worker sent to the other's ports is handed over, as the
        // rings between workers do, and goes through its deliver()
        let mut out: Vec<(u16, P)> = Vec::new();
        let mut handed: HashMap<u16, Burst<P>> = HashMap::new();
        for (to, p) in sink.got {
            let theirs = (to == OTHER_WORKER_POD) != (worker == 1);
            if theirs && (t.endpoints[usize::from(to)].is_some() || to == UPLINK) {
                let b = handed.entry(to).or_default();
                if b.is_full() {
                    continue;
                }
                b.push(p);
            } else {
                out.push((to, p));
            }
        }
        for (to, mut b) in handed {
            let owner = 1 - worker;
            let owner_local = if owner == 1 { &other } else { &rest };
            w[owner].deliver(&cx(owner_local, *now), to, &mut b, &ctr[owner]);
            out.extend(b.into_iter().map(|p| (to, p)));
        }
        for (to, p) in &out {
            check_out(t, flags, *port, *to, p.data());
        }
        if let Some((_, p)) = out.last() {
            last = Some(p.data().to_vec());
        }
        if trace() {
            eprintln!(
                "t={now} port {port}: {} in, out: {:?}",
                recs.len(),
                out.iter()
                    .map(|(to, p)| (*to, p.data().len()))
                    .collect::<Vec<_>>()
            );
        }
    }
    if trace() {
        for (i, c) in ctr.iter().enumerate() {
            let drops: Vec<(&str, u64)> = DropReason::ALL
                .iter()
                .map(|r| (r.name(), c.drops_of(*r)))
                .filter(|(_, n)| *n != 0)
                .collect();
            eprintln!("worker {i} drops: {drops:?}");
        }
    }
}

/// Replaying an input with VSWITCH_FUZZ_TRACE=1 says where its frames went.
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("VSWITCH_FUZZ_TRACE").is_some())
}

/// What may leave the switch on `to` for a burst from `from`.
fn check_out(t: &Tables, flags: Flags, from: u16, to: u16, frame: &[u8]) {
    assert!(ALL.contains(&to), "sent to port {to}, which does not exist");
    if BRIDGE.contains(&to) {
        assert!(
            BRIDGE.contains(&from) && from != to,
            "port {from} reached bridge port {to}"
        );
    }
    if from != HOST {
        // the host's frames go out of the uplink as they are; nothing else
        // leaves without an Ethernet header
        assert!(
            frame.len() >= 14,
            "a {}-byte frame to port {to}",
            frame.len()
        );
    }
    if let Some(Some(ep)) = t.endpoints.get(usize::from(to)) {
        // a pod gets what is addressed to it, IPv4 (or ARP answers) only
        assert!(
            frame.len() >= 14,
            "a {}-byte frame to pod port {to}",
            frame.len()
        );
        assert_eq!(
            frame[..6],
            ep.mac.to_be_bytes()[2..],
            "a frame to pod port {to} not for its MAC"
        );
        match frame[12..14] {
            [0x08, 0x00] => {
                let dst = frames::ipv4_dst(frame);
                assert!(
                    dst.is_some_and(|d| ep.ips.contains(&d)),
                    "an IPv4 frame to pod port {to} not for its address: {dst:x?}"
                );
            }
            [0x08, 0x06] => assert_eq!(from, to, "ARP to pod port {to} from port {from}"),
            _ => panic!("ethertype {:02x?} to pod port {to}", &frame[12..14]),
        }
    }
    if flags.fix() {
        if let Err(e) = frames::check_frame(frame) {
            panic!("from port {from} to port {to}: {e}: {frame:02x?}");
        }
    }
}

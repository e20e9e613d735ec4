//! Per-packet cost of Kubernetes Services in the pipeline, in bursts of 32
//! TCP segments from one pod, beside plain routed forwarding:
//!
//! - `l3_forward`: pod to pod, no Service involved (the Service table is
//!   there, so the VIP test is paid);
//! - `established`: segments of 1,024 connections to a ClusterIP already
//!   given a backend (translation lookup, rewrite, routing, conntrack);
//! - `new_connection`: every segment a SYN of a new connection (Maglev
//!   lookup, two entries inserted, rewrite, conntrack insert). The clock
//!   advances a second a burst and SYN entries live a second, so the table
//!   is in steady state, as a busy worker's would be.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use etherparse::{PacketBuilder, TcpHeader};
use std::hint::black_box;
use std::net::Ipv4Addr;
use vswitch::counters::{DropReason, WorkerCounters};
use vswitch::packet::{Burst, BURST};
use vswitch::pipeline::firewall::PolicyView;
use vswitch::pipeline::{Context, Pipeline, PortSet, TxSink, MAX_PORTS};
use vswitch::tables::conntrack::Timeouts;
use vswitch::tables::endpoints::{Endpoint, EndpointPolicy, Route, Routes};
use vswitch::tables::fdb::Fdb;
use vswitch::tables::services::Services;

const CLIENT: u32 = 0x0a41_0001; // 10.65.0.1
const BACKENDS: [u32; 3] = [0x0a41_0002, 0x0a41_0003, 0x0a41_0004];
const VIP: u32 = 0x0a60_000a; // 10.96.0.10

fn mac(ip: u32) -> u64 {
    0x0200_0000_0000 | u64::from(ip)
}

struct Recycle {
    bufs: Vec<Vec<u8>>,
    sent: u64,
}

impl TxSink<Vec<u8>> for Recycle {
    fn send(&mut self, _port: u16, pkts: &mut Burst<Vec<u8>>) -> DropReason {
        self.sent += pkts.len() as u64;
        self.bufs.extend(pkts.drain(..));
        DropReason::TxFull
    }
}

/// Writes a 64-byte TCP segment from the client into `f`, in place: to the
/// gateway's MAC, IPv4 (TTL 64, DF), TCP with `flags` (FIN 0x01 to URG
/// 0x20) and 10 zero bytes, checksums right (etherparse).
fn segment(f: &mut Vec<u8>, dst: u32, sport: u16, dport: u16, flags: u8) {
    let mut tcp = TcpHeader::new(sport, dport, 0, 0);
    tcp.fin = flags & 0x01 != 0;
    tcp.syn = flags & 0x02 != 0;
    tcp.rst = flags & 0x04 != 0;
    tcp.psh = flags & 0x08 != 0;
    tcp.ack = flags & 0x10 != 0;
    tcp.urg = flags & 0x20 != 0;
    let m = mac(CLIENT).to_be_bytes();
    f.resize(64, 0);
    PacketBuilder::ethernet2([m[2], m[3], m[4], m[5], m[6], m[7]], api::GATEWAY_MAC.0)
        .ipv4(CLIENT.to_be_bytes(), dst.to_be_bytes(), 64)
        .tcp_header(tcp)
        .write_to_slice(f, &[0; 10])
        .expect("a 64-byte segment");
}

struct Rig {
    endpoints: Vec<Option<Endpoint>>,
    routes: Routes,
    services: Services,
    fdb: Fdb,
    log: ArrayQueue<vswitch::pipeline::firewall::LogRecord>,
    neigh: vswitch::tables::neigh::Neighbors,
    compiled: policy::compile::Compiled,
    ctr: WorkerCounters,
}

impl Rig {
    fn new() -> Rig {
        let mut endpoints = vec![None; MAX_PORTS];
        let mut routes = Routes::default();
        for (i, &ip) in [CLIENT].iter().chain(BACKENDS.iter()).enumerate() {
            let port = i as u16 + 1;
            endpoints[usize::from(port)] = Some(Endpoint {
                mac: mac(ip),
                ips: vec![ip].into(),
                policy: EndpointPolicy::OPEN,
                zone: port,
            });
            routes.insert(ip, Route { port, mac: mac(ip) });
        }
        let backends: Vec<serde_json::Value> = BACKENDS
            .iter()
            .map(|&ip| serde_json::json!({"ip": Ipv4Addr::from(ip), "port": 8080}))
            .collect();
        let svc: api::Service = match serde_json::from_value(serde_json::json!({
            "name": "default/web",
            "cluster_ips": [Ipv4Addr::from(VIP)],
            "ports": [{"protocol": "TCP", "port": 80, "backends": backends}]
        })) {
            Ok(s) => s,
            Err(e) => panic!("bench service: {e}"),
        };
        let services = Services::build([&svc], |ip| routes.contains_key(&ip));
        Rig {
            endpoints,
            routes,
            services,
            fdb: Fdb::new(16, 300),
            log: ArrayQueue::new(16),
            neigh: vswitch::tables::neigh::Neighbors::new(16),
            compiled: policy::compile::Compiled::empty(),
            ctr: WorkerCounters::new(MAX_PORTS),
        }
    }

    fn cx(&self, now: u32) -> Context<'_> {
        Context {
            fdb: &self.fdb,
            domain: &[],
            endpoints: &self.endpoints,
            routes: &self.routes,
            now,
            local: &PortSet::ALL,
            policy: PolicyView {
                compiled: &self.compiled,
                generation: 1,
                rule_slots: &[],
            },
            log: &self.log,
            underlay: None,
            neigh: &self.neigh,
            services: &self.services,
        }
    }
}

/// Runs bursts of frames that `next` writes (given the burst's second)
/// through the pipeline; every sent buffer comes back for the next burst.
fn run(
    c: &mut Criterion,
    id: &str,
    rig: &Rig,
    pipe: &mut Pipeline<Vec<u8>>,
    tick: bool,
    mut next: impl FnMut(&mut Vec<u8>),
) -> u64 {
    let mut g = c.benchmark_group("service_burst32");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut sink = Recycle {
        bufs: (0..BURST).map(|_| Vec::with_capacity(64)).collect(),
        sent: 0,
    };
    let mut burst: Burst<Vec<u8>> = Burst::new();
    let mut now = 1u32;
    g.bench_function(id, |b| {
        b.iter(|| {
            for mut f in sink.bufs.drain(..) {
                next(&mut f);
                burst.push(f);
            }
            if tick {
                now += 1;
            }
            pipe.process(&rig.cx(now), 1, &mut burst, &mut sink, &rig.ctr);
            while sink.bufs.len() < BURST {
                sink.bufs.push(Vec::with_capacity(64));
            }
            black_box(&rig.ctr);
        })
    });
    g.finish();
    sink.sent
}

fn bench(c: &mut Criterion) {
    let rig = Rig::new();
    let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1 << 16, Timeouts::default());
    let mut k = 0u32;
    let sent = run(c, "l3_forward", &rig, &mut pipe, false, |f| {
        k = (k + 1) & 1023;
        segment(f, BACKENDS[0], 10_000 + k as u16, 8080, 0x10);
    });
    assert!(sent > 0, "routed");

    // 1,024 connections given their backends, then their next segments
    let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1 << 16, Timeouts::default());
    let mut sink = Recycle {
        bufs: Vec::new(),
        sent: 0,
    };
    for chunk in 0..1024 / BURST as u16 {
        let mut b: Burst<Vec<u8>> = (0..BURST as u16)
            .map(|i| {
                let mut f = Vec::new();
                segment(&mut f, VIP, 10_000 + chunk * BURST as u16 + i, 80, 0x02);
                f
            })
            .collect();
        pipe.process(&rig.cx(1), 1, &mut b, &mut sink, &rig.ctr);
    }
    assert_eq!(pipe.svc.stats.created, 1024);
    let mut k = 0u32;
    let sent = run(c, "established", &rig, &mut pipe, false, |f| {
        k = (k + 1) & 1023;
        segment(f, VIP, 10_000 + k as u16, 80, 0x10);
    });
    assert!(sent > 0, "translated");
    assert_eq!(pipe.svc.stats.created, 1024, "no new connection");

    // a new connection every segment; SYN entries live a second
    let timeouts = Timeouts {
        tcp_syn: 1,
        ..Timeouts::default()
    };
    let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1 << 16, timeouts);
    let mut k = 0u32;
    let sent = run(c, "new_connection", &rig, &mut pipe, true, |f| {
        k = k.wrapping_add(1);
        segment(f, VIP, (k as u16) | 1024, 80, 0x02);
    });
    assert!(sent > 0, "translated");
    assert!(pipe.svc.stats.created >= sent, "each a new connection");
    assert_eq!(rig.ctr.drops_of(DropReason::ServiceNoBackend), 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);

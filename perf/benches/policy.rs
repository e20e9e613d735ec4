//! Costs of the stateful policy path: a packet of an established flow (the
//! conntrack hit that replaces rules), a flow's first packet with 10, 1,000
//! and 10,000 rules in the receiver's policy (rules, then two conntrack
//! inserts), the conntrack insert rate alone, and compiling 10,000 rules
//! over 5,000 pods.
//!
//! The pipeline runs on byte vectors here, as in the unit tests: what is
//! measured is the switch's own work, not a PMD's.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use etherparse::PacketBuilder;
use policy::compile::{Compiled, World};
use std::hint::black_box;
use std::net::Ipv4Addr;
use vswitch::counters::{DropReason, WorkerCounters};
use vswitch::packet::{Burst, BURST};
use vswitch::pipeline::firewall::PolicyView;
use vswitch::pipeline::{Context, Pipeline, PortSet, TxSink, MAX_PORTS};
use vswitch::tables::conntrack::{Conntrack, Flow, Timeouts, PROTO_UDP};
use vswitch::tables::endpoints::{Endpoint, EndpointPolicy, Route, Routes};
use vswitch::tables::fdb::Fdb;

const POD_A: [u8; 4] = [10, 65, 0, 1];
const POD_B: [u8; 4] = [10, 65, 0, 2];
const MAC_A: u64 = 0x0200_0a41_0001;
const MAC_B: u64 = 0x0200_0a41_0002;

/// Keeps what was sent, to be reused as the next input.
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

/// A UDP packet from pod A to pod B (see [`refill`]).
fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    refill(&mut f, sport, dport);
    f
}

/// Pod B's ingress policy: `rules` rules that do not match the benchmark's
/// traffic, then one that allows it, so that a first packet walks them all.
/// 5,000 remote pods feed the address sets.
fn world(rules: usize, pods: usize) -> World {
    let mut endpoints = vec![
        endpoint("default/a", "a", Ipv4Addr::from(POD_A), true),
        endpoint("default/b", "b", Ipv4Addr::from(POD_B), true),
    ];
    for i in 0..pods {
        let ip = Ipv4Addr::new(10, 66, (i / 250) as u8, (i % 250 + 1) as u8);
        endpoints.push(endpoint(
            &format!("default/r{i}"),
            &format!("r{}", i % 100),
            ip,
            false,
        ));
    }
    let per_policy = 100;
    let mut policies = Vec::new();
    let mut left = rules;
    let mut n = 0;
    while left > 0 {
        let k = left.min(per_policy);
        let ingress: Vec<serde_json::Value> = (0..k)
            .map(|j| {
                let i = n * per_policy + j;
                serde_json::json!({
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"selector": format!("app == 'r{}'", i % 100)},
                    "destination": {"ports": [1000 + (i % 30000) as u16]}
                })
            })
            .collect();
        policies.push(calico(&format!("p{n:05}"), 100.0 + n as f64, ingress));
        left -= k;
        n += 1;
    }
    policies.push(calico(
        "zz-allow-udp",
        10_000.0,
        vec![serde_json::json!({"action": "Allow", "protocol": "UDP"})],
    ));
    World {
        namespaces: vec![api::policy::NamespaceInfo {
            name: "default".into(),
            labels: Default::default(),
        }],
        endpoints,
        policies,
    }
}

fn endpoint(name: &str, app: &str, ip: Ipv4Addr, local: bool) -> api::policy::EndpointInfo {
    api::policy::EndpointInfo {
        name: name.into(),
        namespace: "default".into(),
        labels: [("app".to_string(), app.to_string())].into(),
        service_account: None,
        ips: vec![ip],
        named_ports: Vec::new(),
        local,
    }
}

fn calico(name: &str, order: f64, ingress: Vec<serde_json::Value>) -> api::policy::Policy {
    let v = serde_json::json!({"calico": {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": "app == 'b'", "order": order, "types": ["Ingress"], "ingress": ingress}
    }});
    match serde_json::from_value(v) {
        Ok(p) => p,
        Err(e) => panic!("bench policy {name}: {e}"),
    }
}

struct Rig {
    compiled: Compiled,
    endpoints: Vec<Option<Endpoint>>,
    routes: Routes,
    fdb: Fdb,
    log: ArrayQueue<vswitch::pipeline::firewall::LogRecord>,
    neigh: vswitch::tables::neigh::Neighbors,
    ctr: WorkerCounters,
    services: vswitch::tables::services::Services,
}

impl Rig {
    fn new(rules: usize) -> Rig {
        let compiled = match Compiled::compile(&world(rules, 1000)) {
            Ok(c) => c,
            Err(e) => panic!("compile: {e}"),
        };
        let ep = |name: &str, mac: u64, ip: [u8; 4]| {
            let i = compiled.endpoint_index(name).expect("bench endpoint");
            Endpoint {
                mac,
                ips: vec![u32::from_be_bytes(ip)].into(),
                policy: EndpointPolicy {
                    index: i as u32,
                    ingress: compiled.has_policy(i, policy::Direction::Ingress),
                    egress: compiled.has_policy(i, policy::Direction::Egress),
                    programmed: true,
                },
                zone: (mac & 0xffff) as u16,
            }
        };
        let mut endpoints = vec![None; MAX_PORTS];
        endpoints[1] = Some(ep("default/a", MAC_A, POD_A));
        endpoints[2] = Some(ep("default/b", MAC_B, POD_B));
        let mut routes = Routes::default();
        routes.insert(
            u32::from_be_bytes(POD_A),
            Route {
                port: 1,
                mac: MAC_A,
            },
        );
        routes.insert(
            u32::from_be_bytes(POD_B),
            Route {
                port: 2,
                mac: MAC_B,
            },
        );
        Rig {
            compiled,
            endpoints,
            routes,
            fdb: Fdb::new(1024, 300),
            log: ArrayQueue::new(16),
            neigh: vswitch::tables::neigh::Neighbors::new(16),
            ctr: WorkerCounters::new(MAX_PORTS),
            services: Default::default(),
        }
    }

    fn cx(&self) -> Context<'_> {
        Context {
            fdb: &self.fdb,
            domain: &[],
            endpoints: &self.endpoints,
            routes: &self.routes,
            now: 1,
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

/// Runs bursts of `frames` through the pipeline, handing every sent buffer
/// back (a routed packet is rewritten: its TTL and MACs are restored).
fn run_bursts(
    c: &mut Criterion,
    group: &str,
    id: String,
    rig: &Rig,
    pipe: &mut Pipeline<Vec<u8>>,
    mut next_frame: impl FnMut(&mut Vec<u8>),
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(BURST as u64));
    let mut sink = Recycle {
        bufs: (0..BURST).map(|_| udp(1, 1)).collect(),
        sent: 0,
    };
    let mut burst: Burst<Vec<u8>> = Burst::new();
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter(|| {
            for mut f in sink.bufs.drain(..) {
                next_frame(&mut f);
                burst.push(f);
            }
            let cx = rig.cx();
            pipe.process(&cx, 1, &mut burst, &mut sink, &rig.ctr);
            if sink.bufs.len() < BURST {
                // dropped ones: refill so that every burst is full
                while sink.bufs.len() < BURST {
                    sink.bufs.push(udp(1, 1));
                }
            }
            black_box(&rig.ctr);
        })
    });
    g.finish();
    assert!(sink.sent > 0, "packets went through");
}

/// Writes the 64-byte packet of a flow from pod A to pod B into `f`, in
/// place, anew (routing rewrote the TTL and MACs of a sent one): from pod
/// A's MAC to the gateway's, IPv4 (TTL 64, DF), UDP from `sport` to
/// `dport` with 18 zero bytes, checksums right (etherparse).
fn refill(f: &mut Vec<u8>, sport: u16, dport: u16) {
    let a = MAC_A.to_be_bytes();
    f.resize(64, 0);
    PacketBuilder::ethernet2([a[2], a[3], a[4], a[5], a[6], a[7]], api::GATEWAY_MAC.0)
        .ipv4(POD_A, POD_B, 64)
        .udp(sport, dport)
        .write_to_slice(f, &[0; 18])
        .expect("a 64-byte frame");
}

fn bench(c: &mut Criterion) {
    // established flows: 1,024 of them, every packet a conntrack hit in
    // both zones; 1,000 rules that no packet runs any more
    {
        let rig = Rig::new(1000);
        let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1 << 20, Timeouts::default());
        let mut k = 0u32;
        run_bursts(c, "policy_hit", "1000_rules".into(), &rig, &mut pipe, |f| {
            k = (k + 1) & 1023;
            refill(f, 10_000 + k as u16, 53);
        });
        assert_eq!(rig.ctr.drops_of(DropReason::PolicyIngress), 0);
    }
    // first packets: a new flow every packet
    for rules in [10usize, 1000, 10_000] {
        let rig = Rig::new(rules);
        let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1 << 20, Timeouts::default());
        let mut k = 0u32;
        run_bursts(
            c,
            "policy_miss",
            format!("{rules}_rules"),
            &rig,
            &mut pipe,
            |f| {
                k = k.wrapping_add(1);
                refill(f, (k & 0xffff) as u16 | 1, (k >> 16) as u16 | 1024);
            },
        );
        assert_eq!(rig.ctr.drops_of(DropReason::PolicyIngress), 0);
    }
    // the conntrack insert alone, one zone, a new flow every call
    {
        let mut g = c.benchmark_group("conntrack");
        g.throughput(Throughput::Elements(1));
        let mut ct = Conntrack::new(1 << 20, Timeouts::default());
        // one zone may fill the table here: the insert, not the share
        ct.set_share(100);
        let mut k = 0u32;
        g.bench_function("insert", |b| {
            b.iter(|| {
                k = k.wrapping_add(1);
                let f = Flow {
                    src: u32::from_be_bytes(POD_A),
                    dst: u32::from_be_bytes(POD_B) + (k >> 20),
                    proto: PROTO_UDP,
                    sport: (k & 0xffff) as u16,
                    dport: ((k >> 16) & 0xf) as u16 + 53,
                    ..Flow::default()
                };
                black_box(ct.track(1, &f, 1));
                black_box(ct.create(1, &f, 1))
            })
        });
        g.finish();
    }
    // compiling 10,000 rules over 5,000 pods
    {
        let w = world(10_000, 5000);
        let mut g = c.benchmark_group("policy_compile");
        g.sample_size(10);
        g.bench_function("10000_rules_5000_pods", |b| {
            b.iter_batched(
                || w.clone(),
                |w| {
                    black_box(
                        Compiled::compile(&w).map(|c| c.has_policy(0, policy::Direction::Ingress)),
                    )
                },
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

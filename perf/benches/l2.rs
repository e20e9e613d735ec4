//! Per-packet cost of the L2 path on byte buffers: parse, learn the source,
//! look up the destination, batch per output port. Bursts of 32, with 1, 1k
//! and 100k learned MACs spread over 4 ports (every frame's source and
//! destination is a different learned MAC, so lookups miss the CPU caches as
//! they would with that many stations). With one learned MAC, the senders
//! are a station the first burst learns.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use policy::compile::Compiled;
use std::hint::black_box;
use vswitch::counters::{DropReason, WorkerCounters};
use vswitch::packet::{Burst, BURST};
use vswitch::pipeline::firewall::PolicyView;
use vswitch::pipeline::{Context, Pipeline, PortSet, TxSink, MAX_PORTS};
use vswitch::tables::endpoints::Routes;
use vswitch::tables::fdb::{Fdb, FdbCounters};

const PORTS: u16 = 4;

/// Takes every packet and keeps the buffers for the next burst: no allocation
/// in the timed loop.
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

fn mac(i: u64) -> [u8; 6] {
    let m = 0x0200_0000_0000u64 | (i + 1);
    let b = m.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// The port station `i` sits behind; a lone station sits away from the sender.
fn port_of(i: u64, macs: u64) -> u16 {
    if macs == 1 {
        1
    } else {
        (i % u64::from(PORTS)) as u16
    }
}

fn frame(dst: u64, src: u64) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&mac(dst));
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    // IPv4 header with a consistent total length (46 bytes of payload)
    let mut ip = [0u8; 46];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

fn bench_l2(c: &mut Criterion) {
    let mut g = c.benchmark_group("l2_burst32");
    g.throughput(Throughput::Elements(BURST as u64));
    for &macs in &[1u64, 1_000, 100_000] {
        let fdb = Fdb::new(1 << 20, 300);
        let mut fc = FdbCounters::default();
        for i in 0..macs {
            fdb.learn(
                u64::from_be_bytes({
                    let m = mac(i);
                    [0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]
                }),
                port_of(i, macs),
                0,
                &mut fc,
            );
        }
        let domain: Vec<u16> = (0..PORTS).collect();
        let routes = Routes::default();
        let ctr = WorkerCounters::new(MAX_PORTS);
        let compiled = Compiled::empty();
        let log = ArrayQueue::new(16);
        let neigh = vswitch::tables::neigh::Neighbors::new(16);
        let mut pipe: Pipeline<Vec<u8>> = Pipeline::new(1024, Default::default());
        // bursts arriving on port 0 from stations behind port 0, to stations
        // behind the other ports: every frame is learned and unicast
        let on_port0: Vec<u64> = (0..macs).filter(|&i| port_of(i, macs) == 0).collect();
        let dests: Vec<u64> = (0..macs).filter(|&i| port_of(i, macs) != 0).collect();
        let sources = if on_port0.is_empty() {
            vec![macs]
        } else {
            on_port0
        };
        let in_port = 0;
        let mut sink = Recycle {
            bufs: Vec::with_capacity(4 * BURST),
            sent: 0,
        };
        let mut received = 0u64;
        let nbursts = 1024usize;
        let mut frames: Vec<Vec<u8>> = (0..BURST * nbursts)
            .map(|k| {
                frame(
                    dests[(k * 7919) % dests.len()],
                    sources[(k * 104_729) % sources.len()],
                )
            })
            .collect();
        let mut next = 0usize;
        let mut burst: Burst<Vec<u8>> = Burst::new();
        let services = vswitch::tables::services::Services::default();
        g.bench_function(BenchmarkId::from_parameter(format!("{macs}_macs")), |b| {
            b.iter(|| {
                // refill the burst from the frame ring (moves, no allocation)
                for _ in 0..BURST {
                    let f = std::mem::take(&mut frames[next]);
                    burst.push(f);
                    next = (next + 1) % frames.len();
                }
                let cx = Context {
                    fdb: &fdb,
                    domain: &domain,
                    endpoints: &[],
                    routes: &routes,
                    now: 1,
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
                received += burst.len() as u64;
                pipe.process(&cx, in_port, &mut burst, &mut sink, &ctr);
                // hand the buffers back to the slots they came from
                let n = frames.len();
                let start = (next + n - BURST) % n;
                for (k, f) in sink.bufs.drain(..).enumerate() {
                    frames[(start + k) % n] = f;
                }
                black_box(&ctr);
            })
        });
        assert_eq!(
            sink.sent, received,
            "every frame was switched, none flooded or dropped"
        );
    }
    g.finish();
}

criterion_group!(benches, bench_l2);
criterion_main!(benches);

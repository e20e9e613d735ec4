//! Per-packet cost of natOutgoing on byte buffers, in bursts of 32:
//!
//! - `snat_new_flow`: every packet opens a UDP flow (a port is allocated,
//!   then the packet rewritten). The clock advances a second per burst and
//!   flows expire after 4 s, so once the free ports run out every
//!   allocation also reclaims expired ones, as a busy worker would.
//! - `snat_existing_flow`: packets of flows already translated (lookup,
//!   state update, rewrite), over 1k and 20k live flows.
//! - `dnat_reply`: the replies to those flows (lookup by port, rewrite).
//!
//! Flows are given pre-parsed, as the pipeline hands them over; the packet
//! buffers are rewritten in place, with no allocation in the timed loop.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherparse::PacketBuilder;
use std::hint::black_box;
use vswitch::tables::conntrack::{Flow, Timeouts, PROTO_UDP};
use vswitch::tables::nat::{dnat_rewrite, snat_rewrite, Snat, DEFAULT_PORTS};

const BURST: usize = 32;
const NODE: u32 = 0xc0a8_0a01; // 192.168.10.1
const DNS: u32 = 0x0808_0808;
const POD_BASE: u32 = 0x0a41_0000; // 10.65.0.0

/// An IPv4/UDP packet (TTL 64, DF) with 64 bytes of payload and valid
/// checksums, built by etherparse.
fn udp_packet(f: &Flow) -> Vec<u8> {
    let payload: Vec<u8> = (0..64).collect();
    let b = PacketBuilder::ipv4(f.src.to_be_bytes(), f.dst.to_be_bytes(), 64).udp(f.sport, f.dport);
    let mut p = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut p, &payload).expect("a UDP packet");
    p
}

fn flow(k: u32) -> Flow {
    Flow {
        src: POD_BASE + (k & 0xff) + 1,
        dst: DNS + (k >> 24),
        proto: PROTO_UDP,
        sport: 1024u16.wrapping_add((k >> 8) as u16),
        dport: 53,
        ..Flow::default()
    }
}

fn bench_new_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat_burst32");
    g.throughput(Throughput::Elements(BURST as u64));
    let timeouts = Timeouts {
        udp_unreplied: 4,
        ..Timeouts::default()
    };
    let mut nat = Snat::new(65536, DEFAULT_PORTS, timeouts);
    let mut pkts: Vec<Vec<u8>> = (0..BURST as u32).map(|k| udp_packet(&flow(k))).collect();
    let mut k = 0u32;
    let mut now = 0u32;
    let mut exhausted = 0u64;
    g.bench_function("snat_new_flow", |b| {
        b.iter(|| {
            now += 1;
            for p in pkts.iter_mut() {
                // a new flow: a source the table has not seen for seconds
                k = k.wrapping_add(1);
                let f = flow(k);
                p[12..16].copy_from_slice(&f.src.to_be_bytes());
                p[20..22].copy_from_slice(&f.sport.to_be_bytes());
                match nat.outbound(&f, NODE, now) {
                    Ok(port) => snat_rewrite(p, NODE, port),
                    Err(_) => exhausted += 1,
                }
            }
            black_box(&pkts);
        })
    });
    assert_eq!(exhausted, 0, "the bench measured drops, not translations");
    g.finish();
}

fn bench_existing_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat_burst32");
    g.throughput(Throughput::Elements(BURST as u64));
    for &nflows in &[1_000u32, 20_000] {
        let mut nat = Snat::new(65536, DEFAULT_PORTS, Timeouts::default());
        // spread over the key space so consecutive packets hit unrelated entries
        let flows: Vec<Flow> = (0..nflows)
            .map(|i| flow(i.wrapping_mul(2_654_435_761)))
            .collect();
        let replies: Vec<Flow> = flows
            .iter()
            .map(|f| {
                let port = nat.outbound(f, NODE, 0).unwrap();
                Flow {
                    src: f.dst,
                    dst: NODE,
                    sport: f.dport,
                    dport: port,
                    ..*f
                }
            })
            .collect();
        let mut out_pkts: Vec<Vec<u8>> = flows[..BURST].iter().map(udp_packet).collect();
        let mut in_pkts: Vec<Vec<u8>> = replies[..BURST].iter().map(udp_packet).collect();

        let mut next = 0usize;
        let mut missed = 0u64;
        g.bench_function(BenchmarkId::new("snat_existing_flow", nflows), |b| {
            b.iter(|| {
                for p in out_pkts.iter_mut() {
                    let f = &flows[next];
                    next = if next + 1 == flows.len() { 0 } else { next + 1 };
                    match nat.outbound(f, NODE, 1) {
                        Ok(port) => snat_rewrite(p, NODE, port),
                        Err(_) => missed += 1,
                    }
                }
                black_box(&out_pkts);
            })
        });

        let mut next = 0usize;
        g.bench_function(BenchmarkId::new("dnat_reply", nflows), |b| {
            b.iter(|| {
                for p in in_pkts.iter_mut() {
                    let f = &replies[next];
                    next = if next + 1 == replies.len() {
                        0
                    } else {
                        next + 1
                    };
                    match nat.inbound(f, 1) {
                        Some((pod, port)) => dnat_rewrite(p, pod, port),
                        None => missed += 1,
                    }
                }
                black_box(&in_pkts);
            })
        });
        assert_eq!(missed, 0, "every packet belongs to a translated flow");
    }
    g.finish();
}

criterion_group!(benches, bench_new_flows, bench_existing_flows);
criterion_main!(benches);

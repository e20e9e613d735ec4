//! Per-packet cost of VXLAN and IP-in-IP encapsulation and decapsulation,
//! on bursts of 32 frames carrying 64-byte inner Ethernet frames (UDP, a
//! different flow each).
//!
//! Encapsulation: entropy port from the inner flow (VXLAN), prepend, template
//! copy and patch. Decapsulation: every outer check, with a small peer table,
//! then stripping the outer headers.
//!
//! Each round runs the operation on every frame of a reused burst and then
//! undoes it, so nothing is allocated in the timed loop and the frames stay
//! in cache, as a worker's burst is right after parsing. The undo is timed
//! too: `adj`/`prepend` and a copy of at most 64 bytes.
//!
//! Two buffer kinds: `Vec<u8>`, whose prepend and adj move the whole frame,
//! and a buffer with headroom in front, like an mbuf, where they move only
//! the start; the difference is the cost of the moves.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use etherparse::PacketBuilder;
use std::hint::black_box;
use std::net::Ipv4Addr;
use vswitch::packet::{Headroom, PacketBuf};
use vswitch::wire::tunnel::{
    decap_ipip, decap_vxlan, flow_src_port, strip, IpipOuter, IpipTemplate, Underlay, VxlanOuter,
    VxlanRx, VxlanTemplate,
};

const BURST: usize = 32;
const ETH_HLEN: usize = 14;
const INNER_LEN: usize = 64;
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PEERS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(192, 0, 2, 1),
    Ipv4Addr::new(192, 0, 2, 3),
    Ipv4Addr::new(192, 0, 2, 4),
    Ipv4Addr::new(192, 0, 2, 5),
];
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Room enough that a Vec prepend never reallocates.
fn vec_buf(frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(frame.len() + 128);
    v.extend_from_slice(frame);
    v
}

/// 64-byte inner frames: Ethernet, IPv4 (TTL 63, DF), UDP from port
/// 10000 + i to 80 with a payload of 0x5a, checksums right (etherparse).
fn inner_frames() -> Vec<Vec<u8>> {
    let payload = [0x5a; INNER_LEN - 42];
    (0..BURST)
        .map(|i| {
            let mut f = Vec::with_capacity(INNER_LEN);
            PacketBuilder::ethernet2([0x66, 0xee, 0, 0, 0, 1], [0x66, 0xee, 0, 0, 0, 2])
                .ipv4([10, 244, 1, 2], [10, 244, 2, 3], 63)
                .udp(10000 + i as u16, 80)
                .write(&mut f, &payload)
                .expect("a 64-byte frame");
            f
        })
        .collect()
}

/// Times `op` on every frame of a burst built once by `make` from `frames`,
/// each followed by `undo`, which puts the frame back as it was (given the
/// original) so that the next round starts alike: buffers are reused and
/// stay in cache, as a worker's burst is right after parsing.
fn burst<P: PacketBuf>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    frames: &[Vec<u8>],
    make: impl Fn(&[u8]) -> P,
    mut op: impl FnMut(&mut P) -> bool,
    undo: impl Fn(&mut P, &[u8]),
) {
    let mut burst: Vec<P> = frames.iter().map(|f| make(f)).collect();
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for (p, orig) in burst.iter_mut().zip(frames) {
                ok += usize::from(op(p));
                undo(p, orig);
            }
            black_box(ok)
        })
    });
    // every round did the work, or the numbers mean nothing
    let ok = burst.iter_mut().map(&mut op).filter(|&done| done).count();
    assert_eq!(ok, BURST, "{name}");
}

/// Undoes an encapsulation: the outer headers go, and the inner Ethernet
/// header (which IP-in-IP overwrites) comes back.
fn unencap<P: PacketBuf>(p: &mut P, orig: &[u8]) {
    let n = p.data().len() - orig.len();
    p.adj(n);
    p.data_mut()[..ETH_HLEN].copy_from_slice(&orig[..ETH_HLEN]);
}

/// Undoes a decapsulation: the outer headers come back, with the bytes
/// after them that stripping IP-in-IP rewrites.
fn undecap<P: PacketBuf>(p: &mut P, orig: &[u8]) {
    let n = orig.len() - p.data().len();
    p.prepend(n);
    p.data_mut()[..n + ETH_HLEN].copy_from_slice(&orig[..n + ETH_HLEN]);
}

/// This node and its peers, as a peer table would answer.
struct Nodes;

impl Underlay for Nodes {
    fn is_local(&self, a: Ipv4Addr) -> bool {
        a == LOCAL
    }
    fn is_peer(&self, a: Ipv4Addr) -> bool {
        PEERS.contains(&a)
    }
}

/// What every buffer kind is measured on.
struct Setup {
    inner: Vec<Vec<u8>>,
    vxlan_wire: Vec<Vec<u8>>,
    ipip_wire: Vec<Vec<u8>>,
    vxlan: VxlanTemplate,
    ipip: IpipTemplate,
    rx: VxlanRx,
}

impl Setup {
    fn new() -> Setup {
        let inner = inner_frames();
        // what the peer sends us: the same inner frames the other way
        let vx_in = VxlanTemplate::new(&VxlanOuter::new(MAC_A, MAC_B, PEERS[0], LOCAL));
        let ipip_in = IpipTemplate::new(&IpipOuter::new(MAC_A, MAC_B, PEERS[0], LOCAL));
        let vxlan_wire = inner
            .iter()
            .map(|f| {
                let mut v = f.clone();
                let port = flow_src_port(f);
                vx_in.encap(&mut v, port).expect("encapsulates");
                v
            })
            .collect();
        let ipip_wire = inner
            .iter()
            .map(|f| {
                let mut v = f.clone();
                ipip_in.encap(&mut v).expect("encapsulates");
                v
            })
            .collect();
        Setup {
            inner,
            vxlan_wire,
            ipip_wire,
            vxlan: VxlanTemplate::new(&VxlanOuter::new(MAC_B, MAC_A, LOCAL, PEERS[0])),
            ipip: IpipTemplate::new(&IpipOuter::new(MAC_B, MAC_A, LOCAL, PEERS[0])),
            rx: VxlanRx::default(),
        }
    }
}

fn bench_kind<P: PacketBuf>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    kind: &str,
    make: fn(&[u8]) -> P,
    s: &Setup,
) {
    let name = |what: &str| format!("{kind}/{what}");
    burst(
        g,
        &name("vxlan_encap"),
        &s.inner,
        make,
        |p| {
            let port = flow_src_port(p.data());
            s.vxlan.encap(p, port).is_ok()
        },
        unencap,
    );
    burst(
        g,
        &name("vxlan_decap"),
        &s.vxlan_wire,
        make,
        |p| decap_vxlan(p.data(), &s.rx, &Nodes).is_ok_and(|i| strip(p, &i)),
        undecap,
    );
    burst(
        g,
        &name("ipip_encap"),
        &s.inner,
        make,
        |p| s.ipip.encap(p).is_ok(),
        unencap,
    );
    burst(
        g,
        &name("ipip_decap"),
        &s.ipip_wire,
        make,
        |p| decap_ipip(p.data(), &Nodes).is_ok_and(|i| strip(p, &i)),
        undecap,
    );
}

fn bench_tunnel(c: &mut Criterion) {
    let setup = Setup::new();
    let mut g = c.benchmark_group("tunnel_burst32");
    g.throughput(Throughput::Elements(BURST as u64));
    bench_kind(&mut g, "vec", vec_buf, &setup);
    bench_kind(&mut g, "headroom", |f| Headroom::new(128, f), &setup);
    g.finish();
}

criterion_group!(benches, bench_tunnel);
criterion_main!(benches);

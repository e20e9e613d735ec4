//! Worker lcores: poll ports, run bursts through the pipeline, transmit.
//!
//! A worker reads the configuration snapshot once per loop iteration (a
//! generation number compared, the snapshot reloaded only when it changed)
//! and reports the generation it runs, so the control thread knows when no
//! worker can still touch a removed port. When a whole pass over its ports
//! finds nothing it spins a little, then sleeps with growing pauses, so that
//! two pollers can share a small machine.

use crate::capture::{Captures, Dir, TRACED};
use crate::counters::{DropReason, PortCounters, WorkerCounters};
use crate::dpdk::{self, mbuf::Mbuf};
use crate::inquiry::{Ask, Told};
use crate::packet::{Burst, PacketBuf};
use crate::pipeline::firewall::PolicyView;
use crate::pipeline::trace;
use crate::pipeline::{slot, transmit_counted, Context, Pipeline, PortSet, TxSink};
use crate::snapshot::{PortEntry, Shared, Snapshot};
use crate::tables::conntrack::Timeouts;
use crate::tables::fdb::Fdb;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;
use std::time::Duration;

/// How long a worker keeps spinning on empty ports before it sleeps. Long
/// enough that a peer's scheduling hiccup under load does not put the switch
/// to sleep, short enough that an idle switch gives its CPU away at once.
const SPIN_MICROS: u64 = 1000;
const MIN_SLEEP_US: u64 = 16;
const MAX_SLEEP_US: u64 = 1000;

fn bytes(b: &Burst<Mbuf>) -> u64 {
    b.iter().map(|m| m.data().len() as u64).sum()
}

/// Sends on a port this worker owns and counts what went; a capture of the
/// port sees the batch as it is handed to the port.
#[inline]
fn send_own(
    p: &PortEntry,
    pkts: &mut Burst<Mbuf>,
    c: &PortCounters,
    caps: &Captures,
) -> DropReason {
    let armed = caps.armed(p.id);
    if armed != 0 {
        caps.offer(armed, p.id, Dir::Out, &pkts[..], dpdk::eal::rdtsc());
    }
    let all = bytes(pkts);
    let n = p.io.tx(pkts);
    c.tx_packets.add(n as u64);
    c.tx_bytes
        .add(all - if pkts.is_empty() { 0 } else { bytes(pkts) });
    p.refusal()
}

/// Sends to ports owned by this worker directly, and hands packets for ports
/// owned by another worker to that worker's ring.
struct PortSink<'a> {
    snap: &'a Snapshot,
    me: usize,
    pool: &'a dpdk::mbuf::Mempool,
    ctr: &'a WorkerCounters,
    caps: &'a Captures,
}

impl TxSink<Mbuf> for PortSink<'_> {
    #[inline]
    fn send(&mut self, port: u16, pkts: &mut Burst<Mbuf>) -> DropReason {
        let Some(p) = self.snap.port(port) else {
            return DropReason::NoPort;
        };
        if p.owner == self.me {
            send_own(p, pkts, &self.ctr.ports[slot(port)], self.caps)
        } else {
            match &p.handoff {
                Some(r) => {
                    r.enqueue(pkts);
                    DropReason::HandoffFull
                }
                None => DropReason::NoPort,
            }
        }
    }

    #[inline]
    fn alloc(&mut self, len: u16) -> Option<Mbuf> {
        self.pool.alloc(len)
    }
}

/// What the control thread asked of this worker's own tables.
#[cold]
fn answer(pipe: &mut Pipeline<Mbuf>, ask: &Ask, now: u32) -> Told {
    match *ask {
        Ask::Connections { zone, state, max } => {
            let mut list = Vec::new();
            let total = pipe.ct.connections(now, zone, state, max, &mut list);
            Told::Connections { total, list }
        }
        Ask::FlushConnections { zone: Some(z) } => Told::Flushed(pipe.ct.flush_zone(z, now)),
        Ask::FlushConnections { zone: None } => {
            let n = pipe.ct.live(now);
            pipe.ct.flush();
            Told::Flushed(n)
        }
        Ask::Bindings { max } => {
            let mut list = Vec::new();
            let total = pipe.snat.bindings(now, max, &mut list);
            Told::Bindings { total, list }
        }
    }
}

/// Switches the packets a trace took out of a burst, one by one, and hands
/// what they met to the trace's reader.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn trace_each(
    pipe: &mut Pipeline<Mbuf>,
    cx: &Context<'_>,
    port: u16,
    picked: Burst<Mbuf>,
    sink: &mut PortSink<'_>,
    shared: &Shared,
    serial: u64,
    tsc: u64,
) {
    for pkt in picked {
        let mut t = trace::run_one(pipe, cx, port, pkt, sink, sink.ctr);
        t.tsc = tsc;
        t.serial = serial;
        // a reader that fell behind loses the newest, as a capture does
        let _ = shared.tracer.traced.push(t);
    }
}

/// The ports worker `me` owns.
fn local_ports(snap: &Snapshot, me: usize) -> Box<PortSet> {
    Box::new(snap.polls[me].iter().copied().collect())
}

/// The body of worker `me`; returns when the switch stops.
pub fn run(shared: Arc<Shared>, me: usize) {
    let ctr: &WorkerCounters = &shared.counters[me];
    let fdb: &Fdb = &shared.fdb;
    let caps: &Captures = &shared.captures;
    let hz = shared.tsc_hz.max(1);
    let spin_cycles = hz * SPIN_MICROS / 1_000_000;
    let mut pipe: Pipeline<Mbuf> = Pipeline::new(shared.ct_capacity, Timeouts::default());
    pipe.ct.set_share(shared.ct_zone_share);
    let mut snap = shared.snapshot.load_full();
    let mut gen = snap.generation;
    let mut local = local_ports(&snap, me);
    shared.seen[me].store(gen, Release);
    let mut burst: Burst<Mbuf> = Burst::new();
    // TSC of the first empty pass of the current idle stretch (0: not idle)
    let mut idle_since: u64 = 0;
    let mut sleep_us = MIN_SLEEP_US;

    while !shared.stop.load(Relaxed) {
        if shared.generation.load(Acquire) != gen {
            snap = shared.snapshot.load_full();
            gen = snap.generation;
            local = local_ports(&snap, me);
            shared.seen[me].store(gen, Release);
        }
        // one TSC read per pass: busy accounting and idle detection share it
        let t0 = dpdk::eal::rdtsc();
        let cx = Context {
            fdb,
            domain: &snap.domain,
            endpoints: &snap.endpoints,
            routes: &snap.routes,
            // one division per pass, shared by the whole burst
            now: (t0.saturating_sub(shared.tsc_start) / hz) as u32,
            local: &local,
            policy: PolicyView {
                compiled: &snap.policy,
                generation: snap.policy_generation,
                rule_slots: &snap.rule_slots,
            },
            log: &shared.flow_log[me],
            underlay: snap.underlay.as_ref(),
            neigh: &shared.neigh,
            services: &snap.services,
        };
        if shared.inquiries[me].asked() {
            shared.inquiries[me].answer(|ask| answer(&mut pipe, ask, cx.now));
        }
        let mut got = 0usize;
        for &port in &snap.polls[me] {
            let Some(p) = snap.port(port) else { continue };
            if let Some(ring) = &p.handoff {
                // packets other workers switched to this port
                let handed = ring.dequeue(&mut burst);
                if handed > 0 {
                    // traffic from other workers keeps this one awake too
                    got += handed;
                    pipe.deliver(&cx, port, &mut burst, ctr);
                    transmit_counted(&mut burst, port, ctr, |b| {
                        send_own(p, b, &ctr.ports[slot(port)], caps)
                    });
                }
            }
            let n = p.io.rx(&shared.pool, &mut burst);
            if n == 0 {
                continue;
            }
            got += n;
            let armed = caps.armed(port);
            let mut traced = None;
            if armed != 0 {
                let tsc = dpdk::eal::rdtsc();
                caps.offer(armed, port, Dir::In, &burst[..], tsc);
                if armed & TRACED != 0 {
                    let mut picked = Burst::new();
                    let serial = shared.tracer.pick(&mut burst, &mut picked);
                    traced = Some((picked, serial, tsc));
                }
            }
            let pc = &ctr.ports[slot(port)];
            pc.rx_packets.add(n as u64);
            pc.rx_bytes.add(bytes(&burst));
            let mut sink = PortSink {
                snap: &snap,
                me,
                pool: &shared.pool,
                ctr,
                caps,
            };
            pipe.process(&cx, port, &mut burst, &mut sink, ctr);
            if let Some((picked, serial, tsc)) = traced {
                trace_each(
                    &mut pipe, &cx, port, picked, &mut sink, &shared, serial, tsc,
                );
            }
        }
        if got != 0 {
            // a pass that moved packets counts as busy, polls of empty ports included
            ctr.busy_cycles.add(dpdk::eal::rdtsc() - t0);
            ctr.packets.add(got as u64);
            idle_since = 0;
            sleep_us = MIN_SLEEP_US;
            continue;
        }
        ctr.idle_polls.add(1);
        pipe.idle(cx.now);
        if idle_since == 0 {
            idle_since = t0;
        }
        if t0 - idle_since < spin_cycles {
            dpdk::eal::pause();
        } else {
            ctr.sleeps.add(1);
            std::thread::sleep(Duration::from_micros(sleep_us));
            sleep_us = (sleep_us * 2).min(MAX_SLEEP_US);
        }
    }
    shared.seen[me].store(u64::MAX, Release);
}

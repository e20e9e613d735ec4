//! What a traced packet meets on its way through the pipeline.
//!
//! A traced packet is switched alone, by the same code as every other
//! packet. Three things are watched while it goes:
//! - each policy zone it passes, noted by [`Pipeline::zone`] only while
//!   [`Pipeline::trace`] holds a record (otherwise that is one branch per
//!   zone pass): the flow as the zone judged it (after a Service's DNAT),
//!   its connection's state before and after, and what policy said and why;
//! - what left the switch because of it (the packet, an answer, an ARP
//!   request), seen by a sink in front of the real one;
//! - why it was dropped: the worker's own drop counters read before and
//!   after. Each worker's counters have one writer, so the difference is
//!   this packet's alone.
//!
//! A live trace ([`Tracer`]) is armed on ports through the capture byte's
//! [`crate::capture::TRACED`] bit; the worker takes the packets the trace
//! wants out of their burst and hands each to [`run_one`].

use crate::counters::{DropReason, WorkerCounters};
use crate::packet::{Burst, PacketBuf};
use crate::pipeline::{Context, Pipeline, TxSink};
use crate::tables::conntrack::{Flow, State};
use crate::wire::filter::Filter;
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use policy::{Direction, Reason};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Traced packets held until the trace's reader takes them.
pub const QUEUE: usize = 256;
/// Bytes kept of each frame a traced packet sent or came as.
pub const KEEP: usize = 256;

/// One pass through a policy zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneStep {
    pub port: u16,
    pub zone: u16,
    pub dir: Direction,
    /// The facts policy matches on, as this zone saw them.
    pub flow: policy::Packet,
    /// The connection's state in this zone before the packet, and after.
    pub before: Option<State>,
    pub after: Option<State>,
    /// What decided, when policy was consulted: a new connection in a zone
    /// with policy of this direction.
    pub policy: Option<Reason>,
    /// The last tier policy entered: the one that denied, for a default deny.
    pub tier: Option<String>,
    pub verdict: Result<(), DropReason>,
}

/// The zones one traced packet passed, in order.
#[derive(Default, Debug)]
pub struct Trace {
    pub zones: Vec<ZoneStep>,
}

/// A frame a traced packet caused to leave on `port` (its first [`KEEP`] bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub port: u16,
    pub len: usize,
    pub frame: Vec<u8>,
}

/// Everything seen of one traced packet.
#[derive(Clone, Debug, Default)]
pub struct Traced {
    /// TSC when its burst was received (0 for a made-up packet).
    pub tsc: u64,
    /// The trace it was taken for.
    pub serial: u64,
    pub port: u16,
    /// The frame as received (its first [`KEEP`] bytes) and its length.
    pub len: usize,
    pub frame: Vec<u8>,
    pub zones: Vec<ZoneStep>,
    pub sent: Vec<Sent>,
    pub drops: Vec<DropReason>,
}

fn keep(b: &[u8]) -> Vec<u8> {
    b[..b.len().min(KEEP)].to_vec()
}

/// A sink in front of another: notes what goes through it.
struct Noting<'a, S> {
    inner: &'a mut S,
    sent: Vec<Sent>,
}

impl<P: PacketBuf, S: TxSink<P>> TxSink<P> for Noting<'_, S> {
    fn send(&mut self, port: u16, pkts: &mut Burst<P>) -> DropReason {
        for p in pkts.iter() {
            self.sent.push(Sent {
                port,
                len: p.data().len(),
                frame: keep(p.data()),
            });
        }
        self.inner.send(port, pkts)
    }

    fn alloc(&mut self, len: u16) -> Option<P> {
        self.inner.alloc(len)
    }
}

fn drop_counts(ctr: &WorkerCounters) -> [u64; DropReason::COUNT] {
    std::array::from_fn(|i| ctr.drops[i].get())
}

/// Switches `pkt`, received on `port`, alone and notes what it met. The
/// caller's burst must have been switched already (its batches flushed).
pub fn run_one<P: PacketBuf, S: TxSink<P>>(
    pipe: &mut Pipeline<P>,
    cx: &Context<'_>,
    port: u16,
    pkt: P,
    sink: &mut S,
    ctr: &WorkerCounters,
) -> Traced {
    let len = pkt.data().len();
    let frame = keep(pkt.data());
    let before = drop_counts(ctr);
    pipe.trace = Some(Box::default());
    let mut one = Burst::new();
    one.push(pkt);
    let mut noting = Noting {
        inner: sink,
        sent: Vec::new(),
    };
    pipe.process(cx, port, &mut one, &mut noting, ctr);
    let zones = pipe.trace.take().map(|t| t.zones).unwrap_or_default();
    let after = drop_counts(ctr);
    let drops = DropReason::ALL
        .iter()
        .zip(before.iter().zip(after.iter()))
        .flat_map(|(&r, (&b, &a))| std::iter::repeat_n(r, a.saturating_sub(b) as usize))
        .collect();
    Traced {
        tsc: 0,
        serial: 0,
        port,
        len,
        frame,
        zones,
        sent: noting.sent,
        drops,
    }
}

/// What a live trace takes.
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub serial: u64,
    pub filter: Filter,
}

/// The live trace: what it wants, how many packets it still takes, and the
/// packets traced for its reader. One runs at a time.
pub struct Tracer {
    pub want: ArcSwap<Want>,
    pub left: AtomicU32,
    pub traced: ArrayQueue<Traced>,
}

impl Default for Tracer {
    fn default() -> Self {
        Tracer {
            want: ArcSwap::from_pointee(Want::default()),
            left: AtomicU32::new(0),
            traced: ArrayQueue::new(QUEUE),
        }
    }
}

impl Tracer {
    /// Moves the packets of `burst` that the trace wants, as many as it
    /// still takes, into `out`; the rest stay in `burst`, in order.
    #[cold]
    pub fn pick<P: PacketBuf>(&self, burst: &mut Burst<P>, out: &mut Burst<P>) -> u64 {
        let want = self.want.load();
        let mut kept = Burst::new();
        for p in burst.drain(..) {
            if want.filter.matches(p.data()) && self.take_one() {
                out.push(p);
            } else {
                kept.push(p);
            }
        }
        *burst = kept;
        want.serial
    }

    fn take_one(&self) -> bool {
        self.left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Starts trace `serial`: the old one's leftovers are thrown away.
    pub fn prepare(&self, want: Want, count: u32) {
        self.left.store(0, Relaxed);
        self.want.store(std::sync::Arc::new(want));
        while self.traced.pop().is_some() {}
        self.left.store(count, Relaxed);
    }
}

impl<P: PacketBuf> Pipeline<P> {
    /// [`Pipeline::zone`] for a traced packet: the same check, noted.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn zone_traced(
        &mut self,
        cx: &Context<'_>,
        port: u16,
        ep: &crate::tables::endpoints::Endpoint,
        dir: Direction,
        flow: &Flow,
        ctr: &WorkerCounters,
    ) -> Result<(), DropReason> {
        let before = self.ct.state_of(ep.zone, flow, cx.now);
        let has = match dir {
            Direction::Ingress => ep.policy.ingress,
            Direction::Egress => ep.policy.egress,
        };
        // policy is consulted for what conntrack does not know; the same
        // evaluation, repeated here for its reason
        let mut tier = None;
        let policy = (ep.policy.programmed && has && before.is_none()).then(|| {
            cx.policy
                .compiled
                .evaluate_noting(
                    ep.policy.index as usize,
                    dir,
                    &flow.policy_packet(),
                    &mut |t: &str| tier = Some(t.to_owned()),
                )
                .reason
        });
        let verdict = self.zone_untraced(cx, port, ep, dir, flow, ctr);
        let after = self.ct.state_of(ep.zone, flow, cx.now);
        if let Some(t) = self.trace.as_deref_mut() {
            t.zones.push(ZoneStep {
                port,
                zone: ep.zone,
                dir,
                flow: flow.policy_packet(),
                before,
                after,
                policy,
                tier,
                verdict,
            });
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dport: u16) -> Vec<u8> {
        crate::wire::filter::tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, dport)
    }

    #[test]
    fn a_trace_takes_what_it_wants_up_to_its_count_and_keeps_order() {
        let t = Tracer::default();
        t.prepare(
            Want {
                serial: 3,
                filter: Filter::parse("port 80").expect("filter"),
            },
            2,
        );
        let mut burst: Burst<Vec<u8>> = [frame(22), frame(80), frame(23), frame(80), frame(80)]
            .into_iter()
            .collect();
        let mut out = Burst::new();
        assert_eq!(t.pick(&mut burst, &mut out), 3);
        assert_eq!(out.len(), 2, "two asked for");
        let ports: Vec<u16> = burst
            .iter()
            .map(|f| u16::from_be_bytes([f[36], f[37]]))
            .collect();
        assert_eq!(ports, [22, 23, 80], "the rest stay, in order");
        let mut out2 = Burst::new();
        t.pick(&mut burst, &mut out2);
        assert!(out2.is_empty(), "the count is used up");
    }
}

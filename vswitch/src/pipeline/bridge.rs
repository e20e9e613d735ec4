//! The stage for bursts from bridge ports: MAC learning, then the learned
//! port or a flood to the bridge domain.

use crate::counters::{DropReason, WorkerCounters};
use crate::packet::{Burst, PacketBuf};
use crate::pipeline::{slot, Context, Pipeline, TxSink};
use crate::tables::fdb::FdbCounters;
use crate::wire::eth::{self, Malformed};

impl<P: PacketBuf> Pipeline<P> {
    /// A burst from a bridge port: learned, then switched or flooded.
    pub(crate) fn bridge<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        in_port: u16,
        pkts: &mut Burst<P>,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        let mut fc = FdbCounters::default();
        let mut rx_drops = 0u64;
        let aging = cx.fdb.aging();
        for pkt in pkts.drain(..) {
            let eth = match eth::parse_eth(pkt.data()) {
                Ok(e) => e,
                Err(m) => {
                    ctr.drop(
                        match m {
                            Malformed::Runt => DropReason::Runt,
                            Malformed::BadLength => DropReason::BadLength,
                        },
                        1,
                    );
                    rx_drops += 1;
                    continue;
                }
            };
            if eth.src == 0 || eth::is_group(eth.src) {
                ctr.drop(DropReason::BadSrcMac, 1);
                rx_drops += 1;
                continue;
            }
            cx.fdb.learn(eth.src, in_port, cx.now, &mut fc);
            if eth::is_group(eth.dst) {
                self.flood(cx, in_port, pkt, sink, ctr);
                continue;
            }
            match cx.fdb.lookup_aged(eth.dst, cx.now, aging) {
                Some(out) if out == in_port => {
                    ctr.drop(DropReason::SamePort, 1);
                    rx_drops += 1;
                }
                Some(out) => self.enqueue(out, pkt, sink, ctr),
                None => self.flood(cx, in_port, pkt, sink, ctr),
            }
        }
        if rx_drops != 0 {
            ctr.ports[slot(in_port)].rx_drops.add(rx_drops);
        }
        if fc != FdbCounters::default() {
            ctr.learned.add(fc.learned);
            ctr.moved.add(fc.moved);
            ctr.aged.add(fc.aged);
            ctr.evicted.add(fc.evicted);
        }
    }

    fn flood<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        in_port: u16,
        pkt: P,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        let mut last = None;
        for &p in cx.domain {
            if p == in_port {
                continue;
            }
            if let Some(prev) = last.replace(p) {
                match pkt.share() {
                    Some(copy) => self.enqueue(prev, copy, sink, ctr),
                    None => {
                        ctr.drop(DropReason::TxFull, 1);
                        ctr.ports[slot(prev)].tx_drops.add(1);
                    }
                }
            }
        }
        match last {
            Some(p) => self.enqueue(p, pkt, sink, ctr),
            None => {
                ctr.drop(DropReason::NoPort, 1);
                ctr.ports[slot(in_port)].rx_drops.add(1);
            }
        }
    }
}

//! The stage for bursts from routed pods: the Service stage, routing and
//! anti-spoofing ([`super::l3`]), the sender's and receiver's policy zones,
//! and the hand-over to the worker that owns the receiver's port.

use crate::counters::{DropReason, WorkerCounters};
use crate::packet::{Burst, PacketBuf};
use crate::pipeline::l3::{self, Verdict};
use crate::pipeline::services::FromPod;
use crate::pipeline::{slot, Context, Pipeline, TxSink};
use crate::tables::conntrack::Flow;
use crate::tables::endpoints::Endpoint;
use crate::wire::eth::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HLEN};
use policy::Direction;

#[inline(always)]
fn is_arp(frame: &[u8]) -> bool {
    frame.len() >= ETH_HLEN && u16::from_be_bytes([frame[12], frame[13]]) == ETHERTYPE_ARP
}

impl<P: PacketBuf> Pipeline<P> {
    /// A burst from a routed pod: answered, routed to another pod, or dropped.
    pub(crate) fn route<S: TxSink<P>>(
        &mut self,
        cx: &Context<'_>,
        in_port: u16,
        ep: &Endpoint,
        pkts: &mut Burst<P>,
        sink: &mut S,
        ctr: &WorkerCounters,
    ) {
        let mut rx_drops = 0u64;
        for mut pkt in pkts.drain(..) {
            // a pod not programmed yet may resolve its gateway, and that is
            // all: not even a Service's refusal answers it
            if !ep.policy.programmed && !is_arp(pkt.data()) {
                ctr.drop(DropReason::Unprogrammed, 1);
                rx_drops += 1;
                continue;
            }
            // Services first: policy and routing see the backend
            let judge = match self.service_from_pod(cx, ep, &mut pkt, ctr) {
                FromPod::Pass => None,
                FromPod::Judge(f) => Some(f),
                FromPod::Refused(why) => {
                    ctr.drop(why, 1);
                    rx_drops += 1;
                    self.enqueue(in_port, pkt, sink, ctr);
                    continue;
                }
                FromPod::Drop(why) => {
                    ctr.drop(why, 1);
                    rx_drops += 1;
                    continue;
                }
            };
            // a translated packet passed the anti-spoofing checks before
            // its source may have become the Service's (hairpin)
            let routed = if judge.is_some() {
                l3::forward(pkt.data_mut(), cx.routes)
            } else {
                l3::route(pkt.data_mut(), in_port, ep, cx.routes)
            };
            let out = match routed {
                Verdict::Out(out) => out,
                Verdict::Reply(port) => {
                    self.enqueue(port, pkt, sink, ctr);
                    continue;
                }
                Verdict::Beyond(dst) => {
                    if let Err(why) = self.beyond(cx, in_port, ep, pkt, dst, sink, ctr) {
                        ctr.drop(why, 1);
                        rx_drops += 1;
                    }
                    continue;
                }
                Verdict::Drop(why) => {
                    ctr.drop(why, 1);
                    rx_drops += 1;
                    continue;
                }
            };
            // route() checked the IPv4 header
            let flow = judge.unwrap_or_else(|| Flow::parse(&pkt.data()[ETH_HLEN..]));
            let mut verdict = self.zone(cx, in_port, ep, Direction::Egress, &flow, ctr);
            // the receiver's zone, when its port is ours; otherwise its
            // owner checks it in deliver()
            if verdict.is_ok() && cx.local.contains(out) {
                if let Some(Some(dst)) = cx.endpoints.get(slot(out)) {
                    verdict = self.zone(cx, out, dst, Direction::Ingress, &flow, ctr);
                    if verdict.is_ok() && judge.is_none() {
                        self.service_to_pod(cx, dst.zone, &flow, &mut pkt);
                    }
                }
            }
            match verdict {
                Ok(()) => self.enqueue(out, pkt, sink, ctr),
                Err(why) => {
                    ctr.drop(why, 1);
                    rx_drops += 1;
                }
            }
        }
        if rx_drops != 0 {
            ctr.ports[slot(in_port)].rx_drops.add(rx_drops);
        }
    }

    /// Packets another worker switched to `port`, one of ours: the
    /// receiver's zone is checked here; what passes stays in `pkts` for the
    /// caller to send, the rest is dropped and counted.
    pub fn deliver(
        &mut self,
        cx: &Context<'_>,
        port: u16,
        pkts: &mut Burst<P>,
        ctr: &WorkerCounters,
    ) {
        let Some(Some(ep)) = cx.endpoints.get(slot(port)) else {
            if let Some(u) = cx.underlay.filter(|u| u.uplink == port) {
                self.deliver_uplink(cx, u, pkts, ctr);
            }
            return;
        };
        let mut kept = Burst::new();
        let mut dropped = 0u64;
        for mut pkt in pkts.drain(..) {
            let data = pkt.data();
            let is_ip = data.len() >= ETH_HLEN + 20
                && u16::from_be_bytes([data[12], data[13]]) == ETHERTYPE_IPV4;
            // only routed IPv4 is handed to a pod's port: anything else
            // would pass without its ingress policy
            let verdict = if is_ip {
                let flow = Flow::parse(&data[ETH_HLEN..]);
                let v = self.zone(cx, port, ep, Direction::Ingress, &flow, ctr);
                if v.is_ok() {
                    self.service_to_pod(cx, ep.zone, &flow, &mut pkt);
                }
                v
            } else {
                Err(DropReason::NotIpv4)
            };
            if let Err(why) = verdict {
                ctr.drop(why, 1);
                dropped += 1;
                continue;
            }
            kept.push(pkt);
        }
        *pkts = kept;
        if dropped != 0 {
            ctr.ports[slot(port)].tx_drops.add(dropped);
        }
    }
}

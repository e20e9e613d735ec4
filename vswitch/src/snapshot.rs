//! The configuration the workers run, and what they share with the control
//! thread.
//!
//! The control thread builds a new immutable [`Snapshot`] for every change and
//! swaps it in; workers pick it up between bursts, so no packet sees half of
//! a change. Learned state (the FDB) and counters live beside it and outlive
//! every swap.

use crate::counters::{DropReason, WorkerCounters};
use crate::dpdk::mbuf::{Mbuf, Mempool};
use crate::dpdk::ring::MbufRing;
use crate::packet::Burst;
use crate::pipeline::firewall::LogRecord;
use crate::pipeline::MAX_PORTS;
use crate::tables::endpoints::{Endpoint, Routes};
use crate::tables::fdb::Fdb;
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use policy::compile::Compiled;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// How a port's frames come and go.
pub enum PortIo {
    /// A DPDK ethdev (the uplink, a NIC, an af_packet bridge port): its
    /// owner receives and sends on queue 0.
    Ethdev(u16),
    /// A kernel pod's TAP, driven by the switch itself.
    Tap(crate::dpdk::tap::Tap),
    /// A vhost-user pod through librte_vhost; `next` is the queue pair its
    /// owner reads first, turned by one each poll so that a busy pair
    /// does not starve the others.
    Vhost {
        port: crate::dpdk::vhost::VhostPort,
        next: AtomicU16,
    },
}

impl PortIo {
    /// Receives up to the burst's free room; returns how many came.
    #[inline(always)]
    pub fn rx(&self, pool: &Mempool, b: &mut Burst<Mbuf>) -> usize {
        match self {
            PortIo::Ethdev(id) => crate::dpdk::ethdev::rx_burst(*id, 0, b),
            PortIo::Tap(t) => t.rx_burst(pool, b),
            PortIo::Vhost { port, next } => {
                let pairs = port.queue_pairs();
                if pairs <= 1 {
                    return port.rx_burst(0, pool, b);
                }
                // only the owner polls: a plain load and store suffice
                let first = next.load(Relaxed) % pairs;
                next.store(first + 1, Relaxed);
                let mut n = 0;
                for i in 0..pairs {
                    if b.is_full() {
                        break;
                    }
                    n += port.rx_burst((first + i) % pairs, pool, b);
                }
                n
            }
        }
    }

    /// Sends from the front of `b`, removing what went; returns how many.
    #[inline(always)]
    pub fn tx(&self, b: &mut Burst<Mbuf>) -> usize {
        match self {
            PortIo::Ethdev(id) => crate::dpdk::ethdev::tx_burst(*id, 0, b),
            PortIo::Tap(t) => t.tx_burst(b),
            PortIo::Vhost { port, .. } => port.tx_burst(0, b),
        }
    }
}

/// What the dataplane knows of one port.
pub struct PortEntry {
    pub id: u16,
    pub io: PortIo,
    /// Index of the worker that polls it and transmits on it.
    pub owner: usize,
    /// Link state, refreshed by the control thread.
    pub link: AtomicBool,
    /// Where other workers put packets for this port (several workers only).
    pub handoff: Option<MbufRing>,
}

impl PortEntry {
    /// Why a packet the port's queue did not take was refused.
    #[inline]
    pub fn refusal(&self) -> DropReason {
        if self.link.load(Relaxed) {
            DropReason::TxFull
        } else {
            DropReason::LinkDown
        }
    }
}

pub struct Snapshot {
    pub generation: u64,
    /// Indexed by port id.
    pub ports: Vec<Option<Arc<PortEntry>>>,
    /// Ports of the bridge domain, for flooding.
    pub domain: Vec<u16>,
    /// Ports each worker polls.
    pub polls: Vec<Vec<u16>>,
    /// Routed pods, indexed by port id.
    pub endpoints: Vec<Option<Endpoint>>,
    /// Pod addresses to their ports.
    pub routes: Routes,
    /// The policy endpoints' indices point into.
    pub policy: Arc<Compiled>,
    /// Changes when the policy does (for flow-log names).
    pub policy_generation: u64,
    /// Per compiled rule: its slot among the rule counters.
    pub rule_slots: Arc<[u32]>,
    /// The uplink, remote nodes and pools, when there is an uplink.
    pub underlay: Option<crate::tables::underlay::Underlay>,
    /// Service addresses, NodePorts and their backends.
    pub services: crate::tables::services::Services,
}

impl Snapshot {
    pub fn empty(workers: usize) -> Snapshot {
        Snapshot {
            generation: 0,
            ports: (0..MAX_PORTS).map(|_| None).collect(),
            domain: Vec::new(),
            polls: vec![Vec::new(); workers],
            endpoints: vec![None; MAX_PORTS],
            routes: Routes::default(),
            policy: Arc::new(Compiled::empty()),
            policy_generation: 0,
            rule_slots: Arc::new([]),
            underlay: None,
            services: Default::default(),
        }
    }

    #[inline(always)]
    pub fn port(&self, id: u16) -> Option<&PortEntry> {
        self.ports.get(usize::from(id))?.as_deref()
    }
}

/// Shared between the control thread and the workers.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub generation: AtomicU64,
    /// The generation each worker runs (u64::MAX once it has stopped).
    pub seen: Vec<AtomicU64>,
    pub stop: AtomicBool,
    pub fdb: Fdb,
    pub counters: Vec<WorkerCounters>,
    pub tsc_hz: u64,
    /// TSC at start: each worker derives the switch clock (seconds since
    /// start) from its own TSC read, so the clock runs even while the
    /// control thread is busy.
    pub tsc_start: u64,
    /// Flow-log records, one queue per worker.
    pub flow_log: Vec<ArrayQueue<LogRecord>>,
    /// Connections each worker tracks at most.
    pub ct_capacity: usize,
    /// Percent of a worker's connection table one pod (zone) may hold.
    pub ct_zone_share: u32,
    /// Next hops on the underlay, learned from ARP on the uplink.
    pub neigh: crate::tables::neigh::Neighbors,
    /// Where workers take buffers for frames the switch makes itself.
    pub pool: Arc<crate::dpdk::mbuf::Mempool>,
    /// The ports being captured, and what their captures took.
    pub captures: crate::capture::Captures,
    /// The live trace, if one runs.
    pub tracer: crate::pipeline::trace::Tracer,
    /// Questions to each worker about its own tables.
    pub inquiries: Vec<crate::inquiry::Mailbox>,
}

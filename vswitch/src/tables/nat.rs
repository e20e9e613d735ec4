//! Source NAT for Calico's natOutgoing: traffic from pods in a pool with
//! `natOutgoing: true` to destinations outside the cluster leaves the node
//! from the node's address, on a port (or ICMP echo id) of the node's own.
//!
//! One table per worker: the worker that owns the uplink translates both
//! directions, so the table is read and written by one thread, with no lock
//! and no atomic. Everything is allocated at construction:
//!
//! - a slab of `capacity` entries, one per translated flow;
//! - two hash indexes (open addressing, linear probing, at most half full,
//!   under a per-table seed): from the pod's 5-tuple to its entry, and from
//!   the reply's (protocol, node address, remote address and port,
//!   translated port) to its entry.
//!
//! As with Linux, a translated port is unique per (protocol, remote address,
//! remote port), not per protocol: the same port may carry flows to
//! different destinations at once, so each destination has the whole range
//! (28,232 ports by default) and a node is not limited to that many flows
//! in all. A new flow takes a port at random, as Calico asks of iptables
//! with `MASQUERADE --random-fully` (a predictable port would undo the
//! source port randomisation of the pods' DNS resolvers): up to
//! [`PORT_TRIES`] random candidates, each checked in the reply index; a
//! range that small is scanned whole.
//!
//! Flows expire by the same per-state timeouts as the connection tracker
//! ([`Timeouts`]), with Linux's UDP rule: 30 s unanswered, and answered
//! too unless the flow is still going two seconds after it began (a
//! stream: 120 s). TCP FIN and RST are followed, so a closed connection
//! frees its port after the FIN (time-wait) or close timeout. An expired
//! flow keeps its port until it is reclaimed: by its own next packet (the
//! same flow again gets the same port), by an allocation that meets it as a
//! candidate or finds no free entry (a bounded scan), or by
//! [`Snat::sweep`], which the worker calls when idle.
//!
//! The packet rewrites patch every checksum incrementally (RFC 1624,
//! eqn. 3), the TCP and UDP ones for the pseudo-header's address too.

use crate::tables::conntrack::{Flow, State, Timeouts, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::checksum::{checksum, Delta};
use crate::wire::ipv4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use std::hash::{BuildHasher, Hasher};
use std::ops::RangeInclusive;

/// The default range: Linux's default `ip_local_port_range`. When the
/// node's kernel sends from the same address, its own connections draw
/// from these ports too, and one of them and a translated flow may pick the
/// same port towards the same destination: give one of the two another
/// range (Calico's `natPortRange`, or the kernel's `ip_local_port_range`).
pub const DEFAULT_PORTS: RangeInclusive<u16> = 32768..=60999;

/// Slots an allocation looks at for an expired flow to reclaim when it
/// finds nothing free: bounds the cost of a new flow when the table is full.
const RECLAIM_SCAN: usize = 32;
/// Random ports a new flow tries before it gives up (Linux tries up to 128
/// too): a destination is full for it only when nearly all its ports are.
pub const PORT_TRIES: usize = 128;
/// Seconds an answered UDP flow must have lasted to count as a stream.
const UDP_STREAM_AFTER: u32 = 2;

const NONE: u32 = u32::MAX;
const EMPTY: u64 = u64::MAX;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_UNREACHABLE: u8 = 3;
const ICMP_ECHO: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// Why a packet was not translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatDrop {
    /// The protocol has no ports to translate (only TCP, UDP and ICMP echo
    /// requests are).
    Unsupported,
    /// No free port (or no free entry) for a new flow.
    Exhausted,
}

impl NatDrop {
    pub const fn name(self) -> &'static str {
        match self {
            NatDrop::Unsupported => "nat_unsupported",
            NatDrop::Exhausted => "nat_exhausted",
        }
    }
}

impl std::fmt::Display for NatDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a table counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NatStats {
    /// Flows given a translation.
    pub created: u64,
    /// Expired flows whose port and entry were taken back.
    pub expired: u64,
}

/// Port spaces: one per protocol.
const TCP: usize = 0;
const UDP: usize = 1;
const ICMP: usize = 2;

/// The port space of a packet leaving a pod, if it can be translated.
#[inline(always)]
fn class_out(flow: &Flow) -> Option<usize> {
    match flow.proto {
        PROTO_TCP => Some(TCP),
        PROTO_UDP => Some(UDP),
        PROTO_ICMP if flow.icmp_type == ICMP_ECHO && flow.quoted.is_none() => Some(ICMP),
        _ => None,
    }
}

/// The port space of a reply, if it can be one.
#[inline(always)]
fn class_in(flow: &Flow) -> Option<usize> {
    match flow.proto {
        PROTO_TCP => Some(TCP),
        PROTO_UDP => Some(UDP),
        PROTO_ICMP if flow.icmp_type == ICMP_ECHO_REPLY && flow.quoted.is_none() => Some(ICMP),
        _ => None,
    }
}

/// The port space of the packet an ICMP error quotes.
#[inline(always)]
fn class_of_proto(proto: u8) -> Option<usize> {
    match proto {
        PROTO_TCP => Some(TCP),
        PROTO_UDP => Some(UDP),
        PROTO_ICMP => Some(ICMP),
        _ => None,
    }
}

/// How far a TCP connection has got, as far as its translation cares: when
/// it is closed, so that its port comes back soon. Which segments are
/// acceptable is the connection tracker's business, not this.
#[inline(always)]
fn tcp_step(s: State, fins: u8, flags: u8, reply: bool) -> (State, u8) {
    if flags & TCP_RST != 0 {
        return (State::Close, fins);
    }
    let syn_only = flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    if !reply && syn_only && matches!(s, State::TimeWait | State::Close) {
        // the pod opens a new connection on the same ports
        return (State::SynSent, 0);
    }
    let fins = if flags & TCP_FIN != 0 {
        fins | if reply { 2 } else { 1 }
    } else {
        fins
    };
    let next = match s {
        State::Close | State::TimeWait => s,
        _ if fins == 3 => State::TimeWait,
        _ if fins != 0 => State::FinWait,
        State::SynSent if reply => State::SynRecv,
        State::SynRecv if !reply && flags & TCP_ACK != 0 => State::Established,
        _ => s,
    };
    (next, fins)
}

/// The state of a flow after its first packet.
#[inline(always)]
fn first_state(flow: &Flow) -> (State, u8) {
    if flow.proto != PROTO_TCP {
        return (State::Unreplied, 0);
    }
    let start = if flow.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        State::SynSent
    } else {
        // picked up mid-stream, as the connection tracker does
        State::Established
    };
    tcp_step(start, 0, flow.tcp_flags, false)
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    pod_ip: u32,
    remote_ip: u32,
    node_ip: u32,
    pod_port: u16,
    remote_port: u16,
    nat_port: u16,
    /// 0 for a free entry.
    proto: u8,
    state: State,
    /// FIN seen from the pod (bit 0) and from the remote end (bit 1).
    fins: u8,
    /// Its keys' hashes: where its index slots are.
    hash: u32,
    rhash: u32,
    /// The second it began, and the last second it is live.
    born: u32,
    deadline: u32,
}

impl Entry {
    #[inline(always)]
    fn is_flow(&self, f: &Flow) -> bool {
        self.pod_ip == f.src
            && self.remote_ip == f.dst
            && self.pod_port == f.sport
            && self.remote_port == f.dport
            && self.proto == f.proto
    }

    #[inline(always)]
    fn advance(&mut self, flags: u8, reply: bool, now: u32, t: &Timeouts) {
        let (state, fins) = if self.proto == PROTO_TCP {
            tcp_step(self.state, self.fins, flags, reply)
        } else if reply {
            (State::Replied, 0)
        } else {
            (self.state, 0)
        };
        self.state = state;
        self.fins = fins;
        let timeout = if self.proto == PROTO_UDP
            && state == State::Replied
            && now.wrapping_sub(self.born) < UDP_STREAM_AFTER
        {
            // a query and its answer: Linux keeps only a stream longer
            t.udp_unreplied
        } else {
            t.of(self.proto, state)
        };
        self.deadline = now.saturating_add(timeout);
    }

    /// Whether this entry holds `port` towards `remote`:`rport` from
    /// `node` in port space `class`.
    #[inline(always)]
    fn holds(&self, class: usize, node: u32, remote: u32, rport: u16, port: u16) -> bool {
        self.proto != 0
            && class_of_proto(self.proto) == Some(class)
            && self.nat_port == port
            && self.remote_ip == remote
            && self.node_ip == node
            && (class == ICMP || self.remote_port == rport)
    }
}

/// Removes the slot of entry `i` (home `hash`) from an index, by
/// backward-shift deletion: no tombstones to slow later probes.
fn unlink(index: &mut [u64], hash: u32, i: usize) {
    let m = index.len() - 1;
    let mut hole = hash as usize & m;
    while index[hole] != EMPTY && (index[hole] as u32) as usize != i {
        hole = (hole + 1) & m;
    }
    if index[hole] == EMPTY {
        return;
    }
    index[hole] = EMPTY;
    let mut j = hole;
    loop {
        j = (j + 1) & m;
        let s = index[j];
        if s == EMPTY {
            break;
        }
        let home = (s >> 32) as usize & m;
        let stays = if hole <= j {
            hole < home && home <= j
        } else {
            hole < home || home <= j
        };
        if !stays {
            index[hole] = s;
            index[j] = EMPTY;
            hole = j;
        }
    }
}

/// Puts entry `i` (home `hash`) into an index that has an empty slot.
fn link(index: &mut [u64], hash: u32, i: u32) {
    let m = index.len() - 1;
    let mut s = hash as usize & m;
    while index[s] != EMPTY {
        s = (s + 1) & m;
    }
    index[s] = u64::from(hash) << 32 | u64::from(i);
}

/// A translation as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub proto: u8,
    /// Addresses in host order; for ICMP echo the ports are echo ids.
    pub pod_ip: u32,
    pub pod_port: u16,
    pub node_ip: u32,
    pub nat_port: u16,
    pub remote_ip: u32,
    pub remote_port: u16,
    pub state: State,
    /// Seconds since it began.
    pub age: u32,
    /// Seconds left without traffic.
    pub expires: u32,
}

/// One worker's source NAT; see the module documentation.
pub struct Snat {
    entries: Box<[Entry]>,
    free_entries: Vec<u32>,
    /// (hash << 32 | entry), or [`EMPTY`]: by the pod's 5-tuple, and by
    /// the reply's.
    index: Box<[u64]>,
    rindex: Box<[u64]>,
    seed: u64,
    port_lo: u16,
    nports: usize,
    sweep_cursor: usize,
    rng: u64,
    pub timeouts: Timeouts,
    pub stats: NatStats,
}

impl Snat {
    /// A table for at most `capacity` flows, translating to the ports of
    /// `ports` (for each of TCP, UDP and ICMP echo).
    pub fn new(capacity: usize, ports: RangeInclusive<u16>, timeouts: Timeouts) -> Snat {
        let capacity = capacity.clamp(1, NONE as usize - 1);
        let (lo, hi) = (*ports.start(), *ports.end());
        let nports = if lo <= hi {
            usize::from(hi - lo) + 1
        } else {
            0
        };
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Snat {
            entries: vec![Entry::default(); capacity].into_boxed_slice(),
            // popped from the end: hand out low entries first
            free_entries: (0..capacity as u32).rev().collect(),
            index: vec![EMPTY; (capacity * 2).next_power_of_two().max(8)].into_boxed_slice(),
            rindex: vec![EMPTY; (capacity * 2).next_power_of_two().max(8)].into_boxed_slice(),
            seed,
            port_lo: lo,
            nports,
            sweep_cursor: 0,
            rng: seed.rotate_left(17) | 1,
            timeouts,
            stats: NatStats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Entries held, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free_entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flows live at `now` (a full scan, for reports).
    pub fn live(&self, now: u32) -> usize {
        self.entries
            .iter()
            .filter(|e| e.proto != 0 && now <= e.deadline)
            .count()
    }

    /// Live translations: how many, and the first `max` of them in `out`
    /// (a full scan, for reports).
    pub fn bindings(&self, now: u32, max: usize, out: &mut Vec<Binding>) -> usize {
        let mut n = 0;
        for e in self.entries.iter() {
            if e.proto == 0 || now > e.deadline {
                continue;
            }
            n += 1;
            if out.len() < max {
                out.push(Binding {
                    proto: e.proto,
                    pod_ip: e.pod_ip,
                    pod_port: e.pod_port,
                    node_ip: e.node_ip,
                    nat_port: e.nat_port,
                    remote_ip: e.remote_ip,
                    remote_port: e.remote_port,
                    state: e.state,
                    age: now.saturating_sub(e.born),
                    expires: e.deadline - now,
                });
            }
        }
        n
    }

    /// Forgets every flow (the node's address changed, or natOutgoing was
    /// turned off).
    pub fn flush(&mut self) {
        for i in 0..self.entries.len() {
            if self.entries[i].proto != 0 {
                self.release(i);
            }
        }
    }

    #[inline(always)]
    fn hash(&self, proto: u8, src: u32, sport: u16, dst: u32, dport: u16) -> u32 {
        let a = (u64::from(src) << 32 | u64::from(dst)) ^ self.seed;
        let b = u64::from(sport) << 32 | u64::from(dport) << 16 | u64::from(proto);
        let h = (a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b).wrapping_mul(0xff51_afd7_ed55_8ccd);
        (h >> 32) as u32
    }

    #[inline(always)]
    fn index_mask(&self) -> usize {
        self.index.len() - 1
    }

    #[inline(always)]
    fn find(&self, h: u32, flow: &Flow) -> Option<usize> {
        let m = self.index_mask();
        let mut i = h as usize & m;
        loop {
            let s = self.index[i];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == h {
                let e = (s as u32) as usize;
                if self.entries[e].is_flow(flow) {
                    return Some(e);
                }
            }
            i = (i + 1) & m;
        }
    }

    /// The hash of a reply's key; an echo reply has no remote port.
    #[inline(always)]
    fn rhash(&self, class: usize, node: u32, remote: u32, rport: u16, port: u16) -> u32 {
        let rport = if class == ICMP { 0 } else { rport };
        let a = (u64::from(node) << 32 | u64::from(remote)) ^ self.seed.rotate_left(32);
        let b = u64::from(rport) << 32 | u64::from(port) << 16 | class as u64;
        let x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b;
        let h = (x ^ x >> 32).wrapping_mul(0xff51_afd7_ed55_8ccd);
        (h >> 32) as u32
    }

    /// The entry holding `port` towards `remote`:`rport` from `node`, live
    /// or not.
    #[inline(always)]
    fn holder(&self, class: usize, node: u32, remote: u32, rport: u16, port: u16) -> Option<usize> {
        let h = self.rhash(class, node, remote, rport, port);
        let m = self.rindex.len() - 1;
        let mut i = h as usize & m;
        loop {
            let s = self.rindex[i];
            if s == EMPTY {
                return None;
            }
            if (s >> 32) as u32 == h {
                let e = (s as u32) as usize;
                if self.entries[e].holds(class, node, remote, rport, port) {
                    return Some(e);
                }
            }
            i = (i + 1) & m;
        }
    }

    #[inline(always)]
    fn random(&mut self, n: usize) -> usize {
        // xorshift64*, then Lemire's multiply-shift onto 0..n
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        ((r * n as u64) >> 32) as usize
    }

    /// The translated port (the echo id, for ICMP) of a packet leaving a
    /// pod for outside the cluster, `node_ip` the address it will leave
    /// from. The same flow keeps its port while it lives; a new flow gets
    /// one that no live flow of its protocol holds.
    #[inline]
    pub fn outbound(&mut self, flow: &Flow, node_ip: u32, now: u32) -> Result<u16, NatDrop> {
        let class = class_out(flow).ok_or(NatDrop::Unsupported)?;
        let h = self.hash(flow.proto, flow.src, flow.sport, flow.dst, flow.dport);
        if let Some(i) = self.find(h, flow) {
            let t = self.timeouts;
            let e = &mut self.entries[i];
            if e.node_ip == node_ip {
                if now <= e.deadline {
                    e.advance(flow.tcp_flags, false, now, &t);
                } else {
                    // expired but not reclaimed: a new flow, on the same port
                    let (state, fins) = first_state(flow);
                    e.state = state;
                    e.fins = fins;
                    e.deadline = now.saturating_add(t.of(e.proto, state));
                    self.stats.created += 1;
                }
                return Ok(e.nat_port);
            }
            // translated for an address the node no longer uses
            self.release(i);
        }
        self.create(class, h, flow, node_ip, now)
    }

    /// A port towards `flow`'s destination that no live flow holds, the
    /// expired holder of the one it takes released.
    fn pick_port(&mut self, class: usize, flow: &Flow, node_ip: u32, now: u32) -> Option<u16> {
        let n = self.nports;
        if n == 0 {
            return None;
        }
        // a small range is scanned whole, from a random start
        let (tries, mut off) = if n <= PORT_TRIES {
            (n, self.random(n))
        } else {
            (PORT_TRIES, 0)
        };
        for _ in 0..tries {
            if n > PORT_TRIES {
                off = self.random(n);
            }
            let port = self.port_lo.wrapping_add(off as u16);
            off = if off + 1 == n { 0 } else { off + 1 };
            match self.holder(class, node_ip, flow.dst, flow.dport, port) {
                None => return Some(port),
                Some(e) if now > self.entries[e].deadline => {
                    self.release(e);
                    self.stats.expired += 1;
                    return Some(port);
                }
                Some(_) => {}
            }
        }
        None
    }

    fn create(
        &mut self,
        class: usize,
        h: u32,
        flow: &Flow,
        node_ip: u32,
        now: u32,
    ) -> Result<u16, NatDrop> {
        if self.free_entries.is_empty() {
            // every entry is in use: any of them may be expired
            self.sweep(now, RECLAIM_SCAN);
        }
        if self.free_entries.is_empty() {
            return Err(NatDrop::Exhausted);
        }
        let port = self
            .pick_port(class, flow, node_ip, now)
            .ok_or(NatDrop::Exhausted)?;
        let Some(i) = self.free_entries.pop() else {
            return Err(NatDrop::Exhausted);
        };
        let (state, fins) = first_state(flow);
        let rh = self.rhash(class, node_ip, flow.dst, flow.dport, port);
        self.entries[i as usize] = Entry {
            pod_ip: flow.src,
            remote_ip: flow.dst,
            node_ip,
            pod_port: flow.sport,
            remote_port: flow.dport,
            nat_port: port,
            proto: flow.proto,
            state,
            fins,
            hash: h,
            rhash: rh,
            born: now,
            deadline: now.saturating_add(self.timeouts.of(flow.proto, state)),
        };
        // never more than half full: there is an empty slot
        link(&mut self.index, h, i);
        link(&mut self.rindex, rh, i);
        self.stats.created += 1;
        Ok(port)
    }

    /// Gives entry `i`'s port and slot back.
    fn release(&mut self, i: usize) {
        let e = self.entries[i];
        unlink(&mut self.index, e.hash, i);
        unlink(&mut self.rindex, e.rhash, i);
        self.entries[i].proto = 0;
        self.free_entries.push(i as u32);
    }

    /// The pod address and port (echo id) a packet from outside to a
    /// translated port belongs to: a reply from the flow's destination to
    /// the address and port it was translated to, while the flow lives.
    #[inline]
    pub fn inbound(&mut self, flow: &Flow, now: u32) -> Option<(u32, u16)> {
        let class = class_in(flow)?;
        let i = self.holder(class, flow.dst, flow.src, flow.sport, flow.dport)?;
        let t = self.timeouts;
        let e = &mut self.entries[i];
        if now > e.deadline {
            return None;
        }
        e.advance(flow.tcp_flags, true, now, &t);
        Some((e.pod_ip, e.pod_port))
    }

    /// For an ICMP error from outside (`flow` parsed from `ip`, the IPv4
    /// packet) about a translated flow: finds the flow from the quoted
    /// header, rewrites `ip` for the pod (outer destination, quoted source
    /// address and port, and their checksums) and returns the pod's address
    /// and port. The error does not keep the flow alive.
    pub fn inbound_icmp_error(
        &mut self,
        flow: &Flow,
        ip: &mut [u8],
        now: u32,
    ) -> Option<(u32, u16)> {
        let q = flow.quoted?;
        if flow.proto != PROTO_ICMP {
            return None;
        }
        let class = class_of_proto(q.proto)?;
        if flow.dst != q.src {
            return None;
        }
        let e = &self.entries[self.holder(class, q.src, q.dst, q.dport, q.sport)?];
        if now > e.deadline {
            return None;
        }
        let to = (e.pod_ip, e.pod_port);
        icmp_error_rewrite(ip, to.0, to.1).then_some(to)
    }

    /// Reclaims expired flows among the next `budget` entries; returns how
    /// many. The worker calls it when a poll finds nothing to do.
    pub fn sweep(&mut self, now: u32, budget: usize) -> usize {
        let n = self.entries.len();
        let mut freed = 0;
        for _ in 0..budget.min(n) {
            let i = self.sweep_cursor;
            self.sweep_cursor = if i + 1 == n { 0 } else { i + 1 };
            let e = &self.entries[i];
            if e.proto != 0 && now > e.deadline {
                self.release(i);
                freed += 1;
            }
        }
        self.stats.expired += freed as u64;
        freed
    }
}

// ---------------------------------------------------------------- rewriting

#[inline(always)]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The header length of an IPv4 packet and where its bytes end, if the
/// header is whole.
#[inline(always)]
fn ipv4_bounds(ip: &[u8]) -> Option<(usize, usize)> {
    let h = ip.first_chunk::<20>()?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 || ihl > ip.len() {
        return None;
    }
    let end = usize::from(u16::from_be_bytes([h[2], h[3]])).min(ip.len());
    Some((ihl, end.max(ihl)))
}

#[inline(always)]
fn first_fragment(ip: &[u8]) -> bool {
    rd16(ip, 6) & 0x1fff == 0
}

/// Replaces the address at `at` (12: source, 16: destination) and, when
/// the transport header is there, the port at `port_at` (0: source, 2:
/// destination; for ICMP echo, the id either way).
#[inline(always)]
fn rewrite(ip: &mut [u8], at: usize, new_addr: u32, port_at: usize, new_port: u16) {
    let Some((ihl, end)) = ipv4_bounds(ip) else {
        return;
    };
    let old_addr = rd32(ip, at);
    let mut pseudo = Delta::default();
    pseudo.addr(old_addr, new_addr);
    ip[at..at + 4].copy_from_slice(&new_addr.to_be_bytes());
    wr16(ip, 10, pseudo.apply(rd16(ip, 10)));
    if !first_fragment(ip) {
        // the transport header travels in the first fragment
        return;
    }
    let l4 = ihl;
    match ip[9] {
        PROTO_TCP if l4 + 18 <= end => {
            let mut d = pseudo;
            d.word(rd16(ip, l4 + port_at), new_port);
            wr16(ip, l4 + port_at, new_port);
            wr16(ip, l4 + 16, d.apply(rd16(ip, l4 + 16)));
        }
        PROTO_UDP if l4 + 8 <= end => {
            let mut d = pseudo;
            d.word(rd16(ip, l4 + port_at), new_port);
            wr16(ip, l4 + port_at, new_port);
            wr16(ip, l4 + 6, d.apply_udp(rd16(ip, l4 + 6)));
        }
        PROTO_ICMP if l4 + 8 <= end && matches!(ip[l4], ICMP_ECHO | ICMP_ECHO_REPLY) => {
            // no pseudo-header in the ICMP checksum
            let mut d = Delta::default();
            d.word(rd16(ip, l4 + 4), new_port);
            wr16(ip, l4 + 4, new_port);
            let mut c = d.apply(rd16(ip, l4 + 2));
            if c == 0 && end == usize::from(rd16(ip, 2)) {
                // RFC 1624's update gives 0 for a message of zeros only
                // (an echo reply of id 0, sequence 0, zero data), whose
                // checksum is all ones: receivers refuse the 0. Rare
                // enough to sum the whole message.
                wr16(ip, l4 + 2, 0);
                c = checksum(&ip[l4..end], 0);
            }
            wr16(ip, l4 + 2, c);
        }
        _ => {}
    }
}

/// Rewrites a packet leaving a pod (`ip`: its IPv4 header on) to come from
/// `new_src`:`new_port` (the echo id, for ICMP echo), patching the header
/// checksum and the TCP, UDP or ICMP checksum. A non-first fragment has
/// its address changed only.
#[inline]
pub fn snat_rewrite(ip: &mut [u8], new_src: u32, new_port: u16) {
    rewrite(ip, 12, new_src, 0, new_port);
}

/// Rewrites a reply for the pod: destination `new_dst`:`new_port` (the echo
/// id, for an ICMP echo reply), with its checksums.
#[inline]
pub fn dnat_rewrite(ip: &mut [u8], new_dst: u32, new_port: u16) {
    rewrite(ip, 16, new_dst, 2, new_port);
}

/// Rewrites an ICMP error about a translated flow for the pod: the outer
/// destination becomes `pod_ip`, and in the quoted packet the source
/// address becomes `pod_ip` and the source port (echo id) `pod_port`. The
/// outer header checksum, the quoted header's checksum, the quoted TCP,
/// UDP or ICMP checksum (when quoted) and the error's ICMP checksum are
/// patched. False, with the packet untouched, if it is not such an error or
/// is cut short of the quoted port.
pub fn icmp_error_rewrite(ip: &mut [u8], pod_ip: u32, pod_port: u16) -> bool {
    icmp_error_rewrite_at(ip, Some(16), 12, 0, pod_ip, pod_port)
}

/// Rewrites an ICMP error about a destination-translated flow (a Service
/// connection) for its client: in the quoted packet the destination
/// address becomes `addr` and the destination port (echo id) `port`; the
/// outer source becomes `addr` too when `outer_src` (the error came from
/// the backend itself). Checksums as [`icmp_error_rewrite`] patches them.
pub fn icmp_error_rewrite_dst(ip: &mut [u8], outer_src: bool, addr: u32, port: u16) -> bool {
    icmp_error_rewrite_at(ip, outer_src.then_some(12), 16, 2, addr, port)
}

/// `outer_at`: the outer address to replace (16 destination, 12 source),
/// if any; `inner_at` the quoted address (12 or 16); `port_off` the quoted
/// port's offset in its TCP or UDP header (0 source, 2 destination).
fn icmp_error_rewrite_at(
    ip: &mut [u8],
    outer_at: Option<usize>,
    inner_at: usize,
    port_off: usize,
    pod_ip: u32,
    pod_port: u16,
) -> bool {
    let Some((ihl, end)) = ipv4_bounds(ip) else {
        return false;
    };
    if ip[9] != PROTO_ICMP || !first_fragment(ip) {
        return false;
    }
    let icmp = ihl;
    let inner = icmp + 8;
    if inner + 20 > end
        || !matches!(
            ip[icmp],
            ICMP_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
        )
        || ip[inner] >> 4 != 4
    {
        return false;
    }
    let qihl = usize::from(ip[inner] & 0x0f) * 4;
    let qproto = ip[inner + 9];
    let l4 = inner + qihl;
    let (port_at, csum_at) = match qproto {
        PROTO_TCP => (l4 + port_off, l4 + 16),
        PROTO_UDP => (l4 + port_off, l4 + 6),
        PROTO_ICMP => (l4 + 4, l4 + 2),
        _ => return false,
    };
    if qihl < 20 || port_at + 2 > end {
        return false;
    }

    if let Some(at) = outer_at {
        let mut outer = Delta::default();
        outer.addr(rd32(ip, at), pod_ip);
        ip[at..at + 4].copy_from_slice(&pod_ip.to_be_bytes());
        wr16(ip, 10, outer.apply(rd16(ip, 10)));
    }

    // the quoted packet, each change also summed for the error's checksum
    let q = inner + inner_at;
    let mut icmp_delta = Delta::default();
    let mut addr = Delta::default();
    addr.addr(rd32(ip, q), pod_ip);
    icmp_delta.addr(rd32(ip, q), pod_ip);
    ip[q..q + 4].copy_from_slice(&pod_ip.to_be_bytes());
    let old = rd16(ip, inner + 10);
    let new = addr.apply(old);
    icmp_delta.word(old, new);
    wr16(ip, inner + 10, new);

    let old_port = rd16(ip, port_at);
    icmp_delta.word(old_port, pod_port);
    wr16(ip, port_at, pod_port);
    if csum_at + 2 <= end {
        let mut d = if qproto == PROTO_ICMP {
            Delta::default()
        } else {
            addr
        };
        d.word(old_port, pod_port);
        let old = rd16(ip, csum_at);
        let new = if qproto == PROTO_UDP {
            d.apply_udp(old)
        } else {
            d.apply(old)
        };
        icmp_delta.word(old, new);
        wr16(ip, csum_at, new);
    }
    wr16(ip, icmp + 2, icmp_delta.apply(rd16(ip, icmp + 2)));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::QuotedFlow;
    use std::collections::HashSet;

    const POD_A: u32 = 0x0a41_0001; // 10.65.0.1
    const POD_B: u32 = 0x0a41_0002;
    const NODE: u32 = 0xc0a8_0a01; // 192.168.10.1
    const DNS: u32 = 0x0808_0808;
    const WEB: u32 = 0x5db8_d822;

    fn udp(src: u32, sport: u16, dst: u32, dport: u16) -> Flow {
        Flow {
            src,
            dst,
            proto: PROTO_UDP,
            sport,
            dport,
            ..Flow::default()
        }
    }

    fn tcp(src: u32, sport: u16, dst: u32, dport: u16, flags: u8) -> Flow {
        Flow {
            src,
            dst,
            proto: PROTO_TCP,
            sport,
            dport,
            tcp_flags: flags,
            ..Flow::default()
        }
    }

    fn echo(src: u32, dst: u32, id: u16, icmp_type: u8) -> Flow {
        Flow {
            src,
            dst,
            proto: PROTO_ICMP,
            sport: id,
            dport: id,
            icmp_type,
            ..Flow::default()
        }
    }

    fn table() -> Snat {
        Snat::new(65536, DEFAULT_PORTS, Timeouts::default())
    }

    /// The reply to `f` after it was translated to `NODE:port`.
    fn reply(f: &Flow, port: u16) -> Flow {
        Flow {
            src: f.dst,
            dst: NODE,
            sport: f.dport,
            dport: port,
            ..*f
        }
    }

    #[test]
    fn reports_list_live_translations() {
        let mut n = table();
        let f = udp(POD_A, 5000, DNS, 53);
        let port = n.outbound(&f, NODE, 100).expect("translated");
        n.outbound(&udp(POD_B, 5001, DNS, 53), NODE, 101)
            .expect("translated");
        let mut out = Vec::new();
        assert_eq!(n.bindings(104, 1, &mut out), 2);
        assert_eq!(out.len(), 1, "one listed, both counted");
        out.clear();
        n.bindings(104, 10, &mut out);
        let b = out
            .iter()
            .find(|b| b.pod_ip == POD_A)
            .expect("pod A's flow");
        assert_eq!(
            (
                b.proto,
                b.pod_port,
                b.node_ip,
                b.nat_port,
                b.remote_ip,
                b.remote_port
            ),
            (PROTO_UDP, 5000, NODE, port, DNS, 53)
        );
        assert_eq!((b.state, b.age), (State::Unreplied, 4));
        out.clear();
        let gone = 101 + Timeouts::default().udp_unreplied + 1;
        assert_eq!(
            n.bindings(gone, 10, &mut out),
            0,
            "expired ones are not live"
        );
    }

    #[test]
    fn a_thousand_flows_from_two_pods_get_distinct_ports() {
        let mut n = table();
        let mut seen = HashSet::new();
        let mut flows = vec![];
        for i in 0..1000u16 {
            // both pods use the same source ports towards the same server
            let f = udp(
                if i % 2 == 0 { POD_A } else { POD_B },
                40000 + i / 2,
                DNS,
                53,
            );
            let p = n.outbound(&f, NODE, 1).unwrap();
            assert!(DEFAULT_PORTS.contains(&p));
            assert!(seen.insert(p), "port {p} handed out twice");
            flows.push((f, p));
        }
        assert_eq!(n.len(), 1000);
        for (f, p) in &flows {
            assert_eq!(n.outbound(f, NODE, 2), Ok(*p), "a flow keeps its port");
            assert_eq!(n.inbound(&reply(f, *p), 2), Some((f.src, f.sport)));
        }
        assert_eq!(n.stats.created, 1000);
    }

    #[test]
    fn only_the_flows_destination_gets_in() {
        let mut n = table();
        let f = udp(POD_A, 40000, DNS, 53);
        let p = n.outbound(&f, NODE, 1).unwrap();
        let r = reply(&f, p);
        assert_eq!(n.inbound(&Flow { src: WEB, ..r }, 1), None, "another host");
        assert_eq!(n.inbound(&Flow { sport: 54, ..r }, 1), None, "another port");
        assert_eq!(
            n.inbound(&Flow { dst: NODE + 1, ..r }, 1),
            None,
            "another address"
        );
        assert_eq!(
            n.inbound(&Flow { dport: p ^ 1, ..r }, 1),
            None,
            "another translation"
        );
        assert_eq!(
            n.inbound(
                &Flow {
                    proto: PROTO_TCP,
                    ..r
                },
                1
            ),
            None,
            "TCP ports are apart"
        );
        assert_eq!(
            n.inbound(&Flow { dport: 80, ..r }, 1),
            None,
            "out of the range"
        );
        assert_eq!(n.inbound(&r, 1), Some((POD_A, 40000)));
    }

    #[test]
    fn udp_expires_and_its_port_is_reused() {
        // one port: whoever has it towards DNS:53, nobody else can
        let mut n = Snat::new(64, 40000..=40000, Timeouts::default());
        let a = udp(POD_A, 5000, DNS, 53);
        let b = udp(POD_B, 6000, DNS, 53);
        assert_eq!(n.outbound(&a, NODE, 100), Ok(40000));
        assert_eq!(n.outbound(&b, NODE, 110), Err(NatDrop::Exhausted));
        // unreplied UDP lives 30 s after its last packet
        assert_eq!(n.outbound(&a, NODE, 120), Ok(40000));
        assert_eq!(n.inbound(&reply(&a, 40000), 150), Some((POD_A, 5000)));
        assert_eq!(
            n.outbound(&b, NODE, 151),
            Err(NatDrop::Exhausted),
            "a stream: 120 s"
        );
        assert_eq!(n.inbound(&reply(&a, 40000), 270), Some((POD_A, 5000)));
        assert_eq!(n.outbound(&b, NODE, 390), Err(NatDrop::Exhausted));
        assert_eq!(
            n.outbound(&b, NODE, 391),
            Ok(40000),
            "reclaimed on allocation"
        );
        // the same reply now belongs to the new flow
        assert_eq!(n.inbound(&reply(&a, 40000), 391), Some((POD_B, 6000)));
        assert_eq!(n.outbound(&a, NODE, 392), Err(NatDrop::Exhausted));
        assert_eq!(n.stats.expired, 1);
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn a_query_and_its_answer_keep_the_port_30_s_only() {
        let mut n = Snat::new(64, 40000..=40000, Timeouts::default());
        let a = udp(POD_A, 5000, DNS, 53);
        let b = udp(POD_B, 5000, DNS, 53);
        assert_eq!(n.outbound(&a, NODE, 100), Ok(40000));
        // answered within two seconds: not a stream
        assert_eq!(n.inbound(&reply(&a, 40000), 101), Some((POD_A, 5000)));
        assert_eq!(n.outbound(&b, NODE, 131), Err(NatDrop::Exhausted));
        assert_eq!(n.outbound(&b, NODE, 132), Ok(40000));
    }

    #[test]
    fn one_port_serves_many_destinations() {
        // a single port, and flows to three destinations at once
        let mut n = Snat::new(64, 40000..=40000, Timeouts::default());
        let flows = [
            udp(POD_A, 5000, DNS, 53),
            udp(POD_B, 5000, DNS, 5353),
            udp(POD_B, 6000, WEB, 53),
            tcp(POD_A, 7000, DNS, 53, TCP_SYN),
        ];
        for f in &flows {
            assert_eq!(n.outbound(f, NODE, 0), Ok(40000));
        }
        assert_eq!(
            n.outbound(&udp(POD_B, 1, WEB, 53), NODE, 0),
            Err(NatDrop::Exhausted),
            "WEB:53 has it already"
        );
        // each reply finds its own flow
        for f in &flows {
            assert_eq!(n.inbound(&reply(f, 40000), 1), Some((f.src, f.sport)));
        }
        assert_eq!(n.len(), 4);
    }

    #[test]
    fn twenty_thousand_flows_to_a_hundred_destinations_all_get_ports() {
        let mut n = table();
        let mut got = std::collections::HashMap::new();
        for i in 0..20_000u32 {
            let dst = 0x0b00_0000 + i % 100;
            let f = udp(POD_A + i % 7, 10_000 + (i / 7) as u16, dst, 53);
            // a thousand new flows a second
            let now = i / 1000;
            let p = n.outbound(&f, NODE, now).expect("a port");
            assert!(got.insert((dst, p), f).is_none(), "{dst:x}:{p} twice");
        }
        for (&(dst, p), f) in &got {
            assert_eq!(
                n.inbound(&reply(f, p), 20),
                Some((f.src, f.sport)),
                "{dst:x}"
            );
        }
        assert_eq!(n.len(), 20_000);
    }

    #[test]
    fn an_expired_flow_that_comes_back_keeps_its_port() {
        let mut n = table();
        let a = udp(POD_A, 5000, DNS, 53);
        let p = n.outbound(&a, NODE, 0).unwrap();
        assert_eq!(n.inbound(&reply(&a, p), 31), None, "expired");
        assert_eq!(n.outbound(&a, NODE, 40), Ok(p));
        assert_eq!(n.inbound(&reply(&a, p), 41), Some((POD_A, 5000)));
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn tcp_close_frees_the_port_after_the_close_timeout() {
        let t = Timeouts::default();
        let mut n = Snat::new(64, 40000..=40000, t);
        let (syn, ack) = (TCP_SYN, TCP_ACK);
        let c = tcp(POD_A, 33000, WEB, 443, syn);
        let other = tcp(POD_B, 33000, WEB, 443, syn);
        assert_eq!(n.outbound(&c, NODE, 0), Ok(40000));
        assert_eq!(n.inbound(&reply(&c, 40000), 0).map(|x| x.1), Some(33000));
        let mut data = c;
        data.tcp_flags = ack;
        n.outbound(&data, NODE, 1).unwrap();
        // established: lives for days
        assert_eq!(n.outbound(&other, NODE, 100_000), Err(NatDrop::Exhausted));
        n.outbound(&data, NODE, 100_000).unwrap();
        // both FINs: time-wait for tcp_fin seconds after the last segment
        data.tcp_flags = TCP_FIN | ack;
        n.outbound(&data, NODE, 100_010).unwrap();
        let mut r = reply(&c, 40000);
        r.tcp_flags = TCP_FIN | ack;
        assert_eq!(n.inbound(&r, 100_011), Some((POD_A, 33000)));
        data.tcp_flags = ack;
        n.outbound(&data, NODE, 100_012).unwrap();
        let freed = 100_012 + t.tcp_fin;
        assert_eq!(n.outbound(&other, NODE, freed), Err(NatDrop::Exhausted));
        assert_eq!(n.outbound(&other, NODE, freed + 1), Ok(40000));
        // reset: the close timeout
        let mut rst = other;
        rst.tcp_flags = TCP_RST;
        n.outbound(&rst, NODE, 200_000).unwrap();
        assert_eq!(
            n.outbound(&c, NODE, 200_000 + t.tcp_close),
            Err(NatDrop::Exhausted)
        );
        assert_eq!(n.outbound(&c, NODE, 200_001 + t.tcp_close), Ok(40000));
    }

    #[test]
    fn a_reset_from_outside_closes_too_and_a_new_syn_reopens() {
        let t = Timeouts::default();
        let mut n = table();
        let c = tcp(POD_A, 33000, WEB, 443, TCP_SYN);
        let p = n.outbound(&c, NODE, 0).unwrap();
        let mut r = reply(&c, p);
        r.tcp_flags = TCP_RST | TCP_ACK;
        assert!(n.inbound(&r, 1).is_some());
        assert_eq!(n.live(1 + t.tcp_close), 1);
        assert_eq!(n.live(2 + t.tcp_close), 0);
        // the pod tries again on the same ports before then: same translation
        assert_eq!(n.outbound(&c, NODE, 5), Ok(p));
        assert_eq!(n.live(5 + t.tcp_syn), 1, "a new connection, syn timeout");
    }

    #[test]
    fn icmp_echo_ids_are_translated_like_ports() {
        let mut n = table();
        let a = echo(POD_A, DNS, 7, ICMP_ECHO);
        let b = echo(POD_B, DNS, 7, ICMP_ECHO);
        let ia = n.outbound(&a, NODE, 0).unwrap();
        let ib = n.outbound(&b, NODE, 0).unwrap();
        assert_ne!(ia, ib);
        let ra = echo(DNS, NODE, ia, ICMP_ECHO_REPLY);
        assert_eq!(n.inbound(&ra, 1), Some((POD_A, 7)));
        assert_eq!(
            n.inbound(&echo(DNS, NODE, ib, ICMP_ECHO_REPLY), 1),
            Some((POD_B, 7))
        );
        assert_eq!(n.inbound(&echo(WEB, NODE, ia, ICMP_ECHO_REPLY), 1), None);
        assert_eq!(
            n.inbound(&echo(DNS, NODE, ia, ICMP_ECHO), 1),
            None,
            "not a reply"
        );
        assert_eq!(n.inbound(&ra, 32), None, "icmp timeout");
    }

    #[test]
    fn portless_protocols_are_unsupported() {
        let mut n = table();
        let gre = Flow {
            src: POD_A,
            dst: WEB,
            proto: 47,
            ..Flow::default()
        };
        assert_eq!(n.outbound(&gre, NODE, 0), Err(NatDrop::Unsupported));
        let ts = echo(POD_A, WEB, 1, 13);
        assert_eq!(n.outbound(&ts, NODE, 0), Err(NatDrop::Unsupported));
        let r = echo(POD_A, WEB, 1, ICMP_ECHO_REPLY);
        assert_eq!(n.outbound(&r, NODE, 0), Err(NatDrop::Unsupported));
        assert!(n.is_empty());
        assert_eq!(NatDrop::Exhausted.to_string(), "nat_exhausted");
    }

    #[test]
    fn exhaustion_with_a_tiny_range() {
        let mut n = Snat::new(1024, 50000..=50003, Timeouts::default());
        let mut ports: Vec<u16> = (0..4)
            .map(|i| n.outbound(&udp(POD_A, 1000 + i, DNS, 53), NODE, 0).unwrap())
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![50000, 50001, 50002, 50003]);
        for i in 4..10 {
            assert_eq!(
                n.outbound(&udp(POD_A, 1000 + i, DNS, 53), NODE, 1),
                Err(NatDrop::Exhausted)
            );
        }
        // the other port spaces are separate
        assert!(n
            .outbound(&tcp(POD_A, 1000, WEB, 80, TCP_SYN), NODE, 1)
            .is_ok());
        assert!(n.outbound(&echo(POD_A, WEB, 1, ICMP_ECHO), NODE, 1).is_ok());
        // existing flows still pass
        assert!(n.outbound(&udp(POD_A, 1000, DNS, 53), NODE, 1).is_ok());
        // an empty range translates nothing
        let (lo, hi) = (2, 1);
        let mut none = Snat::new(16, lo..=hi, Timeouts::default());
        assert_eq!(
            none.outbound(&udp(POD_A, 1, DNS, 53), NODE, 0),
            Err(NatDrop::Exhausted)
        );
        assert_eq!(none.inbound(&udp(DNS, 53, NODE, 1), 0), None);
    }

    #[test]
    fn a_full_table_reclaims_expired_entries() {
        let mut n = Snat::new(8, DEFAULT_PORTS, Timeouts::default());
        for i in 0..8 {
            n.outbound(&udp(POD_A, 1000 + i, DNS, 53), NODE, 0).unwrap();
        }
        assert_eq!(
            n.outbound(&udp(POD_A, 2000, DNS, 53), NODE, 30),
            Err(NatDrop::Exhausted)
        );
        assert!(n.outbound(&udp(POD_A, 2000, DNS, 53), NODE, 31).is_ok());
        assert_eq!(n.len(), 1, "the scan freed all it saw");
    }

    #[test]
    fn sweep_does_bounded_work() {
        let mut n = table();
        for i in 0..100 {
            n.outbound(&udp(POD_A, 1000 + i, DNS, 53), NODE, 0).unwrap();
        }
        // elsewhere: no allocation meets POD_A's ports
        for i in 0..100 {
            n.outbound(&udp(POD_B, 1000 + i, WEB, 53), NODE, 100)
                .unwrap();
        }
        assert_eq!(
            n.sweep(100, 50),
            50,
            "the first 50 entries are POD_A's, expired"
        );
        assert_eq!(n.len(), 150);
        let mut freed = 50;
        while freed < 100 {
            let f = n.sweep(100, 1000);
            assert!(f <= 1000);
            freed += f;
        }
        assert_eq!(n.len(), 100);
        assert_eq!(n.live(100), 100);
        assert_eq!(n.stats.expired, 100);
        // the freed ports and entries are usable, and the index is intact
        for i in 0..100 {
            let f = udp(POD_B, 1000 + i, WEB, 53);
            let p = n.outbound(&f, NODE, 101).unwrap();
            assert_eq!(n.inbound(&reply(&f, p), 101), Some((POD_B, 1000 + i)));
        }
        assert_eq!(n.len(), 100);
        n.flush();
        assert!(n.is_empty());
    }

    #[test]
    fn churn_keeps_ports_unique_and_the_index_consistent() {
        // flows come and go at random, more of them at once than the range
        // has ports; at every step, live flows hold
        // distinct ports and every one is found both ways
        let t = Timeouts {
            udp_unreplied: 3,
            udp_replied: 3,
            ..Timeouts::default()
        };
        let mut n = Snat::new(256, 40000..=40149, t);
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut live: Vec<(Flow, u16, u32)> = vec![];
        let mut exhausted = 0;
        for step in 0..20_000u32 {
            // 50 packets a second
            let now = step / 50;
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let f = udp(POD_A + (s % 3) as u32, (s >> 8) as u16 % 400, DNS, 53);
            live.retain(|&(_, _, last)| now <= last + 3);
            match n.outbound(&f, NODE, now) {
                Ok(p) => {
                    if let Some(e) = live.iter_mut().find(|e| e.0 == f) {
                        assert_eq!(e.1, p);
                        e.2 = now;
                    } else {
                        assert!(live.iter().all(|e| e.1 != p), "port {p} of a live flow");
                        live.push((f, p, now));
                    }
                }
                Err(e) => {
                    assert_eq!(e, NatDrop::Exhausted);
                    assert!(live.iter().all(|e| e.0 != f), "a live flow lost its port");
                    // the reclaim scan saw only live holders
                    assert!(
                        live.len() >= RECLAIM_SCAN,
                        "exhausted with {} live",
                        live.len()
                    );
                    exhausted += 1;
                }
            }
            if step % 7 == 0 {
                n.sweep(now, 16);
            }
            for &(f, p, last) in &live {
                if last == now && step % 3 == 0 {
                    assert_eq!(n.inbound(&reply(&f, p), now), Some((f.src, f.sport)));
                }
            }
        }
        assert!(exhausted > 0, "the range was never full: a weak test");
    }

    #[test]
    fn a_node_address_change_retranslates() {
        let mut n = table();
        let f = udp(POD_A, 5000, DNS, 53);
        let p = n.outbound(&f, NODE, 0).unwrap();
        let q = n.outbound(&f, NODE + 1, 1).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n.inbound(&reply(&f, p), 1), None, "to the old address");
        let r = Flow {
            dst: NODE + 1,
            ..reply(&f, q)
        };
        assert_eq!(n.inbound(&r, 1), Some((POD_A, 5000)));
    }

    // ------------------------------------------------------------ packets

    /// Fills in every checksum of an IPv4 packet from scratch (UDP's left
    /// out, as zero, without `udp_csum`).
    fn finish(p: &mut [u8], udp_csum: bool) {
        crate::testing::fill_checksums(p);
        if p[9] == PROTO_UDP && !udp_csum {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            p[ihl + 6..ihl + 8].fill(0);
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// A random TCP, UDP or ICMP echo packet with valid checksums, maybe
    /// with IP options, odd payload lengths included.
    fn random_packet(r: &mut Rng) -> Vec<u8> {
        let proto = [PROTO_TCP, PROTO_UDP, PROTO_ICMP][(r.next() % 3) as usize];
        let opts = (r.next() % 3) as usize * 4;
        let l4len = match proto {
            PROTO_TCP => 20,
            _ => 8,
        };
        let payload = (r.next() % 200) as usize;
        let total = 20 + opts + l4len + payload;
        let mut p = r.bytes(total);
        p[0] = 0x45 + (opts / 4) as u8;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[6] &= 0x40; // DF maybe, never a fragment
        p[7] = 0;
        p[9] = proto;
        let l4 = 20 + opts;
        match proto {
            PROTO_TCP => p[l4 + 12] = 0x50,
            PROTO_UDP => {
                p[l4 + 4..l4 + 6].copy_from_slice(&((l4len + payload) as u16).to_be_bytes())
            }
            _ => {
                p[l4] = if r.next().is_multiple_of(2) {
                    ICMP_ECHO
                } else {
                    ICMP_ECHO_REPLY
                };
                p[l4 + 1] = 0;
            }
        }
        finish(&mut p, !r.next().is_multiple_of(8));
        p
    }

    #[test]
    fn rewrites_match_checksums_recomputed_from_scratch() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        for round in 0..20_000 {
            let orig = random_packet(&mut r);
            let ihl = usize::from(orig[0] & 0x0f) * 4;
            let no_udp_csum = orig[9] == PROTO_UDP && orig[ihl + 6..ihl + 8] == [0, 0];
            let (addr, port) = (r.next() as u32, r.next() as u16);
            let snat = round % 2 == 0;
            let mut got = orig.clone();
            if snat {
                snat_rewrite(&mut got, addr, port);
            } else {
                dnat_rewrite(&mut got, addr, port);
            }
            let mut want = orig.clone();
            let at = if snat { 12 } else { 16 };
            want[at..at + 4].copy_from_slice(&addr.to_be_bytes());
            let port_at = match orig[9] {
                PROTO_ICMP => ihl + 4,
                _ if snat => ihl,
                _ => ihl + 2,
            };
            want[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
            finish(&mut want, !no_udp_csum);
            assert_eq!(got, want, "round {round}: {orig:02x?}");
        }
    }

    #[test]
    fn udp_checksum_zero_stays_zero_and_fragments_keep_their_payload() {
        let mut r = Rng(77);
        let mut p = random_packet(&mut r);
        while p[9] != PROTO_UDP {
            p = random_packet(&mut r);
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        p[ihl + 6..ihl + 8].fill(0);
        snat_rewrite(&mut p, NODE, 40000);
        assert_eq!(p[ihl + 6..ihl + 8], [0, 0]);
        assert_eq!(p[ihl..ihl + 2], 40000u16.to_be_bytes());
        // a non-first fragment has no transport header to touch
        let mut f = p.clone();
        f[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        crate::testing::fill_header_checksum(&mut f);
        let before = f.clone();
        snat_rewrite(&mut f, POD_A, 1);
        assert_eq!(f[ihl..], before[ihl..]);
        assert_eq!(f[12..16], POD_A.to_be_bytes());
        assert_eq!(crate::testing::checksum(&[&f[..ihl]]), 0);
        // short and bogus buffers are left alone without panicking
        for len in 0..40 {
            let mut b = p[..len.min(p.len())].to_vec();
            snat_rewrite(&mut b, 1, 2);
            dnat_rewrite(&mut b, 1, 2);
            icmp_error_rewrite(&mut b, 1, 2);
        }
    }

    /// Found by fuzzing (pipeline_uplink): the reply to a ping of id 0,
    /// sequence 0 and zero data, translated back to id 0, is a message of
    /// zeros only, whose checksum is all ones; RFC 1624's update gives the
    /// other zero, which receivers refuse.
    #[test]
    fn an_echo_reply_translated_to_zeros_only_keeps_a_valid_checksum() {
        // from 1.0.0.2 to the node, id 32768 (its natOutgoing port), 5 bytes of zeros
        let mut p: Vec<u8> = vec![
            0x45, 0, 0, 33, 0x12, 0x74, 0x40, 0, 64, 1, 0, 0, 1, 0, 0, 2, 192, 168, 50, 1, //
            0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        crate::testing::fill_checksums(&mut p);
        assert!(crate::testing::checksums_hold(&p));
        dnat_rewrite(&mut p, 0x0af4_0002, 0);
        assert_eq!(p[20..], [0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(crate::testing::checksums_hold(&p));
    }

    /// An ICMP error from `from` to `to` quoting the first `quote` bytes
    /// after the header of `orig`.
    fn icmp_error(from: u32, to: u32, t: u8, code: u8, orig: &[u8], quote: usize) -> Vec<u8> {
        let ihl = usize::from(orig[0] & 0x0f) * 4;
        let q = &orig[..(ihl + quote).min(orig.len())];
        let total = 20 + 8 + q.len();
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 64, PROTO_ICMP, 0, 0]);
        p.extend_from_slice(&from.to_be_bytes());
        p.extend_from_slice(&to.to_be_bytes());
        p.extend_from_slice(&[t, code, 0, 0, 0, 0, 0x05, 0xdc]);
        p.extend_from_slice(q);
        finish(&mut p, true);
        p
    }

    #[test]
    fn icmp_errors_about_translated_flows_reach_the_pod_intact() {
        let mut r = Rng(0xfeed_f00d);
        let mut n = table();
        let mut done = [0usize; 3];
        for round in 0..3000 {
            let mut pkt = random_packet(&mut r);
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            if pkt[9] == PROTO_ICMP {
                pkt[ihl] = ICMP_ECHO;
                finish(&mut pkt, true);
            }
            pkt[12..16].copy_from_slice(&POD_A.to_be_bytes());
            let udp_csum = pkt[9] != PROTO_UDP || pkt[ihl + 6..ihl + 8] != [0, 0];
            finish(&mut pkt, udp_csum);
            let orig = pkt.clone();
            let f = Flow::parse(&pkt);
            let port = n.outbound(&f, NODE, 0).unwrap();
            snat_rewrite(&mut pkt, NODE, port);
            // errors quote 8 bytes (RFC 792) or more (RFC 1812), from the
            // destination or from a router on the way
            let quote = [8usize, 28, 576][round % 3];
            let from = if round % 2 == 0 { f.dst } else { 0x0101_0101 };
            let t = if round % 5 == 0 {
                ICMP_TIME_EXCEEDED
            } else {
                ICMP_UNREACHABLE
            };
            let mut err = icmp_error(from, NODE, t, 3, &pkt, quote);
            let ef = Flow::parse(&err);
            assert_eq!(ef.quoted.map(|q| (q.src, q.sport)), Some((NODE, port)));
            assert_eq!(
                n.inbound_icmp_error(&ef, &mut err, 1),
                Some((POD_A, f.sport)),
                "round {round}"
            );
            // the pod sees the error it would have seen without translation
            let want = icmp_error(from, POD_A, t, 3, &orig, quote);
            assert_eq!(err, want, "round {round}");
            done[usize::from(orig[9] == PROTO_UDP) + 2 * usize::from(orig[9] == PROTO_ICMP)] += 1;
        }
        assert!(done.iter().all(|&d| d > 500), "{done:?}");
    }

    #[test]
    fn icmp_errors_about_other_flows_are_not_translated() {
        let mut n = table();
        let f = udp(POD_A, 5000, DNS, 53);
        let port = n.outbound(&f, NODE, 0).unwrap();
        let err = Flow {
            src: DNS,
            dst: NODE,
            proto: PROTO_ICMP,
            icmp_type: ICMP_UNREACHABLE,
            icmp_code: 3,
            quoted: Some(QuotedFlow {
                src: NODE,
                dst: DNS,
                proto: PROTO_UDP,
                sport: port,
                dport: 53,
            }),
            ..Flow::default()
        };
        let mut junk = vec![0u8; 8];
        // the flow matches, but the packet is no ICMP error: untouched
        assert_eq!(n.inbound_icmp_error(&err, &mut junk, 0), None);
        assert_eq!(junk, [0; 8]);
        let q = err.quoted.unwrap();
        let others = [
            QuotedFlow { dport: 54, ..q },
            QuotedFlow { dst: WEB, ..q },
            QuotedFlow { src: NODE + 1, ..q },
            QuotedFlow {
                sport: port ^ 1,
                ..q
            },
            QuotedFlow {
                proto: PROTO_TCP,
                ..q
            },
        ];
        for o in others {
            let e = Flow {
                quoted: Some(o),
                ..err
            };
            let mut b = vec![0u8; 64];
            assert_eq!(n.inbound_icmp_error(&e, &mut b, 0), None, "{o:?}");
        }
        assert_eq!(
            n.inbound_icmp_error(
                &Flow {
                    quoted: None,
                    ..err
                },
                &mut junk,
                0
            ),
            None
        );
        // an expired flow's errors are not let in either
        let mut b = vec![0u8; 64];
        assert_eq!(n.inbound_icmp_error(&err, &mut b, 31), None);
    }
}

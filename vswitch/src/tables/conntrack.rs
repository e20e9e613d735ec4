//! Connection tracking, one table per worker.
//!
//! A worker tracks the connections of the pod ports it owns, each port a
//! zone of its own: the sender's zone when a packet leaves a pod, the
//! receiver's zone when it is delivered. Both directions of a connection
//! pass through the same zone on the same worker (a port has one owner), so
//! a table is read and written by one thread only: no lock and no atomic on
//! the per-packet path. A connection between pods on two workers is tracked
//! once in each worker's table, each with its own view of the same
//! handshake; a connection between two pods of one worker has two entries,
//! one per zone.
//!
//! The table is a fixed array of 8-way buckets under a seeded hash: its size
//! is its bound. When a bucket is full, a new connection takes the slot of
//! an expired entry, else drops one early as Linux does (`early_drop`):
//! a closed connection, else one that is closing or was never answered,
//! the pod's own before another pod's, the longest idle first. An
//! established connection (a TCP handshake done, UDP answered) is never
//! given up: with nothing else in the bucket the new connection is refused
//! and its packet dropped. So a flood of new flows, however large, costs
//! other pods at most their own unanswered attempts.
//!
//! A TCP connection whose beginning the table never saw (the switch
//! restarted, or its entry expired) is picked up from a bare ACK in
//! mid-stream, as Linux does with `nf_conntrack_tcp_loose=1`: the ACK is
//! judged like a SYN and recorded as [`State::PickedUp`]. Until the other
//! side answers, that entry lives as long as Linux's unacknowledged timeout
//! and may be dropped early like an unanswered SYN, so a flood of ACKs
//! costs no more than a flood of SYNs; the answer makes it established.
//!
//! Each zone may hold at most a share of the table ([`Conntrack::set_share`]):
//! past it, a new connection of that zone may only take the place of one of
//! its own (expired, closing or unanswered), or is refused. A pod cannot
//! fill the table with connections it completes itself. The share counts
//! entries until their slot is reclaimed, by reuse or by
//! [`Conntrack::sweep`]; each new connection sweeps one bucket, and the
//! worker sweeps more when idle.

use crate::wire::ipv4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use std::hash::{BuildHasher, Hasher};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_UNREACHABLE: u8 = 3;
const ICMP_ECHO: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// The facts of one IPv4 packet that tracking and policy look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    /// Addresses, host order.
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    /// Ports for TCP, UDP and SCTP; the echo id in both for ICMP echo.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags (TCP only).
    pub tcp_flags: u8,
    /// ICMP type and code (ICMP only).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// For an ICMP error: the flow of the packet it quotes, seen from the
    /// side that sent that packet.
    pub quoted: Option<QuotedFlow>,
}

/// The 5-tuple of the packet an ICMP error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotedFlow {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Flow {
    /// Reads the flow of an IPv4 packet whose header the caller has checked
    /// (version, IHL and total length within `ip`). A missing or truncated
    /// transport header leaves ports and flags zero; a non-first fragment
    /// carries none.
    pub fn parse(ip: &[u8]) -> Flow {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let mut f = Flow {
            src: u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
            dst: u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
            proto: ip[9],
            ..Flow::default()
        };
        let frag_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
        if frag_offset != 0 {
            return f;
        }
        let l4 = ip.get(ihl..total).unwrap_or(&[]);
        match f.proto {
            PROTO_TCP => {
                if let Some(h) = l4.get(..14) {
                    f.sport = u16::from_be_bytes([h[0], h[1]]);
                    f.dport = u16::from_be_bytes([h[2], h[3]]);
                    f.tcp_flags = h[13];
                }
            }
            PROTO_UDP | PROTO_SCTP => {
                if let Some(h) = l4.get(..4) {
                    f.sport = u16::from_be_bytes([h[0], h[1]]);
                    f.dport = u16::from_be_bytes([h[2], h[3]]);
                }
            }
            PROTO_ICMP => {
                if let Some(h) = l4.get(..8) {
                    f.icmp_type = h[0];
                    f.icmp_code = h[1];
                    match h[0] {
                        ICMP_ECHO | ICMP_ECHO_REPLY => {
                            let id = u16::from_be_bytes([h[4], h[5]]);
                            f.sport = id;
                            f.dport = id;
                        }
                        ICMP_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM => {
                            f.quoted = quoted(&l4[8..]);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        f
    }

    /// The facts policy rules match on.
    pub fn policy_packet(&self) -> policy::Packet {
        let (sport, dport) = if self.proto == PROTO_ICMP {
            (
                0,
                u16::from(self.icmp_type) << 8 | u16::from(self.icmp_code),
            )
        } else {
            (self.sport, self.dport)
        };
        policy::Packet {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            sport,
            dport,
        }
    }
}

/// The header an ICMP error quotes: its IP header and 8 bytes after it.
fn quoted(q: &[u8]) -> Option<QuotedFlow> {
    let h = q.get(..20)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let l4 = q.get(ihl..ihl + 4)?;
    let proto = h[9];
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        ),
        PROTO_ICMP => {
            let id = q.get(ihl + 4..ihl + 6)?;
            let id = u16::from_be_bytes([id[0], id[1]]);
            (id, id)
        }
        _ => (0, 0),
    };
    Some(QuotedFlow {
        src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
        dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
        proto,
        sport,
        dport,
    })
}

/// Connection states. TCP follows the handshake; the others have two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum State {
    #[default]
    Free,
    SynSent,
    SynRecv,
    Established,
    /// Picked up from a segment in mid-stream, the other side not heard
    /// yet (Linux: ESTABLISHED without SEEN_REPLY); its first answer makes
    /// it [`State::Established`].
    PickedUp,
    /// One side has sent its FIN.
    FinWait,
    /// Both sides have sent their FIN.
    TimeWait,
    /// Reset.
    Close,
    /// UDP, SCTP, ICMP and others before a reply.
    Unreplied,
    /// ... and after one.
    Replied,
}

impl State {
    /// Every state a connection may be in (not [`State::Free`]).
    pub const ALL: [State; 9] = [
        State::SynSent,
        State::SynRecv,
        State::Established,
        State::PickedUp,
        State::FinWait,
        State::TimeWait,
        State::Close,
        State::Unreplied,
        State::Replied,
    ];

    /// The state of a name as [`State::name`] gives it.
    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Free => "free",
            State::SynSent => "syn_sent",
            State::SynRecv => "syn_recv",
            State::Established => "established",
            State::PickedUp => "picked_up",
            State::FinWait => "fin_wait",
            State::TimeWait => "time_wait",
            State::Close => "close",
            State::Unreplied => "unreplied",
            State::Replied => "replied",
        }
    }

    fn closed(self) -> bool {
        matches!(self, State::TimeWait | State::Close)
    }

    /// What may be dropped early to make room: never answered, or closing
    /// (Linux's `tcp_can_early_drop` also gives up FIN_WAIT). A connection
    /// picked up mid-stream is not ASSURED in Linux until answered, and
    /// early drop takes only those that are not.
    fn expendable(self) -> bool {
        matches!(
            self,
            State::SynSent | State::SynRecv | State::PickedUp | State::Unreplied | State::FinWait
        )
    }
}

/// Seconds a connection lives without traffic, per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn: u32,
    pub tcp_established: u32,
    /// A connection picked up mid-stream until its other side answers.
    pub tcp_unacknowledged: u32,
    pub tcp_fin: u32,
    pub tcp_close: u32,
    pub udp_unreplied: u32,
    pub udp_replied: u32,
    pub icmp: u32,
    pub other: u32,
}

impl Default for Timeouts {
    /// Linux's conntrack defaults (nf_conntrack_*_timeout*), which is what a
    /// Calico node enforces.
    fn default() -> Self {
        Timeouts {
            tcp_syn: 120,
            tcp_established: 432_000,
            tcp_unacknowledged: 300,
            tcp_fin: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_replied: 120,
            icmp: 30,
            other: 600,
        }
    }
}

impl Timeouts {
    /// How long a connection of `proto` in state `s` lives without traffic.
    pub fn of(&self, proto: u8, s: State) -> u32 {
        match s {
            State::SynSent | State::SynRecv => self.tcp_syn,
            State::Established => self.tcp_established,
            // Linux caps a picked-up connection's timeout at this until it
            // sees a reply: a pickup of a stray ACK does not hold its slot
            // for five days
            State::PickedUp => self.tcp_unacknowledged,
            State::FinWait | State::TimeWait => self.tcp_fin,
            State::Close => self.tcp_close,
            State::Unreplied | State::Replied if proto == PROTO_ICMP => self.icmp,
            State::Unreplied if proto == PROTO_UDP => self.udp_unreplied,
            State::Replied if proto == PROTO_UDP => self.udp_replied,
            _ => self.other,
        }
    }
}

/// A connection as the table keeps it: the lower (address, port) end first,
/// so that both directions find it with one hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
struct Entry {
    lo_ip: u32,
    hi_ip: u32,
    lo_port: u16,
    hi_port: u16,
    zone: u16,
    proto: u8,
    /// The originator is the lower end.
    orig_lo: bool,
    state: State,
    /// FIN seen from the originator (bit 0) and the replier (bit 1).
    fins: u8,
    /// Seconds: last packet, and when the entry expires.
    last: u32,
    deadline: u32,
}

impl Entry {
    #[inline(always)]
    fn same(&self, k: &Key) -> bool {
        self.lo_ip == k.lo_ip
            && self.hi_ip == k.hi_ip
            && self.lo_port == k.lo_port
            && self.hi_port == k.hi_port
            && self.zone == k.zone
            && self.proto == k.proto
    }
}

#[derive(Debug, Clone, Copy)]
struct Key {
    lo_ip: u32,
    hi_ip: u32,
    lo_port: u16,
    hi_port: u16,
    zone: u16,
    proto: u8,
    /// The packet goes from the lower end to the higher.
    from_lo: bool,
}

impl Key {
    #[inline(always)]
    fn new(zone: u16, proto: u8, src: u32, sport: u16, dst: u32, dport: u16) -> Key {
        let from_lo = (src, sport) <= (dst, dport);
        let (lo_ip, lo_port, hi_ip, hi_port) = if from_lo {
            (src, sport, dst, dport)
        } else {
            (dst, dport, src, sport)
        };
        Key {
            lo_ip,
            hi_ip,
            lo_port,
            hi_port,
            zone,
            proto,
            from_lo,
        }
    }
}

const WAYS: usize = 8;

/// Tags first, so that a lookup usually touches one cache line of tags and
/// one of entries.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    /// Hash bits of each slot's key; 0 marks a free slot.
    tags: [u32; WAYS],
    entries: [Entry; WAYS],
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            tags: [0; WAYS],
            entries: [Entry::default(); WAYS],
        }
    }
}

/// What the table says about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// Part of a known connection; `reply` when it goes against the
    /// originator's direction.
    Known { reply: bool },
    /// An ICMP error about a known connection.
    Related,
    /// No connection: policy decides, then [`Conntrack::create`] records it.
    New,
    /// Not acceptable in the connection's state (e.g. a SYN-ACK nobody asked
    /// for, or a segment other than a SYN that opens nothing).
    Invalid,
}

/// What a worker's table counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CtStats {
    pub created: u64,
    /// Closed, closing or unanswered connections dropped early for room.
    pub evicted: u64,
    /// Reused or swept after their timeout.
    pub expired: u64,
    /// New connections refused: no room but established connections'.
    pub refused_full: u64,
    /// New connections refused: their zone holds its share.
    pub refused_share: u64,
    /// Of those created, TCP connections picked up mid-stream.
    pub picked_up: u64,
}

/// How a TCP segment that belongs to no connection may begin one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpBegin {
    /// A SYN (without ACK, RST or FIN): the connection opens.
    Syn,
    /// A bare ACK: a connection whose beginning was missed, picked up.
    MidStream,
    /// Anything else begins nothing.
    Nothing,
}

/// Linux's rule: `tcp_error` refuses flag sets no TCP sends (a SYN with a
/// FIN or a RST, a FIN without ACK, none of SYN, RST and ACK), and
/// `tcp_new` with `nf_conntrack_tcp_loose=1` begins a connection only where
/// `tcp_conntracks[ORIGINAL][index][sNO]` is not sIV: from a SYN, or from an
/// ACK without SYN, FIN or RST. A RST, a SYN-ACK and a FIN-ACK are INVALID
/// (of a FIN, "too late and no reason to do anything"). PSH, URG, ECE and
/// CWR do not count.
#[inline(always)]
pub fn tcp_begin(flags: u8) -> TcpBegin {
    match flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) {
        TCP_SYN => TcpBegin::Syn,
        TCP_ACK => TcpBegin::MidStream,
        _ => TcpBegin::Nothing,
    }
}

/// What [`Conntrack::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Recorded in room that was free (or its own earlier entry's).
    Fresh,
    /// Recorded in place of a connection dropped early.
    Evicted,
    /// Not recorded: its packet must be dropped.
    Refused,
}

/// Zones are 16-bit: a count for each, so that the share is exact.
const ZONES: usize = 1 << 16;

/// The share of the table one zone may hold unless told otherwise, in
/// percent.
pub const DEFAULT_ZONE_SHARE: u32 = 50;

/// One worker's connections.
pub struct Conntrack {
    buckets: Box<[Bucket]>,
    mask: usize,
    seed: u64,
    pub timeouts: Timeouts,
    pub stats: CtStats,
    /// The slot of the last lookup that found or made an entry.
    last: (usize, usize),
    /// Slots each zone holds, expired ones not yet reclaimed included.
    held: Box<[u32]>,
    /// The most slots one zone may hold.
    share: u32,
    sweep_cursor: usize,
}

impl Conntrack {
    /// A table for at most `capacity` connections (rounded down to whole
    /// buckets, a power of two of them; one bucket at least).
    pub fn new(capacity: usize, timeouts: Timeouts) -> Conntrack {
        let want = (capacity / WAYS).max(1);
        let buckets = if want.is_power_of_two() {
            want
        } else {
            want.next_power_of_two() / 2
        };
        // a per-table seed: a peer cannot aim a flood at one bucket
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut ct = Conntrack {
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            mask: buckets - 1,
            seed: seed | 1,
            timeouts,
            stats: CtStats::default(),
            last: (0, 0),
            held: vec![0; ZONES].into_boxed_slice(),
            share: 0,
            sweep_cursor: 0,
        };
        ct.set_share(DEFAULT_ZONE_SHARE);
        ct
    }

    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Lets one zone hold at most `percent` of the table (1 to 100).
    pub fn set_share(&mut self, percent: u32) {
        let cap = self.capacity() as u64;
        let n = cap * u64::from(percent.clamp(1, 100)) / 100;
        self.share = n.clamp(1, cap) as u32;
    }

    /// The most connections one zone may hold.
    pub fn share(&self) -> usize {
        self.share as usize
    }

    /// Slots `zone` holds (expired ones not yet reclaimed included).
    pub fn held(&self, zone: u16) -> usize {
        self.held[usize::from(zone)] as usize
    }

    #[inline(always)]
    fn hash(&self, k: &Key) -> u64 {
        let a = (u64::from(k.lo_ip) << 32 | u64::from(k.hi_ip)) ^ self.seed;
        let b = u64::from(k.lo_port) << 32
            | u64::from(k.hi_port) << 16
            | u64::from(k.zone)
            | u64::from(k.proto) << 48;
        let x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b;
        // the ports sit in the high half: fold them down before the
        // multiply, or the bucket bits would see few of them and a flood
        // from one address on many ports would fill few buckets
        let h = (x ^ x >> 32).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ h >> 29
    }

    #[inline(always)]
    fn find(&self, k: &Key, now: u32) -> Option<(usize, usize)> {
        let h = self.hash(k);
        let bi = (h as usize) & self.mask;
        let tag = (h >> 32) as u32 | 1;
        let b = &self.buckets[bi];
        for (i, &t) in b.tags.iter().enumerate() {
            if t == tag {
                let e = &b.entries[i];
                if e.same(k) && now <= e.deadline {
                    return Some((bi, i));
                }
            }
        }
        None
    }

    /// Looks `flow` up in `zone` and advances the connection's state.
    #[inline]
    pub fn track(&mut self, zone: u16, flow: &Flow, now: u32) -> Track {
        if let Some(q) = &flow.quoted {
            // the quoted packet went the other way: from this error's
            // destination to its source
            let k = Key::new(zone, q.proto, q.src, q.sport, q.dst, q.dport);
            return match self.find(&k, now) {
                Some(_) => Track::Related,
                None => Track::New,
            };
        }
        let k = Key::new(zone, flow.proto, flow.src, flow.sport, flow.dst, flow.dport);
        let Some((bi, i)) = self.find(&k, now) else {
            return Track::New;
        };
        self.last = (bi, i);
        let t = self.timeouts;
        let e = &mut self.buckets[bi].entries[i];
        let reply = k.from_lo != e.orig_lo;
        // an echo entry answers echo replies only, and the originator sends
        // requests only: anything else of ICMP between the two is judged anew
        if e.proto == PROTO_ICMP
            && flow.icmp_type != if reply { ICMP_ECHO_REPLY } else { ICMP_ECHO }
        {
            return Track::New;
        }
        let next = match e.proto {
            PROTO_TCP => match tcp_next(e.state, e.fins, flow.tcp_flags, reply) {
                Step::To(s, fins) => {
                    e.fins = fins;
                    s
                }
                Step::Reopen => return Track::New,
                Step::Invalid => return Track::Invalid,
            },
            _ if reply => State::Replied,
            _ => e.state,
        };
        e.state = next;
        e.last = now;
        e.deadline = now.saturating_add(t.of(e.proto, next));
        Track::Known { reply }
    }

    /// Whether `flow`'s first packet opens something to remember: all but
    /// ICMP other than an echo request (errors are related to what they
    /// quote; other ICMP is judged packet by packet).
    pub fn opens(flow: &Flow) -> bool {
        flow.quoted.is_none() && (flow.proto != PROTO_ICMP || flow.icmp_type == ICMP_ECHO)
    }

    /// Records a new connection that policy allowed, `flow` its first
    /// packet, in the room the module documentation describes; a
    /// [`Created::Refused`] connection is not recorded. A TCP segment other
    /// than a SYN is taken for a mid-stream pickup: whether one may begin
    /// a connection at all is for the caller to ask [`tcp_begin`].
    pub fn create(&mut self, zone: u16, flow: &Flow, now: u32) -> Created {
        let state = match flow.proto {
            PROTO_TCP if tcp_begin(flow.tcp_flags) == TcpBegin::Syn => State::SynSent,
            PROTO_TCP => State::PickedUp,
            _ => State::Unreplied,
        };
        // pays for the reclaiming of slots that expired unseen
        self.sweep(now, 1);
        let k = Key::new(zone, flow.proto, flow.src, flow.sport, flow.dst, flow.dport);
        let h = self.hash(&k);
        let bi = (h as usize) & self.mask;
        let tag = (h >> 32) as u32 | 1;
        let over = self.held[usize::from(zone)] >= self.share;
        let b = &self.buckets[bi];
        // ranks: the same connection (a reopened port), a free or expired
        // slot, a closed connection, one of this zone's that is closing or
        // unanswered, another zone's such; the longest idle of a rank first
        let mut victim = None;
        let mut rank = (u8::MAX, u32::MAX);
        for i in 0..WAYS {
            let e = &b.entries[i];
            let free = b.tags[i] == 0;
            let own = !free && e.zone == zone;
            let r = if !free && b.tags[i] == tag && e.same(&k) {
                (0, 0)
            } else if free || now > e.deadline {
                (1, 0)
            } else if e.state.closed() {
                (2, e.last)
            } else if e.state.expendable() {
                (if own { 3 } else { 4 }, e.last)
            } else {
                continue;
            };
            // over its share, a zone only takes its own room
            if over && !own {
                continue;
            }
            if r < rank {
                rank = r;
                victim = Some(i);
            }
        }
        let Some(victim) = victim else {
            if over {
                self.stats.refused_share += 1;
            } else {
                self.stats.refused_full += 1;
            }
            return Created::Refused;
        };
        let b = &mut self.buckets[bi];
        let evicted = rank.0 >= 2;
        if b.tags[victim] != 0 {
            let old = usize::from(b.entries[victim].zone);
            self.held[old] = self.held[old].saturating_sub(1);
            if evicted {
                self.stats.evicted += 1;
            } else if rank.0 == 1 {
                self.stats.expired += 1;
            }
        }
        self.held[usize::from(zone)] += 1;
        b.tags[victim] = tag;
        b.entries[victim] = Entry {
            lo_ip: k.lo_ip,
            hi_ip: k.hi_ip,
            lo_port: k.lo_port,
            hi_port: k.hi_port,
            zone,
            proto: flow.proto,
            orig_lo: k.from_lo,
            state,
            fins: 0,
            last: now,
            deadline: now.saturating_add(self.timeouts.of(flow.proto, state)),
        };
        self.last = (bi, victim);
        self.stats.created += 1;
        if state == State::PickedUp {
            self.stats.picked_up += 1;
        }
        if evicted {
            Created::Evicted
        } else {
            Created::Fresh
        }
    }

    /// Frees the expired entries of the next `buckets` buckets, so that
    /// their zones' shares count live connections; returns how many.
    pub fn sweep(&mut self, now: u32, buckets: usize) -> usize {
        let mut freed = 0;
        for _ in 0..buckets.min(self.buckets.len()) {
            let bi = self.sweep_cursor;
            self.sweep_cursor = (bi + 1) & self.mask;
            let b = &mut self.buckets[bi];
            for i in 0..WAYS {
                if b.tags[i] != 0 && now > b.entries[i].deadline {
                    b.tags[i] = 0;
                    let z = usize::from(b.entries[i].zone);
                    self.held[z] = self.held[z].saturating_sub(1);
                    freed += 1;
                }
            }
        }
        self.stats.expired += freed as u64;
        freed
    }

    /// Live connections (a full scan, for the control thread's reports).
    pub fn live(&self, now: u32) -> usize {
        self.buckets
            .iter()
            .map(|b| {
                (0..WAYS)
                    .filter(|&i| b.tags[i] != 0 && now <= b.entries[i].deadline)
                    .count()
            })
            .sum()
    }

    /// The state of the connection `flow` belongs to in `zone`, if any.
    pub fn state_of(&self, zone: u16, flow: &Flow, now: u32) -> Option<State> {
        let k = Key::new(zone, flow.proto, flow.src, flow.sport, flow.dst, flow.dport);
        self.find(&k, now)
            .map(|(bi, i)| self.buckets[bi].entries[i].state)
    }

    /// Forgets every connection.
    pub fn flush(&mut self) {
        self.buckets.fill(Bucket::default());
        self.held.fill(0);
    }

    /// Forgets the connections of `zone`; returns how many were live.
    pub fn flush_zone(&mut self, zone: u16, now: u32) -> usize {
        let mut n = 0;
        for b in self.buckets.iter_mut() {
            for i in 0..WAYS {
                let e = &b.entries[i];
                if b.tags[i] != 0 && e.zone == zone {
                    n += usize::from(now <= e.deadline);
                    b.tags[i] = 0;
                }
            }
        }
        self.held[usize::from(zone)] = 0;
        n
    }

    /// Live connections (of `zone` and in `state` when given): how many,
    /// and the first `max` of them in `out` (a full scan, for reports).
    pub fn connections(
        &self,
        now: u32,
        zone: Option<u16>,
        state: Option<State>,
        max: usize,
        out: &mut Vec<Connection>,
    ) -> usize {
        let mut n = 0;
        for b in self.buckets.iter() {
            for i in 0..WAYS {
                let e = &b.entries[i];
                if b.tags[i] == 0
                    || now > e.deadline
                    || zone.is_some_and(|z| z != e.zone)
                    || state.is_some_and(|s| s != e.state)
                {
                    continue;
                }
                n += 1;
                if out.len() < max {
                    let (src, sport, dst, dport) = if e.orig_lo {
                        (e.lo_ip, e.lo_port, e.hi_ip, e.hi_port)
                    } else {
                        (e.hi_ip, e.hi_port, e.lo_ip, e.lo_port)
                    };
                    out.push(Connection {
                        zone: e.zone,
                        proto: e.proto,
                        src,
                        sport,
                        dst,
                        dport,
                        state: e.state,
                        idle: now.saturating_sub(e.last),
                        expires: e.deadline - now,
                    });
                }
            }
        }
        n
    }
}

/// A connection as reports show it: from its originator's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub zone: u16,
    pub proto: u8,
    /// Host order; for ICMP the ports are the echo id and 0.
    pub src: u32,
    pub sport: u16,
    pub dst: u32,
    pub dport: u16,
    pub state: State,
    /// Seconds since its last packet.
    pub idle: u32,
    /// Seconds left without traffic.
    pub expires: u32,
}

enum Step {
    To(State, u8),
    /// A new SYN on a port pair whose connection is over.
    Reopen,
    Invalid,
}

/// The TCP state machine, without sequence-window checks: enough to tell a
/// connection's return traffic from a segment that opens nothing.
fn tcp_next(s: State, fins: u8, flags: u8, reply: bool) -> Step {
    let syn = flags & TCP_SYN != 0;
    let ack = flags & TCP_ACK != 0;
    if flags & TCP_RST != 0 {
        return Step::To(State::Close, fins);
    }
    let fins = if flags & TCP_FIN != 0 {
        fins | if reply { 2 } else { 1 }
    } else {
        fins
    };
    match s {
        State::SynSent => match (reply, syn, ack) {
            (false, true, false) => Step::To(State::SynSent, fins), // retransmitted SYN
            (true, true, true) => Step::To(State::SynRecv, fins),
            _ => Step::Invalid,
        },
        State::SynRecv => match (reply, syn, ack) {
            // retransmitted SYN-ACK, or a SYN again when the SYN-ACK was lost
            // on the way: known, nothing changes (Linux's "ignore")
            (true, true, true) | (false, true, false) => Step::To(State::SynRecv, fins),
            (false, false, true) if fins == 0 => Step::To(State::Established, fins),
            (false, false, _) if fins != 0 => Step::To(State::FinWait, fins),
            (false, false, _) => Step::To(State::SynRecv, fins),
            _ => Step::Invalid,
        },
        State::Established | State::PickedUp | State::FinWait => {
            // a client that lost its side may SYN again on the same ports,
            // and a SYN-ACK may be retransmitted late: let them through, as
            // Linux does; the answer (a RST or a challenge ACK) settles it
            if syn && ack == reply {
                return Step::To(s, fins);
            }
            if syn {
                return Step::Invalid;
            }
            match fins {
                // the picker's own segments prove nothing: only an answer
                // makes a picked-up connection one to keep
                0 if s == State::PickedUp && !reply => Step::To(State::PickedUp, fins),
                0 => Step::To(State::Established, fins),
                3 => Step::To(State::TimeWait, fins),
                _ => Step::To(State::FinWait, fins),
            }
        }
        State::TimeWait | State::Close => {
            if syn && !ack && !reply {
                Step::Reopen
            } else if syn {
                Step::Invalid
            } else {
                // late retransmissions and the last ACK
                Step::To(s, fins)
            }
        }
        // an entry made by create() for a protocol that then changed is
        // impossible (the protocol is part of the key)
        State::Free | State::Unreplied | State::Replied => Step::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = 0x0a41_0001;
    const B: u32 = 0x0a41_0002;

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

    fn table() -> Conntrack {
        Conntrack::new(1024, Timeouts::default())
    }

    #[test]
    fn reports_list_from_the_originator_and_flush_one_zone() {
        let mut ct = table();
        // B (the higher address) opens: listed from B's side all the same
        let syn = tcp(B, 40000, A, 80, TCP_SYN);
        ct.create(1, &syn, 10);
        ct.create(2, &udp(A, 53000, B, 53), 10);
        ct.create(2, &udp(A, 53001, B, 53), 12);
        let mut out = Vec::new();
        assert_eq!(ct.connections(13, None, None, 10, &mut out), 3);
        out.clear();
        assert_eq!(ct.connections(13, Some(1), None, 10, &mut out), 1);
        let c = out[0];
        assert_eq!(
            (c.src, c.sport, c.dst, c.dport, c.zone, c.state),
            (B, 40000, A, 80, 1, State::SynSent)
        );
        assert_eq!((c.idle, c.expires), (3, Timeouts::default().tcp_syn - 3));
        out.clear();
        let n = ct.connections(13, None, Some(State::Unreplied), 1, &mut out);
        assert_eq!((n, out.len()), (2, 1), "all counted, one listed");
        out.clear();
        assert_eq!(
            ct.connections(13, None, Some(State::Established), 10, &mut out),
            0
        );
        // the expired are not listed
        out.clear();
        let late = 12 + Timeouts::default().udp_unreplied;
        assert_eq!(ct.connections(late, Some(2), None, 10, &mut out), 1);
        assert_eq!(ct.flush_zone(2, 13), 2);
        assert_eq!(ct.held(2), 0);
        out.clear();
        assert_eq!(
            ct.connections(13, None, None, 10, &mut out),
            1,
            "zone 1 stays"
        );
        assert_eq!(ct.track(2, &udp(A, 53000, B, 53), 13), Track::New);
        assert_eq!(State::from_name("time_wait"), Some(State::TimeWait));
        assert_eq!(State::from_name("free"), None);
    }

    #[test]
    fn tcp_handshake_data_and_close() {
        let mut ct = table();
        let syn = tcp(A, 40000, B, 80, TCP_SYN);
        assert_eq!(ct.track(1, &syn, 0), Track::New);
        ct.create(1, &syn, 0);
        assert_eq!(ct.state_of(1, &syn, 0), Some(State::SynSent));
        let synack = tcp(B, 80, A, 40000, TCP_SYN | TCP_ACK);
        assert_eq!(ct.track(1, &synack, 0), Track::Known { reply: true });
        let ack = tcp(A, 40000, B, 80, TCP_ACK);
        assert_eq!(ct.track(1, &ack, 1), Track::Known { reply: false });
        assert_eq!(ct.state_of(1, &ack, 1), Some(State::Established));
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_ACK), 2),
            Track::Known { reply: true }
        );
        ct.track(1, &tcp(A, 40000, B, 80, TCP_FIN | TCP_ACK), 3);
        assert_eq!(ct.state_of(1, &ack, 3), Some(State::FinWait));
        ct.track(1, &tcp(B, 80, A, 40000, TCP_FIN | TCP_ACK), 3);
        assert_eq!(ct.state_of(1, &ack, 3), Some(State::TimeWait));
        // the last ACK still belongs to it
        assert_eq!(ct.track(1, &ack, 4), Track::Known { reply: false });
        // a new SYN on the same ports opens a new connection: policy again
        assert_eq!(ct.track(1, &syn, 5), Track::New);
        // and the closed one is gone after its timeout
        assert_eq!(ct.track(1, &ack, 4 + 121), Track::New);
    }

    #[test]
    fn segments_that_open_nothing_are_invalid_in_a_connection() {
        let mut ct = table();
        let syn = tcp(A, 40000, B, 80, TCP_SYN);
        ct.create(1, &syn, 0);
        // data before the handshake, from either side
        assert_eq!(
            ct.track(1, &tcp(A, 40000, B, 80, TCP_ACK), 0),
            Track::Invalid
        );
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_ACK), 0),
            Track::Invalid
        );
        // the originator cannot answer its own SYN
        assert_eq!(
            ct.track(1, &tcp(A, 40000, B, 80, TCP_SYN | TCP_ACK), 0),
            Track::Invalid
        );
        // a reset ends it from any state
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_RST | TCP_ACK), 0),
            Track::Known { reply: true }
        );
        assert_eq!(ct.state_of(1, &syn, 0), Some(State::Close));
    }

    #[test]
    fn syns_of_a_lost_handshake_or_a_restarted_client_pass() {
        let mut ct = table();
        let syn = tcp(A, 40000, B, 80, TCP_SYN);
        ct.create(1, &syn, 0);
        ct.track(1, &tcp(B, 80, A, 40000, TCP_SYN | TCP_ACK), 0);
        // the SYN-ACK was lost further on: the client sends its SYN again
        assert_eq!(ct.track(1, &syn, 1), Track::Known { reply: false });
        assert_eq!(ct.state_of(1, &syn, 1), Some(State::SynRecv));
        ct.track(1, &tcp(A, 40000, B, 80, TCP_ACK), 1);
        assert_eq!(ct.state_of(1, &syn, 1), Some(State::Established));
        // a client that restarted SYNs on the same ports; a late SYN-ACK
        assert_eq!(ct.track(1, &syn, 2), Track::Known { reply: false });
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_SYN | TCP_ACK), 2),
            Track::Known { reply: true }
        );
        // but the server cannot open from its side
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_SYN), 2),
            Track::Invalid
        );
        // and a bare segment in SYN_RECV is no FIN
        let mut ct = table();
        ct.create(1, &syn, 0);
        ct.track(1, &tcp(B, 80, A, 40000, TCP_SYN | TCP_ACK), 0);
        ct.track(1, &tcp(A, 40000, B, 80, 0), 0);
        assert_eq!(ct.state_of(1, &syn, 0), Some(State::SynRecv));
    }

    #[test]
    fn an_echo_entry_takes_replies_only() {
        let mut ct = table();
        let echo = |src, dst, t| Flow {
            src,
            dst,
            proto: PROTO_ICMP,
            sport: 7,
            dport: 7,
            icmp_type: t,
            ..Flow::default()
        };
        assert!(Conntrack::opens(&echo(A, B, ICMP_ECHO)));
        assert!(
            !Conntrack::opens(&echo(A, B, 13)),
            "a timestamp request is judged, not kept"
        );
        ct.create(1, &echo(A, B, ICMP_ECHO), 0);
        assert_eq!(
            ct.track(1, &echo(B, A, ICMP_ECHO_REPLY), 0),
            Track::Known { reply: true }
        );
        // B asking A with the same id is B's own request: policy decides
        assert_eq!(ct.track(1, &echo(B, A, ICMP_ECHO), 0), Track::New);
        assert_eq!(
            ct.track(1, &echo(A, B, ICMP_ECHO), 0),
            Track::Known { reply: false }
        );
    }

    #[test]
    fn zones_are_separate() {
        let mut ct = table();
        let f = udp(A, 5000, B, 53);
        ct.create(1, &f, 0);
        assert_eq!(ct.track(1, &f, 0), Track::Known { reply: false });
        assert_eq!(ct.track(2, &f, 0), Track::New);
        assert_eq!(
            ct.track(1, &udp(B, 53, A, 5000), 0),
            Track::Known { reply: true }
        );
        assert_eq!(ct.state_of(1, &f, 0), Some(State::Replied));
    }

    #[test]
    fn udp_times_out_by_state() {
        let mut ct = table();
        let f = udp(A, 5000, B, 53);
        ct.create(1, &f, 100);
        assert_eq!(ct.track(1, &f, 130), Track::Known { reply: false });
        assert_eq!(ct.track(1, &f, 161), Track::New, "30 s unreplied");
        ct.create(1, &f, 200);
        ct.track(1, &udp(B, 53, A, 5000), 200);
        assert_eq!(ct.track(1, &f, 319), Track::Known { reply: false });
        assert_eq!(ct.live(319), 1);
        assert_eq!(ct.live(319 + 121), 0, "120 s once answered, as Linux");
    }

    #[test]
    fn icmp_errors_are_related_to_the_flow_they_quote() {
        let mut ct = table();
        ct.create(1, &udp(A, 5000, B, 53), 0);
        let err = Flow {
            src: B,
            dst: A,
            proto: PROTO_ICMP,
            icmp_type: ICMP_UNREACHABLE,
            icmp_code: 3,
            quoted: Some(QuotedFlow {
                src: A,
                dst: B,
                proto: PROTO_UDP,
                sport: 5000,
                dport: 53,
            }),
            ..Flow::default()
        };
        assert_eq!(ct.track(1, &err, 0), Track::Related);
        let mut stray = err;
        stray.quoted = Some(QuotedFlow {
            sport: 5001,
            ..stray.quoted.unwrap_or_default()
        });
        assert_eq!(ct.track(1, &stray, 0), Track::New);
    }

    /// A one-bucket table: every key lands in the same bucket.
    fn one_bucket(share: u32) -> Conntrack {
        let mut ct = Conntrack::new(WAYS, Timeouts::default());
        ct.set_share(share);
        ct
    }

    fn establish(ct: &mut Conntrack, zone: u16, sport: u16, now: u32) {
        let syn = tcp(A, sport, B, 80, TCP_SYN);
        assert_ne!(ct.create(zone, &syn, now), Created::Refused);
        ct.track(zone, &tcp(B, 80, A, sport, TCP_SYN | TCP_ACK), now);
        ct.track(zone, &tcp(A, sport, B, 80, TCP_ACK), now);
        assert_eq!(
            ct.state_of(zone, &syn, now),
            Some(State::Established),
            "port {sport}"
        );
    }

    #[test]
    fn a_full_bucket_drops_closed_then_unanswered_and_counts_it() {
        let mut ct = one_bucket(100);
        for p in 0..WAYS as u16 {
            let f = tcp(A, 1000 + p, B, 80, TCP_SYN);
            assert_eq!(ct.create(1, &f, u32::from(p)), Created::Fresh);
        }
        // close one of them
        ct.track(1, &tcp(B, 80, A, 1005, TCP_RST), 10);
        let newcomer = tcp(A, 2000, B, 80, TCP_SYN);
        assert_eq!(ct.create(1, &newcomer, 11), Created::Evicted);
        assert_eq!(ct.stats.evicted, 1);
        assert_eq!(
            ct.state_of(1, &tcp(A, 1005, B, 80, 0), 11),
            None,
            "the closed one went"
        );
        assert_eq!(
            ct.state_of(1, &tcp(A, 1000, B, 80, 0), 11),
            Some(State::SynSent)
        );
        // next: the longest idle unanswered one (port 1000, last seen at 0)
        ct.create(1, &tcp(A, 2001, B, 80, TCP_SYN), 12);
        assert_eq!(ct.state_of(1, &tcp(A, 1000, B, 80, 0), 12), None);
        assert_eq!(
            ct.state_of(1, &tcp(A, 1001, B, 80, 0), 12),
            Some(State::SynSent)
        );
        assert_eq!(ct.stats.evicted, 2);
        assert_eq!(ct.live(12), WAYS);
    }

    #[test]
    fn a_flood_never_drops_another_zones_established_connections() {
        let mut ct = one_bucket(100);
        // zone 2 holds established connections, and one it is opening
        for p in 0..4 {
            establish(&mut ct, 2, 3000 + p, 0);
        }
        ct.create(2, &tcp(A, 3999, B, 80, TCP_SYN), 0);
        // zone 1 floods SYNs: it may take the free room, its own unanswered
        // entries, and zone 2's unanswered one, nothing else
        let mut refused = 0;
        for p in 0..1000u16 {
            if ct.create(1, &tcp(A, 10_000 + p, B, 80, TCP_SYN), 1) == Created::Refused {
                refused += 1;
            }
        }
        assert_eq!(refused, 0, "zone 1's own unanswered SYNs make room");
        for p in 0..4 {
            assert_eq!(
                ct.state_of(2, &tcp(A, 3000 + p, B, 80, 0), 1),
                Some(State::Established)
            );
        }
        assert_eq!(
            ct.state_of(2, &tcp(A, 3999, B, 80, 0), 1),
            Some(State::SynSent),
            "the flooder's own attempts go first"
        );
        // with none of its own, another zone's unanswered attempt may go,
        // as with Linux's early drop
        let mut ct = one_bucket(100);
        for p in 0..WAYS as u16 - 1 {
            establish(&mut ct, 2, 3000 + p, 0);
        }
        ct.create(2, &tcp(A, 3999, B, 80, TCP_SYN), 0);
        assert_eq!(
            ct.create(1, &tcp(A, 10_000, B, 80, TCP_SYN), 1),
            Created::Evicted
        );
        assert_eq!(ct.state_of(2, &tcp(A, 3999, B, 80, 0), 1), None);
        assert_eq!((ct.held(1), ct.held(2)), (1, WAYS - 1));
        // once the bucket holds only established connections, new ones are refused
        let mut ct = one_bucket(100);
        for p in 0..WAYS as u16 {
            establish(&mut ct, 2, 3000 + p, 0);
        }
        assert_eq!(
            ct.create(1, &tcp(A, 10_000, B, 80, TCP_SYN), 1),
            Created::Refused
        );
        assert_eq!(ct.stats.refused_full, 1);
        assert_eq!(ct.live(1), WAYS);
        // an answered UDP flow counts as established, an unanswered one not
        let mut ct = one_bucket(100);
        for p in 0..WAYS as u16 {
            let f = udp(A, 5000 + p, B, 53);
            ct.create(2, &f, 0);
            if p % 2 == 0 {
                ct.track(2, &udp(B, 53, A, 5000 + p), 0);
            }
        }
        for p in 0..WAYS as u16 {
            assert_ne!(
                ct.create(1, &tcp(A, 10_000 + p, B, 80, TCP_SYN), 1),
                Created::Refused
            );
        }
        let mut gone = 0;
        for p in 0..WAYS as u16 {
            let f = udp(A, 5000 + p, B, 53);
            match ct.state_of(2, &f, 1) {
                Some(st) => assert!(p % 2 == 1 || st == State::Replied),
                None => {
                    assert_eq!(p % 2, 1, "an answered flow went: port {p}");
                    gone += 1;
                }
            }
        }
        // one made room, then zone 1 took its own attempts' places
        assert_eq!(gone, 1);
    }

    #[test]
    fn a_zone_over_its_share_takes_only_its_own_room() {
        // a bucket of 8, a zone may hold half of it
        let mut ct = one_bucket(50);
        assert_eq!(ct.share(), WAYS / 2);
        for p in 0..4 {
            establish(&mut ct, 1, 1000 + p, 0);
        }
        assert_eq!(ct.held(1), 4);
        // zone 1 is at its share: free room is not for it
        let syn = tcp(A, 2000, B, 80, TCP_SYN);
        assert_eq!(ct.create(1, &syn, 1), Created::Refused);
        assert_eq!(ct.stats.refused_share, 1);
        // others still get the rest
        assert_eq!(
            ct.create(2, &tcp(A, 3000, B, 80, TCP_SYN), 1),
            Created::Fresh
        );
        // when one of its connections closes, zone 1 may take its place
        ct.track(1, &tcp(B, 80, A, 1002, TCP_RST), 2);
        assert_eq!(ct.create(1, &syn, 3), Created::Evicted);
        assert_eq!(ct.held(1), 4);
        assert_eq!(ct.state_of(1, &tcp(A, 1002, B, 80, 0), 3), None);
        // past their timeout, its connections stop counting
        let t = Timeouts::default().tcp_syn;
        let late = 3 + t + 1;
        ct.sweep(late, 1);
        assert_eq!(ct.held(1), 3, "the unanswered SYN expired");
        assert_eq!(ct.held(2), 0);
        assert_eq!(
            ct.create(1, &tcp(A, 2001, B, 80, TCP_SYN), late),
            Created::Fresh
        );
    }

    #[test]
    fn one_zone_cannot_fill_a_large_table() {
        let mut ct = Conntrack::new(4096, Timeouts::default());
        ct.set_share(25);
        let mut refused = 0;
        // zone 1 completes every connection it opens
        for p in 0..4096u32 {
            let sport = (p % 60_000) as u16;
            let dst = B + (p / 60_000);
            let syn = tcp(A, sport, dst, 80, TCP_SYN);
            if ct.create(1, &syn, 0) == Created::Refused {
                refused += 1;
                continue;
            }
            ct.track(1, &tcp(dst, 80, A, sport, TCP_SYN | TCP_ACK), 0);
            ct.track(1, &tcp(A, sport, dst, 80, TCP_ACK), 0);
        }
        assert_eq!(ct.held(1), 1024);
        assert_eq!(refused, 4096 - 1024);
        // another zone still gets its connections in
        let mut ok = 0;
        for p in 0..1000u16 {
            if ct.create(2, &udp(B, 1000 + p, A, 53), 0) != Created::Refused {
                ok += 1;
            }
        }
        assert!(ok >= 990, "{ok}");
    }

    #[test]
    fn only_a_syn_opens_and_only_a_bare_ack_picks_up() {
        const PSH: u8 = 0x08;
        const URG: u8 = 0x20;
        const ECE: u8 = 0x40;
        const CWR: u8 = 0x80;
        for (flags, want) in [
            (TCP_SYN, TcpBegin::Syn),
            (TCP_SYN | URG | ECE | CWR, TcpBegin::Syn),
            (TCP_ACK, TcpBegin::MidStream),
            (TCP_ACK | PSH, TcpBegin::MidStream),
            (TCP_ACK | URG | ECE | CWR, TcpBegin::MidStream),
            (TCP_SYN | TCP_ACK, TcpBegin::Nothing),
            (TCP_RST, TcpBegin::Nothing),
            (TCP_RST | TCP_ACK, TcpBegin::Nothing),
            (TCP_FIN, TcpBegin::Nothing),
            (TCP_FIN | TCP_ACK, TcpBegin::Nothing),
            (TCP_FIN | TCP_ACK | PSH, TcpBegin::Nothing),
            (TCP_SYN | TCP_FIN, TcpBegin::Nothing),
            (TCP_SYN | TCP_RST, TcpBegin::Nothing),
            (0, TcpBegin::Nothing),
            (PSH | URG, TcpBegin::Nothing),
        ] {
            assert_eq!(tcp_begin(flags), want, "flags {flags:#04x}");
        }
    }

    #[test]
    fn a_picked_up_connection_is_established_once_answered() {
        let t = Timeouts::default();
        let mut ct = table();
        let ack = tcp(A, 40000, B, 80, TCP_ACK);
        assert_eq!(ct.track(1, &ack, 0), Track::New);
        assert_eq!(ct.create(1, &ack, 0), Created::Fresh);
        assert_eq!((ct.stats.created, ct.stats.picked_up), (1, 1));
        assert_eq!(ct.state_of(1, &ack, 0), Some(State::PickedUp));
        // the picker's own segments keep it, for the unacknowledged
        // timeout each time, not the established one
        let unack = t.tcp_unacknowledged;
        assert_eq!(ct.track(1, &ack, unack), Track::Known { reply: false });
        assert_eq!(ct.state_of(1, &ack, 2 * unack), Some(State::PickedUp));
        assert_eq!(ct.state_of(1, &ack, 2 * unack + 1), None);
        // answered, it is established, for as long as any established one
        let now = 1000;
        ct.create(1, &ack, now);
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_ACK | 0x08), now),
            Track::Known { reply: true }
        );
        assert_eq!(ct.state_of(1, &ack, now), Some(State::Established));
        assert_eq!(ct.track(1, &ack, now), Track::Known { reply: false });
        assert_eq!(ct.state_of(1, &ack, now), Some(State::Established));
        assert_eq!(ct.live(now + t.tcp_established), 1);
        assert_eq!(ct.live(now + t.tcp_established + 1), 0);
    }

    #[test]
    fn a_picked_up_connection_closes_as_any_other() {
        let t = Timeouts::default();
        let ack = tcp(A, 40000, B, 80, TCP_ACK);
        // FINs before any other answer
        let mut ct = table();
        ct.create(1, &ack, 0);
        assert_eq!(
            ct.track(1, &tcp(A, 40000, B, 80, TCP_FIN | TCP_ACK), 1),
            Track::Known { reply: false }
        );
        assert_eq!(ct.state_of(1, &ack, 1), Some(State::FinWait));
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_FIN | TCP_ACK), 2),
            Track::Known { reply: true }
        );
        assert_eq!(ct.state_of(1, &ack, 2), Some(State::TimeWait));
        assert_eq!(ct.track(1, &ack, 3), Track::Known { reply: false });
        assert_eq!(ct.live(3 + t.tcp_fin), 1);
        assert_eq!(ct.live(3 + t.tcp_fin + 1), 0);
        // a reset from either side, answered or not
        for (answered, rst) in [
            (false, tcp(B, 80, A, 40000, TCP_RST)),
            (false, tcp(A, 40000, B, 80, TCP_RST | TCP_ACK)),
            (true, tcp(B, 80, A, 40000, TCP_RST)),
            (true, tcp(A, 40000, B, 80, TCP_RST)),
        ] {
            let mut ct = table();
            ct.create(1, &ack, 0);
            if answered {
                ct.track(1, &tcp(B, 80, A, 40000, TCP_ACK), 0);
            }
            assert!(matches!(ct.track(1, &rst, 1), Track::Known { .. }));
            assert_eq!(ct.state_of(1, &ack, 1), Some(State::Close), "{rst:?}");
            assert_eq!(ct.live(1 + t.tcp_close + 1), 0);
            // and a SYN on its ports opens a new one, for policy to judge
            assert_eq!(ct.track(1, &tcp(A, 40000, B, 80, TCP_SYN), 2), Track::New);
        }
        // SYNs in it are what they are in an established connection
        let mut ct = table();
        ct.create(1, &ack, 0);
        assert_eq!(
            ct.track(1, &tcp(A, 40000, B, 80, TCP_SYN), 1),
            Track::Known { reply: false }
        );
        assert_eq!(
            ct.track(1, &tcp(B, 80, A, 40000, TCP_SYN), 1),
            Track::Invalid
        );
        assert_eq!(
            ct.track(1, &tcp(A, 40000, B, 80, TCP_SYN | TCP_ACK), 1),
            Track::Invalid
        );
        assert_eq!(ct.state_of(1, &ack, 1), Some(State::PickedUp));
    }

    #[test]
    fn an_unanswered_pickup_may_be_dropped_early_an_answered_one_not() {
        let picked = tcp(A, 3999, B, 80, TCP_ACK);
        let fill = || {
            let mut ct = one_bucket(100);
            for p in 0..WAYS as u16 - 1 {
                establish(&mut ct, 2, 3000 + p, 0);
            }
            assert_eq!(ct.create(2, &picked, 0), Created::Fresh);
            ct
        };
        // another zone's new connection takes its place, as it would an
        // unanswered SYN's
        let mut ct = fill();
        assert_eq!(
            ct.create(1, &tcp(A, 10_000, B, 80, TCP_SYN), 1),
            Created::Evicted
        );
        assert_eq!(ct.state_of(2, &picked, 1), None);
        assert_eq!((ct.held(1), ct.held(2)), (1, WAYS - 1));
        // answered, it is established and stays; a flood of pickups is
        // refused as a flood of SYNs would be
        let mut ct = fill();
        ct.track(2, &tcp(B, 80, A, 3999, TCP_ACK), 0);
        for p in 0..100 {
            assert_eq!(
                ct.create(1, &tcp(A, 10_000 + p, B, 80, TCP_ACK), 1),
                Created::Refused
            );
        }
        assert_eq!(ct.state_of(2, &picked, 1), Some(State::Established));
        assert_eq!(ct.stats.refused_full, 100);
    }

    #[test]
    fn pickups_count_against_their_zones_share() {
        let mut ct = one_bucket(50);
        for p in 0..4 {
            let f = tcp(A, 1000 + p, B, 80, TCP_ACK);
            assert_eq!(ct.create(1, &f, 0), Created::Fresh);
            ct.track(1, &tcp(B, 80, A, 1000 + p, TCP_ACK), 0);
        }
        assert_eq!(ct.held(1), 4);
        assert_eq!(
            ct.create(1, &tcp(A, 2000, B, 80, TCP_ACK), 1),
            Created::Refused
        );
        assert_eq!(ct.stats.refused_share, 1);
        assert_eq!(
            ct.create(2, &tcp(A, 3000, B, 80, TCP_ACK), 1),
            Created::Fresh
        );
    }

    #[test]
    fn parses_the_transport_header() {
        // IPv4 + TCP SYN 10.65.0.1:40000 -> 10.65.0.2:80
        let mut p = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 65, 0, 1, 10, 65, 0, 2,
        ];
        p.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ]);
        p.extend_from_slice(&[0, 0, 0, 0]);
        let f = Flow::parse(&p);
        assert_eq!((f.src, f.dst, f.proto), (A, B, PROTO_TCP));
        assert_eq!((f.sport, f.dport, f.tcp_flags), (40000, 80, TCP_SYN));
        // a non-first fragment has no ports
        p[6] = 0x00;
        p[7] = 0x10;
        let f = Flow::parse(&p);
        assert_eq!((f.sport, f.dport, f.tcp_flags), (0, 0, 0));
        // a truncated header leaves them zero instead of reading past it
        let mut t = p[..26].to_vec();
        t[2..4].copy_from_slice(&26u16.to_be_bytes());
        t[6] = 0x40;
        t[7] = 0;
        assert_eq!(Flow::parse(&t).sport, 0);
    }

    #[test]
    fn parses_icmp_echo_and_errors() {
        let mut p = vec![
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 65, 0, 1, 10, 65, 0, 2,
        ];
        p.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let f = Flow::parse(&p);
        assert_eq!((f.icmp_type, f.sport, f.dport), (8, 0x1234, 0x1234));
        assert_eq!(f.policy_packet().dport, 8 << 8);
        // port unreachable quoting UDP 10.65.0.1:5000 -> 10.65.0.2:53
        let mut e = vec![
            0x45, 0, 0, 56, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 65, 0, 2, 10, 65, 0, 1,
        ];
        e.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        e.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 65, 0, 1, 10, 65, 0, 2,
        ]);
        e.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        let f = Flow::parse(&e);
        assert_eq!(
            f.quoted,
            Some(QuotedFlow {
                src: A,
                dst: B,
                proto: PROTO_UDP,
                sport: 5000,
                dport: 53
            })
        );
    }
}

//! Service translation in the fast path, as kube-proxy (or Calico's Felix
//! in its eBPF mode) does it: a connection to a Service address is
//! destination-translated to one backend on the client's side, before
//! policy and routing, so that the sender's egress policy and the
//! receiver's ingress policy both see the backend; its replies get the
//! Service address back as their source after the client's own zone has
//! judged them, just before they reach the client.
//!
//! One table per worker, read and written by that worker only, sized at
//! construction: 8-way buckets under a seeded hash, an expired or the
//! soonest-expiring entry of a full bucket giving way to a new one (and
//! counted). Both directions of a Service connection pass the worker that
//! owns the client's port (NodePort: the uplink's), so the forward entry
//! (client to VIP: which backend) and the reverse entry (backend to
//! client: which VIP) are on the same worker. Entries outlive snapshots:
//! a connection keeps its backend when the Service's endpoints change.
//!
//! New connections pick their backend by Maglev over a hash of the 5-tuple
//! (see [`crate::tables::maglev`]), or, with `sessionAffinity: ClientIP`, the
//! backend the client's address had within the timeout.
//!
//! Hairpin (a pod reaching itself through its Service): the packet would
//! arrive at the pod from its own address, which Linux drops as a martian,
//! so its source becomes the Service address as well (VIP:client-port ->
//! pod:target-port). A kernel pod routes its answers to the VIP through its
//! default route, which is the switch, so they come back here to be turned
//! into VIP:port -> pod:client-port; no link-local address has to be
//! owned, answered for in ARP, or kept out of the pod's own routes. Policy
//! judges a hairpin connection as the pod talking to itself (pod:client-port
//! -> pod:target-port); as both ends are in the pod's one conntrack zone,
//! the egress pass records the connection and the ingress pass finds it, so
//! the pod's ingress policy is not run on it separately.
//!
//! Limits: a full bucket evicts the soonest-expiring connection (its next
//! packet is balanced anew, maybe to another backend); affinity is per
//! worker (one pod's port has one worker, the uplink has one, so a client
//! address meets one table) and bounded like the rest; SCTP Service ports
//! are not translated (its CRC32c checksum cannot be patched
//! incrementally).
//!
//! NodePort (`externalTrafficPolicy: Cluster`, the Kubernetes default): a
//! connection from the underlay to node-address:nodePort goes to any ready
//! backend. A local one gets it with the client's address kept. For one on
//! another node the source becomes this node's (its tunnel address when the
//! backend's block is reached through VXLAN or IP-in-IP, as Linux picks the
//! `vxlan.calico`/`tunl0` address under kube-proxy's MASQUERADE; else its
//! underlay address: [`crate::tables::underlay::Underlay::node_port_source`]), on a
//! port of the natOutgoing table ([`crate::tables::nat::Snat`], one allocator: its
//! ports can never collide with natOutgoing's), and the packet goes to the
//! backend's node the way pod traffic does (VXLAN, IP-in-IP or natively, by
//! the remote block's route). The answer comes back the same way (to a
//! tunnel address, which is in a pool, so the backend's node never SNATs it
//! for natOutgoing); the natOutgoing table gives the client back as its
//! destination and the NodePort entry the node's address and nodePort as
//! its source, and it leaves through the uplink to the client. Both
//! directions pass the uplink's worker, which owns both tables.
//! As with kube-proxy (and Calico) in Cluster mode, the backend's ingress
//! policy on its node sees this node as the source, not the client; this
//! node has no endpoint of its own to judge the connection with (no host
//! endpoints), so no policy runs here.

use crate::counters::DropReason;
use crate::tables::conntrack::{Flow, State, Timeouts, PROTO_TCP};
use crate::tables::nat;
use crate::tables::services::{Backend, ServicePort};
use crate::wire::ipv4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use std::hash::{BuildHasher, Hasher};

const WAYS: usize = 8;

/// What an entry translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
enum Kind {
    #[default]
    Free,
    /// client -> VIP: the backend (and, for hairpin, the new source).
    Fwd,
    /// backend -> client: the VIP as source.
    Rev,
    /// hairpin: pod:target -> VIP:client-port, back to VIP:port -> pod:client-port.
    HairpinRev,
    /// outside -> node:nodePort: the backend.
    NodeFwd,
    /// backend -> outside: the node address and nodePort as source.
    NodeRev,
    /// client address -> its backend, `sessionAffinity: ClientIP`.
    Affinity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Key {
    a_ip: u32,
    b_ip: u32,
    a_port: u16,
    b_port: u16,
    zone: u16,
    proto: u8,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: Key,
    ip: u32,
    ip2: u32,
    port: u16,
    port2: u16,
    /// A RST or FIN was seen: a new SYN on the same ports is a new connection.
    closed: bool,
    deadline: u32,
}

/// What the table counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SvcStats {
    /// Connections given a backend.
    pub created: u64,
    /// Live entries pushed out of a full bucket.
    pub evicted: u64,
}

/// One worker's Service translations; see the module documentation.
pub struct SvcNat {
    entries: Box<[Entry]>,
    mask: usize,
    seed: u64,
    /// Nothing was ever translated: replies need no lookup.
    used: bool,
    pub timeouts: Timeouts,
    pub stats: SvcStats,
}

/// A translation decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xlate {
    pub dst: u32,
    pub dport: u16,
    /// Hairpin: the new source.
    pub src: Option<(u32, u16)>,
}

/// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit.
#[inline(always)]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The 5-tuple hash new connections are balanced by (unseeded: a flow
/// hashes alike on every worker and in every run).
#[inline(always)]
pub fn flow_hash(src: u32, sport: u16, dst: u32, dport: u16, proto: u8) -> u32 {
    let a = u64::from(src) << 32 | u64::from(dst);
    let b = u64::from(sport) << 24 | u64::from(dport) << 8 | u64::from(proto);
    (fmix(fmix(a) ^ b) >> 32) as u32
}

impl SvcNat {
    /// A table of at least `capacity` entries (two per connection).
    pub fn new(capacity: usize, timeouts: Timeouts) -> SvcNat {
        let n = capacity.next_power_of_two().max(WAYS * 2);
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        SvcNat {
            entries: vec![Entry::default(); n].into_boxed_slice(),
            mask: n / WAYS - 1,
            seed,
            used: false,
            timeouts,
            stats: SvcStats::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Whether anything was ever translated (until then replies are not
    /// looked up).
    #[inline(always)]
    pub fn active(&self) -> bool {
        self.used
    }

    /// Live connections (forward entries; a full scan, for reports).
    pub fn live(&self, now: u32) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.key.kind, Kind::Fwd | Kind::NodeFwd) && now <= e.deadline)
            .count()
    }

    #[inline(always)]
    fn bucket(&self, k: &Key) -> usize {
        let a = u64::from(k.a_ip) << 32 | u64::from(k.b_ip);
        let b = u64::from(k.a_port) << 48
            | u64::from(k.b_port) << 32
            | u64::from(k.zone) << 16
            | u64::from(k.proto) << 8
            | k.kind as u64;
        (fmix(fmix(a ^ self.seed) ^ b) as usize & self.mask) * WAYS
    }

    #[inline]
    fn find(&mut self, k: &Key, now: u32) -> Option<&mut Entry> {
        let base = self.bucket(k);
        self.entries[base..base + WAYS]
            .iter_mut()
            .find(|e| e.key == *k && now <= e.deadline)
    }

    fn insert(&mut self, e: Entry, now: u32) {
        self.used = true;
        let base = self.bucket(&e.key);
        let bucket = &mut self.entries[base..base + WAYS];
        let mut at = 0;
        let mut soonest = u32::MAX;
        for (i, s) in bucket.iter().enumerate() {
            if s.key == e.key || s.key.kind == Kind::Free || now > s.deadline {
                at = i;
                soonest = 0;
                break;
            }
            if s.deadline < soonest {
                soonest = s.deadline;
                at = i;
            }
        }
        if soonest != 0 {
            self.stats.evicted += 1;
        }
        bucket[at] = e;
    }

    /// How long an entry lives after this packet.
    #[inline(always)]
    fn timeout(&self, proto: u8, flags: u8, fresh: bool) -> u32 {
        let s = match proto {
            PROTO_TCP if flags & TCP_RST != 0 => State::Close,
            PROTO_TCP if flags & TCP_FIN != 0 => State::FinWait,
            PROTO_TCP if flags & (TCP_SYN | TCP_ACK) == TCP_SYN => State::SynSent,
            PROTO_TCP => State::Established,
            _ if fresh => State::Unreplied,
            _ => State::Replied,
        };
        self.timeouts.of(proto, s)
    }

    #[inline(always)]
    fn touch(e: &mut Entry, t: u32, flags: u8, now: u32) {
        e.deadline = now.saturating_add(t);
        if flags & (TCP_RST | TCP_FIN) != 0 {
            e.closed = true;
        }
    }

    /// The translation of an existing connection from a client, if any.
    /// A SYN on the ports of a closed connection opens a new one.
    #[inline]
    fn existing(&mut self, kind: Kind, zone: u16, f: &Flow, now: u32) -> Option<Xlate> {
        let k = Key {
            a_ip: f.src,
            b_ip: f.dst,
            a_port: f.sport,
            b_port: f.dport,
            zone,
            proto: f.proto,
            kind,
        };
        let t = self.timeout(f.proto, f.tcp_flags, false);
        let e = self.find(&k, now)?;
        let syn = f.proto == PROTO_TCP && f.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        if syn && e.closed {
            return None;
        }
        Self::touch(e, t, f.tcp_flags, now);
        Some(Xlate {
            dst: e.ip,
            dport: e.port,
            src: (e.ip2 != 0).then_some((e.ip2, e.port2)),
        })
    }

    /// The backend a new connection of `f` to service port `sp` goes to
    /// (through its ClusterIP or its NodePort alike: any ready backend).
    fn choose(&mut self, sp: &ServicePort, f: &Flow, now: u32) -> Option<Backend> {
        let backends = &sp.backends;
        let maglev = sp.maglev.as_ref()?;
        let Some(timeout) = sp.affinity else {
            let h = flow_hash(f.src, f.sport, f.dst, f.dport, f.proto);
            return backends.get(maglev.pick(h)).copied();
        };
        let k = Key {
            a_ip: f.src,
            b_ip: f.dst,
            a_port: 0,
            b_port: f.dport,
            zone: 0,
            proto: f.proto,
            kind: Kind::Affinity,
        };
        let kept = self
            .find(&k, now)
            .map(|e| Backend {
                ip: e.ip,
                port: e.port,
            })
            .filter(|b| backends.contains(b));
        // by the client's address alone: after an eviction the same client
        // still lands on the same backend while the backends stay the same
        let b = match kept {
            Some(b) => b,
            None => *backends.get(maglev.pick(flow_hash(f.src, 0, f.dst, f.dport, f.proto)))?,
        };
        self.insert(
            Entry {
                key: k,
                ip: b.ip,
                port: b.port,
                deadline: now.saturating_add(timeout),
                ..Entry::default()
            },
            now,
        );
        Some(b)
    }

    /// A packet from a pod (`zone`) to a Service address: the translation
    /// of its connection, a new one (backend chosen, both directions
    /// recorded), or `Err` when it must be refused.
    pub fn outbound(
        &mut self,
        zone: u16,
        sp: Option<&ServicePort>,
        f: &Flow,
        now: u32,
    ) -> Result<Xlate, DropReason> {
        if let Some(x) = self.existing(Kind::Fwd, zone, f, now) {
            return Ok(x);
        }
        let sp = sp.ok_or(DropReason::ServiceUnknownPort)?;
        let b = self
            .choose(sp, f, now)
            .ok_or(DropReason::ServiceNoBackend)?;
        let hairpin = b.ip == f.src;
        let t = self.timeout(f.proto, f.tcp_flags, true);
        let deadline = now.saturating_add(t);
        let closed = f.tcp_flags & (TCP_RST | TCP_FIN) != 0;
        let fwd = Entry {
            key: Key {
                a_ip: f.src,
                b_ip: f.dst,
                a_port: f.sport,
                b_port: f.dport,
                zone,
                proto: f.proto,
                kind: Kind::Fwd,
            },
            ip: b.ip,
            port: b.port,
            ip2: if hairpin { f.dst } else { 0 },
            port2: if hairpin { f.sport } else { 0 },
            closed,
            deadline,
        };
        let rev = if hairpin {
            // what the pod answers: pod:target -> VIP:client-port
            Entry {
                key: Key {
                    a_ip: b.ip,
                    b_ip: f.dst,
                    a_port: b.port,
                    b_port: f.sport,
                    zone,
                    proto: f.proto,
                    kind: Kind::HairpinRev,
                },
                // to the client's port, from the Service's
                ip: f.src,
                port: f.sport,
                ip2: f.dst,
                port2: f.dport,
                closed,
                deadline,
            }
        } else {
            Entry {
                key: Key {
                    a_ip: f.src,
                    b_ip: b.ip,
                    a_port: f.sport,
                    b_port: b.port,
                    zone,
                    proto: f.proto,
                    kind: Kind::Rev,
                },
                ip: f.dst,
                port: f.dport,
                ip2: 0,
                port2: 0,
                closed,
                deadline,
            }
        };
        self.insert(fwd, now);
        self.insert(rev, now);
        self.stats.created += 1;
        Ok(Xlate {
            dst: b.ip,
            dport: b.port,
            src: hairpin.then_some((f.dst, f.sport)),
        })
    }

    /// A hairpin answer from a pod (`zone`): the VIP:port -> pod:client-port
    /// it becomes.
    #[inline]
    pub fn hairpin_reply(&mut self, zone: u16, f: &Flow, now: u32) -> Option<Xlate> {
        self.existing(Kind::HairpinRev, zone, f, now)
    }

    /// A reply about to reach a client (`zone`, its zone): the Service
    /// address and port it must come from, if it belongs to a translated
    /// connection.
    #[inline]
    pub fn reply(&mut self, zone: u16, f: &Flow, now: u32) -> Option<(u32, u16)> {
        let k = Key {
            a_ip: f.dst,
            b_ip: f.src,
            a_port: f.dport,
            b_port: f.sport,
            zone,
            proto: f.proto,
            kind: Kind::Rev,
        };
        let t = self.timeout(f.proto, f.tcp_flags, false);
        let e = self.find(&k, now)?;
        Self::touch(e, t, f.tcp_flags, now);
        Some((e.ip, e.port))
    }

    /// An ICMP error about a translated connection, to its client: the
    /// Service address and port the quoted packet went to.
    pub fn reply_error(&mut self, zone: u16, f: &Flow, now: u32) -> Option<(u32, u16)> {
        let q = f.quoted?;
        let k = Key {
            a_ip: q.src,
            b_ip: q.dst,
            a_port: q.sport,
            b_port: q.dport,
            zone,
            proto: q.proto,
            kind: Kind::Rev,
        };
        self.find(&k, now).map(|e| (e.ip, e.port))
    }

    /// A packet from outside to this node's address: its backend, for a
    /// NodePort connection seen before or a new one to `sp`; `Ok(None)`
    /// when it is no NodePort traffic; `Err` when it must be refused.
    pub fn node_inbound(
        &mut self,
        sp: Option<&ServicePort>,
        f: &Flow,
        now: u32,
    ) -> Result<Option<(u32, u16)>, DropReason> {
        if let Some(x) = self.existing(Kind::NodeFwd, 0, f, now) {
            return Ok(Some((x.dst, x.dport)));
        }
        let Some(sp) = sp else {
            return Ok(None);
        };
        let b = self
            .choose(sp, f, now)
            .ok_or(DropReason::ServiceNoBackend)?;
        let deadline = now.saturating_add(self.timeout(f.proto, f.tcp_flags, true));
        let closed = f.tcp_flags & (TCP_RST | TCP_FIN) != 0;
        let key = Key {
            a_ip: f.src,
            b_ip: f.dst,
            a_port: f.sport,
            b_port: f.dport,
            zone: 0,
            proto: f.proto,
            kind: Kind::NodeFwd,
        };
        self.insert(
            Entry {
                key,
                ip: b.ip,
                port: b.port,
                closed,
                deadline,
                ..Entry::default()
            },
            now,
        );
        self.insert(
            Entry {
                key: Key {
                    b_ip: b.ip,
                    b_port: b.port,
                    kind: Kind::NodeRev,
                    ..key
                },
                ip: f.dst,
                port: f.dport,
                closed,
                deadline,
                ..Entry::default()
            },
            now,
        );
        self.stats.created += 1;
        Ok(Some((b.ip, b.port)))
    }

    /// A backend's answer leaving through the uplink: the node address and
    /// NodePort it must come from, if it answers a NodePort connection.
    #[inline]
    pub fn node_reply(&mut self, f: &Flow, now: u32) -> Option<(u32, u16)> {
        let k = Key {
            a_ip: f.dst,
            b_ip: f.src,
            a_port: f.dport,
            b_port: f.sport,
            zone: 0,
            proto: f.proto,
            kind: Kind::NodeRev,
        };
        let t = self.timeout(f.proto, f.tcp_flags, false);
        let e = self.find(&k, now)?;
        Self::touch(e, t, f.tcp_flags, now);
        Some((e.ip, e.port))
    }
}

// ---------------------------------------------------------------- packets

/// Applies `x` to an IPv4 packet: destination, and for hairpin the source.
#[inline]
pub fn rewrite(ip: &mut [u8], x: &Xlate) {
    nat::dnat_rewrite(ip, x.dst, x.dport);
    if let Some((s, p)) = x.src {
        nat::snat_rewrite(ip, s, p);
    }
}

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
//! (see [`crate::maglev`]), or, with `sessionAffinity: ClientIP`, the
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
//! A Service port with no backend, or a Service address on a port it does
//! not serve, refuses at once: a TCP RST, or an ICMP port (protocol)
//! unreachable from the Service address, sent back out of the client's
//! port and counted as a drop by reason.
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
//! underlay address: [`crate::underlay::Underlay::node_port_source`]), on a
//! port of the natOutgoing table ([`crate::nat::Snat`], one allocator: its
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

use crate::conntrack::{Flow, State, Timeouts, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::counters::DropReason;
use crate::l3::{self, Endpoint};
use crate::nat;
use crate::packet::PacketBuf;
use crate::pipeline::{Context, Pipeline};
use crate::refuse::{refusal, reshape};
use crate::services::{Backend, Lookup, ServicePort};
use crate::wire::ETH_HLEN;
use std::hash::{BuildHasher, Hasher};

const WAYS: usize = 8;

/// The gateway MAC pods address everything to.
const GATEWAY: u64 = u64::from_be_bytes([
    0,
    0,
    api::GATEWAY_MAC.0[0],
    api::GATEWAY_MAC.0[1],
    api::GATEWAY_MAC.0[2],
    api::GATEWAY_MAC.0[3],
    api::GATEWAY_MAC.0[4],
    api::GATEWAY_MAC.0[5],
]);

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

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

/// What the Service stage did with a packet from a pod.
pub(crate) enum FromPod {
    /// Not Service traffic: route it as it is.
    Pass,
    /// Translated: route it, and judge it (policy, conntrack) as `flow`.
    Judge(Flow),
    /// Turned into a refusal for the pod, with the reason counted.
    Refused(DropReason),
    /// Dropped for this reason.
    Drop(DropReason),
}

impl<P: PacketBuf> Pipeline<P> {
    /// The Service stage for a frame from a routed pod, ahead of routing.
    /// Frames that fail the anti-spoofing checks pass untouched, for
    /// routing to drop them by reason.
    #[inline]
    pub(crate) fn service_from_pod(
        &mut self,
        cx: &Context<'_>,
        ep: &Endpoint,
        pkt: &mut P,
    ) -> FromPod {
        let d = pkt.data();
        // plain traffic pays for one set lookup
        if cx.services.is_empty()
            || d.len() < ETH_HLEN + 20
            || u16::from_be_bytes([d[12], d[13]]) != l3::ETHERTYPE_IPV4
            || !cx
                .services
                .is_vip(u32::from_be_bytes([d[30], d[31], d[32], d[33]]))
        {
            return FromPod::Pass;
        }
        if d[6..12] != crate::underlay::mac_bytes(ep.mac) {
            return FromPod::Pass;
        }
        let Some(h) = l3::ipv4_header(d) else {
            return FromPod::Pass;
        };
        let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        if !ep.ips.contains(&src) {
            return FromPod::Pass;
        }
        let f = Flow::parse(&d[ETH_HLEN..]);
        // a hairpin answer goes to the VIP on the client's port, which may
        // be any port
        if let Some(x) = self.svc.hairpin_reply(ep.zone, &f, cx.now) {
            rewrite(&mut pkt.data_mut()[ETH_HLEN..], &x);
            // judged as the pod answering itself
            return FromPod::Judge(Flow {
                dst: x.dst,
                dport: x.dport,
                ..f
            });
        }
        if f.proto != PROTO_TCP && f.proto != PROTO_UDP || f.quoted.is_some() {
            // ICMP to a Service address (and its errors, and SCTP): refused
            return self.refuse(pkt, ep.mac, GATEWAY, DropReason::ServiceUnknownPort);
        }
        let sp = match cx.services.lookup(dst, f.proto, f.dport) {
            Lookup::Port(i) => cx.services.port(i),
            _ => None,
        };
        match self.svc.outbound(ep.zone, sp, &f, cx.now) {
            Ok(x) => {
                rewrite(&mut pkt.data_mut()[ETH_HLEN..], &x);
                // policy sees the backend; a hairpin connection is the pod
                // talking to itself
                FromPod::Judge(Flow {
                    dst: x.dst,
                    dport: x.dport,
                    ..f
                })
            }
            Err(why) => self.refuse(pkt, ep.mac, GATEWAY, why),
        }
    }

    /// Turns the packet into its refusal, from MAC `from` to `to`.
    fn refuse(&mut self, pkt: &mut P, to: u64, from: u64, why: DropReason) -> FromPod {
        let mut out = [0u8; crate::icmp::MAX_ERROR_LEN];
        let n = refusal(&pkt.data()[ETH_HLEN..], &mut out);
        if n == 0 {
            return FromPod::Drop(why);
        }
        let mut eth = [0u8; ETH_HLEN];
        eth[0..6].copy_from_slice(&crate::underlay::mac_bytes(to));
        eth[6..12].copy_from_slice(&crate::underlay::mac_bytes(from));
        eth[12..14].copy_from_slice(&l3::ETHERTYPE_IPV4.to_be_bytes());
        if !reshape(pkt, eth, &out[..n]) {
            return FromPod::Drop(why);
        }
        FromPod::Refused(why)
    }

    /// A packet about to reach a pod, after its zone let it in: the reply
    /// of a translated connection gets the Service address back.
    #[inline]
    pub(crate) fn service_to_pod(&mut self, cx: &Context<'_>, zone: u16, flow: &Flow, pkt: &mut P) {
        if !self.svc.active() {
            return;
        }
        if flow.quoted.is_none() {
            if let Some((vip, port)) = self.svc.reply(zone, flow, cx.now) {
                nat::snat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], vip, port);
            }
        } else if flow.proto == PROTO_ICMP {
            if let Some((vip, port)) = self.svc.reply_error(zone, flow, cx.now) {
                let from_backend = flow.quoted.is_some_and(|q| q.dst == flow.src);
                nat::icmp_error_rewrite_dst(
                    &mut pkt.data_mut()[ETH_HLEN..],
                    from_backend,
                    vip,
                    port,
                );
            }
        }
    }

    /// A packet from the uplink to this node's address: NodePort traffic is
    /// translated to a backend (its destination only: the caller SNATs it
    /// when the backend is on another node); a NodePort with no backend is
    /// refused back out of the uplink.
    pub(crate) fn service_node_port(
        &mut self,
        cx: &Context<'_>,
        u: &crate::underlay::Underlay,
        flow: &Flow,
        pkt: &mut P,
    ) -> FromPod {
        if flow.proto != PROTO_TCP && flow.proto != PROTO_UDP || flow.quoted.is_some() {
            return FromPod::Pass;
        }
        let sp = cx
            .services
            .node_port(flow.proto, flow.dport)
            .and_then(|i| cx.services.port(i));
        if sp.is_none() && !self.svc.active() {
            return FromPod::Pass;
        }
        match self.svc.node_inbound(sp, flow, cx.now) {
            Ok(Some((ip, port))) => {
                nat::dnat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], ip, port);
                FromPod::Judge(Flow {
                    dst: ip,
                    dport: port,
                    ..*flow
                })
            }
            Ok(None) => FromPod::Pass,
            Err(why) => {
                let d = pkt.data();
                let peer = u64::from_be_bytes([0, 0, d[6], d[7], d[8], d[9], d[10], d[11]]);
                self.refuse(pkt, peer, u.mac, why)
            }
        }
    }

    /// A packet leaving through the uplink (on the uplink's worker): the
    /// answer of a NodePort backend gets the node's address and NodePort
    /// back as its source. True when it was one (no natOutgoing then).
    #[inline]
    pub(crate) fn service_node_reply(&mut self, cx: &Context<'_>, pkt: &mut P) -> bool {
        if !self.svc.active() {
            return false;
        }
        let f = Flow::parse(&pkt.data()[ETH_HLEN..]);
        match self.svc.node_reply(&f, cx.now) {
            Some((ip, port)) => {
                nat::snat_rewrite(&mut pkt.data_mut()[ETH_HLEN..], ip, port);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::WorkerCounters;
    use crate::fdb::Fdb;
    use crate::firewall::PolicyView;
    use crate::l3::{EndpointPolicy, Route, Routes};
    use crate::pipeline::{Burst, TxSink, MAX_PORTS};
    use crate::refuse::csum;
    use crate::services::Services;
    use crossbeam_queue::ArrayQueue;
    use std::collections::HashMap;

    const CLIENT: u32 = 0x0a46_000a; // 10.70.0.10
    const B1: u32 = 0x0a46_0001;
    const B2: u32 = 0x0a46_0002;
    const VIP: u32 = 0x0a60_000a; // 10.96.0.10
    const EMPTY: u32 = 0x0a60_000c;

    fn mac(ip: u32) -> u64 {
        0x0200_0000_0000 | u64::from(ip & 0xffff)
    }

    #[derive(Default)]
    struct Sink {
        got: HashMap<u16, Vec<Vec<u8>>>,
    }

    impl TxSink<Vec<u8>> for Sink {
        fn send(&mut self, port: u16, pkts: &mut Burst<Vec<u8>>) -> DropReason {
            self.got.entry(port).or_default().extend(pkts.drain(..));
            DropReason::TxFull
        }
    }

    fn sum(b: &[u8], init: u32) -> u16 {
        !csum(b, init)
    }

    /// True when the IPv4 header and TCP/UDP checksums of `f` hold.
    fn checksums_hold(f: &[u8]) -> bool {
        let ip = &f[ETH_HLEN..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let mut pseudo = 0u32;
        for w in ip[12..20].chunks_exact(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        pseudo += u32::from(ip[9]) + (total - ihl) as u32;
        let l4_ok = match ip[9] {
            PROTO_TCP | PROTO_UDP => sum(&ip[ihl..total], pseudo) == 0xffff,
            _ => sum(&ip[ihl..total], 0) == 0xffff,
        };
        sum(&ip[..ihl], 0) == 0xffff && l4_ok
    }

    /// A TCP segment with 4 bytes of payload and valid checksums.
    fn tcp(src: (u32, u16), dst: (u32, u16), flags: u8) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&api::GATEWAY_MAC.0);
        f.extend_from_slice(&crate::underlay::mac_bytes(mac(src.0)));
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, PROTO_TCP, 0, 0];
        ip.extend_from_slice(&src.0.to_be_bytes());
        ip.extend_from_slice(&dst.0.to_be_bytes());
        let c = csum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&src.1.to_be_bytes());
        ip.extend_from_slice(&dst.1.to_be_bytes());
        ip.extend_from_slice(&1000u32.to_be_bytes());
        ip.extend_from_slice(&0u32.to_be_bytes());
        ip.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        ip.extend_from_slice(b"data");
        let mut pseudo = 0u32;
        for w in ip[12..20].chunks_exact(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        pseudo += u32::from(PROTO_TCP) + 24;
        let c = csum(&ip[20..], pseudo);
        ip[36..38].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }

    fn udp(src: (u32, u16), dst: (u32, u16)) -> Vec<u8> {
        let mut f = tcp(src, dst, 0);
        f.truncate(ETH_HLEN + 28);
        f[ETH_HLEN + 3] = 28;
        f[ETH_HLEN + 9] = PROTO_UDP;
        f[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
        let c = csum(&f[ETH_HLEN..ETH_HLEN + 20], 0);
        f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
        f[ETH_HLEN + 24..ETH_HLEN + 26].copy_from_slice(&8u16.to_be_bytes());
        f[ETH_HLEN + 26..ETH_HLEN + 28].fill(0);
        f
    }

    fn addr(f: &[u8], at: usize) -> (u32, u16) {
        let ip = &f[ETH_HLEN..];
        let a = u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
        let p = if at == 12 { 20 } else { 22 };
        (a, u16::from_be_bytes([ip[p], ip[p + 1]]))
    }

    struct Rig {
        endpoints: Vec<Option<Endpoint>>,
        routes: Routes,
        services: Services,
        pipe: Pipeline<Vec<u8>>,
        ctr: WorkerCounters,
    }

    fn service(backends: &[u32], affinity: Option<u32>) -> Vec<api::Service> {
        let b: Vec<serde_json::Value> = backends
            .iter()
            .map(|&ip| serde_json::json!({"ip": std::net::Ipv4Addr::from(ip), "port": 8080}))
            .collect();
        let mut s = serde_json::json!({
            "name": "default/web",
            "cluster_ips": [std::net::Ipv4Addr::from(VIP)],
            "ports": [{"protocol": "TCP", "port": 80, "backends": b}]
        });
        if let Some(a) = affinity {
            s["affinity_timeout"] = a.into();
        }
        let empty = serde_json::json!({
            "name": "default/empty",
            "cluster_ips": [std::net::Ipv4Addr::from(EMPTY)],
            "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 53}]
        });
        vec![
            serde_json::from_value(s).expect("service"),
            serde_json::from_value(empty).expect("service"),
        ]
    }

    impl Rig {
        fn new(backends: &[u32]) -> Rig {
            let mut endpoints = vec![None; MAX_PORTS];
            let mut routes = Routes::default();
            for (port, ip) in [(1u16, CLIENT), (2, B1), (3, B2)] {
                endpoints[usize::from(port)] = Some(Endpoint {
                    mac: mac(ip),
                    ips: vec![ip].into(),
                    policy: EndpointPolicy::default(),
                    zone: port,
                });
                routes.insert(ip, Route { port, mac: mac(ip) });
            }
            let svcs = service(backends, None);
            Rig {
                services: Services::build(&svcs, |ip| routes.contains_key(&ip)),
                endpoints,
                routes,
                pipe: Pipeline::new(1 << 14, Timeouts::default()),
                ctr: WorkerCounters::new(MAX_PORTS),
            }
        }

        fn rx(&mut self, port: u16, frames: Vec<Vec<u8>>) -> Sink {
            let fdb = Fdb::new(16, 300);
            let log = ArrayQueue::new(4);
            let neigh = crate::neigh::Neighbors::new(4);
            let compiled = policy::compile::Compiled::empty();
            let cx = Context {
                fdb: &fdb,
                domain: &[],
                endpoints: &self.endpoints,
                routes: &self.routes,
                now: 1,
                local: u64::MAX,
                policy: PolicyView {
                    compiled: &compiled,
                    generation: 0,
                },
                log: &log,
                underlay: None,
                neigh: &neigh,
                services: &self.services,
            };
            let mut sink = Sink::default();
            let mut b: Burst<Vec<u8>> = frames.into_iter().collect();
            self.pipe.process(&cx, port, &mut b, &mut sink, &self.ctr);
            sink
        }
    }

    #[test]
    fn a_connection_is_translated_both_ways_and_keeps_its_backend() {
        let mut r = Rig::new(&[B1, B2]);
        let mut seen = [0usize; 2];
        for sport in 40000..40064u16 {
            let out = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_SYN)]);
            let (port, f) = out
                .got
                .iter()
                .next()
                .map(|(p, v)| (*p, v[0].clone()))
                .expect("sent");
            let backend = if port == 2 { B1 } else { B2 };
            seen[usize::from(port == 3)] += 1;
            assert_eq!(addr(&f, 16), (backend, 8080), "DNAT to the backend");
            assert_eq!(addr(&f, 12), (CLIENT, sport), "source kept");
            assert!(checksums_hold(&f), "{f:02x?}");
            // the backend answers: the client sees the Service
            let back = r.rx(
                port,
                vec![tcp((backend, 8080), (CLIENT, sport), TCP_SYN | TCP_ACK)],
            );
            let f = &back.got[&1][0];
            assert_eq!(addr(f, 12), (VIP, 80), "reply from the VIP");
            assert_eq!(addr(f, 16), (CLIENT, sport));
            assert!(checksums_hold(f));
            // the next segment goes the same way
            let again = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_ACK)]);
            assert_eq!(addr(&again.got[&port][0], 16), (backend, 8080));
        }
        assert!(seen.iter().all(|&n| n > 10), "spread: {seen:?}");
        // a thousand more connections of this client, all open at once
        let mut chosen = HashMap::new();
        for sport in 20000..21000u16 {
            let out = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_SYN)]);
            chosen.insert(sport, *out.got.keys().next().expect("sent"));
        }
        // B2 leaves the Service: B1's connections and B2's keep their
        // backend, new ones go to B1
        let svcs = service(&[B1], None);
        let routes = &r.routes;
        r.services = Services::build(&svcs, |ip| routes.contains_key(&ip));
        for (&sport, &port) in &chosen {
            let again = r.rx(1, vec![tcp((CLIENT, sport), (VIP, 80), TCP_ACK)]);
            assert_eq!(again.got.keys().collect::<Vec<_>>(), vec![&port], "{sport}");
        }
        assert_eq!(r.pipe.svc.stats.evicted, 0);
        let fresh = r.rx(1, vec![tcp((CLIENT, 50000), (VIP, 80), TCP_SYN)]);
        assert_eq!(addr(&fresh.got[&2][0], 16), (B1, 8080));
    }

    #[test]
    fn hairpin_comes_from_the_vip_and_its_answer_goes_back() {
        let mut r = Rig::new(&[CLIENT]);
        let out = r.rx(1, vec![tcp((CLIENT, 40000), (VIP, 80), TCP_SYN)]);
        let f = &out.got[&1][0];
        assert_eq!(addr(f, 12), (VIP, 40000), "source: the VIP");
        assert_eq!(addr(f, 16), (CLIENT, 8080));
        assert!(checksums_hold(f));
        let back = r.rx(
            1,
            vec![tcp((CLIENT, 8080), (VIP, 40000), TCP_SYN | TCP_ACK)],
        );
        let f = &back.got[&1][0];
        assert_eq!(addr(f, 12), (VIP, 80));
        assert_eq!(addr(f, 16), (CLIENT, 40000));
        assert!(checksums_hold(f));
    }

    #[test]
    fn no_backend_and_unknown_ports_are_refused() {
        let mut r = Rig::new(&[B1]);
        let out = r.rx(1, vec![tcp((CLIENT, 40000), (EMPTY, 80), TCP_SYN)]);
        let f = &out.got[&1][0];
        assert_eq!(f.len(), ETH_HLEN + 40, "a bare RST");
        assert_eq!(f[0..6], crate::underlay::mac_bytes(mac(CLIENT)));
        assert_eq!(addr(f, 12), (EMPTY, 80));
        assert_eq!(addr(f, 16), (CLIENT, 40000));
        let seg = &f[ETH_HLEN + 20..];
        assert_eq!(seg[13], TCP_RST | TCP_ACK);
        assert_eq!(
            seg[8..12],
            1005u32.to_be_bytes(),
            "acks the SYN and its 4 bytes"
        );
        assert!(checksums_hold(f));
        let out = r.rx(1, vec![udp((CLIENT, 5353), (EMPTY, 53))]);
        let f = &out.got[&1][0];
        let ip = &f[ETH_HLEN..];
        assert_eq!(
            (ip[9], ip[20], ip[21]),
            (PROTO_ICMP, 3, 3),
            "port unreachable"
        );
        assert_eq!(ip[12..16], EMPTY.to_be_bytes());
        assert_eq!(
            ip[28 + 16..28 + 20],
            EMPTY.to_be_bytes(),
            "quotes the datagram"
        );
        assert!(checksums_hold(f));
        assert_eq!(r.ctr.drops_of(DropReason::ServiceNoBackend), 2);
        // a port the Service does not have
        let out = r.rx(1, vec![tcp((CLIENT, 40001), (VIP, 81), TCP_SYN)]);
        assert_eq!(out.got[&1][0][ETH_HLEN + 33], TCP_RST | TCP_ACK);
        assert_eq!(r.ctr.drops_of(DropReason::ServiceUnknownPort), 1);
        // a RST is never answered
        let out = r.rx(1, vec![tcp((CLIENT, 40002), (EMPTY, 80), TCP_RST)]);
        assert!(out.got.is_empty());
    }

    #[test]
    fn affinity_keeps_a_client_on_one_backend() {
        let mut t = SvcNat::new(1024, Timeouts::default());
        let svcs = service(&[B1, B2, CLIENT + 1, CLIENT + 2], Some(30));
        let s = Services::build(&svcs, |_| true);
        let Lookup::Port(i) = s.lookup(VIP, PROTO_TCP, 80) else {
            panic!("port")
        };
        let sp = s.port(i);
        let f = |sport| Flow {
            src: CLIENT,
            dst: VIP,
            proto: PROTO_TCP,
            sport,
            dport: 80,
            tcp_flags: TCP_SYN,
            ..Flow::default()
        };
        let first = t.outbound(1, sp, &f(1000), 0).expect("backend").dst;
        for sport in 1001..1100 {
            assert_eq!(t.outbound(1, sp, &f(sport), 1).expect("backend").dst, first);
        }
        // after the timeout the client is balanced again (by its address,
        // so to the same backend while the backends stay)
        assert_eq!(t.outbound(1, sp, &f(2000), 40).expect("backend").dst, first);
    }

    #[test]
    fn icmp_errors_from_a_backend_reach_the_client_about_the_vip() {
        let mut r = Rig::new(&[B1]);
        let out = r.rx(1, vec![udp((CLIENT, 5353), (VIP, 80))]);
        let ip = &out.got[&1][0][ETH_HLEN..];
        assert_eq!((ip[20], ip[21]), (3, 3), "UDP/80 is not served: refused");
        // a UDP Service port
        let svcs: Vec<api::Service> = vec![serde_json::from_value(serde_json::json!({
            "name": "default/dns",
            "cluster_ips": [std::net::Ipv4Addr::from(VIP)],
            "ports": [{"protocol": "UDP", "port": 53,
                       "backends": [{"ip": std::net::Ipv4Addr::from(B1), "port": 5353}]}]
        }))
        .expect("service")];
        let routes = &r.routes;
        r.services = Services::build(&svcs, |ip| routes.contains_key(&ip));
        let out = r.rx(1, vec![udp((CLIENT, 4000), (VIP, 53))]);
        let sent = out.got[&2][0].clone();
        assert_eq!(addr(&sent, 16), (B1, 5353));
        // B1 answers with a port unreachable quoting the translated datagram
        let mut err = [0u8; crate::icmp::MAX_ERROR_LEN];
        let n = crate::icmp::unreachable(&sent[ETH_HLEN..], 3, B1, &mut err);
        let mut f = sent[..ETH_HLEN].to_vec();
        f[6..12].copy_from_slice(&crate::underlay::mac_bytes(mac(B1)));
        f.extend_from_slice(&err[..n]);
        let back = r.rx(2, vec![f]);
        let ip = &back.got[&1][0][ETH_HLEN..];
        assert_eq!(ip[12..16], VIP.to_be_bytes(), "from the VIP");
        assert_eq!(ip[28 + 16..28 + 20], VIP.to_be_bytes(), "about the VIP");
        assert_eq!(ip[28 + 22..28 + 24], 53u16.to_be_bytes(), "and its port");
        assert_eq!(sum(&ip[20..n], 0), 0xffff, "ICMP checksum");
        assert_eq!(sum(&ip[..20], 0), 0xffff, "header checksum");
    }
}

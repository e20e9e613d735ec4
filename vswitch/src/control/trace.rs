//! Traces as the control socket runs them (`vsctl trace`), made-up packets
//! (`vsctl trace --inject`), and what a traced packet met, in words.
//!
//! A live trace arms ports; the workers switch the packets it wants one by
//! one and note what each met (crate::pipeline::trace). One trace runs at a
//! time; one not read for [`IDLE_TIMEOUT`] is ended by the control thread's
//! tick, as a capture is.
//!
//! A made-up packet goes through the same pipeline code on the control
//! thread, in a pipeline of its own: the switch's current configuration
//! (ports, pods, policy, Services, routes, the underlay) with empty
//! conntrack, NAT and Service tables and a copy of the neighbour table.
//! It is traced as the first packet of a new connection, nothing it sends
//! reaches a port, and nothing the workers hold changes.

use crate::control::capture::{UnixClock, IDLE_TIMEOUT};
use crate::control::inspect::protocol;
use crate::control::switch::{invalid, not_found, Result, Switch, SwitchError};
use crate::counters::WorkerCounters;
use crate::dpdk;
use crate::packet::{Burst, Headroom};
use crate::pipeline::firewall::PolicyView;
use crate::pipeline::trace::{self, Traced, Want, ZoneStep};
use crate::pipeline::{Context, Pipeline, PortSet, TxSink, MAX_PORTS};
use crate::snapshot::Shared;
use crate::tables::conntrack::{Timeouts, PROTO_TCP, PROTO_UDP};
use crate::tables::nat::DEFAULT_PORTS;
use crate::tables::neigh::Neighbors;
use crate::wire::filter::Filter;
use crate::wire::tunnel::VXLAN_PORT;
use api::{CapturePort, TraceChunk, TraceInfo, TraceInject, TraceStep, TracedPacket};
use crossbeam_queue::ArrayQueue;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use policy::{Direction, Reason};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Packets one trace may ask for.
pub const MAX_COUNT: u32 = trace::QUEUE as u32;
/// Room in front of a made-up packet, for the headers a tunnel puts there.
const HEADROOM: usize = 128;

struct Session {
    id: u64,
    ports: Vec<CapturePort>,
    count: u32,
    read: u32,
    last_read: Instant,
}

/// The trace that runs, if any.
pub struct Desk {
    shared: Arc<Shared>,
    session: Mutex<Option<Session>>,
    next: Mutex<u64>,
    clock: UnixClock,
}

impl Desk {
    pub fn new(shared: Arc<Shared>) -> Desk {
        Desk {
            clock: UnixClock::new(shared.tsc_hz),
            shared,
            session: Mutex::new(None),
            next: Mutex::new(0),
        }
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Option<Session>>> {
        self.session
            .lock()
            .map_err(|_| SwitchError::Internal("trace state poisoned".into()))
    }

    /// Starts tracing the next `count` packets received on `ports` that
    /// match `filter`.
    pub fn start(
        &self,
        ports: Vec<CapturePort>,
        filter: Option<&str>,
        count: u32,
    ) -> Result<TraceInfo> {
        let filter = match filter {
            Some(f) => Filter::parse(f).map_err(|e| SwitchError::Invalid(e.to_string()))?,
            None => Filter::default(),
        };
        if ports.is_empty() {
            return invalid("nothing to trace: the switch has no ports");
        }
        if count > MAX_COUNT {
            return invalid(format!("a trace takes at most {MAX_COUNT} packets"));
        }
        let count = count.max(1);
        let mut session = self.session()?;
        if let Some(s) = session.as_ref() {
            return Err(SwitchError::Full(format!(
                "trace {} runs already; one runs at a time",
                s.id
            )));
        }
        let id = {
            let mut next = self
                .next
                .lock()
                .map_err(|_| SwitchError::Internal("trace state poisoned".into()))?;
            *next += 1;
            *next
        };
        self.shared
            .tracer
            .prepare(Want { serial: id, filter }, count);
        for p in &ports {
            self.shared.captures.arm_trace(p.port_id, true);
        }
        tracing::info!(
            "trace {id} of {} packets on {} started",
            count,
            ports
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        *session = Some(Session {
            id,
            ports: ports.clone(),
            count,
            read: 0,
            last_read: Instant::now(),
        });
        Ok(TraceInfo {
            id,
            ports,
            idle_timeout: IDLE_TIMEOUT.as_secs() as u32,
        })
    }

    /// The packets trace `id` recorded since the last read, in words.
    pub fn read(&self, id: u64, names: &Names) -> Result<TraceChunk> {
        let mut session = self.session()?;
        let s = match session.as_mut() {
            Some(s) if s.id == id => s,
            _ => {
                return not_found(format!(
                    "no trace {id} runs (ended, or not read for {} s)",
                    IDLE_TIMEOUT.as_secs()
                ))
            }
        };
        s.last_read = Instant::now();
        let mut packets = Vec::new();
        while let Some(t) = self.shared.tracer.traced.pop() {
            if t.serial != id {
                continue;
            }
            packets.push(explain(&t, names, self.clock.unix_ns(t.tsc)));
        }
        s.read += packets.len() as u32;
        let done = s.read >= s.count;
        if done {
            self.disarm(s);
            *session = None;
        }
        Ok(TraceChunk { packets, done })
    }

    /// Ends trace `id`; succeeds when it has already ended.
    pub fn stop(&self, id: u64) -> Result<()> {
        let mut session = self.session()?;
        if let Some(s) = session.as_ref().filter(|s| s.id == id) {
            self.disarm(s);
            *session = None;
        }
        Ok(())
    }

    /// Ends a trace nobody has read for [`IDLE_TIMEOUT`].
    pub fn tick(&self) {
        let Ok(mut session) = self.session() else {
            return;
        };
        if let Some(s) = session.as_ref() {
            if s.last_read.elapsed() > IDLE_TIMEOUT {
                tracing::info!("trace {} ended: not read for {IDLE_TIMEOUT:?}", s.id);
                self.disarm(s);
                *session = None;
            }
        }
    }

    fn disarm(&self, s: &Session) {
        self.shared.tracer.left.store(0, Relaxed);
        for p in &s.ports {
            self.shared.captures.arm_trace(p.port_id, false);
        }
        tracing::info!("trace {} ended", s.id);
    }
}

/// What a trace's words name: ports, pods, nodes, Services, policies.
pub struct Names {
    ports: HashMap<u16, String>,
    /// Pods by port id.
    pods: HashMap<u16, String>,
    /// Remote nodes by underlay address.
    nodes: HashMap<u32, String>,
    /// Service ports by (address, protocol, port): `namespace/name`.
    services: HashMap<(u32, u8, u16), String>,
    /// NodePorts by (protocol, port).
    node_ports: HashMap<(u8, u16), String>,
    node_ip: u32,
    uplink: Option<u16>,
    /// Underlay neighbours by MAC: who a frame's next hop is.
    neighbours: HashMap<[u8; 6], u32>,
    compiled: Arc<policy::compile::Compiled>,
}

impl Names {
    pub fn of(sw: &Switch) -> Names {
        let ports: HashMap<u16, String> = sw
            .list_ports()
            .into_iter()
            .map(|p| (p.port_id, p.name))
            .collect();
        let by_name: HashMap<&str, u16> = ports.iter().map(|(&i, n)| (n.as_str(), i)).collect();
        let pods = sw
            .endpoints()
            .into_iter()
            .filter_map(|e| Some((*by_name.get(e.port.as_str())?, e.pod?)))
            .collect();
        let snap = sw.shared().snapshot.load_full();
        let (nodes, node_ip, uplink) = match &snap.underlay {
            Some(u) => (
                u.nodes.iter().map(|n| (n.ip, n.name.clone())).collect(),
                u.ip,
                Some(u.uplink),
            ),
            None => (HashMap::new(), 0, None),
        };
        let shared = sw.shared();
        let now =
            (dpdk::eal::rdtsc().saturating_sub(shared.tsc_start) / shared.tsc_hz.max(1)) as u32;
        let neighbours = shared
            .neigh
            .entries(now)
            .into_iter()
            .filter_map(|e| Some((crate::wire::eth::mac_bytes(e.mac?), e.ip)))
            .collect();
        let mut services = HashMap::new();
        let mut node_ports = HashMap::new();
        for s in sw.service_list() {
            for p in &s.ports {
                let proto = p.protocol.number();
                for ip in &s.cluster_ips {
                    services.insert((u32::from(*ip), proto, p.port), s.name.clone());
                }
                if let Some(np) = p.node_port {
                    node_ports.insert((proto, np), s.name.clone());
                }
            }
        }
        Names {
            ports,
            pods,
            nodes,
            services,
            node_ports,
            node_ip,
            uplink,
            neighbours,
            compiled: snap.policy.clone(),
        }
    }

    fn port(&self, id: u16) -> String {
        self.ports
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("port {id}"))
    }

    /// A port and the pod behind it.
    fn port_pod(&self, id: u16) -> String {
        match self.pods.get(&id) {
            Some(pod) => format!("{} (pod {pod})", self.port(id)),
            None => self.port(id),
        }
    }
}

/// The few facts of a frame the words need.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Five {
    src: u32,
    dst: u32,
    proto: u8,
    sport: u16,
    dport: u16,
}

fn five_of_ip(ip: &etherparse::Ipv4Slice<'_>, transport: Option<&TransportSlice<'_>>) -> Five {
    let h = ip.header();
    let (sport, dport) = match transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        _ => (0, 0),
    };
    Five {
        src: u32::from(h.source_addr()),
        dst: u32::from(h.destination_addr()),
        proto: h.protocol().0,
        sport,
        dport,
    }
}

fn five(frame: &[u8]) -> Option<Five> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => Some(five_of_ip(ip, p.transport.as_ref())),
        _ => None,
    }
}

fn tcp_flags(t: &etherparse::TcpSlice<'_>) -> String {
    let mut f = String::new();
    for (on, c) in [
        (t.syn(), 'S'),
        (t.fin(), 'F'),
        (t.rst(), 'R'),
        (t.psh(), 'P'),
        (t.ack(), '.'),
    ] {
        if on {
            f.push(c);
        }
    }
    f
}

fn ip_words(ip: &etherparse::Ipv4Slice<'_>, transport: Option<&TransportSlice<'_>>) -> String {
    let h = ip.header();
    let (s, d) = (h.source_addr(), h.destination_addr());
    match transport {
        Some(TransportSlice::Tcp(t)) => format!(
            "{s}:{} > {d}:{} tcp [{}]",
            t.source_port(),
            t.destination_port(),
            tcp_flags(t)
        ),
        Some(TransportSlice::Udp(u)) => {
            format!("{s}:{} > {d}:{} udp", u.source_port(), u.destination_port())
        }
        Some(TransportSlice::Icmpv4(i)) => {
            format!("{s} > {d} icmp type {} code {}", i.type_u8(), i.code_u8())
        }
        _ => format!("{s} > {d} ip proto {}", h.protocol().0),
    }
}

/// A frame in a few words: its addresses, ports and flags, and what it
/// carries when it is a tunnel's.
fn words(frame: &[u8], nodes: &HashMap<u32, String>) -> String {
    let p = match SlicedPacket::from_ethernet(frame) {
        Ok(p) => p,
        Err(e) => return format!("{} bytes, not understood: {e}", frame.len()),
    };
    match &p.net {
        Some(NetSlice::Arp(a)) => {
            let ip = |b: &[u8]| match <[u8; 4]>::try_from(b) {
                Ok(x) => Ipv4Addr::from(x).to_string(),
                Err(_) => "?".into(),
            };
            let op = if a.operation() == etherparse::ArpOperation::REQUEST {
                "who-has"
            } else {
                "reply"
            };
            format!(
                "ARP {op} {} tell {}",
                ip(a.target_protocol_addr()),
                ip(a.sender_protocol_addr())
            )
        }
        Some(NetSlice::Ipv4(ip)) => {
            let outer = ip_words(ip, p.transport.as_ref());
            let h = ip.header();
            let node = nodes
                .get(&u32::from(h.destination_addr()))
                .map(|n| format!(" (node {n})"))
                .unwrap_or_default();
            match &p.transport {
                Some(TransportSlice::Udp(u)) if u.destination_port() == VXLAN_PORT => {
                    let pl = u.payload();
                    let vni = pl
                        .get(4..7)
                        .map_or(0, |v| u32::from_be_bytes([0, v[0], v[1], v[2]]));
                    let inner = pl
                        .get(8..)
                        .map_or_else(|| "truncated".into(), |f| words(f, nodes));
                    format!("VXLAN vni {vni} {outer}{node}, carrying {inner}")
                }
                _ if h.protocol().0 == crate::wire::tunnel::IPPROTO_IPIP => {
                    let inner = match SlicedPacket::from_ip(ip.payload().payload) {
                        Ok(q) => match &q.net {
                            Some(NetSlice::Ipv4(i)) => ip_words(i, q.transport.as_ref()),
                            _ => "not IPv4".into(),
                        },
                        Err(e) => format!("not understood: {e}"),
                    };
                    format!(
                        "IP-in-IP {} > {}{node}, carrying {inner}",
                        h.source_addr(),
                        h.destination_addr()
                    )
                }
                _ => outer,
            }
        }
        Some(NetSlice::Ipv6(_)) => "IPv6".into(),
        None => format!(
            "ethertype 0x{:04x}",
            u16::from_be_bytes([
                frame.get(12).copied().unwrap_or(0),
                frame.get(13).copied().unwrap_or(0)
            ])
        ),
    }
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn endpoint(a: u32, p: u16, proto: u8) -> String {
    if proto == PROTO_TCP || proto == PROTO_UDP {
        format!("{}:{p}", ip(a))
    } else {
        ip(a).to_string()
    }
}

fn zone_words(z: &ZoneStep, names: &Names) -> TraceStep {
    let f = &z.flow;
    let who = names.port_pod(z.port);
    let ct = match (z.before, z.after) {
        (None, None) => "not tracked".to_string(),
        (None, Some(a)) => format!("new, recorded as {}", a.name()),
        (Some(b), Some(a)) if a == b => b.name().to_string(),
        (Some(b), Some(a)) => format!("{} -> {}", b.name(), a.name()),
        (Some(b), None) => format!("{}, then forgotten", b.name()),
    };
    let policy = match z.policy {
        Some(Reason::DefaultDeny) => format!(
            "no rule matched: tier {} denies by default (its policies apply to the pod)",
            z.tier.as_deref().unwrap_or("?")
        ),
        Some(r) => names.compiled.describe(r),
        None if z.before.is_some() => "not consulted (a known connection)".into(),
        None => "none of this direction".into(),
    };
    let verdict = match z.verdict {
        Ok(()) => "allowed".to_string(),
        Err(why) => format!("dropped ({})", why.name()),
    };
    TraceStep {
        stage: match z.dir {
            Direction::Ingress => "ingress".into(),
            Direction::Egress => "egress".into(),
        },
        detail: format!(
            "{who}, zone {}: {} > {} {}; conntrack: {ct}; policy: {policy}; {verdict}",
            z.zone,
            endpoint(f.src, f.sport, f.proto),
            endpoint(f.dst, f.dport, f.proto),
            protocol(f.proto)
        ),
    }
}

/// What `t` met, in words.
pub fn explain(t: &Traced, names: &Names, time_ns: u64) -> TracedPacket {
    let mut steps = Vec::new();
    let packet = format!("{} ({} bytes)", words(&t.frame, &names.nodes), t.len);
    let first = five(&t.frame);
    // a Service's DNAT shows as the zones judging another destination
    if let (Some(f), Some(z)) = (first, t.zones.first()) {
        if (f.dst, f.dport) != (z.flow.dst, z.flow.dport) && f.proto == z.flow.proto {
            let svc = names
                .services
                .get(&(f.dst, f.proto, f.dport))
                .or_else(|| {
                    (f.dst == names.node_ip)
                        .then(|| names.node_ports.get(&(f.proto, f.dport)))
                        .flatten()
                })
                .map(|s| format!(" (Service {s})"))
                .unwrap_or_default();
            steps.push(TraceStep {
                stage: "service".into(),
                detail: format!(
                    "{}{svc}: backend {}",
                    endpoint(f.dst, f.dport, f.proto),
                    endpoint(z.flow.dst, z.flow.dport, z.flow.proto)
                ),
            });
        }
    }
    steps.extend(t.zones.iter().map(|z| zone_words(z, names)));
    for s in &t.sent {
        let mut detail = format!(
            "{}: {}",
            names.port_pod(s.port),
            words(&s.frame, &names.nodes)
        );
        if Some(s.port) == names.uplink {
            if let (Some(a), Some(b)) = (first, five(&s.frame)) {
                if b.src == names.node_ip && a.src != names.node_ip && b.proto == a.proto {
                    detail.push_str(&format!(
                        "; natOutgoing: {} as {}",
                        endpoint(a.src, a.sport, a.proto),
                        endpoint(b.src, b.sport, b.proto)
                    ));
                }
            }
            match s.frame.get(0..6).and_then(|m| <[u8; 6]>::try_from(m).ok()) {
                Some(m) if m == [0xff; 6] => {
                    detail.push_str("; the next hop is not resolved yet: asked for")
                }
                Some(m) => {
                    let mac = m.map(|b| format!("{b:02x}")).join(":");
                    match names.neighbours.get(&m) {
                        Some(&nh) => detail.push_str(&format!("; next hop {} ({mac})", ip(nh))),
                        None => detail.push_str(&format!("; next hop {mac}")),
                    }
                }
                None => {}
            }
        }
        if s.port == t.port {
            detail.push_str("; back where it came from: an answer of the switch's own");
        }
        steps.push(TraceStep {
            stage: "sent".into(),
            detail,
        });
    }
    for d in &t.drops {
        steps.push(TraceStep {
            stage: "dropped".into(),
            detail: d.name().into(),
        });
    }
    if t.sent.is_empty() && t.drops.is_empty() {
        steps.push(TraceStep {
            stage: "handed".into(),
            detail: "to another worker's port, or held: nothing left and nothing dropped here"
                .into(),
        });
    }
    TracedPacket {
        time_ns,
        port: names.port(t.port),
        pod: names.pods.get(&t.port).cloned(),
        packet,
        steps,
        sent: t.sent.iter().map(|s| names.port(s.port)).collect(),
        dropped: t.drops.iter().map(|d| d.name().to_string()).collect(),
    }
}

/// Where a made-up packet's output goes: nowhere.
struct Nowhere;

impl TxSink<Headroom> for Nowhere {
    fn send(&mut self, _port: u16, pkts: &mut Burst<Headroom>) -> crate::counters::DropReason {
        pkts.clear();
        crate::counters::DropReason::TxFull
    }

    fn alloc(&mut self, len: u16) -> Option<Headroom> {
        Some(Headroom::new(HEADROOM, &vec![0; usize::from(len)]))
    }
}

fn flags_of(text: &str) -> Result<u8> {
    let mut f = 0u8;
    for c in text.chars() {
        f |= match c.to_ascii_uppercase() {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' | '.' => 0x10,
            _ => return invalid(format!("unknown TCP flag '{c}' (S, A, F, R, P)")),
        };
    }
    Ok(f)
}

/// The frame of a made-up packet from `src` (`mac`) to the switch (`to_mac`).
fn made_up(i: &TraceInject, src: Ipv4Addr, mac: [u8; 6], to_mac: [u8; 6]) -> Result<Vec<u8>> {
    let b =
        etherparse::PacketBuilder::ethernet2(mac, to_mac).ipv4(src.octets(), i.dst.octets(), 64);
    let payload = b"vsctl trace";
    let mut out = Vec::new();
    let written = match i.protocol.as_str() {
        "tcp" => {
            let flags = flags_of(i.tcp_flags.as_deref().unwrap_or("S"))?;
            let mut t = b.tcp(i.src_port.max(1), i.dst_port, 1, 64240);
            if flags & 0x01 != 0 {
                t = t.fin();
            }
            if flags & 0x02 != 0 {
                t = t.syn();
            }
            if flags & 0x04 != 0 {
                t = t.rst();
            }
            if flags & 0x08 != 0 {
                t = t.psh();
            }
            if flags & 0x10 != 0 {
                t = t.ack(1);
            }
            t.write(&mut out, &[])
        }
        "udp" => b
            .udp(i.src_port.max(1), i.dst_port)
            .write(&mut out, payload),
        "icmp" => b
            .icmpv4_echo_request(i.src_port, 1)
            .write(&mut out, payload),
        p => return invalid(format!("protocol '{p}': tcp, udp or icmp")),
    };
    written.map_err(|e| SwitchError::Internal(format!("building the packet: {e}")))?;
    Ok(out)
}

/// Sends a made-up packet through a pipeline of its own (see the module
/// documentation) and says what it met.
pub fn inject(sw: &Switch, i: &TraceInject) -> Result<TracedPacket> {
    let names = Names::of(sw);
    let shared = sw.shared();
    let snap = shared.snapshot.load_full();
    // the same names a capture takes: a port's, or a pod's
    let Some(port) = crate::control::capture::resolve(sw, std::slice::from_ref(&i.from))?
        .first()
        .map(|p| p.port_id)
    else {
        return not_found(format!("no port or pod named '{}'", i.from));
    };
    let (src, mac, to_mac) = match snap
        .endpoints
        .get(usize::from(port))
        .and_then(|e| e.as_ref())
    {
        Some(ep) => {
            let Some(&own) = ep.ips.first() else {
                return invalid(format!("'{}' has no address yet", i.from));
            };
            (
                i.src.unwrap_or(Ipv4Addr::from(own)),
                crate::wire::eth::mac_bytes(ep.mac),
                api::GATEWAY_MAC.0,
            )
        }
        None => match snap.underlay.as_ref().filter(|u| u.uplink == port) {
            Some(u) => {
                let Some(src) = i.src else {
                    return invalid("a packet from the uplink needs its source address (--src)");
                };
                (
                    src,
                    [0x02, 0, 0, 0, 0, 0x01],
                    crate::wire::eth::mac_bytes(u.mac),
                )
            }
            None => {
                return invalid(format!(
                    "'{}' is neither a pod nor the uplink: made-up packets come from those",
                    i.from
                ))
            }
        },
    };
    let frame = made_up(i, src, mac, to_mac)?;
    let now = sw.now();
    // the neighbours as the workers know them, in a table of its own: a
    // made-up packet's ARP request must not hold back a real one
    let neigh = Neighbors::new(shared.neigh.slots() / 2);
    for e in shared.neigh.entries(now) {
        if let Some(m) = e.mac {
            neigh.learn(e.ip, m, now.saturating_sub(e.age));
        }
    }
    let log = ArrayQueue::new(16);
    let local = PortSet::ALL;
    let cx = Context {
        fdb: &shared.fdb,
        domain: &snap.domain,
        endpoints: &snap.endpoints,
        routes: &snap.routes,
        now,
        local: &local,
        policy: PolicyView {
            compiled: &snap.policy,
            generation: snap.policy_generation,
            rule_slots: &[],
        },
        log: &log,
        underlay: snap.underlay.as_ref(),
        neigh: &neigh,
        services: &snap.services,
    };
    let ctr = WorkerCounters::new(MAX_PORTS);
    let mut pipe: Pipeline<Headroom> =
        Pipeline::small(1024, Timeouts::default(), DEFAULT_PORTS, MAX_PORTS);
    let t = trace::run_one(
        &mut pipe,
        &cx,
        port,
        Headroom::new(HEADROOM, &frame),
        &mut Nowhere,
        &ctr,
    );
    Ok(explain(&t, &names, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_frames_are_made_as_asked() {
        assert_eq!(flags_of("SA").expect("flags"), 0x12);
        assert!(flags_of("SX").is_err());
        let i = TraceInject {
            from: "p".into(),
            src: None,
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: "tcp".into(),
            src_port: 4000,
            dst_port: 80,
            tcp_flags: None,
        };
        let f = made_up(&i, Ipv4Addr::new(10, 0, 0, 1), [2, 0, 0, 0, 0, 1], [2; 6]).expect("frame");
        assert_eq!(
            words(&f, &HashMap::new()),
            "10.0.0.1:4000 > 10.0.0.2:80 tcp [S]"
        );
        let u = TraceInject {
            protocol: "sctp".into(),
            ..i
        };
        assert!(made_up(&u, Ipv4Addr::new(10, 0, 0, 1), [2; 6], [2; 6]).is_err());
    }
}

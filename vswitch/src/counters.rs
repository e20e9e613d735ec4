//! Per-worker counters: written by one worker, read by the control thread.
//!
//! Each worker owns its block, so a count is a plain load and store (no
//! atomic read-modify-write, no shared cache line between workers); the
//! control thread sums the blocks when asked.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a packet was dropped. Every drop in the dataplane has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// A length field that does not fit the frame.
    BadLength,
    /// Source MAC is multicast, broadcast or zero.
    BadSrcMac,
    /// Destination learned behind the port the frame came in on.
    SamePort,
    /// Nowhere to send it (a flood in a domain of one port).
    NoPort,
    /// Output queue full.
    TxFull,
    /// Output port's peer is not connected.
    LinkDown,
    /// Hand-off ring to the worker that owns the output port was full.
    HandoffFull,
    /// From a routed pod with a source MAC that is not the pod's.
    SpoofedMac,
    /// From a routed pod with a source address that is not the pod's.
    SpoofedIp,
    /// No pod owns the destination address.
    NoRoute,
    /// TTL would reach zero.
    TtlExpired,
    /// From a routed pod, neither IPv4 nor ARP.
    NotIpv4,
    /// ARP from a routed pod that needs no answer (replies, probes, gratuitous).
    ArpIgnored,
    /// Not acceptable in its connection's state, or a TCP segment other
    /// than a SYN that belongs to no connection, at a pod with policy.
    CtInvalid,
    /// A new connection with no room in the connection table: every slot
    /// it could take holds an established connection, or its pod holds
    /// its share of the table.
    CtFull,
    /// Denied by the receiving pod's ingress policy.
    PolicyIngress,
    /// Denied by the sending pod's egress policy.
    PolicyEgress,
    /// A tunnel frame that ends inside its outer headers.
    TunnelTruncated,
    /// A tunnel frame with a wrong outer IPv4 header.
    TunnelBadOuterIp,
    /// A fragment of an outer tunnel packet.
    TunnelFragment,
    /// Not the tunnel's protocol.
    TunnelWrongProtocol,
    /// UDP to this node, not to the VXLAN port.
    TunnelWrongPort,
    /// A tunnel packet for another address.
    TunnelNotForUs,
    /// A tunnel packet from an address that is no known node.
    TunnelUnknownPeer,
    /// A VXLAN packet whose UDP length is wrong.
    TunnelBadUdp,
    /// A VXLAN header without the I flag, or with reserved bits set.
    TunnelBadVxlanFlags,
    /// A VXLAN packet of another network (VNI).
    TunnelWrongVni,
    /// A tunnel packet whose inner frame is too short.
    TunnelInnerRunt,
    /// The next hop on the underlay is not resolved yet: the packet became an ARP request.
    NeighPending,
    /// Larger than the uplink MTU allows after encapsulation (an ICMP fragmentation-needed went back when DF was set).
    TooBig,
    /// natOutgoing has no free port for a new flow.
    NatExhausted,
    /// natOutgoing cannot translate the protocol (no ports, not ICMP echo).
    NatUnsupported,
    /// From the uplink, for nobody here (and no host port to take it).
    NotForUs,
    /// To a Service port with no ready backend: refused (TCP RST, ICMP unreachable).
    ServiceNoBackend,
    /// To a Service address on a port or protocol it does not serve: refused.
    ServiceUnknownPort,
    /// To or from a pod whose labels and policy are not known yet (only ARP
    /// passes), as Calico drops the traffic of workloads it has not programmed.
    Unprogrammed,
    /// Routed natively from the underlay with the source of a remote block,
    /// from a MAC that is not its node's next hop (or of a pool block no
    /// node claims).
    RpfWrongNode,
    /// Routed natively from the underlay with the source of a remote block
    /// this node reaches only through a tunnel: such sources come in tunnels.
    RpfNotTunneled,
}

impl DropReason {
    pub const ALL: [DropReason; 39] = [
        DropReason::Runt,
        DropReason::BadLength,
        DropReason::BadSrcMac,
        DropReason::SamePort,
        DropReason::NoPort,
        DropReason::TxFull,
        DropReason::LinkDown,
        DropReason::HandoffFull,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::NoRoute,
        DropReason::TtlExpired,
        DropReason::NotIpv4,
        DropReason::ArpIgnored,
        DropReason::CtInvalid,
        DropReason::CtFull,
        DropReason::PolicyIngress,
        DropReason::PolicyEgress,
        DropReason::TunnelTruncated,
        DropReason::TunnelBadOuterIp,
        DropReason::TunnelFragment,
        DropReason::TunnelWrongProtocol,
        DropReason::TunnelWrongPort,
        DropReason::TunnelNotForUs,
        DropReason::TunnelUnknownPeer,
        DropReason::TunnelBadUdp,
        DropReason::TunnelBadVxlanFlags,
        DropReason::TunnelWrongVni,
        DropReason::TunnelInnerRunt,
        DropReason::NeighPending,
        DropReason::TooBig,
        DropReason::NatExhausted,
        DropReason::NatUnsupported,
        DropReason::NotForUs,
        DropReason::ServiceNoBackend,
        DropReason::ServiceUnknownPort,
        DropReason::Unprogrammed,
        DropReason::RpfWrongNode,
        DropReason::RpfNotTunneled,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::BadLength => "bad_length",
            DropReason::BadSrcMac => "bad_src_mac",
            DropReason::SamePort => "same_port",
            DropReason::NoPort => "no_port",
            DropReason::TxFull => "tx_full",
            DropReason::LinkDown => "link_down",
            DropReason::HandoffFull => "handoff_full",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::NoRoute => "no_route",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::ArpIgnored => "arp_ignored",
            DropReason::CtInvalid => "ct_invalid",
            DropReason::CtFull => "ct_full",
            DropReason::PolicyIngress => "policy_ingress",
            DropReason::PolicyEgress => "policy_egress",
            DropReason::TunnelTruncated => "tunnel_truncated",
            DropReason::TunnelBadOuterIp => "tunnel_bad_outer_ip",
            DropReason::TunnelFragment => "tunnel_fragment",
            DropReason::TunnelWrongProtocol => "tunnel_wrong_protocol",
            DropReason::TunnelWrongPort => "tunnel_wrong_port",
            DropReason::TunnelNotForUs => "tunnel_not_for_us",
            DropReason::TunnelUnknownPeer => "tunnel_unknown_peer",
            DropReason::TunnelBadUdp => "tunnel_bad_udp",
            DropReason::TunnelBadVxlanFlags => "tunnel_bad_vxlan_flags",
            DropReason::TunnelWrongVni => "tunnel_wrong_vni",
            DropReason::TunnelInnerRunt => "tunnel_inner_runt",
            DropReason::NeighPending => "neigh_pending",
            DropReason::TooBig => "too_big",
            DropReason::NatExhausted => "nat_exhausted",
            DropReason::NatUnsupported => "nat_unsupported",
            DropReason::NotForUs => "not_for_us",
            DropReason::ServiceNoBackend => "service_no_backend",
            DropReason::ServiceUnknownPort => "service_unknown_port",
            DropReason::Unprogrammed => "unprogrammed",
            DropReason::RpfWrongNode => "rpf_wrong_node",
            DropReason::RpfNotTunneled => "rpf_not_tunneled",
        }
    }
}

/// A counter with one writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline(always)]
    pub fn add(&self, n: u64) {
        // single writer: load + store is exact and compiles to a plain add
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// What one worker received from and sent to one port, and dropped of it.
#[derive(Default, Debug)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Meant for the port, not sent.
    pub tx_drops: Counter,
    /// Received on the port, not switched.
    pub rx_drops: Counter,
}

/// Everything one worker counts. Aligned so two workers never share a line.
#[repr(align(128))]
#[derive(Debug)]
pub struct WorkerCounters {
    pub ports: Box<[PortCounters]>,
    pub drops: [Counter; DropReason::COUNT],
    pub learned: Counter,
    pub moved: Counter,
    pub aged: Counter,
    pub evicted: Counter,
    /// Connections recorded; unreplied or closing ones dropped early to
    /// make room; new ones refused (no room that an established connection
    /// would have to give up, or their pod over its share of the table).
    pub ct_created: Counter,
    /// Of those created, TCP connections picked up mid-stream (their
    /// beginning unseen: after a restart, or an expired entry).
    pub ct_picked_up: Counter,
    pub ct_evicted: Counter,
    pub ct_refused: Counter,
    /// TCP RSTs and ICMP errors of the switch's own not sent: over the
    /// worker's rate.
    pub refusals_suppressed: Counter,
    /// ARP requests not sent: over the switch-wide rate.
    pub arp_suppressed: Counter,
    /// Flow-log records refused by the rate limit or a full queue.
    pub log_suppressed: Counter,
    pub packets: Counter,
    pub busy_cycles: Counter,
    pub idle_polls: Counter,
    pub sleeps: Counter,
    /// Connections each policy rule decided (allowed or denied), by the
    /// slot the control thread gave the rule ([`RULE_SLOTS`] of them).
    pub rule_hits: Box<[Counter]>,
}

/// Policy rules counted at most, over the switch's life: a rule keeps its
/// slot while policies change around it, so its count only grows.
pub const RULE_SLOTS: usize = 1 << 16;

impl WorkerCounters {
    pub fn new(max_ports: usize) -> Self {
        WorkerCounters {
            ports: (0..max_ports).map(|_| PortCounters::default()).collect(),
            drops: std::array::from_fn(|_| Counter::default()),
            learned: Counter::default(),
            moved: Counter::default(),
            aged: Counter::default(),
            evicted: Counter::default(),
            ct_created: Counter::default(),
            ct_picked_up: Counter::default(),
            ct_evicted: Counter::default(),
            ct_refused: Counter::default(),
            refusals_suppressed: Counter::default(),
            arp_suppressed: Counter::default(),
            log_suppressed: Counter::default(),
            packets: Counter::default(),
            busy_cycles: Counter::default(),
            idle_polls: Counter::default(),
            sleeps: Counter::default(),
            rule_hits: (0..RULE_SLOTS).map(|_| Counter::default()).collect(),
        }
    }

    #[inline(always)]
    pub fn drop(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
    }

    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }
}

impl From<crate::wire::tunnel::TunnelDrop> for DropReason {
    fn from(t: crate::wire::tunnel::TunnelDrop) -> Self {
        use crate::wire::tunnel::TunnelDrop as T;
        match t {
            T::Truncated => DropReason::TunnelTruncated,
            T::BadOuterIp => DropReason::TunnelBadOuterIp,
            T::Fragment => DropReason::TunnelFragment,
            T::WrongProtocol => DropReason::TunnelWrongProtocol,
            T::WrongPort => DropReason::TunnelWrongPort,
            T::NotForUs => DropReason::TunnelNotForUs,
            T::UnknownPeer => DropReason::TunnelUnknownPeer,
            T::BadUdp => DropReason::TunnelBadUdp,
            T::BadVxlanFlags => DropReason::TunnelBadVxlanFlags,
            T::WrongVni => DropReason::TunnelWrongVni,
            T::InnerRunt => DropReason::TunnelInnerRunt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What operators read of each reason (`vsctl drop-reasons`, the
    /// guide) is of these reasons exactly, in this order.
    #[test]
    fn every_drop_reason_is_explained_for_operators() {
        let ours: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        let told: Vec<&str> = api::drops::DROP_REASONS.iter().map(|d| d.name).collect();
        assert_eq!(ours, told);
    }
}

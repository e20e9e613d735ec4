//! Every reason the dataplane drops a packet for, as `vsctl stats`, the
//! `vswitch_drops_total{reason}` metric and `vsctl trace` name it: what it
//! means and what to do about it. vswitchd's unit tests check that this
//! list and its drop counters are the same set; `vsctl drop-reasons` prints
//! it and the operators' guide carries it, checked against it.

/// One drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropInfo {
    pub name: &'static str,
    pub meaning: &'static str,
    pub remedy: &'static str,
}

const fn d(name: &'static str, meaning: &'static str, remedy: &'static str) -> DropInfo {
    DropInfo {
        name,
        meaning,
        remedy,
    }
}

/// The reasons, in the order of the switch's counters.
pub const DROP_REASONS: &[DropInfo] = &[
    d("runt", "A frame shorter than an Ethernet header.",
      "A broken sender; capture the port (`vsctl capture PORT`) to see who."),
    d("bad_length", "A length field that does not fit the frame (IPv4 header or total length).",
      "A broken or hostile sender; capture its port."),
    d("bad_src_mac", "A frame whose source MAC is multicast, broadcast or zero.",
      "A broken or hostile sender on a bridge port; capture it."),
    d("same_port", "A bridged frame whose destination was learned behind the port it came from.",
      "Harmless in small numbers (a host answering itself through a hub); many mean a loop in front of the port."),
    d("no_port", "Nowhere to send it: a flood in a bridge domain of one port, or a port that went away.",
      "Expected while ports come and go; otherwise check `vsctl port list`."),
    d("tx_full", "The output port's queue was full.",
      "The receiver reads too slowly (a DPDK pod not polling, a busy kernel pod); see the port's tx drops in `vsctl stats`."),
    d("link_down", "The output port's peer is not connected (a vhost-user pod not started or gone).",
      "Start the pod's DPDK application, or check its vhost-user socket path."),
    d("handoff_full", "The ring to the worker that owns the output port was full.",
      "That worker is overloaded; see its busy cycles in `vsctl stats` and spread ports over more workers."),
    d("spoofed_mac", "From a routed pod with a source MAC that is not the pod's.",
      "The pod sends from another MAC (a bridge or macvlan inside it); give it one interface, or fix its MAC."),
    d("spoofed_ip", "From a routed pod with a source address that is not the pod's (anti-spoofing).",
      "The pod sends from an address IPAM did not give it; check `vsctl get endpoints` against `ip addr` in the pod."),
    d("no_route", "No pod, node or route owns the destination address.",
      "Check the address, the pools (`vsctl get pools`) and the nodes' blocks (`vsctl get nodes`); `vsctl trace --inject` shows the way."),
    d("ttl_expired", "The TTL would reach zero.",
      "A routing loop, or a sender with a tiny TTL (traceroute); trace the packet."),
    d("not_ipv4", "From a routed pod, neither IPv4 nor ARP (IPv6 is not carried yet).",
      "Turn IPv6 off in the pod, or ignore the count (router solicitations, DAD)."),
    d("arp_ignored", "ARP from a routed pod that needs no answer (replies, probes, gratuitous ARP).",
      "Harmless."),
    d("ct_invalid", "Not acceptable in its connection's state, or a TCP segment other than a SYN that belongs to no connection, at a pod with policy.",
      "Late packets of closed connections are normal; a steady stream means asymmetric routing or a client reusing ports."),
    d("ct_full", "A new connection found no room in the connection table (or its pod holds its share of it).",
      "Raise `--ct-max` or `--ct-zone-share`; `vsctl get conntrack --pod` shows who holds the table."),
    d("policy_ingress", "Denied by the receiving pod's ingress policy.",
      "Intended unless it is not: `vsctl trace --inject --from POD --to ADDR` names the policy and rule (or the tier's default deny)."),
    d("policy_egress", "Denied by the sending pod's egress policy.",
      "As policy_ingress: `vsctl trace --inject` names what denied it."),
    d("tunnel_truncated", "A tunnel frame that ends inside its outer headers.",
      "A broken peer or MTU trouble on the underlay; capture the uplink."),
    d("tunnel_bad_outer_ip", "A tunnel frame with a wrong outer IPv4 header (checksum, length, options).",
      "A broken peer; capture the uplink."),
    d("tunnel_fragment", "A fragment of an outer tunnel packet: tunnels are not reassembled.",
      "Make the underlay MTU fit the pods' MTU plus the tunnel's headers (50 bytes for VXLAN, 20 for IP-in-IP)."),
    d("tunnel_wrong_protocol", "Not the tunnel's protocol.",
      "Traffic for the node on a tunnel address; capture the uplink."),
    d("tunnel_wrong_port", "UDP to the node's tunnel address, not to the VXLAN port (4789).",
      "A peer configured with another VXLAN port; Calico's is 4789."),
    d("tunnel_not_for_us", "A tunnel packet for another address.",
      "A switch or ARP mistake on the underlay sent it here; check the underlay's MAC tables."),
    d("tunnel_unknown_peer", "A tunnel packet from an address that is no known node.",
      "A node missing from the API (or not yet pushed); `vsctl get nodes`. Hostile otherwise."),
    d("tunnel_bad_udp", "A VXLAN packet whose UDP length is wrong.",
      "A broken peer; capture the uplink."),
    d("tunnel_bad_vxlan_flags", "A VXLAN header without the I flag, or with reserved bits set (GBP, GPE).",
      "A peer with VXLAN extensions on; turn them off."),
    d("tunnel_wrong_vni", "A VXLAN packet of another network (VNI).",
      "Peers must use Calico's VNI, 4096."),
    d("tunnel_inner_runt", "A tunnel packet whose inner frame is too short.",
      "A broken peer; capture the uplink."),
    d("neigh_pending", "The next hop on the underlay is not resolved yet: the packet became an ARP request.",
      "A few at start are normal; a steady count means the next hop does not answer ARP (`vsctl capture UPLINK --filter arp`)."),
    d("too_big", "Larger than the uplink MTU allows after encapsulation; an ICMP fragmentation-needed went back when DF was set.",
      "Pods should get the tunnel's MTU (the CNI plugin sets it); check the pod's `ip link` MTU."),
    d("nat_exhausted", "natOutgoing had no free port for a new flow to that destination.",
      "Too many flows to one destination address and port from one node (about 28,000); spread them over more destinations or nodes."),
    d("nat_unsupported", "natOutgoing cannot translate the protocol (no ports, not ICMP echo).",
      "Such traffic cannot leave the pools with natOutgoing; use a pool without it, or a routable pool."),
    d("not_for_us", "From the uplink, for nobody here, and no host port to take it.",
      "Give the switch a host port (`--host-port`), or stop the sender."),
    d("service_no_backend", "To a Service port with no ready backend: refused with a TCP RST or ICMP unreachable.",
      "The Service's pods are not ready; `kubectl get endpointslices`, `vsctl get services`."),
    d("service_unknown_port", "To a Service address on a port or protocol it does not serve: refused.",
      "The client uses the wrong port; `vsctl get services` lists the ports served."),
    d("unprogrammed", "To or from a pod whose labels and policy are not known yet (only ARP passes), as Calico drops the traffic of workloads it has not programmed.",
      "Normal for the first moments of a pod; lasting, the node agent is not pushing (`vsctl status`, the agent's /status)."),
    d("rpf_wrong_node", "Routed natively from the underlay with the source of a remote block, from a MAC that is not its node's next hop (or a pool block no node claims).",
      "A spoofed source, or a node whose blocks the API does not know; `vsctl get nodes`."),
    d("rpf_not_tunneled", "Routed natively from the underlay with the source of a remote block this node reaches only through a tunnel.",
      "The pools' encapsulation differs between nodes; make them agree (`vsctl get pools`)."),
];

/// The reason named `name`.
pub fn drop_reason(name: &str) -> Option<&'static DropInfo> {
    DROP_REASONS.iter().find(|d| d.name == name)
}

/// The reasons as a Markdown table, as the operators' guide carries it.
pub fn drop_reasons_markdown() -> String {
    let mut s = String::from("| Reason | Meaning | What to do |\n|---|---|---|\n");
    for d in DROP_REASONS {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            d.name, d.meaning, d.remedy
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_reason_says_something() {
        let mut names: Vec<&str> = DROP_REASONS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DROP_REASONS.len());
        for d in DROP_REASONS {
            assert!(d.meaning.ends_with('.') && d.remedy.ends_with('.'), "{d:?}");
            assert!(!d.meaning.contains('|') && !d.remedy.contains('|'), "{d:?}");
        }
        assert_eq!(drop_reason("no_route").map(|d| d.name), Some("no_route"));
        assert!(drop_reason("nope").is_none());
    }
}

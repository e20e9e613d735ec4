//! Across nodes: two vswitchd "nodes" on this machine, each with kernel pods
//! in network namespaces and an af-packet (or, for the `_af_xdp` cases,
//! af-xdp) uplink on a veth into an underlay namespace (a bridge per subnet, a router between two subnets). tshark on
//! the underlay checks what goes over the wire; the Linux kernel's own VXLAN
//! device, set up as Calico sets up `vxlan.calico`, is a peer node; a raw
//! socket on protocol 4 and scapy stand in for an IP-in-IP peer.
//!
//! Needs root; run with `cargo test -p vswitch --release --test tunnels`.

use api::{
    Desired, EncapMode, EndpointSpec, IpPool, MacAddr, Node, PortKind, Reply, Request, TraceInject,
    TraceStart, TracedPacket,
};
use std::net::Ipv4Addr;
use std::time::Duration;
use testsupport::underlay::*;
use testsupport::*;

/// The pool every node's blocks are cut from.
const POOL: &str = "10.72.0.0/16";

/// A vswitchd node with its uplink and pods.
struct VNode {
    name: String,
    ip: Ipv4Addr,
    prefix: u8,
    /// The block its pods are in (10.72.N.0/26).
    block: String,
    vtep_ip: Ipv4Addr,
    vtep_mac: String,
    pods: Vec<(Netns, Ipv4Addr)>,
    // the switch goes last: pods' ports first
    sw: Switch,
}

/// What a made-up packet from pod `from` of node `n` meets (`vsctl trace
/// --inject`).
fn trace_inject(n: &VNode, from: &str, to: Ipv4Addr, proto: &str, dport: u16) -> TracedPacket {
    let inject = TraceInject {
        from: from.into(),
        src: None,
        dst: to,
        protocol: proto.into(),
        src_port: 40000,
        dst_port: dport,
        tcp_flags: None,
    };
    match n.sw.call(&Request::TraceInject { inject }) {
        Reply::Injected(t) => t,
        r => panic!("trace --inject: {r:?}"),
    }
}

/// The detail of a traced packet's step `stage`.
fn step<'a>(t: &'a TracedPacket, stage: &str) -> &'a str {
    t.steps
        .iter()
        .find(|s| s.stage == stage)
        .map(|s| s.detail.as_str())
        .unwrap_or_else(|| panic!("no {stage} step: {t:?}"))
}

fn vnode(ul: &Underlay, name: &str, subnet: u8, host: u32, n: u8, pods: usize) -> VNode {
    vnode_with(ul, name, subnet, host, n, pods, &[])
}

/// A node whose uplink is a port of `uplink` (af-packet or af-xdp).
fn vnode_on(
    uplink: PortKind,
    ul: &Underlay,
    name: &str,
    subnet: u8,
    host: u32,
    n: u8,
    pods: usize,
) -> VNode {
    vnode_full(uplink, ul, name, subnet, host, n, pods, &[])
}

fn vnode_with(
    ul: &Underlay,
    name: &str,
    subnet: u8,
    host: u32,
    n: u8,
    pods: usize,
    extra: &[&str],
) -> VNode {
    vnode_full(PortKind::AfPacket, ul, name, subnet, host, n, pods, extra)
}

#[allow(clippy::too_many_arguments)]
fn vnode_full(
    uplink: PortKind,
    ul: &Underlay,
    name: &str,
    subnet: u8,
    host: u32,
    n: u8,
    pods: usize,
    extra: &[&str],
) -> VNode {
    let ip = ul.addr(subnet, host);
    let sw = switch_node_on(ul, name, subnet, extra, uplink);
    let mut v = VNode {
        name: name.to_owned(),
        ip,
        prefix: ul.subnet(subnet).prefix(),
        block: format!("10.72.{n}.0/26"),
        vtep_ip: Ipv4Addr::new(10, 72, n, 0),
        vtep_mac: format!("66:cb:00:00:00:{n:02x}"),
        pods: Vec::new(),
        sw,
    };
    for i in 0..pods {
        let addr = Ipv4Addr::new(10, 72, n, i as u8 + 1);
        let port = format!("pod{i}");
        let iface = v.sw.add_tap(&port);
        let mac = format!("02:00:0a:48:{n:02x}:{:02x}", i + 1);
        let ns = Netns::wired(&format!("{iface}ns"), &iface, &mac, addr);
        let r = v.sw.call(&Request::EndpointSet {
            endpoint: EndpointSpec {
                port,
                mac: mac.parse::<MacAddr>().expect("test MAC"),
                ips: vec![addr],
                pod: Some(format!("default/{name}-{i}")),
                labels: Default::default(),
                namespace: None,
                service_account: None,
                named_ports: Vec::new(),
            },
        });
        assert_eq!(r, Reply::Done);
        v.pods.push((ns, addr));
    }
    v
}

impl VNode {
    fn node(&self) -> Node {
        Node {
            blocks: vec![self.block.clone()],
            vxlan_tunnel_ip: Some(self.vtep_ip),
            vxlan_tunnel_mac: Some(self.vtep_mac.parse().expect("vtep MAC")),
            ..Node::new(&self.name, &[&format!("{}/{}", self.ip, self.prefix)])
        }
    }

    fn pod(&self, i: usize) -> (&str, Ipv4Addr) {
        (&self.pods[i].0.name, self.pods[i].1)
    }

    /// Sets each pod's MTU to what the switch gives pods (the CNI plugin
    /// does this from the attachment).
    fn pod_mtu(&self, mtu: u16) {
        for (ns, _) in &self.pods {
            ip(&[
                "-n",
                &ns.name,
                "link",
                "set",
                "eth0",
                "mtu",
                &mtu.to_string(),
            ]);
        }
    }

    fn drops(&self, reason: &str) -> u64 {
        self.sw.stats().drops.get(reason).copied().unwrap_or(0)
    }
}

/// Applies the pool and every node to every switch.
fn apply(nodes: &[&VNode], pool: &IpPool, extra: &[Node]) {
    let mut all: Vec<Node> = nodes.iter().map(|n| n.node()).collect();
    all.extend_from_slice(extra);
    for n in nodes {
        let r = n.sw.call(&Request::Apply {
            doc: Desired {
                pools: vec![pool.clone()],
                nodes: all.clone(),
                ..Default::default()
            },
        });
        assert_eq!(r, Reply::Done, "apply on {}", n.name);
    }
}

fn pool(vxlan: EncapMode, ipip: EncapMode, nat: bool) -> IpPool {
    IpPool {
        block_size: Some(26),
        vxlan_mode: Some(vxlan),
        ipip_mode: Some(ipip),
        nat_outgoing: nat,
        ..IpPool::new("pods", POOL)
    }
}

/// Pings until one reply came back: the first packets to an unresolved next
/// hop become ARP requests.
fn ping_eventually(ns: &str, dst: Ipv4Addr) {
    wait_for(&format!("{ns} -> {dst}"), Duration::from_secs(15), || {
        ping(ns, dst, 1).then_some(())
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Vxlan,
    Ipip,
    Native,
}

/// Pod to pod across two nodes: ping and a TCP transfer both ways, and the
/// capture on the underlay shows the encapsulation that is due (or none).
fn cross_node(ul: &Underlay, a: &VNode, b: &VNode, want: Wire, bridge_of_a: u8) {
    let mtu = match want {
        Wire::Vxlan => 1450,
        Wire::Ipip => 1480,
        Wire::Native => 1500,
    };
    a.pod_mtu(mtu);
    b.pod_mtu(mtu);
    let (a_ns, a_ip) = a.pod(0);
    let (b_ns, b_ip) = b.pod(0);
    ping_eventually(a_ns, b_ip);
    ping_eventually(b_ns, a_ip);
    let cap = ul.capture(&ul.bridge(bridge_of_a), "not arp");
    let o = ping_output(a_ns, b_ip, 3);
    assert!(o.status.success(), "ping {a_ip} -> {b_ip}: {o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ttl=62"), "two routed hops: {out}");
    tcp_transfer(a_ns, b_ns, b_ip, 5001, 2 << 20).expect("TCP a -> b");
    tcp_transfer(b_ns, a_ns, a_ip, 5002, 1 << 20).expect("TCP b -> a");
    let pcap = cap.stop();
    let (na, nb) = (a.ip, b.ip);
    match want {
        Wire::Vxlan => {
            let v = pcap.vxlan();
            assert!(v.len() > 100, "VXLAN frames on the wire: {}", v.len());
            for f in &v {
                assert_eq!(f.vni, 4096, "{f:?}");
                if f.outer_src == na {
                    assert_eq!(f.outer_ttl, 64, "the default tunnel TTL: {f:?}");
                }
                assert_eq!(f.udp_dst_port, 4789);
                assert!((49152..=65535).contains(&f.udp_src_port), "{f:?}");
                assert_eq!(f.outer_checksum_status, 1, "outer IPv4 checksum: {f:?}");
                assert!(
                    (f.outer_src, f.outer_dst) == (na, nb)
                        || (f.outer_src, f.outer_dst) == (nb, na),
                    "{f:?}"
                );
                let inner = (f.inner_src, f.inner_dst);
                assert!(
                    inner == (Some(a_ip), Some(b_ip)) || inner == (Some(b_ip), Some(a_ip)),
                    "inner addresses are the pods': {f:?}"
                );
            }
            assert_eq!(pcap.count("ip.proto == 4"), 0);
        }
        Wire::Ipip => {
            let v = pcap.ipip();
            assert!(v.len() > 100, "IP-in-IP frames on the wire: {}", v.len());
            for f in &v {
                assert_eq!(f.outer_checksum_status, 1, "outer IPv4 checksum: {f:?}");
                assert!(
                    (f.inner_src, f.inner_dst) == (a_ip, b_ip)
                        || (f.inner_src, f.inner_dst) == (b_ip, a_ip),
                    "{f:?}"
                );
            }
            assert_eq!(pcap.count("vxlan"), 0);
        }
        Wire::Native => {
            assert_eq!(
                pcap.count("vxlan or ip.proto == 4"),
                0,
                "{}",
                pcap.summary("vxlan or ip.proto == 4")
            );
            let plain = pcap.fields(
                &format!("ip.src == {a_ip} && ip.dst == {b_ip}"),
                &["ip.src", "ip.dst", "ip.checksum.status"],
            );
            assert!(
                plain.len() > 100,
                "pod packets routed as they are: {}",
                plain.len()
            );
            assert!(
                plain
                    .iter()
                    .all(|r| r[0] == a_ip.to_string() && r[2] == "1"),
                "{plain:?}"
            );
        }
    }
}

#[test]
fn vxlan_always() {
    vxlan_always_on(PortKind::AfPacket, "vx");
}

#[test]
fn vxlan_always_af_xdp() {
    vxlan_always_on(PortKind::AfXdp, "vxx");
}

fn vxlan_always_on(uplink: PortKind, hint: &str) {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new(hint);
    let a = vnode_on(uplink, &ul, "na", 1, 1, 1, 1);
    let b = vnode_on(uplink, &ul, "nb", 1, 2, 2, 1);
    apply(
        &[&a, &b],
        &pool(EncapMode::Always, EncapMode::Never, false),
        &[],
    );
    assert_pod_mtu(&a, 1450);
    cross_node(&ul, &a, &b, Wire::Vxlan, 1);

    // a made-up packet goes the same way, and says so
    let (_, a_ip) = a.pod(0);
    let (_, b_ip) = b.pod(0);
    let t = trace_inject(&a, "default/na-0", b_ip, "udp", 53);
    assert_eq!(
        (t.sent.as_slice(), t.dropped.len()),
        (&["up".to_string()][..], 0),
        "{t:?}"
    );
    let sent = step(&t, "sent");
    assert!(sent.contains(&format!("; next hop {} (", b.ip)), "{sent}");
    // and a real datagram, traced live, went that way too
    let start = TraceStart {
        ports: vec!["default/na-0".into()],
        filter: Some("udp and port 53".into()),
        count: 1,
    };
    let info = match a.sw.call(&Request::TraceStart { start }) {
        Reply::Trace(i) => i,
        r => panic!("trace: {r:?}"),
    };
    // and a capture of the uplink sees it leave, encapsulated
    let start = api::CaptureStart {
        ports: vec!["up".into()],
        filter: Some("udp and port 4789".into()),
        snaplen: 0,
    };
    let cap = match a.sw.call(&Request::CaptureStart { start }) {
        Reply::Capture(c) => c,
        r => panic!("capture: {r:?}"),
    };
    let (a_ns, _) = a.pod(0);
    let send = format!(
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{b_ip}', 53))"
    );
    in_ns(a_ns, &["python3", "-c", &send]);
    let live = wait_for("the traced datagram", Duration::from_secs(10), || {
        match a.sw.call(&Request::TraceRead { id: info.id }) {
            Reply::Traced(c) => c.packets.into_iter().next(),
            r => panic!("trace read: {r:?}"),
        }
    });
    assert_eq!(live.sent, ["up"], "{live:?}");
    let frame = wait_for("the captured datagram", Duration::from_secs(10), || match a
        .sw
        .call(&Request::CaptureRead { id: cap.id })
    {
        Reply::Captured(c) => c.frames.into_iter().find(|f| f.dir == api::CaptureDir::Out),
        r => panic!("capture read: {r:?}"),
    });
    assert_eq!(a.sw.call(&Request::CaptureStop { id: cap.id }), Reply::Done);
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&frame.data)
        .expect("base64");
    let outer = etherparse::SlicedPacket::from_ethernet(&bytes).expect("a frame");
    let Some(etherparse::TransportSlice::Udp(u)) = outer.transport else {
        panic!("not UDP: {bytes:02x?}");
    };
    assert_eq!(u.destination_port(), 4789);
    let inner = etherparse::SlicedPacket::from_ethernet(&u.payload()[8..]).expect("inner frame");
    let Some(etherparse::NetSlice::Ipv4(inner_ip)) = inner.net else {
        panic!("inner not IPv4");
    };
    assert_eq!(
        (
            inner_ip.header().source_addr(),
            inner_ip.header().destination_addr()
        ),
        (a_ip, b_ip),
        "the uplink's capture holds the pod's datagram in its tunnel"
    );
    let live_sent = step(&live, "sent");
    assert!(
        live_sent.starts_with("up: VXLAN vni ")
            && live_sent.contains(&format!(" udp (node nb), carrying {a_ip}:"))
            && live_sent.contains(&format!("; next hop {} (", b.ip)),
        "{live_sent}"
    );
    assert!(
        sent.starts_with("up: VXLAN vni ")
            && sent.contains(&format!(
                "> {}:4789 udp (node nb), carrying {a_ip}:40000 > {b_ip}:53 udp",
                b.ip
            )),
        "{sent}"
    );

    // a packet too big for the tunnel, with DF, gets "fragmentation needed"
    // with the MTU that fits, from the switch
    let (a_ns, _) = a.pod(0);
    let (_, b_ip) = b.pod(0);
    ip(&["-n", a_ns, "link", "set", "eth0", "mtu", "1500"]);
    let before = a.drops("too_big");
    let o = in_ns(
        a_ns,
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1472",
            &b_ip.to_string(),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("mtu = 1450") || text.contains("mtu=1450"),
        "frag needed: {text}"
    );
    assert!(a.drops("too_big") > before);
}

/// The MTU a new pod gets (the CNI plugin sets it from the attachment):
/// the uplink's 1500 less the pool's largest encapsulation.
fn assert_pod_mtu(n: &VNode, want: u16) {
    match n.sw.call(&Request::PodAttach {
        attach: api::PodAttach {
            container_id: format!("mtu-check-{}", unique()),
            ifname: "eth0".into(),
            network: None,
            kind: api::AttachKind::Tap,
            pod: None,
            pools: vec![],
            ips: None,
            socket_dir: None,
            netns: None,
            vhost_mode: None,
        },
    }) {
        Reply::Attachment(att) => assert_eq!(att.mtu, want, "pod MTU on {}", n.name),
        r => panic!("pod-attach: {r:?}"),
    }
}

/// Two nodes, one pod each, the pool in the given modes: pods talk across
/// and the wire shows `want`. With `two_subnets` the second node sits in
/// the other subnet, behind the underlay's router.
fn two_nodes(hint: &str, two_subnets: bool, vxlan: EncapMode, ipip: EncapMode, want: Wire) {
    two_nodes_on(PortKind::AfPacket, hint, two_subnets, vxlan, ipip, want)
}

/// [`two_nodes`] with uplinks of `uplink` (af-packet or af-xdp).
fn two_nodes_on(
    uplink: PortKind,
    hint: &str,
    two_subnets: bool,
    vxlan: EncapMode,
    ipip: EncapMode,
    want: Wire,
) {
    let _g = serial();
    must_be_root();
    let ul = if two_subnets {
        Underlay::with_two_subnets()
    } else {
        Underlay::new(hint)
    };
    let a = vnode_on(uplink, &ul, "na", 1, 1, 1, 1);
    let b = if two_subnets {
        vnode_on(uplink, &ul, "nb", 2, 1, 2, 1)
    } else {
        vnode_on(uplink, &ul, "nb", 1, 2, 2, 1)
    };
    apply(&[&a, &b], &pool(vxlan, ipip, false), &[]);
    let on = |m: EncapMode| m != EncapMode::Never;
    assert_pod_mtu(
        &a,
        if on(vxlan) {
            1450
        } else if on(ipip) {
            1480
        } else {
            1500
        },
    );
    cross_node(&ul, &a, &b, want, 1);
}

#[test]
fn ipip_always() {
    two_nodes("ip", false, EncapMode::Never, EncapMode::Always, Wire::Ipip);
}

#[test]
fn ipip_always_af_xdp() {
    two_nodes_on(
        PortKind::AfXdp,
        "ipx",
        false,
        EncapMode::Never,
        EncapMode::Always,
        Wire::Ipip,
    );
}

#[test]
fn cross_subnet_across_a_router_encapsulates_af_xdp() {
    two_nodes_on(
        PortKind::AfXdp,
        "csx",
        true,
        EncapMode::CrossSubnet,
        EncapMode::Never,
        Wire::Vxlan,
    );
}

#[test]
fn never_routes_natively() {
    two_nodes(
        "nv",
        false,
        EncapMode::Never,
        EncapMode::Never,
        Wire::Native,
    );
}

#[test]
fn cross_subnet_in_one_subnet_routes_natively() {
    two_nodes(
        "cs",
        false,
        EncapMode::CrossSubnet,
        EncapMode::Never,
        Wire::Native,
    );
}

#[test]
fn cross_subnet_across_a_router_encapsulates() {
    two_nodes(
        "cr",
        true,
        EncapMode::CrossSubnet,
        EncapMode::Never,
        Wire::Vxlan,
    );
}

#[test]
fn ipip_cross_subnet_across_a_router_encapsulates() {
    two_nodes(
        "ir",
        true,
        EncapMode::Never,
        EncapMode::CrossSubnet,
        Wire::Ipip,
    );
}

#[test]
fn the_kernel_vxlan_device_is_a_peer() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("kv");
    let a = vnode_with(&ul, "na", 1, 1, 1, 1, &["--tunnel-ttl", "50"]);
    let k = ul.kernel_node(KernelNodeSpec::new("192.168.50.30", "10.72.3.0/26"));
    let kernel = Node {
        blocks: vec![k.block.to_string()],
        vxlan_tunnel_ip: Some(k.vtep_ip),
        vxlan_tunnel_mac: Some(k.vtep_mac.parse().expect("kernel VTEP MAC")),
        ..Node::new("kernel", &["192.168.50.30/24"])
    };
    apply(
        &[&a],
        &pool(EncapMode::Always, EncapMode::Never, false),
        &[kernel],
    );
    // what Felix programs on the kernel node for our node
    k.add_peer(a.ip, a.vtep_ip, &a.vtep_mac, &a.block);
    a.pod_mtu(1450);
    let (a_ns, a_ip) = a.pod(0);
    let cap = ul.capture(&ul.bridge(1), "udp port 4789");
    ping_eventually(a_ns, k.pod_ip);
    ping_eventually(k.pod_ns(), a_ip);
    tcp_transfer(a_ns, k.pod_ns(), k.pod_ip, 5003, 1 << 20).expect("TCP to the kernel pod");
    tcp_transfer(k.pod_ns(), a_ns, a_ip, 5004, 1 << 20).expect("TCP from the kernel pod");
    let v = cap.stop().vxlan();
    assert!(v
        .iter()
        .any(|f| f.outer_src == a.ip && f.inner_dst == Some(k.pod_ip)));
    assert!(v
        .iter()
        .any(|f| f.outer_src == k.node_ip && f.inner_dst == Some(a_ip)));
    assert!(v
        .iter()
        .all(|f| f.vni == 4096 && f.outer_checksum_status == 1));
    assert!(
        v.iter()
            .filter(|f| f.outer_src == a.ip)
            .all(|f| f.outer_ttl == 50),
        "the configured tunnel TTL"
    );
}

#[test]
fn ip_in_ip_reaches_a_raw_socket_and_scapy_packets_are_delivered() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("rw");
    let a = vnode(&ul, "na", 1, 1, 1, 1);
    // a peer node that is a namespace with a raw socket on protocol 4
    let peer = ul.external_host("192.168.50.40/24", None);
    let peer_node = Node {
        blocks: vec!["10.72.4.0/26".into()],
        ..Node::new("raw", &["192.168.50.40/24"])
    };
    apply(
        &[&a],
        &pool(EncapMode::Never, EncapMode::Always, false),
        &[peer_node],
    );
    a.pod_mtu(1480);
    let listener = ipip_listener(peer.ns());
    let (a_ns, a_ip) = a.pod(0);
    let remote_pod = Ipv4Addr::new(10, 72, 4, 1);
    // unanswered pings: the listener sees what the switch encapsulated
    let _ = ping(a_ns, remote_pod, 3);
    let got = listener.wait_for(1, Duration::from_secs(10));
    let p = &got[0];
    assert_eq!(p[9], 4, "outer protocol 4");
    assert_eq!(Ipv4Addr::new(p[12], p[13], p[14], p[15]), a.ip);
    assert_eq!(Ipv4Addr::new(p[16], p[17], p[18], p[19]), peer.ip);
    let inner = &p[20..];
    assert_eq!(
        Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]),
        a_ip
    );
    assert_eq!(
        Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]),
        remote_pod
    );
    assert_eq!(inner[8], 63, "the inner TTL went down by the one hop");
    assert!(ipv4_checksum_ok(p), "outer header checksum");
    assert!(ipv4_checksum_ok(inner), "inner header checksum");

    // scapy: an echo request from the remote pod, in IP-in-IP from the peer;
    // the pod answers, and the answer goes back the same way
    let uplink_mac =
        a.sw.ports()
            .into_iter()
            .find(|p| p.name == "up")
            .expect("uplink port")
            .mac
            .to_string();
    let before = listener.packets().len();
    let sent = send_ipip(
        peer.ns(),
        &peer.iface,
        &uplink_mac,
        peer.ip,
        a.ip,
        remote_pod,
        a_ip,
        b"crafted",
    );
    assert_eq!(sent[9], 4);
    let got = listener.wait_for(before + 1, Duration::from_secs(10));
    let reply = got[before..]
        .iter()
        .find(|p| p.len() > 48 && p[20 + 20] == 0)
        .unwrap_or_else(|| panic!("no echo reply among {:?}", &got[before..]));
    let inner = &reply[20..];
    assert_eq!(
        Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]),
        a_ip
    );
    assert_eq!(
        Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]),
        remote_pod
    );
    assert!(reply.ends_with(b"crafted"), "the payload came back");
}

/// Python for the natOutgoing test: a UDP server that answers every
/// datagram and reports who it saw; and a client opening N flows at once
/// and resending for S seconds to those not answered yet.
const UDP_SERVER: &str = r#"
import socket, sys, json, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 9999))
s.settimeout(1.0)
seen = set()
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        d, a = s.recvfrom(64)
    except OSError:
        continue
    seen.add(a)
    s.sendto(d, a)
print(json.dumps(sorted([list(x) for x in seen])))
"#;

const UDP_CLIENT: &str = r#"
import socket, sys, select, time
n = int(sys.argv[2])
dst = (sys.argv[1], 9999)
ss = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
for i, s in enumerate(ss):
    s.setblocking(False)
    s.sendto(str(i).encode(), dst)
got = set()
left = set(ss)
# resent every quarter second until answered: by the clock, as a client's
# retransmission timer, so that a burst of answers does not use up the tries
end = time.time() + float(sys.argv[3])
resend = time.time() + 0.25
while left and time.time() < end:
    r, _, _ = select.select(list(left), [], [], max(0.0, resend - time.time()))
    for s in r:
        try:
            s.recv(64)
        except OSError:
            continue
        got.add(s)
        left.discard(s)
    if time.time() >= resend:
        for s in left:
            s.sendto(b'again', dst)
        resend = time.time() + 0.25
print(len(got))
"#;

#[test]
fn nat_outgoing_to_an_external_host() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("nat");
    let a = vnode(&ul, "na", 1, 1, 1, 2);
    let ext = ul.external_host("192.168.50.100/24", None);
    apply(&[&a], &pool(EncapMode::Never, EncapMode::Never, true), &[]);
    let (p0, p0_ip) = a.pod(0);
    let (p1, _) = a.pod(1);
    ping_eventually(p0, ext.ip);
    let seen = tcp_transfer_seen(p0, ext.ns(), ext.ip, 5005, 1 << 20).expect("TCP out");
    assert_eq!(seen, a.ip, "the external host sees the node's address");
    let t = trace_inject(&a, "default/na-0", ext.ip, "tcp", 5005);
    assert!(
        step(&t, "sent").contains(&format!("; natOutgoing: {p0_ip}:40000 as {}:", a.ip)),
        "{t:?}"
    );

    // 1,000 concurrent UDP flows from two pods: 1,000 distinct node ports
    let server = ext.spawn(&["python3", "-c", UDP_SERVER, "12"]);
    std::thread::sleep(Duration::from_millis(500));
    let c0 = Bg::spawn(
        Some(p0),
        &[
            "python3",
            "-c",
            UDP_CLIENT,
            &ext.ip.to_string(),
            "500",
            "10",
        ],
    );
    let c1 = Bg::spawn(
        Some(p1),
        &[
            "python3",
            "-c",
            UDP_CLIENT,
            &ext.ip.to_string(),
            "500",
            "10",
        ],
    );
    for c in [c0, c1] {
        let o = c.wait(Duration::from_secs(30));
        let n: usize = String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        assert_eq!(n, 500, "every flow got its answer back: {o:?}");
    }
    let o = server.wait(Duration::from_secs(30));
    let seen: Vec<(String, u16)> = serde_json::from_slice(&o.stdout).expect("server output");
    assert!(
        seen.iter().all(|(ip, _)| ip == &a.ip.to_string()),
        "all SNATed to the node"
    );
    let ports: std::collections::HashSet<u16> = seen.iter().map(|(_, p)| *p).collect();
    assert_eq!(ports.len(), seen.len(), "no port shared by two flows");
    assert!(seen.len() >= 1000, "1,000 flows seen: {}", seen.len());

    // without natOutgoing the outside sees the pod (and routes back to it)
    apply(&[&a], &pool(EncapMode::Never, EncapMode::Never, false), &[]);
    ext.ip(&["route", "add", POOL, "via", &a.ip.to_string()]);
    let seen = tcp_transfer_seen(p0, ext.ns(), ext.ip, 5006, 1 << 20).expect("TCP out, no NAT");
    assert_eq!(seen, p0_ip, "the external host sees the pod's address");
}

#[test]
fn hostile_vxlan_is_dropped_by_reason_and_others_flow() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("hx");
    let a = vnode(&ul, "na", 1, 1, 1, 1);
    let b = vnode(&ul, "nb", 1, 2, 2, 1);
    apply(
        &[&a, &b],
        &pool(EncapMode::Always, EncapMode::Never, false),
        &[],
    );
    a.pod_mtu(1450);
    b.pod_mtu(1450);
    let (a_ns, a_ip) = a.pod(0);
    let (_, b_ip) = b.pod(0);
    ping_eventually(a_ns, b_ip);
    let uplink_mac =
        a.sw.ports()
            .into_iter()
            .find(|p| p.name == "up")
            .expect("uplink")
            .mac
            .to_string();
    let evil = ul.external_host("192.168.50.66/24", None);
    let inner = format!(
        "Ether(src='02:00:00:00:00:99', dst='{}')/IP(src='{b_ip}', dst='{a_ip}')/ICMP()",
        a.vtep_mac
    );
    let outer = |src: &str| {
        format!(
            "Ether(src=get_if_hwaddr(iface), dst='{uplink_mac}')/IP(src='{src}', dst='{}')",
            a.ip
        )
    };
    // the VXLAN header as bytes: scapy's VXLAN layer sets GPE bits before
    // an Ether layer, which a Calico peer (and this switch) refuses
    let cases = [
        // a known peer's address, another network
        (
            "tunnel_wrong_vni",
            format!(
                "{}/UDP(sport=50000, dport=4789)/Raw(bytes.fromhex('0800000000004d00'))/{inner}",
                outer(&b.ip.to_string())
            ),
        ),
        // nobody we know
        (
            "tunnel_unknown_peer",
            format!(
                "{}/UDP(sport=50000, dport=4789)/Raw(bytes.fromhex('0800000000100000'))/{inner}",
                outer("192.168.50.66")
            ),
        ),
        // cut inside the VXLAN header
        (
            "tunnel_truncated",
            format!(
                "Raw(bytes({}/UDP(sport=50000, dport=4789)/Raw(bytes.fromhex('0800000000100000'))/{inner})[:46])",
                outer(&b.ip.to_string())
            ),
        ),
        // an IPv4 total length longer than the frame
        (
            "tunnel_bad_outer_ip",
            format!(
                "{}/UDP(sport=50000, dport=4789)/Raw(bytes.fromhex('0800000000100000'))/{inner}",
                outer(&b.ip.to_string()).replace("/IP(", "/IP(len=1400, ")
            ),
        ),
    ];
    for (reason, pkt) in &cases {
        let before = a.drops(reason);
        for _ in 0..3 {
            scapy_send(evil.ns(), &evil.iface, pkt);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while a.drops(reason) < before + 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{reason} not counted for {pkt}: drops {:?}, ports {:?}",
                a.sw.stats()
                    .drops
                    .iter()
                    .filter(|(_, &n)| n > 0)
                    .collect::<Vec<_>>(),
                a.sw.stats().ports
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // the pods still talk
    let o = ping_output(a_ns, b_ip, 3);
    assert!(o.status.success(), "after the junk: {o:?}");
}

#[test]
fn the_host_keeps_its_own_traffic_through_the_host_port() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("hp");
    let tap = tap_name();
    let port = format!("host=tap:{tap}");
    let a = vnode_with(
        &ul,
        "na",
        1,
        1,
        1,
        1,
        &["--port", &port, "--host-port", "host"],
    );
    apply(
        &[&a],
        &pool(EncapMode::Always, EncapMode::Never, false),
        &[],
    );
    let uplink_mac =
        a.sw.ports()
            .into_iter()
            .find(|p| p.name == "up")
            .expect("uplink")
            .mac
            .to_string();
    // the host's stack: the TAP with the node's address and the uplink's MAC
    let host = Netns::wired(&format!("{tap}ns"), &tap, &uplink_mac, a.ip);
    ip(&[
        "-n",
        &host.name,
        "addr",
        "add",
        &format!("{}/24", a.ip),
        "dev",
        "eth0",
    ]);
    let ext = ul.external_host("192.168.50.100/24", None);
    // SSH, the agent or BGP to the node's address reach the host, and back
    assert!(ping(ext.ns(), a.ip, 3), "external host -> node address");
    assert!(ping(&host.name, ext.ip, 3), "host -> external host");
    tcp_transfer(ext.ns(), &host.name, a.ip, 5007, 1 << 20).expect("TCP to the host");
}

/// Reverse-path checks on natively routed pod traffic: a host on the
/// underlay that claims a remote pod's address is not that pod's node, and
/// its frames are dropped and counted; the same from the block's own node
/// reach the pod; once the pool always encapsulates, even the right node's
/// native frames are refused: its pods' packets come in the tunnel.
#[test]
fn native_pod_sources_are_taken_only_from_their_node() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("rp");
    let a = vnode(&ul, "na", 1, 1, 1, 1);
    let (a_ns, a_ip) = a.pod(0);
    let remote_pod = "10.72.4.1";
    // the block's node and an impostor, both speaking for the same pod
    // address with a route to node a's block through node a
    let right = ul.external_host("192.168.50.40/24", None);
    let wrong = ul.external_host("192.168.50.41/24", None);
    for h in [&right, &wrong] {
        h.ip(&["addr", "add", &format!("{remote_pod}/32"), "dev", "lo"]);
        h.ip(&["route", "add", &a.block, "via", &a.ip.to_string()]);
    }
    let owner = Node {
        blocks: vec!["10.72.4.0/26".into()],
        ..Node::new("owner", &["192.168.50.40/24"])
    };
    apply(
        &[&a],
        &pool(EncapMode::Never, EncapMode::Never, false),
        std::slice::from_ref(&owner),
    );
    let ping_from = |h: &Host| {
        h.run(&[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            remote_pod,
            &a_ip.to_string(),
        ])
        .status
        .success()
    };
    // the right node: its first packet may only teach the switch its MAC
    wait_for(
        "the block's node reaches the pod natively",
        Duration::from_secs(15),
        || ping_from(&right).then_some(()),
    );
    let before = a.drops("rpf_wrong_node");
    for _ in 0..3 {
        assert!(ping_from(&right));
    }
    // the pod reaches the remote pod the same way back
    assert!(ping(a_ns, remote_pod, 1));
    assert_eq!(
        a.drops("rpf_wrong_node"),
        before,
        "nothing of the right node's was refused"
    );
    for _ in 0..3 {
        assert!(!ping_from(&wrong), "the impostor reached the pod");
    }
    let after = a.drops("rpf_wrong_node");
    assert!(
        after >= before + 3,
        "the impostor's requests are counted: {before} -> {after}"
    );

    apply(
        &[&a],
        &pool(EncapMode::Always, EncapMode::Never, false),
        &[owner],
    );
    let before = a.drops("rpf_not_tunneled");
    assert!(!ping_from(&right), "native frames of an Always pool");
    assert!(a.drops("rpf_not_tunneled") > before);
}

//! Self-tests of the underlay harness (`testsupport::underlay`) with kernel-only
//! peers: if these fail, a cross-node test's failure says nothing about the
//! switch.
//!
//! Needs root, tshark and python3-scapy; run with
//! `cargo test -p vswitch --test underlay_selftest`.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;
use testsupport::underlay::*;

/// Root, but no hugepages: these tests start no DPDK process.
fn must_be_root() {
    assert!(
        testsupport::is_root(),
        "the underlay self-tests need root (network namespaces, veths, bridges): \
         run them as root"
    );
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Two kernel nodes peered with each other: their pods reach each other
/// over VXLAN, and the bridge carries Calico's VXLAN as tshark reads it.
#[test]
fn kernel_nodes_on_one_subnet_reach_each_other_over_vxlan() {
    must_be_root();
    let ul = Underlay::new("vxlan");
    let a = ul.kernel_node(KernelNodeSpec::new("192.168.50.30", "10.72.3.0/26"));
    let b = ul.kernel_node(KernelNodeSpec::new("192.168.50.31", "10.72.4.0/26"));
    assert_eq!(a.vtep_ip, ip("10.72.3.0"));
    assert_eq!(a.pod_ip, ip("10.72.3.1"));
    a.add_peer_node(&b);
    b.add_peer_node(&a);

    let cap = ul.capture(&ul.bridge(1), "udp port 4789");
    let o = ping_output(a.pod_ns(), b.pod_ip, 3);
    assert!(o.status.success(), "pod a -> pod b:\n{}", text(&o));
    // two routers on the way: node a and node b
    assert!(text(&o).contains("ttl=62"), "{}", text(&o));
    tcp_transfer(a.pod_ns(), b.pod_ns(), b.pod_ip, 5001, 2 << 20).unwrap();
    let pcap = cap.stop();

    let frames = pcap.vxlan();
    assert!(
        frames.len() > 1000,
        "{} VXLAN frames for 2 MiB:\n{}",
        frames.len(),
        pcap.summary("")
    );
    let a_to_b = (a.node_ip, b.node_ip, a.pod_ip, b.pod_ip);
    let b_to_a = (b.node_ip, a.node_ip, b.pod_ip, a.pod_ip);
    for f in &frames {
        assert_eq!(f.vni, 4096, "{f:?}");
        assert_eq!(f.udp_dst_port, 4789, "{f:?}");
        assert_eq!(f.outer_checksum_status, 1, "outer IPv4 checksum: {f:?}");
        assert_eq!(f.inner_checksum_status, Some(1), "inner checksum: {f:?}");
        // what a wire carries: no GSO super-frames
        assert!(f.len <= 1514, "{f:?}");
        let dir = (
            f.outer_src,
            f.outer_dst,
            f.inner_src.unwrap(),
            f.inner_dst.unwrap(),
        );
        let (src, dst) = if dir == a_to_b {
            (&a, &b)
        } else {
            assert_eq!(dir, b_to_a, "{f:?}");
            (&b, &a)
        };
        assert_eq!(f.outer_eth_src, src.node_mac, "{f:?}");
        assert_eq!(f.outer_eth_dst, dst.node_mac, "{f:?}");
        assert_eq!(f.inner_eth_src, src.vtep_mac, "{f:?}");
        assert_eq!(f.inner_eth_dst, dst.vtep_mac, "{f:?}");
        assert_eq!(f.outer_ttl, 64, "{f:?}");
    }
    assert!(
        frames.iter().any(|f| f.len == 1514),
        "full-size frames for a bulk transfer at MTU 1450"
    );
    // the raw bytes agree with tshark: VNI 4096 behind outer Ethernet, IPv4
    // and UDP headers of every frame (the capture filter let only VXLAN in)
    let raw = pcap.raw_frames();
    assert_eq!(raw.len(), pcap.count(""));
    assert_eq!(raw.len(), frames.len());
    for (f, r) in frames.iter().zip(&raw) {
        assert_eq!(r.len(), f.len);
        assert_eq!(&r[14 + 20 + 8 + 4..14 + 20 + 8 + 7], &[0x00, 0x10, 0x00]);
    }
    assert_eq!(pcap.count("vxlan && icmp.type == 8"), 3);
    assert_eq!(pcap.count("vxlan && icmp.type == 0"), 3);
    // the raw field format the accessors rely on
    let rows = pcap.fields(
        "vxlan && icmp.type == 8",
        &["ip.src", "ip.checksum.status", "vxlan.vni"],
    );
    assert_eq!(
        rows[0],
        vec![
            format!("{},{}", a.node_ip, a.pod_ip),
            "1,1".to_owned(),
            "4096".to_owned()
        ]
    );
}

/// Nodes in two subnets reach each other over VXLAN through the router, and
/// a node reaches the external host through it too.
#[test]
fn kernel_nodes_in_two_subnets_reach_each_other_through_the_router() {
    must_be_root();
    let ul = Underlay::with_two_subnets();
    assert_eq!(ul.gateway(1), Some(ip("192.168.50.254")));
    assert_eq!(ul.gateway(2), Some(ip("192.168.60.254")));
    assert_eq!(ul.addr(2, 30), ip("192.168.60.30"));
    let a = ul.kernel_node(KernelNodeSpec::new("192.168.50.30", "10.72.3.0/26"));
    let b = ul.kernel_node(KernelNodeSpec::new("192.168.60.30", "10.72.4.0/26"));
    a.add_peer_node(&b);
    b.add_peer_node(&a);
    let ext = ul.external_host("192.168.50.100/24", Some("192.168.50.254"));

    let c1 = ul.capture(&ul.bridge(1), "udp port 4789");
    let c2 = ul.capture(&ul.bridge(2), "udp port 4789");
    assert!(
        ping(a.pod_ns(), b.pod_ip, 3),
        "pod a -> pod b across subnets"
    );
    tcp_transfer(b.pod_ns(), a.pod_ns(), a.pod_ip, 5002, 1 << 20).unwrap();
    let (p1, p2) = (c1.stop(), c2.stop());
    let (f1, f2) = (p1.vxlan(), p2.vxlan());
    assert!(!f1.is_empty() && !f2.is_empty(), "VXLAN on both subnets");
    // a's frames leave on subnet 1 with TTL 64 and cross subnet 2 with 63
    let first = |fs: &[VxlanFrame], ttl| {
        fs.iter()
            .find(|f| f.outer_src == a.node_ip && f.outer_dst == b.node_ip)
            .map(|f| f.outer_ttl)
            == Some(ttl)
    };
    assert!(first(&f1, 64), "{}", p1.summary(""));
    assert!(first(&f2, 63), "{}", p2.summary(""));
    for f in f1.iter().chain(&f2) {
        assert_eq!(f.vni, 4096);
        assert_eq!(f.outer_checksum_status, 1, "{f:?}");
    }

    assert!(ping(b.node_ns(), ext.ip, 2), "node b -> external host");
}

/// An IPIP packet made by scapy on the external host reaches a raw socket on
/// protocol 4 in another namespace byte for byte, and tshark sees it on the
/// bridge.
#[test]
fn ipip_from_scapy_reaches_a_raw_socket_intact() {
    must_be_root();
    let ul = Underlay::new("ipip");
    let ext = ul.external_host("192.168.50.100/24", None);
    let peer = ul.external_host("192.168.50.101/24", None);
    let listener = ipip_listener(peer.ns());
    let cap = ul.capture("br1", "ip proto 4");
    let payload = b"underlay self-test payload";
    let sent = send_ipip(
        ext.ns(),
        "eth0",
        &peer.mac,
        ext.ip,
        peer.ip,
        ip("10.72.9.1"),
        ip("10.72.3.1"),
        payload,
    );
    assert_eq!(sent[9], 4, "outer protocol");
    assert_eq!(&sent[sent.len() - payload.len()..], payload);
    let got = listener.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0], sent, "the packet as received");
    let pcap = cap.stop();
    let frames = pcap.ipip();
    assert_eq!(frames.len(), 1, "{}", pcap.summary(""));
    let f = &frames[0];
    assert_eq!((f.outer_src, f.outer_dst), (ext.ip, peer.ip));
    assert_eq!(
        (f.inner_src, f.inner_dst),
        (ip("10.72.9.1"), ip("10.72.3.1"))
    );
    assert_eq!(f.inner_proto, 1);
    assert_eq!((f.outer_checksum_status, f.inner_checksum_status), (1, 1));
    assert_eq!(
        (f.eth_src.as_str(), f.eth_dst.as_str()),
        (ext.mac.as_str(), peer.mac.as_str())
    );
    assert_eq!(listener.stop().len(), 1);
}

/// A VXLAN frame built by scapy (as another Calico node would send it) is
/// taken in by a kernel node, and the pod's answer comes back over VXLAN to
/// the peer registered with add_peer.
#[test]
fn kernel_node_answers_a_scapy_vxlan_frame() {
    must_be_root();
    let ul = Underlay::new("scapyvx");
    let node = ul.kernel_node(KernelNodeSpec::new("192.168.50.30", "10.72.3.0/26"));
    let ext = ul.external_host("192.168.50.40/24", None);
    // the external host plays a node with block 10.72.8.0/26
    let (peer_vtep, peer_mac) = ("10.72.8.0", "66:ca:c0:a8:32:28");
    node.add_peer(ext.ip, peer_vtep, peer_mac, "10.72.8.0/26");
    let cap = ul.capture("br1", "udp port 4789");
    let sent = scapy_send(
        ext.ns(),
        "eth0",
        &format!(
            "Ether(src=get_if_hwaddr(iface), dst='{}')/IP(src='{}', dst='{}')\
             /UDP(sport=40000, dport=4789)/VXLAN(vni=4096, flags=0x08)\
             /Ether(src='{peer_mac}', dst='{}')/IP(src='10.72.8.5', dst='{}')\
             /ICMP(type=8, id=7, seq=1)/Raw(b'hello')",
            node.node_mac, ext.ip, node.node_ip, node.vtep_mac, node.pod_ip
        ),
    );
    assert_eq!(&sent[..6], &testsupport::mac_bytes(&node.node_mac));
    // the node answers within a millisecond; the capture needs a moment
    std::thread::sleep(Duration::from_secs(1));
    let pcap = cap.stop();
    let frames = pcap.vxlan();
    let reply = frames
        .iter()
        .find(|f| f.outer_src == node.node_ip)
        .unwrap_or_else(|| panic!("no VXLAN from the node:\n{}", pcap.summary("")));
    assert_eq!(reply.outer_dst, ext.ip);
    assert_eq!(reply.vni, 4096);
    assert_eq!(reply.inner_src, Some(node.pod_ip));
    assert_eq!(reply.inner_dst, Some(ip("10.72.8.5")));
    assert_eq!(reply.inner_eth_src, node.vtep_mac);
    assert_eq!(reply.inner_eth_dst, peer_mac);
    assert_eq!(
        pcap.count(&format!(
            "vxlan && icmp.type == 0 && ip.src == {}",
            node.pod_ip
        )),
        1
    );
}

/// The external host answers a kernel node, and is reached from the node's
/// namespace on the subnet.
#[test]
fn external_host_answers_ping_from_a_kernel_node() {
    must_be_root();
    let ul = Underlay::new("ext");
    let node = ul.kernel_node(KernelNodeSpec::new("192.168.50.30", "10.72.3.0/26"));
    let ext = ul.external_host("192.168.50.100/24", None);
    let o = ping_output(node.node_ns(), ext.ip, 2);
    assert!(o.status.success(), "node -> external host:\n{}", text(&o));
    // a server on the host is reachable from the node too
    tcp_transfer(node.node_ns(), ext.ns(), ext.ip, 8080, 64 << 10).unwrap();
    let seen = tcp_transfer_seen(node.node_ns(), ext.ns(), ext.ip, 8081, 1000).unwrap();
    assert_eq!(seen, node.node_ip);
    // the pod has no way out without SNAT: the host has no route back
    assert!(!ping(node.pod_ns(), ext.ip, 1));
}

/// The root-namespace end of an uplink is set up for net_af_packet and
/// carries frames both ways between the root namespace and the bridge.
#[test]
fn uplink_carries_frames_between_the_root_namespace_and_the_bridge() {
    must_be_root();
    let ul = Underlay::new("uplink");
    let host_if = host_if_name("t");
    let port = ul.uplink(&host_if, 1);
    let ext = ul.external_host("192.168.50.100/24", None);
    let link = std::fs::read_to_string(format!("/sys/class/net/{host_if}/mtu")).unwrap();
    assert_eq!(link.trim(), "1500");
    let v6 =
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6")).unwrap();
    assert_eq!(v6.trim(), "1");
    let addrs = Command::new("ip")
        .args(["-o", "addr", "show", "dev", &host_if])
        .output()
        .unwrap();
    assert_eq!(text(&addrs), "", "no address on the uplink");
    let master = ul_run(&ul, &["ip", "-o", "link", "show", &port]);
    assert!(master.contains("master br1"), "{master}");

    // an ARP request sent on the uplink from the root namespace is answered
    // by the external host and the answer comes back on the uplink
    let cap = ul.capture("br1", "arp");
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((sys.argv[1], 0))
s.settimeout(5)
me = bytes.fromhex('02000000aa01')
arp = bytes.fromhex('0001080006040001') + me + bytes([192,168,50,10]) + bytes(6) + bytes([192,168,50,100])
s.send(b'\xff' * 6 + me + b'\x08\x06' + arp)
while True:
    f = s.recv(2048)
    if f[20:22] == b'\x00\x02':
        print(f.hex())
        break
"#;
    let o = Command::new(PYTHON)
        .args(["-c", script, &host_if])
        .output()
        .unwrap();
    assert!(o.status.success(), "ARP over the uplink: {}", text(&o));
    let reply = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    // sender hardware and protocol address of the reply: the external host
    assert_eq!(&reply[44..56], ext.mac.replace(':', ""));
    assert_eq!(&reply[56..64], "c0a83264");
    let pcap = cap.stop();
    assert_eq!(
        pcap.count("arp.opcode == 1 && arp.src.hw_mac == 02:00:00:00:aa:01"),
        1
    );
    assert_eq!(pcap.count("arp.opcode == 2"), 1);
}

fn ul_run(ul: &Underlay, cmd: &[&str]) -> String {
    text(&testsupport::in_ns(ul.ns(), cmd))
}

/// Dropping the underlay and what was made on it leaves nothing behind:
/// namespaces, the uplink's root end, processes.
#[test]
fn drop_removes_namespaces_uplinks_and_processes() {
    must_be_root();
    let ul = Underlay::with_two_subnets();
    let id = ul.ns().to_owned();
    let host_if = host_if_name("d");
    ul.uplink(&host_if, 2);
    let node = ul.kernel_node(KernelNodeSpec::new("192.168.60.30", "10.72.5.0/26"));
    let ext = ul.external_host("192.168.50.100/24", Some("192.168.50.254"));
    let mut bg = ext.spawn(&["sleep", "600"]);
    let cap = ul.capture("br2", "");
    let listener = ipip_listener(node.node_ns());
    let names = || -> Vec<String> {
        let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&id))
            .map(str::to_owned)
            .collect()
    };
    // underlay, router, node, pod, host
    assert_eq!(names().len(), 5, "{:?}", names());
    drop(ext);
    testsupport::wait_for(
        "the process on the dropped host to end",
        Duration::from_secs(5),
        || (!bg.running()).then_some(()),
    );
    drop(bg);
    drop(listener);
    drop(cap);
    drop(node);
    drop(ul);
    assert_eq!(names(), Vec::<String>::new());
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{host_if}")).exists(),
        "uplink {host_if} left behind"
    );
}

/// A test that panics half-way still leaves nothing behind.
#[test]
fn a_panicking_test_cleans_up_too() {
    must_be_root();
    let made = std::sync::Mutex::new((String::new(), String::new()));
    let r = std::panic::catch_unwind(|| {
        let ul = Underlay::new("panic");
        let host_if = host_if_name("p");
        *made.lock().unwrap() = (ul.ns().to_owned(), host_if.clone());
        ul.uplink(&host_if, 1);
        let node = ul.kernel_node(KernelNodeSpec::new("192.168.50.30", "10.72.3.0/26"));
        let _cap = ul.capture("br1", "");
        let _l = ipip_listener(node.pod_ns());
        panic!("on purpose");
    });
    assert!(r.is_err());
    let (id, host_if) = made.into_inner().unwrap();
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with(&id))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{host_if}")).exists());
}

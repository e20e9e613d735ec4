//! Tables under load and attack, end to end: natOutgoing with many flows to
//! many destinations, and a pod scanning the underlay's subnet while pods
//! on two nodes talk through a VXLAN tunnel.
//!
//! Needs root; run with `cargo test -p vswitch --release --test tables_hold`.

use api::{Desired, EncapMode, EndpointSpec, IpPool, MacAddr, Node, Reply, Request};
use std::net::Ipv4Addr;
use std::time::Duration;
use testsupport::underlay::*;
use testsupport::*;

const POOL: &str = "10.73.0.0/16";

/// A vswitchd node with its uplink and kernel pods.
struct VNode {
    name: String,
    ip: Ipv4Addr,
    prefix: u8,
    block: String,
    vtep_ip: Ipv4Addr,
    vtep_mac: String,
    pods: Vec<(Netns, Ipv4Addr)>,
    // the switch goes last: pods' ports first
    sw: Switch,
}

fn vnode(ul: &Underlay, name: &str, host: u32, n: u8, pods: usize) -> VNode {
    let ip = ul.addr(1, host);
    let sw = switch_node(ul, name, 1, &[]);
    let mut v = VNode {
        name: name.to_owned(),
        ip,
        prefix: ul.subnet(1).prefix(),
        block: format!("10.73.{n}.0/26"),
        vtep_ip: Ipv4Addr::new(10, 73, n, 0),
        vtep_mac: format!("66:cb:00:00:01:{n:02x}"),
        pods: Vec::new(),
        sw,
    };
    for i in 0..pods {
        let addr = Ipv4Addr::new(10, 73, n, i as u8 + 1);
        let port = format!("pod{i}");
        let iface = v.sw.add_tap(&port);
        let mac = format!("02:00:0a:49:{n:02x}:{:02x}", i + 1);
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

    fn drops(&self, reason: &str) -> u64 {
        self.sw.stats().drops.get(reason).copied().unwrap_or(0)
    }
}

fn apply(nodes: &[&VNode], pool: &IpPool) {
    let all: Vec<Node> = nodes.iter().map(|n| n.node()).collect();
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

fn pool(vxlan: EncapMode, nat: bool) -> IpPool {
    IpPool {
        block_size: Some(26),
        vxlan_mode: Some(vxlan),
        ipip_mode: Some(EncapMode::Never),
        nat_outgoing: nat,
        ..IpPool::new("pods", POOL)
    }
}

fn ping_eventually(ns: &str, dst: Ipv4Addr) {
    wait_for(&format!("{ns} -> {dst}"), Duration::from_secs(15), || {
        ping(ns, dst, 1).then_some(())
    });
}

/// A UDP echo on port 9999 of every address given, each socket bound to
/// its address so that its answers come from it; prints how many distinct
/// (source address, port) pairs it saw.
const ECHO_SERVER: &str = r#"
import socket, sys, select, time
addrs = sys.argv[2:]
ss = []
for a in addrs:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((a, 9999))
    s.setblocking(False)
    ss.append(s)
seen = set()
end = time.time() + float(sys.argv[1])
while time.time() < end:
    r, _, _ = select.select(ss, [], [], 0.5)
    for s in r:
        while True:
            try:
                d, a = s.recvfrom(64)
            except BlockingIOError:
                break
            seen.add((s.getsockname()[0], a))
            s.sendto(d, a)
print(len(seen))
"#;

/// Opens `sockets` UDP sockets, each sending to every destination: as many
/// flows as sockets times destinations; resends to those not answered yet.
/// Prints the flows answered.
const FLOW_CLIENT: &str = r#"
import socket, sys, select, time
sockets = int(sys.argv[1])
dsts = sys.argv[2:]
ss = []
for _ in range(sockets):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(('0.0.0.0', 0))
    s.setblocking(False)
    ss.append(s)
left = {(i, d) for i in range(sockets) for d in dsts}
def send():
    for (i, d) in sorted(left):
        try:
            ss[i].sendto(b'x', (d, 9999))
        except BlockingIOError:
            time.sleep(0.001)
end = time.time() + float(60)
while left and time.time() < end:
    send()
    until = time.time() + 2.0
    while left and time.time() < until:
        r, _, _ = select.select(ss, [], [], 0.2)
        for s in r:
            i = ss.index(s)
            while True:
                try:
                    _, a = s.recvfrom(64)
                except BlockingIOError:
                    break
                left.discard((i, a[0]))
print(sockets * len(dsts) - len(left))
"#;

/// 20,000 new UDP flows through natOutgoing to 100 destinations, each
/// destination a host address on the underlay: every one is answered.
#[test]
fn twenty_thousand_udp_flows_to_a_hundred_destinations_get_answers() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("tnat");
    let a = vnode(&ul, "ta", 1, 1, 1);
    let ext = ul.external_host(&format!("{}/24", ul.addr(1, 100)), None);
    let dsts: Vec<String> = (0..100u32)
        .map(|i| ul.addr(1, 100 + i).to_string())
        .collect();
    for d in &dsts[1..] {
        ext.ip(&["addr", "add", &format!("{d}/24"), "dev", &ext.iface]);
    }
    apply(&[&a], &pool(EncapMode::Never, true));
    let (p0, _) = a.pod(0);
    ping_eventually(p0, ext.ip);

    let mut args = vec!["python3", "-c", ECHO_SERVER, "90"];
    args.extend(dsts.iter().map(String::as_str));
    let server = ext.spawn(&args);
    std::thread::sleep(Duration::from_millis(500));
    let mut args = vec!["python3", "-c", FLOW_CLIENT, "200"];
    args.extend(dsts.iter().map(String::as_str));
    let started = std::time::Instant::now();
    let o = in_ns(p0, &args);
    let answered: usize = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    eprintln!(
        "{answered} flows answered in {:?}; nat_exhausted {}",
        started.elapsed(),
        a.drops("nat_exhausted")
    );
    assert_eq!(answered, 20_000, "every flow answered: {o:?}");
    assert_eq!(a.drops("nat_exhausted"), 0);
    drop(server);
}

const SCAN: &str = r#"
import socket, ipaddress, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
net = ipaddress.ip_network(sys.argv[1])
for _ in range(3):
    for h in net.hosts():
        try:
            s.sendto(b'x', (str(h), 7))
        except OSError:
            pass
"#;

/// A pod sending to every address of the underlay's subnet makes the switch
/// ask for each: pods on two nodes keep talking through their tunnel, and
/// the peer node's neighbour entry stays.
#[test]
fn a_pod_scanning_the_underlay_leaves_the_tunnel_unharmed() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("tscan");
    let a = vnode(&ul, "sa", 1, 1, 2);
    let b = vnode(&ul, "sb", 2, 2, 1);
    apply(&[&a, &b], &pool(EncapMode::Always, true));
    let (a0, _) = a.pod(0);
    let (a1, _) = a.pod(1);
    let (b0, b0_ip) = b.pod(0);
    ping_eventually(a0, b0_ip);
    ping_eventually(b0, a.pod(0).1);

    // the scan: UDP to every host of the subnet, three rounds
    let net = ul.subnet(1).to_string();
    let scanner = Bg::spawn(Some(a1), &["python3", "-c", SCAN, &net]);
    // pings through the tunnel during the scan: none lost
    let o = in_ns(
        a0,
        &[
            "ping",
            "-c",
            "50",
            "-i",
            "0.05",
            "-W",
            "1",
            &b0_ip.to_string(),
        ],
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let _ = scanner.wait(Duration::from_secs(30));
    assert!(
        text.contains(" 0% packet loss"),
        "the tunnel lost packets during the scan: {text}"
    );
    let stats = a.sw.stats();
    eprintln!(
        "neigh_pending {}, arp suppressed {}",
        a.drops("neigh_pending"),
        stats.conntrack.arp_suppressed
    );
    assert!(a.drops("neigh_pending") > 0, "the scan asked for addresses");
    // and after it, the tunnel still works at once
    assert!(ping(a0, b0_ip, 1), "tunnel after the scan");
}

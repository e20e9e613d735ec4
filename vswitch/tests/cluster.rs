//! Cross-node through the API: two vswitchd nodes on this machine (af-packet
//! uplinks into an underlay namespace, as in `tunnels.rs`), each with a
//! `vsctl agent` watching a real kube-apiserver and its IPAM claims kept in
//! the API (`--ipam-store kube`). The test never tells a switch about the
//! other node: the Node objects, the IPPool and the blocks the switches claim
//! for their pods are all the switches learn from, and pods ping across them
//! over VXLAN.
//!
//! Needs root; run with `cargo test -p vswitch --release --test cluster`.

use api::{Attachment, Reply, Request};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use testsupport::underlay::*;
use testsupport::*;

/// A vswitchd node with its uplink and agent.
struct ClusterNode {
    name: String,
    ip: Ipv4Addr,
    // the agent goes first
    agent: Option<Agent>,
    sw: Switch,
}

fn start_node(ul: &Underlay, kube: &KubeServer, name: &str, host: u32, health: u16) -> ClusterNode {
    let sw = switch_node(ul, name, 1, &["--ipam-store", "kube"]);
    let agent = spawn_agent(&sw, kube, name, health);
    ClusterNode {
        name: name.to_owned(),
        ip: ul.addr(1, host),
        agent: Some(agent),
        sw,
    }
}

/// The node's agent (the vsctl built beside vswitchd), its log in the
/// switch's dir, its health endpoints on 127.0.0.1:`health`.
fn spawn_agent(sw: &Switch, kube: &KubeServer, name: &str, health: u16) -> Agent {
    let vsctl = Path::new(env!("CARGO_BIN_EXE_vswitchd")).with_file_name("vsctl");
    let log = sw.dir.join(format!("agent-{name}.log"));
    Agent::start(&vsctl, sw, kube, name, &format!("127.0.0.1:{health}"), &log)
}

/// Attaches a kernel pod the way the CNI plugin does: the switch assigns the
/// address from its node's blocks (claimed in the API) and makes the TAP,
/// which goes into a namespace of its own.
fn attach_pod(n: &ClusterNode, pod: &str) -> (Netns, Attachment) {
    let a = attach_tap(&n.sw, pod);
    let iface = a
        .iface
        .clone()
        .expect("a TAP attachment names its interface");
    let ns = Netns::wired(
        &format!("{}ns", iface),
        &iface,
        &a.mac.to_string(),
        a.ips[0],
    );
    ip(&[
        "-n",
        &ns.name,
        "link",
        "set",
        "eth0",
        "mtu",
        &a.mtu.to_string(),
    ]);
    (ns, a)
}

/// Waits until `n` routes `peer`'s block holding `addr` (learnt from the API).
fn wait_route(n: &ClusterNode, peer: &str, addr: Ipv4Addr) {
    wait_for(
        &format!("{} learns {peer}'s block of {addr} from the API", n.name),
        Duration::from_secs(30),
        || match n.sw.call(&Request::NodeList {}) {
            Reply::Nodes(nodes) => nodes
                .iter()
                .find(|x| x.name == peer)
                .and_then(|x| x.block_prefixes().ok())
                .filter(|blocks| {
                    blocks.iter().any(|(net, len)| {
                        let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                        u32::from(addr) & mask == u32::from(*net)
                    })
                })
                .map(|_| ()),
            _ => None,
        },
    );
}

#[test]
fn pods_ping_across_nodes_with_routes_only_from_the_api() {
    let _g = serial();
    must_be_root();
    let kube = KubeServer::start();
    // vswitchd finds the API server as any client does
    std::env::set_var("KUBECONFIG", kube.kubeconfig());
    let ul = Underlay::new("cl");
    let (ip_a, ip_b) = (ul.addr(1, 1), ul.addr(1, 2));
    let prefix = ul.subnet(1).prefix();
    kube.apply(&format!(
        "apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata: {{name: cluster-pool}}
spec: {{cidr: 10.74.0.0/24, blockSize: 28, vxlanMode: Always, ipipMode: Never}}
---
apiVersion: v1
kind: Node
metadata:
  name: cla
  annotations: {{projectcalico.org/IPv4Address: {ip_a}/{prefix}}}
---
apiVersion: v1
kind: Node
metadata:
  name: clb
  annotations: {{projectcalico.org/IPv4Address: {ip_b}/{prefix}}}
"
    ));
    let a = start_node(&ul, &kube, "cla", 1, 19411);
    let b = start_node(&ul, &kube, "clb", 2, 19412);
    assert_eq!((a.ip, b.ip), (ip_a, ip_b));

    // the agents bring the pool first: attaching needs it
    for n in [&a, &b] {
        wait_for(
            &format!("{} has the pool from the API", n.name),
            Duration::from_secs(30),
            || match n.sw.call(&Request::PoolList {}) {
                Reply::Pools(p) if p.iter().any(|p| p.name == "cluster-pool") => Some(()),
                _ => None,
            },
        );
    }
    let (pa_ns, pa) = attach_pod(&a, "pa");
    let (pb_ns, pb) = attach_pod(&b, "pb");
    assert_eq!(pa.mtu, 1450, "VXLAN Always: the pod MTU leaves room for it");
    let (pa_ip, pb_ip) = (pa.ips[0], pb.ips[0]);
    assert_ne!(pa_ip, pb_ip);

    // each switch claimed a block in the API...
    let blocks = kube.kubectl_ok(&[
        "get",
        "ipamblocks.vswitch.dev",
        "-o",
        "jsonpath={range .items[*]}{.spec.cidr} {.spec.affinity}{\"\\n\"}{end}",
    ]);
    assert!(
        blocks.contains("host:cla") && blocks.contains("host:clb"),
        "{blocks}"
    );
    // ...and learns the other's from there
    wait_route(&a, "clb", pb_ip);
    wait_route(&b, "cla", pa_ip);

    let cap = ul.capture(&ul.bridge(1), "udp port 4789");
    wait_for(
        &format!("pa {pa_ip} pings pb {pb_ip}"),
        Duration::from_secs(15),
        || ping(&pa_ns.name, pb_ip, 1).then_some(()),
    );
    let o = ping_output(&pb_ns.name, pa_ip, 3);
    assert!(o.status.success(), "ping pb -> pa: {o:?}");
    tcp_transfer(&pa_ns.name, &pb_ns.name, pb_ip, 5101, 1 << 20).expect("TCP pa -> pb");
    let pcap = cap.stop();
    let v = pcap.vxlan();
    assert!(v.len() > 20, "VXLAN frames on the wire: {}", v.len());
    for f in &v {
        assert_eq!(f.vni, 4096, "{f:?}");
        assert!(
            (f.outer_src, f.outer_dst) == (ip_a, ip_b)
                || (f.outer_src, f.outer_dst) == (ip_b, ip_a),
            "{f:?}"
        );
        let inner = (f.inner_src, f.inner_dst);
        assert!(
            inner == (Some(pa_ip), Some(pb_ip)) || inner == (Some(pb_ip), Some(pa_ip)),
            "{f:?}"
        );
    }

    // the agent restarts: it lists everything again and pushes the same
    // document, which vswitchd takes without republishing anything, and
    // pods keep talking meanwhile
    let generation = |n: &ClusterNode| match n.sw.call(&Request::Status {}) {
        Reply::Status(s) => s.generation,
        r => panic!("status: {r:?}"),
    };
    let before = generation(&a);
    let ping_during = Bg::spawn(
        Some(&pa_ns.name),
        &[
            "ping",
            "-c",
            "30",
            "-i",
            "0.1",
            "-W",
            "1",
            &pb_ip.to_string(),
        ],
    );
    let mut a = a;
    if let Some(mut old) = a.agent.take() {
        old.kill();
    }
    a.agent = Some(spawn_agent(&a.sw, &kube, "cla", 19411));
    wait_for("agent a ready again", Duration::from_secs(30), || {
        ready("127.0.0.1:19411").then_some(())
    });
    let out = ping_during.wait(Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("30 packets transmitted, 30 received"),
        "pings across an agent restart: {text}"
    );
    assert_eq!(
        generation(&a),
        before,
        "an agent restart changes nothing in vswitchd"
    );

    // a node that leaves the cluster takes its routes with it
    kube.kubectl_ok(&["delete", "node", "clb"]);
    wait_for(
        "cla forgets clb once its Node object is gone",
        Duration::from_secs(30),
        || match a.sw.call(&Request::NodeList {}) {
            Reply::Nodes(nodes) if !nodes.iter().any(|x| x.name == "clb") => Some(()),
            _ => None,
        },
    );
    assert!(
        !ping(&pa_ns.name, pb_ip, 1),
        "no route to a node that is gone"
    );
    drop(pa_ns);
    drop(pb_ns);
}

//! Kubernetes Services in the dataplane, with kernel pods in network
//! namespaces: ClusterIP load-balancing by Maglev, connections that keep
//! their backend when the endpoints change, refusals for Services with no
//! backend, session affinity, hairpin, policy on the translated
//! destination, and NodePort from the underlay.
//!
//! Needs root; run with `cargo test -p vswitch --release --test services`.

use api::{Backend, Desired, EndpointSpec, MacAddr, Reply, Request, Service};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;
use testsupport::underlay;
use testsupport::*;

/// A TCP server on each port given that answers every line with its name.
const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode() + b"\n"
def conn(c):
    f = c.makefile("rb")
    try:
        for _ in f:
            c.sendall(name)
    except OSError:
        pass
    c.close()
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(512)
    while True:
        c, _ = s.accept()
        threading.Thread(target=conn, args=(c,), daemon=True).start()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// The client side: `spread IP PORT N` (N connections, one question each:
/// the names that answered, counted), `long IP PORT N` (N connections
/// asked once, then again after a line on stdin), `refused IP PORT` (a TCP
/// connect: its outcome and how long it took), `big IP PORT N` (a line of
/// N bytes and its answer), `udp IP PORT` (a datagram and what came back).
const CLIENT: &str = r#"
import json, socket, sys, time
mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def ask(s):
    s.sendall(b"hi\n")
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(100)
        if not d:
            raise OSError("closed")
        buf += d
    return buf.decode().strip()
def outcome(e):
    return "error:" + type(e).__name__
if mode == "spread":
    got = {}
    for _ in range(int(sys.argv[4])):
        try:
            s = socket.create_connection((ip, port), timeout=3)
            name = ask(s)
            s.close()
        except OSError as e:
            name = outcome(e)
        got[name] = got.get(name, 0) + 1
    print(json.dumps(got))
elif mode == "long":
    conns = [socket.create_connection((ip, port), timeout=5) for _ in range(int(sys.argv[4]))]
    out = []
    for s in conns:
        try:
            out.append(ask(s))
        except OSError as e:
            out.append(outcome(e))
    print(json.dumps(out), flush=True)
    sys.stdin.readline()
    out = []
    for s in conns:
        try:
            out.append(ask(s))
        except OSError as e:
            out.append(outcome(e))
    print(json.dumps(out), flush=True)
elif mode == "refused":
    t = time.time()
    try:
        socket.create_connection((ip, port), timeout=3).close()
        r = "connected"
    except ConnectionRefusedError:
        r = "refused"
    except OSError as e:
        r = outcome(e)
    print(json.dumps({"result": r, "secs": time.time() - t}))
elif mode == "big":
    s = socket.create_connection((ip, port), timeout=5)
    try:
        s.sendall(b"x" * int(sys.argv[4]) + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            d = s.recv(100)
            if not d:
                raise OSError("closed")
            buf += d
        r = buf.decode().strip()
    except OSError as e:
        r = outcome(e)
    print(json.dumps({"result": r}))
elif mode == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.connect((ip, port))
    s.send(b"x")
    try:
        s.recv(100)
        r = "answered"
    except ConnectionRefusedError:
        r = "refused"
    except OSError as e:
        r = outcome(e)
    print(json.dumps({"result": r}))
"#;

const NS: &str = "svc";
const VIP_WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP_STICKY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);
const VIP_SELF: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 13);

/// A kernel pod on a TAP port, with its name server running.
struct KPod {
    name: String,
    ns: Netns,
    ip: Ipv4Addr,
    server: Option<Child>,
}

impl Drop for KPod {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

fn kpod(sw: &Switch, i: u8, name: &str, ip: Ipv4Addr, labels: &[(&str, &str)]) -> KPod {
    let port = format!("pod{i}");
    let iface = sw.add_tap(&port);
    let mac = format!("02:00:0a:60:00:{:02x}", i + 1);
    let ns = Netns::wired(&format!("{iface}ns"), &iface, &mac, ip);
    let r = sw.call(&Request::EndpointSet {
        endpoint: EndpointSpec {
            port,
            mac: mac.parse::<MacAddr>().expect("test MAC"),
            ips: vec![ip],
            pod: Some(format!("{NS}/{name}")),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            namespace: Some(NS.to_owned()),
            service_account: None,
            named_ports: Vec::new(),
        },
    });
    assert_eq!(r, Reply::Done, "endpoint-set {name}");
    let mut server = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", SERVER, name])
        .args(["8080", "8081"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("name server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("server stdout"))
        .read_line(&mut line)
        .expect("server ready line");
    assert_eq!(line.trim(), "ready", "name server in {name}");
    KPod {
        name: name.to_owned(),
        ns,
        ip,
        server: Some(server),
    }
}

fn client(ns: &str, args: &[&str]) -> serde_json::Value {
    let mut cmd = vec!["python3", "-c", CLIENT];
    cmd.extend_from_slice(args);
    let o = in_ns(ns, &cmd);
    assert!(o.status.success(), "client {args:?}: {o:?}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

/// `spread`: answers per name.
fn spread(ns: &str, vip: Ipv4Addr, port: u16, n: usize) -> BTreeMap<String, u64> {
    let v = client(
        ns,
        &[
            "spread",
            &vip.to_string(),
            &port.to_string(),
            &n.to_string(),
        ],
    );
    serde_json::from_value(v).expect("counts")
}

fn backend(p: &KPod, port: u16) -> Backend {
    Backend {
        ip: p.ip,
        port,
        node: None,
    }
}

fn service(name: &str, vip: Ipv4Addr, ports: Vec<api::ServicePort>) -> Service {
    Service {
        name: format!("{NS}/{name}"),
        cluster_ips: vec![vip],
        ports,
        affinity_timeout: None,
    }
}

fn tcp_port(port: u16, backends: Vec<Backend>) -> api::ServicePort {
    api::ServicePort {
        name: None,
        protocol: api::policy::K8sProtocol::Tcp,
        port,
        node_port: None,
        backends,
    }
}

fn apply_services(sw: &Switch, services: Vec<Service>) {
    let r = sw.call(&Request::Apply {
        doc: Desired {
            services: Some(services),
            ..Default::default()
        },
    });
    assert_eq!(r, Reply::Done, "apply services");
}

fn drops(sw: &Switch, reason: &str) -> u64 {
    sw.stats().drops.get(reason).copied().unwrap_or(0)
}

/// A `long` client: its connections' first answers, and a handle to ask
/// again.
struct Long {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Long {
    fn open(ns: &str, vip: Ipv4Addr, port: u16, n: usize) -> (Long, Vec<String>) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", CLIENT, "long"])
            .args([vip.to_string(), port.to_string(), n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("long client");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("first answers");
        let first: Vec<String> =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        (
            Long {
                child,
                stdin,
                stdout,
            },
            first,
        )
    }

    fn ask_again(mut self) -> Vec<String> {
        self.stdin.write_all(b"go\n").expect("go");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("second answers");
        let _ = self.child.wait();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

const POLICY: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: svc, labels: {ns: svc}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-8080-only, namespace: svc}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - ports: [{protocol: TCP, port: 8080}]
"#;

#[test]
fn cluster_ip_services() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    let web: Vec<KPod> = (0..3u8)
        .map(|i| {
            kpod(
                &sw,
                i,
                &format!("web-{i}"),
                Ipv4Addr::new(10, 70, 0, i + 1),
                &[("app", "web")],
            )
        })
        .collect();
    let cl = kpod(
        &sw,
        3,
        "client",
        Ipv4Addr::new(10, 70, 0, 10),
        &[("app", "client")],
    );
    let cns = cl.ns.name.clone();
    let all = |ps: &[&KPod], port| ps.iter().map(|p| backend(p, port)).collect::<Vec<_>>();
    let every: Vec<&KPod> = web.iter().collect();
    let sticky = Service {
        affinity_timeout: Some(600),
        ..service("sticky", VIP_STICKY, vec![tcp_port(80, all(&every, 8080))])
    };
    let empty = service(
        "empty",
        VIP_EMPTY,
        vec![
            tcp_port(80, vec![]),
            api::ServicePort {
                protocol: api::policy::K8sProtocol::Udp,
                ..tcp_port(53, vec![])
            },
        ],
    );
    let myself = service(
        "self",
        VIP_SELF,
        vec![tcp_port(80, vec![backend(&web[0], 8080)])],
    );
    let web_svc = |backends: &[&KPod]| {
        service(
            "web",
            VIP_WEB,
            vec![
                tcp_port(80, all(backends, 8080)),
                tcp_port(81, all(backends, 8081)),
            ],
        )
    };
    apply_services(
        &sw,
        vec![
            web_svc(&every),
            sticky.clone(),
            empty.clone(),
            myself.clone(),
        ],
    );

    // 300 new connections spread over the three backends
    let got = spread(&cns, VIP_WEB, 80, 300);
    eprintln!("spread: {got:?}");
    assert_eq!(got.values().sum::<u64>(), 300, "{got:?}");
    for p in &web {
        let n = got.get(&p.name).copied().unwrap_or(0);
        assert!(n >= 50, "{} got {n} of 300 connections: {got:?}", p.name);
    }

    // long-lived connections keep their backend when one backend goes
    let (long, first) = Long::open(&cns, VIP_WEB, 80, 30);
    for p in &web {
        assert!(
            first.contains(&p.name),
            "no long connection on {}: {first:?}\n{:?}",
            p.name,
            sw.stats().drops
        );
    }
    apply_services(
        &sw,
        vec![
            web_svc(&[&web[0], &web[1]]),
            sticky.clone(),
            empty.clone(),
            myself.clone(),
        ],
    );
    let second = long.ask_again();
    for (a, b) in first.iter().zip(&second) {
        if a != "web-2" {
            assert_eq!(
                a, b,
                "a connection changed backend: {first:?} -> {second:?}"
            );
        }
    }
    let got = spread(&cns, VIP_WEB, 80, 100);
    assert_eq!(
        got.values().sum::<u64>(),
        got.get("web-0").copied().unwrap_or(0) + got.get("web-1").copied().unwrap_or(0),
        "new connections go to the remaining two only: {got:?}"
    );
    assert!(
        got.len() == 2,
        "both remaining backends take new connections: {got:?}"
    );

    // a Service with no backend refuses at once; so does a port it lacks
    let before = (
        drops(&sw, "service_no_backend"),
        drops(&sw, "service_unknown_port"),
    );
    let r = client(&cns, &["refused", &VIP_EMPTY.to_string(), "80"]);
    assert_eq!(r["result"], "refused", "{r}");
    assert!(
        r["secs"].as_f64().unwrap_or(9.0) < 0.5,
        "refused at once: {r}"
    );
    let r = client(&cns, &["udp", &VIP_EMPTY.to_string(), "53"]);
    assert_eq!(r["result"], "refused", "ICMP port unreachable: {r}");
    let r = client(&cns, &["refused", &VIP_WEB.to_string(), "9999"]);
    assert_eq!(r["result"], "refused", "{r}");
    assert!(
        r["secs"].as_f64().unwrap_or(9.0) < 0.5,
        "refused at once: {r}"
    );
    assert!(drops(&sw, "service_no_backend") >= before.0 + 2);
    assert!(drops(&sw, "service_unknown_port") > before.1);

    // sessionAffinity: ClientIP
    let got = spread(&cns, VIP_STICKY, 80, 50);
    assert_eq!(got.len(), 1, "one backend for one client: {got:?}");
    assert!(got.keys().all(|k| k.starts_with("web-")), "{got:?}");

    // hairpin: a backend reaches itself through its Service
    let got = spread(&web[0].ns.name, VIP_SELF, 80, 5);
    assert_eq!(got.get("web-0"), Some(&5), "{got:?}");
    let got = spread(&web[0].ns.name, VIP_WEB, 80, 40);
    assert_eq!(
        got.keys().filter(|k| k.starts_with("web-")).count(),
        2,
        "web-0 reaches both backends, itself included: {got:?}"
    );
    assert!(got.keys().all(|k| k.starts_with("web-")), "{got:?}");

    // policy judges the backend: ingress to the web pods on 8080 only
    let world = policy::load::load_yaml(POLICY).expect("policy YAML");
    let r = sw.call(&Request::Apply {
        doc: Desired {
            namespaces: Some(world.namespaces.clone()),
            policies: Some(world.policies.clone()),
            ..Default::default()
        },
    });
    assert_eq!(r, Reply::Done, "apply policy");
    let denied = drops(&sw, "policy_ingress");
    let got = spread(&cns, VIP_WEB, 80, 20);
    assert_eq!(
        got.iter()
            .filter(|(k, _)| k.starts_with("web-"))
            .map(|(_, v)| v)
            .sum::<u64>(),
        20,
        "port 80 -> 8080 is allowed: {got:?}"
    );
    let got = spread(&cns, VIP_WEB, 81, 2);
    assert!(
        got.keys().all(|k| k.starts_with("error:")),
        "port 81 -> 8081 is not: {got:?}"
    );
    assert!(
        drops(&sw, "policy_ingress") > denied,
        "ingress denials counted"
    );

    drop(cl);
    drop(web);
    drop(sw);
}

#[test]
fn node_port_from_the_underlay() {
    let _g = serial();
    must_be_root();
    let ul = underlay::Underlay::new("svcnp");
    let node_ip = ul.addr(1, 1);
    let sw = underlay_node(&ul, "np");
    let web: Vec<KPod> = (0..2u8)
        .map(|i| {
            kpod(
                &sw,
                i,
                &format!("web-{i}"),
                Ipv4Addr::new(10, 72, 1, i + 1),
                &[("app", "web")],
            )
        })
        .collect();
    let np = |port: u16, node_port: u16, backends: Vec<Backend>| api::ServicePort {
        node_port: Some(node_port),
        ..tcp_port(port, backends)
    };
    let backends: Vec<Backend> = web.iter().map(|p| backend(p, 8080)).collect();
    let r = sw.call(&Request::Apply {
        doc: Desired {
            pools: vec![api::IpPool {
                block_size: Some(26),
                ..api::IpPool::new("pods", "10.72.0.0/16")
            }],
            nodes: vec![
                api::Node {
                    blocks: vec!["10.72.1.0/26".into()],
                    ..api::Node::new("np", &[&format!("{node_ip}/24")])
                },
                api::Node {
                    blocks: vec!["10.72.2.0/26".into()],
                    ..api::Node::new("other", &["192.168.50.2/24"])
                },
            ],
            services: Some(vec![
                service("web", VIP_WEB, vec![np(80, 30080, backends)]),
                service("none", VIP_EMPTY, vec![np(80, 30081, vec![])]),
            ]),
            ..Default::default()
        },
    });
    assert_eq!(r, Reply::Done, "apply");
    let ext = ul.external_host("192.168.50.100/24", None);

    // the first SYN-ACK may wait for the switch to resolve the host
    let node = node_ip.to_string();
    wait_for("a NodePort answer", Duration::from_secs(20), || {
        let got = spread(ext.ns(), node_ip, 30080, 1);
        got.keys().any(|k| k.starts_with("web-")).then_some(())
    });
    let got = spread(ext.ns(), node_ip, 30080, 40);
    assert_eq!(
        got.get("web-0").copied().unwrap_or(0) + got.get("web-1").copied().unwrap_or(0),
        40,
        "every connection answered by a local backend: {got:?}"
    );
    assert_eq!(got.len(), 2, "both local backends: {got:?}");

    // a NodePort with no backend refuses at once
    let r = client(ext.ns(), &["refused", &node, "30081"]);
    assert_eq!(r["result"], "refused", "{r}");
    assert!(
        r["secs"].as_f64().unwrap_or(9.0) < 0.5,
        "refused at once: {r}"
    );
    assert!(drops(&sw, "service_no_backend") > 0);

    drop(web);
    drop(sw);
}

/// A vswitchd node on the underlay's first subnet, its uplink attached.
fn underlay_node(ul: &underlay::Underlay, name: &str) -> Switch {
    underlay::switch_node(ul, name, 1, &[])
}

/// Node `n` (1, 2, ...) at `ip`, its block 10.72.n.0/26, its VXLAN device
/// as Calico would set it up.
fn vxlan_node(name: &str, ip: Ipv4Addr, n: u8) -> api::Node {
    api::Node {
        blocks: vec![format!("10.72.{n}.0/26")],
        vxlan_tunnel_ip: Some(Ipv4Addr::new(10, 72, n, 0)),
        vxlan_tunnel_mac: Some(format!("66:cb:00:00:00:{n:02x}").parse().expect("MAC")),
        ..api::Node::new(name, &[&format!("{ip}/24")])
    }
}

/// NodePort with `externalTrafficPolicy: Cluster` across two nodes joined
/// by a VXLAN Always pool: a client in the underlay connects to node A's
/// address; the backend on node B answers, its connection carried over
/// VXLAN from node A's VXLAN address both ways; with backends on both
/// nodes, both answer.
#[test]
fn node_port_to_backends_on_other_nodes() {
    let _g = serial();
    must_be_root();
    let ul = underlay::Underlay::new("svcx");
    let (ip_a, ip_b) = (ul.addr(1, 1), ul.addr(1, 2));
    let a = underlay_node(&ul, "na");
    let b = underlay_node(&ul, "nb");
    let on_a = kpod(
        &a,
        0,
        "web-a",
        Ipv4Addr::new(10, 72, 1, 1),
        &[("app", "web")],
    );
    let on_b = kpod(
        &b,
        1,
        "web-b",
        Ipv4Addr::new(10, 72, 2, 1),
        &[("app", "web")],
    );
    let at = |p: &KPod, node: &str| Backend {
        node: Some(node.into()),
        ..backend(p, 8080)
    };
    let np = |vip: Ipv4Addr, name: &str, node_port: u16, backends: Vec<Backend>| {
        service(
            name,
            vip,
            vec![api::ServicePort {
                node_port: Some(node_port),
                ..tcp_port(80, backends)
            }],
        )
    };
    let doc = Desired {
        pools: vec![api::IpPool {
            block_size: Some(26),
            vxlan_mode: Some(api::EncapMode::Always),
            ipip_mode: Some(api::EncapMode::Never),
            // Calico's default: the backends' answers must still not be
            // SNATed by their node
            nat_outgoing: true,
            ..api::IpPool::new("pods", "10.72.0.0/16")
        }],
        nodes: vec![vxlan_node("na", ip_a, 1), vxlan_node("nb", ip_b, 2)],
        services: Some(vec![
            np(VIP_WEB, "far", 30090, vec![at(&on_b, "nb")]),
            np(
                VIP_STICKY,
                "both",
                30091,
                vec![at(&on_a, "na"), at(&on_b, "nb")],
            ),
        ]),
        ..Default::default()
    };
    for sw in [&a, &b] {
        let r = sw.call(&Request::Apply { doc: doc.clone() });
        assert_eq!(r, Reply::Done, "apply");
    }
    let ext = ul.external_host("192.168.50.100/24", None);

    // the first SYNs may go to resolving node B and the client
    wait_for(
        "a NodePort answer from node B",
        Duration::from_secs(20),
        || {
            let got = spread(ext.ns(), ip_a, 30090, 1);
            got.contains_key("web-b").then_some(())
        },
    );
    let cap = ul.capture(&ul.bridge(1), "not arp");
    let got = spread(ext.ns(), ip_a, 30090, 30);
    assert_eq!(
        got.get("web-b").copied(),
        Some(30),
        "every connection answered by the backend on node B: {got:?}"
    );
    // several connections open at once, each asked twice
    let (long, first) = Long::open(ext.ns(), ip_a, 30090, 8);
    assert!(first.iter().all(|n| n == "web-b"), "{first:?}");
    let second = long.ask_again();
    assert!(second.iter().all(|n| n == "web-b"), "{second:?}");
    let pcap = cap.stop();
    // full-sized segments do not fit the tunnel: node A tells the client
    // (path MTU discovery), which sends smaller ones
    let r = client(ext.ns(), &["big", &ip_a.to_string(), "30090", "300000"]);
    assert_eq!(r["result"], "web-b", "{r}");
    assert!(
        drops(&a, "too_big") > 0,
        "the client's first segments were too big"
    );
    let v = pcap.vxlan();
    // node A's VXLAN address: the source Linux would give it
    let tunnel_a = Some(Ipv4Addr::new(10, 72, 1, 0));
    let count = |outer: (Ipv4Addr, Ipv4Addr), inner: (Option<Ipv4Addr>, Option<Ipv4Addr>)| {
        v.iter()
            .filter(|f| (f.outer_src, f.outer_dst) == outer && (f.inner_src, f.inner_dst) == inner)
            .count()
    };
    // 30 connections of 4 segments or more each way, and 8 more
    let to_b = count((ip_a, ip_b), (tunnel_a, Some(on_b.ip)));
    assert!(
        to_b >= 30 * 4,
        "NodePort traffic over VXLAN: {to_b} of {}",
        v.len()
    );
    let from_b = count((ip_b, ip_a), (Some(on_b.ip), tunnel_a));
    assert!(
        from_b >= 30 * 3,
        "answers over VXLAN: {from_b} of {}",
        v.len()
    );
    assert_eq!(to_b + from_b, v.len(), "nothing else in the tunnel: {v:?}");
    assert_eq!(
        pcap.count(&format!("ip.src == {} || ip.dst == {}", on_b.ip, on_b.ip)),
        v.len(),
        "the backend is seen only inside the tunnel"
    );

    // backends on both nodes: both answer through node A
    let got = spread(ext.ns(), ip_a, 30091, 40);
    assert_eq!(
        got.get("web-a").copied().unwrap_or(0) + got.get("web-b").copied().unwrap_or(0),
        40,
        "every connection answered: {got:?}"
    );
    assert_eq!(got.len(), 2, "both nodes' backends: {got:?}");
    // and node B sends its backends' share to node A's the same way
    wait_for(
        "a NodePort answer from node A",
        Duration::from_secs(20),
        || {
            let got = spread(ext.ns(), ip_b, 30091, 1);
            got.contains_key("web-a").then_some(())
        },
    );
    let got = spread(ext.ns(), ip_b, 30091, 40);
    assert_eq!(
        got.len(),
        2,
        "both nodes' backends, through node B: {got:?}"
    );
    assert_eq!(drops(&a, "nat_exhausted") + drops(&b, "nat_exhausted"), 0);

    drop(on_a);
    drop(on_b);
    drop(a);
    drop(b);
}

//! Policy in the dataplane, with kernel pods in network namespaces: the
//! switch allows and blocks exactly what the policy simulator says for the
//! same YAML, statefully.
//!
//! Needs root; run with `cargo test -p vswitch --release --test policy_dp`.

use api::{EndpointSpec, MacAddr, Reply, Request};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testsupport::*;

/// Five pods in three namespaces, each serving TCP and UDP on 80 and 81
/// under named ports, as `kubectl get -o yaml` would show them.
fn cluster_yaml() -> String {
    let mut y = String::new();
    for ns in ["x", "y", "z"] {
        y += &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n---\n"
        );
    }
    for (i, (ns, pod)) in [("x", "a"), ("x", "b"), ("y", "a"), ("y", "b"), ("z", "c")]
        .into_iter()
        .enumerate()
    {
        y += &format!(
            "apiVersion: v1\n\
             kind: Pod\n\
             metadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}\n\
             spec:\n  containers:\n  - name: serve\n    ports:\n\
             \x20   - {{name: serve-80-tcp, containerPort: 80, protocol: TCP}}\n\
             \x20   - {{name: serve-81-tcp, containerPort: 81, protocol: TCP}}\n\
             \x20   - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}\n\
             \x20   - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}\n\
             status: {{podIP: 10.70.0.{}}}\n---\n",
            i + 1
        );
    }
    y
}

/// Default-deny ingress in x; an allow from namespace y to a named port; an
/// ipBlock with an except; a GlobalNetworkPolicy with Pass then Deny; a Log
/// rule in front of an Allow.
const POLICIES: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
    ports: [{port: serve-80-tcp}, {protocol: UDP, port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-block, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from: [{ipBlock: {cidr: 10.70.0.0/29, except: [10.70.0.4/32]}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: z-egress}
spec:
  order: 10
  selector: pod == 'c'
  types: [Egress]
  egress:
  - action: Pass
    protocol: TCP
    destination: {ports: [80]}
  - action: Deny
    protocol: TCP
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: log-icmp}
spec:
  order: 5
  selector: pod == 'b'
  types: [Ingress]
  ingress:
  - action: Log
    protocol: ICMP
  - action: Allow
    protocol: ICMP
    source: {nets: [10.70.0.0/30]}
"#;

/// The namespaces of the cluster and the policies, as one file to apply.
fn policies_yaml() -> String {
    let ns: String = cluster_yaml()
        .split("---\n")
        .filter(|d| d.contains("kind: Namespace"))
        .map(|d| format!("{d}---\n"))
        .collect();
    format!("{ns}{POLICIES}")
}

/// Runs the real `vsctl` (built beside vswitchd) against the switch.
fn vsctl(sw: &Switch, args: &[&str]) -> std::process::Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_vswitchd")).with_file_name("vsctl");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo build --release --workspace)",
        bin.display()
    );
    Command::new(bin)
        .arg("--socket")
        .arg(&sw.sock)
        .args(args)
        .output()
        .expect("running vsctl")
}

/// Writes `text` into the switch's temp dir; returns the path.
fn write(sw: &Switch, name: &str, text: &str) -> String {
    let p = sw.dir.join(name);
    std::fs::write(&p, text).expect("writing a test file");
    p.to_string_lossy().into_owned()
}

/// What the probes ask, as the simulator names it and as probe.py does.
const PROBES: [(&str, &str); 4] = [
    ("TCP/80", "tcp:{ip}:80"),
    ("TCP/81", "tcp:{ip}:81"),
    ("UDP/80", "udp:{ip}:80"),
    ("ICMP", "icmp:{ip}"),
];

fn probe_py() -> String {
    format!("{}/tests/probe.py", env!("CARGO_MANIFEST_DIR"))
}

/// A pod: its namespace, TAP port and endpoint.
struct KPod {
    ns: Netns,
    key: String,
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

fn pod_endpoint(sw: &Switch, i: usize, info: &api::policy::EndpointInfo) -> KPod {
    let port = format!("pod{i}");
    let iface = sw.add_tap(&port);
    let mac = format!("02:00:0a:46:00:{:02x}", i + 1);
    let ip = info.ips[0];
    let ns = Netns::wired(&format!("{iface}ns"), &iface, &mac, ip);
    let (namespace, name) = info.name.split_once('/').expect("ns/name");
    let r = sw.call(&Request::EndpointSet {
        endpoint: EndpointSpec {
            port: port.clone(),
            mac: mac.parse::<MacAddr>().expect("test MAC"),
            ips: vec![ip],
            pod: Some(format!("{namespace}/{name}")),
            labels: info.labels.clone(),
            namespace: Some(namespace.to_owned()),
            service_account: info.service_account.clone(),
            named_ports: info.named_ports.clone(),
        },
    });
    assert_eq!(r, Reply::Done, "endpoint-set {port}");
    let mut server = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", &probe_py(), "serve"])
        .arg(ip.to_string())
        .args(["80", "81"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("probe server");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(server.stdout.take().expect("server stdout"))
        .read_line(&mut line)
        .expect("server ready line");
    assert_eq!(line.trim(), "ready", "probe server in {}", ns.name);
    KPod {
        ns,
        key: info.name.clone(),
        ip,
        server: Some(server),
    }
}

fn drops(sw: &Switch, reason: &str) -> u64 {
    sw.stats().drops.get(reason).copied().unwrap_or(0)
}

/// Runs every probe from `from` to every other pod, concurrently; returns
/// `(probe name, dst index) -> reachable`.
fn probe_from(from: &KPod, pods: &[KPod]) -> BTreeMap<(String, usize), bool> {
    let mut targets = Vec::new();
    let mut index = BTreeMap::new();
    for (j, p) in pods.iter().enumerate() {
        if p.key == from.key {
            continue;
        }
        for (name, pat) in PROBES {
            let t = pat.replace("{ip}", &p.ip.to_string());
            index.insert(t.clone(), (name.to_owned(), j));
            targets.push(t);
        }
    }
    let mut args = vec!["python3".to_owned(), probe_py(), "probe".to_owned()];
    args.extend(targets);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = in_ns(&from.ns.name, &refs);
    assert!(o.status.success(), "probes from {}: {o:?}", from.key);
    let got: BTreeMap<String, bool> =
        serde_json::from_slice(&o.stdout).expect("probe output is JSON");
    got.into_iter()
        .map(|(t, ok)| (index[&t].clone(), ok))
        .collect()
}

fn spawn_in(ns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn in netns")
}

fn json_of(c: Child) -> serde_json::Value {
    let o = c.wait_with_output().expect("child output");
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

#[test]
fn the_switch_enforces_what_the_simulator_says() {
    let _g = serial();
    must_be_root();
    let cluster = policy::load::load_yaml(&cluster_yaml()).expect("cluster YAML");
    let rules = policy::load::load_yaml(POLICIES).expect("policy YAML");
    let sw = Switch::start(&[]);
    let infos = cluster.endpoints.clone();
    let pods: Vec<KPod> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| pod_endpoint(&sw, i, info))
        .collect();
    let by_key = |k: &str| pods.iter().position(|p| p.key == k).expect("pod");
    let (xa, yb, zc) = (by_key("x/a"), by_key("y/b"), by_key("z/c"));

    // with no policy yet, z/c opens a UDP flow and a TCP connection to x/a
    // port 81 that stay busy while the policy arrives
    let zc_ns = pods[zc].ns.name.clone();
    let xa_ip = pods[xa].ip.to_string();
    let udp_stream = spawn_in(
        &zc_ns,
        &["python3", &probe_py(), "stream-udp", &xa_ip, "81", "6"],
    );
    let tcp_stream = spawn_in(
        &zc_ns,
        &["python3", &probe_py(), "stream-tcp", &xa_ip, "81", "6"],
    );
    std::thread::sleep(Duration::from_millis(1500));

    // the namespaces and policies go in the way a user applies them
    let before_in = drops(&sw, "policy_ingress");
    let before_eg = drops(&sw, "policy_egress");
    let o = vsctl(
        &sw,
        &[
            "apply",
            "-f",
            &write(&sw, "policies.yaml", &policies_yaml()),
        ],
    );
    assert!(o.status.success(), "vsctl apply: {o:?}");
    match sw.call(&Request::PolicyList {}) {
        Reply::Policies(set) => {
            assert_eq!(set.policies, rules.policies, "policies in force");
            assert_eq!(set.namespaces, cluster.namespaces, "namespaces in force");
        }
        r => panic!("policy-list: {r:?}"),
    }

    // every pair, every probe, while the old connections keep going
    let mut got = BTreeMap::new();
    for (i, p) in pods.iter().enumerate() {
        for ((name, j), ok) in probe_from(p, &pods) {
            got.insert((name, i, j), ok);
        }
    }

    // the connections opened before the policy lost nothing, although the
    // policy blocks new ones like them (checked against the simulator below)
    let u = json_of(udp_stream);
    assert!(u["sent"].as_u64().unwrap_or(0) > 1000, "udp stream: {u}");
    assert_eq!(u["missing"], serde_json::json!([]), "udp stream: {u}");
    assert_eq!(u["echoed"], u["sent"], "udp stream: {u}");
    let t = json_of(tcp_stream);
    assert!(t["sent"].as_u64().unwrap_or(0) > 100_000, "tcp stream: {t}");
    assert_eq!(t["received"], t["sent"], "tcp stream: {t}");

    // the simulator, on the same objects
    let mut all = cluster.clone();
    all.policies = rules.policies.clone();
    let ports: Vec<String> = PROBES.iter().map(|(n, _)| n.to_string()).collect();
    let sim = policy::simulate::simulate(&all, &ports).expect("simulation");
    let order: Vec<String> = sim.pods.clone();
    let mut wrong = Vec::new();
    for ((name, i, j), ok) in &got {
        let (si, di) = (
            order
                .iter()
                .position(|k| *k == pods[*i].key)
                .expect("pod in sim"),
            order
                .iter()
                .position(|k| *k == pods[*j].key)
                .expect("pod in sim"),
        );
        let row = &sim.matrices[name].combined[si];
        let want = row.as_bytes()[di] == b'A';
        if want != *ok {
            wrong.push(format!(
                "{name} {} -> {}: switch {}, simulator {}",
                pods[*i].key,
                pods[*j].key,
                if *ok { "allowed" } else { "blocked" },
                if want { "allowed" } else { "blocked" }
            ));
        }
    }
    let allowed = got.values().filter(|&&v| v).count();
    assert!(
        wrong.is_empty(),
        "{} of {} probes disagree:\n{}\n{}",
        wrong.len(),
        got.len(),
        wrong.join("\n"),
        sw.log_tail(20)
    );
    assert!(
        allowed > 10 && got.len() - allowed > 10,
        "a mix of allowed ({allowed}) and blocked ({}) probes",
        got.len() - allowed
    );
    // the established z/c -> x/a:81 flows were among what the policy blocks
    assert!(
        !got[&("TCP/81".to_owned(), zc, xa)],
        "z/c -> x/a TCP/81 is blocked for new connections"
    );
    assert!(
        drops(&sw, "policy_ingress") > before_in,
        "ingress denials counted"
    );
    assert!(
        drops(&sw, "policy_egress") > before_eg,
        "egress denials counted"
    );

    // the Log rule wrote flow-log lines for pings to the b pods
    let log = match sw.call(&Request::FlowLog { after: 0 }) {
        Reply::FlowLog(v) => v,
        r => panic!("flow-log: {r:?}"),
    };
    let to_yb = log
        .iter()
        .find(|e| e.dst == pods[yb].ip && e.protocol == "ICMP")
        .unwrap_or_else(|| panic!("no flow-log line for ICMP to y/b: {log:?}"));
    assert!(to_yb.rule.contains("log-icmp"), "{to_yb:?}");
    assert_eq!(to_yb.direction, "ingress");
    assert_eq!(to_yb.endpoint, "y/b");
    assert!(log.iter().all(|e| e.rule.contains("log-icmp")), "{log:?}");

    let ya = by_key("y/a");
    // a TCP segment of no connection, to a pod with policy, as a raw socket
    // in y/a sends it (source ports below the ephemeral range: no probe's
    // connection has them); prints "rst" when x/a's kernel answers with a
    // reset, which only a segment that got through brings back
    let raw_tcp = |sport: u16, dport: u16, flags: &[u8]| {
        let o = in_ns(
            &pods[ya].ns.name,
            &[
                "python3",
                "-c",
                RAW_TCP,
                &pods[ya].ip.to_string(),
                &pods[xa].ip.to_string(),
                &sport.to_string(),
                &dport.to_string(),
                &flags
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ],
        );
        assert!(o.status.success(), "raw TCP: {o:?}");
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    // hostile: what cannot begin a connection (RST, FIN, FIN-ACK, SYN-ACK,
    // RST-ACK) is invalid, whatever the policy allows
    let before = drops(&sw, "ct_invalid");
    assert_eq!(raw_tcp(21001, 80, &[0x04, 0x01, 0x11, 0x12, 0x14]), "");
    wait_for("ct_invalid drops", Duration::from_secs(5), || {
        (drops(&sw, "ct_invalid") >= before + 5).then_some(())
    });
    // a bare ACK is picked up mid-stream, as Linux does after its
    // conntrack forgot a connection, and judged as a SYN would be: to a
    // port x/a's policy does not open for y, dropped for that policy
    let before_in = drops(&sw, "policy_ingress");
    let before_invalid = drops(&sw, "ct_invalid");
    assert_eq!(
        raw_tcp(21011, 81, &[0x10; 5]),
        "",
        "no answer through policy"
    );
    wait_for("policy_ingress drops", Duration::from_secs(5), || {
        (drops(&sw, "policy_ingress") >= before_in + 5).then_some(())
    });
    assert_eq!(drops(&sw, "ct_invalid"), before_invalid, "not as invalid");
    // and to the port it opens, let through: x/a's kernel, which knows no
    // such connection, answers with a reset that reaches y/a
    let picked = sw.stats().conntrack.picked_up;
    assert_eq!(raw_tcp(21021, 80, &[0x10]), "rst", "{}", sw.log_tail(20));
    assert!(
        sw.stats().conntrack.picked_up >= picked + 2,
        "picked up in y/a's zone and x/a's: {:?}",
        sw.stats().conntrack
    );
    // ... and y/a still reaches x/a's named port
    let again = probe_from(&pods[ya], &pods);
    assert!(
        again[&("TCP/80".to_owned(), xa)],
        "y/a -> x/a TCP/80 after the junk"
    );

    // hostile: a file with a good policy and one with an invalid selector,
    // or an unknown action, is refused whole, with the reason and the line
    let good = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
                metadata: {name: fine}\nspec:\n  selector: all()\n  ingress: [{action: Allow}]\n---\n";
    for (bad, reason) in [
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: broken}\n\
             spec:\n  selector: pod == \n  ingress: [{action: Allow}]\n",
            "selector",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: broken}\n\
             spec:\n  selector: all()\n  ingress: [{action: Drop}]\n",
            "Drop",
        ),
    ] {
        let f = write(&sw, "bad.yaml", &format!("{good}{bad}"));
        let o = vsctl(&sw, &["apply", "-f", &f]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "refused: {o:?}");
        assert!(
            err.contains(reason) && err.contains("line") && err.contains("document 2"),
            "the reason and where: {err}"
        );
    }

    // hostile: the same sent straight to the socket is refused whole too,
    // and what is in force stays
    let bad = serde_json::json!({"op": "apply", "doc": {"policies": [
        {"global": {"metadata": {"name": "fine"}, "spec": {"selector": "all()", "ingress": [{"action": "Allow"}]}}},
        {"global": {"metadata": {"name": "broken"}, "spec": {"selector": "pod == ", "ingress": [{"action": "Allow"}]}}}
    ]}});
    let resp = raw_call(&sw, &bad.to_string());
    assert!(
        resp.contains("\"error\"") && resp.contains("selector"),
        "refused with the reason: {resp}"
    );
    match sw.call(&Request::PolicyList {}) {
        Reply::Policies(set) => assert_eq!(set.policies, rules.policies, "policies unchanged"),
        r => panic!("policy-list: {r:?}"),
    }
    let after = probe_from(&pods[ya], &pods);
    assert!(
        after[&("TCP/80".to_owned(), xa)],
        "still enforced as before"
    );
    assert!(
        !after[&("TCP/81".to_owned(), xa)],
        "still enforced as before"
    );
    drop(pods);
    drop(sw);
}

/// Sends TCP segments from a raw socket: `SRC DST SPORT DPORT FLAGS,...`,
/// one segment per flags byte, with a right checksum so that the receiving
/// kernel takes them; prints "rst" when a reset comes back to SPORT within a
/// second of the last.
const RAW_TCP: &str = r#"
import socket, sys, select, time
src, dst, sport, dport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def csum(b):
    b += bytes(len(b) % 2)
    s = sum(int.from_bytes(b[i:i+2], 'big') for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
for f in sys.argv[5].split(','):
    h = sport.to_bytes(2, 'big') + dport.to_bytes(2, 'big') + (1).to_bytes(4, 'big') \
        + (1).to_bytes(4, 'big') + bytes([0x50, int(f)]) + (1000).to_bytes(2, 'big') + bytes(4)
    ph = socket.inet_aton(src) + socket.inet_aton(dst) + bytes([0, 6]) + len(h).to_bytes(2, 'big')
    c = csum(ph + h)
    s.sendto(h[:16] + c.to_bytes(2, 'big') + h[18:], (dst, 0))
end = time.time() + 1
while time.time() < end:
    r, _, _ = select.select([s], [], [], 0.1)
    if not r:
        continue
    d = s.recv(128)
    t = d[(d[0] & 15) * 4:]
    if int.from_bytes(t[0:2], 'big') == dport and int.from_bytes(t[2:4], 'big') == sport and t[13] & 4:
        print('rst')
        break
"#;

/// The namespaces of [`cluster_yaml`], for a policy file of their own.
fn policies_ns() -> String {
    cluster_yaml()
        .split("---\n")
        .filter(|d| d.contains("kind: Namespace"))
        .map(|d| format!("{d}---\n"))
        .collect()
}

/// A TCP echo on port 7000 of the address given.
const ECHO_7000: &str = r#"
import socket, sys, threading
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 7000))
l.listen(16)
def serve(c):
    while True:
        d = c.recv(64)
        if not d:
            return
        c.sendall(d)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Five connections to the echo: each echoes once, "ready", ten seconds
/// of quiet, then each echoes again; prints how many did.
const HOLD_5: &str = r#"
import socket, sys, time
cs = []
for _ in range(5):
    c = socket.create_connection((sys.argv[1], 7000), timeout=5)
    c.sendall(b'hello')
    assert c.recv(64) == b'hello'
    cs.append(c)
print('ready', flush=True)
time.sleep(10)
ok = 0
for c in cs:
    try:
        c.settimeout(3)
        c.sendall(b'again')
        if c.recv(64) == b'again':
            ok += 1
    except OSError:
        pass
print(ok)
"#;

/// Sends one raw request line; returns the raw reply line.
fn raw_call(sw: &Switch, line: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&sw.sock).expect("control socket");
    s.write_all(line.as_bytes()).expect("write");
    s.write_all(b"\n").expect("write");
    let mut out = String::new();
    BufReader::new(s).read_line(&mut out).expect("read");
    out
}

#[test]
fn a_syn_flood_past_the_conntrack_bound_leaves_others_forwarding() {
    let _g = serial();
    must_be_root();
    // a small table: 64 connections in one worker
    let sw = Switch::start(&["--ct-max", "64"]);
    let cluster = policy::load::load_yaml(&cluster_yaml()).expect("cluster YAML");
    let infos: Vec<api::policy::EndpointInfo> = cluster.endpoints.iter().take(3).cloned().collect();
    let pods: Vec<KPod> = infos
        .iter()
        .enumerate()
        .map(|(i, info)| pod_endpoint(&sw, i, info))
        .collect();
    // pod 1 takes anything (a policy, so that its zone is policed) and
    // echoes on TCP 7000; pod 2 holds five connections to it across the
    // flood. A connection conntrack forgot would be picked up again from
    // its next ACK: that none was shows that none was forgotten
    let allow_all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                     metadata: {name: b-any, namespace: x}\n\
                     spec: {podSelector: {matchLabels: {pod: b}}, policyTypes: [Ingress], ingress: [{}]}\n";
    let o = vsctl(
        &sw,
        &[
            "apply",
            "-f",
            &write(&sw, "allow.yaml", &format!("{}{allow_all}", policies_ns())),
        ],
    );
    assert!(o.status.success(), "apply: {o:?}");
    let mut echo = spawn_in(
        &pods[1].ns.name,
        &["python3", "-c", ECHO_7000, &pods[1].ip.to_string()],
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut held = spawn_in(
        &pods[2].ns.name,
        &["python3", "-c", HOLD_5, &pods[1].ip.to_string()],
    );
    let mut line = String::new();
    {
        use std::io::BufRead;
        std::io::BufReader::new(held.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
    }
    assert_eq!(line.trim(), "ready", "five connections open");
    let picked = sw.stats().conntrack.picked_up;
    // 3,000 SYNs from pod 0 to pod 1, each from another source port
    let o = in_ns(
        &pods[0].ns.name,
        &[
            "python3",
            "-c",
            &format!(
                "import socket\n\
                 s=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)\n\
                 for p in range(3000):\n  h=(20000+p).to_bytes(2,'big')+(80).to_bytes(2,'big')+bytes(8)+bytes([0x50,0x02])+(1000).to_bytes(2,'big')+bytes(4)\n  s.sendto(h, ('{}', 0))",
                pods[1].ip
            ),
        ],
    );
    assert!(o.status.success(), "SYN flood: {o:?}");
    wait_for("evictions", Duration::from_secs(5), || {
        let st = sw.stats();
        (st.conntrack.evicted > 0).then_some(st.conntrack)
    });
    // the established connections of the others are all alive
    let o = held.wait_with_output().expect("holder output");
    let _ = echo.kill();
    let _ = echo.wait();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "5",
        "established connections echo after the flood: {o:?}, {:?}",
        sw.stats().conntrack
    );
    assert_eq!(
        sw.stats().conntrack.picked_up,
        picked,
        "no established connection was forgotten and picked up again"
    );
    // everyone still talks: new connections, pings, replies. A probe
    // may meet the table while the flood's last entries are being evicted,
    // as a client's first SYN may; like the client's retransmission, a
    // second round (a second later) must get through, and a third is not
    // allowed
    for (i, j) in [(2usize, 1usize), (1, 2), (0, 2), (2, 0)] {
        let all = |got: &BTreeMap<(String, usize), bool>| {
            PROBES.iter().all(|(name, _)| got[&((*name).to_owned(), j)])
        };
        let mut got = probe_from(&pods[i], &pods);
        if !all(&got) {
            eprintln!(
                "{} -> {} right after the flood: {got:?}; {:?}",
                pods[i].key,
                pods[j].key,
                sw.stats().conntrack
            );
            std::thread::sleep(Duration::from_secs(1));
            got = probe_from(&pods[i], &pods);
        }
        for (name, _) in PROBES {
            assert!(
                got[&(name.to_owned(), j)],
                "{name} {} -> {} after the flood",
                pods[i].key,
                pods[j].key
            );
        }
    }
    let st = sw.stats();
    assert_eq!(st.conntrack.capacity, 64);
    // the flood went far past the bound (how many of the 3,000 SYNs the
    // pod's TAP queue let through depends on how busy the host is: on a
    // quiet one all of them, with a parallel build about 600)
    assert!(
        st.conntrack.created + st.conntrack.refused >= 8 * st.conntrack.capacity,
        "{:?}",
        st.conntrack
    );
    drop(pods);
    drop(sw);
}

/// UDP probes for the fail-closed test, in a pod's namespace. `listen SECS
/// PORT...` records what arrives on each port (time and sender);
/// `blast SECS IP:PORT...` sends a datagram to each target every
/// millisecond, from before the pod has an interface (those sends fail) to
/// the end.
const BLAST_PY: &str = r#"
import socket, sys, time, json, select
mode, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs
if mode == 'listen':
    socks = []
    for p in sys.argv[3:]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('0.0.0.0', int(p)))
        socks.append(s)
    print('ready', flush=True)
    got = {}
    while time.time() < end:
        r, _, _ = select.select(socks, [], [], 0.05)
        for s in r:
            d, a = s.recvfrom(64)
            got.setdefault(str(s.getsockname()[1]), []).append([time.time(), a[0]])
    print(json.dumps(got))
else:
    targets = [(t.split(':')[0], int(t.split(':')[1])) for t in sys.argv[3:]]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    print('ready', flush=True)
    sent = errors = 0
    while time.time() < end:
        for t in targets:
            try:
                s.sendto(b'p', t)
                sent += 1
            except OSError:
                errors += 1
        time.sleep(0.001)
    print(json.dumps({'sent': sent, 'errors': errors}))
"#;

/// Starts a BLAST_PY mode in `ns` and waits for it to be ready.
fn blast(ns: &str, args: &[String]) -> Child {
    let mut cmd = vec!["python3".to_owned(), "-c".into(), BLAST_PY.into()];
    cmd.extend_from_slice(args);
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut c = spawn_in(ns, &refs);
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(c.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    assert_eq!(line.trim(), "ready", "{args:?}");
    c
}

fn wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The objects of the fail-closed test: namespace x isolates its pods both
/// ways and lets y's clients reach its web pods on UDP 7777 only.
fn isolated_ns_yaml(pods: &[(&str, &str, &str, Option<Ipv4Addr>)]) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {ns: x}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {ns: y}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: default-deny, namespace: x}\n\
         spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {name: web-from-clients, namespace: x}\n\
         spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n\
         \x20 - from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {app: client}}}]\n\
         \x20   ports: [{protocol: UDP, port: 7777}]\n---\n",
    );
    for (ns, name, app, ip) in pods {
        let status = ip.map_or(String::new(), |ip| format!("status: {{podIP: {ip}}}\n"));
        y += &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\n\
             spec: {{nodeName: here, containers: [{{name: c, image: i}}]}}\n{status}---\n"
        );
    }
    y
}

/// What the node agent pushes for `yaml`: namespaces, policies and pods.
fn push_as_agent(sw: &Switch, yaml: &str) {
    let w = policy::load::load_yaml(yaml).expect("test YAML");
    let pods = w
        .endpoints
        .into_iter()
        .map(|mut e| {
            e.local = true;
            e
        })
        .collect();
    let r = sw.call(&Request::Apply {
        doc: api::Desired {
            namespaces: Some(w.namespaces),
            policies: Some(w.policies),
            pods: Some(pods),
            ..Default::default()
        },
    });
    assert_eq!(r, Reply::Done, "the agent's push");
}

/// Attaches pod `x/{name}` at `ip` as CNI ADD does (delegated address, a
/// TAP moved into the pod's existing namespace, Calico's addressing).
fn cni_add(sw: &Switch, ns: &Netns, name: &str, addr: Ipv4Addr) {
    let a = match sw.call(&Request::PodAttach {
        attach: api::PodAttach {
            container_id: format!("fc{name}{}", std::process::id()),
            ifname: "eth0".into(),
            network: None,
            kind: api::AttachKind::Tap,
            pod: Some(format!("x/{name}")),
            pools: vec![],
            ips: Some(vec![addr]),
            socket_dir: None,
            netns: None,
            vhost_mode: None,
        },
    }) {
        Reply::Attachment(a) => a,
        r => panic!("pod-attach {name}: {r:?}"),
    };
    let iface = a.iface.expect("a TAP attachment names its interface");
    ip(&["link", "set", &iface, "netns", &ns.name]);
    ns.ip(&["link", "set", &iface, "name", "eth0"]);
    ns.ip(&["link", "set", "eth0", "address", &a.mac.to_string()]);
    ns.calico_pod_addressing(addr);
}

/// With policy from the agent, a pod attached while its namespace isolates
/// its pods passes nothing the simulator denies, probed every millisecond
/// from before CNI ADD: one pod the agent named before it had an address
/// (the usual order: the agent sees a pod when it is scheduled), one it
/// names only a while after ADD (its interface passes nothing but ARP until
/// then, counted as `unprogrammed`).
#[test]
fn a_pod_attached_into_default_deny_never_passes_what_policy_denies() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&["--policy-source", "agent"]);
    sw.apply_pool("fc", "10.215.0.0/16", 26);
    let client = attach_tap(&sw, "fcclient");
    let client_ip = client.ips[0];
    let client_ns = Netns::wired(
        &format!("{}ns", client.iface.clone().expect("iface")),
        client.iface.as_deref().expect("iface"),
        &client.mac.to_string(),
        client_ip,
    );
    let (web1, web2) = (Ipv4Addr::new(10, 215, 9, 1), Ipv4Addr::new(10, 215, 9, 2));
    let before_add = isolated_ns_yaml(&[
        ("y", "fcclient", "client", Some(client_ip)),
        ("x", "web1", "web", None),
    ]);
    // the client, programmed by hand: a namespace and labels of its own
    let r = sw.call(&Request::EndpointSet {
        endpoint: EndpointSpec {
            port: client.port.clone(),
            mac: client.mac,
            ips: vec![client_ip],
            pod: Some("y/fcclient".into()),
            labels: [("app".to_owned(), "client".to_owned())].into(),
            namespace: Some("y".into()),
            service_account: None,
            named_ports: Vec::new(),
        },
    });
    assert_eq!(r, Reply::Done);
    push_as_agent(&sw, &before_add);

    let ns1 = Netns::quiet(&format!("vswfc1{}", std::process::id() % 100_000));
    let ns2 = Netns::quiet(&format!("vswfc2{}", std::process::id() % 100_000));
    let secs = "4".to_owned();
    let listen = |ns: &Netns, ports: &[&str]| {
        let mut a = vec!["listen".to_owned(), secs.clone()];
        a.extend(ports.iter().map(|p| p.to_string()));
        blast(&ns.name, &a)
    };
    let l1 = listen(&ns1, &["7777", "9999"]);
    let l2 = listen(&ns2, &["7777", "9999"]);
    let lc = listen(&client_ns, &["9999"]);
    let mut send = vec!["blast".to_owned(), secs.clone()];
    for w in [web1, web2] {
        send.push(format!("{w}:7777"));
        send.push(format!("{w}:9999"));
    }
    let bc = blast(&client_ns.name, &send);
    let to_client = vec![
        "blast".to_owned(),
        secs.clone(),
        format!("{client_ip}:9999"),
    ];
    let b1 = blast(&ns1.name, &to_client);
    let b2 = blast(&ns2.name, &to_client);
    std::thread::sleep(Duration::from_millis(200));

    let unprogrammed = drops(&sw, "unprogrammed");
    let t_add = wall();
    cni_add(&sw, &ns1, "web1", web1);
    cni_add(&sw, &ns2, "web2", web2);
    let add_took = wall() - t_add;
    // the agent learns the addresses and names web2 a while later
    std::thread::sleep(Duration::from_millis(300));
    let after_add = isolated_ns_yaml(&[
        ("y", "fcclient", "client", Some(client_ip)),
        ("x", "web1", "web", Some(web1)),
        ("x", "web2", "web", Some(web2)),
    ]);
    let t_push = wall();
    push_as_agent(&sw, &after_add);

    for c in [bc, b1, b2] {
        let v = json_of(c);
        assert!(v["sent"].as_u64().unwrap_or(0) > 100, "{v}");
    }
    let (g1, g2, gc) = (json_of(l1), json_of(l2), json_of(lc));
    let first = |g: &serde_json::Value, port: &str| -> Option<f64> {
        g[port].as_array()?.first()?.get(0)?.as_f64()
    };
    let count = |g: &serde_json::Value, port: &str| g[port].as_array().map_or(0, Vec::len);

    // the simulator on the same objects
    let world = policy::load::load_yaml(&after_add).expect("test YAML");
    let sim = policy::simulate::simulate(&world, &["UDP/7777", "UDP/9999"]).expect("simulation");
    let at = |k: &str| sim.pods.iter().position(|p| p == k).expect("pod in sim");
    let allowed = |probe: &str, from: &str, to: &str| {
        sim.matrices[probe].combined[at(from)].as_bytes()[at(to)] == b'A'
    };
    for (g, web) in [(&g1, "x/web1"), (&g2, "x/web2")] {
        assert!(allowed("UDP/7777", "y/fcclient", web));
        assert!(!allowed("UDP/9999", "y/fcclient", web));
        assert!(!allowed("UDP/9999", web, "y/fcclient"));
        assert_eq!(count(g, "9999"), 0, "{web} got what policy denies: {g}");
        assert!(count(g, "7777") > 0, "{web} got nothing it may: {g}");
    }
    assert_eq!(
        count(&gc, "9999"),
        0,
        "the client got what policy denies: {gc}"
    );
    assert!(
        drops(&sw, "unprogrammed") > unprogrammed,
        "web2 was attached before the agent named it"
    );
    let w1 = first(&g1, "7777").expect("web1's first allowed packet") - t_add;
    let w2 = first(&g2, "7777").expect("web2's first allowed packet") - t_push;
    eprintln!(
        "fail closed: ADD of two pods {:.1} ms; ADD to web1's first allowed packet {:.1} ms; \
         web2's named {:.0} ms after ADD, first allowed packet {:.1} ms after that",
        add_took * 1e3,
        w1 * 1e3,
        (t_push - t_add) * 1e3,
        w2 * 1e3
    );
    assert!(w1 < 2.0 && w2 < 2.0, "{w1} {w2}");
}

//! vswitchd restarts as a node sees them: `kill -9` and a start, then an
//! upgrade (SIGTERM, another binary, start). Pods attached once through the
//! real CNI plugin keep their interfaces, addresses and traffic without
//! any further CNI call: a TCP stream into a pod behind an ingress policy
//! carries on, natOutgoing traffic to the underlay resumes, a DPDK pod
//! (testpmd on virtio-user, vhost-user client mode) answers again, policy
//! still refuses what it refused, and CNI CHECK finds every pod whole.
//!
//! Run with `cargo test --release -p cni-shim --test restart` as root.

mod common;

use common::underlay::*;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const POOL: &str = "10.74.0.0/16";

/// Reads 8-byte sequence numbers on one TCP connection until the client
/// closes it; prints what came, whether it came whole and in order, and
/// the longest silences (ms) with when they ended.
const STREAM_SERVER: &str = r#"
import socket, sys, time, json, struct
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); s.settimeout(60)
c, _ = s.accept(); c.settimeout(60)
buf = b''; expect = 0; ok = True; last = time.time(); gaps = []; err = None
try:
    while True:
        b = c.recv(65536)
        if not b: break
        now = time.time()
        gaps.append((round((now - last) * 1000, 1), now)); last = now
        gaps = sorted(gaps, reverse=True)[:4]
        buf += b
        while len(buf) >= 8:
            (n,) = struct.unpack('>Q', buf[:8]); buf = buf[8:]
            if n != expect: ok = False
            expect = n + 1
except Exception as e:
    err = str(e)
print(json.dumps({"got": expect, "in_order": ok, "gaps": gaps, "error": err}), flush=True)
"#;

/// Sends a sequence number every 5 ms for argv[2] seconds on one TCP
/// connection, then closes it.
const STREAM_CLIENT: &str = r#"
import socket, sys, time, json, struct
s = socket.create_connection((sys.argv[1], 5001), timeout=60)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
end = time.time() + float(sys.argv[2]); n = 0; err = None
try:
    while time.time() < end:
        s.sendall(struct.pack('>Q', n)); n += 1
        time.sleep(0.005)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(30); s.recv(1)
except Exception as e:
    err = str(e)
print(json.dumps({"sent": n, "error": err}), flush=True)
"#;

/// A UDP echo on argv[1]:9999 for argv[2] seconds.
const UDP_ECHO: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 9999)); s.settimeout(0.5)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        d, a = s.recvfrom(2048); s.sendto(d, a)
    except socket.timeout:
        pass
"#;

/// One UDP socket sending to argv[1]:9999 every 20 ms for argv[2] seconds;
/// prints the answers and the longest silence between them (ms).
const UDP_FLOW: &str = r#"
import socket, sys, time, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.02)
end = time.time() + float(sys.argv[2]); sent = 0; got = 0; last = None; gap = 0.0
while time.time() < end:
    s.sendto(str(sent).encode(), (sys.argv[1], 9999)); sent += 1
    try:
        while True:
            s.recvfrom(2048); got += 1; now = time.time()
            if last is not None: gap = max(gap, now - last)
            last = now
    except (socket.timeout, BlockingIOError):
        pass
print(json.dumps({"sent": sent, "got": got, "max_gap_ms": round(gap * 1000, 1)}), flush=True)
"#;

/// Whether a TCP connection from `ns` to `addr:port` opens within 2 s.
fn connects(ns: &Netns, addr: &str, port: u16) -> bool {
    let py = format!(
        "import socket\ntry:\n socket.create_connection(('{addr}', {port}), timeout=2); print('open')\n\
         except Exception as e:\n print('closed', e)\n"
    );
    let o = ns.exec(&["python3", "-c", &py]);
    String::from_utf8_lossy(&o.stdout).starts_with("open")
}

fn policy_yaml(web: &str, client: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: x, labels: {{ns: x}}}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: web-from-clients, namespace: x}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  policyTypes: [Ingress]\n  ingress:\n\
         \x20 - from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]\n\
         \x20   ports: [{{protocol: TCP, port: 5001}}]\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: x, labels: {{app: web}}}}\n\
         spec: {{nodeName: here, containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: {web}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: x, labels: {{app: client}}}}\n\
         spec: {{nodeName: here, containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: {client}}}\n"
    )
}

fn push_policy(sw: &Switch, yaml: &str) {
    let w = policy::load::load_yaml(yaml).expect("test YAML");
    let pods = w
        .endpoints
        .into_iter()
        .map(|mut e| {
            e.local = true;
            e
        })
        .collect();
    let r = sw.call(&api::Request::Apply {
        doc: api::Desired {
            namespaces: Some(w.namespaces),
            policies: Some(w.policies),
            pods: Some(pods),
            ..Default::default()
        },
    });
    assert_eq!(r, api::Reply::Done, "the agent's push");
}

fn json_of(o: &std::process::Output) -> Value {
    let s = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(s.trim()).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {s:?} stderr {:?}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Kills (or stops) vswitchd, checks the pods' interfaces outlive it, and
/// starts it (from `binary`); returns how long the switch was away.
fn restart(sw: &mut Switch, hard: bool, binary: &std::path::Path, pods: &[&Netns]) -> Duration {
    let t = Instant::now();
    if hard {
        sw.kill9();
    } else {
        sw.stop();
    }
    for ns in pods {
        assert!(
            ns.links().contains("eth0"),
            "{}: the pod's interface went with vswitchd",
            ns.name
        );
    }
    sw.restart_with(binary).expect("vswitchd starts again");
    t.elapsed()
}

/// See the module's note.
#[test]
fn pods_and_their_connections_outlive_a_kill_and_an_upgrade() {
    let _g = serial();
    must_be_root();
    let ul = Underlay::new("rst");
    let mut sw = switch_node(&ul, "rst", 1, &[]);
    let node_ip = ul.addr(1, 1);
    let r = sw.call(&api::Request::Apply {
        doc: api::Desired {
            pools: vec![api::IpPool {
                block_size: Some(26),
                nat_outgoing: true,
                ..api::IpPool::new("pods", POOL)
            }],
            nodes: vec![api::Node::new(
                "rst",
                &[&format!("{node_ip}/{}", ul.subnet(1).prefix())],
            )],
            ..Default::default()
        },
    });
    assert_eq!(r, api::Reply::Done);
    let ext = ul.external_host(&format!("{}/24", ul.addr(1, 100)), None);

    let conf = json!({"cniVersion": "1.0.0", "name": "podnet", "type": "vswitch-cni",
                      "socket": sw.sock, "vhostSocketDir": sw.dir.join("pods"),
                      "vhostMode": "client"});
    let web_ns = Netns::new("rstweb");
    let client_ns = Netns::new("rstcli");
    let web_id = format!("rstweb{}", std::process::id());
    let client_id = format!("rstcli{}", std::process::id());
    let mut results = Vec::new();
    for (id, ns, name) in [
        (&web_id, &web_ns, "web"),
        (&client_id, &client_ns, "client"),
    ] {
        let mut call = Call::new(id, &ns.path);
        let args = format!("K8S_POD_NAMESPACE=x;K8S_POD_NAME={name}");
        call.args = &args;
        results.push(call.run("ADD", &conf).ok());
    }
    let web = first_ip(&results[0]);
    let client = first_ip(&results[1]);
    // a DPDK pod: its app listens on the socket, the switch connects to it
    let nfv_ns = Netns::new("rstnfv");
    let nfv_id = format!("rstnfv{}", std::process::id());
    let mut vconf = conf.clone();
    vconf["args"] = json!({"vswitch": {"interface": "vhost"}});
    let nfv = Call::new(&nfv_id, &nfv_ns.path).run("ADD", &vconf).ok();
    let nfv_ip: std::net::Ipv4Addr = first_ip(&nfv).parse().expect("the DPDK pod's address");
    let sock = nfv["interfaces"][0]["socketPath"]
        .as_str()
        .expect("socketPath")
        .to_owned();
    let mac = nfv["interfaces"][0]["mac"]
        .as_str()
        .expect("mac")
        .to_owned();
    let app = Pod::start_listening_reflector(&format!("rstnfv{}", std::process::id()), &sock, &mac);
    let answered = |what: &str| {
        let t = udp_round_trips(&client_ns.name, nfv_ip, 7000, 100);
        assert!(t.replies >= 95, "the DPDK pod {what}: {t:?}");
        t.replies
    };
    answered("before any restart");
    push_policy(&sw, &policy_yaml(&web, &client));

    // before any restart: what policy allows passes, what it refuses does not
    let ext_ip = ext.ip.to_string();
    wait_for("client -> external host", Duration::from_secs(15), || {
        ping(&client_ns.name, &ext_ip, 1).then_some(())
    });
    let listen_5002 = Bg::spawn(
        Some(&web_ns.name),
        &["python3", "-c", &format!(
            "import socket,time\ns=socket.socket(); s.bind(('{web}',5002)); s.listen(8); time.sleep(90)"
        )],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!connects(&client_ns, &web, 5002), "policy lets 5002 in");

    let secs = "24";
    let server = Bg::spawn(Some(&web_ns.name), &["python3", "-c", STREAM_SERVER, &web]);
    let echo = ext.spawn(&["python3", "-c", UDP_ECHO, &ext_ip, "40"]);
    std::thread::sleep(Duration::from_millis(400));
    let stream = Bg::spawn(
        Some(&client_ns.name),
        &["python3", "-c", STREAM_CLIENT, &web, secs],
    );
    let flow = Bg::spawn(
        Some(&client_ns.name),
        &["python3", "-c", UDP_FLOW, &ext_ip, secs],
    );
    std::thread::sleep(Duration::from_secs(3));

    let binary = vswitchd();
    let killed = restart(&mut sw, true, &binary, &[&web_ns, &client_ns]);
    let st = sw.status();
    assert_eq!(st.pods, 3, "{st:?}");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !connects(&client_ns, &web, 5002),
        "policy lets 5002 in after a kill"
    );

    // the upgrade: another binary in place of the one that runs
    let next = sw.dir.join("vswitchd-next");
    std::fs::copy(&binary, &next).expect("copying vswitchd");
    let upgraded = restart(&mut sw, false, &next, &[&web_ns, &client_ns]);
    assert_eq!(sw.status().pods, 3);

    let sent = json_of(&stream.wait(Duration::from_secs(60)));
    let got = json_of(&server.wait(Duration::from_secs(30)));
    let udp = json_of(&flow.wait(Duration::from_secs(30)));
    drop(echo);
    drop(listen_5002);
    eprintln!(
        "restart: kill -9 to serving {killed:.2?}, upgrade (stop to serving) {upgraded:.2?}; \
         TCP stream {sent} -> {got}; natOutgoing UDP {udp}"
    );
    assert!(sent["error"].is_null(), "the TCP stream broke: {sent}");
    assert!(got["error"].is_null(), "the TCP stream broke: {got}");
    assert_eq!(got["in_order"], true, "{got}");
    assert_eq!(got["got"], sent["sent"], "bytes lost: {got} {sent}");
    let udp_got = udp["got"].as_u64().unwrap_or(0);
    let udp_sent = udp["sent"].as_u64().unwrap_or(1);
    // both restarts together take a few seconds of the flow's 24
    assert!(
        udp_got * 4 > udp_sent * 3,
        "natOutgoing did not resume: {udp}"
    );
    assert!(
        !connects(&client_ns, &web, 5002),
        "policy lets 5002 in after an upgrade"
    );
    // the DPDK pod's app ran throughout; the switch connected to it again
    wait_for("the DPDK pod's link", Duration::from_secs(10), || {
        sw.ports()
            .iter()
            .any(|p| p.path.as_deref() == Some(sock.as_str()) && p.link_up)
            .then_some(())
    });
    answered("after a kill and an upgrade");

    // every pod whole for CNI CHECK, with no ADD since the first
    for (i, (id, ns)) in [(&web_id, &web_ns), (&client_id, &client_ns)]
        .into_iter()
        .enumerate()
    {
        Call::new(id, &ns.path)
            .run("CHECK", &with_prev(&conf, &results[i]))
            .ok_silent();
    }
    Call::new(&nfv_id, &nfv_ns.path)
        .run("CHECK", &with_prev(&vconf, &nfv))
        .ok_silent();
    // DEL removes a pod for good: its interface, and its record
    Call::new(&web_id, &web_ns.path)
        .run("DEL", &conf)
        .ok_silent();
    assert!(!web_ns.links().contains("eth0"));
    restart(&mut sw, true, &next, &[&client_ns]);
    assert_eq!(sw.status().pods, 2);
    assert!(sw.pod(&web_id, "eth0").is_none());
    assert!(
        ping(&client_ns.name, &ext_ip, 3),
        "client after the last restart"
    );
    Call::new(&client_id, &client_ns.path)
        .run("DEL", &conf)
        .ok_silent();
    Call::new(&nfv_id, &nfv_ns.path)
        .run("DEL", &vconf)
        .ok_silent();
    drop(app);
}

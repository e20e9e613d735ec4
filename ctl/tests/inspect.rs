//! What an operator sees inside a real vswitchd with kernel pods (TAPs in
//! namespaces):
//!
//! - `vsctl capture`: a TCP exchange between two pods is captured on one
//!   pod's port to a pcapng file and on the other's live through a pipe,
//!   and tshark, an independent decoder, finds the handshake, the payload
//!   both ways, each frame's direction and a timestamp of today. The filter
//!   keeps the pods' pings out. Bad filters and unknown ports are refused,
//!   a port is captured once at a time, and a capture whose reader was
//!   killed ends on its own.
//! - `vsctl get conntrack` lists a live TCP connection in both pods' zones;
//!   a policy applied afterwards leaves it running (policy is stateful),
//!   and `vsctl flush conntrack --pod` makes the policy judge it again,
//!   which cuts it. The policy's allow rule counts the connection it
//!   allowed, in `vsctl stats` and on `/metrics`.
//!
//! - `vsctl get policies -o yaml` (and namespaces) prints objects that
//!   `apply -f` takes back unchanged and `delete -f` removes, every kind.
//! - `vsctl trace`: made-up packets (`--inject`) and real ones, each
//!   stage's decision; see the test's note.
//!
//! Needs root (hugepages, namespaces), tshark and python3.

use api::{EndpointSpec, MacAddr, Reply, Request};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testsupport::{
    free_port, http_get, must_be_root, need_tools, serial, wait_for, Netns, Switch, Vswitchd,
};

/// `vsctl ARGS`, which must succeed; its stdout.
fn vsctl_ok(sw: &Switch, args: &[&str]) -> String {
    let o = vsctl(sw, args).output().expect("running vsctl");
    assert!(
        o.status.success(),
        "vsctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const VSCTL: &str = env!("CARGO_BIN_EXE_vsctl");
const PORT: &str = "7777";
/// tshark's `frame.packet_flags_direction`: inbound, outbound.
const IN: &str = "0x00000001";
const OUT: &str = "0x00000002";

fn vsctl(sw: &Switch, args: &[&str]) -> Command {
    let mut c = Command::new(VSCTL);
    c.arg("--socket").arg(&sw.sock).args(args);
    c
}

/// Starts a capture and waits for its first line on stderr ("capture N on
/// ..."), so that the switch has armed the ports before traffic starts.
fn start_capture(sw: &Switch, args: &[&str], stdout: Stdio) -> Child {
    let mut child = vsctl(sw, &["capture"])
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vsctl capture");
    let mut line = String::new();
    let err = child.stderr.as_mut().expect("stderr");
    BufReader::new(err)
        .read_line(&mut line)
        .expect("reading vsctl's stderr");
    assert!(line.starts_with("capture "), "vsctl capture said: {line}");
    child
}

fn wait_exit(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("vsctl's output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("vsctl did not end within {within:?}");
}

/// The frames of a capture as tshark decodes them: one line per frame,
/// tab-separated fields.
fn tshark(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut c = Command::new("tshark");
    c.args(["-n", "-r"]).arg(file).args(["-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let o = c.output().expect("running tshark");
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

struct Pod {
    ns: Netns,
    addr: Ipv4Addr,
}

fn pod(sw: &Switch, port: &str, n: u8) -> Pod {
    labelled_pod(sw, port, n, &[])
}

/// A pod `shop/{port}` with `labels`, in namespace shop as policy sees it.
fn labelled_pod(sw: &Switch, port: &str, n: u8, labels: &[(&str, &str)]) -> Pod {
    let addr = Ipv4Addr::new(10, 77, 0, n);
    let iface = sw.add_tap(port);
    let mac = format!("02:00:0a:4d:00:{n:02x}");
    let ns = Netns::wired(&format!("{iface}ns"), &iface, &mac, addr);
    let r = sw.call(&Request::EndpointSet {
        endpoint: EndpointSpec {
            port: port.into(),
            mac: mac.parse::<MacAddr>().expect("test MAC"),
            ips: vec![addr],
            pod: Some(format!("shop/{port}")),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            namespace: Some("shop".into()),
            service_account: None,
            named_ports: Vec::new(),
        },
    });
    assert_eq!(r, Reply::Done);
    Pod { ns, addr }
}

const SERVER: &str = "import socket\n\
s = socket.socket()\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 7777))\n\
s.listen()\n\
c, _ = s.accept()\n\
d = c.recv(100)\n\
c.sendall(d.upper())\n\
c.close()\n";

/// One TCP exchange from `client` to `server`: "hello capture" there,
/// "HELLO CAPTURE" back.
fn exchange(client: &Pod, server: &Pod) {
    let srv = server.ns.spawn(&["python3", "-c", SERVER]);
    wait_for("the server to listen", Duration::from_secs(10), || {
        let o = server.ns.exec(&["ss", "-Hltn", "sport", "=", ":7777"]);
        (!o.stdout.is_empty()).then_some(())
    });
    let cli = format!(
        "import socket\n\
         c = socket.create_connection(('{}', 7777), timeout=5)\n\
         c.sendall(b'hello capture')\n\
         print(c.recv(100).decode())\n",
        server.addr
    );
    let said = client.ns.must(&["python3", "-c", &cli]);
    assert_eq!(said.trim(), "HELLO CAPTURE");
    let o = srv.wait(Duration::from_secs(5));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// See the module's note.
#[test]
fn tshark_reads_what_vsctl_capture_wrote() {
    must_be_root();
    need_tools(&["tshark", "python3"]);
    let _g = serial();
    let sw = Vswitchd::new().start();
    let a = pod(&sw, "capa", 1);
    let b = pod(&sw, "capb", 2);
    let file = sw.dir.join("a.pcapng");
    let file_s = file.display().to_string();

    // refusals: each says why, and leaves nothing behind
    for (args, why) in [
        (
            vec!["shop/capa", "--filter", "tcp or udp", "-w", &file_s],
            "bad capture filter",
        ),
        (vec!["nosuchport", "-w", &file_s], "no port or pod named"),
    ] {
        let o = vsctl(&sw, &["capture"])
            .args(&args)
            .output()
            .expect("vsctl");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }

    // pod a's port by its pod name, to a file; pod b's live, through a pipe
    let filter = format!("tcp and port {PORT}");
    let to_file = start_capture(
        &sw,
        &["shop/capa", "--filter", &filter, "-w", &file_s],
        Stdio::null(),
    );
    let busy = vsctl(&sw, &["capture", "capa", "-w", "-"])
        .output()
        .expect("vsctl");
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("captured already"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let live = start_capture(
        &sw,
        &["capb", "--filter", &filter, "-c", "3", "-w", "-"],
        Stdio::piped(),
    );
    let mut live = live;
    let live_out = live.stdout.take().expect("vsctl's stdout");
    let reader = Command::new("tshark")
        .args(["-n", "-r", "-", "-T", "fields", "-e", "tcp.flags.str"])
        .args(["-e", "frame.packet_flags_direction"])
        .stdin(live_out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running tshark on a pipe");

    // pings the filter must keep out, during the exchange
    let pinger =
        a.ns.spawn(&["ping", "-c", "10", "-i", "0.1", &b.addr.to_string()]);
    exchange(&a, &b);
    let pinged = pinger.wait(Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&pinged.stdout).contains("10 received"),
        "{}",
        String::from_utf8_lossy(&pinged.stdout)
    );

    // the live capture stops at its count by itself
    let o = wait_exit(live, Duration::from_secs(10));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seen = reader.wait_with_output().expect("tshark's output");
    let seen = String::from_utf8_lossy(&seen.stdout);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 3, "three frames through the pipe: {seen}");
    // on b's port the SYN goes out to b, the SYN-ACK comes in from b
    assert!(lines[0].contains('S') && lines[0].ends_with(OUT), "{seen}");
    assert!(
        lines[1].contains('A') && lines[1].contains('S') && lines[1].ends_with(IN),
        "{seen}"
    );

    // the file capture ends on SIGINT, as at a terminal
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-INT", &to_file.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let o = wait_exit(to_file, Duration::from_secs(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("0 frames dropped"), "{err}");

    let frames = tshark(
        &file,
        &[
            "frame.interface_name",
            "frame.packet_flags_direction",
            "ip.src",
            "ip.dst",
            "tcp.flags.str",
            "tcp.payload",
            "frame.time_epoch",
            "ip.proto",
        ],
    );
    eprintln!("{} frames in {}", frames.len(), file.display());
    for f in &frames {
        eprintln!("  {}", f.join(" "));
    }
    let (sa, sb) = (a.addr.to_string(), b.addr.to_string());
    let find = |dir: &str, src: &str, flags: &str| {
        frames
            .iter()
            .position(|f| f[1] == dir && f[2] == src && f[4].replace('·', "") == flags)
    };
    // a's port: what a sends comes in (1), what a gets goes out (2)
    let syn = find(IN, &sa, "S").expect("a's SYN, received from a");
    let synack = find(OUT, &sb, "AS").expect("b's SYN-ACK, sent to a");
    let ack = find(IN, &sa, "A").expect("a's ACK, received from a");
    assert!(syn < synack && synack < ack, "handshake in order");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(
        frames
            .iter()
            .any(|f| f[1] == IN && f[2] == sa && f[3] == sb && f[5] == hex("hello capture")),
        "the request, received from a"
    );
    assert!(
        frames
            .iter()
            .any(|f| f[1] == OUT && f[2] == sb && f[5] == hex("HELLO CAPTURE")),
        "the answer, sent to a"
    );
    assert!(
        frames.iter().all(|f| f[0] == "capa" && f[7] == "6"),
        "only TCP of pod a's port (no pings)"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let t: f64 = frames[syn][6].parse().expect("a timestamp");
    assert!(
        (now - t).abs() < 60.0,
        "timestamps are Unix time: {t} vs {now}"
    );

    // a reader killed outright: the switch ends its capture on its own,
    // and the port may be captured again
    let orphan = start_capture(&sw, &["capa", "-w", &file_s], Stdio::null());
    let st = Command::new("kill")
        .args(["-KILL", &orphan.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let _ = wait_exit(orphan, Duration::from_secs(5));
    let again = wait_for(
        "the switch to end the orphaned capture",
        Duration::from_secs(20),
        || {
            let o = vsctl(
                &sw,
                &["capture", "capa", "-w", &file_s, "--duration", "0.2"],
            )
            .output()
            .ok()?;
            o.status.success().then_some(o)
        },
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("frames written"));
}

const ECHO_SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 7000))
s.listen()
c, _ = s.accept()
while True:
    d = c.recv(100)
    if not d:
        break
    c.sendall(d)
"#;

/// Sends a byte and waits half a second for its echo, round after round,
/// writing "PHASE RESULT" lines to DIR/rounds; the phase is what the test
/// wrote to DIR/phase when the round began.
const ECHO_CLIENT: &str = r#"
import socket, sys, time
d = sys.argv[1]
c = socket.create_connection((sys.argv[2], 7000), timeout=5)
c.settimeout(0.5)
while True:
    phase = open(d + '/phase').read().strip()
    if phase == 'stop':
        break
    try:
        c.sendall(b'x')
        res = 'ok' if c.recv(10) else 'closed'
    except socket.timeout:
        res = 'lost'
    except OSError:
        res = 'error'
    with open(d + '/rounds', 'a') as f:
        f.write(phase + ' ' + res + '\n')
    if res in ('closed', 'error'):
        break
    time.sleep(0.1)
"#;

const DENY_INGRESS: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 7001}]
";

/// The rounds of `phase` so far.
fn rounds(dir: &Path, phase: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join("rounds"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{phase} ")).map(str::to_owned))
        .collect()
}

fn set_phase(dir: &Path, phase: &str) {
    std::fs::write(dir.join("phase"), phase).expect("writing the phase");
}

/// See the module's note.
#[test]
fn conntrack_lists_a_connection_and_a_flush_makes_policy_judge_it_again() {
    must_be_root();
    need_tools(&["python3"]);
    let _g = serial();
    let metrics = format!("127.0.0.1:{}", free_port());
    let sw = Vswitchd::new().args(["--metrics-listen", &metrics]).start();
    let a = labelled_pod(&sw, "cta", 1, &[("app", "client")]);
    let b = labelled_pod(&sw, "ctb", 2, &[("app", "server")]);
    let dir = sw.dir.clone();
    set_phase(&dir, "open");

    let _server = b.ns.spawn(&["python3", "-c", ECHO_SERVER]);
    wait_for("the server to listen", Duration::from_secs(10), || {
        let o = b.ns.exec(&["ss", "-Hltn", "sport", "=", ":7000"]);
        (!o.stdout.is_empty()).then_some(())
    });
    let baddr = b.addr.to_string();
    let dir_s = dir.display().to_string();
    let client = a.ns.spawn(&["python3", "-c", ECHO_CLIENT, &dir_s, &baddr]);
    wait_for("echoes", Duration::from_secs(10), || {
        (rounds(&dir, "open").iter().filter(|r| *r == "ok").count() >= 3).then_some(())
    });

    // the connection, in the server's zone and in the client's
    for (pod, who) in [("shop/ctb", "server"), ("shop/cta", "client")] {
        let v: serde_json::Value = serde_json::from_str(&vsctl_ok(
            &sw,
            &["--json", "get", "conntrack", "--pod", pod],
        ))
        .expect("JSON");
        let conns = v["connections"].as_array().expect("connections");
        let c = conns
            .iter()
            .find(|c| c["dport"] == 7000)
            .unwrap_or_else(|| panic!("the {who}'s zone has the connection: {v}"));
        assert_eq!(c["protocol"], "tcp");
        assert_eq!(
            c["src"],
            a.addr.to_string(),
            "listed from the client's side"
        );
        assert_eq!(c["dst"], baddr);
        assert_eq!(c["state"], "established");
        assert_eq!(c["pod"], pod);
        assert!(c["expires_seconds"].as_u64() > Some(3600), "{c}");
    }
    let table = vsctl_ok(&sw, &["get", "conntrack", "--state", "established"]);
    assert!(
        table.starts_with("POD ") && table.contains(&format!("{baddr}:7000")),
        "{table}"
    );
    let none = vsctl_ok(&sw, &["get", "conntrack", "--state", "syn_sent"]);
    assert!(none.ends_with("0 of 0 connections\n"), "{none}");
    let nat = vsctl_ok(&sw, &["get", "nat"]);
    assert!(
        nat.ends_with("0 of 0 translations\n"),
        "no natOutgoing here: {nat}"
    );
    for (args, why) in [
        (
            vec!["get", "conntrack", "--state", "open"],
            "unknown connection state",
        ),
        (
            vec!["flush", "conntrack", "--pod", "shop/nosuch"],
            "no pod or routed port named",
        ),
    ] {
        let o = vsctl(&sw, &args).output().expect("vsctl");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{args:?}");
    }

    // a policy that denies the server's ingress: the established
    // connection goes on, as in Calico (policy judges new connections)
    let file = dir.join("deny.yaml");
    std::fs::write(&file, DENY_INGRESS).expect("writing the policy");
    vsctl_ok(&sw, &["apply", "-f", &file.display().to_string()]);
    set_phase(&dir, "denied");
    wait_for(
        "echoes under the new policy",
        Duration::from_secs(10),
        || (rounds(&dir, "denied").len() >= 4).then_some(()),
    );
    let denied = rounds(&dir, "denied");
    assert!(
        denied.iter().all(|r| r == "ok"),
        "the established connection was cut by the policy alone: {denied:?}"
    );

    // forgetting the server's connections: the next segment is picked up
    // mid-stream, judged, and dropped
    let before = sw.stats().drops.get("policy_ingress").copied().unwrap_or(0);
    let flushed = vsctl_ok(&sw, &["flush", "conntrack", "--pod", "shop/ctb"]);
    assert!(flushed.starts_with("1 connections flushed"), "{flushed}");
    set_phase(&dir, "flushed");
    wait_for("rounds after the flush", Duration::from_secs(15), || {
        (rounds(&dir, "flushed").len() >= 3).then_some(())
    });
    set_phase(&dir, "stop");
    let after = rounds(&dir, "flushed");
    assert!(
        after.iter().all(|r| r == "lost"),
        "after the flush, policy judges the connection and denies it: {after:?}"
    );
    let drops = sw.stats().drops.get("policy_ingress").copied().unwrap_or(0);
    assert!(
        drops > before,
        "the denied segments are policy_ingress drops"
    );
    let v: serde_json::Value = serde_json::from_str(&vsctl_ok(
        &sw,
        &["--json", "get", "conntrack", "--pod", "shop/ctb"],
    ))
    .expect("JSON");
    assert_eq!(v["total"], 0, "nothing denied is tracked: {v}");
    let _ = client.wait(Duration::from_secs(5));

    // the policy's one rule allows the client to port 7001: a connection
    // there (refused by the server's kernel, nothing listens) is one hit
    let knock = format!(
        "import socket\ntry:\n    socket.create_connection(('{baddr}', 7001), timeout=3)\nexcept ConnectionRefusedError:\n    print('refused')\n"
    );
    assert_eq!(a.ns.must(&["python3", "-c", &knock]).trim(), "refused");
    let stats = sw.stats();
    let rule = stats
        .policy_rules
        .iter()
        .find(|r| r.policy.contains("deny-in"))
        .unwrap_or_else(|| panic!("the rule is counted: {:?}", stats.policy_rules));
    assert_eq!(
        (
            rule.direction.as_str(),
            rule.rule,
            rule.action.as_str(),
            rule.hits
        ),
        ("ingress", 0, "allow", 1),
        "{rule:?}"
    );
    let shown = vsctl_ok(&sw, &["stats"]);
    assert!(
        shown
            .lines()
            .any(|l| l.contains(&rule.policy) && l.ends_with(" 1")),
        "{shown}"
    );
    let (code, text) = http_get(&metrics, "/metrics").expect("vswitchd serves /metrics");
    assert_eq!(code, 200);
    let series = format!(
        "vswitch_policy_rule_hits_total{{tier=\"{}\",policy=\"{}\",direction=\"ingress\",rule=\"0\",action=\"allow\"}} 1",
        rule.tier, rule.policy
    );
    assert!(text.contains(&series), "{series} in {text}");
}

const EVERY_KIND: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bank}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.no-telnet}
spec:
  tier: security
  order: 10
  selector: all()
  types: [Ingress]
  ingress:
  - action: Deny
    protocol: TCP
    destination: {ports: [23]}
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: app == 'web'
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: role == 'client', namespaceSelector: team == 'a'}
    destination: {ports: [80, '8000:8080']}
  egress:
  - action: Allow
    protocol: UDP
    destination: {nets: [10.96.0.10/32], ports: [53]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: bank}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchExpressions: [{key: role, operator: In, values: [api]}]}
    - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}
    ports: [{protocol: TCP, port: 5432}]
";

fn vsctl_stdin(sw: &Switch, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = vsctl(sw, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vsctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing to vsctl");
    let o = child.wait_with_output().expect("vsctl's output");
    assert!(
        o.status.success(),
        "vsctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `vsctl get policies -o yaml` and `get namespaces -o yaml` give back
/// objects that `apply -f` takes as they are (nothing changes) and that
/// `delete -f` removes, every kind.
#[test]
fn get_yaml_applies_back_unchanged_and_deletes_every_kind() {
    must_be_root();
    let _g = serial();
    let sw = Vswitchd::new().start();
    vsctl_stdin(&sw, &["apply", "-f", "-"], EVERY_KIND);
    let before = vsctl_ok(&sw, &["--json", "get", "policies"]);
    let v: serde_json::Value = serde_json::from_str(&before).expect("JSON");
    assert_eq!(v["policies"].as_array().map(Vec::len), Some(4), "{before}");
    assert_eq!(
        v["namespaces"].as_array().map(Vec::len),
        Some(2),
        "{before}"
    );

    let yaml = format!(
        "{}{}",
        vsctl_ok(&sw, &["get", "namespaces", "-o", "yaml"]),
        vsctl_ok(&sw, &["get", "policies", "-o", "yaml"])
    );
    for kind in [
        "kind: Namespace",
        "kind: Tier",
        "kind: GlobalNetworkPolicy",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy",
    ] {
        assert!(yaml.contains(kind), "{kind} in\n{yaml}");
    }
    let said = vsctl_stdin(&sw, &["apply", "-f", "-"], &yaml);
    assert_eq!(
        vsctl_ok(&sw, &["--json", "get", "policies"]),
        before,
        "applying what get printed changed something: {said}"
    );
    assert_eq!(
        said.matches("unchanged").count(),
        6,
        "every object unchanged: {said}"
    );

    vsctl_stdin(&sw, &["delete", "-f", "-"], &yaml);
    let after: serde_json::Value =
        serde_json::from_str(&vsctl_ok(&sw, &["--json", "get", "policies"])).expect("JSON");
    assert_eq!(after["policies"], serde_json::json!([]), "{after}");
    assert_eq!(after["namespaces"], serde_json::json!([]), "{after}");
}

/// `vsctl --json ARGS`: one JSON value per line of its output.
fn vsctl_json_lines(sw: &Switch, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    vsctl_ok(sw, &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The detail of the first step of `stage` in a traced packet.
fn step<'a>(p: &'a serde_json::Value, stage: &str) -> &'a str {
    p["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == stage))
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_else(|| panic!("no {stage} step: {p}"))
}

/// Starts a live trace and waits for its first line on stderr ("tracing
/// ..."), so that the switch has armed the ports before traffic starts.
fn start_trace(sw: &Switch, args: &[&str]) -> Child {
    let mut child = vsctl(sw, &["--json", "trace"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vsctl trace");
    let mut line = String::new();
    let err = child.stderr.as_mut().expect("stderr");
    BufReader::new(err)
        .read_line(&mut line)
        .expect("reading vsctl's stderr");
    assert!(line.starts_with("tracing "), "vsctl trace said: {line}");
    child
}

fn traced(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Made-up packets from a pod under a policy that lets the client reach
/// the server on port 7001 only: each says which rule decided, where it
/// would go, or why it is dropped, and none of them leaves a connection
/// behind. Then live traces of real packets: a connection the policy
/// allows (its SYN judged by the rule, its next packet known to conntrack,
/// both delivered: the connection works while traced) and one it denies.
#[test]
fn trace_follows_made_up_and_real_packets_through_policy() {
    must_be_root();
    need_tools(&["python3"]);
    let _g = serial();
    // vswitchd takes a flag from its environment too
    let metrics = format!("127.0.0.1:{}", free_port());
    let sw = Vswitchd::new()
        .env("VSWITCH_METRICS_LISTEN", &metrics)
        .start();
    let a = labelled_pod(&sw, "tra", 1, &[("app", "client")]);
    let b = labelled_pod(&sw, "trb", 2, &[("app", "server")]);
    let policy = sw.dir.join("deny-in.yaml");
    std::fs::write(&policy, DENY_INGRESS).expect("writing the policy");
    vsctl_ok(&sw, &["apply", "-f", &policy.display().to_string()]);
    let baddr = b.addr.to_string();
    // a ClusterIP Service in front of the server's port 7001
    let vip = "10.96.0.10";
    let r = sw.call(&Request::Apply {
        doc: api::Desired {
            services: Some(vec![api::Service {
                name: "shop/web".into(),
                cluster_ips: vec![vip.parse().expect("vip")],
                ports: vec![api::ServicePort {
                    name: None,
                    protocol: api::policy::K8sProtocol::Tcp,
                    port: 80,
                    node_port: None,
                    backends: vec![api::Backend {
                        ip: b.addr,
                        port: 7001,
                        node: None,
                    }],
                }],
                affinity_timeout: None,
            }]),
            ..Default::default()
        },
    });
    assert_eq!(r, Reply::Done);
    let (_, text) = http_get(&metrics, "/metrics").expect("/metrics");
    assert!(
        text.contains("vswitch_service_backends{service=\"shop/web\",port=\"80/TCP\"} 1\n"),
        "{text}"
    );

    // made up: allowed by the rule, denied by default, routed nowhere
    let inject = |to: &str, dport: &str| {
        let v = vsctl_json_lines(
            &sw,
            &[
                "trace", "--inject", "--from", "shop/tra", "--to", to, "--dport", dport,
            ],
        );
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].clone()
    };
    let ok = inject(&baddr, "7001");
    assert_eq!(ok["sent"], serde_json::json!(["trb"]), "{ok}");
    assert_eq!(ok["dropped"], serde_json::json!([]), "{ok}");
    assert_eq!(ok["pod"], "shop/tra");
    assert!(
        ok["packet"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("10.77.0.1:40000 > {baddr}:7001 tcp [S]"))),
        "{ok}"
    );
    let egress = step(&ok, "egress");
    assert!(
        egress.contains("new, recorded as syn_sent") && egress.ends_with("allowed"),
        "{egress}"
    );
    let ingress = step(&ok, "ingress");
    assert!(
        ingress.contains("deny-in ingress rule 0") && ingress.ends_with("allowed"),
        "{ingress}"
    );
    assert!(
        step(&ok, "sent").starts_with("trb (pod shop/trb): "),
        "{ok}"
    );

    let denied = inject(&baddr, "7002");
    assert_eq!(denied["sent"], serde_json::json!([]), "{denied}");
    assert_eq!(
        denied["dropped"],
        serde_json::json!(["policy_ingress"]),
        "{denied}"
    );
    assert!(
        step(&denied, "ingress").contains("no rule matched: tier default denies by default"),
        "{denied}"
    );

    // through the Service: its backend, the rule, the port
    let svc = inject(vip, "80");
    assert_eq!(
        step(&svc, "service"),
        format!("{vip}:80 (Service shop/web): backend {baddr}:7001")
    );
    assert!(
        step(&svc, "ingress").contains(&format!("> {baddr}:7001 tcp;")),
        "{svc}"
    );
    assert!(
        step(&svc, "ingress").contains("deny-in ingress rule 0"),
        "{svc}"
    );
    assert_eq!(svc["sent"], serde_json::json!(["trb"]), "{svc}");

    let nowhere = inject("10.99.0.1", "80");
    assert_eq!(
        nowhere["dropped"],
        serde_json::json!(["no_route"]),
        "{nowhere}"
    );

    let udp = vsctl_json_lines(
        &sw,
        &[
            "trace", "--inject", "--from", "tra", "--to", &baddr, "--proto", "udp", "--dport",
            "7001",
        ],
    );
    assert_eq!(
        udp[0]["dropped"],
        serde_json::json!(["policy_ingress"]),
        "TCP only: {udp:?}"
    );

    let o = vsctl(
        &sw,
        &["trace", "--inject", "--from", "shop/nobody", "--to", &baddr],
    )
    .output()
    .expect("vsctl");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no port or pod named 'shop/nobody'"));
    let none = vsctl_ok(&sw, &["get", "conntrack"]);
    assert!(
        none.ends_with("0 of 0 connections\n"),
        "made-up packets left connections: {none}"
    );

    // live: an allowed connection, traced and working
    let server = b.ns.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', 7001))\n\
         s.listen()\n\
         c, _ = s.accept()\n\
         c.sendall(c.recv(100).upper())\n\
         c.close()\n",
    ]);
    wait_for("the server to listen", Duration::from_secs(10), || {
        let o = b.ns.exec(&["ss", "-Hltn", "sport", "=", ":7001"]);
        (!o.stdout.is_empty()).then_some(())
    });
    let live = start_trace(&sw, &["shop/tra", "--filter", "tcp and port 80", "-c", "2"]);
    let said = a.ns.must(&[
        "python3",
        "-c",
        &format!(
            "import socket\n\
             c = socket.create_connection(('{vip}', 80), timeout=5)\n\
             c.sendall(b'traced')\n\
             print(c.recv(100).decode())\n"
        ),
    ]);
    assert_eq!(said.trim(), "TRACED", "the traced connection works");
    assert!(server.wait(Duration::from_secs(5)).status.success());
    let got = traced(&wait_exit(live, Duration::from_secs(10)));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0]["packet"]
            .as_str()
            .is_some_and(|p| p.contains("tcp [S]")),
        "{}",
        got[0]
    );
    assert!(
        step(&got[0], "ingress").contains("deny-in ingress rule 0"),
        "{}",
        got[0]
    );
    assert_eq!(
        step(&got[0], "service"),
        format!("{vip}:80 (Service shop/web): backend {baddr}:7001")
    );
    assert_eq!(got[0]["sent"], serde_json::json!(["trb"]));
    let known = step(&got[1], "ingress");
    assert!(
        known.contains("not consulted (a known connection)") && known.ends_with("allowed"),
        "{known}"
    );
    assert_eq!(got[1]["sent"], serde_json::json!(["trb"]));
    assert!(got[1]["time_ns"].as_u64() >= got[0]["time_ns"].as_u64());

    // live: a denied one, in the text form
    let mut live = vsctl(&sw, &["trace", "shop/tra", "--filter", "port 7002"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vsctl trace");
    let mut line = String::new();
    BufReader::new(live.stderr.as_mut().expect("stderr"))
        .read_line(&mut line)
        .expect("stderr");
    assert!(
        line.starts_with("tracing 1 packet(s) received on tra"),
        "{line}"
    );
    a.ns.exec(&[
        "python3",
        "-c",
        &format!("import socket\nsocket.create_connection(('{baddr}', 7002), timeout=1)"),
    ]);
    let o = wait_exit(live, Duration::from_secs(10));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("packet 1 on tra (pod shop/tra): 10.77.0.1:"),
        "{text}"
    );
    assert!(text.contains("\n  dropped  policy_ingress\n"), "{text}");

    // a second trace waits for none of the first's packets
    let o = vsctl(
        &sw,
        &["trace", "tra", "--filter", "port 9", "--timeout", "0.5"],
    )
    .output()
    .expect("vsctl");
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("0 of 1 packet(s) traced"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

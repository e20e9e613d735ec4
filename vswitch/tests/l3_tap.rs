//! Routed pods on TAP ports: kernel network namespaces as pods, set up the
//! way Calico sets up a pod (a /32 address, `169.254.1.1 dev eth0 scope
//! link`, `default via 169.254.1.1`), talking through vswitchd.
//!
//! Needs root; run with `cargo test -p vswitch --release --test l3_tap`.

use api::{EndpointSpec, MacAddr, Reply, Request};
use std::net::Ipv4Addr;
use std::process::Command;
use testsupport::*;

/// Adds a TAP port to the switch, moves its interface into a new namespace as
/// `eth0` with Calico's pod addressing, and registers the pod as an endpoint.
fn pod(sw: &Switch, port: &str, mac: &str, addr: Ipv4Addr) -> Netns {
    let iface = sw.add_tap(port);
    let ns = Netns::wired(&format!("{iface}ns"), &iface, mac, addr);
    let r = sw.call(&Request::EndpointSet {
        endpoint: EndpointSpec {
            port: port.into(),
            mac: mac.parse::<MacAddr>().expect("test MAC"),
            ips: vec![addr],
            pod: Some(format!("test/{port}")),
            labels: Default::default(),
            namespace: None,
            service_account: None,
            named_ports: Vec::new(),
        },
    });
    assert_eq!(r, Reply::Done, "endpoint-set {port}");
    ns
}

fn drop_count(sw: &Switch, reason: &str) -> u64 {
    sw.stats().drops.get(reason).copied().unwrap_or(0)
}

#[test]
fn pods_in_namespaces_ping_and_transfer_through_the_switch() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    let a_ip: Ipv4Addr = "10.65.0.1".parse().unwrap();
    let b_ip: Ipv4Addr = "10.65.0.2".parse().unwrap();
    let a = pod(&sw, "pod-a", "02:00:0a:41:00:01", a_ip);
    let b = pod(&sw, "pod-b", "02:00:0a:41:00:02", b_ip);

    let o = in_ns(
        &a.name,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.65.0.2"],
    );
    assert!(
        o.status.success(),
        "ping a -> b failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        sw.log_tail(20)
    );
    // the pod resolved its gateway through the switch's proxy ARP
    let neigh = in_ns(&a.name, &["ip", "neigh", "show", "169.254.1.1"]);
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        neigh.contains("ee:ee:ee:ee:ee:ee"),
        "gateway neighbour: {neigh}"
    );
    // TTL was decremented once on the way (64 - 1)
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ttl=63"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // a TCP transfer of 4 MiB arrives intact
    let server = Command::new("ip")
        .args(["netns", "exec", &b.name, "python3", "-c"])
        .arg(
            "import socket,hashlib\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('10.65.0.2', 5001)); s.listen(1); c,_=s.accept(); h=hashlib.sha256()\n\
             while True:\n  d=c.recv(65536)\n  if not d: break\n  h.update(d)\n\
             print(h.hexdigest())",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 server");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let client = in_ns(
        &a.name,
        &[
            "python3",
            "-c",
            "import socket,hashlib,random\n\
             random.seed(7); d=bytes(random.getrandbits(8) for _ in range(4<<20))\n\
             s=socket.create_connection(('10.65.0.2', 5001), timeout=20); s.sendall(d); s.close()\n\
             print(hashlib.sha256(d).hexdigest())",
        ],
    );
    assert!(client.status.success(), "client: {client:?}");
    let got = server.wait_with_output().expect("server output");
    let sent = String::from_utf8_lossy(&client.stdout).trim().to_owned();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        sent,
        "sha256 of the transfer"
    );
    assert_eq!(sent.len(), 64);

    // a pod that sends from an address that is not its own is stopped
    let before = drop_count(&sw, "spoofed_ip");
    ip(&["-n", &a.name, "addr", "add", "10.65.0.99/32", "dev", "eth0"]);
    let o = in_ns(
        &a.name,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "10.65.0.99",
            "10.65.0.2",
        ],
    );
    assert!(!o.status.success(), "a spoofed ping must not be answered");
    assert!(
        drop_count(&sw, "spoofed_ip") >= before + 2,
        "spoofed packets counted"
    );

    // a pod that sends with another pod's MAC gets nothing through either
    let before = drop_count(&sw, "spoofed_mac");
    let o = in_ns(
        &a.name,
        &[
            "python3",
            "-c",
            "import socket\n\
             s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('eth0', 0))\n\
             eth=bytes.fromhex('eeeeeeeeeeee' '02000a410002' '0800')\n\
             ip=bytes.fromhex('4500001c00004000400100000a4100010a410002')\n\
             for _ in range(3): s.send(eth + ip + bytes(8 + 18))",
        ],
    );
    assert!(o.status.success(), "raw send: {o:?}");
    let want = before + 3;
    wait_for(
        "spoofed_mac drops",
        std::time::Duration::from_secs(5),
        || (drop_count(&sw, "spoofed_mac") >= want).then_some(()),
    );

    // an address no pod owns has no route
    let before = drop_count(&sw, "no_route");
    let o = in_ns(&a.name, &["ping", "-c", "1", "-W", "1", "10.65.0.77"]);
    assert!(!o.status.success());
    assert!(drop_count(&sw, "no_route") > before, "no_route counted");

    // the endpoints as the switch reports them
    match sw.call(&Request::EndpointList {}) {
        Reply::Endpoints(v) => {
            assert_eq!(v.len(), 2);
            assert_eq!(v[0].ips, vec![a_ip]);
            assert_eq!(v[1].ips, vec![b_ip]);
        }
        r => panic!("endpoint-list: {r:?}"),
    }
    drop(sw);
}

//! Userspace pods attached through the plugin (a vhost-user socket that a
//! `dpdk-testpmd` pod opens with virtio-user) and kernel pods attached
//! through the plugin (a network namespace) reach each other through
//! vswitchd:
//!
//! - in server mode (the switch listens) the kernel pod pings the DPDK pod,
//!   which answers in testpmd's `icmpecho` mode;
//! - in client mode (`vhostMode: client`: the pod's app listens, the switch
//!   connects) the pod is attached before its app exists, and the kernel
//!   pod's UDP is answered (testpmd in `5tswap` mode) once the app is up,
//!   and again after the app crashed and came back, with no CNI call.
//!
//! Needs root and `dpdk-testpmd`; run with
//! `cargo test -p cni-shim --release --test userspace`.

mod common;

use common::*;
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A testpmd pod, killed on drop.
struct Testpmd(Child);

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_dpdk_pod_and_a_kernel_pod_attached_by_the_plugin_talk() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    sw.apply_pool("main", "10.214.0.0/16", 26);
    let conf =
        json!({"cniVersion": "1.1.0", "name": "podnet", "type": "vswitch-cni", "socket": sw.sock});

    let kns = Netns::new("k");
    let kid = format!("uk{}x{}", std::process::id(), unique());
    let kernel = Call::new(&kid, &kns.path).run("ADD", &conf).ok();

    let uns = Netns::new("u");
    let uid = format!("uu{}x{}", std::process::id(), unique());
    let mut vconf = conf.clone();
    vconf["args"] =
        json!({"vswitch": {"interface": "vhost", "socketDir": sw.dir.join("pods").join(&uid)}});
    let dpdk = Call::new(&uid, &uns.path).run("ADD", &vconf).ok();
    let sock = dpdk["interfaces"][0]["socketPath"]
        .as_str()
        .unwrap_or_else(|| panic!("no socketPath in {dpdk}"))
        .to_owned();
    let mac = dpdk["interfaces"][0]["mac"]
        .as_str()
        .unwrap_or_else(|| panic!("no mac in {dpdk}"))
        .to_owned();
    let target = first_ip(&dpdk);

    // the DPDK pod: its virtio-user port on the socket, with the MAC the
    // plugin reported, answering ARP and ICMP echo
    let child = Command::new("dpdk-testpmd")
        .args([
            "--lcores",
            "0@1,1@0",
            "--no-pci",
            "--in-memory",
            "--single-file-segments",
        ])
        .args([
            "-m",
            "128",
            "--file-prefix",
            &format!("cniu{}", std::process::id()),
        ])
        .arg("--vdev")
        .arg(format!(
            "net_virtio_user0,path={sock},server=0,mac={mac},queue_size=256"
        ))
        .args([
            "--",
            "--forward-mode=icmpecho",
            "--nb-cores=1",
            "--total-num-mbufs=2048",
        ])
        .args(["--auto-start", "--stats-period", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dpdk-testpmd");
    let _pod = Testpmd(child);

    // its link comes up when testpmd has started: ping until answered
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = kns.exec(&["ping", "-c", "1", "-W", "1", &target]);
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < end,
            "kernel pod {} could not ping DPDK pod {target}:\n{}\n{}",
            first_ip(&kernel),
            String::from_utf8_lossy(&o.stdout),
            sw.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let o = kns.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", &target]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("5 received"), "{text}");

    Call::new(&uid, &uns.path).run("DEL", &vconf).ok_silent();
    Call::new(&kid, &kns.path).run("DEL", &conf).ok_silent();
    assert_eq!(sw.allocated(), 0);
}

/// Datagrams per measured exchange.
const UDP_BATCH: u32 = 200;
/// Where the kernel pod sends them; the pod's testpmd answers any port.
const UDP_PORT: u16 = 5001;

/// (frames from the pod, frames to the pod) on switch port `port`.
fn port_counts(sw: &Switch, port: &str) -> (u64, u64) {
    sw.stats()
        .ports
        .iter()
        .find(|p| p.name == port)
        .map(|p| (p.rx_packets, p.tx_packets))
        .unwrap_or_else(|| panic!("no counters for port {port}"))
}

/// Once the first datagram is answered, the kernel pod in `from` sends
/// [`UDP_BATCH`] datagrams to `to`, and every one must come back once from
/// the pod's address, having crossed the pod's testpmd and the switch port
/// both ways.
fn udp_answered(sw: &Switch, from: &Netns, to: Ipv4Addr, pod: &mut Pod, port: &str, what: &str) {
    wait_for(&format!("{what}: a first UDP reply"), TIMEOUT, || {
        (udp_round_trips(&from.name, to, UDP_PORT, 1).replies == 1).then_some(())
    });
    // the warm-up's frames are counted before the batch's
    std::thread::sleep(Duration::from_millis(200));
    pod.stop_fwd();
    pod.clear_stats();
    pod.start_fwd();
    let (rx0, tx0) = port_counts(sw, port);
    let t = udp_round_trips(&from.name, to, UDP_PORT, UDP_BATCH);
    let n = u64::from(UDP_BATCH);
    assert_eq!(
        (t.sent, t.replies, t.distinct),
        (n, n, n),
        "{what}: UDP datagrams sent, replies, distinct replies\n{}",
        sw.log_tail(20)
    );
    let (rx, tx) = (pod.rx_packets(), pod.tx_packets());
    assert!(rx >= n && tx == rx, "{what}: testpmd RX {rx}, TX {tx}");
    let (rx1, tx1) = port_counts(sw, port);
    assert!(
        rx1 - rx0 >= n && tx1 - tx0 >= n,
        "{what}: switch port {port}: {} frames from the pod, {} to it",
        rx1 - rx0,
        tx1 - tx0
    );
    eprintln!(
        "{what}: {} of {} datagrams answered; testpmd RX {rx} TX {tx}; switch port +{} from the pod, +{} to it",
        t.replies,
        t.sent,
        rx1 - rx0,
        tx1 - tx0
    );
}

/// Lines of the switch's log that record an attach (not a detach).
fn attaches_logged(sw: &Switch) -> usize {
    sw.log_tail(100_000)
        .lines()
        .filter(|l| l.contains(" attached ") && !l.contains("detached"))
        .count()
}

#[test]
fn a_client_mode_vhost_pod_attached_before_its_app_is_answered_across_app_restarts() {
    must_be_root();
    let _g = serial();
    let t0 = Instant::now();
    let sw = start_switch();
    sw.apply_pool("main", "10.218.0.0/16", 26);
    let sockdir = sw.dir.join("pods");
    // the network's mode: TAP pods are not affected by it
    let conf = json!({"cniVersion": "1.1.0", "name": "podnet", "type": "vswitch-cni",
                      "socket": sw.sock, "vhostSocketDir": sockdir, "vhostMode": "client"});

    let kns = Netns::new("k");
    let kid = format!("ck{}x{}", std::process::id(), unique());
    let kernel = Call::new(&kid, &kns.path).run("ADD", &conf).ok();
    assert!(
        sw.pod(&kid, "eth0").is_some_and(|a| a.vhost_mode.is_none()),
        "a TAP pod has no vhost mode"
    );

    // ADD before the pod's app exists
    let uns = Netns::new("u");
    let uid = format!("cu{}x{}", std::process::id(), unique());
    let mut vconf = conf.clone();
    vconf["args"] = json!({"vswitch": {"interface": "vhost"}});
    let vcall = Call::new(&uid, &uns.path);
    let dpdk = vcall.run("ADD", &vconf).ok();
    let sock = dpdk["interfaces"][0]["socketPath"]
        .as_str()
        .unwrap_or_else(|| panic!("no socketPath in {dpdk}"))
        .to_owned();
    assert_eq!(
        Path::new(&sock),
        sockdir.join(&uid).join("eth0.sock"),
        "{dpdk}"
    );
    let mac = dpdk["interfaces"][0]["mac"]
        .as_str()
        .unwrap_or_else(|| panic!("no mac in {dpdk}"))
        .to_owned();
    let target: Ipv4Addr = first_ip(&dpdk).parse().expect("the pod's address");
    let a = sw.pod(&uid, "eth0").expect("the vhost pod's attachment");
    assert_eq!(a.vhost_mode, Some(api::VhostMode::Client));
    assert_eq!(a.socket.as_deref(), Some(sock.as_str()));
    let info = |sw: &Switch| {
        sw.ports()
            .into_iter()
            .find(|p| p.name == a.port)
            .unwrap_or_else(|| panic!("no port {}", a.port))
    };
    let port = info(&sw);
    assert_eq!(
        (port.kind, port.path.as_deref()),
        (api::PortKind::VhostClient, Some(sock.as_str()))
    );
    assert!(
        !Path::new(&sock).exists(),
        "the switch made the pod's socket"
    );
    assert!(
        sockdir.join(&uid).is_dir(),
        "the socket's directory is made"
    );
    // nobody listens, and CHECK does not hold that against the pod
    let vconf_prev = with_prev(&vconf, &dpdk);
    vcall.run("CHECK", &vconf_prev).ok_silent();

    // librte_vhost retries once a second: past a few rounds the port is
    // still there, down, and its traffic dropped, not answered
    std::thread::sleep(Duration::from_secs(3));
    assert!(!info(&sw).link_up, "a link up with nobody listening");
    let t = udp_round_trips(&kns.name, target, UDP_PORT, 20);
    assert_eq!(
        (t.sent, t.replies),
        (20, 0),
        "UDP to a pod whose app is not up"
    );

    let started = Instant::now();
    let mut pod = Pod::start_listening_reflector("vhost-client-pod", &sock, &mac);
    sw.wait_link(&a.port, true);
    let first_up = started.elapsed();
    pod.wait_link_up();
    vcall.run("CHECK", &vconf_prev).ok_silent();
    udp_answered(
        &sw,
        &kns,
        target,
        &mut pod,
        &a.port,
        "app started after the ADD",
    );

    // the app crashes: its socket stays, the switch's port goes down and
    // keeps trying
    pod.kill();
    sw.wait_link(&a.port, false);
    assert!(
        Path::new(&sock).exists(),
        "the switch removed the crashed app's socket"
    );
    let t = udp_round_trips(&kns.name, target, UDP_PORT, 20);
    assert_eq!((t.sent, t.replies), (20, 0), "UDP while the app is down");
    vcall.run("CHECK", &vconf_prev).ok_silent();

    // the app comes back on the same socket: no CNI call, the switch reconnects
    let restarted = Instant::now();
    let mut pod = Pod::start_listening_reflector("vhost-client-pod", &sock, &mac);
    sw.wait_link(&a.port, true);
    let again_up = restarted.elapsed();
    pod.wait_link_up();
    udp_answered(&sw, &kns, target, &mut pod, &a.port, "app restarted");
    assert_eq!(
        sw.pod(&uid, "eth0").as_ref(),
        Some(&a),
        "the attachment changed"
    );
    assert_eq!(info(&sw).port_id, port.port_id, "the port was made again");
    assert_eq!(attaches_logged(&sw), 2, "attaches besides the two ADDs");
    vcall.run("CHECK", &vconf_prev).ok_silent();

    // DEL leaves the socket to the pod, whose app still listens on it
    vcall.run("DEL", &vconf_prev).ok_silent();
    assert!(Path::new(&sock).exists(), "DEL removed the pod's socket");
    assert!(!sw.port_names().contains(&a.port));
    drop(pod);
    Call::new(&kid, &kns.path)
        .run("DEL", &with_prev(&conf, &kernel))
        .ok_silent();
    assert_eq!(sw.allocated(), 0);
    eprintln!(
        "switch link up {first_up:?} after the app started, {again_up:?} after it restarted; \
         whole test {:?}",
        t0.elapsed()
    );
}

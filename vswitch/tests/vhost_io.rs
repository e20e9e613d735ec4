//! Vhost-user interfaces through librte_vhost (`dpdk::vhost`), driven from
//! this process against `dpdk-testpmd` pods on virtio-user: frames both
//! ways, a pod killed while a thread polls the port, a pod restarted on the
//! same socket, a client-mode port that reconnects by itself, and two queue
//! pairs.
//!
//! The EAL starts once per process, so every case runs in the one test.
//! Needs root; run with `cargo test -p vswitch --release --test vhost_io`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use testsupport::*;
use vswitch::dpdk::eal;
use vswitch::dpdk::mbuf::{Mbuf, Mempool};
use vswitch::dpdk::vhost::VhostPort;
use vswitch::packet::{Burst, PacketBuf};

/// The switch's end of every port in these tests.
const SWITCH_MAC: &str = "02:00:00:00:00:fe";

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(h, 16).expect("a MAC of hex bytes");
    }
    m
}

fn start_eal() -> Mempool {
    let args: Vec<String> = [
        "vhost_io",
        "--no-pci",
        "--no-huge",
        "--no-shconf",
        "-m",
        "256",
        "-l",
        "0",
        "--log-level=lib.eal:notice",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--file-prefix=vhostio{}", std::process::id())])
    .collect();
    eal::eal_init(&args).expect("EAL init");
    Mempool::pktmbuf("vhost_io", 8191, 0).expect("mempool")
}

/// Polls queue pair `q` until `want` frames from `src` came, or 10 s passed;
/// then a little longer, for frames that should not come. Returns the count.
fn receive(port: &VhostPort, q: u16, pool: &Mempool, src: &str, want: usize) -> usize {
    let src = mac(src);
    let mut got = 0;
    let mut b: Burst<Mbuf> = Burst::new();
    let mut end = Instant::now() + Duration::from_secs(10);
    let mut settled = false;
    while Instant::now() < end {
        port.rx_burst(q, pool, &mut b);
        got += b.iter().filter(|m| m.data()[6..12] == src).count();
        b.clear();
        if got >= want && !settled {
            settled = true;
            end = Instant::now() + Duration::from_millis(300);
        }
    }
    got
}

/// A 60-byte frame to `dst` from the switch's MAC.
fn frame(pool: &Mempool, dst: &str) -> Mbuf {
    let mut m = pool.alloc(60).expect("an mbuf from the pool");
    let d = m.data_mut();
    d[..6].copy_from_slice(&mac(dst));
    d[6..12].copy_from_slice(&mac(SWITCH_MAC));
    d[12..14].copy_from_slice(&[0x88, 0xb5]);
    m
}

/// Sends `n` frames to `dst` on queue pair `q`, retrying what the guest has
/// no room for yet for up to 10 s. Returns how many went.
fn send(port: &VhostPort, q: u16, pool: &Mempool, dst: &str, n: usize) -> usize {
    let mut sent = 0;
    let mut b: Burst<Mbuf> = Burst::new();
    let end = Instant::now() + Duration::from_secs(10);
    while sent < n && Instant::now() < end {
        while b.len() < b.capacity() && sent + b.len() < n {
            b.push(frame(pool, dst));
        }
        sent += port.tx_burst(q, &mut b);
    }
    sent
}

fn wait_link(port: &VhostPort, up: bool) {
    wait_for(
        &format!("link of {} {}", port.path(), if up { "up" } else { "down" }),
        TIMEOUT,
        || (port.link_up() == up).then_some(()),
    );
}

/// One burst of the pod's reaches the port, and frames the port sends reach
/// the pod, on queue pair 0. Leaves the pod polling.
fn traffic(port: &VhostPort, pool: &Mempool, pod: &mut Pod, what: &str) {
    pod.send_burst(SWITCH_MAC);
    let got = receive(port, 0, pool, &pod.mac.clone(), BURST as usize);
    assert_eq!(got, BURST as usize, "{what}: frames from pod {}", pod.name);

    pod.stop_fwd();
    pod.clear_stats();
    pod.start_fwd();
    let sent = send(port, 0, pool, &pod.mac.clone(), 64);
    assert_eq!(sent, 64, "{what}: frames the guest took");
    let got = wait_for(&format!("{what}: 64 frames at the pod"), TIMEOUT, || {
        let n = pod.rx_packets();
        (n >= 64).then_some(n)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        (got, pod.rx_packets()),
        (64, 64),
        "{what}: RX-packets of pod {}",
        pod.name
    );
}

/// Kills `pod` while a thread keeps polling and sending on the port, and
/// checks the port goes down while the thread goes on unharmed.
fn kill_under_traffic(port: &VhostPort, pool: &Mempool, mut pod: Pod) {
    pod.set_fwd("txonly");
    pod.start_fwd();
    let stop = AtomicBool::new(false);
    let rx = AtomicU64::new(0);
    let tx = AtomicU64::new(0);
    let rounds = AtomicU64::new(0);
    let dst = mac(&pod.mac);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut b: Burst<Mbuf> = Burst::new();
            while !stop.load(Ordering::Relaxed) {
                let n = port.rx_burst(0, pool, &mut b);
                rx.fetch_add(n as u64, Ordering::Relaxed);
                b.clear();
                for _ in 0..8 {
                    if let Some(m) = pool.alloc(60) {
                        b.push(m);
                    }
                }
                for m in b.iter_mut() {
                    m.data_mut()[..6].copy_from_slice(&dst);
                }
                let n = port.tx_burst(0, &mut b);
                tx.fetch_add(n as u64, Ordering::Relaxed);
                b.clear();
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        });
        wait_for("frames from the txonly pod", TIMEOUT, || {
            (rx.load(Ordering::Relaxed) > 1000).then_some(())
        });
        assert!(
            tx.load(Ordering::Relaxed) > 0,
            "the pod's ring took no frames"
        );
        pod.kill();
        wait_link(port, false);
        assert_eq!(port.queue_pairs(), 0, "queue pairs of a port without guest");
        // the burst the thread was in when the link went down is counted after it
        std::thread::sleep(Duration::from_millis(50));
        let (r0, x0, n0) = (
            rx.load(Ordering::Relaxed),
            tx.load(Ordering::Relaxed),
            rounds.load(Ordering::Relaxed),
        );
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            rounds.load(Ordering::Relaxed) > n0 + 100,
            "the polling thread stopped"
        );
        assert_eq!(
            (rx.load(Ordering::Relaxed), tx.load(Ordering::Relaxed)),
            (r0, x0),
            "frames moved on a port without guest"
        );
        stop.store(true, Ordering::Relaxed);
    });
}

fn server_mode(dir: &Path, pool: &Mempool) {
    let path = dir.join("server.sock").to_string_lossy().into_owned();
    let port = VhostPort::new(&path, false, 1).expect("server-mode port");
    assert_eq!(port.path(), path);
    assert!(!port.link_up() && port.queue_pairs() == 0);
    assert!(
        VhostPort::new(&path, false, 1).is_err(),
        "a path registered twice"
    );

    let mut pod = Pod::start("s1", &path, &pod_mac(1), SWITCH_MAC);
    wait_link(&port, true);
    pod.wait_link_up();
    wait_for("one queue pair enabled", TIMEOUT, || {
        (port.queue_pairs() == 1).then_some(())
    });
    // what the guest was offered: no checksum or segmentation offloads
    let rxo = pod.cmd("show port 0 rx_offload capabilities");
    let txo = pod.cmd("show port 0 tx_offload capabilities");
    for (o, what) in [(&rxo, "rx"), (&txo, "tx")] {
        assert!(o.contains("Offloading Capabilities"), "{what}: {o}");
        for f in ["TCP_CKSUM", "UDP_CKSUM", "TCP_LRO", "TCP_TSO"] {
            assert!(!o.contains(f), "{f} offered to the guest ({what}):\n{o}");
        }
    }
    traffic(&port, pool, &mut pod, "server mode");
    // a queue pair the port does not have
    let mut b: Burst<Mbuf> = Burst::new();
    assert_eq!(port.rx_burst(1, pool, &mut b), 0);
    b.push(frame(pool, &pod.mac));
    assert_eq!(port.tx_burst(1, &mut b), 0);
    assert_eq!(b.len(), 1, "an unsent frame stays with the caller");
    drop(b);

    kill_under_traffic(&port, pool, pod);

    // a new pod on the same socket
    let mut pod = Pod::start("s2", &path, &pod_mac(2), SWITCH_MAC);
    wait_link(&port, true);
    pod.wait_link_up();
    traffic(&port, pool, &mut pod, "server mode, second pod");

    // unregistering with a guest connected tears it down and removes the socket
    drop(port);
    assert!(!Path::new(&path).exists(), "{path} left behind");
    drop(pod);
    let again = VhostPort::new(&path, false, 1).expect("the path registered again");
    drop(again);
}

fn client_mode(dir: &Path, pool: &Mempool) {
    let path = dir.join("client.sock").to_string_lossy().into_owned();
    // nobody listens yet: librte_vhost keeps trying, and virtio-user in
    // server mode waits at startup for that connection
    let port = VhostPort::new(&path, true, 1).expect("client-mode port");
    assert!(!port.link_up());
    let mut pod = Pod::start_listening("c1", &path, &pod_mac(3), SWITCH_MAC);
    wait_link(&port, true);
    pod.wait_link_up();
    traffic(&port, pool, &mut pod, "client mode");

    kill_under_traffic(&port, pool, pod);
    // virtio-user does not bind over the killed pod's socket file
    std::fs::remove_file(&path).expect("removing the killed pod's socket");
    // the pod waits at startup until librte_vhost's reconnect thread finds it
    let mut pod = Pod::start_listening("c2", &path, &pod_mac(4), SWITCH_MAC);
    wait_link(&port, true);
    pod.wait_link_up();
    traffic(
        &port,
        pool,
        &mut pod,
        "client mode, after the pod restarted",
    );
    drop(port);
    drop(pod);
}

fn two_queue_pairs(dir: &Path, pool: &Mempool) {
    let path = dir.join("mq.sock").to_string_lossy().into_owned();
    let port = VhostPort::new(&path, false, 2).expect("two-queue port");
    let mut pod = Pod::start_queues("m1", &path, &pod_mac(5), SWITCH_MAC, 2);
    wait_link(&port, true);
    pod.wait_link_up();
    wait_for("two queue pairs enabled", TIMEOUT, || {
        (port.queue_pairs() == 2).then_some(())
    });

    // txonly sends on both of its queues
    pod.set_fwd("txonly");
    pod.start_fwd();
    let src = pod.mac.clone();
    let mut got = [0usize; 2];
    let mut b: Burst<Mbuf> = Burst::new();
    let end = Instant::now() + TIMEOUT;
    while (got[0] < 1000 || got[1] < 1000) && Instant::now() < end {
        for (q, g) in got.iter_mut().enumerate() {
            port.rx_burst(q as u16, pool, &mut b);
            *g += b.iter().filter(|m| m.data()[6..12] == mac(&src)).count();
            b.clear();
        }
    }
    assert!(
        got[0] >= 1000 && got[1] >= 1000,
        "frames per queue pair from the two-queue pod: {got:?}"
    );

    pod.set_fwd("rxonly");
    pod.clear_stats();
    pod.start_fwd();
    for q in 0..2 {
        let sent = send(&port, q, pool, &src, 64);
        assert_eq!(sent, 64, "frames the guest took on queue pair {q}");
    }
    let n = wait_for("128 frames at the two-queue pod", TIMEOUT, || {
        let n = pod.rx_packets();
        (n >= 128).then_some(n)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        (n, pod.rx_packets()),
        (128, 128),
        "RX-packets of the two-queue pod"
    );
    drop(port);
    drop(pod);
}

#[test]
fn vhost_user_ports_through_librte_vhost() {
    let _g = serial();
    must_be_root();
    need_tools(&["dpdk-testpmd"]);
    let dir: PathBuf = std::env::temp_dir().join(format!("vhost-io-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pool = start_eal();

    server_mode(&dir, &pool);
    client_mode(&dir, &pool);
    two_queue_pairs(&dir, &pool);

    let _ = std::fs::remove_dir_all(&dir);
}

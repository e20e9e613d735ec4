//! Pods that are `dpdk-testpmd` processes on virtio-user ports, and the
//! measured phases the L2 tests run them in.
//!
//! On a 2-CPU machine every polling testpmd eats a CPU, so pods are kept
//! stopped (not polling) between phases; a phase starts every pod, sends one
//! burst, counts, and stops them again (see [`phase`]).

use crate::process::{tail, terminate};
use crate::{need_tools, unique, Switch, TIMEOUT};
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Frames testpmd sends with `start tx_first 1` (its default burst).
pub const BURST: u64 = 32;

struct Output {
    buf: Mutex<(Vec<u8>, bool)>,
    cond: Condvar,
}

/// One `dpdk-testpmd` process with one virtio-user port: a pod.
pub struct Pod {
    pub name: String,
    pub sock: String,
    pub mac: String,
    child: Child,
    stdin: ChildStdin,
    out: Arc<Output>,
    err: Arc<Output>,
    forwarding: bool,
}

const PROMPT: &[u8] = b"testpmd> ";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn collect(mut r: impl Read + Send + 'static) -> Arc<Output> {
    let out = Arc::new(Output {
        buf: Mutex::new((Vec::new(), false)),
        cond: Condvar::new(),
    });
    let o = out.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            let n = r.read(&mut chunk).unwrap_or(0);
            let mut g = o.buf.lock().unwrap();
            if n == 0 {
                g.1 = true;
                o.cond.notify_all();
                return;
            }
            g.0.extend_from_slice(&chunk[..n]);
            o.cond.notify_all();
        }
    });
    out
}

impl Pod {
    /// Starts a pod and waits for its first prompt.
    pub fn start(name: &str, sock: &str, mac: &str, peer_mac: &str) -> Pod {
        let mut p = Pod::spawn(name, sock, mac, peer_mac);
        p.wait_ready();
        p
    }

    /// Starts a pod that listens on `sock` (virtio-user server mode) for a
    /// switch's vhost-client port, and waits for its first prompt.
    pub fn start_listening(name: &str, sock: &str, mac: &str, peer_mac: &str) -> Pod {
        let mut p = Pod::spawn_with(name, sock, mac, peer_mac, true, 1);
        p.wait_ready();
        p
    }

    /// Starts a userspace pod that answers, for tests of a switch's
    /// vhost-client ports (a pod attached with `vhostMode: client`) across
    /// restarts of the pod or of the switch.
    ///
    /// `dpdk-testpmd` listens on `sock` (virtio-user `server=1`, one queue
    /// pair, MAC `mac`, one forwarding lcore) and forwards in `5tswap` mode:
    /// every frame goes back out with its MACs, IPv4 addresses and TCP/UDP
    /// ports swapped, so a UDP datagram to the pod's address comes back to
    /// its sender as a reply from that address and port (swapping changes no
    /// checksum). A frame the switch routed to the pod carries the gateway
    /// MAC as source and the pod's MAC as destination, so the reply leaves
    /// with the pod's own MAC and passes the switch's anti-spoofing check.
    ///
    /// The pod owns its socket: a socket file that a killed predecessor left
    /// at `sock` is removed first, since virtio-user will not bind over it.
    ///
    /// virtio-user in server mode waits for its client before testpmd comes
    /// up, so this returns once the switch has connected (within
    /// [`TIMEOUT`]) and the pod is forwarding: a switch must have, or get in
    /// that time, a vhost-client port on `sock`. The pod then keeps
    /// listening across the switch's restarts, and the switch's port
    /// reconnects to it. [`Pod::kill`] is a crash of the pod's app; starting
    /// this again on the same `sock` is its restart.
    pub fn start_listening_reflector(name: &str, sock: &str, mac: &str) -> Pod {
        if std::fs::symlink_metadata(sock)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            std::fs::remove_file(sock)
                .unwrap_or_else(|e| panic!("pod {name}: removing the stale socket {sock}: {e}"));
        }
        let mut p = Pod::spawn_with(name, sock, mac, "ee:ee:ee:ee:ee:ee", true, 1);
        p.wait_ready();
        p.set_fwd("5tswap");
        p.start_fwd();
        p
    }

    /// Starts a pod whose port has `queues` queue pairs (virtio-user
    /// multi-queue; testpmd polls them all on its one forwarding lcore),
    /// and waits for its first prompt.
    pub fn start_queues(name: &str, sock: &str, mac: &str, peer_mac: &str, queues: u16) -> Pod {
        let mut p = Pod::spawn_with(name, sock, mac, peer_mac, false, queues);
        p.wait_ready();
        p
    }

    /// Starts a pod without waiting for it (see [`Pod::wait_ready`]).
    pub fn spawn(name: &str, sock: &str, mac: &str, peer_mac: &str) -> Pod {
        Pod::spawn_with(name, sock, mac, peer_mac, false, 1)
    }

    fn spawn_with(
        name: &str,
        sock: &str,
        mac: &str,
        peer_mac: &str,
        listen: bool,
        queues: u16,
    ) -> Pod {
        need_tools(&["dpdk-testpmd", "stdbuf"]);
        let n = unique();
        // each pod's forwarding lcore on the other CPU than its idle main lcore;
        // alternate so that polling pods spread over both CPUs
        let lcores = if n.is_multiple_of(2) {
            "0@1,1@0"
        } else {
            "0@0,1@1"
        };
        let prefix = format!("vswtpod{}x{n}", std::process::id());
        // one queue pair is the default of both: leave the command line as it was
        let (vq, pq) = if queues > 1 {
            (
                format!(",queues={queues}"),
                vec![format!("--rxq={queues}"), format!("--txq={queues}")],
            )
        } else {
            (String::new(), Vec::new())
        };
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg("dpdk-testpmd")
            .args(["--lcores", lcores])
            .args([
                "--no-pci",
                "--in-memory",
                "--single-file-segments",
                "-m",
                "128",
            ])
            .args(["--file-prefix", &prefix])
            .arg("--vdev")
            .arg(format!(
                "net_virtio_user0,path={sock},server={},mac={mac},queue_size=256{vq}",
                u8::from(listen)
            ))
            .args([
                "--",
                "-i",
                "--forward-mode=rxonly",
                "--nb-cores=1",
                "--total-num-mbufs=2048",
            ])
            .args(&pq)
            .arg(format!("--eth-peer=0,{peer_mac}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning dpdk-testpmd");
        let stdin = child.stdin.take().expect("testpmd's stdin is piped");
        let out = collect(child.stdout.take().expect("testpmd's stdout is piped"));
        let err = collect(child.stderr.take().expect("testpmd's stderr is piped"));
        Pod {
            name: name.to_owned(),
            sock: sock.to_owned(),
            mac: mac.to_owned(),
            child,
            stdin,
            out,
            err,
            forwarding: false,
        }
    }

    /// Waits for testpmd's first prompt.
    pub fn wait_ready(&mut self) {
        self.until_prompt(0, "startup");
    }

    /// What the pod printed so far (stdout, then stderr).
    pub fn output(&self) -> String {
        let o = self.out.buf.lock().unwrap();
        let e = self.err.buf.lock().unwrap();
        format!(
            "{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&o.0),
            String::from_utf8_lossy(&e.0)
        )
    }

    fn diag(&self) -> String {
        format!(
            "--- pod {} output (tail) ---\n{}",
            self.name,
            tail(&self.output(), 40)
        )
    }

    /// Waits for a prompt after byte `from` of stdout; returns the text up to it.
    fn until_prompt(&mut self, from: usize, what: &str) -> String {
        let end = Instant::now() + TIMEOUT;
        let mut g = self.out.buf.lock().unwrap();
        loop {
            if let Some(i) = find(&g.0[from..], PROMPT) {
                return String::from_utf8_lossy(&g.0[from..from + i]).into_owned();
            }
            let now = Instant::now();
            if g.1 || now >= end {
                let eof = g.1;
                drop(g);
                let st = self.child.try_wait().ok().flatten();
                panic!(
                    "pod {}: no prompt after '{what}' ({}; exit status {st:?})\n{}",
                    self.name,
                    if eof { "output closed" } else { "timed out" },
                    self.diag()
                );
            }
            g = self.out.cond.wait_timeout(g, end - now).unwrap().0;
        }
    }

    /// Runs one testpmd command; returns its output (without the prompt).
    pub fn cmd(&mut self, c: &str) -> String {
        let from = self.out.buf.lock().unwrap().0.len();
        if let Err(e) = writeln!(self.stdin, "{c}").and_then(|()| self.stdin.flush()) {
            panic!("pod {}: writing '{c}': {e}\n{}", self.name, self.diag());
        }
        self.until_prompt(from, c)
    }

    /// Waits until testpmd reports its port's link up.
    pub fn wait_link_up(&mut self) {
        let end = Instant::now() + TIMEOUT;
        loop {
            let info = self.cmd("show port info 0");
            if info.contains("Link status: up") {
                return;
            }
            assert!(
                Instant::now() < end,
                "pod {}: link not up:\n{info}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn link_up(&mut self) -> bool {
        self.cmd("show port info 0").contains("Link status: up")
    }

    fn stat(&mut self, key: &str) -> u64 {
        let s = self.cmd("show port stats 0");
        let at = s
            .find(key)
            .unwrap_or_else(|| panic!("pod {}: no {key} in:\n{s}", self.name));
        s[at + key.len()..]
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("pod {}: cannot parse {key} in:\n{s}", self.name))
    }

    /// RX-packets of the port (counted by the PMD as the pod polls).
    pub fn rx_packets(&mut self) -> u64 {
        self.stat("RX-packets:")
    }

    pub fn tx_packets(&mut self) -> u64 {
        self.stat("TX-packets:")
    }

    /// Zeroes the port counters. Only while stopped: on a polling virtio-user
    /// port the forwarding lcore can write the old count back.
    pub fn clear_stats(&mut self) {
        assert!(
            !self.forwarding,
            "pod {}: clear_stats while forwarding",
            self.name
        );
        let out = self.cmd("clear port stats 0");
        assert!(
            out.contains("cleared"),
            "pod {}: clear port stats: {out}",
            self.name
        );
        let left = self.rx_packets();
        assert_eq!(left, 0, "pod {}: RX-packets after clear", self.name);
    }

    /// Starts forwarding (polling) in the current mode.
    pub fn start_fwd(&mut self) {
        if !self.forwarding {
            self.cmd("start");
            self.forwarding = true;
        }
    }

    pub fn stop_fwd(&mut self) {
        if self.forwarding {
            self.cmd("stop");
            self.forwarding = false;
        }
    }

    /// Sends one burst of [`BURST`] frames to `dst` (source: the pod's MAC),
    /// then polls.
    pub fn send_burst(&mut self, dst: &str) {
        let out = self.cmd(&format!("set eth-peer 0 {dst}"));
        assert!(
            !out.contains("rror") && !out.contains("Bad"),
            "pod {}: set eth-peer: {out}",
            self.name
        );
        self.stop_fwd();
        self.cmd("start tx_first 1");
        self.forwarding = true;
    }

    /// Switches to another forwarding mode (`rxonly`, `txonly`), stopped.
    pub fn set_fwd(&mut self, mode: &str) {
        self.stop_fwd();
        let out = self.cmd(&format!("set fwd {mode}"));
        assert!(
            out.contains(mode),
            "pod {}: set fwd {mode}: {out}",
            self.name
        );
    }

    /// Kills the pod as a crash would (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Drop then finds it reaped
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diag());
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = writeln!(self.stdin, "quit").and_then(|()| self.stdin.flush());
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = terminate(&mut self.child, Signal::SIGKILL, Duration::from_secs(1));
        }
    }
}

/// MAC of pod `i` in these tests.
pub fn pod_mac(i: usize) -> String {
    format!("02:00:00:00:00:a{i}")
}

/// Starts pods p0..p{n-1} on the switch's ports vhu0..vhu{n-1}, in parallel,
/// and waits until both ends see every link up.
pub fn start_pods(sw: &Switch, n: usize) -> Vec<Pod> {
    let mut pods: Vec<Pod> = (0..n)
        .map(|i| {
            Pod::spawn(
                &format!("p{i}"),
                &sw.vhost_path(&format!("vhu{i}")),
                &pod_mac(i),
                &pod_mac((i + 1) % n),
            )
        })
        .collect();
    for (i, p) in pods.iter_mut().enumerate() {
        p.wait_ready();
        p.wait_link_up();
        sw.wait_link(&format!("vhu{i}"), true);
    }
    pods
}

/// One measured phase: every pod polls, stale frames are drained, counters
/// cleared (pods stopped), receivers polling again; `pods[sender]` sends one burst of 32 to `dst`; `during` runs right
/// after (more traffic, switch queries); then the pods' RX-packets are read
/// once the expected total has arrived and a little more time has passed for
/// frames that should not come. Asserts the sender sent 32 and every pod got
/// what `expect` says; leaves the pods stopped.
pub fn phase(pods: &mut [Pod], sender: usize, dst: &str, expect: &[u64], during: impl FnOnce()) {
    assert_eq!(pods.len(), expect.len());
    for p in pods.iter_mut() {
        p.start_fwd();
    }
    // frames that reached a stopped pod are still in its ring: let them be counted now
    std::thread::sleep(Duration::from_millis(200));
    // Clear while stopped: testpmd's `clear port stats` on a virtio-user port
    // that is polling races with its forwarding lcore, which can write the old
    // count back.
    for p in pods.iter_mut() {
        p.stop_fwd();
        p.clear_stats();
    }
    for (i, p) in pods.iter_mut().enumerate() {
        if i != sender {
            p.start_fwd();
        }
    }
    pods[sender].send_burst(dst);
    during();
    let want: u64 = expect.iter().sum();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let got: u64 = pods.iter_mut().map(|p| p.rx_packets()).sum();
        if got >= want || Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // frames that should not arrive have had the time to
    std::thread::sleep(Duration::from_millis(300));
    let got: Vec<u64> = pods.iter_mut().map(|p| p.rx_packets()).collect();
    let sent = pods[sender].tx_packets();
    for p in pods.iter_mut() {
        p.stop_fwd();
    }
    assert_eq!(
        sent, BURST,
        "pod {} sent {sent} frames, not one burst",
        pods[sender].name
    );
    assert_eq!(
        got, expect,
        "RX-packets per pod after {} sent {BURST} frames to {dst}",
        pods[sender].name
    );
}

/// Asserts that `pod` (polling) keeps receiving: its RX-packets grows by
/// more than `min` within `window`. Returns the growth.
pub fn assert_flowing(pod: &mut Pod, window: Duration, min: u64, what: &str) -> u64 {
    let a = pod.rx_packets();
    std::thread::sleep(window);
    let b = pod.rx_packets();
    assert!(
        b > a + min,
        "{what}: pod {} received {} frames in {window:?}, expected more than {min}",
        pod.name,
        b - a
    );
    b - a
}

//! Harness for the DPDK integration tests: a real `vswitchd`, `dpdk-testpmd`
//! pods on virtio-user, TAP helpers.
//!
//! These tests need root (hugepages, vhost-user sockets, TAP devices). They do
//! not skip themselves when run as another user: they fail and say why.
//!
//! On a 2-CPU machine every polling testpmd eats a CPU, so pods are kept
//! stopped (not polling) between phases; a phase starts every pod, sends one
//! burst, counts, and stops them again (see [`phase`]).

#![allow(dead_code)]

use api::{Client, FdbEntry, MacAddr, PortInfo, Reply, Request, Stats};
use std::ffi::CString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

pub mod underlay;

/// How long a testpmd command, a link or the control socket may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Frames testpmd sends with `start tx_first 1` (its default burst).
pub const BURST: u64 = 32;

// ------------------------------------------------------------------ setup

static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs the tests of a file one at a time: each starts its own switch and
/// pods, and two sets would starve each other on two CPUs.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A number unique within this test process.
pub fn unique() -> usize {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Hugepages (2 MiB) a test needs at most at once: the switch's 256 MiB plus
/// four pods of 128 MiB, with some slack.
const HUGEPAGES_NEEDED: u64 = 400;

/// Fails unless we are root and the tools are there; sets up hugepages once.
pub fn must_be_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the DPDK integration tests need root (hugepages, vhost-user sockets, TAP devices): \
         run them as root, e.g. `sudo -E cargo test -p vswitch --release --test l2_dpdk`"
    );
    for tool in ["dpdk-testpmd", "stdbuf", "ip", "ping", "python3"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is not on PATH (apt-get install dpdk coreutils iproute2)"
        );
    }
    static HUGE: Once = Once::new();
    HUGE.call_once(setup_hugepages);
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn setup_hugepages() {
    if meminfo("HugePages_Total:") < 1024 {
        std::fs::write("/proc/sys/vm/nr_hugepages", "1024").unwrap_or_else(|e| {
            panic!("cannot reserve hugepages (/proc/sys/vm/nr_hugepages): {e}")
        });
    }
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"));
    if !mounted {
        std::fs::create_dir_all("/dev/hugepages").expect("mkdir /dev/hugepages");
        let st = Command::new("mount")
            .args(["-t", "hugetlbfs", "nodev", "/dev/hugepages"])
            .status()
            .expect("running mount");
        assert!(
            st.success(),
            "mount -t hugetlbfs nodev /dev/hugepages failed"
        );
    }
    let free = meminfo("HugePages_Free:");
    assert_eq!(
        meminfo("Hugepagesize:"),
        2048,
        "these tests expect 2 MiB hugepages"
    );
    assert!(
        free >= HUGEPAGES_NEEDED,
        "only {free} free 2 MiB hugepages, these tests need {HUGEPAGES_NEEDED}: \
         is another DPDK process holding them?"
    );
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Sends signal `first`, waits up to `grace`, then SIGKILL; reaps the child.
/// Returns how it ended: Ok(status) when it exited by itself or on `first`,
/// Err(what) when it was already gone or had to be killed.
fn terminate(child: &mut Child, first: i32, grace: Duration) -> Result<ExitStatus, String> {
    if let Ok(Some(st)) = child.try_wait() {
        return Err(format!("it had exited already ({st})"));
    }
    signal(child.id(), first);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("it did not exit within {grace:?} and was killed"))
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------ switch

/// A vswitchd process with its own temp dir, control socket and EAL prefix.
pub struct Switch {
    child: Child,
    pub dir: PathBuf,
    pub sock: PathBuf,
    log: PathBuf,
}

impl Switch {
    /// Starts vswitchd with `extra` arguments (`--port ...`, `--aging 2`;
    /// `{dir}` in them stands for the switch's temp dir) and waits for its
    /// control socket.
    pub fn start(extra: &[&str]) -> Switch {
        let n = unique();
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/vswt-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test dir");
        let sock = dir.join("ctl.sock");
        let log = dir.join("vswitchd.log");
        let logf = std::fs::File::create(&log).expect("creating the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vswitchd"))
            .arg("--socket")
            .arg(&sock)
            .args([
                "--file-prefix",
                &format!("vswt{pid}{n}"),
                "--lcores",
                "0@0,1@1",
            ])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(
                extra
                    .iter()
                    .map(|a| a.replace("{dir}", dir.to_str().unwrap())),
            )
            .env("VSWITCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("spawning vswitchd");
        let mut sw = Switch {
            child,
            dir,
            sock,
            log,
        };
        let end = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(st)) = sw.child.try_wait() {
                panic!(
                    "vswitchd exited ({st}) before serving its socket:\n{}",
                    sw.log_tail(40)
                );
            }
            if Client::connect(&sw.sock).is_ok() {
                break;
            }
            assert!(
                Instant::now() < end,
                "vswitchd did not open {} in time",
                sw.sock.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sw
    }

    /// A vhost-user socket path in the switch's dir.
    pub fn vhost_path(&self, name: &str) -> String {
        self.dir
            .join(format!("{name}.sock"))
            .to_str()
            .unwrap()
            .to_owned()
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.sock).unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail(20)))
    }

    /// Sends a request that must succeed.
    pub fn call(&self, req: &Request) -> Reply {
        self.client()
            .call(req)
            .unwrap_or_else(|e| panic!("{req:?}: {e}\n{}", self.log_tail(20)))
    }

    pub fn stats(&self) -> Stats {
        match self.call(&Request::Stats {}) {
            Reply::Stats(s) => s,
            r => panic!("stats: unexpected reply {r:?}"),
        }
    }

    pub fn fdb(&self) -> Vec<FdbEntry> {
        match self.call(&Request::FdbShow {}) {
            Reply::Fdb(v) => v,
            r => panic!("fdb-show: unexpected reply {r:?}"),
        }
    }

    /// The port `mac` is learned behind, if any.
    pub fn fdb_port_of(&self, mac: &str) -> Option<String> {
        let mac: MacAddr = mac.parse().unwrap();
        self.fdb()
            .into_iter()
            .find(|e| e.mac == mac)
            .map(|e| e.port)
    }

    pub fn ports(&self) -> Vec<PortInfo> {
        match self.call(&Request::PortList {}) {
            Reply::Ports(v) => v,
            r => panic!("port-list: unexpected reply {r:?}"),
        }
    }

    /// Waits until the switch sees port `name`'s link in state `up`.
    pub fn wait_link(&self, name: &str, up: bool) {
        wait_for(
            &format!("switch port {name} link {}", if up { "up" } else { "down" }),
            TIMEOUT,
            || {
                self.ports()
                    .iter()
                    .any(|p| p.name == name && p.link_up == up)
                    .then_some(())
            },
        )
    }

    /// The vswitchd process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "--- {} (last {lines} lines) ---\n{}",
            self.log.display(),
            tail(&text, lines)
        )
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let ended = terminate(&mut self.child, libc::SIGTERM, Duration::from_secs(10));
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
            return;
        }
        // a clean stop on SIGTERM is part of what is tested
        match ended {
            Ok(st) if st.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Ok(st) => panic!(
                "vswitchd exited with {st} on SIGTERM\n{}",
                self.log_tail(40)
            ),
            Err(e) => panic!("vswitchd: {e}\n{}", self.log_tail(40)),
        }
    }
}

impl Switch {
    /// Starts a switch with vhost-server ports vhu0..vhu{n-1} (sockets
    /// `DIR/vhuI.sock`) added at start, plus `extra` arguments.
    pub fn start_with_vhost(n: usize, extra: &[&str]) -> Switch {
        let flags: Vec<String> = (0..n)
            .flat_map(|i| {
                [
                    "--port".to_owned(),
                    format!("vhu{i}=vhost-server:{{dir}}/vhu{i}.sock"),
                ]
            })
            .collect();
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        Switch::start(&args)
    }

    /// Adds vhost-server port `name` at `DIR/name.sock`.
    pub fn add_vhost(&self, name: &str) -> PortInfo {
        let spec = api::PortSpec {
            name: name.to_owned(),
            kind: api::PortKind::VhostServer,
            path: Some(self.vhost_path(name)),
            iface: None,
        };
        match self.call(&Request::PortAdd { port: spec }) {
            Reply::Ports(mut v) if v.len() == 1 => v.remove(0),
            r => panic!("port-add {name}: unexpected reply {r:?}"),
        }
    }
}

// ------------------------------------------------------------------ pods

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
        let mut p = Pod::spawn_with(name, sock, mac, peer_mac, true);
        p.wait_ready();
        p
    }

    /// Starts a pod without waiting for it (see [`Pod::wait_ready`]).
    pub fn spawn(name: &str, sock: &str, mac: &str, peer_mac: &str) -> Pod {
        Pod::spawn_with(name, sock, mac, peer_mac, false)
    }

    fn spawn_with(name: &str, sock: &str, mac: &str, peer_mac: &str, listen: bool) -> Pod {
        let n = unique();
        // each pod's forwarding lcore on the other CPU than its idle main lcore;
        // alternate so that polling pods spread over both CPUs
        let lcores = if n.is_multiple_of(2) {
            "0@1,1@0"
        } else {
            "0@0,1@1"
        };
        let prefix = format!("vswtpod{}x{n}", std::process::id());
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
                "net_virtio_user0,path={sock},server={},mac={mac},queue_size=256",
                u8::from(listen)
            ))
            .args([
                "--",
                "-i",
                "--forward-mode=rxonly",
                "--nb-cores=1",
                "--total-num-mbufs=2048",
            ])
            .arg(format!("--eth-peer=0,{peer_mac}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning dpdk-testpmd");
        let stdin = child.stdin.take().unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
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
            let _ = terminate(&mut self.child, libc::SIGKILL, Duration::from_secs(1));
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

// ------------------------------------------------------------------ TAP and raw frames

/// A TAP interface name unique to this process.
pub fn tap_name() -> String {
    format!("vswt{}x{}", std::process::id() % 100_000, unique())
}

/// Turns IPv6 off on `iface` (so the kernel sends no DAD, MLD or router
/// solicitations that the switch would flood to the pods) and sets it up.
pub fn quiet_iface_up(iface: &str) {
    let p = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    if Path::new(&p).exists() {
        std::fs::write(&p, "1").unwrap_or_else(|e| panic!("writing {p}: {e}"));
    }
    let st = Command::new("ip")
        .args(["link", "set", iface, "up"])
        .status()
        .expect("running ip");
    assert!(st.success(), "ip link set {iface} up failed");
}

/// Sends `frames` (Ethernet header included) out of kernel interface `iface`
/// on an AF_PACKET raw socket: into the switch, for a switch-owned TAP.
pub fn send_raw(iface: &str, frames: &[Vec<u8>]) {
    let cname = CString::new(iface).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    assert_ne!(ifindex, 0, "no interface {iface}");
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    let mut err = None;
    for f in frames {
        addr.sll_addr[..6].copy_from_slice(&f[..6]);
        // SAFETY: f is a live buffer of f.len() bytes; addr is a sockaddr_ll of the size given.
        let n = unsafe {
            libc::sendto(
                fd,
                f.as_ptr().cast(),
                f.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n != f.len() as isize {
            err = Some(format!(
                "sendto {iface}: {n}: {}",
                std::io::Error::last_os_error()
            ));
            break;
        }
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if let Some(e) = err {
        panic!("{e}");
    }
}

/// Parses "02:00:00:00:00:a0".
pub fn mac_bytes(mac: &str) -> [u8; 6] {
    mac.parse::<MacAddr>().unwrap().0
}

/// A 60-byte frame: `dst`, `src`, the type/length field `ethertype`, and
/// `payload` padded with zeros.
pub fn frame(dst: &str, src: &str, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&mac_bytes(dst));
    f.extend_from_slice(&mac_bytes(src));
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An IPv4 header claiming `total_len` bytes (protocol 253, for experiments).
pub fn ipv4_header(total_len: u16) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total_len.to_be_bytes());
    h[8] = 64;
    h[9] = 253;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&[10, 0, 0, 2]);
    h
}

// ------------------------------------------------------------------ kernel pods

/// A network namespace holding one pod interface; deleted on drop.
pub struct PodNs {
    pub name: String,
}

impl PodNs {
    /// Makes namespace `name`, moves host interface `iface` into it as `eth0`
    /// and addresses it the way Calico addresses a pod: `addr/32`,
    /// `169.254.1.1 dev eth0 scope link`, `default via 169.254.1.1`.
    pub fn wired(name: &str, iface: &str, mac: &str, addr: std::net::Ipv4Addr) -> PodNs {
        let ns = PodNs {
            name: name.to_owned(),
        };
        ip(&["netns", "add", name]);
        ip(&["link", "set", iface, "netns", name]);
        for k in [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ] {
            let o = in_ns(name, &["sysctl", "-qw", k]);
            assert!(o.status.success(), "sysctl {k}: {o:?}");
        }
        let cidr = format!("{addr}/32");
        for args in [
            vec!["link", "set", iface, "name", "eth0"],
            vec!["link", "set", "eth0", "address", mac],
            vec!["addr", "add", &cidr, "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
            vec![
                "route",
                "add",
                "169.254.1.1",
                "dev",
                "eth0",
                "scope",
                "link",
            ],
            vec![
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ],
        ] {
            let mut a = vec!["-n", name];
            a.extend(args);
            ip(&a);
        }
        ns
    }
}

impl Drop for PodNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("running ip");
    assert!(st.success(), "ip {} failed", args.join(" "));
}

pub fn in_ns(ns: &str, cmd: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .expect("running ip netns exec")
}

/// Attaches pod `default/{cid}` (interface eth0) as the CNI plugin does,
/// kind TAP, addresses from the switch's IPAM.
pub fn attach_tap(sw: &Switch, cid: &str) -> api::Attachment {
    match sw.call(&Request::PodAttach {
        attach: api::PodAttach {
            container_id: cid.into(),
            ifname: "eth0".into(),
            network: None,
            kind: api::AttachKind::Tap,
            pod: Some(format!("default/{cid}")),
            pools: vec![],
            ips: None,
            socket_dir: None,
        },
    }) {
        Reply::Attachment(a) => a,
        r => panic!("pod-attach {cid}: {r:?}"),
    }
}

//! A node's worth of pods on one vswitchd, as root: 200 kernel pods (network
//! namespaces attached by `vswitch-cni`) and 50 vhost-user pods (the
//! virtio-user ports of two `dpdk-testpmd` processes in `icmpecho` mode,
//! which answer ARP and ping), far past the 32 ethdevs Debian's DPDK has.
//!
//! What must hold:
//! - every ADD succeeds and every kernel pod pings its gateway;
//! - 500 random pod pairs (kernel to kernel, kernel to vhost-user) ping;
//! - all 250 pods are deleted and added again while a TCP stream between
//!   two other pods runs unbroken and a UDP flow of one datagram a
//!   millisecond loses nothing; afterwards the pods ping again.
//!
//! It prints vswitchd's resident memory and descriptors before and at 250
//! pods. `NODE_SCALE_KERNEL=N` / `NODE_SCALE_VHOST=N` (a multiple of 25)
//! run it smaller or bigger.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const KERNEL: usize = 200;
const VHOST: usize = 50;
/// vhost-user pods per testpmd process (its `RTE_MAX_ETHPORTS` is 32).
const PER_TESTPMD: usize = 25;
const PAIRS: usize = 500;

fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator: the pairs are the same in every run.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

struct Kernel {
    ns: Netns,
    id: String,
    ip: String,
}

struct Vhost {
    id: String,
    ip: String,
    sock: String,
    mac: String,
    ns: Netns,
}

fn conf(sw: &Switch) -> Value {
    json!({"cniVersion": "1.0.0", "name": "podnet", "type": "vswitch-cni",
           "socket": sw.sock, "vhostSocketDir": sw.dir.join("pods")})
}

fn vhost_conf(sw: &Switch) -> Value {
    let mut c = conf(sw);
    c["args"] = json!({"vswitch": {"interface": "vhost"}});
    c
}

/// vswitchd's resident memory (KiB) and open descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// Runs `f` over `items` on a few threads; returns the failures' messages.
fn parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> Result<(), String> + Sync) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let fails = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = items.get(i) else { return };
                if let Err(e) = f(t) {
                    fails.lock().unwrap().push(e);
                }
            });
        }
    });
    fails.into_inner().unwrap()
}

fn ping_ok(ns: &Netns, dst: &str) -> Result<(), String> {
    // a few tries: a pod's first packet waits for its ARP answer
    let o = ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", dst]);
    let text = String::from_utf8_lossy(&o.stdout);
    if text.contains(" 0 received") || !o.status.success() && !text.contains(" received") {
        return Err(format!("{} -> {dst}: {text}", ns.name));
    }
    Ok(())
}

/// `testpmd` in icmpecho mode on virtio-user ports, one per socket.
fn testpmd(pods: &[Vhost], core: usize) -> Child {
    need_tools(&["dpdk-testpmd", "stdbuf"]);
    // line-buffered, so that its "Press enter to exit" reaches us at once
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "dpdk-testpmd"])
        .args(["--lcores", &format!("0@{core},1@{core}")])
        .args([
            "--no-pci",
            "--in-memory",
            "--single-file-segments",
            "-m",
            "512",
        ])
        .args([
            "--file-prefix",
            &format!("vswscale{}x{core}", std::process::id()),
        ]);
    for (i, p) in pods.iter().enumerate() {
        cmd.arg("--vdev").arg(format!(
            "net_virtio_user{i},path={},mac={},queue_size=256",
            p.sock, p.mac
        ));
    }
    cmd.args([
        "--",
        "--forward-mode=icmpecho",
        "--nb-cores=1",
        "--total-num-mbufs=32768",
        "--auto-start",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawning dpdk-testpmd")
}

/// Waits until testpmd says it forwards (or fails with what it said).
fn wait_forwarding(child: &mut Child) {
    let out = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(out).lines();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(l)) => {
                let started = l.contains("Press enter to exit");
                seen.push_str(&l);
                seen.push('\n');
                if started {
                    // keep draining so that testpmd never blocks on stdout
                    std::thread::spawn(move || for _ in lines.by_ref() {});
                    return;
                }
            }
            _ => break,
        }
    }
    panic!("testpmd did not start forwarding:\n{seen}");
}

// A TCP stream and a UDP flow of one numbered datagram a millisecond
// between two pods, run until a file appears; the server reports what broke.
const STEADY_SERVER: &str = r#"
import socket, sys, threading, time
ip = sys.argv[1]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((ip, 5201)); t.listen(1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, 5202))
print("ready", flush=True)
seen = set(); top = [-1]
def udp():
    while True:
        d, _ = u.recvfrom(64)
        n = int(d)
        if n < 0: return
        seen.add(n); top[0] = max(top[0], n)
th = threading.Thread(target=udp); th.start()
c, _ = t.accept(); got = 0; err = ""
try:
    while True:
        b = c.recv(65536)
        if not b: break
        got += len(b)
except Exception as e:
    err = repr(e)
th.join()
lost = [n for n in range(top[0] + 1) if n not in seen]
print(f"tcp {got} {err or 'clean'}; udp {top[0] + 1} lost {len(lost)} {lost[:10]}", flush=True)
"#;

const STEADY_CLIENT: &str = r#"
import socket, sys, time, os
ip = sys.argv[1]
for _ in range(100):
    try:
        t = socket.create_connection((ip, 5201), timeout=10); break
    except OSError:
        time.sleep(0.1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0; chunk = b"x" * 16384; next_udp = time.monotonic(); sent = 0
while not os.path.exists(sys.argv[2]):
    now = time.monotonic()
    while next_udp <= now:
        u.sendto(str(n).encode(), (ip, 5202)); n += 1; next_udp += 0.001
    t.sendall(chunk); sent += len(chunk)
    time.sleep(0.0005)
time.sleep(0.5)
for _ in range(20):
    u.sendto(b"-1", (ip, 5202)); time.sleep(0.05)
t.close()
print(f"sent tcp {sent} udp {n}", flush=True)
"#;

#[test]
fn a_node_of_250_pods_attaches_pings_and_reattaches_without_disturbing_traffic() {
    must_be_root();
    let _g = serial();
    let kernel = env_count("NODE_SCALE_KERNEL", KERNEL);
    let vhost = env_count("NODE_SCALE_VHOST", VHOST) / PER_TESTPMD * PER_TESTPMD;
    let sw = start_switch();
    sw.apply_pool("scale-pool", "10.214.0.0/16", 26);
    let c = conf(&sw);
    let vc = vhost_conf(&sw);
    let (rss0, fds0) = footprint(sw.pid());

    // two pods that carry the steady traffic, then the node's worth
    let add = |tag: &str, conf: &Value| {
        let ns = Netns::new(tag);
        let id = format!("scale{tag}{}x{}", std::process::id(), unique());
        let r = Call::new(&id, &ns.path).run("ADD", conf).ok();
        (ns, id, first_ip(&r), r)
    };
    let steady: Vec<Kernel> = (0..2)
        .map(|i| {
            let (ns, id, ip, _) = add(&format!("s{i}"), &c);
            Kernel { ns, id, ip }
        })
        .collect();
    let t = Instant::now();
    let kernels: Vec<Kernel> = (0..kernel)
        .map(|i| {
            let (ns, id, ip, _) = add(&format!("k{i}"), &c);
            Kernel { ns, id, ip }
        })
        .collect();
    let vhosts: Vec<Vhost> = (0..vhost)
        .map(|i| {
            let (ns, id, ip, r) = add(&format!("v{i}"), &vc);
            let sock = r["interfaces"][0]["socketPath"]
                .as_str()
                .expect("a vhost-user pod's result names its socket")
                .to_owned();
            let mac = r["interfaces"][0]["mac"].as_str().expect("mac").to_owned();
            Vhost {
                id,
                ip,
                sock,
                mac,
                ns,
            }
        })
        .collect();
    eprintln!("{} ADDs in {:?}", kernel + vhost + 2, t.elapsed());
    assert_eq!(sw.pods().len(), kernel + vhost + 2);
    let mut pmds: Vec<Child> = vhosts
        .chunks(PER_TESTPMD)
        .enumerate()
        .map(|(i, chunk)| testpmd(chunk, i % 2))
        .collect();
    for p in &mut pmds {
        wait_forwarding(p);
    }
    let (rss, fds) = footprint(sw.pid());
    eprintln!(
        "vswitchd: RSS {rss0} KiB and {fds0} fds with no pod, {rss} KiB and {fds} fds with {} pods \
         ({} KiB and {:.1} fds a pod)",
        kernel + vhost + 2,
        rss.saturating_sub(rss0) / (kernel + vhost + 2) as u64,
        (fds - fds0) as f64 / (kernel + vhost + 2) as f64
    );

    // every kernel pod reaches its gateway
    let fails = parallel(&kernels, |k| ping_ok(&k.ns, "169.254.1.1"));
    assert!(fails.is_empty(), "gateway pings failed: {fails:#?}");

    // random pairs, a fifth of them to vhost-user pods
    let mut rng = XorShift(0x5eed_cafe);
    let pairs: Vec<(usize, String)> = (0..PAIRS)
        .map(|i| {
            let from = rng.below(kernels.len());
            let to = if i % 5 == 0 && !vhosts.is_empty() {
                vhosts[rng.below(vhosts.len())].ip.clone()
            } else {
                let mut j = rng.below(kernels.len());
                if j == from {
                    j = (j + 1) % kernels.len();
                }
                kernels[j].ip.clone()
            };
            (from, to)
        })
        .collect();
    let fails = parallel(&pairs, |(from, to)| ping_ok(&kernels[*from].ns, to));
    assert!(fails.is_empty(), "pair pings failed: {fails:#?}");

    // delete and add every pod again under steady traffic between two others
    let stop = sw.dir.join("steady-stop");
    let server = steady[1]
        .ns
        .spawn(&["python3", "-u", "-c", STEADY_SERVER, &steady[1].ip]);
    let client = steady[0].ns.spawn(&[
        "python3",
        "-u",
        "-c",
        STEADY_CLIENT,
        &steady[1].ip,
        &stop.to_string_lossy(),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    for k in &kernels {
        let call = Call::new(&k.id, &k.ns.path);
        call.run("DEL", &c).ok_silent();
        call.run("ADD", &c).ok();
    }
    for v in &vhosts {
        let call = Call::new(&v.id, &v.ns.path);
        call.run("DEL", &vc).ok_silent();
        call.run("ADD", &vc).ok();
    }
    eprintln!("{} DEL+ADDs in {:?}", kernel + vhost, t.elapsed());
    std::fs::write(&stop, b"").expect("writing the stop file");
    let text = |o: std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let sent = text(client.wait(Duration::from_secs(30)));
    let got = text(server.wait(Duration::from_secs(30)));
    eprintln!("steady: {sent} / {got}");
    assert!(got.contains("clean"), "the TCP stream broke: {got}");
    assert!(got.contains(" lost 0 "), "UDP datagrams were lost: {got}");
    let udp: u64 = got
        .split("udp ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(udp > 1000, "the UDP flow hardly ran: {got}");

    // the re-added pods work
    let fails = parallel(&kernels, |k| ping_ok(&k.ns, "169.254.1.1"));
    assert!(
        fails.is_empty(),
        "gateway pings after re-adding failed: {fails:#?}"
    );
    for p in &mut pmds {
        if let Some(mut i) = p.stdin.take() {
            let _ = i.write_all(b"\n");
        }
        let _ = p.kill();
        let _ = p.wait();
    }
    for k in kernels.iter().chain(&steady) {
        Call::new(&k.id, &k.ns.path).run("DEL", &c).ok_silent();
    }
    for v in &vhosts {
        Call::new(&v.id, &v.ns.path).run("DEL", &vc).ok_silent();
    }
    assert_eq!(sw.allocated(), 0, "every address came back");
}

//! Network namespaces, kernel interfaces and `ip`.

use crate::process::{must, output, signal, Bg};
use crate::unique;
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};

/// A network namespace we made (`ip netns add`). On drop, the processes
/// still inside are killed and the namespace deleted, which also deletes
/// its veths and their peers.
pub struct Netns {
    pub name: String,
    /// `/var/run/netns/<name>`, as a runtime hands it to a CNI plugin.
    pub path: String,
}

impl Netns {
    /// A namespace named `vsw<pid><tag><n>`, unique to this process, as it
    /// is made: nothing set up inside.
    pub fn new(tag: &str) -> Netns {
        Netns::named(&format!(
            "vsw{}{tag}{}",
            std::process::id() % 100_000,
            unique()
        ))
    }

    /// A namespace named `name`, nothing set up inside.
    pub fn named(name: &str) -> Netns {
        must(None, &["ip", "netns", "add", name]);
        Netns {
            name: name.to_owned(),
            path: format!("/var/run/netns/{name}"),
        }
    }

    /// A namespace named `name` with IPv6 off (so that the kernel adds no
    /// DAD, MLD or router solicitations to what a switch floods or a
    /// capture shows) and `lo` up.
    pub fn quiet(name: &str) -> Netns {
        let ns = Netns::named(name);
        ns.quiet_inside();
        ns
    }

    fn quiet_inside(&self) {
        self.sysctl(&[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        self.ip(&["link", "set", "lo", "up"]);
    }

    /// Makes namespace `name`, moves host interface `iface` into it as `eth0`
    /// with MAC `mac` and addresses it the way Calico addresses a pod (see
    /// [`Netns::calico_pod_addressing`]); IPv6 off, `lo` up.
    pub fn wired(name: &str, iface: &str, mac: &str, addr: Ipv4Addr) -> Netns {
        let ns = Netns::named(name);
        ip(&["link", "set", iface, "netns", name]);
        ns.quiet_inside();
        ns.ip(&["link", "set", iface, "name", "eth0"]);
        ns.ip(&["link", "set", "eth0", "address", mac]);
        ns.calico_pod_addressing(addr);
        ns
    }

    /// `eth0` inside as Calico's CNI plugin addresses a pod: `addr/32`, up,
    /// `169.254.1.1 dev eth0 scope link`, `default via 169.254.1.1`.
    pub fn calico_pod_addressing(&self, addr: Ipv4Addr) {
        let cidr = format!("{addr}/32");
        self.ip(&["addr", "add", &cidr, "dev", "eth0"]);
        self.ip(&["link", "set", "eth0", "up"]);
        self.ip(&[
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        self.ip(&[
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
    }

    /// Runs `cmd` inside; returns its output whatever the status.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        in_ns(&self.name, cmd)
    }

    /// Runs `cmd` inside; panics unless it succeeds; returns stdout.
    pub fn must(&self, cmd: &[&str]) -> String {
        must(Some(&self.name), cmd)
    }

    /// `ip -n <ns> ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a);
    }

    /// `sysctl -w` of each `key=value`, inside.
    pub fn sysctl(&self, kvs: &[&str]) {
        let mut a = vec!["sysctl", "-qw"];
        a.extend_from_slice(kvs);
        self.must(&a);
    }

    /// Starts `cmd` inside, in the background.
    pub fn spawn(&self, cmd: &[&str]) -> Bg {
        Bg::spawn(Some(&self.name), cmd)
    }

    /// Interface names inside.
    pub fn links(&self) -> BTreeSet<String> {
        let o = self.exec(&["ls", "/sys/class/net"]);
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// Two pings to `addr` from inside (see [`ping_output`]).
    pub fn ping(&self, addr: &str) -> Output {
        ping_output(&self.name, addr, 2)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse() {
                    signal(pid, Signal::SIGKILL);
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let mut a = vec!["ip"];
    a.extend_from_slice(args);
    must(None, &a);
}

/// Runs `cmd` in namespace `ns`; returns its output whatever the status.
pub fn in_ns(ns: &str, cmd: &[&str]) -> Output {
    output(Some(ns), cmd)
}

/// Interfaces of the current (host) network namespace.
pub fn host_links() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

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
    ip(&["link", "set", iface, "up"]);
}

/// Pings `dst` from namespace `ns`: `count` echoes 0.2 s apart, 2 s to wait
/// for each. True when at least one reply came back (ping's exit status 0).
pub fn ping(ns: &str, dst: impl Display, count: u32) -> bool {
    ping_output(ns, dst, count).status.success()
}

/// [`ping`], returning ping's output (for `ttl=`, loss, messages).
pub fn ping_output(ns: &str, dst: impl Display, count: u32) -> Output {
    in_ns(
        ns,
        &[
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            &dst.to_string(),
        ],
    )
}

/// What [`udp_round_trips`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTally {
    /// Datagrams sent.
    pub sent: u64,
    /// Replies that came back from the address and port they were sent to.
    pub replies: u64,
    /// Of those, how many carried distinct datagrams' payloads (fewer than
    /// `replies` when some came back twice).
    pub distinct: u64,
}

/// Sends `count` UDP datagrams, 5 ms apart and each with its own payload,
/// from namespace `ns` to `dst:port` on one connected socket, and counts the
/// replies that come back from `dst:port` with a payload that was sent (an
/// echo, or a pod in `5tswap` mode, answers so) until every one has or 2 s
/// after the last was sent. ICMP errors (nobody there yet) are not replies;
/// a send the kernel refuses because of one is not counted as sent.
pub fn udp_round_trips(ns: &str, dst: Ipv4Addr, port: u16, count: u32) -> UdpTally {
    const SCRIPT: &str = r#"
import socket, sys, time
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((dst, port))
s.setblocking(False)
want = {b"vswitch-udp-%d" % i for i in range(n)}
got, replies, sent = set(), 0, 0
def drain():
    global replies
    while True:
        try:
            d = s.recv(2048)
        except BlockingIOError:
            return
        except OSError:
            continue
        if d in want:
            replies += 1
            got.add(d)
for i in range(n):
    try:
        s.send(b"vswitch-udp-%d" % i)
        sent += 1
    except OSError:
        pass
    drain()
    time.sleep(0.005)
end = time.monotonic() + 2
while time.monotonic() < end and len(got) < n:
    drain()
    time.sleep(0.01)
drain()
print(sent, replies, len(got))
"#;
    let (dst, port, n) = (dst.to_string(), port.to_string(), count.to_string());
    let out = must(Some(ns), &["python3", "-c", SCRIPT, &dst, &port, &n]);
    let v: Vec<u64> = out
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match v[..] {
        [sent, replies, distinct] => UdpTally {
            sent,
            replies,
            distinct,
        },
        _ => panic!("udp_round_trips in {ns}: unexpected output {out:?}"),
    }
}

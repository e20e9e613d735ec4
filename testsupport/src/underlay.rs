//! Underlay networks for the cross-node tests, made of kernel parts only.
//!
//! An [`Underlay`] is a network namespace holding one Linux bridge per subnet
//! (`br1` for 192.168.50.0/24, `br2` for 192.168.60.0/24) and, with two
//! subnets, a router namespace between them (`.254` on each, forwarding on).
//! A switch under test joins it through [`Underlay::uplink`]: a veth whose
//! other end stays in the root namespace for DPDK's `net_af_packet`.
//!
//! Around the switches it builds independent peers:
//! - [`Underlay::external_host`]: "the outside world", a namespace with one
//!   address on a subnet, outside every pod pool;
//! - [`Underlay::kernel_node`]: a Calico node made of Linux parts, set up the
//!   way Felix sets one up in VXLAN mode (`vxlan.calico`, VNI 4096, UDP 4789,
//!   static neighbour and FDB entries per remote node), with one pod;
//! - [`Capture`] / [`Pcap`]: a capture on a bridge (dumpcap, tshark's
//!   engine), and tshark's field-by-field decode of it;
//! - [`ipip_listener`] and [`send_ipip`] / [`scapy_send`]: the kernel here has no
//!   IPIP device, so an IPIP peer is a raw socket on protocol 4 and scapy;
//! - [`tcp_transfer`] and [`ping`] between namespaces.
//!
//! Every veth on the underlay has its transmit offloads off, so that the
//! bridges carry what a wire would: frames of at most the MTU with complete
//! checksums, not GSO super-frames with partial checksums (a switch reading
//! an uplink with `net_af_packet` would get those as they are).
//!
//! Names are unique per process (`vsul-<pid>-<n>-...` namespaces); everything
//! is torn down on drop, also when a test panics, and namespaces left by a
//! test process that died are removed when the next underlay is made.
//! Needs root, `tshark`, `python3-scapy` (for `/usr/bin/python3`), `ethtool`
//! and iproute2.

pub use crate::netns::{ping, ping_output};
use crate::process::{command, lines, must, read_all, terminate, wait_line};
use crate::{in_ns, quiet_iface_up, unique, wait_for, Bg, Netns, Switch, Vswitchd};
use ipnetwork::Ipv4Network;
use nix::sys::signal::Signal;
use std::fmt::Display;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

/// Subnet 1 of the underlay.
pub const SUBNET1: &str = "192.168.50.0/24";
/// Subnet 2, used by [`Underlay::with_two_subnets`].
pub const SUBNET2: &str = "192.168.60.0/24";
/// Calico's VXLAN network identifier.
pub const VXLAN_VNI: u32 = 4096;
/// Calico's VXLAN UDP port (the IANA one; the kernel's default is 8472).
pub const VXLAN_PORT: u16 = 4789;
/// Calico's `vxlan.calico` and pod MTU on a 1500-byte underlay.
pub const VXLAN_MTU: u32 = 1450;
/// The interpreter that has scapy (`python3-scapy`); the one first on PATH
/// may be another.
pub const PYTHON: &str = "/usr/bin/python3";
/// The MAC Calico gives the host side of every pod veth.
pub const CALI_MAC: &str = "ee:ee:ee:ee:ee:ee";

const NS_PREFIX: &str = "vsul-";
/// How long setup steps, servers and captures may take to get ready.
const READY: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------ helpers

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    assert!(s.len().is_multiple_of(2), "odd hex string {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("hex {s:?}: {e}")))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The MAC address of `iface` in namespace `ns`, as "aa:bb:cc:dd:ee:ff".
pub fn mac_of(ns: &str, iface: &str) -> String {
    // `ip netns exec` mounts the namespace's own /sys
    must(
        Some(ns),
        &["cat", &format!("/sys/class/net/{iface}/address")],
    )
    .trim()
    .to_owned()
}

/// Turns the transmit offloads and GRO of `iface` off (see the module doc).
fn wire_like(ns: Option<&str>, iface: &str) {
    must(
        ns,
        &[
            "ethtool", "-K", iface, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ],
    );
}

/// An interface name for the root namespace, unique to this process and
/// within IFNAMSIZ: `u<pid><tag><n>`, for the host end of an uplink.
pub fn host_if_name(tag: &str) -> String {
    assert!(
        tag.chars().all(|c| c.is_ascii_alphabetic()),
        "tag {tag:?}: letters only, so that pid and counter stay apart"
    );
    let name = format!("u{}{tag}{}", std::process::id(), unique());
    assert!(name.len() <= 15, "interface name {name} exceeds IFNAMSIZ");
    name
}

// ------------------------------------------------------------------ namespaces

/// Deletes the namespaces of underlays whose test process is gone (killed
/// before its destructors ran), once per process.
fn remove_stale() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let Some(pid) = name
                .strip_prefix(NS_PREFIX)
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
    });
}

// ------------------------------------------------------------------ the underlay

/// The network between the nodes: one bridge per subnet in a namespace of
/// its own, and a router between subnets when there are two or more.
pub struct Underlay {
    id: String,
    subnets: Vec<Ipv4Network>,
    routed: bool,
    // the router goes first: its veths are ports of the bridges
    router: Option<Netns>,
    ns: Netns,
    uplinks: Mutex<Vec<String>>,
    seq: AtomicUsize,
}

impl Underlay {
    /// One subnet, [`SUBNET1`], on bridge `br1`.
    pub fn new(name_hint: &str) -> Underlay {
        Underlay::with_subnets(name_hint, &[SUBNET1])
    }

    /// [`SUBNET1`] on `br1` and [`SUBNET2`] on `br2`, routed by a namespace
    /// at `.254` on each.
    pub fn with_two_subnets() -> Underlay {
        Underlay::with_subnets("two", &[SUBNET1, SUBNET2])
    }

    /// One bridge `br<i>` per subnet (i from 1); with more than one, a router
    /// namespace holding the last usable address of each (`.254` of a /24).
    pub fn with_subnets(name_hint: &str, subnets: &[&str]) -> Underlay {
        assert!(!subnets.is_empty(), "an underlay needs a subnet");
        remove_stale();
        let hint: String = name_hint
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let id = format!("{NS_PREFIX}{}-{}-{hint}", std::process::id(), unique());
        let subnets: Vec<Ipv4Network> = subnets
            .iter()
            .map(|s| s.parse().unwrap_or_else(|e| panic!("subnet {s}: {e}")))
            .collect();
        let ns = Netns::quiet(&id);
        // with br_netfilter loaded (Docker loads it) bridges drop IPv4 frames
        // whose headers do not add up: a wire does not, and the switch's own
        // checks are what the tests look at (the sysctl is per namespace;
        // without the module it does not exist, which is as good)
        let _ = ns.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
        let mut ul = Underlay {
            id,
            routed: subnets.len() > 1,
            subnets,
            router: None,
            ns,
            uplinks: Mutex::new(Vec::new()),
            seq: AtomicUsize::new(0),
        };
        for i in 1..=ul.subnets.len() {
            let br = ul.bridge(i as u8);
            // no STP and no forward delay: a port forwards as soon as it is up
            ul.ns.ip(&[
                "link",
                "add",
                &br,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ]);
            ul.ns.ip(&["link", "set", &br, "up"]);
        }
        if ul.routed {
            let r = Netns::quiet(&format!("{}-rt", ul.id));
            r.sysctl(&["net.ipv4.ip_forward=1"]);
            for i in 1..=ul.subnets.len() {
                let s = i as u8;
                let iface = format!("eth{i}");
                ul.attach(&r, &iface, s);
                let cidr = format!("{}/{}", ul.router_addr(s), ul.subnet(s).prefix());
                r.ip(&["addr", "add", &cidr, "dev", &iface]);
            }
            ul.router = Some(r);
        }
        ul
    }

    /// The underlay namespace (it holds the bridges).
    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// The bridge of subnet `subnet` (1-based): `br1`, `br2`.
    pub fn bridge(&self, subnet: u8) -> String {
        self.check_subnet(subnet);
        format!("br{subnet}")
    }

    /// Subnet `subnet` (1-based).
    pub fn subnet(&self, subnet: u8) -> Ipv4Network {
        self.check_subnet(subnet);
        self.subnets[subnet as usize - 1]
    }

    /// Host number `host` of subnet `subnet`: `addr(1, 30)` is 192.168.50.30.
    pub fn addr(&self, subnet: u8, host: u32) -> Ipv4Addr {
        let net = self.subnet(subnet);
        assert!(host < net.size(), "host {host} is outside {net}");
        Ipv4Addr::from(u32::from(net.network()) + host)
    }

    /// The router's address on `subnet` when the underlay has several
    /// subnets (`.254` of a /24), else None.
    pub fn gateway(&self, subnet: u8) -> Option<Ipv4Addr> {
        self.routed.then(|| self.router_addr(subnet))
    }

    /// The subnet (1-based) that holds `ip`.
    pub fn subnet_of(&self, ip: Ipv4Addr) -> u8 {
        let i = self
            .subnets
            .iter()
            .position(|n| n.contains(ip))
            .unwrap_or_else(|| panic!("{ip} is on none of the subnets {:?}", self.subnets));
        i as u8 + 1
    }

    fn router_addr(&self, subnet: u8) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet(subnet).broadcast()) - 1)
    }

    fn check_subnet(&self, subnet: u8) {
        assert!(
            (1..=self.subnets.len()).contains(&(subnet as usize)),
            "subnet {subnet}: this underlay has subnets 1..={}",
            self.subnets.len()
        );
    }

    fn next(&self) -> usize {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Connects `iface` (made here) in namespace `ns` to the bridge of
    /// `subnet` through a veth; both ends up, wire-like. Returns the
    /// bridge-side name.
    fn attach(&self, ns: &Netns, iface: &str, subnet: u8) -> String {
        let br = self.bridge(subnet);
        let port = format!("p{}", self.next());
        self.ns.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", iface, "netns", &ns.name,
        ]);
        self.ns.ip(&["link", "set", &port, "master", &br]);
        wire_like(Some(self.ns()), &port);
        wire_like(Some(&ns.name), iface);
        self.ns.ip(&["link", "set", &port, "up"]);
        ns.ip(&["link", "set", iface, "up"]);
        port
    }

    /// A veth pair between the root namespace and the bridge of `subnet`:
    /// `host_if` stays in the root namespace for the switch to open with
    /// `net_af_packet` (IPv6 off, MTU 1500, no address, up); the other end is
    /// a port of the bridge. Returns the bridge-side name. `host_if` is
    /// deleted when the underlay is dropped; [`host_if_name`] makes one.
    pub fn uplink(&self, host_if: &str, subnet: u8) -> String {
        assert!(host_if.len() <= 15, "{host_if} exceeds IFNAMSIZ");
        let br = self.bridge(subnet);
        let port = format!("up{}", self.next());
        must(
            None,
            &[
                "ip",
                "link",
                "add",
                host_if,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                self.ns(),
            ],
        );
        self.uplinks.lock().unwrap().push(host_if.to_owned());
        must(None, &["ip", "link", "set", host_if, "mtu", "1500"]);
        // frames for the switch arrive whole: segmented and checksummed by the
        // bridge-side end, not merged again on receive
        must(None, &["ethtool", "-K", host_if, "gro", "off"]);
        quiet_iface_up(host_if);
        self.ns.ip(&["link", "set", &port, "master", &br]);
        wire_like(Some(self.ns()), &port);
        self.ns.ip(&["link", "set", &port, "up"]);
        port
    }

    /// A host outside every pod pool: a namespace with `eth0` on the subnet
    /// that holds `ip_cidr` (e.g. "192.168.50.100/24"), and a default route
    /// via `gw` if given.
    pub fn external_host(&self, ip_cidr: &str, gw: Option<&str>) -> Host {
        let net: Ipv4Network = ip_cidr
            .parse()
            .unwrap_or_else(|e| panic!("address {ip_cidr}: {e}"));
        let subnet = self.subnet_of(net.ip());
        let ns = Netns::quiet(&format!("{}-h{}", self.id, self.next()));
        self.attach(&ns, "eth0", subnet);
        ns.ip(&["addr", "add", ip_cidr, "dev", "eth0"]);
        if let Some(gw) = gw {
            ns.ip(&["route", "add", "default", "via", gw]);
        }
        let mac = mac_of(&ns.name, "eth0");
        Host {
            ip: net.ip(),
            mac,
            iface: "eth0".into(),
            ns,
        }
    }

    /// A Calico node in VXLAN mode made of Linux parts, with one pod; see
    /// [`KernelNode`].
    pub fn kernel_node(&self, spec: KernelNodeSpec) -> KernelNode {
        let subnet = self.subnet_of(spec.node_ip);
        let net = self.subnet(subnet);
        let k = self.next();
        let node = Netns::quiet(&format!("{}-n{k}", self.id));
        // before any interface exists: turning forwarding on resets the
        // per-interface values
        node.sysctl(&["net.ipv4.ip_forward=1"]);
        self.attach(&node, "eth0", subnet);
        let node_cidr = format!("{}/{}", spec.node_ip, net.prefix());
        node.ip(&["addr", "add", &node_cidr, "dev", "eth0"]);
        // A real node always has a default route, and proxy ARP for
        // 169.254.1.1 answers only for an address it has a route to.
        let gw = spec
            .gateway
            .or_else(|| self.gateway(subnet))
            .unwrap_or_else(|| self.router_addr(subnet));
        node.ip(&["route", "add", "default", "via", &gw.to_string()]);

        let vni = spec.vni.to_string();
        let port = spec.port.to_string();
        let local = spec.node_ip.to_string();
        node.ip(&[
            "link",
            "add",
            "vxlan.calico",
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dev",
            "eth0",
            "dstport",
            &port,
            "nolearning",
        ]);
        let mtu = spec.mtu.to_string();
        node.ip(&[
            "link",
            "set",
            "vxlan.calico",
            "mtu",
            &mtu,
            "address",
            &spec.vtep_mac,
        ]);
        let vtep = format!("{}/32", spec.vtep_ip);
        node.ip(&["addr", "add", &vtep, "dev", "vxlan.calico"]);
        node.ip(&["link", "set", "vxlan.calico", "up"]);
        // Felix's route for a local block: unused addresses go nowhere
        node.ip(&["route", "add", "blackhole", &spec.block.to_string()]);

        let pod = Netns::quiet(&format!("{}-p{k}", self.id));
        let cali = format!("cali{}", hex(&spec.pod_ip.octets()));
        node.ip(&[
            "link", "add", &cali, "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
        ]);
        node.ip(&["link", "set", &cali, "address", CALI_MAC, "mtu", &mtu]);
        // what Felix writes for a workload interface
        node.sysctl(&[
            &format!("net.ipv4.conf.{cali}.rp_filter=1"),
            &format!("net.ipv4.conf.{cali}.route_localnet=1"),
            &format!("net.ipv4.conf.{cali}.proxy_arp=1"),
            &format!("net.ipv4.neigh.{cali}.proxy_delay=0"),
            &format!("net.ipv4.conf.{cali}.forwarding=1"),
        ]);
        node.ip(&["link", "set", &cali, "up"]);
        let pod_host = format!("{}/32", spec.pod_ip);
        node.ip(&["route", "add", &pod_host, "dev", &cali, "scope", "link"]);
        // the pod, as Calico's CNI plugin addresses it
        pod.ip(&["link", "set", "eth0", "mtu", &mtu]);
        pod.calico_pod_addressing(spec.pod_ip);
        let node_mac = mac_of(&node.name, "eth0");
        let pod_mac = mac_of(&pod.name, "eth0");
        KernelNode {
            node_ip: spec.node_ip,
            node_mac,
            vtep_ip: spec.vtep_ip,
            vtep_mac: spec.vtep_mac,
            block: spec.block,
            pod_ip: spec.pod_ip,
            pod_mac,
            cali,
            pod,
            node,
        }
    }

    /// Starts capturing on `bridge` of this underlay with capture filter
    /// `bpf_filter` ("" for every frame); see [`capture_in`].
    pub fn capture(&self, bridge: &str, bpf_filter: &str) -> Capture {
        capture_in(Some(self.ns()), bridge, bpf_filter)
    }
}

impl Drop for Underlay {
    fn drop(&mut self) {
        for host_if in self.uplinks.lock().unwrap().drain(..) {
            let _ = Command::new("ip")
                .args(["link", "del", &host_if])
                .stderr(Stdio::null())
                .status();
        }
        // the namespaces go with the fields, router first
    }
}

// ------------------------------------------------------------------ hosts and nodes

/// A host on the underlay: one namespace, `eth0` with one address.
pub struct Host {
    pub ip: Ipv4Addr,
    pub mac: String,
    pub iface: String,
    ns: Netns,
}

impl Host {
    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// Runs `cmd` on the host; returns its output whatever the status.
    pub fn run(&self, cmd: &[&str]) -> Output {
        self.ns.exec(cmd)
    }

    /// Starts `cmd` on the host in the background (a server, a listener).
    pub fn spawn(&self, cmd: &[&str]) -> Bg {
        self.ns.spawn(cmd)
    }

    /// `ip -n <host> ARGS`, e.g. a route back to a pod pool.
    pub fn ip(&self, args: &[&str]) {
        self.ns.ip(args)
    }
}

/// What a [`KernelNode`] is made of. [`KernelNodeSpec::new`] fills in the
/// rest from the node address and the block; the fields can be changed
/// before [`Underlay::kernel_node`].
#[derive(Clone, Debug)]
pub struct KernelNodeSpec {
    /// On one of the underlay's subnets.
    pub node_ip: Ipv4Addr,
    /// The node's pod block, e.g. 10.72.3.0/26.
    pub block: Ipv4Network,
    /// `vxlan.calico`'s address (Calico takes it from the node's block):
    /// the block's first address by default.
    pub vtep_ip: Ipv4Addr,
    /// `vxlan.calico`'s MAC: `66:ca:` and the node address by default.
    pub vtep_mac: String,
    /// The pod's address: the block's second by default.
    pub pod_ip: Ipv4Addr,
    /// The node's default route; by default the underlay's gateway of the
    /// subnet, or its `.254` even on a one-subnet underlay (where nothing
    /// answers there): see [`Underlay::kernel_node`].
    pub gateway: Option<Ipv4Addr>,
    pub vni: u32,
    pub port: u16,
    pub mtu: u32,
}

impl KernelNodeSpec {
    /// `KernelNodeSpec::new("192.168.50.30", "10.72.3.0/26")`: VTEP
    /// 10.72.3.0, pod 10.72.3.1, VNI 4096, port 4789, MTU 1450.
    pub fn new(node_ip: &str, block: &str) -> KernelNodeSpec {
        let node_ip: Ipv4Addr = node_ip
            .parse()
            .unwrap_or_else(|e| panic!("node address {node_ip}: {e}"));
        let block: Ipv4Network = block
            .parse()
            .unwrap_or_else(|e| panic!("block {block}: {e}"));
        assert_eq!(
            block.ip(),
            block.network(),
            "block {block} is not a network address"
        );
        let [a, b, c, d] = node_ip.octets();
        KernelNodeSpec {
            node_ip,
            vtep_ip: block.network(),
            vtep_mac: format!("66:ca:{a:02x}:{b:02x}:{c:02x}:{d:02x}"),
            pod_ip: Ipv4Addr::from(u32::from(block.network()) + 1),
            block,
            gateway: None,
            vni: VXLAN_VNI,
            port: VXLAN_PORT,
            mtu: VXLAN_MTU,
        }
    }
}

/// A Calico node in VXLAN mode made of Linux parts, as Felix sets one up:
///
/// - namespace "node": `eth0` on the underlay with the node address, IP
///   forwarding on, a default route;
/// - `vxlan.calico`: `type vxlan id 4096 local <node ip> dev eth0 dstport
///   4789 nolearning`, MTU 1450, its own MAC, the tunnel address as a /32;
///   `blackhole <block>`;
/// - one pod in a namespace of its own behind a veth `cali<hex of pod ip>`
///   (MAC ee:ee:ee:ee:ee:ee, proxy_arp on, proxy_delay 0, rp_filter 1,
///   `<pod ip>/32 dev cali… scope link`); the pod has `<pod ip>/32` on
///   `eth0`, `169.254.1.1 dev eth0 scope link`, `default via 169.254.1.1`,
///   MTU 1450 on both ends;
/// - per remote node ([`KernelNode::add_peer`]): a permanent neighbour and
///   FDB entry and a route to its block through `vxlan.calico`.
///
/// The kernel's VXLAN device sends UDP checksums (its default for IPv4),
/// a UDP source port hashed from the inner flow, outer TTL 64 and DF
/// clear.
pub struct KernelNode {
    pub node_ip: Ipv4Addr,
    /// The MAC of the node's underlay interface.
    pub node_mac: String,
    pub vtep_ip: Ipv4Addr,
    pub vtep_mac: String,
    pub block: Ipv4Network,
    pub pod_ip: Ipv4Addr,
    pub pod_mac: String,
    /// The host side of the pod's veth, in the node namespace.
    pub cali: String,
    // the pod goes first: its veth peer is in the node
    pod: Netns,
    node: Netns,
}

impl KernelNode {
    /// The node's namespace (underlay `eth0`, `vxlan.calico`, `cali…`).
    pub fn node_ns(&self) -> &str {
        &self.node.name
    }

    /// The pod's namespace (`eth0` with the pod address).
    pub fn pod_ns(&self) -> &str {
        &self.pod.name
    }

    /// What Felix programs for a remote VXLAN node:
    /// `ip neigh replace <vtep ip> lladdr <vtep mac> dev vxlan.calico nud
    /// permanent`, `bridge fdb replace <vtep mac> dev vxlan.calico dst <node
    /// ip> self permanent`, `ip route replace <block> via <vtep ip> dev
    /// vxlan.calico onlink`.
    pub fn add_peer(
        &self,
        peer_node_ip: impl Display,
        peer_vtep_ip: impl Display,
        peer_vtep_mac: impl Display,
        peer_block_cidr: impl Display,
    ) {
        let (node_ip, vtep_ip, mac, block) = (
            peer_node_ip.to_string(),
            peer_vtep_ip.to_string(),
            peer_vtep_mac.to_string(),
            peer_block_cidr.to_string(),
        );
        self.node.ip(&[
            "neigh",
            "replace",
            &vtep_ip,
            "lladdr",
            &mac,
            "dev",
            "vxlan.calico",
            "nud",
            "permanent",
        ]);
        must(
            None,
            &[
                "bridge",
                "-n",
                self.node_ns(),
                "fdb",
                "replace",
                &mac,
                "dev",
                "vxlan.calico",
                "dst",
                &node_ip,
                "self",
                "permanent",
            ],
        );
        self.node.ip(&[
            "route",
            "replace",
            &block,
            "via",
            &vtep_ip,
            "dev",
            "vxlan.calico",
            "onlink",
        ]);
    }

    /// [`KernelNode::add_peer`] with another kernel node's values.
    pub fn add_peer_node(&self, other: &KernelNode) {
        self.add_peer(other.node_ip, other.vtep_ip, &other.vtep_mac, other.block);
    }

    /// Undoes [`KernelNode::add_peer`], as Felix does when a node goes away.
    pub fn remove_peer(
        &self,
        peer_vtep_ip: impl Display,
        peer_vtep_mac: impl Display,
        peer_block_cidr: impl Display,
    ) {
        let (vtep_ip, mac, block) = (
            peer_vtep_ip.to_string(),
            peer_vtep_mac.to_string(),
            peer_block_cidr.to_string(),
        );
        self.node.ip(&["route", "del", &block]);
        must(
            None,
            &[
                "bridge",
                "-n",
                self.node_ns(),
                "fdb",
                "del",
                &mac,
                "dev",
                "vxlan.calico",
                "self",
            ],
        );
        self.node
            .ip(&["neigh", "del", &vtep_ip, "dev", "vxlan.calico"]);
    }

    /// Runs `cmd` in the pod; returns its output whatever the status.
    pub fn pod_run(&self, cmd: &[&str]) -> Output {
        self.pod.exec(cmd)
    }

    /// Runs `cmd` on the node; returns its output whatever the status.
    pub fn node_run(&self, cmd: &[&str]) -> Output {
        self.node.exec(cmd)
    }
}

// ------------------------------------------------------------------ captures

/// A running capture. [`Capture::stop`] gives the [`Pcap`]; dropped without
/// stop, it is killed and its file removed.
///
/// The capture engine is dumpcap, the one tshark runs underneath, started
/// directly: tshark prints "Capturing on" before dumpcap has even opened the
/// interface (it prints it for an interface that does not exist, too), so
/// the first frames after it are often lost. dumpcap prints `File: <path>`
/// once the interface is open, its filter set and the file created, and
/// every frame after that line is in the file.
pub struct Capture {
    child: Child,
    dir: PathBuf,
    pcap: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

/// Starts capturing on `iface` in namespace `ns` (None: the root namespace,
/// e.g. a switch's uplink) with capture filter `bpf_filter` ("" for every
/// frame), into a pcap file, and returns once frames are being captured.
/// The kernel buffer is 32 MiB, so that a transfer of a few MiB at full
/// speed loses nothing.
pub fn capture_in(ns: Option<&str>, iface: &str, bpf_filter: &str) -> Capture {
    let dir = PathBuf::from(format!("/tmp/vsul-cap-{}-{}", std::process::id(), unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the capture dir");
    let pcap = dir.join(format!("{iface}.pcap"));
    let pcap_s = pcap.to_str().unwrap().to_owned();
    let mut cmd = vec!["dumpcap", "-i", iface, "-P", "-B", "32", "-w", &pcap_s];
    if !bpf_filter.is_empty() {
        cmd.extend(["-f", bpf_filter]);
    }
    let mut child = command(ns, &cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning dumpcap (apt-get install tshark)");
    let (rx, h) = lines(child.stderr.take().unwrap());
    let ready = wait_line(&rx, READY, |l| l.starts_with("File: "));
    let stderr = Arc::new(Mutex::new(match &ready {
        Ok(v) | Err(v) => v.clone(),
    }));
    let keep = stderr.clone();
    let reader = std::thread::spawn(move || {
        for l in rx {
            keep.lock().unwrap().push(l);
        }
        let _ = h.join();
    });
    let mut cap = Capture {
        child,
        dir,
        pcap,
        stderr,
        reader: Some(reader),
    };
    if ready.is_err() {
        let st = cap.child.try_wait().ok().flatten();
        panic!(
            "capture on {iface} did not start (dumpcap exit status {st:?}):\n{}",
            cap.stderr()
        );
    }
    cap
}

/// "Packets received/dropped on interface 'br1': 2987/0 (pcap:0/...)" →
/// (received, dropped).
fn capture_stats(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Packets received/dropped"))?;
    let (_, rest) = line.split_once("': ")?;
    let counts = rest.split_whitespace().next()?;
    let (r, d) = counts.split_once('/')?;
    Some((r.parse().ok()?, d.parse().ok()?))
}

impl Capture {
    /// Stops the capture cleanly (SIGINT, then waits for the file to be
    /// written) and returns it; panics if the kernel dropped frames, since a
    /// capture with holes would make counts lie (see
    /// [`Capture::stop_allow_drops`]). Waits half a second first: frames in
    /// a kernel buffer block that is not full yet reach dumpcap only when
    /// the block times out.
    pub fn stop(self) -> Pcap {
        let pcap = self.stop_allow_drops();
        assert_eq!(
            pcap.dropped,
            0,
            "the capture {} is incomplete: the kernel dropped {} frames",
            pcap.path.display(),
            pcap.dropped
        );
        pcap
    }

    /// [`Capture::stop`], returning also a capture with holes
    /// ([`Pcap::dropped`] says how many frames are missing).
    pub fn stop_allow_drops(mut self) -> Pcap {
        std::thread::sleep(Duration::from_millis(500));
        let _ = terminate(&mut self.child, Signal::SIGINT, Duration::from_secs(10));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self.stderr();
        assert!(
            self.pcap.exists(),
            "dumpcap wrote no {}:\n{stderr}",
            self.pcap.display()
        );
        let (received, dropped) = capture_stats(&stderr)
            .unwrap_or_else(|| panic!("no capture statistics from dumpcap:\n{stderr}"));
        let pcap = Pcap {
            path: self.pcap.clone(),
            dir: Some(self.dir.clone()),
            received,
            dropped,
        };
        // the directory now belongs to the Pcap
        self.dir = PathBuf::new();
        pcap
    }

    /// What dumpcap printed to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, Signal::SIGKILL, Duration::from_secs(1));
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A capture file, read with tshark.
///
/// Field values come as tshark's `-T fields` prints them: a field present
/// several times in a frame (tunnels: `ip.src`, `eth.src`,
/// `ip.checksum.status`, ...) gives all its values comma-separated, outer
/// first then inner, e.g. `ip.src` = "192.168.50.30,10.72.3.1"; an absent
/// field is "". Numbers are decimal (`vxlan.vni` "4096", `ip.proto` "17,1"),
/// except fields tshark shows in hex (`ip.checksum` "0x1c46",
/// `udp.checksum`, `ip.flags`). `ip.checksum.status` is 0 bad, 1 good,
/// 2 unverified; reads pass `-o ip.check_checksum:TRUE`, so IPv4 header
/// checksums come out 0 or 1.
///
/// Removed on drop, except when the test is panicking: then its path is
/// printed and the file kept for a look.
pub struct Pcap {
    pub path: PathBuf,
    /// Frames the kernel passed to the capture (0 for [`Pcap::open`]).
    pub received: u64,
    /// Frames the kernel dropped before the capture could take them.
    pub dropped: u64,
    dir: Option<PathBuf>,
}

/// A VXLAN frame as decoded by tshark; `inner_*` are None for an inner frame
/// that is not IPv4 (ARP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanFrame {
    pub len: usize,
    pub outer_eth_src: String,
    pub outer_eth_dst: String,
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
    pub outer_ttl: u8,
    /// 0 bad, 1 good.
    pub outer_checksum_status: u8,
    pub udp_src_port: u16,
    pub udp_dst_port: u16,
    pub vni: u32,
    pub inner_eth_src: String,
    pub inner_eth_dst: String,
    pub inner_src: Option<Ipv4Addr>,
    pub inner_dst: Option<Ipv4Addr>,
    pub inner_proto: Option<u8>,
    pub inner_checksum_status: Option<u8>,
}

/// An IP-in-IP frame (outer protocol 4) as decoded by tshark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpipFrame {
    pub len: usize,
    pub eth_src: String,
    pub eth_dst: String,
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
    pub outer_ttl: u8,
    /// 0 bad, 1 good.
    pub outer_checksum_status: u8,
    pub inner_src: Ipv4Addr,
    pub inner_dst: Ipv4Addr,
    pub inner_proto: u8,
    pub inner_checksum_status: u8,
}

fn nth<T: std::str::FromStr>(v: &str, i: usize, what: &str) -> Option<T> {
    v.split(',').nth(i).filter(|s| !s.is_empty()).map(|s| {
        s.parse()
            .unwrap_or_else(|_| panic!("cannot parse {what} value {s:?} (field {v:?})"))
    })
}

fn first<T: std::str::FromStr>(v: &str, what: &str) -> T {
    nth(v, 0, what).unwrap_or_else(|| panic!("no {what} in {v:?}"))
}

impl Pcap {
    /// A capture file made elsewhere (e.g. an oracle); never removed.
    pub fn open(path: impl Into<PathBuf>) -> Pcap {
        Pcap {
            path: path.into(),
            received: 0,
            dropped: 0,
            dir: None,
        }
    }

    fn tshark(&self, extra: &[&str]) -> String {
        let path = self.path.to_str().unwrap();
        let mut cmd = vec!["tshark", "-n", "-r", path, "-o", "ip.check_checksum:TRUE"];
        cmd.extend_from_slice(extra);
        must(None, &cmd)
    }

    /// `tshark -r <file> -o ip.check_checksum:TRUE -Y <display_filter> -T
    /// fields -E separator=/t -e <field>...`: one row per matching frame, one
    /// string per field (see [`Pcap`] for the formats). `display_filter` ""
    /// matches every frame.
    pub fn fields(&self, display_filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        assert!(!fields.is_empty(), "no fields asked for");
        let mut args = vec!["-T", "fields", "-E", "separator=/t"];
        if !display_filter.is_empty() {
            args.extend(["-Y", display_filter]);
        }
        for f in fields {
            args.extend(["-e", f]);
        }
        self.tshark(&args)
            .lines()
            .map(|l| {
                let row: Vec<String> = l.split('\t').map(str::to_owned).collect();
                assert_eq!(
                    row.len(),
                    fields.len(),
                    "tshark row {l:?} for fields {fields:?}"
                );
                row
            })
            .collect()
    }

    /// Every frame's bytes as captured, in order (index i is tshark's
    /// `frame.number` i + 1). Reads the classic pcap format the captures are
    /// written in, either byte order, micro- or nanosecond stamps.
    pub fn raw_frames(&self) -> Vec<Vec<u8>> {
        let data = std::fs::read(&self.path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.path.display()));
        assert!(data.len() >= 24, "{}: no pcap header", self.path.display());
        let magic: [u8; 4] = data[..4].try_into().unwrap();
        let le = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
            _ => panic!(
                "{}: not a classic pcap file (magic {magic:02x?})",
                self.path.display()
            ),
        };
        let u32_at = |i: usize| {
            let b: [u8; 4] = data[i..i + 4].try_into().unwrap();
            if le {
                u32::from_le_bytes(b)
            } else {
                u32::from_be_bytes(b)
            }
        };
        let mut frames = Vec::new();
        let mut at = 24;
        while at + 16 <= data.len() {
            let caplen = u32_at(at + 8) as usize;
            let start = at + 16;
            assert!(
                start + caplen <= data.len(),
                "{}: truncated record at byte {at}",
                self.path.display()
            );
            frames.push(data[start..start + caplen].to_vec());
            at = start + caplen;
        }
        frames
    }

    /// How many frames match `display_filter`.
    pub fn count(&self, display_filter: &str) -> usize {
        self.fields(display_filter, &["frame.number"]).len()
    }

    /// tshark's one-line summary of the frames matching `display_filter`,
    /// for assertion messages.
    pub fn summary(&self, display_filter: &str) -> String {
        let mut args = vec![];
        if !display_filter.is_empty() {
            args.extend(["-Y", display_filter]);
        }
        self.tshark(&args)
    }

    /// Every VXLAN frame (tshark decodes UDP port 4789 as VXLAN), in order.
    pub fn vxlan(&self) -> Vec<VxlanFrame> {
        let f = [
            "frame.len",
            "eth.src",
            "eth.dst",
            "ip.src",
            "ip.dst",
            "ip.ttl",
            "ip.checksum.status",
            "udp.srcport",
            "udp.dstport",
            "vxlan.vni",
            "ip.proto",
        ];
        self.fields("vxlan", &f)
            .into_iter()
            .map(|r| VxlanFrame {
                len: first(&r[0], "frame.len"),
                outer_eth_src: first(&r[1], "eth.src"),
                outer_eth_dst: first(&r[2], "eth.dst"),
                outer_src: first(&r[3], "ip.src"),
                outer_dst: first(&r[4], "ip.dst"),
                outer_ttl: first(&r[5], "ip.ttl"),
                outer_checksum_status: first(&r[6], "ip.checksum.status"),
                udp_src_port: first(&r[7], "udp.srcport"),
                udp_dst_port: first(&r[8], "udp.dstport"),
                vni: first(&r[9], "vxlan.vni"),
                inner_eth_src: nth(&r[1], 1, "eth.src").unwrap_or_default(),
                inner_eth_dst: nth(&r[2], 1, "eth.dst").unwrap_or_default(),
                inner_src: nth(&r[3], 1, "ip.src"),
                inner_dst: nth(&r[4], 1, "ip.dst"),
                inner_proto: nth(&r[10], 1, "ip.proto"),
                inner_checksum_status: nth(&r[6], 1, "ip.checksum.status"),
            })
            .collect()
    }

    /// Every frame whose outer IPv4 protocol is 4 (IP-in-IP), in order.
    pub fn ipip(&self) -> Vec<IpipFrame> {
        let f = [
            "frame.len",
            "eth.src",
            "eth.dst",
            "ip.src",
            "ip.dst",
            "ip.ttl",
            "ip.checksum.status",
            "ip.proto",
        ];
        self.fields("ip.proto == 4", &f)
            .into_iter()
            .filter(|r| r[7].split(',').next() == Some("4"))
            .map(|r| IpipFrame {
                len: first(&r[0], "frame.len"),
                eth_src: first(&r[1], "eth.src"),
                eth_dst: first(&r[2], "eth.dst"),
                outer_src: first(&r[3], "ip.src"),
                outer_dst: first(&r[4], "ip.dst"),
                outer_ttl: first(&r[5], "ip.ttl"),
                outer_checksum_status: first(&r[6], "ip.checksum.status"),
                inner_src: nth(&r[3], 1, "ip.src").expect("inner ip.src"),
                inner_dst: nth(&r[4], 1, "ip.dst").expect("inner ip.dst"),
                inner_proto: nth(&r[7], 1, "ip.proto").expect("inner ip.proto"),
                inner_checksum_status: nth(&r[6], 1, "ip.checksum.status")
                    .expect("inner ip.checksum.status"),
            })
            .collect()
    }
}

impl Drop for Pcap {
    fn drop(&mut self) {
        let Some(dir) = &self.dir else { return };
        if std::thread::panicking() {
            eprintln!("capture kept for a look: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

// ------------------------------------------------------------------ IPIP peers

/// A raw IPv4 socket on protocol 4 in a namespace: an IPIP peer that records
/// every packet it receives.
pub struct IpipListener {
    child: Child,
    packets: Arc<Mutex<Vec<Vec<u8>>>>,
    reader: Option<JoinHandle<()>>,
}

/// Opens `socket(AF_INET, SOCK_RAW, 4)` in namespace `ns` and returns once it
/// is open. Each packet is recorded from its outer IPv4 header on (a raw
/// IPv4 socket receives the header too). While it is open the kernel answers
/// no protocol-unreachable for protocol 4.
pub fn ipip_listener(ns: &str) -> IpipListener {
    let script = "import socket\n\
                  s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)\n\
                  print('ready', flush=True)\n\
                  while True:\n    print(s.recv(65535).hex(), flush=True)\n";
    let mut child = command(Some(ns), &[PYTHON, "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the IPIP listener");
    let err = read_all(child.stderr.take().unwrap());
    let (rx, h) = lines(child.stdout.take().unwrap());
    if wait_line(&rx, READY, |l| l == "ready").is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "IPIP listener in {ns} did not start:\n{}",
            String::from_utf8_lossy(&err.join().unwrap_or_default())
        );
    }
    let packets = Arc::new(Mutex::new(Vec::new()));
    let p = packets.clone();
    let reader = std::thread::spawn(move || {
        for l in rx {
            p.lock().unwrap().push(unhex(&l));
        }
        let _ = h.join();
    });
    IpipListener {
        child,
        packets,
        reader: Some(reader),
    }
}

impl IpipListener {
    /// The packets received so far.
    pub fn packets(&self) -> Vec<Vec<u8>> {
        self.packets.lock().unwrap().clone()
    }

    /// Waits until at least `n` packets have arrived (panics after
    /// `timeout`); returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        wait_for(&format!("{n} IPIP packets"), timeout, || {
            let v = self.packets();
            (v.len() >= n).then_some(v)
        })
    }

    /// Closes the socket; returns every packet received.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        self.close();
        self.packets()
    }

    fn close(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for IpipListener {
    fn drop(&mut self) {
        self.close();
    }
}

fn scapy(ns: &str, iface: &str, build: &str) -> Vec<u8> {
    let script = format!(
        "import logging, sys\n\
         logging.getLogger('scapy.runtime').setLevel(logging.ERROR)\n\
         from scapy.all import *\n\
         iface = sys.argv[1]\n\
         {build}\n\
         b = bytes(p)\n\
         s = conf.L2socket(iface=iface)\n\
         s.send(b)\n\
         s.close()\n\
         print(b.hex())\n"
    );
    let out = must(Some(ns), &[PYTHON, "-c", &script, iface]);
    unhex(out.lines().last().unwrap_or(""))
}

/// Sends the frame the scapy expression `packet` builds (e.g.
/// `Ether(dst='..')/IP(dst='..')/UDP(dport=4789)/VXLAN(vni=4096)/Ether()/IP()/ICMP()`)
/// out of `iface` in namespace `ns`, with `/usr/bin/python3` and scapy.
/// `iface` is in scope as a name. Returns the frame's bytes exactly as sent.
pub fn scapy_send(ns: &str, iface: &str, packet: &str) -> Vec<u8> {
    scapy(ns, iface, &format!("p = ({packet})"))
}

/// Sends one Ethernet frame (source: `iface`'s MAC) carrying IP-in-IP:
/// `outer_src > outer_dst` (protocol 4) around an ICMP echo request
/// `inner_src > inner_dst` (id 0x4242, seq 1) with `payload`. Returns the
/// IPv4 packet as sent, from the outer header on: what an
/// [`ipip_listener`] at `outer_dst` should record.
#[allow(clippy::too_many_arguments)]
pub fn send_ipip(
    ns: &str,
    iface: &str,
    dst_mac: &str,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner_src: Ipv4Addr,
    inner_dst: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let build = format!(
        "p = Ether(src=get_if_hwaddr(iface), dst='{dst_mac}')\
         /IP(src='{outer_src}', dst='{outer_dst}')\
         /IP(src='{inner_src}', dst='{inner_dst}')\
         /ICMP(type=8, id=0x4242, seq=1)\
         /Raw(bytes.fromhex('{}'))",
        hex(payload)
    );
    scapy(ns, iface, &build)[14..].to_vec()
}

// ------------------------------------------------------------------ traffic

const TCP_SERVER: &str = r#"
import hashlib, socket, sys
ip, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(1)
s.settimeout(t)
print('listening', flush=True)
c, peer = s.accept()
c.settimeout(t)
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
c.sendall(h.hexdigest().encode())
c.close()
print(peer[0], n, h.hexdigest(), flush=True)
"#;

const TCP_CLIENT: &str = r#"
import hashlib, os, socket, sys
ip, port, n, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
d = os.urandom(n)
s = socket.create_connection((ip, port), timeout=t)
s.sendall(d)
s.shutdown(socket.SHUT_WR)
r = b''
while True:
    x = s.recv(256)
    if not x:
        break
    r += x
print(hashlib.sha256(d).hexdigest(), r.decode(), flush=True)
"#;

/// Sends `bytes` random bytes over TCP from `client_ns` to a server at
/// `server_ip:port` in `server_ns`; both ends hash what they sent and got
/// (sha256), the server tells the client its hash, and all must agree.
pub fn tcp_transfer(
    client_ns: &str,
    server_ns: &str,
    server_ip: impl Display,
    port: u16,
    bytes: usize,
) -> Result<(), String> {
    tcp_transfer_seen(client_ns, server_ns, server_ip, port, bytes).map(|_| ())
}

/// [`tcp_transfer`], returning the client address the server saw (after any
/// SNAT on the way, e.g. natOutgoing).
pub fn tcp_transfer_seen(
    client_ns: &str,
    server_ns: &str,
    server_ip: impl Display,
    port: u16,
    bytes: usize,
) -> Result<Ipv4Addr, String> {
    let timeout = 30.0_f64;
    let server_ip = server_ip.to_string();
    let port_s = port.to_string();
    let t = timeout.to_string();
    let mut server = command(
        Some(server_ns),
        &[PYTHON, "-c", TCP_SERVER, &server_ip, &port_s, &t],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(|e| format!("spawning the server: {e}"))?;
    let err = read_all(server.stderr.take().unwrap());
    let (rx, h) = lines(server.stdout.take().unwrap());
    let server_err = |server: &mut Child, err: JoinHandle<Vec<u8>>| {
        let _ = terminate(server, Signal::SIGKILL, Duration::from_secs(1));
        String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned()
    };
    if wait_line(&rx, READY, |l| l == "listening").is_err() {
        return Err(format!(
            "server in {server_ns} did not listen on {server_ip}:{port}:\n{}",
            server_err(&mut server, err)
        ));
    }
    let n = bytes.to_string();
    let client = in_ns(
        client_ns,
        &[PYTHON, "-c", TCP_CLIENT, &server_ip, &port_s, &n, &t],
    );
    // the server ends by itself (EOF or its own timeouts)
    let line = wait_line(&rx, Duration::from_secs_f64(timeout + 5.0), |l| {
        !l.is_empty()
    });
    let server_stderr = server_err(&mut server, err);
    let _ = h.join();
    let client_out = String::from_utf8_lossy(&client.stdout).into_owned();
    if !client.status.success() {
        return Err(format!(
            "client in {client_ns} to {server_ip}:{port} failed ({}):\n{client_out}{}\n\
             server said:\n{server_stderr}",
            client.status,
            String::from_utf8_lossy(&client.stderr)
        ));
    }
    let line = match line {
        Ok(v) => v.last().cloned().unwrap_or_default(),
        Err(_) => return Err(format!("server printed no result:\n{server_stderr}")),
    };
    let s: Vec<&str> = line.split_whitespace().collect();
    let c: Vec<&str> = client_out.split_whitespace().collect();
    let (peer, got_n, got_hash) = match s[..] {
        [p, n, h] => (p, n, h),
        _ => return Err(format!("server result {line:?}\n{server_stderr}")),
    };
    let (sent_hash, told_hash) = match c[..] {
        [a, b] => (a, b),
        _ => return Err(format!("client result {client_out:?}")),
    };
    if got_n != n || got_hash != sent_hash || told_hash != sent_hash {
        return Err(format!(
            "transfer corrupted: sent {n} bytes sha256 {sent_hash}; server got {got_n} \
             bytes sha256 {got_hash}; client was told {told_hash}"
        ));
    }
    peer.parse()
        .map_err(|e| format!("server saw peer {peer:?}: {e}"))
}

/// DPDK 22.11's af_packet PMD joins each socket to a PACKET_FANOUT group
/// numbered `(pid ^ ifindex) & 0xffff`, and a group belongs to one device:
/// two switches on one host whose numbers meet cannot both open their
/// uplink. Sequential pids and ifindexes make that likely for the nodes of
/// one test, so a node's veth is made again until its number is free. (One
/// vswitchd per host, as in production, never meets this.)
static FANOUT_IDS: std::sync::Mutex<Vec<(u32, u32)>> = std::sync::Mutex::new(Vec::new());

pub fn uplink_for(ul: &Underlay, sw: &Switch, name: &str, subnet: u8) -> String {
    let mut used = FANOUT_IDS.lock().unwrap_or_else(|e| e.into_inner());
    // forget the numbers of switches that are gone
    used.retain(|(pid, _)| std::path::Path::new(&format!("/proc/{pid}")).exists());
    for _ in 0..16 {
        let host_if = host_if_name(name);
        ul.uplink(&host_if, subnet);
        let ifindex: u32 = std::fs::read_to_string(format!("/sys/class/net/{host_if}/ifindex"))
            .expect("uplink ifindex")
            .trim()
            .parse()
            .expect("ifindex");
        let id = (sw.pid() ^ ifindex) & 0xffff;
        if used.iter().all(|&(_, u)| u != id) {
            used.push((sw.pid(), id));
            return host_if;
        }
    }
    panic!("no free af_packet fanout group for {name}");
}

/// A vswitchd node on `subnet` of the underlay: `--node <name> --uplink
/// up`, `--underlay-gateway` with the subnet's gateway when the underlay
/// has one, then `extra`; its uplink attached ([`attach_uplink`]).
pub fn switch_node(ul: &Underlay, name: &str, subnet: u8, extra: &[&str]) -> Switch {
    switch_node_on(ul, name, subnet, extra, api::PortKind::AfPacket)
}

/// [`switch_node`] with an uplink of `kind` (af-packet or af-xdp).
pub fn switch_node_on(
    ul: &Underlay,
    name: &str,
    subnet: u8,
    extra: &[&str],
    kind: api::PortKind,
) -> Switch {
    let mut args = vec!["--node".to_owned(), name.to_owned()];
    args.extend(["--uplink".to_owned(), "up".to_owned()]);
    if let Some(gw) = ul.gateway(subnet) {
        args.extend(["--underlay-gateway".to_owned(), gw.to_string()]);
    }
    let sw = Vswitchd::new().args(args).args(extra).start();
    attach_uplink_on(ul, &sw, name, subnet, kind);
    sw
}

/// Gives switch `sw` its uplink: a veth into `subnet` of the underlay (its
/// fanout group free, see [`uplink_for`]) as port `up`, kind af-packet.
pub fn attach_uplink(ul: &Underlay, sw: &Switch, name: &str, subnet: u8) {
    attach_uplink_on(ul, sw, name, subnet, api::PortKind::AfPacket)
}

/// [`attach_uplink`] with a port of `kind`: af-packet, or af-xdp (an AF_XDP
/// socket on the veth's one queue, in the veth's native XDP mode; no
/// fanout group to keep free).
pub fn attach_uplink_on(ul: &Underlay, sw: &Switch, name: &str, subnet: u8, kind: api::PortKind) {
    let host_if = match kind {
        api::PortKind::AfPacket => uplink_for(ul, sw, name, subnet),
        api::PortKind::AfXdp => {
            let host_if = host_if_name(name);
            ul.uplink(&host_if, subnet);
            host_if
        }
        k => panic!("an uplink on a veth is af-packet or af-xdp, not {k}"),
    };
    match sw.call(&api::Request::PortAdd {
        port: api::PortSpec {
            name: "up".into(),
            kind,
            path: None,
            iface: Some(host_if),
            pci: None,
        },
    }) {
        api::Reply::Ports(p) if p.len() == 1 => {}
        r => panic!("uplink port of {name}: {r:?}"),
    }
}

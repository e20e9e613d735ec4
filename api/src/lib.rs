//! The control protocol spoken on vswitchd's unix socket.
//!
//! One JSON object per line in each direction: a [`Request`] from the client,
//! a [`Response`] from the switch. A connection may carry many requests. The
//! types have no DPDK in them so that `vsctl`, the CNI plugin and the node
//! agent can share them.

pub mod drops;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

mod mac;
pub mod policy;
pub use mac::{MacAddr, MacParseError};

/// Where vswitchd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// How a port is attached.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    /// vhost-user, the switch listens on `path` and the pod's virtio-user connects.
    VhostServer,
    /// vhost-user, the pod listens on `path`; the switch connects and reconnects.
    VhostClient,
    /// A kernel TAP interface named `iface`, owned by the switch.
    Tap,
    /// An existing kernel interface `iface` (e.g. the node's NIC or a veth
    /// to the underlay), driven through an AF_PACKET socket: the uplink.
    AfPacket,
    /// An existing kernel interface `iface` driven through an AF_XDP socket
    /// on its queue 0 (DPDK's `net_af_xdp`): an uplink or bridge port.
    AfXdp,
    /// A NIC on the PCI bus at `pci` (DOMAIN:BUS:DEV.FN), bound to a DPDK
    /// driver (vfio-pci, uio_pci_generic, igb_uio) and driven by its PMD.
    /// Only a device named on vswitchd's command line is probed.
    Pci,
}

impl PortKind {
    pub const ALL: [PortKind; 6] = [
        PortKind::VhostServer,
        PortKind::VhostClient,
        PortKind::Tap,
        PortKind::AfPacket,
        PortKind::AfXdp,
        PortKind::Pci,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PortKind::VhostServer => "vhost-server",
            PortKind::VhostClient => "vhost-client",
            PortKind::Tap => "tap",
            PortKind::AfPacket => "af-packet",
            PortKind::AfXdp => "af-xdp",
            PortKind::Pci => "pci",
        }
    }

    /// Whether the port drives an existing kernel interface (`iface`).
    pub fn takes_kernel_iface(self) -> bool {
        matches!(self, PortKind::AfPacket | PortKind::AfXdp)
    }
}

impl std::fmt::Display for PortKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PortKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PortKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = PortKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown port kind '{s}' (expected one of: {})",
                    all.join(", ")
                )
            })
    }
}

/// A port as configured.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    pub kind: PortKind,
    /// vhost-user socket path (vhost kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Kernel interface name (tap, af-packet, af-xdp); defaults to the port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// PCI address, DOMAIN:BUS:DEV.FN (pci ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
}

/// Whether `s` is a full PCI address as sysfs names it: `0000:3b:00.0`
/// (lower-case hex, four digits of domain, two of bus and device, one of
/// function).
pub fn is_pci_addr(s: &str) -> bool {
    let b = s.as_bytes();
    let hex = |r: std::ops::Range<usize>| {
        b[r].iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    b.len() == 12
        && hex(0..4)
        && b[4] == b':'
        && hex(5..7)
        && b[7] == b':'
        && hex(8..10)
        && b[10] == b'.'
        && (b'0'..=b'7').contains(&b[11])
        // device numbers run to 0x1f
        && u8::from_str_radix(&s[8..10], 16).is_ok_and(|d| d < 0x20)
}

/// Longest port name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest unix socket path (sun_path is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;
/// Longest Linux interface name (IFNAMSIZ less the NUL).
pub const MAX_IFNAME: usize = 15;

impl PortSpec {
    /// Checks what can be checked without the switch: the name, which fields
    /// the kind needs, and their shape.
    pub fn validate(&self) -> Result<(), String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN || !self.name.chars().all(ok_char)
        {
            return Err(format!(
                "bad port name '{}': 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 - _ .",
                self.name
            ));
        }
        match self.kind {
            PortKind::VhostServer | PortKind::VhostClient => {
                if self.iface.is_some() {
                    return Err(format!("port {}: iface is only for tap ports", self.name));
                }
                if self.pci.is_some() {
                    return Err(format!(
                        "port {}: a PCI address is only for pci ports",
                        self.name
                    ));
                }
                let Some(path) = &self.path else {
                    return Err(format!(
                        "port {}: a {} port needs a socket path",
                        self.name, self.kind
                    ));
                };
                if !path.starts_with('/') {
                    return Err(format!("bad socket path '{path}': it must be absolute"));
                }
                if path.len() > MAX_SOCKET_PATH {
                    return Err(format!(
                        "bad socket path '{path}': longer than {MAX_SOCKET_PATH} bytes"
                    ));
                }
                // DPDK's device arguments cut values at these characters
                if path.ends_with('/') || path.contains([',', '=', '[', ']']) {
                    return Err(format!(
                        "bad socket path '{path}': must name a file and hold none of , = [ ]"
                    ));
                }
            }
            PortKind::Pci => {
                if self.path.is_some() || self.iface.is_some() {
                    return Err(format!(
                        "port {}: a pci port takes a PCI address, no socket path or interface",
                        self.name
                    ));
                }
                let Some(addr) = &self.pci else {
                    return Err(format!(
                        "port {}: a pci port needs a PCI address (e.g. 0000:3b:00.0)",
                        self.name
                    ));
                };
                if !is_pci_addr(addr) {
                    return Err(format!(
                        "bad PCI address '{addr}': expected DOMAIN:BUS:DEV.FN in lower-case \
                         hex, e.g. 0000:3b:00.0 (lspci -D lists them)"
                    ));
                }
            }
            PortKind::Tap | PortKind::AfPacket | PortKind::AfXdp => {
                if self.path.is_some() {
                    return Err(format!(
                        "port {}: a {} port takes no socket path",
                        self.name, self.kind
                    ));
                }
                if self.pci.is_some() {
                    return Err(format!(
                        "port {}: a PCI address is only for pci ports",
                        self.name
                    ));
                }
                let iface = self.tap_iface();
                if iface.is_empty()
                    || iface.len() > MAX_IFNAME
                    || !iface.chars().all(|c| ok_char(c) && c != '.')
                {
                    return Err(format!(
                        "bad interface name '{iface}': 1 to {MAX_IFNAME} characters of A-Z a-z 0-9 - _"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The kernel interface of a tap, af-packet or af-xdp port.
    pub fn tap_iface(&self) -> &str {
        self.iface.as_deref().unwrap_or(&self.name)
    }

    /// A port from its kind and the one argument that names what it
    /// attaches to (a socket path, an interface, a PCI address), as
    /// `vswitchd --port NAME=KIND:ARG` spells it. Validated.
    pub fn from_kind_arg(
        name: &str,
        kind: PortKind,
        arg: Option<&str>,
    ) -> Result<PortSpec, String> {
        let arg = arg.filter(|a| !a.is_empty()).map(str::to_owned);
        let mut spec = PortSpec {
            name: name.to_owned(),
            kind,
            path: None,
            iface: None,
            pci: None,
        };
        match kind {
            PortKind::VhostServer | PortKind::VhostClient => spec.path = arg,
            PortKind::Tap | PortKind::AfPacket | PortKind::AfXdp => spec.iface = arg,
            PortKind::Pci => spec.pci = arg,
        }
        spec.validate()?;
        Ok(spec)
    }

    /// `NAME=KIND:ARG`, as `vswitchd --port` takes it (e.g.
    /// `up=af-xdp:eth1`, `nic=pci:0000:3b:00.0`).
    pub fn parse_flag(s: &str) -> Result<PortSpec, String> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("--port {s}: expected NAME=KIND:ARG"))?;
        let (kind, arg) = rest.split_once(':').unwrap_or((rest, ""));
        let kind: PortKind = kind.parse()?;
        PortSpec::from_kind_arg(name, kind, Some(arg))
    }
}

/// A pod attached to a port, routed at L3 the way Calico routes pods: the pod
/// has `/32` addresses and a default route via [`GATEWAY_IP`], which the
/// switch answers ARP for with [`GATEWAY_MAC`]. Frames from the pod must
/// carry its MAC and one of its addresses as source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// The port the pod is attached to.
    pub port: String,
    /// The pod's interface MAC.
    pub mac: MacAddr,
    /// The pod's IPv4 addresses.
    pub ips: Vec<std::net::Ipv4Addr>,
    /// Pod namespace and name, for people reading `vsctl` output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The pod's labels, which policy selectors match.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The pod's namespace, for namespaced policies and namespace selectors
    /// ("default" when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Its containers' named ports, for rules that name a port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<policy::NamedPort>,
}

/// A node of the cluster and its underlay addresses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// Underlay addresses with their prefix, e.g. "192.168.1.10/24".
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Pod blocks the node owns (its block affinities), e.g. "10.65.3.0/26":
    /// the switch routes them to the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<String>,
    /// The address and MAC of the node's VXLAN tunnel device, as Calico's
    /// `vxlan.calico` has them (Node `spec.ipv4VXLANTunnelAddr` and
    /// `spec.vxlanTunnelMACAddr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_tunnel_ip: Option<std::net::Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_tunnel_mac: Option<MacAddr>,
    /// The address of the node's IP-in-IP tunnel device (`tunl0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_tunnel_ip: Option<std::net::Ipv4Addr>,
}

impl Node {
    /// A node with just a name and underlay addresses.
    pub fn new(name: &str, addresses: &[&str]) -> Node {
        Node {
            name: name.to_owned(),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            blocks: Vec::new(),
            vxlan_tunnel_ip: None,
            vxlan_tunnel_mac: None,
            ipip_tunnel_ip: None,
        }
    }

    /// The first IPv4 underlay address and its prefix length.
    pub fn ipv4(&self) -> Option<(std::net::Ipv4Addr, u8)> {
        self.addresses.iter().find_map(|a| {
            let (ip, len) = a.split_once('/')?;
            Some((ip.parse().ok()?, len.parse().ok()?))
        })
    }

    /// Its blocks as (network, prefix length), host order.
    pub fn block_prefixes(&self) -> Result<Vec<(std::net::Ipv4Addr, u8)>, String> {
        self.blocks
            .iter()
            .map(|b| {
                let bad = || {
                    format!(
                        "Node {}: bad block {b} (expected e.g. 10.65.3.0/26)",
                        self.name
                    )
                };
                let (ip, len) = b.split_once('/').ok_or_else(bad)?;
                let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
                let len: u8 = len.parse().map_err(|_| bad())?;
                if len > 32 || (len < 32 && u32::from(ip) & (u32::MAX >> len) != 0) {
                    return Err(bad());
                }
                Ok((ip, len))
            })
            .collect()
    }
}

impl Node {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("a Node needs a name".into());
        }
        for a in &self.addresses {
            let (ip, len) = a.split_once('/').ok_or_else(|| {
                format!(
                    "Node {}: address {a} needs a prefix length (e.g. /24)",
                    self.name
                )
            })?;
            let bad = || format!("Node {}: bad address {a}", self.name);
            ip.parse::<std::net::IpAddr>().map_err(|_| bad())?;
            let len: u8 = len.parse().map_err(|_| bad())?;
            if len > 128 || (ip.contains('.') && len > 32) {
                return Err(bad());
            }
        }
        self.block_prefixes()?;
        if let Some(m) = self.vxlan_tunnel_mac {
            if m.is_multicast() || m == MacAddr::default() {
                return Err(format!("Node {}: bad VXLAN tunnel MAC {m}", self.name));
            }
        }
        Ok(())
    }
}

/// The next hop every pod routes through, as in Calico.
pub const GATEWAY_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 1);
/// The MAC the switch answers for the gateway with (Calico's host-side MAC).
pub const GATEWAY_MAC: MacAddr = MacAddr([0xee; 6]);

impl EndpointSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.mac.is_multicast() || self.mac == MacAddr::default() {
            return Err(format!("endpoint on {}: bad MAC {}", self.port, self.mac));
        }
        if self.ips.is_empty() {
            return Err(format!("endpoint on {}: no address", self.port));
        }
        for ip in &self.ips {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || *ip == GATEWAY_IP {
                return Err(format!(
                    "endpoint on {}: {ip} cannot be a pod address",
                    self.port
                ));
            }
        }
        Ok(())
    }
}

/// Calico's `projectcalico.org/v3` IPPool, the fields of its `spec` the
/// switch uses, named as Calico names them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IpPool {
    /// `metadata.name`.
    pub name: String,
    pub cidr: String,
    /// Default 26 (IPv4) or 122 (IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    /// Always | CrossSubnet | Never (default Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    #[serde(default)]
    pub nat_outgoing: bool,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
}

/// Calico's `ipipMode` / `vxlanMode` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EncapMode {
    Always,
    CrossSubnet,
    #[default]
    Never,
}

impl IpPool {
    /// A pool with Calico's defaults for everything but its name and CIDR.
    pub fn new(name: impl Into<String>, cidr: impl Into<String>) -> IpPool {
        IpPool {
            name: name.into(),
            cidr: cidr.into(),
            block_size: None,
            ipip_mode: None,
            vxlan_mode: None,
            nat_outgoing: false,
            disabled: false,
            node_selector: None,
        }
    }

    /// What can be checked of one pool alone (the switch checks the set).
    pub fn validate(&self) -> Result<(), String> {
        let on = |m: Option<EncapMode>| m.is_some_and(|m| m != EncapMode::Never);
        if on(self.ipip_mode) && on(self.vxlan_mode) {
            return Err(format!(
                "IPPool {}: ipipMode and vxlanMode cannot both be enabled",
                self.name
            ));
        }
        Ok(())
    }
}

/// A desired-state document: what `vsctl apply -f` sends. Applied whole or
/// not at all.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    #[serde(default)]
    pub pools: Vec<IpPool>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// The complete list of namespaces (labels for namespace selectors),
    /// when given; absent, they stay as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<policy::NamespaceInfo>>,
    /// The complete list of policies in force, when given; absent, they stay
    /// as they are (an empty list removes them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<policy::Policy>>,
    /// Every pod of the cluster as policy sees it (labels, namespace,
    /// addresses), when given; absent, they stay as they are. A pod attached
    /// here (its attachment names the same `namespace/name`) takes its labels
    /// from here; the others feed the address sets that selectors match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<Vec<policy::EndpointInfo>>,
    /// Every Service with its ready backends, when given; absent, they stay
    /// as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Service>>,
    /// The document is the whole cluster state (the node agent sends it so):
    /// pools and nodes it does not list are removed. Pools that still hold
    /// blocks stay, disabled, until their blocks are released.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
}

/// A Kubernetes Service as the switch load-balances it: its virtual
/// addresses, and per port the ready backends (EndpointSlices resolved,
/// named target ports included).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// `namespace/name`.
    pub name: String,
    /// `spec.clusterIPs` (IPv4 ones) and `spec.externalIPs`.
    #[serde(default)]
    pub cluster_ips: Vec<std::net::Ipv4Addr>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP`: its timeout in seconds
    /// (`sessionAffinityConfig.clientIP.timeoutSeconds`, default 10800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_timeout: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub protocol: policy::K8sProtocol,
    pub port: u16,
    /// NodePort (and LoadBalancer) Services: the port on every node address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
    /// Ready endpoints. Empty: the Service refuses connections (TCP RST,
    /// ICMP port unreachable) instead of dropping them.
    #[serde(default)]
    pub backends: Vec<Backend>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub ip: std::net::Ipv4Addr,
    /// The target port (a named target port resolved for this endpoint).
    pub port: u16,
    /// The node the endpoint runs on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Service {
    pub fn validate(&self) -> Result<(), String> {
        if self
            .name
            .split_once('/')
            .is_none_or(|(ns, n)| ns.is_empty() || n.is_empty())
        {
            return Err(format!(
                "Service {}: the name must be namespace/name",
                self.name
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &self.ports {
            if p.port == 0 {
                return Err(format!("Service {}: port 0", self.name));
            }
            if !seen.insert((p.protocol, p.port)) {
                return Err(format!(
                    "Service {}: port {}/{} is listed twice",
                    self.name,
                    p.port,
                    p.protocol.as_str()
                ));
            }
            if p.node_port == Some(0) {
                return Err(format!("Service {}: nodePort 0", self.name));
            }
            for b in &p.backends {
                if b.port == 0
                    || b.ip.is_unspecified()
                    || b.ip.is_multicast()
                    || b.ip.is_broadcast()
                {
                    return Err(format!(
                        "Service {}: bad backend {}:{}",
                        self.name, b.ip, b.port
                    ));
                }
            }
        }
        for ip in &self.cluster_ips {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                return Err(format!("Service {}: bad address {ip}", self.name));
            }
        }
        Ok(())
    }
}

/// One block of a pool as the IPAM sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub cidr: String,
    pub pool: String,
    /// The node that claimed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub allocated: u64,
    pub size: u64,
}

/// How a pod attaches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AttachKind {
    /// An ordinary pod: a TAP interface the switch owns, moved into the pod's netns.
    #[default]
    Tap,
    /// A DPDK pod: a vhost-user socket the pod's virtio-user connects to.
    Vhost,
}

/// Which end of a vhost-user pod's socket listens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VhostMode {
    /// The switch makes the socket and listens; the pod's virtio-user
    /// connects (`server=0`). A restart of vswitchd removes the socket under
    /// the pod, which then has to connect again by itself.
    #[default]
    Server,
    /// The pod's app makes the socket and listens (virtio-user `server=1`);
    /// the switch connects, and reconnects whenever either side restarts,
    /// like OVS-DPDK's `dpdkvhostuserclient`. The socket file is the pod's:
    /// the switch neither makes nor removes it.
    Client,
}

impl VhostMode {
    pub const ALL: [VhostMode; 2] = [VhostMode::Server, VhostMode::Client];

    pub fn as_str(self) -> &'static str {
        match self {
            VhostMode::Server => "server",
            VhostMode::Client => "client",
        }
    }

    /// The kind of port the switch makes for a pod in this mode.
    pub fn port_kind(self) -> PortKind {
        match self {
            VhostMode::Server => PortKind::VhostServer,
            VhostMode::Client => PortKind::VhostClient,
        }
    }
}

impl std::fmt::Display for VhostMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VhostMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        VhostMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown vhost mode '{s}' (expected server or client)"))
    }
}

/// Attach a pod's interface: the switch picks the port, the MAC and, unless
/// `ips` is given (delegated IPAM), the addresses. Idempotent per
/// (container_id, ifname): asking again returns the same attachment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PodAttach {
    pub container_id: String,
    pub ifname: String,
    /// The CNI network name: GC of one network leaves the others alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default)]
    pub kind: AttachKind,
    /// NAMESPACE/NAME, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Only these pools may serve the request (default: any enabled pool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    /// Addresses from a delegated IPAM plugin; the switch then assigns none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ips: Option<Vec<std::net::Ipv4Addr>>,
    /// Where the vhost-user socket goes (vhost kind): a directory the pod mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_dir: Option<String>,
    /// The pod's network namespace (`CNI_NETNS`), where its TAP interface
    /// (tap kind) will be named `ifname`: a restarted vswitchd opens it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Which end listens on the vhost-user socket (vhost kind); absent is
    /// [`VhostMode::Server`], what a switch without this field does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost_mode: Option<VhostMode>,
}

/// What the switch made for a pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub kind: AttachKind,
    /// The switch port.
    pub port: String,
    /// The host-side TAP interface to move into the pod's netns (tap kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// The vhost-user socket (vhost kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// Which end listens on `socket` (vhost kind). A switch that predates
    /// the field leaves it out, and its vhost pods are all servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost_mode: Option<VhostMode>,
    /// The MAC the pod's interface must have.
    pub mac: MacAddr,
    /// The pod's addresses, each a /32.
    pub ips: Vec<std::net::Ipv4Addr>,
    /// True when the switch assigned `ips` (false: delegated IPAM).
    pub ipam: bool,
    pub gateway: std::net::Ipv4Addr,
    pub mtu: u16,
    /// The pod's network namespace, as the attach named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl Attachment {
    /// Which end listens on a vhost attachment's socket ([`VhostMode::Server`]
    /// when a switch that predates the field made it); None for a TAP one.
    pub fn effective_vhost_mode(&self) -> Option<VhostMode> {
        (self.kind == AttachKind::Vhost).then(|| self.vhost_mode.unwrap_or_default())
    }
}

/// A request on the control socket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    PortAdd {
        port: PortSpec,
    },
    PortDel {
        name: String,
    },
    PortList {},
    Stats {},
    FdbShow {},
    /// Forget learned MACs: all of them, or those behind one port.
    FdbFlush {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    SetAging {
        seconds: u32,
    },
    Status {},
    /// Makes a port a routed pod endpoint (or updates it).
    EndpointSet {
        endpoint: EndpointSpec,
    },
    /// Turns a port back into a plain bridge port.
    EndpointDel {
        port: String,
    },
    EndpointList {},
    PodAttach {
        attach: PodAttach,
    },
    /// Undoes a PodAttach; succeeds when there is nothing to undo.
    PodDetach {
        container_id: String,
        ifname: String,
    },
    /// The attachment of (container_id, ifname), or a not-found error.
    PodGet {
        container_id: String,
        ifname: String,
    },
    /// Detaches every pod attachment of `network` (of any network when
    /// absent) whose (container_id, ifname) is not listed.
    PodGc {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
        live: Vec<(String, String)>,
    },
    /// Creates or updates what the document lists; all of it or nothing.
    Apply {
        doc: Desired,
    },
    PoolList {},
    BlockList {},
    PodList {},
    NodeList {},
    /// The namespaces and policies in force.
    PolicyList {},
    /// Flow-log records (Log rules) after sequence number `after`.
    FlowLog {
        #[serde(default)]
        after: u64,
    },
    /// The Services in force.
    ServiceList {},
    /// Starts copying the frames of ports (port names, or pods as
    /// "namespace/name") that match `filter` (see [`CaptureStart`]).
    CaptureStart {
        start: CaptureStart,
    },
    /// The frames a capture took since the last read; keeps it alive.
    CaptureRead {
        id: u64,
    },
    /// Ends a capture; succeeds when it has already ended.
    CaptureStop {
        id: u64,
    },
    /// Tracked connections, from every worker.
    ConntrackList {
        #[serde(default)]
        query: ConntrackQuery,
    },
    /// Forgets tracked connections: a pod's ("namespace/name" or its
    /// port's name), or all. Their next packets are judged by policy anew.
    ConntrackFlush {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod: Option<String>,
    },
    /// natOutgoing translations, from every worker; at most `limit` listed
    /// (0: the default, 1,000).
    NatList {
        #[serde(default)]
        limit: u32,
    },
    /// Arms the dataplane to record, for the next packets received on ports
    /// (or pods) that match a filter, every stage's decision (see
    /// [`TraceStart`]).
    TraceStart {
        start: TraceStart,
    },
    /// The packets a trace recorded since the last read; keeps it alive.
    TraceRead {
        id: u64,
    },
    /// Ends a trace; succeeds when it has already ended.
    TraceStop {
        id: u64,
    },
    /// Sends a made-up packet through the pipeline's stages without
    /// transmitting it, and says what each stage decided.
    TraceInject {
        inject: TraceInject,
    },
}

/// What a trace records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TraceStart {
    /// Port names, or pods as "namespace/name"; all ports when empty.
    #[serde(default)]
    pub ports: Vec<String>,
    /// A filter as captures take it (see [`CaptureStart`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Packets to trace (0: one).
    #[serde(default)]
    pub count: u32,
}

/// A trace that runs: its id and the ports it covers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TraceInfo {
    pub id: u64,
    pub ports: Vec<CapturePort>,
    /// Seconds a trace lives without a read before the switch ends it.
    pub idle_timeout: u32,
}

/// Packets traced since the last read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TraceChunk {
    pub packets: Vec<TracedPacket>,
    /// Every packet asked for was traced and read: the trace has ended.
    pub done: bool,
}

/// A made-up packet: from a pod (its addresses, to its gateway) or from
/// the outside world through the uplink (`from: "uplink"`, `src` given).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TraceInject {
    /// A pod as "namespace/name" or its port's name, or the uplink's
    /// port name.
    pub from: String,
    /// The source address; a pod's own when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<Ipv4Addr>,
    pub dst: Ipv4Addr,
    /// `tcp`, `udp` or `icmp` (an echo request).
    pub protocol: String,
    #[serde(default)]
    pub src_port: u16,
    #[serde(default)]
    pub dst_port: u16,
    /// TCP flags as letters (`S`, `SA`, `A`, `F`, `R`, `P`); `S` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
}

/// One packet and what each stage did with it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct TracedPacket {
    /// Unix time, nanoseconds, when it was received (0 for a made-up one).
    pub time_ns: u64,
    /// The port it came in on, and the pod behind it.
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The packet as received, in words.
    pub packet: String,
    pub steps: Vec<TraceStep>,
    /// The ports something left on because of it (the packet, an answer,
    /// an ARP request); names.
    pub sent: Vec<String>,
    /// Why it (or a copy of it) was dropped; drop reasons as counters name them.
    pub dropped: Vec<String>,
}

/// One stage's decision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    pub stage: String,
    pub detail: String,
}

/// Which connections to list.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ConntrackQuery {
    /// A pod ("namespace/name") or its port's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// One state: syn_sent, syn_recv, established, picked_up, fin_wait,
    /// time_wait, close, unreplied, replied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Listed at most (0: the default, 1,000); `total` counts them all.
    #[serde(default)]
    pub limit: u32,
}

/// Connections as the workers track them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ConntrackList {
    pub connections: Vec<ConnectionInfo>,
    /// Connections that matched, listed or not.
    pub total: u64,
}

/// One tracked connection, from its originator's side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The worker that tracks it.
    pub lcore: u32,
    /// Its conntrack zone: a pod's own, 0 for traffic of no pod.
    pub zone: u16,
    /// The pod of that zone ("namespace/name", else its port's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub protocol: String,
    pub src: std::net::Ipv4Addr,
    pub sport: u16,
    pub dst: std::net::Ipv4Addr,
    pub dport: u16,
    pub state: String,
    pub idle_seconds: u32,
    pub expires_seconds: u32,
}

/// natOutgoing translations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct NatList {
    pub bindings: Vec<NatBinding>,
    pub total: u64,
}

/// One natOutgoing translation: the pod's flow, the node's address and
/// port it leaves with, and the remote end.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NatBinding {
    pub lcore: u32,
    pub protocol: String,
    pub pod_ip: std::net::Ipv4Addr,
    pub pod_port: u16,
    pub node_ip: std::net::Ipv4Addr,
    pub nat_port: u16,
    pub remote_ip: std::net::Ipv4Addr,
    pub remote_port: u16,
    pub state: String,
    pub age_seconds: u32,
    pub expires_seconds: u32,
}

/// What a capture takes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct CaptureStart {
    /// Port names, or pods as "namespace/name"; all ports when empty.
    #[serde(default)]
    pub ports: Vec<String>,
    /// A filter in a small subset of tcpdump's language: `tcp`, `udp`,
    /// `icmp`, `arp`, `host ADDR`, `port N`, `vxlan`, joined by `and`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Bytes kept of each frame (the rest is cut); 0 for whole frames.
    #[serde(default)]
    pub snaplen: u32,
}

/// A capture that runs: its id and the ports it covers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CaptureInfo {
    pub id: u64,
    pub ports: Vec<CapturePort>,
    /// Seconds a capture lives without a read before the switch ends it.
    pub idle_timeout: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CapturePort {
    pub port_id: u16,
    pub name: String,
}

/// Frames taken since the last read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct CaptureChunk {
    pub frames: Vec<CapturedFrame>,
    /// Frames that matched but were not kept (the capture's queue was
    /// full), since the capture started.
    pub dropped: u64,
}

/// Which way a captured frame went through its port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureDir {
    /// Received by the switch from the port.
    In,
    /// Sent by the switch on the port.
    Out,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Unix time, nanoseconds.
    pub time_ns: u64,
    pub port_id: u16,
    pub dir: CaptureDir,
    /// The frame's length on the wire; `data` may be shorter (snaplen).
    pub len: u32,
    /// The frame's first bytes, base64.
    pub data: String,
}

/// The reply to one request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Response {
    Ok {
        #[serde(default)]
        result: Reply,
    },
    Error {
        error: String,
        /// What kind of failure, for programs (the CNI plugin maps it to CNI codes).
        #[serde(default)]
        code: ErrorCode,
    },
}

/// Kinds of refusal.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The request or the configuration it names is not valid.
    #[default]
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// No address left in the pools that may serve the request.
    Exhausted,
    /// A transient failure: try again later.
    Busy,
    /// The switch failed (DPDK, I/O).
    Internal,
}

impl Response {
    pub fn error(code: ErrorCode, error: impl Into<String>) -> Response {
        Response::Error {
            error: error.into(),
            code,
        }
    }
}

/// What a successful request returns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(tag = "kind", content = "data", rename_all = "kebab-case")]
pub enum Reply {
    #[default]
    Done,
    Ports(Vec<PortInfo>),
    Stats(Stats),
    Fdb(Vec<FdbEntry>),
    Flushed(u64),
    Endpoints(Vec<EndpointSpec>),
    Attachment(Attachment),
    /// Attachments removed by a GC.
    Released(Vec<(String, String)>),
    Pools(Vec<IpPool>),
    Blocks(Vec<BlockInfo>),
    Attachments(Vec<Attachment>),
    Nodes(Vec<Node>),
    Status(Status),
    FlowLog(Vec<FlowLogEntry>),
    Policies(PolicySet),
    Services(Vec<Service>),
    Capture(CaptureInfo),
    Captured(CaptureChunk),
    Conntrack(ConntrackList),
    Nat(NatList),
    Trace(TraceInfo),
    Traced(TraceChunk),
    Injected(TracedPacket),
}

/// The policy objects in force, as applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PolicySet {
    pub namespaces: Vec<policy::NamespaceInfo>,
    pub policies: Vec<policy::Policy>,
    /// The cluster's pods as policy sees them (from the node agent).
    #[serde(default)]
    pub pods: Vec<policy::EndpointInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub kind: PortKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// The PCI address of a pci port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// The switch's id of the port (not a DPDK ethdev id).
    pub port_id: u16,
    /// The worker lcore that polls it.
    pub lcore: u32,
    pub link_up: bool,
    pub mac: MacAddr,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct PortStats {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets meant for this port that could not be sent.
    pub tx_drops: u64,
    /// Packets received on this port that the switch dropped.
    pub rx_drops: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct FdbStats {
    pub entries: u64,
    pub capacity: u64,
    pub learned: u64,
    pub moved: u64,
    pub aged: u64,
    pub evicted: u64,
    pub aging_seconds: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct WorkerStats {
    pub lcore: u32,
    pub ports: Vec<String>,
    pub packets: u64,
    /// TSC cycles spent in polls that returned packets.
    pub busy_cycles: u64,
    pub idle_polls: u64,
    pub sleeps: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    /// Dropped packets by reason (snake_case names, every reason listed).
    pub drops: BTreeMap<String, u64>,
    pub fdb: FdbStats,
    pub workers: Vec<WorkerStats>,
    /// TSC frequency, to turn cycles into time.
    pub tsc_hz: u64,
    #[serde(default)]
    pub conntrack: ConntrackStats,
    /// The policy rules in force and the connections each decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_rules: Vec<RuleHits>,
}

/// One policy rule and the connections it allowed or denied (counted when
/// policy judges a connection's first packet; the rest of a connection
/// follows conntrack).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct RuleHits {
    pub tier: String,
    /// As flow logs name it: `namespace/kind.name`, or the global name.
    pub policy: String,
    /// ingress or egress.
    pub direction: String,
    /// Its index among the policy's rules of that direction (from 0).
    pub rule: u32,
    /// allow, deny, log or pass.
    pub action: String,
    pub hits: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ConntrackStats {
    /// Connections tracked at most, all workers together.
    pub capacity: u64,
    pub created: u64,
    /// Of those created, TCP connections picked up from a segment in
    /// mid-stream (their beginning unseen: the switch restarted, or the
    /// entry expired), as Linux's `nf_conntrack_tcp_loose` does.
    #[serde(default)]
    pub picked_up: u64,
    /// Closed, closing or unanswered connections dropped early to make room.
    pub evicted: u64,
    /// Flow-log records refused by the rate limit.
    pub log_suppressed: u64,
    /// New connections refused: no room but established connections', or
    /// their pod at its share of the table (dropped as `ct_full`).
    #[serde(default)]
    pub refused: u64,
    /// TCP RSTs and ICMP errors of the switch's own not sent: over the rate.
    #[serde(default)]
    pub answers_suppressed: u64,
    /// ARP requests for unresolved addresses not sent: over the rate.
    #[serde(default)]
    pub arp_suppressed: u64,
}

/// One flow-log line: a packet that matched a rule with action Log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FlowLogEntry {
    /// Increases by one per record; ask for those after the last one seen.
    pub seq: u64,
    /// Unix time, seconds.
    pub time: u64,
    /// The pod whose policy logged it ("ns/name", else the port name).
    pub endpoint: String,
    /// "ingress" or "egress" (of that pod).
    pub direction: String,
    pub protocol: String,
    pub src: std::net::Ipv4Addr,
    pub dst: std::net::Ipv4Addr,
    /// Ports (TCP, UDP, SCTP); for ICMP, 0 and type << 8 | code.
    pub sport: u16,
    pub dport: u16,
    /// The Log rule, e.g. "default.log-all ingress rule 0".
    pub rule: String,
    /// The verdict of that direction, and what decided it.
    pub verdict: String,
    pub decided_by: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub port: String,
    /// Seconds since a frame from this MAC was last seen.
    pub age: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub version: String,
    pub dpdk_version: String,
    pub hugepages: bool,
    pub workers: Vec<u32>,
    pub generation: u64,
    /// Routed pods attached now.
    #[serde(default)]
    pub pods: u32,
    /// Kernel pods the switch can hold (vhost-user pods take more
    /// descriptors each), and the limit that sets it.
    #[serde(default)]
    pub pods_max: u32,
    #[serde(default)]
    pub pods_limit: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach vswitchd at {path}: {source} (is vswitchd running?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad reply from vswitchd: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("vswitchd closed the connection")]
    Closed,
    #[error("vswitchd: {message}")]
    Refused { code: ErrorCode, message: String },
}

/// A blocking client for the control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let p = path.as_ref();
        let stream = UnixStream::connect(p).map_err(|source| ClientError::Connect {
            path: p.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one raw line and returns the raw reply line.
    pub fn call_raw(&mut self, line: &str) -> Result<String, ClientError> {
        self.writer.write_all(line.trim_end().as_bytes())?;
        self.writer.write_all(b"\n")?;
        let mut reply = String::new();
        if self.reader.read_line(&mut reply)? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(reply)
    }

    /// Sends a request; an error reply becomes [`ClientError::Refused`].
    pub fn call(&mut self, req: &Request) -> Result<Reply, ClientError> {
        let line = serde_json::to_string(req)?;
        let reply = self.call_raw(&line)?;
        match serde_json::from_str(&reply)? {
            Response::Ok { result } => Ok(result),
            Response::Error { error, code } => Err(ClientError::Refused {
                code,
                message: error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: Request = serde_json::from_str(
            r#"{"op":"port-add","port":{"name":"p0","kind":"vhost-server","path":"/tmp/p0.sock"}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::PortAdd {
                port: PortSpec {
                    name: "p0".into(),
                    kind: PortKind::VhostServer,
                    path: Some("/tmp/p0.sock".into()),
                    iface: None,
                    pci: None,
                }
            }
        );
        let back = serde_json::to_string(&Request::FdbFlush { port: None }).unwrap();
        assert_eq!(back, r#"{"op":"fdb-flush"}"#);
    }

    #[test]
    fn unknown_kind_is_refused_with_its_name() {
        let e = serde_json::from_str::<Request>(
            r#"{"op":"port-add","port":{"name":"p0","kind":"ethernet"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("ethernet"), "{e}");
        let e = "bogus".parse::<PortKind>().unwrap_err();
        assert!(e.contains("bogus"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Request>(r#"{"op":"stats","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
    }

    fn spec(kind: PortKind, path: Option<&str>, iface: Option<&str>) -> PortSpec {
        PortSpec {
            name: "p0".into(),
            kind,
            path: path.map(Into::into),
            iface: iface.map(Into::into),
            pci: None,
        }
    }

    #[test]
    fn port_flags_of_every_kind() {
        let x = PortSpec::parse_flag("up=af-xdp:eth1").unwrap();
        assert_eq!(
            (x.kind, x.iface.as_deref()),
            (PortKind::AfXdp, Some("eth1"))
        );
        let p = PortSpec::parse_flag("nic=pci:0000:3b:00.0").unwrap();
        assert_eq!(p.kind, PortKind::Pci);
        assert_eq!(p.pci.as_deref(), Some("0000:3b:00.0"));
        assert_eq!((p.path, p.iface), (None, None));
        let v = PortSpec::parse_flag("v=vhost-client:/tmp/v.sock").unwrap();
        assert_eq!(v.path.as_deref(), Some("/tmp/v.sock"));
        let e = PortSpec::parse_flag("nic=pci").unwrap_err();
        assert!(e.contains("needs a PCI address"), "{e}");
        for bad in [
            "3b:00.0",
            "0000:3B:00.0",
            "0000:3b:00.8",
            "0000:3b:20.0",
            "0000:3b:00",
        ] {
            let e = PortSpec::parse_flag(&format!("nic=pci:{bad}")).unwrap_err();
            assert!(e.contains("bad PCI address"), "{bad}: {e}");
        }
        let e = PortSpec::parse_flag("x=ethernet:eth0").unwrap_err();
        assert!(e.contains("af-xdp") && e.contains("pci"), "{e}");
        let mut s = spec(PortKind::AfXdp, None, Some("eth1"));
        s.pci = Some("0000:3b:00.0".into());
        assert!(s.validate().unwrap_err().contains("only for pci"));
        for k in PortKind::ALL {
            assert_eq!(k.as_str().parse::<PortKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{k}\""));
        }
    }

    #[test]
    fn port_spec_validation() {
        assert!(spec(PortKind::VhostServer, Some("/tmp/a.sock"), None)
            .validate()
            .is_ok());
        assert!(spec(PortKind::Tap, None, Some("tap0")).validate().is_ok());
        assert!(spec(PortKind::Tap, None, None).validate().is_ok());
        for (s, want) in [
            (
                spec(PortKind::VhostServer, None, None),
                "needs a socket path",
            ),
            (
                spec(PortKind::VhostClient, Some("rel/a.sock"), None),
                "absolute",
            ),
            (
                spec(
                    PortKind::VhostServer,
                    Some(&format!("/{}", "x".repeat(200))),
                    None,
                ),
                "longer",
            ),
            (
                spec(PortKind::VhostServer, Some("/tmp/"), None),
                "name a file",
            ),
            (
                spec(PortKind::VhostServer, Some("/tmp/a,b"), None),
                "none of",
            ),
            (
                spec(PortKind::VhostServer, Some("/tmp/a=b"), None),
                "none of",
            ),
            (
                spec(PortKind::VhostServer, Some("/tmp/a"), Some("x")),
                "only for tap",
            ),
            (spec(PortKind::Tap, Some("/tmp/a"), None), "no socket path"),
            (
                spec(PortKind::Tap, None, Some("much-too-long-name")),
                "bad interface",
            ),
        ] {
            let e = s.validate().unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let mut bad = spec(PortKind::Tap, None, None);
        bad.name = "a b".into();
        assert!(bad.validate().unwrap_err().contains("bad port name"));
    }

    #[test]
    fn vhost_mode_is_optional_on_the_wire() {
        // what a plugin that predates the field sends
        let old = r#"{"op":"pod-attach","attach":{"container_id":"c","ifname":"eth0","kind":"vhost","socket_dir":"/run/vswitch/pods/c"}}"#;
        let Request::PodAttach { attach } = serde_json::from_str(old).unwrap() else {
            panic!("not a pod-attach");
        };
        assert_eq!(attach.vhost_mode, None);
        // and what such a plugin gets back from a newer switch for it
        let back = serde_json::to_string(&Request::PodAttach { attach }).unwrap();
        assert_eq!(back, old, "an unset mode is left out");
        let new: Request = serde_json::from_str(
            &old.replace(r#""socket_dir""#, r#""vhost_mode":"client","socket_dir""#),
        )
        .unwrap();
        let Request::PodAttach { attach } = new else {
            panic!("not a pod-attach");
        };
        assert_eq!(attach.vhost_mode, Some(VhostMode::Client));
        assert!(serde_json::from_str::<Request>(
            &old.replace(r#""socket_dir""#, r#""vhost_mode":"both","socket_dir""#,)
        )
        .is_err());

        let a: Attachment = serde_json::from_str(
            r#"{"container_id":"c","ifname":"eth0","kind":"vhost","port":"pod-1",
                "socket":"/s/eth0.sock","mac":"02:00:00:00:00:01","ips":["10.0.0.1"],
                "ipam":true,"gateway":"169.254.1.1","mtu":1500}"#,
        )
        .unwrap();
        assert_eq!(a.vhost_mode, None);
        assert_eq!(a.effective_vhost_mode(), Some(VhostMode::Server));
        let tap = Attachment {
            kind: AttachKind::Tap,
            ..a.clone()
        };
        assert_eq!(tap.effective_vhost_mode(), None);
        let client = Attachment {
            vhost_mode: Some(VhostMode::Client),
            ..a
        };
        let json = serde_json::to_value(&client).unwrap();
        assert_eq!(json["vhost_mode"], "client");
        for m in VhostMode::ALL {
            assert_eq!(m.as_str().parse::<VhostMode>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert_eq!(VhostMode::Client.port_kind(), PortKind::VhostClient);
        assert_eq!(VhostMode::default().port_kind(), PortKind::VhostServer);
        assert!("vhost-client".parse::<VhostMode>().is_err());
    }

    #[test]
    fn response_round_trip() {
        let r = Response::Ok {
            result: Reply::Flushed(3),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"status":"ok","result":{"kind":"flushed","data":3}}"#);
        assert_eq!(serde_json::from_str::<Response>(&s).unwrap(), r);
        let e: Response = serde_json::from_str(r#"{"status":"error","error":"no"}"#).unwrap();
        assert_eq!(e, Response::error(ErrorCode::Invalid, "no"));
        let e: Response =
            serde_json::from_str(r#"{"status":"error","error":"gone","code":"not-found"}"#)
                .unwrap();
        assert_eq!(e, Response::error(ErrorCode::NotFound, "gone"));
    }
}

//! How vswitchd is told to build its switch: sizes, state, the node, the
//! uplink. Read once at start.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// How the switch is built at start.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    pub fdb_max: usize,
    pub aging_secs: u32,
    pub mbufs: u32,
    /// Descriptors per queue.
    pub ring_size: u16,
    /// Where durable state (IPAM claims) lives.
    pub state_dir: PathBuf,
    /// The only directory pods' vhost-user sockets may be made in.
    pub vhost_socket_root: PathBuf,
    /// This node's name, as block affinities record it.
    pub node: String,
    /// Connections tracked at most, all workers together.
    pub ct_max: usize,
    /// Percent of a worker's connection table one pod may hold.
    pub ct_zone_share: u32,
    /// Where flow-log records are appended as JSON lines, if anywhere.
    pub flow_log_file: Option<PathBuf>,
    /// The uplink, the host port and the underlay gateway.
    pub uplink: UplinkConfig,
    /// Where IPAM claims are kept.
    pub ipam_store: IpamStoreKind,
    /// Who tells the switch the labels of the pods attached through CNI.
    pub policy_source: PolicySource,
    /// The PCI devices the EAL was allowed to probe (the pci ports named on
    /// vswitchd's command line): the only ones a pci port may take.
    pub pci_allowed: Vec<String>,
}

/// Who knows a pod's labels and the policy that selects it, and so when a
/// pod attached through CNI may pass traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PolicySource {
    /// `vsctl apply` on this node (a standalone node, the demo): an endpoint
    /// is programmed when it is attached or set, with what was applied.
    #[default]
    Local,
    /// The node agent: a pod attached through CNI passes nothing but ARP
    /// until the agent's document names it (by namespace/name), unless its
    /// endpoint was given a namespace or labels of its own.
    Agent,
}

/// Where the IPAM keeps its claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpamStoreKind {
    /// One file under the state directory: a standalone node.
    #[default]
    File,
    /// IPAMBlock and BlockAffinity objects in the cluster's API server (`$KUBECONFIG`, else
    /// the in-cluster service account), pools from its IPPool objects.
    Kube,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            fdb_max: 1 << 20,
            aging_secs: 300,
            mbufs: 32768,
            ring_size: 1024,
            state_dir: PathBuf::from("/var/lib/vswitch"),
            vhost_socket_root: PathBuf::from("/var/run/vswitch"),
            node: "localhost".into(),
            ct_max: crate::pipeline::DEFAULT_CT_CAPACITY,
            ct_zone_share: crate::tables::conntrack::DEFAULT_ZONE_SHARE,
            flow_log_file: None,
            uplink: Default::default(),
            ipam_store: IpamStoreKind::File,
            policy_source: PolicySource::Local,
            pci_allowed: Vec::new(),
        }
    }
}

/// How the switch is attached to the node's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkConfig {
    /// The port (an af-packet, af-xdp, pci or other port) that is the uplink.
    pub port: Option<String>,
    /// A tap port whose kernel side is the host's own stack.
    pub host_port: Option<String>,
    /// The underlay's default gateway, for nodes and hosts outside the
    /// node's subnet.
    pub gateway: Option<Ipv4Addr>,
    /// The outer TTL of tunnel packets (Linux's `ttl auto` gives 64).
    pub tunnel_ttl: u8,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            port: None,
            host_port: None,
            gateway: None,
            tunnel_ttl: 64,
        }
    }
}

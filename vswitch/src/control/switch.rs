//! The control side of the switch: ports, snapshots, queries.
//!
//! Every change builds a complete new [`Snapshot`] and swaps it in. Removing a
//! port waits until every worker runs a snapshot without it before the device
//! is torn down, so no worker ever polls or sends to a port that is gone.

use crate::control::capacity::Capacity;
use crate::control::config::{IpamStoreKind, PolicySource, SwitchConfig, UplinkConfig};
use crate::counters::{DropReason, WorkerCounters};
use crate::dpdk::{self, mbuf::Mempool, ring::MbufRing};
use crate::pipeline::MAX_PORTS;
use crate::snapshot::{PortEntry, PortIo, Shared, Snapshot};
use crate::tables::endpoints::{Endpoint, Route};
use crate::tables::fdb::Fdb;
use ::ipam::{FileStore, Ipam, IpamError, Store};
use api::ErrorCode;
use api::{
    EndpointSpec, FdbEntry, FdbStats, MacAddr, PortInfo, PortKind, PortSpec, PortStats, Stats,
    WorkerStats,
};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Underlay neighbours the switch keeps (nodes and gateways of one L2
/// segment).
const NEIGHBORS: usize = 4096;

/// Flow-log records a worker may have waiting for the control thread.
const FLOW_LOG_QUEUE: usize = 1024;

/// Whether a port's peer is there. The switch owns a TAP, and its kernel
/// side lives as long as the port does, in whichever namespace it was moved to.
fn link_up(io: &PortIo) -> bool {
    match io {
        PortIo::Ethdev(id) => dpdk::ethdev::link_up(*id),
        PortIo::Tap(_) => true,
        PortIo::Vhost { port, .. } => port.link_up(),
    }
}

/// The MAC a port shows: its ethdev's, or for an interface the switch drives
/// itself (which has no address of its own on the wire) one made from its id.
fn port_mac(io: &PortIo, id: u16) -> [u8; 6] {
    match io {
        PortIo::Ethdev(e) => dpdk::ethdev::mac_addr(*e),
        PortIo::Tap(_) | PortIo::Vhost { .. } => {
            let [hi, lo] = id.to_be_bytes();
            [0x02, b'v', b's', 0, hi, lo]
        }
    }
}

/// Counts at the moment a port was added: a port id may be reused, and a
/// new port starts from zero.
#[derive(Default, Clone, Copy)]
struct Baseline {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    tx_drops: u64,
    rx_drops: u64,
}

/// Where a port comes from, which decides what outlives vswitchd.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Origin {
    /// Named on the command line: made again by the next start's flags.
    Flag,
    /// Added through the control socket: recorded, and made again at start.
    Hand,
    /// A pod's interface: recorded with its attachment; its TAP persists.
    Pod,
}

struct Port {
    spec: PortSpec,
    origin: Origin,
    id: u16,
    /// The DPDK virtual device behind the port, if it is an ethdev.
    devname: Option<String>,
    entry: Arc<PortEntry>,
    base: Baseline,
}

pub struct Switch {
    shared: Arc<Shared>,
    pool: Arc<Mempool>,
    lcores: Vec<u32>,
    ring_size: u16,
    ports: BTreeMap<String, Port>,
    /// Routed pods by port name.
    pub(crate) endpoints: BTreeMap<String, EndpointSpec>,
    seq: u64,
    hugepages: bool,
    /// Entries the control thread's sweeps removed (workers count their own).
    aged_by_sweep: AtomicU64,
    /// The second of the last FDB sweep.
    last_sweep: AtomicU32,
    pub(crate) ipam: Arc<Ipam<Box<dyn Store>>>,
    /// The store reads pools from where it keeps blocks (the cluster's IPPools): applied pools
    /// are not written to it.
    pub(crate) pools_from_store: bool,
    pub(crate) node: String,
    /// Pool fields the IPAM does not keep (encapsulation, NAT, selector).
    pub(crate) pool_meta: BTreeMap<String, api::IpPool>,
    /// Pod attachments by (container id, interface name).
    pub(crate) attachments: BTreeMap<(String, String), api::Attachment>,
    /// Nodes of the cluster, as applied.
    pub(crate) nodes: BTreeMap<String, api::Node>,
    /// Services by `namespace/name`, as applied.
    pub(crate) services: BTreeMap<String, api::Service>,
    /// How the switch is attached to the node's network.
    pub(crate) uplink: UplinkConfig,
    /// Conntrack zone of each routed port, with the MAC and addresses it was
    /// given for: another pod on the port gets another zone.
    zones: BTreeMap<String, (u16, api::MacAddr, Vec<std::net::Ipv4Addr>)>,
    next_zone: u16,
    /// Namespaces, policy objects, their compiled form, the flow log.
    pub(crate) policy: crate::control::policy_state::PolicyState,
    /// Who programs the endpoints attached through CNI.
    pub(crate) policy_source: PolicySource,
    /// The snapshot before the newest one.
    retired: std::sync::Mutex<Option<Arc<Snapshot>>>,
    /// The vhost-user sockets this switch made (only those are removed).
    made_sockets: crate::control::sockets::MadeSockets,
    /// Where pods' vhost-user sockets may be made.
    pub(crate) vhost_socket_root: std::path::PathBuf,
    /// The PCI devices the EAL probed at start (pci ports may take only these).
    pci_allowed: Vec<String>,
    /// Where pods, hand-made ports and the applied cluster state are kept
    /// for the next start.
    pub(crate) saved: crate::control::persist::Saved,
    /// Pods taken up again whose kernels still have to hear of the gateway.
    pub(crate) announce: crate::control::announce::Announcements,
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
    /// The switch is full: no more pods of this kind fit.
    #[error("{0}")]
    Full(String),
    #[error("{0}")]
    Dpdk(#[from] dpdk::error::Error),
    #[error("{0}")]
    Ipam(#[from] IpamError),
}

impl SwitchError {
    /// The kind of failure, for programs.
    pub fn code(&self) -> ErrorCode {
        match self {
            SwitchError::Invalid(_) => ErrorCode::Invalid,
            SwitchError::NotFound(_) => ErrorCode::NotFound,
            SwitchError::Internal(_) => ErrorCode::Internal,
            SwitchError::Full(_) => ErrorCode::Exhausted,
            SwitchError::Dpdk(_) => ErrorCode::Internal,
            SwitchError::Ipam(e) => match e {
                IpamError::PoolExhausted { .. } | IpamError::NoEligiblePool { .. } => {
                    ErrorCode::Exhausted
                }
                IpamError::Contention { .. } => ErrorCode::Busy,
                IpamError::Store(_) => ErrorCode::Internal,
                _ => ErrorCode::Invalid,
            },
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, SwitchError>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(SwitchError::Invalid(msg.into()))
}

pub(crate) fn not_found<T>(msg: impl Into<String>) -> Result<T> {
    Err(SwitchError::NotFound(msg.into()))
}

impl Switch {
    /// Builds the shared state for workers on `lcores` (the EAL must be up).
    pub fn new(cfg: &SwitchConfig, lcores: Vec<u32>, hugepages: bool) -> Result<Switch> {
        if lcores.is_empty() {
            return invalid(
                "no worker lcore: give --lcores at least two entries (main and a worker)",
            );
        }
        let n = lcores.len();
        let store: Box<dyn Store> = match cfg.ipam_store {
            IpamStoreKind::File => Box::new(
                FileStore::open(cfg.state_dir.join("ipam.json"))
                    .map_err(|e| SwitchError::Ipam(e.into()))?,
            ),
            IpamStoreKind::Kube => {
                let store =
                    ipam_kube::KubeStore::connect().map_err(|e| SwitchError::Ipam(e.into()))?;
                // A crash between a claim and its record leaves the record missing. An API
                // server that is down must not keep the switch from forwarding for the pods
                // it has: only new pods need the IPAM, and their ADDs report the error.
                match store.repair_affinities(&cfg.node) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("repaired {n} BlockAffinity record(s) of {}", cfg.node),
                    Err(e) => tracing::warn!("IPAM: {e}"),
                }
                Box::new(store)
            }
        };
        let ipam = Ipam::new(store);
        if cfg.ipam_store == IpamStoreKind::File {
            // fail at start, not at the first pod, if the state cannot be read
            ipam.snapshot()?;
        }
        let pool = Arc::new(Mempool::pktmbuf("vsw_mbufs", cfg.mbufs, 256)?);
        let log_file = match &cfg.flow_log_file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        SwitchError::Invalid(format!("flow log file {}: {e}", path.display()))
                    })?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::empty(n)),
            generation: AtomicU64::new(0),
            seen: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            fdb: Fdb::new(cfg.fdb_max, cfg.aging_secs),
            counters: (0..n).map(|_| WorkerCounters::new(MAX_PORTS)).collect(),
            tsc_hz: dpdk::eal::tsc_hz(),
            tsc_start: dpdk::eal::rdtsc(),
            flow_log: (0..lcores.len())
                .map(|_| crossbeam_queue::ArrayQueue::new(FLOW_LOG_QUEUE))
                .collect(),
            ct_capacity: (cfg.ct_max / lcores.len().max(1)).max(1),
            ct_zone_share: cfg.ct_zone_share,
            neigh: crate::tables::neigh::Neighbors::new(NEIGHBORS),
            pool: pool.clone(),
            captures: crate::capture::Captures::new(MAX_PORTS),
            tracer: Default::default(),
            inquiries: (0..n).map(|_| Default::default()).collect(),
        });
        Ok(Switch {
            shared,
            pool,
            lcores,
            ring_size: cfg.ring_size,
            ports: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            seq: 0,
            hugepages,
            aged_by_sweep: AtomicU64::new(0),
            last_sweep: AtomicU32::new(u32::MAX),
            ipam: Arc::new(ipam),
            pools_from_store: cfg.ipam_store == IpamStoreKind::Kube,
            node: cfg.node.clone(),
            pool_meta: BTreeMap::new(),
            attachments: BTreeMap::new(),
            nodes: BTreeMap::new(),
            services: BTreeMap::new(),
            retired: std::sync::Mutex::new(None),
            policy: crate::control::policy_state::PolicyState::new(log_file),
            uplink: cfg.uplink.clone(),
            zones: BTreeMap::new(),
            next_zone: 0,
            made_sockets: crate::control::sockets::MadeSockets::open(&cfg.state_dir),
            vhost_socket_root: cfg.vhost_socket_root.clone(),
            policy_source: cfg.policy_source,
            pci_allowed: cfg.pci_allowed.clone(),
            saved: crate::control::persist::Saved::new(&cfg.state_dir),
            announce: Default::default(),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn lcores(&self) -> &[u32] {
        &self.lcores
    }

    /// Seconds since start, the FDB's clock.
    pub fn now(&self) -> u32 {
        ((dpdk::eal::rdtsc() - self.shared.tsc_start) / self.shared.tsc_hz.max(1)) as u32
    }

    /// Starts one worker per lcore.
    pub fn launch_workers(&self) -> Result<()> {
        for (i, &lc) in self.lcores.iter().enumerate() {
            let shared = self.shared.clone();
            dpdk::eal::launch(lc, move || crate::worker::run(shared, i))?;
        }
        Ok(())
    }

    /// The name of a port whose spec has what `taken` looks for (a socket,
    /// an interface, a device only one port may have).
    fn used_by(&self, taken: impl Fn(&PortSpec) -> bool) -> Option<&str> {
        self.ports
            .values()
            .find(|p| taken(&p.spec))
            .map(|p| p.spec.name.as_str())
    }

    /// `adopt`: a TAP of that name may be there already, left by an earlier
    /// run of this switch for the same pod (its attach was cut short by a
    /// crash, or it is being taken up again).
    fn check_new(&self, spec: &PortSpec, adopt: bool) -> Result<()> {
        spec.validate().map_err(SwitchError::Invalid)?;
        if self.ports.contains_key(&spec.name) {
            return invalid(format!("a port named '{}' exists already", spec.name));
        }
        if self.ports.len() >= MAX_PORTS {
            return invalid(format!("the switch holds at most {MAX_PORTS} ports"));
        }
        match spec.kind {
            PortKind::VhostServer | PortKind::VhostClient => {
                let path = spec.path.as_deref().unwrap_or_default();
                if let Some(other) = self.used_by(|s| s.path.as_deref() == Some(path)) {
                    return invalid(format!("socket path {path} is used by port '{other}'"));
                }
                let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
                if !parent.is_dir() {
                    return invalid(format!(
                        "bad socket path {path}: directory {} does not exist",
                        parent.display()
                    ));
                }
                if spec.kind == PortKind::VhostServer {
                    match std::fs::symlink_metadata(path) {
                        Ok(m) if !std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                            return invalid(format!(
                                "bad socket path {path}: a file that is not a socket is there"
                            ));
                        }
                        Ok(_) if !self.made_sockets.made(path) => {
                            return invalid(format!(
                                "bad socket path {path}: a socket vswitchd did not make is there \
                                 (remove it if it is stale)"
                            ));
                        }
                        _ => {}
                    }
                }
            }
            PortKind::Tap => {
                let iface = spec.tap_iface();
                if let Some(other) =
                    self.used_by(|s| s.kind == PortKind::Tap && s.tap_iface() == iface)
                {
                    return invalid(format!("interface {iface} is used by port '{other}'"));
                }
                let there = Path::new("/sys/class/net").join(iface);
                // only a TUN/TAP device has tun_flags
                if there.exists() && !(adopt && there.join("tun_flags").exists()) {
                    return invalid(format!("interface {iface} exists already on this host"));
                }
            }
            PortKind::AfPacket | PortKind::AfXdp => {
                let iface = spec.tap_iface();
                if let Some(other) = self.used_by(|s| {
                    (s.kind == PortKind::Tap || s.kind.takes_kernel_iface())
                        && s.tap_iface() == iface
                }) {
                    return invalid(format!("interface {iface} is used by port '{other}'"));
                }
                if !Path::new("/sys/class/net").join(iface).exists() {
                    return not_found(format!("no interface {iface} on this host"));
                }
            }
            PortKind::Pci => {
                let addr = spec.pci.as_deref().unwrap_or_default();
                if let Some(other) = self.used_by(|s| s.pci.as_deref() == Some(addr)) {
                    return invalid(format!("PCI device {addr} is used by port '{other}'"));
                }
                if !self.pci_allowed.iter().any(|a| a == addr) {
                    return invalid(format!(
                        "PCI device {addr} was not named when vswitchd started: the EAL \
                         probes only the devices it is allowed at start; restart vswitchd \
                         with --port {}=pci:{addr}",
                        spec.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether a pod of `kind` fits; the limit it would pass, if not.
    pub(crate) fn admit(&self, kind: api::AttachKind) -> Result<()> {
        let (mut taps, mut vhosts, mut others) = (0, 0, 0);
        for p in self.ports.values() {
            match p.spec.kind {
                PortKind::Tap => taps += 1,
                PortKind::VhostServer | PortKind::VhostClient => vhosts += 1,
                PortKind::AfPacket | PortKind::AfXdp | PortKind::Pci => others += 1,
            }
        }
        // the descriptor limit is read each time: an operator may raise it
        // on the running process (prlimit)
        Capacity::of_this_process(MAX_PORTS as u32)
            .admit(kind, taps, vhosts, others)
            .map_err(SwitchError::Full)
    }

    /// The lowest port id no port has.
    fn free_id(&self) -> Option<u16> {
        let used: std::collections::BTreeSet<u16> = self.ports.values().map(|p| p.id).collect();
        (0..MAX_PORTS as u16).find(|id| !used.contains(id))
    }

    /// Makes the device behind a port: a TAP or vhost-user interface of the
    /// switch's own, a DPDK virtual device (af_packet, af_xdp) started as an
    /// ethdev, or the ethdev of a PCI device the EAL probed at start.
    fn open_io(&mut self, spec: &PortSpec, origin: Origin) -> Result<(PortIo, Option<String>)> {
        let (devname, args) = match spec.kind {
            PortKind::Tap => {
                let tap = dpdk::tap::Tap::create(spec.tap_iface(), origin == Origin::Pod)?;
                return Ok((PortIo::Tap(tap), None));
            }
            PortKind::VhostServer | PortKind::VhostClient => {
                let path = spec.path.as_deref().unwrap_or_default();
                if spec.kind == PortKind::VhostServer {
                    // a stale socket from an earlier run would make the bind
                    // fail; check_new refused any socket that is not ours
                    self.made_sockets.remove(path);
                }
                let client = spec.kind == PortKind::VhostClient;
                let port = dpdk::vhost::VhostPort::new(path, client, dpdk::vhost::MAX_QUEUE_PAIRS)?;
                return Ok((
                    PortIo::Vhost {
                        port,
                        next: Default::default(),
                    },
                    None,
                ));
            }
            PortKind::AfPacket => (
                format!("net_af_packet_vs{}", self.seq),
                format!(
                    "iface={},qpairs=1,blocksz=4096,framesz=2048,framecnt=1024",
                    spec.tap_iface()
                ),
            ),
            PortKind::AfXdp => (
                format!("net_af_xdp_vs{}", self.seq),
                format!("iface={},start_queue=0,queue_count=1", spec.tap_iface()),
            ),
            PortKind::Pci => {
                let addr = spec.pci.as_deref().unwrap_or_default();
                let eth = dpdk::ethdev::port_by_name(addr).map_err(|_| {
                    SwitchError::Invalid(format!(
                        "PCI device {addr} has no DPDK port: no PMD took it at start (a \
                         NIC DPDK has no driver for), or its port was deleted; restart \
                         vswitchd with --port {}=pci:{addr}",
                        spec.name
                    ))
                })?;
                if let Err(e) = dpdk::ethdev::port_start(eth, &self.pool, 1, self.ring_size) {
                    dpdk::ethdev::port_stop(eth);
                    return Err(e.into());
                }
                return Ok((PortIo::Ethdev(eth), None));
            }
        };
        let eth = dpdk::ethdev::vdev_create(&devname, &args)?;
        if let Err(e) = dpdk::ethdev::port_start(eth, &self.pool, 1, self.ring_size) {
            dpdk::ethdev::vdev_remove(&devname);
            return Err(e.into());
        }
        Ok((PortIo::Ethdev(eth), Some(devname)))
    }

    /// Adds a port through the control socket and starts switching to and
    /// from it; it is recorded, and made again when vswitchd starts again.
    pub fn add_port(&mut self, spec: PortSpec) -> Result<PortInfo> {
        let info = self.add_port_as(spec, Origin::Hand, None, None)?;
        self.saved.pods_changed();
        Ok(info)
    }

    /// Adds a port named on the command line.
    pub fn add_start_port(&mut self, spec: PortSpec) -> Result<PortInfo> {
        self.add_port_as(spec, Origin::Flag, None, None)
    }

    /// Adds a port: with id `want` if that is free (a restarted switch
    /// gives a port its old id, and with it the gateway MAC its pod has
    /// cached), and the device `io` when it is open already.
    pub(crate) fn add_port_as(
        &mut self,
        spec: PortSpec,
        origin: Origin,
        want: Option<u16>,
        io: Option<PortIo>,
    ) -> Result<PortInfo> {
        self.check_new(&spec, origin == Origin::Pod)?;
        let free =
            want.filter(|&w| usize::from(w) < MAX_PORTS && !self.ports.values().any(|p| p.id == w));
        let Some(id) = free.or_else(|| self.free_id()) else {
            return invalid(format!("the switch holds at most {MAX_PORTS} ports"));
        };
        self.seq += 1;
        let handoff = if self.lcores.len() > 1 {
            Some(MbufRing::new(&format!("vsw_h{}", self.seq), 1024)?)
        } else {
            None
        };
        let (io, devname) = match io {
            Some(io) => (io, None),
            None => self.open_io(&spec, origin)?,
        };
        if let (PortKind::VhostServer, Some(path)) = (spec.kind, spec.path.as_deref()) {
            self.made_sockets.add(path);
        }
        let owner = self.least_loaded_worker();
        let entry = Arc::new(PortEntry {
            id,
            owner,
            link: AtomicBool::new(link_up(&io)),
            io,
            handoff,
        });
        // a reused port id must not inherit MACs learned on its predecessor
        self.shared.fdb.flush(Some(id));
        let base = self.port_counts(id);
        let name = spec.name.clone();
        let how = match &entry.io {
            PortIo::Ethdev(e) => format!("ethdev {e}"),
            PortIo::Tap(t) => format!("TAP {}", t.name()),
            PortIo::Vhost { port, .. } => format!("vhost-user {}", port.path()),
        };
        self.ports.insert(
            name.clone(),
            Port {
                spec,
                origin,
                id,
                devname,
                entry,
                base,
            },
        );
        self.publish();
        tracing::info!(
            "port {name} added as port {id} ({how}) on lcore {}",
            self.lcores[owner]
        );
        Ok(self.port_info(&self.ports[&name]))
    }

    /// Removes a port; other ports keep forwarding throughout.
    pub fn del_port(&mut self, name: &str) -> Result<()> {
        if let Some(p) = self.ports.get(name) {
            if let PortIo::Tap(t) = &p.entry.io {
                t.remove();
            }
            if p.origin == Origin::Hand {
                self.saved.pods_changed();
            }
        }
        self.close_port(name)
    }

    /// Stops switching to and from a port and closes its device; a pod's
    /// persistent TAP stays unless [`dpdk::tap::Tap::remove`] came first.
    fn close_port(&mut self, name: &str) -> Result<()> {
        let Some(port) = self.ports.remove(name) else {
            return not_found(format!("no port named '{name}'"));
        };
        self.endpoints.remove(name);
        self.publish();
        self.wait_quiescent();
        if let Some(dev) = &port.devname {
            dpdk::ethdev::vdev_remove(dev);
        } else if let (PortKind::Pci, PortIo::Ethdev(eth)) = (port.spec.kind, &port.entry.io) {
            // a probed device, not a vdev: its port is stopped and closed
            dpdk::ethdev::port_close(*eth);
        }
        self.shared.fdb.flush(Some(port.id));
        // a port that comes later with the same id is not the one captured
        // or traced
        self.shared.captures.arm(port.id, None);
        self.shared.captures.arm_trace(port.id, false);
        if port.spec.kind == PortKind::VhostServer {
            if let Some(p) = &port.spec.path {
                self.made_sockets.remove(p);
            }
        }
        // the snapshot before the newest may still hold the port: let it go,
        // so the device (a TAP's descriptor) closes now
        if let Ok(mut r) = self.retired.lock() {
            *r = None;
        }
        drop(port);
        tracing::info!("port {name} removed");
        Ok(())
    }

    /// Closes every port at shutdown, after the workers stopped. What is
    /// recorded stays recorded, and pods' TAPs stay in their namespaces for
    /// the next start to take up again.
    pub fn close_all(&mut self) {
        let names: Vec<String> = self.ports.keys().cloned().collect();
        for n in names {
            let _ = self.close_port(&n);
        }
    }

    fn least_loaded_worker(&self) -> usize {
        let mut load = vec![0usize; self.lcores.len()];
        for p in self.ports.values() {
            load[p.entry.owner] += 1;
        }
        (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0)
    }

    /// Builds and swaps in the snapshot for the current port set.
    pub(crate) fn publish(&mut self) {
        self.recompile();
        self.assign_zones();
        let gen = self.shared.generation.load(Relaxed) + 1;
        let mut snap = Snapshot::empty(self.lcores.len());
        snap.generation = gen;
        for (name, p) in &self.ports {
            snap.ports[usize::from(p.id)] = Some(p.entry.clone());
            snap.polls[p.entry.owner].push(p.id);
            match self.endpoints.get(name) {
                Some(ep) => {
                    let mac = ep.mac.to_u64();
                    let ips: Box<[u32]> = ep.ips.iter().map(|&ip| u32::from(ip)).collect();
                    for &ip in ips.iter() {
                        snap.routes.insert(ip, Route { port: p.id, mac });
                    }
                    snap.endpoints[usize::from(p.id)] = Some(Endpoint {
                        mac,
                        ips,
                        policy: self.endpoint_policy(ep),
                        zone: self.zones.get(name).map_or(0, |z| z.0),
                    });
                }
                // routed pods stay out of the bridge domain
                None => snap.domain.push(p.id),
            }
        }
        snap.domain.sort_unstable();
        snap.policy = self.policy.compiled.clone();
        snap.policy_generation = self.policy.generation;
        snap.rule_slots = self.policy.rule_slots.clone();
        snap.underlay = self.build_underlay(gen);
        let routes = &snap.routes;
        snap.services = crate::tables::services::Services::build(self.services.values(), |ip| {
            routes.contains_key(&ip)
        });
        if let Some(u) = &snap.underlay {
            // the uplink and the host port are no bridge ports
            snap.domain.retain(|&p| p != u.uplink && Some(p) != u.host);
        }
        let old = self.shared.snapshot.swap(Arc::new(snap));
        self.shared.generation.store(gen, Release);
        // keep the old snapshot alive here, so that the worker dropping its
        // reference is not the one that frees it (free() on the fast path)
        if let Ok(mut r) = self.retired.lock() {
            *r = Some(old);
        }
    }

    /// Gives every routed port a conntrack zone: the one it has while the
    /// same pod (MAC and addresses) is on it, a new one for a new pod, so
    /// that nobody inherits connections. A zone number comes back into use
    /// only after 65,535 others.
    fn assign_zones(&mut self) {
        let eps = &self.endpoints;
        self.zones.retain(|port, _| eps.contains_key(port));
        for (port, ep) in &self.endpoints {
            let same = self
                .zones
                .get(port)
                .is_some_and(|(_, mac, ips)| *mac == ep.mac && *ips == ep.ips);
            if !same {
                self.next_zone = self.next_zone.checked_add(1).unwrap_or(1);
                self.zones
                    .insert(port.clone(), (self.next_zone, ep.mac, ep.ips.clone()));
            }
        }
    }

    /// Waits until every worker runs the newest snapshot.
    ///
    /// There is no giving up: tearing a port down under a worker that still
    /// polls it would be a use after free. A stalled worker is reported.
    fn wait_quiescent(&self) {
        let gen = self.shared.generation.load(Acquire);
        let mut report = Instant::now() + Duration::from_secs(5);
        while self.shared.seen.iter().any(|s| s.load(Acquire) < gen) {
            if Instant::now() > report {
                tracing::error!("a worker has not picked up generation {gen} yet; still waiting");
                report += Duration::from_secs(5);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Stops the workers and waits for them.
    pub fn stop_workers(&self) {
        self.shared.stop.store(true, Release);
        for &lc in &self.lcores {
            dpdk::eal::wait_lcore(lc);
        }
    }

    /// Periodic chores: the flow log, link states, FDB aging.
    pub fn housekeeping(&mut self) {
        self.collect_flow_log();
        self.announce_gateway();
        for p in self.ports.values() {
            let up = link_up(&p.entry.io);
            if p.entry.link.swap(up, Relaxed) != up {
                tracing::info!(
                    "port {} link {}",
                    p.spec.name,
                    if up { "up" } else { "down" }
                );
            }
        }
        // a sweep reads the whole table (32 MiB at the default bound): once a
        // second is enough for a clock in seconds, and spares the shared cache
        let now = self.now();
        if self.last_sweep.swap(now, Relaxed) != now {
            let aged = self.shared.fdb.sweep(now);
            self.aged_by_sweep.fetch_add(aged, Relaxed);
        }
    }

    fn port_counts(&self, id: u16) -> Baseline {
        let mut b = Baseline::default();
        for w in &self.shared.counters {
            let c = &w.ports[usize::from(id)];
            b.rx_packets += c.rx_packets.get();
            b.rx_bytes += c.rx_bytes.get();
            b.tx_packets += c.tx_packets.get();
            b.tx_bytes += c.tx_bytes.get();
            b.tx_drops += c.tx_drops.get();
            b.rx_drops += c.rx_drops.get();
        }
        b
    }

    fn port_info(&self, p: &Port) -> PortInfo {
        PortInfo {
            name: p.spec.name.clone(),
            kind: p.spec.kind,
            path: p.spec.path.clone(),
            iface: (p.spec.kind == PortKind::Tap || p.spec.kind.takes_kernel_iface())
                .then(|| p.spec.tap_iface().to_owned()),
            pci: p.spec.pci.clone(),
            port_id: p.id,
            lcore: self.lcores[p.entry.owner],
            link_up: p.entry.link.load(Relaxed),
            mac: MacAddr(port_mac(&p.entry.io, p.id)),
        }
    }

    pub fn list_ports(&self) -> Vec<PortInfo> {
        self.ports.values().map(|p| self.port_info(p)).collect()
    }

    pub fn stats(&self) -> Stats {
        let ports = self
            .ports
            .values()
            .map(|p| {
                let c = self.port_counts(p.id);
                let b = &p.base;
                PortStats {
                    name: p.spec.name.clone(),
                    rx_packets: c.rx_packets.saturating_sub(b.rx_packets),
                    rx_bytes: c.rx_bytes.saturating_sub(b.rx_bytes),
                    tx_packets: c.tx_packets.saturating_sub(b.tx_packets),
                    tx_bytes: c.tx_bytes.saturating_sub(b.tx_bytes),
                    tx_drops: c.tx_drops.saturating_sub(b.tx_drops),
                    rx_drops: c.rx_drops.saturating_sub(b.rx_drops),
                }
            })
            .collect();
        let drops = DropReason::ALL
            .iter()
            .map(|&r| {
                let n = self.shared.counters.iter().map(|w| w.drops_of(r)).sum();
                (r.name().to_owned(), n)
            })
            .collect();
        let sum = |f: fn(&WorkerCounters) -> u64| self.shared.counters.iter().map(f).sum::<u64>();
        let fdb = FdbStats {
            entries: self.shared.fdb.len(),
            capacity: self.shared.fdb.capacity(),
            learned: sum(|w| w.learned.get()),
            moved: sum(|w| w.moved.get()),
            aged: sum(|w| w.aged.get()) + self.aged_by_sweep.load(Relaxed),
            evicted: sum(|w| w.evicted.get()),
            aging_seconds: self.shared.fdb.aging(),
        };
        let snap = self.shared.snapshot.load();
        let workers = self
            .lcores
            .iter()
            .enumerate()
            .map(|(i, &lc)| {
                let w = &self.shared.counters[i];
                WorkerStats {
                    lcore: lc,
                    ports: snap.polls[i]
                        .iter()
                        .filter_map(|&id| self.name_of(id))
                        .collect(),
                    packets: w.packets.get(),
                    busy_cycles: w.busy_cycles.get(),
                    idle_polls: w.idle_polls.get(),
                    sleeps: w.sleeps.get(),
                }
            })
            .collect();
        Stats {
            ports,
            drops,
            fdb,
            workers,
            tsc_hz: self.shared.tsc_hz,
            conntrack: api::ConntrackStats {
                capacity: self.shared.ct_capacity as u64 * self.lcores.len() as u64,
                created: sum(|w| w.ct_created.get()),
                picked_up: sum(|w| w.ct_picked_up.get()),
                evicted: sum(|w| w.ct_evicted.get()),
                log_suppressed: sum(|w| w.log_suppressed.get()),
                refused: sum(|w| w.ct_refused.get()),
                answers_suppressed: sum(|w| w.refusals_suppressed.get()),
                arp_suppressed: sum(|w| w.arp_suppressed.get()),
            },
            policy_rules: self.policy.hits.report(&self.shared.counters),
        }
    }

    /// The MAC port `id` shows (zero for no such port).
    pub(crate) fn port_mac(&self, id: u16) -> [u8; 6] {
        self.ports
            .values()
            .find(|p| p.id == id)
            .map_or([0; 6], |p| port_mac(&p.entry.io, p.id))
    }

    /// The specs and ids of the ports that came from `origin`.
    pub(crate) fn ports_from(&self, origin: Origin) -> Vec<(PortSpec, u16)> {
        self.ports
            .values()
            .filter(|p| p.origin == origin)
            .map(|p| (p.spec.clone(), p.id))
            .collect()
    }

    /// The TAP behind a port, if it is one.
    pub(crate) fn port_tap(&self, name: &str) -> Option<&dpdk::tap::Tap> {
        match &self.ports.get(name)?.entry.io {
            PortIo::Tap(t) => Some(t),
            _ => None,
        }
    }

    pub(crate) fn port_id(&self, name: &str) -> Option<u16> {
        self.ports.get(name).map(|p| p.id)
    }

    /// The kernel interface behind a tap, af-packet or af-xdp port.
    pub(crate) fn port_iface(&self, name: &str) -> Option<String> {
        self.ports
            .get(name)
            .filter(|p| p.spec.kind == PortKind::Tap || p.spec.kind.takes_kernel_iface())
            .map(|p| p.spec.tap_iface().to_owned())
    }

    pub(crate) fn name_of(&self, id: u16) -> Option<String> {
        self.ports
            .values()
            .find(|p| p.id == id)
            .map(|p| p.spec.name.clone())
    }

    pub fn fdb_show(&self) -> Vec<FdbEntry> {
        let mut v: Vec<FdbEntry> = self
            .shared
            .fdb
            .entries(self.now())
            .into_iter()
            .map(|(mac, id, age)| FdbEntry {
                mac: MacAddr::from_u64(mac),
                port: self.name_of(id).unwrap_or_else(|| format!("#{id}")),
                age,
            })
            .collect();
        v.sort_by(|a, b| (&a.port, a.mac).cmp(&(&b.port, b.mac)));
        v
    }

    pub fn fdb_flush(&self, port: Option<&str>) -> Result<u64> {
        let id = match port {
            None => None,
            Some(n) => match self.ports.get(n) {
                Some(p) => Some(p.id),
                None => return not_found(format!("no port named '{n}'")),
            },
        };
        Ok(self.shared.fdb.flush(id))
    }

    pub fn set_aging(&self, secs: u32) -> Result<()> {
        if secs == 0 || secs > 1_000_000 {
            return invalid(format!("aging time {secs} s out of range 1..=1000000"));
        }
        self.shared.fdb.set_aging(secs);
        Ok(())
    }

    /// Makes a port a routed pod endpoint, or updates it.
    pub fn set_endpoint(&mut self, ep: EndpointSpec) -> Result<()> {
        ep.validate().map_err(SwitchError::Invalid)?;
        if !self.ports.contains_key(&ep.port) {
            return not_found(format!("no port named '{}'", ep.port));
        }
        for (port, other) in &self.endpoints {
            if port == &ep.port {
                continue;
            }
            if let Some(ip) = ep.ips.iter().find(|ip| other.ips.contains(ip)) {
                return invalid(format!(
                    "address {ip} belongs to the endpoint on port '{port}'"
                ));
            }
        }
        let port = ep.port.clone();
        self.endpoints.insert(port.clone(), ep);
        self.saved.pods_changed();
        self.publish();
        self.forget_learned(&port);
        Ok(())
    }

    /// A port that became routed must not stay a destination the bridge
    /// learned: once no worker bridges from it any more, forget its MACs.
    pub(crate) fn forget_learned(&self, port: &str) {
        if let Some(p) = self.ports.get(port) {
            self.wait_quiescent();
            self.shared.fdb.flush(Some(p.id));
        }
    }

    pub fn del_endpoint(&mut self, port: &str) -> Result<()> {
        if self.endpoints.remove(port).is_none() {
            return not_found(format!("no endpoint on port '{port}'"));
        }
        self.saved.pods_changed();
        self.publish();
        Ok(())
    }

    pub(crate) fn has_port(&self, name: &str) -> bool {
        self.ports.contains_key(name)
    }

    pub fn endpoints(&self) -> Vec<EndpointSpec> {
        self.endpoints.values().cloned().collect()
    }

    /// Routed ports and their conntrack zones.
    pub(crate) fn zones(&self) -> impl Iterator<Item = (&str, u16)> {
        self.zones.iter().map(|(port, z)| (port.as_str(), z.0))
    }

    pub fn status(&self) -> api::Status {
        self.status_source().status()
    }

    /// What answers `status` without the switch: the liveness probe must
    /// answer while a push or an IPAM call holds the switch.
    pub fn status_source(&self) -> StatusSource {
        StatusSource {
            hugepages: self.hugepages,
            workers: self.lcores.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// The switch's status, readable without its lock.
#[derive(Clone)]
pub struct StatusSource {
    hugepages: bool,
    workers: Vec<u32>,
    shared: Arc<Shared>,
}

impl StatusSource {
    pub fn status(&self) -> api::Status {
        let (pods_max, pods_limit) = Capacity::of_this_process(MAX_PORTS as u32).pods_max();
        api::Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            dpdk_version: dpdk::eal::version(),
            hugepages: self.hugepages,
            workers: self.workers.clone(),
            generation: self.shared.generation.load(Relaxed),
            pods: self
                .shared
                .snapshot
                .load()
                .endpoints
                .iter()
                .flatten()
                .count() as u32,
            pods_max,
            pods_limit,
        }
    }
}

//! vswitchd: the DPDK dataplane daemon.
//!
//! Started with no arguments it uses hugepages (hugetlbfs mounted with free
//! pages; without them it stops and says so: `deploy/host-setup.sh` reserves
//! them, `--no-huge` runs without), one worker lcore, and the control socket
//! at /run/vswitch/vswitchd.sock.

use api::{PortKind, PortSpec};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use vswitch::control::config::{IpamStoreKind, PolicySource, SwitchConfig, UplinkConfig};
use vswitch::control::{metrics, socket, switch::Switch};
use vswitch::dpdk;

/// Every flag but `--port` and the EAL's may also be given as an
/// environment variable, `VSWITCH_` and the flag's name in capitals
/// (`--ct-max` as `VSWITCH_CT_MAX`); a flag on the command line wins.
#[derive(Parser, Debug)]
#[command(
    name = "vswitchd",
    version,
    about = "DPDK virtual switch for Kubernetes pods"
)]
struct Args {
    /// Control socket.
    #[arg(long, env = "VSWITCH_SOCKET", default_value = api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// EAL lcore map: the first lcore runs the control thread, every other one
    /// is a worker (e.g. "0@0,1@1"). Default: control on CPU 0, `--workers`
    /// workers on the last CPUs.
    #[arg(long, env = "VSWITCH_LCORES")]
    lcores: Option<String>,
    /// Worker lcores when --lcores is not given; ports are split among them.
    #[arg(long, env = "VSWITCH_WORKERS", default_value_t = 1)]
    workers: usize,
    /// Run without hugepages (development; slower).
    #[arg(long, env = "VSWITCH_NO_HUGE")]
    no_huge: bool,
    /// Memory for the EAL, MiB.
    #[arg(long, env = "VSWITCH_MEM", default_value_t = 256)]
    mem: u32,
    /// EAL file prefix (several DPDK processes on one host need distinct ones).
    #[arg(long, env = "VSWITCH_FILE_PREFIX", default_value = "vswitchd")]
    file_prefix: String,
    /// Packet buffers in the pool.
    #[arg(long, env = "VSWITCH_MBUFS", default_value_t = 32768)]
    mbufs: u32,
    /// Seconds after which a silent MAC is forgotten.
    #[arg(long, env = "VSWITCH_AGING", default_value_t = 300)]
    aging: u32,
    /// Most MACs the FDB holds; beyond, the least recently seen are evicted.
    #[arg(long, env = "VSWITCH_FDB_MAX", default_value_t = 1 << 20)]
    fdb_max: usize,
    /// Most connections tracked, all workers together; beyond, a new
    /// connection takes the place of a closed, closing or unanswered one,
    /// never an established one's, or is dropped (`ct_full`).
    #[arg(long, env = "VSWITCH_CT_MAX", default_value_t = 1 << 20)]
    ct_max: usize,
    /// Percent of a worker's connection table one pod may hold (1-100).
    #[arg(long, env = "VSWITCH_CT_ZONE_SHARE", default_value_t = vswitch::tables::conntrack::DEFAULT_ZONE_SHARE,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    ct_zone_share: u32,
    /// The port that attaches the switch to the node's network (add it with
    /// --port, e.g. `up=af-packet:eth1`, `up=af-xdp:eth1` or
    /// `up=pci:0000:3b:00.0`); this node's underlay address is
    /// the first address of its Node in the desired state.
    #[arg(long, env = "VSWITCH_UPLINK", value_name = "PORT")]
    uplink: Option<String>,
    /// A tap port whose kernel side is the host's own stack: what the
    /// uplink receives and the switch does not take goes there, and what
    /// the host sends goes out of the uplink.
    #[arg(
        long,
        env = "VSWITCH_HOST_PORT",
        value_name = "PORT",
        requires = "uplink"
    )]
    host_port: Option<String>,
    /// The underlay's default gateway, for nodes in other subnets and for
    /// the outside world.
    #[arg(
        long,
        env = "VSWITCH_UNDERLAY_GATEWAY",
        value_name = "IP",
        requires = "uplink"
    )]
    underlay_gateway: Option<std::net::Ipv4Addr>,
    /// The outer TTL of VXLAN and IP-in-IP packets the switch sends.
    #[arg(long, env = "VSWITCH_TUNNEL_TTL", default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    tunnel_ttl: u8,
    /// Append flow-log records (rules with action Log) to this file as JSON
    /// lines, besides keeping the latest for `vsctl flows log`.
    #[arg(long, env = "VSWITCH_FLOW_LOG_FILE")]
    flow_log_file: Option<PathBuf>,
    /// Where durable state (IPAM claims with --ipam-store file) is kept.
    #[arg(long, env = "VSWITCH_STATE_DIR", default_value = "/var/lib/vswitch")]
    state_dir: PathBuf,
    /// The only directory under which pods' vhost-user sockets are made
    /// (the CNI plugin's `vhostSocketDir` and `socketDir` must lie inside it).
    #[arg(
        long,
        env = "VSWITCH_VHOST_SOCKET_ROOT",
        default_value = "/var/run/vswitch"
    )]
    vhost_socket_root: PathBuf,
    /// Where IPAM claims are kept: "file" (STATE_DIR/ipam.json, a standalone node) or "kube"
    /// (IPAMBlock and BlockAffinity objects in the API server named by $KUBECONFIG or the
    /// in-cluster service account; pools are the cluster's IPPools).
    #[arg(long, env = "VSWITCH_IPAM_STORE", value_enum, default_value_t = StoreArg::File)]
    ipam_store: StoreArg,
    /// Where pods' labels and policy come from: "local" (`vsctl apply` on
    /// this node; a pod attached through CNI is programmed at once) or
    /// "agent" (the node agent; a pod attached through CNI passes nothing but
    /// ARP until the agent's document names it).
    #[arg(long, env = "VSWITCH_POLICY_SOURCE", value_enum, default_value_t = SourceArg::Local)]
    policy_source: SourceArg,
    /// This node's name in block affinities (default: the host name).
    #[arg(long, env = "VSWITCH_NODE")]
    node: Option<String>,
    /// A port to add at start: NAME=KIND:ARG, KIND one of vhost-server,
    /// vhost-client (ARG: socket path), tap, af-packet, af-xdp (ARG: interface
    /// name) or pci (ARG: PCI address, e.g. 0000:3b:00.0, of a NIC bound to
    /// vfio-pci; only PCI devices named here are probed). Repeatable.
    #[arg(long = "port", value_name = "NAME=KIND:ARG")]
    ports: Vec<String>,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics,
    /// e.g. 0.0.0.0:9091.
    #[arg(long, env = "VSWITCH_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Extra EAL arguments, after `--`.
    #[arg(last = true)]
    eal: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum StoreArg {
    File,
    Kube,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SourceArg {
    Local,
    Agent,
}

fn parse_port(s: &str) -> Result<PortSpec, String> {
    PortSpec::parse_flag(s)
}

/// Kernel drivers through which DPDK can drive a PCI device.
const DPDK_PCI_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Where sysfs lists PCI devices.
const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Checks that PCI device `addr` is under `devices` (sysfs's
/// `/sys/bus/pci/devices`) and bound to a driver DPDK can drive it through
/// (its `driver` link); otherwise says how to make it so.
fn check_pci_device(devices: &Path, addr: &str) -> Result<(), String> {
    let dir = devices.join(addr);
    if !dir.exists() {
        return Err(format!(
            "no PCI device {addr} on this host (lspci -D lists them)"
        ));
    }
    let bind = format!(
        "bind it with \"dpdk-devbind.py --bind=vfio-pci {addr}\" (modprobe vfio-pci first)"
    );
    let driver = std::fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    match driver {
        Some(d) if DPDK_PCI_DRIVERS.contains(&d.as_str()) => Ok(()),
        Some(d) => Err(format!(
            "PCI device {addr} is bound to {d}, not to a DPDK driver: {bind}"
        )),
        None => Err(format!(
            "PCI device {addr} is bound to no driver, not to a DPDK driver: {bind}"
        )),
    }
}

/// The PCI addresses of the pci ports among `ports`, each once.
fn pci_addrs(ports: &[PortSpec]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for p in ports.iter().filter(|p| p.kind == PortKind::Pci) {
        if let Some(a) = &p.pci {
            if !v.contains(a) {
                v.push(a.clone());
            }
        }
    }
    v
}

/// True when hugetlbfs is mounted and holds at least `mb` MiB free.
fn hugepages_available(mb: u32) -> bool {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |k: &str| -> u64 {
        meminfo
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let free_kb = field("HugePages_Free:") * field("Hugepagesize:");
    mounted && free_kb >= u64::from(mb) * 1024
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn default_lcores(workers: usize) -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = workers.max(1);
    let mut l = vec!["0@0".to_owned()];
    for w in 0..workers {
        // workers on the last CPUs, away from CPU 0 where the kernel and control run
        let cpu = if cpus > workers {
            cpus - workers + w
        } else {
            w % cpus
        };
        l.push(format!("{}@{}", w + 1, cpu));
    }
    l.join(",")
}

/// The EAL's arguments: without a PCI port, `--no-pci` (nothing on the PCI
/// bus is touched); with PCI ports, `-a ADDR` for each, the only devices
/// the EAL probes.
fn eal_args(a: &Args, huge: bool, pci: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec!["vswitchd".into()];
    if pci.is_empty() {
        v.push("--no-pci".into());
    }
    for addr in pci {
        v.push("-a".into());
        v.push(addr.clone());
    }
    v.push("--lcores".into());
    v.push(
        a.lcores
            .clone()
            .unwrap_or_else(|| default_lcores(a.workers)),
    );
    v.push("-m".into());
    v.push(a.mem.to_string());
    v.push(format!("--file-prefix={}", a.file_prefix));
    if huge {
        // nothing of ours needs to be shared with another process
        v.push("--in-memory".into());
    } else {
        v.push("--no-huge".into());
        v.push("--no-shconf".into());
    }
    v.push("--log-level=lib.eal:notice".into());
    v.extend(a.eal.iter().cloned());
    v
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VSWITCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // every pod takes descriptors: take all the hard limit allows (a
    // runtime's default soft limit of 1,024 would hold a few hundred pods)
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!("descriptor limit {n}"),
        Err(e) => tracing::warn!("raising the descriptor limit: {e}"),
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("vswitchd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let initial: Vec<PortSpec> = args
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<_, _>>()?;
    let huge = !args.no_huge && !args.eal.iter().any(|a| a == "--no-huge");
    if huge && !hugepages_available(args.mem) {
        return Err(format!(
            "no hugetlbfs mount with {} MiB of free hugepages: reserve them with \
             `sudo deploy/host-setup.sh`, or run without them with --no-huge (slower)",
            args.mem
        ));
    }
    let pci = pci_addrs(&initial);
    for addr in &pci {
        check_pci_device(Path::new(SYSFS_PCI_DEVICES), addr)?;
    }
    let eal = eal_args(&args, huge, &pci);
    tracing::info!("EAL: {}", eal.join(" "));
    dpdk::eal::eal_init(&eal).map_err(|e| e.to_string())?;
    let cfg = SwitchConfig {
        fdb_max: args.fdb_max,
        ct_max: args.ct_max,
        ct_zone_share: args.ct_zone_share,
        flow_log_file: args.flow_log_file.clone(),
        uplink: UplinkConfig {
            port: args.uplink.clone(),
            host_port: args.host_port.clone(),
            gateway: args.underlay_gateway,
            tunnel_ttl: args.tunnel_ttl,
        },
        aging_secs: args.aging,
        mbufs: args.mbufs,
        state_dir: args.state_dir.clone(),
        vhost_socket_root: args.vhost_socket_root.clone(),
        node: args.node.clone().unwrap_or_else(host_name),
        ipam_store: match args.ipam_store {
            StoreArg::File => IpamStoreKind::File,
            StoreArg::Kube => IpamStoreKind::Kube,
        },
        policy_source: match args.policy_source {
            SourceArg::Local => PolicySource::Local,
            SourceArg::Agent => PolicySource::Agent,
        },
        pci_allowed: pci,
        ..SwitchConfig::default()
    };
    let sw = Switch::new(&cfg, dpdk::eal::worker_lcores(), huge).map_err(|e| e.to_string())?;
    tracing::info!(
        "{} on {}; control on lcore {}, workers on lcores {:?}",
        env!("CARGO_PKG_NAME"),
        dpdk::eal::version(),
        dpdk::eal::main_lcore(),
        sw.lcores()
    );
    let sw = Arc::new(Mutex::new(sw));
    let result = serve(&args, &sw, initial);
    // stop polling before the ports go away
    if let Ok(mut s) = sw.lock() {
        s.stop_workers();
        s.close_all();
    }
    drop(sw);
    let _ = std::fs::remove_file(&args.socket);
    dpdk::eal::eal_cleanup();
    tracing::info!("stopped");
    result
}

fn serve(args: &Args, sw: &Arc<Mutex<Switch>>, initial: Vec<PortSpec>) -> Result<(), String> {
    {
        let mut s = sw.lock().map_err(|_| "switch state poisoned".to_owned())?;
        s.launch_workers().map_err(|e| e.to_string())?;
        for p in initial {
            let name = p.name.clone();
            s.add_start_port(p)
                .map_err(|e| format!("port {name}: {e}"))?;
        }
        // pods keep forwarding from here on, before anyone is served
        let r = s.restore()?;
        if r.pods + r.ports + r.endpoints > 0 || !r.lost.is_empty() {
            tracing::info!(
                "took up {} pod(s), {} port(s) and {} endpoint(s) of the last run",
                r.pods,
                r.ports,
                r.endpoints
            );
        }
        if !r.lost.is_empty() {
            tracing::warn!(
                "{} pod(s) of the last run are gone (CNI DEL or GC frees their addresses): {}",
                r.lost.len(),
                r.lost.join(", ")
            );
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = socket::bind(&args.socket)
            .map_err(|e| format!("control socket {}: {e}", args.socket.display()))?;
        tracing::info!("control socket {}", args.socket.display());
        let ctl =
            socket::Control::new(sw.clone()).ok_or_else(|| "switch state poisoned".to_owned())?;
        if let Some(addr) = args.metrics_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
            tracing::info!("metrics on http://{addr}/metrics");
            tokio::task::spawn_local(metrics::serve(ctl.clone(), l));
        }
        socket::serve(ctl, listener)
            .await
            .map_err(|e| format!("control socket: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_flags() {
        let p = parse_port("vhu0=vhost-server:/tmp/v0.sock").unwrap();
        assert_eq!(p.kind, PortKind::VhostServer);
        assert_eq!(p.path.as_deref(), Some("/tmp/v0.sock"));
        let t = parse_port("t0=tap:vtap0").unwrap();
        assert_eq!(t.iface.as_deref(), Some("vtap0"));
        assert!(parse_port("x=ethernet:/a")
            .unwrap_err()
            .contains("unknown port kind"));
        assert!(parse_port("novalue").is_err());
        assert!(parse_port("v=vhost-server")
            .unwrap_err()
            .contains("socket path"));
        let x = parse_port("up=af-xdp:eth1").unwrap();
        assert_eq!(
            (x.kind, x.iface.as_deref()),
            (PortKind::AfXdp, Some("eth1"))
        );
        let n = parse_port("up=pci:0000:3b:00.0").unwrap();
        assert_eq!(
            (n.kind, n.pci.as_deref()),
            (PortKind::Pci, Some("0000:3b:00.0"))
        );
    }

    fn args(extra: &[&str]) -> Args {
        Args::parse_from(["vswitchd"].iter().chain(extra))
    }

    #[test]
    fn eal_args_without_a_pci_port_touch_no_pci_device() {
        let a = args(&["--port", "up=af-xdp:eth1", "--lcores", "0@0,1@1"]);
        let ports: Vec<PortSpec> = a.ports.iter().map(|p| parse_port(p).unwrap()).collect();
        let pci = pci_addrs(&ports);
        assert!(pci.is_empty());
        let v = eal_args(&a, false, &pci);
        assert_eq!(v[0], "vswitchd");
        assert!(v.contains(&"--no-pci".to_owned()), "{v:?}");
        assert!(!v.contains(&"-a".to_owned()), "{v:?}");
        assert!(v.contains(&"--no-huge".to_owned()), "{v:?}");
    }

    #[test]
    fn eal_args_allow_each_pci_port_and_only_those() {
        let a = args(&[
            "--port",
            "up=pci:0000:3b:00.0",
            "--port",
            "nic1=pci:0000:3b:00.1",
            "--port",
            "t0=tap:vtap0",
            "--",
            "--log-level=pmd.net.ixgbe:debug",
        ]);
        let ports: Vec<PortSpec> = a.ports.iter().map(|p| parse_port(p).unwrap()).collect();
        let pci = pci_addrs(&ports);
        assert_eq!(pci, ["0000:3b:00.0", "0000:3b:00.1"]);
        let v = eal_args(&a, true, &pci);
        assert!(!v.contains(&"--no-pci".to_owned()), "{v:?}");
        let allowed: Vec<&str> = v
            .windows(2)
            .filter(|w| w[0] == "-a")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(allowed, ["0000:3b:00.0", "0000:3b:00.1"]);
        assert!(v.contains(&"--in-memory".to_owned()), "{v:?}");
        // extra EAL arguments stay last
        assert_eq!(
            v.last().map(String::as_str),
            Some("--log-level=pmd.net.ixgbe:debug")
        );
    }

    /// A sysfs `bus/pci/devices` of our own, in a temp dir.
    struct FakeSysfs(PathBuf);

    impl FakeSysfs {
        fn new(tag: &str) -> FakeSysfs {
            let root =
                std::env::temp_dir().join(format!("vsw-fake-sysfs-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("drivers")).unwrap();
            std::fs::create_dir_all(root.join("devices")).unwrap();
            FakeSysfs(root)
        }

        fn devices(&self) -> PathBuf {
            self.0.join("devices")
        }

        /// Device `addr`, bound to `driver` if given (a `driver` link to
        /// `../drivers/NAME`, as sysfs has it).
        fn device(&self, addr: &str, driver: Option<&str>) {
            let dev = self.devices().join(addr);
            std::fs::create_dir_all(&dev).unwrap();
            if let Some(d) = driver {
                std::fs::create_dir_all(self.0.join("drivers").join(d)).unwrap();
                std::os::unix::fs::symlink(format!("../../drivers/{d}"), dev.join("driver"))
                    .unwrap();
            }
        }
    }

    impl Drop for FakeSysfs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn pci_devices_must_exist_and_be_bound_to_a_dpdk_driver() {
        let fs = FakeSysfs::new("pci");
        fs.device("0000:3b:00.0", Some("ixgbe"));
        fs.device("0000:3b:00.1", None);
        fs.device("0000:3b:00.2", Some("vfio-pci"));
        fs.device("0000:3b:00.3", Some("uio_pci_generic"));
        let d = fs.devices();

        let e = check_pci_device(&d, "0000:ff:1f.7").unwrap_err();
        assert_eq!(
            e,
            "no PCI device 0000:ff:1f.7 on this host (lspci -D lists them)"
        );
        let e = check_pci_device(&d, "0000:3b:00.0").unwrap_err();
        assert_eq!(
            e,
            "PCI device 0000:3b:00.0 is bound to ixgbe, not to a DPDK driver: bind it with \
             \"dpdk-devbind.py --bind=vfio-pci 0000:3b:00.0\" (modprobe vfio-pci first)"
        );
        let e = check_pci_device(&d, "0000:3b:00.1").unwrap_err();
        assert!(e.contains("bound to no driver"), "{e}");
        assert!(
            e.contains("dpdk-devbind.py --bind=vfio-pci 0000:3b:00.1"),
            "{e}"
        );
        check_pci_device(&d, "0000:3b:00.2").unwrap();
        check_pci_device(&d, "0000:3b:00.3").unwrap();
    }

    #[test]
    fn lcore_defaults() {
        let l = default_lcores(1);
        assert!(l.starts_with("0@0,1@"), "{l}");
        assert_eq!(default_lcores(2).split(',').count(), 3);
    }
}

//! Harness for the plugin's integration tests: runs `vswitch-cni` exactly as a
//! runtime does (a clean environment with the CNI variables, the config on
//! stdin), starts a real vswitchd, makes network namespaces.

#![allow(dead_code)]

use api::{Client, Reply, Request};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_vswitch-cni");
/// Debian's containernetworking-plugins.
pub const DEBIAN_CNI: &str = "/usr/lib/cni";
pub const TIMEOUT: Duration = Duration::from_secs(30);

static SEQ: AtomicUsize = AtomicUsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

pub fn unique() -> usize {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Held while a test runs: this process's mutex and a file lock shared by
/// every test process (nextest runs each test in a process of its own).
pub struct Serial {
    _file: nix::fcntl::Flock<std::fs::File>,
    _guard: MutexGuard<'static, ()>,
}

/// One test at a time: each starts its own switch, and two would starve
/// each other on two CPUs.
pub fn serial() -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/vswitch-cni-tests.lock")
        .expect("opening /tmp/vswitch-cni-tests.lock");
    let file = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking /tmp/vswitch-cni-tests.lock: {e}"));
    Serial {
        _file: file,
        _guard: guard,
    }
}

/// One plugin run.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The result object of a successful run.
    pub fn ok(&self) -> Value {
        assert!(self.success, "the plugin failed: {self:?}");
        self.json()
    }

    /// A successful run that printed nothing (DEL, CHECK, GC, STATUS).
    pub fn ok_silent(&self) {
        assert!(self.success, "the plugin failed: {self:?}");
        assert_eq!(self.stdout.trim(), "", "expected no output: {self:?}");
    }

    /// The CNI error of a failed run: (code, msg). Asserts the error
    /// object's shape.
    pub fn err(&self) -> (u64, String) {
        assert!(!self.success, "expected a failure: {self:?}");
        assert_ne!(self.code, Some(0));
        let v = self.json();
        let obj = v.as_object().expect("an error object");
        for k in obj.keys() {
            assert!(
                ["cniVersion", "code", "msg", "details"].contains(&k.as_str()),
                "unexpected key {k} in {v}"
            );
        }
        assert!(v["cniVersion"].is_string(), "{v}");
        let msg = v["msg"].as_str().expect("msg").to_owned();
        assert!(!msg.is_empty());
        (v["code"].as_u64().expect("code"), msg)
    }
}

/// Runs a plugin binary with exactly `env` (plus PATH) and `stdin`.
pub fn run_binary(bin: &str, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("waiting for the plugin");
    Run {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn plugin(env: &[(&str, &str)], stdin: &str) -> Run {
    run_binary(PLUGIN, env, stdin)
}

/// The environment of one CNI call for (container, netns, ifname).
pub struct Call<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
    pub path: &'a str,
}

impl<'a> Call<'a> {
    pub fn new(container_id: &'a str, netns: &'a str) -> Call<'a> {
        Call {
            container_id,
            netns,
            ifname: "eth0",
            args: "",
            path: DEBIAN_CNI,
        }
    }

    pub fn env(&self, command: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut e = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", self.container_id),
            ("CNI_NETNS", self.netns),
            ("CNI_IFNAME", self.ifname),
            ("CNI_PATH", self.path),
        ];
        if !self.args.is_empty() {
            e.push(("CNI_ARGS", self.args));
        }
        e
    }

    pub fn run(&self, command: &str, conf: &Value) -> Run {
        plugin(&self.env(command), &conf.to_string())
    }

    /// Runs another plugin (Debian's) with the same environment.
    pub fn run_other(&self, bin: &str, command: &str, conf: &Value) -> Run {
        run_binary(bin, &self.env(command), &conf.to_string())
    }
}

/// Interfaces of the current (host) network namespace.
pub fn host_links() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn must_be_root() {
    assert!(
        is_root(),
        "this test needs root (network namespaces, TAP devices, hugepages): run it as root, \
         e.g. `sudo -E cargo test -p cni-shim --test e2e`"
    );
    for tool in ["ip", "ping", "python3"] {
        assert!(
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(tool).exists())
                || std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                    .unwrap_or(false),
            "{tool} is not installed (apt-get install iproute2 iputils-ping python3)"
        );
    }
    for p in ["host-local", "tuning", "portmap"] {
        assert!(
            Path::new(DEBIAN_CNI).join(p).exists(),
            "{DEBIAN_CNI}/{p} is missing: apt-get install -y containernetworking-plugins"
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
        std::fs::write("/proc/sys/vm/nr_hugepages", "1024")
            .unwrap_or_else(|e| panic!("cannot reserve hugepages: {e}"));
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
    assert!(
        meminfo("HugePages_Free:") >= 200,
        "fewer than 200 free 2 MiB hugepages: is another DPDK process holding them?"
    );
}

/// The workspace's release vswitchd, brought up to date once per test run
/// (`cargo build --release -p vswitch`: a no-op when it is fresh).
pub fn vswitchd_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release").join("vswitchd");
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
        let st = Command::new(cargo)
            .args(["build", "--release", "-p", "vswitch"])
            .current_dir(&root)
            .status()
            .expect("running cargo build --release -p vswitch");
        assert!(st.success(), "cargo build --release -p vswitch failed");
    });
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// A vswitchd on a temp control socket, with its own state dir.
pub struct Switch {
    child: Child,
    pub dir: PathBuf,
    pub sock: String,
    log: PathBuf,
    /// The EAL file prefix, kept for restarts.
    prefix: String,
    /// Extra vswitchd arguments ([`Switch::start_with`]), kept for restarts.
    extra: Vec<String>,
}

impl Switch {
    pub fn start() -> Switch {
        Switch::start_with(&[])
    }

    /// [`Switch::start`] with more vswitchd arguments (e.g. `--mbufs N`),
    /// which [`Switch::restart`] passes again.
    pub fn start_with(extra: &[String]) -> Switch {
        let n = unique();
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/vswcni-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test dir");
        let sock = dir.join("ctl.sock").to_string_lossy().into_owned();
        let log = dir.join("vswitchd.log");
        let logf = std::fs::File::create(&log).expect("creating the log");
        let child = Command::new(vswitchd_binary())
            .args(["--socket", &sock])
            .args(["--file-prefix", &format!("vswcni{pid}x{n}")])
            .args(["--lcores", "0@0,1@1"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--node", "cni-test-node"])
            .args(extra)
            .env("VSWITCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log fd"))
            .stderr(logf)
            .spawn()
            .expect("spawning vswitchd");
        let mut sw = Switch {
            child,
            dir,
            sock,
            log,
            prefix: format!("vswcni{pid}x{n}"),
            extra: extra.to_vec(),
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
                sw.sock
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sw
    }

    /// The directory vswitchd keeps its durable state (`ipam.json`) in.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The running vswitchd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs vswitchd (no cleanup of any kind) and reaps it.
    pub fn kill9(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }

    /// Starts vswitchd again (after [`Switch::kill9`] or [`Switch::stop`])
    /// with the same control socket, state dir, node name and EAL file
    /// prefix, appending to the same log, and waits until it serves its
    /// socket. An error (with the log's tail) when it exits or does not
    /// serve within [`TIMEOUT`].
    pub fn restart(&mut self) -> Result<(), String> {
        if matches!(self.child.try_wait(), Ok(None)) {
            return Err(format!(
                "vswitchd (pid {}) is still running",
                self.child.id()
            ));
        }
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        let out = logf.try_clone().map_err(|e| format!("log fd: {e}"))?;
        self.child = Command::new(vswitchd_binary())
            .args(["--socket", &self.sock])
            .args(["--file-prefix", &self.prefix])
            .args(["--lcores", "0@0,1@1"])
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--node", "cni-test-node"])
            .args(&self.extra)
            .env("VSWITCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("spawning vswitchd: {e}"))?;
        let end = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "restarted vswitchd exited ({st}) before serving its socket:\n{}",
                    self.log_tail(40)
                ));
            }
            if Client::connect(&self.sock).is_ok() {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!(
                    "restarted vswitchd did not open {} in time:\n{}",
                    self.sock,
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("--- {} ---\n{}", self.log.display(), tail(&text, lines))
    }

    pub fn try_call(&self, req: &Request) -> Result<Reply, api::ClientError> {
        Client::connect(&self.sock)?.call(req)
    }

    pub fn call(&self, req: &Request) -> Reply {
        self.try_call(req)
            .unwrap_or_else(|e| panic!("{req:?}: {e}\n{}", self.log_tail(20)))
    }

    /// Applies one pool.
    pub fn apply_pool(&self, name: &str, cidr: &str, block_size: u8) {
        let doc = api::Desired {
            pools: vec![api::IpPool {
                block_size: Some(block_size),
                ..api::IpPool::new(name, cidr)
            }],
            ..Default::default()
        };
        assert_eq!(self.call(&Request::Apply { doc }), Reply::Done);
    }

    pub fn port_names(&self) -> BTreeSet<String> {
        match self.call(&Request::PortList {}) {
            Reply::Ports(v) => v.into_iter().map(|p| p.name).collect(),
            r => panic!("port-list: {r:?}"),
        }
    }

    /// The attachment of (container, ifname), or None when the switch has none.
    pub fn pod(&self, container_id: &str, ifname: &str) -> Option<api::Attachment> {
        match self.try_call(&Request::PodGet {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }) {
            Ok(Reply::Attachment(a)) => Some(a),
            Err(api::ClientError::Refused {
                code: api::ErrorCode::NotFound,
                ..
            }) => None,
            other => panic!("pod-get: {other:?}"),
        }
    }

    pub fn pods(&self) -> Vec<api::Attachment> {
        match self.call(&Request::PodList {}) {
            Reply::Attachments(v) => v,
            r => panic!("pod-list: {r:?}"),
        }
    }

    /// Addresses allocated in all blocks.
    pub fn allocated(&self) -> u64 {
        match self.call(&Request::BlockList {}) {
            Reply::Blocks(v) => v.iter().map(|b| b.allocated).sum(),
            r => panic!("block-list: {r:?}"),
        }
    }

    pub fn blocks(&self) -> Vec<api::BlockInfo> {
        match self.call(&Request::BlockList {}) {
            Reply::Blocks(v) => v,
            r => panic!("block-list: {r:?}"),
        }
    }

    /// Stops it (SIGTERM) and waits.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
    pub path: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("vswcni{}{tag}{}", std::process::id() % 100_000, unique());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("running ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        Netns {
            path: format!("/var/run/netns/{name}"),
            name,
        }
    }

    /// Runs a command in the namespace.
    pub fn exec(&self, cmd: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("running ip netns exec")
    }

    /// Interface names in the namespace.
    pub fn links(&self) -> BTreeSet<String> {
        let o = self.exec(&["ls", "/sys/class/net"]);
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    pub fn ping(&self, addr: &str) -> std::process::Output {
        self.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", addr])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The IPv4 address (without prefix) of the first IP entry of a result.
pub fn first_ip(result: &Value) -> String {
    let a = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address in {result}"));
    a.split('/').next().unwrap_or(a).to_owned()
}

/// The config with `prevResult` set, as a runtime builds it for the next
/// plugin of a chain, for CHECK and for DEL.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

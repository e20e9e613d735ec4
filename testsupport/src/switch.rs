//! A real vswitchd: started, asked, stopped, killed and restarted.

use crate::process::{tail, terminate};
use crate::{unique, TIMEOUT};
use api::{Client, FdbEntry, MacAddr, PortInfo, Reply, Request, Stats};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The vswitchd the tests run: `$VSWITCHD` when set (a script that built
/// it); for vswitch's own tests the one cargo built for them
/// (`CARGO_BIN_EXE_vswitchd`, which cargo also sets while the tests run);
/// else the workspace's release vswitchd, brought up to date once per
/// process with `cargo build --release -p vswitch --bin vswitchd` (a no-op
/// when it is fresh).
pub fn vswitchd() -> PathBuf {
    for var in ["VSWITCHD", "CARGO_BIN_EXE_vswitchd"] {
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = testkube::repo_root();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
            let st = Command::new(cargo)
                .args(["build", "--release", "-p", "vswitch", "--bin", "vswitchd"])
                .current_dir(&root)
                .status()
                .expect("running cargo build --release -p vswitch");
            assert!(st.success(), "cargo build --release -p vswitch failed");
            let bin = target.join("release").join("vswitchd");
            assert!(bin.exists(), "{} is missing", bin.display());
            bin
        })
        .clone()
}

/// How to start a vswitchd: its arguments beyond those every test switch
/// gets (its own control socket, EAL file prefix and state dir in a temp
/// dir of its own, lcores 0 and 1), and how its end is judged.
#[derive(Clone, Debug)]
pub struct Vswitchd {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    judge_exit: bool,
}

impl Default for Vswitchd {
    fn default() -> Vswitchd {
        Vswitchd::new()
    }
}

impl Vswitchd {
    /// No extra arguments; on drop, the switch must stop cleanly on SIGTERM.
    pub fn new() -> Vswitchd {
        Vswitchd {
            args: Vec::new(),
            envs: Vec::new(),
            judge_exit: true,
        }
    }

    /// More arguments (`--port ...`, `--aging 2`); `{dir}` in them stands
    /// for the switch's temp dir. A [`Switch::restart`] passes them again.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Vswitchd {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable for vswitchd (`VSWITCH_<FLAG>` stands for a
    /// flag); a [`Switch::restart`] passes it again.
    pub fn env(mut self, key: &str, value: &str) -> Vswitchd {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// vhost-server ports vhu0..vhu{n-1} (sockets `DIR/vhuI.sock`), added
    /// at start.
    pub fn vhost_ports(self, n: usize) -> Vswitchd {
        let flags: Vec<String> = (0..n)
            .flat_map(|i| {
                [
                    "--port".to_owned(),
                    format!("vhu{i}=vhost-server:{{dir}}/vhu{i}.sock"),
                ]
            })
            .collect();
        self.args(flags)
    }

    /// On drop, stop the switch (SIGTERM, SIGKILL after 10 s) without
    /// judging how it ends: for tests that kill and restart it themselves.
    /// By default a clean exit on SIGTERM is part of what is tested.
    pub fn any_exit(mut self) -> Vswitchd {
        self.judge_exit = false;
        self
    }

    /// Starts vswitchd and waits until it serves its control socket.
    pub fn start(self) -> Switch {
        let n = unique();
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/vswt-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the test dir");
        let dir_s = dir.to_string_lossy().into_owned();
        let log = dir.join("vswitchd.log");
        let logf = File::create(&log).expect("creating the log file");
        let mut sw = Switch {
            child: None,
            sock: dir.join("ctl.sock"),
            log,
            prefix: format!("vswt{pid}x{n}"),
            args: self
                .args
                .iter()
                .map(|a| a.replace("{dir}", &dir_s))
                .collect(),
            envs: self.envs,
            judge_exit: self.judge_exit,
            dir,
            binary: vswitchd(),
        };
        if let Err(e) = sw.spawn(logf).and_then(|()| sw.wait_serving()) {
            panic!("{e}");
        }
        sw
    }
}

/// A vswitchd process with its own temp dir, control socket, state dir and
/// EAL file prefix. Dropped, it is stopped with SIGTERM; unless made with
/// [`Vswitchd::any_exit`], it must then exit cleanly (the test fails
/// otherwise) and its dir is removed. A test that panics gets the tail of
/// its log.
pub struct Switch {
    /// None only while it is being started.
    child: Option<Child>,
    pub dir: PathBuf,
    pub sock: PathBuf,
    log: PathBuf,
    prefix: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    judge_exit: bool,
    /// The binary of the next (re)start: [`vswitchd`] unless
    /// [`Switch::restart_with`] named another.
    binary: PathBuf,
}

impl Switch {
    /// Starts vswitchd with `extra` arguments (see [`Vswitchd::args`]) and
    /// waits for its control socket.
    pub fn start(extra: &[&str]) -> Switch {
        Vswitchd::new().args(extra).start()
    }

    /// Starts a switch with vhost-server ports vhu0..vhu{n-1} (sockets
    /// `DIR/vhuI.sock`) added at start, plus `extra` arguments.
    pub fn start_with_vhost(n: usize, extra: &[&str]) -> Switch {
        Vswitchd::new().vhost_ports(n).args(extra).start()
    }

    fn spawn(&mut self, logf: File) -> Result<(), String> {
        let out = logf.try_clone().map_err(|e| format!("log fd: {e}"))?;
        let child = Command::new(&self.binary)
            .arg("--socket")
            .arg(&self.sock)
            .args(["--file-prefix", &self.prefix])
            .args(["--lcores", "0@0,1@1"])
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--vhost-socket-root")
            .arg(&self.dir)
            .args(&self.args)
            .env("VSWITCH_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("spawning vswitchd: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("a started switch has a process")
    }

    /// Waits until vswitchd serves its control socket: an error (with the
    /// log's tail) when it exits first or does not within [`TIMEOUT`].
    fn wait_serving(&mut self) -> Result<(), String> {
        let end = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(st)) = self.child().try_wait() {
                return Err(format!(
                    "vswitchd exited ({st}) before serving its socket:\n{}",
                    self.log_tail(40)
                ));
            }
            if Client::connect(&self.sock).is_ok() {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!(
                    "vswitchd did not open {} in time:\n{}",
                    self.sock.display(),
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The directory vswitchd keeps its durable state (`ipam.json`) in.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A vhost-user socket path in the switch's dir.
    pub fn vhost_path(&self, name: &str) -> String {
        self.dir
            .join(format!("{name}.sock"))
            .to_string_lossy()
            .into_owned()
    }

    /// The running vswitchd's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILLs vswitchd (no cleanup of any kind) and reaps it.
    pub fn kill9(&mut self) {
        let child = self.child();
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Stops it (SIGTERM, SIGKILL after 10 s) and waits.
    pub fn stop(&mut self) {
        let _ = terminate(self.child(), Signal::SIGTERM, Duration::from_secs(10));
    }

    /// Starts vswitchd again (after [`Switch::kill9`] or [`Switch::stop`])
    /// with the same control socket, state dir, EAL file prefix and
    /// arguments, appending to the same log, and waits until it serves its
    /// socket. An error (with the log's tail) when it exits or does not
    /// serve within [`TIMEOUT`].
    pub fn restart(&mut self) -> Result<(), String> {
        let binary = self.binary.clone();
        self.restart_with(&binary)
    }

    /// [`Switch::restart`] from another binary: an upgrade as a DaemonSet
    /// makes one (stop, replace, start).
    pub fn restart_with(&mut self, binary: &Path) -> Result<(), String> {
        self.binary = binary.to_owned();
        let pid = self.pid();
        if matches!(self.child().try_wait(), Ok(None)) {
            return Err(format!("vswitchd (pid {pid}) is still running"));
        }
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("opening {}: {e}", self.log.display()))?;
        self.spawn(logf)?;
        self.wait_serving().map_err(|e| format!("restarted: {e}"))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "--- {} (last {lines} lines) ---\n{}",
            self.log.display(),
            tail(&text, lines)
        )
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.sock).unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail(20)))
    }

    pub fn try_call(&self, req: &Request) -> Result<Reply, api::ClientError> {
        Client::connect(&self.sock)?.call(req)
    }

    /// Sends a request that must succeed.
    pub fn call(&self, req: &Request) -> Reply {
        self.try_call(req)
            .unwrap_or_else(|e| panic!("{req:?}: {e}\n{}", self.log_tail(20)))
    }

    /// `status`, as `vsctl status` shows it.
    pub fn status(&self) -> api::Status {
        match self.call(&Request::Status {}) {
            Reply::Status(s) => s,
            r => panic!("status: {r:?}"),
        }
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
        let mac: MacAddr = mac.parse().unwrap_or_else(|e| panic!("MAC {mac:?}: {e}"));
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

    pub fn port_names(&self) -> BTreeSet<String> {
        self.ports().into_iter().map(|p| p.name).collect()
    }

    /// Waits until the switch sees port `name`'s link in state `up`.
    pub fn wait_link(&self, name: &str, up: bool) {
        crate::wait_for(
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

    fn add_port(&self, spec: api::PortSpec) -> PortInfo {
        let name = spec.name.clone();
        match self.call(&Request::PortAdd { port: spec }) {
            Reply::Ports(mut v) if v.len() == 1 => v.remove(0),
            r => panic!("port-add {name}: unexpected reply {r:?}"),
        }
    }

    /// Adds vhost-server port `name` at `DIR/name.sock`.
    pub fn add_vhost(&self, name: &str) -> PortInfo {
        self.add_port(api::PortSpec {
            name: name.to_owned(),
            kind: api::PortKind::VhostServer,
            path: Some(self.vhost_path(name)),
            iface: None,
            pci: None,
        })
    }

    /// Adds TAP port `name` on a new kernel interface ([`crate::tap_name`]);
    /// returns the interface's name.
    pub fn add_tap(&self, name: &str) -> String {
        let iface = crate::tap_name();
        self.add_port(api::PortSpec {
            name: name.to_owned(),
            kind: api::PortKind::Tap,
            path: None,
            iface: Some(iface.clone()),
            pci: None,
        });
        iface
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

    pub fn blocks(&self) -> Vec<api::BlockInfo> {
        match self.call(&Request::BlockList {}) {
            Reply::Blocks(v) => v,
            r => panic!("block-list: {r:?}"),
        }
    }

    /// Addresses allocated in all blocks.
    pub fn allocated(&self) -> u64 {
        self.blocks().iter().map(|b| b.allocated).sum()
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let ended = match self.child.as_mut() {
            Some(c) => terminate(c, Signal::SIGTERM, Duration::from_secs(10)),
            None => return,
        };
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(60));
            return;
        }
        if self.judge_exit {
            // a clean stop on SIGTERM is part of what is tested
            match ended {
                Ok(st) if st.success() => {}
                Ok(st) => panic!(
                    "vswitchd exited with {st} on SIGTERM\n{}",
                    self.log_tail(40)
                ),
                Err(e) => panic!("vswitchd: {e}\n{}", self.log_tail(40)),
            }
        }
        self.remove_left_taps();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Switch {
    /// Pods' TAPs outlive vswitchd (a restart takes them up again). Those
    /// that never moved into a pod's namespace would stay on the host after
    /// the test: its record of pods names them.
    fn remove_left_taps(&self) {
        let Ok(text) = std::fs::read_to_string(self.state_dir().join("pods.json")) else {
            return;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return;
        };
        for pod in v["pods"].as_array().into_iter().flatten() {
            if let Some(iface) = pod["attachment"]["iface"].as_str() {
                let _ = Command::new("ip")
                    .args(["link", "del", iface])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Attaches pod `default/{cid}` (interface eth0) as the CNI plugin does,
/// with addresses from the switch's IPAM; a vhost attachment gets its
/// socket in `DIR/pods/{cid}`.
pub fn attach_pod(sw: &Switch, cid: &str, kind: api::AttachKind) -> api::Attachment {
    let socket_dir =
        (kind == api::AttachKind::Vhost).then(|| format!("{}/pods/{cid}", sw.dir.display()));
    match sw.call(&Request::PodAttach {
        attach: api::PodAttach {
            container_id: cid.into(),
            ifname: "eth0".into(),
            network: None,
            kind,
            pod: Some(format!("default/{cid}")),
            pools: vec![],
            ips: None,
            socket_dir,
            netns: None,
            vhost_mode: None,
        },
    }) {
        Reply::Attachment(a) => a,
        r => panic!("pod-attach {cid}: {r:?}"),
    }
}

/// [`attach_pod`] of kind TAP.
pub fn attach_tap(sw: &Switch, cid: &str) -> api::Attachment {
    attach_pod(sw, cid, api::AttachKind::Tap)
}

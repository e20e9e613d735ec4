//! A real Kubernetes API server for tests: kube-apiserver 1.20.2 with etcd,
//! built from Debian's `kubernetes` source package by the repository's
//! `scripts/kube-apiserver.sh`.
//!
//! The server listens on fixed ports (6443, etcd 2379/2380), so one test at a
//! time on this host may hold it: [`KubeServer::start`] takes an exclusive
//! lock on a file that other test processes (of any crate) wait for. The
//! built binary is cached in [`cache_dir`] and built when missing (about five
//! minutes on two cores). Each start wipes etcd: a test sees an empty cluster
//! plus the CRDs of `deploy/crds`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the built server is kept between runs (`$VSWITCH_KUBE_DIR`, else
/// `/var/cache/vswitch/kube-apiserver`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VSWITCH_KUBE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/vswitch/kube-apiserver"))
}

/// The repository root (the directory holding `deploy/`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// `kube-apiserver.sh`: `$KUBE_APISERVER_SH` if set, else the repository's
/// `scripts/kube-apiserver.sh`.
pub fn apiserver_script() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBE_APISERVER_SH") {
        return PathBuf::from(p);
    }
    let p = repo_root().join("scripts/kube-apiserver.sh");
    assert!(
        p.is_file(),
        "no {}: the repository's API server script is missing",
        p.display()
    );
    p
}

/// Debian's kubectl, fetched by `deploy/kubectl.sh` when missing.
pub fn kubectl_path() -> PathBuf {
    let out = Command::new(repo_root().join("deploy/kubectl.sh"))
        .arg("--path")
        .output()
        .expect("running deploy/kubectl.sh --path");
    assert!(
        out.status.success(),
        "deploy/kubectl.sh --path failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A running API server, held exclusively until dropped (which stops it).
pub struct KubeServer {
    dir: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    home: PathBuf,
    _lock: File,
}

const LOCK: &str = "/run/vswitch-test-kube-apiserver.lock";

impl KubeServer {
    /// Waits for the host's server lock, builds the server if needed, wipes
    /// etcd, starts etcd and the API server, waits until it is ready and
    /// creates the CRDs of `deploy/crds`. Panics with the reason on failure.
    pub fn start() -> KubeServer {
        let lock = File::create(LOCK).unwrap_or_else(|e| panic!("{LOCK}: {e} (run as root)"));
        lock.lock()
            .unwrap_or_else(|e| panic!("locking {LOCK}: {e}"));
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if !dir.join("kube-apiserver").is_file() {
            build(&dir);
        }
        let home = dir.join("run/home");
        std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
        let s = KubeServer {
            kubeconfig: dir.join("run/kubeconfig"),
            kubectl: kubectl_path(),
            home,
            dir,
            _lock: lock,
        };
        // whatever a killed test left behind
        s.stop_server();
        let _ = std::fs::remove_dir_all(s.dir.join("run/etcd"));
        s.start_server();
        s.apply_crds();
        s
    }

    /// The kubeconfig of the admin user (a token, TLS not verified).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Starts etcd and the API server on the data there is, and waits until
    /// the server answers `/readyz`.
    pub fn start_server(&self) {
        for port in [6443u16, 2379, 2380] {
            wait_port_free(port);
        }
        let out = Command::new("bash")
            .arg(apiserver_script())
            .arg("start")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .status()
            .expect("running kube-apiserver.sh start");
        assert!(out.success(), "kube-apiserver.sh start failed");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let o = self.kubectl(&["get", "--raw", "/readyz"]);
            if o.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver did not become ready: {}\n{}",
                String::from_utf8_lossy(&o.stderr),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Stops the API server and etcd (their data stays) and waits until
    /// both are gone.
    pub fn stop_server(&self) {
        for name in ["apiserver", "etcd"] {
            let pidfile = self.dir.join(format!("run/{name}.pid"));
            let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = std::fs::remove_file(&pidfile);
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the API server: a stopped
    /// server takes connections and answers nothing, so its clients wait.
    pub fn signal_server(&self, signal: &str) {
        let pidfile = self.dir.join("run/apiserver.pid");
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.trim())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} of the API server failed");
    }

    /// Runs kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .args(["--request-timeout=30s"])
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl and panics unless it succeeds; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a YAML text.
    pub fn apply(&self, yaml: &str) -> String {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml)
    }

    /// Runs kubectl with `input` on stdin and panics unless it succeeds.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .args(["--request-timeout=30s"])
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        if let Some(mut i) = child.stdin.take() {
            i.write_all(input.as_bytes()).expect("writing to kubectl");
        }
        let o = child.wait_with_output().expect("waiting for kubectl");
        assert!(
            o.status.success(),
            "kubectl {}: {}\ninput:\n{input}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Creates the CRDs of `deploy/crds` and waits until they are served.
    pub fn apply_crds(&self) {
        let crds = repo_root().join("deploy/crds");
        self.kubectl_ok(&["apply", "-f", &crds.to_string_lossy()]);
        self.kubectl_ok(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=60s",
            "crd",
            "--all",
        ]);
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("run/apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        self.stop_server();
    }
}

fn wait_port_free(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "port {port} stays in use (a kube-apiserver or etcd not started by this harness?)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn build(dir: &Path) {
    eprintln!(
        "building kube-apiserver 1.20.2 into {} (about 5 minutes)",
        dir.display()
    );
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "apt-get update failed (building kube-apiserver needs Debian's archive)"
    );
    let st = Command::new("bash")
        .arg(apiserver_script())
        .arg("build")
        .arg(dir)
        .status()
        .expect("running kube-apiserver.sh build");
    assert!(
        st.success() && dir.join("kube-apiserver").is_file(),
        "building kube-apiserver failed (see {}/build.log)",
        dir.display()
    );
}

//! The host: root and tools, hugepages, one test at a time, waiting.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// How long a testpmd command, a link or the control socket may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The file every test process locks while a test runs (see [`serial`]).
const LOCK_FILE: &str = "/tmp/vswitch-tests.lock";

/// Hugepages (2 MiB) a test needs at most at once: a switch's 256 MiB plus
/// four pods of 128 MiB, with some slack.
const HUGEPAGES_NEEDED: u64 = 400;

static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A number unique within this test process.
pub fn unique() -> usize {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Held while a test runs: this process's mutex and a file lock shared by
/// every test process on the host (nextest runs each test in a process of
/// its own, and other crates' tests start switches too).
pub struct Serial {
    _file: nix::fcntl::Flock<std::fs::File>,
    _guard: MutexGuard<'static, ()>,
}

/// One test at a time: each starts its own switch and pods, and two sets
/// would starve each other on two CPUs.
pub fn serial() -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("opening {LOCK_FILE}: {e}"));
    let file = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking {LOCK_FILE}: {e}"));
    Serial {
        _file: file,
        _guard: guard,
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails unless we are root and `ip`, `ping` and `python3` are installed;
/// reserves and mounts hugepages once per process.
///
/// The tests that need this do not skip themselves when run as another
/// user: they fail and say why.
pub fn must_be_root() {
    assert!(
        is_root(),
        "this test needs root (hugepages, vhost-user sockets, network namespaces, TAP devices): \
         run it as root, e.g. `sudo -E cargo test --release -p vswitch --test l2_dpdk`"
    );
    need_tools(&["ip", "ping", "python3"]);
    static HUGE: Once = Once::new();
    HUGE.call_once(setup_hugepages);
}

/// Fails unless every tool is on PATH or in the usual system directories.
pub fn need_tools(tools: &[&str]) {
    for tool in tools {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        let in_system = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).is_file());
        assert!(
            on_path || in_system,
            "{tool} is not installed (apt-get install dpdk coreutils iproute2 iputils-ping python3)"
        );
    }
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
        std::fs::write("/proc/sys/vm/nr_hugepages", "1024").unwrap_or_else(|e| {
            panic!("cannot reserve hugepages (/proc/sys/vm/nr_hugepages): {e}")
        });
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
    let free = meminfo("HugePages_Free:");
    assert_eq!(
        meminfo("Hugepagesize:"),
        2048,
        "these tests expect 2 MiB hugepages"
    );
    assert!(
        free >= HUGEPAGES_NEEDED,
        "only {free} free 2 MiB hugepages, these tests need {HUGEPAGES_NEEDED}: \
         is another DPDK process holding them?"
    );
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metric names the Grafana dashboard in `deploy/grafana/` queries
/// (every `vswitch_...` name in its panels' expressions), sorted, once each.
pub fn dashboard_metrics() -> Vec<String> {
    let path = testkube::repo_root().join("deploy/grafana/vswitch-dashboard.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut names = Vec::new();
    for panel in v["panels"].as_array().into_iter().flatten() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            let mut rest = expr;
            while let Some(i) = rest.find("vswitch_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.push(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    names.sort();
    names.dedup();
    assert!(!names.is_empty(), "the dashboard queries no vswitch metric");
    names
}

/// A TCP port free now on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

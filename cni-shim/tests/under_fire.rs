//! IPAM under fire, as root: 200 ADDs from 8 concurrent `vswitch-cni`
//! processes (each pod with a real network namespace), while vswitchd is
//! SIGKILLed at random moments and restarted with the same state dir and
//! control socket. Each worker keeps at most 3 pods live: before its 4th it
//! DELs its oldest (a normal CNI DEL, retried like an ADD), so about 176 DELs
//! run beside the ADDs, addresses are freed and handed out again, and at most
//! 24 pods are attached at once (the switch holds 32 ports: Debian's DPDK has
//! `RTE_MAX_ETHPORTS=32`). Then, of the pods left, half are deleted, a
//! quarter die without a DEL (their netns is simply removed), and the
//! runtime's GC runs.
//!
//! What must hold:
//! - every pod gets a successful ADD and every DEL succeeds (after retries of
//!   the errors a killed vswitchd causes), and no address is handed to a pod
//!   while another pod still has it: an address goes to another pod only
//!   after the DEL of its holder began; and some address is reused;
//! - a retried ADD of a pod whose failed ADD had left an address claimed in
//!   IPAM gets that very address back (IPAM is idempotent per handle);
//! - each time `ipam.json` (the IPAM state on disk) is read — by a worker
//!   after each of its ADDs and DELs, and after the fire, the DELs and the
//!   GC — it holds each address at most once, each live pod's handle holds
//!   exactly the address its last ADD returned, each DELed pod's handle holds
//!   nothing (also when its DEL ran against a restarted vswitchd that never
//!   had the attachment: the address is freed by the handle), no handle that
//!   is no pod's holds anything, and never more than 24 addresses are held;
//! - DEL is idempotent: some DELs are repeated, and succeed;
//! - after GC no address is held by a handle that is not live, the dead
//!   pods' ports are gone, and the live pods keep their addresses.
//!
//! Run with `sudo -E cargo test -p cni-shim --release --test under_fire`.
//! It fails, not skips, when not root. vswitchd runs with its defaults.
//! `UNDER_FIRE_SEED=N` replays the random choices (kill moments, retry
//! delays) of a run; each run prints its seed. `UNDER_FIRE_PODS_PER_WORKER=N`
//! (default 25) runs it smaller or bigger; the ≥5 kills it asserts need
//! enough ADDs to land in.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WORKERS: usize = 8;
/// Pods per worker: 25, so 200 ADDs (`UNDER_FIRE_PODS_PER_WORKER` overrides).
const PODS_PER_WORKER: usize = 25;
/// Live pods per worker at most: before another ADD, the oldest is DELed.
/// 8 × 3 = 24 attachments at once, within the switch's 32 ports.
const LIVE_PER_WORKER: usize = 3;
/// Every this many DELs of a worker, the DEL is run once more: it must
/// succeed and change nothing (CNI DEL is idempotent).
const REPEAT_DEL_EVERY: usize = 5;
const POOL: &str = "fire-pool";
const POOL_CIDR: &str = "10.71.0.0/24";
const POOL_NET: u32 = 0x0a47_0000; // 10.71.0.0
const BLOCK_SIZE: u8 = 26;
const NETWORK: &str = "firenet";
const IFNAME: &str = "eth0";
/// Calico's handle name: `k8s-pod-network.<containerID>`, here with `:IFNAME`.
const HANDLE_PREFIX: &str = "k8s-pod-network.";
/// SIGKILLs of vswitchd: at least, at most.
const KILLS: (u64, u64) = (5, 8);
/// How long the ADD/DEL phase may take before a pod counts as failed for good.
const FIRE_DEADLINE: Duration = Duration::from_secs(100);
/// CNI codes a runtime retries with the same container ID: 11 (vswitchd not
/// reachable), 5 (the connection broke), 101 (the TAP vanished while being
/// wired, with the vswitchd that owned it); and 103 when the reply was cut
/// short (see [`retried`]). Anything else fails the test at once.
const RETRIED: [u64; 3] = [5, 11, 101];

/// Whether a runtime would retry a failed ADD with this error: the
/// connection-level failures a killed vswitchd causes, not its refusals.
fn retried(code: u64, msg: &str) -> bool {
    RETRIED.contains(&code) || (code == 103 && msg.contains("does not understand"))
}

/// Whether a runtime would retry a failed DEL: vswitchd unreachable (11),
/// the connection broke (5) or the reply was cut short (103). There is no
/// wiring in a DEL, so no 101.
fn del_retried(code: u64, msg: &str) -> bool {
    code == 5 || code == 11 || (code == 103 && msg.contains("does not understand"))
}

fn pods_per_worker() -> usize {
    match std::env::var("UNDER_FIRE_PODS_PER_WORKER") {
        Ok(s) => s
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("UNDER_FIRE_PODS_PER_WORKER={s}: not a positive number")),
        Err(_) => PODS_PER_WORKER,
    }
}

/// xorshift64*: no dependency, replayable from the printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

fn seed() -> u64 {
    match std::env::var("UNDER_FIRE_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("UNDER_FIRE_SEED={s}: {e}")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            t ^ (u64::from(std::process::id()) << 32)
        }
    }
}

fn conf(sock: &str) -> Value {
    json!({"cniVersion": "1.1.0", "name": NETWORK, "type": "vswitch-cni", "socket": sock})
}

fn pod_id(w: usize, i: usize) -> String {
    format!("fire{}w{w}p{i}", std::process::id())
}

fn handle(container_id: &str) -> String {
    format!("{HANDLE_PREFIX}{container_id}:{IFNAME}")
}

/// One allocation in `ipam.json`.
#[derive(Debug, Clone)]
struct Held {
    addr: Ipv4Addr,
    handle: String,
    node: String,
    block: String,
}

/// Every allocation of the IPAM state file, read as a person would read it:
/// `{schema, revision, pools, blocks: [{cidr, affinity, allocations:
/// {"ordinal": {handle, node, attributes}}}]}`. Panics on a file that does
/// not have that shape, on an ordinal outside its block and on blocks that
/// overlap; the caller judges the allocations. (vswitchd replaces the file
/// by rename, so every read sees one whole version.)
fn ipam_file(state_dir: &Path) -> Vec<Held> {
    let path = state_dir.join("ipam.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()));
    assert_eq!(doc["schema"], 1, "{}: schema", path.display());
    let blocks = doc["blocks"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no blocks list", path.display()));
    let mut ranges: Vec<(u32, u32, String)> = Vec::new();
    let mut out = Vec::new();
    for b in blocks {
        let cidr = b["cidr"].as_str().expect("block cidr").to_owned();
        let (net, len) = cidr.split_once('/').expect("a CIDR");
        let net: Ipv4Addr = net.parse().expect("an IPv4 block");
        let len: u32 = len.parse().expect("a prefix length");
        let size = 1u32 << (32 - len);
        let base = u32::from(net);
        for (lo, hi, other) in &ranges {
            assert!(
                base + size <= *lo || base >= *hi,
                "blocks {cidr} and {other} overlap in {}",
                path.display()
            );
        }
        ranges.push((base, base + size, cidr.clone()));
        let Some(allocs) = b.get("allocations") else {
            continue;
        };
        for (ord, a) in allocs.as_object().expect("allocations is an object") {
            let ord: u32 = ord.parse().expect("an ordinal");
            assert!(ord < size, "ordinal {ord} outside block {cidr}");
            out.push(Held {
                addr: Ipv4Addr::from(base + ord),
                handle: a["handle"].as_str().expect("handle").to_owned(),
                node: a["node"].as_str().expect("node").to_owned(),
                block: cidr.clone(),
            });
        }
    }
    out
}

/// Addresses per handle; an error if an address is held twice.
fn try_by_handle(held: &[Held]) -> Result<BTreeMap<String, Vec<Ipv4Addr>>, String> {
    let mut seen: BTreeMap<Ipv4Addr, &Held> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for h in held {
        if let Some(first) = seen.insert(h.addr, h) {
            return Err(format!("IPAM holds {} twice: {first:?} and {h:?}", h.addr));
        }
        out.entry(h.handle.clone()).or_default().push(h.addr);
    }
    Ok(out)
}

/// Addresses per handle; panics if an address is held twice.
fn by_handle(held: &[Held]) -> BTreeMap<String, Vec<Ipv4Addr>> {
    try_by_handle(held).unwrap_or_else(|e| panic!("{e}"))
}

/// What the IPAM state holds for one handle, right now.
fn held_by(state_dir: &Path, handle: &str) -> Vec<Ipv4Addr> {
    ipam_file(state_dir)
        .into_iter()
        .filter(|h| h.handle == handle)
        .map(|h| h.addr)
        .collect()
}

/// One pod of the test and what happened to it.
struct Pod {
    id: String,
    ns: Option<Netns>,
    /// The result of its last successful ADD.
    result: Option<Value>,
    ip: Option<Ipv4Addr>,
    /// ADD invocations.
    adds: u32,
    /// (code, message) of each failed ADD.
    failures: Vec<(u64, String)>,
    /// What IPAM held for the pod's handle after its last failed ADD.
    held_after_failure: Option<Vec<Ipv4Addr>>,
    /// Its successful ADD got back the address a failed one had claimed.
    reclaimed: bool,
    /// When its successful ADD returned.
    added_at: Option<Instant>,
    /// vswitchd restarts before its successful ADD returned.
    add_gen: usize,
    /// DEL invocations (the repeated DEL included).
    dels: u32,
    /// (code, message) of each failed DEL.
    del_failures: Vec<(u64, String)>,
    /// When its first DEL began: from then on its address may be freed.
    del_started: Option<Instant>,
    /// Its DEL succeeded (the address must be free from then on).
    deleted: bool,
    /// The vswitchd that attached it was killed before its DEL began: the
    /// DEL ran against one that never had the attachment.
    del_after_restart: bool,
    /// A problem that fails the test (a fatal error, a changed address).
    problem: Option<String>,
}

impl Pod {
    fn new(id: String) -> Pod {
        Pod {
            id,
            ns: None,
            result: None,
            ip: None,
            adds: 0,
            failures: Vec::new(),
            held_after_failure: None,
            reclaimed: false,
            added_at: None,
            add_gen: 0,
            dels: 0,
            del_failures: Vec::new(),
            del_started: None,
            deleted: false,
            del_after_restart: false,
            problem: None,
        }
    }

    /// Has an address from a successful ADD and has not been DELed.
    fn live(&self) -> bool {
        self.ip.is_some() && !self.deleted
    }
}

struct Shared<'a> {
    /// Pods (ADDs) in all.
    pods: usize,
    per_worker: usize,
    sock: &'a str,
    state_dir: &'a Path,
    deadline: Instant,
    /// Pods whose ADD is over (succeeded or failed for good).
    done: AtomicUsize,
    /// vswitchd kills so far.
    gen: AtomicUsize,
    /// Pods from the start of their first ADD to the end of their DEL.
    in_play: AtomicUsize,
    max_in_play: AtomicUsize,
    /// The most addresses one read of ipam.json showed.
    max_held: AtomicUsize,
    /// ipam.json reads by the workers.
    checks: AtomicUsize,
    /// What a worker found wrong in ipam.json.
    violations: Mutex<Vec<String>>,
    /// Set when something went wrong for good: the workers stop.
    abort: AtomicBool,
}

impl Shared<'_> {
    fn violation(&self, msg: String) {
        self.violations.lock().unwrap().push(msg);
        self.abort.store(true, Ordering::SeqCst);
    }
}

/// Every handle a pod of this run can have.
fn known_handles(per_worker: usize) -> BTreeSet<String> {
    (0..WORKERS)
        .flat_map(|w| (0..per_worker).map(move |i| handle(&pod_id(w, i))))
        .collect()
}

/// A worker's look at `ipam.json` between two of its own steps: no address
/// held twice, no handle that is no pod's, at most the addresses that the
/// pods in play can hold, and for this worker's pods (none of which has a
/// command running): each live one holds exactly the address its ADD
/// returned, each DELed one nothing, each that failed for good nothing.
fn check_own(sh: &Shared, known: &BTreeSet<String>, pods: &[Pod], when: &str) {
    sh.checks.fetch_add(1, Ordering::Relaxed);
    let held = ipam_file(sh.state_dir);
    sh.max_held.fetch_max(held.len(), Ordering::Relaxed);
    let handles = match try_by_handle(&held) {
        Ok(h) => h,
        Err(e) => return sh.violation(format!("{when}: {e}")),
    };
    let mut wrong = Vec::new();
    if held.len() > WORKERS * LIVE_PER_WORKER {
        wrong.push(format!(
            "IPAM holds {} addresses, but at most {} pods can hold one",
            held.len(),
            WORKERS * LIVE_PER_WORKER
        ));
    }
    for (h, a) in &handles {
        if !known.contains(h) {
            wrong.push(format!("{h} is no pod's handle but holds {a:?}"));
        }
    }
    for h in &held {
        if h.node != NODE {
            wrong.push(format!("an allocation of another node: {h:?}"));
        }
    }
    for p in pods {
        let h = handle(&p.id);
        let got = handles.get(&h).cloned().unwrap_or_default();
        let want = match (p.ip, p.deleted, p.failures.last()) {
            (Some(_), true, _) => Some(Vec::new()),
            (Some(ip), false, _) => Some(vec![ip]),
            // failed for good, not for want of vswitchd: a failed ADD leaves nothing
            (None, _, Some((code, msg))) if !retried(*code, msg) => Some(Vec::new()),
            _ => None,
        };
        if let Some(want) = want {
            if got != want {
                wrong.push(format!(
                    "{h} holds {got:?}, but it should hold {want:?} ({})",
                    if p.deleted {
                        "its DEL succeeded"
                    } else if p.ip.is_some() {
                        "what its last ADD returned"
                    } else {
                        "its ADD failed"
                    }
                ));
            }
        }
    }
    if !wrong.is_empty() {
        sh.violation(format!(
            "{when}: ipam.json is wrong:\n  {}",
            wrong.join("\n  ")
        ));
    }
}

/// ADDs a pod until it succeeds (retrying what a runtime retries).
fn add_pod(pod: &mut Pod, ns: &Netns, pod_args: &str, c: &Value, rng: &mut Rng, sh: &Shared) {
    loop {
        if sh.abort.load(Ordering::SeqCst) {
            pod.problem = Some("aborted: something else went wrong".into());
            return;
        }
        let mut call = Call::new(&pod.id, &ns.path);
        call.ifname = IFNAME;
        call.args = pod_args;
        pod.adds += 1;
        let run = call.run("ADD", c);
        if run.success {
            let r: Value = match serde_json::from_str(run.stdout.trim()) {
                Ok(v) => v,
                Err(e) => {
                    pod.problem = Some(format!("ADD succeeded with no JSON ({e}): {run:?}"));
                    return;
                }
            };
            let addr = r["ips"][0]["address"].as_str().unwrap_or("");
            let ip: Ipv4Addr = match addr.split('/').next().unwrap_or("").parse() {
                Ok(ip) => ip,
                Err(e) => {
                    pod.problem = Some(format!("ADD result without an IPv4 address ({e}): {r}"));
                    return;
                }
            };
            pod.added_at = Some(Instant::now());
            pod.add_gen = sh.gen.load(Ordering::SeqCst);
            if let Some(held) = &pod.held_after_failure {
                if !held.is_empty() && held != &vec![ip] {
                    pod.problem = Some(format!(
                        "IPAM held {held:?} for {} after its failed ADD, but the retried ADD \
                         returned {ip}: IPAM is not idempotent per handle",
                        handle(&pod.id)
                    ));
                }
                pod.reclaimed = held == &vec![ip];
            }
            pod.ip = Some(ip);
            pod.result = Some(r);
            return;
        }
        let (code, msg) = match serde_json::from_str::<Value>(run.stdout.trim()) {
            Ok(v) if v["code"].is_u64() => (
                v["code"].as_u64().unwrap_or(0),
                format!("{} {}", v["msg"], v["details"]),
            ),
            _ => {
                pod.problem = Some(format!("ADD failed without a CNI error object: {run:?}"));
                return;
            }
        };
        pod.failures.push((code, msg.clone()));
        if !retried(code, &msg) {
            pod.problem = Some(format!("ADD failed with code {code}, not retried: {msg}"));
            return;
        }
        if Instant::now() >= sh.deadline {
            pod.problem = Some(format!(
                "ADD still failing at the deadline ({} ADDs), last code {code}: {msg}",
                pod.adds
            ));
            return;
        }
        // what the failed ADD left claimed: the retry must get exactly that
        pod.held_after_failure = Some(held_by(sh.state_dir, &handle(&pod.id)));
        std::thread::sleep(rng.millis(50, 250));
    }
}

/// One DEL of a pod, retried until it succeeds (what a runtime does); its
/// address must be free right after.
fn del_pod(pod: &mut Pod, c: &Value, rng: &mut Rng, sh: &Shared) -> Result<(), String> {
    let ns = pod.ns.as_ref().expect("a netns");
    let conf = with_prev(c, pod.result.as_ref().expect("a result"));
    loop {
        if sh.abort.load(Ordering::SeqCst) {
            return Err("aborted: something else went wrong".into());
        }
        let mut call = Call::new(&pod.id, &ns.path);
        call.ifname = IFNAME;
        pod.dels += 1;
        let run = call.run("DEL", &conf);
        if run.success {
            if !run.stdout.trim().is_empty() {
                return Err(format!("DEL succeeded but printed something: {run:?}"));
            }
            break;
        }
        let (code, msg) = match serde_json::from_str::<Value>(run.stdout.trim()) {
            Ok(v) if v["code"].is_u64() => (
                v["code"].as_u64().unwrap_or(0),
                format!("{} {}", v["msg"], v["details"]),
            ),
            _ => return Err(format!("DEL failed without a CNI error object: {run:?}")),
        };
        pod.del_failures.push((code, msg.clone()));
        if !del_retried(code, &msg) {
            return Err(format!("DEL failed with code {code}, not retried: {msg}"));
        }
        if Instant::now() >= sh.deadline {
            return Err(format!(
                "DEL still failing at the deadline ({} DELs), last code {code}: {msg}",
                pod.dels
            ));
        }
        std::thread::sleep(rng.millis(50, 250));
    }
    let h = handle(&pod.id);
    let held = held_by(sh.state_dir, &h);
    if !held.is_empty() {
        sh.violation(format!(
            "a successful DEL of {} left {h} holding {held:?}{}",
            pod.id,
            if pod.del_after_restart {
                " (the DEL ran against a restarted vswitchd, which must free by the handle)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// Takes a pod out: DEL (every few times twice, for idempotence), then its
/// netns goes, as the runtime removes the sandbox.
fn retire(pod: &mut Pod, nth: usize, c: &Value, rng: &mut Rng, sh: &Shared) {
    pod.del_started = Some(Instant::now());
    pod.del_after_restart = sh.gen.load(Ordering::SeqCst) != pod.add_gen;
    let repeat = nth.is_multiple_of(REPEAT_DEL_EVERY);
    let mut res = del_pod(pod, c, rng, sh);
    if res.is_ok() {
        pod.deleted = true;
        if repeat {
            res = del_pod(pod, c, rng, sh).map_err(|e| format!("the repeated DEL: {e}"));
        }
    }
    match res {
        Ok(()) => {
            sh.in_play.fetch_sub(1, Ordering::SeqCst);
            drop(pod.ns.take());
        }
        Err(e) => {
            pod.problem = Some(e);
            sh.abort.store(true, Ordering::SeqCst);
        }
    }
}

fn worker(w: usize, seed: u64, sh: &Shared, known: &BTreeSet<String>) -> Vec<Pod> {
    let mut rng = Rng::new(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let c = conf(sh.sock);
    let mut pods: Vec<Pod> = Vec::new();
    let mut live: VecDeque<usize> = VecDeque::new();
    let mut dels = 0;
    for i in 0..sh.per_worker {
        if live.len() >= LIVE_PER_WORKER {
            let oldest = live.pop_front().expect("a live pod");
            dels += 1;
            retire(&mut pods[oldest], dels, &c, &mut rng, sh);
            if pods[oldest].problem.is_some() {
                break;
            }
            check_own(
                sh,
                known,
                &pods,
                &format!("after the DEL of {}", pods[oldest].id),
            );
        }
        if sh.abort.load(Ordering::SeqCst) {
            break;
        }
        let ns = Netns::new("f");
        let mut pod = Pod::new(pod_id(w, i));
        let pod_args = format!("K8S_POD_NAMESPACE=fire;K8S_POD_NAME=pod-{w}-{i}");
        let n = sh.in_play.fetch_add(1, Ordering::SeqCst) + 1;
        sh.max_in_play.fetch_max(n, Ordering::SeqCst);
        add_pod(&mut pod, &ns, &pod_args, &c, &mut rng, sh);
        pod.ns = Some(ns);
        let failed = pod.problem.is_some();
        if failed {
            sh.abort.store(true, Ordering::SeqCst);
        } else {
            live.push_back(pods.len());
        }
        let id = pod.id.clone();
        pods.push(pod);
        sh.done.fetch_add(1, Ordering::SeqCst);
        check_own(sh, known, &pods, &format!("after the ADD of {id}"));
        if failed {
            break;
        }
    }
    pods
}

/// Kills vswitchd with SIGKILL once the ADD count passes each of a few random
/// thresholds, plus a random 100–700 ms, and restarts it right away. Returns
/// the kills as (ADDs completed at the kill, restart time).
fn killer(sw: &mut Switch, seed: u64, sh: &Shared) -> Result<Vec<(usize, Duration)>, String> {
    let mut rng = Rng::new(seed ^ 0x6b69_6c6c);
    let n = rng.range(KILLS.0, KILLS.1) as usize;
    // spread over the first three quarters of the ADDs so that every kill
    // lands while ADDs and DELs are in flight
    let mut thresholds: Vec<usize> = (0..n)
        .map(|_| rng.range(2, (sh.pods * 3 / 4).max(3) as u64) as usize)
        .collect();
    thresholds.sort();
    let mut kills = Vec::new();
    for t in thresholds {
        while sh.done.load(Ordering::SeqCst) < t {
            if sh.done.load(Ordering::SeqCst) >= sh.pods
                || sh.abort.load(Ordering::SeqCst)
                || Instant::now() >= sh.deadline
            {
                return Ok(kills);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(rng.millis(100, 700));
        if sh.done.load(Ordering::SeqCst) >= sh.pods || sh.abort.load(Ordering::SeqCst) {
            break;
        }
        let at = sh.done.load(Ordering::SeqCst);
        sw.kill9();
        sh.gen.fetch_add(1, Ordering::SeqCst);
        let t0 = Instant::now();
        sw.restart()?;
        kills.push((at, t0.elapsed()));
    }
    Ok(kills)
}

fn summary_codes<'a>(failures: impl Iterator<Item = &'a (u64, String)>) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for (c, _) in failures {
        *m.entry(*c).or_insert(0) += 1;
    }
    m
}

#[test]
fn ipam_under_fire() {
    must_be_root();
    let _g = serial();
    let t_start = Instant::now();
    let seed = seed();
    eprintln!("under fire: seed {seed} (UNDER_FIRE_SEED={seed} replays the random choices)");
    let mut sw = start_switch();
    sw.apply_pool(POOL, POOL_CIDR, BLOCK_SIZE);
    let sock = sw.sock.to_string_lossy().into_owned();
    let state_dir = sw.state_dir();
    let c = conf(&sock);
    let per_worker = pods_per_worker();
    let n_pods = WORKERS * per_worker;
    let known = known_handles(per_worker);
    // `ip netns add` sets /run/netns up on its first use: not 8 threads at once
    drop(Netns::new("f"));

    // --- 200 ADDs (and the DELs that keep each worker at 3 live pods) from 8
    // workers while vswitchd is killed and restarted
    let sh = Shared {
        pods: n_pods,
        per_worker,
        sock: &sock,
        state_dir: &state_dir,
        deadline: Instant::now() + FIRE_DEADLINE,
        done: AtomicUsize::new(0),
        gen: AtomicUsize::new(0),
        in_play: AtomicUsize::new(0),
        max_in_play: AtomicUsize::new(0),
        max_held: AtomicUsize::new(0),
        checks: AtomicUsize::new(0),
        violations: Mutex::new(Vec::new()),
        abort: AtomicBool::new(false),
    };
    let t_fire = Instant::now();
    let kill_error = Mutex::new(None);
    let (mut pods, kills) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (sh, known) = (&sh, &known);
                s.spawn(move || worker(w, seed, sh, known))
            })
            .collect();
        let sw_ref = &mut sw;
        let sh_ref = &sh;
        let err_ref = &kill_error;
        let k = s.spawn(move || match killer(sw_ref, seed, sh_ref) {
            Ok(k) => k,
            Err(e) => {
                sh_ref.abort.store(true, Ordering::SeqCst);
                *err_ref.lock().unwrap() = Some(e);
                Vec::new()
            }
        });
        let pods: Vec<Pod> = workers
            .into_iter()
            .flat_map(|h| h.join().expect("a worker panicked"))
            .collect();
        (pods, k.join().expect("the killer panicked"))
    });
    let fire_time = t_fire.elapsed();
    if let Some(e) = kill_error.into_inner().unwrap() {
        panic!("restarting vswitchd failed: {e}");
    }
    let adds: u32 = pods.iter().map(|p| p.adds).sum();
    let add_retries: usize = pods.iter().map(|p| p.failures.len()).sum();
    let retried_pods = pods.iter().filter(|p| !p.failures.is_empty()).count();
    let add_codes = summary_codes(pods.iter().flat_map(|p| &p.failures));
    let reclaimed = pods.iter().filter(|p| p.reclaimed).count();
    let fire_dels: u32 = pods.iter().map(|p| p.dels).sum();
    let del_retries: usize = pods.iter().map(|p| p.del_failures.len()).sum();
    let del_codes = summary_codes(pods.iter().flat_map(|p| &p.del_failures));
    let deleted = pods.iter().filter(|p| p.deleted).count();
    let del_after_restart = pods
        .iter()
        .filter(|p| p.deleted && p.del_after_restart)
        .count();
    let max_in_play = sh.max_in_play.load(Ordering::SeqCst);
    let max_held = sh.max_held.load(Ordering::SeqCst);
    let checks = sh.checks.load(Ordering::SeqCst);
    eprintln!(
        "under fire: {adds} ADDs for {} pods and {fire_dels} DELs of {deleted} pods in \
         {fire_time:.1?}; {} kills (ADDs done at each kill, restart time: {kills:?}); \
         {add_retries} failed ADDs retried, in {retried_pods} pods, by code {add_codes:?}; \
         {reclaimed} pods got back the address a failed ADD had claimed; {del_retries} failed \
         DELs retried, by code {del_codes:?}; {del_after_restart} DELs ran against a restarted \
         vswitchd; at most {max_in_play} pods in play and {max_held} addresses held at once \
         ({checks} reads of ipam.json)",
        pods.len(),
        kills.len(),
    );
    let violations = sh.violations.into_inner().unwrap();
    assert!(
        violations.is_empty(),
        "IPAM went wrong under fire:\n{}\n{}",
        violations.join("\n"),
        sw.log_tail(40)
    );
    let problems: Vec<String> = pods
        .iter()
        .filter_map(|p| {
            p.problem.as_ref().map(|m| {
                let last = &p.failures[p.failures.len().saturating_sub(2)..];
                let last_del = &p.del_failures[p.del_failures.len().saturating_sub(2)..];
                format!(
                    "{}: {m} ({} failed ADDs, the last: {last:?}; {} failed DELs, the last: \
                     {last_del:?})",
                    p.id,
                    p.failures.len(),
                    p.del_failures.len()
                )
            })
        })
        .collect();
    let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
    for m in pods.iter().filter_map(|p| p.problem.as_deref()) {
        *causes.entry(m).or_insert(0) += 1;
    }
    assert!(
        problems.is_empty(),
        "{} pods went wrong; by cause: {causes:#?}\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        sw.log_tail(40)
    );
    assert_eq!(pods.len(), n_pods, "not every pod was made");

    // --- no address was handed out twice: a pod got an address another pod
    // had only after that one's DEL began; and addresses were reused
    let mut by_ip: BTreeMap<Ipv4Addr, Vec<&Pod>> = BTreeMap::new();
    for p in &pods {
        let ip = p.ip.expect("an address");
        assert_eq!(
            u32::from(ip) >> 8,
            POOL_NET >> 8,
            "{}: {ip} is not in {POOL_CIDR}",
            p.id
        );
        by_ip.entry(ip).or_default().push(p);
    }
    let mut reused = 0;
    for (ip, holders) in by_ip.iter_mut() {
        holders.sort_by_key(|p| p.added_at);
        for pair in holders.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let freed = a.del_started.filter(|&t| t < b.added_at.expect("added"));
            assert!(
                freed.is_some(),
                "{ip} was handed out twice: to {} and, before {} was DELed, to {}",
                a.id,
                a.id,
                b.id
            );
            reused += 1;
        }
    }
    let live: Vec<usize> = (0..pods.len()).filter(|&i| pods[i].live()).collect();
    assert_eq!(
        live.len(),
        WORKERS * per_worker.min(LIVE_PER_WORKER),
        "each worker ends with its last {LIVE_PER_WORKER} pods live"
    );
    assert_eq!(deleted, n_pods - live.len());

    // --- IPAM agrees: exactly the live pods hold an address each, the one
    // their ADD returned
    let held = ipam_file(&state_dir);
    let handles = by_handle(&held);
    for h in &held {
        assert_eq!(h.node, NODE, "{h:?}");
    }
    let live_want: BTreeMap<String, Vec<Ipv4Addr>> = live
        .iter()
        .map(|&i| (handle(&pods[i].id), vec![pods[i].ip.expect("an address")]))
        .collect();
    let mut wrong = Vec::new();
    for (h, addrs) in &handles {
        match live_want.get(h) {
            None if known.contains(h) => {
                wrong.push(format!("{h} holds {addrs:?} although its DEL succeeded"))
            }
            None => wrong.push(format!("{h} is no pod's handle but holds {addrs:?}")),
            Some(w) if w != addrs => {
                wrong.push(format!("{h} holds {addrs:?}, its last ADD returned {w:?}"))
            }
            Some(_) => {}
        }
    }
    for (h, w) in &live_want {
        if !handles.contains_key(h) {
            wrong.push(format!("{h} holds nothing, its last ADD returned {w:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "IPAM state disagrees with the ADD and DEL results:\n{}",
        wrong.join("\n")
    );

    // the fire was real: vswitchd died under the ADDs and DELs, they noticed,
    // and DELs had to free addresses of attachments the switch had lost
    assert!(
        kills.len() as u64 >= KILLS.0,
        "only {} kills landed before the ADDs were done: {kills:?}",
        kills.len()
    );
    assert!(
        retried_pods > 0,
        "no ADD failed although vswitchd was killed {} times",
        kills.len()
    );
    assert!(
        del_after_restart > 0,
        "no DEL ran against a restarted vswitchd although it was killed {} times",
        kills.len()
    );
    assert!(reused > 0, "no address freed by a DEL was handed out again");
    assert!(
        max_in_play <= WORKERS * LIVE_PER_WORKER,
        "{max_in_play} pods were in play at once"
    );

    let blocks = sw.blocks();
    assert_eq!(
        blocks.iter().map(|b| b.allocated).sum::<u64>(),
        live.len() as u64,
        "{blocks:?}"
    );
    // the lowest free address goes first, and at most 24 are held at once:
    // one block
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let block_set: BTreeSet<&str> = held.iter().map(|h| h.block.as_str()).collect();
    assert_eq!(block_set.len(), 1, "{block_set:?}");
    // what the (last) vswitchd has attached agrees too
    let by_id: BTreeMap<&str, &Pod> = pods.iter().map(|p| (p.id.as_str(), p)).collect();
    let attached = sw.pods();
    for a in &attached {
        let p = by_id
            .get(a.container_id.as_str())
            .unwrap_or_else(|| panic!("vswitchd has an attachment of no pod: {a:?}"));
        assert!(p.live(), "vswitchd has an attachment of a DELed pod: {a:?}");
        assert_eq!(a.ips, vec![p.ip.expect("an address")], "{a:?}");
    }
    eprintln!(
        "under fire: {reused} times an address freed by a DEL went to another pod ({} \
         addresses used in all); IPAM holds {} distinct addresses for {} handles in {} blocks; \
         the last vswitchd has {} attachments",
        by_ip.len(),
        held.len(),
        handles.len(),
        blocks.len(),
        attached.len()
    );

    // --- of the live pods, half are deleted, a quarter die unnoticed, GC
    let del_final: Vec<usize> = (0..live.len())
        .filter(|k| k % 2 == 0)
        .map(|k| live[k])
        .collect();
    let dead: Vec<usize> = (0..live.len())
        .filter(|k| k % 4 == 1)
        .map(|k| live[k])
        .collect();
    let keep: Vec<usize> = (0..live.len())
        .filter(|k| k % 4 == 3)
        .map(|k| live[k])
        .collect();
    let dels = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for chunk in del_final.chunks(del_final.len().div_ceil(4).max(1)) {
            let (pods, c, dels) = (&pods, &c, &dels);
            s.spawn(move || {
                for &i in chunk {
                    let p = &pods[i];
                    let ns = p.ns.as_ref().expect("a netns");
                    let mut call = Call::new(&p.id, &ns.path);
                    call.ifname = IFNAME;
                    let conf = with_prev(c, p.result.as_ref().expect("a result"));
                    let run = call.run("DEL", &conf);
                    if !(run.success && run.stdout.trim().is_empty()) {
                        dels.lock().unwrap().push(format!("DEL {}: {run:?}", p.id));
                    }
                }
            });
        }
    });
    let dels = dels.into_inner().unwrap();
    assert!(dels.is_empty(), "DEL failed:\n{}", dels.join("\n"));
    let after_del = by_handle(&ipam_file(&state_dir));
    let want_after_del: BTreeMap<String, Vec<Ipv4Addr>> = dead
        .iter()
        .chain(&keep)
        .map(|&i| (handle(&pods[i].id), vec![pods[i].ip.expect("an address")]))
        .collect();
    for &i in &del_final {
        let h = handle(&pods[i].id);
        assert!(
            !after_del.contains_key(&h),
            "DEL left {h} holding {:?}",
            after_del[&h]
        );
    }
    assert_eq!(
        after_del, want_after_del,
        "after the DELs exactly the pods not DELed hold their addresses"
    );
    // the runtime lost these: their netns go, no DEL
    let dead_ports: Vec<String> = sw
        .pods()
        .into_iter()
        .filter(|a| dead.iter().any(|&i| pods[i].id == a.container_id))
        .map(|a| a.port)
        .collect();
    for &i in &dead {
        drop(pods[i].ns.take());
    }
    let keep_before: BTreeMap<String, bool> = keep
        .iter()
        .map(|&i| (pods[i].id.clone(), sw.pod(&pods[i].id, IFNAME).is_some()))
        .collect();
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = Value::Array(
        keep.iter()
            .map(|&i| json!({"containerID": pods[i].id, "ifname": IFNAME}))
            .collect(),
    );
    plugin(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", DEBIAN_CNI)],
        &gc.to_string(),
    )
    .ok_silent();

    let after_gc = ipam_file(&state_dir);
    let after_gc_handles = by_handle(&after_gc);
    let keep_want: BTreeMap<String, Vec<Ipv4Addr>> = keep
        .iter()
        .map(|&i| (handle(&pods[i].id), vec![pods[i].ip.expect("an address")]))
        .collect();
    let stray: Vec<String> = after_gc_handles
        .iter()
        .filter(|(h, _)| !keep_want.contains_key(*h))
        .map(|(h, a)| format!("{h}: {a:?}"))
        .collect();
    assert!(
        stray.is_empty(),
        "after GC, handles that are not live still hold addresses:\n{}",
        stray.join("\n")
    );
    assert_eq!(
        after_gc_handles, keep_want,
        "after GC the live pods must hold exactly their addresses"
    );
    assert_eq!(sw.allocated(), keep.len() as u64);
    for &i in dead.iter().chain(&del_final) {
        assert!(
            sw.pod(&pods[i].id, IFNAME).is_none(),
            "{} is still attached after DEL/GC",
            pods[i].id
        );
    }
    let ports = sw.port_names();
    for p in &dead_ports {
        assert!(!ports.contains(p), "GC left the dead pod's port {p}");
    }
    for &i in &keep {
        if keep_before[&pods[i].id] {
            assert!(
                sw.pod(&pods[i].id, IFNAME).is_some(),
                "GC detached the live pod {}",
                pods[i].id
            );
        }
    }

    // --- clean up: the live pods go too, and the pool is empty again
    for &i in &keep {
        let p = &pods[i];
        let ns = p.ns.as_ref().expect("a netns");
        let mut call = Call::new(&p.id, &ns.path);
        call.ifname = IFNAME;
        call.run("DEL", &c).ok_silent();
    }
    assert_eq!(sw.allocated(), 0);
    assert!(
        ipam_file(&state_dir).is_empty(),
        "ipam.json still holds addresses"
    );
    drop(pods);
    sw.stop();
    eprintln!(
        "under fire: {} kills, {adds} ADDs ({add_retries} retries, {retried_pods} pods \
         retried), {} DELs ({del_retries} retries, {del_after_restart} after a restart), GC \
         freed {} dead handles; ADD/DEL phase {fire_time:.1?}, whole test {:.1?}",
        kills.len(),
        fire_dels as usize + del_final.len() + keep.len(),
        dead.len(),
        t_start.elapsed()
    );
}

//! Several processes and threads on one state file, and writers killed with SIGKILL at random
//! moments. The child processes are `ipam-stress` (src/bin), which prints a line only once the
//! store has returned, so every complete line is a promise the file must keep.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ipam::*;

const STRESS: &str = env!("CARGO_BIN_EXE_ipam-stress");

fn store_with_pool(path: &Path, cidr: &str, block_size: u8) -> Ipam<FileStore> {
    let ipam = Ipam::new(FileStore::open(path).unwrap());
    ipam.put_pool(Pool::new("p", cidr, Some(block_size)).unwrap())
        .unwrap();
    ipam
}

fn spawn(args: &[&str]) -> Child {
    Command::new(STRESS)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn v4(ipam: &Ipam<FileStore>, handle: &HandleId, node: &str) -> IpAddr {
    ipam.assign(
        handle,
        node,
        &PoolSelection::Any,
        FamilyCount::V4,
        &Attributes::new(),
    )
    .unwrap()
    .addresses[0]
}

#[test]
fn processes_and_threads_on_one_file_never_share_an_address_or_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    let ipam = Arc::new(store_with_pool(&path, "10.0.0.0/22", 28));
    let path_s = path.to_str().unwrap().to_string();
    const EACH: usize = 30;

    // n0 is shared by a process and a thread, as concurrent CNI ADDs on one node are.
    let children: Vec<Child> = (0..4)
        .map(|p| {
            spawn(&[
                "assign",
                &path_s,
                &format!("n{p}"),
                &format!("proc{p}-"),
                &EACH.to_string(),
            ])
        })
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            // One thread with its own store instance, the rest sharing one engine.
            let own = (t == 3).then(|| Ipam::new(FileStore::open(&path).unwrap()));
            let shared = ipam.clone();
            std::thread::spawn(move || {
                let ipam = own.as_ref().unwrap_or(&shared);
                (0..EACH)
                    .map(|i| {
                        let h = HandleId::new(&format!("thread{t}-{i}"), "eth0").unwrap();
                        let a = v4(ipam, &h, &format!("n{}", t % 2));
                        (h.to_string(), a)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    let mut got: Vec<(String, IpAddr)> = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f[0], "A", "{line}");
            got.push((f[1].to_string(), f[2].parse().unwrap()));
        }
    }
    for t in threads {
        got.extend(t.join().unwrap());
    }
    assert_eq!(got.len(), 8 * EACH);
    let distinct: HashSet<IpAddr> = got.iter().map(|(_, a)| *a).collect();
    assert_eq!(distinct.len(), got.len(), "an address was handed out twice");

    // The file agrees with what every writer was told, and nothing else is in it.
    let snap = ipam.snapshot().unwrap();
    let in_file: BTreeMap<IpAddr, String> = snap
        .state
        .allocations()
        .map(|(a, o)| (a, o.handle.to_string()))
        .collect();
    let told: BTreeMap<IpAddr, String> = got.into_iter().map(|(h, a)| (a, h)).collect();
    assert_eq!(in_file, told);
    // No block was claimed twice: each block's addresses all belong to the node that holds it.
    for b in snap.state.blocks() {
        for (a, o) in b.allocations() {
            assert_eq!(Some(o.node.as_str()), b.affinity(), "{a} in {}", b.cidr());
        }
    }
}

/// What a killed churn child promised: handles it was told are assigned, those it was told are
/// released, and the one step it was in the middle of (which may or may not have committed).
#[derive(Default)]
struct Promises {
    assigned: HashMap<String, IpAddr>,
    released: HashSet<String>,
    in_flight: Option<(char, String, Option<IpAddr>)>,
}

fn read_promises(stdout: &str, p: &mut Promises) {
    // A line cut by the kill is not a promise.
    let complete = match stdout.rfind('\n') {
        Some(i) => &stdout[..=i],
        None => "",
    };
    for line in complete.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            // From here until its completion line the handle may be in either state.
            "a" => {
                p.released.remove(f[1]);
                p.in_flight = Some(('a', f[1].to_string(), None));
            }
            "r" => {
                let had = p.assigned.remove(f[1]);
                p.in_flight = Some(('r', f[1].to_string(), had));
            }
            "A" => {
                p.in_flight = None;
                p.released.remove(f[1]);
                p.assigned.insert(f[1].to_string(), f[2].parse().unwrap());
            }
            "R" => {
                p.in_flight = None;
                p.assigned.remove(f[1]);
                p.released.insert(f[1].to_string());
            }
            _ => panic!("unexpected line {line:?}"),
        }
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) | 1
}

#[test]
fn sigkill_at_random_moments_never_tears_the_file_doubles_or_loses_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    let path_s = path.to_str().unwrap().to_string();
    let ipam = store_with_pool(&path, "10.1.0.0/22", 28);
    let mut rng = seed();
    eprintln!("seed {rng}");
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    // Handles acknowledged as assigned and never released: pods the runtime believes in.
    let mut live: HashMap<String, IpAddr> = HashMap::new();
    let mut killed_mid_write = 0;
    let mut steps = 0;
    let started = Instant::now();
    const ROUNDS: usize = 20;

    for round in 0..ROUNDS {
        let prefix = format!("r{round}-");
        let mut child = spawn(&["churn", &path_s, "n1", &prefix, &round.to_string()]);
        std::thread::sleep(Duration::from_millis(5 + next(60)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the churn child must only end by SIGKILL: {stderr}"
        );
        steps += stdout
            .lines()
            .filter(|l| l.starts_with("A ") || l.starts_with("R "))
            .count();
        let mut p = Promises::default();
        read_promises(&stdout, &mut p);
        let temps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp.")
            })
            .count();
        killed_mid_write += usize::from(temps > 0);

        // The file is one whole version (load parses and checks every invariant), and a fresh
        // store sees it the same way.
        let snap = FileStore::open(&path).unwrap().load().unwrap();
        snap.state.check().unwrap();
        let owner_of = |h: &str| -> Vec<IpAddr> { snap.state.addresses_of(&HandleId::from_raw(h)) };
        // Everything acknowledged is there, with the address that was reported.
        for (h, a) in live.iter().chain(&p.assigned) {
            assert_eq!(
                owner_of(h),
                [*a],
                "round {round}: acknowledged {h} lost or changed"
            );
        }
        for h in &p.released {
            assert!(
                owner_of(h).is_empty(),
                "round {round}: released {h} still holds an address"
            );
        }
        // One owner per address, one address per handle (the child asks for one IPv4 each).
        let mut seen: HashMap<IpAddr, String> = HashMap::new();
        let mut per_handle: HashMap<String, usize> = HashMap::new();
        for (a, o) in snap.state.allocations() {
            assert!(
                seen.insert(a, o.handle.to_string()).is_none(),
                "{a} owned twice"
            );
            *per_handle.entry(o.handle.to_string()).or_default() += 1;
        }
        assert!(
            per_handle.values().all(|&n| n == 1),
            "a handle holds two addresses"
        );

        // The step in flight either happened whole or not at all.
        match &p.in_flight {
            Some(('a', h, _)) => assert!(owner_of(h).len() <= 1),
            Some(('r', h, had)) => {
                let now = owner_of(h);
                assert!(
                    now.is_empty() || now == [had.unwrap()],
                    "round {round}: {h} {now:?}"
                );
            }
            _ => {}
        }

        // The runtime's view: an interrupted DEL is retried; an interrupted ADD failed, so its
        // handle is not live and GC must reclaim whatever it may have committed.
        if let Some(('r', h, _)) = &p.in_flight {
            ipam.release(&HandleId::from_raw(h.clone())).unwrap();
        }
        live.extend(p.assigned);
        let live_set: HashSet<HandleId> =
            live.keys().map(|h| HandleId::from_raw(h.clone())).collect();
        let freed = ipam.gc("n1", &live_set).unwrap();
        for f in &freed {
            let h = f.handle.to_string();
            assert!(
                matches!(&p.in_flight, Some(('a', x, _)) if *x == h),
                "round {round}: GC freed {h}, which was not an unacknowledged ADD"
            );
        }
        let after = ipam.snapshot().unwrap();
        let held: HashMap<String, IpAddr> = after
            .state
            .allocations()
            .map(|(a, o)| (o.handle.to_string(), a))
            .collect();
        assert_eq!(
            held, live,
            "round {round}: after GC the file holds exactly the live pods"
        );

        // A fresh ADD never gets an address a live pod holds.
        let fresh = HandleId::new(&format!("fresh{round}"), "eth0").unwrap();
        let a = v4(&ipam, &fresh, "n1");
        assert!(
            !live.values().any(|x| *x == a),
            "round {round}: {a} handed out twice"
        );
        ipam.release(&fresh).unwrap();

        // Keep the pool from filling up over the rounds: the runtime deletes some pods.
        let victims: Vec<String> = live.keys().filter(|_| next(2) == 0).cloned().collect();
        for h in victims {
            let freed = ipam.release(&HandleId::from_raw(h.clone())).unwrap();
            assert_eq!(freed, [live.remove(&h).unwrap()]);
        }
    }
    eprintln!(
        "{ROUNDS} kills after {steps} committed steps, {killed_mid_write} kills left a temporary file behind, {:?}",
        started.elapsed()
    );
    assert!(
        steps >= ROUNDS,
        "the children hardly ran; the kills tested nothing"
    );
}

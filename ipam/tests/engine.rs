//! Behaviour of the engine through its public API, on the in-memory store (and the file store
//! where persistence is the point).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use ipam::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn h(i: usize) -> HandleId {
    HandleId::new(&format!("c{i:04}"), "eth0").unwrap()
}

fn ipam_with(pools: &[(&str, &str, Option<u8>)]) -> Ipam<MemStore> {
    ipam_with_config(pools, IpamConfig::default())
}

fn ipam_with_config(pools: &[(&str, &str, Option<u8>)], config: IpamConfig) -> Ipam<MemStore> {
    let ipam = Ipam::with_config(MemStore::new(), config);
    let pools = pools
        .iter()
        .map(|(n, c, b)| Pool::new(n, c, *b).unwrap())
        .collect();
    ipam.apply_pools(pools).unwrap();
    ipam
}

fn v4(ipam: &Ipam<impl Store>, handle: &HandleId, node: &str) -> Result<IpAddr, IpamError> {
    let got = ipam.assign(
        handle,
        node,
        &PoolSelection::Any,
        FamilyCount::V4,
        &Attributes::new(),
    )?;
    assert_eq!(got.addresses.len(), 1);
    Ok(got.addresses[0])
}

fn affinities(ipam: &Ipam<impl Store>) -> Vec<(String, Option<String>)> {
    ipam.blocks()
        .unwrap()
        .iter()
        .map(|b| (b.cidr().to_string(), b.affinity().map(str::to_string)))
        .collect()
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn addresses_come_lowest_first_and_freed_ones_are_reused_lowest_first() {
    let ipam = ipam_with(&[("p", "10.0.0.0/24", None)]);
    let got: Vec<IpAddr> = (0..5).map(|i| v4(&ipam, &h(i), "n1").unwrap()).collect();
    assert_eq!(
        got,
        ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].map(ip)
    );
    assert_eq!(ipam.release(&h(3)).unwrap(), [ip("10.0.0.3")]);
    assert_eq!(ipam.release(&h(1)).unwrap(), [ip("10.0.0.1")]);
    assert_eq!(v4(&ipam, &h(10), "n1").unwrap(), ip("10.0.0.1"));
    assert_eq!(v4(&ipam, &h(11), "n1").unwrap(), ip("10.0.0.3"));
    assert_eq!(v4(&ipam, &h(12), "n1").unwrap(), ip("10.0.0.5"));
}

#[test]
fn a_repeated_add_returns_the_same_addresses_and_writes_nothing() {
    let ipam = ipam_with(&[("v4", "10.0.0.0/24", None), ("v6", "fd00::/120", None)]);
    let mut attrs = Attributes::new();
    attrs.insert("pod".into(), "default/web-0".into());
    let first = ipam
        .assign(&h(1), "n1", &PoolSelection::Any, FamilyCount::DUAL, &attrs)
        .unwrap();
    assert!(!first.reused);
    assert_eq!(first.addresses, [ip("10.0.0.0"), ip("fd00::")]);
    let rev = ipam.snapshot().unwrap().revision;
    // Even with a different count, node or pool selection: the handle's addresses win.
    let again = ipam
        .assign(
            &h(1),
            "n1",
            &PoolSelection::Named(vec!["v4".into()]),
            FamilyCount { v4: 3, v6: 0 },
            &Attributes::new(),
        )
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.addresses, first.addresses);
    assert_eq!(ipam.snapshot().unwrap().revision, rev);
    assert_eq!(ipam.addresses(&h(1)).unwrap(), first.addresses);
    let snap = ipam.snapshot().unwrap();
    let owner = snap.state.owner(ip("10.0.0.0")).unwrap();
    assert_eq!(owner.attributes["pod"], "default/web-0");
    assert_eq!(owner.node, "n1");
}

#[test]
fn release_frees_the_handle_and_unknown_handles_are_fine() {
    let ipam = ipam_with(&[("v4", "10.0.0.0/24", None), ("v6", "fd00::/120", None)]);
    let a = ipam
        .assign(
            &h(1),
            "n1",
            &PoolSelection::Any,
            FamilyCount::DUAL,
            &Attributes::new(),
        )
        .unwrap();
    v4(&ipam, &h(2), "n1").unwrap();
    assert_eq!(ipam.release(&h(1)).unwrap(), a.addresses);
    assert!(ipam.addresses(&h(1)).unwrap().is_empty());
    assert_eq!(ipam.addresses(&h(2)).unwrap(), [ip("10.0.0.1")]);
    // DEL twice, and DEL of something never added: both succeed and free nothing.
    let rev = ipam.snapshot().unwrap().revision;
    assert!(ipam.release(&h(1)).unwrap().is_empty());
    assert!(ipam.release(&h(99)).unwrap().is_empty());
    assert_eq!(ipam.snapshot().unwrap().revision, rev);
    // The handle can be used again and gets the lowest free address.
    assert_eq!(v4(&ipam, &h(1), "n1").unwrap(), ip("10.0.0.0"));
}

#[test]
fn gc_frees_only_dead_handles_of_that_node() {
    let ipam = ipam_with(&[("p", "10.0.0.0/24", Some(28))]);
    for i in 0..4 {
        v4(&ipam, &h(i), "n1").unwrap();
    }
    v4(&ipam, &h(10), "n2").unwrap();
    let live: HashSet<HandleId> = [h(1), h(3)].into();
    let freed = ipam.gc("n1", &live).unwrap();
    assert_eq!(
        freed,
        [
            Freed {
                handle: h(0),
                address: ip("10.0.0.0")
            },
            Freed {
                handle: h(2),
                address: ip("10.0.0.2")
            },
        ]
    );
    assert_eq!(ipam.addresses(&h(1)).unwrap(), [ip("10.0.0.1")]);
    assert_eq!(ipam.addresses(&h(3)).unwrap(), [ip("10.0.0.3")]);
    // n2's pod is not in n1's live list, but it is not n1's to collect.
    assert_eq!(ipam.addresses(&h(10)).unwrap(), [ip("10.0.0.16")]);
    assert!(ipam.gc("n1", &live).unwrap().is_empty());
    assert_eq!(ipam.gc("n2", &HashSet::new()).unwrap().len(), 1);
}

#[test]
fn a_full_block_makes_the_node_claim_the_next_one() {
    let ipam = ipam_with(&[("p", "10.0.0.0/24", Some(30))]);
    let got: Vec<IpAddr> = (0..5).map(|i| v4(&ipam, &h(i), "n1").unwrap()).collect();
    assert_eq!(got[3], ip("10.0.0.3"));
    assert_eq!(got[4], ip("10.0.0.4"));
    assert_eq!(
        affinities(&ipam),
        [
            ("10.0.0.0/30".into(), some("n1")),
            ("10.0.0.4/30".into(), some("n1"))
        ]
    );
    // A hole in the first block is filled before the second block goes on.
    ipam.release(&h(1)).unwrap();
    assert_eq!(v4(&ipam, &h(5), "n1").unwrap(), ip("10.0.0.1"));
    assert_eq!(v4(&ipam, &h(6), "n1").unwrap(), ip("10.0.0.5"));
}

#[test]
fn two_nodes_get_different_blocks() {
    let ipam = ipam_with(&[("p", "10.0.0.0/24", Some(30))]);
    assert_eq!(v4(&ipam, &h(1), "n1").unwrap(), ip("10.0.0.0"));
    assert_eq!(v4(&ipam, &h(2), "n2").unwrap(), ip("10.0.0.4"));
    assert_eq!(v4(&ipam, &h(3), "n1").unwrap(), ip("10.0.0.1"));
    assert_eq!(v4(&ipam, &h(4), "n2").unwrap(), ip("10.0.0.5"));
    assert_eq!(
        affinities(&ipam),
        [
            ("10.0.0.0/30".into(), some("n1")),
            ("10.0.0.4/30".into(), some("n2"))
        ]
    );
}

#[test]
fn an_exhausted_pool_says_so_and_a_failed_assign_leaves_nothing() {
    let ipam = ipam_with(&[
        ("small", "10.0.0.0/30", Some(30)),
        ("tiny6", "fd00::/127", Some(127)),
    ]);
    for i in 0..4 {
        v4(&ipam, &h(i), "n1").unwrap();
    }
    let err = v4(&ipam, &h(9), "n1").unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::PoolExhausted {
                family: Family::V4,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("small (10.0.0.0/30)") && msg.contains("node n1"),
        "{msg}"
    );
    assert!(msg.contains("add a pool"), "{msg}");

    // Dual-stack where only IPv6 runs out: the IPv4 address taken first is not kept.
    ipam.release(&h(0)).unwrap();
    for i in 20..22 {
        ipam.assign(
            &h(i),
            "n1",
            &PoolSelection::Any,
            FamilyCount::V6,
            &Attributes::new(),
        )
        .unwrap();
    }
    let before = ipam.snapshot().unwrap();
    let err = ipam
        .assign(
            &h(30),
            "n1",
            &PoolSelection::Any,
            FamilyCount::DUAL,
            &Attributes::new(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::PoolExhausted {
                family: Family::V6,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(ipam.snapshot().unwrap(), before);
    assert!(ipam.addresses(&h(30)).unwrap().is_empty());
}

#[test]
fn without_strict_affinity_a_node_borrows_from_other_nodes_blocks() {
    let pools = [("p", "10.0.0.0/29", Some(30))];
    for strict in [false, true] {
        let ipam = ipam_with_config(
            &pools,
            IpamConfig {
                strict_affinity: strict,
                ..IpamConfig::default()
            },
        );
        v4(&ipam, &h(0), "n1").unwrap();
        for i in 1..5 {
            assert_eq!(
                v4(&ipam, &h(i), "n2").unwrap().to_string(),
                format!("10.0.0.{}", i + 3)
            );
        }
        let r = v4(&ipam, &h(5), "n2");
        if strict {
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains("strict affinity"), "{msg}");
        } else {
            assert_eq!(r.unwrap(), ip("10.0.0.1"));
            // The block stays n1's; the address is n2's, and only n2's GC may free it.
            let snap = ipam.snapshot().unwrap();
            assert_eq!(snap.state.owner(ip("10.0.0.1")).unwrap().node, "n2");
            assert!(ipam.gc("n1", &[h(0)].into()).unwrap().is_empty());
            assert_eq!(ipam.gc("n2", &HashSet::new()).unwrap().len(), 5);
        }
    }
}

#[test]
fn ipv6_pools_work_like_ipv4_ones() {
    let ipam = ipam_with(&[("v6", "fd00:10::/64", None)]);
    let a = ipam
        .assign(
            &h(1),
            "n1",
            &PoolSelection::Any,
            FamilyCount { v4: 0, v6: 2 },
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(a.addresses, [ip("fd00:10::"), ip("fd00:10::1")]);
    let b = ipam
        .assign(
            &h(2),
            "n2",
            &PoolSelection::Any,
            FamilyCount::V6,
            &Attributes::new(),
        )
        .unwrap();
    assert_eq!(b.addresses, [ip("fd00:10::40")]);
    assert_eq!(
        affinities(&ipam),
        [
            ("fd00:10::/122".into(), some("n1")),
            ("fd00:10::40/122".into(), some("n2"))
        ]
    );
    // Asking for IPv4 with only an IPv6 pool is "no eligible pool", not "exhausted".
    let err = v4(&ipam, &h(3), "n1").unwrap_err();
    assert!(
        matches!(
            err,
            IpamError::NoEligiblePool {
                family: Family::V4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("there is no IPv4 pool"), "{err}");
}

#[test]
fn overlapping_or_invalid_pools_are_refused_whole() {
    let ipam = ipam_with(&[("a", "10.0.0.0/16", None)]);
    let err = ipam
        .put_pool(Pool::new("b", "10.0.128.0/20", None).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("overlaps pool a (10.0.0.0/16)"), "{err}");
    let before = ipam.snapshot().unwrap();
    let err = ipam
        .apply_pools(vec![
            Pool::new("a", "10.0.0.0/16", None).unwrap(),
            Pool::new("c", "10.1.0.0/16", None).unwrap(),
            Pool::new("d", "10.1.2.0/24", None).unwrap(),
        ])
        .unwrap_err();
    assert!(matches!(err, IpamError::BadPool { .. }), "{err}");
    assert_eq!(
        ipam.snapshot().unwrap(),
        before,
        "nothing of a refused apply lands"
    );
}

#[test]
fn pools_in_use_cannot_go_or_change_and_empty_blocks_go_with_them() {
    let ipam = ipam_with(&[("a", "10.0.0.0/24", None)]);
    v4(&ipam, &h(1), "n1").unwrap();
    let err = ipam.remove_pool("a").unwrap_err();
    assert!(
        matches!(err, IpamError::PoolInUse { allocated: 1, .. }),
        "{err}"
    );
    let err = ipam
        .put_pool(Pool::new("a", "10.0.0.0/24", Some(28)).unwrap())
        .unwrap_err();
    assert!(matches!(err, IpamError::PoolInUse { .. }), "{err}");
    // Disabling is a change that keeps blocks and addresses.
    ipam.put_pool(
        Pool::new("a", "10.0.0.0/24", None)
            .unwrap()
            .with_disabled(true),
    )
    .unwrap();
    assert_eq!(ipam.blocks().unwrap().len(), 1);
    let err = v4(&ipam, &h(2), "n1").unwrap_err();
    assert!(
        err.to_string().contains("every IPv4 pool is disabled (a)"),
        "{err}"
    );
    assert_eq!(ipam.addresses(&h(1)).unwrap(), [ip("10.0.0.0")]);

    ipam.release(&h(1)).unwrap();
    assert!(ipam.remove_pool("a").unwrap());
    assert!(!ipam.remove_pool("a").unwrap());
    assert!(ipam.blocks().unwrap().is_empty());
    assert!(ipam.pools().unwrap().is_empty());
}

#[test]
fn releasing_the_last_address_keeps_the_block_until_asked() {
    let ipam = ipam_with(&[("p", "10.0.0.0/24", Some(30))]);
    v4(&ipam, &h(1), "n1").unwrap();
    ipam.release(&h(1)).unwrap();
    assert_eq!(affinities(&ipam), [("10.0.0.0/30".into(), some("n1"))]);
    // Still n1's: n2 gets the next block.
    assert_eq!(v4(&ipam, &h(2), "n2").unwrap(), ip("10.0.0.4"));
    assert_eq!(
        ipam.release_empty_blocks("n1").unwrap(),
        ["10.0.0.0/30".parse::<IpNetwork>().unwrap()]
    );
    assert!(
        ipam.release_empty_blocks("n2").unwrap().is_empty(),
        "n2's block is in use"
    );
    // Now free for anyone, and the lowest free block is claimed first.
    assert_eq!(v4(&ipam, &h(3), "n3").unwrap(), ip("10.0.0.0"));
}

#[test]
fn pools_are_selected_by_name_or_cidr_in_the_given_order() {
    let ipam = ipam_with(&[
        ("a", "10.0.0.0/24", None),
        ("b", "10.1.0.0/24", None),
        ("v6", "fd00::/120", None),
    ]);
    let by = |sel: &[&str], i: usize| {
        ipam.assign(
            &h(i),
            "n1",
            &PoolSelection::Named(sel.iter().map(|s| s.to_string()).collect()),
            FamilyCount::V4,
            &Attributes::new(),
        )
    };
    assert_eq!(by(&["b", "a"], 1).unwrap().addresses, [ip("10.1.0.0")]);
    assert_eq!(by(&["10.0.0.0/24"], 2).unwrap().addresses, [ip("10.0.0.0")]);
    let err = by(&["nope"], 3).unwrap_err().to_string();
    assert!(
        err.contains("\"nope\" does not exist (known pools: a, b, v6)"),
        "{err}"
    );
    let err = by(&["v6"], 4).unwrap_err().to_string();
    assert!(
        err.contains("none of the selected pools [v6] is an enabled IPv4 pool"),
        "{err}"
    );
    // Any: lowest CIDR first.
    assert_eq!(v4(&ipam, &h(5), "n2").unwrap(), ip("10.0.0.64"));
}

#[test]
fn no_pool_and_bad_requests_are_reported() {
    let ipam = Ipam::new(MemStore::new());
    let err = v4(&ipam, &h(1), "n1").unwrap_err();
    assert!(matches!(err, IpamError::NoEligiblePool { .. }), "{err}");
    ipam.put_pool(Pool::new("p", "10.0.0.0/24", None).unwrap())
        .unwrap();
    let none = ipam.assign(
        &h(1),
        "n1",
        &PoolSelection::Any,
        FamilyCount::default(),
        &Attributes::new(),
    );
    assert!(matches!(none, Err(IpamError::BadRequest { .. })));
    let many = FamilyCount {
        v4: MAX_PER_FAMILY + 1,
        v6: 0,
    };
    let r = ipam.assign(&h(1), "n1", &PoolSelection::Any, many, &Attributes::new());
    assert!(matches!(r, Err(IpamError::BadRequest { .. })));
    let r = ipam.assign(
        &h(1),
        "",
        &PoolSelection::Any,
        FamilyCount::V4,
        &Attributes::new(),
    );
    assert!(matches!(r, Err(IpamError::BadRequest { .. })));
}

/// A store that answers the first `conflicts` commits with a conflict, as a busy Kubernetes API
/// would.
struct Flaky {
    inner: MemStore,
    conflicts: AtomicU32,
}

impl Store for Flaky {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }
    fn commit(&self, expected: u64, new: &State) -> Result<u64, CommitError> {
        if self
            .conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            // Someone else committed meanwhile: bump the revision under the engine's feet.
            let cur = self.inner.load()?;
            self.inner.commit(cur.revision, &cur.state)?;
            return Err(CommitError::Conflict {
                expected,
                found: cur.revision + 1,
            });
        }
        self.inner.commit(expected, new)
    }
}

#[test]
fn conflicts_are_retried_and_endless_conflicts_give_up() {
    let flaky = Flaky {
        inner: MemStore::new(),
        conflicts: AtomicU32::new(5),
    };
    let ipam = Ipam::with_config(
        flaky,
        IpamConfig {
            max_attempts: 10,
            ..IpamConfig::default()
        },
    );
    ipam.put_pool(Pool::new("p", "10.0.0.0/24", None).unwrap())
        .unwrap();
    assert_eq!(v4(&ipam, &h(1), "n1").unwrap(), ip("10.0.0.0"));
    ipam.store().conflicts.store(1000, Ordering::SeqCst);
    let err = v4(&ipam, &h(2), "n1").unwrap_err();
    assert!(
        matches!(err, IpamError::Contention { attempts: 10 }),
        "{err}"
    );
    assert!(ipam.addresses(&h(2)).unwrap().is_empty());
}

#[test]
fn threads_on_an_optimistic_store_never_share_an_address() {
    let ipam = Arc::new(ipam_with(&[("p", "10.0.0.0/22", Some(28))]));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ipam = ipam.clone();
            std::thread::spawn(move || {
                (0..40)
                    .map(|i| v4(&ipam, &h(t * 1000 + i), &format!("n{}", t % 3)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<IpAddr> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 320);
    assert_eq!(distinct.len(), 320);
    assert_eq!(ipam.snapshot().unwrap().state.allocations().count(), 320);
}

#[test]
fn assignments_survive_a_restart_of_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    let first = {
        let ipam = Ipam::new(FileStore::open(&path).unwrap());
        ipam.put_pool(Pool::new("p", "10.0.0.0/24", None).unwrap())
            .unwrap();
        v4(&ipam, &h(1), "n1").unwrap();
        v4(&ipam, &h(2), "n1").unwrap()
    };
    let ipam = Ipam::new(FileStore::open(&path).unwrap());
    assert_eq!(v4(&ipam, &h(2), "n1").unwrap(), first);
    assert_eq!(v4(&ipam, &h(3), "n1").unwrap(), ip("10.0.0.2"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"k8s-pod-network.c0002:eth0\""), "{text}");
}

/// Random ADD/DEL/GC across three nodes on a small pool, checked after every step against a
/// plain map of who should hold what.
#[test]
fn random_operations_match_a_simple_model() {
    let ipam = ipam_with(&[
        ("p", "10.0.0.0/26", Some(29)),
        ("v6", "fd00::/122", Some(125)),
    ]);
    let mut model: HashMap<HandleId, (String, Vec<IpAddr>)> = HashMap::new();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for _ in 0..3000 {
        let handle = h(next(80) as usize);
        let node = format!("n{}", next(3));
        match next(10) {
            0..=5 => {
                let count = [FamilyCount::V4, FamilyCount::V6, FamilyCount::DUAL][next(3) as usize];
                match ipam.assign(
                    &handle,
                    &node,
                    &PoolSelection::Any,
                    count,
                    &Attributes::new(),
                ) {
                    Ok(a) => {
                        if let Some((_, held)) = model.get(&handle) {
                            assert!(a.reused);
                            assert_eq!(&a.addresses, held);
                        } else {
                            assert!(!a.reused);
                            model.insert(handle, (node, a.addresses));
                        }
                    }
                    Err(IpamError::PoolExhausted { .. }) => assert!(!model.contains_key(&handle)),
                    Err(e) => panic!("{e}"),
                }
            }
            6..=8 => {
                let freed = ipam.release(&handle).unwrap();
                assert_eq!(
                    freed,
                    model.remove(&handle).map(|(_, a)| a).unwrap_or_default()
                );
            }
            _ => {
                let live: HashSet<HandleId> = (0..80).filter(|_| next(4) != 0).map(h).collect();
                let freed = ipam.gc(&node, &live).unwrap();
                let mut expect: Vec<Freed> = Vec::new();
                model.retain(|handle, (n, addrs)| {
                    let dead = *n == node && !live.contains(handle);
                    if dead {
                        expect.extend(addrs.iter().map(|a| Freed {
                            handle: handle.clone(),
                            address: *a,
                        }));
                    }
                    !dead
                });
                expect.sort();
                assert_eq!(freed, expect);
            }
        }
        let snap = ipam.snapshot().unwrap();
        snap.state.check().unwrap();
        let mut held: BTreeMap<IpAddr, HandleId> = BTreeMap::new();
        for (handle, (_, addrs)) in &model {
            for a in addrs {
                assert!(held.insert(*a, handle.clone()).is_none(), "{a} given twice");
            }
        }
        let actual: BTreeMap<IpAddr, HandleId> = snap
            .state
            .allocations()
            .map(|(a, o)| (a, o.handle.clone()))
            .collect();
        assert_eq!(actual, held);
    }
}

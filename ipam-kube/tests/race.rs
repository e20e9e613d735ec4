//! The Kubernetes store against a real kube-apiserver: nodes racing for one pool, restarts,
//! releases, and what the objects in the API say afterwards.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Barrier};

use ipam::{
    Attributes, FamilyCount, HandleId, Ipam, IpamConfig, IpamError, MemStore, PoolSelection, Store,
};
use ipam_kube::KubeStore;
use serde_json::Value;
use testsupport::{kube_items, KubeServer};

fn pool_yaml(name: &str, cidr: &str, block_size: u8) -> String {
    format!(
        "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n  blockSize: {block_size}\n"
    )
}

fn node_ipam(s: &KubeServer) -> Ipam<KubeStore> {
    let store = KubeStore::from_kubeconfig(s.kubeconfig()).expect("connecting to the API server");
    Ipam::with_config(
        store,
        IpamConfig {
            strict_affinity: false,
            max_attempts: 1000,
        },
    )
}

fn assign(ipam: &Ipam<impl Store>, handle: &HandleId, node: &str) -> Result<IpAddr, IpamError> {
    let mut attrs = Attributes::new();
    attrs.insert("pod".into(), handle.as_str().into());
    let got = ipam.assign(handle, node, &PoolSelection::Any, FamilyCount::V4, &attrs)?;
    assert_eq!(got.addresses.len(), 1);
    Ok(got.addresses[0])
}

fn handle(node: &str, i: usize) -> HandleId {
    HandleId::new(&format!("{node}-{i:03}"), "eth0").unwrap()
}

/// Every allocation the API holds: address → (handle, node), read from the IPAMBlock objects.
fn api_allocations(s: &KubeServer) -> BTreeMap<IpAddr, (String, String)> {
    let mut out = BTreeMap::new();
    for b in kube_items(s, "ipamblocks.vswitch.dev") {
        let cidr: ipam::IpNetwork = b["spec"]["cidr"].as_str().unwrap().parse().unwrap();
        let base = match cidr.network() {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(_) => unreachable!("IPv4 pools only here"),
        };
        let attrs = b["spec"]["attributes"].as_array().unwrap();
        for (ord, a) in b["spec"]["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let Some(idx) = a.as_u64() else { continue };
            let attr = &attrs[idx as usize];
            let addr = IpAddr::V4((base + ord as u32).into());
            let prev = out.insert(
                addr,
                (
                    attr["handle_id"].as_str().unwrap().to_string(),
                    attr["node"].as_str().unwrap().to_string(),
                ),
            );
            assert!(prev.is_none(), "{addr} is in two blocks");
        }
    }
    out
}

fn net(s: &str) -> ipam::IpNetwork {
    s.parse().unwrap()
}

/// block CIDR → owning node, from the IPAMBlock objects; checked against the BlockAffinities.
fn api_owners(s: &KubeServer) -> BTreeMap<ipam::IpNetwork, String> {
    let mut owners = BTreeMap::new();
    for b in kube_items(s, "ipamblocks.vswitch.dev") {
        let cidr = net(b["spec"]["cidr"].as_str().unwrap());
        let aff = b["spec"]["affinity"].as_str().unwrap();
        let node = aff.strip_prefix("host:").unwrap().to_string();
        assert!(
            owners.insert(cidr, node).is_none(),
            "a CIDR has two objects"
        );
    }
    let mut recorded = BTreeMap::new();
    for a in kube_items(s, "blockaffinities.vswitch.dev") {
        let cidr = net(a["spec"]["cidr"].as_str().unwrap());
        let node = a["spec"]["node"].as_str().unwrap().to_string();
        assert_eq!(a["spec"]["state"], "confirmed");
        let prev = recorded.insert(cidr, node);
        assert!(prev.is_none(), "block {cidr} has two affinity records");
    }
    assert_eq!(
        recorded, owners,
        "BlockAffinities differ from the blocks' owners"
    );
    owners
}

#[test]
fn two_nodes_race_for_one_pool_and_a_restarted_node_finds_its_blocks() {
    let s = KubeServer::start();
    // 8 blocks of 8 addresses
    s.apply(&pool_yaml("race", "10.77.0.0/26", 29));
    let nodes = ["node-a", "node-b"];
    let barrier = Arc::new(Barrier::new(nodes.len()));
    let mut threads = Vec::new();
    for node in nodes {
        let ipam = node_ipam(&s);
        let barrier = barrier.clone();
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let mut told = Vec::new();
            for i in 0.. {
                let h = handle(node, i);
                match assign(&ipam, &h, node) {
                    Ok(addr) => told.push((h, addr)),
                    Err(IpamError::PoolExhausted { .. }) => break,
                    Err(e) => panic!("{node}: assign {h}: {e}"),
                }
            }
            (node, told, ipam.store().stats())
        }));
    }
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    // every address of the pool handed out, each once, and the API holds what each node was told
    let api = api_allocations(&s);
    let mut all = BTreeSet::new();
    let mut conflicts = 0;
    for (node, told, stats) in &results {
        eprintln!(
            "{node}: {} addresses, {} conflicts, {} block writes, {} rollbacks",
            told.len(),
            stats.conflicts,
            stats.block_writes,
            stats.rollbacks
        );
        assert!(!told.is_empty(), "{node} got nothing");
        assert_eq!(stats.affinity_errors, 0);
        conflicts += stats.conflicts;
        for (h, addr) in told {
            assert!(all.insert(*addr), "{addr} handed out twice");
            assert_eq!(
                api.get(addr),
                Some(&(h.as_str().to_string(), node.to_string())),
                "{addr}"
            );
        }
    }
    assert_eq!(all.len(), 64);
    assert_eq!(api.len(), 64);
    // both nodes raced for the same lowest free block again and again: someone lost
    assert!(conflicts > 0, "no conflict in {} assignments", all.len());

    let owners = api_owners(&s);
    assert_eq!(owners.len(), 8);
    for node in nodes {
        assert!(
            owners.values().any(|n| n == node),
            "{node} claimed no block: {owners:?}"
        );
    }

    // node-a restarts: a new store finds its blocks, and assigns from them before borrowing,
    // even when a lower address is free in one of node-b's blocks
    let a_blocks: Vec<ipam::IpNetwork> = owners
        .iter()
        .filter(|(_, n)| *n == "node-a")
        .map(|(c, _)| *c)
        .collect();
    let b_lowest = owners
        .iter()
        .find(|(_, n)| *n == "node-b")
        .map(|(c, _)| *c)
        .unwrap();
    let a_highest = *a_blocks.last().unwrap();
    let holder_in = |cidr: ipam::IpNetwork| {
        api.iter()
            .find(|(addr, _)| cidr.contains(**addr))
            .map(|(addr, (h, _))| (HandleId::from_raw(h.clone()), *addr))
            .unwrap()
    };
    let (in_a, addr_a) = holder_in(a_highest);
    let (in_b, addr_b) = holder_in(b_lowest);
    drop(results);
    let a = node_ipam(&s);
    assert_eq!(a.store().repair_affinities("node-a").unwrap(), 0);
    let mine: Vec<ipam::IpNetwork> = a
        .blocks()
        .unwrap()
        .iter()
        .filter(|b| b.affinity() == Some("node-a"))
        .map(|b| b.cidr())
        .collect();
    assert_eq!(mine, a_blocks);
    assert_eq!(a.release(&in_b).unwrap(), [addr_b]);
    assert_eq!(a.release(&in_a).unwrap(), [addr_a]);
    let h = handle("node-a", 900);
    assert_eq!(assign(&a, &h, "node-a").unwrap(), addr_a);
    assert_eq!(
        api_allocations(&s).get(&addr_a),
        Some(&(h.as_str().to_string(), "node-a".to_string()))
    );
    assert!(!api_allocations(&s).contains_key(&addr_b));
}

#[test]
fn releases_shrink_blocks_in_the_api_and_empty_blocks_go_back() {
    let s = KubeServer::start();
    s.apply(&pool_yaml("small", "10.78.0.0/28", 30));
    let a = node_ipam(&s);
    let b = node_ipam(&s);
    let held: Vec<(HandleId, IpAddr)> = (0..3)
        .map(|i| {
            let h = handle("node-a", i);
            let addr = assign(&a, &h, "node-a").unwrap();
            (h, addr)
        })
        .collect();
    let block = &kube_items(&s, "ipamblocks.vswitch.dev")[0];
    assert_eq!(block["metadata"]["name"], "10-78-0-0-30");
    assert_eq!(block["spec"]["pool"], "small");
    assert_eq!(block["status"]["allocated"], 3);
    assert_eq!(block["spec"]["unallocated"], serde_json::json!([3]));

    // a release shrinks the block's allocations in the API
    assert_eq!(a.release(&held[1].0).unwrap(), [held[1].1]);
    let block = &kube_items(&s, "ipamblocks.vswitch.dev")[0];
    assert_eq!(block["status"]["allocated"], 2);
    assert_eq!(block["spec"]["allocations"][1], Value::Null);
    assert_eq!(block["spec"]["unallocated"], serde_json::json!([1, 3]));
    assert_eq!(api_allocations(&s).len(), 2);

    // a lost race on an existing block (update with a stale resourceVersion) and on a claim
    // (create of an existing block) are conflicts, and the loser's write did not land
    let stale = b.store().load().unwrap();
    let other = b.store().load().unwrap();
    let change = |snap: &ipam::Snapshot, h: &str, node: &str| {
        let m = Ipam::new(MemStore::with_state(snap.state.clone()));
        assign(&m, &HandleId::from_raw(h), node).unwrap();
        m.snapshot().unwrap().state
    };
    b.store()
        .commit(stale.revision, &change(&stale, "first", "node-a"))
        .unwrap();
    let err = b
        .store()
        .commit(other.revision, &change(&other, "second", "node-a"))
        .unwrap_err();
    assert!(matches!(err, ipam::CommitError::Conflict { .. }), "{err}");
    let holders: HashSet<String> = api_allocations(&s).values().map(|v| v.0.clone()).collect();
    assert!(holders.contains("first") && !holders.contains("second"));
    let before = b.store().load().unwrap();
    let c1 = change(&before, "claim-b", "node-b");
    let c2 = change(&before, "claim-c", "node-c");
    b.store().commit(before.revision, &c1).unwrap();
    let err = a.store().commit(before.revision, &c2).unwrap_err();
    assert!(matches!(err, ipam::CommitError::Conflict { .. }), "{err}");
    let owners = api_owners(&s);
    assert_eq!(
        owners.get(&net("10.78.0.4/30")).map(String::as_str),
        Some("node-b")
    );
    assert!(!owners.values().any(|n| n == "node-c"));

    // empty blocks stay claimed until given back; then both objects go
    for h in [&held[0].0, &held[2].0, &HandleId::from_raw("first")] {
        a.release(h).unwrap();
    }
    assert_eq!(kube_items(&s, "ipamblocks.vswitch.dev").len(), 2);
    assert_eq!(a.release_empty_blocks("node-a").unwrap().len(), 1);
    let owners = api_owners(&s);
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        owners.get(&net("10.78.0.4/30")).map(String::as_str),
        Some("node-b")
    );

    // a lost BlockAffinity record is repaired; pools can't be written through the store
    s.kubectl_ok(&[
        "delete",
        "blockaffinities.vswitch.dev",
        "node-b-10-78-0-4-30",
    ]);
    assert_eq!(b.store().repair_affinities("node-b").unwrap(), 1);
    api_owners(&s);
    let err = a
        .put_pool(ipam::Pool::new("extra", "10.79.0.0/24", None).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("kubectl"), "{err}");

    // a pool deleted while a block still holds an address: the block stays, its address can be
    // released, and nothing new comes from it
    s.kubectl_ok(&["delete", "ippools.crd.projectcalico.org", "small"]);
    let pools = b.pools().unwrap();
    assert_eq!(pools.len(), 1);
    assert!(pools[0].disabled(), "{pools:?}");
    assert!(matches!(
        assign(&b, &handle("node-b", 1), "node-b"),
        Err(IpamError::NoEligiblePool { .. })
    ));
    b.release(&HandleId::from_raw("claim-b")).unwrap();
    assert_eq!(b.release_empty_blocks("node-b").unwrap().len(), 1);
    assert!(kube_items(&s, "ipamblocks.vswitch.dev").is_empty());
    assert!(kube_items(&s, "blockaffinities.vswitch.dev").is_empty());
}

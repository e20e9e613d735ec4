//! vswitchd with `--ipam-store kube` against a real kube-apiserver: a pod's block is claimed in
//! the API, and a restarted vswitchd gives the same pod the same address from it.
//!
//! Needs root; run with `cargo test -p vswitch --release --test ipam_kube`.

use api::{Reply, Request};
use serde_json::Value;
use testsupport::*;

const NODE: &str = "kube-node-1";

fn start(s: &KubeServer) -> Switch {
    // vswitchd finds the API server as any client does: $KUBECONFIG
    std::env::set_var("KUBECONFIG", s.kubeconfig());
    Switch::start(&["--ipam-store", "kube", "--node", NODE])
}

#[test]
fn vswitchd_claims_blocks_in_the_api_and_finds_them_after_a_restart() {
    let _g = serial();
    must_be_root();
    let s = KubeServer::start();
    s.apply(
        "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: kpool\nspec:\n  cidr: 10.93.0.0/24\n  blockSize: 28\n",
    );
    let sw = start(&s);
    let first = attach_tap(&sw, "kpod1");
    assert_eq!(
        first.ips,
        ["10.93.0.0".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(first.ipam);

    let blocks = kube_items(&s, "ipamblocks.vswitch.dev");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let b = &blocks[0];
    assert_eq!(b["metadata"]["name"], "10-93-0-0-28");
    assert_eq!(b["spec"]["affinity"], format!("host:{NODE}"));
    assert_eq!(b["spec"]["pool"], "kpool");
    let idx = b["spec"]["allocations"][0]
        .as_u64()
        .expect("ordinal 0 allocated") as usize;
    let attr = &b["spec"]["attributes"][idx];
    assert_eq!(attr["handle_id"], "k8s-pod-network.kpod1:eth0");
    assert_eq!(attr["node"], NODE);
    assert_eq!(attr["secondary"]["pod"], "default/kpod1");
    let aff = kube_items(&s, "blockaffinities.vswitch.dev");
    assert_eq!(aff.len(), 1);
    assert_eq!(aff[0]["metadata"]["name"], format!("{NODE}-10-93-0-0-28"));
    assert_eq!(aff[0]["spec"]["node"], NODE);

    // the switch lists what the API holds
    match sw.call(&Request::BlockList {}) {
        Reply::Blocks(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].node.as_deref(), Some(NODE));
            assert_eq!(v[0].allocated, 1);
        }
        r => panic!("block-list: {r:?}"),
    }
    let second = attach_tap(&sw, "kpod2");
    assert_eq!(
        second.ips,
        ["10.93.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    drop(sw);

    // a restarted vswitchd remembers nothing itself: the API gives the same pod the same
    // address, and a new pod the next one of the node's block
    let sw = start(&s);
    assert_eq!(attach_tap(&sw, "kpod1").ips, first.ips);
    assert_eq!(
        attach_tap(&sw, "kpod3").ips,
        ["10.93.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(kube_items(&s, "ipamblocks.vswitch.dev").len(), 1);
    // a detach gives the address back in the API
    sw.call(&Request::PodDetach {
        container_id: "kpod2".into(),
        ifname: "eth0".into(),
    });
    let b = &kube_items(&s, "ipamblocks.vswitch.dev")[0];
    assert_eq!(b["status"]["allocated"], 2);
    assert_eq!(b["spec"]["allocations"][1], Value::Null);
}

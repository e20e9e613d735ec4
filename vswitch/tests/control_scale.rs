//! The control socket under load: a node agent's push for a large cluster
//! goes through, and the switch answers `status` (the liveness probe) while
//! a push or an IPAM call that waits on the API server is in flight.
//!
//! Needs root and hugepages; run with
//! `cargo test -p vswitch --release --test control_scale`.

use api::{Desired, Reply, Request};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testsupport::*;

const NAMESPACES: usize = 100;
const PODS: usize = 10_000;
const POLICIES: usize = 2_000;

/// A cluster of `PODS` pods in `NAMESPACES` namespaces and `POLICIES`
/// NetworkPolicies, each selecting an app and letting in another app of the
/// namespace and a labelled namespace on two ports.
fn cluster_yaml() -> String {
    let mut y = String::new();
    for n in 0..NAMESPACES {
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{n}, labels: {{team: t{}}}}}\n---\n",
            n % 10
        );
    }
    for p in 0..PODS {
        let n = p % NAMESPACES;
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pod{p}, namespace: ns{n}, labels: {{app: a{}, tier: t{}}}}}\n\
             spec: {{containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]}}\n\
             status: {{podIP: 10.{}.{}.{}}}\n---\n",
            p % 40,
            p % 3,
            100 + p / 65536,
            (p / 256) % 256,
            p % 256
        );
    }
    for i in 0..POLICIES {
        let n = i % NAMESPACES;
        let _ = write!(
            y,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{i}, namespace: ns{n}}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: a{}}}}}\n  policyTypes: [Ingress, Egress]\n  ingress:\n\
             \x20 - from: [{{podSelector: {{matchLabels: {{app: a{}}}}}}}, {{namespaceSelector: {{matchLabels: {{team: t{}}}}}}}]\n\
             \x20   ports: [{{port: 80}}, {{protocol: UDP, port: http}}]\n  egress:\n\
             \x20 - to: [{{ipBlock: {{cidr: 10.{}.0.0/16, except: [10.{}.1.0/24]}}}}]\n---\n",
            i % 40,
            (i + 1) % 40,
            i % 10,
            100 + i % 2,
            100 + i % 2
        );
    }
    y
}

/// Asks for `status` every 20 ms until `stop`; returns the slowest answer.
fn probe_status(sw: &Switch, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    let mut client = sw.client();
    std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            match client.call(&Request::Status {}) {
                Ok(Reply::Status(_)) => {}
                r => panic!("status: {r:?}"),
            }
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        worst
    })
}

#[test]
fn a_push_for_ten_thousand_pods_and_two_thousand_policies_goes_through() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    let world = policy::load::load_yaml(&cluster_yaml()).expect("cluster YAML");
    assert_eq!(world.endpoints.len(), PODS);
    assert_eq!(world.policies.len(), POLICIES);
    let doc = Desired {
        namespaces: Some(world.namespaces),
        policies: Some(world.policies.clone()),
        pods: Some(world.endpoints),
        ..Desired::default()
    };
    let req = Request::Apply { doc };
    let bytes = serde_json::to_vec(&req).expect("encoding").len();

    let stop = Arc::new(AtomicBool::new(false));
    let probe = probe_status(&sw, stop.clone());
    let t = Instant::now();
    let r = sw.try_call(&req);
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let worst = probe.join().expect("status probe");
    assert!(matches!(r, Ok(Reply::Done)), "apply: {r:?}");
    eprintln!(
        "push of {PODS} pods and {POLICIES} policies: {:.1} MiB, applied in {took:?}; slowest status meanwhile {worst:?}",
        bytes as f64 / (1 << 20) as f64
    );
    assert!(
        bytes > 1 << 20,
        "the document is past the old 1 MiB line bound"
    );
    match sw.call(&Request::PolicyList {}) {
        Reply::Policies(set) => assert_eq!(set.policies.len(), POLICIES),
        r => panic!("policy-list: {r:?}"),
    }
    assert!(
        worst < Duration::from_millis(100),
        "status took {worst:?} during the push"
    );
}

#[test]
fn status_answers_while_an_ipam_call_waits_on_a_stopped_api_server() {
    let _g = serial();
    must_be_root();
    let s = KubeServer::start();
    s.apply(
        "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata:\n  name: spool\nspec:\n  cidr: 10.94.0.0/24\n  blockSize: 28\n",
    );
    std::env::set_var("KUBECONFIG", s.kubeconfig());
    let sw = Switch::start(&["--ipam-store", "kube", "--node", "scale-node"]);
    assert!(attach_tap(&sw, "spod1").ipam);

    // a stopped server takes the connection and never answers
    s.signal_server("STOP");
    let mut client = sw.client();
    let adding = std::thread::spawn(move || {
        let t = Instant::now();
        let r = client.call(&Request::PodAttach {
            attach: api::PodAttach {
                container_id: "spod2".into(),
                ifname: "eth0".into(),
                network: None,
                kind: api::AttachKind::Tap,
                pod: Some("default/spod2".into()),
                pools: vec![],
                ips: None,
                socket_dir: None,
                netns: None,
                vhost_mode: None,
            },
        });
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !adding.is_finished(),
        "the ADD should be waiting on the API server"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let probe = probe_status(&sw, stop.clone());
    let t = Instant::now();
    // queries that need the switch but not the IPAM answer too
    for _ in 0..10 {
        let q = Instant::now();
        assert!(matches!(sw.call(&Request::PortList {}), Reply::Ports(_)));
        assert!(
            q.elapsed() < Duration::from_millis(100),
            "port list took {:?}",
            q.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let worst = probe.join().expect("status probe");
    assert!(!adding.is_finished(), "the ADD still waits");
    eprintln!(
        "slowest status while an IPAM call waited {:?} (over {:?})",
        worst,
        t.elapsed()
    );
    assert!(
        worst < Duration::from_millis(100),
        "status took {worst:?} while an IPAM call waited"
    );

    s.signal_server("CONT");
    let (r, took) = adding.join().expect("ADD thread");
    eprintln!("the waiting ADD ended after {took:?}: {r:?}");
    // once the server is back, ADDs work again
    assert!(attach_tap(&sw, "spod3").ipam);
}

//! `vsctl agent` between a real kube-apiserver (1.20.2, testkube) and a
//! real vswitchd (no ports): the cluster's objects reach vswitchd's state,
//! changes follow within seconds, and after restarts of the API server, of
//! the agent and of vswitchd the state converges again with nothing lost or
//! doubled, including changes made while the agent was down. At the end a
//! real Prometheus scrapes the agent and vswitchd and reads back what their
//! /status says.
//!
//! Needs root (hugepages for vswitchd, the host-wide server lock) and
//! Debian's prometheus.

use api::{Client, Reply, Request};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use testsupport::{
    http_get, must_be_root, need_tools, ready, Agent, KubeServer, Prometheus, Switch, Vswitchd,
};

const CONVERGE: Duration = Duration::from_secs(30);

/// The agent of node n1 for `sw` (the vsctl under test), its log in the
/// switch's dir.
fn start_agent(sw: &Switch, kube: &KubeServer, health: &str, n: u32) -> Agent {
    let log = sw.dir.join(format!("agent-{n}.log"));
    let vsctl = Path::new(env!("CARGO_BIN_EXE_vsctl"));
    Agent::start(vsctl, sw, kube, "n1", health, &log)
}

/// A pod as vswitchd holds it: addresses, labels, local.
type PodFacts = (Vec<String>, BTreeMap<String, String>, bool);

/// What vswitchd holds, in a form that is easy to compare.
#[derive(Debug, PartialEq, Clone)]
struct State {
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    policies: Vec<String>,
    /// name -> (ips, labels, local)
    pods: BTreeMap<String, PodFacts>,
    pools: Vec<(String, String)>,
    /// name -> (addresses, blocks)
    nodes: BTreeMap<String, (Vec<String>, Vec<String>)>,
    /// name -> per port "port/proto:nodePort -> backends"
    services: BTreeMap<String, Vec<String>>,
}

fn state(sock: &Path) -> Option<State> {
    let mut c = Client::connect(sock).ok()?;
    let Reply::Policies(p) = c.call(&Request::PolicyList {}).ok()? else {
        return None;
    };
    let Reply::Pools(pools) = c.call(&Request::PoolList {}).ok()? else {
        return None;
    };
    let Reply::Nodes(nodes) = c.call(&Request::NodeList {}).ok()? else {
        return None;
    };
    let Reply::Services(svcs) = c.call(&Request::ServiceList {}).ok()? else {
        return None;
    };
    let mut policies: Vec<String> = p
        .policies
        .iter()
        .map(|p| format!("{}:{}", p.kind(), p.display_name()))
        .collect();
    policies.sort();
    let mut pools: Vec<(String, String)> = pools.into_iter().map(|p| (p.name, p.cidr)).collect();
    pools.sort();
    // each name at most once: a duplicate would show as a shorter map
    let pods: BTreeMap<_, _> = p
        .pods
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                (
                    e.ips.iter().map(ToString::to_string).collect(),
                    e.labels.clone(),
                    e.local,
                ),
            )
        })
        .collect();
    assert_eq!(pods.len(), p.pods.len(), "a pod listed twice: {:?}", p.pods);
    Some(State {
        namespaces: p
            .namespaces
            .iter()
            .map(|n| (n.name.clone(), n.labels.clone()))
            .collect(),
        policies,
        pods,
        pools,
        nodes: nodes
            .into_iter()
            .map(|n| (n.name, (n.addresses, n.blocks)))
            .collect(),
        services: svcs
            .into_iter()
            .map(|s| {
                let ports = s
                    .ports
                    .iter()
                    .map(|p| {
                        let b: Vec<String> = p
                            .backends
                            .iter()
                            .map(|b| format!("{}:{}", b.ip, b.port))
                            .collect();
                        format!(
                            "{}/{}:{} -> {}",
                            p.port,
                            p.protocol.as_str(),
                            p.node_port.unwrap_or(0),
                            b.join(",")
                        )
                    })
                    .collect();
                (s.name, ports)
            })
            .collect(),
    })
}

/// Waits until `check` holds of vswitchd's state; returns how long it took.
fn converge(sock: &Path, what: &str, agent: &Agent, check: impl Fn(&State) -> bool) -> Duration {
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < CONVERGE {
        if let Some(s) = state(sock) {
            if check(&s) {
                eprintln!("{what}: {:?}", t0.elapsed());
                return t0.elapsed();
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what}: not within {CONVERGE:?}; vswitchd has {last:#?}\nagent log:\n{}",
        agent.log_tail(30)
    );
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The PolicyNotUsable Events on `policy` in namespace shop.
fn policy_events(server: &KubeServer, policy: &str) -> Vec<serde_json::Value> {
    let evs: serde_json::Value = serde_json::from_str(&server.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "shop",
        "-o",
        "json",
    ]))
    .expect("events JSON");
    evs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["reason"] == ctl::agent::events::REASON && e["regarding"]["name"] == policy)
        .cloned()
        .collect()
}

/// Waits until `policy` has `n` PolicyNotUsable Events; returns them.
fn until_events(
    server: &KubeServer,
    agent: &Agent,
    policy: &str,
    n: usize,
    within: Duration,
) -> Vec<serde_json::Value> {
    let t0 = Instant::now();
    loop {
        let evs = policy_events(server, policy);
        if evs.len() >= n {
            assert_eq!(evs.len(), n, "more Events than expected: {evs:#?}");
            return evs;
        }
        assert!(
            t0.elapsed() < within,
            "{policy}: {} Events, not {n}, within {within:?}: {evs:#?}\n{}",
            evs.len(),
            agent.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// deploy/rbac.yaml, without the rule for Events when `events` is false.
fn deploy_rbac(events: bool) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml");
    let rbac = std::fs::read_to_string(&path).expect("deploy/rbac.yaml");
    if events {
        return rbac;
    }
    let rule =
        "  - apiGroups: [events.k8s.io]\n    resources: [events]\n    verbs: [create, patch]\n";
    assert!(rbac.contains(rule), "the Events rule of {}", path.display());
    rbac.replace(rule, "")
}

const CLUSTER: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: n1
  annotations:
    projectcalico.org/IPv4Address: 192.168.1.10/24
    projectcalico.org/IPv4VXLANTunnelAddr: 10.65.0.0
    projectcalico.org/VXLANTunnelMACAddr: "66:00:00:00:00:01"
---
apiVersion: v1
kind: Node
metadata:
  name: n2
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata: {name: pool1}
spec: {cidr: 10.65.0.0/16, blockSize: 26, vxlanMode: Always, natOutgoing: true}
---
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata: {name: pool2}
spec: {cidr: 10.66.0.0/16}
---
apiVersion: vswitch.dev/v1alpha1
kind: IPAMBlock
metadata: {name: 10-65-1-0-26}
spec:
  cidr: 10.65.1.0/26
  affinity: host:n2
  pool: pool1
  allocations: []
  unallocated: []
  attributes: []
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [8080]}
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: allow-l7, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
    - action: Allow
      http: {methods: [GET]}
---
apiVersion: crd.projectcalico.org/v1
kind: NetworkPolicy
metadata: {name: bad-selector, namespace: shop}
spec:
  selector: app == 'web' &&
  ingress:
    - action: Allow
---
apiVersion: crd.projectcalico.org/v1
kind: GlobalNetworkPolicy
metadata: {name: g1}
spec:
  selector: all()
  types: [Egress]
  egress:
    - action: Allow
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: http, nodePort: 30080}
---
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
  - {name: http, port: 8080, protocol: TCP}
endpoints:
  - addresses: [10.65.0.1]
    conditions: {ready: true}
    topology: {kubernetes.io/hostname: n1}
  - addresses: [10.65.1.1]
    conditions: {ready: false}
    topology: {kubernetes.io/hostname: n2}
"#;

fn pod_yaml(name: &str, node: &str, app: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: shop
  labels: {{app: {app}}}
spec:
  nodeName: {node}
  serviceAccountName: web
  automountServiceAccountToken: false
  containers:
    - name: c
      image: example/web
      ports: [{{name: http, containerPort: 8080}}]
"#
    )
}

struct Kube {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Kube {
    fn new(server: &KubeServer) -> Kube {
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        let client = rt.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("config");
            kube::Client::try_from(cfg).expect("client")
        });
        Kube { rt, client }
    }

    /// Writes a pod's address into its status, as the kubelet would.
    fn set_pod_ip(&self, name: &str, ip: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "shop");
        let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
        self.rt
            .block_on(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .unwrap_or_else(|e| panic!("pod {name} status: {e}"));
    }

    fn set_node_ip(&self, name: &str, ip: &str) {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch = json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
        self.rt
            .block_on(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)))
            .unwrap_or_else(|e| panic!("node {name} status: {e}"));
    }
}

#[test]
fn agent_follows_the_cluster_through_restarts() {
    let t_start = Instant::now();
    must_be_root();
    need_tools(&["prometheus"]);
    let server = KubeServer::start();
    let kube = Kube::new(&server);
    // killed and restarted below: its end is not judged
    let metrics_addr = format!("127.0.0.1:{}", testsupport::free_port());
    let mut vswitchd = Vswitchd::new()
        .args([
            "--node",
            "n1",
            "--mem",
            "256",
            "--metrics-listen",
            &metrics_addr,
        ])
        .any_exit()
        .start();
    let sock = vswitchd.sock.clone();
    let health = "127.0.0.1:19099";

    server.apply(CLUSTER);
    kube.set_node_ip("n2", "192.168.1.11");
    for (name, node) in [("web-0", "n1"), ("web-1", "n2"), ("db", "n2")] {
        server.apply(&pod_yaml(
            name,
            node,
            if name == "db" { "db" } else { "web" },
        ));
    }
    kube.set_pod_ip("web-0", "10.65.0.1");
    kube.set_pod_ip("web-1", "10.65.1.1");
    // db has no address yet: it is not a pod policy can see

    let mut agent = start_agent(&vswitchd, &server, health, 1);
    let t_agent = Instant::now();
    // what the API server made by itself (kube-system, the kubernetes
    // Service, ...) is part of the cluster too
    let mut namespaces: Vec<String> = server
        .kubectl_ok(&[
            "get",
            "namespaces",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    namespaces.sort();
    assert!(namespaces.contains(&"shop".to_owned()) && namespaces.len() > 2);
    let mut services: Vec<String> = server
        .kubectl_ok(&[
            "get",
            "services",
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    services.sort();
    assert!(services.contains(&"shop/web".to_owned()));
    let ns_all = |s: &State| s.namespaces.keys().cloned().collect::<Vec<_>>() == namespaces;
    let svc_all = |s: &State| s.services.keys().cloned().collect::<Vec<_>>() == services;
    let initial = |s: &State| {
        ns_all(s)
            && s.namespaces["shop"] == labels(&[("team", "shop")])
            && s.policies
                == [
                    "GlobalNetworkPolicy:g1",
                    "NetworkPolicy (networking.k8s.io/v1):shop/deny-all",
                    "NetworkPolicy (projectcalico.org/v3):shop/allow-l7",
                    "NetworkPolicy (projectcalico.org/v3):shop/allow-web",
                    "NetworkPolicy (projectcalico.org/v3):shop/bad-selector",
                ]
            && s.pods.len() == 2
            && s.pods["shop/web-0"] == (vec!["10.65.0.1".into()], labels(&[("app", "web")]), true)
            && s.pods["shop/web-1"] == (vec!["10.65.1.1".into()], labels(&[("app", "web")]), false)
            && s.pools
                == [
                    ("pool1".to_string(), "10.65.0.0/16".to_string()),
                    ("pool2".to_string(), "10.66.0.0/16".to_string()),
                ]
            && s.nodes.len() == 2
            && s.nodes["n1"] == (vec!["192.168.1.10/24".into()], vec![])
            && s.nodes["n2"] == (vec!["192.168.1.11/32".into()], vec!["10.65.1.0/26".into()])
            && svc_all(s)
            && s.services["shop/web"] == ["80/TCP:30080 -> 10.65.0.1:8080"]
    };
    let first = converge(&sock, "initial state", &agent, initial);
    eprintln!("agent start to converged: {:?}", t_agent.elapsed());
    let until_ready = Instant::now();
    while !ready(health) {
        assert!(
            until_ready.elapsed() < CONVERGE,
            "never ready:\n{}",
            agent.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(health, "/healthz").map(|r| r.0), Some(200));
    let (_, status) = http_get(health, "/status").expect("/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["endpoint_source"], "slice-v1beta1", "{status}");
    // policies the agent cannot use isolate what they select in their
    // place, and /status says which and why
    assert_eq!(
        status["skipped_by_kind"]["NetworkPolicy (projectcalico.org/v3)"], 2,
        "{status}"
    );
    assert_eq!(status["skipped"][0]["name"], "shop/allow-l7", "{status}");
    assert!(
        status["skipped"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("http")),
        "{status}"
    );
    assert_eq!(
        status["skipped"][1]["name"], "shop/bad-selector",
        "{status}"
    );
    for s in [&status["skipped"][0], &status["skipped"][1]] {
        assert_eq!(s["isolated"], serde_json::json!(["ingress"]), "{status}");
    }
    // and each gets a Warning Event on its object, where `kubectl get
    // events` and `describe` show it: why, and that its pods are isolated
    let uid = |kind: &str, name: &str| {
        server.kubectl_ok(&[
            "-n",
            "shop",
            "get",
            kind,
            name,
            "-o",
            "jsonpath={.metadata.uid}",
        ])
    };
    for (i, name) in ["allow-l7", "bad-selector"].into_iter().enumerate() {
        let why = status["skipped"][i]["reason"].as_str().expect("a reason");
        let evs = until_events(&server, &agent, name, 1, CONVERGE);
        let e = &evs[0];
        assert_eq!(e["type"], "Warning", "{e:#}");
        assert_eq!(e["reason"], "PolicyNotUsable", "{e:#}");
        assert_eq!(e["reportingController"], "vswitch.dev/agent", "{e:#}");
        assert_eq!(e["reportingInstance"], "n1", "{e:#}");
        let r = &e["regarding"];
        assert_eq!(r["kind"], "NetworkPolicy", "{e:#}");
        assert_eq!(r["apiVersion"], "crd.projectcalico.org/v1", "{e:#}");
        assert_eq!(r["namespace"], "shop", "{e:#}");
        assert_eq!(
            r["uid"],
            uid("networkpolicies.crd.projectcalico.org", name).as_str(),
            "{e:#}"
        );
        let note = e["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("cannot be used on node n1")
                && note.contains(why)
                && note.contains("pods it selects are isolated (ingress)"),
            "{e:#}"
        );
    }
    // the policies that can be used get none
    for name in ["allow-web", "deny-all"] {
        assert_eq!(
            policy_events(&server, name),
            Vec::<serde_json::Value>::new()
        );
    }
    let in_force = match Client::connect(&sock).and_then(|mut c| c.call(&Request::PolicyList {})) {
        Ok(Reply::Policies(p)) => p.policies,
        r => panic!("policy-list: {r:?}"),
    };
    let l7 = in_force
        .iter()
        .find_map(|p| match p {
            api::policy::Policy::Calico(c) if c.metadata.name == "allow-l7" => Some(c),
            _ => None,
        })
        .expect("the stand-in for allow-l7");
    assert!(l7.spec.ingress.is_empty() && l7.spec.egress.is_empty());
    assert_eq!(l7.spec.selector.as_deref(), Some("app == 'web'"));
    assert!(first < CONVERGE);

    // changes follow: a label, an address, a delete, a ready endpoint
    server.kubectl_ok(&[
        "-n",
        "shop",
        "label",
        "pod",
        "web-0",
        "app=web2",
        "--overwrite",
    ]);
    converge(&sock, "label change", &agent, |s| {
        s.pods["shop/web-0"].1 == labels(&[("app", "web2")])
    });
    kube.set_pod_ip("db", "10.65.1.2");
    converge(&sock, "pod address", &agent, |s| {
        s.pods.get("shop/db").map(|p| p.0.clone()) == Some(vec!["10.65.1.2".into()])
    });
    server.kubectl_ok(&[
        "delete",
        "globalnetworkpolicies.crd.projectcalico.org",
        "g1",
    ]);
    converge(&sock, "policy delete", &agent, |s| {
        !s.policies.iter().any(|p| p.contains("g1")) && s.policies.len() == 4
    });
    server.kubectl_ok(&[
        "-n",
        "shop",
        "delete",
        "pod",
        "web-1",
        "--grace-period=0",
        "--force",
    ]);
    converge(&sock, "pod delete", &agent, |s| {
        !s.pods.contains_key("shop/web-1") && s.pods.len() == 2
    });
    server.kubectl_ok(&[
        "-n",
        "shop",
        "patch",
        "endpointslices.v1beta1.discovery.k8s.io",
        "web-1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/endpoints/1/conditions/ready","value":true}]"#,
    ]);
    converge(&sock, "endpoint ready", &agent, |s| {
        s.services["shop/web"] == ["80/TCP:30080 -> 10.65.0.1:8080,10.65.1.1:8080"]
    });

    // the API server restarts: the agent relists, and changes made after
    // it is back arrive
    server.stop_server();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_get(health, "/healthz").map(|r| r.0), Some(200));
    let before = state(&sock).expect("state");
    server.start_server();
    server.apply(&pod_yaml("web-2", "n1", "web"));
    kube.set_pod_ip("web-2", "10.65.0.2");
    converge(&sock, "change after API server restart", &agent, |s| {
        s.pods.len() == 3 && s.pods.contains_key("shop/web-2") && s.policies == before.policies
    });

    // every change above made a reconcile, and the API server restarted:
    // still one Event each, not a new one (nor a series) per reconcile
    for name in ["allow-l7", "bad-selector"] {
        let evs = policy_events(&server, name);
        assert_eq!(evs.len(), 1, "{evs:#?}");
        assert!(evs[0]["series"].is_null(), "{evs:#?}");
    }

    // the agent is down while the cluster changes
    agent.kill();
    server.kubectl_ok(&["delete", "ippools.crd.projectcalico.org", "pool2"]);
    server.kubectl_ok(&["label", "namespace", "shop", "team=store", "--overwrite"]);
    server.kubectl_ok(&[
        "-n",
        "shop",
        "delete",
        "pod",
        "db",
        "--grace-period=0",
        "--force",
    ]);
    server.kubectl_ok(&["delete", "node", "n2"]);
    // it comes back as the DaemonSet's ServiceAccount, with deploy/'s RBAC
    // but no right to post Events: that fails, is logged, and holds up
    // nothing else
    server.apply(&deploy_rbac(false));
    let kubeconfig = vswitchd.dir.join("agent-kubeconfig");
    let admin = std::fs::read_to_string(server.kubeconfig()).expect("kubeconfig");
    let as_sa = "users: [{name: admin, user: {token: admin-token, \
                 as: \"system:serviceaccount:kube-system:vswitch-node\"}}]";
    let impersonating = admin.replace("users: [{name: admin, user: {token: admin-token}}]", as_sa);
    assert_ne!(impersonating, admin, "{admin}");
    std::fs::write(&kubeconfig, impersonating).expect("agent kubeconfig");
    let mut agent = Agent::start_with(
        Path::new(env!("CARGO_BIN_EXE_vsctl")),
        &vswitchd,
        &kubeconfig,
        "n1",
        health,
        &vswitchd.dir.join("agent-2.log"),
    );
    let after_agent = |s: &State| {
        ns_all(s)
            && s.namespaces["shop"] == labels(&[("team", "store")])
            && s.pools == [("pool1".to_string(), "10.65.0.0/16".to_string())]
            && s.nodes.keys().cloned().collect::<Vec<_>>() == ["n1"]
            && s.pods.keys().cloned().collect::<Vec<_>>() == ["shop/web-0", "shop/web-2"]
            && s.policies.len() == 4
            && svc_all(s)
            && s.services["shop/web"] == ["80/TCP:30080 -> 10.65.0.1:8080,10.65.1.1:8080"]
    };
    converge(
        &sock,
        "changes made while the agent was down",
        &agent,
        after_agent,
    );
    let settled = state(&sock).expect("state");
    let t0 = Instant::now();
    while !agent.log_tail(100).contains("Events on unusable policies") {
        assert!(
            t0.elapsed() < CONVERGE,
            "a forbidden Event not logged:\n{}",
            agent.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = agent.log_tail(100);
    assert!(log.contains("forbidden"), "{log}");
    assert_eq!(policy_events(&server, "allow-l7").len(), 1);
    // once it may, the Events it could not post come (a new agent reports
    // afresh: one more each)
    server.apply(&deploy_rbac(true));
    for name in ["allow-l7", "bad-selector"] {
        until_events(&server, &agent, name, 2, Duration::from_secs(90));
    }

    // vswitchd restarts from its records (so its state is the settled one
    // from its first answer); the agent sees the restart and pushes
    // everything again all the same
    vswitchd.kill9();
    vswitchd.restart().expect("vswitchd starts again");
    converge(&sock, "state after vswitchd restart", &agent, |s| {
        *s == settled
    });
    let until_resync = Instant::now();
    loop {
        let (_, status) = http_get(health, "/status").expect("/status");
        let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
        if status["resyncs"].as_u64() >= Some(1) && ready(health) {
            break;
        }
        assert!(
            until_resync.elapsed() < CONVERGE,
            "the agent never saw the restart: {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "agent resynced after vswitchd restart: {:?}",
        until_resync.elapsed()
    );
    // its metrics say what its status says
    let (_, status) = http_get(health, "/status").expect("/status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let (code, metrics) = http_get(health, "/metrics").expect("/metrics");
    assert_eq!(code, 200, "{metrics}");
    for (series, field) in [
        ("vswitch_agent_resyncs_total", "resyncs"),
        ("vswitch_agent_pushes_total", "pushes"),
        ("vswitch_agent_refusals_total", "refusals"),
    ] {
        let line = format!("{series} {}\n", status[field]);
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("vswitch_agent_ready 1\n"), "{metrics}");
    assert!(
        metrics
            .contains("vswitch_agent_skipped{kind=\"NetworkPolicy (projectcalico.org/v3)\"} 2\n"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    for name in testsupport::dashboard_metrics() {
        if name.starts_with("vswitch_agent_") {
            assert!(
                metrics.contains(&format!("\n{name}{{")) || metrics.contains(&format!("\n{name} ")),
                "the dashboard queries {name}, which the agent does not export"
            );
        }
    }
    // a real Prometheus scrapes both, and reads what they say of themselves
    let prom = Prometheus::start(
        &vswitchd.dir,
        &[("agent", health), ("vswitchd", &metrics_addr)],
    );
    let mut seen = None;
    let t0 = Instant::now();
    loop {
        let (_, status) = http_get(health, "/status").expect("/status");
        let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
        let sw = vswitchd.status();
        let build = format!(
            "vswitch_build_info{{version=\"{}\",dpdk_version=\"{}\"}}",
            sw.version, sw.dpdk_version
        );
        let now = (
            prom.one("vswitch_agent_pushes_total"),
            status["pushes"].as_f64(),
            prom.one("vswitch_generation"),
            sw.generation as f64,
            prom.one(&build),
        );
        if now.0.is_some() && now.0 == now.1 && now.2 == Some(now.3) && now.4 == Some(1.0) {
            break;
        }
        assert!(
            t0.elapsed() < CONVERGE,
            "Prometheus and the /status of the agent and of vswitchd disagree: {seen:?}"
        );
        seen = Some(now);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(prom);
    // nothing more changed
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&sock).expect("state"), settled);
    agent.kill();
    eprintln!("whole test: {:?}", t_start.elapsed());
}

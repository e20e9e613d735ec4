//! The upstream Kubernetes NetworkPolicy e2e cases, with the connectivity
//! cyclonus computed for them, run through the simulator (and so through
//! the dataplane's evaluator). Every probed cell of every matrix must agree.
//!
//! The oracle file is `tests/data/netpol/upstream-e2e-cases.jsonl` at the
//! repository root (its source and licence: `tests/data/README.md`). A
//! missing oracle fails the test.

use api::policy::{EndpointInfo, K8sProtocol, NamedPort, NamespaceInfo, NetworkPolicy, Policy};
use policy::simulate::simulate;
use policy::World;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

fn oracle_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/netpol/upstream-e2e-cases.jsonl")
}

/// The topology of the oracle's README: every pod serves TCP, UDP and SCTP
/// on 80 and 81, with named ports `serve-<port>-<proto>`.
fn served_ports() -> Vec<NamedPort> {
    let mut v = Vec::new();
    for port in [80u16, 81] {
        for (proto, name) in [
            (K8sProtocol::Tcp, "tcp"),
            (K8sProtocol::Udp, "udp"),
            (K8sProtocol::Sctp, "sctp"),
        ] {
            v.push(NamedPort {
                name: format!("serve-{port}-{name}"),
                protocol: proto,
                port,
            });
        }
    }
    v
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).expect("labels are a string map")
}

/// The cluster of one step, from the step's own data, pods in `pod_order`.
fn world_of(step: &Value) -> World {
    let mut namespaces = Vec::new();
    for (name, l) in step["namespaces"].as_object().expect("namespaces") {
        namespaces.push(NamespaceInfo {
            name: name.clone(),
            labels: labels(l),
        });
    }
    let pods = step["pods"].as_array().expect("pods");
    let mut endpoints = Vec::new();
    for key in step["pod_order"].as_array().expect("pod_order") {
        let key = key.as_str().expect("pod name");
        let pod = pods
            .iter()
            .find(|p| {
                format!(
                    "{}/{}",
                    p["namespace"].as_str().unwrap_or(""),
                    p["name"].as_str().unwrap_or("")
                ) == key
            })
            .unwrap_or_else(|| panic!("pod {key} of pod_order is not in pods"));
        let ip: Ipv4Addr = pod["ip"].as_str().expect("ip").parse().expect("IPv4");
        endpoints.push(EndpointInfo {
            name: key.to_owned(),
            namespace: pod["namespace"].as_str().expect("namespace").to_owned(),
            labels: labels(&pod["labels"]),
            service_account: None,
            ips: vec![ip],
            named_ports: served_ports(),
            local: true,
        });
    }
    let policies = step["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|p| {
            Policy::K8s(
                serde_json::from_value::<NetworkPolicy>(p.clone())
                    .unwrap_or_else(|e| panic!("policy {p}: {e}")),
            )
        })
        .collect();
    World {
        namespaces,
        endpoints,
        policies,
    }
}

fn rows(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("matrix rows")
        .iter()
        .map(|r| r.as_str().expect("row").to_owned())
        .collect()
}

#[test]
fn upstream_e2e_cases_agree_with_cyclonus() {
    let path = oracle_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let (mut cases, mut steps, mut cells) = (0, 0, 0usize);
    let mut mismatches = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).expect("oracle line is JSON");
        cases += 1;
        let index = &case["index"];
        let desc = case["description"].as_str().unwrap_or("");
        for (s, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
            steps += 1;
            let world = world_of(step);
            let order: Vec<String> = world.endpoints.iter().map(|e| e.name.clone()).collect();
            let expected = &step["expected"];
            let probes: Vec<String> = expected["combined"]
                .as_object()
                .expect("expected.combined")
                .keys()
                .cloned()
                .collect();
            let sim =
                simulate(&world, &probes).unwrap_or_else(|e| panic!("case {index} step {s}: {e}"));
            assert_eq!(sim.pods, order, "case {index} step {s}: pod order");
            for probe in &probes {
                let got = &sim.matrices[probe];
                for (kind, got) in [
                    ("combined", &got.combined),
                    ("ingress", &got.ingress),
                    ("egress", &got.egress),
                ] {
                    let want = rows(&expected[kind][probe]);
                    assert_eq!(want.len(), order.len(), "case {index} step {s}: rows");
                    for (r, (want_row, got_row)) in want.iter().zip(got).enumerate() {
                        for (c, (w, g)) in want_row.chars().zip(got_row.chars()).enumerate() {
                            if w == '.' {
                                continue;
                            }
                            cells += 1;
                            if w != g {
                                mismatches.push(format!(
                                    "case {index} ({desc}) step {s} {probe} {kind}: {} -> {}: expected {w}, got {g}",
                                    order[r], order[c]
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("{cases} cases, {steps} steps, {cells} probed cells compared");
    assert_eq!(cases, 13, "cases in {}", path.display());
    assert_eq!(steps, 23, "steps in {}", path.display());
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells disagree:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

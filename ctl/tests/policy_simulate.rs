//! `vsctl policy simulate --json`, the real binary, on a cluster written as
//! YAML from one step of the upstream NetworkPolicy e2e oracle: its output
//! must parse and agree with every probed cell of the step.
//!
//! The oracle is the repository's `tests/data/netpol/upstream-e2e-cases.jsonl`
//! (see `tests/data/README.md`); a missing oracle fails the test.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

fn oracle_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/netpol/upstream-e2e-cases.jsonl");
    assert!(p.is_file(), "NetworkPolicy oracle missing: {}", p.display());
    p
}

/// The step with the most policies in force (the first such): the richest
/// single step of the file.
fn richest_step(text: &str) -> (String, Value) {
    let mut best: Option<(usize, String, Value)> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).expect("oracle line is JSON");
        for (s, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
            let n = step["policies"].as_array().map_or(0, Vec::len);
            if best.as_ref().is_none_or(|(m, _, _)| n > *m) {
                best = Some((n, format!("case {} step {s}", case["index"]), step.clone()));
            }
        }
    }
    let (_, name, step) = best.expect("a step");
    (name, step)
}

/// The step as a multi-document YAML file: Namespaces, Pods (with the
/// named ports of the oracle's topology, in `pod_order`) and the policies.
fn yaml_of(step: &Value) -> String {
    let mut docs: Vec<Value> = Vec::new();
    for (name, labels) in step["namespaces"].as_object().expect("namespaces") {
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": name, "labels": labels}}));
    }
    let mut ports = Vec::new();
    for port in [80, 81] {
        for proto in ["TCP", "UDP", "SCTP"] {
            ports.push(
                json!({"name": format!("serve-{port}-{}", proto.to_lowercase()),
                              "containerPort": port, "protocol": proto}),
            );
        }
    }
    let pods = step["pods"].as_array().expect("pods");
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
            .expect("pod of pod_order");
        docs.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod["name"], "namespace": pod["namespace"], "labels": pod["labels"]},
            "spec": {"containers": [{"name": "cont", "image": "agnhost", "ports": ports}]},
            "status": {"podIP": pod["ip"]}}));
    }
    docs.extend(
        step["policies"]
            .as_array()
            .expect("policies")
            .iter()
            .cloned(),
    );
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(d).expect("to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn vsctl_policy_simulate_json_agrees_with_the_oracle() {
    let text = std::fs::read_to_string(oracle_path()).expect("read oracle");
    let (name, step) = richest_step(&text);
    let yaml = yaml_of(&step);
    let dir = std::env::temp_dir().join(format!("vsctl-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("cluster.yaml");
    std::fs::write(&file, &yaml).expect("write cluster");

    let expected = &step["expected"];
    let probes: Vec<String> = expected["combined"]
        .as_object()
        .expect("expected.combined")
        .keys()
        .cloned()
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vsctl"));
    cmd.args(["policy", "simulate", "-f"])
        .arg(&file)
        .arg("--json");
    for p in &probes {
        cmd.args(["--port", p]);
    }
    // A socket nobody listens on: the command must not need the switch.
    cmd.env("VSWITCH_SOCKET", dir.join("absent.sock"));
    let out = cmd.output().expect("run vsctl");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "vsctl failed on {name}: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");
    assert_eq!(got["pods"], step["pod_order"], "{name}: pods");
    let mut wrong = Vec::new();
    let mut cells = 0;
    for p in &probes {
        for kind in ["combined", "ingress", "egress"] {
            let want = expected[kind][p].as_array().expect("expected rows");
            let have = got["matrices"][p][kind]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no {kind} matrix for {p} in {stdout}"));
            assert_eq!(want.len(), have.len(), "{name} {p} {kind}: rows");
            for (r, (w, h)) in want.iter().zip(have).enumerate() {
                let (w, h) = (w.as_str().expect("row"), h.as_str().expect("row"));
                assert_eq!(w.len(), h.len(), "{name} {p} {kind}: row {r}");
                for (c, (a, b)) in w.chars().zip(h.chars()).enumerate() {
                    if a == '.' {
                        continue;
                    }
                    cells += 1;
                    if a != b {
                        wrong.push(format!("{p} {kind} [{r}][{c}]: expected {a}, got {b}"));
                    }
                }
            }
        }
    }
    assert!(cells > 0, "{name}: nothing probed");
    assert!(wrong.is_empty(), "{name}:\n{}", wrong.join("\n"));
}

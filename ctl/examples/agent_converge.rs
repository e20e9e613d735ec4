//! How long the node agent takes to bring a cluster change into vswitchd:
//! creates pods (with their addresses written into status, as the kubelet
//! would) and policies through a real kube-apiserver (testkube) and times,
//! per object, from the API call that completed it to the moment vswitchd's
//! state shows it. Prints p50/p90/p99/max per kind. Run as root through
//! `perf/agent-converge [PODS] [POLICIES]` (defaults 1000 and 100).

use api::{Client, Reply, Request};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(kind: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "RESULT {kind}: n={} p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.9).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pods: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let policies: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let vsctl = std::env::var_os("VSCTL")
        .map(PathBuf::from)
        .expect("VSCTL: the vsctl binary");
    let server = testsupport::KubeServer::start();
    // the vswitchd that VSWITCHD names (testsupport::vswitchd)
    let sw = testsupport::Vswitchd::new()
        .args(["--node", "n1"])
        .any_exit()
        .start();
    let (dir, sock) = (sw.dir.clone(), sw.sock.clone());
    let log = |n: &str| std::fs::File::create(dir.join(n)).expect("log");
    server.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: bench}\n",
    );
    let _agent = Kill(
        Command::new(&vsctl)
            .arg("--socket")
            .arg(&sock)
            .args(["agent", "--node", "n1", "--kubeconfig"])
            .arg(server.kubeconfig())
            .env("VSWITCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log("agent.log"))
            .stderr(log("agent.err"))
            .spawn()
            .expect("agent"),
    );
    // the agent's first push: the namespace is there
    let t = Instant::now();
    loop {
        let seen = Client::connect(&sock)
            .ok()
            .and_then(|mut c| c.call(&Request::PolicyList {}).ok())
            .is_some_and(|r| matches!(r, Reply::Policies(p) if p.namespaces.iter().any(|n| n.name == "bench")));
        if seen {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the agent never pushed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // name -> when the API server had it complete
    let done: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = pods + policies;
    let watcher = {
        let (seen, sock) = (seen.clone(), sock.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let mut c = Client::connect(&sock).expect("connect");
            while seen.lock().map(|s| s.len()).unwrap_or(0) < total
                && t.elapsed() < Duration::from_secs(600)
            {
                if let Ok(Reply::Policies(p)) = c.call(&Request::PolicyList {}) {
                    let now = Instant::now();
                    let mut s = seen.lock().expect("lock");
                    for e in &p.pods {
                        s.entry(format!("pod {}", e.name)).or_insert(now);
                    }
                    for p in &p.policies {
                        s.entry(format!("policy {}", p.display_name()))
                            .or_insert(now);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let t_all = Instant::now();
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(cfg).expect("client");
        let nps: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
            Api::namespaced(client.clone(), "bench");
        for i in 0..policies {
            let np = serde_json::from_value(json!({
                "metadata": {"name": format!("np-{i}"), "namespace": "bench"},
                "spec": {"podSelector": {"matchLabels": {"app": format!("a{}", i % 10)}},
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": format!("r{i}")}}}],
                                      "ports": [{"port": 8000 + i, "protocol": "TCP"}]}]}
            }))
            .expect("policy");
            nps.create(&PostParams::default(), &np).await.expect("create policy");
            done.lock()
                .expect("lock")
                .insert(format!("policy bench/np-{i}"), Instant::now());
        }
        let api: Api<Pod> = Api::namespaced(client.clone(), "bench");
        let mut tasks = Vec::new();
        // 8 writers at a time, like a few kubelets starting pods
        let sem = Arc::new(tokio::sync::Semaphore::new(8));
        for i in 0..pods {
            let (api, done, sem) = (api.clone(), done.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await.expect("semaphore");
                let name = format!("p-{i}");
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": format!("a{}", i % 10)}},
                    "spec": {"nodeName": if i % 2 == 0 { "n1" } else { "n2" },
                             "automountServiceAccountToken": false,
                             "containers": [{"name": "c", "image": "x"}]}
                }))
                .expect("pod");
                api.create(&PostParams::default(), &pod).await.expect("create pod");
                let ip = format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
                let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("pod status");
                done.lock()
                    .expect("lock")
                    .insert(format!("pod bench/{name}"), Instant::now());
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
    });
    let created = t_all.elapsed();
    watcher.join().expect("watcher");
    let all = t_all.elapsed();
    let done = done.lock().expect("lock");
    let seen = seen.lock().expect("lock");
    let mut pod_lat = Vec::new();
    let mut pol_lat = Vec::new();
    let mut missing = 0;
    for (name, t) in done.iter() {
        match seen.get(name) {
            Some(s) => {
                let d = s.saturating_duration_since(*t);
                if name.starts_with("pod ") {
                    pod_lat.push(d)
                } else {
                    pol_lat.push(d)
                }
            }
            None => missing += 1,
        }
    }
    println!(
        "created {pods} pods and {policies} policies in {:.1}s; all in vswitchd after {:.1}s; missing {missing}",
        created.as_secs_f64(),
        all.as_secs_f64()
    );
    report("policy create-to-vswitchd", pol_lat);
    report("pod ip-to-vswitchd", pod_lat);
    assert_eq!(
        missing,
        0,
        "objects never reached vswitchd (logs in {})",
        dir.display()
    );
}

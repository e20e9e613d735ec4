//! Agent convergence benchmark: how long after an object is complete in the
//! API server does vswitchd hold it? A real kube-apiserver (testkube), a real
//! vswitchd with no ports and `vsctl agent` between them; 1,000 pods (each
//! complete when its IP is written into its status) and 100 NetworkPolicies
//! are created through the API, and a poller reads vswitchd's policy state
//! every few milliseconds. Prints p50/p99/max per kind and the time until
//! the last object arrived.
//!
//!   sudo target/release/agent-converge [--pods 1000] [--policies 100] [--node-share 0.5]
//!
//! Needs root (hugepages) and builds the API server when it is not cached.

use api::{Client, Reply, Request};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    #[arg(long, default_value_t = 100)]
    policies: usize,
    /// Share of the pods scheduled on the agent's own node (the rest are
    /// remote: they only feed selectors).
    #[arg(long, default_value_t = 0.5)]
    node_share: f64,
    /// Requests to the API server in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

const NODE: &str = "bench-node";
const NS: &str = "bench";

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name(name)
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let kube = testkube::KubeServer::start();
    let work = std::env::temp_dir().join(format!("agent-converge-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let sock = work.join("vswitchd.sock");
    let vswitchd = Kill(
        Command::new(bin("vswitchd"))
            .arg("--socket")
            .arg(&sock)
            .args([
                "--file-prefix",
                "agentconv",
                "--lcores",
                "0@0,1@1",
                "--node",
                NODE,
            ])
            .arg("--state-dir")
            .arg(work.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("vswitchd.log"))?)
            .spawn()?,
    );
    wait_socket(&sock)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = rt.block_on(kube_client(kube.kubeconfig()))?;
    rt.block_on(setup(&client))?;
    let agent = Kill(
        Command::new(bin("vsctl"))
            .arg("--socket")
            .arg(&sock)
            .args([
                "agent",
                "--node",
                NODE,
                "--health-listen",
                "127.0.0.1:19399",
            ])
            .arg("--kubeconfig")
            .arg(kube.kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("agent.log"))?)
            .spawn()?,
    );
    wait_ready("127.0.0.1:19399")?;

    // the poller: first time each pod / policy is seen in vswitchd
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (seen, stop, sock) = (seen.clone(), stop.clone(), sock.clone());
        std::thread::spawn(move || poll(&sock, &seen, &stop))
    };

    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t0 = Instant::now();
    rt.block_on(create_pods(&client, &args, &created))?;
    let pods_done = t0.elapsed();
    let t1 = Instant::now();
    rt.block_on(create_policies(&client, &args, &created))?;
    let pols_done = t1.elapsed();

    let want = args.pods + args.policies;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = {
            let s = seen.lock().unwrap_or_else(|e| e.into_inner());
            let c = created.lock().unwrap_or_else(|e| e.into_inner());
            c.keys().filter(|k| s.contains_key(*k)).count()
        };
        if n >= want {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {n} of {want} objects reached vswitchd in 120 s").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();

    let s = seen.lock().unwrap_or_else(|e| e.into_inner());
    let c = created.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "created {} pods in {:.2} s and {} policies in {:.2} s through the API server",
        args.pods,
        pods_done.as_secs_f64(),
        args.policies,
        pols_done.as_secs_f64()
    );
    println!("| kind | objects | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (kind, prefix) in [("pod", "pod:"), ("policy", "policy:")] {
        let mut lat: Vec<f64> = c
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, t)| {
                s.get(k)
                    .map(|v| v.saturating_duration_since(*t).as_secs_f64() * 1e3)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        println!(
            "| {kind} | {} | {:.1} | {:.1} | {:.1} |",
            lat.len(),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(0.0)
        );
    }
    println!(
        "RESULT all {want} objects in vswitchd {:.2} s after the first create",
        total.as_secs_f64()
    );
    drop(agent);
    drop(vswitchd);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn kube_client(kubeconfig: &Path) -> Result<kube::Client, BoxError> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

async fn setup(client: &kube::Client) -> Result<(), BoxError> {
    let pp = PostParams::default();
    for (name, ip) in [(NODE, "192.168.50.1"), ("other-node", "192.168.50.2")] {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": {"projectcalico.org/IPv4Address": format!("{ip}/24")}},
        }))?;
        Api::<Node>::all(client.clone()).create(&pp, &node).await?;
    }
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": NS, "labels": {"team": "bench"}},
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&pp, &ns)
        .await?;
    Ok(())
}

async fn create_pods(
    client: &kube::Client,
    args: &Args,
    created: &Mutex<HashMap<String, Instant>>,
) -> Result<(), BoxError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    let local = (args.pods as f64 * args.node_share).round() as usize;
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = Vec::new();
    for i in 0..args.pods {
        let (api, sem) = (api.clone(), sem.clone());
        let node = if i < local { NODE } else { "other-node" };
        tasks.push(async move {
            let _permit = sem.acquire().await;
            let name = format!("p{i:04}");
            let ip = format!("10.80.{}.{}", i / 250, i % 250 + 1);
            let pod: Pod = serde_json::from_value::<Pod>(serde_json::json!({
                "metadata": {"name": name, "labels": {"app": format!("a{}", i % 10)}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "none",
                    "ports": [{"name": "http", "containerPort": 80}]}]},
            }))?;
            api.create(&PostParams::default(), &pod).await?;
            let status = serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            Ok::<(String, Instant), BoxError>((format!("pod:{NS}/{name}"), Instant::now()))
        });
    }
    for r in futures_join(tasks).await {
        let (k, t) = r?;
        created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, t);
    }
    Ok(())
}

async fn create_policies(
    client: &kube::Client,
    args: &Args,
    created: &Mutex<HashMap<String, Instant>>,
) -> Result<(), BoxError> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = Vec::new();
    for i in 0..args.policies {
        let (api, sem) = (api.clone(), sem.clone());
        tasks.push(async move {
            let _permit = sem.acquire().await;
            let name = format!("np{i:03}");
            let np: NetworkPolicy = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {
                    "podSelector": {"matchLabels": {"app": format!("a{}", i % 10)}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("a{}", (i + 1) % 10)}}}],
                                 "ports": [{"protocol": "TCP", "port": 80 + (i as i32 % 5)}]}],
                },
            }))?;
            api.create(&PostParams::default(), &np).await?;
            Ok::<(String, Instant), BoxError>((format!("policy:{NS}/{name}"), Instant::now()))
        });
    }
    for r in futures_join(tasks).await {
        let (k, t) = r?;
        created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, t);
    }
    Ok(())
}

/// Runs the futures concurrently (the semaphore bounds them) on the runtime.
async fn futures_join<F, T>(fs: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => panic!("a create task failed: {e}"),
        }
    }
    out
}

fn poll(sock: &Path, seen: &Mutex<HashMap<String, Instant>>, stop: &AtomicBool) {
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = Client::connect(sock).ok();
        }
        let Some(c) = client.as_mut() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        match c.call(&Request::PolicyList {}) {
            Ok(Reply::Policies(set)) => {
                let now = Instant::now();
                let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                for p in &set.pods {
                    if !p.ips.is_empty() {
                        s.entry(format!("pod:{}", p.name)).or_insert(now);
                    }
                }
                for p in &set.policies {
                    s.entry(format!("policy:{}", p.display_name()))
                        .or_insert(now);
                }
            }
            _ => client = None,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_socket(sock: &Path) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Client::connect(sock).is_err() {
        if Instant::now() > deadline {
            return Err("vswitchd did not open its control socket in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn wait_ready(addr: &str) -> Result<(), BoxError> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err("the agent did not become ready in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

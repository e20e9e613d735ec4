//! `vsctl agent`: the node agent. It watches the Kubernetes API (Pods,
//! Namespaces, Nodes, NetworkPolicies, Services and their endpoints,
//! Calico's IPPools, policies and tiers, and the IPAM blocks), folds the
//! cluster into one desired-state document for its node
//! ([`reconcile::reconcile`]) and pushes it to vswitchd whenever it
//! changes ([`push`]).
//!
//! Nothing is pushed until every watcher has listed once: the document
//! prunes pools and nodes it does not name, so a half-listed cluster would
//! remove what is still there.

pub mod discover;
pub mod events;
pub mod health;
pub mod metrics;
pub mod push;
pub mod reconcile;
pub mod watch;

use discover::Kind;
use push::{Outcome, Pusher};
use reconcile::{EndpointSource, Inputs, Reconciled, Skipped};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use watch::{WatchState, Watched};

/// Changes that come together (a Deployment's pods, a relist) make one
/// document.
pub const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often the connection to vswitchd is checked when nothing changes.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct AgentArgs {
    /// This node's name (its Node object; pods with this spec.nodeName are local).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// A kubeconfig file; without it, in-cluster credentials or $KUBECONFIG /
    /// ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve GET /healthz, /readyz, /status (JSON) and /metrics
    /// (Prometheus) on this address.
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<std::net::SocketAddr>,
}

/// What `/readyz` and `/status` report.
pub struct AgentStatus {
    pub heartbeat: Instant,
    pub node: String,
    pub endpoint_source: Option<EndpointSource>,
    pub watchers: Vec<(Kind, String, Arc<WatchState>)>,
    pub discovered: bool,
    /// The last push (or check) left vswitchd with the current document.
    pub in_sync: bool,
    pub pushes: u64,
    pub push_failures: u64,
    pub refusals: u64,
    pub resyncs: u64,
    /// Time spent in pushes vswitchd took, and in the last of them.
    pub push_seconds: f64,
    pub last_push_seconds: f64,
    pub last_error: Option<String>,
    pub skipped: Vec<Skipped>,
}

impl AgentStatus {
    fn new(node: &str) -> AgentStatus {
        AgentStatus {
            heartbeat: Instant::now(),
            node: node.to_owned(),
            endpoint_source: None,
            watchers: Vec::new(),
            discovered: false,
            in_sync: false,
            pushes: 0,
            push_failures: 0,
            refusals: 0,
            resyncs: 0,
            push_seconds: 0.0,
            last_push_seconds: 0.0,
            last_error: None,
            skipped: Vec::new(),
        }
    }

    /// Why the agent is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.discovered {
            return Some("API server not reached yet".into());
        }
        let unlisted: Vec<String> = self
            .watchers
            .iter()
            .filter(|(_, _, s)| !s.listed.load(Ordering::Acquire))
            .map(|(_, what, _)| what.clone())
            .collect();
        if !unlisted.is_empty() {
            return Some(format!("not listed yet: {}", unlisted.join(", ")));
        }
        if !self.in_sync {
            return Some(format!(
                "desired state not pushed: {}",
                self.last_error.as_deref().unwrap_or("pending")
            ));
        }
        None
    }

    pub fn report(&self) -> serde_json::Value {
        let watchers: Vec<serde_json::Value> = self
            .watchers
            .iter()
            .map(|(kind, what, s)| {
                serde_json::json!({
                    "kind": kind,
                    "resource": what,
                    "listed": s.listed.load(Ordering::Acquire),
                    "lists": s.lists.load(Ordering::Relaxed),
                    "events": s.events.load(Ordering::Relaxed),
                    "errors": s.errors.load(Ordering::Relaxed),
                })
            })
            .collect();
        let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
        for s in &self.skipped {
            *by_kind.entry(s.kind.as_str()).or_default() += 1;
        }
        serde_json::json!({
            "node": self.node,
            "ready": self.not_ready().is_none(),
            "not_ready": self.not_ready(),
            "endpoint_source": self.endpoint_source,
            "watchers": watchers,
            "in_sync": self.in_sync,
            "pushes": self.pushes,
            "push_failures": self.push_failures,
            "refusals": self.refusals,
            "resyncs": self.resyncs,
            "last_error": self.last_error,
            "skipped_by_kind": by_kind,
            "skipped": self.skipped,
        })
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VSWITCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the agent until it fails to start (it does not return otherwise).
pub fn run(args: &AgentArgs, socket: &Path) -> Result<(), String> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(run_async(args.clone(), socket.to_path_buf()))
}

async fn client(args: &AgentArgs) -> Result<kube::Client, String> {
    let config = match &args.kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes credentials: {e}"))?,
    };
    kube::Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

async fn run_async(args: AgentArgs, socket: PathBuf) -> Result<(), String> {
    let client = client(&args).await?;
    let status = Arc::new(Mutex::new(AgentStatus::new(&args.node)));
    if let Some(addr) = args.health_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--health-listen {addr}: {e}"))?;
        tracing::info!("health on http://{addr}/healthz, /readyz, /status");
        tokio::spawn(health::serve(l, status.clone()));
    }
    let beat = |status: &Mutex<AgentStatus>| {
        if let Ok(mut s) = status.lock() {
            s.heartbeat = Instant::now();
        }
    };
    let mut failures = 0u32;
    let resources = loop {
        beat(&status);
        match discover::discover(&client).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!("API discovery: {e} (retrying)");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(format!("API discovery: {e}"));
                }
                tokio::time::sleep(push::backoff(failures)).await;
                failures = failures.saturating_add(1);
            }
        }
    };
    let changed = Arc::new(Notify::new());
    let watched: Vec<Watched> = resources
        .watch
        .iter()
        .map(|(kind, ar)| watch::spawn(client.clone(), *kind, ar.clone(), changed.clone()))
        .collect();
    if let Ok(mut s) = status.lock() {
        s.discovered = true;
        s.endpoint_source = Some(resources.endpoint_source);
        s.watchers = watched
            .iter()
            .map(|w| {
                (
                    w.kind,
                    format!("{} {}", w.resource.api_version, w.resource.plural),
                    w.state.clone(),
                )
            })
            .collect();
    }
    main_loop(
        &args.node,
        resources.endpoint_source,
        watched,
        changed,
        Pusher::new(socket),
        status,
        events::spawn(client.clone(), &args.node),
    )
    .await;
    Ok(())
}

/// The stores as they are now.
pub fn inputs(node: &str, source: EndpointSource, watched: &[Watched]) -> Inputs {
    let mut i = Inputs {
        node: node.to_owned(),
        endpoint_source: Some(source),
        ..Inputs::default()
    };
    for w in watched {
        let objs = w.objects();
        let slot = match w.kind {
            Kind::Pods => &mut i.pods,
            Kind::Namespaces => &mut i.namespaces,
            Kind::Nodes => &mut i.nodes,
            Kind::K8sPolicies => &mut i.k8s_policies,
            Kind::Services => &mut i.services,
            Kind::Endpoints => &mut i.endpoints,
            Kind::Pools => &mut i.pools,
            Kind::CalicoPolicies => &mut i.calico_policies,
            Kind::GlobalPolicies => &mut i.global_policies,
            Kind::Tiers => &mut i.tiers,
            Kind::Blocks => &mut i.blocks,
        };
        *slot = objs;
    }
    i
}

async fn main_loop(
    node: &str,
    source: EndpointSource,
    watched: Vec<Watched>,
    changed: Arc<Notify>,
    pusher: Pusher,
    status: Arc<Mutex<AgentStatus>>,
    events: tokio::sync::watch::Sender<Vec<events::Unusable>>,
) {
    let resources: Vec<(Kind, kube::core::ApiResource)> = watched
        .iter()
        .map(|w| (w.kind, w.resource.clone()))
        .collect();
    let mut pusher = Some(pusher);
    let mut doc: Option<Arc<api::Desired>> = None;
    let mut dirty = true;
    let mut failures = 0u32;
    loop {
        if let Ok(mut s) = status.lock() {
            s.heartbeat = Instant::now();
        }
        let wait = if failures > 0 {
            push::backoff(failures)
        } else {
            CHECK_EVERY
        };
        tokio::select! {
            _ = changed.notified() => {
                dirty = true;
                tokio::time::sleep(DEBOUNCE).await;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        let all_listed = watched
            .iter()
            .all(|w| w.state.listed.load(Ordering::Acquire));
        if dirty && all_listed {
            dirty = false;
            let inputs = inputs(node, source, &watched);
            let r: Option<(Inputs, Reconciled)> = tokio::task::spawn_blocking(move || {
                let r = reconcile::reconcile(&inputs);
                (inputs, r)
            })
            .await
            .ok();
            if let Some((inputs, r)) = r {
                // to the Events' task, which posts what is new; never waits
                let unusable = events::unusable(&r.skipped, &inputs, &resources);
                events.send_if_modified(|v| {
                    let new = *v != unusable;
                    if new {
                        *v = unusable;
                    }
                    new
                });
                if let Ok(mut s) = status.lock() {
                    s.skipped = r.skipped;
                }
                doc = Some(Arc::new(r.doc));
            }
        }
        let Some(mut p) = pusher.take() else {
            return;
        };
        let d = doc.clone();
        let began = Instant::now();
        let Ok((p, outcome)) = tokio::task::spawn_blocking(move || {
            let o = p.step(d.as_deref());
            (p, o)
        })
        .await
        else {
            tracing::error!("pusher panicked");
            return;
        };
        let resyncs = p.resyncs;
        pusher = Some(p);
        let Ok(mut s) = status.lock() else {
            return;
        };
        s.resyncs = resyncs;
        match outcome {
            Outcome::Pushed => {
                failures = 0;
                s.pushes += 1;
                s.last_push_seconds = began.elapsed().as_secs_f64();
                s.push_seconds += s.last_push_seconds;
                s.in_sync = true;
                s.last_error = None;
                if let Some(d) = &doc {
                    tracing::info!(
                        "pushed: {} pools, {} nodes, {} namespaces, {} policies, {} pods, {} services",
                        d.pools.len(),
                        d.nodes.len(),
                        d.namespaces.as_ref().map_or(0, Vec::len),
                        d.policies.as_ref().map_or(0, Vec::len),
                        d.pods.as_ref().map_or(0, Vec::len),
                        d.services.as_ref().map_or(0, Vec::len),
                    );
                }
            }
            Outcome::Unchanged => {
                failures = 0;
                // in sync once something was pushed (or refused: that stays)
                if doc.is_none() {
                    s.in_sync = false;
                }
            }
            Outcome::Unreachable(e) => {
                failures = failures.saturating_add(1);
                s.push_failures += 1;
                s.in_sync = false;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!("vswitchd: {e} (retrying)");
                }
                s.last_error = Some(e);
            }
            Outcome::Refused(e) => {
                failures = 0;
                s.refusals += 1;
                s.in_sync = false;
                tracing::error!("vswitchd refused the desired state: {e}");
                s.last_error = Some(format!("refused: {e}"));
            }
        }
    }
}

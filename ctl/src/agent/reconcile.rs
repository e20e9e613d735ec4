//! Cluster state to the node's desired-state document: a pure function of
//! the watchers' stores, so that it is tested without a cluster.
//!
//! An object that cannot be used (a bad address, an unknown field in a
//! policy, a selector that does not parse) is left out and reported in
//! [`Reconciled::skipped`]; the rest of the document is unaffected. A policy
//! is never just left out, though: that would lift the isolation it gives.
//! In its place goes a stand-in with its name, selector and directions and
//! no rules, which denies everything in those directions to the pods it
//! selects (every pod of its namespace, or of the cluster for a global one,
//! when even its selector cannot be used); the report says so.

use api::policy::{
    CalicoNetworkPolicy, EndpointInfo, GlobalNetworkPolicy, K8sProtocol, NamespaceInfo,
    NetworkPolicy, Policy, Tier,
};
use api::{Backend, Desired, IpPool, MacAddr, Node, Service, ServicePort};
use kube::api::DynamicObject;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Where Service backends come from (see `discover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointSource {
    /// discovery.k8s.io/v1 EndpointSlice.
    SliceV1,
    /// discovery.k8s.io/v1beta1 EndpointSlice (Kubernetes 1.17 to 1.24).
    SliceV1beta1,
    /// core v1 Endpoints.
    Endpoints,
}

/// The watchers' stores, as lists of objects.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// This node's name (its pods are `local`).
    pub node: String,
    pub pods: Vec<Arc<DynamicObject>>,
    pub namespaces: Vec<Arc<DynamicObject>>,
    pub nodes: Vec<Arc<DynamicObject>>,
    pub k8s_policies: Vec<Arc<DynamicObject>>,
    pub services: Vec<Arc<DynamicObject>>,
    /// EndpointSlices or Endpoints, as `endpoint_source` says.
    pub endpoints: Vec<Arc<DynamicObject>>,
    pub endpoint_source: Option<EndpointSource>,
    pub pools: Vec<Arc<DynamicObject>>,
    pub calico_policies: Vec<Arc<DynamicObject>>,
    pub global_policies: Vec<Arc<DynamicObject>>,
    pub tiers: Vec<Arc<DynamicObject>>,
    pub blocks: Vec<Arc<DynamicObject>>,
}

/// An object left out of the document, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Skipped {
    /// e.g. "Pod", "NetworkPolicy (projectcalico.org/v3)".
    pub kind: String,
    /// `namespace/name` or `name`.
    pub name: String,
    pub reason: String,
    /// For a policy: the directions ("ingress", "egress") in which the
    /// endpoints it selects are isolated in its place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolated: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reconciled {
    pub doc: Desired,
    pub skipped: Vec<Skipped>,
}

/// Annotations Calico's node agent writes on Node objects.
pub const ANN_IPV4: &str = "projectcalico.org/IPv4Address";
pub const ANN_VXLAN_IP: &str = "projectcalico.org/IPv4VXLANTunnelAddr";
pub const ANN_VXLAN_MAC: &str = "projectcalico.org/VXLANTunnelMACAddr";
pub const ANN_IPIP_IP: &str = "projectcalico.org/IPv4IPIPTunnelAddr";
/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

fn full_name(o: &DynamicObject) -> String {
    let name = o.metadata.name.clone().unwrap_or_default();
    match o.metadata.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name,
    }
}

/// The object as the API server sent it, for the typed readers.
fn value(o: &DynamicObject) -> Value {
    let mut v = o.data.clone();
    if let Value::Object(m) = &mut v {
        m.insert(
            "metadata".into(),
            serde_json::to_value(&o.metadata).unwrap_or(Value::Null),
        );
    }
    v
}

/// Collects the skipped objects.
struct Skips(Vec<Skipped>);

impl Skips {
    fn add(&mut self, kind: &str, o: &DynamicObject, reason: impl Into<String>) {
        let s = Skipped {
            kind: kind.to_owned(),
            name: full_name(o),
            reason: reason.into(),
            isolated: Vec::new(),
        };
        tracing::warn!("{} {} left out: {}", s.kind, s.name, s.reason);
        self.0.push(s);
    }

    /// A policy that cannot be used, and the stand-in that isolates in its
    /// place. Its first reason is kept: the stand-in's own troubles follow
    /// from it.
    fn isolate(&mut self, stand_in: &Policy, reason: String) {
        let (kind, name) = (stand_in.kind(), stand_in.display_name());
        let isolated = directions(stand_in);
        match self.0.iter_mut().find(|s| s.kind == kind && s.name == name) {
            Some(s) => s.isolated = isolated,
            None => {
                tracing::warn!(
                    "{kind} {name} cannot be used ({reason}): the endpoints it selects are isolated ({})",
                    isolated.join(", ")
                );
                self.0.push(Skipped {
                    kind: kind.to_owned(),
                    name,
                    reason,
                    isolated,
                });
            }
        }
    }
}

/// Folds the stores into the document for `inputs.node`.
pub fn reconcile(inputs: &Inputs) -> Reconciled {
    let mut skips = Skips(Vec::new());
    let pools = pools(&inputs.pools, &mut skips);
    let nodes = nodes(&inputs.nodes, &inputs.blocks, &mut skips);
    let namespaces = namespaces(&inputs.namespaces);
    let pods = pods(&inputs.pods, &inputs.node, &mut skips);
    let policies = policies(inputs, &namespaces, &pods, &mut skips);
    let services = services(
        &inputs.services,
        &inputs.endpoints,
        inputs.endpoint_source,
        &mut skips,
    );
    let mut skipped = skips.0;
    skipped.sort();
    Reconciled {
        doc: Desired {
            pools,
            nodes,
            endpoints: Vec::new(),
            namespaces: Some(namespaces),
            policies: Some(policies),
            pods: Some(pods),
            services: Some(services),
            prune: true,
        },
        skipped,
    }
}

// --- pools, nodes, blocks ----------------------------------------------------

fn pools(objs: &[Arc<DynamicObject>], skips: &mut Skips) -> Vec<IpPool> {
    let mut out: Vec<IpPool> = Vec::new();
    for o in objs {
        let mut spec = o.data.get("spec").cloned().unwrap_or(Value::Null);
        let Value::Object(m) = &mut spec else {
            skips.add("IPPool", o, "no spec");
            continue;
        };
        m.insert("name".into(), Value::String(full_name(o)));
        match serde_json::from_value::<IpPool>(spec) {
            Ok(p) => match p.validate() {
                Ok(()) => out.push(p),
                Err(e) => skips.add("IPPool", o, e),
            },
            Err(e) => skips.add("IPPool", o, e.to_string()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Blocks by node, from IPAMBlocks' `spec.affinity` ("host:<node>").
fn blocks_by_node(objs: &[Arc<DynamicObject>]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in objs {
        let spec = &o.data["spec"];
        if spec["deleted"].as_bool() == Some(true) {
            continue;
        }
        let (Some(cidr), Some(aff)) = (spec["cidr"].as_str(), spec["affinity"].as_str()) else {
            continue;
        };
        if let Some(node) = aff.strip_prefix("host:") {
            out.entry(node.to_owned())
                .or_default()
                .insert(cidr.to_owned());
        }
    }
    out
}

fn nodes(
    objs: &[Arc<DynamicObject>],
    blocks: &[Arc<DynamicObject>],
    skips: &mut Skips,
) -> Vec<Node> {
    let by_node = blocks_by_node(blocks);
    let mut out = Vec::new();
    for o in objs {
        match node(o, &by_node) {
            Ok(n) => out.push(n),
            Err(e) => skips.add("Node", o, e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn node(o: &DynamicObject, blocks: &BTreeMap<String, BTreeSet<String>>) -> Result<Node, String> {
    let name = full_name(o);
    let ann = o.metadata.annotations.clone().unwrap_or_default();
    let addr = match ann.get(ANN_IPV4).filter(|a| !a.is_empty()) {
        Some(a) => Some(a.clone()),
        None => o.data["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == "InternalIP")
            .filter_map(|a| a["address"].as_str())
            .find_map(|a| a.parse::<Ipv4Addr>().ok())
            .map(|ip| format!("{ip}/32")),
    };
    let ip = |key: &str| -> Result<Option<Ipv4Addr>, String> {
        match ann.get(key).filter(|a| !a.is_empty()) {
            None => Ok(None),
            Some(a) => a
                .parse()
                .map(Some)
                .map_err(|_| format!("annotation {key}: '{a}' is not an IPv4 address")),
        }
    };
    let vxlan_tunnel_mac = match ann.get(ANN_VXLAN_MAC).filter(|a| !a.is_empty()) {
        None => None,
        Some(m) => Some(
            m.parse::<MacAddr>()
                .map_err(|_| format!("annotation {ANN_VXLAN_MAC}: '{m}' is not a MAC address"))?,
        ),
    };
    let n = Node {
        blocks: blocks
            .get(&name)
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default(),
        vxlan_tunnel_ip: ip(ANN_VXLAN_IP)?,
        vxlan_tunnel_mac,
        ipip_tunnel_ip: ip(ANN_IPIP_IP)?,
        ..Node::new(&name, &[])
    };
    let n = Node {
        addresses: addr.into_iter().collect(),
        ..n
    };
    n.validate()?;
    Ok(n)
}

// --- namespaces and pods -------------------------------------------------------

fn namespaces(objs: &[Arc<DynamicObject>]) -> Vec<NamespaceInfo> {
    let mut out: Vec<NamespaceInfo> = objs
        .iter()
        .map(|o| NamespaceInfo {
            name: full_name(o),
            labels: o.metadata.labels.clone().unwrap_or_default(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn pods(objs: &[Arc<DynamicObject>], node: &str, skips: &mut Skips) -> Vec<EndpointInfo> {
    let mut out = Vec::new();
    for o in objs {
        let spec = &o.data["spec"];
        let phase = o.data["status"]["phase"].as_str();
        // host-network pods have the node's address, and finished pods none
        if spec["hostNetwork"].as_bool() == Some(true)
            || matches!(phase, Some("Succeeded") | Some("Failed"))
        {
            continue;
        }
        let local = spec["nodeName"].as_str() == Some(node);
        let ep = serde_json::from_value::<api::policy::Pod>(value(o))
            .map_err(|e| e.to_string())
            .and_then(|p| p.endpoint(local));
        match ep {
            // a pod of this node is named before it has an address: vswitchd
            // lets its interface pass nothing until its labels are known,
            // and CNI ADD comes before the address is in the API
            Ok(ep) if ep.ips.is_empty() && !local => {}
            Ok(ep) => out.push(ep),
            Err(e) => skips.add("Pod", o, e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

// --- policies --------------------------------------------------------------

/// The policies of one kind that parse, and stand-ins for those that do not.
fn typed<T: for<'de> Deserialize<'de>>(
    kind: &str,
    objs: &[Arc<DynamicObject>],
    skips: &mut Skips,
    wrap: impl Fn(T) -> Policy,
) -> Vec<Policy> {
    let mut out = Vec::new();
    for o in objs {
        let raw = value(o);
        match serde_json::from_value::<T>(raw.clone()) {
            Ok(p) => out.push(wrap(p)),
            Err(e) => match stand_in(kind, &raw, Scope::Selected)
                .or_else(|| stand_in(kind, &raw, Scope::All))
            {
                Some(p) => {
                    skips.isolate(&p, e.to_string());
                    out.push(p);
                }
                None => skips.add(kind, o, e.to_string()),
            },
        }
    }
    out
}

/// The kinds policies are reported as (`Skipped::kind`).
pub const K8S_POLICY: &str = "NetworkPolicy (networking.k8s.io/v1)";
pub const CALICO_POLICY: &str = "NetworkPolicy (projectcalico.org/v3)";
pub const GLOBAL_POLICY: &str = "GlobalNetworkPolicy";

/// Whom a stand-in isolates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The endpoints the policy's own selectors select.
    Selected,
    /// Every endpoint of its namespace (of the cluster for a global policy).
    All,
}

/// A policy with the name, tier, order, selectors and directions of `raw`
/// (a policy of `kind` as the API server has it, or as serialized) and no
/// rules: in Calico's and Kubernetes' semantics it isolates what it
/// selects in those directions. `None` for a kind that is no policy.
fn stand_in(kind: &str, raw: &Value, scope: Scope) -> Option<Policy> {
    let spec = &raw["spec"];
    let rules = |k: &str| spec[k].as_array().is_some_and(|a| !a.is_empty());
    let mut meta = serde_json::Map::new();
    for k in ["name", "namespace"] {
        if let Some(v) = raw["metadata"].get(k).filter(|v| v.is_string()) {
            meta.insert(k.into(), v.clone());
        }
    }
    let listed = |k: &str| -> Option<Vec<String>> {
        let t: Vec<String> = spec[k]
            .as_array()?
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .filter(|t| t == "Ingress" || t == "Egress")
            .collect();
        (!t.is_empty()).then_some(t)
    };
    let mut out = serde_json::Map::new();
    match kind {
        K8S_POLICY => {
            let types = listed("policyTypes").unwrap_or_else(|| {
                let mut t = vec!["Ingress".to_owned()];
                if rules("egress") {
                    t.push("Egress".into());
                }
                t
            });
            let selector = match scope {
                Scope::Selected => spec["podSelector"].clone(),
                Scope::All => Value::Null,
            };
            if !selector.is_null() {
                out.insert("podSelector".into(), selector);
            }
            out.insert("policyTypes".into(), types.into());
        }
        CALICO_POLICY | GLOBAL_POLICY => {
            let types = listed("types").unwrap_or_else(|| {
                let (i, e) = match (rules("ingress"), rules("egress")) {
                    (_, false) => (true, false),
                    (false, true) => (false, true),
                    (true, true) => (true, true),
                };
                [(i, "Ingress"), (e, "Egress")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, t)| (*t).to_owned())
                    .collect()
            });
            let mut keep = vec!["order"];
            if scope == Scope::Selected {
                keep.extend([
                    "tier",
                    "selector",
                    "namespaceSelector",
                    "serviceAccountSelector",
                ]);
            }
            if kind == CALICO_POLICY {
                keep.retain(|k| *k != "namespaceSelector");
            }
            for k in keep {
                if let Some(v) = spec.get(k).filter(|v| !v.is_null()) {
                    out.insert(k.into(), v.clone());
                }
            }
            out.insert("types".into(), types.into());
        }
        _ => return None,
    }
    let v = serde_json::json!({"metadata": meta, "spec": out});
    match kind {
        K8S_POLICY => serde_json::from_value(v).ok().map(Policy::K8s),
        CALICO_POLICY => serde_json::from_value(v).ok().map(Policy::Calico),
        _ => serde_json::from_value(v).ok().map(Policy::Global),
    }
}

/// The stand-in for a typed policy that cannot be used: its selectors
/// while they can be, else everything in its reach.
fn stand_in_for(p: &Policy, scope: Scope) -> Option<Policy> {
    let raw = match p {
        Policy::K8s(x) => serde_json::to_value(x),
        Policy::Calico(x) => serde_json::to_value(x),
        Policy::Global(x) => serde_json::to_value(x),
        Policy::Tier(_) => return None,
    }
    .ok()?;
    stand_in(p.kind(), &raw, scope)
}

/// The directions a stand-in isolates, for the report.
fn directions(p: &Policy) -> Vec<String> {
    let (i, e) = match p {
        Policy::K8s(x) => x.spec.effective_types(),
        Policy::Calico(x) => {
            api::policy::effective_types(&x.spec.types, &x.spec.ingress, &x.spec.egress)
        }
        Policy::Global(x) => {
            api::policy::effective_types(&x.spec.types, &x.spec.ingress, &x.spec.egress)
        }
        Policy::Tier(_) => (false, false),
    };
    [(i, "ingress"), (e, "egress")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, d)| (*d).to_owned())
        .collect()
}

fn policy_key(p: &Policy) -> (u8, String) {
    let k = match p {
        Policy::Tier(_) => 0,
        Policy::K8s(_) => 1,
        Policy::Calico(_) => 2,
        Policy::Global(_) => 3,
    };
    (k, p.display_name())
}

fn policies(
    inputs: &Inputs,
    namespaces: &[NamespaceInfo],
    pods: &[EndpointInfo],
    skips: &mut Skips,
) -> Vec<Policy> {
    let mut all = typed::<Tier>("Tier", &inputs.tiers, skips, Policy::Tier);
    all.extend(typed::<NetworkPolicy>(
        K8S_POLICY,
        &inputs.k8s_policies,
        skips,
        Policy::K8s,
    ));
    all.extend(typed::<CalicoNetworkPolicy>(
        CALICO_POLICY,
        &inputs.calico_policies,
        skips,
        Policy::Calico,
    ));
    all.extend(typed::<GlobalNetworkPolicy>(
        GLOBAL_POLICY,
        &inputs.global_policies,
        skips,
        Policy::Global,
    ));
    // each policy alone: selectors, ports, nets
    let mut lowerer = policy::model::Lowerer::new();
    let mut ok: Vec<Policy> = Vec::new();
    for p in all {
        if matches!(p, Policy::Tier(_)) {
            ok.push(p);
            continue;
        }
        let Err(e) = lowerer.lower(&p) else {
            ok.push(p);
            continue;
        };
        let usable = [Scope::Selected, Scope::All]
            .into_iter()
            .filter_map(|scope| stand_in_for(&p, scope))
            .find(|s| lowerer.lower(s).is_ok());
        match usable {
            Some(s) => {
                skips.isolate(&s, e.to_string());
                ok.push(s);
            }
            None => skip_policy(skips, &p, e.to_string()),
        }
    }
    ok.sort_by_key(policy_key);
    // then together (tiers, names, what the set needs): what vswitchd
    // would refuse, replaced by its stand-in (its selectors, then everything
    // in its reach, in the default tier), or left out as a last resort, one
    // object at a time
    let mut world = policy::World {
        namespaces: namespaces.to_vec(),
        endpoints: pods.to_vec(),
        policies: ok,
    };
    let mut tries: BTreeMap<String, Scope> = BTreeMap::new();
    while !world.policies.is_empty() {
        let Err(e) = policy::Compiled::compile(&world) else {
            break;
        };
        let culprit = world
            .policies
            .iter()
            .position(|p| format!("{} {}", p.kind(), p.display_name()) == e.object);
        let Some(i) = culprit else {
            // not one policy's fault (e.g. a pod): vswitchd will say
            tracing::warn!("policy set does not compile: {e}");
            break;
        };
        let p = world.policies.remove(i);
        let key = e.object.clone();
        let next = match tries.get(&key) {
            None => Some(Scope::Selected),
            Some(Scope::Selected) => Some(Scope::All),
            Some(Scope::All) => None,
        };
        match next.and_then(|scope| Some((scope, stand_in_for(&p, scope)?))) {
            Some((scope, s)) => {
                tries.insert(key, scope);
                skips.isolate(&s, e.message.clone());
                world.policies.insert(i, s);
            }
            None => skip_policy(skips, &p, e.message.clone()),
        }
    }
    world.policies
}

fn skip_policy(skips: &mut Skips, p: &Policy, reason: String) {
    skips
        .0
        .retain(|s| !(s.kind == p.kind() && s.name == p.display_name()));
    let s = Skipped {
        kind: p.kind().to_owned(),
        name: p.display_name(),
        reason,
        isolated: Vec::new(),
    };
    tracing::warn!("{} {} left out: {}", s.kind, s.name, s.reason);
    skips.0.push(s);
}

// --- services --------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Option<Vec<String>>,
    #[serde(default)]
    conditions: Option<SliceConditions>,
    /// v1
    #[serde(default)]
    node_name: Option<String>,
    /// v1beta1: `kubernetes.io/hostname`
    #[serde(default)]
    topology: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct SliceConditions {
    #[serde(default)]
    ready: Option<bool>,
}

#[derive(Deserialize, Default, Clone)]
struct EpPort {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    protocol: Option<K8sProtocol>,
    #[serde(default)]
    port: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EndpointSlice {
    #[serde(default)]
    address_type: String,
    #[serde(default)]
    endpoints: Option<Vec<SliceEndpoint>>,
    #[serde(default)]
    ports: Option<Vec<EpPort>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EndpointsAddress {
    ip: String,
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EndpointsSubset {
    #[serde(default)]
    addresses: Option<Vec<EndpointsAddress>>,
    #[serde(default)]
    ports: Option<Vec<EpPort>>,
}

/// Ready addresses with their ports, from one slice or Endpoints object.
struct Ready {
    ports: Vec<EpPort>,
    /// (address, node)
    addrs: Vec<(Ipv4Addr, Option<String>)>,
}

/// The ready endpoints of every Service, by `namespace/name`.
fn ready_by_service(
    objs: &[Arc<DynamicObject>],
    source: Option<EndpointSource>,
    skips: &mut Skips,
) -> BTreeMap<String, Vec<Ready>> {
    let mut out: BTreeMap<String, Vec<Ready>> = BTreeMap::new();
    let Some(source) = source else {
        return out;
    };
    for o in objs {
        let ns = o.metadata.namespace.clone().unwrap_or_default();
        match source {
            EndpointSource::SliceV1 | EndpointSource::SliceV1beta1 => {
                let Some(svc) = o
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                else {
                    continue;
                };
                let s: EndpointSlice = match serde_json::from_value(o.data.clone()) {
                    Ok(s) => s,
                    Err(e) => {
                        skips.add("EndpointSlice", o, e.to_string());
                        continue;
                    }
                };
                if s.address_type != "IPv4" {
                    continue;
                }
                let mut addrs = Vec::new();
                for e in s.endpoints.unwrap_or_default() {
                    if e.conditions.and_then(|c| c.ready) == Some(false) {
                        continue;
                    }
                    let node = e.node_name.clone().or_else(|| {
                        e.topology
                            .as_ref()
                            .and_then(|t| t.get("kubernetes.io/hostname").cloned())
                    });
                    for a in e.addresses.unwrap_or_default() {
                        if let Ok(ip) = a.parse::<Ipv4Addr>() {
                            addrs.push((ip, node.clone()));
                        }
                    }
                }
                out.entry(format!("{ns}/{svc}")).or_default().push(Ready {
                    ports: s.ports.unwrap_or_default(),
                    addrs,
                });
            }
            EndpointSource::Endpoints => {
                let subsets = o.data.get("subsets").cloned().unwrap_or(Value::Null);
                let subsets: Option<Vec<EndpointsSubset>> = match serde_json::from_value(subsets) {
                    Ok(s) => s,
                    Err(e) => {
                        skips.add("Endpoints", o, e.to_string());
                        continue;
                    }
                };
                let entry = out.entry(full_name(o)).or_default();
                for s in subsets.unwrap_or_default() {
                    let addrs = s
                        .addresses
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|a| Some((a.ip.parse().ok()?, a.node_name)))
                        .collect();
                    entry.push(Ready {
                        ports: s.ports.unwrap_or_default(),
                        addrs,
                    });
                }
            }
        }
    }
    out
}

fn services(
    objs: &[Arc<DynamicObject>],
    endpoints: &[Arc<DynamicObject>],
    source: Option<EndpointSource>,
    skips: &mut Skips,
) -> Vec<Service> {
    let ready = ready_by_service(endpoints, source, skips);
    let mut out = Vec::new();
    for o in objs {
        match service(o, &ready) {
            Ok(Some(s)) => out.push(s),
            Ok(None) => {}
            Err(e) => skips.add("Service", o, e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SvcSpec {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, rename = "clusterIP")]
    cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    cluster_ips: Option<Vec<String>>,
    #[serde(default, rename = "externalIPs")]
    external_ips: Option<Vec<String>>,
    #[serde(default)]
    ports: Option<Vec<SvcPort>>,
    #[serde(default)]
    session_affinity: Option<String>,
    #[serde(default)]
    session_affinity_config: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SvcPort {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    protocol: Option<K8sProtocol>,
    port: i32,
    #[serde(default)]
    node_port: Option<i32>,
}

fn port16(p: i32, what: &str) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{what} {p} is not a port"))
}

/// One Service, or None for those the switch has nothing to do with
/// (headless, ExternalName, no IPv4 address).
fn service(
    o: &DynamicObject,
    ready: &BTreeMap<String, Vec<Ready>>,
) -> Result<Option<Service>, String> {
    let name = full_name(o);
    let spec: SvcSpec =
        serde_json::from_value(o.data["spec"].clone()).map_err(|e| e.to_string())?;
    let kind = spec.kind.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" || spec.cluster_ip.as_deref() == Some("None") {
        return Ok(None);
    }
    let mut ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.clone());
    }
    ips.extend(spec.external_ips.clone().unwrap_or_default());
    let mut cluster_ips: Vec<Ipv4Addr> = Vec::new();
    for a in ips.iter().filter(|a| !a.is_empty() && *a != "None") {
        match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => {
                if !cluster_ips.contains(&ip) {
                    cluster_ips.push(ip)
                }
            }
            Ok(std::net::IpAddr::V6(_)) => {}
            Err(_) => return Err(format!("'{a}' is not an IP address")),
        }
    }
    if cluster_ips.is_empty() {
        return Ok(None);
    }
    let node_ports = matches!(kind, "NodePort" | "LoadBalancer");
    let none = Vec::new();
    let slices = ready.get(&name).unwrap_or(&none);
    let mut ports = Vec::new();
    for p in spec.ports.unwrap_or_default() {
        let protocol = p.protocol.unwrap_or_default();
        let pname = p.name.clone().unwrap_or_default();
        let mut backends: BTreeSet<Backend> = BTreeSet::new();
        for r in slices {
            // the slice port of the same name and protocol carries the
            // resolved target port
            let Some(target) = r.ports.iter().find(|sp| {
                sp.name.clone().unwrap_or_default() == pname
                    && sp.protocol.unwrap_or_default() == protocol
            }) else {
                continue;
            };
            let Some(tp) = target.port.and_then(|t| port16(t, "port").ok()) else {
                continue;
            };
            for (ip, node) in &r.addrs {
                backends.insert(Backend {
                    ip: *ip,
                    port: tp,
                    node: node.clone(),
                });
            }
        }
        ports.push(ServicePort {
            name: p.name.filter(|n| !n.is_empty()),
            protocol,
            port: port16(p.port, "port")?,
            node_port: match p.node_port {
                Some(n) if node_ports && n != 0 => Some(port16(n, "nodePort")?),
                _ => None,
            },
            backends: backends.into_iter().collect(),
        });
    }
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c["clientIP"]["timeoutSeconds"].as_u64())
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let s = Service {
        name,
        cluster_ips,
        ports,
        affinity_timeout,
    };
    s.validate()?;
    Ok(Some(s))
}

#[cfg(test)]
mod tests;

//! `vsctl apply -f` and `vsctl delete -f`: files that hold the switch's own
//! objects (Calico IPPools, our Nodes and Endpoints) beside policy objects
//! (v1 Namespaces, Kubernetes NetworkPolicies, Calico NetworkPolicies,
//! GlobalNetworkPolicies and Tiers).
//!
//! Each kind has one parser: the switch's kinds go to [`crate::manifest`],
//! the policy kinds to the policy crate's loader, which checks them as the
//! switch will (selectors, actions, rules Calico refuses). Each parser reads
//! the file with the other group's documents blanked out line for line, so
//! that the document numbers and lines of its refusals are the file's.
//!
//! vswitchd takes the complete lists of namespaces and policies, so the CLI
//! reads the lists in force, merges the file into them by (kind, namespace,
//! name) as `kubectl apply` and `kubectl delete` do, and sends the result in
//! the one `Apply` that also carries the file's pools, nodes and endpoints.

use crate::manifest::{self, refusal, split_yaml_error};
use crate::{expect_done, reply_kind, write_json, Error};
use api::policy::{NamespaceInfo, Policy};
use api::{Client, Desired, PolicySet, Reply, Request};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

/// The kinds as `vsctl` names them: group-qualified where Kubernetes and
/// Calico use the same kind name.
pub const K8S_POLICY: &str = "NetworkPolicy.networking.k8s.io";
pub const CALICO_POLICY: &str = "NetworkPolicy.projectcalico.org";
pub const GLOBAL_POLICY: &str = "GlobalNetworkPolicy";
pub const TIER: &str = "Tier";
pub const NAMESPACE: &str = "Namespace";

const CALICO_GROUPS: [&str; 2] = ["projectcalico.org/v3", "crd.projectcalico.org/v1"];

const APPLY_KINDS: &str = "projectcalico.org/v3 IPPool, NetworkPolicy, GlobalNetworkPolicy, \
     Tier; networking.k8s.io/v1 NetworkPolicy; v1 Namespace; vswitch.dev/v1alpha1 Node, \
     Endpoint; or a List of Namespaces and policy objects";
const DELETE_KINDS: &str = "projectcalico.org/v3 NetworkPolicy, GlobalNetworkPolicy, Tier; \
     networking.k8s.io/v1 NetworkPolicy; v1 Namespace; or a List of them";

/// How an object is told from the others: kubectl's (kind, namespace,
/// name). The namespace is that of namespaced kinds only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
}

impl Key {
    pub fn of(p: &Policy) -> Key {
        let (kind, meta, namespaced) = match p {
            Policy::K8s(o) => (K8S_POLICY, &o.metadata, true),
            Policy::Calico(o) => (CALICO_POLICY, &o.metadata, true),
            Policy::Global(o) => (GLOBAL_POLICY, &o.metadata, false),
            Policy::Tier(o) => (TIER, &o.metadata, false),
        };
        Key {
            kind,
            namespace: namespaced.then(|| meta.namespace_or_default().to_owned()),
            name: meta.name.clone(),
        }
    }

    pub fn of_namespace(n: &NamespaceInfo) -> Key {
        Key {
            kind: NAMESPACE,
            namespace: None,
            name: n.name.clone(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Where an object is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// 1-based.
    pub document: usize,
    /// 0-based index in a list document's `items`.
    pub item: Option<usize>,
    /// 1-based line the document starts on.
    pub line: Option<usize>,
}

/// An object of the file and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed<T> {
    pub object: T,
    pub at: Place,
}

/// What a file holds.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FileObjects {
    /// IPPools, Nodes and Endpoints (the policy lists are left unset).
    pub desired: Desired,
    /// In file order, with the `kubernetes.io/metadata.name` label the API
    /// server gives every namespace.
    pub namespaces: Vec<Placed<NamespaceInfo>>,
    /// Policies and Tiers, in file order.
    pub policies: Vec<Placed<Policy>>,
}

impl FileObjects {
    pub fn has_policy_objects(&self) -> bool {
        !self.namespaces.is_empty() || !self.policies.is_empty()
    }

    /// Every namespace and policy object with its key, in file order.
    fn keys_in_order(&self) -> Vec<(Place, Key)> {
        let mut v: Vec<(Place, Key)> = self
            .namespaces
            .iter()
            .map(|n| (n.at, Key::of_namespace(&n.object)))
            .chain(self.policies.iter().map(|p| (p.at, Key::of(&p.object))))
            .collect();
        v.sort_by_key(|(at, _)| (at.document, at.item));
        v
    }
}

/// What the file is read for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Apply,
    Delete,
}

/// Which parser a document goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Empty,
    Switch,
    Policy,
}

enum Kind {
    Switch,
    Namespace,
    Policy,
    Pod,
    Unknown,
}

fn kind_of(api: &str, kind: &str) -> Kind {
    let calico = CALICO_GROUPS.contains(&api);
    match (api, kind) {
        (_, "IPPool") if calico => Kind::Switch,
        (manifest::API_VERSION, "Node" | "Endpoint") => Kind::Switch,
        ("v1", "Namespace") => Kind::Namespace,
        ("networking.k8s.io/v1", "NetworkPolicy") => Kind::Policy,
        (_, "NetworkPolicy" | "GlobalNetworkPolicy" | "Tier") if calico => Kind::Policy,
        ("v1", "Pod") => Kind::Pod,
        _ => Kind::Unknown,
    }
}

fn str_field<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `KIND NAME` for messages, as far as the object says.
fn label(kind: &str, v: &Value) -> Option<String> {
    let name = v
        .get("metadata")
        .map(|m| str_field(m, "name"))
        .unwrap_or_default();
    match (kind, name) {
        ("", _) => None,
        (k, "") => Some(k.to_owned()),
        (k, n) => Some(format!("{k} {n}")),
    }
}

/// One object's kind checked for `verb`: a switch object, a namespace or a
/// policy object, or why it is refused.
fn check_kind(verb: Verb, api: &str, kind: &str, in_list: bool) -> Result<Kind, String> {
    let supported = match verb {
        Verb::Apply => APPLY_KINDS,
        Verb::Delete => DELETE_KINDS,
    };
    if api.is_empty() || kind.is_empty() {
        return Err("not a Kubernetes object: apiVersion and kind are required".into());
    }
    match kind_of(api, kind) {
        k @ (Kind::Namespace | Kind::Policy) => Ok(k),
        Kind::Switch if verb == Verb::Delete => Err(format!("{kind} is not supported by delete")),
        Kind::Switch if in_list => Err(format!(
            "{kind} in a list is not supported: give it a document of its own"
        )),
        Kind::Switch => Ok(Kind::Switch),
        Kind::Pod if verb == Verb::Delete => Err("Pod is not supported by delete".into()),
        Kind::Pod => Err(format!(
            "Pod is not supported by apply: pods join the switch through the CNI plugin \
             or as {} Endpoints",
            manifest::API_VERSION
        )),
        Kind::Unknown => Err(format!(
            "unsupported kind {kind} (apiVersion {api}); expected {supported}"
        )),
    }
}

/// Reads every document of a file for `verb`. Any document that is not
/// understood refuses the whole file: the message names the document, the
/// object, the line and why.
pub fn parse(text: &str, verb: Verb) -> Result<FileObjects, String> {
    let mut values = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(de).map_err(|e| {
            let (msg, line) = split_yaml_error(&e);
            refusal(i + 1, None, None, line, &format!("not YAML: {msg}"))
        })?;
        values.push(v);
    }
    let lines = manifest::document_lines(text, values.len());

    // Namespaces and policy objects in file order: true for a namespace.
    let mut order: Vec<(Place, bool)> = Vec::new();
    let mut groups = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let at = Place {
            document: i + 1,
            item: None,
            line: lines[i],
        };
        groups.push(classify(verb, v, at, &mut order)?);
    }

    let mut out = FileObjects::default();
    if groups.contains(&Group::Switch) {
        let only = blank_out(text, &values, &lines, |i| groups[i] == Group::Switch)?;
        out.desired = manifest::parse(&only)?;
    }
    if groups.contains(&Group::Policy) {
        let only = blank_out(text, &values, &lines, |i| groups[i] == Group::Policy)?;
        let world = policy::load::load_yaml(&only).map_err(|e| e.to_string())?;
        let (ns_at, pol_at): (Vec<_>, Vec<_>) = order.iter().partition(|(_, is_ns)| *is_ns);
        if ns_at.len() != world.namespaces.len() || pol_at.len() != world.policies.len() {
            return Err(format!(
                "the policy loader read {} namespace(s) and {} policy object(s) where the file \
                 has {} and {}",
                world.namespaces.len(),
                world.policies.len(),
                ns_at.len(),
                pol_at.len()
            ));
        }
        out.namespaces = world
            .namespaces
            .into_iter()
            .zip(ns_at)
            .map(|(object, (at, _))| Placed { object, at })
            .collect();
        out.policies = world
            .policies
            .into_iter()
            .zip(pol_at)
            .map(|(object, (at, _))| Placed { object, at })
            .collect();
    }
    let mut seen: HashMap<Key, Place> = HashMap::new();
    for p in &out.policies {
        let key = Key::of(&p.object);
        if let Some(first) = seen.get(&key) {
            return Err(refusal(
                p.at.document,
                p.at.item,
                Some(&key.to_string()),
                p.at.line,
                &format!("also in document {}", first.document),
            ));
        }
        seen.insert(key, p.at);
    }
    if out.desired == Desired::default() && !out.has_policy_objects() {
        return Err("the file holds no object".into());
    }
    Ok(out)
}

/// Which parser document `v` goes to; records its namespaces and policy
/// objects in `order`.
fn classify(
    verb: Verb,
    v: &Value,
    at: Place,
    order: &mut Vec<(Place, bool)>,
) -> Result<Group, String> {
    if v.is_null() {
        return Ok(Group::Empty); // e.g. after a trailing ---
    }
    let refuse = |at: Place, what: Option<String>, msg: &str| {
        refusal(at.document, at.item, what.as_deref(), at.line, msg)
    };
    if !v.is_mapping() {
        return Err(refuse(
            at,
            None,
            "not a Kubernetes object (expected a mapping)",
        ));
    }
    let (api, kind) = (str_field(v, "apiVersion"), str_field(v, "kind"));
    if let (Some(elem), Some(items)) = (kind.strip_suffix("List"), v.get("items")) {
        let Some(items) = items.as_sequence() else {
            return Err(refuse(at, None, "items is not a list"));
        };
        for (k, item) in items.iter().enumerate() {
            let at = Place {
                item: Some(k),
                ..at
            };
            // calicoctl's lists leave apiVersion and kind to the list
            let item_api = item
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(api);
            let item_kind = item.get("kind").and_then(Value::as_str).unwrap_or(elem);
            let k = check_kind(verb, item_api, item_kind, true)
                .map_err(|m| refuse(at, label(item_kind, item), &m))?;
            order.push((at, matches!(k, Kind::Namespace)));
        }
        return Ok(if items.is_empty() {
            Group::Empty
        } else {
            Group::Policy
        });
    }
    match check_kind(verb, api, kind, false).map_err(|m| refuse(at, label(kind, v), &m))? {
        Kind::Switch => Ok(Group::Switch),
        k => {
            order.push((at, matches!(k, Kind::Namespace)));
            Ok(Group::Policy)
        }
    }
}

/// A document marker line: `---` or `...` alone or before a space. YAML
/// allows neither at the start of a line inside a document, so these are
/// exactly the lines where documents end.
fn is_marker(line: &str) -> bool {
    (line.starts_with("---") || line.starts_with("..."))
        && line[3..].chars().next().is_none_or(char::is_whitespace)
}

/// `text` where the documents `keep` refuses are empty documents (`~`),
/// line for line: the others keep their document numbers and lines. The
/// result is read back to make sure of it.
fn blank_out(
    text: &str,
    values: &[Value],
    lines: &[Option<usize>],
    keep: impl Fn(usize) -> bool,
) -> Result<String, String> {
    if (0..values.len()).all(|i| keep(i) || values[i].is_null()) {
        return Ok(text.to_owned());
    }
    let mut out: Vec<&str> = text.lines().collect();
    for (i, start) in lines.iter().enumerate() {
        let Some(first) = start
            .and_then(|l| l.checked_sub(1))
            .filter(|&f| f < out.len())
        else {
            continue;
        };
        if keep(i) {
            continue;
        }
        let end = (first + 1..out.len())
            .find(|&k| is_marker(out[k]))
            .unwrap_or(out.len());
        // The root node may sit on the marker line itself (`--- {...}`).
        out[first] = if out[first].starts_with("---") {
            "--- ~"
        } else {
            "~"
        };
        for l in &mut out[first + 1..end] {
            *l = "";
        }
    }
    let mut blanked = out.join("\n");
    blanked.push('\n');
    let mut n = 0;
    for (i, de) in serde_yaml_ng::Deserializer::from_str(&blanked).enumerate() {
        let v = Value::deserialize(de).ok();
        let want = if keep(i) {
            values.get(i)
        } else {
            Some(&Value::Null)
        };
        if v.as_ref() != want {
            return Err(format!(
                "document {}: cannot tell where it ends; start every document with a line '---'",
                i + 1
            ));
        }
        n += 1;
    }
    if n != values.len() {
        return Err(
            "cannot tell the documents apart; start every document with a line '---'".into(),
        );
    }
    Ok(blanked)
}

// ---------------------------------------------------------------------------
// Merging into what is in force
// ---------------------------------------------------------------------------

/// What happens to one object of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
        })
    }
}

/// The complete lists to send, and what becomes of each object of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// Set when the file names namespaces.
    pub namespaces: Option<Vec<NamespaceInfo>>,
    /// Set when the file names policy objects.
    pub policies: Option<Vec<Policy>>,
    /// In file order.
    pub outcomes: Vec<(Key, Outcome)>,
}

/// Puts `obj` in place of the object of the same key, else at the end.
fn upsert<T: Clone + PartialEq>(list: &mut Vec<T>, key: impl Fn(&T) -> Key, obj: &T) -> Outcome {
    let k = key(obj);
    match list.iter_mut().find(|x| key(x) == k) {
        Some(x) if x == obj => Outcome::Unchanged,
        Some(x) => {
            x.clone_from(obj);
            Outcome::Configured
        }
        None => {
            list.push(obj.clone());
            Outcome::Created
        }
    }
}

/// `kubectl apply`: the file's objects replace those of the same key or
/// are added; the others stay, in their order.
pub fn merge_apply(current: PolicySet, file: &FileObjects) -> Merged {
    let PolicySet {
        mut namespaces,
        mut policies,
        ..
    } = current;
    let mut outcomes: Vec<(Place, Key, Outcome)> = Vec::new();
    for n in &file.namespaces {
        let o = upsert(&mut namespaces, Key::of_namespace, &n.object);
        outcomes.push((n.at, Key::of_namespace(&n.object), o));
    }
    for p in &file.policies {
        let o = upsert(&mut policies, Key::of, &p.object);
        outcomes.push((p.at, Key::of(&p.object), o));
    }
    outcomes.sort_by_key(|(at, _, _)| (at.document, at.item));
    Merged {
        namespaces: (!file.namespaces.is_empty()).then_some(namespaces),
        policies: (!file.policies.is_empty()).then_some(policies),
        outcomes: outcomes.into_iter().map(|(_, k, o)| (k, o)).collect(),
    }
}

/// `kubectl delete`: the file's objects are removed by key. An object that
/// is not in force refuses the whole deletion, unless `ignore_not_found`.
pub fn merge_delete(
    current: PolicySet,
    file: &FileObjects,
    ignore_not_found: bool,
) -> Result<Merged, String> {
    let PolicySet {
        mut namespaces,
        mut policies,
        ..
    } = current;
    let mut outcomes = Vec::new();
    let mut missing = Vec::new();
    for (_, key) in file.keys_in_order() {
        let found = if key.kind == NAMESPACE {
            remove_by_key(&mut namespaces, Key::of_namespace, &key)
        } else {
            remove_by_key(&mut policies, Key::of, &key)
        };
        if found {
            outcomes.push((key, Outcome::Deleted));
        } else {
            missing.push(key.to_string());
        }
    }
    if !missing.is_empty() && !ignore_not_found {
        return Err(format!(
            "not found: {}; nothing was deleted (--ignore-not-found deletes the others)",
            missing.join(", ")
        ));
    }
    Ok(Merged {
        namespaces: (!file.namespaces.is_empty()).then_some(namespaces),
        policies: (!file.policies.is_empty()).then_some(policies),
        outcomes,
    })
}

fn remove_by_key<T>(list: &mut Vec<T>, key: impl Fn(&T) -> Key, k: &Key) -> bool {
    let before = list.len();
    list.retain(|x| key(x) != *k);
    list.len() != before
}

// ---------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------

/// One object in the report of `apply --json` and `delete --json`.
#[derive(Serialize)]
struct ObjectReport<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    name: &'a str,
    result: Outcome,
}

#[derive(Serialize)]
struct ApplyReport<'a> {
    pools: usize,
    nodes: usize,
    endpoints: usize,
    objects: Vec<ObjectReport<'a>>,
}

#[derive(Serialize)]
struct DeleteReport<'a> {
    objects: Vec<ObjectReport<'a>>,
}

fn object_reports(outcomes: &[(Key, Outcome)]) -> Vec<ObjectReport<'_>> {
    outcomes
        .iter()
        .map(|(k, o)| ObjectReport {
            kind: k.kind,
            namespace: k.namespace.as_deref(),
            name: &k.name,
            result: *o,
        })
        .collect()
}

fn write_outcomes(out: &mut dyn Write, outcomes: &[(Key, Outcome)]) -> Result<(), Error> {
    for (k, o) in outcomes {
        writeln!(out, "{k} {o}")?;
    }
    Ok(())
}

/// Reads and parses the file, naming it in a refusal.
/// Namespaces and policy objects as `apply -f` and `delete -f` take them:
/// one YAML document each, namespaces first.
pub fn write_manifests(
    out: &mut dyn Write,
    namespaces: &[NamespaceInfo],
    policies: &[Policy],
) -> Result<(), Error> {
    let mut docs: Vec<serde_json::Value> = namespaces
        .iter()
        .map(|n| {
            let mut meta = serde_json::json!({ "name": n.name });
            if !n.labels.is_empty() {
                meta["labels"] = serde_json::json!(n.labels);
            }
            serde_json::json!({"apiVersion": "v1", "kind": NAMESPACE, "metadata": meta})
        })
        .collect();
    for p in policies {
        let (api, kind, obj) = match p {
            Policy::K8s(o) => (
                "networking.k8s.io/v1",
                "NetworkPolicy",
                serde_json::to_value(o),
            ),
            Policy::Calico(o) => (CALICO_GROUPS[0], "NetworkPolicy", serde_json::to_value(o)),
            Policy::Global(o) => (CALICO_GROUPS[0], GLOBAL_POLICY, serde_json::to_value(o)),
            Policy::Tier(o) => (CALICO_GROUPS[0], TIER, serde_json::to_value(o)),
        };
        let mut doc = serde_json::json!({"apiVersion": api, "kind": kind});
        if let serde_json::Value::Object(fields) = obj.map_err(std::io::Error::other)? {
            for (k, v) in fields {
                doc[k] = v;
            }
        }
        docs.push(doc);
    }
    for d in docs {
        let y = serde_yaml_ng::to_string(&d).map_err(std::io::Error::other)?;
        out.write_all(b"---\n")?;
        out.write_all(y.as_bytes())?;
    }
    Ok(())
}

fn read(file: &str, verb: Verb) -> Result<FileObjects, Error> {
    let text = crate::policy_cmd::read_input(file)?;
    let name = if file == "-" { "standard input" } else { file };
    parse(&text, verb).map_err(|e| Error::Manifest(format!("{name}: {e}")))
}

fn policy_list(client: &mut Client) -> Result<PolicySet, Error> {
    match client.call(&Request::PolicyList {})? {
        Reply::Policies(set) => Ok(set),
        other => Err(Error::Unexpected {
            expected: "policies",
            got: reply_kind(&other),
        }),
    }
}

/// `vsctl apply -f FILE`. The file is read and checked before vswitchd is
/// reached, so a refused file sends nothing.
pub fn apply(socket: &Path, file: &str, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let objects = read(file, Verb::Apply)?;
    let mut client = Client::connect(socket)?;
    let mut doc = objects.desired.clone();
    let mut outcomes = Vec::new();
    if objects.has_policy_objects() {
        let m = merge_apply(policy_list(&mut client)?, &objects);
        doc.namespaces = m.namespaces;
        doc.policies = m.policies;
        outcomes = m.outcomes;
    }
    let (pools, nodes, endpoints) = (doc.pools.len(), doc.nodes.len(), doc.endpoints.len());
    expect_done(client.call(&Request::Apply { doc })?)?;
    if json {
        return write_json(
            out,
            &ApplyReport {
                pools,
                nodes,
                endpoints,
                objects: object_reports(&outcomes),
            },
        );
    }
    if pools + nodes + endpoints > 0 {
        writeln!(
            out,
            "applied {pools} IPPool(s), {nodes} Node(s), {endpoints} Endpoint(s)"
        )?;
    }
    write_outcomes(out, &outcomes)
}

/// `vsctl delete -f FILE`: nothing is sent when nothing is to be deleted.
pub fn delete(
    socket: &Path,
    file: &str,
    ignore_not_found: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let objects = read(file, Verb::Delete)?;
    let mut client = Client::connect(socket)?;
    let m = merge_delete(policy_list(&mut client)?, &objects, ignore_not_found)
        .map_err(Error::Manifest)?;
    if !m.outcomes.is_empty() {
        let doc = Desired {
            namespaces: m.namespaces,
            policies: m.policies,
            ..Desired::default()
        };
        expect_done(client.call(&Request::Apply { doc })?)?;
    }
    if json {
        write_json(
            out,
            &DeleteReport {
                objects: object_reports(&m.outcomes),
            },
        )
    } else {
        write_outcomes(out, &m.outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{run, FakeServer};
    use api::policy::{CalicoNetworkPolicy, GlobalNetworkPolicy, ObjectMeta, Rule};
    use api::Response;
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// IPPool, Namespace, Calico NetworkPolicy, Endpoint, Kubernetes
    /// NetworkPolicy, GlobalNetworkPolicy and Tier.
    const MIXED: &str = "\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool-a}
spec: {cidr: 10.65.0.0/16, blockSize: 26}
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: web}
---
# a comment
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  order: 100
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80]}
---
apiVersion: vswitch.dev/v1alpha1
kind: Endpoint
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {port: tap1, mac: '02:00:0a:41:00:05', ips: [10.65.0.5]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: log-all}
spec:
  tier: security
  order: 10
  ingress: [{action: Log}, {action: Pass}]
  egress: [{action: Pass}]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
";

    fn keys(objs: &FileObjects) -> Vec<String> {
        objs.keys_in_order()
            .iter()
            .map(|(_, k)| k.to_string())
            .collect()
    }

    #[test]
    fn one_file_both_groups() {
        let objs = parse(MIXED, Verb::Apply).unwrap();
        assert_eq!(objs.desired.pools.len(), 1);
        assert_eq!(objs.desired.pools[0].block_size, Some(26));
        let ep = &objs.desired.endpoints[0];
        assert_eq!(ep.pod.as_deref(), Some("shop/web-0"));
        assert_eq!(ep.namespace.as_deref(), Some("shop"));
        assert!(objs.desired.namespaces.is_none() && objs.desired.policies.is_none());
        assert_eq!(
            keys(&objs),
            [
                "Namespace shop",
                "NetworkPolicy.projectcalico.org shop/allow-web",
                "NetworkPolicy.networking.k8s.io shop/deny-all",
                "GlobalNetworkPolicy log-all",
                "Tier security",
            ]
        );
        let ns = &objs.namespaces[0];
        assert_eq!(ns.object.labels["team"], "web");
        assert_eq!(ns.object.labels["kubernetes.io/metadata.name"], "shop");
        let places: Vec<(usize, Option<usize>)> = objs
            .policies
            .iter()
            .map(|p| (p.at.document, p.at.line))
            .collect();
        assert_eq!(
            places,
            [(3, Some(13)), (5, Some(29)), (6, Some(34)), (7, Some(43))]
        );
        assert_eq!(ns.at.line, Some(6));
    }

    fn refuse(text: &str, verb: Verb) -> String {
        match parse(text, verb) {
            Ok(o) => panic!("accepted: {o:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn bad_documents_are_refused_with_document_and_line() {
        let pool = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/8}\n---\n";
        for (text, want) in [
            (
                format!("{pool}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec:\n  ingress:\n  - action: Allow\n  - action: Drop\n"),
                "document 2 (GlobalNetworkPolicy g), line 12: spec.ingress[1].action: unknown variant `Drop`",
            ),
            (
                format!("{pool}apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: x}}\nspec:\n  selector: all()\n  egress:\n  - action: Allow\n    destination:\n      selector: app == 'db' &&\n"),
                "document 2 (NetworkPolicy x/p), line 14: spec.egress[0].destination.selector",
            ),
            (
                format!("{pool}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\n"),
                "document 2 (ConfigMap cm), line 6: unsupported kind ConfigMap (apiVersion v1); expected projectcalico.org/v3 IPPool",
            ),
            (
                format!("{pool}apiVersion: v1\nkind: Pod\nmetadata: {{name: a}}\n"),
                "document 2 (Pod a), line 6: Pod is not supported by apply",
            ),
            (
                format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\n{pool}apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: q}}\nspec:\n  cidr: 10.1.0.0/16\n  bogus: 1\n"),
                "document 3 (IPPool q), line 15: spec: unknown field `bogus`",
            ),
            (
                format!("{pool}apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {{name: a}}\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata: {{name: q}}\n"),
                "document 2, item 1 (IPPool q), line 6: IPPool in a list is not supported",
            ),
            (
                format!("{pool}kind: Namespace\nmetadata: {{name: a}}\n"),
                "document 2 (Namespace a), line 6: not a Kubernetes object: apiVersion and kind are required",
            ),
            (
                format!("{pool}apiVersion: v1\nmetadata: {{name: a}}\n"),
                "document 2, line 6: not a Kubernetes object: apiVersion and kind are required",
            ),
            (
                format!("{pool}- a\n- b\n"),
                "document 2, line 6: not a Kubernetes object (expected a mapping)",
            ),
            (
                format!("{pool}apiVersion: v1\nkind: Namespace\nmetadata: {{name: [}}\n"),
                "document 2, line 8: not YAML: ",
            ),
            ("---\n# nothing\n---\n".to_owned(), "the file holds no object"),
        ] {
            let e = refuse(&text, Verb::Apply);
            assert!(e.starts_with(want), "{text}\nwant: {want}\ngot:  {e}");
        }
    }

    #[test]
    fn a_policy_twice_is_refused() {
        let np = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n";
        let e = refuse(&format!("{np}---\n{np}"), Verb::Apply);
        assert_eq!(
            e,
            "document 2 (NetworkPolicy.projectcalico.org x/p), line 5: also in document 1"
        );
        // Same name, other kind or namespace: different objects.
        let k8s = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n";
        let other_ns = np.replace("namespace: x", "namespace: y");
        let o = parse(&format!("{np}---\n{k8s}---\n{other_ns}"), Verb::Apply).unwrap();
        assert_eq!(o.policies.len(), 3);
    }

    #[test]
    fn lists_as_kubectl_and_calicoctl_print_them() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a, uid: 1}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: p, namespace: a, resourceVersion: '7'}
  spec: {podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicyList
items:
- metadata: {name: q, namespace: a}
  spec: {selector: all()}
";
        let o = parse(text, Verb::Apply).unwrap();
        assert_eq!(
            keys(&o),
            [
                "Namespace a",
                "NetworkPolicy.networking.k8s.io a/p",
                "NetworkPolicy.projectcalico.org a/q"
            ]
        );
        assert_eq!(o.policies[1].at.item, Some(0));
        assert_eq!(o.desired, Desired::default());
    }

    #[test]
    fn document_layouts() {
        // Flow mappings on the marker line, comments, an explicit end
        // marker, a leading ---: every document keeps its number and lines.
        let text = "\
---
# a pool
--- {apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: p}, spec: {cidr: 10.0.0.0/8}}
...
--- {apiVersion: v1, kind: Namespace, metadata: {name: n}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  ingress: [{action: Nope}]
";
        let e = refuse(text, Verb::Apply);
        assert!(
            e.starts_with("document 4 (GlobalNetworkPolicy g), line 11: "),
            "{e}"
        );
        let ok = text.replace("Nope", "Deny");
        let o = parse(&ok, Verb::Apply).unwrap();
        assert_eq!(o.desired.pools[0].name, "p");
        assert_eq!(keys(&o), ["Namespace n", "GlobalNetworkPolicy g"]);
        assert_eq!(o.namespaces[0].at.document, 3);
    }

    #[test]
    fn delete_takes_only_policy_objects() {
        let e = refuse(MIXED, Verb::Delete);
        assert_eq!(
            e,
            "document 1 (IPPool pool-a), line 1: IPPool is not supported by delete"
        );
        let text = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n";
        assert_eq!(keys(&parse(text, Verb::Delete).unwrap()), ["Tier t"]);
        let e = refuse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            Verb::Delete,
        );
        assert!(
            e.ends_with("expected projectcalico.org/v3 NetworkPolicy, GlobalNetworkPolicy, Tier; networking.k8s.io/v1 NetworkPolicy; v1 Namespace; or a List of them"),
            "{e}"
        );
    }

    // --- merging --------------------------------------------------------

    fn calico(ns: &str, name: &str, order: f64) -> Policy {
        Policy::Calico(CalicoNetworkPolicy {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(ns.into()),
                labels: Default::default(),
            },
            spec: api::policy::CalicoPolicySpec {
                order: Some(order),
                ingress: vec![Rule::default()],
                ..Default::default()
            },
        })
    }

    fn global(name: &str) -> Policy {
        Policy::Global(GlobalNetworkPolicy {
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            spec: Default::default(),
        })
    }

    fn ns(name: &str, team: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            labels: [
                ("kubernetes.io/metadata.name".to_owned(), name.to_owned()),
                ("team".to_owned(), team.to_owned()),
            ]
            .into(),
        }
    }

    fn file(namespaces: Vec<NamespaceInfo>, policies: Vec<Policy>) -> FileObjects {
        let at = |document| Place {
            document,
            item: None,
            line: Some(1),
        };
        FileObjects {
            desired: Desired::default(),
            // namespaces after the policies in the file
            namespaces: namespaces
                .into_iter()
                .enumerate()
                .map(|(i, object)| Placed {
                    object,
                    at: at(100 + i),
                })
                .collect(),
            policies: policies
                .into_iter()
                .enumerate()
                .map(|(i, object)| Placed {
                    object,
                    at: at(1 + i),
                })
                .collect(),
        }
    }

    fn in_force() -> PolicySet {
        PolicySet {
            pods: vec![],
            namespaces: vec![ns("shop", "web"), ns("db", "data")],
            policies: vec![
                calico("shop", "a", 1.0),
                global("g"),
                calico("shop", "b", 2.0),
            ],
        }
    }

    #[test]
    fn apply_replaces_by_key_and_keeps_the_rest() {
        let f = file(
            vec![ns("shop", "store")],
            vec![
                calico("shop", "b", 5.0),
                calico("other", "a", 1.0),
                global("g"),
            ],
        );
        let m = merge_apply(in_force(), &f);
        assert_eq!(
            m.policies,
            Some(vec![
                calico("shop", "a", 1.0),
                global("g"),
                calico("shop", "b", 5.0),
                calico("other", "a", 1.0),
            ])
        );
        assert_eq!(
            m.namespaces,
            Some(vec![ns("shop", "store"), ns("db", "data")])
        );
        let got: Vec<String> = m.outcomes.iter().map(|(k, o)| format!("{k} {o}")).collect();
        assert_eq!(
            got,
            [
                "NetworkPolicy.projectcalico.org shop/b configured",
                "NetworkPolicy.projectcalico.org other/a created",
                "GlobalNetworkPolicy g unchanged",
                "Namespace shop configured",
            ]
        );
        // Untouched lists stay unset: vswitchd keeps them as they are.
        let m = merge_apply(in_force(), &file(vec![], vec![global("h")]));
        assert_eq!(m.namespaces, None);
        assert_eq!(m.policies.map(|p| p.len()), Some(4));
        let m = merge_apply(in_force(), &file(vec![ns("new", "x")], vec![]));
        assert_eq!(m.policies, None);
        assert_eq!(m.namespaces.map(|n| n.len()), Some(3));
    }

    #[test]
    fn delete_removes_by_key() {
        let f = file(vec![ns("db", "ignored")], vec![calico("shop", "a", 9.0)]);
        let m = merge_delete(in_force(), &f, false).unwrap();
        assert_eq!(
            m.policies,
            Some(vec![global("g"), calico("shop", "b", 2.0)])
        );
        assert_eq!(m.namespaces, Some(vec![ns("shop", "web")]));
        assert_eq!(
            m.outcomes,
            [
                (Key::of(&calico("shop", "a", 0.0)), Outcome::Deleted),
                (Key::of_namespace(&ns("db", "")), Outcome::Deleted),
            ]
        );
        let f = file(
            vec![],
            vec![calico("shop", "zz", 1.0), global("g"), global("h")],
        );
        assert_eq!(
            merge_delete(in_force(), &f, false).unwrap_err(),
            "not found: NetworkPolicy.projectcalico.org shop/zz, GlobalNetworkPolicy h; \
             nothing was deleted (--ignore-not-found deletes the others)"
        );
        let m = merge_delete(in_force(), &f, true).unwrap();
        assert_eq!(m.outcomes, [(Key::of(&global("g")), Outcome::Deleted)]);
        assert_eq!(m.namespaces, None);
        assert_eq!(m.policies.map(|p| p.len()), Some(2));
    }

    // --- the commands against a fake vswitchd -----------------------------

    /// A file in the temp directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(text: &str) -> TempFile {
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "vsctl-apply-{}-{}.yaml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&p, text).unwrap();
            TempFile(p)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn ok(reply: Reply) -> String {
        serde_json::to_string(&Response::Ok { result: reply }).unwrap()
    }

    #[test]
    fn apply_fetches_merges_and_sends_one_apply() {
        let f = TempFile::new(MIXED);
        let current = PolicySet {
            pods: vec![],
            namespaces: vec![ns("db", "data")],
            policies: vec![global("keep-me"), calico("shop", "allow-web", 1.0)],
        };
        let server = FakeServer::start(vec![ok(Reply::Policies(current)), ok(Reply::Done)]);
        let (code, out, err) = run(&server, &["apply", "-f", f.arg()]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "applied 1 IPPool(s), 0 Node(s), 1 Endpoint(s)\n\
             Namespace shop created\n\
             NetworkPolicy.projectcalico.org shop/allow-web configured\n\
             NetworkPolicy.networking.k8s.io shop/deny-all created\n\
             GlobalNetworkPolicy log-all created\n\
             Tier security created\n"
        );
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0], Request::PolicyList {});
        let Request::Apply { doc } = &reqs[1] else {
            panic!("{reqs:?}")
        };
        let parsed = parse(MIXED, Verb::Apply).unwrap();
        assert_eq!(doc.pools, parsed.desired.pools);
        assert_eq!(doc.endpoints, parsed.desired.endpoints);
        let names: Vec<String> = doc
            .namespaces
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        assert_eq!(names, ["db", "shop"]);
        let policies: Vec<String> = doc
            .policies
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| Key::of(p).to_string())
            .collect();
        assert_eq!(
            policies,
            [
                "GlobalNetworkPolicy keep-me",
                "NetworkPolicy.projectcalico.org shop/allow-web",
                "NetworkPolicy.networking.k8s.io shop/deny-all",
                "GlobalNetworkPolicy log-all",
                "Tier security",
            ]
        );
        // The replaced policy is the file's.
        assert_eq!(doc.policies.as_ref().unwrap()[1], parsed.policies[0].object);
    }

    #[test]
    fn apply_without_policy_objects_sends_only_the_apply() {
        let f = TempFile::new(
            "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/8}\n",
        );
        let server = FakeServer::start(vec![ok(Reply::Done)]);
        let (code, out, _) = run(&server, &["apply", "-f", f.arg()]);
        assert_eq!(
            (code, out.as_str()),
            (0, "applied 1 IPPool(s), 0 Node(s), 0 Endpoint(s)\n")
        );
        let reqs = server.requests();
        let [Request::Apply { doc }] = &reqs[..] else {
            panic!("{reqs:?}")
        };
        assert_eq!(doc.pools.len(), 1);
        assert_eq!((&doc.namespaces, &doc.policies), (&None, &None));
    }

    #[test]
    fn apply_json_report() {
        let f = TempFile::new("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
        let server = FakeServer::start(vec![
            ok(Reply::Policies(PolicySet {
                pods: vec![],
                namespaces: vec![NamespaceInfo {
                    name: "shop".into(),
                    labels: [("kubernetes.io/metadata.name".to_owned(), "shop".to_owned())].into(),
                }],
                policies: vec![],
            })),
            ok(Reply::Done),
        ]);
        let (code, out, _) = run(&server, &["apply", "-f", f.arg(), "--json"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"pools": 0, "nodes": 0, "endpoints": 0,
                "objects": [{"kind": "Namespace", "name": "shop", "result": "unchanged"}]})
        );
        let reqs = server.requests();
        let Request::Apply { doc } = &reqs[1] else {
            panic!("{reqs:?}")
        };
        assert_eq!(doc.policies, None);
        assert_eq!(doc.namespaces.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn a_refusal_from_vswitchd_exits_1() {
        let f = TempFile::new("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {tier: nope}\n");
        let server = FakeServer::start(vec![
            ok(Reply::Policies(PolicySet::default())),
            r#"{"status":"error","error":"policy: GlobalNetworkPolicy g: no tier nope"}"#.into(),
        ]);
        let (code, out, err) = run(&server, &["apply", "-f", f.arg()]);
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(err, "vsctl: policy: GlobalNetworkPolicy g: no tier nope\n");
        assert_eq!(server.requests().len(), 2);
    }

    /// Runs `vsctl --socket S args` where S is a listener nobody answers on;
    /// returns (status, stderr) and whether anything connected.
    fn run_unanswered(args: &[&str]) -> (i32, String, bool) {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "vsctl-apply-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut argv = vec!["vsctl", "--socket", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::main_with(&cli, &mut out, &mut err);
        let connected = listener.accept().is_ok();
        let _ = std::fs::remove_file(&path);
        assert!(out.is_empty());
        (code, String::from_utf8(err).unwrap(), connected)
    }

    #[test]
    fn a_bad_file_is_refused_before_anything_is_sent() {
        let bad = MIXED.replace("egress: [{action: Pass}]", "egress: [{action: Drop}]");
        let f = TempFile::new(&bad);
        let (code, err, connected) = run_unanswered(&["apply", "-f", f.arg()]);
        assert_eq!(code, 1);
        assert!(!connected, "the switch was contacted");
        assert!(
            err.starts_with(&format!(
                "vsctl: {}: document 6 (GlobalNetworkPolicy log-all), line 41: spec.egress[0].action: unknown variant `Drop`",
                f.arg()
            )),
            "{err}"
        );
        let (code, err, connected) = run_unanswered(&["delete", "-f", f.arg()]);
        assert_eq!((code, connected), (1, false));
        assert!(
            err.ends_with(
                "document 1 (IPPool pool-a), line 1: IPPool is not supported by delete\n"
            ),
            "{err}"
        );
        let (code, err, connected) = run_unanswered(&["apply", "-f", "/nonexistent/x.yaml"]);
        assert_eq!((code, connected), (1, false));
        assert!(
            err.starts_with("vsctl: reading /nonexistent/x.yaml: "),
            "{err}"
        );
    }

    const TO_DELETE: &str = "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: a, namespace: shop}
spec: {selector: all()}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
";

    #[test]
    fn delete_sends_the_lists_without_the_file_objects() {
        let f = TempFile::new(TO_DELETE);
        let server = FakeServer::start(vec![ok(Reply::Policies(in_force())), ok(Reply::Done)]);
        let (code, out, err) = run(&server, &["delete", "-f", f.arg()]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "NetworkPolicy.projectcalico.org shop/a deleted\nGlobalNetworkPolicy g deleted\n"
        );
        assert_eq!(
            server.requests(),
            [
                Request::PolicyList {},
                Request::Apply {
                    doc: Desired {
                        policies: Some(vec![calico("shop", "b", 2.0)]),
                        ..Desired::default()
                    }
                }
            ]
        );
    }

    #[test]
    fn delete_of_missing_objects() {
        let f = TempFile::new(TO_DELETE);
        let current = PolicySet {
            pods: vec![],
            namespaces: vec![],
            policies: vec![global("g")],
        };
        let server = FakeServer::start(vec![ok(Reply::Policies(current.clone()))]);
        let (code, out, err) = run(&server, &["delete", "-f", f.arg()]);
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(
            err,
            "vsctl: not found: NetworkPolicy.projectcalico.org shop/a; nothing was deleted \
             (--ignore-not-found deletes the others)\n"
        );
        assert_eq!(server.requests(), [Request::PolicyList {}]);

        let server = FakeServer::start(vec![ok(Reply::Policies(current)), ok(Reply::Done)]);
        let (code, out, _) = run(
            &server,
            &["delete", "-f", f.arg(), "--ignore-not-found", "--json"],
        );
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"objects": [{"kind": "GlobalNetworkPolicy", "name": "g", "result": "deleted"}]})
        );
        assert_eq!(server.requests().len(), 2);

        // Nothing in force to delete: nothing is sent after the list.
        let server = FakeServer::start(vec![ok(Reply::Policies(PolicySet::default()))]);
        let (code, out, _) = run(&server, &["delete", "-f", f.arg(), "--ignore-not-found"]);
        assert_eq!((code, out.as_str()), (0, ""));
        assert_eq!(server.requests(), [Request::PolicyList {}]);
    }

    #[test]
    fn get_policies_and_namespaces() {
        let mut set = PolicySet {
            pods: vec![],
            namespaces: vec![
                ns("shop", "web"),
                NamespaceInfo {
                    name: "bare".into(),
                    labels: Default::default(),
                },
            ],
            policies: parse(MIXED, Verb::Apply)
                .unwrap()
                .policies
                .into_iter()
                .map(|p| p.object)
                .collect(),
        };
        set.policies.push(calico("shop", "plain", 1.0));
        if let Some(Policy::Calico(p)) = set.policies.last_mut() {
            p.spec.order = None;
        }
        let server = FakeServer::start(vec![ok(Reply::Policies(set.clone()))]);
        let (code, out, err) = run(&server, &["get", "policies"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "KIND                             NAMESPACE  NAME       TIER      ORDER  TYPES           RULES\n\
             GlobalNetworkPolicy              -          log-all    security  10     Ingress,Egress  2/1\n\
             NetworkPolicy.networking.k8s.io  shop       deny-all   default   1000   Ingress,Egress  0/0\n\
             NetworkPolicy.projectcalico.org  shop       allow-web  default   100    Ingress         1/0\n\
             NetworkPolicy.projectcalico.org  shop       plain      default   -      Ingress         1/0\n\
             Tier                             -          security   -         100    -               -\n"
        );
        assert_eq!(server.requests(), [Request::PolicyList {}]);

        let server = FakeServer::start(vec![ok(Reply::Policies(set.clone()))]);
        let (code, out, _) = run(&server, &["get", "policies", "--json"]);
        assert_eq!(code, 0);
        assert_eq!(serde_json::from_str::<PolicySet>(&out).unwrap(), set);

        let server = FakeServer::start(vec![ok(Reply::Policies(set.clone()))]);
        let (code, out, _) = run(&server, &["get", "namespaces"]);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "NAME  LABELS\n\
             bare  -\n\
             shop  kubernetes.io/metadata.name=shop,team=web\n"
        );
        let server = FakeServer::start(vec![ok(Reply::Policies(set.clone()))]);
        let (_, out, _) = run(&server, &["get", "namespaces", "--json"]);
        assert_eq!(
            serde_json::from_str::<Vec<NamespaceInfo>>(&out).unwrap(),
            set.namespaces
        );
    }
}

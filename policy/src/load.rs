//! Reading a cluster from YAML: `---` separated documents, each a
//! Kubernetes or Calico object or a list of them (`kind: List` as kubectl
//! prints it, `NetworkPolicyList` as calicoctl does).
//!
//! Kinds: v1 `Namespace`, `Pod`; `networking.k8s.io/v1`
//! `NetworkPolicy`; `projectcalico.org/v3` `NetworkPolicy`,
//! `GlobalNetworkPolicy`, `Tier`. A document that is not understood refuses
//! the whole file, with its number, the line, and why: a field of the wrong
//! type, an unknown field in a policy's spec, an unknown rule action, an
//! invalid selector, a rule Calico would refuse.
//!
//! What the API server would add is added: every namespace carries
//! `kubernetes.io/metadata.name`, and a namespace pods live in exists even
//! when the file does not declare it. Every pod is local: the simulator
//! enforces every pod's policy.

use crate::compile::World;
use crate::model::Lowerer;
use api::policy::{
    CalicoNetworkPolicy, EndpointInfo, GlobalNetworkPolicy, NamespaceInfo, NetworkPolicy, Pod,
    Policy, Tier,
};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Why a file was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// 1-based document number in the file.
    pub document: usize,
    /// 0-based index in the document's `items` when it is a list.
    pub item: Option<usize>,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// e.g. `NetworkPolicy x/allow-db`.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        if let Some(i) = self.item {
            write!(f, ", item {i}")?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if let Some(l) = self.line {
            write!(f, ", line {l}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LoadError {}

/// The message of a YAML error without its " at line L column C" (the line
/// is reported separately), and the line.
fn split_yaml_error(e: &serde_yaml_ng::Error) -> (String, Option<usize>) {
    let msg = e.to_string();
    match e.location() {
        Some(loc) => {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            let m = msg.strip_suffix(&suffix).unwrap_or(&msg).to_owned();
            (m, Some(loc.line()))
        }
        None => (msg, None),
    }
}

/// Where one object sits in the file.
#[derive(Clone, Copy)]
struct Place {
    doc: usize,
    item: Option<usize>,
}

/// Reads every document of `text` into a [`World`] (pods in file order,
/// all local).
pub fn load_yaml(text: &str) -> Result<World, LoadError> {
    let mut loader = Loader {
        text,
        world: World::default(),
        lowerer: Lowerer::new(),
        declared_ns: HashSet::new(),
        pods: HashSet::new(),
    };
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| {
            let (message, line) = split_yaml_error(&e);
            LoadError {
                document: i + 1,
                item: None,
                line,
                object: None,
                message: format!("not YAML: {message}"),
            }
        })?;
        loader.document(i, value)?;
    }
    loader.finish()
}

struct Loader<'t> {
    text: &'t str,
    world: World,
    lowerer: Lowerer,
    declared_ns: HashSet<String>,
    pods: HashSet<String>,
}

fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

const KINDS: &str = "v1 Namespace, Pod; networking.k8s.io/v1 NetworkPolicy; \
     projectcalico.org/v3 NetworkPolicy, GlobalNetworkPolicy, Tier; or a List of them";

impl Loader<'_> {
    fn error(&self, at: Place, object: Option<String>, message: String) -> LoadError {
        LoadError {
            document: at.doc + 1,
            item: at.item,
            line: node_line(self.text, at.doc, at.item),
            object,
            message,
        }
    }

    fn document(&mut self, doc: usize, value: Value) -> Result<(), LoadError> {
        if value.is_null() {
            return Ok(()); // empty document, e.g. after a trailing ---
        }
        let at = Place { doc, item: None };
        if !value.is_mapping() {
            return Err(self.error(
                at,
                None,
                "not a Kubernetes object (expected a mapping)".into(),
            ));
        }
        let api = str_field(&value, "apiVersion")
            .unwrap_or_default()
            .to_owned();
        let kind = str_field(&value, "kind").unwrap_or_default().to_owned();
        if let (Some(elem), Some(items)) = (kind.strip_suffix("List"), value.get("items")) {
            let Some(items) = items.as_sequence() else {
                return Err(self.error(at, None, "items is not a list".into()));
            };
            for (k, item) in items.iter().enumerate() {
                let at = Place { doc, item: Some(k) };
                // calicoctl's lists may leave apiVersion and kind to the list.
                let item_api = str_field(item, "apiVersion").unwrap_or(&api).to_owned();
                let item_kind = str_field(item, "kind").unwrap_or(elem).to_owned();
                self.object(at, &item_api, &item_kind, item.clone())?;
            }
            return Ok(());
        }
        self.object(at, &api, &kind, value)
    }

    /// Deserializes one object as `T`; on failure, deserializes it again
    /// straight from the text so that the error carries its line.
    fn typed<T: DeserializeOwned>(
        &self,
        at: Place,
        what: &str,
        value: Value,
    ) -> Result<T, LoadError> {
        let first = match serde_yaml_ng::from_value::<T>(value) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let located = match at.item {
            None => serde_yaml_ng::Deserializer::from_str(self.text)
                .nth(at.doc)
                .and_then(|de| T::deserialize(de).err()),
            Some(k) => serde_yaml_ng::Deserializer::from_str(self.text)
                .nth(at.doc)
                .and_then(|de| de.deserialize_map(ItemVisitor::<T>::new(k)).err()),
        };
        let (message, line) = match &located {
            Some(e) => split_yaml_error(e),
            None => (first.to_string(), None),
        };
        Err(LoadError {
            document: at.doc + 1,
            item: at.item,
            line: line.or_else(|| node_line(self.text, at.doc, at.item)),
            object: Some(what.to_owned()),
            message,
        })
    }

    fn object(&mut self, at: Place, api: &str, kind: &str, value: Value) -> Result<(), LoadError> {
        let name = value
            .get("metadata")
            .and_then(|m| str_field(m, "name"))
            .unwrap_or("")
            .to_owned();
        let ns = value
            .get("metadata")
            .and_then(|m| str_field(m, "namespace"))
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned();
        let calico = matches!(api, "projectcalico.org/v3" | "crd.projectcalico.org/v1");
        match (api, kind) {
            ("v1", "Namespace") => {
                let o: api::policy::Namespace =
                    self.typed(at, &format!("Namespace {name}"), value)?;
                self.namespace(at, o)
            }
            ("v1", "Pod") => {
                let what = format!("Pod {ns}/{name}");
                let o: Pod = self.typed(at, &what, value)?;
                self.pod(at, what, o)
            }
            ("networking.k8s.io/v1", "NetworkPolicy") => {
                let what = format!("NetworkPolicy {ns}/{name}");
                let o: NetworkPolicy = self.typed(at, &what, value)?;
                self.policy(at, what, Policy::K8s(o))
            }
            (_, "NetworkPolicy") if calico => {
                let what = format!("NetworkPolicy {ns}/{name}");
                let o: CalicoNetworkPolicy = self.typed(at, &what, value)?;
                self.policy(at, what, Policy::Calico(o))
            }
            (_, "GlobalNetworkPolicy") if calico => {
                let what = format!("GlobalNetworkPolicy {name}");
                let o: GlobalNetworkPolicy = self.typed(at, &what, value)?;
                self.policy(at, what, Policy::Global(o))
            }
            (_, "Tier") if calico => {
                let what = format!("Tier {name}");
                let o: Tier = self.typed(at, &what, value)?;
                crate::compile::check_tier(&o)
                    .map_err(|e| self.error(at, Some(what), e.message))?;
                self.world.policies.push(Policy::Tier(o));
                Ok(())
            }
            ("", _) | (_, "") => Err(self.error(
                at,
                None,
                "not a Kubernetes object: apiVersion and kind are required".into(),
            )),
            _ => Err(self.error(
                at,
                None,
                format!("unsupported kind {kind} (apiVersion {api}); expected {KINDS}"),
            )),
        }
    }

    fn namespace(&mut self, at: Place, o: api::policy::Namespace) -> Result<(), LoadError> {
        let name = o.metadata.name;
        if name.is_empty() {
            return Err(self.error(
                at,
                Some("Namespace".into()),
                "metadata.name is required".into(),
            ));
        }
        if !self.declared_ns.insert(name.clone()) {
            return Err(self.error(
                at,
                Some(format!("Namespace {name}")),
                "declared twice".into(),
            ));
        }
        let mut labels = o.metadata.labels;
        labels
            .entry(NAMESPACE_NAME_LABEL.to_owned())
            .or_insert_with(|| name.clone());
        self.world.namespaces.push(NamespaceInfo { name, labels });
        Ok(())
    }

    fn pod(&mut self, at: Place, what: String, o: Pod) -> Result<(), LoadError> {
        if o.metadata.name.is_empty() {
            return Err(self.error(at, Some(what), "metadata.name is required".into()));
        }
        let ep: EndpointInfo = match o.endpoint(true) {
            Ok(ep) => ep,
            Err(m) => {
                let mut e = self.error(at, Some(what), format!("status: {m}"));
                e.line = self
                    .value_line(at, o.status.pod_ip.as_deref().unwrap_or(""))
                    .or(e.line);
                return Err(e);
            }
        };
        if !self.pods.insert(ep.name.clone()) {
            return Err(self.error(at, Some(what), "declared twice".into()));
        }
        self.world.endpoints.push(ep);
        Ok(())
    }

    fn policy(&mut self, at: Place, what: String, p: Policy) -> Result<(), LoadError> {
        if let Err(e) = self.lowerer.lower(&p) {
            let mut err = self.error(at, Some(what), e.to_string());
            if let Some(v) = &e.value {
                err.line = self.value_line(at, v).or(err.line);
            }
            return Err(err);
        }
        self.world.policies.push(p);
        Ok(())
    }

    /// The first line of the object at `at` that holds `value`.
    fn value_line(&self, at: Place, value: &str) -> Option<usize> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let start = node_line(self.text, at.doc, at.item)?;
        let end = match at.item {
            Some(k) => node_line(self.text, at.doc, Some(k + 1)),
            None => None,
        }
        .or_else(|| node_line(self.text, at.doc + 1, None))
        .unwrap_or(usize::MAX);
        self.text
            .lines()
            .enumerate()
            .skip(start - 1)
            .take_while(|(i, _)| i + 1 < end)
            .find(|(_, l)| l.contains(value))
            .map(|(i, _)| i + 1)
    }

    fn finish(mut self) -> Result<World, LoadError> {
        // Pods in namespaces the file does not declare: the namespace exists
        // (it must, for the pod to), with the label the API server gives it.
        let mut implicit = Vec::new();
        for ep in &self.world.endpoints {
            if !self.declared_ns.contains(&ep.namespace) && !implicit.contains(&ep.namespace) {
                implicit.push(ep.namespace.clone());
            }
        }
        for name in implicit {
            self.world.namespaces.push(NamespaceInfo {
                labels: [(NAMESPACE_NAME_LABEL.to_owned(), name.clone())].into(),
                name,
            });
        }
        Ok(self.world)
    }
}

// ---------------------------------------------------------------------------
// Locating objects in the text
// ---------------------------------------------------------------------------

/// Fails on whatever node it is given, so that the error carries the line
/// the node starts on.
struct Probe;

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Probe, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Probe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Probe, A::Error> {
                Err(de::Error::custom("probe"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Probe, A::Error> {
                Err(de::Error::custom("probe"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Probe, E> {
                Err(E::custom("probe"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Probe, E> {
                Err(E::custom("probe"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Probe, E> {
                Err(E::custom("probe"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Probe, E> {
                Err(E::custom("probe"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Probe, E> {
                Err(E::custom("probe"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Probe, E> {
                Err(E::custom("probe"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Visits a list document's mapping and deserializes `items[k]` as `T`
/// (with `T = Probe`, only to learn where it starts).
struct ItemVisitor<T> {
    k: usize,
    _t: PhantomData<T>,
}

impl<T> ItemVisitor<T> {
    fn new(k: usize) -> Self {
        ItemVisitor { k, _t: PhantomData }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ItemVisitor<T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(ItemSeed::<T> {
                    k: self.k,
                    _t: PhantomData,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct ItemSeed<T> {
    k: usize,
    _t: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ItemSeed<T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ItemSeed<T> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.k {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element::<T>()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The 1-based line document `doc` (0-based) starts on, or with `item`,
/// the line its `items[item]` starts on.
fn node_line(text: &str, doc: usize, item: Option<usize>) -> Option<usize> {
    let de = serde_yaml_ng::Deserializer::from_str(text).nth(doc)?;
    let e = match item {
        None => Probe::deserialize(de).err()?,
        Some(k) => de.deserialize_map(ItemVisitor::<Probe>::new(k)).err()?,
    };
    e.location().map(|l| l.line())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lists() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels: {team: a}
  uid: 1234
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: x, labels: {app: web}, creationTimestamp: null}
  spec:
    serviceAccountName: web
    containers:
    - name: c
      image: nginx
      ports: [{name: http, containerPort: 80}]
  status: {podIP: 10.0.0.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: y}
  status: {podIPs: [{ip: 10.0.0.2}]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicyList
items:
- metadata: {name: p, namespace: x}
  spec:
    selector: app == 'web'
    ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]
---
";
        let w = load_yaml(text).unwrap();
        assert_eq!(w.namespaces.len(), 2);
        assert_eq!(w.namespaces[0].labels["team"], "a");
        assert_eq!(w.namespaces[0].labels[NAMESPACE_NAME_LABEL], "x");
        assert_eq!(w.namespaces[1].name, "y");
        assert_eq!(w.namespaces[1].labels[NAMESPACE_NAME_LABEL], "y");
        let names: Vec<&str> = w.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["x/a", "y/b"]);
        assert!(w.endpoints.iter().all(|e| e.local));
        assert_eq!(w.endpoints[0].named_ports[0].port, 80);
        assert_eq!(w.policies.len(), 1);
        assert!(matches!(w.policies[0], Policy::Calico(_)));
    }

    fn refuse(text: &str) -> LoadError {
        match load_yaml(text) {
            Ok(w) => panic!("accepted: {w:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn unknown_action_names_document_and_line() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: g
spec:
  ingress:
  - action: Allow
  - action: Drop
";
        let e = refuse(text);
        assert_eq!(e.document, 2);
        assert_eq!(e.line, Some(12));
        assert!(e.message.contains("unknown variant `Drop`"), "{e}");
        assert!(e.message.contains("spec.ingress[1].action"), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("document 2 (GlobalNetworkPolicy g), line 12: "),
            "{shown}"
        );
    }

    #[test]
    fn invalid_selector_names_the_line() {
        let text = "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  selector: all()
  egress:
  - action: Allow
    destination:
      selector: app == 'db' &&
";
        let e = refuse(text);
        assert_eq!((e.document, e.line), (1, Some(9)));
        assert!(
            e.message.contains("spec.egress[0].destination.selector"),
            "{e}"
        );
        assert!(e.message.contains("invalid selector"), "{e}");
    }

    #[test]
    fn errors_inside_list_items_are_located() {
        let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: ok, namespace: x}
  spec: {podSelector: {}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: bad, namespace: x}
  spec:
    podSelector: {}
    ingres: []
";
        let e = refuse(text);
        assert_eq!((e.document, e.item), (1, Some(1)));
        assert_eq!(e.line, Some(13));
        assert!(e.message.contains("unknown field `ingres`"), "{e}");
        assert_eq!(e.object.as_deref(), Some("NetworkPolicy x/bad"));
    }

    #[test]
    fn other_refusals() {
        let e = refuse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n");
        assert!(e.message.contains("unsupported kind Deployment"), "{e}");
        let e = refuse("a: [\n");
        assert!(e.message.starts_with("not YAML"), "{e}");
        let e = refuse("just a string\n");
        assert!(e.message.contains("not a Kubernetes object"), "{e}");
        let e = refuse("kind: Pod\nmetadata: {name: a}\n");
        assert!(e.message.contains("apiVersion and kind"), "{e}");
        let e =
            refuse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {podIP: 10.0.0.300}\n");
        assert_eq!(e.line, Some(4));
        let e = refuse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        );
        assert_eq!((e.document, e.line), (2, Some(5)));
        let e = refuse(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 80\n      endPort: 70\n",
        );
        assert!(e.message.contains("endPort"), "{e}");
        assert_eq!(e.line, Some(1));
    }
}

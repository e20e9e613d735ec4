//! Desired-state files: Calico's own `projectcalico.org/v3` IPPool YAML and
//! our `vswitch.dev/v1alpha1` Node and Endpoint kinds beside it (several
//! documents per file), turned into the document vswitchd applies whole.

use api::{Desired, EncapMode, EndpointSpec, IpPool, MacAddr, Node};
use std::collections::BTreeMap;

/// The API group and version of our own kinds.
pub const API_VERSION: &str = "vswitch.dev/v1alpha1";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NodeSpec {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    blocks: Vec<String>,
    #[serde(default, rename = "ipv4VXLANTunnelAddr")]
    vxlan_tunnel_ip: Option<std::net::Ipv4Addr>,
    #[serde(default, rename = "vxlanTunnelMACAddr")]
    vxlan_tunnel_mac: Option<api::MacAddr>,
    #[serde(default, rename = "ipv4IPIPTunnelAddr")]
    ipip_tunnel_ip: Option<std::net::Ipv4Addr>,
}

/// A pod on a routed port.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointYaml {
    port: String,
    mac: MacAddr,
    ips: Vec<std::net::Ipv4Addr>,
    /// tap | vhost: how the pod is attached (informational here: the port says it).
    #[serde(default)]
    interface_kind: Option<api::AttachKind>,
}
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Calico's IPPool spec as users write it. Fields the switch does not use
/// yet are accepted, so Calico's files apply unchanged.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IpPoolSpec {
    cidr: String,
    #[serde(default)]
    block_size: Option<u8>,
    #[serde(default)]
    ipip_mode: Option<EncapMode>,
    #[serde(default)]
    vxlan_mode: Option<EncapMode>,
    #[serde(default)]
    nat_outgoing: bool,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    node_selector: Option<String>,
    #[serde(default, rename = "disableBGPExport")]
    _disable_bgp_export: Option<bool>,
    #[serde(default)]
    _allowed_uses: Option<Vec<String>>,
    #[serde(default, rename = "assignmentMode")]
    _assignment_mode: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: serde_yaml_ng::Value,
}

/// The message of a YAML error without its " at line L column C", and the
/// line, which refusals report on their own.
pub(crate) fn split_yaml_error(e: &serde_yaml_ng::Error) -> (String, Option<usize>) {
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

/// `document N[, item K] (WHAT), line L: MESSAGE`, the shape of every
/// refusal of a file (the policy loader's too).
pub(crate) fn refusal(
    doc: usize,
    item: Option<usize>,
    what: Option<&str>,
    line: Option<usize>,
    msg: &str,
) -> String {
    let mut s = format!("document {doc}");
    if let Some(k) = item {
        s.push_str(&format!(", item {k}"));
    }
    if let Some(w) = what {
        s.push_str(&format!(" ({w})"));
    }
    if let Some(l) = line {
        s.push_str(&format!(", line {l}"));
    }
    s.push_str(": ");
    s.push_str(msg);
    s
}

/// Refuses document `i` that did not deserialize as `T` from its `Value`.
/// A `Value` has no positions, so the document is read again from the text
/// to learn the line of the fault.
fn refuse_as<T: DeserializeOwned>(
    text: &str,
    i: usize,
    what: Option<&str>,
    prefix: &str,
    first: serde_yaml_ng::Error,
) -> String {
    let located = serde_yaml_ng::Deserializer::from_str(text)
        .nth(i)
        .and_then(|de| T::deserialize(de).err());
    let (msg, line) = split_yaml_error(located.as_ref().unwrap_or(&first));
    refusal(i + 1, None, what, line, &format!("{prefix}{msg}"))
}

/// The line a document starts on: where its root node is, learnt from the
/// error of reading that node as `()`. `None` for an empty document.
fn root_line<'de>(de: serde_yaml_ng::Deserializer<'de>) -> Option<usize> {
    let e = <()>::deserialize(de).err()?;
    e.location().map(|l| l.line())
}

/// The line document `i` (0-based) of `text` starts on.
pub(crate) fn document_line(text: &str, i: usize) -> Option<usize> {
    root_line(serde_yaml_ng::Deserializer::from_str(text).nth(i)?)
}

/// The lines the first `n` documents of `text` start on, in one pass.
pub(crate) fn document_lines(text: &str, n: usize) -> Vec<Option<usize>> {
    let mut lines: Vec<Option<usize>> = serde_yaml_ng::Deserializer::from_str(text)
        .take(n)
        .map(root_line)
        .collect();
    lines.resize(n, None);
    lines
}

/// Only the `spec` of an object, to locate a fault in it.
#[derive(Deserialize)]
struct WithSpec<S> {
    #[serde(rename = "spec")]
    _spec: S,
}

fn spec_of<S: DeserializeOwned>(
    text: &str,
    i: usize,
    what: &str,
    spec: serde_yaml_ng::Value,
) -> Result<S, String> {
    serde_yaml_ng::from_value(spec)
        .map_err(|e| refuse_as::<WithSpec<S>>(text, i, Some(what), "", e))
}

/// Parses every document of a file; any document that is not understood
/// refuses the whole file, naming the document and the line.
pub fn parse(text: &str) -> Result<Desired, String> {
    let mut doc = Desired::default();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = serde_yaml_ng::Value::deserialize(de).map_err(|e| {
            let (msg, line) = split_yaml_error(&e);
            refusal(n, None, None, line, &format!("not YAML: {msg}"))
        })?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing ---
        }
        let obj: Object = serde_yaml_ng::from_value(value)
            .map_err(|e| refuse_as::<Object>(text, i, None, "not a Kubernetes object: ", e))?;
        let name = &obj.metadata.name;
        match (obj.api_version.as_str(), obj.kind.as_str()) {
            ("projectcalico.org/v3" | "crd.projectcalico.org/v1", "IPPool") => {
                let s: IpPoolSpec = spec_of(text, i, &format!("IPPool {name}"), obj.spec)?;
                doc.pools.push(IpPool {
                    name: name.clone(),
                    cidr: s.cidr,
                    block_size: s.block_size,
                    ipip_mode: s.ipip_mode,
                    vxlan_mode: s.vxlan_mode,
                    nat_outgoing: s.nat_outgoing,
                    disabled: s.disabled,
                    node_selector: s.node_selector,
                });
            }
            (API_VERSION, "Node") => {
                let s: NodeSpec = spec_of(text, i, &format!("Node {name}"), obj.spec)?;
                doc.nodes.push(Node {
                    name: name.clone(),
                    addresses: s.addresses,
                    blocks: s.blocks,
                    vxlan_tunnel_ip: s.vxlan_tunnel_ip,
                    vxlan_tunnel_mac: s.vxlan_tunnel_mac,
                    ipip_tunnel_ip: s.ipip_tunnel_ip,
                });
            }
            (API_VERSION, "Endpoint") => {
                let s: EndpointYaml = spec_of(text, i, &format!("Endpoint {name}"), obj.spec)?;
                let _ = s.interface_kind;
                let ns = obj.metadata.namespace.as_deref().unwrap_or("default");
                doc.endpoints.push(EndpointSpec {
                    port: s.port,
                    mac: s.mac,
                    ips: s.ips,
                    pod: Some(format!("{ns}/{name}")),
                    labels: obj.metadata.labels,
                    // namespaced policies select the pod by it
                    namespace: Some(ns.to_owned()),
                    service_account: None,
                    named_ports: Vec::new(),
                });
            }
            (api_version, kind) => {
                return Err(refusal(
                    n,
                    None,
                    Some(&format!("{kind} {name}")),
                    document_line(text, i),
                    &format!("{api_version} {kind} is not supported (supported: projectcalico.org/v3 IPPool, {API_VERSION} Node and Endpoint)"),
                ))
            }
        }
    }
    if doc.pools.is_empty() && doc.nodes.is_empty() && doc.endpoints.is_empty() {
        return Err("the file holds no object".into());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALICO: &str = r#"
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
  blockSize: 26
  ipipMode: Always
  vxlanMode: Never
  natOutgoing: true
  nodeSelector: all()
  disableBGPExport: false
  allowedUses: [Workload, Tunnel]
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: second
spec:
  cidr: 10.70.0.0/24
---
"#;

    #[test]
    fn calico_ippools_parse_unchanged() {
        let d = parse(CALICO).unwrap();
        assert_eq!(d.pools.len(), 2);
        let p = &d.pools[0];
        assert_eq!(p.name, "default-ipv4-ippool");
        assert_eq!(p.cidr, "192.168.0.0/16");
        assert_eq!(p.block_size, Some(26));
        assert_eq!(p.ipip_mode, Some(EncapMode::Always));
        assert_eq!(p.vxlan_mode, Some(EncapMode::Never));
        assert!(p.nat_outgoing);
        assert_eq!(p.node_selector.as_deref(), Some("all()"));
        assert_eq!(d.pools[1].block_size, None);
    }

    #[test]
    fn our_kinds_beside_calicos() {
        let text = format!(
            "{CALICO}\napiVersion: vswitch.dev/v1alpha1\nkind: Node\nmetadata: {{name: node-1}}\n\
             spec: {{addresses: [192.168.1.10/24]}}\n---\n\
             apiVersion: vswitch.dev/v1alpha1\nkind: Endpoint\n\
             metadata: {{name: web-0, namespace: shop, labels: {{app: web}}}}\n\
             spec: {{port: tap1, mac: '02:00:0a:00:00:01', ips: [10.244.0.5], interfaceKind: tap}}\n"
        );
        let d = parse(&text).unwrap();
        assert_eq!(d.pools.len(), 2);
        assert_eq!(d.nodes, vec![Node::new("node-1", &["192.168.1.10/24"])]);
        let e = &d.endpoints[0];
        assert_eq!(e.port, "tap1");
        assert_eq!(e.pod.as_deref(), Some("shop/web-0"));
        assert_eq!(e.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(e.ips, vec![std::net::Ipv4Addr::new(10, 244, 0, 5)]);
    }

    #[test]
    fn unknown_things_refuse_the_whole_file() {
        for (text, want) in [
            ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nspec: {}\n", "not supported"),
            (
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.0.0.0/8, bogus: 1}\n",
                "bogus",
            ),
            (
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.0.0.0/8, ipipMode: Sometimes}\n",
                "Sometimes",
            ),
            ("a: [", "not YAML"),
            ("", "no object"),
            ("kind: IPPool\n", "document 1"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}

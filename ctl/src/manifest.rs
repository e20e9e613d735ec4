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

/// Parses every document of a file; any document that is not understood
/// refuses the whole file, naming the document.
pub fn parse(text: &str) -> Result<Desired, String> {
    let mut doc = Desired::default();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = serde_yaml_ng::Value::deserialize(de)
            .map_err(|e| format!("document {n}: not YAML: {e}"))?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing ---
        }
        let obj: Object = serde_yaml_ng::from_value(value)
            .map_err(|e| format!("document {n}: not a Kubernetes object: {e}"))?;
        let name = &obj.metadata.name;
        match (obj.api_version.as_str(), obj.kind.as_str()) {
            ("projectcalico.org/v3" | "crd.projectcalico.org/v1", "IPPool") => {
                let s: IpPoolSpec = serde_yaml_ng::from_value(obj.spec)
                    .map_err(|e| format!("document {n} (IPPool {name}): {e}"))?;
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
                let s: NodeSpec = serde_yaml_ng::from_value(obj.spec)
                    .map_err(|e| format!("document {n} (Node {name}): {e}"))?;
                doc.nodes.push(Node {
                    name: name.clone(),
                    addresses: s.addresses,
                });
            }
            (API_VERSION, "Endpoint") => {
                let s: EndpointYaml = serde_yaml_ng::from_value(obj.spec)
                    .map_err(|e| format!("document {n} (Endpoint {name}): {e}"))?;
                let _ = s.interface_kind;
                let ns = obj.metadata.namespace.as_deref().unwrap_or("default");
                doc.endpoints.push(EndpointSpec {
                    port: s.port,
                    mac: s.mac,
                    ips: s.ips,
                    pod: Some(format!("{ns}/{name}")),
                    labels: obj.metadata.labels,
                    namespace: None,
                    service_account: None,
                    named_ports: Vec::new(),
                });
            }
            (api_version, kind) => {
                return Err(format!(
                    "document {n} ({kind} {name}): {api_version} {kind} is not supported (supported: projectcalico.org/v3 IPPool, {API_VERSION} Node and Endpoint)"
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
        assert_eq!(
            d.nodes,
            vec![Node {
                name: "node-1".into(),
                addresses: vec!["192.168.1.10/24".into()]
            }]
        );
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

//! Network policy objects as users write them and the facts about pods that
//! policy needs.
//!
//! The Kubernetes and Calico types accept what `kubectl get -o yaml` and
//! `calicoctl get -o yaml` print (camelCase names; metadata fields such as
//! `uid` or `creationTimestamp` are ignored). Unknown fields inside a
//! policy's `spec` are refused: a misspelt `ingres:` would otherwise turn an
//! allow policy into a silent deny-all. Selectors are kept as strings here;
//! the `policy` crate parses them (this crate stays free of the selector
//! language).
//!
//! [`EndpointInfo`] and [`NamespaceInfo`] are the facts the policy compiler
//! works from, whether they came from YAML, the node agent or the CNI
//! plugin.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// Accepts `null` where a list or map is expected: JSON written by Go
/// encodes an empty slice as `null`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The part of `metadata` that policy looks at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// `metadata.namespace`, or `default` as kubectl assumes.
    pub fn namespace_or_default(&self) -> &str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => "default",
        }
    }
}

// ---------------------------------------------------------------------------
// Kubernetes networking.k8s.io/v1 NetworkPolicy
// ---------------------------------------------------------------------------

/// `networking.k8s.io/v1` NetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// Required by the API server; absent reads as `{}` (every pod of the
    /// namespace).
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ingress: Vec<NetworkPolicyIngressRule>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub egress: Vec<NetworkPolicyEgressRule>,
    /// Absent: see [`NetworkPolicySpec::effective_types`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
}

impl NetworkPolicySpec {
    /// The directions the policy governs. With `policyTypes` absent (or
    /// empty) Kubernetes defaults to Ingress, plus Egress when there are
    /// egress rules.
    pub fn effective_types(&self) -> (bool, bool) {
        match &self.policy_types {
            Some(t) if !t.is_empty() => (
                t.contains(&PolicyType::Ingress),
                t.contains(&PolicyType::Egress),
            ),
            _ => (true, !self.egress.is_empty()),
        }
    }
}

/// A Kubernetes label selector: every `matchLabels` pair and every
/// expression must hold. `{}` selects everything.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// The API server's checks: `In`/`NotIn` need values, `Exists` and
    /// `DoesNotExist` take none.
    pub fn validate(&self) -> Result<(), String> {
        for (i, e) in self.match_expressions.iter().enumerate() {
            let wants_values = matches!(e.operator, SelectorOperator::In | SelectorOperator::NotIn);
            if wants_values && e.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}]: operator {:?} needs at least one value",
                    e.operator
                ));
            }
            if !wants_values && !e.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}]: operator {:?} takes no values",
                    e.operator
                ));
            }
            if e.key.is_empty() {
                return Err(format!("matchExpressions[{i}]: empty key"));
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    /// Empty: from anywhere.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub from: Vec<NetworkPolicyPeer>,
    /// Empty: every port and protocol.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<NetworkPolicyPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    /// Empty: to anywhere.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub to: Vec<NetworkPolicyPeer>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<NetworkPolicyPort>,
}

/// One peer: pods (of the policy's namespace, or of the namespaces
/// `namespaceSelector` picks), or an `ipBlock`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

impl NetworkPolicyPeer {
    /// The API server's rule: an ipBlock stands alone, and a peer names
    /// something.
    pub fn validate(&self) -> Result<(), String> {
        let selectors = self.pod_selector.is_some() || self.namespace_selector.is_some();
        match (&self.ip_block, selectors) {
            (Some(_), true) => {
                Err("ipBlock cannot be combined with podSelector or namespaceSelector".into())
            }
            (None, false) => Err("a peer needs podSelector, namespaceSelector or ipBlock".into()),
            _ => Ok(()),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub except: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPort {
    /// Default TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<K8sProtocol>,
    /// A number or a container port name; absent: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// With a numeric `port`, the last port of the range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
}

/// The protocols a Kubernetes NetworkPolicy port may name.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum K8sProtocol {
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

impl K8sProtocol {
    pub fn number(self) -> u8 {
        match self {
            K8sProtocol::Tcp => 6,
            K8sProtocol::Udp => 17,
            K8sProtocol::Sctp => 132,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            K8sProtocol::Tcp => "TCP",
            K8sProtocol::Udp => "UDP",
            K8sProtocol::Sctp => "SCTP",
        }
    }
}

/// Kubernetes' `IntOrString`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

// ---------------------------------------------------------------------------
// Calico projectcalico.org/v3 NetworkPolicy, GlobalNetworkPolicy, Tier
// ---------------------------------------------------------------------------

/// Calico's namespaced `projectcalico.org/v3` NetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CalicoNetworkPolicy {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CalicoPolicySpec,
}

/// Calico's `projectcalico.org/v3` GlobalNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GlobalNetworkPolicy {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GlobalPolicySpec,
}

/// The spec of a namespaced Calico NetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoPolicySpec {
    /// Lower goes first; absent goes after every ordered policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Absent: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Absent or empty: `all()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Absent: see [`default_types`].
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub types: Vec<PolicyType>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ingress: Vec<Rule>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub egress: Vec<Rule>,
    /// Accepted for compatibility; the switch has no staged policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_hints: Option<Vec<String>>,
}

/// The spec of a GlobalNetworkPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Selects endpoints by the labels of their namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub types: Vec<PolicyType>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ingress: Vec<Rule>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub egress: Vec<Rule>,
    /// Host-endpoint policies: Calico applies them to host endpoints only,
    /// so with either set the policy selects no pod.
    #[serde(default, skip_serializing_if = "is_default")]
    pub do_not_track: bool,
    #[serde(default, rename = "preDNAT", skip_serializing_if = "is_default")]
    pub pre_dnat: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_on_forward: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_hints: Option<Vec<String>>,
}

/// Calico's default for an absent `types`: Ingress when there are no egress
/// rules (also when there are no rules at all), Egress when there are only
/// egress rules, both when there are both.
pub fn default_types(ingress: &[Rule], egress: &[Rule]) -> (bool, bool) {
    if egress.is_empty() {
        (true, false)
    } else if ingress.is_empty() {
        (false, true)
    } else {
        (true, true)
    }
}

/// `types`, or their default when absent.
pub fn effective_types(types: &[PolicyType], ingress: &[Rule], egress: &[Rule]) -> (bool, bool) {
    if types.is_empty() {
        default_types(ingress, egress)
    } else {
        (
            types.contains(&PolicyType::Ingress),
            types.contains(&PolicyType::Egress),
        )
    }
}

/// One Calico rule. Every field that is set must match.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    /// 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "is_default")]
    pub destination: EntityRule,
    /// Annotations on the rule; carried, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// What a matching rule does. `Log` records the packet and goes on to the
/// next rule; `Pass` skips the rest of the tier.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Action {
    #[default]
    Allow,
    Deny,
    Log,
    Pass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Log => "Log",
            Action::Pass => "Pass",
        }
    }
}

/// `icmp` / `notICMP`: a type, optionally with a code.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpFields {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// The source or destination half of a rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// CIDRs (or bare addresses); any of them.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub nets: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<Port>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_ports: Vec<Port>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// An IP protocol as Calico spells it: a name or a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Sctp,
    UdpLite,
    IcmpV6,
    Number(u8),
}

impl Protocol {
    const NAMES: [(&'static str, Protocol); 6] = [
        ("TCP", Protocol::Tcp),
        ("UDP", Protocol::Udp),
        ("ICMP", Protocol::Icmp),
        ("SCTP", Protocol::Sctp),
        ("UDPLite", Protocol::UdpLite),
        ("ICMPv6", Protocol::IcmpV6),
    ];

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::IcmpV6 => 58,
            Protocol::Number(n) => n,
        }
    }

    /// Whether rules may match ports of this protocol (Calico's rule).
    pub fn supports_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132 | 136)
    }

    /// Whether `icmp`/`notICMP` may go with this protocol.
    pub fn is_icmp(self) -> bool {
        matches!(self.number(), 1 | 58)
    }

    /// Names in any case (Calico's v1 API wrote them in lower case) or a
    /// number 0-255.
    pub fn parse(s: &str) -> Result<Protocol, String> {
        if let Some((_, p)) = Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Ok(*p);
        }
        s.parse::<u8>().map(Protocol::Number).map_err(|_| {
            format!("unknown protocol '{s}': expected TCP, UDP, ICMP, SCTP, UDPLite, ICMPv6 or a number 0-255")
        })
    }

    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.number()),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Number(n) => s.serialize_u8(*n),
            p => s.serialize_str(p.name().unwrap_or("")),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol name (TCP, UDP, ICMP, SCTP, UDPLite, ICMPv6) or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                Protocol::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                u8::try_from(v)
                    .map(Protocol::Number)
                    .map_err(|_| E::custom(format!("protocol number {v} is not 0-255")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                u8::try_from(v)
                    .map(Protocol::Number)
                    .map_err(|_| E::custom(format!("protocol number {v} is not 0-255")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A Calico port: a number, a range `first:last`, or a named port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    Range { first: u16, last: u16 },
    Named(String),
}

impl Port {
    /// `80`, `80:90` or a name. A name is anything that is not numeric; a
    /// range must be ascending.
    pub fn parse(s: &str) -> Result<Port, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty port".into());
        }
        if let Some((a, b)) = s.split_once(':') {
            let num = |x: &str| {
                x.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("bad port range '{s}': ports are 0-65535"))
            };
            let (first, last) = (num(a)?, num(b)?);
            if first > last {
                return Err(format!("bad port range '{s}': {first} is above {last}"));
            }
            return Ok(Port::Range { first, last });
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u16>()
                .map(|p| Port::Range { first: p, last: p })
                .map_err(|_| format!("bad port '{s}': ports are 0-65535"));
        }
        Ok(Port::Named(s.to_owned()))
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Range { first, last } if first == last => write!(f, "{first}"),
            Port::Range { first, last } => write!(f, "{first}:{last}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Range { first, last } if first == last => s.serialize_u16(*first),
            p => s.collect_str(p),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a range \"first:last\" or a port name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Port::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(|p| Port::Range { first: p, last: p })
                    .map_err(|_| E::custom(format!("port {v} is not 0-65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(|p| Port::Range { first: p, last: p })
                    .map_err(|_| E::custom(format!("port {v} is not 0-65535")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Calico's `projectcalico.org/v3` Tier: policies are evaluated tier by
/// tier, in ascending `order`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Tier {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: TierSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// Absent: after every ordered tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// What happens to a packet no rule of the tier decided: `Deny`
    /// (Calico's default) or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<Action>,
}

/// The name of the tier policies go to without `tier`, and Kubernetes
/// NetworkPolicies always.
pub const DEFAULT_TIER: &str = "default";
/// Calico's order of the `default` tier.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// Calico's order for converted Kubernetes NetworkPolicies.
pub const K8S_POLICY_ORDER: f64 = 1000.0;
/// The prefix Calico gives converted Kubernetes NetworkPolicies.
pub const K8S_POLICY_PREFIX: &str = "knp.default.";

// ---------------------------------------------------------------------------
// The policy set of the desired state
// ---------------------------------------------------------------------------

/// One object of the policy set, as carried in the desired-state document:
/// `{"k8s": {...}}`, `{"calico": {...}}`, `{"global": {...}}` or
/// `{"tier": {...}}`. Tiers travel with the policies because they only
/// mean something to them: their order and default action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// `networking.k8s.io/v1` NetworkPolicy.
    K8s(NetworkPolicy),
    /// `projectcalico.org/v3` NetworkPolicy.
    Calico(CalicoNetworkPolicy),
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    Global(GlobalNetworkPolicy),
    /// `projectcalico.org/v3` Tier.
    Tier(Tier),
}

impl Policy {
    /// The kind, as users write it, and the object's name (`ns/name` for
    /// namespaced ones), for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Policy::K8s(_) => "NetworkPolicy (networking.k8s.io/v1)",
            Policy::Calico(_) => "NetworkPolicy (projectcalico.org/v3)",
            Policy::Global(_) => "GlobalNetworkPolicy",
            Policy::Tier(_) => "Tier",
        }
    }

    pub fn display_name(&self) -> String {
        match self {
            Policy::K8s(p) => format!("{}/{}", p.metadata.namespace_or_default(), p.metadata.name),
            Policy::Calico(p) => {
                format!("{}/{}", p.metadata.namespace_or_default(), p.metadata.name)
            }
            Policy::Global(p) => p.metadata.name.clone(),
            Policy::Tier(t) => t.metadata.name.clone(),
        }
    }
}

// ---------------------------------------------------------------------------
// Facts about the cluster
// ---------------------------------------------------------------------------

/// A namespace and its labels (namespaceSelectors match them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct NamespaceInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A pod as policy sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct EndpointInfo {
    /// `namespace/pod`.
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default)]
    pub ips: Vec<Ipv4Addr>,
    /// Container ports with a name, which rules may refer to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<NamedPort>,
    /// On this node: the switch enforces its policy. Remote pods only feed
    /// the address sets that rules match peers against.
    #[serde(default)]
    pub local: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct NamedPort {
    pub name: String,
    pub protocol: K8sProtocol,
    pub port: u16,
}

// ---------------------------------------------------------------------------
// Kubernetes v1 Namespace and Pod, as far as policy goes
// ---------------------------------------------------------------------------

/// `v1` Namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Namespace {
    pub metadata: ObjectMeta,
}

/// `v1` Pod. Fields policy does not use are ignored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Pod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<Container>,
    #[serde(default, deserialize_with = "nullable")]
    pub init_containers: Vec<Container>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<ContainerPort>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    /// Default TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<K8sProtocol>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(
        default,
        rename = "podIPs",
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pod_ips: Vec<PodIp>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PodIp {
    pub ip: String,
}

impl Pod {
    /// The pod's IPv4 addresses: `status.podIPs`, else `status.podIP` (the
    /// order Calico reads them in). IPv6 addresses are left out; an address
    /// that is not an IP at all is an error.
    pub fn ipv4s(&self) -> Result<Vec<Ipv4Addr>, String> {
        let raw: Vec<&str> = if self.status.pod_ips.is_empty() {
            self.status.pod_ip.as_deref().into_iter().collect()
        } else {
            self.status.pod_ips.iter().map(|p| p.ip.as_str()).collect()
        };
        let mut out = Vec::new();
        for s in raw {
            match s.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) => {
                    if !out.contains(&a) {
                        out.push(a)
                    }
                }
                Ok(std::net::IpAddr::V6(_)) => {}
                Err(_) => return Err(format!("'{s}' is not an IP address")),
            }
        }
        Ok(out)
    }

    /// Named container ports (init containers' too, as Calico takes them).
    pub fn named_ports(&self) -> Vec<NamedPort> {
        let mut out: Vec<NamedPort> = Vec::new();
        for c in self
            .spec
            .containers
            .iter()
            .chain(&self.spec.init_containers)
        {
            for p in &c.ports {
                if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                    let np = NamedPort {
                        name: name.to_owned(),
                        protocol: p.protocol.unwrap_or_default(),
                        port: p.container_port,
                    };
                    if !out.contains(&np) {
                        out.push(np);
                    }
                }
            }
        }
        out
    }

    /// The endpoint this pod is to policy.
    pub fn endpoint(&self, local: bool) -> Result<EndpointInfo, String> {
        let ns = self.metadata.namespace_or_default().to_owned();
        Ok(EndpointInfo {
            name: format!("{ns}/{}", self.metadata.name),
            namespace: ns,
            labels: self.metadata.labels.clone(),
            service_account: self
                .spec
                .service_account_name
                .clone()
                .filter(|s| !s.is_empty()),
            ips: self.ipv4s()?,
            named_ports: self.named_ports(),
            local,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k8s_policy_from_kubectl_json() {
        let j = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
            "metadata":{"name":"p","namespace":"x","creationTimestamp":null,"uid":"u","resourceVersion":"1"},
            "spec":{"podSelector":{"matchLabels":{"pod":"a"}},
                    "ingress":[{"from":[{"namespaceSelector":{"matchExpressions":[{"key":"ns","operator":"NotIn","values":["x"]}]},
                                         "podSelector":{}}],
                                "ports":[{"port":"serve-80-tcp"},{"port":53,"protocol":"UDP","endPort":60}]}],
                    "egress":null}}"#;
        let p: NetworkPolicy = serde_json::from_str(j).unwrap();
        assert_eq!(p.metadata.name, "p");
        assert_eq!(p.spec.ingress[0].ports[1].protocol, Some(K8sProtocol::Udp));
        assert_eq!(
            p.spec.ingress[0].ports[0].port,
            Some(IntOrString::String("serve-80-tcp".into()))
        );
        assert_eq!(p.spec.ingress[0].ports[1].port, Some(IntOrString::Int(53)));
        assert_eq!(p.spec.effective_types(), (true, false));
        let back = serde_json::to_string(&Policy::K8s(p.clone())).unwrap();
        let again: Policy = serde_json::from_str(&back).unwrap();
        assert_eq!(again, Policy::K8s(p));
    }

    #[test]
    fn k8s_types_default() {
        let mut s = NetworkPolicySpec::default();
        assert_eq!(s.effective_types(), (true, false));
        s.egress.push(NetworkPolicyEgressRule::default());
        assert_eq!(s.effective_types(), (true, true));
        s.policy_types = Some(vec![PolicyType::Ingress]);
        assert_eq!(s.effective_types(), (true, false));
        s.policy_types = Some(vec![PolicyType::Egress]);
        assert_eq!(s.effective_types(), (false, true));
    }

    #[test]
    fn calico_types_default() {
        let r = [Rule::default()];
        assert_eq!(default_types(&[], &[]), (true, false));
        assert_eq!(default_types(&r, &[]), (true, false));
        assert_eq!(default_types(&[], &r), (false, true));
        assert_eq!(default_types(&r, &r), (true, true));
        assert_eq!(
            effective_types(&[PolicyType::Egress], &r, &[]),
            (false, true)
        );
    }

    #[test]
    fn unknown_spec_field_and_action_are_refused() {
        let e = serde_json::from_str::<CalicoNetworkPolicy>(
            r#"{"metadata":{"name":"p"},"spec":{"ingres":[]}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `ingres`"), "{e}");
        let e = serde_json::from_str::<Rule>(r#"{"action":"Drop"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `Drop`"), "{e}");
        assert!(
            e.to_string().contains("`Allow`, `Deny`, `Log`, `Pass`"),
            "{e}"
        );
    }

    #[test]
    fn protocols_and_ports() {
        let r: Rule = serde_json::from_str(
            r#"{"action":"Allow","protocol":"udplite","notProtocol":17,
                "icmp":{"type":8,"code":0},
                "destination":{"ports":[80,"81:90","http","443"],"notPorts":["0:1"]}}"#,
        )
        .unwrap();
        assert_eq!(r.protocol, Some(Protocol::UdpLite));
        assert_eq!(r.not_protocol.map(Protocol::number), Some(17));
        assert_eq!(
            r.icmp,
            Some(IcmpFields {
                icmp_type: Some(8),
                code: Some(0)
            })
        );
        assert_eq!(
            r.destination.ports,
            vec![
                Port::Range {
                    first: 80,
                    last: 80
                },
                Port::Range {
                    first: 81,
                    last: 90
                },
                Port::Named("http".into()),
                Port::Range {
                    first: 443,
                    last: 443
                },
            ]
        );
        assert!(Port::parse("90:80").is_err());
        assert!(Port::parse("70000").is_err());
        assert!(Protocol::parse("GRE").is_err());
        assert_eq!(Protocol::parse("47"), Ok(Protocol::Number(47)));
        assert!(serde_json::from_str::<Protocol>("300").is_err());
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["protocol"], "UDPLite");
        assert_eq!(back["destination"]["ports"][0], 80);
        assert_eq!(back["destination"]["ports"][1], "81:90");
        assert_eq!(back["notICMP"], serde_json::Value::Null);
    }

    #[test]
    fn pod_facts() {
        let p: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"a","namespace":"x","labels":{"pod":"a"}},
                "spec":{"serviceAccountName":"sa1","nodeName":"n1",
                        "containers":[{"name":"c","image":"i","ports":[
                            {"name":"http","containerPort":80},
                            {"name":"dns","containerPort":53,"protocol":"UDP"},
                            {"containerPort":9000}]}]},
                "status":{"phase":"Running","podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"},{"ip":"fd00::1"}]}}"#,
        )
        .unwrap();
        let ep = p.endpoint(true).unwrap();
        assert_eq!(ep.name, "x/a");
        assert_eq!(ep.service_account.as_deref(), Some("sa1"));
        assert_eq!(ep.ips, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert_eq!(ep.named_ports.len(), 2);
        assert_eq!(ep.named_ports[1].protocol, K8sProtocol::Udp);
        let mut bad = p.clone();
        bad.status.pod_ips.clear();
        bad.status.pod_ip = Some("nope".into());
        assert!(bad.endpoint(true).is_err());
    }

    #[test]
    fn peers_validate() {
        let mut peer = NetworkPolicyPeer::default();
        assert!(peer.validate().is_err());
        peer.ip_block = Some(IpBlock {
            cidr: "10.0.0.0/8".into(),
            except: vec![],
        });
        assert!(peer.validate().is_ok());
        peer.pod_selector = Some(LabelSelector::default());
        assert!(peer.validate().is_err());
        let sel = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: SelectorOperator::In,
                values: vec![],
            }],
        };
        assert!(sel.validate().is_err());
    }
}

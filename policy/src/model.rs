//! Policies lowered to Calico's own data model, the one Felix enforces.
//!
//! Kubernetes NetworkPolicies are translated the way Calico's
//! `K8sNetworkPolicyToCalico` does (one rule per protocol and peer, TCP as
//! the default protocol, `knp.default.` names at order 1000 in the default
//! tier), and every policy's selectors are combined the way Calico's update
//! processors combine them before Felix sees them: a namespaced policy
//! selects only its namespace, a rule's `selector` in a namespaced policy
//! means pods of that namespace unless `namespaceSelector` says otherwise,
//! `notSelector` is never scoped, and so on. Calico builds those
//! combinations as selector strings with `pcns.`/`pcsa.` prefixed labels;
//! here they stay structured ([`EndpointSelector`]), which selects the same
//! endpoints and lets the compiler test a namespace selector once per
//! namespace instead of once per pod.
//!
//! Selectors are interned: each distinct one is parsed once and named by a
//! [`SelId`], so that the compiler's tables key on small integers.
//!
//! Everything a policy can be refused for is checked here, so a policy that
//! lowers compiles.

use crate::selector::Selector;
use api::policy::{
    self as apipol, Action, CalicoNetworkPolicy, EntityRule, GlobalNetworkPolicy, IntOrString,
    K8sProtocol, LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Policy, Port,
    Protocol, Rule, SelectorOperator, ServiceAccountMatch,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// FxHash (as in rustc): much cheaper than SipHash on the short keys the
/// compiler hashes by the hundred thousand. Its keys come from the desired
/// state, not from packets, so flooding resistance buys nothing.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A distinct selector: an index into [`Lowerer::selectors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SelId(pub u32);

/// Which namespaces an [`EndpointSelector`] admits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamespaceScope {
    /// Every namespace.
    Any,
    /// Exactly this one.
    Named(String),
    /// Those whose labels (plus `projectcalico.org/name`) match.
    Matching(SelId),
    /// None: `global()` in a namespaceSelector selects only non-namespaced
    /// entities (host endpoints, global network sets), which are not pods.
    Nothing,
}

/// A set of endpoints, as the combination of conditions Calico would write
/// as one selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointSelector {
    pub namespace: NamespaceScope,
    /// On the endpoint's labels (with Calico's implicit ones).
    pub selector: Option<SelId>,
    /// The endpoint's service account is one of these (sorted, unique);
    /// empty: no condition.
    pub service_account_names: Vec<String>,
    /// On the labels of the endpoint's service account.
    pub service_account_selector: Option<SelId>,
    /// The endpoint must have a service account at all (Calico rewrites
    /// `all()` to `has(projectcalico.org/serviceaccount)` in a
    /// GlobalNetworkPolicy's serviceAccountSelector).
    pub needs_service_account: bool,
}

impl EndpointSelector {
    fn scope(namespace: NamespaceScope) -> EndpointSelector {
        EndpointSelector {
            namespace,
            selector: None,
            service_account_names: Vec::new(),
            service_account_selector: None,
            needs_service_account: false,
        }
    }

    /// Every endpoint of every namespace.
    pub fn any() -> EndpointSelector {
        Self::scope(NamespaceScope::Any)
    }
}

/// An IPv4 network, or the fact that a net was IPv6 (which an IPv4 packet
/// never matches).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Net {
    V4 { addr: u32, mask: u32 },
    V6,
}

impl Net {
    /// `a.b.c.d/n`, an IPv6 CIDR, or with `bare_ok` a plain address (Calico's
    /// `nets` take one; Kubernetes' `ipBlock` does not). Host bits are
    /// cleared, as Calico does.
    pub fn parse(s: &str, bare_ok: bool) -> Result<Net, String> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None if bare_ok => (s, None),
            None => return Err(format!("'{s}' is not a CIDR (address/prefix)")),
        };
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a CIDR: bad address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(l) if l <= max => l,
                _ => return Err(format!("'{s}' is not a CIDR: bad prefix length")),
            },
        };
        Ok(match ip {
            IpAddr::V4(a) => {
                let mask = if len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(len))
                };
                Net::V4 {
                    addr: u32::from(a) & mask,
                    mask,
                }
            }
            IpAddr::V6(_) => Net::V6,
        })
    }

    pub fn contains(self, ip: u32) -> bool {
        match self {
            Net::V4 { addr, mask } => ip & mask == addr,
            Net::V6 => false,
        }
    }
}

/// `icmp`/`notICMP`: type and code, either may be absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: Option<u8>,
    pub code: Option<u8>,
}

/// One side of a lowered rule.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entity {
    pub nets: Vec<Net>,
    pub not_nets: Vec<Net>,
    pub selector: Option<EndpointSelector>,
    pub not_selector: Option<EndpointSelector>,
    pub ports: Vec<Port>,
    pub not_ports: Vec<Port>,
}

/// A rule in Calico's backend form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoweredRule {
    pub action: Action,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub ip_version: Option<u8>,
    pub src: Entity,
    pub dst: Entity,
}

impl LoweredRule {
    fn allow(protocol: Option<u8>, src: Entity, dst: Entity) -> LoweredRule {
        LoweredRule {
            action: Action::Allow,
            protocol,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            ip_version: None,
            src,
            dst,
        }
    }
}

/// A policy in Calico's backend form.
#[derive(Clone, Debug, PartialEq)]
pub struct LoweredPolicy {
    /// Felix's key: `ns/name` for namespaced policies (`ns/knp.default.name`
    /// for Kubernetes ones), `name` for global ones. Ties in `order` are
    /// broken by it.
    pub name: String,
    pub tier: String,
    /// `None` goes after every ordered policy of the tier.
    pub order: Option<f64>,
    /// The endpoints the policy applies to; `None`: none at all.
    pub applies_to: Option<EndpointSelector>,
    /// `None` when the policy does not govern that direction.
    pub ingress: Option<Vec<LoweredRule>>,
    pub egress: Option<Vec<LoweredRule>>,
}

/// Why a policy cannot be used: which field, what it held, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerError {
    /// e.g. `spec.ingress[0].source.selector`.
    pub path: String,
    /// The offending value where there is one (used to find its line).
    pub value: Option<String>,
    pub message: String,
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Where in an object a value is, built on the stack and only turned into
/// a string when something is wrong with it.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'static str),
    Field(&'a Path<'a>, &'static str),
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn field(&'a self, f: &'static str) -> Path<'a> {
        Path::Field(self, f)
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path::Index(self, i)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(s) => f.write_str(s),
            Path::Field(p, s) => write!(f, "{p}.{s}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

fn err(path: &Path<'_>, value: Option<&str>, message: impl Into<String>) -> LowerError {
    LowerError {
        path: path.to_string(),
        value: value.map(str::to_owned),
        message: message.into(),
    }
}

/// A failed parse, kept so that a repeated bad selector fails the same way.
#[derive(Clone)]
struct Bad {
    value: Option<String>,
    message: String,
}

impl Bad {
    fn at(&self, path: &Path<'_>) -> LowerError {
        err(path, self.value.as_deref(), self.message.clone())
    }
}

/// Lowers policies, and owns the table of distinct selectors they use.
#[derive(Default)]
pub struct Lowerer {
    table: Vec<Selector>,
    by_tree: FxMap<Selector, SelId>,
    by_text: FxMap<String, Result<SelId, Bad>>,
    /// Kubernetes label selectors, as pod selectors and as namespace
    /// selectors.
    k8s_pod: FxMap<LabelSelector, Result<SelId, Bad>>,
    k8s_ns: FxMap<LabelSelector, Result<SelId, Bad>>,
}

impl Lowerer {
    pub fn new() -> Lowerer {
        Lowerer::default()
    }

    /// Every distinct selector, indexed by [`SelId`].
    pub fn selectors(&self) -> &[Selector] {
        &self.table
    }

    pub fn selector(&self, id: SelId) -> &Selector {
        &self.table[id.0 as usize]
    }

    /// The table, for whoever resolves the lowered policies.
    pub fn into_selectors(self) -> Vec<Selector> {
        self.table
    }

    fn intern(&mut self, s: Selector) -> SelId {
        if let Some(&id) = self.by_tree.get(&s) {
            return id;
        }
        let id = SelId(self.table.len() as u32);
        self.table.push(s.clone());
        self.by_tree.insert(s, id);
        id
    }

    fn parse_text(&mut self, s: &str) -> Result<SelId, Bad> {
        if let Some(r) = self.by_text.get(s) {
            return r.clone();
        }
        let r = match Selector::parse(s) {
            Ok(sel) => Ok(self.intern(sel)),
            Err(e) => Err(Bad {
                value: Some(s.to_owned()),
                message: e.to_string(),
            }),
        };
        self.by_text.insert(s.to_owned(), r.clone());
        r
    }

    /// A selector field that is set and not blank.
    fn parse_opt(
        &mut self,
        path: &Path<'_>,
        s: &Option<String>,
    ) -> Result<Option<SelId>, LowerError> {
        match s.as_deref() {
            None => Ok(None),
            Some(t) if t.trim().is_empty() => Ok(None),
            Some(t) => self.parse_text(t).map(Some).map_err(|b| b.at(path)),
        }
    }

    /// A namespaceSelector's meaning for pods: `all()` is every namespace
    /// and `global()` none.
    fn namespace_scope(&self, id: SelId) -> NamespaceScope {
        let s = self.selector(id);
        if s.is_all() {
            NamespaceScope::Any
        } else if s.is_global() {
            NamespaceScope::Nothing
        } else {
            NamespaceScope::Matching(id)
        }
    }

    pub fn lower(&mut self, p: &Policy) -> Result<LoweredPolicy, LowerError> {
        match p {
            Policy::K8s(np) => self.k8s(np),
            Policy::Calico(cp) => self.calico(cp),
            Policy::Global(gp) => self.global(gp),
            Policy::Tier(_) => Err(err(&Path::Root("kind"), None, "a Tier is not a policy")),
        }
    }

    // --- Kubernetes NetworkPolicy -------------------------------------------

    fn k8s(&mut self, np: &NetworkPolicy) -> Result<LoweredPolicy, LowerError> {
        if np.metadata.name.is_empty() {
            return Err(err(
                &Path::Root("metadata.name"),
                None,
                "a NetworkPolicy needs a name",
            ));
        }
        let ns = np.metadata.namespace_or_default().to_owned();
        let spec = &np.spec;
        let sel = self.k8s_selector(&Path::Root("spec.podSelector"), &spec.pod_selector, true)?;
        let (do_ingress, do_egress) = spec.effective_types();
        let mut ingress = Vec::new();
        let root = Path::Root("spec.ingress");
        for (i, r) in spec.ingress.iter().enumerate() {
            let path = root.index(i);
            ingress.extend(self.k8s_rule(&path, "from", &r.from, &r.ports, &ns, true)?);
        }
        let mut egress = Vec::new();
        let root = Path::Root("spec.egress");
        for (i, r) in spec.egress.iter().enumerate() {
            let path = root.index(i);
            egress.extend(self.k8s_rule(&path, "to", &r.to, &r.ports, &ns, false)?);
        }
        let mut applies = EndpointSelector::scope(NamespaceScope::Named(ns.clone()));
        applies.selector = Some(sel);
        Ok(LoweredPolicy {
            name: format!("{ns}/{}{}", apipol::K8S_POLICY_PREFIX, np.metadata.name),
            tier: apipol::DEFAULT_TIER.to_owned(),
            order: Some(apipol::K8S_POLICY_ORDER),
            applies_to: Some(applies),
            ingress: do_ingress.then_some(ingress),
            egress: do_egress.then_some(egress),
        })
    }

    /// Calico's `k8sSelectorToCalico`: pod selectors also require
    /// `projectcalico.org/orchestrator == 'k8s'`; an empty namespace
    /// selector is `all()`.
    fn k8s_selector(
        &mut self,
        path: &Path<'_>,
        s: &LabelSelector,
        pod: bool,
    ) -> Result<SelId, LowerError> {
        let cache = if pod { &self.k8s_pod } else { &self.k8s_ns };
        if let Some(r) = cache.get(s) {
            return r.clone().map_err(|b| b.at(path));
        }
        let r = self.k8s_selector_uncached(s, pod);
        let cache = if pod {
            &mut self.k8s_pod
        } else {
            &mut self.k8s_ns
        };
        cache.insert(s.clone(), r.clone());
        r.map_err(|b| b.at(path))
    }

    fn k8s_selector_uncached(&mut self, s: &LabelSelector, pod: bool) -> Result<SelId, Bad> {
        s.validate().map_err(|message| Bad {
            value: None,
            message,
        })?;
        if !pod && s.is_empty() {
            return Ok(self.intern(Selector::all()));
        }
        let mut terms: Vec<String> = Vec::new();
        if pod {
            terms.push("projectcalico.org/orchestrator == 'k8s'".into());
        }
        let quote = |v: &str| -> Result<String, Bad> {
            if !v.contains('\'') {
                Ok(format!("'{v}'"))
            } else if !v.contains('"') {
                Ok(format!("\"{v}\""))
            } else {
                Err(Bad {
                    value: Some(v.to_owned()),
                    message: format!("label value {v:?} holds both quote characters"),
                })
            }
        };
        for (k, v) in &s.match_labels {
            terms.push(format!("{k} == {}", quote(v)?));
        }
        for e in &s.match_expressions {
            let values = || -> Result<String, Bad> {
                let q: Result<Vec<String>, Bad> = e.values.iter().map(|v| quote(v)).collect();
                Ok(q?.join(", "))
            };
            terms.push(match e.operator {
                SelectorOperator::In => format!("{} in {{ {} }}", e.key, values()?),
                SelectorOperator::NotIn => format!("{} not in {{ {} }}", e.key, values()?),
                SelectorOperator::Exists => format!("has({})", e.key),
                SelectorOperator::DoesNotExist => format!("! has({})", e.key),
            });
        }
        self.parse_text(&terms.join(" && "))
    }

    /// Calico's `k8sRuleToCalico`: one Allow rule per protocol (in sorted
    /// order) and peer (in order).
    fn k8s_rule(
        &mut self,
        path: &Path<'_>,
        peers_field: &'static str,
        peers: &[NetworkPolicyPeer],
        ports: &[NetworkPolicyPort],
        ns: &str,
        ingress: bool,
    ) -> Result<Vec<LoweredRule>, LowerError> {
        // protocol -> ports; a `None` protocol (no ports at all) matches any
        // protocol; `None` ports match every port of their protocol.
        let mut by_proto: BTreeMap<&'static str, (Option<u8>, Option<Vec<Port>>)> = BTreeMap::new();
        if ports.is_empty() {
            by_proto.insert("", (None, None));
        }
        let ports_path = path.field("ports");
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.unwrap_or(K8sProtocol::Tcp);
            let port = k8s_port(&ports_path.index(i), p)?;
            let entry = by_proto
                .entry(proto.as_str())
                .or_insert_with(|| (Some(proto.number()), Some(Vec::new())));
            match (port, &mut entry.1) {
                // No port: every port of the protocol, which absorbs the rest.
                (None, slot) => *slot = None,
                (Some(port), Some(list)) => list.push(port),
                (Some(_), None) => {}
            }
        }
        let peers_path = path.field(peers_field);
        let peer_list: Vec<Option<&NetworkPolicyPeer>> = if peers.is_empty() {
            vec![None]
        } else {
            peers.iter().map(Some).collect()
        };
        let mut entities = Vec::with_capacity(peer_list.len());
        for (j, peer) in peer_list.into_iter().enumerate() {
            entities.push(self.k8s_peer(&peers_path.index(j), peer, ns)?);
        }
        let mut out = Vec::with_capacity(by_proto.len() * entities.len());
        for (proto, dports) in by_proto.values() {
            let dports = dports.clone().unwrap_or_default();
            for e in &entities {
                let mut e = e.clone();
                let mut other = Entity::default();
                if ingress {
                    other.ports = dports.clone();
                    out.push(LoweredRule::allow(*proto, e, other));
                } else {
                    e.ports = dports.clone();
                    out.push(LoweredRule::allow(*proto, other, e));
                }
            }
        }
        Ok(out)
    }

    fn k8s_peer(
        &mut self,
        path: &Path<'_>,
        peer: Option<&NetworkPolicyPeer>,
        ns: &str,
    ) -> Result<Entity, LowerError> {
        let mut e = Entity::default();
        let Some(peer) = peer else { return Ok(e) };
        peer.validate().map_err(|m| err(path, None, m))?;
        if let Some(b) = &peer.ip_block {
            let bpath = path.field("ipBlock");
            e.nets.push(
                Net::parse(&b.cidr, false)
                    .map_err(|m| err(&bpath.field("cidr"), Some(&b.cidr), m))?,
            );
            let xpath = bpath.field("except");
            for (k, x) in b.except.iter().enumerate() {
                e.not_nets
                    .push(Net::parse(x, false).map_err(|m| err(&xpath.index(k), Some(x), m))?);
            }
            return Ok(e);
        }
        let pod = match &peer.pod_selector {
            Some(s) => self.k8s_selector(&path.field("podSelector"), s, true)?,
            None => self.k8s_selector(path, &LabelSelector::default(), true)?,
        };
        let scope = match &peer.namespace_selector {
            None => NamespaceScope::Named(ns.to_owned()),
            Some(s) => {
                let id = self.k8s_selector(&path.field("namespaceSelector"), s, false)?;
                self.namespace_scope(id)
            }
        };
        let mut sel = EndpointSelector::scope(scope);
        sel.selector = Some(pod);
        e.selector = Some(sel);
        Ok(e)
    }

    // --- Calico NetworkPolicy and GlobalNetworkPolicy ------------------------

    fn calico(&mut self, cp: &CalicoNetworkPolicy) -> Result<LoweredPolicy, LowerError> {
        if cp.metadata.name.is_empty() {
            return Err(err(
                &Path::Root("metadata.name"),
                None,
                "a NetworkPolicy needs a name",
            ));
        }
        let ns = cp.metadata.namespace_or_default().to_owned();
        let s = &cp.spec;
        check_order(s.order)?;
        let mut applies = EndpointSelector::scope(NamespaceScope::Named(ns.clone()));
        applies.selector = self.parse_opt(&Path::Root("spec.selector"), &s.selector)?;
        applies.service_account_selector = self.parse_opt(
            &Path::Root("spec.serviceAccountSelector"),
            &s.service_account_selector,
        )?;
        let (do_in, do_out) = apipol::effective_types(&s.types, &s.ingress, &s.egress);
        let ingress = self.rules(&Path::Root("spec.ingress"), &s.ingress, Some(&ns))?;
        let egress = self.rules(&Path::Root("spec.egress"), &s.egress, Some(&ns))?;
        Ok(LoweredPolicy {
            name: format!("{ns}/{}", cp.metadata.name),
            tier: tier_name(&s.tier),
            order: s.order,
            applies_to: Some(applies),
            ingress: do_in.then_some(ingress),
            egress: do_out.then_some(egress),
        })
    }

    fn global(&mut self, gp: &GlobalNetworkPolicy) -> Result<LoweredPolicy, LowerError> {
        if gp.metadata.name.is_empty() {
            return Err(err(
                &Path::Root("metadata.name"),
                None,
                "a GlobalNetworkPolicy needs a name",
            ));
        }
        let s = &gp.spec;
        check_order(s.order)?;
        let selector = self.parse_opt(&Path::Root("spec.selector"), &s.selector)?;
        let ns_sel =
            self.parse_opt(&Path::Root("spec.namespaceSelector"), &s.namespace_selector)?;
        let sa_sel = self.parse_opt(
            &Path::Root("spec.serviceAccountSelector"),
            &s.service_account_selector,
        )?;
        // Calico replaces `all()` textually after combining the selectors: with
        // a namespaceSelector the policy's own all() becomes "in a namespace"
        // (true of every pod); otherwise, with a serviceAccountSelector, it
        // becomes "has a service account".
        let is_all = |id: Option<SelId>| id.is_some_and(|i| self.selector(i).is_all());
        let needs_sa =
            sa_sel.is_some() && (is_all(sa_sel) || (ns_sel.is_none() && is_all(selector)));
        let mut applies = EndpointSelector::scope(match ns_sel {
            Some(id) => self.namespace_scope(id),
            None => NamespaceScope::Any,
        });
        applies.selector = selector;
        applies.service_account_selector = sa_sel;
        applies.needs_service_account = needs_sa;
        let (do_in, do_out) = apipol::effective_types(&s.types, &s.ingress, &s.egress);
        let ingress = self.rules(&Path::Root("spec.ingress"), &s.ingress, None)?;
        let egress = self.rules(&Path::Root("spec.egress"), &s.egress, None)?;
        Ok(LoweredPolicy {
            name: gp.metadata.name.clone(),
            tier: tier_name(&s.tier),
            order: s.order,
            // Untracked and pre-DNAT policies apply to host endpoints only.
            applies_to: (!s.do_not_track && !s.pre_dnat).then_some(applies),
            ingress: do_in.then_some(ingress),
            egress: do_out.then_some(egress),
        })
    }

    fn rules(
        &mut self,
        path: &Path<'_>,
        rules: &[Rule],
        ns: Option<&str>,
    ) -> Result<Vec<LoweredRule>, LowerError> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| self.rule(&path.index(i), r, ns))
            .collect()
    }

    /// Calico's `RuleAPIV2ToBackend` plus the validation Calico's API does.
    fn rule(
        &mut self,
        path: &Path<'_>,
        r: &Rule,
        ns: Option<&str>,
    ) -> Result<LoweredRule, LowerError> {
        let has_ports = |e: &EntityRule| !e.ports.is_empty() || !e.not_ports.is_empty();
        if (has_ports(&r.source) || has_ports(&r.destination))
            && !r.protocol.is_some_and(Protocol::supports_ports)
        {
            return Err(err(
                &path.field("protocol"),
                None,
                "rules with ports or notPorts need protocol TCP, UDP, SCTP or UDPLite",
            ));
        }
        let icmp = |field: &'static str,
                    f: &Option<apipol::IcmpFields>|
         -> Result<Option<IcmpMatch>, LowerError> {
            let Some(f) = f else { return Ok(None) };
            let fpath = path.field(field);
            if !r.protocol.is_some_and(Protocol::is_icmp) {
                return Err(err(
                    &fpath,
                    None,
                    format!("{field} needs protocol ICMP or ICMPv6"),
                ));
            }
            if f.code.is_some() && f.icmp_type.is_none() {
                return Err(err(&fpath.field("code"), None, "an ICMP code needs a type"));
            }
            Ok(Some(IcmpMatch {
                icmp_type: f.icmp_type,
                code: f.code,
            }))
        };
        let icmp_m = icmp("icmp", &r.icmp)?;
        let not_icmp = icmp("notICMP", &r.not_icmp)?;
        if r.ip_version.is_some_and(|v| v != 4 && v != 6) {
            return Err(err(&path.field("ipVersion"), None, "ipVersion is 4 or 6"));
        }
        let src = self.entity(&path.field("source"), &r.source, ns)?;
        let dst = self.entity(&path.field("destination"), &r.destination, ns)?;
        Ok(LoweredRule {
            action: r.action,
            protocol: r.protocol.map(Protocol::number),
            not_protocol: r.not_protocol.map(Protocol::number),
            icmp: icmp_m,
            not_icmp,
            ip_version: r.ip_version,
            src,
            dst,
        })
    }

    /// Calico's `GetEntityRuleSelector`.
    fn entity(
        &mut self,
        path: &Path<'_>,
        e: &EntityRule,
        ns: Option<&str>,
    ) -> Result<Entity, LowerError> {
        let nets = |field: &'static str, list: &[String]| -> Result<Vec<Net>, LowerError> {
            let fpath = path.field(field);
            list.iter()
                .enumerate()
                .map(|(i, n)| Net::parse(n, true).map_err(|m| err(&fpath.index(i), Some(n), m)))
                .collect()
        };
        let selector = self.parse_opt(&path.field("selector"), &e.selector)?;
        let not_selector = self.parse_opt(&path.field("notSelector"), &e.not_selector)?;
        let ns_selector =
            self.parse_opt(&path.field("namespaceSelector"), &e.namespace_selector)?;
        let (sa_names, sa_selector) = match &e.service_accounts {
            Some(ServiceAccountMatch { names, selector }) => {
                let s =
                    self.parse_opt(&path.field("serviceAccounts").field("selector"), selector)?;
                let mut names = names.clone();
                names.sort();
                names.dedup();
                (names, s)
            }
            None => (Vec::new(), None),
        };
        let has_positive = selector.is_some() || !sa_names.is_empty() || sa_selector.is_some();
        let has_ns_selector = ns_selector.is_some();
        let scope = match ns_selector {
            Some(id) => Some(self.namespace_scope(id)),
            None => ns.map(|n| NamespaceScope::Named(n.to_owned())),
        };
        // The namespace condition applies as soon as any selector field is
        // used (notSelector included); with none, nets alone decide.
        let scope = scope.filter(|_| has_positive || has_ns_selector || not_selector.is_some());
        let positive = if scope.is_some() || has_positive {
            let mut s = EndpointSelector::scope(scope.unwrap_or(NamespaceScope::Any));
            s.selector = selector;
            s.service_account_names = sa_names;
            s.service_account_selector = sa_selector;
            Some(s)
        } else {
            None
        };
        let not_selector = not_selector.map(|id| {
            let mut n = EndpointSelector::any();
            n.selector = Some(id);
            n
        });
        let ports = |field: &'static str, list: &[Port]| -> Result<Vec<Port>, LowerError> {
            for (i, p) in list.iter().enumerate() {
                if matches!(p, Port::Named(n) if n.is_empty()) {
                    return Err(err(&path.field(field).index(i), None, "empty port name"));
                }
            }
            Ok(list.to_vec())
        };
        Ok(Entity {
            nets: nets("nets", &e.nets)?,
            not_nets: nets("notNets", &e.not_nets)?,
            selector: positive,
            not_selector,
            ports: ports("ports", &e.ports)?,
            not_ports: ports("notPorts", &e.not_ports)?,
        })
    }
}

/// A Kubernetes port: a number (with `endPort`, a range) or a name.
fn k8s_port(path: &Path<'_>, p: &NetworkPolicyPort) -> Result<Option<Port>, LowerError> {
    let num = |v: i64, field: &'static str| -> Result<u16, LowerError> {
        match u16::try_from(v) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(err(
                &path.field(field),
                None,
                format!("port {v} is not 1-65535"),
            )),
        }
    };
    let port = match &p.port {
        None => {
            if p.end_port.is_some() {
                return Err(err(
                    &path.field("endPort"),
                    None,
                    "endPort needs a numeric port",
                ));
            }
            return Ok(None);
        }
        Some(IntOrString::Int(n)) => num(*n, "port")?,
        // A numeric string is taken as the number, as Calico's conversion does.
        Some(IntOrString::String(s)) => match s.parse::<i64>() {
            Ok(n) => num(n, "port")?,
            Err(_) => {
                if s.is_empty() {
                    return Err(err(&path.field("port"), None, "empty port name"));
                }
                if p.end_port.is_some() {
                    return Err(err(
                        &path.field("endPort"),
                        None,
                        "endPort needs a numeric port, not a named one",
                    ));
                }
                return Ok(Some(Port::Named(s.clone())));
            }
        },
    };
    let last = match p.end_port {
        None => port,
        Some(e) => {
            let e = num(i64::from(e), "endPort")?;
            if e < port {
                return Err(err(
                    &path.field("endPort"),
                    None,
                    format!("endPort {e} is below port {port}"),
                ));
            }
            e
        }
    };
    Ok(Some(Port::Range { first: port, last }))
}

fn check_order(order: Option<f64>) -> Result<(), LowerError> {
    match order {
        Some(o) if !o.is_finite() => Err(err(
            &Path::Root("spec.order"),
            None,
            "order must be a finite number",
        )),
        _ => Ok(()),
    }
}

fn tier_name(t: &Option<String>) -> String {
    match t.as_deref().map(str::trim) {
        None | Some("") => apipol::DEFAULT_TIER.to_owned(),
        Some(t) => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::policy::{
        CalicoPolicySpec, GlobalPolicySpec, IpBlock, LabelSelectorRequirement,
        NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicySpec, ObjectMeta,
        PolicyType,
    };

    fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            namespace: ns.map(Into::into),
            labels: BTreeMap::new(),
        }
    }

    fn canon(s: &str) -> String {
        Selector::parse(s).unwrap().canonical()
    }

    fn lower(p: Policy) -> Result<LoweredPolicy, LowerError> {
        Lowerer::new().lower(&p)
    }

    /// Lowers and also returns the selector table.
    fn lower_with(p: Policy) -> (LoweredPolicy, Lowerer) {
        let mut l = Lowerer::new();
        let lp = l.lower(&p).unwrap();
        (lp, l)
    }

    fn text(l: &Lowerer, id: Option<SelId>) -> Option<String> {
        id.map(|i| l.selector(i).canonical())
    }

    fn scope_text(l: &Lowerer, s: &NamespaceScope) -> String {
        match s {
            NamespaceScope::Any => "any".into(),
            NamespaceScope::Nothing => "nothing".into(),
            NamespaceScope::Named(n) => format!("named {n}"),
            NamespaceScope::Matching(id) => format!("matching {}", l.selector(*id).canonical()),
        }
    }

    #[test]
    fn k8s_translation_follows_calico() {
        let np = NetworkPolicy {
            metadata: meta(Some("x"), "p"),
            spec: NetworkPolicySpec {
                pod_selector: LabelSelector {
                    match_labels: [("pod".to_string(), "a".to_string())].into(),
                    match_expressions: vec![],
                },
                ingress: vec![NetworkPolicyIngressRule {
                    from: vec![
                        NetworkPolicyPeer {
                            pod_selector: Some(LabelSelector::default()),
                            ..Default::default()
                        },
                        NetworkPolicyPeer {
                            namespace_selector: Some(LabelSelector {
                                match_labels: BTreeMap::new(),
                                match_expressions: vec![LabelSelectorRequirement {
                                    key: "ns".into(),
                                    operator: SelectorOperator::NotIn,
                                    values: vec!["x".into()],
                                }],
                            }),
                            ..Default::default()
                        },
                    ],
                    ports: vec![
                        NetworkPolicyPort {
                            protocol: Some(K8sProtocol::Udp),
                            port: Some(IntOrString::Int(53)),
                            end_port: None,
                        },
                        NetworkPolicyPort {
                            protocol: None,
                            port: Some(IntOrString::String("http".into())),
                            end_port: None,
                        },
                        NetworkPolicyPort {
                            protocol: None,
                            port: Some(IntOrString::Int(8000)),
                            end_port: Some(8080),
                        },
                    ],
                }],
                egress: vec![NetworkPolicyEgressRule::default()],
                policy_types: None,
            },
        };
        let (l, t) = lower_with(Policy::K8s(np));
        assert_eq!(l.name, "x/knp.default.p");
        assert_eq!(l.tier, "default");
        assert_eq!(l.order, Some(1000.0));
        let applies = l.applies_to.unwrap();
        assert_eq!(applies.namespace, NamespaceScope::Named("x".into()));
        assert_eq!(
            text(&t, applies.selector),
            Some(canon(
                "projectcalico.org/orchestrator == 'k8s' && pod == 'a'"
            ))
        );
        // Egress rules present and no policyTypes: both directions.
        assert_eq!(l.egress.as_ref().map(Vec::len), Some(1));
        let ing = l.ingress.unwrap();
        // Protocols in sorted order (TCP, UDP), peers within each.
        assert_eq!(ing.len(), 4);
        assert_eq!(ing[0].protocol, Some(6));
        assert_eq!(
            ing[0].dst.ports,
            vec![
                Port::Named("http".into()),
                Port::Range {
                    first: 8000,
                    last: 8080
                }
            ]
        );
        assert_eq!(ing[2].protocol, Some(17));
        assert_eq!(
            ing[2].dst.ports,
            vec![Port::Range {
                first: 53,
                last: 53
            }]
        );
        let p0 = ing[0].src.selector.clone().unwrap();
        assert_eq!(p0.namespace, NamespaceScope::Named("x".into()));
        assert_eq!(
            text(&t, p0.selector),
            Some(canon("projectcalico.org/orchestrator == 'k8s'"))
        );
        let p1 = ing[1].src.selector.clone().unwrap();
        assert_eq!(
            scope_text(&t, &p1.namespace),
            format!("matching {}", canon("ns not in {'x'}"))
        );
        // An egress rule with no peers and no ports: anything.
        let e = &l.egress.unwrap()[0];
        assert_eq!(e.protocol, None);
        assert_eq!(e.dst, Entity::default());
    }

    #[test]
    fn k8s_protocol_without_port_absorbs_ports() {
        let np = NetworkPolicy {
            metadata: meta(None, "p"),
            spec: NetworkPolicySpec {
                ingress: vec![NetworkPolicyIngressRule {
                    from: vec![NetworkPolicyPeer {
                        ip_block: Some(IpBlock {
                            cidr: "10.0.0.0/8".into(),
                            except: vec!["10.1.0.0/16".into()],
                        }),
                        ..Default::default()
                    }],
                    ports: vec![
                        NetworkPolicyPort {
                            protocol: Some(K8sProtocol::Sctp),
                            port: Some(IntOrString::Int(81)),
                            end_port: None,
                        },
                        NetworkPolicyPort {
                            protocol: Some(K8sProtocol::Sctp),
                            port: None,
                            end_port: None,
                        },
                    ],
                }],
                policy_types: Some(vec![PolicyType::Egress]),
                ..Default::default()
            },
        };
        let l = lower(Policy::K8s(np)).unwrap();
        assert_eq!(l.name, "default/knp.default.p");
        // policyTypes says Egress only: ingress rules are not enforced.
        assert!(l.ingress.is_none());
        assert_eq!(l.egress, Some(vec![]));
    }

    #[test]
    fn k8s_bad_ports_and_peers_are_refused() {
        let bad = |port: NetworkPolicyPort| {
            let np = NetworkPolicy {
                metadata: meta(Some("x"), "p"),
                spec: NetworkPolicySpec {
                    ingress: vec![NetworkPolicyIngressRule {
                        from: vec![],
                        ports: vec![port],
                    }],
                    ..Default::default()
                },
            };
            lower(Policy::K8s(np)).unwrap_err()
        };
        let e = bad(NetworkPolicyPort {
            protocol: None,
            port: Some(IntOrString::Int(80)),
            end_port: Some(70),
        });
        assert_eq!(e.path, "spec.ingress[0].ports[0].endPort");
        let e = bad(NetworkPolicyPort {
            protocol: None,
            port: Some(IntOrString::String("http".into())),
            end_port: Some(90),
        });
        assert!(e.message.contains("named"), "{e}");
        let e = bad(NetworkPolicyPort {
            protocol: None,
            port: Some(IntOrString::Int(70000)),
            end_port: None,
        });
        assert!(e.message.contains("1-65535"), "{e}");
        let np = NetworkPolicy {
            metadata: meta(Some("x"), "p"),
            spec: NetworkPolicySpec {
                egress: vec![NetworkPolicyEgressRule {
                    to: vec![NetworkPolicyPeer {
                        ip_block: Some(IpBlock {
                            cidr: "10.0.0.1".into(),
                            except: vec![],
                        }),
                        ..Default::default()
                    }],
                    ports: vec![],
                }],
                ..Default::default()
            },
        };
        let e = lower(Policy::K8s(np)).unwrap_err();
        assert_eq!(e.path, "spec.egress[0].to[0].ipBlock.cidr");
    }

    fn calico_rule(yaml_json: &str) -> Rule {
        serde_json::from_str(yaml_json).unwrap()
    }

    #[test]
    fn calico_rule_selectors_are_scoped_like_calico() {
        let rules = vec![
            calico_rule(r#"{"action":"Allow","source":{"selector":"app == 'db'"}}"#),
            calico_rule(r#"{"action":"Allow","source":{"notSelector":"app == 'db'"}}"#),
            calico_rule(r#"{"action":"Allow","source":{"nets":["10.0.0.0/8"]}}"#),
            calico_rule(r#"{"action":"Allow","source":{"namespaceSelector":"all()"}}"#),
            calico_rule(r#"{"action":"Allow","source":{"namespaceSelector":"global()"}}"#),
            calico_rule(
                r#"{"action":"Allow","source":{"serviceAccounts":{"names":["b","a","b"]}}}"#,
            ),
        ];
        let cp = CalicoNetworkPolicy {
            metadata: meta(Some("x"), "p"),
            spec: CalicoPolicySpec {
                ingress: rules.clone(),
                ..Default::default()
            },
        };
        let l = lower(Policy::Calico(cp)).unwrap();
        assert_eq!(l.name, "x/p");
        assert!(l.egress.is_none());
        let ing = l.ingress.unwrap();
        let s0 = ing[0].src.selector.clone().unwrap();
        assert_eq!(s0.namespace, NamespaceScope::Named("x".into()));
        // notSelector alone: the positive side becomes "this namespace", the
        // negative side is not scoped.
        let s1 = ing[1].src.selector.clone().unwrap();
        assert_eq!(s1.namespace, NamespaceScope::Named("x".into()));
        assert_eq!(s1.selector, None);
        assert_eq!(
            ing[1].src.not_selector.as_ref().unwrap().namespace,
            NamespaceScope::Any
        );
        assert_eq!(ing[2].src.selector, None);
        assert_eq!(
            ing[3].src.selector.as_ref().unwrap().namespace,
            NamespaceScope::Any
        );
        assert_eq!(
            ing[4].src.selector.as_ref().unwrap().namespace,
            NamespaceScope::Nothing
        );
        assert_eq!(
            ing[5].src.selector.as_ref().unwrap().service_account_names,
            vec!["a".to_string(), "b".to_string()]
        );

        // The same rules in a global policy: no namespace scoping.
        let gp = GlobalNetworkPolicy {
            metadata: meta(None, "g"),
            spec: GlobalPolicySpec {
                egress: rules,
                ..Default::default()
            },
        };
        let l = lower(Policy::Global(gp)).unwrap();
        assert_eq!(l.name, "g");
        assert!(l.ingress.is_none(), "only egress rules: egress only");
        let eg = l.egress.unwrap();
        assert_eq!(
            eg[0].src.selector.as_ref().unwrap().namespace,
            NamespaceScope::Any
        );
        assert_eq!(eg[1].src.selector, None);
        assert_eq!(eg[2].src.selector, None);
    }

    #[test]
    fn calico_validation() {
        let one = |r: &str| {
            let cp = CalicoNetworkPolicy {
                metadata: meta(Some("x"), "p"),
                spec: CalicoPolicySpec {
                    ingress: vec![calico_rule(r)],
                    ..Default::default()
                },
            };
            lower(Policy::Calico(cp))
        };
        let e = one(r#"{"action":"Allow","destination":{"ports":[80]}}"#).unwrap_err();
        assert_eq!(e.path, "spec.ingress[0].protocol");
        let e = one(r#"{"action":"Allow","protocol":"ICMP","destination":{"ports":[80]}}"#)
            .unwrap_err();
        assert_eq!(e.path, "spec.ingress[0].protocol");
        let e = one(r#"{"action":"Allow","protocol":"TCP","icmp":{"type":8}}"#).unwrap_err();
        assert_eq!(e.path, "spec.ingress[0].icmp");
        let e = one(r#"{"action":"Allow","protocol":"ICMP","icmp":{"code":1}}"#).unwrap_err();
        assert_eq!(e.path, "spec.ingress[0].icmp.code");
        let e = one(r#"{"action":"Allow","source":{"selector":"app === 'x'"}}"#).unwrap_err();
        assert_eq!(e.path, "spec.ingress[0].source.selector");
        assert_eq!(e.value.as_deref(), Some("app === 'x'"));
        let e = one(r#"{"action":"Allow","source":{"nets":["10.0.0.0/33"]}}"#).unwrap_err();
        assert_eq!(e.path, "spec.ingress[0].source.nets[0]");
        let e = one(r#"{"action":"Allow","ipVersion":5}"#).unwrap_err();
        assert_eq!(e.path, "spec.ingress[0].ipVersion");
        assert!(one(r#"{"action":"Allow","protocol":"ICMP","icmp":{"type":8,"code":0}}"#).is_ok());
        assert!(
            one(r#"{"action":"Deny","protocol":6,"source":{"ports":["1:1024","ssh"]}}"#).is_ok()
        );
    }

    #[test]
    fn global_selection_and_host_only_policies() {
        let gp = GlobalNetworkPolicy {
            metadata: meta(None, "g"),
            spec: GlobalPolicySpec {
                selector: Some("all()".into()),
                namespace_selector: Some("team == 'a'".into()),
                service_account_selector: Some("role == 'x'".into()),
                ..Default::default()
            },
        };
        let (l, t) = lower_with(Policy::Global(gp.clone()));
        let a = l.applies_to.unwrap();
        assert_eq!(
            scope_text(&t, &a.namespace),
            format!("matching {}", canon("team == 'a'"))
        );
        assert!(!a.needs_service_account);
        let mut g2 = gp.clone();
        g2.spec.namespace_selector = None;
        let a = lower(Policy::Global(g2)).unwrap().applies_to.unwrap();
        assert!(a.needs_service_account);
        let mut g3 = gp;
        g3.spec.pre_dnat = true;
        assert!(lower(Policy::Global(g3)).unwrap().applies_to.is_none());
    }

    #[test]
    fn nets_parse() {
        assert_eq!(
            Net::parse("10.1.2.3/8", false),
            Ok(Net::V4 {
                addr: 0x0a00_0000,
                mask: 0xff00_0000
            })
        );
        assert_eq!(
            Net::parse("0.0.0.0/0", false),
            Ok(Net::V4 { addr: 0, mask: 0 })
        );
        assert_eq!(Net::parse("fd00::/64", false), Ok(Net::V6));
        assert!(Net::parse("10.0.0.1", false).is_err());
        assert_eq!(
            Net::parse("10.0.0.1", true),
            Ok(Net::V4 {
                addr: 0x0a00_0001,
                mask: u32::MAX
            })
        );
        assert!(Net::V4 { addr: 0, mask: 0 }.contains(0x0102_0304));
    }
}

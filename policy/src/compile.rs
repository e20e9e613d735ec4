//! The desired state compiled into per-endpoint programs over IP sets.
//!
//! Selectors are resolved here, once: every distinct endpoint selector (a
//! policy's, or a rule's peer) becomes a sorted set of member addresses, and
//! every named port a rule mentions becomes a sorted set of (address,
//! protocol, port) of the pods that carry that port name, as Felix builds
//! its named-port IP sets. Rules then refer to sets by number, so that
//! evaluating a packet is comparisons and binary searches.
//!
//! Matching is where compile time goes, so it is done as little as possible:
//! pods with the same namespace, labels and service account are matched as
//! one group; a namespaced selector only looks at its namespace's groups; a
//! namespace selector is tested once per namespace; and each distinct
//! selector is resolved once however many rules use it.
//!
//! Programs are built for local endpoints only. Endpoints that share the
//! same sequence of policies share one program.

use crate::model::{
    EndpointSelector, FxMap, IcmpMatch, LowerError, LoweredPolicy, LoweredRule, Lowerer,
    NamespaceScope, Net, SelId,
};
use crate::selector::{Labels, Selector};
use crate::{Direction, Reason};
use api::policy::{
    Action, EndpointInfo, NamespaceInfo, Policy, Port, Tier, DEFAULT_TIER, DEFAULT_TIER_ORDER,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;

/// Everything policy depends on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub namespaces: Vec<NamespaceInfo>,
    /// Local and remote pods; [`Compiled::endpoint_index`] numbers them in
    /// this order.
    #[serde(default)]
    pub endpoints: Vec<EndpointInfo>,
    /// Policies and the tiers they go in (`default` always exists).
    #[serde(default)]
    pub policies: Vec<Policy>,
}

/// A policy, tier or endpoint that cannot be compiled, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {message}")]
pub struct PolicyError {
    /// e.g. `NetworkPolicy (projectcalico.org/v3) x/allow-db`.
    pub object: String,
    pub message: String,
}

impl PolicyError {
    fn policy(p: &Policy, e: &LowerError) -> PolicyError {
        PolicyError {
            object: format!("{} {}", p.kind(), p.display_name()),
            message: e.to_string(),
        }
    }
}

/// Sizes of a compiled state, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
pub struct CompileStats {
    /// Policy directions (a policy governing both counts twice).
    pub policies: usize,
    pub rules: usize,
    pub ip_sets: usize,
    pub port_sets: usize,
    /// Distinct programs (endpoints with the same policies share one).
    pub programs: usize,
    pub local_endpoints: usize,
}

/// One direction of one policy.
#[derive(Clone, Debug)]
pub(crate) struct CompiledPolicy {
    pub name: String,
    pub tier: String,
    pub dir: Direction,
    pub rules: Range<usize>,
}

/// One side of a rule; every condition present must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct CompiledEntity {
    /// (network, mask); any of them.
    pub nets: Vec<(u32, u32)>,
    pub not_nets: Vec<(u32, u32)>,
    pub ip_set: Option<u32>,
    pub not_ip_set: Option<u32>,
    /// Inclusive ranges and named-port sets; any of them. A rule that names
    /// only ports no pod has keeps its (empty) set and so matches nothing.
    pub ports: Vec<(u16, u16)>,
    pub named_ports: Vec<u32>,
    pub not_ports: Vec<(u16, u16)>,
    pub not_named_ports: Vec<u32>,
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    pub action: Action,
    /// The rule cannot match IPv4 (ipVersion 6, ICMPv6, IPv6-only nets):
    /// Felix leaves it out of the IPv4 chains.
    pub never: bool,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub src: CompiledEntity,
    pub dst: CompiledEntity,
}

/// The policies one endpoint runs in one direction, tier by tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Program {
    pub tiers: Vec<TierProgram>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TierProgram {
    /// The tier's defaultAction is Pass: what no rule decided goes on to the
    /// next tier instead of being denied.
    pub end_pass: bool,
    /// Indices into `Compiled::policies`, in evaluation order.
    pub policies: Vec<u32>,
}

/// The compiled form of a [`World`]: immutable, shared by every worker.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub(crate) policies: Vec<CompiledPolicy>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) ip_sets: Vec<Box<[u32]>>,
    pub(crate) port_sets: Vec<Box<[u64]>>,
    pub(crate) programs: Vec<Program>,
    /// Per endpoint: program index for ingress and for egress. Program 0 is
    /// empty (no policy applies), which is also what remote endpoints get.
    pub(crate) endpoint_programs: Vec<[u32; 2]>,
    endpoint_names: Vec<String>,
    index: FxMap<String, usize>,
    local_endpoints: usize,
}

/// What names one compiled rule: its tier, its policy (as flow logs name
/// it), its direction, its index within that direction, and its action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleName<'a> {
    pub tier: &'a str,
    pub policy: &'a str,
    pub dir: Direction,
    pub rule: u32,
    pub action: Action,
}

/// The key of a named-port set entry: address, protocol, port.
pub(crate) fn port_key(ip: u32, proto: u8, port: u16) -> u64 {
    (u64::from(ip) << 24) | (u64::from(proto) << 16) | u64::from(port)
}

pub(crate) fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

impl Compiled {
    /// Compiles `world`. Fails on the first policy, tier or endpoint that
    /// cannot be used, naming it.
    pub fn compile(world: &World) -> Result<Compiled, PolicyError> {
        let mut lowerer = Lowerer::new();
        // (index in world.policies, lowered)
        let mut lowered = Vec::with_capacity(world.policies.len());
        let mut tier_objects: Vec<&Tier> = Vec::new();
        for (i, p) in world.policies.iter().enumerate() {
            match p {
                Policy::Tier(t) => tier_objects.push(t),
                _ => lowered.push((i, lowerer.lower(p).map_err(|e| PolicyError::policy(p, &e))?)),
            }
        }
        let tiers = TierTable::new(&tier_objects)?;
        let selectors = lowerer.into_selectors();
        let mut order: Vec<(usize, &LoweredPolicy)> = Vec::with_capacity(lowered.len());
        {
            let mut seen: FxMap<&str, usize> = FxMap::default();
            for (i, l) in lowered.iter().map(|(i, l)| (*i, l)) {
                if let Some(prev) = seen.insert(l.name.as_str(), i) {
                    return Err(PolicyError {
                        object: format!(
                            "{} {}",
                            world.policies[i].kind(),
                            world.policies[i].display_name()
                        ),
                        message: format!(
                            "same name as {} {} (both are '{}' to Calico)",
                            world.policies[prev].kind(),
                            world.policies[prev].display_name(),
                            l.name
                        ),
                    });
                }
                let rank = tiers.rank(&l.tier).ok_or_else(|| PolicyError {
                    object: format!(
                        "{} {}",
                        world.policies[i].kind(),
                        world.policies[i].display_name()
                    ),
                    message: format!(
                        "tier '{}' does not exist (declare it with a projectcalico.org/v3 Tier)",
                        l.tier
                    ),
                })?;
                order.push((rank, l));
            }
        }
        // Tier order, then policy order (none last), then name: Calico's.
        order.sort_by(|(ra, a), (rb, b)| {
            ra.cmp(rb)
                .then_with(|| {
                    let oa = a.order.unwrap_or(f64::INFINITY);
                    let ob = b.order.unwrap_or(f64::INFINITY);
                    oa.total_cmp(&ob)
                })
                .then_with(|| a.name.cmp(&b.name))
        });

        let mut names = Vec::with_capacity(world.endpoints.len());
        let mut index = FxMap::default();
        for (i, ep) in world.endpoints.iter().enumerate() {
            if index.insert(ep.name.clone(), i).is_some() {
                return Err(PolicyError {
                    object: format!("endpoint {}", ep.name),
                    message: "listed twice".into(),
                });
            }
            names.push(ep.name.clone());
        }

        let mut cx = Resolver::new(world, &selectors);
        let mut out = Compiled {
            policies: Vec::new(),
            rules: Vec::new(),
            ip_sets: Vec::new(),
            port_sets: Vec::new(),
            programs: vec![Program::default()],
            endpoint_programs: vec![[0, 0]; world.endpoints.len()],
            endpoint_names: names,
            index,
            local_endpoints: world.endpoints.iter().filter(|e| e.local).count(),
        };
        let mut sets = SetBuilder::default();
        // Per local endpoint and direction: the policies that apply, in order.
        let mut lists: [Vec<Vec<u32>>; 2] = [
            vec![Vec::new(); world.endpoints.len()],
            vec![Vec::new(); world.endpoints.len()],
        ];
        for (_, l) in &order {
            let members: Vec<u32> = match &l.applies_to {
                Some(sel) => cx
                    .members(sel)
                    .iter()
                    .copied()
                    .filter(|&e| world.endpoints[e as usize].local)
                    .collect(),
                None => Vec::new(),
            };
            // Like Felix, render only what applies here: the rules of a
            // policy no local endpoint runs would never be evaluated.
            if members.is_empty() {
                continue;
            }
            for (dir, rules) in [
                (Direction::Ingress, &l.ingress),
                (Direction::Egress, &l.egress),
            ] {
                let Some(rules) = rules else { continue };
                let start = out.rules.len();
                for r in rules {
                    out.rules.push(sets.rule(r, &mut cx));
                }
                let id = out.policies.len() as u32;
                out.policies.push(CompiledPolicy {
                    name: l.name.clone(),
                    tier: l.tier.clone(),
                    dir,
                    rules: start..out.rules.len(),
                });
                for &e in &members {
                    lists[dir_index(dir)][e as usize].push(id);
                }
            }
        }
        out.ip_sets = sets.ip_sets;
        out.port_sets = sets.port_sets;

        let mut dedup: FxMap<Vec<u32>, u32> = FxMap::default();
        dedup.insert(Vec::new(), 0);
        for (d, per_ep) in lists.into_iter().enumerate() {
            for (e, list) in per_ep.into_iter().enumerate() {
                if list.is_empty() {
                    continue;
                }
                let next = out.programs.len() as u32;
                let prog = match dedup.get(&list) {
                    Some(&p) => p,
                    None => {
                        out.programs
                            .push(build_program(&list, &out.policies, &tiers));
                        dedup.insert(list, next);
                        next
                    }
                };
                out.endpoint_programs[e][d] = prog;
            }
        }
        Ok(out)
    }

    /// No endpoints and no policy: everything is allowed.
    pub fn empty() -> Compiled {
        Compiled {
            policies: Vec::new(),
            rules: Vec::new(),
            ip_sets: Vec::new(),
            port_sets: Vec::new(),
            programs: vec![Program::default()],
            endpoint_programs: Vec::new(),
            endpoint_names: Vec::new(),
            index: FxMap::default(),
            local_endpoints: 0,
        }
    }

    /// The position of endpoint `name` (`ns/pod`) in `World::endpoints`.
    pub fn endpoint_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The endpoint names, in `World::endpoints` order.
    pub fn endpoint_names(&self) -> &[String] {
        &self.endpoint_names
    }

    /// Whether any policy of direction `dir` applies to local endpoint `ep`.
    pub fn has_policy(&self, ep: usize, dir: Direction) -> bool {
        self.program(ep, dir).is_some_and(|p| !p.tiers.is_empty())
    }

    pub(crate) fn program(&self, ep: usize, dir: Direction) -> Option<&Program> {
        let p = self.endpoint_programs.get(ep)?[dir_index(dir)];
        self.programs.get(p as usize)
    }

    /// The policies that apply to `ep` in direction `dir`, in evaluation
    /// order, as `tier: name`.
    pub fn applied_policies(&self, ep: usize, dir: Direction) -> Vec<String> {
        let Some(p) = self.program(ep, dir) else {
            return Vec::new();
        };
        p.tiers
            .iter()
            .flat_map(|t| t.policies.iter())
            .filter_map(|&i| self.policies.get(i as usize))
            .map(|c| format!("{}: {}", c.tier, c.name))
            .collect()
    }

    /// What decided a verdict, in words: `x/knp.default.allow-y ingress rule
    /// 0`, `default deny`, ...
    pub fn describe(&self, r: Reason) -> String {
        match r {
            Reason::Unselected => "no policy applies".into(),
            Reason::DefaultDeny => "default deny: a policy applies and no rule allowed it".into(),
            Reason::PassedToProfile => "every tier passed: the namespace profile allows".into(),
            Reason::Rule { policy, rule } => match self.policies.get(policy as usize) {
                Some(p) => {
                    let dir = match p.dir {
                        Direction::Ingress => "ingress",
                        Direction::Egress => "egress",
                    };
                    let tier = if p.tier == DEFAULT_TIER {
                        String::new()
                    } else {
                        format!(" (tier {})", p.tier)
                    };
                    format!("{} {dir} rule {rule}{tier}", p.name)
                }
                None => format!("unknown policy #{policy} rule {rule}"),
            },
        }
    }

    /// Rules in the compiled policy, all policies together: what
    /// [`Compiled::rule_index`] counts up to.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The index among all compiled rules of the rule a reason names (for
    /// per-rule counters); None for verdicts no rule gave.
    #[inline]
    pub fn rule_index(&self, r: Reason) -> Option<usize> {
        match r {
            Reason::Rule { policy, rule } => {
                let p = self.policies.get(policy as usize)?;
                let i = p.rules.start.checked_add(rule as usize)?;
                (i < p.rules.end).then_some(i)
            }
            _ => None,
        }
    }

    /// Every compiled rule with its index (as [`Compiled::rule_index`]
    /// gives it) and what names it.
    pub fn rule_names(&self) -> impl Iterator<Item = (usize, RuleName<'_>)> {
        self.policies.iter().flat_map(move |p| {
            p.rules.clone().filter_map(move |i| {
                Some((
                    i,
                    RuleName {
                        tier: &p.tier,
                        policy: &p.name,
                        dir: p.dir,
                        rule: (i - p.rules.start) as u32,
                        action: self.rules.get(i)?.action,
                    },
                ))
            })
        })
    }

    /// The action of the rule a reason names.
    pub fn rule_action(&self, r: Reason) -> Option<Action> {
        match r {
            Reason::Rule { policy, rule } => {
                let p = self.policies.get(policy as usize)?;
                let i = p.rules.start.checked_add(rule as usize)?;
                (i < p.rules.end).then(|| self.rules[i].action)
            }
            _ => None,
        }
    }

    pub fn stats(&self) -> CompileStats {
        CompileStats {
            policies: self.policies.len(),
            rules: self.rules.len(),
            ip_sets: self.ip_sets.len(),
            port_sets: self.port_sets.len(),
            programs: self.programs.len(),
            local_endpoints: self.local_endpoints,
        }
    }
}

fn build_program(list: &[u32], policies: &[CompiledPolicy], tiers: &TierTable) -> Program {
    let mut prog = Program::default();
    let mut current: Option<&str> = None;
    for &p in list {
        let tier = policies[p as usize].tier.as_str();
        if current != Some(tier) {
            current = Some(tier);
            prog.tiers.push(TierProgram {
                end_pass: tiers.end_pass(tier),
                policies: Vec::new(),
            });
        }
        if let Some(t) = prog.tiers.last_mut() {
            t.policies.push(p);
        }
    }
    prog
}

/// Tiers by evaluation order.
struct TierTable {
    /// name -> (rank, defaultAction is Pass)
    by_name: FxMap<String, (usize, bool)>,
}

/// Checks one Tier alone (the loader does, before it has the others).
pub(crate) fn check_tier(t: &Tier) -> Result<(), PolicyError> {
    TierTable::new(&[t]).map(|_| ())
}

impl TierTable {
    fn new(tiers: &[&Tier]) -> Result<TierTable, PolicyError> {
        let mut list: Vec<(String, Option<f64>, bool)> = Vec::new();
        for t in tiers {
            let name = t.metadata.name.trim().to_owned();
            let obj = || format!("Tier {name}");
            if name.is_empty() {
                return Err(PolicyError {
                    object: "Tier".into(),
                    message: "a Tier needs a name".into(),
                });
            }
            if list.iter().any(|(n, _, _)| *n == name) {
                return Err(PolicyError {
                    object: obj(),
                    message: "declared twice".into(),
                });
            }
            if t.spec.order.is_some_and(|o| !o.is_finite()) {
                return Err(PolicyError {
                    object: obj(),
                    message: "spec.order must be a finite number".into(),
                });
            }
            let pass = match t.spec.default_action {
                None | Some(Action::Deny) => false,
                Some(Action::Pass) => true,
                Some(a) => {
                    return Err(PolicyError {
                        object: obj(),
                        message: format!("spec.defaultAction is Deny or Pass, not {}", a.as_str()),
                    })
                }
            };
            let order = if name == DEFAULT_TIER {
                Some(t.spec.order.unwrap_or(DEFAULT_TIER_ORDER))
            } else {
                t.spec.order
            };
            list.push((name, order, pass));
        }
        if !list.iter().any(|(n, _, _)| n == DEFAULT_TIER) {
            list.push((DEFAULT_TIER.to_owned(), Some(DEFAULT_TIER_ORDER), false));
        }
        list.sort_by(|a, b| {
            let oa = a.1.unwrap_or(f64::INFINITY);
            let ob = b.1.unwrap_or(f64::INFINITY);
            oa.total_cmp(&ob).then_with(|| a.0.cmp(&b.0))
        });
        Ok(TierTable {
            by_name: list
                .into_iter()
                .enumerate()
                .map(|(i, (n, _, pass))| (n, (i, pass)))
                .collect(),
        })
    }

    fn rank(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).map(|t| t.0)
    }

    fn end_pass(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|t| t.1)
    }
}

// ---------------------------------------------------------------------------
// Resolving selectors to endpoints
// ---------------------------------------------------------------------------

const NAME_LABEL: &str = "projectcalico.org/name";

/// A namespace's labels as a namespaceSelector sees them: its own plus
/// `projectcalico.org/name`.
struct NsView<'a> {
    name: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl Labels for NsView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == NAME_LABEL {
            return Some(self.name);
        }
        self.labels?.get(key).map(String::as_str)
    }
}

/// A service account's labels as a serviceAccounts selector sees them.
/// Service accounts' own labels are not part of the desired state, so
/// there is only the one Calico adds, `projectcalico.org/name`.
struct SaView<'a> {
    name: Option<&'a str>,
}

impl Labels for SaView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == NAME_LABEL {
            return self.name;
        }
        None
    }
}

/// An endpoint's labels as Calico shows them to selectors: the implicit
/// namespace, orchestrator and service-account labels first, then the
/// pod's own, then those inherited from its namespace (`pcns.`) and
/// service account (`pcsa.`) profiles.
struct EpView<'a> {
    labels: &'a [(&'a str, &'a str)],
    ns: NsView<'a>,
    sa: SaView<'a>,
}

/// A label in a pod's few labels. A flat scan comparing lengths first does
/// better than a map here: this runs for every selector against every
/// distinct label set.
fn lookup<'a>(labels: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k.len() == key.len() && *k == key)
        .map(|(_, v)| *v)
}

impl Labels for EpView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "projectcalico.org/namespace" => Some(self.ns.name),
            "projectcalico.org/orchestrator" => Some("k8s"),
            "projectcalico.org/serviceaccount" if self.sa.name.is_some() => self.sa.name,
            _ => {
                if let Some(v) = lookup(self.labels, key) {
                    return Some(v);
                }
                if let Some(k) = key.strip_prefix("pcns.") {
                    return self.ns.get(k);
                }
                if let Some(k) = key.strip_prefix("pcsa.") {
                    return self.sa.get(k);
                }
                None
            }
        }
    }
}

/// Endpoints that look the same to every selector.
struct Group<'w> {
    ns: usize,
    labels: Box<[(&'w str, &'w str)]>,
    sa: Option<&'w str>,
    endpoints: Vec<u32>,
}

struct Resolver<'w> {
    world: &'w World,
    selectors: &'w [Selector],
    ns_names: Vec<&'w str>,
    ns_labels: Vec<Option<&'w BTreeMap<String, String>>>,
    ns_index: FxMap<&'w str, usize>,
    groups: Vec<Group<'w>>,
    ns_groups: Vec<Vec<u32>>,
    /// Per namespace selector, whether each namespace matches.
    ns_matches: FxMap<SelId, Vec<bool>>,
    members: FxMap<EndpointSelector, Box<[u32]>>,
}

impl<'w> Resolver<'w> {
    fn new(world: &'w World, selectors: &'w [Selector]) -> Resolver<'w> {
        let mut r = Resolver {
            world,
            selectors,
            ns_names: Vec::new(),
            ns_labels: Vec::new(),
            ns_index: FxMap::default(),
            groups: Vec::new(),
            ns_groups: Vec::new(),
            ns_matches: FxMap::default(),
            members: FxMap::default(),
        };
        for ns in &world.namespaces {
            let i = r.ns(&ns.name);
            r.ns_labels[i] = Some(&ns.labels);
        }
        // (namespace, labels, service account) -> group
        type GroupKey<'a> = (usize, &'a BTreeMap<String, String>, Option<&'a str>);
        let mut by_key: FxMap<GroupKey<'_>, usize> = FxMap::default();
        for (e, ep) in world.endpoints.iter().enumerate() {
            let ns = r.ns(&ep.namespace);
            let sa = ep.service_account.as_deref();
            let g = *by_key.entry((ns, &ep.labels, sa)).or_insert_with(|| {
                r.groups.push(Group {
                    ns,
                    labels: ep
                        .labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    sa,
                    endpoints: Vec::new(),
                });
                r.ns_groups[ns].push((r.groups.len() - 1) as u32);
                r.groups.len() - 1
            });
            r.groups[g].endpoints.push(e as u32);
        }
        r
    }

    fn ns(&mut self, name: &'w str) -> usize {
        if let Some(&i) = self.ns_index.get(name) {
            return i;
        }
        self.ns_names.push(name);
        self.ns_labels.push(None);
        self.ns_groups.push(Vec::new());
        self.ns_index.insert(name, self.ns_names.len() - 1);
        self.ns_names.len() - 1
    }

    fn ns_view(&self, ns: usize) -> NsView<'w> {
        NsView {
            name: self.ns_names[ns],
            labels: self.ns_labels[ns],
        }
    }

    fn group_matches(&self, es: &EndpointSelector, g: &Group<'w>) -> bool {
        if !es.service_account_names.is_empty()
            && !g.sa.is_some_and(|sa| {
                es.service_account_names
                    .binary_search_by(|n| n.as_str().cmp(sa))
                    .is_ok()
            })
        {
            return false;
        }
        if es.needs_service_account && g.sa.is_none() {
            return false;
        }
        let sa = SaView { name: g.sa };
        if let Some(id) = es.service_account_selector {
            if !self.selectors[id.0 as usize].matches(&sa) {
                return false;
            }
        }
        match es.selector {
            None => true,
            Some(id) => self.selectors[id.0 as usize].matches(&EpView {
                labels: &g.labels,
                ns: self.ns_view(g.ns),
                sa,
            }),
        }
    }

    /// The endpoints `es` selects, as sorted indices into `World::endpoints`.
    fn members(&mut self, es: &EndpointSelector) -> &[u32] {
        if !self.members.contains_key(es) {
            if let NamespaceScope::Matching(id) = es.namespace {
                self.ns_matches.entry(id).or_insert_with(|| {
                    let s = &self.selectors[id.0 as usize];
                    (0..self.ns_names.len())
                        .map(|i| {
                            s.matches(&NsView {
                                name: self.ns_names[i],
                                labels: self.ns_labels[i],
                            })
                        })
                        .collect()
                });
            }
            let eps = self.resolve(es);
            self.members.insert(es.clone(), eps.into_boxed_slice());
        }
        self.members.get(es).map(|b| &b[..]).unwrap_or(&[])
    }

    fn resolve(&self, es: &EndpointSelector) -> Vec<u32> {
        let mut eps: Vec<u32> = Vec::new();
        let mut take = |g: &u32| {
            let g = &self.groups[*g as usize];
            if self.group_matches(es, g) {
                eps.extend_from_slice(&g.endpoints);
            }
        };
        match &es.namespace {
            NamespaceScope::Any => {
                for g in 0..self.groups.len() as u32 {
                    take(&g);
                }
            }
            NamespaceScope::Nothing => {}
            NamespaceScope::Named(n) => {
                if let Some(&i) = self.ns_index.get(n.as_str()) {
                    self.ns_groups[i].iter().for_each(take);
                }
            }
            NamespaceScope::Matching(id) => {
                if let Some(m) = self.ns_matches.get(id) {
                    for (i, _) in m.iter().enumerate().filter(|(_, &hit)| hit) {
                        self.ns_groups[i].iter().for_each(&mut take);
                    }
                }
            }
        }
        eps.sort_unstable();
        eps
    }
}

// ---------------------------------------------------------------------------
// Rules and their sets
// ---------------------------------------------------------------------------

#[derive(Default)]
struct SetBuilder {
    ip_sets: Vec<Box<[u32]>>,
    port_sets: Vec<Box<[u64]>>,
    ip_ids: FxMap<EndpointSelector, u32>,
    port_ids: FxMap<(Option<EndpointSelector>, String, u8), u32>,
}

/// IPv4 nets of a list, and whether the list was non-empty but held only
/// IPv6 ones (then Felix renders no IPv4 rule at all).
fn v4_nets(nets: &[Net]) -> (Vec<(u32, u32)>, bool) {
    let v4: Vec<(u32, u32)> = nets
        .iter()
        .filter_map(|n| match *n {
            Net::V4 { addr, mask } => Some((addr, mask)),
            Net::V6 => None,
        })
        .collect();
    let filtered_all = !nets.is_empty() && v4.is_empty();
    (v4, filtered_all)
}

impl SetBuilder {
    fn ip_set(&mut self, es: &EndpointSelector, cx: &mut Resolver<'_>) -> u32 {
        if let Some(&id) = self.ip_ids.get(es) {
            return id;
        }
        let world = cx.world;
        let mut ips: Vec<u32> = cx
            .members(es)
            .iter()
            .flat_map(|&e| {
                world.endpoints[e as usize]
                    .ips
                    .iter()
                    .map(|&a| u32::from(a))
            })
            .collect();
        ips.sort_unstable();
        ips.dedup();
        let id = self.ip_sets.len() as u32;
        self.ip_sets.push(ips.into_boxed_slice());
        self.ip_ids.insert(es.clone(), id);
        id
    }

    /// Felix's named-port set: (address, protocol, port) of every pod the
    /// selector picks (every pod when there is none) that has a container
    /// port called `name` for `proto`.
    fn port_set(
        &mut self,
        es: Option<&EndpointSelector>,
        name: &str,
        proto: u8,
        cx: &mut Resolver<'_>,
    ) -> u32 {
        let key = (es.cloned(), name.to_owned(), proto);
        if let Some(&id) = self.port_ids.get(&key) {
            return id;
        }
        let any = EndpointSelector::any();
        let world = cx.world;
        let mut entries: Vec<u64> = Vec::new();
        for &e in cx.members(es.unwrap_or(&any)) {
            let ep = &world.endpoints[e as usize];
            for np in &ep.named_ports {
                if np.name == name && np.protocol.number() == proto {
                    entries.extend(
                        ep.ips
                            .iter()
                            .map(|&a| port_key(u32::from(a), proto, np.port)),
                    );
                }
            }
        }
        entries.sort_unstable();
        entries.dedup();
        let id = self.port_sets.len() as u32;
        self.port_sets.push(entries.into_boxed_slice());
        self.port_ids.insert(key, id);
        id
    }

    fn ports(
        &mut self,
        list: &[Port],
        sel: Option<&EndpointSelector>,
        proto: Option<u8>,
        cx: &mut Resolver<'_>,
    ) -> (Vec<(u16, u16)>, Vec<u32>) {
        let mut ranges = Vec::new();
        let mut named = Vec::new();
        for p in list {
            match p {
                Port::Range { first, last } => ranges.push((*first, *last)),
                // Lowering guarantees a protocol wherever there are ports.
                Port::Named(n) => named.push(self.port_set(sel, n, proto.unwrap_or(0), cx)),
            }
        }
        (ranges, named)
    }

    fn entity(
        &mut self,
        e: &crate::model::Entity,
        proto: Option<u8>,
        cx: &mut Resolver<'_>,
    ) -> (CompiledEntity, bool) {
        let (nets, none1) = v4_nets(&e.nets);
        let (not_nets, none2) = v4_nets(&e.not_nets);
        let (ports, named_ports) = self.ports(&e.ports, e.selector.as_ref(), proto, cx);
        let (not_ports, not_named_ports) = self.ports(&e.not_ports, e.selector.as_ref(), proto, cx);
        let ce = CompiledEntity {
            nets,
            not_nets,
            ip_set: e.selector.as_ref().map(|s| self.ip_set(s, cx)),
            not_ip_set: e.not_selector.as_ref().map(|s| self.ip_set(s, cx)),
            ports,
            named_ports,
            not_ports,
            not_named_ports,
        };
        (ce, none1 || none2)
    }

    fn rule(&mut self, r: &LoweredRule, cx: &mut Resolver<'_>) -> CompiledRule {
        let (src, never_src) = self.entity(&r.src, r.protocol, cx);
        let (dst, never_dst) = self.entity(&r.dst, r.protocol, cx);
        CompiledRule {
            action: r.action,
            never: never_src || never_dst || r.ip_version == Some(6) || r.protocol == Some(58),
            protocol: r.protocol,
            not_protocol: r.not_protocol,
            icmp: r.icmp,
            not_icmp: r.not_icmp,
            src,
            dst,
        }
    }
}

//! Policy as the control thread keeps it: the namespaces and policy objects
//! applied, compiled together with the endpoints into the programs that
//! snapshots carry; and the flow log that Log rules feed.

use crate::firewall::LogRecord;
use crate::l3::EndpointPolicy;
use crate::switch::{invalid, Result, Switch, SwitchError};
use api::policy::{EndpointInfo, NamespaceInfo, Policy};
use api::{EndpointSpec, FlowLogEntry};
use policy::compile::{Compiled, World};
use policy::{Direction, Reason};
use std::collections::VecDeque;
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Flow-log records the switch keeps for `vsctl flows log`.
const FLOW_LOG_KEEP: usize = 4096;
/// Compiled versions kept to name the rules of records still queued.
const HISTORY: usize = 4;

pub(crate) struct PolicyState {
    pub namespaces: Vec<NamespaceInfo>,
    pub policies: Vec<Policy>,
    pub compiled: Arc<Compiled>,
    pub generation: u64,
    history: VecDeque<(u64, Arc<Compiled>)>,
    log: VecDeque<FlowLogEntry>,
    next_seq: u64,
    log_file: Option<std::fs::File>,
}

impl PolicyState {
    pub fn new(log_file: Option<std::fs::File>) -> PolicyState {
        PolicyState {
            namespaces: Vec::new(),
            policies: Vec::new(),
            compiled: Arc::new(Compiled::empty()),
            generation: 0,
            history: VecDeque::new(),
            log: VecDeque::new(),
            next_seq: 1,
            log_file,
        }
    }
}

/// What the policy compiler needs to know of a local pod. It is known by
/// its port, which is unique; pod names need not be (a pod with two
/// interfaces has two endpoints).
fn endpoint_info(ep: &EndpointSpec) -> EndpointInfo {
    EndpointInfo {
        name: ep.port.clone(),
        namespace: ep.namespace.clone().unwrap_or_else(|| "default".into()),
        labels: ep.labels.clone(),
        service_account: ep.service_account.clone(),
        ips: ep.ips.clone(),
        named_ports: ep.named_ports.clone(),
        local: true,
    }
}

/// How an endpoint is named to the compiler and in flow logs: its pod, else
/// its port.
pub(crate) fn endpoint_name(ep: &EndpointSpec) -> String {
    ep.pod.clone().unwrap_or_else(|| ep.port.clone())
}

impl Switch {
    /// Compiles `namespaces` and `policies` over the endpoints as they are;
    /// the error names the object at fault.
    pub(crate) fn compile_policy(
        &self,
        namespaces: &[NamespaceInfo],
        policies: &[Policy],
    ) -> Result<Compiled> {
        let world = World {
            namespaces: namespaces.to_vec(),
            endpoints: self.endpoints.values().map(endpoint_info).collect(),
            policies: policies.to_vec(),
        };
        Compiled::compile(&world).map_err(|e| SwitchError::Invalid(format!("policy: {e}")))
    }

    /// Recompiles for the endpoints as they are now (the policy objects
    /// compiled when applied, so this fails only on a broken invariant).
    pub(crate) fn recompile(&mut self) {
        let (ns, pols) = (
            std::mem::take(&mut self.policy.namespaces),
            std::mem::take(&mut self.policy.policies),
        );
        let r = self.compile_policy(&ns, &pols);
        self.policy.namespaces = ns;
        self.policy.policies = pols;
        match r {
            Ok(c) => self.install(c),
            // keep the old programs: endpoints are looked up by name in them
            Err(e) => tracing::error!("recompiling policy for changed endpoints: {e}"),
        }
    }

    /// Makes `c` the policy of the next snapshot.
    pub(crate) fn install(&mut self, c: Compiled) {
        let c = Arc::new(c);
        self.policy.generation += 1;
        self.policy
            .history
            .push_back((self.policy.generation, c.clone()));
        while self.policy.history.len() > HISTORY {
            self.policy.history.pop_front();
        }
        self.policy.compiled = c;
    }

    /// Checks the complete namespace and policy lists a document sets
    /// (either may be absent: it stays as it is), refusing them whole if
    /// they do not compile. Returns what to store.
    pub(crate) fn prepare_policy(
        &self,
        namespaces: Option<Vec<NamespaceInfo>>,
        policies: Option<Vec<Policy>>,
    ) -> Result<Option<(Vec<NamespaceInfo>, Vec<Policy>)>> {
        if namespaces.is_none() && policies.is_none() {
            return Ok(None);
        }
        let ns = namespaces.unwrap_or_else(|| self.policy.namespaces.clone());
        let pols = policies.unwrap_or_else(|| self.policy.policies.clone());
        let mut seen = std::collections::HashSet::new();
        for n in &ns {
            if !seen.insert(n.name.as_str()) {
                return invalid(format!("Namespace {} is listed twice", n.name));
            }
        }
        // publish() compiles again, with the document's endpoints in place
        self.compile_policy(&ns, &pols)?;
        Ok(Some((ns, pols)))
    }

    pub(crate) fn store_policy(&mut self, (ns, pols): (Vec<NamespaceInfo>, Vec<Policy>)) {
        tracing::info!(
            "policy applied: {} namespaces, {} policies",
            ns.len(),
            pols.len()
        );
        self.policy.namespaces = ns;
        self.policy.policies = pols;
    }

    /// Where an endpoint's programs are, for the snapshot.
    pub(crate) fn endpoint_policy(&self, ep: &EndpointSpec) -> EndpointPolicy {
        let c = &self.policy.compiled;
        match c.endpoint_index(&ep.port) {
            Some(i) => EndpointPolicy {
                index: i as u32,
                ingress: c.has_policy(i, Direction::Ingress),
                egress: c.has_policy(i, Direction::Egress),
            },
            None => EndpointPolicy::default(),
        }
    }

    /// Moves what workers logged into the switch's flow log (and its file).
    pub(crate) fn collect_flow_log(&mut self) {
        let shared = self.shared().clone();
        let mut got: Vec<LogRecord> = Vec::new();
        for q in &shared.flow_log {
            while let Some(r) = q.pop() {
                got.push(r);
            }
        }
        if got.is_empty() {
            return;
        }
        got.sort_by_key(|r| r.now);
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(u64::from(self.now()));
        for r in got {
            let e = self.flow_entry(&r, start);
            if let Some(f) = &mut self.policy.log_file {
                if let Ok(line) = serde_json::to_string(&e) {
                    if let Err(err) = writeln!(f, "{line}") {
                        tracing::warn!("flow log file: {err}");
                    }
                }
            }
            self.policy.log.push_back(e);
            while self.policy.log.len() > FLOW_LOG_KEEP {
                self.policy.log.pop_front();
            }
        }
    }

    fn flow_entry(&mut self, r: &LogRecord, start: u64) -> FlowLogEntry {
        let seq = self.policy.next_seq;
        self.policy.next_seq += 1;
        let endpoint = self
            .name_of(r.port)
            .map(|p| match self.endpoints.get(&p) {
                Some(ep) => endpoint_name(ep),
                None => p,
            })
            .unwrap_or_else(|| format!("port {}", r.port));
        let describe =
            |why: Reason| match self.policy.history.iter().find(|(g, _)| *g == r.generation) {
                Some((_, c)) => c.describe(why),
                None => format!("{why:?} (policy since replaced)"),
            };
        FlowLogEntry {
            seq,
            time: start + u64::from(r.now),
            endpoint,
            direction: match r.direction {
                Direction::Ingress => "ingress".into(),
                Direction::Egress => "egress".into(),
            },
            protocol: proto_name(r.proto),
            src: Ipv4Addr::from(r.src),
            dst: Ipv4Addr::from(r.dst),
            sport: r.sport,
            dport: r.dport,
            rule: describe(r.logged),
            verdict: if r.allow { "allow" } else { "deny" }.into(),
            decided_by: describe(r.decided),
        }
    }

    pub fn policy_list(&self) -> api::PolicySet {
        api::PolicySet {
            namespaces: self.policy.namespaces.clone(),
            policies: self.policy.policies.clone(),
        }
    }

    /// Flow-log records after sequence number `after`.
    pub fn flow_log(&mut self, after: u64) -> Vec<FlowLogEntry> {
        self.collect_flow_log();
        self.policy
            .log
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        n => n.to_string(),
    }
}

//! Policy on the control thread: namespaces, policy objects and cluster pods
//! applied and checked, compiled together with the endpoints into the
//! programs that snapshots carry; the flow log that Log rules feed, drained
//! from the workers' queues.

use crate::control::config::PolicySource;
use crate::control::policy_state::{FLOW_LOG_KEEP, HISTORY};
use crate::control::switch::{invalid, Result, Switch, SwitchError};
use crate::pipeline::firewall::LogRecord;
use crate::tables::endpoints::EndpointPolicy;
use api::policy::{EndpointInfo, NamespaceInfo, Policy};
use api::{EndpointSpec, FlowLogEntry};
use policy::compile::{Compiled, World};
use policy::{Direction, Reason};
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Namespaces, policy objects and the cluster's pods, checked together.
pub(crate) type PolicyParts = (Vec<NamespaceInfo>, Vec<Policy>, Vec<EndpointInfo>);

/// What the policy compiler needs to know of a local pod. It is known by
/// its port, which is unique; pod names need not be (a pod with two
/// interfaces has two endpoints). A pod attached through CNI carries only
/// its name: its labels, namespace and ports come from the cluster's pod
/// list when it is there.
fn endpoint_info(ep: &EndpointSpec, cluster: Option<&EndpointInfo>) -> EndpointInfo {
    match cluster {
        Some(c) => EndpointInfo {
            name: ep.port.clone(),
            namespace: c.namespace.clone(),
            labels: c.labels.clone(),
            service_account: c.service_account.clone(),
            ips: ep.ips.clone(),
            named_ports: c.named_ports.clone(),
            local: true,
        },
        None => EndpointInfo {
            name: ep.port.clone(),
            namespace: ep.namespace.clone().unwrap_or_else(|| "default".into()),
            labels: ep.labels.clone(),
            service_account: ep.service_account.clone(),
            ips: ep.ips.clone(),
            named_ports: ep.named_ports.clone(),
            local: true,
        },
    }
}

/// The compiler's endpoints: the local ones (by port), then the cluster's
/// other pods, remote, with only the addresses no local pod has (a stale
/// entry for an address reused here must not lend it its labels).
fn world_endpoints(
    endpoints: &std::collections::BTreeMap<String, EndpointSpec>,
    pods: &[EndpointInfo],
) -> Vec<EndpointInfo> {
    let by_name: std::collections::HashMap<&str, &EndpointInfo> =
        pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut local_pods = std::collections::HashSet::new();
    let mut local_ips = std::collections::HashSet::new();
    let mut out: Vec<EndpointInfo> = endpoints
        .values()
        .map(|ep| {
            local_ips.extend(ep.ips.iter().copied());
            // an endpoint set with labels of its own keeps them
            let cluster = ep
                .pod
                .as_deref()
                .filter(|_| ep.labels.is_empty() && ep.namespace.is_none())
                .and_then(|n| by_name.get(n).copied());
            if let Some(c) = cluster {
                local_pods.insert(c.name.as_str());
            }
            endpoint_info(ep, cluster)
        })
        .collect();
    for p in pods {
        if local_pods.contains(p.name.as_str()) {
            continue;
        }
        let ips: Vec<Ipv4Addr> = p
            .ips
            .iter()
            .copied()
            .filter(|ip| !local_ips.contains(ip))
            .collect();
        if ips.is_empty() {
            continue;
        }
        out.push(EndpointInfo {
            name: format!("remote:{}", p.name),
            ips,
            local: false,
            ..p.clone()
        });
    }
    out
}

/// Whether an endpoint's labels, and so the policy that selects it, are
/// known: with policy from `vsctl apply` always (what applies to it is what
/// was applied); with policy from the node agent once the agent's document
/// lists its pod (by namespace/name, with or without an address yet), or
/// once the endpoint was given a namespace or labels of its own.
pub(crate) fn programmed(source: PolicySource, ep: &EndpointSpec, pods: &[EndpointInfo]) -> bool {
    match source {
        PolicySource::Local => true,
        PolicySource::Agent => {
            ep.namespace.is_some()
                || !ep.labels.is_empty()
                || ep
                    .pod
                    .as_deref()
                    .is_some_and(|n| pods.iter().any(|p| p.name == n))
        }
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
        pods: &[EndpointInfo],
    ) -> Result<Compiled> {
        let world = World {
            namespaces: namespaces.to_vec(),
            endpoints: world_endpoints(&self.endpoints, pods),
            policies: policies.to_vec(),
        };
        Compiled::compile(&world).map_err(|e| SwitchError::Invalid(format!("policy: {e}")))
    }

    /// Recompiles for the endpoints as they are now (the policy objects
    /// compiled when applied, so this fails only on a broken invariant).
    pub(crate) fn recompile(&mut self) {
        let (ns, pols, pods) = (
            std::mem::take(&mut self.policy.namespaces),
            std::mem::take(&mut self.policy.policies),
            std::mem::take(&mut self.policy.pods),
        );
        let r = self.compile_policy(&ns, &pols, &pods);
        self.policy.namespaces = ns;
        self.policy.policies = pols;
        self.policy.pods = pods;
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
        self.policy.rule_slots = self.policy.hits.assign(&c);
        self.policy.compiled = c;
    }

    /// Checks the complete namespace and policy lists a document sets
    /// (either may be absent: it stays as it is), refusing them whole if
    /// they do not compile. Returns what to store.
    pub(crate) fn prepare_policy(
        &self,
        namespaces: Option<Vec<NamespaceInfo>>,
        policies: Option<Vec<Policy>>,
        pods: Option<Vec<EndpointInfo>>,
    ) -> Result<Option<PolicyParts>> {
        if namespaces.is_none() && policies.is_none() && pods.is_none() {
            return Ok(None);
        }
        let ns = namespaces.unwrap_or_else(|| self.policy.namespaces.clone());
        let pols = policies.unwrap_or_else(|| self.policy.policies.clone());
        let pods = pods.unwrap_or_else(|| self.policy.pods.clone());
        let mut seen = std::collections::HashSet::new();
        for n in &ns {
            if !seen.insert(n.name.as_str()) {
                return invalid(format!("Namespace {} is listed twice", n.name));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &pods {
            if !seen.insert(p.name.as_str()) {
                return invalid(format!("Pod {} is listed twice", p.name));
            }
        }
        // publish() compiles again, with the document's endpoints in place
        self.compile_policy(&ns, &pols, &pods)?;
        Ok(Some((ns, pols, pods)))
    }

    pub(crate) fn store_policy(&mut self, (ns, pols, pods): PolicyParts) {
        tracing::info!(
            "policy applied: {} namespaces, {} policies, {} cluster pods",
            ns.len(),
            pols.len(),
            pods.len()
        );
        self.policy.namespaces = ns;
        self.policy.policies = pols;
        self.policy.pods = pods;
    }

    /// Where an endpoint's programs are, for the snapshot.
    pub(crate) fn endpoint_policy(&self, ep: &EndpointSpec) -> EndpointPolicy {
        let c = &self.policy.compiled;
        let programmed = programmed(self.policy_source, ep, &self.policy.pods);
        match c.endpoint_index(&ep.port) {
            Some(i) => EndpointPolicy {
                index: i as u32,
                ingress: c.has_policy(i, Direction::Ingress),
                egress: c.has_policy(i, Direction::Egress),
                programmed,
            },
            // not compiled (a broken invariant): nothing to judge it by
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
            pods: self.policy.pods.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ep(port: &str, pod: Option<&str>, ip: [u8; 4]) -> EndpointSpec {
        EndpointSpec {
            port: port.into(),
            mac: api::MacAddr([2, 0, 0, 0, 0, ip[3]]),
            ips: vec![Ipv4Addr::from(ip)],
            pod: pod.map(str::to_owned),
            labels: BTreeMap::new(),
            namespace: None,
            service_account: None,
            named_ports: Vec::new(),
        }
    }

    fn pod(name: &str, app: &str, ip: [u8; 4]) -> EndpointInfo {
        let (ns, _) = name.split_once('/').unwrap_or(("default", name));
        EndpointInfo {
            name: name.into(),
            namespace: ns.into(),
            labels: [("app".to_owned(), app.to_owned())].into(),
            service_account: Some("sa".into()),
            ips: vec![Ipv4Addr::from(ip)],
            named_ports: Vec::new(),
            local: true,
        }
    }

    #[test]
    fn with_an_agent_an_attached_pod_waits_for_the_agent_to_name_it() {
        let attached = ep("pod-a", Some("shop/web-0"), [10, 0, 0, 1]);
        assert!(programmed(PolicySource::Local, &attached, &[]));
        assert!(!programmed(PolicySource::Agent, &attached, &[]));
        let others = [pod("shop/web-1", "web", [10, 0, 0, 2])];
        assert!(!programmed(PolicySource::Agent, &attached, &others));
        // named before it had an address: enough, its labels are known
        let mut named = pod("shop/web-0", "web", [10, 0, 0, 1]);
        named.ips.clear();
        assert!(programmed(PolicySource::Agent, &attached, &[named]));
        // an endpoint set with a namespace or labels of its own is known
        let mut own = ep("pod-b", None, [10, 0, 0, 3]);
        assert!(!programmed(PolicySource::Agent, &own, &[]));
        own.namespace = Some("shop".into());
        assert!(programmed(PolicySource::Agent, &own, &[]));
    }

    #[test]
    fn cluster_pods_label_attached_pods_and_feed_remote_addresses() {
        let mut eps = BTreeMap::new();
        eps.insert(
            "pod-a".into(),
            ep("pod-a", Some("shop/web-0"), [10, 0, 0, 1]),
        );
        // set by hand with labels of its own: they win
        let mut own = ep("pod-b", Some("shop/db-0"), [10, 0, 0, 2]);
        own.labels.insert("app".into(), "mine".into());
        eps.insert("pod-b".into(), own);
        let pods = vec![
            pod("shop/web-0", "web", [10, 0, 0, 1]),
            pod("shop/db-0", "db", [10, 0, 0, 2]),
            pod("shop/far", "far", [10, 0, 1, 7]),
            // a stale record for an address reused here lends it nothing
            pod("shop/gone", "gone", [10, 0, 0, 1]),
        ];
        let w = world_endpoints(&eps, &pods);
        let a = w.iter().find(|e| e.name == "pod-a").unwrap();
        assert_eq!(a.namespace, "shop");
        assert_eq!(a.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(a.service_account.as_deref(), Some("sa"));
        assert!(a.local);
        let b = w.iter().find(|e| e.name == "pod-b").unwrap();
        assert_eq!(b.labels.get("app").map(String::as_str), Some("mine"));
        assert_eq!(b.namespace, "default");
        let far = w.iter().find(|e| e.name == "remote:shop/far").unwrap();
        assert!(!far.local);
        assert_eq!(far.ips, vec![Ipv4Addr::new(10, 0, 1, 7)]);
        // db-0's cluster record is not attached by name (pod-b has its own
        // labels), so it is remote; its address is local, so nothing is left
        assert!(!w
            .iter()
            .any(|e| e.name.contains("gone") || e.name.contains("db-0")));
        assert_eq!(w.len(), 3);
    }
}

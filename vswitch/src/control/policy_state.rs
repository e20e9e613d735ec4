//! What the control thread keeps of policy: the namespaces, policy objects
//! and cluster pods applied, the compiled form the snapshots carry, and the
//! flow log that Log rules feed.

use api::policy::{EndpointInfo, NamespaceInfo, Policy};
use api::FlowLogEntry;
use policy::compile::Compiled;
use std::collections::VecDeque;
use std::sync::Arc;

/// Flow-log records the switch keeps for `vsctl flows log`.
pub(crate) const FLOW_LOG_KEEP: usize = 4096;
/// Compiled versions kept to name the rules of records still queued.
pub(crate) const HISTORY: usize = 4;

pub(crate) struct PolicyState {
    pub namespaces: Vec<NamespaceInfo>,
    pub policies: Vec<Policy>,
    /// The cluster's pods (from the node agent): labels for local pods
    /// attached through CNI, addresses of remote pods for selectors.
    pub pods: Vec<EndpointInfo>,
    pub compiled: Arc<Compiled>,
    pub generation: u64,
    /// Per rule of `compiled`: its counter slot.
    pub rule_slots: Arc<[u32]>,
    pub(crate) hits: crate::control::rule_hits::RuleHits,
    pub(crate) history: VecDeque<(u64, Arc<Compiled>)>,
    pub(crate) log: VecDeque<FlowLogEntry>,
    pub(crate) next_seq: u64,
    pub(crate) log_file: Option<std::fs::File>,
}

impl PolicyState {
    pub fn new(log_file: Option<std::fs::File>) -> PolicyState {
        PolicyState {
            namespaces: Vec::new(),
            policies: Vec::new(),
            pods: Vec::new(),
            compiled: Arc::new(Compiled::empty()),
            generation: 0,
            rule_slots: Arc::new([]),
            hits: Default::default(),
            history: VecDeque::new(),
            log: VecDeque::new(),
            next_seq: 1,
            log_file,
        }
    }
}

//! Kubernetes Events on the policies the agent cannot use: whoever applied
//! one sees in `kubectl get events` (and `describe`) that the pods it
//! selects are isolated in its place on this node, and why.

use super::reconcile::Skipped;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::BTreeSet;

/// Events' `reason`, for `kubectl get events --field-selector reason=...`.
pub const REASON: &str = "PolicyNotUsable";

/// Kubernetes caps an Event's note at 1 KiB.
const NOTE_MAX: usize = 1000;

pub struct PolicyEvents {
    recorder: Recorder,
    node: String,
    /// (kind, name, reason) of the stand-ins already reported: a policy is
    /// reported once per trouble, and again if it comes back after a fix.
    posted: BTreeSet<(String, String, String)>,
}

impl PolicyEvents {
    pub fn new(client: kube::Client, node: &str) -> PolicyEvents {
        let reporter = Reporter {
            controller: "vswitch-agent".into(),
            instance: Some(node.to_owned()),
        };
        PolicyEvents {
            recorder: Recorder::new(client, reporter),
            node: node.to_owned(),
            posted: BTreeSet::new(),
        }
    }

    /// Posts an Event for each policy newly stood in for. A failed post is
    /// tried again after the next reconcile.
    pub async fn post(&mut self, skipped: &[Skipped]) {
        let stand_ins: Vec<&Skipped> = skipped.iter().filter(|s| !s.isolated.is_empty()).collect();
        let now: BTreeSet<(String, String, String)> = stand_ins.iter().map(|s| key(s)).collect();
        self.posted.retain(|k| now.contains(k));
        for s in stand_ins {
            let k = key(s);
            if self.posted.contains(&k) {
                continue;
            }
            let ev = Event {
                type_: EventType::Warning,
                reason: REASON.into(),
                note: Some(note(s, &self.node)),
                action: "Isolate".into(),
                secondary: None,
            };
            match self.recorder.publish(&ev, &reference(s)).await {
                Ok(()) => {
                    self.posted.insert(k);
                }
                Err(e) => tracing::warn!("event on {} {}: {e}", s.kind, s.name),
            }
        }
    }
}

fn key(s: &Skipped) -> (String, String, String) {
    (s.kind.clone(), s.name.clone(), s.reason.clone())
}

fn note(s: &Skipped, node: &str) -> String {
    let mut n = format!(
        "cannot be used on node {node} ({}): the endpoints it selects are isolated ({}) in its place",
        s.reason,
        s.isolated.join(", ")
    );
    if n.len() > NOTE_MAX {
        let mut cut = NOTE_MAX;
        while !n.is_char_boundary(cut) {
            cut -= 1;
        }
        n.truncate(cut);
    }
    n
}

/// The policy an Event is about, from the kind and name the reconcile
/// reports (`NetworkPolicy (networking.k8s.io/v1)`, `ns/name`).
fn reference(s: &Skipped) -> ObjectReference {
    let (kind, api_version) = match s.kind.split_once(" (") {
        Some((k, v)) => (k, v.trim_end_matches(')')),
        None => (s.kind.as_str(), "projectcalico.org/v3"),
    };
    let (namespace, name) = match s.name.split_once('/') {
        Some((ns, n)) => (Some(ns.to_owned()), n),
        None => (None, s.name.as_str()),
    };
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: Some(name.to_owned()),
        namespace,
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(kind: &str, name: &str, reason: &str) -> Skipped {
        Skipped {
            kind: kind.into(),
            name: name.into(),
            reason: reason.into(),
            isolated: vec!["ingress".into()],
        }
    }

    #[test]
    fn events_name_the_policy_as_the_api_knows_it() {
        let r = reference(&skipped(
            "NetworkPolicy (networking.k8s.io/v1)",
            "shop/a",
            "x",
        ));
        assert_eq!(r.api_version.as_deref(), Some("networking.k8s.io/v1"));
        assert_eq!(r.kind.as_deref(), Some("NetworkPolicy"));
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(r.name.as_deref(), Some("a"));
        let g = reference(&skipped("GlobalNetworkPolicy", "deny-all", "x"));
        assert_eq!(g.api_version.as_deref(), Some("projectcalico.org/v3"));
        assert_eq!(g.namespace, None);
        assert_eq!(g.name.as_deref(), Some("deny-all"));
    }

    #[test]
    fn notes_say_why_and_what_is_isolated_within_the_bound() {
        let n = note(&skipped("GlobalNetworkPolicy", "p", "an http match"), "n1");
        assert!(
            n.contains("n1") && n.contains("an http match") && n.contains("ingress"),
            "{n}"
        );
        let long = note(&skipped("GlobalNetworkPolicy", "p", &"é".repeat(800)), "n1");
        assert!(long.len() <= NOTE_MAX);
    }
}

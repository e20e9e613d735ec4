//! Which counter slot each policy rule counts in, and the counts read back
//! by rule.
//!
//! A rule is known by its tier, policy, direction, index and action; it
//! keeps its slot for the switch's life, through every recompilation (a pod
//! added recompiles everything), so that its count, and the Prometheus
//! series made of it, only grows. A slot is never given to another rule: a
//! rule that comes back finds its old count. When every slot is taken, new
//! rules are not counted (said once in the log).

use crate::counters::{WorkerCounters, RULE_SLOTS};
use policy::compile::Compiled;
use policy::Direction;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    tier: String,
    policy: String,
    ingress: bool,
    rule: u32,
    action: &'static str,
}

/// Slots given so far.
#[derive(Default)]
pub(crate) struct RuleHits {
    slots: HashMap<Key, u32>,
    /// By slot.
    keys: Vec<Key>,
    /// The slots of the rules in force, to report.
    current: Vec<u32>,
    warned: bool,
}

impl RuleHits {
    /// The slot of every rule of `c`, by `Compiled::rule_index`
    /// (`u32::MAX`: not counted).
    pub fn assign(&mut self, c: &Compiled) -> Arc<[u32]> {
        let mut by_index = vec![u32::MAX; c.rule_count()];
        self.current.clear();
        for (i, r) in c.rule_names() {
            let key = Key {
                tier: r.tier.to_owned(),
                policy: r.policy.to_owned(),
                ingress: r.dir == Direction::Ingress,
                rule: r.rule,
                action: r.action.as_str(),
            };
            let slot = match self.slots.get(&key) {
                Some(&s) => s,
                None if self.keys.len() < RULE_SLOTS => {
                    let s = self.keys.len() as u32;
                    self.keys.push(key.clone());
                    self.slots.insert(key, s);
                    s
                }
                None => {
                    if !self.warned {
                        tracing::warn!(
                            "{RULE_SLOTS} policy rules counted already: new rules are not counted"
                        );
                        self.warned = true;
                    }
                    continue;
                }
            };
            if let Some(b) = by_index.get_mut(i) {
                *b = slot;
            }
            self.current.push(slot);
        }
        self.current.sort_unstable();
        self.current.dedup();
        by_index.into()
    }

    /// The rules in force and what they decided, all workers together.
    pub fn report(&self, workers: &[WorkerCounters]) -> Vec<api::RuleHits> {
        self.current
            .iter()
            .filter_map(|&s| {
                let k = self.keys.get(s as usize)?;
                let hits = workers
                    .iter()
                    .filter_map(|w| w.rule_hits.get(s as usize))
                    .map(|c| c.get())
                    .sum();
                Some(api::RuleHits {
                    tier: k.tier.clone(),
                    policy: k.policy.clone(),
                    direction: if k.ingress { "ingress" } else { "egress" }.into(),
                    rule: k.rule,
                    action: k.action.to_lowercase(),
                    hits,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::compile::World;
    use policy::Reason;

    /// Policies `names` in namespace default, each with an allow rule and a
    /// deny rule, in that order.
    fn compiled(names: &[&str]) -> Compiled {
        let policies: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                serde_json::json!({"calico": {
                    "metadata": {"name": n, "namespace": "default"},
                    "spec": {"selector": "all()", "types": ["Ingress"],
                             "ingress": [{"action": "Allow", "protocol": "UDP"},
                                         {"action": "Deny"}]}
                }})
            })
            .collect();
        let world: World = serde_json::from_value(serde_json::json!({
            "namespaces": [{"name": "default"}],
            "endpoints": [{"name": "default/a", "namespace": "default",
                           "ips": ["10.65.0.1"], "local": true}],
            "policies": policies,
        }))
        .expect("test world");
        Compiled::compile(&world).expect("compiles")
    }

    fn slot_of(c: &Compiled, slots: &[u32], policy: u32, rule: u32) -> u32 {
        let i = c.rule_index(Reason::Rule { policy, rule }).expect("a rule");
        slots[i]
    }

    #[test]
    fn a_rule_keeps_its_slot_and_count_through_recompiles() {
        let mut hits = RuleHits::default();
        let workers = [WorkerCounters::new(1), WorkerCounters::new(1)];
        let c1 = compiled(&["p1", "p2"]);
        let s1 = hits.assign(&c1);
        assert_eq!(s1.len(), 4);
        let p2_allow = slot_of(&c1, &s1, 1, 0);
        workers[0].rule_hits[p2_allow as usize].add(2);
        workers[1].rule_hits[p2_allow as usize].add(3);
        // p1 goes, p0 comes: p2's rules keep their slots (and counts)
        let c2 = compiled(&["p0", "p2"]);
        let s2 = hits.assign(&c2);
        let p2 = c2
            .rule_names()
            .find(|(_, r)| r.policy.contains("p2") && r.rule == 0)
            .map(|(i, _)| i)
            .expect("p2's first rule");
        assert_eq!(s2[p2], p2_allow);
        let report = hits.report(&workers);
        assert_eq!(report.len(), 4, "the rules in force only: {report:?}");
        let r = report
            .iter()
            .find(|r| r.policy.contains("p2") && r.rule == 0)
            .expect("p2's allow rule");
        assert_eq!(
            (r.direction.as_str(), r.action.as_str(), r.hits),
            ("ingress", "allow", 5)
        );
        assert!(
            report.iter().all(|r| !r.policy.contains("p1")),
            "p1 is gone: {report:?}"
        );
        // p0's slots are new ones, not p1's
        let used: std::collections::HashSet<u32> = s1.iter().copied().collect();
        for (i, r) in c2.rule_names() {
            if r.policy.contains("p0") {
                assert!(!used.contains(&s2[i]), "p0 got a slot of p1's");
            }
        }
    }
}

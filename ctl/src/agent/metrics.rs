//! The agent's `/metrics` (OpenMetrics text): its pushes to vswitchd and
//! how long they take, its watches of the API server, and what it skipped.

use super::AgentStatus;
use exposition::{family, one};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt::Error;
use std::sync::atomic::Ordering;

/// A watch's figures, by its kind and resource.
#[derive(Debug, Clone)]
struct Watch {
    kind: String,
    resource: String,
    lists: u64,
    events: u64,
    errors: u64,
}

/// What a scrape reads of the agent's status, taken under its lock.
#[derive(Debug, Clone)]
struct Figures {
    ready: bool,
    in_sync: bool,
    pushes: u64,
    push_failures: u64,
    refusals: u64,
    resyncs: u64,
    push_seconds: f64,
    last_push_seconds: f64,
    skipped: BTreeMap<String, u64>,
    watches: Vec<Watch>,
}

impl Figures {
    fn of(st: &AgentStatus) -> Figures {
        let mut skipped = BTreeMap::new();
        for s in &st.skipped {
            *skipped.entry(s.kind.clone()).or_default() += 1;
        }
        Figures {
            ready: st.not_ready().is_none(),
            in_sync: st.in_sync,
            pushes: st.pushes,
            push_failures: st.push_failures,
            refusals: st.refusals,
            resyncs: st.resyncs,
            push_seconds: st.push_seconds,
            last_push_seconds: st.last_push_seconds,
            skipped,
            watches: st
                .watchers
                .iter()
                .map(|(kind, resource, w)| Watch {
                    kind: serde_json::to_value(kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| format!("{kind:?}")),
                    resource: resource.clone(),
                    lists: w.lists.load(Ordering::Relaxed),
                    events: w.events.load(Ordering::Relaxed),
                    errors: w.errors.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

impl Collector for Figures {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let e = &mut enc;
        let flag = |b: bool| ConstGauge::new(i64::from(b));
        one(
            e,
            "vswitch_agent_ready",
            "1 when /readyz says ready.",
            flag(self.ready),
        )?;
        one(
            e,
            "vswitch_agent_in_sync",
            "1 when vswitchd has the current desired state.",
            flag(self.in_sync),
        )?;
        let counters: [(&str, &str, u64); 4] = [
            (
                "vswitch_agent_pushes",
                "Desired states vswitchd took.",
                self.pushes,
            ),
            (
                "vswitch_agent_push_failures",
                "Pushes and checks that found vswitchd unreachable.",
                self.push_failures,
            ),
            (
                "vswitch_agent_refusals",
                "Desired states vswitchd refused.",
                self.refusals,
            ),
            (
                "vswitch_agent_resyncs",
                "Full pushes after vswitchd was lost or restarted.",
                self.resyncs,
            ),
        ];
        for (name, help, v) in counters {
            one(e, name, help, ConstCounter::new(v))?;
        }
        one(
            e,
            "vswitch_agent_push_seconds",
            "Time spent pushing desired states vswitchd took; over \
             vswitch_agent_pushes, the mean push latency.",
            ConstCounter::new(self.push_seconds),
        )?;
        one(
            e,
            "vswitch_agent_last_push_seconds",
            "How long the last push vswitchd took lasted.",
            ConstGauge::new(self.last_push_seconds),
        )?;
        family(
            e,
            "vswitch_agent_skipped",
            "Objects left out of the desired state (see /status for why), by kind.",
            self.skipped
                .iter()
                .map(|(k, n)| (vec![("kind", k.clone())], ConstGauge::new(*n as i64))),
        )?;
        let watch = |w: &Watch| vec![("kind", w.kind.clone()), ("resource", w.resource.clone())];
        family(
            e,
            "vswitch_agent_watch_lists",
            "Complete lists of a resource (the first and every relist).",
            self.watches
                .iter()
                .map(|w| (watch(w), ConstCounter::new(w.lists))),
        )?;
        family(
            e,
            "vswitch_agent_watch_events",
            "Objects added, changed or deleted after a list.",
            self.watches
                .iter()
                .map(|w| (watch(w), ConstCounter::new(w.events))),
        )?;
        family(
            e,
            "vswitch_agent_watch_errors",
            "Failed lists and watches (each followed by a retry).",
            self.watches
                .iter()
                .map(|w| (watch(w), ConstCounter::new(w.errors))),
        )?;
        Ok(())
    }
}

/// The agent's metrics, in OpenMetrics text.
pub fn render(st: &AgentStatus) -> Result<String, Error> {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Figures::of(st)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_and_their_time() {
        let mut st = AgentStatus::new("n1");
        st.pushes = 4;
        st.push_seconds = 0.5;
        st.last_push_seconds = 0.125;
        st.skipped.push(super::super::reconcile::Skipped {
            kind: "Pod".into(),
            name: "a/b".into(),
            reason: "no IP".into(),
            isolated: vec![],
        });
        let text = render(&st).expect("renders");
        assert!(text.contains("vswitch_agent_pushes_total 4"), "{text}");
        assert!(
            text.contains("vswitch_agent_push_seconds_total 0.5"),
            "{text}"
        );
        assert!(
            text.contains("vswitch_agent_last_push_seconds 0.125"),
            "{text}"
        );
        assert!(
            text.contains("vswitch_agent_skipped{kind=\"Pod\"} 1"),
            "{text}"
        );
        assert!(text.contains("vswitch_agent_ready 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}

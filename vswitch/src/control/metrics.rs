//! `/metrics` for Prometheus (OpenMetrics text): what `vsctl stats`,
//! `vsctl status` and `vsctl port list` show, with each pod's namespace and
//! name on its interface's series.
//!
//! A scrape takes the switch's lock as long as `vsctl stats` does and reads
//! the workers' counters; the workers themselves are not touched.

use crate::control::socket::Control;
use api::{EndpointSpec, PortInfo, Stats, Status};
use exposition::{counter, family, gauge, one, CONTENT_TYPE, TEXT};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::fmt::Error;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// What one scrape reads of the switch.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub stats: Stats,
    pub ports: Vec<PortInfo>,
    pub endpoints: Vec<EndpointSpec>,
    pub status: Option<Status>,
    pub services: Vec<api::Service>,
    /// Underlay neighbours by state name.
    pub neighbours: Vec<(&'static str, u64)>,
}

impl Scrape {
    /// Reads the switch; None if its state is poisoned.
    pub fn take(ctl: &Control) -> Option<Scrape> {
        let status = ctl.status.status();
        let sw = ctl.sw.lock().ok()?;
        let mut neighbours: Vec<(&'static str, u64)> = Vec::new();
        for e in sw.shared().neigh.entries(sw.now()) {
            match neighbours.iter_mut().find(|(s, _)| *s == e.state.name()) {
                Some((_, n)) => *n += 1,
                None => neighbours.push((e.state.name(), 1)),
            }
        }
        neighbours.sort_unstable();
        Some(Scrape {
            stats: sw.stats(),
            ports: sw.list_ports(),
            endpoints: sw.endpoints(),
            status: Some(status),
            services: sw.service_list(),
            neighbours,
        })
    }

    /// The exposition, in OpenMetrics text.
    pub fn render(&self) -> Result<String, Error> {
        let mut reg = Registry::default();
        reg.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg)?;
        Ok(out)
    }

    /// Each port's labels: its name, and the pod's namespace and name when
    /// a pod is behind it; built once per scrape.
    fn port_labels(&self) -> HashMap<&str, Vec<(&'static str, String)>> {
        let pods: HashMap<&str, &str> = self
            .endpoints
            .iter()
            .filter_map(|e| Some((e.port.as_str(), e.pod.as_deref()?)))
            .collect();
        self.ports
            .iter()
            .map(|p| p.name.as_str())
            .chain(self.stats.ports.iter().map(|p| p.name.as_str()))
            .map(|port| {
                let mut l = vec![("port", port.to_owned())];
                match pods.get(port).map(|pod| (pod, pod.split_once('/'))) {
                    Some((_, Some((ns, name)))) => {
                        l.push(("namespace", ns.to_owned()));
                        l.push(("pod", name.to_owned()));
                    }
                    Some((pod, None)) => l.push(("pod", (*pod).to_owned())),
                    None => {}
                }
                (port, l)
            })
            .collect()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let s = &self.stats;
        let e = &mut enc;
        let labels = self.port_labels();
        let port_labels = |port: &str| {
            labels
                .get(port)
                .cloned()
                .unwrap_or_else(|| vec![("port", port.to_owned())])
        };
        type PortField = (&'static str, &'static str, fn(&api::PortStats) -> u64);
        let port_fields: [PortField; 6] = [
            (
                "vswitch_interface_rx_packets",
                "Packets received on the port.",
                |p| p.rx_packets,
            ),
            (
                "vswitch_interface_rx_bytes",
                "Bytes received on the port.",
                |p| p.rx_bytes,
            ),
            (
                "vswitch_interface_tx_packets",
                "Packets sent on the port.",
                |p| p.tx_packets,
            ),
            (
                "vswitch_interface_tx_bytes",
                "Bytes sent on the port.",
                |p| p.tx_bytes,
            ),
            (
                "vswitch_interface_rx_drops",
                "Packets received on the port that the switch dropped.",
                |p| p.rx_drops,
            ),
            (
                "vswitch_interface_tx_drops",
                "Packets meant for the port that could not be sent.",
                |p| p.tx_drops,
            ),
        ];
        for (name, help, f) in port_fields {
            family(
                e,
                name,
                help,
                s.ports
                    .iter()
                    .map(|p| (port_labels(&p.name), counter(f(p)))),
            )?;
        }
        family(
            e,
            "vswitch_drops",
            "Packets dropped, by reason (vsctl stats; the operators' guide says what each means).",
            s.drops
                .iter()
                .map(|(r, n)| (vec![("reason", r.clone())], counter(*n))),
        )?;
        family(
            e,
            "vswitch_port_worker",
            "The worker lcore that polls the port (1 per port).",
            self.ports.iter().map(|p| {
                let mut l = port_labels(&p.name);
                l.push(("lcore", p.lcore.to_string()));
                l.push(("kind", p.kind.as_str().to_owned()));
                (l, gauge(1))
            }),
        )?;
        family(
            e,
            "vswitch_policy_rule_hits",
            "Connections a policy rule allowed or denied (judged on their first packet).",
            s.policy_rules.iter().map(|r| {
                (
                    vec![
                        ("tier", r.tier.clone()),
                        ("policy", r.policy.clone()),
                        ("direction", r.direction.clone()),
                        ("rule", r.rule.to_string()),
                        ("action", r.action.clone()),
                    ],
                    counter(r.hits),
                )
            }),
        )?;
        let lcore = |w: &api::WorkerStats| vec![("lcore", w.lcore.to_string())];
        family(
            e,
            "vswitch_worker_packets",
            "Packets the worker received.",
            s.workers.iter().map(|w| (lcore(w), counter(w.packets))),
        )?;
        family(
            e,
            "vswitch_worker_busy_cycles",
            "TSC cycles the worker spent in polls that returned packets; over \
             vswitch_worker_packets, cycles per packet.",
            s.workers.iter().map(|w| (lcore(w), counter(w.busy_cycles))),
        )?;
        if s.tsc_hz > 0 {
            family(
                e,
                "vswitch_worker_busy_seconds",
                "Time the worker spent in polls that returned packets.",
                s.workers.iter().map(|w| {
                    (
                        lcore(w),
                        ConstCounter::new(w.busy_cycles as f64 / s.tsc_hz as f64),
                    )
                }),
            )?;
        }
        family(
            e,
            "vswitch_worker_idle_polls",
            "Polls of all the worker's ports that returned nothing.",
            s.workers.iter().map(|w| (lcore(w), counter(w.idle_polls))),
        )?;
        family(
            e,
            "vswitch_worker_sleeps",
            "Times the idle worker slept.",
            s.workers.iter().map(|w| (lcore(w), counter(w.sleeps))),
        )?;
        let f = &s.fdb;
        one(
            e,
            "vswitch_fdb_entries",
            "MACs learned now.",
            gauge(f.entries),
        )?;
        one(
            e,
            "vswitch_fdb_capacity",
            "MACs the FDB holds at most.",
            gauge(f.capacity),
        )?;
        one(
            e,
            "vswitch_fdb_learned",
            "MACs learned.",
            counter(f.learned),
        )?;
        one(
            e,
            "vswitch_fdb_moved",
            "MACs seen behind another port.",
            counter(f.moved),
        )?;
        one(
            e,
            "vswitch_fdb_aged",
            "MACs forgotten for silence.",
            counter(f.aged),
        )?;
        one(
            e,
            "vswitch_fdb_evicted",
            "MACs evicted to make room.",
            counter(f.evicted),
        )?;
        let c = &s.conntrack;
        let ct: [(&str, &str, u64); 7] = [
            (
                "vswitch_conntrack_created",
                "Connections tracked.",
                c.created,
            ),
            (
                "vswitch_conntrack_picked_up",
                "TCP connections taken up in mid-stream (their start unseen).",
                c.picked_up,
            ),
            (
                "vswitch_conntrack_evicted",
                "Closed, closing or unanswered connections dropped early to make room.",
                c.evicted,
            ),
            (
                "vswitch_conntrack_refused",
                "New connections refused for want of room (dropped as ct_full).",
                c.refused,
            ),
            (
                "vswitch_flow_log_suppressed",
                "Flow-log records refused by the rate limit.",
                c.log_suppressed,
            ),
            (
                "vswitch_answers_suppressed",
                "TCP RSTs and ICMP errors of the switch's own not sent: over the rate.",
                c.answers_suppressed,
            ),
            (
                "vswitch_arp_suppressed",
                "ARP requests for unresolved addresses not sent: over the rate.",
                c.arp_suppressed,
            ),
        ];
        for (name, help, v) in ct {
            one(e, name, help, counter(v))?;
        }
        one(
            e,
            "vswitch_conntrack_capacity",
            "Connections tracked at most, all workers together.",
            gauge(c.capacity),
        )?;
        family(
            e,
            "vswitch_service_backends",
            "Ready backends of each Service port (0: the port refuses connections).",
            self.services.iter().flat_map(|s| {
                s.ports.iter().map(move |p| {
                    (
                        vec![
                            ("service", s.name.clone()),
                            ("port", format!("{}/{}", p.port, p.protocol.as_str())),
                        ],
                        gauge(p.backends.len() as u64),
                    )
                })
            }),
        )?;
        family(
            e,
            "vswitch_neighbours",
            "Underlay neighbours in the ARP table, by state.",
            self.neighbours
                .iter()
                .map(|(state, n)| (vec![("state", (*state).to_owned())], gauge(*n))),
        )?;
        if let Some(st) = &self.status {
            one(
                e,
                "vswitch_pods",
                "Routed pods attached.",
                gauge(st.pods.into()),
            )?;
            family(
                e,
                "vswitch_pods_max",
                "Kernel pods the switch can hold, and the limit that sets it.",
                [(
                    vec![("limit", st.pods_limit.clone())],
                    gauge(st.pods_max.into()),
                )],
            )?;
            one(
                e,
                "vswitch_generation",
                "Changes applied since vswitchd started.",
                gauge(st.generation),
            )?;
            family(
                e,
                "vswitch_build_info",
                "vswitchd's version and DPDK's (1).",
                [(
                    vec![
                        ("version", st.version.clone()),
                        ("dpdk_version", st.dpdk_version.clone()),
                    ],
                    gauge(1),
                )],
            )?;
        }
        Ok(())
    }
}

/// How long a scrape's connection may take, request and answer.
const CONN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener`, one request per connection.
pub async fn serve(ctl: Control, listener: TcpListener) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let ctl = ctl.clone();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(CONN_TIMEOUT, answer(conn, ctl)).await;
        });
    }
}

/// (status code, content type, body) for a request's method and path.
async fn route(method: &str, path: &str, ctl: Control) -> (u16, &'static str, String) {
    if method != "GET" {
        return (405, TEXT, "only GET\n".into());
    }
    if path != "/metrics" {
        return (404, TEXT, "not found: ask for /metrics\n".into());
    }
    // the lock may be held by a request that waits: not on the accepting thread
    let body = tokio::task::spawn_blocking(move || Scrape::take(&ctl).map(|s| s.render())).await;
    match body {
        Ok(Some(Ok(text))) => (200, CONTENT_TYPE, text),
        _ => (
            500,
            TEXT,
            "internal error: switch state unreadable\n".into(),
        ),
    }
}

async fn answer(mut conn: TcpStream, ctl: Control) -> std::io::Result<()> {
    let (method, path) = exposition::read_request(&mut conn).await?;
    let (code, kind, body) = route(&method, &path, ctl).await;
    exposition::respond(conn, code, kind, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{MacAddr, PortStats};

    fn scrape() -> Scrape {
        let mut s = Scrape::default();
        s.stats.ports = vec![
            PortStats {
                name: "pod-ab12".into(),
                rx_packets: 7,
                rx_bytes: 700,
                ..Default::default()
            },
            PortStats {
                name: "uplink".into(),
                tx_packets: 3,
                ..Default::default()
            },
        ];
        s.stats.drops.insert("spoofed_ip".into(), 2);
        s.stats.drops.insert("no_route".into(), 0);
        s.stats.tsc_hz = 2_000_000_000;
        s.stats.workers = vec![api::WorkerStats {
            lcore: 1,
            busy_cycles: 4_000_000_000,
            packets: 10,
            ..Default::default()
        }];
        s.ports = vec![PortInfo {
            name: "pod-ab12".into(),
            kind: api::PortKind::VhostServer,
            path: None,
            iface: None,
            pci: None,
            port_id: 4,
            lcore: 1,
            link_up: true,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
        }];
        s.endpoints = vec![EndpointSpec {
            port: "pod-ab12".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ips: vec![],
            pod: Some("shop/web-0".into()),
            labels: Default::default(),
            namespace: None,
            service_account: None,
            named_ports: vec![],
        }];
        s
    }

    #[test]
    fn a_pods_interface_carries_its_namespace_and_name() {
        let text = scrape().render().expect("renders");
        assert!(
            text.contains(
                "vswitch_interface_rx_packets_total{port=\"pod-ab12\",namespace=\"shop\",pod=\"web-0\"} 7"
            ),
            "{text}"
        );
        assert!(
            text.contains("vswitch_interface_tx_packets_total{port=\"uplink\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE vswitch_interface_rx_bytes counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "vswitch_port_worker{port=\"pod-ab12\",namespace=\"shop\",pod=\"web-0\",lcore=\"1\",kind=\"vhost-server\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn every_drop_reason_and_worker_time() {
        let text = scrape().render().expect("renders");
        assert!(
            text.contains("vswitch_drops_total{reason=\"spoofed_ip\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("vswitch_drops_total{reason=\"no_route\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("vswitch_worker_busy_seconds_total{lcore=\"1\"} 2.0"),
            "{text}"
        );
        assert!(text.contains("vswitch_fdb_entries 0"), "{text}");
    }

    #[test]
    fn service_backends_and_neighbours() {
        let mut s = scrape();
        s.services = vec![api::Service {
            name: "shop/web".into(),
            cluster_ips: vec![std::net::Ipv4Addr::new(10, 96, 0, 10)],
            ports: vec![api::ServicePort {
                name: None,
                protocol: api::policy::K8sProtocol::Udp,
                port: 53,
                node_port: None,
                backends: vec![
                    api::Backend {
                        ip: std::net::Ipv4Addr::new(10, 65, 0, 1),
                        port: 5353,
                        node: None,
                    };
                    2
                ],
            }],
            affinity_timeout: None,
        }];
        s.neighbours = vec![("reachable", 3), ("stale", 1)];
        let text = s.render().expect("renders");
        for line in [
            "vswitch_service_backends{service=\"shop/web\",port=\"53/UDP\"} 2\n",
            "vswitch_neighbours{state=\"reachable\"} 3\n",
            "vswitch_neighbours{state=\"stale\"} 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in {text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = scrape();
        s.endpoints[0].pod = Some("ns/we\"ird\\name".into());
        let text = s.render().expect("renders");
        assert!(text.contains("pod=\"we\\\"ird\\\\name\""), "{text}");
    }
}

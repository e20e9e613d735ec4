//! Replies as plain-text tables.

use crate::rate::{format_rate, PortRate};
use crate::table::{format_line, Table};
use api::{FdbEntry, PortInfo, Stats, Status};

/// `port list`: NAME KIND PORT-ID LCORE LINK MAC PATH/IFACE (a pci
/// port's address in the last column).
pub fn ports(ports: &[PortInfo]) -> String {
    let mut t = Table::new([
        "name",
        "kind",
        "port-id",
        "lcore",
        "link",
        "mac",
        "path/iface",
    ]);
    for p in ports {
        let attach = p
            .path
            .as_deref()
            .or(p.iface.as_deref())
            .or(p.pci.as_deref())
            .unwrap_or("-");
        t.row([
            p.name.clone(),
            p.kind.to_string(),
            p.port_id.to_string(),
            p.lcore.to_string(),
            if p.link_up { "up" } else { "down" }.to_owned(),
            p.mac.to_string(),
            attach.to_owned(),
        ]);
    }
    t.render()
}

pub fn endpoints(eps: &[api::EndpointSpec]) -> String {
    let mut t = Table::new(["port", "mac", "ips", "pod", "labels"]);
    for e in eps {
        let ips: Vec<String> = e.ips.iter().map(ToString::to_string).collect();
        t.row([
            e.port.clone(),
            e.mac.to_string(),
            ips.join(","),
            e.pod.clone().unwrap_or_else(|| "-".to_owned()),
            e.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    t.render()
}

pub fn pools(pools: &[api::IpPool]) -> String {
    let mut t = Table::new([
        "name",
        "cidr",
        "block-size",
        "ipip",
        "vxlan",
        "nat",
        "disabled",
    ]);
    let mode = |m: Option<api::EncapMode>| format!("{:?}", m.unwrap_or_default());
    for p in pools {
        t.row([
            p.name.clone(),
            p.cidr.clone(),
            p.block_size.map_or("-".into(), |b| b.to_string()),
            mode(p.ipip_mode),
            mode(p.vxlan_mode),
            p.nat_outgoing.to_string(),
            p.disabled.to_string(),
        ]);
    }
    t.render()
}

pub fn nodes(nodes: &[api::Node]) -> String {
    let mut t = Table::new(["name", "addresses"]);
    for n in nodes {
        t.row([n.name.clone(), n.addresses.join(",")]);
    }
    t.render()
}

pub fn blocks(blocks: &[api::BlockInfo]) -> String {
    let mut t = Table::new(["cidr", "pool", "node", "allocated"]);
    for b in blocks {
        t.row([
            b.cidr.clone(),
            b.pool.clone(),
            b.node.clone().unwrap_or_else(|| "-".into()),
            format!("{}/{}", b.allocated, b.size),
        ]);
    }
    t.render()
}

pub fn attachments(v: &[api::Attachment]) -> String {
    let mut t = Table::new([
        "container",
        "ifname",
        "kind",
        "port",
        "mac",
        "ips",
        "attach",
    ]);
    for a in v {
        let ips: Vec<String> = a.ips.iter().map(ToString::to_string).collect();
        let short: String = a.container_id.chars().take(12).collect();
        t.row([
            short,
            a.ifname.clone(),
            match a.effective_vhost_mode() {
                Some(m) => format!("vhost-{m}"),
                None => format!("{:?}", a.kind).to_lowercase(),
            },
            a.port.clone(),
            a.mac.to_string(),
            ips.join(","),
            a.iface
                .clone()
                .or_else(|| a.socket.clone())
                .unwrap_or_default(),
        ]);
    }
    t.render()
}

/// Busy cycles per packet, "-" when no packet was seen.
pub fn cycles_per_packet(busy_cycles: u64, packets: u64) -> String {
    busy_cycles
        .checked_div(packets)
        .map_or_else(|| "-".to_owned(), |c| c.to_string())
}

/// `stats`: per-port counters, drops by reason, FDB, conntrack, workers; five tables
/// separated by blank lines.
pub fn stats(s: &Stats) -> String {
    let mut ports = Table::new([
        "port", "rx-pkts", "rx-bytes", "tx-pkts", "tx-bytes", "tx-drops", "rx-drops",
    ]);
    for p in &s.ports {
        ports.row([
            p.name.clone(),
            p.rx_packets.to_string(),
            p.rx_bytes.to_string(),
            p.tx_packets.to_string(),
            p.tx_bytes.to_string(),
            p.tx_drops.to_string(),
            p.rx_drops.to_string(),
        ]);
    }

    // Every reason the switch reports, zero ones included (BTreeMap: sorted).
    let mut drops = Table::new(["drop-reason", "packets"]);
    for (reason, n) in &s.drops {
        drops.row([reason.clone(), n.to_string()]);
    }

    let f = &s.fdb;
    let mut fdb = Table::new([
        "fdb-entries",
        "capacity",
        "learned",
        "moved",
        "aged",
        "evicted",
        "aging-secs",
    ]);
    fdb.row([
        f.entries,
        f.capacity,
        f.learned,
        f.moved,
        f.aged,
        f.evicted,
        u64::from(f.aging_seconds),
    ]);

    let c = &s.conntrack;
    let mut ct = Table::new([
        "ct-capacity",
        "ct-created",
        "ct-picked-up",
        "ct-evicted",
        "log-suppressed",
    ]);
    ct.row([
        c.capacity,
        c.created,
        c.picked_up,
        c.evicted,
        c.log_suppressed,
    ]);

    let mut workers = Table::new([
        "lcore",
        "ports",
        "packets",
        "cycles/pkt",
        "idle-polls",
        "sleeps",
    ]);
    for w in &s.workers {
        let ports = if w.ports.is_empty() {
            "-".to_owned()
        } else {
            w.ports.join(",")
        };
        workers.row([
            w.lcore.to_string(),
            ports,
            w.packets.to_string(),
            cycles_per_packet(w.busy_cycles, w.packets),
            w.idle_polls.to_string(),
            w.sleeps.to_string(),
        ]);
    }

    let mut tables = vec![ports, drops, fdb, ct, workers];
    if !s.policy_rules.is_empty() {
        let mut rules = Table::new(["tier", "policy", "dir", "rule", "action", "hits"]);
        for r in &s.policy_rules {
            rules.row([
                r.tier.clone(),
                r.policy.clone(),
                r.direction.clone(),
                r.rule.to_string(),
                r.action.clone(),
                r.hits.to_string(),
            ]);
        }
        tables.push(rules);
    }
    tables
        .iter()
        .map(Table::render)
        .collect::<Vec<_>>()
        .join("\n")
}

/// FDB entries sorted by port, then MAC.
pub fn sort_fdb(entries: &mut [FdbEntry]) {
    entries.sort_by(|a, b| a.port.cmp(&b.port).then(a.mac.cmp(&b.mac)));
}

/// `fdb show`: MAC PORT AGE, sorted by port then MAC.
pub fn fdb(entries: &[FdbEntry]) -> String {
    let mut sorted = entries.to_vec();
    sort_fdb(&mut sorted);
    let mut t = Table::new(["mac", "port", "age"]);
    for e in &sorted {
        t.row([e.mac.to_string(), e.port.clone(), format!("{}s", e.age)]);
    }
    t.render()
}

/// `fdb flush`.
pub fn flushed(n: u64) -> String {
    format!(
        "flushed {n} FDB {}\n",
        if n == 1 { "entry" } else { "entries" }
    )
}

/// `status`: one row.
pub fn status(s: &Status) -> String {
    let workers = if s.workers.is_empty() {
        "-".to_owned()
    } else {
        s.workers
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut t = Table::new([
        "version",
        "dpdk",
        "hugepages",
        "workers",
        "generation",
        "pods",
        "limited by",
    ]);
    t.row([
        s.version.clone(),
        s.dpdk_version.clone(),
        if s.hugepages { "yes" } else { "no" }.to_owned(),
        workers,
        s.generation.to_string(),
        format!("{}/{}", s.pods, s.pods_max),
        s.pods_limit.clone(),
    ]);
    t.render()
}

/// Column titles of `stats --rate`.
pub const RATE_HEADER: [&str; 4] = ["PORT", "RX-PPS", "TX-PPS", "DROPS/S"];

/// Fixed column widths for `stats --rate`, so that every block lines up under
/// the header printed once: the port column fits the names known at start.
pub fn rate_widths<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<usize> {
    let name_w = names
        .into_iter()
        .map(|n| n.chars().count())
        .chain([RATE_HEADER[0].len()])
        .max()
        .unwrap_or(0);
    let mut w = vec![name_w];
    w.extend(RATE_HEADER[1..].iter().map(|h| h.len().max(10)));
    w
}

/// The header line of `stats --rate`.
pub fn rate_header(widths: &[usize]) -> String {
    format_line(&RATE_HEADER, widths) + "\n"
}

/// One interval of `stats --rate`: a line per port.
pub fn rate_block(rates: &[PortRate], widths: &[usize]) -> String {
    let mut out = String::new();
    for r in rates {
        let cells = [
            r.name.clone(),
            format_rate(r.rx_pps),
            format_rate(r.tx_pps),
            format_rate(r.drops_per_sec),
        ];
        out.push_str(&format_line(&cells, widths));
        out.push('\n');
    }
    out
}

/// `get policies`: KIND NAMESPACE NAME TIER ORDER TYPES RULES, sorted by
/// kind, namespace and name. RULES counts ingress/egress rules; ORDER and
/// TIER are what Calico uses when the object leaves them out (Kubernetes
/// NetworkPolicies are always in tier `default` at order 1000).
pub fn policies(set: &api::PolicySet) -> String {
    use api::policy::{self as pol, Policy};
    let types = |(ingress, egress): (bool, bool)| {
        match (ingress, egress) {
            (true, true) => "Ingress,Egress",
            (true, false) => "Ingress",
            (false, true) => "Egress",
            (false, false) => "-",
        }
        .to_owned()
    };
    let order = |o: Option<f64>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
    let tier = |t: &Option<String>| t.as_deref().unwrap_or(pol::DEFAULT_TIER).to_owned();
    let mut rows: Vec<(crate::apply::Key, [String; 4])> = set
        .policies
        .iter()
        .map(|p| {
            let cells = match p {
                Policy::K8s(o) => [
                    pol::DEFAULT_TIER.to_owned(),
                    order(Some(pol::K8S_POLICY_ORDER)),
                    types(o.spec.effective_types()),
                    format!("{}/{}", o.spec.ingress.len(), o.spec.egress.len()),
                ],
                Policy::Calico(o) => {
                    let s = &o.spec;
                    [
                        tier(&s.tier),
                        order(s.order),
                        types(pol::effective_types(&s.types, &s.ingress, &s.egress)),
                        format!("{}/{}", s.ingress.len(), s.egress.len()),
                    ]
                }
                Policy::Global(o) => {
                    let s = &o.spec;
                    [
                        tier(&s.tier),
                        order(s.order),
                        types(pol::effective_types(&s.types, &s.ingress, &s.egress)),
                        format!("{}/{}", s.ingress.len(), s.egress.len()),
                    ]
                }
                Policy::Tier(t) => {
                    let default =
                        (t.metadata.name == pol::DEFAULT_TIER).then_some(pol::DEFAULT_TIER_ORDER);
                    [
                        "-".to_owned(),
                        order(t.spec.order.or(default)),
                        "-".to_owned(),
                        "-".to_owned(),
                    ]
                }
            };
            (crate::apply::Key::of(p), cells)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut t = Table::new([
        "kind",
        "namespace",
        "name",
        "tier",
        "order",
        "types",
        "rules",
    ]);
    for (k, [tier, order, types, rules]) in rows {
        t.row([
            k.kind.to_owned(),
            k.namespace.unwrap_or_else(|| "-".to_owned()),
            k.name,
            tier,
            order,
            types,
            rules,
        ]);
    }
    t.render()
}

/// `get namespaces`: NAME LABELS, sorted by name.
pub fn namespaces(ns: &[api::policy::NamespaceInfo]) -> String {
    let mut sorted: Vec<&api::policy::NamespaceInfo> = ns.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut t = Table::new(["name", "labels"]);
    for n in sorted {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        t.row([
            n.name.clone(),
            if labels.is_empty() {
                "-".to_owned()
            } else {
                labels.join(",")
            },
        ]);
    }
    t.render()
}

fn labels_cell(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `get cluster-pods`: NAME IPS LOCAL LABELS, one row per pod.
pub fn cluster_pods(pods: &[api::policy::EndpointInfo]) -> String {
    let mut sorted: Vec<&api::policy::EndpointInfo> = pods.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut t = Table::new(["name", "ips", "local", "labels"]);
    for p in sorted {
        let ips: Vec<String> = p.ips.iter().map(ToString::to_string).collect();
        t.row([
            p.name.clone(),
            ips.join(","),
            if p.local { "yes" } else { "no" }.to_owned(),
            labels_cell(&p.labels),
        ]);
    }
    t.render()
}

/// `get services`: one row per Service port: NAME CLUSTER-IPS PORT
/// (port/protocol, `:nodePort` when set) BACKENDS (ip:port, `-` for none)
/// AFFINITY (ClientIP timeout, `-` for none).
pub fn services(svcs: &[api::Service]) -> String {
    let mut sorted: Vec<&api::Service> = svcs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut t = Table::new(["name", "cluster-ips", "port", "backends", "affinity"]);
    for s in sorted {
        let ips: Vec<String> = s.cluster_ips.iter().map(ToString::to_string).collect();
        let affinity = s
            .affinity_timeout
            .map_or("-".to_owned(), |t| format!("ClientIP {t}s"));
        if s.ports.is_empty() {
            t.row([
                s.name.clone(),
                ips.join(","),
                "-".to_owned(),
                "-".to_owned(),
                affinity.clone(),
            ]);
        }
        for p in &s.ports {
            let mut port = format!("{}/{}", p.port, p.protocol.as_str());
            if let Some(np) = p.node_port {
                port.push_str(&format!(":{np}"));
            }
            let backends: Vec<String> = p
                .backends
                .iter()
                .map(|b| format!("{}:{}", b.ip, b.port))
                .collect();
            t.row([
                s.name.clone(),
                ips.join(","),
                port,
                if backends.is_empty() {
                    "-".to_owned()
                } else {
                    backends.join(",")
                },
                affinity.clone(),
            ]);
        }
    }
    t.render()
}

/// Unix time as RFC 3339 in UTC, e.g. `2024-02-29T13:05:09Z`.
pub fn rfc3339(secs: u64) -> String {
    // Days to civil date: Howard Hinnant's algorithm, on the proleptic
    // Gregorian calendar with eras of 400 years.
    let days = i128::from(secs / 86_400);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Column titles of `flows log`.
pub const FLOW_HEADER: [&str; 9] = [
    "TIME",
    "ENDPOINT",
    "DIR",
    "PROTO",
    "SRC:SPORT",
    "DST:DPORT",
    "RULE",
    "VERDICT",
    "DECIDED-BY",
];

/// Column widths of `flows log --follow`, whose rows are printed as they
/// come under a header printed once: wide enough for most records (a wider
/// cell pushes the rest of its row right).
pub const FLOW_FOLLOW_WIDTHS: [usize; 9] = [20, 24, 7, 5, 21, 21, 36, 7, 0];

/// One flow-log record as table cells. Ports are shown for TCP, UDP and
/// SCTP; for ICMP the destination carries the type and code.
pub fn flow_cells(e: &api::FlowLogEntry) -> [String; 9] {
    let (src, dst) = match e.protocol.as_str() {
        "TCP" | "UDP" | "SCTP" => (
            format!("{}:{}", e.src, e.sport),
            format!("{}:{}", e.dst, e.dport),
        ),
        "ICMP" => (
            e.src.to_string(),
            format!("{} type {} code {}", e.dst, e.dport >> 8, e.dport & 0xff),
        ),
        _ => (e.src.to_string(), e.dst.to_string()),
    };
    [
        rfc3339(e.time),
        e.endpoint.clone(),
        e.direction.clone(),
        e.protocol.clone(),
        src,
        dst,
        e.rule.clone(),
        e.verdict.clone(),
        e.decided_by.clone(),
    ]
}

/// `flows log`: one row per record.
pub fn flow_log(entries: &[api::FlowLogEntry]) -> String {
    let mut t = Table::new(FLOW_HEADER);
    for e in entries {
        t.row(flow_cells(e));
    }
    t.render()
}

/// Rows of `flows log --follow`, at [`FLOW_FOLLOW_WIDTHS`].
pub fn flow_rows(entries: &[api::FlowLogEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format_line(&flow_cells(e), &FLOW_FOLLOW_WIDTHS));
        out.push('\n');
    }
    out
}

/// The header line of `flows log --follow`.
pub fn flow_follow_header() -> String {
    format_line(&FLOW_HEADER, &FLOW_FOLLOW_WIDTHS) + "\n"
}

/// `get conntrack`: one row per connection, then how many matched.
pub fn conntrack(l: &api::ConntrackList) -> String {
    let mut t = Table::new([
        "pod", "proto", "src", "dst", "state", "idle", "expires", "lcore",
    ]);
    for c in &l.connections {
        t.row([
            c.pod.clone().unwrap_or_else(|| "-".into()),
            c.protocol.clone(),
            format!("{}:{}", c.src, c.sport),
            format!("{}:{}", c.dst, c.dport),
            c.state.clone(),
            format!("{}s", c.idle_seconds),
            format!("{}s", c.expires_seconds),
            c.lcore.to_string(),
        ]);
    }
    format!(
        "{}{} of {} connections\n",
        t.render(),
        l.connections.len(),
        l.total
    )
}

/// `get nat`: one row per translation, then how many there are.
pub fn nat(l: &api::NatList) -> String {
    let mut t = Table::new([
        "proto", "pod", "node", "remote", "state", "age", "expires", "lcore",
    ]);
    for b in &l.bindings {
        t.row([
            b.protocol.clone(),
            format!("{}:{}", b.pod_ip, b.pod_port),
            format!("{}:{}", b.node_ip, b.nat_port),
            format!("{}:{}", b.remote_ip, b.remote_port),
            b.state.clone(),
            format!("{}s", b.age_seconds),
            format!("{}s", b.expires_seconds),
            b.lcore.to_string(),
        ]);
    }
    format!(
        "{}{} of {} translations\n",
        t.render(),
        l.bindings.len(),
        l.total
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{FdbStats, MacAddr, PortKind, PortStats, WorkerStats};
    use std::collections::BTreeMap;

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("test MAC")
    }

    #[test]
    fn service_and_cluster_pod_tables() {
        let svc = api::Service {
            name: "shop/web".into(),
            cluster_ips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![api::ServicePort {
                name: Some("http".into()),
                protocol: api::policy::K8sProtocol::Tcp,
                port: 80,
                node_port: Some(30080),
                backends: vec![
                    api::Backend {
                        ip: "10.65.0.1".parse().unwrap(),
                        port: 8080,
                        node: None,
                    },
                    api::Backend {
                        ip: "10.65.1.1".parse().unwrap(),
                        port: 8080,
                        node: Some("n2".into()),
                    },
                ],
            }],
            affinity_timeout: Some(60),
        };
        let t = services(&[svc]);
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[0],
            ["NAME", "CLUSTER-IPS", "PORT", "BACKENDS", "AFFINITY"]
        );
        assert_eq!(
            rows[1],
            [
                "shop/web",
                "10.96.0.10",
                "80/TCP:30080",
                "10.65.0.1:8080,10.65.1.1:8080",
                "ClientIP",
                "60s"
            ]
        );
        let pods = [api::policy::EndpointInfo {
            name: "shop/web-0".into(),
            namespace: "shop".into(),
            labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            ips: vec!["10.65.0.1".parse().unwrap()],
            local: true,
            ..Default::default()
        }];
        let t = cluster_pods(&pods);
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[1], ["shop/web-0", "10.65.0.1", "yes", "app=web"]);
    }

    #[test]
    fn port_table() {
        let ps = vec![
            PortInfo {
                name: "p0".into(),
                kind: PortKind::VhostServer,
                path: Some("/run/vswitch/p0.sock".into()),
                iface: None,
                pci: None,
                port_id: 0,
                lcore: 2,
                link_up: true,
                mac: mac("02:00:00:00:00:a0"),
            },
            PortInfo {
                name: "tap0".into(),
                kind: PortKind::Tap,
                path: None,
                iface: Some("vs-tap0".into()),
                pci: None,
                port_id: 1,
                lcore: 3,
                link_up: false,
                mac: mac("02:00:00:00:00:a1"),
            },
        ];
        assert_eq!(
            ports(&ps),
            "NAME  KIND          PORT-ID  LCORE  LINK  MAC                PATH/IFACE\n\
             p0    vhost-server  0        2      up    02:00:00:00:00:a0  /run/vswitch/p0.sock\n\
             tap0  tap           1        3      down  02:00:00:00:00:a1  vs-tap0\n"
        );
    }

    #[test]
    fn attachment_table_names_the_vhost_mode() {
        let tap = api::Attachment {
            container_id: "0123456789abcdef".into(),
            ifname: "eth0".into(),
            network: None,
            kind: api::AttachKind::Tap,
            port: "pod-1".into(),
            iface: Some("vsw1".into()),
            socket: None,
            vhost_mode: None,
            mac: mac("02:00:00:00:00:01"),
            ips: vec!["10.0.0.1".parse().unwrap()],
            ipam: true,
            gateway: api::GATEWAY_IP,
            mtu: 1500,
            netns: None,
        };
        let client = api::Attachment {
            kind: api::AttachKind::Vhost,
            port: "pod-2".into(),
            iface: None,
            socket: Some("/s/c/eth0.sock".into()),
            vhost_mode: Some(api::VhostMode::Client),
            ..tap.clone()
        };
        // what a switch that predates the mode reports
        let old = api::Attachment {
            port: "pod-3".into(),
            vhost_mode: None,
            ..client.clone()
        };
        let t = attachments(&[tap, client, old]);
        let kinds: Vec<&str> = t
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        assert_eq!(kinds, ["tap", "vhost-client", "vhost-server"], "{t}");
    }

    #[test]
    fn stats_tables() {
        let s = Stats {
            ports: vec![PortStats {
                name: "p0".into(),
                rx_packets: 10,
                rx_bytes: 640,
                tx_packets: 9,
                tx_bytes: 576,
                tx_drops: 1,
                rx_drops: 0,
            }],
            drops: BTreeMap::from([("no_fdb_room".to_owned(), 0), ("tx_full".to_owned(), 1)]),
            fdb: FdbStats {
                entries: 2,
                capacity: 4096,
                learned: 3,
                moved: 1,
                aged: 1,
                evicted: 0,
                aging_seconds: 300,
            },
            workers: vec![
                WorkerStats {
                    lcore: 2,
                    ports: vec!["p0".into(), "p1".into()],
                    packets: 10,
                    busy_cycles: 1234,
                    idle_polls: 7,
                    sleeps: 1,
                },
                WorkerStats {
                    lcore: 3,
                    ports: vec![],
                    packets: 0,
                    busy_cycles: 0,
                    idle_polls: 9,
                    sleeps: 4,
                },
            ],
            tsc_hz: 2_000_000_000,
            conntrack: api::ConntrackStats {
                capacity: 1024,
                created: 5,
                picked_up: 2,
                evicted: 1,
                log_suppressed: 0,
                ..Default::default()
            },
            policy_rules: vec![api::RuleHits {
                tier: "default".into(),
                policy: "shop/knp.default.allow-web".into(),
                direction: "ingress".into(),
                rule: 0,
                action: "allow".into(),
                hits: 3,
            }],
        };
        assert_eq!(
            stats(&s),
            "PORT  RX-PKTS  RX-BYTES  TX-PKTS  TX-BYTES  TX-DROPS  RX-DROPS\n\
             p0    10       640       9        576       1         0\n\
             \n\
             DROP-REASON  PACKETS\n\
             no_fdb_room  0\n\
             tx_full      1\n\
             \n\
             FDB-ENTRIES  CAPACITY  LEARNED  MOVED  AGED  EVICTED  AGING-SECS\n\
             2            4096      3        1      1     0        300\n\
             \n\
             CT-CAPACITY  CT-CREATED  CT-PICKED-UP  CT-EVICTED  LOG-SUPPRESSED\n\
             1024         5           2             1           0\n\
             \n\
             LCORE  PORTS  PACKETS  CYCLES/PKT  IDLE-POLLS  SLEEPS\n\
             2      p0,p1  10       123         7           1\n\
             3      -      0        -           9           4\n\
             \n\
             TIER     POLICY                      DIR      RULE  ACTION  HITS\n\
             default  shop/knp.default.allow-web  ingress  0     allow   3\n"
        );
    }

    #[test]
    fn cycles_per_packet_handles_zero() {
        assert_eq!(cycles_per_packet(0, 0), "-");
        assert_eq!(cycles_per_packet(500, 0), "-");
        assert_eq!(cycles_per_packet(999, 10), "99");
    }

    #[test]
    fn fdb_sorted_by_port_then_mac() {
        let e = |m: &str, p: &str, age| FdbEntry {
            mac: mac(m),
            port: p.into(),
            age,
        };
        let entries = vec![
            e("02:00:00:00:00:0b", "p1", 3),
            e("02:00:00:00:00:0c", "p0", 0),
            e("02:00:00:00:00:0a", "p1", 120),
            e("02:00:00:00:00:01", "p0", 7),
        ];
        assert_eq!(
            fdb(&entries),
            "MAC                PORT  AGE\n\
             02:00:00:00:00:01  p0    7s\n\
             02:00:00:00:00:0c  p0    0s\n\
             02:00:00:00:00:0a  p1    120s\n\
             02:00:00:00:00:0b  p1    3s\n"
        );
    }

    #[test]
    fn flushed_and_status() {
        assert_eq!(flushed(1), "flushed 1 FDB entry\n");
        assert_eq!(flushed(0), "flushed 0 FDB entries\n");
        let s = Status {
            version: "0.1.0".into(),
            dpdk_version: "DPDK 22.11.4".into(),
            hugepages: true,
            workers: vec![1, 2],
            generation: 7,
            pods: 3,
            pods_max: 4096,
            pods_limit: "4096 port ids".into(),
        };
        assert_eq!(
            status(&s),
            "VERSION  DPDK          HUGEPAGES  WORKERS  GENERATION  PODS    LIMITED BY\n\
             0.1.0    DPDK 22.11.4  yes        1,2      7           3/4096  4096 port ids\n"
        );
    }

    #[test]
    fn rate_lines_align_under_the_header() {
        let w = rate_widths(["p0", "longer-port"]);
        assert_eq!(w, vec![11, 10, 10, 10]);
        assert_eq!(
            rate_header(&w),
            "PORT         RX-PPS      TX-PPS      DROPS/S\n"
        );
        let rates = [PortRate {
            name: "p0".into(),
            rx_pps: 1000.4,
            tx_pps: 999.6,
            drops_per_sec: 0.0,
        }];
        assert_eq!(
            rate_block(&rates, &w),
            "p0           1000        1000        0\n"
        );
    }

    #[test]
    fn unix_time_as_rfc3339() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_709_211_909, "2024-02-29T13:05:09Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (68_256_000_000, "4132-12-12T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(secs), want, "{secs}");
        }
        // Far out of range still prints, without overflow.
        assert!(rfc3339(u64::MAX).ends_with("Z"));
    }
}

//! What the workers alone hold, as `vsctl get conntrack`, `vsctl flush
//! conntrack` and `vsctl get nat` show it: questions put to every worker
//! (crate::inquiry), answers labelled with the worker and the pod of each
//! connection's zone.

use crate::control::switch::{invalid, not_found, Result, Switch, SwitchError};
use crate::inquiry::{ask_all, Ask, Told};
use crate::tables::conntrack::{State, PROTO_ICMP, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use api::{ConnectionInfo, ConntrackList, ConntrackQuery, NatBinding, NatList};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Listed unless asked for another number.
const DEFAULT_LIMIT: usize = 1000;
/// How long a worker may take to answer: it answers between two bursts.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

pub(crate) fn protocol(p: u8) -> String {
    match p {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_ICMP => "icmp".into(),
        PROTO_SCTP => "sctp".into(),
        p => p.to_string(),
    }
}

fn limit(n: u32) -> usize {
    if n == 0 {
        DEFAULT_LIMIT
    } else {
        n as usize
    }
}

/// The pod (else the port) behind each zone.
fn zone_names(sw: &Switch) -> HashMap<u16, String> {
    let pods: HashMap<String, String> = sw
        .endpoints()
        .into_iter()
        .filter_map(|e| Some((e.port, e.pod?)))
        .collect();
    sw.zones()
        .map(|(port, z)| {
            (
                z,
                pods.get(port).cloned().unwrap_or_else(|| port.to_owned()),
            )
        })
        .collect()
}

/// The zone of a pod named "namespace/name", or of a routed port.
fn zone_of(sw: &Switch, pod: &str) -> Result<u16> {
    let port = sw
        .endpoints()
        .into_iter()
        .find(|e| e.pod.as_deref() == Some(pod) || e.port == pod)
        .map(|e| e.port);
    let Some(port) = port else {
        return not_found(format!("no pod or routed port named '{pod}'"));
    };
    match sw.zones().find(|(p, _)| *p == port) {
        Some((_, z)) => Ok(z),
        None => not_found(format!("pod '{pod}' has no conntrack zone yet")),
    }
}

fn ask(sw: &Switch, ask: &Ask) -> Result<Vec<Told>> {
    ask_all(&sw.shared().inquiries, ask, ANSWER_WITHIN).map_err(|w| {
        SwitchError::Internal(format!(
            "worker on lcore {} did not answer within {ANSWER_WITHIN:?}",
            sw.lcores().get(w).copied().unwrap_or_default()
        ))
    })
}

pub fn conntrack(sw: &Switch, q: &ConntrackQuery) -> Result<ConntrackList> {
    let zone = q.pod.as_deref().map(|p| zone_of(sw, p)).transpose()?;
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => match State::from_name(s) {
            Some(st) => Some(st),
            None => {
                let names: Vec<&str> = State::ALL.iter().map(|s| s.name()).collect();
                return invalid(format!(
                    "unknown connection state '{s}' (one of {})",
                    names.join(", ")
                ));
            }
        },
    };
    let max = limit(q.limit);
    let told = ask(sw, &Ask::Connections { zone, state, max })?;
    let names = zone_names(sw);
    let mut out = ConntrackList::default();
    for (w, t) in told.into_iter().enumerate() {
        let Told::Connections { total, list } = t else {
            continue;
        };
        out.total += total as u64;
        let lcore = sw.lcores().get(w).copied().unwrap_or_default();
        for c in list {
            if out.connections.len() >= max {
                break;
            }
            out.connections.push(ConnectionInfo {
                lcore,
                zone: c.zone,
                pod: names.get(&c.zone).cloned(),
                protocol: protocol(c.proto),
                src: Ipv4Addr::from(c.src),
                sport: c.sport,
                dst: Ipv4Addr::from(c.dst),
                dport: c.dport,
                state: c.state.name().into(),
                idle_seconds: c.idle,
                expires_seconds: c.expires,
            });
        }
    }
    out.connections
        .sort_by_key(|c| (c.pod.clone(), c.src, c.sport, c.dst, c.dport));
    Ok(out)
}

/// Forgets a pod's connections, or all; how many live ones went.
pub fn flush_conntrack(sw: &Switch, pod: Option<&str>) -> Result<u64> {
    let zone = pod.map(|p| zone_of(sw, p)).transpose()?;
    let told = ask(sw, &Ask::FlushConnections { zone })?;
    let n = told
        .into_iter()
        .map(|t| match t {
            Told::Flushed(n) => n as u64,
            _ => 0,
        })
        .sum();
    tracing::info!(
        "conntrack flushed ({}): {n} connections",
        pod.unwrap_or("all pods")
    );
    Ok(n)
}

pub fn nat(sw: &Switch, limit_n: u32) -> Result<NatList> {
    let max = limit(limit_n);
    let told = ask(sw, &Ask::Bindings { max })?;
    let mut out = NatList::default();
    for (w, t) in told.into_iter().enumerate() {
        let Told::Bindings { total, list } = t else {
            continue;
        };
        out.total += total as u64;
        let lcore = sw.lcores().get(w).copied().unwrap_or_default();
        for b in list {
            if out.bindings.len() >= max {
                break;
            }
            out.bindings.push(NatBinding {
                lcore,
                protocol: protocol(b.proto),
                pod_ip: Ipv4Addr::from(b.pod_ip),
                pod_port: b.pod_port,
                node_ip: Ipv4Addr::from(b.node_ip),
                nat_port: b.nat_port,
                remote_ip: Ipv4Addr::from(b.remote_ip),
                remote_port: b.remote_port,
                state: b.state.name().into(),
                age_seconds: b.age,
                expires_seconds: b.expires,
            });
        }
    }
    out.bindings
        .sort_by_key(|b| (b.pod_ip, b.pod_port, b.remote_ip, b.remote_port));
    Ok(out)
}

//! Connectivity matrices for a cluster, computed by the dataplane's own
//! evaluator ([`Compiled::evaluate`]): for each pair of pods and each
//! protocol/port, whether the source's egress program lets the packet out,
//! whether the destination's ingress program lets it in, and both.

use crate::compile::{Compiled, PolicyError, World};
use crate::{Decision, Direction, Packet, Reason};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The source port of simulated packets: any ephemeral port would do, as
/// Kubernetes policies never look at source ports.
pub const SIM_SOURCE_PORT: u16 = 40000;

/// What to probe: `TCP/80`, `UDP/53`, `SCTP/81`, or `ICMP` (echo request;
/// `ICMP/<type>` and `ICMP/<type>/<code>` for others).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProtoPort {
    pub proto: u8,
    /// The destination port; for ICMP, `type << 8 | code`.
    pub port: u16,
    label: String,
}

impl ProtoPort {
    pub fn tcp(port: u16) -> ProtoPort {
        ProtoPort {
            proto: 6,
            port,
            label: format!("TCP/{port}"),
        }
    }

    /// How it is written in matrices and JSON, e.g. `TCP/80`.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Display for ProtoPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl FromStr for ProtoPort {
    type Err = String;

    fn from_str(s: &str) -> Result<ProtoPort, String> {
        let bad =
            || format!("'{s}' is not PROTO/PORT (TCP/80, UDP/53, SCTP/81, ICMP, ICMP/8, ICMP/8/0)");
        let mut parts = s.trim().split('/');
        let proto = parts.next().unwrap_or_default().to_ascii_uppercase();
        let rest: Vec<&str> = parts.collect();
        let num = |x: &str| x.trim().parse::<u16>().map_err(|_| bad());
        match proto.as_str() {
            "TCP" | "UDP" | "SCTP" => {
                let [port] = rest[..] else { return Err(bad()) };
                let port = num(port)?;
                let n = match proto.as_str() {
                    "TCP" => 6,
                    "UDP" => 17,
                    _ => 132,
                };
                Ok(ProtoPort {
                    proto: n,
                    port,
                    label: format!("{proto}/{port}"),
                })
            }
            "ICMP" => {
                let (ty, code) = match rest[..] {
                    [] => (8, 0),
                    [t] => (num(t)?, 0),
                    [t, c] => (num(t)?, num(c)?),
                    _ => return Err(bad()),
                };
                if ty > 255 || code > 255 {
                    return Err(bad());
                }
                let label = if rest.is_empty() {
                    "ICMP".to_owned()
                } else {
                    format!("ICMP/{}", rest.join("/"))
                };
                Ok(ProtoPort {
                    proto: 1,
                    port: ty << 8 | code,
                    label,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// One protocol/port's matrices: one string per source pod (row), one
/// character per destination pod (column), `A` allowed, `B` blocked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Matrices {
    pub ingress: Vec<String>,
    pub egress: Vec<String>,
    pub combined: Vec<String>,
}

/// The result of a simulation, serialized as
/// `{"pods": [...], "matrices": {"TCP/80": {"ingress": [...], ...}, ...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Simulation {
    pub pods: Vec<String>,
    /// By probe label (`TCP/80`).
    pub matrices: BTreeMap<String, Matrices>,
    /// The probe labels in the order asked for, which tables follow.
    #[serde(skip)]
    pub probes: Vec<String>,
}

impl Simulation {
    /// Human-readable tables, one block per protocol/port and direction.
    pub fn render(&self) -> String {
        const CORNER: &str = "FROM\\TO";
        let w = self
            .pods
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(CORNER.len());
        let mut out = String::new();
        for (label, m) in self
            .probes
            .iter()
            .filter_map(|p| self.matrices.get(p).map(|m| (p, m)))
        {
            for (title, rows) in [
                ("combined (egress and ingress)", &m.combined),
                ("egress (the source's policy)", &m.egress),
                ("ingress (the destination's policy)", &m.ingress),
            ] {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("{label} {title}\n"));
                let mut line = format!("{CORNER:w$}");
                for p in &self.pods {
                    line.push_str(&format!("  {p}"));
                }
                out.push_str(line.trim_end());
                out.push('\n');
                for (src, row) in self.pods.iter().zip(rows) {
                    let mut line = format!("{src:w$}");
                    for (dst, c) in self.pods.iter().zip(row.chars()) {
                        line.push_str(&format!("  {c:<width$}", width = dst.len()));
                    }
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// One direction's verdict, explained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub allowed: bool,
    /// The rule, or the default, that decided.
    pub reason: String,
    /// The action of that rule, when a rule decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The first Log rule the packet met, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logged: Option<String>,
    /// The policies that apply to the pod in this direction, in order.
    pub policies: Vec<String>,
}

/// Why a packet from `src` to `dst` is allowed or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    pub probe: String,
    /// The source pod's egress.
    pub egress: Verdict,
    /// The destination pod's ingress.
    pub ingress: Verdict,
    pub allowed: bool,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = |a: bool| if a { "allowed" } else { "blocked" };
        writeln!(
            f,
            "{} -> {} {}: {}",
            self.src,
            self.dst,
            self.probe,
            word(self.allowed)
        )?;
        for (side, pod, v) in [
            ("egress of", &self.src, &self.egress),
            ("ingress of", &self.dst, &self.ingress),
        ] {
            match &v.action {
                Some(a) => writeln!(
                    f,
                    "  {side} {pod}: {} by {} ({a})",
                    word(v.allowed),
                    v.reason
                )?,
                None => writeln!(f, "  {side} {pod}: {}, {}", word(v.allowed), v.reason)?,
            }
            if let Some(l) = &v.logged {
                writeln!(f, "    logged by {l}")?;
            }
            if !v.policies.is_empty() {
                writeln!(f, "    policies in order: {}", v.policies.join(", "))?;
            }
        }
        Ok(())
    }
}

/// Why a simulation cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("pod {0} has no IPv4 address (status.podIP)")]
    NoAddress(String),
    #[error("no pod {0} (pods are named namespace/name)")]
    UnknownPod(String),
    #[error("{0}")]
    BadProbe(String),
}

/// A compiled cluster ready to be probed.
pub struct Simulator {
    compiled: Compiled,
    pods: Vec<String>,
    ips: Vec<u32>,
}

impl Simulator {
    /// Compiles `world`, treating every pod as local (every pod's policy is
    /// enforced). Every pod needs an IPv4 address.
    pub fn new(world: &World) -> Result<Simulator, SimError> {
        let mut w = world.clone();
        for ep in &mut w.endpoints {
            ep.local = true;
        }
        let mut ips = Vec::with_capacity(w.endpoints.len());
        for ep in &w.endpoints {
            match ep.ips.first() {
                Some(a) => ips.push(u32::from(*a)),
                None => return Err(SimError::NoAddress(ep.name.clone())),
            }
        }
        let compiled = Compiled::compile(&w)?;
        Ok(Simulator {
            compiled,
            pods: w.endpoints.iter().map(|e| e.name.clone()).collect(),
            ips,
        })
    }

    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// Pod names in order (rows and columns of the matrices).
    pub fn pods(&self) -> &[String] {
        &self.pods
    }

    /// The address simulated packets use for pod `i`.
    pub fn address(&self, i: usize) -> Option<Ipv4Addr> {
        self.ips.get(i).map(|&a| Ipv4Addr::from(a))
    }

    fn packet(&self, src: usize, dst: usize, pp: &ProtoPort) -> Packet {
        let icmp = pp.proto == 1;
        Packet {
            src: self.ips[src],
            dst: self.ips[dst],
            proto: pp.proto,
            sport: if icmp { 0 } else { SIM_SOURCE_PORT },
            dport: pp.port,
        }
    }

    /// The (egress of src, ingress of dst) decisions for one packet.
    pub fn decide(&self, src: usize, dst: usize, pp: &ProtoPort) -> (Decision, Decision) {
        let pkt = self.packet(src, dst, pp);
        (
            self.compiled.evaluate(src, Direction::Egress, &pkt),
            self.compiled.evaluate(dst, Direction::Ingress, &pkt),
        )
    }

    pub fn matrices(&self, pp: &ProtoPort) -> Matrices {
        let n = self.pods.len();
        let mut m = Matrices {
            ingress: Vec::with_capacity(n),
            egress: Vec::with_capacity(n),
            combined: Vec::with_capacity(n),
        };
        let c = |a: bool| if a { 'A' } else { 'B' };
        for src in 0..n {
            let (mut i, mut e, mut b) = (String::new(), String::new(), String::new());
            for dst in 0..n {
                let (out, inn) = self.decide(src, dst, pp);
                e.push(c(out.allow));
                i.push(c(inn.allow));
                b.push(c(out.allow && inn.allow));
            }
            m.ingress.push(i);
            m.egress.push(e);
            m.combined.push(b);
        }
        m
    }

    pub fn run(&self, probes: &[ProtoPort]) -> Simulation {
        Simulation {
            pods: self.pods.clone(),
            matrices: probes
                .iter()
                .map(|pp| (pp.label().to_owned(), self.matrices(pp)))
                .collect(),
            probes: probes.iter().map(|pp| pp.label().to_owned()).collect(),
        }
    }

    fn verdict(&self, ep: usize, dir: Direction, d: Decision) -> Verdict {
        Verdict {
            allowed: d.allow,
            reason: self.compiled.describe(d.reason),
            action: self
                .compiled
                .rule_action(d.reason)
                .map(|a| a.as_str().to_owned()),
            logged: d.logged.map(|r: Reason| self.compiled.describe(r)),
            policies: self.compiled.applied_policies(ep, dir),
        }
    }

    /// Which policy and rule (or which default) decided each direction for
    /// a packet from pod `src` to pod `dst`.
    pub fn explain(&self, src: &str, dst: &str, pp: &ProtoPort) -> Result<Explanation, SimError> {
        let find = |name: &str| {
            self.compiled
                .endpoint_index(name)
                .ok_or_else(|| SimError::UnknownPod(name.to_owned()))
        };
        let (s, d) = (find(src)?, find(dst)?);
        let (out, inn) = self.decide(s, d, pp);
        Ok(Explanation {
            src: src.to_owned(),
            dst: dst.to_owned(),
            probe: pp.label().to_owned(),
            egress: self.verdict(s, Direction::Egress, out),
            ingress: self.verdict(d, Direction::Ingress, inn),
            allowed: out.allow && inn.allow,
        })
    }
}

/// Compiles `world` and computes the matrices of every probe (`TCP/80`
/// when none is given).
pub fn simulate<S: AsRef<str>>(world: &World, probes: &[S]) -> Result<Simulation, SimError> {
    let probes = parse_probes(probes)?;
    Ok(Simulator::new(world)?.run(&probes))
}

/// Parses probe labels, defaulting to `TCP/80` when there are none.
pub fn parse_probes<S: AsRef<str>>(list: &[S]) -> Result<Vec<ProtoPort>, SimError> {
    if list.is_empty() {
        return Ok(vec![ProtoPort::tcp(80)]);
    }
    list.iter()
        .map(|s| s.as_ref().parse().map_err(SimError::BadProbe))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse() {
        let p: ProtoPort = "tcp/80".parse().unwrap();
        assert_eq!((p.proto, p.port, p.label()), (6, 80, "TCP/80"));
        let p: ProtoPort = "SCTP/81".parse().unwrap();
        assert_eq!((p.proto, p.port), (132, 81));
        let p: ProtoPort = "ICMP".parse().unwrap();
        assert_eq!((p.proto, p.port, p.label()), (1, 8 << 8, "ICMP"));
        let p: ProtoPort = "ICMP/3/4".parse().unwrap();
        assert_eq!(p.port, 3 << 8 | 4);
        for bad in [
            "TCP",
            "TCP/x",
            "TCP/70000",
            "GRE/1",
            "ICMP/300",
            "UDP/1/2",
            "",
        ] {
            assert!(bad.parse::<ProtoPort>().is_err(), "{bad}");
        }
        assert_eq!(parse_probes::<&str>(&[]).unwrap(), vec![ProtoPort::tcp(80)]);
    }
}

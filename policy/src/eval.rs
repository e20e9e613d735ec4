//! The evaluator: one packet against one endpoint's program for one
//! direction. The dataplane runs it on a flow's first packet and the
//! simulator runs it for every cell of its matrices, so there is exactly one
//! implementation of Calico's semantics:
//!
//! - tiers in order; within a tier, policies in order and their rules in
//!   order; the first matching `Allow` or `Deny` decides;
//! - `Log` remembers the first rule that logged and goes on;
//! - `Pass` leaves the tier and continues with the next one;
//! - a tier whose policies decided nothing denies (unless its
//!   `defaultAction` is `Pass`);
//! - past the last tier the namespace profile allows;
//! - an endpoint no policy of the direction applies to is allowed.
//!
//! It allocates nothing: programs, rules and sets are slices, and set
//! membership is a binary search.

use crate::compile::{port_key, Compiled, CompiledEntity, CompiledRule};
use crate::model::IcmpMatch;
use crate::{Decision, Direction, Packet, Reason};
use api::policy::Action;

/// Protocols whose packets carry ports.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136)
}

fn icmp_matches(m: &IcmpMatch, pkt: &Packet) -> bool {
    let ty = (pkt.dport >> 8) as u8;
    let code = (pkt.dport & 0xff) as u8;
    m.icmp_type.is_none_or(|t| t == ty) && m.code.is_none_or(|c| c == code)
}

impl Compiled {
    /// The verdict of `ep`'s `dir` program on `pkt`.
    ///
    /// Endpoints that are not local have no program and are allowed
    /// ([`Reason::Unselected`]): their own node enforces their policy.
    pub fn evaluate(&self, ep: usize, dir: Direction, pkt: &Packet) -> Decision {
        self.evaluate_noting(ep, dir, pkt, &mut |_| {})
    }

    /// [`Compiled::evaluate`], telling `entered` the name of each tier as
    /// evaluation enters it: the last one named before a
    /// [`Reason::DefaultDeny`] is the tier that denied (for traces).
    #[inline(always)]
    pub fn evaluate_noting(
        &self,
        ep: usize,
        dir: Direction,
        pkt: &Packet,
        entered: &mut impl FnMut(&str),
    ) -> Decision {
        let mut logged = None;
        let Some(prog) = self.program(ep, dir) else {
            return Decision {
                allow: true,
                reason: Reason::Unselected,
                logged,
            };
        };
        if prog.tiers.is_empty() {
            return Decision {
                allow: true,
                reason: Reason::Unselected,
                logged,
            };
        }
        'tiers: for tier in &prog.tiers {
            if let Some(first) = tier.policies.first() {
                if let Some(pol) = self.policies.get(*first as usize) {
                    entered(&pol.tier);
                }
            }
            for &p in &tier.policies {
                let Some(pol) = self.policies.get(p as usize) else {
                    continue;
                };
                let Some(rules) = self.rules.get(pol.rules.clone()) else {
                    continue;
                };
                for (i, rule) in rules.iter().enumerate() {
                    if !self.rule_matches(rule, pkt) {
                        continue;
                    }
                    let reason = Reason::Rule {
                        policy: p,
                        rule: i as u32,
                    };
                    match rule.action {
                        Action::Allow => {
                            return Decision {
                                allow: true,
                                reason,
                                logged,
                            }
                        }
                        Action::Deny => {
                            return Decision {
                                allow: false,
                                reason,
                                logged,
                            }
                        }
                        Action::Log => {
                            logged.get_or_insert(reason);
                        }
                        Action::Pass => continue 'tiers,
                    }
                }
            }
            if !tier.end_pass {
                return Decision {
                    allow: false,
                    reason: Reason::DefaultDeny,
                    logged,
                };
            }
        }
        Decision {
            allow: true,
            reason: Reason::PassedToProfile,
            logged,
        }
    }

    fn rule_matches(&self, r: &CompiledRule, pkt: &Packet) -> bool {
        if r.never {
            return false;
        }
        if r.protocol.is_some_and(|p| p != pkt.proto) {
            return false;
        }
        if r.not_protocol == Some(pkt.proto) {
            return false;
        }
        // icmp/notICMP only exist with an ICMP protocol, which the check
        // above has already required of the packet.
        if r.icmp.is_some_and(|m| !icmp_matches(&m, pkt)) {
            return false;
        }
        if r.not_icmp.is_some_and(|m| icmp_matches(&m, pkt)) {
            return false;
        }
        let ported = has_ports(pkt.proto);
        self.entity_matches(&r.src, pkt.src, pkt.proto, pkt.sport, ported)
            && self.entity_matches(&r.dst, pkt.dst, pkt.proto, pkt.dport, ported)
    }

    fn entity_matches(
        &self,
        e: &CompiledEntity,
        ip: u32,
        proto: u8,
        port: u16,
        ported: bool,
    ) -> bool {
        if !e.nets.is_empty() && !e.nets.iter().any(|&(a, m)| ip & m == a) {
            return false;
        }
        if e.not_nets.iter().any(|&(a, m)| ip & m == a) {
            return false;
        }
        if e.ip_set.is_some_and(|s| !self.in_ip_set(s, ip)) {
            return false;
        }
        if e.not_ip_set.is_some_and(|s| self.in_ip_set(s, ip)) {
            return false;
        }
        if !e.ports.is_empty() || !e.named_ports.is_empty() {
            if !ported {
                return false;
            }
            let hit = e.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
                || e.named_ports
                    .iter()
                    .any(|&s| self.in_port_set(s, ip, proto, port));
            if !hit {
                return false;
            }
        }
        if ported
            && (e
                .not_ports
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&port))
                || e.not_named_ports
                    .iter()
                    .any(|&s| self.in_port_set(s, ip, proto, port)))
        {
            return false;
        }
        true
    }

    fn in_ip_set(&self, set: u32, ip: u32) -> bool {
        self.ip_sets
            .get(set as usize)
            .is_some_and(|s| s.binary_search(&ip).is_ok())
    }

    fn in_port_set(&self, set: u32, ip: u32, proto: u8, port: u16) -> bool {
        self.port_sets
            .get(set as usize)
            .is_some_and(|s| s.binary_search(&port_key(ip, proto, port)).is_ok())
    }
}

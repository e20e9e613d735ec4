//! Calico's policy semantics, case by case, through the public API: YAML in,
//! `Compiled::evaluate` out.

use policy::load::load_yaml;
use policy::{Compiled, Decision, Direction, Packet, Reason, World};
use std::net::Ipv4Addr;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const SCTP: u8 = 132;

/// Namespaces x (team=a) and y (team=b); pods x/a, x/b, y/a, y/b with
/// label app=<name>, addresses 10.0.0.1-4; x/a and y/a serve `http` on
/// TCP 8080; x/b runs as service account `robot`.
const CLUSTER: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: b}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: x, labels: {app: a}}
  spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
  status: {podIP: 10.0.0.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: x, labels: {app: b}}
  spec: {serviceAccountName: robot}
  status: {podIP: 10.0.0.2}
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: y, labels: {app: a}}
  spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
  status: {podIP: 10.0.0.3}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: y, labels: {app: b}}
  status: {podIP: 10.0.0.4}
";

struct Net {
    c: Compiled,
}

fn ip(name: &str) -> u32 {
    let last = match name {
        "x/a" => 1,
        "x/b" => 2,
        "y/a" => 3,
        "y/b" => 4,
        other => panic!("no pod {other}"),
    };
    u32::from(Ipv4Addr::new(10, 0, 0, last))
}

fn build(policies: &str) -> Net {
    let text = format!("{CLUSTER}\n---\n{policies}");
    let world = load_yaml(&text).unwrap_or_else(|e| panic!("{e}"));
    Net {
        c: Compiled::compile(&world).unwrap_or_else(|e| panic!("{e}")),
    }
}

fn compile_err(policies: &str) -> String {
    let text = format!("{CLUSTER}\n---\n{policies}");
    let world = load_yaml(&text).unwrap_or_else(|e| panic!("{e}"));
    match Compiled::compile(&world) {
        Ok(_) => panic!("compiled"),
        Err(e) => e.to_string(),
    }
}

impl Net {
    fn idx(&self, name: &str) -> usize {
        self.c.endpoint_index(name).expect("endpoint")
    }

    fn pkt(src: &str, dst: &str, proto: u8, dport: u16) -> Packet {
        Packet {
            src: ip(src),
            dst: ip(dst),
            proto,
            sport: 40000,
            dport,
        }
    }

    /// The destination's ingress verdict.
    fn ingress(&self, src: &str, dst: &str, proto: u8, dport: u16) -> Decision {
        self.c.evaluate(
            self.idx(dst),
            Direction::Ingress,
            &Self::pkt(src, dst, proto, dport),
        )
    }

    /// The source's egress verdict.
    fn egress(&self, src: &str, dst: &str, proto: u8, dport: u16) -> Decision {
        self.c.evaluate(
            self.idx(src),
            Direction::Egress,
            &Self::pkt(src, dst, proto, dport),
        )
    }

    fn why(&self, d: Decision) -> String {
        self.c.describe(d.reason)
    }
}

#[test]
fn unselected_endpoints_are_allowed_and_default_deny_is_per_direction() {
    let n = build(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-in, namespace: x}
spec: {podSelector: {matchLabels: {app: a}}}
",
    );
    let d = n.ingress("y/b", "x/a", TCP, 80);
    assert!(!d.allow);
    assert_eq!(d.reason, Reason::DefaultDeny);
    assert_eq!(
        n.why(d),
        "default deny: a policy applies and no rule allowed it"
    );
    // Only Ingress by default: x/a's egress is unselected.
    let d = n.egress("x/a", "y/b", TCP, 80);
    assert!(d.allow);
    assert_eq!(d.reason, Reason::Unselected);
    // x/b is not selected at all.
    assert_eq!(n.ingress("y/b", "x/b", TCP, 80).reason, Reason::Unselected);
    assert!(n.c.has_policy(n.idx("x/a"), Direction::Ingress));
    assert!(!n.c.has_policy(n.idx("x/a"), Direction::Egress));
    assert!(!n.c.has_policy(n.idx("x/b"), Direction::Ingress));
}

#[test]
fn k8s_peers_ports_and_protocol_defaults() {
    let n = build(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from: [{podSelector: {}}]
    ports: [{port: 80}]
  - from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: b}}}]
  - from: [{namespaceSelector: {}}]
    ports: [{protocol: UDP, port: 5000, endPort: 5010}]
",
    );
    // Empty podSelector: pods of the policy's own namespace only.
    let d = n.ingress("x/b", "x/a", TCP, 80);
    assert!(d.allow);
    assert_eq!(n.why(d), "x/knp.default.web ingress rule 0");
    assert!(!n.ingress("y/a", "x/a", TCP, 80).allow);
    // A port without a protocol is TCP only.
    assert!(!n.ingress("x/b", "x/a", UDP, 80).allow);
    // Both selectors in one peer: app=b pods of team=b namespaces, any
    // protocol and port (no ports listed), ICMP included.
    assert!(n.ingress("y/b", "x/a", SCTP, 9).allow);
    assert!(n.ingress("y/b", "x/a", ICMP, 8 << 8).allow);
    assert!(!n.ingress("x/b", "x/a", SCTP, 9).allow);
    // Empty namespaceSelector: every namespace; endPort range inclusive.
    for (port, ok) in [(4999, false), (5000, true), (5010, true), (5011, false)] {
        assert_eq!(n.ingress("y/a", "x/a", UDP, port).allow, ok, "UDP/{port}");
    }
}

#[test]
fn ip_blocks_apply_to_pods_and_except_carves_out() {
    let n = build(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cidr, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.3/32]}}]
",
    );
    assert!(n.egress("x/a", "x/b", TCP, 1).allow);
    assert!(n.egress("x/a", "y/b", UDP, 1).allow);
    assert!(!n.egress("x/a", "y/a", TCP, 1).allow, "excepted");
    let outside = Packet {
        src: ip("x/a"),
        dst: u32::from(Ipv4Addr::new(8, 8, 8, 8)),
        proto: UDP,
        sport: 1,
        dport: 53,
    };
    assert!(
        !n.c.evaluate(n.idx("x/a"), Direction::Egress, &outside)
            .allow
    );
    // Egress only: ingress unselected.
    assert_eq!(n.ingress("y/a", "x/a", TCP, 1).reason, Reason::Unselected);
}

#[test]
fn named_ports_resolve_per_destination_pod() {
    let n = build(
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: in-http, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: http}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out-http, namespace: y}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {}}], ports: [{port: http, protocol: TCP}]}]
",
    );
    // Ingress: the endpoint's own named port.
    assert!(n.ingress("y/b", "x/a", TCP, 8080).allow);
    assert!(!n.ingress("y/b", "x/a", TCP, 80).allow);
    assert!(
        !n.ingress("y/b", "x/a", UDP, 8080).allow,
        "http is a TCP port"
    );
    // x/b has no port called http.
    assert!(!n.ingress("y/b", "x/b", TCP, 8080).allow);
    // Egress: the destination pod's named port.
    assert!(n.egress("y/b", "x/a", TCP, 8080).allow);
    assert!(n.egress("y/b", "y/a", TCP, 8080).allow);
    assert!(!n.egress("y/b", "x/b", TCP, 8080).allow);
}

#[test]
fn order_ties_break_by_name_and_unordered_goes_last() {
    let n = build(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: b-allow}
spec:
  order: 10
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a-deny}
spec:
  order: 10
  selector: app == 'a'
  ingress: [{action: Deny, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: 0-unordered}
spec:
  ingress: [{action: Deny}]
",
    );
    let d = n.ingress("x/b", "x/a", TCP, 1);
    assert!(!d.allow);
    assert_eq!(n.why(d), "a-deny ingress rule 0");
    let d = n.ingress("x/b", "x/a", UDP, 1);
    assert!(d.allow, "b-allow (order 10) before the unordered deny");
    assert_eq!(n.why(d), "b-allow ingress rule 0");
    assert_eq!(
        n.c.applied_policies(n.idx("x/a"), Direction::Ingress),
        [
            "default: a-deny",
            "default: b-allow",
            "default: 0-unordered"
        ]
    );
}

#[test]
fn log_records_and_continues() {
    let n = build(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: audit, namespace: x}
spec:
  ingress:
  - action: Log
    protocol: TCP
  - action: Log
  - action: Allow
    protocol: TCP
",
    );
    let d = n.ingress("y/a", "x/a", TCP, 1);
    assert!(d.allow);
    assert_eq!(n.why(d), "x/audit ingress rule 2");
    let logged = d.logged.expect("logged");
    assert_eq!(
        n.c.describe(logged),
        "x/audit ingress rule 0",
        "the first Log rule"
    );
    let d = n.ingress("y/a", "x/a", UDP, 1);
    assert!(!d.allow);
    assert_eq!(d.reason, Reason::DefaultDeny);
    assert_eq!(
        d.logged.map(|r| n.c.describe(r)).as_deref(),
        Some("x/audit ingress rule 1")
    );
}

const TIERS: &str = "
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.gate}
spec:
  tier: security
  order: 1
  ingress:
  - action: Deny
    source: {nets: [10.0.0.4/32]}
  - action: Pass
    protocol: TCP
  - action: Allow
    protocol: UDP
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.nothing}
spec:
  tier: platform
  selector: app == 'a'
  ingress:
  - action: Allow
    protocol: SCTP
";

#[test]
fn pass_goes_to_the_next_tier_and_tiers_default_deny() {
    let n = build(&format!(
        "{TIERS}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: only-80, namespace: x}}
spec:
  podSelector: {{}}
  ingress: [{{ports: [{{port: 80}}]}}]
"
    ));
    // security tier first: y/b denied whatever the later tiers say.
    let d = n.ingress("y/b", "x/a", TCP, 80);
    assert!(!d.allow);
    assert_eq!(n.why(d), "security.gate ingress rule 0 (tier security)");
    // TCP passes to the platform tier (nothing for TCP there, Pass by
    // default) and then to the default tier, where the K8s policy decides.
    let d = n.ingress("y/a", "x/a", TCP, 80);
    assert!(d.allow);
    assert_eq!(n.why(d), "x/knp.default.only-80 ingress rule 0");
    let d = n.ingress("y/a", "x/a", TCP, 81);
    assert!(!d.allow);
    assert_eq!(d.reason, Reason::DefaultDeny);
    // UDP is allowed in the first tier.
    assert!(n.ingress("y/a", "x/a", UDP, 81).allow);
    // ... and the tier that denied is the last one entered: default
    let tiers = |src: &str, proto: u8, dport: u16| {
        let mut entered = Vec::new();
        let d = n.c.evaluate_noting(
            n.idx("x/a"),
            Direction::Ingress,
            &Net::pkt(src, "x/a", proto, dport),
            &mut |t: &str| entered.push(t.to_owned()),
        );
        (d, entered)
    };
    let (d, entered) = tiers("y/a", TCP, 81);
    assert_eq!(d, n.ingress("y/a", "x/a", TCP, 81), "the same verdict");
    assert_eq!(entered, ["security", "platform", "default"]);
    // ICMP: nothing in security decides and its default is Deny.
    let d = n.ingress("y/a", "x/a", ICMP, 0);
    assert!(!d.allow);
    assert_eq!(d.reason, Reason::DefaultDeny);
    assert_eq!(tiers("y/a", ICMP, 0).1, ["security"], "denied in security");
    // y/a: TCP passes security, platform passes by default, and no policy of
    // the default tier selects y/a: the profile allows.
    let d = n.ingress("x/b", "y/a", TCP, 1);
    assert!(d.allow);
    assert_eq!(d.reason, Reason::PassedToProfile);
    assert_eq!(
        n.c.applied_policies(n.idx("y/a"), Direction::Ingress),
        ["security: security.gate", "platform: platform.nothing"]
    );
}

#[test]
fn negations() {
    let n = build(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: neg}
spec:
  selector: app == 'a'
  ingress:
  - action: Allow
    protocol: TCP
    source: {nets: [10.0.0.0/24], notNets: [10.0.0.2/32]}
    destination: {notPorts: [22, '1000:2000']}
  - action: Allow
    protocol: UDP
    source: {notSelector: app == 'b'}
  - action: Allow
    notProtocol: TCP
    protocol: SCTP
    destination: {ports: [http]}
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
    notICMP: {type: 8, code: 1}
",
    );
    assert!(n.ingress("y/a", "x/a", TCP, 80).allow);
    assert!(!n.ingress("x/b", "x/a", TCP, 80).allow, "notNets");
    assert!(!n.ingress("y/a", "x/a", TCP, 22).allow, "notPorts");
    assert!(!n.ingress("y/a", "x/a", TCP, 1500).allow, "notPorts range");
    assert!(n.ingress("y/a", "x/a", TCP, 2001).allow);
    // notSelector is not scoped: app=b in any namespace is excluded.
    assert!(n.ingress("y/a", "x/a", UDP, 1).allow);
    assert!(!n.ingress("y/b", "x/a", UDP, 1).allow);
    assert!(!n.ingress("x/b", "x/a", UDP, 1).allow);
    // http is a TCP port: no SCTP named port matches.
    assert!(!n.ingress("y/a", "x/a", SCTP, 8080).allow);
    assert!(n.ingress("y/a", "x/a", ICMP, 8 << 8).allow);
    assert!(!n.ingress("y/a", "x/a", ICMP, 8 << 8 | 1).allow, "notICMP");
    assert!(
        !n.ingress("y/a", "x/a", ICMP, 0).allow,
        "echo reply is type 0"
    );
}

#[test]
fn namespaced_and_global_selection() {
    let n = build(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: ns-all, namespace: x}
spec:
  selector: all()
  ingress:
  - action: Allow
    source: {selector: app == 'a'}
  - action: Allow
    protocol: UDP
    source: {selector: app == 'b', namespaceSelector: team == 'b'}
  - action: Allow
    protocol: SCTP
    source: {serviceAccounts: {names: [robot]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: team-b}
spec:
  namespaceSelector: team == 'b'
  types: [Egress]
",
    );
    // The namespaced policy selects x's pods only.
    assert!(n.c.has_policy(n.idx("x/a"), Direction::Ingress));
    assert!(n.c.has_policy(n.idx("x/b"), Direction::Ingress));
    assert!(!n.c.has_policy(n.idx("y/a"), Direction::Ingress));
    // A rule's selector in a namespaced policy means its namespace...
    assert!(n.ingress("x/a", "x/b", TCP, 1).allow);
    assert!(!n.ingress("y/a", "x/b", TCP, 1).allow);
    // ... unless a namespaceSelector says which.
    assert!(n.ingress("y/b", "x/a", UDP, 1).allow);
    assert!(!n.ingress("x/b", "x/a", UDP, 1).allow);
    // Service account names.
    assert!(n.ingress("x/b", "x/a", SCTP, 1).allow);
    assert!(!n.ingress("y/a", "x/b", SCTP, 1).allow);
    // The global policy selects pods by their namespace's labels; with no
    // rules and Egress only, it denies their egress.
    assert!(!n.egress("y/a", "x/a", TCP, 1).allow);
    assert!(n.c.has_policy(n.idx("y/b"), Direction::Egress));
    assert!(!n.c.has_policy(n.idx("x/a"), Direction::Egress));
}

#[test]
fn calico_types_default_from_rules() {
    let n = build(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: egress-only, namespace: x}
spec:
  selector: app == 'a'
  egress: [{action: Allow, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: no-rules, namespace: x}
spec:
  selector: app == 'b'
",
    );
    // Only egress rules: Egress only.
    assert!(n.c.has_policy(n.idx("x/a"), Direction::Egress));
    assert!(!n.c.has_policy(n.idx("x/a"), Direction::Ingress));
    assert!(n.egress("x/a", "y/a", UDP, 1).allow);
    assert!(!n.egress("x/a", "y/a", TCP, 1).allow);
    // No rules at all: Ingress, deny.
    assert!(n.c.has_policy(n.idx("x/b"), Direction::Ingress));
    assert!(!n.c.has_policy(n.idx("x/b"), Direction::Egress));
}

#[test]
fn rules_that_cannot_match_ipv4() {
    let n = build(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: v6}
spec:
  ingress:
  - action: Allow
    ipVersion: 6
  - action: Allow
    source: {nets: ['fd00::/8']}
  - action: Allow
    protocol: ICMPv6
  - action: Allow
    protocol: UDP
    source: {nets: ['fd00::/8', 10.0.0.0/8]}
",
    );
    let d = n.ingress("y/a", "x/a", TCP, 1);
    assert!(!d.allow);
    assert_eq!(d.reason, Reason::DefaultDeny);
    // Mixed nets: the IPv4 ones count.
    assert!(n.ingress("y/a", "x/a", UDP, 1).allow);
}

#[test]
fn remote_endpoints_feed_sets_but_get_no_program() {
    let text = format!(
        "{CLUSTER}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: from-b, namespace: x}}
spec:
  podSelector: {{}}
  ingress: [{{from: [{{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: b}}}}}}]}}]
"
    );
    let mut world: World = load_yaml(&text).expect("yaml");
    for ep in &mut world.endpoints {
        ep.local = ep.namespace == "x";
    }
    let c = Compiled::compile(&world).expect("compile");
    let stats = c.stats();
    assert_eq!(stats.local_endpoints, 2);
    let ya = c.endpoint_index("y/a").expect("y/a");
    let xa = c.endpoint_index("x/a").expect("x/a");
    assert!(!c.has_policy(ya, Direction::Ingress));
    let p = |src: &str, dst: &str| Packet {
        src: ip(src),
        dst: ip(dst),
        proto: TCP,
        sport: 1,
        dport: 2,
    };
    // y/b is remote, but its address is in the set.
    assert!(c.evaluate(xa, Direction::Ingress, &p("y/b", "x/a")).allow);
    assert!(!c.evaluate(xa, Direction::Ingress, &p("y/a", "x/a")).allow);
    // Out-of-range endpoint: no program.
    assert_eq!(
        c.evaluate(99, Direction::Ingress, &p("y/a", "x/a")).reason,
        Reason::Unselected
    );
    assert_eq!(c.endpoint_index("nope"), None);
    // Both x pods run the same policy: one shared program beside the empty one.
    assert_eq!(stats.programs, 2);
}

#[test]
fn compile_errors_name_the_object() {
    let e = compile_err(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec: {tier: nowhere}
",
    );
    assert!(
        e.contains("GlobalNetworkPolicy g") && e.contains("tier 'nowhere' does not exist"),
        "{e}"
    );
    let e = compile_err(
        "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: knp.default.p, namespace: x}
spec: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec: {podSelector: {}}
",
    );
    assert!(e.contains("same name"), "{e}");
    // Policies arriving in the desired-state document skip the loader: the
    // compiler checks them too.
    let mut world = load_yaml(CLUSTER).expect("yaml");
    world.policies.push(
        serde_json::from_str(
            r#"{"global":{"metadata":{"name":"g"},"spec":{"selector":"app ==","ingress":[{"action":"Allow"}]}}}"#,
        )
        .expect("policy JSON"),
    );
    let e = Compiled::compile(&world)
        .expect_err("bad selector")
        .to_string();
    assert!(
        e.starts_with("GlobalNetworkPolicy g: spec.selector: invalid selector"),
        "{e}"
    );
}

#[test]
fn world_round_trips_as_json() {
    let text = format!("{CLUSTER}\n---\n{TIERS}");
    let world = load_yaml(&text).expect("yaml");
    let json = serde_json::to_string(&world).expect("to JSON");
    let back: World = serde_json::from_str(&json).expect("from JSON");
    assert_eq!(back, world);
    assert!(
        json.contains(r#""tier":{"metadata":{"name":"security"}"#),
        "{json}"
    );
}

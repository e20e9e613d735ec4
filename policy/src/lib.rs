//! Network policy as Calico enforces it.
//!
//! - [`selector`]: Calico's label selector language (parse, match, canonical
//!   form, unique id).
//! - [`compile`]: the desired state (namespaces, endpoints, Kubernetes and
//!   Calico policies) compiled into per-endpoint ingress and egress programs
//!   over IP sets.
//! - [`eval`]: running a program against one packet's facts. The dataplane
//!   runs it on a flow's first packet; the simulator runs the very same code.
//! - [`simulate`]: connectivity matrices for a cluster read from YAML.
//! - [`model`]: policies lowered to Calico's backend form (Kubernetes
//!   NetworkPolicies translated as Calico translates them), which the
//!   compiler works from.
//! - [`load`]: namespaces, pods, policies and tiers read from YAML, with the
//!   document and line of whatever is refused.

pub mod compile;
pub mod eval;
pub mod load;
pub mod model;
pub mod selector;
pub mod simulate;

pub use compile::{Compiled, PolicyError, World};

/// What rules look at in one packet. Addresses are IPv4 in host byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Packet {
    pub src: u32,
    pub dst: u32,
    /// IP protocol number: 1 ICMP, 6 TCP, 17 UDP, 132 SCTP.
    pub proto: u8,
    /// TCP, UDP and SCTP ports. For ICMP `sport` is 0 and `dport` is
    /// `type << 8 | code`.
    pub sport: u16,
    pub dport: u16,
}

/// Which side of an endpoint a program guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Traffic to the endpoint.
    Ingress,
    /// Traffic from the endpoint.
    Egress,
}

/// What decided a verdict, for flow logs and `--explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No policy of this direction selects the endpoint: allowed.
    Unselected,
    /// Selected by some policy, and no rule allowed it: denied.
    DefaultDeny,
    /// Every tier that applies passed: the profile allows it.
    PassedToProfile,
    /// Rule `rule` (0-based, within its direction) of policy `policy`
    /// (an index into the compiled policy list).
    Rule { policy: u32, rule: u32 },
}

/// The verdict of one direction for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub reason: Reason,
    /// The first `Log` rule the packet matched on the way, if any.
    pub logged: Option<Reason>,
}

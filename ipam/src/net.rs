//! Address arithmetic shared by pools and blocks. Everything is done on `u128` so that IPv4 and IPv6
//! follow one code path and the off-by-one cases are tested once.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// Address family. Pools, blocks and requests are per family because a pod may ask for one
/// address of each, and each family has its own pools and block-size rules.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: IpNetwork) -> Family {
        Family::of(net.ip())
    }

    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

pub(crate) fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Callers guarantee `value` fits the family (it always comes from a validated pool or block).
pub(crate) fn from_u128(family: Family, value: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

pub(crate) fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    Family::of_net(a) == Family::of_net(b) && (a.contains(b.network()) || b.contains(a.network()))
}

/// A network is in canonical form when no host bit is set; blocks and pools are compared by value,
/// so a non-canonical CIDR would silently create a second name for the same range.
pub(crate) fn is_canonical(net: IpNetwork) -> bool {
    net.ip() == net.network()
}

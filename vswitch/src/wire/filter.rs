//! Which frames a capture or a trace takes: a small subset of tcpdump's
//! filter language, matched on a frame as the wire has it.

use crate::wire::eth::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HLEN};
use std::fmt;
use std::net::Ipv4Addr;

/// An IP protocol, or ARP, that a filter asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Arp,
    /// Any IPv4 packet.
    Ip,
    Ip6,
    Tcp,
    Udp,
    Icmp,
}

/// Which frames a capture takes: every term must hold. A subset of
/// tcpdump's language: `arp`, `ip`, `ip6`, `tcp`, `udp`, `icmp`,
/// `host A.B.C.D`, `port N`, joined by `and`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub proto: Option<Proto>,
    /// Source or destination address (of ARP: sender or target).
    pub host: Option<Ipv4Addr>,
    /// TCP or UDP source or destination port.
    pub port: Option<u16>,
}

/// Why a filter was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad capture filter: {}", self.0)
    }
}

impl std::error::Error for FilterError {}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut f = Filter::default();
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut i = 0;
        let mut expect_term = true;
        while i < words.len() {
            let w = words[i];
            if !expect_term {
                if w != "and" && w != "&&" {
                    return Err(FilterError(format!(
                        "expected 'and' before '{w}' (only 'and' joins terms)"
                    )));
                }
                expect_term = true;
                i += 1;
                continue;
            }
            let proto = match w {
                "arp" => Some(Proto::Arp),
                "ip" => Some(Proto::Ip),
                "ip6" => Some(Proto::Ip6),
                "tcp" => Some(Proto::Tcp),
                "udp" => Some(Proto::Udp),
                "icmp" => Some(Proto::Icmp),
                _ => None,
            };
            if let Some(p) = proto {
                set(&mut f.proto, p, w)?;
                i += 1;
            } else {
                let arg = words
                    .get(i + 1)
                    .ok_or_else(|| FilterError(format!("'{w}' needs a value")))?;
                match w {
                    "host" => {
                        let a = arg
                            .parse()
                            .map_err(|_| FilterError(format!("'{arg}' is not an IPv4 address")))?;
                        set(&mut f.host, a, w)?;
                    }
                    "port" => {
                        let p = arg
                            .parse()
                            .map_err(|_| FilterError(format!("'{arg}' is not a port number")))?;
                        set(&mut f.port, p, w)?;
                    }
                    _ => {
                        return Err(FilterError(format!(
                            "unknown term '{w}' (arp, ip, ip6, tcp, udp, icmp, host ADDR, port N)"
                        )))
                    }
                }
                i += 2;
            }
            expect_term = false;
        }
        if expect_term && !words.is_empty() {
            return Err(FilterError("ends with 'and'".into()));
        }
        match (f.proto, f.port) {
            (Some(Proto::Arp | Proto::Icmp | Proto::Ip6), Some(_)) => {
                Err(FilterError("'port' needs tcp or udp".into()))
            }
            (Some(Proto::Ip6), _) if f.host.is_some() => {
                Err(FilterError("'host' takes IPv4 addresses only".into()))
            }
            _ => Ok(f),
        }
    }

    /// Whether a frame (from its Ethernet header on) is one the filter takes.
    pub fn matches(&self, frame: &[u8]) -> bool {
        if *self == Filter::default() {
            return true;
        }
        let Some(mut ethertype) = be16(frame, 12) else {
            return false;
        };
        let mut l3 = ETH_HLEN;
        if ethertype == 0x8100 {
            let Some(inner) = be16(frame, 16) else {
                return false;
            };
            ethertype = inner;
            l3 = ETH_HLEN + 4;
        }
        let Some(ip) = frame.get(l3..) else {
            return false;
        };
        match ethertype {
            ETHERTYPE_ARP => self.arp(ip),
            ETHERTYPE_IPV4 => self.ipv4(ip),
            0x86dd => self.proto == Some(Proto::Ip6) && self.host.is_none(),
            _ => false,
        }
    }

    fn arp(&self, arp: &[u8]) -> bool {
        if !matches!(self.proto, None | Some(Proto::Arp)) || self.port.is_some() {
            return false;
        }
        match self.host {
            None => true,
            Some(h) => {
                let (Some(spa), Some(tpa)) = (ipv4(arp, 14), ipv4(arp, 24)) else {
                    return false;
                };
                spa == h || tpa == h
            }
        }
    }

    fn ipv4(&self, ip: &[u8]) -> bool {
        let (Some(&vihl), Some(&proto), Some(src), Some(dst)) =
            (ip.first(), ip.get(9), ipv4(ip, 12), ipv4(ip, 16))
        else {
            return false;
        };
        let want = match self.proto {
            None | Some(Proto::Ip) => true,
            Some(Proto::Tcp) => proto == 6,
            Some(Proto::Udp) => proto == 17,
            Some(Proto::Icmp) => proto == 1,
            Some(Proto::Arp | Proto::Ip6) => false,
        };
        if !want || self.host.is_some_and(|h| h != src && h != dst) {
            return false;
        }
        let Some(p) = self.port else { return true };
        let later_fragment = be16(ip, 6).is_some_and(|f| f & 0x1fff != 0);
        if (proto != 6 && proto != 17) || later_fragment {
            return false;
        }
        let l4 = usize::from(vihl & 0x0f) * 4;
        match (be16(ip, l4), be16(ip, l4 + 2)) {
            (Some(s), Some(d)) => s == p || d == p,
            _ => false,
        }
    }
}

fn set<T>(slot: &mut Option<T>, v: T, word: &str) -> Result<(), FilterError> {
    if slot.is_some() {
        return Err(FilterError(format!(
            "'{word}' given twice (only 'and' of different terms)"
        )));
    }
    *slot = Some(v);
    Ok(())
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn ipv4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let s = b.get(at..at + 4)?;
    Some(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
}

/// A bare TCP frame, for the tests of what filters take.
#[cfg(test)]
pub(crate) fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[14 + 9] = 6;
    f[14 + 12..14 + 16].copy_from_slice(&src);
    f[14 + 16..14 + 20].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_refuse() {
        let f = Filter::parse("tcp and host 10.0.0.1 and port 80").expect("parses");
        assert_eq!(f.proto, Some(Proto::Tcp));
        assert_eq!(f.host, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(f.port, Some(80));
        assert_eq!(Filter::parse("").expect("empty"), Filter::default());
        for bad in [
            "tcp or udp",
            "tcp and",
            "host",
            "host 10.0.0",
            "port x",
            "tcp and udp",
            "icmp and port 1",
            "not tcp",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_match_what_they_name() {
        let f = tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80);
        let yes = [
            "",
            "tcp",
            "ip",
            "host 10.0.0.2",
            "port 80",
            "tcp and port 40000",
        ];
        for t in yes {
            assert!(Filter::parse(t).expect(t).matches(&f), "{t}");
        }
        for t in ["udp", "icmp", "arp", "ip6", "host 10.0.0.3", "port 81"] {
            assert!(!Filter::parse(t).expect(t).matches(&f), "{t}");
        }
        // a later fragment has no ports to match
        let mut frag = f.clone();
        frag[14 + 6] = 0x00;
        frag[14 + 7] = 0x10;
        assert!(!Filter::parse("port 80").expect("port").matches(&frag));
        // a frame cut short matches nothing that needs what is missing
        assert!(!Filter::parse("port 80").expect("port").matches(&f[..36]));
        assert!(Filter::default().matches(&f[..3]));
    }
}

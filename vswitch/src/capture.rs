//! Copies of the frames that pass chosen ports, for `vsctl capture`.
//!
//! A capture arms ports: each port has one byte that names the capture slot
//! it feeds (0: none). A worker reads that byte once per burst received and
//! once per batch sent; when it is 0 that is all a capture costs. An armed
//! port's frames are matched against the slot's filter on the worker and
//! the matching ones copied (cut to the snap length) into the slot's bounded
//! queue; a full queue counts the frame as dropped and the worker goes on.
//! The control thread drains the queue when the capture's reader asks.
//!
//! A frame carries the serial of the capture it was taken for, so that a
//! worker that read a port's byte just before its capture ended cannot slip
//! a frame into the next capture of the same slot.

use crate::packet::PacketBuf;
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// Captures that may run at once.
pub const SLOTS: usize = 4;
/// Frames a capture holds before its reader takes them.
pub const QUEUE: usize = 8192;
/// Bytes of a frame kept when the capture asks for whole frames (an mbuf's
/// first segment holds no more).
pub const MAX_SNAP: u32 = 65535;

/// Which way a frame went through its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Received from the port.
    In,
    /// Sent on the port.
    Out,
}

/// One copied frame.
pub struct Frame {
    /// TSC when its burst was received or its batch sent.
    pub tsc: u64,
    pub port: u16,
    pub dir: Dir,
    /// The frame's length; `data` may be shorter.
    pub len: u32,
    /// The capture it was taken for.
    pub serial: u64,
    pub data: Vec<u8>,
}

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
        let mut l3 = 14;
        if ethertype == 0x8100 {
            let Some(inner) = be16(frame, 16) else {
                return false;
            };
            ethertype = inner;
            l3 = 18;
        }
        let Some(ip) = frame.get(l3..) else {
            return false;
        };
        match ethertype {
            0x0806 => self.arp(ip),
            0x0800 => self.ipv4(ip),
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

/// What one slot's capture takes.
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub serial: u64,
    pub filter: Filter,
    /// Bytes kept of each frame.
    pub snaplen: u32,
}

/// One capture's place: its settings and its queue.
pub struct Slot {
    pub want: ArcSwap<Want>,
    pub frames: ArrayQueue<Frame>,
    /// Frames that matched but found the queue full.
    pub dropped: AtomicU64,
}

/// The captures of the switch, shared by the workers and the control thread.
pub struct Captures {
    /// Per port id: the slot it feeds, plus one (0: none).
    armed: Vec<AtomicU8>,
    pub slots: Vec<Slot>,
}

impl Captures {
    pub fn new(ports: usize) -> Captures {
        Captures {
            armed: (0..ports).map(|_| AtomicU8::new(0)).collect(),
            slots: (0..SLOTS)
                .map(|_| Slot {
                    want: ArcSwap::from_pointee(Want::default()),
                    frames: ArrayQueue::new(QUEUE),
                    dropped: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The slot port `port` feeds, plus one; 0 when it is not captured.
    #[inline(always)]
    pub fn armed(&self, port: u16) -> u8 {
        self.armed
            .get(usize::from(port))
            .map_or(0, |a| a.load(Relaxed))
    }

    /// Makes `port` feed `slot` (or nothing).
    pub fn arm(&self, port: u16, slot: Option<usize>) {
        if let Some(a) = self.armed.get(usize::from(port)) {
            a.store(slot.map_or(0, |s| (s + 1) as u8), Relaxed);
        }
    }

    /// Copies the frames of `frames` that slot `armed - 1` takes; called by
    /// a worker only when [`Captures::armed`] was not 0.
    #[cold]
    pub fn offer<P: PacketBuf>(&self, armed: u8, port: u16, dir: Dir, frames: &[P], tsc: u64) {
        let Some(slot) = self.slots.get(usize::from(armed).wrapping_sub(1)) else {
            return;
        };
        let want = slot.want.load();
        for p in frames {
            let data = p.data();
            if !want.filter.matches(data) {
                continue;
            }
            let keep = data.len().min(want.snaplen as usize);
            let frame = Frame {
                tsc,
                port,
                dir,
                len: data.len() as u32,
                serial: want.serial,
                data: data[..keep].to_vec(),
            };
            if slot.frames.push(frame).is_err() {
                slot.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Sets slot `slot` up for a new capture, emptied of an old one's frames.
    pub fn prepare(&self, slot: usize, want: Want) -> Option<&Slot> {
        let s = self.slots.get(slot)?;
        s.want.store(Arc::new(want));
        while s.frames.pop().is_some() {}
        s.dropped.store(0, Relaxed);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
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

    #[test]
    fn offers_keep_what_matches_and_count_overflow() {
        let caps = Captures::new(8);
        assert_eq!(caps.armed(3), 0);
        caps.prepare(
            1,
            Want {
                serial: 7,
                filter: Filter::parse("port 80").expect("filter"),
                snaplen: 20,
            },
        );
        caps.arm(3, Some(1));
        assert_eq!(caps.armed(3), 2);
        let burst = vec![
            tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80),
            tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 22),
        ];
        caps.offer(caps.armed(3), 3, Dir::In, &burst, 42);
        let got = caps.slots[1].frames.pop().expect("one frame kept");
        assert_eq!(
            (got.port, got.dir, got.len, got.serial),
            (3, Dir::In, 54, 7)
        );
        assert_eq!(got.data, burst[0][..20]);
        assert!(caps.slots[1].frames.pop().is_none(), "port 22 was kept");
        for _ in 0..QUEUE + 5 {
            caps.offer(2, 3, Dir::Out, &burst[..1], 43);
        }
        assert_eq!(caps.slots[1].dropped.load(Relaxed), 5);
        caps.arm(3, None);
        assert_eq!(caps.armed(3), 0);
        caps.prepare(1, Want::default());
        assert!(
            caps.slots[1].frames.pop().is_none(),
            "a new capture starts empty"
        );
        assert_eq!(caps.armed(999), 0, "ports beyond the table are never armed");
    }
}

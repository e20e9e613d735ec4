//! Checksums of test frames, independently of `vswitch::wire::checksum`:
//! inputs get right ones before they go in (when the input asks for it),
//! so that every IPv4 frame the switch sends must have right ones too. The
//! switch patches checksums incrementally (TTL, NAT, Services) and builds
//! headers of its own (tunnels, ICMP errors, RSTs): a wrong sum anywhere
//! shows up here.
//!
//! Tunnels are followed: a VXLAN frame's inner frame and an IP-in-IP
//! packet's inner packet are fixed and checked too, as the switch
//! decapsulates and encapsulates them.

const ETH_HLEN: usize = 14;
const VXLAN_PORT: u16 = 4789;
/// Tunnels inside tunnels are followed this deep.
const MAX_DEPTH: u8 = 2;

fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An IPv4 header that can be trusted: its length, IHL and total length.
struct Ip {
    ihl: usize,
    total: usize,
    proto: u8,
    fragment: bool,
}

fn ipv4(ip: &[u8]) -> Option<Ip> {
    let h = ip.get(..20)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    (h[0] >> 4 == 4 && ihl >= 20 && total >= ihl && total <= ip.len()).then_some(Ip {
        ihl,
        total,
        proto: h[9],
        // more fragments, or an offset: the transport header is elsewhere
        fragment: u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0,
    })
}

/// Where the transport checksum is and whether the pseudo-header counts,
/// for a transport segment of `len` bytes long enough to carry it.
fn l4_sum_at(proto: u8, len: usize) -> Option<(usize, bool)> {
    match proto {
        6 if len >= 20 => Some((16, true)),
        17 if len >= 8 => Some((6, true)),
        1 if len >= 4 => Some((2, false)),
        _ => None,
    }
}

fn pseudo(ip: &[u8], h: &Ip) -> u32 {
    let mut acc = sum(&ip[12..20], 0);
    acc += u32::from(h.proto);
    acc += (h.total - h.ihl) as u32;
    acc
}

fn is_vxlan(h: &Ip, l4: &[u8]) -> bool {
    h.proto == 17 && l4.len() >= 16 && u16::from_be_bytes([l4[2], l4[3]]) == VXLAN_PORT
}

/// Gives an Ethernet frame right IPv4 and transport checksums (inner ones
/// first). Frames that are not IPv4 or whose header does not hold together
/// are left as they are.
pub fn fix_frame(frame: &mut [u8]) {
    fix_eth(frame, 0)
}

fn fix_eth(frame: &mut [u8], depth: u8) {
    if frame.len() >= ETH_HLEN && frame[12..14] == [0x08, 0x00] {
        fix_ipv4(&mut frame[ETH_HLEN..], depth);
    }
}

fn fix_ipv4(ip: &mut [u8], depth: u8) {
    let Some(h) = ipv4(ip) else { return };
    if !h.fragment {
        let l4 = &mut ip[h.ihl..h.total];
        if depth < MAX_DEPTH {
            if is_vxlan(&h, l4) {
                fix_eth(&mut l4[16..], depth + 1);
            } else if h.proto == 4 {
                fix_ipv4(l4, depth + 1);
            }
        }
        if let Some((at, with_pseudo)) = l4_sum_at(h.proto, h.total - h.ihl) {
            ip[h.ihl + at..h.ihl + at + 2].fill(0);
            let start = if with_pseudo { pseudo(ip, &h) } else { 0 };
            let mut c = fold(sum(&ip[h.ihl..h.total], start));
            if h.proto == 17 && c == 0 {
                c = 0xffff;
            }
            ip[h.ihl + at..h.ihl + at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    ip[10..12].fill(0);
    let c = fold(sum(&ip[..h.ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Checks what [`fix_frame`] makes right: an error names what is wrong.
pub fn check_frame(frame: &[u8]) -> Result<(), String> {
    check_eth(frame, 0)
}

fn check_eth(frame: &[u8], depth: u8) -> Result<(), String> {
    if frame.len() >= ETH_HLEN && frame[12..14] == [0x08, 0x00] {
        check_ipv4(&frame[ETH_HLEN..], depth)
    } else {
        Ok(())
    }
}

fn check_ipv4(ip: &[u8], depth: u8) -> Result<(), String> {
    let Some(h) = ipv4(ip) else { return Ok(()) };
    if fold(sum(&ip[..h.ihl], 0)) != 0 {
        return Err(format!("IPv4 header checksum wrong (depth {depth})"));
    }
    if h.fragment {
        return Ok(());
    }
    let l4 = &ip[h.ihl..h.total];
    if let Some((at, with_pseudo)) = l4_sum_at(h.proto, l4.len()) {
        // a UDP checksum of zero is no checksum (RFC 768): VXLAN sends none
        let none = h.proto == 17 && l4[at..at + 2] == [0, 0];
        let start = if with_pseudo { pseudo(ip, &h) } else { 0 };
        if !none && fold(sum(l4, start)) != 0 {
            return Err(format!(
                "protocol {} checksum wrong (depth {depth})",
                h.proto
            ));
        }
    }
    if depth < MAX_DEPTH {
        if is_vxlan(&h, l4) {
            return check_eth(&l4[16..], depth + 1);
        }
        if h.proto == 4 {
            return check_ipv4(l4, depth + 1);
        }
    }
    Ok(())
}

/// The destination address of an IPv4 frame whose header holds together.
pub fn ipv4_dst(frame: &[u8]) -> Option<u32> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_HLEN..];
    ipv4(ip)?;
    Some(u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]))
}

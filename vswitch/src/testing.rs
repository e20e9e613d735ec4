//! For unit tests: checksums of test frames computed and checked by
//! etherparse, independently of [`crate::wire::checksum`].

use etherparse::checksum::Sum16BitWords;

/// The checksum to store over `parts` in order (each of even length but
/// the last), their checksum fields zero.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    parts
        .iter()
        .fold(Sum16BitWords::new(), |s, p| s.add_slice(p))
        .ones_complement()
        .to_be()
}

/// The TCP/UDP pseudo-header of the IPv4 packet `ip`, for its whole payload.
pub fn pseudo_header(ip: &[u8]) -> [u8; 12] {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let len = (total - ihl) as u16;
    let mut p = [0u8; 12];
    p[..8].copy_from_slice(&ip[12..20]);
    p[9] = ip[9];
    p[10..12].copy_from_slice(&len.to_be_bytes());
    p
}

/// Where the transport checksum of `ip` is, for TCP, UDP and ICMP.
fn l4_checksum_at(ip: &[u8]) -> Option<usize> {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    match ip[9] {
        6 => Some(ihl + 16),
        17 => Some(ihl + 6),
        1 => Some(ihl + 2),
        _ => None,
    }
}

/// Fills in the IPv4 header checksum of `ip`.
pub fn fill_header_checksum(ip: &mut [u8]) {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    ip[10..12].fill(0);
    let c = checksum(&[&ip[..ihl]]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Fills in the IPv4 header checksum and the TCP, UDP or ICMP checksum of
/// the IPv4 packet `ip` (UDP's computed 0 sent as all ones).
pub fn fill_checksums(ip: &mut [u8]) {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    fill_header_checksum(ip);
    if let Some(at) = l4_checksum_at(ip) {
        ip[at..at + 2].fill(0);
        let c = match ip[9] {
            1 => checksum(&[&ip[ihl..total]]),
            _ => checksum(&[&pseudo_header(ip), &ip[ihl..total]]),
        };
        let c = if ip[9] == 17 && c == 0 { 0xffff } else { c };
        ip[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Whether the IPv4 packet `ip` is exactly as long as its header says and
/// its header checksum and transport checksum hold (TCP and UDP with the
/// pseudo-header, a UDP checksum of zero counting as wrong; any other
/// protocol as ICMP, over its payload alone).
pub fn checksums_hold(ip: &[u8]) -> bool {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total != ip.len() || ihl < 20 || ihl > total {
        return false;
    }
    let header_ok = checksum(&[&ip[..ihl]]) == 0;
    let l4_ok = match ip[9] {
        6 | 17 => checksum(&[&pseudo_header(ip), &ip[ihl..]]) == 0,
        _ => checksum(&[&ip[ihl..]]) == 0,
    };
    header_ok && l4_ok
}
#[test]
fn checksums_of_a_built_frame_hold() {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1000, 80, 7, 1024)
        .write(&mut f, b"odd")
        .expect("frame");
    assert!(checksums_hold(&f));
    let mut g = f.clone();
    fill_checksums(&mut g);
    assert_eq!(f, g, "the same checksums as etherparse's builder");
    g[25] ^= 0x10;
    assert!(!checksums_hold(&g));
}

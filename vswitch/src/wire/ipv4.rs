//! IPv4 headers inside Ethernet frames.

use crate::wire::eth::ETH_HLEN;

/// An IPv4 header without options.
pub const IPV4_HLEN: usize = 20;

/// The IPv4 header of an Ethernet frame, checked: version 4, a sane IHL,
/// and a total length that fits the frame.
#[inline(always)]
pub(crate) fn ipv4_header(frame: &[u8]) -> Option<&[u8; IPV4_HLEN]> {
    let ip = frame.get(ETH_HLEN..)?;
    let h = ip.first_chunk::<IPV4_HLEN>()?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    (h[0] >> 4 == 4 && ihl >= IPV4_HLEN && total >= ihl && total <= ip.len()).then_some(h)
}

/// TCP header flags.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

//! Refusals the switch sends in a Service's place when nothing is behind
//! it: a TCP RST as a closed port's stack sends it, or an ICMP
//! unreachable from the address the client tried; and turning the
//! refused packet's buffer into that answer, so that nothing is allocated.

use crate::packet::PacketBuf;
use crate::tables::conntrack::{PROTO_TCP, PROTO_UDP};
use crate::wire::checksum::{checksum, pseudo_ipv4};
use crate::wire::eth::ETH_HLEN;
use crate::wire::ipv4::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// The TCP RST that refuses the segment `ip` (an IPv4 packet, header
/// checked), from its destination, as a closed port's stack sends it (RFC
/// 793, "reset generation"): written into `out` (40 bytes); 0 for a RST
/// (never answered) or a packet too short to answer.
pub fn tcp_reset(ip: &[u8], out: &mut [u8; 40]) -> usize {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let Some(tcp) = ip.get(ihl..total) else {
        return 0;
    };
    if tcp.len() < 20 || tcp[13] & TCP_RST != 0 {
        return 0;
    }
    let flags = tcp[13];
    let doff = usize::from(tcp[12] >> 4) * 4;
    let seg = tcp.len().saturating_sub(doff) as u32
        + u32::from(flags & TCP_SYN != 0)
        + u32::from(flags & TCP_FIN != 0);
    let seq_in = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack_in = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let (seq, ack, out_flags) = if flags & TCP_ACK != 0 {
        (ack_in, 0, TCP_RST)
    } else {
        (0, seq_in.wrapping_add(seg), TCP_RST | TCP_ACK)
    };
    out.fill(0);
    out[0] = 0x45;
    out[2..4].copy_from_slice(&40u16.to_be_bytes());
    out[6] = 0x40;
    out[8] = 64;
    out[9] = PROTO_TCP;
    out[12..16].copy_from_slice(&ip[16..20]);
    out[16..20].copy_from_slice(&ip[12..16]);
    let c = checksum(&out[..20], 0);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut out[20..40];
    t[0..2].copy_from_slice(&tcp[2..4]);
    t[2..4].copy_from_slice(&tcp[0..2]);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 0x50;
    t[13] = out_flags;
    // pseudo-header: addresses, protocol, TCP length
    let c = checksum(&out[20..40], pseudo_ipv4(&out[..20], PROTO_TCP, 20));
    out[36..38].copy_from_slice(&c.to_be_bytes());
    40
}

/// The refusal of the packet `ip` (IPv4, header checked) sent to a Service
/// address: a TCP RST, or an ICMP unreachable from the address it went to.
/// Returns its length in `out`, 0 when nothing may be sent.
pub fn refusal(ip: &[u8], out: &mut [u8; crate::wire::icmp::MAX_ERROR_LEN]) -> usize {
    if ip[9] == PROTO_TCP {
        let mut rst = [0u8; 40];
        let n = tcp_reset(ip, &mut rst);
        out[..n].copy_from_slice(&rst[..n]);
        return n;
    }
    let code = match ip[9] {
        PROTO_UDP | crate::tables::conntrack::PROTO_SCTP => {
            crate::wire::icmp::CODE_PORT_UNREACHABLE
        }
        _ => crate::wire::icmp::CODE_PROTO_UNREACHABLE,
    };
    let from = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    crate::wire::icmp::unreachable(ip, code, from, out)
}

/// Makes the frame exactly `eth` + `ip`: grown at the front (headroom) or
/// cut at the end as needed. False when the buffer cannot be made so.
pub(crate) fn reshape<P: PacketBuf>(pkt: &mut P, eth: [u8; ETH_HLEN], ip: &[u8]) -> bool {
    let want = ETH_HLEN + ip.len();
    let have = pkt.data().len();
    let ok = if have < want {
        pkt.prepend(want - have).is_some()
    } else {
        pkt.truncate(want)
    };
    if !ok || pkt.data().len() != want {
        return false;
    }
    let f = pkt.data_mut();
    f[..ETH_HLEN].copy_from_slice(&eth);
    f[ETH_HLEN..].copy_from_slice(ip);
    true
}

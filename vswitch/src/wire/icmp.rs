//! ICMP errors the switch sends about packets it cannot forward (and for
//! Services with no backend, see `refuse`): a packet
//! too big for the uplink once encapsulated (fragmentation needed, RFC 792
//! and RFC 1191), and a packet whose TTL runs out here (time exceeded).
//!
//! Each builds the whole error, IPv4 header on, into a buffer the caller
//! provides, quoting the offending packet's IP header and the first 8
//! bytes after it as RFC 792 asks; nothing is allocated. It returns the
//! error's length, or 0 when no error may be sent (RFC 1122 §3.2.2): about
//! an ICMP error, about a fragment other than the first, about a packet
//! from an address that is no single host or to a broadcast or multicast
//! address. Whether the packet came as a link-layer broadcast, and how
//! many errors a second to send at most (RFC 1812 §4.3.2.8), the caller
//! knows and decides.

use crate::wire::checksum::checksum;

const PROTO_ICMP: u8 = 1;
const ICMP_UNREACHABLE: u8 = 3;
const ICMP_SOURCE_QUENCH: u8 = 4;
const ICMP_REDIRECT: u8 = 5;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
/// The highest type Linux knows (address mask reply); it treats anything
/// above as an error and answers it with nothing, and so do we.
const ICMP_MAX_KNOWN: u8 = 18;
const CODE_FRAG_NEEDED: u8 = 4;
const CODE_TTL_EXCEEDED: u8 = 0;

const IPV4_DF: u16 = 0x4000;
const IPV4_FRAG_OFFSET: u16 = 0x1fff;
/// Precedence "internetwork control", which Linux gives its ICMP errors.
const TOS_INTERNETCONTROL: u8 = 0xc0;
const TTL: u8 = 64;

/// Bytes of the error's own IPv4 and ICMP headers.
const HEADERS: usize = 20 + 8;
/// Bytes of the offending packet quoted after its IP header.
const QUOTE: usize = 8;
/// The longest error: quoting a header with 40 bytes of options.
pub const MAX_ERROR_LEN: usize = HEADERS + 60 + QUOTE;

/// An ICMP "fragmentation needed and DF set" (type 3, code 4) about
/// `orig_ip` (an IPv4 packet, header first), from address `from`, telling
/// the sender that the next hop takes `mtu` bytes (RFC 1191). Written into
/// `out`; returns its length, or 0 if no error may be sent (see the module
/// documentation), if `orig_ip` does not have DF set (a router fragments
/// such a packet instead) or is malformed, or if `out` is shorter than the
/// error ([`MAX_ERROR_LEN`] is always enough).
pub fn frag_needed(orig_ip: &[u8], mtu: u16, from: u32, out: &mut [u8]) -> usize {
    match orig_ip.get(6..8) {
        Some(f) if u16::from_be_bytes([f[0], f[1]]) & IPV4_DF != 0 => {}
        _ => return 0,
    }
    build(
        orig_ip,
        ICMP_UNREACHABLE,
        CODE_FRAG_NEEDED,
        u32::from(mtu),
        from,
        out,
    )
}

/// An ICMP "time to live exceeded in transit" (type 11, code 0) about
/// `orig_ip`, from address `from`, written into `out`; returns its length or
/// 0, as [`frag_needed`] does.
pub fn time_exceeded(orig_ip: &[u8], from: u32, out: &mut [u8]) -> usize {
    build(orig_ip, ICMP_TIME_EXCEEDED, CODE_TTL_EXCEEDED, 0, from, out)
}

/// "Protocol unreachable" and "port unreachable", the codes a Service
/// with nothing behind it answers with.
pub const CODE_PROTO_UNREACHABLE: u8 = 2;
pub const CODE_PORT_UNREACHABLE: u8 = 3;

/// An ICMP "destination unreachable" (type 3) of `code` about `orig_ip`,
/// from address `from` (the address the sender tried), written into
/// `out`; returns its length or 0, as [`frag_needed`] does.
pub fn unreachable(orig_ip: &[u8], code: u8, from: u32, out: &mut [u8]) -> usize {
    build(orig_ip, ICMP_UNREACHABLE, code, 0, from, out)
}

/// Whether `ip` may be the source of a packet that gets an error: not
/// "this network" (0/8), loopback, multicast, reserved (class E) or the
/// broadcast address.
#[inline]
fn single_host(ip: u32) -> bool {
    let first = (ip >> 24) as u8;
    first != 0 && first != 127 && first < 224
}

fn is_error_type(t: u8) -> bool {
    matches!(
        t,
        ICMP_UNREACHABLE
            | ICMP_SOURCE_QUENCH
            | ICMP_REDIRECT
            | ICMP_TIME_EXCEEDED
            | ICMP_PARAMETER_PROBLEM
    ) || t > ICMP_MAX_KNOWN
}

/// `rest` is the ICMP header's second word (the next-hop MTU in its low
/// half for fragmentation needed, unused otherwise).
fn build(orig: &[u8], icmp_type: u8, code: u8, rest: u32, from: u32, out: &mut [u8]) -> usize {
    let Some(h) = orig.first_chunk::<20>() else {
        return 0;
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if h[0] >> 4 != 4 || ihl < 20 || ihl > orig.len() || total < ihl {
        return 0;
    }
    if u16::from_be_bytes([h[6], h[7]]) & IPV4_FRAG_OFFSET != 0 {
        return 0;
    }
    let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
    if !single_host(src) || dst >> 28 == 0xe || dst >> 28 == 0xf {
        return 0;
    }
    // what follows the header, as far as both the packet and its length go
    let body = &orig[ihl..total.min(orig.len())];
    if h[9] == PROTO_ICMP {
        match body.first() {
            Some(&t) if !is_error_type(t) => {}
            // an error, or too short to tell
            _ => return 0,
        }
    }
    let quoted = ihl + body.len().min(QUOTE);
    let len = HEADERS + quoted;
    let Some(out) = out.get_mut(..len) else {
        return 0;
    };

    let (ip, icmp) = out.split_at_mut(20);
    ip[0] = 0x45;
    ip[1] = TOS_INTERNETCONTROL;
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ip[4..8].fill(0);
    ip[8] = TTL;
    ip[9] = PROTO_ICMP;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&from.to_be_bytes());
    ip[16..20].copy_from_slice(&src.to_be_bytes());
    let c = checksum(ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());

    icmp[0] = icmp_type;
    icmp[1] = code;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&rest.to_be_bytes());
    icmp[8..].copy_from_slice(&orig[..quoted]);
    let c = checksum(icmp, 0);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::conntrack::{Flow, QuotedFlow};

    const POD: [u8; 4] = [10, 65, 0, 1];
    const FAR: [u8; 4] = [93, 184, 216, 34];
    const GW: u32 = 0xa9fe_0101; // 169.254.1.1

    fn sums_to_zero(b: &[u8]) -> bool {
        crate::testing::checksum(&[b]) == 0
    }

    /// An IPv4 packet with `opts` bytes of options, `payload` after the header.
    fn packet(
        proto: u8,
        src: [u8; 4],
        dst: [u8; 4],
        flags: u16,
        opts: usize,
        payload: &[u8],
    ) -> Vec<u8> {
        let ihl = 20 + opts;
        let total = ihl + payload.len();
        let mut p = vec![0x40 | (ihl / 4) as u8, 0];
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34]);
        p.extend_from_slice(&flags.to_be_bytes());
        p.extend_from_slice(&[1, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend(std::iter::repeat_n(1u8, opts)); // NOPs
        crate::testing::fill_header_checksum(&mut p);
        p.extend_from_slice(payload);
        p
    }

    fn tcp_syn() -> Vec<u8> {
        let mut seg = vec![
            0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ];
        seg.extend_from_slice(&[0xab, 0xcd, 0, 0]);
        seg.extend_from_slice(&[0x55; 1400]);
        packet(6, POD, FAR, IPV4_DF, 0, &seg)
    }

    #[test]
    fn fragmentation_needed_quotes_header_and_eight_bytes() {
        let orig = tcp_syn();
        let mut out = [0u8; MAX_ERROR_LEN];
        let n = frag_needed(&orig, 1450, GW, &mut out);
        assert_eq!(n, 20 + 8 + 20 + 8);
        let e = &out[..n];
        assert_eq!(e[0], 0x45);
        assert_eq!(u16::from_be_bytes([e[2], e[3]]) as usize, n);
        assert_eq!((e[8], e[9]), (64, 1));
        assert!(sums_to_zero(&e[..20]), "IP header checksum");
        assert_eq!(e[12..16], GW.to_be_bytes(), "from the gateway");
        assert_eq!(e[16..20], POD, "to the sender");
        assert_eq!((e[20], e[21]), (3, 4));
        assert_eq!(e[24..28], [0, 0, 0x05, 0xaa], "next-hop MTU 1450");
        assert_eq!(e[28..], orig[..28], "header and 8 bytes, as sent");
        assert!(sums_to_zero(&e[20..]), "ICMP checksum");
        // the connection tracker finds the flow it is about
        let f = Flow::parse(e);
        assert_eq!((f.icmp_type, f.icmp_code), (3, 4));
        assert_eq!(
            f.quoted,
            Some(QuotedFlow {
                src: u32::from_be_bytes(POD),
                dst: u32::from_be_bytes(FAR),
                proto: 6,
                sport: 40000,
                dport: 443,
            })
        );
    }

    #[test]
    fn time_exceeded_with_options_and_a_short_payload() {
        let orig = packet(17, POD, FAR, 0, 4, &[0x13, 0x88, 0x00]);
        let mut out = [0xeeu8; 128];
        let n = time_exceeded(&orig, GW, &mut out);
        assert_eq!(n, 20 + 8 + 24 + 3, "all there is, up to 8 bytes");
        let e = &out[..n];
        assert_eq!((e[20], e[21]), (11, 0));
        assert_eq!(e[24..28], [0; 4]);
        assert_eq!(e[28..], orig[..]);
        assert!(sums_to_zero(&e[..20]));
        assert!(sums_to_zero(&e[20..]), "odd length checksum");
        assert_eq!(out[n], 0xee, "nothing written past the error");
    }

    #[test]
    fn quotes_no_further_than_the_total_length() {
        let mut orig = packet(17, POD, FAR, 0, 0, &[1, 2, 3, 4]);
        orig.extend_from_slice(&[9; 20]); // Ethernet padding after the packet
        let mut out = [0u8; MAX_ERROR_LEN];
        assert_eq!(time_exceeded(&orig, GW, &mut out), 28 + 24);
    }

    #[test]
    fn icmp_echo_gets_errors_but_errors_do_not() {
        let mut out = [0u8; MAX_ERROR_LEN];
        let echo = packet(1, POD, FAR, 0, 0, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
        assert_eq!(time_exceeded(&echo, GW, &mut out), 56);
        for t in [3u8, 4, 5, 11, 12, 19, 200] {
            let err = packet(1, POD, FAR, 0, 0, &[t, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(time_exceeded(&err, GW, &mut out), 0, "type {t}");
        }
        let headless = packet(1, POD, FAR, 0, 0, &[]);
        assert_eq!(time_exceeded(&headless, GW, &mut out), 0);
    }

    #[test]
    fn only_the_first_fragment_gets_an_error() {
        let mut out = [0u8; MAX_ERROR_LEN];
        let first = packet(17, POD, FAR, 0x2000, 0, &[0; 16]);
        assert_eq!(time_exceeded(&first, GW, &mut out), 56);
        let later = packet(17, POD, FAR, 0x2000 | 185, 0, &[0; 16]);
        assert_eq!(time_exceeded(&later, GW, &mut out), 0);
        let last = packet(17, POD, FAR, 185, 0, &[0; 16]);
        assert_eq!(time_exceeded(&last, GW, &mut out), 0);
    }

    #[test]
    fn no_errors_to_non_hosts_or_about_group_destinations() {
        let mut out = [0u8; MAX_ERROR_LEN];
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 5],
            [239, 1, 2, 3],
            [240, 0, 0, 1],
            [255, 255, 255, 255],
        ] {
            let p = packet(17, src, FAR, IPV4_DF, 0, &[0; 8]);
            assert_eq!(time_exceeded(&p, GW, &mut out), 0, "{src:?}");
            assert_eq!(frag_needed(&p, 1400, GW, &mut out), 0, "{src:?}");
        }
        for dst in [[224, 0, 0, 251], [255, 255, 255, 255], [250, 0, 0, 1]] {
            let p = packet(17, POD, dst, IPV4_DF, 0, &[0; 8]);
            assert_eq!(time_exceeded(&p, GW, &mut out), 0, "{dst:?}");
        }
    }

    #[test]
    fn frag_needed_only_when_df_is_set() {
        let mut out = [0u8; MAX_ERROR_LEN];
        let p = packet(17, POD, FAR, 0, 0, &[0; 8]);
        assert_eq!(frag_needed(&p, 1400, GW, &mut out), 0);
    }

    #[test]
    fn malformed_packets_and_small_buffers_get_nothing() {
        let orig = tcp_syn();
        let mut out = [0u8; MAX_ERROR_LEN];
        assert_eq!(
            frag_needed(&orig, 1400, GW, &mut out[..55]),
            0,
            "one byte short"
        );
        assert_eq!(frag_needed(&orig, 1400, GW, &mut out[..56]), 56);
        for len in 0..20 {
            assert_eq!(time_exceeded(&orig[..len], GW, &mut out), 0);
            assert_eq!(frag_needed(&orig[..len], 1400, GW, &mut out), 0);
        }
        let mut v6 = orig.clone();
        v6[0] = 0x65;
        assert_eq!(time_exceeded(&v6, GW, &mut out), 0);
        let mut short_ihl = orig.clone();
        short_ihl[0] = 0x44;
        assert_eq!(time_exceeded(&short_ihl, GW, &mut out), 0);
        let mut long_ihl = orig[..24].to_vec();
        long_ihl[0] = 0x47; // 28-byte header in 24 bytes
        assert_eq!(time_exceeded(&long_ihl, GW, &mut out), 0);
        let mut bad_total = orig.clone();
        bad_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(time_exceeded(&bad_total, GW, &mut out), 0);
        // a packet cut short of its total length quotes what there is
        assert_eq!(time_exceeded(&orig[..24], GW, &mut out), 28 + 24);
    }
}

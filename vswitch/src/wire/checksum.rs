//! The Internet checksum (RFC 1071), whole and as partial sums, and its
//! incremental update when a few words change (RFC 1624).

/// The ones' complement sum of `b` as big-endian 16-bit words, a trailing
/// odd byte padded with zero; not folded. It cannot overflow below 128 KiB.
#[inline(always)]
pub(crate) fn sum16(b: &[u8]) -> u32 {
    let mut words = b.chunks_exact(2);
    let mut sum: u32 = 0;
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds the carries of a partial sum into 16 bits (two folds suffice for
/// any u32).
#[inline(always)]
pub(crate) fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum to store for `b`, whose checksum field is zero, after the
/// partial sum `init` (a pseudo-header, or 0).
#[inline]
pub fn checksum(b: &[u8], init: u32) -> u16 {
    !fold(init + sum16(b))
}

/// Whether `b`, its checksum field included, sums correctly after `init`.
#[inline]
pub fn verify(b: &[u8], init: u32) -> bool {
    fold(init + sum16(b)) == 0xffff
}

/// The partial sum of the IPv4 pseudo-header of TCP and UDP (RFC 793,
/// RFC 768): addresses as they are in the header, protocol, segment length.
#[inline]
pub fn pseudo_ipv4(ip_header: &[u8], proto: u8, len: u16) -> u32 {
    sum16(&ip_header[12..20]) + u32::from(proto) + u32::from(len)
}

/// The changes to a checksummed region, as RFC 1624 eqn. 3 sums them:
/// `HC' = ~(~HC + ~m + m')` for each changed 16-bit word.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta(u32);

impl Delta {
    /// One 16-bit word changed from `old` to `new`.
    #[inline(always)]
    pub fn word(&mut self, old: u16, new: u16) {
        self.0 += u32::from(!old) + u32::from(new);
    }

    /// A 32-bit field (an address) changed.
    #[inline(always)]
    pub fn addr(&mut self, old: u32, new: u32) {
        self.word((old >> 16) as u16, (new >> 16) as u16);
        self.word(old as u16, new as u16);
    }

    /// The checksum `csum` updated for the changes.
    #[inline(always)]
    pub fn apply(self, csum: u16) -> u16 {
        !fold(u32::from(!csum) + self.0)
    }

    /// For UDP, where 0 means "no checksum": left alone, and a computed 0
    /// is sent as all ones (RFC 768).
    #[inline(always)]
    pub fn apply_udp(self, csum: u16) -> u16 {
        if csum == 0 {
            return 0;
        }
        match self.apply(csum) {
            0 => 0xffff,
            c => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4Header, PacketBuilder};

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 65, 0, 1], [10, 96, 7, 9], 63)
            .udp(40000, 53);
        let mut f = Vec::new();
        b.write(&mut f, payload).expect("frame");
        f
    }

    #[test]
    fn header_checksum_agrees_with_etherparse() {
        for ttl in [1u8, 64, 255] {
            let h = Ipv4Header::new(
                100,
                ttl,
                etherparse::IpNumber::TCP,
                [10, 0, 0, 1],
                [192, 0, 2, 200],
            )
            .expect("header");
            let mut b = h.to_bytes().to_vec();
            b[10] = 0;
            b[11] = 0;
            assert_eq!(checksum(&b, 0), h.calc_header_checksum());
            b[10..12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
            assert!(verify(&b, 0));
            b[8] ^= 1;
            assert!(!verify(&b, 0));
        }
    }

    #[test]
    fn udp_checksum_with_pseudo_header_agrees_with_etherparse() {
        for len in [0usize, 1, 2, 7, 100, 1401] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let f = udp_frame(&payload);
            let ip = &f[14..];
            let seg = &ip[20..];
            let mut zeroed = seg.to_vec();
            zeroed[6] = 0;
            zeroed[7] = 0;
            let want = u16::from_be_bytes([seg[6], seg[7]]);
            let got = checksum(&zeroed, pseudo_ipv4(ip, 17, seg.len() as u16));
            assert_eq!(got, want, "payload {len}");
            assert!(verify(seg, pseudo_ipv4(ip, 17, seg.len() as u16)));
        }
    }

    #[test]
    fn incremental_update_equals_a_recomputation() {
        let f = udp_frame(b"incremental");
        let mut ip = f[14..].to_vec();
        let old_csum = u16::from_be_bytes([ip[10], ip[11]]);
        let (old_ttl_proto, old_dst) = (
            u16::from_be_bytes([ip[8], ip[9]]),
            u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        );
        ip[8] -= 1;
        ip[16..20].copy_from_slice(&[10, 65, 3, 4]);
        let mut d = Delta::default();
        d.word(old_ttl_proto, u16::from_be_bytes([ip[8], ip[9]]));
        d.addr(
            old_dst,
            u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        );
        let want = Ipv4Header::from_slice(&ip)
            .expect("header")
            .0
            .calc_header_checksum();
        assert_eq!(d.apply(old_csum), want);
        assert_eq!(
            Delta::default().apply_udp(0),
            0,
            "no UDP checksum stays none"
        );
    }
}

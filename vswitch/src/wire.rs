//! Ethernet framing checks: what the L2 path needs to know of a frame.
//!
//! Only the first header bytes are read; nothing is copied.

/// Length of an Ethernet header without VLAN tags.
pub const ETH_HLEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Ethertype values below this are IEEE 802.3 length fields.
pub const ETHERTYPE_MIN: u16 = 0x0600;
/// Largest valid 802.3 length field.
pub const ETH_MAX_PAYLOAD_LEN: u16 = 1500;

/// Why a frame is not a well-formed Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    Runt,
    /// A length field (802.3, IPv4 or IPv6) that does not fit the frame.
    BadLength,
}

/// Reads a 48-bit address at `off` as the low bits of a u64.
#[inline(always)]
pub fn mac_at(b: &[u8], off: usize) -> u64 {
    let m = &b[off..off + 6];
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// True for group (multicast and broadcast) addresses in `mac_at` form.
#[inline(always)]
pub fn is_group(mac: u64) -> bool {
    mac & (1 << 40) != 0
}

/// The header fields the L2 path uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthInfo {
    pub dst: u64,
    pub src: u64,
    pub ethertype: u16,
}

/// Parses and checks the Ethernet header and the length fields right behind it.
#[inline(always)]
pub fn parse_eth(b: &[u8]) -> Result<EthInfo, Malformed> {
    if b.len() < ETH_HLEN {
        return Err(Malformed::Runt);
    }
    let ethertype = u16::from_be_bytes([b[12], b[13]]);
    let payload = b.len() - ETH_HLEN;
    let ok = match ethertype {
        // IEEE 802.3: the field is the payload length, which padding may exceed
        0..=ETH_MAX_PAYLOAD_LEN => usize::from(ethertype) <= payload,
        // neither a length nor an ethertype (IEEE 802.3 clause 3.2.6)
        _ if ethertype < ETHERTYPE_MIN => false,
        ETHERTYPE_IPV4 => ipv4_len_ok(&b[ETH_HLEN..]),
        ETHERTYPE_IPV6 => {
            payload >= 40 && usize::from(u16::from_be_bytes([b[18], b[19]])) + 40 <= payload
        }
        _ => true,
    };
    if !ok {
        return Err(Malformed::BadLength);
    }
    Ok(EthInfo {
        dst: mac_at(b, 0),
        src: mac_at(b, 6),
        ethertype,
    })
}

#[inline(always)]
fn ipv4_len_ok(ip: &[u8]) -> bool {
    if ip.len() < 20 {
        return false;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    ip[0] >> 4 == 4 && ihl >= 20 && total >= ihl && total <= ip.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa1];
    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa0];

    fn frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&DST);
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(total_len: u16, actual: usize) -> Vec<u8> {
        let mut ip = vec![0u8; actual];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total_len.to_be_bytes());
        ip
    }

    #[test]
    fn addresses_and_type() {
        let f = frame(0x88b5, &[0; 46]);
        let e = parse_eth(&f).unwrap();
        assert_eq!(e.dst, 0x0200_0000_00a1);
        assert_eq!(e.src, 0x0200_0000_00a0);
        assert_eq!(e.ethertype, 0x88b5);
        assert!(!is_group(e.dst));
        assert!(is_group(mac_at(&[0xff; 6], 0)));
        assert!(is_group(mac_at(&[0x01, 0x00, 0x5e, 0, 0, 1], 0)));
    }

    #[test]
    fn runts() {
        for n in 0..ETH_HLEN {
            assert_eq!(parse_eth(&vec![0u8; n]), Err(Malformed::Runt), "{n}");
        }
        assert!(parse_eth(&frame(0x88b5, &[])).is_ok());
    }

    #[test]
    fn ieee_802_3_length_field() {
        assert!(parse_eth(&frame(46, &[0; 46])).is_ok());
        assert!(parse_eth(&frame(3, &[0; 46])).is_ok(), "padding is fine");
        assert_eq!(parse_eth(&frame(100, &[0; 46])), Err(Malformed::BadLength));
        assert_eq!(
            parse_eth(&frame(1536 - 1, &[0; 1500])),
            Err(Malformed::BadLength)
        );
    }

    #[test]
    fn ipv4_total_length() {
        assert!(parse_eth(&frame(ETHERTYPE_IPV4, &ipv4(46, 46))).is_ok());
        assert!(
            parse_eth(&frame(ETHERTYPE_IPV4, &ipv4(28, 46))).is_ok(),
            "padded"
        );
        assert_eq!(
            parse_eth(&frame(ETHERTYPE_IPV4, &ipv4(1500, 46))),
            Err(Malformed::BadLength)
        );
        assert_eq!(
            parse_eth(&frame(ETHERTYPE_IPV4, &ipv4(10, 46))),
            Err(Malformed::BadLength),
            "shorter than its own header"
        );
        assert_eq!(
            parse_eth(&frame(ETHERTYPE_IPV4, &[0x45; 10])),
            Err(Malformed::BadLength)
        );
        let mut v6 = ipv4(46, 46);
        v6[0] = 0x65;
        assert_eq!(
            parse_eth(&frame(ETHERTYPE_IPV4, &v6)),
            Err(Malformed::BadLength)
        );
    }

    #[test]
    fn ipv6_payload_length() {
        let mut ip = vec![0u8; 48];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&8u16.to_be_bytes());
        assert!(parse_eth(&frame(ETHERTYPE_IPV6, &ip)).is_ok());
        ip[4..6].copy_from_slice(&9u16.to_be_bytes());
        assert_eq!(
            parse_eth(&frame(ETHERTYPE_IPV6, &ip)),
            Err(Malformed::BadLength)
        );
    }
}

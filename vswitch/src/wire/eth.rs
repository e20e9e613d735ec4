//! Ethernet framing checks: what the L2 path needs to know of a frame.
//!
//! Only the first header bytes are read; nothing is copied.

/// Length of an Ethernet header without VLAN tags.
pub const ETH_HLEN: usize = 14;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype values below this are IEEE 802.3 length fields.
pub const ETHERTYPE_MIN: u16 = 0x0600;
/// Largest valid 802.3 length field.
pub const ETH_MAX_PAYLOAD_LEN: u16 = 1500;

/// Why a frame is not a well-formed Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than an Ethernet header.
    Runt,
    /// An 802.3 length field that does not fit the frame, or is no length.
    BadLength,
}

/// Reads a 48-bit address at `off` as the low bits of a u64.
#[inline(always)]
pub fn mac_at(b: &[u8], off: usize) -> u64 {
    let m = &b[off..off + 6];
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// A 48-bit address held in the low bits of a u64, as bytes.
#[inline(always)]
pub fn mac_bytes(m: u64) -> [u8; 6] {
    let b = m.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
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

/// Parses and checks the Ethernet header: its length, and the 802.3 length
/// field where there is one. IP length fields are the IP layer's to check.
#[inline(always)]
pub fn parse_eth(b: &[u8]) -> Result<EthInfo, Malformed> {
    let Some(h) = b.first_chunk::<ETH_HLEN>() else {
        return Err(Malformed::Runt);
    };
    // two overlapping 8-byte loads give both addresses and the type
    let w0 = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    let w1 = u64::from_be_bytes([h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13]]);
    let ethertype = w1 as u16;
    // IEEE 802.3: below 0x600 the field is a payload length, which padding may
    // exceed; 1501..=1535 is neither a length nor a type (clause 3.2.6)
    if ethertype < ETHERTYPE_MIN
        && (ethertype > ETH_MAX_PAYLOAD_LEN || usize::from(ethertype) > b.len() - ETH_HLEN)
    {
        return Err(Malformed::BadLength);
    }
    Ok(EthInfo {
        dst: w0 >> 16,
        src: w1 >> 16,
        ethertype,
    })
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
}

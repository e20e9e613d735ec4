//! Test frames, built and checked with etherparse rather than the switch's
//! own wire code, and sent raw into a switch.

use api::MacAddr;
use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv4HeaderSlice, TcpHeaderSlice, UdpHeader,
    UdpHeaderSlice,
};
use nix::sys::socket::{sendto, socket, AddressFamily, MsgFlags, SockFlag, SockType};
use std::os::fd::AsRawFd;

/// Parses "02:00:00:00:00:a0".
pub fn mac_bytes(mac: &str) -> [u8; 6] {
    mac.parse::<MacAddr>()
        .unwrap_or_else(|e| panic!("MAC {mac:?}: {e}"))
        .0
}

/// A frame of at least 60 bytes: `dst`, `src`, the type/length field
/// `ethertype` (any value, lengths and invalid ones too), and `payload`
/// padded with zeros.
pub fn frame(dst: &str, src: &str, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let eth = Ethernet2Header {
        source: mac_bytes(src),
        destination: mac_bytes(dst),
        ether_type: EtherType(ethertype),
    };
    let mut f = Vec::with_capacity(60.max(Ethernet2Header::LEN + payload.len()));
    f.extend_from_slice(&eth.to_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An IPv4 header 10.0.0.1 > 10.0.0.2 claiming `total_len` bytes (protocol
/// 253, for experiments; TTL 64, no flags), its checksum right.
pub fn ipv4_header(total_len: u16) -> Vec<u8> {
    let mut h = Ipv4Header {
        total_len,
        dont_fragment: false,
        time_to_live: 64,
        protocol: IpNumber(253),
        source: [10, 0, 0, 1],
        destination: [10, 0, 0, 2],
        ..Default::default()
    };
    h.header_checksum = h.calc_header_checksum();
    h.to_bytes().to_vec()
}

/// Whether the IPv4 header at the start of `packet` has a valid header
/// checksum.
pub fn ipv4_checksum_ok(packet: &[u8]) -> bool {
    Ipv4HeaderSlice::from_slice(packet).is_ok_and(|h| {
        let h = h.to_header();
        h.calc_header_checksum() == h.header_checksum
    })
}

/// Whether `segment`, a TCP or UDP header with its payload, carries the
/// checksum due over the IPv4 pseudo-header of `packet` (the IPv4 packet it
/// came in: its addresses and protocol count). A UDP checksum of zero
/// (none sent) is not right here: callers that accept it check for it.
pub fn l4_checksum_ok(packet: &[u8], segment: &[u8]) -> bool {
    let Ok(ip) = Ipv4HeaderSlice::from_slice(packet) else {
        return false;
    };
    let (src, dst) = (ip.source(), ip.destination());
    match ip.protocol() {
        IpNumber::UDP => UdpHeaderSlice::from_slice(segment).is_ok_and(|u| {
            let h = u.to_header();
            h.calc_checksum_ipv4_raw(src, dst, &segment[UdpHeader::LEN..])
                .is_ok_and(|c| c == h.checksum)
        }),
        IpNumber::TCP => TcpHeaderSlice::from_slice(segment).is_ok_and(|t| {
            let h = t.to_header();
            h.calc_checksum_ipv4_raw(src, dst, &segment[h.header_len()..])
                .is_ok_and(|c| c == h.checksum)
        }),
        _ => false,
    }
}

/// Sends `frames` (Ethernet header included) out of kernel interface `iface`
/// on an AF_PACKET raw socket: into the switch, for a switch-owned TAP.
pub fn send_raw(iface: &str, frames: &[Vec<u8>]) {
    let addr = nix::ifaddrs::getifaddrs()
        .unwrap_or_else(|e| panic!("getifaddrs: {e}"))
        .filter(|a| a.interface_name == iface)
        .find_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
        .unwrap_or_else(|| panic!("no interface {iface}"));
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::empty(),
        None,
    )
    .unwrap_or_else(|e| panic!("AF_PACKET socket: {e}"));
    for f in frames {
        match sendto(fd.as_raw_fd(), f, &addr, MsgFlags::empty()) {
            Ok(n) if n == f.len() => {}
            Ok(n) => panic!("sendto {iface}: {n} of {} bytes", f.len()),
            Err(e) => panic!("sendto {iface}: {e}"),
        }
    }
}

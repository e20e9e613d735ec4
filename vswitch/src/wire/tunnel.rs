//! Cross-node tunnels as Calico uses them: VXLAN (RFC 7348) on UDP port 4789
//! with VNI 4096 (`vxlan.calico`), and IP-in-IP (RFC 2003, IPv4 protocol 4,
//! `tunl0`).
//!
//! In the style of smoltcp's `wire` module: zero-copy views over header bytes
//! ([`Ipv4Packet`], [`UdpPacket`], [`VxlanPacket`]) beside `Repr` structs that
//! parse and emit them. On top of those:
//!
//! - decapsulation ([`decap_vxlan`], [`decap_ipip`]) checks everything a
//!   hostile or broken peer can get wrong in the outer headers and says why
//!   it drops ([`TunnelDrop`]); the caller's peer table answers "is this
//!   address mine / a known node" through [`Underlay`];
//! - encapsulation from header templates built once per destination
//!   ([`VxlanTemplate`], [`IpipTemplate`]): per packet it prepends the
//!   prebuilt header and patches the few fields that vary, with the IPv4
//!   checksum completed from a precomputed sum of the constant fields.
//!
//! Only untagged IPv4 underlays: a VLAN-tagged outer frame is
//! [`TunnelDrop::WrongProtocol`].

use crate::packet::PacketBuf;
use crate::wire::checksum::{self, fold, sum16};
use crate::wire::eth::{ETHERTYPE_IPV4, ETH_HLEN};
use crate::wire::ipv4::IPV4_HLEN;
use std::net::Ipv4Addr;

pub const UDP_HLEN: usize = 8;
pub const VXLAN_HLEN: usize = 8;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_UDP: u8 = 17;
/// The IANA port for VXLAN (RFC 7348 §5), which Calico uses.
pub const VXLAN_PORT: u16 = 4789;
/// Calico's default VNI (FelixConfiguration `vxlanVNI`).
pub const CALICO_VXLAN_VNI: u32 = 4096;
/// Bytes a VXLAN encapsulation puts in front of the inner Ethernet frame.
pub const VXLAN_ENCAP_LEN: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN;
/// Bytes of outer headers in an IP-in-IP frame; the inner Ethernet header
/// goes, so the frame grows by `IPIP_ENCAP_LEN - ETH_HLEN`.
pub const IPIP_ENCAP_LEN: usize = ETH_HLEN + IPV4_HLEN;
pub const DEFAULT_TTL: u8 = 64;
/// The dynamic port range (RFC 6335) that RFC 7348 §5 recommends for the
/// entropy source port.
pub const SRC_PORT_MIN: u16 = 49152;
pub const SRC_PORT_MAX: u16 = 65535;

const VNI_MAX: u32 = (1 << 24) - 1;
const VXLAN_FLAG_I: u8 = 0x08;
const IPV4_DF: u16 = 0x4000;
const IPV4_MF: u16 = 0x2000;
const IPV4_FRAG_OFFSET: u16 = 0x1fff;
const IPV4_MAX_TOTAL: usize = u16::MAX as usize;

// ---------------------------------------------------------------- drops

/// Why a frame from the uplink was not decapsulated. Each is a dataplane
/// drop reason, counted under [`TunnelDrop::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelDrop {
    /// The frame ends inside the outer headers that have to be read. A frame
    /// that holds them but ends before the IPv4 total length says is
    /// [`TunnelDrop::BadOuterIp`]: from the bytes alone, a cut frame and an
    /// inflated length look the same.
    Truncated,
    /// The outer IPv4 header is wrong: version, IHL, header checksum, or a
    /// total length shorter than the header or longer than the frame.
    BadOuterIp,
    /// The outer packet is a fragment. The fast path does not reassemble (it
    /// would hold buffers and timers per packet, an easy target to exhaust).
    /// A Linux peer would reassemble, so this differs only when the underlay
    /// fragments, which Calico avoids by sizing pod MTUs for the tunnel
    /// overhead.
    Fragment,
    /// Not the tunnel's protocol: the outer frame is not (untagged) IPv4, or
    /// the IPv4 protocol is not UDP (VXLAN) or 4 (IP-in-IP).
    WrongProtocol,
    /// UDP, but not to the VXLAN port.
    WrongPort,
    /// The outer destination is not one of this node's underlay addresses.
    NotForUs,
    /// The outer source is not a known peer node. Calico's Linux dataplane
    /// drops the same packets (only VXLAN/IP-in-IP from addresses in its
    /// all-hosts set is accepted), so that nobody outside the cluster can
    /// inject traffic that skips the sender-side policy.
    UnknownPeer,
    /// The UDP length field disagrees with the IPv4 payload, or leaves no
    /// room for a VXLAN header.
    BadUdp,
    /// The VXLAN I flag is clear, or (with [`ReservedBits::Reject`]) a
    /// reserved bit is set.
    BadVxlanFlags,
    /// A VNI other than the one configured.
    WrongVni,
    /// The inner frame is shorter than its first header: an Ethernet header
    /// for VXLAN, an IPv4 header for IP-in-IP.
    InnerRunt,
}

impl TunnelDrop {
    pub const ALL: [TunnelDrop; 11] = [
        TunnelDrop::Truncated,
        TunnelDrop::BadOuterIp,
        TunnelDrop::Fragment,
        TunnelDrop::WrongProtocol,
        TunnelDrop::WrongPort,
        TunnelDrop::NotForUs,
        TunnelDrop::UnknownPeer,
        TunnelDrop::BadUdp,
        TunnelDrop::BadVxlanFlags,
        TunnelDrop::WrongVni,
        TunnelDrop::InnerRunt,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            TunnelDrop::Truncated => "tunnel_truncated",
            TunnelDrop::BadOuterIp => "tunnel_bad_outer_ip",
            TunnelDrop::Fragment => "tunnel_fragment",
            TunnelDrop::WrongProtocol => "tunnel_wrong_protocol",
            TunnelDrop::WrongPort => "tunnel_wrong_port",
            TunnelDrop::NotForUs => "tunnel_not_for_us",
            TunnelDrop::UnknownPeer => "tunnel_unknown_peer",
            TunnelDrop::BadUdp => "tunnel_bad_udp",
            TunnelDrop::BadVxlanFlags => "tunnel_bad_vxlan_flags",
            TunnelDrop::WrongVni => "tunnel_wrong_vni",
            TunnelDrop::InnerRunt => "tunnel_inner_runt",
        }
    }
}

impl std::fmt::Display for TunnelDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a frame could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncapError {
    /// The buffer has no room in front for the outer headers.
    NoHeadroom,
    /// The frame to carry is shorter than its Ethernet header, or (IP-in-IP)
    /// than an IPv4 header after it.
    InnerRunt,
    /// IP-in-IP carries IPv4 only.
    NotIpv4,
    /// The inner IPv4 total length is shorter than its header or longer than
    /// the frame.
    BadInnerLength,
    /// The outer packet would exceed the 65,535 bytes of an IPv4 total length.
    TooLong,
}

impl EncapError {
    pub const fn name(self) -> &'static str {
        match self {
            EncapError::NoHeadroom => "tunnel_no_headroom",
            EncapError::InnerRunt => "tunnel_encap_runt",
            EncapError::NotIpv4 => "tunnel_encap_not_ipv4",
            EncapError::BadInnerLength => "tunnel_encap_bad_length",
            EncapError::TooLong => "tunnel_encap_too_long",
        }
    }
}

impl std::fmt::Display for EncapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------- checksums

/// The IPv4 header checksum for `header`, whose checksum field must be zero.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    checksum::checksum(header, 0)
}

/// Whether an IPv4 header (its checksum field included) sums correctly.
pub fn ipv4_checksum_ok(header: &[u8]) -> bool {
    checksum::verify(header, 0)
}

// ---------------------------------------------------------------- views

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// A read-only view of an IPv4 header at the start of `buffer`.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// No checks: the accessors panic if `buffer` is shorter than they read
    /// (20 bytes, or the IHL for `header()`/`payload()`).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks what the accessors need: a version 4 header whose IHL-declared
    /// length fits the buffer. The checksum and total length are left to
    /// [`Ipv4Repr::parse`] and [`Ipv4Packet::checksum_ok`].
    pub fn new_checked(buffer: T) -> Result<Self, TunnelDrop> {
        let len = buffer.as_ref().len();
        if len < IPV4_HLEN {
            return Err(TunnelDrop::Truncated);
        }
        let p = Ipv4Packet { buffer };
        if p.version() != 4 || p.header_len() < IPV4_HLEN {
            return Err(TunnelDrop::BadOuterIp);
        }
        if p.header_len() > len {
            return Err(TunnelDrop::Truncated);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }
    /// The header length in bytes, from the IHL.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0f) * 4
    }
    /// DSCP and ECN, as one byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), 6) & IPV4_DF != 0
    }
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), 6) & IPV4_MF != 0
    }
    /// The fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), 6) & IPV4_FRAG_OFFSET) << 3
    }
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), 6) & (IPV4_MF | IPV4_FRAG_OFFSET) != 0
    }
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[8]
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 10)
    }
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), 12)
    }
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), 16)
    }
    /// The header with its options.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }
    /// Whether the header checksum is right (options included).
    pub fn checksum_ok(&self) -> bool {
        ipv4_checksum_ok(self.header())
    }
    /// What follows the header up to the total length, or to the end of the
    /// buffer if that comes first.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = usize::from(self.total_len()).min(b.len());
        b.get(self.header_len()..end).unwrap_or(&[])
    }
}

/// A read-only view of a UDP header at the start of `buffer`.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// No checks: the accessors panic below 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self, TunnelDrop> {
        if buffer.as_ref().len() < UDP_HLEN {
            return Err(TunnelDrop::Truncated);
        }
        Ok(UdpPacket { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// The UDP length field: header and payload.
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= UDP_HLEN
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
}

/// A read-only view of a VXLAN header (RFC 7348 §5) at the start of `buffer`:
///
/// ```text
/// |R|R|R|R|I|R|R|R|            Reserved (24)                      |
/// |                VNI (24)                       | Reserved (8)  |
/// ```
#[derive(Debug, Clone, Copy)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    /// No checks: the accessors panic below 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> Result<Self, TunnelDrop> {
        if buffer.as_ref().len() < VXLAN_HLEN {
            return Err(TunnelDrop::Truncated);
        }
        Ok(VxlanPacket { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// The first 16 bits, flags byte first (as tshark's `vxlan.flags` shows
    /// them, to leave room for the GBP extension's flags in the second byte).
    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// The I flag: the VNI is valid.
    pub fn vni_valid(&self) -> bool {
        self.buffer.as_ref()[0] & VXLAN_FLAG_I != 0
    }
    /// Whether any bit other than I is set, in the flags or either reserved
    /// field.
    pub fn reserved_bits(&self) -> bool {
        let b = self.buffer.as_ref();
        b[0] & !VXLAN_FLAG_I != 0 || b[1] | b[2] | b[3] | b[7] != 0
    }
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }
}

// ---------------------------------------------------------------- reprs

/// An Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
}

impl EthernetRepr {
    pub fn parse(frame: &[u8]) -> Result<Self, TunnelDrop> {
        let Some(h) = frame.first_chunk::<ETH_HLEN>() else {
            return Err(TunnelDrop::Truncated);
        };
        Ok(EthernetRepr {
            dst: [h[0], h[1], h[2], h[3], h[4], h[5]],
            src: [h[6], h[7], h[8], h[9], h[10], h[11]],
            ethertype: u16::from_be_bytes([h[12], h[13]]),
        })
    }

    pub fn emit(&self, out: &mut [u8; ETH_HLEN]) {
        out[0..6].copy_from_slice(&self.dst);
        out[6..12].copy_from_slice(&self.src);
        out[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
    }
}

/// The fields of an IPv4 header that a tunnel endpoint sets or reads.
/// Options are skipped by `parse` and never emitted; fragments are
/// described only by DF (a fragment is an error for a tunnel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub ttl: u8,
    /// Bytes after the header (total length minus header length).
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// Reads the fields; the total length must cover the header and fit the
    /// view's buffer. The checksum is not verified here (see
    /// [`Ipv4Packet::checksum_ok`]).
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self, TunnelDrop> {
        let total = usize::from(p.total_len());
        if total < p.header_len() || total > p.buffer.as_ref().len() {
            return Err(TunnelDrop::BadOuterIp);
        }
        Ok(Ipv4Repr {
            src: p.src_addr(),
            dst: p.dst_addr(),
            protocol: p.protocol(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            ttl: p.ttl(),
            payload_len: (total - p.header_len()) as u16,
        })
    }

    /// Writes a 20-byte header with its checksum; `None` if the payload
    /// leaves no room for the header in the 16-bit total length.
    pub fn emit(&self, out: &mut [u8; IPV4_HLEN]) -> Option<()> {
        let total = self.payload_len.checked_add(IPV4_HLEN as u16)?;
        out[0] = 0x45;
        out[1] = self.tos;
        out[2..4].copy_from_slice(&total.to_be_bytes());
        out[4..6].copy_from_slice(&self.ident.to_be_bytes());
        let frag = if self.dont_frag { IPV4_DF } else { 0 };
        out[6..8].copy_from_slice(&frag.to_be_bytes());
        out[8] = self.ttl;
        out[9] = self.protocol;
        out[10..12].copy_from_slice(&[0, 0]);
        out[12..16].copy_from_slice(&self.src.octets());
        out[16..20].copy_from_slice(&self.dst.octets());
        let c = ipv4_checksum(&out[..]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
        Some(())
    }
}

/// A UDP header as a VXLAN endpoint sends it: checksum zero (RFC 7348 §5:
/// "It SHOULD be transmitted as zero").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    /// Bytes after the header.
    pub payload_len: u16,
}

impl UdpRepr {
    /// Reads the ports and the length, which must cover the header.
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<Self, TunnelDrop> {
        let len = p.len();
        if usize::from(len) < UDP_HLEN {
            return Err(TunnelDrop::BadUdp);
        }
        Ok(UdpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload_len: len - UDP_HLEN as u16,
        })
    }

    /// `None` if the payload leaves no room for the header in the length field.
    pub fn emit(&self, out: &mut [u8; UDP_HLEN]) -> Option<()> {
        let len = self.payload_len.checked_add(UDP_HLEN as u16)?;
        out[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        out[4..6].copy_from_slice(&len.to_be_bytes());
        out[6..8].copy_from_slice(&[0, 0]);
        Some(())
    }
}

/// What a VXLAN receiver does with reserved bits.
///
/// RFC 7348 §5 says reserved bits "MUST be set to zero on transmission and
/// ignored on receipt". The Linux VXLAN driver, which Calico's other nodes
/// run as `vxlan.calico`, deliberately departs from that and drops any frame
/// with a bit it does not understand (`vxlan_rcv`: "This behavior diverges
/// from VXLAN RFC (RFC7348)"), because those bits are where extensions live
/// (GBP's group policy ID, GPE's next protocol): a receiver that ignores
/// them would read a GPE frame that carries no Ethernet as if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReservedBits {
    /// Drop as [`TunnelDrop::BadVxlanFlags`], as the Linux peers do, so a
    /// packet is treated alike whichever node of the cluster receives it.
    #[default]
    Reject,
    /// Ignore them, as RFC 7348 §5 has it.
    Ignore,
}

/// A VXLAN header: the VNI, with the I flag. Reserved bits are emitted zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    pub vni: u32,
}

impl VxlanRepr {
    /// A header without the I flag has no VNI (RFC 7348 §5: the flag "MUST
    /// be set to 1 for a valid VXLAN Network ID") and is always refused.
    pub fn parse<T: AsRef<[u8]>>(
        p: &VxlanPacket<T>,
        reserved: ReservedBits,
    ) -> Result<Self, TunnelDrop> {
        if !p.vni_valid() || (reserved == ReservedBits::Reject && p.reserved_bits()) {
            return Err(TunnelDrop::BadVxlanFlags);
        }
        Ok(VxlanRepr { vni: p.vni() })
    }

    pub fn emit(&self, out: &mut [u8; VXLAN_HLEN]) {
        let v = (self.vni & VNI_MAX).to_be_bytes();
        *out = [VXLAN_FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0];
    }
}

// ---------------------------------------------------------------- decap

/// Who is who on the underlay, from the caller's peer table.
pub trait Underlay {
    /// Whether `addr` is one of this node's underlay addresses.
    fn is_local(&self, addr: Ipv4Addr) -> bool;
    /// Whether `addr` is the underlay address of a known peer node.
    fn is_peer(&self, addr: Ipv4Addr) -> bool;
}

/// Two closures: `(is_local, is_peer)`.
impl<L, P> Underlay for (L, P)
where
    L: Fn(Ipv4Addr) -> bool,
    P: Fn(Ipv4Addr) -> bool,
{
    fn is_local(&self, addr: Ipv4Addr) -> bool {
        (self.0)(addr)
    }
    fn is_peer(&self, addr: Ipv4Addr) -> bool {
        (self.1)(addr)
    }
}

/// How this node receives VXLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRx {
    /// The one VNI accepted (Calico runs a single VXLAN network).
    pub vni: u32,
    pub reserved_bits: ReservedBits,
}

impl Default for VxlanRx {
    fn default() -> Self {
        VxlanRx {
            vni: CALICO_VXLAN_VNI,
            reserved_bits: ReservedBits::Reject,
        }
    }
}

/// Which tunnel a frame came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    Vxlan {
        vni: u32,
        src_port: u16,
        dst_port: u16,
        /// The 16 bits of flags as received (see [`VxlanPacket::flags`]).
        flags: u16,
    },
    Ipip,
}

/// What decapsulation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecapInfo {
    /// Where the inner frame starts: its Ethernet header for VXLAN, its IPv4
    /// header for IP-in-IP.
    pub inner_off: usize,
    /// Its length, as the outer headers declare it. Bytes after it (outer
    /// Ethernet padding) are not part of it.
    pub inner_len: usize,
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
    pub outer_ttl: u8,
    /// Outer DSCP and ECN, for ECN decapsulation (RFC 6040) by the caller.
    pub outer_tos: u8,
    pub tunnel: Tunnel,
}

impl DecapInfo {
    pub fn vni(&self) -> Option<u32> {
        match self.tunnel {
            Tunnel::Vxlan { vni, .. } => Some(vni),
            Tunnel::Ipip => None,
        }
    }
    /// The outer IPv4 protocol.
    pub fn outer_protocol(&self) -> u8 {
        match self.tunnel {
            Tunnel::Vxlan { .. } => IPPROTO_UDP,
            Tunnel::Ipip => IPPROTO_IPIP,
        }
    }
}

/// The outer IPv4 header, checked.
struct Outer {
    ihl: usize,
    total: usize,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    tos: u8,
}

/// The checks both tunnels share, in the order that names the first thing
/// wrong: the frame holds an IPv4 header, the header is sound, the packet is
/// whole, carries `protocol`, has room for `headers` more bytes of headers,
/// and goes from a peer to us.
#[inline(always)]
fn outer_ipv4<U: Underlay + ?Sized>(
    frame: &[u8],
    protocol: u8,
    headers: usize,
    underlay: &U,
) -> Result<Outer, TunnelDrop> {
    let Some(fixed) = frame.first_chunk::<{ ETH_HLEN + IPV4_HLEN }>() else {
        return Err(TunnelDrop::Truncated);
    };
    if u16::from_be_bytes([fixed[12], fixed[13]]) != ETHERTYPE_IPV4 {
        return Err(TunnelDrop::WrongProtocol);
    }
    let ip = Ipv4Packet::new_unchecked(&fixed[ETH_HLEN..]);
    let ihl = ip.header_len();
    if ip.version() != 4 || ihl < IPV4_HLEN {
        return Err(TunnelDrop::BadOuterIp);
    }
    let Some(header) = frame.get(ETH_HLEN..ETH_HLEN + ihl) else {
        return Err(TunnelDrop::Truncated);
    };
    if !ipv4_checksum_ok(header) {
        return Err(TunnelDrop::BadOuterIp);
    }
    if ip.is_fragment() {
        return Err(TunnelDrop::Fragment);
    }
    if ip.protocol() != protocol {
        return Err(TunnelDrop::WrongProtocol);
    }
    if frame.len() < ETH_HLEN + ihl + headers {
        return Err(TunnelDrop::Truncated);
    }
    // a frame longer than the total length is padded; shorter, it lies
    let total = usize::from(ip.total_len());
    if total < ihl || total > frame.len() - ETH_HLEN {
        return Err(TunnelDrop::BadOuterIp);
    }
    let dst = ip.dst_addr();
    if !underlay.is_local(dst) {
        return Err(TunnelDrop::NotForUs);
    }
    let src = ip.src_addr();
    if !underlay.is_peer(src) {
        return Err(TunnelDrop::UnknownPeer);
    }
    Ok(Outer {
        ihl,
        total,
        src,
        dst,
        ttl: ip.ttl(),
        tos: ip.tos(),
    })
}

/// Checks a VXLAN frame from the uplink, outer Ethernet header first, and
/// finds the inner Ethernet frame.
///
/// A non-zero UDP checksum is not verified: RFC 7348 §5 leaves that to the
/// receiver ("MAY choose to verify"), Calico's peers send zero unless told
/// otherwise, and the inner packet carries its own checksums end to end. A
/// NIC's receive checksum offload can still flag a bad one for the caller.
#[inline]
pub fn decap_vxlan<U: Underlay + ?Sized>(
    frame: &[u8],
    rx: &VxlanRx,
    underlay: &U,
) -> Result<DecapInfo, TunnelDrop> {
    let o = outer_ipv4(frame, IPPROTO_UDP, UDP_HLEN + VXLAN_HLEN, underlay)?;
    let l4 = ETH_HLEN + o.ihl;
    let Some(h) = frame
        .get(l4..)
        .and_then(|b| b.first_chunk::<{ UDP_HLEN + VXLAN_HLEN }>())
    else {
        return Err(TunnelDrop::Truncated);
    };
    let udp = UdpPacket::new_unchecked(&h[..UDP_HLEN]);
    if udp.dst_port() != VXLAN_PORT {
        return Err(TunnelDrop::WrongPort);
    }
    let udp_len = usize::from(udp.len());
    if udp_len != o.total - o.ihl || udp_len < UDP_HLEN + VXLAN_HLEN {
        return Err(TunnelDrop::BadUdp);
    }
    let vx = VxlanPacket::new_unchecked(&h[UDP_HLEN..]);
    let VxlanRepr { vni } = VxlanRepr::parse(&vx, rx.reserved_bits)?;
    if vni != rx.vni {
        return Err(TunnelDrop::WrongVni);
    }
    let inner_len = udp_len - UDP_HLEN - VXLAN_HLEN;
    if inner_len < ETH_HLEN {
        return Err(TunnelDrop::InnerRunt);
    }
    Ok(DecapInfo {
        inner_off: l4 + UDP_HLEN + VXLAN_HLEN,
        inner_len,
        outer_src: o.src,
        outer_dst: o.dst,
        outer_ttl: o.ttl,
        outer_tos: o.tos,
        tunnel: Tunnel::Vxlan {
            vni,
            src_port: udp.src_port(),
            dst_port: VXLAN_PORT,
            flags: vx.flags(),
        },
    })
}

/// Checks an IP-in-IP frame from the uplink and finds the inner IPv4
/// packet. The inner header itself is left to whoever routes it next, as
/// for any packet from a pod.
#[inline]
pub fn decap_ipip<U: Underlay + ?Sized>(
    frame: &[u8],
    underlay: &U,
) -> Result<DecapInfo, TunnelDrop> {
    let o = outer_ipv4(frame, IPPROTO_IPIP, 0, underlay)?;
    let inner_len = o.total - o.ihl;
    if inner_len < IPV4_HLEN {
        return Err(TunnelDrop::InnerRunt);
    }
    Ok(DecapInfo {
        inner_off: ETH_HLEN + o.ihl,
        inner_len,
        outer_src: o.src,
        outer_dst: o.dst,
        outer_ttl: o.ttl,
        outer_tos: o.tos,
        tunnel: Tunnel::Ipip,
    })
}

/// Removes the outer headers that `info` (from decapsulating this very
/// frame) found, leaving an Ethernet frame: the inner one for VXLAN; for
/// IP-in-IP the inner packet behind the outer MAC addresses and an IPv4
/// ethertype, for the router to rewrite. Outer Ethernet padding is cut
/// off: left behind the inner packet, it would pass for inner bytes that no
/// tunnel carried when the inner length claims more than the tunnel's
/// payload. `false` if the frame is too short for `info` (or its padding
/// cannot be cut).
#[inline]
pub fn strip<P: PacketBuf>(pkt: &mut P, info: &DecapInfo) -> bool {
    let end = info.inner_off + info.inner_len;
    if pkt.data().len() > end && !pkt.truncate(end) {
        return false;
    }
    match info.tunnel {
        Tunnel::Vxlan { .. } => pkt.adj(info.inner_off),
        Tunnel::Ipip => {
            let Some(cut) = info.inner_off.checked_sub(ETH_HLEN) else {
                return false;
            };
            let d = pkt.data_mut();
            if cut < 12 || d.len() < info.inner_off {
                return false;
            }
            d.copy_within(0..12, cut);
            d[cut + 12..cut + ETH_HLEN].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            pkt.adj(cut)
        }
    }
}

// ---------------------------------------------------------------- entropy

/// Mixes two words (the splitmix64 finalizer): every input bit moves about
/// half the output bits, so nearby flows get unrelated ports.
#[inline(always)]
fn mix(a: u64, b: u64) -> u32 {
    let mut h = a ^ b.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((h ^ (h >> 31)) >> 32) as u32
}

/// A hash of the inner flow of an Ethernet frame: IPv4 addresses, protocol
/// and, for TCP, UDP, SCTP and UDP-Lite packets that are not fragments, the
/// ports; the MAC addresses and ethertype for anything else. It is the same
/// both ways, as Linux's flow hash is (`__flow_hash_consistentify`), so a
/// reply takes the same path through an ECMP underlay.
#[inline]
pub fn flow_hash(inner: &[u8]) -> u32 {
    let Some(eth) = inner.first_chunk::<ETH_HLEN>() else {
        return 0;
    };
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let ip = inner
        .get(ETH_HLEN..)
        .and_then(|b| b.first_chunk::<IPV4_HLEN>());
    let Some(ip) = ip.filter(|ip| ethertype == ETHERTYPE_IPV4 && ip[0] >> 4 == 4) else {
        let a = u64::from_be_bytes([0, 0, eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]]);
        let b = u64::from_be_bytes([0, 0, eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]]);
        return mix(a.min(b) ^ (u64::from(ethertype) << 48), a.max(b));
    };
    let v = Ipv4Packet::new_unchecked(&ip[..]);
    let proto = v.protocol();
    let l4 = ETH_HLEN + v.header_len();
    let ports = match proto {
        6 | 17 | 132 | 136 if !v.is_fragment() => inner
            .get(l4..)
            .and_then(|b| b.first_chunk::<4>())
            .map(|p| (be16(p, 0), be16(p, 2))),
        _ => None,
    };
    let (sport, dport) = ports.unwrap_or((0, 0));
    let mut a = (u32::from(v.src_addr()), sport);
    let mut b = (u32::from(v.dst_addr()), dport);
    if b < a {
        std::mem::swap(&mut a, &mut b);
    }
    mix(
        (u64::from(a.0) << 32) | u64::from(b.0),
        (u64::from(proto) << 32) | (u64::from(a.1) << 16) | u64::from(b.1),
    )
}

/// Maps a flow hash into 49152..=65535 the way Linux's `udp_flow_src_port`
/// maps it into its range: fold the low half into the high half (which the
/// multiply keeps), then scale. Linux takes its range from
/// `ip_local_port_range` (32768..60999 by default) unless the VXLAN device
/// sets one; RFC 7348 §5 recommends the dynamic range used here.
#[inline]
pub fn src_port_from_hash(hash: u32) -> u16 {
    let h = hash ^ (hash << 16);
    let span = u64::from(SRC_PORT_MAX - SRC_PORT_MIN) + 1;
    ((u64::from(h) * span) >> 32) as u16 + SRC_PORT_MIN
}

/// The outer UDP source port for an inner Ethernet frame (RFC 7348 §5:
/// "a hash of fields from the inner packet"), so that underlay ECMP and
/// NIC RSS spread flows while each flow stays in order.
#[inline]
pub fn flow_src_port(inner: &[u8]) -> u16 {
    src_port_from_hash(flow_hash(inner))
}

// ---------------------------------------------------------------- encap

/// The outer headers of VXLAN towards one peer, as a Repr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanOuter {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    /// With DF clear the underlay may fragment, and then RFC 791 wants a
    /// unique `ident` per packet, which a template does not give: keep DF.
    pub dont_frag: bool,
    /// DF makes each packet an atomic datagram, whose ID nobody reads
    /// (RFC 6864 §4.1), so zero costs nothing and leaks no counter.
    pub ident: u16,
    pub vni: u32,
}

impl VxlanOuter {
    /// Calico's settings: VNI 4096, TTL 64, DF set, ID 0, TOS 0.
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        VxlanOuter {
            dst_mac,
            src_mac,
            src,
            dst,
            ttl: DEFAULT_TTL,
            tos: 0,
            dont_frag: true,
            ident: 0,
            vni: CALICO_VXLAN_VNI,
        }
    }

    /// Writes the outer headers for an inner frame of `inner_len` bytes field
    /// by field, through each header's Repr. The reference that
    /// [`VxlanTemplate`] must agree with, and the slow path.
    pub fn emit(
        &self,
        inner_len: usize,
        src_port: u16,
        out: &mut [u8; VXLAN_ENCAP_LEN],
    ) -> Result<(), EncapError> {
        let udp_payload = inner_len.saturating_add(VXLAN_HLEN);
        if inner_len < ETH_HLEN {
            return Err(EncapError::InnerRunt);
        }
        if udp_payload.saturating_add(UDP_HLEN + IPV4_HLEN) > IPV4_MAX_TOTAL {
            return Err(EncapError::TooLong);
        }
        let (mut eth, mut ip, mut udp, mut vx) = (
            [0; ETH_HLEN],
            [0; IPV4_HLEN],
            [0; UDP_HLEN],
            [0; VXLAN_HLEN],
        );
        EthernetRepr {
            dst: self.dst_mac,
            src: self.src_mac,
            ethertype: ETHERTYPE_IPV4,
        }
        .emit(&mut eth);
        Ipv4Repr {
            src: self.src,
            dst: self.dst,
            protocol: IPPROTO_UDP,
            tos: self.tos,
            ident: self.ident,
            dont_frag: self.dont_frag,
            ttl: self.ttl,
            payload_len: (udp_payload + UDP_HLEN) as u16,
        }
        .emit(&mut ip)
        .ok_or(EncapError::TooLong)?;
        UdpRepr {
            src_port,
            dst_port: VXLAN_PORT,
            payload_len: udp_payload as u16,
        }
        .emit(&mut udp)
        .ok_or(EncapError::TooLong)?;
        VxlanRepr { vni: self.vni }.emit(&mut vx);
        out[..IP_AT].copy_from_slice(&eth);
        out[IP_AT..UDP_AT].copy_from_slice(&ip);
        out[UDP_AT..UDP_AT + UDP_HLEN].copy_from_slice(&udp);
        out[UDP_AT + UDP_HLEN..].copy_from_slice(&vx);
        Ok(())
    }
}

// Offsets in the outer headers of the fields patched per packet.
const IP_AT: usize = ETH_HLEN;
const IP_TOS: usize = IP_AT + 1;
const IP_TOTAL: usize = IP_AT + 2;
const IP_IDENT: usize = IP_AT + 4;
const IP_FRAG: usize = IP_AT + 6;
const IP_CSUM: usize = IP_AT + 10;
const UDP_AT: usize = IP_AT + IPV4_HLEN;

/// The 50 bytes of VXLAN outer headers towards one peer, built once.
///
/// Per packet only the IPv4 total length, the UDP length, the entropy
/// source port and the IPv4 checksum change. The checksum is completed
/// incrementally (RFC 1624): the template keeps the sum of the header with
/// a zero total length, so by eqn. 3, HC' = ~(~HC + ~m + m') with m = 0,
/// the new checksum is the complement of that sum plus the length. The UDP
/// checksum stays zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanTemplate {
    header: [u8; VXLAN_ENCAP_LEN],
    /// ~HC for a zero total length, unfolded.
    sum: u32,
}

impl VxlanTemplate {
    pub fn new(outer: &VxlanOuter) -> Self {
        let mut header = [0u8; VXLAN_ENCAP_LEN];
        // any valid inner length will do: the length fields are zeroed after
        let emitted = outer.emit(ETH_HLEN, 0, &mut header);
        debug_assert!(emitted.is_ok());
        header[IP_TOTAL..IP_TOTAL + 2].copy_from_slice(&[0, 0]);
        header[IP_CSUM..IP_CSUM + 2].copy_from_slice(&[0, 0]);
        header[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&[0, 0]);
        let sum = sum16(&header[IP_AT..IP_AT + IPV4_HLEN]);
        VxlanTemplate { header, sum }
    }

    /// The constant bytes: lengths, source port and IPv4 checksum are zero.
    pub fn header(&self) -> &[u8; VXLAN_ENCAP_LEN] {
        &self.header
    }

    /// Writes the outer headers for an inner frame of `inner_len` bytes.
    #[inline(always)]
    pub fn write(
        &self,
        out: &mut [u8; VXLAN_ENCAP_LEN],
        inner_len: usize,
        src_port: u16,
    ) -> Result<(), EncapError> {
        if inner_len < ETH_HLEN {
            return Err(EncapError::InnerRunt);
        }
        let total = inner_len.saturating_add(VXLAN_ENCAP_LEN - ETH_HLEN);
        if total > IPV4_MAX_TOTAL {
            return Err(EncapError::TooLong);
        }
        self.patch(out, total as u16, src_port);
        Ok(())
    }

    #[inline(always)]
    fn patch(&self, out: &mut [u8; VXLAN_ENCAP_LEN], total: u16, src_port: u16) {
        *out = self.header;
        let csum = !fold(self.sum + u32::from(total));
        let udp_len = total - IPV4_HLEN as u16;
        out[IP_TOTAL..IP_TOTAL + 2].copy_from_slice(&total.to_be_bytes());
        out[IP_CSUM..IP_CSUM + 2].copy_from_slice(&csum.to_be_bytes());
        out[UDP_AT..UDP_AT + 2].copy_from_slice(&src_port.to_be_bytes());
        out[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&udp_len.to_be_bytes());
    }

    /// Encapsulates the Ethernet frame in `pkt` in place, with `src_port`
    /// as the outer UDP source port (usually [`flow_src_port`] of the frame,
    /// or a port derived from a flow hash the caller already has).
    #[inline]
    pub fn encap<P: PacketBuf>(&self, pkt: &mut P, src_port: u16) -> Result<(), EncapError> {
        let inner_len = pkt.data().len();
        if inner_len < ETH_HLEN {
            return Err(EncapError::InnerRunt);
        }
        let total = inner_len.saturating_add(VXLAN_ENCAP_LEN - ETH_HLEN);
        if total > IPV4_MAX_TOTAL {
            return Err(EncapError::TooLong);
        }
        let Some(out) = pkt
            .prepend(VXLAN_ENCAP_LEN)
            .and_then(|h| h.first_chunk_mut::<VXLAN_ENCAP_LEN>())
        else {
            return Err(EncapError::NoHeadroom);
        };
        self.patch(out, total as u16, src_port);
        Ok(())
    }
}

/// How IP-in-IP sets the outer DF flag. RFC 2003 §3.1: if the inner DF is
/// set the outer DF MUST be; if not, it MAY be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpipDf {
    /// Always set, so the underlay never fragments and the outer ID is
    /// never read (RFC 6864 §4.1); too-big inner packets come back to the
    /// sender as ICMP "fragmentation needed" from wherever the MTU shrinks.
    #[default]
    Set,
    /// Copy the inner DF, as Linux's `tunl0` does (`nopmtudisc`). An outer
    /// packet without DF may be fragmented and so needs an ID unique for
    /// its addresses and protocol (RFC 791); it gets the inner packet's,
    /// which its sender chose unique for the inner addresses. Two inner
    /// flows between the same pair of nodes can still collide while both
    /// are being fragmented: one more reason to prefer `Set`.
    CopyInner,
}

/// The outer headers of IP-in-IP towards one peer, as a Repr. The outer
/// header follows RFC 2003 §3.1:
/// - TOS: "copied from the inner IP header", per packet (this copies ECN
///   too, which is RFC 6040's normal mode);
/// - DF: per [`IpipDf`];
/// - TTL: "set to a value appropriate for delivery of the encapsulated
///   datagram to the tunnel exit point", per template (Linux's `tunl0`
///   defaults to the inner TTL instead; an inner TTL of 1 would then not
///   cross a routed underlay). The inner TTL is the router's to decrement
///   before encapsulation, not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpipOuter {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub df: IpipDf,
    /// The ID of outer packets with DF set (see [`VxlanOuter::ident`]).
    pub ident: u16,
}

/// What IP-in-IP reads of the inner packet.
struct IpipInner {
    tos: u8,
    total: u16,
    dont_frag: bool,
    ident: u16,
}

/// Checks that `frame` is Ethernet + IPv4 with a sound total length.
#[inline(always)]
fn ipip_inner(frame: &[u8]) -> Result<IpipInner, EncapError> {
    let Some(eth) = frame.first_chunk::<ETH_HLEN>() else {
        return Err(EncapError::InnerRunt);
    };
    if u16::from_be_bytes([eth[12], eth[13]]) != ETHERTYPE_IPV4 {
        return Err(EncapError::NotIpv4);
    }
    let Some(ip) = frame
        .get(ETH_HLEN..)
        .and_then(|b| b.first_chunk::<IPV4_HLEN>())
    else {
        return Err(EncapError::InnerRunt);
    };
    let ip = Ipv4Packet::new_unchecked(&ip[..]);
    if ip.version() != 4 {
        return Err(EncapError::NotIpv4);
    }
    let total = ip.total_len();
    if ip.header_len() < IPV4_HLEN
        || usize::from(total) < ip.header_len()
        || usize::from(total) > frame.len() - ETH_HLEN
    {
        return Err(EncapError::BadInnerLength);
    }
    if usize::from(total) + IPV4_HLEN > IPV4_MAX_TOTAL {
        return Err(EncapError::TooLong);
    }
    Ok(IpipInner {
        tos: ip.tos(),
        total,
        dont_frag: ip.dont_frag(),
        ident: ip.ident(),
    })
}

impl IpipOuter {
    /// DF set, TTL 64, ID 0.
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        IpipOuter {
            dst_mac,
            src_mac,
            src,
            dst,
            ttl: DEFAULT_TTL,
            df: IpipDf::Set,
            ident: 0,
        }
    }

    /// The outer DF flag and ID for an inner packet.
    fn df_ident(&self, inner_df: bool, inner_ident: u16) -> (bool, u16) {
        match self.df {
            IpipDf::CopyInner if !inner_df => (false, inner_ident),
            _ => (true, self.ident),
        }
    }

    /// Writes the outer headers for `inner_frame` (Ethernet + IPv4, as a pod
    /// sends it) field by field: the reference for [`IpipTemplate`].
    pub fn emit(
        &self,
        inner_frame: &[u8],
        out: &mut [u8; IPIP_ENCAP_LEN],
    ) -> Result<(), EncapError> {
        let inner = ipip_inner(inner_frame)?;
        let (dont_frag, ident) = self.df_ident(inner.dont_frag, inner.ident);
        let (mut eth, mut ip) = ([0; ETH_HLEN], [0; IPV4_HLEN]);
        EthernetRepr {
            dst: self.dst_mac,
            src: self.src_mac,
            ethertype: ETHERTYPE_IPV4,
        }
        .emit(&mut eth);
        Ipv4Repr {
            src: self.src,
            dst: self.dst,
            protocol: IPPROTO_IPIP,
            tos: inner.tos,
            ident,
            dont_frag,
            ttl: self.ttl,
            payload_len: inner.total,
        }
        .emit(&mut ip)
        .ok_or(EncapError::TooLong)?;
        out[..ETH_HLEN].copy_from_slice(&eth);
        out[ETH_HLEN..].copy_from_slice(&ip);
        Ok(())
    }
}

/// The 34 bytes of IP-in-IP outer headers towards one peer, built once.
///
/// Per packet: TOS and DF/ID from the inner header (RFC 2003 §3.1, see
/// [`IpipOuter`]), the total length, and the checksum completed from the
/// template's sum of the constant fields (version/IHL, TTL/protocol, the
/// addresses) plus the fields that vary: TOS, total length, ID and flags
/// (RFC 1624's incremental update, from a base in which they are zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipTemplate {
    header: [u8; IPIP_ENCAP_LEN],
    sum: u32,
    outer: IpipOuter,
}

impl IpipTemplate {
    pub fn new(outer: &IpipOuter) -> Self {
        let mut header = [0u8; IPIP_ENCAP_LEN];
        header[0..6].copy_from_slice(&outer.dst_mac);
        header[6..12].copy_from_slice(&outer.src_mac);
        header[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = &mut header[IP_AT..];
        ip[0] = 0x45;
        ip[8] = outer.ttl;
        ip[9] = IPPROTO_IPIP;
        ip[12..16].copy_from_slice(&outer.src.octets());
        ip[16..20].copy_from_slice(&outer.dst.octets());
        let sum = sum16(&header[IP_AT..]);
        IpipTemplate {
            header,
            sum,
            outer: *outer,
        }
    }

    /// The constant bytes: TOS, total length, ID, flags and checksum are zero.
    pub fn header(&self) -> &[u8; IPIP_ENCAP_LEN] {
        &self.header
    }

    /// Encapsulates the Ethernet + IPv4 frame in `pkt` in place: the inner
    /// Ethernet header gives way to the outer Ethernet and IPv4 headers.
    #[inline]
    pub fn encap<P: PacketBuf>(&self, pkt: &mut P) -> Result<(), EncapError> {
        let inner = ipip_inner(pkt.data())?;
        let (dont_frag, ident) = self.outer.df_ident(inner.dont_frag, inner.ident);
        let total = inner.total + IPV4_HLEN as u16;
        let frag = if dont_frag { IPV4_DF } else { 0 };
        // the version/IHL byte is in the template's sum; TOS is the low byte
        // of its word. At most nine words: no overflow.
        let csum = !fold(
            self.sum + u32::from(inner.tos) + u32::from(total) + u32::from(ident) + u32::from(frag),
        );
        if pkt.prepend(IPIP_ENCAP_LEN - ETH_HLEN).is_none() {
            return Err(EncapError::NoHeadroom);
        }
        // the frame held at least an Ethernet and an IPv4 header before
        let Some(out) = pkt.data_mut().first_chunk_mut::<IPIP_ENCAP_LEN>() else {
            return Err(EncapError::NoHeadroom);
        };
        *out = self.header;
        out[IP_TOS] = inner.tos;
        out[IP_TOTAL..IP_TOTAL + 2].copy_from_slice(&total.to_be_bytes());
        out[IP_IDENT..IP_IDENT + 2].copy_from_slice(&ident.to_be_bytes());
        out[IP_FRAG..IP_FRAG + 2].copy_from_slice(&frag.to_be_bytes());
        out[IP_CSUM..IP_CSUM + 2].copy_from_slice(&csum.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests;

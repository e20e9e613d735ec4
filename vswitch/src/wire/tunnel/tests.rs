//! Hostile and well-formed frames from byte literals, and the templates
//! against the field-by-field emitters.

use super::*;
use crate::packet::Headroom;

/// VXLAN from 192.0.2.1 to 192.0.2.2, UDP 50000 -> 4789, VNI 4096, DF, TTL
/// 64, carrying an ICMP echo request 10.244.1.2 -> 10.244.2.3 (TTL 63, DF,
/// ID 0x1c46). Checksums computed independently of this module.
const VXLAN_FRAME: [u8; 92] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x4e, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb6, 0x9b, 0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00,
    0x02, 0x02, 0xc3, 0x50, 0x12, 0xb5, 0x00, 0x3a, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x10,
    0x00, 0x00, 0x66, 0xee, 0x00, 0x00, 0x00, 0x02, 0x66, 0xee, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
    0x45, 0x00, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x01, 0x06, 0xaf, 0x0a, 0xf4, 0x01, 0x02,
    0x0a, 0xf4, 0x02, 0x03, 0x08, 0x00, 0xe5, 0xca, 0x12, 0x34, 0x00, 0x01,
];

/// The same inner IPv4 packet in IP-in-IP between the same nodes: DF, ID 0.
const IPIP_FRAME: [u8; 62] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x30, 0x00, 0x00, 0x40, 0x00, 0x40, 0x04, 0xb6, 0xc6, 0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00,
    0x02, 0x02, 0x45, 0x00, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x01, 0x06, 0xaf, 0x0a, 0xf4,
    0x01, 0x02, 0x0a, 0xf4, 0x02, 0x03, 0x08, 0x00, 0xe5, 0xca, 0x12, 0x34, 0x00, 0x01,
];

const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn nodes() -> impl Underlay {
    (|a: Ipv4Addr| a == LOCAL, |a: Ipv4Addr| a == PEER)
}

fn vxlan(frame: &[u8]) -> Result<DecapInfo, TunnelDrop> {
    decap_vxlan(frame, &VxlanRx::default(), &nodes())
}

fn ipip(frame: &[u8]) -> Result<DecapInfo, TunnelDrop> {
    decap_ipip(frame, &nodes())
}

/// The checksum etherparse computes, to check the module's against.
fn reference_checksum(h: &[u8]) -> u16 {
    crate::testing::checksum(&[h])
}

fn set16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Recomputes the checksum of the IPv4 header at `at`.
fn fix_ip(f: &mut [u8], at: usize) {
    let ihl = usize::from(f[at] & 0x0f) * 4;
    set16(f, at + 10, 0);
    let c = reference_checksum(&f[at..at + ihl]);
    set16(f, at + 10, c);
}

fn ip_ok(f: &[u8], at: usize) -> bool {
    let ihl = usize::from(f[at] & 0x0f) * 4;
    reference_checksum(&f[at..at + ihl]) == 0
}

/// The VXLAN literal with the outer header edited by `edit` and its
/// checksum fixed, so that only the edit is wrong.
fn vx_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = VXLAN_FRAME.to_vec();
    edit(&mut f);
    fix_ip(&mut f, ETH_HLEN);
    f
}

fn ipip_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = IPIP_FRAME.to_vec();
    edit(&mut f);
    fix_ip(&mut f, ETH_HLEN);
    f
}

// ---------------------------------------------------------------- literals

#[test]
fn literals_are_sound() {
    assert!(ip_ok(&VXLAN_FRAME, ETH_HLEN));
    assert!(ip_ok(&VXLAN_FRAME, VXLAN_ENCAP_LEN + ETH_HLEN));
    assert!(ip_ok(&IPIP_FRAME, ETH_HLEN));
    assert!(ip_ok(&IPIP_FRAME, IPIP_ENCAP_LEN));
    assert_eq!(
        VXLAN_FRAME[VXLAN_ENCAP_LEN + ETH_HLEN..],
        IPIP_FRAME[IPIP_ENCAP_LEN..]
    );
}

#[test]
fn decaps_the_literal_vxlan_frame() {
    let info = vxlan(&VXLAN_FRAME).unwrap();
    assert_eq!(
        info,
        DecapInfo {
            inner_off: 50,
            inner_len: 42,
            outer_src: PEER,
            outer_dst: LOCAL,
            outer_ttl: 64,
            outer_tos: 0,
            tunnel: Tunnel::Vxlan {
                vni: 4096,
                src_port: 50000,
                dst_port: 4789,
                flags: 0x0800,
            },
        }
    );
    assert_eq!(info.vni(), Some(4096));
    assert_eq!(info.outer_protocol(), 17);
}

#[test]
fn decaps_the_literal_ipip_frame() {
    let info = ipip(&IPIP_FRAME).unwrap();
    assert_eq!(
        info,
        DecapInfo {
            inner_off: 34,
            inner_len: 28,
            outer_src: PEER,
            outer_dst: LOCAL,
            outer_ttl: 64,
            outer_tos: 0,
            tunnel: Tunnel::Ipip,
        }
    );
    assert_eq!(info.vni(), None);
    assert_eq!(info.outer_protocol(), 4);
}

// ---------------------------------------------------------------- hostile

#[test]
fn truncated_at_every_length() {
    for n in 0..VXLAN_FRAME.len() {
        // short of the headers to read: truncated; past them, the total
        // length claims more than the frame has
        let want = if n < VXLAN_ENCAP_LEN {
            TunnelDrop::Truncated
        } else {
            TunnelDrop::BadOuterIp
        };
        assert_eq!(vxlan(&VXLAN_FRAME[..n]), Err(want), "vxlan cut at {n}");
    }
    for n in 0..IPIP_FRAME.len() {
        let want = if n < IPIP_ENCAP_LEN {
            TunnelDrop::Truncated
        } else {
            TunnelDrop::BadOuterIp
        };
        assert_eq!(ipip(&IPIP_FRAME[..n]), Err(want), "ipip cut at {n}");
    }
}

#[test]
fn bad_total_length() {
    for total in [0u16, 19, 79, 1500, 0xffff] {
        let f = vx_with(|f| set16(f, 16, total));
        assert_eq!(
            vxlan(&f),
            Err(TunnelDrop::BadOuterIp),
            "vxlan total {total}"
        );
        let f = ipip_with(|f| set16(f, 16, total));
        assert_eq!(ipip(&f), Err(TunnelDrop::BadOuterIp), "ipip total {total}");
    }
    // shorter than the UDP length says, and room for the headers: UDP's fault
    for total in [20u16, 35, 77] {
        let f = vx_with(|f| set16(f, 16, total));
        assert_eq!(vxlan(&f), Err(TunnelDrop::BadUdp), "vxlan total {total}");
    }
}

#[test]
fn padding_after_the_packet_is_not_part_of_it() {
    let mut f = VXLAN_FRAME.to_vec();
    f.extend_from_slice(&[0; 10]);
    assert_eq!(vxlan(&f), vxlan(&VXLAN_FRAME));
    let mut f = IPIP_FRAME.to_vec();
    f.extend_from_slice(&[0; 10]);
    assert_eq!(ipip(&f).unwrap().inner_len, 28);
}

#[test]
fn every_single_bit_error_in_the_outer_ip_header_is_caught() {
    for frame in [&VXLAN_FRAME[..], &IPIP_FRAME[..]] {
        for bit in 0..IPV4_HLEN * 8 {
            let mut f = frame.to_vec();
            f[ETH_HLEN + bit / 8] ^= 0x80 >> (bit % 8);
            let got = if frame.len() == VXLAN_FRAME.len() {
                vxlan(&f)
            } else {
                ipip(&f)
            };
            // an IHL grown past the frame's end cuts the header short
            let want = if ETH_HLEN + usize::from(f[ETH_HLEN] & 0x0f) * 4 > f.len() {
                TunnelDrop::Truncated
            } else {
                TunnelDrop::BadOuterIp
            };
            assert_eq!(got, Err(want), "bit {bit} of {}", frame.len());
        }
    }
}

#[test]
fn bad_version_and_ihl() {
    let f = vx_with(|f| f[14] = 0x65);
    assert_eq!(vxlan(&f), Err(TunnelDrop::BadOuterIp));
    let f = vx_with(|f| f[14] = 0x44);
    assert_eq!(vxlan(&f), Err(TunnelDrop::BadOuterIp));
    // IHL 15 asks for 60 header bytes: the frame has them, the sum fails
    let mut f = VXLAN_FRAME.to_vec();
    f[14] = 0x4f;
    assert_eq!(vxlan(&f), Err(TunnelDrop::BadOuterIp));
    // and in a frame too short for them, the header is cut
    assert_eq!(vxlan(&f[..60]), Err(TunnelDrop::Truncated));
}

#[test]
fn outer_options_are_skipped() {
    let mut f = VXLAN_FRAME[..34].to_vec();
    f.extend_from_slice(&[1, 1, 1, 0]); // NOP, NOP, NOP, end of options
    f.extend_from_slice(&VXLAN_FRAME[34..]);
    f[14] = 0x46;
    set16(&mut f, 16, 78 + 4);
    fix_ip(&mut f, ETH_HLEN);
    let info = vxlan(&f).unwrap();
    assert_eq!((info.inner_off, info.inner_len), (54, 42));
    assert_eq!(f[54..], VXLAN_FRAME[50..]);
}

#[test]
fn fragments() {
    for frag in [0x2000u16, 0x0001, 0x4001, 0x3fff, 0x6000] {
        let f = vx_with(|f| set16(f, 20, frag));
        assert_eq!(vxlan(&f), Err(TunnelDrop::Fragment), "{frag:#x}");
        let f = ipip_with(|f| set16(f, 20, frag));
        assert_eq!(ipip(&f), Err(TunnelDrop::Fragment), "{frag:#x}");
    }
    // DF or not, a whole packet is fine
    let f = vx_with(|f| set16(f, 20, 0));
    assert!(vxlan(&f).is_ok());
}

#[test]
fn wrong_protocol_and_port() {
    for ethertype in [0x86ddu16, 0x8100, 0x0806] {
        let mut f = VXLAN_FRAME.to_vec();
        set16(&mut f, 12, ethertype);
        assert_eq!(vxlan(&f), Err(TunnelDrop::WrongProtocol));
    }
    let f = vx_with(|f| f[23] = 6);
    assert_eq!(vxlan(&f), Err(TunnelDrop::WrongProtocol));
    assert_eq!(ipip(&VXLAN_FRAME), Err(TunnelDrop::WrongProtocol));
    assert_eq!(vxlan(&IPIP_FRAME), Err(TunnelDrop::WrongProtocol));
    for port in [4790u16, 8472, 6081, 0] {
        let mut f = VXLAN_FRAME.to_vec();
        set16(&mut f, 36, port);
        assert_eq!(vxlan(&f), Err(TunnelDrop::WrongPort), "port {port}");
    }
}

#[test]
fn bad_udp_length() {
    for len in [0u16, 7, 8, 15, 57, 59, 0xffff] {
        let mut f = VXLAN_FRAME.to_vec();
        set16(&mut f, 38, len);
        assert_eq!(vxlan(&f), Err(TunnelDrop::BadUdp), "udp length {len}");
    }
    // consistent with the IPv4 total length, but too short for VXLAN
    let f = vx_with(|f| {
        set16(f, 16, 20 + 15);
        set16(f, 38, 15);
    });
    assert_eq!(vxlan(&f), Err(TunnelDrop::BadUdp));
}

#[test]
fn bad_vxlan_flags() {
    let strict = VxlanRx::default();
    let lenient = VxlanRx {
        reserved_bits: ReservedBits::Ignore,
        ..VxlanRx::default()
    };
    // no I flag: no VNI, whatever the policy
    for flags in [0x00u8, 0x80, 0x04, 0xf7] {
        let mut f = VXLAN_FRAME.to_vec();
        f[42] = flags;
        for rx in [&strict, &lenient] {
            assert_eq!(
                decap_vxlan(&f, rx, &nodes()),
                Err(TunnelDrop::BadVxlanFlags),
                "flags {flags:#x}"
            );
        }
    }
    // I plus reserved bits: GPE's P bit (0x04), GBP's G bit (0x80), and the
    // reserved bytes after the flags and after the VNI
    for (at, v) in [
        (42, 0x0cu8),
        (42, 0x88),
        (42, 0xff),
        (43, 1),
        (44, 0x80),
        (45, 1),
        (49, 1),
    ] {
        let mut f = VXLAN_FRAME.to_vec();
        f[at] = v;
        assert_eq!(
            decap_vxlan(&f, &strict, &nodes()),
            Err(TunnelDrop::BadVxlanFlags),
            "byte {at} = {v:#x}"
        );
        let info = decap_vxlan(&f, &lenient, &nodes()).unwrap();
        assert_eq!(info.vni(), Some(4096), "byte {at} = {v:#x}");
    }
}

#[test]
fn wrong_vni() {
    for vni in [0u32, 1, 4095, 4097, 0x00ff_ffff] {
        let mut f = VXLAN_FRAME.to_vec();
        f[46..49].copy_from_slice(&vni.to_be_bytes()[1..]);
        assert_eq!(vxlan(&f), Err(TunnelDrop::WrongVni), "vni {vni}");
        let rx = VxlanRx {
            vni,
            ..VxlanRx::default()
        };
        assert_eq!(decap_vxlan(&f, &rx, &nodes()).unwrap().vni(), Some(vni));
    }
}

#[test]
fn unknown_peer_and_not_for_us() {
    let stranger = (|a: Ipv4Addr| a == LOCAL, |_: Ipv4Addr| false);
    let elsewhere = (|_: Ipv4Addr| false, |a: Ipv4Addr| a == PEER);
    let rx = VxlanRx::default();
    assert_eq!(
        decap_vxlan(&VXLAN_FRAME, &rx, &stranger),
        Err(TunnelDrop::UnknownPeer)
    );
    assert_eq!(
        decap_vxlan(&VXLAN_FRAME, &rx, &elsewhere),
        Err(TunnelDrop::NotForUs)
    );
    assert_eq!(
        decap_ipip(&IPIP_FRAME, &stranger),
        Err(TunnelDrop::UnknownPeer)
    );
    assert_eq!(
        decap_ipip(&IPIP_FRAME, &elsewhere),
        Err(TunnelDrop::NotForUs)
    );

    // addresses swapped: from us, to the peer
    let f = vx_with(|f| {
        f[26..30].copy_from_slice(&LOCAL.octets());
        f[30..34].copy_from_slice(&PEER.octets());
    });
    assert_eq!(vxlan(&f), Err(TunnelDrop::NotForUs));
    let f = vx_with(|f| f[30..34].copy_from_slice(&[255, 255, 255, 255]));
    assert_eq!(vxlan(&f), Err(TunnelDrop::NotForUs));
    let f = vx_with(|f| f[26..30].copy_from_slice(&LOCAL.octets()));
    assert_eq!(vxlan(&f), Err(TunnelDrop::UnknownPeer));

    // through a trait object, as a pipeline holding its peer table would
    struct Table(Vec<Ipv4Addr>);
    impl Underlay for Table {
        fn is_local(&self, a: Ipv4Addr) -> bool {
            a == LOCAL
        }
        fn is_peer(&self, a: Ipv4Addr) -> bool {
            self.0.contains(&a)
        }
    }
    let t: &dyn Underlay = &Table(vec![Ipv4Addr::new(192, 0, 2, 9), PEER]);
    assert!(decap_vxlan(&VXLAN_FRAME, &rx, t).is_ok());
    let t: &dyn Underlay = &Table(vec![Ipv4Addr::new(192, 0, 2, 9)]);
    assert_eq!(decap_ipip(&IPIP_FRAME, t), Err(TunnelDrop::UnknownPeer));
}

#[test]
fn inner_runts() {
    for inner in 0..=ETH_HLEN {
        let mut f = VXLAN_FRAME[..VXLAN_ENCAP_LEN + inner].to_vec();
        set16(&mut f, 16, (36 + inner) as u16);
        set16(&mut f, 38, (16 + inner) as u16);
        fix_ip(&mut f, ETH_HLEN);
        let got = vxlan(&f);
        if inner < ETH_HLEN {
            assert_eq!(got, Err(TunnelDrop::InnerRunt), "inner {inner}");
        } else {
            assert_eq!(got.unwrap().inner_len, ETH_HLEN);
        }
    }
    for inner in 0..=IPV4_HLEN {
        let mut f = IPIP_FRAME[..IPIP_ENCAP_LEN + inner].to_vec();
        set16(&mut f, 16, (20 + inner) as u16);
        fix_ip(&mut f, ETH_HLEN);
        let got = ipip(&f);
        if inner < IPV4_HLEN {
            assert_eq!(got, Err(TunnelDrop::InnerRunt), "inner {inner}");
        } else {
            assert_eq!(got.unwrap().inner_len, IPV4_HLEN);
        }
    }
}

#[test]
fn drop_names_are_distinct_snake_case() {
    let mut names: Vec<&str> = TunnelDrop::ALL.iter().map(|d| d.name()).collect();
    for n in &names {
        assert!(n.starts_with("tunnel_"), "{n}");
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), TunnelDrop::ALL.len());
    assert_eq!(TunnelDrop::WrongVni.to_string(), "tunnel_wrong_vni");
}

// ---------------------------------------------------------------- views

#[test]
fn views_read_the_literal() {
    let ip = Ipv4Packet::new_checked(&VXLAN_FRAME[ETH_HLEN..]).unwrap();
    let r = Ipv4Repr::parse(&ip).unwrap();
    assert_eq!(
        r,
        Ipv4Repr {
            src: PEER,
            dst: LOCAL,
            protocol: 17,
            tos: 0,
            ident: 0,
            dont_frag: true,
            ttl: 64,
            payload_len: 58,
        }
    );
    assert!(ip.checksum_ok());
    assert!(!ip.is_fragment() && !ip.more_frags() && ip.frag_offset() == 0);
    assert_eq!(ip.payload().len(), 58);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(
        UdpRepr::parse(&udp).unwrap(),
        UdpRepr {
            src_port: 50000,
            dst_port: 4789,
            payload_len: 50
        }
    );
    let vx = VxlanPacket::new_checked(&ip.payload()[UDP_HLEN..]).unwrap();
    assert_eq!(vx.flags(), 0x0800);
    assert!(vx.vni_valid() && !vx.reserved_bits());
    assert_eq!(
        VxlanRepr::parse(&vx, ReservedBits::Reject),
        Ok(VxlanRepr { vni: 4096 })
    );
    assert_eq!(
        EthernetRepr::parse(&VXLAN_FRAME).unwrap(),
        EthernetRepr {
            dst: MAC_B,
            src: MAC_A,
            ethertype: 0x0800
        }
    );

    assert_eq!(
        Ipv4Packet::new_checked(&VXLAN_FRAME[ETH_HLEN..30]).err(),
        Some(TunnelDrop::Truncated)
    );
    assert_eq!(
        UdpPacket::new_checked(&[0u8; 7][..]).err(),
        Some(TunnelDrop::Truncated)
    );
    assert_eq!(
        VxlanPacket::new_checked(&[0u8; 7][..]).err(),
        Some(TunnelDrop::Truncated)
    );
    assert_eq!(EthernetRepr::parse(&[0; 13]), Err(TunnelDrop::Truncated));
}

// ---------------------------------------------------------------- encap

fn outer_vx() -> VxlanOuter {
    VxlanOuter::new(MAC_A, MAC_B, PEER, LOCAL)
}

#[test]
fn vxlan_encap_rebuilds_the_literal() {
    let mut pkt = VXLAN_FRAME[VXLAN_ENCAP_LEN..].to_vec();
    VxlanTemplate::new(&outer_vx())
        .encap(&mut pkt, 50000)
        .unwrap();
    assert_eq!(pkt, VXLAN_FRAME);

    let mut out = [0; VXLAN_ENCAP_LEN];
    outer_vx().emit(42, 50000, &mut out).unwrap();
    assert_eq!(out[..], VXLAN_FRAME[..VXLAN_ENCAP_LEN]);
}

#[test]
fn ipip_encap_rebuilds_the_literal() {
    let mut pkt = VXLAN_FRAME[VXLAN_ENCAP_LEN..].to_vec();
    let outer = IpipOuter::new(MAC_A, MAC_B, PEER, LOCAL);
    IpipTemplate::new(&outer).encap(&mut pkt).unwrap();
    assert_eq!(pkt, IPIP_FRAME);
    let mut out = [0; IPIP_ENCAP_LEN];
    outer
        .emit(&VXLAN_FRAME[VXLAN_ENCAP_LEN..], &mut out)
        .unwrap();
    assert_eq!(out[..], IPIP_FRAME[..IPIP_ENCAP_LEN]);
}

#[test]
fn vxlan_template_agrees_with_emit() {
    let mut outers = vec![outer_vx()];
    let mut o = outer_vx();
    o.ttl = 1;
    o.tos = 0xb9;
    o.dont_frag = false;
    o.ident = 0xfffe;
    o.vni = 0x00ff_ffff;
    o.src = Ipv4Addr::new(255, 255, 255, 254);
    o.dst = Ipv4Addr::new(255, 255, 255, 255);
    outers.push(o);
    o.vni = 0;
    o.ttl = 255;
    o.src = Ipv4Addr::new(0, 0, 0, 0);
    outers.push(o);
    for outer in &outers {
        let t = VxlanTemplate::new(outer);
        for inner_len in [14usize, 42, 60, 1500, 9000, 65535 - 36] {
            for port in [0u16, 49152, 65535] {
                let (mut a, mut b) = ([0; VXLAN_ENCAP_LEN], [0; VXLAN_ENCAP_LEN]);
                outer.emit(inner_len, port, &mut a).unwrap();
                t.write(&mut b, inner_len, port).unwrap();
                assert_eq!(a, b, "{outer:?} {inner_len} {port}");
                assert!(ip_ok(&b, ETH_HLEN));
            }
        }
    }
}

#[test]
fn vxlan_checksum_patch_holds_for_every_length() {
    for outer in [outer_vx(), {
        let mut o = outer_vx();
        o.src = Ipv4Addr::new(255, 255, 255, 255);
        o.dst = Ipv4Addr::new(255, 255, 255, 255);
        o.ident = 0xffff;
        o.tos = 0xff;
        o
    }] {
        let t = VxlanTemplate::new(&outer);
        let mut h = [0; VXLAN_ENCAP_LEN];
        for inner_len in ETH_HLEN..=65535 - 36 {
            t.write(&mut h, inner_len, 1).unwrap();
            assert!(ip_ok(&h, ETH_HLEN), "inner length {inner_len}");
        }
    }
}

#[test]
fn vxlan_encap_limits() {
    let t = VxlanTemplate::new(&outer_vx());
    let mut runt = vec![0u8; 13];
    assert_eq!(t.encap(&mut runt, 1), Err(EncapError::InnerRunt));
    assert_eq!(runt.len(), 13);
    let mut big = vec![0u8; 65535 - 36 + 1];
    assert_eq!(t.encap(&mut big, 1), Err(EncapError::TooLong));
    assert_eq!(big.len(), 65535 - 36 + 1);
    let mut max = vec![0u8; 65535 - 36];
    t.encap(&mut max, 1).unwrap();
    assert_eq!(usize::from(be16(&max, 16)), 65535);

    let inner = &VXLAN_FRAME[VXLAN_ENCAP_LEN..];
    let mut tight = Headroom::new(VXLAN_ENCAP_LEN - 1, inner);
    assert_eq!(t.encap(&mut tight, 1), Err(EncapError::NoHeadroom));
    assert_eq!(tight.data(), inner);
    let mut fits = Headroom::new(VXLAN_ENCAP_LEN, inner);
    t.encap(&mut fits, 50000).unwrap();
    assert_eq!(fits.data(), VXLAN_FRAME);
    assert_eq!(fits.headroom(), 0);
}

#[test]
fn encap_then_decap_round_trips() {
    let inner = &VXLAN_FRAME[VXLAN_ENCAP_LEN..];
    let mut outer = outer_vx();
    outer.ttl = 7;
    outer.tos = 0x02;
    let mut pkt = Headroom::new(128, inner);
    let port = flow_src_port(inner);
    VxlanTemplate::new(&outer).encap(&mut pkt, port).unwrap();
    let info = vxlan(pkt.data()).unwrap();
    assert_eq!((info.outer_ttl, info.outer_tos), (7, 0x02));
    assert_eq!(
        info.tunnel,
        Tunnel::Vxlan {
            vni: 4096,
            src_port: port,
            dst_port: 4789,
            flags: 0x0800
        }
    );
    assert!(strip(&mut pkt, &info));
    assert_eq!(pkt.data(), inner);

    let mut pkt = Headroom::new(128, inner);
    IpipTemplate::new(&IpipOuter::new(MAC_A, MAC_B, PEER, LOCAL))
        .encap(&mut pkt)
        .unwrap();
    let info = ipip(pkt.data()).unwrap();
    assert!(strip(&mut pkt, &info));
    // the outer MACs, then the inner packet as it was
    assert_eq!(pkt.data()[..6], MAC_B);
    assert_eq!(pkt.data()[6..12], MAC_A);
    assert_eq!(pkt.data()[12..], inner[12..]);
}

/// An Ethernet + IPv4 frame with the given TOS, DF, ID and payload length.
fn inner_frame(tos: u8, df: bool, ident: u16, payload: usize) -> Vec<u8> {
    let mut f = VXLAN_FRAME[VXLAN_ENCAP_LEN..VXLAN_ENCAP_LEN + ETH_HLEN].to_vec();
    let mut ip = [0u8; IPV4_HLEN];
    Ipv4Repr {
        src: Ipv4Addr::new(10, 244, 1, 2),
        dst: Ipv4Addr::new(10, 244, 2, 3),
        protocol: 17,
        tos,
        ident,
        dont_frag: df,
        ttl: 9,
        payload_len: payload as u16,
    }
    .emit(&mut ip)
    .unwrap();
    f.extend_from_slice(&ip);
    f.resize(f.len() + payload, 0x5a);
    f
}

#[test]
fn ipip_copies_tos_and_handles_df_per_rfc_2003() {
    let mut set = IpipOuter::new(MAC_A, MAC_B, PEER, LOCAL);
    set.ident = 0x0101;
    set.ttl = 33;
    let copy = IpipOuter {
        df: IpipDf::CopyInner,
        ..set
    };
    // (outer config, inner DF) -> (outer DF, outer ID)
    let cases = [
        (set, true, true, 0x0101),
        (set, false, true, 0x0101),
        (copy, true, true, 0x0101),
        (copy, false, false, 0xbeef),
    ];
    for (outer, inner_df, want_df, want_id) in cases {
        for tos in [0u8, 0xb8, 0x03, 0xff] {
            for payload in [0usize, 1, 1480, 65535 - 40] {
                let inner = inner_frame(tos, inner_df, 0xbeef, payload);
                let mut pkt = inner.clone();
                IpipTemplate::new(&outer).encap(&mut pkt).unwrap();
                let mut reference = [0; IPIP_ENCAP_LEN];
                outer.emit(&inner, &mut reference).unwrap();
                assert_eq!(pkt[..IPIP_ENCAP_LEN], reference[..]);
                assert!(ip_ok(&pkt, ETH_HLEN));
                let ip = Ipv4Packet::new_checked(&pkt[ETH_HLEN..]).unwrap();
                assert_eq!(ip.tos(), tos);
                assert_eq!(ip.dont_frag(), want_df);
                assert_eq!(ip.ident(), want_id);
                assert_eq!(ip.ttl(), 33);
                assert_eq!(ip.protocol(), 4);
                assert_eq!(usize::from(ip.total_len()), 40 + payload);
                assert_eq!(pkt[IPIP_ENCAP_LEN..], inner[ETH_HLEN..]);
            }
        }
    }
}

#[test]
fn ipip_encap_refuses_what_it_cannot_carry() {
    let t = IpipTemplate::new(&IpipOuter::new(MAC_A, MAC_B, PEER, LOCAL));
    let good = inner_frame(0, true, 1, 8);
    let mut f = good[..ETH_HLEN + IPV4_HLEN - 1].to_vec();
    assert_eq!(t.encap(&mut f), Err(EncapError::InnerRunt));
    let mut f = good[..ETH_HLEN - 1].to_vec();
    assert_eq!(t.encap(&mut f), Err(EncapError::InnerRunt));
    let mut f = good.clone();
    set16(&mut f, 12, 0x86dd);
    assert_eq!(t.encap(&mut f), Err(EncapError::NotIpv4));
    let mut f = good.clone();
    f[ETH_HLEN] = 0x65;
    assert_eq!(t.encap(&mut f), Err(EncapError::NotIpv4));
    for total in [0u16, 19, 29] {
        let mut f = good.clone();
        set16(&mut f, ETH_HLEN + 2, total);
        assert_eq!(t.encap(&mut f), Err(EncapError::BadInnerLength), "{total}");
        assert_eq!(f.len(), good.len());
    }
    let mut f = good.clone();
    f[ETH_HLEN] = 0x44;
    assert_eq!(t.encap(&mut f), Err(EncapError::BadInnerLength));
    let mut f = inner_frame(0, true, 1, 65535 - 20);
    assert_eq!(t.encap(&mut f), Err(EncapError::TooLong));
    let mut tight = Headroom::new(19, &good);
    assert_eq!(t.encap(&mut tight), Err(EncapError::NoHeadroom));
    assert_eq!(tight.data(), good);
    // padding after the inner packet stays outside the outer packet
    let mut f = good.clone();
    f.extend_from_slice(&[0; 6]);
    t.encap(&mut f).unwrap();
    assert_eq!(usize::from(be16(&f, 16)), good.len() - ETH_HLEN + 20);
}

/// Found by fuzzing (pipeline_uplink): an inner packet whose length
/// reached past the tunnel's payload into the outer frame's padding was
/// delivered with those bytes as its own.
#[test]
fn strip_cuts_the_outer_padding_an_inner_packet_may_claim() {
    let mut f = IPIP_FRAME.to_vec();
    f.extend_from_slice(&[0xaa; 10]);
    let info = ipip(&f).unwrap();
    assert_eq!(info.inner_len, 28);
    // the inner packet claims the padding too
    let inner = info.inner_off;
    set16(&mut f, inner + 2, 38);
    assert!(strip(&mut f, &info));
    assert_eq!(f.len(), ETH_HLEN + 28, "only what the tunnel carried");
    assert!(
        crate::wire::ipv4::ipv4_header(&f).is_none(),
        "inner length past the end"
    );

    let mut f = VXLAN_FRAME.to_vec();
    f.extend_from_slice(&[0xaa; 10]);
    let info = vxlan(&f).unwrap();
    assert!(strip(&mut f, &info));
    assert_eq!(f, VXLAN_FRAME[info.inner_off..]);
    let mut h = Headroom::new(64, &VXLAN_FRAME);
    let mut padded = VXLAN_FRAME.to_vec();
    padded.extend_from_slice(&[0; 10]);
    let mut hp = Headroom::new(64, &padded);
    assert!(strip(&mut h, &info) && strip(&mut hp, &info));
    assert_eq!(h.data(), hp.data());
}

#[test]
fn strip_refuses_a_frame_shorter_than_its_info() {
    let info = vxlan(&VXLAN_FRAME).unwrap();
    let mut short = VXLAN_FRAME[..40].to_vec();
    assert!(!strip(&mut short, &info));
    let info = ipip(&IPIP_FRAME).unwrap();
    let mut short = IPIP_FRAME[..30].to_vec();
    assert!(!strip(&mut short, &info));
    assert_eq!(short, IPIP_FRAME[..30]);
}

// ---------------------------------------------------------------- entropy

/// An inner TCP/UDP frame between two endpoints.
fn flow(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8) -> Vec<u8> {
    let mut f = inner_frame(0, true, 1, 8);
    f[ETH_HLEN + 9] = proto;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    set16(&mut f, 34, sport);
    set16(&mut f, 36, dport);
    f
}

#[test]
fn src_port_range_follows_rfc_7348() {
    assert_eq!(src_port_from_hash(0), SRC_PORT_MIN);
    assert_eq!(src_port_from_hash(0x0000_ffff), SRC_PORT_MAX);
    let mut seen_low = u16::MAX;
    let mut seen_high = 0;
    for i in 0..200_000u32 {
        let p = src_port_from_hash(i.wrapping_mul(0x9e37_79b9));
        assert!(p >= SRC_PORT_MIN);
        seen_low = seen_low.min(p);
        seen_high = seen_high.max(p);
    }
    assert!(seen_low < SRC_PORT_MIN + 16 && seen_high > SRC_PORT_MAX - 16);
}

#[test]
fn flow_src_port_is_per_flow_and_symmetric() {
    let a = [10, 244, 1, 2];
    let b = [10, 244, 2, 3];
    let p = flow_src_port(&flow(a, 40000, b, 80, 6));
    assert_eq!(p, flow_src_port(&flow(a, 40000, b, 80, 6)));
    assert_eq!(p, flow_src_port(&flow(b, 80, a, 40000, 6)), "reply");
    assert_ne!(p, flow_src_port(&flow(a, 40000, b, 80, 17)), "protocol");

    let mut ports: Vec<u16> = (0..2000u16)
        .map(|i| flow_src_port(&flow(a, 32768 + i, b, 80, 6)))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    // 2000 flows in 16384 ports: about 120 collide at random
    assert!(ports.len() > 1800, "{} distinct ports", ports.len());

    // fragments and port-less protocols hash on addresses only
    let mut frag = flow(a, 1, b, 2, 17);
    set16(&mut frag, ETH_HLEN + 6, 0x2000);
    fix_ip(&mut frag, ETH_HLEN);
    let mut other = flow(a, 3, b, 4, 17);
    set16(&mut other, ETH_HLEN + 6, 0x2000);
    assert_eq!(flow_src_port(&frag), flow_src_port(&other));
    assert_eq!(
        flow_src_port(&flow(a, 1, b, 2, 1)),
        flow_src_port(&flow(a, 3, b, 4, 1))
    );

    // not IPv4: the MAC addresses, either way round
    let mut arp = VXLAN_FRAME[VXLAN_ENCAP_LEN..].to_vec();
    set16(&mut arp, 12, 0x0806);
    let mut back = arp.clone();
    back.copy_within(0..6, 6);
    back[0..6].copy_from_slice(&arp[6..12]);
    assert_eq!(flow_src_port(&arp), flow_src_port(&back));
    assert!(flow_src_port(&arp) >= SRC_PORT_MIN);
    assert!(flow_src_port(&[]) >= SRC_PORT_MIN);
}

// ---------------------------------------------------------------- buffers

#[test]
fn vec_prepend_and_adj() {
    let mut v = vec![1u8, 2, 3];
    let h = v.prepend(2).unwrap();
    assert_eq!(h.len(), 2);
    h.copy_from_slice(&[8, 9]);
    assert_eq!(v, [8, 9, 1, 2, 3]);
    assert!(!v.adj(6));
    assert_eq!(v, [8, 9, 1, 2, 3]);
    assert!(v.adj(2));
    assert_eq!(v, [1, 2, 3]);
    assert!(v.adj(3));
    assert!(v.is_empty());
    assert_eq!(v.prepend(0).map(|h| h.len()), Some(0));
}

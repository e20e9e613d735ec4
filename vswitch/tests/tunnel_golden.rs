//! VXLAN and IP-in-IP against captures made by others (Zeek's test traces,
//! the Linux kernel's `vxlan.calico`-style device, scapy) and tshark's decode
//! of them (`tests/data/pcaps/` at the repository root; sources and licences
//! in `tests/data/README.md`).
//!
//! For every VXLAN and IP-in-IP frame: decapsulation (through every nested
//! tunnel) must find what tshark found, field by field, outer first; and
//! encapsulating the inner frame again from a template with the capture's
//! outer parameters must give back the captured bytes. Frames of other
//! protocols in the same files must be refused with the right reason.
//!
//! Everything expected is read from the files at run time.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
// TCP/UDP checksums by etherparse, so that tshark's checksum verdicts check
// the frames rather than this module or the switch
use testsupport::l4_checksum_ok;
use vswitch::wire::tunnel::*;

const ETH_HLEN: usize = 14;

// ---------------------------------------------------------------- files

/// The repository's `tests/data/`, which holds `pcaps/`. A missing file
/// fails the test where it is read.
fn oracles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

struct Frame {
    data: Vec<u8>,
    orig_len: usize,
    linktype: u32,
}

/// A byte reader in one byte order.
#[derive(Clone, Copy)]
struct Order(bool);

impl Order {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        if self.0 {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    }
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.0 {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }
}

/// Classic pcap (microsecond or nanosecond, either byte order) or pcapng.
fn read_capture(path: &Path) -> Vec<Frame> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "{}: too short for a capture", path.display());
    if b[0..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        return read_pcapng(path, &b);
    }
    let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let order = match le {
        0xa1b2_c3d4 | 0xa1b2_3c4d => Order(false),
        0xd4c3_b2a1 | 0x4d3c_b2a1 => Order(true),
        m => panic!("{}: not a capture (magic {m:#x})", path.display()),
    };
    let linktype = order.u32(&b, 20) & 0x0fff_ffff;
    let mut frames = Vec::new();
    let mut at = 24;
    while at < b.len() {
        assert!(at + 16 <= b.len(), "{}: record header cut", path.display());
        let cap = order.u32(&b, at + 8) as usize;
        let orig = order.u32(&b, at + 12) as usize;
        let data = b
            .get(at + 16..at + 16 + cap)
            .unwrap_or_else(|| panic!("{}: record cut at {at}", path.display()));
        frames.push(Frame {
            data: data.to_vec(),
            orig_len: orig,
            linktype,
        });
        at += 16 + cap;
    }
    frames
}

fn read_pcapng(path: &Path, b: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut order = Order(false);
    let mut links: Vec<u32> = Vec::new();
    let mut at = 0;
    while at < b.len() {
        assert!(at + 12 <= b.len(), "{}: block cut at {at}", path.display());
        if b[at..at + 4] == [0x0a, 0x0d, 0x0d, 0x0a] {
            // a section header: its byte-order magic says how to read it all
            order = match b[at + 8..at + 12] {
                [0x4d, 0x3c, 0x2b, 0x1a] => Order(false),
                [0x1a, 0x2b, 0x3c, 0x4d] => Order(true),
                _ => panic!("{}: bad byte-order magic", path.display()),
            };
            links.clear();
        }
        let kind = order.u32(b, at);
        let len = order.u32(b, at + 4) as usize;
        assert!(
            len >= 12 && len.is_multiple_of(4) && at + len <= b.len(),
            "{}: bad block length {len} at {at}",
            path.display()
        );
        let body = &b[at + 8..at + len - 4];
        match kind {
            // interface description: link type
            1 => links.push(u32::from(order.u16(body, 0))),
            // enhanced packet
            6 => {
                let iface = order.u32(body, 0) as usize;
                let cap = order.u32(body, 12) as usize;
                let orig = order.u32(body, 16) as usize;
                frames.push(Frame {
                    data: body[20..20 + cap].to_vec(),
                    orig_len: orig,
                    linktype: links[iface],
                });
            }
            // simple packet: captured bytes are what the block holds
            3 => {
                let orig = order.u32(body, 0) as usize;
                let cap = orig.min(body.len() - 4);
                frames.push(Frame {
                    data: body[4..4 + cap].to_vec(),
                    orig_len: orig,
                    linktype: links[0],
                });
            }
            _ => {}
        }
        at += len;
    }
    frames
}

/// A tshark field's values, outer first: absent, one string, or a list.
fn tshark(frame: &Value, key: &str) -> Vec<String> {
    match frame.get(key) {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().expect("tshark values are strings").to_owned())
            .collect(),
        Some(v) => panic!("{key}: unexpected {v}"),
    }
}

// ---------------------------------------------------------------- decode

/// The fields compared with tshark's, named as tshark names them.
const COMPARED: [&str; 22] = [
    "eth.src",
    "eth.dst",
    "eth.type",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ip.checksum.status",
    "udp.srcport",
    "udp.dstport",
    "udp.checksum.status",
    "vxlan.flags",
    "vxlan.vni",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.checksum.status",
    "icmp.type",
    "icmp.code",
    "arp.opcode",
    "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4",
];

/// tshark fields not compared: frame bookkeeping (frame.len is checked
/// against the capture record), the dissector chain (it names application
/// protocols), and Geneve, which only non-tunnel frames carry here.
const NOT_COMPARED: [&str; 4] = ["frame.number", "frame.len", "frame.protocols", "geneve.vni"];

#[derive(Default)]
struct Seen {
    fields: BTreeMap<&'static str, Vec<String>>,
    vxlan_layers: usize,
    ipip_layers: usize,
    /// (what, how many times) the capture's bytes replaced ours.
    overrides: BTreeMap<&'static str, usize>,
}

impl Seen {
    fn push(&mut self, key: &'static str, v: impl ToString) {
        self.fields.entry(key).or_default().push(v.to_string());
    }
}

fn mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn status(ok: bool) -> &'static str {
    if ok {
        "1"
    } else {
        "0"
    }
}

fn walk_eth(frame: &[u8], seen: &mut Seen, name: &str) {
    let eth = EthernetRepr::parse(frame).expect("an Ethernet header");
    seen.push("eth.src", mac(&eth.src));
    seen.push("eth.dst", mac(&eth.dst));
    seen.push("eth.type", format!("{:#06x}", eth.ethertype));
    match eth.ethertype {
        0x0800 => walk_ip_in_eth(frame, seen, name),
        0x0806 => {
            let a = &frame[ETH_HLEN..];
            seen.push("arp.opcode", u16::from_be_bytes([a[6], a[7]]));
            seen.push(
                "arp.src.proto_ipv4",
                Ipv4Addr::new(a[14], a[15], a[16], a[17]),
            );
            seen.push(
                "arp.dst.proto_ipv4",
                Ipv4Addr::new(a[24], a[25], a[26], a[27]),
            );
        }
        _ => {}
    }
}

/// One underlay that accepts exactly this packet's addresses, and the two
/// that each refuse one of them.
fn underlays(
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> [(impl Fn(Ipv4Addr) -> bool, impl Fn(Ipv4Addr) -> bool); 3] {
    let other = Ipv4Addr::new(192, 0, 2, 99);
    [
        (dst, src), // ours
        (other, src),
        (dst, other),
    ]
    .map(|(local, peer)| (move |a: Ipv4Addr| a == local, move |a: Ipv4Addr| a == peer))
}

/// An IPv4 packet at offset 14 of an Ethernet frame: a tunnel if it is one.
fn walk_ip_in_eth(frame: &[u8], seen: &mut Seen, name: &str) {
    let ip = Ipv4Packet::new_checked(&frame[ETH_HLEN..]).expect("an IPv4 header");
    let l4 = &frame[ETH_HLEN + ip.header_len()..];
    let is_vxlan = ip.protocol() == IPPROTO_UDP
        && UdpPacket::new_checked(l4).is_ok_and(|u| u.dst_port() == VXLAN_PORT);
    if !is_vxlan && ip.protocol() != IPPROTO_IPIP {
        return walk_ip(&frame[ETH_HLEN..], seen, name);
    }
    let [ours, not_ours, unknown] = underlays(ip.src_addr(), ip.dst_addr());

    if !ip.checksum_ok() {
        // tshark would call it bad; so must decapsulation
        let got = if is_vxlan {
            decap_vxlan(frame, &VxlanRx::default(), &ours)
        } else {
            decap_ipip(frame, &ours)
        };
        assert_eq!(got, Err(TunnelDrop::BadOuterIp), "{name}");
        return walk_ip(&frame[ETH_HLEN..], seen, name);
    }

    let info = if is_vxlan {
        let vx = VxlanPacket::new_checked(&l4[UDP_HLEN..]).expect("a VXLAN header");
        let rx = VxlanRx {
            vni: vx.vni(),
            reserved_bits: ReservedBits::Reject,
        };
        let rx = if vx.reserved_bits() {
            assert_eq!(
                decap_vxlan(frame, &rx, &ours),
                Err(TunnelDrop::BadVxlanFlags),
                "{name}: reserved bits"
            );
            VxlanRx {
                reserved_bits: ReservedBits::Ignore,
                ..rx
            }
        } else {
            rx
        };
        let wrong = VxlanRx {
            vni: (rx.vni + 1) & 0x00ff_ffff,
            ..rx
        };
        assert_eq!(decap_vxlan(frame, &wrong, &ours), Err(TunnelDrop::WrongVni));
        assert_eq!(
            decap_vxlan(frame, &rx, &not_ours),
            Err(TunnelDrop::NotForUs)
        );
        assert_eq!(
            decap_vxlan(frame, &rx, &unknown),
            Err(TunnelDrop::UnknownPeer)
        );
        assert_eq!(decap_ipip(frame, &ours), Err(TunnelDrop::WrongProtocol));
        decap_vxlan(frame, &rx, &ours).unwrap_or_else(|d| panic!("{name}: {d}"))
    } else {
        assert_eq!(decap_ipip(frame, &not_ours), Err(TunnelDrop::NotForUs));
        assert_eq!(decap_ipip(frame, &unknown), Err(TunnelDrop::UnknownPeer));
        assert_eq!(
            decap_vxlan(frame, &VxlanRx::default(), &ours),
            Err(TunnelDrop::WrongProtocol)
        );
        decap_ipip(frame, &ours).unwrap_or_else(|d| panic!("{name}: {d}"))
    };

    // the outer fields as decapsulation reports them
    seen.push("ip.src", info.outer_src);
    seen.push("ip.dst", info.outer_dst);
    seen.push("ip.proto", info.outer_protocol());
    seen.push("ip.ttl", info.outer_ttl);
    seen.push("ip.checksum.status", "1");
    let inner = &frame[info.inner_off..info.inner_off + info.inner_len];
    match info.tunnel {
        Tunnel::Vxlan {
            vni,
            src_port,
            dst_port,
            flags,
        } => {
            seen.vxlan_layers += 1;
            seen.push("udp.srcport", src_port);
            seen.push("udp.dstport", dst_port);
            let udp = UdpPacket::new_unchecked(l4);
            seen.push(
                "udp.checksum.status",
                if udp.checksum() == 0 {
                    "3" // tshark: not present
                } else {
                    status(l4_checksum_ok(
                        &frame[ETH_HLEN..],
                        &l4[..usize::from(udp.len())],
                    ))
                },
            );
            seen.push("vxlan.flags", format!("{flags:#06x}"));
            seen.push("vxlan.vni", vni);
            reencap_vxlan(frame, &info, seen, name);
            walk_eth(inner, seen, name);
        }
        Tunnel::Ipip => {
            seen.ipip_layers += 1;
            reencap_ipip(frame, &info, seen, name);
            walk_ip(inner, seen, name);
        }
    }
}

/// A plain (not tunnelled) IPv4 packet and what it carries.
fn walk_ip(packet: &[u8], seen: &mut Seen, name: &str) {
    let ip = Ipv4Packet::new_checked(packet).expect("an IPv4 header");
    let r = Ipv4Repr::parse(&ip).expect("a sound total length");
    seen.push("ip.src", r.src);
    seen.push("ip.dst", r.dst);
    seen.push("ip.proto", r.protocol);
    seen.push("ip.ttl", r.ttl);
    seen.push("ip.checksum.status", status(ip.checksum_ok()));
    let l4 = ip.payload();
    match r.protocol {
        IPPROTO_UDP => {
            let u = UdpPacket::new_checked(l4).expect("a UDP header");
            assert!(
                u.dst_port() != VXLAN_PORT,
                "{name}: VXLAN inside IP-in-IP is not walked"
            );
            seen.push("udp.srcport", u.src_port());
            seen.push("udp.dstport", u.dst_port());
            let st = if u.checksum() == 0 {
                "3"
            } else {
                status(l4_checksum_ok(packet, &l4[..usize::from(u.len())]))
            };
            seen.push("udp.checksum.status", st);
        }
        6 => {
            seen.push("tcp.srcport", u16::from_be_bytes([l4[0], l4[1]]));
            seen.push("tcp.dstport", u16::from_be_bytes([l4[2], l4[3]]));
            let flags = u16::from_be_bytes([l4[12], l4[13]]) & 0x0fff;
            seen.push("tcp.flags", format!("{flags:#06x}"));
            seen.push("tcp.checksum.status", status(l4_checksum_ok(packet, l4)));
        }
        1 => {
            seen.push("icmp.type", l4[0]);
            seen.push("icmp.code", l4[1]);
        }
        IPPROTO_IPIP => panic!("{name}: IP-in-IP inside IP-in-IP is not walked"),
        _ => {}
    }
}

// ---------------------------------------------------------------- encap

/// Encapsulates the inner frame again with the capture's outer parameters
/// and compares with the captured bytes.
///
/// The template takes MACs, addresses, TTL, TOS, DF, ID and VNI from the
/// capture, and the entropy port too. Two fields we set differently by
/// design are copied from the capture before comparing:
/// - the UDP checksum, which we always send as zero (RFC 7348 §5: "SHOULD be
///   transmitted as zero"): the Linux capture holds the pseudo-header sum of
///   a checksum left to offload (tshark rightly calls it bad); the scapy
///   frame and the Zeek HTTP, bad-TCP-checksum and triple traces hold full
///   checksums;
/// - reserved VXLAN bits, which we never set (RFC 7348 §5: "MUST be set to
///   zero on transmission"): the Zeek triple trace is in fact VXLAN-GPE on
///   port 4789, with GPE's P flag (0x04) beside I and its next-protocol
///   byte, 3 (Ethernet), in the last reserved byte before the VNI.
fn reencap_vxlan(frame: &[u8], info: &DecapInfo, seen: &mut Seen, name: &str) {
    let eth = EthernetRepr::parse(frame).expect("checked by decap");
    let ip = Ipv4Packet::new_unchecked(&frame[ETH_HLEN..]);
    assert_eq!(ip.header_len(), 20, "{name}: outer options are not emitted");
    let r = Ipv4Repr::parse(&ip).expect("checked by decap");
    let Tunnel::Vxlan { vni, src_port, .. } = info.tunnel else {
        unreachable!()
    };
    let outer = VxlanOuter {
        dst_mac: eth.dst,
        src_mac: eth.src,
        src: r.src,
        dst: r.dst,
        ttl: r.ttl,
        tos: r.tos,
        dont_frag: r.dont_frag,
        ident: r.ident,
        vni,
    };
    let inner = &frame[info.inner_off..info.inner_off + info.inner_len];
    let mut pkt = inner.to_vec();
    VxlanTemplate::new(&outer)
        .encap(&mut pkt, src_port)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut reference = [0u8; VXLAN_ENCAP_LEN];
    outer
        .emit(inner.len(), src_port, &mut reference)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        pkt[..VXLAN_ENCAP_LEN],
        reference,
        "{name}: template vs emit"
    );

    let captured = &frame[..ETH_HLEN + usize::from(ip.total_len())];
    if pkt[40..42] != captured[40..42] {
        pkt[40..42].copy_from_slice(&captured[40..42]);
        *seen.overrides.entry("udp checksum").or_default() += 1;
    }
    for at in [42, 43, 44, 45, 49] {
        if pkt[at] != captured[at] {
            pkt[at] = captured[at];
            *seen.overrides.entry("vxlan reserved bits").or_default() += 1;
        }
    }
    assert_eq!(pkt, captured, "{name}: VXLAN encapsulation");
}

/// The same for IP-in-IP. DF follows the capture: copied when the outer
/// DF equals the inner one, else set; the outer ID then comes from the
/// inner packet (DF clear) or the template (DF set). If the capture's ID
/// differs from that, it is copied over (with the checksum fixed).
fn reencap_ipip(frame: &[u8], info: &DecapInfo, seen: &mut Seen, name: &str) {
    let eth = EthernetRepr::parse(frame).expect("checked by decap");
    let ip = Ipv4Packet::new_unchecked(&frame[ETH_HLEN..]);
    assert_eq!(ip.header_len(), 20, "{name}: outer options are not emitted");
    let inner = Ipv4Packet::new_checked(&frame[info.inner_off..]).expect("an inner header");
    assert!(
        !inner.dont_frag() || ip.dont_frag(),
        "{name}: inner DF without outer DF breaks RFC 2003 §3.1"
    );
    let outer = IpipOuter {
        dst_mac: eth.dst,
        src_mac: eth.src,
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        ttl: ip.ttl(),
        df: if ip.dont_frag() == inner.dont_frag() {
            IpipDf::CopyInner
        } else {
            IpipDf::Set
        },
        ident: ip.ident(),
    };
    // the pod's frame: any Ethernet header, then the inner packet
    let mut pkt = frame[..ETH_HLEN].to_vec();
    pkt.extend_from_slice(&frame[info.inner_off..info.inner_off + info.inner_len]);
    let mut reference = [0u8; IPIP_ENCAP_LEN];
    outer
        .emit(&pkt, &mut reference)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    IpipTemplate::new(&outer)
        .encap(&mut pkt)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(pkt[..IPIP_ENCAP_LEN], reference, "{name}: template vs emit");

    let captured = &frame[..ETH_HLEN + usize::from(ip.total_len())];
    if pkt[18..20] != captured[18..20] {
        pkt[18..20].copy_from_slice(&captured[18..20]);
        pkt[24..26].copy_from_slice(&captured[24..26]);
        *seen.overrides.entry("ipip ident").or_default() += 1;
    }
    assert_eq!(pkt, captured, "{name}: IP-in-IP encapsulation");
}

// ---------------------------------------------------------------- the test

#[test]
fn tunnel_frames_match_tshark_and_reencapsulate_byte_for_byte() {
    let dir = oracles().join("pcaps");
    let json_path = dir.join("tshark-decode.json");
    let json: Value = serde_json::from_slice(
        &std::fs::read(&json_path).unwrap_or_else(|e| panic!("{}: {e}", json_path.display())),
    )
    .expect("tshark-decode.json is JSON");
    let pcaps = json["pcaps"].as_object().expect("a pcaps object");
    assert!(!pcaps.is_empty(), "no captures listed");

    let (mut vxlan_frames, mut ipip_frames, mut others) = (0, 0, 0);
    let mut vxlan_layers = 0;
    let mut overrides: BTreeMap<String, usize> = BTreeMap::new();
    for (file, decoded) in pcaps {
        let frames = read_capture(&dir.join(file));
        let decoded = decoded.as_array().expect("a list of frames");
        assert_eq!(frames.len(), decoded.len(), "{file}: frame count");
        for (i, (f, d)) in frames.iter().zip(decoded).enumerate() {
            let name = format!("{file} frame {}", i + 1);
            assert_eq!(f.linktype, 1, "{name}: Ethernet captures only");
            assert_eq!(f.data.len(), f.orig_len, "{name}: captured whole");
            assert_eq!(tshark(d, "frame.len"), [f.orig_len.to_string()], "{name}");
            let protocols = d["frame.protocols"].as_str().expect("frame.protocols");
            let is_vxlan = protocols.contains(":vxlan:");
            let is_ipip = protocols.contains(":ip:ip:");
            if !is_vxlan && !is_ipip {
                // anything else from the uplink is refused, for the right reason
                let want = if protocols.starts_with("eth:ethertype:ip:udp:") {
                    TunnelDrop::WrongPort
                } else {
                    TunnelDrop::WrongProtocol
                };
                let any = (|_: Ipv4Addr| true, |_: Ipv4Addr| true);
                assert_eq!(
                    decap_vxlan(&f.data, &VxlanRx::default(), &any),
                    Err(want),
                    "{name}: {protocols}"
                );
                assert_eq!(
                    decap_ipip(&f.data, &any),
                    Err(TunnelDrop::WrongProtocol),
                    "{name}"
                );
                others += 1;
                continue;
            }
            let mut seen = Seen::default();
            walk_eth(&f.data, &mut seen, &name);
            if is_vxlan {
                vxlan_frames += 1;
                assert!(seen.vxlan_layers > 0, "{name}: no VXLAN found");
            } else {
                ipip_frames += 1;
                assert!(seen.ipip_layers > 0, "{name}: no IP-in-IP found");
            }
            vxlan_layers += seen.vxlan_layers;
            for (k, n) in seen.overrides {
                *overrides.entry(format!("{file}: {k}")).or_default() += n;
            }

            for key in d.as_object().expect("a frame object").keys() {
                assert!(
                    COMPARED.contains(&key.as_str()) || NOT_COMPARED.contains(&key.as_str()),
                    "{name}: tshark field {key} is neither compared nor excused"
                );
            }
            for key in COMPARED {
                let theirs = tshark(d, key);
                let ours = seen.fields.get(key).cloned().unwrap_or_default();
                assert_eq!(ours, theirs, "{name}: {key}");
            }
        }
    }
    for (what, n) in &overrides {
        eprintln!("taken from the capture: {what} ({n} times)");
    }
    eprintln!(
        "checked {vxlan_frames} VXLAN frames ({vxlan_layers} VXLAN headers), \
         {ipip_frames} IP-in-IP frames; refused {others} others"
    );
    // the captures' own counts (README and tshark-decode.json): Linux 4,
    // scapy 1, Zeek 10 + 12 + 1 + 1 (triple: three headers deep)
    assert_eq!(vxlan_frames, 29, "VXLAN frames checked");
    assert_eq!(vxlan_layers, 31, "VXLAN headers checked");
    // scapy 1, Zeek 4in4 1
    assert_eq!(ipip_frames, 2, "IP-in-IP frames checked");
    assert!(others > 0, "no non-tunnel frames refused");
}

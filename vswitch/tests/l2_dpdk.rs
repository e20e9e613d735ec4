//! DPDK integration tests: a real vswitchd serving vhost-user ports to
//! `dpdk-testpmd` pods (virtio-user), checked on the pods' own RX counters and
//! on the switch's `stats` and `fdb-show` replies.
//!
//! Needs root, hugepages (set up if missing) and `dpdk-testpmd`; run with
//! `cargo test -p vswitch --release --test l2_dpdk`. The tests take turns
//! (one switch and its pods at a time).

use api::{PortKind, PortSpec, Reply, Request, Stats};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use testsupport::*;

const BCAST: &str = "ff:ff:ff:ff:ff:ff";

fn port_stats<'a>(s: &'a Stats, name: &str) -> &'a api::PortStats {
    s.ports
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no port {name} in stats: {s:?}"))
}

/// Drop counters that changed between two `stats` replies.
fn drops_delta(a: &Stats, b: &Stats) -> BTreeMap<String, u64> {
    b.drops
        .iter()
        .map(|(k, v)| (k.clone(), v - a.drops.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// Phases with what the switch must have counted per port as a result.
struct Ledger {
    rx: Vec<u64>,
    tx: Vec<u64>,
}

impl Ledger {
    fn new(n: usize) -> Ledger {
        Ledger {
            rx: vec![0; n],
            tx: vec![0; n],
        }
    }

    fn phase(&mut self, pods: &mut [Pod], sender: usize, dst: &str, expect: &[u64]) {
        phase(pods, sender, dst, expect, || {});
        self.rx[sender] += BURST;
        for (t, e) in self.tx.iter_mut().zip(expect) {
            *t += e;
        }
    }

    fn check(&self, s: &Stats) {
        for i in 0..self.rx.len() {
            let p = port_stats(s, &format!("vhu{i}"));
            assert_eq!(
                (p.rx_packets, p.tx_packets, p.rx_drops, p.tx_drops),
                (self.rx[i], self.tx[i], 0, 0),
                "switch counters of vhu{i} (rx, tx, rx_drops, tx_drops)"
            );
        }
    }
}

#[test]
fn unknown_destinations_flood_then_learned_ones_go_to_one_port() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start_with_vhost(4, &[]);
    let mut pods = start_pods(&sw, 4);
    let m: Vec<String> = (0..4).map(pod_mac).collect();
    let mut l = Ledger::new(4);

    // a1 is unknown: the first burst is flooded to every other pod
    l.phase(&mut pods, 0, &m[1], &[0, BURST, BURST, BURST]);
    assert_eq!(
        sw.fdb_port_of(&m[0]).as_deref(),
        Some("vhu0"),
        "{:?}",
        sw.fdb()
    );
    assert_eq!(sw.fdb_port_of(&m[1]), None, "a1 has not sent anything yet");
    l.check(&sw.stats());

    // a0 was learned: p1's reply goes to p0 only, and teaches the switch a1
    l.phase(&mut pods, 1, &m[0], &[BURST, 0, 0, 0]);
    assert_eq!(
        sw.fdb_port_of(&m[1]).as_deref(),
        Some("vhu1"),
        "{:?}",
        sw.fdb()
    );

    // now a1 is known: the same burst as at first goes to p1 alone
    l.phase(&mut pods, 0, &m[1], &[0, BURST, 0, 0]);

    // another unknown destination floods from another port
    l.phase(&mut pods, 3, &m[2], &[BURST, BURST, BURST, 0]);
    // broadcast always floods, learned or not
    l.phase(&mut pods, 2, BCAST, &[BURST, BURST, 0, BURST]);
    // a3 (learned from the flood above) is reached directly
    l.phase(&mut pods, 0, &m[3], &[0, 0, 0, BURST]);

    let fdb = sw.fdb();
    let want: Vec<(String, String)> = (0..4).map(|i| (m[i].clone(), format!("vhu{i}"))).collect();
    let got: Vec<(String, String)> = fdb
        .iter()
        .map(|e| (e.mac.to_string(), e.port.clone()))
        .collect();
    assert_eq!(got, want, "every pod's MAC behind its own port");
    let s = sw.stats();
    l.check(&s);
    assert_eq!(
        (s.fdb.entries, s.fdb.learned, s.fdb.moved, s.fdb.aged),
        (4, 4, 0, 0),
        "{:?}",
        s.fdb
    );
    assert!(
        s.drops.values().all(|&v| v == 0),
        "no drops expected: {:?}",
        s.drops
    );
}

#[test]
fn learned_entries_age_out_and_flood_again() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start_with_vhost(4, &["--aging", "2"]);
    let mut pods = start_pods(&sw, 4);
    let m: Vec<String> = (0..4).map(pod_mac).collect();
    assert_eq!(sw.stats().fdb.aging_seconds, 2);

    // p1 speaks: a1 is learned behind vhu1 (check at once: it lives 1 to 2 s)
    phase(&mut pods, 1, &m[0], &[BURST, 0, BURST, BURST], || {
        wait_for("a1 learned behind vhu1", Duration::from_secs(1), || {
            (sw.fdb_port_of(&m[1]).as_deref() == Some("vhu1")).then_some(())
        })
    });
    let s = sw.stats();
    assert_eq!(s.fdb.learned, 1, "{:?}", s.fdb);

    // silent for twice the aging time: forgotten, by fdb-show and the counters
    std::thread::sleep(Duration::from_secs(4));
    let fdb = sw.fdb();
    assert!(fdb.is_empty(), "a1 should have aged out: {fdb:?}");
    let s = sw.stats();
    assert_eq!((s.fdb.entries, s.fdb.aged), (0, 1), "{:?}", s.fdb);

    // so a frame to a1 is flooded again to all three others
    phase(&mut pods, 0, &m[1], &[0, BURST, BURST, BURST], || {
        wait_for("a0 learned behind vhu0", Duration::from_secs(1), || {
            (sw.fdb_port_of(&m[0]).as_deref() == Some("vhu0")).then_some(())
        })
    });

    // the aging time can be changed at run time
    assert_eq!(sw.call(&Request::SetAging { seconds: 300 }), Reply::Done);
    assert_eq!(sw.stats().fdb.aging_seconds, 300);
}

#[test]
fn a_restarted_pod_is_switched_to_again() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start_with_vhost(4, &[]);
    let mut pods = start_pods(&sw, 4);
    let m: Vec<String> = (0..4).map(pod_mac).collect();

    phase(&mut pods, 1, &m[0], &[BURST, 0, BURST, BURST], || {});
    phase(&mut pods, 0, &m[1], &[0, BURST, 0, 0], || {});

    // p1 crashes
    let p1 = pods.remove(1);
    p1.kill();
    sw.wait_link("vhu1", false);
    // a1 is still learned behind vhu1: frames for it go nowhere else, and are
    // counted as dropped for the link being down
    let before = sw.stats();
    phase(&mut pods, 0, &m[1], &[0, 0, 0], || {});
    let after = sw.stats();
    assert_eq!(
        drops_delta(&before, &after),
        BTreeMap::from([("link_down".to_owned(), BURST)]),
        "drops while p1 is down"
    );
    assert_eq!(
        port_stats(&after, "vhu1").tx_drops - port_stats(&before, "vhu1").tx_drops,
        BURST
    );

    // a new p1 on the same socket, with the same MAC
    let mut p1 = Pod::start("p1-again", &sw.vhost_path("vhu1"), &m[1], &m[0]);
    p1.wait_link_up();
    sw.wait_link("vhu1", true);
    pods.insert(1, p1);
    phase(&mut pods, 0, &m[1], &[0, BURST, 0, 0], || {});
    phase(&mut pods, 1, &m[0], &[BURST, 0, 0, 0], || {});
    assert_eq!(sw.fdb_port_of(&m[1]).as_deref(), Some("vhu1"));
}

#[test]
fn a_vhost_client_port_reconnects_when_its_pod_restarts() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start_with_vhost(1, &[]);
    let m: Vec<String> = (0..2).map(pod_mac).collect();
    // the pod owns this socket; the switch connects to it
    let sock = sw.vhost_path("pc1");
    match sw.call(&Request::PortAdd {
        port: PortSpec {
            name: "pc1".into(),
            kind: PortKind::VhostClient,
            path: Some(sock.clone()),
            iface: None,
            pci: None,
        },
    }) {
        Reply::Ports(v) if v.len() == 1 && v[0].kind == PortKind::VhostClient => {}
        r => panic!("port-add vhost-client: {r:?}"),
    }
    let mut p0 = Pod::start("p0", &sw.vhost_path("vhu0"), &m[0], &m[1]);
    p0.wait_link_up();
    let mut p1 = Pod::start_listening("p1", &sock, &m[1], &m[0]);
    p1.wait_link_up();
    sw.wait_link("pc1", true);
    let mut pods = vec![p0, p1];
    phase(&mut pods, 0, &m[1], &[0, BURST], || {});
    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});

    // the pod restarts: the switch notices, reconnects, and switches to it again
    pods.pop().unwrap().kill();
    sw.wait_link("pc1", false);
    // virtio-user in server mode does not bind over a socket file left by a
    // killed predecessor; a restarting pod clears it first
    std::fs::remove_file(&sock).expect("removing the old pod's socket");
    let mut p1 = Pod::start_listening("p1-again", &sock, &m[1], &m[0]);
    p1.wait_link_up();
    sw.wait_link("pc1", true);
    pods.push(p1);
    phase(&mut pods, 0, &m[1], &[0, BURST], || {});
    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});
    assert_eq!(sw.fdb_port_of(&m[1]).as_deref(), Some("pc1"));
}

#[test]
fn malformed_frames_are_dropped_by_reason_while_others_flow() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start_with_vhost(2, &[]);
    let tap = tap_name();
    let info = match sw.call(&Request::PortAdd {
        port: PortSpec {
            name: "tap0".into(),
            kind: PortKind::Tap,
            path: None,
            iface: Some(tap.clone()),
            pci: None,
        },
    }) {
        Reply::Ports(mut v) if v.len() == 1 => v.remove(0),
        r => panic!("port-add tap: {r:?}"),
    };
    assert_eq!(info.iface.as_deref(), Some(tap.as_str()));
    // The TAP PMD brings the interface up when the port starts; turn IPv6 off
    // right away so the kernel stays silent (the phases below drain anything
    // it sent before).
    quiet_iface_up(&tap);
    let mut pods = start_pods(&sw, 2);
    let m: Vec<String> = (0..2).map(pod_mac).collect();

    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});
    phase(&mut pods, 0, &m[1], &[0, BURST], || {});

    // From the kernel side of the TAP, toward p1: frames whose 802.3 length
    // field does not fit the frame or is no length at all, mixed with good
    // ones. (IP length fields are the IP layer's to check: an IPv4 frame with
    // any total length is a well-formed Ethernet frame and is switched.) (Runts, shorter than 14
    // bytes, cannot be sent here: the kernel refuses them on AF_PACKET. They
    // are covered by the unit tests on byte buffers in wire/eth.rs and pipeline/bridge.rs.)
    let src = "02:00:00:00:0b:01";
    let llc = [0x42u8, 0x42, 0x03];
    let bad_8023 = frame(&m[1], src, 1000, &llc); // 802.3 length 1000 > 46
    let not_a_length = frame(&m[1], src, 1520, &llc); // 1501..=1535: neither length nor type
    let one_too_long = frame(&m[1], src, 47, &llc); // 47 > the 46 bytes there
    let good_8023 = frame(&m[1], src, 46, &llc);
    let good_ipv4 = frame(&m[1], src, 0x0800, &ipv4_header(46));
    let mut frames = Vec::new();
    for _ in 0..4 {
        frames.extend([
            bad_8023.clone(),
            good_8023.clone(),
            not_a_length.clone(),
            good_ipv4.clone(),
        ]);
    }
    frames.extend([one_too_long.clone(), one_too_long]);
    let (bad, good) = (10u64, 8u64);
    assert_eq!(frames.len() as u64, bad + good);

    let before = sw.stats();
    // p0's burst to p1 and the TAP's frames at the same time
    phase(&mut pods, 0, &m[1], &[0, BURST + good], || {
        send_raw(&tap, &frames)
    });
    let after = sw.stats();
    assert_eq!(
        drops_delta(&before, &after),
        BTreeMap::from([("bad_length".to_owned(), bad)]),
        "drops by reason"
    );
    let d = |name: &str, f: fn(&api::PortStats) -> u64| {
        f(port_stats(&after, name)) - f(port_stats(&before, name))
    };
    assert_eq!(
        d("tap0", |p| p.rx_packets),
        bad + good,
        "frames the TAP port received"
    );
    assert_eq!(
        d("tap0", |p| p.rx_drops),
        bad,
        "frames dropped on the TAP port"
    );
    assert_eq!(d("vhu1", |p| p.tx_packets), BURST + good);
    assert_eq!(d("vhu0", |p| p.tx_packets), 0);
    assert_eq!(
        sw.fdb_port_of(src).as_deref(),
        Some("tap0"),
        "good frames taught the switch"
    );

    // and traffic between the pods is unharmed
    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});
}

/// Sends a raw line on `c`, expects an error reply mentioning `want`, then
/// checks that the same connection still answers `stats`.
fn refused(c: &mut api::Client, line: &str, want: &str) {
    let reply = c
        .call_raw(line)
        .unwrap_or_else(|e| panic!("{line}: no reply: {e}"));
    let v: serde_json::Value = serde_json::from_str(&reply)
        .unwrap_or_else(|e| panic!("{line}: reply is not JSON ({e}): {reply}"));
    assert_eq!(v["status"], "error", "{line} -> {reply}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{line}: no error message: {reply}"));
    assert!(
        msg.contains(want),
        "{line} -> error '{msg}' should mention '{want}'"
    );
    match c.call(&Request::Stats {}) {
        Ok(Reply::Stats(_)) => {}
        r => panic!("stats after {line}: {r:?}"),
    }
}

#[test]
fn the_control_socket_refuses_bad_requests_and_keeps_serving() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start_with_vhost(2, &[]);
    let mut pods = start_pods(&sw, 2);
    let m: Vec<String> = (0..2).map(pod_mac).collect();
    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});

    let dir = sw.dir.to_str().unwrap().to_owned();
    let file = format!("{dir}/plain-file");
    std::fs::write(&file, "not a socket").unwrap();
    let vhu1 = sw.vhost_path("vhu1");
    let add = |name: &str, kind: &str, extra: &str| {
        format!(r#"{{"op":"port-add","port":{{"name":"{name}","kind":"{kind}"{extra}}}}}"#)
    };
    let cases: Vec<(String, &str)> = vec![
        ("this is not json".into(), "bad request"),
        (r#"{"op":"stats""#.into(), "bad request"),
        ("[1,2,3]".into(), "bad request"),
        ("{}".into(), "op"),
        (r#"{"op":"reboot"}"#.into(), "reboot"),
        (r#"{"op":"stats","verbose":true}"#.into(), "verbose"),
        (
            r#"{"op":"set-aging","seconds":"soon"}"#.into(),
            "bad request",
        ),
        (add("x", "ethernet", r#","path":"/tmp/x.sock""#), "ethernet"),
        (
            add(
                "vhu0",
                "vhost-server",
                &format!(r#","path":"{dir}/other.sock""#),
            ),
            "exists already",
        ),
        (
            add("x", "vhost-server", &format!(r#","path":"{vhu1}""#)),
            "used by port 'vhu1'",
        ),
        (
            add("x", "vhost-server", r#","path":"relative/x.sock""#),
            "absolute",
        ),
        (
            add(
                "x",
                "vhost-server",
                r#","path":"/nonexistent-vswt-dir/x.sock""#,
            ),
            "does not exist",
        ),
        (
            add(
                "x",
                "vhost-client",
                r#","path":"/nonexistent-vswt-dir/x.sock""#,
            ),
            "does not exist",
        ),
        (
            add("x", "vhost-server", &format!(r#","path":"{file}""#)),
            "not a socket",
        ),
        (add("x", "vhost-server", ""), "needs a socket path"),
        (
            add("a b", "vhost-server", r#","path":"/tmp/x.sock""#),
            "bad port name",
        ),
        (
            add("x", "tap", r#","iface":"much-too-long-name""#),
            "bad interface",
        ),
        (add("x", "tap", r#","iface":"lo""#), "exists already"),
        (
            r#"{"op":"port-del","name":"nope"}"#.into(),
            "no port named 'nope'",
        ),
        (
            r#"{"op":"fdb-flush","port":"nope"}"#.into(),
            "no port named 'nope'",
        ),
        (r#"{"op":"set-aging","seconds":0}"#.into(), "out of range"),
    ];
    let mut c = sw.client();
    for (line, want) in &cases {
        refused(&mut c, line, want);
    }

    // not UTF-8, and a line over the 128 MiB limit, on a raw connection
    let mut raw = UnixStream::connect(&sw.sock).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rd = BufReader::new(raw.try_clone().unwrap());
    let mut ask = |bytes: &[u8]| -> serde_json::Value {
        raw.write_all(bytes).unwrap();
        raw.write_all(b"\n").unwrap();
        let mut line = String::new();
        rd.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line}"))
    };
    let v = ask(b"{\"op\":\"st\xff\xfets\"}");
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["error"].as_str().unwrap().contains("UTF-8"), "{v}");
    let v = ask(&vec![b'x'; (128 << 20) + 10]);
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["error"].as_str().unwrap().contains("longer than"), "{v}");
    let v = ask(br#"{"op":"status"}"#);
    assert_eq!(v["status"], "ok", "{v}");

    // nothing was half-added, nothing was left behind
    let names: Vec<String> = sw.ports().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["vhu0", "vhu1"]);
    assert!(!std::path::Path::new(&format!("{dir}/other.sock")).exists());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "not a socket",
        "the plain file is untouched"
    );
    // the first connection still works, and so does the dataplane
    assert!(matches!(c.call(&Request::FdbShow {}), Ok(Reply::Fdb(_))));
    phase(&mut pods, 0, &m[1], &[0, BURST], || {});
    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});
}

#[test]
fn ports_are_added_and_deleted_while_traffic_flows() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start_with_vhost(2, &[]);
    let mut pods = start_pods(&sw, 2);
    let m: Vec<String> = (0..2).map(pod_mac).collect();
    let a2 = pod_mac(2);
    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});
    phase(&mut pods, 0, &m[1], &[0, BURST], || {});

    // a steady stream p0 -> p1
    pods[1].start_fwd();
    pods[0].cmd(&format!("set eth-peer 0 {}", m[1]));
    pods[0].set_fwd("txonly");
    pods[0].start_fwd();
    let window = Duration::from_millis(500);
    assert_flowing(&mut pods[1], window, 1000, "stream before port-add");

    // add vhu2 through the socket, mid-stream
    let info = sw.add_vhost("vhu2");
    assert_eq!(
        (info.name.as_str(), info.kind),
        ("vhu2", PortKind::VhostServer)
    );
    assert_flowing(&mut pods[1], window, 1000, "stream after port-add");

    // a pod on it: it works, and gets none of the (unicast) stream
    let mut p2 = Pod::start("p2", &sw.vhost_path("vhu2"), &a2, &m[0]);
    p2.wait_link_up();
    sw.wait_link("vhu2", true);
    // to a0: p0 (in txonly mode) does not poll, these wait in its ring
    p2.send_burst(&m[0]);
    wait_for("a2 learned behind vhu2", TIMEOUT, || {
        (sw.fdb_port_of(&a2).as_deref() == Some("vhu2")).then_some(())
    });
    std::thread::sleep(window);
    let s = sw.stats();
    let v2 = port_stats(&s, "vhu2");
    assert_eq!(
        (v2.rx_packets, v2.rx_drops, v2.tx_packets),
        (BURST, 0, 0),
        "vhu2: {v2:?}"
    );
    assert_eq!(p2.rx_packets(), 0, "the stream to a1 must not reach p2");
    assert_flowing(&mut pods[1], window, 1000, "stream with vhu2 in use");

    // delete it, mid-stream
    assert_eq!(
        sw.call(&Request::PortDel {
            name: "vhu2".into()
        }),
        Reply::Done
    );
    assert_flowing(&mut pods[1], window, 1000, "stream after port-del");
    let names: Vec<String> = sw.ports().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["vhu0", "vhu1"]);
    assert_eq!(
        sw.fdb_port_of(&a2),
        None,
        "MACs behind a deleted port are forgotten"
    );
    assert!(
        !std::path::Path::new(&sw.vhost_path("vhu2")).exists(),
        "its socket is removed"
    );
    wait_for("p2 to see its link down", TIMEOUT, || {
        (!p2.link_up()).then_some(())
    });
    drop(p2);

    // the name can be used again, and the new port starts from zero
    sw.add_vhost("vhu2");
    let s = sw.stats();
    let v2 = port_stats(&s, "vhu2");
    assert_eq!(
        (v2.rx_packets, v2.tx_packets),
        (0, 0),
        "a re-added port's counters: {v2:?}"
    );
    assert_eq!(
        sw.call(&Request::PortDel {
            name: "vhu2".into()
        }),
        Reply::Done
    );
    assert_flowing(
        &mut pods[1],
        window,
        1000,
        "stream after the second port-del",
    );

    // stream stopped: exact counts again
    pods[0].set_fwd("rxonly");
    pods[1].stop_fwd();
    phase(&mut pods, 0, &m[1], &[0, BURST], || {});
    phase(&mut pods, 1, &m[0], &[BURST, 0], || {});
    // the stream may have overrun p1 (tx_full); nothing else was dropped
    let s = sw.stats();
    let other: Vec<_> = s
        .drops
        .iter()
        .filter(|(k, v)| *k != "tx_full" && **v != 0)
        .collect();
    assert!(other.is_empty(), "unexpected drops: {:?}", s.drops);
}

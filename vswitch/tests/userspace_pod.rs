//! A userspace pod (testpmd over virtio-user on a vhost-user attachment) and
//! a kernel pod (a network namespace on a TAP attachment) reach each other
//! through vswitchd's routing, with addresses from its IPAM.
//!
//! Needs root; run with `cargo test -p vswitch --release --test userspace_pod`.

use api::{AttachKind, Desired, IpPool, Reply, Request};
use testsupport::*;

#[test]
fn a_testpmd_pod_answers_a_kernel_pods_ping() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    let r = sw.call(&Request::Apply {
        doc: Desired {
            pools: vec![IpPool {
                block_size: Some(26),
                ..IpPool::new("pods", "10.68.0.0/16")
            }],
            ..Default::default()
        },
    });
    assert_eq!(r, Reply::Done);

    let k = attach_pod(&sw, "kernel-pod", AttachKind::Tap);
    let u = attach_pod(&sw, "dpdk-pod", AttachKind::Vhost);
    let sock = u.socket.clone().expect("a vhost attachment has a socket");
    assert!(
        sock.starts_with(&format!("{}/pods/dpdk-pod/", sw.dir.display())),
        "{sock}"
    );

    let ns = Netns::wired(
        &format!("vswt-k{}", std::process::id()),
        k.iface
            .as_deref()
            .expect("a tap attachment has an interface"),
        &k.mac.to_string(),
        k.ips[0],
    );
    // the DPDK pod uses the MAC the switch gave it and answers ICMP echo and ARP
    let mut p = Pod::start("dpdk-pod", &sock, &u.mac.to_string(), "ee:ee:ee:ee:ee:ee");
    p.wait_link_up();
    sw.wait_link(&u.port, true);
    p.set_fwd("icmpecho");
    p.start_fwd();

    let target = u.ips[0].to_string();
    let o = in_ns(
        &ns.name,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", &target],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "kernel pod -> testpmd pod {target}: {out}\n{}",
        sw.log_tail(20)
    );
    assert!(out.contains("3 received"), "{out}");
    p.stop_fwd();
    assert!(p.rx_packets() >= 3, "the DPDK pod saw the echo requests");
}

//! A userspace pod attached through the plugin (a vhost-user socket that a
//! `dpdk-testpmd` pod opens with virtio-user) and a kernel pod attached
//! through the plugin (a network namespace) reach each other through
//! vswitchd: the kernel pod pings the DPDK pod, which answers in testpmd's
//! `icmpecho` mode.
//!
//! Needs root and `dpdk-testpmd`; run with
//! `cargo test -p cni-shim --release --test userspace`.

mod common;

use common::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A testpmd pod, killed on drop.
struct Testpmd(Child);

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_dpdk_pod_and_a_kernel_pod_attached_by_the_plugin_talk() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    sw.apply_pool("main", "10.214.0.0/16", 26);
    let conf =
        json!({"cniVersion": "1.1.0", "name": "podnet", "type": "vswitch-cni", "socket": sw.sock});

    let kns = Netns::new("k");
    let kid = format!("uk{}x{}", std::process::id(), unique());
    let kernel = Call::new(&kid, &kns.path).run("ADD", &conf).ok();

    let uns = Netns::new("u");
    let uid = format!("uu{}x{}", std::process::id(), unique());
    let mut vconf = conf.clone();
    vconf["args"] =
        json!({"vswitch": {"interface": "vhost", "socketDir": sw.dir.join("pods").join(&uid)}});
    let dpdk = Call::new(&uid, &uns.path).run("ADD", &vconf).ok();
    let sock = dpdk["interfaces"][0]["socketPath"]
        .as_str()
        .unwrap_or_else(|| panic!("no socketPath in {dpdk}"))
        .to_owned();
    let mac = dpdk["interfaces"][0]["mac"]
        .as_str()
        .unwrap_or_else(|| panic!("no mac in {dpdk}"))
        .to_owned();
    let target = first_ip(&dpdk);

    // the DPDK pod: its virtio-user port on the socket, with the MAC the
    // plugin reported, answering ARP and ICMP echo
    let child = Command::new("dpdk-testpmd")
        .args([
            "--lcores",
            "0@1,1@0",
            "--no-pci",
            "--in-memory",
            "--single-file-segments",
        ])
        .args([
            "-m",
            "128",
            "--file-prefix",
            &format!("cniu{}", std::process::id()),
        ])
        .arg("--vdev")
        .arg(format!(
            "net_virtio_user0,path={sock},server=0,mac={mac},queue_size=256"
        ))
        .args([
            "--",
            "--forward-mode=icmpecho",
            "--nb-cores=1",
            "--total-num-mbufs=2048",
        ])
        .args(["--auto-start", "--stats-period", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dpdk-testpmd");
    let _pod = Testpmd(child);

    // its link comes up when testpmd has started: ping until answered
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = kns.exec(&["ping", "-c", "1", "-W", "1", &target]);
        if o.status.success() {
            break;
        }
        assert!(
            Instant::now() < end,
            "kernel pod {} could not ping DPDK pod {target}:\n{}\n{}",
            first_ip(&kernel),
            String::from_utf8_lossy(&o.stdout),
            sw.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let o = kns.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", &target]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("5 received"), "{text}");

    Call::new(&uid, &uns.path).run("DEL", &vconf).ok_silent();
    Call::new(&kid, &kns.path).run("DEL", &conf).ok_silent();
    assert_eq!(sw.allocated(), 0);
}

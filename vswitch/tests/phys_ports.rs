//! Physical ports: PCI devices are checked before the EAL starts (present,
//! bound to a DPDK driver) and only those named at start are taken; af-xdp
//! ports take an existing kernel interface, as af-packet ports do.
//!
//! This host has no NIC bound to a DPDK driver, so a PCI port that forwards
//! is not tested here: what is, is every way one is refused.
//!
//! Needs root; run with `cargo test -p vswitch --release --test phys_ports`.

use api::{ClientError, PortKind, PortSpec, Reply, Request};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testsupport::*;

/// Runs vswitchd with `extra` arguments, a socket, state dir and EAL file
/// prefix of its own, expecting it to stop by itself: its exit status and
/// what it printed.
fn run_to_exit(extra: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = std::env::temp_dir().join(format!("vsw-phys-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).expect("test dir");
    let mut child = Command::new(vswitchd())
        .arg("--socket")
        .arg(dir.join("ctl.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--file-prefix", &format!("vswphys{}", unique())])
        .args(["--lcores", "0@0,1@1", "--no-huge"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning vswitchd");
    let end = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("waiting for vswitchd").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vswitchd {extra:?} did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("vswitchd output");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[test]
fn a_pci_port_on_no_such_device_stops_vswitchd_with_the_fix() {
    let _g = serial();
    must_be_root();
    let addr = "0000:ff:1f.7";
    assert!(!Path::new("/sys/bus/pci/devices").join(addr).exists());
    let (st, text) = run_to_exit(&["--port", &format!("up=pci:{addr}"), "--uplink", "up"]);
    assert!(!st.success(), "{text}");
    assert!(
        text.contains("no PCI device 0000:ff:1f.7 on this host (lspci -D lists them)"),
        "{text}"
    );
    // stopped before the EAL: it never asked for the device
    assert!(!text.contains("EAL: "), "{text}");
}

/// A PCI device of this host bound to a kernel driver (not one DPDK drives
/// through), with its driver's name.
fn kernel_bound_device() -> Option<(String, String)> {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()?
        .flatten()
        .collect();
    devs.sort_by_key(|d| d.file_name());
    devs.into_iter().find_map(|d| {
        let driver = std::fs::read_link(d.path().join("driver")).ok()?;
        let driver = driver.file_name()?.to_string_lossy().into_owned();
        (!["vfio-pci", "uio_pci_generic", "igb_uio"].contains(&driver.as_str()))
            .then(|| (d.file_name().to_string_lossy().into_owned(), driver))
    })
}

#[test]
fn a_pci_port_on_a_kernel_bound_device_is_refused_with_the_fix() {
    let _g = serial();
    must_be_root();
    let Some((addr, driver)) = kernel_bound_device() else {
        eprintln!(
            "no PCI device bound to a kernel driver on this host: the case is covered by \
             vswitchd's unit test on a fake sysfs alone"
        );
        return;
    };
    let (st, text) = run_to_exit(&["--port", &format!("nic=pci:{addr}")]);
    assert!(!st.success(), "{text}");
    let want = format!(
        "PCI device {addr} is bound to {driver}, not to a DPDK driver: bind it with \
         \"dpdk-devbind.py --bind=vfio-pci {addr}\" (modprobe vfio-pci first)"
    );
    assert!(text.contains(&want), "want {want:?} in:\n{text}");
    assert!(!text.contains("EAL: "), "{text}");
}

fn refused(sw: &Switch, port: PortSpec) -> String {
    match sw.try_call(&Request::PortAdd { port }) {
        Err(ClientError::Refused { message, .. }) => message,
        r => panic!("port-add should be refused: {r:?}"),
    }
}

fn spec(name: &str, kind: PortKind, iface: Option<&str>, pci: Option<&str>) -> PortSpec {
    PortSpec {
        name: name.into(),
        kind,
        path: None,
        iface: iface.map(Into::into),
        pci: pci.map(Into::into),
    }
}

#[test]
fn a_pci_port_added_at_run_time_is_refused_with_the_fix() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    let m = refused(&sw, spec("nic", PortKind::Pci, None, Some("0000:ff:1f.7")));
    assert!(
        m.contains("was not named when vswitchd started")
            && m.contains("restart vswitchd with --port nic=pci:0000:ff:1f.7"),
        "{m}"
    );
    let m = refused(&sw, spec("nic", PortKind::Pci, None, Some("ff:1f.7")));
    assert!(m.contains("bad PCI address"), "{m}");
    assert!(sw.ports().is_empty());
}

#[test]
fn af_xdp_ports_take_an_existing_interface_once() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    let m = refused(&sw, spec("x", PortKind::AfXdp, Some("vswnosuch0"), None));
    assert_eq!(m, "no interface vswnosuch0 on this host");

    // a veth pair of our own: one end for the switch, the other to send on
    let n = unique() % 10000;
    let (a, b) = (format!("vxa{n}"), format!("vxb{n}"));
    ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    let _gone = Gone(a.clone());
    ip(&["link", "set", &a, "up"]);
    ip(&["link", "set", &b, "up"]);

    match sw.call(&Request::PortAdd {
        port: spec("x", PortKind::AfXdp, Some(&a), None),
    }) {
        Reply::Ports(v) if v.len() == 1 => {
            assert_eq!(v[0].kind, PortKind::AfXdp);
            assert_eq!(v[0].iface.as_deref(), Some(a.as_str()));
        }
        r => panic!("port-add af-xdp: {r:?}"),
    }
    let m = refused(&sw, spec("y", PortKind::AfPacket, Some(&a), None));
    assert_eq!(m, format!("interface {a} is used by port 'x'"));
    let m = refused(&sw, spec("y", PortKind::AfXdp, Some(&a), None));
    assert_eq!(m, format!("interface {a} is used by port 'x'"));
    sw.wait_link("x", true);
    // a bridge port: what arrives on it is received and counted
    let rx = || {
        sw.stats()
            .ports
            .iter()
            .find(|p| p.name == "x")
            .map_or(0, |p| p.rx_packets)
    };
    let before = rx();
    wait_for("frames through the af-xdp port", TIMEOUT, || {
        let _ = Command::new("ping")
            .args(["-c", "1", "-W", "1", "-I", &b, "10.254.254.254"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        (rx() > before).then_some(())
    });
    // deleted, its XDP program is gone and the interface free again
    assert_eq!(sw.call(&Request::PortDel { name: "x".into() }), Reply::Done);
    let link = Command::new("ip")
        .args(["-d", "link", "show", &a])
        .output()
        .expect("ip link show");
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("prog/xdp"), "{link}");
    match sw.call(&Request::PortAdd {
        port: spec("y", PortKind::AfPacket, Some(&a), None),
    }) {
        Reply::Ports(v) if v.len() == 1 => {}
        r => panic!("port-add af-packet after the af-xdp port: {r:?}"),
    }
}

//! `vsctl capture` against a real vswitchd with two kernel pods (TAPs in
//! namespaces): a TCP exchange between them is captured on one pod's port
//! to a pcapng file and on the other's live through a pipe, and tshark, an
//! independent decoder, finds the handshake, the payload both ways, each
//! frame's direction and a timestamp of today. The filter keeps the pods'
//! pings out. Bad filters and unknown ports are refused, a port is
//! captured once at a time, and a capture whose reader was killed ends on
//! its own.
//!
//! Needs root (hugepages, namespaces) and tshark.

use api::{EndpointSpec, MacAddr, Reply, Request};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testsupport::{must_be_root, need_tools, serial, wait_for, Netns, Switch, Vswitchd};

const VSCTL: &str = env!("CARGO_BIN_EXE_vsctl");
const PORT: &str = "7777";
/// tshark's `frame.packet_flags_direction`: inbound, outbound.
const IN: &str = "0x00000001";
const OUT: &str = "0x00000002";

fn vsctl(sw: &Switch, args: &[&str]) -> Command {
    let mut c = Command::new(VSCTL);
    c.arg("--socket").arg(&sw.sock).args(args);
    c
}

/// Starts a capture and waits for its first line on stderr ("capture N on
/// ..."), so that the switch has armed the ports before traffic starts.
fn start_capture(sw: &Switch, args: &[&str], stdout: Stdio) -> Child {
    let mut child = vsctl(sw, &["capture"])
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vsctl capture");
    let mut line = String::new();
    let err = child.stderr.as_mut().expect("stderr");
    BufReader::new(err)
        .read_line(&mut line)
        .expect("reading vsctl's stderr");
    assert!(line.starts_with("capture "), "vsctl capture said: {line}");
    child
}

fn wait_exit(mut child: Child, within: Duration) -> Output {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("vsctl's output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("vsctl capture did not end within {within:?}");
}

/// The frames of a capture as tshark decodes them: one line per frame,
/// tab-separated fields.
fn tshark(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut c = Command::new("tshark");
    c.args(["-n", "-r"]).arg(file).args(["-T", "fields"]);
    for f in fields {
        c.args(["-e", f]);
    }
    let o = c.output().expect("running tshark");
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

struct Pod {
    ns: Netns,
    addr: Ipv4Addr,
}

fn pod(sw: &Switch, port: &str, n: u8) -> Pod {
    let addr = Ipv4Addr::new(10, 77, 0, n);
    let iface = sw.add_tap(port);
    let mac = format!("02:00:0a:4d:00:{n:02x}");
    let ns = Netns::wired(&format!("{iface}ns"), &iface, &mac, addr);
    let r = sw.call(&Request::EndpointSet {
        endpoint: EndpointSpec {
            port: port.into(),
            mac: mac.parse::<MacAddr>().expect("test MAC"),
            ips: vec![addr],
            pod: Some(format!("shop/{port}")),
            labels: Default::default(),
            namespace: None,
            service_account: None,
            named_ports: Vec::new(),
        },
    });
    assert_eq!(r, Reply::Done);
    Pod { ns, addr }
}

const SERVER: &str = "import socket\n\
s = socket.socket()\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind(('0.0.0.0', 7777))\n\
s.listen()\n\
c, _ = s.accept()\n\
d = c.recv(100)\n\
c.sendall(d.upper())\n\
c.close()\n";

/// One TCP exchange from `client` to `server`: "hello capture" there,
/// "HELLO CAPTURE" back.
fn exchange(client: &Pod, server: &Pod) {
    let srv = server.ns.spawn(&["python3", "-c", SERVER]);
    wait_for("the server to listen", Duration::from_secs(10), || {
        let o = server.ns.exec(&["ss", "-Hltn", "sport", "=", ":7777"]);
        (!o.stdout.is_empty()).then_some(())
    });
    let cli = format!(
        "import socket\n\
         c = socket.create_connection(('{}', 7777), timeout=5)\n\
         c.sendall(b'hello capture')\n\
         print(c.recv(100).decode())\n",
        server.addr
    );
    let said = client.ns.must(&["python3", "-c", &cli]);
    assert_eq!(said.trim(), "HELLO CAPTURE");
    let o = srv.wait(Duration::from_secs(5));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// See the module's note.
#[test]
fn tshark_reads_what_vsctl_capture_wrote() {
    must_be_root();
    need_tools(&["tshark", "python3"]);
    let _g = serial();
    let sw = Vswitchd::new().start();
    let a = pod(&sw, "capa", 1);
    let b = pod(&sw, "capb", 2);
    let file = sw.dir.join("a.pcapng");
    let file_s = file.display().to_string();

    // refusals: each says why, and leaves nothing behind
    for (args, why) in [
        (
            vec!["shop/capa", "--filter", "tcp or udp", "-w", &file_s],
            "bad capture filter",
        ),
        (vec!["nosuchport", "-w", &file_s], "no port or pod named"),
    ] {
        let o = vsctl(&sw, &["capture"])
            .args(&args)
            .output()
            .expect("vsctl");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }

    // pod a's port by its pod name, to a file; pod b's live, through a pipe
    let filter = format!("tcp and port {PORT}");
    let to_file = start_capture(
        &sw,
        &["shop/capa", "--filter", &filter, "-w", &file_s],
        Stdio::null(),
    );
    let busy = vsctl(&sw, &["capture", "capa", "-w", "-"])
        .output()
        .expect("vsctl");
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("captured already"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let live = start_capture(
        &sw,
        &["capb", "--filter", &filter, "-c", "3", "-w", "-"],
        Stdio::piped(),
    );
    let mut live = live;
    let live_out = live.stdout.take().expect("vsctl's stdout");
    let reader = Command::new("tshark")
        .args(["-n", "-r", "-", "-T", "fields", "-e", "tcp.flags.str"])
        .args(["-e", "frame.packet_flags_direction"])
        .stdin(live_out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running tshark on a pipe");

    // pings the filter must keep out, during the exchange
    let pinger =
        a.ns.spawn(&["ping", "-c", "10", "-i", "0.1", &b.addr.to_string()]);
    exchange(&a, &b);
    let pinged = pinger.wait(Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&pinged.stdout).contains("10 received"),
        "{}",
        String::from_utf8_lossy(&pinged.stdout)
    );

    // the live capture stops at its count by itself
    let o = wait_exit(live, Duration::from_secs(10));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seen = reader.wait_with_output().expect("tshark's output");
    let seen = String::from_utf8_lossy(&seen.stdout);
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 3, "three frames through the pipe: {seen}");
    // on b's port the SYN goes out to b, the SYN-ACK comes in from b
    assert!(lines[0].contains('S') && lines[0].ends_with(OUT), "{seen}");
    assert!(
        lines[1].contains('A') && lines[1].contains('S') && lines[1].ends_with(IN),
        "{seen}"
    );

    // the file capture ends on SIGINT, as at a terminal
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("kill")
        .args(["-INT", &to_file.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let o = wait_exit(to_file, Duration::from_secs(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("0 frames dropped"), "{err}");

    let frames = tshark(
        &file,
        &[
            "frame.interface_name",
            "frame.packet_flags_direction",
            "ip.src",
            "ip.dst",
            "tcp.flags.str",
            "tcp.payload",
            "frame.time_epoch",
            "ip.proto",
        ],
    );
    eprintln!("{} frames in {}", frames.len(), file.display());
    for f in &frames {
        eprintln!("  {}", f.join(" "));
    }
    let (sa, sb) = (a.addr.to_string(), b.addr.to_string());
    let find = |dir: &str, src: &str, flags: &str| {
        frames
            .iter()
            .position(|f| f[1] == dir && f[2] == src && f[4].replace('·', "") == flags)
    };
    // a's port: what a sends comes in (1), what a gets goes out (2)
    let syn = find(IN, &sa, "S").expect("a's SYN, received from a");
    let synack = find(OUT, &sb, "AS").expect("b's SYN-ACK, sent to a");
    let ack = find(IN, &sa, "A").expect("a's ACK, received from a");
    assert!(syn < synack && synack < ack, "handshake in order");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    assert!(
        frames
            .iter()
            .any(|f| f[1] == IN && f[2] == sa && f[3] == sb && f[5] == hex("hello capture")),
        "the request, received from a"
    );
    assert!(
        frames
            .iter()
            .any(|f| f[1] == OUT && f[2] == sb && f[5] == hex("HELLO CAPTURE")),
        "the answer, sent to a"
    );
    assert!(
        frames.iter().all(|f| f[0] == "capa" && f[7] == "6"),
        "only TCP of pod a's port (no pings)"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let t: f64 = frames[syn][6].parse().expect("a timestamp");
    assert!(
        (now - t).abs() < 60.0,
        "timestamps are Unix time: {t} vs {now}"
    );

    // a reader killed outright: the switch ends its capture on its own,
    // and the port may be captured again
    let orphan = start_capture(&sw, &["capa", "-w", &file_s], Stdio::null());
    let st = Command::new("kill")
        .args(["-KILL", &orphan.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let _ = wait_exit(orphan, Duration::from_secs(5));
    let again = wait_for(
        "the switch to end the orphaned capture",
        Duration::from_secs(20),
        || {
            let o = vsctl(
                &sw,
                &["capture", "capa", "-w", &file_s, "--duration", "0.2"],
            )
            .output()
            .ok()?;
            o.status.success().then_some(o)
        },
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("frames written"));
}

//! End to end, as root: a real vswitchd, network namespaces as pods, and
//! `vswitch-cni` called exactly as a runtime calls it. Also the chain with
//! Debian's `host-local`, `tuning` and `portmap`, and the bad-input cases
//! that need a running switch.
//!
//! Run with `sudo -E cargo test -p cni-shim --test e2e`. These tests fail,
//! not skip, when they are not root. They use vswitchd from
//! `target/release` (built with `cargo build --release -p vswitch` if it is
//! missing).

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn conf(sw: &Switch, version: &str) -> Value {
    json!({"cniVersion": version, "name": "podnet", "type": "vswitch-cni", "socket": sw.sock})
}

fn cid(tag: &str) -> String {
    format!("e2e{tag}{}x{}", std::process::id(), unique())
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_ping(from: &Netns, to: &str, sw: &Switch) {
    let o = from.ping(to);
    assert!(
        o.status.success(),
        "ping {} -> {to} failed:\n{}\n{}",
        from.name,
        out(&o),
        sw.log_tail(20)
    );
}

/// Sends 10 MiB from `client` to `server_ip` in `server` over TCP and
/// compares SHA-256 digests on both ends.
fn tcp_transfer(client: &Netns, server: &Netns, server_ip: &str) {
    let server_py = format!(
        "import socket,hashlib,sys\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{server_ip}', 5001)); s.listen(1); print('ready', flush=True)\n\
         s.settimeout(30); c,_=s.accept(); c.settimeout(30); h=hashlib.sha256(); n=0\n\
         while True:\n\
         \x20   b=c.recv(65536)\n\
         \x20   if not b: break\n\
         \x20   h.update(b); n+=len(b)\n\
         print(n, h.hexdigest(), flush=True)\n"
    );
    let mut srv = Command::new("ip")
        .args(["netns", "exec", &server.name, "python3", "-c", &server_py])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the TCP server");
    let mut lines = BufReader::new(srv.stdout.take().expect("server stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "ready", "the TCP server did not start");
    let client_py = format!(
        "import socket,hashlib,random\n\
         r=random.Random(7); data=bytes(r.getrandbits(8) for _ in range(1<<20))*10\n\
         s=socket.create_connection(('{server_ip}', 5001), timeout=30); s.sendall(data); s.close()\n\
         print(len(data), hashlib.sha256(data).hexdigest())\n"
    );
    let o = client.exec(&["python3", "-c", &client_py]);
    assert!(o.status.success(), "TCP client failed: {}", out(&o));
    let sent = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let got = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = srv.wait();
    assert!(sent.starts_with("10485760 "), "client: {sent}");
    assert_eq!(got, sent, "the server received other bytes than were sent");
}

/// `disable_ipv6` of every interface of the host's netns.
fn host_ipv6_settings() -> Vec<(String, String)> {
    host_links()
        .into_iter()
        .map(|l| {
            let v = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{l}/disable_ipv6"))
                .unwrap_or_default();
            (l, v)
        })
        .collect()
}

fn ipv4(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|e| panic!("not an IPv4 address: {s}: {e}"))
}

#[test]
fn three_pods_attach_ping_transfer_check_and_detach() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    sw.apply_pool("e2e-pool", "10.213.0.0/16", 26);
    let c = conf(&sw, "1.0.0");
    let nss: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("p{i}"))).collect();
    let ids: Vec<String> = (0..3).map(|i| cid(&format!("p{i}"))).collect();
    let links_before = host_links();
    let host_v6 = host_ipv6_settings();

    let mut results = Vec::new();
    for (ns, id) in nss.iter().zip(&ids) {
        let t = Instant::now();
        let r = Call::new(id, &ns.path).run("ADD", &c).ok();
        eprintln!("ADD {id}: {:?}", t.elapsed());
        assert_eq!(r["cniVersion"], "1.0.0");
        assert_eq!(r["interfaces"][0]["name"], "eth0");
        assert_eq!(r["interfaces"][0]["sandbox"], ns.path.as_str());
        assert_eq!(r["ips"].as_array().map(Vec::len), Some(1), "{r}");
        assert_eq!(r["ips"][0]["interface"], 0);
        assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
        assert!(r["ips"][0].get("version").is_none(), "{r}");
        assert_eq!(
            r["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
        );
        assert_eq!(r["dns"], json!({}));
        assert!(r["ips"][0]["address"]
            .as_str()
            .is_some_and(|a| a.ends_with("/32")));
        // what the switch holds agrees
        let a = sw.pod(id, "eth0").expect("the switch has the attachment");
        assert_eq!(r["interfaces"][0]["mac"], a.mac.to_string());
        assert_eq!(first_ip(&r), a.ips[0].to_string());
        assert!(a.ipam);
        // the pod's side, as Calico wires it
        let addr = out(&ns.exec(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"]));
        assert!(
            addr.contains(&format!("inet {}/32", first_ip(&r))),
            "{addr}"
        );
        let link = out(&ns.exec(&["ip", "-o", "link", "show", "dev", "eth0"]));
        assert!(
            link.contains(&a.mac.to_string()) && link.contains(",UP"),
            "{link}"
        );
        assert!(link.contains("mtu 1500"), "{link}");
        let routes = out(&ns.exec(&["ip", "-4", "route"]));
        assert!(
            routes.contains("default via 169.254.1.1 dev eth0"),
            "{routes}"
        );
        assert!(routes.contains("169.254.1.1 dev eth0"), "{routes}");
        assert!(routes.contains("scope link"), "{routes}");
        let lo = out(&ns.exec(&["ip", "-o", "link", "show", "dev", "lo"]));
        assert!(lo.contains("UP"), "{lo}");
        // IPv4 only: IPv6 off on the pod's interface (and only there)
        let v6 = out(&ns.exec(&["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]));
        assert_eq!(v6.trim(), "1");
        results.push(r);
    }
    // distinct addresses from one /26 block
    let ips: Vec<Ipv4Addr> = results.iter().map(|r| ipv4(&first_ip(r))).collect();
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{ips:?}");
    let block = |ip: &Ipv4Addr| u32::from(*ip) >> 6;
    assert!(ips.iter().all(|ip| block(ip) == block(&ips[0])), "{ips:?}");
    let blocks = sw.blocks();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].allocated, 3);
    assert!(blocks[0].cidr.ends_with("/26"), "{blocks:?}");
    // the TAPs went into the pods; the host's settings are untouched
    assert_eq!(host_links(), links_before);
    assert_eq!(host_ipv6_settings(), host_v6);

    // ADD again (a runtime retrying): the same attachment, still wired
    let again = Call::new(&ids[0], &nss[0].path).run("ADD", &c).ok();
    assert_eq!(again, results[0]);
    assert_eq!(sw.allocated(), 3);

    for (i, from) in nss.iter().enumerate() {
        for (j, ip) in ips.iter().enumerate() {
            if i != j {
                assert_ping(from, &ip.to_string(), &sw);
            }
        }
    }
    tcp_transfer(&nss[0], &nss[1], &ips[1].to_string());

    // CHECK, as the runtime calls it: with the cached result
    for ((ns, id), r) in nss.iter().zip(&ids).zip(&results) {
        Call::new(id, &ns.path)
            .run("CHECK", &with_prev(&c, r))
            .ok_silent();
    }
    // a port removed behind the plugin's back
    let port_c = sw.pod(&ids[2], "eth0").expect("pod c").port;
    assert_eq!(
        sw.call(&api::Request::PortDel {
            name: port_c.clone()
        }),
        api::Reply::Done
    );
    let call_c = Call::new(&ids[2], &nss[2].path);
    let (code, msg) = call_c.run("CHECK", &with_prev(&c, &results[2])).err();
    assert_eq!(code, 106, "{msg}");
    assert!(msg.contains(&port_c) && msg.contains("gone"), "{msg}");
    // DEL of it succeeds, twice, and frees its address
    call_c.run("DEL", &with_prev(&c, &results[2])).ok_silent();
    call_c.run("DEL", &with_prev(&c, &results[2])).ok_silent();
    assert!(sw.pod(&ids[2], "eth0").is_none());
    assert_eq!(sw.allocated(), 2);

    // an ordinary DEL: address freed, port removed, interface gone
    let port_a = sw.pod(&ids[0], "eth0").expect("pod a").port;
    let call_a = Call::new(&ids[0], &nss[0].path);
    call_a.run("DEL", &with_prev(&c, &results[0])).ok_silent();
    assert!(sw.pod(&ids[0], "eth0").is_none());
    assert!(!sw.port_names().contains(&port_a));
    assert_eq!(sw.allocated(), 1);
    assert_eq!(nss[0].links(), BTreeSet::from(["lo".to_owned()]));
    // CHECK of a detached pod: unknown container
    let (code, _) = call_a.run("CHECK", &with_prev(&c, &results[0])).err();
    assert_eq!(code, 3);
    // DEL again, and DEL without a netns (the sandbox is gone)
    call_a.run("DEL", &c).ok_silent();
    let mut env = call_a.env("DEL");
    env.retain(|(k, _)| *k != "CNI_NETNS");
    plugin(&env, &c.to_string()).ok_silent();

    Call::new(&ids[1], &nss[1].path)
        .run("DEL", &with_prev(&c, &results[1]))
        .ok_silent();
    assert_eq!(sw.allocated(), 0);
    assert!(sw.pods().is_empty());
    assert!(sw.port_names().is_empty(), "{:?}", sw.port_names());
    assert_eq!(host_links(), links_before);
}

/// The smallest config, with vswitchd on the socket the config names: the
/// defaults carry it (vswitchd's own default socket is the same default).
#[test]
fn the_smallest_config_attaches_a_pod() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    sw.apply_pool("small", "10.216.0.0/24", 26);
    // the smallest config plus only the socket of this test's switch
    let mut c = json!({"cniVersion": "1.0.0", "name": "podnet", "type": "vswitch-cni"});
    c["socket"] = json!(sw.sock);
    let ns = Netns::new("s");
    let id = cid("s");
    let call = Call::new(&id, &ns.path);
    let r = call.run("ADD", &c).ok();
    assert!(first_ip(&r).starts_with("10.216.0."), "{r}");
    call.run("DEL", &c).ok_silent();
    assert_eq!(sw.allocated(), 0);
}

fn host_local_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes host-local's state of a test network at the end.
struct DataDir(std::path::PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn chain_with_host_local_tuning_and_portmap() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    let name = format!("vswcni-chain-{}", std::process::id());
    // host-local's default dataDir: /var/lib/cni/networks/NAME
    let data = DataDir(Path::new("/var/lib/cni/networks").join(&name));
    let _ = std::fs::remove_dir_all(&data.0);
    let ipam = json!({"type": "host-local",
        "ranges": [[{"subnet": "10.214.0.0/24", "rangeStart": "10.214.0.10", "rangeEnd": "10.214.0.20"}]]});
    let vsw = |v: &str| json!({"cniVersion": v, "name": name, "type": "vswitch-cni", "socket": sw.sock, "ipam": ipam});
    let tuning = |v: &str| {
        json!({"cniVersion": v, "name": name, "type": "tuning", "promisc": true,
               "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"}})
    };
    let portmap = |v: &str| {
        json!({"cniVersion": v, "name": name, "type": "portmap",
               "capabilities": {"portMappings": true}, "snat": true})
    };
    let tuning_bin = format!("{DEBIAN_CNI}/tuning");
    let portmap_bin = format!("{DEBIAN_CNI}/portmap");

    let nss = [Netns::new("c0"), Netns::new("c1")];
    let ids = [cid("c0"), cid("c1")];
    let versions = ["1.0.0", "0.4.0"];
    let mut finals = Vec::new();
    for ((ns, id), v) in nss.iter().zip(&ids).zip(versions) {
        let call = Call::new(id, &ns.path);
        let r1 = call.run("ADD", &vsw(v)).ok();
        assert_eq!(r1["cniVersion"], v);
        assert_eq!(r1["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(r1["ips"][0]["interface"], 0);
        assert!(r1["ips"][0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.214.0.") && a.ends_with("/32")));
        assert_eq!(r1["ips"][0].get("version").is_some(), v == "0.4.0", "{r1}");
        let a = sw.pod(id, "eth0").expect("attachment");
        assert!(!a.ipam, "the addresses came from host-local");
        assert_eq!(a.ips, vec![ipv4(&first_ip(&r1))]);
        // host-local's state: one file per address holding the container and ifname
        let ip = first_ip(&r1);
        let file = data.0.join(&ip);
        let held = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("host-local state {}: {e}", file.display()));
        assert!(
            held.contains(id.as_str()) && held.contains("eth0"),
            "{held:?}"
        );
        // tuning, then portmap, each with the previous result
        let r2 = call
            .run_other(&tuning_bin, "ADD", &with_prev(&tuning(v), &r1))
            .ok();
        for k in ["interfaces", "ips", "routes"] {
            assert_eq!(r2[k], r1[k], "tuning changed {k}: {r2}");
        }
        let r3 = call
            .run_other(&portmap_bin, "ADD", &with_prev(&portmap(v), &r2))
            .ok();
        for k in ["interfaces", "ips", "routes"] {
            assert_eq!(r3[k], r1[k], "portmap changed {k}: {r3}");
        }
        // tuning did its work on our interface
        let sysctl = out(&ns.exec(&["cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"]));
        assert_eq!(sysctl.trim(), "1");
        let link = out(&ns.exec(&["ip", "-o", "link", "show", "dev", "eth0"]));
        assert!(link.contains("PROMISC"), "{link}");
        finals.push(r3);
    }
    let ips: Vec<String> = finals.iter().map(first_ip).collect();
    assert_eq!(ips, ["10.214.0.10", "10.214.0.11"]);
    assert_eq!(
        std::fs::read_to_string(data.0.join("last_reserved_ip.0"))
            .unwrap_or_default()
            .trim(),
        "10.214.0.11"
    );
    assert_ping(&nss[0], &ips[1], &sw);
    assert_ping(&nss[1], &ips[0], &sw);

    // CHECK down the chain with the final result (host-local CHECKed by us)
    for (((ns, id), v), r) in nss.iter().zip(&ids).zip(versions).zip(&finals) {
        let call = Call::new(id, &ns.path);
        call.run("CHECK", &with_prev(&vsw(v), r)).ok_silent();
        let t = call.run_other(&tuning_bin, "CHECK", &with_prev(&tuning(v), r));
        assert!(t.success, "tuning CHECK: {t:?}");
    }

    // DEL in reverse order
    for (((ns, id), v), r) in nss.iter().zip(&ids).zip(versions).zip(&finals) {
        let call = Call::new(id, &ns.path);
        let p = call.run_other(&portmap_bin, "DEL", &with_prev(&portmap(v), r));
        assert!(p.success, "portmap DEL: {p:?}");
        let t = call.run_other(&tuning_bin, "DEL", &with_prev(&tuning(v), r));
        assert!(t.success, "tuning DEL: {t:?}");
        call.run("DEL", &with_prev(&vsw(v), r)).ok_silent();
        assert!(
            !data.0.join(first_ip(r)).exists(),
            "host-local kept {}",
            first_ip(r)
        );
        assert!(sw.pod(id, "eth0").is_none());
        assert_eq!(ns.links(), BTreeSet::from(["lo".to_owned()]));
        // again: nothing to do, still a success (host-local too)
        call.run("DEL", &with_prev(&vsw(v), r)).ok_silent();
    }
    let left: Vec<String> = host_local_files(&data.0)
        .into_iter()
        .filter(|f| f.parse::<Ipv4Addr>().is_ok())
        .collect();
    assert!(left.is_empty(), "host-local still holds {left:?}");
    assert!(sw.pods().is_empty());
    assert!(sw.port_names().is_empty());
}

/// What must be true after a failed ADD: the switch holds nothing new, no
/// address is taken, and neither the host nor the pod has a new interface.
fn assert_nothing_leaked(
    sw: &Switch,
    id: &str,
    ns: &Netns,
    ports: &BTreeSet<String>,
    allocated: u64,
    links: &BTreeSet<String>,
) {
    assert!(
        sw.pod(id, "eth0").is_none(),
        "the switch kept the attachment"
    );
    assert!(sw.pod(id, "lo").is_none(), "the switch kept the attachment");
    assert_eq!(&sw.port_names(), ports, "ports changed");
    assert_eq!(sw.allocated(), allocated, "addresses leaked");
    assert_eq!(&host_links(), links, "host interfaces changed");
    assert_eq!(
        ns.links(),
        BTreeSet::from(["lo".to_owned()]),
        "the pod kept an interface"
    );
}

#[test]
fn bad_input_with_a_switch() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    sw.apply_pool("main", "10.213.0.0/16", 26);
    sw.apply_pool("tiny", "10.215.0.0/30", 30);
    let links = host_links();
    let ns = Netns::new("bad");
    let id = cid("bad");

    // unknown pool
    let mut c = conf(&sw, "1.0.0");
    c["pools"] = json!(["no-such-pool"]);
    let (code, msg) = Call::new(&id, &ns.path).run("ADD", &c).err();
    assert_eq!(code, 7, "{msg}");
    assert!(
        msg.contains("no pool named no-such-pool (it has: main, tiny)"),
        "{msg}"
    );
    assert_nothing_leaked(&sw, &id, &ns, &BTreeSet::new(), 0, &links);

    // the netns is gone with the switch running
    let (code, msg) = Call::new(&id, "/var/run/netns/vswcni-none")
        .run("ADD", &conf(&sw, "1.0.0"))
        .err();
    assert_eq!(code, 4, "{msg}");
    assert_nothing_leaked(&sw, &id, &ns, &BTreeSet::new(), 0, &links);

    // wiring fails: the pod has an interface of that name already
    let mut call = Call::new(&id, &ns.path);
    call.ifname = "lo";
    let (code, msg) = call.run("ADD", &conf(&sw, "1.0.0")).err();
    assert_eq!(code, 101, "{msg}");
    assert!(msg.contains("interface named lo already"), "{msg}");
    assert_nothing_leaked(&sw, &id, &ns, &BTreeSet::new(), 0, &links);

    // the same with delegated IPAM: host-local's address is released too
    let data = tempfile::tempdir().expect("tempdir");
    let mut c = conf(&sw, "1.0.0");
    c["ipam"] = json!({"type": "host-local", "dataDir": data.path(),
        "ranges": [[{"subnet": "10.214.1.0/24"}]]});
    let (code, msg) = call.run("ADD", &c).err();
    assert_eq!(code, 101, "{msg}");
    let held: Vec<String> = host_local_files(&data.path().join("podnet"))
        .into_iter()
        .filter(|f| f.parse::<Ipv4Addr>().is_ok())
        .collect();
    assert!(held.is_empty(), "host-local still holds {held:?}");
    assert_nothing_leaked(&sw, &id, &ns, &BTreeSet::new(), 0, &links);

    // a vhost socket path the switch cannot use
    let mut c = conf(&sw, "1.0.0");
    c["vhostSocketDir"] = json!(format!("/tmp/{}", "d".repeat(120)));
    let mut vcall = Call::new(&id, &ns.path);
    vcall.args = "VSWITCH_INTERFACE=vhost";
    let (code, msg) = vcall.run("ADD", &c).err();
    assert_eq!(code, 102, "{msg}");
    assert_nothing_leaked(&sw, &id, &ns, &BTreeSet::new(), 0, &links);

    // exhausted pool: the tiny pool serves as many pods as its block holds
    let mut c = conf(&sw, "1.0.0");
    c["pools"] = json!(["tiny"]);
    let mut pods = Vec::new();
    let failed = loop {
        assert!(pods.len() <= 8, "the /30 pool never ran out");
        let pns = Netns::new("t");
        let pid = cid("t");
        let r = Call::new(&pid, &pns.path).run("ADD", &c);
        if !r.success {
            break (r, pns, pid);
        }
        let res = r.ok();
        assert!(first_ip(&res).starts_with("10.215.0."), "{res}");
        pods.push((pns, pid, res));
    };
    let (r, pns, pid) = failed;
    let (code, msg) = r.err();
    assert_eq!(code, 100, "{msg}");
    let tiny: Vec<api::BlockInfo> = sw
        .blocks()
        .into_iter()
        .filter(|b| b.pool == "tiny")
        .collect();
    assert_eq!(tiny.len(), 1, "{tiny:?}");
    assert_eq!(pods.len() as u64, tiny[0].size, "{tiny:?}");
    let ports = sw.port_names();
    assert_eq!(ports.len(), pods.len());
    assert_nothing_leaked(&sw, &pid, &pns, &ports, tiny[0].size, &links);
    for (pns, pid, res) in &pods {
        Call::new(pid, &pns.path)
            .run("DEL", &with_prev(&c, res))
            .ok_silent();
    }
    assert_eq!(sw.allocated(), 0);
    assert!(sw.port_names().is_empty());
}

#[test]
fn vhost_pod_reports_its_socket() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    sw.apply_pool("main", "10.213.0.0/16", 26);
    let sockdir = sw.dir.join("pods");
    for (version, via_args) in [("1.1.0", true), ("1.0.0", false)] {
        let ns = Netns::new("v");
        let id = cid("v");
        let mut c = conf(&sw, version);
        c["vhostSocketDir"] = json!(sockdir);
        let mut call = Call::new(&id, &ns.path);
        if via_args {
            c["args"] = json!({"vswitch": {"interface": "vhost"}});
        } else {
            call.args = "K8S_POD_NAMESPACE=nfv;K8S_POD_NAME=testpmd-0;VSWITCH_INTERFACE=vhost";
        }
        let r = call.run("ADD", &c).ok();
        let want = sockdir.join(&id).join("eth0.sock");
        assert_eq!(
            r["interfaces"][0]["socketPath"],
            want.to_string_lossy().as_ref(),
            "{r}"
        );
        assert!(r["interfaces"][0].get("sandbox").is_none(), "{r}");
        assert_eq!(
            r["interfaces"][0].get("mtu").is_some(),
            version == "1.1.0",
            "{r}"
        );
        assert!(first_ip(&r).starts_with("10.213."), "{r}");
        let md = std::fs::metadata(&want).expect("the socket exists");
        assert!(md.file_type().is_socket());
        let a = sw.pod(&id, "eth0").expect("attachment");
        assert_eq!(a.kind, api::AttachKind::Vhost);
        // nothing went into the pod's netns
        assert_eq!(ns.links(), BTreeSet::from(["lo".to_owned()]));
        call.run("CHECK", &with_prev(&c, &r)).ok_silent();
        call.run("DEL", &with_prev(&c, &r)).ok_silent();
        assert!(!want.exists(), "the socket outlived DEL");
        assert!(sw.pod(&id, "eth0").is_none());
        assert_eq!(sw.allocated(), 0);
    }
}

/// Sets the soft descriptor limit of `pid` (the hard one stays: raising
/// that back would need CAP_SYS_RESOURCE).
fn prlimit_nofile(pid: u32, n: u64) {
    let o = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={n}:")])
        .output()
        .expect("running prlimit");
    assert!(o.status.success(), "prlimit: {}", out(&o));
}

#[test]
fn a_full_switch_refuses_pods_and_names_its_limit() {
    must_be_root();
    let _g = serial();
    let sw = start_switch();
    sw.apply_pool("main", "10.213.0.0/16", 26);
    let c = conf(&sw, "1.0.0");
    let s = sw.status();
    assert_eq!(s.pods, 0);
    assert!(s.pods_max >= 1000, "{s:?}");
    // room for three kernel pods beside what the switch keeps for itself
    prlimit_nofile(sw.pid(), 256 + 3);
    let s = sw.status();
    assert_eq!(s.pods_max, 3, "{s:?}");
    assert!(s.pods_limit.contains("RLIMIT_NOFILE 259"), "{s:?}");
    let nss: Vec<Netns> = (0..4).map(|i| Netns::new(&format!("f{i}"))).collect();
    let ids: Vec<String> = (0..4).map(|i| cid(&format!("f{i}"))).collect();
    for i in 0..3 {
        Call::new(&ids[i], &nss[i].path).run("ADD", &c).ok();
    }
    let (_, msg) = Call::new(&ids[3], &nss[3].path).run("ADD", &c).err();
    assert!(
        msg.contains("RLIMIT_NOFILE 259") && msg.contains("LimitNOFILE"),
        "{msg}"
    );
    assert_eq!(sw.allocated(), 3, "the refused pod's address is back");
    assert!(sw.pod(&ids[3], "eth0").is_none());
    assert_eq!(sw.status().pods, 3);
    // the three still work, and raising the limit lets the fourth in
    assert_ping(
        &nss[0],
        &first_ip(&Call::new(&ids[1], &nss[1].path).run("ADD", &c).ok()),
        &sw,
    );
    prlimit_nofile(sw.pid(), 4096);
    Call::new(&ids[3], &nss[3].path).run("ADD", &c).ok();
    assert_eq!(sw.status().pods, 4);
    for (ns, id) in nss.iter().zip(&ids) {
        Call::new(id, &ns.path).run("DEL", &c).ok_silent();
    }
}

#[test]
fn gc_and_status() {
    must_be_root();
    let _g = serial();
    let mut sw = start_switch();
    sw.apply_pool("main", "10.213.0.0/16", 26);
    let c = conf(&sw, "1.1.0");
    let status_env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", DEBIAN_CNI)];
    plugin(&status_env, &c.to_string()).ok_silent();

    let nss = [Netns::new("g0"), Netns::new("g1")];
    let ids = [cid("g0"), cid("g1")];
    let mut results = Vec::new();
    for (ns, id) in nss.iter().zip(&ids) {
        results.push(Call::new(id, &ns.path).run("ADD", &c).ok());
    }
    assert_eq!(sw.allocated(), 2);
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": ids[0], "ifname": "eth0"}]);
    plugin(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", DEBIAN_CNI)],
        &gc.to_string(),
    )
    .ok_silent();
    assert!(
        sw.pod(&ids[1], "eth0").is_none(),
        "GC kept a dead attachment"
    );
    assert!(
        sw.pod(&ids[0], "eth0").is_some(),
        "GC freed a live attachment"
    );
    assert_eq!(sw.allocated(), 1);
    assert_eq!(nss[1].links(), BTreeSet::from(["lo".to_owned()]));
    Call::new(&ids[0], &nss[0].path)
        .run("CHECK", &with_prev(&c, &results[0]))
        .ok_silent();
    Call::new(&ids[0], &nss[0].path).run("DEL", &c).ok_silent();

    sw.stop();
    let (code, msg) = plugin(&status_env, &c.to_string()).err();
    assert_eq!(code, 50, "{msg}");
    assert!(msg.contains("plugin not available"), "{msg}");
}

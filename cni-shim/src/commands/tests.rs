//! The commands against a fake switch, netns and IPAM plugin: results per
//! version, error codes, rollback of a failed ADD, delegation.

use super::*;
use api::{MacAddr, PortInfo, PortKind};
use serde_json::json;
use std::collections::BTreeMap;

const MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
const NETNS: &str = "/var/run/netns/pod1";

#[derive(Default)]
struct Fake {
    unreachable: bool,
    attach_error: Option<(ErrorCode, String)>,
    attachments: BTreeMap<(String, String), Attachment>,
    ports: BTreeSet<String>,
    next_ip: u8,
    /// requests in order, by op name
    calls: Vec<String>,
    netns_missing: bool,
    wire_error: Option<String>,
    wired: Vec<Wiring>,
    links: HashMap<String, LinkState>,
    removed: Vec<String>,
    plugin_found: bool,
    plugin_runs: Vec<(Command, Vec<u8>)>,
    plugin_out: HashMap<&'static str, PluginRun>,
    last_attach: Option<PodAttach>,
    /// Sockets a client-mode pod's app listens on.
    pod_sockets: BTreeSet<PathBuf>,
    /// Files that are not sockets.
    files: BTreeSet<PathBuf>,
    /// The attachments' socket directories were removed.
    dirs_gone: bool,
}

fn ok_run(stdout: &str) -> PluginRun {
    PluginRun {
        success: true,
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

impl Fake {
    fn new() -> Fake {
        Fake {
            plugin_found: true,
            next_ip: 1,
            ..Fake::default()
        }
    }

    fn op(req: &Request) -> String {
        serde_json::to_value(req).unwrap()["op"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

impl Platform for Fake {
    fn call(&mut self, socket: &str, req: &Request) -> Result<Reply, ClientError> {
        if self.unreachable {
            return Err(ClientError::Connect {
                path: socket.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        self.calls.push(Fake::op(req));
        match req {
            Request::Status {} => Ok(Reply::Done),
            Request::PodAttach { attach } => {
                self.last_attach = Some(attach.clone());
                if let Some((code, message)) = self.attach_error.clone() {
                    return Err(ClientError::Refused { code, message });
                }
                let key = (attach.container_id.clone(), attach.ifname.clone());
                if let Some(a) = self.attachments.get(&key) {
                    return Ok(Reply::Attachment(a.clone()));
                }
                let port = format!("pod-{}", self.attachments.len());
                let ips = attach.ips.clone().unwrap_or_else(|| {
                    self.next_ip += 1;
                    vec![Ipv4Addr::new(10, 65, 0, self.next_ip)]
                });
                let a = Attachment {
                    container_id: attach.container_id.clone(),
                    ifname: attach.ifname.clone(),
                    network: attach.network.clone(),
                    kind: attach.kind,
                    port: port.clone(),
                    iface: (attach.kind == AttachKind::Tap).then(|| format!("vsw{port}")),
                    socket: attach
                        .socket_dir
                        .as_ref()
                        .map(|d| format!("{d}/{}.sock", attach.ifname)),
                    vhost_mode: (attach.kind == AttachKind::Vhost)
                        .then(|| attach.vhost_mode.unwrap_or_default()),
                    mac: MacAddr(MAC),
                    ips,
                    ipam: attach.ips.is_none(),
                    gateway: api::GATEWAY_IP,
                    mtu: 1500,
                    netns: None,
                };
                self.ports.insert(port);
                self.attachments.insert(key, a.clone());
                Ok(Reply::Attachment(a))
            }
            Request::PodGet {
                container_id,
                ifname,
            } => match self
                .attachments
                .get(&(container_id.clone(), ifname.clone()))
            {
                Some(a) if !self.ports.contains(&a.port) => Err(ClientError::Refused {
                    code: ErrorCode::NotFound,
                    message: format!("its port {} was removed", a.port),
                }),
                Some(a) => Ok(Reply::Attachment(a.clone())),
                None => Err(ClientError::Refused {
                    code: ErrorCode::NotFound,
                    message: format!("no attachment for {container_id}/{ifname}"),
                }),
            },
            Request::PodDetach {
                container_id,
                ifname,
            } => {
                if let Some(a) = self
                    .attachments
                    .remove(&(container_id.clone(), ifname.clone()))
                {
                    self.ports.remove(&a.port);
                }
                Ok(Reply::Done)
            }
            Request::PortList {} => Ok(Reply::Ports(
                self.ports
                    .iter()
                    .enumerate()
                    .map(|(i, name)| PortInfo {
                        name: name.clone(),
                        kind: PortKind::Tap,
                        path: None,
                        iface: None,
                        pci: None,
                        port_id: i as u16,
                        lcore: 1,
                        link_up: true,
                        mac: MacAddr(MAC),
                    })
                    .collect(),
            )),
            Request::PodGc { live, .. } => {
                let keep: BTreeSet<&(String, String)> = live.iter().collect();
                let gone: Vec<(String, String)> = self
                    .attachments
                    .keys()
                    .filter(|k| !keep.contains(k))
                    .cloned()
                    .collect();
                for k in &gone {
                    self.attachments.remove(k);
                }
                Ok(Reply::Released(gone))
            }
            Request::PoolList {} => Ok(Reply::Pools(
                ["blue", "green"]
                    .iter()
                    .map(|n| api::IpPool::new(*n, "10.65.0.0/16"))
                    .collect(),
            )),
            Request::PodList {} => Ok(Reply::Attachments(
                self.attachments.values().cloned().collect(),
            )),
            other => panic!("unexpected request {other:?}"),
        }
    }
    fn check_netns(&mut self, path: &Path) -> Result<(), String> {
        if self.netns_missing {
            Err(format!(
                "cannot open {}: No such file or directory",
                path.display()
            ))
        } else {
            Ok(())
        }
    }
    fn wire(&mut self, w: &Wiring) -> Result<(), String> {
        self.wired.push(w.clone());
        if let Some(e) = &self.wire_error {
            return Err(e.clone());
        }
        self.links.insert(
            w.ifname.clone(),
            LinkState {
                index: 2,
                mac: Some(w.mac),
                mtu: Some(u32::from(w.mtu)),
                up: true,
                ipv4: w.ips.iter().map(|ip| (*ip, 32)).collect(),
                default_via: Some(w.gateway),
                link_routes: vec![w.gateway],
            },
        );
        Ok(())
    }
    fn inspect(&mut self, _netns: &Path, ifname: &str) -> Result<Option<LinkState>, String> {
        Ok(self.links.get(ifname).cloned())
    }
    fn remove_link(
        &mut self,
        _netns: &Path,
        ifname: &str,
        _mac: Option<[u8; 6]>,
    ) -> Result<bool, String> {
        self.removed.push(ifname.to_owned());
        Ok(self.links.remove(ifname).is_some())
    }
    fn find_plugin(&mut self, name: &str, path: &[PathBuf]) -> Result<PathBuf> {
        if self.plugin_found {
            Ok(path
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from("/cni"))
                .join(name))
        } else {
            delegate::find_in_path(name, &[PathBuf::from("/nonexistent")])
        }
    }
    fn run_plugin(
        &mut self,
        _plugin: &Path,
        command: Command,
        stdin: &[u8],
    ) -> std::io::Result<PluginRun> {
        self.plugin_runs.push((command, stdin.to_vec()));
        Ok(self
            .plugin_out
            .get(command.as_str())
            .cloned()
            .unwrap_or_else(|| ok_run("")))
    }
    fn file_exists(&mut self, path: &Path) -> bool {
        let dir_of_a_socket = self.attachments.values().any(|a| {
            a.socket
                .as_deref()
                .and_then(|s| Path::new(s).parent())
                .is_some_and(|d| d == path)
        });
        self.is_socket(path) || self.files.contains(path) || (dir_of_a_socket && !self.dirs_gone)
    }
    fn is_socket(&mut self, path: &Path) -> bool {
        // the switch's own sockets are there from the attach on
        let made = self.attachments.values().any(|a| {
            a.vhost_mode == Some(VhostMode::Server)
                && a.socket.as_deref().map(Path::new) == Some(path)
        });
        made || self.pod_sockets.contains(path)
    }
}

fn env_of(command: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", NETNS),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        if v.is_empty() {
            m.remove(*k);
        } else {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

fn invoke(p: &mut Fake, command: &str, conf: &Value, extra: &[(&str, &str)]) -> Outcome {
    let m = env_of(command, extra);
    run(|k| m.get(k).cloned(), conf.to_string().as_bytes(), p)
}

fn ok(out: &Outcome) -> Value {
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out.stdout).unwrap()
    }
}

fn err(out: &Outcome) -> (u64, String) {
    assert_ne!(out.exit_code, 0, "expected a failure, got {}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    (
        v["code"].as_u64().unwrap(),
        v["msg"].as_str().unwrap().to_owned(),
    )
}

fn conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "podnet", "type": "vswitch-cni"})
}

#[test]
fn add_wires_the_pod_and_reports_it_in_each_version() {
    for v in version::SUPPORTED {
        let mut p = Fake::new();
        let r = ok(&invoke(&mut p, "ADD", &conf(v), &[]));
        assert_eq!(r["cniVersion"], v);
        assert_eq!(r["interfaces"][0]["name"], "eth0");
        assert_eq!(r["interfaces"][0]["mac"], "02:aa:bb:cc:dd:01");
        assert_eq!(r["interfaces"][0]["sandbox"], NETNS);
        assert_eq!(r["ips"][0]["address"], "10.65.0.2/32");
        assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(r["ips"][0]["interface"], 0);
        assert_eq!(
            r["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
        );
        assert_eq!(r["dns"], json!({}));
        assert_eq!(
            r["ips"][0].get("version").is_some(),
            v.starts_with("0."),
            "{v}"
        );
        assert_eq!(p.calls, ["pod-attach"]);
        let w = &p.wired[0];
        assert_eq!(w.host_iface, "vswpod-0");
        assert_eq!(w.ifname, "eth0");
        assert_eq!(w.netns, PathBuf::from(NETNS));
        assert_eq!(w.mac, MAC);
        assert_eq!(w.ips, vec![Ipv4Addr::new(10, 65, 0, 2)]);
    }
}

#[test]
fn add_passes_pod_name_and_pools() {
    let mut p = Fake::new();
    let mut c = conf("1.0.0");
    c["pools"] = json!(["blue"]);
    ok(&invoke(
        &mut p,
        "ADD",
        &c,
        &[(
            "CNI_ARGS",
            "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web;K8S_POD_UID=x",
        )],
    ));
    let req = p.last_attach.clone().unwrap();
    assert_eq!(req.container_id, "c1");
    assert_eq!(req.ifname, "eth0");
    assert_eq!(req.pod.as_deref(), Some("ns1/web"));
    assert_eq!(req.pools, ["blue"]);
    assert_eq!(req.kind, AttachKind::Tap);
    assert_eq!(req.ips, None);
    assert_eq!(req.socket_dir, None);
    // a pool the switch does not have is a config error, found before attaching
    let mut p = Fake::new();
    c["pools"] = json!(["blue", "red"]);
    let (code, msg) = err(&invoke(&mut p, "ADD", &c, &[]));
    assert_eq!(code, u64::from(INVALID_CONFIG));
    assert!(
        msg.contains("no pool named red (it has: blue, green)"),
        "{msg}"
    );
    assert_eq!(p.calls, ["pool-list"]);
}

#[test]
fn switch_refusals_map_to_codes() {
    for (code, want) in [
        (ErrorCode::Exhausted, POOL_EXHAUSTED),
        (ErrorCode::Busy, TRY_AGAIN_LATER),
        (ErrorCode::Internal, SWITCH_FAILED),
        (ErrorCode::Invalid, SWITCH_REFUSED),
    ] {
        let mut p = Fake::new();
        p.attach_error = Some((code, "nope".into()));
        let (got, msg) = err(&invoke(&mut p, "ADD", &conf("1.0.0"), &[]));
        assert_eq!(got, u64::from(want), "{code:?}");
        assert!(msg.contains("vswitchd: nope"), "{msg}");
        assert!(p.wired.is_empty());
    }
}

#[test]
fn unreachable_switch_is_try_again_later() {
    let mut p = Fake::new();
    p.unreachable = true;
    for cmd in ["ADD", "DEL", "CHECK"] {
        let (code, msg) = err(&invoke(&mut p, cmd, &conf("1.0.0"), &[]));
        assert_eq!(code, u64::from(TRY_AGAIN_LATER), "{cmd}");
        assert!(msg.contains("is vswitchd running?"), "{msg}");
    }
    let mut c = conf("1.1.0");
    c["cni.dev/valid-attachments"] = json!([]);
    let (code, _) = err(&invoke(&mut p, "GC", &c, &[]));
    assert_eq!(code, u64::from(TRY_AGAIN_LATER));
    let (code, msg) = err(&invoke(&mut p, "STATUS", &conf("1.1.0"), &[]));
    assert_eq!(code, u64::from(NOT_AVAILABLE));
    assert!(msg.starts_with("plugin not available"), "{msg}");
}

#[test]
fn a_wiring_failure_leaves_nothing_behind() {
    let mut p = Fake::new();
    p.wire_error = Some("renaming: Device or resource busy".into());
    let (code, msg) = err(&invoke(&mut p, "ADD", &conf("1.0.0"), &[]));
    assert_eq!(code, u64::from(WIRING_FAILED));
    assert!(msg.contains("Device or resource busy"), "{msg}");
    assert_eq!(p.calls, ["pod-attach", "pod-detach"]);
    assert!(p.attachments.is_empty());
    assert!(p.ports.is_empty());
    assert_eq!(p.removed, ["eth0"]);
}

#[test]
fn a_missing_netns_is_refused_before_the_switch_is_asked() {
    let mut p = Fake::new();
    p.netns_missing = true;
    let (code, msg) = err(&invoke(&mut p, "ADD", &conf("1.0.0"), &[]));
    assert_eq!(code, u64::from(INVALID_ENV));
    assert!(msg.contains("CNI_NETNS"), "{msg}");
    assert!(p.calls.is_empty());
}

#[test]
fn del_detaches_and_is_idempotent() {
    let mut p = Fake::new();
    ok(&invoke(&mut p, "ADD", &conf("1.0.0"), &[]));
    assert_eq!(ok(&invoke(&mut p, "DEL", &conf("1.0.0"), &[])), Value::Null);
    assert!(p.attachments.is_empty());
    assert_eq!(p.removed, ["eth0"]);
    // again, and without a netns
    ok(&invoke(&mut p, "DEL", &conf("1.0.0"), &[]));
    ok(&invoke(&mut p, "DEL", &conf("1.0.0"), &[("CNI_NETNS", "")]));
    // of something never added
    ok(&invoke(
        &mut p,
        "DEL",
        &conf("1.0.0"),
        &[("CNI_CONTAINERID", "other")],
    ));
    assert_eq!(p.removed, ["eth0"], "only a known interface is removed");
}

#[test]
fn check_finds_what_is_wrong() {
    let mut p = Fake::new();
    let r = ok(&invoke(&mut p, "ADD", &conf("1.0.0"), &[]));
    let mut c = conf("1.0.0");
    c["prevResult"] = r.clone();
    ok(&invoke(&mut p, "CHECK", &c, &[]));
    // without a prevResult too
    ok(&invoke(&mut p, "CHECK", &conf("1.0.0"), &[]));

    // the prevResult does not match
    let mut bad = c.clone();
    bad["prevResult"]["ips"][0]["address"] = json!("10.65.0.99/32");
    let (code, msg) = err(&invoke(&mut p, "CHECK", &bad, &[]));
    assert_eq!(code, u64::from(CHECK_FAILED));
    assert!(msg.contains("10.65.0.99"), "{msg}");

    // the interface lost its address
    p.links.get_mut("eth0").unwrap().ipv4.clear();
    let (code, msg) = err(&invoke(&mut p, "CHECK", &c, &[]));
    assert_eq!(code, u64::from(CHECK_FAILED));
    assert!(msg.contains("lacks the address 10.65.0.2/32"), "{msg}");

    // the interface is gone
    p.links.clear();
    let (code, msg) = err(&invoke(&mut p, "CHECK", &c, &[]));
    assert_eq!(code, u64::from(CHECK_FAILED));
    assert!(msg.contains("no interface eth0"), "{msg}");

    // the port is gone behind the plugin's back
    p.ports.clear();
    let (code, msg) = err(&invoke(&mut p, "CHECK", &c, &[]));
    assert_eq!(code, u64::from(CHECK_FAILED));
    assert!(msg.contains("is gone"), "{msg}");

    // the switch does not know the container
    let (code, _) = err(&invoke(
        &mut p,
        "CHECK",
        &c,
        &[("CNI_CONTAINERID", "nobody")],
    ));
    assert_eq!(code, u64::from(UNKNOWN_CONTAINER));
}

#[test]
fn check_needs_0_4_0_and_gc_status_need_1_1_0() {
    let mut p = Fake::new();
    let (code, msg) = err(&invoke(&mut p, "CHECK", &conf("0.3.1"), &[]));
    assert_eq!(code, u64::from(INCOMPATIBLE_VERSION));
    assert!(msg.contains("0.4.0"), "{msg}");
    for cmd in ["GC", "STATUS"] {
        let (code, msg) = err(&invoke(&mut p, cmd, &conf("1.0.0"), &[]));
        assert_eq!(code, u64::from(INCOMPATIBLE_VERSION), "{cmd}");
        assert!(msg.contains("1.1.0"), "{msg}");
    }
    assert!(p.calls.is_empty());
}

#[test]
fn version_answers_without_a_config() {
    let mut p = Fake::new();
    let m = env_of("VERSION", &[]);
    let out = run(|k| m.get(k).cloned(), b"", &mut p);
    let v = ok(&out);
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
    let out = run(|k| m.get(k).cloned(), br#"{"cniVersion":"0.4.0"}"#, &mut p);
    assert_eq!(ok(&out)["cniVersion"], "0.4.0");
}

#[test]
fn gc_sends_the_live_set() {
    let mut p = Fake::new();
    ok(&invoke(&mut p, "ADD", &conf("1.1.0"), &[]));
    ok(&invoke(
        &mut p,
        "ADD",
        &conf("1.1.0"),
        &[("CNI_CONTAINERID", "c2")],
    ));
    let mut c = conf("1.1.0");
    c["cni.dev/valid-attachments"] = json!([{"containerID": "c2", "ifname": "eth0"}]);
    ok(&invoke(&mut p, "GC", &c, &[]));
    let left: Vec<&String> = p.attachments.keys().map(|(c, _)| c).collect();
    assert_eq!(left, ["c2"]);
    // no list: refused rather than everything freed
    let (code, _) = err(&invoke(&mut p, "GC", &conf("1.1.0"), &[]));
    assert_eq!(code, u64::from(INVALID_CONFIG));
    assert_eq!(p.attachments.len(), 1);
}

#[test]
fn status_succeeds_when_the_switch_answers() {
    let mut p = Fake::new();
    assert_eq!(
        ok(&invoke(&mut p, "STATUS", &conf("1.1.0"), &[])),
        Value::Null
    );
}

fn delegated(version: &str) -> Value {
    json!({"cniVersion": version, "name": "podnet", "type": "vswitch-cni",
           "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]]}})
}

fn host_local_result(addr: &str) -> PluginRun {
    ok_run(
        &json!({"cniVersion": "1.0.0", "ips": [{"address": addr, "gateway": "10.99.0.1"}],
                "dns": {"nameservers": ["10.99.0.53"]}})
        .to_string(),
    )
}

#[test]
fn delegated_ipam_add_and_del() {
    let mut p = Fake::new();
    p.plugin_out
        .insert("ADD", host_local_result("10.99.0.7/24"));
    let c = delegated("1.0.0");
    let r = ok(&invoke(&mut p, "ADD", &c, &[]));
    assert_eq!(r["ips"][0]["address"], "10.99.0.7/32");
    assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(r["dns"]["nameservers"][0], "10.99.0.53");
    let a = p.attachments.values().next().unwrap();
    assert!(!a.ipam);
    assert_eq!(a.ips, vec![Ipv4Addr::new(10, 99, 0, 7)]);
    // the plugin got exactly our config
    assert_eq!(p.plugin_runs[0].0, Command::Add);
    assert_eq!(p.plugin_runs[0].1, c.to_string().into_bytes());

    ok(&invoke(&mut p, "DEL", &c, &[]));
    assert_eq!(p.plugin_runs.last().unwrap().0, Command::Del);
    assert!(p.attachments.is_empty());
}

#[test]
fn delegated_ipam_is_released_when_the_add_fails_later() {
    // the switch refuses
    let mut p = Fake::new();
    p.plugin_out
        .insert("ADD", host_local_result("10.99.0.7/24"));
    p.attach_error = Some((ErrorCode::Invalid, "bad".into()));
    err(&invoke(&mut p, "ADD", &delegated("1.0.0"), &[]));
    let cmds: Vec<Command> = p.plugin_runs.iter().map(|r| r.0).collect();
    assert_eq!(cmds, [Command::Add, Command::Del]);

    // the wiring fails
    let mut p = Fake::new();
    p.plugin_out
        .insert("ADD", host_local_result("10.99.0.7/24"));
    p.wire_error = Some("no".into());
    let (code, _) = err(&invoke(&mut p, "ADD", &delegated("1.0.0"), &[]));
    assert_eq!(code, u64::from(WIRING_FAILED));
    let cmds: Vec<Command> = p.plugin_runs.iter().map(|r| r.0).collect();
    assert_eq!(cmds, [Command::Add, Command::Del]);
    assert!(p.attachments.is_empty());

    // the IPAM hands out IPv6
    let mut p = Fake::new();
    p.plugin_out.insert("ADD", host_local_result("fd00::7/64"));
    let (code, _) = err(&invoke(&mut p, "ADD", &delegated("1.0.0"), &[]));
    assert_eq!(code, u64::from(IPAM_RESULT_UNUSABLE));
    let cmds: Vec<Command> = p.plugin_runs.iter().map(|r| r.0).collect();
    assert_eq!(cmds, [Command::Add, Command::Del]);
    assert!(!p.calls.contains(&"pod-attach".to_owned()));
}

#[test]
fn delegated_ipam_errors_are_passed_on() {
    let mut p = Fake::new();
    p.plugin_out.insert(
        "ADD",
        PluginRun {
            success: false,
            stdout: br#"{"cniVersion":"1.0.0","code":999,"msg":"no IP addresses available in range set"}"#.to_vec(),
            stderr: Vec::new(),
        },
    );
    let (code, msg) = err(&invoke(&mut p, "ADD", &delegated("1.0.0"), &[]));
    assert_eq!(code, 999);
    assert!(
        msg.contains("host-local") && msg.contains("no IP addresses"),
        "{msg}"
    );
    assert!(!p.calls.contains(&"pod-attach".to_owned()));

    let mut p = Fake::new();
    p.plugin_found = false;
    let (code, msg) = err(&invoke(&mut p, "ADD", &delegated("1.0.0"), &[]));
    assert_eq!(code, u64::from(IPAM_EXEC_FAILED));
    assert!(msg.contains("not found in CNI_PATH"), "{msg}");
}

#[test]
fn delegated_gc_check_and_status_reach_the_ipam_plugin() {
    let mut p = Fake::new();
    p.plugin_out
        .insert("ADD", host_local_result("10.99.0.7/24"));
    let r = ok(&invoke(&mut p, "ADD", &delegated("1.1.0"), &[]));
    let mut c = delegated("1.1.0");
    c["prevResult"] = r;
    ok(&invoke(&mut p, "CHECK", &c, &[]));
    let mut c = delegated("1.1.0");
    c["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    ok(&invoke(&mut p, "GC", &c, &[]));
    ok(&invoke(&mut p, "STATUS", &delegated("1.1.0"), &[]));
    let cmds: Vec<Command> = p.plugin_runs.iter().map(|r| r.0).collect();
    assert_eq!(
        cmds,
        [Command::Add, Command::Check, Command::Gc, Command::Status]
    );
    p.plugin_out.insert(
        "STATUS",
        PluginRun {
            success: false,
            stdout: br#"{"code":50,"msg":"down"}"#.to_vec(),
            stderr: Vec::new(),
        },
    );
    let (code, _) = err(&invoke(&mut p, "STATUS", &delegated("1.1.0"), &[]));
    assert_eq!(code, u64::from(IPAM_NOT_AVAILABLE));
}

#[test]
fn chained_after_another_plugin() {
    let mut p = Fake::new();
    let mut c = conf("1.0.0");
    c["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net0", "sandbox": NETNS}],
        "ips": [{"interface": 0, "address": "192.168.1.5/24"}],
        "dns": {}
    });
    let r = ok(&invoke(&mut p, "ADD", &c, &[]));
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["ips"][1]["interface"], 1);
    assert_eq!(r["ips"][0]["address"], "192.168.1.5/24");
}

#[test]
fn vhost_pods_get_a_socket_and_no_wiring() {
    for (extra, conf_args) in [
        (vec![("CNI_ARGS", "VSWITCH_INTERFACE=vhost")], None),
        (vec![], Some(json!({"vswitch": {"interface": "vhost"}}))),
    ] {
        let mut p = Fake::new();
        let mut c = conf("1.1.0");
        if let Some(a) = conf_args {
            c["args"] = a;
        }
        let r = ok(&invoke(&mut p, "ADD", &c, &extra));
        assert!(p.wired.is_empty());
        assert_eq!(
            r["interfaces"][0]["socketPath"],
            "/var/run/vswitch/pods/c1/eth0.sock"
        );
        assert!(r["interfaces"][0].get("sandbox").is_none());
        assert_eq!(r["interfaces"][0]["mtu"], 1500);
        let a = p.attachments.values().next().unwrap();
        assert_eq!(a.kind, AttachKind::Vhost);
        // CHECK looks at the socket, not the netns
        ok(&invoke(&mut p, "CHECK", &c, &extra));
    }
    // the config's directory
    let mut p = Fake::new();
    let mut c = conf("1.0.0");
    c["vhostSocketDir"] = json!("/srv/vhost");
    let r = ok(&invoke(
        &mut p,
        "ADD",
        &c,
        &[("CNI_ARGS", "VSWITCH_INTERFACE=vhost")],
    ));
    assert_eq!(r["interfaces"][0]["socketPath"], "/srv/vhost/c1/eth0.sock");
}

#[test]
fn client_mode_vhost_pods_check_without_their_socket() {
    let mut p = Fake::new();
    let mut c = conf("1.1.0");
    c["vhostMode"] = json!("client");
    let vhost = [("CNI_ARGS", "VSWITCH_INTERFACE=vhost")];
    let r = ok(&invoke(&mut p, "ADD", &c, &vhost));
    let sock = PathBuf::from("/var/run/vswitch/pods/c1/eth0.sock");
    assert_eq!(
        r["interfaces"][0]["socketPath"],
        sock.to_string_lossy().as_ref()
    );
    let asked = p.last_attach.clone().unwrap();
    assert_eq!(
        (asked.kind, asked.vhost_mode),
        (AttachKind::Vhost, Some(VhostMode::Client))
    );
    c["prevResult"] = r.clone();
    // the pod's app has not started: nothing at the path yet
    ok(&invoke(&mut p, "CHECK", &c, &vhost));
    p.pod_sockets.insert(sock.clone());
    ok(&invoke(&mut p, "CHECK", &c, &vhost));
    p.pod_sockets.clear();
    p.files.insert(sock.clone());
    let (code, msg) = err(&invoke(&mut p, "CHECK", &c, &vhost));
    assert_eq!(code, u64::from(CHECK_FAILED));
    assert!(msg.contains("is not a socket"), "{msg}");
    p.files.clear();
    p.dirs_gone = true;
    let (code, msg) = err(&invoke(&mut p, "CHECK", &c, &vhost));
    assert_eq!(code, u64::from(CHECK_FAILED));
    assert!(msg.contains("directory /var/run/vswitch/pods/c1"), "{msg}");
    p.dirs_gone = false;
    // a config that now says server does not match the client port
    let mut server = c.clone();
    server["vhostMode"] = json!("server");
    let (code, msg) = err(&invoke(&mut p, "CHECK", &server, &vhost));
    assert_eq!(code, u64::from(CHECK_FAILED));
    assert!(
        msg.contains("as a vhost client") && msg.contains("\"server\""),
        "{msg}"
    );
    // the pod's runtimeConfig has the last word, here too
    server["runtimeConfig"] = json!({"vswitch": {"vhostMode": "client"}});
    ok(&invoke(&mut p, "CHECK", &server, &vhost));
    ok(&invoke(&mut p, "DEL", &c, &vhost));

    // server mode, said or not, is left out of the request; its socket must exist
    for mode in [None, Some("server")] {
        let mut p = Fake::new();
        let mut c = conf("1.1.0");
        if let Some(m) = mode {
            c["vhostMode"] = json!(m);
        }
        ok(&invoke(&mut p, "ADD", &c, &vhost));
        assert_eq!(p.last_attach.clone().unwrap().vhost_mode, None, "{mode:?}");
        ok(&invoke(&mut p, "CHECK", &c, &vhost));
        let mut client = c.clone();
        client["vhostMode"] = json!("client");
        let (code, msg) = err(&invoke(&mut p, "CHECK", &client, &vhost));
        assert_eq!(code, u64::from(CHECK_FAILED));
        assert!(msg.contains("as a vhost server"), "{msg}");
        for a in p.attachments.values_mut() {
            a.vhost_mode = None;
        }
        // a switch that predates the mode: its vhost pods are servers
        let (_, msg) = err(&invoke(&mut p, "CHECK", &client, &vhost));
        assert!(msg.contains("as a vhost server"), "{msg}");
    }
    // a TAP pod's config may say client: it is about vhost pods only
    let mut p = Fake::new();
    let mut c = conf("1.1.0");
    c["vhostMode"] = json!("client");
    ok(&invoke(&mut p, "ADD", &c, &[]));
    let asked = p.last_attach.clone().unwrap();
    assert_eq!((asked.kind, asked.vhost_mode), (AttachKind::Tap, None));
}

#[test]
fn static_ips_need_a_delegated_ipam() {
    let mut p = Fake::new();
    let mut c = conf("1.0.0");
    c["args"] = json!({"cni": {"ips": ["10.65.0.9"]}});
    let (code, msg) = err(&invoke(&mut p, "ADD", &c, &[]));
    assert_eq!(code, u64::from(UNSUPPORTED_FIELD));
    assert!(msg.contains("static addresses"), "{msg}");
}

#[test]
fn errors_are_in_the_configs_version() {
    let mut p = Fake::new();
    p.attach_error = Some((ErrorCode::Exhausted, "pool full".into()));
    let out = invoke(&mut p, "ADD", &conf("0.3.1"), &[]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "0.3.1");
    assert_eq!(v["code"], 100);
    // an env error before the config is read still speaks its version
    let out = invoke(&mut p, "ADD", &conf("0.4.0"), &[("CNI_IFNAME", "")]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(v["code"], 4);
}

#[test]
fn link_comparison_lists_every_difference() {
    let a = Attachment {
        container_id: "c".into(),
        ifname: "eth0".into(),
        network: None,
        kind: AttachKind::Tap,
        port: "p".into(),
        iface: None,
        socket: None,
        vhost_mode: None,
        mac: MacAddr(MAC),
        ips: vec![Ipv4Addr::new(10, 0, 0, 1)],
        ipam: true,
        gateway: api::GATEWAY_IP,
        mtu: 1500,
        netns: None,
    };
    let st = LinkState {
        index: 3,
        mac: Some([2, 0, 0, 0, 0, 9]),
        mtu: Some(1500),
        up: false,
        ipv4: vec![],
        default_via: Some(Ipv4Addr::new(10, 0, 0, 254)),
        link_routes: vec![],
    };
    let e = compare_link(&a, &st).unwrap_err();
    for want in ["MAC", "lacks", "down", "scope link", "10.0.0.254"] {
        assert!(e.contains(want), "{want}: {e}");
    }
}

//! ADD, DEL, CHECK, VERSION, GC and STATUS, written against a [`Platform`]
//! (the switch, the netns wiring, the delegated plugin) so that their logic,
//! rollback included, is tested without root.

use crate::config::{self, NetConf};
use crate::delegate::{self, PluginRun};
use crate::env::{Command, Env, InterfaceKind};
use crate::error::*;
use crate::netns::{LinkState, Wiring};
use crate::result::{self, PodResult};
use crate::version;
use api::{AttachKind, Attachment, ClientError, ErrorCode, PodAttach, Reply, Request, VhostMode};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// What the commands need from the outside world.
pub trait Platform {
    /// One request to vswitchd at `socket`.
    fn call(&mut self, socket: &str, req: &Request) -> Result<Reply, ClientError>;
    /// Checks that `path` is a network namespace.
    fn check_netns(&mut self, path: &Path) -> Result<(), String>;
    fn wire(&mut self, w: &Wiring) -> Result<(), String>;
    fn inspect(&mut self, netns: &Path, ifname: &str) -> Result<Option<LinkState>, String>;
    fn remove_link(
        &mut self,
        netns: &Path,
        ifname: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<bool, String>;
    fn find_plugin(&mut self, name: &str, path: &[PathBuf]) -> Result<PathBuf> {
        delegate::find_in_path(name, path)
    }
    fn run_plugin(
        &mut self,
        plugin: &Path,
        command: Command,
        stdin: &[u8],
    ) -> std::io::Result<PluginRun>;
    fn file_exists(&mut self, path: &Path) -> bool {
        path.exists()
    }
    /// Whether `path` itself (not what a link there leads to) is a unix socket.
    fn is_socket(&mut self, path: &Path) -> bool {
        std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    }
}

/// The real world: vswitchd's control socket, netlink, exec.
#[derive(Default)]
pub struct System {
    clients: HashMap<String, api::Client>,
}

impl Platform for System {
    fn call(&mut self, socket: &str, req: &Request) -> Result<Reply, ClientError> {
        if !self.clients.contains_key(socket) {
            let c = api::Client::connect(socket)?;
            self.clients.insert(socket.to_owned(), c);
        }
        let Some(c) = self.clients.get_mut(socket) else {
            return Err(ClientError::Closed);
        };
        let r = c.call(req);
        if matches!(
            r,
            Err(ClientError::Io(_) | ClientError::Closed | ClientError::Decode(_))
        ) {
            self.clients.remove(socket);
        }
        r
    }
    fn check_netns(&mut self, path: &Path) -> Result<(), String> {
        crate::netns::open_netns(path).map(drop)
    }
    fn wire(&mut self, w: &Wiring) -> Result<(), String> {
        crate::netns::wire(w)
    }
    fn inspect(&mut self, netns: &Path, ifname: &str) -> Result<Option<LinkState>, String> {
        crate::netns::inspect(netns, ifname)
    }
    fn remove_link(
        &mut self,
        netns: &Path,
        ifname: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<bool, String> {
        crate::netns::remove(netns, ifname, mac)
    }
    fn run_plugin(
        &mut self,
        plugin: &Path,
        command: Command,
        stdin: &[u8],
    ) -> std::io::Result<PluginRun> {
        delegate::run(plugin, command, stdin)
    }
}

/// What the process prints and exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: i32,
}

/// Runs one invocation: the environment through `get`, the config on `stdin`.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8], p: &mut dyn Platform) -> Outcome {
    let err_version = config::error_version(stdin);
    let fail_with = |e: CniError| Outcome {
        stdout: e.to_json(err_version),
        exit_code: 1,
    };
    let env = match Env::parse(&get) {
        Ok(e) => e,
        Err(e) => return fail_with(e),
    };
    if env.command == Command::Version {
        return Outcome {
            stdout: version::version_info(config::peek_version(stdin).as_deref()),
            exit_code: 0,
        };
    }
    let conf = match NetConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return fail_with(e),
    };
    let res = match env.command {
        Command::Add => add(&env, &conf, p).map(|v| v.to_string()),
        Command::Del => del(&env, &conf, p).map(|()| String::new()),
        Command::Check => check(&env, &conf, p).map(|()| String::new()),
        Command::Gc => gc(&env, &conf, p).map(|()| String::new()),
        Command::Status => status(&env, &conf, p).map(|()| String::new()),
        Command::Version => Ok(String::new()),
    };
    match res {
        Ok(stdout) => Outcome {
            stdout,
            exit_code: 0,
        },
        Err(e) => Outcome {
            stdout: e.to_json(conf.version.as_str()),
            exit_code: 1,
        },
    }
}

/// A failure to talk to vswitchd, or its refusal, as a CNI error.
pub fn switch_error(e: ClientError, socket: &str) -> CniError {
    match e {
        ClientError::Connect { path, source } => CniError::new(
            TRY_AGAIN_LATER,
            format!(
                "cannot reach vswitchd at {path}: {source} (is vswitchd running? the config's \
                 \"socket\" names its control socket)"
            ),
        ),
        ClientError::Io(err) => CniError::new(
            IO_FAILURE,
            format!("talking to vswitchd at {socket}: {err}"),
        ),
        ClientError::Closed => CniError::new(
            IO_FAILURE,
            format!("vswitchd at {socket} closed the connection before answering"),
        ),
        ClientError::Decode(err) => CniError::new(
            SWITCH_FAILED,
            format!(
                "vswitchd at {socket} sent a reply this plugin does not understand ({err}): \
                 are vswitchd and vswitch-cni of the same version?"
            ),
        ),
        ClientError::Refused { code, message } => {
            let code = match code {
                ErrorCode::Exhausted => POOL_EXHAUSTED,
                ErrorCode::Busy => TRY_AGAIN_LATER,
                ErrorCode::Internal => SWITCH_FAILED,
                ErrorCode::Invalid | ErrorCode::NotFound => SWITCH_REFUSED,
            };
            CniError::new(code, format!("vswitchd: {message}"))
        }
    }
}

fn unexpected(reply: &Reply, what: &str) -> CniError {
    CniError::new(
        SWITCH_FAILED,
        format!("vswitchd answered {what} with {reply:?}: are vswitchd and vswitch-cni of the same version?"),
    )
}

/// Runs the delegated IPAM plugin for `command`.
fn ipam(
    env: &Env,
    conf: &NetConf,
    p: &mut dyn Platform,
    command: Command,
) -> Result<Option<Map<String, Value>>> {
    let Some(name) = &conf.ipam_type else {
        return Ok(None);
    };
    let plugin = p.find_plugin(name, &env.path)?;
    let run = p.run_plugin(&plugin, command, &conf.raw).map_err(|e| {
        CniError::new(
            IPAM_EXEC_FAILED,
            format!("cannot run IPAM plugin {}: {e}", plugin.display()),
        )
    })?;
    delegate::interpret(name, command, &run)
}

fn mac_string(mac: [u8; 6]) -> String {
    api::MacAddr(mac).to_string()
}

fn add(env: &Env, conf: &NetConf, p: &mut dyn Platform) -> Result<Value> {
    let kind = env
        .args
        .interface
        .or(conf.interface)
        .unwrap_or(InterfaceKind::Tap);
    if conf.requested_ips && conf.ipam_type.is_none() {
        return fail(
            UNSUPPORTED_FIELD,
            "static addresses (args.cni.ips or runtimeConfig.ips) are not supported by \
             vswitchd's IPAM: delegate IPAM to a plugin that honours them (e.g. host-local)",
        );
    }
    let Some(netns) = &env.netns else {
        return fail(INVALID_ENV, "CNI_NETNS is not set; ADD needs it");
    };
    p.check_netns(netns)
        .map_err(|e| CniError::new(INVALID_ENV, format!("CNI_NETNS: {e}")))?;

    if !conf.pools.is_empty() && conf.ipam_type.is_none() {
        check_pools(conf, p)?;
    }
    // delegated IPAM: make sure the plugin and the switch are there before
    // taking an address
    let mut ipam_result = None;
    if let Some(name) = &conf.ipam_type {
        p.find_plugin(name, &env.path)?;
        p.call(&conf.socket, &Request::Status {})
            .map_err(|e| switch_error(e, &conf.socket))?;
        ipam_result = ipam(env, conf, p, Command::Add)?;
    }
    let delegated_ips = match (&conf.ipam_type, &ipam_result) {
        (Some(name), Some(r)) => match result::ipam_addresses(r, name) {
            Ok(ips) => Some(ips),
            Err(e) => return Err(undo(env, conf, p, None, e)),
        },
        (Some(name), None) => {
            let e = CniError::new(
                IPAM_RESULT_UNUSABLE,
                format!("IPAM plugin {name} gave no result"),
            );
            return Err(undo(env, conf, p, None, e));
        }
        _ => None,
    };
    let attach = PodAttach {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        network: Some(conf.name.clone()),
        kind: match kind {
            InterfaceKind::Tap => AttachKind::Tap,
            InterfaceKind::Vhost => AttachKind::Vhost,
        },
        pod: env.args.pod(),
        pools: conf.pools.clone(),
        ips: delegated_ips,
        socket_dir: match kind {
            InterfaceKind::Tap => None,
            InterfaceKind::Vhost => Some(
                conf.socket_dir
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", conf.vhost_socket_dir, env.container_id)),
            ),
        },
        netns: env.netns.as_ref().map(|p| p.display().to_string()),
        // the default is left unsaid, so that a switch that predates the
        // field still takes the request
        vhost_mode: (kind == InterfaceKind::Vhost && conf.vhost_mode != VhostMode::Server)
            .then_some(conf.vhost_mode),
    };
    let a = match p.call(&conf.socket, &Request::PodAttach { attach }) {
        Ok(Reply::Attachment(a)) => a,
        Ok(other) => {
            let e = unexpected(&other, "pod-attach");
            return Err(undo(env, conf, p, Some(None), e));
        }
        Err(e) => {
            // a refused attach is undone by the switch itself; after a lost
            // connection it may have happened: detach to be sure
            let maybe_attached = (!matches!(e, ClientError::Refused { .. })).then_some(None);
            let e = switch_error(e, &conf.socket).context("attaching the pod");
            return Err(undo(env, conf, p, maybe_attached, e));
        }
    };
    let pod = match kind {
        InterfaceKind::Tap => {
            let Some(host_iface) = a.iface.clone() else {
                let e = CniError::new(
                    SWITCH_FAILED,
                    "vswitchd attached a TAP pod but named no interface",
                );
                return Err(undo(env, conf, p, Some(Some(&a)), e));
            };
            let w = Wiring {
                host_iface,
                netns: netns.clone(),
                ifname: env.ifname.clone(),
                mac: a.mac.0,
                mtu: a.mtu,
                ips: a.ips.clone(),
                gateway: a.gateway,
            };
            if let Err(msg) = p.wire(&w) {
                let e = CniError::new(
                    WIRING_FAILED,
                    format!(
                        "wiring {} in the pod's network namespace {} failed: {msg}",
                        env.ifname,
                        netns.display()
                    ),
                );
                return Err(undo(env, conf, p, Some(Some(&a)), e));
            }
            PodResult {
                ifname: env.ifname.clone(),
                mac: mac_string(a.mac.0),
                sandbox: Some(netns.display().to_string()),
                mtu: a.mtu,
                socket_path: None,
                ips: a.ips.clone(),
                gateway: a.gateway,
                dns: None,
            }
        }
        InterfaceKind::Vhost => {
            let Some(sock) = a.socket.clone() else {
                let e = CniError::new(
                    SWITCH_FAILED,
                    "vswitchd attached a vhost-user pod but named no socket",
                );
                return Err(undo(env, conf, p, Some(Some(&a)), e));
            };
            PodResult {
                ifname: env.ifname.clone(),
                mac: mac_string(a.mac.0),
                sandbox: None,
                mtu: a.mtu,
                socket_path: Some(sock),
                ips: a.ips.clone(),
                gateway: a.gateway,
                dns: None,
            }
        }
    };
    let pod = PodResult {
        dns: ipam_result.as_ref().and_then(|r| r.get("dns").cloned()),
        ..pod
    };
    Ok(result::build(conf.version, &pod, conf.prev_result.as_ref()))
}

/// Refuses a config whose `pools` names a pool vswitchd does not have: a
/// configuration error (7), not an exhausted pool.
fn check_pools(conf: &NetConf, p: &mut dyn Platform) -> Result<()> {
    let known: Vec<String> = match p.call(&conf.socket, &Request::PoolList {}) {
        Ok(Reply::Pools(v)) => v.into_iter().map(|pool| pool.name).collect(),
        Ok(other) => return Err(unexpected(&other, "pool-list")),
        Err(e) => return Err(switch_error(e, &conf.socket)),
    };
    let unknown: Vec<&str> = conf
        .pools
        .iter()
        .filter(|n| !known.contains(n))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    fail(
        INVALID_CONFIG,
        format!(
            "pools: vswitchd has no pool named {} (it has: {}); apply the pool with \
             `vsctl apply -f` or fix the network config",
            unknown.join(", "),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ),
    )
}

/// Undoes a failed ADD: the attachment (`Some(_)`: PodDetach, and the pod's
/// interface if it is left in the netns), then the delegated IPAM's address.
/// Returns `err` with what could not be undone in its details.
fn undo(
    env: &Env,
    conf: &NetConf,
    p: &mut dyn Platform,
    attached: Option<Option<&Attachment>>,
    mut err: CniError,
) -> CniError {
    let mut left = Vec::new();
    if let Some(a) = attached {
        let req = Request::PodDetach {
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        };
        if let Err(e) = p.call(&conf.socket, &req) {
            left.push(format!(
                "the switch still holds the attachment ({}); DEL will free it",
                switch_error(e, &conf.socket).msg
            ));
        }
        if let (Some(a), Some(ns)) = (a, &env.netns) {
            if let Err(e) = p.remove_link(ns, &env.ifname, Some(a.mac.0)) {
                left.push(format!("removing {} from the pod's netns: {e}", env.ifname));
            }
        }
    }
    if conf.ipam_type.is_some() {
        if let Err(e) = ipam(env, conf, p, Command::Del) {
            left.push(format!("releasing the delegated address: {}", e.msg));
        }
    }
    if !left.is_empty() {
        let more = format!("cleanup incomplete: {}", left.join("; "));
        err.details = if err.details.is_empty() {
            more
        } else {
            format!("{}; {more}", err.details)
        };
    }
    err
}

fn del(env: &Env, conf: &NetConf, p: &mut dyn Platform) -> Result<()> {
    let get = Request::PodGet {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    let mac = match p.call(&conf.socket, &get) {
        Ok(Reply::Attachment(a)) => Some(a.mac.0),
        Ok(_) => None,
        Err(ClientError::Refused {
            code: ErrorCode::NotFound,
            ..
        }) => None,
        Err(e) => return Err(switch_error(e, &conf.socket).context("DEL")),
    };
    let detach = Request::PodDetach {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    match p.call(&conf.socket, &detach) {
        Ok(_) => {}
        Err(e) => return Err(switch_error(e, &conf.socket).context("detaching the pod")),
    }
    // the switch closed the TAP, which removes it; make sure, when we know it
    if let (Some(mac), Some(ns)) = (mac, &env.netns) {
        if p.check_netns(ns).is_ok() {
            let _ = p.remove_link(ns, &env.ifname, Some(mac));
        }
    }
    ipam(env, conf, p, Command::Del)?;
    Ok(())
}

/// What CHECK expects of the pod's interface, against what is there.
pub fn compare_link(a: &Attachment, st: &LinkState) -> Result<(), String> {
    let mut bad = Vec::new();
    if st.mac != Some(a.mac.0) {
        bad.push(format!(
            "its MAC is {}, the switch expects {}",
            st.mac.map(mac_string).unwrap_or_else(|| "none".into()),
            a.mac
        ));
    }
    for ip in &a.ips {
        if !st.ipv4.contains(&(*ip, 32)) {
            bad.push(format!("it lacks the address {ip}/32"));
        }
    }
    if !st.up {
        bad.push("it is down".to_owned());
    }
    if !st.link_routes.contains(&a.gateway) {
        bad.push(format!("the route {} scope link is missing", a.gateway));
    }
    if st.default_via != Some(a.gateway) {
        bad.push(match st.default_via {
            Some(g) => format!("the default route goes via {g}, not {}", a.gateway),
            None => format!("the default route via {} is missing", a.gateway),
        });
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// What CHECK expects of the `prevResult`: our interface with the pod's MAC,
/// and exactly the pod's addresses on it.
pub fn compare_prev_result(
    a: &Attachment,
    prev: &Map<String, Value>,
    sandbox: Option<&str>,
) -> Result<(), String> {
    let Some((idx, iface)) = result::find_interface(prev, &a.ifname, sandbox) else {
        return Err(format!("prevResult has no interface {}", a.ifname));
    };
    let mac = iface.get("mac").and_then(Value::as_str).unwrap_or("");
    if !mac.eq_ignore_ascii_case(&a.mac.to_string()) {
        return Err(format!(
            "prevResult gives {} the MAC \"{mac}\", the switch has {}",
            a.ifname, a.mac
        ));
    }
    let ips = result::ips_of(prev).map_err(|e| e.msg)?;
    let in_result: BTreeSet<Ipv4Addr> = ips
        .iter()
        .filter(|e| e.interface == Some(idx))
        .filter_map(|e| match e.address {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let switch: BTreeSet<Ipv4Addr> = a.ips.iter().copied().collect();
    if in_result != switch {
        return Err(format!(
            "prevResult gives {} the addresses {in_result:?}, the switch has {switch:?}",
            a.ifname
        ));
    }
    Ok(())
}

fn check(env: &Env, conf: &NetConf, p: &mut dyn Platform) -> Result<()> {
    if !conf.version.has_check() {
        return fail(
            INCOMPATIBLE_VERSION,
            format!(
                "CHECK is not part of CNI {} (it came with 0.4.0)",
                conf.version
            ),
        );
    }
    let Some(netns) = &env.netns else {
        return fail(INVALID_ENV, "CNI_NETNS is not set; CHECK needs it");
    };
    p.check_netns(netns)
        .map_err(|e| CniError::new(INVALID_ENV, format!("CNI_NETNS: {e}")))?;
    ipam(env, conf, p, Command::Check)?;
    let get = Request::PodGet {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    };
    let a = match p.call(&conf.socket, &get) {
        Ok(Reply::Attachment(a)) => a,
        Ok(other) => return Err(unexpected(&other, "pod-get")),
        Err(ClientError::Refused {
            code: ErrorCode::NotFound,
            message,
        }) => {
            // an attachment the switch still lists has lost its port
            if let Ok(Reply::Attachments(all)) = p.call(&conf.socket, &Request::PodList {}) {
                if let Some(a) = all
                    .iter()
                    .find(|a| a.container_id == env.container_id && a.ifname == env.ifname)
                {
                    return fail(
                        CHECK_FAILED,
                        format!(
                            "the switch port {} of {}/{} is gone (removed behind the plugin's \
                             back; vswitchd: {message}): DEL and ADD the pod again",
                            a.port, env.container_id, env.ifname
                        ),
                    );
                }
            }
            return fail(
                UNKNOWN_CONTAINER,
                format!(
                    "vswitchd does not have the attachment {}/{} ({message}): ADD it again",
                    env.container_id, env.ifname
                ),
            );
        }
        Err(e) => return Err(switch_error(e, &conf.socket).context("CHECK")),
    };
    match p.call(&conf.socket, &Request::PortList {}) {
        Ok(Reply::Ports(ports)) => {
            if !ports.iter().any(|port| port.name == a.port) {
                return fail(
                    CHECK_FAILED,
                    format!(
                        "the switch port {} of {}/{} is gone (removed behind the plugin's back): \
                         DEL and ADD the pod again",
                        a.port, env.container_id, env.ifname
                    ),
                );
            }
        }
        Ok(other) => return Err(unexpected(&other, "port-list")),
        Err(e) => return Err(switch_error(e, &conf.socket).context("CHECK")),
    }
    if conf.ipam_type.is_some() == a.ipam {
        return fail(
            CHECK_FAILED,
            format!(
                "the pod's addresses were assigned by {}, but the config says {}",
                if a.ipam {
                    "vswitchd"
                } else {
                    "a delegated IPAM plugin"
                },
                if conf.ipam_type.is_some() {
                    "delegated IPAM"
                } else {
                    "vswitchd's IPAM"
                }
            ),
        );
    }
    let sandbox = netns.display().to_string();
    match a.kind {
        AttachKind::Tap => {
            if let Some(prev) = &conf.prev_result {
                compare_prev_result(&a, prev, Some(&sandbox))
                    .map_err(|m| CniError::new(CHECK_FAILED, m))?;
            }
            match p.inspect(netns, &env.ifname) {
                Ok(Some(st)) => compare_link(&a, &st).map_err(|m| {
                    CniError::new(
                        CHECK_FAILED,
                        format!("{} in {}: {m}", env.ifname, netns.display()),
                    )
                })?,
                Ok(None) => {
                    return fail(
                        CHECK_FAILED,
                        format!(
                            "there is no interface {} in the pod's network namespace {}",
                            env.ifname,
                            netns.display()
                        ),
                    )
                }
                Err(e) => {
                    return fail(
                        WIRING_FAILED,
                        format!("inspecting the pod's network namespace: {e}"),
                    )
                }
            }
        }
        AttachKind::Vhost => {
            if let Some(prev) = &conf.prev_result {
                compare_prev_result(&a, prev, None).map_err(|m| CniError::new(CHECK_FAILED, m))?;
            }
            let Some(sock) = &a.socket else {
                return fail(CHECK_FAILED, "vswitchd names no vhost-user socket");
            };
            check_vhost_socket(&a, Path::new(sock), conf.vhost_mode, p)
                .map_err(|m| CniError::new(CHECK_FAILED, m))?;
        }
    }
    Ok(())
}

/// What CHECK expects of a vhost pod's socket. The switch's port must be of
/// the mode the config asks for. In server mode the switch made the socket,
/// so it must be there. In client mode the socket is the pod's, and its app
/// may not have started yet (or be restarting, which the mode is for): no
/// socket is fine, but the directory it goes in must still be there, and
/// what is at the path must be a socket, or the pod could never listen there.
fn check_vhost_socket(
    a: &Attachment,
    sock: &Path,
    want: VhostMode,
    p: &mut dyn Platform,
) -> Result<(), String> {
    let have = a.effective_vhost_mode().unwrap_or_default();
    if have != want {
        return Err(format!(
            "vswitchd attached the pod as a vhost {have}, but the config asks for vhostMode \
             \"{want}\": DEL and ADD the pod again"
        ));
    }
    match have {
        VhostMode::Server if p.file_exists(sock) => Ok(()),
        VhostMode::Server => Err(format!(
            "the vhost-user socket {} of the pod is gone",
            sock.display()
        )),
        VhostMode::Client if p.is_socket(sock) => Ok(()),
        VhostMode::Client if p.file_exists(sock) => Err(format!(
            "{} is not a socket: the pod's app cannot listen there",
            sock.display()
        )),
        VhostMode::Client => match sock.parent() {
            Some(dir) if !p.file_exists(dir) => Err(format!(
                "the directory {} of the pod's vhost-user socket is gone: its app cannot \
                 listen there",
                dir.display()
            )),
            _ => Ok(()),
        },
    }
}

fn gc(env: &Env, conf: &NetConf, p: &mut dyn Platform) -> Result<()> {
    if !conf.version.has_gc_and_status() {
        return fail(
            INCOMPATIBLE_VERSION,
            format!(
                "GC is not part of CNI {} (it came with 1.1.0)",
                conf.version
            ),
        );
    }
    let Some(live) = &conf.valid_attachments else {
        return fail(
            INVALID_CONFIG,
            "GC needs cni.dev/valid-attachments in the config (the attachments to keep)",
        );
    };
    let gc = Request::PodGc {
        network: Some(conf.name.clone()),
        live: live.clone(),
    };
    match p.call(&conf.socket, &gc) {
        Ok(_) => {}
        Err(e) => return Err(switch_error(e, &conf.socket).context("GC")),
    }
    ipam(env, conf, p, Command::Gc)?;
    Ok(())
}

fn status(env: &Env, conf: &NetConf, p: &mut dyn Platform) -> Result<()> {
    if !conf.version.has_gc_and_status() {
        return fail(
            INCOMPATIBLE_VERSION,
            format!(
                "STATUS is not part of CNI {} (it came with 1.1.0)",
                conf.version
            ),
        );
    }
    if let Err(e) = p.call(&conf.socket, &Request::Status {}) {
        let e = switch_error(e, &conf.socket);
        return fail(NOT_AVAILABLE, format!("plugin not available: {}", e.msg));
    }
    if let Err(e) = ipam(env, conf, p, Command::Status) {
        return fail(
            IPAM_NOT_AVAILABLE,
            format!("plugin not available: its IPAM plugin: {}", e.msg),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;

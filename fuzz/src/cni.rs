//! The CNI plugin's whole invocation (`cni_shim::run`): the environment and
//! the network configuration from the input, against a fake switch, netns
//! and delegated IPAM plugin, so nothing outside the process is touched.
//!
//! An input is the environment (`KEY=VALUE` lines), a NUL, the
//! configuration on stdin, a NUL, and what a delegated IPAM plugin prints.
//! What the plugin prints must be what the CNI spec allows: a JSON error
//! object on failure, a JSON result from ADD, nothing from DEL and CHECK.

use api::{
    AttachKind, Attachment, ClientError, ErrorCode, IpPool, MacAddr, PortInfo, PortKind, Reply,
    Request,
};
use cni_shim::delegate::PluginRun;
use cni_shim::env::Command;
use cni_shim::netns::{LinkState, Wiring};
use cni_shim::Platform;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

const MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];

/// A switch that attaches whatever it is asked to, and a netns that holds
/// whatever was wired into it.
struct Fake<'a> {
    plugin_out: &'a [u8],
    attachments: BTreeMap<(String, String), Attachment>,
    links: BTreeMap<(PathBuf, String), LinkState>,
}

impl Platform for Fake<'_> {
    fn call(&mut self, _socket: &str, req: &Request) -> Result<Reply, ClientError> {
        match req {
            Request::Status {} => Ok(Reply::Done),
            Request::PodAttach { attach } => {
                let key = (attach.container_id.clone(), attach.ifname.clone());
                if let Some(a) = self.attachments.get(&key) {
                    return Ok(Reply::Attachment(a.clone()));
                }
                let port = format!("pod-{}", self.attachments.len());
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
                    ips: attach
                        .ips
                        .clone()
                        .unwrap_or_else(|| vec![Ipv4Addr::new(10, 65, 0, 2)]),
                    ipam: attach.ips.is_none(),
                    gateway: api::GATEWAY_IP,
                    mtu: 1450,
                    netns: None,
                };
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
                self.attachments
                    .remove(&(container_id.clone(), ifname.clone()));
                Ok(Reply::Done)
            }
            Request::PodGc { .. } => Ok(Reply::Released(Vec::new())),
            Request::PortList {} => Ok(Reply::Ports(vec![PortInfo {
                name: "pod-0".into(),
                kind: PortKind::Tap,
                path: None,
                iface: None,
                pci: None,
                port_id: 0,
                lcore: 1,
                link_up: true,
                mac: MacAddr(MAC),
            }])),
            Request::PoolList {} => Ok(Reply::Pools(vec![IpPool::new("blue", "10.65.0.0/16")])),
            Request::PodList {} => Ok(Reply::Attachments(
                self.attachments.values().cloned().collect(),
            )),
            _ => Err(ClientError::Refused {
                code: ErrorCode::Invalid,
                message: "not for a CNI plugin".into(),
            }),
        }
    }
    fn check_netns(&mut self, _path: &Path) -> Result<(), String> {
        Ok(())
    }
    fn wire(&mut self, w: &Wiring) -> Result<(), String> {
        self.links.insert(
            (w.netns.clone(), w.ifname.clone()),
            LinkState {
                index: 2,
                mac: Some(w.mac),
                mtu: Some(1450),
                up: true,
                ipv4: Vec::new(),
                default_via: Some(api::GATEWAY_IP),
                link_routes: vec![api::GATEWAY_IP],
            },
        );
        Ok(())
    }
    fn inspect(&mut self, netns: &Path, ifname: &str) -> Result<Option<LinkState>, String> {
        Ok(self
            .links
            .get(&(netns.to_path_buf(), ifname.to_owned()))
            .cloned())
    }
    fn remove_link(
        &mut self,
        netns: &Path,
        ifname: &str,
        _mac: Option<[u8; 6]>,
    ) -> Result<bool, String> {
        Ok(self
            .links
            .remove(&(netns.to_path_buf(), ifname.to_owned()))
            .is_some())
    }
    fn find_plugin(&mut self, name: &str, _path: &[PathBuf]) -> cni_shim::error::Result<PathBuf> {
        Ok(PathBuf::from("/opt/cni/bin").join(name))
    }
    fn run_plugin(
        &mut self,
        _plugin: &Path,
        _command: Command,
        _stdin: &[u8],
    ) -> std::io::Result<PluginRun> {
        Ok(PluginRun {
            success: true,
            stdout: self.plugin_out.to_vec(),
            stderr: Vec::new(),
        })
    }
    fn file_exists(&mut self, _path: &Path) -> bool {
        false
    }
    fn is_socket(&mut self, _path: &Path) -> bool {
        false
    }
}

pub fn run(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    let env_text = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let stdin = parts.next().unwrap_or_default();
    let plugin_out = parts.next().unwrap_or_default();
    let env: BTreeMap<&str, &str> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
    let command = env.get("CNI_COMMAND").copied();
    let mut fake = Fake {
        plugin_out,
        attachments: BTreeMap::new(),
        links: BTreeMap::new(),
    };
    let get = |k: &str| env.get(k).map(|v| (*v).to_owned());
    // twice: the second ADD finds the first one's attachment, the second
    // DEL finds nothing, as when a runtime retries
    for _ in 0..2 {
        let out = cni_shim::run(get, stdin, &mut fake);
        match (out.exit_code, command) {
            (0, Some("ADD" | "VERSION")) => {
                let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
                    panic!("{command:?} printed no JSON ({e}): {}", out.stdout)
                });
                assert!(v.is_object(), "{command:?} printed {v}");
            }
            (0, _) => assert!(out.stdout.is_empty(), "{command:?} printed {}", out.stdout),
            (1, _) => {
                let v: serde_json::Value = serde_json::from_str(&out.stdout)
                    .unwrap_or_else(|e| panic!("an error that is no JSON ({e}): {}", out.stdout));
                assert!(
                    v.get("code").is_some_and(|c| c.is_u64()) && v.get("msg").is_some(),
                    "an error object without code or msg: {v}"
                );
            }
            (code, _) => panic!("exit code {code}"),
        }
    }
}

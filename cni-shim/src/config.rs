//! The network configuration on stdin.
//!
//! Standard keys: `cniVersion`, `name`, `type`, `ipam`, `prevResult`,
//! `runtimeConfig`, `args`, `cni.dev/valid-attachments` (GC). Ours:
//!
//! - `socket`: vswitchd's control socket (default [`api::DEFAULT_SOCKET`]);
//! - `pools`: names of the IP pools that may serve this network (default: any);
//! - `vhostSocketDir`: where vhost-user pods get their socket: the directory
//!   `<vhostSocketDir>/<containerID>` (default `/var/run/vswitch/pods/<containerID>`);
//! - `vhostMode`: `server` (default: the switch listens on the socket) or
//!   `client` (the pod's app listens, virtio-user `server=1`, and the switch
//!   connects and reconnects, so the pod outlives restarts of vswitchd).
//!
//! A pod asks for a vhost-user interface with `{"args": {"vswitch":
//! {"interface": "vhost"}}}` or the same under `runtimeConfig`, or
//! `VSWITCH_INTERFACE=vhost` in `CNI_ARGS`; `vswitch.socketDir` there names
//! the socket directory exactly, and `vswitch.vhostMode` overrides the
//! network's `vhostMode` for the pod.
//!
//! Keys we do not know are left alone: runtimes and meta-plugins add their own.

use crate::env::InterfaceKind;
use crate::error::{fail, CniError, Result, DECODE_FAILURE, INVALID_CONFIG, UNSUPPORTED_FIELD};
use crate::version::{Version, LATEST};
use api::VhostMode;
use serde_json::{Map, Value};

/// The parent of per-pod vhost-user socket directories unless configured.
pub const DEFAULT_VHOST_SOCKET_DIR: &str = "/var/run/vswitch/pods";

/// A parsed network configuration, with the bytes it came from (delegated
/// plugins get exactly those).
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub raw: Vec<u8>,
    pub version: Version,
    pub name: String,
    pub plugin_type: String,
    /// The delegated IPAM plugin's `type`, when the config names one.
    pub ipam_type: Option<String>,
    pub prev_result: Option<Map<String, Value>>,
    pub socket: String,
    pub pools: Vec<String>,
    pub vhost_socket_dir: String,
    /// What `runtimeConfig`/`args` ask for (`vswitch.interface`).
    pub interface: Option<InterfaceKind>,
    /// An exact vhost socket directory from `runtimeConfig`/`args` (`vswitch.socketDir`).
    pub socket_dir: Option<String>,
    /// Which end listens on a vhost pod's socket: `runtimeConfig`, else
    /// `args` (`vswitch.vhostMode`), else the network's `vhostMode`, else
    /// the switch ([`VhostMode::Server`]).
    pub vhost_mode: VhostMode,
    /// GC: the attachments the runtime still knows.
    pub valid_attachments: Option<Vec<(String, String)>>,
    /// Static addresses asked for in `args.cni.ips` or `runtimeConfig.ips`.
    pub requested_ips: bool,
}

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    fail(INVALID_CONFIG, msg)
}

/// The `cniVersion` of a config if it can be read at all: errors are then
/// reported in the version the runtime asked for.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_owned)
}

/// The version to write errors in: the config's if we speak it, else the latest.
pub fn error_version(stdin: &[u8]) -> &'static str {
    peek_version(stdin)
        .and_then(|v| Version::parse(&v).ok())
        .map(Version::as_str)
        .unwrap_or(LATEST)
}

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn string_at<'a>(obj: &'a Map<String, Value>, key: &str, what: &str) -> Result<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => invalid(format!("{what}: expected a string, got {}", kind_of(other))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn absolute(s: &str, what: &str) -> Result<String> {
    if !s.starts_with('/') || s.contains('\0') {
        return invalid(format!("{what} \"{s}\": must be an absolute path"));
    }
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.to_owned())
}

fn vhost_mode(s: &str, what: &str) -> Result<VhostMode> {
    s.parse().or_else(|_| {
        invalid(format!(
            "{what} \"{}\": expected \"server\" or \"client\"",
            s.escape_default()
        ))
    })
}

/// What the `vswitch` section of `args` or `runtimeConfig` asks for.
#[derive(Default)]
struct Section {
    interface: Option<InterfaceKind>,
    socket_dir: Option<String>,
    vhost_mode: Option<VhostMode>,
}

/// The `vswitch` section of `args` or `runtimeConfig`: interface kind,
/// socket dir and vhost mode.
fn vswitch_section(top: &Map<String, Value>, section: &str) -> Result<Section> {
    let Some(sec) = top.get(section) else {
        return Ok(Section::default());
    };
    let Value::Object(sec) = sec else {
        if sec.is_null() {
            return Ok(Section::default());
        }
        return invalid(format!(
            "{section}: expected an object, got {}",
            kind_of(sec)
        ));
    };
    let Some(vs) = sec.get("vswitch") else {
        return Ok(Section::default());
    };
    let Value::Object(vs) = vs else {
        return invalid(format!(
            "{section}.vswitch: expected an object, got {}",
            kind_of(vs)
        ));
    };
    for k in vs.keys() {
        if !["interface", "socketDir", "vhostMode"].contains(&k.as_str()) {
            return fail(
                UNSUPPORTED_FIELD,
                format!(
                    "{section}.vswitch.{k}: unsupported field (known: interface, socketDir, \
                     vhostMode)"
                ),
            );
        }
    }
    let kind = string_at(vs, "interface", &format!("{section}.vswitch.interface"))?
        .map(|s| InterfaceKind::parse(s, &format!("{section}.vswitch.interface")))
        .transpose()
        .map_err(|m| CniError::new(INVALID_CONFIG, m))?;
    let dir = string_at(vs, "socketDir", &format!("{section}.vswitch.socketDir"))?
        .map(|s| absolute(s, &format!("{section}.vswitch.socketDir")))
        .transpose()?;
    let what = format!("{section}.vswitch.vhostMode");
    let mode = string_at(vs, "vhostMode", &what)?
        .map(|s| vhost_mode(s, &what))
        .transpose()?;
    Ok(Section {
        interface: kind,
        socket_dir: dir,
        vhost_mode: mode,
    })
}

impl NetConf {
    /// Parses and checks a network configuration.
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        if stdin.iter().all(u8::is_ascii_whitespace) {
            return fail(
                DECODE_FAILURE,
                "no network configuration on stdin: the runtime must pass the network config JSON",
            );
        }
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                DECODE_FAILURE,
                format!("the network configuration on stdin is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(top) = v else {
            return fail(
                DECODE_FAILURE,
                format!(
                    "the network configuration must be a JSON object, got {}",
                    kind_of(&v)
                ),
            );
        };
        let Some(ver) = string_at(&top, "cniVersion", "cniVersion")? else {
            return invalid("the network configuration has no cniVersion");
        };
        let version = Version::parse(ver)?;
        let name = match string_at(&top, "name", "name")? {
            Some(n) if name_ok(n) => n.to_owned(),
            Some(n) => {
                return invalid(format!(
                    "network name \"{}\" is not valid: use letters, digits, '_', '.' and '-'",
                    n.escape_default()
                ))
            }
            None => return invalid("the network configuration has no name"),
        };
        let plugin_type = match string_at(&top, "type", "type")? {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ => return invalid("the network configuration has no type"),
        };
        let ipam_type = match top.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ipam)) => match string_at(ipam, "type", "ipam.type")? {
                Some(t) if t.is_empty() || t.contains('/') || t == "." || t == ".." => {
                    return invalid(format!(
                        "ipam.type \"{t}\" is not a plugin name (a file name in CNI_PATH)"
                    ))
                }
                Some(t) => Some(t.to_owned()),
                None if ipam.is_empty() => None,
                None => return invalid(
                    "the ipam section has no type: name the IPAM plugin (e.g. \"host-local\"), \
                         or leave ipam out to have vswitchd assign addresses",
                ),
            },
            Some(other) => {
                return invalid(format!("ipam: expected an object, got {}", kind_of(other)))
            }
        };
        let prev_result = match top.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(Value::Object(p)) => Some(p.clone()),
            Some(other) => {
                return fail(
                    DECODE_FAILURE,
                    format!(
                        "prevResult: expected a result object, got {}",
                        kind_of(other)
                    ),
                )
            }
        };
        let socket = match string_at(&top, "socket", "socket")? {
            Some(s) => absolute(s, "socket")?,
            None => api::DEFAULT_SOCKET.to_owned(),
        };
        if socket.len() > api::MAX_SOCKET_PATH {
            return invalid(format!(
                "socket \"{socket}\": longer than {} bytes",
                api::MAX_SOCKET_PATH
            ));
        }
        let pools = match top.get("pools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|p| match p {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    other => invalid(format!(
                        "pools: expected a list of pool names, found {}",
                        if other.is_string() {
                            "an empty name"
                        } else {
                            kind_of(other)
                        }
                    )),
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return invalid(format!(
                    "pools: expected a list of pool names, got {}",
                    kind_of(other)
                ))
            }
        };
        let vhost_socket_dir = match string_at(&top, "vhostSocketDir", "vhostSocketDir")? {
            Some(d) => absolute(d, "vhostSocketDir")?,
            None => DEFAULT_VHOST_SOCKET_DIR.to_owned(),
        };
        let net_mode = string_at(&top, "vhostMode", "vhostMode")?
            .map(|s| vhost_mode(s, "vhostMode"))
            .transpose()?;
        // runtimeConfig wins over args, and both over the network's keys
        let args = vswitch_section(&top, "args")?;
        let rt = vswitch_section(&top, "runtimeConfig")?;
        let valid_attachments = match top.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|e| {
                        let id = e.get("containerID").and_then(Value::as_str);
                        let ifname = e.get("ifname").and_then(Value::as_str);
                        match (id, ifname) {
                            (Some(id), Some(ifname)) => Ok((id.to_owned(), ifname.to_owned())),
                            _ => invalid(format!(
                                "cni.dev/valid-attachments: entry {e} lacks containerID or ifname"
                            )),
                        }
                    })
                    .collect::<Result<_>>()?,
            ),
            Some(other) => {
                return invalid(format!(
                    "cni.dev/valid-attachments: expected a list, got {}",
                    kind_of(other)
                ))
            }
        };
        let requested_ips = top
            .get("args")
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips"))
            .is_some_and(|v| !v.is_null())
            || top
                .get("runtimeConfig")
                .and_then(|r| r.get("ips"))
                .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()));
        Ok(NetConf {
            raw: stdin.to_vec(),
            version,
            name,
            plugin_type,
            ipam_type,
            prev_result,
            socket,
            pools,
            vhost_socket_dir,
            interface: rt.interface.or(args.interface),
            socket_dir: rt.socket_dir.or(args.socket_dir),
            vhost_mode: rt
                .vhost_mode
                .or(args.vhost_mode)
                .or(net_mode)
                .unwrap_or_default(),
            valid_attachments,
            requested_ips,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::INCOMPATIBLE_VERSION;

    fn parse(s: &str) -> Result<NetConf> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn the_smallest_config_gets_defaults() {
        let c =
            parse(r#"{"cniVersion": "1.0.0", "name": "podnet", "type": "vswitch-cni"}"#).unwrap();
        assert_eq!(c.version, Version::V1_0_0);
        assert_eq!(c.name, "podnet");
        assert_eq!(c.plugin_type, "vswitch-cni");
        assert_eq!(c.ipam_type, None);
        assert_eq!(c.socket, api::DEFAULT_SOCKET);
        assert!(c.pools.is_empty());
        assert_eq!(c.vhost_socket_dir, DEFAULT_VHOST_SOCKET_DIR);
        assert_eq!(c.interface, None);
        assert_eq!(c.vhost_mode, VhostMode::Server);
        assert_eq!(c.prev_result, None);
        assert!(!c.requested_ips);
    }

    #[test]
    fn vhost_mode_from_the_network_then_args_then_runtime_config() {
        let base = r#""cniVersion": "1.0.0", "name": "n", "type": "vswitch-cni""#;
        let mode = |extra: &str| parse(&format!("{{{base}{extra}}}")).map(|c| c.vhost_mode);
        assert_eq!(mode("").unwrap(), VhostMode::Server);
        assert_eq!(
            mode(r#","vhostMode": "client""#).unwrap(),
            VhostMode::Client
        );
        assert_eq!(
            mode(r#","vhostMode": "server""#).unwrap(),
            VhostMode::Server
        );
        assert_eq!(mode(r#","vhostMode": null"#).unwrap(), VhostMode::Server);
        // a pod's own ask wins over the network's
        assert_eq!(
            mode(r#","vhostMode": "client", "args": {"vswitch": {"vhostMode": "server"}}"#)
                .unwrap(),
            VhostMode::Server
        );
        assert_eq!(
            mode(r#","args": {"vswitch": {"interface": "vhost", "vhostMode": "client"}}"#).unwrap(),
            VhostMode::Client
        );
        assert_eq!(
            mode(
                r#","vhostMode": "server",
                   "args": {"vswitch": {"vhostMode": "server"}},
                   "runtimeConfig": {"vswitch": {"vhostMode": "client"}}"#
            )
            .unwrap(),
            VhostMode::Client
        );
        assert_eq!(
            mode(
                r#","args": {"vswitch": {"vhostMode": "client"}},
                   "runtimeConfig": {"vswitch": {"socketDir": "/run/p"}}"#
            )
            .unwrap(),
            VhostMode::Client,
            "a runtimeConfig without vhostMode leaves args' in force"
        );
        for (bad, code, want) in [
            (
                r#","vhostMode": "Client""#,
                INVALID_CONFIG,
                "vhostMode \"Client\"",
            ),
            (
                r#","vhostMode": "vhost-client""#,
                INVALID_CONFIG,
                "\"server\" or \"client\"",
            ),
            (r#","vhostMode": """#, INVALID_CONFIG, "vhostMode \"\""),
            (
                r#","vhostMode": true"#,
                INVALID_CONFIG,
                "vhostMode: expected a string",
            ),
            (
                r#","args": {"vswitch": {"vhostMode": "listen"}}"#,
                INVALID_CONFIG,
                "args.vswitch.vhostMode \"listen\"",
            ),
            (
                r#","runtimeConfig": {"vswitch": {"vhostMode": 1}}"#,
                INVALID_CONFIG,
                "runtimeConfig.vswitch.vhostMode: expected a string",
            ),
        ] {
            let e = mode(bad).unwrap_err();
            assert_eq!(e.code, code, "{bad}: {e}");
            assert!(e.msg.contains(want), "{bad}: {}", e.msg);
        }
    }

    #[test]
    fn our_keys() {
        let c = parse(
            r#"{"cniVersion": "0.4.0", "name": "n", "type": "vswitch-cni",
                "socket": "/tmp/x/ctl.sock", "pools": ["a", "b"], "vhostSocketDir": "/run/pods/",
                "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"},
                "args": {"vswitch": {"interface": "vhost", "socketDir": "/p/x"}},
                "somethingElse": {"from": "a runtime"}}"#,
        )
        .unwrap();
        assert_eq!(c.socket, "/tmp/x/ctl.sock");
        assert_eq!(c.pools, vec!["a", "b"]);
        assert_eq!(c.vhost_socket_dir, "/run/pods");
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        assert_eq!(c.interface, Some(InterfaceKind::Vhost));
        assert_eq!(c.socket_dir.as_deref(), Some("/p/x"));
    }

    #[test]
    fn runtime_config_wins_over_args() {
        let c = parse(
            r#"{"cniVersion": "1.1.0", "name": "n", "type": "t",
                "args": {"vswitch": {"interface": "vhost"}},
                "runtimeConfig": {"vswitch": {"interface": "tap"}}}"#,
        )
        .unwrap();
        assert_eq!(c.interface, Some(InterfaceKind::Tap));
    }

    #[test]
    fn bad_configs() {
        let cases: &[(&str, u32, &str)] = &[
            ("", DECODE_FAILURE, "no network configuration"),
            ("{", DECODE_FAILURE, "not valid JSON"),
            ("[]", DECODE_FAILURE, "must be a JSON object"),
            (
                r#"{"name":"n","type":"t"}"#,
                INVALID_CONFIG,
                "no cniVersion",
            ),
            (
                r#"{"cniVersion":1,"name":"n","type":"t"}"#,
                INVALID_CONFIG,
                "cniVersion: expected a string",
            ),
            (
                r#"{"cniVersion":"2.0.0","name":"n","type":"t"}"#,
                INCOMPATIBLE_VERSION,
                "\"2.0.0\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","type":"t"}"#,
                INVALID_CONFIG,
                "no name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"a b","type":"t"}"#,
                INVALID_CONFIG,
                "network name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                INVALID_CONFIG,
                "no type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":7}"#,
                INVALID_CONFIG,
                "socket: expected a string, got a number",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":"rel.sock"}"#,
                INVALID_CONFIG,
                "absolute",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","pools":"a"}"#,
                INVALID_CONFIG,
                "pools: expected a list",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","pools":[1]}"#,
                INVALID_CONFIG,
                "pools: expected a list",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":"host-local"}"#,
                INVALID_CONFIG,
                "ipam: expected an object",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"subnet":"x"}}"#,
                INVALID_CONFIG,
                "has no type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"../x"}}"#,
                INVALID_CONFIG,
                "not a plugin name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":[]}"#,
                DECODE_FAILURE,
                "prevResult",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","args":{"vswitch":{"interface":"sriov"}}}"#,
                INVALID_CONFIG,
                "sriov",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","args":{"vswitch":{"queues":4}}}"#,
                UNSUPPORTED_FIELD,
                "queues",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"t","vhostSocketDir":"x"}"#,
                INVALID_CONFIG,
                "vhostSocketDir",
            ),
            (
                r#"{"cniVersion":"1.1.0","name":"n","type":"t","cni.dev/valid-attachments":[{"ifname":"eth0"}]}"#,
                INVALID_CONFIG,
                "containerID",
            ),
        ];
        for (input, code, want) in cases {
            let e = parse(input).unwrap_err();
            assert_eq!(e.code, *code, "{input}: {e}");
            assert!(e.msg.contains(want), "{input}: {}", e.msg);
        }
    }

    #[test]
    fn empty_ipam_means_ours() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{}}"#).unwrap();
        assert_eq!(c.ipam_type, None);
    }

    #[test]
    fn gc_attachments_and_requested_ips() {
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"t",
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}],
                "runtimeConfig": {"ips": ["10.0.0.5/24"]}}"#,
        )
        .unwrap();
        assert_eq!(
            c.valid_attachments,
            Some(vec![
                ("c1".to_owned(), "eth0".to_owned()),
                ("c2".to_owned(), "net1".to_owned())
            ])
        );
        assert!(c.requested_ips);
    }

    #[test]
    fn error_version_follows_the_config() {
        assert_eq!(error_version(br#"{"cniVersion":"0.3.1"}"#), "0.3.1");
        assert_eq!(error_version(br#"{"cniVersion":"7"}"#), LATEST);
        assert_eq!(error_version(b"garbage"), LATEST);
    }
}

//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`. Parsed from a lookup function so that
//! tests need not touch the process environment.

use crate::error::{fail, CniError, Result, INVALID_ENV};
use std::path::PathBuf;

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => {
                return fail(
                    INVALID_ENV,
                    format!(
                    "unknown CNI_COMMAND \"{s}\": expected ADD, DEL, CHECK, VERSION, GC or STATUS"
                ),
                )
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }
}

/// The environment of one invocation, checked for what its command needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// ADD, DEL, CHECK.
    pub container_id: String,
    /// ADD and CHECK; DEL may have none (the sandbox may be gone already).
    pub netns: Option<PathBuf>,
    /// ADD, DEL, CHECK.
    pub ifname: String,
    pub args: CniArgs,
    /// Where to look for delegated plugins.
    pub path: Vec<PathBuf>,
}

/// Longest Linux interface name.
pub const MAX_IFNAME: usize = 15;

impl Env {
    /// Reads the environment through `get` (e.g. `|k| std::env::var(k).ok()`).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Env> {
        let command = match get("CNI_COMMAND") {
            Some(c) if !c.is_empty() => Command::parse(&c)?,
            _ => {
                return fail(
                    INVALID_ENV,
                    "CNI_COMMAND is not set: this is a CNI plugin, run by a container runtime \
                     with CNI_COMMAND=ADD|DEL|CHECK|VERSION|GC|STATUS and the network config on stdin",
                )
            }
        };
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let per_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let (container_id, ifname) = if per_attachment {
            let Some(id) = nonempty("CNI_CONTAINERID") else {
                return fail(
                    INVALID_ENV,
                    format!("CNI_CONTAINERID is not set; {} needs it", command.as_str()),
                );
            };
            validate_container_id(&id)?;
            let Some(ifname) = nonempty("CNI_IFNAME") else {
                return fail(
                    INVALID_ENV,
                    format!("CNI_IFNAME is not set; {} needs it", command.as_str()),
                );
            };
            validate_ifname(&ifname)?;
            (id, ifname)
        } else {
            (String::new(), String::new())
        };
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        if matches!(command, Command::Add | Command::Check) && netns.is_none() {
            return fail(
                INVALID_ENV,
                format!(
                    "CNI_NETNS is not set; {} needs the path of the pod's network namespace",
                    command.as_str()
                ),
            );
        }
        if let Some(ns) = &netns {
            if per_attachment && !ns.is_absolute() {
                return fail(
                    INVALID_ENV,
                    format!("CNI_NETNS={}: not an absolute path", ns.display()),
                );
            }
        }
        let args = if per_attachment {
            CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?
        } else {
            CniArgs::default()
        };
        let path = get("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

/// The spec's rule: alphanumerics, then alphanumerics, `_`, `.`, `-`.
pub fn validate_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        || id.len() > 1024
    {
        return fail(
            INVALID_ENV,
            format!(
                "CNI_CONTAINERID \"{}\" is not valid: it must start with a letter or digit \
                 and hold only letters, digits, '_', '.' and '-'",
                id.escape_default()
            ),
        );
    }
    Ok(())
}

/// A Linux interface name: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or
/// white space.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > MAX_IFNAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control() || !c.is_ascii());
    if bad {
        return fail(
            INVALID_ENV,
            format!(
                "CNI_IFNAME \"{}\" is not a valid interface name: 1 to {MAX_IFNAME} ASCII \
                 characters, no '/', ':' or white space, not '.' or '..'",
                name.escape_default()
            ),
        );
    }
    Ok(())
}

/// What kind of pod interface is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceKind {
    Tap,
    Vhost,
}

impl InterfaceKind {
    pub fn parse(s: &str, source: &str) -> Result<InterfaceKind, String> {
        match s {
            "tap" | "kernel" => Ok(InterfaceKind::Tap),
            "vhost" | "vhost-user" => Ok(InterfaceKind::Vhost),
            _ => Err(format!(
                "{source}: unknown interface kind \"{s}\" (expected \"tap\" or \"vhost\")"
            )),
        }
    }
}

/// `CNI_ARGS`: `K=V` pairs separated by `;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub ignore_unknown: bool,
    pub k8s_pod_namespace: Option<String>,
    pub k8s_pod_name: Option<String>,
    pub k8s_pod_infra_container_id: Option<String>,
    pub k8s_pod_uid: Option<String>,
    /// `VSWITCH_INTERFACE=tap|vhost`.
    pub interface: Option<InterfaceKind>,
    /// Keys we do not know, kept when `IgnoreUnknown` allows them.
    pub unknown: Vec<(String, String)>,
}

impl CniArgs {
    /// Keys this plugin knows.
    pub const KNOWN: [&'static str; 6] = [
        "IgnoreUnknown",
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
        "VSWITCH_INTERFACE",
    ];

    /// Parses `CNI_ARGS`. A key we do not know is error 4 unless
    /// `IgnoreUnknown` is true (`1`, `true`, `True`), as the conventions say.
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut a = CniArgs::default();
        let mut unknown = Vec::new();
        let bad = |msg: String| -> CniError { CniError::new(INVALID_ENV, msg) };
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(bad(format!(
                    "CNI_ARGS: \"{pair}\" is not a KEY=VALUE pair (pairs are separated by ';')"
                )));
            };
            if k.is_empty() {
                return Err(bad(format!("CNI_ARGS: \"{pair}\" has an empty key")));
            }
            let val = || Some(v.to_owned());
            match k {
                "IgnoreUnknown" => {
                    a.ignore_unknown = match v.to_ascii_lowercase().as_str() {
                        "1" | "true" => true,
                        "0" | "false" | "" => false,
                        _ => {
                            return Err(bad(format!(
                                "CNI_ARGS: IgnoreUnknown={v}: expected true or false"
                            )))
                        }
                    }
                }
                "K8S_POD_NAMESPACE" => a.k8s_pod_namespace = val(),
                "K8S_POD_NAME" => a.k8s_pod_name = val(),
                "K8S_POD_INFRA_CONTAINER_ID" => a.k8s_pod_infra_container_id = val(),
                "K8S_POD_UID" => a.k8s_pod_uid = val(),
                "VSWITCH_INTERFACE" => {
                    a.interface =
                        Some(InterfaceKind::parse(v, "CNI_ARGS VSWITCH_INTERFACE").map_err(bad)?)
                }
                _ => unknown.push((k.to_owned(), v.to_owned())),
            }
        }
        if !unknown.is_empty() && !a.ignore_unknown {
            let keys: Vec<&str> = unknown.iter().map(|(k, _)| k.as_str()).collect();
            return Err(bad(format!(
                "CNI_ARGS: unknown key{} {} (known: {}); add IgnoreUnknown=true to pass keys \
                 meant for other plugins",
                if keys.len() > 1 { "s" } else { "" },
                keys.join(", "),
                CniArgs::KNOWN.join(", ")
            )));
        }
        a.unknown = unknown;
        Ok(a)
    }

    /// `NAMESPACE/NAME` when the runtime told us both.
    pub fn pod(&self) -> Option<String> {
        match (&self.k8s_pod_namespace, &self.k8s_pod_name) {
            (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => {
                Some(format!("{ns}/{name}"))
            }
            (None, Some(name)) if !name.is_empty() => Some(name.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::INVALID_ENV;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::parse(|k| m.get(k).cloned())
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
    ];

    #[test]
    fn a_full_add_environment() {
        let e = env(&ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id, "abc123");
        assert_eq!(e.netns, Some(PathBuf::from("/var/run/netns/x")));
        assert_eq!(e.ifname, "eth0");
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(e.args, CniArgs::default());
    }

    fn without(key: &str) -> Vec<(&'static str, &'static str)> {
        ADD.iter().copied().filter(|(k, _)| *k != key).collect()
    }

    fn with(key: &'static str, v: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut e = without(key);
        e.push((key, v));
        e
    }

    #[test]
    fn missing_variables_are_error_4_naming_them() {
        for key in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let e = env(&without(key)).unwrap_err();
            assert_eq!(e.code, INVALID_ENV, "{key}");
            assert!(e.msg.contains(key), "{key}: {}", e.msg);
        }
        // empty counts as missing
        let e = env(&with("CNI_CONTAINERID", "")).unwrap_err();
        assert!(e.msg.contains("CNI_CONTAINERID is not set"), "{}", e.msg);
    }

    #[test]
    fn del_needs_no_netns_and_version_needs_nothing() {
        let mut e = without("CNI_NETNS");
        e.retain(|(k, _)| *k != "CNI_COMMAND");
        e.push(("CNI_COMMAND", "DEL"));
        let got = env(&e).unwrap();
        assert_eq!(got.command, Command::Del);
        assert_eq!(got.netns, None);
        for c in ["VERSION", "GC", "STATUS"] {
            let got = env(&[("CNI_COMMAND", c)]).unwrap();
            assert_eq!(got.command.as_str(), c);
        }
        // CHECK needs the netns like ADD
        let mut e = without("CNI_NETNS");
        e.retain(|(k, _)| *k != "CNI_COMMAND");
        e.push(("CNI_COMMAND", "CHECK"));
        assert_eq!(env(&e).unwrap_err().code, INVALID_ENV);
    }

    #[test]
    fn unknown_command() {
        let e = env(&with("CNI_COMMAND", "add")).unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        assert!(e.msg.contains("\"add\""), "{}", e.msg);
    }

    #[test]
    fn container_ids() {
        for ok in ["a", "0", "abc-DEF_1.2", &"f".repeat(64)] {
            assert!(validate_container_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "-a",
            ".a",
            "_a",
            "a b",
            "a/b",
            "a;b",
            "ä",
            &"f".repeat(2000),
        ] {
            assert_eq!(
                validate_container_id(bad).unwrap_err().code,
                INVALID_ENV,
                "{bad}"
            );
        }
    }

    #[test]
    fn interface_names() {
        for ok in ["eth0", "net1", "a", "x-y_z.1", "fifteen-chars-1"] {
            assert!(validate_ifname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "sixteen-chars-12",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "é",
        ] {
            assert_eq!(validate_ifname(bad).unwrap_err().code, INVALID_ENV, "{bad}");
        }
        let e = env(&with("CNI_IFNAME", "eth0:1")).unwrap_err();
        assert!(e.msg.contains("eth0:1"), "{}", e.msg);
    }

    #[test]
    fn relative_netns_is_refused() {
        let e = env(&with("CNI_NETNS", "netns/x")).unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
    }

    #[test]
    fn cni_args_known_keys() {
        let a = CniArgs::parse(
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;\
             K8S_POD_UID=u-1;VSWITCH_INTERFACE=vhost",
        )
        .unwrap();
        assert_eq!(a.pod().as_deref(), Some("default/web-0"));
        assert_eq!(a.k8s_pod_infra_container_id.as_deref(), Some("abc"));
        assert_eq!(a.k8s_pod_uid.as_deref(), Some("u-1"));
        assert_eq!(a.interface, Some(InterfaceKind::Vhost));
        assert!(!a.ignore_unknown);
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        // a trailing separator is tolerated
        assert_eq!(
            CniArgs::parse("K8S_POD_NAME=x;").unwrap().pod().as_deref(),
            Some("x")
        );
    }

    #[test]
    fn cni_args_unknown_keys_need_ignore_unknown() {
        let e = CniArgs::parse("FOO=1;K8S_POD_NAME=x;BAR=2").unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        assert!(e.msg.contains("FOO, BAR"), "{}", e.msg);
        assert!(e.msg.contains("IgnoreUnknown"), "{}", e.msg);
        for ignore in [
            "IgnoreUnknown=true",
            "IgnoreUnknown=1",
            "IgnoreUnknown=True",
        ] {
            let a = CniArgs::parse(&format!("FOO=1;{ignore};K8S_POD_NAME=x")).unwrap();
            assert!(a.ignore_unknown);
            assert_eq!(a.unknown, vec![("FOO".to_owned(), "1".to_owned())]);
        }
        let e = CniArgs::parse("IgnoreUnknown=false;FOO=1").unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
    }

    #[test]
    fn cni_args_malformed() {
        for bad in [
            "FOO",
            "=x",
            "IgnoreUnknown=maybe",
            "VSWITCH_INTERFACE=sriov",
        ] {
            let e = CniArgs::parse(bad).unwrap_err();
            assert_eq!(e.code, INVALID_ENV, "{bad}");
        }
        // the runtime's own env parse reports it too
        let e = env(&with("CNI_ARGS", "NOPE")).unwrap_err();
        assert!(e.msg.contains("CNI_ARGS"), "{}", e.msg);
    }

    #[test]
    fn pod_name_needs_a_name() {
        let a = CniArgs::parse("K8S_POD_NAMESPACE=ns").unwrap();
        assert_eq!(a.pod(), None);
    }
}

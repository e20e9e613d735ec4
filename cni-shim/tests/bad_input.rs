//! Bad input, table-driven, against the real `vswitch-cni` binary run as a
//! runtime runs it. None of these cases needs vswitchd or root: the control
//! socket points nowhere, and the netns that passes the checks is the test's
//! own (`/proc/self/ns/net`, which the plugin never touches because it fails
//! before). The cases that need a running switch (unknown pool, exhausted
//! pool, wiring failures) are in `e2e.rs`.
//!
//! Each case asserts the exit status, the CNI error object (shape, code,
//! message) and that nothing leaked: no new interface on the host and no call
//! reached the delegated IPAM plugin when it should not have.

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

const NOWHERE: &str = "/tmp/vswitch-cni-test-no-such-dir/ctl.sock";

struct Case {
    name: &'static str,
    /// Environment changes: a value of "" removes the variable.
    env: Vec<(&'static str, String)>,
    stdin: String,
    code: u64,
    msg: &'static str,
}

fn conf() -> Value {
    json!({"cniVersion": "1.0.0", "name": "podnet", "type": "vswitch-cni", "socket": NOWHERE})
}

fn conf_with(key: &str, v: Value) -> String {
    let mut c = conf();
    c[key] = v;
    c.to_string()
}

fn case(name: &'static str, stdin: String, code: u64, msg: &'static str) -> Case {
    Case {
        name,
        env: Vec::new(),
        stdin,
        code,
        msg,
    }
}

fn env_case(
    name: &'static str,
    env: &[(&'static str, &str)],
    code: u64,
    msg: &'static str,
) -> Case {
    Case {
        name,
        env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        stdin: conf().to_string(),
        code,
        msg,
    }
}

/// A fake IPAM plugin that logs each command it gets to `log` and hands out
/// 10.99.0.5/24.
fn fake_ipam(dir: &std::path::Path, log: &std::path::Path) {
    let script = format!(
        "#!/bin/sh\necho \"$CNI_COMMAND\" >> {}\ncat > /dev/null\n\
         echo '{{\"cniVersion\":\"1.0.0\",\"ips\":[{{\"address\":\"10.99.0.5/24\"}}],\"dns\":{{}}}}'\n",
        log.display()
    );
    let p = dir.join("fake-ipam");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn bad_input_table() {
    let tmp = tempfile::tempdir().unwrap();
    let plain_file = tmp.path().join("not-a-netns");
    std::fs::write(&plain_file, "").unwrap();
    let plain_file = plain_file.to_string_lossy().into_owned();
    let ipam_dir = tmp.path().join("bin");
    std::fs::create_dir(&ipam_dir).unwrap();
    let ipam_log = tmp.path().join("ipam.log");
    fake_ipam(&ipam_dir, &ipam_log);
    let ipam_path = ipam_dir.to_string_lossy().into_owned();

    let mut delegated = conf();
    delegated["ipam"] = json!({"type": "fake-ipam"});
    let mut missing_ipam = conf();
    missing_ipam["ipam"] = json!({"type": "no-such-ipam"});
    let mut v031 = conf();
    v031["cniVersion"] = json!("0.3.1");
    let mut v110 = conf();
    v110["cniVersion"] = json!("1.1.0");

    let cases = vec![
        case("bad JSON", "{\"cniVersion\": ".into(), 6, "not valid JSON"),
        case("empty stdin", String::new(), 6, "no network configuration"),
        case(
            "config is an array",
            "[1, 2]".into(),
            6,
            "must be a JSON object",
        ),
        env_case(
            "missing CNI_COMMAND",
            &[("CNI_COMMAND", "")],
            4,
            "CNI_COMMAND is not set",
        ),
        env_case(
            "unknown command",
            &[("CNI_COMMAND", "FROB")],
            4,
            "unknown CNI_COMMAND \"FROB\"",
        ),
        env_case(
            "lower-case command",
            &[("CNI_COMMAND", "add")],
            4,
            "unknown CNI_COMMAND",
        ),
        case(
            "unknown cniVersion",
            conf_with("cniVersion", json!("2.0.0")),
            1,
            "\"2.0.0\"",
        ),
        case(
            "cniVersion 0.2.0 (ip4 format)",
            conf_with("cniVersion", json!("0.2.0")),
            1,
            "supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0",
        ),
        case(
            "no cniVersion",
            json!({"name": "n", "type": "vswitch-cni"}).to_string(),
            7,
            "no cniVersion",
        ),
        case(
            "no name",
            json!({"cniVersion": "1.0.0", "type": "vswitch-cni"}).to_string(),
            7,
            "no name",
        ),
        case(
            "bad network name",
            conf_with("name", json!("pod net")),
            7,
            "network name",
        ),
        env_case(
            "missing CNI_CONTAINERID",
            &[("CNI_CONTAINERID", "")],
            4,
            "CNI_CONTAINERID is not set",
        ),
        env_case(
            "bad CNI_CONTAINERID",
            &[("CNI_CONTAINERID", "../etc")],
            4,
            "CNI_CONTAINERID \"../etc\" is not valid",
        ),
        env_case(
            "missing netns for ADD",
            &[("CNI_NETNS", "")],
            4,
            "CNI_NETNS is not set",
        ),
        env_case(
            "netns that does not exist",
            &[("CNI_NETNS", "/var/run/netns/vswitch-cni-test-none")],
            4,
            "No such file",
        ),
        env_case(
            "netns that is a plain file",
            &[("CNI_NETNS", &plain_file)],
            4,
            "is not a network namespace",
        ),
        env_case("relative netns", &[("CNI_NETNS", "netns/x")], 4, "absolute"),
        env_case(
            "missing CNI_IFNAME",
            &[("CNI_IFNAME", "")],
            4,
            "CNI_IFNAME is not set",
        ),
        env_case(
            "ifname too long",
            &[("CNI_IFNAME", "sixteen-chars-12")],
            4,
            "not a valid interface name",
        ),
        env_case(
            "ifname with a slash",
            &[("CNI_IFNAME", "eth/0")],
            4,
            "not a valid interface name",
        ),
        env_case(
            "unknown CNI_ARGS keys",
            &[("CNI_ARGS", "K8S_POD_NAME=p;FOO=1;BAR=2")],
            4,
            "unknown keys FOO, BAR",
        ),
        env_case(
            "malformed CNI_ARGS",
            &[("CNI_ARGS", "K8S_POD_NAME")],
            4,
            "not a KEY=VALUE pair",
        ),
        env_case(
            "unknown interface kind in CNI_ARGS",
            &[("CNI_ARGS", "VSWITCH_INTERFACE=sriov")],
            4,
            "sriov",
        ),
        env_case("vswitchd not running", &[], 11, "is vswitchd running?"),
        env_case(
            "DEL with vswitchd not running",
            &[("CNI_COMMAND", "DEL")],
            11,
            "cannot reach vswitchd",
        ),
        case(
            "socket key is a number",
            conf_with("socket", json!(42)),
            7,
            "socket: expected a string, got a number",
        ),
        case(
            "socket key is relative",
            conf_with("socket", json!("ctl.sock")),
            7,
            "must be an absolute path",
        ),
        case(
            "pools is not a list",
            conf_with("pools", json!("default")),
            7,
            "pools: expected a list",
        ),
        case(
            "ipam section without type",
            conf_with("ipam", json!({"subnet": "10.0.0.0/24"})),
            7,
            "has no type",
        ),
        case(
            "ipam type with a path",
            conf_with("ipam", json!({"type": "/usr/lib/cni/host-local"})),
            7,
            "not a plugin name",
        ),
        case(
            "prevResult is not an object",
            conf_with("prevResult", json!("x")),
            6,
            "prevResult",
        ),
        case(
            "unsupported vswitch arg",
            conf_with("args", json!({"vswitch": {"queues": 4}})),
            2,
            "unsupported field",
        ),
        case(
            "static IPs without delegated IPAM",
            conf_with("runtimeConfig", json!({"ips": ["10.0.0.9/24"]})),
            2,
            "static addresses",
        ),
        Case {
            name: "IPAM plugin not in CNI_PATH",
            env: vec![("CNI_PATH", ipam_path.clone())],
            stdin: missing_ipam.to_string(),
            code: 104,
            msg: "\"no-such-ipam\" not found in CNI_PATH",
        },
        Case {
            name: "delegated IPAM with vswitchd not running: no address taken",
            env: vec![("CNI_PATH", ipam_path.clone())],
            stdin: delegated.to_string(),
            code: 11,
            msg: "is vswitchd running?",
        },
        Case {
            name: "CHECK on 0.3.1",
            env: vec![("CNI_COMMAND", "CHECK".into())],
            stdin: v031.to_string(),
            code: 1,
            msg: "CHECK is not part of CNI 0.3.1",
        },
        Case {
            name: "GC on 1.0.0",
            env: vec![("CNI_COMMAND", "GC".into())],
            stdin: conf().to_string(),
            code: 1,
            msg: "GC is not part of CNI 1.0.0",
        },
        Case {
            name: "STATUS with vswitchd not running",
            env: vec![("CNI_COMMAND", "STATUS".into())],
            stdin: v110.to_string(),
            code: 50,
            msg: "plugin not available",
        },
    ];
    assert!(cases.len() >= 20);

    let links_before = host_links();
    let mut failures = Vec::new();
    for c in &cases {
        let mut env: Vec<(&str, String)> = vec![
            ("CNI_COMMAND", "ADD".into()),
            ("CNI_CONTAINERID", "badinput1".into()),
            ("CNI_NETNS", "/proc/self/ns/net".into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", DEBIAN_CNI.into()),
        ];
        for (k, v) in &c.env {
            env.retain(|(ek, _)| ek != k);
            if !v.is_empty() {
                env.push((k, v.clone()));
            }
        }
        let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = plugin(&env_ref, &c.stdin);
        if r.success {
            failures.push(format!("{}: succeeded: {}", c.name, r.stdout));
            continue;
        }
        let (code, msg) = r.err();
        if code != c.code || !msg.contains(c.msg) {
            failures.push(format!(
                "{}: got code {code} \"{msg}\", want code {} with \"{}\"",
                c.name, c.code, c.msg
            ));
        }
        // the error speaks the config's version when it has a usable one
        let v = r.json();
        let want_version = match serde_json::from_str::<Value>(&c.stdin).ok().and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }) {
            Some(v) if ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].contains(&v.as_str()) => v,
            _ => "1.1.0".to_owned(),
        };
        if v["cniVersion"] != want_version.as_str() {
            failures.push(format!(
                "{}: error in cniVersion {}, want {want_version}",
                c.name, v["cniVersion"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        host_links(),
        links_before,
        "a case left an interface behind"
    );
    let ipam_calls = std::fs::read_to_string(&ipam_log).unwrap_or_default();
    assert_eq!(
        ipam_calls, "",
        "the IPAM plugin was run although the switch was unreachable"
    );
}

#[test]
fn ignore_unknown_lets_foreign_keys_through() {
    // with IgnoreUnknown the arguments pass, and the next problem is the switch
    let r = plugin(
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "ignore1"),
            ("CNI_NETNS", "/proc/self/ns/net"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", DEBIAN_CNI),
            (
                "CNI_ARGS",
                "IgnoreUnknown=true;FOO=1;K8S_POD_NAMESPACE=a;K8S_POD_NAME=b",
            ),
        ],
        &conf().to_string(),
    );
    let (code, _) = r.err();
    assert_eq!(code, 11);
}

#[test]
fn version_reports_what_we_speak() {
    for (stdin, want) in [
        (r#"{"cniVersion": "0.4.0"}"#, "0.4.0"),
        (r#"{"cniVersion": "9.9.9"}"#, "1.1.0"),
        ("", "1.1.0"),
    ] {
        let r = plugin(&[("CNI_COMMAND", "VERSION")], stdin);
        let v = r.ok();
        assert_eq!(v["cniVersion"], want);
        assert_eq!(
            v["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }
}

#[test]
fn del_of_nothing_without_netns_needs_the_switch_only() {
    // DEL is allowed without CNI_NETNS; with no switch it asks to be retried
    let r = plugin(
        &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "gone1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", DEBIAN_CNI),
        ],
        &conf().to_string(),
    );
    let (code, msg) = r.err();
    assert_eq!(code, 11, "{msg}");
}

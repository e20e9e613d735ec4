//! Harness for the plugin's integration tests: runs `vswitch-cni` exactly as a
//! runtime does (a clean environment with the CNI variables, the config on
//! stdin). The switch, namespaces, locks and host checks come from
//! testsupport.

#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
pub use testsupport::*;

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_vswitch-cni");
/// Debian's containernetworking-plugins.
pub const DEBIAN_CNI: &str = "/usr/lib/cni";

/// The node every switch of these tests runs as.
pub const NODE: &str = "cni-test-node";

/// A vswitchd as these tests run it, as node [`NODE`]. Some tests kill and
/// restart it: on drop it is stopped without judging how it ends.
pub fn start_switch() -> Switch {
    Vswitchd::new().args(["--node", NODE]).any_exit().start()
}

/// [`testsupport::must_be_root`], and Debian's CNI plugins, which the
/// chains call.
pub fn must_be_root() {
    testsupport::must_be_root();
    for p in ["host-local", "tuning", "portmap"] {
        assert!(
            Path::new(DEBIAN_CNI).join(p).exists(),
            "{DEBIAN_CNI}/{p} is missing: apt-get install -y containernetworking-plugins"
        );
    }
}

/// One plugin run.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The result object of a successful run.
    pub fn ok(&self) -> Value {
        assert!(self.success, "the plugin failed: {self:?}");
        self.json()
    }

    /// A successful run that printed nothing (DEL, CHECK, GC, STATUS).
    pub fn ok_silent(&self) {
        assert!(self.success, "the plugin failed: {self:?}");
        assert_eq!(self.stdout.trim(), "", "expected no output: {self:?}");
    }

    /// The CNI error of a failed run: (code, msg). Asserts the error
    /// object's shape.
    pub fn err(&self) -> (u64, String) {
        assert!(!self.success, "expected a failure: {self:?}");
        assert_ne!(self.code, Some(0));
        let v = self.json();
        let obj = v.as_object().expect("an error object");
        for k in obj.keys() {
            assert!(
                ["cniVersion", "code", "msg", "details"].contains(&k.as_str()),
                "unexpected key {k} in {v}"
            );
        }
        assert!(v["cniVersion"].is_string(), "{v}");
        let msg = v["msg"].as_str().expect("msg").to_owned();
        assert!(!msg.is_empty());
        (v["code"].as_u64().expect("code"), msg)
    }
}

/// Runs a plugin binary with exactly `env` (plus PATH) and `stdin`.
pub fn run_binary(bin: &str, env: &[(&str, &str)], stdin: &str) -> Run {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("waiting for the plugin");
    Run {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn plugin(env: &[(&str, &str)], stdin: &str) -> Run {
    run_binary(PLUGIN, env, stdin)
}

/// The environment of one CNI call for (container, netns, ifname).
pub struct Call<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub args: &'a str,
    pub path: &'a str,
}

impl<'a> Call<'a> {
    pub fn new(container_id: &'a str, netns: &'a str) -> Call<'a> {
        Call {
            container_id,
            netns,
            ifname: "eth0",
            args: "",
            path: DEBIAN_CNI,
        }
    }

    pub fn env(&self, command: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut e = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", self.container_id),
            ("CNI_NETNS", self.netns),
            ("CNI_IFNAME", self.ifname),
            ("CNI_PATH", self.path),
        ];
        if !self.args.is_empty() {
            e.push(("CNI_ARGS", self.args));
        }
        e
    }

    pub fn run(&self, command: &str, conf: &Value) -> Run {
        plugin(&self.env(command), &conf.to_string())
    }

    /// Runs another plugin (Debian's) with the same environment.
    pub fn run_other(&self, bin: &str, command: &str, conf: &Value) -> Run {
        run_binary(bin, &self.env(command), &conf.to_string())
    }
}

/// The IPv4 address (without prefix) of the first IP entry of a result.
pub fn first_ip(result: &Value) -> String {
    let a = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address in {result}"));
    a.split('/').next().unwrap_or(a).to_owned()
}

/// The config with `prevResult` set, as a runtime builds it for the next
/// plugin of a chain, for CHECK and for DEL.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

//! The API server (crate testkube) and the node agent (`vsctl agent`)
//! between it and a switch.

use crate::process::tail;
use crate::Switch;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
pub use testkube::KubeServer;

/// The `items` of `kubectl get <resource> -o json`.
pub fn kube_items(server: &KubeServer, resource: &str) -> Vec<Value> {
    let out = server.kubectl_ok(&["get", resource, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("kubectl prints JSON");
    v["items"].as_array().cloned().unwrap_or_default()
}

/// A `vsctl agent` process between the API server and a switch; killed on
/// drop.
pub struct Agent {
    child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Agent {
    /// Starts `vsctl` (the binary at `vsctl`) as the agent of node `node`
    /// for switch `sw`, watching `kube`, with its health endpoints on
    /// `health` (`127.0.0.1:PORT`). Its output is appended to `log`.
    pub fn start(
        vsctl: &Path,
        sw: &Switch,
        kube: &KubeServer,
        node: &str,
        health: &str,
        log: &Path,
    ) -> Agent {
        Agent::start_with(vsctl, sw, kube.kubeconfig(), node, health, log)
    }

    /// As [`Agent::start`], with the credentials of `kubeconfig` (e.g. one
    /// that impersonates the agent's ServiceAccount).
    pub fn start_with(
        vsctl: &Path,
        sw: &Switch,
        kubeconfig: &Path,
        node: &str,
        health: &str,
        log: &Path,
    ) -> Agent {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("agent log {}: {e}", log.display()));
        let child = Command::new(vsctl)
            .arg("--socket")
            .arg(&sw.sock)
            .args(["agent", "--node", node, "--health-listen", health])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env("VSWITCH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("agent log fd"))
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} agent: {e}", vsctl.display()));
        Agent {
            child,
            log: log.to_owned(),
        }
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
            lines,
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET path` from the HTTP server at `addr` (`host:port`): the status code
/// and the body, or None when it cannot be had within 5 s.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

/// Whether the agent with health endpoints at `addr` answers `/readyz`
/// with 200.
pub fn ready(addr: &str) -> bool {
    http_get(addr, "/readyz").is_some_and(|(c, _)| c == 200)
}

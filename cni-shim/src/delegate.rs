//! Delegation to an IPAM plugin, as the spec says: find the plugin named by
//! `ipam.type` in `CNI_PATH`, run it with our environment (`CNI_COMMAND` set
//! to the operation) and the network configuration we received on stdin, and
//! read its result or its error.

use crate::env::Command;
use crate::error::{fail, CniError, Result, DECODE_FAILURE, INVALID_ENV, IPAM_EXEC_FAILED};
use serde_json::{Map, Value};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// What a plugin run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRun {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The executable `name` in the first directory of `path` that has it.
pub fn find_in_path(name: &str, path: &[PathBuf]) -> Result<PathBuf> {
    if path.is_empty() {
        return fail(
            INVALID_ENV,
            format!("CNI_PATH is not set: it is needed to find the IPAM plugin \"{name}\""),
        );
    }
    for dir in path {
        let p = dir.join(name);
        if let Ok(md) = std::fs::metadata(&p) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
        }
    }
    let dirs: Vec<String> = path.iter().map(|d| d.display().to_string()).collect();
    fail(
        IPAM_EXEC_FAILED,
        format!(
            "IPAM plugin \"{name}\" not found in CNI_PATH ({}): install it there or fix ipam.type",
            dirs.join(":")
        ),
    )
}

/// Runs `plugin` for `command` with `stdin`, inheriting our environment.
pub fn run(plugin: &Path, command: Command, stdin: &[u8]) -> std::io::Result<PluginRun> {
    let mut child = std::process::Command::new(plugin)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        // a plugin that exits without reading all of it is its own business
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output()?;
    Ok(PluginRun {
        success: out.status.success(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let start = s.char_indices().rev().nth(400).map(|(i, _)| i).unwrap_or(0);
    s[start..].to_owned()
}

/// Interprets a run: the result object on success (for ADD; other commands
/// print nothing), the plugin's own CNI error (its code, its message behind
/// the plugin's name) on failure.
pub fn interpret(
    name: &str,
    command: Command,
    run: &PluginRun,
) -> Result<Option<Map<String, Value>>> {
    if run.success {
        if command != Command::Add {
            return Ok(None);
        }
        return match serde_json::from_slice::<Value>(&run.stdout) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) | Err(_) => Err(CniError::new(
                DECODE_FAILURE,
                format!(
                    "IPAM plugin {name} ADD succeeded but printed no result object: {}",
                    tail(&run.stdout)
                ),
            )),
        };
    }
    let parsed = serde_json::from_slice::<Value>(&run.stdout).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u32::try_from(c).ok());
    match code {
        Some(code) => {
            let field = |k: &str| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            Err(CniError::new(
                code,
                format!("IPAM plugin {name} {}: {}", command.as_str(), field("msg")),
            )
            .with_details(field("details")))
        }
        None => Err(CniError::new(
            IPAM_EXEC_FAILED,
            format!(
                "IPAM plugin {name} {} failed without a CNI error: {}",
                command.as_str(),
                tail(if run.stdout.is_empty() {
                    &run.stderr
                } else {
                    &run.stdout
                })
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UNKNOWN_CONTAINER;

    fn run(success: bool, stdout: &str) -> PluginRun {
        PluginRun {
            success,
            stdout: stdout.as_bytes().to_vec(),
            stderr: b"some log".to_vec(),
        }
    }

    #[test]
    fn a_result_is_read() {
        let r = interpret(
            "host-local",
            Command::Add,
            &run(
                true,
                r#"{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}]}"#,
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r["ips"][0]["address"], "10.1.0.2/24");
        assert_eq!(interpret("h", Command::Del, &run(true, "")).unwrap(), None);
    }

    #[test]
    fn the_plugins_error_is_passed_on() {
        let e = interpret(
            "host-local",
            Command::Add,
            &run(
                false,
                r#"{"cniVersion":"1.0.0","code":3,"msg":"no such thing","details":"d"}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(e.code, UNKNOWN_CONTAINER);
        assert_eq!(e.msg, "IPAM plugin host-local ADD: no such thing");
        assert_eq!(e.details, "d");
    }

    #[test]
    fn garbage_is_our_error() {
        let e = interpret("x", Command::Add, &run(false, "")).unwrap_err();
        assert_eq!(e.code, IPAM_EXEC_FAILED);
        assert!(e.msg.contains("some log"), "{}", e.msg);
        let e = interpret("x", Command::Add, &run(true, "not json")).unwrap_err();
        assert_eq!(e.code, DECODE_FAILURE);
    }

    #[test]
    fn finding_plugins() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("fake-ipam");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let plain = d.path().join("not-exec");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = vec![PathBuf::from("/nonexistent"), d.path().to_path_buf()];
        assert_eq!(find_in_path("fake-ipam", &path).unwrap(), exe);
        let e = find_in_path("not-exec", &path).unwrap_err();
        assert_eq!(e.code, IPAM_EXEC_FAILED);
        assert!(e.msg.contains("/nonexistent:"), "{}", e.msg);
        assert_eq!(find_in_path("x", &[]).unwrap_err().code, INVALID_ENV);
    }
}

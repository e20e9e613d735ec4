//! The real `vsctl` binary on desired-state files: a file with a bad
//! document is refused with its document and line before vswitchd is
//! reached (status 1, not the 2 of an unreachable switch), from a file or
//! from standard input; and the help names the new commands and flags.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// A socket path nobody listens on: reaching for it would exit 2.
fn absent_socket() -> String {
    std::env::temp_dir()
        .join(format!(
            "vsctl-apply-cli-{}-absent.sock",
            std::process::id()
        ))
        .to_str()
        .expect("utf-8 temp path")
        .to_owned()
}

fn vsctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vsctl"))
        .args(["--socket", &absent_socket()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vsctl");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("vsctl output")
}

const BAD: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    source:
      selector: role in {'a'
";

#[test]
fn bad_file_is_refused_before_connecting() {
    let path = std::env::temp_dir().join(format!("vsctl-apply-cli-{}.yaml", std::process::id()));
    std::fs::write(&path, BAD).expect("write temp file");
    let file = path.to_str().expect("utf-8 temp path");
    let out = vsctl(&["apply", "-f", file], None);
    let _ = std::fs::remove_file(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.starts_with(&format!(
            "vsctl: {file}: document 2 (NetworkPolicy shop/p), line 13: spec.ingress[0].source.selector: "
        )),
        "{err}"
    );
    assert!(err.contains("invalid selector"), "{err}");
}

#[test]
fn standard_input_is_named_as_such() {
    let out = vsctl(&["delete", "-f", "-"], Some(BAD));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("vsctl: standard input: document 2 (NetworkPolicy shop/p), line 13: "),
        "{err}"
    );
    // A good file gets as far as the switch, which is not there.
    let good = BAD.replace("{'a'", "{'a'}");
    let out = vsctl(&["delete", "-f", "-"], Some(&good));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("vsctl: cannot reach vswitchd at "), "{err}");
}

#[test]
fn help_names_the_commands_and_flags() {
    let help = |args: &[&str]| {
        let out = vsctl(args, None);
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).expect("utf-8 help")
    };
    let top = help(&["--help"]);
    // a command's line, whatever the width of the command column
    let lines: Vec<String> = top
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for line in [
        "apply Create or replace the objects of a YAML file; objects not in it stay",
        "delete Delete the Namespaces and policy objects a YAML file names",
        "flows Flow logs of policy rules with action Log",
        "man Write man pages (vsctl.1 and one per command, vsctl-capture.1, ...) into DIR",
    ] {
        assert!(lines.iter().any(|l| l == line), "{line:?} not in\n{top}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("capture Copy the frames of ports or pods")),
        "{top}"
    );
    let apply = help(&["apply", "--help"]);
    assert!(apply.contains("-f, --filename <FILE>"), "{apply}");
    assert!(apply.contains("before anything is sent"), "{apply}");
    let delete = help(&["delete", "--help"]);
    assert!(delete.contains("--ignore-not-found"), "{delete}");
    let log = help(&["flows", "log", "--help"]);
    assert!(log.contains("--after <SEQ>"), "{log}");
    assert!(log.contains("--follow"), "{log}");
    let get = help(&["get", "--help"]);
    assert!(
        get.contains("policies") && get.contains("namespaces"),
        "{get}"
    );
}

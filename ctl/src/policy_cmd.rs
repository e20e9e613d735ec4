//! Policy tools that need no running switch: `vsctl policy simulate` (the
//! connectivity a cluster's policies allow, computed by the switch's own
//! evaluator) and `vsctl selector eval` (Calico selectors against labels,
//! one JSON line at a time).

use crate::Error;
use clap::{Args, Subcommand};
use policy::selector::Selector;
use policy::simulate::{ProtoPort, Simulator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum PolicyCmd {
    /// Connectivity matrices for a cluster read from YAML (Namespaces, Pods,
    /// Kubernetes NetworkPolicies, Calico NetworkPolicies,
    /// GlobalNetworkPolicies and Tiers): for each PROTO/PORT, which pod may
    /// reach which, by egress, by ingress and both.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct SimulateArgs {
    /// The cluster YAML; `-` for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: String,
    /// What to probe (repeatable): TCP/80, UDP/53, SCTP/81, ICMP, ICMP/TYPE[/CODE].
    /// Default TCP/80.
    #[arg(long = "port", value_name = "PROTO/PORT", value_parser = parse_probe)]
    pub ports: Vec<ProtoPort>,
    /// Instead of matrices, say which policy and rule (or which default)
    /// decided each direction for one packet.
    #[arg(long, num_args = 3, value_names = ["SRC", "DST", "PROTO/PORT"])]
    pub explain: Option<Vec<String>>,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum SelectorCmd {
    /// Reads JSON lines `{"sel": "...", "labels": {...}}` from standard input
    /// and writes one line `{"valid": .., "match": .., "canon": "..", "err": ".."}`
    /// for each.
    Eval,
}

fn parse_probe(s: &str) -> Result<ProtoPort, String> {
    s.parse()
}

/// The text of FILE, or of standard input for `-`.
pub(crate) fn read_input(file: &str) -> Result<String, Error> {
    if file == "-" {
        let mut t = String::new();
        io::Read::read_to_string(&mut io::stdin(), &mut t)
            .map_err(|e| Error::Manifest(format!("reading standard input: {e}")))?;
        Ok(t)
    } else {
        std::fs::read_to_string(file).map_err(|e| Error::Manifest(format!("reading {file}: {e}")))
    }
}

fn write_json<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, v).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Runs `vsctl policy ...`.
pub fn policy(cmd: &PolicyCmd, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    match cmd {
        PolicyCmd::Simulate(args) => simulate(args, json, out),
    }
}

fn simulate(args: &SimulateArgs, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let text = read_input(&args.file)?;
    let name = if args.file == "-" {
        "standard input"
    } else {
        args.file.as_str()
    };
    let world =
        policy::load::load_yaml(&text).map_err(|e| Error::Manifest(format!("{name}: {e}")))?;
    let sim = Simulator::new(&world).map_err(|e| Error::Manifest(format!("{name}: {e}")))?;
    if let Some(ex) = &args.explain {
        let [src, dst, probe] = &ex[..] else {
            return Err(Error::Manifest("--explain takes SRC DST PROTO/PORT".into()));
        };
        let pp: ProtoPort = probe.parse().map_err(Error::Manifest)?;
        let e = sim
            .explain(src, dst, &pp)
            .map_err(|e| Error::Manifest(e.to_string()))?;
        return if json {
            write_json(out, &e)
        } else {
            out.write_all(e.to_string().as_bytes())?;
            Ok(())
        };
    }
    let probes = if args.ports.is_empty() {
        vec![ProtoPort::tcp(80)]
    } else {
        args.ports.clone()
    };
    let result = sim.run(&probes);
    if json {
        write_json(out, &result)
    } else {
        out.write_all(result.render().as_bytes())?;
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalIn {
    sel: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct EvalOut {
    valid: bool,
    #[serde(rename = "match")]
    matched: bool,
    canon: String,
    err: String,
}

fn eval_line(line: &str) -> EvalOut {
    let input: EvalIn = match serde_json::from_str(line) {
        Ok(i) => i,
        Err(e) => {
            return EvalOut {
                valid: false,
                matched: false,
                canon: String::new(),
                err: format!(
                    "bad input line (want {{\"sel\": \"...\", \"labels\": {{...}}}}): {e}"
                ),
            }
        }
    };
    match Selector::parse(&input.sel) {
        Ok(s) => EvalOut {
            valid: true,
            matched: s.matches(&input.labels),
            canon: s.canonical(),
            err: String::new(),
        },
        Err(e) => EvalOut {
            valid: false,
            matched: false,
            canon: String::new(),
            err: e.to_string(),
        },
    }
}

/// Runs `vsctl selector eval` over `input`, one answer per non-blank line,
/// flushed as it goes so that a caller can converse line by line.
pub fn selector_eval(input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), Error> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = input
            .read_line(&mut line)
            .map_err(|e| Error::Manifest(format!("reading standard input: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        serde_json::to_writer(&mut *out, &eval_line(line.trim_end_matches(['\n', '\r'])))
            .map_err(io::Error::from)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["vsctl"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn command_lines() {
        let c = parse(&["policy", "simulate", "-f", "c.yaml"]);
        let Command::Policy(PolicyCmd::Simulate(a)) = c.command else {
            panic!("{c:?}")
        };
        assert_eq!(a.file, "c.yaml");
        assert!(a.ports.is_empty() && a.explain.is_none());
        let c = parse(&[
            "policy",
            "simulate",
            "-f",
            "c.yaml",
            "--port",
            "TCP/80",
            "--port",
            "udp/53",
            "--json",
            "--explain",
            "x/a",
            "y/b",
            "ICMP",
        ]);
        assert!(c.json);
        let Command::Policy(PolicyCmd::Simulate(a)) = c.command else {
            panic!()
        };
        let labels: Vec<&str> = a.ports.iter().map(ProtoPort::label).collect();
        assert_eq!(labels, ["TCP/80", "UDP/53"]);
        assert_eq!(
            a.explain,
            Some(vec!["x/a".to_string(), "y/b".into(), "ICMP".into()])
        );
        for bad in [
            &["policy", "simulate", "-f", "c", "--port", "TCP"][..],
            &["policy", "simulate"],
            &["policy", "simulate", "-f", "c", "--explain", "x/a"],
        ] {
            let mut v = vec!["vsctl"];
            v.extend_from_slice(bad);
            assert!(Cli::try_parse_from(v).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(&["selector", "eval"]).command,
            Command::Selector(SelectorCmd::Eval)
        );
    }

    #[test]
    fn selector_eval_lines() {
        let input = concat!(
            r#"{"sel": "a == 'b' && has(c)", "labels": {"a": "b", "c": ""}}"#,
            "\n\n",
            r#"{"sel": "a ==", "labels": {}}"#,
            "\n",
            r#"{"sel": "all()"}"#,
            "\n",
            "not json\n",
        );
        let mut out = Vec::new();
        selector_eval(&mut input.as_bytes(), &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["valid"], true);
        assert_eq!(lines[0]["match"], true);
        assert_eq!(lines[0]["canon"], r#"(a == "b" && has(c))"#);
        assert_eq!(lines[0]["err"], "");
        assert_eq!(lines[1]["valid"], false);
        assert_eq!(lines[1]["canon"], "");
        assert!(lines[1]["err"]
            .as_str()
            .unwrap()
            .contains("invalid selector"));
        assert_eq!(lines[2]["match"], true);
        assert_eq!(lines[3]["valid"], false);
        assert!(lines[3]["err"]
            .as_str()
            .unwrap()
            .starts_with("bad input line"));
    }

    const CLUSTER: &str = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 80}]}]
";

    fn run(args: &[&str]) -> (i32, String, String) {
        let dir = std::env::temp_dir().join(format!("vsctl-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("c{}.yaml", args.len()));
        std::fs::write(&file, CLUSTER).unwrap();
        let mut v = vec!["vsctl", "policy", "simulate", "-f", file.to_str().unwrap()];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::main_with(&cli, &mut out, &mut err);
        let _ = std::fs::remove_file(&file);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn simulate_json_table_and_explain() {
        let (code, out, err) = run(&["--json", "--port", "TCP/80", "--port", "UDP/80"]);
        assert_eq!((code, err.as_str()), (0, ""));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["pods"], serde_json::json!(["x/a", "x/b"]));
        assert_eq!(
            v["matrices"]["TCP/80"]["ingress"],
            serde_json::json!(["BA", "AA"])
        );
        assert_eq!(
            v["matrices"]["TCP/80"]["combined"],
            serde_json::json!(["BA", "AA"])
        );
        assert_eq!(
            v["matrices"]["UDP/80"]["egress"],
            serde_json::json!(["AA", "AA"])
        );
        assert_eq!(
            v["matrices"]["UDP/80"]["combined"],
            serde_json::json!(["BA", "BA"])
        );
        assert_eq!(v.as_object().unwrap().len(), 2);

        let (code, out, _) = run(&[]);
        assert_eq!(code, 0);
        assert!(out.starts_with("TCP/80 combined"), "{out}");
        assert!(out.contains("x/b      A    A"), "{out}");

        let (code, out, _) = run(&["--explain", "x/b", "x/a", "TCP/80"]);
        assert_eq!(code, 0);
        assert!(
            out.contains("ingress of x/a: allowed by x/knp.default.only-b ingress rule 0 (Allow)"),
            "{out}"
        );
        assert!(
            out.contains("egress of x/b: allowed, no policy applies"),
            "{out}"
        );
        let (code, out, _) = run(&["--explain", "x/a", "x/a", "UDP/1", "--json"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["allowed"], false);
        assert_eq!(
            v["ingress"]["policies"],
            serde_json::json!(["default: x/knp.default.only-b"])
        );

        let (code, _, err) = run(&["--explain", "x/a", "x/zz", "TCP/80"]);
        assert_eq!(code, 1);
        assert!(err.contains("no pod x/zz"), "{err}");
    }

    #[test]
    fn simulate_reports_the_bad_document() {
        let dir = std::env::temp_dir();
        let file = dir.join(format!("vsctl-policy-bad-{}.yaml", std::process::id()));
        std::fs::write(
            &file,
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  ingress: [{action: Drop}]\n",
        )
        .unwrap();
        let cli =
            Cli::try_parse_from(["vsctl", "policy", "simulate", "-f", file.to_str().unwrap()])
                .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = crate::main_with(&cli, &mut out, &mut err);
        let _ = std::fs::remove_file(&file);
        let err = String::from_utf8(err).unwrap();
        assert_eq!(code, 1);
        assert!(
            err.contains("document 1 (GlobalNetworkPolicy g), line 5"),
            "{err}"
        );
        assert!(err.contains("unknown variant `Drop`"), "{err}");
    }
}

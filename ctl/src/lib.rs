//! `vsctl`, the operator CLI of vswitchd: the command line ([`cli`]), the
//! tables it prints ([`table`], [`render`]), per-port rates ([`rate`]),
//! desired-state files ([`manifest`], [`apply`]), flow logs ([`flows`]) and
//! the glue that sends requests over the control socket ([`main_with`]).
//!
//! Exit status: 0 on success; 1 when vswitchd refuses a request (the message
//! goes to stderr as `vsctl: <message>`) or output cannot be written; 2 when
//! vswitchd cannot be reached or the conversation breaks (connect, I/O,
//! undecodable or unexpected reply). clap's usage errors also exit 2.

pub mod agent;
pub mod apply;
pub mod capture;
pub mod cli;
pub mod flows;
pub mod manifest;
pub mod policy_cmd;
pub mod rate;
pub mod render;
pub mod table;
pub mod trace;

use api::{Client, ClientError, PortSpec, Reply, Request};
use cli::{
    Cli, Command, EndpointCmd, FdbCmd, FlowsCmd, FlushWhat, GetWhat, Output, PortCmd, StatsArgs,
};
use serde::Serialize;
use std::fmt;
use std::io::{self, Write};
use std::time::Instant;

/// Why a `vsctl` command failed.
#[derive(Debug)]
pub enum Error {
    /// Talking to vswitchd failed, or it refused the request.
    Client(ClientError),
    /// vswitchd answered with another kind of reply than the request calls for.
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    /// Writing to stdout failed.
    Output(io::Error),
    /// A desired-state file that cannot be read or is not understood.
    Manifest(String),
    /// The node agent could not start.
    Agent(String),
    /// Options that do not go together.
    Usage(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Client(ClientError::Refused { .. }) => 1,
            Error::Client(_) | Error::Unexpected { .. } | Error::Usage(_) => 2,
            Error::Output(_) | Error::Manifest(_) | Error::Agent(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // vswitchd's own words, without the "vswitchd: " prefix.
            Error::Client(ClientError::Refused { message, .. }) => f.write_str(message),
            Error::Client(e) => e.fmt(f),
            Error::Unexpected { expected, got } => write!(
                f,
                "unexpected reply from vswitchd: expected '{expected}', got '{got}'"
            ),
            Error::Output(e) => write!(f, "cannot write output: {e}"),
            Error::Manifest(m) | Error::Agent(m) | Error::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        Error::Client(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Output(e)
    }
}

/// The wire name of a reply's kind.
pub fn reply_kind(r: &Reply) -> &'static str {
    match r {
        Reply::Done => "done",
        Reply::Ports(_) => "ports",
        Reply::Stats(_) => "stats",
        Reply::Fdb(_) => "fdb",
        Reply::Flushed(_) => "flushed",
        Reply::Status(_) => "status",
        Reply::Endpoints(_) => "endpoints",
        Reply::Attachment(_) => "attachment",
        Reply::Released(_) => "released",
        Reply::Pools(_) => "pools",
        Reply::Blocks(_) => "blocks",
        Reply::Attachments(_) => "attachments",
        Reply::Nodes(_) => "nodes",
        Reply::FlowLog(_) => "flow-log",
        Reply::Policies(_) => "policies",
        Reply::Services(_) => "services",
        Reply::Capture(_) => "capture",
        Reply::Conntrack(_) => "conntrack",
        Reply::Nat(_) => "nat",
        Reply::Captured(_) => "captured",
        Reply::Trace(_) => "trace",
        Reply::Traced(_) => "traced",
        Reply::Injected(_) => "injected",
    }
}

/// Unwraps the reply variant a request calls for, or fails with
/// [`Error::Unexpected`].
macro_rules! expect_reply {
    ($reply:expr, $variant:ident, $name:literal) => {
        match $reply {
            Reply::$variant(v) => v,
            other => {
                return Err(Error::Unexpected {
                    expected: $name,
                    got: reply_kind(&other),
                })
            }
        }
    };
}

/// A flag that SIGINT and SIGTERM raise: long-running commands (capture,
/// trace) end cleanly on it.
pub(crate) fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Error> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(Error::Output)?;
    }
    Ok(stop)
}

pub(crate) fn expect_done(r: Reply) -> Result<(), Error> {
    match r {
        Reply::Done => Ok(()),
        other => Err(Error::Unexpected {
            expected: "done",
            got: reply_kind(&other),
        }),
    }
}

fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, v: &T) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, v).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Prints `data` as pretty JSON (`--json`, `-o json`), as YAML (`-o
/// yaml`), else `text()`.
fn emit<T: Serialize + ?Sized>(
    fmt: Output,
    out: &mut dyn Write,
    data: &T,
    text: impl FnOnce() -> String,
) -> Result<(), Error> {
    match fmt {
        Output::Json => write_json(out, data),
        Output::Yaml => {
            let y = serde_yaml_ng::to_string(data).map_err(io::Error::other)?;
            out.write_all(y.as_bytes())?;
            Ok(())
        }
        Output::Table => {
            out.write_all(text().as_bytes())?;
            Ok(())
        }
    }
}

/// Runs one parsed command line, writing its output to `out`.
pub fn execute(cli: &Cli, out: &mut dyn Write) -> Result<(), Error> {
    // These work on files and standard input, without a switch.
    match &cli.command {
        Command::Policy(cmd) => return policy_cmd::policy(cmd, cli.json, out),
        Command::Selector(policy_cmd::SelectorCmd::Eval) => {
            return policy_cmd::selector_eval(&mut io::stdin().lock(), out)
        }
        // These read and check their file before connecting.
        Command::Apply { file } => return apply::apply(&cli.socket, file, cli.json, out),
        Command::Agent(args) => return agent::run(args, &cli.socket).map_err(Error::Agent),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "vsctl", out);
            return Ok(());
        }
        Command::Man { dir } => return man_pages(dir, out),
        Command::DropReasons { reason } => return drop_reasons(reason.as_deref(), cli.json, out),
        Command::Delete {
            file,
            ignore_not_found,
        } => return apply::delete(&cli.socket, file, *ignore_not_found, cli.json, out),
        Command::Get {
            what,
            pod,
            state,
            limit,
            ..
        } => {
            let conntrack = *what == GetWhat::Conntrack;
            let takes_limit = conntrack || *what == GetWhat::Nat;
            if (!conntrack && (pod.is_some() || state.is_some())) || (!takes_limit && *limit != 0) {
                return Err(Error::Usage(
                    "--pod and --state are for 'get conntrack', --limit for 'get conntrack' and 'get nat'"
                        .into(),
                ));
            }
        }
        _ => {}
    }
    let mut client = Client::connect(&cli.socket)?;
    let json = cli.json;
    let fmt = match &cli.command {
        _ if json => Output::Json,
        Command::Get { output, .. } => *output,
        _ => Output::Table,
    };
    match &cli.command {
        Command::Port(PortCmd::Add {
            name,
            kind,
            path,
            iface,
            pci,
        }) => {
            let port = PortSpec {
                name: name.clone(),
                kind: (*kind).into(),
                path: path.clone(),
                iface: iface.clone(),
                pci: pci.clone(),
            };
            // the switch answers with the port as created (id, lcore, MAC)
            let ports = expect_reply!(client.call(&Request::PortAdd { port })?, Ports, "ports");
            emit(fmt, out, &ports, || render::ports(&ports))
        }
        Command::Port(PortCmd::Del { name }) => {
            expect_done(client.call(&Request::PortDel { name: name.clone() })?)
        }
        Command::Port(PortCmd::List) => {
            let ports = expect_reply!(client.call(&Request::PortList {})?, Ports, "ports");
            emit(fmt, out, &ports, || render::ports(&ports))
        }
        Command::Stats(args) if args.rate => rates(&mut client, args, json, out),
        Command::Stats(_) => {
            let stats = expect_reply!(client.call(&Request::Stats {})?, Stats, "stats");
            emit(fmt, out, &stats, || render::stats(&stats))
        }
        Command::Fdb(FdbCmd::Show) => {
            let mut entries = expect_reply!(client.call(&Request::FdbShow {})?, Fdb, "fdb");
            render::sort_fdb(&mut entries);
            emit(fmt, out, &entries, || render::fdb(&entries))
        }
        Command::Fdb(FdbCmd::Flush { port }) => {
            let req = Request::FdbFlush { port: port.clone() };
            let n = expect_reply!(client.call(&req)?, Flushed, "flushed");
            emit(fmt, out, &n, || render::flushed(n))
        }
        Command::Fdb(FdbCmd::Aging { seconds }) => {
            expect_done(client.call(&Request::SetAging { seconds: *seconds })?)
        }
        Command::Status => {
            let status = expect_reply!(client.call(&Request::Status {})?, Status, "status");
            emit(fmt, out, &status, || render::status(&status))
        }
        Command::Endpoint(EndpointCmd::Set {
            port,
            mac,
            ips,
            pod,
        }) => {
            let endpoint = api::EndpointSpec {
                port: port.clone(),
                mac: *mac,
                ips: ips.clone(),
                pod: pod.clone(),
                labels: Default::default(),
                namespace: None,
                service_account: None,
                named_ports: Vec::new(),
            };
            expect_done(client.call(&Request::EndpointSet { endpoint })?)
        }
        Command::Endpoint(EndpointCmd::Del { port }) => {
            expect_done(client.call(&Request::EndpointDel { port: port.clone() })?)
        }
        Command::Get {
            what: GetWhat::Policies,
            ..
        } => {
            let v = expect_reply!(client.call(&Request::PolicyList {})?, Policies, "policies");
            if fmt == Output::Yaml {
                return apply::write_manifests(out, &[], &v.policies);
            }
            emit(fmt, out, &v, || render::policies(&v))
        }
        Command::Get {
            what: GetWhat::Namespaces,
            ..
        } => {
            let v = expect_reply!(client.call(&Request::PolicyList {})?, Policies, "policies");
            if fmt == Output::Yaml {
                return apply::write_manifests(out, &v.namespaces, &[]);
            }
            emit(fmt, out, &v.namespaces, || {
                render::namespaces(&v.namespaces)
            })
        }
        Command::Get {
            what: GetWhat::ClusterPods,
            ..
        } => {
            let v = expect_reply!(client.call(&Request::PolicyList {})?, Policies, "policies");
            emit(fmt, out, &v.pods, || render::cluster_pods(&v.pods))
        }
        Command::Get {
            what: GetWhat::Services,
            ..
        } => {
            let v = expect_reply!(client.call(&Request::ServiceList {})?, Services, "services");
            emit(fmt, out, &v, || render::services(&v))
        }
        Command::Flows(FlowsCmd::Log(args)) => flows::log(&mut client, args, json, out),
        Command::Get {
            what: GetWhat::Conntrack,
            pod,
            state,
            limit,
            ..
        } => {
            let query = api::ConntrackQuery {
                pod: pod.clone(),
                state: state.clone(),
                limit: *limit,
            };
            let v = expect_reply!(
                client.call(&Request::ConntrackList { query })?,
                Conntrack,
                "conntrack"
            );
            emit(fmt, out, &v, || render::conntrack(&v))
        }
        Command::Get {
            what: GetWhat::Nat,
            limit,
            ..
        } => {
            let v = expect_reply!(
                client.call(&Request::NatList { limit: *limit })?,
                Nat,
                "nat"
            );
            emit(fmt, out, &v, || render::nat(&v))
        }
        Command::Flush {
            what: FlushWhat::Conntrack,
            pod,
        } => {
            let req = Request::ConntrackFlush { pod: pod.clone() };
            let n = expect_reply!(client.call(&req)?, Flushed, "flushed");
            emit(fmt, out, &n, || format!("{n} connections flushed\n"))
        }
        Command::Capture(args) => capture::capture(&mut client, args, out, &mut io::stderr()),
        Command::Trace(args) => trace::trace(&mut client, args, fmt, out, &mut io::stderr()),
        Command::Get {
            what: GetWhat::Pools,
            ..
        } => {
            let v = expect_reply!(client.call(&Request::PoolList {})?, Pools, "pools");
            emit(fmt, out, &v, || render::pools(&v))
        }
        Command::Get {
            what: GetWhat::Blocks,
            ..
        } => {
            let v = expect_reply!(client.call(&Request::BlockList {})?, Blocks, "blocks");
            emit(fmt, out, &v, || render::blocks(&v))
        }
        Command::Get {
            what: GetWhat::Nodes,
            ..
        } => {
            let v = expect_reply!(client.call(&Request::NodeList {})?, Nodes, "nodes");
            emit(fmt, out, &v, || render::nodes(&v))
        }
        Command::Get {
            what: GetWhat::Pods,
            ..
        } => {
            let v = expect_reply!(
                client.call(&Request::PodList {})?,
                Attachments,
                "attachments"
            );
            emit(fmt, out, &v, || render::attachments(&v))
        }
        // Answered above, before connecting.
        Command::Policy(_)
        | Command::Selector(_)
        | Command::Apply { .. }
        | Command::Agent(_)
        | Command::Completion { .. }
        | Command::Man { .. }
        | Command::DropReasons { .. }
        | Command::Delete { .. } => Ok(()),
        Command::Get {
            what: GetWhat::Endpoints,
            ..
        }
        | Command::Endpoint(EndpointCmd::List) => {
            let eps = expect_reply!(
                client.call(&Request::EndpointList {})?,
                Endpoints,
                "endpoints"
            );
            emit(fmt, out, &eps, || render::endpoints(&eps))
        }
    }
}

/// `vsctl drop-reasons [REASON]`: each reason, its meaning and what to do.
fn drop_reasons(reason: Option<&str>, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let list: Vec<&api::drops::DropInfo> = match reason {
        None => api::drops::DROP_REASONS.iter().collect(),
        Some(r) => match api::drops::drop_reason(r) {
            Some(d) => vec![d],
            None => {
                return Err(Error::Usage(format!(
                    "no drop reason '{r}'; `vsctl drop-reasons` lists them all"
                )))
            }
        },
    };
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|d| serde_json::json!({"name": d.name, "meaning": d.meaning, "remedy": d.remedy}))
            .collect();
        return write_json(out, &v);
    }
    for d in list {
        writeln!(
            out,
            "{}\n  {}\n  What to do: {}",
            d.name, d.meaning, d.remedy
        )?;
    }
    Ok(())
}

/// vsctl.1 and a page per command (vsctl-capture.1, ...) in `dir`, from
/// the same definitions as `--help`.
fn man_pages(dir: &std::path::Path, out: &mut dyn Write) -> Result<(), Error> {
    let cmd = <Cli as clap::CommandFactory>::command();
    std::fs::create_dir_all(dir)?;
    let mut pages = vec![("vsctl".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("vsctl-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

fn snapshot(client: &mut Client) -> Result<(Vec<api::PortStats>, Instant), Error> {
    let stats = expect_reply!(client.call(&Request::Stats {})?, Stats, "stats");
    Ok((stats.ports, Instant::now()))
}

/// One interval of `stats --rate --json`.
#[derive(Serialize)]
struct RateSample<'a> {
    elapsed_secs: f64,
    ports: &'a [rate::PortRate],
}

/// `stats --rate`: a header, then one block of per-port rates per interval,
/// `--count` times or until interrupted. Samples are scheduled on a fixed
/// grid so the period does not drift; rates use the measured time between
/// the two replies.
fn rates(
    client: &mut Client,
    args: &StatsArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (mut prev, mut prev_at) = snapshot(client)?;
    let widths = render::rate_widths(prev.iter().map(|p| p.name.as_str()));
    if !json {
        out.write_all(render::rate_header(&widths).as_bytes())?;
        out.flush()?;
    }
    let mut next = prev_at;
    let mut done = 0u64;
    while args.count.is_none_or(|n| done < n) {
        next += args.interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now; // We fell behind (slow reply): restart the grid.
        }
        let (cur, cur_at) = snapshot(client)?;
        let elapsed = cur_at.duration_since(prev_at);
        let rates = rate::compute_rates(&prev, &cur, elapsed);
        if json {
            write_json(
                out,
                &RateSample {
                    elapsed_secs: elapsed.as_secs_f64(),
                    ports: &rates,
                },
            )?;
        } else {
            if done > 0 {
                out.write_all(b"\n")?;
            }
            out.write_all(render::rate_block(&rates, &widths).as_bytes())?;
        }
        out.flush()?;
        (prev, prev_at) = (cur, cur_at);
        done += 1;
    }
    Ok(())
}

/// Runs `cli`, reporting failure on `err` as `vsctl: <message>`; returns the
/// process exit status. A closed stdout (`vsctl stats --rate | head`) ends
/// the command quietly with status 0.
pub fn main_with(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match execute(cli, out).and_then(|()| out.flush().map_err(Error::Output)) {
        Ok(()) => 0,
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            // Nothing more useful can be done if stderr is gone too.
            let _ = writeln!(err, "vsctl: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// A fake vswitchd on a fresh temp socket: accepts one connection and
    /// answers each request line with the next of `replies`; the thread
    /// returns the request lines it received.
    pub(crate) struct FakeServer {
        path: PathBuf,
        thread: Option<JoinHandle<Vec<String>>>,
    }

    impl FakeServer {
        pub(crate) fn start(replies: Vec<String>) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "vsctl-test-{}-{}.sock",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).expect("bind fake socket");
            listener.set_nonblocking(true).expect("nonblocking");
            let thread = std::thread::spawn(move || {
                // Give up after a while so a client that never connects
                // fails the test instead of hanging it.
                let deadline = Instant::now() + Duration::from_secs(10);
                let stream = loop {
                    match listener.accept() {
                        Ok((s, _)) => break s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            assert!(Instant::now() < deadline, "client never connected");
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                };
                stream.set_nonblocking(false).expect("blocking");
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                let mut got = Vec::new();
                for reply in replies {
                    let mut line = String::new();
                    if reader.read_line(&mut line).expect("read request") == 0 {
                        break;
                    }
                    got.push(line.trim_end().to_owned());
                    writer.write_all(reply.as_bytes()).expect("write reply");
                    writer.write_all(b"\n").expect("write reply");
                }
                got
            });
            FakeServer {
                path,
                thread: Some(thread),
            }
        }

        pub(crate) fn path(&self) -> &std::path::Path {
            &self.path
        }

        /// The request lines received, parsed.
        pub(crate) fn requests(mut self) -> Vec<Request> {
            let lines = self
                .thread
                .take()
                .expect("joined once")
                .join()
                .expect("fake server panicked");
            lines
                .iter()
                .map(|l| serde_json::from_str(l).expect("request is valid JSON"))
                .collect()
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Runs `vsctl --socket <fake> args...`; returns (status, stdout, stderr).
    pub(crate) fn run(server: &FakeServer, args: &[&str]) -> (i32, String, String) {
        run_at(server.path.to_str().expect("utf-8 temp path"), args)
    }

    /// Runs `vsctl --socket <none> args...` for commands that must not
    /// need a switch.
    fn run_offline(args: &[&str]) -> (i32, String, String) {
        run_at("/nonexistent/vswitchd.sock", args)
    }

    fn run_at(sock: &str, args: &[&str]) -> (i32, String, String) {
        let mut argv = vec!["vsctl", "--socket", sock];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("valid command line");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = main_with(&cli, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).expect("utf-8 stdout"),
            String::from_utf8(err).expect("utf-8 stderr"),
        )
    }

    const PORTS_REPLY: &str = r#"{"status":"ok","result":{"kind":"ports","data":[
        {"name":"p0","kind":"vhost-server","path":"/run/vswitch/p0.sock","port_id":0,"lcore":2,"link_up":true,"mac":"02:00:00:00:00:a0"},
        {"name":"t0","kind":"tap","iface":"vs-t0","port_id":1,"lcore":3,"link_up":false,"mac":"02:00:00:00:00:a1"}]}}"#;

    fn one_line(s: &str) -> String {
        s.lines().map(str::trim).collect()
    }

    /// The operators' guide carries the drop reasons as `vsctl
    /// drop-reasons` has them (`VSWITCH_BLESS=1` rewrites its table), and
    /// names no vsctl command that does not exist.
    #[test]
    fn the_operators_guide_follows_the_source() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operators-guide.md");
        let guide = std::fs::read_to_string(&path).expect("docs/operators-guide.md");
        let (open, close) = (
            "<!-- drop-reasons: from api/src/drops.rs -->\n",
            "<!-- /drop-reasons -->",
        );
        let a = guide.find(open).expect("the table's opening marker") + open.len();
        let b = guide.find(close).expect("the table's closing marker");
        let table = api::drops::drop_reasons_markdown();
        if std::env::var_os("VSWITCH_BLESS").is_some() {
            let new = format!("{}{table}{}", &guide[..a], &guide[b..]);
            std::fs::write(&path, new).expect("writing the guide");
        } else {
            assert_eq!(
                &guide[a..b],
                table,
                "run with VSWITCH_BLESS=1 to update the guide"
            );
        }
        let cmd = <Cli as clap::CommandFactory>::command();
        let known: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
        for (i, _) in guide.match_indices("vsctl ") {
            let word: String = guide[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if !word.is_empty() {
                assert!(
                    known.contains(&word.as_str()),
                    "the guide names `vsctl {word}`"
                );
            }
        }
    }

    #[test]
    fn port_list_against_a_fake_server() {
        let server = FakeServer::start(vec![one_line(PORTS_REPLY)]);
        let (code, out, err) = run(&server, &["port", "list"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "NAME  KIND          PORT-ID  LCORE  LINK  MAC                PATH/IFACE\n\
             p0    vhost-server  0        2      up    02:00:00:00:00:a0  /run/vswitch/p0.sock\n\
             t0    tap           1        3      down  02:00:00:00:00:a1  vs-t0\n"
        );
        assert_eq!(server.requests(), vec![Request::PortList {}]);
    }

    #[test]
    fn conntrack_rows_and_refused_options() {
        let reply = r#"{"status":"ok","result":{"kind":"conntrack","data":{"total":3,"connections":[
            {"lcore":1,"zone":4,"pod":"shop/web-0","protocol":"tcp","src":"10.0.0.1","sport":40000,
             "dst":"10.0.0.2","dport":80,"state":"established","idle_seconds":2,"expires_seconds":86398}]}}}"#;
        let server = FakeServer::start(vec![one_line(reply)]);
        let (code, out, err) = run(
            &server,
            &["get", "conntrack", "--pod", "shop/web-0", "--limit", "1"],
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "POD         PROTO  SRC             DST          STATE        IDLE  EXPIRES  LCORE\n\
             shop/web-0  tcp    10.0.0.1:40000  10.0.0.2:80  established  2s    86398s   1\n\
             1 of 3 connections\n"
        );
        assert_eq!(
            server.requests(),
            vec![Request::ConntrackList {
                query: api::ConntrackQuery {
                    pod: Some("shop/web-0".into()),
                    state: None,
                    limit: 1
                }
            }]
        );
        // options of another kind: refused before anything is sent
        let (code, _, err) = run_offline(&["get", "pods", "--state", "established"]);
        assert_eq!(code, 2);
        assert!(
            err.contains("--pod and --state are for 'get conntrack'"),
            "{err}"
        );
    }

    #[test]
    fn completions_and_man_pages_need_no_switch() {
        let (code, out, err) = run_offline(&["completion", "bash"]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(out.contains("_vsctl()") && out.contains("capture"), "{out}");
        let dir = std::env::temp_dir().join(format!("vsctl-man-{}", std::process::id()));
        let dir_s = dir.display().to_string();
        let (code, out, err) = run_offline(&["man", &dir_s]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(out.lines().count() > 10, "a page per command: {out}");
        let page = std::fs::read_to_string(dir.join("vsctl-capture.1")).expect("vsctl-capture.1");
        assert!(page.contains(".TH vsctl-capture"), "{page}");
        assert!(page.contains("pcapng"), "{page}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn port_list_json_prints_the_data_only() {
        let server = FakeServer::start(vec![one_line(PORTS_REPLY)]);
        let (code, out, _) = run(&server, &["port", "list", "--json"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is JSON");
        assert_eq!(v[0]["name"], "p0");
        assert_eq!(v[1]["iface"], "vs-t0");
        assert!(out.contains("\n  "), "pretty-printed: {out}");
        assert_eq!(server.requests(), vec![Request::PortList {}]);
    }

    #[test]
    fn refused_request_prints_message_and_exits_1() {
        let server = FakeServer::start(vec![
            r#"{"status":"error","error":"no such port 'p9'"}"#.into()
        ]);
        let (code, out, err) = run(&server, &["port", "del", "p9"]);
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(err, "vsctl: no such port 'p9'\n");
        assert_eq!(
            server.requests(),
            vec![Request::PortDel { name: "p9".into() }]
        );
    }

    #[test]
    fn port_add_sends_the_spec() {
        let server = FakeServer::start(vec![concat!(
            r#"{"status":"ok","result":{"kind":"ports","data":[{"name":"p0","kind":"vhost-client","#,
            r#""path":"/tmp/p0.sock","port_id":3,"lcore":1,"link_up":false,"mac":"02:00:00:00:00:01"}]}}"#
        )
        .into()]);
        let (code, out, err) = run(
            &server,
            &[
                "port",
                "add",
                "p0",
                "--kind",
                "vhost-client",
                "--path",
                "/tmp/p0.sock",
            ],
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert!(
            out.contains("p0") && out.contains("vhost-client") && out.contains("/tmp/p0.sock"),
            "{out}"
        );
        assert_eq!(
            server.requests(),
            vec![Request::PortAdd {
                port: PortSpec {
                    name: "p0".into(),
                    kind: api::PortKind::VhostClient,
                    path: Some("/tmp/p0.sock".into()),
                    iface: None,
                    pci: None,
                }
            }]
        );
    }

    #[test]
    fn fdb_flush_and_aging() {
        let server = FakeServer::start(vec![
            r#"{"status":"ok","result":{"kind":"flushed","data":3}}"#.into(),
        ]);
        let (code, out, _) = run(&server, &["fdb", "flush", "--port", "p1"]);
        assert_eq!((code, out.as_str()), (0, "flushed 3 FDB entries\n"));
        assert_eq!(
            server.requests(),
            vec![Request::FdbFlush {
                port: Some("p1".into())
            }]
        );

        // `status: ok` without a result is Done.
        let server = FakeServer::start(vec![r#"{"status":"ok"}"#.into()]);
        let (code, out, _) = run(&server, &["fdb", "aging", "60"]);
        assert_eq!((code, out.as_str()), (0, ""));
        assert_eq!(server.requests(), vec![Request::SetAging { seconds: 60 }]);
    }

    #[test]
    fn unexpected_reply_kind_exits_2() {
        let server = FakeServer::start(vec![r#"{"status":"ok","result":{"kind":"done"}}"#.into()]);
        let (code, out, err) = run(&server, &["status"]);
        assert_eq!((code, out.as_str()), (2, ""));
        assert_eq!(
            err,
            "vsctl: unexpected reply from vswitchd: expected 'status', got 'done'\n"
        );
        assert_eq!(server.requests(), vec![Request::Status {}]);
    }

    #[test]
    fn garbage_reply_exits_2() {
        let server = FakeServer::start(vec!["not json".into()]);
        let (code, _, err) = run(&server, &["fdb", "show"]);
        assert_eq!(code, 2);
        assert!(err.starts_with("vsctl: bad reply from vswitchd"), "{err}");
    }

    #[test]
    fn stats_rate_polls_count_plus_one_times() {
        let stats = |rx: u64| {
            format!(
                r#"{{"status":"ok","result":{{"kind":"stats","data":{{"ports":[{{"name":"p0","rx_packets":{rx},"rx_bytes":0,"tx_packets":5,"tx_bytes":0,"tx_drops":0,"rx_drops":0}}],"drops":{{}},"fdb":{{"entries":0,"capacity":0,"learned":0,"moved":0,"aged":0,"evicted":0,"aging_seconds":300}},"workers":[],"tsc_hz":1}}}}}}"#
            )
        };
        let server = FakeServer::start(vec![stats(100), stats(100), stats(100)]);
        let (code, out, err) = run(
            &server,
            &["stats", "--rate", "--interval", "0.01", "--count", "2"],
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            "PORT  RX-PPS      TX-PPS      DROPS/S\n\
             p0    0           0           0\n\
             \n\
             p0    0           0           0\n"
        );
        assert_eq!(server.requests(), vec![Request::Stats {}; 3]);
    }

    #[test]
    fn unreachable_socket_exits_2() {
        let path =
            std::env::temp_dir().join(format!("vsctl-test-{}-absent.sock", std::process::id()));
        let cli =
            Cli::try_parse_from(["vsctl", "--socket", path.to_str().expect("utf-8"), "status"])
                .expect("valid command line");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(main_with(&cli, &mut out, &mut err), 2);
        let err = String::from_utf8(err).expect("utf-8");
        assert!(err.starts_with("vsctl: cannot reach vswitchd at "), "{err}");
        assert!(err.contains("absent.sock"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            Error::Client(ClientError::Refused {
                code: api::ErrorCode::Invalid,
                message: "x".into()
            })
            .exit_code(),
            1
        );
        assert_eq!(Error::Client(ClientError::Closed).exit_code(), 2);
        assert_eq!(Error::Output(io::Error::other("x")).exit_code(), 1);
    }
}

//! The control socket: one JSON request per line, one JSON reply per line.
//!
//! A malformed or refused request gets an error reply and the connection
//! stays open; nothing a client sends stops the switch.
//!
//! Requests run on the runtime's blocking threads, never on the thread that
//! accepts connections: a request that waits (an IPAM call to an API server
//! that is down, a large policy push) holds up only the requests that need
//! the switch after it, and `status` needs no lock at all.

use crate::control::capture::{self, Desk};
use crate::control::inspect;
use crate::control::switch::{StatusSource, Switch};
use crate::control::trace::{self, Names};
use api::{ErrorCode, Reply, Request, Response};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Longest request line accepted. A node agent's document for a cluster of
/// 10,000 pods and 2,000 policies is 2.4 MiB (tests/control_scale.rs); the
/// socket is root's alone, so the bound guards against mistakes, not
/// attackers.
const MAX_LINE: usize = 128 << 20;

/// The switch and what may be read of it without its lock.
#[derive(Clone)]
pub struct Control {
    pub sw: Arc<Mutex<Switch>>,
    pub status: StatusSource,
    /// Captures are read without the switch's lock, so that a long policy
    /// push does not make them drop frames.
    pub captures: Arc<Desk>,
    /// The live trace, read without the switch's lock but for the names
    /// its words use.
    pub traces: Arc<trace::Desk>,
}

impl Control {
    pub fn new(sw: Arc<Mutex<Switch>>) -> Option<Control> {
        let (status, shared) = {
            let s = sw.lock().ok()?;
            (s.status_source(), s.shared().clone())
        };
        Some(Control {
            sw,
            status,
            captures: Arc::new(Desk::new(shared.clone())),
            traces: Arc::new(trace::Desk::new(shared)),
        })
    }
}

fn poisoned() -> Response {
    Response::error(ErrorCode::Internal, "internal error: switch state poisoned")
}

/// Decodes one request line, or says why it cannot. Apart from the switch,
/// so that it is fuzzed without one.
pub fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))
}

/// Answers one request line.
pub fn handle_line(ctl: &Control, line: &str) -> Response {
    let req = match parse_request(line) {
        Ok(r) => r,
        Err(msg) => return Response::error(ErrorCode::Invalid, msg),
    };
    let changes = changes_records(&req);
    // requests that wait on the IPAM store do so without the switch
    let result = match req {
        Request::Status {} => Ok(Reply::Status(ctl.status.status())),
        Request::PodAttach { attach } => Switch::attach_via(&ctl.sw, attach).map(Reply::Attachment),
        Request::PodDetach {
            container_id,
            ifname,
        } => Switch::detach_via(&ctl.sw, &container_id, &ifname).map(|()| Reply::Done),
        Request::PodGc { network, live } => {
            Switch::gc_via(&ctl.sw, network.as_deref(), &live).map(Reply::Released)
        }
        Request::PoolList {} => Switch::pool_list_via(&ctl.sw).map(Reply::Pools),
        Request::BlockList {} => Switch::block_list_via(&ctl.sw).map(Reply::Blocks),
        Request::CaptureStart { start } => match ctl.sw.lock() {
            Ok(sw) => capture::resolve(&sw, &start.ports),
            Err(_) => return poisoned(),
        }
        .and_then(|ports| {
            ctl.captures
                .start(ports, start.filter.as_deref(), start.snaplen)
        })
        .map(Reply::Capture),
        Request::CaptureRead { id } => ctl.captures.read(id).map(Reply::Captured),
        Request::CaptureStop { id } => ctl.captures.stop(id).map(|()| Reply::Done),
        Request::TraceStart { start } => match ctl.sw.lock() {
            Ok(sw) => capture::resolve(&sw, &start.ports),
            Err(_) => return poisoned(),
        }
        .and_then(|ports| {
            ctl.traces
                .start(ports, start.filter.as_deref(), start.count)
        })
        .map(Reply::Trace),
        Request::TraceRead { id } => {
            let names = match ctl.sw.lock() {
                Ok(sw) => Names::of(&sw),
                Err(_) => return poisoned(),
            };
            ctl.traces.read(id, &names).map(Reply::Traced)
        }
        Request::TraceStop { id } => ctl.traces.stop(id).map(|()| Reply::Done),
        req => {
            let Ok(mut sw) = ctl.sw.lock() else {
                return poisoned();
            };
            locked(&mut sw, req)
        }
    };
    if changes {
        // before the answer: a pod ADD that was answered is a pod that a
        // restart takes up again (a failed request may have undone things too)
        match ctl.sw.lock() {
            Ok(mut sw) => sw.save(),
            Err(_) => return poisoned(),
        }
    }
    match result {
        Ok(result) => Response::Ok { result },
        Err(e) => Response::error(e.code(), e.to_string()),
    }
}

/// Whether a request may change what the state directory records.
fn changes_records(req: &Request) -> bool {
    matches!(
        req,
        Request::PortAdd { .. }
            | Request::PortDel { .. }
            | Request::EndpointSet { .. }
            | Request::EndpointDel { .. }
            | Request::PodAttach { .. }
            | Request::PodDetach { .. }
            | Request::PodGc { .. }
            | Request::Apply { .. }
    )
}

/// Requests answered with the switch held throughout.
fn locked(sw: &mut Switch, req: Request) -> crate::control::switch::Result<Reply> {
    match req {
        Request::PortAdd { port } => sw.add_port(port).map(|i| Reply::Ports(vec![i])),
        Request::PortDel { name } => sw.del_port(&name).map(|()| Reply::Done),
        Request::PortList {} => Ok(Reply::Ports(sw.list_ports())),
        Request::Stats {} => Ok(Reply::Stats(sw.stats())),
        Request::FdbShow {} => Ok(Reply::Fdb(sw.fdb_show())),
        Request::FdbFlush { port } => sw.fdb_flush(port.as_deref()).map(Reply::Flushed),
        Request::SetAging { seconds } => sw.set_aging(seconds).map(|()| Reply::Done),
        Request::Status {} => Ok(Reply::Status(sw.status())),
        Request::EndpointSet { endpoint } => sw.set_endpoint(endpoint).map(|()| Reply::Done),
        Request::EndpointDel { port } => sw.del_endpoint(&port).map(|()| Reply::Done),
        Request::EndpointList {} => Ok(Reply::Endpoints(sw.endpoints())),
        Request::PodAttach { attach } => sw.attach(attach).map(Reply::Attachment),
        Request::PodDetach {
            container_id,
            ifname,
        } => sw.detach(&container_id, &ifname).map(|()| Reply::Done),
        Request::PodGet {
            container_id,
            ifname,
        } => sw.attachment(&container_id, &ifname).map(Reply::Attachment),
        Request::PodGc { network, live } => sw.gc(network.as_deref(), &live).map(Reply::Released),
        Request::PodList {} => Ok(Reply::Attachments(sw.attachment_list())),
        Request::NodeList {} => Ok(Reply::Nodes(sw.node_list())),
        Request::Apply { doc } => sw.apply(doc).map(|()| Reply::Done),
        Request::PoolList {} => sw.pool_list().map(Reply::Pools),
        Request::BlockList {} => sw.block_list().map(Reply::Blocks),
        Request::PolicyList {} => Ok(Reply::Policies(sw.policy_list())),
        Request::FlowLog { after } => Ok(Reply::FlowLog(sw.flow_log(after))),
        Request::ServiceList {} => Ok(Reply::Services(sw.service_list())),
        Request::ConntrackList { query } => inspect::conntrack(sw, &query).map(Reply::Conntrack),
        Request::ConntrackFlush { pod } => {
            inspect::flush_conntrack(sw, pod.as_deref()).map(Reply::Flushed)
        }
        Request::NatList { limit } => inspect::nat(sw, limit).map(Reply::Nat),
        Request::TraceInject { inject } => trace::inject(sw, &inject).map(Reply::Injected),
        Request::CaptureStart { .. }
        | Request::CaptureRead { .. }
        | Request::CaptureStop { .. }
        | Request::TraceStart { .. }
        | Request::TraceRead { .. }
        | Request::TraceStop { .. } => Err(crate::control::switch::SwitchError::Internal(
            "captures and traces are served without the switch".into(),
        )),
    }
}

async fn serve_conn(ctl: Control, stream: UnixStream) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match (&mut rd)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let resp = if n > MAX_LINE {
            // skip the rest of the oversized line before answering
            let mut rest = Vec::new();
            let _ = rd.read_until(b'\n', &mut rest).await;
            Response::error(
                ErrorCode::Invalid,
                format!("bad request: longer than {MAX_LINE} bytes"),
            )
        } else {
            match std::str::from_utf8(&buf) {
                Ok(s) if s.trim().is_empty() => continue,
                Ok(_) => {
                    let ctl = ctl.clone();
                    let line = std::mem::take(&mut buf);
                    let answer = tokio::task::spawn_blocking(move || {
                        let s = std::str::from_utf8(&line).unwrap_or_default();
                        handle_line(&ctl, s.trim())
                    });
                    match answer.await {
                        Ok(r) => r,
                        Err(e) => Response::error(
                            ErrorCode::Internal,
                            format!("internal error: request failed: {e}"),
                        ),
                    }
                }
                Err(_) => Response::error(ErrorCode::Invalid, "bad request: not UTF-8"),
            }
        };
        let mut out = match serde_json::to_vec(&resp) {
            Ok(v) => v,
            Err(e) => format!(r#"{{"status":"error","error":"encoding reply: {e}"}}"#).into_bytes(),
        };
        out.push(b'\n');
        if wr.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Binds the control socket with owner-only permissions.
///
/// The socket is bound in a fresh owner-only directory, made 0600, then
/// renamed into place, so there is no moment at which others may connect.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use: is another vswitchd running?", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let tmpdir: PathBuf = dir.join(format!(".vswitchd.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmpdir);
    std::fs::DirBuilder::new().mode(0o700).create(&tmpdir)?;
    let tmp = tmpdir.join("sock");
    let bound = (|| {
        let l = std::os::unix::net::UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        l.set_nonblocking(true)?;
        UnixListener::from_std(l)
    })();
    let _ = std::fs::remove_dir_all(&tmpdir);
    bound
}

/// Serves the control socket until SIGINT or SIGTERM, running housekeeping
/// between requests.
pub async fn serve(ctl: Control, listener: UnixListener) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            acc = listener.accept() => match acc {
                Ok((stream, _)) => {
                    tokio::task::spawn_local(serve_conn(ctl.clone(), stream));
                }
                Err(e) => tracing::warn!("control socket accept: {e}"),
            },
            _ = tick.tick() => {
                ctl.captures.expire();
                ctl.traces.tick();
                // a request holding the switch delays the chores, never the
                // workers: their clock is their own
                if let Ok(mut s) = ctl.sw.try_lock() {
                    s.housekeeping();
                }
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

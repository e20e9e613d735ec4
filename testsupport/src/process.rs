//! Running commands, in the root namespace or in a network namespace, and
//! stopping the processes the tests start.

use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `cmd` in namespace `ns` (`ip netns exec`), or in the root namespace.
pub(crate) fn command(ns: Option<&str>, cmd: &[&str]) -> Command {
    assert!(!cmd.is_empty(), "empty command");
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(cmd);
            c
        }
        None => {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    }
}

pub(crate) fn output(ns: Option<&str>, cmd: &[&str]) -> Output {
    command(ns, cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", cmd.join(" ")))
}

/// Runs `cmd` (in namespace `ns`, if any); panics with its output unless it
/// succeeds; returns its stdout.
pub(crate) fn must(ns: Option<&str>, cmd: &[&str]) -> String {
    let o = output(ns, cmd);
    assert!(
        o.status.success(),
        "{}`{}` failed ({}):\n{}{}",
        ns.map(|n| format!("in {n}: ")).unwrap_or_default(),
        cmd.join(" "),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Sends `sig` to process `pid` (one we started, or one in a namespace we
/// made); a process already gone is no error.
pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Sends signal `first`, waits up to `grace`, then SIGKILL; reaps the child.
/// Returns how it ended: Ok(status) when it exited by itself or on `first`,
/// Err(what) when it was already gone or had to be killed.
pub(crate) fn terminate(
    child: &mut Child,
    first: Signal,
    grace: Duration,
) -> Result<ExitStatus, String> {
    if let Ok(Some(st)) = child.try_wait() {
        return Err(format!("it had exited already ({st})"));
    }
    signal(child.id(), first);
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("it did not exit within {grace:?} and was killed"))
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn read_all(r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut r = r;
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Forwards every line `r` prints to a channel; the channel closes at EOF.
pub(crate) fn lines(r: impl Read + Send + 'static) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (rx, h)
}

/// Waits until a line for which `ready` holds arrives on `rx`; returns the
/// lines seen, or Err with them when the stream ended or `timeout` passed.
pub(crate) fn wait_line(
    rx: &Receiver<String>,
    timeout: Duration,
    ready: impl Fn(&str) -> bool,
) -> Result<Vec<String>, Vec<String>> {
    let end = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = ready(&l);
                seen.push(l);
                if hit {
                    return Ok(seen);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return Err(seen),
        }
    }
}

/// A process started in the background; killed on drop.
pub struct Bg {
    child: Child,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
}

impl Bg {
    /// Starts `cmd` in namespace `ns` (the root namespace for None), its
    /// stdout and stderr collected.
    pub fn spawn(ns: Option<&str>, cmd: &[&str]) -> Bg {
        let mut child = command(ns, cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", cmd.join(" ")));
        let out = child.stdout.take().map(read_all);
        let err = child.stderr.take().map(read_all);
        Bg { child, out, err }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s) and returns what it printed.
    pub fn stop(mut self) -> Output {
        let _ = terminate(&mut self.child, Signal::SIGTERM, Duration::from_secs(5));
        self.collect()
    }

    /// Waits up to `timeout` for it to exit by itself; then as [`Bg::stop`].
    pub fn wait(mut self, timeout: Duration) -> Output {
        let end = Instant::now() + timeout;
        while Instant::now() < end && self.running() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop()
    }

    fn collect(&mut self) -> Output {
        let status = self.child.wait().expect("waiting for a child");
        Output {
            status,
            stdout: joined(self.out.take()),
            stderr: joined(self.err.take()),
        }
    }
}

/// What a reader thread read; empty if a process the child left behind
/// still holds the pipe open after 2 s (it dies with its namespace).
fn joined(h: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    let Some(h) = h else { return Vec::new() };
    let end = Instant::now() + Duration::from_secs(2);
    while !h.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, Signal::SIGKILL, Duration::from_secs(1));
    }
}

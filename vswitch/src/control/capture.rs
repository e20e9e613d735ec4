//! Captures as the control socket runs them: which ports each one covers,
//! the slot its frames go to, and when its reader last came for them.
//!
//! A reader that goes away (`vsctl capture` killed) leaves its capture
//! behind; one not read for [`IDLE_TIMEOUT`] is ended by the control
//! thread's tick, so a forgotten capture does not keep copying frames.

use crate::capture::{Dir, Want, MAX_SNAP, SLOTS};
use crate::control::switch::{invalid, not_found, Result, Switch, SwitchError};
use crate::dpdk;
use crate::snapshot::Shared;
use crate::wire::filter::Filter;
use api::{CaptureChunk, CaptureDir, CaptureInfo, CapturePort, CapturedFrame};
use base64::Engine;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a capture lives without a read.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames handed out by one read, so that a reply stays a few MB.
const READ_MAX: usize = 2048;

struct Session {
    id: u64,
    serial: u64,
    ports: Vec<CapturePort>,
    last_read: Instant,
}

/// The captures that run, one per slot.
pub struct Desk {
    shared: Arc<Shared>,
    sessions: Mutex<Vec<Option<Session>>>,
    next: Mutex<u64>,
    clock: UnixClock,
}

/// TSC readings as Unix time: a reading and the Unix time at that moment,
/// taken once, and the TSC's rate.
pub struct UnixClock {
    tsc0: u64,
    unix0: u128,
    hz: u64,
}

impl UnixClock {
    pub fn new(tsc_hz: u64) -> UnixClock {
        let unix0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        UnixClock {
            tsc0: dpdk::eal::rdtsc(),
            unix0,
            hz: tsc_hz.max(1),
        }
    }

    /// Nanoseconds since the Unix epoch at TSC reading `tsc`.
    pub fn unix_ns(&self, tsc: u64) -> u64 {
        let since = i128::from(tsc) - i128::from(self.tsc0);
        let ns =
            i128::try_from(self.unix0).unwrap_or(0) + since * 1_000_000_000 / i128::from(self.hz);
        u64::try_from(ns).unwrap_or(0)
    }
}

/// The ports named (a port's name, or a pod as "namespace/name"); every
/// port when none is named.
pub fn resolve(sw: &Switch, names: &[String]) -> Result<Vec<CapturePort>> {
    let ports = sw.list_ports();
    if names.is_empty() {
        return Ok(ports
            .into_iter()
            .map(|p| CapturePort {
                port_id: p.port_id,
                name: p.name,
            })
            .collect());
    }
    let endpoints = sw.endpoints();
    let mut out: Vec<CapturePort> = Vec::new();
    for n in names {
        let name = match ports.iter().find(|p| &p.name == n) {
            Some(p) => p.name.clone(),
            None => match endpoints.iter().find(|e| e.pod.as_ref() == Some(n)) {
                Some(e) => e.port.clone(),
                None => return not_found(format!("no port or pod named '{n}'")),
            },
        };
        let Some(p) = ports.iter().find(|p| p.name == name) else {
            return not_found(format!("pod '{n}' has no port"));
        };
        if !out.iter().any(|c| c.port_id == p.port_id) {
            out.push(CapturePort {
                port_id: p.port_id,
                name,
            });
        }
    }
    Ok(out)
}

impl Desk {
    pub fn new(shared: Arc<Shared>) -> Desk {
        Desk {
            clock: UnixClock::new(shared.tsc_hz),
            shared,
            sessions: Mutex::new((0..SLOTS).map(|_| None).collect()),
            next: Mutex::new(0),
        }
    }

    fn sessions(&self) -> Result<std::sync::MutexGuard<'_, Vec<Option<Session>>>> {
        self.sessions
            .lock()
            .map_err(|_| SwitchError::Internal("capture state poisoned".into()))
    }

    /// Starts a capture of `ports`: arms them once the slot is ready.
    pub fn start(
        &self,
        ports: Vec<CapturePort>,
        filter: Option<&str>,
        snaplen: u32,
    ) -> Result<CaptureInfo> {
        let filter = match filter {
            Some(f) => Filter::parse(f).map_err(|e| SwitchError::Invalid(e.to_string()))?,
            None => Filter::default(),
        };
        if ports.is_empty() {
            return invalid("nothing to capture: the switch has no ports");
        }
        let mut sessions = self.sessions()?;
        for s in sessions.iter().flatten() {
            if let Some(p) = ports
                .iter()
                .find(|p| s.ports.iter().any(|q| q.port_id == p.port_id))
            {
                return Err(SwitchError::Invalid(format!(
                    "port '{}' is captured already (capture {})",
                    p.name, s.id
                )));
            }
        }
        let Some(slot) = sessions.iter().position(Option::is_none) else {
            return Err(SwitchError::Full(format!(
                "{SLOTS} captures run already; stop one first"
            )));
        };
        let id = {
            let mut next = self
                .next
                .lock()
                .map_err(|_| SwitchError::Internal("capture state poisoned".into()))?;
            *next += 1;
            *next
        };
        let caps = &self.shared.captures;
        let snaplen = if snaplen == 0 {
            MAX_SNAP
        } else {
            snaplen.min(MAX_SNAP)
        };
        caps.prepare(
            slot,
            Want {
                serial: id,
                filter,
                snaplen,
            },
        );
        for p in &ports {
            caps.arm(p.port_id, Some(slot));
        }
        tracing::info!(
            "capture {id} of {} started",
            ports
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        sessions[slot] = Some(Session {
            id,
            serial: id,
            ports: ports.clone(),
            last_read: Instant::now(),
        });
        Ok(CaptureInfo {
            id,
            ports,
            idle_timeout: IDLE_TIMEOUT.as_secs() as u32,
        })
    }

    fn find(sessions: &[Option<Session>], id: u64) -> Option<usize> {
        sessions
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.id == id))
    }

    /// The frames capture `id` took since the last read.
    pub fn read(&self, id: u64) -> Result<CaptureChunk> {
        let mut sessions = self.sessions()?;
        let Some(slot) = Self::find(&sessions, id) else {
            return not_found(format!(
                "no capture {id} runs (ended, or not read for {} s)",
                IDLE_TIMEOUT.as_secs()
            ));
        };
        let Some(s) = sessions[slot].as_mut() else {
            return not_found(format!("no capture {id} runs"));
        };
        s.last_read = Instant::now();
        let q = &self.shared.captures.slots[slot];
        let mut frames = Vec::new();
        while frames.len() < READ_MAX {
            let Some(f) = q.frames.pop() else { break };
            // a frame from before this capture, or from a port it left
            if f.serial != s.serial || !s.ports.iter().any(|p| p.port_id == f.port) {
                continue;
            }
            frames.push(CapturedFrame {
                time_ns: self.clock.unix_ns(f.tsc),
                port_id: f.port,
                dir: match f.dir {
                    Dir::In => CaptureDir::In,
                    Dir::Out => CaptureDir::Out,
                },
                len: f.len,
                data: base64::engine::general_purpose::STANDARD.encode(&f.data),
            });
        }
        Ok(CaptureChunk {
            frames,
            dropped: q.dropped.load(Relaxed),
        })
    }

    /// Ends capture `id`; nothing to do when it has ended.
    pub fn stop(&self, id: u64) -> Result<()> {
        let mut sessions = self.sessions()?;
        if let Some(slot) = Self::find(&sessions, id) {
            self.end(&mut sessions, slot, "stopped");
        }
        Ok(())
    }

    /// Ends the captures nobody read for [`IDLE_TIMEOUT`].
    pub fn expire(&self) {
        let Ok(mut sessions) = self.sessions.lock() else {
            return;
        };
        for slot in 0..sessions.len() {
            if sessions[slot]
                .as_ref()
                .is_some_and(|s| s.last_read.elapsed() > IDLE_TIMEOUT)
            {
                self.end(&mut sessions, slot, "ended: not read");
            }
        }
    }

    fn end(&self, sessions: &mut [Option<Session>], slot: usize, why: &str) {
        let Some(s) = sessions[slot].take() else {
            return;
        };
        for p in &s.ports {
            // another capture may have the port by now only if this one
            // no longer did
            if usize::from(self.shared.captures.armed(p.port_id)) == slot + 1 {
                self.shared.captures.arm(p.port_id, None);
            }
        }
        tracing::info!("capture {} {why}", s.id);
    }
}

//! Pushing the document to vswitchd over the control socket.
//!
//! The connection is kept open. A document is sent when it differs from the
//! last one vswitchd took, or in full again after the connection was lost
//! (vswitchd restarted, or went away and came back) or vswitchd's status
//! says it restarted (its generation went backwards). Between pushes a
//! `status` request checks the connection.

use api::{Client, ClientError, Desired, Reply, Request};
use std::path::PathBuf;
use std::time::Duration;

/// What one step of the pusher did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// vswitchd took the document.
    Pushed,
    /// Nothing to send; vswitchd answered.
    Unchanged,
    /// vswitchd cannot be reached (or the connection broke).
    Unreachable(String),
    /// vswitchd refused the document.
    Refused(String),
}

pub struct Pusher {
    socket: PathBuf,
    client: Option<Client>,
    last: Option<Desired>,
    /// vswitchd's generation after our last push or check.
    generation: Option<u64>,
    /// Resyncs after vswitchd was lost or restarted.
    pub resyncs: u64,
}

impl Pusher {
    pub fn new(socket: PathBuf) -> Pusher {
        Pusher {
            socket,
            client: None,
            last: None,
            generation: None,
            resyncs: 0,
        }
    }

    fn forget(&mut self, why: &str) {
        if self.client.is_some() || self.last.is_some() {
            tracing::warn!("vswitchd: {why}: will resync in full");
            self.resyncs += 1;
        }
        self.client = None;
        self.last = None;
        self.generation = None;
    }

    fn status(&mut self) -> Result<u64, ClientError> {
        let c = self.client.as_mut().ok_or(ClientError::Closed)?;
        match c.call(&Request::Status {})? {
            Reply::Status(s) => Ok(s.generation),
            _ => Err(ClientError::Closed),
        }
    }

    /// Sends `doc` if vswitchd does not have it. Blocking.
    pub fn step(&mut self, doc: Option<&Desired>) -> Outcome {
        if self.client.is_none() {
            match Client::connect(&self.socket) {
                Ok(c) => {
                    tracing::info!("vswitchd: connected at {}", self.socket.display());
                    self.client = Some(c);
                }
                Err(e) => return Outcome::Unreachable(e.to_string()),
            }
        }
        let gen = match self.status() {
            Ok(g) => g,
            Err(e) => {
                self.forget(&e.to_string());
                return Outcome::Unreachable(e.to_string());
            }
        };
        if self.generation.is_some_and(|g| gen < g) {
            // a new vswitchd answered on a new connection's first request
            self.forget("restarted (generation went back)");
            return self.step(doc);
        }
        self.generation = Some(gen);
        let Some(doc) = doc else {
            return Outcome::Unchanged;
        };
        if self.last.as_ref() == Some(doc) {
            return Outcome::Unchanged;
        }
        let Some(c) = self.client.as_mut() else {
            return Outcome::Unreachable("not connected".into());
        };
        match c.call(&Request::Apply { doc: doc.clone() }) {
            Ok(_) => {
                self.last = Some(doc.clone());
                self.generation = self.status().ok();
                Outcome::Pushed
            }
            Err(ClientError::Refused { message, .. }) => {
                // sent again when the document changes, or on resync
                self.last = Some(doc.clone());
                Outcome::Refused(message)
            }
            Err(e) => {
                self.forget(&e.to_string());
                Outcome::Unreachable(e.to_string())
            }
        }
    }
}

/// Backoff while vswitchd is away: doubling from 100 ms up to 5 s.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(6)).min(5000))
}

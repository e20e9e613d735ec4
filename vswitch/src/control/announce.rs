//! When a pod taken up again after a start is told of its gateway: the
//! schedule alone, so that it can be tested without a port. The sending is
//! the switch's ([`crate::control::restore`]).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How often, and from when: an answer that comes before the kernel has
/// seen the carrier come back is not taken (measured: at once, no; 50 ms
/// later, yes).
const SCHEDULE: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_millis(600),
];

/// A pod whose gateway entry is announced a few times after a start.
struct Pending {
    port: String,
    mac: [u8; 6],
    ips: Vec<Ipv4Addr>,
    from: Instant,
    sent: usize,
}

/// One announcement that is due: the gateway's entry for `ip`, to the pod
/// with `mac` behind `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Due {
    pub port: String,
    pub mac: [u8; 6],
    pub ips: Vec<Ipv4Addr>,
}

/// The pods still to be told.
#[derive(Default)]
pub(crate) struct Announcements {
    pending: Vec<Pending>,
}

impl Announcements {
    pub(crate) fn add(&mut self, port: &str, mac: [u8; 6], ips: Vec<Ipv4Addr>, now: Instant) {
        self.pending.retain(|p| p.port != port);
        self.pending.push(Pending {
            port: port.to_string(),
            mac,
            ips,
            from: now,
            sent: 0,
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The announcements due at `now`; each is counted as sent, and a pod
    /// told as often as the schedule says is dropped.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Due> {
        let mut out = Vec::new();
        for p in &mut self.pending {
            let Some(&after) = SCHEDULE.get(p.sent) else {
                continue;
            };
            if now.saturating_duration_since(p.from) < after {
                continue;
            }
            p.sent += 1;
            out.push(Due {
                port: p.port.clone(),
                mac: p.mac,
                ips: p.ips.clone(),
            });
        }
        self.pending.retain(|p| p.sent < SCHEDULE.len());
        out
    }

    /// Stops announcing to a port (it is gone).
    pub(crate) fn forget(&mut self, port: &str) {
        self.pending.retain(|p| p.port != port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_then_stops() {
        let t0 = Instant::now();
        let mut a = Announcements::default();
        a.add(
            "p1",
            [2, 0, 0, 0, 0, 1],
            vec![Ipv4Addr::new(10, 0, 0, 1)],
            t0,
        );
        assert!(a.due(t0).is_empty(), "not before the carrier is seen");
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(a.due(at(60)).len(), 1);
        assert!(a.due(at(100)).is_empty());
        assert_eq!(a.due(at(260)).len(), 1);
        assert!(!a.is_empty());
        let last = a.due(at(700));
        assert_eq!(last[0].port, "p1");
        assert_eq!(last[0].ips, vec![Ipv4Addr::new(10, 0, 0, 1)]);
        assert!(a.is_empty());
        assert!(a.due(at(5000)).is_empty());
    }

    #[test]
    fn a_late_housekeeping_sends_one_at_a_time() {
        let t0 = Instant::now();
        let mut a = Announcements::default();
        a.add("p1", [2; 6], vec![], t0);
        a.add("p2", [3; 6], vec![], t0 + Duration::from_millis(500));
        let d = a.due(t0 + Duration::from_secs(1));
        assert_eq!(d.len(), 2);
        a.forget("p2");
        assert_eq!(a.due(t0 + Duration::from_secs(2)).len(), 1);
        assert!(!a.is_empty(), "three times, however late");
        assert_eq!(a.due(t0 + Duration::from_secs(3)).len(), 1);
        assert!(a.is_empty());
    }
}

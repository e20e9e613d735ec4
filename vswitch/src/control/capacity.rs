//! How many pods the switch can hold, and why no more: port ids, file
//! descriptors, and librte_vhost's own bound on vhost-user sockets. A pod
//! holds no packet buffers of its own (TAPs and vhost-user queues are read
//! into the shared pool on demand), so memory does not bound the count.

use api::AttachKind;

/// Descriptors one kernel pod takes: its TAP.
pub const FDS_PER_TAP: u64 = 1;
/// Descriptors one vhost-user pod takes at most: the listening socket, the
/// connection, a kick and a call eventfd per virtqueue (two queue pairs),
/// and the guest's memory regions (a DPDK guest shares one to eight).
pub const FDS_PER_VHOST: u64 = 2 + 2 * 4 + 8;
/// Descriptors kept for everything else (the control socket and its
/// clients, the IPAM store, logs, the EAL's own).
pub const FDS_RESERVED: u64 = 256;
/// librte_vhost watches its sockets in one set of at most 1,024 descriptors
/// (`MAX_FDS` in `lib/vhost/fd_man.h`): a server port's listening socket
/// and its connection.
pub const VHOST_MAX: u32 = 1024 / 2;

/// What the switch can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Ports the switch has ids for.
    pub ports: u32,
    /// The process's descriptor limit (`RLIMIT_NOFILE`, soft).
    pub fds: u64,
}

impl Capacity {
    /// This process's capacity with `ports` ids.
    pub fn of_this_process(ports: u32) -> Capacity {
        Capacity {
            ports,
            fds: nofile().unwrap_or(1024),
        }
    }

    /// Kernel pods alone, and the limit that bounds them.
    pub fn pods_max(&self) -> (u32, String) {
        let by_fds = (self.fds.saturating_sub(FDS_RESERVED) / FDS_PER_TAP).min(u64::from(u32::MAX));
        if u64::from(self.ports) <= by_fds {
            (self.ports, format!("{} port ids", self.ports))
        } else {
            (
                by_fds as u32,
                format!(
                    "the descriptor limit (RLIMIT_NOFILE {}; raise LimitNOFILE or ulimit -n)",
                    self.fds
                ),
            )
        }
    }

    /// Whether one more pod of `kind` fits beside `taps` kernel and
    /// `vhosts` vhost-user pods and `others` other ports; the limit it
    /// would pass, if not.
    pub fn admit(
        &self,
        kind: AttachKind,
        taps: u32,
        vhosts: u32,
        others: u32,
    ) -> Result<(), String> {
        let ports = taps + vhosts + others;
        if ports >= self.ports {
            return Err(format!(
                "the switch holds at most {} ports and has {ports}",
                self.ports
            ));
        }
        let used = FDS_RESERVED + u64::from(taps) * FDS_PER_TAP + u64::from(vhosts) * FDS_PER_VHOST;
        let need = match kind {
            AttachKind::Tap => FDS_PER_TAP,
            AttachKind::Vhost => FDS_PER_VHOST,
        };
        if used + need > self.fds {
            return Err(format!(
                "vswitchd's descriptor limit (RLIMIT_NOFILE {}) is used up by {taps} kernel and \
                 {vhosts} vhost-user pods; raise LimitNOFILE (or ulimit -n) and restart it",
                self.fds
            ));
        }
        if kind == AttachKind::Vhost && vhosts >= VHOST_MAX {
            return Err(format!(
                "the switch holds at most {VHOST_MAX} vhost-user pods (librte_vhost watches \
                 at most 1,024 sockets)"
            ));
        }
        Ok(())
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
fn nofile() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_nofile(&limits)
}

fn parse_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .strip_prefix("Max open files")?
        .split_whitespace()
        .next()?;
    match soft {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_descriptor_limit() {
        let l = "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max cpu time              unlimited            unlimited            seconds\n\
                 Max open files            1024                 524288               files\n";
        assert_eq!(parse_nofile(l), Some(1024));
        assert_eq!(
            parse_nofile(
                "Max open files            unlimited            unlimited            files\n"
            ),
            Some(u64::MAX)
        );
        assert_eq!(parse_nofile("Max processes 5 5 processes\n"), None);
        assert!(nofile().is_some(), "this process has a limit");
    }

    #[test]
    fn the_tighter_limit_bounds_and_is_named() {
        let c = Capacity {
            ports: 4096,
            fds: 1024,
        };
        assert_eq!(c.pods_max().0, 1024 - 256);
        assert!(c.pods_max().1.contains("RLIMIT_NOFILE"));
        let c = Capacity {
            ports: 4096,
            fds: 1 << 20,
        };
        assert_eq!(c.pods_max(), (4096, "4096 port ids".to_owned()));
    }

    #[test]
    fn admission_names_the_limit_it_would_pass() {
        let c = Capacity {
            ports: 10,
            fds: 1 << 20,
        };
        assert!(c.admit(AttachKind::Tap, 8, 0, 1).is_ok());
        let e = c.admit(AttachKind::Tap, 8, 1, 1).unwrap_err();
        assert!(e.contains("at most 10 ports"), "{e}");
        let c = Capacity {
            ports: 4096,
            fds: 256 + 100,
        };
        assert!(c.admit(AttachKind::Tap, 99, 0, 0).is_ok());
        let e = c.admit(AttachKind::Tap, 100, 0, 0).unwrap_err();
        assert!(e.contains("RLIMIT_NOFILE 356"), "{e}");
        let e = c.admit(AttachKind::Vhost, 90, 0, 0).unwrap_err();
        assert!(e.contains("descriptor limit"), "{e}");
        let c = Capacity {
            ports: 4096,
            fds: 1 << 30,
        };
        assert!(c.admit(AttachKind::Vhost, 0, VHOST_MAX - 1, 0).is_ok());
        let e = c.admit(AttachKind::Vhost, 0, VHOST_MAX, 0).unwrap_err();
        assert!(e.contains("vhost-user pods"), "{e}");
    }
}

//! TAP interfaces the switch drives itself, one file descriptor each: a
//! kernel pod's interface without a DPDK ethdev (DPDK's `net_tap` makes one
//! ethdev per TAP, and ethdevs are few).
//!
//! The kernel side is an ordinary TAP device. Frames move with one `read` or
//! `write` per frame, straight into and out of mbufs: a TAP has no batch
//! call (`readv` reads one frame), as with `net_tap`. The descriptor is
//! non-blocking, so an empty TAP costs one failed `read` per poll.
//!
//! A pod's TAP is persistent: its kernel side, with the addresses and routes
//! the pod's namespace gave it, outlives vswitchd, and a restarted vswitchd
//! opens it again by name from inside that namespace. While no descriptor is
//! attached the kernel holds the interface without carrier, so the pod's
//! frames wait in its queue instead of being lost to a missing device.

use crate::dpdk::error::{cstring, Error};
use crate::dpdk::mbuf::{Mbuf, Mempool};
use crate::packet::{Burst, PacketBuf};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// <linux/if_tun.h>
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags, in a
/// union of 24 bytes.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// One TAP interface; its kernel side lives as long as this value.
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates TAP interface `name` in the switch's network namespace (a
    /// pod's interface is moved into the pod's namespace afterwards; the
    /// descriptor stays valid). A `persistent` one outlives the descriptor
    /// (and vswitchd) until [`Tap::remove`].
    pub fn create(name: &str, persistent: bool) -> Result<Tap, Error> {
        let fd = open_tun(name)?;
        if persistent {
            // SAFETY: TUNSETPERSIST takes its flag by value.
            if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
                return Err(Error::os(format!("making TAP {name} persistent")));
            }
        }
        Ok(Tap {
            fd,
            name: name.to_owned(),
        })
    }

    /// Opens the persistent TAP interface `name` that an earlier vswitchd
    /// made, inside the network namespace at `netns` (the switch's own when
    /// `None`): a TUN descriptor belongs to the namespace it was opened in,
    /// so a thread enters the pod's namespace to open it. An error when the
    /// namespace or the interface is gone, or the interface is not a TAP.
    pub fn reopen(name: &str, netns: Option<&std::path::Path>) -> Result<Tap, Error> {
        let fd = match netns {
            None => reopen_here(name)?,
            Some(path) => {
                let ns = std::fs::File::open(path).map_err(|e| {
                    Error::msg(
                        format!("network namespace {}", path.display()),
                        e.to_string(),
                    )
                })?;
                let owned = name.to_owned();
                // the thread ends with the namespace it entered: the switch's
                // own threads never leave theirs
                std::thread::spawn(move || {
                    // SAFETY: a namespace descriptor we hold; setns moves
                    // only the calling thread, which is this short-lived one.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                        return Err(Error::os("entering the pod's network namespace"));
                    }
                    reopen_here(&owned)
                })
                .join()
                .map_err(|_| Error::msg(format!("TAP {name}"), "the opening thread failed"))??
            }
        };
        Ok(Tap {
            fd,
            name: name.to_owned(),
        })
    }

    /// Writes one frame to the kernel outside the workers' bursts (a write
    /// to a TAP is one whole frame, so it does not mix with theirs).
    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: writes frame.len() bytes from a live slice.
        let put = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        usize::try_from(put) == Ok(frame.len())
    }

    /// Removes a persistent interface: it goes when its last descriptor
    /// closes (when the port is dropped).
    pub fn remove(&self) {
        // SAFETY: TUNSETPERSIST takes its flag by value.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), TUNSETPERSIST, 0 as libc::c_ulong) } < 0 {
            tracing::warn!("TAP {}: {}", self.name, std::io::Error::last_os_error());
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads frames the kernel sent into the interface, up to the burst's
    /// free room; appends them to `b` and returns how many.
    #[inline]
    pub fn rx_burst(&self, pool: &Mempool, b: &mut Burst<Mbuf>) -> usize {
        let mut n = 0;
        while !b.is_full() {
            let Some(mut m) = pool.alloc(0) else { break };
            let room = m.tailroom_mut();
            // SAFETY: reads at most room.len() bytes into memory we own.
            let got =
                unsafe { libc::read(self.fd.as_raw_fd(), room.as_mut_ptr().cast(), room.len()) };
            // EAGAIN when empty; any other failure is retried at the next poll
            let Ok(len) = u16::try_from(got) else { break };
            if len == 0 {
                break;
            }
            m.set_len(len);
            b.push(m);
            n += 1;
        }
        n
    }

    /// Writes frames from the front of `b` to the kernel; removes (frees)
    /// those it took and returns how many. It stops at the first the
    /// kernel refuses (its queue is full, or the interface is down).
    #[inline]
    pub fn tx_burst(&self, b: &mut Burst<Mbuf>) -> usize {
        let mut n = 0;
        for m in b.iter() {
            let d = m.data();
            // SAFETY: writes d.len() bytes from a live frame.
            let put = unsafe { libc::write(self.fd.as_raw_fd(), d.as_ptr().cast(), d.len()) };
            if put < 0 {
                break;
            }
            n += 1;
        }
        b.drain(..n);
        n
    }
}

/// Opens `/dev/net/tun` and attaches it to TAP `name` in the calling
/// thread's network namespace, creating the interface if it is not there.
fn open_tun(name: &str) -> Result<OwnedFd, Error> {
    let cname = cstring("interface name", name)?;
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(Error::msg(
            format!("TAP {name}"),
            format!("names are at most {} bytes", libc::IFNAMSIZ - 1),
        ));
    }
    // SAFETY: a NUL-terminated path; the descriptor is owned below.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(Error::os(format!("opening /dev/net/tun for {name}")));
    }
    // SAFETY: open returned a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    for (d, &s) in req.name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads (and writes back) one ifreq, which req is.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) };
    if rc < 0 {
        return Err(Error::os(format!("attaching to TAP {name}")));
    }
    Ok(fd)
}

/// [`open_tun`] for an interface that must exist already: TUNSETIFF would
/// make a new, empty one where the pod's is gone.
fn reopen_here(name: &str) -> Result<OwnedFd, Error> {
    let cname = cstring("interface name", name)?;
    // SAFETY: a NUL-terminated name.
    if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
        return Err(Error::msg(
            format!("TAP {name}"),
            "no such interface in its network namespace",
        ));
    }
    open_tun(name)
}

//! Copies of the frames that pass chosen ports, for `vsctl capture`.
//!
//! A capture arms ports: each port has one byte that names the capture slot
//! it feeds (0: none). A worker reads that byte once per burst received and
//! once per batch sent; when it is 0 that is all a capture costs. An armed
//! port's frames are matched against the slot's filter on the worker and
//! the matching ones copied (cut to the snap length) into the slot's bounded
//! queue; a full queue counts the frame as dropped and the worker goes on.
//! The control thread drains the queue when the capture's reader asks.
//!
//! A frame carries the serial of the capture it was taken for, so that a
//! worker that read a port's byte just before its capture ended cannot slip
//! a frame into the next capture of the same slot.

use crate::packet::PacketBuf;
use crate::wire::filter::Filter;
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// The high bit of a port's byte: the port is traced
/// ([`crate::pipeline::trace`]); the low bits name its capture's slot.
pub const TRACED: u8 = 0x80;

/// Captures that may run at once.
pub const SLOTS: usize = 4;
/// Frames a capture holds before its reader takes them.
pub const QUEUE: usize = 8192;
/// Bytes of a frame kept when the capture asks for whole frames (an mbuf's
/// first segment holds no more).
pub const MAX_SNAP: u32 = 65535;

/// Which way a frame went through its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Received from the port.
    In,
    /// Sent on the port.
    Out,
}

/// One copied frame.
pub struct Frame {
    /// TSC when its burst was received or its batch sent.
    pub tsc: u64,
    pub port: u16,
    pub dir: Dir,
    /// The frame's length; `data` may be shorter.
    pub len: u32,
    /// The capture it was taken for.
    pub serial: u64,
    pub data: Vec<u8>,
}

/// What one slot's capture takes.
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub serial: u64,
    pub filter: Filter,
    /// Bytes kept of each frame.
    pub snaplen: u32,
}

/// One capture's place: its settings and its queue.
pub struct Slot {
    pub want: ArcSwap<Want>,
    pub frames: ArrayQueue<Frame>,
    /// Frames that matched but found the queue full.
    pub dropped: AtomicU64,
}

/// The captures of the switch, shared by the workers and the control thread.
pub struct Captures {
    /// Per port id: the slot it feeds, plus one (0: none).
    armed: Vec<AtomicU8>,
    pub slots: Vec<Slot>,
}

impl Captures {
    pub fn new(ports: usize) -> Captures {
        Captures {
            armed: (0..ports).map(|_| AtomicU8::new(0)).collect(),
            slots: (0..SLOTS)
                .map(|_| Slot {
                    want: ArcSwap::from_pointee(Want::default()),
                    frames: ArrayQueue::new(QUEUE),
                    dropped: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The slot port `port` feeds, plus one; 0 when it is not captured.
    #[inline(always)]
    pub fn armed(&self, port: u16) -> u8 {
        self.armed
            .get(usize::from(port))
            .map_or(0, |a| a.load(Relaxed))
    }

    /// Makes `port` feed `slot` (or nothing).
    /// Feeds `port`'s frames to capture `slot`, or to none; its trace bit
    /// stays as it is.
    pub fn arm(&self, port: u16, slot: Option<usize>) {
        if let Some(a) = self.armed.get(usize::from(port)) {
            a.fetch_and(TRACED, Relaxed);
            a.fetch_or(slot.map_or(0, |s| (s + 1) as u8 & !TRACED), Relaxed);
        }
    }

    /// Marks `port` traced, or not; its capture stays as it is.
    pub fn arm_trace(&self, port: u16, on: bool) {
        if let Some(a) = self.armed.get(usize::from(port)) {
            if on {
                a.fetch_or(TRACED, Relaxed);
            } else {
                a.fetch_and(!TRACED, Relaxed);
            }
        }
    }

    #[cold]
    pub fn offer<P: PacketBuf>(&self, armed: u8, port: u16, dir: Dir, frames: &[P], tsc: u64) {
        let Some(slot) = self.slots.get(usize::from(armed & !TRACED).wrapping_sub(1)) else {
            return;
        };
        let want = slot.want.load();
        for p in frames {
            let data = p.data();
            if !want.filter.matches(data) {
                continue;
            }
            let keep = data.len().min(want.snaplen as usize);
            let frame = Frame {
                tsc,
                port,
                dir,
                len: data.len() as u32,
                serial: want.serial,
                data: data[..keep].to_vec(),
            };
            if slot.frames.push(frame).is_err() {
                slot.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Sets slot `slot` up for a new capture, emptied of an old one's frames.
    pub fn prepare(&self, slot: usize, want: Want) -> Option<&Slot> {
        let s = self.slots.get(slot)?;
        s.want.store(Arc::new(want));
        while s.frames.pop().is_some() {}
        s.dropped.store(0, Relaxed);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::filter::tcp;

    #[test]
    fn offers_keep_what_matches_and_count_overflow() {
        let caps = Captures::new(8);
        assert_eq!(caps.armed(3), 0);
        caps.prepare(
            1,
            Want {
                serial: 7,
                filter: Filter::parse("port 80").expect("filter"),
                snaplen: 20,
            },
        );
        caps.arm(3, Some(1));
        assert_eq!(caps.armed(3), 2);
        let burst = vec![
            tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80),
            tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 22),
        ];
        caps.offer(caps.armed(3), 3, Dir::In, &burst, 42);
        let got = caps.slots[1].frames.pop().expect("one frame kept");
        assert_eq!(
            (got.port, got.dir, got.len, got.serial),
            (3, Dir::In, 54, 7)
        );
        assert_eq!(got.data, burst[0][..20]);
        assert!(caps.slots[1].frames.pop().is_none(), "port 22 was kept");
        for _ in 0..QUEUE + 5 {
            caps.offer(2, 3, Dir::Out, &burst[..1], 43);
        }
        assert_eq!(caps.slots[1].dropped.load(Relaxed), 5);
        caps.arm_trace(3, true);
        assert_eq!(caps.armed(3), TRACED | 2, "a trace leaves the capture be");
        caps.offer(caps.armed(3), 3, Dir::Out, &burst[..1], 44);
        assert_eq!(caps.slots[1].frames.len(), QUEUE, "still fed (and full)");
        caps.arm(3, None);
        assert_eq!(caps.armed(3), TRACED, "a capture's end leaves the trace be");
        caps.offer(caps.armed(3), 3, Dir::Out, &burst[..1], 45);
        assert_eq!(caps.slots[1].dropped.load(Relaxed), 6, "no capture fed");
        caps.arm_trace(3, false);
        assert_eq!(caps.armed(3), 0);
        caps.prepare(1, Want::default());
        assert!(
            caps.slots[1].frames.pop().is_none(),
            "a new capture starts empty"
        );
        assert_eq!(caps.armed(999), 0, "ports beyond the table are never armed");
    }
}

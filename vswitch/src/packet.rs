//! The packet-buffer trait the pipeline is written over.
//!
//! In the daemon a packet is a DPDK mbuf (`dpdk::mbuf::Mbuf`); in unit tests and
//! benches it is a plain byte vector. Either way the pipeline sees the frame's
//! bytes, from the Ethernet header on. Packets travel in bursts: what one
//! poll of a port brings, and what one transmit call takes.

use arrayvec::ArrayVec;

/// Packets handled together.
pub const BURST: usize = 32;

/// Up to [`BURST`] packets.
pub type Burst<P> = ArrayVec<P, BURST>;

/// A frame the pipeline can read, rewrite and duplicate.
pub trait PacketBuf: Sized {
    /// The frame from its first byte (the first segment, which holds every header).
    fn data(&self) -> &[u8];
    /// The same bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Another handle on the same frame for flooding; `None` when it cannot be
    /// had (the flood then goes to fewer ports and counts the rest).
    fn share(&self) -> Option<Self>;
    /// Grows the frame at the front by `n` bytes (for an encapsulation
    /// header) and returns them, to be written; their content is unspecified.
    /// `None`, with the frame unchanged, when there is no room in front.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]>;
    /// Drops `n` bytes from the front of the frame (a decapsulated header).
    /// `false`, with the frame unchanged, when the frame is shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Cuts the frame to its first `len` bytes (a frame turned into a
    /// shorter answer). `false`, with the frame unchanged, when it cannot
    /// be (shared, longer than `len` is not, or held in several segments).
    fn truncate(&mut self, len: usize) -> bool;
}

impl PacketBuf for Vec<u8> {
    fn data(&self) -> &[u8] {
        self
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self
    }
    fn share(&self) -> Option<Self> {
        Some(self.clone())
    }
    // A vector has no headroom: both move the frame, which is fine for tests
    // and benches of the code around them.
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let len = self.len();
        self.resize(len.checked_add(n)?, 0);
        self.copy_within(..len, n);
        Some(&mut self[..n])
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.len() {
            return false;
        }
        self.drain(..n);
        true
    }
    fn truncate(&mut self, len: usize) -> bool {
        if len > self.len() {
            return false;
        }
        Vec::truncate(self, len);
        true
    }
}

/// A frame with room in front, like an mbuf's headroom: for tests and
/// benches of encapsulation, where a plain vector would move the frame.
pub struct Headroom {
    buf: Vec<u8>,
    start: usize,
}

impl Headroom {
    /// `frame` behind `room` free bytes.
    pub fn new(room: usize, frame: &[u8]) -> Headroom {
        let mut buf = vec![0xaa; room];
        buf.extend_from_slice(frame);
        Headroom { buf, start: room }
    }

    /// Free bytes left in front.
    pub fn headroom(&self) -> usize {
        self.start
    }
}

impl PacketBuf for Headroom {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }
    fn share(&self) -> Option<Self> {
        None
    }
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        self.start = self.start.checked_sub(n)?;
        Some(&mut self.buf[self.start..self.start + n])
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.buf.len() - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn truncate(&mut self, len: usize) -> bool {
        if len > self.buf.len() - self.start {
            return false;
        }
        self.buf.truncate(self.start + len);
        true
    }
}

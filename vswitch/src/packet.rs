//! The packet-buffer trait the pipeline is written over.
//!
//! In the daemon a packet is a DPDK mbuf (`dpdk::Mbuf`); in unit tests and
//! benches it is a plain byte vector. Either way the pipeline sees the frame's
//! bytes, from the Ethernet header on.

/// A frame the pipeline can read, rewrite and duplicate.
pub trait PacketBuf: Sized {
    /// The frame from its first byte (the first segment, which holds every header).
    fn data(&self) -> &[u8];
    /// The same bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Another handle on the same frame for flooding; `None` when it cannot be
    /// had (the flood then goes to fewer ports and counts the rest).
    fn share(&self) -> Option<Self>;
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
}

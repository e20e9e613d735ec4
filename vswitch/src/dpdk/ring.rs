//! Rings of mbufs between workers.

use crate::dpdk::eal::socket_id;
use crate::dpdk::error::{cstring, Error};
use crate::dpdk::mbuf::Mbuf;
use crate::packet::Burst;
use dpdk_sys as sys;
use std::ffi::c_void;
use std::ptr::NonNull;

/// A lock-free ring of mbufs: many producers, one consumer.
pub struct MbufRing(NonNull<sys::rte_ring>);

// SAFETY: rte_ring is built for multi-producer use; the single consumer is
// the one worker that owns the port.
unsafe impl Send for MbufRing {}
// SAFETY: as above.
unsafe impl Sync for MbufRing {}

impl MbufRing {
    pub fn new(name: &str, size: u32) -> Result<MbufRing, Error> {
        let cname = cstring("ring name", name)?;
        // SAFETY: valid name; SC_DEQ: only the owning worker dequeues.
        let r =
            unsafe { sys::rte_ring_create(cname.as_ptr(), size, socket_id(), sys::RING_F_SC_DEQ) };
        NonNull::new(r)
            .map(MbufRing)
            .ok_or_else(|| Error::last(format!("ring {name}")))
    }

    /// Moves as many mbufs from the front of `b` into the ring as fit.
    #[inline]
    pub fn enqueue(&self, b: &mut Burst<Mbuf>) -> usize {
        let len = b.len();
        // SAFETY: the ring takes ownership of the first `n` mbufs; we forget them.
        unsafe {
            let p = b.as_mut_ptr();
            let n = sys::rte_ring_mp_enqueue_burst(
                self.0.as_ptr(),
                p.cast::<*mut c_void>(),
                len as u32,
                std::ptr::null_mut(),
            ) as usize;
            std::ptr::copy(p.add(n), p, len - n);
            b.set_len(len - n);
            n
        }
    }

    /// Takes mbufs out of the ring into the burst's free room. Single consumer.
    #[inline]
    pub fn dequeue(&self, b: &mut Burst<Mbuf>) -> usize {
        let have = b.len();
        // SAFETY: at most the spare capacity is written; we own what comes out.
        unsafe {
            let dst = b.as_mut_ptr().add(have).cast::<*mut c_void>();
            let n = sys::rte_ring_sc_dequeue_burst(
                self.0.as_ptr(),
                dst,
                (b.capacity() - have) as u32,
                std::ptr::null_mut(),
            ) as usize;
            b.set_len(have + n);
            n
        }
    }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        let mut b = Burst::new();
        while self.dequeue(&mut b) > 0 {
            b.clear();
        }
        // SAFETY: emptied above; no producer or consumer holds it any more.
        unsafe { sys::rte_ring_free(self.0.as_ptr()) }
    }
}

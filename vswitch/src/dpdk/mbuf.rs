//! Packet buffers: mempools and mbufs, the latter as the pipeline's
//! [`PacketBuf`].

use crate::dpdk::eal::socket_id;
use crate::dpdk::error::{cstring, Error};
use crate::packet::PacketBuf;
use dpdk_sys as sys;
use std::ptr::NonNull;

/// A pool of packet buffers.
pub struct Mempool(NonNull<sys::rte_mempool>);

// SAFETY: a mempool is built for concurrent use from every lcore (per-lcore
// caches plus a lock-free ring).
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

/// Bytes of frame one buffer of the switch's pools holds (one segment:
/// a larger frame cannot be received or built).
pub const FRAME_ROOM: u16 = sys::RTE_MBUF_DEFAULT_DATAROOM as u16;

impl Mempool {
    pub fn pktmbuf(name: &str, n: u32, cache: u32) -> Result<Mempool, Error> {
        let cname = cstring("mempool name", name)?;
        // SAFETY: valid name; the pool is owned by the returned value.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache,
                0,
                sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket_id(),
            )
        };
        NonNull::new(p)
            .map(Mempool)
            .ok_or_else(|| Error::last(format!("mempool {name} of {n} mbufs")))
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.0.as_ptr()
    }

    /// A new one-segment mbuf holding `len` zero bytes, for a frame the
    /// switch makes itself (an ARP request); `None` when the pool is empty.
    pub fn alloc(&self, len: u16) -> Option<Mbuf> {
        // SAFETY: a live pool; the mbuf comes back owned (refcnt 1) or NULL.
        let m = NonNull::new(unsafe { sys::rte_pktmbuf_alloc(self.as_ptr()) })?;
        let mbuf = Mbuf(m);
        // SAFETY: we own the fresh mbuf; append returns NULL, changing
        // nothing, when len does not fit its tailroom.
        let p = unsafe { sys::rte_pktmbuf_append(m.as_ptr(), len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: append made len bytes at p part of the data, ours alone.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0, usize::from(len)) };
        Some(mbuf)
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: dropped only after every port using the pool is closed.
        unsafe { sys::rte_mempool_free(self.as_ptr()) }
    }
}

// ---------------------------------------------------------------- mbuf

/// An owned packet buffer (one reference to a DPDK mbuf).
///
/// `repr(transparent)` over the pointer, so a burst of `Mbuf`s is the
/// `struct rte_mbuf *[]` the PMDs read and write.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf reference moves between lcores; its pool is thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    #[inline(always)]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: we hold a reference to a live mbuf.
        unsafe { self.0.as_ref() }
    }

    /// Segments in the chain (1 for every frame the switch's pools make).
    #[inline(always)]
    pub(crate) fn segments(&self) -> u16 {
        self.raw().nb_segs
    }
}

impl Mbuf {
    /// The first segment from the start of its data to the end of the
    /// buffer: where a frame read from the kernel goes.
    #[inline(always)]
    pub(crate) fn tailroom_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let room = usize::from(m.buf_len).saturating_sub(usize::from(m.data_off));
        // SAFETY: buf_addr + data_off .. buf_addr + buf_len lies inside the
        // buffer; &mut self (a fresh, unshared mbuf) means no other view.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                room,
            )
        }
    }

    /// Makes the first `len` bytes of the tailroom the frame (one segment).
    #[inline(always)]
    pub(crate) fn set_len(&mut self, len: u16) {
        debug_assert!(usize::from(len) <= self.tailroom_mut().len());
        // SAFETY: we own the mbuf; callers pass no more than the tailroom.
        let m = unsafe { self.0.as_mut() };
        m.data_len = len;
        m.pkt_len = u32::from(len);
    }
}

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off starts data_len valid bytes of the first segment.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        debug_assert_eq!(m.refcnt, 1, "writing to a shared mbuf");
        // SAFETY: as in data(); &mut self means no other Rust view of these bytes.
        // A shared mbuf (after share()) must not be written: the L2 path never does.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                usize::from(m.data_len),
            )
        }
    }

    #[inline]
    fn share(&self) -> Option<Mbuf> {
        // SAFETY: bumps the reference count of a live mbuf; each Mbuf handle
        // then frees one reference (the PMD does so after transmit).
        unsafe { sys::rte_mbuf_refcnt_update(self.0.as_ptr(), 1) };
        Some(Mbuf(self.0))
    }

    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        // data_off is in the mbuf every handle shares: moving it would change
        // the frame under the other handles too
        if self.raw().refcnt != 1 {
            return None;
        }
        let n16 = u16::try_from(n).ok()?;
        // SAFETY: we hold the only reference to a live mbuf; DPDK checks the
        // headroom and returns NULL, changing nothing, when n does not fit.
        let p = unsafe { sys::rte_pktmbuf_prepend(self.0.as_ptr(), n16) };
        if p.is_null() {
            return None;
        }
        // SAFETY: p is the new start of the first segment's data, which now
        // holds n more bytes inside the buffer; &mut self means no other view.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) })
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        // as in prepend: the other handles would see the frame shrink
        if self.raw().refcnt != 1 {
            return false;
        }
        let Ok(n16) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we hold the only reference to a live mbuf; DPDK returns NULL,
        // changing nothing, when n exceeds the first segment's data.
        !unsafe { sys::rte_pktmbuf_adj(self.0.as_ptr(), n16) }.is_null()
    }

    #[inline]
    fn truncate(&mut self, len: usize) -> bool {
        let m = self.raw();
        // trim cuts the last segment: only a one-segment frame is cut where
        // data() ends
        if m.refcnt != 1 || m.nb_segs != 1 || len > usize::from(m.data_len) {
            return false;
        }
        let cut = m.data_len - len as u16;
        // SAFETY: we hold the only reference to a live one-segment mbuf and
        // cut no more than its data length.
        unsafe { sys::rte_pktmbuf_trim(self.0.as_ptr(), cut) == 0 }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own one reference; this releases it (the whole chain).
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

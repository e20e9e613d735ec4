//! The safe face of `dpdk-sys`: EAL, mempools, mbufs, ethdev ports, rings.
//!
//! This module and `dpdk-sys` are the only places with `unsafe`. Everything
//! per packet here is plain Rust over the mbuf layout or one FFI call per
//! burst.

use crate::packet::PacketBuf;
use crate::pipeline::Burst;
use dpdk_sys as sys;
use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;

#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct Error {
    what: String,
    reason: String,
}

impl Error {
    fn new(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An error carrying DPDK's `rte_errno` text.
    fn last(what: impl Into<String>) -> Error {
        Error::new(what, last_error())
    }

    /// An error from a negative errno return value.
    fn code(what: impl Into<String>, rc: i32) -> Error {
        Error::new(what, strerror(-rc))
    }
}

fn strerror(errnum: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local string.
    unsafe { CStr::from_ptr(sys::rte_strerror(errnum)) }
        .to_string_lossy()
        .into_owned()
}

fn last_error() -> String {
    // SAFETY: reads this thread's rte_errno through the C shim; returns a static string.
    unsafe { CStr::from_ptr(sys::vsw_strerror_last()) }
        .to_string_lossy()
        .into_owned()
}

fn cstring(what: &str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::new(what, format!("'{s}' contains a NUL byte")))
}

// ---------------------------------------------------------------- EAL

/// Initializes the EAL with `args` (argv[0] included). Once per process.
pub fn eal_init(args: &[String]) -> Result<(), Error> {
    let owned: Vec<CString> = args
        .iter()
        .map(|a| cstring("EAL argument", a))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*mut std::ffi::c_char> =
        owned.iter().map(|a| a.as_ptr().cast_mut()).collect();
    // SAFETY: argv points to NUL-terminated strings that outlive the call; the
    // EAL may permute argv but does not free or keep the strings past init.
    let rc = unsafe { sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
    if rc < 0 {
        return Err(Error::last("rte_eal_init"));
    }
    Ok(())
}

/// Releases the EAL's resources; after this no DPDK call may be made.
pub fn eal_cleanup() {
    // SAFETY: called once at exit, after every worker returned and every port closed.
    unsafe {
        sys::rte_eal_cleanup();
    }
}

pub fn version() -> String {
    // SAFETY: rte_version returns a static string.
    unsafe { CStr::from_ptr(sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}

pub fn tsc_hz() -> u64 {
    // SAFETY: plain read of the EAL's calibrated TSC frequency.
    unsafe { sys::rte_get_tsc_hz() }
}

/// The time-stamp counter, without an FFI call.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the counter through DPDK's inline wrapper.
    unsafe {
        sys::rte_rdtsc()
    }
}

/// A CPU hint for spin loops.
#[inline(always)]
pub fn pause() {
    std::hint::spin_loop();
}

pub fn main_lcore() -> u32 {
    // SAFETY: plain read of EAL configuration after init.
    unsafe { sys::rte_get_main_lcore() }
}

/// Worker lcores (every enabled lcore but the main one), in order.
pub fn worker_lcores() -> Vec<u32> {
    let mut out = Vec::new();
    let mut i: u32 = u32::MAX;
    loop {
        // SAFETY: iterates the EAL's lcore table; -1 as u32 starts the walk.
        i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
        if i >= sys::RTE_MAX_LCORE {
            return out;
        }
        out.push(i);
    }
}

pub fn lcore_cpu(lcore: u32) -> i32 {
    // SAFETY: plain read of the EAL's lcore table.
    unsafe { sys::rte_lcore_to_cpu_id(lcore as i32) }
}

pub fn socket_id() -> i32 {
    // SAFETY: plain read of this thread's NUMA socket.
    unsafe { sys::rte_socket_id() as i32 }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> i32 {
    // SAFETY: `arg` is the Box<Job> leaked by `launch`, handed over exactly once.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    job();
    0
}

/// Runs `f` on worker lcore `lcore`.
pub fn launch(lcore: u32, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    let job: Box<Job> = Box::new(Box::new(f));
    let raw = Box::into_raw(job);
    // SAFETY: the trampoline takes ownership of `raw` when the lcore runs it.
    let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), raw.cast(), lcore) };
    if rc != 0 {
        // SAFETY: the launch failed, so the lcore never saw `raw`: take it back.
        drop(unsafe { Box::from_raw(raw) });
        return Err(Error::code(format!("launch on lcore {lcore}"), rc));
    }
    Ok(())
}

/// Waits for the job on `lcore` to return.
pub fn wait_lcore(lcore: u32) {
    // SAFETY: blocks until the lcore is idle again; valid for any worker lcore.
    unsafe {
        sys::rte_eal_wait_lcore(lcore);
    }
}

// ---------------------------------------------------------------- mempool

/// A pool of packet buffers.
pub struct Mempool(NonNull<sys::rte_mempool>);

// SAFETY: a mempool is built for concurrent use from every lcore (per-lcore
// caches plus a lock-free ring).
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

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

    fn as_ptr(&self) -> *mut sys::rte_mempool {
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

// ---------------------------------------------------------------- ethdev

/// Creates a virtual device (`net_vhost...`, `net_tap...`) and returns its port id.
pub fn vdev_create(name: &str, args: &str) -> Result<u16, Error> {
    let cname = cstring("device name", name)?;
    let cargs = cstring("device arguments", args)?;
    // SAFETY: valid strings; on success the device is registered with ethdev.
    let rc = unsafe { sys::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) };
    if rc != 0 {
        return Err(Error::code(format!("creating {name} ({args})"), rc));
    }
    let mut id = 0u16;
    // SAFETY: valid name and out-pointer.
    let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    if rc != 0 {
        vdev_remove(name);
        return Err(Error::code(format!("finding port of {name}"), rc));
    }
    Ok(id)
}

/// Stops a port and removes its virtual device.
pub fn vdev_remove(name: &str) {
    let Ok(cname) = cstring("device name", name) else {
        return;
    };
    let mut id = 0u16;
    // SAFETY: valid name and out-pointer.
    if unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } == 0 {
        // SAFETY: the port exists; stopping an already stopped port is harmless.
        unsafe { sys::rte_eth_dev_stop(id) };
    }
    // SAFETY: valid name; the driver's remove closes and releases the port.
    let rc = unsafe { sys::rte_vdev_uninit(cname.as_ptr()) };
    if rc != 0 {
        tracing::warn!("removing {name}: {}", strerror(-rc));
    }
}

/// Configures one rx queue and `txqs` tx queues on `port` and starts it.
pub fn port_start(port: u16, pool: &Mempool, txqs: u16, ring: u16) -> Result<(), Error> {
    let conf = sys::rte_eth_conf::default();
    // SAFETY: valid port id and a zeroed (default) configuration.
    let rc = unsafe { sys::rte_eth_dev_configure(port, 1, txqs, &conf) };
    if rc != 0 {
        return Err(Error::code(format!("configuring port {port}"), rc));
    }
    // SAFETY: the port is configured; defaults for the queue conf (null).
    let socket = unsafe { sys::rte_eth_dev_socket_id(port) };
    let socket = if socket < 0 { socket_id() } else { socket } as u32;
    // SAFETY: queue 0 of a configured port; the pool outlives the port.
    let rc = unsafe {
        sys::rte_eth_rx_queue_setup(port, 0, ring, socket, std::ptr::null(), pool.as_ptr())
    };
    if rc != 0 {
        return Err(Error::code(format!("rx queue of port {port}"), rc));
    }
    for q in 0..txqs {
        // SAFETY: queue q < txqs of a configured port.
        let rc = unsafe { sys::rte_eth_tx_queue_setup(port, q, ring, socket, std::ptr::null()) };
        if rc != 0 {
            return Err(Error::code(format!("tx queue {q} of port {port}"), rc));
        }
    }
    // SAFETY: queues are set up.
    let rc = unsafe { sys::rte_eth_dev_start(port) };
    if rc != 0 {
        return Err(Error::code(format!("starting port {port}"), rc));
    }
    Ok(())
}

pub fn link_up(port: u16) -> bool {
    let mut link = sys::rte_eth_link::default();
    // SAFETY: valid out-pointer; does not wait.
    let rc = unsafe { sys::rte_eth_link_get_nowait(port, &mut link) };
    rc == 0 && link.link_status() == 1
}

/// What a port's PMD counted: (rx packets, rx bytes, tx packets, tx bytes).
pub fn port_traffic(port: u16) -> (u64, u64, u64, u64) {
    let mut st = sys::rte_eth_stats::default();
    // SAFETY: valid out-pointer; the PMD reads its own counters.
    let rc = unsafe { sys::rte_eth_stats_get(port, &mut st) };
    if rc != 0 {
        return (0, 0, 0, 0);
    }
    (st.ipackets, st.ibytes, st.opackets, st.obytes)
}

pub fn mac_addr(port: u16) -> [u8; 6] {
    let mut a = sys::rte_ether_addr::default();
    // SAFETY: valid out-pointer.
    unsafe { sys::rte_eth_macaddr_get(port, &mut a) };
    a.addr_bytes
}

/// Receives up to the burst's free room from queue `q` of `port`.
#[inline(always)]
pub fn rx_burst(port: u16, q: u16, b: &mut Burst<Mbuf>) -> usize {
    let have = b.len();
    let room = (b.capacity() - have) as u16;
    // SAFETY: the PMD writes at most `room` mbuf pointers into the burst's spare
    // capacity; Mbuf is a transparent pointer, and we take ownership of each.
    unsafe {
        let dst = b.as_mut_ptr().add(have).cast::<*mut sys::rte_mbuf>();
        let n = usize::from(sys::rte_eth_rx_burst(port, q, dst, room));
        b.set_len(have + n);
        n
    }
}

/// Sends from the front of `b` on queue `q` of `port`; removes what went out.
#[inline(always)]
pub fn tx_burst(port: u16, q: u16, b: &mut Burst<Mbuf>) -> usize {
    let len = b.len();
    // SAFETY: the PMD takes ownership of the first `n` mbufs; we forget them
    // (no Drop) and slide the rest to the front.
    unsafe {
        let p = b.as_mut_ptr();
        let n = usize::from(sys::rte_eth_tx_burst(port, q, p.cast(), len as u16));
        std::ptr::copy(p.add(n), p, len - n);
        b.set_len(len - n);
        n
    }
}

// ---------------------------------------------------------------- ring

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

//! Vhost-user interfaces driven through librte_vhost itself, without an
//! ethdev per interface: the switch holds thousands of pods, and ethdev
//! ports are a scarce, statically sized table (RTE_MAX_ETHPORTS).
//!
//! librte_vhost tells us about a guest through callbacks on its own event
//! thread ("vhost-events"), keyed by a device id (vid) that it reuses once a
//! guest is gone. A port's state is therefore found by socket path (the
//! vhost ifname) in a process-wide registry, and the workers only call into a
//! vid while the callbacks say it is alive: see [`Vring`] for the handshake.

use crate::dpdk::error::{cstring, Error};
use crate::dpdk::mbuf::{Mbuf, Mempool};
use crate::packet::Burst;
use dpdk_sys as sys;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Queue pairs a port can offer; the per-queue state is sized by it.
pub const MAX_QUEUE_PAIRS: u16 = 8;
const MAX_VRINGS: usize = 2 * MAX_QUEUE_PAIRS as usize;

// Feature bits from linux/virtio_net.h (librte_vhost offers them all in
// VIRTIO_NET_SUPPORTED_FEATURES, lib/vhost/vhost.h). bindgen does not see
// them: rte_vhost.h defines only the few it needs itself.
const VIRTIO_NET_F_CSUM: u32 = 0;
const VIRTIO_NET_F_GUEST_CSUM: u32 = 1;
const VIRTIO_NET_F_GSO: u32 = 6;
const VIRTIO_NET_F_GUEST_TSO4: u32 = 7;
const VIRTIO_NET_F_GUEST_TSO6: u32 = 8;
const VIRTIO_NET_F_GUEST_ECN: u32 = 9;
const VIRTIO_NET_F_GUEST_UFO: u32 = 10;
const VIRTIO_NET_F_HOST_TSO4: u32 = 11;
const VIRTIO_NET_F_HOST_TSO6: u32 = 12;
const VIRTIO_NET_F_HOST_ECN: u32 = 13;
const VIRTIO_NET_F_HOST_UFO: u32 = 14;
const VIRTIO_NET_F_MQ: u32 = 22;

/// What we never negotiate: without checksum offload every frame from a
/// guest carries complete checksums, and without segmentation offload every
/// frame fits one mbuf, which is what the pipeline expects of any port.
const NO_OFFLOADS: u64 = (1 << VIRTIO_NET_F_CSUM)
    | (1 << VIRTIO_NET_F_GUEST_CSUM)
    | (1 << VIRTIO_NET_F_GSO)
    | (1 << VIRTIO_NET_F_GUEST_TSO4)
    | (1 << VIRTIO_NET_F_GUEST_TSO6)
    | (1 << VIRTIO_NET_F_GUEST_ECN)
    | (1 << VIRTIO_NET_F_GUEST_UFO)
    | (1 << VIRTIO_NET_F_HOST_TSO4)
    | (1 << VIRTIO_NET_F_HOST_TSO6)
    | (1 << VIRTIO_NET_F_HOST_ECN)
    | (1 << VIRTIO_NET_F_HOST_UFO);

/// One virtqueue as the workers see it.
///
/// The handshake is the net_vhost PMD's `allow_queuing`/`while_queuing`: a
/// worker raises `busy`, then checks `allowed`, calls librte_vhost, and
/// lowers `busy`; `destroy_device` clears `allowed`, then waits for `busy`
/// to drop to zero before it returns and librte_vhost frees the device.
/// Each side writes one location and then reads the other (a store-load
/// pattern), which acquire/release does not order (a store may sit in the
/// store buffer past the following load), so every access is SeqCst: in
/// their single total order either the worker's raise comes first and the
/// destroyer sees it and waits, or the destroyer's clear comes first and
/// the worker sees it and stays out. (The PMD's plain rte_atomic32
/// set/read leaves that window open; we do not copy it.) `busy` counts
/// rather than flags because several workers may send into one vring at
/// once: librte_vhost serialises them on the vring's lock.
///
/// Aligned to a cache line: workers on different queues do not share one.
#[repr(align(64))]
#[derive(Default)]
struct Vring {
    /// The guest has enabled the vring (vring_state_changed).
    enabled: AtomicBool,
    /// Workers may call into the device on this vring: the device is
    /// running, the vring enabled, and within the port's queue pairs.
    allowed: AtomicBool,
    /// Workers inside a librte_vhost call on this vring.
    busy: AtomicU32,
}

/// What the callbacks and the workers share for one port.
struct State {
    path: String,
    max_queue_pairs: u16,
    /// The running guest's device, -1 when none.
    vid: AtomicI32,
    /// new_device seen, destroy_device not since.
    running: AtomicBool,
    vrings: [Vring; MAX_VRINGS],
}

impl State {
    /// Recomputes whether workers may use vring `v`. Does not wait for them
    /// to leave: see `vring_state_changed` for why.
    fn refresh(&self, v: usize) {
        let r = &self.vrings[v];
        let ok = self.running.load(SeqCst)
            && r.enabled.load(SeqCst)
            && v < 2 * usize::from(self.max_queue_pairs);
        r.allowed.store(ok, SeqCst);
    }

    /// Runs `f(vid)` if vring `v` may be used now; the device stays alive
    /// until `f` returns. `None` when it may not.
    #[inline(always)]
    fn with_vring<T>(&self, v: usize, f: impl FnOnce(c_int) -> T) -> Option<T> {
        let r = &self.vrings[v];
        // an idle or unplugged port costs a plain load, not a locked
        // read-modify-write on a line the other workers poll too
        if !r.allowed.load(SeqCst) {
            return None;
        }
        r.busy.fetch_add(1, SeqCst);
        let out = if r.allowed.load(SeqCst) {
            // new_device stores vid before it allows a vring, SeqCst both
            Some(f(self.vid.load(SeqCst)))
        } else {
            None
        };
        r.busy.fetch_sub(1, SeqCst);
        out
    }
}

type Registry = Mutex<HashMap<String, Arc<State>>>;

fn registry() -> MutexGuard<'static, HashMap<String, Arc<State>>> {
    static REG: OnceLock<Registry> = OnceLock::new();
    // a panic elsewhere while holding the lock left the map itself intact
    REG.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The port a device belongs to, by the socket path librte_vhost knows it by.
fn state_of(vid: c_int) -> Option<Arc<State>> {
    // librte_vhost's ifname buffer is PATH_MAX long
    let mut buf = [0 as c_char; 4096];
    // SAFETY: librte_vhost writes at most buf.len() bytes, NUL-terminated,
    // into our buffer; an unknown vid returns -1 and writes nothing.
    let rc = unsafe { sys::rte_vhost_get_ifname(vid, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: c_char and u8 have the same size and alignment; the buffer is ours.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len()) };
    let name = CStr::from_bytes_until_nul(bytes).ok()?.to_str().ok()?;
    registry().get(name).cloned()
}

unsafe extern "C" fn new_device(vid: c_int) -> c_int {
    let Some(st) = state_of(vid) else {
        tracing::warn!("vhost device {vid} on a socket we do not know");
        return -1;
    };
    // A server socket accepts more than one connection; the port has room
    // for one guest, and the second one is refused (librte_vhost keeps it
    // connected but never running).
    let cur = st.vid.load(SeqCst);
    if cur >= 0 && cur != vid {
        tracing::warn!(
            "vhost {}: device {vid} refused, device {cur} is running",
            st.path
        );
        return -1;
    }
    // SAFETY: vid is the device this callback is about, alive during it.
    let vrings = unsafe { sys::rte_vhost_get_vring_num(vid) };
    for i in 0..vrings {
        // We poll: the guest need not kick us after queuing, which spares it a
        // VM exit per burst. Best effort; a vring the guest has not set up
        // yet gets the setting when it is enabled.
        // SAFETY: as above; i < the device's vring count.
        unsafe { sys::rte_vhost_enable_guest_notification(vid, i, 0) };
    }
    st.vid.store(vid, SeqCst);
    st.running.store(true, SeqCst);
    for v in 0..MAX_VRINGS {
        st.refresh(v);
    }
    if usize::from(vrings) > 2 * usize::from(st.max_queue_pairs) {
        tracing::info!(
            "vhost {}: guest has {} vrings, {} queue pairs are polled",
            st.path,
            vrings,
            st.max_queue_pairs
        );
    }
    tracing::info!("vhost {}: device {vid} running", st.path);
    0
}

unsafe extern "C" fn destroy_device(vid: c_int) {
    let Some(st) = state_of(vid) else {
        return;
    };
    if st.vid.load(SeqCst) != vid {
        return;
    }
    for r in &st.vrings {
        r.allowed.store(false, SeqCst);
    }
    // librte_vhost frees the device once we return; no worker may still be
    // inside it. Each is in one burst call, which does not block (dequeue
    // only try-locks, and destroy is called without the vrings' locks held).
    for r in &st.vrings {
        while r.busy.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }
    for r in &st.vrings {
        r.enabled.store(false, SeqCst);
    }
    st.vid.store(-1, SeqCst);
    // last: whoever sees the link down knows no worker is in the device
    st.running.store(false, SeqCst);
    tracing::info!("vhost {}: device {vid} gone", st.path);
}

unsafe extern "C" fn vring_state_changed(vid: c_int, vring: u16, enable: c_int) -> c_int {
    let Some(st) = state_of(vid) else {
        return -1;
    };
    let cur = st.vid.load(SeqCst);
    if cur >= 0 && cur != vid {
        return 0;
    }
    let v = usize::from(vring);
    if v >= MAX_VRINGS {
        if enable != 0 {
            tracing::warn!(
                "vhost {}: guest enabled vring {v}, beyond the {MAX_QUEUE_PAIRS} queue pairs polled",
                st.path
            );
        }
        return 0;
    }
    st.vrings[v].enabled.store(enable != 0, SeqCst);
    // No waiting for workers here, unlike destroy_device: librte_vhost calls
    // this holding every vring's lock, which a worker's enqueue may be
    // spinning on, so waiting would deadlock. Nor is there a need: the
    // device stays alive, and librte_vhost itself checks under that lock
    // that the vring is enabled (the PMD does not wait here either).
    st.refresh(v);
    0
}

/// The callbacks, one table for every port: librte_vhost keeps the pointer.
struct Ops(sys::rte_vhost_device_ops);

// SAFETY: a table of function pointers and a reserved null pointer, never
// written after initialisation.
unsafe impl Sync for Ops {}

static OPS: Ops = Ops(sys::rte_vhost_device_ops {
    new_device: Some(new_device),
    destroy_device: Some(destroy_device),
    vring_state_changed: Some(vring_state_changed),
    features_changed: None,
    new_connection: None,
    destroy_connection: None,
    guest_notified: None,
    reserved: [std::ptr::null_mut()],
});

/// One vhost-user interface: a socket path registered with librte_vhost.
///
/// The receive and transmit calls may come from any thread, several at once
/// (librte_vhost serialises the callers of one vring); they never block.
/// Dropping the port must not happen inside a librte_vhost callback.
pub struct VhostPort {
    path: String,
    cpath: CString,
    state: Arc<State>,
}

impl VhostPort {
    /// Registers `path`. `client == false`: the switch creates the socket and listens (server mode;
    /// the caller has removed any stale file). `client == true`: the switch connects to a socket the
    /// pod listens on and reconnects by itself when the pod restarts (RTE_VHOST_USER_CLIENT;
    /// reconnecting is librte_vhost's default for clients), like OVS's dpdkvhostuserclient. Offers up
    /// to `max_queue_pairs` queue pairs (1..=[`MAX_QUEUE_PAIRS`]).
    pub fn new(path: &str, client: bool, max_queue_pairs: u16) -> Result<VhostPort, Error> {
        let what = || format!("vhost-user port {path}");
        if !(1..=MAX_QUEUE_PAIRS).contains(&max_queue_pairs) {
            return Err(Error::new(
                what(),
                format!("{max_queue_pairs} queue pairs, not 1 to {MAX_QUEUE_PAIRS}"),
            ));
        }
        let cpath = cstring("vhost-user socket path", path)?;
        let state = Arc::new(State {
            path: path.to_owned(),
            max_queue_pairs,
            vid: AtomicI32::new(-1),
            running: AtomicBool::new(false),
            vrings: Default::default(),
        });
        {
            let mut reg = registry();
            if reg.contains_key(path) {
                return Err(Error::new(what(), "already registered"));
            }
            reg.insert(path.to_owned(), state.clone());
        }
        let flags = if client {
            u64::from(sys::RTE_VHOST_USER_CLIENT)
        } else {
            0
        };
        // SAFETY: a valid C string, copied by librte_vhost.
        let rc = unsafe { sys::rte_vhost_driver_register(cpath.as_ptr(), flags) };
        if rc != 0 {
            registry().remove(path);
            return Err(Error::new(
                what(),
                "rte_vhost_driver_register failed (socket path too long, too many sockets, or see the vhost log)",
            ));
        }
        // from here on, Drop unregisters and forgets the state on every way out
        let port = VhostPort {
            path: path.to_owned(),
            cpath,
            state,
        };
        let mut off = NO_OFFLOADS;
        // 22.11 has no rte_vhost_driver_set_max_queue_num: librte_vhost offers
        // its own maximum (128 pairs). A one-pair port at least keeps a
        // multi-queue guest from spreading its traffic over pairs nobody
        // polls, by not offering multi-queue at all.
        if max_queue_pairs == 1 {
            off |= 1 << VIRTIO_NET_F_MQ;
        }
        // SAFETY: a registered path, not started yet (features are fixed at start).
        let rc = unsafe { sys::rte_vhost_driver_disable_features(port.cpath.as_ptr(), off) };
        if rc != 0 {
            return Err(Error::new(what(), "disabling offload features failed"));
        }
        // SAFETY: a registered path; OPS is static, so the pointer librte_vhost
        // keeps stays valid.
        let rc = unsafe { sys::rte_vhost_driver_callback_register(port.cpath.as_ptr(), &OPS.0) };
        if rc != 0 {
            return Err(Error::new(what(), "registering callbacks failed"));
        }
        // SAFETY: a registered path with its callbacks; starts listening or
        // connecting (a client that cannot connect yet retries by itself).
        let rc = unsafe { sys::rte_vhost_driver_start(port.cpath.as_ptr()) };
        if rc != 0 {
            return Err(Error::new(
                what(),
                "rte_vhost_driver_start failed (socket in use, or see the vhost log)",
            ));
        }
        Ok(port)
    }

    /// A guest is connected and its device is running (new_device seen, destroy_device not since).
    pub fn link_up(&self) -> bool {
        self.state.running.load(SeqCst)
    }

    /// Queue pairs the guest has enabled (vring_state_changed), at most the
    /// port's `max_queue_pairs`; 0 when not connected.
    pub fn queue_pairs(&self) -> u16 {
        if !self.link_up() {
            return 0;
        }
        (0..self.state.max_queue_pairs)
            .filter(|&q| {
                let v = 2 * usize::from(q);
                self.state.vrings[v].enabled.load(SeqCst)
                    && self.state.vrings[v + 1].enabled.load(SeqCst)
            })
            .count() as u16
    }

    /// Receives from the guest's TX virtqueue of pair `q` (vring index 2*q+1) up to the burst's free
    /// room, taking mbufs from `pool`; appends to `b`, returns how many. 0 when not connected or the
    /// queue is not enabled.
    ///
    /// A frame that came in several segments is freed here, not counted:
    /// with segmentation offload off a guest sends no frame larger than its
    /// MTU, so only an MTU beyond one mbuf (2034 bytes) makes one, and the
    /// pipeline reads headers from the first segment only. Linearising would
    /// need a larger buffer than the pool has.
    #[inline]
    pub fn rx_burst(&self, q: u16, pool: &Mempool, b: &mut Burst<Mbuf>) -> usize {
        if q >= self.state.max_queue_pairs {
            return 0;
        }
        let have = b.len();
        let room = (b.capacity() - have) as u16;
        if room == 0 {
            return 0;
        }
        let v = 2 * q + 1;
        let n = self
            .state
            .with_vring(usize::from(v), |vid| {
                // SAFETY: the device is alive while with_vring runs us;
                // librte_vhost writes at most `room` mbuf pointers into the
                // burst's spare capacity, each one ours (Mbuf is a
                // transparent pointer).
                unsafe {
                    let dst = b.as_mut_ptr().add(have).cast::<*mut sys::rte_mbuf>();
                    usize::from(sys::rte_vhost_dequeue_burst(
                        vid,
                        v,
                        pool.as_ptr(),
                        dst,
                        room,
                    ))
                }
            })
            .unwrap_or(0);
        // SAFETY: the first `n` slots of the spare capacity were just written.
        unsafe { b.set_len(have + n) };
        if b[have..].iter().any(|m| m.segments() != 1) {
            let mut i = have;
            while i < b.len() {
                if b[i].segments() != 1 {
                    drop(b.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        b.len() - have
    }

    /// Sends from the front of `b` into the guest's RX virtqueue of pair `q` (vring index 2*q):
    /// rte_vhost_enqueue_burst copies, so the mbufs it took are freed here and removed from the front
    /// of `b`; what it did not take stays in `b` (the caller counts and drops it). Returns how many went.
    #[inline]
    pub fn tx_burst(&self, q: u16, b: &mut Burst<Mbuf>) -> usize {
        if q >= self.state.max_queue_pairs || b.is_empty() {
            return 0;
        }
        let v = 2 * q;
        let len = b.len() as u16;
        let n = self
            .state
            .with_vring(usize::from(v), |vid| {
                // SAFETY: the device is alive while with_vring runs us;
                // librte_vhost reads (copies) the first `len` mbufs and keeps
                // no reference to them.
                usize::from(unsafe {
                    sys::rte_vhost_enqueue_burst(vid, v, b.as_mut_ptr().cast(), len)
                })
            })
            .unwrap_or(0);
        // the guest has its copies: our references go back to the pool
        b.drain(..n);
        n
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for VhostPort {
    fn drop(&mut self) {
        // Not under the registry lock: unregistering a connected port runs
        // destroy_device on this thread, which looks the port up. 22.11
        // retries internally while the event thread is busy with one of the
        // socket's descriptors; -1 then only means the path is not registered.
        // SAFETY: a C string; librte_vhost closes the socket and its
        // connections, destroying their devices first.
        let rc = unsafe { sys::rte_vhost_driver_unregister(self.cpath.as_ptr()) };
        if rc != 0 {
            tracing::warn!("vhost {}: unregister failed ({rc})", self.path);
        }
        let mut reg = registry();
        if reg
            .get(&self.path)
            .is_some_and(|s| Arc::ptr_eq(s, &self.state))
        {
            reg.remove(&self.path);
        }
    }
}

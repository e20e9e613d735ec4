//! Ethdev ports: virtual devices, ports of probed (PCI) devices, start,
//! stop and close, link and counters, and the burst receive and transmit
//! calls.

use crate::dpdk::eal::socket_id;
use crate::dpdk::error::{cstring, strerror, Error};
use crate::dpdk::mbuf::{Mbuf, Mempool};
use crate::packet::Burst;
use dpdk_sys as sys;

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

/// The port of a device the EAL probed (a PCI device by its address,
/// `0000:3b:00.0`).
pub fn port_by_name(name: &str) -> Result<u16, Error> {
    let cname = cstring("device name", name)?;
    let mut id = 0u16;
    // SAFETY: valid name and out-pointer.
    let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    if rc != 0 {
        return Err(Error::code(format!("finding port of {name}"), rc));
    }
    Ok(id)
}

/// Stops a port (its queues stay configured).
pub fn port_stop(port: u16) {
    // SAFETY: a port id from port_by_name; stopping a stopped port is harmless.
    let rc = unsafe { sys::rte_eth_dev_stop(port) };
    if rc != 0 {
        tracing::warn!("stopping port {port}: {}", strerror(-rc));
    }
}

/// Stops and closes the port of a probed (not virtual) device: its queues
/// and the PMD's state for it are released; the device stays bound.
pub fn port_close(port: u16) {
    port_stop(port);
    // SAFETY: the port is stopped and no worker polls it any more.
    let rc = unsafe { sys::rte_eth_dev_close(port) };
    if rc != 0 {
        tracing::warn!("closing port {port}: {}", strerror(-rc));
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

//! The EAL: start and stop, lcores and their launch, the TSC clock.

use crate::dpdk::error::{cstring, Error};
use dpdk_sys as sys;
use std::ffi::{c_void, CStr, CString};

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

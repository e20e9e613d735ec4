//! DPDK's failures as errors with their reason, and C strings for its calls.

use dpdk_sys as sys;
use std::ffi::{CStr, CString};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct Error {
    what: String,
    reason: String,
}

impl Error {
    pub(crate) fn new(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An error carrying DPDK's `rte_errno` text.
    pub(crate) fn last(what: impl Into<String>) -> Error {
        Error::new(what, last_error())
    }

    /// An error with a reason of the caller's.
    pub(crate) fn msg(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::new(what, reason)
    }

    /// An error carrying the last system call's `errno`.
    pub(crate) fn os(what: impl Into<String>) -> Error {
        Error::new(what, std::io::Error::last_os_error().to_string())
    }

    /// An error from a negative errno return value.
    pub(crate) fn code(what: impl Into<String>, rc: i32) -> Error {
        Error::new(what, strerror(-rc))
    }
}

pub(crate) fn strerror(errnum: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local string.
    unsafe { CStr::from_ptr(sys::rte_strerror(errnum)) }
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn last_error() -> String {
    // SAFETY: reads this thread's rte_errno through the C shim; returns a static string.
    unsafe { CStr::from_ptr(sys::vsw_strerror_last()) }
        .to_string_lossy()
        .into_owned()
}

pub(crate) fn cstring(what: &str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::new(what, format!("'{s}' contains a NUL byte")))
}

//! CNI error objects and the codes this plugin uses.
//!
//! Every failure is printed on stdout as
//! `{"cniVersion": ..., "code": N, "msg": ..., "details": ...}` and the plugin
//! exits non-zero. Codes 1 to 99 are the spec's; 100 and up are ours:
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 1    | incompatible CNI version (the config's `cniVersion` is not one we speak, or the command needs a later one) |
//! | 2    | unsupported field in the network configuration |
//! | 3    | container unknown or does not exist (CHECK of an attachment the switch does not have) |
//! | 4    | invalid necessary environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`) |
//! | 5    | I/O failure (stdin, the control socket) |
//! | 6    | failed to decode content (stdin is not JSON, a `prevResult` we cannot read) |
//! | 7    | invalid network configuration |
//! | 11   | try again later (vswitchd not running, or busy) |
//! | 50   | STATUS: the plugin is not available (vswitchd unreachable) |
//! | 51   | STATUS: the plugin is not available due to its IPAM plugin |
//! | 100  | no address left in the pools that may serve the pod |
//! | 101  | wiring the pod's network namespace failed |
//! | 102  | vswitchd refused the request (invalid request, unknown pool, ...) |
//! | 103  | vswitchd failed (internal error, or a reply this plugin does not understand) |
//! | 104  | the delegated IPAM plugin could not be run (not in `CNI_PATH`, exec failure, unreadable output) |
//! | 105  | the delegated IPAM plugin's result cannot be used (no IPv4 address, IPv6) |
//! | 106  | CHECK: the pod's interface or the switch's state is not what it should be |

use serde::Serialize;

pub const INCOMPATIBLE_VERSION: u32 = 1;
pub const UNSUPPORTED_FIELD: u32 = 2;
pub const UNKNOWN_CONTAINER: u32 = 3;
pub const INVALID_ENV: u32 = 4;
pub const IO_FAILURE: u32 = 5;
pub const DECODE_FAILURE: u32 = 6;
pub const INVALID_CONFIG: u32 = 7;
pub const TRY_AGAIN_LATER: u32 = 11;
pub const NOT_AVAILABLE: u32 = 50;
pub const IPAM_NOT_AVAILABLE: u32 = 51;
pub const POOL_EXHAUSTED: u32 = 100;
pub const WIRING_FAILED: u32 = 101;
pub const SWITCH_REFUSED: u32 = 102;
pub const SWITCH_FAILED: u32 = 103;
pub const IPAM_EXEC_FAILED: u32 = 104;
pub const IPAM_RESULT_UNUSABLE: u32 = 105;
pub const CHECK_FAILED: u32 = 106;

/// A CNI error: what the runtime gets on stdout when a command fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The same error with `prefix: ` in front of its message.
    pub fn context(mut self, prefix: impl std::fmt::Display) -> CniError {
        self.msg = format!("{prefix}: {}", self.msg);
        self
    }

    /// The error object as the spec shapes it, for the given `cniVersion`.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Obj<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let obj = Obj {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&obj).unwrap_or_else(|_| {
            // serializing plain strings and numbers does not fail; keep a
            // valid object all the same
            format!(
                r#"{{"cniVersion":"{cni_version}","code":{},"msg":"error"}}"#,
                self.code
            )
        })
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

pub type Result<T, E = CniError> = std::result::Result<T, E>;

/// Shorthand for `Err(CniError::new(code, msg))`.
pub fn fail<T>(code: u32, msg: impl Into<String>) -> Result<T> {
    Err(CniError::new(code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_has_the_spec_shape() {
        let e = CniError::new(INVALID_CONFIG, "bad \"name\"").with_details("line 1");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["msg"], "bad \"name\"");
        assert_eq!(v["details"], "line 1");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn empty_details_are_left_out() {
        let e = CniError::new(TRY_AGAIN_LATER, "later");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("0.3.1")).unwrap();
        assert_eq!(v["code"], 11);
        assert!(v.get("details").is_none());
        assert_eq!(e.context("vswitchd").msg, "vswitchd: later");
    }

    #[test]
    fn our_codes_are_100_and_up() {
        for c in [
            POOL_EXHAUSTED,
            WIRING_FAILED,
            SWITCH_REFUSED,
            SWITCH_FAILED,
            IPAM_EXEC_FAILED,
            IPAM_RESULT_UNUSABLE,
            CHECK_FAILED,
        ] {
            assert!(c >= 100);
        }
        for c in [
            INCOMPATIBLE_VERSION,
            UNSUPPORTED_FIELD,
            UNKNOWN_CONTAINER,
            INVALID_ENV,
            IO_FAILURE,
            DECODE_FAILURE,
            INVALID_CONFIG,
            TRY_AGAIN_LATER,
            NOT_AVAILABLE,
            IPAM_NOT_AVAILABLE,
        ] {
            assert!(c < 100);
        }
    }
}

//! CNI spec versions: which ones we speak and what each allows.

use crate::error::{fail, Result, INCOMPATIBLE_VERSION};

/// The versions this plugin answers, oldest first. 0.3.0 and 0.3.1 share one
/// result format; 0.1.0 and 0.2.0 (the `ip4`/`ip6` format) are not spoken.
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version: what VERSION reports and errors use when the config
/// names none we know.
pub const LATEST: &str = "1.1.0";

/// A CNI spec version we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(u8, u8, u8);

impl Version {
    pub const V0_3_0: Version = Version(0, 3, 0);
    pub const V0_3_1: Version = Version(0, 3, 1);
    pub const V0_4_0: Version = Version(0, 4, 0);
    pub const V1_0_0: Version = Version(1, 0, 0);
    pub const V1_1_0: Version = Version(1, 1, 0);

    /// Parses one of [`SUPPORTED`]; anything else is error 1 with the list.
    pub fn parse(s: &str) -> Result<Version> {
        let v = match s {
            "0.3.0" => Version::V0_3_0,
            "0.3.1" => Version::V0_3_1,
            "0.4.0" => Version::V0_4_0,
            "1.0.0" => Version::V1_0_0,
            "1.1.0" => Version::V1_1_0,
            _ => {
                return fail(
                    INCOMPATIBLE_VERSION,
                    format!(
                        "incompatible CNI versions: the network config says cniVersion \"{s}\", \
                         this plugin supports {}",
                        SUPPORTED.join(", ")
                    ),
                )
            }
        };
        Ok(v)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version(0, 3, 0) => "0.3.0",
            Version(0, 3, 1) => "0.3.1",
            Version(0, 4, 0) => "0.4.0",
            Version(1, 0, 0) => "1.0.0",
            _ => "1.1.0",
        }
    }

    /// Results of 0.3.x and 0.4.0 carry `"version": "4"` in each IP entry.
    pub fn ip_has_version_field(self) -> bool {
        self < Version::V1_0_0
    }

    /// 1.1.0 added `mtu`, `socketPath` and `pciID` to interfaces.
    pub fn interface_has_mtu(self) -> bool {
        self >= Version::V1_1_0
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn has_gc_and_status(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What VERSION prints: the requested version if we speak it (else the
/// latest) and every version we support.
pub fn version_info(requested: Option<&str>) -> String {
    let cni_version = requested
        .filter(|r| SUPPORTED.contains(r))
        .unwrap_or(LATEST);
    serde_json::json!({
        "cniVersion": cni_version,
        "supportedVersions": SUPPORTED,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_versions_parse_and_print_back() {
        for s in SUPPORTED {
            assert_eq!(Version::parse(s).unwrap().as_str(), s);
        }
        assert!(Version::V0_3_1 < Version::V0_4_0);
        assert!(Version::V0_4_0 < Version::V1_0_0);
        assert!(Version::V1_0_0 < Version::V1_1_0);
    }

    #[test]
    fn unknown_versions_are_error_1_with_the_list() {
        for bad in ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "", "1.0", "v1.0.0"] {
            let e = Version::parse(bad).unwrap_err();
            assert_eq!(e.code, INCOMPATIBLE_VERSION, "{bad}");
            assert!(e.msg.contains(&format!("\"{bad}\"")), "{}", e.msg);
            assert!(e.msg.contains("1.1.0"), "{}", e.msg);
        }
    }

    #[test]
    fn features_per_version() {
        assert!(Version::V0_3_1.ip_has_version_field());
        assert!(Version::V0_4_0.ip_has_version_field());
        assert!(!Version::V1_0_0.ip_has_version_field());
        assert!(!Version::V0_3_1.has_check());
        assert!(Version::V0_4_0.has_check());
        assert!(!Version::V1_0_0.has_gc_and_status());
        assert!(Version::V1_1_0.has_gc_and_status());
        assert!(!Version::V1_0_0.interface_has_mtu());
        assert!(Version::V1_1_0.interface_has_mtu());
    }

    #[test]
    fn version_info_negotiates() {
        let v: serde_json::Value = serde_json::from_str(&version_info(Some("0.4.0"))).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(
            v["supportedVersions"],
            serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
        let v: serde_json::Value = serde_json::from_str(&version_info(Some("9.9.9"))).unwrap();
        assert_eq!(v["cniVersion"], LATEST);
        let v: serde_json::Value = serde_json::from_str(&version_info(None)).unwrap();
        assert_eq!(v["cniVersion"], LATEST);
    }
}

//! Handle identifiers: the key under which addresses are owned, released and garbage-collected.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::IpamError;

/// Calico names a pod's handle `k8s-pod-network.<containerID>`.
pub const HANDLE_PREFIX: &str = "k8s-pod-network.";

/// Separates the container ID from the interface name. The CNI spec forbids `:` in both a
/// container ID and an interface name, so the split is never ambiguous (a `.` would be: both may
/// contain dots).
const IFNAME_SEPARATOR: char = ':';

/// Who owns an address. One handle per (container, interface), because a pod with two interfaces
/// (Multus, or an extra userspace port) needs two independent ADD/DEL lifecycles, and because the
/// runtime's GC lists attachments as exactly that pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HandleId(String);

impl HandleId {
    /// The handle of a pod attachment. Validated against the CNI spec's rules so that a malformed
    /// `CNI_CONTAINERID`/`CNI_IFNAME` is refused before it can alias another pod's handle.
    pub fn new(container_id: &str, ifname: &str) -> Result<HandleId, IpamError> {
        let bad = |reason: String| Err(IpamError::BadHandle { reason });
        let first_ok = container_id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if !first_ok {
            return bad(format!(
                "container ID {container_id:?} must be non-empty and start with a letter or digit"
            ));
        }
        if let Some(c) = container_id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return bad(format!(
                "container ID {container_id:?} contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
            ));
        }
        if ifname.is_empty() || ifname.len() > 15 || ifname == "." || ifname == ".." {
            return bad(format!(
                "interface name {ifname:?} must be 1 to 15 bytes and not '.' or '..'"
            ));
        }
        if let Some(c) = ifname
            .chars()
            .find(|c| matches!(c, '/' | ':') || c.is_whitespace())
        {
            return bad(format!(
                "interface name {ifname:?} contains {c:?}; '/', ':' and whitespace are not allowed"
            ));
        }
        Ok(HandleId(format!(
            "{HANDLE_PREFIX}{container_id}{IFNAME_SEPARATOR}{ifname}"
        )))
    }

    /// A handle that is not a pod attachment (Calico uses e.g. `ipip-tunnel-addr-<node>` for a
    /// node's tunnel address). Not validated: the caller owns the naming scheme.
    pub fn from_raw(raw: impl Into<String>) -> HandleId {
        HandleId(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The container ID, if this is a pod handle made by [`HandleId::new`].
    pub fn container_id(&self) -> Option<&str> {
        self.pod_parts().map(|(c, _)| c)
    }

    /// The interface name, if this is a pod handle made by [`HandleId::new`].
    pub fn ifname(&self) -> Option<&str> {
        self.pod_parts().map(|(_, i)| i)
    }

    fn pod_parts(&self) -> Option<(&str, &str)> {
        self.0
            .strip_prefix(HANDLE_PREFIX)?
            .split_once(IFNAME_SEPARATOR)
    }
}

impl fmt::Display for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_handle_round_trips_and_is_unambiguous() {
        let h = HandleId::new("a.b", "c").unwrap();
        assert_eq!(h.as_str(), "k8s-pod-network.a.b:c");
        assert_eq!(h.container_id(), Some("a.b"));
        assert_eq!(h.ifname(), Some("c"));
        assert_ne!(h, HandleId::new("a", "b.c").unwrap());
    }

    #[test]
    fn malformed_parts_are_refused() {
        for (cid, ifname) in [
            ("", "eth0"),
            ("-abc", "eth0"),
            ("ab:c", "eth0"),
            ("abc", ""),
            ("abc", "eth0:1"),
            ("abc", "a/b"),
            ("abc", "a b"),
            ("abc", "0123456789abcdef"),
            ("abc", ".."),
        ] {
            let err = HandleId::new(cid, ifname).unwrap_err();
            assert!(
                matches!(err, IpamError::BadHandle { .. }),
                "{cid:?} {ifname:?}"
            );
        }
        assert!(HandleId::new("0123456789abcdef", "eth0").is_ok());
    }

    #[test]
    fn raw_handles_are_not_pod_handles() {
        let h = HandleId::from_raw("ipip-tunnel-addr-node1");
        assert_eq!(h.container_id(), None);
    }
}

//! CNI results: building ours in the version the runtime asked for, merging
//! it into a `prevResult`, and reading results of other plugins (the
//! delegated IPAM plugin's, the `prevResult` CHECK compares against).
//!
//! Results of 0.3.0, 0.3.1 and 0.4.0 carry `"version": "4"` in each IP entry;
//! 1.0.0 dropped it; 1.1.0 added `mtu` and `socketPath` to interfaces. A
//! vhost-user interface reports its `socketPath` in every version (older
//! readers ignore the field) and no `sandbox`, since nothing of it lives in
//! the pod's network namespace: a chained plugin then leaves it alone.

use crate::error::{fail, CniError, Result, DECODE_FAILURE, IPAM_RESULT_UNUSABLE};
use crate::version::Version;
use serde_json::{json, Map, Value};
use std::net::{IpAddr, Ipv4Addr};

/// What one attachment adds to a result.
#[derive(Debug, Clone, PartialEq)]
pub struct PodResult {
    /// The interface name in the pod (`CNI_IFNAME`).
    pub ifname: String,
    pub mac: String,
    /// The netns path (kernel interfaces only).
    pub sandbox: Option<String>,
    pub mtu: u16,
    /// The vhost-user socket (vhost interfaces only).
    pub socket_path: Option<String>,
    /// The pod's addresses, each reported as a /32.
    pub ips: Vec<Ipv4Addr>,
    pub gateway: Ipv4Addr,
    /// DNS settings from a delegated IPAM plugin.
    pub dns: Option<Value>,
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty_value),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Builds the result of an ADD in `version`: ours alone, or `prev` (a
/// `prevResult` of the same version) with our interface, addresses and route
/// appended, as an interface-creating plugin in a chain must do.
pub fn build(version: Version, pod: &PodResult, prev: Option<&Map<String, Value>>) -> Value {
    let mut out = prev.cloned().unwrap_or_default();
    out.insert("cniVersion".into(), json!(version.as_str()));

    let mut ifaces = take_array(&mut out, "interfaces");
    let index = ifaces.len();
    let mut iface = Map::new();
    iface.insert("name".into(), json!(pod.ifname));
    iface.insert("mac".into(), json!(pod.mac));
    if version.interface_has_mtu() {
        iface.insert("mtu".into(), json!(pod.mtu));
    }
    if let Some(sb) = &pod.sandbox {
        iface.insert("sandbox".into(), json!(sb));
    }
    if let Some(sock) = &pod.socket_path {
        iface.insert("socketPath".into(), json!(sock));
    }
    ifaces.push(Value::Object(iface));
    out.insert("interfaces".into(), Value::Array(ifaces));

    let mut ips = take_array(&mut out, "ips");
    for ip in &pod.ips {
        let mut e = Map::new();
        if version.ip_has_version_field() {
            e.insert("version".into(), json!("4"));
        }
        e.insert("interface".into(), json!(index));
        e.insert("address".into(), json!(format!("{ip}/32")));
        e.insert("gateway".into(), json!(pod.gateway.to_string()));
        ips.push(Value::Object(e));
    }
    out.insert("ips".into(), Value::Array(ips));

    let mut routes = take_array(&mut out, "routes");
    let default = json!({"dst": "0.0.0.0/0", "gw": pod.gateway.to_string()});
    let has_default_v4 = routes
        .iter()
        .any(|r| r.get("dst").and_then(Value::as_str) == Some("0.0.0.0/0"));
    if !has_default_v4 {
        routes.push(default);
    }
    out.insert("routes".into(), Value::Array(routes));

    let keep_prev_dns = out.get("dns").is_some_and(|d| !is_empty_value(d));
    if !keep_prev_dns {
        let dns = pod
            .dns
            .clone()
            .filter(|d| d.is_object())
            .unwrap_or_else(|| json!({}));
        out.insert("dns".into(), dns);
    }
    Value::Object(out)
}

/// `out[key]` taken out as a list (empty if absent or not a list); put it back with `insert`.
fn take_array(out: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match out.remove(key) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

/// An IP entry of a result: the address with its prefix and, when given, the
/// index of its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpEntry {
    pub address: IpAddr,
    pub prefix: u8,
    pub interface: Option<usize>,
}

/// Parses `"A.B.C.D/N"` (or an IPv6 CIDR).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// The `ips` of a result (any version we speak).
pub fn ips_of(result: &Map<String, Value>) -> Result<Vec<IpEntry>> {
    let Some(ips) = result.get("ips") else {
        return Ok(Vec::new());
    };
    let Some(ips) = ips.as_array() else {
        return fail(DECODE_FAILURE, "result: ips is not a list");
    };
    ips.iter()
        .map(|e| {
            let addr = e.get("address").and_then(Value::as_str).ok_or_else(|| {
                CniError::new(
                    DECODE_FAILURE,
                    format!("result: IP entry {e} has no address"),
                )
            })?;
            let (address, prefix) = parse_cidr(addr).ok_or_else(|| {
                CniError::new(
                    DECODE_FAILURE,
                    format!("result: \"{addr}\" is not an address with a prefix length"),
                )
            })?;
            let interface = e
                .get("interface")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok());
            Ok(IpEntry {
                address,
                prefix,
                interface,
            })
        })
        .collect()
}

/// The addresses a delegated IPAM plugin handed out: all IPv4 (vswitchd routes
/// IPv4 only), at least one.
pub fn ipam_addresses(result: &Map<String, Value>, plugin: &str) -> Result<Vec<Ipv4Addr>> {
    let entries = ips_of(result).map_err(|e| e.context(format!("IPAM plugin {plugin}")))?;
    let mut v4 = Vec::new();
    for e in entries {
        match e.address {
            IpAddr::V4(a) => v4.push(a),
            IpAddr::V6(a) => {
                return fail(
                    IPAM_RESULT_UNUSABLE,
                    format!(
                        "IPAM plugin {plugin} handed out the IPv6 address {a}: vswitchd routes \
                         IPv4 only, configure an IPv4 range"
                    ),
                )
            }
        }
    }
    if v4.is_empty() {
        return fail(
            IPAM_RESULT_UNUSABLE,
            format!("IPAM plugin {plugin} handed out no IPv4 address"),
        );
    }
    Ok(v4)
}

/// The interface entry of `result` named `ifname` in `sandbox` and its index.
pub fn find_interface<'a>(
    result: &'a Map<String, Value>,
    ifname: &str,
    sandbox: Option<&str>,
) -> Option<(usize, &'a Map<String, Value>)> {
    result
        .get("interfaces")?
        .as_array()?
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_object().map(|o| (i, o)))
        .find(|(_, o)| {
            o.get("name").and_then(Value::as_str) == Some(ifname)
                && match sandbox {
                    Some(sb) => o.get("sandbox").and_then(Value::as_str) == Some(sb),
                    None => true,
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodResult {
        PodResult {
            ifname: "eth0".into(),
            mac: "02:11:22:33:44:55".into(),
            sandbox: Some("/var/run/netns/p1".into()),
            mtu: 1500,
            socket_path: None,
            ips: vec![Ipv4Addr::new(10, 65, 0, 7)],
            gateway: Ipv4Addr::new(169, 254, 1, 1),
            dns: None,
        }
    }

    #[test]
    fn result_1_0_0() {
        let r = build(Version::V1_0_0, &pod(), None);
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "02:11:22:33:44:55", "sandbox": "/var/run/netns/p1"}],
                "ips": [{"interface": 0, "address": "10.65.0.7/32", "gateway": "169.254.1.1"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn result_0_3_1_and_0_4_0_carry_the_ip_version() {
        for v in [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0] {
            let r = build(v, &pod(), None);
            assert_eq!(r["cniVersion"], v.as_str());
            assert_eq!(r["ips"][0]["version"], "4");
            assert_eq!(r["ips"][0]["address"], "10.65.0.7/32");
            assert!(r["interfaces"][0].get("mtu").is_none());
        }
    }

    #[test]
    fn result_1_1_0_has_the_mtu_and_the_socket() {
        let mut p = pod();
        p.sandbox = None;
        p.socket_path = Some("/var/run/vswitch/pods/c1/eth0.sock".into());
        let r = build(Version::V1_1_0, &p, None);
        assert_eq!(r["interfaces"][0]["mtu"], 1500);
        assert_eq!(
            r["interfaces"][0]["socketPath"],
            "/var/run/vswitch/pods/c1/eth0.sock"
        );
        assert!(r["interfaces"][0].get("sandbox").is_none());
        assert!(r["ips"][0].get("version").is_none());
    }

    #[test]
    fn merging_into_a_prev_result() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "sandbox": "/var/run/netns/p1"}, {"name": "net0", "mac": "aa:aa:aa:aa:aa:aa"}],
            "ips": [{"interface": 1, "address": "192.168.5.2/24"}],
            "routes": [{"dst": "192.168.0.0/16"}],
            "dns": {"nameservers": ["10.96.0.10"]},
            "extra": "kept"
        });
        let r = build(Version::V1_0_0, &pod(), prev.as_object());
        assert_eq!(r["interfaces"].as_array().unwrap().len(), 3);
        assert_eq!(r["interfaces"][2]["name"], "eth0");
        assert_eq!(r["ips"][1]["interface"], 2);
        assert_eq!(r["ips"][0]["address"], "192.168.5.2/24");
        assert_eq!(r["routes"][1]["dst"], "0.0.0.0/0");
        assert_eq!(r["dns"]["nameservers"][0], "10.96.0.10");
        assert_eq!(r["extra"], "kept");
        // a chain that routes by default already keeps its route
        let prev =
            json!({"cniVersion": "1.0.0", "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]});
        let r = build(Version::V1_0_0, &pod(), prev.as_object());
        assert_eq!(r["routes"].as_array().unwrap().len(), 1);
        assert_eq!(r["interfaces"][0]["name"], "eth0");
        assert_eq!(r["ips"][0]["interface"], 0);
    }

    #[test]
    fn ipam_dns_is_passed_on() {
        let mut p = pod();
        p.dns = Some(json!({"nameservers": ["10.0.0.53"], "search": ["svc.local"]}));
        let r = build(Version::V1_0_0, &p, None);
        assert_eq!(r["dns"]["search"][0], "svc.local");
    }

    #[test]
    fn reading_ipam_results() {
        let r = json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.2.3/24", "gateway": "10.1.2.1"}], "dns": {}});
        assert_eq!(
            ipam_addresses(r.as_object().unwrap(), "host-local").unwrap(),
            vec![Ipv4Addr::new(10, 1, 2, 3)]
        );
        let r = json!({"cniVersion": "1.0.0", "ips": [{"address": "fd00::5/64"}]});
        let e = ipam_addresses(r.as_object().unwrap(), "host-local").unwrap_err();
        assert_eq!(e.code, IPAM_RESULT_UNUSABLE);
        assert!(e.msg.contains("fd00::5"), "{}", e.msg);
        let r = json!({"cniVersion": "1.0.0", "ips": []});
        assert_eq!(
            ipam_addresses(r.as_object().unwrap(), "x")
                .unwrap_err()
                .code,
            IPAM_RESULT_UNUSABLE
        );
        let r = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3"}]});
        assert_eq!(
            ipam_addresses(r.as_object().unwrap(), "x")
                .unwrap_err()
                .code,
            DECODE_FAILURE
        );
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.1/32"),
            Some((IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 32))
        );
        assert_eq!(parse_cidr("10.0.0.1/33"), None);
        assert_eq!(parse_cidr("10.0.0.1"), None);
        assert!(parse_cidr("fd00::1/128").is_some());
    }

    #[test]
    fn finding_our_interface() {
        let r = build(Version::V1_0_0, &pod(), None);
        let r = r.as_object().unwrap();
        let (i, o) = find_interface(r, "eth0", Some("/var/run/netns/p1")).unwrap();
        assert_eq!(i, 0);
        assert_eq!(o["mac"], "02:11:22:33:44:55");
        assert!(find_interface(r, "eth0", Some("/var/run/netns/other")).is_none());
        assert!(find_interface(r, "eth1", None).is_none());
    }
}

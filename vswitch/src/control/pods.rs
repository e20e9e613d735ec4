//! Pods: attaching a pod's interface (address, port, route) as one step that
//! either happens whole or leaves nothing behind, and the pools it draws from.

use crate::control::sockets::{confined, still_confined};
use crate::control::switch::{invalid, not_found, Origin, Result, Switch, SwitchError};
use ::ipam::{Attributes, FamilyCount, HandleId, Pool, PoolSelection, PoolSpec};
use api::{
    AttachKind, Attachment, BlockInfo, Desired, EndpointSpec, MacAddr, PodAttach, PortKind,
    PortSpec, GATEWAY_IP,
};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// The IPAM attribute that records which CNI network an address serves.
const NETWORK_ATTR: &str = "network";

/// FNV-1a: a stable name for an attachment, the same in every run.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Port name, TAP interface name and MAC of an attachment, derived from its
/// identity so that a repeated ADD lands on the same ones. The interface name
/// follows Calico's `cali` + 11 hex digits pattern.
fn names(container_id: &str, ifname: &str) -> (String, String, MacAddr) {
    let h = fnv(&[container_id, ifname]);
    let hex = format!("{:011x}", h & 0xfff_ffff_ffff);
    let m = fnv(&[ifname, container_id]).to_be_bytes();
    // locally administered unicast
    let mac = MacAddr([0x02, m[1], m[2], m[3], m[4], m[5]]);
    (format!("pod-{hex}"), format!("vsw{hex}"), mac)
}

type SharedIpam = Arc<::ipam::Ipam<Box<dyn ::ipam::Store>>>;

fn lock(sw: &Mutex<Switch>) -> Result<MutexGuard<'_, Switch>> {
    sw.lock()
        .map_err(|_| SwitchError::Internal("internal error: switch state poisoned".into()))
}

/// Addresses for `handle` from our IPAM (the CNI ADD's IPAM step).
fn assign(
    ipam: &SharedIpam,
    node: &str,
    handle: &HandleId,
    req: &PodAttach,
) -> Result<Vec<Ipv4Addr>> {
    let selection = if req.pools.is_empty() {
        PoolSelection::Any
    } else {
        PoolSelection::Named(req.pools.clone())
    };
    let mut attrs = Attributes::new();
    if let Some(pod) = &req.pod {
        attrs.insert("pod".into(), pod.clone());
    }
    if let Some(net) = &req.network {
        attrs.insert(NETWORK_ATTR.into(), net.clone());
    }
    let got = ipam.assign(handle, node, &selection, FamilyCount::V4, &attrs)?;
    Ok(got
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect())
}

/// The calls below take the switch's lock only around their own steps: an
/// IPAM store may be an API server, and one that is slow or down must not
/// hold up other pods' ADDs, queries, or the switch's chores.
impl Switch {
    /// [`Switch::attach`], with the IPAM call made without the switch held.
    pub fn attach_via(sw: &Mutex<Switch>, req: PodAttach) -> Result<Attachment> {
        let handle = HandleId::new(&req.container_id, &req.ifname)?;
        let ipam = {
            let s = lock(sw)?;
            if let Some(a) = s.attached(&req)? {
                return Ok(a);
            }
            req.ips.is_none().then(|| (s.ipam.clone(), s.node.clone()))
        };
        let assigned = match ipam {
            Some((ipam, node)) => Some(assign(&ipam, &node, &handle, &req)?),
            None => None,
        };
        // an ADD of the same pod in between is answered by the check in
        // attach_with; the IPAM gives a handle the same addresses again
        lock(sw)?.attach_with(req, assigned)
    }

    /// [`Switch::detach`], with the addresses freed without the switch held.
    pub fn detach_via(sw: &Mutex<Switch>, container_id: &str, ifname: &str) -> Result<()> {
        let ipam = {
            let mut s = lock(sw)?;
            s.unwire(container_id, ifname)?;
            s.ipam.clone()
        };
        // also frees what a crash between assign and attach left behind
        if let Ok(handle) = HandleId::new(container_id, ifname) {
            ipam.release(&handle)?;
        }
        Ok(())
    }

    /// [`Switch::gc`], with the IPAM's part done without the switch held.
    pub fn gc_via(
        sw: &Mutex<Switch>,
        network: Option<&str>,
        live: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        let (ipam, node, mut out) = {
            let mut s = lock(sw)?;
            let out = s.gc_attachments(network, live)?;
            (s.ipam.clone(), s.node.clone(), out)
        };
        for (c, i) in &out {
            if let Ok(h) = HandleId::new(c, i) {
                ipam.release(&h)?;
            }
        }
        gc_addresses(&ipam, &node, network, live, &mut out)?;
        Ok(out)
    }

    pub fn pool_list_via(sw: &Mutex<Switch>) -> Result<Vec<api::IpPool>> {
        let (ipam, meta) = {
            let s = lock(sw)?;
            (s.ipam.clone(), s.pool_meta.clone())
        };
        pool_list(&ipam, &meta)
    }

    pub fn block_list_via(sw: &Mutex<Switch>) -> Result<Vec<BlockInfo>> {
        let ipam = lock(sw)?.ipam.clone();
        block_list(&ipam)
    }

    /// The attachment `req` asks for, if it is there whole already.
    fn attached(&self, req: &PodAttach) -> Result<Option<Attachment>> {
        let key = (req.container_id.clone(), req.ifname.clone());
        match self.attachments.get(&key) {
            Some(a) if a.kind != req.kind => invalid(format!(
                "{}/{} is attached as {:?} already",
                req.container_id, req.ifname, a.kind
            )),
            // the pod's app listens or connects according to its mode: a port
            // of the other mode would never reach it
            Some(a)
                if a.kind == AttachKind::Vhost
                    && a.effective_vhost_mode() != Some(req.vhost_mode.unwrap_or_default()) =>
            {
                invalid(format!(
                    "{}/{} is attached as a vhost {} already",
                    req.container_id,
                    req.ifname,
                    a.effective_vhost_mode().unwrap_or_default()
                ))
            }
            Some(a) if self.has_port(&a.port) => Ok(Some(a.clone())),
            _ => Ok(None),
        }
    }

    /// Attaches a pod's interface: addresses (ours, or the delegated IPAM's),
    /// a port, and the routed endpoint. On any failure what was done is undone.
    pub fn attach(&mut self, req: PodAttach) -> Result<Attachment> {
        if let Some(a) = self.attached(&req)? {
            return Ok(a);
        }
        let assigned = match req.ips {
            Some(_) => None,
            None => {
                let handle = HandleId::new(&req.container_id, &req.ifname)?;
                Some(assign(&self.ipam, &self.node, &handle, &req)?)
            }
        };
        self.attach_with(req, assigned)
    }

    /// The wiring part of an attach: `assigned` holds the addresses our IPAM
    /// gave (they are released again if the attach fails), `None` when the
    /// request carries a delegated IPAM's.
    fn attach_with(
        &mut self,
        req: PodAttach,
        assigned: Option<Vec<Ipv4Addr>>,
    ) -> Result<Attachment> {
        let handle = HandleId::new(&req.container_id, &req.ifname)?;
        let key = (req.container_id.clone(), req.ifname.clone());
        if let Some(a) = self.attached(&req)? {
            return Ok(a);
        }
        // its port was removed behind its back: make it again (the IPAM
        // hands the handle the same addresses)
        self.attachments.remove(&key);
        let (port, iface, mac) = names(&req.container_id, &req.ifname);
        let ours = assigned.is_some();
        let ips = match (assigned, &req.ips) {
            (Some(ips), _) => ips,
            (None, Some(ips)) if ips.is_empty() => {
                return invalid("delegated IPAM gave no IPv4 address")
            }
            (None, Some(ips)) => ips.clone(),
            (None, None) => return invalid("no addresses for the pod"),
        };
        let undo_ipam = |sw: &Switch| {
            if ours {
                if let Err(e) = sw.ipam.release(&handle) {
                    tracing::error!("releasing {} after a failed attach: {e}", handle.as_str());
                }
            }
        };
        if let Err(e) = self.admit(req.kind) {
            undo_ipam(self);
            return Err(e);
        }
        let spec = match req.kind {
            AttachKind::Tap => PortSpec {
                name: port.clone(),
                kind: PortKind::Tap,
                path: None,
                iface: Some(iface.clone()),
                pci: None,
            },
            AttachKind::Vhost => {
                let dir = req.socket_dir.clone().unwrap_or_else(|| {
                    format!(
                        "{}/pods/{}",
                        self.vhost_socket_root.display(),
                        req.container_id
                    )
                });
                // a CNI config (or a pod's runtime config) names the
                // directory: vswitchd, root, makes and removes files there.
                // In client mode it makes only the directory (a per-container
                // one does not exist until someone makes it, and the pod
                // mounts its parent), but it connects to whatever listens
                // there, so the same bounds hold.
                if let Err(e) = confined(&dir, &self.vhost_socket_root) {
                    undo_ipam(self);
                    return invalid(e);
                }
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    undo_ipam(self);
                    return Err(SwitchError::Internal(format!(
                        "socket directory {dir}: {e}"
                    )));
                }
                if let Err(e) = still_confined(Path::new(&dir), &self.vhost_socket_root) {
                    undo_ipam(self);
                    return invalid(e);
                }
                PortSpec {
                    name: port.clone(),
                    kind: req.vhost_mode.unwrap_or_default().port_kind(),
                    path: Some(format!("{dir}/{}.sock", req.ifname)),
                    iface: None,
                    pci: None,
                }
            }
        };
        let socket = spec.path.clone();
        if let Err(e) = self.add_port_as(spec, Origin::Pod, None, None) {
            undo_ipam(self);
            return Err(e);
        }
        let ep = EndpointSpec {
            port: port.clone(),
            mac,
            ips: ips.clone(),
            pod: req.pod.clone(),
            labels: Default::default(),
            namespace: None,
            service_account: None,
            named_ports: Vec::new(),
        };
        if let Err(e) = self.set_endpoint(ep) {
            let _ = self.del_port(&port);
            undo_ipam(self);
            return Err(e);
        }
        let a = Attachment {
            container_id: req.container_id,
            ifname: req.ifname,
            network: req.network,
            kind: req.kind,
            port,
            iface: (req.kind == AttachKind::Tap).then_some(iface),
            socket,
            vhost_mode: (req.kind == AttachKind::Vhost).then(|| req.vhost_mode.unwrap_or_default()),
            mac,
            ips,
            ipam: ours,
            gateway: GATEWAY_IP,
            mtu: self.pod_mtu(),
            netns: req.netns,
        };
        tracing::info!(
            "attached {}/{} as {}{} with {:?}",
            a.container_id,
            a.ifname,
            a.port,
            a.vhost_mode
                .map(|m| format!(" (vhost {m})"))
                .unwrap_or_default(),
            a.ips
        );
        self.attachments.insert(key, a.clone());
        self.saved.pods_changed();
        Ok(a)
    }

    /// Undoes an attachment; nothing to undo is fine (CNI DEL is idempotent).
    pub fn detach(&mut self, container_id: &str, ifname: &str) -> Result<()> {
        self.unwire(container_id, ifname)?;
        // also frees what a crash between assign and attach left behind
        if let Ok(handle) = HandleId::new(container_id, ifname) {
            self.ipam.release(&handle)?;
        }
        Ok(())
    }

    /// The switch's part of a detach: the port and the attachment.
    fn unwire(&mut self, container_id: &str, ifname: &str) -> Result<()> {
        let key = (container_id.to_owned(), ifname.to_owned());
        if let Some(a) = self.attachments.remove(&key) {
            self.saved.pods_changed();
            if self.has_port(&a.port) {
                self.del_port(&a.port)?;
            }
            if let (AttachKind::Vhost, Some(sock)) = (a.kind, &a.socket) {
                if let Some(dir) = Path::new(sock).parent() {
                    // only if empty: the pod may keep other files there
                    let _ = std::fs::remove_dir(dir);
                }
            }
            tracing::info!("detached {container_id}/{ifname}");
        }
        Ok(())
    }

    /// The attachment, if it and its port are still there.
    pub fn attachment(&self, container_id: &str, ifname: &str) -> Result<Attachment> {
        let key = (container_id.to_owned(), ifname.to_owned());
        let Some(a) = self.attachments.get(&key) else {
            return not_found(format!("no attachment for {container_id}/{ifname}"));
        };
        if !self.has_port(&a.port) {
            return not_found(format!(
                "{container_id}/{ifname}: its port {} was removed",
                a.port
            ));
        }
        Ok(a.clone())
    }

    pub fn attachment_list(&self) -> Vec<Attachment> {
        self.attachments.values().cloned().collect()
    }

    /// Detaches the attachments of `network` (all networks when `None`) that
    /// are not in `live`, and frees that network's addresses whose handles
    /// are gone (also those a crash left without an attachment).
    pub fn gc(
        &mut self,
        network: Option<&str>,
        live: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        let mut out = self.gc_attachments(network, live)?;
        for (c, i) in &out {
            if let Ok(h) = HandleId::new(c, i) {
                self.ipam.release(&h)?;
            }
        }
        gc_addresses(&self.ipam, &self.node, network, live, &mut out)?;
        Ok(out)
    }

    /// Unwires the attachments of `network` that are not in `live`.
    fn gc_attachments(
        &mut self,
        network: Option<&str>,
        live: &[(String, String)],
    ) -> Result<Vec<(String, String)>> {
        let keep: HashSet<&(String, String)> = live.iter().collect();
        let out: Vec<(String, String)> = self
            .attachments
            .iter()
            .filter(|(k, a)| {
                !keep.contains(k) && (network.is_none() || a.network.as_deref() == network)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (c, i) in &out {
            self.unwire(c, i)?;
        }
        Ok(out)
    }

    /// Creates or updates what a document lists (pools, nodes, endpoints):
    /// everything is checked first, and nothing changes unless all of it can.
    pub fn apply(&mut self, doc: Desired) -> Result<()> {
        let mut names = HashSet::new();
        for p in &doc.pools {
            p.validate().map_err(SwitchError::Invalid)?;
            if !names.insert(p.name.as_str()) {
                return invalid(format!("IPPool {} is listed twice", p.name));
            }
        }
        let mut node_names = HashSet::new();
        for n in &doc.nodes {
            n.validate().map_err(SwitchError::Invalid)?;
            if !node_names.insert(n.name.as_str()) {
                return invalid(format!("Node {} is listed twice", n.name));
            }
        }
        self.check_endpoints(&doc.endpoints)?;
        if let Some(svcs) = &doc.services {
            let mut seen = HashSet::new();
            for s in svcs {
                s.validate().map_err(SwitchError::Invalid)?;
                if !seen.insert(s.name.as_str()) {
                    return invalid(format!("Service {} is listed twice", s.name));
                }
            }
        }
        if self.holds_already(&doc) {
            // the node agent sends its whole document again after a restart
            // of either side: nothing to write, nothing to republish
            tracing::debug!("apply: the document changes nothing");
            return Ok(());
        }
        let policy = self.prepare_policy(doc.namespaces, doc.policies, doc.pods)?;
        let mut pools: Vec<Pool> = Vec::new();
        let mut retired: Vec<String> = Vec::new();
        let in_use: HashSet<String> = if doc.prune {
            self.block_list()?.into_iter().map(|b| b.pool).collect()
        } else {
            HashSet::new()
        };
        for p in self.ipam.pools()? {
            if names.contains(p.name()) {
                continue;
            }
            if !doc.prune {
                pools.push(p);
            } else if in_use.contains(p.name()) {
                // gone from the cluster but still holding addresses: no new
                // ones from it, and it goes once its blocks are released
                retired.push(p.name().to_owned());
                pools.push(p.with_disabled(true));
            } else {
                retired.push(p.name().to_owned());
            }
        }
        for p in &doc.pools {
            pools.push(Pool::from_spec(PoolSpec {
                name: p.name.clone(),
                cidr: p.cidr.clone(),
                block_size: p.block_size,
                disabled: p.disabled,
            })?);
        }
        // the one step that can still fail is the IPAM's, and it is atomic
        if self.pools_from_store {
            // the IPAM reads the cluster's IPPools itself, which the document's pools come from
            tracing::debug!(
                "IPAM pools come from its store; {} applied pool(s) kept for routing only",
                doc.pools.len()
            );
        } else if !doc.pools.is_empty() || !retired.is_empty() {
            self.ipam.apply_pools(pools)?;
        }
        for name in retired {
            if in_use.contains(&name) {
                if let Some(m) = self.pool_meta.get_mut(&name) {
                    m.disabled = true;
                }
                tracing::info!("IPPool {name} is gone: disabled until its blocks are released");
            } else {
                self.pool_meta.remove(&name);
                tracing::info!("IPPool {name} removed");
            }
        }
        for p in doc.pools {
            tracing::info!("IPPool {} applied ({})", p.name, p.cidr);
            self.pool_meta.insert(p.name.clone(), p);
        }
        if doc.prune {
            self.nodes
                .retain(|name, _| node_names.contains(name.as_str()));
        }
        for n in doc.nodes {
            self.nodes.insert(n.name.clone(), n);
        }
        if let Some(svcs) = doc.services {
            self.services = svcs.into_iter().map(|s| (s.name.clone(), s)).collect();
        }
        self.saved.cluster_changed();
        if !doc.endpoints.is_empty() {
            self.saved.pods_changed();
        }
        // checked above as a whole: set them together, in one snapshot
        let ports: Vec<String> = doc.endpoints.iter().map(|e| e.port.clone()).collect();
        for ep in doc.endpoints {
            self.endpoints.insert(ep.port.clone(), ep);
        }
        if let Some(p) = policy {
            self.store_policy(p);
        }
        // pools and nodes change the underlay's routes too
        self.publish();
        for p in &ports {
            self.forget_learned(p);
        }
        Ok(())
    }

    /// Whether applying `doc` would leave everything as it is.
    fn holds_already(&self, doc: &Desired) -> bool {
        let same_pools = doc
            .pools
            .iter()
            .all(|p| self.pool_meta.get(&p.name) == Some(p));
        let same_nodes = doc.nodes.iter().all(|n| self.nodes.get(&n.name) == Some(n));
        let same_endpoints = doc
            .endpoints
            .iter()
            .all(|e| self.endpoints.get(&e.port) == Some(e));
        let nothing_pruned = !doc.prune
            || (self
                .pool_meta
                .keys()
                .all(|k| doc.pools.iter().any(|p| &p.name == k))
                && self
                    .nodes
                    .keys()
                    .all(|k| doc.nodes.iter().any(|n| &n.name == k)));
        let same_policy = doc
            .namespaces
            .as_ref()
            .is_none_or(|g| g == &self.policy.namespaces)
            && doc
                .policies
                .as_ref()
                .is_none_or(|g| g == &self.policy.policies)
            && doc.pods.as_ref().is_none_or(|g| g == &self.policy.pods);
        let same_services = doc.services.as_ref().is_none_or(|g| {
            g.len() == self.services.len()
                && g.iter().all(|s| self.services.get(&s.name) == Some(s))
        });
        same_pools && same_nodes && same_endpoints && nothing_pruned && same_policy && same_services
    }

    /// Endpoints a document may set: valid, on existing ports, one each, and
    /// with addresses no other endpoint (in the document or outside it) has.
    pub(crate) fn check_endpoints(&self, eps: &[EndpointSpec]) -> Result<()> {
        let mut ports = HashSet::new();
        let mut owner: std::collections::HashMap<Ipv4Addr, &str> = self
            .endpoints()
            .iter()
            .filter(|e| !eps.iter().any(|d| d.port == e.port))
            .flat_map(|e| e.ips.iter().map(|ip| (*ip, "")).collect::<Vec<_>>())
            .collect();
        for e in eps {
            e.validate().map_err(SwitchError::Invalid)?;
            if !self.has_port(&e.port) {
                return not_found(format!("Endpoint on port {}: no such port", e.port));
            }
            if !ports.insert(e.port.as_str()) {
                return invalid(format!("two Endpoints on port {}", e.port));
            }
            for ip in &e.ips {
                if let Some(other) = owner.insert(*ip, e.port.as_str()) {
                    let who = if other.is_empty() {
                        "another endpoint"
                    } else {
                        other
                    };
                    return invalid(format!("address {ip} of port {} is {who}'s too", e.port));
                }
            }
        }
        Ok(())
    }

    pub fn service_list(&self) -> Vec<api::Service> {
        self.services.values().cloned().collect()
    }

    pub fn node_list(&self) -> Vec<api::Node> {
        self.nodes.values().cloned().collect()
    }

    pub fn pool_list(&self) -> Result<Vec<api::IpPool>> {
        pool_list(&self.ipam, &self.pool_meta)
    }

    pub fn block_list(&self) -> Result<Vec<BlockInfo>> {
        block_list(&self.ipam)
    }
}

/// Frees `network`'s addresses on `node` whose handles are not in `live`
/// (a crash can leave them without an attachment), adding them to `out`.
fn gc_addresses(
    ipam: &SharedIpam,
    node: &str,
    network: Option<&str>,
    live: &[(String, String)],
    out: &mut Vec<(String, String)>,
) -> Result<()> {
    let live_handles: HashSet<HandleId> = live
        .iter()
        .filter_map(|(c, i)| HandleId::new(c, i).ok())
        .collect();
    let snap = ipam.snapshot()?;
    let mut stale: Vec<HandleId> = snap
        .state
        .allocations()
        .filter(|(_, a)| a.node == node && !live_handles.contains(&a.handle))
        .filter(|(_, a)| {
            network.is_none() || a.attributes.get(NETWORK_ATTR).map(String::as_str) == network
        })
        .map(|(_, a)| a.handle.clone())
        .collect();
    stale.sort();
    stale.dedup();
    for h in stale {
        ipam.release(&h)?;
        if let (Some(c), Some(i)) = (h.container_id(), h.ifname()) {
            let k = (c.to_owned(), i.to_owned());
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    Ok(())
}

fn pool_list(
    ipam: &SharedIpam,
    meta: &std::collections::BTreeMap<String, api::IpPool>,
) -> Result<Vec<api::IpPool>> {
    Ok(ipam
        .pools()?
        .into_iter()
        .map(|p| {
            let mut out = meta
                .get(p.name())
                .cloned()
                .unwrap_or_else(|| api::IpPool::new(p.name(), ""));
            out.cidr = p.cidr().to_string();
            out.block_size = Some(p.block_size());
            out.disabled = p.disabled();
            out
        })
        .collect())
}

fn block_list(ipam: &SharedIpam) -> Result<Vec<BlockInfo>> {
    let pools = ipam.pools()?;
    Ok(ipam
        .blocks()?
        .into_iter()
        .map(|b| BlockInfo {
            cidr: b.cidr().to_string(),
            pool: pools
                .iter()
                .find(|p| p.block_of(b.cidr().network()).is_some())
                .map(|p| p.name().to_owned())
                .unwrap_or_default(),
            node: b.affinity().map(str::to_owned),
            allocated: b.allocated() as u64,
            size: u64::from(b.size()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_valid() {
        let (p, i, m) = names("0123456789abcdef", "eth0");
        assert_eq!(names("0123456789abcdef", "eth0"), (p.clone(), i.clone(), m));
        assert_ne!(names("0123456789abcdef", "eth1").1, i);
        assert_eq!(i.len(), 14, "{i}");
        assert!(i.len() <= api::MAX_IFNAME);
        assert!(p.starts_with("pod-"));
        assert!(!m.is_multicast());
        assert_eq!(m.0[0], 0x02);
    }
}

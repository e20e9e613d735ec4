//! Taking up again what an earlier vswitchd left: the records of
//! [`crate::control::persist`] turned back into ports, pods, endpoints and
//! the applied cluster state, before the control socket serves anyone; and
//! the records written after each change that touches them.

use crate::control::persist::{ClusterRecord, PodsRecord, SavedPod, SavedPort, VERSION};
use crate::control::switch::{Origin, Switch};
use crate::dpdk::tap::Tap;
use crate::snapshot::PortIo;
use api::{AttachKind, PortKind, PortSpec};
use std::path::Path;
use std::time::Instant;

/// What a start took up again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub pods: usize,
    /// Pods whose interface could not be had again (their namespace or
    /// interface is gone): their addresses stay held until CNI DEL or GC.
    pub lost: Vec<String>,
    pub ports: usize,
    pub endpoints: usize,
}

impl Switch {
    /// Writes the records that changed since they were last written. A
    /// failure is logged: the switch goes on, and the next change tries
    /// again.
    pub fn save(&mut self) {
        let (pods, cluster) = self.saved.take_dirty();
        if pods {
            let r = self.pods_record();
            if let Err(e) = self.saved.write_pods(&r) {
                self.saved.pods_changed();
                tracing::error!("{e}");
            }
        }
        if cluster {
            let r = self.cluster_record();
            if let Err(e) = self.saved.write_cluster(&r) {
                self.saved.cluster_changed();
                tracing::error!("{e}");
            }
        }
    }

    fn pods_record(&self) -> PodsRecord {
        PodsRecord {
            version: VERSION,
            ports: self
                .ports_from(Origin::Hand)
                .into_iter()
                .map(|(spec, id)| SavedPort { spec, id })
                .collect(),
            pods: self
                .attachments
                .values()
                .filter_map(|a| {
                    Some(SavedPod {
                        id: self.port_id(&a.port)?,
                        attachment: a.clone(),
                    })
                })
                .collect(),
            endpoints: self.endpoints.values().cloned().collect(),
        }
    }

    fn cluster_record(&self) -> ClusterRecord {
        ClusterRecord {
            version: VERSION,
            pools: self.pool_meta.values().cloned().collect(),
            nodes: self.nodes.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
            namespaces: self.policy.namespaces.clone(),
            policies: self.policy.policies.clone(),
            pods: self.policy.pods.clone(),
        }
    }

    /// Takes up the records of the state directory: the cluster state, then
    /// hand-made ports, then pods (each on its old port id), then endpoints.
    /// A record that cannot be read is an error (nothing is guessed); a pod
    /// whose interface is gone is left out and named.
    pub fn restore(&mut self) -> Result<Restored, String> {
        let mut done = Restored::default();
        if let Some(c) = self.saved.load_cluster()? {
            self.restore_cluster(c)?;
        }
        let Some(r) = self.saved.load_pods()? else {
            return Ok(done);
        };
        for SavedPort { spec, id } in r.ports {
            let name = spec.name.clone();
            match self.add_port_as(spec, Origin::Hand, Some(id), None) {
                Ok(_) => done.ports += 1,
                Err(e) => tracing::error!("port {name} of the last run: {e}"),
            }
        }
        for pod in r.pods {
            let who = format!("{}/{}", pod.attachment.container_id, pod.attachment.ifname);
            match self.restore_pod(pod) {
                Ok(()) => done.pods += 1,
                Err(e) => {
                    tracing::warn!("pod {who} of the last run: {e}");
                    done.lost.push(who);
                    self.saved.pods_changed();
                }
            }
        }
        let eps: Vec<_> = r
            .endpoints
            .into_iter()
            .filter(|e| self.has_port(&e.port))
            .collect();
        if let Err(e) = self.check_endpoints(&eps) {
            return Err(format!("endpoints of the last run: {e}"));
        }
        done.endpoints = eps.len();
        for ep in eps {
            self.endpoints.insert(ep.port.clone(), ep);
        }
        self.publish();
        self.save();
        Ok(done)
    }

    /// Sends the announcements that are due (housekeeping calls it).
    pub(crate) fn announce_gateway(&mut self) {
        if self.announce.is_empty() {
            return;
        }
        for due in self.announce.due(Instant::now()) {
            let Some(tap) = self.port_tap(&due.port) else {
                self.announce.forget(&due.port);
                continue;
            };
            for ip in &due.ips {
                let f = crate::pipeline::l3::gateway_announcement(due.mac, ip.octets());
                if !tap.send(&f) {
                    tracing::debug!("announcing the gateway to {}: not taken", due.port);
                }
            }
        }
    }

    fn restore_cluster(&mut self, c: ClusterRecord) -> Result<(), String> {
        self.pool_meta = c.pools.into_iter().map(|p| (p.name.clone(), p)).collect();
        self.nodes = c.nodes.into_iter().map(|n| (n.name.clone(), n)).collect();
        self.services = c
            .services
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let parts = self
            .prepare_policy(Some(c.namespaces), Some(c.policies), Some(c.pods))
            .map_err(|e| format!("policy of the last run: {e}"))?;
        if let Some(p) = parts {
            self.store_policy(p);
        }
        Ok(())
    }

    fn restore_pod(&mut self, pod: SavedPod) -> Result<(), String> {
        let a = pod.attachment;
        let (spec, io) = match a.kind {
            AttachKind::Tap => {
                let iface = a
                    .iface
                    .clone()
                    .ok_or("a TAP attachment without its interface")?;
                let tap = reopen_tap(&iface, &a.ifname, a.netns.as_deref())?;
                let spec = PortSpec {
                    name: a.port.clone(),
                    kind: PortKind::Tap,
                    path: None,
                    iface: Some(iface),
                    pci: None,
                };
                (spec, Some(PortIo::Tap(tap)))
            }
            AttachKind::Vhost => {
                let spec = PortSpec {
                    name: a.port.clone(),
                    kind: a.effective_vhost_mode().unwrap_or_default().port_kind(),
                    path: a.socket.clone(),
                    iface: None,
                    pci: None,
                };
                (spec, None)
            }
        };
        let tap = matches!(io, Some(PortIo::Tap(_)));
        self.add_port_as(spec, Origin::Pod, Some(pod.id), io)
            .map_err(|e| e.to_string())?;
        if tap {
            self.announce
                .add(&a.port, a.mac.0, a.ips.clone(), Instant::now());
        }
        self.attachments
            .insert((a.container_id.clone(), a.ifname.clone()), a);
        Ok(())
    }
}

/// A pod's TAP: named `ifname` in the pod's namespace once the CNI plugin
/// moved it; still `iface` in the switch's own when the last run ended
/// between the attach and the move.
fn reopen_tap(iface: &str, ifname: &str, netns: Option<&str>) -> Result<Tap, String> {
    let in_pod = match netns {
        Some(ns) => match Tap::reopen(ifname, Some(Path::new(ns))) {
            Ok(t) => return Ok(t),
            Err(e) => Some(e),
        },
        None => None,
    };
    match Tap::reopen(iface, None) {
        Ok(t) => Ok(t),
        Err(e) => Err(match in_pod {
            Some(p) => format!("{p}; and {e}"),
            None => e.to_string(),
        }),
    }
}

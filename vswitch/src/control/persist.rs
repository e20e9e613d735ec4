//! What a restarted vswitchd takes up again, kept in the state directory:
//! `pods.json` holds the pods' attachments with the port ids they had, the
//! ports added by hand and the endpoints set on ports; `cluster.json` holds
//! the cluster state last applied (pools, nodes, Services, namespaces,
//! policies, the cluster's pods). Each is written whole and renamed into
//! place, so a crash leaves the old record or the new one, never half.
//!
//! Fields are added with defaults, so an older or newer vswitchd reads what
//! the other wrote; `version` rises only when a record means something else,
//! and a vswitchd refuses a record newer than it knows rather than guess.

use api::policy::{EndpointInfo, NamespaceInfo, Policy};
use api::{Attachment, EndpointSpec, IpPool, Node, PortSpec, Service};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The records' meaning; see the module's note.
pub(crate) const VERSION: u32 = 1;

const PODS: &str = "pods.json";
const CLUSTER: &str = "cluster.json";

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub(crate) struct PodsRecord {
    #[serde(default)]
    pub version: u32,
    /// Ports added through the control socket.
    #[serde(default)]
    pub ports: Vec<SavedPort>,
    #[serde(default)]
    pub pods: Vec<SavedPod>,
    /// Endpoints on ports (pods' and hand-made ones).
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(crate) struct SavedPort {
    pub spec: PortSpec,
    pub id: u16,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(crate) struct SavedPod {
    pub attachment: Attachment,
    /// The port id, which the gateway MAC the pod has cached comes from.
    pub id: u16,
}

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub(crate) struct ClusterRecord {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub pools: Vec<IpPool>,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub namespaces: Vec<NamespaceInfo>,
    #[serde(default)]
    pub policies: Vec<Policy>,
    #[serde(default)]
    pub pods: Vec<EndpointInfo>,
}

/// The two records of one state directory, and which of them changed since
/// they were last written.
pub(crate) struct Saved {
    dir: PathBuf,
    pods_dirty: bool,
    cluster_dirty: bool,
}

impl Saved {
    pub(crate) fn new(dir: &Path) -> Saved {
        Saved {
            dir: dir.to_owned(),
            pods_dirty: false,
            cluster_dirty: false,
        }
    }

    pub(crate) fn pods_changed(&mut self) {
        self.pods_dirty = true;
    }

    pub(crate) fn cluster_changed(&mut self) {
        self.cluster_dirty = true;
    }

    /// Which records need writing, clearing the marks.
    pub(crate) fn take_dirty(&mut self) -> (bool, bool) {
        let d = (self.pods_dirty, self.cluster_dirty);
        self.pods_dirty = false;
        self.cluster_dirty = false;
        d
    }

    pub(crate) fn load_pods(&self) -> Result<Option<PodsRecord>, String> {
        let r: Option<PodsRecord> = load(&self.dir.join(PODS))?;
        check_version(r.as_ref().map(|r| r.version), &self.dir.join(PODS))?;
        Ok(r)
    }

    pub(crate) fn load_cluster(&self) -> Result<Option<ClusterRecord>, String> {
        let r: Option<ClusterRecord> = load(&self.dir.join(CLUSTER))?;
        check_version(r.as_ref().map(|r| r.version), &self.dir.join(CLUSTER))?;
        Ok(r)
    }

    pub(crate) fn write_pods(&self, r: &PodsRecord) -> Result<(), String> {
        store(&self.dir.join(PODS), r)
    }

    pub(crate) fn write_cluster(&self, r: &ClusterRecord) -> Result<(), String> {
        store(&self.dir.join(CLUSTER), r)
    }
}

fn check_version(v: Option<u32>, path: &Path) -> Result<(), String> {
    match v {
        Some(v) if v > VERSION => Err(format!(
            "{}: written by a newer vswitchd (record version {v}; this one knows {VERSION}): \
             run that version, or move the file aside to start without the pods it lists",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// The record at `path`; `None` when there is none yet.
fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        format!(
            "{}: {e} (move the file aside to start without what it lists)",
            path.display()
        )
    })
}

fn store<T: Serialize>(path: &Path, r: &T) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer(&mut f, r)?;
        f.flush()?;
        f.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)?;
        // the rename itself must reach the disk before the reply goes out
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vsw-persist-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_as_written() {
        let d = dir("back");
        let s = Saved::new(&d);
        assert_eq!(s.load_pods(), Ok(None), "nothing yet is not an error");
        let r = PodsRecord {
            version: VERSION,
            ports: vec![SavedPort {
                spec: PortSpec {
                    name: "v0".into(),
                    kind: api::PortKind::VhostClient,
                    path: Some("/run/x.sock".into()),
                    iface: None,
                    pci: None,
                },
                id: 7,
            }],
            pods: Vec::new(),
            endpoints: Vec::new(),
        };
        s.write_pods(&r).unwrap();
        assert_eq!(s.load_pods().unwrap(), Some(r));
        assert!(!d.join("pods.tmp").exists());
        let c = ClusterRecord {
            version: VERSION,
            ..Default::default()
        };
        s.write_cluster(&c).unwrap();
        assert_eq!(s.load_cluster().unwrap(), Some(c));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_newer_or_broken_record_is_refused_by_name() {
        let d = dir("newer");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(PODS), format!("{{\"version\":{}}}", VERSION + 1)).unwrap();
        let e = Saved::new(&d).load_pods().unwrap_err();
        assert!(e.contains("pods.json") && e.contains("newer"), "{e}");
        std::fs::write(d.join(CLUSTER), "{\"pools\":[").unwrap();
        let e = Saved::new(&d).load_cluster().unwrap_err();
        assert!(e.contains("cluster.json") && e.contains("aside"), "{e}");
        // fields this version does not know are left alone
        std::fs::write(d.join(PODS), "{\"version\":1,\"later\":true}").unwrap();
        assert!(Saved::new(&d).load_pods().unwrap().is_some());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn marks_are_taken_once() {
        let mut s = Saved::new(Path::new("/nonexistent"));
        assert_eq!(s.take_dirty(), (false, false));
        s.pods_changed();
        s.cluster_changed();
        assert_eq!(s.take_dirty(), (true, true));
        assert_eq!(s.take_dirty(), (false, false));
    }
}

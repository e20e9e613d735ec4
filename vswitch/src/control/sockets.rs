//! The vhost-user sockets vswitchd made, remembered in the state directory
//! across restarts: a stale socket at a port's path is removed only if it
//! is one of these, never a file another program (or a pod) put there.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) struct MadeSockets {
    file: PathBuf,
    paths: BTreeSet<String>,
}

impl MadeSockets {
    /// The record under `state_dir`; unreadable or absent, it starts empty
    /// (and stale sockets then need removing by hand, which is safe).
    pub(crate) fn open(state_dir: &Path) -> MadeSockets {
        let file = state_dir.join("vhost-sockets");
        let paths = std::fs::read_to_string(&file)
            .map(|s| {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        MadeSockets { file, paths }
    }

    pub(crate) fn made(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    pub(crate) fn add(&mut self, path: &str) {
        if self.paths.insert(path.to_owned()) {
            self.save();
        }
    }

    /// Removes the socket at `path` if vswitchd made it; `false` if it did not.
    pub(crate) fn remove(&mut self, path: &str) -> bool {
        if !self.paths.remove(path) {
            return false;
        }
        let _ = std::fs::remove_file(path);
        self.save();
        true
    }

    // written whole and renamed into place: a crash leaves the old record or
    // the new one, never half of one
    fn save(&self) {
        let tmp = self.file.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&tmp)?;
            for p in &self.paths {
                writeln!(f, "{p}")?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)
        };
        if let Err(e) = write() {
            tracing::warn!("recording vhost sockets in {}: {e}", self.file.display());
        }
    }
}

/// `dir` if it lies inside `root`: absolute, without `..`, and inside
/// `root` once symbolic links are followed (`dir` must exist by then).
pub(crate) fn confined(dir: &str, root: &Path) -> Result<PathBuf, String> {
    let p = Path::new(dir);
    if !p.is_absolute() {
        return Err(format!("socket directory {dir}: must be absolute"));
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("socket directory {dir}: must not contain '..'"));
    }
    let outside = || {
        format!(
            "socket directory {dir} is outside the vhost socket root {} (vswitchd --vhost-socket-root)",
            root.display()
        )
    };
    let real_root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    if !(p.starts_with(root) || p.starts_with(&real_root)) {
        return Err(outside());
    }
    Ok(p.to_owned())
}

/// After the directory exists: it must still be inside the root with
/// symbolic links followed.
pub(crate) fn still_confined(dir: &Path, root: &Path) -> Result<(), String> {
    let real_root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
    match dir.canonicalize() {
        Ok(real) if real.starts_with(&real_root) => Ok(()),
        Ok(real) => Err(format!(
            "socket directory {} leads to {}, outside the vhost socket root {}",
            dir.display(),
            real.display(),
            root.display()
        )),
        Err(e) => Err(format!("socket directory {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dirs_stay_inside_the_root() {
        let root = std::env::temp_dir().join(format!("vsw-root-{}", std::process::id()));
        std::fs::create_dir_all(root.join("pods")).unwrap();
        let r = root.to_string_lossy().into_owned();
        assert!(confined(&format!("{r}/pods/abc"), &root).is_ok());
        assert!(confined("relative/x", &root)
            .unwrap_err()
            .contains("absolute"));
        assert!(confined(&format!("{r}/pods/../../etc"), &root)
            .unwrap_err()
            .contains(".."));
        assert!(confined("/etc/x", &root).unwrap_err().contains("outside"));
        // a link inside the root that leads out of it
        let link = root.join("pods/out");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let l = link.to_string_lossy().into_owned();
        assert!(confined(&l, &root).is_ok(), "lexically inside");
        assert!(still_confined(&link, &root)
            .unwrap_err()
            .contains("outside"));
        assert!(still_confined(&root.join("pods"), &root).is_ok());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn only_recorded_sockets_are_removed_and_the_record_survives() {
        let dir = std::env::temp_dir().join(format!("vsw-made-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ours = dir.join("ours.sock").to_string_lossy().into_owned();
        let theirs = dir.join("theirs.sock").to_string_lossy().into_owned();
        std::fs::write(&ours, "").unwrap();
        std::fs::write(&theirs, "").unwrap();
        let mut m = MadeSockets::open(&dir);
        m.add(&ours);
        // a restart reads the record back
        let mut m = MadeSockets::open(&dir);
        assert!(m.made(&ours));
        assert!(!m.remove(&theirs));
        assert!(Path::new(&theirs).exists(), "not ours: left alone");
        assert!(m.remove(&ours));
        assert!(!Path::new(&ours).exists());
        assert!(!MadeSockets::open(&dir).made(&ours));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The standalone store: the whole state as one JSON file.
//!
//! Crash safety comes from never writing the live file in place: a new version is written to a
//! temporary file in the same directory, fsynced, renamed over the old one (atomic within a
//! filesystem) and the directory is fsynced so the rename itself is durable. A reader therefore
//! sees the old or the new file, never a torn one, whenever a writer dies.
//!
//! Concurrent writers (several CNI invocations, or vswitchd and a CLI) serialize on an exclusive
//! `flock` of a separate lock file held from load to commit. A separate file, because the state
//! file is replaced by rename and a lock on a replaced inode would protect nothing. The kernel
//! drops the lock when its holder dies, so a `kill -9` never leaves the store locked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::error::{CommitError, StoreError};
use crate::pool::Pool;
use crate::state::{State, StateParts};
use crate::store::{Snapshot, Store, Transaction};

/// Version of the on-disk format. Bumped on any change an older build would misread; a build
/// refuses a schema it does not know rather than guessing.
pub const SCHEMA: u64 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    schema: u64,
    revision: u64,
    pools: Vec<Pool>,
    blocks: Vec<Block>,
}

/// Read first, alone, so that a file from a newer build gets a schema error instead of a
/// confusing field error.
#[derive(Deserialize)]
struct Header {
    schema: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    dir: PathBuf,
    /// Name prefix of temporary files, hidden and tied to the state file's name.
    tmp_prefix: String,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

impl FileStore {
    /// Uses `path` for the state and `path` + `.lock` beside it for the lock, creating the
    /// directory if needed. Both files appear with the first write, so a reader without write
    /// access (`vsctl get blocks` as a user) can still load.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let path = path.into();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Err(StoreError::Io {
                op: "use as a state file",
                path,
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a UTF-8 file name"),
            });
        };
        let name = name.to_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(FileStore {
            lock_path: dir.join(format!("{name}.lock")),
            tmp_prefix: format!(".{name}.tmp."),
            path,
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_lock_file(&self) -> Result<File, StoreError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .map_err(io_err("open lock file", &self.lock_path))
    }

    /// Each call opens the lock file anew: `flock` locks belong to an open file description, so
    /// two threads of one process exclude each other only if each has its own.
    fn lock(&self) -> Result<File, StoreError> {
        let file = self.open_lock_file()?;
        loop {
            match flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(file),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io_err("lock", &self.lock_path)(e.into())),
            }
        }
    }

    fn read(&self) -> Result<Snapshot, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Snapshot::default()),
            Err(e) => return Err(io_err("read", &self.path)(e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let header: Header =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        match header.schema {
            Some(SCHEMA) => {}
            Some(found) => {
                return Err(StoreError::Schema {
                    path: self.path.clone(),
                    found,
                    supported: SCHEMA,
                })
            }
            None => return Err(corrupt("no \"schema\" field".into())),
        }
        let doc: FileDoc = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let state = State::from_parts(StateParts {
            pools: doc.pools,
            blocks: doc.blocks,
        })
        .map_err(corrupt)?;
        Ok(Snapshot {
            revision: doc.revision,
            state,
        })
    }

    /// Must be called with the lock held: it also deletes temporary files, which are then known
    /// to be leftovers of a writer that died.
    fn write(&self, revision: u64, state: &State) -> Result<(), StoreError> {
        self.remove_stale_temps()?;
        let parts = state.to_parts();
        let doc = FileDoc {
            schema: SCHEMA,
            revision,
            pools: parts.pools,
            blocks: parts.blocks,
        };
        let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::Io {
            op: "serialize",
            path: self.path.clone(),
            source: e.into(),
        })?;
        bytes.push(b'\n');

        let tmp = self
            .dir
            .join(format!("{}{}", self.tmp_prefix, std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io_err("rename into place", &self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", &self.dir))?;
        Ok(())
    }

    fn remove_stale_temps(&self) -> Result<(), StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&self.tmp_prefix))
            {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove stale temporary", &entry.path())(e)),
                }
            }
        }
        Ok(())
    }
}

impl Store for FileStore {
    /// Without the lock: the rename makes every read see one whole version.
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.read()
    }

    fn commit(&self, expected_revision: u64, new: &State) -> Result<u64, CommitError> {
        let _lock = self.lock()?;
        let found = self.read()?.revision;
        if found != expected_revision {
            return Err(CommitError::Conflict {
                expected: expected_revision,
                found,
            });
        }
        self.write(found + 1, new)?;
        Ok(found + 1)
    }

    /// Holds the lock until the transaction is committed or dropped, so concurrent writers
    /// queue instead of failing.
    fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let lock = self.lock()?;
        let snapshot = self.read()?;
        Ok(Box::new(FileTxn {
            store: self,
            _lock: lock,
            snapshot,
        }))
    }
}

struct FileTxn<'a> {
    store: &'a FileStore,
    /// Closing it releases the `flock`.
    _lock: File,
    snapshot: Snapshot,
}

impl Transaction for FileTxn<'_> {
    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn commit(self: Box<Self>, new: &State) -> Result<u64, CommitError> {
        let revision = self.snapshot.revision + 1;
        self.store.write(revision, new)?;
        Ok(revision)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::pool::Pool;

    fn state_with_pool() -> State {
        State::from_parts(StateParts {
            pools: vec![Pool::new("p", "10.0.0.0/24", None).unwrap()],
            blocks: vec![],
        })
        .unwrap()
    }

    #[test]
    fn missing_file_is_an_empty_state_and_commits_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("sub/ipam.json")).unwrap();
        assert_eq!(store.load().unwrap(), Snapshot::default());
        let s = state_with_pool();
        assert_eq!(store.commit(0, &s).unwrap(), 1);
        let snap = store.load().unwrap();
        assert_eq!((snap.revision, &snap.state), (1, &s));
        let text = fs::read_to_string(store.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["revision"], 1);
        assert_eq!(v["pools"][0]["cidr"], "10.0.0.0/24");
        assert!(matches!(
            store.commit(0, &s),
            Err(CommitError::Conflict {
                expected: 0,
                found: 1
            })
        ));
    }

    #[test]
    fn unknown_schema_and_damage_are_reported_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let store = FileStore::open(&path).unwrap();
        let cases = [
            (
                r#"{"schema":2,"revision":1,"pools":[],"blocks":[]}"#,
                "schema 2",
            ),
            (r#"{"schema":1,"revision":1,"pools":[],"bl"#, "damaged"),
            (r#"{"revision":1,"pools":[],"blocks":[]}"#, "no \"schema\""),
            (
                r#"{"schema":1,"revision":1,"pools":[],"blocks":[{"cidr":"10.0.0.0/26"}]}"#,
                "lies in no pool",
            ),
        ];
        for (text, want) in cases {
            fs::write(&path, text).unwrap();
            let err = store.load().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert!(store.begin().is_err());
            assert!(store.commit(1, &State::default()).is_err());
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn leftover_temporaries_are_ignored_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("ipam.json")).unwrap();
        store.commit(0, &state_with_pool()).unwrap();
        let junk = dir.path().join(".ipam.json.tmp.99999");
        fs::write(&junk, "{\"schema\":1,\"revis").unwrap();
        assert_eq!(store.load().unwrap().revision, 1);
        store.commit(1, &State::default()).unwrap();
        assert!(!junk.exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["ipam.json", "ipam.json.lock"]);
    }

    #[test]
    fn a_transaction_holds_off_other_writers_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileStore::open(dir.path().join("ipam.json")).unwrap());
        let tx = store.begin().unwrap();
        let entered = Arc::new(AtomicBool::new(false));
        let t = {
            let (store, entered) = (store.clone(), entered.clone());
            std::thread::spawn(move || {
                let tx = store.begin().unwrap();
                entered.store(true, Ordering::SeqCst);
                tx.snapshot().revision
            })
        };
        std::thread::sleep(Duration::from_millis(150));
        assert!(!entered.load(Ordering::SeqCst), "second writer got in");
        assert_eq!(tx.commit(&state_with_pool()).unwrap(), 1);
        // The waiting writer sees the committed revision, not the one from before it queued.
        assert_eq!(t.join().unwrap(), 1);
    }
}

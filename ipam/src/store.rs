//! Where the state lives. The engine only needs "read the state with its revision" and "replace
//! it if the revision is still the same" (compare-and-swap), which a file, a database or the
//! Kubernetes API (`resourceVersion`) can all provide. Stores that can also serialize writers up
//! front (a file lock) do so in [`Store::begin`], turning retries into queueing.

use std::sync::{Arc, Mutex};

use crate::error::{CommitError, StoreError};
use crate::state::State;

/// A state together with the revision it was read at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// 0 for a store that was never written; every commit increases it.
    pub revision: u64,
    pub state: State,
}

pub trait Store: Send + Sync {
    /// The current state. Never a half-written one.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Replaces the state if it is still at `expected_revision`, and returns the new revision.
    /// Durable when it returns `Ok`: an address reported as assigned survives a crash.
    fn commit(&self, expected_revision: u64, new: &State) -> Result<u64, CommitError>;

    /// Starts a read-modify-write. The default is optimistic (load now, compare-and-swap at
    /// commit); a store may override it to hold a lock until the transaction ends.
    fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let snapshot = self.load()?;
        Ok(Box::new(Optimistic {
            store: self,
            snapshot,
        }))
    }
}

/// One read-modify-write. Dropping it without committing changes nothing (and releases any
/// lock it holds).
pub trait Transaction {
    fn snapshot(&self) -> &Snapshot;
    fn commit(self: Box<Self>, new: &State) -> Result<u64, CommitError>;
}

struct Optimistic<'a, S: ?Sized> {
    store: &'a S,
    snapshot: Snapshot,
}

impl<S: Store + ?Sized> Transaction for Optimistic<'_, S> {
    fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn commit(self: Box<Self>, new: &State) -> Result<u64, CommitError> {
        self.store.commit(self.snapshot.revision, new)
    }
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn load(&self) -> Result<Snapshot, StoreError> {
        (**self).load()
    }
    fn commit(&self, expected_revision: u64, new: &State) -> Result<u64, CommitError> {
        (**self).commit(expected_revision, new)
    }
    fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        (**self).begin()
    }
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn load(&self) -> Result<Snapshot, StoreError> {
        (**self).load()
    }
    fn commit(&self, expected_revision: u64, new: &State) -> Result<u64, CommitError> {
        (**self).commit(expected_revision, new)
    }
    fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        (**self).begin()
    }
}

/// In-memory store for tests and for callers that persist elsewhere. Optimistic, like the
/// Kubernetes store will be, so engine tests exercise the conflict-and-retry path.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Snapshot>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    pub fn with_state(state: State) -> MemStore {
        MemStore {
            inner: Mutex::new(Snapshot { revision: 1, state }),
        }
    }
}

impl Store for MemStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn commit(&self, expected_revision: u64, new: &State) -> Result<u64, CommitError> {
        let mut cur = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if cur.revision != expected_revision {
            return Err(CommitError::Conflict {
                expected: expected_revision,
                found: cur.revision,
            });
        }
        cur.revision += 1;
        cur.state = new.clone();
        Ok(cur.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_compares_and_swaps() {
        let s = MemStore::new();
        assert_eq!(s.load().unwrap().revision, 0);
        assert_eq!(s.commit(0, &State::default()).unwrap(), 1);
        let err = s.commit(0, &State::default()).unwrap_err();
        assert!(matches!(
            err,
            CommitError::Conflict {
                expected: 0,
                found: 1
            }
        ));
        let tx = s.begin().unwrap();
        assert_eq!(tx.snapshot().revision, 1);
        s.commit(1, &State::default()).unwrap();
        assert!(matches!(
            tx.commit(&State::default()),
            Err(CommitError::Conflict { .. })
        ));
    }
}

//! [`KubeStore`]: the IPAM state as API objects, committed object by object with
//! `resourceVersion` preconditions.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipam::{
    Block, CommitError, IpNetwork, Pool, Snapshot, State, StateParts, Store, StoreError,
    Transaction,
};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::objects::{
    affinity_name, affinity_resource, block_from_spec, block_name, block_resource, block_to_spec,
    pool_from_object, pool_resource, AffinityObject, AffinitySpec, BlockObject, PoolObject,
    CONFIRMED,
};
use crate::worker::{Stopped, Worker};

/// One API call; a server that stops answering fails the call instead of hanging the caller
/// (vswitchd's control thread among them).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Views kept for [`Store::commit`] callers that loaded with [`Store::load`]; the engine uses
/// [`Store::begin`], which carries its view and needs none.
const CACHED_VIEWS: usize = 8;

#[derive(Clone)]
struct Apis {
    blocks: Api<BlockObject>,
    affinities: Api<AffinityObject>,
    pools: Api<PoolObject>,
}

impl Apis {
    fn new(client: Client) -> Apis {
        Apis {
            blocks: Api::all_with(client.clone(), &block_resource()),
            affinities: Api::all_with(client.clone(), &affinity_resource()),
            pools: Api::all_with(client, &pool_resource()),
        }
    }
}

/// What one load saw: the state, and each block object as read (its `resourceVersion` is the
/// precondition of every write to it).
struct View {
    snapshot: Snapshot,
    blocks: BTreeMap<IpNetwork, (BlockObject, Block)>,
    affinities: BTreeMap<String, AffinityObject>,
}

/// Counts since the store was made, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Commits that lost a race (a precondition failed) and were reported as conflicts.
    pub conflicts: u64,
    /// Block objects created, replaced or deleted.
    pub block_writes: u64,
    /// Writes undone because a later write of the same commit failed.
    pub rollbacks: u64,
    /// Undo writes that failed themselves (someone wrote the object meanwhile).
    pub rollback_failures: u64,
    /// BlockAffinity writes that failed; the records are repaired by the next commit that
    /// touches the block or by [`KubeStore::repair_affinities`].
    pub affinity_errors: u64,
}

#[derive(Default)]
struct Counters {
    conflicts: AtomicU64,
    block_writes: AtomicU64,
    rollbacks: AtomicU64,
    rollback_failures: AtomicU64,
    affinity_errors: AtomicU64,
}

/// The IPAM store of a cluster. See the crate documentation for the object model.
pub struct KubeStore {
    worker: Worker,
    apis: Apis,
    views: Mutex<VecDeque<Arc<View>>>,
    counters: Arc<Counters>,
}

fn stopped(e: Stopped) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl KubeStore {
    /// Connects with what `kube::Config::infer` finds: `$KUBECONFIG` or `~/.kube/config`, else
    /// the in-cluster service account.
    pub fn connect() -> Result<KubeStore, StoreError> {
        KubeStore::with_client(|| async {
            let config = Config::infer()
                .await
                .map_err(|e| format!("no Kubernetes client configuration: {e}"))?;
            Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
        })
    }

    /// Connects with the current context of a kubeconfig file.
    pub fn from_kubeconfig(path: &Path) -> Result<KubeStore, StoreError> {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| StoreError::Backend(format!("kubeconfig {}: {e}", path.display())))?;
        KubeStore::with_client(move || async move {
            let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig: {e}"))?;
            Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
        })
    }

    /// Uses the client `make` builds. It runs on the store's own runtime, because a client's
    /// connection tasks live on the runtime it was made in.
    pub fn with_client<F, Fut>(make: F) -> Result<KubeStore, StoreError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Client, String>> + Send + 'static,
    {
        let worker = Worker::start()
            .map_err(|e| StoreError::Backend(format!("starting the Kubernetes client: {e}")))?;
        let client = worker
            .run(async move { make().await })
            .map_err(stopped)?
            .map_err(StoreError::Backend)?;
        Ok(KubeStore {
            worker,
            apis: Apis::new(client),
            views: Mutex::new(VecDeque::new()),
            counters: Arc::default(),
        })
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            conflicts: c.conflicts.load(Relaxed),
            block_writes: c.block_writes.load(Relaxed),
            rollbacks: c.rollbacks.load(Relaxed),
            rollback_failures: c.rollback_failures.load(Relaxed),
            affinity_errors: c.affinity_errors.load(Relaxed),
        }
    }

    /// Makes `node`'s BlockAffinity objects match the blocks it owns: creates the missing ones
    /// and deletes those of blocks it no longer owns. Needed only after a crash between a block
    /// write and its record (or after affinity write errors); vswitchd runs it at start.
    /// Returns the number of objects written.
    pub fn repair_affinities(&self, node: &str) -> Result<usize, StoreError> {
        let view = self.view()?;
        let apis = self.apis.clone();
        let node = node.to_string();
        self.worker
            .run(async move { repair(&apis, &view, &node).await })
            .map_err(stopped)?
    }

    fn view(&self) -> Result<Arc<View>, StoreError> {
        let apis = self.apis.clone();
        let view = Arc::new(self.worker.run(read_view(apis)).map_err(stopped)??);
        let mut cache = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() == CACHED_VIEWS {
            cache.pop_front();
        }
        cache.push_back(view.clone());
        Ok(view)
    }

    fn commit_view(&self, view: Arc<View>, new: &State) -> Result<u64, CommitError> {
        let (apis, new, counters) = (self.apis.clone(), new.clone(), self.counters.clone());
        let out = self
            .worker
            .run(async move { commit(&apis, &view, &new, &counters).await })
            .map_err(|e| CommitError::Store(stopped(e)))?;
        if matches!(out, Err(CommitError::Conflict { .. })) {
            self.counters.conflicts.fetch_add(1, Relaxed);
        }
        out
    }
}

impl Store for KubeStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.view()?.snapshot.clone())
    }

    /// With the view `expected_revision` was loaded at, if this store still has it; otherwise
    /// only if the blocks are still at that revision.
    fn commit(&self, expected_revision: u64, new: &State) -> Result<u64, CommitError> {
        let cached = self
            .views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|v| v.snapshot.revision == expected_revision)
            .cloned();
        let view = match cached {
            Some(v) => v,
            None => {
                let v = self.view()?;
                if v.snapshot.revision != expected_revision {
                    self.counters.conflicts.fetch_add(1, Relaxed);
                    return Err(CommitError::Conflict {
                        expected: expected_revision,
                        found: v.snapshot.revision,
                    });
                }
                v
            }
        };
        self.commit_view(view, new)
    }

    fn begin(&self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let view = self.view()?;
        Ok(Box::new(KubeTxn { store: self, view }))
    }
}

struct KubeTxn<'a> {
    store: &'a KubeStore,
    view: Arc<View>,
}

impl Transaction for KubeTxn<'_> {
    fn snapshot(&self) -> &Snapshot {
        &self.view.snapshot
    }

    fn commit(self: Box<Self>, new: &State) -> Result<u64, CommitError> {
        self.store.commit_view(self.view, new)
    }
}

/// A failed API call: the HTTP status when the server answered with one.
struct CallError {
    code: Option<u16>,
    message: String,
}

impl CallError {
    fn is(&self, codes: &[u16]) -> bool {
        self.code.is_some_and(|c| codes.contains(&c))
    }
}

async fn timed<T>(fut: impl Future<Output = kube::Result<T>>) -> Result<T, CallError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) => Err(CallError {
            code: Some(s.code),
            message: format!("{} ({} {})", s.message, s.code, s.reason),
        }),
        Ok(Err(e)) => Err(CallError {
            code: None,
            message: e.to_string(),
        }),
        Err(_) => Err(CallError {
            code: None,
            message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
        }),
    }
}

fn backend(what: &str, e: CallError) -> StoreError {
    StoreError::Backend(format!("{what}: {}", e.message))
}

/// A revision is the list's resourceVersion: etcd's revision, which every write increases.
fn revision(rv: Option<&str>, what: &str) -> Result<u64, StoreError> {
    rv.and_then(|s| s.parse().ok()).ok_or_else(|| {
        StoreError::Backend(format!(
            "{what}: resourceVersion {rv:?} is not a number; this store needs an etcd-backed API server"
        ))
    })
}

async fn read_view(apis: Apis) -> Result<View, StoreError> {
    let lp = ListParams::default();
    // Blocks before pools: a block is only ever created inside a pool, so every pool a listed
    // block was cut from is in the later pool list unless it was deleted in between.
    let blocks = timed(apis.blocks.list(&lp))
        .await
        .map_err(|e| backend("list IPAMBlocks", e))?;
    let rev = revision(blocks.metadata.resource_version.as_deref(), "IPAMBlocks")?;
    let pools = timed(apis.pools.list(&lp))
        .await
        .map_err(|e| backend("list IPPools", e))?;
    let affinities = timed(apis.affinities.list(&lp))
        .await
        .map_err(|e| backend("list BlockAffinities", e))?;
    build_view(rev, blocks.items, pools.items, affinities.items)
}

fn build_view(
    revision: u64,
    blocks: Vec<BlockObject>,
    pools: Vec<PoolObject>,
    affinities: Vec<AffinityObject>,
) -> Result<View, StoreError> {
    let mut pool_list: Vec<Pool> = Vec::new();
    for p in &pools {
        match pool_from_object(p) {
            Ok(pool) => pool_list.push(pool),
            // One bad IPPool must not stop every node's IPAM; it hands out nothing.
            Err(e) => tracing::warn!("IPPool ignored: {e}"),
        }
    }
    let mut decoded: BTreeMap<IpNetwork, (BlockObject, Block)> = BTreeMap::new();
    for obj in blocks {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let block = block_from_spec(&obj.spec).map_err(|r| {
            StoreError::Backend(format!(
                "IPAMBlock {name} is damaged ({r}); it was left untouched: repair or delete it"
            ))
        })?;
        // Two objects for one block would defeat the create race that decides its owner.
        if block_name(block.cidr()) != name {
            return Err(StoreError::Backend(format!(
                "IPAMBlock {name} holds block {}, which must be named {}: delete it",
                block.cidr(),
                block_name(block.cidr())
            )));
        }
        decoded.insert(block.cidr(), (obj, block));
    }
    // A block whose pool was deleted keeps its addresses: it is kept under a disabled pool of
    // its own, so that its pods can still be released and nothing new is taken from it.
    for (cidr, (obj, _)) in &decoded {
        if pool_list.iter().any(|p| p.cidr().contains(cidr.ip())) {
            continue;
        }
        let name = format!(
            "{}-retired-{}",
            obj.spec.pool.as_deref().unwrap_or("ippool"),
            block_name(*cidr)
        );
        let pool = Pool::new(&name, &cidr.to_string(), Some(cidr.prefix()))
            .map_err(|e| StoreError::Backend(format!("block {cidr} of a deleted pool: {e}")))?
            .with_disabled(true);
        pool_list.push(pool);
    }
    let state = State::from_parts(StateParts {
        pools: pool_list,
        blocks: decoded.values().map(|(_, b)| b.clone()).collect(),
    })
    .map_err(|r| StoreError::Backend(format!("the cluster's IPAM objects disagree: {r}")))?;
    let affinities = affinities
        .into_iter()
        .filter_map(|a| Some((a.metadata.name.clone()?, a)))
        .collect();
    Ok(View {
        snapshot: Snapshot { revision, state },
        blocks: decoded,
        affinities,
    })
}

enum Op {
    Create(BlockObject),
    Replace {
        new: BlockObject,
        old: Box<BlockObject>,
    },
    Delete(BlockObject),
}

/// How to take back a write that succeeded when a later one of the same commit failed.
enum Undo {
    Delete { name: String, rv: Option<String> },
    Restore(BlockObject),
    Recreate(BlockObject),
}

fn name_of<P: Clone, U: Clone>(o: &kube::core::Object<P, U>) -> String {
    o.metadata.name.clone().unwrap_or_default()
}

fn precondition(rv: Option<String>) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: rv,
            uid: None,
        }),
        ..DeleteParams::default()
    }
}

fn affinity_of(o: &BlockObject) -> Option<&str> {
    o.spec
        .affinity
        .as_deref()?
        .strip_prefix(crate::objects::HOST_AFFINITY)
}

/// The writes that turn `view` into `new`: claims (creates) first, because they are where
/// nodes race, and a commit that loses its first write has nothing to undo.
fn plan(view: &View, new: &State) -> Vec<Op> {
    let (mut creates, mut replaces, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for b in new.blocks() {
        match view.blocks.get(&b.cidr()) {
            None => {
                let pool = new.pool_of(b.cidr().ip()).map(|p| p.name().to_string());
                let (spec, status) = block_to_spec(b, pool, None);
                let mut obj = BlockObject::new(&block_name(b.cidr()), &block_resource(), spec);
                obj.status = Some(status);
                creates.push(Op::Create(obj));
            }
            Some((old, ob)) if ob != b => {
                let (spec, status) = block_to_spec(b, old.spec.pool.clone(), Some((&old.spec, ob)));
                let mut obj = old.clone();
                obj.spec = spec;
                obj.status = Some(status);
                replaces.push(Op::Replace {
                    new: obj,
                    old: Box::new(old.clone()),
                });
            }
            Some(_) => {}
        }
    }
    for (cidr, (old, _)) in &view.blocks {
        if new.block(*cidr).is_none() {
            deletes.push(Op::Delete(old.clone()));
        }
    }
    creates.into_iter().chain(replaces).chain(deletes).collect()
}

async fn commit(
    apis: &Apis,
    view: &View,
    new: &State,
    counters: &Counters,
) -> Result<u64, CommitError> {
    if !new.pools().eq(view.snapshot.state.pools()) {
        return Err(CommitError::Store(StoreError::Backend(
            "IP pools are the cluster's IPPool objects (crd.projectcalico.org/v1), which this store only reads: create, change or delete them with kubectl".into(),
        )));
    }
    let ops = plan(view, new);
    let pp = PostParams::default();
    let mut done: Vec<Undo> = Vec::new();
    let mut written: Vec<(Option<String>, Option<String>, IpNetwork)> = Vec::new();
    let mut last = view.snapshot.revision + 1;
    for op in &ops {
        let (verb, name, result) = match op {
            Op::Create(obj) => {
                let name = name_of(obj);
                let r = timed(apis.blocks.create(&pp, obj)).await.map(|o| {
                    done.push(Undo::Delete {
                        name: name.clone(),
                        rv: o.metadata.resource_version.clone(),
                    });
                    o.metadata.resource_version
                });
                ("create", name, r)
            }
            Op::Replace { new: obj, old } => {
                let name = name_of(obj);
                let r = timed(apis.blocks.replace(&name, &pp, obj)).await.map(|o| {
                    let mut back = (**old).clone();
                    back.metadata.resource_version = o.metadata.resource_version.clone();
                    done.push(Undo::Restore(back));
                    o.metadata.resource_version
                });
                ("update", name, r)
            }
            Op::Delete(old) => {
                let name = name_of(old);
                let dp = precondition(old.metadata.resource_version.clone());
                let r = timed(apis.blocks.delete(&name, &dp)).await.map(|_| {
                    done.push(Undo::Recreate(old.clone()));
                    None
                });
                ("delete", name, r)
            }
        };
        match result {
            Ok(rv) => {
                counters.block_writes.fetch_add(1, Relaxed);
                if let Some(rv) = rv.and_then(|s| s.parse::<u64>().ok()) {
                    last = last.max(rv);
                }
                let (before, after, cidr) = match op {
                    Op::Create(o) => (None, affinity_of(o), o.spec.cidr.as_str()),
                    Op::Replace { new, old } => {
                        (affinity_of(old), affinity_of(new), new.spec.cidr.as_str())
                    }
                    Op::Delete(o) => (affinity_of(o), None, o.spec.cidr.as_str()),
                };
                if before != after {
                    if let Ok(cidr) = cidr.parse() {
                        written.push((before.map(str::to_owned), after.map(str::to_owned), cidr));
                    }
                }
            }
            Err(e) => {
                // A create loses to an object of that name (AlreadyExists); an update or a
                // delete to a newer resourceVersion (Conflict) or to a delete (NotFound).
                let lost = match op {
                    Op::Create(_) => e.is(&[409]),
                    _ => e.is(&[409, 404]),
                };
                undo(apis, done, counters).await;
                return Err(if lost {
                    tracing::debug!("{verb} IPAMBlock {name} lost a race: {}", e.message);
                    CommitError::Conflict {
                        expected: view.snapshot.revision,
                        // the API reports conflicts per object, with no revision to compare
                        found: 0,
                    }
                } else {
                    CommitError::Store(backend(&format!("{verb} IPAMBlock {name}"), e))
                });
            }
        }
    }
    for (before, after, cidr) in written {
        if let Some(node) = before {
            if let Err(e) = remove_affinity(apis, view, &node, cidr).await {
                counters.affinity_errors.fetch_add(1, Relaxed);
                tracing::warn!("{e}");
            }
        }
        if let Some(node) = after {
            if let Err(e) = ensure_affinity(apis, &node, cidr).await {
                counters.affinity_errors.fetch_add(1, Relaxed);
                tracing::warn!("{e}");
            }
        }
    }
    Ok(last)
}

/// Best effort, newest first, each write again conditional on the version this commit made: an
/// object someone has written since is left as they wrote it, and the engine's retry reads it.
async fn undo(apis: &Apis, done: Vec<Undo>, counters: &Counters) {
    let pp = PostParams::default();
    for u in done.into_iter().rev() {
        counters.rollbacks.fetch_add(1, Relaxed);
        let (what, r) = match u {
            Undo::Delete { name, rv } => (
                format!("delete IPAMBlock {name}"),
                timed(apis.blocks.delete(&name, &precondition(rv)))
                    .await
                    .map(|_| ()),
            ),
            Undo::Restore(obj) => {
                let name = name_of(&obj);
                (
                    format!("restore IPAMBlock {name}"),
                    timed(apis.blocks.replace(&name, &pp, &obj))
                        .await
                        .map(|_| ()),
                )
            }
            Undo::Recreate(mut obj) => {
                let name = name_of(&obj);
                obj.metadata.resource_version = None;
                obj.metadata.uid = None;
                obj.metadata.creation_timestamp = None;
                obj.metadata.managed_fields = None;
                (
                    format!("recreate IPAMBlock {name}"),
                    timed(apis.blocks.create(&pp, &obj)).await.map(|_| ()),
                )
            }
        };
        if let Err(e) = r {
            counters.rollback_failures.fetch_add(1, Relaxed);
            tracing::warn!(
                "undoing part of a failed IPAM commit: {what}: {}; the retry works from what is there now",
                e.message
            );
        }
    }
}

async fn ensure_affinity(apis: &Apis, node: &str, cidr: IpNetwork) -> Result<bool, String> {
    let name = affinity_name(node, cidr);
    let want = AffinitySpec {
        node: node.to_string(),
        cidr: cidr.to_string(),
        state: CONFIRMED.to_string(),
    };
    let obj = AffinityObject::new(&name, &affinity_resource(), want.clone());
    match timed(apis.affinities.create(&PostParams::default(), &obj)).await {
        Ok(_) => return Ok(true),
        Err(e) if e.is(&[409]) => {}
        Err(e) => return Err(format!("create BlockAffinity {name}: {}", e.message)),
    }
    let mut cur = timed(apis.affinities.get(&name))
        .await
        .map_err(|e| format!("read BlockAffinity {name}: {}", e.message))?;
    if cur.spec == want {
        return Ok(false);
    }
    cur.spec = want;
    timed(apis.affinities.replace(&name, &PostParams::default(), &cur))
        .await
        .map_err(|e| format!("update BlockAffinity {name}: {}", e.message))?;
    Ok(true)
}

/// Conditional on the version the view read, when it read one: a record created since belongs to
/// a newer claim.
async fn remove_affinity(
    apis: &Apis,
    view: &View,
    node: &str,
    cidr: IpNetwork,
) -> Result<bool, String> {
    let name = affinity_name(node, cidr);
    let dp = match view.affinities.get(&name) {
        Some(a) => precondition(a.metadata.resource_version.clone()),
        None => DeleteParams::default(),
    };
    match timed(apis.affinities.delete(&name, &dp)).await {
        Ok(_) => Ok(true),
        Err(e) if e.is(&[404, 409]) => Ok(false),
        Err(e) => Err(format!("delete BlockAffinity {name}: {}", e.message)),
    }
}

async fn repair(apis: &Apis, view: &View, node: &str) -> Result<usize, StoreError> {
    let mut writes = 0;
    let owned: BTreeMap<String, IpNetwork> = view
        .blocks
        .iter()
        .filter(|(_, (_, b))| b.affinity() == Some(node))
        .map(|(&cidr, _)| (affinity_name(node, cidr), cidr))
        .collect();
    for (name, &cidr) in &owned {
        let ok = view.affinities.get(name).is_some_and(|a| {
            a.spec.node == node && a.spec.cidr == cidr.to_string() && a.spec.state == CONFIRMED
        });
        if !ok
            && ensure_affinity(apis, node, cidr)
                .await
                .map_err(StoreError::Backend)?
        {
            writes += 1;
        }
    }
    for (name, a) in &view.affinities {
        if a.spec.node != node || owned.contains_key(name) {
            continue;
        }
        let dp = precondition(a.metadata.resource_version.clone());
        match timed(apis.affinities.delete(name, &dp)).await {
            Ok(_) => writes += 1,
            Err(e) if e.is(&[404, 409]) => {}
            Err(e) => return Err(backend(&format!("delete BlockAffinity {name}"), e)),
        }
    }
    Ok(writes)
}

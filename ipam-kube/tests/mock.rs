//! How the store reads the API's answers, with kube's mock client in front of a small fake API
//! server (create, get, list, replace with resourceVersion checks, delete with preconditions)
//! that can be told to fail chosen requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use ipam::{
    Attributes, CommitError, FamilyCount, HandleId, Ipam, IpamError, MemStore, PoolSelection,
    State, Store,
};
use ipam_kube::KubeStore;
use kube::client::Body;
use serde_json::{json, Value};

/// A request to fail: the `skip`-th next one (0: the next) with this method on this resource.
struct Failure {
    method: Method,
    plural: &'static str,
    skip: usize,
    code: u16,
    reason: &'static str,
}

#[derive(Default)]
struct Fake {
    rv: u64,
    objects: BTreeMap<(String, String), Value>,
    failures: Vec<Failure>,
    /// "METHOD plural[/name]" of every request, in order.
    log: Vec<String>,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

impl Fake {
    fn put(&mut self, plural: &str, obj: Value) {
        self.rv += 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        self.objects.insert((plural.to_string(), name), obj);
    }

    fn count(&self, plural: &str) -> usize {
        self.objects.keys().filter(|(p, _)| p == plural).count()
    }

    fn serve(&mut self, method: &Method, path: &str, body: &[u8]) -> (u16, Value) {
        // /apis/<group>/<version>/<plural>[/<name>]
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let plural = parts[3].to_string();
        let name = parts.get(4).map(|s| s.to_string());
        self.log.push(format!(
            "{method} {plural}{}",
            name.as_ref().map(|n| format!("/{n}")).unwrap_or_default()
        ));
        if let Some(i) = self
            .failures
            .iter()
            .position(|f| f.method == method && f.plural == plural)
        {
            if self.failures[i].skip == 0 {
                let f = self.failures.remove(i);
                return status(f.code, f.reason, "injected");
            }
            self.failures[i].skip -= 1;
        }
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap()
        };
        let key = |n: &str| (plural.clone(), n.to_string());
        match (method.clone(), name) {
            (Method::GET, None) => {
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((p, _), _)| *p == plural)
                    .map(|(_, v)| v.clone())
                    .collect();
                (
                    200,
                    json!({"kind": "List", "apiVersion": "v1",
                           "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
                )
            }
            (Method::GET, Some(n)) => match self.objects.get(&key(&n)) {
                Some(o) => (200, o.clone()),
                None => status(404, "NotFound", "not found"),
            },
            (Method::POST, None) => {
                let n = body["metadata"]["name"].as_str().unwrap().to_string();
                if self.objects.contains_key(&key(&n)) {
                    return status(409, "AlreadyExists", "already exists");
                }
                self.put(&plural, body);
                (201, self.objects[&key(&n)].clone())
            }
            (Method::PUT, Some(n)) => {
                let Some(cur) = self.objects.get(&key(&n)) else {
                    return status(404, "NotFound", "not found");
                };
                if cur["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                    return status(409, "Conflict", "the object has been modified");
                }
                self.put(&plural, body);
                (200, self.objects[&key(&n)].clone())
            }
            (Method::DELETE, Some(n)) => {
                let Some(cur) = self.objects.get(&key(&n)) else {
                    return status(404, "NotFound", "not found");
                };
                let want = &body["preconditions"]["resourceVersion"];
                if !want.is_null() && *want != cur["metadata"]["resourceVersion"] {
                    return status(409, "Conflict", "precondition failed");
                }
                self.rv += 1;
                (200, self.objects.remove(&key(&n)).unwrap())
            }
            _ => status(405, "MethodNotAllowed", "not here"),
        }
    }
}

/// A store whose client talks to `fake` through kube's mock service.
fn store(fake: &Arc<Mutex<Fake>>) -> KubeStore {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let fake = fake.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let body = body.collect_bytes().await.unwrap();
                let (code, v) = fake
                    .lock()
                    .unwrap()
                    .serve(&parts.method, parts.uri.path(), &body);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&v).unwrap()))
                        .unwrap(),
                );
            }
        });
    });
    KubeStore::with_client(move || async move { Ok(kube::Client::new(svc, "default")) }).unwrap()
}

fn fake_with_pool() -> Arc<Mutex<Fake>> {
    let mut f = Fake::default();
    f.put(
        "ippools",
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
               "metadata": {"name": "p"}, "spec": {"cidr": "10.5.0.0/28", "blockSize": 30}}),
    );
    Arc::new(Mutex::new(f))
}

fn fail(fake: &Arc<Mutex<Fake>>, method: Method, plural: &'static str, skip: usize, code: u16) {
    let reason = match code {
        409 if method == Method::POST => "AlreadyExists",
        409 => "Conflict",
        _ => "InternalError",
    };
    fake.lock().unwrap().failures.push(Failure {
        method,
        plural,
        skip,
        code,
        reason,
    });
}

fn h(s: &str) -> HandleId {
    HandleId::new(s, "eth0").unwrap()
}

fn assign(ipam: &Ipam<impl Store>, handle: &HandleId) -> Result<Vec<std::net::IpAddr>, IpamError> {
    Ok(ipam
        .assign(
            handle,
            "n1",
            &PoolSelection::Any,
            FamilyCount::V4,
            &Attributes::new(),
        )?
        .addresses)
}

/// The state after assigning `handle` on top of `state`, as the engine would commit it.
fn with_assigned(state: &State, handle: &str) -> State {
    let m = Ipam::new(MemStore::with_state(state.clone()));
    assign(&m, &h(handle)).unwrap();
    m.snapshot().unwrap().state
}

#[test]
fn loads_pools_and_blocks_and_claims_with_a_create() {
    let fake = fake_with_pool();
    let ipam = Ipam::new(store(&fake));
    assert_eq!(
        assign(&ipam, &h("a")).unwrap(),
        ["10.5.0.0".parse::<std::net::IpAddr>().unwrap()]
    );
    let f = fake.lock().unwrap();
    let block = &f.objects[&("ipamblocks".to_string(), "10-5-0-0-30".to_string())];
    assert_eq!(block["spec"]["affinity"], "host:n1");
    assert_eq!(block["spec"]["allocations"], json!([0, null, null, null]));
    assert_eq!(block["status"]["allocated"], 1);
    assert_eq!(
        f.objects[&("blockaffinities".to_string(), "n1-10-5-0-0-30".to_string())]["spec"],
        json!({"node": "n1", "cidr": "10.5.0.0/30", "state": "confirmed"})
    );
    // the pool object was only read
    assert!(!f
        .log
        .iter()
        .any(|l| l.starts_with("POST ippools") || l.starts_with("PUT ippools")));
}

#[test]
fn a_409_on_update_is_a_conflict() {
    let fake = fake_with_pool();
    let s = store(&fake);
    let ipam = Ipam::new(store(&fake));
    assign(&ipam, &h("a")).unwrap();
    let snap = s.load().unwrap();
    fail(&fake, Method::PUT, "ipamblocks", 0, 409);
    let err = s
        .commit(snap.revision, &with_assigned(&snap.state, "b"))
        .unwrap_err();
    assert!(matches!(err, CommitError::Conflict { .. }), "{err}");
    assert_eq!(s.stats().conflicts, 1);
    // and a real stale resourceVersion too: someone else wrote the block since the load
    assign(&ipam, &h("c")).unwrap();
    let err = s
        .commit(snap.revision, &with_assigned(&snap.state, "b"))
        .unwrap_err();
    assert!(matches!(err, CommitError::Conflict { .. }), "{err}");
    assert_eq!(s.stats().conflicts, 2);
}

#[test]
fn already_exists_on_create_is_a_conflict() {
    let fake = fake_with_pool();
    let s = store(&fake);
    let snap = s.load().unwrap();
    fail(&fake, Method::POST, "ipamblocks", 0, 409);
    let err = s
        .commit(snap.revision, &with_assigned(&snap.state, "a"))
        .unwrap_err();
    assert!(matches!(err, CommitError::Conflict { .. }), "{err}");
    assert_eq!(fake.lock().unwrap().count("ipamblocks"), 0);
}

#[test]
fn server_errors_are_store_errors() {
    let fake = fake_with_pool();
    let s = store(&fake);
    let snap = s.load().unwrap();
    fail(&fake, Method::POST, "ipamblocks", 0, 500);
    let err = s
        .commit(snap.revision, &with_assigned(&snap.state, "a"))
        .unwrap_err();
    match err {
        CommitError::Store(e) => assert!(
            e.to_string().contains("create IPAMBlock 10-5-0-0-30"),
            "{e}"
        ),
        e => panic!("not a store error: {e}"),
    }
    fail(&fake, Method::GET, "ipamblocks", 0, 500);
    let err = s.load().unwrap_err();
    assert!(err.to_string().contains("list IPAMBlocks"), "{err}");
    // the engine does not retry a store error
    fail(&fake, Method::POST, "ipamblocks", 0, 503);
    let ipam = Ipam::new(s);
    assert!(matches!(assign(&ipam, &h("a")), Err(IpamError::Store(_))));
    assert_eq!(ipam.store().stats().conflicts, 0);
}

#[test]
fn the_engine_retries_to_success_after_a_conflict() {
    let fake = fake_with_pool();
    let ipam = Ipam::new(store(&fake));
    fail(&fake, Method::POST, "ipamblocks", 0, 409);
    assert_eq!(assign(&ipam, &h("a")).unwrap().len(), 1);
    fail(&fake, Method::PUT, "ipamblocks", 0, 409);
    assert_eq!(assign(&ipam, &h("b")).unwrap().len(), 1);
    assert_eq!(ipam.store().stats().conflicts, 2);
    let f = fake.lock().unwrap();
    let posts = f.log.iter().filter(|l| *l == "POST ipamblocks").count();
    let puts = f
        .log
        .iter()
        .filter(|l| l.starts_with("PUT ipamblocks"))
        .count();
    assert_eq!((posts, puts), (2, 2));
    let block = &f.objects[&("ipamblocks".to_string(), "10-5-0-0-30".to_string())];
    assert_eq!(block["spec"]["allocations"], json!([0, 1, null, null]));
}

#[test]
fn a_commit_that_fails_half_way_is_undone() {
    let fake = fake_with_pool();
    let ipam = Ipam::new(store(&fake));
    // two blocks of n1, both emptied
    for i in 0..5 {
        assign(&ipam, &h(&format!("x{i}"))).unwrap();
    }
    for i in 0..5 {
        ipam.release(&h(&format!("x{i}"))).unwrap();
    }
    assert_eq!(fake.lock().unwrap().count("ipamblocks"), 2);
    // giving both back: the second delete loses, the first is undone, and the retry does both
    fail(&fake, Method::DELETE, "ipamblocks", 1, 409);
    let freed = ipam.release_empty_blocks("n1").unwrap();
    assert_eq!(freed.len(), 2);
    let stats = ipam.store().stats();
    assert_eq!(
        (stats.conflicts, stats.rollbacks, stats.rollback_failures),
        (1, 1, 0)
    );
    let f = fake.lock().unwrap();
    let tail: Vec<&str> = f
        .log
        .iter()
        .filter(|l| l.contains("ipamblocks") && !l.starts_with("GET"))
        .map(String::as_str)
        .rev()
        .take(5)
        .collect();
    assert_eq!(
        tail,
        [
            "DELETE ipamblocks/10-5-0-4-30",
            "DELETE ipamblocks/10-5-0-0-30",
            "POST ipamblocks",
            "DELETE ipamblocks/10-5-0-4-30",
            "DELETE ipamblocks/10-5-0-0-30",
        ]
    );
    assert_eq!(f.count("ipamblocks"), 0);
    assert_eq!(f.count("blockaffinities"), 0);
}

#[test]
fn pool_changes_are_refused() {
    let fake = fake_with_pool();
    let ipam = Ipam::new(store(&fake));
    let err = ipam.remove_pool("p").unwrap_err();
    assert!(err.to_string().contains("only reads"), "{err}");
    assert_eq!(fake.lock().unwrap().count("ippools"), 1);
}

#[test]
fn works_from_inside_a_current_thread_runtime() {
    // vswitchd's control thread: a current-thread runtime, where block_in_place panics
    let fake = fake_with_pool();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        let ipam = Ipam::new(store(&fake));
        let got = assign(&ipam, &h("a")).unwrap();
        // dropping the store here must not block or panic either
        drop(ipam);
        got
    });
    assert_eq!(got.len(), 1);
    assert_eq!(fake.lock().unwrap().count("ipamblocks"), 1);
}

//! One watcher per kind, each feeding a reflector store.
//!
//! kube's watcher lists, then watches from the list's resourceVersion; when
//! the watch ends it resumes, and when the server answers 410 Gone (the
//! version is too old) or the watch fails it lists again after a backoff. A
//! relist replaces the store's content in one step when the list is
//! complete (`InitDone`), so an object deleted while nobody watched is gone
//! afterwards and none is listed twice.

use super::discover::Kind;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Counters of one watcher, for `/status` and `/readyz`.
#[derive(Debug, Default)]
pub struct WatchState {
    /// Listed completely at least once.
    pub listed: AtomicBool,
    /// Complete lists (the first and every relist).
    pub lists: AtomicU64,
    /// Objects added, changed or deleted after a list.
    pub events: AtomicU64,
    /// Failed lists and watches (each followed by a retry).
    pub errors: AtomicU64,
}

#[derive(Clone)]
pub struct Watched {
    pub kind: Kind,
    pub resource: ApiResource,
    pub store: Store<DynamicObject>,
    pub state: Arc<WatchState>,
}

impl Watched {
    pub fn objects(&self) -> Vec<Arc<DynamicObject>> {
        self.store.state()
    }
}

/// Starts watching `resource` in every namespace; `changed` is notified
/// whenever the store changes.
pub fn spawn(client: Client, kind: Kind, resource: ApiResource, changed: Arc<Notify>) -> Watched {
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let state = Arc::new(WatchState::default());
    let st = state.clone();
    let what = resource.api_version.clone() + " " + &resource.plural;
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        // nothing reads them and they are most of an object's size
        .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None)
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    let n = st.lists.fetch_add(1, Ordering::Relaxed);
                    if n == 0 {
                        tracing::info!("{what}: listed");
                    } else {
                        tracing::info!("{what}: listed again");
                    }
                    st.listed.store(true, Ordering::Release);
                    changed.notify_one();
                }
                Ok(watcher::Event::Init) | Ok(watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::Apply(_)) | Ok(watcher::Event::Delete(_)) => {
                    st.events.fetch_add(1, Ordering::Relaxed);
                    changed.notify_one();
                }
                Err(e) => {
                    st.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("{what}: {e} (retrying)");
                }
            }
        }
    });
    Watched {
        kind,
        resource,
        store,
        state,
    }
}

#[cfg(test)]
mod tests {
    //! The watcher against a mock API server, for what a real one does not
    //! do on demand: failing lists and watches, and 410 Gone.
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;
    use tower_test::mock::{self, Handle};

    type Mock = Handle<Request<Body>, Response<Body>>;

    fn cm(name: &str, rv: &str, v: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": "x", "resourceVersion": rv,
                            "labels": {"v": v}}})
    }

    fn list(rv: &str, items: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMapList",
                                   "metadata": {"resourceVersion": rv}, "items": items}))
        .unwrap()
    }

    fn events(evs: &[(&str, serde_json::Value)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (t, o) in evs {
            out.extend(serde_json::to_vec(&json!({"type": t, "object": o})).unwrap());
            out.push(b'\n');
        }
        out
    }

    fn status(code: u16, reason: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
               "message": reason, "reason": reason, "code": code})
    }

    /// Answers the next request, which must be a list (or a watch).
    async fn answer(h: &mut Mock, watch: bool, code: StatusCode, body: Vec<u8>) -> String {
        let (req, send) = tokio::time::timeout(Duration::from_secs(30), h.next_request())
            .await
            .expect("the watcher asked nothing")
            .expect("mock closed");
        let uri = req.uri().to_string();
        assert_eq!(uri.contains("watch=true"), watch, "{uri}");
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(body))
                .unwrap(),
        );
        uri
    }

    fn names(w: &Watched) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = w
            .objects()
            .iter()
            .map(|o| {
                let labels = o.metadata.labels.clone().unwrap_or_default();
                (o.metadata.name.clone().unwrap(), labels["v"].clone())
            })
            .collect();
        v.sort();
        v
    }

    async fn until(w: &Watched, want: &[(&str, &str)]) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        for _ in 0..300 {
            if names(w) == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("store {:?}, expected {want:?}", names(w));
    }

    #[tokio::test]
    async fn errors_and_410_gone_relist_to_the_right_set() {
        let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let changed = Arc::new(Notify::new());
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let w = spawn(client, Kind::Pods, ar, changed.clone());

        // a list that fails is retried
        let e = serde_json::to_vec(&status(500, "InternalError")).unwrap();
        answer(&mut h, false, StatusCode::INTERNAL_SERVER_ERROR, e.clone()).await;
        answer(
            &mut h,
            false,
            StatusCode::OK,
            list("1", vec![cm("a", "1", "1"), cm("b", "1", "1")]),
        )
        .await;
        until(&w, &[("a", "1"), ("b", "1")]).await;
        assert!(w.state.listed.load(Ordering::Acquire));
        assert!(w.state.errors.load(Ordering::Relaxed) >= 1);

        // a watch that fails to start is retried from the same version
        let uri = answer(&mut h, true, StatusCode::INTERNAL_SERVER_ERROR, e).await;
        assert!(uri.contains("resourceVersion=1"), "{uri}");
        let uri = answer(
            &mut h,
            true,
            StatusCode::OK,
            events(&[
                ("ADDED", cm("c", "2", "1")),
                ("DELETED", cm("a", "3", "1")),
                ("ERROR", status(410, "Expired")),
            ]),
        )
        .await;
        assert!(uri.contains("resourceVersion=1"), "{uri}");
        until(&w, &[("b", "1"), ("c", "1")]).await;

        // 410 Gone: a full list; c went and d came while nobody watched
        answer(
            &mut h,
            false,
            StatusCode::OK,
            list("10", vec![cm("b", "9", "2"), cm("d", "10", "1")]),
        )
        .await;
        until(&w, &[("b", "2"), ("d", "1")]).await;
        assert_eq!(w.state.lists.load(Ordering::Relaxed), 2);

        // and watching goes on from the new list's version
        let uri = answer(
            &mut h,
            true,
            StatusCode::OK,
            events(&[("MODIFIED", cm("d", "11", "2"))]),
        )
        .await;
        assert!(uri.contains("resourceVersion=10"), "{uri}");
        until(&w, &[("b", "2"), ("d", "2")]).await;
        // the watch ended: it is resumed from where it was, without a list
        let uri = answer(
            &mut h,
            true,
            StatusCode::OK,
            events(&[("ADDED", cm("e", "12", "1"))]),
        )
        .await;
        assert!(uri.contains("resourceVersion=11"), "{uri}");
        until(&w, &[("b", "2"), ("d", "2"), ("e", "1")]).await;
        assert_eq!(w.state.lists.load(Ordering::Relaxed), 2);
        assert!(w.state.errors.load(Ordering::Relaxed) >= 3);
    }
}

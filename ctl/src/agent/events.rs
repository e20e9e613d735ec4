//! Kubernetes Events on the policies the agent cannot use: whoever applied
//! one sees in `kubectl get events` (and `describe`) that the pods it
//! selects are isolated in its place on this node, and why.
//!
//! Posting runs in a task of its own ([`spawn`]), fed the latest list of
//! unusable policies: a slow or refusing API server (no RBAC for Events,
//! the server down) delays Events, never the push to vswitchd. Each
//! policy is reported once per trouble (its uid, resourceVersion and
//! reason): reconciles that find it unchanged post nothing; a failed post is
//! retried with a backoff.

use super::discover::Kind;
use super::reconcile::{Inputs, Skipped, CALICO_POLICY, GLOBAL_POLICY, K8S_POLICY};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Events' `reason`, for `kubectl get events --field-selector reason=...`.
pub const REASON: &str = "PolicyNotUsable";
/// Events' `action`.
pub const ACTION: &str = "Isolate";
/// Events' `reportingController`.
pub const CONTROLLER: &str = "vswitch.dev/agent";

/// Kubernetes caps an Event's note at 1 KiB.
const NOTE_MAX: usize = 1000;
/// How long one post may take before the round is given up (and retried).
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// A policy stood in for, and the object the API server has for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unusable {
    pub skipped: Skipped,
    pub regarding: ObjectReference,
}

/// The policies of `skipped` that a stand-in replaces, each with a
/// reference to its object in `inputs` (its uid and resourceVersion; the
/// API version it was read from, from `resources`).
pub fn unusable(
    skipped: &[Skipped],
    inputs: &Inputs,
    resources: &[(Kind, ApiResource)],
) -> Vec<Unusable> {
    skipped
        .iter()
        .filter(|s| !s.isolated.is_empty())
        .map(|s| Unusable {
            skipped: s.clone(),
            regarding: find(s, inputs, resources).unwrap_or_else(|| reference(s)),
        })
        .collect()
}

fn find(
    s: &Skipped,
    inputs: &Inputs,
    resources: &[(Kind, ApiResource)],
) -> Option<ObjectReference> {
    let (kind, objs): (Kind, &[Arc<DynamicObject>]) = match s.kind.as_str() {
        K8S_POLICY => (Kind::K8sPolicies, &inputs.k8s_policies),
        CALICO_POLICY => (Kind::CalicoPolicies, &inputs.calico_policies),
        GLOBAL_POLICY => (Kind::GlobalPolicies, &inputs.global_policies),
        _ => return None,
    };
    let ar = &resources.iter().find(|(k, _)| *k == kind)?.1;
    let (ns, name) = match s.name.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, s.name.as_str()),
    };
    let o = objs.iter().find(|o| {
        o.metadata.name.as_deref() == Some(name)
            && ns.is_none_or(|ns| o.metadata.namespace.as_deref().unwrap_or("default") == ns)
    })?;
    let mut r = o.object_ref(ar);
    r.resource_version.clone_from(&o.metadata.resource_version);
    Some(r)
}

/// Starts the task that posts the Events; send it the current list after
/// each reconcile (sending never waits).
pub fn spawn(client: kube::Client, node: &str) -> watch::Sender<Vec<Unusable>> {
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(run(PolicyEvents::new(client, node), rx));
    tx
}

async fn run(mut events: PolicyEvents, mut rx: watch::Receiver<Vec<Unusable>>) {
    let mut failures = 0u32;
    loop {
        let now = rx.borrow_and_update().clone();
        match events.post(&now).await {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!("Events on unusable policies posted again");
                }
                failures = 0;
                if rx.changed().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(
                        "Events on unusable policies: {e} (retrying; their stand-ins are in force regardless)"
                    );
                }
                tokio::time::sleep(retry(failures)).await;
                if rx.has_changed().is_err() {
                    return;
                }
            }
        }
    }
}

/// The wait before posting again after `failures` failed rounds.
pub fn retry(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.min(6)).min(Duration::from_secs(60))
}

/// What identifies one report: the policy's kind and name, its object's
/// uid and resourceVersion, and the reason it cannot be used.
type Key = (String, String, Option<String>, Option<String>, String);

fn key(u: &Unusable) -> Key {
    (
        u.skipped.kind.clone(),
        u.skipped.name.clone(),
        u.regarding.uid.clone(),
        u.regarding.resource_version.clone(),
        u.skipped.reason.clone(),
    )
}

pub struct PolicyEvents {
    recorder: Recorder,
    node: String,
    /// The reports already posted, of the policies still stood in for: a
    /// policy is reported again when it changes or its trouble does, or
    /// when it comes back after a fix.
    posted: BTreeSet<Key>,
    timeout: Duration,
}

impl PolicyEvents {
    pub fn new(client: kube::Client, node: &str) -> PolicyEvents {
        let reporter = Reporter {
            controller: CONTROLLER.into(),
            instance: Some(node.to_owned()),
        };
        PolicyEvents {
            recorder: Recorder::new(client, reporter),
            node: node.to_owned(),
            posted: BTreeSet::new(),
            timeout: POST_TIMEOUT,
        }
    }

    /// Posts an Event for each report not posted yet; the number posted.
    /// Fails, leaving the rest for the next round, on the first error that
    /// is not this one Event's (no answer, forbidden, the server failing).
    pub async fn post(&mut self, unusable: &[Unusable]) -> Result<usize, String> {
        let now: BTreeSet<Key> = unusable.iter().map(key).collect();
        self.posted.retain(|k| now.contains(k));
        let mut n = 0;
        for u in unusable {
            let k = key(u);
            if self.posted.contains(&k) {
                continue;
            }
            let s = &u.skipped;
            let ev = Event {
                type_: EventType::Warning,
                reason: REASON.into(),
                note: Some(note(s, &self.node)),
                action: ACTION.into(),
                secondary: None,
            };
            let r =
                tokio::time::timeout(self.timeout, self.recorder.publish(&ev, &u.regarding)).await;
            match r {
                Ok(Ok(())) => {
                    tracing::info!("Event {REASON} posted on {} {}", s.kind, s.name);
                    n += 1;
                    self.posted.insert(k);
                }
                // refused for what it is (e.g. a name too long to make an
                // Event's from): posting it again would not do better
                Ok(Err(kube::Error::Api(st))) if matches!(st.code, 400 | 404 | 409 | 422) => {
                    tracing::warn!("Event on {} {} refused: {}", s.kind, s.name, st.message);
                    self.posted.insert(k);
                }
                Ok(Err(e)) => return Err(format!("posting on {} {}: {e}", s.kind, s.name)),
                Err(_) => {
                    return Err(format!(
                        "posting on {} {}: no answer within {:?}",
                        s.kind, s.name, self.timeout
                    ))
                }
            }
        }
        Ok(n)
    }
}

fn note(s: &Skipped, node: &str) -> String {
    let reach = if s.kind == GLOBAL_POLICY {
        "the cluster"
    } else {
        "its namespace"
    };
    let mut n = format!(
        "cannot be used on node {node}: {}. In its place, the pods it selects are isolated ({}) \
         until it is fixed (every pod of {reach} when its selector cannot be used)",
        s.reason,
        s.isolated.join(", ")
    );
    if n.len() > NOTE_MAX {
        let mut cut = NOTE_MAX;
        while !n.is_char_boundary(cut) {
            cut -= 1;
        }
        n.truncate(cut);
    }
    n
}

/// The policy an Event is about when its object is not at hand, from the
/// kind and name the reconcile reports (`NetworkPolicy
/// (networking.k8s.io/v1)`, `ns/name`).
fn reference(s: &Skipped) -> ObjectReference {
    let (kind, api_version) = match s.kind.split_once(" (") {
        Some((k, v)) => (k, v.trim_end_matches(')')),
        None => (s.kind.as_str(), "projectcalico.org/v3"),
    };
    let (namespace, name) = match s.name.split_once('/') {
        Some((ns, n)) => (Some(ns.to_owned()), n),
        None => (None, s.name.as_str()),
    };
    ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: Some(name.to_owned()),
        namespace,
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    //! Posting against a mock API server: what is posted, what is not
    //! posted again, and failures that leave the rest for later.
    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock::{self, Handle};

    type Mock = Handle<Request<Body>, Response<Body>>;

    fn skipped(kind: &str, name: &str, reason: &str) -> Skipped {
        Skipped {
            kind: kind.into(),
            name: name.into(),
            reason: reason.into(),
            isolated: vec!["ingress".into()],
        }
    }

    fn unusable(name: &str, rv: &str, reason: &str) -> Unusable {
        let s = skipped(CALICO_POLICY, &format!("shop/{name}"), reason);
        let mut regarding = reference(&s);
        regarding.uid = Some(format!("uid-{name}"));
        regarding.resource_version = Some(rv.into());
        Unusable {
            skipped: s,
            regarding,
        }
    }

    /// The next request, answered with `code`: its method, path and body.
    async fn answer(h: &mut Mock, code: StatusCode) -> (String, String, serde_json::Value) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), h.next_request())
            .await
            .expect("nothing was posted")
            .expect("mock closed");
        let (parts, body) = req.into_parts();
        let body = body.collect_bytes().await.expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
        let reply = if code.is_success() {
            v.clone()
        } else {
            json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                   "message": "no", "reason": "Forbidden", "code": code.as_u16()})
        };
        send.send_response(
            Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        (parts.method.to_string(), parts.uri.path().to_owned(), v)
    }

    async fn nothing_asked(h: &mut Mock) {
        let r = tokio::time::timeout(Duration::from_millis(300), h.next_request()).await;
        assert!(r.is_err(), "an unexpected request");
    }

    #[tokio::test]
    async fn each_policy_is_reported_once_per_trouble() {
        let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
        let mut ev = PolicyEvents::new(kube::Client::new(svc, "default"), "n1");
        let a = unusable("a", "1", "an http match");
        let list = vec![a.clone()];
        let post = tokio::spawn(async move {
            let n = ev.post(&list).await;
            (ev, list, n)
        });
        let (method, path, body) = answer(&mut h, StatusCode::CREATED).await;
        let (mut ev, list, n) = post.await.unwrap();
        assert_eq!(n, Ok(1));
        assert_eq!(method, "POST");
        assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/shop/events");
        assert_eq!(body["reason"], REASON);
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["reportingController"], CONTROLLER);
        assert_eq!(body["reportingInstance"], "n1");
        assert_eq!(body["regarding"]["name"], "a");
        assert_eq!(body["regarding"]["uid"], "uid-a");
        let note = body["note"].as_str().unwrap();
        assert!(
            note.contains("an http match") && note.contains("isolated (ingress)"),
            "{note}"
        );

        // the next reconciles find it as it was: nothing is posted
        for _ in 0..3 {
            assert_eq!(ev.post(&list).await, Ok(0));
        }
        nothing_asked(&mut h).await;

        // it changes and is still unusable: reported again
        let list = vec![unusable("a", "2", "an http match")];
        let post = tokio::spawn(async move {
            let n = ev.post(&list).await;
            (ev, n)
        });
        answer(&mut h, StatusCode::CREATED).await;
        let (mut ev, n) = post.await.unwrap();
        assert_eq!(n, Ok(1));
        // fixed, then broken again the same way: reported again
        assert_eq!(ev.post(&[]).await, Ok(0));
        let post = tokio::spawn(async move {
            let n = ev.post(&[a]).await;
            (ev, n)
        });
        answer(&mut h, StatusCode::CREATED).await;
        assert_eq!(post.await.unwrap().1, Ok(1));
    }

    #[tokio::test]
    async fn failures_leave_the_rest_for_the_next_round() {
        let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
        let mut ev = PolicyEvents::new(kube::Client::new(svc, "default"), "n1");
        ev.timeout = Duration::from_millis(300);
        let list = vec![unusable("a", "1", "x"), unusable("b", "1", "y")];

        // forbidden (no RBAC for Events): the round fails at once
        let l = list.clone();
        let post = tokio::spawn(async move {
            let n = ev.post(&l).await;
            (ev, n)
        });
        answer(&mut h, StatusCode::FORBIDDEN).await;
        let (mut ev, n) = post.await.unwrap();
        assert!(n.as_ref().is_err_and(|e| e.contains("shop/a")), "{n:?}");
        nothing_asked(&mut h).await;

        // no answer at all: the round ends after the timeout
        let l = list.clone();
        let post = tokio::spawn(async move {
            let n = ev.post(&l).await;
            (ev, n)
        });
        let (_req, _send) = h.next_request().await.expect("a post");
        let (mut ev, n) = post.await.unwrap();
        assert!(n.as_ref().is_err_and(|e| e.contains("no answer")), "{n:?}");

        // one Event refused for itself does not hold back the others
        let l = list.clone();
        let post = tokio::spawn(async move {
            let n = ev.post(&l).await;
            (ev, n)
        });
        answer(&mut h, StatusCode::UNPROCESSABLE_ENTITY).await;
        let (_, _, body) = answer(&mut h, StatusCode::CREATED).await;
        assert_eq!(body["regarding"]["name"], "b");
        let (mut ev, n) = post.await.unwrap();
        assert_eq!(n, Ok(1));
        // and neither is posted again
        assert_eq!(ev.post(&list).await, Ok(0));
        nothing_asked(&mut h).await;
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        assert_eq!(retry(1), Duration::from_secs(2));
        assert!(retry(3) > retry(2));
        assert_eq!(retry(100), Duration::from_secs(60));
    }

    #[test]
    fn events_name_the_policy_as_the_api_knows_it() {
        let r = reference(&skipped(K8S_POLICY, "shop/a", "x"));
        assert_eq!(r.api_version.as_deref(), Some("networking.k8s.io/v1"));
        assert_eq!(r.kind.as_deref(), Some("NetworkPolicy"));
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(r.name.as_deref(), Some("a"));
        let g = reference(&skipped(GLOBAL_POLICY, "deny-all", "x"));
        assert_eq!(g.api_version.as_deref(), Some("projectcalico.org/v3"));
        assert_eq!(g.namespace, None);
        assert_eq!(g.name.as_deref(), Some("deny-all"));

        // with the object at hand: the version it was read from, its uid
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "a", "namespace": "shop", "uid": "u1", "resourceVersion": "7"}
        }))
        .unwrap();
        let other: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "a", "namespace": "other", "uid": "u2", "resourceVersion": "8"}
        }))
        .unwrap();
        let inputs = Inputs {
            calico_policies: vec![Arc::new(other), Arc::new(obj)],
            ..Inputs::default()
        };
        let ar = ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("crd.projectcalico.org", "v1", "NetworkPolicy"),
            "networkpolicies",
        );
        let skipped = [
            skipped(CALICO_POLICY, "shop/a", "x"),
            Skipped {
                isolated: vec![],
                ..skipped(CALICO_POLICY, "shop/left-out", "x")
            },
        ];
        let u = super::unusable(&skipped, &inputs, &[(Kind::CalicoPolicies, ar)]);
        assert_eq!(u.len(), 1, "only stand-ins are reported: {u:?}");
        let r = &u[0].regarding;
        assert_eq!(r.api_version.as_deref(), Some("crd.projectcalico.org/v1"));
        assert_eq!(r.kind.as_deref(), Some("NetworkPolicy"));
        assert_eq!(r.namespace.as_deref(), Some("shop"));
        assert_eq!(r.uid.as_deref(), Some("u1"));
        assert_eq!(r.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn notes_say_why_and_what_is_isolated_within_the_bound() {
        let n = note(&skipped(GLOBAL_POLICY, "p", "an http match"), "n1");
        assert!(
            n.contains("n1") && n.contains("an http match") && n.contains("isolated (ingress)"),
            "{n}"
        );
        let long = note(&skipped(GLOBAL_POLICY, "p", &"é".repeat(800)), "n1");
        assert!(long.len() <= NOTE_MAX);
    }
}

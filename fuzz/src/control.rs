//! The control protocol without a switch: a `Switch` needs the EAL (its
//! mempool), so this runs what `handle_line` does before it takes the
//! switch (the request's parsing) and the checks that need no switch: each
//! object's `validate`, the policy compiler over a document's namespaces,
//! pods and policies, the Service table a document's Services make. A
//! request must also survive the client's encoding unchanged, since vsctl
//! and the agent encode what vswitchd decodes.

use api::{Desired, Request};
use vswitch::control::socket::parse_request;
use vswitch::tables::services::Services;

/// What the switch would check of a document before it touches any state.
pub fn check_desired(doc: &Desired) {
    for p in &doc.pools {
        let _ = p.validate();
    }
    for n in &doc.nodes {
        let _ = n.validate();
    }
    for e in &doc.endpoints {
        let _ = e.validate();
    }
    if let Some(svcs) = &doc.services {
        if svcs.iter().all(|s| s.validate().is_ok()) {
            let t = Services::build(svcs, |_| true);
            std::hint::black_box(&t);
        }
    }
    if doc.namespaces.is_some() || doc.policies.is_some() || doc.pods.is_some() {
        let world = policy::compile::World {
            namespaces: doc.namespaces.clone().unwrap_or_default(),
            endpoints: doc.pods.clone().unwrap_or_default(),
            policies: doc.policies.clone().unwrap_or_default(),
        };
        let _ = policy::compile::Compiled::compile(&world);
    }
}

/// The request encoded as clients do and decoded again is the same request.
pub fn round_trip(req: &Request) {
    let line = serde_json::to_string(req).expect("a request encodes");
    match parse_request(&line) {
        Ok(back) => assert_eq!(&back, req, "changed on the way: {line}"),
        Err(e) => panic!("a request encoded as {line} is refused: {e:?}"),
    }
}

pub fn run(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let req = match parse_request(line) {
        Ok(r) => r,
        Err(msg) => {
            // the error reply itself must encode
            let resp = api::Response::error(api::ErrorCode::Invalid, msg);
            serde_json::to_string(&resp).expect("an error reply encodes");
            return;
        }
    };
    match &req {
        Request::PortAdd { port } => {
            let _ = port.validate();
        }
        Request::EndpointSet { endpoint } => {
            let _ = endpoint.validate();
        }
        Request::Apply { doc } => check_desired(doc),
        _ => {}
    }
    round_trip(&req);
}

//! `vsctl apply -f` and `vsctl delete -f` on a file, and the simulator's
//! loader (`vsctl policy simulate -f`): parse, then what the document
//! becomes (the request vsctl sends, checked as the switch would, and the
//! policy compiled).

use api::Request;
use ctl::apply::{parse, Verb};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(objects) = parse(&text, Verb::Apply) {
        let mut doc = objects.desired.clone();
        doc.namespaces = Some(
            objects
                .namespaces
                .iter()
                .map(|p| p.object.clone())
                .collect(),
        );
        doc.policies = Some(objects.policies.iter().map(|p| p.object.clone()).collect());
        crate::control::check_desired(&doc);
        crate::control::round_trip(&Request::Apply { doc });
    }
    let _ = parse(&text, Verb::Delete);
    let _ = ctl::manifest::parse(&text);
    if let Ok(world) = policy::load::load_yaml(&text) {
        let _ = policy::compile::Compiled::compile(&world);
    }
}

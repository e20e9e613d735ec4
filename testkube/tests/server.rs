//! The harness itself: a server starts, serves the CRDs, survives a restart
//! with its data.

#[test]
fn starts_serves_crds_and_restarts_with_its_data() {
    let s = testkube::KubeServer::start();
    let crds = s.kubectl_ok(&["get", "crd", "-o", "name"]);
    assert!(crds.contains("ipamblocks.vswitch.dev"), "{crds}");
    s.kubectl_ok(&["create", "namespace", "kept"]);
    s.stop_server();
    assert!(!s.kubectl(&["get", "ns"]).status.success());
    s.start_server();
    let ns = s.kubectl_ok(&["get", "ns", "kept", "-o", "name"]);
    assert_eq!(ns.trim(), "namespace/kept");
}

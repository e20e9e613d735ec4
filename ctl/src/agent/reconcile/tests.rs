use super::*;
use serde_json::json;

fn obj(v: Value) -> Arc<DynamicObject> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn pod(ns: &str, name: &str, node: &str, ip: Option<&str>, labels: Value) -> Arc<DynamicObject> {
    let mut status = json!({"phase": "Running"});
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    obj(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "uid": "u",
                     "resourceVersion": "7"},
        "spec": {"nodeName": node, "serviceAccountName": "sa",
                 "containers": [{"name": "c", "image": "i",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": status,
    }))
}

fn base() -> Inputs {
    Inputs {
        node: "n1".into(),
        endpoint_source: Some(EndpointSource::SliceV1beta1),
        ..Inputs::default()
    }
}

#[test]
fn pods_local_remote_and_skipped() {
    let mut i = base();
    let mut done = pod("x", "done", "n1", Some("10.0.0.9"), json!({}));
    Arc::make_mut(&mut done).data["status"]["phase"] = json!("Succeeded");
    let mut host = pod("x", "host", "n1", Some("192.168.1.1"), json!({}));
    Arc::make_mut(&mut host).data["spec"]["hostNetwork"] = json!(true);
    i.pods = vec![
        pod("x", "b", "n2", Some("10.0.1.2"), json!({"app": "b"})),
        pod("x", "a", "n1", Some("10.0.0.1"), json!({"app": "a"})),
        pod("x", "pending", "n1", None, json!({"app": "p"})),
        pod("x", "far", "n2", None, json!({})),
        pod("x", "bad", "n1", Some("nope"), json!({})),
        done,
        host,
    ];
    let r = reconcile(&i);
    let pods = r.doc.pods.unwrap();
    let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    // this node's pods are named before they have an address (their
    // interfaces wait for it), other nodes' are of no use without one
    assert_eq!(names, ["x/a", "x/b", "x/pending"]);
    assert!(pods[0].local && !pods[1].local);
    assert!(pods[2].local && pods[2].ips.is_empty());
    assert_eq!(pods[2].labels["app"], "p");
    assert_eq!(pods[0].ips, [Ipv4Addr::new(10, 0, 0, 1)]);
    assert_eq!(pods[0].service_account.as_deref(), Some("sa"));
    assert_eq!(pods[0].named_ports[0].port, 8080);
    assert_eq!(pods[0].labels["app"], "a");
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].name, "x/bad");
    assert!(r.skipped[0].reason.contains("nope"), "{:?}", r.skipped);
}

#[test]
fn every_list_is_given_and_prune_is_set() {
    let r = reconcile(&base());
    let d = r.doc;
    assert!(d.prune);
    assert_eq!(d.namespaces, Some(vec![]));
    assert_eq!(d.policies, Some(vec![]));
    assert_eq!(d.pods, Some(vec![]));
    assert_eq!(d.services, Some(vec![]));
    assert!(d.endpoints.is_empty());
}

#[test]
fn nodes_addresses_tunnels_and_blocks() {
    let mut i = base();
    i.nodes = vec![
        obj(json!({"metadata": {"name": "n2", "annotations": {
            ANN_IPV4: "192.168.1.11/24",
            ANN_VXLAN_IP: "10.65.1.0",
            ANN_VXLAN_MAC: "66:00:00:00:00:02",
            ANN_IPIP_IP: "10.65.1.1"}},
          "status": {"addresses": [{"type": "InternalIP", "address": "172.16.0.2"}]}})),
        obj(json!({"metadata": {"name": "n1"},
          "status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                   {"type": "InternalIP", "address": "fd00::1"},
                                   {"type": "InternalIP", "address": "172.16.0.1"}]}})),
        obj(json!({"metadata": {"name": "bad", "annotations": {ANN_VXLAN_MAC: "zz"}}})),
    ];
    i.blocks = vec![
        obj(
            json!({"metadata": {"name": "b1"}, "spec": {"cidr": "10.65.1.0/26", "affinity": "host:n2"}}),
        ),
        obj(
            json!({"metadata": {"name": "b0"}, "spec": {"cidr": "10.65.0.64/26", "affinity": "host:n2"}}),
        ),
        obj(
            json!({"metadata": {"name": "b2"}, "spec": {"cidr": "10.65.2.0/26", "affinity": "host:n1"}}),
        ),
        obj(json!({"metadata": {"name": "b3"}, "spec": {"cidr": "10.65.3.0/26"}})),
        obj(
            json!({"metadata": {"name": "b4"}, "spec": {"cidr": "10.65.4.0/26", "affinity": "host:n1", "deleted": true}}),
        ),
    ];
    let r = reconcile(&i);
    let n = &r.doc.nodes;
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].name, "n1");
    assert_eq!(n[0].addresses, ["172.16.0.1/32"]);
    assert_eq!(n[0].blocks, ["10.65.2.0/26"]);
    assert_eq!(n[1].addresses, ["192.168.1.11/24"]);
    assert_eq!(n[1].blocks, ["10.65.0.64/26", "10.65.1.0/26"]);
    assert_eq!(n[1].vxlan_tunnel_ip, Some(Ipv4Addr::new(10, 65, 1, 0)));
    assert_eq!(
        n[1].vxlan_tunnel_mac.unwrap().to_string(),
        "66:00:00:00:00:02"
    );
    assert_eq!(n[1].ipip_tunnel_ip, Some(Ipv4Addr::new(10, 65, 1, 1)));
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].name, "bad");
}

#[test]
fn pools_from_calico_fields() {
    let mut i = base();
    i.pools = vec![
        obj(json!({"metadata": {"name": "p2"}, "spec": {"cidr": "10.66.0.0/16"}})),
        obj(json!({"metadata": {"name": "p1"}, "spec": {
            "cidr": "10.65.0.0/16", "blockSize": 28, "ipipMode": "CrossSubnet",
            "vxlanMode": "Never", "natOutgoing": true, "disabled": false,
            "nodeSelector": "all()", "allowedUses": ["Workload"]}})),
        obj(json!({"metadata": {"name": "both"}, "spec": {
            "cidr": "10.67.0.0/16", "ipipMode": "Always", "vxlanMode": "Always"}})),
        obj(json!({"metadata": {"name": "nocidr"}, "spec": {}})),
    ];
    let r = reconcile(&i);
    let p = &r.doc.pools;
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].name, "p1");
    assert_eq!(p[0].block_size, Some(28));
    assert_eq!(p[0].ipip_mode, Some(api::EncapMode::CrossSubnet));
    assert!(p[0].nat_outgoing);
    assert_eq!(p[0].node_selector.as_deref(), Some("all()"));
    assert_eq!(p[1], IpPool::new("p2", "10.66.0.0/16"));
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(skipped, ["both", "nocidr"]);
}

#[test]
fn namespaces_and_policies_with_bad_ones_isolating_in_their_place() {
    let mut i = base();
    i.namespaces = vec![
        obj(json!({"metadata": {"name": "x", "labels": {"team": "a"}}})),
        obj(json!({"metadata": {"name": "default"}})),
    ];
    i.pods = vec![pod("x", "a", "n1", Some("10.0.0.1"), json!({"app": "a"}))];
    i.k8s_policies = vec![obj(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "x"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}))];
    i.calico_policies = vec![
        obj(json!({"metadata": {"name": "good", "namespace": "x"},
                   "spec": {"selector": "app == 'a'", "tier": "t1", "order": 10,
                            "ingress": [{"action": "Allow", "source": {"selector": "all()"}}]}})),
        obj(json!({"metadata": {"name": "badsel", "namespace": "x"},
                   "spec": {"selector": "app == ", "ingress": [{"action": "Allow"}]}})),
        obj(json!({"metadata": {"name": "typo", "namespace": "x"},
                   "spec": {"ingres": []}})),
        obj(json!({"metadata": {"name": "notier", "namespace": "x"},
                   "spec": {"tier": "missing", "selector": "all()"}})),
    ];
    i.global_policies = vec![obj(json!({"metadata": {"name": "g"},
        "spec": {"selector": "all()", "types": ["Egress"],
                 "egress": [{"action": "Allow"}]}}))];
    i.tiers = vec![obj(
        json!({"metadata": {"name": "t1"}, "spec": {"order": 100}}),
    )];
    let r = reconcile(&i);
    let ns = r.doc.namespaces.unwrap();
    assert_eq!(ns[0].name, "default");
    assert_eq!(ns[1].labels["team"], "a");
    let pols = r.doc.policies.unwrap();
    let names: Vec<String> = pols.iter().map(|p| p.display_name()).collect();
    assert_eq!(
        names,
        ["t1", "x/deny", "x/badsel", "x/good", "x/notier", "x/typo", "g"],
        "{:?}",
        r.skipped
    );
    let skipped: Vec<&str> = r.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        skipped,
        ["x/badsel", "x/notier", "x/typo"],
        "{:?}",
        r.skipped
    );
    assert!(r.skipped.iter().all(|s| s.isolated == ["ingress"]));
    assert!(r.skipped[1].reason.contains("missing"), "{:?}", r.skipped);
    // the stand-ins have no rules; a selector that does not parse isolates
    // the whole namespace, a missing tier puts it in the default one
    let calico = |name: &str| match pols.iter().find(|p| p.display_name() == name) {
        Some(Policy::Calico(c)) => c.spec.clone(),
        other => panic!("{name}: {other:?}"),
    };
    let badsel = calico("x/badsel");
    assert!(badsel.ingress.is_empty() && badsel.selector.is_none());
    assert_eq!(calico("x/notier").tier, None);
    assert_eq!(calico("x/notier").selector.as_deref(), None);
    assert!(calico("x/typo").ingress.is_empty());
    // what is left compiles, as vswitchd will
    let world = policy::World {
        namespaces: ns,
        endpoints: r.doc.pods.unwrap(),
        policies: pols,
    };
    policy::Compiled::compile(&world).unwrap();
}

/// A rule the switch cannot carry out (an L7 `http` match) leaves the pods
/// the policy selects isolated in its directions, and only those.
#[test]
fn a_policy_with_an_http_rule_isolates_what_it_selects() {
    let mut i = base();
    i.namespaces = vec![obj(json!({"metadata": {"name": "x"}}))];
    i.pods = vec![
        pod("x", "web", "n1", Some("10.0.0.1"), json!({"app": "web"})),
        pod("x", "db", "n1", Some("10.0.0.2"), json!({"app": "db"})),
    ];
    i.calico_policies = vec![obj(json!({"metadata": {"name": "l7", "namespace": "x"},
        "spec": {"selector": "app == 'web'", "types": ["Ingress", "Egress"],
                 "ingress": [{"action": "Allow", "http": {"methods": ["GET"]}}],
                 "egress": [{"action": "Allow"}]}}))];
    let r = reconcile(&i);
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert_eq!(r.skipped[0].name, "x/l7");
    assert!(r.skipped[0].reason.contains("http"), "{:?}", r.skipped);
    assert_eq!(r.skipped[0].isolated, ["ingress", "egress"]);
    let world = policy::World {
        namespaces: r.doc.namespaces.unwrap(),
        endpoints: r.doc.pods.unwrap(),
        policies: r.doc.policies.unwrap(),
    };
    let sim = policy::simulate::Simulator::new(&world).unwrap();
    let m = sim.matrices(&policy::simulate::ProtoPort::tcp(80));
    // pods sorted: x/db, x/web. web talks to nobody and nobody to web; db
    // (not selected) keeps talking to itself
    assert_eq!(sim.pods(), ["x/db", "x/web"]);
    assert_eq!(m.combined, ["AB", "BB"]);
}

fn service(name: &str, spec: Value) -> Arc<DynamicObject> {
    obj(json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": "x"}, "spec": spec}))
}

fn slice_v1beta1(svc: &str, name: &str, ports: Value, endpoints: Value) -> Arc<DynamicObject> {
    obj(
        json!({"apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
               "metadata": {"name": name, "namespace": "x",
                            "labels": {SERVICE_NAME_LABEL: svc}},
               "addressType": "IPv4", "ports": ports, "endpoints": endpoints}),
    )
}

#[test]
fn services_with_slices() {
    let mut i = base();
    i.services = vec![
        service(
            "web",
            json!({
            "type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "externalIPs": ["192.168.1.100"],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080},
                      {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353, "nodePort": 30053}]}),
        ),
        service(
            "headless",
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
        ),
        service(
            "ext",
            json!({"type": "ExternalName", "externalName": "a.b"}),
        ),
        service(
            "plain",
            json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80, "nodePort": 31000}]}),
        ),
        service(
            "bad",
            json!({"clusterIP": "10.96.0.12", "ports": [{"port": 0}]}),
        ),
    ];
    i.endpoints = vec![
        slice_v1beta1(
            "web",
            "web-1",
            json!([{"name": "http", "port": 8080, "protocol": "TCP"},
                   {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                    "topology": {"kubernetes.io/hostname": "n1"}},
                   {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                   {"addresses": ["10.0.0.3"]}]),
        ),
        slice_v1beta1(
            "web",
            "web-2",
            json!([{"name": "http", "port": 8081, "protocol": "TCP"}]),
            json!([{"addresses": ["10.0.1.1"], "conditions": {}}]),
        ),
        slice_v1beta1(
            "plain",
            "plain-1",
            json!([{"port": 80}]),
            json!([{"addresses": ["10.0.2.1"]}]),
        ),
    ];
    let r = reconcile(&i);
    let s = r.doc.services.unwrap();
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["x/plain", "x/web"]);
    let web = &s[1];
    assert_eq!(
        web.cluster_ips,
        [
            Ipv4Addr::new(10, 96, 0, 10),
            Ipv4Addr::new(192, 168, 1, 100)
        ]
    );
    assert_eq!(web.affinity_timeout, Some(60));
    assert_eq!(web.ports[0].node_port, Some(30080));
    let http: Vec<(String, u16, Option<String>)> = web.ports[0]
        .backends
        .iter()
        .map(|b| (b.ip.to_string(), b.port, b.node.clone()))
        .collect();
    assert_eq!(
        http,
        [
            ("10.0.0.1".into(), 8080, Some("n1".into())),
            ("10.0.0.3".into(), 8080, None),
            ("10.0.1.1".into(), 8081, None),
        ]
    );
    assert_eq!(web.ports[1].protocol, K8sProtocol::Udp);
    assert_eq!(web.ports[1].backends.len(), 2);
    assert!(web.ports[1].backends.iter().all(|b| b.port == 5353));
    // a ClusterIP Service has no node port whatever the spec says
    assert_eq!(s[0].ports[0].node_port, None);
    assert_eq!(s[0].affinity_timeout, None);
    assert_eq!(s[0].ports[0].backends.len(), 1);
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].name, "x/bad");
}

#[test]
fn services_with_v1_slices_and_endpoints() {
    let mut i = base();
    i.services = vec![service(
        "web",
        json!({"clusterIP": "10.96.0.10",
        "sessionAffinity": "ClientIP", "ports": [{"port": 80, "targetPort": 8080}]}),
    )];
    i.endpoint_source = Some(EndpointSource::SliceV1);
    i.endpoints = vec![obj(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-a", "namespace": "x", "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": "n2", "conditions": {"ready": true}}]}),
    )];
    let s = reconcile(&i).doc.services.unwrap();
    assert_eq!(s[0].affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
    assert_eq!(s[0].ports[0].backends[0].node.as_deref(), Some("n2"));

    i.endpoint_source = Some(EndpointSource::Endpoints);
    i.endpoints = vec![obj(json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "x"},
        "subsets": [{"addresses": [{"ip": "10.0.0.5", "nodeName": "n1"}],
                     "notReadyAddresses": [{"ip": "10.0.0.6"}],
                     "ports": [{"port": 8080, "protocol": "TCP"}]}]}))];
    let s = reconcile(&i).doc.services.unwrap();
    let b = &s[0].ports[0].backends;
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].ip, b[0].port), (Ipv4Addr::new(10, 0, 0, 5), 8080));
}

#[test]
fn same_stores_same_document() {
    let mut i = base();
    i.pods = vec![
        pod("x", "b", "n2", Some("10.0.1.2"), json!({})),
        pod("x", "a", "n1", Some("10.0.0.1"), json!({})),
    ];
    let a = reconcile(&i).doc;
    i.pods.reverse();
    assert_eq!(reconcile(&i).doc, a);
}

//! Pools and pod attachments through a real vswitchd: `apply` is all or
//! nothing, attachments get distinct addresses from the node's block, and a
//! detach gives everything back.
//!
//! Needs root; run with `cargo test -p vswitch --release --test pods`.

use api::{Desired, EncapMode, IpPool, Reply, Request};
use testsupport::*;

fn pool(name: &str, cidr: &str, block: Option<u8>) -> IpPool {
    IpPool {
        block_size: block,
        ..IpPool::new(name, cidr)
    }
}

fn apply(sw: &Switch, pools: Vec<IpPool>) -> Result<(), String> {
    match sw.client().call(&Request::Apply {
        doc: Desired {
            pools,
            ..Default::default()
        },
    }) {
        Ok(Reply::Done) => Ok(()),
        Ok(r) => panic!("apply: {r:?}"),
        Err(api::ClientError::Refused { message, .. }) => Err(message),
        Err(e) => panic!("apply: {e}"),
    }
}

fn pools(sw: &Switch) -> Vec<IpPool> {
    match sw.call(&Request::PoolList {}) {
        Reply::Pools(v) => v,
        r => panic!("pool-list: {r:?}"),
    }
}

#[test]
fn apply_is_all_or_nothing_and_pods_get_distinct_addresses() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    apply(&sw, vec![pool("p1", "10.67.0.0/16", Some(26))]).expect("a valid pool applies");
    let before = pools(&sw);
    assert_eq!(before.len(), 1);

    // each bad document is refused whole: the good pool beside it is not applied
    let mut both = pool("both", "10.80.0.0/16", None);
    both.ipip_mode = Some(EncapMode::Always);
    both.vxlan_mode = Some(EncapMode::Always);
    for (bad, want) in [
        (pool("bad-cidr", "10.300.0.0/16", None), "10.300.0.0/16"),
        (pool("tiny", "10.81.0.0/16", Some(33)), "block"),
        (pool("overlap", "10.67.5.0/24", None), "overlap"),
        (both, "cannot both"),
    ] {
        let e = apply(&sw, vec![pool("good", "10.90.0.0/16", None), bad]).unwrap_err();
        assert!(e.contains(want), "{e}");
        assert_eq!(pools(&sw), before, "nothing of a refused document applied");
    }

    // nodes and endpoints go in the same document, and a bad endpoint (on a
    // port that does not exist) refuses all of it
    let node = api::Node::new("node-2", &["192.168.7.2/24"]);
    let ep = api::EndpointSpec {
        port: "no-such-port".into(),
        mac: "02:00:00:00:07:01".parse().unwrap(),
        ips: vec!["10.67.9.9".parse().unwrap()],
        pod: None,
        labels: Default::default(),
        namespace: None,
        service_account: None,
        named_ports: Vec::new(),
    };
    let refused = sw.client().call(&Request::Apply {
        doc: Desired {
            pools: vec![pool("good", "10.90.0.0/16", None)],
            nodes: vec![node.clone()],
            endpoints: vec![ep],
            ..Default::default()
        },
    });
    assert!(
        matches!(&refused, Err(api::ClientError::Refused { message, .. }) if message.contains("no-such-port")),
        "{refused:?}"
    );
    assert_eq!(pools(&sw), before);
    assert_eq!(sw.call(&Request::NodeList {}), Reply::Nodes(vec![]));
    let bad_node = api::Node::new("node-3", &["192.168.7.300/24"]);
    let e = sw.client().call(&Request::Apply {
        doc: Desired {
            nodes: vec![bad_node],
            ..Default::default()
        },
    });
    assert!(matches!(e, Err(api::ClientError::Refused { .. })), "{e:?}");
    assert_eq!(
        sw.call(&Request::Apply {
            doc: Desired {
                nodes: vec![node.clone()],
                ..Default::default()
            }
        }),
        Reply::Done
    );
    assert_eq!(sw.call(&Request::NodeList {}), Reply::Nodes(vec![node]));

    // three pods: distinct addresses from one /26 block of this node
    let a: Vec<api::Attachment> = ["c1", "c2", "c3"]
        .iter()
        .map(|c| attach_tap(&sw, c))
        .collect();
    let ips: Vec<_> = a.iter().map(|a| a.ips[0]).collect();
    assert_eq!(ips.len(), 3);
    assert!(
        ips[0] != ips[1] && ips[1] != ips[2] && ips[0] != ips[2],
        "{ips:?}"
    );
    let blocks = match sw.call(&Request::BlockList {}) {
        Reply::Blocks(b) => b,
        r => panic!("{r:?}"),
    };
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0].allocated, 3);
    assert_eq!(blocks[0].size, 64);
    let net: ipnetwork::Ipv4Network = blocks[0].cidr.parse().expect("block CIDR");
    assert!(ips.iter().all(|ip| net.contains(*ip)), "{ips:?} in {net}");
    // a repeated ADD returns the same attachment
    assert_eq!(attach_tap(&sw, "c2"), a[1]);

    // detach gives the address and the port back; twice is fine
    for _ in 0..2 {
        assert_eq!(
            sw.call(&Request::PodDetach {
                container_id: "c2".into(),
                ifname: "eth0".into()
            }),
            Reply::Done
        );
    }
    assert!(!sw.ports().iter().any(|p| p.name == a[1].port));
    match sw.client().call(&Request::PodGet {
        container_id: "c2".into(),
        ifname: "eth0".into(),
    }) {
        Err(api::ClientError::Refused { code, .. }) => assert_eq!(code, api::ErrorCode::NotFound),
        r => panic!("pod-get after detach: {r:?}"),
    }
    // its address is the next one handed out
    assert_eq!(attach_tap(&sw, "c4").ips, a[1].ips);

    // GC detaches what the runtime no longer lists
    let live = vec![("c1".to_owned(), "eth0".to_owned())];
    match sw.call(&Request::PodGc {
        network: None,
        live,
    }) {
        Reply::Released(mut v) => {
            v.sort();
            assert_eq!(
                v,
                vec![
                    ("c3".to_owned(), "eth0".to_owned()),
                    ("c4".to_owned(), "eth0".to_owned())
                ]
            );
        }
        r => panic!("{r:?}"),
    }
    match sw.call(&Request::BlockList {}) {
        Reply::Blocks(b) => assert_eq!(b[0].allocated, 1),
        r => panic!("{r:?}"),
    }
}

/// A pod's vhost socket goes only under `--vhost-socket-root` in either
/// mode, a port never removes a socket that vswitchd did not make, and a
/// client-mode pod's socket is never made or removed by the switch.
#[test]
fn vhost_sockets_stay_in_their_root_and_foreign_sockets_are_left_alone() {
    let _g = serial();
    must_be_root();
    let sw = Switch::start(&[]);
    sw.apply_pool("main", "10.217.0.0/24", 28);
    let attach_as = |cid: &str, dir: &str, mode: Option<api::VhostMode>| {
        sw.client().call(&Request::PodAttach {
            attach: api::PodAttach {
                container_id: cid.into(),
                ifname: "eth0".into(),
                network: None,
                kind: api::AttachKind::Vhost,
                pod: None,
                pools: vec![],
                ips: None,
                socket_dir: Some(dir.into()),
                netns: None,
                vhost_mode: mode,
            },
        })
    };
    let attach = |cid: &str, dir: &str| attach_as(cid, dir, None);
    let outside = format!("/tmp/vsw-outside-{}", std::process::id());
    let escape = format!("{}/pods/../../etc", sw.dir.display());
    let link = sw.dir.join("out");
    std::os::unix::fs::symlink("/tmp", &link).expect("symlink");
    let through_link = format!("{}/x", link.display());
    for (dir, why) in [
        (outside.as_str(), "outside the vhost socket root"),
        (escape.as_str(), "'..'"),
        (through_link.as_str(), "outside the vhost socket root"),
    ] {
        for mode in [None, Some(api::VhostMode::Client)] {
            match attach_as("evil", dir, mode) {
                Err(api::ClientError::Refused { message, .. }) => {
                    assert!(message.contains(why), "{dir} ({mode:?}): {message}")
                }
                r => panic!("{dir} ({mode:?}): attached: {r:?}"),
            }
        }
    }
    assert!(
        !std::path::Path::new(&outside).exists(),
        "nothing made outside"
    );
    assert!(sw.port_names().is_empty());
    assert_eq!(sw.allocated(), 0, "the refused attaches hold no address");
    // inside the root it works
    let ok = format!("{}/pods/good", sw.dir.display());
    assert!(matches!(attach("good", &ok), Ok(Reply::Attachment(_))));

    // client mode: the same path convention, a vhost-client port, and the
    // socket left to the pod, which has not made it yet
    let cdir = format!("{}/pods/client", sw.dir.display());
    let a = match attach_as("client", &cdir, Some(api::VhostMode::Client)) {
        Ok(Reply::Attachment(a)) => a,
        r => panic!("client-mode attach: {r:?}"),
    };
    let csock = format!("{cdir}/eth0.sock");
    assert_eq!(a.socket.as_deref(), Some(csock.as_str()));
    assert_eq!(a.vhost_mode, Some(api::VhostMode::Client));
    let port = sw
        .ports()
        .into_iter()
        .find(|p| p.name == a.port)
        .expect("the client-mode port");
    assert_eq!(
        (port.kind, port.path.as_deref(), port.link_up),
        (api::PortKind::VhostClient, Some(csock.as_str()), false)
    );
    assert!(std::path::Path::new(&cdir).is_dir(), "its directory made");
    assert!(
        !std::path::Path::new(&csock).exists(),
        "the switch made the pod's socket"
    );
    // the same pod in the other mode is refused, not quietly remade
    match attach_as("client", &cdir, None) {
        Err(api::ClientError::Refused { message, .. }) => {
            assert!(message.contains("vhost client already"), "{message}")
        }
        r => panic!("client pod re-attached as a server: {r:?}"),
    }
    assert_eq!(
        attach_as("client", &cdir, Some(api::VhostMode::Client)).ok(),
        Some(Reply::Attachment(a.clone())),
        "a repeated ADD gets the same attachment"
    );
    // the pod's app listening: detaching leaves its socket alone
    let pod_listener = std::os::unix::net::UnixListener::bind(&csock).expect("bind");
    assert_eq!(
        sw.call(&Request::PodDetach {
            container_id: "client".into(),
            ifname: "eth0".into(),
        }),
        Reply::Done
    );
    assert!(
        std::path::Path::new(&csock).exists(),
        "detach removed the pod's socket"
    );
    drop(pod_listener);

    // a socket someone else listens on (or left) at a port's path
    let foreign = sw.dir.join("foreign.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&foreign).expect("bind");
    let r = sw.client().call(&Request::PortAdd {
        port: api::PortSpec {
            name: "f".into(),
            kind: api::PortKind::VhostServer,
            path: Some(foreign.to_string_lossy().into_owned()),
            iface: None,
            pci: None,
        },
    });
    match r {
        Err(api::ClientError::Refused { message, .. }) => {
            assert!(message.contains("did not make"), "{message}")
        }
        r => panic!("port over a foreign socket: {r:?}"),
    }
    assert!(foreign.exists(), "the foreign socket is still there");
}

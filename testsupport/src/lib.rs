//! What the workspace's integration tests share, in one place:
//!
//! - a real vswitchd ([`Switch`], started by [`Switch::start`] or, with
//!   more to say, by [`Vswitchd`]): its own temp dir, control socket, state
//!   dir and EAL prefix; asked through its socket; stopped, killed and
//!   restarted;
//! - pods: `dpdk-testpmd` on virtio-user ([`Pod`], [`start_pods`], the
//!   measured [`phase`]s of the L2 tests; [`Pod::start_listening_reflector`],
//!   a pod that listens on its socket for a vhost-client port and answers
//!   UDP, for tests across restarts), and kernel pods in network namespaces
//!   ([`Netns::wired`], [`attach_tap`], [`Switch::add_tap`]) and their UDP
//!   round trips ([`udp_round_trips`]);
//! - network namespaces ([`Netns`], [`in_ns`], [`ip`]);
//! - underlays between nodes: bridges and a router in namespaces, uplinks,
//!   kernel VXLAN peers, captures read by tshark, IPIP peers, traffic
//!   ([`underlay`]);
//! - the API server ([`KubeServer`], crate testkube) and the node agent
//!   between it and a switch ([`Agent`]);
//! - test frames built and checked with etherparse, independently of the
//!   switch's own wire code ([`frame`], [`ipv4_header`],
//!   [`l4_checksum_ok`]), and sent raw into a switch ([`send_raw`]);
//! - the host: root, tools and hugepages ([`must_be_root`]), one test at a
//!   time ([`serial`]), [`unique`] names, [`wait_for`].
//!
//! Most of this needs root (hugepages, vhost-user sockets, network
//! namespaces, TAP devices). The tests do not skip themselves when run as
//! another user: they fail and say why.

mod frame;
mod host;
mod kube;
mod netns;
mod pod;
mod process;
mod prometheus;
mod switch;
pub mod underlay;

pub use frame::*;
pub use host::*;
pub use kube::*;
pub use netns::*;
pub use pod::*;
pub use process::Bg;
pub use prometheus::Prometheus;
pub use switch::*;

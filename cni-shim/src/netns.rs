//! Wiring a pod's network namespace through netlink and `setns`, as Calico
//! does: the switch's TAP moves into the pod's netns, takes `CNI_IFNAME`, the
//! pod's MAC and MTU, its addresses as /32, and the routes
//! `169.254.1.1 dev IFNAME scope link` and `default via 169.254.1.1 dev IFNAME`.
//!
//! Each step runs on a thread of its own: a thread that enters the pod's
//! netns (setns affects only the calling thread) opens a netlink socket there
//! and drives it from a small current-thread tokio runtime.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What goes into the pod's netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    /// The TAP interface vswitchd made, in the host netns.
    pub host_iface: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub ips: Vec<Ipv4Addr>,
    pub gateway: Ipv4Addr,
}

/// An interface as found in a netns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkState {
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub up: bool,
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// `default via G dev IFNAME` in the main table.
    pub default_via: Option<Ipv4Addr>,
    /// Destinations of /32 link-scope routes through the interface.
    pub link_routes: Vec<Ipv4Addr>,
}

type NlResult<T> = Result<T, String>;

/// Opens `path` and checks that it is a network namespace.
pub fn open_netns(path: &Path) -> NlResult<File> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let fs = nix::sys::statfs::fstatfs(&f)
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    // a namespace file, e.g. /var/run/netns/NAME (a bind mount) or /proc/PID/ns/net
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(format!("{} is not a network namespace", path.display()));
    }
    Ok(f)
}

/// Runs `f` with a netlink handle in the netns at `ns` (or the current one),
/// on a thread of its own.
fn in_netns<T, F, Fut>(ns: Option<File>, f: F) -> NlResult<T>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = NlResult<T>>,
{
    let t = std::thread::spawn(move || -> NlResult<T> {
        if let Some(fd) = &ns {
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot enter the network namespace: {e}"))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| format!("cannot start a netlink runtime: {e}"))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(|e| format!("cannot open a netlink socket: {e}"))?;
            tokio::spawn(conn);
            f(handle).await
        })
    });
    t.join()
        .unwrap_or_else(|_| Err("the netlink thread panicked".to_owned()))
}

fn nl_err(what: impl std::fmt::Display) -> impl FnOnce(rtnetlink::Error) -> String {
    move |e| match e {
        rtnetlink::Error::NetlinkError(m) => format!("{what}: {}", m.to_io()),
        other => format!("{what}: {other}"),
    }
}

async fn link_by_name(h: &Handle, name: &str) -> NlResult<Option<LinkMessage>> {
    let mut s = h.link().get().match_name(name.to_owned()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.raw_code().abs() == nix::errno::Errno::ENODEV as i32 =>
        {
            Ok(None)
        }
        Err(e) => Err(nl_err(format!("looking up interface {name}"))(e)),
    }
}

fn link_mac(l: &LinkMessage) -> Option<[u8; 6]> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
        _ => None,
    })
}

fn link_mtu(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// Moves the TAP into the pod's netns and configures it there. Idempotent:
/// a repeated ADD finds the interface already moved (under either name) and
/// configures it again.
pub fn wire(w: &Wiring) -> NlResult<()> {
    let host_fd = open_netns(&w.netns)?;
    let pod_fd = host_fd
        .try_clone()
        .map_err(|e| format!("cannot dup the netns fd: {e}"))?;
    let host_iface = w.host_iface.clone();
    let ns_display = w.netns.display().to_string();
    // 1. in the host netns: move the TAP, if it is still here
    in_netns(None, move |h| async move {
        if let Some(l) = link_by_name(&h, &host_iface).await? {
            h.link()
                .set(
                    LinkUnspec::new_with_index(l.header.index)
                        .setns_by_fd(host_fd.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .map_err(nl_err(format!(
                    "moving {host_iface} into the network namespace {ns_display}"
                )))?;
        }
        Ok(())
    })?;
    // 2. in the pod's netns: name, MAC, MTU, addresses, up, routes
    let w = w.clone();
    in_netns(Some(pod_fd), move |h| async move {
        let link = match link_by_name(&h, &w.host_iface).await? {
            Some(l) => {
                if let Some(other) = link_by_name(&h, &w.ifname).await? {
                    if other.header.index != l.header.index {
                        return Err(format!(
                            "the pod's network namespace has an interface named {} already",
                            w.ifname
                        ));
                    }
                }
                l
            }
            None => match link_by_name(&h, &w.ifname).await? {
                Some(l) if link_mac(&l) == Some(w.mac) => l,
                Some(_) => {
                    return Err(format!(
                        "the pod's network namespace has an interface named {} already, \
                         not the switch's",
                        w.ifname
                    ))
                }
                None => {
                    return Err(format!(
                        "interface {} is neither in the host nor in the pod's network namespace \
                         (did vswitchd create it?)",
                        w.host_iface
                    ))
                }
            },
        };
        let idx = link.header.index;
        let set = |b: rtnetlink::LinkMessageBuilder<LinkUnspec>, what: String| {
            let h = h.clone();
            async move {
                h.link()
                    .set(b.build())
                    .execute()
                    .await
                    .map_err(nl_err(what))
            }
        };
        set(
            LinkUnspec::new_with_index(idx).down(),
            "setting it down".into(),
        )
        .await?;
        set(
            LinkUnspec::new_with_index(idx).name(w.ifname.clone()),
            format!("renaming {} to {}", w.host_iface, w.ifname),
        )
        .await?;
        set(
            LinkUnspec::new_with_index(idx).address(w.mac.to_vec()),
            format!("setting the MAC of {}", w.ifname),
        )
        .await?;
        set(
            LinkUnspec::new_with_index(idx).mtu(u32::from(w.mtu)),
            format!("setting the MTU of {} to {}", w.ifname, w.mtu),
        )
        .await?;
        // IPv4 only: no IPv6 chatter (DAD, MLD, RS) towards the switch, as
        // Calico does for a pod without IPv6 addresses
        let sysctl = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", w.ifname);
        if Path::new(&sysctl).exists() {
            std::fs::write(&sysctl, "1").map_err(|e| format!("writing {sysctl}: {e}"))?;
        }
        for ip in &w.ips {
            h.address()
                .add(idx, IpAddr::V4(*ip), 32)
                .replace()
                .execute()
                .await
                .map_err(nl_err(format!("adding {ip}/32 to {}", w.ifname)))?;
        }
        set(
            LinkUnspec::new_with_index(idx).up(),
            format!("setting {} up", w.ifname),
        )
        .await?;
        if let Some(lo) = link_by_name(&h, "lo").await? {
            set(
                LinkUnspec::new_with_index(lo.header.index).up(),
                "setting lo up".into(),
            )
            .await?;
        }
        let gw_route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(w.gateway, 32)
            .output_interface(idx)
            .scope(RouteScope::Link)
            .build();
        h.route()
            .add(gw_route)
            .replace()
            .execute()
            .await
            .map_err(nl_err(format!(
                "adding the route {} dev {} scope link",
                w.gateway, w.ifname
            )))?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
            .gateway(w.gateway)
            .output_interface(idx)
            .build();
        h.route()
            .add(default)
            .replace()
            .execute()
            .await
            .map_err(nl_err(format!(
                "adding the route default via {} dev {}",
                w.gateway, w.ifname
            )))?;
        Ok(())
    })
}

/// The interface `ifname` in the netns at `netns`, with its addresses and
/// routes; None when there is no such interface.
pub fn inspect(netns: &Path, ifname: &str) -> NlResult<Option<LinkState>> {
    let fd = open_netns(netns)?;
    let ifname = ifname.to_owned();
    in_netns(Some(fd), move |h| async move {
        let Some(link) = link_by_name(&h, &ifname).await? else {
            return Ok(None);
        };
        let idx = link.header.index;
        let mut st = LinkState {
            index: idx,
            mac: link_mac(&link),
            mtu: link_mtu(&link),
            up: link.header.flags.contains(LinkFlags::Up),
            ..LinkState::default()
        };
        let mut addrs = h.address().get().set_link_index_filter(idx).execute();
        while let Some(a) = addrs
            .try_next()
            .await
            .map_err(nl_err(format!("listing the addresses of {ifname}")))?
        {
            if a.header.index != idx {
                continue;
            }
            for attr in &a.attributes {
                if let AddressAttribute::Address(IpAddr::V4(v4)) = attr {
                    st.ipv4.push((*v4, a.header.prefix_len));
                }
            }
        }
        let mut routes = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(nl_err("listing the routes"))?
        {
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            if oif != Some(idx) {
                continue;
            }
            let gw = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                _ => None,
            });
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            });
            match (r.header.destination_prefix_length, gw, dst) {
                (0, Some(g), _) => st.default_via = Some(g),
                (32, None, Some(d)) if r.header.scope == RouteScope::Link => st.link_routes.push(d),
                _ => {}
            }
        }
        Ok(Some(st))
    })
}

/// Deletes `ifname` from the netns at `netns` if it is there and (when `mac`
/// is given) has that MAC. Returns whether it deleted something.
pub fn remove(netns: &Path, ifname: &str, mac: Option<[u8; 6]>) -> NlResult<bool> {
    let fd = open_netns(netns)?;
    let ifname = ifname.to_owned();
    in_netns(Some(fd), move |h| async move {
        let Some(link) = link_by_name(&h, &ifname).await? else {
            return Ok(false);
        };
        if mac.is_some() && link_mac(&link) != mac {
            return Ok(false);
        }
        match h.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            // gone in the meantime (the switch closed the TAP)
            Err(rtnetlink::Error::NetlinkError(e))
                if e.raw_code().abs() == nix::errno::Errno::ENODEV as i32 =>
            {
                Ok(false)
            }
            Err(e) => Err(nl_err(format!("deleting {ifname}"))(e)),
        }
    })
}

/// Whether an interface named `name` exists in the current (host) netns.
pub fn host_has_link(name: &str) -> NlResult<bool> {
    let name = name.to_owned();
    in_netns(None, move |h| async move {
        Ok(link_by_name(&h, &name).await?.is_some())
    })
}

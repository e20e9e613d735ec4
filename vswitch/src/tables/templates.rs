//! A worker's prebuilt encapsulation headers, one per remote node: the
//! header is built once and copied per packet.

use crate::tables::underlay::Underlay;
use crate::wire::tunnel;

/// A worker's encapsulation headers, per remote node, built on first use
/// and again when the snapshot or the next hop's MAC changes.
#[derive(Default)]
pub struct Templates {
    slots: Vec<Option<Slot>>,
}

pub(crate) struct Slot {
    id: u64,
    nh_mac: u64,
    pub(crate) vxlan: tunnel::VxlanTemplate,
    pub(crate) ipip: tunnel::IpipTemplate,
}

impl Templates {
    pub(crate) fn get(&mut self, u: &Underlay, node: usize, nh_mac: u64) -> Option<&Slot> {
        if self.slots.len() < u.nodes.len() {
            // a new snapshot with more nodes: sized once, not per packet
            self.slots.resize_with(u.nodes.len(), || None);
        }
        let n = u.nodes.get(node)?;
        let slot = self.slots.get_mut(node)?;
        let fresh = matches!(slot, Some(s) if s.id == u.id && s.nh_mac == nh_mac);
        if !fresh {
            *slot = Some(Slot {
                id: u.id,
                nh_mac,
                vxlan: u.vxlan_template(n, nh_mac),
                ipip: u.ipip_template(n, nh_mac),
            });
        }
        slot.as_ref()
    }
}

//! The API objects the store reads and writes, and their translation to and from the IPAM model:
//! `IPAMBlock` and `BlockAffinity` (vswitch.dev/v1alpha1, deploy/crds) and Calico's `IPPool`
//! (crd.projectcalico.org/v1, read only).

use std::collections::BTreeMap;

use ipam::{Allocation, Block, HandleId, IpNetwork, IpamError, Pool, PoolSpec};
use kube::core::{ApiResource, NotUsed, Object};
use serde::{Deserialize, Serialize};

/// Prefix of a block's `spec.affinity`: Calico also knows `virtual:`, which no node owns.
pub const HOST_AFFINITY: &str = "host:";

/// The only claim state this store writes: the block object is the claim, the affinity only its
/// record (see the crate documentation), so there is no "pending" step to record.
pub const CONFIRMED: &str = "confirmed";

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn block_resource() -> ApiResource {
    resource("vswitch.dev", "v1alpha1", "IPAMBlock", "ipamblocks")
}

pub fn affinity_resource() -> ApiResource {
    resource(
        "vswitch.dev",
        "v1alpha1",
        "BlockAffinity",
        "blockaffinities",
    )
}

pub fn pool_resource() -> ApiResource {
    resource("crd.projectcalico.org", "v1", "IPPool", "ippools")
}

pub type BlockObject = Object<BlockSpec, BlockStatus>;
pub type AffinityObject = Object<AffinitySpec, NotUsed>;
pub type PoolObject = Object<IpPoolSpec, NotUsed>;

/// Calico's `IPAMBlock` spec, plus the node of each allocation (see [`AllocationAttribute`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockSpec {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// One entry per address: `None` when free, else an index into `attributes`.
    #[serde(default)]
    pub allocations: Vec<Option<u32>>,
    #[serde(default)]
    pub unallocated: Vec<u32>,
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
}

/// Who holds one or more addresses of a block. `node` is ours, not Calico's: the IPAM keeps the
/// node an address was assigned on apart from its free-form attributes (a borrowed address sits
/// in another node's block, and GC judges it by this node), so it gets its own field rather than
/// a `secondary` key that a caller's attributes could also use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationAttribute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStatus {
    pub allocated: u32,
    pub free: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffinitySpec {
    pub node: String,
    pub cidr: String,
    pub state: String,
}

/// The fields of Calico's IPPool the IPAM needs; the rest (encapsulation, NAT) is the agent's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPoolSpec {
    pub cidr: String,
    #[serde(default)]
    pub block_size: Option<i64>,
    #[serde(default)]
    pub disabled: bool,
}

/// `10.244.0.0/26` → `10-244-0-0-26`, `fd00::40/122` → `fd00--40-122`: one name per block, so
/// that creating it is what two nodes race on. A leading `::` gets a `0` (same address), because
/// a name must start with a letter or digit.
pub fn block_name(cidr: IpNetwork) -> String {
    let s = cidr.to_string().replace(['.', ':', '/'], "-");
    if s.starts_with('-') {
        format!("0{s}")
    } else {
        s
    }
}

/// `<node>-<block name>`, as Calico names its BlockAffinity objects.
pub fn affinity_name(node: &str, cidr: IpNetwork) -> String {
    format!("{node}-{}", block_name(cidr))
}

pub fn host_affinity(node: &str) -> String {
    format!("{HOST_AFFINITY}{node}")
}

/// Reads an IPPool; refuses what the IPAM could not use, with the pool's name in the message.
pub fn pool_from_object(obj: &PoolObject) -> Result<Pool, IpamError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let block_size = match obj.spec.block_size {
        None => None,
        Some(n) => Some(u8::try_from(n).map_err(|_| IpamError::BadPool {
            pool: name.clone(),
            reason: format!("blockSize {n} is out of range"),
        })?),
    };
    Pool::from_spec(PoolSpec {
        name,
        cidr: obj.spec.cidr.clone(),
        block_size,
        disabled: obj.spec.disabled,
    })
}

/// Decodes a block. Every inconsistency is refused with the reason: a block read wrongly could
/// hand out an address that is in use.
pub fn block_from_spec(spec: &BlockSpec) -> Result<Block, String> {
    let cidr: IpNetwork = spec
        .cidr
        .parse()
        .map_err(|e| format!("cidr {:?}: {e}", spec.cidr))?;
    let affinity = match &spec.affinity {
        None => None,
        Some(a) => match a.strip_prefix(HOST_AFFINITY) {
            Some(node) if !node.is_empty() => Some(node.to_string()),
            _ => return Err(format!("affinity {a:?} is not \"host:<node>\"")),
        },
    };
    let size = 1usize << (if cidr.is_ipv4() { 32 } else { 128 } - cidr.prefix());
    if spec.allocations.len() != size {
        return Err(format!(
            "{} allocation entries for a block of {size} addresses",
            spec.allocations.len()
        ));
    }
    let mut allocations = BTreeMap::new();
    let mut free = Vec::new();
    for (ord, entry) in spec.allocations.iter().enumerate() {
        let ord = ord as u32;
        let Some(idx) = *entry else {
            free.push(ord);
            continue;
        };
        let attr = spec
            .attributes
            .get(idx as usize)
            .ok_or_else(|| format!("ordinal {ord} points at attribute {idx}, which is missing"))?;
        let handle = attr
            .handle_id
            .clone()
            .ok_or_else(|| format!("ordinal {ord} has no handle_id"))?;
        // Calico keeps the node in secondary; read that when our own field is absent.
        let node = attr
            .node
            .clone()
            .or_else(|| attr.secondary.get("node").cloned())
            .ok_or_else(|| format!("ordinal {ord} names no node"))?;
        allocations.insert(
            ord,
            Allocation {
                handle: HandleId::from_raw(handle),
                node,
                attributes: attr.secondary.clone(),
            },
        );
    }
    let mut unallocated = spec.unallocated.clone();
    unallocated.sort_unstable();
    if unallocated != free {
        return Err(
            "unallocated does not list exactly the ordinals whose allocation is null".into(),
        );
    }
    Block::from_parts(cidr, affinity, allocations)
}

/// Encodes a block. `prev` is the block as read, with its spec: allocations it already had keep
/// their sequence numbers, so a late release can tell a reused address from the one it meant.
pub fn block_to_spec(
    block: &Block,
    pool: Option<String>,
    prev: Option<(&BlockSpec, &Block)>,
) -> (BlockSpec, BlockStatus) {
    let size = block.size() as usize;
    let seq = prev.map_or(0, |(s, _)| s.sequence_number) + 1;
    let mut allocations = vec![None; size];
    let mut attributes: Vec<AllocationAttribute> = Vec::new();
    let mut index: BTreeMap<(&str, &str, &ipam::Attributes), u32> = BTreeMap::new();
    let mut seq_for = BTreeMap::new();
    for (ord, a) in block.ordinals() {
        let key = (a.handle.as_str(), a.node.as_str(), &a.attributes);
        let idx = *index.entry(key).or_insert_with(|| {
            attributes.push(AllocationAttribute {
                handle_id: Some(a.handle.as_str().to_string()),
                node: Some(a.node.clone()),
                secondary: a.attributes.clone(),
            });
            (attributes.len() - 1) as u32
        });
        allocations[ord as usize] = Some(idx);
        let kept = prev.and_then(|(ps, pb)| {
            let same = pb.ordinals().any(|(o, pa)| o == ord && pa == a);
            same.then(|| {
                ps.sequence_number_for_allocation
                    .get(&ord.to_string())
                    .copied()
            })
            .flatten()
        });
        seq_for.insert(ord.to_string(), kept.unwrap_or(seq));
    }
    let unallocated: Vec<u32> = (0..size as u32)
        .filter(|&o| allocations[o as usize].is_none())
        .collect();
    let status = BlockStatus {
        allocated: block.allocated() as u32,
        free: block.free(),
    };
    let spec = BlockSpec {
        cidr: block.cidr().to_string(),
        affinity: block.affinity().map(host_affinity),
        pool,
        allocations,
        unallocated,
        attributes,
        sequence_number: seq,
        sequence_number_for_allocation: seq_for,
    };
    (spec, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(h: &str, node: &str) -> Allocation {
        Allocation {
            handle: HandleId::from_raw(h),
            node: node.into(),
            attributes: [("pod".to_string(), h.to_string())].into(),
        }
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(
            block_name("10.244.0.0/26".parse().unwrap()),
            "10-244-0-0-26"
        );
        assert_eq!(block_name("fd00::40/122".parse().unwrap()), "fd00--40-122");
        assert_eq!(block_name("::40/122".parse().unwrap()), "0--40-122");
        assert_eq!(
            affinity_name("node-a", "10.244.0.0/26".parse().unwrap()),
            "node-a-10-244-0-0-26"
        );
    }

    #[test]
    fn blocks_round_trip_and_shared_attributes_are_shared() {
        let cidr: IpNetwork = "10.0.0.8/29".parse().unwrap();
        let allocs: BTreeMap<u32, Allocation> = [
            (0, alloc("a", "n1")),
            (1, alloc("a", "n1")),
            (5, alloc("b", "n2")),
        ]
        .into();
        let b = Block::from_parts(cidr, Some("n1".into()), allocs).unwrap();
        let (spec, status) = block_to_spec(&b, Some("p".into()), None);
        assert_eq!(spec.affinity.as_deref(), Some("host:n1"));
        assert_eq!(
            spec.allocations,
            [Some(0), Some(0), None, None, None, Some(1), None, None]
        );
        assert_eq!(spec.unallocated, [2, 3, 4, 6, 7]);
        assert_eq!(spec.attributes.len(), 2);
        assert_eq!((status.allocated, status.free), (3, 5));
        assert_eq!(spec.sequence_number, 1);
        assert_eq!(block_from_spec(&spec).unwrap(), b);

        // a second write keeps the sequence numbers of allocations it did not touch
        let allocs2: BTreeMap<u32, Allocation> = [
            (0, alloc("a", "n1")),
            (1, alloc("a", "n1")),
            (2, alloc("c", "n1")),
        ]
        .into();
        let b2 = Block::from_parts(cidr, Some("n1".into()), allocs2).unwrap();
        let (spec2, _) = block_to_spec(&b2, Some("p".into()), Some((&spec, &b)));
        assert_eq!(spec2.sequence_number, 2);
        assert_eq!(spec2.sequence_number_for_allocation["0"], 1);
        assert_eq!(spec2.sequence_number_for_allocation["2"], 2);
    }

    #[test]
    fn damaged_blocks_are_refused() {
        let cidr: IpNetwork = "10.0.0.0/30".parse().unwrap();
        let b = Block::from_parts(cidr, None, [(1, alloc("a", "n"))].into()).unwrap();
        let (good, _) = block_to_spec(&b, None, None);
        let mut cases: Vec<(BlockSpec, &str)> = Vec::new();
        let mut s = good.clone();
        s.allocations.pop();
        cases.push((s, "3 allocation entries"));
        let mut s = good.clone();
        s.allocations[0] = Some(7);
        cases.push((s, "attribute 7"));
        let mut s = good.clone();
        s.unallocated.push(1);
        cases.push((s, "unallocated"));
        let mut s = good.clone();
        s.affinity = Some("virtual:x".into());
        cases.push((s, "not \"host:"));
        let mut s = good.clone();
        s.attributes[0].node = None;
        cases.push((s, "names no node"));
        for (spec, want) in cases {
            let err = block_from_spec(&spec).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}

//! Which API versions the server serves for each kind the agent watches.
//!
//! - EndpointSlices: `discovery.k8s.io/v1` (Kubernetes 1.21+), else
//!   `discovery.k8s.io/v1beta1` (1.17 to 1.24; all that 1.20 has), else the
//!   core `v1` Endpoints.
//! - Calico's IPPool, NetworkPolicy, GlobalNetworkPolicy and Tier:
//!   `projectcalico.org/v3` when Calico's API server serves it, else the
//!   `crd.projectcalico.org/v1` CRDs (the same spec field names). A kind
//!   served by neither is not watched (and counts as empty).
//! - vswitch.dev/v1alpha1 IPAMBlocks for the nodes' blocks.

use super::reconcile::EndpointSource;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;

/// The kinds the agent watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Pods,
    Namespaces,
    Nodes,
    K8sPolicies,
    Services,
    Endpoints,
    Pools,
    CalicoPolicies,
    GlobalPolicies,
    Tiers,
    Blocks,
}

/// What to watch, and where.
#[derive(Clone, Debug)]
pub struct Resources {
    pub watch: Vec<(Kind, ApiResource)>,
    pub endpoint_source: EndpointSource,
}

/// Whether `group_version` serves `plural`; None when the group version is
/// not served at all.
async fn served(client: &Client, group_version: &str, plural: &str) -> Option<String> {
    let list = if group_version == "v1" {
        client.list_core_api_resources("v1").await
    } else {
        client.list_api_group_resources(group_version).await
    };
    match list {
        Ok(l) => l
            .resources
            .into_iter()
            .find(|r| r.name == plural)
            .map(|r| r.kind),
        Err(e) => {
            tracing::debug!("discovery of {group_version}: {e}");
            None
        }
    }
}

async fn pick(client: &Client, candidates: &[(&str, &str, &str)]) -> Option<ApiResource> {
    for (group, version, plural) in candidates {
        let gv = if group.is_empty() {
            (*version).to_owned()
        } else {
            format!("{group}/{version}")
        };
        if let Some(kind) = served(client, &gv, plural).await {
            return Some(ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, &kind),
                plural,
            ));
        }
    }
    None
}

/// Asks the server what it serves. Fails only when the server cannot be
/// asked at all.
pub async fn discover(client: &Client) -> Result<Resources, kube::Error> {
    // one request that must succeed: a server that cannot answer this is
    // not there yet
    client.list_core_api_resources("v1").await?;
    let mut watch = vec![
        (Kind::Pods, ApiResource::erase::<Pod>(&())),
        (Kind::Namespaces, ApiResource::erase::<Namespace>(&())),
        (Kind::Nodes, ApiResource::erase::<Node>(&())),
        (Kind::Services, ApiResource::erase::<Service>(&())),
        (Kind::K8sPolicies, ApiResource::erase::<NetworkPolicy>(&())),
    ];
    let slices = pick(
        client,
        &[
            ("discovery.k8s.io", "v1", "endpointslices"),
            ("discovery.k8s.io", "v1beta1", "endpointslices"),
        ],
    )
    .await;
    let endpoint_source = match slices {
        Some(ar) => {
            let src = if ar.version == "v1" {
                EndpointSource::SliceV1
            } else {
                EndpointSource::SliceV1beta1
            };
            watch.push((Kind::Endpoints, ar));
            src
        }
        None => {
            watch.push((Kind::Endpoints, ApiResource::erase::<Endpoints>(&())));
            EndpointSource::Endpoints
        }
    };
    tracing::info!(
        "Service endpoints from {}",
        match endpoint_source {
            EndpointSource::SliceV1 => "discovery.k8s.io/v1 EndpointSlices",
            EndpointSource::SliceV1beta1 => "discovery.k8s.io/v1beta1 EndpointSlices",
            EndpointSource::Endpoints => "v1 Endpoints (no EndpointSlice API served)",
        }
    );
    for (kind, plural) in [
        (Kind::Pools, "ippools"),
        (Kind::CalicoPolicies, "networkpolicies"),
        (Kind::GlobalPolicies, "globalnetworkpolicies"),
        (Kind::Tiers, "tiers"),
    ] {
        let ar = pick(
            client,
            &[
                ("projectcalico.org", "v3", plural),
                ("crd.projectcalico.org", "v1", plural),
            ],
        )
        .await;
        match ar {
            Some(ar) => {
                tracing::info!("Calico {plural} from {}", ar.api_version);
                watch.push((kind, ar));
            }
            None => tracing::warn!("Calico {plural}: not served (no CRD): none assumed"),
        }
    }
    match pick(client, &[("vswitch.dev", "v1alpha1", "ipamblocks")]).await {
        Some(ar) => watch.push((Kind::Blocks, ar)),
        None => tracing::warn!("vswitch.dev ipamblocks: not served (no CRD): no node blocks"),
    }
    Ok(Resources {
        watch,
        endpoint_source,
    })
}

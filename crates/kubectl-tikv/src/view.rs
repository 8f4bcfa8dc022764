//! One read of a cluster from the API server: its Cluster, groups, instances and the Events
//! about any of them. Everything the commands show comes from these objects.

use api::v1alpha1::{Cluster, HasCluster, PD, PDGroup, TiKV, TiKVGroup};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::Error;

/// A cluster's objects, as the API server has them.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// Namespace.
    pub namespace: String,
    /// The Cluster.
    pub cluster: Cluster,
    /// Its PD groups.
    pub pd_groups: Vec<PDGroup>,
    /// Its TiKV groups.
    pub tikv_groups: Vec<TiKVGroup>,
    /// Its PD members, by name.
    pub pds: Vec<PD>,
    /// Its TiKV stores, by name.
    pub tikvs: Vec<TiKV>,
    /// Events about the Cluster, its groups, instances and their pods, oldest first.
    pub events: Vec<Event>,
}

/// The objects of `kind` in `ns` that belong to the Cluster `name`, sorted by name.
async fn of_cluster<K>(client: &Client, ns: &str, name: &str) -> Result<Vec<K>, Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + HasCluster
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let plural = K::plural(&()).to_string();
    let mut items: Vec<K> = Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("listing {plural} in {ns}")))?
        .items
        .into_iter()
        .filter(|o| o.cluster_name() == name)
        .collect();
    items.sort_by_key(|o| o.name_any());
    Ok(items)
}

/// Reads the Cluster `name` in `ns` and everything that belongs to it.
pub async fn gather(client: &Client, ns: &str, name: &str) -> Result<ClusterView, Error> {
    let cluster = Api::<Cluster>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading Cluster {ns}/{name}")))?
        .ok_or_else(|| Error::NotFound(format!("there is no Cluster {name} in namespace {ns}")))?;
    let mut view = ClusterView {
        namespace: ns.to_string(),
        cluster,
        pd_groups: of_cluster(client, ns, name).await?,
        tikv_groups: of_cluster(client, ns, name).await?,
        pds: of_cluster(client, ns, name).await?,
        tikvs: of_cluster(client, ns, name).await?,
        events: Vec::new(),
    };
    let events = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("listing Events in {ns}")))?
        .items;
    let mut events: Vec<Event> = events.into_iter().filter(|e| view.concerns(e)).collect();
    events.sort_by_key(event_time);
    view.events = events;
    Ok(view)
}

impl ClusterView {
    /// The names of the Cluster, its groups and instances (a pod has its instance's name).
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.cluster.name_any()];
        names.extend(self.pd_groups.iter().map(ResourceExt::name_any));
        names.extend(self.tikv_groups.iter().map(ResourceExt::name_any));
        names.extend(self.pds.iter().map(ResourceExt::name_any));
        names.extend(self.tikvs.iter().map(ResourceExt::name_any));
        names
    }

    /// Whether `event` is about one of the cluster's objects or pods.
    pub fn concerns(&self, event: &Event) -> bool {
        let o = &event.involved_object;
        let ours = matches!(
            o.kind.as_deref(),
            Some("Cluster" | "PDGroup" | "TiKVGroup" | "PD" | "TiKV" | "Pod")
        );
        ours && o
            .name
            .as_ref()
            .is_some_and(|n| self.names().iter().any(|m| m == n))
    }
}

/// When an Event last happened: its series' last observation, its last timestamp, its event
/// time or its creation, whichever it has.
pub fn event_time(e: &Event) -> Timestamp {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

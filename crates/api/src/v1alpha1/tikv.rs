//! TiKVGroup and TiKV: the storage nodes (stores) of a cluster.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ClusterReference, ComponentTls, GroupStatus, InstanceStatus, ObjectMeta, Overlay, Port,
    Resources, SchedulePolicy, UpdatePolicy, Volume,
};

/// Default image repository of TiKV; the tag is the version.
pub const DEFAULT_TIKV_IMAGE: &str = "pingcap/tikv";
/// Default client (gRPC) port of TiKV.
pub const DEFAULT_TIKV_CLIENT_PORT: i32 = 20160;
/// Default status (HTTP) port of TiKV.
pub const DEFAULT_TIKV_STATUS_PORT: i32 = 20180;

/// A group of TiKV stores with the same template.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "core.tikv.org",
    version = "v1alpha1",
    kind = "TiKVGroup",
    doc = "A group of TiKV stores sharing one template.",
    namespaced,
    derive = "PartialEq",
    status = "GroupStatus",
    shortname = "tkvg",
    category = "tikv-all",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster.name"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Updated","type":"integer","jsonPath":".status.updatedReplicas"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.summary","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 40").message("a TiKVGroup name must be at most 40 characters")
)]
#[serde(rename_all = "camelCase")]
pub struct TiKVGroupSpec {
    /// The Cluster this group belongs to.
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable"))]
    pub cluster: ClusterReference,
    /// Number of stores. Lowering it removes stores in two steps (PD moves their data away first).
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must not be negative"))]
    pub replicas: i32,
    /// How a new template is rolled out.
    #[serde(default)]
    pub update_policy: UpdatePolicy,
    /// Where stores are placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_policy: Option<SchedulePolicy>,
    /// Replacement of stores that PD reports Down (off unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverPolicy>,
    /// Template of every store.
    pub template: TiKVTemplate,
}

/// When and how many Down stores get a replacement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverPolicy {
    /// Replace Down stores.
    #[serde(default)]
    pub enabled: bool,
    /// How long PD must report a store Down before it is replaced, e.g. `5m`.
    #[serde(default = "default_failover_period")]
    #[x_kube(validation = Rule::new(crate::schema::DURATION_CEL).message("must be a duration such as 30s, 10m or 1h"))]
    pub period: String,
    /// Most replacement stores that may exist at once.
    #[serde(default = "default_max_replacements")]
    #[schemars(range(min = 0))]
    pub max_replacements: i32,
}

fn default_failover_period() -> String {
    "5m".to_string()
}

fn default_max_replacements() -> i32 {
    3
}

/// Template of a TiKV store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TiKVTemplate {
    /// Labels and annotations of the TiKV objects and pods. Changing them rolls the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    /// Spec of every store.
    pub spec: TiKVTemplateSpec,
}

/// Spec of a TiKV store, copied from the group template into each TiKV object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TiKVTemplateSpec {
    /// TiKV version, used as the image tag, e.g. `v8.5.0`.
    #[x_kube(validation = Rule::new(crate::schema::SEMVER_CEL).message("version must be a semantic version such as v8.5.0"))]
    pub version: String,
    /// Image repository, without tag.
    #[serde(default = "default_tikv_image")]
    pub image: String,
    /// Resources of the TiKV container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// TiKV configuration (TOML). Keys the operator owns (addresses, data dir, PD endpoints) are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Volumes; one must be mounted as `type: data`. Required: a serde default (`[]`) would put
    /// `default: []` into the schema, which the API server refuses next to `minItems: 1`.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new("self.exists(v, v.mounts.exists(m, has(m.type) && m.type == 'data'))")
        .message("a volume with a mount of type data is required"))]
    pub volumes: Vec<Volume>,
    /// Ports and store labels.
    #[serde(default)]
    pub server: TiKVServer,
    /// Patches of the generated pod and PVCs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<Overlay>,
    /// The certificate of this group's instances, used when the Cluster has TLS on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ComponentTls>,
}

fn default_tikv_image() -> String {
    DEFAULT_TIKV_IMAGE.to_string()
}

/// Network settings and store labels of TiKV.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TiKVServer {
    /// Ports TiKV listens on.
    #[serde(default)]
    pub ports: TiKVPorts,
    /// Extra store labels reported to PD. `zone`, `host` and `region` are set by the operator
    /// from the node the store runs on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 16))]
    #[x_kube(validation = Rule::new("!self.exists(k, k in ['zone', 'host', 'region'])")
        .message("store labels zone, host and region are set by the operator"))]
    pub labels: BTreeMap<String, String>,
}

/// Ports of TiKV.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TiKVPorts {
    /// Client (gRPC) port, 20160 by default.
    #[serde(default = "default_tikv_client_port")]
    pub client: Port,
    /// Status (HTTP: metrics, status) port, 20180 by default.
    #[serde(default = "default_tikv_status_port")]
    pub status: Port,
}

impl Default for TiKVPorts {
    fn default() -> Self {
        Self {
            client: default_tikv_client_port(),
            status: default_tikv_status_port(),
        }
    }
}

fn default_tikv_client_port() -> Port {
    Port {
        port: DEFAULT_TIKV_CLIENT_PORT,
    }
}

fn default_tikv_status_port() -> Port {
    Port {
        port: DEFAULT_TIKV_STATUS_PORT,
    }
}

/// One TiKV store: one pod, its PVCs and its config. Created by the group controller.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "core.tikv.org",
    version = "v1alpha1",
    kind = "TiKV",
    doc = "One TiKV store: a pod, its PVCs and its config. Created and owned by its TiKVGroup.",
    plural = "tikvs",
    namespaced,
    derive = "PartialEq",
    status = "TiKVStatus",
    category = "tikv-all",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster.name"}"#,
    printcolumn = r#"{"name":"StoreID","type":"string","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Leaders","type":"integer","jsonPath":".status.leaderCount"}"#,
    printcolumn = r#"{"name":"Regions","type":"integer","jsonPath":".status.regionCount"}"#,
    printcolumn = r#"{"name":"Size","type":"string","jsonPath":".status.dataSize"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 47").message("a TiKV name must be at most 47 characters")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(crate::schema::TOPOLOGY_IMMUTABLE_CEL).message("topology is immutable"))]
pub struct TiKVSpec {
    /// The Cluster this store belongs to.
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable"))]
    pub cluster: ClusterReference,
    /// Node labels this store is pinned to, chosen by the group when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 8))]
    pub topology: Option<BTreeMap<String, String>>,
    /// Headless Service the pod's host name lives under; its DNS name is the store's address.
    #[x_kube(validation = Rule::new("self == oldSelf").message("subdomain is immutable"))]
    pub subdomain: String,
    /// Take the store out of the cluster: PD moves its regions away (Removing), then marks it
    /// Removed (Tombstone). Setting it back to false before then cancels the removal.
    #[serde(default)]
    pub offline: bool,
    /// How the store restarts when its pod is outdated, written by its group from its update
    /// policy. Outside the template: changing it restarts nothing.
    #[serde(default)]
    pub restart: StoreRestart,
    /// The group's template spec.
    #[serde(flatten)]
    pub template: TiKVTemplateSpec,
}

/// How a store restarts for an update (leaders are evicted first).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoreRestart {
    /// How long to wait for PD to move the store's leaders away before restarting it anyway: the
    /// group's `updatePolicy.leaderEvictionTimeout`.
    #[serde(default = "crate::v1alpha1::common::default_leader_eviction_timeout")]
    #[x_kube(validation = Rule::new(crate::schema::DURATION_CEL).message("must be a duration such as 30s, 10m or 1h"))]
    pub leader_eviction_timeout: String,
    /// How long to wait, once the restarted store is Up, for PD to move leaders back to it (the
    /// group holds the next restart meanwhile): the group's
    /// `updatePolicy.leaderTransferBackTimeout`; `0s` does not wait.
    #[serde(default = "crate::v1alpha1::common::default_leader_transfer_back_timeout")]
    #[x_kube(validation = Rule::new(crate::schema::DURATION_CEL).message("must be a duration such as 30s, 10m or 1h"))]
    pub leader_transfer_back_timeout: String,
    /// The group restarts the stores of a zone together (`ZoneByZone`, found safe): down peers in
    /// this store's own zone then do not hold its restart back.
    #[serde(default)]
    pub zone_by_zone: bool,
}

impl StoreRestart {
    /// What a store of a group with `policy` must know to restart (`zone_by_zone`: the group
    /// found restarting a zone at a time safe).
    pub fn of(policy: &UpdatePolicy, zone_by_zone: bool) -> Self {
        Self {
            leader_eviction_timeout: policy.leader_eviction_timeout.clone(),
            leader_transfer_back_timeout: policy.leader_transfer_back_timeout.clone(),
            zone_by_zone,
        }
    }
}

impl Default for StoreRestart {
    fn default() -> Self {
        Self {
            leader_eviction_timeout: crate::v1alpha1::common::default_leader_eviction_timeout(),
            leader_transfer_back_timeout:
                crate::v1alpha1::common::default_leader_transfer_back_timeout(),
            zone_by_zone: false,
        }
    }
}

/// A store's state as PD names it (its `state_name`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// Serving and heartbeating.
    Up,
    /// Up, but no heartbeat for more than 20 s.
    Disconnected,
    /// Up, but no heartbeat for longer than PD's `max-store-down-time`.
    Down,
    /// Being removed: PD moves its regions away.
    Offline,
    /// Removed: it holds no regions and never comes back.
    Tombstone,
}

impl StoreState {
    /// The state for PD's `state_name`; `None` for a name this operator does not know.
    pub fn from_pd_name(name: &str) -> Option<Self> {
        Some(match name {
            "Up" => Self::Up,
            "Disconnected" => Self::Disconnected,
            "Down" => Self::Down,
            "Offline" => Self::Offline,
            "Tombstone" => Self::Tombstone,
            _ => return None,
        })
    }

    /// The name, as PD spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "Up",
            Self::Disconnected => "Disconnected",
            Self::Down => "Down",
            Self::Offline => "Offline",
            Self::Tombstone => "Tombstone",
        }
    }

    /// The reason of the Ready condition of a running store in this state: `StoreUp`, or why it
    /// is not ready, e.g. `StoreDown`.
    pub fn ready_reason(self) -> &'static str {
        match self {
            Self::Up => crate::conditions::ready::STORE_UP,
            Self::Disconnected => "StoreDisconnected",
            Self::Down => "StoreDown",
            Self::Offline => "StoreOffline",
            Self::Tombstone => "StoreTombstone",
        }
    }
}

impl std::fmt::Display for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a TiKV store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TiKVStatus {
    /// Conditions, revision and observed generation.
    #[serde(flatten)]
    pub common: InstanceStatus,
    /// PD store ID, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Store state as PD names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StoreState>,
    /// Region leaders on this store, as PD last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_count: Option<i64>,
    /// Region peers on this store, as PD last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_count: Option<i64>,
    /// Data the store holds: the approximate size of its region peers as PD last reported it
    /// (PD's `region_size`), e.g. `1536Mi`. What moves when the store is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_size: Option<Quantity>,
    /// While PD removes the store (scale-in): how far it got and when PD expects it to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal: Option<RemovalProgress>,
}

/// How far PD got in removing a store, from PD's `/pd/api/v1/stores/progress`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RemovalProgress {
    /// Share of the store's data (region size when the removal started) moved away, 0 to 100.
    #[schemars(range(min = 0, max = 100))]
    pub percent: i32,
    /// Seconds PD expects the rest to take at the current speed; unset while PD has not measured
    /// a speed yet (or nothing moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<i64>,
}

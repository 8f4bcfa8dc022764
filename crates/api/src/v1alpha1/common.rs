//! Types shared by several kinds: the cluster reference, volumes, overlays, policies, statuses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which Cluster an object belongs to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReference {
    /// Name of the Cluster in the same namespace.
    #[x_kube(validation = Rule::new("self.size() > 0").message("cluster.name must not be empty"))]
    pub name: String,
}

/// A persistent volume of an instance: one PVC per instance, mounted into its container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "quantity(string(self.storage)).compareTo(quantity(string(oldSelf.storage))) >= 0"
).message("volume storage may only grow"))]
pub struct Volume {
    /// Name of the volume; the PVC is named `<name>-<instance>`.
    // maxLength bounds the CEL cost estimate (the API server refuses the rule without it).
    #[schemars(length(min = 1, max = 15))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$')")
        .message("volume name must be a DNS label of at most 15 characters"))]
    pub name: String,
    /// Where the volume is mounted in the container.
    #[schemars(length(min = 1, max = 8))]
    pub mounts: Vec<VolumeMount>,
    /// Requested size, e.g. `20Gi`: more than zero. May grow (if the storage class allows
    /// expansion), never shrink.
    // maxLength bounds the CEL cost estimate of the `quantity()` rules (the API server refuses
    // them without); it applies to the string form.
    #[schemars(extend("maxLength" = 64))]
    #[x_kube(validation = Rule::new("quantity(string(self)).isGreaterThan(quantity('0'))")
        .message("volume storage must be more than zero"))]
    pub storage: Quantity,
    /// Storage class of the PVC; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// VolumeAttributesClass of the PVC, if the cluster supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_attributes_class_name: Option<String>,
}

/// One mount of a volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.type) || has(self.mountPath)")
    .message("a mount needs a type or a mountPath"))]
pub struct VolumeMount {
    /// Well-known use of the mount; `data` is the component's data directory and fixes its path.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<VolumeMountType>,
    /// Mount path in the container; defaults to the path of `type` when that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Sub-path of the volume to mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// Well-known mount types.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VolumeMountType {
    /// The component's data directory (`/var/lib/pd` or `/var/lib/tikv`).
    Data,
}

/// Labels and annotations of a generated object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Labels to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub labels: BTreeMap<String, String>,
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
}

/// Labels and annotations a user may add through an overlay: the operator's own keys are refused.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OverlayMeta {
    /// Labels to add; keys under `tikv.org/` and `app.kubernetes.io/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(
        "!self.exists(k, k.startsWith('tikv.org/') || k.startsWith('app.kubernetes.io/'))"
    ).message("overlay labels must not use the reserved prefixes tikv.org/ and app.kubernetes.io/"))]
    pub labels: BTreeMap<String, String>,
    /// Annotations to add; keys under `tikv.org/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("!self.exists(k, k.startsWith('tikv.org/'))")
        .message("overlay annotations must not use the reserved prefix tikv.org/"))]
    pub annotations: BTreeMap<String, String>,
}

/// Patches applied on top of what the operator generates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Overlay {
    /// Patch of the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverlay>,
    /// Patches of the PVCs, by volume name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub volume_claims: Vec<VolumeClaimOverlay>,
}

/// Patch of the generated Pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodOverlay {
    /// Labels and annotations added to the Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<OverlayMeta>,
    /// A partial PodSpec merged into the generated one: maps key by key, containers and volumes
    /// by name, other lists replaced. The result must be a valid PodSpec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub spec: Option<serde_json::Value>,
}

/// Patch of one generated PVC.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimOverlay {
    /// Name of the volume whose PVC is patched.
    pub name: String,
    /// Labels and annotations added to the PVC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<OverlayMeta>,
}

/// The certificate of a group's instances, with TLS on (`Cluster.spec.tlsCluster.enabled`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentTls {
    /// Secret in cert-manager's layout (`tls.crt`, `tls.key`, `ca.crt`); default
    /// `<group>-cluster-secret`. Its certificate must be valid for server and client auth and
    /// for every instance's DNS name (`*.<group>-peer.<namespace>.svc`; PD also for
    /// `<group>.<namespace>.svc`). Changing the name rolls the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

impl ComponentTls {
    /// The Secret of group `group` with `tls` from its template.
    pub fn secret_name(tls: Option<&ComponentTls>, group: &str) -> String {
        tls.and_then(|t| t.secret_name.clone())
            .unwrap_or_else(|| format!("{group}-cluster-secret"))
    }
}

/// A TCP port.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// Port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// How a group rolls out a new revision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicy {
    /// How many instances may be restarting at once. 1 (the default) restarts one at a time.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
    /// `OneByOne` (default) restarts instances in turn, up to `maxUnavailable` at once.
    /// `ZoneByZone` (TiKV only) restarts all instances of one zone together, but only when PD's
    /// location labels guarantee every region keeps replicas in other zones; never two zones at once.
    #[serde(default)]
    pub mode: UpdateMode,
    /// How long to wait for PD to move all leaders off a TiKV store before restarting it anyway,
    /// as a duration such as `10m`.
    #[serde(default = "default_leader_eviction_timeout")]
    #[x_kube(validation = Rule::new(crate::schema::DURATION_CEL).message("must be a duration such as 30s, 10m or 1h"))]
    pub leader_eviction_timeout: String,
    /// How long to wait, once a restarted TiKV store is Up again, for PD to move leaders back
    /// to it before the next store restarts (so the next restart does not leave the others
    /// with its share of the load too), as a duration such as `5m`; `0s` does not wait.
    #[serde(default = "default_leader_transfer_back_timeout")]
    #[x_kube(validation = Rule::new(crate::schema::DURATION_CEL).message("must be a duration such as 30s, 10m or 1h"))]
    pub leader_transfer_back_timeout: String,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
            mode: UpdateMode::default(),
            leader_eviction_timeout: default_leader_eviction_timeout(),
            leader_transfer_back_timeout: default_leader_transfer_back_timeout(),
        }
    }
}

fn default_max_unavailable() -> i32 {
    1
}

pub(crate) fn default_leader_eviction_timeout() -> String {
    "10m".to_string()
}

pub(crate) fn default_leader_transfer_back_timeout() -> String {
    "5m".to_string()
}

/// Rolling update modes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateMode {
    /// Instances in turn, up to `maxUnavailable` at once.
    #[default]
    OneByOne,
    /// All instances of one zone together (TiKV only).
    ZoneByZone,
}

/// Where instances are placed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePolicy {
    /// Spread instances evenly (by weight) over these topologies. Each new instance is pinned to
    /// the topology with the fewest instances relative to its weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evenly_spread: Option<EvenlySpread>,
}

/// Evenly spread instances over topologies.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvenlySpread {
    /// The topologies, e.g. one per zone.
    #[schemars(length(min = 1, max = 32))]
    pub topologies: Vec<WeightedTopology>,
}

/// A topology with a weight.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTopology {
    /// Node labels that define the topology, e.g. `topology.kubernetes.io/zone: zone-a`.
    #[schemars(extend("minProperties" = 1, "maxProperties" = 8))]
    pub topology: BTreeMap<String, String>,
    /// Relative share of instances; 1 by default.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1))]
    pub weight: i32,
}

fn default_weight() -> i32 {
    1
}

/// Resources of the main container; `requests` default to `limits` when only limits are set.
pub type Resources = ResourceRequirements;

/// Status fields every group reports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Synced, Suspended...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Number of instances that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Number of instances that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Number of instances at `updateRevision`.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Number of instances at `currentRevision`.
    #[serde(default)]
    pub current_replicas: i32,
    /// Revision (ControllerRevision name) that all instances had before the rollout in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// Revision of the current template, being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Bumped when two templates hash to the same revision name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i32>,
    /// Version that every instance runs, once the rollout is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Label selector of the instances' pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// What the group is doing, in one line, e.g. `rolling TiKV 2/6: evicting leaders from
    /// store 5` or `ready TiKV 3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

impl InstanceStatus {
    /// Whether the instance is Ready with its pod built from `revision` (the instance's own
    /// revision label): what a group waits for before it updates the next instance.
    pub fn ready_at(&self, revision: Option<&str>) -> bool {
        use crate::conditions::{TRUE, ready};
        revision.is_some()
            && self.current_revision.as_deref() == revision
            && self
                .conditions
                .iter()
                .any(|c| c.type_ == ready::TYPE && c.status == TRUE)
    }
}

/// Status fields every instance reports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Synced, LeadersEvicted, Offlined...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Revision of the template that the running pod was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
}

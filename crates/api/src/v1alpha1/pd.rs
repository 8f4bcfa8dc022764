//! PDGroup and PD: the Placement Driver members of a cluster.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    ClusterReference, ComponentTls, GroupStatus, InstanceStatus, ObjectMeta, Overlay, Port,
    Resources, SchedulePolicy, UpdatePolicy, Volume,
};

/// Default image repository of PD; the tag is the version.
pub const DEFAULT_PD_IMAGE: &str = "pingcap/pd";
/// Default client port of PD.
pub const DEFAULT_PD_CLIENT_PORT: i32 = 2379;
/// Default peer port of PD.
pub const DEFAULT_PD_PEER_PORT: i32 = 2380;

/// A group of PD members with the same template. A cluster has exactly one.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "core.tikv.org",
    version = "v1alpha1",
    kind = "PDGroup",
    doc = "A group of PD members sharing one template; a cluster has exactly one.",
    namespaced,
    derive = "PartialEq",
    status = "GroupStatus",
    shortname = "pdg",
    category = "tikv-all",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster.name"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Updated","type":"integer","jsonPath":".status.updatedReplicas"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.summary","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 40").message("a PDGroup name must be at most 40 characters")
)]
#[serde(rename_all = "camelCase")]
pub struct PDGroupSpec {
    /// The Cluster this group belongs to.
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable"))]
    pub cluster: ClusterReference,
    /// Number of PD members, at least 1. Odd numbers (3, 5) tolerate the most failures per
    /// member. At most half of the members may be removed in one change (PD keeps its quorum);
    /// scale down in steps. To stop PD and keep its data, suspend the Cluster
    /// (`spec.suspendAction.suspendCompute`); to remove everything, delete the Cluster.
    #[x_kube(
        validation = Rule::new("self >= 1").message("a PDGroup needs at least 1 member: to stop PD keeping its data, suspend the Cluster (spec.suspendAction.suspendCompute); to remove it, delete the Cluster"),
        validation = Rule::new("self * 2 >= oldSelf").message("a PDGroup may lose at most half of its members in one change (PD would lose its quorum): scale down in steps")
    )]
    pub replicas: i32,
    /// How a new template is rolled out.
    #[serde(default)]
    pub update_policy: UpdatePolicy,
    /// Where members are placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_policy: Option<SchedulePolicy>,
    /// Template of every member.
    pub template: PDTemplate,
}

/// Template of a PD member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PDTemplate {
    /// Labels and annotations of the PD objects and pods. Changing them rolls the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ObjectMeta>,
    /// Spec of every member.
    pub spec: PDTemplateSpec,
}

/// Spec of a PD member, copied from the group template into each PD object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PDTemplateSpec {
    /// PD version, used as the image tag, e.g. `v8.5.0`.
    #[x_kube(validation = Rule::new(crate::schema::SEMVER_CEL).message("version must be a semantic version such as v8.5.0"))]
    pub version: String,
    /// Image repository, without tag.
    #[serde(default = "default_pd_image")]
    pub image: String,
    /// Resources of the PD container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// PD configuration (TOML). Keys the operator owns (names, URLs, data dir) are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Volumes; one must be mounted as `type: data`. Required: a serde default (`[]`) would put
    /// `default: []` into the schema, which the API server refuses next to `minItems: 1`.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new("self.exists(v, v.mounts.exists(m, has(m.type) && m.type == 'data'))")
        .message("a volume with a mount of type data is required"))]
    pub volumes: Vec<Volume>,
    /// Ports of PD.
    #[serde(default)]
    pub server: PDServer,
    /// Patches of the generated pod and PVCs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<Overlay>,
    /// The certificate of this group's instances, used when the Cluster has TLS on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ComponentTls>,
}

fn default_pd_image() -> String {
    DEFAULT_PD_IMAGE.to_string()
}

/// Network settings of PD.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PDServer {
    /// Ports PD listens on.
    #[serde(default)]
    pub ports: PDPorts,
}

/// Ports of PD.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PDPorts {
    /// Client port (API and gRPC), 2379 by default.
    #[serde(default = "default_pd_client_port")]
    pub client: Port,
    /// Peer port (etcd raft), 2380 by default.
    #[serde(default = "default_pd_peer_port")]
    pub peer: Port,
}

impl Default for PDPorts {
    fn default() -> Self {
        Self {
            client: default_pd_client_port(),
            peer: default_pd_peer_port(),
        }
    }
}

fn default_pd_client_port() -> Port {
    Port {
        port: DEFAULT_PD_CLIENT_PORT,
    }
}

fn default_pd_peer_port() -> Port {
    Port {
        port: DEFAULT_PD_PEER_PORT,
    }
}

/// One PD member: one pod, its PVCs and its config. Created by the group controller.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "core.tikv.org",
    version = "v1alpha1",
    kind = "PD",
    doc = "One PD member: a pod, its PVCs and its config. Created and owned by its PDGroup.",
    plural = "pds",
    namespaced,
    derive = "PartialEq",
    status = "PDStatus",
    category = "tikv-all",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster.name"}"#,
    printcolumn = r#"{"name":"ID","type":"string","jsonPath":".status.id"}"#,
    printcolumn = r#"{"name":"Leader","type":"boolean","jsonPath":".status.isLeader"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 47").message("a PD name must be at most 47 characters")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(crate::schema::TOPOLOGY_IMMUTABLE_CEL).message("topology is immutable"))]
pub struct PDSpec {
    /// The Cluster this member belongs to.
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable"))]
    pub cluster: ClusterReference,
    /// Node labels this member is pinned to, chosen by the group when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 8))]
    pub topology: Option<BTreeMap<String, String>>,
    /// Headless Service the pod's host name lives under; its DNS name is the member's address.
    #[x_kube(validation = Rule::new("self == oldSelf").message("subdomain is immutable"))]
    pub subdomain: String,
    /// Names of the members that bootstrap a new PD cluster together (`--initial-cluster`); set by
    /// the group on the members it creates before PD exists. Empty: join the running cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub initial_members: Vec<String>,
    /// The group's template spec.
    #[serde(flatten)]
    pub template: PDTemplateSpec,
}

/// Observed state of a PD member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PDStatus {
    /// Conditions, revision and observed generation.
    #[serde(flatten)]
    pub common: InstanceStatus,
    /// PD member ID, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Whether this member is the PD leader.
    #[serde(default)]
    pub is_leader: bool,
    /// Whether PD reports this member healthy.
    #[serde(default)]
    pub health: bool,
}

//! Cluster: cluster-wide settings and the overview of all its groups.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A TiKV cluster: one PD group and one or more TiKV groups refer to it by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "core.tikv.org",
    version = "v1alpha1",
    kind = "Cluster",
    doc = "A TiKV cluster: cluster-wide settings and the overview of its PD and TiKV groups.",
    namespaced,
    derive = "PartialEq",
    status = "ClusterStatus",
    shortname = "tkc",
    category = "tikv-all",
    printcolumn = r#"{"name":"PD","type":"string","jsonPath":".status.pd"}"#,
    printcolumn = r#"{"name":"ID","type":"string","jsonPath":".status.id","priority":1}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 40").message("a Cluster name must be at most 40 characters")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.tlsCluster) && has(self.tlsCluster.enabled) && self.tlsCluster.enabled) == (has(oldSelf.tlsCluster) && has(oldSelf.tlsCluster.enabled) && oldSelf.tlsCluster.enabled)"
).message("tlsCluster.enabled cannot change once the cluster exists"))]
pub struct ClusterSpec {
    /// Stop every change to this cluster's objects (pods, PVCs, PD state) until set back to
    /// false. Status keeps being reported.
    #[serde(default)]
    pub paused: bool,
    /// What to stop while the cluster is suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_action: Option<SuspendAction>,
    /// Order in which components are upgraded.
    #[serde(default)]
    pub upgrade_policy: UpgradePolicy,
    /// How many ControllerRevisions each group keeps.
    #[serde(default = "default_revision_history_limit")]
    #[schemars(range(min = 0))]
    pub revision_history_limit: i32,
    /// Mutual TLS between PD, TiKV, their clients and the operator. Off unless set; whether it
    /// is on cannot change once the cluster exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cluster: Option<TlsCluster>,
}

impl ClusterSpec {
    /// Whether every pod of the cluster must be gone (`suspendAction.suspendCompute`).
    pub fn suspends_compute(&self) -> bool {
        self.suspend_action
            .as_ref()
            .is_some_and(|s| s.suspend_compute)
    }
}

impl Cluster {
    /// Whether PD and TiKV serve and dial each other only with mutual TLS.
    pub fn tls_enabled(&self) -> bool {
        self.spec.tls_cluster.as_ref().is_some_and(|t| t.enabled)
    }

    /// The Secret with the operator's client certificate for PD, when TLS is on.
    pub fn client_secret_name(&self) -> Option<String> {
        let tls = self.spec.tls_cluster.as_ref().filter(|t| t.enabled)?;
        Some(tls.client_secret_name.clone().unwrap_or_else(|| {
            format!(
                "{}-cluster-client-secret",
                self.metadata.name.as_deref().unwrap_or_default()
            )
        }))
    }
}

/// Mutual TLS inside the cluster. Certificates come from Secrets in cert-manager's layout
/// (`tls.crt`, `tls.key`, `ca.crt`): each group's from `<group>-cluster-secret` unless its
/// template names another (`template.spec.tls.secretName`), the operator's from
/// `clientSecretName`. A renewed certificate is picked up without restarts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsCluster {
    /// PD and TiKV serve and dial each other only with mutual TLS, and refuse clients without a
    /// certificate from the cluster's CA.
    #[serde(default)]
    pub enabled: bool,
    /// Secret with the client certificate the operator presents to PD; default
    /// `<cluster>-cluster-client-secret`. It may change at any time (nothing restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_name: Option<String>,
}

fn default_revision_history_limit() -> i32 {
    10
}

/// What a suspended cluster stops.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SuspendAction {
    /// Delete every pod (TiKV pods after their leaders are evicted) but keep PVCs and config, so
    /// that resuming brings back the same stores and members with the same IDs.
    #[serde(default)]
    pub suspend_compute: bool,
}

/// Order in which components are upgraded.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpgradePolicy {
    /// PD is upgraded before TiKV; TiKV waits until every PD runs the new version.
    #[default]
    Default,
    /// Every group rolls out on its own.
    NoConstraints,
}

/// Observed state of a Cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available, Progressing, Ready, Suspended, Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Client URL of PD, e.g. `http://basic-pd.default:2379`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pd: Option<String>,
    /// PD cluster ID, as a decimal string (it does not fit a JSON number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Replica counts per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// How PD places region replicas, as PD reports it (what zone-at-a-time updates rely on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
    /// What is going on, in one line, e.g. `rolling TiKV 2/6: evicting leaders from store 5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// PD's replica placement settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    /// Replicas of every region (`max-replicas`).
    pub max_replicas: i64,
    /// Store label keys replicas are spread over, widest first (`location-labels`).
    #[serde(default)]
    pub location_labels: Vec<String>,
    /// The label key replicas must be isolated by; empty when none (`isolation-level`).
    #[serde(default)]
    pub isolation_level: String,
}

/// Replica counts of one component over all its groups.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// `PD` or `TiKV`.
    pub kind: String,
    /// Desired instances.
    pub replicas: i32,
    /// Ready instances.
    pub ready_replicas: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::ComponentTls;

    #[test]
    fn default_secret_names() {
        let mut c = Cluster::new("basic", ClusterSpec::default());
        assert!(!c.tls_enabled());
        assert_eq!(c.client_secret_name(), None);
        c.spec.tls_cluster = Some(TlsCluster {
            enabled: true,
            client_secret_name: None,
        });
        assert!(c.tls_enabled());
        assert_eq!(
            c.client_secret_name().as_deref(),
            Some("basic-cluster-client-secret")
        );
        c.spec.tls_cluster.as_mut().unwrap().client_secret_name = Some("op".into());
        assert_eq!(c.client_secret_name().as_deref(), Some("op"));

        assert_eq!(
            ComponentTls::secret_name(None, "basic-pd"),
            "basic-pd-cluster-secret"
        );
        let named = ComponentTls {
            secret_name: Some("pd-certs".into()),
        };
        assert_eq!(
            ComponentTls::secret_name(Some(&named), "basic-pd"),
            "pd-certs"
        );
    }
}

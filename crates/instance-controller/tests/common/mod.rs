//! What the tests against the real API server share: a namespace whose Cluster reports a PD
//! that is down, with its own instance controller running.

#![allow(dead_code)] // each test binary uses a different subset

use api::v1alpha1::{Cluster, ClusterStatus};
use kube::api::PostParams;
use kube::{Api, Client};
use operator_runtime::metrics::Metrics;

/// A test namespace, its client, its controller and the controller's metrics.
pub struct Setup {
    /// Client of the shared control plane.
    pub client: Client,
    /// The namespace.
    pub ns: String,
    /// The instance controller, watching only `ns`.
    pub controller: tokio::task::JoinHandle<()>,
    /// The controller's metrics.
    pub metrics: Metrics,
}

/// A namespace (named `prefix-…`) with a Cluster `basic` whose PD URL is a closed port on
/// loopback (refused at once, like a PD that is down) and an instance controller.
pub async fn with_unreachable_pd(prefix: &str) -> Setup {
    let cp = testenv::shared();
    let ns = cp.create_namespace(prefix).await;
    let client = cp.client();
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), &ns);
    let cluster: Cluster = serde_yaml::from_str(
        "{apiVersion: core.tikv.org/v1alpha1, kind: Cluster, metadata: {name: basic}, spec: {}}",
    )
    .unwrap();
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let status = ClusterStatus {
        pd: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    };
    operator_runtime::ssa::apply_status(&clusters, "test/cluster", "basic", &status)
        .await
        .unwrap();
    let metrics = Metrics::new();
    let controller = tokio::spawn(instance_controller::run(
        client.clone(),
        metrics.clone(),
        2,
        Some(ns.clone()),
    ));
    Setup {
        client,
        ns,
        controller,
        metrics,
    }
}

/// A PD or TiKV (`kind`) object `name` of `group` in Cluster `basic`, at revision `r1`.
pub fn instance<K: serde::de::DeserializeOwned>(kind: &str, name: &str, group: &str) -> K {
    serde_yaml::from_str(&format!(
        "{{apiVersion: core.tikv.org/v1alpha1, kind: {kind}, metadata: {{name: {name}, labels: {{tikv.org/revision: r1, tikv.org/group: {group}}}}}, \
         spec: {{cluster: {{name: basic}}, subdomain: {group}-peer, version: v8.5.0, volumes: [{{name: data, mounts: [{{type: data}}], storage: 1Gi}}]}}}}"
    ))
    .unwrap()
}

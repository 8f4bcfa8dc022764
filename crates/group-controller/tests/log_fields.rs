//! Every line the group controller logs while it reconciles (its own, and the Events it
//! publishes) names the namespace, cluster and group it is about, in the JSON log.

use api::v1alpha1::{Cluster, TiKV, TiKVGroup};
use kube::Api;
use kube::api::{ListParams, PostParams};
use operator_runtime::telemetry::CapturedLog;
use testenv::wait_for;

fn group(name: &str, cluster: &str) -> TiKVGroup {
    serde_yaml::from_str(&format!(
        "{{apiVersion: core.tikv.org/v1alpha1, kind: TiKVGroup, metadata: {{name: {name}}}, \
         spec: {{cluster: {{name: {cluster}}}, replicas: 2, template: {{spec: {{version: v8.5.0, volumes: [{{name: data, mounts: [{{type: data}}], storage: 1Gi}}]}}}}}}}}"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reconcile_log_line_names_its_group() {
    let log = CapturedLog::install();
    let cp = testenv::shared();
    let ns = cp.create_namespace("log-fields").await;
    let client = cp.client();
    let controller = tokio::spawn(group_controller::run(
        client.clone(),
        operator_runtime::metrics::Metrics::new(),
        2,
        Some(ns.clone()),
    ));
    let cluster: Cluster = serde_yaml::from_str(
        "{apiVersion: core.tikv.org/v1alpha1, kind: Cluster, metadata: {name: basic}, spec: {}}",
    )
    .unwrap();
    Api::<Cluster>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap();
    let groups: Api<TiKVGroup> = Api::namespaced(client.clone(), &ns);
    groups
        .create(&PostParams::default(), &group("basic-tikv", "basic"))
        .await
        .unwrap();
    // A group whose Cluster does not exist: a Warning.
    groups
        .create(&PostParams::default(), &group("lost-tikv", "nowhere"))
        .await
        .unwrap();
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), &ns);
    wait_for(60, "two stores and the warning", || async {
        let n = tikvs.list(&ListParams::default()).await.ok()?.items.len();
        let warned = log
            .lines()
            .iter()
            .any(|l| l["fields"]["reason"] == "ClusterNotFound");
        (n == 2 && warned).then_some(())
    })
    .await;
    controller.abort();

    let ours: Vec<serde_json::Value> = log
        .lines()
        .into_iter()
        .filter(|l| {
            let target = l["target"].as_str().unwrap_or_default();
            target.starts_with("group_controller")
                || target.starts_with("operator_runtime::context")
        })
        .collect();
    let messages: Vec<&str> = ours
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .filter(|m| m.starts_with("Created TiKV basic-tikv-"))
            .count()
            == 2,
        "{messages:?}"
    );
    for l in &ours {
        let span = &l["span"];
        for field in ["namespace", "cluster", "group", "kind"] {
            assert!(
                span[field].as_str().is_some_and(|v| !v.is_empty()),
                "a line without {field}: {l}"
            );
        }
        assert_eq!(span["namespace"], ns.as_str());
    }
    assert!(
        ours.iter()
            .any(|l| l["span"]["cluster"] == "nowhere" && l["span"]["group"] == "lost-tikv")
    );
}

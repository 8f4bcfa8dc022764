//! Every line the instance controller logs while it reconciles (its own, its Events', its
//! failed reconciles') names the namespace, cluster, group and instance it is about, in the JSON
//! log a log collector reads. Run against a real API server, with PD unreachable so that the
//! warning and error paths log too.

use api::v1alpha1::{Cluster, ClusterStatus, PD, TiKV};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use operator_runtime::telemetry::CapturedLog;
use testenv::wait_for;

fn instance<K: serde::de::DeserializeOwned>(kind: &str, name: &str, group: &str) -> K {
    serde_yaml::from_str(&format!(
        "{{apiVersion: core.tikv.org/v1alpha1, kind: {kind}, metadata: {{name: {name}, labels: {{tikv.org/revision: r1, tikv.org/group: {group}}}}}, \
         spec: {{cluster: {{name: basic}}, subdomain: {group}-peer, version: v8.5.0, volumes: [{{name: data, mounts: [{{type: data}}], storage: 1Gi}}]}}}}"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reconcile_log_line_names_its_object() {
    let log = CapturedLog::install();
    let cp = testenv::shared();
    let ns = cp.create_namespace("log-fields").await;
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
    // PD on a closed port: every PD question fails and is logged.
    let status = ClusterStatus {
        pd: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    };
    operator_runtime::ssa::apply_status(&clusters, "test/cluster", "basic", &status)
        .await
        .unwrap();
    let controller = tokio::spawn(instance_controller::run(
        client.clone(),
        operator_runtime::metrics::Metrics::new(),
        2,
        Some(ns.clone()),
    ));
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), &ns);
    tikvs
        .create(
            &PostParams::default(),
            &instance("TiKV", "t1", "basic-tikv"),
        )
        .await
        .unwrap();
    let pds: Api<PD> = Api::namespaced(client.clone(), &ns);
    pds.create(&PostParams::default(), &instance("PD", "p1", "basic-pd"))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for(60, "both pods and a PD warning logged", || async {
        pods.get_opt("t1").await.ok()??;
        pods.get_opt("p1").await.ok()??;
        log.lines()
            .iter()
            .any(|l| l["fields"]["message"] == "cannot ask PD about the store")
            .then_some(())
    })
    .await;
    controller.abort();

    let ours: Vec<serde_json::Value> = log
        .lines()
        .into_iter()
        .filter(|l| {
            let target = l["target"].as_str().unwrap_or_default();
            [
                "instance_controller",
                "operator_runtime::context",
                "pdclient",
            ]
            .iter()
            .any(|t| target.starts_with(t))
        })
        .filter(|l| {
            // Only this test's namespace: other lines (none here) would be another test's.
            serde_json::to_string(l).unwrap().contains(&ns)
        })
        .collect();
    let messages: Vec<&str> = ours
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    // The controller's own warnings and the Events it publishes (logged too) are among them.
    assert!(
        messages.contains(&"cannot ask PD about the store"),
        "{messages:?}"
    );
    assert!(messages.contains(&"Created pod t1"), "{messages:?}");
    assert!(messages.contains(&"Created pod p1"), "{messages:?}");
    let mut instances = std::collections::BTreeSet::new();
    for l in &ours {
        let span = &l["span"];
        for field in ["namespace", "cluster", "group", "instance", "kind"] {
            assert!(
                span[field].as_str().is_some_and(|v| !v.is_empty()),
                "a line without {field}: {l}"
            );
        }
        assert_eq!(span["namespace"], ns.as_str());
        assert_eq!(span["cluster"], "basic");
        instances.insert(format!("{}/{}", span["group"], span["instance"]));
    }
    assert!(
        instances.contains(r#""basic-tikv"/"t1""#) && instances.contains(r#""basic-pd"/"p1""#),
        "{instances:?}"
    );
}

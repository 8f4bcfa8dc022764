//! The instance controller's reconcile spans reach a real OTLP collector (Jaeger, built from its
//! Go module) when an endpoint is configured, named `reconcile` and carrying the namespace,
//! cluster, group and instance they are about.

use api::v1alpha1::{Cluster, ClusterStatus, TiKV};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use operator_runtime::telemetry::{self, LogFormat, Tracing};
use testenv::jaeger::Jaeger;
use testenv::wait_for;

const SERVICE: &str = "tikv-operator-instance-controller";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_spans_are_exported_over_otlp() {
    let jaeger = Jaeger::start().await.unwrap();
    let tracing = Tracing {
        otlp_endpoint: Some(jaeger.otlp_grpc_endpoint()),
        service_name: SERVICE.into(),
    };
    let exporter = telemetry::init(LogFormat::Text, &tracing).unwrap();

    let cp = testenv::shared();
    let ns = cp.create_namespace("otlp").await;
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
    let controller = tokio::spawn(instance_controller::run(
        client.clone(),
        operator_runtime::metrics::Metrics::new(),
        2,
        Some(ns.clone()),
    ));
    let tikv: TiKV = serde_yaml::from_str(
        "{apiVersion: core.tikv.org/v1alpha1, kind: TiKV, metadata: {name: t1, labels: {tikv.org/revision: r1, tikv.org/group: basic-tikv}}, \
         spec: {cluster: {name: basic}, subdomain: basic-tikv-peer, version: v8.5.0, volumes: [{name: data, mounts: [{type: data}], storage: 1Gi}]}}",
    )
    .unwrap();
    Api::<TiKV>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &tikv)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for(60, "the store's pod", || async {
        pods.get_opt("t1").await.ok()?
    })
    .await;
    controller.abort();
    // What is still buffered goes out now.
    exporter.shutdown();

    let tag = |span: &serde_json::Value, key: &str| {
        span["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str().map(String::from))
    };
    let span = wait_for(30, "a reconcile span in Jaeger", || async {
        let traces = jaeger.traces(SERVICE).await.ok()?;
        traces
            .iter()
            .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
            .find(|s| {
                s["operationName"] == "reconcile" && tag(s, "namespace").as_deref() == Some(&ns)
            })
    })
    .await;
    assert_eq!(tag(&span, "kind").as_deref(), Some("TiKV"), "{span}");
    assert_eq!(tag(&span, "cluster").as_deref(), Some("basic"));
    assert_eq!(tag(&span, "group").as_deref(), Some("basic-tikv"));
    assert_eq!(tag(&span, "instance").as_deref(), Some("t1"));
    assert!(span["duration"].as_u64().is_some(), "{span}");
}

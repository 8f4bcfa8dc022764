//! The instance controller's reconcile spans reach a real OTLP collector (Jaeger, built from its
//! Go module) when an endpoint is configured, named `reconcile` and carrying the namespace,
//! cluster, group and instance they are about.

use api::v1alpha1::TiKV;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use operator_runtime::telemetry::{self, LogFormat, Tracing};
use testenv::jaeger::Jaeger;
use testenv::wait_for;

mod common;

const SERVICE: &str = "tikv-operator-instance-controller";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_spans_are_exported_over_otlp() {
    let jaeger = Jaeger::start().await.unwrap();
    let tracing = Tracing {
        otlp_endpoint: Some(jaeger.otlp_grpc_endpoint()),
        service_name: SERVICE.into(),
    };
    let exporter = telemetry::init(LogFormat::Text, &tracing).unwrap();

    let common::Setup {
        client,
        ns,
        controller,
        ..
    } = common::with_unreachable_pd("otlp").await;
    Api::<TiKV>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &common::instance::<TiKV>("TiKV", "t1", "basic-tikv"),
        )
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

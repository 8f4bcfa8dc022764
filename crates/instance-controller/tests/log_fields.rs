//! Every line the instance controller logs while it reconciles (its own, its Events', its
//! failed reconciles') names the namespace, cluster, group and instance it is about, in the JSON
//! log a log collector reads. Run against a real API server, with PD unreachable so that the
//! warning and error paths log too.

use api::v1alpha1::{PD, TiKV};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use operator_runtime::telemetry::CapturedLog;
use testenv::wait_for;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reconcile_log_line_names_its_object() {
    let log = CapturedLog::install();
    let common::Setup {
        client,
        ns,
        controller,
        ..
    } = common::with_unreachable_pd("log-fields").await;
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), &ns);
    tikvs
        .create(
            &PostParams::default(),
            &common::instance::<TiKV>("TiKV", "t1", "basic-tikv"),
        )
        .await
        .unwrap();
    let pds: Api<PD> = Api::namespaced(client.clone(), &ns);
    pds.create(
        &PostParams::default(),
        &common::instance::<PD>("PD", "p1", "basic-pd"),
    )
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

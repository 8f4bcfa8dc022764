//! The instance controller against a real kube-apiserver, with PD unreachable: it builds the
//! pod, ConfigMap and PVCs, refuses configs that override its keys, recreates deleted pods under
//! the same name, and neither restarts a store (leaders first) nor lets one go while PD cannot
//! be asked.

use std::time::Duration;

use api::v1alpha1::{Cluster, TiKV};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use operator_runtime::conditions;
use testenv::wait_for;

mod common;

fn tikv(name: &str, revision: &str, config: &str) -> TiKV {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: core.tikv.org/v1alpha1
kind: TiKV
metadata: {{name: {name}, labels: {{tikv.org/revision: {revision}, tikv.org/group: basic-tikv}}}}
spec:
  cluster: {{name: basic}}
  subdomain: basic-tikv-peer
  version: v8.5.0
  config: {config:?}
  volumes: [{{name: data, mounts: [{{type: data}}], storage: 1Gi}}]
"#
    ))
    .unwrap()
}

#[tokio::test]
async fn builds_pod_config_and_volumes_and_recreates_pods() {
    let common::Setup {
        client,
        ns,
        controller,
        metrics,
    } = common::with_unreachable_pd("instance").await;
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    tikvs
        .create(
            &PostParams::default(),
            &tikv("t1", "r1", "[storage]\nreserve-space = \"0MB\"\n"),
        )
        .await
        .unwrap();

    let pod = wait_for(30, "the pod", || async {
        pods.get_opt("t1").await.ok().flatten()
    })
    .await;
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("t1"));
    assert_eq!(spec.subdomain.as_deref(), Some("basic-tikv-peer"));
    let args = spec.containers[0].command.clone().unwrap();
    assert!(
        args.contains(&"--pd=http://127.0.0.1:1".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&format!(
            "--advertise-addr=t1.basic-tikv-peer.{ns}.svc:20160"
        )),
        "{args:?}"
    );
    assert_eq!(pod.labels()["tikv.org/revision"], "r1");
    assert_eq!(pod.owner_references()[0].name, "t1");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("t1")
        .await
        .unwrap();
    assert_eq!(
        cm.data.unwrap()["config.toml"],
        "[storage]\nreserve-space = \"0MB\"\n"
    );
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get("data-t1")
        .await
        .unwrap();
    assert_eq!(pvc.owner_references()[0].name, "t1");

    // Status: the pod is not running (no kubelet here), so not Ready; everything applied.
    let status = wait_for(30, "status", || async {
        let t = tikvs.get("t1").await.ok()?;
        let s = t.status?;
        conditions::find(&s.common.conditions, "Ready")
            .is_some()
            .then_some(s)
    })
    .await;
    assert_eq!(
        conditions::find(&status.common.conditions, "Ready")
            .unwrap()
            .reason,
        "PodNotReady"
    );
    assert!(conditions::is_true(&status.common.conditions, "Synced"));
    // /metrics reads the store from the controller's cache: not Ready, nothing else wrong.
    let text = metrics.encode();
    let series = |condition: &str| {
        format!(
            r#"tikv_operator_abnormal_instance{{namespace="{ns}",cluster="basic",component="tikv",group="basic-tikv",instance="t1",condition="{condition}"}}"#
        )
    };
    assert!(text.contains(&format!("{} 1.0", series("Ready"))), "{text}");
    assert!(
        text.contains(&format!("{} 0.0", series("Synced"))),
        "{text}"
    );
    assert!(
        tikvs
            .get("t1")
            .await
            .unwrap()
            .finalizers()
            .contains(&"core.tikv.org/pd-cleanup".to_string())
    );

    // A new revision would restart the pod, but PD cannot be asked to move the store's leaders
    // away: the running pod is kept.
    let old_uid = pod.uid();
    let patch = serde_json::json!({"metadata": {"labels": {"tikv.org/revision": "r2"}}});
    tikvs
        .patch("t1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = pods.get("t1").await.unwrap();
    assert_eq!(
        kept.uid(),
        old_uid,
        "no restart while PD cannot evict the store's leaders"
    );
    assert!(kept.metadata.deletion_timestamp.is_none());
    // A deleted pod comes back, under the same name and with the same PVC, at the new revision.
    pods.delete("t1", &DeleteParams::default()).await.unwrap();
    let new = wait_for(30, "the pod recreated at r2", || async {
        pods.get_opt("t1")
            .await
            .ok()
            .flatten()
            .filter(|p| p.uid() != old_uid && p.labels()["tikv.org/revision"] == "r2")
    })
    .await;
    assert_eq!(
        new.spec.clone().unwrap().volumes.unwrap()[1]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data-t1"
    );
    // Deleting the instance while PD cannot be asked: the finalizer keeps it.
    tikvs.delete("t1", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = tikvs.get("t1").await.unwrap();
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert!(
        kept.finalizers()
            .contains(&"core.tikv.org/pd-cleanup".to_string()),
        "a store PD cannot vouch for must not be released"
    );
    // Once the whole cluster goes, PD state no longer matters.
    Api::<Cluster>::namespaced(client.clone(), &ns)
        .delete("basic", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(30, "the instance gone", || async {
        tikvs
            .get_opt("t1")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    controller.abort();
}

#[tokio::test]
async fn refuses_a_config_that_sets_operator_keys() {
    let common::Setup {
        client,
        ns,
        controller,
        ..
    } = common::with_unreachable_pd("instance").await;
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), &ns);
    tikvs
        .create(
            &PostParams::default(),
            &tikv("bad", "r1", "[server]\naddr = \"0.0.0.0:20160\"\n"),
        )
        .await
        .unwrap();
    let synced = wait_for(30, "Synced=False", || async {
        let s = tikvs.get("bad").await.ok()?.status?;
        conditions::find(&s.common.conditions, "Synced").cloned()
    })
    .await;
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "InvalidConfig")
    );
    assert!(synced.message.contains("server.addr"), "{}", synced.message);
    testenv::wait::event(&client, &ns, "InvalidConfig", "Warning", Some("bad")).await;
    assert!(
        Api::<Pod>::namespaced(client.clone(), &ns)
            .get_opt("bad")
            .await
            .unwrap()
            .is_none(),
        "no pod for a refused config"
    );
    controller.abort();
}

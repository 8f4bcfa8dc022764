//! Failover, checked against PD, for a store frozen (its process stopped, as on a hung disk) and
//! then for a store killed on a node whose kubelet is stopped (so nothing restarts it): each,
//! once PD reports it Down, gets one replacement (bounded by `maxReplacements`) that joins PD as
//! a new Up store; once the failed store is back Up, the replacement is retired the two-step way
//! (Tombstone in PD, then its objects go) and the failed store keeps its id and PVC. A client
//! workload runs throughout: no operation fails, nothing is lost.

use api::v1alpha1::{TiKV, TiKVGroup};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use operator_runtime::conditions;
use testenv::wait_for;

/// How a store fails.
enum Fault {
    /// SIGSTOP through the cgroup freezer; thawed to recover.
    Freeze,
    /// Its node's kubelet stopped, then its container killed; the kubelet resumed to recover.
    Kill,
}

#[test]
fn a_down_store_is_replaced_and_the_replacement_retired_when_it_returns() {
    e2e::run(async {
        let env = e2e::Env::start("failover").await;
        env.apply_example("basic").await;
        let policy = serde_json::json!({"spec": {"failover": {
            "enabled": true, "period": "5s", "maxReplacements": 1
        }}});
        env.api::<TiKVGroup>()
            .patch(
                "basic-tikv",
                &PatchParams::default(),
                &Patch::Merge(&policy),
            )
            .await
            .unwrap();
        env.wait_cluster_ready("basic", 180).await;
        let pd = env.pd_members("basic").await;
        let workload = e2e::Workload::start(&env, "basic").await;
        let stores: Vec<String> = env.store_ids().await.into_keys().collect();
        fail_replace_and_recover(&env, &pd, &stores[0], Fault::Freeze).await;
        env.wait_event("FailoverReplacement", None, 10).await;
        fail_replace_and_recover(&env, &pd, &stores[1], Fault::Kill).await;
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

/// Fails the store of instance `name`, waits for its one replacement, recovers it, and waits
/// until the replacement is retired and the group is back to three Ready stores.
async fn fail_replace_and_recover(
    env: &e2e::Env,
    pd: &pdclient::PdClient,
    name: &str,
    fault: Fault,
) {
    let id: u64 = env
        .api::<TiKV>()
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap()
        .id
        .unwrap()
        .parse()
        .unwrap();
    let pvc_uid = env
        .api::<PersistentVolumeClaim>()
        .get(&format!("data-{name}"))
        .await
        .unwrap()
        .uid();
    let pod = env.api::<Pod>().get(name).await.unwrap();
    let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
    match fault {
        Fault::Freeze => env.freeze_pod(name, true).await,
        Fault::Kill => {
            env.stop_kubelet(&node);
            env.kill_containers(&pod);
        }
    }
    let replacement = wait_for(
        180,
        &format!("PD: store {id} Down; a replacement Up"),
        || async {
            let down = pd.store(id).await.ok()?.store.state_name.as_str() == "Down";
            let r = env
                .api::<TiKV>()
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|t| {
                    t.annotations()
                        .get(api::labels::REPLACEMENT_FOR)
                        .map(String::as_str)
                        == Some(name)
                })?;
            let rid: u64 = r.status.as_ref()?.id.as_ref()?.parse().ok()?;
            let up = pd.store(rid).await.ok()?.store.state_name.as_str() == "Up";
            (down && up).then_some((r.name_any(), rid))
        },
    )
    .await;
    // One replacement only.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let tikvs = env
        .api::<TiKV>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(tikvs.items.len(), 4, "maxReplacements 1: one replacement");

    // The store comes back: the replacement drains to Tombstone, then its objects go.
    match fault {
        Fault::Freeze => env.freeze_pod(name, false).await,
        Fault::Kill => env.resume_kubelet(&node),
    }
    let retired = testenv::wait::poll_for(360, || async {
        let back = pd.store(id).await.ok()?.store.state_name.as_str() == "Up";
        let tomb = pd
            .store(replacement.1)
            .await
            .ok()?
            .store
            .state_name
            .as_str()
            == "Tombstone";
        let gone = env
            .api::<TiKV>()
            .get_opt(&replacement.0)
            .await
            .ok()?
            .is_none()
            && env
                .api::<PersistentVolumeClaim>()
                .get_opt(&format!("data-{}", replacement.0))
                .await
                .ok()?
                .is_none();
        (back && tomb && gone).then_some(())
    })
    .await;
    assert!(
        retired.is_some(),
        "timed out after 360 s waiting for store {id} Up; the replacement {} Tombstone and \
         gone. PD:\n{}",
        replacement.0,
        e2e::pd_summary(pd).await
    );
    let t = env.api::<TiKV>().get(name).await.unwrap();
    assert_eq!(t.status.unwrap().id.unwrap(), id.to_string());
    let pvc = env
        .api::<PersistentVolumeClaim>()
        .get(&format!("data-{name}"))
        .await
        .unwrap();
    assert_eq!(pvc.uid(), pvc_uid, "the failed store kept its data");
    wait_for(120, "the group Ready with 3 stores", || async {
        let s = env
            .api::<TiKVGroup>()
            .get("basic-tikv")
            .await
            .ok()?
            .status?;
        (conditions::is_true(&s.conditions, "Ready") && s.replicas == 3 && s.ready_replicas == 3)
            .then_some(())
    })
    .await;
}

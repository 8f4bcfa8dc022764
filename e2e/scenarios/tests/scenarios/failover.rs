//! Failover, checked against PD: a store frozen until PD reports it Down gets one replacement
//! (bounded by `maxReplacements`) that joins PD as a new Up store; once the frozen store is back
//! Up, the replacement is retired the two-step way (Tombstone in PD, then its objects go) and the
//! failed store keeps its id and PVC.

use api::v1alpha1::{TiKV, TiKVGroup};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use operator_runtime::conditions;
use testenv::wait_for;

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
        let victim = env
            .api::<TiKV>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
            .unwrap();
        let name = victim.name_any();
        let id: u64 = victim.status.unwrap().id.unwrap().parse().unwrap();
        let pvc_uid = env
            .api::<PersistentVolumeClaim>()
            .get(&format!("data-{name}"))
            .await
            .unwrap()
            .uid();

        let workload = e2e::Workload::start(&env, "basic").await;
        env.freeze_pod(&name, true).await;
        let replacement = wait_for(180, "PD: store Down; a replacement Up", || async {
            let down = pd.store(id).await.ok()?.store.state_name.as_str() == "Down";
            let r = env
                .api::<TiKV>()
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|t| t.annotations().get(api::labels::REPLACEMENT_FOR) == Some(&name))?;
            let rid: u64 = r.status.as_ref()?.id.as_ref()?.parse().ok()?;
            let up = pd.store(rid).await.ok()?.store.state_name.as_str() == "Up";
            (down && up).then_some((r.name_any(), rid))
        })
        .await;
        // One replacement only, and the Event says why.
        tokio::time::sleep(std::time::Duration::from_secs(8)).await;
        let tikvs = env
            .api::<TiKV>()
            .list(&ListParams::default())
            .await
            .unwrap();
        assert_eq!(tikvs.items.len(), 4, "maxReplacements 1: one replacement");
        env.wait_event("FailoverReplacement", None, 10).await;

        // The store comes back: the replacement drains to Tombstone, then its objects go.
        env.freeze_pod(&name, false).await;
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
            "timed out after 360 s waiting for the failed store Up; the replacement Tombstone and \
             gone. PD:\n{}",
            e2e::pd_summary(&pd).await
        );
        let t = env.api::<TiKV>().get(&name).await.unwrap();
        assert_eq!(t.status.unwrap().id.unwrap(), id.to_string());
        let pvc = env
            .api::<PersistentVolumeClaim>()
            .get(&format!("data-{name}"))
            .await
            .unwrap();
        assert_eq!(pvc.uid(), pvc_uid, "the failed store kept its data");
        wait_for(60, "the group Ready with 3 stores", || async {
            let s = env
                .api::<TiKVGroup>()
                .get("basic-tikv")
                .await
                .ok()?
                .status?;
            (conditions::is_true(&s.conditions, "Ready") && s.replicas == 3).then_some(())
        })
        .await;
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

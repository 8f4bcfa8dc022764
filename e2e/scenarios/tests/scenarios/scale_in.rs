//! Two-step TiKV scale-in against PD: a removal PD refuses (it would leave fewer Up stores than
//! max-replicas) deletes nothing and says so; a removal PD accepts drains the store to Tombstone
//! before the instance, pod and PVC go; raising replicas before that cancels it. The store that
//! goes is the one the user annotated, and killing the controllers while it drains changes
//! nothing: the others keep their stores and PVCs.

use api::v1alpha1::{TiKV, TiKVGroup};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use operator_runtime::conditions;
use testenv::wait_for;

async fn replicas(env: &e2e::Env, n: i32) {
    let p = serde_json::json!({"spec": {"replicas": n}});
    env.api::<TiKVGroup>()
        .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
}

async fn offline(env: &e2e::Env) -> Option<TiKV> {
    env.api::<TiKV>()
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .into_iter()
        .find(|t| t.spec.offline)
}

#[test]
fn two_step_scale_in_refusal_and_cancel() {
    e2e::run(async {
        let env = e2e::Env::start("scalein").await;
        env.apply_example("basic").await;
        env.wait_cluster_ready("basic", 180).await;
        let pd = env.pd("basic").await;
        let workload = e2e::Workload::start(&env, "basic").await;

        // 3 -> 2 with max-replicas 3: PD refuses; the store stays, with a condition and an Event.
        replicas(&env, 2).await;
        let refused = wait_for(60, "the refusal on the leaving store", || async {
            let t = offline(&env).await?;
            let c = conditions::find(&t.status.as_ref()?.common.conditions, "Offlined")?.clone();
            (c.reason == "Refused").then_some((t, c))
        })
        .await;
        assert!(
            refused.1.message.contains("can not remove store"),
            "{}",
            refused.1.message
        );
        env.wait_event("StoreRemovalRefused", None, 10).await;
        let id: u64 = refused
            .0
            .status
            .as_ref()
            .unwrap()
            .id
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pd.store(id).await.unwrap().store.state_name.as_str(), "Up");
        assert_eq!(
            env.api::<TiKV>()
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            3
        );

        // Back to 3: the removal is cancelled, the same store stays.
        replicas(&env, 3).await;
        wait_for(60, "no store leaving", || async {
            offline(&env).await.is_none().then_some(())
        })
        .await;

        // 4 stores, then 3: PD accepts; the store drains to Tombstone, then everything of it goes.
        replicas(&env, 4).await;
        wait_for(120, "4 Up stores, group Ready", || async {
            let up = e2e::up_stores(&pd, None).await?;
            let g = env
                .api::<TiKVGroup>()
                .get("basic-tikv")
                .await
                .ok()?
                .status?;
            (up == 4 && conditions::is_true(&g.conditions, "Ready")).then_some(())
        })
        .await;
        // The user picks the store to remove: the alphabetically first, which the default order
        // (newest name first) would not take.
        let tikvs = env
            .api::<TiKV>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        let chosen = tikvs.iter().map(|t| t.name_any()).min().unwrap();
        let pvc_uids = |pvcs: Vec<PersistentVolumeClaim>| -> Vec<(String, String)> {
            let mut v: Vec<_> = pvcs
                .into_iter()
                .filter(|p| p.name_any() != format!("data-{chosen}"))
                .filter(|p| p.name_any().contains("tikv"))
                .map(|p| (p.name_any(), p.uid().unwrap()))
                .collect();
            v.sort();
            v
        };
        let kept = pvc_uids(
            env.api::<PersistentVolumeClaim>()
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        );
        assert_eq!(kept.len(), 3);
        let note = serde_json::json!({"metadata": {"annotations": {api::labels::SCALE_IN_PREFERRED: "true"}}});
        env.api::<TiKV>()
            .patch(&chosen, &PatchParams::default(), &Patch::Merge(&note))
            .await
            .unwrap();
        replicas(&env, 3).await;
        let leaving = wait_for(60, "a leaving store with its id", || async {
            let t = offline(&env).await?;
            t.status
                .as_ref()?
                .id
                .clone()
                .map(|id| (t.name_any(), id.parse::<u64>().unwrap()))
        })
        .await;
        assert_eq!(leaving.0, chosen, "the annotated store leaves");
        // Kill the controllers while PD drains the store; they must pick up where they were.
        wait_for(60, "PD removing the store", || async {
            let s = pd.store(leaving.1).await.ok()?;
            // A fast drain may already be done: then the restart hits the deletion step instead.
            matches!(s.store.state_name.as_str(), "Offline" | "Tombstone").then_some(())
        })
        .await;
        env.restart_controllers().await;
        let (name, id) = leaving;
        wait_for(
            180,
            "the store Tombstone in PD and its objects gone",
            || async {
                let tomb = pd.store(id).await.ok()?.store.state_name.as_str() == "Tombstone";
                let gone = env.api::<TiKV>().get_opt(&name).await.ok()?.is_none()
                    && env.api::<Pod>().get_opt(&name).await.ok()?.is_none()
                    && env
                        .api::<PersistentVolumeClaim>()
                        .get_opt(&format!("data-{name}"))
                        .await
                        .ok()?
                        .is_none();
                (tomb && gone).then_some(())
            },
        )
        .await;
        let up = e2e::up_stores(&pd, None).await.unwrap();
        assert_eq!(up, 3);
        let after = pvc_uids(
            env.api::<PersistentVolumeClaim>()
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        );
        assert_eq!(after, kept, "the stores that stay keep their PVCs");
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

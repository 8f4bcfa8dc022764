//! examples/basic end to end: Ready, checked against PD itself; scale out PD and TiKV; a deleted
//! TiKV pod comes back as the same store; PD scales in keeping its leader; an image that cannot
//! run stops the rollout at the first store with a clear condition and Event, and fixing it
//! recovers.

use api::v1alpha1::{Cluster, PDGroup, TiKV, TiKVGroup};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use operator_runtime::conditions;
use testenv::wait_for;

#[test]
fn basic_cluster_ready_scale_out_and_pod_recreation() {
    e2e::run(async {
        let env = e2e::Env::start("basic").await;
        let applied = env.apply_example("basic").await;
        env.wait_cluster_ready("basic", 180).await;
        println!(
            "examples/basic: apply -> Cluster Ready in {:.1}s",
            applied.elapsed().as_secs_f64()
        );

        // PD itself: 3 members, one leader, 3 Up stores, the ids the TiKV objects report.
        let pd = env.pd("basic").await;
        let members = pd.members().await.unwrap();
        assert_eq!(members.members.len(), 3);
        assert!(members.leader.is_some());
        let leaders: Vec<_> = env
            .api::<api::v1alpha1::PD>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().is_some_and(|s| s.is_leader))
            .collect();
        assert_eq!(leaders.len(), 1, "exactly one PD object reports leadership");
        assert_eq!(leaders[0].name_any(), members.leader.unwrap().name);
        let up: Vec<u64> = pd
            .stores()
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.store.state_name.as_str() == "Up")
            .map(|s| s.store.id)
            .collect();
        assert_eq!(up.len(), 3);
        let tikvs = env
            .api::<TiKV>()
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        for t in &tikvs {
            let s = t.status.as_ref().unwrap();
            let id: u64 = s.id.as_deref().unwrap().parse().unwrap();
            assert!(
                up.contains(&id),
                "store {id} of {} is Up in PD",
                t.name_any()
            );
            assert!(s.leader_count.is_some() && s.region_count.is_some());
        }

        // An application's load through everything below: nothing may fail or get lost.
        let workload = e2e::Workload::start(&env, "basic").await;

        // Scale out both groups 3 -> 5.
        let five = serde_json::json!({"spec": {"replicas": 5}});
        env.api::<TiKVGroup>()
            .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&five))
            .await
            .unwrap();
        env.api::<PDGroup>()
            .patch("basic-pd", &PatchParams::default(), &Patch::Merge(&five))
            .await
            .unwrap();
        wait_for(180, "5 PD members and 5 Up stores", || async {
            let members = pd.members().await.ok()?.members.len();
            let up = e2e::up_stores(&pd, None).await?;
            let s = env.api::<Cluster>().get("basic").await.ok()?.status?;
            (members == 5 && up == 5 && conditions::is_true(&s.conditions, "Ready")).then_some(())
        })
        .await;

        // A deleted pod is recreated under the same name and comes back as the same store.
        let victim = env
            .api::<TiKV>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .remove(0);
        let id = victim.status.as_ref().unwrap().id.clone().unwrap();
        let old_uid = env
            .api::<Pod>()
            .get(&victim.name_any())
            .await
            .unwrap()
            .uid();
        env.api::<Pod>()
            .delete(&victim.name_any(), &DeleteParams::default())
            .await
            .unwrap();
        wait_for(120, "the pod back, Ready, same store", || async {
            let pod = env.api::<Pod>().get(&victim.name_any()).await.ok()?;
            let t = env.api::<TiKV>().get(&victim.name_any()).await.ok()?;
            let s = t.status?;
            (pod.uid() != old_uid && conditions::is_true(&s.common.conditions, "Ready"))
                .then_some(())?;
            let store = pd.store(id.parse().ok()?).await.ok()?;
            (s.id.as_deref() == Some(id.as_str()) && store.store.state_name.as_str() == "Up")
                .then_some(())
        })
        .await;
        assert_eq!(
            pd.stores().await.unwrap().len(),
            5,
            "no new store was registered for the recreated pod"
        );

        // PD 5 -> 3: followers leave PD first; the leader stays. The group picks by the PD objects'
        // status, so first wait until it names the member PD calls leader.
        let leader = wait_for(60, "PD status naming PD's leader", || async {
            let leader = pd.leader().await.ok()?.name;
            let pds = env
                .api::<api::v1alpha1::PD>()
                .list(&Default::default())
                .await
                .ok()?;
            let named: Vec<String> = pds
                .items
                .iter()
                .filter(|p| p.status.as_ref().is_some_and(|s| s.is_leader))
                .map(|p| p.name_any())
                .collect();
            (named == [leader.clone()]).then_some(leader)
        })
        .await;
        let three = serde_json::json!({"spec": {"replicas": 3}});
        env.api::<PDGroup>()
            .patch("basic-pd", &PatchParams::default(), &Patch::Merge(&three))
            .await
            .unwrap();
        // (A removed member's process answers "server not started" until its pod is gone, so the
        // leader is read in the same wait.)
        let after = wait_for(120, "3 PD members, PD objects and a PD leader", || async {
            let members = pd.members().await.ok()?.members;
            let objects = env
                .api::<api::v1alpha1::PD>()
                .list(&Default::default())
                .await
                .ok()?;
            (members.len() == 3 && objects.items.len() == 3).then_some(())?;
            pd.leader().await.ok()?;
            Some(members.into_iter().map(|m| m.name).collect::<Vec<_>>())
        })
        .await;
        // The operator removed followers only. (PD may still elect another leader meanwhile:
        // removing the member that leads etcd's raft, which need not be PD's leader, can cost
        // PD's leader its lease on this loaded machine.)
        assert!(
            after.contains(&leader),
            "the PD leader {leader} was removed; members now: {after:?}"
        );

        // An image that cannot run: the rollout stops at the first store and says why.
        let bad =
            serde_json::json!({"spec": {"template": {"spec": {"image": "pingcap/tikv-typo"}}}});
        env.api::<TiKVGroup>()
            .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&bad))
            .await
            .unwrap();
        let broken = wait_for(120, "a TiKV reporting ErrImagePull", || async {
            env.api::<TiKV>()
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|t| {
                    t.status.as_ref().is_some_and(|s| {
                        conditions::find(&s.common.conditions, "Ready").is_some_and(|c| {
                            c.reason == "ErrImagePull" && c.message.contains("tikv-typo")
                        })
                    })
                })
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(8)).await;
        let pods = env
            .api::<Pod>()
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        let typo = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().is_some_and(|s| {
                    s.containers
                        .iter()
                        .any(|c| c.image.as_deref().is_some_and(|i| i.contains("typo")))
                })
            })
            .count();
        assert_eq!(typo, 1, "the rollout stopped at the first store");
        env.wait_event("PodCannotRun", Some(&broken.name_any()), 10)
            .await;
        let fixed = serde_json::json!({"spec": {"template": {"spec": {"image": "pingcap/tikv"}}}});
        env.api::<TiKVGroup>()
            .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&fixed))
            .await
            .unwrap();
        wait_for(120, "Cluster Ready again with 5 Up stores", || async {
            let up = e2e::up_stores(&pd, None).await?;
            let s = env.api::<Cluster>().get("basic").await.ok()?.status?;
            (up == 5 && conditions::is_true(&s.conditions, "Ready")).then_some(())
        })
        .await;
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

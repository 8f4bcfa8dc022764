//! Pause, suspend, resume and delete a cluster, checked against PD and the API server: a paused
//! cluster changes nothing and says so; a suspended one has no pod but keeps every PVC; resuming
//! brings back the same stores and members (same ids in PD); deleting the Cluster leaves nothing
//! behind.

use std::collections::BTreeMap;
use std::time::Duration;

use api::v1alpha1::{Cluster, PD, PDGroup, TiKV, TiKVGroup};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use operator_runtime::conditions;
use testenv::wait_for;

async fn patch_cluster(env: &e2e::Env, spec: serde_json::Value) {
    env.api::<Cluster>()
        .patch(
            "basic",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

async fn cluster_condition(env: &e2e::Env, type_: &str, want: bool) {
    wait_for(180, &format!("Cluster {type_}={want}"), || async {
        let s = env.api::<Cluster>().get("basic").await.ok()?.status?;
        (conditions::is_true(&s.conditions, type_) == want).then_some(())
    })
    .await;
}

/// Every pod's UID by name: a recreated pod has a new one.
async fn pod_uids(env: &e2e::Env) -> BTreeMap<String, String> {
    env.api::<Pod>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| (p.name_any(), p.uid().unwrap()))
        .collect()
}

async fn names<K>(env: &e2e::Env) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let mut v: Vec<String> = env
        .api::<K>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    v.sort();
    v
}

/// Instance name → id reported in its status (store id, member id).
async fn ids(env: &e2e::Env) -> BTreeMap<String, String> {
    let tikvs = env
        .api::<TiKV>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let pds = env.api::<PD>().list(&ListParams::default()).await.unwrap();
    tikvs
        .items
        .into_iter()
        .map(|t| {
            (
                t.name_any(),
                t.status.and_then(|s| s.id).unwrap_or_default(),
            )
        })
        .chain(pds.items.into_iter().map(|p| {
            (
                p.name_any(),
                p.status.and_then(|s| s.id).unwrap_or_default(),
            )
        }))
        .collect()
}

#[test]
fn pause_suspend_resume_and_delete() {
    e2e::run(async {
        let env = e2e::Env::start("lifecycle").await;
        env.apply_example("basic").await;
        cluster_condition(&env, "Ready", true).await;
        let before = ids(&env).await;
        assert_eq!(before.len(), 6);
        let pods_before = pod_uids(&env).await;
        // An application's load throughout: nothing may fail except while suspended.
        let workload = e2e::Workload::start(&env, "basic").await;

        // Paused: a scale-out is not acted on, and the group says why.
        patch_cluster(&env, serde_json::json!({"paused": true})).await;
        cluster_condition(&env, "Paused", true).await;
        let scale = |n: i32| serde_json::json!({"spec": {"replicas": n}});
        let groups = env.api::<TiKVGroup>();
        let pp = PatchParams::default();
        groups
            .patch("basic-tikv", &pp, &Patch::Merge(&scale(4)))
            .await
            .unwrap();
        wait_for(30, "the TiKVGroup reporting Paused", || async {
            let s = groups.get("basic-tikv").await.ok()?.status?;
            let c = conditions::find(&s.conditions, "Synced")?;
            (c.reason == "Paused" && s.observed_generation == Some(2)).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            names::<TiKV>(&env).await.len(),
            3,
            "no store added while paused"
        );
        groups
            .patch("basic-tikv", &pp, &Patch::Merge(&scale(3)))
            .await
            .unwrap();
        patch_cluster(&env, serde_json::json!({"paused": false})).await;
        cluster_condition(&env, "Paused", false).await;
        cluster_condition(&env, "Ready", true).await;
        let pods_now = pod_uids(&env).await;
        assert_eq!(pods_now, pods_before, "pause and unpause touched no pod");

        // Suspended: no pod runs, every PVC stays.
        let pvcs = names::<PersistentVolumeClaim>(&env).await;
        assert_eq!(pvcs.len(), 6);
        let suspended = std::time::SystemTime::now();
        patch_cluster(
            &env,
            serde_json::json!({"suspendAction": {"suspendCompute": true}}),
        )
        .await;
        wait_for(180, "no pod left and the Cluster Suspended", || async {
            let pods = env.api::<Pod>().list(&ListParams::default()).await.ok()?;
            let s = env.api::<Cluster>().get("basic").await.ok()?.status?;
            (pods.items.is_empty() && conditions::is_true(&s.conditions, "Suspended")).then_some(())
        })
        .await;
        assert_eq!(names::<PersistentVolumeClaim>(&env).await, pvcs);

        // Resumed: the same stores and members come back.
        patch_cluster(
            &env,
            serde_json::json!({"suspendAction": {"suspendCompute": false}}),
        )
        .await;
        cluster_condition(&env, "Suspended", false).await;
        cluster_condition(&env, "Ready", true).await;
        let suspension = e2e::Window::since(suspended);
        assert_eq!(
            ids(&env).await,
            before,
            "same store and member ids after resume"
        );
        let pd = env.pd_members("basic").await;
        wait_for(
            60,
            "the same 3 stores Up in PD, no eviction left",
            || async {
                let up: Vec<String> = pd
                    .stores()
                    .await
                    .ok()?
                    .iter()
                    .filter(|s| s.store.state_name.as_str() == "Up")
                    .map(|s| s.store.id.to_string())
                    .collect();
                let mut want: Vec<String> = before
                    .iter()
                    .filter(|(n, _)| n.contains("tikv"))
                    .map(|(_, id)| id.clone())
                    .collect();
                want.sort();
                let mut up = up;
                up.sort();
                let evicting = pd.evict_leader_stores().await.ok()?;
                (up == want && evicting.is_empty()).then_some(())
            },
        )
        .await;
        assert_eq!(names::<PersistentVolumeClaim>(&env).await, pvcs);
        // Operations fail only while suspended, and succeed again after resume.
        e2e::workload::wait_replicated(&pd, 120).await;
        workload
            .stop()
            .await
            .assert_only_failed_within(&[suspension]);

        // Deleted: nothing of the cluster is left.
        env.api::<Cluster>()
            .delete("basic", &DeleteParams::default())
            .await
            .unwrap();
        wait_for(180, "every object of the cluster gone", || async {
            let left = [
                names::<Cluster>(&env).await,
                names::<PDGroup>(&env).await,
                names::<TiKVGroup>(&env).await,
                names::<PD>(&env).await,
                names::<TiKV>(&env).await,
                names::<Pod>(&env).await,
                names::<PersistentVolumeClaim>(&env).await,
                names::<Service>(&env).await,
                names::<ControllerRevision>(&env).await,
                names::<ConfigMap>(&env)
                    .await
                    .into_iter()
                    .filter(|n| n != "kube-root-ca.crt")
                    .collect(),
            ]
            .concat();
            left.is_empty().then_some(())
        })
        .await;
        env.stop().await;
    })
}

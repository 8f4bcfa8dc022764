//! `kubectl drain` of a worker node under the client workload, checked against PD and the API
//! server: the node's PD member and store are evicted (the store hands its leaders over; the
//! operator puts it into PD's evict-leader scheduler while it stops); the groups'
//! PodDisruptionBudgets then refuse a second drain while the first node's pods are down (their
//! local volumes pin them to the cordoned node); uncordoned, the same store and member come back.
//! The workload sees no failed operation and loses nothing.

use api::v1alpha1::{Cluster, TiKV};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use operator_runtime::conditions;
use testenv::wait_for;

/// The node a pod runs on.
async fn node_of(env: &e2e::Env, pod: &str) -> String {
    env.api::<Pod>()
        .get(pod)
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .unwrap()
}

/// How many more pods of group `name` may be evicted now, as the disruption controller says.
async fn disruptions_allowed(env: &e2e::Env, name: &str) -> Option<i32> {
    let pdb = env.api::<PodDisruptionBudget>().get(name).await.ok()?;
    Some(pdb.status?.disruptions_allowed)
}

#[test]
fn a_drained_node_loses_no_write_and_the_budgets_allow_one_at_a_time() {
    e2e::run(async {
        let env = e2e::Env::start("drain").await;
        env.apply_example("basic").await;
        env.wait_cluster_ready("basic", 180).await;
        let pd = env.pd_members("basic").await;
        let ids = env.store_ids().await;
        // The first store drained is one away from the PD leader: PD keeps answering the
        // operator's requests while the node goes (a killed PD leader is node_faults' case).
        let leader_node = node_of(&env, &pd.leader().await.unwrap().name).await;
        let mut names: Vec<String> = ids.keys().cloned().collect();
        for i in 0..names.len() {
            if node_of(&env, &names[i]).await != leader_node {
                names.swap(0, i);
                break;
            }
        }
        wait_for(
            60,
            "each group's budget allowing one disruption",
            || async {
                (disruptions_allowed(&env, "basic-pd").await? == 1
                    && disruptions_allowed(&env, "basic-tikv").await? == 1)
                    .then_some(())
            },
        )
        .await;
        let workload = e2e::Workload::start(&env, "basic").await;

        // Drain the node of the first store.
        let first = node_of(&env, &names[0]).await;
        let old_uid = env.api::<Pod>().get(&names[0]).await.unwrap().uid();
        let (ok, out) = env.kubectl(&[
            "drain",
            &first,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=180s",
        ]);
        assert!(ok, "kubectl drain {first}: {out}");
        env.wait_event("EvictingLeaders", Some(&names[0]), 30).await;
        wait_for(60, "the drained store's budget used up", || async {
            (disruptions_allowed(&env, "basic-tikv").await? == 0).then_some(())
        })
        .await;

        // A second node while the first one's store is down: the budget refuses the eviction.
        let second = node_of(&env, &names[1]).await;
        assert_ne!(first, second, "the example spreads stores over nodes");
        let (ok, out) = env.kubectl(&[
            "drain",
            &second,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=20s",
        ]);
        assert!(!ok, "a second drain went through: {out}");
        assert!(
            out.contains("disruption budget"),
            "the second drain was refused for its budget: {out}"
        );
        let (ok, out) = env.kubectl(&["uncordon", &second]);
        assert!(ok, "{out}");
        let tikv_second = env.api::<Pod>().get(&names[1]).await.unwrap();
        assert!(
            tikv_second.metadata.deletion_timestamp.is_none(),
            "the second node's store was not evicted"
        );

        // Back in service: the same store on its node, the Cluster Ready.
        let (ok, out) = env.kubectl(&["uncordon", &first]);
        assert!(ok, "{out}");
        wait_for(240, "the drained store back, Up, Cluster Ready", || async {
            let p = env.api::<Pod>().get(&names[0]).await.ok()?;
            (p.uid() != old_uid && e2e::pod_serving(&p)).then_some(())?;
            let t = env.api::<TiKV>().get(&names[0]).await.ok()?;
            (t.status?.id? == ids[&names[0]].to_string()).then_some(())?;
            let up = e2e::up_stores(&pd, None).await?;
            let s = env.api::<Cluster>().get("basic").await.ok()?.status?;
            (up == 3 && conditions::is_true(&s.conditions, "Ready")).then_some(())
        })
        .await;
        assert_eq!(env.store_ids().await, ids, "every store kept its id");
        wait_for(60, "no evict-leader entry left", || async {
            pd.evict_leader_stores()
                .await
                .ok()?
                .is_empty()
                .then_some(())
        })
        .await;
        e2e::workload::wait_replicated(&pd, 120).await;
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

//! Faults on the real machinery, checked against PD and the API server:
//! - a killed container is restarted in place by the kubelet and comes back as the same store;
//! - a pod deleted with grace period 0 is recreated by the operator, same store, no new one;
//! - a stopped kubelet makes its node NotReady while its containers keep running: PD keeps the
//!   store Up, the operator recreates nothing, and all is Ready again once the kubelet runs;
//! - a node cut off the network is lost to everyone: PD reports its store Down, the TiKV object
//!   says so (`StoreDown`); plugged back in, the same store is Up and nothing was replaced;
//! - the PD leader's container killed: the members elect a leader, the killed one rejoins.
//!
//! A client workload runs throughout: no operation fails, nothing is lost.

use std::collections::BTreeMap;

use api::v1alpha1::{Cluster, TiKV};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, ResourceExt};
use operator_runtime::conditions;
use testenv::wait_for;

/// The Ready condition of a Node: `True`, `False` or `Unknown` (no heartbeats).
async fn node_ready(nodes: &Api<Node>, name: &str) -> Option<String> {
    let n = nodes.get(name).await.ok()?;
    n.status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status)
}

async fn store_state(pd: &pdclient::PdClient, id: u64) -> Option<String> {
    Some(
        pd.store(id)
            .await
            .ok()?
            .store
            .state_name
            .as_str()
            .to_string(),
    )
}

#[test]
fn container_pod_kubelet_and_network_faults() {
    e2e::run(async {
        let env = e2e::Env::start("faults").await;
        env.apply_example("basic").await;
        env.wait_cluster_ready("basic", 180).await;
        let pd = env.pd_members("basic").await;
        let ids = env.store_ids().await;
        let pods = env.api::<Pod>();
        let names: Vec<String> = ids.keys().cloned().collect();
        let cluster_ready = || async {
            let s = env.api::<Cluster>().get("basic").await.ok()?.status?;
            conditions::is_true(&s.conditions, "Ready").then_some(())
        };
        let stores_in_pd = pd.stores().await.unwrap().len();

        let workload = e2e::Workload::start(&env, "basic").await;

        // A killed container: the kubelet restarts it in the same pod.
        let victim = pods.get(&names[0]).await.unwrap();
        let before = e2e::restarts(&victim);
        env.kill_containers(&victim);
        wait_for(
            120,
            "the killed store restarted in place and Up",
            || async {
                let p = pods.get(&names[0]).await.ok()?;
                (p.uid() == victim.uid() && e2e::restarts(&p) > before && e2e::pod_serving(&p))
                    .then_some(())?;
                (store_state(&pd, ids[&names[0]]).await? == "Up").then_some(())
            },
        )
        .await;

        // A pod deleted with grace period 0: the operator makes a new one, same store.
        let victim = pods.get(&names[1]).await.unwrap();
        env.force_delete_pod(&names[1]).await;
        wait_for(120, "the deleted pod recreated, same store Up", || async {
            let p = pods.get(&names[1]).await.ok()?;
            (p.uid() != victim.uid() && e2e::pod_serving(&p)).then_some(())?;
            let t = env.api::<TiKV>().get(&names[1]).await.ok()?;
            (t.status?.id? == ids[&names[1]].to_string()).then_some(())?;
            (store_state(&pd, ids[&names[1]]).await? == "Up").then_some(())
        })
        .await;
        wait_for(60, "the Cluster Ready", cluster_ready).await;

        // A stopped kubelet: NotReady node, running containers.
        let nodes: Api<Node> = Api::all(env.client.clone());
        let victim = pods.get(&names[2]).await.unwrap();
        let node = victim.spec.as_ref().unwrap().node_name.clone().unwrap();
        let uids = |pods: Vec<Pod>| -> BTreeMap<String, String> {
            pods.into_iter()
                .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
                .collect()
        };
        let uids_before = uids(pods.list(&Default::default()).await.unwrap().items);
        env.stop_kubelet(&node);
        wait_for(180, &format!("node {node} NotReady"), || async {
            (node_ready(&nodes, &node).await? != "True").then_some(())
        })
        .await;
        assert_eq!(
            store_state(&pd, ids[&names[2]]).await.as_deref(),
            Some("Up"),
            "the store of a node whose kubelet stopped keeps running"
        );
        env.resume_kubelet(&node);
        wait_for(120, &format!("node {node} Ready again"), || async {
            (node_ready(&nodes, &node).await? == "True").then_some(())
        })
        .await;
        wait_for(120, "the Cluster Ready", cluster_ready).await;
        assert_eq!(
            uids(pods.list(&Default::default()).await.unwrap().items),
            uids_before,
            "no pod was replaced because of a kubelet pause"
        );

        // A node off the network: lost to PD and to the API server.
        env.cut_network(&node);
        let id = ids[&names[2]];
        wait_for(
            180,
            "PD: the cut-off store Down; its TiKV says so; the node NotReady",
            || async {
                (store_state(&pd, id).await? == "Down").then_some(())?;
                let t = env.api::<TiKV>().get(&names[2]).await.ok()?;
                conditions::is_true(&t.status?.common.conditions, "StoreDown").then_some(())?;
                (node_ready(&nodes, &node).await? != "True").then_some(())
            },
        )
        .await;
        env.restore_network(&node);
        wait_for(180, "the store Up again and the Cluster Ready", || async {
            (store_state(&pd, id).await? == "Up").then_some(())?;
            (node_ready(&nodes, &node).await? == "True").then_some(())?;
            cluster_ready().await
        })
        .await;
        assert_eq!(
            pd.stores().await.unwrap().len(),
            stores_in_pd,
            "no store was added (failover is off by default)"
        );
        assert_eq!(env.store_ids().await, ids, "every store kept its id");

        // The PD leader killed: the client retries onto the new leader.
        let leader = pd.leader().await.unwrap().name;
        let victim = pods.get(&leader).await.unwrap();
        let before = e2e::restarts(&victim);
        env.kill_containers(&victim);
        // (The restarted member may win the next election again: any leader will do.)
        wait_for(180, "a PD leader; the killed member back", || async {
            pd.leader().await.ok()?;
            let p = pods.get(&leader).await.ok()?;
            (e2e::restarts(&p) > before && e2e::pod_serving(&p)).then_some(())?;
            let health = pd.health().await.ok()?;
            (health.iter().filter(|h| h.health).count() == 3).then_some(())
        })
        .await;
        wait_for(60, "the Cluster Ready", cluster_ready).await;
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

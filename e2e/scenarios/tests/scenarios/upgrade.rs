//! Rolling upgrade of PD and TiKV together, with the controllers killed in the middle.
//!
//! Checked against PD at the moment each pod deletion is seen: a PD member is never the leader
//! when its pod goes and the others keep a quorum; every TiKV store has 0 leaders; no TiKV pod
//! goes while another is not back and Ready; every PD pod restarts before the first TiKV pod
//! (upgrade policy `Default`). At the end every store reports the new version, keeps its id, and
//! no evict-leader entry is left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::v1alpha1::{PDGroup, TiKV, TiKVGroup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use operator_runtime::conditions;
use testenv::wait_for;

/// One pod deletion as the test saw it.
#[derive(Clone, Debug)]
struct Deletion {
    pod: String,
    component: String,
    at: Instant,
    /// TiKV: leaders PD reported for the store. PD: 1 if the member was the leader.
    leaders: u64,
    /// Other pods of the same component that were missing or not Ready at that moment.
    others_down: Vec<String>,
    /// PD: healthy members other than this one.
    healthy_others: usize,
}

fn component(p: &Pod) -> String {
    p.labels()
        .get("app.kubernetes.io/component")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn pd_then_tikv_upgrade_survives_a_controller_restart() {
    e2e::run(async {
        let env = e2e::Env::start("upgrade").await;
        env.apply_example("basic").await;
        env.wait_cluster_ready("basic", 180).await;
        let pd = env.pd_members("basic").await;
        let ids = env.store_ids().await;
        let pd_names: Vec<String> = pd
            .members()
            .await
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.name)
            .collect();
        // Leaders must actually be spread before the upgrade, or the check below proves nothing.
        wait_for(120, "leaders on every store", || async {
            let stores = pd.stores().await.ok()?;
            stores
                .iter()
                .filter(|s| s.store.state_name.as_str() == "Up")
                .all(|s| s.status.leader_count > 0)
                .then_some(())
        })
        .await;

        let workload = e2e::Workload::start(&env, "basic").await;

        // Watch every pod; when one starts terminating or vanishes, ask PD at once.
        let seen: Arc<Mutex<Vec<Deletion>>> = Arc::default();
        let watch = {
            let (pods, seen, pd, ids) = (env.api::<Pod>(), seen.clone(), pd.clone(), ids.clone());
            let pd_names = pd_names.clone();
            tokio::spawn(async move {
                let mut live: BTreeMap<String, bool> = BTreeMap::new();
                let mut stream = watcher(pods, watcher::Config::default()).boxed();
                while let Some(Ok(ev)) = stream.next().await {
                    let Some((p, gone)) = e2e::pod_change(ev) else {
                        continue;
                    };
                    let name = p.name_any();
                    if !gone {
                        live.insert(name, e2e::pod_serving(&p));
                        continue;
                    }
                    if live.remove(&name).is_none() {
                        continue; // Already recorded when it started terminating.
                    }
                    let comp = component(&p);
                    let peers: Vec<&String> = if comp == "tikv" {
                        ids.keys().collect()
                    } else {
                        pd_names.iter().collect()
                    };
                    let others_down = peers
                        .into_iter()
                        .filter(|n| **n != name && live.get(*n) != Some(&true))
                        .cloned()
                        .collect();
                    let (leaders, healthy_others) = if comp == "tikv" {
                        let l = pd.store(ids[&name]).await.map(|s| s.status.leader_count);
                        (l.unwrap_or(u64::MAX), 0)
                    } else {
                        let leader = pd.leader().await.map(|l| l.name).unwrap_or_default();
                        let health = pd.health().await.unwrap_or_default();
                        let healthy = health.iter().filter(|h| h.health && h.name != name).count();
                        (u64::from(leader == name), healthy)
                    };
                    seen.lock().unwrap().push(Deletion {
                        pod: name,
                        component: comp,
                        at: Instant::now(),
                        leaders,
                        others_down,
                        healthy_others,
                    });
                }
            })
        };

        // PD and TiKV change in one go; the operator must do PD first.
        let start = Instant::now();
        let upgrade = serde_json::json!({"spec": {"template": {"spec": {"version": "v8.5.1"}}}});
        let pp = PatchParams::default();
        env.api::<TiKVGroup>()
            .patch("basic-tikv", &pp, &Patch::Merge(&upgrade))
            .await
            .unwrap();
        env.api::<PDGroup>()
            .patch("basic-pd", &pp, &Patch::Merge(&upgrade))
            .await
            .unwrap();

        // Kill the controllers while a store is being evicted, then let them resume.
        wait_for(240, "a store evicting its leaders", || async {
            let tikvs = env.api::<TiKV>().list(&Default::default()).await.ok()?;
            tikvs
                .items
                .iter()
                .any(|t| {
                    t.status.as_ref().is_some_and(|s| {
                        conditions::find(&s.common.conditions, "LeadersEvicted")
                            .is_some_and(|c| c.reason == "Evicting" || c.reason == "Evicted")
                    })
                })
                .then_some(())
        })
        .await;
        env.restart_controllers().await;

        wait_for(
            300,
            "every store at 8.5.1 and both groups Ready",
            || async {
                let ready = |s: Option<api::v1alpha1::GroupStatus>| {
                    s.is_some_and(|s| {
                        s.version.as_deref() == Some("v8.5.1")
                            && conditions::is_true(&s.conditions, "Ready")
                    })
                };
                let tg = env.api::<TiKVGroup>().get("basic-tikv").await.ok()?.status;
                let pg = env.api::<PDGroup>().get("basic-pd").await.ok()?.status;
                let upgraded = e2e::up_stores(&pd, Some("8.5.1")).await?;
                (upgraded == 3 && ready(tg) && ready(pg)).then_some(())
            },
        )
        .await;
        println!(
            "upgrade of 3 PD members and 3 stores: {:.1}s",
            start.elapsed().as_secs_f64()
        );
        watch.abort();

        let seen = seen.lock().unwrap().clone();
        let of = |c: &str| -> Vec<&Deletion> { seen.iter().filter(|d| d.component == c).collect() };
        let (pds, tikvs) = (of("pd"), of("tikv"));
        assert_eq!(pds.len(), 3, "every PD pod restarted once: {seen:#?}");
        assert_eq!(tikvs.len(), 3, "every TiKV pod restarted once: {seen:#?}");
        for d in &pds {
            assert_eq!(d.leaders, 0, "{} was the PD leader when deleted", d.pod);
            assert!(
                d.healthy_others >= 2 && d.others_down.is_empty(),
                "{} was deleted without a quorum of the others: {d:?}",
                d.pod
            );
        }
        let last_pd = pds.iter().map(|d| d.at).max().unwrap();
        for d in &tikvs {
            assert_eq!(d.leaders, 0, "store of {} had leaders when deleted", d.pod);
            assert!(
                d.others_down.is_empty(),
                "{} was deleted while {:?} were down",
                d.pod,
                d.others_down
            );
            assert!(
                d.at > last_pd,
                "TiKV pod {} restarted before PD was done",
                d.pod
            );
        }
        // Stores kept their identity, and eviction was cleaned up.
        for (name, id) in &ids {
            let t = env.api::<TiKV>().get(name).await.unwrap();
            assert_eq!(t.status.unwrap().id.unwrap(), id.to_string());
        }
        wait_for(30, "no evict-leader entries left", || async {
            pd.evict_leader_stores()
                .await
                .ok()?
                .is_empty()
                .then_some(())
        })
        .await;
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

//! examples/zones: 6 stores over 3 zones, upgraded `ZoneByZone`. Checked at each TiKV pod
//! deletion against PD and the pods: the store had 0 leaders; every pod that was missing or not
//! Ready at that moment was in the same zone; the zones were done one after the other (never
//! back to a zone already done). PD sees each store's zone label.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use api::v1alpha1::{Cluster, TiKVGroup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use operator_runtime::conditions;
use testenv::wait_for;

const ZONE: &str = "topology.kubernetes.io/zone";

fn zone(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .and_then(|n| n.get(ZONE))
        .cloned()
        .unwrap_or_default()
}

/// One TiKV pod deletion: its zone, the leaders PD reported, the zones of pods down then.
type Seen = (String, u64, Vec<String>);

#[test]
fn zone_by_zone_upgrade_restarts_one_zone_at_a_time() {
    e2e::run(async {
        let env = e2e::Env::start("zones").await;
        env.apply_example("zones").await;
        wait_for(
            240,
            "Cluster zones Ready, ZoneByZone found safe",
            || async {
                let s = env.api::<Cluster>().get("zones").await.ok()?.status?;
                let g = env
                    .api::<TiKVGroup>()
                    .get("zones-tikv")
                    .await
                    .ok()?
                    .status?;
                (conditions::is_true(&s.conditions, "Ready")
                    && conditions::is_true(&g.conditions, "ZoneByZone"))
                .then_some(())
            },
        )
        .await;
        let pd = env.pd_members("zones").await;
        let stores = pd.stores().await.unwrap();
        let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
        for s in stores
            .iter()
            .filter(|s| s.store.state_name.as_str() == "Up")
        {
            let z = s
                .store
                .labels
                .iter()
                .find(|l| l.key == "zone")
                .map(|l| l.value.clone());
            *per_zone
                .entry(z.expect("every store has a zone label in PD"))
                .or_default() += 1;
        }
        assert_eq!(per_zone.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
        // Leaders must be spread, or the eviction check proves little. (PD here sometimes leaves one
        // of the six stores without leaders; every zone having some is what the check needs.)
        wait_for(120, "leaders in every zone", || async {
            let stores = pd.stores().await.ok()?;
            let mut zones = std::collections::BTreeSet::new();
            for s in stores.iter().filter(|s| s.status.leader_count > 0) {
                zones.extend(
                    s.store
                        .labels
                        .iter()
                        .filter(|l| l.key == "zone")
                        .map(|l| l.value.clone()),
                );
            }
            (zones.len() == 3).then_some(())
        })
        .await;
        let ids: BTreeMap<String, u64> = stores
            .iter()
            .map(|s| {
                (
                    s.store.address.split('.').next().unwrap().to_string(),
                    s.store.id,
                )
            })
            .collect();
        let workload = e2e::Workload::start(&env, "zones").await;

        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let watch = {
            let (pods, seen, pd, ids) = (env.api::<Pod>(), seen.clone(), pd.clone(), ids.clone());
            tokio::spawn(async move {
                let mut live: BTreeMap<String, (bool, String)> = BTreeMap::new();
                // A store's zone never changes; remember it for when its pod is missing.
                let mut zones: BTreeMap<String, String> = BTreeMap::new();
                let config = watcher::Config::default().labels("app.kubernetes.io/component=tikv");
                let mut stream = watcher(pods, config).boxed();
                while let Some(Ok(ev)) = stream.next().await {
                    let Some((p, gone)) = e2e::pod_change(ev) else {
                        continue;
                    };
                    let name = p.name_any();
                    zones.insert(name.clone(), zone(&p));
                    if !gone {
                        live.insert(name, (e2e::pod_serving(&p), zone(&p)));
                        continue;
                    }
                    if live.remove(&name).is_none() {
                        continue;
                    }
                    let mut down: Vec<String> = live
                        .values()
                        .filter(|(r, _)| !r)
                        .map(|(_, z)| z.clone())
                        .collect();
                    // Pods that are missing altogether (deleted, not yet recreated) are down too.
                    down.extend(
                        ids.keys()
                            .filter(|n| **n != name && !live.contains_key(*n))
                            .map(|n| zones.get(n).cloned().unwrap_or_default()),
                    );
                    let leaders = pd
                        .store(ids[&name])
                        .await
                        .map(|s| s.status.leader_count)
                        .unwrap_or(u64::MAX);
                    seen.lock().unwrap().push((zone(&p), leaders, down));
                }
            })
        };

        let start = Instant::now();
        let upgrade = serde_json::json!({"spec": {"template": {"spec": {"version": "v8.5.1"}}}});
        env.api::<TiKVGroup>()
            .patch(
                "zones-tikv",
                &PatchParams::default(),
                &Patch::Merge(&upgrade),
            )
            .await
            .unwrap();
        wait_for(300, "6 stores at 8.5.1 and the group Ready", || async {
            let g = env
                .api::<TiKVGroup>()
                .get("zones-tikv")
                .await
                .ok()?
                .status?;
            let upgraded = e2e::up_stores(&pd, Some("8.5.1")).await?;
            (upgraded == 6
                && g.version.as_deref() == Some("v8.5.1")
                && conditions::is_true(&g.conditions, "Ready"))
            .then_some(())
        })
        .await;
        println!(
            "ZoneByZone upgrade of 6 stores in 3 zones: {:.1}s",
            start.elapsed().as_secs_f64()
        );
        watch.abort();

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 6, "every store restarted once: {seen:?}");
        let mut order: Vec<&str> = Vec::new();
        for (z, leaders, down) in &seen {
            assert_eq!(
                *leaders, 0,
                "a store in {z} had leaders when its pod was deleted"
            );
            // Its zone partner may be down too; nothing of another zone.
            assert!(
                down.iter().all(|d| d == z),
                "a pod in {z} was deleted while pods in {down:?} were down"
            );
            if order.last() != Some(&z.as_str()) {
                assert!(
                    !order.contains(&z.as_str()),
                    "zone {z} was restarted twice: {seen:?}"
                );
                order.push(z);
            }
        }
        assert_eq!(order.len(), 3, "{seen:?}");
        workload.stop().await.assert_clean();
        env.stop().await;
    })
}

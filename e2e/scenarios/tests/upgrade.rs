//! Rolling upgrade of TiKV: every store's leaders are moved away before its pod is deleted —
//! checked by asking PD at the moment the deletion is seen — and every store reports the new
//! version at the end, with no evict-leader entry left behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use api::v1alpha1::{Cluster, TiKV, TiKVGroup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use operator_runtime::conditions;
use testenv::wait_for;

#[tokio::test]
async fn tikv_upgrade_evicts_leaders_before_each_restart() {
    let env = e2e::Env::start("upgrade").await;
    env.apply_example("basic").await;
    wait_for(180, "Cluster basic Ready", || async {
        let s = env.api::<Cluster>().get("basic").await.ok()?.status?;
        conditions::is_true(&s.conditions, "Ready").then_some(())
    })
    .await;
    let pd = env.pd("basic").await;
    // Store id of every TiKV pod.
    let ids: BTreeMap<String, u64> = env
        .api::<TiKV>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|t| (t.name_any(), t.status.unwrap().id.unwrap().parse().unwrap()))
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

    // Watch TiKV pods; when one starts terminating or vanishes, ask PD about its store at once.
    let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let watch = {
        let (pods, seen, pd, ids) = (env.api::<Pod>(), seen.clone(), pd.clone(), ids.clone());
        tokio::spawn(async move {
            let mut stream = watcher(
                pods,
                watcher::Config::default().labels("app.kubernetes.io/component=tikv"),
            )
            .boxed();
            while let Some(Ok(ev)) = stream.next().await {
                let gone = match ev {
                    watcher::Event::Apply(p) if p.metadata.deletion_timestamp.is_some() => {
                        Some(p.name_any())
                    }
                    watcher::Event::Delete(p) => Some(p.name_any()),
                    _ => None,
                };
                if let Some(name) = gone {
                    let id = ids[&name];
                    if seen.lock().unwrap().contains_key(&name) {
                        continue;
                    }
                    let leaders = pd
                        .store(id)
                        .await
                        .map(|s| s.status.leader_count)
                        .unwrap_or(u64::MAX);
                    seen.lock().unwrap().insert(name, leaders);
                }
            }
        })
    };

    let start = std::time::Instant::now();
    let upgrade = serde_json::json!({"spec": {"template": {"spec": {"version": "v8.5.1"}}}});
    env.api::<TiKVGroup>()
        .patch(
            "basic-tikv",
            &PatchParams::default(),
            &Patch::Merge(&upgrade),
        )
        .await
        .unwrap();
    wait_for(300, "every store at 8.5.1 and the group Ready", || async {
        let g = env
            .api::<TiKVGroup>()
            .get("basic-tikv")
            .await
            .ok()?
            .status?;
        let stores = pd.stores().await.ok()?;
        let upgraded = stores
            .iter()
            .filter(|s| s.store.state_name.as_str() == "Up" && s.store.version == "8.5.1")
            .count();
        (upgraded == 3
            && g.version.as_deref() == Some("v8.5.1")
            && conditions::is_true(&g.conditions, "Ready"))
        .then_some(())
    })
    .await;
    println!("upgrade of 3 stores: {:.1}s", start.elapsed().as_secs_f64());
    watch.abort();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "every TiKV pod was restarted once: {seen:?}");
    for (pod, leaders) in &seen {
        assert_eq!(
            *leaders, 0,
            "store of {pod} had {leaders} leaders when its pod was deleted"
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
    env.stop().await;
}

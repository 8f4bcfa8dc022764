//! What a store's status shows while PD removes it, from a real pd-server and simulated stores:
//! PD's `/stores/progress` for the store (asked while it is Offline) turns into a percentage and
//! an ETA that only grow and shrink, and into nothing once the store is a tombstone.

use std::time::{Duration, Instant};

use api::v1alpha1::RemovalProgress;
use instance_controller::tikv::decide::removal_progress;
use pdclient::{PdClient, StoreState};
use testenv::pd::{PdCluster, PdOptions, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_progress_comes_from_pd_until_the_store_is_gone() {
    let mut pd = PdCluster::start(PdOptions::default()).await.unwrap();
    for _ in 0..4 {
        pd.start_store(StoreOptions::default()).await.unwrap();
    }
    let client = PdClient::builder(pd.endpoints()).build().unwrap();
    let victim = pd.store(3).id();
    // Enough regions on the victim that draining it takes PD several of its 10 s progress
    // updates (the bootstrap store's 48 regions, 3 replicas over 4 stores: 36 each when balanced).
    let began = Instant::now();
    loop {
        let s = client.store(victim).await.unwrap();
        if s.status.region_count >= 20 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the victim never got 20 regions (has {})",
            s.status.region_count
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // PD tracks nothing for a store it is not removing.
    assert_eq!(client.store_progress(victim).await.unwrap(), None);

    // One move at a time (an empty region moves in a fraction of a second, and PD ignores store
    // limits for them), so that PD, which updates its progress every 10 s, measures some while
    // the store drains.
    client.set_replica_schedule_limit(1).await.unwrap();
    client.delete_store(victim).await.unwrap();
    let mut seen: Vec<RemovalProgress> = Vec::new();
    let began = Instant::now();
    loop {
        let store = client.store(victim).await.unwrap();
        let progress = client.store_progress(victim).await.unwrap();
        if store.store.state == StoreState::Tombstone {
            assert_eq!(progress, None, "no progress for a tombstone");
            break;
        }
        if let Some(p) = progress {
            assert_eq!(
                (p.action.as_str(), p.store_id),
                ("removing", victim),
                "{p:?}"
            );
            assert!((0.0..=1.0).contains(&p.progress), "{p:?}");
            seen.push(removal_progress(&p));
        }
        assert!(
            began.elapsed() < Duration::from_secs(240),
            "the store was not removed; progress seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("progress while removing: {seen:?}");
    assert!(
        !seen.is_empty(),
        "PD reported no progress while it removed the store"
    );
    assert!(
        seen.windows(2).all(|w| w[0].percent <= w[1].percent),
        "progress went back: {seen:?}"
    );
    let last = seen.last().unwrap();
    assert!(last.percent > 0, "PD never measured progress: {seen:?}");
    assert!(
        seen.iter()
            .any(|r| r.eta_seconds.is_some_and(|eta| eta > 0)),
        "PD never gave an ETA: {seen:?}"
    );
    assert!(seen.iter().all(|r| (0..=100).contains(&r.percent)));
}

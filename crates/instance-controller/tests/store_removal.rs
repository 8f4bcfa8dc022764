//! What a store's status shows while PD removes it, from a real pd-server and simulated stores:
//! PD's `/stores/progress` for the store (asked while it is Offline) turns into a percentage and
//! an ETA that only grow and shrink, and into nothing once the store is a tombstone.

use std::time::{Duration, Instant};

use api::v1alpha1::RemovalProgress;
use instance_controller::tikv::decide::removal_progress;
use pdclient::{PdClient, StoreState};
use testenv::pd::{PdCluster, PdOptions, StoreOptions, http_request};
use tikv_client::{KvPair, RawClient};

/// Regions of the bootstrap store (`sim000001`, `sim000002`, ... start them).
const REGIONS: u32 = 16;
/// Data written into each region: PD measures removal by region size in whole MiB and ignores
/// store limits for regions of 1 MiB or less, so each region must be bigger than that.
const VALUE_BYTES: usize = 64 << 10;
const VALUES_PER_REGION: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_progress_comes_from_pd_until_the_store_is_gone() {
    let mut pd = PdCluster::start(PdOptions::default()).await.unwrap();
    let options = StoreOptions {
        initial_regions: REGIONS,
        ..StoreOptions::default()
    };
    for _ in 0..4 {
        pd.start_store(options.clone()).await.unwrap();
    }
    let client = PdClient::builder(pd.endpoints()).build().unwrap();
    let victim = pd.store(3).id();
    let raw = RawClient::new(pd.addresses())
        .await
        .expect("client connects");
    for region in 0..REGIONS {
        let pairs: Vec<KvPair> = (0..VALUES_PER_REGION)
            .map(|i| KvPair::new(format!("sim{region:06}/{i:04}"), vec![b'v'; VALUE_BYTES]))
            .collect();
        for chunk in pairs.chunks(10) {
            raw.batch_put(chunk.to_vec()).await.expect("batch put");
        }
    }
    // The victim holds most of the regions, measured at more than 1 MiB on average by the
    // stores' split checks.
    let began = Instant::now();
    loop {
        let s = client.store(victim).await.unwrap();
        if s.status.region_count >= 10
            && 2 * s.status.region_size >= 3 * s.status.region_count as i64
        {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the victim never got its regions and their data: {:?}",
            s.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // PD tracks nothing for a store it is not removing.
    assert_eq!(client.store_progress(victim).await.unwrap(), None);

    // Two peers a minute per store (ten of these small regions: PD charges a region under
    // 20 MiB a fifth), so that PD, which updates its progress every 10 s, measures some while
    // the store drains.
    let leader = client.leader().await.unwrap();
    let pd_addr = leader.client_urls[0]
        .trim_start_matches("http://")
        .to_string();
    let (code, body) = http_request(
        &pd_addr,
        "POST",
        "/pd/api/v1/stores/limit",
        Some(r#"{"rate": 2}"#),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
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

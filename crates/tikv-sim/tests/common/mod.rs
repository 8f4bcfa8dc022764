//! Shared helpers of the tests against a real pd-server.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pdclient::{PdClient, RegionCheck, StoreInfo, StoreStateName};
use testenv::pd::{PdCluster, PdOptions, StoreOptions};

pub mod kvclient;

/// The tikv-sim binary cargo built for these tests.
pub fn sim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tikv-sim"))
}

/// Store options with this package's binary.
pub fn store_options() -> StoreOptions {
    StoreOptions {
        binary: Some(sim_binary()),
        ..StoreOptions::default()
    }
}

/// Starts PD with `members` members and `stores` stores, labelled zone z<i>.
pub async fn start(members: usize, stores: usize) -> (PdCluster, PdClient) {
    start_with(members, stores, store_options()).await
}

/// [`start`] with these store options.
pub async fn start_with(
    members: usize,
    stores: usize,
    options: StoreOptions,
) -> (PdCluster, PdClient) {
    let began = Instant::now();
    let mut pd = PdCluster::start(PdOptions {
        members,
        ..PdOptions::default()
    })
    .await
    .expect("PD starts");
    for i in 0..stores {
        let mut opts = options.clone();
        opts.labels.insert("zone".into(), format!("z{i}"));
        pd.start_store(opts).await.expect("store starts");
    }
    eprintln!(
        "PD ({members} members, startup {:?}) and {stores} stores up after {:?}",
        pd.startup_time(),
        began.elapsed()
    );
    let client = PdClient::builder(pd.endpoints())
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    (pd, client)
}

/// Polls `check` every 200 ms until it returns `Ok`, and panics with its last error after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let began = Instant::now();
    loop {
        match check().await {
            Ok(v) => {
                eprintln!("{what}: after {:?}", began.elapsed());
                return v;
            }
            Err(e) if began.elapsed() > timeout => {
                panic!("{what}: not within {timeout:?}; last: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The store with ID `id` in a store list.
pub fn find(stores: &[StoreInfo], id: u64) -> Option<&StoreInfo> {
    stores.iter().find(|s| s.store.id == id)
}

/// Waits until every one of `ids` is Up and the regions are fully replicated: every region has
/// `replicas` replicas and a leader on these stores (the replica counts add up to `replicas`
/// times the leader count, twice in a row), and there are at least `min_regions` regions.
/// Returns the region count.
pub async fn wait_replicated(
    client: &PdClient,
    ids: &[u64],
    replicas: u64,
    min_regions: u64,
) -> u64 {
    let previous = std::cell::Cell::new(None);
    eventually("full replication", Duration::from_secs(90), || {
        let previous = &previous;
        async move {
            let stores = client.stores().await.map_err(|e| e.to_string())?;
            let (mut regions, mut leaders) = (0, 0);
            for id in ids {
                let s = find(&stores, *id).ok_or(format!("store {id} missing"))?;
                if s.store.state_name != StoreStateName::Up {
                    return Err(format!("store {id} is {}", s.store.state_name));
                }
                regions += s.status.region_count;
                leaders += s.status.leader_count;
            }
            let settled = leaders >= min_regions && regions == replicas * leaders;
            let same = previous.replace(Some((regions, leaders))) == Some((regions, leaders));
            if !(settled && same) {
                return Err(format!("{regions} replicas, {leaders} leaders"));
            }
            // Replicas count learners too: PD adds a learner, waits for it to catch up (a
            // snapshot), then promotes it. Full replication is every replica a voter.
            for check in [RegionCheck::LearnerPeer, RegionCheck::PendingPeer] {
                let n = client
                    .regions_in_check(check)
                    .await
                    .map_err(|e| e.to_string())?
                    .len();
                if n > 0 {
                    return Err(format!("{n} regions in {check:?}"));
                }
            }
            Ok(leaders)
        }
    })
    .await
}

//! The store's data plane against a real pd-server and the real Go client (client-go v2.0.7 via
//! `kvclient`): reads and writes across splits, leader moves, peer moves, a killed store, PD
//! member failures and a graceful shutdown, with every acknowledged write read back; and TiKV's
//! errors for bad requests, over raw gRPC.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::kvclient::KvClient;
use common::{eventually, start_with, store_options, wait_replicated};
use pdclient::PdClient;
use serde_json::json;
use testenv::pd::{PdCluster, StoreOptions, http_request};
use tikv_sim::proto::kvrpcpb::{self, Context};
use tikv_sim::proto::metapb;
use tikv_sim::proto::tikvpb::tikv_client::TikvClient;
use tonic::transport::Channel;

/// Small regions so that a few thousand keys make several splits.
const SPLIT_CONFIG: &str = r#"
[coprocessor]
region-split-size = "32KiB"
region-split-keys = 200
"#;

fn data_options() -> StoreOptions {
    StoreOptions {
        initial_regions: 8,
        config: SPLIT_CONFIG.into(),
        ..store_options()
    }
}

fn value(key: &str, round: u32) -> String {
    format!("{key}:{round}:{}", "v".repeat(80))
}

/// A metric of a store's `/metrics`.
async fn metric(status_addr: &str, series: &str) -> Option<f64> {
    let (code, body) = http_request(status_addr, "GET", "/metrics", None, Duration::from_secs(2))
        .await
        .ok()?;
    if code != 200 {
        return None;
    }
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until every running store holds `keys` keys (three replicas on three stores).
async fn wait_keys_everywhere(pd: &PdCluster, indexes: &[usize], keys: usize) {
    eventually(
        "every store holds every key",
        Duration::from_secs(60),
        || async {
            let mut counts = Vec::new();
            for &i in indexes {
                counts.push(
                    metric(pd.store(i).status_address(), "tikv_engine_num_keys")
                        .await
                        .unwrap_or(-1.0) as i64,
                );
            }
            if counts.iter().all(|&c| c == keys as i64) {
                Ok(())
            } else {
                Err(format!("key counts {counts:?}, want {keys}"))
            }
        },
    )
    .await
}

/// Reads every acknowledged write back.
async fn read_back(c: &mut KvClient, acked: &BTreeMap<String, String>) {
    let keys: Vec<String> = acked.keys().cloned().collect();
    for chunk in keys.chunks(400) {
        let got = c.batch_get(chunk).await;
        for (k, v) in chunk.iter().zip(got) {
            assert_eq!(
                v.as_deref(),
                Some(acked[k].as_str()),
                "acknowledged write of {k} lost"
            );
        }
    }
}

/// Writes `live/<n>` keys until `done` says so (checked every 10 writes); returns how many
/// writes failed. Acknowledged ones go into `acked`.
async fn write_while<F, Fut>(
    c: &mut KvClient,
    acked: &mut BTreeMap<String, String>,
    next: &mut u32,
    mut done: F,
) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut failed = 0;
    let started = Instant::now();
    loop {
        for _ in 0..10 {
            let k = format!("live/{:06}", *next);
            let v = value(&k, 0);
            *next += 1;
            match c.put(&k, &v).await {
                Ok(()) => {
                    acked.insert(k, v);
                }
                Err(e) => {
                    eprintln!("write of {k} failed: {e}");
                    failed += 1;
                }
            }
        }
        if done().await {
            return failed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "condition not reached while writing"
        );
    }
}

async fn region_count(client: &PdClient, ids: &[u64]) -> u64 {
    let stores = client.stores().await.unwrap_or_default();
    ids.iter()
        .filter_map(|id| common::find(&stores, *id))
        .map(|s| s.status.leader_count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rawkv_across_splits_leader_moves_and_a_killed_store() {
    let (mut pd, client) = start_with(1, 3, data_options()).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    let before = wait_replicated(&client, &ids, 3, 8).await;
    let mut c = KvClient::start(&pd.endpoints()).await;
    let mut acked = BTreeMap::new();

    // Batch writes make the first regions outgrow 32 KiB / 200 keys: they split.
    let keys: Vec<String> = (0..3000).map(|i| format!("key/{i:05}")).collect();
    for chunk in keys.chunks(250) {
        let pairs: Vec<(String, String)> = chunk.iter().map(|k| (k.clone(), value(k, 0))).collect();
        c.batch_put(&pairs).await;
        acked.extend(pairs);
    }
    let after = eventually("regions split", Duration::from_secs(30), || async {
        let n = region_count(&client, &ids).await;
        if n >= before + 8 {
            Ok(n)
        } else {
            Err(format!("{n} regions"))
        }
    })
    .await;
    eprintln!("{before} regions before the writes, {after} after");

    // Reads across regions: scans forward and backward, clipped per region by the store.
    let all = c.scan("key/", "key0", 10_000, false).await;
    assert_eq!(all.len(), 3000);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "scan is ordered");
    assert_eq!(all[1234], (keys[1234].clone(), value(&keys[1234], 0)));
    let rev = c.scan("key0", "key/", 10_000, true).await;
    assert_eq!(rev.len(), 3000);
    assert_eq!(rev.first().map(|p| p.0.as_str()), Some("key/02999"));
    let limited = c.scan("key/01000", "", 7, false).await;
    assert_eq!(limited.first().map(|p| p.0.as_str()), Some("key/01000"));
    assert_eq!(limited.len(), 7);
    assert_eq!(c.get("key/00042").await, Some(value("key/00042", 0)));
    assert_eq!(c.get("missing").await, None);

    // Compare-and-swap.
    let r = c
        .ok(json!({"op": "cas", "key": "cas", "prev_not_exist": true, "value": "1"}))
        .await;
    assert_eq!(r["succeed"], true);
    let r = c
        .ok(json!({"op": "cas", "key": "cas", "prev": "0", "value": "2"}))
        .await;
    assert_eq!(
        (r["succeed"].as_bool(), r["value"].as_str()),
        (None, Some("1")),
        "{r}"
    );
    let r = c
        .ok(json!({"op": "cas", "key": "cas", "prev": "1", "value": "2"}))
        .await;
    assert_eq!(r["succeed"], true);
    acked.insert("cas".into(), "2".into());

    // Delete-range across several regions, and deletes.
    c.ok(json!({"op": "delete_range", "start": "key/01000", "end": "key/02000"}))
        .await;
    c.ok(json!({"op": "batch_delete", "keys": ["key/02000", "key/02001"]}))
        .await;
    c.ok(json!({"op": "delete", "key": "key/02002"})).await;
    for i in (1000..2003).map(|i| format!("key/{i:05}")) {
        acked.remove(&i);
    }
    assert_eq!(c.scan("key/", "key0", 10_000, false).await.len(), 1997);
    read_back(&mut c, &acked).await;

    // Leaders move off store 0 (PD's evict-leader scheduler) while a client writes.
    let mut next = 0;
    client
        .add_evict_leader(ids[0])
        .await
        .expect("evict leaders");
    let failed = write_while(&mut c, &mut acked, &mut next, || async {
        client
            .store_leader_count(ids[0])
            .await
            .is_ok_and(|n| n == 0)
    })
    .await;
    eprintln!("leaders left store {} with {failed} failed writes", ids[0]);
    client
        .remove_evict_leader(ids[0])
        .await
        .expect("stop evicting");

    // A store killed with SIGKILL: writes go on (its regions elect new leaders); it restarts
    // from its data directory and catches up.
    pd.store_mut(1).kill();
    let killed_at = Instant::now();
    let failed = write_while(&mut c, &mut acked, &mut next, || async {
        killed_at.elapsed() > Duration::from_secs(4)
    })
    .await;
    eprintln!("{failed} writes failed while store {} was down", ids[1]);
    pd.store_mut(1)
        .restart()
        .await
        .expect("restarts with its data");
    let failed = write_while(&mut c, &mut acked, &mut next, || async {
        killed_at.elapsed() > Duration::from_secs(6)
    })
    .await;
    assert_eq!(failed, 0, "writes fail after the store is back");
    read_back(&mut c, &acked).await;
    wait_keys_everywhere(&pd, &[0, 1, 2], acked.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_peer_carries_its_data_and_can_lead() {
    let (mut pd, client) = start_with(1, 3, data_options()).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    wait_replicated(&client, &ids, 3, 8).await;
    let mut c = KvClient::start(&pd.endpoints()).await;
    let mut acked = BTreeMap::new();
    let pairs: Vec<(String, String)> = (0..150)
        .map(|i| format!("key/{i:05}"))
        .map(|k| (k.clone(), value(&k, 1)))
        .collect();
    c.batch_put(&pairs).await;
    acked.extend(pairs);

    let mut opts = data_options();
    opts.labels.insert("zone".into(), "z3".into());
    let fourth = pd.start_store(opts).await.expect("fourth store");
    let new_store = pd.store(fourth).id();
    // The region holding the keys: ask PD by key.
    let (_, body) = http_request(
        pd.members()[0].client_url().trim_start_matches("http://"),
        "GET",
        &format!("/pd/api/v1/region/key/{}", "key%2F00010"),
        None,
        Duration::from_secs(3),
    )
    .await
    .expect("PD answers");
    let region: serde_json::Value = serde_json::from_str(&body).expect("region JSON");
    let region_id = region["id"].as_u64().expect("region id");
    let from = region["peers"][0]["store_id"].as_u64().expect("a peer");
    let op = json!({"name": "transfer-peer", "region_id": region_id, "from_store_id": from, "to_store_id": new_store});
    let pd_addr = pd.members()[0]
        .client_url()
        .trim_start_matches("http://")
        .to_string();
    let (code, body) = http_request(
        &pd_addr,
        "POST",
        "/pd/api/v1/operators",
        Some(&op.to_string()),
        Duration::from_secs(3),
    )
    .await
    .expect("PD answers");
    assert_eq!(code, 200, "transfer-peer: {body}");

    // Writes into the region while PD adds the learner, promotes it and removes the old peer.
    let mut next = 0;
    let failed = write_while(&mut c, &mut acked, &mut next, || async {
        client.region(region_id).await.is_ok_and(|r| {
            r.peers.iter().any(|p| p.store_id == new_store)
                && !r.peers.iter().any(|p| p.store_id == from)
        })
    })
    .await;
    eprintln!("peer moved from store {from} to {new_store}; {failed} writes failed meanwhile");

    // The new replica leads and serves everything written before and during the move.
    let op = json!({"name": "transfer-leader", "region_id": region_id, "to_store_id": new_store});
    eventually("the moved peer leads", Duration::from_secs(30), || async {
        let _ = http_request(
            &pd_addr,
            "POST",
            "/pd/api/v1/operators",
            Some(&op.to_string()),
            Duration::from_secs(3),
        )
        .await;
        match client.region(region_id).await {
            Ok(r) if r.leader.store_id == new_store => Ok(()),
            Ok(r) => Err(format!("leader on store {}", r.leader.store_id)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    read_back(&mut c, &acked).await;
    let on_new = metric(pd.store(fourth).status_address(), "tikv_engine_num_keys").await;
    assert!(
        on_new.unwrap_or(0.0) >= 150.0,
        "the new store holds the region's keys: {on_new:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pd_members_a_pd_failure_and_a_graceful_store_shutdown() {
    let (mut pd, client) = start_with(3, 3, data_options()).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    wait_replicated(&client, &ids, 3, 8).await;
    let mut c = KvClient::start(&pd.endpoints()).await;
    let mut acked = BTreeMap::new();
    let mut next = 0;
    write_while(&mut c, &mut acked, &mut next, || async { true }).await;

    // The PD leader dies: the client and the stores follow the new leader.
    let leader = client.leader().await.expect("PD leader").name;
    pd.member_mut(&leader).expect("member").kill();
    let killed = Instant::now();
    write_while(&mut c, &mut acked, &mut next, || async {
        killed.elapsed() > Duration::from_secs(5)
    })
    .await;

    // SIGTERM: the store hands its leaders over, then exits; clients see no failed write.
    let store = 2;
    eventually(
        "store 2 leads something",
        Duration::from_secs(60),
        || async {
            match client.store_leader_count(ids[store]).await {
                Ok(n) if n > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let log = pd.store(store).log_path();
    let addr = pd.store(store).address().to_string();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("address")
        .connect()
        .await
        .expect("connects");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let terminated = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = pd.store_mut(store).terminate().expect("SIGTERM");
        (pd, status, started.elapsed())
    });
    let (pd, status, took) = terminated.await.expect("terminate");
    assert!(
        status.is_some_and(|s| s.success()),
        "exits by itself, cleanly: {status:?}"
    );
    let text = std::fs::read_to_string(&log).expect("store log");
    assert!(
        text.contains("all leaders handed over"),
        "handed leaders over before exiting"
    );
    eprintln!("graceful shutdown took {took:?}");
    let failed = write_while(&mut c, &mut acked, &mut next, || async { true }).await;
    assert_eq!(failed, 0);
    read_back(&mut c, &acked).await;
    drop(pd);
}

/// A raw gRPC client of one store (client libraries hide the errors under retries).
async fn raw(addr: &str) -> TikvClient<Channel> {
    TikvClient::connect(format!("http://{addr}"))
        .await
        .expect("connects")
}

#[derive(serde::Deserialize)]
struct Replica {
    id: u64,
    peer_id: u64,
    role: String,
    leader_peer_id: u64,
    conf_ver: u64,
    version: u64,
    start_key: String,
    peers: Vec<(u64, u64, String)>,
}

async fn replicas(status_addr: &str) -> Vec<Replica> {
    let (_, body) = http_request(
        status_addr,
        "GET",
        "/sim/regions",
        None,
        Duration::from_secs(2),
    )
    .await
    .expect("status");
    serde_json::from_str(&body).expect("regions JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ctx(r: &Replica, store_id: u64) -> Context {
    Context {
        region_id: r.id,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: r.conf_ver,
            version: r.version,
        }),
        peer: Some(metapb::Peer {
            id: r.peer_id,
            store_id,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The region error a RawGet gets.
async fn get_error(
    kv: &mut TikvClient<Channel>,
    c: Context,
    key: Vec<u8>,
) -> tikv_sim::proto::errorpb::Error {
    let req = kvrpcpb::RawGetRequest {
        context: Some(c),
        key,
        cf: String::new(),
    };
    let resp = kv.raw_get(req).await.expect("RawGet").into_inner();
    match resp.region_error {
        Some(e) => e,
        None => panic!("a region error, got {resp:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_tikv_errors() {
    let (pd, client) = start_with(1, 3, data_options()).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    wait_replicated(&client, &ids, 3, 8).await;
    // The regions must hold still while the test aims at them: no leader or region balancing.
    let pd_addr = pd.members()[0]
        .client_url()
        .trim_start_matches("http://")
        .to_string();
    for s in [
        "balance-leader-scheduler",
        "balance-region-scheduler",
        "balance-hot-region-scheduler",
    ] {
        let path = format!("/pd/api/v1/schedulers/{s}");
        let (code, body) = http_request(&pd_addr, "DELETE", &path, None, Duration::from_secs(3))
            .await
            .expect("PD answers");
        assert!(
            code == 200 || body.contains("not found"),
            "removing {s}: {code} {body}"
        );
    }
    wait_replicated(&client, &ids, 3, 8).await;
    let store = pd.store(0);
    let me = store.id();
    let all = replicas(store.status_address()).await;
    let led = all
        .iter()
        .find(|r| r.role == "leader" && !r.start_key.is_empty())
        .expect("store 0 leads a region");
    let mut kv = raw(store.address()).await;
    let key = unhex(&led.start_key);

    // A well-formed request works.
    let put = kv
        .raw_put(kvrpcpb::RawPutRequest {
            context: Some(ctx(led, me)),
            key: key.clone(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .expect("RawPut")
        .into_inner();
    assert!(
        put.region_error.is_none() && put.error.is_empty(),
        "{put:?}"
    );
    let get = |c: Context, key: Vec<u8>| kvrpcpb::RawGetRequest {
        context: Some(c),
        key,
        cf: String::new(),
    };
    let r = kv
        .raw_get(get(ctx(led, me), key.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value.as_slice(), r.not_found), (&b"v"[..], false));

    // StoreNotMatch.
    let mut c = ctx(led, me);
    c.peer.as_mut().unwrap().store_id = 999_999;
    let e = get_error(&mut kv, c, key.clone()).await;
    let snm = e.store_not_match.expect("StoreNotMatch");
    assert_eq!((snm.request_store_id, snm.actual_store_id), (999_999, me));

    // RegionNotFound.
    let mut c = ctx(led, me);
    c.region_id = 999_999;
    let e = get_error(&mut kv, c, key.clone()).await;
    assert_eq!(
        e.region_not_found.expect("RegionNotFound").region_id,
        999_999
    );

    // EpochNotMatch (a stale version), with the region as it is.
    let mut c = ctx(led, me);
    c.region_epoch.as_mut().unwrap().version -= 1;
    let e = get_error(&mut kv, c, key.clone()).await;
    let current = e.epoch_not_match.expect("EpochNotMatch").current_regions;
    assert_eq!(current.first().map(|r| r.id), Some(led.id));

    // KeyNotInRegion.
    let mut outside = key.clone();
    outside.pop();
    let e = get_error(&mut kv, ctx(led, me), outside.clone()).await;
    let kn = e.key_not_in_region.expect("KeyNotInRegion");
    assert_eq!((kn.key, kn.region_id), (outside, led.id));

    // NotLeader, with the leader.
    let follower = all
        .iter()
        .find(|r| r.role == "follower" && r.leader_peer_id != 0)
        .expect("store 0 follows somewhere");
    let e = get_error(&mut kv, ctx(follower, me), unhex(&follower.start_key)).await;
    let nl = e.not_leader.expect("NotLeader");
    let leader = nl.leader.expect("leader hint");
    assert_eq!(leader.id, follower.leader_peer_id);
    assert!(
        follower
            .peers
            .iter()
            .any(|p| p.0 == leader.id && p.1 == leader.store_id)
    );

    // StaleCommand: the client's term is far behind the region's (split regions start at 5).
    let mut c = ctx(led, me);
    c.term = 1;
    let e = get_error(&mut kv, c, key.clone()).await;
    assert!(e.stale_command.is_some(), "StaleCommand: {e:?}");

    // A request for another cluster: INVALID_ARGUMENT.
    let mut c = ctx(led, me);
    c.cluster_id = 12_345;
    let status = kv.raw_get(get(c, key.clone())).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // A column family RawKV does not have.
    let r = kv
        .raw_get(kvrpcpb::RawGetRequest {
            context: Some(ctx(led, me)),
            key: key.clone(),
            cf: "lock-ish".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("column family"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_data_directory_is_lost_is_a_new_store() {
    let (mut pd, client) = start_with(1, 3, data_options()).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    wait_replicated(&client, &ids, 3, 8).await;
    let store = pd.store_mut(2);
    store.kill();
    std::fs::remove_dir_all(store.data_dir()).expect("remove data dir");
    std::fs::create_dir_all(store.data_dir()).expect("empty data dir");
    // Same address, empty directory: a new store ID, which PD refuses on an address that an
    // existing store still has (as for TiKV). It never comes back as the old store.
    let err = store.restart().await.expect_err("not the old store");
    let log = std::fs::read_to_string(store.log_path()).expect("log");
    assert!(
        log.contains("allocated store id"),
        "asked PD for a new ID: {err}"
    );
    assert!(
        log.contains("duplicated store address"),
        "PD refused the address: {err}"
    );
    let stores = client.stores().await.expect("stores");
    assert!(
        common::find(&stores, ids[2]).is_some(),
        "the old store is still known to PD as itself"
    );
}

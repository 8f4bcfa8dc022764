//! pdclient and tikv-sim against a real single-member pd-server.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, find, start, wait_replicated};
use pdclient::{Error, NodeState, StoreState, StoreStateName};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_register_restart_and_drain_leaders() {
    let (mut pd, client) = start(1, 3).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();

    // Registration: what PD knows is what the stores were started with.
    let stores = client.stores().await.unwrap();
    assert_eq!(stores.len(), 3);
    for (i, sim) in pd.stores().iter().enumerate() {
        let info = find(&stores, sim.id()).expect("registered");
        assert_eq!(info.store.address, sim.address());
        assert_eq!(info.store.status_address, sim.status_address());
        assert_eq!(info.store.version, "8.5.0");
        assert_eq!(info.store.state, StoreState::Up);
        assert_eq!(
            info.store.label_map().get("zone").map(String::as_str),
            Some(format!("z{i}").as_str())
        );
    }
    let regions = wait_replicated(&client, &ids, 3, 48).await;
    eprintln!("{regions} regions");

    // Cluster-level reads.
    let members = client.members().await.unwrap();
    assert_eq!(
        client.cluster_id().await.unwrap(),
        members.header.cluster_id
    );
    assert!(client.cluster_status().await.unwrap().is_bootstrapped());
    let replication = client.replication_config().await.unwrap();
    assert_eq!(replication.max_replicas, 3);
    assert!(replication.location_labels.is_empty());
    client
        .set_location_labels(&["zone".into(), "host".into()])
        .await
        .unwrap();
    assert_eq!(
        client.replication_config().await.unwrap().location_labels,
        ["zone", "host"]
    );
    // A new store is Preparing (state name Up) until PD's 10 s node-state check promotes it.
    eventually("stores Serving", Duration::from_secs(30), || async {
        let stores = client.stores().await.map_err(|e| e.to_string())?;
        match stores
            .iter()
            .find(|s| s.store.node_state != NodeState::Serving)
        {
            None => Ok(()),
            Some(s) => Err(format!("store {} is {:?}", s.store.id, s.store.node_state)),
        }
    })
    .await;
    assert!(matches!(
        client.store(999_999).await,
        Err(Error::NotFound { .. })
    ));

    // Labels set through the API are merged into the store's own.
    let labels = BTreeMap::from([("host".to_string(), "h0".to_string())]);
    client.set_store_labels(ids[0], &labels).await.unwrap();
    let l = client.store(ids[0]).await.unwrap().store.label_map();
    assert_eq!((l["zone"].as_str(), l["host"].as_str()), ("z0", "h0"));

    // The store's own metrics agree with PD.
    let metrics = testenv::pd::http_request(
        pd.store(1).status_address(),
        "GET",
        "/metrics",
        None,
        Duration::from_secs(2),
    )
    .await
    .unwrap()
    .1;
    assert!(
        metrics.contains(&format!(
            "tikv_raftstore_region_count{{type=\"region\"}} {regions}\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("tikv_raftstore_region_count{type=\"leader\"} "),
        "{metrics}"
    );

    // SIGTERM stops a store cleanly; restarted, it is the same store (the harness checks the
    // ID too) and Up again.
    let before = client.store(ids[2]).await.unwrap().store.start_timestamp;
    let status = pd.store_mut(2).terminate().unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    pd.store_mut(2).restart().await.unwrap();
    assert_eq!(pd.store(2).id(), ids[2]);
    eventually(
        "restarted store registered again",
        Duration::from_secs(30),
        || async {
            let s = client.store(ids[2]).await.map_err(|e| e.to_string())?;
            if s.store.start_timestamp > before && s.store.state_name == StoreStateName::Up {
                Ok(())
            } else {
                Err(format!(
                    "start {} state {}",
                    s.store.start_timestamp, s.store.state_name
                ))
            }
        },
    )
    .await;
    assert_eq!(
        client.stores().await.unwrap().len(),
        3,
        "no new store appeared"
    );

    // Evict-leader drains the store; removing the entry lets leaders come back.
    assert_eq!(
        client.evict_leader_stores().await.unwrap(),
        Vec::<u64>::new()
    );
    let victim = ids[1];
    eventually(
        "victim leads something",
        Duration::from_secs(60),
        || async {
            match client.store_leader_count(victim).await {
                Ok(n) if n > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    client.add_evict_leader(victim).await.unwrap();
    assert_eq!(client.evict_leader_stores().await.unwrap(), [victim]);
    client.add_evict_leader(ids[0]).await.unwrap();
    assert_eq!(
        client.evict_leader_stores().await.unwrap(),
        [ids[0], victim]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    client.remove_evict_leader(ids[0]).await.unwrap();
    eventually("leaders evicted", Duration::from_secs(60), || async {
        match client.store_leader_count(victim).await {
            Ok(0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    client.remove_evict_leader(victim).await.unwrap();
    assert_eq!(
        client.evict_leader_stores().await.unwrap(),
        Vec::<u64>::new()
    );
    assert!(matches!(
        client.remove_evict_leader(victim).await,
        Err(Error::NotFound { .. })
    ));
    eventually("leaders return", Duration::from_secs(60), || async {
        match client.store_leader_count(victim).await {
            Ok(n) if n > 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // With 3 Up stores and max-replicas 3, PD refuses to remove one, with its own message.
    match client.delete_store(victim).await {
        Err(Error::Refused {
            status: 400,
            message,
        }) => {
            assert!(
                message.contains(&format!("can not remove store {victim} since the number of up stores would be 2 while need 3")),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        client.store(victim).await.unwrap().store.state,
        StoreState::Up
    );
    // PD checks against the current max-replicas.
    client.set_max_replicas(4).await.unwrap();
    assert_eq!(client.replication_config().await.unwrap().max_replicas, 4);
    match client.delete_store(victim).await {
        Err(Error::Refused { message, .. }) => {
            assert!(message.ends_with("would be 2 while need 4"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_store_goes_disconnected_then_down_and_recovers() {
    let (mut pd, client) = start(1, 3).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    // The number of regions, counted once replication settled: a live store's own region count
    // can include replicas PD is still removing, so it is not the number to compare with.
    let regions = wait_replicated(&client, &ids, 3, 48).await;
    let dead = ids[0];
    pd.store_mut(0).kill();

    // Its leaders move: the other replicas elect new ones.
    eventually(
        "leaders re-elected elsewhere",
        Duration::from_secs(30),
        || async {
            let stores = client.stores().await.map_err(|e| e.to_string())?;
            let led: u64 = ids[1..]
                .iter()
                .filter_map(|id| find(&stores, *id))
                .map(|s| s.status.leader_count)
                .sum();
            if led >= regions {
                Ok(())
            } else {
                Err(format!("{led} of {regions} regions led by live stores"))
            }
        },
    )
    .await;
    // The live leaders report the dead store's peers as down.
    let down = eventually("down peers reported", Duration::from_secs(30), || async {
        let regions = client
            .down_peer_regions()
            .await
            .map_err(|e| e.to_string())?;
        if regions.is_empty() {
            Err("none yet".into())
        } else {
            Ok(regions)
        }
    })
    .await;
    assert!(
        down.iter()
            .all(|r| r.down_peers.iter().all(|d| d.peer.store_id == dead)),
        "{down:?}"
    );
    eventually("Disconnected", Duration::from_secs(40), || async {
        let s = client.store(dead).await.map_err(|e| e.to_string())?;
        match s.store.state_name {
            StoreStateName::Disconnected => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    eventually("Down", Duration::from_secs(40), || async {
        let s = client.store(dead).await.map_err(|e| e.to_string())?;
        match s.store.state_name {
            StoreStateName::Down => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let down_stores = client
        .stores_by_state(&[StoreStateName::Down])
        .await
        .unwrap();
    assert_eq!(
        down_stores.iter().map(|s| s.store.id).collect::<Vec<_>>(),
        [dead]
    );
    assert_eq!(
        down_stores[0].store.state,
        StoreState::Up,
        "Down is only a state name"
    );

    pd.store_mut(0).restart().await.unwrap();
    in_state_without_down_peers(
        &client,
        dead,
        StoreStateName::Up,
        "Up again with no down peers",
        30,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_removal_completes_and_can_be_cancelled() {
    let (mut pd, client) = start(1, 4).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    let regions = wait_replicated(&client, &ids, 3, 48).await;
    let victim = ids[3];
    eventually("victim holds regions", Duration::from_secs(60), || async {
        match client.store(victim).await {
            Ok(s) if s.status.region_count > 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Remove, then cancel before it is a tombstone.
    client.delete_store(victim).await.unwrap();
    let s = client.store(victim).await.unwrap();
    assert_eq!(
        (
            s.store.state,
            s.store.node_state,
            s.store.state_name.clone()
        ),
        (
            StoreState::Offline,
            NodeState::Removing,
            StoreStateName::Offline
        )
    );
    client
        .delete_store(victim)
        .await
        .expect("removing an Offline store again is a no-op");
    client.cancel_delete_store(victim).await.unwrap();
    let s = client.store(victim).await.unwrap();
    assert_eq!(
        (s.store.state, s.store.node_state),
        (StoreState::Up, NodeState::Serving)
    );

    // Remove for real: regions move away, the store becomes a tombstone and its process exits.
    client.delete_store(victim).await.unwrap();
    eventually("Tombstone", Duration::from_secs(120), || async {
        let s = client.store(victim).await.map_err(|e| e.to_string())?;
        if s.store.state == StoreState::Tombstone && s.store.node_state == NodeState::Removed {
            Ok(())
        } else {
            Err(format!(
                "{:?}/{:?} with {} regions",
                s.store.state, s.store.node_state, s.status.region_count
            ))
        }
    })
    .await;
    let remaining = wait_replicated(&client, &ids[..3], 3, 48).await;
    assert_eq!(remaining, regions, "every region survived");
    eventually("tombstoned tikv-sim exits", Duration::from_secs(30), || {
        let status = pd.store_mut(3).exit_status();
        async move {
            status
                .map(|s| assert!(!s.success(), "{s}"))
                .ok_or_else(|| "still running".to_string())
        }
    })
    .await;
    assert!(matches!(
        client.delete_store(victim).await,
        Err(Error::Refused { status: 410, .. })
    ));
    assert!(
        client.cancel_delete_store(victim).await.is_err(),
        "a tombstone cannot come back"
    );

    let all = client.stores().await.unwrap();
    assert_eq!(all.len(), 4, "tombstones are listed");
    assert_eq!(
        find(&all, victim).unwrap().store.state_name,
        StoreStateName::Tombstone
    );
    client.remove_tombstones().await.unwrap();
    assert_eq!(client.stores().await.unwrap().len(), 3);
    assert!(matches!(
        client.store(victim).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_store_loses_its_leaders_and_rejoins_when_thawed() {
    let (mut pd, client) = start(1, 3).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    let regions = wait_replicated(&client, &ids, 3, 48).await;
    let frozen = ids[2];
    eventually(
        "frozen-to-be store leads something",
        Duration::from_secs(60),
        || async {
            match client.store_leader_count(frozen).await {
                Ok(n) if n > 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    pd.store(2).freeze().unwrap();
    // Its process and sockets stay, but it answers nothing: the other replicas take over.
    eventually(
        "leaders moved off the frozen store",
        Duration::from_secs(30),
        || async {
            let stores = client.stores().await.map_err(|e| e.to_string())?;
            let led: u64 = ids[..2]
                .iter()
                .filter_map(|id| find(&stores, *id))
                .map(|s| s.status.leader_count)
                .sum();
            if led == regions {
                Ok(())
            } else {
                Err(format!("{led} of {regions} led by live stores"))
            }
        },
    )
    .await;
    assert!(pd.store_mut(2).is_running());

    pd.store(2).thaw().unwrap();
    // Back in touch, it follows the newer terms, heartbeats again and gets leaders back.
    eventually(
        "thawed store leads again",
        Duration::from_secs(60),
        || async {
            let s = client.store(frozen).await.map_err(|e| e.to_string())?;
            let down = client
                .down_peer_regions()
                .await
                .map_err(|e| e.to_string())?;
            if s.status.leader_count > 0
                && s.store.state_name == StoreStateName::Up
                && down.is_empty()
            {
                Ok(())
            } else {
                Err(format!(
                    "{} leaders, {}, {} down-peer regions",
                    s.status.leader_count,
                    s.store.state_name,
                    down.len()
                ))
            }
        },
    )
    .await;
    assert_eq!(wait_replicated(&client, &ids, 3, 48).await, regions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbootstrapped_cluster_is_reported_as_such_until_a_store_bootstraps_it() {
    let (mut pd, client) = start(1, 0).await;
    let status = client.cluster_status().await.unwrap();
    assert!(!status.is_bootstrapped(), "{status:?}");
    match client.stores().await {
        Err(Error::NotBootstrapped) => {}
        other => panic!("stores before bootstrap: {other:?}"),
    }
    match client.store(1).await {
        Err(Error::NotBootstrapped) => {}
        other => panic!("a store before bootstrap: {other:?}"),
    }

    pd.start_store(common::store_options())
        .await
        .expect("store starts");
    let id = pd.stores()[0].id();
    eventually(
        "the first store bootstrapped the cluster",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let stores = client.stores().await.map_err(|e| e.to_string())?;
                let up = find(&stores, id).is_some_and(|s| s.store.state == StoreState::Up);
                let bootstrapped = client
                    .cluster_status()
                    .await
                    .map_err(|e| e.to_string())?
                    .is_bootstrapped();
                (up && bootstrapped)
                    .then_some(())
                    .ok_or_else(|| format!("{} stores, bootstrapped: {bootstrapped}", stores.len()))
            }
        },
    )
    .await;
}

/// Failover as the operator drives it, without Kubernetes: a store frozen until PD has replaced
/// its replicas elsewhere, then thawed while it still holds the stale ones; another store then
/// leaves, so PD must create new replicas on the thawed store for regions whose old replicas it
/// is destroying at the same moment. It does, keeps running, and the leaving store drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thawed_store_takes_new_replicas_of_regions_it_held_stale_ones_of() {
    let (mut pd, client) = start(1, 4).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    wait_replicated(&client, &ids, 3, 48).await;
    let (frozen, leaving) = (ids[2], ids[3]);
    pd.store(2).freeze().unwrap();
    in_state_without_down_peers(
        &client,
        frozen,
        StoreStateName::Down,
        "PD has replaced the frozen store's replicas",
        120,
    )
    .await;
    pd.store(2).thaw().unwrap();
    eventually("the thawed store Up", Duration::from_secs(60), || async {
        let s = client.store(frozen).await.map_err(|e| e.to_string())?;
        (s.store.state_name == StoreStateName::Up)
            .then_some(())
            .ok_or_else(|| s.store.state_name.to_string())
    })
    .await;
    client.delete_store(leaving).await.unwrap();
    eventually(
        "the leaving store drained to a tombstone",
        Duration::from_secs(180),
        || async {
            let s = client.store(leaving).await.map_err(|e| e.to_string())?;
            (s.store.state_name == StoreStateName::Tombstone)
                .then_some(())
                .ok_or_else(|| format!("{}: {} regions", s.store.state_name, s.status.region_count))
        },
    )
    .await;
    assert!(pd.store_mut(2).is_running(), "the thawed store died");
    // Every region with three caught-up voters on the three stores left.
    wait_replicated(&client, &[ids[0], ids[1], frozen], 3, 48).await;
}

/// Waits until PD reports store `id` in `state` and no region with a down peer (for a Down
/// store: PD has replaced its replicas elsewhere).
async fn in_state_without_down_peers(
    client: &pdclient::PdClient,
    id: u64,
    state: StoreStateName,
    what: &str,
    secs: u64,
) {
    eventually(what, Duration::from_secs(secs), || async {
        let s = client.store(id).await.map_err(|e| e.to_string())?;
        let down = client
            .down_peer_regions()
            .await
            .map_err(|e| e.to_string())?;
        if s.store.state_name == state && down.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} with {} down-peer regions",
                s.store.state_name,
                down.len()
            ))
        }
    })
    .await
}

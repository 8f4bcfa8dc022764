//! pdclient and tikv-sim against a real three-member pd-server cluster.

mod common;

use std::time::Duration;

use common::{eventually, start, wait_replicated};
use pdclient::{Error, PdClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_members_fail_and_are_deleted() {
    let (mut pd, client) = start(3, 3).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    wait_replicated(&client, &ids, 3, 48).await;

    let members = client.members().await.unwrap();
    assert_eq!(members.members.len(), 3);
    let leader = members.leader.clone().expect("a leader");
    assert!(members.members.iter().any(|m| m.name == leader.name));
    let health = client.health().await.unwrap();
    assert_eq!(health.len(), 3);
    assert!(health.iter().all(|h| h.health), "{health:?}");

    // Transfer PD leadership to a named member.
    let target = members
        .members
        .iter()
        .find(|m| m.name != leader.name)
        .unwrap()
        .name
        .clone();
    client.transfer_leader(&target).await.unwrap();
    eventually(
        "leadership transferred",
        Duration::from_secs(30),
        || async {
            match client.leader().await {
                Ok(l) if l.name == target => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    match client.transfer_leader("no-such-member").await {
        Err(Error::Refused { message, .. }) => {
            assert!(message.contains("no valid pd"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The stores follow the new leader: PD still schedules (leader eviction drains a store).
    client.add_evict_leader(ids[0]).await.unwrap();
    eventually(
        "leaders evicted through the new PD leader",
        Duration::from_secs(60),
        || async {
            match client.store_leader_count(ids[0]).await {
                Ok(0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    client.remove_evict_leader(ids[0]).await.unwrap();

    // Resign: someone else leads.
    client.resign_leader().await.unwrap();
    let after_resign = eventually(
        "a new leader after resign",
        Duration::from_secs(30),
        || async {
            match client.leader().await {
                Ok(l) if l.name != target && !l.name.is_empty() => Ok(l.name),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Kill the leader: a client that lists the dead member first still gets answers.
    let dead_url = pd
        .members()
        .iter()
        .find(|m| m.name() == after_resign)
        .unwrap()
        .client_url()
        .to_string();
    pd.member_mut(&after_resign).unwrap().kill();
    let mut endpoints = vec![dead_url.clone()];
    endpoints.extend(pd.endpoints().into_iter().filter(|e| *e != dead_url));
    let failover = PdClient::builder(&endpoints)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let new_leader = eventually(
        "a leader among the survivors",
        Duration::from_secs(30),
        || async {
            match failover.leader().await {
                Ok(l) if l.name != after_resign && !l.name.is_empty() => Ok(l.name),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    eprintln!("leader after kill: {new_leader}");
    let only_dead = PdClient::builder([&dead_url])
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    match only_dead.members().await {
        Err(Error::Unavailable { attempts, .. }) => assert_eq!(attempts.len(), 1, "{attempts:?}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Right after the election a live member may still fail PD's ping; the dead one stays out.
    let dead_name = after_resign.clone();
    eventually(
        "health shows only the dead member down",
        Duration::from_secs(30),
        || async {
            let health = failover.health().await.map_err(|e| e.to_string())?;
            let down: Vec<&str> = health
                .iter()
                .filter(|h| !h.health)
                .map(|h| h.name.as_str())
                .collect();
            if down == [dead_name.as_str()] {
                Ok(())
            } else {
                Err(format!("unhealthy: {down:?}"))
            }
        },
    )
    .await;

    // Delete the dead member.
    failover.delete_member(&after_resign).await.unwrap();
    let members = failover.members().await.unwrap();
    assert_eq!(members.members.len(), 2);
    assert!(members.members.iter().all(|m| m.name != after_resign));
    assert!(matches!(
        failover.delete_member(&after_resign).await,
        Err(Error::NotFound { .. })
    ));

    // The stores moved to the surviving leader and keep their regions led.
    wait_replicated(&failover, &ids, 3, 48).await;
}

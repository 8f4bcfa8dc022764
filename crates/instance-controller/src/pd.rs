//! The few PD questions and requests the instance controller needs, on top of `pdclient`.

use std::sync::Arc;

use operator_runtime::metrics::Metrics;
use pdclient::PdClient;

use crate::status::{MemberInfo, StoreInfo};

/// A PD client for one cluster.
pub struct Pd(PdClient);

impl Pd {
    /// A client of PD at `url` (`http://host:port`) that counts its requests in `metrics`.
    pub fn new(url: &str, metrics: &Metrics) -> Result<Self, pdclient::Error> {
        let m = metrics.clone();
        let observer: pdclient::Observer =
            Arc::new(move |r: &pdclient::RequestRecord| m.pd_request(r.method, r.route, r.outcome));
        Ok(Self(PdClient::builder([url]).observer(observer).build()?))
    }

    /// Every member, with its leadership and health.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, pdclient::Error> {
        let members = self.0.members().await?;
        let health = self.0.health().await?;
        Ok(members
            .members
            .iter()
            .map(|m| MemberInfo {
                name: m.name.clone(),
                id: m.member_id,
                leader: members.leader.as_ref().is_some_and(|l| l.name == m.name),
                healthy: health.iter().any(|h| h.name == m.name && h.health),
            })
            .collect())
    }

    /// Makes `to` the PD leader.
    pub async fn transfer_leader(&self, to: &str) -> Result<(), pdclient::Error> {
        self.0.transfer_leader(to).await
    }

    /// Removes the member `name`; false when PD does not list it (already removed).
    pub async fn remove_member(&self, name: &str) -> Result<bool, pdclient::Error> {
        match self.0.delete_member(name).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The store registered with `address`, tombstones included (newest first on reuse).
    pub async fn store_by_address(
        &self,
        address: &str,
    ) -> Result<Option<StoreInfo>, pdclient::Error> {
        let stores = match self.0.stores().await {
            Ok(s) => s,
            Err(pdclient::Error::NotBootstrapped) => return Ok(None),
            Err(e) => return Err(e),
        };
        let best = stores
            .into_iter()
            .filter(|s| s.store.address == address)
            .max_by_key(|s| s.store.id);
        Ok(best.map(|s| StoreInfo {
            id: s.store.id,
            state: s.store.state_name.as_str().to_string(),
            leader_count: s.status.leader_count as i64,
            region_count: s.status.region_count as i64,
        }))
    }

    /// Asks PD to remove a store (it becomes Offline, then Tombstone once empty).
    pub async fn remove_store(&self, id: u64) -> Result<(), pdclient::Error> {
        self.0.delete_store(id).await
    }

    /// Cancels the removal of an Offline store.
    pub async fn cancel_store_removal(&self, id: u64) -> Result<(), pdclient::Error> {
        self.0.cancel_delete_store(id).await
    }
}

impl Pd {
    /// Whether the store is in PD's evict-leader scheduler.
    pub async fn evicting(&self, id: u64) -> Result<bool, pdclient::Error> {
        Ok(self.0.evict_leader_stores().await?.contains(&id))
    }

    /// Adds the store to the evict-leader scheduler: PD moves its leaders away and sends none back.
    pub async fn start_eviction(&self, id: u64) -> Result<(), pdclient::Error> {
        self.0.add_evict_leader(id).await
    }

    /// Removes the store's evict-leader entry; already gone is fine.
    pub async fn end_eviction(&self, id: u64) -> Result<(), pdclient::Error> {
        match self.0.remove_evict_leader(id).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Up stores other than `id` that are not in the evict-leader scheduler: where PD can move
    /// `id`'s leaders.
    pub async fn eviction_targets(&self, id: u64) -> Result<usize, pdclient::Error> {
        let evicting = self.0.evict_leader_stores().await?;
        Ok(self
            .0
            .stores()
            .await?
            .iter()
            .filter(|s| {
                s.store.id != id
                    && s.store.state_name.as_str() == "Up"
                    && !evicting.contains(&s.store.id)
            })
            .count())
    }

    /// Stores whose `zone` label is `zone`.
    pub async fn stores_in_zone(&self, zone: &str) -> Result<Vec<u64>, pdclient::Error> {
        Ok(self
            .0
            .stores()
            .await?
            .iter()
            .filter(|s| {
                s.store
                    .labels
                    .iter()
                    .any(|l| l.key == "zone" && l.value == zone)
            })
            .map(|s| s.store.id)
            .collect())
    }

    /// Stores that hold a peer PD reports down, in some region.
    pub async fn stores_with_down_peers(&self) -> Result<Vec<u64>, pdclient::Error> {
        let mut stores: Vec<u64> = self
            .0
            .down_peer_regions()
            .await?
            .iter()
            .flat_map(|r| r.down_peers.iter().map(|d| d.peer.store_id))
            .collect();
        stores.sort_unstable();
        stores.dedup();
        Ok(stores)
    }
}

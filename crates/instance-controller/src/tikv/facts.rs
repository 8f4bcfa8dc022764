//! What a TiKV store's reconcile reads: the common facts and one PD snapshot: every store
//! (`GET /stores/check`), the evict-leader entries (only once the store exists), and the stores
//! with down peers (only when the store is about to restart: the question is expensive for PD).

use std::time::Duration;

use api::conditions::{leaders_evicted, leaders_transferred_back};
use api::v1alpha1::{StoreState, TiKV};
use operator_runtime::conditions;
use pdclient::PdClient;

use super::{evict, transfer_back};
use crate::context::{Context, Error};
use crate::instance::Facts;
use crate::resources::component::tikv_address;

/// A store as PD reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// Store id.
    pub id: u64,
    /// Its state name.
    pub state: StoreState,
    /// Region leaders on it.
    pub leader_count: i64,
    /// Region peers on it.
    pub region_count: i64,
    /// Approximate size of its region peers, in MiB.
    pub region_size_mib: i64,
    /// Its `zone` label.
    pub zone: Option<String>,
}

/// What PD said.
#[derive(Clone, Debug, PartialEq)]
pub enum PdView {
    /// The Cluster reports no PD URL: no pod was ever started, so no store can exist.
    NoUrl,
    /// PD could not be asked, or its answer could not be used (why); says nothing about the
    /// store.
    Unreachable(String),
    /// PD's answers.
    Answered(Snapshot),
}

/// One PD snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The store registered at this instance's address (the newest, if a tombstone is there too).
    pub store: Option<Store>,
    /// The other stores, tombstones left out.
    pub others: Vec<Store>,
    /// Stores in PD's evict-leader scheduler (asked once the store exists).
    pub evicting: Vec<u64>,
    /// Stores holding peers PD reports down or pending; `None`: not asked (no restart is near).
    pub peers: Option<evict::PeerHealth>,
    /// How far PD got removing the store (asked only while it is Offline); `None`: not asked,
    /// or PD tracks no progress for it.
    pub removal: Option<pdclient::StoreProgress>,
}

/// Everything a TiKV store's decision needs.
#[derive(Clone, Debug)]
pub struct TikvFacts<'a> {
    /// Object, Cluster, pod.
    pub instance: Facts<'a, TiKV>,
    /// PD's view (`NoUrl` also when the cluster is gone and PD was not asked).
    pub pd: PdView,
}

impl TikvFacts<'_> {
    /// The snapshot, when PD answered.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        match &self.pd {
            PdView::Answered(s) => Some(s),
            _ => None,
        }
    }

    /// The store, when PD answered and knows it.
    pub fn store(&self) -> Option<&Store> {
        self.snapshot()?.store.as_ref()
    }

    /// The inputs of the eviction step.
    pub fn eviction(&self) -> evict::Facts<'_> {
        let i = &self.instance;
        let s = self.snapshot();
        let store = self.store();
        let zone_by_zone = i.obj.spec.restart.zone_by_zone;
        let same_zone = |id: u64| {
            zone_by_zone
                && store.and_then(|s| s.zone.as_ref()).is_some_and(|z| {
                    s.into_iter()
                        .flat_map(|s| &s.others)
                        .any(|o| o.id == id && o.zone.as_ref() == Some(z))
                })
        };
        evict::Facts {
            must_restart: !i.obj.spec.offline && i.restart().is_some(),
            store,
            evicting: store.is_some_and(|st| s.is_some_and(|s| s.evicting.contains(&st.id))),
            evicting_for: false_for(i.conditions(), leaders_evicted::TYPE, i.now),
            timeout: api::duration::parse(&i.obj.spec.restart.leader_eviction_timeout)
                .unwrap_or(DEFAULT_EVICTION_TIMEOUT),
            // Zone at a time: every region has at most one replica in this zone, so the zone's
            // other stores restarting alongside cost no region its quorum.
            peers: s
                .and_then(|s| s.peers.as_ref())
                .map(|p| p.without(|id| Some(id) == store.map(|s| s.id) || same_zone(id))),
            pod_current_and_ready: i.pod_ready_at_revision(),
            pod_terminating: i.pod_terminating(),
            suspending: i.suspending(),
            other_targets: s.map_or(0, |s| {
                s.others
                    .iter()
                    .filter(|o| o.state == StoreState::Up && !s.evicting.contains(&o.id))
                    .count()
            }),
        }
    }

    /// The inputs of the wait for leaders to come back after a restart. The fair share counts
    /// the leaders of the Up stores that may hold them (not evicting), this one included.
    pub fn transfer_back(&self) -> transfer_back::Facts {
        let i = &self.instance;
        let s = self.snapshot();
        let store = self.store();
        let (leaders, stores) = s
            .into_iter()
            .flat_map(|s| {
                store.into_iter().chain(
                    s.others
                        .iter()
                        .filter(|o| o.state == StoreState::Up && !s.evicting.contains(&o.id)),
                )
            })
            .fold((0, 0), |(l, n), st| (l + st.leader_count, n + 1));
        transfer_back::Facts {
            waiting_for: false_for(i.conditions(), leaders_transferred_back::TYPE, i.now),
            leaders: store.map_or(0, |s| s.leader_count),
            fair_share: if stores == 0 { 0 } else { leaders / stores },
            timeout: api::duration::parse(&i.obj.spec.restart.leader_transfer_back_timeout)
                .unwrap_or(DEFAULT_TRANSFER_BACK_TIMEOUT),
        }
    }
}

/// Eviction timeout when the spec's cannot be parsed (the CRD validates it).
const DEFAULT_EVICTION_TIMEOUT: Duration = Duration::from_secs(600);

/// Transfer-back timeout when the spec's cannot be parsed (the CRD validates it).
const DEFAULT_TRANSFER_BACK_TIMEOUT: Duration = Duration::from_secs(300);

/// How long condition `type_` has been False (the eviction has run, the store has waited for
/// its leaders).
fn false_for(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<Duration> {
    let c = conditions::find(conditions, type_)?;
    (c.status == conditions::FALSE).then(|| {
        let secs = now.as_second() - c.last_transition_time.0.as_second();
        Duration::from_secs(secs.max(0) as u64)
    })
}

/// Reads the facts of `tikv`, and the PD client they were read with.
pub async fn gather<'a>(
    tikv: &'a TiKV,
    ctx: &Context,
) -> Result<(TikvFacts<'a>, Option<PdClient>), Error> {
    let instance = Facts::gather(tikv, ctx).await?;
    let url = instance.pd_url().map(String::from);
    let (Some(url), false) = (url, instance.deleting() && instance.cluster_gone()) else {
        return Ok((
            TikvFacts {
                instance,
                pd: PdView::NoUrl,
            },
            None,
        ));
    };
    let tls = match &instance.pd_tls {
        Some(Err(problem)) => {
            // PD cannot be asked without the operator's certificate: nothing is changed.
            let pd = PdView::Unreachable(problem.clone());
            return Ok((TikvFacts { instance, pd }, None));
        }
        Some(Ok(m)) => Some(m.clone()),
        None => None,
    };
    let client = ctx.pd_client(
        &instance.namespace,
        &tikv.spec.cluster.name,
        &url,
        tls.as_ref(),
    )?;
    let address = tikv_address(tikv, &instance.namespace);
    let mut facts = TikvFacts {
        pd: match snapshot(&client, &address).await {
            Ok(s) => PdView::Answered(s),
            Err(e) => {
                tracing::warn!(error = %e, store = %address, "cannot ask PD about the store");
                PdView::Unreachable(e)
            }
        },
        instance,
    };
    if !facts.instance.paused() && evict::restart_near(&facts.eviction()) {
        match peer_health(&client).await {
            Ok(peers) => {
                if let PdView::Answered(s) = &mut facts.pd {
                    s.peers = Some(peers);
                }
            }
            Err(e) => facts.pd = PdView::Unreachable(e.to_string()),
        }
    }
    Ok((facts, Some(client)))
}

/// Which stores hold down peers and which pending ones (two of PD's region checks).
async fn peer_health(client: &PdClient) -> Result<evict::PeerHealth, pdclient::Error> {
    fn stores(ids: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut ids: Vec<u64> = ids.collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
    let down = client.down_peer_regions().await?;
    let pending = client
        .regions_in_check(pdclient::RegionCheck::PendingPeer)
        .await?;
    Ok(evict::PeerHealth {
        down: stores(
            down.iter()
                .flat_map(|r| r.down_peers.iter().map(|d| d.peer.store_id)),
        ),
        pending: stores(
            pending
                .iter()
                .flat_map(|r| r.pending_peers.iter().map(|p| p.store_id)),
        ),
    })
}

/// The stores (and, once this one exists, the evict-leader entries), or why there is no
/// snapshot.
async fn snapshot(client: &PdClient, address: &str) -> Result<Snapshot, String> {
    let stores = match client.stores().await {
        Ok(s) => s,
        // No store has bootstrapped the cluster yet: this one is not registered either.
        Err(pdclient::Error::NotBootstrapped) => return Ok(Snapshot::default()),
        Err(e) => return Err(e.to_string()),
    };
    let mut all = Vec::new();
    for s in stores {
        let Some(state) = StoreState::from_pd_name(s.store.state_name.as_str()) else {
            return Err(format!(
                "PD reports store {} in a state this operator does not know: {}",
                s.store.id, s.store.state_name
            ));
        };
        all.push((
            s.store.address.clone(),
            Store {
                id: s.store.id,
                state,
                leader_count: s.status.leader_count as i64,
                region_count: s.status.region_count as i64,
                region_size_mib: s.status.region_size,
                zone: s.store.label_map().remove("zone"),
            },
        ));
    }
    let this = all
        .iter()
        .filter(|(a, _)| a == address)
        .map(|(_, s)| s)
        .max_by_key(|s| s.id)
        .cloned();
    let others = all
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| Some(s.id) != this.as_ref().map(|t| t.id) && s.state != StoreState::Tombstone)
        .collect();
    let evicting = match &this {
        Some(_) => client
            .evict_leader_stores()
            .await
            .map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    // Progress only exists while PD removes the store; not worth a request otherwise.
    let removal = match &this {
        Some(s) if s.state == StoreState::Offline => client
            .store_progress(s.id)
            .await
            .map_err(|e| e.to_string())?,
        _ => None,
    };
    Ok(Snapshot {
        store: this,
        others,
        evicting,
        peers: None,
        removal,
    })
}

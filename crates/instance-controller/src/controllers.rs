//! The PD and TiKV reconcilers: the generic resource layer plus what each asks of PD.

use std::sync::Arc;
use std::time::Duration;

use api::v1alpha1::{Cluster, PD, TiKV, TiKVGroup};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use operator_runtime::conditions::{self, NewCondition};

use crate::component::{store_labels, tikv_address};
use crate::evict::{self, Step, WaitReason};
use crate::kind::{InstanceKind, group_of, pd_service_url, revision_of};
use crate::pd::Pd;
use crate::quorum::{self, Change, Step as QuorumStep};
use crate::reconcile::{
    Context, Error, apply_resources, current_conditions, suspended, write_status,
};
use crate::status;

/// Finalizer on instances whose removal must first clean PD (members, stores).
pub const FINALIZER: &str = "core.tikv.org/pd-cleanup";

async fn set_finalizer<K: InstanceKind>(
    obj: &K,
    ctx: &Context,
    present: bool,
) -> Result<(), Error> {
    let api: Api<K> = Api::namespaced(
        ctx.client.clone(),
        &obj.namespace().ok_or(Error::NoNamespace)?,
    );
    Ok(operator_runtime::finalizer::set(&api, obj, FINALIZER, present).await?)
}

/// Whether PD state can no longer matter: the Cluster is gone or going.
async fn cluster_gone<K: InstanceKind>(obj: &K, ctx: &Context) -> Result<bool, Error> {
    let api: Api<api::v1alpha1::Cluster> = Api::namespaced(
        ctx.client.clone(),
        &obj.namespace().ok_or(Error::NoNamespace)?,
    );
    Ok(api
        .get_opt(&obj.cluster().name)
        .await?
        .is_none_or(|c| c.meta().deletion_timestamp.is_some()))
}

/// Whether the pod is running (not going) and must be deleted: outdated, or suspended.
fn must_restart<K: InstanceKind>(obj: &K, pod: Option<&Pod>, suspended: bool) -> bool {
    pod.is_some_and(|p| {
        p.meta().deletion_timestamp.is_none() && (suspended || revision_of(p) != revision_of(obj))
    })
}

/// Reconciles a PD member.
pub async fn reconcile_pd(pd: Arc<PD>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("PD");
    let ns = pd.namespace().ok_or(Error::NoNamespace)?;
    let name = pd.name_any();
    let group = group_of(pd.as_ref()).unwrap_or_default();
    let fallback = pd_service_url(&group, &ns, pd.spec.template.server.ports.client.port);
    if pd.meta().deletion_timestamp.is_some() {
        if !cluster_gone(pd.as_ref(), &ctx).await? {
            let client = Pd::new(&fallback, &ctx.metrics)?;
            let members = client.members().await?;
            match quorum::decide(&name, &members, Change::Remove) {
                QuorumStep::Proceed => {
                    if client.remove_member(&name).await? {
                        let note = format!("removed PD member {name}");
                        ctx.event(pd.as_ref(), EventType::Normal, "MemberRemoved", note)
                            .await;
                    }
                }
                QuorumStep::TransferLeader { to } => {
                    transfer_leader(pd.as_ref(), &ctx, &client, &to).await?;
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                QuorumStep::Wait(why) => {
                    ctx.event(pd.as_ref(), EventType::Warning, "MemberRemovalBlocked", why)
                        .await;
                    return Ok(Action::requeue(Duration::from_secs(5)));
                }
            }
        }
        set_finalizer(pd.as_ref(), &ctx, false).await?;
        return Ok(Action::await_change());
    }
    set_finalizer(pd.as_ref(), &ctx, true).await?;
    let cluster = Api::<Cluster>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&pd.spec.cluster.name)
        .await?;
    let pod = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?;
    let suspending = suspended(cluster.as_ref());
    let restart = must_restart(pd.as_ref(), pod.as_ref(), suspending);
    let client = Pd::new(
        &cluster
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.pd.clone())
            .unwrap_or(fallback.clone()),
        &ctx.metrics,
    )?;
    let members = match client.members().await {
        Ok(m) => Some(m),
        // A PD that cannot answer is no reason to keep a broken member's pod; it is for a
        // healthy one, whose restart could be what loses the quorum. Not when suspending: the
        // last members stop after PD has lost its quorum.
        Err(e) if restart && !suspending && status::pod_ready(pod.as_ref()) => {
            return Err(e.into());
        }
        Err(e) => {
            tracing::debug!(error = %e, member = %name, "cannot ask PD about its members");
            None
        }
    };
    let mut conditions = Vec::new();
    // Only the pod seen above may be deleted, and only once the checks below allow it.
    let mut may_restart = false;
    if restart && suspending {
        // The whole cluster stops, so quorum cannot be kept; PD goes last, as TiKV stores
        // need it to evict their leaders.
        let selector = cluster_component(&pd.spec.cluster.name, "tikv");
        let tikv_pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .len();
        // Also every store must have seen the suspension, so that no TiKV pod is about to be
        // (re)created while PD goes.
        let unsuspended = Api::<TiKV>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .iter()
            .filter(|t| {
                t.status.as_ref().is_none_or(|s| {
                    !conditions::has_reason(&s.common.conditions, "Synced", "Suspended")
                })
            })
            .count();
        may_restart = tikv_pods == 0 && unsuspended == 0;
        conditions.push(NewCondition::new(
            "RestartSafe",
            may_restart,
            if may_restart {
                "Suspending"
            } else {
                "WaitingForTiKV"
            },
            format!("{tikv_pods} TiKV pods of the cluster still run"),
        ));
    } else if restart
        && let Some(members) = &members
        && let Some(first) = quorum::restart_turn(
            &name,
            members.iter().any(|m| m.name == name && m.healthy),
            &due_members(pd.as_ref(), &ctx, members).await?,
        )
    {
        conditions.push(NewCondition::new(
            "RestartSafe",
            false,
            "WaitingForMember",
            format!("{first} restarts first: PD members restart one at a time"),
        ));
    } else if restart && let Some(members) = &members {
        let step = quorum::decide(&name, members, Change::Restart);
        may_restart = step == QuorumStep::Proceed;
        conditions.push(match step {
            QuorumStep::Proceed => NewCondition::new("RestartSafe", true, "QuorumKept", ""),
            QuorumStep::TransferLeader { to } => {
                transfer_leader(pd.as_ref(), &ctx, &client, &to).await?;
                NewCondition::new(
                    "RestartSafe",
                    false,
                    "TransferringLeader",
                    format!("handing PD leadership to {to} before the restart"),
                )
            }
            QuorumStep::Wait(why) => {
                let first = !conditions::has_reason(
                    &current_conditions(pd.as_ref()),
                    "RestartSafe",
                    "WouldLoseQuorum",
                );
                if first {
                    ctx.event(
                        pd.as_ref(),
                        EventType::Warning,
                        "RestartBlocked",
                        why.clone(),
                    )
                    .await;
                }
                NewCondition::new("RestartSafe", false, "WouldLoseQuorum", why)
            }
        });
    } else if restart {
        // PD cannot answer and this member's pod is not ready (see above): it is down already.
        may_restart = true;
        conditions.push(NewCondition::new(
            "RestartSafe",
            true,
            "MemberDown",
            "PD cannot answer and this member is not ready",
        ));
    } else {
        conditions.push(NewCondition {
            type_: "RestartSafe",
            status: conditions::UNKNOWN,
            reason: "NoRestartPending".into(),
            message: String::new(),
        });
    }
    let observed =
        apply_resources(pd.as_ref(), &ctx, cluster, pod, Some(fallback), may_restart).await?;
    let member = members
        .as_ref()
        .and_then(|ms| ms.iter().find(|m| m.name == name))
        .filter(|_| observed.as_ref().is_some_and(|o| o.pod.is_some()));
    let ready = status::pd_ready(observed.as_ref().and_then(|o| o.pod.as_ref()), member);
    let is_ready = ready.status == "True";
    conditions.push(ready);
    write_status(pd.as_ref(), &ctx, observed.as_ref(), conditions, |s| {
        s.id = member.map(|m| m.id.to_string());
        s.is_leader = member.is_some_and(|m| m.leader);
        s.health = member.is_some_and(|m| m.healthy);
    })
    .await?;
    // PD leadership moves without any Kubernetes event, and the group picks which member to
    // restart or remove last by `isLeader`: look again every few seconds, and every second while
    // a restart waits on it.
    Ok(Action::requeue(Duration::from_secs(if restart {
        1
    } else if is_ready {
        5
    } else {
        3
    })))
}

/// Label selector of one component's objects and pods in a cluster (all its groups).
fn cluster_component(cluster: &str, component: &str) -> String {
    format!(
        "{}={cluster},{}={component}",
        api::labels::CLUSTER,
        api::labels::COMPONENT
    )
}

/// The other PD members of the cluster that are due to restart (pod outdated, missing or
/// terminating) or leaving, read fresh from the API server: what [`quorum::restart_turn`] orders.
async fn due_members(
    pd: &PD,
    ctx: &Context,
    members: &[status::MemberInfo],
) -> Result<Vec<quorum::Due>, Error> {
    let ns = pd.namespace().ok_or(Error::NoNamespace)?;
    let params = ListParams::default().labels(&cluster_component(&pd.spec.cluster.name, "pd"));
    let pds = Api::<PD>::namespaced(ctx.client.clone(), &ns)
        .list(&params)
        .await?;
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&params)
        .await?;
    Ok(pds
        .items
        .iter()
        .filter(|other| other.name_any() != pd.name_any())
        .filter_map(|other| {
            let name = other.name_any();
            let pod = pods.items.iter().find(|p| p.name_any() == name);
            let leaving = other.meta().deletion_timestamp.is_some();
            let restarting = pod.is_none_or(|p| {
                p.meta().deletion_timestamp.is_some() || revision_of(p) != revision_of(other)
            });
            (leaving || restarting).then(|| quorum::Due {
                healthy: members.iter().any(|m| m.name == name && m.healthy),
                name,
                leaving,
            })
        })
        .collect())
}

/// Asks PD to hand leadership from `pd` to `to`, and says so.
async fn transfer_leader(pd: &PD, ctx: &Context, client: &Pd, to: &str) -> Result<(), Error> {
    client.transfer_leader(to).await?;
    let note = format!("transferring PD leadership from {} to {to}", pd.name_any());
    ctx.event(pd, EventType::Normal, "TransferringLeader", note)
        .await;
    Ok(())
}

/// What a store's restart needs from its group: the leader-eviction timeout (10 minutes when the
/// group cannot be read), and whether the group restarts whole zones together (its `ZoneByZone`
/// condition, set only when that is safe).
async fn restart_policy(tikv: &TiKV, ctx: &Context) -> Result<(Duration, bool), Error> {
    let default = Duration::from_secs(600);
    let Some(group) = group_of(tikv) else {
        return Ok((default, false));
    };
    let api: Api<TiKVGroup> = Api::namespaced(
        ctx.client.clone(),
        &tikv.namespace().ok_or(Error::NoNamespace)?,
    );
    let g = api.get_opt(&group).await?;
    let timeout = g
        .as_ref()
        .and_then(|g| api::duration::parse(&g.spec.update_policy.leader_eviction_timeout))
        .unwrap_or(default);
    let zone_by_zone = g
        .and_then(|g| g.status)
        .is_some_and(|s| conditions::is_true(&s.conditions, "ZoneByZone"));
    Ok((timeout, zone_by_zone))
}

/// How long the LeadersEvicted condition has been False (the eviction has been running).
fn evicting_for(tikv: &TiKV) -> Option<Duration> {
    let c = conditions::find(&tikv.status.as_ref()?.common.conditions, "LeadersEvicted")?;
    if c.status != conditions::FALSE {
        return None;
    }
    let secs = Timestamp::now().as_second() - c.last_transition_time.0.as_second();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// Reconciles a TiKV store.
pub async fn reconcile_tikv(tikv: Arc<TiKV>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("TiKV");
    let ns = tikv.namespace().ok_or(Error::NoNamespace)?;
    let name = tikv.name_any();
    let deleting = tikv.meta().deletion_timestamp.is_some();
    if deleting && cluster_gone(tikv.as_ref(), &ctx).await? {
        set_finalizer(tikv.as_ref(), &ctx, false).await?;
        return Ok(Action::await_change());
    }
    if !deleting {
        set_finalizer(tikv.as_ref(), &ctx, true).await?;
    }
    let leaving = deleting || tikv.spec.offline;
    let cluster = Api::<Cluster>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&tikv.spec.cluster.name)
        .await?;
    let pd_url = cluster
        .as_ref()
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.pd.clone());
    let address = tikv_address(tikv.as_ref(), &ns);
    let client = pd_url
        .as_deref()
        .map(|url| Pd::new(url, &ctx.metrics))
        .transpose()?;
    // No PD URL means no pod was ever started, so no store can exist. But PD not answering
    // says nothing about the store: a leaving or restarting store must then wait.
    let pod = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await?;
    let suspending = suspended(cluster.as_ref());
    let must_restart = !leaving && must_restart(tikv.as_ref(), pod.as_ref(), suspending);
    let store = match &client {
        Some(c) => match c.store_by_address(&address).await {
            Ok(s) => s,
            // Suspending stops every store anyway: without PD there is nothing to evict.
            Err(e) if leaving || (must_restart && !suspending) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, store = %address, "cannot ask PD about the store");
                None
            }
        },
        None => None,
    };

    let mut conditions = Vec::new();
    // A restart (new revision, suspend) moves the store's leaders away first.
    let mut may_restart = client.is_none();
    let mut evicting_now = false;
    if let Some(c) = client.as_ref().filter(|_| !leaving) {
        let evicting = match &store {
            Some(s) => c.evicting(s.id).await?,
            None => false,
        };
        let (timeout, zone_by_zone) = restart_policy(&tikv, &ctx).await?;
        let mut down = if must_restart && evicting {
            c.stores_with_down_peers().await?
        } else {
            Vec::new()
        };
        // Zone at a time: every region has at most one replica in this zone, so the zone's
        // other stores restarting alongside cost no region its quorum.
        if zone_by_zone
            && !down.is_empty()
            && let Some(zone) = store_labels(&tikv).get("zone")
        {
            let same_zone = c.stores_in_zone(zone).await?;
            down.retain(|s| !same_zone.contains(s));
        }
        let other_targets = match &store {
            Some(s) if must_restart && suspending => c.eviction_targets(s.id).await?,
            _ => 0,
        };
        let facts = evict::Facts {
            must_restart,
            store: store.as_ref(),
            evicting,
            evicting_for: evicting_for(&tikv),
            timeout,
            stores_with_down_peers: &down,
            pod_current_and_ready: status::pod_ready(pod.as_ref())
                && pod.as_ref().and_then(revision_of) == revision_of(tikv.as_ref()),
            suspending,
            other_targets,
        };
        let step = evict::decide(&facts);
        let id = store.as_ref().map_or(0, |s| s.id);
        let leaders = store.as_ref().map_or(0, |s| s.leader_count);
        evicting_now = match &step {
            Step::StartEviction => {
                c.start_eviction(id).await?;
                let note =
                    format!("evicting {leaders} leaders from store {id} before restarting its pod");
                ctx.event(tikv.as_ref(), EventType::Normal, "EvictingLeaders", note)
                    .await;
                true
            }
            Step::Restart { timed_out } => {
                may_restart = true;
                if *timed_out && suspending {
                    let note = format!(
                        "store {id} stops with {leaders} leaders: the cluster is suspending and no store is left to take them"
                    );
                    ctx.event(
                        tikv.as_ref(),
                        EventType::Normal,
                        "StoppingWithLeaders",
                        note,
                    )
                    .await;
                } else if *timed_out {
                    let note = format!(
                        "store {id} still has {leaders} leaders after {:?}; restarting anyway",
                        facts.timeout
                    );
                    ctx.event(
                        tikv.as_ref(),
                        EventType::Warning,
                        "LeaderEvictionTimeout",
                        note,
                    )
                    .await;
                } else if evicting {
                    ctx.event(
                        tikv.as_ref(),
                        EventType::Normal,
                        "LeadersEvicted",
                        format!("store {id} has no leaders left"),
                    )
                    .await;
                }
                evicting
            }
            Step::EndEviction => {
                c.end_eviction(id).await?;
                ctx.event(
                    tikv.as_ref(),
                    EventType::Normal,
                    "LeaderEvictionEnded",
                    format!("store {id} is back; leaders may return"),
                )
                .await;
                false
            }
            Step::Wait(_) | Step::Nothing => evicting,
        };
        conditions.push(match (&step, evicting_now) {
            (_, false) => NewCondition {
                type_: "LeadersEvicted",
                status: conditions::UNKNOWN,
                reason: "NotEvicting".into(),
                message: String::new(),
            },
            (Step::Wait(WaitReason::DownPeers(stores)), _) => NewCondition::new(
                "LeadersEvicted",
                leaders == 0,
                "WaitingForDownPeers",
                format!(
                    "stores {stores:?} have down peers; restarting this one could lose a quorum"
                ),
            ),
            _ if leaders == 0 => NewCondition::new(
                "LeadersEvicted",
                true,
                "Evicted",
                format!("store {id} has no leaders"),
            ),
            _ => NewCondition::new(
                "LeadersEvicted",
                false,
                "Evicting",
                format!("{leaders} leaders left on store {id}"),
            ),
        });
    }
    // A leaving store keeps its pod: it must stay up for PD to move its regions away.
    let observed = if deleting {
        None
    } else {
        apply_resources(
            tikv.as_ref(),
            &ctx,
            cluster,
            pod,
            None,
            !leaving && may_restart,
        )
        .await?
    };

    if let (Some(c), Some(s)) = (&client, &store) {
        if leaving && s.state != "Tombstone" && s.state != "Offline" {
            match c.remove_store(s.id).await {
                Ok(()) => {
                    let note = format!(
                        "asked PD to remove store {}; its regions move to other stores",
                        s.id
                    );
                    ctx.event(tikv.as_ref(), EventType::Normal, "StoreRemoving", note)
                        .await
                }
                Err(pdclient::Error::Refused { message, .. }) => {
                    ctx.event(
                        tikv.as_ref(),
                        EventType::Warning,
                        "StoreRemovalRefused",
                        message.clone(),
                    )
                    .await;
                    conditions.push(NewCondition::new("Offlined", false, "Refused", message));
                }
                Err(e) => return Err(e.into()),
            }
        } else if !leaving && s.state == "Offline" {
            c.cancel_store_removal(s.id).await?;
            ctx.event(
                tikv.as_ref(),
                EventType::Normal,
                "StoreRemovalCancelled",
                format!("store {} is Up again", s.id),
            )
            .await;
        }
    }
    let removed = store.as_ref().is_none_or(|s| s.state == "Tombstone");
    if leaving && !conditions.iter().any(|c| c.type_ == "Offlined") {
        conditions.push(if removed {
            NewCondition::new("Offlined", true, "Removed", "PD has removed the store")
        } else {
            let regions = store.as_ref().map_or(0, |s| s.region_count);
            NewCondition::new(
                "Offlined",
                false,
                "Removing",
                format!("PD is moving {regions} regions away"),
            )
        });
    }
    if deleting {
        if removed {
            if let (Some(c), Some(s)) = (&client, &store) {
                c.end_eviction(s.id).await?;
            }
            set_finalizer(tikv.as_ref(), &ctx, false).await?;
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    conditions.push(status::store_down(store.as_ref()));
    conditions.push(status::tikv_ready(
        observed.as_ref().and_then(|o| o.pod.as_ref()),
        store.as_ref(),
    ));
    let is_ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    write_status(tikv.as_ref(), &ctx, observed.as_ref(), conditions, |s| {
        s.id = store.as_ref().map(|st| st.id.to_string());
        s.state = store
            .as_ref()
            .and_then(|st| api::v1alpha1::StoreState::from_pd_name(&st.state));
        s.leader_count = store.as_ref().map(|st| st.leader_count);
        s.region_count = store.as_ref().map(|st| st.region_count);
    })
    .await?;
    // While leaders move, look every second: the restart waits on it.
    let secs = if evicting_now || must_restart {
        1
    } else if is_ready && !leaving {
        10
    } else {
        2
    };
    Ok(Action::requeue(Duration::from_secs(secs)))
}

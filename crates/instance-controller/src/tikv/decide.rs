//! The decision of a TiKV store's reconcile, from its facts alone. Pure.
//!
//! - Leaving (`spec.offline`, or deleted): PD removes the store (Offline → Tombstone) while its
//!   pod keeps running; a deleted one keeps its finalizer until then. A refusal (too few stores
//!   would stay Up) is reported, nothing is deleted. Back from offline before Tombstone: the
//!   removal is cancelled.
//! - A restart (new revision, suspend) goes through leader eviction ([`evict::decide`]): PD's
//!   evict-leader scheduler, no leader left (or the timeout), no down peers elsewhere; the entry
//!   is removed once the new pod is ready and the store Up; then the store waits, bounded, for
//!   PD to move its share of leaders back ([`transfer_back::decide`]), and its group holds the
//!   next restart meanwhile (`LeadersTransferredBack=False`).
//! - Status: Ready (pod ready, store Up), LeadersEvicted, Offlined, StoreDown, Synced, store id,
//!   state, leader and region counts. What PD could not be asked about keeps its last value.

use api::conditions::{leaders_evicted, leaders_transferred_back, offlined};
use api::events;
use api::v1alpha1::{RemovalProgress, StoreState, TiKV};
use kube::runtime::controller::Action;
use operator_runtime::conditions::{self, NewCondition};

use super::evict::{self, Step, WaitReason};
use super::facts::{PdView, Store, TikvFacts};
use super::transfer_back::{self, Back};
use crate::context::{RETRY, SOON, TIKV_READY, WATCH_CLOSELY};
use crate::instance::plan;
use crate::instance::plan::Observation;
use crate::instance::{Event, PdOp, PdStep, Plan, Refusal, Sync};
use crate::status;

/// The plan of one TiKV store's reconcile.
pub fn decide(f: &TikvFacts) -> Plan<TiKV> {
    if f.instance.deleting() {
        leave(f)
    } else {
        run(f)
    }
}

/// A deleted store: removed from PD first, then the finalizer goes.
fn leave(f: &TikvFacts) -> Plan<TiKV> {
    let i = &f.instance;
    if let Some(plan) = plan::leave_without_pd(i) {
        return plan;
    }
    let snapshot = match &f.pd {
        // No PD URL: no pod was ever started, so no store can exist.
        PdView::NoUrl => return plan::released(),
        // PD says nothing about the store: it may still hold data.
        PdView::Unreachable(_) => return Plan::wait(Action::requeue(RETRY)),
        PdView::Answered(s) => s,
    };
    let Some(store) = &snapshot.store else {
        return plan::released();
    };
    let (step, offlined) = removal(store);
    let removed = store.state == StoreState::Tombstone;
    let mut events = Vec::new();
    let status = plan::status(i, &[offlined], None, &mut events, |s| {
        fill(s, Some(store), snapshot.removal.as_ref())
    });
    let mut pd: Vec<PdStep> = step.into_iter().collect();
    if removed && snapshot.evicting.contains(&store.id) {
        pd.push(PdStep::quiet(PdOp::EndEviction { store: store.id }));
    }
    Plan {
        pd,
        status: Some(status),
        events,
        ..if removed {
            plan::released()
        } else {
            Plan::wait(Action::requeue(SOON))
        }
    }
}

/// A leaving store's next PD request and its `Offlined` condition.
fn removal(store: &Store) -> (Option<PdStep>, NewCondition) {
    let removing = NewCondition::new(
        offlined::TYPE,
        false,
        offlined::REMOVING,
        format!("PD is moving {} regions away", store.region_count),
    );
    match store.state {
        StoreState::Tombstone => (
            None,
            NewCondition::new(
                offlined::TYPE,
                true,
                offlined::REMOVED,
                "PD has removed the store",
            ),
        ),
        StoreState::Offline => (None, removing),
        _ => {
            let note = format!(
                "Asked PD to remove store {}: its regions move to other stores",
                store.id
            );
            let step = PdStep {
                on_refusal: Some(Refusal {
                    condition: offlined::TYPE,
                    reason: offlined::REFUSED,
                    event: events::STORE_REMOVAL_REFUSED,
                }),
                ..PdStep::new(
                    PdOp::RemoveStore { store: store.id },
                    events::STORE_REMOVING,
                    note,
                )
            };
            (Some(step), removing)
        }
    }
}

/// The status fields PD reports about the store; `removal`: PD's progress in removing it.
fn fill(
    s: &mut api::v1alpha1::TiKVStatus,
    store: Option<&Store>,
    removal: Option<&pdclient::StoreProgress>,
) {
    s.id = store.map(|st| st.id.to_string());
    s.state = store.map(|st| st.state);
    s.leader_count = store.map(|st| st.leader_count);
    s.region_count = store.map(|st| st.region_count);
    s.data_size = store.map(|st| api::quantity::from_mib(st.region_size_mib.max(0) as u64));
    s.removal = store
        .filter(|st| st.state == StoreState::Offline)
        .and(removal)
        .map(removal_progress);
}

/// PD's removal progress as the status shows it: whole percents, and an ETA rounded so that
/// the status (and the group's and Cluster's summaries) change every few seconds at most, not at
/// every reconcile.
pub fn removal_progress(p: &pdclient::StoreProgress) -> RemovalProgress {
    let percent = (p.progress * 100.0).floor().clamp(0.0, 100.0) as i32;
    let eta_seconds = p.eta_seconds().map(|secs| {
        let secs = secs.ceil() as i64;
        let step = match secs {
            ..=60 => 5,
            61..=600 => 10,
            _ => 60,
        };
        (secs + step - 1) / step * step
    });
    RemovalProgress {
        percent,
        eta_seconds,
    }
}

/// A store that stays (or is on its way out through `spec.offline`).
fn run(f: &TikvFacts) -> Plan<TiKV> {
    let i = &f.instance;
    let sync = plan::sync(i, i.pd_url());
    let leaving = i.obj.spec.offline;
    let runs = matches!(sync, Sync::Run(_));
    let store = f.store();
    let mut pd = Vec::new();
    let mut events = Vec::new();
    let mut conditions = Vec::new();
    let mut observe = Vec::new();

    // A restart moves the store's leaders away first (and waits for some to come back after).
    let eviction = f.eviction();
    let mut waiting_back = false;
    let (may_restart, evicting_now) = match &f.pd {
        // Nothing PD could move: no store exists, or the cluster stops without PD anyway.
        PdView::NoUrl => (true, eviction.evicting),
        PdView::Unreachable(_) => (i.suspending(), eviction.evicting),
        PdView::Answered(_) if leaving || !runs => (false, eviction.evicting),
        PdView::Answered(_) => {
            let step = evict::decide(&eviction);
            let (id, leaders) = store.map_or((0, 0), |s| (s.id, s.leader_count));
            let (may, evicting_now) = match &step {
                Step::StartEviction => {
                    let note = if i.pod_terminating() {
                        format!(
                            "The pod of store {id} is being deleted: evicting its {leaders} leaders"
                        )
                    } else {
                        format!(
                            "Evicting {leaders} leaders from store {id} before restarting its pod"
                        )
                    };
                    let op = PdOp::StartEviction { store: id };
                    pd.push(PdStep::new(op, events::EVICTING_LEADERS, note));
                    (false, true)
                }
                Step::Restart { timed_out } => {
                    // A store that stops for the suspend without eviction (nowhere to move its
                    // leaders) is marked too: the others must not wait to move theirs onto it.
                    if i.suspending() && !eviction.evicting && eviction.store_up() {
                        pd.push(PdStep::quiet(PdOp::StartEviction { store: id }));
                    }
                    events.extend(restart_event(
                        id,
                        leaders,
                        *timed_out,
                        eviction.evicting,
                        i.suspending(),
                        &i.obj.spec.restart.leader_eviction_timeout,
                    ));
                    (true, eviction.evicting)
                }
                Step::EndEviction => {
                    let note = format!("Store {id} is back: its leaders may return");
                    let op = PdOp::EndEviction { store: id };
                    pd.push(PdStep::new(op, events::LEADER_EVICTION_ENDED, note));
                    (false, false)
                }
                Step::Wait(_) | Step::Nothing => (false, eviction.evicting),
            };
            let evicted = leaders_evicted_condition(&step, evicting_now, id, leaders);
            observe.extend(eviction_ended(&eviction, &step, &evicted, i.suspending()));
            conditions.push(evicted);
            if let Some((c, event)) = transfer_back_condition(f, &step, id) {
                waiting_back = c.status == conditions::FALSE;
                conditions.push(c);
                events.extend(event);
            }
            (may, evicting_now)
        }
    };

    // Leaving, or back before PD finished: ask PD.
    if let (PdView::Answered(_), false) = (&f.pd, i.paused()) {
        match store {
            Some(s) if leaving => {
                let (step, offlined) = removal(s);
                pd.extend(step);
                conditions.push(offlined);
            }
            Some(s) if s.state == StoreState::Offline => {
                let note = format!("Store {} is Up again", s.id);
                let op = PdOp::CancelRemoval { store: s.id };
                pd.push(PdStep::new(op, events::STORE_REMOVAL_CANCELLED, note));
            }
            _ => {}
        }
    }
    let store_seen = match &f.pd {
        PdView::Answered(_) => Ok(store),
        PdView::Unreachable(e) => Err(e.as_str()),
        PdView::NoUrl => Ok(None),
    };
    if leaving && matches!(store_seen, Ok(None)) {
        conditions.push(NewCondition::new(
            offlined::TYPE,
            true,
            offlined::REMOVED,
            "PD has no store at this address",
        ));
    }
    if let Ok(store) = store_seen {
        conditions.push(status::store_down(store));
    }

    // A leaving store keeps its pod: PD moves its regions away through it.
    let pod = plan::pod_plan(i, &sync, !leaving && may_restart);
    events.extend(pod.events);
    let ready = status::tikv_ready(pod.after.as_ref(), store_seen);
    let is_ready = ready.status == conditions::TRUE;
    conditions.push(ready);
    conditions.push(pod.synced);
    let status = plan::status(i, &conditions, pod.after.as_ref(), &mut events, |s| {
        if let PdView::Answered(snapshot) = &f.pd {
            fill(s, store, snapshot.removal.as_ref());
        }
    });
    let restarting = !leaving && runs && i.restart().is_some();
    let requeue = match (&sync, &f.pd) {
        (
            Sync::Blocked {
                until_changed: true,
                ..
            },
            _,
        ) => Action::await_change(),
        // Stopped for the suspend: only resuming (a Cluster change) brings it back.
        _ if i.suspending() && pod.after.is_none() => Action::await_change(),
        (_, PdView::Unreachable(_)) => Action::requeue(RETRY),
        _ if evicting_now || restarting => Action::requeue(WATCH_CLOSELY),
        _ if waiting_back => Action::requeue(SOON),
        _ if is_ready && !leaving => Action::requeue(TIKV_READY),
        _ => Action::requeue(SOON),
    };
    Plan {
        finalizer: plan::finalizer_for(i.obj),
        pd,
        apply: pod.apply,
        pod: pod.op,
        status: Some(status),
        events,
        observe,
        requeue,
    }
}

/// The eviction that ends in this reconcile, for the metrics: it was under way (the stored
/// `LeadersEvicted` is False) and now no leader is left, or the timeout makes the store restart
/// with leaders (not when a suspend stops it with nowhere to move them).
fn eviction_ended(
    eviction: &evict::Facts,
    step: &Step,
    evicted: &NewCondition,
    suspending: bool,
) -> Option<Observation> {
    let seconds = eviction.evicting_for?.as_secs_f64();
    let timed_out = matches!(step, Step::Restart { timed_out: true }) && !suspending;
    (timed_out || evicted.status == conditions::TRUE)
        .then_some(Observation::LeadersEvicted { seconds, timed_out })
}

/// The Event of a restart after (or without) eviction, if it needs one.
fn restart_event(
    id: u64,
    leaders: i64,
    timed_out: bool,
    evicting: bool,
    suspending: bool,
    timeout: &str,
) -> Option<Event> {
    if timed_out && suspending {
        Some(Event::normal(
            events::STOPPING_WITH_LEADERS,
            format!(
                "Store {id} stops with {leaders} leaders: the cluster is suspending and no store is left to take them"
            ),
        ))
    } else if timed_out {
        Some(Event::warning(
            events::LEADER_EVICTION_TIMEOUT,
            format!("Store {id} still has {leaders} leaders after {timeout}: restarting it anyway"),
        ))
    } else if evicting {
        Some(Event::normal(
            events::LEADERS_EVICTED,
            format!("Store {id} has no leaders left"),
        ))
    } else {
        None
    }
}

/// `LeadersTransferredBack` after `step` (and its Event), when it changes or stays False.
fn transfer_back_condition(
    f: &TikvFacts,
    step: &Step,
    id: u64,
) -> Option<(NewCondition, Option<Event>)> {
    use leaders_transferred_back::{NOT_WAITING, TIMED_OUT, TRANSFERRED_BACK, TYPE, WAITING};
    let back = f.transfer_back();
    let timeout = &f.instance.obj.spec.restart.leader_transfer_back_timeout;
    let not_waiting = |why: &str| Some((NewCondition::new(TYPE, true, NOT_WAITING, why), None));
    let waiting = NewCondition::new(
        TYPE,
        false,
        WAITING,
        format!("store {id} is back: waiting up to {timeout} for PD to move leaders back to it"),
    );
    match step {
        Step::EndEviction if back.timeout.is_zero() => not_waiting("the wait is turned off (0s)"),
        Step::EndEviction => Some((waiting, None)),
        // A new restart supersedes the wait for the last one.
        Step::StartEviction if back.waiting_for.is_some() => {
            not_waiting("the store restarts again")
        }
        Step::Nothing => match transfer_back::decide(&back) {
            Back::Idle => None,
            Back::Off => not_waiting("the wait is turned off (0s)"),
            Back::Waiting { .. } => Some((waiting, None)),
            Back::Done { target } => Some((
                NewCondition::new(
                    TYPE,
                    true,
                    TRANSFERRED_BACK,
                    format!(
                        "store {id} leads {} regions again (wanted {target})",
                        back.leaders
                    ),
                ),
                Some(Event::normal(
                    events::LEADERS_TRANSFERRED_BACK,
                    format!(
                        "Store {id} leads {} regions again: the next store may restart",
                        back.leaders
                    ),
                )),
            )),
            Back::TimedOut { target } => Some((
                NewCondition::new(
                    TYPE,
                    true,
                    TIMED_OUT,
                    format!(
                        "store {id} leads {} of {target} regions after {timeout}",
                        back.leaders
                    ),
                ),
                Some(Event::warning(
                    events::LEADER_TRANSFER_BACK_TIMEOUT,
                    format!(
                        "Store {id} leads {} regions after {timeout}, {target} wanted: the next store restarts anyway",
                        back.leaders
                    ),
                )),
            )),
        },
        _ => None,
    }
}

/// Store ids, comma separated.
fn list(stores: &[u64]) -> String {
    stores
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `LeadersEvicted` after `step`.
fn leaders_evicted_condition(step: &Step, evicting: bool, id: u64, leaders: i64) -> NewCondition {
    match (step, evicting) {
        (_, false) => {
            NewCondition::unknown(leaders_evicted::TYPE, leaders_evicted::NOT_EVICTING, "")
        }
        (Step::Wait(WaitReason::DownPeers(stores)), _) => NewCondition::new(
            leaders_evicted::TYPE,
            leaders == 0,
            leaders_evicted::WAITING_FOR_DOWN_PEERS,
            format!(
                "stores {} have down peers; restarting this one could lose a quorum",
                list(stores)
            ),
        ),
        (Step::Wait(WaitReason::PendingPeers(stores)), _) => NewCondition::new(
            leaders_evicted::TYPE,
            leaders == 0,
            leaders_evicted::WAITING_FOR_PENDING_PEERS,
            format!(
                "stores {} have peers still catching up; restarting this one could leave a \
                 region without a quorum",
                list(stores)
            ),
        ),
        _ if leaders == 0 => NewCondition::new(
            leaders_evicted::TYPE,
            true,
            leaders_evicted::EVICTED,
            format!("store {id} has no leaders"),
        ),
        _ => NewCondition::new(
            leaders_evicted::TYPE,
            false,
            leaders_evicted::EVICTING,
            format!("{leaders} leaders left on store {id}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Every path the end-to-end scenarios take through a store's reconcile, as a table.

    use api::v1alpha1::TiKVStatus;
    use kube::runtime::events::EventType;
    use serde_json::json;

    use super::*;
    use crate::instance::fixtures::{cluster, condition, deleting, facts, pod, tikv};
    use crate::instance::{Facts, Finalizer, PodOp};

    fn store(state: StoreState, leaders: i64) -> Store {
        Store {
            id: 7,
            state,
            leader_count: leaders,
            region_count: 30,
            region_size_mib: 1920,
            zone: Some("a".into()),
        }
    }

    fn other(id: u64, zone: &str) -> Store {
        Store {
            id,
            zone: Some(zone.into()),
            ..store(StoreState::Up, 10)
        }
    }

    /// PD's answer: this store, two others, which are evicting, which have down peers.
    fn answered(this: Option<Store>, evicting: &[u64], down: Option<&[u64]>) -> PdView {
        PdView::Answered(super::super::facts::Snapshot {
            store: this,
            others: vec![other(8, "b"), other(9, "c")],
            evicting: evicting.to_vec(),
            peers: down.map(|d| evict::PeerHealth {
                down: d.to_vec(),
                pending: Vec::new(),
            }),
            removal: None,
        })
    }

    fn with<'a>(i: Facts<'a, TiKV>, pd: PdView) -> TikvFacts<'a> {
        TikvFacts { instance: i, pd }
    }

    /// A store that reported Ready at r1 and is told r2 (`revision`) or stays at r1.
    fn at(revision: &str, status: serde_json::Value) -> TiKV {
        let mut s = json!({"currentRevision": "r1", "id": "7"});
        if let (Some(s), Some(extra)) = (s.as_object_mut(), status.as_object()) {
            s.extend(extra.clone());
        }
        tikv(revision, json!({}), s)
    }

    fn condition_of(plan: &Plan<TiKV>, type_: &str) -> (String, String) {
        let c = conditions::find(&plan.status.as_ref().unwrap().common.conditions, type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.clone(), c.reason.clone())
    }

    fn reasons(plan: &Plan<TiKV>) -> Vec<&'static str> {
        plan.pd
            .iter()
            .filter_map(|s| s.event.as_ref())
            .chain(&plan.events)
            .map(|e| e.reason)
            .collect()
    }

    fn ops(plan: &Plan<TiKV>) -> Vec<PdOp> {
        plan.pd.iter().map(|s| s.op.clone()).collect()
    }

    #[test]
    fn a_ready_store_changes_nothing_and_writes_nothing_twice() {
        let t = at("r1", json!({}));
        let f = with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 12)), &[], None),
        );
        let plan = decide(&f);
        assert_eq!(
            (&plan.pd, &plan.pod, &plan.apply, plan.finalizer),
            (&vec![], &PodOp::Keep, &None, Finalizer::Keep)
        );
        assert_eq!(plan.requeue, Action::requeue(TIKV_READY));
        assert_eq!(
            condition_of(&plan, "Ready"),
            ("True".into(), "StoreUp".into())
        );
        let st = plan.status.clone().unwrap();
        assert_eq!(
            (st.id.as_deref(), st.state, st.leader_count),
            (Some("7"), Some(StoreState::Up), Some(12))
        );
        assert!(plan.events.is_empty());
        // Stored, the same facts give the same status: no write.
        let mut stored = t.clone();
        stored.status = Some(st.clone());
        let again = decide(&with(
            facts(
                &stored,
                Some(cluster(json!({}))),
                Some(pod("t1", "r1", true)),
            ),
            answered(Some(store(StoreState::Up, 12)), &[], None),
        ));
        assert_eq!(again.status, Some(st));
    }

    #[test]
    fn an_outdated_store_evicts_its_leaders_waits_then_restarts() {
        let t = at("r2", json!({}));
        let outdated = || Some(pod("t1", "r1", true));
        let c = || Some(cluster(json!({})));
        // Start: the scheduler, announced.
        let plan = decide(&with(
            facts(&t, c(), outdated()),
            answered(Some(store(StoreState::Up, 12)), &[], None),
        ));
        assert_eq!(ops(&plan), [PdOp::StartEviction { store: 7 }]);
        assert_eq!(reasons(&plan), ["EvictingLeaders"]);
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(
            condition_of(&plan, "LeadersEvicted"),
            ("False".into(), "Evicting".into())
        );
        assert_eq!(plan.requeue, Action::requeue(WATCH_CLOSELY));
        // Wait while leaders remain.
        let plan = decide(&with(
            facts(&t, c(), outdated()),
            answered(Some(store(StoreState::Up, 5)), &[7], None),
        ));
        assert_eq!((ops(&plan), &plan.pod), (vec![], &PodOp::Keep));
        // No leader left, no down peer elsewhere: the pod goes, only this one.
        let plan = decide(&with(
            facts(&t, c(), outdated()),
            answered(Some(store(StoreState::Up, 0)), &[7], Some(&[])),
        ));
        assert_eq!(
            plan.pod,
            PodOp::Delete {
                uid: "pod-t1-r1".into()
            }
        );
        assert_eq!(reasons(&plan), ["LeadersEvicted", "PodDeleted"]);
        assert_eq!(
            plan.events[1].note,
            "Deleted pod t1 to restart it at revision r2: it ran r1"
        );
        assert_eq!(
            condition_of(&plan, "Ready"),
            ("False".into(), "PodNotReady".into())
        );
        // The ConfigMap and PVCs are applied only with the new pod.
        assert!(plan.apply.is_none());
    }

    #[test]
    fn which_stores_have_down_peers_is_asked_only_when_the_restart_is_near() {
        let t = at("r2", json!({}));
        let busy = with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 5)), &[7], None),
        );
        assert!(!evict::restart_near(&busy.eviction()));
        let drained = with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 0)), &[7], None),
        );
        assert!(evict::restart_near(&drained.eviction()));
        // Not asked (or PD failed): no restart.
        assert_eq!(decide(&drained).pod, PodOp::Keep);
    }

    #[test]
    fn down_peers_on_another_store_hold_the_restart_unless_zones_restart_together() {
        let t = at("r2", json!({}));
        let f = |t: &TiKV| {
            decide(&with(
                facts(t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
                answered(Some(store(StoreState::Up, 0)), &[7], Some(&[8])),
            ))
        };
        let plan = f(&t);
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(
            condition_of(&plan, "LeadersEvicted"),
            ("True".into(), "WaitingForDownPeers".into())
        );
        // Store 8 is in zone b; whole zones restart together only when 8 is in this zone.
        let zones = tikv(
            "r2",
            json!({"restart": {"zoneByZone": true}}),
            json!({"currentRevision": "r1"}),
        );
        assert_eq!(f(&zones).pod, PodOp::Keep);
        let same_zone = decide(&with(
            facts(
                &zones,
                Some(cluster(json!({}))),
                Some(pod("t1", "r1", true)),
            ),
            PdView::Answered(super::super::facts::Snapshot {
                store: Some(store(StoreState::Up, 0)),
                others: vec![other(8, "a"), other(9, "c")],
                evicting: vec![7],
                peers: Some(evict::PeerHealth {
                    down: vec![8],
                    pending: Vec::new(),
                }),
                removal: None,
            }),
        ));
        assert!(matches!(same_zone.pod, PodOp::Delete { .. }));
    }

    #[test]
    fn peers_catching_up_on_another_store_hold_the_restart_and_say_so() {
        let t = at("r2", json!({}));
        let mut pd = answered(Some(store(StoreState::Up, 0)), &[7], Some(&[]));
        if let PdView::Answered(s) = &mut pd {
            s.peers = Some(evict::PeerHealth {
                down: Vec::new(),
                pending: vec![9],
            });
        }
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            pd,
        ));
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(
            condition_of(&plan, "LeadersEvicted"),
            ("True".into(), "WaitingForPendingPeers".into())
        );
    }

    #[test]
    fn the_eviction_timeout_restarts_anyway_with_a_warning() {
        let evicting_since =
            |secs| json!({"conditions": [condition("LeadersEvicted", "False", "Evicting", secs)]});
        let t = tikv(
            "r2",
            json!({"restart": {"leaderEvictionTimeout": "10m"}}),
            evicting_since(601),
        );
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 3)), &[7], Some(&[])),
        ));
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
        assert_eq!(plan.events[0].type_, EventType::Warning);
        assert_eq!(
            plan.events[0].note,
            "Store 7 still has 3 leaders after 10m: restarting it anyway"
        );
        assert_eq!(
            plan.observe,
            [Observation::LeadersEvicted {
                seconds: 601.0,
                timed_out: true
            }]
        );
        // Before the timeout: wait, and nothing ended yet.
        let t = tikv("r2", json!({}), evicting_since(30));
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 3)), &[7], Some(&[])),
        ));
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(plan.observe, []);
        // The last leader gone: the eviction took 30 s.
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 0)), &[7], Some(&[])),
        ));
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
        assert_eq!(
            plan.observe,
            [Observation::LeadersEvicted {
                seconds: 30.0,
                timed_out: false
            }]
        );
    }

    #[test]
    fn the_eviction_ends_once_the_new_pod_is_ready_and_the_store_up() {
        let t = at("r2", json!({"currentRevision": "r2"}));
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r2", true))),
            answered(Some(store(StoreState::Up, 0)), &[7], None),
        ));
        assert_eq!(ops(&plan), [PdOp::EndEviction { store: 7 }]);
        assert_eq!(reasons(&plan), ["LeaderEvictionEnded"]);
        // Not yet while the new pod is not ready.
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r2", false))),
            answered(Some(store(StoreState::Up, 0)), &[7], None),
        ));
        assert_eq!(ops(&plan), []);
        // ... but its ConfigMap and PVCs are applied again (they may be why).
        assert!(plan.apply.is_some());
    }

    #[test]
    fn a_pod_deleted_by_someone_else_gets_its_leaders_evicted() {
        let t = at("r1", json!({}));
        let mut terminating = pod("t1", "r1", true);
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(crate::instance::fixtures::now()),
        );
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(terminating)),
            answered(Some(store(StoreState::Up, 12)), &[], None),
        ));
        assert_eq!(ops(&plan), [PdOp::StartEviction { store: 7 }]);
        assert_eq!(reasons(&plan), ["EvictingLeaders"]);
        assert_eq!(plan.requeue, Action::requeue(WATCH_CLOSELY));
    }

    #[test]
    fn after_the_eviction_the_store_waits_for_its_leaders_bounded() {
        let c = || Some(cluster(json!({})));
        let ready = || Some(pod("t1", "r2", true));
        // The eviction ends: the wait begins (the group holds the next restart meanwhile).
        let t = at("r2", json!({"currentRevision": "r2"}));
        let plan = decide(&with(
            facts(&t, c(), ready()),
            answered(Some(store(StoreState::Up, 0)), &[7], None),
        ));
        assert_eq!(
            condition_of(&plan, "LeadersTransferredBack"),
            ("False".into(), "Waiting".into())
        );
        // Waiting: 2 leaders of a fair share of 7 (22 over 3 stores), 4 wanted.
        let waiting = |since: i64| {
            at(
                "r2",
                json!({"currentRevision": "r2", "conditions": [
                    condition("LeadersTransferredBack", "False", "Waiting", since)]}),
            )
        };
        let t = waiting(30);
        let plan = decide(&with(
            facts(&t, c(), ready()),
            answered(Some(store(StoreState::Up, 2)), &[], None),
        ));
        assert_eq!(
            condition_of(&plan, "LeadersTransferredBack"),
            ("False".into(), "Waiting".into())
        );
        assert_eq!(
            (reasons(&plan), plan.requeue),
            (vec![], Action::requeue(SOON))
        );
        // Back to its share: done, said once.
        let plan = decide(&with(
            facts(&t, c(), ready()),
            answered(Some(store(StoreState::Up, 5)), &[], None),
        ));
        assert_eq!(
            condition_of(&plan, "LeadersTransferredBack"),
            ("True".into(), "TransferredBack".into())
        );
        assert_eq!(reasons(&plan), ["LeadersTransferredBack"]);
        // The timeout (default 5m) first: the rollout goes on, with a Warning.
        let t = waiting(301);
        let plan = decide(&with(
            facts(&t, c(), ready()),
            answered(Some(store(StoreState::Up, 2)), &[], None),
        ));
        assert_eq!(
            condition_of(&plan, "LeadersTransferredBack"),
            ("True".into(), "TimedOut".into())
        );
        assert_eq!(plan.events[0].type_, EventType::Warning);
        assert_eq!(reasons(&plan), ["LeaderTransferBackTimeout"]);
        // Turned off (0s): no wait at all.
        let off = tikv(
            "r2",
            json!({"restart": {"leaderTransferBackTimeout": "0s"}}),
            json!({"currentRevision": "r2", "id": "7"}),
        );
        let plan = decide(&with(
            facts(&off, c(), ready()),
            answered(Some(store(StoreState::Up, 0)), &[7], None),
        ));
        assert_eq!(
            condition_of(&plan, "LeadersTransferredBack"),
            ("True".into(), "NotWaiting".into())
        );
    }

    #[test]
    fn pd_unreachable_keeps_the_pod_and_what_was_last_seen() {
        let t = at("r2", json!({"state": "Up", "leaderCount": 4}));
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            PdView::Unreachable("connection refused".into()),
        ));
        assert_eq!((ops(&plan), &plan.pod), (vec![], &PodOp::Keep));
        assert_eq!(
            condition_of(&plan, "Ready"),
            ("False".into(), "PDUnreachable".into())
        );
        let st: &TiKVStatus = plan.status.as_ref().unwrap();
        assert_eq!((st.id.as_deref(), st.leader_count), (Some("7"), Some(4)));
        assert_eq!(plan.requeue, Action::requeue(RETRY));
        // A store being deleted keeps its finalizer.
        let gone = deleting(t.clone());
        let plan = decide(&with(
            facts(&gone, Some(cluster(json!({}))), None),
            PdView::Unreachable("no leader".into()),
        ));
        assert_eq!(plan.finalizer, Finalizer::Keep);
        // Suspending without PD: nothing to evict, the pod stops.
        let plan = decide(&with(
            facts(
                &t,
                Some(cluster(json!({"suspendAction": {"suspendCompute": true}}))),
                Some(pod("t1", "r2", true)),
            ),
            PdView::Unreachable("no leader".into()),
        ));
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
    }

    #[test]
    fn suspending_evicts_while_another_store_can_take_leaders_then_stops() {
        let t = at("r1", json!({}));
        let suspend = || Some(cluster(json!({"suspendAction": {"suspendCompute": true}})));
        let plan = decide(&with(
            facts(&t, suspend(), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 5)), &[], None),
        ));
        assert_eq!(ops(&plan), [PdOp::StartEviction { store: 7 }]);
        // Every other store evicts too: nobody can take the leaders, stop now.
        let plan = decide(&with(
            facts(&t, suspend(), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 5)), &[7, 8, 9], None),
        ));
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
        assert_eq!(reasons(&plan), ["StoppingWithLeaders", "PodDeleted"]);
        // ... marked as evicting, so that the others do not count on it.
        let plan = decide(&with(
            facts(&t, suspend(), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 5)), &[8, 9], None),
        ));
        assert_eq!(ops(&plan), [PdOp::StartEviction { store: 7 }]);
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
        assert_eq!(
            condition_of(&plan, "Synced"),
            ("False".into(), "Suspended".into())
        );
        // Its pod terminating, then gone: Suspended all along, no pod is created, and the
        // eviction entry stays until the store is back.
        let going = deleting(pod("t1", "r1", true));
        let plan = decide(&with(
            facts(&t, suspend(), Some(going)),
            answered(Some(store(StoreState::Up, 0)), &[7], None),
        ));
        assert_eq!(
            condition_of(&plan, "Synced"),
            ("False".into(), "Suspended".into())
        );
        assert_eq!(ops(&plan), []);
        let plan = decide(&with(
            facts(&t, suspend(), None),
            PdView::Unreachable("PD is suspended too".into()),
        ));
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(plan.requeue, Action::await_change());
        assert_eq!(
            condition_of(&plan, "Synced"),
            ("False".into(), "Suspended".into())
        );
    }

    #[test]
    fn an_offline_store_is_removed_by_pd_and_its_pod_kept_until_tombstone() {
        let t = tikv(
            "r2",
            json!({"offline": true}),
            json!({"currentRevision": "r1"}),
        );
        let decide_with = |s: Store| {
            decide(&with(
                facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
                answered(Some(s), &[], None),
            ))
        };
        let plan = decide_with(store(StoreState::Up, 3));
        assert_eq!(ops(&plan), [PdOp::RemoveStore { store: 7 }]);
        assert_eq!(
            plan.pd[0].on_refusal.as_ref().map(|r| r.reason),
            Some("Refused")
        );
        assert_eq!(
            plan.pod,
            PodOp::Keep,
            "outdated, but it drains through this pod"
        );
        assert_eq!(
            condition_of(&plan, "Offlined"),
            ("False".into(), "Removing".into())
        );
        let plan = decide_with(store(StoreState::Offline, 3));
        assert_eq!(ops(&plan), []);
        let plan = decide_with(store(StoreState::Tombstone, 0));
        assert_eq!(
            condition_of(&plan, "Offlined"),
            ("True".into(), "Removed".into())
        );
        // Back before Tombstone: the removal is cancelled.
        let back = at("r1", json!({}));
        let plan = decide(&with(
            facts(&back, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Offline, 3)), &[], None),
        ));
        assert_eq!(ops(&plan), [PdOp::CancelRemoval { store: 7 }]);
    }

    #[test]
    fn a_store_shows_its_data_size_and_while_pd_removes_it_progress_and_eta() {
        let t = tikv(
            "r1",
            json!({"offline": true}),
            json!({"currentRevision": "r1"}),
        );
        let progress = |progress: f64, left_seconds: f64| pdclient::StoreProgress {
            action: "removing".into(),
            store_id: 7,
            progress,
            current_speed: 2.0,
            left_seconds,
        };
        let removing = |p: Option<pdclient::StoreProgress>| {
            let mut view = answered(Some(store(StoreState::Offline, 0)), &[], None);
            if let PdView::Answered(s) = &mut view {
                s.removal = p;
            }
            decide(&with(
                facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
                view,
            ))
            .status
            .unwrap()
        };
        let st = removing(Some(progress(0.456, 131.2)));
        assert_eq!(st.data_size.as_ref().map(|q| q.0.as_str()), Some("1920Mi"));
        assert_eq!(
            st.removal,
            Some(RemovalProgress {
                percent: 45,
                eta_seconds: Some(140)
            })
        );
        // No speed measured yet: PD says f64::MAX seconds, which is no ETA.
        let st = removing(Some(progress(0.0, f64::MAX)));
        assert_eq!(
            st.removal,
            Some(RemovalProgress {
                percent: 0,
                eta_seconds: None
            })
        );
        // PD tracks nothing (yet): no removal shown; an Up store never shows one.
        assert_eq!(removing(None).removal, None);
        let up = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 3)), &[], None),
        ));
        assert_eq!(up.status.unwrap().removal, None);
        // The ETA moves in steps, so the status is not rewritten at every reconcile.
        let eta = |secs| removal_progress(&progress(0.5, secs)).eta_seconds;
        assert_eq!(
            (eta(3.0), eta(61.0), eta(601.0)),
            (Some(5), Some(70), Some(660))
        );
    }

    #[test]
    fn a_deleted_store_keeps_its_finalizer_until_pd_has_removed_it() {
        let t = deleting(at("r1", json!({})));
        let f = |s: Store, evicting: &[u64]| {
            decide(&with(
                facts(&t, Some(cluster(json!({}))), None),
                answered(Some(s), evicting, None),
            ))
        };
        let plan = f(store(StoreState::Up, 3), &[]);
        assert_eq!(ops(&plan), [PdOp::RemoveStore { store: 7 }]);
        assert_eq!(plan.finalizer, Finalizer::Keep);
        assert_eq!(plan.pod, PodOp::Keep);
        let plan = f(store(StoreState::Tombstone, 0), &[7]);
        assert_eq!(ops(&plan), [PdOp::EndEviction { store: 7 }]);
        assert_eq!(plan.finalizer, Finalizer::Remove);
        // Once the Cluster goes, PD no longer matters.
        let plan = decide(&with(facts(&t, None, None), PdView::NoUrl));
        assert_eq!(plan.finalizer, Finalizer::Remove);
    }

    #[test]
    fn a_store_pd_reports_down_says_so_for_failover() {
        let t = at("r1", json!({}));
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Down, 0)), &[], None),
        ));
        assert_eq!(
            condition_of(&plan, "StoreDown"),
            ("True".into(), "Down".into())
        );
        assert_eq!(
            condition_of(&plan, "Ready"),
            ("False".into(), "StoreDown".into())
        );
        // A store that is not Up holds no leaders to move: an outdated one restarts at once.
        let outdated = at("r2", json!({}));
        let plan = decide(&with(
            facts(
                &outdated,
                Some(cluster(json!({}))),
                Some(pod("t1", "r1", false)),
            ),
            answered(Some(store(StoreState::Down, 0)), &[], None),
        ));
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
    }

    #[test]
    fn paused_or_invalid_changes_nothing() {
        let t = at("r2", json!({}));
        let plan = decide(&with(
            facts(
                &t,
                Some(cluster(json!({"paused": true}))),
                Some(pod("t1", "r1", true)),
            ),
            answered(Some(store(StoreState::Up, 12)), &[], None),
        ));
        assert_eq!((ops(&plan), &plan.pod), (vec![], &PodOp::Keep));
        assert_eq!(
            condition_of(&plan, "Synced"),
            ("False".into(), "Paused".into())
        );
        // A config it cannot use: no eviction for a pod that could not be replaced; wait for
        // the user's change, say it once.
        let bad = tikv(
            "r2",
            json!({"config": "[server]\naddr = \"0.0.0.0:1\"\n"}),
            json!({}),
        );
        let plan = decide(&with(
            facts(&bad, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 12)), &[], None),
        ));
        assert_eq!((ops(&plan), &plan.pod), (vec![], &PodOp::Keep));
        assert_eq!(plan.requeue, Action::await_change());
        assert_eq!(reasons(&plan), ["InvalidConfig"]);
        let mut told = bad.clone();
        told.status = plan.status.clone();
        let plan = decide(&with(
            facts(&told, Some(cluster(json!({}))), Some(pod("t1", "r1", true))),
            answered(Some(store(StoreState::Up, 12)), &[], None),
        ));
        assert!(plan.events.is_empty());
    }

    #[test]
    fn a_missing_pod_is_created_after_its_config_and_volumes() {
        let t = at("r1", json!({}));
        let plan = decide(&with(
            facts(&t, Some(cluster(json!({}))), None),
            answered(None, &[], None),
        ));
        assert!(matches!(plan.pod, PodOp::Create(_)));
        let (cm, pvcs) = plan.apply.clone().unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("t1"));
        assert_eq!(pvcs[0].metadata.name.as_deref(), Some("data-t1"));
        assert_eq!(reasons(&plan), ["PodCreated"]);
        assert_eq!(plan.requeue, Action::requeue(SOON));
        // Without a PD URL nothing can start.
        let mut no_pd = cluster(json!({}));
        no_pd.status = None;
        let plan = decide(&with(facts(&t, Some(no_pd), None), PdView::NoUrl));
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(
            condition_of(&plan, "Synced"),
            ("False".into(), "WaitingForPD".into())
        );
    }
}

//! What a group does next, decided from what exists: create, update, take offline, delete.
//! Pure: the reconcile loop observes, calls [`plan`], and applies the actions.

use std::collections::{BTreeMap, BTreeSet};

use api::conditions::ready;
use api::v1alpha1::{PDGroup, ReplicationStatus, WeightedTopology};
use operator_runtime::conditions;

/// What the planner needs to know about one instance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceView {
    /// Object name.
    pub name: String,
    /// Revision of the spec the group last wrote (label `tikv.org/revision`).
    pub revision: Option<String>,
    /// Ready at the revision it was given.
    pub ready: bool,
    /// `spec.offline` (TiKV).
    pub offline: bool,
    /// PD has removed the store (Tombstone): the instance can go.
    pub offlined: bool,
    /// Being deleted.
    pub deleting: bool,
    /// The PD leader (PD): restarted and removed last.
    pub leader: bool,
    /// The user asked for this one to go first on scale-in (annotation).
    pub preferred_victim: bool,
    /// Since when (unix seconds) PD has reported the store Down.
    pub down_since: Option<i64>,
    /// A failover replacement: the name of the instance it stands in for.
    pub replacement_for: Option<String>,
    /// Topology the instance is pinned to.
    pub topology: Option<BTreeMap<String, String>>,
    /// What it is doing or what stops it, in a few words, for the group's summary.
    pub activity: Option<String>,
}

/// Settings of the group relevant to planning.
#[derive(Clone, Debug)]
pub struct GroupView<'a> {
    /// `spec.replicas`.
    pub desired: usize,
    /// Revision of the current template.
    pub update_revision: &'a str,
    /// How many instances may be unavailable because of the rollout.
    pub max_unavailable: usize,
    /// The instances form a quorum (PD members): they restart one at a time, never while another
    /// is restarting or leaving, whatever `max_unavailable` says.
    pub quorum: bool,
    /// Evenly-spread topologies, if any.
    pub topologies: &'a [WeightedTopology],
    /// TiKV: scale in by taking stores offline first (two steps). PD: delete directly.
    pub two_step_scale_in: bool,
    /// Write no new revision into instances yet (TiKV waits for PD's rollout).
    pub hold_updates: bool,
    /// Replace Down stores (TiKV, opt-in).
    pub failover: Option<Failover>,
    /// Restart all outdated instances of one zone together (`ZoneByZone`, found safe).
    pub zone_by_zone: bool,
    /// Now, in unix seconds (for failover periods).
    pub now: i64,
}

/// When Down stores get a replacement.
#[derive(Clone, Copy, Debug)]
pub struct Failover {
    /// Seconds a store must be Down before it is replaced.
    pub period_secs: i64,
    /// Most replacements at once.
    pub max_replacements: usize,
}

/// One step to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Create an instance at the update revision.
    Create {
        /// Name.
        name: String,
        /// Topology to pin it to.
        topology: Option<BTreeMap<String, String>>,
        /// Failover: the Down instance it replaces.
        replacement_for: Option<String>,
    },
    /// Write the update revision's spec into an outdated instance (it restarts).
    Update {
        /// Name.
        name: String,
    },
    /// Take a store offline (true) or cancel that (false).
    SetOffline {
        /// Name.
        name: String,
        /// New value.
        offline: bool,
    },
    /// A failover replacement whose failed store is gone becomes a regular member.
    Adopt {
        /// Name.
        name: String,
    },
    /// Delete the instance object (its finalizer cleans PD first).
    Delete {
        /// Name.
        name: String,
    },
}

/// Decides the next actions. `new_name` gives fresh unique instance names.
pub fn plan(
    group: &GroupView,
    instances: &[InstanceView],
    mut new_name: impl FnMut() -> String,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let live: Vec<&InstanceView> = instances.iter().filter(|i| !i.deleting).collect();

    // Stores PD has finished removing: their objects (pod, PVCs) can go now.
    for i in live.iter().filter(|i| i.offline && i.offlined) {
        actions.push(Action::Delete {
            name: i.name.clone(),
        });
    }
    let mut active: Vec<&InstanceView> = live.iter().copied().filter(|i| !i.offline).collect();
    let failover = failover_plan(group, &active);
    let desired = group.desired + failover.kept + failover.new.len();
    for name in &failover.adopted {
        actions.push(Action::Adopt {
            name: name.to_string(),
        });
    }
    let mut leaving: Vec<&InstanceView> = live
        .iter()
        .copied()
        .filter(|i| i.offline && !i.offlined)
        .collect();

    if active.len() > desired {
        let mut victims = active.clone();
        let order = |i: &InstanceView| {
            let retired = failover.retired.contains(&i.name.as_str());
            (!(i.preferred_victim || retired), i.ready, i.leader)
        };
        victims.sort_by(|a, b| order(a).cmp(&order(b)).then(b.name.cmp(&a.name)));
        for v in victims.into_iter().take(active.len() - desired) {
            actions.push(if group.two_step_scale_in {
                Action::SetOffline {
                    name: v.name.clone(),
                    offline: true,
                }
            } else {
                Action::Delete {
                    name: v.name.clone(),
                }
            });
            active.retain(|a| a.name != v.name);
        }
    } else if active.len() < desired {
        // Cancelling a removal keeps the store's data; prefer it over a new, empty store.
        leaving.sort_by(|a, b| a.name.cmp(&b.name));
        for l in leaving.iter().take(desired - active.len()) {
            actions.push(Action::SetOffline {
                name: l.name.clone(),
                offline: false,
            });
        }
        let mut missing = desired - active.len() - leaving.len().min(desired - active.len());
        // Replacements go where the store they stand in for was.
        for target in failover.new.iter().take(missing) {
            actions.push(Action::Create {
                name: new_name(),
                topology: target.topology.clone(),
                replacement_for: Some(target.name.clone()),
            });
            missing -= 1;
        }
        let mut placed: Vec<Option<BTreeMap<String, String>>> = live
            .iter()
            .filter(|i| !i.offline)
            .map(|i| i.topology.clone())
            .collect();
        for _ in 0..missing {
            let topology = next_topology(group.topologies, &placed);
            placed.push(topology.clone());
            actions.push(Action::Create {
                name: new_name(),
                topology,
                replacement_for: None,
            });
        }
    }

    // Rolling update among the instances that stay.
    if group.hold_updates {
        return actions;
    }
    let outdated: Vec<&&InstanceView> = active
        .iter()
        .filter(|i| i.revision.as_deref() != Some(group.update_revision))
        .collect();
    if group.zone_by_zone {
        // The zone already disrupted (restarting, or down) goes first and alone; never two.
        let busy: BTreeSet<&str> = active
            .iter()
            .filter(|i| !i.ready)
            .filter_map(|i| zone_of(i))
            .collect();
        let target = match busy.len() {
            0 => outdated.iter().filter_map(|i| zone_of(i)).min(),
            1 => busy.first().copied(),
            _ => None,
        };
        for i in outdated
            .iter()
            .filter(|i| target.is_some() && zone_of(i) == target)
        {
            actions.push(Action::Update {
                name: i.name.clone(),
            });
        }
        return actions;
    }
    let mut candidates = outdated;
    candidates.sort_by(|a, b| {
        update_order(a)
            .cmp(&update_order(b))
            .then(a.name.cmp(&b.name))
    });
    if group.quorum {
        // This is the one order of PD restarts: the member's own last check (its quorum, as PD
        // sees health) only ever says "not now". One at a time keeps the others a quorum even
        // when the group's view of readiness lags PD's, so down members go first and the leader
        // last, and nobody while a member restarts (updated, not ready yet) or leaves PD.
        let restarting = active
            .iter()
            .any(|i| !i.ready && i.revision.as_deref() == Some(group.update_revision));
        let leaving = instances.iter().any(|i| i.deleting)
            || actions.iter().any(|a| matches!(a, Action::Delete { .. }));
        if let Some(first) = candidates.first().filter(|_| !restarting && !leaving) {
            actions.push(Action::Update {
                name: first.name.clone(),
            });
        }
        return actions;
    }
    // Instances already down cost no availability to update; the rest share the budget.
    let unavailable = active.iter().filter(|i| !i.ready).count();
    let mut budget = group.max_unavailable.saturating_sub(unavailable);
    for i in candidates {
        if !i.ready {
            actions.push(Action::Update {
                name: i.name.clone(),
            });
        } else if budget > 0 {
            budget -= 1;
            actions.push(Action::Update {
                name: i.name.clone(),
            });
        }
    }
    actions
}

/// Why scaling a TiKV group to `desired` stores must be refused: it would take the last stores
/// of the cluster (`live` here, none wanted by its other TiKV groups) offline, and PD would
/// move their data nowhere. `None`: go ahead. On purpose, a user suspends the Cluster (stops
/// every pod, keeps the data) or deletes it.
pub fn removes_all_stores(desired: usize, live: usize, others_desired: usize) -> Option<String> {
    (desired == 0 && live > 0 && others_desired == 0).then(|| {
        format!(
            "refusing to scale the cluster's last {live} stores to 0: that would remove all of its data; \
             to stop them keeping the data, suspend the Cluster (spec.suspendAction.suspendCompute); \
             to remove the cluster, delete the Cluster"
        )
    })
}

/// Why deleting a PD group must be refused: it is the only PD group of a Cluster that is not
/// being deleted (`other_groups`: the cluster's other PD groups not being deleted). `None`: let
/// it go.
pub fn pd_deletion_refused(cluster_live: bool, other_groups: usize) -> Option<String> {
    (cluster_live && other_groups == 0).then(|| {
        "refusing to delete the only PD group of a live Cluster: PD and its data would go; \
         to stop PD keeping its data, suspend the Cluster (spec.suspendAction.suspendCompute); \
         to remove the cluster, delete the Cluster"
            .to_string()
    })
}

/// Why TiKV must not start rolling out yet under the `Default` upgrade policy: some PD group of
/// the cluster has not finished its own rollout (PD is upgraded before TiKV). `None`: go ahead.
pub fn pd_rollout_pending(pd_groups: &[PDGroup]) -> Option<String> {
    pd_groups.iter().find_map(|g| {
        let s = g.status.as_ref();
        let observed = s.and_then(|s| s.observed_generation) == g.metadata.generation;
        let done = s.is_some_and(|s| {
            conditions::is_true(&s.conditions, ready::TYPE)
                && s.current_revision.is_some()
                && s.current_revision == s.update_revision
        });
        (!observed || !done).then(|| {
            format!(
                "Waiting for PDGroup {} to finish its rollout: PD is upgraded before TiKV",
                g.metadata.name.as_deref().unwrap_or_default()
            )
        })
    })
}

/// Node label of an instance's zone.
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";

fn zone_of(i: &InstanceView) -> Option<&str> {
    i.topology.as_ref()?.get(ZONE_KEY).map(String::as_str)
}

/// Why restarting a whole zone at once could lose a region's quorum; `None` when it cannot:
/// PD isolates replicas by zone (a `zone` location label), every instance is pinned to a zone,
/// and there are at least as many zones as replicas, so no region has two replicas in one zone.
pub fn zone_by_zone_unsafe(
    replication: Option<&ReplicationStatus>,
    instances: &[InstanceView],
) -> Option<String> {
    let Some(r) = replication else {
        return Some("PD's placement settings are not known yet".into());
    };
    if !r.location_labels.iter().any(|l| l == "zone") {
        return Some(format!(
            "PD's location-labels {:?} do not include zone",
            r.location_labels
        ));
    }
    let mut zones = BTreeSet::new();
    for i in instances.iter().filter(|i| !i.deleting && !i.offline) {
        match zone_of(i) {
            Some(z) => zones.insert(z),
            None => {
                return Some(format!(
                    "{} is not pinned to a zone (spread the group over zones in schedulePolicy)",
                    i.name
                ));
            }
        };
    }
    (i64::try_from(zones.len()).unwrap_or(0) < r.max_replicas).then(|| {
        format!(
            "{} zones for {} replicas: a region could have two replicas in one zone",
            zones.len(),
            r.max_replicas
        )
    })
}

/// What failover asks of the group.
#[derive(Debug, Default)]
struct FailoverPlan<'a> {
    /// Replacements whose store is still Down: they stay, on top of `replicas`.
    kept: usize,
    /// Instances Down for longer than the period that need a replacement now.
    new: Vec<&'a InstanceView>,
    /// Replacements no longer needed because their store is back: first to leave.
    retired: Vec<&'a str>,
    /// Replacements whose store no longer exists: they take its place as regular members.
    adopted: Vec<&'a str>,
}

/// Decides replacements: a store Down for longer than the period gets one (at most
/// `max_replacements` at a time); a replacement is retired (two-step) once the store it stands in
/// for is Up again. If that store is removed instead, the replacement simply takes its place:
/// retiring it would only move its data to yet another new store. Replacements are not
/// themselves replaced.
fn failover_plan<'a>(group: &GroupView, active: &[&'a InstanceView]) -> FailoverPlan<'a> {
    let mut plan = FailoverPlan::default();
    let replacements: Vec<&&InstanceView> = active
        .iter()
        .filter(|i| i.replacement_for.is_some())
        .collect();
    for r in &replacements {
        let target = r.replacement_for.as_deref().unwrap_or_default();
        match active.iter().find(|i| i.name == target) {
            Some(t) if t.down_since.is_some() => plan.kept += 1,
            Some(_) => plan.retired.push(&r.name),
            None => plan.adopted.push(&r.name),
        }
    }
    let Some(f) = group.failover else {
        return plan;
    };
    let mut failed: Vec<&'a InstanceView> = active
        .iter()
        .copied()
        .filter(|i| i.replacement_for.is_none())
        .filter(|i| i.down_since.is_some_and(|t| group.now - t >= f.period_secs))
        .filter(|i| {
            !replacements
                .iter()
                .any(|r| r.replacement_for.as_deref() == Some(i.name.as_str()))
        })
        .collect();
    failed.sort_by_key(|i| (i.down_since, i.name.clone()));
    plan.new = failed
        .into_iter()
        .take(f.max_replacements.saturating_sub(plan.kept))
        .collect();
    plan
}

/// Update preference: unhealthy first, PD leader last.
fn update_order(i: &InstanceView) -> (bool, bool) {
    (i.ready, i.leader)
}

/// The topology with the fewest instances relative to its weight (first one on ties).
pub fn next_topology(
    topologies: &[WeightedTopology],
    placed: &[Option<BTreeMap<String, String>>],
) -> Option<BTreeMap<String, String>> {
    topologies
        .iter()
        .enumerate()
        .min_by(|(ia, a), (ib, b)| {
            let count = |t: &WeightedTopology| {
                placed
                    .iter()
                    .filter(|p| p.as_ref() == Some(&t.topology))
                    .count() as i64
            };
            // Compare count_a/weight_a with count_b/weight_b without floating point.
            (count(a) * i64::from(b.weight.max(1)))
                .cmp(&(count(b) * i64::from(a.weight.max(1))))
                .then(ia.cmp(ib))
        })
        .map(|(_, t)| t.topology.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(name: &str, rev: &str, ready: bool) -> InstanceView {
        InstanceView {
            name: name.into(),
            revision: Some(rev.into()),
            ready,
            ..Default::default()
        }
    }

    fn names() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("new-{n}")
        }
    }

    fn group(desired: usize) -> GroupView<'static> {
        GroupView {
            desired,
            update_revision: "r2",
            max_unavailable: 1,
            quorum: false,
            topologies: &[],
            two_step_scale_in: true,
            hold_updates: false,
            failover: None,
            zone_by_zone: false,
            now: 1000,
        }
    }

    fn zone(z: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("topology.kubernetes.io/zone".to_string(), z.to_string())])
    }

    #[test]
    fn creates_missing_instances() {
        let actions = plan(&group(3), &[inst("a", "r2", true)], names());
        assert_eq!(
            actions,
            [
                Action::Create {
                    name: "new-1".into(),
                    topology: None,
                    replacement_for: None
                },
                Action::Create {
                    name: "new-2".into(),
                    topology: None,
                    replacement_for: None
                }
            ]
        );
    }

    #[test]
    fn spreads_new_instances_over_zones_by_weight() {
        let topologies = [
            WeightedTopology {
                topology: zone("a"),
                weight: 1,
            },
            WeightedTopology {
                topology: zone("b"),
                weight: 1,
            },
            WeightedTopology {
                topology: zone("c"),
                weight: 2,
            },
        ];
        let g = GroupView {
            topologies: &topologies,
            ..group(4)
        };
        let existing = InstanceView {
            topology: Some(zone("a")),
            ..inst("x", "r2", true)
        };
        let zones: Vec<_> = plan(&g, &[existing], names())
            .into_iter()
            .map(|a| match a {
                Action::Create { topology, .. } => {
                    topology.unwrap()["topology.kubernetes.io/zone"].clone()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(zones, ["b", "c", "c"]);
    }

    #[test]
    fn two_step_scale_in_takes_unhealthy_first_then_deletes_only_removed_stores() {
        let instances = [
            inst("a", "r2", true),
            inst("b", "r2", false),
            inst("c", "r2", true),
        ];
        assert_eq!(
            plan(&group(2), &instances, names()),
            [Action::SetOffline {
                name: "b".into(),
                offline: true
            }]
        );
        // While PD removes the store nothing else happens.
        let removing = [
            inst("a", "r2", true),
            InstanceView {
                offline: true,
                ..inst("b", "r2", false)
            },
            inst("c", "r2", true),
        ];
        assert_eq!(plan(&group(2), &removing, names()), []);
        // Once it is a tombstone the instance is deleted.
        let removed = [
            inst("a", "r2", true),
            InstanceView {
                offline: true,
                offlined: true,
                ..inst("b", "r2", false)
            },
            inst("c", "r2", true),
        ];
        assert_eq!(
            plan(&group(2), &removed, names()),
            [Action::Delete { name: "b".into() }]
        );
    }

    #[test]
    fn raising_replicas_cancels_a_removal_before_creating() {
        let instances = [
            inst("a", "r2", true),
            InstanceView {
                offline: true,
                ..inst("b", "r2", true)
            },
        ];
        assert_eq!(
            plan(&group(2), &instances, names()),
            [Action::SetOffline {
                name: "b".into(),
                offline: false
            }]
        );
        assert_eq!(
            plan(&group(3), &instances, names()),
            [
                Action::SetOffline {
                    name: "b".into(),
                    offline: false
                },
                Action::Create {
                    name: "new-1".into(),
                    topology: None,
                    replacement_for: None
                }
            ]
        );
    }

    #[test]
    fn pd_scale_in_deletes_followers_before_the_leader() {
        let g = GroupView {
            two_step_scale_in: false,
            ..group(2)
        };
        let instances = [
            InstanceView {
                leader: true,
                ..inst("a", "r2", true)
            },
            inst("b", "r2", true),
            inst("c", "r2", true),
        ];
        assert_eq!(
            plan(&g, &instances, names()),
            [Action::Delete { name: "c".into() }]
        );
    }

    #[test]
    fn rolling_update_respects_max_unavailable_and_leader_last() {
        let leader = InstanceView {
            leader: true,
            ..inst("a", "r1", true)
        };
        let instances = [leader.clone(), inst("b", "r1", true), inst("c", "r1", true)];
        assert_eq!(
            plan(&group(3), &instances, names()),
            [Action::Update { name: "b".into() }]
        );
        // b is restarting (updated, not ready yet): nothing else may go down.
        let mid = [
            leader.clone(),
            inst("b", "r2", false),
            inst("c", "r1", true),
        ];
        assert_eq!(plan(&group(3), &mid, names()), []);
        // Outdated and already down: updating it costs nothing.
        let broken = [
            leader.clone(),
            inst("b", "r2", true),
            inst("c", "r1", false),
        ];
        assert_eq!(
            plan(&group(3), &broken, names()),
            [Action::Update { name: "c".into() }]
        );
        // Leader last.
        let last = [leader, inst("b", "r2", true), inst("c", "r2", true)];
        assert_eq!(
            plan(&group(3), &last, names()),
            [Action::Update { name: "a".into() }]
        );
        // Two at a time when allowed.
        let g = GroupView {
            max_unavailable: 2,
            ..group(3)
        };
        let all_old = [
            inst("a", "r1", true),
            inst("b", "r1", true),
            inst("c", "r1", true),
        ];
        assert_eq!(
            plan(&g, &all_old, names()),
            [
                Action::Update { name: "a".into() },
                Action::Update { name: "b".into() }
            ]
        );
    }

    #[test]
    fn pd_members_restart_one_at_a_time_down_first_leader_last() {
        let g = GroupView {
            quorum: true,
            two_step_scale_in: false,
            max_unavailable: 2,
            ..group(3)
        };
        let leader = InstanceView {
            leader: true,
            ..inst("a", "r1", true)
        };
        let update = |n: &str| vec![Action::Update { name: n.into() }];
        // All ready: one at a time whatever maxUnavailable says, the leader last.
        let all_old = [leader.clone(), inst("b", "r1", true), inst("c", "r1", true)];
        assert_eq!(plan(&g, &all_old, names()), update("b"));
        // b restarts (updated, not ready yet): nobody else.
        let mid = [
            leader.clone(),
            inst("b", "r2", false),
            inst("c", "r1", true),
        ];
        assert_eq!(plan(&g, &mid, names()), []);
        // Two members down: the first goes; the other waits for it to be back.
        let down = [
            leader.clone(),
            inst("b", "r1", false),
            inst("c", "r1", false),
        ];
        assert_eq!(plan(&g, &down, names()), update("b"));
        let one_back = [
            leader.clone(),
            inst("b", "r2", true),
            inst("c", "r1", false),
        ];
        assert_eq!(plan(&g, &one_back, names()), update("c"));
        // A member leaving PD (deleted): nobody restarts meanwhile.
        let leaving = [
            leader.clone(),
            InstanceView {
                deleting: true,
                ..inst("b", "r2", true)
            },
            inst("c", "r1", true),
            inst("d", "r1", true),
        ];
        assert_eq!(plan(&g, &leaving, names()), []);
        // Scaling in and rolling at once: the removal first.
        let four = [
            leader.clone(),
            inst("b", "r1", true),
            inst("c", "r1", true),
            inst("d", "r1", true),
        ];
        assert_eq!(
            plan(&g, &four, names()),
            [Action::Delete { name: "d".into() }]
        );
        // The leader last, once every other member is done.
        let last = [leader, inst("b", "r2", true), inst("c", "r2", true)];
        assert_eq!(plan(&g, &last, names()), update("a"));
    }

    #[test]
    fn held_updates_still_scale() {
        let g = GroupView {
            hold_updates: true,
            ..group(2)
        };
        let actions = plan(&g, &[inst("a", "r1", true)], names());
        assert_eq!(
            actions,
            [Action::Create {
                name: "new-1".into(),
                topology: None,
                replacement_for: None
            }]
        );
    }

    #[test]
    fn tikv_waits_until_every_pd_group_has_rolled_out() {
        use api::v1alpha1::GroupStatus;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let pd = |generation: i64, observed: i64, ready: &str, current: &str| {
            let mut g: PDGroup = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "pd", "generation": generation},
                "spec": {"cluster": {"name": "c"}, "replicas": 3, "template": {"spec": {"version": "v8.5.0",
                    "volumes": [{"name": "data", "mounts": [{"type": "data"}], "storage": "1Gi"}]}}}
            }))
            .unwrap();
            g.status = Some(GroupStatus {
                observed_generation: Some(observed),
                conditions: vec![Condition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    reason: "R".into(),
                    message: String::new(),
                    last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                    observed_generation: None,
                }],
                current_revision: Some(current.into()),
                update_revision: Some("r2".into()),
                ..Default::default()
            });
            g
        };
        assert_eq!(pd_rollout_pending(&[pd(2, 2, "True", "r2")]), None);
        assert_eq!(pd_rollout_pending(&[]), None);
        // Not yet seen by the group controller, still rolling, or not Ready.
        for g in [
            pd(3, 2, "True", "r2"),
            pd(2, 2, "True", "r1"),
            pd(2, 2, "False", "r2"),
        ] {
            let why = pd_rollout_pending(&[g]).unwrap();
            assert!(why.contains("PDGroup pd"), "{why}");
        }
    }

    #[test]
    fn the_last_stores_of_a_cluster_are_never_scaled_to_zero() {
        assert!(removes_all_stores(0, 3, 0).is_some());
        // Another group keeps stores, there is nothing to remove, or some stay.
        assert_eq!(removes_all_stores(0, 3, 3), None);
        assert_eq!(removes_all_stores(0, 0, 0), None);
        assert_eq!(removes_all_stores(1, 3, 0), None);
    }

    #[test]
    fn the_only_pd_group_of_a_live_cluster_is_not_deleted() {
        assert!(pd_deletion_refused(true, 0).is_some());
        assert_eq!(pd_deletion_refused(true, 1), None);
        assert_eq!(pd_deletion_refused(false, 0), None);
    }

    #[test]
    fn scale_in_takes_the_annotated_instance_first() {
        let instances = [
            inst("a", "r2", true),
            InstanceView {
                preferred_victim: true,
                ..inst("b", "r2", true)
            },
            inst("c", "r2", false),
        ];
        assert_eq!(
            plan(&group(2), &instances, names()),
            [Action::SetOffline {
                name: "b".into(),
                offline: true
            }]
        );
    }

    fn with_failover(desired: usize, max: usize) -> GroupView<'static> {
        GroupView {
            failover: Some(Failover {
                period_secs: 60,
                max_replacements: max,
            }),
            ..group(desired)
        }
    }

    fn down(name: &str, since: i64) -> InstanceView {
        InstanceView {
            down_since: Some(since),
            topology: Some(zone("b")),
            ..inst(name, "r2", false)
        }
    }

    #[test]
    fn a_store_down_longer_than_the_period_gets_one_replacement_in_its_zone() {
        let instances = [inst("a", "r2", true), down("b", 1000 - 60), down("c", 990)];
        assert_eq!(
            plan(&with_failover(3, 3), &instances, names()),
            [Action::Create {
                name: "new-1".into(),
                topology: Some(zone("b")),
                replacement_for: Some("b".into()),
            }]
        );
        // Without failover, nothing happens.
        assert_eq!(plan(&group(3), &instances, names()), []);
        // Once it exists, it stays and nothing more is created.
        let r = InstanceView {
            replacement_for: Some("b".into()),
            ..inst("r", "r2", true)
        };
        let with_r = [
            instances[0].clone(),
            instances[1].clone(),
            instances[2].clone(),
            r,
        ];
        assert_eq!(plan(&with_failover(3, 3), &with_r, names()), []);
    }

    #[test]
    fn replacements_are_bounded() {
        let instances = [down("a", 0), down("b", 0), down("c", 0)];
        let actions = plan(&with_failover(3, 2), &instances, names());
        let created: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Create {
                    replacement_for, ..
                } => replacement_for.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(created, ["a", "b"]);
    }

    #[test]
    fn a_replacement_retires_when_its_store_is_back_or_gone() {
        let r = InstanceView {
            replacement_for: Some("b".into()),
            ..inst("r", "r2", true)
        };
        let back = [
            inst("a", "r2", true),
            inst("b", "r2", true),
            inst("c", "r2", true),
            r.clone(),
        ];
        let retire = [Action::SetOffline {
            name: "r".into(),
            offline: true,
        }];
        assert_eq!(plan(&with_failover(3, 3), &back, names()), retire);
        // Even with failover turned off since.
        assert_eq!(plan(&group(3), &back, names()), retire);
        // The failed one was removed: the replacement takes its place, no data moves.
        let gone = [inst("a", "r2", true), inst("c", "r2", true), r];
        assert_eq!(
            plan(&with_failover(3, 3), &gone, names()),
            [Action::Adopt { name: "r".into() }]
        );
    }

    fn in_zone(name: &str, rev: &str, ready: bool, z: &str) -> InstanceView {
        InstanceView {
            topology: Some(zone(z)),
            ..inst(name, rev, ready)
        }
    }

    #[test]
    fn zone_by_zone_updates_one_whole_zone_and_never_two() {
        let g = GroupView {
            zone_by_zone: true,
            ..group(6)
        };
        let all_old: Vec<InstanceView> = ["a", "b", "c"]
            .iter()
            .flat_map(|z| {
                [
                    in_zone(&format!("{z}1"), "r1", true, z),
                    in_zone(&format!("{z}2"), "r1", true, z),
                ]
            })
            .collect();
        let update = |names: &[&str]| -> Vec<Action> {
            names
                .iter()
                .map(|n| Action::Update {
                    name: n.to_string(),
                })
                .collect()
        };
        assert_eq!(plan(&g, &all_old, names()), update(&["a1", "a2"]));
        // Zone a is restarting: nothing else starts, even where it could.
        let mut busy = all_old.clone();
        busy[0] = in_zone("a1", "r2", false, "a");
        assert_eq!(plan(&g, &busy, names()), update(&["a2"]));
        // A store down in zone c makes c the zone to update first.
        let mut down_c = all_old.clone();
        down_c[4].ready = false;
        assert_eq!(plan(&g, &down_c, names()), update(&["c1", "c2"]));
        // Two zones disrupted: wait.
        let mut two = busy.clone();
        two[4].ready = false;
        assert_eq!(plan(&g, &two, names()), []);
    }

    #[test]
    fn zone_by_zone_needs_pd_isolation_by_zone() {
        let r = |labels: &[&str], replicas: i64| ReplicationStatus {
            max_replicas: replicas,
            location_labels: labels.iter().map(|l| l.to_string()).collect(),
            isolation_level: String::new(),
        };
        let three = [
            in_zone("x", "r", true, "a"),
            in_zone("y", "r", true, "b"),
            in_zone("z", "r", true, "c"),
        ];
        assert_eq!(
            zone_by_zone_unsafe(Some(&r(&["zone", "host"], 3)), &three),
            None
        );
        for (rep, inst) in [
            (None, &three[..]),
            (Some(r(&["host"], 3)), &three[..]),
            (Some(r(&["zone"], 3)), &three[..2]),
        ] {
            assert!(zone_by_zone_unsafe(rep.as_ref(), inst).is_some());
        }
        let unpinned = [three[0].clone(), inst("w", "r", true)];
        let why = zone_by_zone_unsafe(Some(&r(&["zone"], 1)), &unpinned).unwrap();
        assert!(why.contains("w is not pinned"), "{why}");
    }
}

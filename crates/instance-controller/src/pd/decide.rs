//! The decision of a PD member's reconcile, from its facts alone. Pure.
//!
//! - Leaving (deleted): removed from PD once that keeps a quorum, after handing over leadership;
//!   then the finalizer goes.
//! - A restart (new revision, suspend) waits for its last safety check: the others keep a quorum
//!   ([`quorum::decide`]), leadership has moved away; when the cluster suspends, every TiKV has
//!   stopped first (they need PD to move their leaders). Which member restarts next is the
//!   group's decision, not this one's.
//! - Status: Ready (pod ready, PD reports the member healthy), RestartSafe, Synced, member id,
//!   leadership, health.

use api::conditions::restart_safe;
use api::events;
use api::v1alpha1::PD;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use operator_runtime::conditions::{self, NewCondition};

use super::facts::{PdFacts, pd_url};
use super::quorum::{self, Change, Step};
use crate::context::{PD_READY, RETRY, SOON, WATCH_CLOSELY};
use crate::instance::plan;
use crate::instance::{Event, PdOp, PdStep, Plan, Restart, Sync};

/// The plan of one PD member's reconcile.
pub fn decide(f: &PdFacts) -> Plan<PD> {
    if f.instance.deleting() {
        leave(f)
    } else {
        run(f)
    }
}

/// A deleted member leaves PD, keeping its quorum.
fn leave(f: &PdFacts) -> Plan<PD> {
    let i = &f.instance;
    if let Some(plan) = plan::leave_without_pd(i) {
        return plan;
    }
    let name = i.obj.name_any();
    let members = match &f.members {
        Some(Ok(m)) => m,
        // The member may still be in PD: wait until PD can say.
        _ => return Plan::wait(Action::requeue(RETRY)),
    };
    match quorum::decide(&name, members, Change::Remove) {
        Step::Proceed => Plan {
            pd: f
                .me()
                .map(|_| {
                    let note = format!("Removed member {name} from PD");
                    let op = PdOp::RemoveMember { name: name.clone() };
                    PdStep::new(op, events::MEMBER_REMOVED, note)
                })
                .into_iter()
                .collect(),
            ..plan::released()
        },
        Step::TransferLeader { to } => Plan {
            pd: vec![transfer(&name, to, "before it leaves PD")],
            ..Plan::wait(Action::requeue(WATCH_CLOSELY))
        },
        Step::Wait(why) => Plan {
            events: vec![Event::warning(events::MEMBER_REMOVAL_BLOCKED, why)],
            ..Plan::wait(Action::requeue(RETRY))
        },
    }
}

fn transfer(from: &str, to: String, why: &str) -> PdStep {
    let note = format!("Handing PD leadership from {from} to {to} {why}");
    PdStep::new(
        PdOp::TransferLeader { to },
        events::TRANSFERRING_LEADER,
        note,
    )
}

/// A member that stays: its pod, its restart, its status.
fn run(f: &PdFacts) -> Plan<PD> {
    let i = &f.instance;
    let sync = plan::sync(i, Some(&pd_url(i)));
    let mut pd = Vec::new();
    let mut events = Vec::new();
    let mut conditions = Vec::new();

    // The pending restart's last check; nothing restarts while the instance cannot run.
    let restart = i.restart().filter(|_| matches!(sync, Sync::Run(_)));
    let safety = restart_safety(f, restart.as_ref(), &mut pd, &mut events);
    let may_restart = safety.status == conditions::TRUE;
    conditions.push(safety);

    let pod = plan::pod_plan(i, &sync, may_restart);
    events.extend(pod.events);
    // What PD says about the member counts while it has a pod.
    let member = match &f.members {
        Some(Ok(_)) => Ok(f.me().filter(|_| pod.after.is_some())),
        Some(Err(e)) => Err(e.as_str()),
        None => Ok(None),
    };
    let ready = crate::status::pd_ready(pod.after.as_ref(), member);
    let is_ready = ready.status == conditions::TRUE;
    conditions.push(ready);
    conditions.push(pod.synced);
    let status = plan::status(i, &conditions, pod.after.as_ref(), &mut events, |s| {
        // Unknown while PD cannot be asked: keep what was last seen.
        if let Ok(m) = member {
            s.id = m.map(|m| m.id.to_string());
            s.is_leader = m.is_some_and(|m| m.leader);
            s.health = m.is_some_and(|m| m.healthy);
        }
    });
    let requeue = match &sync {
        Sync::Blocked {
            until_changed: true,
            ..
        } => Action::await_change(),
        // Stopped for the suspend: only resuming (a Cluster change) brings it back.
        _ if i.suspending() && pod.after.is_none() => Action::await_change(),
        _ if restart.is_some() => Action::requeue(WATCH_CLOSELY),
        _ if is_ready => Action::requeue(PD_READY),
        _ => Action::requeue(SOON),
    };
    Plan {
        finalizer: plan::finalizer_for(i.obj),
        pd,
        apply: pod.apply,
        pod: pod.op,
        status: Some(status),
        events,
        observe: Vec::new(),
        requeue,
    }
}

/// `RestartSafe`: whether the pending `restart` may happen now (True), with what must happen
/// first (a leadership transfer) or be said (a blocked restart, once).
fn restart_safety(
    f: &PdFacts,
    restart: Option<&Restart>,
    pd: &mut Vec<PdStep>,
    events: &mut Vec<Event>,
) -> NewCondition {
    let i = &f.instance;
    let name = i.obj.name_any();
    let safe =
        |ok, reason, message: String| NewCondition::new(restart_safe::TYPE, ok, reason, message);
    match restart {
        None => NewCondition::unknown(restart_safe::TYPE, restart_safe::NO_RESTART_PENDING, ""),
        // The whole cluster stops, so no quorum can be kept; PD goes last: TiKV stores need it
        // to move their leaders away, and none may be about to start again.
        Some(Restart::Suspend) => match f.tikv {
            Some(t) if t.pods == 0 && t.unsuspended == 0 => safe(
                true,
                restart_safe::SUSPENDING,
                "every TiKV pod of the cluster is gone".into(),
            ),
            t => safe(
                false,
                restart_safe::WAITING_FOR_TIKV,
                format!(
                    "{} TiKV pods of the cluster still run",
                    t.unwrap_or_default().pods
                ),
            ),
        },
        Some(Restart::Outdated { .. }) => match &f.members {
            Some(Ok(members)) => match quorum::decide(&name, members, Change::Restart) {
                Step::Proceed => safe(true, restart_safe::QUORUM_KEPT, String::new()),
                Step::TransferLeader { to } => {
                    let message = format!("handing PD leadership to {to} before the restart");
                    pd.push(transfer(&name, to, "before restarting it"));
                    safe(false, restart_safe::TRANSFERRING_LEADER, message)
                }
                Step::Wait(why) => {
                    if !conditions::has_reason(
                        i.conditions(),
                        restart_safe::TYPE,
                        restart_safe::WOULD_LOSE_QUORUM,
                    ) {
                        events.push(Event::warning(events::RESTART_BLOCKED, why.clone()));
                    }
                    safe(false, restart_safe::WOULD_LOSE_QUORUM, why)
                }
            },
            // PD cannot say whether the others keep a quorum: a ready member waits, one whose
            // pod is not ready is down already and restarting it costs nothing.
            _ if crate::status::pod_ready(i.pod.as_ref()) => safe(
                false,
                restart_safe::PD_UNREACHABLE,
                "PD cannot say whether the other members keep a quorum".into(),
            ),
            _ => safe(
                true,
                restart_safe::MEMBER_DOWN,
                "PD cannot answer and this member is not ready".into(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    //! Every path the end-to-end scenarios take through a PD member's reconcile, as a table.

    use kube::runtime::events::EventType;
    use serde_json::json;

    use super::super::facts::{Member, TikvStopping};
    use super::*;
    use crate::instance::fixtures::{cluster, condition, deleting, facts, pd, pod};
    use crate::instance::{Finalizer, PodOp};

    fn m(name: &str, leader: bool, healthy: bool) -> Member {
        Member {
            name: name.into(),
            id: u64::from(name.as_bytes()[3]),
            leader,
            healthy,
            client_urls: vec![format!("http://{name}:2379")],
        }
    }

    /// pd-a, pd-b (this one) and pd-c.
    fn members(b_leads: bool, c_healthy: bool) -> Vec<Member> {
        vec![
            m("pd-a", !b_leads, true),
            m("pd-b", b_leads, true),
            m("pd-c", false, c_healthy),
        ]
    }

    /// `p` with its pod running r1 (ready or not), PD answering `ms`.
    fn pod_at_r1(p: &PD, ready: bool, ms: Result<Vec<Member>, &str>) -> Plan<PD> {
        decide(&PdFacts {
            instance: facts(p, Some(cluster(json!({}))), Some(pod("pd-b", "r1", ready))),
            members: Some(ms.map_err(String::from)),
            tikv: None,
        })
    }

    fn ops(plan: &Plan<PD>) -> Vec<&PdOp> {
        plan.pd.iter().map(|s| &s.op).collect()
    }

    fn restart_safe(plan: &Plan<PD>) -> (String, String) {
        let c = conditions::find(
            &plan.status.as_ref().unwrap().common.conditions,
            restart_safe::TYPE,
        )
        .unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_ready_member_reports_what_pd_says_and_looks_again_soon() {
        let p = pd("r1", json!({"currentRevision": "r1"}));
        let plan = pod_at_r1(&p, true, Ok(members(true, true)));
        assert_eq!(
            (&plan.pd, &plan.pod, &plan.apply),
            (&vec![], &PodOp::Keep, &None)
        );
        let st = plan.status.clone().unwrap();
        assert_eq!(
            (st.id.as_deref(), st.is_leader, st.health),
            (Some("98"), true, true)
        );
        assert_eq!(
            restart_safe(&plan),
            ("Unknown".into(), "NoRestartPending".into())
        );
        assert_eq!(plan.requeue, Action::requeue(PD_READY));
        // Stored, the same facts give the same status: no write.
        let mut stored = p.clone();
        stored.status = Some(st.clone());
        let again = pod_at_r1(&stored, true, Ok(members(true, true)));
        assert_eq!(again.status, Some(st));
    }

    #[test]
    fn an_outdated_leader_hands_over_leadership_first() {
        let p = pd("r2", json!({}));
        let plan = pod_at_r1(&p, true, Ok(members(true, true)));
        assert_eq!(ops(&plan), [&PdOp::TransferLeader { to: "pd-a".into() }]);
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(
            restart_safe(&plan),
            ("False".into(), "TransferringLeader".into())
        );
        assert_eq!(plan.requeue, Action::requeue(WATCH_CLOSELY));
        // A follower whose peers keep a quorum restarts.
        let plan = pod_at_r1(&p, true, Ok(members(false, true)));
        assert_eq!(
            plan.pod,
            PodOp::Delete {
                uid: "pod-pd-b-r1".into()
            }
        );
        assert_eq!(restart_safe(&plan), ("True".into(), "QuorumKept".into()));
    }

    #[test]
    fn a_restart_that_would_lose_the_quorum_waits_and_says_so_once() {
        let p = pd("r2", json!({}));
        let plan = pod_at_r1(&p, true, Ok(members(false, false)));
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(
            restart_safe(&plan),
            ("False".into(), "WouldLoseQuorum".into())
        );
        assert_eq!(plan.events.len(), 1);
        assert_eq!(
            (plan.events[0].type_, plan.events[0].reason),
            (EventType::Warning, "RestartBlocked")
        );
        let told = pd(
            "r2",
            json!({"conditions": [condition("RestartSafe", "False", "WouldLoseQuorum", 10)]}),
        );
        let plan = pod_at_r1(&told, true, Ok(members(false, false)));
        assert!(plan.events.is_empty());
    }

    #[test]
    fn without_pd_a_ready_member_waits_and_a_down_one_restarts() {
        let p = pd("r2", json!({"id": "98", "isLeader": true}));
        let plan = pod_at_r1(&p, true, Err("no leader"));
        assert_eq!(plan.pod, PodOp::Keep);
        assert_eq!(
            restart_safe(&plan),
            ("False".into(), "PDUnreachable".into())
        );
        let st = plan.status.as_ref().unwrap();
        assert_eq!((st.id.as_deref(), st.is_leader), (Some("98"), true), "kept");
        let plan = pod_at_r1(&p, false, Err("no leader"));
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
        assert_eq!(restart_safe(&plan), ("True".into(), "MemberDown".into()));
    }

    #[test]
    fn suspending_pd_stops_after_every_tikv() {
        let p = pd("r1", json!({}));
        let suspended = json!({"suspendAction": {"suspendCompute": true}});
        let with_tikv = |tikv: TikvStopping| {
            decide(&PdFacts {
                instance: facts(
                    &p,
                    Some(cluster(suspended.clone())),
                    Some(pod("pd-b", "r1", true)),
                ),
                members: Some(Ok(members(true, true))),
                tikv: Some(tikv),
            })
        };
        let plan = with_tikv(TikvStopping {
            pods: 2,
            unsuspended: 2,
        });
        assert_eq!((&plan.pd, &plan.pod), (&vec![], &PodOp::Keep));
        assert_eq!(
            restart_safe(&plan),
            ("False".into(), "WaitingForTiKV".into())
        );
        // Pods gone, but one store has not seen the suspension: it could start a pod again.
        let plan = with_tikv(TikvStopping {
            pods: 0,
            unsuspended: 1,
        });
        assert_eq!(plan.pod, PodOp::Keep);
        // All stopped: the leader too, without a handover (the whole cluster stops).
        let plan = with_tikv(TikvStopping::default());
        assert!(matches!(plan.pod, PodOp::Delete { .. }));
        assert!(plan.pd.is_empty());
        // Stopped: it waits for the resume, without polling PD.
        assert_eq!(plan.requeue, Action::await_change());
    }

    #[test]
    fn a_deleted_member_leaves_pd_keeping_its_quorum() {
        let p = deleting(pd("r1", json!({})));
        let leave = |ms: Vec<Member>| {
            decide(&PdFacts {
                instance: facts(&p, Some(cluster(json!({}))), None),
                members: Some(Ok(ms)),
                tikv: None,
            })
        };
        let plan = leave(members(false, true));
        assert_eq!(
            ops(&plan),
            [&PdOp::RemoveMember {
                name: "pd-b".into()
            }]
        );
        assert_eq!(plan.finalizer, Finalizer::Remove);
        // The leader hands over first.
        let plan = leave(members(true, true));
        assert_eq!(ops(&plan), [&PdOp::TransferLeader { to: "pd-a".into() }]);
        assert_eq!(plan.finalizer, Finalizer::Keep);
        // Not while the rest would have no quorum.
        let plan = leave(members(false, false));
        assert!(plan.pd.is_empty());
        assert_eq!(plan.finalizer, Finalizer::Keep);
        assert_eq!(plan.events[0].reason, "MemberRemovalBlocked");
        // No longer a member: nothing to remove.
        let plan = leave(vec![m("pd-a", true, true), m("pd-c", false, true)]);
        assert!(plan.pd.is_empty());
        assert_eq!(plan.finalizer, Finalizer::Remove);
        // PD cannot say: wait.
        let plan = decide(&PdFacts {
            instance: facts(&p, Some(cluster(json!({}))), None),
            members: Some(Err("no leader".into())),
            tikv: None,
        });
        assert_eq!(plan.finalizer, Finalizer::Keep);
        // The cluster is gone: PD no longer matters.
        let plan = decide(&PdFacts {
            instance: facts(&p, None, None),
            members: None,
            tikv: None,
        });
        assert_eq!(plan.finalizer, Finalizer::Remove);
    }
}

//! When a PD member may be restarted or removed: never when the members left running would be
//! fewer than a quorum, and never while it leads (leadership is handed to a healthy member
//! first, so clients see one short leader change instead of an election timeout). Pure.

use crate::status::MemberInfo as Member;

/// What is about to happen to the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Its pod is deleted and comes back (upgrade, config change, suspend).
    Restart,
    /// It leaves PD for good (scale-in).
    Remove,
}

/// The next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Safe: go ahead.
    Proceed,
    /// It leads: transfer leadership to `to` first.
    TransferLeader {
        /// A healthy member to take over.
        to: String,
    },
    /// Not now; the reason is for a condition.
    Wait(String),
}

/// Majority of `n` voters.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Decides whether `me` may undergo `change` given all members as PD reports them.
///
/// With fewer than three members no restart can keep a quorum, so it proceeds (such a PD is not
/// highly available anyway, and refusing would block every upgrade forever).
pub fn decide(me: &str, members: &[Member], change: Change) -> Step {
    let Some(this) = members.iter().find(|m| m.name == me) else {
        // Not (or no longer) a member: nothing in PD depends on it.
        return Step::Proceed;
    };
    let n = members.len();
    let mut others: Vec<&Member> = members
        .iter()
        .filter(|m| m.name != me && m.healthy)
        .collect();
    others.sort_by(|a, b| a.name.cmp(&b.name));
    let healthy_others = others.len();
    if n >= 3 {
        let safe = match change {
            // An unhealthy member is already down: restarting it costs nothing.
            Change::Restart => !this.healthy || healthy_others >= quorum(n),
            // The removal commits in the current configuration; the rest must then have one.
            Change::Remove => {
                healthy_others + usize::from(this.healthy) >= quorum(n)
                    && healthy_others >= quorum(n - 1)
            }
        };
        if !safe {
            return Step::Wait(format!(
                "only {healthy_others} of the other {} PD members are healthy; {} {me} now would lose PD's quorum",
                n - 1,
                match change {
                    Change::Restart => "restarting",
                    Change::Remove => "removing",
                }
            ));
        }
    }
    if this.leader && n > 1 {
        return match others.first() {
            Some(to) => Step::TransferLeader {
                to: to.name.clone(),
            },
            None => Step::Wait(format!(
                "{me} leads PD and no other member is healthy to take over"
            )),
        };
    }
    Step::Proceed
}

/// Another member of the cluster that is due to restart (its pod is outdated, missing or
/// terminating) or is leaving PD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Member (and object) name.
    pub name: String,
    /// PD reports it healthy.
    pub healthy: bool,
    /// Its object is being deleted: it leaves PD.
    pub leaving: bool,
}

/// The member that must restart before `me`, if any. Each member's reconciler decides on its own,
/// so two could both find the others healthy and restart together; restarts therefore go one at
/// a time in an order every reconciler computes alike: members that are down or leaving first,
/// then by name. A `me` that is down itself never waits: restarting it costs nothing.
pub fn restart_turn(me: &str, me_healthy: bool, others: &[Due]) -> Option<String> {
    if !me_healthy {
        return None;
    }
    let mut ahead: Vec<&Due> = others
        .iter()
        .filter(|o| o.name != me && (o.leaving || !o.healthy || o.name.as_str() < me))
        .collect();
    ahead.sort_by(|a, b| {
        (a.healthy && !a.leaving, &a.name).cmp(&(b.healthy && !b.leaving, &b.name))
    });
    ahead.first().map(|o| o.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(name: &str, healthy: bool, leaving: bool) -> Due {
        Due {
            name: name.into(),
            healthy,
            leaving,
        }
    }

    #[test]
    fn members_due_to_restart_go_one_at_a_time_in_one_order() {
        // Two healthy members due at once: each reconciler picks the same one.
        let both = [due("a", true, false), due("b", true, false)];
        assert_eq!(restart_turn("a", true, &both), None);
        assert_eq!(restart_turn("b", true, &both), Some("a".into()));
        // Down or leaving members go before healthy ones, whatever their names.
        assert_eq!(
            restart_turn("a", true, &[due("z", false, false)]),
            Some("z".into())
        );
        assert_eq!(
            restart_turn("a", true, &[due("y", true, true), due("z", false, false)]),
            Some("y".into())
        );
        // A member that is down itself goes at once.
        assert_eq!(restart_turn("b", false, &both), None);
        assert_eq!(restart_turn("a", true, &[]), None);
    }

    fn m(name: &str, healthy: bool, leader: bool) -> Member {
        Member {
            name: name.into(),
            id: 0,
            healthy,
            leader,
        }
    }

    #[test]
    fn a_follower_restarts_when_the_others_keep_a_quorum() {
        let ms = [m("a", true, true), m("b", true, false), m("c", true, false)];
        assert_eq!(decide("b", &ms, Change::Restart), Step::Proceed);
    }

    #[test]
    fn the_leader_hands_over_first_to_a_healthy_member() {
        let ms = [
            m("a", true, true),
            m("b", false, false),
            m("c", true, false),
        ];
        assert_eq!(
            decide("a", &ms, Change::Restart),
            Step::Wait(
                "only 1 of the other 2 PD members are healthy; restarting a now would lose PD's quorum"
                    .into()
            )
        );
        let ms = [m("a", true, true), m("b", true, false), m("c", true, false)];
        assert_eq!(
            decide("a", &ms, Change::Restart),
            Step::TransferLeader { to: "b".into() }
        );
    }

    #[test]
    fn never_restarts_a_healthy_member_when_another_is_down() {
        let ms = [
            m("a", true, true),
            m("b", false, false),
            m("c", true, false),
        ];
        assert!(matches!(decide("c", &ms, Change::Restart), Step::Wait(_)));
        // The unhealthy one itself may restart: it is down already.
        assert_eq!(decide("b", &ms, Change::Restart), Step::Proceed);
        // Five members tolerate one more down.
        let ms = [
            m("a", true, true),
            m("b", false, false),
            m("c", true, false),
            m("d", true, false),
            m("e", true, false),
        ];
        assert_eq!(decide("c", &ms, Change::Restart), Step::Proceed);
    }

    #[test]
    fn removal_needs_a_quorum_now_and_after() {
        // 3 -> 2 with one of the others down: the two left would have one healthy member.
        let ms = [
            m("a", true, true),
            m("b", false, false),
            m("c", true, false),
        ];
        assert!(matches!(decide("c", &ms, Change::Remove), Step::Wait(_)));
        // Removing the down one is fine: the two left are healthy.
        assert_eq!(decide("b", &ms, Change::Remove), Step::Proceed);
        // 4 -> 3, all healthy, the leader goes: it hands over first.
        let ms = [
            m("a", true, true),
            m("b", true, false),
            m("c", true, false),
            m("d", true, false),
        ];
        assert_eq!(
            decide("a", &ms, Change::Remove),
            Step::TransferLeader { to: "b".into() }
        );
    }

    #[test]
    fn small_or_foreign_cases() {
        assert_eq!(
            decide("a", &[m("a", true, true)], Change::Restart),
            Step::Proceed
        );
        let two = [m("a", true, true), m("b", true, false)];
        assert_eq!(
            decide("a", &two, Change::Restart),
            Step::TransferLeader { to: "b".into() }
        );
        assert_eq!(decide("x", &two, Change::Remove), Step::Proceed);
    }
}

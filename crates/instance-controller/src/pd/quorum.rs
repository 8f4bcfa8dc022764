//! The last check before a PD member restarts or leaves: never when the members left running
//! would be fewer than a quorum, and never while it leads (leadership is handed to a healthy
//! member first, so clients see one short leader change instead of an election timeout). Which
//! member restarts next is the group's decision; this only says whether now is safe. Pure.

use super::facts::Member;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, healthy: bool, leader: bool) -> Member {
        Member {
            name: name.into(),
            healthy,
            leader,
            ..Default::default()
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

//! When a TiKV pod may be restarted: only after PD has moved its region leaders away (the
//! evict-leader scheduler), or the eviction timeout (`spec.restart`, from its group) has passed,
//! and never while another store has down peers or peers still catching up (a restart then
//! could leave regions without a quorum that has their latest writes). A pod someone else deletes (`kubectl delete pod`, a drain) gets the scheduler too,
//! so PD moves leaders off the stopping store rather than onto it. Pure.

use std::time::Duration;

use api::v1alpha1::StoreState;

use super::facts::Store;

/// What to do about a TiKV pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the pod is current and no eviction is left behind.
    Nothing,
    /// Add the store to PD's evict-leader scheduler.
    StartEviction,
    /// Wait: leaders remain, or other stores have down peers.
    Wait(WaitReason),
    /// Delete the pod now; `timed_out` when leaders were still there.
    Restart {
        /// The eviction timeout passed with leaders left.
        timed_out: bool,
    },
    /// The restarted store is back and Ready: remove its evict-leader entry.
    EndEviction,
}

/// Why a restart waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitReason {
    /// Leaders left on the store.
    Leaders(i64),
    /// Stores (other than this one) with down peers.
    DownPeers(Vec<u64>),
    /// Stores (other than this one) with pending peers: replicas that have not caught up with
    /// their leader (a new replica, or a restarted store still receiving snapshots).
    PendingPeers(Vec<u64>),
    /// Which stores have down or pending peers is not known yet (ask PD, see [`restart_near`]).
    PeersUnknown,
}

/// Stores holding peers PD reports unhealthy, each list sorted and without repeats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerHealth {
    /// Stores with a peer PD reports down (its leader has not heard from it).
    pub down: Vec<u64>,
    /// Stores with a pending peer (behind its leader's log).
    pub pending: Vec<u64>,
}

impl PeerHealth {
    /// Without the stores `skip` says may restart alongside this one.
    pub fn without(&self, skip: impl Fn(u64) -> bool) -> PeerHealth {
        let keep = |ids: &[u64]| ids.iter().copied().filter(|id| !skip(*id)).collect();
        PeerHealth {
            down: keep(&self.down),
            pending: keep(&self.pending),
        }
    }
}

/// Inputs of the decision.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The pod runs an outdated revision, or must go (suspend).
    pub must_restart: bool,
    /// The store as PD reports it.
    pub store: Option<&'a Store>,
    /// The store is in PD's evict-leader list.
    pub evicting: bool,
    /// How long the eviction has been going on.
    pub evicting_for: Option<Duration>,
    /// `spec.restart.leaderEvictionTimeout`.
    pub timeout: Duration,
    /// Stores with down or pending peers that could cost a region its quorum if this one
    /// restarts too (not its own, nor its zone's when whole zones restart); `None`: PD was not
    /// asked.
    pub peers: Option<PeerHealth>,
    /// The pod is Ready at the instance's revision.
    pub pod_current_and_ready: bool,
    /// The pod is terminating (whoever deleted it).
    pub pod_terminating: bool,
    /// The restart is the cluster suspending: every store stops, so other stores' down peers
    /// are expected, not a reason to wait.
    pub suspending: bool,
    /// Up stores other than this one that are not evicting: where leaders could go.
    pub other_targets: usize,
}

impl Facts<'_> {
    /// PD reports the store Up.
    pub fn store_up(&self) -> bool {
        self.store.is_some_and(|s| s.state == StoreState::Up)
    }
}

/// Whether the restart is near enough that other stores' down peers decide it: PD must be asked
/// for them (an expensive question, so only then).
pub fn restart_near(f: &Facts) -> bool {
    decide(f) == Step::Wait(WaitReason::PeersUnknown)
}

/// Decides the next step.
pub fn decide(f: &Facts) -> Step {
    let up = f.store.filter(|_| f.store_up());
    if !f.must_restart {
        return if f.evicting && f.pod_current_and_ready && up.is_some() {
            Step::EndEviction
        } else if f.pod_terminating && !f.evicting && up.is_some() {
            // Deleted by someone else: the store hands its leaders over on SIGTERM; PD must
            // neither leave leaders on it nor move any back until its new pod is Ready.
            Step::StartEviction
        } else {
            Step::Nothing
        };
    }
    // A store that is not serving holds no leaders to move; waiting would only delay recovery.
    let Some(store) = up else {
        return Step::Restart { timed_out: false };
    };
    // Suspending with no store left to take the leaders: the cluster stops; nothing to wait for.
    if f.suspending && f.other_targets == 0 {
        return Step::Restart {
            timed_out: store.leader_count > 0,
        };
    }
    if !f.evicting {
        return Step::StartEviction;
    }
    let timed_out = f.evicting_for.is_some_and(|d| d >= f.timeout);
    if store.leader_count > 0 && !timed_out {
        return Step::Wait(WaitReason::Leaders(store.leader_count));
    }
    // Suspending: every store stops, so other stores' down peers are expected.
    if !f.suspending {
        let Some(peers) = &f.peers else {
            return Step::Wait(WaitReason::PeersUnknown);
        };
        let others = peers.without(|id| id == store.id);
        if !others.down.is_empty() {
            return Step::Wait(WaitReason::DownPeers(others.down));
        }
        if !others.pending.is_empty() {
            return Step::Wait(WaitReason::PendingPeers(others.pending));
        }
    }
    Step::Restart {
        timed_out: store.leader_count > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(leaders: i64, state: StoreState) -> Store {
        Store {
            id: 7,
            state,
            leader_count: leaders,
            region_count: 30,
            region_size_mib: 1920,
            zone: None,
        }
    }

    fn facts<'a>(s: Option<&'a Store>, evicting: bool, down: &[u64]) -> Facts<'a> {
        Facts {
            must_restart: true,
            store: s,
            evicting,
            evicting_for: Some(Duration::from_secs(5)),
            timeout: Duration::from_secs(600),
            peers: Some(PeerHealth {
                down: down.to_vec(),
                pending: Vec::new(),
            }),
            suspending: false,
            other_targets: 2,
            pod_current_and_ready: false,
            pod_terminating: false,
        }
    }

    #[test]
    fn evicts_then_waits_for_zero_leaders_then_restarts() {
        let busy = store(12, StoreState::Up);
        assert_eq!(decide(&facts(Some(&busy), false, &[])), Step::StartEviction);
        assert_eq!(
            decide(&facts(Some(&busy), true, &[])),
            Step::Wait(WaitReason::Leaders(12))
        );
        let drained = store(0, StoreState::Up);
        assert_eq!(
            decide(&facts(Some(&drained), true, &[])),
            Step::Restart { timed_out: false }
        );
        // Even with zero leaders, the scheduler is added first so no leader moves back in.
        assert_eq!(
            decide(&facts(Some(&drained), false, &[])),
            Step::StartEviction
        );
    }

    #[test]
    fn timeout_restarts_anyway_and_says_so() {
        let busy = store(3, StoreState::Up);
        let f = Facts {
            evicting_for: Some(Duration::from_secs(601)),
            ..facts(Some(&busy), true, &[])
        };
        assert_eq!(decide(&f), Step::Restart { timed_out: true });
    }

    #[test]
    fn never_restarts_while_another_store_has_down_peers() {
        let drained = store(0, StoreState::Up);
        assert_eq!(
            decide(&facts(Some(&drained), true, &[3, 7])),
            Step::Wait(WaitReason::DownPeers(vec![3]))
        );
        // Its own down peers (it is the one restarting) do not block it.
        assert_eq!(
            decide(&facts(Some(&drained), true, &[7])),
            Step::Restart { timed_out: false }
        );
        // Not known yet: PD is asked first, and only then.
        let unknown = Facts {
            peers: None,
            ..facts(Some(&drained), true, &[])
        };
        assert_eq!(decide(&unknown), Step::Wait(WaitReason::PeersUnknown));
        assert!(restart_near(&unknown));
        let busy = store(12, StoreState::Up);
        assert!(!restart_near(&Facts {
            peers: None,
            ..facts(Some(&busy), true, &[])
        }));
    }

    #[test]
    fn never_restarts_while_another_store_has_peers_catching_up() {
        let drained = store(0, StoreState::Up);
        let with_pending = |pending: &[u64]| Facts {
            peers: Some(PeerHealth {
                down: Vec::new(),
                pending: pending.to_vec(),
            }),
            ..facts(Some(&drained), true, &[])
        };
        assert_eq!(
            decide(&with_pending(&[4, 7])),
            Step::Wait(WaitReason::PendingPeers(vec![4]))
        );
        // Its own pending peers catch up after its restart as well as before.
        assert_eq!(
            decide(&with_pending(&[7])),
            Step::Restart { timed_out: false }
        );
        // Down peers are named first: they are the graver reason.
        let both = Facts {
            peers: Some(PeerHealth {
                down: vec![3],
                pending: vec![4],
            }),
            ..facts(Some(&drained), true, &[])
        };
        assert_eq!(decide(&both), Step::Wait(WaitReason::DownPeers(vec![3])));
        // Suspending: every store stops anyway.
        assert_eq!(
            decide(&Facts {
                suspending: true,
                ..with_pending(&[4])
            }),
            Step::Restart { timed_out: false }
        );
    }

    #[test]
    fn a_store_that_is_not_up_restarts_at_once() {
        let down = store(5, StoreState::Down);
        assert_eq!(
            decide(&facts(Some(&down), false, &[])),
            Step::Restart { timed_out: false }
        );
        assert_eq!(
            decide(&facts(None, false, &[])),
            Step::Restart { timed_out: false }
        );
    }

    #[test]
    fn eviction_ends_once_the_new_pod_is_ready_and_the_store_up() {
        let back = store(0, StoreState::Up);
        let f = Facts {
            must_restart: false,
            pod_current_and_ready: true,
            ..facts(Some(&back), true, &[])
        };
        assert_eq!(decide(&f), Step::EndEviction);
        let f = Facts {
            pod_current_and_ready: false,
            ..f
        };
        assert_eq!(decide(&f), Step::Nothing);
    }

    #[test]
    fn a_pod_deleted_by_someone_else_evicts_until_the_new_one_is_ready() {
        let s = store(12, StoreState::Up);
        let deleted = Facts {
            must_restart: false,
            pod_terminating: true,
            ..facts(Some(&s), false, &[])
        };
        assert_eq!(decide(&deleted), Step::StartEviction);
        // Once in place, nothing more until the new pod is Ready; then it ends as for a restart.
        assert_eq!(
            decide(&Facts {
                evicting: true,
                ..deleted.clone()
            }),
            Step::Nothing
        );
        // A store that is not serving has nothing to move.
        let down = store(12, StoreState::Down);
        assert_eq!(
            decide(&Facts {
                store: Some(&down),
                ..deleted
            }),
            Step::Nothing
        );
    }

    #[test]
    fn suspending_evicts_while_some_store_can_take_leaders_then_stops() {
        let s = store(5, StoreState::Up);
        let down = [8];
        let f = Facts {
            suspending: true,
            ..facts(Some(&s), false, &down)
        };
        assert_eq!(decide(&f), Step::StartEviction);
        // Other stores' down peers are the suspend itself, not a reason to wait.
        let s0 = store(0, StoreState::Up);
        let f = Facts {
            suspending: true,
            ..facts(Some(&s0), true, &down)
        };
        assert_eq!(decide(&f), Step::Restart { timed_out: false });
        // The last store has nowhere to move its leaders.
        let f = Facts {
            suspending: true,
            other_targets: 0,
            ..facts(Some(&s), true, &[])
        };
        assert_eq!(decide(&f), Step::Restart { timed_out: true });
    }
}

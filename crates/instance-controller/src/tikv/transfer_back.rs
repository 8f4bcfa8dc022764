//! After a restart: wait, bounded by `spec.restart.leaderTransferBackTimeout`, until PD has moved
//! leaders back to the store, so that the next store restarts with this one carrying its share
//! of the load (tidb-operator v1's `WaitLeaderTransferBackTimeout`; tiup measured the drop in
//! throughput during a rolling restart falling from 17–22 % to 6–8 % with it). Pure.
//!
//! The target is two thirds of the store's fair share of leaders (all leaders over the Up stores
//! that may hold them), as v1 uses two thirds of the store's count before the restart: a fair
//! share also works when that count was skewed (right after bootstrap one store leads everything)
//! and PD would never move that many back.

use std::time::Duration;

/// Inputs of the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// How long the store has been waiting (its `LeadersTransferredBack` condition False);
    /// `None`: it is not waiting.
    pub waiting_for: Option<Duration>,
    /// Leaders on the store now.
    pub leaders: i64,
    /// Leaders of the cluster over the Up stores that may hold them (this one included).
    pub fair_share: i64,
    /// `spec.restart.leaderTransferBackTimeout`.
    pub timeout: Duration,
}

/// Where the wait stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Back {
    /// Not waiting.
    Idle,
    /// Waiting, but the wait has been turned off since (`0s`).
    Off,
    /// Waiting for `target` leaders.
    Waiting {
        /// Leaders the store must hold.
        target: i64,
    },
    /// The store holds `target` leaders or more.
    Done {
        /// Leaders it needed.
        target: i64,
    },
    /// The timeout passed first.
    TimedOut {
        /// Leaders it needed.
        target: i64,
    },
}

/// Leaders a store must hold again: two thirds of its fair share.
pub fn target(fair_share: i64) -> i64 {
    fair_share * 2 / 3
}

/// Decides where the wait stands.
pub fn decide(f: &Facts) -> Back {
    let Some(waited) = f.waiting_for else {
        return Back::Idle;
    };
    if f.timeout.is_zero() {
        return Back::Off;
    }
    let target = target(f.fair_share);
    if f.leaders >= target {
        Back::Done { target }
    } else if waited >= f.timeout {
        Back::TimedOut { target }
    } else {
        Back::Waiting { target }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(waited: Option<u64>, leaders: i64, fair_share: i64) -> Facts {
        Facts {
            waiting_for: waited.map(Duration::from_secs),
            leaders,
            fair_share,
            timeout: Duration::from_secs(300),
        }
    }

    #[test]
    fn waits_for_two_thirds_of_the_fair_share_within_the_timeout() {
        assert_eq!(decide(&facts(None, 0, 16)), Back::Idle);
        assert_eq!(decide(&facts(Some(3), 0, 16)), Back::Waiting { target: 10 });
        assert_eq!(decide(&facts(Some(3), 9, 16)), Back::Waiting { target: 10 });
        assert_eq!(decide(&facts(Some(4), 10, 16)), Back::Done { target: 10 });
        assert_eq!(
            decide(&facts(Some(300), 2, 16)),
            Back::TimedOut { target: 10 }
        );
        // Nothing to lead (or one region between three stores): nothing to wait for.
        assert_eq!(decide(&facts(Some(0), 0, 1)), Back::Done { target: 0 });
        // Turned off while waiting: no timeout Event for a wait nobody wants.
        let off = Facts {
            timeout: Duration::ZERO,
            ..facts(Some(3), 0, 16)
        };
        assert_eq!(decide(&off), Back::Off);
    }
}

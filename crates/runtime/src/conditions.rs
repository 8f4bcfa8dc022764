//! Pure condition merging: a condition keeps its `lastTransitionTime` until its status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub use api::conditions::{FALSE, TRUE, UNKNOWN};

/// A condition as a controller computes it, before merging with what is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition {
    /// Type, e.g. `Ready`.
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl NewCondition {
    /// A condition of `type_` that is `True` when `ok`.
    pub fn new(
        type_: &'static str,
        ok: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: if ok { TRUE } else { FALSE },
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A condition of `type_` whose status is `Unknown`.
    pub fn unknown(
        type_: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: UNKNOWN,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merges freshly computed conditions into the stored ones. The transition time changes only when
/// the status changes; types not in `new` are kept as they are.
pub fn merge(
    old: &[Condition],
    new: &[NewCondition],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = old
        .iter()
        .filter(|c| !new.iter().any(|n| n.type_ == c.type_))
        .cloned()
        .collect();
    for n in new {
        let previous = old.iter().find(|c| c.type_ == n.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == n.status => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: n.type_.to_string(),
            status: n.status.to_string(),
            reason: n.reason.clone(),
            message: n.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Whether the condition of `type_` is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// Whether the condition of `type_` has `reason` (so an Event for that reason was already sent).
pub fn has_reason(conditions: &[Condition], type_: &str, reason: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.reason == reason)
}

/// The condition of `type_`.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = merge(
            &[],
            &[NewCondition::new(
                "Ready",
                false,
                "Starting",
                "pod starting",
            )],
            Some(1),
            t(10),
        );
        assert_eq!(first[0].last_transition_time, t(10));
        // Same status, new message: time kept, message and generation updated.
        let second = merge(
            &first,
            &[NewCondition::new("Ready", false, "Waiting", "store not up")],
            Some(2),
            t(20),
        );
        assert_eq!(second[0].last_transition_time, t(10));
        assert_eq!(second[0].reason, "Waiting");
        assert_eq!(second[0].observed_generation, Some(2));
        // Status flips: time moves.
        let third = merge(
            &second,
            &[NewCondition::new("Ready", true, "Ready", "")],
            Some(2),
            t(30),
        );
        assert_eq!(third[0].last_transition_time, t(30));
        assert!(is_true(&third, "Ready"));
    }

    #[test]
    fn other_types_are_kept_and_output_is_sorted() {
        let old = merge(
            &[],
            &[NewCondition::new("Synced", true, "Synced", "")],
            None,
            t(1),
        );
        let merged = merge(
            &old,
            &[NewCondition::new("Available", true, "Up", "")],
            None,
            t(2),
        );
        let types: Vec<_> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Available", "Synced"]);
        assert_eq!(find(&merged, "Synced").unwrap().last_transition_time, t(1));
        assert!(!is_true(&merged, "Ready"));
    }
}

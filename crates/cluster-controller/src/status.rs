//! Pure computation of the Cluster status from its groups.

use api::conditions::{available, paused, progressing, ready, suspended, tls_client};
use api::v1alpha1::{ClusterStatus, ComponentStatus, GroupStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use operator_runtime::conditions::{self, NewCondition};

/// One group as the cluster sees it.
#[derive(Clone, Debug)]
pub struct GroupSummary<'a> {
    /// `PD` or `TiKV`.
    pub kind: &'static str,
    /// The group's name.
    pub name: &'a str,
    /// Desired replicas.
    pub desired: i32,
    /// Its status.
    pub status: Option<&'a GroupStatus>,
}

/// Inputs besides the groups.
#[derive(Clone, Debug, Default)]
pub struct ClusterFacts {
    /// PD client URL, once a PD group exists.
    pub pd_url: Option<String>,
    /// PD cluster id, once PD answers.
    pub id: Option<u64>,
    /// `spec.paused`.
    pub paused: bool,
    /// `spec.suspendAction.suspendCompute`.
    pub suspend_compute: bool,
    /// PD's placement settings, when PD answered.
    pub replication: Option<api::v1alpha1::ReplicationStatus>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// With TLS on: whether the operator's client certificate can be used (or why not).
    pub tls_client: Option<Result<(), String>>,
}

/// Computes the status; `old` keeps transition times and the id once learned.
pub fn compute(
    old: Option<&ClusterStatus>,
    groups: &[GroupSummary],
    facts: &ClusterFacts,
    now: Time,
) -> ClusterStatus {
    let old_conditions = old.map(|o| o.conditions.clone()).unwrap_or_default();
    let mut components = Vec::new();
    for kind in ["PD", "TiKV"] {
        let of_kind: Vec<_> = groups.iter().filter(|g| g.kind == kind).collect();
        if !of_kind.is_empty() {
            components.push(ComponentStatus {
                kind: kind.to_string(),
                replicas: of_kind.iter().map(|g| g.desired).sum(),
                ready_replicas: of_kind
                    .iter()
                    .map(|g| g.status.map_or(0, |s| s.ready_replicas))
                    .sum(),
            });
        }
    }
    let group_true = |g: &GroupSummary, t: &str| {
        g.status
            .is_some_and(|s| conditions::is_true(&s.conditions, t))
    };
    let pd = components.iter().find(|c| c.kind == "PD");
    // PD serves while a majority of its members do.
    let quorum = pd.is_some_and(|p| p.replicas > 0 && p.ready_replicas * 2 > p.replicas);
    let id = facts
        .id
        .map(|i| i.to_string())
        .or_else(|| old.and_then(|o| o.id.clone()));
    let available = quorum && id.is_some();
    let all_ready = !groups.is_empty() && groups.iter().all(|g| group_true(g, ready::TYPE));
    let progressing = groups.iter().any(|g| group_true(g, progressing::TYPE));
    let all_down = groups
        .iter()
        .all(|g| g.status.is_none_or(|s| s.ready_replicas == 0));
    // Why PD cannot serve the cluster; empty when it can.
    let no_pd = if available {
        ""
    } else if pd.is_none() {
        "no PDGroup refers to this cluster"
    } else if id.is_none() {
        "PD has not answered yet"
    } else {
        "fewer than a majority of PD members are ready"
    };
    let new = [
        NewCondition::new(
            available::TYPE,
            available,
            if available {
                available::PD_QUORUM
            } else {
                available::NO_PD_QUORUM
            },
            no_pd,
        ),
        NewCondition::new(
            ready::TYPE,
            all_ready && available,
            if all_ready && available {
                ready::ALL_READY
            } else {
                ready::NOT_ALL_READY
            },
            "",
        ),
        NewCondition::new(
            progressing::TYPE,
            progressing,
            if progressing {
                progressing::GROUPS_PROGRESSING
            } else {
                progressing::STABLE
            },
            "",
        ),
        NewCondition::new(
            paused::TYPE,
            facts.paused,
            if facts.paused {
                paused::PAUSED
            } else {
                paused::NOT_PAUSED
            },
            "",
        ),
        NewCondition::new(
            suspended::TYPE,
            facts.suspend_compute && all_down,
            if !facts.suspend_compute {
                suspended::NOT_SUSPENDED
            } else if all_down {
                suspended::SUSPENDED
            } else {
                suspended::SUSPENDING
            },
            "",
        ),
    ];
    let tls = facts.tls_client.as_ref().map(|r| match r {
        Ok(()) => NewCondition::new(tls_client::TYPE, true, tls_client::VALID, ""),
        Err(m) => NewCondition::new(
            tls_client::TYPE,
            false,
            tls_client::INVALID_TLS_SECRET,
            m.clone(),
        ),
    });
    let new: Vec<NewCondition> = new.into_iter().chain(tls).collect();
    let summary = summary(groups, facts, all_down, no_pd);
    ClusterStatus {
        observed_generation: facts.generation,
        conditions: conditions::merge(&old_conditions, &new, facts.generation, now),
        pd: facts.pd_url.clone(),
        id,
        components,
        replication: facts
            .replication
            .clone()
            .or_else(|| old.and_then(|o| o.replication.clone())),
        summary: Some(summary),
    }
}

/// The Cluster's one line: paused or suspended first, then what each group that is not simply
/// ready is doing (its own summary, named when the Cluster has several groups of its kind), else
/// that everything is ready. `no_pd`: why PD cannot serve yet, empty when it can.
fn summary(groups: &[GroupSummary], facts: &ClusterFacts, all_down: bool, no_pd: &str) -> String {
    if facts.paused {
        return "paused".to_string();
    }
    if facts.suspend_compute {
        let running: i32 = groups
            .iter()
            .map(|g| g.status.map_or(0, |s| s.ready_replicas))
            .sum();
        return if all_down {
            "suspended".to_string()
        } else {
            format!("suspending: {running} instances still running")
        };
    }
    let mut busy = Vec::new();
    let mut ready = Vec::new();
    for g in groups {
        let same_kind = groups.iter().filter(|o| o.kind == g.kind).count();
        let status = g.status;
        let line = status
            .and_then(|s| s.summary.clone())
            .unwrap_or_else(|| format!("{} {} starting", g.kind, g.name));
        let settled = status.is_some_and(|s| {
            conditions::is_true(&s.conditions, ready::TYPE)
                && !conditions::is_true(&s.conditions, progressing::TYPE)
        });
        let line = if same_kind > 1 {
            format!("{}: {line}", g.name)
        } else {
            line
        };
        if settled {
            ready.push(line);
        } else {
            busy.push(line);
        }
    }
    if !busy.is_empty() {
        return busy.join("; ");
    }
    if !no_pd.is_empty() {
        return format!("waiting for PD: {no_pd}");
    }
    format!("ready: {}", ready.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn gs(ready: i32, ready_cond: bool) -> GroupStatus {
        let c = [
            NewCondition::new("Ready", ready_cond, "x", ""),
            NewCondition::new("Progressing", !ready_cond, "x", ""),
        ];
        GroupStatus {
            ready_replicas: ready,
            conditions: conditions::merge(&[], &c, None, now()),
            ..Default::default()
        }
    }

    fn now() -> Time {
        Time(Timestamp::from_second(5).unwrap())
    }

    #[test]
    fn available_with_pd_quorum_ready_when_every_group_is() {
        let (pd, tikv) = (gs(2, false), gs(3, true));
        let groups = [
            GroupSummary {
                kind: "PD",
                name: "basic-pd",
                desired: 3,
                status: Some(&pd),
            },
            GroupSummary {
                kind: "TiKV",
                name: "basic-tikv",
                desired: 3,
                status: Some(&tikv),
            },
        ];
        let facts = ClusterFacts {
            pd_url: Some("http://p:2379".into()),
            id: Some(42),
            ..Default::default()
        };
        let s = compute(None, &groups, &facts, now());
        assert!(conditions::is_true(&s.conditions, "Available"));
        assert!(!conditions::is_true(&s.conditions, "Ready"));
        assert!(conditions::is_true(&s.conditions, "Progressing"));
        assert_eq!(s.id.as_deref(), Some("42"));
        assert_eq!(
            s.components[0],
            ComponentStatus {
                kind: "PD".into(),
                replicas: 3,
                ready_replicas: 2
            }
        );
        let pd = gs(3, true);
        let groups = [
            GroupSummary {
                kind: "PD",
                name: "basic-pd",
                desired: 3,
                status: Some(&pd),
            },
            GroupSummary {
                kind: "TiKV",
                name: "basic-tikv",
                desired: 3,
                status: Some(&tikv),
            },
        ];
        let s = compute(
            Some(&s),
            &groups,
            &ClusterFacts { id: None, ..facts },
            now(),
        );
        assert!(conditions::is_true(&s.conditions, "Ready"));
        assert_eq!(
            s.id.as_deref(),
            Some("42"),
            "a learned id is kept while PD does not answer"
        );
    }

    fn with_summary(ready: i32, ready_cond: bool, summary: &str) -> GroupStatus {
        GroupStatus {
            summary: Some(summary.into()),
            ..gs(ready, ready_cond)
        }
    }

    #[test]
    fn the_summary_says_what_is_going_on_in_one_line() {
        let facts = ClusterFacts {
            pd_url: Some("http://p:2379".into()),
            id: Some(42),
            ..Default::default()
        };
        let summary = |groups: &[GroupSummary], facts: &ClusterFacts| {
            compute(None, groups, facts, now()).summary.unwrap()
        };
        let pd = with_summary(3, true, "PD 3/3 ready");
        let tikv = with_summary(
            6,
            false,
            "rolling TiKV 2/6: evicting leaders from store 5 (3 left)",
        );
        let g = |kind, name, status| GroupSummary {
            kind,
            name,
            desired: 3,
            status: Some(status),
        };
        let groups = [g("PD", "basic-pd", &pd), g("TiKV", "basic-tikv", &tikv)];
        assert_eq!(
            summary(&groups, &facts),
            "rolling TiKV 2/6: evicting leaders from store 5 (3 left)"
        );
        let tikv_ready = with_summary(3, true, "TiKV 3/3 ready");
        let groups = [
            g("PD", "basic-pd", &pd),
            g("TiKV", "basic-tikv", &tikv_ready),
        ];
        assert_eq!(
            summary(&groups, &facts),
            "ready: PD 3/3 ready, TiKV 3/3 ready"
        );
        // Two groups of one kind: each is named.
        let hot = with_summary(2, false, "scaling out TiKV 2/3");
        let groups = [
            g("PD", "basic-pd", &pd),
            g("TiKV", "basic-tikv", &tikv_ready),
            g("TiKV", "hot-tikv", &hot),
        ];
        assert_eq!(summary(&groups, &facts), "hot-tikv: scaling out TiKV 2/3");
        // Ready groups, but PD cannot serve.
        let groups = [
            g("PD", "basic-pd", &pd),
            g("TiKV", "basic-tikv", &tikv_ready),
        ];
        let no_id = ClusterFacts {
            id: None,
            ..facts.clone()
        };
        assert_eq!(
            summary(&groups, &no_id),
            "waiting for PD: PD has not answered yet"
        );
        assert_eq!(
            summary(&[], &facts),
            "waiting for PD: no PDGroup refers to this cluster"
        );
        // Paused and suspended come first.
        let paused = ClusterFacts {
            paused: true,
            ..facts.clone()
        };
        assert_eq!(summary(&groups, &paused), "paused");
        let suspend = ClusterFacts {
            suspend_compute: true,
            ..facts.clone()
        };
        assert_eq!(
            summary(&groups, &suspend),
            "suspending: 6 instances still running"
        );
        let down = with_summary(0, false, "TiKV 0/3 ready");
        let groups = [g("PD", "basic-pd", &down), g("TiKV", "basic-tikv", &down)];
        assert_eq!(summary(&groups, &suspend), "suspended");
        // A group that has not reported yet.
        let groups = [GroupSummary {
            kind: "PD",
            name: "basic-pd",
            desired: 3,
            status: None,
        }];
        assert_eq!(summary(&groups, &facts), "PD basic-pd starting");
    }

    #[test]
    fn no_quorum_or_no_pd_is_not_available() {
        let pd = gs(1, false);
        let groups = [GroupSummary {
            kind: "PD",
            name: "basic-pd",
            desired: 3,
            status: Some(&pd),
        }];
        let s = compute(
            None,
            &groups,
            &ClusterFacts {
                id: Some(1),
                ..Default::default()
            },
            now(),
        );
        assert!(!conditions::is_true(&s.conditions, "Available"));
        let s = compute(
            None,
            &[],
            &ClusterFacts {
                paused: true,
                ..Default::default()
            },
            now(),
        );
        let avail = conditions::find(&s.conditions, "Available").unwrap();
        assert_eq!(avail.message, "no PDGroup refers to this cluster");
        assert!(conditions::is_true(&s.conditions, "Paused"));
    }

    #[test]
    fn tls_client_condition_only_with_tls() {
        let s = compute(None, &[], &ClusterFacts::default(), now());
        assert!(conditions::find(&s.conditions, "TLSClient").is_none());
        let bad = ClusterFacts {
            tls_client: Some(Err("TLS Secret ns/c does not exist".into())),
            ..Default::default()
        };
        let s = compute(None, &[], &bad, now());
        let c = conditions::find(&s.conditions, "TLSClient").unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            (
                "False",
                "InvalidTLSSecret",
                "TLS Secret ns/c does not exist"
            )
        );
        let good = ClusterFacts {
            tls_client: Some(Ok(())),
            ..Default::default()
        };
        let s = compute(Some(&s), &[], &good, now());
        assert!(conditions::is_true(&s.conditions, "TLSClient"));
    }
}

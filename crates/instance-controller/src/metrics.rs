//! What the instance controller adds to `/metrics`:
//!
//! - gauges read at each scrape from the PD and TiKV objects it caches (pure functions of their
//!   status, so a deleted instance's series go with it): `abnormal_instance` (one series per
//!   watched condition, 1 when it is in a bad state, like tidb-operator's), `pd_leader`,
//!   `store_state`, and while PD removes a store `store_removal_progress` and
//!   `store_removal_eta_seconds`;
//! - what its reconciles observe: `leader_eviction_duration_seconds` (from adding a store to
//!   the evict-leader scheduler until it has no leaders, or the timeout) and
//!   `leader_eviction_timeouts_total`, per group.

use api::conditions::{offlined, ready, restart_safe, store_down, synced};
use api::v1alpha1::{InstanceStatus, PD, TiKV};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::reflector::Store;
use operator_runtime::conditions;
use operator_runtime::metrics::Metrics;
use operator_runtime::state_metrics::{GaugeDesc, Sample, StateCollector};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::kind::{InstanceKind, group_of};

/// The gauges computed from the instances.
pub const GAUGES: &[GaugeDesc] = &[
    GaugeDesc {
        name: "abnormal_instance",
        help: "1 when the instance's condition is in a bad state (Ready not True, StoreDown True, \
               Synced False other than paused or suspended, Offlined Refused, RestartSafe \
               WouldLoseQuorum), else 0",
    },
    GaugeDesc {
        name: "pd_leader",
        help: "1 for the PD member that is PD's leader and Ready as the operator last saw it",
    },
    GaugeDesc {
        name: "store_state",
        help: "1 for the state PD last reported for the store",
    },
    GaugeDesc {
        name: "store_removal_progress",
        help: "Share of the store's data PD has moved away while removing it, 0 to 1",
    },
    GaugeDesc {
        name: "store_removal_eta_seconds",
        help: "Seconds PD expects the store's removal still to take",
    },
];

/// The labels every series of an instance carries.
fn instance_labels<K: InstanceKind>(obj: &K) -> Vec<(&'static str, String)> {
    vec![
        (
            "namespace",
            obj.meta().namespace.clone().unwrap_or_default(),
        ),
        ("cluster", obj.cluster_name().to_string()),
        ("component", K::COMPONENT.to_string()),
        ("group", group_of(obj).unwrap_or_default().to_string()),
        ("instance", obj.meta().name.clone().unwrap_or_default()),
    ]
}

/// A watched condition type, and when it is in a bad state.
type Check = (&'static str, fn(Option<&Condition>) -> bool);

/// One `abnormal_instance` series per watched condition.
fn abnormal<K: InstanceKind>(obj: &K, checks: &[Check]) -> Vec<Sample> {
    let cs = obj
        .instance_status()
        .map_or(&[][..], |s: &InstanceStatus| s.conditions.as_slice());
    checks
        .iter()
        .map(|(type_, bad)| {
            let mut labels = instance_labels(obj);
            labels.push(("condition", type_.to_string()));
            let value = f64::from(u8::from(bad(conditions::find(cs, type_))));
            Sample::new("abnormal_instance", labels, value)
        })
        .collect()
}

fn not_ready(c: Option<&Condition>) -> bool {
    c.is_none_or(|c| c.status != conditions::TRUE)
}

fn not_synced(c: Option<&Condition>) -> bool {
    c.is_some_and(|c| {
        c.status == conditions::FALSE && ![synced::PAUSED, synced::SUSPENDED].contains(&&*c.reason)
    })
}

fn down(c: Option<&Condition>) -> bool {
    c.is_some_and(|c| c.status == conditions::TRUE)
}

fn removal_refused(c: Option<&Condition>) -> bool {
    c.is_some_and(|c| c.reason == offlined::REFUSED)
}

fn quorum_blocked(c: Option<&Condition>) -> bool {
    c.is_some_and(|c| c.reason == restart_safe::WOULD_LOSE_QUORUM)
}

/// The series of a PD member.
pub fn pd_samples(pd: &PD) -> Vec<Sample> {
    let mut out = abnormal(
        pd,
        &[
            (ready::TYPE, not_ready),
            (synced::TYPE, not_synced),
            (restart_safe::TYPE, quorum_blocked),
        ],
    );
    let leads = pd
        .status
        .as_ref()
        .is_some_and(|s| s.is_leader && conditions::is_true(&s.common.conditions, ready::TYPE));
    out.push(Sample::new(
        "pd_leader",
        instance_labels(pd),
        f64::from(u8::from(leads)),
    ));
    out
}

/// The series of a TiKV store.
pub fn tikv_samples(tikv: &TiKV) -> Vec<Sample> {
    let mut out = abnormal(
        tikv,
        &[
            (ready::TYPE, not_ready),
            (store_down::TYPE, down),
            (synced::TYPE, not_synced),
            (offlined::TYPE, removal_refused),
        ],
    );
    let Some(status) = &tikv.status else {
        return out;
    };
    let Some(id) = &status.id else {
        return out;
    };
    let store_labels = || {
        let mut l = instance_labels(tikv);
        l.push(("store", id.clone()));
        l
    };
    if let Some(state) = status.state {
        let mut labels = store_labels();
        labels.push(("state", state.to_string()));
        out.push(Sample::new("store_state", labels, 1.0));
    }
    if let Some(r) = &status.removal {
        out.push(Sample::new(
            "store_removal_progress",
            store_labels(),
            f64::from(r.percent) / 100.0,
        ));
        if let Some(eta) = r.eta_seconds {
            out.push(Sample::new(
                "store_removal_eta_seconds",
                store_labels(),
                eta as f64,
            ));
        }
    }
    out
}

/// Adds the instance gauges over the PD and TiKV caches to `metrics`.
pub fn register_state(metrics: &Metrics, pds: Store<PD>, tikvs: Store<TiKV>) {
    metrics.register_collector(
        StateCollector::new(GAUGES)
            .with_store(pds, pd_samples)
            .with_store(tikvs, tikv_samples),
    );
}

/// Labels of the per-group event metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Namespace of the group.
    pub namespace: String,
    /// Its Cluster.
    pub cluster: String,
    /// The group.
    pub group: String,
}

impl GroupLabels {
    /// The labels of `obj`'s group.
    pub fn of<K: InstanceKind>(obj: &K) -> Self {
        Self {
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            cluster: obj.cluster_name().to_string(),
            group: group_of(obj).unwrap_or_default().to_string(),
        }
    }
}

/// What the reconciles observe.
#[derive(Clone)]
pub struct Observed {
    eviction: Family<GroupLabels, Histogram>,
    timeouts: Family<GroupLabels, Counter>,
}

impl Observed {
    /// The families, registered in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        // Evictions take seconds on a small cluster and minutes on a big one.
        let eviction = Family::<GroupLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0])
        });
        let timeouts = Family::<GroupLabels, Counter>::default();
        metrics.register(
            "leader_eviction_duration_seconds",
            "Time from adding a TiKV store to PD's evict-leader scheduler until it had no \
             leaders left (or the eviction timeout passed)",
            eviction.clone(),
        );
        metrics.register(
            "leader_eviction_timeouts",
            "TiKV stores restarted with leaders left because the eviction timeout passed",
            timeouts.clone(),
        );
        Self { eviction, timeouts }
    }

    /// Makes `labels`' series exist (at zero) before the group's first eviction, so that
    /// dashboards and alerts see the group at once.
    pub fn touch(&self, labels: &GroupLabels) {
        drop(self.eviction.get_or_create(labels));
        drop(self.timeouts.get_or_create(labels));
    }

    /// Records what a reconcile observed.
    pub fn record(&self, labels: &GroupLabels, observation: &Observation) {
        match observation {
            Observation::LeadersEvicted { seconds, timed_out } => {
                self.eviction.get_or_create(labels).observe(*seconds);
                if *timed_out {
                    self.timeouts.get_or_create(labels).inc();
                }
            }
        }
    }
}

/// Something a reconcile's plan reports for the metrics, once the plan has been carried out.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A store's leader eviction ended: no leader left, or the timeout passed.
    LeadersEvicted {
        /// Since the store was added to the evict-leader scheduler.
        seconds: f64,
        /// The timeout passed with leaders left.
        timed_out: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(type_: &str, status: &str, reason: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": "",
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    fn tikv(status: serde_json::Value) -> TiKV {
        serde_json::from_value(json!({
            "apiVersion": "core.tikv.org/v1alpha1", "kind": "TiKV",
            "metadata": {"name": "basic-tikv-x", "namespace": "ns",
                         "labels": {"tikv.org/group": "basic-tikv"}},
            "spec": {"cluster": {"name": "basic"}, "subdomain": "s", "version": "v8.5.0",
                     "volumes": [{"name": "data", "mounts": [{"type": "data"}], "storage": "1Gi"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn value(samples: &[Sample], name: &str, extra: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && extra
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn a_store_reports_its_abnormal_conditions_state_and_removal() {
        let healthy = tikv(json!({"id": "5", "state": "Up", "conditions": [
            cond("Ready", "True", "StoreUp"), cond("StoreDown", "False", "NotDown"),
            cond("Synced", "True", "Synced")]}));
        let s = tikv_samples(&healthy);
        for c in ["Ready", "StoreDown", "Synced", "Offlined"] {
            assert_eq!(
                value(&s, "abnormal_instance", &[("condition", c)]),
                Some(0.0),
                "{c}"
            );
        }
        assert_eq!(
            value(&s, "store_state", &[("state", "Up"), ("store", "5")]),
            Some(1.0)
        );
        assert_eq!(value(&s, "store_removal_progress", &[]), None);
        let labels: Vec<&str> = s[0].labels.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            labels,
            [
                "namespace",
                "cluster",
                "component",
                "group",
                "instance",
                "condition"
            ]
        );
        assert_eq!(s[0].labels[3].1, "basic-tikv");

        let down = tikv(json!({"id": "5", "state": "Down", "conditions": [
            cond("Ready", "False", "StoreDown"), cond("StoreDown", "True", "Down"),
            cond("Synced", "False", "Paused")]}));
        let s = tikv_samples(&down);
        assert_eq!(
            value(&s, "abnormal_instance", &[("condition", "Ready")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "abnormal_instance", &[("condition", "StoreDown")]),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "abnormal_instance", &[("condition", "Synced")]),
            Some(0.0),
            "paused is not abnormal"
        );

        let removing = tikv(json!({"id": "7", "state": "Offline",
            "removal": {"percent": 45, "etaSeconds": 130}, "conditions": [
            cond("Ready", "False", "StoreOffline"), cond("Offlined", "False", "Removing")]}));
        let s = tikv_samples(&removing);
        assert_eq!(
            value(&s, "store_removal_progress", &[("store", "7")]),
            Some(0.45)
        );
        assert_eq!(value(&s, "store_removal_eta_seconds", &[]), Some(130.0));
        assert_eq!(
            value(&s, "abnormal_instance", &[("condition", "Offlined")]),
            Some(0.0)
        );
        let refused =
            tikv(json!({"id": "7", "conditions": [cond("Offlined", "False", "Refused")]}));
        assert_eq!(
            value(
                &tikv_samples(&refused),
                "abnormal_instance",
                &[("condition", "Offlined")]
            ),
            Some(1.0)
        );
        // No status yet: not ready.
        assert_eq!(
            value(
                &tikv_samples(&tikv(json!({}))),
                "abnormal_instance",
                &[("condition", "Ready")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn the_pd_leader_counts_only_while_ready() {
        let pd = |leader: bool, ready: &str| -> PD {
            serde_json::from_value(json!({
                "apiVersion": "core.tikv.org/v1alpha1", "kind": "PD",
                "metadata": {"name": "basic-pd-y", "namespace": "ns",
                             "labels": {"tikv.org/group": "basic-pd"}},
                "spec": {"cluster": {"name": "basic"}, "subdomain": "s", "version": "v8.5.0",
                         "volumes": [{"name": "data", "mounts": [{"type": "data"}], "storage": "1Gi"}]},
                "status": {"isLeader": leader, "conditions": [
                    cond("Ready", ready, "x"), cond("RestartSafe", "False", "WouldLoseQuorum")]},
            }))
            .unwrap()
        };
        let s = pd_samples(&pd(true, "True"));
        assert_eq!(value(&s, "pd_leader", &[("component", "pd")]), Some(1.0));
        assert_eq!(
            value(&s, "abnormal_instance", &[("condition", "RestartSafe")]),
            Some(1.0)
        );
        assert_eq!(
            value(&pd_samples(&pd(true, "False")), "pd_leader", &[]),
            Some(0.0)
        );
        assert_eq!(
            value(&pd_samples(&pd(false, "True")), "pd_leader", &[]),
            Some(0.0)
        );
    }

    #[test]
    fn evictions_are_counted_per_group() {
        let metrics = Metrics::new();
        let observed = Observed::register(&metrics);
        let labels = GroupLabels {
            namespace: "ns".into(),
            cluster: "basic".into(),
            group: "basic-tikv".into(),
        };
        observed.touch(&labels);
        let text = metrics.encode();
        assert!(text.contains(
            r#"tikv_operator_leader_eviction_timeouts_total{namespace="ns",cluster="basic",group="basic-tikv"} 0"#
        ), "{text}");
        observed.record(
            &labels,
            &Observation::LeadersEvicted {
                seconds: 3.0,
                timed_out: false,
            },
        );
        observed.record(
            &labels,
            &Observation::LeadersEvicted {
                seconds: 600.0,
                timed_out: true,
            },
        );
        let text = metrics.encode();
        assert!(text.contains(
            r#"tikv_operator_leader_eviction_duration_seconds_count{namespace="ns",cluster="basic",group="basic-tikv"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"tikv_operator_leader_eviction_timeouts_total{namespace="ns",cluster="basic",group="basic-tikv"} 1"#
        ));
    }
}

//! Prometheus metrics every controller exports: reconcile runs, failures by a low-cardinality
//! category, and reconcile duration.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind reconciled, e.g. `TiKV`.
    pub kind: String,
}

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Kind reconciled.
    pub kind: String,
    /// Error category: a fixed word per error variant, never an error message.
    pub category: String,
}

/// The metrics of one controller process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    runs: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    leader: Gauge,
}

impl Metrics {
    /// A registry with the reconcile metrics, prefixed `tikv_operator`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tikv_operator");
        let runs = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        // Reconciles are mostly milliseconds; PD calls can take seconds.
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let leader = Gauge::default();
        registry.register("reconcile_runs", "Reconciles run", runs.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that returned an error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this process holds the leader lease",
            leader.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            runs,
            failures,
            duration,
            leader,
        }
    }

    /// Lets a controller register its own metrics.
    pub fn registry(&self) -> Arc<Mutex<Registry>> {
        self.registry.clone()
    }

    /// Starts timing a reconcile of `kind`; the run is counted and timed when the guard drops.
    pub fn reconcile(&self, kind: &str) -> ReconcileTimer {
        self.runs
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
        ReconcileTimer {
            metrics: self.clone(),
            kind: kind.to_string(),
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile of `kind`.
    pub fn failure(&self, kind: &str, category: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.to_string(),
                category: category.to_string(),
            })
            .inc();
    }

    /// Records whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Observes the reconcile duration when dropped.
pub struct ReconcileTimer {
    metrics: Metrics,
    kind: String,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabels {
                kind: std::mem::take(&mut self.kind),
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_runs_failures_and_durations() {
        let m = Metrics::new();
        drop(m.reconcile("TiKV"));
        drop(m.reconcile("TiKV"));
        m.failure("TiKV", "pd_unavailable");
        m.set_leader(true);
        let text = m.encode();
        assert!(
            text.contains(r#"tikv_operator_reconcile_runs_total{kind="TiKV"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"tikv_operator_reconcile_failures_total{kind="TiKV",category="pd_unavailable"} 1"#
        ));
        assert!(text.contains(r#"tikv_operator_reconcile_duration_seconds_count{kind="TiKV"} 2"#));
        assert!(text.contains("tikv_operator_leader 1"));
    }
}

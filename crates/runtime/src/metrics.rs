//! Prometheus metrics every controller exports: reconcile runs, failures by a low-cardinality
//! category, reconcile duration, and the requests a controller sends to the API server and to PD
//! (how hard it works them, per reconciled kind).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The prefix of the operator's own metric names.
pub const PREFIX: &str = "tikv_operator";

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

/// Labels of the API request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The kind whose controller sent the request, e.g. `TiKV`.
    pub kind: String,
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// Resource and subresource, e.g. `pods` or `tikvs/status`.
    pub resource: String,
}

/// Labels of the PD request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PdLabels {
    /// HTTP method.
    pub method: String,
    /// Route below `/pd/api/v1` with its parameters as placeholders, e.g. `/store/{id}`.
    pub route: String,
    /// `ok`, or what went wrong (`not_found`, `refused`, `unavailable`, ...).
    pub outcome: String,
}

/// Labels of the build info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The controller, e.g. `instance-controller`.
    pub controller: String,
    /// Its version.
    pub version: String,
}

/// The metrics of one controller process. Controllers add their own families
/// ([`Metrics::register`]) and collectors of their objects' state ([`Metrics::register_collector`]).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    runs: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    leader: Gauge,
    build: Family<BuildLabels, Gauge>,
    api_requests: Family<ApiLabels, Counter>,
    pd_requests: Family<PdLabels, Counter>,
}

impl Metrics {
    /// A registry with the reconcile metrics, prefixed `tikv_operator`.
    pub fn new() -> Self {
        // The process metrics keep their conventional names; everything else is ours.
        let mut root = Registry::default();
        root.register_collector(Box::new(crate::process::ProcessCollector));
        let registry = root.sub_registry_with_prefix(PREFIX);
        let runs = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        // Reconciles are mostly milliseconds; PD calls can take seconds.
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let leader = Gauge::default();
        let build = Family::<BuildLabels, Gauge>::default();
        let api_requests = Family::<ApiLabels, Counter>::default();
        let pd_requests = Family::<PdLabels, Counter>::default();
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
        registry.register(
            "build_info",
            "1, labelled with the controller and its version",
            build.clone(),
        );
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server",
            api_requests.clone(),
        );
        registry.register(
            "pd_requests",
            "Requests sent to PD's HTTP API",
            pd_requests.clone(),
        );
        Self {
            registry: Arc::new(RwLock::new(root)),
            runs,
            failures,
            duration,
            leader,
            build,
            api_requests,
            pd_requests,
        }
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

    /// Creates the failure counters of `kind` at zero, one per error category, so that they
    /// exist before the first failure: an alert on their `increase()` then fires on the first
    /// one, and a dashboard shows 0 rather than "no data".
    pub fn declare_failures(&self, kind: &str, categories: &[&str]) {
        for category in categories {
            drop(self.failures.get_or_create(&FailureLabels {
                kind: kind.to_string(),
                category: category.to_string(),
            }));
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

    /// Counts one request to the API server made for `kind`.
    pub fn api_request(&self, kind: &str, verb: &str, resource: &str) {
        self.api_requests
            .get_or_create(&ApiLabels {
                kind: kind.to_string(),
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .inc();
    }

    /// Counts one request to PD.
    pub fn pd_request(&self, method: &str, route: &str, outcome: &str) {
        self.pd_requests
            .get_or_create(&PdLabels {
                method: method.to_string(),
                route: route.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Adds a family of the controller's own, e.g. a histogram of leader-eviction durations;
    /// `name` gets the `tikv_operator_` prefix.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .sub_registry_with_prefix(PREFIX)
            .register(name, help, metric);
    }

    /// Adds a collector that computes metrics at each scrape (e.g. from the objects in a
    /// controller's cache); its names get the `tikv_operator_` prefix.
    pub fn register_collector(&self, collector: impl Collector) {
        self.registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .sub_registry_with_prefix(PREFIX)
            .register_collector(Box::new(collector));
    }

    /// Records which controller (and version) this process runs.
    pub fn set_build_info(&self, controller: &str, version: &str) {
        self.build
            .get_or_create(&BuildLabels {
                controller: controller.to_string(),
                version: version.to_string(),
            })
            .set(1);
    }

    /// Records whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let registry = self.registry.read().unwrap_or_else(|e| e.into_inner());
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
        m.declare_failures("TiKV", &["kube", "pd_unavailable"]);
        drop(m.reconcile("TiKV"));
        drop(m.reconcile("TiKV"));
        m.failure("TiKV", "pd_unavailable");
        m.set_leader(true);
        m.set_build_info("instance-controller", "0.1.0");
        m.api_request("TiKV", "get", "pods");
        m.pd_request("GET", "/stores/check", "ok");
        let text = m.encode();
        assert!(
            text.contains(r#"tikv_operator_reconcile_runs_total{kind="TiKV"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"tikv_operator_reconcile_failures_total{kind="TiKV",category="pd_unavailable"} 1"#
        ));
        // Declared, never failed: there, at zero.
        assert!(
            text.contains(
                r#"tikv_operator_reconcile_failures_total{kind="TiKV",category="kube"} 0"#
            )
        );
        assert!(text.contains(r#"tikv_operator_reconcile_duration_seconds_count{kind="TiKV"} 2"#));
        assert!(text.contains("tikv_operator_leader 1"));
        assert!(text.contains(
            r#"tikv_operator_build_info{controller="instance-controller",version="0.1.0"} 1"#
        ));
        assert!(text.contains(
            r#"tikv_operator_api_requests_total{kind="TiKV",verb="get",resource="pods"} 1"#
        ));
        assert!(text.contains(
            r#"tikv_operator_pd_requests_total{method="GET",route="/stores/check",outcome="ok"} 1"#
        ));
        // The process metrics keep their conventional names.
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(text.contains("\nprocess_cpu_seconds_total "));
    }
}

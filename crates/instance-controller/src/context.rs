//! What every reconcile of this controller shares (the API client, Events, one PD client per
//! cluster), how a reconcile fails, and how often it comes back.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use operator_runtime::metrics::Metrics;
use pdclient::PdClient;

use crate::kind::InstanceKind;

/// A restart or removal waits on PD (leaders moving away, leadership moving): look every second.
pub const WATCH_CLOSELY: Duration = Duration::from_secs(1);
/// Something no Kubernetes event announces is under way (a store registering or draining, a
/// member joining): look again soon.
pub const SOON: Duration = Duration::from_secs(2);
/// A Ready PD member: leadership moves without any event, and the group picks which member to
/// restart or remove last by `isLeader`.
pub const PD_READY: Duration = Duration::from_secs(5);
/// A Ready TiKV store: PD's view of it (state, counts, failover's Down) changes without events.
pub const TIKV_READY: Duration = Duration::from_secs(10);
/// PD could not be asked, or a reconcile failed.
pub const RETRY: Duration = Duration::from_secs(5);

/// A PD cluster: namespace and Cluster name.
pub type ClusterKey = (String, String);

/// Shared state of the PD and TiKV reconcilers.
pub struct Context {
    /// API client (counting its requests for one kind), metrics, Events, field manager.
    pub kube: operator_runtime::context::Context,
    /// One PD client per cluster, shared by both kinds' reconcilers.
    pub pd: Arc<pdclient::Registry<ClusterKey>>,
    /// What the reconciles observe for `/metrics` (leader evictions).
    pub observed: crate::metrics::Observed,
}

impl Context {
    /// The PD client registry of a controller process, counting PD requests in `metrics`.
    pub fn pd_registry(metrics: &Metrics) -> Arc<pdclient::Registry<ClusterKey>> {
        let m = metrics.clone();
        let observer: pdclient::Observer =
            Arc::new(move |r: &pdclient::RequestRecord| m.pd_request(r.method, r.route, r.outcome));
        Arc::new(pdclient::Registry::new(Some(observer)))
    }

    /// The client of the cluster `cluster` in `namespace`, whose PD answers at `url`, with the
    /// client certificate `tls` (TLS on; a renewed one gives a new client).
    pub fn pd_client(
        &self,
        namespace: &str,
        cluster: &str,
        url: &str,
        tls: Option<&tls::Material>,
    ) -> Result<PdClient, pdclient::Error> {
        self.pd
            .client(&(namespace.to_string(), cluster.to_string()), url, tls)
    }
}

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// PD refused or failed a request the plan depends on.
    #[error("PD: {0}")]
    Pd(#[from] pdclient::Error),
    /// The object has no namespace.
    #[error("object has no namespace")]
    NoNamespace,
    /// A plan asks PD for something while PD's URL is unknown (a bug in a decision).
    #[error("the plan asks PD, but PD's URL is unknown")]
    NoPd,
}

impl Error {
    /// Every value of [`Error::category`].
    pub const CATEGORIES: &[&str] = &["kube", "pd", "invalid", "bug"];

    /// Low-cardinality category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Pd(_) => "pd",
            Error::NoNamespace => "invalid",
            Error::NoPd => "bug",
        }
    }
}

/// After an error: try again soon, except for an object that cannot work until it changes.
pub fn error_policy<K: InstanceKind>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    // Called outside the reconcile's span: enter one that names the instance.
    let _span = crate::instance::execute::span(obj.as_ref()).entered();
    tracing::warn!(%error, "instance reconcile failed");
    ctx.kube
        .metrics
        .failure(K::kind(&()).as_ref(), error.category());
    match error {
        Error::NoNamespace => Action::await_change(),
        _ => Action::requeue(RETRY),
    }
}

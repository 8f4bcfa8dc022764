//! What every controller binary shares: structured logging, the metrics and health HTTP server,
//! server-side apply with a per-controller field manager, request counting, pure condition
//! merging, waiting for CRDs, and Lease-based leader election.

pub mod app;
pub mod conditions;
pub mod context;
pub mod counted;
pub mod crds;
pub mod finalizer;
pub mod leader;
pub mod metrics;
pub mod process;
pub mod server;
pub mod ssa;
pub mod state_metrics;
pub mod telemetry;
pub mod tls_secret;

/// Field manager prefix; each controller applies as `tikv-operator/<controller>`.
pub const FIELD_MANAGER_PREFIX: &str = "tikv-operator";

/// The field manager of a controller, e.g. `tikv-operator/group-controller`.
pub fn field_manager(controller: &str) -> String {
    format!("{FIELD_MANAGER_PREFIX}/{controller}")
}

/// An API handle for the watched scope: one namespace, or all of them.
pub fn scoped_api<K>(client: kube::Client, namespace: Option<&str>) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    }
}

//! The cluster controller: reports a Cluster's PD URL, PD cluster id, per-component counts and
//! aggregated conditions (Available, Ready, Progressing, Paused, Suspended).

pub mod status;

use std::sync::Arc;
use std::time::Duration;

use api::v1alpha1::{Cluster, PDGroup, ReplicationStatus, TiKVGroup};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use operator_runtime::context::Context;
use operator_runtime::finalizer;
use operator_runtime::metrics::Metrics;
use operator_runtime::ssa;
use operator_runtime::state_metrics::{GaugeDesc, Sample, StateCollector};
use operator_runtime::{conditions, tls_secret};

use crate::status::{ClusterFacts, GroupSummary};

/// Name of this controller.
pub const NAME: &str = "cluster-controller";

/// CRDs this controller needs.
pub const CRDS: &[&str] = &[
    "clusters.core.tikv.org",
    "pdgroups.core.tikv.org",
    "tikvgroups.core.tikv.org",
];

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The Cluster has no namespace.
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    /// Every value of [`Error::category`].
    pub const CATEGORIES: &[&str] = &["kube", "invalid"];

    /// Low-cardinality category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::NoNamespace => "invalid",
        }
    }
}

/// Finalizer that makes a deleted Cluster take its groups (and through them every instance, pod,
/// PVC, ConfigMap and Service) with it.
pub const FINALIZER: &str = "core.tikv.org/cluster-cleanup";

/// The groups of `kind` in `ns` that belong to the Cluster `name`.
async fn groups_of<G>(ctx: &Context, ns: &str, name: &str) -> Result<Vec<G>, Error>
where
    G: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + api::v1alpha1::HasCluster,
{
    Ok(Api::<G>::namespaced(ctx.client.clone(), ns)
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|g| g.cluster_name() == name)
        .collect())
}

/// Deletes those of `groups` not already going; returns their names.
async fn delete_each<G>(ctx: &Context, ns: &str, groups: &[G]) -> Result<Vec<String>, Error>
where
    G: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<G>::namespaced(ctx.client.clone(), ns);
    let mut names = Vec::new();
    for g in groups
        .iter()
        .filter(|g| g.meta().deletion_timestamp.is_none())
    {
        api.delete(&g.name_any(), &kube::api::DeleteParams::background())
            .await?;
        names.push(g.name_any());
    }
    Ok(names)
}

/// Deletes the Cluster's groups; true once none is left.
async fn delete_groups(
    ctx: &Context,
    cluster: &Cluster,
    ns: &str,
    pdgs: &[PDGroup],
    tikvgs: &[TiKVGroup],
) -> Result<bool, Error> {
    let mut names = delete_each(ctx, ns, tikvgs).await?;
    names.extend(delete_each(ctx, ns, pdgs).await?);
    if !names.is_empty() {
        let note = format!(
            "The Cluster is being deleted: deleting {}",
            names.join(", ")
        );
        ctx.event(
            cluster,
            EventType::Normal,
            api::events::DELETING_GROUPS,
            note,
        )
        .await;
    }
    Ok(pdgs.is_empty() && tikvgs.is_empty())
}

/// Reconciles one Cluster.
#[tracing::instrument(skip_all, fields(
    namespace = %cluster.metadata.namespace.as_deref().unwrap_or_default(),
    cluster = %cluster.name_any(),
))]
pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("Cluster");
    let ns = cluster.namespace().ok_or(Error::NoNamespace)?;
    let name = cluster.name_any();
    let clusters = Api::<Cluster>::namespaced(ctx.client.clone(), &ns);
    let pdgs: Vec<PDGroup> = groups_of(&ctx, &ns, &name).await?;
    let tikvgs: Vec<TiKVGroup> = groups_of(&ctx, &ns, &name).await?;
    if cluster.metadata.deletion_timestamp.is_some() {
        if delete_groups(&ctx, &cluster, &ns, &pdgs, &tikvgs).await? {
            finalizer::set(&clusters, cluster.as_ref(), FINALIZER, false).await?;
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    finalizer::set(&clusters, cluster.as_ref(), FINALIZER, true).await?;
    let pdgs: Vec<&PDGroup> = pdgs.iter().collect();
    let tikvgs: Vec<&TiKVGroup> = tikvgs.iter().collect();
    let scheme = if cluster.tls_enabled() {
        "https"
    } else {
        "http"
    };
    let pd_url = pdgs.first().map(|g| {
        format!(
            "{scheme}://{}.{ns}.svc:{}",
            g.name_any(),
            g.spec.template.spec.server.ports.client.port
        )
    });
    // With TLS, PD is asked only with the operator's client certificate.
    let pd_tls = match cluster.client_secret_name() {
        Some(secret) => {
            let got = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
                .get_opt(&secret)
                .await?;
            let usage = tls::Usage::Client;
            Some(tls_secret::usable(
                &ns,
                &secret,
                got.as_ref(),
                &usage,
                Timestamp::now(),
            ))
        }
        None => None,
    };
    if let Some(Err(message)) = &pd_tls {
        let stored = cluster
            .status
            .as_ref()
            .map_or(&[][..], |s| &s.conditions[..]);
        let reason = api::conditions::tls_client::INVALID_TLS_SECRET;
        if !conditions::has_reason(stored, api::conditions::tls_client::TYPE, reason) {
            ctx.event(
                cluster.as_ref(),
                EventType::Warning,
                api::events::INVALID_TLS_SECRET,
                message.clone(),
            )
            .await;
        }
    }
    // The id is fixed for the life of the cluster: ask PD only until we know it.
    let known = cluster.status.as_ref().and_then(|s| s.id.clone());
    let client = match (&pd_url, &pd_tls) {
        (_, Some(Err(_))) | (None, _) => None,
        (Some(url), tls) => {
            let mut builder = pdclient::PdClient::builder(vec![url.clone()]);
            if let Some(Ok(m)) = tls {
                builder = builder.tls(m.clone());
            }
            builder.build().ok()
        }
    };
    let id = match (&known, &client) {
        (None, Some(c)) => c.cluster().await.ok().map(|c| c.id),
        _ => None,
    };
    // PD's placement settings can change any time (pd-ctl); unknown while PD cannot answer.
    let replication = match &client {
        Some(c) => c
            .replication_config()
            .await
            .ok()
            .map(|r| ReplicationStatus {
                max_replicas: r.max_replicas as i64,
                location_labels: r.location_labels,
                isolation_level: r.isolation_level,
            }),
        None => None,
    };
    let mut groups: Vec<GroupSummary> = pdgs
        .iter()
        .map(|g| GroupSummary {
            kind: "PD",
            name: g.metadata.name.as_deref().unwrap_or_default(),
            desired: g.spec.replicas,
            status: g.status.as_ref(),
        })
        .collect();
    groups.extend(tikvgs.iter().map(|g| GroupSummary {
        kind: "TiKV",
        name: g.metadata.name.as_deref().unwrap_or_default(),
        desired: g.spec.replicas,
        status: g.status.as_ref(),
    }));
    let facts = ClusterFacts {
        pd_url,
        id,
        paused: cluster.spec.paused,
        suspend_compute: cluster.spec.suspends_compute(),
        generation: cluster.metadata.generation,
        replication,
        tls_client: pd_tls.map(|r| r.map(drop)),
    };
    let status = status::compute(
        cluster.status.as_ref(),
        &groups,
        &facts,
        Time(Timestamp::now()),
    );
    let waiting_for_id = status.id.is_none();
    ssa::apply_status(&clusters, &ctx.manager, &name, &status).await?;
    Ok(Action::requeue(Duration::from_secs(if waiting_for_id {
        3
    } else {
        60
    })))
}

fn error_policy(c: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    // Called outside the reconcile's span: the line names the Cluster itself.
    tracing::warn!(
        %error,
        namespace = c.metadata.namespace.as_deref().unwrap_or_default(),
        cluster = %c.name_any(),
        "cluster reconcile failed"
    );
    ctx.metrics.failure("Cluster", error.category());
    Action::requeue(Duration::from_secs(5))
}

/// The Cluster gauges in `/metrics`, read at each scrape from the cached Clusters.
pub const GAUGES: &[GaugeDesc] = &[GaugeDesc {
    name: "cluster_condition",
    help: "1 when the Cluster's condition of this type is True, else 0",
}];

/// One `cluster_condition` series per condition the Cluster reports.
pub fn condition_samples(cluster: &Cluster) -> Vec<Sample> {
    let (ns, name) = (
        cluster.metadata.namespace.clone().unwrap_or_default(),
        cluster.name_any(),
    );
    cluster
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| {
            let labels = vec![
                ("namespace", ns.clone()),
                ("cluster", name.clone()),
                ("type", c.type_.clone()),
            ];
            let value = f64::from(u8::from(c.status == api::conditions::TRUE));
            Sample::new("cluster_condition", labels, value)
        })
        .collect()
}

/// Maps a group to its Cluster.
fn cluster_of(ns: Option<String>, cluster: &str) -> Option<ObjectRef<Cluster>> {
    Some(ObjectRef::new(cluster).within(&ns?))
}

/// Runs the controller until shutdown.
pub async fn run(client: Client, metrics: Metrics, concurrency: u16, namespace: Option<String>) {
    let ns = namespace.as_deref();
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), NAME));
    metrics.declare_failures("Cluster", Error::CATEGORIES);
    let controller = Controller::new(
        operator_runtime::scoped_api::<Cluster>(client.clone(), ns),
        watcher::Config::default(),
    );
    metrics.register_collector(
        StateCollector::new(GAUGES).with_store(controller.store(), condition_samples),
    );
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches(
            operator_runtime::scoped_api::<PDGroup>(client.clone(), ns),
            watcher::Config::default(),
            |g: PDGroup| cluster_of(g.namespace(), &g.spec.cluster.name),
        )
        .watches(
            operator_runtime::scoped_api::<TiKVGroup>(client, ns),
            watcher::Config::default(),
            |g: TiKVGroup| cluster_of(g.namespace(), &g.spec.cluster.name),
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_condition_is_a_series() {
        let c: Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "core.tikv.org/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "basic", "namespace": "ns"}, "spec": {},
            "status": {"conditions": [
                {"type": "Available", "status": "True", "reason": "PDQuorum", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "False", "reason": "NotAllReady", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let s = condition_samples(&c);
        let value = |t: &str| {
            s.iter()
                .find(|x| x.labels.iter().any(|(k, v)| *k == "type" && v == t))
                .map(|x| x.value)
        };
        assert_eq!((value("Available"), value("Ready")), (Some(1.0), Some(0.0)));
        assert_eq!(
            s[0].labels[..2],
            [("namespace", "ns".into()), ("cluster", "basic".into())]
        );
    }
}

//! The cluster controller: reports a Cluster's PD URL, PD cluster id, per-component counts and
//! aggregated conditions (Available, Ready, Progressing, Paused, Suspended).

pub mod status;

use std::sync::Arc;
use std::time::Duration;

use api::v1alpha1::{Cluster, PDGroup, TiKVGroup};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use operator_runtime::context::Context;
use operator_runtime::metrics::Metrics;
use operator_runtime::ssa;

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

/// Reconciles one Cluster.
pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("Cluster");
    let ns = cluster.namespace().ok_or(Error::NoNamespace)?;
    let name = cluster.name_any();
    let pdgs: Vec<PDGroup> = Api::<PDGroup>::namespaced(ctx.client.clone(), &ns)
        .list(&Default::default())
        .await?
        .items;
    let tikvgs: Vec<TiKVGroup> = Api::<TiKVGroup>::namespaced(ctx.client.clone(), &ns)
        .list(&Default::default())
        .await?
        .items;
    let pdgs: Vec<&PDGroup> = pdgs
        .iter()
        .filter(|g| g.spec.cluster.name == name)
        .collect();
    let tikvgs: Vec<&TiKVGroup> = tikvgs
        .iter()
        .filter(|g| g.spec.cluster.name == name)
        .collect();
    let pd_url = pdgs.first().map(|g| {
        format!(
            "http://{}.{ns}.svc:{}",
            g.name_any(),
            g.spec.template.spec.server.ports.client.port
        )
    });
    // The id is fixed for the life of the cluster: ask PD only until we know it.
    let known = cluster.status.as_ref().and_then(|s| s.id.clone());
    let id = match (&known, &pd_url) {
        (None, Some(url)) => match pdclient::PdClient::new(vec![url.clone()]) {
            Ok(c) => c.cluster().await.ok().map(|c| c.id),
            Err(_) => None,
        },
        _ => None,
    };
    let mut groups: Vec<GroupSummary> = pdgs
        .iter()
        .map(|g| GroupSummary {
            kind: "PD",
            desired: g.spec.replicas,
            status: g.status.as_ref(),
        })
        .collect();
    groups.extend(tikvgs.iter().map(|g| GroupSummary {
        kind: "TiKV",
        desired: g.spec.replicas,
        status: g.status.as_ref(),
    }));
    let facts = ClusterFacts {
        pd_url,
        id,
        paused: cluster.spec.paused,
        suspend_compute: cluster
            .spec
            .suspend_action
            .as_ref()
            .is_some_and(|s| s.suspend_compute),
        generation: cluster.metadata.generation,
    };
    let status = status::compute(
        cluster.status.as_ref(),
        &groups,
        &facts,
        Time(Timestamp::now()),
    );
    let waiting_for_id = status.id.is_none();
    ssa::apply_status(
        &Api::<Cluster>::namespaced(ctx.client.clone(), &ns),
        &ctx.manager,
        &name,
        &status,
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(if waiting_for_id {
        3
    } else {
        60
    })))
}

fn error_policy(_c: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "cluster reconcile failed");
    ctx.metrics.failure(
        "Cluster",
        match error {
            Error::Kube(_) => "kube",
            Error::NoNamespace => "invalid",
        },
    );
    Action::requeue(Duration::from_secs(5))
}

/// Maps a group to its Cluster.
fn cluster_of(ns: Option<String>, cluster: &str) -> Option<ObjectRef<Cluster>> {
    Some(ObjectRef::new(cluster).within(&ns?))
}

/// Runs the controller until shutdown.
pub async fn run(client: Client, metrics: Metrics, concurrency: u16, namespace: Option<String>) {
    let ns = namespace.as_deref();
    let ctx = Arc::new(Context::new(client.clone(), metrics, NAME));
    Controller::new(
        operator_runtime::scoped_api::<Cluster>(client.clone(), ns),
        watcher::Config::default(),
    )
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

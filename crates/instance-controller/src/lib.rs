//! The instance controller: reconciles each PD and TiKV object into its Pod, ConfigMap and PVCs,
//! and reports what PD says about it (member id and leadership; store id, state, leader and
//! region counts). Removing a store or member from PD happens here, behind a finalizer.

pub mod component;
pub mod config;
pub mod controllers;
pub mod evict;
pub mod kind;
pub mod pd;
pub mod pod;
pub mod quorum;
pub mod reconcile;
pub mod status;

use std::sync::Arc;

use api::v1alpha1::{Cluster, PD, TiKV};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use operator_runtime::metrics::Metrics;

use crate::kind::InstanceKind;
use crate::reconcile::Context;

/// Name of this controller.
pub const NAME: &str = "instance-controller";

/// CRDs this controller needs.
pub const CRDS: &[&str] = &[
    "clusters.core.tikv.org",
    "pds.core.tikv.org",
    "tikvs.core.tikv.org",
];

fn controller<K: InstanceKind>(
    client: &Client,
    concurrency: u16,
    ns: Option<&str>,
) -> Controller<K> {
    let c = Controller::new(
        operator_runtime::scoped_api::<K>(client.clone(), ns),
        watcher::Config::default(),
    )
    .with_config(Config::default().concurrency(concurrency));
    let store = c.store();
    c.owns(
        operator_runtime::scoped_api::<Pod>(client.clone(), ns),
        watcher::Config::default(),
    )
    .owns(
        operator_runtime::scoped_api::<ConfigMap>(client.clone(), ns),
        watcher::Config::default(),
    )
    .owns(
        operator_runtime::scoped_api::<PersistentVolumeClaim>(client.clone(), ns),
        watcher::Config::default(),
    )
    .watches(
        operator_runtime::scoped_api::<Cluster>(client.clone(), ns),
        watcher::Config::default(),
        move |cluster: Cluster| {
            let ns = cluster.namespace();
            store
                .state()
                .into_iter()
                .filter(|i| i.cluster().name == cluster.name_any() && i.namespace() == ns)
                .map(|i| ObjectRef::from_obj(i.as_ref()))
                .collect::<Vec<_>>()
        },
    )
    .shutdown_on_signal()
}

/// Runs the PD and TiKV controllers until shutdown. Each kind's controller counts its API
/// requests under its own kind.
pub async fn run(client: Client, metrics: Metrics, concurrency: u16, namespace: Option<String>) {
    let counted =
        |kind: &str| operator_runtime::counted::client(client.clone(), metrics.clone(), kind);
    let (pd_client, tikv_client) = (counted("PD"), counted("TiKV"));
    let pd_ctx = Arc::new(Context::new(pd_client.clone(), metrics.clone(), NAME));
    let tikv_ctx = Arc::new(Context::new(tikv_client.clone(), metrics, NAME));
    let pd = controller::<PD>(&pd_client, concurrency, namespace.as_deref())
        .run(
            controllers::reconcile_pd,
            reconcile::error_policy::<PD>,
            pd_ctx,
        )
        .for_each(|_| futures::future::ready(()));
    let tikv = controller::<TiKV>(&tikv_client, concurrency, namespace.as_deref())
        .run(
            controllers::reconcile_tikv,
            reconcile::error_policy::<TiKV>,
            tikv_ctx,
        )
        .for_each(|_| futures::future::ready(()));
    tokio::join!(pd, tikv);
}

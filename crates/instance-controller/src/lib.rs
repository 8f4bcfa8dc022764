//! The instance controller: reconciles each PD and TiKV object into its Pod, ConfigMap and PVCs,
//! and reports what PD says about it (member id and leadership; store id, state, leader and
//! region counts). Removing a store or member from PD happens here, behind a finalizer.
//!
//! Every reconcile reads as: gather the facts once (the object, its Cluster and pod, one PD
//! snapshot), decide with a pure function that returns the plan as a value, execute the plan:
//! [`instance`] holds what PD and TiKV share, [`pd`] and [`tikv`] what they ask PD and decide,
//! [`resources`] the pure builders of the objects an instance runs.

pub mod context;
pub mod instance;
pub mod kind;
pub mod metrics;
pub mod pd;
pub mod resources;
pub mod status;
pub mod tikv;

use std::sync::Arc;

use api::v1alpha1::{Cluster, PD, TiKV};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::runtime::controller::{Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use operator_runtime::metrics::Metrics;

use crate::context::Context;
use crate::kind::InstanceKind;

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
                .filter(|i| i.cluster_name() == cluster.name_any() && i.namespace() == ns)
                .map(|i| ObjectRef::from_obj(i.as_ref()))
                .collect::<Vec<_>>()
        },
    )
    .shutdown_on_signal()
}

/// Runs the PD and TiKV controllers until shutdown. Each kind's controller counts its API
/// requests under its own kind; both share one PD client per cluster.
pub async fn run(client: Client, metrics: Metrics, concurrency: u16, namespace: Option<String>) {
    let pd = Context::pd_registry(&metrics);
    for kind in ["PD", "TiKV"] {
        metrics.declare_failures(kind, context::Error::CATEGORIES);
    }
    let observed = metrics::Observed::register(&metrics);
    let context = |kind: &str| {
        let client = operator_runtime::counted::client(client.clone(), metrics.clone(), kind);
        Arc::new(Context {
            kube: operator_runtime::context::Context::new(client, metrics.clone(), NAME),
            pd: pd.clone(),
            observed: observed.clone(),
        })
    };
    let (pd_ctx, tikv_ctx) = (context("PD"), context("TiKV"));
    let members = controller::<PD>(&pd_ctx.kube.client, concurrency, namespace.as_deref());
    let stores = controller::<TiKV>(&tikv_ctx.kube.client, concurrency, namespace.as_deref());
    metrics::register_state(&metrics, members.store(), stores.store());
    let members = members
        .run(pd::reconcile, context::error_policy::<PD>, pd_ctx)
        .for_each(|_| futures::future::ready(()));
    let stores = stores
        .run(tikv::reconcile, context::error_policy::<TiKV>, tikv_ctx)
        .for_each(|_| futures::future::ready(()));
    tokio::join!(members, stores);
}

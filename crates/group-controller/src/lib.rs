//! The group controller: reconciles PDGroup and TiKVGroup into instance objects (PD, TiKV),
//! Services and ControllerRevisions, and reports the group status. It never talks to PD; the
//! instance controller does, and reports back through instance status.

pub mod build;
pub mod component;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod revision;
pub mod summary;

use std::sync::Arc;
use std::time::Duration;

use api::v1alpha1::{Cluster, GroupStatus, PDGroup, TiKVGroup};
use futures::StreamExt;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use operator_runtime::metrics::Metrics;

use crate::component::GroupKind;
use crate::reconcile::{Context, Error};

/// Name of this controller (field manager suffix, lease, event reporter).
pub const NAME: &str = "group-controller";

/// CRDs this controller needs.
pub const CRDS: &[&str] = &[
    "clusters.core.tikv.org",
    "pdgroups.core.tikv.org",
    "pds.core.tikv.org",
    "tikvgroups.core.tikv.org",
    "tikvs.core.tikv.org",
];

/// Whether a group status says Ready.
pub fn conditions_ready(status: &GroupStatus) -> bool {
    operator_runtime::conditions::is_true(&status.conditions, api::conditions::ready::TYPE)
}

fn error_policy<G: GroupKind>(group: Arc<G>, error: &Error, ctx: Arc<Context>) -> Action {
    // Called outside the reconcile's span: the line names the group itself.
    tracing::warn!(
        %error,
        kind = %G::kind(&()),
        namespace = group.meta().namespace.as_deref().unwrap_or_default(),
        cluster = %group.cluster().name,
        group = %group.name_any(),
        "group reconcile failed"
    );
    ctx.metrics.failure(G::kind(&()).as_ref(), error.category());
    Action::requeue(Duration::from_secs(5))
}

/// The controller of one group kind.
fn controller<G: GroupKind>(client: Client, concurrency: u16, ns: Option<&str>) -> Controller<G> {
    let groups: Api<G> = operator_runtime::scoped_api(client.clone(), ns);
    let controller = Controller::new(groups, watcher::Config::default())
        .with_config(Config::default().concurrency(concurrency));
    let store = controller.store();
    controller
        .owns(
            operator_runtime::scoped_api::<G::Instance>(client.clone(), ns),
            watcher::Config::default(),
        )
        // A Cluster that appears, pauses or resumes wakes the groups that refer to it.
        .watches(
            operator_runtime::scoped_api::<Cluster>(client, ns),
            watcher::Config::default(),
            move |cluster: Cluster| {
                let ns = cluster.namespace();
                store
                    .state()
                    .into_iter()
                    .filter(|g| g.cluster().name == cluster.name_any() && g.namespace() == ns)
                    .map(|g| ObjectRef::from_obj(g.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
}

/// Runs both group controllers until shutdown, over one namespace or all.
pub async fn run(client: Client, metrics: Metrics, concurrency: u16, namespace: Option<String>) {
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), NAME));
    for kind in ["PDGroup", "TiKVGroup"] {
        metrics.declare_failures(kind, reconcile::Error::CATEGORIES);
    }
    let ns = namespace.as_deref();
    let pds = controller::<PDGroup>(client.clone(), concurrency, ns);
    let tikvs = controller::<TiKVGroup>(client, concurrency, ns);
    metrics::register(&metrics, pds.store(), tikvs.store());
    tokio::join!(
        pds.run(reconcile::reconcile, error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(())),
        tikvs
            .run(reconcile::reconcile, error_policy, ctx)
            .for_each(|_| futures::future::ready(()))
    );
}

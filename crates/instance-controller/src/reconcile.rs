//! The thin layer: observe the instance, its Cluster and its pod; apply ConfigMap, PVCs and Pod;
//! report status. PD calls live in [`crate::pd`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::v1alpha1::Cluster;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use operator_runtime::conditions::{self, NewCondition};
pub use operator_runtime::context::Context;
use operator_runtime::ssa;

use crate::kind::{InstanceKind, revision_of};
use crate::pod::{self, CONFIG_FILE};
use crate::{config, status};

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// PD could not be reached or refused.
    #[error("PD: {0}")]
    Pd(#[from] pdclient::Error),
    /// The object has no namespace.
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    /// Low-cardinality category for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Pd(_) => "pd",
            Error::NoNamespace => "invalid",
        }
    }
}

/// What the generic part observed and did, for the kind-specific part.
pub struct Observed {
    /// The Cluster.
    pub cluster: Cluster,
    /// The pod, as it is now (None while it is being created or recreated).
    pub pod: Option<Pod>,
    /// PD's client URL.
    pub pd_url: String,
    /// A condition that blocks progress (missing cluster, bad config, paused...), if any.
    pub blocked: Option<NewCondition>,
}

/// Given the Cluster and pod the caller observed (and decided on), applies ConfigMap, PVCs and
/// Pod unless something blocks it. `pd_url_fallback` is PD's address before the Cluster reports
/// it (PD members use their group's Service).
pub async fn apply_resources<K: InstanceKind>(
    obj: &K,
    ctx: &Context,
    cluster: Option<Cluster>,
    pod: Option<Pod>,
    pd_url_fallback: Option<String>,
    may_delete_pod: bool,
) -> Result<Option<Observed>, Error> {
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    let name = obj.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cluster) = cluster else {
        let msg = format!("Cluster {} does not exist", obj.cluster().name);
        ctx.event(obj, EventType::Warning, "ClusterNotFound", msg.clone())
            .await;
        return Ok(None);
    };
    let pd_url = cluster
        .status
        .as_ref()
        .and_then(|s| s.pd.clone())
        .or(pd_url_fallback);
    let mut observed = Observed {
        cluster,
        pod,
        pd_url: pd_url.clone().unwrap_or_default(),
        blocked: None,
    };

    if observed.cluster.spec.paused {
        observed.blocked = Some(NewCondition::new(
            "Synced",
            false,
            "Paused",
            "the cluster is paused; nothing is changed",
        ));
        return Ok(Some(observed));
    }
    let Some(pd_url) = pd_url else {
        observed.blocked = Some(NewCondition::new(
            "Synced",
            false,
            "WaitingForPD",
            "waiting for the Cluster to report PD's URL",
        ));
        return Ok(Some(observed));
    };
    let rendered = match config::render(obj.config(), K::OWNED_CONFIG_KEYS) {
        Ok(c) => c,
        Err(e) => {
            let first =
                !conditions::has_reason(&current_conditions(obj), "Synced", "InvalidConfig");
            if first {
                ctx.event(obj, EventType::Warning, "InvalidConfig", e.to_string())
                    .await;
            }
            observed.blocked = Some(NewCondition::new(
                "Synced",
                false,
                "InvalidConfig",
                e.to_string(),
            ));
            return Ok(Some(observed));
        }
    };
    let Some(inputs) = obj.pod_inputs(&ns, &pd_url) else {
        observed.blocked = Some(NewCondition::new(
            "Synced",
            false,
            "InvalidSpec",
            "no volume is mounted as type data",
        ));
        return Ok(Some(observed));
    };
    let desired_pod = match pod::build_pod(&inputs) {
        Ok(p) => p,
        Err(e) => {
            ctx.event(obj, EventType::Warning, "InvalidSpec", e.to_string())
                .await;
            observed.blocked = Some(NewCondition::new(
                "Synced",
                false,
                "InvalidSpec",
                e.to_string(),
            ));
            return Ok(Some(observed));
        }
    };

    let owner = inputs.owner.clone();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(inputs.labels.clone()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), rendered)])),
        ..Default::default()
    };
    ssa::apply(
        &Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns),
        &ctx.manager,
        &name,
        &cm,
    )
    .await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for pvc in pod::build_pvcs(
        &name,
        &ns,
        &inputs.labels,
        &owner,
        inputs.volumes,
        inputs.overlay,
    ) {
        ssa::apply(&pvcs, &ctx.manager, &pvc.name_any(), &pvc).await?;
    }

    let suspended = suspended(Some(&observed.cluster));
    match &observed.pod {
        Some(p) if p.meta().deletion_timestamp.is_some() => {}
        Some(p) if suspended || revision_of(p) != revision_of(obj) => {
            if may_delete_pod {
                let why = if suspended {
                    "the cluster is suspended".to_string()
                } else {
                    format!(
                        "its revision is {:?}, want {:?}",
                        revision_of(p),
                        revision_of(obj)
                    )
                };
                // Only the pod the checks were made on: never one that replaced it meanwhile.
                let only_this = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: p.uid(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                pods.delete(&name, &only_this).await?;
                ctx.event(
                    obj,
                    EventType::Normal,
                    "PodDeleted",
                    format!("deleted pod {name}: {why}"),
                )
                .await;
                observed.pod = None;
            }
        }
        // Same revision: the running pod is what we want (its spec is immutable anyway).
        Some(_) => {}
        None if suspended => {
            observed.blocked = Some(NewCondition::new(
                "Synced",
                false,
                "Suspended",
                "the cluster is suspended: no pod runs",
            ));
        }
        None => {
            pods.create(&Default::default(), &desired_pod).await?;
            ctx.event(
                obj,
                EventType::Normal,
                "PodCreated",
                format!("created pod {name}"),
            )
            .await;
        }
    }
    Ok(Some(observed))
}

/// Whether the cluster asks for every pod to be gone.
pub fn suspended(cluster: Option<&Cluster>) -> bool {
    cluster.is_some_and(|c| c.spec.suspends_compute())
}

/// The conditions the object's status holds now.
pub fn current_conditions<K: InstanceKind>(
    obj: &K,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let mut s = obj.status_or_default();
    K::common(&mut s).conditions.clone()
}

/// Writes the status: common fields plus `new` conditions, then kind-specific fields via `fill`.
pub async fn write_status<K: InstanceKind>(
    obj: &K,
    ctx: &Context,
    observed: Option<&Observed>,
    mut new: Vec<NewCondition>,
    fill: impl FnOnce(&mut K::Status),
) -> Result<(), Error> {
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    let mut st = obj.status_or_default();
    let synced = match observed {
        None => NewCondition::new(
            "Synced",
            false,
            "ClusterNotFound",
            format!("Cluster {} does not exist", obj.cluster().name),
        ),
        Some(o) => o
            .blocked
            .clone()
            .unwrap_or_else(|| NewCondition::new("Synced", true, "Synced", "")),
    };
    new.push(synced);
    let generation = obj.meta().generation;
    let pod = observed.and_then(|o| o.pod.as_ref());
    // A pod that cannot run (image, version, command) is the user's to fix: say it once.
    if let Some((reason, message)) = status::pod_problem(pod)
        && !conditions::has_reason(&current_conditions(obj), "Ready", &reason)
    {
        ctx.event(
            obj,
            EventType::Warning,
            "PodCannotRun",
            format!("{reason}: {message}"),
        )
        .await;
    }
    {
        let common = K::common(&mut st);
        common.observed_generation = generation;
        common.conditions =
            conditions::merge(&common.conditions, &new, generation, Time(Timestamp::now()));
        // The pod's revision counts once it runs and is ready.
        if status::pod_ready(pod) {
            common.current_revision = pod.and_then(revision_of);
        }
    }
    fill(&mut st);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    ssa::apply_status(&api, &ctx.manager, &obj.name_any(), &st).await?;
    Ok(())
}

/// Requeue after an error.
pub fn error_policy<K: InstanceKind>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, kind = %K::kind(&()), "instance reconcile failed");
    ctx.metrics.failure(K::kind(&()).as_ref(), error.category());
    Action::requeue(Duration::from_secs(5))
}

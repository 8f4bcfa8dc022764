//! Carries out a [`Plan`], in order: finalizer added, PD requests, ConfigMap and PVCs, the pod,
//! the status (only when it changed, and not for an object that goes), finalizer removed, Events. Decides nothing: the only
//! branches are on what the API server or PD answered.

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use operator_runtime::conditions::{self, NewCondition};
use operator_runtime::{finalizer, ssa};
use pdclient::PdClient;

use super::plan::{Event, FINALIZER, Finalizer, PdOp, PdStep, Plan, PodOp};
use crate::context::{Context, Error};
use crate::kind::InstanceKind;

/// What PD made of a request.
enum Outcome {
    /// It did it.
    Done,
    /// It was so already (member or entry gone, store already a tombstone).
    AlreadyDone,
}

/// Runs `plan` for `obj`; `pd` is the client the facts were read with (the plan asks PD for
/// something only when PD could be asked).
pub async fn run<K: InstanceKind>(
    obj: &K,
    ctx: &Context,
    pd: Option<&PdClient>,
    mut plan: Plan<K>,
) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    let client = ctx.kube.client.clone();
    let instances: Api<K> = Api::namespaced(client.clone(), &ns);
    if plan.finalizer == Finalizer::Add {
        finalizer::set(&instances, obj, FINALIZER, true).await?;
    }

    let mut events: Vec<Event> = Vec::new();
    for PdStep {
        op,
        event,
        on_refusal,
    } in std::mem::take(&mut plan.pd)
    {
        let pd = pd.ok_or(Error::NoPd)?;
        match (request(pd, &op).await, on_refusal) {
            (Ok(Outcome::Done), _) => events.extend(event),
            (Ok(Outcome::AlreadyDone), _) => {}
            (Err(pdclient::Error::Refused { message, .. }), Some(r)) => {
                if let Some(status) = plan.status.as_mut() {
                    let refused = NewCondition::new(r.condition, false, r.reason, message.clone());
                    let generation = obj.meta().generation;
                    let common = K::common(status);
                    common.conditions = conditions::merge(
                        &common.conditions,
                        &[refused],
                        generation,
                        Time(Timestamp::now()),
                    );
                }
                events.push(Event::warning(r.event, message));
            }
            (Err(e), _) => return Err(e.into()),
        }
    }

    if let Some((config_map, pvcs)) = &plan.apply {
        let name = obj.name_any();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        ssa::apply(&cms, &ctx.kube.manager, &name, config_map).await?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        for pvc in pvcs {
            ssa::apply(&claims, &ctx.kube.manager, &pvc.name_any(), pvc).await?;
        }
    }

    let pods: Api<Pod> = Api::namespaced(client, &ns);
    match &plan.pod {
        PodOp::Keep => {}
        PodOp::Create(pod) => match pods.create(&PostParams::default(), pod).await {
            // Created meanwhile by an earlier reconcile that our cache had not seen.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => drop(other?),
        },
        PodOp::Delete { uid } => {
            let only_this = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match pods.delete(&obj.name_any(), &only_this).await {
                // Gone already, or replaced by another pod: not ours to delete.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                other => drop(other?),
            }
        }
    }

    // Not for an object about to go: the write would only make the finalizer's patch conflict.
    if let Some(status) = &plan.status
        && plan.finalizer != Finalizer::Remove
        && *status != obj.status_or_default()
    {
        ssa::apply_status(&instances, &ctx.kube.manager, &obj.name_any(), status).await?;
    }
    if plan.finalizer == Finalizer::Remove {
        finalizer::set(&instances, obj, FINALIZER, false).await?;
    }
    for e in events.into_iter().chain(plan.events) {
        ctx.kube.event(obj, e.type_, e.reason, e.note).await;
    }
    let labels = crate::metrics::GroupLabels::of(obj);
    for o in &plan.observe {
        ctx.observed.record(&labels, o);
    }
    Ok(plan.requeue)
}

/// Sends one PD request.
async fn request(pd: &PdClient, op: &PdOp) -> Result<Outcome, pdclient::Error> {
    let done = |r: Result<(), pdclient::Error>| r.map(|()| Outcome::Done);
    let or_gone = |r: Result<(), pdclient::Error>| match r {
        Err(e) if e.is_not_found() => Ok(Outcome::AlreadyDone),
        other => done(other),
    };
    match op {
        PdOp::TransferLeader { to } => done(pd.transfer_leader(to).await),
        PdOp::RemoveMember { name } => or_gone(pd.delete_member(name).await),
        PdOp::StartEviction { store } => done(pd.add_evict_leader(*store).await),
        PdOp::EndEviction { store } => or_gone(pd.remove_evict_leader(*store).await),
        PdOp::RemoveStore { store } => match pd.delete_store(*store).await {
            // 410: the store is a tombstone already.
            Err(pdclient::Error::Refused { status: 410, .. }) => Ok(Outcome::AlreadyDone),
            other => or_gone(other),
        },
        PdOp::CancelRemoval { store } => done(pd.cancel_delete_store(*store).await),
    }
}

/// Tracing fields of a reconcile: which object it is about.
pub fn span<K: InstanceKind>(obj: &K) -> tracing::Span {
    tracing::info_span!(
        "reconcile",
        kind = %K::kind(&()),
        namespace = %obj.meta().namespace.as_deref().unwrap_or_default(),
        cluster = %obj.cluster_name(),
        group = %crate::kind::group_of(obj).unwrap_or_default(),
        instance = %obj.meta().name.as_deref().unwrap_or_default(),
    )
}

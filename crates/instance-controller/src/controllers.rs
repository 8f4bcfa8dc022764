//! The PD and TiKV reconcilers: the generic resource layer plus what each asks of PD.

use std::sync::Arc;
use std::time::Duration;

use api::v1alpha1::{PD, TiKV};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use operator_runtime::conditions::NewCondition;

use crate::component::tikv_address;
use crate::kind::{InstanceKind, group_of, pd_service_url};
use crate::pd::Pd;
use crate::reconcile::{Context, Error, Observed, apply_resources, write_status};
use crate::status;

/// Finalizer on instances whose removal must first clean PD (members, stores).
pub const FINALIZER: &str = "core.tikv.org/pd-cleanup";

async fn set_finalizer<K: InstanceKind>(
    obj: &K,
    ctx: &Context,
    present: bool,
) -> Result<(), Error> {
    let has = obj.finalizers().iter().any(|f| f == FINALIZER);
    if has == present {
        return Ok(());
    }
    let mut finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let api: Api<K> = Api::namespaced(
        ctx.client.clone(),
        &obj.namespace().ok_or(Error::NoNamespace)?,
    );
    // Carrying the resourceVersion makes this fail (and retry) if someone else changed the list.
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Whether PD state can no longer matter: the Cluster is gone or going.
async fn cluster_gone<K: InstanceKind>(obj: &K, ctx: &Context) -> Result<bool, Error> {
    let api: Api<api::v1alpha1::Cluster> = Api::namespaced(
        ctx.client.clone(),
        &obj.namespace().ok_or(Error::NoNamespace)?,
    );
    Ok(api
        .get_opt(&obj.cluster().name)
        .await?
        .is_none_or(|c| c.meta().deletion_timestamp.is_some()))
}

/// Reconciles a PD member.
pub async fn reconcile_pd(pd: Arc<PD>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("PD");
    let ns = pd.namespace().ok_or(Error::NoNamespace)?;
    let group = group_of(pd.as_ref()).unwrap_or_default();
    let fallback = pd_service_url(&group, &ns, pd.spec.template.server.ports.client.port);
    if pd.meta().deletion_timestamp.is_some() {
        if !cluster_gone(pd.as_ref(), &ctx).await? {
            let client = Pd::new(&fallback)?;
            if client.remove_member(&pd.name_any()).await? {
                ctx.event(
                    pd.as_ref(),
                    EventType::Normal,
                    "MemberRemoved",
                    format!("removed PD member {}", pd.name_any()),
                )
                .await;
            }
        }
        set_finalizer(pd.as_ref(), &ctx, false).await?;
        return Ok(Action::await_change());
    }
    set_finalizer(pd.as_ref(), &ctx, true).await?;
    let observed = apply_resources(pd.as_ref(), &ctx, Some(fallback.clone()), true).await?;
    let member = match &observed {
        Some(Observed {
            pod: Some(_),
            pd_url,
            ..
        }) if !pd_url.is_empty() => Pd::new(pd_url)?.member(&pd.name_any()).await.ok().flatten(),
        _ => None,
    };
    let ready = status::pd_ready(
        observed.as_ref().and_then(|o| o.pod.as_ref()),
        member.as_ref(),
    );
    let is_ready = ready.status == "True";
    write_status(pd.as_ref(), &ctx, observed.as_ref(), vec![ready], |s| {
        s.id = member.as_ref().map(|m| m.id.to_string());
        s.is_leader = member.as_ref().is_some_and(|m| m.leader);
        s.health = member.as_ref().is_some_and(|m| m.healthy);
    })
    .await?;
    // PD leadership moves without any Kubernetes event; look again regularly.
    Ok(Action::requeue(Duration::from_secs(if is_ready {
        15
    } else {
        3
    })))
}

/// Reconciles a TiKV store.
pub async fn reconcile_tikv(tikv: Arc<TiKV>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("TiKV");
    let ns = tikv.namespace().ok_or(Error::NoNamespace)?;
    let deleting = tikv.meta().deletion_timestamp.is_some();
    if deleting && cluster_gone(tikv.as_ref(), &ctx).await? {
        set_finalizer(tikv.as_ref(), &ctx, false).await?;
        return Ok(Action::await_change());
    }
    if !deleting {
        set_finalizer(tikv.as_ref(), &ctx, true).await?;
    }
    let leaving = deleting || tikv.spec.offline;
    // A leaving store keeps its pod: it must stay up for PD to move its regions away.
    let observed = if deleting {
        None
    } else {
        apply_resources(tikv.as_ref(), &ctx, None, !leaving).await?
    };
    let pd_url = match &observed {
        Some(o) if !o.pd_url.is_empty() => Some(o.pd_url.clone()),
        _ => Api::<api::v1alpha1::Cluster>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&tikv.spec.cluster.name)
            .await?
            .and_then(|c| c.status.and_then(|s| s.pd)),
    };
    let address = tikv_address(tikv.as_ref(), &ns);
    let client = pd_url.as_deref().map(Pd::new).transpose()?;
    // No PD URL means no pod was ever started, so no store can exist. But PD not answering
    // says nothing about the store: a leaving store must then wait, never count as removed.
    let store = match &client {
        Some(c) => match c.store_by_address(&address).await {
            Ok(s) => s,
            Err(e) if leaving => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, store = %address, "cannot ask PD about the store");
                None
            }
        },
        None => None,
    };

    let mut conditions = Vec::new();
    if let (Some(c), Some(s)) = (&client, &store) {
        if leaving && s.state != "Tombstone" && s.state != "Offline" {
            match c.remove_store(s.id).await {
                Ok(()) => {
                    ctx.event(
                        tikv.as_ref(),
                        EventType::Normal,
                        "StoreRemoving",
                        format!(
                            "asked PD to remove store {}; its regions move to other stores",
                            s.id
                        ),
                    )
                    .await
                }
                Err(pdclient::Error::Refused { message, .. }) => {
                    ctx.event(
                        tikv.as_ref(),
                        EventType::Warning,
                        "StoreRemovalRefused",
                        message.clone(),
                    )
                    .await;
                    conditions.push(NewCondition::new("Offlined", false, "Refused", message));
                }
                Err(e) => return Err(e.into()),
            }
        } else if !leaving && s.state == "Offline" {
            c.cancel_store_removal(s.id).await?;
            ctx.event(
                tikv.as_ref(),
                EventType::Normal,
                "StoreRemovalCancelled",
                format!("store {} is Up again", s.id),
            )
            .await;
        }
    }
    let removed = store.as_ref().is_none_or(|s| s.state == "Tombstone");
    if leaving && conditions.is_empty() {
        conditions.push(if removed {
            NewCondition::new("Offlined", true, "Removed", "PD has removed the store")
        } else {
            NewCondition::new(
                "Offlined",
                false,
                "Removing",
                format!(
                    "PD is moving {} regions away",
                    store.as_ref().map_or(0, |s| s.region_count)
                ),
            )
        });
    }
    if deleting {
        if removed {
            set_finalizer(tikv.as_ref(), &ctx, false).await?;
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    conditions.push(status::tikv_ready(
        observed.as_ref().and_then(|o| o.pod.as_ref()),
        store.as_ref(),
    ));
    let is_ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    write_status(tikv.as_ref(), &ctx, observed.as_ref(), conditions, |s| {
        s.id = store.as_ref().map(|st| st.id.to_string());
        s.state = store.as_ref().map(|st| st.state.clone());
        s.leader_count = store.as_ref().map(|st| st.leader_count);
        s.region_count = store.as_ref().map(|st| st.region_count);
    })
    .await?;
    Ok(Action::requeue(Duration::from_secs(
        if is_ready && !leaving { 10 } else { 2 },
    )))
}

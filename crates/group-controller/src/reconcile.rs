//! The thin layer that observes, calls the pure planners, and applies their decisions.

use std::sync::Arc;
use std::time::Duration;

use api::conditions::{synced, zone_by_zone};
use api::events;
use api::v1alpha1::{Cluster, PDGroup, TiKVGroup, UpdateMode, UpgradePolicy};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use operator_runtime::conditions::{self, NewCondition};
pub use operator_runtime::context::Context;
use operator_runtime::ssa;

use crate::build;
use crate::component::GroupKind;
use crate::plan::{self, Action, GroupView};
use crate::revision;

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace (the CRDs are namespaced, so this is a bug or a bad object).
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

/// Requeue of a group whose Cluster does not exist (its creation wakes the group anyway).
const CLUSTER_MISSING: Duration = Duration::from_secs(30);
/// Requeue while something outside the group's watches may move: TiKV waiting for PD's rollout
/// (PDGroups are not watched here), a store Down during its failover period.
const WATCH_CLOSELY: Duration = Duration::from_secs(2);
/// Requeue of a group still changing; instance changes wake it through the owner watch anyway.
const CHANGING: Duration = Duration::from_secs(15);
/// Requeue of a settled group: a safety net.
const SETTLED: Duration = Duration::from_secs(300);

/// Random-enough lowercase suffix for instance names, from the clock and a counter.
pub fn new_instance_name(group: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = Timestamp::now().as_nanosecond() as u64
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e3779b97f4a7c15);
    let mut x = seed.wrapping_mul(0x2545f4914f6cdd1d) ^ (seed >> 29);
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..6)
        .map(|_| {
            let c = alphabet[(x % alphabet.len() as u64) as usize] as char;
            x /= alphabet.len() as u64;
            c
        })
        .collect();
    format!("{group}-{suffix}")
}

/// Reconciles one group.
#[tracing::instrument(skip_all, fields(
    kind = %G::kind(&()),
    namespace = %group.meta().namespace.as_deref().unwrap_or_default(),
    cluster = %group.cluster().name,
    group = %group.name_any(),
))]
pub async fn reconcile<G: GroupKind>(group: Arc<G>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let _timer = ctx.metrics.reconcile(G::kind(&()).as_ref());
    let ns = group.namespace().ok_or(Error::NoNamespace)?;
    let name = group.name_any();
    let groups: Api<G> = Api::namespaced(ctx.client.clone(), &ns);
    let protected = G::COMPONENT == "pd";
    let has_finalizer = group.finalizers().iter().any(|f| f == GROUP_PROTECTION);
    if group.meta().deletion_timestamp.is_some() {
        // Instances, services and revisions go through owner references.
        if protected && has_finalizer {
            return guard_pd_deletion(group.as_ref(), &groups, &ctx, &ns).await;
        }
        return Ok(Requeue::await_change());
    }
    if protected && !has_finalizer {
        let mut finalizers = group.finalizers().to_vec();
        finalizers.push(GROUP_PROTECTION.to_string());
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers, "resourceVersion": group.resource_version()}});
        merge_patch(&groups, &ctx.manager, &name, &patch).await?;
    }
    let instances_api: Api<G::Instance> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Time(Timestamp::now());

    let cluster_name = &group.cluster().name;
    let Some(cluster) = Api::<Cluster>::namespaced(ctx.client.clone(), &ns)
        .get_opt(cluster_name)
        .await?
    else {
        let msg = format!("Cluster {cluster_name} does not exist in namespace {ns}");
        ctx.event(
            group.as_ref(),
            EventType::Warning,
            events::CLUSTER_NOT_FOUND,
            msg.clone(),
        )
        .await;
        let synced = NewCondition::new(synced::TYPE, false, synced::CLUSTER_NOT_FOUND, msg);
        let status = build::status(group.as_ref(), &[], "", None, synced, now);
        ssa::apply_status(&groups, &ctx.manager, &name, &status).await?;
        return Ok(Requeue::requeue(CLUSTER_MISSING));
    };

    let selector = api::labels::selector_string(&api::labels::group_selector(
        cluster_name,
        G::COMPONENT,
        &name,
    ));
    let instances = instances_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let (update_revision, collisions) =
        ensure_revision(&ctx, group.as_ref(), &ns, &cluster).await?;
    let collisions = Some(collisions);
    let mut views: Vec<_> = instances.iter().map(G::view).collect();

    if cluster.spec.paused {
        let synced = NewCondition::new(
            synced::TYPE,
            false,
            synced::PAUSED,
            "The cluster is paused: nothing is changed",
        );
        let status = build::status(
            group.as_ref(),
            &views,
            &update_revision,
            collisions,
            synced,
            now,
        );
        ssa::apply_status(&groups, &ctx.manager, &name, &status).await?;
        return Ok(Requeue::await_change());
    }

    for svc in build::services(group.as_ref()) {
        let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
        ssa::apply(&api, &ctx.manager, &svc.name_any(), &svc).await?;
    }
    let pdb =
        build::disruption_budget(group.as_ref(), views.iter().filter(|v| !v.deleting).count());
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
    ssa::apply(&api, &ctx.manager, &pdb.name_any(), &pdb).await?;

    let topologies = group
        .schedule_policy()
        .and_then(|p| p.evenly_spread.as_ref())
        .map(|e| e.topologies.as_slice())
        .unwrap_or(&[]);
    let pd_pending = if G::COMPONENT == "tikv"
        && cluster.spec.upgrade_policy == UpgradePolicy::Default
        && views
            .iter()
            .any(|v| !v.offline && v.revision.as_deref() != Some(update_revision.as_str()))
    {
        let pd_groups: Vec<PDGroup> = Api::<PDGroup>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|g| g.spec.cluster.name == *cluster_name)
            .collect();
        plan::pd_rollout_pending(&pd_groups)
    } else {
        None
    };
    // ZoneByZone only where restarting a whole zone cannot cost a region its quorum.
    let zone_mode = (G::COMPONENT == "tikv"
        && group.update_policy().mode == UpdateMode::ZoneByZone)
        .then(|| {
            plan::zone_by_zone_unsafe(
                cluster.status.as_ref().and_then(|s| s.replication.as_ref()),
                &views,
            )
        });
    let zone_by_zone = matches!(zone_mode, Some(None));
    // The cluster's last stores are never scaled to 0: their data would go nowhere.
    let live = views.iter().filter(|v| !v.deleting && !v.offline).count();
    let desired = usize::try_from(group.replicas()).unwrap_or(0);
    let all_stores = if G::COMPONENT == "tikv" && desired == 0 && live > 0 {
        let others: usize = other_groups::<TiKVGroup>(&ctx, &ns, cluster_name, &name)
            .await?
            .iter()
            .map(|g| usize::try_from(g.spec.replicas).unwrap_or(0))
            .sum();
        plan::removes_all_stores(desired, live, others)
    } else {
        None
    };
    let view = GroupView {
        desired: if all_stores.is_some() { live } else { desired },
        update_revision: &update_revision,
        max_unavailable: usize::try_from(group.update_policy().max_unavailable)
            .unwrap_or(1)
            .max(1),
        quorum: G::QUORUM,
        topologies,
        two_step_scale_in: G::TWO_STEP_SCALE_IN,
        hold_updates: pd_pending.is_some(),
        failover: group.failover(),
        zone_by_zone,
        now: now.0.as_second(),
    };
    let actions = plan::plan(&view, &views, || new_instance_name(&name));

    // The first PD members bootstrap the cluster together; later ones join it.
    let bootstrapping = G::COMPONENT == "pd"
        && cluster
            .status
            .as_ref()
            .and_then(|s| s.id.as_ref())
            .is_none()
        && views.iter().all(|v| v.deleting);
    let initial_members: Vec<String> = if bootstrapping {
        actions
            .iter()
            .filter_map(|a| {
                if let Action::Create { name, .. } = a {
                    Some(name.clone())
                } else {
                    None
                }
            })
            .collect()
    } else {
        Vec::new()
    };

    // What the instances need from the update policy, outside their template, kept current.
    for instance in instances
        .iter()
        .filter(|i| i.meta().deletion_timestamp.is_none())
    {
        if let Some(patch) = group.restart_patch(instance, zone_by_zone) {
            merge_patch(&instances_api, &ctx.manager, &instance.name_any(), &patch).await?;
        }
    }

    for action in &actions {
        match action {
            Action::Create {
                name: iname,
                topology,
                replacement_for,
            } => {
                let mut obj = group.build_instance(
                    iname,
                    topology.clone(),
                    &initial_members,
                    None,
                    zone_by_zone,
                );
                api::labels::set_revision(obj.meta_mut(), &update_revision);
                if let Some(target) = replacement_for {
                    obj.meta_mut()
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(api::labels::REPLACEMENT_FOR.to_string(), target.clone());
                    let note = format!(
                        "{target} has been Down for longer than the failover period: {iname} replaces it"
                    );
                    ctx.event(
                        group.as_ref(),
                        EventType::Warning,
                        events::FAILOVER_REPLACEMENT,
                        note,
                    )
                    .await;
                }
                instances_api
                    .create(
                        &PostParams {
                            field_manager: Some(ctx.manager.clone()),
                            ..Default::default()
                        },
                        &obj,
                    )
                    .await?;
                ctx.event(
                    group.as_ref(),
                    EventType::Normal,
                    events::INSTANCE_CREATED,
                    format!("Created {} {iname}", G::Instance::kind(&())),
                )
                .await;
                views.push(G::view(&obj));
            }
            Action::Update { name: iname } => {
                let existing = instances.iter().find(|i| i.name_any() == *iname);
                let mut obj = group.build_instance(iname, None, &[], existing, zone_by_zone);
                api::labels::set_revision(obj.meta_mut(), &update_revision);
                ssa::apply(&instances_api, &ctx.manager, iname, &obj).await?;
                ctx.event(
                    group.as_ref(),
                    EventType::Normal,
                    events::INSTANCE_UPDATING,
                    format!("Updating {iname} to revision {update_revision}"),
                )
                .await;
            }
            Action::SetOffline {
                name: iname,
                offline,
            } => {
                // Only `spec.offline`: the store keeps the spec and revision it runs, even when
                // the template changed meanwhile (it is not updated on its way out).
                let patch = serde_json::json!({"spec": {"offline": offline}});
                merge_patch(&instances_api, &ctx.manager, iname, &patch).await?;
                let (reason, note) = if *offline {
                    (
                        events::SCALE_IN_STARTED,
                        format!(
                            "Taking {iname} offline: PD moves its data away before it is deleted"
                        ),
                    )
                } else {
                    (
                        events::SCALE_IN_CANCELLED,
                        format!("Cancelled the removal of {iname}"),
                    )
                };
                ctx.event(group.as_ref(), EventType::Normal, reason, note)
                    .await;
            }
            Action::Adopt { name: iname } => {
                // Merge patch: the mark was written at creation, not by server-side apply.
                let unmark = serde_json::json!({"metadata": {"annotations": {api::labels::REPLACEMENT_FOR: null}}});
                merge_patch(&instances_api, &ctx.manager, iname, &unmark).await?;
                let note =
                    format!("The store {iname} stood in for is gone: {iname} takes its place");
                ctx.event(
                    group.as_ref(),
                    EventType::Normal,
                    events::FAILOVER_REPLACEMENT_ADOPTED,
                    note,
                )
                .await;
            }
            Action::Delete { name: iname } => {
                instances_api
                    .delete(iname, &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .or_else(ignore_not_found)?;
                ctx.event(
                    group.as_ref(),
                    EventType::Normal,
                    events::INSTANCE_DELETED,
                    format!("Deleted {} {iname}", G::Instance::kind(&())),
                )
                .await;
            }
        }
    }

    let held = pd_pending.is_some();
    let synced = match (all_stores, pd_pending) {
        (Some(why), _) => {
            let first = group.status().is_none_or(|s| {
                !conditions::has_reason(
                    &s.conditions,
                    synced::TYPE,
                    synced::WOULD_REMOVE_ALL_STORES,
                )
            });
            if first {
                ctx.event(
                    group.as_ref(),
                    EventType::Warning,
                    events::WOULD_REMOVE_ALL_STORES,
                    why.clone(),
                )
                .await;
            }
            NewCondition::new(synced::TYPE, false, synced::WOULD_REMOVE_ALL_STORES, why)
        }
        (None, Some(why)) => {
            let first = group.status().is_none_or(|s| {
                !conditions::has_reason(&s.conditions, synced::TYPE, synced::WAITING_FOR_PD)
            });
            if first {
                ctx.event(
                    group.as_ref(),
                    EventType::Normal,
                    events::WAITING_FOR_PD,
                    why.clone(),
                )
                .await;
            }
            NewCondition::new(synced::TYPE, false, synced::WAITING_FOR_PD, why)
        }
        (None, None) => NewCondition::new(synced::TYPE, true, synced::SYNCED, ""),
    };
    let mut status = build::status(
        group.as_ref(),
        &views,
        &update_revision,
        collisions,
        synced,
        now.clone(),
    );
    if let Some(unsafe_why) = zone_mode {
        let c = match unsafe_why {
            None => NewCondition::new(
                zone_by_zone::TYPE,
                true,
                zone_by_zone::SAFE,
                "Stores restart a zone at a time",
            ),
            Some(why) => {
                let first = group.status().is_none_or(|s| {
                    !conditions::has_reason(&s.conditions, zone_by_zone::TYPE, zone_by_zone::UNSAFE)
                });
                if first {
                    let note =
                        format!("ZoneByZone is not safe, restarting one store at a time: {why}");
                    ctx.event(
                        group.as_ref(),
                        EventType::Warning,
                        events::ZONE_BY_ZONE_UNSAFE,
                        note,
                    )
                    .await;
                }
                NewCondition::new(zone_by_zone::TYPE, false, zone_by_zone::UNSAFE, why)
            }
        };
        status.conditions =
            conditions::merge(&status.conditions, &[c], group.meta().generation, now);
    }
    let settled = crate::conditions_ready(&status) && actions.is_empty();
    ssa::apply_status(&groups, &ctx.manager, &name, &status).await?;
    // Failover periods end without any event: while a store is Down, look again soon.
    let failover_pending = view.failover.is_some() && views.iter().any(|v| v.down_since.is_some());
    Ok(Requeue::requeue(if held || failover_pending {
        WATCH_CLOSELY
    } else if settled {
        SETTLED
    } else {
        CHANGING
    }))
}

/// The other groups of kind `K` of Cluster `cluster` that are not being deleted.
async fn other_groups<K: GroupKind>(
    ctx: &Context,
    ns: &str,
    cluster: &str,
    name: &str,
) -> Result<Vec<K>, kube::Error> {
    Ok(Api::<K>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|g| {
            g.cluster().name == cluster
                && g.name_any() != name
                && g.meta().deletion_timestamp.is_none()
        })
        .collect())
}

/// The finalizer that keeps the only PD group of a live Cluster from being deleted by accident.
pub const GROUP_PROTECTION: &str = "core.tikv.org/group-protection";

/// A PD group being deleted: refused (finalizer kept, `Synced=False/DeletionRefused`, a Warning
/// Event) while it is the only one of a Cluster that is not itself being deleted; its instances
/// are untouched meanwhile. Released once the Cluster is deleted or another PD group exists.
async fn guard_pd_deletion<G: GroupKind>(
    group: &G,
    groups: &Api<G>,
    ctx: &Context,
    ns: &str,
) -> Result<Requeue, Error> {
    let name = group.name_any();
    let cluster_name = &group.cluster().name;
    let cluster_live = Api::<Cluster>::namespaced(ctx.client.clone(), ns)
        .get_opt(cluster_name)
        .await?
        .is_some_and(|c| c.metadata.deletion_timestamp.is_none());
    let others = other_groups::<PDGroup>(ctx, ns, cluster_name, &name)
        .await?
        .len();
    let Some(why) = plan::pd_deletion_refused(cluster_live, others) else {
        let finalizers: Vec<&String> = group
            .finalizers()
            .iter()
            .filter(|f| *f != GROUP_PROTECTION)
            .collect();
        let patch = serde_json::json!({"metadata": {
            "finalizers": finalizers, "resourceVersion": group.resource_version()}});
        merge_patch(groups, &ctx.manager, &name, &patch).await?;
        return Ok(Requeue::await_change());
    };
    let mut status = group.status().cloned().unwrap_or_default();
    if !conditions::has_reason(&status.conditions, synced::TYPE, synced::DELETION_REFUSED) {
        ctx.event(
            group,
            EventType::Warning,
            events::DELETION_REFUSED,
            why.clone(),
        )
        .await;
    }
    let c = NewCondition::new(synced::TYPE, false, synced::DELETION_REFUSED, why);
    status.conditions = conditions::merge(
        &status.conditions,
        &[c],
        group.meta().generation,
        Time(Timestamp::now()),
    );
    ssa::apply_status(groups, &ctx.manager, &name, &status).await?;
    // A new PD group wakes nothing here: look again now and then.
    Ok(Requeue::requeue(CLUSTER_MISSING))
}

/// Changes only the fields in `patch` (a JSON merge patch), as `manager`: server-side apply
/// would take the whole object the manager owns.
async fn merge_patch<K>(
    api: &Api<K>,
    manager: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::Merge(patch))
        .await
        .map(drop)
}

fn ignore_not_found(e: kube::Error) -> Result<(), kube::Error> {
    match e {
        kube::Error::Api(ref s) if s.code == 404 => Ok(()),
        e => Err(e),
    }
}

/// Stores the template as a ControllerRevision and returns its name (the update revision) and
/// the collision count that gave it, for the status. Older revisions beyond the cluster's
/// history limit are removed.
async fn ensure_revision<G: GroupKind>(
    ctx: &Context,
    group: &G,
    ns: &str,
    cluster: &Cluster,
) -> Result<(String, i32), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), ns);
    let labels = build::revision_labels(group);
    let template = group.template();
    let existing = api
        .list(&ListParams::default().labels(&api::labels::selector_string(&labels)))
        .await?
        .items;
    let mut collision = group.status().and_then(|s| s.collision_count).unwrap_or(0);
    let name = loop {
        let candidate = revision::revision_name(&group.name_any(), &template, collision);
        match existing.iter().find(|r| r.name_any() == candidate) {
            Some(r) if r.data.as_ref().map(|d| &d.0) != Some(&template) => collision += 1,
            _ => break candidate,
        }
    };
    if !existing.iter().any(|r| r.name_any() == name) {
        let next = existing.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let rev = ControllerRevision {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                owner_references: group.controller_owner_ref(&()).map(|o| vec![o]),
                ..Default::default()
            },
            data: Some(RawExtension(template)),
            revision: next,
        };
        match api.create(&PostParams::default(), &rev).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let limit = usize::try_from(cluster.spec.revision_history_limit).unwrap_or(0);
    let in_use: Vec<String> = group
        .status()
        .and_then(|s| s.current_revision.clone())
        .into_iter()
        .chain([name.clone()])
        .collect();
    let mut old: Vec<&ControllerRevision> = existing
        .iter()
        .filter(|r| !in_use.contains(&r.name_any()))
        .collect();
    old.sort_by_key(|r| r.revision);
    for r in old.iter().take(old.len().saturating_sub(limit)) {
        api.delete(&r.name_any(), &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(ignore_not_found)?;
    }
    Ok((name, collision))
}

//! What differs between PD and TiKV groups, behind one trait so that the group logic is written
//! once.

use std::collections::BTreeMap;
use std::fmt::Debug;

use api::conditions::{leaders_transferred_back, offlined, store_down};
use api::v1alpha1::{
    ClusterReference, GroupStatus, InstanceStatus, PD, PDGroup, PDSpec, SchedulePolicy,
    StoreRestart, TiKV, TiKVGroup, TiKVSpec, UpdatePolicy,
};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use operator_runtime::conditions;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::plan::InstanceView;

/// A group kind (PDGroup or TiKVGroup) and the instance kind it manages.
pub trait GroupKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The instance kind.
    type Instance: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// `pd` or `tikv`, for labels and names.
    const COMPONENT: &'static str;
    /// TiKV removes stores in two steps; PD deletes members directly.
    const TWO_STEP_SCALE_IN: bool;
    /// The instances form a quorum (PD): they restart one at a time.
    const QUORUM: bool;
    /// Named ports of the headless peer Service.
    fn ports(&self) -> Vec<(&'static str, i32)>;
    /// The Cluster reference.
    fn cluster(&self) -> &ClusterReference;
    /// `spec.replicas`.
    fn replicas(&self) -> i32;
    /// `spec.template` as JSON (what the revision hashes).
    fn template(&self) -> serde_json::Value;
    /// Version in the template.
    fn version(&self) -> &str;
    /// Update policy.
    fn update_policy(&self) -> &UpdatePolicy;
    /// Scheduling policy.
    fn schedule_policy(&self) -> Option<&SchedulePolicy>;
    /// Failover settings, when enabled (TiKV only).
    fn failover(&self) -> Option<crate::plan::Failover> {
        None
    }
    /// Status, if any.
    fn status(&self) -> Option<&GroupStatus>;
    /// Builds the instance as the group wants it. `existing` is the current object, if any, for
    /// what is fixed at creation (topology, PD initial members) or changes on its own path
    /// (`offline`). `zone_by_zone`: the group restarts whole zones together.
    fn build_instance(
        &self,
        name: &str,
        topology: Option<BTreeMap<String, String>>,
        initial_members: &[String],
        existing: Option<&Self::Instance>,
        zone_by_zone: bool,
    ) -> Self::Instance;
    /// The planner's view of an instance.
    fn view(instance: &Self::Instance) -> InstanceView;
    /// A merge patch that brings what the instance needs from the group's update policy outside
    /// the template (TiKV: `spec.restart`) up to date; `None` when it is.
    fn restart_patch(
        &self,
        _instance: &Self::Instance,
        _zone_by_zone: bool,
    ) -> Option<serde_json::Value> {
        None
    }
}

/// Name of the headless Service that gives every pod of a group its stable DNS name.
pub fn peer_service_name(group: &str) -> String {
    format!("{group}-peer")
}

/// The view of the common parts of an instance.
fn common_view(meta: &kube::api::ObjectMeta, status: Option<&InstanceStatus>) -> InstanceView {
    let revision = api::labels::revision(meta);
    InstanceView {
        name: meta.name.clone().unwrap_or_default(),
        ready: status.is_some_and(|s| s.ready_at(revision)),
        revision: revision.map(String::from),
        deleting: meta.deletion_timestamp.is_some(),
        preferred_victim: meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(api::labels::SCALE_IN_PREFERRED)),
        replacement_for: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(api::labels::REPLACEMENT_FOR))
            .cloned(),
        ..Default::default()
    }
}

/// Metadata of an instance object: labels (selector, template labels, revision) and the owner.
fn instance_meta<G: Resource<DynamicType = ()>>(
    group: &G,
    cluster: &str,
    component: &str,
    name: &str,
    template_meta: Option<&api::v1alpha1::ObjectMeta>,
) -> kube::api::ObjectMeta {
    let group_name = group.meta().name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> =
        template_meta.map(|m| m.labels.clone()).unwrap_or_default();
    labels.extend(api::labels::group_selector(cluster, component, &group_name));
    labels.insert(api::labels::INSTANCE_NAME.to_string(), name.to_string());
    kube::api::ObjectMeta {
        name: Some(name.to_string()),
        namespace: group.meta().namespace.clone(),
        labels: Some(labels),
        annotations: template_meta
            .map(|m| m.annotations.clone())
            .filter(|a| !a.is_empty()),
        owner_references: group.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The accessors whose field paths PDGroup and TiKVGroup share.
macro_rules! group_spec_accessors {
    () => {
        fn cluster(&self) -> &ClusterReference {
            &self.spec.cluster
        }
        fn replicas(&self) -> i32 {
            self.spec.replicas
        }
        fn template(&self) -> serde_json::Value {
            serde_json::to_value(&self.spec.template).unwrap_or_default()
        }
        fn version(&self) -> &str {
            &self.spec.template.spec.version
        }
        fn update_policy(&self) -> &UpdatePolicy {
            &self.spec.update_policy
        }
        fn schedule_policy(&self) -> Option<&SchedulePolicy> {
            self.spec.schedule_policy.as_ref()
        }
        fn status(&self) -> Option<&GroupStatus> {
            self.status.as_ref()
        }
    };
}

impl GroupKind for PDGroup {
    type Instance = PD;
    const COMPONENT: &'static str = "pd";
    const TWO_STEP_SCALE_IN: bool = false;
    const QUORUM: bool = true;

    fn ports(&self) -> Vec<(&'static str, i32)> {
        let p = &self.spec.template.spec.server.ports;
        vec![("client", p.client.port), ("peer", p.peer.port)]
    }
    group_spec_accessors!();
    fn build_instance(
        &self,
        name: &str,
        topology: Option<BTreeMap<String, String>>,
        initial_members: &[String],
        existing: Option<&PD>,
        _zone_by_zone: bool,
    ) -> PD {
        let group = self.meta().name.clone().unwrap_or_default();
        let spec = PDSpec {
            cluster: self.spec.cluster.clone(),
            topology: existing
                .map(|e| e.spec.topology.clone())
                .unwrap_or(topology),
            subdomain: peer_service_name(&group),
            initial_members: existing
                .map(|e| e.spec.initial_members.clone())
                .unwrap_or_else(|| initial_members.to_vec()),
            template: self.spec.template.spec.clone(),
        };
        let mut pd = PD::new(name, spec);
        pd.metadata = instance_meta(
            self,
            &self.spec.cluster.name,
            Self::COMPONENT,
            name,
            self.spec.template.metadata.as_ref(),
        );
        pd
    }
    fn view(pd: &PD) -> InstanceView {
        let status = pd.status.as_ref();
        InstanceView {
            leader: status.is_some_and(|s| s.is_leader),
            topology: pd.spec.topology.clone(),
            activity: crate::summary::pd_activity(pd),
            ..common_view(&pd.metadata, status.map(|s| &s.common))
        }
    }
}

impl GroupKind for TiKVGroup {
    type Instance = TiKV;
    const COMPONENT: &'static str = "tikv";
    const TWO_STEP_SCALE_IN: bool = true;
    const QUORUM: bool = false;

    fn ports(&self) -> Vec<(&'static str, i32)> {
        let p = &self.spec.template.spec.server.ports;
        vec![("client", p.client.port), ("status", p.status.port)]
    }
    group_spec_accessors!();
    fn failover(&self) -> Option<crate::plan::Failover> {
        let f = self.spec.failover.as_ref().filter(|f| f.enabled)?;
        Some(crate::plan::Failover {
            // The CRD validates the duration; an unparsable one disables failover.
            period_secs: api::duration::parse(&f.period)?.as_secs() as i64,
            max_replacements: usize::try_from(f.max_replacements).unwrap_or(0),
        })
    }
    fn build_instance(
        &self,
        name: &str,
        topology: Option<BTreeMap<String, String>>,
        _initial_members: &[String],
        existing: Option<&TiKV>,
        zone_by_zone: bool,
    ) -> TiKV {
        let group = self.meta().name.clone().unwrap_or_default();
        let spec = TiKVSpec {
            cluster: self.spec.cluster.clone(),
            topology: existing
                .map(|e| e.spec.topology.clone())
                .unwrap_or(topology),
            subdomain: peer_service_name(&group),
            offline: existing.is_some_and(|e| e.spec.offline),
            restart: StoreRestart::of(&self.spec.update_policy, zone_by_zone),
            template: self.spec.template.spec.clone(),
        };
        let mut tikv = TiKV::new(name, spec);
        tikv.metadata = instance_meta(
            self,
            &self.spec.cluster.name,
            Self::COMPONENT,
            name,
            self.spec.template.metadata.as_ref(),
        );
        tikv
    }
    fn view(tikv: &TiKV) -> InstanceView {
        let status = tikv.status.as_ref();
        let mut common = common_view(&tikv.metadata, status.map(|s| &s.common));
        // Restarted and waiting for PD to move leaders back: still unavailable to the rollout,
        // so the next store restarts only once this one carries its share again.
        common.ready &= !status.is_some_and(|s| {
            conditions::find(&s.common.conditions, leaders_transferred_back::TYPE)
                .is_some_and(|c| c.status == conditions::FALSE)
        });
        InstanceView {
            offline: tikv.spec.offline,
            offlined: status
                .is_some_and(|s| conditions::is_true(&s.common.conditions, offlined::TYPE)),
            topology: tikv.spec.topology.clone(),
            down_since: status
                .and_then(|s| conditions::find(&s.common.conditions, store_down::TYPE))
                .filter(|c| c.status == conditions::TRUE)
                .map(|c| c.last_transition_time.0.as_second()),
            activity: crate::summary::tikv_activity(tikv),
            ..common
        }
    }
    fn restart_patch(&self, tikv: &TiKV, zone_by_zone: bool) -> Option<serde_json::Value> {
        let want = StoreRestart::of(&self.spec.update_policy, zone_by_zone);
        (tikv.spec.restart != want).then(|| serde_json::json!({"spec": {"restart": want}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tikv(conditions: serde_json::Value) -> TiKV {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "core.tikv.org/v1alpha1", "kind": "TiKV",
            "metadata": {"name": "t1", "labels": {api::labels::REVISION: "r2"}},
            "spec": {"cluster": {"name": "basic"}, "subdomain": "basic-tikv-peer",
                     "version": "v8.5.0", "volumes": []},
            "status": {"currentRevision": "r2", "conditions": conditions},
        }))
        .unwrap()
    }

    fn condition(type_: &str, status: &str) -> serde_json::Value {
        serde_json::json!({"type": type_, "status": status, "reason": "R", "message": "",
                           "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn a_store_waiting_for_its_leaders_is_not_ready_for_the_rollout() {
        let ready = condition("Ready", "True");
        assert!(TiKVGroup::view(&tikv(serde_json::json!([ready]))).ready);
        let waiting = tikv(serde_json::json!([
            ready,
            condition("LeadersTransferredBack", "False")
        ]));
        assert!(!TiKVGroup::view(&waiting).ready);
        let back = tikv(serde_json::json!([
            ready,
            condition("LeadersTransferredBack", "True")
        ]));
        assert!(TiKVGroup::view(&back).ready);
    }
}

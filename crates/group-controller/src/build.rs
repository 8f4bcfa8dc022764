//! Pure builders: the Services of a group, its PodDisruptionBudget and its status.

use std::collections::BTreeMap;

use api::conditions::{progressing, ready};
use api::v1alpha1::GroupStatus;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use operator_runtime::conditions::{self, NewCondition};

use crate::component::{GroupKind, peer_service_name};
use crate::plan::InstanceView;

/// The labels of the group's pods.
fn selector<G: GroupKind>(group: &G) -> BTreeMap<String, String> {
    let name = group.meta().name.clone().unwrap_or_default();
    api::labels::group_selector(&group.cluster().name, G::COMPONENT, &name)
}

/// Metadata of an object the group owns: named `name`, labelled like the group's pods.
fn owned_meta<G: GroupKind>(group: &G, name: String) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name),
        namespace: group.meta().namespace.clone(),
        labels: Some(selector(group)),
        owner_references: group.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

fn service<G: GroupKind>(
    group: &G,
    name: String,
    headless: bool,
    ports: &[(&'static str, i32)],
) -> Service {
    let selector = selector(group);
    Service {
        metadata: owned_meta(group, name),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".to_string()),
            // Members must find each other before they are ready (PD bootstrap, TiKV join).
            publish_not_ready_addresses: Some(headless),
            selector: Some(selector),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: Some(name.to_string()),
                        port: *port,
                        protocol: Some("TCP".to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Services of a group: a headless peer Service for stable pod DNS names; PD also gets a
/// client Service, the address of `Cluster.status.pd`.
pub fn services<G: GroupKind>(group: &G) -> Vec<Service> {
    let name = group.meta().name.clone().unwrap_or_default();
    let ports = group.ports();
    let mut out = vec![service(group, peer_service_name(&name), true, &ports)];
    if G::COMPONENT == "pd" {
        out.push(service(group, name, false, &ports[..1]));
    }
    out
}

/// The group's PodDisruptionBudget: voluntary disruptions (`kubectl drain`, a node upgrade)
/// evict one of its pods at a time, and none while one is already down (restarting, or on a
/// drained node), so PD keeps its quorum and every region a majority of its replicas.
/// `minAvailable` is all of its instances but one (`instances`: those not being deleted, or the
/// desired count if more): Kubernetes takes `maxUnavailable` only for pods whose controller
/// has a scale subresource, and a pod's controller here is its instance.
pub fn disruption_budget<G: GroupKind>(group: &G, instances: usize) -> PodDisruptionBudget {
    let name = group.meta().name.clone().unwrap_or_default();
    let desired = usize::try_from(group.replicas()).unwrap_or(0);
    let min_available = instances.max(desired).saturating_sub(1);
    PodDisruptionBudget {
        metadata: owned_meta(group, name),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(
                i32::try_from(min_available).unwrap_or(i32::MAX),
            )),
            selector: Some(LabelSelector {
                match_labels: Some(selector(group)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Counts and revisions of a group, computed from its instances. `collisions`: the collision
/// count that named the update revision (`None`: keep the stored one).
pub fn status<G: GroupKind>(
    group: &G,
    instances: &[InstanceView],
    update_revision: &str,
    collisions: Option<i32>,
    synced: NewCondition,
    now: Time,
) -> GroupStatus {
    let old = group.status().cloned().unwrap_or_default();
    let desired = usize::try_from(group.replicas()).unwrap_or(0);
    let live: Vec<&InstanceView> = instances
        .iter()
        .filter(|i| !i.deleting && !i.offline)
        .collect();
    let ready = live.iter().filter(|i| i.ready).count();
    let updated = live
        .iter()
        .filter(|i| i.revision.as_deref() == Some(update_revision))
        .count();
    let rolled_out = updated == live.len() && live.len() == desired;
    let current_revision = if rolled_out || old.current_revision.is_none() {
        update_revision.to_string()
    } else {
        old.current_revision.clone().unwrap_or_default()
    };
    let current = live
        .iter()
        .filter(|i| i.revision.as_deref() == Some(current_revision.as_str()))
        .count();
    let is_ready = rolled_out && ready == desired;
    let version = if is_ready {
        Some(group.version().to_string())
    } else {
        old.version.clone()
    };
    let leaving = instances
        .iter()
        .filter(|i| i.offline && !i.deleting)
        .count();
    let progressing_message = if is_ready {
        String::new()
    } else {
        format!(
            "{ready}/{desired} ready, {updated}/{desired} at {update_revision}, {leaving} leaving"
        )
    };
    let summary = crate::summary::group(
        <G::Instance as kube::Resource>::kind(&()).as_ref(),
        desired,
        instances,
        update_revision,
        &synced,
    );
    let new = [
        NewCondition::new(
            ready::TYPE,
            is_ready,
            if is_ready {
                ready::ALL_READY
            } else {
                ready::NOT_ALL_READY
            },
            progressing_message.clone(),
        ),
        NewCondition::new(
            progressing::TYPE,
            !is_ready || leaving > 0,
            if is_ready && leaving == 0 {
                progressing::STABLE
            } else {
                progressing::RECONCILING
            },
            progressing_message,
        ),
        synced,
    ];
    let group_name = group.meta().name.clone().unwrap_or_default();
    GroupStatus {
        observed_generation: group.meta().generation,
        conditions: conditions::merge(&old.conditions, &new, group.meta().generation, now),
        replicas: live.len() as i32,
        ready_replicas: ready as i32,
        updated_replicas: updated as i32,
        current_replicas: current as i32,
        current_revision: Some(current_revision),
        update_revision: Some(update_revision.to_string()),
        collision_count: collisions.filter(|c| *c > 0).or(old.collision_count),
        version,
        selector: Some(api::labels::selector_string(&api::labels::group_selector(
            &group.cluster().name,
            G::COMPONENT,
            &group_name,
        ))),
        summary: Some(summary),
    }
}

/// The labels of a ControllerRevision of a group.
pub fn revision_labels<G: GroupKind>(group: &G) -> BTreeMap<String, String> {
    api::labels::group_selector(
        &group.cluster().name,
        G::COMPONENT,
        &group.meta().name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::v1alpha1::{PDGroup, TiKVGroup};
    use k8s_openapi::jiff::Timestamp;

    fn tikv_group(replicas: i32) -> TiKVGroup {
        let mut g: TiKVGroup = serde_yaml::from_str(&format!(
            r#"
apiVersion: core.tikv.org/v1alpha1
kind: TiKVGroup
metadata: {{name: basic-tikv, namespace: ns, uid: u1, generation: 3}}
spec:
  cluster: {{name: basic}}
  replicas: {replicas}
  template:
    spec:
      version: v8.5.0
      volumes: [{{name: data, mounts: [{{type: data}}], storage: 20Gi}}]
"#
        ))
        .unwrap();
        g.metadata.namespace = Some("ns".into());
        g
    }

    fn view(name: &str, rev: &str, ready: bool) -> InstanceView {
        InstanceView {
            name: name.into(),
            revision: Some(rev.into()),
            ready,
            ..Default::default()
        }
    }

    fn now() -> Time {
        Time(Timestamp::from_second(100).unwrap())
    }

    #[test]
    fn ready_only_when_all_desired_instances_are_ready_and_updated() {
        let g = tikv_group(3);
        let synced = NewCondition::new("Synced", true, "Synced", "");
        let s = status(
            &g,
            &[
                view("a", "r1", true),
                view("b", "r1", true),
                view("c", "r1", false),
            ],
            "r1",
            None,
            synced.clone(),
            now(),
        );
        assert_eq!(
            (s.replicas, s.ready_replicas, s.updated_replicas),
            (3, 2, 3)
        );
        assert!(!conditions::is_true(&s.conditions, "Ready"));
        assert!(conditions::is_true(&s.conditions, "Progressing"));
        assert_eq!(s.version, None);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            s.selector.as_deref(),
            Some(
                "app.kubernetes.io/component=tikv,app.kubernetes.io/instance=basic,app.kubernetes.io/managed-by=tikv-operator,app.kubernetes.io/name=tikv,tikv.org/cluster=basic,tikv.org/group=basic-tikv"
            )
        );
        let s = status(
            &g,
            &[
                view("a", "r1", true),
                view("b", "r1", true),
                view("c", "r1", true),
            ],
            "r1",
            None,
            synced,
            now(),
        );
        assert!(conditions::is_true(&s.conditions, "Ready"));
        assert!(!conditions::is_true(&s.conditions, "Progressing"));
        assert_eq!(s.version.as_deref(), Some("v8.5.0"));
        assert_eq!(s.summary.as_deref(), Some("TiKV 3/3 ready"));
    }

    #[test]
    fn current_revision_moves_when_the_rollout_completes() {
        let mut g = tikv_group(2);
        let synced = NewCondition::new("Synced", true, "Synced", "");
        g.status = Some(status(
            &g,
            &[view("a", "r1", true), view("b", "r1", true)],
            "r1",
            None,
            synced.clone(),
            now(),
        ));
        let mid = status(
            &g,
            &[view("a", "r2", true), view("b", "r1", true)],
            "r2",
            None,
            synced.clone(),
            now(),
        );
        assert_eq!(mid.current_revision.as_deref(), Some("r1"));
        assert_eq!((mid.current_replicas, mid.updated_replicas), (1, 1));
        g.status = Some(mid);
        let done = status(
            &g,
            &[view("a", "r2", true), view("b", "r2", true)],
            "r2",
            None,
            synced,
            now(),
        );
        assert_eq!(done.current_revision.as_deref(), Some("r2"));
        // The collision count that named the revision is kept.
        let synced = NewCondition::new("Synced", true, "Synced", "");
        let s = status(&g, &[], "r3", Some(2), synced, now());
        assert_eq!(s.collision_count, Some(2));
    }

    #[test]
    fn pd_gets_a_client_service_and_a_headless_peer_service() {
        let g: PDGroup = serde_yaml::from_str(
            r#"
apiVersion: core.tikv.org/v1alpha1
kind: PDGroup
metadata: {name: basic-pd, namespace: ns, uid: u1}
spec:
  cluster: {name: basic}
  replicas: 3
  template: {spec: {version: v8.5.0, volumes: [{name: data, mounts: [{type: data}], storage: 1Gi}]}}
"#,
        )
        .unwrap();
        let svcs = services(&g);
        let names: Vec<_> = svcs
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["basic-pd-peer", "basic-pd"]);
        let peer = svcs[0].spec.as_ref().unwrap();
        assert_eq!(peer.cluster_ip.as_deref(), Some("None"));
        assert_eq!(peer.publish_not_ready_addresses, Some(true));
        assert_eq!(
            peer.ports
                .as_ref()
                .unwrap()
                .iter()
                .map(|p| p.port)
                .collect::<Vec<_>>(),
            [2379, 2380]
        );
        let client = svcs[1].spec.as_ref().unwrap();
        assert_eq!(client.cluster_ip, None);
        assert_eq!(client.ports.as_ref().unwrap()[0].port, 2379);
        assert_eq!(
            svcs[0].metadata.owner_references.as_ref().unwrap()[0].kind,
            "PDGroup"
        );
        let t = services(&tikv_group(3));
        assert_eq!(t.len(), 1);
    }
}

//! The group controller against a real kube-apiserver: instances, services, revisions, status,
//! scaling, rolling update and two-step scale-in. The test plays the instance controller by
//! writing instance status, so each step of the protocol is driven explicitly.

use std::time::Duration;

use api::v1alpha1::{Cluster, InstanceStatus, PD, PDGroup, TiKV, TiKVGroup, TiKVStatus};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use operator_runtime::conditions::{self, NewCondition};
use testenv::wait_for;

/// A namespace with its own group controller.
async fn setup() -> (Client, String, tokio::task::JoinHandle<()>) {
    let cp = testenv::shared();
    let ns = cp.create_namespace("group").await;
    let client = cp.client();
    let controller = tokio::spawn(group_controller::run(
        client.clone(),
        operator_runtime::metrics::Metrics::new(),
        2,
        Some(ns.clone()),
    ));
    (client, ns, controller)
}

async fn create<K>(api: &Api<K>, yaml: &str) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let obj: K = serde_yaml::from_str(yaml).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

const CLUSTER: &str =
    "{apiVersion: core.tikv.org/v1alpha1, kind: Cluster, metadata: {name: basic}, spec: {}}";

fn tikv_group(replicas: i32, version: &str) -> String {
    format!(
        r#"
apiVersion: core.tikv.org/v1alpha1
kind: TiKVGroup
metadata: {{name: basic-tikv}}
spec:
  cluster: {{name: basic}}
  replicas: {replicas}
  schedulePolicy:
    evenlySpread:
      topologies:
      - topology: {{topology.kubernetes.io/zone: a}}
      - topology: {{topology.kubernetes.io/zone: b}}
      - topology: {{topology.kubernetes.io/zone: c}}
  template:
    spec:
      version: {version}
      volumes: [{{name: data, mounts: [{{type: data}}], storage: 1Gi}}]
"#
    )
}

/// Plays the instance controller: the store runs its current spec and is Ready (or Offlined).
async fn report(api: &Api<TiKV>, tikv: &TiKV, ready: bool, offlined: bool) {
    let revision = tikv.labels().get(api::labels::REVISION).cloned();
    let mut new = vec![NewCondition::new("Ready", ready, "Test", "")];
    if offlined {
        new.push(NewCondition::new("Offlined", true, "Removed", ""));
    }
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let status = TiKVStatus {
        common: InstanceStatus {
            conditions: conditions::merge(&[], &new, None, now),
            current_revision: revision,
            observed_generation: tikv.metadata.generation,
        },
        ..Default::default()
    };
    operator_runtime::ssa::apply_status(api, "test/instance", &tikv.name_any(), &status)
        .await
        .unwrap();
}

async fn list(api: &Api<TiKV>) -> Vec<TiKV> {
    api.list(&ListParams::default()).await.unwrap().items
}

/// The Cluster and a TiKVGroup of 3 at v8.5.0; returns once its 3 instances exist.
async fn three_stores(client: &Client, ns: &str) -> (Api<TiKVGroup>, Api<TiKV>, Vec<TiKV>) {
    create(&Api::<Cluster>::namespaced(client.clone(), ns), CLUSTER).await;
    let groups: Api<TiKVGroup> = Api::namespaced(client.clone(), ns);
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), ns);
    create(&groups, &tikv_group(3, "v8.5.0")).await;
    let instances = wait_for(30, "3 TiKV instances", || async {
        let l = list(&tikvs).await;
        (l.len() == 3).then_some(l)
    })
    .await;
    (groups, tikvs, instances)
}

#[tokio::test]
async fn tikv_group_lifecycle() {
    let (client, ns, controller) = setup().await;
    // Three instances, one per zone, owned by the group, at the update revision.
    let (groups, tikvs, instances) = three_stores(&client, &ns).await;
    let group = wait_for(30, "group status", || async {
        groups
            .get("basic-tikv")
            .await
            .ok()
            .filter(|g| g.status.as_ref().is_some_and(|s| s.replicas == 3))
    })
    .await;
    let st = group.status.clone().unwrap();
    let update_revision = st.update_revision.clone().unwrap();
    let mut zones: Vec<String> = instances
        .iter()
        .map(|t| t.spec.topology.as_ref().unwrap()["topology.kubernetes.io/zone"].clone())
        .collect();
    zones.sort();
    assert_eq!(zones, ["a", "b", "c"]);
    for t in &instances {
        assert_eq!(t.labels()[api::labels::REVISION], update_revision);
        assert_eq!(t.labels()[api::labels::GROUP], "basic-tikv");
        assert_eq!(t.owner_references()[0].name, "basic-tikv");
        assert_eq!(t.spec.subdomain, "basic-tikv-peer");
        assert!(!t.spec.offline);
    }
    assert_eq!(st.ready_replicas, 0);
    assert!(
        st.selector
            .as_deref()
            .unwrap()
            .contains("tikv.org/group=basic-tikv")
    );
    assert!(!conditions::is_true(&st.conditions, "Ready"));
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get("basic-tikv-peer")
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    // A drain evicts one store at a time: the budget covers exactly the group's pods.
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get("basic-tikv")
        .await
        .unwrap();
    assert_eq!(pdb.owner_references()[0].name, "basic-tikv");
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.min_available, Some(IntOrString::Int(2)));
    let selector = spec.selector.unwrap().match_labels.unwrap();
    assert_eq!(selector[api::labels::GROUP], "basic-tikv");
    assert_eq!(selector[api::labels::COMPONENT], "tikv");
    Api::<ControllerRevision>::namespaced(client.clone(), &ns)
        .get(&update_revision)
        .await
        .unwrap();

    // All Ready: the group is Ready and reports the version.
    for t in &instances {
        report(&tikvs, t, true, false).await;
    }
    wait_for(30, "group Ready", || async {
        let g = groups.get("basic-tikv").await.ok()?;
        let s = g.status?;
        (conditions::is_true(&s.conditions, "Ready") && s.version.as_deref() == Some("v8.5.0"))
            .then_some(())
    })
    .await;

    // Scale out through the scale subresource's field.
    let scale = serde_json::json!({"spec": {"replicas": 5}});
    groups
        .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    let instances = wait_for(30, "5 instances", || async {
        let l = list(&tikvs).await;
        (l.len() == 5).then_some(l)
    })
    .await;
    for t in &instances {
        report(&tikvs, t, true, false).await;
    }

    // A new version rolls one instance at a time (maxUnavailable 1).
    let upgrade = serde_json::json!({"spec": {"template": {"spec": {"version": "v8.5.1"}}}});
    groups
        .patch(
            "basic-tikv",
            &PatchParams::default(),
            &Patch::Merge(&upgrade),
        )
        .await
        .unwrap();
    let new_revision = wait_for(30, "a new update revision", || async {
        let r = groups
            .get("basic-tikv")
            .await
            .ok()?
            .status?
            .update_revision?;
        (r != update_revision).then_some(r)
    })
    .await;
    let updated = |l: &[TiKV]| {
        l.iter()
            .filter(|t| t.labels()[api::labels::REVISION] == new_revision)
            .cloned()
            .collect::<Vec<_>>()
    };
    let first = wait_for(30, "one updated instance", || async {
        updated(&list(&tikvs).await).into_iter().next()
    })
    .await;
    assert_eq!(first.spec.template.version, "v8.5.1");
    // While it restarts (not ready at the new revision), nobody else is touched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        updated(&list(&tikvs).await).len(),
        1,
        "only one instance may roll at a time"
    );
    report(
        &tikvs,
        &tikvs.get(&first.name_any()).await.unwrap(),
        true,
        false,
    )
    .await;
    wait_for(30, "a second updated instance", || async {
        (updated(&list(&tikvs).await).len() == 2).then_some(())
    })
    .await;
    // Finish the rollout.
    wait_for(120, "all instances updated and group Ready", || async {
        for t in list(&tikvs).await {
            let st = t.status.as_ref().map(|s| &s.common);
            if st.and_then(|s| s.current_revision.as_deref())
                != t.labels().get(api::labels::REVISION).map(String::as_str)
            {
                report(&tikvs, &t, true, false).await;
            }
        }
        let s = groups.get("basic-tikv").await.ok()?.status?;
        (s.updated_replicas == 5
            && conditions::is_true(&s.conditions, "Ready")
            && s.current_revision.as_deref() == Some(&new_revision))
        .then_some(())
    })
    .await;

    // Scale in: one store goes offline; it is deleted only once PD has removed it.
    let scale = serde_json::json!({"spec": {"replicas": 4}});
    groups
        .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    let leaving = wait_for(30, "an offline instance", || async {
        list(&tikvs).await.into_iter().find(|t| t.spec.offline)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        list(&tikvs).await.len(),
        5,
        "nothing is deleted before the store is removed"
    );
    report(&tikvs, &leaving, false, true).await;
    wait_for(30, "the removed instance deleted", || async {
        let l = list(&tikvs).await;
        (l.len() == 4 && l.iter().all(|t| t.name_any() != leaving.name_any())).then_some(())
    })
    .await;
    for reason in [
        "InstanceCreated",
        "InstanceUpdating",
        "ScaleInStarted",
        "InstanceDeleted",
    ] {
        testenv::wait::event(&client, &ns, reason, "Normal", None).await;
    }
    controller.abort();
}

#[tokio::test]
async fn first_pd_members_bootstrap_together() {
    let (client, ns, controller) = setup().await;
    create(&Api::<Cluster>::namespaced(client.clone(), &ns), CLUSTER).await;
    let yaml = r#"
apiVersion: core.tikv.org/v1alpha1
kind: PDGroup
metadata: {name: basic-pd}
spec:
  cluster: {name: basic}
  replicas: 3
  template: {spec: {version: v8.5.0, volumes: [{name: data, mounts: [{type: data}], storage: 1Gi}]}}
"#;
    create(&Api::<PDGroup>::namespaced(client.clone(), &ns), yaml).await;
    let pds: Api<PD> = Api::namespaced(client.clone(), &ns);
    let members = wait_for(30, "3 PD instances", || async {
        let l = pds.list(&ListParams::default()).await.ok()?.items;
        (l.len() == 3).then_some(l)
    })
    .await;
    let mut names: Vec<String> = members.iter().map(|p| p.name_any()).collect();
    names.sort();
    for p in &members {
        let mut initial = p.spec.initial_members.clone();
        initial.sort();
        assert_eq!(initial, names, "every first member knows all first members");
    }
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    services.get("basic-pd").await.unwrap();
    services.get("basic-pd-peer").await.unwrap();
    controller.abort();
}

#[tokio::test]
async fn a_group_without_its_cluster_says_so() {
    let (client, ns, controller) = setup().await;
    let groups: Api<TiKVGroup> = Api::namespaced(client.clone(), &ns);
    create(&groups, &tikv_group(1, "v8.5.0")).await;
    let cond = wait_for(30, "Synced=False", || async {
        let s = groups.get("basic-tikv").await.ok()?.status?;
        conditions::find(&s.conditions, "Synced").cloned()
    })
    .await;
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "ClusterNotFound")
    );
    testenv::wait::event(
        &client,
        &ns,
        "ClusterNotFound",
        "Warning",
        Some("basic-tikv"),
    )
    .await;
    assert!(
        Api::<TiKV>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Creating the Cluster wakes the group.
    create(&Api::<Cluster>::namespaced(client.clone(), &ns), CLUSTER).await;
    wait_for(30, "an instance once the Cluster exists", || async {
        let l = Api::<TiKV>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .ok()?
            .items;
        (l.len() == 1).then_some(())
    })
    .await;
    controller.abort();
}

/// The eviction timeout reaches the stores without a rollout, and a scale-in that comes with a
/// template change marks the leaving store offline and nothing else: it keeps the spec and
/// revision it runs.
#[tokio::test]
async fn scale_in_during_a_template_change_touches_only_offline() {
    let (client, ns, controller) = setup().await;
    let (groups, tikvs, instances) = three_stores(&client, &ns).await;
    let old_revision = instances[0].labels()[api::labels::REVISION].clone();
    for t in &instances {
        assert_eq!(t.spec.restart.leader_eviction_timeout, "10m");
        assert_eq!(t.spec.restart.leader_transfer_back_timeout, "5m");
        report(&tikvs, t, true, false).await;
    }

    // The update policy is outside the template: every store learns it, none restarts.
    let timeout = serde_json::json!({"spec": {"updatePolicy": {
        "leaderEvictionTimeout": "3m", "leaderTransferBackTimeout": "0s"}}});
    groups
        .patch(
            "basic-tikv",
            &PatchParams::default(),
            &Patch::Merge(&timeout),
        )
        .await
        .unwrap();
    wait_for(30, "every store with the new timeouts", || async {
        let l = list(&tikvs).await;
        l.iter()
            .all(|t| {
                t.spec.restart.leader_eviction_timeout == "3m"
                    && t.spec.restart.leader_transfer_back_timeout == "0s"
            })
            .then_some(())
    })
    .await;
    for t in list(&tikvs).await {
        assert_eq!(t.labels()[api::labels::REVISION], old_revision);
    }

    // Scale in and change the template in one write.
    let both =
        serde_json::json!({"spec": {"replicas": 2, "template": {"spec": {"version": "v8.5.1"}}}});
    groups
        .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&both))
        .await
        .unwrap();
    let leaving = wait_for(30, "an offline instance", || async {
        list(&tikvs).await.into_iter().find(|t| t.spec.offline)
    })
    .await;
    // Let the group finish its reconciles (it rolls the others meanwhile).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leaving = tikvs.get(&leaving.name_any()).await.unwrap();
    assert!(leaving.spec.offline);
    assert_eq!(
        leaving.spec.template.version, "v8.5.0",
        "the leaving store keeps the spec it runs"
    );
    assert_eq!(
        leaving.labels()[api::labels::REVISION],
        old_revision,
        "and its revision"
    );
    let others: Vec<TiKV> = list(&tikvs)
        .await
        .into_iter()
        .filter(|t| !t.spec.offline)
        .collect();
    assert_eq!(others.len(), 2);
    assert!(
        others.iter().any(|t| t.spec.template.version == "v8.5.1"),
        "the stores that stay roll to the new template"
    );
    controller.abort();
}

/// Scaling the cluster's only TiKVGroup to 0 takes no store offline: refused with a condition
/// and an Event; scaling back up clears it.
#[tokio::test]
async fn the_last_stores_are_not_scaled_to_zero() {
    let (client, ns, controller) = setup().await;
    let (groups, tikvs, instances) = three_stores(&client, &ns).await;
    for t in &instances {
        report(&tikvs, t, true, false).await;
    }
    let zero = serde_json::json!({"spec": {"replicas": 0}});
    groups
        .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&zero))
        .await
        .unwrap();
    wait_for(30, "Synced=False/WouldRemoveAllStores", || async {
        let s = groups.get("basic-tikv").await.ok()?.status?;
        conditions::has_reason(&s.conditions, "Synced", "WouldRemoveAllStores").then_some(())
    })
    .await;
    let e = testenv::wait::event(
        &client,
        &ns,
        "WouldRemoveAllStores",
        "Warning",
        Some("basic-tikv"),
    )
    .await;
    assert!(e.message.unwrap().contains("suspend the Cluster"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let l = list(&tikvs).await;
    assert_eq!(l.len(), 3);
    assert!(l.iter().all(|t| !t.spec.offline), "no store taken offline");
    let three = serde_json::json!({"spec": {"replicas": 3}});
    groups
        .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&three))
        .await
        .unwrap();
    wait_for(30, "Synced=True again", || async {
        let s = groups.get("basic-tikv").await.ok()?.status?;
        conditions::is_true(&s.conditions, "Synced").then_some(())
    })
    .await;
    controller.abort();
}

/// Deleting the only PDGroup of a live Cluster is refused (its members stay) until the Cluster
/// itself is deleted.
#[tokio::test]
async fn the_only_pd_group_of_a_live_cluster_is_not_deleted() {
    let (client, ns, controller) = setup().await;
    let clusters = Api::<Cluster>::namespaced(client.clone(), &ns);
    create(&clusters, CLUSTER).await;
    let yaml = r#"
apiVersion: core.tikv.org/v1alpha1
kind: PDGroup
metadata: {name: basic-pd}
spec:
  cluster: {name: basic}
  replicas: 3
  template: {spec: {version: v8.5.0, volumes: [{name: data, mounts: [{type: data}], storage: 1Gi}]}}
"#;
    let groups = Api::<PDGroup>::namespaced(client.clone(), &ns);
    create(&groups, yaml).await;
    let pds: Api<PD> = Api::namespaced(client.clone(), &ns);
    wait_for(
        30,
        "3 PD instances and the protection finalizer",
        || async {
            let n = pds.list(&ListParams::default()).await.ok()?.items.len();
            let g = groups.get("basic-pd").await.ok()?;
            (n == 3
                && g.finalizers()
                    .iter()
                    .any(|f| f == "core.tikv.org/group-protection"))
            .then_some(())
        },
    )
    .await;
    groups
        .delete("basic-pd", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(30, "Synced=False/DeletionRefused", || async {
        let s = groups.get("basic-pd").await.ok()?.status?;
        conditions::has_reason(&s.conditions, "Synced", "DeletionRefused").then_some(())
    })
    .await;
    let e =
        testenv::wait::event(&client, &ns, "DeletionRefused", "Warning", Some("basic-pd")).await;
    assert!(e.message.unwrap().contains("delete the Cluster"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(groups.get_opt("basic-pd").await.unwrap().is_some());
    assert_eq!(
        pds.list(&ListParams::default()).await.unwrap().items.len(),
        3,
        "the members are untouched"
    );
    // The Cluster goes: so may its PD.
    clusters
        .delete("basic", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(30, "the PDGroup gone", || async {
        groups
            .get_opt("basic-pd")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    controller.abort();
}

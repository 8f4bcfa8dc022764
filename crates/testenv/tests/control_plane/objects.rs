//! The API server and controllers behave as a real cluster's: pods and watches, the scheduler,
//! status and scale subresources of our kinds, server-side apply conflicts, garbage collection
//! and namespace deletion.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};

use crate::fixtures::*;

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Ready node, as a kubelet would register it. Node names are cluster-wide, hence the
/// namespace in the name; the `testenv/node` label lets a pod select exactly this node.
fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"testenv/node": name, "topology.kubernetes.io/zone": "zone-a"}},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "testenv",
                "lastHeartbeatTime": k8s_openapi::jiff::Timestamp::now(),
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now(),
            }],
        },
    }))
    .unwrap()
}

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

/// The server is the Kubernetes release pinned in e2e/tools/k8s/go.mod, and says so (the build
/// stamps the version; without it a source build reports v0.0.0-master).
#[tokio::test]
async fn the_server_reports_the_pinned_kubernetes_release() {
    let go_mod = include_str!("../../../../e2e/tools/k8s/go.mod");
    let pinned = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("k8s.io/kubernetes in e2e/tools/k8s/go.mod");
    let version = testenv::shared()
        .client()
        .apiserver_version()
        .await
        .expect("GET /version");
    assert_eq!(version.git_version, pinned);
    assert_eq!(
        format!("v{}.{}", version.major, version.minor),
        pinned.rsplit_once('.').unwrap().0
    );
}

#[tokio::test]
async fn pods_can_be_created_read_and_watched() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("pods").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_name = format!("{ns}-node");
    nodes
        .create(&PostParams::default(), &node(&node_name))
        .await
        .expect("creating a node");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let created = pods
        .create(
            &PostParams::default(),
            &pod("p", json!({"nodeName": node_name, "containers": [{"name": "main", "image": "pingcap/tikv:v8.5.0"}]})),
        )
        .await
        .expect("creating a pod bound to the node");
    let rv = created.metadata.resource_version.clone().unwrap();
    // Defaults and admission ran as in a real cluster.
    let got = pods.get("p").await.unwrap();
    let spec = got.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node_name.as_str()));
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("default"),
        "ServiceAccount admission ran"
    );
    assert_eq!(
        spec.restart_policy.as_deref(),
        Some("Always"),
        "defaulting ran"
    );
    assert_eq!(
        got.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    // Watch from the creation's version and play kubelet: report the pod running.
    let mut events = pods
        .watch(&WatchParams::default().fields("metadata.name=p"), &rv)
        .await
        .unwrap()
        .boxed();
    pods.patch_status(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "127.0.0.10"}})),
    )
    .await
    .expect("writing pod status");
    let modified = tokio::time::timeout(Duration::from_secs(30), events.try_next())
        .await
        .expect("a watch event");
    match modified.unwrap() {
        Some(WatchEvent::Modified(p)) => {
            let status = p.status.unwrap();
            assert_eq!(status.phase.as_deref(), Some("Running"));
            assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.10"));
        }
        other => panic!("expected Modified, got {other:?}"),
    }

    // A bound pod's graceful deletion waits for its kubelet, which does not exist here: delete
    // with grace period 0 (what a kubelet does once the containers are gone).
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let deleted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.try_next().await.unwrap() {
                Some(WatchEvent::Deleted(p)) => return p,
                Some(WatchEvent::Modified(_)) => continue,
                other => panic!("expected Deleted, got {other:?}"),
            }
        }
    })
    .await
    .expect("a Deleted event");
    assert_eq!(deleted.metadata.name.as_deref(), Some("p"));
    assert!(pods.get_opt("p").await.unwrap().is_none());
    nodes
        .delete(&node_name, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_scheduler_binds_pods_to_ready_nodes() {
    let cp = testenv::shared();
    assert!(cp.options().with_scheduler);
    let client = cp.client();
    let ns = cp.create_namespace("sched").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_name = format!("{ns}-node");
    nodes
        .create(&PostParams::default(), &node(&node_name))
        .await
        .expect("creating a node");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(
        &PostParams::default(),
        &pod(
            "p",
            json!({
                "nodeSelector": {"testenv/node": node_name},
                "containers": [{"name": "main", "image": "pingcap/pd:v8.5.0",
                                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
            }),
        ),
    )
    .await
    .unwrap();
    let bound = eventually(
        Duration::from_secs(60),
        "the scheduler to bind the pod",
        || async { pods.get("p").await.unwrap().spec.and_then(|s| s.node_name) },
    )
    .await;
    assert_eq!(bound, node_name);
    pods.delete(
        "p",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    nodes
        .delete(&node_name, &DeleteParams::default())
        .await
        .unwrap();
}

/// A status change written through the main resource, as a controller that forgot the
/// subresource would: the API server must ignore it.
fn with_status_and_spec_change(kind: Kind, v: &mut Value, observed: i64) {
    set(v, "/status/observedGeneration", json!(observed));
    match kind {
        Cluster => set(v, "/spec/paused", json!(true)),
        PDGroup | TiKVGroup => set(v, "/spec/replicas", json!(4)),
        PD | TiKV => set(
            v,
            &format!("{}/version", kind.template_spec()),
            json!("v8.5.1"),
        ),
    }
}

#[tokio::test]
async fn status_is_a_subresource_of_every_kind() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("status").await;
    for kind in ALL_KINDS {
        let api = kind.api(&client, &ns);
        let created = create_ok(&api, kind.good("s")).await;
        let generation = created.metadata.generation.unwrap();
        let spec = created.data["spec"].clone();

        // Status written on create is dropped.
        let mut with_status = kind.good("s2");
        set(&mut with_status, "/status/observedGeneration", json!(5));
        let created2 = create_ok(&api, with_status).await;
        assert!(
            created2
                .data
                .get("status")
                .is_none_or(|s| s.get("observedGeneration").is_none()),
            "{kind:?}"
        );

        // Status goes through /status, leaving spec and generation alone, even if the patch
        // carries a spec.
        let patched = api
            .patch_status(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"observedGeneration": 7}, "spec": {"cluster": {"name": "x"}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: writing status: {e}"));
        assert_eq!(
            patched.data["status"]["observedGeneration"],
            json!(7),
            "{kind:?}"
        );
        assert_eq!(
            patched.data["spec"], spec,
            "{kind:?}: /status changed the spec"
        );
        assert_eq!(
            patched.metadata.generation,
            Some(generation),
            "{kind:?}: /status bumped the generation"
        );

        // Spec writes ignore status and bump the generation.
        let updated = update(&api, "s", |v| with_status_and_spec_change(kind, v, 9))
            .await
            .unwrap();
        assert_eq!(
            updated.data["status"]["observedGeneration"],
            json!(7),
            "{kind:?}: a spec write changed status"
        );
        assert_eq!(
            updated.metadata.generation,
            Some(generation + 1),
            "{kind:?}"
        );
        assert_ne!(updated.data["spec"], spec, "{kind:?}");
    }
}

#[tokio::test]
async fn server_side_apply_conflicts_between_field_managers() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("ssa").await;
    let api = TiKVGroup.api(&client, &ns);
    let full = obj(TiKVGroup.good("g"));
    api.patch(
        "g",
        &PatchParams::apply("tikv-operator/test-a"),
        &Patch::Apply(&full),
    )
    .await
    .expect("first apply");

    // Manager b sets only replicas, which a owns.
    let partial: DynamicObject = obj(json!({
        "apiVersion": "core.tikv.org/v1alpha1",
        "kind": "TiKVGroup",
        "metadata": {"name": "g"},
        "spec": {"replicas": 5},
    }));
    match api
        .patch(
            "g",
            &PatchParams::apply("tikv-operator/test-b"),
            &Patch::Apply(&partial),
        )
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 409 => {
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message.contains("tikv-operator/test-a") && s.message.contains(".spec.replicas"),
                "{}",
                s.message
            );
        }
        other => panic!("expected 409 Conflict, got {other:?}"),
    }
    assert_eq!(
        api.get("g").await.unwrap().data["spec"]["replicas"],
        json!(3),
        "the refused apply changed nothing"
    );

    let forced = api
        .patch(
            "g",
            &PatchParams::apply("tikv-operator/test-b").force(),
            &Patch::Apply(&partial),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data["spec"]["replicas"], json!(5));
    let managers = forced.metadata.managed_fields.unwrap();
    let owns_replicas = |m: &str| {
        managers.iter().any(|f| {
            f.manager.as_deref() == Some(m)
                && f.fields_v1
                    .as_ref()
                    .is_some_and(|v| v.0.pointer("/f:spec/f:replicas").is_some())
        })
    };
    assert!(
        owns_replicas("tikv-operator/test-b"),
        "b owns spec.replicas after forcing"
    );
    assert!(
        !owns_replicas("tikv-operator/test-a"),
        "a lost spec.replicas"
    );
    // a keeps what b did not take.
    assert!(
        managers
            .iter()
            .any(|f| f.manager.as_deref() == Some("tikv-operator/test-a"))
    );
}

#[tokio::test]
async fn garbage_collection_deletes_owned_objects() {
    let cp = testenv::shared();
    assert!(cp.options().with_controller_manager);
    let client = cp.client();
    let ns = cp.create_namespace("gc").await;
    let groups = TiKVGroup.api(&client, &ns);
    let owner = create_ok(&groups, TiKVGroup.good("owner")).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = |name: &str, owned: bool| -> ConfigMap {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
        if owned {
            set(
                &mut v,
                "/metadata/ownerReferences",
                json!([{
                    "apiVersion": "core.tikv.org/v1alpha1", "kind": "TiKVGroup",
                    "name": "owner", "uid": owner.metadata.uid.clone().unwrap(),
                    "controller": true, "blockOwnerDeletion": true,
                }]),
            );
        }
        serde_json::from_value(v).unwrap()
    };
    config_maps
        .create(&PostParams::default(), &cm("owned", true))
        .await
        .unwrap();
    config_maps
        .create(&PostParams::default(), &cm("unowned", false))
        .await
        .unwrap();

    groups
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the garbage collector to delete the owned ConfigMap",
        || async {
            config_maps
                .get_opt("owned")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        config_maps.get_opt("unowned").await.unwrap().is_some(),
        "an unowned ConfigMap must survive"
    );

    // Foreground deletion: the owner stays (with a finalizer) until the garbage collector has
    // deleted its dependents.
    let owner = create_ok(&groups, TiKVGroup.good("owner")).await;
    let mut child = cm("owned2", true);
    child.metadata.owner_references.as_mut().unwrap()[0].uid = owner.metadata.uid.clone().unwrap();
    config_maps
        .create(&PostParams::default(), &child)
        .await
        .unwrap();
    groups
        .delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "foreground deletion of the owner",
        || async {
            groups
                .get_opt("owner")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        config_maps.get_opt("owned2").await.unwrap().is_none(),
        "the owner went before its dependent"
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_objects() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("nsdel").await;
    create_ok(&TiKVGroup.api(&client, &ns), TiKVGroup.good("g")).await;
    create_ok(&Cluster.api(&client, &ns), Cluster.good("c")).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
    // The namespace controller must find and delete our custom objects before the namespace
    // can go.
    eventually(
        Duration::from_secs(90),
        "the namespace to be deleted",
        || async {
            namespaces
                .get_opt(&ns)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn kubectl_scale_uses_the_scale_subresource() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("scale").await;
    for (kind, resource) in [(TiKVGroup, "tikvgroup"), (PDGroup, "pdgroup")] {
        let api = kind.api(&client, &ns);
        create_ok(&api, kind.good("x")).await;
        let out = tokio::process::Command::from(cp.kubectl().unwrap())
            .args(["-n", &ns, "scale", resource, "x", "--replicas=5"])
            .output()
            .await
            .expect("running kubectl");
        assert!(
            out.status.success(),
            "kubectl scale {resource} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            api.get("x").await.unwrap().data["spec"]["replicas"],
            json!(5),
            "{resource}"
        );

        // The scale subresource reads replicas from spec and status, and the selector from status.
        api.patch_status(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2, "selector": "tikv.org/group=x"}})),
        )
        .await
        .unwrap();
        let out = tokio::process::Command::from(cp.kubectl().unwrap())
            .args([
                "-n",
                &ns,
                "get",
                resource,
                "x",
                "--subresource=scale",
                "-o",
                "json",
            ])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let scale: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["spec"]["replicas"], 5);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "tikv.org/group=x");

        // Scaling below zero is refused by the CEL rule through the subresource too (kubectl
        // refuses --replicas=-1 itself, hence the API call).
        assert_invalid(
            api.patch_scale(
                "x",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": -1}})),
            )
            .await,
            if kind == PDGroup {
                "a PDGroup needs at least 1 member"
            } else {
                "replicas must not be negative"
            },
        );
    }
    // kubectl finds our kinds by short name too.
    let out = tokio::process::Command::from(cp.kubectl().unwrap())
        .args(["-n", &ns, "get", "tkvg,pdg", "-o", "name"])
        .output()
        .await
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(
        names.contains("tikvgroup.core.tikv.org/x") && names.contains("pdgroup.core.tikv.org/x"),
        "{names}"
    );
}

#[tokio::test]
async fn watches_of_our_kinds_see_changes() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("watch").await;
    let api = TiKV.api(&client, &ns);
    let created = create_ok(&api, TiKV.good("t")).await;
    let mut events = api
        .watch(
            &WatchParams::default(),
            &created.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    api.patch_status(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"state": "Up", "leaderCount": 3}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("an event")
    {
        Some(Ok(WatchEvent::Modified(o))) => {
            assert_eq!(o.data["status"]["state"], "Up");
            assert_eq!(o.data["status"]["leaderCount"], 3);
        }
        other => panic!("expected Modified, got {other:?}"),
    }
}

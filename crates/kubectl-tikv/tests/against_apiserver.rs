//! `kubectl tikv` (the built binary) against a real kube-apiserver: `status` shows what the
//! objects' status says, `restart` makes the group controller roll the group one instance at a
//! time, `report` writes a bundle with the objects, Events and redacted Secrets, and says which
//! controller logs it could not get (there is no kubelet here to serve them).

use std::io::Read;
use std::process::Command;

use api::v1alpha1::{
    Cluster, ClusterStatus, GroupStatus, PD, PDGroup, PDStatus, TiKV, TiKVGroup, TiKVStatus,
};
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use operator_runtime::conditions::{self, NewCondition};
use operator_runtime::ssa;
use testenv::wait_for;

fn kubectl_tikv(args: &[&str]) -> (bool, String) {
    let cp = testenv::shared();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-tikv"))
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn create<K>(api: &Api<K>, yaml: &str) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let obj: K = serde_yaml::from_str(yaml).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

fn conds(
    list: &[(&'static str, bool, &str, &str)],
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let new: Vec<NewCondition> = list
        .iter()
        .map(|(t, ok, reason, message)| NewCondition::new(t, *ok, *reason, *message))
        .collect();
    conditions::merge(&[], &new, None, Time(Timestamp::now()))
}

const VOLUMES: &str = "[{name: data, mounts: [{type: data}], storage: 1Gi}]";

fn instance(kind: &str, name: &str, group: &str, cluster: &str) -> String {
    format!(
        "{{apiVersion: core.tikv.org/v1alpha1, kind: {kind}, metadata: {{name: {name}, labels: {{tikv.org/group: {group}, tikv.org/revision: {group}-r1}}}}, \
         spec: {{cluster: {{name: {cluster}}}, subdomain: {group}-peer, version: v8.5.0, volumes: {VOLUMES}}}}}"
    )
}

fn group(kind: &str, name: &str, replicas: i32) -> String {
    format!(
        "{{apiVersion: core.tikv.org/v1alpha1, kind: {kind}, metadata: {{name: {name}}}, \
         spec: {{cluster: {{name: basic}}, replicas: {replicas}, template: {{spec: {{version: v8.5.0, volumes: {VOLUMES}}}}}}}}}"
    )
}

/// A group of 3 of `G`'s kind, reporting `summary`.
async fn group_with_summary<G>(client: &Client, ns: &str, name: &str, summary: &str)
where
    G: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let api: Api<G> = Api::namespaced(client.clone(), ns);
    create(&api, &group(&G::kind(&()), name, 3)).await;
    let status = GroupStatus {
        summary: Some(summary.into()),
        ..Default::default()
    };
    ssa::apply_status(&api, "test", name, &status)
        .await
        .unwrap();
}

/// A cluster as the controllers would have reported it mid scale-in: 3 PD members (one leads),
/// 4 stores (one being removed, one evicting its leaders before a restart), a Warning Event,
/// and, in the same namespace, another cluster's store and Event that must not show.
async fn reported_cluster(client: &Client, ns: &str) {
    let api = |c: &Client| Api::<Cluster>::namespaced(c.clone(), ns);
    create(
        &api(client),
        "{apiVersion: core.tikv.org/v1alpha1, kind: Cluster, metadata: {name: basic}, spec: {}}",
    )
    .await;
    let status = ClusterStatus {
        summary: Some("scaling in TiKV to 3: removing store 7: 45%, ETA 2m10s".into()),
        pd: Some("http://basic-pd.ns.svc:2379".into()),
        id: Some("7371".into()),
        conditions: conds(&[
            ("Available", true, "PDQuorum", ""),
            ("Ready", false, "NotAllReady", ""),
        ]),
        ..Default::default()
    };
    ssa::apply_status(&api(client), "test", "basic", &status)
        .await
        .unwrap();

    group_with_summary::<PDGroup>(client, ns, "basic-pd", "PD 3/3 ready").await;
    group_with_summary::<TiKVGroup>(
        client,
        ns,
        "basic-tikv",
        "scaling in TiKV to 3: removing store 7: 45%, ETA 2m10s",
    )
    .await;

    let pds: Api<PD> = Api::namespaced(client.clone(), ns);
    for (i, name) in ["basic-pd-a", "basic-pd-b", "basic-pd-c"]
        .iter()
        .enumerate()
    {
        create(&pds, &instance("PD", name, "basic-pd", "basic")).await;
        let s = PDStatus {
            id: Some(format!("{}", 100 + i)),
            is_leader: i == 1,
            health: true,
            common: api::v1alpha1::InstanceStatus {
                conditions: conds(&[("Ready", true, "Healthy", "")]),
                ..Default::default()
            },
        };
        ssa::apply_status(&pds, "test", name, &s).await.unwrap();
    }
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), ns);
    let stores: [(&str, u64, &str, i64, i64, &str); 4] = [
        ("basic-tikv-a", 4, "Up", 20, 30, "1920Mi"),
        ("basic-tikv-b", 5, "Up", 3, 30, "1920Mi"),
        ("basic-tikv-c", 6, "Up", 17, 30, "2Gi"),
        ("basic-tikv-d", 7, "Offline", 0, 12, "768Mi"),
    ];
    for (name, id, state, leaders, regions, size) in stores {
        create(&tikvs, &instance("TiKV", name, "basic-tikv", "basic")).await;
        let mut s: TiKVStatus = serde_json::from_value(serde_json::json!({
            "id": id.to_string(), "state": state, "leaderCount": leaders, "regionCount": regions,
            "dataSize": size,
        }))
        .unwrap();
        s.common.conditions = match name {
            "basic-tikv-b" => conds(&[
                ("Ready", true, "StoreUp", ""),
                ("LeadersEvicted", false, "Evicting", ""),
            ]),
            "basic-tikv-d" => {
                s.removal = Some(api::v1alpha1::RemovalProgress {
                    percent: 45,
                    eta_seconds: Some(130),
                });
                conds(&[
                    ("Ready", false, "StoreOffline", "store 7 is Offline"),
                    ("Offlined", false, "Removing", ""),
                ])
            }
            _ => conds(&[("Ready", true, "StoreUp", "")]),
        };
        ssa::apply_status(&tikvs, "test", name, &s).await.unwrap();
    }
    create(
        &tikvs,
        &instance("TiKV", "other-tikv-a", "other-tikv", "other"),
    )
    .await;

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    for (name, reason, message) in [
        (
            "basic-tikv-c",
            "LeaderEvictionTimeout",
            "Store 6 still has 3 leaders after 10m: restarting it anyway",
        ),
        ("other-tikv-a", "PodCannotRun", "not this cluster's"),
    ] {
        let e: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"generateName": "e-"},
            "involvedObject": {"apiVersion": "core.tikv.org/v1alpha1", "kind": "TiKV", "name": name, "namespace": ns},
            "type": "Warning", "reason": reason, "message": message,
            "lastTimestamp": Timestamp::now().to_string(), "count": 1,
            "source": {"component": "tikv-operator/instance-controller"}
        }))
        .unwrap();
        events.create(&PostParams::default(), &e).await.unwrap();
    }
}

#[tokio::test]
async fn status_shows_members_stores_operations_and_warnings() {
    let cp = testenv::shared();
    let ns = cp.create_namespace("plugin-status").await;
    reported_cluster(&cp.client(), &ns).await;
    let (ok, out) = kubectl_tikv(&["-n", &ns, "status", "basic"]);
    assert!(ok, "{out}");
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("Cluster "),
        format!("Cluster {ns}/basic: scaling in TiKV to 3: removing store 7: 45%, ETA 2m10s")
    );
    assert!(line("PD:").contains("cluster id: 7371"));
    assert!(out.contains("Available=True Ready=False"), "{out}");
    assert_eq!(
        line("basic-pd-b"),
        "basic-pd-b 101 leader healthy True v8.5.0 basic-pd-r1"
    );
    assert_eq!(
        line("basic-pd-a"),
        "basic-pd-a 100 healthy True v8.5.0 basic-pd-r1"
    );
    assert_eq!(
        line("basic-tikv-a "),
        "basic-tikv-a 4 Up 20 30 1920Mi True v8.5.0 basic-tikv-r1"
    );
    assert!(
        out.contains("TiKV group basic-tikv: scaling in TiKV to 3"),
        "{out}"
    );
    // Operations in progress, in the groups' words, with what stops them.
    assert!(
        out.contains("basic-tikv-b: evicting leaders from store 5 (3 left)"),
        "{out}"
    );
    assert!(
        out.contains("basic-tikv-d: removing store 7: 45%, ETA 2m10s (store 7 is Offline)"),
        "{out}"
    );
    assert_eq!(
        out.matches("basic-tikv-a:").count(),
        0,
        "a serving store does nothing: {out}"
    );
    // Warnings of this cluster only.
    assert!(out.contains("Recent warnings (1 of 1)"), "{out}");
    assert!(line("LeaderEvictionTimeout").contains("TiKV/basic-tikv-c"));
    assert!(
        !out.contains("other-tikv"),
        "another cluster's objects show: {out}"
    );

    let (ok, out) = kubectl_tikv(&["-n", &ns, "status", "nope"]);
    assert!(!ok);
    assert!(
        out.contains(&format!("there is no Cluster nope in namespace {ns}")),
        "{out}"
    );
}

#[tokio::test]
async fn restart_rolls_the_group_through_the_operator() {
    let cp = testenv::shared();
    let ns = cp.create_namespace("plugin-restart").await;
    let client = cp.client();
    let controller = tokio::spawn(group_controller::run(
        client.clone(),
        operator_runtime::metrics::Metrics::new(),
        2,
        Some(ns.clone()),
    ));
    create(
        &Api::<Cluster>::namespaced(client.clone(), &ns),
        "{apiVersion: core.tikv.org/v1alpha1, kind: Cluster, metadata: {name: basic}, spec: {}}",
    )
    .await;
    let groups: Api<TiKVGroup> = Api::namespaced(client.clone(), &ns);
    let tikvs: Api<TiKV> = Api::namespaced(client.clone(), &ns);
    create(&groups, &group("TiKVGroup", "basic-tikv", 2)).await;
    let revision = |g: &TiKVGroup| g.status.as_ref().and_then(|s| s.update_revision.clone());
    let before = wait_for(30, "the group's revision", || async {
        revision(&groups.get("basic-tikv").await.ok()?)
    })
    .await;
    // Play the instance controller: each store Ready at the revision it was given.
    let ready = || async {
        for t in tikvs.list(&ListParams::default()).await.unwrap().items {
            let s = TiKVStatus {
                common: api::v1alpha1::InstanceStatus {
                    conditions: conds(&[("Ready", true, "StoreUp", "")]),
                    current_revision: api::labels::revision(&t.metadata).map(String::from),
                    observed_generation: t.metadata.generation,
                },
                ..Default::default()
            };
            ssa::apply_status(&tikvs, "test/instance", &t.name_any(), &s)
                .await
                .unwrap();
        }
    };
    wait_for(30, "two stores", || async {
        (tikvs.list(&ListParams::default()).await.ok()?.items.len() == 2).then_some(())
    })
    .await;
    ready().await;

    let (ok, out) = kubectl_tikv(&["-n", &ns, "restart", "basic-tikv"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("TiKVGroup {ns}/basic-tikv restarts")),
        "{out}"
    );
    let after = wait_for(30, "a new revision", || async {
        let r = revision(&groups.get("basic-tikv").await.ok()?)?;
        (r != before).then_some(r)
    })
    .await;
    // One store at a time: the first gets the new revision, the other waits for it to be ready.
    let at_new = |items: &[TiKV]| {
        items
            .iter()
            .filter(|t| api::labels::revision(&t.metadata) == Some(after.as_str()))
            .count()
    };
    wait_for(30, "the first store updated", || async {
        let items = tikvs.list(&ListParams::default()).await.ok()?.items;
        (at_new(&items) == 1).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        at_new(&tikvs.list(&ListParams::default()).await.unwrap().items),
        1
    );
    ready().await;
    wait_for(30, "both stores updated", || async {
        let items = tikvs.list(&ListParams::default()).await.ok()?.items;
        (at_new(&items) == 2).then_some(())
    })
    .await;
    let g = groups.get("basic-tikv").await.unwrap();
    assert!(
        g.spec
            .template
            .metadata
            .unwrap()
            .annotations
            .contains_key(api::labels::RESTARTED_AT),
        "the restart is recorded in the template"
    );

    let (ok, out) = kubectl_tikv(&["-n", &ns, "restart", "pdgroup/basic-tikv"]);
    assert!(!ok);
    assert!(
        out.contains(&format!("there is no PDGroup basic-tikv in namespace {ns}")),
        "{out}"
    );
    controller.abort();
}

#[tokio::test]
async fn report_bundles_objects_events_and_redacted_secrets() {
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("plugin-report").await;
    reported_cluster(&client, &ns).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    create(&secrets, "{apiVersion: v1, kind: Secret, metadata: {name: basic-tls}, stringData: {tls.key: not-for-anyone}}").await;
    // A controller pod that never runs (no kubelet here): its logs cannot be had.
    let ops = cp.create_namespace("plugin-ops").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ops);
    create(&pods, "{apiVersion: v1, kind: Pod, metadata: {name: ic-1, labels: {app.kubernetes.io/name: tikv-operator-instance-controller}}, spec: {containers: [{name: controller, image: ctl}]}}").await;

    let dir = std::env::temp_dir().join(format!("kubectl-tikv-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("bundle.tar.gz");
    let (ok, out) = kubectl_tikv(&[
        "-n",
        &ns,
        "report",
        "basic",
        "-o",
        bundle.to_str().unwrap(),
        "--operator-namespace",
        &ops,
    ]);
    assert!(ok, "{out}");
    let files = unpack(&bundle);
    let file = |name: &str| {
        files
            .iter()
            .find(|(p, _)| p.ends_with(&format!("/{name}")))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("no {name} in {:?}", files.keys()))
    };
    assert!(
        files
            .keys()
            .all(|p| p.starts_with(&format!("tikv-report-{ns}-basic-"))),
        "{:?}",
        files.keys()
    );
    assert!(file("status.txt").contains("basic-tikv-d: removing store 7"));
    let tikvs: serde_yaml::Value = serde_yaml::from_str(&file("objects/tikvs.yaml")).unwrap();
    let names: Vec<&str> = tikvs["items"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "basic-tikv-a",
            "basic-tikv-b",
            "basic-tikv-c",
            "basic-tikv-d"
        ]
    );
    assert!(!file("objects/tikvs.yaml").contains("managedFields"));
    let secrets = file("objects/secrets.yaml");
    assert!(
        secrets.contains("basic-tls") && secrets.contains("<redacted: 14 bytes>"),
        "{secrets}"
    );
    assert!(
        !secrets.contains("not-for-anyone"),
        "a secret value leaked: {secrets}"
    );
    assert!(file("events.yaml").contains("LeaderEvictionTimeout"));
    assert!(file("operator/pods.yaml").contains("ic-1"));
    // The API server serves no log of a pod that never ran, but the plugin asked for it.
    assert!(
        files
            .keys()
            .any(|p| p.ends_with(&format!("/operator/{ops}/ic-1/controller.log")))
    );
    assert_eq!(file("errors.txt"), "none\n");
    assert!(file("README.txt").contains(&format!("TiKV Cluster {ns}/basic")));

    // What cannot be collected is said, and the rest is still there.
    let (ok, out) = kubectl_tikv(&[
        "-n",
        &ns,
        "report",
        "basic",
        "-o",
        bundle.to_str().unwrap(),
        "--operator-namespace",
        "nowhere",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("1 could not be collected"), "{out}");
    let files = unpack(&bundle);
    let errors = files
        .iter()
        .find(|(p, _)| p.ends_with("/errors.txt"))
        .unwrap()
        .1;
    assert!(errors.contains("no controller pods"), "{errors}");
    assert!(files.keys().any(|p| p.ends_with("/objects/tikvs.yaml")));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The files of a `.tar.gz`, by path.
fn unpack(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let mut files = std::collections::BTreeMap::new();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    for entry in tar::Archive::new(gz).entries().unwrap() {
        let mut e = entry.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut text = String::new();
        e.read_to_string(&mut text).unwrap();
        files.insert(path, text);
    }
    files
}

//! Objects for the decision tables: a Cluster, instances and their pods, from small JSON.

use api::v1alpha1::{Cluster, PD, TiKV};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::facts::Facts;
use super::plan::FINALIZER;

/// The time every table is decided at.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

/// `seconds` before [`now`], as a condition's lastTransitionTime.
pub fn ago(seconds: i64) -> String {
    Timestamp::from_second(now().as_second() - seconds)
        .unwrap()
        .to_string()
}

/// Cluster `basic` reporting PD's URL; `spec` is merged into its spec.
pub fn cluster(spec: Value) -> Cluster {
    let mut c = json!({
        "apiVersion": "core.tikv.org/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "basic", "namespace": "ns"},
        "spec": {},
        "status": {"pd": "http://basic-pd.ns.svc:2379"}
    });
    merge(&mut c["spec"], spec);
    serde_json::from_value(c).unwrap()
}

fn meta(name: &str, group: &str, component: &str, revision: &str) -> Value {
    json!({
        "name": name, "namespace": "ns", "uid": format!("uid-{name}"), "generation": 2,
        "finalizers": [FINALIZER],
        "labels": {
            "tikv.org/revision": revision, "tikv.org/group": group, "tikv.org/cluster": "basic",
            "app.kubernetes.io/component": component
        }
    })
}

fn volumes() -> Value {
    json!([{"name": "data", "mounts": [{"type": "data"}], "storage": "1Gi"}])
}

/// TiKV `t1` at `revision`; `spec` and `status` are merged in.
pub fn tikv(revision: &str, spec: Value, status: Value) -> TiKV {
    let mut t = json!({
        "apiVersion": "core.tikv.org/v1alpha1", "kind": "TiKV",
        "metadata": meta("t1", "basic-tikv", "tikv", revision),
        "spec": {"cluster": {"name": "basic"}, "subdomain": "basic-tikv-peer", "version": "v8.5.0",
                 "volumes": volumes()},
        "status": {}
    });
    merge(&mut t["spec"], spec);
    merge(&mut t["status"], status);
    serde_json::from_value(t).unwrap()
}

/// PD member `pd-b` at `revision`; `status` is merged in.
pub fn pd(revision: &str, status: Value) -> PD {
    let mut p = json!({
        "apiVersion": "core.tikv.org/v1alpha1", "kind": "PD",
        "metadata": meta("pd-b", "basic-pd", "pd", revision),
        "spec": {"cluster": {"name": "basic"}, "subdomain": "basic-pd-peer", "version": "v8.5.0",
                 "volumes": volumes()},
        "status": {}
    });
    merge(&mut p["status"], status);
    serde_json::from_value(p).unwrap()
}

/// The pod `name` at `revision`, Ready or not.
pub fn pod(name: &str, revision: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("pod-{name}-{revision}"),
                     "labels": {"tikv.org/revision": revision}},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
    .unwrap()
}

/// A condition as stored, of `type_`/`status`/`reason`, since `since` seconds.
pub fn condition(type_: &str, status: &str, reason: &str, since: i64) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "",
           "lastTransitionTime": ago(since)})
}

/// The facts of `obj` with `cluster` and `pod`.
pub fn facts<'a, K>(obj: &'a K, cluster: Option<Cluster>, pod: Option<Pod>) -> Facts<'a, K> {
    Facts {
        obj,
        namespace: "ns".into(),
        cluster,
        pod,
        tls_secret: None,
        pd_tls: None,
        now: now(),
    }
}

/// `obj` marked as being deleted.
pub fn deleting<K: kube::Resource>(mut obj: K) -> K {
    obj.meta_mut().deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    obj
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

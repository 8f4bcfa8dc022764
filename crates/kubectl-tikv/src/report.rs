//! `kubectl tikv report`: a support bundle, one `.tar.gz` to attach to an issue. It holds the
//! status screen, the cluster's objects (its CRs, pods, PVCs, ConfigMaps, Services), the
//! namespace's Secrets with every value redacted, the Events of the namespace and the
//! controllers' logs. What could not be collected (no permission, no logs yet) is listed in
//! `errors.txt` instead of failing the whole bundle.

use std::collections::BTreeMap;
use std::io::Write;

use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use crate::Error;
use crate::view::ClusterView;

/// The `app.kubernetes.io/name` of the controllers' pods (their charts set it).
pub const CONTROLLERS: [&str; 3] = [
    "tikv-operator-cluster-controller",
    "tikv-operator-group-controller",
    "tikv-operator-instance-controller",
];

/// Annotation kubectl writes with the whole object, Secret data included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The files of a bundle, by path inside it, and what could not be collected.
#[derive(Debug, Default)]
pub struct Bundle {
    /// Path inside the bundle → contents.
    pub files: BTreeMap<String, Vec<u8>>,
    /// What is missing, and why.
    pub errors: Vec<String>,
}

impl Bundle {
    fn add(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), contents.into());
    }

    /// Adds `items` as one YAML `List` at `path`, cleaned of noise and secrets.
    fn add_list<T: Serialize>(&mut self, path: &str, items: &[T]) {
        let items: Vec<Value> = items
            .iter()
            .filter_map(|i| serde_json::to_value(i).ok())
            .map(clean)
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        match serde_yaml::to_string(&list) {
            Ok(yaml) => self.add(path, yaml),
            Err(e) => self.errors.push(format!("{path}: {e}")),
        }
    }
}

/// An object as the bundle keeps it: without managed fields (noise) and without kubectl's
/// last-applied annotation (a copy of the object, Secret data included).
pub fn clean(mut obj: Value) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(LAST_APPLIED);
        }
    }
    obj
}

/// A Secret with its keys kept and every value replaced by its length.
pub fn redact(secret: &Secret) -> Secret {
    let mut s = secret.clone();
    let redacted = |n: usize| format!("<redacted: {n} bytes>");
    let string_data: BTreeMap<String, String> = s
        .data
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, redacted(v.0.len())))
        .chain(
            s.string_data
                .take()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, redacted(v.len()))),
        )
        .collect();
    s.string_data = (!string_data.is_empty()).then_some(string_data);
    if let Some(a) = s.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    s
}

/// Lists `K` in `ns` with `selector` (empty: all), or records why not.
async fn list<K>(bundle: &mut Bundle, client: &Client, ns: &str, selector: &str) -> Vec<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let params = ListParams::default().labels(selector);
    match Api::<K>::namespaced(client.clone(), ns).list(&params).await {
        Ok(l) => l.items,
        Err(e) => {
            bundle
                .errors
                .push(format!("listing {} in {ns}: {e}", K::plural(&())));
            Vec::new()
        }
    }
}

/// Collects the bundle of `view`. `operator_ns`: where the controllers run (`None`: look in
/// every namespace); `log_lines`: how much of each controller log to keep.
pub async fn collect(
    client: &Client,
    view: &ClusterView,
    status: &str,
    operator_ns: Option<&str>,
    log_lines: i64,
    now: Timestamp,
) -> Bundle {
    let mut b = Bundle::default();
    let ns = view.namespace.as_str();
    let cluster = view.cluster.name_any();
    b.add("status.txt", status);
    b.add_list("objects/clusters.yaml", std::slice::from_ref(&view.cluster));
    b.add_list("objects/pdgroups.yaml", &view.pd_groups);
    b.add_list("objects/tikvgroups.yaml", &view.tikv_groups);
    b.add_list("objects/pds.yaml", &view.pds);
    b.add_list("objects/tikvs.yaml", &view.tikvs);
    let selector = format!("{}={cluster}", api::labels::CLUSTER);
    let pods: Vec<Pod> = list(&mut b, client, ns, &selector).await;
    b.add_list("objects/pods.yaml", &pods);
    let pvcs: Vec<PersistentVolumeClaim> = list(&mut b, client, ns, &selector).await;
    b.add_list("objects/persistentvolumeclaims.yaml", &pvcs);
    let cms: Vec<ConfigMap> = list(&mut b, client, ns, &selector).await;
    b.add_list("objects/configmaps.yaml", &cms);
    let services: Vec<Service> = list(&mut b, client, ns, &selector).await;
    b.add_list("objects/services.yaml", &services);
    // All of the namespace's Secrets (TLS, credentials a config refers to), values redacted.
    let secrets: Vec<Secret> = list(&mut b, client, ns, "").await;
    let redacted: Vec<Secret> = secrets.iter().map(redact).collect();
    b.add_list("objects/secrets.yaml", &redacted);
    let events: Vec<Event> = list(&mut b, client, ns, "").await;
    b.add_list("events.yaml", &events);
    controller_logs(&mut b, client, operator_ns, log_lines).await;
    let mut readme = format!(
        "Support bundle of TiKV Cluster {ns}/{cluster}, made by kubectl-tikv {} at {now}.\n\n\
         status.txt        what `kubectl tikv status` shows\n\
         objects/          the Cluster, its groups and instances, pods, PVCs, ConfigMaps, Services;\n\
         \x20                 the namespace's Secrets with every value redacted\n\
         events.yaml       the namespace's Events\n\
         operator/         the controllers' pods and the last {log_lines} lines of their logs\n\
         errors.txt        what could not be collected, and why\n",
        env!("CARGO_PKG_VERSION")
    );
    readme.push_str(&format!("\n{} files.\n", b.files.len() + 2));
    b.add("README.txt", readme);
    let errors = if b.errors.is_empty() {
        "none\n".to_string()
    } else {
        b.errors.join("\n") + "\n"
    };
    b.add("errors.txt", errors);
    b
}

/// The controllers' pods and their logs (the previous container's too, after a restart).
async fn controller_logs(b: &mut Bundle, client: &Client, ns: Option<&str>, lines: i64) {
    let api: Api<Pod> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let selector = format!("app.kubernetes.io/name in ({})", CONTROLLERS.join(","));
    let pods = match api.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l.items,
        Err(e) => {
            b.errors.push(format!(
                "listing the controllers' pods in {}: {e}",
                ns.unwrap_or("every namespace")
            ));
            return;
        }
    };
    if pods.is_empty() {
        b.errors.push(format!(
            "no controller pods ({selector}) in {}",
            ns.unwrap_or("any namespace")
        ));
    }
    b.add_list("operator/pods.yaml", &pods);
    for pod in &pods {
        let (pod_ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod_ns);
        let restarted = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.restart_count > 0));
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| c.name.clone());
        for container in containers {
            for previous in [false, true].into_iter().filter(|p| !p || restarted) {
                let params = LogParams {
                    container: Some(container.clone()),
                    tail_lines: Some(lines),
                    timestamps: true,
                    previous,
                    ..Default::default()
                };
                let suffix = if previous { ".previous" } else { "" };
                let path = format!("operator/{pod_ns}/{name}/{container}{suffix}.log");
                match api.logs(&name, &params).await {
                    Ok(text) => b.add(path, text),
                    Err(e) => b
                        .errors
                        .push(format!("logs of {pod_ns}/{name}/{container}{suffix}: {e}")),
                }
            }
        }
    }
}

/// Writes `bundle` as a gzip-compressed tar at `path`, every file under `prefix/`.
pub fn write(bundle: &Bundle, prefix: &str, path: &std::path::Path) -> Result<(), Error> {
    let io = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for (name, contents) in &bundle.files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, format!("{prefix}/{name}"), contents.as_slice())
            .map_err(io)?;
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .and_then(|mut f| f.flush())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    #[test]
    fn secrets_keep_their_keys_and_lose_their_values() {
        let mut s = Secret::default();
        s.metadata.name = Some("tls".into());
        s.metadata.annotations = Some(BTreeMap::from([
            (
                LAST_APPLIED.to_string(),
                r#"{"data":{"key":"c2VjcmV0"}}"#.to_string(),
            ),
            ("owner".to_string(), "team".to_string()),
        ]));
        s.data = Some(BTreeMap::from([(
            "tls.key".to_string(),
            ByteString(b"secret-bytes".to_vec()),
        )]));
        s.string_data = Some(BTreeMap::from([("token".to_string(), "abc".to_string())]));
        let r = redact(&s);
        assert_eq!(r.data, None);
        let sd = r.string_data.unwrap();
        assert_eq!(sd["tls.key"], "<redacted: 12 bytes>");
        assert_eq!(sd["token"], "<redacted: 3 bytes>");
        let a = r.metadata.annotations.unwrap();
        assert!(!a.contains_key(LAST_APPLIED));
        assert_eq!(a["owner"], "team");
        let text = serde_json::to_string(&redact(&s)).unwrap();
        assert!(!text.contains("secret-bytes") && !text.contains("c2VjcmV0"));
    }

    #[test]
    fn objects_lose_managed_fields_and_the_last_applied_copy() {
        let obj = serde_json::json!({"metadata": {"name": "x", "managedFields": [{}],
            "annotations": {LAST_APPLIED: "{}", "keep": "me"}}});
        let c = clean(obj);
        assert!(c["metadata"].get("managedFields").is_none());
        assert_eq!(
            c["metadata"]["annotations"],
            serde_json::json!({"keep": "me"})
        );
    }
}

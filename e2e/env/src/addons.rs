//! What the cluster needs besides nodes, run on the control-plane host as processes next to the
//! API server: CoreDNS (cluster DNS) and rancher's local-path-provisioner (the default
//! StorageClass, as in kind). As processes rather than pods, they keep working whatever a test
//! does to the worker nodes.

use std::path::Path;

use crate::plan::{CLUSTER_DOMAIN, CONTROL_PLANE_IP, Plan};
use crate::state::State;

/// Where CoreDNS reports readiness (its `ready` plugin), on the control-plane host's loopback.
pub const COREDNS_READY: &str = "127.0.0.1:8181";

/// The namespace of local-path-provisioner's configuration and helper pods.
pub const LOCAL_PATH_NAMESPACE: &str = "local-path-storage";

/// The default StorageClass.
pub const STORAGE_CLASS: &str = "standard";

/// The helper pods' image (built by `images/build.sh`).
pub const HELPER_IMAGE: &str = "docker.io/library/busybox:1.35";

/// CoreDNS's configuration: the cluster domain (and reverse zones) from the API server, on the
/// control-plane host's address, nothing else. Other names are refused at once: there is no
/// upstream to forward to, and no query leaves the machine.
pub fn corefile(kubeconfig: &Path) -> String {
    format!(
        r#"{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {CONTROL_PLANE_IP}
    errors
    ready {COREDNS_READY}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"#,
        kubeconfig = kubeconfig.display()
    )
}

/// The arguments of `coredns`.
pub fn coredns_args(state: &State) -> Vec<String> {
    vec![
        "-conf".into(),
        state.dir.join("Corefile").display().to_string(),
    ]
}

/// local-path-provisioner's objects: its namespace, the helper pods' ServiceAccount, its
/// configuration (a directory under each worker's node directory; the helper pod creates and
/// removes a volume's directory on the volume's node) and the default StorageClass, bound when a
/// pod is scheduled (so a volume lives on the node of its first pod, and the pod keeps coming back
/// there). As YAML for `kubectl apply`.
pub fn local_path_manifests(state: &State, plan: &Plan) -> String {
    let paths: Vec<serde_json::Value> = plan
        .workers()
        .iter()
        .map(|n| {
            serde_json::json!({
                "node": n.name,
                "paths": [state.node_dir(&n.name).join("local-path").display().to_string()],
            })
        })
        .collect();
    let config = serde_json::json!({ "nodePathMap": paths }).to_string();
    let helper = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: helper-pod\nspec:\n  priorityClassName: system-node-critical\n  tolerations:\n  - {{key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}}\n  containers:\n  - name: helper-pod\n    image: {HELPER_IMAGE}\n    imagePullPolicy: IfNotPresent\n"
    );
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "local-path-config", "namespace": LOCAL_PATH_NAMESPACE},
        "data": {
            "config.json": config,
            "setup": "#!/bin/sh\nset -eu\nmkdir -m 0777 -p \"$VOL_DIR\"\n",
            "teardown": "#!/bin/sh\nset -eu\nrm -rf \"$VOL_DIR\"\n",
            "helperPod.yaml": helper,
        },
    });
    let objects = [
        serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": LOCAL_PATH_NAMESPACE},
        }),
        serde_json::json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "local-path-provisioner-service-account", "namespace": LOCAL_PATH_NAMESPACE},
        }),
        cm,
        serde_json::json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        }),
    ];
    // JSON is YAML; one document per object.
    objects
        .iter()
        .map(|o| format!("---\n{o}\n"))
        .collect::<String>()
}

/// The arguments of `local-path-provisioner`.
pub fn local_path_args(state: &State) -> Vec<String> {
    vec![
        "start".into(),
        format!("--kubeconfig={}", state.kubeconfig().display()),
        format!("--namespace={LOCAL_PATH_NAMESPACE}"),
        "--configmap-name=local-path-config".into(),
        "--service-account-name=local-path-provisioner-service-account".into(),
        format!("--helper-image={HELPER_IMAGE}"),
        "--provisioner-name=rancher.io/local-path".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_serves_only_the_cluster_domain_from_the_api_server() {
        let c = corefile(Path::new("/env/kubeconfig"));
        assert!(c.starts_with("cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {"));
        assert!(c.contains("bind 10.200.0.1"));
        assert!(c.contains("kubeconfig /env/kubeconfig"));
        assert!(!c.contains("forward"), "no upstream: {c}");
    }

    #[test]
    fn volumes_live_in_each_workers_directory() {
        let state = State::new(Path::new("/env"), Plan::new("x", 3));
        let yaml = local_path_manifests(&state, &state.plan);
        let docs: Vec<serde_json::Value> = yaml
            .split("---\n")
            .filter(|d| !d.trim().is_empty())
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 4);
        let config: serde_json::Value =
            serde_json::from_str(docs[2]["data"]["config.json"].as_str().unwrap()).unwrap();
        assert_eq!(config["nodePathMap"].as_array().unwrap().len(), 3);
        assert_eq!(config["nodePathMap"][1]["node"], "node-1");
        assert_eq!(
            config["nodePathMap"][1]["paths"][0],
            "/env/nodes/node-1/local-path"
        );
        assert!(
            docs[2]["data"]["helperPod.yaml"]
                .as_str()
                .unwrap()
                .contains(HELPER_IMAGE)
        );
        assert_eq!(docs[3]["volumeBindingMode"], "WaitForFirstConsumer");
    }
}

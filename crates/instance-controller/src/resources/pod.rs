//! Pure builders of an instance's Pod and PVCs. The pod binds to its own pod IP (never 0.0.0.0)
//! and advertises its stable DNS name `<instance>.<subdomain>.<namespace>.svc`.

use std::collections::BTreeMap;

use api::v1alpha1::{Overlay, Volume, VolumeMountType};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSpec, Probe, ResourceRequirements,
    SecretVolumeSource, TCPSocketAction, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

/// Where the config file is mounted.
pub const CONFIG_DIR: &str = "/etc/tikv-operator";
/// The config file name inside [`CONFIG_DIR`] and the ConfigMap key.
pub const CONFIG_FILE: &str = "config.toml";

/// A pod that cannot be built from the spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// No volume is mounted as `type: data`.
    #[error("no volume is mounted as type data")]
    NoDataVolume,
    /// The pod overlay does not give a valid PodSpec.
    #[error("overlay.pod.spec does not give a valid PodSpec: {0}")]
    Overlay(String),
}

/// Everything the pod builder needs, computed from the instance and its cluster.
#[derive(Clone, Debug)]
pub struct PodInputs<'a> {
    /// Instance (and pod) name.
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Labels of the pod (the instance's labels).
    pub labels: BTreeMap<String, String>,
    /// Owner: the instance.
    pub owner: OwnerReference,
    /// Headless Service of the group.
    pub subdomain: &'a str,
    /// Node labels to pin the pod to.
    pub topology: Option<&'a BTreeMap<String, String>>,
    /// `pd` or `tikv`: container name.
    pub component: &'static str,
    /// Full image reference.
    pub image: String,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Named container ports.
    pub ports: Vec<(&'static str, i32)>,
    /// Readiness probe.
    pub readiness: Probe,
    /// The port serving `/metrics` (PD's client port, TiKV's status port), announced to
    /// Prometheus by the `prometheus.io/*` annotations.
    pub metrics_port: i32,
    /// Volumes of the spec.
    pub volumes: &'a [Volume],
    /// Default path of the `data` mount.
    pub data_path: &'static str,
    /// Container resources.
    pub resources: Option<&'a ResourceRequirements>,
    /// User patches.
    pub overlay: Option<&'a Overlay>,
    /// How long the kubelet lets the process stop after SIGTERM before killing it.
    pub termination_grace_seconds: i64,
    /// The certificate's Secret volume (TLS on).
    pub tls: Option<TlsMount>,
}

/// Name of the pod volume of the certificate's Secret.
pub const TLS_VOLUME: &str = "cluster-tls";

/// A certificate Secret mounted read-only; the kubelet updates the files when the Secret
/// changes, and the component picks them up without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsMount {
    /// The Secret.
    pub secret: String,
    /// Where it is mounted.
    pub path: &'static str,
}

impl TlsMount {
    /// The Secret `secret` at `path`.
    pub fn new(secret: &str, path: &'static str) -> Self {
        Self {
            secret: secret.to_string(),
            path,
        }
    }
}

/// `<instance>.<subdomain>.<namespace>.svc`: the stable address of an instance.
pub fn fqdn(name: &str, subdomain: &str, namespace: &str) -> String {
    format!("{name}.{subdomain}.{namespace}.svc")
}

/// The image with the version as its tag, unless the image already names a tag or digest.
pub fn image_ref(image: &str, version: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:{version}")
    }
}

/// PVC name of a volume of an instance.
pub fn pvc_name(volume: &str, instance: &str) -> String {
    format!("{volume}-{instance}")
}

/// Mount path of a volume mount, and whether it is the data directory.
pub fn data_dir(volumes: &[Volume], default: &str) -> Option<String> {
    volumes
        .iter()
        .flat_map(|v| &v.mounts)
        .find(|m| m.type_ == Some(VolumeMountType::Data))
        .map(|m| m.mount_path.clone().unwrap_or_else(|| default.to_string()))
}

/// HTTP GET readiness probe.
pub fn http_probe(path: &str, port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// TCP readiness probe.
pub fn tcp_probe(port: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Builds the pod.
pub fn build_pod(input: &PodInputs) -> Result<Pod, Error> {
    let data = data_dir(input.volumes, input.data_path).ok_or(Error::NoDataVolume)?;
    let mut mounts = vec![VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }];
    let mut volumes = vec![k8s_openapi::api::core::v1::Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: input.name.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if let Some(tls) = &input.tls {
        mounts.push(VolumeMount {
            name: TLS_VOLUME.into(),
            mount_path: tls.path.into(),
            read_only: Some(true),
            ..Default::default()
        });
        volumes.push(k8s_openapi::api::core::v1::Volume {
            name: TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for v in input.volumes {
        for m in &v.mounts {
            let path = match (&m.mount_path, m.type_) {
                (Some(p), _) => p.clone(),
                (None, Some(VolumeMountType::Data)) => data.clone(),
                (None, None) => continue,
            };
            mounts.push(VolumeMount {
                name: v.name.clone(),
                mount_path: path,
                sub_path: m.sub_path.clone(),
                ..Default::default()
            });
        }
        volumes.push(k8s_openapi::api::core::v1::Volume {
            name: v.name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc_name(&v.name, input.name),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let container = Container {
        name: input.component.to_string(),
        image: Some(input.image.clone()),
        command: Some(input.command.clone()),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_IP", "status.podIP"),
        ]),
        ports: Some(
            input
                .ports
                .iter()
                .map(|(n, p)| ContainerPort {
                    name: Some(n.to_string()),
                    container_port: *p,
                    ..Default::default()
                })
                .collect(),
        ),
        readiness_probe: Some(input.readiness.clone()),
        resources: input.resources.cloned(),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let spec = PodSpec {
        hostname: Some(input.name.to_string()),
        subdomain: Some(input.subdomain.to_string()),
        node_selector: input.topology.cloned(),
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(input.termination_grace_seconds),
        ..Default::default()
    };
    let overlay = input.overlay.and_then(|o| o.pod.as_ref());
    let spec = match overlay.and_then(|p| p.spec.as_ref()) {
        Some(patch) => {
            let mut base =
                serde_json::to_value(&spec).map_err(|e| Error::Overlay(e.to_string()))?;
            merge(&mut base, patch);
            serde_json::from_value(base).map_err(|e| Error::Overlay(e.to_string()))?
        }
        None => spec,
    };
    let mut labels = input.labels.clone();
    let mut annotations = scrape_annotations(input.metrics_port);
    if let Some(meta) = overlay.and_then(|p| p.metadata.as_ref()) {
        // Overlay first, ours last: the operator's labels always win. Annotations are the
        // user's to override (e.g. `prometheus.io/scrape: "false"`).
        let mut merged = meta.labels.clone();
        merged.extend(labels);
        labels = merged;
        annotations.extend(meta.annotations.clone());
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(input.name.to_string()),
            namespace: Some(input.namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![input.owner.clone()]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// The conventional annotations that tell an annotation-driven Prometheus (`kubernetes_sd` with
/// the usual relabeling) where the pod's metrics are.
pub fn scrape_annotations(port: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), port.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ])
}

/// Lists merged element by element on this key instead of replaced.
const MERGE_KEYS: &[&str] = &[
    "containers",
    "initContainers",
    "volumes",
    "volumeMounts",
    "env",
    "ports",
];

/// Merges `patch` into `base`: objects key by key, the lists in [`MERGE_KEYS`] by `name`
/// (or `containerPort`), other values replaced. `null` removes a key.
pub fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, pv) in p {
                if pv.is_null() {
                    b.remove(k);
                    continue;
                }
                match (b.get_mut(k), pv) {
                    (Some(Value::Array(ba)), Value::Array(pa))
                        if MERGE_KEYS.contains(&k.as_str()) =>
                    {
                        for item in pa {
                            let key = |v: &Value| {
                                v.get("name").or_else(|| v.get("containerPort")).cloned()
                            };
                            match ba
                                .iter_mut()
                                .find(|x| key(x).is_some() && key(x) == key(item))
                            {
                                Some(existing) => merge(existing, item),
                                None => ba.push(item.clone()),
                            }
                        }
                    }
                    (Some(bv), _) => merge(bv, pv),
                    (None, _) => {
                        b.insert(k.clone(), pv.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The PVCs of an instance, one per volume.
pub fn build_pvcs(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: &OwnerReference,
    volumes: &[Volume],
    overlay: Option<&Overlay>,
) -> Vec<PersistentVolumeClaim> {
    volumes
        .iter()
        .map(|v| {
            let meta = overlay
                .and_then(|o| o.volume_claims.iter().find(|c| c.name == v.name))
                .and_then(|c| c.metadata.as_ref());
            let mut l = meta.map(|m| m.labels.clone()).unwrap_or_default();
            l.extend(labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(pvc_name(&v.name, name)),
                    namespace: Some(namespace.to_string()),
                    labels: Some(l),
                    annotations: meta
                        .map(|m| m.annotations.clone())
                        .filter(|a| !a.is_empty()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_string()]),
                    storage_class_name: v.storage_class_name.clone(),
                    volume_attributes_class_name: v.volume_attributes_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            v.storage.clone(),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                status: None,
            }
        })
        .collect()
}

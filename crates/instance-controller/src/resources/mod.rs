//! What an instance runs, built from its spec alone: the ConfigMap with its config file, its PVCs
//! and its Pod. Pure: nothing here talks to the API server or PD.

pub mod component;
pub mod config;
pub mod pod;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::ObjectMeta;

use crate::kind::InstanceKind;
use pod::CONFIG_FILE;

/// The objects of an instance, as they should be.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The config file.
    pub config_map: ConfigMap,
    /// One PVC per volume.
    pub pvcs: Vec<PersistentVolumeClaim>,
    /// The pod.
    pub pod: Pod,
}

/// Why the spec gives no pod. Only the user can fix it, by changing the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The config cannot be used (bad TOML, keys the operator owns).
    Config(String),
    /// No data volume, or an overlay that does not give a valid pod.
    Spec(String),
}

/// The objects of `obj` in `namespace`, whose PD answers at `pd_url`; with TLS on, its
/// certificate comes from the Secret `tls_secret`.
pub fn desired<K: InstanceKind>(
    obj: &K,
    namespace: &str,
    pd_url: &str,
    tls_secret: Option<&str>,
) -> Result<Desired, Invalid> {
    let invalid = |e: config::Error| Invalid::Config(e.to_string());
    let mut rendered = config::render(obj.config(), K::OWNED_CONFIG_KEYS).map_err(invalid)?;
    if tls_secret.is_some() {
        config::render(obj.config(), K::TLS_OWNED_CONFIG_KEYS).map_err(invalid)?;
        rendered = K::with_tls_config(&rendered).map_err(invalid)?;
    }
    let inputs = obj
        .pod_inputs(namespace, pd_url, tls_secret)
        .ok_or_else(|| Invalid::Spec(pod::Error::NoDataVolume.to_string()))?;
    let pod = pod::build_pod(&inputs).map_err(|e| Invalid::Spec(e.to_string()))?;
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(obj.name_any()),
            namespace: Some(namespace.to_string()),
            labels: Some(inputs.labels.clone()),
            owner_references: Some(vec![inputs.owner.clone()]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), rendered)])),
        ..Default::default()
    };
    let pvcs = pod::build_pvcs(
        inputs.name,
        namespace,
        &inputs.labels,
        &inputs.owner,
        inputs.volumes,
        inputs.overlay,
    );
    Ok(Desired {
        config_map,
        pvcs,
        pod,
    })
}

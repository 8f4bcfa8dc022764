//! What differs between PD and TiKV instances in the resources they run and the status they
//! write, behind one trait.

use std::fmt::Debug;

use api::v1alpha1::{Instance, InstanceStatus, PD, PDStatus, TiKV, TiKVStatus};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resources::component;
use crate::resources::config;
use crate::resources::pod::PodInputs;

/// An instance kind (PD or TiKV).
pub trait InstanceKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Instance
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Its status type.
    type Status: Serialize + Default + Clone + PartialEq + Debug + Send + Sync;
    /// `pd` or `tikv`: the component label value and the container name.
    const COMPONENT: &'static str;
    /// Config keys the operator owns.
    const OWNED_CONFIG_KEYS: &'static [&'static str];
    /// User config (TOML).
    fn config(&self) -> Option<&str>;
    /// Pod inputs; `pd_url` is PD's client URL.
    fn pod_inputs<'a>(&'a self, namespace: &'a str, pd_url: &str) -> Option<PodInputs<'a>>;
    /// The stored status, or a default one.
    fn status_or_default(&self) -> Self::Status;
    /// The common part of a status.
    fn common(status: &mut Self::Status) -> &mut InstanceStatus;
}

impl InstanceKind for PD {
    type Status = PDStatus;
    const COMPONENT: &'static str = "pd";
    const OWNED_CONFIG_KEYS: &'static [&'static str] = config::PD_OWNED;
    fn config(&self) -> Option<&str> {
        self.spec.template.config.as_deref()
    }
    fn pod_inputs<'a>(&'a self, namespace: &'a str, pd_url: &str) -> Option<PodInputs<'a>> {
        component::pd_pod_inputs(self, namespace, pd_url)
    }
    fn status_or_default(&self) -> PDStatus {
        self.status.clone().unwrap_or_default()
    }
    fn common(status: &mut PDStatus) -> &mut InstanceStatus {
        &mut status.common
    }
}

impl InstanceKind for TiKV {
    type Status = TiKVStatus;
    const COMPONENT: &'static str = "tikv";
    const OWNED_CONFIG_KEYS: &'static [&'static str] = config::TIKV_OWNED;
    fn config(&self) -> Option<&str> {
        self.spec.template.config.as_deref()
    }
    fn pod_inputs<'a>(&'a self, namespace: &'a str, pd_url: &str) -> Option<PodInputs<'a>> {
        component::tikv_pod_inputs(self, namespace, pd_url)
    }
    fn status_or_default(&self) -> TiKVStatus {
        self.status.clone().unwrap_or_default()
    }
    fn common(status: &mut TiKVStatus) -> &mut InstanceStatus {
        &mut status.common
    }
}

/// PD's client URL as seen from inside the cluster: the PD group's client Service.
pub fn pd_service_url(pd_group: &str, namespace: &str, port: i32) -> String {
    format!("http://{pd_group}.{namespace}.svc:{port}")
}

/// The group an instance belongs to (label `tikv.org/group`).
pub fn group_of<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get(api::labels::GROUP))
        .map(String::as_str)
}

/// Label selector of one component's objects and pods in a cluster (all its groups).
pub fn cluster_component(cluster: &str, component: &str) -> String {
    format!(
        "{}={cluster},{}={component}",
        api::labels::CLUSTER,
        api::labels::COMPONENT
    )
}

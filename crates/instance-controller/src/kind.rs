//! What differs between PD and TiKV instances in the resources they run and the status they
//! write, behind one trait.

use std::fmt::Debug;

use api::v1alpha1::{ComponentTls, Instance, InstanceStatus, PD, PDStatus, TiKV, TiKVStatus};
use k8s_openapi::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::resources::component;
use crate::resources::config;
use crate::resources::pod::{PodInputs, fqdn};

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
    /// Config keys the operator owns with TLS on.
    const TLS_OWNED_CONFIG_KEYS: &'static [&'static str];
    /// User config (TOML).
    fn config(&self) -> Option<&str>;
    /// The checked config with what TLS adds to it.
    fn with_tls_config(rendered: &str) -> Result<String, config::Error>;
    /// The template's TLS settings.
    fn tls(&self) -> Option<&ComponentTls>;
    /// The names others reach it at, which its certificate must be valid for.
    fn tls_names(&self, namespace: &str) -> Vec<String>;
    /// Pod inputs; `pd_url` is PD's client URL; `tls_secret` the certificate's Secret (TLS on).
    fn pod_inputs<'a>(
        &'a self,
        namespace: &'a str,
        pd_url: &str,
        tls_secret: Option<&str>,
    ) -> Option<PodInputs<'a>>;
    /// The stored status, or a default one.
    fn status_or_default(&self) -> Self::Status;
    /// The common part of a status.
    fn common(status: &mut Self::Status) -> &mut InstanceStatus;
}

impl InstanceKind for PD {
    type Status = PDStatus;
    const COMPONENT: &'static str = "pd";
    const OWNED_CONFIG_KEYS: &'static [&'static str] = config::PD_OWNED;
    const TLS_OWNED_CONFIG_KEYS: &'static [&'static str] = config::PD_TLS_OWNED;
    fn config(&self) -> Option<&str> {
        self.spec.template.config.as_deref()
    }
    fn with_tls_config(rendered: &str) -> Result<String, config::Error> {
        // PD gets its files as flags.
        Ok(rendered.to_string())
    }
    fn tls(&self) -> Option<&ComponentTls> {
        self.spec.template.tls.as_ref()
    }
    fn tls_names(&self, namespace: &str) -> Vec<String> {
        // Members dial each other by name; stores and clients reach PD through its Service.
        let mut names = vec![fqdn(&self.name_any(), &self.spec.subdomain, namespace)];
        names.extend(group_of(self).map(|g| format!("{g}.{namespace}.svc")));
        names
    }
    fn pod_inputs<'a>(
        &'a self,
        namespace: &'a str,
        pd_url: &str,
        tls_secret: Option<&str>,
    ) -> Option<PodInputs<'a>> {
        component::pd_pod_inputs(self, namespace, pd_url, tls_secret)
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
    const TLS_OWNED_CONFIG_KEYS: &'static [&'static str] = config::TIKV_TLS_OWNED;
    fn config(&self) -> Option<&str> {
        self.spec.template.config.as_deref()
    }
    fn with_tls_config(rendered: &str) -> Result<String, config::Error> {
        config::with_security(rendered, component::TIKV_TLS_DIR)
    }
    fn tls(&self) -> Option<&ComponentTls> {
        self.spec.template.tls.as_ref()
    }
    fn tls_names(&self, namespace: &str) -> Vec<String> {
        vec![fqdn(&self.name_any(), &self.spec.subdomain, namespace)]
    }
    fn pod_inputs<'a>(
        &'a self,
        namespace: &'a str,
        pd_url: &str,
        tls_secret: Option<&str>,
    ) -> Option<PodInputs<'a>> {
        component::tikv_pod_inputs(self, namespace, pd_url, tls_secret)
    }
    fn status_or_default(&self) -> TiKVStatus {
        self.status.clone().unwrap_or_default()
    }
    fn common(status: &mut TiKVStatus) -> &mut InstanceStatus {
        &mut status.common
    }
}

/// PD's client URL as seen from inside the cluster: the PD group's client Service (`https`
/// with TLS on).
pub fn pd_service_url(pd_group: &str, namespace: &str, port: i32, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{pd_group}.{namespace}.svc:{port}")
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

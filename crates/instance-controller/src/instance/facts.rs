//! What a reconcile reads from the API server about any instance, once, at its start: the
//! object itself (from the controller's cache), its Cluster and its pod. The questions asked of
//! them ("is the pod outdated?") are answered here, in one place.

use api::v1alpha1::Cluster;
use api::v1alpha1::ComponentTls;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Resource, ResourceExt};

use operator_runtime::tls_secret;

use crate::context::{Context, Error};
use crate::kind::{InstanceKind, group_of};
use crate::status;

/// The facts every instance reconcile starts from.
#[derive(Clone, Debug)]
pub struct Facts<'a, K> {
    /// The instance.
    pub obj: &'a K,
    /// Its namespace.
    pub namespace: String,
    /// Its Cluster (`None`: it does not exist).
    pub cluster: Option<Cluster>,
    /// Its pod (not read while the instance is being deleted: nothing is done with it then).
    pub pod: Option<Pod>,
    /// With TLS on: its certificate Secret (`None`: it does not exist, or TLS is off).
    pub tls_secret: Option<Secret>,
    /// With TLS on: the operator's client certificate for PD (the Cluster's client Secret), or
    /// why it cannot be used. `None`: TLS is off.
    pub pd_tls: Option<Result<tls::Material, String>>,
    /// When the facts were read.
    pub now: Timestamp,
}

/// Why a running pod must go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// It was built from another revision than the instance's.
    Outdated {
        /// The pod's revision.
        running: Option<String>,
        /// The instance's.
        wanted: Option<String>,
    },
    /// The Cluster suspends: every pod stops.
    Suspend,
}

impl<'a, K: InstanceKind> Facts<'a, K> {
    /// Reads the Cluster and (unless the instance is being deleted) the pod.
    pub async fn gather(obj: &'a K, ctx: &Context) -> Result<Self, Error> {
        let namespace = obj.namespace().ok_or(Error::NoNamespace)?;
        let client = ctx.kube.client.clone();
        let cluster = Api::<Cluster>::namespaced(client.clone(), &namespace)
            .get_opt(obj.cluster_name())
            .await?;
        let deleting = obj.meta().deletion_timestamp.is_some();
        let pod = if deleting {
            None
        } else {
            Api::<Pod>::namespaced(client.clone(), &namespace)
                .get_opt(&obj.name_any())
                .await?
        };
        // Secrets are read by name (RBAC: get, no list or watch); a change is seen on the next
        // look.
        let tls = cluster.as_ref().is_some_and(Cluster::tls_enabled);
        let secrets = Api::<Secret>::namespaced(client, &namespace);
        let tls_secret = if tls && !deleting {
            secrets.get_opt(&tls_secret_name(obj)).await?
        } else {
            None
        };
        let now = Timestamp::now();
        let pd_tls = match cluster.as_ref().and_then(Cluster::client_secret_name) {
            Some(name) => {
                let secret = secrets.get_opt(&name).await?;
                let usage = tls::Usage::Client;
                Some(tls_secret::usable(
                    &namespace,
                    &name,
                    secret.as_ref(),
                    &usage,
                    now,
                ))
            }
            None => None,
        };
        Ok(Self {
            obj,
            namespace,
            cluster,
            pod,
            tls_secret,
            pd_tls,
            now,
        })
    }

    /// Whether the Cluster has TLS on.
    pub fn tls_enabled(&self) -> bool {
        self.cluster.as_ref().is_some_and(Cluster::tls_enabled)
    }

    /// The instance is being deleted.
    pub fn deleting(&self) -> bool {
        self.obj.meta().deletion_timestamp.is_some()
    }

    /// The Cluster is gone or going: PD state can no longer matter.
    pub fn cluster_gone(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.meta().deletion_timestamp.is_some())
    }

    /// The Cluster stops every change.
    pub fn paused(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.spec.paused)
    }

    /// The Cluster asks for every pod to be gone.
    pub fn suspending(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.spec.suspends_compute())
    }

    /// PD's client URL as the Cluster reports it.
    pub fn pd_url(&self) -> Option<&str> {
        self.cluster.as_ref()?.status.as_ref()?.pd.as_deref()
    }

    /// The pod, unless it is terminating.
    pub fn running_pod(&self) -> Option<&Pod> {
        self.pod
            .as_ref()
            .filter(|p| p.meta().deletion_timestamp.is_none())
    }

    /// The pod is terminating (deleted by the operator, or by anyone else: `kubectl delete
    /// pod`, a drain, a node upgrade).
    pub fn pod_terminating(&self) -> bool {
        self.pod
            .as_ref()
            .is_some_and(|p| p.meta().deletion_timestamp.is_some())
    }

    /// Why the running pod must go, if it must.
    pub fn restart(&self) -> Option<Restart> {
        let pod = self.running_pod()?;
        if self.suspending() {
            return Some(Restart::Suspend);
        }
        let running = api::labels::revision(pod.meta());
        let wanted = self.obj.revision();
        (running != wanted).then(|| Restart::Outdated {
            running: running.map(String::from),
            wanted: wanted.map(String::from),
        })
    }

    /// The pod runs (not terminating), is Ready and was built from the instance's revision.
    pub fn pod_ready_at_revision(&self) -> bool {
        let pod = self.running_pod();
        status::pod_ready(pod)
            && pod.and_then(|p| api::labels::revision(p.meta())) == self.obj.revision()
    }

    /// The conditions the instance reports now.
    pub fn conditions(&self) -> &[Condition] {
        self.obj
            .instance_status()
            .map_or(&[], |s| s.conditions.as_slice())
    }
}

/// The Secret of the instance's certificate: its template's, or its group's default.
pub fn tls_secret_name<K: InstanceKind>(obj: &K) -> String {
    // An instance always carries its group label; without one its own name stands in.
    let group = group_of(obj).map_or_else(|| obj.name_any(), String::from);
    ComponentTls::secret_name(obj.tls(), &group)
}

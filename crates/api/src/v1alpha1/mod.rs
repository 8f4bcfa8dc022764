//! `core.tikv.org/v1alpha1`.

pub mod cluster;
pub mod common;
pub mod pd;
pub mod tikv;

pub use cluster::*;
pub use common::*;
pub use pd::*;
pub use tikv::*;

/// Objects that belong to a Cluster through `spec.cluster`.
pub trait HasCluster {
    /// Name of the Cluster.
    fn cluster_name(&self) -> &str;
}

macro_rules! has_cluster {
    ($($kind:ty),*) => {
        $(impl HasCluster for $kind {
            fn cluster_name(&self) -> &str {
                &self.spec.cluster.name
            }
        })*
    };
}

has_cluster!(PDGroup, TiKVGroup, PD, TiKV);

/// What PD and TiKV objects share: the revision they were given and the status they report.
pub trait Instance: kube::Resource<DynamicType = ()> + HasCluster {
    /// The common part of the status, if any.
    fn instance_status(&self) -> Option<&InstanceStatus>;

    /// The revision its spec was written from (label `tikv.org/revision`).
    fn revision(&self) -> Option<&str> {
        crate::labels::revision(self.meta())
    }

    /// Ready, with its pod built from its revision ([`InstanceStatus::ready_at`]).
    fn ready_at_revision(&self) -> bool {
        self.instance_status()
            .is_some_and(|s| s.ready_at(self.revision()))
    }
}

impl Instance for PD {
    fn instance_status(&self) -> Option<&InstanceStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}

impl Instance for TiKV {
    fn instance_status(&self) -> Option<&InstanceStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}

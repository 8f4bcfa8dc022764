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

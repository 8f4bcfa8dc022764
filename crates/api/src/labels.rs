//! Label and annotation keys stamped on every object the operator creates.

/// `app.kubernetes.io/name`: always `tikv-cluster`... the component's application.
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the Cluster name.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: `pd` or `tikv`.
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: always [`MANAGED_BY_VALUE`].
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "tikv-operator";
/// `tikv.org/cluster`: the Cluster name.
pub const CLUSTER: &str = "tikv.org/cluster";
/// `tikv.org/group`: the group name.
pub const GROUP: &str = "tikv.org/group";
/// `tikv.org/instance`: the instance (PD or TiKV object) name.
pub const INSTANCE_NAME: &str = "tikv.org/instance";
/// `tikv.org/revision`: the group revision an instance (and its pod) was built from.
pub const REVISION: &str = "tikv.org/revision";

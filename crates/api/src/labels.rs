//! Label and annotation keys stamped on every object the operator creates.

/// `app.kubernetes.io/name`: always [`NAME_VALUE`].
pub const NAME: &str = "app.kubernetes.io/name";
/// Value of [`NAME`].
pub const NAME_VALUE: &str = "tikv";
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
/// `tikv.org/scale-in-preferred`: annotation a user sets (any value) on a PD or TiKV object so
/// that the next scale-in of its group removes that instance before any other.
pub const SCALE_IN_PREFERRED: &str = "tikv.org/scale-in-preferred";
/// `tikv.org/restarted-at`: annotation in a group's `template.metadata` that `kubectl tikv restart`
/// sets to the time of the request. It changes the template, so the group rolls every instance
/// the safe way (leaders evicted first, PD members one at a time), exactly like a version change.
pub const RESTARTED_AT: &str = "tikv.org/restarted-at";
/// `tikv.org/replacement-for`: annotation the group controller puts on a failover replacement,
/// naming the Down instance it stands in for.
pub const REPLACEMENT_FOR: &str = "tikv.org/replacement-for";

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The revision an object (instance, pod) was built from: its [`REVISION`] label.
pub fn revision(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get(REVISION).map(String::as_str)
}

/// Sets the [`REVISION`] label.
pub fn set_revision(meta: &mut ObjectMeta, revision: &str) {
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(REVISION.to_string(), revision.to_string());
}

/// The labels that select every object of one group (pods, instances, services).
pub fn group_selector(cluster: &str, component: &str, group: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), NAME_VALUE.to_string()),
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (INSTANCE.to_string(), cluster.to_string()),
        (COMPONENT.to_string(), component.to_string()),
        (CLUSTER.to_string(), cluster.to_string()),
        (GROUP.to_string(), group.to_string()),
    ])
}

/// The selector as a string, as the scale subresource wants it.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revision_label_is_read_and_written_in_one_place() {
        let mut meta = ObjectMeta::default();
        assert_eq!(revision(&meta), None);
        set_revision(&mut meta, "g-1");
        set_revision(&mut meta, "g-2");
        assert_eq!(revision(&meta), Some("g-2"));
        assert_eq!(meta.labels.unwrap().len(), 1);
    }
}

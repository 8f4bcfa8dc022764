//! The group gauges in `/metrics`, read at each scrape from the groups the controller caches:
//! desired, existing, ready and updated instances per group (rollout progress, PD's quorum).

use api::v1alpha1::{PDGroup, TiKVGroup};
use kube::runtime::reflector::Store;
use operator_runtime::metrics::Metrics;
use operator_runtime::state_metrics::{GaugeDesc, Sample, StateCollector};

use crate::component::GroupKind;

/// The gauges computed from the groups.
pub const GAUGES: &[GaugeDesc] = &[
    GaugeDesc {
        name: "group_desired_replicas",
        help: "Instances the group's spec asks for",
    },
    GaugeDesc {
        name: "group_replicas",
        help: "Instances of the group that exist and are not leaving",
    },
    GaugeDesc {
        name: "group_ready_replicas",
        help: "Instances of the group that are Ready at the revision they were given",
    },
    GaugeDesc {
        name: "group_updated_replicas",
        help: "Instances of the group at its update revision",
    },
];

/// The series of a group.
pub fn samples<G: GroupKind>(group: &G) -> Vec<Sample> {
    let labels = vec![
        (
            "namespace",
            group.meta().namespace.clone().unwrap_or_default(),
        ),
        ("cluster", group.cluster().name.clone()),
        ("component", G::COMPONENT.to_string()),
        ("group", group.meta().name.clone().unwrap_or_default()),
    ];
    let status = group.status().cloned().unwrap_or_default();
    [
        ("group_desired_replicas", group.replicas()),
        ("group_replicas", status.replicas),
        ("group_ready_replicas", status.ready_replicas),
        ("group_updated_replicas", status.updated_replicas),
    ]
    .into_iter()
    .map(|(name, value)| Sample::new(name, labels.clone(), f64::from(value)))
    .collect()
}

/// Adds the group gauges over both caches to `metrics`.
pub fn register(metrics: &Metrics, pds: Store<PDGroup>, tikvs: Store<TiKVGroup>) {
    metrics.register_collector(
        StateCollector::new(GAUGES)
            .with_store(pds, samples::<PDGroup>)
            .with_store(tikvs, samples::<TiKVGroup>),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_reports_its_counts() {
        let g: TiKVGroup = serde_yaml::from_str(
            r#"
apiVersion: core.tikv.org/v1alpha1
kind: TiKVGroup
metadata: {name: basic-tikv, namespace: ns}
spec:
  cluster: {name: basic}
  replicas: 6
  template: {spec: {version: v8.5.0, volumes: [{name: data, mounts: [{type: data}], storage: 1Gi}]}}
status: {replicas: 6, readyReplicas: 5, updatedReplicas: 2}
"#,
        )
        .unwrap();
        let s = samples(&g);
        let value = |name: &str| s.iter().find(|x| x.name == name).map(|x| x.value);
        assert_eq!(value("group_desired_replicas"), Some(6.0));
        assert_eq!(value("group_ready_replicas"), Some(5.0));
        assert_eq!(value("group_updated_replicas"), Some(2.0));
        assert_eq!(
            s[0].labels,
            [
                ("namespace", "ns".to_string()),
                ("cluster", "basic".to_string()),
                ("component", "tikv".to_string()),
                ("group", "basic-tikv".to_string()),
            ]
        );
    }
}

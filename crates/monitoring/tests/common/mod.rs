//! What the tests compare the queries with.

use std::collections::BTreeSet;

use operator_runtime::metrics::Metrics;

/// Every metric family the controllers export (with the `tikv_operator_` prefix): the shared
/// ones (each touched once so that it is written), the instance controller's observations, and
/// the gauges each controller computes from its cache.
pub fn operator_families() -> BTreeSet<String> {
    let m = Metrics::new();
    drop(m.reconcile("TiKV"));
    m.failure("TiKV", "pd");
    m.api_request("TiKV", "get", "pods");
    m.pd_request("GET", "/stores/check", "ok");
    m.set_leader(true);
    m.set_build_info("instance-controller", "0");
    instance_controller::metrics::Observed::register(&m).touch(
        &instance_controller::metrics::GroupLabels {
            namespace: "ns".into(),
            cluster: "c".into(),
            group: "g".into(),
        },
    );
    let mut names: BTreeSet<String> = m
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    let gauges = instance_controller::metrics::GAUGES
        .iter()
        .chain(group_controller::metrics::GAUGES)
        .chain(cluster_controller::GAUGES);
    names.extend(gauges.map(|g| format!("{}_{}", operator_runtime::metrics::PREFIX, g.name)));
    names
}

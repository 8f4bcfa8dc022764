//! The Grafana dashboards: well-formed for Grafana (unique uids and panel ids, every panel on
//! the `$datasource` variable, inside the 24-column grid), every query uses only variables the
//! dashboard defines and parses as PromQL with Prometheus's own parser, and every operator
//! metric a query reads is one the controllers export.

mod common;

use std::collections::BTreeSet;

use monitoring::promql;
use monitoring::queries::{self, QueryKind};

#[test]
fn dashboards_are_well_formed() {
    let mut uids = BTreeSet::new();
    let files = monitoring::dashboard_files().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    for path in files {
        let d = queries::load_dashboard(&path).unwrap();
        let name = path.display();
        let uid = d["uid"].as_str().unwrap_or_default().to_string();
        assert!(!uid.is_empty() && uid.len() <= 40, "{name}: uid {uid:?}");
        assert!(uids.insert(uid), "{name}: uid used twice");
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        assert!(d["schemaVersion"].as_u64().is_some(), "{name}");
        let vars = queries::defined_variables(&d);
        assert_eq!(
            vars.first().map(String::as_str),
            Some("datasource"),
            "{name}"
        );
        let mut ids = BTreeSet::new();
        let panels = queries::panels(&d);
        assert!(panels.len() >= 10, "{name}: {} panels", panels.len());
        for p in panels {
            let title = &p["title"];
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: panel id twice"
            );
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
            assert!(
                x + w <= 24 && g["h"].as_u64().unwrap() > 0,
                "{name}: {title} {g}"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: {title}");
            assert!(
                p["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {title} has no description"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has no query");
            let refs: BTreeSet<&str> = targets.iter().filter_map(|t| t["refId"].as_str()).collect();
            assert_eq!(refs.len(), targets.len(), "{name}: {title}: refIds");
        }
        for q in queries::dashboard_queries(&path).unwrap() {
            for v in queries::used_variables(&q.expr) {
                assert!(
                    v.starts_with("__") || vars.contains(&v),
                    "{}: ${v} is not a variable of the dashboard",
                    q.source
                );
            }
        }
    }
}

#[test]
fn every_query_parses_as_promql_and_reads_exported_metrics() {
    let values = queries::example_values();
    let all = queries::all().unwrap();
    let dashboard: Vec<(String, String)> = all
        .iter()
        .filter(|q| q.kind != QueryKind::Rule)
        .map(|q| {
            (
                q.source.clone(),
                queries::substitute(&q.expr, &values).unwrap(),
            )
        })
        .collect();
    assert!(dashboard.len() >= 40, "{} queries", dashboard.len());
    let parsed = promql::parse(&dashboard).unwrap();
    let known = common::operator_families();
    let mut read = BTreeSet::new();
    for p in &parsed {
        assert!(
            p.error.is_empty(),
            "{}: {:?}: {}",
            p.source,
            p.expr,
            p.error
        );
        assert!(!p.selectors.is_empty(), "{} reads nothing", p.source);
        for s in &p.selectors {
            let name = promql::metric_name(s);
            read.insert(name.to_string());
            if name.starts_with("tikv_operator_") {
                assert!(
                    known.contains(promql::family(name)),
                    "{}: {name} is not a metric the controllers export",
                    p.source
                );
            }
        }
    }
    // What the issue asks the overview to show is there: rollouts, stores by state, leaders and
    // regions per store, data size, reconciles and errors, eviction durations.
    for metric in [
        "tikv_operator_group_updated_replicas",
        "tikv_operator_store_state",
        "tikv_raftstore_region_count",
        "tikv_store_size_bytes",
        "tikv_operator_reconcile_runs_total",
        "tikv_operator_reconcile_failures_total",
        "tikv_operator_leader_eviction_duration_seconds_bucket",
        "tikv_operator_store_removal_progress",
    ] {
        assert!(read.contains(metric), "no dashboard reads {metric}");
    }
    // A query that is not PromQL is caught (the check itself works).
    let bad = promql::parse(&[("bad".into(), "sum(rate(x[5m])".into())]).unwrap();
    assert!(!bad[0].error.is_empty());
}

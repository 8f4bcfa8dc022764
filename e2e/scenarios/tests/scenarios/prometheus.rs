//! The monitoring chart against a real Prometheus (built from its Go module): Prometheus scrapes
//! the environment with the chart's scrape jobs (`files/prometheus/scrape-configs.yml`, the
//! PodMonitors' and ServiceMonitors' equivalent) and loads the chart's alert rules, while the
//! cluster serves a client load, rolls its stores and removes one. Afterwards every vector
//! selector of every dashboard panel, dashboard variable and alert rule must have returned
//! series, so that no panel silently shows nothing and no alert watches a metric that does not
//! exist; and every rule must evaluate without error.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::v1alpha1::{Cluster, TiKV, TiKVGroup};
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::Value;
use testenv::wait_for;

/// How often Prometheus scrapes and evaluates: often, so that short-lived series (a store's
/// removal progress) are seen.
const INTERVAL: &str = "2s";

/// Metrics that may rightly have no series in this scenario, and why; `promtool test rules`
/// covers their alerts.
const NOT_ALWAYS_THERE: &[(&str, &str)] = &[
    (
        "tikv_critical_error_total",
        "TiKV creates it at its first critical error",
    ),
    // The scenario removes a store, but an empty test store may drain before the operator has
    // shown PD's progress; `instance-controller/tests/store_removal.rs` checks these values
    // against a real PD draining a store slowly.
    (
        "tikv_operator_store_removal_progress",
        "only while PD removes a store",
    ),
    (
        "tikv_operator_store_removal_eta_seconds",
        "only once PD has measured a removal speed",
    ),
];

/// The chart's scrape jobs, each discovery pointed at the environment through its kubeconfig
/// and limited to the scenario's namespaces.
fn prometheus_config(kubeconfig: &Path, namespaces: &[&str]) -> Value {
    let jobs = monitoring::chart_dir().join("files/prometheus/scrape-configs.yml");
    let mut jobs: Value = serde_yaml::from_str(&monitoring::read(&jobs).unwrap()).unwrap();
    for job in jobs.as_array_mut().unwrap() {
        for sd in job["kubernetes_sd_configs"].as_array_mut().unwrap() {
            sd["kubeconfig_file"] = kubeconfig.to_string_lossy().into();
            sd["namespaces"] = serde_json::json!({ "names": namespaces });
        }
    }
    // Prometheus itself, for its rule evaluation failures.
    jobs.as_array_mut().unwrap().push(serde_json::json!({
        "job_name": "prometheus",
        "static_configs": [{"targets": ["127.0.0.1:9090"]}],
    }));
    let rules: Vec<String> = monitoring::rule_files()
        .unwrap()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    serde_json::json!({
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": rules,
        "scrape_configs": jobs,
    })
}

/// Asks Prometheus's HTTP API through `promtool` (the real client of that API).
fn promtool(args: &[&str]) -> Result<String, monitoring::Error> {
    monitoring::promql::promtool(Path::new("."), args)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn every_dashboard_and_alert_query_returns_series() {
    e2e::run(async {
        let env = e2e::Env::start("monitoring").await;
        let start = unix_now();
        let dir = std::env::temp_dir().join(format!("prometheus-{}", env.ns));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        let kubeconfig = env.state.kubeconfig();
        std::fs::write(
            &config,
            serde_yaml::to_string(&prometheus_config(
                &kubeconfig,
                &[&env.ns, &env.operator_ns],
            ))
            .unwrap(),
        )
        .unwrap();
        // Inside the scenario's own network: its loopback is ours alone.
        let url = "http://127.0.0.1:9090";
        let mut prometheus = env
            .command(testenv::bin_path("prometheus").unwrap())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();

        env.apply_example("basic").await;
        env.wait_cluster_ready("basic", 240).await;
        let pd_url = wait_for(30, "Cluster.status.pd", || async {
            env.api::<Cluster>().get("basic").await.ok()?.status?.pd
        })
        .await;
        let pd_host = pd_url.trim_start_matches("http://").to_string();

        // A client load throughout: the stores' request metrics.
        let mut load = env
            .command(testenv::bin_path("kvclient").unwrap())
            .args([
                "bench",
                "--pd",
                &pd_host,
                "--clients",
                "2",
                "--keys",
                "1000",
            ])
            .args([
                "--read-percent",
                "50",
                "--duration",
                "150s",
                "--load",
                "200",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();

        // A rolling restart of the stores (leader evictions), as `kubectl tikv restart` does it.
        let restart = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
            api::labels::RESTARTED_AT: "monitoring"
        }}}}});
        let groups = env.api::<TiKVGroup>();
        groups
            .patch(
                "basic-tikv",
                &PatchParams::default(),
                &Patch::Merge(&restart),
            )
            .await
            .unwrap();
        wait_for(420, "the TiKV rolling restart to finish", || async {
            let g = groups.get("basic-tikv").await.ok()?;
            let s = g.status?;
            let rolled = s.update_revision.is_some()
                && s.update_revision == s.current_revision
                && s.updated_replicas == 3
                && s.ready_replicas == 3;
            rolled.then_some(())
        })
        .await;

        // A fourth store, then back to three: PD removes one.
        let ready_instances = |n: usize| {
            let env = &env;
            async move {
                wait_for(300, &format!("{n} TiKV instances, all ready"), || async {
                    let tikvs = env.api::<TiKV>().list(&ListParams::default()).await.ok()?;
                    let ready = tikvs.items.iter().all(|t| {
                        t.status.as_ref().is_some_and(|s| {
                            operator_runtime::conditions::is_true(&s.common.conditions, "Ready")
                        })
                    });
                    (tikvs.items.len() == n && ready).then_some(())
                })
                .await
            }
        };
        let replicas = |n: i32| {
            let groups = &groups;
            async move {
                let p = serde_json::json!({"spec": {"replicas": n}});
                groups
                    .patch("basic-tikv", &PatchParams::default(), &Patch::Merge(&p))
                    .await
                    .unwrap();
            }
        };
        replicas(4).await;
        ready_instances(4).await;
        replicas(3).await;
        ready_instances(3).await;
        let _ = load.wait().await;
        // Two more evaluations after the last change.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let end = unix_now();

        // Every selector of every query, Grafana's variables set to this cluster.
        let values = BTreeMap::from([
            ("__rate_interval", "1m"),
            ("__interval", "1m"),
            ("__range", "1h"),
            ("namespace", env.ns.as_str()),
            ("cluster", "basic"),
            ("group", ".*"),
            ("controller", ".*"),
        ]);
        let queries: Vec<(String, String)> = monitoring::queries::all()
            .unwrap()
            .into_iter()
            .map(|q| (q.source, monitoring::substitute(&q.expr, &values).unwrap()))
            .collect();
        let parsed = monitoring::promql::parse(&queries).unwrap();
        let mut missing = Vec::new();
        let mut asked = BTreeMap::new();
        for q in &parsed {
            assert!(q.error.is_empty(), "{}: {}", q.source, q.error);
            for selector in &q.selectors {
                // `x offset 30m` asks for older samples of the same series: whether `x` exists.
                let selector = selector
                    .split(" offset ")
                    .next()
                    .unwrap()
                    .split(" @ ")
                    .next()
                    .unwrap();
                let name = monitoring::promql::metric_name(selector);
                if NOT_ALWAYS_THERE.iter().any(|(n, _)| *n == name) {
                    continue;
                }
                let found = asked.entry(selector.to_string()).or_insert_with(|| {
                    let out = promtool(&[
                        "query",
                        "series",
                        url,
                        &format!("--match={selector}"),
                        &format!("--start={start}"),
                        &format!("--end={end}"),
                    ])
                    .unwrap_or_else(|e| panic!("{e}"));
                    out.lines().any(|l| l.starts_with('{'))
                });
                if !*found {
                    missing.push(format!("{}: {selector}", q.source));
                }
            }
        }
        println!(
            "{} queries, {} distinct selectors, {} without series",
            parsed.len(),
            asked.len(),
            missing.len()
        );
        assert!(
            missing.is_empty(),
            "selectors that returned no series (Prometheus's log and data in {}):\n{}",
            dir.display(),
            missing.join("\n")
        );

        // Every alert rule evaluated without an error (e.g. many-to-many matching).
        let rules = promtool(&["query", "instant", url, "ALERTS"]).unwrap();
        let failing = promtool(&[
            "query",
            "instant",
            url,
            "prometheus_rule_evaluation_failures_total > 0",
        ])
        .unwrap();
        assert!(
            !failing.contains('{'),
            "rule evaluations failed:\n{failing}"
        );
        println!("alerts at the end:\n{rules}");

        let _ = prometheus.kill().await;
        let _ = std::fs::remove_dir_all(&dir);
        env.stop().await;
    })
}

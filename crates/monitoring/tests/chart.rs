//! The monitoring chart and the controller charts' scrape settings: rendered by the real helm,
//! the objects labelled the way TiKV's and PD's official dashboards filter (job, tidb_cluster,
//! k8s_cluster, instance), the PrometheusRule carrying exactly the tested rule files, the
//! dashboards shipped verbatim for Grafana's sidecar, and every object accepted by a real API
//! server that has the Prometheus operator's own CRDs (so their schemas validate them).

use std::io::Write;
use std::process::Stdio;

use monitoring::helm;
use serde_json::{Value, json};

const CONTROLLERS: [&str; 3] = [
    "tikv-operator-cluster-controller",
    "tikv-operator-group-controller",
    "tikv-operator-instance-controller",
];

const ALL_ON: &[&str] = &[
    "podMonitors.enabled=true",
    "rules.enabled=true",
    "dashboards.enabled=true",
    "k8sCluster=prod-eu",
    "labels.release=kube-prometheus-stack",
];

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn everything_is_off_by_default() {
    let docs = helm::template("tikv-operator-monitoring", "mon", "monitoring", &[]).unwrap();
    assert!(docs.is_empty(), "{docs:?}");
}

#[test]
fn pod_monitors_give_the_labels_the_official_dashboards_filter_on() {
    let docs = helm::template("tikv-operator-monitoring", "mon", "monitoring", ALL_ON).unwrap();
    let monitors = of_kind(&docs, "PodMonitor");
    assert_eq!(monitors.len(), 2);
    for (component, port) in [("pd", "client"), ("tikv", "status")] {
        let m = monitors
            .iter()
            .find(|m| {
                m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == component
            })
            .unwrap_or_else(|| panic!("no PodMonitor for {component}"));
        let spec = &m["spec"];
        assert_eq!(m["metadata"]["labels"]["release"], "kube-prometheus-stack");
        // The operator's pods carry app.kubernetes.io/component=pd|tikv: that is the job.
        assert_eq!(spec["jobLabel"], "app.kubernetes.io/component");
        assert_eq!(
            spec["selector"]["matchLabels"]["app.kubernetes.io/managed-by"],
            "tikv-operator"
        );
        assert_eq!(spec["namespaceSelector"], json!({"any": true}));
        let endpoint = &spec["podMetricsEndpoints"][0];
        assert_eq!(
            (endpoint["port"].as_str(), endpoint["path"].as_str()),
            (Some(port), Some("/metrics"))
        );
        let relabel = |target: &str| {
            endpoint["relabelings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["targetLabel"] == target)
                .cloned()
                .unwrap_or_else(|| panic!("{component}: nothing sets {target}"))
        };
        assert_eq!(
            relabel("tidb_cluster"),
            json!({"sourceLabels": ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_label_tikv_org_cluster"],
                   "separator": "-", "targetLabel": "tidb_cluster"})
        );
        assert_eq!(
            relabel("instance")["sourceLabels"],
            json!(["__meta_kubernetes_pod_name"])
        );
        assert_eq!(
            relabel("group")["sourceLabels"],
            json!(["__meta_kubernetes_pod_label_tikv_org_group"])
        );
        assert_eq!(relabel("k8s_cluster")["replacement"], "prod-eu");
    }
    // Without a k8s_cluster value, no such label is made up.
    let docs = helm::template(
        "tikv-operator-monitoring",
        "mon",
        "monitoring",
        &["podMonitors.enabled=true"],
    )
    .unwrap();
    assert!(
        !serde_json::to_string(&docs)
            .unwrap()
            .contains("k8s_cluster")
    );
}

#[test]
fn plain_scrape_jobs_label_like_the_monitors() {
    // For a Prometheus without the Prometheus operator: the same targets and labels.
    let path = monitoring::chart_dir().join("files/prometheus/scrape-configs.yml");
    let jobs: Value = serde_yaml::from_str(&monitoring::read(&path).unwrap()).unwrap();
    let job = |name: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no scrape job {name}"))
    };
    let docs = helm::template(
        "tikv-operator-monitoring",
        "mon",
        "monitoring",
        &["podMonitors.enabled=true"],
    )
    .unwrap();
    for m in of_kind(&docs, "PodMonitor") {
        let component = m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
            .as_str()
            .unwrap();
        let endpoint = &m["spec"]["podMetricsEndpoints"][0];
        let job = job(component);
        let relabels = job["relabel_configs"].as_array().unwrap();
        // Only the operator's pods of this component, on the monitored port.
        assert_eq!(
            relabels[0]["regex"],
            format!(
                "tikv-operator;{component};{}",
                endpoint["port"].as_str().unwrap()
            )
        );
        assert_eq!(relabels[0]["action"], "keep");
        for r in endpoint["relabelings"].as_array().unwrap() {
            let same = relabels.iter().any(|p| {
                p["source_labels"] == r["sourceLabels"]
                    && p["target_label"] == r["targetLabel"]
                    && p.get("separator") == r.get("separator")
            });
            assert!(
                same,
                "job {component} lacks the PodMonitor's relabeling {r}"
            );
        }
    }
    // The controllers: job=tikv-operator, controller=<component>, the series' labels kept.
    let docs = helm::template(
        CONTROLLERS[0],
        CONTROLLERS[0],
        "tikv-operator",
        &["metrics.serviceMonitor.enabled=true"],
    )
    .unwrap();
    let monitor = &of_kind(&docs, "ServiceMonitor")[0]["spec"]["endpoints"][0];
    let operator = job("tikv-operator");
    assert_eq!(operator["honor_labels"], monitor["honorLabels"]);
    let controller = monitor["relabelings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["targetLabel"] == "controller")
        .unwrap();
    assert!(
        operator["relabel_configs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["target_label"] == "controller"
                && p["source_labels"] == controller["sourceLabels"])
    );
}

#[test]
fn the_rule_and_the_dashboards_are_the_tested_files() {
    let docs = helm::template("tikv-operator-monitoring", "mon", "monitoring", ALL_ON).unwrap();
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let mut groups = Vec::new();
    for path in monitoring::rule_files().unwrap() {
        let file = monitoring::queries::load_rules(&path).unwrap();
        groups.extend(
            serde_json::to_value(&file["groups"])
                .unwrap()
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    assert_eq!(rules[0]["spec"]["groups"], Value::Array(groups));

    let maps = of_kind(&docs, "ConfigMap");
    let files = monitoring::dashboard_files().unwrap();
    assert_eq!(maps.len(), files.len());
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let cm = maps
            .iter()
            .find(|m| m["data"].get(name).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap carries {name}"));
        assert_eq!(cm["data"][name], monitoring::read(&path).unwrap(), "{name}");
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
        assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "TiKV");
    }
}

#[test]
fn controller_pods_announce_their_metrics_and_service_monitors_keep_object_labels() {
    for chart in CONTROLLERS {
        let docs = helm::template(
            chart,
            "rel",
            "ops",
            &[
                "metrics.serviceMonitor.enabled=true",
                "metrics.serviceMonitor.labels.release=kps",
            ],
        )
        .unwrap();
        let deploy = of_kind(&docs, "Deployment")[0];
        let pod = &deploy["spec"]["template"]["metadata"];
        assert_eq!(
            pod["annotations"]["prometheus.io/scrape"], "true",
            "{chart}"
        );
        assert_eq!(pod["annotations"]["prometheus.io/port"], "8080", "{chart}");
        assert_eq!(
            pod["annotations"]["prometheus.io/path"], "/metrics",
            "{chart}"
        );
        for l in ["name", "instance", "component", "managed-by", "version"] {
            assert!(
                pod["labels"][format!("app.kubernetes.io/{l}")].is_string(),
                "{chart}: {l}"
            );
        }
        let sm = of_kind(&docs, "ServiceMonitor")[0];
        assert_eq!(sm["metadata"]["labels"]["release"], "kps");
        let endpoint = &sm["spec"]["endpoints"][0];
        assert_eq!(endpoint["honorLabels"], true, "{chart}");
        let relabelings = endpoint["relabelings"].as_array().unwrap();
        assert!(
            relabelings.contains(&json!({"targetLabel": "job", "replacement": "tikv-operator"}))
        );
        assert!(relabelings.contains(&json!({
            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
            "targetLabel": "controller"
        })));
    }
}

#[test]
fn controller_endpoints_serve_https_from_a_secret_when_asked() {
    for chart in CONTROLLERS {
        let docs = helm::template(
            chart,
            "rel",
            "ops",
            &[
                "metrics.tls.secretName=metrics-tls",
                "metrics.tls.verifyClients=true",
                "metrics.serviceMonitor.enabled=true",
                "metrics.serviceMonitor.tlsConfig.serverName=rel-metrics.ops.svc",
            ],
        )
        .unwrap();
        let deploy = of_kind(&docs, "Deployment")[0];
        let pod = &deploy["spec"]["template"];
        assert_eq!(
            pod["metadata"]["annotations"]["prometheus.io/scheme"], "https",
            "{chart}"
        );
        let c = &pod["spec"]["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let dir = "/etc/tikv-operator/metrics-tls";
        for arg in [
            format!("--metrics-tls-cert-file={dir}/tls.crt"),
            format!("--metrics-tls-key-file={dir}/tls.key"),
            format!("--metrics-tls-client-ca-file={dir}/ca.crt"),
        ] {
            assert!(args.contains(&arg.as_str()), "{chart}: {args:?}");
        }
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{chart} {probe}");
        }
        assert_eq!(
            c["volumeMounts"][0],
            json!({"name": "metrics-tls", "mountPath": dir, "readOnly": true})
        );
        assert_eq!(
            pod["spec"]["volumes"][0],
            json!({"name": "metrics-tls", "secret": {"secretName": "metrics-tls"}})
        );
        let endpoint = &of_kind(&docs, "ServiceMonitor")[0]["spec"]["endpoints"][0];
        assert_eq!(endpoint["scheme"], "https", "{chart}");
        assert_eq!(endpoint["tlsConfig"]["serverName"], "rel-metrics.ops.svc");

        // Without a Secret: plain HTTP, nothing mounted.
        let plain = helm::template(chart, "rel", "ops", &[]).unwrap();
        let pod = &of_kind(&plain, "Deployment")[0]["spec"]["template"];
        assert!(pod["metadata"]["annotations"]["prometheus.io/scheme"].is_null());
        assert_eq!(
            pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["scheme"],
            "HTTP"
        );
        assert!(pod["spec"]["volumes"].is_null(), "{chart}");
    }
}

#[test]
fn the_official_dashboards_script_pins_one_release() {
    let out =
        std::process::Command::new(monitoring::chart_dir().join("fetch-official-dashboards.sh"))
            .args(["--print-urls", "--tag", "v8.5.1"])
            .output()
            .unwrap();
    assert!(out.status.success());
    let urls = String::from_utf8(out.stdout).unwrap();
    let urls: Vec<&str> = urls.lines().collect();
    assert_eq!(urls.len(), 4, "{urls:?}");
    assert!(
        urls.iter().all(|u| u.contains("/v8.5.1/metrics/grafana/")),
        "{urls:?}"
    );
    assert!(
        urls.iter()
            .any(|u| u.ends_with("tikv/pd/v8.5.1/metrics/grafana/pd.json"))
    );
    assert!(urls.iter().any(|u| u.ends_with("tikv_details.json")));
}

/// `kubectl apply --dry-run=server` of `docs` in `ns`: the API server's answer.
fn dry_run(cp: &testenv::ControlPlane, ns: &str, docs: &[Value]) -> (bool, String) {
    let mut yaml = String::new();
    for d in docs {
        yaml.push_str("---\n");
        yaml.push_str(&serde_json::to_string(d).unwrap());
        yaml.push('\n');
    }
    let mut child = cp
        .kubectl()
        .unwrap()
        .args(["apply", "--dry-run=server", "-n", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_prometheus_operator_crds_accept_every_rendered_object() {
    let cp = testenv::shared();
    // The Prometheus operator's CRDs, from its Go module, installed for real.
    let mut apply = cp.kubectl().unwrap();
    apply.args(["apply", "--server-side"]);
    for crd in monitoring::prometheus_operator_crds().unwrap() {
        apply.arg("-f").arg(crd);
    }
    let out = apply.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cp
        .kubectl()
        .unwrap()
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/podmonitors.monitoring.coreos.com",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ns = cp.create_namespace("monitoring").await;
    let mut docs = helm::template("tikv-operator-monitoring", "mon", &ns, ALL_ON).unwrap();
    for chart in CONTROLLERS {
        let rendered =
            helm::template(chart, "rel", &ns, &["metrics.serviceMonitor.enabled=true"]).unwrap();
        docs.extend(
            rendered
                .into_iter()
                .filter(|d| d["kind"] == "ServiceMonitor"),
        );
    }
    assert_eq!(
        docs.len(),
        2 + 1 + 2 + 3,
        "PodMonitors, rule, dashboards, ServiceMonitors"
    );
    let (ok, text) = dry_run(cp, &ns, &docs);
    assert!(ok, "the API server refused: {text}");
    for name in [
        "podmonitor.monitoring.coreos.com/mon-monitoring-tikv",
        "prometheusrule.monitoring.coreos.com/mon-monitoring",
    ] {
        assert!(text.contains(name), "{text}");
    }
    // The schemas do validate: a PodMonitor whose endpoint port is a number is refused.
    let mut bad = docs
        .iter()
        .find(|d| d["kind"] == "PodMonitor")
        .unwrap()
        .clone();
    bad["spec"]["podMetricsEndpoints"][0]["port"] = json!(20180);
    let (ok, text) = dry_run(cp, &ns, &[bad]);
    assert!(!ok, "a port number passed the PodMonitor schema: {text}");
}

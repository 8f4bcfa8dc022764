//! The Helm charts: each controller chart renders (default values, namespace-scoped, with a
//! ServiceMonitor), the real API server accepts every rendered object (server-side dry run), the
//! pods are hardened, and the RBAC grants exactly what each controller touches — no wildcard.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `helm template` of a chart, as JSON documents.
fn render(chart: &str, set: &[&str]) -> Vec<Value> {
    let helm = testenv::bin_path("helm").unwrap();
    let mut cmd = Command::new(helm);
    cmd.args([
        "template",
        "rel",
        &repo().join("charts").join(chart).display().to_string(),
        "--namespace",
        "ops",
    ]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "helm template {chart} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize;

const CHARTS: [&str; 3] = [
    "tikv-operator-cluster-controller",
    "tikv-operator-group-controller",
    "tikv-operator-instance-controller",
];

/// What each controller does to which resource, from its code.
fn needs(chart: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut n = vec![
        ("core.tikv.org", "clusters", "watch"),
        ("", "events", "create"),
    ];
    n.extend(match chart {
        "tikv-operator-cluster-controller" => vec![
            ("core.tikv.org", "pdgroups", "list"),
            ("core.tikv.org", "tikvgroups", "list"),
            ("core.tikv.org", "clusters/status", "patch"),
            ("core.tikv.org", "clusters", "patch"),
            ("core.tikv.org", "clusters/finalizers", "update"),
            ("core.tikv.org", "pdgroups", "delete"),
            ("core.tikv.org", "tikvgroups", "delete"),
        ],
        "tikv-operator-group-controller" => vec![
            ("core.tikv.org", "pdgroups", "watch"),
            ("core.tikv.org", "tikvgroups/status", "patch"),
            ("core.tikv.org", "pdgroups/status", "patch"),
            ("core.tikv.org", "tikvs", "create"),
            ("core.tikv.org", "tikvs", "patch"),
            ("core.tikv.org", "tikvs", "delete"),
            ("core.tikv.org", "pds", "delete"),
            ("", "services", "patch"),
            ("", "services", "create"),
            ("apps", "controllerrevisions", "create"),
            ("apps", "controllerrevisions", "delete"),
        ],
        _ => vec![
            ("core.tikv.org", "tikvs", "patch"),
            ("core.tikv.org", "tikvs", "list"),
            ("core.tikv.org", "tikvs/status", "patch"),
            ("core.tikv.org", "pds/status", "patch"),
            ("core.tikv.org", "pds/finalizers", "update"),
            ("", "pods", "create"),
            ("", "pods", "delete"),
            ("", "pods", "watch"),
            ("", "configmaps", "patch"),
            ("", "persistentvolumeclaims", "patch"),
        ],
    });
    n
}

fn grants(rules: &[Value], group: &str, resource: &str, verb: &str) -> bool {
    let has = |v: &Value, x: &str| v.as_array().is_some_and(|a| a.iter().any(|i| i == x));
    rules.iter().any(|r| {
        has(&r["apiGroups"], group) && has(&r["resources"], resource) && has(&r["verbs"], verb)
    })
}

#[test]
fn charts_render_hardened_and_least_privilege() {
    for chart in CHARTS {
        for set in [
            &[][..],
            &[
                "watchNamespace=tenant",
                "replicas=2",
                "metrics.serviceMonitor.enabled=true",
            ][..],
        ] {
            let docs = render(chart, set);
            let deploy = docs
                .iter()
                .find(|d| d["kind"] == "Deployment")
                .expect("a Deployment");
            let pod = &deploy["spec"]["template"]["spec"];
            let c = &pod["containers"][0];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{chart}");
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{chart}"
            );
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{chart}"
            );
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
            let args: Vec<&str> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(args.contains(&"--leader-elect"), "{chart}: {args:?}");
            let roles: Vec<&Value> = docs
                .iter()
                .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
                .collect();
            let rules: Vec<Value> = roles
                .iter()
                .flat_map(|r| r["rules"].as_array().unwrap().clone())
                .collect();
            for (g, r, v) in needs(chart) {
                assert!(
                    grants(&rules, g, r, v),
                    "{chart} {set:?}: RBAC does not grant {v} on {g}/{r}"
                );
            }
            for r in &rules {
                for field in ["apiGroups", "resources", "verbs"] {
                    assert!(
                        !r[field].as_array().unwrap().iter().any(|x| x == "*"),
                        "{chart}: wildcard in {r}"
                    );
                }
            }
            let namespaced = set.iter().any(|s| s.starts_with("watchNamespace="));
            let main_role = roles
                .iter()
                .find(|r| {
                    r["metadata"]["name"] == format!("rel-{}", &chart["tikv-operator-".len()..])
                })
                .unwrap();
            assert_eq!(
                main_role["kind"],
                if namespaced { "Role" } else { "ClusterRole" },
                "{chart}"
            );
            assert_eq!(
                docs.iter().any(|d| d["kind"] == "ServiceMonitor"),
                namespaced,
                "{chart}"
            );
            if namespaced {
                assert!(args.contains(&"--namespace=tenant"));
                assert_eq!(deploy["spec"]["replicas"], 2);
            }
        }
    }
}

#[tokio::test]
async fn the_api_server_accepts_every_rendered_object() {
    let cp = testenv::shared();
    let ns = cp.create_namespace("charts").await;
    for chart in CHARTS {
        let docs = render(chart, &[]);
        let mut yaml = String::new();
        for mut d in docs {
            if d["metadata"]["namespace"].is_null()
                && !matches!(
                    d["kind"].as_str(),
                    Some("ClusterRole" | "ClusterRoleBinding")
                )
            {
                d["metadata"]["namespace"] = Value::String(ns.clone());
            }
            yaml.push_str("---\n");
            yaml.push_str(&serde_yaml::to_string(&d).unwrap());
        }
        let mut child = cp
            .kubectl()
            .unwrap()
            .args(["apply", "--dry-run=server", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{chart}: the API server refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = String::from_utf8_lossy(&out.stdout);
        assert!(
            applied.contains("deployment.apps/rel-") && applied.contains("(server dry run)"),
            "{applied}"
        );
    }
}

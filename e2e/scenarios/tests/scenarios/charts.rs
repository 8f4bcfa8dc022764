//! The Helm charts: each controller chart renders (default values, namespace-scoped, with a
//! ServiceMonitor), the pods are hardened and the RBAC grants exactly what each controller
//! touches — no wildcard; and, installed with the README's commands on real nodes from the
//! images built here, the controllers run as non-root with a read-only root file system, exit
//! cleanly on SIGTERM as PID 1, serve metrics (over HTTPS with client certificates from a
//! Secret, when asked), elect a leader through a Lease, and run a cluster in another namespace;
//! uninstalling leaves nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::Value;
use testenv::pki::{Ca, Leaf, client_config, https_get, secret};

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
            ("", "secrets", "get"),
        ],
        "tikv-operator-group-controller" => vec![
            ("core.tikv.org", "pdgroups", "watch"),
            ("core.tikv.org", "pdgroups", "patch"),
            ("core.tikv.org", "tikvgroups/status", "patch"),
            ("core.tikv.org", "pdgroups/status", "patch"),
            ("core.tikv.org", "tikvs", "create"),
            ("core.tikv.org", "tikvs", "patch"),
            ("core.tikv.org", "tikvs", "delete"),
            ("core.tikv.org", "pds", "delete"),
            ("", "services", "patch"),
            ("", "services", "create"),
            ("policy", "poddisruptionbudgets", "create"),
            ("policy", "poddisruptionbudgets", "patch"),
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
            ("", "secrets", "get"),
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
            // A standby is not Ready until it leads: a rolling update could never finish.
            assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate", "{chart}");
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
            // Secrets: read by name where TLS needs them, never listed, watched or written.
            let secret_verbs: Vec<&Value> = rules
                .iter()
                .filter(|r| {
                    r["resources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x == "secrets")
                })
                .flat_map(|r| r["verbs"].as_array().unwrap())
                .collect();
            let want: &[&str] = match chart {
                "tikv-operator-group-controller" => &[],
                _ => &["get"],
            };
            assert_eq!(secret_verbs, want, "{chart}: verbs on secrets");
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

/// Processes of a pod's containers, from their cgroups: `(container, pid)`.
fn container_processes(env: &e2e::Env, pod: &Pod) -> Vec<(String, u32)> {
    let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
    let uid = pod.uid().unwrap();
    pod.status
        .as_ref()
        .unwrap()
        .container_statuses
        .clone()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|c| {
            let id = c.container_id.clone().unwrap();
            e2e_env::faults::container_pids(&env.state, &node, &uid, &id)
                .unwrap()
                .into_iter()
                .map(move |p| (c.name.clone(), p))
        })
        .collect()
}

/// The container's last exit code, once it has restarted at least `restarts` times.
fn last_exit(pod: &Pod, restarts: i32) -> Option<i32> {
    let c = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    (c.restart_count >= restarts).then_some(())?;
    Some(c.last_state.as_ref()?.terminated.as_ref()?.exit_code)
}

#[test]
fn installed_with_the_readme_commands_the_controllers_run_hardened_and_elect_leaders() {
    e2e::run(async {
        let mut env = e2e::Env::namespace("operator").await;
        env.install_crds().await;
        env.install_controllers(e2e::Watch::All);
        let pods: Api<Pod> = env.api();
        let all = env.controller_pods().await;
        assert_eq!(all.len(), 3, "one pod per controller");

        for pod in &all {
            let name = pod.name_any();
            // Non-root and a read-only root file system, as the kernel sees the process.
            for (container, pid) in container_processes(&env, pod) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
                let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
                assert!(
                    uid.split_whitespace().skip(1).all(|u| u == "65532"),
                    "{name}/{container} runs as {uid}"
                );
                let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
                let root = mounts
                    .lines()
                    .find(|l| l.split_whitespace().nth(4) == Some("/"))
                    .unwrap();
                let opts = root.split_whitespace().nth(5).unwrap();
                assert!(
                    opts.split(',').any(|o| o == "ro"),
                    "{name}: / is mounted {opts}"
                );
            }
            // Metrics and readiness on the pod's address, from the cluster network.
            let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
            let addr: std::net::SocketAddr = format!("{ip}:8080").parse().unwrap();
            assert!(e2e_env::http_ok(addr, "/readyz").await, "{name} /readyz");
            assert!(e2e_env::http_ok(addr, "/metrics").await, "{name} /metrics");
        }

        // Every controller holds its Lease, in the release namespace, under its pod's name.
        let leases: Api<Lease> = env.api();
        for pod in &all {
            let c = pod.labels()["app.kubernetes.io/component"].clone();
            let lease = testenv::wait_for(30, &format!("the {c} lease"), || async {
                let l = leases.get_opt(&format!("tikv-operator-{c}")).await.ok()??;
                l.spec?.holder_identity
            })
            .await;
            assert_eq!(lease, pod.name_any());
        }

        // SIGTERM as PID 1: the runtime stops the container (SIGTERM, then SIGKILL after the
        // timeout); a clean exit is status 0, a SIGKILL would be 137.
        let victim = all
            .iter()
            .find(|p| p.labels()["app.kubernetes.io/component"] == "cluster-controller")
            .unwrap();
        let node = victim.spec.as_ref().unwrap().node_name.clone().unwrap();
        let cid = victim
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .container_id
            .clone()
            .unwrap();
        let id = cid.rsplit("://").next().unwrap().to_string();
        e2e_env::node::crictl(&env.state, &node, &["stop", "--timeout", "20", &id]).unwrap();
        let code = testenv::wait_for(60, "the stopped controller restarted", || async {
            last_exit(&pods.get(&victim.name_any()).await.ok()?, 1)
        })
        .await;
        assert_eq!(code, 0, "the controller's exit status after SIGTERM");

        // The endpoints over HTTPS from a Secret of cert-manager's layout, with client
        // certificates required for /metrics: the kubelet's probes still pass without one.
        let ca = Ca::new("metrics-ca").unwrap();
        let release = "tikv-operator-instance-controller";
        let dns = format!("{release}-metrics.{}.svc", env.ns);
        let served = ca.issue(&Leaf::peer(release, &[&dns])).unwrap();
        env.api::<Secret>()
            .create(
                &PostParams::default(),
                &secret("instance-controller-metrics-tls", &ca, &served),
            )
            .await
            .unwrap();
        env.helm(&[
            "upgrade",
            release,
            &e2e::chart(release),
            "--namespace",
            &env.ns,
            "--reuse-values",
            "--set",
            "metrics.tls.secretName=instance-controller-metrics-tls",
            "--set",
            "metrics.tls.verifyClients=true",
        ]);
        let tls_pod =
            testenv::wait_for(180, "the instance-controller Ready over HTTPS", || async {
                env.controller_pods().await.into_iter().find(|p| {
                    let tls = p.spec.as_ref().is_some_and(|s| {
                        s.containers[0]
                            .args
                            .iter()
                            .flatten()
                            .any(|a| a.starts_with("--metrics-tls-client-ca-file="))
                    });
                    p.labels()["app.kubernetes.io/component"] == "instance-controller"
                        && p.metadata.deletion_timestamp.is_none()
                        && tls
                        && e2e::pod_serving(p)
                })
            })
            .await;
        let ip = tls_pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
        let addr = format!("{ip}:8080");
        let scraper = ca.issue(&Leaf::client("prometheus")).unwrap();
        let with_cert = client_config(ca.pem(), Some(&scraper)).unwrap();
        let (code, body) = https_get(&addr, &dns, with_cert, "/metrics").await.unwrap();
        assert_eq!(code, 200, "/metrics with a client certificate: {body}");
        assert!(body.contains("tikv_operator_"), "{body}");
        let anonymous = || client_config(ca.pem(), None).unwrap();
        let refused = https_get(&addr, &dns, anonymous(), "/metrics").await;
        assert!(
            !matches!(refused, Ok((200, _))),
            "/metrics without a client certificate: {refused:?}"
        );
        let (code, _) = https_get(&addr, &dns, anonymous(), "/readyz")
            .await
            .unwrap();
        assert_eq!(code, 200, "/readyz needs no client certificate");
        assert!(
            !e2e_env::http_ok(addr.parse().unwrap(), "/readyz").await,
            "no plain HTTP any more"
        );

        // Two replicas: one leads (Ready), the other waits (not Ready). A crashed leader comes
        // back in the same pod and keeps its Lease (same identity); once a leader's pod is gone,
        // another pod (the standby or the replacement) takes the Lease when it expires.
        env.helm(&[
            "upgrade",
            "tikv-operator-group-controller",
            &e2e::chart("tikv-operator-group-controller"),
            "--namespace",
            &env.ns,
            "--reuse-values",
            "--set",
            "replicas=2",
        ]);
        let group = |pods: Vec<Pod>| -> Vec<Pod> {
            pods.into_iter()
                .filter(|p| p.labels()["app.kubernetes.io/component"] == "group-controller")
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect()
        };
        let (leader, _standby) =
            testenv::wait_for(120, "two group-controllers, one Ready", || async {
                let running: Vec<Pod> = group(env.controller_pods().await)
                    .into_iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .collect();
                let (ready, waiting): (Vec<Pod>, Vec<Pod>) =
                    running.into_iter().partition(e2e::pod_serving);
                (ready.len() == 1 && waiting.len() == 1)
                    .then(|| (ready[0].clone(), waiting[0].clone()))
            })
            .await;
        let holder = |leases: Api<Lease>| async move {
            leases
                .get("tikv-operator-group-controller")
                .await
                .ok()?
                .spec?
                .holder_identity
        };
        assert_eq!(holder(leases.clone()).await, Some(leader.name_any()));
        let before = e2e::restarts(&leader);
        env.kill_containers(&leader);
        testenv::wait_for(60, "the crashed leader back and leading", || async {
            let p = pods.get(&leader.name_any()).await.ok()?;
            let restarted = e2e::restarts(&p) > before;
            let lease = holder(leases.clone()).await?;
            (restarted && e2e::pod_serving(&p) && lease == leader.name_any()).then_some(())
        })
        .await;
        pods.delete(&leader.name_any(), &Default::default())
            .await
            .unwrap();
        testenv::wait_for(
            90,
            "another group-controller leading, one Ready",
            || async {
                let lease = holder(leases.clone()).await?;
                let live = group(env.controller_pods().await);
                let ready: Vec<String> = live
                    .iter()
                    .filter(|p| e2e::pod_serving(p))
                    .map(|p| p.name_any())
                    .collect();
                (lease != leader.name_any() && ready == [lease]).then_some(())
            },
        )
        .await;

        // The operator watches every namespace: a cluster elsewhere comes up.
        let cluster = e2e::Env::namespace("basic").await;
        cluster.apply_example("basic").await;
        cluster.wait_cluster_ready("basic", 240).await;

        // Uninstalling removes everything the charts made.
        let releases = e2e::CONTROLLERS.map(|c| format!("tikv-operator-{c}"));
        let crs: Api<ClusterRole> = Api::all(env.client.clone());
        cluster.remove().await;
        env.remove().await;
        for r in &releases {
            testenv::wait_for(60, &format!("{r}'s objects gone"), || async {
                let gone = crs.get_opt(r).await.ok()?.is_none()
                    && crs.get_opt(&format!("{r}-crds")).await.ok()?.is_none();
                gone.then_some(())
            })
            .await;
        }
    })
}

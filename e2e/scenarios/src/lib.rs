//! The end-to-end harness. Every scenario runs on a real Kubernetes environment of its own
//! (`tikv-env`: the control plane, a tainted control-plane node and three worker nodes with
//! kubelet and containerd, see the `e2e_env` crate), with the operator installed by the real
//! `helm` from the images `images/build.sh` built, and its body runs **inside the cluster
//! network**: `Cluster.status.pd` resolves through cluster DNS and is reached through kube-proxy,
//! as from any pod.
//!
//! A scenario is a `#[test]` (or a benchmark's `main`) that hands its body to [`run`]:
//!
//! ```no_run
//! #[test]
//! fn basic() {
//!     e2e::run(async {
//!         let env = e2e::Env::start("basic").await;
//!         env.apply_example("basic").await;
//!         env.wait_cluster_ready("basic", 180).await;
//!         env.stop().await;
//!     })
//! }
//! ```
//!
//! In the cargo test process, [`run`] builds the images if their inputs changed, then runs
//! `tikv-env run -- <this test binary> --exact <this test>`: a new environment, the same test in
//! a child process inside it, the environment torn down after. The child's output becomes the
//! test's output and its exit status the test's result. In the child, [`run`] runs the body.
//! Environments are per scenario, so a scenario may break nodes (see [`Env::stop_kubelet`],
//! [`Env::cut_network`]) without touching another, and tests of one binary may run in parallel.
//! The operator runs on the control-plane node ([`Env::start`]), so worker-node faults hit only
//! the TiKV cluster.

use std::path::{Path, PathBuf};
use std::time::Instant;

use api::v1alpha1::{Cluster, PDGroup, TiKVGroup};
use e2e_env::State;
use e2e_env::plan::CONTROL_PLANE_ROLE;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

mod trampoline;
pub mod workload;

pub use trampoline::run;
pub use workload::{Report, Window, Workload};

/// The three controllers; the chart of each is `charts/tikv-operator-<controller>`.
pub const CONTROLLERS: [&str; 3] = [
    "cluster-controller",
    "group-controller",
    "instance-controller",
];

/// The port of the controllers' `/metrics` (the charts' `metrics.port` default).
pub const CONTROLLER_METRICS_PORT: u16 = 8080;

/// The API version of cert-manager's objects in the examples.
pub const CERT_MANAGER_API: &str = "cert-manager.io/v1";

/// One scenario's namespace, with the operator installed for it.
pub struct Env {
    /// API client (admin).
    pub client: Client,
    /// The scenario's namespace: its cluster's objects and nothing else.
    pub ns: String,
    /// Where the operator's Helm releases, pods and Leases are (`<ns>-operator`, or `ns` itself
    /// for [`Env::namespace`]).
    pub operator_ns: String,
    /// The environment.
    pub state: State,
    /// The controllers' Helm releases installed through this `Env`.
    releases: Vec<String>,
}

/// Which namespaces the installed controllers watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Only the scenario's namespace (`watchNamespace`; releases `<ns>-<controller>`), from the
    /// control-plane node.
    Scenario,
    /// Every namespace, with the README's release names (`tikv-operator-<controller>`).
    All,
}

impl Env {
    /// Creates a namespace `NAME-xxxxx` and installs the operator for it with Helm, as a user
    /// would: the CRD chart once per environment, then the three controller charts into a
    /// namespace of their own (`<ns>-operator`) watching only the scenario's, waiting until
    /// their Deployments are available.
    pub async fn start(name: &str) -> Env {
        let mut env = Env::namespace(name).await;
        env.operator_ns = format!("{}-operator", env.ns);
        let namespaces: Api<Namespace> = Api::all(env.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(env.operator_ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {}: {e}", env.operator_ns));
        env.install_crds().await;
        env.install_controllers(Watch::Scenario);
        env
    }

    /// Creates a namespace `NAME-xxxxx`, without installing anything (the operator, if
    /// installed with [`Env::install_controllers`], goes into the same namespace).
    pub async fn namespace(name: &str) -> Env {
        let state = State::from_env().unwrap_or_else(|e| panic!("{e}"));
        let client = client(&state).await;
        let ns = create_namespace(&client, name).await;
        Env {
            client,
            operator_ns: ns.clone(),
            ns,
            state,
            releases: Vec::new(),
        }
    }

    /// Installs the CRD chart, unless the environment has the CRDs already.
    pub async fn install_crds(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        if crds
            .get_opt("clusters.core.tikv.org")
            .await
            .unwrap()
            .is_none()
        {
            self.helm(&[
                "install",
                "tikv-operator-crds",
                &chart("tikv-operator-crds"),
                "--wait",
            ]);
        }
    }

    /// Installs the three controller charts into [`Env::operator_ns`] and waits until their
    /// Deployments are available.
    pub fn install_controllers(&mut self, watch: Watch) {
        // The three installs at once: each mostly waits for its pod to start.
        let installs: Vec<(String, std::process::Child)> = CONTROLLERS
            .iter()
            .map(|c| {
                let release = match watch {
                    Watch::Scenario => format!("{}-{c}", self.ns),
                    Watch::All => format!("tikv-operator-{c}"),
                };
                let mut args = vec![
                    "install".to_string(),
                    release.clone(),
                    chart(&format!("tikv-operator-{c}")),
                    "--namespace".into(),
                    self.operator_ns.clone(),
                    "--set".into(),
                    "logFormat=text".into(),
                    "--wait".into(),
                    "--timeout=3m".into(),
                ];
                if watch == Watch::Scenario {
                    args.extend(["--set".into(), format!("watchNamespace={}", self.ns)]);
                    // On the control-plane node, so that the faults a scenario injects into
                    // worker nodes hit the TiKV cluster, not the operator watching it.
                    args.extend([
                        "--set-json".into(),
                        format!(r#"nodeSelector={{"{CONTROL_PLANE_ROLE}":""}}"#),
                        "--set-json".into(),
                        format!(
                            r#"tolerations=[{{"key":"{CONTROL_PLANE_ROLE}","operator":"Exists","effect":"NoSchedule"}}]"#
                        ),
                    ]);
                }
                let child = self
                    .helm_command(&args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (release, child)
            })
            .collect();
        for (release, child) in installs {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "helm install {release} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            self.releases.push(release);
        }
    }

    fn helm_command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> std::process::Command {
        let mut cmd = std::process::Command::new(testenv::bin_path("helm").unwrap());
        cmd.args(args).env("KUBECONFIG", self.state.kubeconfig());
        cmd
    }

    /// Runs `helm` (the built one) against the environment; panics with its output on failure.
    pub fn helm(&self, args: &[&str]) -> String {
        let out = self.helm_command(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "helm {args:?} failed:\n{text}");
        text
    }

    /// Runs the built `kubectl` against the environment, in the scenario's namespace; its
    /// output (stdout and stderr) and whether it succeeded.
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new(testenv::bin_path("kubectl").unwrap())
            .args(args)
            .args(["--namespace", &self.ns])
            .env("KUBECONFIG", self.state.kubeconfig())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// A command (e.g. a client workload) that runs in the cluster network, like this process:
    /// cluster DNS, Service IPs, `KUBECONFIG` for the environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env("KUBECONFIG", self.state.kubeconfig())
            .kill_on_drop(true);
        cmd
    }

    /// Creates every object of an examples/ directory in the namespace, with the test tuning of
    /// [`tune`]; returns when it was done.
    pub async fn apply_example(&self, dir: &str) -> Instant {
        self.apply_example_with(dir, |_| {}).await
    }

    /// [`Env::apply_example`], each object changed by `edit` first (e.g. a Cluster with TLS).
    pub async fn apply_example_with(
        &self,
        dir: &str,
        edit: impl Fn(&mut serde_yaml::Value),
    ) -> Instant {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let pp = PostParams::default();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let mut v = serde_yaml::Value::deserialize(doc).unwrap();
                tune(&mut v);
                edit(&mut v);
                match v["kind"].as_str() {
                    Some("Cluster") => drop(
                        self.api::<Cluster>()
                            .create(&pp, &serde_yaml::from_value(v).unwrap())
                            .await
                            .unwrap(),
                    ),
                    Some("PDGroup") => drop(
                        self.api::<PDGroup>()
                            .create(&pp, &serde_yaml::from_value(v).unwrap())
                            .await
                            .unwrap(),
                    ),
                    Some("TiKVGroup") => drop(
                        self.api::<TiKVGroup>()
                            .create(&pp, &serde_yaml::from_value(v).unwrap())
                            .await
                            .unwrap(),
                    ),
                    // cert-manager's Issuers and Certificates (their CRDs installed with
                    // [`Env::install_cert_manager_crds`]).
                    Some(kind) if v["apiVersion"].as_str() == Some(CERT_MANAGER_API) => {
                        let obj: DynamicObject = serde_yaml::from_value(v.clone()).unwrap();
                        let api = self.cert_manager_api(kind);
                        api.create(&pp, &obj).await.unwrap_or_else(|e| {
                            panic!("creating {kind} from {}: {e}", f.display())
                        });
                    }
                    other => panic!("unexpected kind {other:?} in {}", f.display()),
                }
            }
        }
        Instant::now()
    }

    /// cert-manager's `kind` (Issuer, Certificate, ...) in the scenario's namespace.
    pub fn cert_manager_api(&self, kind: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", kind);
        let plural = format!("{}s", kind.to_lowercase());
        Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &ApiResource::from_gvk_with_plural(&gvk, &plural),
        )
    }

    /// Installs cert-manager's CRDs (from its Go module: `e2e/tools/build.sh cert-manager`) and
    /// waits until they are served.
    pub async fn install_cert_manager_crds(&self) {
        let dir = testenv::bin_dir().unwrap().join("cert-manager-crds");
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let mut names = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run e2e/tools/build.sh cert-manager)",
                dir.display()
            )
        }) {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
            names.push(crd.metadata.name.clone().unwrap());
            match crds.create(&PostParams::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => panic!("creating {:?}: {e}", crd.metadata.name),
            }
        }
        for name in names {
            testenv::wait_for(60, &format!("CRD {name} established"), || async {
                let crd = crds.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            })
            .await;
        }
    }

    /// Starts cert-manager's controllers (`e2e/tools/build.sh cert-manager`) for the scenario's
    /// namespace, next to the API server like the environment's other add-ons; they stop with
    /// the returned child. Their log goes to `$TMPDIR/cert-manager-<namespace>.log`.
    pub fn start_cert_manager(&self) -> tokio::process::Child {
        let bin = testenv::bin_path("cert-manager-controller")
            .expect("cert-manager-controller (e2e/tools/build.sh cert-manager)");
        let log = std::env::temp_dir().join(format!("cert-manager-{}.log", self.ns));
        let log = std::fs::File::create(&log).unwrap();
        self.command(bin)
            .arg("--kubeconfig")
            .arg(self.state.kubeconfig())
            .args(["--namespace", &self.ns])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting cert-manager-controller")
    }

    /// A namespaced API.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A PD client for the cluster, at the URL the Cluster reports (a Service name, resolved by
    /// cluster DNS).
    pub async fn pd(&self, cluster: &str) -> pdclient::PdClient {
        let url = testenv::wait_for(60, "Cluster.status.pd", || async {
            self.api::<Cluster>().get(cluster).await.ok()?.status?.pd
        })
        .await;
        pdclient::PdClient::new([url]).unwrap()
    }

    /// Waits up to `secs` for Cluster `name` to report Ready (panics after).
    pub async fn wait_cluster_ready(&self, name: &str, secs: u64) {
        testenv::wait_for(secs, &format!("Cluster {name} Ready"), || async {
            let s = self.api::<Cluster>().get(name).await.ok()?.status?;
            operator_runtime::conditions::is_true(&s.conditions, "Ready").then_some(())
        })
        .await;
    }

    /// Crashes the three controllers where they are (SIGKILL to their containers: in-flight
    /// reconciles are lost, as when a process dies) and waits until the kubelet has restarted
    /// them and they are Ready again: all they know must come back from the objects.
    pub async fn restart_controllers(&self) {
        let pods = self.controller_pods().await;
        let before: Vec<(String, i32)> = pods.iter().map(|p| (p.name_any(), restarts(p))).collect();
        for p in &pods {
            self.kill_containers(p);
        }
        testenv::wait_for(120, "the controllers restarted and Ready", || async {
            let pods = self.controller_pods().await;
            before
                .iter()
                .all(|(name, n)| {
                    pods.iter()
                        .any(|p| p.name_any() == *name && restarts(p) > *n && pod_serving(p))
                })
                .then_some(())
        })
        .await;
    }

    /// The controllers' pods (of the releases installed through this `Env`).
    pub async fn controller_pods(&self) -> Vec<Pod> {
        let mut pods = Vec::new();
        for release in &self.releases {
            let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.operator_ns);
            pods.extend(api.list(&lp).await.unwrap().items);
        }
        pods
    }

    /// SIGKILLs every container of a running pod (through its cgroup); the kubelet restarts
    /// them per the pod's `restartPolicy`.
    pub fn kill_containers(&self, pod: &Pod) {
        let (node, uid) = placement(pod);
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for c in statuses {
            let id = c
                .container_id
                .unwrap_or_else(|| panic!("container {} of {} has no id", c.name, pod.name_any()));
            e2e_env::faults::kill_container(&self.state, &node, &uid, &id)
                .unwrap_or_else(|e| panic!("killing {} of {}: {e}", c.name, pod.name_any()));
        }
    }

    /// Freezes (or thaws) a pod of the namespace in its cgroup: its processes stop, their
    /// sockets stay open.
    pub async fn freeze_pod(&self, name: &str, frozen: bool) {
        let pod = self.api::<Pod>().get(name).await.unwrap();
        let (node, uid) = placement(&pod);
        e2e_env::faults::freeze_pod(&self.state, &node, &uid, frozen)
            .unwrap_or_else(|e| panic!("freezing pod {name}: {e}"));
    }

    /// Stops (SIGSTOP) a node's kubelet: the node goes NotReady, its containers keep running.
    pub fn stop_kubelet(&self, node: &str) {
        e2e_env::faults::stop_kubelet(&self.state, node).unwrap();
    }

    /// Lets a stopped kubelet run again.
    pub fn resume_kubelet(&self, node: &str) {
        e2e_env::faults::resume_kubelet(&self.state, node).unwrap();
    }

    /// Unplugs a worker node from the cluster network.
    pub fn cut_network(&self, node: &str) {
        e2e_env::faults::cut_network(&self.state, node).unwrap();
    }

    /// Plugs a worker node back in.
    pub fn restore_network(&self, node: &str) {
        e2e_env::faults::restore_network(&self.state, node).unwrap();
    }

    /// Deletes a pod with grace period 0: its object goes at once, its containers are killed.
    pub async fn force_delete_pod(&self, name: &str) {
        self.api::<Pod>()
            .delete(name, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }

    /// A PD client that knows every member's URL, so it keeps working while members restart.
    pub async fn pd_members(&self, cluster: &str) -> pdclient::PdClient {
        let urls = self.pd(cluster).await.members().await.unwrap().members;
        pdclient::PdClient::new(urls.into_iter().flat_map(|m| m.client_urls)).unwrap()
    }

    /// The store ID of every TiKV object (each must have one: call it once the cluster is Ready).
    pub async fn store_ids(&self) -> std::collections::BTreeMap<String, u64> {
        self.api::<api::v1alpha1::TiKV>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|t| {
                let id = t
                    .status
                    .as_ref()
                    .and_then(|s| s.id.as_deref())
                    .map(str::parse);
                let id = id
                    .and_then(Result::ok)
                    .expect("a TiKV of a Ready cluster has a store ID");
                (t.metadata.name.unwrap_or_default(), id)
            })
            .collect()
    }

    /// Whether an Event with `reason` was recorded (about the object `about`, when given).
    pub async fn has_event(&self, reason: &str, about: Option<&str>) -> bool {
        self.api::<k8s_openapi::api::core::v1::Event>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some(reason)
                    && about.is_none_or(|a| e.involved_object.name.as_deref() == Some(a))
            })
    }

    /// Waits up to `secs` for an Event with `reason` (about `about`, when given); panics after.
    /// The operator publishes an Event after the status it goes with, so a test that has just
    /// seen the status may be a moment early.
    pub async fn wait_event(&self, reason: &str, about: Option<&str>, secs: u64) {
        testenv::wait_for(secs, &format!("an Event {reason}"), || async {
            self.has_event(reason, about).await.then_some(())
        })
        .await;
    }

    /// What a controller's `/metrics` serves now (its pod, through the API server's pod proxy,
    /// as `kubectl get --raw` would read it).
    pub async fn controller_metrics(&self, controller: &str) -> String {
        let pod = self
            .controller_pods()
            .await
            .into_iter()
            .find(|p| p.name_any().contains(controller) && pod_serving(p))
            .unwrap_or_else(|| panic!("no serving {controller} pod"));
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}:{}/proxy/metrics",
            self.operator_ns,
            pod.name_any(),
            CONTROLLER_METRICS_PORT
        );
        let req = http::Request::get(path).body(Vec::new()).unwrap();
        self.client.request_text(req).await.unwrap()
    }

    /// The controllers' logs so far (every container incarnation), from the nodes' log files.
    pub fn controller_logs(&self) -> Vec<(String, String)> {
        self.pod_logs(|ns, pod| {
            ns == self.operator_ns
                && self
                    .releases
                    .iter()
                    .any(|r| pod.starts_with(&format!("{r}-")))
        })
    }

    /// The logs of the pods that `keep(namespace, pod name)` selects (every container
    /// incarnation), from the nodes' log files: (file, text).
    fn pod_logs(&self, keep: impl Fn(&str, &str) -> bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for node in &self.state.plan.nodes {
            let dir = self.state.node_dir(&node.name).join("var/log/pods");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                // <namespace>_<pod>_<uid>
                let mut parts = name.splitn(3, '_');
                let (Some(ns), Some(pod)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if !keep(ns, pod) {
                    continue;
                }
                for log in log_files(&e.path()) {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    out.push((log.display().to_string(), text));
                }
            }
        }
        out
    }

    /// Copies the logs of the cluster's pods (PD, TiKV) to a directory that outlives the
    /// environment, for a failed scenario; returns it.
    fn keep_cluster_logs(&self) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tikv-e2e-failed-{}", self.ns));
        let _ = std::fs::create_dir_all(&dir);
        for (file, text) in self.pod_logs(|ns, _| ns == self.ns) {
            // .../var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log
            let path = Path::new(&file);
            let mut names = path.iter().rev().map(|c| c.to_string_lossy().into_owned());
            let (n, container, pod) = (names.next(), names.next(), names.next());
            let name = format!(
                "{}.{}.{}",
                pod.unwrap_or_default(),
                container.unwrap_or_default(),
                n.unwrap_or_default()
            );
            let _ = std::fs::write(dir.join(name), text);
        }
        dir
    }

    /// Checks the controllers never hit a permission they lack (a missing RBAC rule in a
    /// chart). The environment goes with the scenario, so nothing else needs stopping; see
    /// [`Env::remove`] to reuse the nodes.
    pub async fn stop(self) {
        self.check_permissions();
    }

    /// [`Env::stop`], then deletes the namespace's Clusters (the operator removes what they made),
    /// uninstalls the controllers and deletes the namespaces: for benchmarks that run one case
    /// after another on the same nodes.
    pub async fn remove(self) {
        self.check_permissions();
        let clusters = self.api::<Cluster>();
        for c in clusters.list(&ListParams::default()).await.unwrap().items {
            let _ = clusters
                .delete(&c.name_any(), &DeleteParams::default())
                .await;
        }
        testenv::wait_for(300, "the clusters' pods gone", || async {
            let lp = ListParams::default().labels(api::labels::CLUSTER);
            let pods = self.api::<Pod>().list(&lp).await.ok()?;
            pods.items.is_empty().then_some(())
        })
        .await;
        for release in &self.releases {
            self.helm(&["uninstall", release, "--namespace", &self.operator_ns]);
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in [&self.ns, &self.operator_ns] {
            let _ = namespaces.delete(ns, &DeleteParams::default()).await;
        }
    }

    fn check_permissions(&self) {
        let denied: Vec<String> = self
            .controller_logs()
            .into_iter()
            .flat_map(|(file, text)| {
                text.lines()
                    .filter(|l| l.contains("forbidden"))
                    .map(|l| format!("{file}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(
            denied.is_empty(),
            "the controllers were refused by RBAC:\n{}",
            denied.join("\n")
        );
    }
}

/// When a scenario fails, its output shows what the operator did: the controllers' logs.
impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (file, text) in self.controller_logs() {
                println!("----- {file}\n{text}");
            }
            println!(
                "----- the cluster's pod logs are kept in {}",
                self.keep_cluster_logs().display()
            );
        }
    }
}

/// The path of one of the repository's charts.
pub fn chart(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../charts")
        .join(name)
        .display()
        .to_string()
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for c in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

/// How often a pod's containers restarted, together.
pub fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// A pod's node and UID (it must be scheduled).
fn placement(pod: &Pod) -> (String, String) {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| panic!("pod {} is not on a node", pod.name_any()));
    (
        node,
        pod.uid().expect("a pod from the API server has a uid"),
    )
}

async fn client(state: &State) -> Client {
    let kc = Kubeconfig::read_from(state.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// A namespace `PREFIX-xxxxx`, once its `default` ServiceAccount exists (pods need it).
async fn create_namespace(client: &Client, prefix: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            ..Default::default()
        },
        ..Default::default()
    };
    let name = api
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating a namespace {prefix}-*: {e}"))
        .name_any();
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &name);
    testenv::wait_for(60, "the namespace's default ServiceAccount", || async {
        accounts.get_opt("default").await.ok()?.map(drop)
    })
    .await;
    name
}

/// How many stores PD reports Up (at `version`, when given); `None` when PD cannot answer.
pub async fn up_stores(pd: &pdclient::PdClient, version: Option<&str>) -> Option<usize> {
    let stores = pd.stores().await.ok()?;
    Some(
        stores
            .iter()
            .filter(|s| s.store.state_name.as_str() == "Up")
            .filter(|s| version.is_none_or(|v| s.store.version == v))
            .count(),
    )
}

/// A pod watch event as (pod, going): `going` once it is terminating or deleted. `None` for the
/// watcher's bookkeeping events.
pub fn pod_change(
    ev: kube::runtime::watcher::Event<k8s_openapi::api::core::v1::Pod>,
) -> Option<(k8s_openapi::api::core::v1::Pod, bool)> {
    use kube::runtime::watcher::Event;
    match ev {
        Event::Apply(p) | Event::InitApply(p) => {
            let going = p.metadata.deletion_timestamp.is_some();
            Some((p, going))
        }
        Event::Delete(p) => Some((p, true)),
        _ => None,
    }
}

/// The pod runs, is Ready and is not terminating.
pub fn pod_serving(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && instance_controller::status::pod_ready(Some(p))
}

/// TiKV timers for scenarios: region heartbeats every 5 s instead of TiKV's 1 min, so that PD
/// sees a restarted or new store's peers caught up within seconds rather than a minute.
const TIKV_TUNING: &str = r#"
[raftstore]
pd-heartbeat-tick-interval = "5s"
pd-store-heartbeat-tick-interval = "1s"
"#;

/// How long a scenario's restarted store waits for PD to move leaders back (TiKV's default
/// `5m` is for production): PD here now and then leaves one store of six without leaders for
/// minutes, and a scenario must not wait that out at every restart.
const TEST_TRANSFER_BACK_TIMEOUT: &str = "60s";

/// Merges the test tuning into a group's `config` (PD: [`testenv::pd::TEST_PD_CONFIG`], whose
/// scheduling limits make PD move replicas in seconds, not minutes; TiKV: [`TIKV_TUNING`], and
/// [`TEST_TRANSFER_BACK_TIMEOUT`]). The example's own keys win where both set one.
fn tune(doc: &mut serde_yaml::Value) {
    if doc["kind"].as_str() == Some("TiKVGroup") {
        let policy = &mut doc["spec"]["updatePolicy"];
        if policy.get("leaderTransferBackTimeout").is_none() {
            policy["leaderTransferBackTimeout"] = TEST_TRANSFER_BACK_TIMEOUT.into();
        }
    }
    let tuning = match doc["kind"].as_str() {
        Some("PDGroup") => testenv::pd::TEST_PD_CONFIG,
        Some("TiKVGroup") => TIKV_TUNING,
        _ => return,
    };
    let spec = &mut doc["spec"]["template"]["spec"];
    let user: toml::Table = toml::from_str(spec["config"].as_str().unwrap_or_default())
        .expect("the example's config is TOML");
    let mut merged: toml::Table = toml::from_str(tuning).unwrap();
    merge(&mut merged, user);
    spec["config"] = serde_yaml::Value::String(toml::to_string(&merged).unwrap());
}

/// Deep-merges `over` into `base`; `over` wins.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => drop(base.insert(k, v)),
        }
    }
}

/// What PD says about the cluster's stores and unhealthy regions, for a failed scenario's
/// output: each store's state, regions, leaders and pending peers, and the regions with down,
/// pending, learner or missing peers.
pub async fn pd_summary(pd: &pdclient::PdClient) -> String {
    use pdclient::RegionCheck;
    let mut out = String::new();
    match pd.stores().await {
        Ok(stores) => {
            for s in stores {
                out.push_str(&format!(
                    "store {} {} {}: {} regions, {} leaders, {} pending\n",
                    s.store.id,
                    s.store.address,
                    s.store.state_name,
                    s.status.region_count,
                    s.status.leader_count,
                    s.status.pending_peer_count
                ));
            }
        }
        Err(e) => out.push_str(&format!("stores: {e}\n")),
    }
    for check in [
        RegionCheck::DownPeer,
        RegionCheck::PendingPeer,
        RegionCheck::LearnerPeer,
        RegionCheck::MissPeer,
    ] {
        match pd.regions_in_check(check).await {
            Ok(regions) => {
                let ids: Vec<String> = regions
                    .iter()
                    .map(|r| {
                        let peers: Vec<String> = r
                            .peers
                            .iter()
                            .map(|p| format!("{}@{}", p.id, p.store_id))
                            .collect();
                        format!("{}[{}]", r.id, peers.join(" "))
                    })
                    .collect();
                out.push_str(&format!("{check:?}: {}\n", ids.join(", ")));
            }
            Err(e) => out.push_str(&format!("{check:?}: {e}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_bounds_the_transfer_back_wait_unless_the_example_sets_it() {
        let mut bare: serde_yaml::Value =
            serde_yaml::from_str("{kind: TiKVGroup, spec: {template: {spec: {}}}}").unwrap();
        tune(&mut bare);
        assert_eq!(
            bare["spec"]["updatePolicy"]["leaderTransferBackTimeout"],
            serde_yaml::Value::from("60s")
        );
        assert!(bare["spec"]["template"]["spec"]["config"].is_string());
        let mut set: serde_yaml::Value = serde_yaml::from_str(
            "{kind: TiKVGroup, spec: {updatePolicy: {leaderTransferBackTimeout: 0s}, template: {spec: {}}}}",
        )
        .unwrap();
        tune(&mut set);
        assert_eq!(
            set["spec"]["updatePolicy"]["leaderTransferBackTimeout"],
            serde_yaml::Value::from("0s")
        );
    }
}

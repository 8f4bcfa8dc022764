//! [`Environment`]: the control plane, the nodes and the add-ons of one environment, started in
//! the right order inside the control-plane host's network namespace, and torn down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use testenv::process::Server;
use testenv::{ControlPlane, ControlPlaneOptions, NodeNetwork};

use crate::Error;
use crate::addons;
use crate::node::{self, KubeletPaths, Node};
use crate::plan::{CONTROL_PLANE_IP, CONTROL_PLANE_ROLE, SERVICE_CIDR};
use crate::state::State;
use crate::teardown::{self, Report};

/// How long the nodes and add-ons may take to become ready once started.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The images to import: `(repository, archive)` from `DIR/images.txt` (written by
/// `images/build.sh`).
pub fn image_list(dir: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let list = dir.join("images.txt");
    let text = std::fs::read_to_string(&list).map_err(|_| Error::MissingTool {
        name: list.display().to_string(),
        hint: "build the images first: images/build.sh (just test and just up do)".into(),
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (repo, archive) = l.split_once(' ').ok_or_else(|| Error::State {
                path: list.clone(),
                message: format!("bad line {l:?} (want REPOSITORY ARCHIVE)"),
            })?;
            Ok((repo.to_string(), dir.join(archive.trim())))
        })
        .collect()
}

/// A running environment.
pub struct Environment {
    /// What it is.
    pub state: State,
    // Dropped in this order: add-ons, nodes, control plane (the API server outlives its users).
    addons: Vec<Server>,
    nodes: Vec<Node>,
    control_plane: ControlPlane,
    /// How long [`Environment::start`] took.
    pub startup: Duration,
}

impl Environment {
    /// Starts everything. Must run inside the control-plane host's network namespace (see
    /// `tikv-env`), with [`crate::net::create`] done. On failure the caller tears down.
    pub async fn start(
        mut state: State,
        images: &[(String, PathBuf)],
    ) -> Result<Environment, Error> {
        let began = Instant::now();
        node::require_tools()?;
        node::raise_inotify_instances();
        let control_plane = ControlPlane::start(ControlPlaneOptions {
            install_crds: false,
            nodes: Some(NodeNetwork {
                advertise_address: CONTROL_PLANE_IP,
                service_cidr: SERVICE_CIDR.into(),
            }),
            ..Default::default()
        })
        .await?;
        let api = format!("https://{CONTROL_PLANE_IP}:{}", control_plane.secure_port());
        state.api_server = Some(api.clone());
        state.save()?;
        tracing::info!(elapsed = ?began.elapsed(), %api, "control plane is up");
        write_configs(&state, &control_plane, &api)?;

        // Cluster add-ons on the control-plane host.
        std::fs::create_dir_all(state.log_dir())
            .map_err(Error::io(format!("creating {}", state.log_dir().display())))?;
        node::write(
            &state.dir.join("Corefile"),
            &addons::corefile(&state.kubeconfig()),
        )?;
        let mut addons = vec![Server::spawn(
            "coredns",
            &testenv::bin_path("coredns")?,
            addons::coredns_args(&state),
            &state.log_dir(),
        )?];
        kubectl_apply(&state, &addons::local_path_manifests(&state, &state.plan))?;
        addons.push(Server::spawn(
            "local-path-provisioner",
            &testenv::bin_path("local-path-provisioner")?,
            addons::local_path_args(&state),
            &state.log_dir(),
        )?);

        // Nodes: their runtimes (and image imports) in parallel, then the kubelets.
        let started = tokio::task::spawn_blocking({
            let state = state.clone();
            let images = images.to_vec();
            move || start_runtimes(&state, &images)
        })
        .await
        .map_err(|e| Error::Panicked(format!("starting the nodes ({e})")))?;
        let mut nodes = started?;
        tracing::info!(elapsed = ?began.elapsed(), "container runtimes up, images imported");
        for n in &mut nodes {
            n.start_kubelet(&state)?;
        }
        let mut env = Environment {
            state,
            addons,
            nodes,
            control_plane,
            startup: Duration::ZERO,
        };
        env.wait_ready().await?;
        env.state.ready = true;
        env.state.save()?;
        env.startup = began.elapsed();
        tracing::info!(startup = ?env.startup, "environment is ready");
        Ok(env)
    }

    /// Waits until every node is Ready (the control-plane node labelled as such), every
    /// kube-proxy has programmed its rules and CoreDNS serves.
    async fn wait_ready(&mut self) -> Result<(), Error> {
        let client = self.control_plane.client();
        let nodes: Api<NodeObject> = Api::all(client);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut labelled = false;
        loop {
            for n in &mut self.nodes {
                n.ensure_running()?;
            }
            for a in &mut self.addons {
                a.ensure_running()?;
            }
            let mut waiting = Vec::new();
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(Error::kube("listing nodes"))?;
            let ready = |name: &str| {
                list.items
                    .iter()
                    .any(|o| o.metadata.name.as_deref() == Some(name) && node_ready(o))
            };
            for n in &self.nodes {
                if !ready(&n.plan.name) {
                    waiting.push(format!("node {} Ready", n.plan.name));
                } else if !http_ok(SocketAddr::new(n.plan.ip.into(), 10256), "/healthz").await {
                    waiting.push(format!("kube-proxy of {}", n.plan.name));
                }
            }
            let cp = &self.state.plan.control_plane().name;
            if !labelled && ready(cp) {
                // As kubeadm does: a kubelet may not give itself a role label.
                let patch = serde_json::json!({"metadata": {"labels": {CONTROL_PLANE_ROLE: ""}}});
                nodes
                    .patch(cp, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::kube(format!("labelling node {cp}")))?;
                labelled = true;
            }
            let dns: SocketAddr = addons::COREDNS_READY.parse().expect("a socket address");
            if !http_ok(dns, "/ready").await {
                waiting.push("CoreDNS".into());
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    what: "the environment".into(),
                    timeout: READY_TIMEOUT,
                    detail: format!(
                        "still waiting for {}; logs in {}",
                        waiting.join(", "),
                        self.state.dir.display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes an admin kubeconfig that reaches the API server at `server_url` (e.g. the host's
    /// loopback forward).
    pub fn write_admin_kubeconfig(&self, path: &Path, server_url: &str) -> Result<(), Error> {
        Ok(self.control_plane.write_user_kubeconfig(
            path,
            server_url,
            "tikv-env-admin",
            &["system:masters"],
        )?)
    }

    /// Stops everything and removes what the environment made; `keep_logs` as in
    /// [`teardown::down`].
    pub fn stop(mut self, keep_logs: bool) -> Report {
        for mut a in self.addons.drain(..) {
            a.stop();
        }
        let report = teardown::down(&self.state, keep_logs);
        for mut n in self.nodes.drain(..) {
            n.stop();
        }
        drop(self.control_plane);
        report
    }
}

/// The nodes' runtimes, one thread each (image imports are most of the time). Every node gets
/// every image: the control-plane node runs no workload, but may run the operator (tests put it
/// there, away from the worker nodes they break).
fn start_runtimes(state: &State, images: &[(String, PathBuf)]) -> Result<Vec<Node>, Error> {
    std::thread::scope(|s| {
        let handles: Vec<_> = state
            .plan
            .nodes
            .iter()
            .map(|plan| s.spawn(move || Node::start_runtime(state, plan, images)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Panicked("starting a node".into())))
            })
            .collect()
    })
}

/// Kubeconfigs (admin from inside, one per kubelet, kube-proxy's), the kubelets' and
/// kube-proxies' configurations, and the resolv.conf files.
fn write_configs(state: &State, cp: &ControlPlane, api: &str) -> Result<(), Error> {
    cp.write_user_kubeconfig(
        &state.kubeconfig(),
        api,
        "tikv-env-admin",
        &["system:masters"],
    )?;
    let proxy_kc = state.dir.join("kube-proxy.kubeconfig");
    cp.write_user_kubeconfig(&proxy_kc, api, "system:kube-proxy", &[])?;
    // Programs in the cluster network resolve through cluster DNS, with the search list a pod in
    // the default namespace would have (so `basic-pd.ns.svc` and `name.subdomain.ns.svc` work).
    node::write(
        &state.resolv_conf(),
        &format!(
            "nameserver {CONTROL_PLANE_IP}\nsearch default.svc.{d} svc.{d} {d}\noptions ndots:5\n",
            d = crate::plan::CLUSTER_DOMAIN
        ),
    )?;
    for n in &state.plan.nodes {
        let dir = state.node_dir(&n.name);
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        cp.write_user_kubeconfig(
            &dir.join("kubelet.kubeconfig"),
            api,
            &format!("system:node:{}", n.name),
            &["system:nodes"],
        )?;
        let paths = KubeletPaths {
            client_ca: cp.ca_path(),
            resolv_conf: &dir.join("resolv.conf"),
        };
        node::write(&dir.join("kubelet.yaml"), &node::kubelet_config(n, &paths))?;
        node::write(
            &dir.join("kube-proxy.yaml"),
            &node::kube_proxy_config(n, &proxy_kc),
        )?;
    }
    Ok(())
}

/// `kubectl apply` of YAML with the admin kubeconfig.
fn kubectl_apply(state: &State, yaml: &str) -> Result<(), Error> {
    use std::io::Write;
    let kubectl = testenv::bin_path("kubectl")?;
    let mut child = std::process::Command::new(&kubectl)
        .arg(format!("--kubeconfig={}", state.kubeconfig().display()))
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(Error::io("starting kubectl"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(yaml.as_bytes())
        .map_err(Error::io("writing to kubectl"))?;
    let out = child
        .wait_with_output()
        .map_err(Error::io("running kubectl"))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: "kubectl apply --server-side -f -".into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn node_ready(n: &NodeObject) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether `GET path` on `addr` answers 200 (plain HTTP/1.0, for health endpoints).
pub async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        Some(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

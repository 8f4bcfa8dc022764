//! [`ControlPlane`]: etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
//! loopback, with our CRDs installed.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};

use crate::certs::{self, Pki};
use crate::process::{Janitor, LOG_TAIL_LINES, Server, free_ports, log_tail};
use crate::{Error, bin_path};

/// Field manager of everything the test environment itself writes (CRDs, namespaces).
pub const FIELD_MANAGER: &str = "tikv-operator/testenv";

/// Service CIDR of the API server without real nodes. Service IPs are only strings then (there
/// is no kube-proxy); the range must merely not matter to anyone.
const SERVICE_CIDR: &str = "10.0.0.0/24";

/// How often readiness is polled. Short, because startup time is what every test binary pays.
const POLL: Duration = Duration::from_millis(100);

/// Attempts at starting etcd and the API server when another process takes a chosen port.
const PORT_ATTEMPTS: u32 = 3;

/// What to run besides etcd and the API server.
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Run kube-controller-manager: garbage collection of owned objects, namespace deletion,
    /// the `default` ServiceAccount of each namespace, and the other built-in controllers.
    pub with_controller_manager: bool,
    /// Run kube-scheduler, which binds pods without `spec.nodeName` to Nodes.
    pub with_scheduler: bool,
    /// Upper bound for each startup step (etcd health, API server readiness, CRDs established,
    /// controller manager and scheduler leader leases). Generous by default because a 2-core
    /// machine may be compiling at the same time.
    pub startup_timeout: Duration,
    /// Install the CRDs of [`api::crds`] (and wait until they are Established). Off for tests
    /// that install CRDs themselves, e.g. from the chart or an older version.
    pub install_crds: bool,
    /// Extra kube-apiserver flags, e.g. `--feature-gates=...`; later flags win.
    pub apiserver_args: Vec<String>,
    /// Serve real nodes (kubelets, kube-proxy): see [`NodeNetwork`]. `None`: loopback only.
    pub nodes: Option<NodeNetwork>,
}

/// A control plane for real nodes. The API server listens on every address of its network
/// namespace and advertises `advertise_address` (the `kubernetes` Service's endpoint), uses
/// `service_cidr` for ClusterIPs, authorizes kubelets with the Node authorizer and
/// NodeRestriction, and reaches kubelets (logs, exec, port-forward) at their InternalIP with a
/// client certificate. The controller manager runs every controller, EndpointSlices included
/// (cluster DNS and kube-proxy read them).
#[derive(Debug, Clone)]
pub struct NodeNetwork {
    /// Where nodes reach the API server; also in its serving certificate.
    pub advertise_address: Ipv4Addr,
    /// ClusterIP range, e.g. `10.96.0.0/16`; its first address is the `kubernetes` Service.
    pub service_cidr: String,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            with_controller_manager: true,
            with_scheduler: true,
            startup_timeout: Duration::from_secs(120),
            install_crds: true,
            apiserver_args: Vec::new(),
            nodes: None,
        }
    }
}

/// A running control plane. Dropping it kills every server and removes its directory.
pub struct ControlPlane {
    // Declared first so that it drops first: servers must be dead before the directory goes.
    processes: Processes,
    config: kube::Config,
    pki: Pki,
    kubeconfig: PathBuf,
    server_url: String,
    startup_time: Duration,
    options: ControlPlaneOptions,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server_url", &self.server_url)
            .field("dir", &self.processes.dir)
            .field("startup_time", &self.startup_time)
            .field("options", &self.options)
            .finish()
    }
}

/// The servers, the temporary directory and its janitor. Its `Drop` is the teardown, so a
/// startup that fails half-way cleans up what it started.
struct Processes {
    dir: PathBuf,
    /// In start order; stopped in reverse.
    servers: Vec<Server>,
    janitor: Option<Janitor>,
}

impl Processes {
    fn server(&mut self, name: &str) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.name() == name)
    }

    fn stop_all(&mut self) {
        while let Some(mut server) = self.servers.pop() {
            server.stop();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
        let _ = std::fs::remove_dir_all(&self.dir);
        // Only now: the janitor would otherwise race us for the directory.
        drop(self.janitor.take());
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver, (optionally) kube-controller-manager and kube-scheduler on
    /// 127.0.0.1 with free ports and a fresh temporary directory, waits for the API server's
    /// `/readyz`, installs the CRDs of [`api::crds`] (unless
    /// [`ControlPlaneOptions::install_crds`] is off) and waits until they are Established, then
    /// waits until the controller manager and the scheduler hold their leader leases (a sign
    /// that they run). A port taken by another process between choosing and binding it is
    /// retried with new ports. On failure everything started is stopped and the directory
    /// removed; the error quotes the failing server's log.
    pub async fn start(options: ControlPlaneOptions) -> Result<ControlPlane, Error> {
        let began = Instant::now();
        // Look every binary up first, so a missing one fails fast and names itself.
        let etcd = bin_path("etcd")?;
        let apiserver = bin_path("kube-apiserver")?;
        let controller_manager = options
            .with_controller_manager
            .then(|| bin_path("kube-controller-manager"))
            .transpose()?;
        let scheduler = options
            .with_scheduler
            .then(|| bin_path("kube-scheduler"))
            .transpose()?;

        let dir = create_temp_dir()?;
        let mut processes = Processes {
            janitor: Some(Janitor::spawn(&dir)?),
            dir,
            servers: Vec::new(),
        };
        let service_cidr = options
            .nodes
            .as_ref()
            .map_or(SERVICE_CIDR, |n| n.service_cidr.as_str());
        let service_ip = first_address(service_cidr).ok_or_else(|| Error::Io {
            context: format!("service CIDR {service_cidr:?}"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an IPv4 CIDR such as 10.96.0.0/16",
            ),
        })?;
        let mut serving_ips = vec![service_ip];
        serving_ips.extend(options.nodes.as_ref().map(|n| n.advertise_address));
        let pki = certs::generate(&processes.dir, &serving_ips)?;
        let kubeconfig = processes.dir.join("kubeconfig");

        let mut attempt = 1;
        let (server_url, config) = loop {
            match start_storage_and_apiserver(
                &mut processes,
                &etcd,
                &apiserver,
                &pki,
                &kubeconfig,
                &options,
            )
            .await
            {
                Ok(started) => break started,
                Err(e) if e.is_port_conflict() && attempt < PORT_ATTEMPTS => {
                    tracing::warn!(error = %e, "a port was taken; starting again with other ports");
                    processes.stop_all();
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::debug!(elapsed = ?began.elapsed(), "etcd and kube-apiserver are ready");
        let client =
            kube::Client::try_from(config.clone()).map_err(Error::kube("building a client"))?;

        // CRDs go in before the controller manager starts, so that its garbage collector finds
        // our kinds in its first discovery instead of after its 30 s resync.
        if options.install_crds {
            install_crds(&client, &mut processes, options.startup_timeout).await?;
            tracing::debug!(elapsed = ?began.elapsed(), "CRDs are established");
        }

        let mut leases = Vec::new();
        if let Some(bin) = controller_manager {
            processes.servers.push(Server::spawn(
                "kube-controller-manager",
                &bin,
                controller_manager_args(&pki, &kubeconfig, options.nodes.is_some()),
                &processes.dir,
            )?);
            leases.push("kube-controller-manager");
        }
        if let Some(bin) = scheduler {
            processes.servers.push(Server::spawn(
                "kube-scheduler",
                &bin,
                scheduler_args(&kubeconfig),
                &processes.dir,
            )?);
            leases.push("kube-scheduler");
        }
        for name in leases {
            let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
            wait_for(&mut processes, name, options.startup_timeout, || async {
                match api.get_opt(name).await {
                    Ok(Some(lease))
                        if lease
                            .spec
                            .as_ref()
                            .is_some_and(|s| s.holder_identity.is_some()) =>
                    {
                        Ok(())
                    }
                    Ok(_) => Err(format!("lease kube-system/{name} not held yet")),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await?;
        }

        let startup_time = began.elapsed();
        tracing::info!(?startup_time, %server_url, dir = %processes.dir.display(), "test control plane is up");
        Ok(ControlPlane {
            processes,
            config,
            pki,
            kubeconfig,
            server_url,
            startup_time,
            options,
        })
    }

    /// A new client of the admin user (group `system:masters`). A new one on each call, because
    /// a client belongs to the tokio runtime it was made on and each `#[tokio::test]` has its own.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config.clone())
            .unwrap_or_else(|e| panic!("building a client of the test control plane: {e}"))
    }

    /// The client configuration [`client`](Self::client) uses, for callers that customise it.
    pub fn config(&self) -> &kube::Config {
        &self.config
    }

    /// The admin kubeconfig file (for kubectl and for controllers started as processes).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server URL, `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The temporary directory: certificates, kubeconfig, etcd data and `NAME.log` per server.
    pub fn dir(&self) -> &Path {
        &self.processes.dir
    }

    /// Time from the call of [`start`](Self::start) until it returned.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// The options it was started with.
    pub fn options(&self) -> &ControlPlaneOptions {
        &self.options
    }

    /// `(name, pid)` of each server (`etcd`, `kube-apiserver`, `kube-controller-manager`,
    /// `kube-scheduler`), e.g. to check teardown or to inject faults.
    pub fn server_pids(&self) -> Vec<(String, u32)> {
        self.processes
            .servers
            .iter()
            .filter_map(|s| Some((s.name().to_string(), s.pid()?)))
            .collect()
    }

    /// Writes a kubeconfig for user `cn` in `groups` (a new client certificate signed by this
    /// control plane's CA, embedded) that reaches the API server at `server_url`, e.g. a
    /// kubelet's (`system:node:NAME`, `system:nodes`) at the address real nodes use.
    pub fn write_user_kubeconfig(
        &self,
        path: &Path,
        server_url: &str,
        cn: &str,
        groups: &[&str],
    ) -> Result<(), Error> {
        let (cert, key) = certs::client_certificate(&self.pki, cn, groups)?;
        let ca = std::fs::read_to_string(&self.pki.ca_cert)
            .map_err(Error::io(format!("reading {}", self.pki.ca_cert.display())))?;
        write_kubeconfig_pem(path, server_url, &ca, &cert, &key)
    }

    /// The CA certificate file (PEM) that signed the API server's certificate and every client
    /// certificate: what kubelets trust for client authentication.
    pub fn ca_path(&self) -> &Path {
        &self.pki.ca_cert
    }

    /// The port the API server listens on.
    pub fn secure_port(&self) -> u16 {
        self.server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default()
    }

    /// A `kubectl` command (the built one) that talks to this control plane.
    pub fn kubectl(&self) -> Result<std::process::Command, Error> {
        let mut cmd = std::process::Command::new(bin_path("kubectl")?);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        Ok(cmd)
    }

    /// Creates a namespace named `PREFIX-xxxxx` (a unique suffix chosen by the API server) and
    /// returns its name once pods can be created in it, i.e. once its `default` ServiceAccount
    /// exists. The controller manager creates that account; without a controller manager this
    /// function creates it. `prefix` is lower-cased, other characters than `[a-z0-9-]` become
    /// `-`, and it is cut to 40 characters.
    ///
    /// # Panics
    ///
    /// When the namespace cannot be created: it is test setup, and the message says why.
    pub async fn create_namespace(&self, prefix: &str) -> String {
        let client = self.client();
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", sanitize(prefix))),
                ..Default::default()
            },
            ..Default::default()
        };
        let name = api
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating a namespace with prefix {prefix:?}: {e}"))
            .metadata
            .name
            .expect("the API server names a namespace created with generateName");

        let accounts: Api<ServiceAccount> = Api::namespaced(client, &name);
        if self.options.with_controller_manager {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match accounts.get_opt("default").await {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Ok(None) => panic!(
                        "the controller manager did not create ServiceAccount {name}/default within 60 s; \
                         last lines of its log:\n{}",
                        log_tail(
                            &self.dir().join("kube-controller-manager.log"),
                            LOG_TAIL_LINES
                        )
                    ),
                    Err(e) => panic!("reading ServiceAccount {name}/default: {e}"),
                }
            }
        } else {
            // The ServiceAccount admission plugin refuses pods whose account does not exist;
            // stand in for the missing controller.
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("default".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            accounts
                .create(&PostParams::default(), &sa)
                .await
                .unwrap_or_else(|e| panic!("creating ServiceAccount {name}/default: {e}"));
        }
        name
    }
}

/// Starts etcd and the API server (stopping nothing on failure: the caller decides) and returns
/// the server URL and a client config once `/readyz` answers `ok`.
async fn start_storage_and_apiserver(
    processes: &mut Processes,
    etcd: &Path,
    apiserver: &Path,
    pki: &Pki,
    kubeconfig: &Path,
    options: &ControlPlaneOptions,
) -> Result<(String, kube::Config), Error> {
    let ports = free_ports(3)?;
    let (etcd_client, etcd_peer, secure) = (ports[0], ports[1], ports[2]);
    let dir = processes.dir.clone();

    let etcd_data = dir.join("etcd-data");
    // A data dir left by a failed attempt would hold the old peer URL.
    let _ = std::fs::remove_dir_all(&etcd_data);
    processes.servers.push(Server::spawn(
        "etcd",
        etcd,
        etcd_args(&etcd_data, etcd_client, etcd_peer),
        &dir,
    )?);
    // No wait for etcd: the API server retries its storage, and on two cores starting both at
    // once saves a few hundred milliseconds. An etcd that exits is still caught by `wait_for`,
    // and one that hangs shows in the API server's log quoted by the timeout error.

    let mut args = apiserver_args(pki, etcd_client, secure, &dir, options.nodes.as_ref());
    args.extend(options.apiserver_args.iter().cloned());
    processes
        .servers
        .push(Server::spawn("kube-apiserver", apiserver, args, &dir)?);

    let server_url = format!("https://127.0.0.1:{secure}");
    write_kubeconfig(kubeconfig, &server_url, pki)?;
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client =
        kube::Client::try_from(config.clone()).map_err(Error::kube("building a client"))?;
    wait_for(
        processes,
        "kube-apiserver",
        options.startup_timeout,
        || async {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => Ok(()),
                Ok(body) => Err(body),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    Ok((server_url, config))
}

/// Applies every CRD and waits until each is Established (served).
async fn install_crds(
    client: &kube::Client,
    processes: &mut Processes,
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let crds = api::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(Error::kube(format!("applying CRD {name}")))?;
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        match tokio::time::timeout(timeout, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Error::NotReady {
                    server: format!("CRD {name}"),
                    timeout,
                    last_error: e.to_string(),
                    log: processes.dir.join("kube-apiserver.log"),
                    tail: log_tail(&processes.dir.join("kube-apiserver.log"), LOG_TAIL_LINES),
                });
            }
            Err(_) => {
                // Name the API server's state too: a crash would explain the timeout.
                if let Some(server) = processes.server("kube-apiserver") {
                    server.ensure_running()?;
                }
                return Err(Error::NotReady {
                    server: format!("CRD {name}"),
                    timeout,
                    last_error: "not Established".into(),
                    log: processes.dir.join("kube-apiserver.log"),
                    tail: log_tail(&processes.dir.join("kube-apiserver.log"), LOG_TAIL_LINES),
                });
            }
        }
    }
    Ok(())
}

/// Polls `check` until it succeeds, failing early (with its log) when any server exits and with
/// [`Error::NotReady`] after `timeout`.
async fn wait_for<F, Fut>(
    processes: &mut Processes,
    server: &str,
    timeout: Duration,
    mut check: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        for s in &mut processes.servers {
            s.ensure_running()?;
        }
        let last_error = match tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()).max(POLL),
            check(),
        )
        .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "the check itself timed out".into(),
        };
        if Instant::now() >= deadline {
            let log = processes.dir.join(format!("{server}.log"));
            return Err(Error::NotReady {
                server: server.to_string(),
                timeout,
                last_error,
                tail: log_tail(&log, LOG_TAIL_LINES),
                log,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn etcd_args(data_dir: &Path, client: u16, peer: u16) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    vec![
        "--name=testenv".into(),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=testenv={peer_url}"),
        // The data is thrown away with the directory; fsync would only slow every write.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(
    pki: &Pki,
    etcd_client: u16,
    secure: u16,
    dir: &Path,
    nodes: Option<&NodeNetwork>,
) -> Vec<String> {
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
        format!("--secure-port={secure}"),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", pki.serving_cert.display()),
        format!("--tls-private-key-file={}", pki.serving_key.display()),
        format!("--client-ca-file={}", pki.ca_cert.display()),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", pki.sa_pub.display()),
        format!(
            "--service-account-signing-key-file={}",
            pki.sa_key.display()
        ),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
    ];
    match nodes {
        None => args.extend([
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // RBAC as in a real cluster: the admin user is in system:masters, and controllers
            // under test can be given their charts' roles.
            "--authorization-mode=RBAC".into(),
            // The `kubernetes` Service would otherwise get 127.0.0.1 as its endpoint, which the
            // API server refuses to write (loopback) and keeps logging about.
            "--endpoint-reconciler-type=none".into(),
        ]),
        Some(n) => args.extend([
            "--bind-address=0.0.0.0".to_string(),
            format!("--advertise-address={}", n.advertise_address),
            format!("--service-cluster-ip-range={}", n.service_cidr),
            // As kubeadm sets it up: kubelets may touch only their own Node and its pods.
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            format!(
                "--kubelet-client-certificate={}",
                pki.kubelet_client_cert.display()
            ),
            format!("--kubelet-client-key={}", pki.kubelet_client_key.display()),
            // Nodes have no resolvable host names; their InternalIP is what they listen on.
            "--kubelet-preferred-address-types=InternalIP".into(),
        ]),
    }
    args
}

fn controller_manager_args(pki: &Pki, kubeconfig: &Path, real_nodes: bool) -> Vec<String> {
    let controllers = if real_nodes {
        "--controllers=*"
    } else {
        // Pods here get loopback addresses (no kubelet, or a stand-in), which Endpoints and
        // EndpointSlices refuse; those controllers would only log failures.
        "--controllers=*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller"
    };
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        // No HTTPS endpoint: nothing scrapes it, and it would need another port and delegated
        // authentication. Its leader lease tells that it runs.
        "--secure-port=0".into(),
        format!("--root-ca-file={}", pki.ca_cert.display()),
        format!(
            "--service-account-private-key-file={}",
            pki.sa_key.display()
        ),
        format!("--cluster-signing-cert-file={}", pki.ca_cert.display()),
        format!("--cluster-signing-key-file={}", pki.ca_key.display()),
        "--profiling=false".into(),
        controllers.into(),
    ]
}

fn scheduler_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--secure-port=0".into(),
        "--profiling=false".into(),
    ]
}

/// Writes the admin kubeconfig with its certificates embedded, so that a copy (such as `just up`'s
/// `.local/kubeconfig`) does not depend on this directory's files.
fn write_kubeconfig(path: &Path, server_url: &str, pki: &Pki) -> Result<(), Error> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(Error::io(format!("reading {}", p.display())))
    };
    write_kubeconfig_pem(
        path,
        server_url,
        &read(&pki.ca_cert)?,
        &read(&pki.admin_cert)?,
        &read(&pki.admin_key)?,
    )
}

/// Writes a kubeconfig with the CA, client certificate and key (PEM) embedded. The URL is written
/// as a JSON string, which YAML reads as a double-quoted scalar.
pub(crate) fn write_kubeconfig_pem(
    path: &Path,
    server_url: &str,
    ca: &str,
    cert: &str,
    key: &str,
) -> Result<(), Error> {
    use base64::Engine as _;
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: testenv-user
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv-user
    namespace: default
current-context: testenv
",
        server = serde_json::Value::String(server_url.to_string()),
        ca = b64(ca),
        cert = b64(cert),
        key = b64(key),
    );
    std::fs::write(path, yaml).map_err(Error::io(format!("writing {}", path.display())))
}

/// The first host address of an IPv4 CIDR (`10.96.0.0/16` → `10.96.0.1`): the API server gives it
/// to the `kubernetes` Service.
fn first_address(cidr: &str) -> Option<Ipv4Addr> {
    let (net, bits) = cidr.split_once('/')?;
    let bits: u32 = bits.parse().ok().filter(|b| *b <= 30)?;
    let net = u32::from(net.parse::<Ipv4Addr>().ok()?);
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some(Ipv4Addr::from((net & mask) + 1))
}

/// A new, unique directory under the system temp dir.
fn create_temp_dir() -> Result<PathBuf, Error> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "tikv-testenv-{}-{n}-{nanos:08x}",
        std::process::id()
    ));
    // create_dir, not create_dir_all: never reuse a directory someone else made.
    std::fs::create_dir(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// A namespace prefix the API server accepts (a DNS label, leaving room for the suffix).
fn sanitize(prefix: &str) -> String {
    let s: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let s = s.trim_matches('-');
    if s.is_empty() {
        "test".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubernetes_service_gets_the_first_address() {
        assert_eq!(
            first_address("10.96.0.0/16"),
            Some(Ipv4Addr::new(10, 96, 0, 1))
        );
        assert_eq!(
            first_address("10.0.0.0/24"),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert_eq!(
            first_address("10.96.3.7/16"),
            Some(Ipv4Addr::new(10, 96, 0, 1))
        );
        assert_eq!(first_address("10.96.0.0"), None);
        assert_eq!(first_address("10.96.0.0/31"), None);
        assert_eq!(first_address("nonsense/8"), None);
    }

    #[test]
    fn sanitize_makes_a_dns_label_prefix() {
        assert_eq!(sanitize("My_Test::case"), "my-test--case");
        assert_eq!(sanitize("--"), "test");
        assert_eq!(sanitize(&"a".repeat(80)).len(), 40);
    }

    #[test]
    fn kubeconfig_is_valid_and_stands_on_its_own() {
        let dir = create_temp_dir().unwrap();
        let pki = crate::certs::generate(&dir, &[]).unwrap();
        let path = dir.join("kubeconfig");
        write_kubeconfig(&path, "https://127.0.0.1:1234", &pki).unwrap();
        let kc = Kubeconfig::read_from(&path).unwrap();
        let kc_text = std::fs::read_to_string(&path).unwrap();
        let pem = |p: &Path| std::fs::read_to_string(p).unwrap();
        let (ca, cert, key) = (pem(&pki.ca_cert), pem(&pki.admin_cert), pem(&pki.admin_key));
        // A copy keeps working once the directory is gone.
        std::fs::remove_dir_all(&dir).unwrap();
        let decode = |b64: &str| {
            use base64::Engine as _;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap()
        };
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:1234"));
        assert_eq!(
            decode(cluster.certificate_authority_data.as_deref().unwrap()),
            ca
        );
        assert!(cluster.certificate_authority.is_none());
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(
            decode(user.client_certificate_data.as_deref().unwrap()),
            cert
        );
        // (kube keeps the key secret; read it from the file.)
        let raw: serde_yaml::Value = serde_yaml::from_str(&kc_text).unwrap();
        let key_data = raw["users"][0]["user"]["client-key-data"].as_str().unwrap();
        assert_eq!(decode(key_data), key);
    }
}

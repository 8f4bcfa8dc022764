//! The agent: configuration, shared state, the background tasks (watches, pod dispatch, node
//! heartbeats, hosts file, volume provisioning) and the public handle [`Agent`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::image::Programs;
use crate::launch::{self, Tools};
use crate::net::{self, AddressBlock, HostsFile, PodRecord};
use crate::node::{self, AGENT_LABEL, FAULT_ANNOTATION, LEASE_NAMESPACE, NodeFault};
use crate::pvc;
use crate::spec::Lookup;
use crate::volumes::VolumeLookup;
use crate::worker::{Command, PodAction, Worker, WorkerHandle};

/// Field manager of everything the agent writes with server-side apply.
pub const FIELD_MANAGER: &str = "node-agent";

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Zones; node `i` is in `zones[i % zones.len()]`.
    pub zones: Vec<String>,
    /// Node names are `<node_prefix>-<i>` (from 0).
    pub node_prefix: String,
    /// Where volumes, PVC directories, working directories and logs live.
    pub state_dir: PathBuf,
    /// Which programs run which images.
    pub programs: Programs,
    /// The hosts file (normally `/etc/hosts`).
    pub hosts_file: PathBuf,
    /// Directory of the lock files shared by all agents on the machine.
    pub lock_dir: PathBuf,
    /// Cluster domain for `.svc.<domain>` names.
    pub cluster_domain: String,
    /// Interval of node status heartbeats.
    pub status_interval: Duration,
    /// Interval of lease renewals.
    pub lease_interval: Duration,
    /// First restart back-off after the immediate first restart.
    pub restart_backoff: Duration,
    /// Largest restart back-off.
    pub max_restart_backoff: Duration,
    /// A container that ran at least this long restarts without back-off.
    pub backoff_reset: Duration,
    /// Longest grace period when the agent itself stops (or a pod vanishes from the API).
    pub shutdown_grace: Duration,
    /// Delete the Node objects when [`Agent::shutdown`] runs.
    pub delete_nodes_on_shutdown: bool,
    /// Install the default StorageClass [`pvc::STORAGE_CLASS`] (`WaitForFirstConsumer`).
    pub storage_class: bool,
}

impl AgentConfig {
    /// Defaults: 3 nodes in `zone-a`, `zone-b`, `zone-c`, named `node-0..2`; programs looked
    /// up by [`crate::image::default_search_dirs`]; `/etc/hosts`; locks in
    /// `/run/tikv-operator-node-agent`; fast restart back-off (1 s doubling to 10 s) so tests
    /// do not wait minutes as with kubelet's 10 s to 5 min.
    pub fn new(state_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            nodes: 3,
            zones: vec!["zone-a".into(), "zone-b".into(), "zone-c".into()],
            node_prefix: "node".into(),
            state_dir: state_dir.into(),
            programs: Programs {
                search_dirs: crate::image::default_search_dirs(None),
                ..Default::default()
            },
            hosts_file: PathBuf::from("/etc/hosts"),
            lock_dir: PathBuf::from("/run/tikv-operator-node-agent"),
            cluster_domain: "cluster.local".into(),
            status_interval: Duration::from_secs(10),
            lease_interval: Duration::from_secs(10),
            restart_backoff: Duration::from_secs(1),
            max_restart_backoff: Duration::from_secs(10),
            backoff_reset: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            delete_nodes_on_shutdown: true,
            storage_class: true,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.nodes == 0 || self.nodes > 254 {
            return Err(Error::Config(format!(
                "nodes must be 1..=254, not {}",
                self.nodes
            )));
        }
        if self.zones.is_empty() || self.zones.iter().any(String::is_empty) {
            return Err(Error::Config(
                "zones must be a non-empty list of non-empty names".into(),
            ));
        }
        if self.node_prefix.is_empty() {
            return Err(Error::Config("node prefix must not be empty".into()));
        }
        if !self.state_dir.is_absolute() {
            return Err(Error::Config(format!(
                "state dir {} must be absolute",
                self.state_dir.display()
            )));
        }
        Ok(())
    }
}

/// The objects the agent reads, kept current by watches.
pub(crate) struct Stores {
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub secrets: Store<Secret>,
    pub pvcs: Store<PersistentVolumeClaim>,
    pub pvs: Store<PersistentVolume>,
}

impl Lookup for Stores {
    fn config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>> {
        self.config_maps
            .get(&ObjectRef::new(name).within(namespace))
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.secrets.get(&ObjectRef::new(name).within(namespace))
    }
}

impl VolumeLookup for Stores {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&ObjectRef::new(name).within(namespace))
    }
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(&ObjectRef::new(name))
    }
}

/// One of the agent's nodes.
pub(crate) struct NodeEntry {
    pub ip: Ipv4Addr,
    pub zone: String,
    pub fault: watch::Sender<NodeFault>,
}

/// State shared by the agent's tasks and pod workers.
pub(crate) struct Shared {
    pub client: Client,
    pub config: AgentConfig,
    pub id: String,
    pub tools: Tools,
    pub stores: Stores,
    pub nodes: BTreeMap<String, NodeEntry>,
    pub block: Mutex<AddressBlock>,
    pub net: Mutex<BTreeMap<String, PodRecord>>,
    pub hosts: HostsFile,
    pub hosts_req: watch::Sender<u64>,
    pub hosts_done: watch::Sender<u64>,
    pub volume_gen: watch::Sender<u64>,
    pub claims_gen: watch::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
    /// Process groups of running containers, by instance (to kill them from `Drop`).
    pub procs: Mutex<BTreeMap<u64, i32>>,
    pub next_instance: AtomicU64,
    pub workers: Mutex<HashMap<String, WorkerHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Rewrites the hosts block with the current records and waits until it is on disk.
    pub(crate) async fn hosts_sync(&self) {
        if *self.shutdown.borrow() {
            // The writer is gone; the whole block is removed on shutdown anyway.
            return;
        }
        let mut wanted = 0;
        self.hosts_req.send_modify(|g| {
            *g += 1;
            wanted = *g;
        });
        let mut rx = self.hosts_done.subscribe();
        let mut stop = self.shutdown.subscribe();
        tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|d| *d >= wanted)) => {
                if r.is_err() {
                    tracing::warn!("hosts file not updated within 10s");
                }
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    fn render_hosts(&self) -> String {
        let records: Vec<PodRecord> = lock(&self.net).values().cloned().collect();
        let services: Vec<Service> = self
            .stores
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let entries = net::compute_entries(&records, &services, &self.config.cluster_domain);
        net::render_block(&self.id, &entries)
    }

    fn on_pod(self: &Arc<Self>, pod: Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        if !self.nodes.contains_key(&node) {
            return;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut workers = lock(&self.workers);
        if let Some(w) = workers.get(&uid) {
            w.pod_tx.send_replace(Some(Arc::new(pod)));
            return;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded") | Some("Failed"));
        if (terminal && pod.metadata.deletion_timestamp.is_none()) || *self.shutdown.borrow() {
            return;
        }
        workers.insert(uid, Worker::spawn(self.clone(), Arc::new(pod), node));
    }

    fn on_pod_gone(&self, uid: &str) {
        if let Some(w) = lock(&self.workers).get(uid) {
            w.pod_tx.send_replace(None);
        }
    }

    fn find_worker(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<tokio::sync::mpsc::UnboundedSender<Command>> {
        lock(&self.workers)
            .values()
            .find(|w| w.namespace == namespace && w.name == name)
            .map(|w| w.cmd_tx.clone())
            .ok_or_else(|| Error::UnknownPod(format!("{namespace}/{name}")))
    }
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|g| *g = g.wrapping_add(1));
}

/// Runs a reflector for `api` into `writer`, calling `on_change` after each change.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    on_change: impl Fn() + Send + 'static,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
                ) => on_change(),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, kind = %K::kind(&Default::default()), "watch error (retrying)")
                }
            }
        }
    })
}

/// A running node agent. Dropping it kills every process it started and removes its hosts
/// block (synchronously); [`Agent::shutdown`] additionally stops processes gracefully and
/// deletes the Node objects.
pub struct Agent {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    stopped: bool,
}

impl Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("id", &self.shared.id)
            .field("nodes", &self.node_names())
            .finish()
    }
}

impl Agent {
    /// Starts the agent: claims an address block, starts the watches, registers the nodes
    /// (Ready), and begins running the pods bound to them. Returns once the nodes are Ready.
    pub async fn start(client: Client, config: AgentConfig) -> Result<Agent> {
        config.validate()?;
        let tools = Tools::find()?;
        std::fs::create_dir_all(&config.state_dir).map_err(Error::io(format!(
            "creating state dir {}",
            config.state_dir.display()
        )))?;
        match std::fs::read_to_string("/etc/nsswitch.conf") {
            Ok(c) if !net::nsswitch_uses_files(&c) => tracing::warn!(
                "/etc/nsswitch.conf does not list `files` for hosts: pod and service names will not resolve"
            ),
            _ => {}
        }
        let block = AddressBlock::claim(&config.lock_dir)?;
        // Unique even when one process runs agents one after the other on the same block
        // (Node objects of a dropped agent outlive it).
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("b{}-p{}-{seq}", block.block(), std::process::id());
        let nodes: BTreeMap<String, NodeEntry> = (0..config.nodes)
            .map(|i| {
                let name = format!("{}-{i}", config.node_prefix);
                let zone = config.zones[i % config.zones.len()].clone();
                (
                    name,
                    NodeEntry {
                        ip: block.node_ip(i),
                        zone,
                        fault: watch::channel(NodeFault::None).0,
                    },
                )
            })
            .collect();
        let (services, services_w) = reflector::store();
        let (config_maps, config_maps_w) = reflector::store();
        let (secrets, secrets_w) = reflector::store();
        let (pvcs, pvcs_w) = reflector::store();
        let (pvs, pvs_w) = reflector::store();
        let hosts = HostsFile {
            path: config.hosts_file.clone(),
            lock_dir: config.lock_dir.clone(),
        };
        let shared = Arc::new(Shared {
            client: client.clone(),
            config,
            id: id.clone(),
            tools,
            stores: Stores {
                services,
                config_maps,
                secrets,
                pvcs,
                pvs,
            },
            nodes,
            block: Mutex::new(block),
            net: Mutex::new(BTreeMap::new()),
            hosts,
            hosts_req: watch::channel(0).0,
            hosts_done: watch::channel(0).0,
            volume_gen: watch::channel(0).0,
            claims_gen: watch::channel(0).0,
            shutdown: watch::channel(false).0,
            procs: Mutex::new(BTreeMap::new()),
            next_instance: AtomicU64::new(0),
            workers: Mutex::new(HashMap::new()),
        });
        let mut agent = Agent {
            shared: shared.clone(),
            tasks: Vec::new(),
            stopped: false,
        };
        // Clean stale blocks (ours from a crashed agent with the same block) right away.
        {
            let (hosts, id) = (shared.hosts.clone(), shared.id.clone());
            let block = net::render_block(&id, &BTreeMap::new());
            tokio::task::spawn_blocking(move || hosts.update(&id, Some(&block)))
                .await
                .map_err(|e| Error::Config(format!("hosts update task: {e}")))??;
        }
        let wc = watcher::Config::default();
        let s = shared.clone();
        agent.tasks.push(reflect(
            Api::all(client.clone()),
            wc.clone(),
            services_w,
            move || bump(&s.hosts_req),
        ));
        let s = shared.clone();
        agent.tasks.push(reflect(
            Api::all(client.clone()),
            wc.clone(),
            config_maps_w,
            move || bump(&s.volume_gen),
        ));
        let s = shared.clone();
        agent.tasks.push(reflect(
            Api::all(client.clone()),
            wc.clone(),
            secrets_w,
            move || bump(&s.volume_gen),
        ));
        let s = shared.clone();
        agent.tasks.push(reflect(
            Api::all(client.clone()),
            wc.clone(),
            pvcs_w,
            move || {
                bump(&s.volume_gen);
                bump(&s.claims_gen);
            },
        ));
        let s = shared.clone();
        agent.tasks.push(reflect(
            Api::all(client.clone()),
            wc.clone(),
            pvs_w,
            move || {
                bump(&s.volume_gen);
                bump(&s.claims_gen);
            },
        ));
        let stores = &shared.stores;
        let ready = async {
            stores.services.wait_until_ready().await.ok();
            stores.config_maps.wait_until_ready().await.ok();
            stores.secrets.wait_until_ready().await.ok();
            stores.pvcs.wait_until_ready().await.ok();
            stores.pvs.wait_until_ready().await.ok();
        };
        let wait = Duration::from_secs(60);
        tokio::time::timeout(wait, ready)
            .await
            .map_err(|_| Error::Timeout {
                what: "the initial lists of services, configmaps, secrets, PVCs and PVs".into(),
                timeout: wait,
            })?;
        if shared.config.storage_class {
            let classes: Api<StorageClass> = Api::all(client.clone());
            classes
                .patch(
                    pvc::STORAGE_CLASS,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&pvc::storage_class()),
                )
                .await
                .map_err(Error::kube("installing the node-agent StorageClass"))?;
        }
        agent.tasks.push(tokio::spawn(hosts_writer(shared.clone())));
        agent.tasks.push(tokio::spawn(provisioner(shared.clone())));
        for name in shared.nodes.keys() {
            let uid = register_node(&shared, name).await?;
            agent
                .tasks
                .push(tokio::spawn(node_loop(shared.clone(), name.clone(), uid)));
        }
        agent
            .tasks
            .push(tokio::spawn(node_annotations(shared.clone())));
        agent
            .tasks
            .push(tokio::spawn(dispatch_pods(shared.clone())));
        tracing::info!(id = %shared.id, nodes = ?agent.node_names(), "node agent started");
        Ok(agent)
    }

    /// The agent's id (`b<block>-p<pid>-<n>`), also the value of the [`AGENT_LABEL`] node label.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Names of the agent's nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.shared.nodes.keys().cloned().collect()
    }

    /// The zone of a node.
    pub fn node_zone(&self, node: &str) -> Option<&str> {
        self.shared.nodes.get(node).map(|n| n.zone.as_str())
    }

    /// A node selector that matches exactly this agent's nodes (for tests that run several
    /// agents against one control plane).
    pub fn node_selector(&self) -> BTreeMap<String, String> {
        [(AGENT_LABEL.to_string(), self.shared.id.clone())].into()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.shared.config.state_dir
    }

    /// Directory of a pod's container logs: `<state>/logs/<ns>_<name>_<uid>/<container>/<n>.log`
    /// where `n` is the container's restart count.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.shared
            .config
            .state_dir
            .join("logs")
            .join(format!("{namespace}_{name}_{uid}"))
    }

    async fn fault(&self, namespace: &str, name: &str, action: PodAction) -> Result<usize> {
        let tx = self.shared.find_worker(namespace, name)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Fault(action, reply))
            .map_err(|_| Error::Stopped)?;
        rx.await
            .map_err(|_| Error::Stopped)?
            .map_err(|message| Error::Fault {
                pod: format!("{namespace}/{name}"),
                message,
            })
    }

    /// Kills (`SIGKILL`) the processes of a pod's running containers; they restart according
    /// to the pod's restart policy. Returns how many process groups were signalled.
    pub async fn kill_pod(&self, namespace: &str, name: &str) -> Result<usize> {
        self.fault(namespace, name, PodAction::Kill).await
    }

    /// Freezes (`SIGSTOP`) a pod's processes. Probes against it then time out.
    pub async fn freeze_pod(&self, namespace: &str, name: &str) -> Result<usize> {
        self.fault(namespace, name, PodAction::Freeze).await
    }

    /// Thaws (`SIGCONT`) a pod's processes.
    pub async fn thaw_pod(&self, namespace: &str, name: &str) -> Result<usize> {
        self.fault(namespace, name, PodAction::Thaw).await
    }

    /// `(container, pid)` of a pod's running containers.
    pub async fn pod_processes(&self, namespace: &str, name: &str) -> Result<Vec<(String, i32)>> {
        let tx = self.shared.find_worker(namespace, name)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Command::Processes(reply))
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Injects (or with [`NodeFault::None`] clears) a node fault.
    pub fn set_node_fault(&self, node: &str, fault: NodeFault) -> Result<()> {
        let entry = self
            .shared
            .nodes
            .get(node)
            .ok_or_else(|| Error::UnknownNode(node.to_string()))?;
        entry.fault.send_replace(fault);
        Ok(())
    }

    /// Stops the agent: every pod's processes get `SIGTERM` and, after at most
    /// [`AgentConfig::shutdown_grace`], `SIGKILL`; the Node objects are deleted (if so
    /// configured) and the hosts block is removed.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stopped = true;
        let shared = self.shared.clone();
        shared.shutdown.send_replace(true);
        // No new workers from here on.
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let workers: Vec<WorkerHandle> = lock(&shared.workers).drain().map(|(_, w)| w).collect();
        let wait = shared.config.shutdown_grace + Duration::from_secs(10);
        for w in workers {
            let abort = w.task.abort_handle();
            if tokio::time::timeout(wait, w.task).await.is_err() {
                abort.abort();
            }
        }
        kill_all(&shared);
        let mut result = Ok(());
        if shared.config.delete_nodes_on_shutdown {
            let nodes: Api<Node> = Api::all(shared.client.clone());
            let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
            for name in shared.nodes.keys() {
                for r in [
                    nodes
                        .delete(name, &DeleteParams::default())
                        .await
                        .map(|_| ()),
                    leases
                        .delete(name, &DeleteParams::default())
                        .await
                        .map(|_| ()),
                ] {
                    match r {
                        Ok(()) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => result = Err(Error::kube(format!("deleting node {name}"))(e)),
                    }
                }
            }
        }
        let (hosts, id) = (shared.hosts.clone(), shared.id.clone());
        tokio::task::spawn_blocking(move || hosts.update(&id, None))
            .await
            .map_err(|e| Error::Config(format!("hosts update task: {e}")))??;
        tracing::info!(id = %shared.id, "node agent stopped");
        result
    }
}

fn kill_all(shared: &Shared) {
    for pgid in lock(&shared.procs).values() {
        let _ = launch::signal_group(*pgid, nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.shared.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
        for (_, w) in lock(&self.shared.workers).drain() {
            w.task.abort();
        }
        kill_all(&self.shared);
        if let Err(e) = self.shared.hosts.update(&self.shared.id, None) {
            tracing::warn!(error = %e, "removing the hosts block");
        }
    }
}

async fn hosts_writer(shared: Arc<Shared>) {
    let mut rx = shared.hosts_req.subscribe();
    loop {
        if rx.changed().await.is_err() {
            return;
        }
        // Coalesce bursts of changes into one write.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let generation = *rx.borrow_and_update();
        let block = shared.render_hosts();
        let (hosts, id) = (shared.hosts.clone(), shared.id.clone());
        match tokio::task::spawn_blocking(move || hosts.update(&id, Some(&block))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "updating the hosts file"),
            Err(e) => tracing::error!(error = %e, "hosts update task"),
        }
        shared.hosts_done.send_replace(generation);
    }
}

async fn register_node(shared: &Shared, name: &str) -> Result<String> {
    let entry = &shared.nodes[name];
    let api: Api<Node> = Api::all(shared.client.clone());
    let node = node::node_object(name, &entry.zone, &shared.id);
    let applied = api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await
        .map_err(Error::kube(format!("registering node {name}")))?;
    // A node left behind by an earlier agent may carry our fault annotation: clear it.
    if applied
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(FAULT_ANNOTATION))
    {
        let patch = serde_json::json!({"metadata": {"annotations": {FAULT_ANNOTATION: null}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "clearing the fault annotation of {name}"
            )))?;
    }
    let status = node::node_status(name, entry.ip, NodeFault::None, &[], Timestamp::now());
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({ "status": status })),
    )
    .await
    .map_err(Error::kube(format!("writing the status of node {name}")))?;
    let uid = applied.metadata.uid.unwrap_or_default();
    renew_lease(shared, name, &uid).await?;
    Ok(uid)
}

async fn renew_lease(shared: &Shared, name: &str, uid: &str) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let lease = node::lease_object(name, uid, Timestamp::now());
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&lease),
    )
    .await
    .map(|_| ())
    .map_err(Error::kube(format!("renewing the lease of node {name}")))
}

async fn node_loop(shared: Arc<Shared>, name: String, uid: String) {
    let entry = &shared.nodes[&name];
    let mut fault_rx = entry.fault.subscribe();
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut conditions = Vec::new();
    let mut last_status = tokio::time::Instant::now();
    let mut last_fault = NodeFault::None;
    loop {
        let fault = *fault_rx.borrow_and_update();
        let changed = fault != last_fault;
        let healthy = fault == NodeFault::None;
        if healthy && let Err(e) = renew_lease(&shared, &name, &uid).await {
            tracing::warn!(node = %name, error = %e, "lease renewal failed");
        }
        if changed || (healthy && last_status.elapsed() >= shared.config.status_interval) {
            let status = node::node_status(&name, entry.ip, fault, &conditions, Timestamp::now());
            let patch = serde_json::json!({ "status": status });
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    conditions = status.conditions.unwrap_or_default();
                    last_status = tokio::time::Instant::now();
                    last_fault = fault;
                    if changed {
                        tracing::info!(node = %name, ?fault, "node fault changed");
                    }
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "node status update failed"),
            }
        }
        let tick = shared
            .config
            .lease_interval
            .min(shared.config.status_interval);
        tokio::select! {
            r = fault_rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Applies the [`FAULT_ANNOTATION`] of the agent's nodes whenever its value changes.
async fn node_annotations(shared: Arc<Shared>) {
    let api: Api<Node> = Api::all(shared.client.clone());
    let cfg = watcher::Config::default().labels(&format!("{AGENT_LABEL}={}", shared.id));
    let stream = watcher(api, cfg).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    let mut seen: HashMap<String, String> = HashMap::new();
    while let Some(ev) = stream.next().await {
        let Ok(node) = ev else { continue };
        let name = node.metadata.name.clone().unwrap_or_default();
        let Some(entry) = shared.nodes.get(&name) else {
            continue;
        };
        let value = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FAULT_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        if seen.get(&name) == Some(&value) {
            continue;
        }
        let first = !seen.contains_key(&name);
        seen.insert(name.clone(), value.clone());
        if first && value.is_empty() {
            continue;
        }
        match NodeFault::parse(&value) {
            Some(f) => {
                entry.fault.send_replace(f);
            }
            None => {
                tracing::warn!(node = %name, %value, "unknown {FAULT_ANNOTATION} value (use Ready, NotReady or Down)")
            }
        }
    }
}

async fn dispatch_pods(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.insert(pod.metadata.uid.clone().unwrap_or_default());
                shared.on_pod(pod);
            }
            Ok(watcher::Event::Apply(pod)) => shared.on_pod(pod),
            Ok(watcher::Event::Delete(pod)) => {
                shared.on_pod_gone(pod.metadata.uid.as_deref().unwrap_or_default())
            }
            Ok(watcher::Event::InitDone) => {
                // Pods that disappeared while the watch was down.
                let gone: Vec<String> = lock(&shared.workers)
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    shared.on_pod_gone(&uid);
                }
            }
            Err(e) => tracing::debug!(error = %e, "pod watch error (retrying)"),
        }
    }
}

/// Creates PVs for unbound PVCs and deletes the PVs (and directories) of deleted PVCs.
async fn provisioner(shared: Arc<Shared>) {
    let mut rx = shared.claims_gen.subscribe();
    let pv_api: Api<PersistentVolume> = Api::all(shared.client.clone());
    loop {
        for claim in shared.stores.pvcs.state() {
            let node = match pvc::decide(&claim, &|n| shared.nodes.contains_key(n)) {
                pvc::Provision::Skip => continue,
                pvc::Provision::OnNode(n) => Some(n),
                pvc::Provision::Anywhere => None,
            };
            let dir = pvc::claim_dir(&shared.config.state_dir, &claim);
            let pv = pvc::volume_for(&claim, &dir, &shared.id, node.as_deref());
            let pv_name = pv.metadata.name.clone().unwrap_or_default();
            if shared.stores.pvs.get(&ObjectRef::new(&pv_name)).is_some() {
                continue;
            }
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), error = %e, "creating a volume directory");
                continue;
            }
            match pv_api.create(&PostParams::default(), &pv).await {
                Ok(_) => {
                    tracing::info!(pv = %pv_name, claim = ?claim.metadata.name, "provisioned volume")
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => tracing::warn!(pv = %pv_name, error = %e, "creating a volume"),
            }
        }
        for pv in shared.stores.pvs.state() {
            let Some((ns, name, uid, dir)) = pvc::owned_volume(&pv, &shared.config.state_dir)
            else {
                continue;
            };
            let known = shared.stores.pvcs.get(&ObjectRef::new(&name).within(&ns));
            if known.as_ref().and_then(|c| c.metadata.uid.as_deref()) == Some(uid.as_str()) {
                continue;
            }
            // The store may lag: ask the API server before deleting anything.
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), &ns);
            match claims.get_opt(&name).await {
                Ok(Some(c)) if c.metadata.uid.as_deref() == Some(uid.as_str()) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "checking a claim");
                    continue;
                }
            }
            let pv_name = pv.metadata.name.clone().unwrap_or_default();
            match pv_api.delete(&pv_name, &DeleteParams::default()).await {
                Ok(_) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    tracing::info!(pv = %pv_name, "deleted the volume of a deleted claim");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(e) => tracing::warn!(pv = %pv_name, error = %e, "deleting a volume"),
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

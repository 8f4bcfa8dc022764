//! One task per pod: the kubelet "pod worker". It allocates the pod's address, sets up its
//! volumes, starts, probes, restarts and stops its containers, and writes the pod's status.
//! Decisions are made by the pure functions of [`crate::status`], [`crate::spec`],
//! [`crate::volumes`] and [`crate::probe`]; this module applies them.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus, Probe, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use nix::sys::signal::Signal;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, oneshot, watch};

use crate::agent::Shared;
use crate::launch::{self, ExitInfo, LaunchSpec};
use crate::net::PodRecord;
use crate::node::NodeFault;
use crate::probe::{self, ProbeKind, Target, Timing, Verdict};
use crate::spec::{self, PodFacts};
use crate::status::{self, ContainerView, PodView, RestartPolicy, State, Termination};
use crate::volumes::{self, VolumePlan};

/// Pod annotation: each new non-empty value kills the pod's processes once (`SIGKILL`); they
/// are then restarted according to the restart policy.
pub const KILL_ANNOTATION: &str = "node-agent.tikv.org/kill";
/// Pod annotation: `"true"` freezes the pod's processes (`SIGSTOP`); any other value or
/// removing it thaws them (`SIGCONT`).
pub const FREEZE_ANNOTATION: &str = "node-agent.tikv.org/freeze";

/// A fault-injection action on a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodAction {
    /// `SIGKILL` every running container's process group.
    Kill,
    /// `SIGSTOP` them.
    Freeze,
    /// `SIGCONT` them.
    Thaw,
}

/// A request to a pod worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Signal the containers; answers the number of processes signalled.
    Fault(PodAction, oneshot::Sender<Result<usize, String>>),
    /// List `(container, pid)` of running containers.
    Processes(oneshot::Sender<Vec<(String, i32)>>),
}

/// The agent's handle on a worker.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    pub namespace: String,
    pub name: String,
    pub pod_tx: watch::Sender<Option<Arc<Pod>>>,
    pub cmd_tx: mpsc::UnboundedSender<Command>,
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
enum Event {
    Exited {
        instance: u64,
        exit: ExitInfo,
    },
    Probe {
        instance: u64,
        kind: ProbeKind,
        ok: bool,
    },
}

#[derive(Debug)]
struct Proc {
    pid: i32,
    /// Dropping it makes the watchdog kill the process group.
    _watchdog: ChildStdin,
    exit_rx: watch::Receiver<Option<ExitInfo>>,
    probes: Option<tokio::task::JoinHandle<()>>,
    started_at: Timestamp,
    started: Instant,
}

#[derive(Debug)]
struct Ctr {
    spec: Container,
    init: bool,
    state: State,
    last_termination: Option<Termination>,
    restart_count: i32,
    ready: bool,
    started: bool,
    instance: u64,
    proc: Option<Proc>,
    next_start: Option<Instant>,
    crashes: u32,
    image_id: String,
    container_id: Option<String>,
}

impl Ctr {
    fn new(spec: Container, init: bool, restart_count: i32) -> Ctr {
        Ctr {
            spec,
            init,
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_termination: None,
            restart_count,
            ready: false,
            started: false,
            instance: 0,
            proc: None,
            next_start: None,
            crashes: 0,
            image_id: String::new(),
            container_id: None,
        }
    }

    fn view(&self) -> ContainerView {
        ContainerView {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            container_id: self.container_id.clone(),
            image_id: self.image_id.clone(),
            state: self.state.clone(),
            last_termination: self.last_termination.clone(),
            restart_count: self.restart_count,
            ready: self.ready,
            started: self.started,
        }
    }

    fn waiting(&mut self, reason: &str, message: impl Into<String>) {
        self.state = State::Waiting {
            reason: reason.into(),
            message: Some(message.into()),
        };
    }
}

/// Kubelet-like restart back-off: the first restart is immediate, then `initial` doubling up to
/// `max`. Pure.
pub fn backoff(crashes: u32, initial: Duration, max: Duration) -> Duration {
    if crashes == 0 {
        return Duration::ZERO;
    }
    initial
        .saturating_mul(1u32 << (crashes - 1).min(16))
        .min(max)
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    uid: String,
    node: String,
    pod: Arc<Pod>,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    fault_rx: watch::Receiver<NodeFault>,
    volume_rx: watch::Receiver<u64>,
    shutdown_rx: watch::Receiver<bool>,
    ip: Option<Ipv4Addr>,
    host_ip: Ipv4Addr,
    start_time: Timestamp,
    ctrs: Vec<Ctr>,
    volume_dirs: HashMap<String, PathBuf>,
    volumes_ready: bool,
    last_written: Option<PodStatus>,
    kill_seen: Option<String>,
    freeze_seen: Option<String>,
    node_frozen: bool,
    was_paused: bool,
    tokens: HashMap<(String, i64), (String, Instant)>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("uid", &self.uid)
            .field("node", &self.node)
            .finish()
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

impl Worker {
    /// Starts a worker for `pod` (bound to `node`, one of the agent's).
    pub(crate) fn spawn(shared: Arc<Shared>, pod: Arc<Pod>, node: String) -> WorkerHandle {
        let (pod_tx, pod_rx) = watch::channel(Some(pod.clone()));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let entry = &shared.nodes[&node];
        let fault_rx = entry.fault.subscribe();
        let host_ip = entry.ip;
        let volume_rx = shared.volume_gen.subscribe();
        let shutdown_rx = shared.shutdown.subscribe();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let prev = pod.status.as_ref();
        let count = |name: &str, init: bool| {
            let list = if init {
                prev.and_then(|s| s.init_container_statuses.as_ref())
            } else {
                prev.and_then(|s| s.container_statuses.as_ref())
            };
            list.and_then(|l| l.iter().find(|c| c.name == name))
                .map_or(0, |c| c.restart_count)
        };
        let mut ctrs: Vec<Ctr> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| Ctr::new(c.clone(), true, count(&c.name, true)))
            .collect();
        ctrs.extend(
            spec.containers
                .iter()
                .map(|c| Ctr::new(c.clone(), false, count(&c.name, false))),
        );
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let worker = Worker {
            shared,
            uid: uid.clone(),
            node,
            pod: pod.clone(),
            pod_rx,
            cmd_rx,
            events_tx,
            events_rx,
            fault_rx,
            volume_rx,
            shutdown_rx,
            ip: None,
            host_ip,
            start_time: Timestamp::now(),
            ctrs,
            volume_dirs: HashMap::new(),
            volumes_ready: false,
            last_written: None,
            kill_seen: annotations.get(KILL_ANNOTATION).cloned(),
            freeze_seen: None,
            node_frozen: false,
            was_paused: false,
            tokens: HashMap::new(),
        };
        let task = tokio::spawn(worker.run());
        WorkerHandle {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            pod_tx,
            cmd_tx,
            task,
        }
    }

    fn key(&self) -> String {
        pod_key(&self.pod)
    }

    fn policy(&self) -> RestartPolicy {
        RestartPolicy::parse(
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref()),
        )
    }

    fn pod_dir(&self) -> PathBuf {
        self.shared.config.state_dir.join("pods").join(&self.uid)
    }

    fn log_path(&self, container: &str, restart_count: i32) -> PathBuf {
        self.shared
            .config
            .state_dir
            .join("logs")
            .join(format!(
                "{}_{}_{}",
                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                self.uid
            ))
            .join(container)
            .join(format!("{restart_count}.log"))
    }

    fn facts(&self) -> PodFacts {
        PodFacts {
            pod_ip: self.ip.map(|i| i.to_string()).unwrap_or_default(),
            host_ip: self.host_ip.to_string(),
            node_cpu_millis: crate::node::NODE_CPU_CORES * 1000,
            node_memory_bytes: crate::node::NODE_MEMORY_BYTES,
        }
    }

    fn paused(&self) -> bool {
        *self.fault_rx.borrow() != NodeFault::None
    }

    async fn run(mut self) {
        tracing::info!(pod = %self.key(), node = %self.node, "pod worker started");
        loop {
            if *self.shutdown_rx.borrow() {
                self.stop_all(self.shared.config.shutdown_grace).await;
                break;
            }
            let current = self.pod_rx.borrow_and_update().clone();
            let Some(pod) = current else {
                // Deleted from the API without us (force deletion, node gone): stop at once.
                self.stop_all(self.shared.config.shutdown_grace.min(self.grace()))
                    .await;
                break;
            };
            self.pod = pod;
            self.apply_node_fault().await;
            if !self.paused() {
                if self.pod.metadata.deletion_timestamp.is_some() {
                    self.terminate_and_delete().await;
                    break;
                }
                self.apply_annotations();
                self.reconcile().await;
                self.write_status().await;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                r = self.pod_rx.changed() => {
                    if r.is_err() {
                        self.stop_all(self.shared.config.shutdown_grace).await;
                        break;
                    }
                }
                Some(ev) = self.events_rx.recv() => self.on_event(ev),
                Some(cmd) = self.cmd_rx.recv() => self.on_command(cmd),
                _ = self.fault_rx.changed() => {}
                _ = self.volume_rx.changed() => {}
                _ = self.shutdown_rx.changed() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            // Drain whatever else is queued so one status write covers it.
            while let Ok(ev) = self.events_rx.try_recv() {
                self.on_event(ev);
            }
        }
        self.cleanup().await;
        self.shared
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.uid);
        tracing::info!(pod = %self.key(), "pod worker finished");
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut d = self
            .ctrs
            .iter()
            .filter_map(|c| c.next_start)
            .min()
            .unwrap_or(far);
        if self.ip.is_some() && !self.volumes_ready {
            d = d.min(Instant::now() + Duration::from_secs(1));
        }
        // Refresh service account tokens well before they expire.
        if !self.tokens.is_empty() {
            d = d.min(Instant::now() + Duration::from_secs(60));
        }
        d.max(Instant::now() + Duration::from_millis(10))
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    fn signal_all(&self, signal: Signal) -> usize {
        self.ctrs
            .iter()
            .filter_map(|c| c.proc.as_ref())
            .filter(|p| launch::signal_group(p.pid, signal).unwrap_or(false))
            .count()
    }

    async fn apply_node_fault(&mut self) {
        let paused = self.paused();
        if self.was_paused && !paused {
            // Others (the node lifecycle controller) may have written the status meanwhile.
            self.last_written = None;
        }
        if paused && !self.was_paused {
            self.mark_not_ready().await;
        }
        self.was_paused = paused;
        let down = *self.fault_rx.borrow() == NodeFault::Down;
        if down && !self.node_frozen {
            self.signal_all(Signal::SIGSTOP);
            self.node_frozen = true;
        } else if !down && self.node_frozen {
            self.signal_all(Signal::SIGCONT);
            self.node_frozen = false;
        }
    }

    fn apply_annotations(&mut self) {
        let annotations = self.pod.metadata.annotations.clone().unwrap_or_default();
        let kill = annotations.get(KILL_ANNOTATION).cloned();
        if kill != self.kill_seen {
            if kill.as_deref().is_some_and(|k| !k.is_empty()) {
                let n = self.signal_all(Signal::SIGKILL);
                tracing::info!(pod = %self.key(), processes = n, "killed by annotation");
            }
            self.kill_seen = kill;
        }
        let freeze = annotations.get(FREEZE_ANNOTATION).cloned();
        if freeze != self.freeze_seen {
            let was = self.freeze_seen.as_deref() == Some("true");
            let now = freeze.as_deref() == Some("true");
            if now && !was {
                self.signal_all(Signal::SIGSTOP);
            } else if was && !now {
                self.signal_all(Signal::SIGCONT);
            }
            self.freeze_seen = freeze;
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Fault(action, reply) => {
                let running = self.ctrs.iter().filter(|c| c.proc.is_some()).count();
                let result = if running == 0 {
                    Err("no container of the pod is running".to_string())
                } else {
                    let signal = match action {
                        PodAction::Kill => Signal::SIGKILL,
                        PodAction::Freeze => Signal::SIGSTOP,
                        PodAction::Thaw => Signal::SIGCONT,
                    };
                    Ok(self.signal_all(signal))
                };
                let _ = reply.send(result);
            }
            Command::Processes(reply) => {
                let list = self
                    .ctrs
                    .iter()
                    .filter_map(|c| c.proc.as_ref().map(|p| (c.spec.name.clone(), p.pid)))
                    .collect();
                let _ = reply.send(list);
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Exited { instance, exit } => {
                let policy = self.policy();
                let config = self.shared.config.clone();
                let Some(c) = self
                    .ctrs
                    .iter_mut()
                    .find(|c| c.instance == instance && c.proc.is_some())
                else {
                    return;
                };
                let proc = c.proc.take().expect("checked above");
                if let Some(p) = &proc.probes {
                    p.abort();
                }
                self.shared
                    .procs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&instance);
                let t = Termination {
                    exit_code: exit.code,
                    signal: exit.signal,
                    reason: Termination::reason_for(exit.code).into(),
                    message: None,
                    started_at: Some(proc.started_at),
                    finished_at: Timestamp::now(),
                };
                tracing::info!(pod = %pod_key(&self.pod), container = %c.spec.name, code = exit.code, "container exited");
                c.ready = false;
                let restart = if c.init {
                    policy != RestartPolicy::Never && exit.code != 0
                } else {
                    policy.restarts(exit.code)
                };
                if restart {
                    if proc.started.elapsed() >= config.backoff_reset {
                        c.crashes = 0;
                    }
                    let delay = backoff(
                        c.crashes,
                        config.restart_backoff,
                        config.max_restart_backoff,
                    );
                    c.crashes += 1;
                    c.last_termination = Some(t);
                    c.next_start = Some(Instant::now() + delay);
                    c.state = State::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(format!(
                            "back-off {delay:?} restarting failed container={} pod={}",
                            c.spec.name,
                            self.pod.metadata.name.as_deref().unwrap_or_default()
                        )),
                    };
                } else {
                    c.started = false;
                    c.state = State::Terminated(t);
                }
            }
            Event::Probe { instance, kind, ok } => {
                let Some(c) = self
                    .ctrs
                    .iter_mut()
                    .find(|c| c.instance == instance && c.proc.is_some())
                else {
                    return;
                };
                match kind {
                    ProbeKind::Startup if ok => {
                        c.started = true;
                        if c.spec.readiness_probe.is_none() {
                            c.ready = true;
                        }
                    }
                    ProbeKind::Readiness => c.ready = ok && c.started,
                    ProbeKind::Startup | ProbeKind::Liveness => {
                        if !ok {
                            tracing::info!(pod = %pod_key(&self.pod), container = %c.spec.name, ?kind, "probe failed, killing container");
                            let grace = Duration::from_secs(
                                self.pod
                                    .spec
                                    .as_ref()
                                    .and_then(|s| s.termination_grace_period_seconds)
                                    .unwrap_or(30)
                                    .max(0) as u64,
                            );
                            if let Some(p) = &c.proc {
                                kill_gracefully(p.pid, p.exit_rx.clone(), grace);
                            }
                        }
                    }
                }
            }
        }
    }

    async fn ensure_ip(&mut self) {
        if self.ip.is_some() {
            return;
        }
        let ip = if self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
        {
            Some(self.host_ip)
        } else {
            self.shared
                .block
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .allocate()
        };
        let Some(ip) = ip else {
            for c in &mut self.ctrs {
                c.waiting("ContainerCreating", "node-agent: no free pod address");
            }
            return;
        };
        self.ip = Some(ip);
        self.publish_record(false);
        // The address is in the status and in /etc/hosts before any process starts.
        self.write_status().await;
        self.shared.hosts_sync().await;
    }

    fn pod_ready(&self) -> bool {
        let main: Vec<&Ctr> = self.ctrs.iter().filter(|c| !c.init).collect();
        !main.is_empty() && main.iter().all(|c| c.ready)
    }

    fn publish_record(&self, ready: bool) {
        let Some(ip) = self.ip else { return };
        let spec = self.pod.spec.as_ref();
        let record = PodRecord {
            namespace: self.pod.metadata.namespace.clone().unwrap_or_default(),
            hostname: Some(
                spec.and_then(|s| s.hostname.clone())
                    .unwrap_or_else(|| self.pod.metadata.name.clone().unwrap_or_default()),
            ),
            subdomain: spec.and_then(|s| s.subdomain.clone()),
            labels: self.pod.metadata.labels.clone().unwrap_or_default(),
            ip,
            ready,
        };
        self.shared
            .net
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.uid.clone(), record);
    }

    async fn fetch_tokens(&mut self) {
        let projections: Vec<_> = self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.projected.as_ref())
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.service_account_token.clone())
            .collect();
        for t in projections {
            let exp = t.expiration_seconds.unwrap_or(3600).max(600);
            let key = (t.audience.clone().unwrap_or_default(), exp);
            let fresh = self
                .tokens
                .get(&key)
                .is_some_and(|(_, at)| at.elapsed() < Duration::from_secs(exp as u64 * 8 / 10));
            if fresh {
                continue;
            }
            let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
            let sa = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            let req = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: t
                        .audience
                        .clone()
                        .into_iter()
                        .filter(|a| !a.is_empty())
                        .collect(),
                    expiration_seconds: Some(exp),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: self.pod.metadata.name.clone(),
                        uid: self.pod.metadata.uid.clone(),
                    }),
                },
                ..Default::default()
            };
            let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &ns);
            match api
                .create_subresource::<_, TokenRequest>("token", &sa, &PostParams::default(), &req)
                .await
            {
                Ok(r) => {
                    if let Some(status) = r.status {
                        self.tokens.insert(key, (status.token, Instant::now()));
                    }
                }
                Err(e) => tracing::warn!(pod = %self.key(), error = %e, "token request failed"),
            }
        }
    }

    async fn sync_volumes(&mut self) {
        self.fetch_tokens().await;
        let facts = self.facts();
        let spec = self.pod.spec.clone().unwrap_or_default();
        let base = self.pod_dir().join("volumes");
        let tokens = self.tokens.clone();
        let token = |t: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection| {
            let key = (
                t.audience.clone().unwrap_or_default(),
                t.expiration_seconds.unwrap_or(3600).max(600),
            );
            tokens.get(&key).map(|(tok, _)| tok.clone())
        };
        let mut problem = None;
        for v in spec.volumes.iter().flatten() {
            let plan = volumes::plan_volume(&self.pod, v, &facts, &self.shared.stores, &token);
            let result = match plan {
                Ok(VolumePlan::Files(payload)) => {
                    let dir = base.join(&v.name);
                    volumes::write_payload(&dir, &payload)
                        .map(|_| dir)
                        .map_err(|e| e.to_string())
                }
                Ok(VolumePlan::EmptyDir) => {
                    let dir = base.join(&v.name);
                    std::fs::create_dir_all(&dir)
                        .map(|_| dir)
                        .map_err(|e| e.to_string())
                }
                Ok(VolumePlan::HostPath { path, create }) => {
                    if create && !path.exists() {
                        std::fs::create_dir_all(&path)
                            .map(|_| path)
                            .map_err(|e| e.to_string())
                    } else if path.exists() {
                        Ok(path)
                    } else {
                        Err(format!("hostPath {} does not exist", path.display()))
                    }
                }
                Ok(VolumePlan::Claim { path }) => std::fs::create_dir_all(&path)
                    .map(|_| path)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(dir) => {
                    self.volume_dirs.insert(v.name.clone(), dir);
                }
                Err(e) => {
                    // Once set up, a volume keeps its last content (as with kubelet).
                    if !self.volume_dirs.contains_key(&v.name) {
                        problem = Some(e);
                    } else {
                        tracing::debug!(pod = %self.key(), volume = %v.name, error = %e, "volume refresh failed");
                    }
                }
            }
        }
        self.volumes_ready = problem.is_none();
        if let Some(p) = problem {
            for c in self
                .ctrs
                .iter_mut()
                .filter(|c| c.proc.is_none() && c.last_termination.is_none())
            {
                c.waiting(
                    "ContainerCreating",
                    format!("MountVolume.SetUp failed: {p}"),
                );
            }
        }
    }

    async fn reconcile(&mut self) {
        self.ensure_ip().await;
        if self.ip.is_none() {
            return;
        }
        self.sync_volumes().await;
        let phase = status::phase(&self.view());
        if !self.volumes_ready || phase == "Succeeded" || phase == "Failed" {
            self.publish_record(self.pod_ready());
            return;
        }
        let now = Instant::now();
        // Init containers run one at a time, in order, before any app container.
        let pending_init = self
            .ctrs
            .iter()
            .position(|c| c.init && !matches!(&c.state, State::Terminated(t) if t.exit_code == 0));
        let to_start: Vec<usize> = match pending_init {
            Some(i) => {
                for c in self.ctrs.iter_mut().filter(|c| !c.init) {
                    if c.proc.is_none() {
                        c.state = State::Waiting {
                            reason: "PodInitializing".into(),
                            message: None,
                        };
                    }
                }
                vec![i]
            }
            None => (0..self.ctrs.len())
                .filter(|&i| !self.ctrs[i].init)
                .collect(),
        };
        for i in to_start {
            let c = &self.ctrs[i];
            let due = c.next_start.is_none_or(|t| t <= now);
            if c.proc.is_none() && matches!(c.state, State::Waiting { .. }) && due {
                self.start_container(i).await;
            }
        }
        let ready = self.pod_ready();
        let was = self
            .shared
            .net
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.uid)
            .map(|r| r.ready);
        self.publish_record(ready);
        if was != Some(ready) {
            self.shared.hosts_sync().await;
        }
    }

    fn retry_later(&mut self, i: usize, reason: &str, message: String) {
        let config = &self.shared.config;
        let c = &mut self.ctrs[i];
        let delay = backoff(
            c.crashes.max(1),
            config.restart_backoff,
            config.max_restart_backoff,
        );
        c.crashes += 1;
        c.next_start = Some(Instant::now() + delay);
        tracing::warn!(pod = %pod_key(&self.pod), container = %c.spec.name, reason, %message, "cannot start container");
        c.waiting(reason, message);
    }

    async fn start_container(&mut self, i: usize) {
        let image = self.ctrs[i].spec.image.clone().unwrap_or_default();
        let program = match self.shared.config.programs.resolve(&image) {
            Ok(p) => p,
            Err(e) => return self.retry_later(i, "ErrImagePull", e.to_string()),
        };
        let facts = self.facts();
        let container = self.ctrs[i].spec.clone();
        let env = match spec::resolve_env(&self.pod, &container, &facts, &self.shared.stores) {
            Ok(e) => e,
            Err(e) => return self.retry_later(i, "CreateContainerConfigError", e.to_string()),
        };
        let mounts = match volumes::mount_plan(&self.pod, &container, &self.volume_dirs, &env) {
            Ok(m) => m,
            Err(e) => return self.retry_later(i, "CreateContainerConfigError", e.to_string()),
        };
        let args = spec::program_args(&container, &env);
        let hostname: String = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.pod.metadata.name.clone().unwrap_or_default())
            .chars()
            .take(63)
            .collect();
        let mut full_env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("HOSTNAME".into(), hostname.clone()),
        ];
        full_env.extend(program.env.iter().cloned());
        for (k, v) in env.vars() {
            match full_env.iter_mut().find(|(n, _)| n == k) {
                Some(slot) => slot.1 = v.clone(),
                None => full_env.push((k.clone(), v.clone())),
            }
        }
        let restarted = self.ctrs[i].instance != 0 || self.ctrs[i].last_termination.is_some();
        let restart_count = self.ctrs[i].restart_count + i32::from(restarted);
        let instance = self.shared.next_instance.fetch_add(1, Ordering::Relaxed) + 1;
        let workdir = container
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.pod_dir().join("cwd").join(&container.name));
        let launch = LaunchSpec {
            program: program.path.clone(),
            args,
            env: full_env.clone(),
            mounts,
            hostname,
            workdir,
            log: self.log_path(&self.ctrs[i].spec.name, restart_count),
        };
        let started = match launch::spawn(&self.shared.tools, &launch).await {
            Ok(s) => s,
            Err(e) => return self.retry_later(i, "RunContainerError", e.to_string()),
        };
        let pid = started.pid;
        self.shared
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance, pid);
        let (exit_tx, exit_rx) = watch::channel(None);
        let events = self.events_tx.clone();
        let mut child = started.child;
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => ExitInfo::from_status(status),
                Err(_) => ExitInfo {
                    code: 255,
                    signal: None,
                },
            };
            let _ = exit_tx.send(Some(exit));
            let _ = events.send(Event::Exited { instance, exit });
        });
        let target = Target {
            pod_ip: self.ip.unwrap_or(Ipv4Addr::LOCALHOST),
            pid,
            env: full_env,
            ports: container.ports.clone().unwrap_or_default(),
        };
        let has_probes = container.startup_probe.is_some()
            || container.readiness_probe.is_some()
            || container.liveness_probe.is_some();
        let probes = has_probes.then(|| {
            tokio::spawn(probe_loop(
                self.shared.clone(),
                container.startup_probe.clone(),
                container.readiness_probe.clone(),
                container.liveness_probe.clone(),
                target,
                instance,
                self.events_tx.clone(),
            ))
        });
        let now = Timestamp::now();
        let c = &mut self.ctrs[i];
        tracing::info!(pod = %pod_key(&self.pod), container = %c.spec.name, pid, program = %program.path.display(), "container started");
        c.instance = instance;
        c.restart_count = restart_count;
        c.proc = Some(Proc {
            pid,
            _watchdog: started.watchdog,
            exit_rx,
            probes,
            started_at: now,
            started: Instant::now(),
        });
        c.next_start = None;
        c.state = State::Running { started_at: now };
        c.started = container.startup_probe.is_none();
        c.ready = c.started && container.readiness_probe.is_none() && !c.init;
        c.image_id = format!("node-agent://{}", program.path.display());
        c.container_id = Some(format!(
            "node-agent://{}/{}/{}",
            self.uid, c.spec.name, instance
        ));
        if self.node_frozen {
            let _ = launch::signal_group(pid, Signal::SIGSTOP);
        }
    }

    fn view(&self) -> PodView {
        PodView {
            init_containers: self.ctrs.iter().filter(|c| c.init).map(Ctr::view).collect(),
            containers: self
                .ctrs
                .iter()
                .filter(|c| !c.init)
                .map(Ctr::view)
                .collect(),
            restart_policy: self.policy(),
            pod_ip: self.ip,
            host_ip: self.host_ip,
            start_time: self.start_time,
            readiness_gates: self
                .pod
                .spec
                .iter()
                .flat_map(|s| s.readiness_gates.iter().flatten())
                .map(|g| g.condition_type.clone())
                .collect(),
        }
    }

    async fn write_status(&mut self) {
        // Our own conditions from what we last wrote (the watch may lag), others' from the pod.
        let mut previous = self.pod.status.clone().unwrap_or_default();
        if let Some(last) = &self.last_written {
            let own: Vec<_> = last.conditions.iter().flatten().cloned().collect();
            let mut conds: Vec<_> = previous
                .conditions
                .iter()
                .flatten()
                .filter(|c| !own.iter().any(|o| o.type_ == c.type_))
                .cloned()
                .collect();
            conds.extend(own);
            previous.conditions = Some(conds);
        }
        let status = status::compute_status(&self.view(), Some(&previous), Timestamp::now());
        if self.last_written.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.last_written = Some(status),
            Err(e) => tracing::warn!(pod = %self.key(), error = %e, "writing pod status failed"),
        }
    }

    /// What kube-controller-manager's node lifecycle controller does to the pods of a node
    /// whose heartbeats stopped (`MarkPodsNotReady`), done at once instead of after its
    /// `node-monitor-grace-period`: the pod's Ready condition becomes False. After this the
    /// agent writes nothing for the pod until the node is healthy again.
    async fn mark_not_ready(&mut self) {
        let Some(mut status) = self.last_written.clone() else {
            return;
        };
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
        for c in status.conditions.iter_mut().flatten() {
            if c.type_ == "Ready" && c.status != "False" {
                c.status = "False".into();
                c.reason = Some("NodeNotReady".into());
                c.message = Some(format!(
                    "node {} is not ready (node-agent fault)",
                    self.node
                ));
                c.last_transition_time = Some(now.clone());
            }
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = serde_json::json!({ "status": { "conditions": status.conditions } });
        match api
            .patch_status(
                self.pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.last_written = None,
            Err(e) => {
                tracing::warn!(pod = %self.key(), error = %e, "marking the pod not ready failed")
            }
        }
    }

    /// Stops every running container: `SIGTERM`, up to `grace`, then `SIGKILL`.
    async fn stop_all(&mut self, grace: Duration) {
        let mut exits = Vec::new();
        for c in &self.ctrs {
            if let Some(p) = &c.proc {
                let _ = launch::signal_group(p.pid, Signal::SIGTERM);
                exits.push((p.pid, p.exit_rx.clone()));
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        for (pid, mut rx) in exits {
            if tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some))
                .await
                .is_err()
            {
                let _ = launch::signal_group(pid, Signal::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
                    .await;
            }
        }
        let now = Timestamp::now();
        for c in &mut self.ctrs {
            if let Some(p) = c.proc.take() {
                if let Some(t) = &p.probes {
                    t.abort();
                }
                self.shared
                    .procs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&c.instance);
                let exit = (*p.exit_rx.borrow()).unwrap_or(ExitInfo {
                    code: 137,
                    signal: Some(9),
                });
                c.ready = false;
                c.state = State::Terminated(Termination {
                    exit_code: exit.code,
                    signal: exit.signal,
                    reason: Termination::reason_for(exit.code).into(),
                    message: None,
                    started_at: Some(p.started_at),
                    finished_at: now,
                });
            }
        }
    }

    async fn terminate_and_delete(&mut self) {
        let grace = self.grace();
        tracing::info!(pod = %self.key(), ?grace, "pod deleted, stopping containers");
        // A terminating pod is not ready: it leaves the Services that publish only ready pods.
        self.publish_record(false);
        self.shared.hosts_sync().await;
        self.stop_all(grace).await;
        // Its names are gone before the object is (as its endpoints go with it).
        self.shared
            .net
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.uid);
        self.shared.hosts_sync().await;
        self.write_status().await;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api
            .delete(self.pod.metadata.name.as_deref().unwrap_or_default(), &dp)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %self.key(), error = %e, "deleting pod failed"),
        }
    }

    async fn cleanup(&mut self) {
        if let Some(ip) = self.ip.take() {
            self.shared
                .net
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.uid);
            if ip != self.host_ip {
                self.shared
                    .block
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .release(ip);
            }
            if !*self.shutdown_rx.borrow() {
                self.shared.hosts_sync().await;
            }
        }
        let dir = self.pod_dir();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }
}

/// `SIGTERM` now, `SIGKILL` after `grace` unless the process exited.
fn kill_gracefully(pid: i32, mut exit_rx: watch::Receiver<Option<ExitInfo>>, grace: Duration) {
    let _ = launch::signal_group(pid, Signal::SIGTERM);
    tokio::spawn(async move {
        if tokio::time::timeout(grace, exit_rx.wait_for(Option::is_some))
            .await
            .is_err()
        {
            let _ = launch::signal_group(pid, Signal::SIGKILL);
        }
    });
}

async fn probe_loop(
    shared: Arc<Shared>,
    startup: Option<Probe>,
    readiness: Option<Probe>,
    liveness: Option<Probe>,
    target: Target,
    instance: u64,
    events: mpsc::UnboundedSender<Event>,
) {
    let tools = shared.tools.clone();
    drop(shared);
    let send = |kind, ok| {
        let _ = events.send(Event::Probe { instance, kind, ok });
    };
    if let Some(p) = &startup {
        let timing = Timing::of(p);
        tokio::time::sleep(timing.initial_delay).await;
        let mut verdict = Verdict::new(None);
        loop {
            let ok = probe::run_once(p, &target, &tools, timing.timeout)
                .await
                .is_ok();
            match verdict.observe(ok, &timing) {
                Some(true) => {
                    send(ProbeKind::Startup, true);
                    break;
                }
                Some(false) => {
                    send(ProbeKind::Startup, false);
                    return;
                }
                None => {}
            }
            tokio::time::sleep(timing.period).await;
        }
    }
    let ready_loop = async {
        let Some(p) = &readiness else { return };
        let timing = Timing::of(p);
        tokio::time::sleep(timing.initial_delay).await;
        let mut verdict = Verdict::new(Some(false));
        loop {
            let result = probe::run_once(p, &target, &tools, timing.timeout).await;
            if let Err(msg) = &result {
                tracing::debug!(instance, %msg, "readiness probe failed");
            }
            if let Some(v) = verdict.observe(result.is_ok(), &timing) {
                send(ProbeKind::Readiness, v);
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    let live_loop = async {
        let Some(p) = &liveness else { return };
        let timing = Timing::of(p);
        tokio::time::sleep(timing.initial_delay).await;
        let mut verdict = Verdict::new(Some(true));
        loop {
            let ok = probe::run_once(p, &target, &tools, timing.timeout)
                .await
                .is_ok();
            if verdict.observe(ok, &timing) == Some(false) {
                send(ProbeKind::Liveness, false);
                return;
            }
            tokio::time::sleep(timing.period).await;
        }
    };
    tokio::join!(ready_loop, live_loop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(backoff(0, i, m), Duration::ZERO);
        assert_eq!(backoff(1, i, m), Duration::from_secs(1));
        assert_eq!(backoff(2, i, m), Duration::from_secs(2));
        assert_eq!(backoff(4, i, m), Duration::from_secs(8));
        assert_eq!(backoff(5, i, m), Duration::from_secs(10));
        assert_eq!(backoff(60, i, m), Duration::from_secs(10));
    }
}

//! The running store: startup (identity, bootstrap, registration), the tasks that drive the
//! [`Node`] (raft ticks, replication, elections, PD heartbeats), and the two HTTP servers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use pdclient::proto::metapb;
use pdclient::proto::pdpb::{self, ErrorType};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::{Config, REGION_SIZE};
use crate::msg::{
    AppendRequest, AppendResponse, StoreFile, TransferRequest, TransferResponse, VoteRequest,
    VoteResponse,
};
use crate::pd::{Pd, PdError, check};
use crate::raft::{Command, Node, TransferPlan, VoteKind, initial_split_keys};
use crate::state::{DataDir, StateError};
use crate::transport::{self, Client, read_body, respond};

/// How long startup keeps retrying PD before giving up (TiKV retries IsBootstrapped 60 × 3 s).
const STARTUP_DEADLINE: Duration = Duration::from_secs(180);

/// Why the store stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// PD failed during startup.
    #[error(transparent)]
    Pd(#[from] PdError),
    /// The data directory belongs to another PD cluster.
    #[error("data directory belongs to cluster {local}, but PD runs cluster {pd}")]
    ClusterMismatch {
        /// Cluster ID in the data directory.
        local: u64,
        /// Cluster ID reported by PD.
        pd: u64,
    },
    /// PD reports this store as a tombstone: it was removed and cannot come back.
    #[error(
        "store {0} is a tombstone in PD (it was removed); a new store needs an empty data directory"
    )]
    Tombstone(u64),
    /// Something that must not fail did.
    #[error("{0}")]
    Fatal(String),
}

/// Why the tasks are stopping.
#[derive(Debug, Clone)]
enum Exit {
    Signal,
    Error(Arc<StoreError>),
}

#[derive(Default)]
struct SenderState {
    in_flight: bool,
    again: bool,
}

/// State shared by the store's tasks.
struct Shared {
    cfg: Config,
    node: Mutex<Node>,
    data: DataDir,
    pd: Pd,
    peers_http: Client,
    /// Resolved addresses of other stores and when they were looked up.
    addrs: Mutex<HashMap<u64, (String, Instant)>>,
    senders: Mutex<HashMap<u64, SenderState>>,
    hb_tx: Mutex<Option<mpsc::Sender<pdpb::RegionHeartbeatRequest>>>,
    report: Notify,
    exit: watch::Sender<Option<Exit>>,
    stop: watch::Sender<bool>,
    splitting: AtomicBool,
    start_unix: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock already aborts the task that held it; the data is still
    // consistent enough for a simulator, and poisoning would turn one bug into a stuck store.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a store until SIGTERM/SIGINT (Ok) or a fatal error.
pub async fn run(cfg: Config) -> Result<(), StoreError> {
    let data = DataDir::open(&cfg.data_dir)?;
    let file = data.load()?;
    // Bind first, as TiKV does: an address in use is a startup error, not a later surprise.
    let raft_listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| StoreError::Bind {
            addr: cfg.addr,
            source,
        })?;
    let status_listener =
        TcpListener::bind(cfg.status_addr)
            .await
            .map_err(|source| StoreError::Bind {
                addr: cfg.status_addr,
                source,
            })?;

    let (exit_tx, mut exit_rx) = watch::channel(None);
    spawn_signal_handler(exit_tx.clone());

    let pd = Pd::new(cfg.pd_endpoints.clone());
    let start_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let startup = startup(&cfg, &pd, &data, file, start_unix);
    let node = tokio::select! {
        r = startup => r?,
        _ = exit_rx.changed() => return Ok(()),
    };
    let store_id = node.store_id();
    tracing::info!(
        store_id,
        cluster_id = node.cluster_id(),
        regions = node.region_count(),
        "store is up"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        peers_http: Client::new(cfg.timing.raft_rpc_timeout()),
        cfg,
        node: Mutex::new(node),
        data,
        pd,
        addrs: Mutex::new(HashMap::new()),
        senders: Mutex::new(HashMap::new()),
        hb_tx: Mutex::new(None),
        report: Notify::new(),
        exit: exit_tx,
        stop: stop_tx,
        splitting: AtomicBool::new(false),
        start_unix,
    });

    let s = shared.clone();
    tokio::spawn(transport::serve(
        raft_listener,
        move |req| raft_handler(s.clone(), req),
        stop_rx.clone(),
    ));
    let s = shared.clone();
    tokio::spawn(transport::serve(
        status_listener,
        move |req| status_handler(s.clone(), req),
        stop_rx.clone(),
    ));
    tokio::spawn(heartbeat_stream_loop(shared.clone(), stop_rx.clone()));
    tokio::spawn(report_loop(shared.clone(), stop_rx.clone()));
    tokio::spawn(raft_tick_loop(shared.clone(), stop_rx.clone()));
    tokio::spawn(store_heartbeat_loop(shared.clone(), stop_rx.clone()));
    tokio::spawn(stale_check_loop(shared.clone(), stop_rx.clone()));

    while exit_rx.borrow_and_update().is_none() {
        if exit_rx.changed().await.is_err() {
            break;
        }
    }
    // Take the reason out of the channel so that we own the only reference to the error.
    let exit = shared.exit.send_replace(None).unwrap_or(Exit::Signal);
    let _ = shared.stop.send(true);
    // Persist whatever the last handled message changed.
    {
        let mut node = lock(&shared.node);
        if node.take_dirty()
            && let Err(e) = shared.data.save(&node.to_file())
        {
            tracing::error!(error = %e, "cannot save state on shutdown");
        }
    }
    match exit {
        Exit::Signal => {
            tracing::info!(store_id, "stopped");
            Ok(())
        }
        Exit::Error(e) => {
            Err(Arc::try_unwrap(e).unwrap_or_else(|e| StoreError::Fatal(e.to_string())))
        }
    }
}

fn spawn_signal_handler(exit: watch::Sender<Option<Exit>>) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot install the SIGTERM handler");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, stopping"),
        }
        exit.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(Exit::Signal);
                true
            } else {
                false
            }
        });
    });
}

fn store_meta(cfg: &Config, store_id: u64, start_unix: u64) -> metapb::Store {
    let deploy_path = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.display().to_string()))
        .unwrap_or_default();
    metapb::Store {
        id: store_id,
        address: cfg.advertise_addr.clone(),
        labels: cfg
            .labels
            .iter()
            .map(|(k, v)| metapb::StoreLabel {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        version: cfg.version.clone(),
        status_address: cfg.advertise_status_addr.clone(),
        git_hash: format!("tikv-sim-{}", env!("CARGO_PKG_VERSION")),
        start_timestamp: start_unix as i64,
        deploy_path,
        ..Default::default()
    }
}

/// Identity, bootstrap and registration, in TiKV's order.
async fn startup(
    cfg: &Config,
    pd: &Pd,
    data: &DataDir,
    file: Option<StoreFile>,
    start_unix: u64,
) -> Result<Node, StoreError> {
    // GetMembers gives the cluster ID; keep trying while PD starts.
    let started = tokio::time::Instant::now();
    loop {
        match pd.client().await {
            Ok(_) => break,
            Err(e) if started.elapsed() < STARTUP_DEADLINE => {
                tracing::info!(error = %e, "waiting for PD");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let cluster_id = pd.cluster_id();
    if let Some(f) = &file
        && f.cluster_id != 0
        && f.cluster_id != cluster_id
    {
        return Err(StoreError::ClusterMismatch {
            local: f.cluster_id,
            pd: cluster_id,
        });
    }

    let store_id = match file.as_ref().map(|f| f.store_id).filter(|&id| id != 0) {
        Some(id) => id,
        None => {
            let id = alloc_id(pd).await?;
            // Persist the identity before PD hears of it, so a crash cannot make a second store.
            data.save(&StoreFile {
                cluster_id,
                store_id: id,
                ..Default::default()
            })?;
            tracing::info!(store_id = id, "allocated store id");
            id
        }
    };
    let now = Instant::now();
    let mut node = Node::new(cluster_id, store_id, cfg.timing, file.as_ref(), now);
    let meta = store_meta(cfg, store_id, start_unix);

    if node.prepared_bootstrap_region().is_some() {
        // A bootstrap attempt ended without a known outcome (crash or error): settle it.
        settle_bootstrap(pd, data, &mut node, &meta).await?;
    } else if !is_bootstrapped(pd).await? && node.region_count() == 0 {
        prepare_bootstrap(pd, data, &mut node, &meta).await?;
        settle_bootstrap(pd, data, &mut node, &meta).await?;
    }

    let put = pd
        .call("PutStore", STARTUP_DEADLINE, |mut c, h| {
            let store = meta.clone();
            async move {
                c.put_store(pdpb::PutStoreRequest {
                    header: Some(h),
                    store: Some(store),
                })
                .await
            }
        })
        .await?;
    match check("PutStore", put.header.as_ref()) {
        Err(e) if e.kind() == Some(ErrorType::StoreTombstone) => {
            return Err(StoreError::Tombstone(store_id));
        }
        other => other?,
    }
    tracing::info!(store_id, address = %meta.address, version = %meta.version, "registered with PD");
    Ok(node)
}

async fn alloc_id(pd: &Pd) -> Result<u64, PdError> {
    let resp = pd
        .call("AllocID", STARTUP_DEADLINE, |mut c, h| async move {
            c.alloc_id(pdpb::AllocIdRequest {
                header: Some(h),
                count: 0,
            })
            .await
        })
        .await?;
    check("AllocID", resp.header.as_ref())?;
    Ok(resp.id)
}

async fn is_bootstrapped(pd: &Pd) -> Result<bool, PdError> {
    let resp = pd
        .call("IsBootstrapped", STARTUP_DEADLINE, |mut c, h| async move {
            c.is_bootstrapped(pdpb::IsBootstrappedRequest { header: Some(h) })
                .await
        })
        .await?;
    check("IsBootstrapped", resp.header.as_ref())?;
    Ok(resp.bootstrapped)
}

/// Creates the cluster's first region (one peer on this store, all keys) and persists it as
/// prepared before PD hears of it, as TiKV does.
async fn prepare_bootstrap(
    pd: &Pd,
    data: &DataDir,
    node: &mut Node,
    meta: &metapb::Store,
) -> Result<(), StoreError> {
    let region_id = alloc_id(pd).await?;
    let peer_id = alloc_id(pd).await?;
    let region = metapb::Region {
        id: region_id,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![metapb::Peer {
            id: peer_id,
            store_id: meta.id,
            ..Default::default()
        }],
    };
    node.add_bootstrap_region(region, peer_id, Instant::now());
    node.take_dirty();
    data.save(&node.to_file())?;
    Ok(())
}

/// Offers the prepared region to PD until PD is bootstrapped, by us or by another store (PD
/// also fails concurrent Bootstrap calls with an etcd transaction conflict), then keeps the
/// region if PD's first region is ours and drops it otherwise.
async fn settle_bootstrap(
    pd: &Pd,
    data: &DataDir,
    node: &mut Node,
    meta: &metapb::Store,
) -> Result<(), StoreError> {
    let region = node
        .prepared_bootstrap_region()
        .ok_or(StoreError::Fatal("no prepared region".into()))?;
    let started = tokio::time::Instant::now();
    while !is_bootstrapped(pd).await? {
        let resp = pd
            .call("Bootstrap", STARTUP_DEADLINE, |mut c, h| {
                let (store, region) = (meta.clone(), region.clone());
                async move {
                    c.bootstrap(pdpb::BootstrapRequest {
                        header: Some(h),
                        store: Some(store),
                        region: Some(region),
                    })
                    .await
                }
            })
            .await?;
        match check("Bootstrap", resp.header.as_ref()) {
            Ok(()) => {
                tracing::info!(region_id = region.id, "bootstrapped the cluster");
                node.confirm_bootstrap();
                node.take_dirty();
                data.save(&node.to_file())?;
                return Ok(());
            }
            Err(e) if e.kind() == Some(ErrorType::AlreadyBootstrapped) => break,
            Err(e) if started.elapsed() < STARTUP_DEADLINE => {
                tracing::info!(error = %e, "Bootstrap failed; checking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Bootstrapped: by us (before a crash or a lost answer) or by another store.
    let first = pd
        .call("GetRegion", STARTUP_DEADLINE, |mut c, h| async move {
            c.get_region(pdpb::GetRegionRequest {
                header: Some(h),
                region_key: Vec::new(),
                need_buckets: false,
            })
            .await
        })
        .await?;
    check("GetRegion", first.header.as_ref())?;
    if first.region.as_ref().map(|r| r.id) == Some(region.id) {
        tracing::info!(
            region_id = region.id,
            "the cluster was bootstrapped with our region"
        );
        node.confirm_bootstrap();
    } else {
        tracing::info!("another store bootstrapped the cluster");
        node.abandon_bootstrap();
    }
    node.take_dirty();
    data.save(&node.to_file())?;
    Ok(())
}

impl Shared {
    /// Runs `f` on the node and saves the state if it changed, before anyone hears of it.
    fn with_node<R>(&self, f: impl FnOnce(&mut Node) -> R) -> R {
        let mut node = lock(&self.node);
        let r = f(&mut node);
        if node.take_dirty()
            && let Err(e) = self.data.save(&node.to_file())
        {
            self.fail(StoreError::Fatal(format!("cannot save state: {e}")));
        }
        r
    }

    fn fail(&self, e: StoreError) {
        tracing::error!(error = %e, "stopping");
        self.exit.send_if_modified(|x| {
            if x.is_none() {
                *x = Some(Exit::Error(Arc::new(e)));
                true
            } else {
                false
            }
        });
    }

    /// The raft address of another store, asking PD if we do not know it (as TiKV's resolver).
    async fn resolve(&self, store_id: u64) -> Option<String> {
        if let Some((addr, _)) = lock(&self.addrs).get(&store_id) {
            return Some(addr.clone());
        }
        let resp = self
            .pd
            .call("GetStore", Duration::from_secs(2), |mut c, h| async move {
                c.get_store(pdpb::GetStoreRequest {
                    header: Some(h),
                    store_id,
                })
                .await
            })
            .await;
        let store = match resp {
            Ok(r) if check("GetStore", r.header.as_ref()).is_ok() => r.store?,
            Ok(r) => {
                tracing::debug!(store_id, header = ?r.header, "GetStore failed");
                return None;
            }
            Err(e) => {
                tracing::debug!(store_id, error = %e, "GetStore failed");
                return None;
            }
        };
        let addr = if store.peer_address.is_empty() {
            store.address
        } else {
            store.peer_address
        };
        lock(&self.addrs).insert(store_id, (addr.clone(), Instant::now()));
        Some(addr)
    }

    /// Forgets an address that failed, at most every few seconds (a restarted store may have
    /// moved; a dead one has not, and PD need not hear about it on every heartbeat).
    fn address_failed(&self, store_id: u64) {
        let mut addrs = lock(&self.addrs);
        if addrs
            .get(&store_id)
            .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(5))
        {
            addrs.remove(&store_id);
        }
    }

    async fn post<Req: Message, Resp: Message + Default>(
        &self,
        store_id: u64,
        path: &str,
        req: &Req,
    ) -> Option<Resp> {
        let addr = self.resolve(store_id).await?;
        match self.peers_http.post(&addr, path, req.encode_to_vec()).await {
            Ok(bytes) => match Resp::decode(bytes) {
                Ok(resp) => Some(resp),
                Err(e) => {
                    tracing::warn!(store_id, path, error = %e, "undecodable answer from store");
                    None
                }
            },
            Err(e) => {
                tracing::debug!(store_id, %addr, path, error = %e, "store did not answer");
                self.address_failed(store_id);
                None
            }
        }
    }
}

// ---- replication -----------------------------------------------------------------------------

/// Sends appends to every store that should hear from us. A destination with a request in
/// flight gets another round right after it (so one frozen store delays nobody else).
fn kick_replicate(shared: &Arc<Shared>) {
    let targets = lock(&shared.node).append_targets();
    for to_store in targets {
        {
            let mut senders = lock(&shared.senders);
            let s = senders.entry(to_store).or_default();
            if s.in_flight {
                s.again = true;
                continue;
            }
            s.in_flight = true;
        }
        tokio::spawn(send_appends(shared.clone(), to_store));
    }
}

async fn send_appends(shared: Arc<Shared>, to_store: u64) {
    loop {
        // Built at send time, so it carries the newest state.
        let req = lock(&shared.node).build_append(to_store);
        if let Some(req) = req
            && let Some(resp) = shared
                .post::<AppendRequest, AppendResponse>(to_store, "/raft/append", &req)
                .await
        {
            shared.with_node(|n| n.on_append_response(to_store, &resp, Instant::now()));
            // An acknowledgement may have committed a change PD should hear about.
            shared.report.notify_one();
        }
        let mut senders = lock(&shared.senders);
        let s = senders.entry(to_store).or_default();
        if s.again {
            s.again = false;
        } else {
            s.in_flight = false;
            return;
        }
    }
}

async fn raft_tick_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let timing = shared.cfg.timing;
    let mut tick = tokio::time::interval(timing.base_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat = Instant::now() - timing.raft_heartbeat;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        if now.duration_since(last_heartbeat) >= timing.raft_heartbeat {
            last_heartbeat = now;
            kick_replicate(&shared);
        }
        let (due, leaders_before, leaders_after) = shared.with_node(|n| {
            let before = n.leader_count();
            let due = n.due_campaigns(now);
            (due, before, n.leader_count())
        });
        if leaders_after != leaders_before {
            kick_replicate(&shared);
            shared.report.notify_one();
        }
        if !due.is_empty() {
            tokio::spawn(campaign(shared.clone(), due));
        }
        // Normally started by the transfer request itself; this catches one that arrived while
        // the replica was busy campaigning.
        kick_forced_campaigns(&shared);
    }
}

/// Pre-vote, then vote, for `regions` whose leader went silent.
async fn campaign(shared: Arc<Shared>, regions: Vec<u64>) {
    tracing::debug!(?regions, "campaigning");
    let reqs = lock(&shared.node).vote_requests(&regions, VoteKind::PreVote);
    let responses = collect_votes(&shared, reqs).await;
    let candidates = shared.with_node(|n| n.on_pre_votes(&regions, &responses));
    if !candidates.is_empty() {
        let reqs = lock(&shared.node).vote_requests(&candidates, VoteKind::Vote);
        let responses = collect_votes(&shared, reqs).await;
        shared.with_node(|n| n.on_votes(&candidates, &responses, Instant::now()));
    }
    shared.with_node(|n| n.end_campaigns(&regions, Instant::now()));
    kick_replicate(&shared);
    shared.report.notify_one();
}

/// Starts the forced campaigns of replicas a leader asked to take over.
fn kick_forced_campaigns(shared: &Arc<Shared>) {
    let regions = shared.with_node(|n| n.start_forced_campaigns());
    if regions.is_empty() {
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        tracing::debug!(?regions, "campaigning to take over leadership");
        let reqs = lock(&shared.node).vote_requests(&regions, VoteKind::Forced);
        let responses = collect_votes(&shared, reqs).await;
        shared.with_node(|n| {
            n.on_votes(&regions, &responses, Instant::now());
            n.end_campaigns(&regions, Instant::now());
        });
        kick_replicate(&shared);
        shared.report.notify_one();
    });
}

async fn collect_votes(shared: &Arc<Shared>, reqs: Vec<VoteRequest>) -> Vec<(u64, VoteResponse)> {
    let calls = reqs.into_iter().map(|req| {
        let shared = shared.clone();
        async move {
            let resp = shared
                .post::<VoteRequest, VoteResponse>(req.to_store, "/raft/vote", &req)
                .await;
            resp.map(|r| (req.to_store, r))
        }
    });
    futures::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn transfer(shared: Arc<Shared>, plan: TransferPlan) {
    let resp = shared
        .post::<TransferRequest, TransferResponse>(plan.to_store, "/raft/transfer", &plan.request)
        .await;
    shared.with_node(|n| n.on_transfer_result(&plan, resp.as_ref(), Instant::now()));
}

async fn stale_check_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = shared
        .cfg
        .timing
        .election_timeout
        .max(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let candidates = lock(&shared.node).stale_check_candidates(Instant::now());
        for region_id in candidates {
            let resp = shared
                .pd
                .call(
                    "GetRegionByID",
                    Duration::from_secs(5),
                    |mut c, h| async move {
                        c.get_region_by_id(pdpb::GetRegionByIdRequest {
                            header: Some(h),
                            region_id,
                            need_buckets: false,
                        })
                        .await
                    },
                )
                .await;
            match resp {
                Ok(r) => {
                    if let Some(region) = r.region {
                        shared.with_node(|n| n.on_pd_region(region_id, &region));
                    }
                }
                Err(e) => tracing::debug!(region_id, error = %e, "stale check failed"),
            }
        }
    }
}

// ---- PD ------------------------------------------------------------------------------------

/// Keeps one region heartbeat stream to the PD leader open (PD sends its commands for this
/// store's regions on it) and reconnects when it breaks or the leader moves.
async fn heartbeat_stream_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let mut client = match shared.pd.client().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "region heartbeat stream: no PD leader");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        let (tx, rx) = mpsc::channel::<pdpb::RegionHeartbeatRequest>(4096);
        *lock(&shared.hb_tx) = Some(tx.clone());
        // PD binds a stream to a store when it receives a heartbeat on it: send them all now.
        lock(&shared.node).force_report();
        shared.report.notify_one();
        let outbound =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let session = async {
            let mut inbound = client.region_heartbeat(outbound).await?.into_inner();
            while let Some(msg) = inbound.message().await? {
                on_pd_message(&shared, msg);
            }
            Ok::<(), tonic::Status>(())
        };
        let generation = shared.pd.generation();
        let leader_moved = async {
            // Another call found the leader gone: follow it instead of waiting for this stream
            // to fail on its next heartbeat.
            while shared.pd.generation() == generation {
                tokio::time::sleep(shared.cfg.timing.base_tick).await;
            }
        };
        tokio::select! {
            r = session => match r {
                Ok(()) => tracing::info!("PD closed the region heartbeat stream"),
                Err(status) => tracing::info!(%status, "region heartbeat stream broke"),
            },
            _ = leader_moved => tracing::info!("reconnecting the region heartbeat stream to the PD leader"),
            _ = tx.closed() => {}
            _ = stop.changed() => return,
        }
        *lock(&shared.hb_tx) = None;
        shared.pd.reset().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.changed() => return,
        }
    }
}

fn on_pd_message(shared: &Arc<Shared>, msg: pdpb::RegionHeartbeatResponse) {
    if let Err(e) = check("RegionHeartbeat", msg.header.as_ref()) {
        // e.g. PD rejecting a stale heartbeat; the next state change or period reports again.
        tracing::debug!(error = %e, "PD answered a region heartbeat with an error");
        return;
    }
    match shared.with_node(|n| n.on_pd_command(&msg, Instant::now())) {
        Command::None => {}
        Command::Replicate => {
            kick_replicate(shared);
            shared.report.notify_one();
        }
        Command::Transfer(plan) => {
            tokio::spawn(transfer(shared.clone(), plan));
        }
        Command::Split { region, keys } => {
            tokio::spawn(split(shared.clone(), region, keys));
        }
    }
}

/// Sends region heartbeats when something changed (and periodically), and splits the bootstrap
/// region once PD knows it.
async fn report_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut last_split_attempt: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shared.report.notified() => {}
            _ = tokio::time::sleep(shared.cfg.timing.base_tick) => {}
            _ = stop.changed() => return,
        }
        let tx = lock(&shared.hb_tx).clone();
        let Some(tx) = tx else { continue };
        let heartbeats = lock(&shared.node).region_heartbeats(Instant::now());
        for hb in heartbeats {
            if tx.try_send(hb).is_err() {
                // The stream is gone or stuck; the reconnect reports everything again.
                break;
            }
        }
        if shared.cfg.initial_regions > 1
            && !shared.splitting.load(Ordering::Relaxed)
            && last_split_attempt.is_none_or(|t| t.elapsed() > Duration::from_secs(1))
            && let Some(region) = lock(&shared.node).split_candidate()
        {
            last_split_attempt = Some(Instant::now());
            shared.splitting.store(true, Ordering::Relaxed);
            tokio::spawn(bootstrap_split(shared.clone(), region));
        }
    }
}

/// Splits the bootstrap region into the initial regions.
async fn bootstrap_split(shared: Arc<Shared>, region: metapb::Region) {
    let keys = initial_split_keys(shared.cfg.initial_regions);
    split(shared.clone(), region, keys).await;
    shared.splitting.store(false, Ordering::Relaxed);
}

/// Splits a region we lead at `keys`, as TiKV's batch split does: IDs from PD, apply, report.
async fn split(shared: Arc<Shared>, region: metapb::Region, keys: Vec<Vec<u8>>) {
    let region_id = region.id;
    let result = async {
        let count = keys.len() as u32;
        let resp = shared
            .pd
            .call("AskBatchSplit", Duration::from_secs(10), |mut c, h| {
                let region = region.clone();
                async move {
                    c.ask_batch_split(pdpb::AskBatchSplitRequest {
                        header: Some(h),
                        region: Some(region),
                        split_count: count,
                    })
                    .await
                }
            })
            .await?;
        check("AskBatchSplit", resp.header.as_ref())?;
        let applied =
            shared.with_node(|n| n.apply_split(&region, &resp.ids, &keys, Instant::now()));
        let regions = match applied {
            Ok(Some(regions)) => regions,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(PdError::GaveUp {
                    call: "split",
                    after: Duration::ZERO,
                    last: e,
                });
            }
        };
        tracing::info!(region_id, count = regions.len(), "split region");
        kick_replicate(&shared);
        shared.report.notify_one();
        let report = shared
            .pd
            .call("ReportBatchSplit", Duration::from_secs(10), |mut c, h| {
                let regions = regions.clone();
                async move {
                    c.report_batch_split(pdpb::ReportBatchSplitRequest {
                        header: Some(h),
                        regions,
                    })
                    .await
                }
            })
            .await?;
        check("ReportBatchSplit", report.header.as_ref())
    }
    .await;
    if let Err(e) = result {
        tracing::info!(region_id, error = %e, "split not done");
    }
}

async fn store_heartbeat_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let interval = shared.cfg.timing.store_heartbeat;
    let mut last_unix = shared.start_unix;
    loop {
        let (store_id, regions) = {
            let n = lock(&shared.node);
            (n.store_id(), n.region_count() as u64)
        };
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let capacity = shared.cfg.capacity;
        let used = (regions * REGION_SIZE).min(capacity);
        let stats = pdpb::StoreStats {
            store_id,
            capacity,
            available: capacity - used,
            used_size: used,
            region_count: regions as u32,
            start_time: shared.start_unix as u32,
            interval: Some(pdpb::TimeInterval {
                start_timestamp: last_unix,
                end_timestamp: now_unix,
            }),
            ..Default::default()
        };
        last_unix = now_unix;
        let resp = shared
            .pd
            .call("StoreHeartbeat", interval, |mut c, h| async move {
                c.store_heartbeat(pdpb::StoreHeartbeatRequest {
                    header: Some(h),
                    stats: Some(stats),
                })
                .await
            })
            .await;
        match resp.map(|r| check("StoreHeartbeat", r.header.as_ref())) {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == Some(ErrorType::StoreTombstone) => {
                shared.fail(StoreError::Tombstone(store_id));
                return;
            }
            Ok(Err(e)) | Err(e) => tracing::warn!(error = %e, "store heartbeat failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

// ---- HTTP handlers -------------------------------------------------------------------------

async fn raft_handler(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "POST only\n");
    }
    let path = req.uri().path().to_string();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return respond(StatusCode::BAD_REQUEST, "text/plain", e),
    };
    let now = Instant::now();
    let result: Result<Vec<u8>, String> = match path.as_str() {
        "/raft/append" => AppendRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                shared.with_node(|n| {
                    n.check_addressee(m.cluster_id, m.to_store)?;
                    Ok(n.handle_append(&m, now).encode_to_vec())
                })
            }),
        "/raft/vote" => VoteRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                shared.with_node(|n| {
                    n.check_addressee(m.cluster_id, m.to_store)?;
                    Ok(n.handle_vote(&m, now).encode_to_vec())
                })
            }),
        "/raft/transfer" => TransferRequest::decode(body)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                let r = shared.with_node(|n| {
                    n.check_addressee(m.cluster_id, m.to_store)?;
                    Ok(n.handle_transfer(&m, now))
                });
                if let Ok(resp) = &r
                    && resp.accepted
                {
                    kick_forced_campaigns(&shared);
                }
                r.map(|resp| resp.encode_to_vec())
            }),
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    match result {
        Ok(bytes) => respond(StatusCode::OK, "application/x-protobuf", bytes),
        Err(e) => respond(StatusCode::BAD_REQUEST, "text/plain", e),
    }
}

async fn status_handler(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match req.uri().path() {
        "/status" => respond(StatusCode::OK, "text/plain", ""),
        "/metrics" => {
            let (store_id, leaders, regions) = {
                let n = lock(&shared.node);
                (
                    n.store_id(),
                    n.leader_count() as u64,
                    n.region_count() as u64,
                )
            };
            let capacity = shared.cfg.capacity;
            let used = (regions * REGION_SIZE).min(capacity);
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics_text(
                    store_id,
                    &shared.cfg.version,
                    leaders,
                    regions,
                    capacity,
                    used,
                    shared.start_unix,
                ),
            )
        }
        "/sim/regions" => {
            let summary = lock(&shared.node).summary();
            match serde_json::to_vec_pretty(&summary) {
                Ok(body) => respond(StatusCode::OK, "application/json", body),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            }
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// The Prometheus text the status server exposes: TiKV's metric names for what the simulator
/// knows.
pub fn metrics_text(
    store_id: u64,
    version: &str,
    leaders: u64,
    regions: u64,
    capacity: u64,
    used: u64,
    start_unix: u64,
) -> String {
    format!(
        "# HELP tikv_raftstore_region_count Number of regions collected in region_collector\n\
         # TYPE tikv_raftstore_region_count gauge\n\
         tikv_raftstore_region_count{{type=\"leader\"}} {leaders}\n\
         tikv_raftstore_region_count{{type=\"region\"}} {regions}\n\
         # HELP tikv_store_size_bytes Size of storage.\n\
         # TYPE tikv_store_size_bytes gauge\n\
         tikv_store_size_bytes{{type=\"capacity\"}} {capacity}\n\
         tikv_store_size_bytes{{type=\"available\"}} {available}\n\
         tikv_store_size_bytes{{type=\"used\"}} {used}\n\
         # HELP tikv_sim_store_info The simulated store's identity.\n\
         # TYPE tikv_sim_store_info gauge\n\
         tikv_sim_store_info{{store_id=\"{store_id}\",version=\"{version}\"}} 1\n\
         # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
         # TYPE process_start_time_seconds gauge\n\
         process_start_time_seconds {start_unix}\n",
        available = capacity - used,
    )
}

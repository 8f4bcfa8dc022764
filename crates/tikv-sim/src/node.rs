//! The running store: startup in TiKV's order (identity, bootstrap, registration), the
//! raftstore thread, the gRPC and status servers, the PD tasks, and shutdown.
//!
//! Shutdown as TiKV's with `server.graceful-shutdown-timeout`: on SIGTERM the health service
//! goes NOT_SERVING and the store hands its leaders to caught-up followers (the PD built here,
//! 7179657d, has no evict-stopping-store scheduler and ignores `StoreStats.is_stopping`, so the
//! store moves them itself) until it leads nothing or the timeout passes; then it checkpoints
//! and exits. SIGINT and a zero timeout stop at once; SIGKILL loses nothing acknowledged (the
//! raft log is fsynced before a write is answered).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pdclient::proto::metapb;
use pdclient::proto::pdpb::{self, ErrorType};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::engine::checkpoint::{self, CheckpointError};
use crate::pd::{Pd, PdError, check};
use crate::raftstore::region::initial_split_keys;
use crate::raftstore::store::{self, Channels, Handle, Msg, PdTask, RaftstoreError, StoreConfig};
use crate::security::Security;
use crate::server::kv::{self, KvService};
use crate::server::metrics::GrpcMetrics;
use crate::server::status::{self, StatusInfo};
use crate::server::transport::{self, Resolver};
use crate::state::{DataDir, StateError, StoreFile};

/// How long startup keeps retrying PD before giving up (TiKV retries IsBootstrapped 60 × 3 s).
const STARTUP_DEADLINE: Duration = Duration::from_secs(180);

/// Why the store stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The raftstore failed.
    #[error(transparent)]
    Raftstore(#[from] RaftstoreError),
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
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(String),
    /// The `[security]` files cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::LoadError),
}

/// Why the tasks are stopping.
#[derive(Debug, Clone)]
enum Exit {
    /// SIGTERM: hand leaders over first.
    Graceful,
    /// SIGINT: stop now.
    Now,
    Error(Arc<StoreError>),
}

/// State shared by the store's tasks.
struct Shared {
    cfg: Config,
    store_id: u64,
    pd: Arc<Pd>,
    raftstore: Handle,
    hb_tx: Mutex<Option<mpsc::Sender<pdpb::RegionHeartbeatRequest>>>,
    exit: watch::Sender<Option<Exit>>,
    start_unix: u64,
    /// Bytes and keys written and read, for the store heartbeat (from the region heartbeats).
    flow: [AtomicU64; 4],
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shared {
    fn fail(&self, e: StoreError) {
        tracing::error!(error = %e, "stopping");
        set_exit(&self.exit, Exit::Error(Arc::new(e)));
    }
}

fn set_exit(exit: &watch::Sender<Option<Exit>>, why: Exit) {
    exit.send_if_modified(|e| {
        if e.is_none() {
            *e = Some(why);
            true
        } else {
            false
        }
    });
}

/// Runs a store until a signal (Ok) or a fatal error.
pub async fn run(cfg: Config) -> Result<(), StoreError> {
    let data = DataDir::open(&cfg.data_dir)?;
    let file = data.load()?;
    let security = cfg.security.clone().map(Security::load).transpose()?;
    // Bind first, as TiKV does: an address in use is a startup error, not a later surprise.
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StoreError::Bind { addr, source })
    };
    let kv_listener = bind(cfg.addr).await?;
    let status_listener = bind(cfg.status_addr).await?;

    let (exit_tx, mut exit_rx) = watch::channel(None);
    spawn_signal_handler(exit_tx.clone());

    let pd = Arc::new(Pd::new(
        cfg.pd_endpoints.clone(),
        security.as_ref().map(Security::client),
    ));
    let start_unix = unix_now();
    let startup = startup(&cfg, &pd, &data, file, start_unix);
    let (store_id, bootstrapped) = tokio::select! {
        r = startup => r?,
        _ = exit_rx.changed() => return Ok(()),
    };
    let cluster_id = pd.cluster_id();

    let (raft_tx, raft_rx) = mpsc::unbounded_channel();
    let (pd_tx, pd_rx) = mpsc::unbounded_channel();
    let (raftstore, thread) = store::spawn(
        StoreConfig {
            store_id,
            timing: cfg.timing,
            split: cfg.split.clone(),
            checkpoint_path: data.checkpoint_path(),
            raft_dir: data.raft_dir(),
        },
        Channels {
            raft: raft_tx,
            pd: pd_tx,
        },
    )?;
    let view = raftstore.view();
    tracing::info!(
        store_id,
        cluster_id,
        regions = view.regions,
        keys = view.keys,
        "store is up"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        store_id,
        pd: pd.clone(),
        raftstore: raftstore.clone(),
        hb_tx: Mutex::new(None),
        exit: exit_tx,
        start_unix,
        flow: Default::default(),
        cfg,
    });

    let grpc_metrics = Arc::new(GrpcMetrics::default());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    let svc = KvService::new(raftstore.clone(), cluster_id, grpc_metrics.clone());
    let mut grpc_stop = stop_rx.clone();
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(3)));
    let endpoints = kv::Endpoints {
        kv: kv::server(svc),
        health: health_service,
    };
    let stopped = async move {
        let _ = grpc_stop.changed().await;
    };
    let grpc = match &security {
        None => tokio::spawn(
            server.serve_with_incoming_shutdown(
                endpoints,
                tonic::transport::server::TcpIncoming::from(kv_listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(Duration::from_secs(10))),
                stopped,
            ),
        ),
        Some(s) => tokio::spawn(server.serve_with_incoming_shutdown(
            endpoints,
            tls::net::incoming(kv_listener, s.grpc_server()),
            stopped,
        )),
    };
    let info = Arc::new(StatusInfo {
        store_id,
        version: shared.cfg.version.clone(),
        capacity: shared.cfg.capacity,
        start_unix,
        data_dir: shared.cfg.data_dir.clone(),
        grpc: grpc_metrics,
    });
    tokio::spawn(status::serve(
        status_listener,
        info,
        raftstore.clone(),
        security.as_ref().map(Security::status_server),
        stop_rx.clone(),
    ));
    let resolver = Arc::new(Resolver::new(pd.clone()));
    tokio::spawn(transport::run(
        raft_rx,
        resolver,
        raftstore.clone(),
        transport::Dial {
            timeout: shared.cfg.timing.raft_rpc_timeout(),
            tls: security.as_ref().map(Security::client),
        },
    ));
    tokio::spawn(heartbeat_stream_loop(shared.clone(), stop_rx.clone()));
    tokio::spawn(pd_task_loop(shared.clone(), pd_rx));
    tokio::spawn(store_heartbeat_loop(shared.clone(), stop_rx.clone()));
    if bootstrapped && shared.cfg.initial_regions > 1 {
        tokio::spawn(initial_split(shared.clone(), stop_rx.clone()));
    }

    while exit_rx.borrow_and_update().is_none() {
        if exit_rx.changed().await.is_err() {
            break;
        }
    }
    let exit = shared.exit.send_replace(None).unwrap_or(Exit::Now);
    if matches!(exit, Exit::Graceful) && !shared.cfg.graceful_shutdown.is_zero() {
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        hand_off_leaders(&shared).await;
    }
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let _ = stop_tx.send(true);
    // Streams from clients and other stores stay open: answers in flight get a moment, then
    // the connections close (as TiKV's server stops).
    match tokio::time::timeout(Duration::from_millis(100), grpc).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
        Ok(_) => {}
        Err(_) => tracing::debug!("closing the remaining gRPC connections"),
    }
    raftstore.send_blocking(Msg::Stop);
    let stopped = tokio::task::spawn_blocking(move || thread.join()).await;
    match stopped {
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "raftstore failed while stopping"),
        Ok(Err(_)) | Err(_) => tracing::error!("raftstore thread panicked"),
        Ok(Ok(Ok(()))) => {}
    }
    match exit {
        Exit::Graceful | Exit::Now => {
            tracing::info!(store_id, "stopped");
            Ok(())
        }
        Exit::Error(e) => {
            Err(Arc::try_unwrap(e).unwrap_or_else(|e| StoreError::Grpc(e.to_string())))
        }
    }
}

/// Moves every leader away (to caught-up followers), up to the graceful shutdown timeout.
async fn hand_off_leaders(shared: &Shared) {
    let timeout = shared.cfg.graceful_shutdown;
    let started = Instant::now();
    shared.raftstore.send_blocking(Msg::HandOffLeaders);
    loop {
        let leaders = shared.raftstore.view().leaders;
        if leaders == 0 {
            tracing::info!(took = ?started.elapsed(), "all leaders handed over");
            return;
        }
        if started.elapsed() >= timeout {
            tracing::warn!(
                leaders,
                ?timeout,
                "graceful shutdown timeout passed with leaders left"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        let why = tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM received, handing leaders over and stopping");
                Exit::Graceful
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT received, stopping");
                Exit::Now
            }
        };
        set_exit(&exit, why);
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

/// Identity, bootstrap and registration, in TiKV's order. Returns the store ID and whether
/// this store bootstrapped the cluster.
async fn startup(
    cfg: &Config,
    pd: &Pd,
    data: &DataDir,
    file: Option<StoreFile>,
    start_unix: u64,
) -> Result<(u64, bool), StoreError> {
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
    let mut file = file.unwrap_or_default();
    if file.store_id == 0 {
        // A new store: an empty data directory never takes over an old store's identity.
        let id = alloc_id(pd).await?;
        file = StoreFile {
            cluster_id,
            store_id: id,
            prepared_bootstrap_region: 0,
        };
        // Persist the identity before PD hears of it, so a crash cannot make a second store.
        data.save(&file)?;
        tracing::info!(store_id = id, "allocated store id");
    }
    let store_id = file.store_id;
    let meta = store_meta(cfg, store_id, start_unix);
    let ckpt = data.checkpoint_path();
    let mut bootstrapped = false;
    if file.prepared_bootstrap_region != 0 {
        // A bootstrap attempt ended without a known outcome (crash or error): settle it.
        bootstrapped = settle_bootstrap(pd, data, &mut file, &meta).await?;
    } else if !is_bootstrapped(pd).await?
        && checkpoint::load(&ckpt)?.is_none_or(|(m, _)| m.regions.is_empty())
    {
        prepare_bootstrap(pd, data, &mut file, &meta).await?;
        bootstrapped = settle_bootstrap(pd, data, &mut file, &meta).await?;
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
    Ok((store_id, bootstrapped))
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
    file: &mut StoreFile,
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
    store::write_bootstrap_checkpoint(&data.checkpoint_path(), region, peer_id)?;
    file.prepared_bootstrap_region = region_id;
    data.save(file)?;
    Ok(())
}

/// Offers the prepared region to PD until PD is bootstrapped, by us or by another store (PD
/// also fails concurrent Bootstrap calls with an etcd transaction conflict), then keeps the
/// region if PD's first region is ours and drops it otherwise. Returns whether it is ours.
async fn settle_bootstrap(
    pd: &Pd,
    data: &DataDir,
    file: &mut StoreFile,
    meta: &metapb::Store,
) -> Result<bool, StoreError> {
    let ckpt = data.checkpoint_path();
    let region = checkpoint::load(&ckpt)?
        .and_then(|(m, _)| m.regions.into_iter().next())
        .and_then(|s| s.region)
        .filter(|r| r.id == file.prepared_bootstrap_region);
    let Some(region) = region else {
        // The checkpoint never got written: nothing was offered.
        file.prepared_bootstrap_region = 0;
        data.save(file)?;
        return Ok(false);
    };
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
                file.prepared_bootstrap_region = 0;
                data.save(file)?;
                return Ok(true);
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
    let ours = first.region.as_ref().map(|r| r.id) == Some(region.id);
    if ours {
        tracing::info!(
            region_id = region.id,
            "the cluster was bootstrapped with our region"
        );
    } else {
        tracing::info!("another store bootstrapped the cluster");
        std::fs::remove_file(&ckpt).map_err(|source| StateError::Io {
            what: "cannot remove",
            path: ckpt.clone(),
            source,
        })?;
    }
    file.prepared_bootstrap_region = 0;
    data.save(file)?;
    Ok(ours)
}

// ---- PD -------------------------------------------------------------------------------------

/// Splits the bootstrap region into the initial regions once PD knows it (asking again every
/// second: PD refuses to split a region it has not heard of yet).
async fn initial_split(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let keys = initial_split_keys(shared.cfg.initial_regions);
    let started = Instant::now();
    loop {
        let done = shared.raftstore.view().regions >= shared.cfg.initial_regions as usize;
        if done || started.elapsed() > STARTUP_DEADLINE {
            return;
        }
        shared.raftstore.send(Msg::InitialSplit(keys.clone()));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

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
        *shared.hb_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
        // PD binds a stream to a store when it receives a heartbeat on it: send them all now.
        shared.raftstore.send(Msg::ReportAll);
        let outbound =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let session = async {
            let mut inbound = client.region_heartbeat(outbound).await?.into_inner();
            while let Some(msg) = inbound.message().await? {
                match check("RegionHeartbeat", msg.header.as_ref()) {
                    // e.g. PD rejecting a stale heartbeat; the next change or period reports again.
                    Err(e) => {
                        tracing::debug!(error = %e, "PD answered a region heartbeat with an error")
                    }
                    Ok(()) if msg.region_id != 0 => {
                        shared.raftstore.send(Msg::Pd(msg));
                    }
                    Ok(()) => {}
                }
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
        *shared.hb_tx.lock().unwrap_or_else(|p| p.into_inner()) = None;
        shared.pd.reset().await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Carries out the raftstore's PD work.
async fn pd_task_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<PdTask>) {
    while let Some(task) = rx.recv().await {
        match task {
            PdTask::Heartbeat(mut hb) => {
                for (i, v) in [
                    hb.bytes_written,
                    hb.keys_written,
                    hb.bytes_read,
                    hb.keys_read,
                ]
                .into_iter()
                .enumerate()
                {
                    shared.flow[i].fetch_add(v, Ordering::Relaxed);
                }
                hb.header = Some(shared.pd.header());
                let tx = shared
                    .hb_tx
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                // No stream or a stuck one: the reconnect reports everything again.
                if let Some(tx) = tx {
                    let _ = tx.try_send(hb);
                }
            }
            PdTask::AskSplit { region, keys } => {
                tokio::spawn(ask_split(shared.clone(), region, keys));
            }
            PdTask::ReportSplit(regions) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let r = shared
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
                        .await;
                    if let Err(e) = r.and_then(|r| check("ReportBatchSplit", r.header.as_ref())) {
                        tracing::info!(error = %e, "ReportBatchSplit failed");
                    }
                });
            }
            PdTask::CheckStale(region_id) => {
                let shared = shared.clone();
                tokio::spawn(async move {
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
                            shared.raftstore.send(Msg::PdRegion {
                                region_id,
                                region: r.region,
                            });
                        }
                        Err(e) => tracing::debug!(region_id, error = %e, "stale check failed"),
                    }
                });
            }
        }
    }
}

/// TiKV's batch split: IDs from PD, then the leader proposes the split.
async fn ask_split(shared: Arc<Shared>, region: metapb::Region, keys: Vec<Vec<u8>>) {
    let region_id = region.id;
    let epoch = region.region_epoch.unwrap_or_default();
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
        .await;
    match resp.and_then(|r| check("AskBatchSplit", r.header.as_ref()).map(|()| r)) {
        Ok(r) => {
            shared.raftstore.send(Msg::SplitIds {
                region_id,
                epoch,
                keys,
                ids: r.ids,
            });
        }
        Err(e) => tracing::info!(region_id, error = %e, "split not done"),
    }
}

async fn store_heartbeat_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let interval = shared.cfg.timing.store_heartbeat;
    let mut last_unix = shared.start_unix;
    loop {
        let view = shared.raftstore.view();
        let now_unix = unix_now();
        let (capacity, available, used) = status::sizes(shared.cfg.capacity, &shared.cfg.data_dir);
        let flow: Vec<u64> = shared
            .flow
            .iter()
            .map(|f| f.swap(0, Ordering::Relaxed))
            .collect();
        let stats = pdpb::StoreStats {
            store_id: shared.store_id,
            capacity,
            available,
            used_size: used,
            region_count: view.regions as u32,
            start_time: shared.start_unix as u32,
            bytes_written: flow[0],
            keys_written: flow[1],
            bytes_read: flow[2],
            keys_read: flow[3],
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
                shared.fail(StoreError::Tombstone(shared.store_id));
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

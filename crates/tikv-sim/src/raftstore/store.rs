//! The raftstore thread: owns every replica, the key-value map and the raft log engine.
//!
//! One thread, like TiKV's store batch system on a small scale: it drains its inbox (client
//! requests, raft messages, PD commands), ticks the replicas, then runs one *round*: every
//! replica with a raft `Ready` hands over its new entries and hard state, which go to
//! raft-engine in a single fsynced write for all regions; then messages are sent, committed
//! entries applied and clients answered. Writes are answered only after that: committed by a
//! quorum, applied, durable here.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pdclient::proto::metapb;
use pdclient::proto::pdpb;
use protobuf::Message as _;
use raft::eraftpb::{self, HardState, MessageType};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{SplitConfig, Timing};
use crate::engine::checkpoint::{self, CheckpointError, Meta, Tombstone};
use crate::engine::kv::Kv;
use crate::engine::raftlog::{Batch, RaftLog, RaftLogError};
use crate::proto::raft_serverpb::RaftMessage;
use crate::raftstore::cmd::{KvRequest, KvResult, Op, ReadOp};
use crate::raftstore::peer::{Applied, Peer};
use crate::raftstore::region::{self, RegionError};
use crate::raftstore::storage::PeerStorage;

/// Raft index and term a region created by a split starts at (TiKV's RAFT_INIT_LOG_INDEX/TERM).
pub const INIT_INDEX: u64 = 5;
/// See [`INIT_INDEX`].
pub const INIT_TERM: u64 = 5;
/// Inbox capacity; a full inbox answers clients ServerIsBusy and drops raft messages.
pub const INBOX_CAPACITY: usize = 16 * 1024;
/// A checkpoint is taken after this many applied entries (then the logs are compacted).
const CHECKPOINT_ENTRIES: u64 = 50_000;
/// ... or this many bytes of applied entries.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// ... or this long after the last one, if anything was applied.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(300);

/// Why the raftstore failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftstoreError {
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The raft log engine failed.
    #[error(transparent)]
    RaftLog(#[from] RaftLogError),
    /// raft-rs refused to create a replica from the persisted state.
    #[error("region {region_id}: {source}")]
    Raft {
        /// The region.
        region_id: u64,
        /// raft-rs' error.
        #[source]
        source: raft::Error,
    },
    /// The thread is gone.
    #[error("the raftstore thread stopped")]
    Stopped,
}

/// What the raftstore is asked to do.
pub enum Msg {
    /// A raft message from another store (with a snapshot's data, if it carries one).
    Raft(RaftMessage, Option<Vec<u8>>),
    /// Raft messages from another store's BatchRaft stream.
    RaftBatch(Vec<RaftMessage>),
    /// A client request.
    Kv(KvRequest),
    /// PD's answer on the region heartbeat stream.
    Pd(pdpb::RegionHeartbeatResponse),
    /// PD's IDs for a split the leader asked for.
    SplitIds {
        /// The region.
        region_id: u64,
        /// Its epoch when the split was asked for.
        epoch: metapb::RegionEpoch,
        /// The split keys.
        keys: Vec<Vec<u8>>,
        /// PD's IDs.
        ids: Vec<pdpb::SplitId>,
    },
    /// PD's view of a region whose replica here has had no leader for long.
    PdRegion {
        /// The region.
        region_id: u64,
        /// PD's region, if PD knows it.
        region: Option<metapb::Region>,
    },
    /// A snapshot was sent (or not).
    SnapshotSent {
        /// The region.
        region_id: u64,
        /// The receiving peer.
        to_peer: u64,
        /// Whether the receiver accepted it.
        ok: bool,
    },
    /// Messages to a store could not be delivered.
    Unreachable(u64),
    /// The PD heartbeat stream (re)connected: report every region now.
    ReportAll,
    /// This store bootstrapped the cluster: split its one region at these keys.
    InitialSplit(Vec<Vec<u8>>),
    /// SIGTERM: hand every leader to a caught-up follower and accept no new leaderships.
    HandOffLeaders,
    /// Every replica, for `/sim/regions`.
    Summary(tokio::sync::oneshot::Sender<Vec<RegionSummary>>),
    /// Checkpoint and stop.
    Stop,
}

/// Work for the PD tasks.
#[derive(Debug)]
pub enum PdTask {
    /// A region heartbeat (leader).
    Heartbeat(pdpb::RegionHeartbeatRequest),
    /// Ask PD for IDs to split `region` at `keys`.
    AskSplit {
        /// The region as it is now.
        region: metapb::Region,
        /// Split keys.
        keys: Vec<Vec<u8>>,
    },
    /// A split was applied on the leader.
    ReportSplit(Vec<metapb::Region>),
    /// Ask PD whether this replica still belongs to the region.
    CheckStale(u64),
}

/// A raft message for another store.
#[derive(Debug)]
pub struct Outbound {
    /// The receiving store.
    pub to_store: u64,
    /// The message (a snapshot's data travels separately).
    pub msg: RaftMessage,
    /// A snapshot's data: this message goes over the Snapshot stream.
    pub snapshot: Option<Vec<u8>>,
}

/// A replica as `/sim/regions` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionSummary {
    /// Region ID.
    pub id: u64,
    /// This store's peer.
    pub peer_id: u64,
    /// leader, candidate, pre-candidate or follower.
    pub role: String,
    /// Raft term.
    pub term: u64,
    /// Leader peer known to this replica (0: none).
    pub leader_peer_id: u64,
    /// Epoch.
    pub conf_ver: u64,
    /// Epoch.
    pub version: u64,
    /// Range start (hex).
    pub start_key: String,
    /// Range end (hex; empty: the end of the key space).
    pub end_key: String,
    /// Peers as (id, store, role name).
    pub peers: Vec<(u64, u64, String)>,
    /// Applied index.
    pub applied_index: u64,
    /// Approximate size in bytes and keys, from the last split check.
    pub approximate: (u64, u64),
    /// Whether it has data (a replica waiting for its first snapshot has none).
    pub initialized: bool,
}

/// What the rest of the store can see of the raftstore.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Replicas that lead their region.
    pub leaders: usize,
    /// Replicas.
    pub regions: usize,
    /// Keys on the store.
    pub keys: u64,
    /// Bytes of keys and values on the store.
    pub bytes: u64,
}

/// How the raftstore is reached.
#[derive(Clone)]
pub struct Handle {
    inbox: SyncSender<Msg>,
    view: Arc<Mutex<View>>,
}

impl Handle {
    /// Queues `msg`; `false` if the inbox is full or the thread is gone.
    pub fn send(&self, msg: Msg) -> bool {
        self.inbox.try_send(msg).is_ok()
    }

    /// Queues a client request, or answers it at once with ServerIsBusy when the inbox is full.
    pub fn request(&self, req: KvRequest) {
        match self.inbox.try_send(Msg::Kv(req)) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Kv(req))) => {
                let _ = req
                    .reply
                    .send(Err(region::server_is_busy("raftstore is busy")));
            }
            Err(TrySendError::Disconnected(Msg::Kv(req))) => {
                let _ = req
                    .reply
                    .send(Err(region::server_is_busy("store is stopping")));
            }
            Err(_) => {}
        }
    }

    /// Queues `msg`, waiting for room (for shutdown steps that must not be lost).
    pub fn send_blocking(&self, msg: Msg) -> bool {
        self.inbox.send(msg).is_ok()
    }

    /// The latest view.
    pub fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Where the raftstore keeps its files and how it behaves.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// This store.
    pub store_id: u64,
    /// Raft and PD timers.
    pub timing: Timing,
    /// When regions split.
    pub split: SplitConfig,
    /// The checkpoint file.
    pub checkpoint_path: PathBuf,
    /// raft-engine's directory.
    pub raft_dir: PathBuf,
}

/// Senders to the tokio side.
pub struct Channels {
    /// Raft messages to other stores, a round's worth at a time.
    pub raft: UnboundedSender<Vec<Outbound>>,
    /// Work for the PD tasks.
    pub pd: UnboundedSender<PdTask>,
}

/// Starts the raftstore thread over the data directory's state and waits until it is loaded.
pub fn spawn(
    cfg: StoreConfig,
    channels: Channels,
) -> Result<(Handle, std::thread::JoinHandle<Result<(), RaftstoreError>>), RaftstoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(INBOX_CAPACITY);
    let view = Arc::new(Mutex::new(View::default()));
    let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
    let thread_view = view.clone();
    let thread = std::thread::Builder::new()
        .name("raftstore".into())
        .spawn(move || {
            let mut store = match Store::open(cfg, rx, channels, thread_view) {
                Ok(s) => {
                    let _ = loaded_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = loaded_tx.send(Err(e));
                    return Ok(());
                }
            };
            store.run()
        })
        .map_err(|_| RaftstoreError::Stopped)?;
    loaded_rx.recv().map_err(|_| RaftstoreError::Stopped)??;
    Ok((Handle { inbox: tx, view }, thread))
}

/// Writes the initial state of a store that bootstraps the cluster: one region with one peer
/// (this store), at TiKV's initial raft index.
pub fn write_bootstrap_checkpoint(
    path: &std::path::Path,
    region: metapb::Region,
    peer_id: u64,
) -> Result<(), CheckpointError> {
    let meta = Meta {
        regions: vec![checkpoint::RegionState {
            region: Some(region),
            peer_id,
            applied_index: INIT_INDEX,
            applied_term: INIT_TERM,
        }],
        tombstones: Vec::new(),
    };
    checkpoint::save(path, &meta, std::iter::empty())
}

struct Store {
    cfg: StoreConfig,
    inbox: Receiver<Msg>,
    ch: Channels,
    view: Arc<Mutex<View>>,
    kv: Rc<RefCell<Kv>>,
    raftlog: RaftLog,
    peers: HashMap<u64, Peer>,
    /// Initialized regions by start key.
    ranges: BTreeMap<Vec<u8>, u64>,
    tombstones: HashMap<u64, metapb::RegionEpoch>,
    /// Which store each known peer lives on.
    peer_stores: HashMap<u64, u64>,
    touched: HashSet<u64>,
    /// Messages of this round, handed to the transport together (one wake-up per round).
    outbox: Vec<Outbound>,
    need_checkpoint: bool,
    pending_clean: Vec<u64>,
    applied_since_checkpoint: (u64, u64),
    last_checkpoint: Instant,
    last_purge: Instant,
    last_split_check: Instant,
    read_ctx: u64,
    handing_off: bool,
    stop: bool,
    report_all: bool,
    logger: slog::Logger,
}

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        commit,
        ..Default::default()
    }
}

/// TiKV creates a replica for an unknown region only from a message a leader or candidate
/// sends to a member it has not heard from (`is_initial_msg`).
fn is_initial_msg(m: &eraftpb::Message) -> bool {
    matches!(
        m.get_msg_type(),
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
    ) || (m.get_msg_type() == MessageType::MsgHeartbeat && m.commit == raft::INVALID_INDEX)
}

impl Store {
    fn open(
        cfg: StoreConfig,
        inbox: Receiver<Msg>,
        ch: Channels,
        view: Arc<Mutex<View>>,
    ) -> Result<Store, RaftstoreError> {
        let raftlog = RaftLog::open(&cfg.raft_dir)?;
        let (meta, pairs) = checkpoint::load(&cfg.checkpoint_path)?.unwrap_or_default();
        let mut kv = Kv::default();
        for (k, v) in pairs {
            kv.put(k, v);
        }
        let now = Instant::now();
        let mut store = Store {
            inbox,
            ch,
            view,
            kv: Rc::new(RefCell::new(kv)),
            raftlog,
            peers: HashMap::new(),
            ranges: BTreeMap::new(),
            tombstones: meta
                .tombstones
                .iter()
                .map(|t| (t.region_id, t.epoch.unwrap_or_default()))
                .collect(),
            peer_stores: HashMap::new(),
            touched: HashSet::new(),
            outbox: Vec::new(),
            need_checkpoint: false,
            pending_clean: Vec::new(),
            applied_since_checkpoint: (0, 0),
            last_checkpoint: now,
            last_purge: now,
            last_split_check: now,
            read_ctx: 0,
            handing_off: false,
            stop: false,
            report_all: false,
            logger: crate::raftstore::log::logger(),
            cfg,
        };
        for state in meta.regions {
            let region = state.region.clone().unwrap_or_default();
            let hs = store
                .raftlog
                .hard_state(region.id)?
                .unwrap_or_else(|| hard_state(state.applied_term, state.applied_index));
            store.add_peer(
                region,
                state.peer_id,
                hs,
                state.applied_index,
                state.applied_term,
            )?;
        }
        // Logs of replicas destroyed after the last checkpoint, or created after it by a split
        // that replaying the parent's log recreates.
        for region_id in store.raftlog.regions() {
            if store.tombstones.contains_key(&region_id) && !store.peers.contains_key(&region_id) {
                let mut batch = Batch::default();
                batch.clean(region_id);
                store.raftlog.write(&mut batch, true)?;
            }
        }
        tracing::info!(
            regions = store.peers.len(),
            keys = store.kv.borrow().len(),
            "raftstore loaded"
        );
        store.publish();
        Ok(store)
    }

    /// Creates a replica from persisted or split state, with the log raft-engine has after
    /// `index`.
    fn add_peer(
        &mut self,
        region: metapb::Region,
        peer_id: u64,
        mut hs: HardState,
        index: u64,
        term: u64,
    ) -> Result<u64, RaftstoreError> {
        let region_id = region.id;
        // The applied state is committed; a hard state written before it may say less.
        if hs.commit < index {
            hs.commit = index;
        }
        if hs.term < term {
            hs.term = term;
        }
        let entries = self.raftlog.entries_after(region_id, index)?;
        for p in &region.peers {
            self.peer_stores.insert(p.id, p.store_id);
        }
        let initialized = !region.peers.is_empty();
        let start = region.start_key.clone();
        let mut storage = PeerStorage::new(region, hs, index, term, self.kv.clone());
        storage.set_entries(entries);
        let peer = Peer::new(peer_id, storage, &self.cfg.timing, &self.logger)
            .map_err(|source| RaftstoreError::Raft { region_id, source })?;
        if initialized {
            self.ranges.insert(start, region_id);
        }
        self.peers.insert(region_id, peer);
        self.touched.insert(region_id);
        Ok(region_id)
    }

    fn run(&mut self) -> Result<(), RaftstoreError> {
        let tick = self.cfg.timing.base_tick;
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(wait) {
                Ok(msg) => {
                    self.handle(msg);
                    // Take what else is queued into the same round (bounded, so ticks and
                    // answers keep flowing under load).
                    for _ in 0..4096 {
                        match self.inbox.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.stop = true,
            }
            let now = Instant::now();
            let ticked = now >= next_tick;
            if ticked {
                next_tick = (next_tick + tick).max(now);
                self.tick(now);
            }
            self.start_reads();
            self.round()?;
            if !self.outbox.is_empty() {
                let _ = self.ch.raft.send(std::mem::take(&mut self.outbox));
            }
            self.report(now, ticked);
            self.maybe_checkpoint(now)?;
            self.publish();
            if self.stop {
                break;
            }
        }
        self.checkpoint()?;
        tracing::info!("raftstore stopped");
        Ok(())
    }

    fn handle(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Raft(m, data) => self.on_raft(m, data, now),
            Msg::RaftBatch(msgs) => {
                for m in msgs {
                    self.on_raft(m, None, now);
                }
            }
            Msg::Kv(req) => self.on_kv(req),
            Msg::Pd(resp) => self.on_pd(resp, now),
            Msg::SplitIds {
                region_id,
                epoch,
                keys,
                ids,
            } => {
                if let Some(p) = self.peers.get_mut(&region_id)
                    && p.is_leader()
                    && p.region().region_epoch == Some(epoch)
                {
                    p.propose_split(keys, ids);
                    self.touched.insert(region_id);
                }
            }
            Msg::PdRegion { region_id, region } => self.on_pd_region(region_id, region),
            Msg::SnapshotSent {
                region_id,
                to_peer,
                ok,
            } => {
                if let Some(p) = self.peers.get_mut(&region_id) {
                    let status = if ok {
                        raft::SnapshotStatus::Finish
                    } else {
                        raft::SnapshotStatus::Failure
                    };
                    p.raw.report_snapshot(to_peer, status);
                    self.touched.insert(region_id);
                }
            }
            Msg::Unreachable(store_id) => {
                for (id, p) in &mut self.peers {
                    let on_store: Vec<u64> = p
                        .region()
                        .peers
                        .iter()
                        .filter(|x| x.store_id == store_id)
                        .map(|x| x.id)
                        .collect();
                    for peer_id in on_store {
                        p.raw.report_unreachable(peer_id);
                        self.touched.insert(*id);
                    }
                }
            }
            Msg::ReportAll => self.report_all = true,
            Msg::InitialSplit(keys) => self.initial_split(keys, now),
            Msg::HandOffLeaders => self.handing_off = true,
            Msg::Summary(reply) => {
                let mut summary: Vec<RegionSummary> = self.peers.values().map(summarize).collect();
                summary.sort_by_key(|s| s.id);
                let _ = reply.send(summary);
            }
            Msg::Stop => self.stop = true,
        }
    }

    /// Splits the region that holds all of the bootstrap split keys (PD may already have cut
    /// the key space at its keyspace boundaries), if this store leads it.
    fn initial_split(&mut self, keys: Vec<Vec<u8>>, now: Instant) {
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return;
        };
        let holder = self.peers.values_mut().find(|p| {
            p.initialized
                && p.is_leader()
                && region::contains(p.region(), first)
                && region::contains(p.region(), last)
                && p.region().start_key != *first
        });
        if let Some(p) = holder
            && p.split_asked
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(900))
        {
            p.split_asked = Some(now);
            let _ = self.ch.pd.send(PdTask::AskSplit {
                region: p.region().clone(),
                keys,
            });
        }
    }

    // ---- client requests --------------------------------------------------------------------

    /// TiKV's checks, in TiKV's order.
    fn check(&self, req: &KvRequest) -> Result<u64, RegionError> {
        let ctx = &req.ctx;
        if let Some(p) = &ctx.peer
            && p.store_id != 0
            && p.store_id != self.cfg.store_id
        {
            return Err(region::store_not_match(p.store_id, self.cfg.store_id));
        }
        let peer = self
            .peers
            .get(&ctx.region_id)
            .filter(|p| p.initialized)
            .ok_or_else(|| region::region_not_found(ctx.region_id))?;
        if let Some(p) = &ctx.peer
            && p.id != 0
            && p.id != peer.peer_id
        {
            return Err(region::mismatch_peer_id(p.id, peer.peer_id));
        }
        if let Some(e) = peer.not_leader() {
            return Err(e);
        }
        if ctx.term != 0 && peer.raw.raft.term > ctx.term + 1 {
            return Err(region::stale_command());
        }
        let r = peer.region();
        if let Some(epoch) = &ctx.region_epoch
            && epoch.version != region::epoch(r).1
        {
            let mut current = vec![r.clone()];
            current.extend(
                peer.split_children
                    .iter()
                    .filter_map(|id| self.peers.get(id))
                    .filter(|p| p.initialized)
                    .map(|p| p.region().clone()),
            );
            return Err(region::epoch_not_match(current));
        }
        let check_key = |k: &[u8]| {
            if region::contains(r, k) {
                Ok(())
            } else {
                Err(region::key_not_in_region(k, r))
            }
        };
        let check_bound = |k: &[u8]| {
            if region::contains_bound(r, k) {
                Ok(())
            } else {
                Err(region::key_not_in_region(k, r))
            }
        };
        match &req.op {
            Op::Read(ReadOp::Get(k)) => check_key(k)?,
            Op::Read(ReadOp::BatchGet(keys)) => keys.iter().try_for_each(|k| check_key(k))?,
            Op::Read(ReadOp::Scan { start, reverse, .. }) => {
                if *reverse {
                    check_bound(start)?
                } else {
                    check_key(start)?
                }
            }
            Op::Write(ops) => {
                for op in ops {
                    let (key, bound) = op.keys();
                    check_key(key)?;
                    if let Some(b) = bound {
                        check_bound(b)?;
                    }
                }
            }
        }
        Ok(ctx.region_id)
    }

    fn on_kv(&mut self, req: KvRequest) {
        let region_id = match self.check(&req) {
            Ok(id) => id,
            Err(e) => {
                let _ = req.reply.send(Err(e));
                return;
            }
        };
        let peer = self.peers.get_mut(&region_id).expect("checked");
        match req.op {
            Op::Read(op) => peer.read(op, req.reply),
            Op::Write(ops) => peer.propose_write(ops, req.reply),
        }
        self.touched.insert(region_id);
    }

    fn start_reads(&mut self) {
        let now = Instant::now();
        let retry = self.cfg.timing.election_timeout;
        for (id, p) in &mut self.peers {
            if p.has_reads() && p.start_reads(self.read_ctx + 1, now, retry) {
                self.read_ctx += 1;
                self.touched.insert(*id);
            }
        }
    }

    // ---- raft messages ------------------------------------------------------------------------

    fn on_raft(&mut self, m: RaftMessage, snapshot: Option<Vec<u8>>, now: Instant) {
        let (Some(from), Some(to)) = (m.from_peer, m.to_peer) else {
            return;
        };
        if to.store_id != self.cfg.store_id {
            tracing::debug!(
                region_id = m.region_id,
                to_store = to.store_id,
                "message for another store dropped"
            );
            return;
        }
        self.peer_stores.insert(from.id, from.store_id);
        let region_id = m.region_id;
        let msg_epoch = m.region_epoch.unwrap_or_default();
        if m.is_tombstone {
            self.on_gc_message(region_id, to.id, msg_epoch);
            return;
        }
        let mut msg = match eraftpb::Message::parse_from_bytes(&m.message) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!(region_id, error = %e, "undecodable raft message dropped");
                return;
            }
        };
        if let Some(data) = snapshot {
            msg.mut_snapshot().data = data.into();
        }
        if self.handing_off && msg.get_msg_type() == MessageType::MsgTimeoutNow {
            // A stopping store takes no leadership.
            return;
        }
        match self
            .peers
            .get(&region_id)
            .map(|p| (p.peer_id, p.initialized, region::epoch(p.region())))
        {
            Some((id, _, _)) if id == to.id => {}
            Some((id, initialized, (conf_ver, _))) if id < to.id => {
                // This replica was removed and the region re-added a peer here: ours is stale.
                if initialized && conf_ver >= msg_epoch.conf_ver {
                    return;
                }
                self.destroy(region_id, "a newer peer of the region exists");
                if !self.maybe_create(&m, &msg, to.id) {
                    return;
                }
            }
            Some(_) => return, // a message for an older peer of ours
            None => {
                if !self.maybe_create(&m, &msg, to.id) {
                    return;
                }
            }
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot && !self.snapshot_fits(region_id, &msg) {
            return;
        }
        let peer = self.peers.get_mut(&region_id).expect("present or created");
        peer.heard_from(from.id, now);
        // A leader hearing from a peer that is no longer a member tells it so (TiKV's GC).
        if peer.initialized
            && peer.is_leader()
            && !peer.region().peers.iter().any(|p| p.id == from.id)
            && msg_epoch.conf_ver < region::epoch(peer.region()).0
        {
            let gc = RaftMessage {
                region_id,
                from_peer: peer.meta(),
                to_peer: Some(from),
                message: Vec::new(),
                region_epoch: peer.region().region_epoch,
                is_tombstone: true,
                start_key: Vec::new(),
                end_key: Vec::new(),
            };
            self.outbox.push(Outbound {
                to_store: from.store_id,
                msg: gc,
                snapshot: None,
            });
            return;
        }
        if let Err(e) = peer.raw.step(msg) {
            tracing::debug!(region_id, error = %e, "raft refused a message");
        }
        self.touched.insert(region_id);
    }

    fn maybe_create(&mut self, m: &RaftMessage, msg: &eraftpb::Message, peer_id: u64) -> bool {
        let region_id = m.region_id;
        let msg_epoch = m.region_epoch.unwrap_or_default();
        if let Some(t) = self.tombstones.get(&region_id)
            && msg_epoch.conf_ver <= t.conf_ver
        {
            return false;
        }
        if !is_initial_msg(msg) {
            return false;
        }
        // A replica of the region destroyed here keeps its raft log until the checkpoint
        // without it is durable (a round or two); a new replica created before that would start
        // from the old log. TiKV too creates no peer while a destroyed one is being cleaned up;
        // the leader's next message creates it.
        if self.pending_clean.contains(&region_id) {
            return false;
        }
        // The range is still ours under another region (a split not applied here yet).
        let overlap = self.peers.values().any(|p| {
            p.initialized
                && region::overlaps(
                    &p.region().start_key,
                    &p.region().end_key,
                    &m.start_key,
                    &m.end_key,
                )
        });
        if overlap {
            return false;
        }
        let region = metapb::Region {
            id: region_id,
            ..Default::default()
        };
        match self.add_peer(region, peer_id, HardState::default(), 0, 0) {
            Ok(_) => {
                tracing::info!(
                    region_id,
                    peer_id,
                    "replica created for a new peer; waiting for a snapshot"
                );
                true
            }
            Err(e) => {
                tracing::warn!(region_id, error = %e, "cannot create replica");
                false
            }
        }
    }

    /// A snapshot is accepted only if its range overlaps no other replica here.
    fn snapshot_fits(&self, region_id: u64, msg: &eraftpb::Message) -> bool {
        let meta = match checkpoint::decode_meta(msg.get_snapshot().get_data()) {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!(region_id, error = %e, "bad snapshot dropped");
                return false;
            }
        };
        let Some(r) = meta.regions.first().and_then(|s| s.region.as_ref()) else {
            return false;
        };
        let conflict = self.peers.values().find(|p| {
            p.region_id() != region_id
                && p.initialized
                && region::overlaps(
                    &p.region().start_key,
                    &p.region().end_key,
                    &r.start_key,
                    &r.end_key,
                )
        });
        if let Some(p) = conflict {
            tracing::info!(
                region_id,
                other = p.region_id(),
                "snapshot overlaps another replica; dropped"
            );
            return false;
        }
        true
    }

    fn on_gc_message(&mut self, region_id: u64, peer_id: u64, epoch: metapb::RegionEpoch) {
        let stale = self.peers.get(&region_id).is_some_and(|p| {
            p.peer_id == peer_id && (!p.initialized || region::epoch(p.region()).0 < epoch.conf_ver)
        });
        if stale {
            self.destroy(region_id, "the leader says it was removed");
        }
    }

    fn on_pd_region(&mut self, region_id: u64, pd_region: Option<metapb::Region>) {
        let (Some(pd_region), Some(p)) = (pd_region, self.peers.get(&region_id)) else {
            return;
        };
        let member = pd_region.peers.iter().any(|x| x.id == p.peer_id);
        if !member && region::epoch(&pd_region).0 > region::epoch(p.region()).0 {
            self.destroy(region_id, "PD no longer lists it");
        }
    }

    /// Removes a replica and its data; durable at the next checkpoint (taken this round).
    fn destroy(&mut self, region_id: u64, why: &str) {
        let Some(mut peer) = self.peers.remove(&region_id) else {
            return;
        };
        tracing::info!(region_id, peer_id = peer.peer_id, why, "destroying replica");
        peer.fail_pending(|| region::region_not_found(region_id));
        let region = peer.region().clone();
        if peer.initialized {
            if self.ranges.get(&region.start_key) == Some(&region_id) {
                self.ranges.remove(&region.start_key);
            }
            self.kv
                .borrow_mut()
                .delete_range(&region.start_key, &region.end_key);
        }
        self.tombstones
            .insert(region_id, region.region_epoch.unwrap_or_default());
        self.pending_clean.push(region_id);
        self.need_checkpoint = true;
        self.touched.remove(&region_id);
    }

    // ---- PD commands ----------------------------------------------------------------------------

    fn on_pd(&mut self, resp: pdpb::RegionHeartbeatResponse, now: Instant) {
        let region_id = resp.region_id;
        let alive = self.cfg.timing.election_timeout;
        let store_id = self.cfg.store_id;
        let Some(peer) = self.peers.get_mut(&region_id) else {
            return;
        };
        if !peer.is_leader() {
            return;
        }
        if let Some(epoch) = resp.region_epoch
            && region::epoch(peer.region()) != (epoch.conf_ver, epoch.version)
        {
            // PD decided on a region state that is gone; it will ask again.
            return;
        }
        if let Some(cp) = resp.change_peer {
            peer.propose_conf_change(vec![cp], false, store_id);
        }
        if let Some(v2) = resp.change_peer_v2 {
            peer.propose_conf_change(v2.changes, true, store_id);
        }
        if let Some(tl) = resp.transfer_leader {
            let targets = tl.peer.into_iter().chain(tl.peers);
            for t in targets {
                if peer.transfer_leader(t.id, now, alive) {
                    break;
                }
            }
        }
        if let Some(split) = resp.split_region {
            let r = peer.region().clone();
            let mut keys: Vec<Vec<u8>> = split
                .keys
                .into_iter()
                .filter(|k| region::contains(&r, k) && *k != r.start_key)
                .collect();
            keys.sort();
            keys.dedup();
            if keys.is_empty() {
                keys = self.middle_key(&r).into_iter().collect();
            }
            if !keys.is_empty() {
                let _ = self.ch.pd.send(PdTask::AskSplit { region: r, keys });
            }
        }
        if resp.merge.is_some() {
            tracing::debug!(
                region_id,
                "PD asked for a merge; this store does not merge regions"
            );
        }
        self.touched.insert(region_id);
    }

    /// The key in the middle of a region's data (PD's split without keys), or some key inside
    /// the range when there is too little data to choose from.
    fn middle_key(&self, r: &metapb::Region) -> Option<Vec<u8>> {
        let kv = self.kv.borrow();
        let (size, keys) = kv.range_stats(&r.start_key, &r.end_key);
        kv.split_keys(&r.start_key, &r.end_key, size / 2, keys / 2 + 1, 1)
            .pop()
            .or_else(|| region::key_between(&r.start_key, &r.end_key))
    }

    // ---- ticks ----------------------------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        for (id, p) in &mut self.peers {
            if p.raw.tick() {
                self.touched.insert(*id);
            }
        }
        let alive = self.cfg.timing.election_timeout;
        if self.handing_off {
            for (id, p) in &mut self.peers {
                if p.is_leader()
                    && p.raw.raft.lead_transferee.is_none()
                    && let Some(target) = p.handoff_target(now, alive)
                {
                    tracing::info!(
                        region_id = id,
                        to = target,
                        "handing leadership over before stopping"
                    );
                    p.raw.transfer_leader(target);
                    self.touched.insert(*id);
                }
            }
        }
        if now.duration_since(self.last_split_check) >= self.cfg.split.check_interval {
            self.last_split_check = now;
            self.split_check(now);
        }
        let missing = self.cfg.timing.max_leader_missing;
        for (id, p) in &mut self.peers {
            let stale = p
                .leaderless_since
                .is_some_and(|t| now.duration_since(t) >= missing)
                && p.stale_checked
                    .is_none_or(|t| now.duration_since(t) >= missing);
            if stale {
                p.stale_checked = Some(now);
                let _ = self.ch.pd.send(PdTask::CheckStale(*id));
            }
        }
        if now.duration_since(self.last_purge) >= Duration::from_secs(10) {
            self.last_purge = now;
            if let Err(e) = self.raftlog.purge() {
                tracing::warn!(error = %e, "raft log purge failed");
            }
        }
    }

    /// TiKV's split check: a leader whose region outgrew region-max-size/keys asks PD for IDs
    /// to cut it into region-split-size/keys pieces.
    fn split_check(&mut self, now: Instant) {
        let split = self.cfg.split.clone();
        let kv = self.kv.borrow();
        for p in self.peers.values_mut() {
            if !p.initialized || !p.size_dirty {
                continue;
            }
            let r = p.region().clone();
            p.approximate = kv.range_stats(&r.start_key, &r.end_key);
            p.size_dirty = false;
            let (size, keys) = p.approximate;
            let asked_lately = p
                .split_asked
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10));
            if !p.is_leader() || asked_lately || (size <= split.max_size && keys <= split.max_keys)
            {
                continue;
            }
            let keys = kv.split_keys(&r.start_key, &r.end_key, split.size, split.keys, 16);
            if keys.is_empty() {
                continue;
            }
            tracing::info!(
                region_id = r.id,
                size,
                count = keys.len(),
                "region is too large; splitting"
            );
            p.split_asked = Some(now);
            // The size is checked again after the split.
            p.size_dirty = true;
            let _ = self.ch.pd.send(PdTask::AskSplit { region: r, keys });
        }
    }

    // ---- the round ------------------------------------------------------------------------------

    fn round(&mut self) -> Result<(), RaftstoreError> {
        let mut batch = Batch::default();
        let mut readies = Vec::new();
        let touched: Vec<u64> = self.touched.drain().collect();
        for region_id in touched {
            let Some(p) = self.peers.get_mut(&region_id) else {
                continue;
            };
            if !p.raw.has_ready() {
                continue;
            }
            let mut ready = p.raw.ready();
            let msgs = ready.take_messages();
            self.send(region_id, msgs);
            if !ready.snapshot().is_empty() {
                let snap = ready.snapshot().clone();
                self.apply_snapshot(region_id, &snap, &mut batch)?;
            }
            let p = self.peers.get_mut(&region_id).expect("still there");
            let entries = ready.take_entries();
            batch.append(region_id, &entries)?;
            p.raw.mut_store().append(&entries);
            if let Some(hs) = ready.hs() {
                batch.hard_state(region_id, hs)?;
                p.raw.mut_store().hard_state = hs.clone();
            }
            readies.push((region_id, ready));
        }
        if self.need_checkpoint {
            // Applied snapshots and destroyed replicas are durable before anyone hears of them.
            self.checkpoint()?;
        }
        self.raftlog.write(&mut batch, true)?;

        let now = Instant::now();
        for (region_id, mut ready) in readies {
            let store_id = self.cfg.store_id;
            let Some(p) = self.peers.get_mut(&region_id) else {
                continue;
            };
            for rs in ready.take_read_states() {
                p.on_read_state(&rs.request_ctx, rs.index);
            }
            let persisted = ready.take_persisted_messages();
            self.send(region_id, persisted);
            let committed = ready.take_committed_entries();
            self.apply(region_id, committed, store_id)?;
            let Some(p) = self.peers.get_mut(&region_id) else {
                continue;
            };
            let mut light = p.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                p.raw.mut_store().hard_state.commit = commit;
            }
            let msgs = light.take_messages();
            let committed = light.take_committed_entries();
            self.send(region_id, msgs);
            self.apply(region_id, committed, store_id)?;
            let Some(p) = self.peers.get_mut(&region_id) else {
                continue;
            };
            p.raw.advance_apply();
            p.serve_reads(&self.kv.borrow());
            if p.on_role(now) && p.raw.raft.lead_transferee.is_none() {
                tracing::debug!(region_id, "became leader");
            }
            if p.raw.has_ready() {
                self.touched.insert(region_id);
            }
        }
        // Replicas destroyed this round: their logs go once the checkpoint without them is
        // written (above, or at the next round).
        if !self.need_checkpoint && !self.pending_clean.is_empty() {
            let mut clean = Batch::default();
            for id in self.pending_clean.drain(..) {
                if !self.peers.contains_key(&id) {
                    clean.clean(id);
                }
            }
            self.raftlog.write(&mut clean, true)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        region_id: u64,
        entries: Vec<eraftpb::Entry>,
        store_id: u64,
    ) -> Result<(), RaftstoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.applied_since_checkpoint.0 += entries.len() as u64;
        self.applied_since_checkpoint.1 += entries.iter().map(|e| e.data.len() as u64).sum::<u64>();
        let Some(p) = self.peers.get_mut(&region_id) else {
            return Ok(());
        };
        let was_leader = p.is_leader();
        let old_start = p.region().start_key.clone();
        let events = p.apply(entries, &self.kv, store_id);
        for event in events {
            match event {
                Applied::Split(regions) => {
                    self.on_split(region_id, &old_start, regions, was_leader)?
                }
                Applied::ConfChanged => {
                    if let Some(p) = self.peers.get(&region_id) {
                        for x in &p.region().peers {
                            self.peer_stores.insert(x.id, x.store_id);
                        }
                    }
                }
                Applied::Removed => self.destroy(region_id, "removed by a conf change"),
            }
        }
        Ok(())
    }

    /// The new regions of a split: replicas here (from the split's state at TiKV's initial
    /// index, plus whatever raft-engine already has for them after a restart).
    fn on_split(
        &mut self,
        parent_id: u64,
        old_start: &[u8],
        regions: Vec<metapb::Region>,
        leader: bool,
    ) -> Result<(), RaftstoreError> {
        let store_id = self.cfg.store_id;
        if self.ranges.get(old_start) == Some(&parent_id) {
            self.ranges.remove(old_start);
        }
        if let Some(p) = self.peers.get(&parent_id) {
            self.ranges.insert(p.region().start_key.clone(), parent_id);
        }
        for r in &regions {
            if self.tombstones.contains_key(&r.id) {
                // Its replica here was already removed: nobody here owns this range.
                self.kv.borrow_mut().delete_range(&r.start_key, &r.end_key);
                continue;
            }
            if let Some(existing) = self.peers.get(&r.id) {
                if existing.initialized {
                    // It got a snapshot already (it moved on without us).
                    continue;
                }
                self.peers.remove(&r.id);
            }
            let Some(me) = region::peer_on(r, store_id).map(|p| p.id) else {
                continue;
            };
            let hs = self
                .raftlog
                .hard_state(r.id)?
                .unwrap_or_else(|| hard_state(INIT_TERM, INIT_INDEX));
            self.add_peer(r.clone(), me, hs, INIT_INDEX, INIT_TERM)?;
            let p = self.peers.get_mut(&r.id).expect("just added");
            p.report_now = true;
            if leader {
                // The parent's leader leads the new regions too, as in TiKV.
                let _ = p.raw.campaign();
                p.split_from_leader = true;
            }
        }
        if leader {
            let mut all = regions;
            if let Some(p) = self.peers.get(&parent_id) {
                all.push(p.region().clone());
            }
            let _ = self.ch.pd.send(PdTask::ReportSplit(all));
        }
        Ok(())
    }

    fn apply_snapshot(
        &mut self,
        region_id: u64,
        snap: &eraftpb::Snapshot,
        batch: &mut Batch,
    ) -> Result<(), RaftstoreError> {
        let (meta, pairs) = checkpoint::decode(&mut snap.get_data(), std::path::Path::new(""))?;
        let Some(region) = meta.regions.into_iter().next().and_then(|s| s.region) else {
            return Ok(());
        };
        let p = self.peers.get_mut(&region_id).expect("caller checked");
        let old = p.region().clone();
        {
            let mut kv = self.kv.borrow_mut();
            if p.initialized {
                kv.delete_range(&old.start_key, &old.end_key);
            }
            kv.replace_range(&region.start_key, &region.end_key, pairs);
        }
        if p.initialized && self.ranges.get(&old.start_key) == Some(&region_id) {
            self.ranges.remove(&old.start_key);
        }
        self.ranges.insert(region.start_key.clone(), region_id);
        for x in &region.peers {
            self.peer_stores.insert(x.id, x.store_id);
        }
        tracing::info!(
            region_id,
            index = snap.get_metadata().index,
            "applied a snapshot"
        );
        p.raw
            .mut_store()
            .apply_snapshot(snap.get_metadata(), region);
        p.initialized = true;
        p.size_dirty = true;
        // The old log is superseded; the hard state (with the vote) is written again after the
        // clean, and a newer one from this ready, if any, after that.
        batch.clean(region_id);
        batch.hard_state(region_id, &p.raw.store().hard_state)?;
        self.need_checkpoint = true;
        Ok(())
    }

    fn send(&mut self, region_id: u64, msgs: Vec<eraftpb::Message>) {
        if msgs.is_empty() {
            return;
        }
        let Some(p) = self.peers.get(&region_id) else {
            return;
        };
        let from = p.meta().unwrap_or(metapb::Peer {
            id: p.peer_id,
            store_id: self.cfg.store_id,
            ..Default::default()
        });
        let r = p.region();
        for mut m in msgs {
            let to_id = m.to;
            let to = r.peers.iter().find(|x| x.id == to_id).copied().or_else(|| {
                self.peer_stores.get(&to_id).map(|&store_id| metapb::Peer {
                    id: to_id,
                    store_id,
                    ..Default::default()
                })
            });
            let Some(to) = to else {
                tracing::debug!(region_id, to_id, "no store known for peer; message dropped");
                continue;
            };
            let snapshot = (m.get_msg_type() == MessageType::MsgSnapshot)
                .then(|| m.mut_snapshot().take_data().to_vec());
            let msg = RaftMessage {
                region_id,
                from_peer: Some(from),
                to_peer: Some(to),
                message: m.write_to_bytes().unwrap_or_default(),
                region_epoch: r.region_epoch,
                is_tombstone: false,
                start_key: r.start_key.clone(),
                end_key: r.end_key.clone(),
            };
            self.outbox.push(Outbound {
                to_store: to.store_id,
                msg,
                snapshot,
            });
        }
    }

    // ---- PD reports, checkpoints, the view --------------------------------------------------------

    fn report(&mut self, now: Instant, ticked: bool) {
        if !ticked && !self.report_all && !self.peers.values().any(|p| p.report_now) {
            return;
        }
        let period = self.cfg.timing.pd_heartbeat;
        let down = self.cfg.timing.max_peer_down;
        let force = std::mem::take(&mut self.report_all);
        for p in self.peers.values_mut() {
            if let Some(hb) = p.heartbeat(now, period, down, force) {
                let _ = self.ch.pd.send(PdTask::Heartbeat(hb));
            }
        }
    }

    fn maybe_checkpoint(&mut self, now: Instant) -> Result<(), RaftstoreError> {
        let (entries, bytes) = self.applied_since_checkpoint;
        let due = entries >= CHECKPOINT_ENTRIES
            || bytes >= CHECKPOINT_BYTES
            || (entries > 0 && now.duration_since(self.last_checkpoint) >= CHECKPOINT_PERIOD);
        if due || self.need_checkpoint {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Writes the state machine (every replica's applied state and the map) and compacts the
    /// logs up to it.
    fn checkpoint(&mut self) -> Result<(), RaftstoreError> {
        let started = Instant::now();
        let mut regions: Vec<_> = self
            .peers
            .values()
            .filter(|p| p.initialized)
            .map(|p| p.raw.store().region_state(p.peer_id))
            .collect();
        regions.sort_by_key(|r| r.region.as_ref().map(|r| r.id));
        let meta = Meta {
            regions,
            tombstones: self
                .tombstones
                .iter()
                .map(|(&region_id, &epoch)| Tombstone {
                    region_id,
                    epoch: Some(epoch),
                })
                .collect(),
        };
        {
            let kv = self.kv.borrow();
            checkpoint::save(
                &self.cfg.checkpoint_path,
                &meta,
                kv.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
            )?;
        }
        self.need_checkpoint = false;
        self.applied_since_checkpoint = (0, 0);
        self.last_checkpoint = Instant::now();
        for (id, p) in &mut self.peers {
            let applied = p.raw.store().applied_index;
            if p.initialized && applied > p.raw.store().truncated_index() {
                p.raw.mut_store().compact_to(applied);
                self.raftlog.compact_to(*id, applied + 1);
            }
        }
        let mut clean = Batch::default();
        for id in self.pending_clean.drain(..) {
            if !self.peers.contains_key(&id) {
                clean.clean(id);
            }
        }
        self.raftlog.write(&mut clean, true)?;
        tracing::debug!(took = ?started.elapsed(), keys = self.kv.borrow().len(), "checkpoint written");
        Ok(())
    }

    fn publish(&mut self) {
        let kv = self.kv.borrow();
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        view.leaders = self.peers.values().filter(|p| p.is_leader()).count();
        view.regions = self.peers.values().filter(|p| p.initialized).count();
        view.keys = kv.len() as u64;
        view.bytes = kv.bytes();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn summarize(p: &Peer) -> RegionSummary {
    let r = p.region();
    let (conf_ver, version) = region::epoch(r);
    RegionSummary {
        id: r.id,
        peer_id: p.peer_id,
        role: format!("{:?}", p.raw.raft.state).to_lowercase(),
        term: p.raw.raft.term,
        leader_peer_id: p.raw.raft.leader_id,
        conf_ver,
        version,
        start_key: hex(&r.start_key),
        end_key: hex(&r.end_key),
        peers: r
            .peers
            .iter()
            .map(|x| (x.id, x.store_id, x.role().as_str_name().to_string()))
            .collect(),
        applied_index: p.raw.store().applied_index,
        approximate: p.approximate,
        initialized: p.initialized,
    }
}

/// What a client's Raw* call result becomes (for the gRPC layer).
pub fn busy() -> KvResult {
    Err(region::server_is_busy("store is stopping"))
}

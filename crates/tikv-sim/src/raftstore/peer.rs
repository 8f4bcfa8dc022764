//! One replica of a region: its raft node (raft-rs), the proposals and reads waiting on it, and
//! how committed entries change the region and the key-value data.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pdclient::proto::metapb::{self, PeerRole};
use pdclient::proto::pdpb;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, Entry, EntryType};
use raft::{ProgressState, RawNode, ReadOnlyOption, StateRole};

use crate::config::Timing;
use crate::engine::kv::Kv;
use crate::raftstore::cmd::{
    ConfChangeCtx, KvResult, OpKind, Output, RaftCmd, ReadOp, SplitCmd, WriteOp,
};
use crate::raftstore::region::{self, RegionError};
use crate::raftstore::storage::PeerStorage;

/// Largest entry a client write may make (TiKV's raft-entry-max-size default).
pub const MAX_ENTRY_SIZE: usize = 8 << 20;
/// A transfer target may lag this many entries (TiKV's leader-transfer-max-log-lag); raft-rs
/// then sends it the rest and only hands over once it has everything.
const TRANSFER_MAX_LAG: u64 = 128;

type Reply = tokio::sync::oneshot::Sender<KvResult>;

struct Proposal {
    index: u64,
    term: u64,
    reply: Reply,
}

/// A read waiting for the read index, then for the apply index to reach it.
pub struct Read {
    op: ReadOp,
    version: u64,
    reply: Reply,
}

/// What applying entries did beyond the data.
#[derive(Debug)]
pub enum Applied {
    /// The region split; these are the new regions (this one kept the rightmost part).
    Split(Vec<metapb::Region>),
    /// The peers changed.
    ConfChanged,
    /// This replica was removed from the region.
    Removed,
}

/// Bytes and keys read and written since the last region heartbeat.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flow {
    /// Bytes written.
    pub bytes_written: u64,
    /// Keys written.
    pub keys_written: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Keys read.
    pub keys_read: u64,
}

/// What PD last heard from this leader; a heartbeat goes out when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportKey {
    epoch: (u64, u64),
    term: u64,
    peers: Vec<(u64, i32)>,
    pending: Vec<u64>,
    down: Vec<u64>,
}

/// One replica.
pub struct Peer {
    /// This replica's peer ID.
    pub peer_id: u64,
    /// The raft node.
    pub raw: RawNode<PeerStorage>,
    /// Whether it has a range and data (a replica created by a message waits for a snapshot).
    pub initialized: bool,
    proposals: VecDeque<Proposal>,
    reads_new: Vec<Read>,
    reads_waiting: VecDeque<(u64, Instant, Vec<Read>)>,
    reads_ready: VecDeque<(u64, Vec<Read>)>,
    was_leader: bool,
    /// When each other peer was last heard from (leader's view: down peers).
    last_seen: HashMap<u64, Instant>,
    /// Reads and writes since the last heartbeat.
    pub flow: Flow,
    /// Approximate size and keys, from the last split check.
    pub approximate: (u64, u64),
    /// Written since the last split check.
    pub size_dirty: bool,
    /// Regions split off this one (for EpochNotMatch's current regions).
    pub split_children: Vec<u64>,
    last_heartbeat: Option<(Instant, u64)>,
    reported: Option<ReportKey>,
    /// A heartbeat is due now (leader change, conf change, split).
    pub report_now: bool,
    /// Created by a split on the parent leader's store: it reports itself to PD once before
    /// its election completes (as TiKV does), so PD's key space has no gap meanwhile.
    pub split_from_leader: bool,
    /// When a split was asked for (PD answers asynchronously).
    pub split_asked: Option<Instant>,
    /// Since when the replica has known no leader.
    pub leaderless_since: Option<Instant>,
    /// When PD was last asked whether this replica is stale.
    pub stale_checked: Option<Instant>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// raft-rs' configuration for a replica, from the store's timers.
pub fn raft_config(peer_id: u64, applied: u64, timing: &Timing) -> raft::Config {
    let ticks = |d: Duration| (d.as_millis() / timing.base_tick.as_millis().max(1)).max(1) as usize;
    raft::Config {
        id: peer_id,
        election_tick: ticks(timing.election_timeout),
        heartbeat_tick: ticks(timing.raft_heartbeat),
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        // A leader that cannot reach a quorum steps down; a follower that hears its leader
        // refuses to vote (so a returning store cannot disrupt a live leader).
        check_quorum: true,
        pre_vote: true,
        // Reads confirm leadership with a heartbeat round (no clock assumptions).
        read_only_option: ReadOnlyOption::Safe,
        ..raft::Config::default()
    }
}

impl Peer {
    /// A replica over `storage`.
    pub fn new(
        peer_id: u64,
        storage: PeerStorage,
        timing: &Timing,
        logger: &slog::Logger,
    ) -> raft::Result<Peer> {
        let initialized = !storage.region.peers.is_empty();
        let cfg = raft_config(peer_id, storage.applied_index, timing);
        let logger = logger.new(slog::o!("region_id" => storage.region.id, "peer_id" => peer_id));
        let raw = RawNode::new(&cfg, storage, &logger)?;
        Ok(Peer {
            peer_id,
            raw,
            initialized,
            proposals: VecDeque::new(),
            reads_new: Vec::new(),
            reads_waiting: VecDeque::new(),
            reads_ready: VecDeque::new(),
            was_leader: false,
            last_seen: HashMap::new(),
            flow: Flow::default(),
            approximate: (0, 0),
            size_dirty: true,
            split_children: Vec::new(),
            last_heartbeat: None,
            reported: None,
            report_now: false,
            split_from_leader: false,
            split_asked: None,
            leaderless_since: None,
            stale_checked: None,
        })
    }

    /// The region as applied.
    pub fn region(&self) -> &metapb::Region {
        &self.raw.store().region
    }

    /// The region ID.
    pub fn region_id(&self) -> u64 {
        self.raw.store().region.id
    }

    /// Whether this replica leads its region.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// This replica's peer as the region lists it.
    pub fn meta(&self) -> Option<metapb::Peer> {
        self.region()
            .peers
            .iter()
            .find(|p| p.id == self.peer_id)
            .copied()
    }

    /// The leader, if known and in the region.
    pub fn leader(&self) -> Option<metapb::Peer> {
        let id = self.raw.raft.leader_id;
        self.region().peers.iter().find(|p| p.id == id).copied()
    }

    /// The region error for a request that only a leader may serve, if this is not one.
    pub fn not_leader(&self) -> Option<RegionError> {
        (!self.is_leader()).then(|| region::not_leader(self.region_id(), self.leader()))
    }

    /// Notes that `from` sent a message (for down-peer detection).
    pub fn heard_from(&mut self, from: u64, now: Instant) {
        self.last_seen.insert(from, now);
    }

    // ---- requests -----------------------------------------------------------------------------

    /// Proposes writes; the reply comes once the entry is applied (or it fails).
    pub fn propose_write(&mut self, ops: Vec<WriteOp>, reply: Reply) {
        let cmd = RaftCmd {
            version: region::epoch(self.region()).1,
            ops,
            split: None,
        };
        self.propose(cmd, reply);
    }

    /// Proposes a split with PD's IDs.
    pub fn propose_split(&mut self, keys: Vec<Vec<u8>>, ids: Vec<pdpb::SplitId>) {
        let cmd = RaftCmd {
            version: region::epoch(self.region()).1,
            ops: Vec::new(),
            split: Some(SplitCmd { keys, ids }),
        };
        let data = cmd.encode_to_vec();
        if let Err(e) = self.raw.propose(Vec::new(), data) {
            tracing::info!(region_id = self.region_id(), error = %e, "split not proposed");
        }
    }

    fn propose(&mut self, cmd: RaftCmd, reply: Reply) {
        let data = cmd.encode_to_vec();
        if data.len() > MAX_ENTRY_SIZE {
            let _ = reply.send(Err(region::entry_too_large(
                self.region_id(),
                data.len() as u64,
            )));
            return;
        }
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), data) {
            Ok(()) if self.raw.raft.raft_log.last_index() == before + 1 => {
                self.proposals.push_back(Proposal {
                    index: before + 1,
                    term: self.raw.raft.term,
                    reply,
                });
            }
            // Dropped: not leader any more, or handing leadership over.
            _ => {
                let hint = self
                    .raw
                    .raft
                    .lead_transferee
                    .and_then(|id| self.region().peers.iter().find(|p| p.id == id).copied())
                    .or_else(|| self.leader().filter(|p| p.id != self.peer_id));
                let _ = reply.send(Err(region::not_leader(self.region_id(), hint)));
            }
        }
    }

    /// Queues a read; [`Peer::start_reads`] asks raft for the read index.
    pub fn read(&mut self, op: ReadOp, reply: Reply) {
        let version = region::epoch(self.region()).1;
        self.reads_new.push(Read { op, version, reply });
    }

    /// Asks raft for one read index covering the reads queued since the last call. raft-rs
    /// drops a read index request (silently) until the leader has committed an entry of its
    /// term, and a confirmation can be lost with a message: such reads wait here and are asked
    /// for again after `retry`.
    pub fn start_reads(&mut self, ctx: u64, now: Instant, retry: Duration) -> bool {
        if self
            .reads_waiting
            .front()
            .is_some_and(|w| now.duration_since(w.1) >= retry)
        {
            let stuck: Vec<Read> = self.reads_waiting.drain(..).flat_map(|w| w.2).collect();
            self.reads_new.extend(stuck);
        }
        if self.reads_new.is_empty() || !self.is_leader() || !self.raw.raft.commit_to_current_term()
        {
            return false;
        }
        let reads = std::mem::take(&mut self.reads_new);
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.reads_waiting.push_back((ctx, now, reads));
        true
    }

    /// Whether reads wait for a read index to be asked for.
    pub fn has_reads(&self) -> bool {
        !self.reads_new.is_empty() || !self.reads_waiting.is_empty()
    }

    /// raft confirmed leadership for the reads of `ctx` as of commit `index`.
    pub fn on_read_state(&mut self, ctx: &[u8], index: u64) {
        let Ok(ctx) = <[u8; 8]>::try_from(ctx).map(u64::from_be_bytes) else {
            return;
        };
        if let Some(pos) = self.reads_waiting.iter().position(|w| w.0 == ctx) {
            // Earlier contexts were confirmed by the same round (raft answers in order).
            for (_, _, reads) in self.reads_waiting.drain(..=pos) {
                self.reads_ready.push_back((index, reads));
            }
        }
    }

    /// Serves the reads whose read index is applied.
    pub fn serve_reads(&mut self, kv: &Kv) {
        let applied = self.raw.store().applied_index;
        while self.reads_ready.front().is_some_and(|(i, _)| *i <= applied) {
            let (_, reads) = self.reads_ready.pop_front().expect("checked");
            for r in reads {
                let result = self.exec_read(kv, &r);
                let _ = r.reply.send(result);
            }
        }
    }

    fn exec_read(&mut self, kv: &Kv, r: &Read) -> KvResult {
        let region = self.region().clone();
        if region::epoch(&region).1 != r.version {
            return Err(region::epoch_not_match(vec![region]));
        }
        let out = match &r.op {
            ReadOp::Get(key) => {
                let v = kv.get(key).map(<[u8]>::to_vec);
                self.flow.keys_read += 1;
                self.flow.bytes_read += (key.len() + v.as_ref().map_or(0, Vec::len)) as u64;
                Output::Value(v)
            }
            ReadOp::BatchGet(keys) => {
                let pairs: Vec<_> = keys
                    .iter()
                    .filter_map(|k| kv.get(k).map(|v| (k.clone(), v.to_vec())))
                    .collect();
                self.count_read(&pairs);
                Output::Pairs(pairs)
            }
            ReadOp::Scan {
                start,
                end,
                limit,
                key_only,
                reverse,
            } => {
                let (lo, hi) = if *reverse { (end, start) } else { (start, end) };
                let lo = if lo.as_slice() < region.start_key.as_slice() {
                    &region.start_key
                } else {
                    lo
                };
                let hi = match (hi.is_empty(), region.end_key.is_empty()) {
                    (true, _) => &region.end_key,
                    (false, false) if hi.as_slice() > region.end_key.as_slice() => &region.end_key,
                    _ => hi,
                };
                let mut pairs = kv.scan(lo, hi, *limit, *reverse);
                self.count_read(&pairs);
                if *key_only {
                    for p in &mut pairs {
                        p.1.clear();
                    }
                }
                Output::Pairs(pairs)
            }
        };
        Ok(out)
    }

    fn count_read(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) {
        self.flow.keys_read += pairs.len() as u64;
        self.flow.bytes_read += pairs
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum::<u64>();
    }

    /// Answers everything pending with `err` (leadership lost, replica destroyed).
    pub fn fail_pending(&mut self, err: impl Fn() -> RegionError) {
        for p in self.proposals.drain(..) {
            let _ = p.reply.send(Err(err()));
        }
        let reads = self
            .reads_new
            .drain(..)
            .chain(self.reads_waiting.drain(..).flat_map(|w| w.2))
            .chain(self.reads_ready.drain(..).flat_map(|(_, r)| r));
        for r in reads {
            let _ = r.reply.send(Err(err()));
        }
    }

    /// After a ready: notices leadership changes. Returns true if it became leader.
    pub fn on_role(&mut self, now: Instant) -> bool {
        let leader = self.is_leader();
        let became = leader && !self.was_leader;
        if self.was_leader && !leader {
            // Outcome unknown to us: TiKV answers StaleCommand; reads were not served.
            for p in self.proposals.drain(..) {
                let _ = p.reply.send(Err(region::stale_command()));
            }
            let region_id = self.region_id();
            let hint = self.leader();
            let mut pending = std::mem::take(&mut self.reads_new);
            pending.extend(self.reads_waiting.drain(..).flat_map(|w| w.2));
            pending.extend(self.reads_ready.drain(..).flat_map(|(_, r)| r));
            for r in pending {
                let _ = r.reply.send(Err(region::not_leader(region_id, hint)));
            }
        }
        if became {
            // Everyone counts as alive when we take over; silence from now on makes them down.
            let ids: Vec<u64> = self.region().peers.iter().map(|p| p.id).collect();
            for id in ids {
                self.last_seen.insert(id, now);
            }
            self.report_now = true;
        }
        self.was_leader = leader;
        if self.raw.raft.leader_id == raft::INVALID_ID {
            self.leaderless_since.get_or_insert(now);
        } else {
            self.leaderless_since = None;
        }
        became
    }

    // ---- apply --------------------------------------------------------------------------------

    /// Applies committed entries to the region and the data, answers the proposals they
    /// settle, and says what else happened.
    pub fn apply(
        &mut self,
        entries: Vec<Entry>,
        kv: &Rc<RefCell<Kv>>,
        store_id: u64,
    ) -> Vec<Applied> {
        let mut events = Vec::new();
        for e in entries {
            let (index, term) = (e.index, e.term);
            let result = match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => Ok(Output::Written),
                EntryType::EntryNormal => match RaftCmd::decode(e.data.as_ref()) {
                    Ok(cmd) => self.apply_cmd(cmd, &mut kv.borrow_mut(), &mut events),
                    Err(err) => {
                        tracing::error!(region_id = self.region_id(), index, error = %err, "undecodable raft entry skipped");
                        Ok(Output::Written)
                    }
                },
                EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&e, store_id, &mut events);
                    Ok(Output::Written)
                }
                EntryType::EntryConfChange => Ok(Output::Written),
            };
            let store = self.raw.mut_store();
            store.applied_index = index;
            store.applied_term = term;
            while self.proposals.front().is_some_and(|p| p.index <= index) {
                let p = self.proposals.pop_front().expect("checked");
                let r = if p.index == index && p.term == term {
                    result.clone()
                } else {
                    Err(region::stale_command())
                };
                let _ = p.reply.send(r);
            }
            if events.iter().any(|e| matches!(e, Applied::Removed)) {
                break;
            }
        }
        events
    }

    fn apply_cmd(&mut self, cmd: RaftCmd, kv: &mut Kv, events: &mut Vec<Applied>) -> KvResult {
        let region = self.region().clone();
        if cmd.version != region::epoch(&region).1 {
            return Err(region::epoch_not_match(vec![region]));
        }
        if let Some(split) = cmd.split {
            match region::split_region(&region, &split.ids, &split.keys) {
                Ok(mut regions) => {
                    let me = regions.pop().expect("split_region returns the parent last");
                    self.raw.mut_store().region = me;
                    self.size_dirty = true;
                    self.report_now = true;
                    self.split_asked = None;
                    self.split_children.extend(regions.iter().map(|r| r.id));
                    let excess = self.split_children.len().saturating_sub(16);
                    self.split_children.drain(..excess);
                    events.push(Applied::Split(regions));
                }
                Err(e) => tracing::warn!(region_id = region.id, error = %e, "split refused"),
            }
            return Ok(Output::Written);
        }
        for op in &cmd.ops {
            let (key, bound) = op.keys();
            if !region::contains(&region, key) {
                return Err(region::key_not_in_region(key, &region));
            }
            if let Some(b) = bound
                && !region::contains_bound(&region, b)
            {
                return Err(region::key_not_in_region(b, &region));
            }
        }
        let mut out = Output::Written;
        for op in cmd.ops {
            self.flow.keys_written += 1;
            self.flow.bytes_written += (op.key.len() + op.value.len()) as u64;
            match op.kind() {
                OpKind::Put => kv.put(op.key, op.value),
                OpKind::Delete => kv.delete(&op.key),
                OpKind::DeleteRange => {
                    let end = if op.end_key.is_empty() {
                        &region.end_key
                    } else {
                        &op.end_key
                    };
                    kv.delete_range(&op.key, end);
                }
                OpKind::CompareAndSwap => {
                    let previous = kv.get(&op.key).map(<[u8]>::to_vec);
                    let succeed = match &previous {
                        None => op.prev_not_exist,
                        Some(v) => !op.prev_not_exist && *v == op.prev_value,
                    };
                    if succeed {
                        kv.put(op.key, op.value);
                    }
                    out = Output::Cas { succeed, previous };
                }
            }
        }
        self.size_dirty = true;
        Ok(out)
    }

    fn apply_conf_change(&mut self, e: &Entry, store_id: u64, events: &mut Vec<Applied>) {
        let region_id = self.region_id();
        let (cc, ctx) = match (
            ConfChangeV2::parse_from_bytes(&e.data),
            ConfChangeCtx::decode(e.context.as_ref()),
        ) {
            (Ok(cc), Ok(ctx)) => (cc, ctx),
            _ => {
                tracing::error!(
                    region_id,
                    index = e.index,
                    "undecodable conf change skipped"
                );
                return;
            }
        };
        let new = match region::apply_conf_change(
            self.region(),
            &ctx.changes,
            ctx.v2,
            ctx.leader_store,
        ) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            // Checked before proposing; the raft configuration stays as the region says.
            Err(err) => {
                tracing::warn!(region_id, error = %err, "conf change refused at apply");
                return;
            }
        };
        match self.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                let store = self.raw.mut_store();
                store.conf_state = cs;
                store.region = new;
            }
            Err(err) => {
                tracing::error!(region_id, error = %err, "raft refused a committed conf change");
                return;
            }
        }
        self.report_now = true;
        if self.is_leader() {
            // New peers hear from the leader now, not at the next heartbeat tick (2 s by
            // default): the first message creates their replica and leads to its snapshot.
            self.raw.ping();
        }
        tracing::info!(region_id, peers = ?self.region().peers.iter().map(|p| (p.id, p.store_id, p.role)).collect::<Vec<_>>(), "conf change applied");
        if !self
            .region()
            .peers
            .iter()
            .any(|p| p.id == self.peer_id && p.store_id == store_id)
        {
            events.push(Applied::Removed);
        } else {
            events.push(Applied::ConfChanged);
        }
    }

    // ---- PD -----------------------------------------------------------------------------------

    /// Proposes PD's conf change if it is valid now.
    pub fn propose_conf_change(&mut self, changes: Vec<pdpb::ChangePeer>, v2: bool, store_id: u64) {
        let region_id = self.region_id();
        match region::apply_conf_change(self.region(), &changes, v2, store_id) {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                tracing::info!(region_id, error = %e, "PD's conf change refused");
                return;
            }
        }
        if self.raw.raft.has_pending_conf() {
            return;
        }
        let cc = region::raft_conf_change(&changes);
        let ctx = ConfChangeCtx {
            changes,
            v2,
            leader_store: store_id,
        };
        if let Err(e) = self.raw.propose_conf_change(ctx.encode_to_vec(), cc) {
            tracing::info!(region_id, error = %e, "conf change not proposed");
        }
    }

    /// Whether `peer_id` is a voter that has (nearly) all of the log and was heard from lately.
    pub fn caught_up(&self, peer_id: u64, max_lag: u64, now: Instant, alive: Duration) -> bool {
        let voter = self
            .region()
            .peers
            .iter()
            .any(|p| p.id == peer_id && p.role() == PeerRole::Voter);
        let last = self.raw.raft.raft_log.last_index();
        let matched = self.raw.raft.prs().get(peer_id).map(|pr| pr.matched);
        let heard = self
            .last_seen
            .get(&peer_id)
            .is_some_and(|t| now.duration_since(*t) < alive);
        voter && heard && matched.is_some_and(|m| m + max_lag >= last)
    }

    /// Hands leadership to `peer_id` if it is a caught-up voter (PD's TransferLeader).
    pub fn transfer_leader(&mut self, peer_id: u64, now: Instant, alive: Duration) -> bool {
        if !self.is_leader() || peer_id == self.peer_id {
            return false;
        }
        if !self.caught_up(peer_id, TRANSFER_MAX_LAG, now, alive) {
            tracing::info!(
                region_id = self.region_id(),
                to = peer_id,
                "transfer refused: target is not caught up"
            );
            return false;
        }
        self.raw.transfer_leader(peer_id);
        true
    }

    /// A fully caught-up voter to hand leadership to when this store stops.
    pub fn handoff_target(&self, now: Instant, alive: Duration) -> Option<u64> {
        self.region()
            .peers
            .iter()
            .map(|p| p.id)
            .filter(|&id| id != self.peer_id)
            .find(|&id| self.caught_up(id, 0, now, alive))
    }

    fn report_key(&self, now: Instant, down_after: Duration) -> ReportKey {
        ReportKey {
            epoch: region::epoch(self.region()),
            term: self.raw.raft.term,
            peers: self.region().peers.iter().map(|p| (p.id, p.role)).collect(),
            pending: self.pending_peers().iter().map(|p| p.id).collect(),
            down: self
                .down_peers(now, down_after)
                .iter()
                .map(|d| d.0.id)
                .collect(),
        }
    }

    fn pending_peers(&self) -> Vec<metapb::Peer> {
        let truncated = self.raw.store().truncated_index();
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.peer_id)
            .filter(|p| {
                self.raw.raft.prs().get(p.id).is_none_or(|pr| {
                    pr.state == ProgressState::Snapshot || pr.matched < truncated || pr.matched == 0
                })
            })
            .copied()
            .collect()
    }

    fn down_peers(&self, now: Instant, down_after: Duration) -> Vec<(metapb::Peer, u64)> {
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.peer_id)
            .filter_map(|p| {
                let quiet = self
                    .last_seen
                    .get(&p.id)
                    .map_or(down_after, |t| now.duration_since(*t));
                (quiet >= down_after).then_some((*p, quiet.as_secs()))
            })
            .collect()
    }

    /// A region heartbeat if one is due: right after a change PD must see (leader, conf change,
    /// split, pending or down peers), and every `period` anyway.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        period: Duration,
        down_after: Duration,
        force: bool,
    ) -> Option<pdpb::RegionHeartbeatRequest> {
        let announce = std::mem::take(&mut self.split_from_leader);
        if !(self.is_leader() || announce) || !self.initialized {
            return None;
        }
        let key = self.report_key(now, down_after);
        let due = force
            || self.report_now
            || self.reported.as_ref() != Some(&key)
            || self
                .last_heartbeat
                .is_none_or(|(t, _)| now.duration_since(t) >= period);
        if !due {
            return None;
        }
        let unix = unix_now();
        let start = self.last_heartbeat.map_or(unix, |(_, u)| u);
        self.report_now = false;
        self.last_heartbeat = Some((now, unix));
        self.reported = Some(key);
        let flow = std::mem::take(&mut self.flow);
        let region = self.region().clone();
        let down = if announce {
            Vec::new()
        } else {
            self.down_peers(now, down_after)
        };
        Some(pdpb::RegionHeartbeatRequest {
            header: None,
            // A split's new region on the parent leader's store is about to lead (announce).
            leader: self.meta(),
            // Before its first election a replica knows nothing of the others' progress.
            down_peers: down
                .into_iter()
                .map(|(peer, down_seconds)| pdpb::PeerStats {
                    peer: Some(peer),
                    down_seconds,
                })
                .collect(),
            pending_peers: if announce {
                Vec::new()
            } else {
                self.pending_peers()
            },
            bytes_written: flow.bytes_written,
            bytes_read: flow.bytes_read,
            keys_written: flow.keys_written,
            keys_read: flow.keys_read,
            approximate_size: self.approximate.0,
            approximate_keys: self.approximate.1,
            interval: Some(pdpb::TimeInterval {
                start_timestamp: start,
                end_timestamp: unix,
            }),
            term: self.raw.raft.term,
            region: Some(region),
        })
    }
}

//! The replication logic of one simulated store: a deliberately small raft.
//!
//! A region's state (range, epoch, peers) is the only "log" there is. The leader owns it, applies
//! PD's commands to it, and replicates the whole state to the other peers' stores with every
//! raft heartbeat ([`AppendRequest`]). Raft's safety rules are kept where PD can observe them:
//!
//! * terms and votes, with a pre-vote and a leader lease, so exactly one store leads a region and
//!   a store that was frozen cannot depose a working leader when it comes back; PD's
//!   transfer-leader makes the target run a forced election (raft's TimeoutNow), so a transfer
//!   request that arrives late cannot create a second leader either;
//! * a change (conf change, split, new leader) is reported to PD only after a quorum of voters
//!   holds it (in both halves of a joint configuration), and a candidate only wins with a state
//!   at least as new as a quorum's, so PD never sees a region go backwards;
//! * conf changes follow TiKV's rules: simple changes, joint consensus for `ChangePeerV2` with
//!   several changes (IncomingVoter/DemotingVoter, left with an empty `ChangePeerV2`), no removal
//!   or demotion of the leader itself.
//!
//! Everything here is synchronous and takes the current time as an argument; the network and
//! PD are driven by [`crate::store`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pdclient::proto::eraftpb::ConfChangeType;
use pdclient::proto::metapb::{self, PeerRole};
use pdclient::proto::pdpb;

use crate::config::{REGION_KEYS, REGION_SIZE, Timing};
use crate::msg::{
    AppendRequest, AppendResponse, AppendResult, Campaign, PersistedPeer, RegionCopy, StoreFile,
    Tombstone, TransferRequest, TransferResponse, VoteRequest, VoteResponse, VoteResult,
};

/// The replicas of one store and their raft state.
#[derive(Debug)]
pub struct Node {
    cluster_id: u64,
    store_id: u64,
    timing: Timing,
    peers: BTreeMap<u64, Peer>,
    tombstones: BTreeMap<u64, u64>,
    prepared_bootstrap: u64,
    dirty: bool,
    rng: u64,
}

#[derive(Debug)]
struct Peer {
    peer_id: u64,
    region: metapb::Region,
    term: u64,
    leader_peer_id: u64,
    applied_term: u64,
    vote: u64,
    role: Role,
    last_leader_contact: Instant,
    election_deadline: Instant,
    campaigning: bool,
    /// The leader asked this replica to take over: campaign at once, ignoring leases.
    transfer_requested: bool,
    last_stale_check: Option<Instant>,
}

#[derive(Debug)]
enum Role {
    Follower,
    Candidate,
    Leader(Box<LeaderState>),
}

#[derive(Debug)]
struct LeaderState {
    since: Instant,
    /// What each other store last acknowledged, by store ID.
    progress: HashMap<u64, Progress>,
    /// The state before the last change while that change is not committed: its voters decide
    /// the commit (raft commits a conf change under the configuration it replaces).
    prev_region: Option<metapb::Region>,
    committed: bool,
    /// Stores whose peer was removed and that have not confirmed dropping it.
    removal_notices: BTreeSet<u64>,
    reported: Option<ReportKey>,
    last_report: Option<Instant>,
    busy_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    term: u64,
    conf_ver: u64,
    version: u64,
    peer_id: u64,
    last_ack: Instant,
}

/// What PD last heard about a region; a heartbeat is sent when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportKey {
    conf_ver: u64,
    version: u64,
    term: u64,
    peers: Vec<(u64, i32)>,
    pending: Vec<u64>,
    down: Vec<u64>,
}

/// What to do after PD's answer on the heartbeat stream.
#[derive(Debug)]
pub enum Command {
    /// Nothing changed.
    None,
    /// The region changed: replicate it now.
    Replicate,
    /// Ask another store to take over a region.
    Transfer(TransferPlan),
    /// Split a region at these keys (PD's `SplitRegion`, e.g. at keyspace boundaries).
    Split {
        /// The region as it is now.
        region: metapb::Region,
        /// Split keys, sorted, strictly inside the region.
        keys: Vec<Vec<u8>>,
    },
}

/// Which round of an election a vote request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteKind {
    /// "Would you vote for me?" (nobody's term changes).
    PreVote,
    /// The vote itself, after a successful pre-vote.
    Vote,
    /// A vote the leader asked for (leader transfer): no pre-vote, leases ignored.
    Forced,
}

/// A leader transfer to carry out.
#[derive(Debug, Clone)]
pub struct TransferPlan {
    /// Region.
    pub region_id: u64,
    /// Store of the new leader.
    pub to_store: u64,
    /// The leader's term when it sent the request.
    pub term: u64,
    /// The message for the target store.
    pub request: TransferRequest,
}

/// A replica as shown on the status server's `/sim/regions`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionSummary {
    /// Region ID.
    pub id: u64,
    /// This store's peer.
    pub peer_id: u64,
    /// leader, candidate or follower.
    pub role: &'static str,
    /// Raft term.
    pub term: u64,
    /// Leader peer known to this replica (0: none).
    pub leader_peer_id: u64,
    /// Epoch.
    pub conf_ver: u64,
    /// Epoch.
    pub version: u64,
    /// Peers as (id, store, role name).
    pub peers: Vec<(u64, u64, String)>,
}

// ---- region helpers --------------------------------------------------------------------------

fn epoch(r: &metapb::Region) -> (u64, u64) {
    r.region_epoch
        .map(|e| (e.conf_ver, e.version))
        .unwrap_or((0, 0))
}

fn set_epoch(r: &mut metapb::Region, conf_ver: u64, version: u64) {
    r.region_epoch = Some(metapb::RegionEpoch { conf_ver, version });
}

fn peer_on(r: &metapb::Region, store_id: u64) -> Option<&metapb::Peer> {
    r.peers.iter().find(|p| p.store_id == store_id)
}

fn in_joint(r: &metapb::Region) -> bool {
    r.peers
        .iter()
        .any(|p| matches!(p.role(), PeerRole::IncomingVoter | PeerRole::DemotingVoter))
}

fn can_vote(p: &metapb::Peer) -> bool {
    p.role() != PeerRole::Learner
}

/// The voter sets that must each have a majority: one set, or both halves of a joint config.
fn quorum_groups(r: &metapb::Region) -> Vec<Vec<&metapb::Peer>> {
    if in_joint(r) {
        let incoming = r
            .peers
            .iter()
            .filter(|p| matches!(p.role(), PeerRole::Voter | PeerRole::IncomingVoter))
            .collect();
        let outgoing = r
            .peers
            .iter()
            .filter(|p| matches!(p.role(), PeerRole::Voter | PeerRole::DemotingVoter))
            .collect();
        vec![incoming, outgoing]
    } else {
        vec![
            r.peers
                .iter()
                .filter(|p| p.role() == PeerRole::Voter)
                .collect(),
        ]
    }
}

fn has_quorum(r: &metapb::Region, ok: impl Fn(&metapb::Peer) -> bool) -> bool {
    quorum_groups(r).iter().all(|g| {
        // An empty configuration is trivially satisfied (raft-rs does the same).
        g.is_empty() || 2 * g.iter().filter(|p| ok(p)).count() > g.len()
    })
}

fn role_name(role: PeerRole) -> String {
    role.as_str_name().to_string()
}

/// Applies PD's `ChangePeer`/`ChangePeerV2` to a region the way TiKV does. `Ok(None)` means the
/// change is already in place (PD repeats commands until it sees them applied).
pub fn apply_conf_change(
    region: &metapb::Region,
    changes: &[pdpb::ChangePeer],
    v2: bool,
    leader_store: u64,
) -> Result<Option<metapb::Region>, String> {
    let joint = in_joint(region);
    let (conf_ver, version) = epoch(region);
    if v2 && changes.is_empty() {
        if !joint {
            return Ok(None);
        }
        let mut r = region.clone();
        if peer_on(&r, leader_store).is_some_and(|p| p.role() == PeerRole::DemotingVoter) {
            return Err("cannot leave joint state while demoting the leader".into());
        }
        for p in &mut r.peers {
            match p.role() {
                PeerRole::IncomingVoter => p.set_role(PeerRole::Voter),
                PeerRole::DemotingVoter => p.set_role(PeerRole::Learner),
                _ => {}
            }
        }
        set_epoch(&mut r, conf_ver + 1, version);
        return Ok(Some(r));
    }
    if changes.len() == 1 {
        if joint {
            return Err("region is in joint state".into());
        }
        return simple_change(region, &changes[0], leader_store);
    }
    if !v2 {
        return Err("ChangePeer carries exactly one change".into());
    }
    if joint {
        return Err("region is already in joint state".into());
    }
    let mut r = region.clone();
    for change in changes {
        let target = change.peer.ok_or("change without peer")?;
        let existing = r.peers.iter().position(|p| p.store_id == target.store_id);
        if let Some(i) = existing
            && r.peers[i].id != target.id
        {
            return Err(format!(
                "store {} already has peer {}",
                target.store_id, r.peers[i].id
            ));
        }
        match (change.change_type(), existing) {
            (ConfChangeType::AddNode, Some(i)) => match r.peers[i].role() {
                PeerRole::Learner => r.peers[i].set_role(PeerRole::IncomingVoter),
                role => return Err(format!("cannot promote a {}", role.as_str_name())),
            },
            (ConfChangeType::AddNode, None) => r.peers.push(metapb::Peer {
                role: PeerRole::IncomingVoter as i32,
                ..target
            }),
            (ConfChangeType::AddLearnerNode, Some(i)) => match r.peers[i].role() {
                PeerRole::Voter => r.peers[i].set_role(PeerRole::DemotingVoter),
                role => return Err(format!("cannot demote a {}", role.as_str_name())),
            },
            (ConfChangeType::AddLearnerNode, None) => r.peers.push(metapb::Peer {
                role: PeerRole::Learner as i32,
                ..target
            }),
            (ConfChangeType::RemoveNode, Some(i)) => match r.peers[i].role() {
                PeerRole::Learner => {
                    r.peers.remove(i);
                }
                _ => return Err("cannot remove a voter directly in joint state".into()),
            },
            (ConfChangeType::RemoveNode, None) => {}
        }
    }
    set_epoch(&mut r, conf_ver + changes.len() as u64, version);
    Ok(Some(r))
}

fn simple_change(
    region: &metapb::Region,
    change: &pdpb::ChangePeer,
    leader_store: u64,
) -> Result<Option<metapb::Region>, String> {
    let target = change.peer.ok_or("change without peer")?;
    let (conf_ver, version) = epoch(region);
    let mut r = region.clone();
    let existing = r.peers.iter().position(|p| p.store_id == target.store_id);
    if let Some(i) = existing
        && r.peers[i].id != target.id
    {
        return Err(format!(
            "store {} already has peer {}",
            target.store_id, r.peers[i].id
        ));
    }
    match (change.change_type(), existing) {
        (ConfChangeType::AddNode, Some(i)) => match r.peers[i].role() {
            PeerRole::Voter => return Ok(None),
            _ => r.peers[i].set_role(PeerRole::Voter),
        },
        (ConfChangeType::AddNode, None) => r.peers.push(metapb::Peer {
            role: PeerRole::Voter as i32,
            ..target
        }),
        (ConfChangeType::AddLearnerNode, Some(i)) => match r.peers[i].role() {
            PeerRole::Learner => return Ok(None),
            _ if target.store_id == leader_store => return Err("cannot demote the leader".into()),
            _ => r.peers[i].set_role(PeerRole::Learner),
        },
        (ConfChangeType::AddLearnerNode, None) => r.peers.push(metapb::Peer {
            role: PeerRole::Learner as i32,
            ..target
        }),
        (ConfChangeType::RemoveNode, None) => return Ok(None),
        (ConfChangeType::RemoveNode, Some(_)) if target.store_id == leader_store => {
            return Err("cannot remove the leader".into());
        }
        (ConfChangeType::RemoveNode, Some(i)) => {
            r.peers.remove(i);
        }
    }
    set_epoch(&mut r, conf_ver + 1, version);
    Ok(Some(r))
}

/// Splits `region` at `keys` the way TiKV's batch split does with `right_derive`: the new IDs
/// take the left parts, the original ID keeps the rightmost part, and every resulting region gets
/// the version bumped by the number of new regions. `keys` must be sorted and strictly inside the
/// region, one per entry of `ids`.
pub fn split_region(
    region: &metapb::Region,
    ids: &[pdpb::SplitId],
    keys: &[Vec<u8>],
) -> Result<Vec<metapb::Region>, String> {
    if ids.len() != keys.len() {
        return Err(format!("{} split ids for {} keys", ids.len(), keys.len()));
    }
    let inside =
        |k: &Vec<u8>| *k > region.start_key && (region.end_key.is_empty() || *k < region.end_key);
    if !keys.iter().all(inside) || !keys.windows(2).all(|w| w[0] < w[1]) {
        return Err("split keys must be sorted and inside the region".into());
    }
    let (conf_ver, version) = epoch(region);
    let new_version = version + ids.len() as u64;
    let mut out = Vec::with_capacity(ids.len() + 1);
    let mut start = region.start_key.clone();
    for (id, end) in ids.iter().zip(keys) {
        if id.new_peer_ids.len() != region.peers.len() {
            return Err(format!(
                "split id {} has {} peer ids for {} peers",
                id.new_region_id,
                id.new_peer_ids.len(),
                region.peers.len()
            ));
        }
        let peers = region
            .peers
            .iter()
            .zip(&id.new_peer_ids)
            .map(|(p, &new_id)| metapb::Peer { id: new_id, ..*p })
            .collect();
        let mut r = metapb::Region {
            id: id.new_region_id,
            start_key: start,
            end_key: end.clone(),
            region_epoch: None,
            peers,
        };
        set_epoch(&mut r, conf_ver, new_version);
        out.push(r);
        start = end.clone();
    }
    let mut last = region.clone();
    last.start_key = start;
    set_epoch(&mut last, conf_ver, new_version);
    out.push(last);
    Ok(out)
}

/// The keys that split the bootstrap region (all keys) into `n` regions.
pub fn initial_split_keys(n: u32) -> Vec<Vec<u8>> {
    (1..n).map(|i| format!("sim{i:06}").into_bytes()).collect()
}

/// Some key strictly between `start` and `end` (empty `end`: unbounded), for PD's split
/// policies that leave the key to TiKV. TiKV would pick the middle of the data; there is none.
pub fn key_between(start: &[u8], end: &[u8]) -> Option<Vec<u8>> {
    let mut k = start.to_vec();
    if end.is_empty() || !end.starts_with(start) {
        // start ++ [0xff] sorts after start and, if end diverges from start, before end.
        k.push(0xff);
        return (end.is_empty() || k.as_slice() < end).then_some(k);
    }
    // end = start ++ rest: walk down rest's leading zero bytes, then go just below.
    for &b in &end[start.len()..] {
        if b > 0 {
            k.push(b - 1);
            k.push(0xff);
            return Some(k);
        }
        k.push(0);
    }
    None
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---- the node --------------------------------------------------------------------------------

impl Node {
    /// A node for store `store_id`, restoring the replicas in `file`. Every replica starts as a
    /// follower, as a restarted TiKV does.
    pub fn new(
        cluster_id: u64,
        store_id: u64,
        timing: Timing,
        file: Option<&StoreFile>,
        now: Instant,
    ) -> Node {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32)
            ^ store_id;
        let mut node = Node {
            cluster_id,
            store_id,
            timing,
            peers: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            prepared_bootstrap: file.map(|f| f.prepared_bootstrap_region).unwrap_or(0),
            dirty: false,
            rng: seed | 1,
        };
        if let Some(file) = file {
            for t in &file.tombstones {
                node.tombstones.insert(t.region_id, t.conf_ver);
            }
            for pp in &file.peers {
                let Some(copy) = &pp.copy else { continue };
                let Some(region) = &copy.region else { continue };
                let deadline = now + node.election_timeout();
                node.peers.insert(
                    region.id,
                    Peer {
                        peer_id: pp.peer_id,
                        region: region.clone(),
                        term: copy.term,
                        // We may have led before the restart; we do not any more.
                        leader_peer_id: if copy.leader_peer_id == pp.peer_id {
                            0
                        } else {
                            copy.leader_peer_id
                        },
                        applied_term: copy.applied_term,
                        vote: pp.vote,
                        role: Role::Follower,
                        // No lease after a restart: do not stand in the way of elections.
                        last_leader_contact: now
                            .checked_sub(timing.election_timeout)
                            .unwrap_or(now),
                        election_deadline: deadline,
                        campaigning: false,
                        transfer_requested: false,
                        last_stale_check: None,
                    },
                );
            }
        }
        node
    }

    /// This store's ID.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The PD cluster ID.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The persistent part of the state.
    pub fn to_file(&self) -> StoreFile {
        StoreFile {
            cluster_id: self.cluster_id,
            store_id: self.store_id,
            peers: self
                .peers
                .values()
                .map(|p| PersistedPeer {
                    copy: Some(p.copy()),
                    peer_id: p.peer_id,
                    vote: p.vote,
                })
                .collect(),
            tombstones: self
                .tombstones
                .iter()
                .map(|(&region_id, &conf_ver)| Tombstone {
                    region_id,
                    conf_ver,
                })
                .collect(),
            prepared_bootstrap_region: self.prepared_bootstrap,
        }
    }

    /// Whether the persistent state changed since the last call (and resets the flag).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Replicas on this store.
    pub fn region_count(&self) -> usize {
        self.peers.len()
    }

    /// Replicas that lead their region.
    pub fn leader_count(&self) -> usize {
        self.peers
            .values()
            .filter(|p| matches!(p.role, Role::Leader(_)))
            .count()
    }

    /// Whether this store has a replica of `region_id`.
    pub fn has_region(&self, region_id: u64) -> bool {
        self.peers.contains_key(&region_id)
    }

    /// Checks that a message from another store is meant for this store.
    pub fn check_addressee(&self, cluster_id: u64, to_store: u64) -> Result<(), String> {
        if cluster_id != self.cluster_id {
            return Err(format!(
                "cluster {cluster_id} is not this store's cluster {}",
                self.cluster_id
            ));
        }
        if to_store != self.store_id {
            return Err(format!(
                "this is store {}, not store {to_store}",
                self.store_id
            ));
        }
        Ok(())
    }

    fn election_timeout(&mut self) -> Duration {
        // xorshift64*: a randomised timeout in [T, 2T) keeps replicas from campaigning in lockstep.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let t = self.timing.election_timeout;
        t + t.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// The region offered in a Bootstrap call whose outcome is not known yet.
    pub fn prepared_bootstrap_region(&self) -> Option<metapb::Region> {
        self.peers
            .get(&self.prepared_bootstrap)
            .map(|p| p.region.clone())
    }

    /// PD accepted our Bootstrap: the prepared region is the cluster's first region.
    pub fn confirm_bootstrap(&mut self) {
        self.prepared_bootstrap = 0;
        self.dirty = true;
    }

    /// Another store bootstrapped the cluster: drop the region we prepared.
    pub fn abandon_bootstrap(&mut self) {
        let id = std::mem::take(&mut self.prepared_bootstrap);
        self.peers.remove(&id);
        self.dirty = true;
    }

    /// Adds the first region of the cluster before asking PD to bootstrap with it, so that a
    /// crash right after PD accepted cannot lose it (the region stays "prepared" until
    /// [`Node::confirm_bootstrap`] or [`Node::abandon_bootstrap`]). Its single voter elects
    /// itself at once.
    pub fn add_bootstrap_region(&mut self, region: metapb::Region, peer_id: u64, now: Instant) {
        self.prepared_bootstrap = region.id;
        self.peers.insert(
            region.id,
            Peer {
                peer_id,
                region,
                term: 0,
                leader_peer_id: 0,
                applied_term: 0,
                vote: 0,
                role: Role::Follower,
                last_leader_contact: now,
                election_deadline: now,
                campaigning: false,
                transfer_requested: false,
                last_stale_check: None,
            },
        );
        self.dirty = true;
    }

    fn destroy(&mut self, region_id: u64, conf_ver: u64) {
        if self.peers.remove(&region_id).is_some() {
            tracing::info!(region_id, conf_ver, "replica removed from region");
            self.tombstones.insert(region_id, conf_ver);
            self.dirty = true;
        }
    }

    // ---- replication -----------------------------------------------------------------------

    /// Stores that need an [`AppendRequest`] from us.
    pub fn append_targets(&self) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for p in self.peers.values() {
            if let Role::Leader(ls) = &p.role {
                out.extend(
                    p.region
                        .peers
                        .iter()
                        .map(|q| q.store_id)
                        .filter(|&s| s != self.store_id),
                );
                out.extend(ls.removal_notices.iter().copied());
            }
        }
        out
    }

    /// The append message for `to_store`, if we lead anything it must hear about.
    pub fn build_append(&self, to_store: u64) -> Option<AppendRequest> {
        let regions: Vec<RegionCopy> = self
            .peers
            .values()
            .filter(|p| match &p.role {
                Role::Leader(ls) => {
                    peer_on(&p.region, to_store).is_some() || ls.removal_notices.contains(&to_store)
                }
                _ => false,
            })
            .map(Peer::copy)
            .collect();
        if regions.is_empty() {
            return None;
        }
        Some(AppendRequest {
            cluster_id: self.cluster_id,
            from_store: self.store_id,
            to_store,
            regions,
        })
    }

    /// Follower side of an [`AppendRequest`]: adopt the leader's state (creating or dropping
    /// our replica as its peer list says) unless we know a newer term.
    pub fn handle_append(&mut self, req: &AppendRequest, now: Instant) -> AppendResponse {
        let mut results = Vec::with_capacity(req.regions.len());
        for copy in &req.regions {
            let Some(region) = &copy.region else { continue };
            let (conf_ver, version) = epoch(region);
            let mine = peer_on(region, self.store_id).map(|p| p.id);
            let region_id = region.id;
            let timeout = self.election_timeout();
            let Some(p) = self.peers.get_mut(&region_id) else {
                let stale = self
                    .tombstones
                    .get(&region_id)
                    .is_some_and(|&cv| conf_ver <= cv);
                let created = match mine {
                    Some(peer_id) if !stale => {
                        tracing::info!(
                            region_id,
                            peer_id,
                            from_store = req.from_store,
                            "replica created"
                        );
                        self.tombstones.remove(&region_id);
                        self.peers.insert(
                            region_id,
                            Peer {
                                peer_id,
                                region: region.clone(),
                                term: copy.term,
                                leader_peer_id: copy.leader_peer_id,
                                applied_term: copy.applied_term,
                                vote: 0,
                                role: Role::Follower,
                                last_leader_contact: now,
                                election_deadline: now + timeout,
                                campaigning: false,
                                transfer_requested: false,
                                last_stale_check: None,
                            },
                        );
                        self.dirty = true;
                        peer_id
                    }
                    _ => 0,
                };
                results.push(AppendResult {
                    region_id,
                    term: copy.term,
                    accepted: true,
                    peer_id: created,
                    conf_ver,
                    version,
                });
                continue;
            };
            if copy.term < p.term {
                let (cv, v) = epoch(&p.region);
                results.push(AppendResult {
                    region_id,
                    term: p.term,
                    accepted: false,
                    peer_id: p.peer_id,
                    conf_ver: cv,
                    version: v,
                });
                continue;
            }
            if copy.term > p.term {
                p.vote = 0;
            }
            if matches!(p.role, Role::Leader(_)) {
                tracing::info!(
                    region_id,
                    term = copy.term,
                    "leader stepped down: another leader has the same or a newer term"
                );
            }
            p.role = Role::Follower;
            p.campaigning = false;
            p.term = copy.term;
            p.leader_peer_id = copy.leader_peer_id;
            p.region = region.clone();
            p.applied_term = copy.applied_term;
            p.last_leader_contact = now;
            p.election_deadline = now + timeout;
            self.dirty = true;
            match mine {
                Some(peer_id) => {
                    p.peer_id = peer_id;
                    results.push(AppendResult {
                        region_id,
                        term: copy.term,
                        accepted: true,
                        peer_id,
                        conf_ver,
                        version,
                    });
                }
                None => {
                    self.destroy(region_id, conf_ver);
                    results.push(AppendResult {
                        region_id,
                        term: copy.term,
                        accepted: true,
                        peer_id: 0,
                        conf_ver,
                        version,
                    });
                }
            }
        }
        AppendResponse { results }
    }

    /// Leader side: record what `from_store` acknowledged; step down on a newer term.
    pub fn on_append_response(&mut self, from_store: u64, resp: &AppendResponse, now: Instant) {
        let me = self.store_id;
        for r in &resp.results {
            let timeout = self.election_timeout();
            let Some(p) = self.peers.get_mut(&r.region_id) else {
                continue;
            };
            if r.term > p.term {
                tracing::info!(
                    region_id = r.region_id,
                    from_store,
                    term = r.term,
                    "stepping down: a store knows a newer term"
                );
                p.term = r.term;
                p.vote = 0;
                p.leader_peer_id = 0;
                p.role = Role::Follower;
                p.last_leader_contact =
                    now.checked_sub(self.timing.election_timeout).unwrap_or(now);
                p.election_deadline = now + timeout;
                self.dirty = true;
                continue;
            }
            let term = p.term;
            let Role::Leader(ls) = &mut p.role else {
                continue;
            };
            if !r.accepted || r.term != term {
                continue;
            }
            ls.progress.insert(
                from_store,
                Progress {
                    term: r.term,
                    conf_ver: r.conf_ver,
                    version: r.version,
                    peer_id: r.peer_id,
                    last_ack: now,
                },
            );
            if r.peer_id == 0 {
                // The store confirmed it holds no replica (an ack of an older append that still
                // listed it would carry its peer ID).
                ls.removal_notices.remove(&from_store);
            }
            try_commit(p, me);
        }
    }

    // ---- elections -------------------------------------------------------------------------

    /// Replicas whose leader has been silent past their election timeout. Single-voter regions
    /// elect themselves on the spot; the others are returned to campaign over the network.
    pub fn due_campaigns(&mut self, now: Instant) -> Vec<u64> {
        let me = self.store_id;
        let due: Vec<u64> = self
            .peers
            .values()
            .filter(|p| {
                matches!(p.role, Role::Follower)
                    && !p.campaigning
                    && now >= p.election_deadline
                    && peer_on(&p.region, me).is_some_and(can_vote)
            })
            .map(|p| p.region.id)
            .collect();
        let mut out = Vec::new();
        for id in due {
            let timeout = self.election_timeout();
            let p = self.peers.get_mut(&id).expect("listed above");
            p.election_deadline = now + timeout;
            if has_quorum(&p.region, |q| q.store_id == me) {
                p.term += 1;
                p.vote = p.peer_id;
                become_leader(p, me, now);
                self.dirty = true;
            } else {
                p.campaigning = true;
                out.push(id);
            }
        }
        out
    }

    /// Vote requests for `regions`, one message per voter store.
    pub fn vote_requests(&self, regions: &[u64], kind: VoteKind) -> Vec<VoteRequest> {
        let pre_vote = kind == VoteKind::PreVote;
        let mut by_store: BTreeMap<u64, Vec<Campaign>> = BTreeMap::new();
        for id in regions {
            let Some(p) = self.peers.get(id) else {
                continue;
            };
            let eligible = if pre_vote {
                matches!(p.role, Role::Follower) && p.campaigning
            } else {
                matches!(p.role, Role::Candidate)
            };
            if !eligible {
                continue;
            }
            let (conf_ver, version) = epoch(&p.region);
            let campaign = Campaign {
                region_id: *id,
                term: if pre_vote { p.term + 1 } else { p.term },
                candidate_peer_id: p.peer_id,
                applied_term: p.applied_term,
                conf_ver,
                version,
            };
            for q in p
                .region
                .peers
                .iter()
                .filter(|q| can_vote(q) && q.store_id != self.store_id)
            {
                by_store
                    .entry(q.store_id)
                    .or_default()
                    .push(campaign.clone());
            }
        }
        by_store
            .into_iter()
            .map(|(to_store, campaigns)| VoteRequest {
                cluster_id: self.cluster_id,
                from_store: self.store_id,
                to_store,
                pre_vote,
                campaigns,
                force: kind == VoteKind::Forced,
            })
            .collect()
    }

    /// Replicas the leader asked to take over: they become candidates in the next term at once
    /// (no pre-vote) and are returned to campaign with [`VoteKind::Forced`].
    pub fn start_forced_campaigns(&mut self) -> Vec<u64> {
        let me = self.store_id;
        let mut out = Vec::new();
        for p in self.peers.values_mut() {
            if !std::mem::take(&mut p.transfer_requested)
                || p.campaigning
                || !matches!(p.role, Role::Follower)
            {
                continue;
            }
            if !peer_on(&p.region, me)
                .is_some_and(|q| matches!(q.role(), PeerRole::Voter | PeerRole::IncomingVoter))
            {
                continue;
            }
            p.term += 1;
            p.vote = p.peer_id;
            p.leader_peer_id = 0;
            p.role = Role::Candidate;
            p.campaigning = true;
            self.dirty = true;
            out.push(p.region.id);
        }
        out
    }

    /// Voter side of a [`VoteRequest`].
    pub fn handle_vote(&mut self, req: &VoteRequest, now: Instant) -> VoteResponse {
        let lease = self.timing.election_timeout;
        let mut results = Vec::with_capacity(req.campaigns.len());
        for c in &req.campaigns {
            let timeout = self.election_timeout();
            let Some(p) = self.peers.get_mut(&c.region_id) else {
                results.push(VoteResult {
                    region_id: c.region_id,
                    term: 0,
                    granted: false,
                });
                continue;
            };
            let reject = |p: &Peer| VoteResult {
                region_id: c.region_id,
                term: p.term,
                granted: false,
            };
            // Leader lease: while a leader is alive, nobody else is elected (and nobody's term
            // moves), so a replica that was merely slow cannot disrupt the region.
            let has_leader = !req.force
                && (matches!(p.role, Role::Leader(_))
                    || (p.leader_peer_id != 0
                        && now.duration_since(p.last_leader_contact) < lease));
            let (conf_ver, version) = epoch(&p.region);
            let up_to_date =
                (c.applied_term, c.conf_ver + c.version) >= (p.applied_term, conf_ver + version);
            if has_leader || !up_to_date {
                results.push(reject(p));
                continue;
            }
            if req.pre_vote {
                results.push(VoteResult {
                    region_id: c.region_id,
                    term: p.term,
                    granted: c.term > p.term,
                });
                continue;
            }
            if c.term < p.term {
                results.push(reject(p));
                continue;
            }
            if c.term > p.term {
                if matches!(p.role, Role::Leader(_)) {
                    tracing::info!(
                        region_id = c.region_id,
                        term = c.term,
                        "leader stepped down for a campaign in a newer term"
                    );
                }
                p.term = c.term;
                p.vote = 0;
                p.leader_peer_id = 0;
                p.role = Role::Follower;
                self.dirty = true;
            }
            let granted = p.vote == 0 || p.vote == c.candidate_peer_id;
            if granted {
                p.vote = c.candidate_peer_id;
                // Having voted, give the candidate time to win before campaigning ourselves.
                p.election_deadline = now + timeout;
                self.dirty = true;
            }
            results.push(VoteResult {
                region_id: c.region_id,
                term: p.term,
                granted,
            });
        }
        VoteResponse { results }
    }

    fn tally(&self, region_id: u64, responses: &[(u64, VoteResponse)]) -> (bool, u64) {
        let Some(p) = self.peers.get(&region_id) else {
            return (false, 0);
        };
        let mut granted: HashSet<u64> = HashSet::from([self.store_id]);
        let mut max_term = 0;
        for (store, resp) in responses {
            for r in resp.results.iter().filter(|r| r.region_id == region_id) {
                max_term = max_term.max(r.term);
                if r.granted {
                    granted.insert(*store);
                }
            }
        }
        (
            has_quorum(&p.region, |q| granted.contains(&q.store_id)),
            max_term,
        )
    }

    /// Counts pre-votes; regions with a quorum become candidates in the next term. Returns them.
    pub fn on_pre_votes(&mut self, regions: &[u64], responses: &[(u64, VoteResponse)]) -> Vec<u64> {
        let mut out = Vec::new();
        for &id in regions {
            let (won, _) = self.tally(id, responses);
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if won && matches!(p.role, Role::Follower) && p.campaigning {
                p.term += 1;
                p.vote = p.peer_id;
                p.leader_peer_id = 0;
                p.role = Role::Candidate;
                self.dirty = true;
                out.push(id);
            }
        }
        out
    }

    /// Counts votes; candidates with a quorum become leaders.
    pub fn on_votes(&mut self, regions: &[u64], responses: &[(u64, VoteResponse)], now: Instant) {
        let me = self.store_id;
        for &id in regions {
            let (won, max_term) = self.tally(id, responses);
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if !matches!(p.role, Role::Candidate) {
                continue;
            }
            if max_term > p.term {
                p.term = max_term;
                p.vote = 0;
                p.role = Role::Follower;
                self.dirty = true;
            } else if won {
                become_leader(p, me, now);
                self.dirty = true;
            }
        }
    }

    /// Ends the campaigns of `regions`; a candidate that did not win returns to follower.
    pub fn end_campaigns(&mut self, regions: &[u64], now: Instant) {
        for &id in regions {
            let timeout = self.election_timeout();
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            p.campaigning = false;
            if matches!(p.role, Role::Candidate) {
                p.role = Role::Follower;
                p.election_deadline = now + timeout;
            }
        }
    }

    // ---- PD commands and leader transfer ---------------------------------------------------

    /// Applies one message from PD's region heartbeat stream.
    pub fn on_pd_command(&mut self, resp: &pdpb::RegionHeartbeatResponse, now: Instant) -> Command {
        if resp.region_id == 0 {
            // Keep-alive, or an error about a heartbeat (logged by the caller).
            return Command::None;
        }
        let me = self.store_id;
        let rpc_timeout = self.timing.raft_rpc_timeout();
        let Some(p) = self.peers.get_mut(&resp.region_id) else {
            tracing::debug!(
                region_id = resp.region_id,
                "PD command for a region we do not have"
            );
            return Command::None;
        };
        let (conf_ver, version) = epoch(&p.region);
        let term = p.term;
        let Role::Leader(ls) = &mut p.role else {
            tracing::debug!(
                region_id = resp.region_id,
                "PD command, but we do not lead the region"
            );
            return Command::None;
        };
        if let Some(e) = resp.region_epoch
            && (e.conf_ver, e.version) != (conf_ver, version)
        {
            // PD decided on a state we have moved on from (or not yet reported).
            tracing::debug!(
                region_id = resp.region_id,
                "PD command with a stale epoch ignored"
            );
            return Command::None;
        }
        if !ls.committed {
            return Command::None;
        }
        if let Some(tl) = &resp.transfer_leader {
            if ls
                .busy_since
                .is_some_and(|t| now.duration_since(t) < 2 * rpc_timeout)
            {
                return Command::None;
            }
            let candidates: Vec<metapb::Peer> = if tl.peers.is_empty() {
                tl.peer.iter().copied().collect()
            } else {
                tl.peers.clone()
            };
            let valid = |c: &&metapb::Peer| {
                c.store_id != me
                    && p.region.peers.iter().any(|q| {
                        q.id == c.id
                            && q.store_id == c.store_id
                            && matches!(q.role(), PeerRole::Voter | PeerRole::IncomingVoter)
                    })
            };
            // Prefer a target that answered recently, as TiKV prefers an up-to-date follower.
            let alive = |c: &&metapb::Peer| {
                ls.progress
                    .get(&c.store_id)
                    .is_some_and(|pr| now.duration_since(pr.last_ack) < rpc_timeout * 4)
            };
            let target = candidates
                .iter()
                .filter(valid)
                .find(alive)
                .or_else(|| candidates.iter().find(valid))
                .copied();
            let Some(target) = target else {
                tracing::debug!(
                    region_id = resp.region_id,
                    "transfer-leader target is not a voter of the region"
                );
                return Command::None;
            };
            ls.busy_since = Some(now);
            let request = TransferRequest {
                cluster_id: self.cluster_id,
                from_store: me,
                to_store: target.store_id,
                copy: Some(p.copy()),
                target_peer_id: target.id,
            };
            return Command::Transfer(TransferPlan {
                region_id: resp.region_id,
                to_store: target.store_id,
                term,
                request,
            });
        }
        if let Some(split) = &resp.split_region {
            if ls
                .busy_since
                .is_some_and(|t| now.duration_since(t) < 2 * rpc_timeout)
            {
                return Command::None;
            }
            let r = &p.region;
            let keys: Vec<Vec<u8>> = if split.policy() == pdpb::CheckPolicy::Usekey {
                let mut keys: Vec<Vec<u8>> = split
                    .keys
                    .iter()
                    .filter(|k| **k > r.start_key && (r.end_key.is_empty() || **k < r.end_key))
                    .cloned()
                    .collect();
                keys.sort();
                keys.dedup();
                keys
            } else {
                key_between(&r.start_key, &r.end_key).into_iter().collect()
            };
            if keys.is_empty() {
                return Command::None;
            }
            ls.busy_since = Some(now);
            return Command::Split {
                region: p.region.clone(),
                keys,
            };
        }
        let (changes, v2) = match (&resp.change_peer_v2, &resp.change_peer) {
            (Some(v2), _) => (v2.changes.clone(), true),
            (None, Some(cp)) => (vec![*cp], false),
            (None, None) => {
                if resp.merge.is_some() {
                    tracing::warn!(
                        region_id = resp.region_id,
                        "PD asked for a merge, which tikv-sim does not simulate"
                    );
                }
                return Command::None;
            }
        };
        match apply_conf_change(&p.region, &changes, v2, me) {
            Ok(Some(new_region)) => {
                tracing::info!(
                    region_id = resp.region_id,
                    conf_ver = epoch(&new_region).0,
                    peers = ?new_region.peers.iter().map(|q| (q.id, q.store_id, q.role)).collect::<Vec<_>>(),
                    "conf change applied"
                );
                for old in &p.region.peers {
                    if peer_on(&new_region, old.store_id).is_none() {
                        ls.removal_notices.insert(old.store_id);
                    }
                }
                ls.prev_region = Some(std::mem::replace(&mut p.region, new_region));
                ls.committed = false;
                p.applied_term = term;
                try_commit(p, me);
                self.dirty = true;
                Command::Replicate
            }
            Ok(None) => {
                // Already applied: make sure PD hears it.
                ls.reported = None;
                Command::None
            }
            Err(e) => {
                tracing::info!(region_id = resp.region_id, error = %e, "conf change rejected");
                Command::None
            }
        }
    }

    /// Leader side after a transfer request: the target campaigns on its own (and this leader
    /// steps down when it receives the campaign's vote request); here we only learn of a newer
    /// term.
    pub fn on_transfer_result(
        &mut self,
        plan: &TransferPlan,
        result: Option<&TransferResponse>,
        now: Instant,
    ) {
        let timeout = self.election_timeout();
        let Some(p) = self.peers.get_mut(&plan.region_id) else {
            return;
        };
        if let Role::Leader(ls) = &mut p.role {
            ls.busy_since = None;
        }
        if let Some(resp) = result
            && resp.term > p.term
        {
            p.term = resp.term;
            p.vote = 0;
            p.leader_peer_id = 0;
            p.role = Role::Follower;
            p.election_deadline = now + timeout;
            self.dirty = true;
        }
    }

    /// Target side of a leader transfer: adopt the leader's state (as from an append) and
    /// campaign at once with [`VoteKind::Forced`] (see [`Node::start_forced_campaigns`]).
    pub fn handle_transfer(&mut self, req: &TransferRequest, now: Instant) -> TransferResponse {
        let me = self.store_id;
        let Some(copy) = &req.copy else {
            return TransferResponse {
                accepted: false,
                term: 0,
            };
        };
        let Some(region) = &copy.region else {
            return TransferResponse {
                accepted: false,
                term: 0,
            };
        };
        let ok_role = peer_on(region, me).is_some_and(|q| {
            q.id == req.target_peer_id
                && matches!(q.role(), PeerRole::Voter | PeerRole::IncomingVoter)
        });
        let known_term = self.peers.get(&region.id).map(|p| p.term).unwrap_or(0);
        if !ok_role || copy.term < known_term {
            return TransferResponse {
                accepted: false,
                term: known_term,
            };
        }
        let append = AppendRequest {
            cluster_id: req.cluster_id,
            from_store: req.from_store,
            to_store: me,
            regions: vec![copy.clone()],
        };
        self.handle_append(&append, now);
        let Some(p) = self.peers.get_mut(&region.id) else {
            return TransferResponse {
                accepted: false,
                term: known_term,
            };
        };
        p.transfer_requested = true;
        tracing::info!(
            region_id = region.id,
            from_store = req.from_store,
            "asked to take over leadership"
        );
        TransferResponse {
            accepted: true,
            term: p.term,
        }
    }

    // ---- reporting to PD -------------------------------------------------------------------

    /// Region heartbeats for the committed regions we lead whose report changed or is due.
    pub fn region_heartbeats(&mut self, now: Instant) -> Vec<pdpb::RegionHeartbeatRequest> {
        let me = self.store_id;
        let interval = self.timing.pd_heartbeat;
        let max_down = self.timing.max_peer_down;
        let header = pdpb::RequestHeader {
            cluster_id: self.cluster_id,
            ..Default::default()
        };
        let unix = unix_now();
        let mut out = Vec::new();
        for p in self.peers.values_mut() {
            let Role::Leader(ls) = &mut p.role else {
                continue;
            };
            if !ls.committed {
                continue;
            }
            let mut pending = Vec::new();
            let mut down = Vec::new();
            for q in p.region.peers.iter().filter(|q| q.store_id != me) {
                let pr = ls.progress.get(&q.store_id);
                if pr.is_none_or(|pr| pr.peer_id != q.id) {
                    pending.push(*q);
                }
                let last = pr.map(|pr| pr.last_ack).unwrap_or(ls.since);
                let silent = now.duration_since(last);
                if silent > max_down {
                    down.push(pdpb::PeerStats {
                        peer: Some(*q),
                        down_seconds: silent.as_secs(),
                    });
                }
            }
            let (conf_ver, version) = epoch(&p.region);
            let key = ReportKey {
                conf_ver,
                version,
                term: p.term,
                peers: p.region.peers.iter().map(|q| (q.id, q.role)).collect(),
                pending: pending.iter().map(|q| q.id).collect(),
                down: down.iter().filter_map(|d| d.peer.map(|q| q.id)).collect(),
            };
            let due = ls
                .last_report
                .is_none_or(|t| now.duration_since(t) >= interval);
            if !due && ls.reported.as_ref() == Some(&key) {
                continue;
            }
            let start = ls
                .last_report
                .map(|t| unix.saturating_sub(now.duration_since(t).as_secs()))
                .unwrap_or(unix);
            ls.reported = Some(key);
            ls.last_report = Some(now);
            out.push(pdpb::RegionHeartbeatRequest {
                header: Some(header.clone()),
                region: Some(p.region.clone()),
                leader: peer_on(&p.region, me).copied(),
                down_peers: down,
                pending_peers: pending,
                approximate_size: REGION_SIZE,
                approximate_keys: REGION_KEYS,
                interval: Some(pdpb::TimeInterval {
                    start_timestamp: start,
                    end_timestamp: unix,
                }),
                term: p.term,
                ..Default::default()
            });
        }
        out
    }

    /// Makes every led region report again (a new heartbeat stream binds to PD this way).
    pub fn force_report(&mut self) {
        for p in self.peers.values_mut() {
            if let Role::Leader(ls) = &mut p.role {
                ls.reported = None;
                ls.last_report = None;
            }
        }
    }

    // ---- bootstrap split -------------------------------------------------------------------

    /// The region to split into the initial regions: one we lead, committed and already known
    /// to PD, that still covers the whole key space (so the cluster was never split).
    pub fn split_candidate(&self) -> Option<metapb::Region> {
        self.peers.values().find_map(|p| match &p.role {
            Role::Leader(ls)
                if ls.committed
                    && ls.last_report.is_some()
                    && p.region.start_key.is_empty()
                    && p.region.end_key.is_empty() =>
            {
                Some(p.region.clone())
            }
            _ => None,
        })
    }

    /// Applies a batch split of `region` at `keys` with PD's IDs. `None` if the region changed
    /// in between (the split is then dropped; PD's IDs are simply unused).
    pub fn apply_split(
        &mut self,
        region: &metapb::Region,
        ids: &[pdpb::SplitId],
        keys: &[Vec<u8>],
        now: Instant,
    ) -> Result<Option<Vec<metapb::Region>>, String> {
        let me = self.store_id;
        let Some(p) = self.peers.get_mut(&region.id) else {
            return Ok(None);
        };
        if let Role::Leader(ls) = &mut p.role {
            ls.busy_since = None;
        }
        if !matches!(p.role, Role::Leader(_)) || p.region != *region {
            return Ok(None);
        }
        let regions = split_region(region, ids, keys)?;
        let (term, applied_term) = (p.term, p.term);
        for r in &regions {
            let peer_id = peer_on(r, me).map(|q| q.id).ok_or("split lost our peer")?;
            let p = self.peers.entry(r.id).or_insert_with(|| Peer {
                peer_id,
                region: r.clone(),
                term,
                leader_peer_id: peer_id,
                applied_term,
                vote: peer_id,
                role: Role::Follower,
                last_leader_contact: now,
                election_deadline: now,
                campaigning: false,
                transfer_requested: false,
                last_stale_check: None,
            });
            p.region = r.clone();
            p.applied_term = applied_term;
            match &mut p.role {
                Role::Leader(ls) => {
                    ls.committed = false;
                    ls.prev_region = None;
                }
                _ => become_leader(p, me, now),
            }
            try_commit(p, me);
        }
        self.dirty = true;
        Ok(Some(regions))
    }

    // ---- stale replicas --------------------------------------------------------------------

    /// Followers that have not heard from a leader for `max-leader-missing-duration`: the
    /// caller asks PD whether they are still members (as TiKV's stale peer check does).
    pub fn stale_check_candidates(&mut self, now: Instant) -> Vec<u64> {
        let limit = self.timing.max_leader_missing;
        let mut out = Vec::new();
        for p in self.peers.values_mut() {
            if matches!(p.role, Role::Leader(_))
                || now.duration_since(p.last_leader_contact) < limit
            {
                continue;
            }
            if p.last_stale_check
                .is_some_and(|t| now.duration_since(t) < limit)
            {
                continue;
            }
            p.last_stale_check = Some(now);
            out.push(p.region.id);
        }
        out
    }

    /// PD's view of a region: drop our replica if PD knows a newer configuration without it.
    pub fn on_pd_region(&mut self, region_id: u64, pd_region: &metapb::Region) {
        let Some(p) = self.peers.get(&region_id) else {
            return;
        };
        if matches!(p.role, Role::Leader(_)) {
            return;
        }
        let (pd_conf_ver, _) = epoch(pd_region);
        if pd_conf_ver > epoch(&p.region).0 && peer_on(pd_region, self.store_id).is_none() {
            tracing::info!(
                region_id,
                "PD no longer lists this store in the region; removing the stale replica"
            );
            self.destroy(region_id, pd_conf_ver);
        }
    }

    /// The replicas, for debugging.
    pub fn summary(&self) -> Vec<RegionSummary> {
        self.peers
            .values()
            .map(|p| {
                let (conf_ver, version) = epoch(&p.region);
                RegionSummary {
                    id: p.region.id,
                    peer_id: p.peer_id,
                    role: match p.role {
                        Role::Leader(_) => "leader",
                        Role::Candidate => "candidate",
                        Role::Follower => "follower",
                    },
                    term: p.term,
                    leader_peer_id: p.leader_peer_id,
                    conf_ver,
                    version,
                    peers: p
                        .region
                        .peers
                        .iter()
                        .map(|q| (q.id, q.store_id, role_name(q.role())))
                        .collect(),
                }
            })
            .collect()
    }
}

impl Peer {
    fn copy(&self) -> RegionCopy {
        RegionCopy {
            region: Some(self.region.clone()),
            term: self.term,
            leader_peer_id: self.leader_peer_id,
            applied_term: self.applied_term,
        }
    }
}

fn become_leader(p: &mut Peer, me: u64, now: Instant) {
    tracing::info!(region_id = p.region.id, term = p.term, "became leader");
    p.role = Role::Leader(Box::new(LeaderState {
        since: now,
        progress: HashMap::new(),
        prev_region: None,
        committed: false,
        removal_notices: BTreeSet::new(),
        reported: None,
        last_report: None,
        busy_since: None,
    }));
    p.leader_peer_id = p.peer_id;
    // Like raft's empty entry at the start of a term: followers that adopt our state have seen
    // this term, which is what makes them at least as up to date as anyone who has not.
    p.applied_term = p.term;
    p.campaigning = false;
    try_commit(p, me);
}

/// Marks the leader's state committed once a quorum acknowledged exactly this state in this term.
/// The quorum is that of the configuration the change was made under (raft commits a conf
/// change entry under the configuration it replaces), else of the current one.
fn try_commit(p: &mut Peer, me: u64) {
    let (conf_ver, version) = epoch(&p.region);
    let term = p.term;
    let Role::Leader(ls) = &mut p.role else {
        return;
    };
    if ls.committed {
        return;
    }
    let acked = |q: &metapb::Peer| {
        q.store_id == me
            || ls.progress.get(&q.store_id).is_some_and(|pr| {
                pr.term == term
                    && pr.conf_ver == conf_ver
                    && pr.version == version
                    && pr.peer_id == q.id
            })
    };
    if has_quorum(ls.prev_region.as_ref().unwrap_or(&p.region), acked) {
        ls.committed = true;
        ls.prev_region = None;
    }
}

#[cfg(test)]
mod tests;

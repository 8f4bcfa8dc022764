//! Messages between simulated stores (over HTTP on `--addr`) and the persisted store file.
//!
//! They are protobuf messages declared with prost's derive, so the simulator needs no second
//! `.proto` build; region metadata is kvproto's `metapb.Region` as generated in pdclient.

use pdclient::proto::metapb;

/// One replica's view of a region: what a leader replicates and what a store persists.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegionCopy {
    /// The region metadata (range, epoch, peers).
    #[prost(message, optional, tag = "1")]
    pub region: Option<metapb::Region>,
    /// The raft term the sender knows.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// The leader's peer ID in that term (0: unknown).
    #[prost(uint64, tag = "3")]
    pub leader_peer_id: u64,
    /// The term in which this region state was produced. With the epoch it orders states the
    /// way raft orders logs (last term, then index), so a stale replica cannot win an election.
    #[prost(uint64, tag = "4")]
    pub applied_term: u64,
}

/// Leader → follower store: the current state of every region the sender leads that has a peer
/// on the receiver (or that just removed the receiver's peer). Doubles as the raft heartbeat.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendRequest {
    /// Cluster the sender belongs to.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// Sending store.
    #[prost(uint64, tag = "2")]
    pub from_store: u64,
    /// Intended receiver (a restarted address may belong to another store).
    #[prost(uint64, tag = "3")]
    pub to_store: u64,
    /// The regions.
    #[prost(message, repeated, tag = "4")]
    pub regions: Vec<RegionCopy>,
}

/// The receiver's answer for one region of an [`AppendRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendResult {
    /// Region.
    #[prost(uint64, tag = "1")]
    pub region_id: u64,
    /// The receiver's term after handling the message.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// False if the receiver knows a higher term (the sender must step down).
    #[prost(bool, tag = "3")]
    pub accepted: bool,
    /// The receiver's peer ID in the region now; 0 if it has none (removed).
    #[prost(uint64, tag = "4")]
    pub peer_id: u64,
    /// The epoch the receiver holds now.
    #[prost(uint64, tag = "5")]
    pub conf_ver: u64,
    /// The epoch the receiver holds now.
    #[prost(uint64, tag = "6")]
    pub version: u64,
}

/// Answer to an [`AppendRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppendResponse {
    /// One result per region in the request.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<AppendResult>,
}

/// A request for votes for one region.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Campaign {
    /// Region.
    #[prost(uint64, tag = "1")]
    pub region_id: u64,
    /// The term the candidate campaigns for.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// The candidate's peer.
    #[prost(uint64, tag = "3")]
    pub candidate_peer_id: u64,
    /// The candidate's [`RegionCopy::applied_term`].
    #[prost(uint64, tag = "4")]
    pub applied_term: u64,
    /// The candidate's epoch.
    #[prost(uint64, tag = "5")]
    pub conf_ver: u64,
    /// The candidate's epoch.
    #[prost(uint64, tag = "6")]
    pub version: u64,
}

/// Candidate store → voter store: campaigns for all regions the sender runs for at once.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VoteRequest {
    /// Cluster the sender belongs to.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// Sending store.
    #[prost(uint64, tag = "2")]
    pub from_store: u64,
    /// Intended receiver.
    #[prost(uint64, tag = "3")]
    pub to_store: u64,
    /// A pre-vote asks "would you vote?" without anyone changing their term, so a store that
    /// was cut off (frozen) cannot depose a working leader by coming back with a higher term.
    #[prost(bool, tag = "4")]
    pub pre_vote: bool,
    /// The campaigns.
    #[prost(message, repeated, tag = "5")]
    pub campaigns: Vec<Campaign>,
    /// A campaign the leader asked for (leader transfer, raft's TimeoutNow): voters ignore
    /// their leader lease, and a leader that sees it steps down.
    #[prost(bool, tag = "6")]
    pub force: bool,
}

/// A voter's answer for one region.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VoteResult {
    /// Region.
    #[prost(uint64, tag = "1")]
    pub region_id: u64,
    /// The voter's term.
    #[prost(uint64, tag = "2")]
    pub term: u64,
    /// Whether the vote is granted.
    #[prost(bool, tag = "3")]
    pub granted: bool,
}

/// Answer to a [`VoteRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct VoteResponse {
    /// One result per campaign.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<VoteResult>,
}

/// Leader → target store: "campaign for this region now" (PD's transfer-leader). The target
/// adopts the leader's state and runs a forced election in the next term, as raft's TimeoutNow:
/// a late or stale request can therefore never create a second leader for a term.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferRequest {
    /// Cluster the sender belongs to.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// Sending store.
    #[prost(uint64, tag = "2")]
    pub from_store: u64,
    /// Intended receiver.
    #[prost(uint64, tag = "3")]
    pub to_store: u64,
    /// The leader's current state of the region.
    #[prost(message, optional, tag = "4")]
    pub copy: Option<RegionCopy>,
    /// The peer that is to lead.
    #[prost(uint64, tag = "5")]
    pub target_peer_id: u64,
}

/// Answer to a [`TransferRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransferResponse {
    /// Whether the receiver will campaign.
    #[prost(bool, tag = "1")]
    pub accepted: bool,
    /// The receiver's term.
    #[prost(uint64, tag = "2")]
    pub term: u64,
}

/// One persisted replica.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PersistedPeer {
    /// The replica's region state and term.
    #[prost(message, optional, tag = "1")]
    pub copy: Option<RegionCopy>,
    /// This store's peer ID in the region.
    #[prost(uint64, tag = "2")]
    pub peer_id: u64,
    /// The peer voted for in `copy.term` (0: none).
    #[prost(uint64, tag = "3")]
    pub vote: u64,
}

/// A region this store's peer was removed from, so that late messages from a deposed leader
/// do not bring the replica back.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tombstone {
    /// Region.
    #[prost(uint64, tag = "1")]
    pub region_id: u64,
    /// conf_ver of the state that removed the peer.
    #[prost(uint64, tag = "2")]
    pub conf_ver: u64,
}

/// The whole persisted state of a store (`<data-dir>/tikv-sim/store.pb`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoreFile {
    /// The PD cluster this store belongs to.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// The store ID PD allocated.
    #[prost(uint64, tag = "2")]
    pub store_id: u64,
    /// Replicas.
    #[prost(message, repeated, tag = "3")]
    pub peers: Vec<PersistedPeer>,
    /// Removed replicas.
    #[prost(message, repeated, tag = "4")]
    pub tombstones: Vec<Tombstone>,
    /// The region this store offered PD in a Bootstrap call that is not known to have been
    /// accepted or refused (0: none). Resolved at the next start, as TiKV's prepare-bootstrap.
    #[prost(uint64, tag = "5")]
    pub prepared_bootstrap_region: u64,
}

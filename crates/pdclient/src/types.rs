//! The JSON shapes of PD's HTTP API v1 (`/pd/api/v1`), as PD really sends them.
//!
//! PD marshals kvproto messages with Go's `encoding/json` and every protobuf field is
//! `omitempty`: a zero enum (`state` Up, `node_state` Preparing, peer `role` Voter), an empty list
//! or a zero number is simply missing. Every struct here therefore defaults missing fields, and
//! enums accept both PD's numbers and their names.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// A PD member as in `GET /members` and `GET /leader` (`pdpb.Member` as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Member {
    /// Member name (`--name` of pd-server).
    pub name: String,
    /// etcd member ID.
    pub member_id: u64,
    /// Peer URLs (etcd raft traffic).
    #[serde(deserialize_with = "null_as_empty")]
    pub peer_urls: Vec<String>,
    /// Client URLs (HTTP and gRPC API); empty for a member that joined and has not started yet
    /// (PD answers `null`).
    #[serde(deserialize_with = "null_as_empty")]
    pub client_urls: Vec<String>,
    /// Leader priority; higher is preferred by PD's leader priority check.
    pub leader_priority: i32,
    /// Directory of the pd-server binary.
    pub deploy_path: String,
    /// Release version, e.g. `v8.5.0`.
    pub binary_version: String,
    /// Git hash the binary was built from.
    pub git_hash: String,
}

/// The header PD puts on gRPC-shaped answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponseHeader {
    /// The PD cluster ID.
    pub cluster_id: u64,
}

/// `GET /members`: all members, the PD leader and the etcd leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Members {
    /// Carries the cluster ID.
    pub header: ResponseHeader,
    /// Every member of the etcd cluster.
    pub members: Vec<Member>,
    /// The PD leader (the member serving the API), if there is one.
    pub leader: Option<Member>,
    /// The etcd raft leader; usually the same member as `leader`.
    pub etcd_leader: Option<Member>,
}

/// One entry of `GET /health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberHealth {
    /// Member name.
    pub name: String,
    /// etcd member ID.
    pub member_id: u64,
    /// Client URLs the health probe used (`null` from PD for a member that joined and has not
    /// started yet).
    #[serde(deserialize_with = "null_as_empty")]
    pub client_urls: Vec<String>,
    /// Whether the member answered `GET /pd/api/v1/ping`.
    pub health: bool,
}

/// `GET /cluster`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterInfo {
    /// The PD cluster ID.
    pub id: u64,
    /// max-replicas as stored in the cluster meta.
    pub max_peer_count: u64,
}

/// `GET /cluster/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterStatus {
    /// RFC 3339 time of the Bootstrap call; `0001-01-01T00:00:00Z` before bootstrap.
    pub raft_bootstrap_time: String,
    /// More than one region, or the first region has max-replicas voters and no pending peer.
    pub is_initialized: bool,
    /// Replication mode status (empty unless DR auto-sync is configured).
    pub replication_status: String,
}

impl ClusterStatus {
    /// Whether a TiKV store has bootstrapped the cluster.
    pub fn is_bootstrapped(&self) -> bool {
        !self.raft_bootstrap_time.is_empty() && !self.raft_bootstrap_time.starts_with("0001-01-01")
    }
}

/// `GET /config/replicate`. PD sends `location-labels` as one comma-joined string and the booleans
/// as JSON strings; this type holds them as a list and as booleans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ReplicationConfig {
    /// Number of replicas of every region.
    pub max_replicas: u64,
    /// Label keys, from the widest failure domain to the narrowest (e.g. zone, host).
    #[serde(deserialize_with = "comma_list", serialize_with = "to_comma_list")]
    pub location_labels: Vec<String>,
    /// Reject stores whose labels do not match `location_labels`.
    #[serde(deserialize_with = "lenient_bool")]
    pub strictly_match_label: bool,
    /// Whether placement rules replace max-replicas/location-labels.
    #[serde(deserialize_with = "lenient_bool")]
    pub enable_placement_rules: bool,
    /// The label key replicas must at least be isolated by (empty: none).
    pub isolation_level: String,
}

/// `metapb.StoreState`: the persisted state of a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum StoreState {
    /// Serving (PD omits this zero value).
    #[default]
    Up,
    /// Being removed: its regions are moving away.
    Offline,
    /// Removed; it holds no regions and may never come back.
    Tombstone,
}

impl<'de> Deserialize<'de> for StoreState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrName::deserialize(d)? {
            NumOrName::Num(0) => Ok(StoreState::Up),
            NumOrName::Num(1) => Ok(StoreState::Offline),
            NumOrName::Num(2) => Ok(StoreState::Tombstone),
            NumOrName::Name(n) if n.eq_ignore_ascii_case("up") => Ok(StoreState::Up),
            NumOrName::Name(n) if n.eq_ignore_ascii_case("offline") => Ok(StoreState::Offline),
            NumOrName::Name(n) if n.eq_ignore_ascii_case("tombstone") => Ok(StoreState::Tombstone),
            other => Err(de::Error::custom(format!("unknown store state {other:?}"))),
        }
    }
}

/// `metapb.NodeState`: the finer store state PD keeps since v6.0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum NodeState {
    /// New store, not yet serving (PD omits this zero value). Its state name is still "Up".
    #[default]
    Preparing,
    /// Up and serving.
    Serving,
    /// Offline: regions are moving away.
    Removing,
    /// Tombstone.
    Removed,
}

impl<'de> Deserialize<'de> for NodeState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumOrName::deserialize(d)? {
            NumOrName::Num(0) => Ok(NodeState::Preparing),
            NumOrName::Num(1) => Ok(NodeState::Serving),
            NumOrName::Num(2) => Ok(NodeState::Removing),
            NumOrName::Num(3) => Ok(NodeState::Removed),
            NumOrName::Name(n) if n.eq_ignore_ascii_case("preparing") => Ok(NodeState::Preparing),
            NumOrName::Name(n) if n.eq_ignore_ascii_case("serving") => Ok(NodeState::Serving),
            NumOrName::Name(n) if n.eq_ignore_ascii_case("removing") => Ok(NodeState::Removing),
            NumOrName::Name(n) if n.eq_ignore_ascii_case("removed") => Ok(NodeState::Removed),
            other => Err(de::Error::custom(format!("unknown node state {other:?}"))),
        }
    }
}

/// The `state_name` PD computes for a store: the [`StoreState`] name, except that an Up store
/// without a heartbeat for 20 s is `Disconnected` and after `max-store-down-time` is `Down`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum StoreStateName {
    /// Up and heartbeating.
    #[default]
    Up,
    /// Up, but no heartbeat for more than 20 s.
    Disconnected,
    /// Up, but no heartbeat for longer than `max-store-down-time`.
    Down,
    /// Being removed.
    Offline,
    /// Removed.
    Tombstone,
    /// A name this client does not know (a newer PD).
    Other(String),
}

impl StoreStateName {
    /// The name as PD spells it (also accepted by `GET /stores/check?state=`).
    pub fn as_str(&self) -> &str {
        match self {
            StoreStateName::Up => "Up",
            StoreStateName::Disconnected => "Disconnected",
            StoreStateName::Down => "Down",
            StoreStateName::Offline => "Offline",
            StoreStateName::Tombstone => "Tombstone",
            StoreStateName::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "Up" => StoreStateName::Up,
            "Disconnected" => StoreStateName::Disconnected,
            "Down" => StoreStateName::Down,
            "Offline" => StoreStateName::Offline,
            "Tombstone" => StoreStateName::Tombstone,
            other => StoreStateName::Other(other.to_string()),
        }
    }
}

impl fmt::Display for StoreStateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StoreStateName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StoreStateName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(StoreStateName::parse(&String::deserialize(d)?))
    }
}

/// A store label (`metapb.StoreLabel`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreLabel {
    /// Label key, e.g. `zone`.
    pub key: String,
    /// Label value.
    pub value: String,
}

/// The `store` half of a [`StoreInfo`]: `metapb.Store` plus PD's `state_name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Store {
    /// Store ID.
    pub id: u64,
    /// Address TiKV serves on (advertise-addr).
    pub address: String,
    /// Persisted state (missing in the JSON when Up).
    pub state: StoreState,
    /// Labels, as reported by TiKV and changed through the API.
    pub labels: Vec<StoreLabel>,
    /// TiKV version, e.g. `8.5.0`.
    pub version: String,
    /// Address for raft traffic if different from `address`.
    pub peer_address: String,
    /// Status (HTTP) address.
    pub status_address: String,
    /// Git hash of the TiKV binary.
    pub git_hash: String,
    /// Unix seconds when the TiKV process started.
    pub start_timestamp: i64,
    /// Directory of the TiKV binary.
    pub deploy_path: String,
    /// Unix nanoseconds of the last store heartbeat.
    pub last_heartbeat: i64,
    /// Removed with `force`: the store can never come back.
    pub physically_destroyed: bool,
    /// Finer state (missing in the JSON when Preparing).
    pub node_state: NodeState,
    /// PD's state name, including Disconnected and Down.
    pub state_name: StoreStateName,
}

impl Store {
    /// The store's labels as a map.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|l| (l.key.clone(), l.value.clone()))
            .collect()
    }
}

/// The `status` half of a [`StoreInfo`]. Sizes are PD's human-readable strings such as `"1.5GiB"`.
/// Leader and region counts come from PD's region tree (what the region heartbeats reported).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreStatus {
    /// Capacity reported by the store.
    pub capacity: String,
    /// Available space reported by the store.
    pub available: String,
    /// Used space reported by the store.
    pub used_size: String,
    /// Regions whose leader is on this store.
    pub leader_count: u64,
    /// Leader weight (scheduling).
    pub leader_weight: f64,
    /// Leader score (scheduling).
    pub leader_score: f64,
    /// Sum of the sizes of the regions led by this store, in MiB.
    pub leader_size: i64,
    /// Regions with a peer on this store.
    pub region_count: u64,
    /// Region weight (scheduling).
    pub region_weight: f64,
    /// Region score (scheduling).
    pub region_score: f64,
    /// Sum of the sizes of the regions with a peer here, in MiB.
    pub region_size: i64,
    /// Learner peers on this store.
    pub learner_count: u64,
    /// Pending peers on this store.
    pub pending_peer_count: u64,
    /// Slow score (1 is healthy).
    pub slow_score: u64,
    /// Snapshots being sent.
    pub sending_snap_count: u64,
    /// Snapshots being received.
    pub receiving_snap_count: u64,
    /// The store reports itself busy.
    pub is_busy: bool,
    /// RFC 3339 start time, once the store has sent a heartbeat.
    pub start_ts: Option<String>,
    /// RFC 3339 time of the last heartbeat.
    pub last_heartbeat_ts: Option<String>,
    /// Uptime as a Go duration string, e.g. `1h2m3s`.
    pub uptime: Option<String>,
}

/// One store as in `GET /store/{id}` and the `stores` lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreInfo {
    /// Metadata and state.
    pub store: Store,
    /// Statistics.
    pub status: StoreStatus,
}

/// `GET /stores/progress?id=N`: how far PD got removing (`action` `removing`) or preparing
/// (`preparing`, a new store filling up) a store. PD measures it by region size: `progress` is
/// the share moved (0 to 1), `current_speed` MiB per second over its recent window,
/// `left_seconds` the rest at that speed (`f64::MAX` while PD has no speed yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreProgress {
    /// `removing` or `preparing`.
    pub action: String,
    /// The store.
    pub store_id: u64,
    /// Done, from 0 to 1.
    pub progress: f64,
    /// MiB per second.
    pub current_speed: f64,
    /// Seconds left at the current speed; `f64::MAX` when unknown.
    pub left_seconds: f64,
}

impl StoreProgress {
    /// The seconds left, when PD has measured a speed (it reports `f64::MAX` until then).
    pub fn eta_seconds(&self) -> Option<f64> {
        (self.left_seconds.is_finite() && self.left_seconds >= 0.0 && self.left_seconds < 1e12)
            .then_some(self.left_seconds)
    }
}

/// `{"count":N,"stores":[…]}` of the store list endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct StoresList {
    pub count: u64,
    pub stores: Vec<StoreInfo>,
}

/// A region peer in the region endpoints (`metapb.Peer` plus `role_name`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionPeer {
    /// Peer ID.
    pub id: u64,
    /// Store the peer lives on.
    pub store_id: u64,
    /// `Voter`, `Learner`, `IncomingVoter` or `DemotingVoter`.
    pub role_name: String,
    /// Whether the peer is a learner.
    pub is_learner: bool,
}

/// A down peer as reported by the region leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DownPeer {
    /// The peer.
    pub peer: RegionPeer,
    /// For how long the leader has not heard from it.
    pub down_seconds: u64,
}

/// `metapb.RegionEpoch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionEpoch {
    /// Bumped by membership changes.
    pub conf_ver: u64,
    /// Bumped by splits and merges.
    pub version: u64,
}

/// A region as in `GET /region/id/{id}` and the region lists (keys are upper-case hex).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionInfo {
    /// Region ID.
    pub id: u64,
    /// Start key, hex.
    pub start_key: String,
    /// End key, hex (empty: unbounded).
    pub end_key: String,
    /// Epoch.
    pub epoch: RegionEpoch,
    /// All peers.
    pub peers: Vec<RegionPeer>,
    /// The leader peer (all fields zero if PD knows no leader).
    pub leader: RegionPeer,
    /// Peers the leader reports down.
    pub down_peers: Vec<DownPeer>,
    /// Peers the leader reports pending (not caught up).
    pub pending_peers: Vec<RegionPeer>,
    /// Approximate size in MiB.
    pub approximate_size: i64,
    /// Approximate number of keys.
    pub approximate_keys: i64,
}

/// One of PD's replica checks, `GET /regions/check/{check}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionCheck {
    /// Regions whose leader reports a peer down.
    DownPeer,
    /// Regions with a peer that has not caught up (a new peer, or one that needs a snapshot).
    PendingPeer,
    /// Regions with a learner (a peer being added: a replica count includes it).
    LearnerPeer,
    /// Regions with fewer peers than `max-replicas`.
    MissPeer,
}

impl RegionCheck {
    /// The path under `/pd/api/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Self::DownPeer => "/regions/check/down-peer",
            Self::PendingPeer => "/regions/check/pending-peer",
            Self::LearnerPeer => "/regions/check/learner-peer",
            Self::MissPeer => "/regions/check/miss-peer",
        }
    }
}

/// `{"count":N,"regions":[…]}` of the region list endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RegionsList {
    pub count: u64,
    pub regions: Vec<RegionInfo>,
}

/// `GET /scheduler-config/evict-leader-scheduler/list`: the stores whose leaders are evicted.
/// `store-id-ranges` maps a decimal store ID to key ranges; `batch` exists since PD v8.3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct EvictLeaderConfig {
    #[serde(rename = "store-id-ranges")]
    pub store_id_ranges: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum NumOrName {
    Num(u64),
    Name(String),
}

/// Accepts `"zone,host"`, `""` or a JSON list (what `GET /config` sends for the same field).
fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Joined(String),
        List(Vec<String>),
    }
    Ok(match Option::<Repr>::deserialize(d)? {
        None => Vec::new(),
        Some(Repr::List(v)) => v,
        Some(Repr::Joined(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

fn to_comma_list<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.join(","))
}

/// Accepts `true` or `"true"` (PD uses Go's `,string` tag for these booleans).
/// A list PD may send as `null`: empty.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Bool(bool),
        Str(String),
    }
    match Repr::deserialize(d)? {
        Repr::Bool(b) => Ok(b),
        Repr::Str(s) => s
            .parse()
            .map_err(|_| de::Error::custom(format!("not a boolean: {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_that_has_not_started_has_no_urls() {
        // What PD answered for a member that had joined and not started yet.
        let health: Vec<MemberHealth> = serde_json::from_str(
            r#"[{"name":"pd-0","member_id":1,"client_urls":["http://pd-0:2379"],"health":true},
                {"name":"","member_id":2,"client_urls":null,"health":false}]"#,
        )
        .unwrap();
        assert_eq!(health[1].client_urls, Vec::<String>::new());
        let member: Member = serde_json::from_str(
            r#"{"member_id":2,"peer_urls":["http://pd-1:2380"],"client_urls":null}"#,
        )
        .unwrap();
        assert!(member.client_urls.is_empty());
        assert_eq!(member.peer_urls, ["http://pd-1:2380"]);
    }
}

//! Client of PD's HTTP and gRPC APIs, as the operator needs them.
//!
//! * [`PdClient`] speaks PD's HTTP API (`/pd/api/v1`) over several endpoints with failover and
//!   per-request timeouts: members and leadership, cluster ID and status, replication config,
//!   stores (including removal, cancelling it, tombstones and labels), leader eviction through
//!   PD's shared `evict-leader-scheduler`, and down-peer checks. Errors are typed ([`Error`]) so
//!   that a controller can tell a missing object from a refusal (with PD's own message) from an
//!   unreachable PD.
//! * [`Registry`] keeps one such client per PD cluster for a controller's reconciles, learning
//!   every member's URL so that requests fail over between members.
//! * [`proto`] is the generated gRPC client of PD (`pdpb`, `metapb`, `eraftpb`), compiled at build
//!   time from the workspace's `proto/` directory. tikv-sim uses it to act as a TiKV store.
//!
//! The JSON types in [`types`] follow what PD really sends; see that module for the quirks.

#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod proto;
pub mod registry;
pub mod types;

pub use client::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, EVICT_LEADER_SCHEDULER, Observer, PdClient,
    PdClientBuilder, RequestRecord,
};
pub use error::Error;
pub use registry::Registry;
pub use types::{
    ClusterInfo, ClusterStatus, DownPeer, Member, MemberHealth, Members, NodeState, RegionCheck,
    RegionEpoch, RegionInfo, RegionPeer, ReplicationConfig, ResponseHeader, Store, StoreInfo,
    StoreLabel, StoreState, StoreStateName, StoreStatus,
};

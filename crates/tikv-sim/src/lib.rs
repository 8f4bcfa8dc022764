//! A simulated TiKV store that speaks PD's real gRPC protocol (test data plane).
//!
//! `tikv-sim` takes tikv-server's flags and, at the control-plane level, behaves so that PD
//! cannot tell it from a TiKV store: it keeps its store ID (and cluster ID) in its data
//! directory, bootstraps the cluster if it is first, registers with `PutStore` and a real
//! version, sends store heartbeats and region heartbeats (one stream per store), and obeys PD's
//! transfer-leader and change-peer commands (including `ChangePeerV2` joint consensus), so
//! replica placement, leader balancing, leader eviction and store removal
//! (Offline → Tombstone) really complete. The store that bootstraps splits the key space into
//! `--sim-initial-regions` regions (48 by default) so that leader movement is observable. The
//! status address serves `/status`, `/metrics` (with `tikv_raftstore_region_count{type="leader"}`
//! and `{type="region"}`) and `/sim/regions` (a JSON view of the replicas, for debugging).
//! There is no data: no key-value API, no snapshots, no merges (regions report 64 MiB so PD never
//! asks). PD's split requests are carried out (the middle key, or PD's own keys).
//!
//! # Flags
//!
//! `--pd` (alias `--pd-endpoints`), `--addr`, `--advertise-addr`, `--status-addr`,
//! `--advertise-status-addr`, `--data-dir` (alias `--store`), `--labels zone=a,host=b`,
//! `--config FILE`, `--capacity`, `--log-level`, `--log-file`, as tikv-server; plus
//! `--sim-version` (env `TIKV_SIM_VERSION`, default 8.5.0; a leading `v` as in image tags is
//! dropped) and `--sim-initial-regions` (env `TIKV_SIM_INITIAL_REGIONS`). The config file is a
//! TiKV config; the simulator reads `server.*` addresses and labels, `storage.data-dir`,
//! `pd.endpoints`, `raftstore.capacity` and the raftstore timers (see [`config::Timing`]) and
//! ignores everything else.
//!
//! # Where the regions' shared state lives: nowhere shared
//!
//! Regions span stores, and each store runs as its own process with its own data directory that
//! may be killed, frozen (SIGSTOP) or restarted on its own. The options were a shared state
//! service, a shared file under a lock, one process hosting all stores, or doing what TiKV does.
//! The first three put every store's fate into one thing: a frozen process holding a file lock
//! stops every store; a state service or a multi-store process is a single point of failure that
//! TiKV does not have, and killing "a store" would not stop its replicas. So each store keeps
//! its own replicas, and the stores talk to each other over `--addr`, as TiKV's raft does, in a
//! deliberately small raft ([`raft`]):
//!
//! * the leader replica of a region owns the region's metadata (range, epoch, peers), applies
//!   PD's commands to it and sends it to the other replicas' stores with every raft heartbeat;
//!   a store learns another store's address from PD (`GetStore`), as TiKV does;
//! * replicas on a killed or frozen store simply stop answering: PD sees its store heartbeats
//!   stop (Disconnected, then Down), the leaders elsewhere report its peers down, and followers
//!   whose leader went silent elect a new leader among themselves (pre-vote, vote, quorum of
//!   voters), which reports to PD; a store that comes back finds newer terms and follows;
//! * changes are reported to PD only once a quorum of replicas holds them, and votes go only to
//!   candidates with a state at least as new as the voter's, so PD never sees a region go
//!   backwards when its leader dies at an awkward moment.
//!
//! Each store persists its identity and its replicas (`<data-dir>/tikv-sim/store.pb`, replaced
//! atomically) before it acknowledges anything, so a restarted store is the same store with the
//! same replicas. A store PD has made a tombstone stops with an error, as TiKV does.

#![warn(missing_docs)]

pub mod config;
pub mod msg;
pub mod pd;
pub mod raft;
pub mod state;
pub mod store;
pub mod transport;

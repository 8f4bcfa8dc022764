//! A simulated TiKV store: TiKV's RawKV API on a replicated, durable raft log, speaking PD's
//! real gRPC protocol.
//!
//! `tikv-sim` takes tikv-server's flags and behaves, wherever a client or PD can tell, like a
//! TiKV store serving RawKV:
//!
//! * **Clients**: `tikvpb.Tikv` on `--addr` with RawGet, RawBatchGet, RawPut, RawBatchPut,
//!   RawDelete, RawBatchDelete, RawScan (forward and reverse, clipped to the region),
//!   RawDeleteRange, RawCompareAndSwap and the `BatchCommands` stream, plus `grpc.health.v1`.
//!   Region errors as TiKV's, in TiKV's order (StoreNotMatch, RegionNotFound, NotLeader with the
//!   leader, EpochNotMatch with the current regions, KeyNotInRegion; ServerIsBusy when the
//!   raftstore's inbox is full; StaleCommand when leadership changed under a pending write); a
//!   request for another cluster ID is INVALID_ARGUMENT.
//! * **Replication** ([`raftstore`]): every region is a raft group (raft-rs, TiKV's raft
//!   library); the log and hard state live in raft-engine (TiKV's log engine). A write is
//!   answered once a quorum has committed it and it is applied and fsynced here; reads confirm
//!   leadership with raft's read index. Stores talk over the same gRPC address (`BatchRaft`,
//!   `Snapshot`), learning each other's addresses from PD. New and lagging replicas get
//!   snapshots; regions split by size and keys like TiKV's split checker; PD's conf changes
//!   (joint consensus included), leader transfers (to caught-up voters only) and splits are
//!   carried out.
//! * **PD**: identity in the data directory (an empty data directory is a new store with a new
//!   ID), bootstrap, `PutStore`, store heartbeats, and region heartbeats right after every
//!   leader change, conf change and split, with pending and down peers, approximate sizes and
//!   the bytes and keys read and written. The store that bootstraps splits the key space into
//!   `--sim-initial-regions` regions (48 by default) so that leader movement is observable.
//! * **Shutdown** ([`node`]): SIGTERM hands leaders over within
//!   `server.graceful-shutdown-timeout` while health is NOT_SERVING; SIGKILL loses nothing
//!   that was acknowledged.
//! * **TLS** ([`security`]): TiKV's `[security]` (`ca-path`, `cert-path`, `key-path`) turns on
//!   mutual TLS on both ports and towards PD (`https://` endpoints) and other stores; changed
//!   files apply to new connections without a restart, as in TiKV.
//! * **Status** ([`server::status`]): `/status`, `/metrics` with TiKV's names
//!   (`tikv_raftstore_region_count`, `tikv_store_size_bytes`, `tikv_grpc_msg_duration_seconds`,
//!   `tikv_grpc_msg_fail_total`, `process_resident_memory_bytes`) and `/sim/regions`.
//!
//! Not simulated: transactions (TxnKV), TTL, region merges (PD only asks for them an hour after
//! it starts, `split-merge-interval`; the store ignores the request).
//!
//! # Flags
//!
//! `--pd` (alias `--pd-endpoints`), `--addr`, `--advertise-addr`, `--status-addr`,
//! `--advertise-status-addr`, `--data-dir` (alias `--store`), `--labels zone=a,host=b`,
//! `--config FILE`, `--capacity`, `--log-level`, `--log-file`, as tikv-server; plus
//! `--sim-version` (env `TIKV_SIM_VERSION`, default 8.5.0; a leading `v` as in image tags is
//! dropped) and `--sim-initial-regions` (env `TIKV_SIM_INITIAL_REGIONS`). The config file is a
//! TiKV config; the simulator reads `server.*` addresses, labels and
//! `graceful-shutdown-timeout`, `storage.data-dir`, `pd.endpoints`, `security.*-path`, `raftstore.capacity`, the
//! raftstore timers (see [`config::Timing`]), `coprocessor.region-split-size/keys` and
//! `region-max-size/keys`, and ignores everything else.
//!
//! # Why every store is its own process
//!
//! Regions span stores, and each store runs as its own process with its own data directory that
//! may be killed, frozen (SIGSTOP) or restarted on its own, as TiKV's do. A shared state
//! service, a shared file under a lock or one process hosting all stores would put every
//! store's fate into one thing: a frozen process holding a lock stops every store, and killing
//! "a store" would not stop its replicas. So each store keeps its own replicas and they
//! replicate over raft between processes, as in TiKV.

#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod node;
pub mod pd;
pub mod proto;
pub mod raftstore;
pub mod security;
pub mod server;
pub mod state;

//! What a store keeps on disk, and its key-value data in memory.
//!
//! * [`kv::Kv`]: the store's key-value pairs, one ordered map for all regions (as TiKV's kv
//!   RocksDB), so a split moves no data.
//! * [`raftlog::RaftLog`]: every region's raft log and hard state in raft-engine (TiKV's raft log
//!   engine), written with fsync before a write is acknowledged.
//! * [`checkpoint`]: from time to time the whole state machine (regions, applied indexes, the
//!   map) goes into one file that replaces the previous one atomically; the raft logs are then
//!   compacted up to it. A restart loads the checkpoint and replays the committed log after it.

pub mod checkpoint;
pub mod kv;
pub mod raftlog;

//! Replication: every region replica on this store, driven by one thread.
//!
//! * [`store`]: the raftstore thread — its inbox, ticks, and the round that collects every
//!   replica's raft `Ready`, writes all their log entries with one fsync, then sends, applies
//!   and answers;
//! * [`peer`]: one replica (raft-rs `RawNode`), its proposals and reads, applying entries;
//! * [`storage`]: the replica's log as raft-rs reads it;
//! * [`region`]: pure rules — PD's conf changes, splits, TiKV's region errors;
//! * [`cmd`]: what the log holds and what clients ask.

pub mod cmd;
pub mod log;
pub mod peer;
pub mod region;
pub mod storage;
pub mod store;

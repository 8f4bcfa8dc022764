//! What goes into the raft log (prost messages of our own: the log is private to the stores),
//! and the client requests the raftstore serves.

use pdclient::proto::pdpb;
use tokio::sync::oneshot;

use crate::proto::kvrpcpb;
use crate::raftstore::region::RegionError;

/// A write to the key-value data.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteOp {
    /// What to do.
    #[prost(enumeration = "OpKind", tag = "1")]
    pub kind: i32,
    /// The key (the start of the range for a range delete).
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    /// The value to put.
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
    /// The end of the range for a range delete (empty: the end of the region).
    #[prost(bytes = "vec", tag = "4")]
    pub end_key: Vec<u8>,
    /// Compare-and-swap: the key must not exist.
    #[prost(bool, tag = "5")]
    pub prev_not_exist: bool,
    /// Compare-and-swap: the value the key must have.
    #[prost(bytes = "vec", tag = "6")]
    pub prev_value: Vec<u8>,
}

/// Kinds of [`WriteOp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum OpKind {
    /// Set a key.
    Put = 0,
    /// Remove a key.
    Delete = 1,
    /// Remove `[key, end_key)`.
    DeleteRange = 2,
    /// Set a key if its value is as expected.
    CompareAndSwap = 3,
}

/// A split, decided by the leader with IDs from PD.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SplitCmd {
    /// Split keys, sorted, strictly inside the region.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub keys: Vec<Vec<u8>>,
    /// PD's IDs for the new regions and their peers, one per key.
    #[prost(message, repeated, tag = "2")]
    pub ids: Vec<pdpb::SplitId>,
}

/// One normal raft entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RaftCmd {
    /// The region epoch version the proposer checked against: if a split applied before this
    /// entry changed it, the keys may no longer be in this region, so it is refused.
    #[prost(uint64, tag = "1")]
    pub version: u64,
    /// Writes, applied atomically.
    #[prost(message, repeated, tag = "2")]
    pub ops: Vec<WriteOp>,
    /// A split instead of writes.
    #[prost(message, optional, tag = "3")]
    pub split: Option<SplitCmd>,
}

/// The context of a conf change entry: PD's change, to apply to the region metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConfChangeCtx {
    /// PD's changes.
    #[prost(message, repeated, tag = "1")]
    pub changes: Vec<pdpb::ChangePeer>,
    /// From `ChangePeerV2` (an empty list leaves a joint configuration).
    #[prost(bool, tag = "2")]
    pub v2: bool,
    /// The store of the leader that proposed it (a leader may not remove or demote itself).
    #[prost(uint64, tag = "3")]
    pub leader_store: u64,
}

/// A read.
#[derive(Debug, Clone)]
pub enum ReadOp {
    /// One key.
    Get(Vec<u8>),
    /// Several keys; missing ones are left out of the answer.
    BatchGet(Vec<Vec<u8>>),
    /// A range: forward `[start, end)`; reverse: `start` is the exclusive upper bound, `end` the
    /// inclusive lower bound. Empty bounds are open. Clipped to the region.
    Scan {
        /// See above.
        start: Vec<u8>,
        /// See above.
        end: Vec<u8>,
        /// At most this many pairs.
        limit: usize,
        /// Leave values out.
        key_only: bool,
        /// Descending.
        reverse: bool,
    },
}

/// What a request asks for.
#[derive(Debug, Clone)]
pub enum Op {
    /// Read (through raft's read index, on the leader).
    Read(ReadOp),
    /// Write (through the raft log).
    Write(Vec<WriteOp>),
}

/// The result of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A get: the value, if any.
    Value(Option<Vec<u8>>),
    /// Pairs (batch get, scan).
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// A write took effect.
    Written,
    /// A compare-and-swap: whether it swapped, and the value before.
    Cas {
        /// The key had the expected value and now has the new one.
        succeed: bool,
        /// The value before (None: the key did not exist).
        previous: Option<Vec<u8>>,
    },
}

/// A request's answer: TiKV's region error, or the result.
pub type KvResult = Result<Output, RegionError>;

/// A client request for the raftstore.
#[derive(Debug)]
pub struct KvRequest {
    /// The client's view of the region.
    pub ctx: kvrpcpb::Context,
    /// What to do.
    pub op: Op,
    /// Where the answer goes.
    pub reply: oneshot::Sender<KvResult>,
}

impl WriteOp {
    /// A put.
    pub fn put(key: Vec<u8>, value: Vec<u8>) -> WriteOp {
        WriteOp {
            kind: OpKind::Put as i32,
            key,
            value,
            ..Default::default()
        }
    }

    /// A delete.
    pub fn delete(key: Vec<u8>) -> WriteOp {
        WriteOp {
            kind: OpKind::Delete as i32,
            key,
            ..Default::default()
        }
    }

    /// The keys a request must own: the key, and for a range delete its end (a bound).
    pub fn keys(&self) -> (&[u8], Option<&[u8]>) {
        match self.kind() {
            OpKind::DeleteRange => (&self.key, Some(&self.end_key)),
            _ => (&self.key, None),
        }
    }
}

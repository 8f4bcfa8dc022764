//! The store's gRPC API, generated at build time from `proto/`: kvproto's `tikvpb.Tikv` subset
//! that RawKV clients and other stores use, with kvproto's packages and field numbers.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

pub use pdclient::proto::{metapb, pdpb};

/// Region errors (kvproto `errorpb`).
pub mod errorpb {
    tonic::include_proto!("errorpb");
}

/// RawKV requests and responses (kvproto `kvrpcpb`).
pub mod kvrpcpb {
    tonic::include_proto!("kvrpcpb");
}

/// Raft messages between stores (kvproto `raft_serverpb`).
pub mod raft_serverpb {
    tonic::include_proto!("raft_serverpb");
}

/// The `Tikv` service (kvproto `tikvpb`).
pub mod tikvpb {
    tonic::include_proto!("tikvpb");
}

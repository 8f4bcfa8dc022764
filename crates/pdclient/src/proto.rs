//! PD's gRPC API, generated at build time from `proto/` (client stubs only).
//!
//! The messages are the subset of kvproto's `pdpb`, `metapb` and `eraftpb` that the project
//! needs, with kvproto's field numbers. The client is [`pdpb::pd_client::PdClient`].

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Cluster metadata: stores, regions, peers (kvproto `metapb`).
pub mod metapb {
    tonic::include_proto!("metapb");
}

/// The raft configuration change type PD's ChangePeer carries (raft-rs `eraftpb`).
pub mod eraftpb {
    tonic::include_proto!("eraftpb");
}

/// PD's gRPC service and messages (kvproto `pdpb`).
pub mod pdpb {
    tonic::include_proto!("pdpb");
}

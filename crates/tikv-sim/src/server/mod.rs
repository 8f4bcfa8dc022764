//! What the store serves and sends: the `tikvpb.Tikv` gRPC service ([`kv`]), raft traffic to
//! other stores ([`transport`]), the status HTTP server ([`status`]) and its metrics
//! ([`metrics`]).

pub mod kv;
pub mod metrics;
pub mod status;
pub mod transport;

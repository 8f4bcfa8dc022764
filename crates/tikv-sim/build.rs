//! Generates the store's gRPC service (tikvpb.Tikv: RawKV and raft traffic) from the
//! workspace's `proto/` directory. metapb comes from pdclient, which generates it already.
//! protoc is needed as for pdclient (Debian package `protobuf-compiler`, or `$PROTOC`).

use std::env;
use std::path::PathBuf;
use std::process::exit;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let proto_dir = manifest_dir.join("../../proto");
    let protos = [
        "tikvpb.proto",
        "kvrpcpb.proto",
        "errorpb.proto",
        "raft_serverpb.proto",
    ]
    .map(|p| proto_dir.join(p));
    println!("cargo::rerun-if-env-changed=PROTOC");
    for proto in &protos {
        println!("cargo::rerun-if-changed={}", proto.display());
    }
    // Server for this store, client for raft traffic to the other stores (and for tests).
    let result = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".metapb", "::pdclient::proto::metapb")
        .compile_protos(&protos, &[proto_dir]);
    if let Err(err) = result {
        eprintln!(
            "error: compiling proto/*.proto failed: {err}\n\
             tikv-sim needs the protobuf compiler `protoc`: `apt-get install -y protobuf-compiler`, \
             or set PROTOC"
        );
        exit(1);
    }
}

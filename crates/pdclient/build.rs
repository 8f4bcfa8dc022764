//! Generates the PD gRPC client (pdpb, metapb, eraftpb) from the workspace's `proto/` directory.
//!
//! protoc is a system dependency (Debian/Ubuntu package `protobuf-compiler`); prost-build no longer
//! bundles it, so we look for it first and stop with instructions instead of an opaque error.

use std::env;
use std::path::{Path, PathBuf};
use std::process::exit;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let proto_dir = manifest_dir.join("../../proto");
    let protos = ["pdpb.proto", "metapb.proto", "eraftpb.proto"].map(|p| proto_dir.join(p));

    println!("cargo::rerun-if-env-changed=PROTOC");
    for proto in &protos {
        println!("cargo::rerun-if-changed={}", proto.display());
    }

    if let Err(message) = find_protoc() {
        eprintln!("error: {message}");
        eprintln!(
            "pdclient compiles proto/*.proto at build time and needs the protobuf compiler `protoc`.\n\
             Install it with `apt-get update && apt-get install -y protobuf-compiler` (Debian/Ubuntu),\n\
             or point the PROTOC environment variable at a protoc binary."
        );
        exit(1);
    }

    // Client stubs only: the operator and tikv-sim are both clients of a real pd-server.
    let result = tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&protos, &[proto_dir]);
    if let Err(err) = result {
        eprintln!("error: compiling proto/*.proto failed: {err}");
        exit(1);
    }
}

/// Finds protoc the way prost-build does: `$PROTOC`, else `protoc` on `$PATH`.
fn find_protoc() -> Result<PathBuf, String> {
    if let Some(path) = env::var_os("PROTOC") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "PROTOC is set to {}, which is not a file",
                path.display()
            ))
        };
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|dir| dir.join("protoc"))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| "protoc was not found on PATH".to_string())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

# The human entry points. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

export TIKV_OPERATOR_BIN_DIR := env_var_or_default("TIKV_OPERATOR_BIN_DIR", env_var("HOME") / ".cache/tikv-operator/bin")

default:
    @just --list

# Install missing system tools (protoc, unshare) and build missing Go binaries (etcd, kube-*, pd-server).
deps:
    e2e/tools/deps.sh
    e2e/tools/build.sh

# Regenerate the CRD YAML in charts/tikv-operator-crds from the Rust types.
generate:
    cargo run -q -p api --bin crdgen

# Run every test: unit, against a real kube-apiserver and pd-server, and end to end.
# The binaries that tests start as processes (controllers, tikv-sim, node agent, testenv-up) are
# built first: `cargo test` builds a package's binaries only for that package's own tests.
test: deps
    cargo build --workspace --bins
    cargo test --workspace --no-fail-fast

# Format check and clippy, warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Start the local environment: control plane, node agent, PD, the three controllers, examples/basic.
up: deps
    cargo build --workspace --bins
    e2e/up.sh

# Stop everything `just up` started.
down:
    e2e/down.sh

# Benchmarks (print numbers; not timed tests).
bench: deps
    cargo bench --workspace

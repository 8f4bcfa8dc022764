# The human entry points. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

export TIKV_OPERATOR_BIN_DIR := env_var_or_default("TIKV_OPERATOR_BIN_DIR", env_var("HOME") / ".cache/tikv-operator/bin")
target := env_var_or_default("CARGO_TARGET_DIR", justfile_directory() / "target")

default:
    @just --list

# Install missing system packages (protoc, containerd, runc, CNI plugins, iptables, umoci, busybox) and build missing Go binaries (etcd, kube-*, kubelet, pd-server, CoreDNS, helm, ...).
deps:
    e2e/tools/deps.sh
    e2e/tools/build.sh

# Regenerate the CRD YAML in charts/tikv-operator-crds from the Rust types.
generate:
    cargo run -q -p api --bin crdgen

# Build the images (controllers, PD, the store, pause, busybox) as OCI archives from the debug build.
images: deps
    cargo build --workspace --bins
    images/build.sh

# Run every test: unit, against a real kube-apiserver and pd-server, and end to end on real nodes.
# The binaries that tests start as processes or put into images (controllers, tikv-sim, tikv-env,
# testenv-up) are built first: `cargo test` builds a package's binaries only for its own tests.
test: images
    cargo test --workspace --no-fail-fast

# Format check and clippy, warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Start the local environment: control plane, real nodes, the operator installed with helm, examples/basic.
up: images
    e2e/up.sh

# Stop everything `just up` started.
down:
    e2e/down.sh

# Run a host program inside the running environment's cluster network (cluster DNS, Service IPs, KUBECONFIG): just exec -- CMD ARGS...
[positional-arguments]
exec *ARGS:
    @"{{target}}/debug/tikv-env" exec --state "${TIKV_OPERATOR_STATE_DIR:-{{justfile_directory()}}/.local}" "$@"

# Benchmarks (print numbers; not timed tests), on real nodes with release builds.
bench: deps
    cargo build --release --workspace --bins
    cargo bench --workspace

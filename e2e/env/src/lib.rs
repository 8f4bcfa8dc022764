//! The local environment: a real Kubernetes cluster on one machine, for `just up`, every
//! end-to-end test and every benchmark.
//!
//! - **Control plane**: etcd, kube-apiserver, kube-controller-manager and kube-scheduler (from
//!   [`testenv`]), CoreDNS and local-path-provisioner, on the control-plane host.
//! - **Nodes**: the control-plane host (tainted, no workload) and worker nodes `node-0..` in
//!   zones `zone-a..c`, each a real kubelet with its own containerd + runc, pod networking by the
//!   CNI bridge/host-local/loopback plugins and a kube-proxy ([`node`]).
//! - **Network**: a network namespace per node, joined by a bridge in the control-plane host's
//!   namespace; no default route anywhere ([`net`], addresses in [`plan`]).
//! - **Images**: imported into every node's containerd from archives built by
//!   `images/build.sh`; nothing is pulled.
//!
//! The `tikv-env` binary runs it (`up`, `run`, `exec`, `down`); [`state::State`] describes a
//! running one to programs inside it, [`faults`] breaks its parts for tests, and [`teardown`]
//! removes every trace of it.

pub mod addons;
pub mod cmd;
mod env;
mod error;
pub mod faults;
pub mod forward;
pub mod net;
pub mod node;
pub mod plan;
pub mod state;
pub mod teardown;

pub use env::{Environment, http_ok, image_list};
pub use error::Error;
pub use state::State;

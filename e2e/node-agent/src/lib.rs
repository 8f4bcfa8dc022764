//! Local stand-in for kubelet: runs the pods bound to a few Node objects as processes on this
//! machine, so the operator's PD and TiKV pods really run (PD as the real `pd-server`, TiKV as
//! `tikv-sim`) against a real API server, with no container runtime.
//!
//! # What it does
//!
//! - **Nodes** ([`node`]): registers `N` Node objects (`<prefix>-0..N-1`) with the labels
//!   `topology.kubernetes.io/zone`, `kubernetes.io/hostname` and [`node::AGENT_LABEL`], large
//!   allocatable capacity, and keeps them Ready with status heartbeats and Leases in
//!   `kube-node-lease`, so the real kube-scheduler places pods on them (node selectors,
//!   affinity, topology spread all apply).
//! - **Pods as processes** ([`worker`], [`launch`]): for each pod bound to one of its nodes it
//!   allocates a loopback address, writes it to `status.podIP` and `/etc/hosts`, sets up the
//!   volumes, resolves env and arguments as kubelet does ([`spec`]), maps the image to a
//!   program ([`image`]) and starts it in its own mount and UTS namespace with the volumes
//!   bind-mounted at their container paths. It runs probes ([`probe`]), restarts containers
//!   per `restartPolicy` with back-off, reports truthful status ([`status`]), and on deletion
//!   sends `SIGTERM`, waits up to the grace period, sends `SIGKILL` and deletes the pod object
//!   with grace 0.
//! - **Volumes** ([`volumes`], [`pvc`]): ConfigMap, Secret, downward API and projected volumes
//!   (including service account tokens from the TokenRequest API) are written as files and
//!   kept up to date; `emptyDir` is a per-pod directory (it survives container restarts, not
//!   the pod); `hostPath` is used in place. PVCs: the agent installs the default StorageClass
//!   `node-agent` (`WaitForFirstConsumer`); once the scheduler has picked a node for a claim,
//!   the agent running that node creates a pre-bound `hostPath` PV with node affinity, whose
//!   directory lives under the state dir, survives pod restarts and is removed with the PVC.
//!   Claims of other classes are provisioned at once, without node affinity ([`pvc`]).
//! - **Names** ([`net`]): pods' `<hostname>.<subdomain>.<ns>.svc[.cluster.local]` and
//!   Services' `<svc>.<ns>.svc[.cluster.local]` resolve for every process on the machine
//!   through a managed block in `/etc/hosts`.
//! - **Faults**: [`Agent::kill_pod`], [`Agent::freeze_pod`], [`Agent::thaw_pod`],
//!   [`Agent::set_node_fault`]; the same through annotations ([`KILL_ANNOTATION`],
//!   [`FREEZE_ANNOTATION`], [`node::FAULT_ANNOTATION`]) and the `node-agent fault` command.
//!
//! # Process lifetime
//!
//! Every container process has a watchdog (see [`launch`]) that kills it when the agent's end
//! of a pipe closes, which happens however the agent ends, even with `SIGKILL`. Dropping
//! [`Agent`] also kills them directly and removes the hosts block; [`Agent::shutdown`] stops
//! them gracefully and deletes the Node objects.
//!
//! # Requirements on pod specs
//!
//! - Bind to `$(POD_IP)` (env from `fieldRef: status.podIP`), never to `0.0.0.0`: all pods
//!   share the machine's network stack, only their addresses differ.
//! - Use `.svc` or `.svc.cluster.local` names (no search domains, no SRV records); a Service's
//!   `port` must equal its `targetPort` (no kube-proxy); pod host names need a headless Service
//!   named like the pod's `subdomain` that selects it (and `publishNotReadyAddresses: true` to
//!   resolve before the pod is Ready), as with cluster DNS.
//! - Images: `pingcap/pd[:tag]` (any registry) → `pd-server`; `pingcap/tikv:vX.Y.Z` →
//!   `tikv-sim` with `TIKV_SIM_VERSION=X.Y.Z`; the program's arguments are `command[1..]`
//!   followed by `args` (so `command: ["/pd-server", flags...]` works). Other images fail
//!   with `ErrImagePull`. `$(VAR)` references are expanded as by kubelet (`$$` is a literal
//!   `$`).
//! - Container paths are bind mounts over the host's file system: don't mount over `/etc`
//!   as a whole (that would hide `/etc/hosts`), and expect missing mount points to be created
//!   as empty directories on the host. Processes run as the agent's user (root), without
//!   resource limits; `securityContext`, `resources` and `hostPort` are ignored.
//!
//! # Other limits
//!
//! No `kubectl logs`/`exec`/`port-forward` (there is no kubelet API; logs are files under
//! `<state>/logs/<ns>_<pod>_<uid>/<container>/<restart>.log`), no sidecar init containers,
//! no ephemeral containers, no Events, no `HTTPS`/`gRPC` probes, no service-link environment
//! variables. A pod whose agent restarts is restarted with a new address.

pub mod agent;
pub mod error;
pub mod image;
pub mod launch;
pub mod net;
pub mod node;
pub mod probe;
pub mod pvc;
pub mod spec;
pub mod status;
pub mod volumes;
pub mod worker;

pub use agent::{Agent, AgentConfig, FIELD_MANAGER};
pub use error::{Error, Result};
pub use image::{Programs, TEST_SHELL_IMAGE};
pub use node::{AGENT_LABEL, FAULT_ANNOTATION, NodeFault};
pub use worker::{FREEZE_ANNOTATION, KILL_ANNOTATION, PodAction};

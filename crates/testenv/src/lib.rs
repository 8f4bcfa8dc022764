//! Test support: a **real** Kubernetes control plane on loopback — etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler — with our CRDs installed.
//!
//! Nothing here is faked: objects go through the real API server's validation (OpenAPI schema,
//! CEL rules, admission), watches are real watches, server-side apply computes real managed
//! fields and conflicts, and the controller manager really garbage-collects owned objects and
//! deletes namespaces. There is no kubelet here (`e2e/env` adds real nodes): a test that wants a
//! running pod sets `spec.nodeName` to a Node object it created and writes the pod status itself. A
//! bound pod's graceful deletion then waits for a kubelet that never comes, so delete such pods
//! with grace period 0. The node lifecycle controller runs too: a Node without heartbeats (Lease
//! renewals or Ready condition updates) is marked NotReady after about 50 s and its pods are
//! evicted 5 minutes later, as in a real cluster.
//!
//! With [`ControlPlaneOptions::nodes`] the same control plane serves real kubelets and
//! kube-proxies ([`NodeNetwork`]); `e2e/env` runs it that way.
//!
//! Startup takes about 3 s on a 2-core machine (cold process start to CRDs Established and the
//! controller manager and scheduler running); [`ControlPlane::startup_time`] reports it. Test
//! runners that run each test in its own process (cargo-nextest) pay it per test.
//!
//! # Binaries
//!
//! The servers are the upstream Go binaries built by `e2e/tools/build.sh` into
//! `$TIKV_OPERATOR_BIN_DIR` (default `~/.cache/tikv-operator/bin`). When one is missing,
//! [`bin_path`] and [`ControlPlane::start`] fail with an error that names the missing file and
//! says to run that script: tests that need the control plane fail, they never skip.
//!
//! # Usage
//!
//! ```no_run
//! # async fn example() {
//! // One control plane per test binary, started on first use; each test gets a namespace.
//! let cp = testenv::shared();
//! let client = cp.client();
//! let ns = cp.create_namespace("my-test").await;
//! # let _ = (client, ns);
//! # }
//! ```
//!
//! A test that needs its own control plane (e.g. to stop it) uses [`ControlPlane::start`].
//!
//! # Process teardown
//!
//! Every server runs under a tiny `sh` watchdog ([`mod@process`] has the script). The watchdog
//! starts the server in the background and blocks reading its own stdin, a pipe whose only write
//! end is held by this process (Rust opens pipes close-on-exec, so no other child inherits it).
//! When the pipe reaches end-of-file the watchdog sends `SIGKILL` to the server. The pipe reaches
//! end-of-file in every way this process can end:
//!
//! - [`ControlPlane`] is dropped: `Drop` closes the pipes and waits for the watchdogs to exit,
//!   then removes the temporary directory.
//! - The process exits normally with the [`shared`] control plane still alive (statics are never
//!   dropped), panics, or is killed, even with `SIGKILL`: the kernel closes the process's file
//!   descriptors, which closes the pipes.
//!
//! The watchdog's reader and the janitor ignore `SIGINT` and `SIGHUP`, so Ctrl-C in a terminal
//! (which signals the whole process group) cannot end them before they have cleaned up.
//!
//! The temporary directory (certificates, kubeconfig, etcd data, server logs) is removed the same
//! way by a janitor watchdog that, once its pipe closes, waits for the servers to be gone and
//! deletes it. The crate's tests check both paths: a dropped `ControlPlane`, and a `SIGKILL`ed
//! process (`testenv-up`) running one.
//!
//! The alternative, making each server die with its parent through `prctl(PR_SET_PDEATHSIG)` in
//! `pre_exec`, needs `unsafe`, which the workspace forbids; process groups do not help against
//! `SIGKILL` of the parent.

mod certs;
mod control_plane;
pub mod jaeger;
pub mod pd;
pub mod pki;
pub mod process;
pub mod wait;

pub use wait::wait_for;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use control_plane::{ControlPlane, ControlPlaneOptions, FIELD_MANAGER, NodeNetwork};

/// Environment variable naming the directory that holds the server binaries.
pub const BIN_DIR_ENV: &str = "TIKV_OPERATOR_BIN_DIR";

/// Errors of the test environment. Messages are written for the person reading a failed test.
#[derive(thiserror::Error)]
pub enum Error {
    /// A binary is not in the bin dir.
    #[error(
        "`{name}` is missing: {path} does not exist or is not executable. Run `e2e/tools/build.sh` \
         to build the control-plane binaries (set {BIN_DIR_ENV} if they live elsewhere)"
    )]
    BinaryMissing {
        /// Name of the binary, e.g. `kube-apiserver`.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Neither `$TIKV_OPERATOR_BIN_DIR` nor `$HOME` is set, so there is no bin dir to look in.
    #[error("cannot find the bin dir: neither {BIN_DIR_ENV} nor HOME is set")]
    NoBinDir,
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Generating the certificates failed.
    #[error("generating certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    /// A server exited while the control plane was starting.
    #[error("{server} exited during startup ({status}); last lines of {}:\n{tail}", log.display())]
    ServerExited {
        /// Which server.
        server: String,
        /// How it exited.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// A server (or a step such as CRD installation) did not become ready in time.
    #[error("{server} was not ready after {timeout:?} (last error: {last_error}); last lines of {}:\n{tail}", log.display())]
    NotReady {
        /// Which server or step.
        server: String,
        /// How long we waited.
        timeout: Duration,
        /// The last error seen while waiting.
        last_error: String,
        /// The log file of the server concerned.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// Reading the generated kubeconfig failed.
    #[error("loading the generated kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
}

/// Tests `unwrap()` and `expect()` these errors, which print `Debug`: make that the message that
/// says what is missing and how to build it, not the variant's fields.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }
}

/// The directory that holds the binaries: `$TIKV_OPERATOR_BIN_DIR`, else
/// `~/.cache/tikv-operator/bin` (where `e2e/tools/build.sh` puts them).
pub fn bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(Error::NoBinDir)?;
    Ok(PathBuf::from(home).join(".cache/tikv-operator/bin"))
}

/// Path of the binary `name` (e.g. `etcd`, `kube-apiserver`, `kubectl`, `pd-server`) in the bin
/// dir; [`Error::BinaryMissing`] (which says to run `e2e/tools/build.sh`) when it is not there.
pub fn bin_path(name: &str) -> Result<PathBuf, Error> {
    let path = bin_dir()?.join(name);
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(Error::BinaryMissing {
            name: name.to_string(),
            path,
        })
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The control plane shared by all tests of this test binary, started (with default options) on
/// first use. Safe to call from any test, async or not, on any runtime: the control plane is
/// started on a thread of its own and holds nothing tied to a runtime. Every test should work
/// in its own namespace ([`ControlPlane::create_namespace`]).
///
/// # Panics
///
/// When the control plane cannot start; every later call panics with the same message, so each
/// test that needs it fails with the cause (e.g. the missing binary and how to build it).
pub fn shared() -> &'static ControlPlane {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    let started = SHARED.get_or_init(|| {
        // A thread of its own, because the caller may be inside a runtime (where `block_on`
        // panics), and a runtime of its own that may end after startup: the control plane keeps
        // only std processes and data, so clients made later on other runtimes work.
        let thread = std::thread::Builder::new()
            .name("testenv-start".into())
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("building a tokio runtime: {e}"))?;
                runtime
                    .block_on(ControlPlane::start(ControlPlaneOptions::default()))
                    .map_err(|e| e.to_string())
            });
        match thread {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err("the thread starting the control plane panicked".into())),
            Err(e) => Err(format!(
                "spawning the thread that starts the control plane: {e}"
            )),
        }
    });
    match started {
        Ok(cp) => cp,
        Err(e) => panic!("the shared test control plane failed to start: {e}"),
    }
}

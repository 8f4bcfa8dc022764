//! Errors of the environment. Messages are written for the person whose `just up` or test failed.

use std::path::PathBuf;
use std::time::Duration;

/// Something the environment could not do.
#[derive(thiserror::Error)]
pub enum Error {
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external command (ip, ctr, crictl, kubectl, ...) failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its stderr (or stdout when stderr is empty), trimmed.
        output: String,
    },
    /// A program the environment needs is not installed.
    #[error("`{name}` is missing: {hint}")]
    MissingTool {
        /// The program.
        name: String,
        /// How to get it.
        hint: String,
    },
    /// `state.json` cannot be read or written.
    #[error("{}: {message}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A program asked for its environment outside of one.
    #[error(
        "not inside a tikv-env environment ({} is not set): run the program with `tikv-env run` or `tikv-env exec`",
        crate::state::STATE_ENV
    )]
    NotInEnvironment,
    /// The environment in this directory is running already.
    #[error("an environment is already running in {} (tikv-env pid {pid}); stop it first", dir.display())]
    AlreadyRunning {
        /// Its directory.
        dir: PathBuf,
        /// Its owner.
        pid: u32,
    },
    /// A node name that is not in the environment.
    #[error("no node {node:?} in this environment (nodes: {nodes:?})")]
    NoSuchNode {
        /// The name asked for.
        node: String,
        /// The names there are.
        nodes: Vec<String>,
    },
    /// A pod, container, process or environment that was asked for is not (or no longer) there.
    #[error("{0}")]
    NotFound(String),
    /// A signal could not be sent.
    #[error("{what}: {source}")]
    Signal {
        /// What was being done, e.g. stopping the kubelet of node-0.
        what: String,
        /// The error from kill(2).
        #[source]
        source: nix::Error,
    },
    /// A thread or task of the environment panicked (a bug; its message is in the log).
    #[error("{0} panicked")]
    Panicked(String),
    /// Teardown could not remove everything.
    #[error("teardown left: {}", .0.join("; "))]
    Leftovers(Vec<String>),
    /// The control plane, or a process started under a watchdog, failed.
    #[error(transparent)]
    Testenv(#[from] testenv::Error),
    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },
    /// A part of the environment did not become ready in time.
    #[error("{what} not ready after {timeout:?}: {detail}")]
    NotReady {
        /// Which part.
        what: String,
        /// How long we waited.
        timeout: Duration,
        /// The last thing seen, with log lines where there are any.
        detail: String,
    },
}

/// Tests and `main` print errors with `Debug`; make that the readable message.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// A closure that wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }
}

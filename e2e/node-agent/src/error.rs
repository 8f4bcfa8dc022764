//! The library's error type.

use crate::launch::LaunchError;
use crate::net::NetError;

/// Errors of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Address or hosts-file management failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A host tool is missing or a process could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The node is not one of this agent's.
    #[error("node {0:?} is not run by this agent")]
    UnknownNode(String),
    /// No pod of that name runs on this agent's nodes.
    #[error("pod {0} is not run by this agent")]
    UnknownPod(String),
    /// A fault could not be injected.
    #[error("pod {pod}: {message}")]
    Fault {
        /// `namespace/name`.
        pod: String,
        /// Why.
        message: String,
    },
    /// The agent (or the pod's worker) has stopped.
    #[error("the node agent has stopped")]
    Stopped,
    /// Waiting for something took too long.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What.
        what: String,
        /// How long.
        timeout: std::time::Duration,
    },
}

impl Error {
    pub(crate) fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

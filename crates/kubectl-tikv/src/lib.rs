//! `kubectl tikv`: a kubectl plugin (krew-style: the binary `kubectl-tikv` on `PATH`) for TiKV
//! clusters that the operator runs.
//!
//! - `status CLUSTER`: PD members and leader, stores with state, leaders, regions and size, the
//!   operations in progress and recent Warning Events, from the API server and the objects'
//!   status alone: no pod proxy, no port-forward to PD (those break on managed clusters).
//! - `restart GROUP`: a safe rolling restart of a PDGroup or TiKVGroup through the operator: it
//!   stamps `tikv.org/restarted-at` into the group's template, which changes its revision, so the
//!   group rolls every instance the way it rolls a new version (leaders evicted first, PD
//!   members one at a time, leader last).
//! - `report CLUSTER`: a support bundle (`.tar.gz`) of the cluster's objects, its Events, the
//!   status output and the controllers' logs, Secrets redacted.
//!
//! Each command gathers what it needs once ([`view`]), then pure functions render or build it.

pub mod report;
pub mod restart;
pub mod status;
pub mod table;
pub mod view;

/// What can go wrong, said for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// The object asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A name that matches more than one kind.
    #[error("{0}")]
    Ambiguous(String),
    /// Writing the bundle failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }
}

//! Errors of the PD client.

use std::time::Duration;

/// What went wrong talking to PD.
///
/// The variants separate what a controller decides on: a missing object ([`Error::NotFound`]),
/// a cluster that no TiKV store has bootstrapped yet ([`Error::NotBootstrapped`]), a request PD
/// understood and turned down ([`Error::Refused`], with PD's own message), no PD member reachable
/// ([`Error::Unavailable`]) and an answer we could not read ([`Error::Decode`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PD answered 404: the store, member, scheduler or scheduler entry does not exist.
    #[error("not found in PD: {message}")]
    NotFound {
        /// PD's message (or the body of the 404, which may be plain text).
        message: String,
    },

    /// PD has no TiKV cluster yet: no store has called Bootstrap. Store and region endpoints
    /// answer this way until the first TiKV store starts.
    #[error("the PD cluster is not bootstrapped yet (no TiKV store has started)")]
    NotBootstrapped,

    /// PD answered with an error status, for example 400
    /// `"[PD:core:ErrStoresNotEnough]can not remove store 1 since the number of up stores would be 2 while need 3"`.
    #[error("PD refused the request (HTTP {status}): {message}")]
    Refused {
        /// HTTP status code of PD's answer.
        status: u16,
        /// PD's message, unquoted when PD sent a JSON string.
        message: String,
    },

    /// No PD endpoint gave an answer: every endpoint failed to connect, timed out, or reported
    /// that the cluster has no leader (503).
    #[error("no PD endpoint answered {method} {path}: {}", .attempts.join("; "))]
    Unavailable {
        /// HTTP method of the request.
        method: String,
        /// Path below `/pd/api/v1`.
        path: String,
        /// One line per endpoint tried: the endpoint and what went wrong.
        attempts: Vec<String>,
    },

    /// PD answered 2xx but the body is not what the PD HTTP API documents.
    #[error("cannot decode PD's answer to {path}: {source}")]
    Decode {
        /// Path below `/pd/api/v1`.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// The client was configured with an endpoint that is not an `http://host:port` URL.
    #[error("invalid PD endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The client was configured without any endpoint.
    #[error("no PD endpoints configured")]
    NoEndpoints,

    /// The client's TLS files cannot be used.
    #[error("the PD client's TLS files: {0}")]
    Tls(tls::Problem),
}

impl Error {
    /// True for [`Error::NotFound`], which callers that delete things usually treat as done.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// A fixed word per variant (for metrics labels): `not_found`, `not_bootstrapped`, `refused`,
    /// `unavailable`, `decode`, `invalid_endpoint`, `no_endpoints`, `tls`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::NotBootstrapped => "not_bootstrapped",
            Error::Refused { .. } => "refused",
            Error::Unavailable { .. } => "unavailable",
            Error::Decode { .. } => "decode",
            Error::InvalidEndpoint { .. } => "invalid_endpoint",
            Error::NoEndpoints => "no_endpoints",
            Error::Tls(_) => "tls",
        }
    }

    /// True when trying again later may help: PD was unreachable or not bootstrapped yet.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::NotBootstrapped)
    }
}

/// How one attempt against one endpoint failed (before PD gave an HTTP answer).
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// The TCP connection could not be made: the request was certainly not processed.
    Connect(String),
    /// The connection broke or the answer did not arrive in time: the request may have been
    /// processed, so only idempotent requests are repeated on another endpoint.
    Transport(String),
    /// No answer within the per-request timeout.
    Timeout(Duration),
    /// The endpoint answered 503: it has no leader to forward to (election in progress, or it is
    /// cut off from the quorum). Nothing was done, so another endpoint may be tried.
    NoLeader(String),
    /// The endpoint answered `ErrServerNotStarted`: its PD server is closed (stopping, or removed
    /// from the cluster while its process still runs). Nothing was done; try another endpoint.
    Closed(String),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Connect(e) => write!(f, "connect failed: {e}"),
            AttemptError::Transport(e) => write!(f, "request failed: {e}"),
            AttemptError::Timeout(d) => write!(f, "no answer within {d:?}"),
            AttemptError::NoLeader(m) => write!(f, "503 (no PD leader): {m}"),
            AttemptError::Closed(m) => write!(f, "PD server closed: {m}"),
        }
    }
}

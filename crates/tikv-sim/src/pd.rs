//! The store's gRPC connection to the PD leader.
//!
//! Every PD RPC except GetMembers must reach the leader (followers answer "not leader"), so the
//! connection asks any endpoint for the member list, dials the leader's first client URL, and
//! starts over from the endpoints whenever a call fails in a way that suggests the leader moved.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pdclient::proto::pdpb::{self, ErrorType, pd_client::PdClient};
use tls::net::ClientSource;
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

/// Time to connect to one PD endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time PD gets to answer one unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before trying again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(300);

/// PD errors as the store sees them.
#[derive(Debug, thiserror::Error)]
pub enum PdError {
    /// No endpoint could be reached or none knew a leader.
    #[error("no PD leader reachable: {0}")]
    NoLeader(String),
    /// The RPC failed.
    #[error("PD call {call} failed: {status}")]
    Rpc {
        /// The RPC.
        call: &'static str,
        /// gRPC status.
        status: tonic::Status,
    },
    /// PD answered with an error in the response header.
    #[error("PD call {call} returned {kind:?}: {message}")]
    Header {
        /// The RPC.
        call: &'static str,
        /// PD's error type.
        kind: ErrorType,
        /// PD's message.
        message: String,
    },
    /// The call kept failing until the deadline.
    #[error("PD call {call} did not succeed within {after:?}: {last}")]
    GaveUp {
        /// The RPC.
        call: &'static str,
        /// How long we tried.
        after: Duration,
        /// The last error.
        last: String,
    },
}

impl PdError {
    /// PD's header error type, if that is what this is.
    pub fn kind(&self) -> Option<ErrorType> {
        match self {
            PdError::Header { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// A (re)connecting gRPC client of the PD leader.
pub struct Pd {
    endpoints: Vec<String>,
    /// With TLS: the config of the next connection (the store's certificate, reloading).
    tls: Option<ClientSource>,
    /// Client URLs of the members GetMembers reported last: PD members come and go (scale-out,
    /// replacement), so the configured endpoints may all be gone one day, as TiKV also handles.
    learned: std::sync::Mutex<Vec<String>>,
    conn: Mutex<Option<PdClient<Channel>>>,
    cluster_id: AtomicU64,
    /// Bumped whenever the connection is dropped, so long-lived streams follow a leader change.
    generation: AtomicU64,
}

impl Pd {
    /// A client of the PD cluster at `endpoints` (`http://host:port`, or `https://host:port`
    /// with `tls`). Connects lazily.
    pub fn new(endpoints: Vec<String>, tls: Option<ClientSource>) -> Pd {
        Pd {
            endpoints,
            tls,
            learned: std::sync::Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            conn: Mutex::new(None),
            cluster_id: AtomicU64::new(0),
        }
    }

    /// The cluster ID learned from GetMembers (0 before the first successful connection).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Relaxed)
    }

    /// A request header for this cluster.
    pub fn header(&self) -> pdpb::RequestHeader {
        pdpb::RequestHeader {
            cluster_id: self.cluster_id(),
            caller_component: "tikv-sim".into(),
            ..Default::default()
        }
    }

    /// The client of the current leader, connecting first if needed.
    pub async fn client(&self) -> Result<PdClient<Channel>, PdError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = self.discover().await?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Forgets the current connection; the next call finds the leader again.
    pub async fn reset(&self) {
        *self.conn.lock().await = None;
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever the connection to the leader is dropped.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    async fn discover(&self) -> Result<PdClient<Channel>, PdError> {
        let mut errors = Vec::new();
        let mut candidates = self.endpoints.clone();
        let learned = self
            .learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for url in learned {
            if !candidates.iter().any(|c| same_url(c, &url)) {
                candidates.push(url);
            }
        }
        for endpoint in &candidates {
            let mut client = match connect(endpoint, self.tls.as_ref()).await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{endpoint}: {e}"));
                    continue;
                }
            };
            let req = pdpb::GetMembersRequest {
                header: Some(self.header()),
            };
            let members = match tokio::time::timeout(CALL_TIMEOUT, client.get_members(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => {
                    errors.push(format!("{endpoint}: {status}"));
                    continue;
                }
                Err(_) => {
                    errors.push(format!("{endpoint}: GetMembers timed out"));
                    continue;
                }
            };
            let cluster_id = members.header.as_ref().map(|h| h.cluster_id).unwrap_or(0);
            *self.learned.lock().unwrap_or_else(|p| p.into_inner()) = members
                .members
                .iter()
                .filter_map(|m| m.client_urls.first().cloned())
                .collect();
            let Some(leader_url) = members.leader.as_ref().and_then(|l| l.client_urls.first())
            else {
                errors.push(format!("{endpoint}: no leader"));
                continue;
            };
            let leader = if same_url(leader_url, endpoint) {
                client
            } else {
                match connect(leader_url, self.tls.as_ref()).await {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(format!("leader {leader_url}: {e}"));
                        continue;
                    }
                }
            };
            self.cluster_id.store(cluster_id, Ordering::Relaxed);
            tracing::debug!(leader = %leader_url, cluster_id, "connected to the PD leader");
            return Ok(leader);
        }
        Err(PdError::NoLeader(errors.join("; ")))
    }

    /// Runs a unary call against the leader, reconnecting and retrying on transport errors and
    /// "not leader" until `deadline` has passed. Errors in the response header are returned to
    /// the caller (through `check`), not retried.
    pub async fn call<T, F, Fut>(
        &self,
        name: &'static str,
        deadline: Duration,
        f: F,
    ) -> Result<T, PdError>
    where
        F: Fn(PdClient<Channel>, pdpb::RequestHeader) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = tokio::time::Instant::now();
        loop {
            let last = match self.client().await {
                Ok(client) => {
                    match tokio::time::timeout(CALL_TIMEOUT, f(client, self.header())).await {
                        Ok(Ok(resp)) => return Ok(resp.into_inner()),
                        Ok(Err(status)) if !retryable(&status) => {
                            return Err(PdError::Rpc { call: name, status });
                        }
                        Ok(Err(status)) => status.to_string(),
                        Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
                    }
                }
                Err(e) => e.to_string(),
            };
            tracing::debug!(call = name, error = %last, "PD call failed; finding the leader again");
            self.reset().await;
            if start.elapsed() >= deadline {
                return Err(PdError::GaveUp {
                    call: name,
                    after: deadline,
                    last,
                });
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Turns an error in a response header into [`PdError::Header`].
pub fn check(call: &'static str, header: Option<&pdpb::ResponseHeader>) -> Result<(), PdError> {
    match header.and_then(|h| h.error.as_ref()) {
        Some(e) if e.r#type() != ErrorType::Ok => Err(PdError::Header {
            call,
            kind: e.r#type(),
            message: e.message.clone(),
        }),
        _ => Ok(()),
    }
}

/// Whether a failed call may succeed on the (new) leader: connection problems and PD's
/// "not leader" (which it sends as Unavailable or Unknown, depending on the path).
fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code;
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => true,
        Code::Unknown => {
            status.message().contains("not leader") || status.message().contains("transport")
        }
        _ => status.message().contains("not leader"),
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

async fn connect(url: &str, tls: Option<&ClientSource>) -> Result<PdClient<Channel>, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // Detects a dead or frozen PD on long-lived streams (the region heartbeat stream).
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(3))
        .keep_alive_while_idle(true);
    let channel = tls::net::connect(endpoint, tls).await.map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    })?;
    Ok(PdClient::new(channel))
}

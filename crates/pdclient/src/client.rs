//! The HTTP client: endpoint failover, timeouts and error mapping, plus one method per PD call
//! the controllers make.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AttemptError, Error};
use crate::types::{
    ClusterInfo, ClusterStatus, EvictLeaderConfig, Member, MemberHealth, Members, RegionCheck,
    RegionInfo, RegionsList, ReplicationConfig, StoreInfo, StoreProgress, StoreStateName,
    StoresList,
};

/// Name of PD's shared leader-eviction scheduler (one scheduler, one entry per store).
pub const EVICT_LEADER_SCHEDULER: &str = "evict-leader-scheduler";

/// Default time PD gets to answer one request on one endpoint.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time to establish a TCP connection to one endpoint.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One request as an [`Observer`] sees it: once per call, whichever endpoints it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The path below `/pd/api/v1` with its parameters as placeholders, e.g. `/store/{id}`.
    pub route: &'static str,
    /// `ok`, or the kind of error ([`Error::kind`]).
    pub outcome: &'static str,
}

/// Called after every request, e.g. to count requests in metrics.
pub type Observer = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// Client of PD's HTTP API (`/pd/api/v1`) over several endpoints.
///
/// Every request goes to the endpoint that answered last and moves on to the next one when an
/// endpoint cannot be reached, times out, or answers 503 (no leader). Followers forward API calls
/// to the PD leader themselves, so any live member can answer. A request that may already have
/// reached PD (a broken connection or a timeout after sending) is only repeated elsewhere when it
/// is idempotent; resigning the leader is the one call that is not.
///
/// Cloning is cheap and clones share the connection pool.
#[derive(Clone)]
pub struct PdClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    http: Http,
    timeout: Duration,
    /// Index of the endpoint to try first: the last one that answered.
    preferred: AtomicUsize,
    observer: Option<Observer>,
}

impl std::fmt::Debug for PdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdClient")
            .field("endpoints", &self.inner.endpoints)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// The connection pool: plain HTTP, or HTTPS with the client's certificate (mutual TLS).
enum Http {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

/// Builder for [`PdClient`] with non-default timeouts or TLS.
#[derive(Clone)]
pub struct PdClientBuilder {
    endpoints: Vec<String>,
    timeout: Duration,
    connect_timeout: Duration,
    observer: Option<Observer>,
    tls: Option<tls::Material>,
}

impl std::fmt::Debug for PdClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("observer", &self.observer.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PdClientBuilder {
    /// Time PD gets to answer one request on one endpoint (default 5 s). A request that fails
    /// over to other endpoints can take up to this times the number of endpoints.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time to establish a TCP connection to one endpoint (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Calls `observer` after every request.
    pub fn observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Speaks HTTPS with mutual TLS: presents `material`'s certificate (`tls.crt`, `tls.key`)
    /// and trusts PD members whose certificates chain to its `ca.crt` and name the host of the
    /// endpoint. PD with `[security]` set refuses clients without such a certificate.
    pub fn tls(mut self, material: tls::Material) -> Self {
        self.tls = Some(material);
        self
    }

    /// Checks the endpoints (and the TLS files) and builds the client. Endpoints are
    /// `http://host:port` or `host:port`, e.g. PD's `--advertise-client-urls`; with
    /// [`PdClientBuilder::tls`], `https://host:port` or `host:port`. Nothing is connected yet.
    pub fn build(self) -> Result<PdClient, Error> {
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| normalize_endpoint(e, self.tls.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        let mut pool = Client::builder(TokioExecutor::new());
        // PD closes idle keep-alive connections after a while; a pooled connection that died
        // in between must not turn into a failed request.
        pool.pool_idle_timeout(Duration::from_secs(30));
        let http = match &self.tls {
            None => Http::Plain(pool.build(connector)),
            Some(material) => {
                let parsed = material.parse().map_err(Error::Tls)?;
                // HTTP/1.1 without ALPN: PD's TLS listener offers only h2 and would refuse a
                // client that asks for http/1.1 only.
                let config = tls::config::client(&parsed, &[]).map_err(Error::Tls)?;
                connector.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_only()
                    .enable_http1()
                    .wrap_connector(connector);
                Http::Tls(pool.build(https))
            }
        };
        Ok(PdClient {
            inner: Arc::new(Inner {
                endpoints,
                http,
                timeout: self.timeout,
                preferred: AtomicUsize::new(0),
                observer: self.observer,
            }),
        })
    }
}

/// Whether a request may be repeated on another endpoint after it may have reached PD.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotent {
    Yes,
    No,
}

impl PdClient {
    /// A client with default timeouts. See [`PdClientBuilder::build`] for the endpoint format.
    pub fn new<I, S>(endpoints: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder(endpoints).build()
    }

    /// A builder to set timeouts.
    pub fn builder<I, S>(endpoints: I) -> PdClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        PdClientBuilder {
            endpoints: endpoints
                .into_iter()
                .map(|e| e.as_ref().to_string())
                .collect(),
            timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            observer: None,
            tls: None,
        }
    }

    /// The endpoints, normalized to `http://host:port` (`https://` with TLS).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Whether `other` is a clone of this client (same endpoints state and connection pool).
    pub fn is_clone_of(&self, other: &PdClient) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    // ---- members ------------------------------------------------------------------------

    /// `GET /members`: all members, the PD leader and the etcd leader.
    pub async fn members(&self) -> Result<Members, Error> {
        self.get_json("/members", "/members").await
    }

    /// `GET /leader`: the current PD leader.
    pub async fn leader(&self) -> Result<Member, Error> {
        self.get_json("/leader", "/leader").await
    }

    /// `GET /health`: every member and whether it answers its ping.
    pub async fn health(&self) -> Result<Vec<MemberHealth>, Error> {
        self.get_json("/health", "/health").await
    }

    /// `POST /leader/transfer/{name}`: asks the leader to hand PD leadership to the member `name`.
    /// Asynchronous: poll [`PdClient::leader`]. An unknown name is refused with PD's
    /// `"no valid pd to transfer etcd leader"` (500).
    pub async fn transfer_leader(&self, name: &str) -> Result<(), Error> {
        let path = format!("/leader/transfer/{}", path_segment(name));
        self.send(
            Method::POST,
            "/leader/transfer/{name}",
            &path,
            None,
            Idempotent::Yes,
        )
        .await
        .map(drop)
    }

    /// `POST /leader/resign`: the leader steps down and a random other member takes over.
    /// Not repeated on another endpoint after a timeout, since it could resign twice.
    pub async fn resign_leader(&self) -> Result<(), Error> {
        self.send(
            Method::POST,
            "/leader/resign",
            "/leader/resign",
            None,
            Idempotent::No,
        )
        .await
        .map(drop)
    }

    /// `DELETE /members/name/{name}`: removes a member from the PD (etcd) cluster.
    /// [`Error::NotFound`] if there is no such member.
    pub async fn delete_member(&self, name: &str) -> Result<(), Error> {
        let path = format!("/members/name/{}", path_segment(name));
        self.send(
            Method::DELETE,
            "/members/name/{name}",
            &path,
            None,
            Idempotent::Yes,
        )
        .await
        .map(drop)
    }

    /// `DELETE /members/id/{id}`: removes a member by its etcd member ID.
    pub async fn delete_member_by_id(&self, member_id: u64) -> Result<(), Error> {
        let path = format!("/members/id/{member_id}");
        self.send(
            Method::DELETE,
            "/members/id/{id}",
            &path,
            None,
            Idempotent::Yes,
        )
        .await
        .map(drop)
    }

    // ---- cluster ------------------------------------------------------------------------

    /// `GET /cluster`: the cluster ID and max-replicas.
    pub async fn cluster(&self) -> Result<ClusterInfo, Error> {
        self.get_json("/cluster", "/cluster").await
    }

    /// The PD cluster ID (from `GET /cluster`).
    pub async fn cluster_id(&self) -> Result<u64, Error> {
        Ok(self.cluster().await?.id)
    }

    /// `GET /cluster/status`: bootstrap time and whether the first region is fully replicated.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        self.get_json("/cluster/status", "/cluster/status").await
    }

    /// `GET /config/replicate`: max-replicas, location-labels and related settings.
    pub async fn replication_config(&self) -> Result<ReplicationConfig, Error> {
        self.get_json("/config/replicate", "/config/replicate")
            .await
    }

    /// Sets `replication.max-replicas` (`POST /config/replicate`, merged into the config).
    pub async fn set_max_replicas(&self, max_replicas: u64) -> Result<(), Error> {
        let body = serde_json::json!({ "max-replicas": max_replicas });
        self.post_json("/config/replicate", "/config/replicate", &body)
            .await
    }

    /// Sets `replication.location-labels` (`POST /config/replicate`, merged into the config).
    pub async fn set_location_labels(&self, labels: &[String]) -> Result<(), Error> {
        let body = serde_json::json!({ "location-labels": labels.join(",") });
        self.post_json("/config/replicate", "/config/replicate", &body)
            .await
    }

    // ---- stores -------------------------------------------------------------------------

    /// All stores, tombstones included (`GET /stores/check`; on a PD older than v7.5 that lacks
    /// it, `GET /stores?state=0&state=1&state=2`).
    pub async fn stores(&self) -> Result<Vec<StoreInfo>, Error> {
        match self
            .get_json::<StoresList>("/stores/check", "/stores/check")
            .await
        {
            Ok(list) => Ok(list.stores),
            Err(Error::NotFound { .. }) => Ok(self
                .get_json::<StoresList>("/stores", "/stores?state=0&state=1&state=2")
                .await?
                .stores),
            Err(e) => Err(e),
        }
    }

    /// Stores whose `state_name` is one of `states` (`GET /stores/check?state=…`), e.g. Down.
    pub async fn stores_by_state(
        &self,
        states: &[StoreStateName],
    ) -> Result<Vec<StoreInfo>, Error> {
        let query: Vec<String> = states
            .iter()
            .map(|s| format!("state={}", s.as_str()))
            .collect();
        let path = format!("/stores/check?{}", query.join("&"));
        Ok(self
            .get_json::<StoresList>("/stores/check", &path)
            .await?
            .stores)
    }

    /// `GET /store/{id}`. [`Error::NotFound`] for an unknown store.
    pub async fn store(&self, store_id: u64) -> Result<StoreInfo, Error> {
        self.get_json("/store/{id}", &format!("/store/{store_id}"))
            .await
    }

    /// The number of region leaders PD sees on a store (one `GET /store/{id}`; PD refreshes the
    /// count from its region tree continuously, so this is as fresh as the region heartbeats).
    pub async fn store_leader_count(&self, store_id: u64) -> Result<u64, Error> {
        Ok(self.store(store_id).await?.status.leader_count)
    }

    /// `DELETE /store/{id}`: starts removing a store (Offline, then Tombstone once its regions
    /// moved). PD refuses with [`Error::Refused`] (400) when fewer Up stores than max-replicas
    /// would remain; 410 for a tombstone; repeating the call on an Offline store is a no-op.
    pub async fn delete_store(&self, store_id: u64) -> Result<(), Error> {
        let path = format!("/store/{store_id}");
        self.send(Method::DELETE, "/store/{id}", &path, None, Idempotent::Yes)
            .await
            .map(drop)
    }

    /// `POST /store/{id}/state?state=Up`: cancels a removal that has not reached Tombstone.
    pub async fn cancel_delete_store(&self, store_id: u64) -> Result<(), Error> {
        let path = format!("/store/{store_id}/state?state=Up");
        self.send(
            Method::POST,
            "/store/{id}/state",
            &path,
            None,
            Idempotent::Yes,
        )
        .await
        .map(drop)
    }

    /// `GET /stores/progress?id={id}`: how far PD got removing (or preparing) the store; `None`
    /// when PD tracks no progress for it (it is Up, or already a tombstone).
    pub async fn store_progress(&self, store_id: u64) -> Result<Option<StoreProgress>, Error> {
        let path = format!("/stores/progress?id={store_id}");
        match self.get_json("/stores/progress", &path).await {
            Ok(p) => Ok(Some(p)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /stores/remove-tombstone`: forgets every tombstone that holds no regions.
    pub async fn remove_tombstones(&self) -> Result<(), Error> {
        self.send(
            Method::DELETE,
            "/stores/remove-tombstone",
            "/stores/remove-tombstone",
            None,
            Idempotent::Yes,
        )
        .await
        .map(drop)
    }

    /// `POST /store/{id}/label`: merges `labels` into the store's labels.
    pub async fn set_store_labels(
        &self,
        store_id: u64,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        self.post_json(
            "/store/{id}/label",
            &format!("/store/{store_id}/label"),
            labels,
        )
        .await
    }

    // ---- schedulers ---------------------------------------------------------------------

    /// `GET /schedulers`: the names of the running schedulers.
    pub async fn schedulers(&self) -> Result<Vec<String>, Error> {
        self.get_json("/schedulers", "/schedulers").await
    }

    /// Adds `store_id` to the evict-leader scheduler (`POST /schedulers`; PD creates the
    /// scheduler or adds the store to it). PD then moves the store's leaders away and keeps them
    /// away until the entry is removed.
    pub async fn add_evict_leader(&self, store_id: u64) -> Result<(), Error> {
        let body = serde_json::json!({ "name": EVICT_LEADER_SCHEDULER, "store_id": store_id });
        self.post_json("/schedulers", "/schedulers", &body).await
    }

    /// Removes `store_id` from the evict-leader scheduler
    /// (`DELETE /scheduler-config/evict-leader-scheduler/delete/{id}`; PD removes the scheduler
    /// with its last entry). [`Error::NotFound`] if the store has no entry or there is no
    /// scheduler at all.
    pub async fn remove_evict_leader(&self, store_id: u64) -> Result<(), Error> {
        let path = format!("/scheduler-config/{EVICT_LEADER_SCHEDULER}/delete/{store_id}");
        let route = "/scheduler-config/evict-leader-scheduler/delete/{id}";
        self.send(Method::DELETE, route, &path, None, Idempotent::Yes)
            .await
            .map(drop)
    }

    /// The stores whose leaders are being evicted, sorted (empty when the scheduler does not
    /// exist).
    pub async fn evict_leader_stores(&self) -> Result<Vec<u64>, Error> {
        let path = "/scheduler-config/evict-leader-scheduler/list";
        match self.get_json::<EvictLeaderConfig>(path, path).await {
            Ok(config) => {
                let mut ids = config
                    .store_id_ranges
                    .keys()
                    .map(|k| {
                        k.parse::<u64>().map_err(|e| Error::Decode {
                            path: path.to_string(),
                            source: serde::de::Error::custom(format!("store id {k:?}: {e}")),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                ids.sort_unstable();
                Ok(ids)
            }
            // Without the scheduler PD has no route for its config: a plain-text 404.
            Err(Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    // ---- regions ------------------------------------------------------------------------

    /// `GET /regions/check/down-peer`: regions whose leader reports a down peer.
    pub async fn down_peer_regions(&self) -> Result<Vec<RegionInfo>, Error> {
        self.regions_in_check(RegionCheck::DownPeer).await
    }

    /// `GET /regions/check/{check}`: the regions PD lists under one of its replica checks.
    pub async fn regions_in_check(&self, check: RegionCheck) -> Result<Vec<RegionInfo>, Error> {
        let path = check.path();
        Ok(self.get_json::<RegionsList>(path, path).await?.regions)
    }

    /// `GET /region/id/{id}`. PD answers `null` for an unknown region, which is
    /// [`Error::NotFound`] here.
    pub async fn region(&self, region_id: u64) -> Result<RegionInfo, Error> {
        let path = format!("/region/id/{region_id}");
        match self
            .get_json::<Option<RegionInfo>>("/region/id/{id}", &path)
            .await?
        {
            Some(region) => Ok(region),
            None => Err(Error::NotFound {
                message: format!("region {region_id}"),
            }),
        }
    }

    // ---- plumbing -----------------------------------------------------------------------

    async fn get_json<T: DeserializeOwned>(
        &self,
        route: &'static str,
        path: &str,
    ) -> Result<T, Error> {
        let body = self
            .send(Method::GET, route, path, None, Idempotent::Yes)
            .await?;
        serde_json::from_slice(&body).map_err(|source| Error::Decode {
            path: path.to_string(),
            source,
        })
    }

    async fn post_json<B: Serialize + ?Sized>(
        &self,
        route: &'static str,
        path: &str,
        body: &B,
    ) -> Result<(), Error> {
        let body = serde_json::to_vec(body).map_err(|source| Error::Decode {
            path: path.to_string(),
            source,
        })?;
        // Every JSON POST we make sets a value; setting it twice is harmless.
        self.send(Method::POST, route, path, Some(body), Idempotent::Yes)
            .await
            .map(drop)
    }

    /// Sends one request, failing over between endpoints, and returns the body of a 2xx answer.
    /// `route` is `path` with its parameters as placeholders, for the observer.
    async fn send(
        &self,
        method: Method,
        route: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
        idempotent: Idempotent,
    ) -> Result<Bytes, Error> {
        let result = self.send_to_any(&method, path, body, idempotent).await;
        if let Some(observe) = &self.inner.observer {
            observe(&RequestRecord {
                method: method.as_str(),
                route,
                outcome: result.as_ref().map_or_else(Error::kind, |_| "ok"),
            });
        }
        result
    }

    async fn send_to_any(
        &self,
        method: &Method,
        path: &str,
        body: Option<Vec<u8>>,
        idempotent: Idempotent,
    ) -> Result<Bytes, Error> {
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n;
        let body = Bytes::from(body.unwrap_or_default());
        let mut attempts = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let endpoint = &self.inner.endpoints[idx];
            match self.attempt(endpoint, method, path, body.clone()).await {
                Ok((status, bytes)) => {
                    self.inner.preferred.store(idx, Ordering::Relaxed);
                    return answer(status, bytes);
                }
                Err(err) => {
                    tracing::debug!(%endpoint, %method, path, error = %err, "PD endpoint failed");
                    let may_have_run =
                        matches!(err, AttemptError::Transport(_) | AttemptError::Timeout(_));
                    attempts.push(format!("{endpoint}: {err}"));
                    if may_have_run && idempotent == Idempotent::No {
                        break;
                    }
                }
            }
        }
        Err(Error::Unavailable {
            method: method.to_string(),
            path: path.to_string(),
            attempts,
        })
    }

    async fn attempt(
        &self,
        endpoint: &str,
        method: &Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), AttemptError> {
        let uri: Uri = format!("{endpoint}/pd/api/v1{path}")
            .parse()
            .map_err(|e| AttemptError::Connect(format!("bad URL: {e}")))?;
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        if !body.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| AttemptError::Connect(format!("bad request: {e}")))?;
        let exchange = async {
            let response = match &self.inner.http {
                Http::Plain(c) => c.request(request).await,
                Http::Tls(c) => c.request(request).await,
            };
            let response = response.map_err(|e| {
                if e.is_connect() {
                    AttemptError::Connect(error_chain(&e))
                } else {
                    AttemptError::Transport(error_chain(&e))
                }
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| AttemptError::Transport(error_chain(&e)))?
                .to_bytes();
            Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| AttemptError::Timeout(self.inner.timeout))??;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(AttemptError::NoLeader(message_of(&bytes)));
        }
        // PD's redirector answers this before any handler runs when the server is closed.
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            let message = message_of(&bytes);
            if message.contains("ErrServerNotStarted") {
                return Err(AttemptError::Closed(message));
            }
        }
        Ok((status, bytes))
    }
}

/// Maps PD's HTTP answer to the body or a typed error.
fn answer(status: StatusCode, body: Bytes) -> Result<Bytes, Error> {
    if status.is_success() {
        return Ok(body);
    }
    let message = message_of(&body);
    // PD's clusterRouter answers this (500, and 406 on some routes) until a store bootstraps.
    if message.contains("ErrNotBootstrapped") || message.contains("not bootstrapped") {
        return Err(Error::NotBootstrapped);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(Error::NotFound { message });
    }
    Err(Error::Refused {
        status: status.as_u16(),
        message,
    })
}

/// PD's error bodies are JSON strings; some (mux 404s, proxies) are plain text.
fn message_of(body: &[u8]) -> String {
    match serde_json::from_slice::<String>(body) {
        Ok(s) => s,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

/// Percent-encodes what may not appear in one URL path segment (member names are usually
/// `[a-z0-9-]`, but nothing stops a `/` or space).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `host:port` or `http://host:port[/]` → `http://host:port`; with TLS, `host:port` or
/// `https://host:port[/]` → `https://host:port`.
pub(crate) fn normalize_endpoint(raw: &str, tls: bool) -> Result<String, Error> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: raw.to_string(),
        reason: reason.to_string(),
    };
    let scheme = if tls { "https" } else { "http" };
    let trimmed = raw.trim().trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("{scheme}://{trimmed}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match (uri.scheme_str(), tls) {
        (Some("http"), false) | (Some("https"), true) => {}
        (Some("https"), false) => {
            return Err(invalid(
                "an https endpoint needs the client's TLS certificate",
            ));
        }
        (Some("http"), true) => return Err(invalid("with TLS the scheme must be https")),
        _ => return Err(invalid("the scheme must be http or https")),
    }
    let authority = uri.authority().ok_or_else(|| invalid("missing host"))?;
    if authority.port_u16().is_none() {
        return Err(invalid("missing port"));
    }
    if !matches!(uri.path(), "" | "/") {
        return Err(invalid("must not have a path"));
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("http://pd-0.pd:2379/", false).unwrap(),
            "http://pd-0.pd:2379"
        );
        assert_eq!(
            normalize_endpoint("pd-0.pd:2379", true).unwrap(),
            "https://pd-0.pd:2379"
        );
        assert_eq!(
            normalize_endpoint("https://pd-0.pd:2379/", true).unwrap(),
            "https://pd-0.pd:2379"
        );
        for (endpoint, tls) in [
            ("https://pd:2379", false),
            ("http://pd:2379", true),
            ("ftp://pd:2379", false),
            ("pd", false),
            ("http://pd:2379/pd/api/v1", false),
        ] {
            assert!(
                matches!(
                    normalize_endpoint(endpoint, tls),
                    Err(Error::InvalidEndpoint { .. })
                ),
                "{endpoint} (tls: {tls})"
            );
        }
        assert!(matches!(
            PdClient::new(Vec::<String>::new()),
            Err(Error::NoEndpoints)
        ));
    }

    #[test]
    fn answers_map_to_typed_errors() {
        let refused = answer(
            StatusCode::BAD_REQUEST,
            Bytes::from_static(
                br#""[PD:core:ErrStoresNotEnough]can not remove store 1 since the number of up stores would be 2 while need 3""#,
            ),
        );
        match refused {
            Err(Error::Refused {
                status: 400,
                message,
            }) => {
                assert!(message.starts_with("[PD:core:ErrStoresNotEnough]can not remove store 1"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let not_bootstrapped = answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(
                br#""[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped, please start TiKV first""#,
            ),
        );
        assert!(matches!(not_bootstrapped, Err(Error::NotBootstrapped)));
        let not_found = answer(
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"404 page not found\n"),
        );
        match not_found {
            Err(Error::NotFound { message }) => assert_eq!(message, "404 page not found"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            answer(StatusCode::OK, Bytes::from_static(b"null")).unwrap(),
            "null"
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("pd-0"), "pd-0");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}

//! The status server: `/status`, `/metrics` (TiKV's metric names) and `/sim/regions` (every
//! replica as JSON, for debugging). With `[security]` it speaks HTTPS and, as TiKV's, refuses
//! clients without a certificate from the bundle.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::raftstore::store::{Handle, Msg, View};
use crate::server::metrics::{GrpcMetrics, cpu_seconds, resident_memory_bytes};

/// What `/metrics` reports besides the raftstore's view.
pub struct StatusInfo {
    /// This store.
    pub store_id: u64,
    /// Version reported to PD.
    pub version: String,
    /// Capacity reported to PD.
    pub capacity: u64,
    /// Process start, unix seconds.
    pub start_unix: u64,
    /// The data directory (its size is the used space).
    pub data_dir: PathBuf,
    /// gRPC metrics.
    pub grpc: Arc<GrpcMetrics>,
}

/// Bytes of all files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Capacity, available and used bytes as TiKV reports them (used: the data directory).
pub fn sizes(capacity: u64, data_dir: &Path) -> (u64, u64, u64) {
    let used = dir_size(data_dir).min(capacity);
    (capacity, capacity - used, used)
}

/// The Prometheus text of `/metrics`.
pub fn metrics_text(info: &StatusInfo, view: &View) -> String {
    let (capacity, available, used) = sizes(info.capacity, &info.data_dir);
    let mut out = String::new();
    let _ = write!(
        out,
        "# HELP tikv_raftstore_region_count Number of regions collected in region_collector\n\
         # TYPE tikv_raftstore_region_count gauge\n\
         tikv_raftstore_region_count{{type=\"leader\"}} {leaders}\n\
         tikv_raftstore_region_count{{type=\"region\"}} {regions}\n\
         # HELP tikv_store_size_bytes Size of storage.\n\
         # TYPE tikv_store_size_bytes gauge\n\
         tikv_store_size_bytes{{type=\"capacity\"}} {capacity}\n\
         tikv_store_size_bytes{{type=\"available\"}} {available}\n\
         tikv_store_size_bytes{{type=\"used\"}} {used}\n\
         # HELP tikv_engine_num_keys Keys held by the store (RawKV, default column family).\n\
         # TYPE tikv_engine_num_keys gauge\n\
         tikv_engine_num_keys{{db=\"kv\",cf=\"default\"}} {keys}\n\
         # HELP tikv_engine_size_bytes Bytes of keys and values held (RawKV, default column family).\n\
         # TYPE tikv_engine_size_bytes gauge\n\
         tikv_engine_size_bytes{{db=\"kv\",type=\"default\"}} {bytes}\n\
         # HELP tikv_sim_store_info The simulated store's identity.\n\
         # TYPE tikv_sim_store_info gauge\n\
         tikv_sim_store_info{{store_id=\"{store_id}\",version=\"{version}\"}} 1\n\
         # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
         # TYPE process_start_time_seconds gauge\n\
         process_start_time_seconds {start}\n\
         # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\n\
         process_resident_memory_bytes {rss}\n\
         # HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
         # TYPE process_cpu_seconds_total counter\n\
         process_cpu_seconds_total {cpu}\n",
        leaders = view.leaders,
        regions = view.regions,
        keys = view.keys,
        bytes = view.bytes,
        store_id = info.store_id,
        version = info.version,
        start = info.start_unix,
        rss = resident_memory_bytes(),
        cpu = cpu_seconds(),
    );
    info.grpc.render(&mut out);
    out
}

/// Serves the status endpoints until `shutdown` changes; over TLS with the configs of `tls`.
pub async fn serve(
    listener: TcpListener,
    info: Arc<StatusInfo>,
    store: Handle,
    tls: Option<tls::net::ServerSource>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (info, store) = (info.clone(), store.clone());
        let tls = tls.as_ref().map(|source| source());
        tokio::spawn(async move {
            match tls {
                None => connection(stream, info, store).await,
                Some(config) => match tls::net::accept(config, stream).await {
                    Ok(conn) => connection(conn, info, store).await,
                    Err(e) => tracing::info!(error = %e, "status: TLS handshake refused"),
                },
            }
        });
    }
}

async fn connection<IO>(io: IO, info: Arc<StatusInfo>, store: Handle)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (info, store) = (info.clone(), store.clone());
        async move { Ok::<_, Infallible>(handle(&info, &store, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

async fn handle(
    info: &StatusInfo,
    store: &Handle,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match req.uri().path() {
        "/status" => respond(StatusCode::OK, "text/plain", ""),
        "/metrics" => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics_text(info, &store.view()),
        ),
        "/sim/regions" => {
            // Built on request by the raftstore (it owns the replicas).
            let (tx, rx) = tokio::sync::oneshot::channel();
            let summary = if store.send(Msg::Summary(tx)) {
                rx.await.ok()
            } else {
                None
            };
            match summary.map(|s| serde_json::to_vec_pretty(&s)) {
                Some(Ok(body)) => respond(StatusCode::OK, "application/json", body),
                Some(Err(e)) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
                None => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "raftstore is busy\n",
                ),
            }
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

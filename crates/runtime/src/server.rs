//! The HTTP endpoints of every controller: `/healthz` (the process serves), `/readyz` (it is
//! connected, its CRDs exist and it runs its controllers) and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Readiness shared between the controller and the server.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the process ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    /// Whether the process is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Errors of the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The TLS files cannot be used.
    #[error("the endpoints' TLS files: {0}")]
    Tls(#[from] tls::LoadError),
}

/// HTTPS for the endpoints: the certificate (re-read when the files change, as a renewed Secret
/// volume does), and with a client CA, `/metrics` only for clients with a certificate from it.
pub struct Tls {
    configs: tls::Reloading<rustls::ServerConfig>,
    clients_verified: bool,
}

impl Tls {
    /// Loads the files (they must be usable now).
    pub fn load(paths: tls::Paths) -> Result<Arc<Tls>, Error> {
        let clients_verified = paths.ca.is_some();
        let auth = if clients_verified {
            tls::config::ClientAuth::Optional
        } else {
            tls::config::ClientAuth::None
        };
        let build = move |p: &tls::Parsed| tls::config::server(p, tls::config::ALPN_HTTP1, auth);
        let configs = tls::Reloading::new(paths, Box::new(build))?;
        Ok(Arc::new(Tls {
            configs,
            clients_verified,
        }))
    }
}

/// Answers one request; pure apart from reading the shared state. `/metrics` only when
/// `may_scrape` (a verified client certificate, where one is required).
fn respond(
    path: &str,
    readiness: &Readiness,
    metrics: &Metrics,
    may_scrape: bool,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok".to_string()),
        "/readyz" if readiness.get() => (StatusCode::OK, "text/plain", "ok".to_string()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready".to_string(),
        ),
        "/metrics" if !may_scrape => (
            StatusCode::FORBIDDEN,
            "text/plain",
            "a client certificate is required".to_string(),
        ),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Binds `addr` and serves the endpoints in the background, over HTTPS with `tls`. Returns the
/// bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: Metrics,
    tls: Option<Arc<Tls>>,
) -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (readiness, metrics, tls) = (readiness.clone(), metrics.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => connection(stream, readiness, metrics, true).await,
                    Some(tls) => match tls::net::accept(tls.configs.get(), stream).await {
                        Ok(conn) => {
                            let may_scrape = !tls.clients_verified || conn.authenticated();
                            connection(conn, readiness, metrics, may_scrape).await
                        }
                        Err(e) => tracing::debug!(error = %e, "endpoints: TLS handshake failed"),
                    },
                }
            });
        }
    });
    Ok(bound)
}

async fn connection<IO>(io: IO, readiness: Readiness, metrics: Metrics, may_scrape: bool)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(req.uri().path(), &readiness, &metrics, may_scrape);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        (
            status,
            out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string(),
        )
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let readiness = Readiness::default();
        let metrics = Metrics::new();
        drop(metrics.reconcile("PD"));
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            readiness.clone(),
            metrics,
            None,
        )
        .await
        .unwrap();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        readiness.set(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains(r#"tikv_operator_reconcile_runs_total{kind="PD"} 1"#),
            "{body}"
        );
        assert_eq!(get(addr, "/nope").await.0, 404);
    }

    #[tokio::test]
    async fn over_tls_metrics_need_a_client_certificate_probes_do_not() {
        use testenv::pki::{Ca, Leaf, client_config, https_get, write_dir};
        let ca = Ca::new("endpoints").unwrap();
        let dir = std::env::temp_dir().join(format!("runtime-tls-{}", std::process::id()));
        let server = ca.issue(&Leaf::peer("ctl", &["127.0.0.1"])).unwrap();
        write_dir(&dir, ca.pem(), &server).unwrap();
        let paths = tls::Paths::in_dir(&dir);
        let readiness = Readiness::default();
        readiness.set(true);
        let tls = Tls::load(paths).unwrap();
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            readiness,
            Metrics::new(),
            Some(tls),
        )
        .await
        .unwrap()
        .to_string();
        let scraper = ca.issue(&Leaf::client("prometheus")).unwrap();
        let with = || client_config(ca.pem(), Some(&scraper)).unwrap();
        let without = || client_config(ca.pem(), None).unwrap();
        let get = |config, path| https_get(&addr, "127.0.0.1", config, path);
        assert_eq!(get(without(), "/healthz").await.unwrap().0, 200);
        assert_eq!(get(without(), "/readyz").await.unwrap().0, 200);
        assert_eq!(get(without(), "/metrics").await.unwrap().0, 403);
        let (code, body) = get(with(), "/metrics").await.unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("tikv_operator_"), "{body}");
        // Another CA's client certificate is refused in the handshake.
        let stranger = Ca::new("stranger").unwrap();
        let foreign = stranger.issue(&Leaf::client("x")).unwrap();
        let foreign = client_config(ca.pem(), Some(&foreign)).unwrap();
        assert!(get(foreign, "/metrics").await.is_err());
        // A renewed certificate is served on the next connection.
        let renewed = ca.issue(&Leaf::peer("ctl", &["127.0.0.1"])).unwrap();
        write_dir(&dir, ca.pem(), &renewed).unwrap();
        let served = testenv::pki::handshake(&addr, "127.0.0.1", with())
            .await
            .unwrap();
        assert_eq!(served, renewed.der());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

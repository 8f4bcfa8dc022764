//! TLS on sockets, for tonic and hyper: a connector that dials TLS for tonic channels (the
//! server name is the URI's host), an incoming stream of TLS connections for tonic servers, and
//! a handshake helper for hyper servers. Each takes its config from a function called per
//! connection, so configs that reload ([`crate::Reloading`]) apply to the next connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Gives the client config of the next connection.
pub type ClientSource = Arc<dyn Fn() -> Arc<ClientConfig> + Send + Sync>;
/// Gives the server config of the next connection.
pub type ServerSource = Arc<dyn Fn() -> Arc<ServerConfig> + Send + Sync>;

/// How long a peer gets to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A tonic connector (`Endpoint::connect_with_connector`) that dials TCP, then TLS with the
/// config `source` gives at that moment. tonic applies the endpoint's connect timeout around it.
#[derive(Clone)]
pub struct Connector {
    source: ClientSource,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tls::net::Connector")
    }
}

impl Connector {
    /// Dials with the configs of `source`.
    pub fn new(source: ClientSource) -> Self {
        Connector { source }
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = (self.source)();
        Box::pin(async move {
            let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri} has no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("{host} is not a server name: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// One accepted TLS connection, for tonic's `serve_with_incoming`.
#[derive(Debug)]
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    remote: Option<SocketAddr>,
}

impl TlsConn {
    /// Whether the client presented a certificate (that the config's verifier accepted).
    pub fn authenticated(&self) -> bool {
        self.stream.get_ref().1.peer_certificates().is_some()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = Option<SocketAddr>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.remote
    }
}

/// Completes the server side of a handshake on an accepted socket, within
/// [`HANDSHAKE_TIMEOUT`]. A client without an acceptable certificate (when the config requires
/// one) fails here.
pub async fn accept(config: Arc<ServerConfig>, tcp: TcpStream) -> io::Result<TlsConn> {
    let remote = tcp.peer_addr().ok();
    let handshake = TlsAcceptor::from(config).accept(tcp);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(TlsConn { stream, remote })
}

/// The TLS connections accepted on `listener`, each handshake with the config `source` gives
/// when it arrives, for tonic's `serve_with_incoming*`. Handshakes run concurrently (a slow or
/// refused client holds up no other); refused ones are logged and dropped. Accepting stops when
/// the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    source: ServerSource,
) -> impl futures::Stream<Item = io::Result<TlsConn>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<TlsConn>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (tx, config) = (tx.clone(), source());
            tokio::spawn(async move {
                match accept(config, tcp).await {
                    Ok(conn) => drop(tx.send(Ok(conn)).await),
                    Err(e) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// Connects a tonic channel to `endpoint`: plain, or TLS with the configs of `tls` (the
/// endpoint's URI should then be `https://`, so that requests carry that scheme).
pub async fn connect(
    endpoint: tonic::transport::Endpoint,
    tls: Option<&ClientSource>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    match tls {
        None => endpoint.connect().await,
        Some(source) => {
            endpoint
                .connect_with_connector(Connector::new(source.clone()))
                .await
        }
    }
}

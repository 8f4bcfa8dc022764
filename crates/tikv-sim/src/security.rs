//! TiKV's `[security]`: mutual TLS with the certificate in `cert-path`, its key in `key-path`
//! and the CA bundle in `ca-path`, on the gRPC port (clients and other stores), the status port,
//! and towards PD and other stores. Clients without a certificate that chains to the bundle are
//! refused during the handshake. As TiKV does, the files are read again for every new connection
//! and, when they changed and can be used, new connections use them (a renewed certificate, a
//! new bundle during a CA rotation) without a restart; established connections keep theirs.

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use tls::config::{self, ALPN_GRPC, ALPN_HTTP1, ClientAuth};
use tls::net::{ClientSource, ServerSource};
use tls::{LoadError, Paths, Reloading};

/// The configs one set of files gives.
pub struct Configs {
    grpc: Arc<ServerConfig>,
    status: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// The store's TLS, reloading.
pub struct Security(Reloading<Configs>);

impl Security {
    /// Loads the files; they must be usable (the store does not start otherwise).
    pub fn load(paths: Paths) -> Result<Arc<Security>, LoadError> {
        let build = |p: &tls::Parsed| {
            Ok(Configs {
                grpc: Arc::new(config::server(p, ALPN_GRPC, ClientAuth::Required)?),
                status: Arc::new(config::server(p, ALPN_HTTP1, ClientAuth::Required)?),
                client: Arc::new(config::client(p, ALPN_GRPC)?),
            })
        };
        Ok(Arc::new(Security(Reloading::new(paths, Box::new(build))?)))
    }

    /// The config of the next gRPC connection accepted.
    pub fn grpc_server(self: &Arc<Self>) -> ServerSource {
        let s = self.clone();
        Arc::new(move || s.0.get().grpc.clone())
    }

    /// The config of the next status (HTTP) connection accepted.
    pub fn status_server(self: &Arc<Self>) -> ServerSource {
        let s = self.clone();
        Arc::new(move || s.0.get().status.clone())
    }

    /// The config of the next connection to PD or another store.
    pub fn client(self: &Arc<Self>) -> ClientSource {
        let s = self.clone();
        Arc::new(move || s.0.get().client.clone())
    }
}

//! rustls configs from a parsed set. Mutual TLS: a client presents its certificate and trusts
//! servers whose certificates chain to the bundle; a server presents its certificate and asks
//! clients for one that chains to the same bundle.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::material::{Parsed, Problem};

/// ALPN of gRPC (HTTP/2).
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of HTTP/1.1 servers. Clients of HTTP/1.1 send none: Go's TLS servers that offer only
/// `h2` (PD's) refuse a client whose ALPN list does not contain it.
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// What a server asks of its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate that chains to the bundle; others are refused during the handshake.
    Required,
    /// A certificate is checked when one is presented; clients without one are let in (the
    /// application decides what they may see).
    Optional,
    /// No client certificates.
    None,
}

/// The crypto provider of every config: ring, as kube's client uses (no process-wide default is
/// assumed, so two crates installing different ones cannot conflict).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The trust bundle as a root store.
pub fn roots(parsed: &Parsed) -> Result<Arc<RootCertStore>, Problem> {
    if parsed.roots.is_empty() {
        return Err(Problem::Missing(crate::material::CA));
    }
    let mut store = RootCertStore::empty();
    for cert in &parsed.roots {
        store
            .add(cert.clone())
            .map_err(|e| Problem::BadCa(e.to_string()))?;
    }
    Ok(Arc::new(store))
}

/// A client that presents `parsed`'s certificate and trusts servers chaining to its bundle.
pub fn client(parsed: &Parsed, alpn: &[&[u8]]) -> Result<ClientConfig, Problem> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem::Rejected(e.to_string()))?
        .with_root_certificates(roots(parsed)?)
        .with_client_auth_cert(parsed.chain.clone(), parsed.key.clone_key())
        .map_err(key_problem)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A server that presents `parsed`'s certificate and treats client certificates as `clients`
/// says (checked against the bundle).
pub fn server(
    parsed: &Parsed,
    alpn: &[&[u8]],
    clients: ClientAuth,
) -> Result<ServerConfig, Problem> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem::Rejected(e.to_string()))?;
    let builder = match clients {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required | ClientAuth::Optional => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(parsed)?, provider());
            let verifier = if clients == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| Problem::BadCa(e.to_string()))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(parsed.chain.clone(), parsed.key.clone_key())
        .map_err(key_problem)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn key_problem(e: rustls::Error) -> Problem {
    match e {
        rustls::Error::InconsistentKeys(_) => Problem::KeyMismatch,
        other => Problem::NoKey(format!(": {other}")),
    }
}

//! The start-up every controller binary shares: logging, the health and metrics server, waiting
//! for the CRDs, leader election, then the controllers until shutdown or loss of the lease.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use kube::Client;

use crate::leader::{self, LeaseConfig};
use crate::metrics::Metrics;
use crate::server::{self, Readiness};
use crate::telemetry::{self, LogFormat, Tracing};

/// Command-line flags common to every controller.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Run only while holding the controller's Lease (for Deployments with more than one replica).
    #[arg(long, env = "LEADER_ELECT", default_value_t = false)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log format: json, text, or auto (json inside a pod).
    #[arg(long, env = "LOG_FORMAT", default_value = "auto")]
    pub log_format: LogFormat,
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// How many objects each controller reconciles at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Export the reconcile spans over OTLP/gRPC to this endpoint, e.g.
    /// `http://jaeger-collector.observability:4317` (off when unset).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans (default: `tikv-operator-<controller>`).
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otlp_service_name: Option<String>,
    /// Serve the endpoints over HTTPS with this certificate (PEM; re-read when it changes).
    #[arg(long, env = "METRICS_TLS_CERT_FILE", requires = "metrics_tls_key_file")]
    pub metrics_tls_cert_file: Option<std::path::PathBuf>,
    /// The private key of `--metrics-tls-cert-file`.
    #[arg(long, env = "METRICS_TLS_KEY_FILE", requires = "metrics_tls_cert_file")]
    pub metrics_tls_key_file: Option<std::path::PathBuf>,
    /// With TLS: `/metrics` answers only clients with a certificate from this CA bundle;
    /// `/healthz` and `/readyz` stay open (the kubelet's probes have no certificate).
    #[arg(
        long,
        env = "METRICS_TLS_CLIENT_CA_FILE",
        requires = "metrics_tls_cert_file"
    )]
    pub metrics_tls_client_ca_file: Option<std::path::PathBuf>,
}

impl CommonArgs {
    /// The endpoints' TLS files, when set.
    pub fn metrics_tls(&self) -> Option<tls::Paths> {
        Some(tls::Paths {
            ca: self.metrics_tls_client_ca_file.clone(),
            cert: self.metrics_tls_cert_file.clone()?,
            key: self.metrics_tls_key_file.clone()?,
        })
    }
}

/// Why a controller process stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Kubernetes client configuration.
    #[error("cannot configure a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// Health server.
    #[error(transparent)]
    Server(#[from] server::Error),
    /// CRDs missing.
    #[error(transparent)]
    Crds(#[from] crate::crds::Error),
    /// Another replica took the lease; exiting lets the Deployment restart us as a candidate.
    #[error("lost the leader lease {0}")]
    LostLease(String),
    /// Span export could not be set up.
    #[error(transparent)]
    Telemetry(#[from] telemetry::Error),
}

/// Runs a controller: `start` receives a client and the metrics and runs until shutdown.
pub async fn run<F, Fut>(
    controller: &str,
    args: CommonArgs,
    crds: &[&str],
    start: F,
) -> Result<(), Error>
where
    F: FnOnce(Client, Metrics) -> Fut,
    Fut: Future<Output = ()>,
{
    let tracing = Tracing {
        otlp_endpoint: args.otlp_endpoint.clone(),
        service_name: args
            .otlp_service_name
            .clone()
            .unwrap_or_else(|| format!("tikv-operator-{controller}")),
    };
    let telemetry = telemetry::init(args.log_format, &tracing)?;
    let result = serve(controller, args, crds, start).await;
    // The spans of the last reconciles go out before the process ends.
    telemetry.shutdown();
    result
}

/// [`run`] once logging is set up.
async fn serve<F, Fut>(
    controller: &str,
    args: CommonArgs,
    crds: &[&str],
    start: F,
) -> Result<(), Error>
where
    F: FnOnce(Client, Metrics) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(endpoint) = &args.otlp_endpoint {
        tracing::info!(endpoint, "exporting reconcile spans over OTLP");
    }
    let client = Client::try_default().await?;
    let metrics = Metrics::new();
    metrics.set_build_info(controller, env!("CARGO_PKG_VERSION"));
    let readiness = Readiness::default();
    let tls = args.metrics_tls().map(server::Tls::load).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr = server::serve(args.metrics_addr, readiness.clone(), metrics.clone(), tls).await?;
    tracing::info!(controller, %addr, scheme, "serving /healthz, /readyz and /metrics");
    crate::crds::wait_established(&client, crds, Duration::from_secs(120)).await?;

    let lease_name = format!("tikv-operator-{controller}");
    let mut leading = if args.leader_elect {
        let identity = args
            .identity
            .clone()
            .unwrap_or_else(|| format!("{controller}-{}", std::process::id()));
        let cfg = LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: lease_name.clone(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let mut rx = leader::spawn(client.clone(), cfg);
        tracing::info!(lease = %lease_name, "waiting for the leader lease");
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return Err(Error::LostLease(lease_name));
            }
        }
        Some(rx)
    } else {
        None
    };
    metrics.set_leader(true);
    readiness.set(true);
    tracing::info!(controller, "started");

    let lost = async {
        match leading.as_mut() {
            Some(rx) => {
                while *rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = start(client, metrics.clone()) => {
            tracing::info!(controller, "stopped");
            Ok(())
        }
        () = lost => {
            metrics.set_leader(false);
            Err(Error::LostLease(lease_name))
        }
    }
}

/// The flags of a controller binary: only the common ones.
#[derive(clap::Parser, Debug)]
#[command(version, about = "A controller of the TiKV operator")]
pub struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

/// The whole `main` of a controller binary: parse flags, then [`run`] with `start(client,
/// metrics, concurrency, namespace)`.
pub async fn main<F, Fut>(controller: &str, crds: &[&str], start: F) -> Result<(), Error>
where
    F: FnOnce(Client, crate::metrics::Metrics, u16, Option<String>) -> Fut,
    Fut: Future<Output = ()>,
{
    use clap::Parser;
    let args = Args::parse();
    let (concurrency, namespace) = (args.common.concurrency, args.common.namespace.clone());
    run(controller, args.common, crds, move |client, metrics| {
        start(client, metrics, concurrency, namespace)
    })
    .await
}

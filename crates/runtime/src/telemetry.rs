//! Logging and tracing: human-readable log lines on a terminal, JSON lines in a cluster (or when
//! asked), each carrying the fields of the reconcile it belongs to (namespace, cluster, group,
//! instance); and, when an OTLP endpoint is given, the reconcile spans exported to it (Jaeger,
//! the OpenTelemetry Collector, ...). Off by default.

use std::io;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, prelude::*};

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable text.
    Text,
    /// JSON when running in a Kubernetes pod, text otherwise.
    Auto,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown log format {other:?} (json, text or auto)")),
        }
    }
}

impl LogFormat {
    /// Whether lines are JSON.
    fn json(self) -> bool {
        match self {
            LogFormat::Json => true,
            LogFormat::Text => false,
            // The service-account env var is set in every pod and almost never elsewhere.
            LogFormat::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }
}

/// Where spans go besides the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracing {
    /// OTLP/gRPC endpoint, e.g. `http://jaeger-collector.observability:4317`; `None`: no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OTLP exporter refused its configuration.
    #[error("cannot export spans to {endpoint}: {source}")]
    Otlp {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Keeps the span exporter running; [`Telemetry::shutdown`] sends what is still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "exporting the last spans failed");
        }
    }
}

/// The log layer: JSON lines with the current span's fields and the span list, or text.
pub fn log_layer<W>(json: bool, writer: W) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    if json {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed()
    } else {
        // No colour codes outside a terminal: they garble captured logs.
        fmt::layer()
            .with_ansi(io::IsTerminal::is_terminal(&io::stdout()))
            .with_writer(writer)
            .boxed()
    }
}

/// The OTLP exporter of `endpoint`, batching spans in the background (the tonic client needs
/// the Tokio runtime this is called in).
fn provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, Error> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| Error::Otlp {
            endpoint: endpoint.to_string(),
            source,
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Installs the global subscriber: the filter from `RUST_LOG` (default `info`), the log, and
/// the OTLP export when `tracing` names an endpoint. A second call (tests) keeps the first.
pub fn init(format: LogFormat, tracing: &Tracing) -> Result<Telemetry, Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match &tracing.otlp_endpoint {
        Some(endpoint) => Some(provider(endpoint, &tracing.service_name)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer().with_tracer(p.tracer(tracing.service_name.clone()))
    });
    let result = tracing_subscriber::registry()
        .with(log_layer(format.json(), io::stdout))
        .with(otel)
        .with(filter)
        .try_init();
    Ok(Telemetry {
        provider: provider.filter(|_| result.is_ok()),
    })
}

/// Test support: a writer that keeps every log line in memory, to check what lines carry.
#[derive(Clone, Debug, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Installs a JSON log into this capture as the global subscriber (`info` and up).
    pub fn install() -> Self {
        let log = Self::default();
        let _ = tracing_subscriber::registry()
            .with(log_layer(true, log.clone()))
            .with(EnvFilter::new("info"))
            .try_init();
        log
    }

    /// The lines so far, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for CapturedLog {
    type Writer = CapturedLog;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

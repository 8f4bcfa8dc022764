//! Logging setup: human-readable on a terminal, JSON lines in a cluster (or when asked).

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

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

/// Installs the global subscriber. The filter comes from `RUST_LOG`, default `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        // The service-account env var is set in every pod and almost never elsewhere.
        LogFormat::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init()
    } else {
        // Colours only for a terminal: in a pod's log file they are escape codes.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        registry.with(fmt::layer().with_ansi(ansi)).try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

//! The monitoring chart (`charts/tikv-operator-monitoring`) as data: every PromQL query its
//! Grafana dashboards and alert rules hold ([`queries`]), Grafana's variables filled in
//! ([`substitute`]), and Prometheus's own parser and promtool run over them ([`promql`]).
//!
//! The tests of this crate check that every query parses, every alert has a `promtool test
//! rules` case, every operator metric a query reads is one the controllers export, and that the
//! chart renders objects the Prometheus operator's CRDs accept. A test against a running
//! Prometheus uses the same query list to ask that each returns series.

pub mod helm;
pub mod promql;
pub mod queries;

use std::path::PathBuf;

pub use queries::{Query, QueryKind, substitute};

/// Errors of this crate, written for the person reading a failed test.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A dashboard is not JSON, or a rule file not YAML.
    #[error("{path} does not parse: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A dashboard or rule file lacks something every one must have.
    #[error("{0}")]
    Shape(String),
    /// A query uses a Grafana variable no value was given for.
    #[error("query {expr:?} uses the variable ${name}, which has no value")]
    UnknownVariable {
        /// The variable.
        name: String,
        /// The query.
        expr: String,
    },
    /// A tool (promtool, promql-check, helm) could not be run or failed.
    #[error("{tool}: {message}")]
    Tool {
        /// The tool.
        tool: String,
        /// What happened, with its output.
        message: String,
    },
    /// A binary is missing (build it with `e2e/tools/build.sh`).
    #[error(transparent)]
    Env(#[from] testenv::Error),
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The monitoring chart's directory.
pub fn chart_dir() -> PathBuf {
    repo().join("charts/tikv-operator-monitoring")
}

/// The Grafana dashboards the chart ships.
pub fn dashboard_files() -> Result<Vec<PathBuf>, Error> {
    files(&chart_dir().join("files/dashboards"), ".json")
}

/// The alert rule files the chart ships.
pub fn rule_files() -> Result<Vec<PathBuf>, Error> {
    files(&chart_dir().join("files/rules"), ".rules.yml")
}

/// The `promtool test rules` files of the rule files.
pub fn rule_test_files() -> Result<Vec<PathBuf>, Error> {
    files(&chart_dir().join("tests"), ".test.yml")
}

/// The files in `dir` whose names end with `suffix`, sorted.
fn files(dir: &std::path::Path, suffix: &str) -> Result<Vec<PathBuf>, Error> {
    let read = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(suffix))
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The Prometheus operator's CRDs (PodMonitor, ServiceMonitor, PrometheusRule) from its Go
/// module, copied by `e2e/tools/build.sh prometheus-operator-crds`.
pub fn prometheus_operator_crds() -> Result<Vec<PathBuf>, Error> {
    let dir = testenv::bin_dir()?.join("prometheus-operator-crds");
    let found = files(&dir, ".yaml").unwrap_or_default();
    if found.len() < 3 {
        return Err(Error::Tool {
            tool: "prometheus-operator-crds".into(),
            message: format!(
                "{} holds no CRDs; run `e2e/tools/build.sh prometheus-operator-crds`",
                dir.display()
            ),
        });
    }
    Ok(found)
}

/// The contents of `path`.
pub fn read(path: &std::path::Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

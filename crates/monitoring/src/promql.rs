//! Prometheus's own tools over the queries and rule files: `promql-check` (Prometheus's PromQL
//! parser, `e2e/tools/promql-check`) and `promtool`, both built by `e2e/tools/build.sh`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::Error;

/// What Prometheus's parser made of one query.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Parsed {
    /// Where the query is.
    pub source: String,
    /// The query as parsed (variables filled in).
    pub expr: String,
    /// The parse error; empty when the query is valid PromQL.
    pub error: String,
    /// The vector selectors it reads, e.g. `up{job="tikv"}`.
    pub selectors: Vec<String>,
}

#[derive(Serialize)]
struct Input<'a> {
    source: &'a str,
    expr: &'a str,
}

/// Parses each `(source, expr)` with Prometheus's parser.
pub fn parse(queries: &[(String, String)]) -> Result<Vec<Parsed>, Error> {
    let tool = testenv::bin_path("promql-check")?;
    let input: Vec<Input> = queries
        .iter()
        .map(|(source, expr)| Input { source, expr })
        .collect();
    let body = serde_json::to_vec(&input).map_err(|e| tool_error("promql-check", e))?;
    let mut child = Command::new(&tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| tool_error("promql-check", e))?;
    child
        .stdin
        .take()
        .ok_or_else(|| tool_error("promql-check", "no stdin"))?
        .write_all(&body)
        .map_err(|e| tool_error("promql-check", e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| tool_error("promql-check", e))?;
    if !out.status.success() {
        return Err(tool_error(
            "promql-check",
            String::from_utf8_lossy(&out.stderr),
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| tool_error("promql-check", e))
}

/// Runs `promtool` with `args` in `dir`; its combined output, or an error carrying it.
pub fn promtool(dir: &std::path::Path, args: &[&str]) -> Result<String, Error> {
    let tool: PathBuf = testenv::bin_path("promtool")?;
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| tool_error("promtool", e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(tool_error("promtool", format!("{args:?} failed:\n{text}")))
    }
}

fn tool_error(tool: &str, e: impl std::fmt::Display) -> Error {
    Error::Tool {
        tool: tool.to_string(),
        message: e.to_string(),
    }
}

/// The metric name a selector reads (`tikv_operator_leader{...}` → `tikv_operator_leader`).
pub fn metric_name(selector: &str) -> &str {
    let end = selector
        .find(|c: char| c == '{' || c == '[' || c.is_whitespace())
        .unwrap_or(selector.len());
    &selector[..end]
}

/// The family an operator series name belongs to: without the `_total`, `_bucket`, `_sum`,
/// `_count` or `_created` suffix the exposition adds (none of the operator's own families ends in
/// one of them; other exporters' may, e.g. `tikv_raftstore_region_count`).
pub fn family(series: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count", "_created"]
        .iter()
        .find_map(|s| series.strip_suffix(s))
        .unwrap_or(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_families() {
        assert_eq!(metric_name(r#"up{job="tikv"}"#), "up");
        assert_eq!(metric_name("tikv_operator_leader"), "tikv_operator_leader");
        assert_eq!(
            family("tikv_operator_reconcile_duration_seconds_bucket"),
            "tikv_operator_reconcile_duration_seconds"
        );
        assert_eq!(family("tikv_operator_leader"), "tikv_operator_leader");
    }
}

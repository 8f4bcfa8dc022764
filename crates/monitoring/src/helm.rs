//! `helm template` of the repository's charts with the real helm (built by
//! `e2e/tools/build.sh`), as JSON documents.

use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// The objects `helm template <release> charts/<chart> --namespace <namespace> --set <sets>`
/// renders.
pub fn template(
    chart: &str,
    release: &str,
    namespace: &str,
    sets: &[&str],
) -> Result<Vec<Value>, Error> {
    let helm = testenv::bin_path("helm")?;
    let mut cmd = Command::new(helm);
    cmd.arg("template")
        .arg(release)
        .arg(crate::repo().join("charts").join(chart))
        .args(["--namespace", namespace]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: "helm".into(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "helm".into(),
            message: format!(
                "helm template {chart} {sets:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Parse {
            path: chart.into(),
            message: e.to_string(),
        })?;
        let json = serde_json::to_value(value).map_err(|e| Error::Parse {
            path: chart.into(),
            message: e.to_string(),
        })?;
        if !json.is_null() {
            docs.push(json);
        }
    }
    Ok(docs)
}

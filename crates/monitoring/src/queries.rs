//! Every PromQL query of the dashboards (panel targets and query variables) and of the alert
//! rules, with where it comes from; and Grafana's variables filled in.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::Error;

/// Where a query is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryKind {
    /// A dashboard panel's target: should return series while the cluster runs.
    Panel,
    /// The selector of a dashboard's `label_values(...)` variable: lists what can be picked.
    Variable,
    /// An alert rule's expression: returns series only while the alert's condition holds, so
    /// it is its selectors that must return series.
    Rule,
}

/// One query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Where it is, e.g. `tikv-operator.json: panel "Reconciles" A`.
    pub source: String,
    /// What kind of use.
    pub kind: QueryKind,
    /// The PromQL, Grafana variables (`$namespace`, `$__rate_interval`) still in.
    pub expr: String,
}

/// Every query of every dashboard and rule file the chart ships.
pub fn all() -> Result<Vec<Query>, Error> {
    let mut out = Vec::new();
    for path in crate::dashboard_files()? {
        out.extend(dashboard_queries(&path)?);
    }
    for path in crate::rule_files()? {
        out.extend(rule_queries(&path)?);
    }
    Ok(out)
}

/// A dashboard file, parsed.
pub fn load_dashboard(path: &Path) -> Result<Value, Error> {
    serde_json::from_str(&crate::read(path)?).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A rule file, parsed.
pub fn load_rules(path: &Path) -> Result<serde_yaml::Value, Error> {
    serde_yaml::from_str(&crate::read(path)?).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every panel of a dashboard, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The queries of one dashboard: each panel target's `expr`, and the selector of each
/// `label_values(selector, label)` variable.
pub fn dashboard_queries(path: &Path) -> Result<Vec<Query>, Error> {
    let dashboard = load_dashboard(path)?;
    let file = file_name(path);
    let mut out = Vec::new();
    for panel in panels(&dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                return Err(Error::Shape(format!(
                    "{file}: panel {} has a target without expr",
                    panel["title"]
                )));
            };
            out.push(Query {
                source: format!("{file}: panel {} {}", panel["title"], target["refId"]),
                kind: QueryKind::Panel,
                expr: expr.to_string(),
            });
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] != "query" {
            continue;
        }
        let definition = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_default();
        let Some(selector) = label_values_selector(definition) else {
            return Err(Error::Shape(format!(
                "{file}: variable {} is not label_values(<selector>, <label>): {definition:?}",
                var["name"]
            )));
        };
        out.push(Query {
            source: format!("{file}: variable {}", var["name"]),
            kind: QueryKind::Variable,
            expr: selector.to_string(),
        });
    }
    Ok(out)
}

/// The selector of Grafana's `label_values(selector, label)` (not PromQL itself).
pub fn label_values_selector(definition: &str) -> Option<&str> {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    (!label.trim().is_empty() && !selector.trim().is_empty()).then(|| selector.trim())
}

/// The names of the variables a dashboard defines.
pub fn defined_variables(dashboard: &Value) -> Vec<String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(String::from))
        .collect()
}

/// The queries of one rule file: each rule's `expr`.
pub fn rule_queries(path: &Path) -> Result<Vec<Query>, Error> {
    let rules = load_rules(path)?;
    let file = file_name(path);
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().into_iter().flatten() {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            let name = rule["alert"]
                .as_str()
                .or_else(|| rule["record"].as_str())
                .unwrap_or("(unnamed)");
            let Some(expr) = rule["expr"].as_str() else {
                return Err(Error::Shape(format!("{file}: rule {name} has no expr")));
            };
            out.push(Query {
                source: format!("{file}: {name}"),
                kind: QueryKind::Rule,
                expr: expr.trim().to_string(),
            });
        }
    }
    Ok(out)
}

/// The Grafana variables `expr` uses (`$name`, `${name}`, `${name:format}`), in order.
pub fn used_variables(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let _ = scan(expr, |name| {
        out.push(name.to_string());
        Some(String::new())
    });
    out
}

/// `expr` with each Grafana variable replaced by its value in `values`; an unknown variable is
/// an error (a query must not depend on a variable nobody defines).
pub fn substitute(expr: &str, values: &BTreeMap<&str, &str>) -> Result<String, Error> {
    scan(expr, |name| values.get(name).map(|v| v.to_string())).map_err(|name| {
        Error::UnknownVariable {
            name,
            expr: expr.to_string(),
        }
    })
}

/// Replaces every variable of `expr` by `value(name)`; `Err(name)` for the first without one.
fn scan(expr: &str, mut value: impl FnMut(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| braced.to_string())?;
            // `${name:format}`: the format does not matter for PromQL.
            let name = braced[..end].split(':').next().unwrap_or_default();
            (name, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            // A lone `$` (PromQL has none): keep it, the parser will say what is wrong.
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&value(name).ok_or_else(|| name.to_string())?);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Values that make every query of the chart's dashboards concrete, for parsing.
pub fn example_values() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("__rate_interval", "1m"),
        ("__interval", "1m"),
        ("__range", "1h"),
        ("namespace", "ns"),
        ("cluster", "basic"),
        ("group", ".*"),
        ("controller", ".*"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_found_and_filled_in() {
        let expr =
            r#"sum(rate(x{a="$namespace-${cluster}",b=~"${group:regex}"}[$__rate_interval]))"#;
        assert_eq!(
            used_variables(expr),
            ["namespace", "cluster", "group", "__rate_interval"]
        );
        let values = example_values();
        assert_eq!(
            substitute(expr, &values).unwrap(),
            r#"sum(rate(x{a="ns-basic",b=~".*"}[1m]))"#
        );
        let err = substitute("x{a=\"$nope\"}", &values).unwrap_err();
        assert!(err.to_string().contains("$nope"), "{err}");
    }

    #[test]
    fn label_values_gives_its_selector() {
        assert_eq!(
            label_values_selector(r#"label_values(up{job="tikv", a=~"b,c"}, instance)"#),
            Some(r#"up{job="tikv", a=~"b,c"}"#)
        );
        assert_eq!(label_values_selector("label_values(instance)"), None);
        assert_eq!(label_values_selector("query_result(up)"), None);
    }
}

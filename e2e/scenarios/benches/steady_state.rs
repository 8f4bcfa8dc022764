//! Benchmark: what one steady-state reconcile of a Ready cluster costs the API server and PD.
//!
//! `examples/basic` (3 PD members, 3 TiKV stores) comes up and settles (Cluster Ready, leaders on
//! every store, leader and region counts unchanged for 5 s, then `BENCH_SETTLE_SECS`, default
//! 15). Over the next
//! `BENCH_WINDOW_SECS` (default 60) nothing is changed; the instance controller's own counters
//! (what its `/metrics` serves: reconcile runs, API requests by verb and resource, PD requests
//! by route) are read before and after and divided by the reconciles of each kind. Watches are
//! long-lived, not per reconcile: they are counted apart. Numbers only; nothing is asserted.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use operator_runtime::counted::is_write;

const CLUSTER: &str = "basic";

/// One counter sample: metric name and labels.
type Key = (String, BTreeMap<String, String>);

fn main() {
    e2e::run(bench());
}

async fn bench() {
    let secs = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (settle, window) = (secs("BENCH_SETTLE_SECS", 15), secs("BENCH_WINDOW_SECS", 60));
    let env = e2e::Env::start("steady").await;
    env.apply_example(CLUSTER).await;
    env.wait_cluster_ready(CLUSTER, 180).await;
    let pd = env.pd_members(CLUSTER).await;
    common::wait_settled(&pd, 3).await;
    tokio::time::sleep(Duration::from_secs(settle)).await;

    let before = counters(&env.controller_metrics("instance-controller").await);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(window)).await;
    let after = counters(&env.controller_metrics("instance-controller").await);
    let elapsed = start.elapsed().as_secs_f64();
    let delta: BTreeMap<Key, f64> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();

    println!("\n=== steady_state: examples/basic, Ready, {elapsed:.0} s window ===");
    println!(
        "{:<6} {:>10} {:>14} {:>12} {:>13}",
        "kind", "reconciles", "API req/rec", "writes/rec", "PD req/rec"
    );
    for kind in ["PD", "TiKV"] {
        let runs = sum(&delta, "tikv_operator_reconcile_runs_total", |l| {
            l.get("kind").map(String::as_str) == Some(kind)
        });
        let api = api_requests(&delta, kind);
        // A float sum of nothing is -0.0: fold from +0.0 so that "no writes" prints 0.00.
        let count = |keep: fn(&str) -> bool| {
            api.iter()
                .filter(|(v, _)| keep(v))
                .fold(0.0, |acc, (_, n)| acc + n)
        };
        let requests = count(|v| v != "watch");
        let writes = count(is_write);
        let pd_total = sum(&delta, "tikv_operator_pd_requests_total", |l| {
            pd_kind(l.get("route").map(String::as_str).unwrap_or_default()) == kind
        });
        let per = |n: f64| if runs > 0.0 { n / runs } else { 0.0 };
        println!(
            "{kind:<6} {runs:>10} {:>14.2} {:>12.2} {:>13.2}",
            per(requests),
            per(writes),
            per(pd_total)
        );
    }
    for kind in ["PD", "TiKV"] {
        let runs = sum(&delta, "tikv_operator_reconcile_runs_total", |l| {
            l.get("kind").map(String::as_str) == Some(kind)
        })
        .max(1.0);
        println!("\n{kind}: per reconcile");
        for ((name, labels), n) in &delta {
            let line = match name.as_str() {
                "tikv_operator_api_requests_total"
                    if labels.get("kind").map(String::as_str) == Some(kind) =>
                {
                    let verb = &labels["verb"];
                    let what = if verb == "watch" {
                        " (watches, not per reconcile: count in the window)"
                    } else {
                        ""
                    };
                    let value = if verb == "watch" { *n } else { n / runs };
                    format!(
                        "  API {verb:<6} {:<22} {value:>6.2}{what}",
                        labels["resource"]
                    )
                }
                "tikv_operator_pd_requests_total" if pd_kind(&labels["route"]) == kind => {
                    format!(
                        "  PD  {:<6} {:<22} {:>6.2}  ({})",
                        labels["method"],
                        labels["route"],
                        n / runs,
                        labels["outcome"]
                    )
                }
                _ => continue,
            };
            println!("{line}");
        }
    }
    env.stop().await;
}

/// PD routes are asked by one kind only: members and leadership by PD members, the rest by
/// stores.
fn pd_kind(route: &str) -> &'static str {
    if route.starts_with("/members") || route.starts_with("/leader") || route == "/health" {
        "PD"
    } else {
        "TiKV"
    }
}

/// (verb, count) of the API requests made for `kind`.
fn api_requests(delta: &BTreeMap<Key, f64>, kind: &str) -> Vec<(String, f64)> {
    delta
        .iter()
        .filter(|((name, l), _)| {
            name == "tikv_operator_api_requests_total"
                && l.get("kind").map(String::as_str) == Some(kind)
        })
        .map(|((_, l), n)| (l["verb"].clone(), *n))
        .collect()
}

fn sum(
    delta: &BTreeMap<Key, f64>,
    metric: &str,
    filter: impl Fn(&BTreeMap<String, String>) -> bool,
) -> f64 {
    delta
        .iter()
        .filter(|((name, l), _)| name == metric && filter(l))
        .fold(0.0, |acc, (_, n)| acc + n)
}

/// The counters of an OpenMetrics exposition: `name{k="v",...} value` lines.
fn counters(text: &str) -> BTreeMap<Key, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            Some(((name.to_string(), labels), value))
        })
        .collect()
}

//! Benchmark: what an application sees while the operator (or a fault) restarts stores. A client
//! workload (`e2e::Workload`: client-go RawKV, gets / unique-value puts / CAS at a fixed rate) runs
//! for a minute before the operation (the baseline), through it, and is checked afterwards
//! (nothing acknowledged lost, linearizable). Printed per case, nothing asserted:
//! - errors as the application sees them (after client-go's own retries), by kind;
//! - the longest window with no successful operation (the unavailability window);
//! - throughput and p99 latency during the operation, and their ratio to the minute before;
//! - against the goal: 0 failed operations, throughput >= 95 %, p99 <= 2x the minute before.
//!
//! Cases (`BENCH_CASES`, default all, comma separated):
//! - `upgrade-3`, `upgrade-6`: a rolling upgrade (v8.5.0 -> v8.5.1) of 3 and of 6 stores, once
//!   per value of `BENCH_TRANSFER_BACK` (the TiKVGroup's `updatePolicy.leaderTransferBackTimeout`,
//!   default `0s,5m`: without and with the wait for leaders to come back);
//! - `kill-store`: the store with the most leaders SIGKILLed (the kubelet restarts it);
//! - `lose-node`: a worker node with a store (not the PD leader's) cut off the network for 45 s,
//!   then plugged back in;
//! - `delete-pod`: `kubectl delete pod` of a store (graceful: the store hands its leaders over);
//! - `drain`: `kubectl drain` of a worker node, then `kubectl uncordon`;
//! - `upgrade-pd`: a rolling upgrade of the 3 PD members (each hands its leadership over
//!   before it restarts; the leader goes last);
//! - `kill-pd-leader`: the PD leader SIGKILLed (what a restart without the hand-over costs).
//!
//! `BENCH_RATE` (operations per second, default 400) and `BENCH_CLIENTS` (default 16) set the
//! load; `BENCH_BASELINE_SECS` (default 60) the baseline. Each case is a namespace of its own
//! with `examples/basic` on one environment (real nodes, see `e2e/env`).

mod common;

use std::time::{Duration, SystemTime};

use api::v1alpha1::{Cluster, PDGroup, TiKVGroup};
use e2e::workload::{Options, Stats};
use e2e::{Report, Window, Workload};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use operator_runtime::conditions;

const CLUSTER: &str = "basic";
const GROUP: &str = "basic-tikv";

/// One case's result, for the summary.
struct Row {
    case: String,
    report: Report,
    baseline: Window,
    operation: Window,
}

fn main() {
    e2e::run(bench());
}

fn env_list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_num(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench() {
    let cases = env_list(
        "BENCH_CASES",
        "upgrade-3,upgrade-6,kill-store,lose-node,delete-pod,drain,upgrade-pd,kill-pd-leader",
    );
    let transfer_back = env_list("BENCH_TRANSFER_BACK", "0s,5m");
    let options = Options {
        clients: env_num("BENCH_CLIENTS", 16),
        rate: env_num("BENCH_RATE", 400),
        ..Options::default()
    };
    let baseline = Duration::from_secs(env_num("BENCH_BASELINE_SECS", 60).into());
    let mut rows = Vec::new();
    for case in &cases {
        // The wait for leaders to come back is a TiKV setting: only store upgrades vary it.
        let variants: Vec<Option<&str>> = if ["upgrade-3", "upgrade-6"].contains(&case.as_str()) {
            transfer_back.iter().map(|t| Some(t.as_str())).collect()
        } else {
            vec![None]
        };
        for tb in variants {
            let name = match tb {
                Some(t) => format!("{case} (transfer back {t})"),
                None => case.clone(),
            };
            println!("\n=== availability: {name} ===");
            rows.push(run_case(case, &name, tb, &options, baseline).await);
        }
    }
    println!(
        "\n=== availability: summary (load {} ops/s, {} clients; baseline = the {} s before) ===",
        options.rate,
        options.clients,
        baseline.as_secs()
    );
    println!(
        "{:<30} {:>7} {:>7} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7} {:>9} {:>6}",
        "case",
        "op s",
        "failed",
        "gap ms",
        "ops/s",
        "ratio",
        "p99 ms",
        "base p99",
        "ratio",
        "lost/lin",
        "goal"
    );
    for r in &rows {
        let (b, o) = (r.report.stats(r.baseline), r.report.stats(r.operation));
        let (tput, lat) = ratios(&b, &o);
        let consistent = r.report.check.lost.is_empty() && r.report.check.linearizable == "ok";
        let goal = o.failed == 0 && tput >= 0.95 && lat <= 2.0;
        println!(
            "{:<30} {:>7.1} {:>7} {:>9.0} {:>9.1} {:>7.0}% {:>9.1} {:>9.1} {:>6.2}x {:>9} {:>6}",
            r.case,
            r.operation.len().as_secs_f64(),
            o.failed,
            ms(o.longest_gap),
            o.throughput,
            tput * 100.0,
            ms(o.p99),
            ms(b.p99),
            lat,
            if consistent {
                "0/ok".to_string()
            } else {
                format!(
                    "{}/{}",
                    r.report.check.lost.len(),
                    r.report.check.linearizable
                )
            },
            if goal { "met" } else { "missed" }
        );
    }
}

/// Throughput and p99 of the operation relative to the baseline.
fn ratios(baseline: &Stats, op: &Stats) -> (f64, f64) {
    let tput = if baseline.throughput > 0.0 {
        op.throughput / baseline.throughput
    } else {
        f64::NAN
    };
    let lat = if baseline.p99.is_zero() {
        f64::NAN
    } else {
        op.p99.as_secs_f64() / baseline.p99.as_secs_f64()
    };
    (tput, lat)
}

async fn patch_group(env: &e2e::Env, patch: serde_json::Value) {
    env.api::<TiKVGroup>()
        .patch(GROUP, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching the TiKVGroup");
}

async fn group_ready(env: &e2e::Env, n: usize, version: Option<&str>) -> Option<()> {
    let g = env.api::<TiKVGroup>().get(GROUP).await.ok()?.status?;
    let c = env.api::<Cluster>().get(CLUSTER).await.ok()?.status?;
    (g.replicas as usize == n
        && g.ready_replicas as usize == n
        && g.updated_replicas as usize == n
        && version.is_none_or(|v| g.version.as_deref() == Some(v))
        && conditions::is_true(&g.conditions, "Ready")
        && conditions::is_true(&c.conditions, "Ready"))
    .then_some(())
}

async fn run_case(
    case: &str,
    name: &str,
    transfer_back: Option<&str>,
    options: &Options,
    baseline: Duration,
) -> Row {
    let env = e2e::Env::start(&format!("bench-avail-{}", case.replace('-', ""))).await;
    env.apply_example(CLUSTER).await;
    env.wait_cluster_ready(CLUSTER, 300).await;
    let stores = match case {
        "upgrade-6" => 6,
        _ => 3,
    };
    if stores != 3 {
        patch_group(&env, serde_json::json!({"spec": {"replicas": stores}})).await;
    }
    if let Some(t) = transfer_back {
        let p = serde_json::json!({"spec": {"updatePolicy": {"leaderTransferBackTimeout": t}}});
        patch_group(&env, p).await;
    }
    testenv::wait_for(600, "the stores Up and the group Ready", || async {
        let pd = env.pd(CLUSTER).await;
        (e2e::up_stores(&pd, None).await? == stores).then_some(())?;
        group_ready(&env, stores, None).await
    })
    .await;
    let pd = env.pd_members(CLUSTER).await;
    common::wait_settled(&pd, stores).await;

    let workload = Workload::start_with(&env, CLUSTER, options.clone()).await;
    tokio::time::sleep(baseline).await;
    let before = Window::since(workload.started());
    let start = SystemTime::now();
    match case {
        "upgrade-3" | "upgrade-6" => {
            let v = serde_json::json!({"spec": {"template": {"spec": {"version": "v8.5.1"}}}});
            patch_group(&env, v).await;
            testenv::wait_for(1200, "every store upgraded, the group Ready", || {
                group_ready(&env, stores, Some("v8.5.1"))
            })
            .await;
        }
        "upgrade-pd" => {
            let v = serde_json::json!({"spec": {"template": {"spec": {"version": "v8.5.1"}}}});
            env.api::<PDGroup>()
                .patch("basic-pd", &PatchParams::default(), &Patch::Merge(&v))
                .await
                .expect("patching the PDGroup");
            testenv::wait_for(
                900,
                "every PD member upgraded, the Cluster Ready",
                || async {
                    let g = env.api::<PDGroup>().get("basic-pd").await.ok()?.status?;
                    let c = env.api::<Cluster>().get(CLUSTER).await.ok()?.status?;
                    (g.updated_replicas == 3
                        && g.ready_replicas == 3
                        && g.version.as_deref() == Some("v8.5.1")
                        && conditions::is_true(&c.conditions, "Ready"))
                    .then_some(())
                },
            )
            .await;
        }
        "kill-pd-leader" => {
            let leader = pd.leader().await.unwrap().name;
            let pod = env.api::<Pod>().get(&leader).await.unwrap();
            let restarts = e2e::restarts(&pod);
            println!("killing the PD leader {leader}");
            env.kill_containers(&pod);
            back(&env, &leader, |p| e2e::restarts(p) > restarts).await;
        }
        "kill-store" => {
            let victim = store_with_most_leaders(&env, &pd).await;
            let pod = env.api::<Pod>().get(&victim).await.unwrap();
            let restarts = e2e::restarts(&pod);
            println!("killing the store of {victim}");
            env.kill_containers(&pod);
            back(&env, &victim, |p| e2e::restarts(p) > restarts).await;
        }
        "lose-node" => {
            let (victim, node) = store_away_from_pd_leader(&env, &pd).await;
            println!("cutting {node} (store {victim}) off the network for 45 s");
            env.cut_network(&node);
            tokio::time::sleep(Duration::from_secs(45)).await;
            env.restore_network(&node);
            back(&env, &victim, |_| true).await;
        }
        "delete-pod" => {
            let victim = store_with_most_leaders(&env, &pd).await;
            let uid = env.api::<Pod>().get(&victim).await.unwrap().uid();
            println!("kubectl delete pod {victim}");
            kubectl(&env, &["delete", "pod", &victim]);
            back(&env, &victim, |p| p.uid() != uid).await;
        }
        "drain" => {
            let (victim, node) = store_away_from_pd_leader(&env, &pd).await;
            let uid = env.api::<Pod>().get(&victim).await.unwrap().uid();
            println!("kubectl drain {node} (store {victim})");
            kubectl(
                &env,
                &[
                    "drain",
                    &node,
                    "--ignore-daemonsets",
                    "--delete-emptydir-data",
                    "--timeout=600s",
                ],
            );
            kubectl(&env, &["uncordon", &node]);
            back(&env, &victim, |p| p.uid() != uid).await;
        }
        other => panic!("unknown case {other}"),
    }
    // What follows the operation counts too: leaders move back, clients re-learn regions.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let operation = Window::since(start);
    let report = workload.stop().await;
    print_case(&report, before, operation);
    env.remove().await;
    Row {
        case: name.to_string(),
        report,
        baseline: before,
        operation,
    }
}

/// Waits until the store's pod (one that passes `is_new`) is Ready and the Cluster Ready.
async fn back(env: &e2e::Env, name: &str, is_new: impl Fn(&Pod) -> bool) {
    testenv::wait_for(
        600,
        &format!("{name} back and the Cluster Ready"),
        || async {
            let p = env.api::<Pod>().get(name).await.ok()?;
            (is_new(&p) && e2e::pod_serving(&p)).then_some(())?;
            group_ready(env, 3, None).await
        },
    )
    .await;
}

fn kubectl(env: &e2e::Env, args: &[&str]) {
    let (ok, out) = env.kubectl(args);
    assert!(ok, "kubectl {args:?}: {out}");
}

/// The TiKV instance whose store leads the most regions.
async fn store_with_most_leaders(env: &e2e::Env, pd: &pdclient::PdClient) -> String {
    let ids = env.store_ids().await;
    let stores = pd.stores().await.unwrap();
    ids.iter()
        .max_by_key(|(_, id)| {
            stores
                .iter()
                .find(|s| s.store.id == **id)
                .map_or(0, |s| s.status.leader_count)
        })
        .map(|(name, _)| name.clone())
        .expect("a store")
}

/// A TiKV instance and its node, where the PD leader does not run.
async fn store_away_from_pd_leader(env: &e2e::Env, pd: &pdclient::PdClient) -> (String, String) {
    let leader = pd.leader().await.unwrap().name;
    let pods = env.api::<Pod>().list(&Default::default()).await.unwrap();
    let node_of = |name: &str| {
        pods.items
            .iter()
            .find(|p| p.name_any() == name)
            .and_then(|p| p.spec.as_ref()?.node_name.clone())
    };
    let leader_node = node_of(&leader);
    env.store_ids()
        .await
        .into_keys()
        .filter_map(|n| node_of(&n).map(|node| (n, node)))
        .find(|(_, node)| Some(node) != leader_node.as_ref())
        .expect("a store away from the PD leader")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_case(report: &Report, baseline: Window, operation: Window) {
    let (b, o) = (report.stats(baseline), report.stats(operation));
    let (tput, lat) = ratios(&b, &o);
    println!(
        "{:<24} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "", "s", "ops/s", "failed", "p50 ms", "p99 ms", "max ms", "gap ms"
    );
    for (label, w, s) in [
        ("the minute before", baseline, &b),
        ("during the operation", operation, &o),
    ] {
        println!(
            "{:<24} {:>8.1} {:>8.1} {:>10} {:>9.1} {:>9.1} {:>9.0} {:>10.0}",
            label,
            w.len().as_secs_f64(),
            s.throughput,
            s.failed,
            ms(s.p50),
            ms(s.p99),
            ms(s.max),
            ms(s.longest_gap)
        );
    }
    println!(
        "ratio: throughput {:.1} %, p99 {:.2}x; errors by kind during the operation: {:?}",
        tput * 100.0,
        lat,
        report.failures_by_kind(Some(operation))
    );
    // Throughput in 5 s steps through the operation: where the dips are.
    let mut steps = Vec::new();
    let mut t = operation.start;
    while t < operation.end {
        let end = (t + Duration::from_secs(5)).min(operation.end);
        steps.push(format!(
            "{:.0}",
            report.stats(Window { start: t, end }).throughput
        ));
        t = end;
    }
    println!("ops/s every 5 s: {}", steps.join(" "));
    println!(
        "check: {} keys read back, {} lost, linearizable {}",
        report.check.read_back,
        report.check.lost.len(),
        report.check.linearizable
    );
}

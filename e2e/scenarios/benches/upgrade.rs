//! Benchmark: a TiKV rolling upgrade (`spec.template.spec.version` v8.5.0 → v8.5.1 on the
//! TiKVGroup `basic-tikv`) against its lower bound, for 3 and for 6 stores.
//!
//! The cases share one environment (real nodes: kubelet + containerd, see `e2e/env`); each is a
//! new namespace with the controllers installed by Helm (images of the release build). A case
//! applies `examples/basic`, scales the TiKVGroup to the store count (merge patch of
//! `spec.replicas`) and waits until that many stores are Up in PD,
//! the group and the Cluster are Ready, every store holds leaders and PD's leader and region
//! counts have been still for 5 s. Then watchers and a 100 ms PD poller start (see `common`),
//! the version is patched (`t0`), and the bench waits for the group to report every replica
//! updated and Ready at the new version and PD to report every store Up at it (`end`).
//!
//! Per store, from the observations (times are when the watcher / poller saw them):
//! - *picked*: the group wrote the new version into the TiKV object;
//! - *eviction start*: the first of the `EvictingLeaders` Event, `LeadersEvicted=False`, or PD
//!   listing the store in its evict-leader scheduler;
//! - *leaders 0*: PD reports no leader on the store;
//! - *pod deleting* (with the leader count PD reported then), *old pod gone*, *new pod created*,
//!   *new pod Ready*; *Up@new*: PD reports the store Up at the new version; *done*: the TiKV
//!   object reports the new revision and `Ready=True`.
//!
//! Phases marked `*` wait on something outside the operator (PD moving leaders; the kubelet
//! stopping and starting containers; the store registering with PD):
//! eviction* = eviction start → leaders 0; termination* = pod deleting → old pod gone;
//! startup* = new pod created → new pod Ready; store-up* = new pod Ready → Up@new (0 when PD
//! had it first). The store's **lower bound** is the sum of the starred phases. ("restart" —
//! pod deletion → new pod Ready — is termination + recreate + startup; *recreate*, old pod
//! gone → new pod created, is the operator's own work and is not in the lower bound.)
//! tikv-sim registers with PD before its status port answers, so PD often has the store Up at
//! the new version well before the pod's readiness probe (period 2 s, set by the operator)
//! passes; the **strict lower bound** therefore ends startup at whichever comes first, and the
//! **readiness lag** (Up@new → new pod Ready, summed) says how much of the lower bound is the
//! probe period.
//! The operator's phases are: wait before pick (the group choosing the store), pick → eviction
//! start, leaders 0 → pod deleting, recreate, and max(new pod Ready, Up@new) → done.
//!
//! Stores are ordered by *done*; a store's **slot** runs from the previous store's done (`t0`
//! for the first) to its own, so the slots plus the *tail* (last done → `end`) add up to the
//! total. **lower bound** = Σ store lower bounds; **operator-added** = total − lower bound, and
//! per store slot − its lower bound (the tail is the operator's). With restarts one at a time
//! the slots do not overlap; if they do (`maxUnavailable` > 1 or `ZoneByZone`), the sum is no
//! longer a lower bound of the total and the bench says so.
//!
//! Environment: `BENCH_STORES` (default `3,6`), `BENCH_UPDATE_MODE` (unset: the default
//! `OneByOne`; otherwise patched into `spec.updatePolicy.mode` before the upgrade, and the
//! bench prints whether the API server took it and what the group did), `BENCH_VERBOSE=1`
//! (print every observation).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use api::v1alpha1::{Cluster, TiKVGroup};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use operator_runtime::conditions;

use common::{Log, Observer, rel, secs};

const CLUSTER: &str = "basic";
const GROUP: &str = "basic-tikv";
const FROM: &str = "v8.5.0";
const TO: &str = "v8.5.1";

/// The totals of one case, in seconds.
struct Totals {
    stores: usize,
    total: f64,
    lower_bound: f64,
    strict_bound: f64,
    operator: f64,
    overlapped: bool,
}

fn main() {
    e2e::run(async {
        let counts: Vec<usize> = std::env::var("BENCH_STORES")
            .unwrap_or_else(|_| "3,6".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let mode = std::env::var("BENCH_UPDATE_MODE")
            .ok()
            .filter(|m| !m.is_empty());
        let verbose = std::env::var("BENCH_VERBOSE").is_ok_and(|v| v == "1");
        let mut all = Vec::new();
        for n in counts {
            println!(
                "\n=== upgrade {FROM} -> {TO}, {n} stores, mode {} ===",
                mode.as_deref().unwrap_or("default (OneByOne)")
            );
            all.push(case(n, mode.as_deref(), verbose).await);
        }
        println!("\n=== upgrade: totals (s) ===");
        println!(
            "{:>6} {:>8} {:>12} {:>15} {:>18} {:>13} {:>13} {:>8}",
            "stores",
            "total",
            "lower bound",
            "operator-added",
            "total/lower bound",
            "strict bound",
            "total/strict",
            "overlap"
        );
        for t in &all {
            println!(
                "{:>6} {:>8.2} {:>12.2} {:>15.2} {:>18.2} {:>13.2} {:>13.2} {:>8}",
                t.stores,
                t.total,
                t.lower_bound,
                t.operator,
                t.total / t.lower_bound,
                t.strict_bound,
                t.total / t.strict_bound,
                if t.overlapped { "yes" } else { "no" }
            );
        }
    })
}

async fn patch_group(env: &e2e::Env, patch: serde_json::Value) -> Result<TiKVGroup, kube::Error> {
    env.api::<TiKVGroup>()
        .patch(GROUP, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

async fn case(n: usize, mode: Option<&str>, verbose: bool) -> Totals {
    let env = e2e::Env::start(&format!("bench-upgrade-{n}")).await;
    env.apply_example(CLUSTER).await;
    env.wait_cluster_ready(CLUSTER, 300).await;
    let pd = env.pd(CLUSTER).await;
    if n != 3 {
        let started = Instant::now();
        patch_group(&env, serde_json::json!({"spec": {"replicas": n}}))
            .await
            .expect("scaling the TiKVGroup");
        testenv::wait_for(
            600,
            &format!("{n} Up stores, group and Cluster Ready"),
            || async {
                let up = e2e::up_stores(&pd, None).await?;
                let g = env.api::<TiKVGroup>().get(GROUP).await.ok()?.status?;
                let c = env.api::<Cluster>().get(CLUSTER).await.ok()?.status?;
                (up == n
                    && g.ready_replicas as usize == n
                    && conditions::is_true(&g.conditions, "Ready")
                    && conditions::is_true(&c.conditions, "Ready"))
                .then_some(())
            },
        )
        .await;
        println!(
            "scaled out 3 -> {n} stores in {:.1}s (not part of the measurement)",
            started.elapsed().as_secs_f64()
        );
    }
    common::wait_settled(&pd, n).await;

    if let Some(mode) = mode {
        let patch = serde_json::json!({"spec": {"updatePolicy": {"mode": mode}}});
        match patch_group(&env, patch).await {
            Ok(g) => println!(
                "updatePolicy.mode={mode}: accepted by the API server; stored: {:?}",
                g.spec.update_policy
            ),
            Err(e) => {
                println!("updatePolicy.mode={mode}: rejected: {e}; going on with the default")
            }
        }
    }
    let group = env.api::<TiKVGroup>().get(GROUP).await.unwrap();
    println!("updatePolicy in effect: {:?}", group.spec.update_policy);

    let ids = env.store_ids().await;

    // Zone of each store: PD's store label when the operator sets one, else its pod's node's.
    let mut zones: BTreeMap<String, String> = BTreeMap::new();
    for name in ids.keys() {
        let node = env
            .api::<Pod>()
            .get(name)
            .await
            .ok()
            .and_then(|p| p.spec?.node_name);
        if let Some(node) = node
            && let Ok(node) = Api::<Node>::all(env.client.clone()).get(&node).await
            && let Some(zone) = node.labels().get("topology.kubernetes.io/zone")
        {
            zones.insert(name.clone(), zone.clone());
        }
    }

    let observer = Observer::start(&env, CLUSTER).await;
    let t0 = Instant::now();
    patch_group(
        &env,
        serde_json::json!({"spec": {"template": {"spec": {"version": TO}}}}),
    )
    .await
    .expect("patching the version");
    let to_plain = TO.trim_start_matches('v');
    let polled_end = common::poll(1200, || async {
        let g = env.api::<TiKVGroup>().get(GROUP).await.ok()?.status?;
        let upgraded = e2e::up_stores(&pd, Some(to_plain)).await?;
        (upgraded == n
            && g.replicas as usize == n
            && g.updated_replicas as usize == n
            && g.ready_replicas as usize == n
            && g.version.as_deref() == Some(TO)
            && conditions::is_true(&g.conditions, "Ready"))
        .then(Instant::now)
    })
    .await
    .expect("the upgrade finishes within 20 minutes");
    // Let the watchers and the poller catch up, and the last eviction entry be removed.
    common::poll(30, || async {
        pd.evict_leader_stores()
            .await
            .ok()?
            .is_empty()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = observer.log.clone();
    observer.stop();
    println!("namespace {}", env.ns);
    if verbose {
        log.print(t0);
    }
    let totals = report(&log, t0, polled_end, &ids, &zones);
    let left = pd.evict_leader_stores().await.unwrap_or_default();
    if !left.is_empty() {
        println!("NOTE: evict-leader entries left behind for stores {left:?}");
    }
    env.remove().await;
    totals
}

/// What was seen of one store during the upgrade.
struct Store {
    name: String,
    id: u64,
    zone: String,
    picked: Option<Instant>,
    evict_start: Option<Instant>,
    leaders_zero: Option<Instant>,
    evicted_true: Option<Instant>,
    deleting: Option<Instant>,
    leaders_at_delete: Option<String>,
    gone: Option<Instant>,
    created: Option<Instant>,
    ready: Option<Instant>,
    up_new: Option<Instant>,
    done: Option<Instant>,
    eviction_ended: Option<Instant>,
}

fn observe(
    log: &Log,
    t0: Instant,
    name: &str,
    id: u64,
    update_rev: &str,
    node_zone: Option<&String>,
) -> Store {
    let subj = format!("tikv/{name}");
    let old = format!("pod/{name}#1");
    let new = format!("pod/{name}#2");
    let store = format!("store/{id}");
    let any = |_: &str| true;
    let evict_start = [
        log.first_change(&subj, "event EvictingLeaders", t0, any),
        log.first_change(&subj, "LeadersEvicted", t0, |v| v == "False"),
        log.first_change(&store, "evicting", t0, |v| v == "true"),
    ]
    .into_iter()
    .flatten()
    .min();
    let leaders_zero = evict_start.and_then(|s| log.reached(&store, "leaders", "0", s));
    let deleting = [
        log.first_change(&old, "deleting", t0, |v| v == "true"),
        log.first_change(&old, "exists", t0, |v| v == "false"),
    ]
    .into_iter()
    .flatten()
    .min();
    let ready = log.first(&new, "ready", "true");
    let to_plain = TO.trim_start_matches('v');
    Store {
        name: name.to_string(),
        id,
        zone: log
            .value_at(&store, "zone", Instant::now())
            .or_else(|| node_zone.cloned())
            .unwrap_or_else(|| "-".into()),
        picked: log.first_change(&subj, "version", t0, |v| v == TO),
        evict_start,
        leaders_zero,
        evicted_true: log.first_change(&subj, "LeadersEvicted", t0, |v| v == "True"),
        deleting,
        leaders_at_delete: deleting.and_then(|d| log.value_at(&store, "leaders", d)),
        gone: log.first_change(&old, "exists", t0, |v| v == "false"),
        created: log.first(&new, "exists", "true"),
        ready,
        up_new: log.reached(&store, "state+version", &format!("Up {to_plain}"), t0),
        done: log.reached(
            &subj,
            "revision+ready",
            &format!("{update_rev}/true"),
            ready.unwrap_or(t0),
        ),
        eviction_ended: evict_start
            .and_then(|s| log.first_change(&store, "evicting", s, |v| v == "false")),
    }
}

/// Seconds from `a` to `b`, at least 0; `None` when either is unknown.
fn dur(a: Option<Instant>, b: Option<Instant>) -> Option<f64> {
    Some(secs(a?, b?).max(0.0))
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

fn report(
    log: &Log,
    t0: Instant,
    polled_end: Instant,
    ids: &BTreeMap<String, u64>,
    zones: &BTreeMap<String, String>,
) -> Totals {
    let group = format!("tikvgroup/{GROUP}");
    let update_rev = log
        .value_at(&group, "updateRevision", Instant::now())
        .unwrap_or_default();
    let mut stores: Vec<Store> = ids
        .iter()
        .map(|(name, id)| observe(log, t0, name, *id, &update_rev, zones.get(name)))
        .collect();
    stores.sort_by_key(|s| s.done.unwrap_or(polled_end));
    let n = stores.len();
    let last_done = stores.iter().filter_map(|s| s.done).max().unwrap_or(t0);
    // End: the group reports n/n/n, Ready and the new version, and PD every store Up at it.
    let to_plain = TO.trim_start_matches('v');
    let counts = format!("{n}/{n}/{n}");
    let end_parts = [
        log.reached(&group, "replicas/ready/updated", &counts, last_done),
        log.reached(&group, "Ready", "True", last_done),
        log.reached(&group, "version", TO, t0),
    ];
    let end = if end_parts.iter().all(Option::is_some) {
        end_parts
            .into_iter()
            .flatten()
            .chain(stores.iter().filter_map(|s| s.up_new))
            .max()
            .unwrap_or(polled_end)
    } else {
        println!("NOTE: the watchers missed the group's final status; using the poll's end");
        polled_end
    };

    println!("\nper store, s after the version patch (t0):");
    println!(
        "{:<18} {:>5} {:>8} {:>7} {:>7} {:>9} {:>7} {:>12} {:>7} {:>7} {:>9} {:>7} {:>7} {:>8}",
        "store (id)",
        "zone",
        "picked",
        "evict",
        "ldrs 0",
        "Evicted=T",
        "delete",
        "ldrs@delete",
        "gone",
        "new pod",
        "pod Ready",
        "Up@new",
        "done",
        "evict end"
    );
    for s in &stores {
        println!(
            "{:<18} {:>5} {:>8} {:>7} {:>7} {:>9} {:>7} {:>12} {:>7} {:>7} {:>9} {:>7} {:>7} {:>8}",
            format!("{} ({})", s.name.trim_start_matches("basic-tikv-"), s.id),
            s.zone.trim_start_matches("zone-"),
            rel(t0, s.picked),
            rel(t0, s.evict_start),
            rel(t0, s.leaders_zero),
            rel(t0, s.evicted_true),
            rel(t0, s.deleting),
            s.leaders_at_delete.as_deref().unwrap_or("-"),
            rel(t0, s.gone),
            rel(t0, s.created),
            rel(t0, s.ready),
            rel(t0, s.up_new),
            rel(t0, s.done),
            rel(t0, s.eviction_ended),
        );
    }

    println!("\nper store phases, s (* = external, in the lower bound):");
    println!(
        "{:<18} {:>7} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>7} {:>7} {:>8}",
        "store (id)",
        "pick",
        "->evict",
        "eviction*",
        "->delete",
        "termin.*",
        "recreate",
        "startup*",
        "store-up*",
        "->done",
        "restart",
        "slot",
        "lower",
        "operator"
    );
    let mut prev = t0;
    let mut lower_bound = 0.0;
    let mut strict_bound = 0.0;
    let mut probe_lag = 0.0;
    let mut overlapped = false;
    for s in &stores {
        let start = s.picked.or(s.evict_start);
        if start.is_some_and(|st| st < prev) {
            overlapped = true;
        }
        let eviction = dur(s.evict_start, s.leaders_zero);
        let termination = dur(s.deleting, s.gone);
        let startup = dur(s.created, s.ready);
        let store_up = dur(s.ready, s.up_new);
        let lower = eviction.unwrap_or(0.0)
            + termination.unwrap_or(0.0)
            + startup.unwrap_or(0.0)
            + store_up.unwrap_or(0.0);
        lower_bound += lower;
        // Strict: the new pod is done starting when it is Ready or PD has its store Up at the
        // new version, whichever comes first (the readiness probe's period is then not counted).
        let first_serving = match (s.ready, s.up_new) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        strict_bound += eviction.unwrap_or(0.0)
            + termination.unwrap_or(0.0)
            + dur(s.created, first_serving).unwrap_or(0.0);
        probe_lag += dur(s.up_new, s.ready).unwrap_or(0.0);
        let done = s.done.unwrap_or(polled_end);
        let slot = secs(prev, done);
        let serving_again = match (s.ready, s.up_new) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        println!(
            "{:<18} {:>7} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>8} {:>7.2} {:>7.2} {:>8.2}",
            format!("{} ({})", s.name.trim_start_matches("basic-tikv-"), s.id),
            cell(dur(Some(prev), s.picked)),
            cell(dur(s.picked, s.evict_start)),
            cell(eviction),
            cell(dur(s.leaders_zero.or(s.evict_start), s.deleting)),
            cell(termination),
            cell(dur(s.gone, s.created)),
            cell(startup),
            cell(store_up),
            cell(dur(serving_again, s.done)),
            cell(dur(s.deleting, s.ready)),
            slot,
            lower,
            slot - lower,
        );
        prev = prev.max(done);
    }
    let total = secs(t0, end);
    let tail = secs(prev, end);
    println!(
        "{:<18} last store done -> end (group {n}/{n}/{n} Ready at {TO}, PD all Up at {to_plain}): {tail:.2}",
        "tail"
    );
    let operator = total - lower_bound;
    println!("\ntotal (patch -> end)        {total:>8.2}");
    println!(
        "lower bound (sum of *)      {lower_bound:>8.2}   per store {:.2}",
        lower_bound / n as f64
    );
    println!(
        "operator-added              {operator:>8.2}   per store {:.2} ({:.0}% of total)",
        operator / n as f64,
        100.0 * operator / total
    );
    println!(
        "strict lower bound          {strict_bound:>8.2}   (startup ends at new pod Ready or store Up@new, whichever first; \
         total/strict {:.2})",
        total / strict_bound
    );
    println!(
        "readiness lag               {probe_lag:>8.2}   (sum over stores of Up@new -> new pod Ready: counted as external above)"
    );
    println!(
        "(end seen by the 100 ms poll at {:.2}; group status and PD facts by the watchers at {total:.2})",
        secs(t0, polled_end)
    );
    if overlapped {
        println!(
            "NOTE: restarts overlapped (a store was picked before the previous one was done): \
             the sum of the per-store lower bounds is not a lower bound of the total"
        );
    }
    Totals {
        stores: n,
        total,
        lower_bound,
        strict_bound,
        operator,
        overlapped,
    }
}

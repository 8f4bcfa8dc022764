//! Benchmark: `examples/basic` (3 PD + 3 TiKV) from apply to Cluster Ready, and how much of that
//! time the operator itself accounts for.
//!
//! The benchmark runs in one environment (real nodes: kubelet + containerd, see `e2e/env`); each
//! run is a new namespace with the three controllers installed by Helm (images of the release
//! build); it starts watchers on Pods, PD, TiKV, the groups, the Cluster and Events plus a 100 ms PD poller
//! (see `common`), applies the example and waits for the Cluster's Ready condition. Every time is
//! relative to just before the apply (`t0`) and is the instant the watcher (or poller) saw the
//! change, so it includes the API server's watch latency (milliseconds).
//!
//! The breakdown:
//! - **total** = `t0` → Cluster `Ready=True`.
//! - **external waits**: an instance waits on things outside the operator from the moment its
//!   pod exists until it *serves*: the pod is Running and Ready (the scheduler binds it, the
//!   kubelet starts the container, the process starts, the readiness probe passes — PD: its
//!   client port answers; tikv-sim: its status port answers, which it opens only after
//!   registering its store with PD, so this includes waiting for a PD leader) **and** PD itself
//!   reports it (a PD member healthy in PD's health check; a TiKV store Up). The create calls
//!   of the apply (`t0` → apply returned, API server latency) count as external too. The
//!   external time is the length of the *union* of these intervals, clipped to `[t0, Cluster
//!   Ready]`: whenever at least one of them is pending, the cluster is (also) waiting on the
//!   outside world, so no operator could finish sooner than this — it is the external part of
//!   the critical path. The **PD phase** is what the PD intervals add to the apply; the **TiKV
//!   phase** is what the TiKV intervals add on top (a TiKV pod starting while no PD interval
//!   was pending — in practice tikv-sim waiting for the PD leader and then its probe).
//!   Note that the readiness probes' period (2 s) is set by the operator's pod spec yet counted
//!   as external here: a probe that just missed the process becoming ready costs up to 2 s.
//! - **operator share** = total − external: the time when nothing external was pending, i.e.
//!   progress depended only on the controllers (creating instances and pods, noticing
//!   readiness, asking PD, writing conditions, requeue delays). Each such gap is listed with the
//!   readiness observations inside it, which names the operator steps that took the time.
//!
//! Runs `BENCH_RUNS` times (default 3) and prints min / median / max. `BENCH_VERBOSE=1` also
//! prints every observation of every run.

mod common;

use std::time::{Duration, Instant};

use common::{Entry, Log, Observer, gaps, length, rel, secs, short, stats, union};

const CLUSTER: &str = "basic";

/// Picks one number of a [`Summary`].
type Measure = fn(&Summary) -> f64;

/// The numbers of one run, in seconds.
struct Summary {
    total: f64,
    apply: f64,
    pd_external: f64,
    tikv_external: f64,
    external: f64,
    operator: f64,
}

fn main() {
    e2e::run(async {
        let runs: usize = std::env::var("BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
            .max(1);
        let verbose = std::env::var("BENCH_VERBOSE").is_ok_and(|v| v == "1");
        let mut summaries = Vec::new();
        for i in 1..=runs {
            println!("\n=== apply_to_ready run {i}/{runs} ===");
            summaries.push(run(i, verbose).await);
        }
        println!("\n=== apply_to_ready: {runs} run(s), seconds ===");
        println!(
            "{:<36} {:>8} {:>8} {:>8}",
            "measure", "min", "median", "max"
        );
        let rows: [(&str, Measure); 6] = [
            ("total (t0 -> Cluster Ready)", |s| s.total),
            ("external: the apply calls", |s| s.apply),
            ("external: PD phase", |s| s.pd_external),
            ("external: TiKV phase (beyond PD)", |s| s.tikv_external),
            ("external: total", |s| s.external),
            ("operator share (total - external)", |s| s.operator),
        ];
        for (name, f) in rows {
            let v: Vec<f64> = summaries.iter().map(f).collect();
            let (min, med, max) = stats(&v);
            println!("{name:<36} {min:>8.2} {med:>8.2} {max:>8.2}");
        }
        let share: Vec<f64> = summaries
            .iter()
            .map(|s| 100.0 * s.operator / s.total)
            .collect();
        let (min, med, max) = stats(&share);
        println!(
            "{:<36} {min:>7.0}% {med:>7.0}% {max:>7.0}%",
            "operator share of total"
        );
    })
}

async fn run(i: usize, verbose: bool) -> Summary {
    let env = e2e::Env::start(&format!("bench-ready-{i}")).await;
    let observer = Observer::start(&env, CLUSTER).await;
    let t0 = Instant::now();
    let applied = env.apply_example(CLUSTER).await;
    env.wait_cluster_ready(CLUSTER, 300).await;
    // The watcher may see Ready a moment after the poll above did.
    let log = observer.log.clone();
    common::poll(5, || async {
        log.first(&format!("cluster/{CLUSTER}"), "Ready", "True")
            .map(drop)
    })
    .await;
    observer.stop();
    println!("namespace {}", env.ns);
    if verbose {
        log.print(t0);
    }
    let summary = report(&log, t0, applied);
    env.remove().await;
    summary
}

/// Per instance: when its object, pod, readiness, store and Ready condition were first seen.
struct Row {
    name: String,
    object: Option<Instant>,
    pod_created: Option<Instant>,
    scheduled: Option<Instant>,
    running: Option<Instant>,
    pod_ready: Option<Instant>,
    /// PD: the member healthy in PD's health check; TiKV: the store Up in PD.
    in_pd: Option<Instant>,
    ready: Option<Instant>,
}

impl Row {
    /// When the instance stopped waiting on the outside world: pod Ready and PD's fact.
    fn serving(&self) -> Option<Instant> {
        Some(self.pod_ready?.max(self.in_pd?))
    }
}

fn rows(log: &Log, kind: &str, end: Instant) -> Vec<Row> {
    log.subjects(&format!("{kind}/"))
        .into_iter()
        .map(|subject| {
            let name = short(&subject).to_string();
            let pod = format!("pod/{name}#1");
            let in_pd = if kind == "pd" {
                log.first(&format!("pdmember/{name}"), "healthy", "true")
            } else {
                log.value_at(&subject, "store", end)
                    .and_then(|id| log.first(&format!("store/{id}"), "state", "Up"))
            };
            Row {
                object: log.first(&subject, "exists", "true"),
                pod_created: log.first(&pod, "exists", "true"),
                scheduled: log.first(&pod, "scheduled", "true"),
                running: log.first(&pod, "phase", "Running"),
                pod_ready: log.first(&pod, "ready", "true"),
                in_pd,
                ready: log.first(&subject, "Ready", "True"),
                name,
            }
        })
        .collect()
}

fn report(log: &Log, t0: Instant, applied: Instant) -> Summary {
    let cluster = format!("cluster/{CLUSTER}");
    let end = log
        .first(&cluster, "Ready", "True")
        .expect("the watcher saw the Cluster Ready");
    let total = secs(t0, end);
    let pds = rows(log, "pd", end);
    let tikvs = rows(log, "tikv", end);

    println!(
        "\n{:<22} {:>7} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8} {:>13}",
        "instance (s after t0)",
        "object",
        "pod",
        "scheduled",
        "running",
        "pod ready",
        "in PD",
        "Ready",
        "external"
    );
    for r in pds.iter().chain(&tikvs) {
        println!(
            "{:<22} {:>7} {:>8} {:>9} {:>8} {:>9} {:>8} {:>8} {:>13}",
            r.name,
            rel(t0, r.object),
            rel(t0, r.pod_created),
            rel(t0, r.scheduled),
            rel(t0, r.running),
            rel(t0, r.pod_ready),
            rel(t0, r.in_pd),
            rel(t0, r.ready),
            common::span(r.pod_created, r.serving()),
        );
    }

    let max_of = |rs: &[Row], f: fn(&Row) -> Option<Instant>| rs.iter().filter_map(f).max();
    let min_of = |rs: &[Row], f: fn(&Row) -> Option<Instant>| rs.iter().filter_map(f).min();
    let milestones = [
        ("apply calls returned", Some(applied)),
        ("Cluster.status.pd set", log.first(&cluster, "pd", "true")),
        ("first PD pod created", min_of(&pds, |r| r.pod_created)),
        ("first PD pod Ready", min_of(&pds, |r| r.pod_ready)),
        (
            "PD leader elected (PD poll)",
            log.first_change("pd", "leader", t0, |_| true),
        ),
        ("last PD pod Ready", max_of(&pds, |r| r.pod_ready)),
        (
            "last PD member healthy (PD poll)",
            max_of(&pds, |r| r.in_pd),
        ),
        ("last PD Ready=True", max_of(&pds, |r| r.ready)),
        (
            "PDGroup Ready",
            log.first("pdgroup/basic-pd", "Ready", "True"),
        ),
        ("first TiKV pod created", min_of(&tikvs, |r| r.pod_created)),
        ("last TiKV pod Ready", max_of(&tikvs, |r| r.pod_ready)),
        ("last store Up (PD poll)", max_of(&tikvs, |r| r.in_pd)),
        ("last TiKV Ready=True", max_of(&tikvs, |r| r.ready)),
        (
            "TiKVGroup Ready",
            log.first("tikvgroup/basic-tikv", "Ready", "True"),
        ),
        (
            "Cluster Available",
            log.first(&cluster, "Available", "True"),
        ),
        ("Cluster Ready", Some(end)),
    ];
    println!("\nmilestones (s after t0):");
    for (what, t) in milestones {
        println!("  {what:<34} {:>8}", rel(t0, t));
    }

    // External intervals: the apply calls themselves (API server), then per instance its pod
    // created -> serving (pod Ready and PD's own fact).
    let interval = |r: &Row| Some((secs(t0, r.pod_created?), secs(t0, r.serving()?)));
    let apply_iv = (0.0, secs(t0, applied));
    let pd_iv: Vec<(f64, f64)> = pds.iter().filter_map(interval).collect();
    let tikv_iv: Vec<(f64, f64)> = tikvs.iter().filter_map(interval).collect();
    let apply_pd_union = union(
        pd_iv.iter().copied().chain([apply_iv]).collect(),
        0.0,
        total,
    );
    let all_union = union(
        pd_iv.into_iter().chain(tikv_iv).chain([apply_iv]).collect(),
        0.0,
        total,
    );
    let apply = apply_iv.1.min(total);
    let pd_external = length(&apply_pd_union) - apply;
    let external = length(&all_union);
    let summary = Summary {
        total,
        apply,
        pd_external,
        tikv_external: external - apply - pd_external,
        external,
        operator: total - external,
    };

    println!("\nbreakdown (s):");
    println!(
        "  total: t0 -> Cluster Ready          {:>7.2}",
        summary.total
    );
    println!(
        "  external, the apply calls           {:>7.2}   (API server)",
        summary.apply
    );
    println!(
        "  external, PD phase                  {:>7.2}   (PD pods created -> Ready and healthy in PD, beyond the apply)",
        summary.pd_external
    );
    println!(
        "  external, TiKV phase beyond PD      {:>7.2}   (TiKV pods created -> Ready and Up in PD, while nothing above was pending)",
        summary.tikv_external
    );
    println!(
        "  external on the critical path       {:>7.2}",
        summary.external
    );
    println!(
        "  operator share = total - external   {:>7.2}   ({:.0}% of total)",
        summary.operator,
        100.0 * summary.operator / summary.total
    );
    println!(
        "  where the operator's share went (nothing external pending), with what happened in it:"
    );
    let at = |s: f64| t0 + Duration::from_secs_f64(s.max(0.0));
    let label = |e: &Entry| format!("{} {}={}", e.subject, e.aspect, e.value);
    for (a, b) in gaps(&all_union, 0.0, total) {
        if b - a < 0.05 {
            continue;
        }
        let (before, _) = log.around(at(a) + Duration::from_millis(1));
        println!(
            "    {a:>6.2} .. {b:>6.2}  {:>5.2}s  after [{}]",
            b - a,
            before.as_ref().map_or("t0".to_string(), label)
        );
        for e in log.entries() {
            if e.at > at(a) + Duration::from_millis(1)
                && e.at <= at(b) + Duration::from_millis(1)
                && milestone(&e)
            {
                println!("          {:>6} {}", rel(t0, Some(e.at)), label(&e));
            }
        }
    }
    summary
}

/// Observations worth naming inside an operator gap: readiness and existence of things.
fn milestone(e: &Entry) -> bool {
    match (e.aspect.as_str(), e.value.as_str()) {
        ("Ready" | "Available", "True") => true,
        ("exists" | "healthy" | "pd", "true") => true,
        ("state", "Up") => true,
        ("leader", v) => e.subject == "pd" || v == "true",
        _ => false,
    }
}

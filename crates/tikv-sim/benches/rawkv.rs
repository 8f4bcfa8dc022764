//! RawKV benchmark of the store (printed, not asserted): 3 stores and a real pd-server, load
//! from the official Go client (client-go v2.0.7 via `kvclient bench`).
//!
//! * throughput and p50/p99 for 1 and 16 concurrent clients, 50 % reads (YCSB workload A's mix)
//!   and 100 % reads (workload C), over 100 000 keys of 100 bytes;
//! * memory (RSS) and idle CPU per store with those keys;
//! * what a leader transfer costs a client: 16 clients while PD moves every leader off one
//!   store (longest gap between successful operations, p99, errors);
//! * recovery of a store killed with SIGKILL: until it serves, and until it holds every key.
//!
//! `cargo bench -p tikv-sim --bench rawkv` (needs `e2e/tools/build.sh pd kvclient`).

use std::time::{Duration, Instant};

use pdclient::PdClient;
use serde_json::Value;
use testenv::pd::{PdCluster, PdOptions, StoreOptions, http_request};

const KEYS: usize = 100_000;
/// Regions of about 1 MiB, so that 10 MiB of data spread over stores.
const CONFIG: &str = r#"
[coprocessor]
region-split-size = "1MiB"
"#;

fn pd_addrs(pd: &PdCluster) -> String {
    pd.addresses().join(",")
}

/// Runs `kvclient bench` and returns its JSON result.
async fn kvclient(pd: &PdCluster, args: &[&str]) -> Value {
    let bin = testenv::bin_path("kvclient").expect("kvclient (e2e/tools/build.sh kvclient)");
    let out = tokio::process::Command::new(bin)
        .arg("bench")
        .arg("--pd")
        .arg(pd_addrs(pd))
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .expect("kvclient runs");
    assert!(out.status.success(), "kvclient bench {args:?} failed");
    serde_json::from_slice(&out.stdout).expect("kvclient prints JSON")
}

async fn metric(status_addr: &str, series: &str) -> f64 {
    let (_, body) = http_request(status_addr, "GET", "/metrics", None, Duration::from_secs(2))
        .await
        .unwrap_or_default();
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn row(name: &str, r: &Value) {
    println!(
        "| {name:<34} | {:>9.0} | {:>8.2} | {:>8.2} | {:>8.1} | {:>6} |",
        r["ops_per_sec"].as_f64().unwrap_or(0.0),
        r["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        r["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        r["longest_gap_ms"].as_f64().unwrap_or(0.0),
        r["errors"].as_u64().unwrap_or(0),
    );
}

async fn leaders_on(client: &PdClient, store_id: u64) -> u64 {
    client
        .store_leader_count(store_id)
        .await
        .unwrap_or(u64::MAX)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut pd = PdCluster::start(PdOptions::default()).await.expect("PD");
    for i in 0..3 {
        let mut opts = StoreOptions {
            binary: Some(env!("CARGO_BIN_EXE_tikv-sim").into()),
            config: CONFIG.into(),
            ..StoreOptions::default()
        };
        opts.labels.insert("zone".into(), format!("z{i}"));
        pd.start_store(opts).await.expect("store");
    }
    let client = PdClient::new(pd.endpoints()).expect("PD client");
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    // Full replication of the 48 initial regions.
    let began = Instant::now();
    loop {
        let stores = client.stores().await.unwrap_or_default();
        let regions: u64 = stores.iter().map(|s| s.status.region_count).sum();
        if regions >= 3 * 48 || began.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let load = kvclient(&pd, &["--load", &KEYS.to_string(), "--duration", "0s"]).await;
    println!(
        "loaded {KEYS} keys of 100 bytes in {:.1} s ({:.0} keys/s, BatchPut of 256)",
        load["load_seconds"].as_f64().unwrap_or(0.0),
        KEYS as f64 / load["load_seconds"].as_f64().unwrap_or(1.0)
    );
    // Let splits and balancing settle a little.
    tokio::time::sleep(Duration::from_secs(5)).await;

    println!("\n| store | regions | leaders | keys | RSS MiB | idle CPU % |");
    println!("|---|---|---|---|---|---|");
    let mut cpu_before = Vec::new();
    for s in pd.stores() {
        cpu_before.push(metric(s.status_address(), "process_cpu_seconds_total").await);
    }
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    for (i, s) in pd.stores().iter().enumerate() {
        let a = s.status_address();
        let cpu = metric(a, "process_cpu_seconds_total").await - cpu_before[i];
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} |",
            s.id(),
            metric(a, "tikv_raftstore_region_count{type=\"region\"}").await,
            metric(a, "tikv_raftstore_region_count{type=\"leader\"}").await,
            metric(a, "tikv_engine_num_keys").await,
            metric(a, "process_resident_memory_bytes").await / (1 << 20) as f64,
            100.0 * cpu / idle.as_secs_f64(),
        );
    }

    println!(
        "\n| workload (10 s, {KEYS} keys)        |     ops/s | p50 ms   | p99 ms   | gap ms   | errors |"
    );
    println!(
        "|------------------------------------|-----------|----------|----------|----------|--------|"
    );
    let keys = KEYS.to_string();
    for (name, clients, reads) in [
        ("A (50% reads), 1 client", "1", "50"),
        ("A (50% reads), 16 clients", "16", "50"),
        ("C (100% reads), 1 client", "1", "100"),
        ("C (100% reads), 16 clients", "16", "100"),
    ] {
        let r = kvclient(
            &pd,
            &[
                "--clients",
                clients,
                "--read-percent",
                reads,
                "--keys",
                &keys,
                "--duration",
                "10s",
            ],
        )
        .await;
        row(name, &r);
    }

    // A leader transfer under load: PD moves every leader off store 0 mid-run.
    let load = {
        let addrs = pd_addrs(&pd);
        let keys = keys.clone();
        tokio::spawn(async move {
            let bin = testenv::bin_path("kvclient").expect("kvclient");
            let out = tokio::process::Command::new(bin)
                .args([
                    "bench",
                    "--pd",
                    &addrs,
                    "--clients",
                    "16",
                    "--read-percent",
                    "50",
                    "--keys",
                    &keys,
                    "--duration",
                    "15s",
                ])
                .stderr(std::process::Stdio::null())
                .output()
                .await
                .expect("kvclient runs");
            serde_json::from_slice::<Value>(&out.stdout).expect("JSON")
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = leaders_on(&client, ids[0]).await;
    client
        .add_evict_leader(ids[0])
        .await
        .expect("evict leaders");
    let evict_started = Instant::now();
    while leaders_on(&client, ids[0]).await != 0
        && evict_started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let evicted_in = evict_started.elapsed();
    let r = load.await.expect("load");
    row("A, 16 clients, leaders evicted", &r);
    println!(
        "\n{before} leaders moved off store {} in {:.1} s (PD's evict-leader scheduler) during the run above",
        ids[0],
        evicted_in.as_secs_f64()
    );
    client
        .remove_evict_leader(ids[0])
        .await
        .expect("stop evicting");

    // Recovery of a store killed with SIGKILL.
    let store = pd.store_mut(1);
    store.kill();
    let started = Instant::now();
    store.restart().await.expect("restart");
    let serving = started.elapsed();
    let status = store.status_address().to_string();
    while metric(&status, "tikv_engine_num_keys").await < KEYS as f64
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "store killed (SIGKILL) with {KEYS} keys: serving again after {:.2} s, all keys back after {:.2} s",
        serving.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

//! tikv-sim with TiKV's `[security]` against the real pd-server with TLS, and client-go (through
//! `kvclient`) with client certificates: every port (the stores' gRPC and status ports, PD's
//! client port) refuses clients without a certificate from the cluster's CA; renewed
//! certificates and a CA rotation (old and new CA trusted during the overlap) apply without
//! restarting a store, while a client workload runs without errors.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::kvclient::{KvClient, pd_addrs, tls_args};
use common::{eventually, store_options, wait_replicated};
use pdclient::PdClient;
use serde_json::Value;
use testenv::pd::{PdCluster, PdOptions, request};
use testenv::pki::{Ca, Leaf, Pair, write_dir};

/// PD with TLS (`members`), three TLS stores, and a PD client with the test client's
/// certificate, once the regions are replicated.
async fn start(members: usize) -> (PdCluster, PdClient) {
    let mut pd = PdCluster::start(PdOptions {
        members,
        tls: true,
        ..PdOptions::default()
    })
    .await
    .expect("PD starts with TLS");
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut opts = store_options();
        opts.labels.insert("zone".into(), format!("z{i}"));
        let index = pd.start_store(opts).await.expect("a TLS store starts");
        ids.push(pd.store(index).id());
    }
    let client = PdClient::builder(pd.endpoints())
        .timeout(Duration::from_secs(3))
        .tls(pd.pki().unwrap().material("client").unwrap())
        .build()
        .unwrap();
    wait_replicated(&client, &ids, 3, 48).await;
    (pd, client)
}

/// A TLS handshake with `addr` (a loopback address).
async fn handshake(addr: &str, config: rustls::ClientConfig) -> Result<Vec<u8>, String> {
    testenv::pki::handshake(addr, "127.0.0.1", config).await
}

/// A client config trusting `ca` (PEM), presenting `pair` when given.
fn client_config(ca: &str, pair: Option<&Pair>) -> rustls::ClientConfig {
    testenv::pki::client_config(ca, pair).unwrap()
}

/// Every address a client can knock on: PD's client URLs, the stores' gRPC and status ports.
fn addresses(pd: &PdCluster) -> Vec<String> {
    let mut out: Vec<String> = pd
        .endpoints()
        .iter()
        .map(|e| e.trim_start_matches("https://").to_string())
        .collect();
    for s in pd.stores() {
        out.push(s.address().to_string());
        out.push(s.status_address().to_string());
    }
    out
}

/// Runs `kvclient bench` (with TLS from `dir` when given); its JSON result, or why it failed or
/// did not finish within `within` (client-go keeps retrying a refused handshake).
async fn bench(
    pd: &PdCluster,
    dir: Option<&Path>,
    args: &[&str],
    within: Duration,
) -> Result<Value, String> {
    let bin = testenv::bin_path("kvclient").expect("kvclient (e2e/tools/build.sh kvclient)");
    let run = tokio::process::Command::new(bin)
        .args(["bench", "--pd", &pd_addrs(&pd.endpoints())])
        .args(args)
        .args(dir.map(tls_args).unwrap_or_default())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(within, run)
        .await
        .map_err(|_| format!("no result within {within:?}"))?
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("kvclient bench prints JSON"))
}

#[tokio::test]
async fn clients_need_a_certificate_from_the_cluster_ca_on_every_port() {
    let (pd, _client) = start(1).await;
    let pki = pd.pki().unwrap();
    let dir = pki.dir("client");

    // client-go with the client certificate: reads and writes.
    let mut kv = KvClient::start_with(&pd.endpoints(), &tls_args(&dir)).await;
    kv.put("tls/a", "1").await.unwrap();
    assert_eq!(kv.get("tls/a").await.as_deref(), Some("1"));
    let pairs: Vec<(String, String)> = (0..100)
        .map(|i| (format!("tls/k{i:03}"), format!("v{i}")))
        .collect();
    kv.batch_put(&pairs).await;
    assert_eq!(kv.scan("tls/k", "tls/l", 1000, false).await.len(), 100);

    // The status port with the certificate answers.
    for s in pd.stores() {
        let (code, body) = request(
            s.status_address(),
            Some(&dir),
            "GET",
            "/metrics",
            None,
            Duration::from_secs(3),
        )
        .await
        .unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("tikv_raftstore_region_count"));
    }

    // Without a certificate, with one of another CA, or in plain text: refused everywhere.
    let stranger = Ca::new("stranger").unwrap();
    let foreign = stranger.issue(&Leaf::client("stranger")).unwrap();
    for addr in addresses(&pd) {
        let cert = handshake(&addr, client_config(pki.ca.pem(), Some(&pki_pair(&pd)))).await;
        assert!(
            cert.is_ok(),
            "{addr} refused the cluster's client: {cert:?}"
        );
        let none = handshake(&addr, client_config(pki.ca.pem(), None)).await;
        assert!(
            none.is_err(),
            "{addr} let a client without a certificate in"
        );
        let other = handshake(&addr, client_config(pki.ca.pem(), Some(&foreign))).await;
        assert!(other.is_err(), "{addr} let a client of another CA in");
        let plain =
            testenv::pd::http_request(&addr, "GET", "/", None, Duration::from_secs(3)).await;
        assert!(
            !matches!(plain, Ok((200, _))),
            "{addr} answered plain HTTP: {plain:?}"
        );
    }

    // client-go without TLS, or with a certificate of another CA, cannot connect (it fails or
    // keeps retrying); with the cluster's certificate the same run succeeds.
    let once = ["--duration", "0s", "--load", "1"];
    let within = Duration::from_secs(15);
    let plain = bench(&pd, None, &once, within).await;
    assert!(plain.is_err(), "client-go without TLS got in: {plain:?}");
    let foreign_dir = pd.dir().join("foreign-client");
    write_dir(&foreign_dir, pki.ca.pem(), &foreign).unwrap();
    let other = bench(&pd, Some(&foreign_dir), &once, within).await;
    assert!(
        other.is_err(),
        "client-go with another CA's certificate got in: {other:?}"
    );
    let ours = bench(&pd, Some(&dir), &once, within).await;
    assert!(
        ours.is_ok(),
        "client-go with the cluster's certificate: {ours:?}"
    );
}

/// The test client's current pair.
fn pki_pair(pd: &PdCluster) -> Pair {
    let m = pd.pki().unwrap().material("client").unwrap();
    Pair {
        cert: String::from_utf8(m.cert).unwrap(),
        key: String::from_utf8(m.key).unwrap(),
    }
}

/// Waits until every store and member presents the certificate in its directory now.
async fn wait_served(pd: &PdCluster, trust: &str) {
    let pki = pd.pki().unwrap();
    let client = pki_pair(pd);
    let mut expected = Vec::new();
    for (i, m) in pd.members().iter().enumerate() {
        let addr = m.client_url().trim_start_matches("https://").to_string();
        expected.push((addr, format!("pd-{i}")));
    }
    for s in pd.stores() {
        let name = format!("tikv-{}", s.index());
        expected.push((s.address().to_string(), name.clone()));
        expected.push((s.status_address().to_string(), name));
    }
    for (addr, component) in expected {
        let want = {
            let m = pki.material(&component).unwrap();
            Pair {
                cert: String::from_utf8(m.cert).unwrap(),
                key: String::new(),
            }
            .der()
        };
        let config = client_config(trust, Some(&client));
        eventually(
            &format!("{addr} serves {component}'s new certificate"),
            Duration::from_secs(10),
            || {
                let (addr, config, want) = (addr.clone(), config.clone(), want.clone());
                async move {
                    let served = handshake(&addr, config).await?;
                    (served == want)
                        .then_some(())
                        .ok_or("an older one".to_string())
                }
            },
        )
        .await;
    }
}

/// Updates every member's, store's and the test client's directory: `bundle` becomes its
/// `ca.crt`; with `issuer`, it also gets a new certificate from `issuer`, else it keeps its own.
fn update_all(pd: &PdCluster, bundle: &str, issuer: Option<&Ca>) {
    let pki = pd.pki().unwrap();
    let mut components: Vec<String> = (0..pd.members().len()).map(|i| format!("pd-{i}")).collect();
    components.extend(pd.stores().iter().map(|s| format!("tikv-{}", s.index())));
    components.push("client".into());
    for c in components {
        match issuer {
            Some(ca) => drop(pki.issue(&c, ca, bundle).unwrap()),
            None => {
                let m = pki.material(&c).unwrap();
                let pair = Pair {
                    cert: String::from_utf8(m.cert).unwrap(),
                    key: String::from_utf8(m.key).unwrap(),
                };
                write_dir(&pki.dir(&c), bundle, &pair).unwrap();
            }
        }
    }
}

/// Restarts PD's members one at a time (PD reads its CA bundle at start only).
async fn rolling_restart_pd(pd: &mut PdCluster) {
    let names: Vec<String> = pd.members().iter().map(|m| m.name().to_string()).collect();
    for name in names {
        pd.member_mut(&name)
            .unwrap()
            .restart(Duration::from_secs(60))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn renewals_and_a_ca_rotation_apply_without_restarts_or_client_errors() {
    let (mut pd, client) = start(3).await;
    let pki = pd.pki().unwrap();
    let old_ca = pki.ca.pem().to_string();
    let new_ca = Ca::new("testenv-pd-ca-2").unwrap();
    let bundle = format!("{old_ca}{}", new_ca.pem());
    let pids: Vec<Option<u32>> = pd.stores().iter().map(|s| s.pid()).collect();

    // The workload's client trusts both CAs from the start (the first step of a CA rotation is
    // handing every client the new bundle), with a certificate of the old CA.
    let workload_dir = pd.dir().join("workload");
    let first = pki.ca.issue(&Leaf::client("workload")).unwrap();
    write_dir(&workload_dir, &bundle, &first).unwrap();
    let load = {
        let endpoints = pd.endpoints();
        let dir = workload_dir.clone();
        let bin = testenv::bin_path("kvclient").unwrap();
        tokio::spawn(async move {
            let out = tokio::process::Command::new(bin)
                .args(["bench", "--pd", &pd_addrs(&endpoints)])
                .args(["--duration", "30s", "--clients", "4", "--keys", "2000"])
                .args(["--load", "2000", "--read-percent", "50"])
                .args(tls_args(&dir))
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "kvclient bench failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let began = Instant::now();

    // A renewal (same CA, new keys): each server presents its new certificate on the next
    // handshake, without a restart.
    update_all(&pd, &old_ca, Some(&pki.ca));
    wait_served(&pd, &old_ca).await;
    eprintln!("renewal served after {:?}", began.elapsed());

    // CA rotation. 1: every bundle holds both CAs; the stores reload it, PD restarts.
    update_all(&pd, &bundle, None);
    rolling_restart_pd(&mut pd).await;
    // 2: every certificate from the new CA (the workload's too: client-go reads it per
    // handshake).
    update_all(&pd, &bundle, Some(&new_ca));
    write_dir(
        &workload_dir,
        &bundle,
        &new_ca.issue(&Leaf::client("workload")).unwrap(),
    )
    .unwrap();
    wait_served(&pd, &bundle).await;
    // 3: only the new CA; PD restarts again.
    update_all(&pd, new_ca.pem(), None);
    rolling_restart_pd(&mut pd).await;
    eprintln!("CA rotation done after {:?}", began.elapsed());

    // The old CA's certificates are refused everywhere now.
    let old_client = Pair {
        cert: first.cert.clone(),
        key: first.key.clone(),
    };
    for addr in addresses(&pd) {
        let refused = handshake(&addr, client_config(&bundle, Some(&old_client))).await;
        assert!(
            refused.is_err(),
            "{addr} still accepts the old CA's certificate"
        );
    }
    // The operator's kind of client: a fresh PD client with the new certificate works.
    let renewed = PdClient::builder(pd.endpoints())
        .tls(pd.pki().unwrap().material("client").unwrap())
        .build()
        .unwrap();
    assert_eq!(renewed.members().await.unwrap().members.len(), 3);
    drop(client);

    let result = load.await.unwrap();
    eprintln!("workload during renewal and CA rotation: {result}");
    assert_eq!(result["errors"], 0, "client errors: {result}");
    assert!(result["ops"].as_u64().unwrap() > 0);
    let now: Vec<Option<u32>> = pd.stores().iter().map(|s| s.pid()).collect();
    assert_eq!(now, pids, "no store restarted");
    // New connections of client-go work with the new CA only.
    let fresh_dir = pd.dir().join("fresh");
    write_dir(
        &fresh_dir,
        new_ca.pem(),
        &new_ca.issue(&Leaf::client("fresh")).unwrap(),
    )
    .unwrap();
    let fresh = bench(
        &pd,
        Some(&fresh_dir),
        &["--duration", "2s", "--keys", "100"],
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(fresh["errors"], 0, "{fresh}");
}

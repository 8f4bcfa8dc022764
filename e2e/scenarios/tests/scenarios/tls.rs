//! examples/tls-cert-manager (examples/basic with `tlsCluster.enabled`, and cert-manager's Issuers
//! and Certificates) on the real nodes, with cert-manager's own controllers and CRDs (v1.21.2,
//! from its Go module). Before the Secrets exist every instance says which one is missing and
//! nothing runs; once cert-manager has issued them the cluster comes up with mutual TLS
//! everywhere; client-go (kvclient) works with a client certificate and is refused without one,
//! as is any client without a certificate on PD's and the stores' ports; every certificate
//! renewed by cert-manager (as `cmctl renew` asks it) reaches every pod through the kubelet while
//! a client load runs, without an error and without a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use api::v1alpha1::{Instance, PD, TiKV};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use operator_runtime::conditions;
use serde_json::Value;
use testenv::pki::{Ca, Leaf, Pair, client_config, handshake, write_dir};
use testenv::wait_for;

/// The Secrets the operator reads, as cert-manager issued them: name -> (pair, CA bundle).
async fn issued(env: &e2e::Env) -> Option<BTreeMap<String, (Pair, String)>> {
    let mut out = BTreeMap::new();
    for name in SECRETS {
        let s = env.api::<Secret>().get_opt(name).await.ok()??;
        let data = s.data?;
        let text = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
        let pair = Pair {
            cert: text("tls.crt")?,
            key: text("tls.key")?,
        };
        out.insert(name.to_string(), (pair, text("ca.crt")?));
    }
    Some(out)
}

/// The Secrets of the example's Certificates, which the Cluster's defaults name.
const SECRETS: [&str; 3] = [
    "basic-cluster-client-secret",
    "basic-pd-cluster-secret",
    "basic-tikv-cluster-secret",
];

/// Asks cert-manager to reissue a Certificate now, as `cmctl renew` does: the `Issuing`
/// condition with reason `ManuallyTriggered` on its status.
async fn renew(env: &e2e::Env, name: &str) {
    let certificates = env.cert_manager_api("Certificate");
    let mut status = certificates.get_status(name).await.unwrap().data["status"].clone();
    let conditions = status["conditions"]
        .as_array_mut()
        .expect("a Ready Certificate");
    conditions.retain(|c| c["type"] != "Issuing");
    conditions.push(serde_json::json!({
        "type": "Issuing",
        "status": "True",
        "reason": "ManuallyTriggered",
        "message": "renewal requested by the tls scenario",
        "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
    }));
    let patch = serde_json::json!({"status": status});
    certificates
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Runs `kvclient bench` against the cluster's PD (with the certificate in `dir` when given);
/// its JSON result, or why it failed or did not finish within `within`.
async fn bench(
    env: &e2e::Env,
    dir: Option<&Path>,
    args: &[&str],
    within: Duration,
) -> Result<Value, String> {
    let bin = testenv::bin_path("kvclient").expect("kvclient (e2e/tools/build.sh kvclient)");
    let mut cmd = env.command(bin);
    cmd.args(["bench", "--pd", &format!("basic-pd.{}.svc:2379", env.ns)])
        .args(args);
    if let Some(d) = dir {
        for (flag, file) in [
            ("--ca", "ca.crt"),
            ("--cert", "tls.crt"),
            ("--key", "tls.key"),
        ] {
            cmd.arg(flag).arg(d.join(file));
        }
    }
    let out = tokio::time::timeout(within, cmd.output())
        .await
        .map_err(|_| format!("no result within {within:?}"))?
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Every server port of the cluster with the name its certificate is checked for, and the
/// Secret that certificate comes from: PD's client URLs, the stores' gRPC and status ports.
async fn servers(pd: &pdclient::PdClient) -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    for m in pd.members().await.unwrap().members {
        for url in m.client_urls {
            let addr = url.trim_start_matches("https://").to_string();
            let host = addr.split(':').next().unwrap().to_string();
            out.push((addr, host, "basic-pd-cluster-secret"));
        }
    }
    for s in pd.stores().await.unwrap() {
        for addr in [&s.store.address, &s.store.status_address] {
            let host = addr.split(':').next().unwrap().to_string();
            out.push((addr.clone(), host, "basic-tikv-cluster-secret"));
        }
    }
    out
}

/// Waits for the Cluster to be Ready; else panics with every instance's conditions and the
/// end of every pod's log (PD's own words on a TLS problem).
async fn ready_or_explain(env: &e2e::Env) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        let s = env.api::<api::v1alpha1::Cluster>().get("basic").await;
        if s.ok()
            .and_then(|c| c.status)
            .is_some_and(|s| conditions::is_true(&s.conditions, "Ready"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut out = String::new();
    for p in env.api::<PD>().list(&Default::default()).await.unwrap() {
        out += &format!(
            "PD {}: {:?}\n",
            p.name_any(),
            p.status.map(|s| s.common.conditions)
        );
    }
    for t in env.api::<TiKV>().list(&Default::default()).await.unwrap() {
        out += &format!(
            "TiKV {}: {:?}\n",
            t.name_any(),
            t.status.map(|s| s.common.conditions)
        );
    }
    let params = kube::api::LogParams {
        tail_lines: Some(15),
        ..Default::default()
    };
    for p in env.api::<Pod>().list(&Default::default()).await.unwrap() {
        let log = env.api::<Pod>().logs(&p.name_any(), &params).await;
        out += &format!(
            "--- pod {}:\n{}\n",
            p.name_any(),
            log.unwrap_or_else(|e| e.to_string())
        );
    }
    panic!("Cluster basic not Ready within 240s:\n{out}");
}

/// Every pod with its UID and restart count.
async fn pods(env: &e2e::Env) -> BTreeMap<String, (String, i32)> {
    let list = env.api::<Pod>().list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .map(|p| (p.name_any(), (p.uid().unwrap(), e2e::restarts(p))))
        .collect()
}

#[test]
fn tls_cluster_from_cert_manager_refuses_clients_without_certificates_and_renews_without_restarts()
{
    e2e::run(async {
        let env = e2e::Env::start("tls").await;
        let ns = env.ns.clone();
        env.install_cert_manager_crds().await;
        // The example names the namespace `tikv` in its certificates' DNS names.
        let applied = env
            .apply_example_with("tls-cert-manager", |v| {
                if let Some(names) = v["spec"]["dnsNames"].as_sequence_mut() {
                    for n in names {
                        let renamed = n
                            .as_str()
                            .unwrap()
                            .replace(".tikv.svc", &format!(".{ns}.svc"));
                        *n = renamed.into();
                    }
                }
            })
            .await;

        // Without its Secrets (cert-manager not running yet) nothing runs, and each instance
        // names what is missing.
        let missing = format!("TLS Secret {ns}/basic-pd-cluster-secret does not exist");
        wait_for(60, "PD instances reporting the missing Secret", || async {
            let pds = env.api::<PD>().list(&Default::default()).await.ok()?.items;
            (!pds.is_empty()
                && pds.iter().all(|p| {
                    p.status.as_ref().is_some_and(|s| {
                        conditions::find(&s.common.conditions, "Synced")
                            .is_some_and(|c| c.reason == "InvalidTLSSecret" && c.message == missing)
                    })
                }))
            .then_some(())
        })
        .await;
        env.wait_event("InvalidTLSSecret", None, 30).await;
        assert!(pods(&env).await.is_empty(), "no pod without certificates");

        let _cert_manager = env.start_cert_manager();
        let secrets = wait_for(
            120,
            "cert-manager issuing the example's Certificates",
            || issued(&env),
        )
        .await;
        ready_or_explain(&env).await;
        println!(
            "TLS cluster: apply -> Ready in {:.1}s (cert-manager started after the first check)",
            applied.elapsed().as_secs_f64()
        );
        let ca_pem = secrets["basic-cluster-client-secret"].1.clone();
        let ca = ca_pem.as_str();

        // PD with the operator's kind of client certificate.
        let client = &secrets["basic-cluster-client-secret"].0;
        let url = format!("https://basic-pd.{ns}.svc:2379");
        let pd = pdclient::PdClient::builder([url])
            .tls(client.material(ca))
            .build()
            .unwrap();
        assert_eq!(e2e::up_stores(&pd, None).await, Some(3));

        // client-go with a certificate works; without one, or with another CA's, it does not.
        let dir = std::env::temp_dir().join(format!("tls-e2e-{ns}"));
        write_dir(&dir.join("client"), ca, client).unwrap();
        let once = ["--duration", "2s", "--keys", "1000", "--load", "1000"];
        let ok = bench(
            &env,
            Some(&dir.join("client")),
            &once,
            Duration::from_secs(60),
        )
        .await;
        let ok = ok.expect("client-go with a client certificate");
        assert_eq!(ok["errors"], 0, "{ok}");
        let short = ["--duration", "0s", "--load", "1"];
        let plain = bench(&env, None, &short, Duration::from_secs(15)).await;
        assert!(plain.is_err(), "client-go without TLS got in: {plain:?}");
        let stranger = Ca::new("stranger").unwrap();
        let foreign = stranger.issue(&Leaf::client("stranger")).unwrap();
        write_dir(&dir.join("foreign"), ca, &foreign).unwrap();
        let other = bench(
            &env,
            Some(&dir.join("foreign")),
            &short,
            Duration::from_secs(15),
        )
        .await;
        assert!(
            other.is_err(),
            "client-go with another CA's certificate got in"
        );

        // Every port: refused without a certificate or with a foreign one.
        let ports = servers(&pd).await;
        assert_eq!(ports.len(), 3 + 2 * 3, "{ports:?}");
        for (addr, host, _) in &ports {
            let ours = handshake(addr, host, client_config(ca, Some(client)).unwrap()).await;
            assert!(
                ours.is_ok(),
                "{addr} refused the cluster's client: {ours:?}"
            );
            let none = handshake(addr, host, client_config(ca, None).unwrap()).await;
            assert!(
                none.is_err(),
                "{addr} let a client without a certificate in"
            );
            let other = handshake(addr, host, client_config(ca, Some(&foreign)).unwrap());
            assert!(other.await.is_err(), "{addr} let another CA's client in");
        }

        // Renewal under load: new certificates in every Secret; the kubelet updates the pods'
        // volumes, PD and the stores present the new one on the next handshake.
        let before = pods(&env).await;
        let load = {
            let args = [
                "--duration",
                "90s",
                "--clients",
                "4",
                "--keys",
                "1000",
                "--read-percent",
                "50",
            ];
            let client_dir = dir.join("client");
            let env = &env;
            async move { bench(env, Some(&client_dir), &args, Duration::from_secs(240)).await }
        };
        let renewal = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let began = Instant::now();
            for name in SECRETS {
                renew(&env, name).await;
            }
            let what = "cert-manager reissuing every certificate";
            let renewed = wait_for(120, what, || async {
                let now = issued(&env).await?;
                SECRETS
                    .iter()
                    .all(|n| now[*n].0 != secrets[*n].0)
                    .then_some(now)
            })
            .await;
            let new_client = &renewed["basic-cluster-client-secret"].0;
            for (addr, host, from) in &ports {
                let want = renewed[*from].0.der();
                let what = format!("{addr} presenting its renewed certificate");
                wait_for(150, &what, || async {
                    let config = client_config(ca, Some(new_client)).unwrap();
                    let served = handshake(addr, host, config).await.ok()?;
                    (served == want).then_some(())
                })
                .await;
            }
            began.elapsed()
        };
        let (result, took) = tokio::join!(load, renewal);
        println!("renewal: every server presented its new certificate after {took:?}");
        let result = result.expect("the load runs through the renewal");
        println!("kvclient bench during the renewal: {result}");
        assert_eq!(
            result["errors"], 0,
            "client errors during the renewal: {result}"
        );
        assert!(result["ops"].as_u64().unwrap() > 0);
        assert_eq!(pods(&env).await, before, "no pod was replaced or restarted");
        let tikvs = env.api::<TiKV>().list(&Default::default()).await.unwrap();
        assert!(tikvs.items.iter().all(|t| t.ready_at_revision()));
        std::fs::remove_dir_all(&dir).ok();
        env.stop().await;
    });
}

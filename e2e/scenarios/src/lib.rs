//! The local environment for end-to-end scenarios, in one test process: the shared real control
//! plane, a node agent of its own (pods become real pd-server and tikv-sim processes), and the
//! three controllers scoped to the scenario's namespace.

use std::time::{Duration, Instant};

use api::v1alpha1::{Cluster, PDGroup, TiKVGroup};
use kube::api::PostParams;
use kube::{Api, Client};
use node_agent::{Agent, AgentConfig, Programs};
use serde::Deserialize;

/// One scenario's environment.
pub struct Env {
    /// API client.
    pub client: Client,
    /// The scenario's namespace.
    pub ns: String,
    /// The instance controller's metrics (kept across controller restarts), for the benches.
    pub instance_metrics: operator_runtime::metrics::Metrics,
    agent: Option<Agent>,
    controllers: Vec<tokio::task::JoinHandle<()>>,
}

impl Env {
    /// Starts a node agent with three zones and the three controllers for a new namespace.
    pub async fn start(name: &str) -> Env {
        init_logging();
        let cp = testenv::shared();
        let client = cp.client();
        let ns = cp.create_namespace(name).await;
        let state_dir = std::env::temp_dir().join(format!("e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        let mut config = AgentConfig::new(&state_dir);
        config.node_prefix = format!("e2e-{name}");
        config.programs = Programs {
            search_dirs: node_agent::image::default_search_dirs(None),
            ..Default::default()
        };
        config.shutdown_grace = Duration::from_secs(2);
        let agent = Agent::start(client.clone(), config)
            .await
            .expect("node agent starts");
        let instance_metrics = operator_runtime::metrics::Metrics::new();
        let controllers = spawn_controllers(&client, &ns, &instance_metrics);
        Env {
            client,
            ns,
            instance_metrics,
            agent: Some(agent),
            controllers,
        }
    }

    /// Creates every object of an examples/ directory in the namespace, with the test tuning of
    /// [`tune`]; returns when it was done.
    pub async fn apply_example(&self, dir: &str) -> Instant {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let pp = PostParams::default();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let mut v = serde_yaml::Value::deserialize(doc).unwrap();
                tune(&mut v);
                match v["kind"].as_str() {
                    Some("Cluster") => drop(
                        self.api::<Cluster>()
                            .create(&pp, &serde_yaml::from_value(v).unwrap())
                            .await
                            .unwrap(),
                    ),
                    Some("PDGroup") => drop(
                        self.api::<PDGroup>()
                            .create(&pp, &serde_yaml::from_value(v).unwrap())
                            .await
                            .unwrap(),
                    ),
                    Some("TiKVGroup") => drop(
                        self.api::<TiKVGroup>()
                            .create(&pp, &serde_yaml::from_value(v).unwrap())
                            .await
                            .unwrap(),
                    ),
                    other => panic!("unexpected kind {other:?} in {}", f.display()),
                }
            }
        }
        Instant::now()
    }

    /// A namespaced API.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A PD client for the cluster, at the URL the Cluster reports.
    pub async fn pd(&self, cluster: &str) -> pdclient::PdClient {
        let url = testenv::wait_for(60, "Cluster.status.pd", || async {
            self.api::<Cluster>().get(cluster).await.ok()?.status?.pd
        })
        .await;
        pdclient::PdClient::new([url]).unwrap()
    }

    /// Waits up to `secs` for Cluster `name` to report Ready (panics after).
    pub async fn wait_cluster_ready(&self, name: &str, secs: u64) {
        testenv::wait_for(secs, &format!("Cluster {name} Ready"), || async {
            let s = self.api::<Cluster>().get(name).await.ok()?.status?;
            operator_runtime::conditions::is_true(&s.conditions, "Ready").then_some(())
        })
        .await;
    }

    /// Kills the three controllers where they are (in-flight reconciles are dropped, as when a
    /// process dies) and starts them again: all they know must come back from the objects.
    pub async fn restart_controllers(&mut self, down_for: Duration) {
        for c in self.controllers.drain(..) {
            c.abort();
            let _ = c.await;
        }
        tokio::time::sleep(down_for).await;
        self.controllers = spawn_controllers(&self.client, &self.ns, &self.instance_metrics);
    }

    /// A PD client that knows every member's URL, so it keeps working while members restart.
    pub async fn pd_members(&self, cluster: &str) -> pdclient::PdClient {
        let urls = self.pd(cluster).await.members().await.unwrap().members;
        pdclient::PdClient::new(urls.into_iter().flat_map(|m| m.client_urls)).unwrap()
    }

    /// The store ID of every TiKV object (each must have one: call it once the cluster is Ready).
    pub async fn store_ids(&self) -> std::collections::BTreeMap<String, u64> {
        self.api::<api::v1alpha1::TiKV>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|t| {
                let id = t
                    .status
                    .as_ref()
                    .and_then(|s| s.id.as_deref())
                    .map(str::parse);
                let id = id
                    .and_then(Result::ok)
                    .expect("a TiKV of a Ready cluster has a store ID");
                (t.metadata.name.unwrap_or_default(), id)
            })
            .collect()
    }

    /// Whether an Event with `reason` was recorded (about the object `about`, when given).
    pub async fn has_event(&self, reason: &str, about: Option<&str>) -> bool {
        self.api::<k8s_openapi::api::core::v1::Event>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some(reason)
                    && about.is_none_or(|a| e.involved_object.name.as_deref() == Some(a))
            })
    }

    /// Stops the controllers and the node agent (its pods' processes die with it).
    pub async fn stop(mut self) {
        for c in &self.controllers {
            c.abort();
        }
        if let Some(agent) = self.agent.take() {
            let _ = agent.shutdown().await;
        }
    }
}

/// How many stores PD reports Up (at `version`, when given); `None` when PD cannot answer.
pub async fn up_stores(pd: &pdclient::PdClient, version: Option<&str>) -> Option<usize> {
    let stores = pd.stores().await.ok()?;
    Some(
        stores
            .iter()
            .filter(|s| s.store.state_name.as_str() == "Up")
            .filter(|s| version.is_none_or(|v| s.store.version == v))
            .count(),
    )
}

/// A pod watch event as (pod, going): `going` once it is terminating or deleted. `None` for the
/// watcher's bookkeeping events.
pub fn pod_change(
    ev: kube::runtime::watcher::Event<k8s_openapi::api::core::v1::Pod>,
) -> Option<(k8s_openapi::api::core::v1::Pod, bool)> {
    use kube::runtime::watcher::Event;
    match ev {
        Event::Apply(p) | Event::InitApply(p) => {
            let going = p.metadata.deletion_timestamp.is_some();
            Some((p, going))
        }
        Event::Delete(p) => Some((p, true)),
        _ => None,
    }
}

/// The pod runs, is Ready and is not terminating.
pub fn pod_serving(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && instance_controller::status::pod_ready(Some(p))
}

/// The controllers' logs go to the test's captured output, which the harness prints only for a
/// failed test: what the operator did next to what the test saw. `E2E_LOG` overrides the filter.
fn init_logging() {
    let filter = std::env::var("E2E_LOG").unwrap_or_else(|_| {
        "warn,operator_runtime=info,cluster_controller=info,group_controller=info,instance_controller=info".into()
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// The three controllers, in-process, scoped to `ns`; the instance controller reports into
/// `instance_metrics`.
fn spawn_controllers(
    client: &Client,
    ns: &str,
    instance_metrics: &operator_runtime::metrics::Metrics,
) -> Vec<tokio::task::JoinHandle<()>> {
    let metrics = operator_runtime::metrics::Metrics::new;
    let scope = Some(ns.to_string());
    vec![
        tokio::spawn(cluster_controller::run(
            client.clone(),
            metrics(),
            4,
            scope.clone(),
        )),
        tokio::spawn(group_controller::run(
            client.clone(),
            metrics(),
            4,
            scope.clone(),
        )),
        tokio::spawn(instance_controller::run(
            client.clone(),
            instance_metrics.clone(),
            4,
            scope,
        )),
    ]
}

/// TiKV timers for scenarios: region heartbeats every 5 s instead of TiKV's 1 min, so that PD
/// sees a restarted or new store's peers caught up within seconds rather than a minute.
const TIKV_TUNING: &str = r#"
[raftstore]
pd-heartbeat-tick-interval = "5s"
pd-store-heartbeat-tick-interval = "1s"
"#;

/// Merges the test tuning into a group's `config` (PD: [`testenv::pd::TEST_PD_CONFIG`], whose
/// scheduling limits make PD move replicas in seconds, not minutes; TiKV: [`TIKV_TUNING`]).
/// The example's own keys win where both set one.
fn tune(doc: &mut serde_yaml::Value) {
    let tuning = match doc["kind"].as_str() {
        Some("PDGroup") => testenv::pd::TEST_PD_CONFIG,
        Some("TiKVGroup") => TIKV_TUNING,
        _ => return,
    };
    let spec = &mut doc["spec"]["template"]["spec"];
    let user: toml::Table = toml::from_str(spec["config"].as_str().unwrap_or_default())
        .expect("the example's config is TOML");
    let mut merged: toml::Table = toml::from_str(tuning).unwrap();
    merge(&mut merged, user);
    spec["config"] = serde_yaml::Value::String(toml::to_string(&merged).unwrap());
}

/// Deep-merges `over` into `base`; `over` wins.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => drop(base.insert(k, v)),
        }
    }
}

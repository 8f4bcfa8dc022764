//! Helpers shared by the node agent's tests: an agent per test against the test binary's shared
//! control plane, pod builders and waits.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use node_agent::{Agent, AgentConfig, Programs, TEST_SHELL_IMAGE};

/// A running agent with its namespace and client.
pub struct Env {
    pub agent: Agent,
    pub client: kube::Client,
    pub ns: String,
    pub state_dir: PathBuf,
}

/// Starts an agent with `nodes` nodes (prefix derived from `name`) and a fresh namespace.
pub async fn start(name: &str, nodes: usize) -> Env {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("node_agent=debug,info")
        .with_test_writer()
        .try_init();
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace(name).await;
    let state_dir =
        std::env::temp_dir().join(format!("node-agent-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut config = AgentConfig::new(&state_dir);
    config.nodes = nodes;
    config.node_prefix = format!("na-{name}");
    config.programs = Programs {
        search_dirs: node_agent::image::default_search_dirs(None),
        test_images: true,
        ..Default::default()
    };
    config.shutdown_grace = Duration::from_secs(2);
    let agent = Agent::start(client.clone(), config)
        .await
        .expect("agent starts");
    Env {
        agent,
        client,
        ns,
        state_dir,
    }
}

impl Env {
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A pod running `script` with the test shell image on this agent's nodes, with POD_IP,
    /// POD_NAME and NS from the downward API.
    pub fn sh_pod(&self, name: &str, script: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_selector: Some(self.agent.node_selector()),
                termination_grace_period_seconds: Some(3),
                containers: vec![Container {
                    name: "main".into(),
                    image: Some(TEST_SHELL_IMAGE.into()),
                    command: Some(vec!["sh".into(), "-c".into(), script.into()]),
                    env: Some(downward_env()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    pub async fn create(&self, pod: &Pod) -> Pod {
        self.pods()
            .create(&PostParams::default(), pod)
            .await
            .expect("pod created")
    }

    pub async fn shutdown(self) {
        self.agent.shutdown().await.expect("agent shuts down");
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub fn downward_env() -> Vec<EnvVar> {
    let field = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        field("POD_IP", "status.podIP"),
        field("POD_NAME", "metadata.name"),
        field("NS", "metadata.namespace"),
        field("NODE_NAME", "spec.nodeName"),
    ]
}

/// Waits until `pred` holds for the object (`None` = it does not exist), or panics after
/// `secs` seconds with the last state seen.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    secs: u64,
    what: &str,
    pred: impl Fn(Option<&K>) -> bool,
) -> Option<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let cond = move |o: Option<&K>| pred(o);
    match tokio::time::timeout(
        Duration::from_secs(secs),
        await_condition(api.clone(), name, cond),
    )
    .await
    {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => panic!("waiting for {what}: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!("timed out after {secs}s waiting for {what}; last state: {last:#?}")
        }
    }
}

pub fn ready(p: Option<&Pod>) -> bool {
    condition(p, "Ready") == Some(true)
}

pub fn condition(p: Option<&Pod>, type_: &str) -> Option<bool> {
    p?.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

pub fn phase(p: Option<&Pod>) -> Option<String> {
    p?.status.as_ref()?.phase.clone()
}

pub fn main_status(p: Option<&Pod>) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p?.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

pub fn restarts(p: Option<&Pod>) -> i32 {
    main_status(p).map_or(0, |c| c.restart_count)
}

/// Resolves `name` with the system resolver (`getaddrinfo`), as every process does.
pub async fn resolve(name: &str) -> Vec<std::net::IpAddr> {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        (name.as_str(), 0)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect())
            .unwrap_or_default()
    })
    .await
    .unwrap()
}

/// Polls `f` every 100 ms until it returns `Some`, panicking after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A tiny HTTP GET over the system resolver (the test has no HTTP client dependency).
pub async fn http_get(host: &str, port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

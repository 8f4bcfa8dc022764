//! `node-agent`: runs the agent (default) or injects faults into a running one.
//!
//! ```text
//! node-agent --kubeconfig KUBECONFIG [--nodes 3] [--zones zone-a,zone-b,zone-c] [--state-dir DIR] [--bin-dir DIR]
//! node-agent fault --kubeconfig KUBECONFIG kill   NAMESPACE/POD
//! node-agent fault --kubeconfig KUBECONFIG freeze NAMESPACE/POD
//! node-agent fault --kubeconfig KUBECONFIG thaw   NAMESPACE/POD
//! node-agent fault --kubeconfig KUBECONFIG node   NODE Ready|NotReady|Down
//! ```
//!
//! Faults go through annotations, so they work against an agent in another process.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use node_agent::{
    Agent, AgentConfig, FAULT_ANNOTATION, FREEZE_ANNOTATION, KILL_ANNOTATION, NodeFault, Programs,
};

#[derive(Debug, Parser)]
#[command(
    name = "node-agent",
    version,
    about = "Runs pods bound to local Node objects as processes (a kubelet stand-in)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Inject a fault (through annotations, into whichever agent runs the pod or node).
    Fault {
        /// Kubeconfig of the cluster.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        #[command(subcommand)]
        fault: FaultCmd,
    },
}

#[derive(Debug, Subcommand)]
enum FaultCmd {
    /// SIGKILL the pod's processes (they restart per restartPolicy).
    Kill {
        /// NAMESPACE/POD
        pod: String,
    },
    /// SIGSTOP the pod's processes.
    Freeze {
        /// NAMESPACE/POD
        pod: String,
    },
    /// SIGCONT the pod's processes.
    Thaw {
        /// NAMESPACE/POD
        pod: String,
    },
    /// Set a node's state: Ready, NotReady (heartbeats stop) or Down (NotReady + processes frozen).
    Node {
        /// Node name.
        node: String,
        /// Ready, NotReady or Down.
        state: String,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Kubeconfig of the cluster (default: the usual kube client discovery).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Zones, assigned round-robin to the nodes.
    #[arg(long, value_delimiter = ',', default_value = "zone-a,zone-b,zone-c")]
    zones: Vec<String>,
    /// Node names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "node")]
    node_prefix: String,
    /// State directory (volumes, PVC data, logs).
    #[arg(long, default_value = "/var/tmp/tikv-operator/node-agent")]
    state_dir: PathBuf,
    /// Directory searched first for pd-server and tikv-sim.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Explicit path of pd-server.
    #[arg(long)]
    pd_server: Option<PathBuf>,
    /// Explicit path of tikv-sim.
    #[arg(long)]
    tikv_sim: Option<PathBuf>,
    /// Also run the test image node-agent.test/sh as /bin/sh.
    #[arg(long)]
    test_images: bool,
    /// Hosts file to manage.
    #[arg(long, default_value = "/etc/hosts")]
    hosts_file: PathBuf,
    /// Lock directory shared by all agents on this machine.
    #[arg(long, default_value = "/run/tikv-operator-node-agent")]
    lock_dir: PathBuf,
    /// Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Keep the Node objects on shutdown.
    #[arg(long)]
    keep_nodes: bool,
    /// Do not install the default StorageClass `node-agent` (WaitForFirstConsumer).
    #[arg(long)]
    no_storage_class: bool,
}

async fn client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn split_pod(s: &str) -> anyhow::Result<(&str, &str)> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok((ns, name)),
        _ => bail!("expected NAMESPACE/POD, got {s:?}"),
    }
}

async fn fault(kubeconfig: Option<&PathBuf>, cmd: FaultCmd) -> anyhow::Result<()> {
    let client = client(kubeconfig).await?;
    let (kind_pod, key, value) = match &cmd {
        FaultCmd::Kill { pod } => (
            Some(pod),
            KILL_ANNOTATION,
            Some(k8s_openapi::jiff::Timestamp::now().to_string()),
        ),
        FaultCmd::Freeze { pod } => (Some(pod), FREEZE_ANNOTATION, Some("true".to_string())),
        FaultCmd::Thaw { pod } => (Some(pod), FREEZE_ANNOTATION, None),
        FaultCmd::Node { state, .. } => {
            let fault =
                NodeFault::parse(state).with_context(|| format!("unknown node state {state:?}"))?;
            let value = match fault {
                NodeFault::None => None,
                NodeFault::NotReady => Some("NotReady".to_string()),
                NodeFault::Down => Some("Down".to_string()),
            };
            (None, FAULT_ANNOTATION, value)
        }
    };
    let patch = serde_json::json!({ "metadata": { "annotations": { key: value } } });
    match (kind_pod, &cmd) {
        (Some(pod), _) => {
            let (ns, name) = split_pod(pod)?;
            Api::<Pod>::namespaced(client, ns)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("annotating pod {pod}"))?;
        }
        (None, FaultCmd::Node { node, .. }) => {
            Api::<Node>::all(client)
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("annotating node {node}"))?;
        }
        _ => unreachable!("every fault names a pod or a node"),
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = client(args.kubeconfig.as_ref()).await?;
    let state_dir = if args.state_dir.is_absolute() {
        args.state_dir
    } else {
        std::env::current_dir()?.join(args.state_dir)
    };
    let mut config = AgentConfig::new(state_dir);
    config.nodes = args.nodes;
    config.zones = args.zones;
    config.node_prefix = args.node_prefix;
    config.programs = Programs {
        pd_server: args.pd_server,
        tikv_sim: args.tikv_sim,
        search_dirs: node_agent::image::default_search_dirs(args.bin_dir.as_deref()),
        test_images: args.test_images,
    };
    config.hosts_file = args.hosts_file;
    config.lock_dir = args.lock_dir;
    config.cluster_domain = args.cluster_domain;
    config.delete_nodes_on_shutdown = !args.keep_nodes;
    config.storage_class = !args.no_storage_class;
    let agent = Agent::start(client, config)
        .await
        .context("starting the node agent")?;
    eprintln!(
        "node-agent {} running nodes {:?}",
        agent.id(),
        agent.node_names()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("node-agent: shutting down");
    tokio::time::timeout(Duration::from_secs(60), agent.shutdown())
        .await
        .context("shutdown timed out")??;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Fault {
            kubeconfig,
            fault: f,
        }) => fault(kubeconfig.as_ref(), f).await,
        None => run(cli.run).await,
    }
}

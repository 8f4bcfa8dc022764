//! `kubectl-tikv`: run as `kubectl tikv ...` once it is on `PATH`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use k8s_openapi::jiff::Timestamp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubectl_tikv::{report, restart, status, view};

/// kubectl plugin for TiKV clusters run by the TiKV operator.
#[derive(Parser, Debug)]
#[command(name = "kubectl tikv", version)]
struct Args {
    /// Path of the kubeconfig (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (default: the context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// PD members and leader, stores, operations in progress and recent warnings of a cluster.
    Status {
        /// The Cluster's name.
        cluster: String,
        /// How many recent Warning Events to show.
        #[arg(long, default_value_t = 10)]
        events: usize,
    },
    /// Rolling restart of a group through the operator (leaders evicted first, PD's quorum
    /// kept): GROUP, tikvgroup/GROUP or pdgroup/GROUP.
    Restart {
        /// The group.
        group: String,
    },
    /// Support bundle (.tar.gz): the cluster's objects, Events, status, controller logs;
    /// Secrets redacted.
    Report {
        /// The Cluster's name.
        cluster: String,
        /// The bundle's path (default: tikv-report-NAMESPACE-CLUSTER-TIME.tar.gz).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Namespace of the operator's controllers (default: look in every namespace).
        #[arg(long)]
        operator_namespace: Option<String>,
        /// Lines of each controller log to keep.
        #[arg(long, default_value_t = 10_000)]
        log_lines: i64,
    },
}

async fn client(args: &Args) -> anyhow::Result<(kube::Client, String)> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        None => kube::Config::from_kubeconfig(&options)
            .await
            .context("loading the kubeconfig ($KUBECONFIG or ~/.kube/config)")?,
    };
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((kube::Client::try_from(config)?, ns))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (client, ns) = client(&args).await?;
    let now = Timestamp::now();
    match &args.command {
        Command::Status { cluster, events } => {
            let v = view::gather(&client, &ns, cluster).await?;
            print!("{}", status::render(&v, now, *events));
        }
        Command::Restart { group } => {
            let r = restart::restart(&client, &ns, group, now).await?;
            println!(
                "{} {ns}/{} restarts: the operator rolls it instance by instance (`kubectl tikv status {} -n {ns}` follows it)",
                r.kind.kind(),
                r.name,
                r.cluster
            );
            if r.paused {
                println!(
                    "note: Cluster {} is paused; the restart begins once it is resumed",
                    r.cluster
                );
            }
        }
        Command::Report {
            cluster,
            output,
            operator_namespace,
            log_lines,
        } => {
            let v = view::gather(&client, &ns, cluster).await?;
            let text = status::render(&v, now, usize::MAX);
            let bundle = report::collect(
                &client,
                &v,
                &text,
                operator_namespace.as_deref(),
                *log_lines,
                now,
            )
            .await;
            let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
            let prefix = format!("tikv-report-{ns}-{cluster}-{stamp}");
            let path = output
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{prefix}.tar.gz")));
            report::write(&bundle, &prefix, &path)?;
            println!(
                "wrote {} ({} files; {} could not be collected, see errors.txt)",
                path.display(),
                bundle.files.len(),
                bundle.errors.len()
            );
        }
    }
    Ok(())
}

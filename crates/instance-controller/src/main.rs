use clap::Parser;

/// Reconciles PD and TiKV objects of the TiKV operator.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: operator_runtime::app::CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let concurrency = args.common.concurrency;
    let namespace = args.common.namespace.clone();
    operator_runtime::app::run(
        instance_controller::NAME,
        args.common,
        instance_controller::CRDS,
        |client, metrics| instance_controller::run(client, metrics, concurrency, namespace),
    )
    .await?;
    Ok(())
}

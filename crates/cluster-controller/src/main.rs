#[tokio::main]
async fn main() -> anyhow::Result<()> {
    operator_runtime::app::main(
        cluster_controller::NAME,
        cluster_controller::CRDS,
        cluster_controller::run,
    )
    .await?;
    Ok(())
}

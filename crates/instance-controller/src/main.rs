#[tokio::main]
async fn main() -> anyhow::Result<()> {
    operator_runtime::app::main(
        instance_controller::NAME,
        instance_controller::CRDS,
        instance_controller::run,
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    operator_runtime::app::main(
        group_controller::NAME,
        group_controller::CRDS,
        group_controller::run,
    )
    .await?;
    Ok(())
}

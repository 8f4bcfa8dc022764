//! `tikv-sim`: see the library documentation for what it simulates and its flags.

use std::fs::OpenOptions;
use std::sync::Mutex;

use anyhow::Context;
use clap::Parser;
use tikv_sim::config::{Cli, Config};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // As TiKV does: a panic in any thread (the raftstore's above all) ends the process, so that
    // it is restarted and recovers from its data, rather than living on with a dead raftstore
    // that still answers PD's heartbeats.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(1);
    }));
    let cli = Cli::parse();
    let cfg = Config::from_cli(&cli)?;
    let filter = EnvFilter::try_new(&cfg.log_level).context("invalid --log-level")?;
    match &cfg.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .init();
        }
        None => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    tracing::info!(
        version = %cfg.version,
        addr = %cfg.advertise_addr,
        status_addr = %cfg.advertise_status_addr,
        data_dir = %cfg.data_dir.display(),
        pd = ?cfg.pd_endpoints,
        "starting tikv-sim"
    );
    // One thread for gRPC, PD and the network (the raftstore has its own): several stores
    // share a small machine.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tikv_sim::node::run(cfg))?;
    Ok(())
}

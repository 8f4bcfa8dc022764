//! Starts a test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//! with our CRDs) and keeps it up until Ctrl-C or SIGTERM, for poking at it by hand:
//!
//! ```text
//! cargo run -p testenv --bin testenv-up [--no-crds] [--no-controller-manager] [--no-scheduler]
//! kubectl --kubeconfig <printed path> get crds
//! ```
//!
//! It prints `key=value` lines (`kubeconfig`, `server`, `dir`, `startup_ms`, one `pid.NAME` per
//! server) and then `ready`. The crate's tests also use it to check that the servers die when
//! the process holding them is killed with SIGKILL.

use std::io::{IsTerminal, Write};

const USAGE: &str = "testenv-up [--no-crds] [--no-controller-manager] [--no-scheduler]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    // Logs go to stderr, so stdout keeps only the key=value lines. `RUST_LOG=testenv=debug`
    // shows the startup phases.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("testenv=info")),
        )
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Display, not Debug: the error carries the failing server's log lines.
            eprintln!("testenv-up: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = testenv::ControlPlaneOptions::default();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-crds" => options.install_crds = false,
            "--no-controller-manager" => options.with_controller_manager = false,
            "--no-scheduler" => options.with_scheduler = false,
            _ => return Err(format!("unknown argument {arg:?}; usage: {USAGE}").into()),
        }
    }
    let cp = testenv::ControlPlane::start(options).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "kubeconfig={}", cp.kubeconfig_path().display())?;
    writeln!(out, "server={}", cp.server_url())?;
    writeln!(out, "dir={}", cp.dir().display())?;
    writeln!(out, "startup_ms={}", cp.startup_time().as_millis())?;
    for (name, pid) in cp.server_pids() {
        writeln!(out, "pid.{name}={pid}")?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    // Dropping the control plane stops the servers and removes the directory.
    drop(cp);
    Ok(())
}

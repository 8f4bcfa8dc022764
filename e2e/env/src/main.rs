//! `tikv-env`: a local Kubernetes environment with real nodes (see the `e2e_env` library).
//!
//! ```text
//! tikv-env up   --state DIR [--workers 3] [--images DIR]    until SIGTERM or Ctrl-C
//! tikv-env run  --state DIR [--workers 3] [--images DIR] -- CMD ARGS...
//! tikv-env exec --state DIR -- CMD ARGS...                  inside a running one
//! tikv-env down --state DIR                                 after a crash; idempotent
//! ```
//!
//! `up` prints `key=value` lines (`kubeconfig` for the host, `state`, `startup_ms`) and then
//! `ready`. `run` and `exec` run CMD inside the cluster network: the control-plane host's network
//! namespace, with cluster DNS as its resolver (`/etc/resolv.conf` is bind-mounted in a mount
//! namespace of its own), `KUBECONFIG` and `TIKV_ENV_STATE` set. An `up` or `run` that dies,
//! even by SIGKILL, is cleaned up by a watchdog that runs `tikv-env down`.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use e2e_env::state::{STATE_ENV, State};
use e2e_env::{Environment, Error, forward, net, plan, teardown};
use testenv::process::Server;

/// Exit status of `up` or `run` when an environment already runs in the directory.
const ALREADY_RUNNING: u8 = 3;

/// Runs the command given as `$2...` after bind-mounting `$1` over `/etc/resolv.conf` (in the
/// mount namespace `unshare` made for it).
const WITH_CLUSTER_DNS: &str = r#"mount --bind "$1" /etc/resolv.conf && shift && exec "$@""#;

/// The watchdog of an environment: once its stdin closes without a `done` line (the owner died),
/// it tears the environment down with the command it was given.
const LIFELINE: &str = r#"trap '' INT HUP TERM
while read -r line; do [ "$line" = done ] && exit 0; done
exec "$@"
"#;

#[derive(Parser)]
#[command(
    about = "A local Kubernetes environment with real nodes (kubelet, containerd, CNI, kube-proxy, CoreDNS)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start an environment and keep it running until SIGTERM or Ctrl-C.
    Up {
        #[command(flatten)]
        start: StartArgs,
    },
    /// Start an environment, run a command inside its cluster network, tear the environment
    /// down; exits with the command's status.
    Run {
        #[command(flatten)]
        start: StartArgs,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// Run a command inside a running environment's cluster network.
    Exec {
        /// The environment's directory.
        #[arg(long)]
        state: PathBuf,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// Tear an environment down from its directory (idempotent).
    Down {
        /// The environment's directory.
        #[arg(long)]
        state: PathBuf,
        /// Keep `logs/` and the nodes' logs.
        #[arg(long)]
        keep_logs: bool,
    },
}

#[derive(clap::Args)]
struct StartArgs {
    /// The environment's directory: state.json, certificates, logs, the nodes' directories.
    #[arg(long)]
    state: PathBuf,
    /// How many worker nodes (zones zone-a, zone-b, zone-c, zone-a, ...).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// The images to import (images/build.sh's output); default: `images/` next to this binary.
    #[arg(long, env = "TIKV_ENV_IMAGES")]
    images: Option<PathBuf>,
    /// Keep the logs when tearing down.
    #[arg(long)]
    keep_logs: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("e2e_env=info,tikv_env=info,testenv=info")
            }),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Up { start } => start_env(start, None),
        Cmd::Run { start, cmd } => start_env(start, Some(cmd)),
        Cmd::Exec { state, cmd } => exec(&state, &cmd),
        Cmd::Down { state, keep_logs } => down(&state, keep_logs),
    };
    match result {
        Ok(code) => code,
        Err(Error::AlreadyRunning { dir, pid }) => {
            eprintln!("tikv-env: already running in {} (pid {pid})", dir.display());
            ExitCode::from(ALREADY_RUNNING)
        }
        Err(e) => {
            eprintln!("tikv-env: {e}");
            ExitCode::FAILURE
        }
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    std::path::absolute(dir).map_err(Error::io(format!("resolving {}", dir.display())))
}

/// Whether the owner recorded in a state file is a live `tikv-env` other than this process.
fn owner_alive(state: &State) -> bool {
    state.owner_pid != std::process::id()
        && std::fs::read(format!("/proc/{}/cmdline", state.owner_pid))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("tikv-env"))
}

fn start_env(args: StartArgs, cmd: Option<Vec<OsString>>) -> Result<ExitCode, Error> {
    let dir = absolute(&args.state)?;
    if let Ok(old) = State::load(&dir) {
        if owner_alive(&old) {
            return Err(Error::AlreadyRunning {
                dir,
                pid: old.owner_pid,
            });
        }
        // A previous environment here died without cleaning up.
        teardown::check_gone(&teardown::down(&old, args.keep_logs))?;
    }
    let images_dir = match args.images {
        Some(d) => d,
        None => std::env::current_exe()
            .map_err(Error::io("finding tikv-env"))?
            .with_file_name("images"),
    };
    let images = e2e_env::image_list(&images_dir)?;
    let state = State::new(&dir, plan::Plan::new(&plan::id_for(&dir), args.workers));
    state.save()?;
    let mut lifeline = Lifeline::spawn(&dir, args.keep_logs)?;
    // Bound here, in the host's network namespace, before entering the environment's.
    let listener = match cmd {
        None => Some(
            std::net::TcpListener::bind(("127.0.0.1", 0))
                .map_err(Error::io("binding the API server forward on 127.0.0.1"))?,
        ),
        Some(_) => None,
    };
    if let Err(e) = net::create(&state.plan) {
        lifeline.done();
        let _ = teardown::down(&state, args.keep_logs);
        return Err(e);
    }
    enter_netns(&state.plan.control_plane().netns)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("building the tokio runtime"))?;
    let result = runtime.block_on(async {
        let env = match Environment::start(state.clone(), &images).await {
            Ok(env) => env,
            Err(e) => {
                let _ = teardown::down(&state, true);
                return Err(e);
            }
        };
        let outcome = match cmd {
            None => serve(&env, listener.expect("bound for up")).await,
            Some(cmd) => run_inside(&env.state, &cmd).await,
        };
        let report = tokio::task::spawn_blocking(move || env.stop(args.keep_logs))
            .await
            .map_err(|e| Error::Panicked(format!("teardown ({e})")))?;
        eprintln!(
            "tikv-env: down ({} pods removed through CRI, {} processes killed)",
            report.pods_removed, report.killed
        );
        teardown::check_gone(&report)?;
        outcome
    });
    lifeline.done();
    result
}

/// `up`: the forward for the host, the host's kubeconfig, the `key=value` lines, then wait for
/// SIGTERM or Ctrl-C.
async fn serve(env: &Environment, listener: std::net::TcpListener) -> Result<ExitCode, Error> {
    let port = listener
        .local_addr()
        .map_err(Error::io("reading the forward's address"))?
        .port();
    let api = env
        .state
        .api_server
        .as_deref()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| Error::NotFound("the API server's port".into()))?;
    let to = std::net::SocketAddr::from((plan::CONTROL_PLANE_IP, api));
    tokio::spawn(async move {
        if let Err(e) = forward::serve(listener, to).await {
            tracing::error!(error = %e, "the API server forward stopped");
        }
    });
    let host_url = format!("https://127.0.0.1:{port}");
    env.write_admin_kubeconfig(&env.state.host_kubeconfig(), &host_url)?;
    let mut state = env.state.clone();
    state.host_api_server = Some(host_url);
    state.save()?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "kubeconfig={}", env.state.host_kubeconfig().display());
    let _ = writeln!(out, "state={}", env.state.dir.display());
    let _ = writeln!(out, "startup_ms={}", env.startup.as_millis());
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    wait_for_signal().await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(Error::io("handling SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::io("handling SIGINT"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// `unshare ARGS...`: `cmd` in a mount namespace of its own with the environment's cluster DNS
/// as its resolver ([`WITH_CLUSTER_DNS`]).
fn with_cluster_dns(state: &State, cmd: &[OsString]) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--mount",
        "--propagation=private",
        "sh",
        "-c",
        WITH_CLUSTER_DNS,
        "sh",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(state.resolv_conf().into());
    args.extend(cmd.iter().cloned());
    args
}

/// `run`: the command inside the cluster network, under a watchdog (it dies with us); its
/// status, or 143 when we are told to stop first.
async fn run_inside(state: &State, cmd: &[OsString]) -> Result<ExitCode, Error> {
    let mut child = Server::spawn_inheriting(
        "command",
        Path::new("unshare"),
        with_cluster_dns(state, cmd),
        &[
            (STATE_ENV, state.dir.as_os_str()),
            ("KUBECONFIG", state.kubeconfig().as_os_str()),
        ],
        &state.log_dir(),
    )?;
    let stop = wait_for_signal();
    tokio::pin!(stop);
    loop {
        if let Some(status) = child.exit_status() {
            return Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ));
        }
        tokio::select! {
            _ = &mut stop => {
                child.stop();
                return Ok(ExitCode::from(143));
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// `exec`: replaces this process with the command inside the running environment.
fn exec(dir: &Path, cmd: &[OsString]) -> Result<ExitCode, Error> {
    let dir =
        std::path::absolute(dir).map_err(Error::io(format!("resolving {}", dir.display())))?;
    let state = State::load(&dir)?;
    if !state.ready || !owner_alive(&state) {
        return Err(Error::NotFound(format!(
            "no running environment in {} (start one with `tikv-env up`)",
            dir.display()
        )));
    }
    let err = Command::new("nsenter")
        .arg(format!(
            "--net=/run/netns/{}",
            state.plan.control_plane().netns
        ))
        .arg("unshare")
        .args(with_cluster_dns(&state, cmd))
        .env(STATE_ENV, &dir)
        .env("KUBECONFIG", state.kubeconfig())
        .exec();
    Err(Error::Io {
        context: "running nsenter".into(),
        source: err,
    })
}

fn down(dir: &Path, keep_logs: bool) -> Result<ExitCode, Error> {
    let dir =
        std::path::absolute(dir).map_err(Error::io(format!("resolving {}", dir.display())))?;
    let state = match State::load(&dir) {
        Ok(s) => s,
        Err(_) => {
            eprintln!("tikv-env: nothing to tear down in {}", dir.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    if owner_alive(&state) {
        // Its owner tears down on SIGTERM; doing it under its feet would race it.
        return Err(Error::AlreadyRunning {
            dir,
            pid: state.owner_pid,
        });
    }
    let report = teardown::down(&state, keep_logs);
    eprintln!(
        "tikv-env: down ({} pods removed through CRI, {} processes killed)",
        report.pods_removed, report.killed
    );
    teardown::check_gone(&report)?;
    Ok(ExitCode::SUCCESS)
}

/// Enters a network namespace: this thread and every thread and process started from it after.
/// Called while the process has one thread (before the runtime), so the whole process is in it.
fn enter_netns(name: &str) -> Result<(), Error> {
    let path = Path::new("/run/netns").join(name);
    let file =
        std::fs::File::open(&path).map_err(Error::io(format!("opening {}", path.display())))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::Io {
        context: format!("entering network namespace {name}"),
        source: std::io::Error::from(e),
    })
}

/// The environment's watchdog ([`LIFELINE`]), started in the host's namespaces.
struct Lifeline {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Lifeline {
    fn spawn(dir: &Path, keep_logs: bool) -> Result<Lifeline, Error> {
        let exe = std::env::current_exe().map_err(Error::io("finding tikv-env"))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(LIFELINE)
            .arg("sh")
            .arg(exe)
            .arg("down")
            .arg("--state")
            .arg(dir);
        if keep_logs {
            cmd.arg("--keep-logs");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(Error::io("starting the environment's watchdog (sh)"))?;
        let stdin = child.stdin.take();
        Ok(Lifeline { child, stdin })
    }

    /// We tore down ourselves: the watchdog exits without doing anything.
    fn done(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

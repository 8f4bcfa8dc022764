//! A real PD for tests: 1 or 3 `pd-server` members on loopback, plus simulated TiKV stores
//! (`tikv-sim`) that can be killed, frozen and restarted.
//!
//! ```no_run
//! # async fn example() -> Result<(), testenv::pd::Error> {
//! use testenv::pd::{PdCluster, PdOptions, StoreOptions};
//! let mut pd = PdCluster::start(PdOptions::default()).await?;
//! for _ in 0..3 {
//!     pd.start_store(StoreOptions::default()).await?;
//! }
//! let endpoints = pd.endpoints(); // for pdclient::PdClient::new
//! pd.store_mut(0).kill();
//! pd.store_mut(0).restart().await?; // same data dir, same ports, same store ID
//! # let _ = endpoints; Ok(()) }
//! ```
//!
//! # Configuration
//!
//! PD gets [`TEST_PD_CONFIG`] (fast patrol, high schedule and store limits, a 30 s
//! `max-store-down-time`) followed by [`PdOptions::config`], so that replication and balancing
//! take seconds. Stores get
//! [`TEST_SIM_CONFIG`] (100 ms raft ticks, 1 s store heartbeats, peers down after 5 s, 1 s split
//! checks, 5 s graceful shutdown) followed by
//! [`StoreOptions::config`]. Later TOML keys do not override earlier ones in one file, so put
//! only keys that the defaults do not set into the extra config, or replace the defaults with
//! [`PdOptions::replace_default_config`].
//!
//! # TLS
//!
//! With [`PdOptions::tls`] every member serves and dials with mutual TLS (`--cacert`, `--cert`,
//! `--key`, `https://` URLs) and every store gets TiKV's `[security]` section: each member,
//! store and the test client has a directory of its own under [`PdCluster::pki`] (`pd-0`,
//! `tikv-0`, `client`), issued by one test CA, so a test can renew or re-issue any of them.
//!
//! # Binaries
//!
//! `pd-server` comes from [`crate::bin_path`] (built by `e2e/tools/build.sh pd`). `tikv-sim`
//! is, in order: [`StoreOptions::binary`]; `$TIKV_SIM_BIN`; `tikv-sim` next to the test binary's
//! directory (`target/<profile>/tikv-sim`, which exists when the tikv-sim package was built). Tests
//! inside `crates/tikv-sim` pass `env!("CARGO_BIN_EXE_tikv-sim")`, which cargo builds for them.
//!
//! # Processes
//!
//! Every process runs under the [`crate::process`] watchdog, so none outlives the test process,
//! however it ends.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::{Janitor, LOG_TAIL_LINES, Server, free_ports, log_tail};

/// PD settings for tests; see the module docs.
pub const TEST_PD_CONFIG: &str = r#"
[schedule]
patrol-region-interval = "10ms"
max-store-down-time = "30s"
# The default add-peer/remove-peer limit of every store (PD's default is 15 per minute, which
# makes replication take minutes). Deprecated, but still how PD sets the default at startup;
# `POST /stores/limit` races with PD's own writes of the store-limit map and can be lost.
store-balance-rate = 10000.0
leader-schedule-limit = 64
region-schedule-limit = 512
replica-schedule-limit = 512
max-pending-peer-count = 1024
max-snapshot-count = 1024

[replication]
max-replicas = 3
"#;

/// tikv-sim settings for tests; see the module docs.
pub const TEST_SIM_CONFIG: &str = r#"
[raftstore]
raft-base-tick-interval = "100ms"
raft-heartbeat-ticks = 2
raft-election-timeout-ticks = 10
pd-heartbeat-tick-interval = "5s"
pd-store-heartbeat-tick-interval = "1s"
max-peer-down-duration = "5s"
max-leader-missing-duration = "10s"
split-region-check-tick-interval = "1s"

[server]
graceful-shutdown-timeout = "5s"
"#;

/// Environment variable naming the tikv-sim binary.
pub const TIKV_SIM_BIN_ENV: &str = "TIKV_SIM_BIN";

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(100);

/// Attempts at starting PD when another process takes a chosen port.
const PORT_ATTEMPTS: u32 = 3;

/// Errors of the PD harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Finding pd-server, spawning a process, or a process dying during startup.
    #[error(transparent)]
    Env(#[from] crate::Error),
    /// The tikv-sim binary was not found.
    #[error(
        "tikv-sim binary not found (tried: {}). Build it with `cargo build -p tikv-sim`, or set \
         {TIKV_SIM_BIN_ENV}; tests in crates/tikv-sim pass env!(\"CARGO_BIN_EXE_tikv-sim\")",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    SimMissing {
        /// Paths looked at.
        tried: Vec<PathBuf>,
    },
    /// No member or store of that name or index.
    #[error("no {0}")]
    Unknown(String),
    /// A signal could not be sent.
    #[error("cannot send {signal} to {name} (pid {pid:?})")]
    Signal {
        /// The signal, e.g. `STOP`.
        signal: &'static str,
        /// The process.
        name: String,
        /// Its pid, if known.
        pid: Option<u32>,
    },
}

/// How to start PD.
#[derive(Debug, Clone)]
pub struct PdOptions {
    /// Number of members: 1 or 3 (any number works; an even one makes little sense).
    pub members: usize,
    /// TOML appended to [`TEST_PD_CONFIG`].
    pub config: String,
    /// Use only [`PdOptions::config`], without [`TEST_PD_CONFIG`].
    pub replace_default_config: bool,
    /// Upper bound for PD to elect a leader, and for a store to come up.
    pub startup_timeout: Duration,
    /// Mutual TLS between every member, store and client (see the module docs).
    pub tls: bool,
}

impl Default for PdOptions {
    fn default() -> Self {
        PdOptions {
            members: 1,
            config: String::new(),
            replace_default_config: false,
            startup_timeout: Duration::from_secs(60),
            tls: false,
        }
    }
}

/// How to start a simulated store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The tikv-sim binary (see the module docs for the lookup when `None`).
    pub binary: Option<PathBuf>,
    /// Store labels (`--labels`).
    pub labels: BTreeMap<String, String>,
    /// Version reported to PD (`--sim-version`).
    pub version: String,
    /// Regions of a bootstrapping store (`--sim-initial-regions`).
    pub initial_regions: u32,
    /// TOML appended to [`TEST_SIM_CONFIG`].
    pub config: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            binary: None,
            labels: BTreeMap::new(),
            version: "8.5.0".into(),
            initial_regions: 48,
            config: String::new(),
        }
    }
}

/// One pd-server member.
#[derive(Debug)]
pub struct PdMember {
    name: String,
    client_url: String,
    /// With TLS: the directory of the certificate the harness asks it with.
    tls_client: Option<PathBuf>,
    args: Vec<String>,
    program: PathBuf,
    dir: PathBuf,
    server: Option<Server>,
    generation: u32,
}

/// One simulated TiKV store.
#[derive(Debug)]
pub struct SimStore {
    index: usize,
    id: u64,
    addr: String,
    status_addr: String,
    data_dir: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    server: Option<Server>,
    generation: u32,
    timeout: Duration,
    tls_client: Option<PathBuf>,
}

/// A running PD cluster and its stores. Dropping it kills every process and removes its
/// directory; when the test is panicking, the logs are first copied to a directory that is kept
/// (its path is printed).
#[derive(Debug)]
pub struct PdCluster {
    // Stores first: they drop (die) before the members, and both before the directory goes.
    stores: Vec<SimStore>,
    members: Vec<PdMember>,
    dir: PathBuf,
    janitor: Option<Janitor>,
    options: PdOptions,
    startup_time: Duration,
    pki: Option<crate::pki::Pki>,
}

impl PdCluster {
    /// Starts the members on free loopback ports in a new temporary directory and waits until
    /// every member answers `GET /pd/api/v1/leader` (the cluster has a leader).
    pub async fn start(options: PdOptions) -> Result<PdCluster, Error> {
        let began = Instant::now();
        let program = crate::bin_path("pd-server")?;
        let dir = create_temp_dir()?;
        let pki = match options.tls {
            true => {
                let pki = crate::pki::Pki::new(&dir.join("tls"))?;
                pki.issue("client", &pki.ca, pki.ca.pem())?;
                Some(pki)
            }
            false => None,
        };
        let mut cluster = PdCluster {
            stores: Vec::new(),
            members: Vec::new(),
            janitor: Some(Janitor::spawn(&dir)?),
            dir,
            options: options.clone(),
            startup_time: Duration::ZERO,
            pki,
        };
        let config = cluster.dir.join("pd.toml");
        let text = if options.replace_default_config {
            options.config.clone()
        } else {
            format!("{TEST_PD_CONFIG}\n{}", options.config)
        };
        std::fs::write(&config, text)
            .map_err(crate::Error::io(format!("writing {}", config.display())))?;

        let mut attempt = 1;
        loop {
            match cluster.start_members(&program, &config).await {
                Ok(()) => break,
                Err(e) if is_port_conflict(&e) && attempt < PORT_ATTEMPTS => {
                    tracing::warn!(error = %e, "a port was taken; starting PD again with other ports");
                    cluster.members.clear();
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        cluster.startup_time = began.elapsed();
        tracing::info!(startup_time = ?cluster.startup_time, dir = %cluster.dir.display(), "PD is up");
        Ok(cluster)
    }

    async fn start_members(&mut self, program: &Path, config: &Path) -> Result<(), Error> {
        let n = self.options.members.max(1);
        let ports = free_ports(2 * n)?;
        let names: Vec<String> = (0..n).map(|i| format!("pd-{i}")).collect();
        let scheme = self.scheme();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}={scheme}://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        for (i, name) in names.iter().enumerate() {
            let client_url = format!("{scheme}://127.0.0.1:{}", ports[2 * i]);
            let data_dir = self.dir.join(format!("{name}-data"));
            let mut args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--client-urls={client_url}"),
                format!("--peer-urls={scheme}://127.0.0.1:{}", ports[2 * i + 1]),
                format!("--initial-cluster={initial_cluster}"),
                format!("--config={}", config.display()),
            ];
            if let Some(pki) = &self.pki {
                pki.issue(name, &pki.ca, pki.ca.pem())?;
                let dir = pki.dir(name);
                args.extend([
                    format!("--cacert={}", dir.join(tls::CA).display()),
                    format!("--cert={}", dir.join(tls::CERT).display()),
                    format!("--key={}", dir.join(tls::KEY).display()),
                ]);
            }
            let mut member = PdMember {
                name: name.clone(),
                client_url,
                tls_client: self.tls_client(),
                args,
                program: program.to_path_buf(),
                dir: self.dir.clone(),
                server: None,
                generation: 0,
            };
            member.spawn()?;
            self.members.push(member);
        }
        let timeout = self.options.startup_timeout;
        for member in &mut self.members {
            member.wait_ready(timeout).await?;
        }
        Ok(())
    }

    /// `https` with TLS, else `http`.
    fn scheme(&self) -> &'static str {
        if self.pki.is_some() { "https" } else { "http" }
    }

    /// The directory of the harness's client certificate, with TLS.
    fn tls_client(&self) -> Option<PathBuf> {
        self.pki.as_ref().map(|p| p.dir("client"))
    }

    /// The certificates, when PD runs with TLS ([`PdOptions::tls`]).
    pub fn pki(&self) -> Option<&crate::pki::Pki> {
        self.pki.as_ref()
    }

    /// Client URLs of all members (`http://127.0.0.1:port`, `https://` with TLS), stopped ones
    /// included: a client configured with all of them must fail over by itself.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// [`PdCluster::endpoints`] without the scheme (`127.0.0.1:port`): what TiKV's clients
    /// (client-go, tikv-client) take as PD addresses.
    pub fn addresses(&self) -> Vec<String> {
        self.endpoints()
            .iter()
            .map(|e| e.trim_start_matches("http://").to_string())
            .collect()
    }

    /// The members.
    pub fn members(&self) -> &[PdMember] {
        &self.members
    }

    /// The member called `name` (`pd-0`, `pd-1`, …).
    pub fn member_mut(&mut self, name: &str) -> Result<&mut PdMember, Error> {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .ok_or_else(|| Error::Unknown(format!("PD member {name}")))
    }

    /// The temporary directory (PD data, store data dirs, every process's log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long [`PdCluster::start`] took.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// Starts a tikv-sim store against all members and waits until it serves `/metrics` (which
    /// it does once it is registered with PD). The first store bootstraps the cluster. Returns
    /// the store's index.
    pub async fn start_store(&mut self, options: StoreOptions) -> Result<usize, Error> {
        let program = find_tikv_sim(options.binary.as_deref())?;
        let index = self.stores.len();
        let data_dir = self.dir.join(format!("tikv-{index}-data"));
        std::fs::create_dir_all(&data_dir)
            .map_err(crate::Error::io(format!("creating {}", data_dir.display())))?;
        let config = self.dir.join(format!("tikv-{index}.toml"));
        let mut text = format!("{TEST_SIM_CONFIG}\n{}", options.config);
        if let Some(pki) = &self.pki {
            let name = format!("tikv-{index}");
            pki.issue(&name, &pki.ca, pki.ca.pem())?;
            let dir = pki.dir(&name);
            text.push_str(&format!(
                "\n[security]\nca-path = {:?}\ncert-path = {:?}\nkey-path = {:?}\n",
                dir.join(tls::CA),
                dir.join(tls::CERT),
                dir.join(tls::KEY)
            ));
        }
        std::fs::write(&config, text)
            .map_err(crate::Error::io(format!("writing {}", config.display())))?;
        let mut attempt = 1;
        loop {
            let ports = free_ports(2)?;
            let addr = format!("127.0.0.1:{}", ports[0]);
            let status_addr = format!("127.0.0.1:{}", ports[1]);
            let mut args = vec![
                format!("--pd={}", self.endpoints().join(",")),
                format!("--addr={addr}"),
                format!("--status-addr={status_addr}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--config={}", config.display()),
                format!("--sim-version={}", options.version),
                format!("--sim-initial-regions={}", options.initial_regions),
            ];
            if !options.labels.is_empty() {
                let labels: Vec<String> = options
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                args.push(format!("--labels={}", labels.join(",")));
            }
            let mut store = SimStore {
                index,
                id: 0,
                addr,
                status_addr,
                data_dir: data_dir.clone(),
                program: program.to_path_buf(),
                args,
                dir: self.dir.clone(),
                server: None,
                generation: 0,
                timeout: self.options.startup_timeout,
                tls_client: self.tls_client(),
            };
            match store.start_and_wait().await {
                Ok(()) => {
                    self.stores.push(store);
                    break;
                }
                Err(e) if is_port_conflict(&e) && attempt < PORT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(index)
    }

    /// The stores, in start order.
    pub fn stores(&self) -> &[SimStore] {
        &self.stores
    }

    /// The store started `index`-th.
    pub fn store(&self, index: usize) -> &SimStore {
        &self.stores[index]
    }

    /// The store started `index`-th, to kill, freeze or restart it.
    pub fn store_mut(&mut self, index: usize) -> &mut SimStore {
        &mut self.stores[index]
    }
}

impl Drop for PdCluster {
    fn drop(&mut self) {
        self.stores.clear();
        self.members.clear();
        if std::thread::panicking() {
            keep_logs(&self.dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        drop(self.janitor.take());
    }
}

impl PdMember {
    /// Member name (`pd-0`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Client URL (`http://127.0.0.1:port`).
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    fn address(&self) -> &str {
        self.client_url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
    }

    /// The current log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .join(format!("{}.{}.log", self.name, self.generation))
    }

    /// The pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(Server::pid)
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.server
            .as_mut()
            .is_some_and(|s| s.exit_status().is_none())
    }

    fn spawn(&mut self) -> Result<(), Error> {
        self.generation += 1;
        let name = format!("{}.{}", self.name, self.generation);
        self.server = Some(Server::spawn(&name, &self.program, &self.args, &self.dir)?);
        Ok(())
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let addr = self.address().to_string();
        let tls = self.tls_client.clone();
        let server = self
            .server
            .as_mut()
            .ok_or_else(|| Error::Unknown(format!("running {}", self.name)))?;
        wait_until(server, timeout, || async {
            match request(
                &addr,
                tls.as_deref(),
                "GET",
                "/pd/api/v1/leader",
                None,
                Duration::from_secs(2),
            )
            .await
            {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("GET /pd/api/v1/leader: {status} {body}")),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Kills the member (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    /// Starts a killed member again with its data directory and waits until it sees a leader.
    pub async fn restart(&mut self, timeout: Duration) -> Result<(), Error> {
        self.kill();
        self.spawn()?;
        self.wait_ready(timeout).await
    }
}

impl SimStore {
    /// Index in [`PdCluster::stores`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// The store ID PD allocated (read from the store's `/metrics` when it came up).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The store address (`--addr`, as registered with PD).
    pub fn address(&self) -> &str {
        &self.addr
    }

    /// The status address (`/status`, `/metrics`).
    pub fn status_address(&self) -> &str {
        &self.status_addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The current log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir
            .join(format!("tikv-{}.{}.log", self.index, self.generation))
    }

    /// The pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(Server::pid)
    }

    /// Whether the process runs (a frozen process runs).
    pub fn is_running(&mut self) -> bool {
        self.server
            .as_mut()
            .is_some_and(|s| s.exit_status().is_none())
    }

    /// The exit status once the process has exited by itself (e.g. after PD made it a
    /// tombstone); `None` while it runs or after [`SimStore::kill`].
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.server.as_mut().and_then(|s| s.exit_status())
    }

    async fn start_and_wait(&mut self) -> Result<(), Error> {
        self.generation += 1;
        let name = format!("tikv-{}.{}", self.index, self.generation);
        self.server = Some(Server::spawn(&name, &self.program, &self.args, &self.dir)?);
        let status_addr = self.status_addr.clone();
        let tls = self.tls_client.clone();
        let server = self.server.as_mut().expect("just spawned");
        let metrics = wait_until(server, self.timeout, || async {
            match request(
                &status_addr,
                tls.as_deref(),
                "GET",
                "/metrics",
                None,
                Duration::from_secs(2),
            )
            .await
            {
                Ok((200, body)) => Ok(body),
                Ok((status, body)) => Err(format!("GET /metrics: {status} {body}")),
                Err(e) => Err(e),
            }
        })
        .await?;
        let id = store_id_from_metrics(&metrics).ok_or_else(|| {
            Error::Env(crate::Error::NotReady {
                server: name.clone(),
                timeout: self.timeout,
                last_error: "no tikv_sim_store_info in /metrics".into(),
                log: self.log_path(),
                tail: log_tail(&self.log_path(), LOG_TAIL_LINES),
            })
        })?;
        self.id = id;
        Ok(())
    }

    /// Kills the store (SIGKILL): it stops heartbeating at once, as a crashed TiKV.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    /// Stops the store with SIGTERM and waits (up to 10 s) for it to exit.
    pub fn terminate(&mut self) -> Result<Option<ExitStatus>, Error> {
        self.signal("TERM")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.exit_status() {
                self.server = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the store (SIGSTOP): its process and sockets stay, but it answers nothing.
    pub fn freeze(&self) -> Result<(), Error> {
        self.signal("STOP")
    }

    /// Resumes a frozen store (SIGCONT).
    pub fn thaw(&self) -> Result<(), Error> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &'static str) -> Result<(), Error> {
        let pid = self.pid();
        let err = || Error::Signal {
            signal,
            name: format!("tikv-{}", self.index),
            pid,
        };
        let pid = pid.ok_or_else(err)?;
        let ok = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        if ok { Ok(()) } else { Err(err()) }
    }

    /// Starts the store again (after [`SimStore::kill`], [`SimStore::terminate`] or its own
    /// exit) with the same data directory and addresses, and waits until it is up. Its store
    /// ID is checked to be the same.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        let before = self.id;
        self.start_and_wait().await?;
        if before != 0 && before != self.id {
            return Err(Error::Env(crate::Error::NotReady {
                server: format!("tikv-{}", self.index),
                timeout: Duration::ZERO,
                last_error: format!("came back as store {} instead of {before}", self.id),
                log: self.log_path(),
                tail: log_tail(&self.log_path(), LOG_TAIL_LINES),
            }));
        }
        Ok(())
    }
}

/// A process failed to bind a port another process took after we chose it. tikv-sim says
/// "Address already in use" (Rust's capitalisation), pd-server "address already in use".
fn is_port_conflict(e: &Error) -> bool {
    match e {
        Error::Env(
            crate::Error::ServerExited { tail, .. } | crate::Error::NotReady { tail, .. },
        ) => tail.to_ascii_lowercase().contains("address already in use"),
        _ => false,
    }
}

fn store_id_from_metrics(metrics: &str) -> Option<u64> {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("tikv_sim_store_info{"))?;
    let rest = &line[line.find("store_id=\"")? + "store_id=\"".len()..];
    rest[..rest.find('"')?].parse().ok()
}

/// The tikv-sim binary: `explicit`, else `$TIKV_SIM_BIN`, else `target/<profile>/tikv-sim` next
/// to the running test binary (`target/<profile>/deps/…`). A path that was asked for (the
/// first two) must exist: silently running another binary would test the wrong thing.
pub fn find_tikv_sim(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let asked = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(TIKV_SIM_BIN_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let path = match asked {
        Some(path) => path,
        None => {
            let sibling = std::env::current_exe().ok().and_then(|exe| {
                let dir = exe.parent()?;
                let profile_dir = if dir.ends_with("deps") {
                    dir.parent()?
                } else {
                    dir
                };
                Some(profile_dir.join("tikv-sim"))
            });
            sibling.ok_or(Error::SimMissing { tried: Vec::new() })?
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::SimMissing { tried: vec![path] })
    }
}

/// Polls `check` until it succeeds, the server exits, or `timeout` passes.
async fn wait_until<T, F, Fut>(
    server: &mut Server,
    timeout: Duration,
    mut check: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        server.ensure_running()?;
        let last_error = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Error::Env(crate::Error::NotReady {
                server: server.name().to_string(),
                timeout,
                last_error,
                log: server.log_path().to_path_buf(),
                tail: server.log_tail(LOG_TAIL_LINES),
            }));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A minimal HTTP/1.0 exchange (the harness must not depend on the client under test).
/// Returns the status code and body.
pub async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    request(addr, None, method, path, body, timeout).await
}

/// [`http_request`], over TLS with the certificate in `tls` (a directory of cert-manager's
/// layout) when given. The server name is the host of `addr`.
pub async fn request(
    addr: &str,
    tls: Option<&Path>,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut stream: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(dir) => {
                let material = tls::Paths::in_dir(dir).read().map_err(|e| e.to_string())?;
                let parsed = material.parse().map_err(|e| e.to_string())?;
                let config = tls::config::client(&parsed, &[]).map_err(|e| e.to_string())?;
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
                let name =
                    rustls_pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                Box::new(tls)
            }
        };
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or("malformed HTTP response")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                format!(
                    "malformed status line: {}",
                    head.lines().next().unwrap_or("")
                )
            })?;
        Ok((status, body.to_string()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

/// A plain or TLS stream.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Copies the `*.log` files of `dir` to a new directory outside the janitor's reach, for the
/// person reading a failed test.
fn keep_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let Some(name) = dir.file_name() else { return };
    let keep = std::env::temp_dir().join(format!("{}-logs", name.to_string_lossy()));
    if std::fs::create_dir_all(&keep).is_err() {
        return;
    }
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log")
            && let Some(file) = path.file_name()
        {
            let _ = std::fs::copy(&path, keep.join(file));
        }
    }
    eprintln!(
        "testenv::pd: PD and tikv-sim logs kept in {}",
        keep.display()
    );
}

fn create_temp_dir() -> Result<PathBuf, Error> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "testenv-pd-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(crate::Error::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_id_is_read_from_metrics() {
        let m = "# TYPE x gauge\ntikv_sim_store_info{store_id=\"42\",version=\"8.5.0\"} 1\n";
        assert_eq!(store_id_from_metrics(m), Some(42));
        assert_eq!(store_id_from_metrics("nothing"), None);
    }

    #[test]
    fn a_missing_tikv_sim_names_what_was_tried() {
        let err = find_tikv_sim(Some(Path::new("/nonexistent/tikv-sim"))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/tikv-sim") && msg.contains("cargo build -p tikv-sim"),
            "{msg}"
        );
    }
}

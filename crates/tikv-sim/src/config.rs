//! Command line and configuration file: tikv-server's flags, the few TiKV config keys the
//! simulation honours, and the simulator's own settings.
//!
//! As in tikv-server, a flag wins over the same setting in `--config`, which wins over the
//! default. Unknown keys in the config file are ignored, since the operator renders full TiKV
//! configs and the simulator only needs a handful of them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
    /// A setting has a value of the wrong shape.
    #[error("invalid value for {key}: {reason}")]
    Invalid {
        /// Flag or config key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A required setting is missing.
    #[error("{0} is required (flag or config file)")]
    Missing(&'static str),
}

/// tikv-server's command line, plus `--sim-*` options for the simulation.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tikv-sim",
    version,
    about = "A simulated TiKV store: registers with a real PD, heartbeats, and moves leaders and \
             replicas when PD tells it to"
)]
pub struct Cli {
    /// PD endpoints, comma separated (`host:port`, or `http://host:port`; `https://host:port`
    /// with `[security]`).
    #[arg(
        long = "pd-endpoints",
        visible_alias = "pd",
        alias = "pd-endpoint",
        value_delimiter = ','
    )]
    pub pd: Vec<String>,

    /// Address to listen on for other stores' raft traffic.
    #[arg(short = 'A', long)]
    pub addr: Option<String>,

    /// Address other stores and PD should use to reach `--addr`.
    #[arg(long)]
    pub advertise_addr: Option<String>,

    /// Address of the HTTP status server (`/status`, `/metrics`).
    #[arg(long)]
    pub status_addr: Option<String>,

    /// Status address to advertise to PD.
    #[arg(long)]
    pub advertise_status_addr: Option<String>,

    /// Directory that keeps the store's identity and its region replicas.
    #[arg(short = 's', long, visible_alias = "store")]
    pub data_dir: Option<PathBuf>,

    /// Store labels, e.g. `zone=z1,host=h1`.
    #[arg(long, visible_alias = "label", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// TiKV configuration file (TOML).
    #[arg(short = 'C', long)]
    pub config: Option<PathBuf>,

    /// Store capacity reported to PD, e.g. `100GB` (default 100 GiB).
    #[arg(long)]
    pub capacity: Option<String>,

    /// Log level (trace, debug, info, warn, error).
    #[arg(short = 'L', long)]
    pub log_level: Option<String>,

    /// Log to this file instead of stderr.
    #[arg(short = 'f', long)]
    pub log_file: Option<PathBuf>,

    /// TiKV version to report to PD (semver; a leading `v` as in image tags is dropped).
    #[arg(long, env = "TIKV_SIM_VERSION", default_value = DEFAULT_VERSION)]
    pub sim_version: String,

    /// Number of regions the store that bootstraps the cluster splits the key space into.
    #[arg(long, env = "TIKV_SIM_INITIAL_REGIONS", default_value_t = 48)]
    pub sim_initial_regions: u32,
}

/// Version reported when none is given.
pub const DEFAULT_VERSION: &str = "8.5.0";

/// When a region splits: TiKV's `[coprocessor]` region-split/max-size/keys and
/// `raftstore.split-region-check-tick-interval`. A region whose data exceeds the max size or
/// keys is cut into pieces of the split size or keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitConfig {
    /// `region-split-size` (TiKV: 96 MiB).
    pub size: u64,
    /// `region-max-size` (TiKV: 1.5 × the split size).
    pub max_size: u64,
    /// `region-split-keys` (TiKV: 960 000).
    pub keys: u64,
    /// `region-max-keys` (TiKV: 1.5 × the split keys).
    pub max_keys: u64,
    /// `split-region-check-tick-interval` (TiKV: 10 s).
    pub check_interval: Duration,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            size: 96 << 20,
            max_size: 144 << 20,
            keys: 960_000,
            max_keys: 1_440_000,
            check_interval: Duration::from_secs(10),
        }
    }
}

/// Everything the store needs, resolved from flags, config file and defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// PD endpoints as `http://host:port` (`https://` with [`Config::security`]).
    pub pd_endpoints: Vec<String>,
    /// TiKV's `[security]` files (`ca-path`, `cert-path`, `key-path`): mutual TLS on the gRPC
    /// and status ports and towards PD and other stores. `None`: plain TCP.
    pub security: Option<tls::Paths>,
    /// Listen address for raft traffic.
    pub addr: SocketAddr,
    /// Advertised raft address (registered with PD as the store address).
    pub advertise_addr: String,
    /// Listen address of the status server.
    pub status_addr: SocketAddr,
    /// Advertised status address.
    pub advertise_status_addr: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Store labels.
    pub labels: BTreeMap<String, String>,
    /// Capacity reported to PD.
    pub capacity: u64,
    /// Version reported to PD.
    pub version: String,
    /// Regions to split the key space into when this store bootstraps the cluster.
    pub initial_regions: u32,
    /// Log level filter.
    pub log_level: String,
    /// Log file, if not stderr.
    pub log_file: Option<PathBuf>,
    /// Timers.
    pub timing: Timing,
    /// Region split thresholds.
    pub split: SplitConfig,
    /// `server.graceful-shutdown-timeout` (TiKV: 20 s): how long SIGTERM waits for this store's
    /// leaders to move before it stops; 0 stops at once.
    pub graceful_shutdown: Duration,
}

/// The timers of the simulated raftstore, from TiKV's `[raftstore]` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Interval of the raft tick (`raft-base-tick-interval`, 1 s).
    pub base_tick: Duration,
    /// How often a leader contacts its followers (`raft-heartbeat-ticks` × base tick, 2 s).
    pub raft_heartbeat: Duration,
    /// Followers campaign after this long without a leader (`raft-election-timeout-ticks` ×
    /// base tick, 10 s), randomised up to twice as long.
    pub election_timeout: Duration,
    /// Periodic region heartbeat to PD (`pd-heartbeat-tick-interval`, 1 m); changes are
    /// reported at once.
    pub pd_heartbeat: Duration,
    /// Store heartbeat to PD (`pd-store-heartbeat-tick-interval`, 10 s).
    pub store_heartbeat: Duration,
    /// A peer silent for this long is reported down (`max-peer-down-duration`, 10 m).
    pub max_peer_down: Duration,
    /// A follower without a leader for this long asks PD whether it was removed
    /// (`max-leader-missing-duration`, 2 h).
    pub max_leader_missing: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            base_tick: Duration::from_secs(1),
            raft_heartbeat: Duration::from_secs(2),
            election_timeout: Duration::from_secs(10),
            pd_heartbeat: Duration::from_secs(60),
            store_heartbeat: Duration::from_secs(10),
            max_peer_down: Duration::from_secs(600),
            max_leader_missing: Duration::from_secs(7200),
        }
    }
}

impl Timing {
    /// Time a store waits for another store to answer one raft message. Shorter than the
    /// election timeout so that a frozen store cannot stall a leader's view of the others.
    pub fn raft_rpc_timeout(&self) -> Duration {
        (self.election_timeout / 2).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }
}

impl Config {
    /// Resolves the command line (and the config file it names).
    pub fn from_cli(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => load_toml(path)?,
            None => toml::Table::new(),
        };
        let get = |section: &str, key: &str| -> Option<&toml::Value> {
            file.get(section)
                .and_then(|s| s.as_table())
                .and_then(|t| t.get(key))
        };
        let get_str = |section: &str, key: &str| -> Result<Option<String>, ConfigError> {
            match get(section, key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ConfigError::Invalid {
                    key: format!("{section}.{key}"),
                    reason: format!("expected a string, got {other}"),
                }),
            }
        };

        let pd_endpoints = if !cli.pd.is_empty() {
            cli.pd.clone()
        } else {
            match get("pd", "endpoints") {
                Some(toml::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        key: "pd.endpoints".into(),
                        reason: format!("expected a list of strings, got {other}"),
                    });
                }
                None => Vec::new(),
            }
        };
        let security = security([
            get_str("security", "ca-path")?,
            get_str("security", "cert-path")?,
            get_str("security", "key-path")?,
        ])?;
        let scheme = if security.is_some() { "https" } else { "http" };
        let pd_endpoints: Vec<String> = pd_endpoints
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = e.trim_end_matches('/');
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        if pd_endpoints.is_empty() {
            return Err(ConfigError::Missing("--pd"));
        }
        if let Some(e) = pd_endpoints
            .iter()
            .find(|e| !e.starts_with(&format!("{scheme}://")))
        {
            return Err(ConfigError::Invalid {
                key: "--pd".into(),
                reason: match security {
                    Some(_) => format!("{e}: with [security] PD is reached over https"),
                    None => format!(
                        "{e}: an https endpoint needs [security] (ca-path, cert-path, key-path)"
                    ),
                },
            });
        }

        let addr_s = pick(
            cli.addr.clone(),
            get_str("server", "addr")?,
            "127.0.0.1:20160",
        );
        let addr = parse_socket_addr("--addr", &addr_s)?;
        let advertise_addr = cli
            .advertise_addr
            .clone()
            .or(get_str("server", "advertise-addr")?)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| addr_s.clone());
        let status_s = pick(
            cli.status_addr.clone(),
            get_str("server", "status-addr")?,
            "127.0.0.1:20180",
        );
        let status_addr = parse_socket_addr("--status-addr", &status_s)?;
        let advertise_status_addr = cli
            .advertise_status_addr
            .clone()
            .or(get_str("server", "advertise-status-addr")?)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| status_s.clone());

        let data_dir = cli
            .data_dir
            .clone()
            .or(get_str("storage", "data-dir")?.map(PathBuf::from))
            .ok_or(ConfigError::Missing("--data-dir"))?;

        let mut labels = BTreeMap::new();
        if let Some(v) = get("server", "labels") {
            let table = v.as_table().ok_or_else(|| ConfigError::Invalid {
                key: "server.labels".into(),
                reason: "expected a table of strings".into(),
            })?;
            for (k, v) in table {
                let v = v.as_str().ok_or_else(|| ConfigError::Invalid {
                    key: format!("server.labels.{k}"),
                    reason: "expected a string".into(),
                })?;
                labels.insert(k.clone(), v.to_string());
            }
        }
        if !cli.labels.is_empty() {
            // As in tikv-server, labels given on the command line replace the config's.
            labels.clear();
            for l in cli.labels.iter().filter(|l| !l.trim().is_empty()) {
                let (k, v) = l.split_once('=').ok_or_else(|| ConfigError::Invalid {
                    key: "--labels".into(),
                    reason: format!("{l:?} is not key=value"),
                })?;
                labels.insert(k.trim().to_string(), v.trim().to_string());
            }
        }

        // TiKV's ReadableSize accepts a string ("100GB") or a plain number of bytes.
        let capacity_setting = match (cli.capacity.clone(), get("raftstore", "capacity")) {
            (Some(flag), _) => Some(flag),
            (None, Some(toml::Value::Integer(n))) if *n >= 0 => Some(n.to_string()),
            (None, _) => get_str("raftstore", "capacity")?,
        };
        let capacity = match capacity_setting {
            Some(s) => parse_size(&s).map_err(|reason| ConfigError::Invalid {
                key: "capacity".into(),
                reason,
            })?,
            None => 0,
        };
        let capacity = if capacity == 0 { 100 << 30 } else { capacity };

        let version = normalize_version(&cli.sim_version).ok_or_else(|| ConfigError::Invalid {
            key: "--sim-version".into(),
            reason: format!(
                "{:?} is not a semantic version such as 8.5.0",
                cli.sim_version
            ),
        })?;

        let mut timing = Timing::default();
        let dur = |key: &str, default: Duration| -> Result<Duration, ConfigError> {
            match get_str("raftstore", key)? {
                None => Ok(default),
                Some(s) => parse_duration(&s).map_err(|reason| ConfigError::Invalid {
                    key: format!("raftstore.{key}"),
                    reason,
                }),
            }
        };
        let ticks = |key: &str, default: u64| -> Result<u64, ConfigError> {
            match get("raftstore", key) {
                None => Ok(default),
                Some(toml::Value::Integer(i)) if *i > 0 => Ok(*i as u64),
                Some(other) => Err(ConfigError::Invalid {
                    key: format!("raftstore.{key}"),
                    reason: format!("expected a positive integer, got {other}"),
                }),
            }
        };
        timing.base_tick = dur("raft-base-tick-interval", timing.base_tick)?;
        let hb_ticks = ticks("raft-heartbeat-ticks", 2)?;
        let election_ticks = ticks("raft-election-timeout-ticks", 10)?;
        if election_ticks <= hb_ticks {
            return Err(ConfigError::Invalid {
                key: "raftstore.raft-election-timeout-ticks".into(),
                reason: "must be larger than raft-heartbeat-ticks".into(),
            });
        }
        timing.raft_heartbeat = timing.base_tick * hb_ticks as u32;
        timing.election_timeout = timing.base_tick * election_ticks as u32;
        timing.pd_heartbeat = dur("pd-heartbeat-tick-interval", timing.pd_heartbeat)?;
        timing.store_heartbeat = dur("pd-store-heartbeat-tick-interval", timing.store_heartbeat)?;
        timing.max_peer_down = dur("max-peer-down-duration", timing.max_peer_down)?;
        timing.max_leader_missing = dur("max-leader-missing-duration", timing.max_leader_missing)?;
        for (key, d) in [
            ("raft-base-tick-interval", timing.base_tick),
            ("pd-heartbeat-tick-interval", timing.pd_heartbeat),
            ("pd-store-heartbeat-tick-interval", timing.store_heartbeat),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Invalid {
                    key: format!("raftstore.{key}"),
                    reason: "must be positive".into(),
                });
            }
        }

        let size_key = |section: &str, key: &str| -> Result<Option<u64>, ConfigError> {
            let invalid = |reason: String| ConfigError::Invalid {
                key: format!("{section}.{key}"),
                reason,
            };
            match get(section, key) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as u64)),
                Some(toml::Value::String(s)) => parse_size(s).map(Some).map_err(invalid),
                Some(other) => Err(invalid(format!("expected a size, got {other}"))),
            }
        };
        let mut split = SplitConfig::default();
        if let Some(size) = size_key("coprocessor", "region-split-size")? {
            split.size = size;
            split.max_size = size / 2 * 3;
        }
        if let Some(max) = size_key("coprocessor", "region-max-size")? {
            split.max_size = max;
        }
        if let Some(keys) = size_key("coprocessor", "region-split-keys")? {
            split.keys = keys;
            split.max_keys = keys / 2 * 3;
        }
        if let Some(max) = size_key("coprocessor", "region-max-keys")? {
            split.max_keys = max;
        }
        if split.size == 0
            || split.keys == 0
            || split.max_size < split.size
            || split.max_keys < split.keys
        {
            return Err(ConfigError::Invalid {
                key: "coprocessor.region-max-size".into(),
                reason: "region sizes and keys must be positive and max >= split".into(),
            });
        }
        split.check_interval = dur("split-region-check-tick-interval", split.check_interval)?;
        let graceful_shutdown = match get_str("server", "graceful-shutdown-timeout")? {
            None => Duration::from_secs(20),
            Some(s) => parse_duration(&s).map_err(|reason| ConfigError::Invalid {
                key: "server.graceful-shutdown-timeout".into(),
                reason,
            })?,
        };

        let log_level = cli
            .log_level
            .clone()
            .or(get_str("log", "level")?)
            .unwrap_or_else(|| "info".to_string());
        let log_file = cli.log_file.clone().or(match get("log", "file") {
            Some(toml::Value::Table(t)) => t
                .get("filename")
                .and_then(|v| v.as_str())
                .map(PathBuf::from),
            _ => None,
        });

        Ok(Config {
            pd_endpoints,
            security,
            addr,
            advertise_addr,
            status_addr,
            advertise_status_addr,
            data_dir,
            labels,
            capacity,
            version,
            initial_regions: cli.sim_initial_regions.max(1),
            log_level,
            log_file,
            timing,
            split,
            graceful_shutdown,
        })
    }
}

/// TiKV's `[security]`: all three paths or none (as TiKV refuses a partial set); empty strings
/// are unset.
fn security(paths: [Option<String>; 3]) -> Result<Option<tls::Paths>, ConfigError> {
    match paths.map(|p| p.filter(|p| !p.is_empty())) {
        [None, None, None] => Ok(None),
        [Some(ca), Some(cert), Some(key)] => Ok(Some(tls::Paths {
            ca: Some(PathBuf::from(ca)),
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        })),
        _ => Err(ConfigError::Invalid {
            key: "security".into(),
            reason: "ca-path, cert-path and key-path must be set together".into(),
        }),
    }
}

fn load_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|source| ConfigError::Toml {
            path: path.to_path_buf(),
            source,
        })
}

fn pick(flag: Option<String>, file: Option<String>, default: &str) -> String {
    flag.or(file)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn parse_socket_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| ConfigError::Invalid {
            key: key.into(),
            reason: format!("{s:?} is not host:port"),
        })
}

/// `v8.5.0` / `8.5.0` / `8.5.0-beta.1` → the version without `v`; `None` if not semver-shaped.
pub fn normalize_version(raw: &str) -> Option<String> {
    let v = raw.trim().trim_start_matches('v');
    let (core, rest) = match v.find(['-', '+']) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(numeric) || rest == "-" || rest == "+" {
        return None;
    }
    Some(v.to_string())
}

/// TiKV's ReadableDuration: `500ms`, `10s`, `1m30s`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{s:?}: expected a number"));
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{s:?}: bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            "" => return Err(format!("{s:?}: missing unit (ms, s, m, h, d)")),
            other => return Err(format!("{s:?}: unknown unit {other:?}")),
        };
        total += Duration::from_secs_f64(secs);
    }
    Ok(total)
}

/// TiKV's ReadableSize (binary units): `100GB`, `512MiB`, `1TB`, `4096` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..num_len]
        .parse()
        .map_err(|_| format!("{s:?}: expected a number"))?;
    let unit = s[num_len..].trim().to_ascii_uppercase();
    let mult: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        other => return Err(format!("{s:?}: unknown unit {other:?}")),
    };
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("tikv-sim").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_size("100GB").unwrap(), 100 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("3 parsecs").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(normalize_version("v8.5.0").as_deref(), Some("8.5.0"));
        assert_eq!(
            normalize_version("8.5.0-beta.1").as_deref(),
            Some("8.5.0-beta.1")
        );
        assert_eq!(normalize_version("nightly"), None);
        assert_eq!(normalize_version("8.5"), None);
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = std::env::temp_dir().join(format!("tikv-sim-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tikv.toml");
        std::fs::write(
            &file,
            r#"
[server]
addr = "127.0.0.1:30160"
status-addr = "127.0.0.1:30180"
labels = { zone = "z9", host = "h9" }
[storage]
data-dir = "/from/config"
[raftstore]
raft-base-tick-interval = "100ms"
raft-election-timeout-ticks = 20
pd-store-heartbeat-tick-interval = "1s"
capacity = 1073741824
[rocksdb]
max-open-files = 1024
"#,
        )
        .unwrap();
        let c = Config::from_cli(&cli(&[
            "--pd",
            "127.0.0.1:2379,http://127.0.0.1:2479/",
            "--config",
            file.to_str().unwrap(),
            "--labels",
            "zone=z1,host=h1",
            "--sim-version",
            "v8.5.1",
        ]))
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            c.pd_endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:2479"]
        );
        assert_eq!(c.addr.port(), 30160);
        assert_eq!(c.advertise_addr, "127.0.0.1:30160");
        assert_eq!(c.status_addr.port(), 30180);
        assert_eq!(c.data_dir, PathBuf::from("/from/config"));
        assert_eq!(c.labels.get("zone").map(String::as_str), Some("z1"));
        assert_eq!(c.version, "8.5.1");
        assert_eq!(c.timing.base_tick, Duration::from_millis(100));
        assert_eq!(c.timing.raft_heartbeat, Duration::from_millis(200));
        assert_eq!(c.timing.election_timeout, Duration::from_secs(2));
        assert_eq!(c.timing.store_heartbeat, Duration::from_secs(1));
        assert_eq!(c.capacity, 1 << 30);
        assert_eq!(c.split, SplitConfig::default());
        assert_eq!(c.graceful_shutdown, Duration::from_secs(20));
    }

    #[test]
    fn split_sizes_and_shutdown_timeout() {
        let dir = std::env::temp_dir().join(format!("tikv-sim-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tikv.toml");
        std::fs::write(
            &file,
            r#"
[server]
graceful-shutdown-timeout = "5s"
[coprocessor]
region-split-size = "1MiB"
region-split-keys = 1000
[raftstore]
split-region-check-tick-interval = "1s"
"#,
        )
        .unwrap();
        let args = [
            "--pd",
            "x:1",
            "--data-dir",
            "/d",
            "--config",
            file.to_str().unwrap(),
        ];
        let c = Config::from_cli(&cli(&args)).unwrap();
        assert_eq!((c.split.size, c.split.max_size), (1 << 20, 3 << 19));
        assert_eq!((c.split.keys, c.split.max_keys), (1000, 1500));
        assert_eq!(c.split.check_interval, Duration::from_secs(1));
        assert_eq!(c.graceful_shutdown, Duration::from_secs(5));
        std::fs::write(&file, "[coprocessor]\nregion-split-size = \"lots\"\n").unwrap();
        assert!(Config::from_cli(&cli(&args)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn security_turns_tls_on_for_pd_too() {
        let dir = std::env::temp_dir().join(format!("tikv-sim-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tikv.toml");
        let args = |pd: &str| {
            cli(&[
                "--pd",
                pd,
                "--data-dir",
                "/d",
                "--config",
                file.to_str().unwrap(),
            ])
        };
        std::fs::write(
            &file,
            "[security]\nca-path = \"/t/ca.crt\"\ncert-path = \"/t/tls.crt\"\nkey-path = \"/t/tls.key\"\n",
        )
        .unwrap();
        let c = Config::from_cli(&args("pd:2379,https://pd-1:2379")).unwrap();
        assert_eq!(c.pd_endpoints, ["https://pd:2379", "https://pd-1:2379"]);
        assert_eq!(c.security.unwrap().cert, PathBuf::from("/t/tls.crt"));
        assert!(Config::from_cli(&args("http://pd:2379")).is_err());
        std::fs::write(&file, "[security]\nca-path = \"/t/ca.crt\"\n").unwrap();
        assert!(Config::from_cli(&args("pd:2379")).is_err());
        std::fs::write(&file, "[security]\nca-path = \"\"\n").unwrap();
        let c = Config::from_cli(&args("pd:2379")).unwrap();
        assert!(c.security.is_none());
        assert!(Config::from_cli(&args("https://pd:2379")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pd_and_data_dir_are_required() {
        assert!(matches!(
            Config::from_cli(&cli(&["--data-dir", "/tmp/x"])),
            Err(ConfigError::Missing("--pd"))
        ));
        assert!(matches!(
            Config::from_cli(&cli(&["--pd", "127.0.0.1:2379"])),
            Err(ConfigError::Missing("--data-dir"))
        ));
    }
}

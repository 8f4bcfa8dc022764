//! `state.json` in the environment's directory: what the environment is (its plan) and where
//! its parts are, for everyone who works with it later — tests (faults), `tikv-env exec`,
//! `tikv-env down` after a crash. Paths below the directory follow from it; pids are in the pid
//! files the process watchdogs write.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::plan::{NodePlan, Plan};

/// The environment variable that gives a program started in the environment its directory.
pub const STATE_ENV: &str = "TIKV_ENV_STATE";

/// What is known about an environment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// Its directory (absolute).
    pub dir: PathBuf,
    /// Names, addresses, cgroup roots.
    pub plan: Plan,
    /// The `tikv-env` process that owns it.
    pub owner_pid: u32,
    /// The API server as seen from inside the cluster network.
    pub api_server: Option<String>,
    /// The host's loopback forward to the API server (`tikv-env up`), if any.
    pub host_api_server: Option<String>,
    /// Whether it finished starting.
    pub ready: bool,
}

impl State {
    /// The state of a new environment in `dir`.
    pub fn new(dir: &Path, plan: Plan) -> State {
        State {
            dir: dir.to_path_buf(),
            plan,
            owner_pid: std::process::id(),
            api_server: None,
            host_api_server: None,
            ready: false,
        }
    }

    /// Reads `DIR/state.json`.
    pub fn load(dir: &Path) -> Result<State, Error> {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(Error::io(format!(
            "reading {} (is an environment there?)",
            path.display()
        )))?;
        serde_json::from_str(&text).map_err(|e| Error::State {
            path,
            message: e.to_string(),
        })
    }

    /// The state of the environment this program runs in ([`STATE_ENV`]).
    pub fn from_env() -> Result<State, Error> {
        let dir = std::env::var_os(STATE_ENV).ok_or(Error::NotInEnvironment)?;
        State::load(Path::new(&dir))
    }

    /// Writes `DIR/state.json` (atomically: readers never see half a file).
    pub fn save(&self) -> Result<(), Error> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(Error::io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(Error::io(format!("writing {}", path.display())))
    }

    /// The admin kubeconfig for programs inside the cluster network.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("cluster.kubeconfig")
    }

    /// The admin kubeconfig for the host (through the loopback forward; `tikv-env up` only):
    /// `DIR/kubeconfig`, so `just up`'s is `.local/kubeconfig`.
    pub fn host_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The resolv.conf of programs in the cluster network (cluster DNS).
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// Where the environment's own processes (control plane add-ons) log.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// A node's directory: its configuration, `var/` and `run/` (bind-mounted over `/var` and
    /// `/run` for the node's processes), `logs/` and the PV directories.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    /// A node's containerd socket, as seen from outside the node.
    pub fn containerd_socket(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("run/containerd/containerd.sock")
    }

    /// The pid of one of a node's processes (`holder`, `containerd`, `kubelet`, `kube-proxy`),
    /// from its watchdog's pid file.
    pub fn node_pid(&self, node: &str, process: &str) -> Option<u32> {
        read_pid(
            &self
                .node_dir(node)
                .join("logs")
                .join(format!("{process}.pid")),
        )
    }

    /// A node of the plan, or [`Error::NoSuchNode`].
    pub fn node(&self, name: &str) -> Result<&NodePlan, Error> {
        self.plan.node(name).ok_or_else(|| Error::NoSuchNode {
            node: name.to_string(),
            nodes: self.plan.nodes.iter().map(|n| n.name.clone()).collect(),
        })
    }
}

/// A pid from a pid file.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

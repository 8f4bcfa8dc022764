//! Faults on the real machinery, for tests: what happens to a container, a pod or a node in
//! production, done the way it happens there.
//!
//! - [`kill_container`]: its processes get SIGKILL (a crash or the OOM killer); the kubelet sees
//!   the container exit and restarts it per the pod's `restartPolicy`.
//! - [`freeze_pod`]: the pod's cgroup is frozen (cgroup v1 freezer): its processes stop running
//!   but keep their sockets, as a process stuck on a dead disk does.
//! - [`stop_kubelet`]: the node's kubelet stops (SIGSTOP): containers keep running, the Node's
//!   heartbeats stop, and the control plane marks it NotReady after its grace period.
//! - [`cut_network`]: the node is unplugged from the bridge: it reaches nothing and nothing
//!   reaches it (a lost node, as far as anyone else can tell).
//!
//! Each has its way back ([`resume_kubelet`], [`restore_network`], `freeze_pod(.., false)`).
//! A pod deleted with grace period 0 is the API's business (`DeleteParams::grace_period(0)`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Error;
use crate::net;
use crate::state::State;

/// The freezer hierarchy.
const FREEZER: &str = "/sys/fs/cgroup/freezer";
/// A hierarchy every process is in (to list a container's processes).
const PIDS: &str = "/sys/fs/cgroup/pids";

/// A pod's cgroup relative to a hierarchy's root (`/tkv-x-node-0/kubepods/besteffort/pod<uid>`),
/// found under the node's root whatever the pod's QoS class.
pub fn pod_cgroup(state: &State, node: &str, pod_uid: &str) -> Result<PathBuf, Error> {
    let root = Path::new(FREEZER).join(state.node(node)?.cgroup_root.trim_start_matches('/'));
    let want = format!("pod{pod_uid}");
    find_dir(&root, &want, 4)
        .and_then(|p| p.strip_prefix(FREEZER).ok().map(|r| Path::new("/").join(r)))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no cgroup of pod {pod_uid} under {} (is it running on {node}?)",
                root.display()
            ))
        })
}

fn find_dir(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    if let Some(hit) = dirs
        .iter()
        .find(|d| d.file_name().is_some_and(|n| n == name))
    {
        return Some(hit.clone());
    }
    if depth == 0 {
        return None;
    }
    dirs.iter().find_map(|d| find_dir(d, name, depth - 1))
}

/// Freezes (`true`) or thaws (`false`) every process of a pod, and waits until the kernel says
/// it is done.
pub fn freeze_pod(state: &State, node: &str, pod_uid: &str, frozen: bool) -> Result<(), Error> {
    let cg = pod_cgroup(state, node, pod_uid)?;
    let file = Path::new(FREEZER)
        .join(cg.strip_prefix("/").unwrap_or(&cg))
        .join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    std::fs::write(&file, want).map_err(Error::io(format!("writing {}", file.display())))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::read_to_string(&file)
            .map_err(Error::io(format!("reading {}", file.display())))?;
        if now.trim() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::NotReady {
                what: format!("freezer of pod {pod_uid}"),
                timeout: Duration::from_secs(10),
                detail: format!("{} says {}", file.display(), now.trim()),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes of one container (`container_id` as in the pod status, with or without its
/// `containerd://` prefix), from its cgroup.
pub fn container_pids(
    state: &State,
    node: &str,
    pod_uid: &str,
    container_id: &str,
) -> Result<Vec<u32>, Error> {
    let id = container_id.rsplit("://").next().unwrap_or(container_id);
    let cg = pod_cgroup(state, node, pod_uid)?;
    let procs = Path::new(PIDS)
        .join(cg.strip_prefix("/").unwrap_or(&cg))
        .join(id)
        .join("cgroup.procs");
    let text = std::fs::read_to_string(&procs).map_err(|_| {
        Error::NotFound(format!(
            "container {id} of pod {pod_uid} is not running ({} is missing)",
            procs.display()
        ))
    })?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Kills every process of one container with SIGKILL; returns how many there were.
pub fn kill_container(
    state: &State,
    node: &str,
    pod_uid: &str,
    container_id: &str,
) -> Result<usize, Error> {
    let pids = container_pids(state, node, pod_uid, container_id)?;
    if pids.is_empty() {
        return Err(Error::NotFound(format!(
            "container {container_id} of pod {pod_uid} has no process"
        )));
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    Ok(pids.len())
}

fn kubelet(state: &State, node: &str) -> Result<Pid, Error> {
    state.node(node)?;
    let pid = state
        .node_pid(node, "kubelet")
        .filter(|p| testenv::process::is_alive(*p))
        .ok_or_else(|| Error::NotFound(format!("the kubelet of {node} is not running")))?;
    Ok(Pid::from_raw(pid as i32))
}

/// Stops a node's kubelet (SIGSTOP): the node goes NotReady, its containers keep running.
pub fn stop_kubelet(state: &State, node: &str) -> Result<(), Error> {
    kill(kubelet(state, node)?, Signal::SIGSTOP).map_err(|source| Error::Signal {
        what: format!("stopping the kubelet of {node}"),
        source,
    })
}

/// Lets a stopped kubelet run again (SIGCONT).
pub fn resume_kubelet(state: &State, node: &str) -> Result<(), Error> {
    kill(kubelet(state, node)?, Signal::SIGCONT).map_err(|source| Error::Signal {
        what: format!("resuming the kubelet of {node}"),
        source,
    })
}

/// Unplugs a worker node from the network.
pub fn cut_network(state: &State, node: &str) -> Result<(), Error> {
    net::cut(&state.plan, state.node(node)?)
}

/// Plugs a worker node back in.
pub fn restore_network(state: &State, node: &str) -> Result<(), Error> {
    net::restore(&state.plan, state.node(node)?)
}

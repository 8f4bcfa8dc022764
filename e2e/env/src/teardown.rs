//! Removing an environment so that nothing is left: no process (control plane, containerd,
//! shims, containers, kubelets), no mount, no cgroup, no network namespace. It works from the
//! state file alone, so it also cleans up after a `tikv-env` that was killed.
//!
//! Order: kubelets first (they would restart containers); then every pod through CRI while
//! containerd still runs (it stops the containers and their shims, and releases the pods'
//! network); then whatever is still running in the environment's namespaces or cgroups is killed
//! (after a crash, that is everything); then the cgroups, namespaces and directories go. Mounts go
//! with the nodes' mount namespaces, once no process holds them.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::node::{cgroup_hierarchies, crictl};
use crate::state::State;
use crate::{Error, net};

/// How long teardown waits for killed processes to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// What [`down`] found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// Processes that were still running and were killed.
    pub killed: usize,
    /// Pods removed through CRI.
    pub pods_removed: usize,
    /// What could not be removed (each a readable message); empty when everything is gone.
    pub left: Vec<String>,
}

/// Tears the environment down and empties its directory; with `keep_logs`, `logs/` and each
/// node's `logs/` stay (for `just up`, to read after `just down`).
pub fn down(state: &State, keep_logs: bool) -> Report {
    let mut report = Report::default();
    for node in &state.plan.nodes {
        if let Some(pid) = state.node_pid(&node.name, "kubelet") {
            signal(pid, Signal::SIGKILL);
        }
    }
    for node in &state.plan.nodes {
        let alive = state
            .node_pid(&node.name, "containerd")
            .is_some_and(testenv::process::is_alive);
        if alive && state.containerd_socket(&node.name).exists() {
            match crictl(state, &node.name, &["rmp", "--force", "--all"]) {
                Ok(out) => report.pods_removed += out.matches("Removed sandbox").count(),
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "removing pods through CRI")
                }
            }
        }
    }
    report.killed = kill_all(state);
    for h in cgroup_hierarchies()
        .unwrap_or_default()
        .iter()
        .chain([&PathBuf::from("/sys/fs/cgroup/unified")])
    {
        for node in &state.plan.nodes {
            let root = h.join(node.cgroup_root.trim_start_matches('/'));
            if let Err(e) = remove_cgroup_tree(&root) {
                report.left.push(format!("cgroup {}: {e}", root.display()));
            }
        }
    }
    if let Err(e) = net::delete(&state.plan) {
        report.left.push(format!("network namespaces: {e}"));
    }
    for m in mounts_under(&state.dir) {
        report.left.push(format!("mount {}", m.display()));
    }
    if report.left.is_empty() {
        let keep: &[&str] = if keep_logs { &["logs"] } else { &[] };
        for node in &state.plan.nodes {
            remove_contents(&state.node_dir(&node.name), keep, &mut report);
        }
        let keep: &[&str] = if keep_logs { &["logs", "nodes"] } else { &[] };
        remove_contents(&state.dir, keep, &mut report);
    }
    report
}

/// The nodes' cgroup roots that exist, in every hierarchy (runc also makes them under the
/// cgroup2 `unified` one).
pub fn cgroup_roots(state: &State) -> Vec<PathBuf> {
    let mut hierarchies = cgroup_hierarchies().unwrap_or_default();
    hierarchies.push(PathBuf::from("/sys/fs/cgroup/unified"));
    hierarchies
        .iter()
        .flat_map(|h| {
            state
                .plan
                .nodes
                .iter()
                .map(move |n| h.join(n.cgroup_root.trim_start_matches('/')))
        })
        .filter(|d| d.exists())
        .collect()
}

/// Every process in the environment: in one of its network namespaces or in one of its nodes'
/// cgroups, except this process and its ancestors (a `tikv-env down` may run inside the
/// environment's namespace).
pub fn processes(state: &State) -> BTreeSet<u32> {
    let me = ancestors();
    let netns: Vec<(u64, u64)> = state
        .plan
        .nodes
        .iter()
        .filter_map(|n| {
            let m = std::fs::metadata(Path::new("/run/netns").join(&n.netns)).ok()?;
            Some((m.dev(), m.ino()))
        })
        .collect();
    let mut pids = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                && netns.contains(&(m.dev(), m.ino()))
            {
                pids.insert(pid);
            }
        }
    }
    for h in cgroup_hierarchies().unwrap_or_default() {
        for node in &state.plan.nodes {
            collect_cgroup_procs(&h.join(node.cgroup_root.trim_start_matches('/')), &mut pids);
        }
    }
    pids.retain(|p| !me.contains(p) && testenv::process::is_alive(*p));
    pids
}

/// Kills every process of the environment until none is left (processes may fork while dying);
/// returns how many were killed.
fn kill_all(state: &State) -> usize {
    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut killed = BTreeSet::new();
    loop {
        let left = processes(state);
        if left.is_empty() || Instant::now() > deadline {
            for p in &left {
                tracing::warn!(pid = p, "process of the environment still running");
            }
            return killed.len();
        }
        for p in left {
            // A frozen container ignores SIGKILL until thawed.
            thaw_if_frozen(p);
            signal(p, Signal::SIGKILL);
            killed.insert(p);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// This process and its ancestors.
fn ancestors() -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && out.insert(pid) {
        pid = parent(pid).unwrap_or(1);
    }
    out
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A process in a frozen freezer cgroup: thaw that cgroup.
fn thaw_if_frozen(pid: u32) {
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return;
    };
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        if controllers == Some("freezer")
            && let Some(path) = path
        {
            let state = Path::new("/sys/fs/cgroup/freezer")
                .join(path.trim_start_matches('/'))
                .join("freezer.state");
            let _ = std::fs::write(state, "THAWED");
        }
    }
}

fn collect_cgroup_procs(dir: &Path, pids: &mut BTreeSet<u32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_cgroup_procs(&e.path(), pids);
            }
        }
    }
}

/// Removes a cgroup and its children, deepest first (a cgroup directory is removed with rmdir;
/// its files are the kernel's).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&e.path())?;
        }
    }
    // The kernel may take a moment to release a cgroup whose last process just died.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
}

/// Mount points at or below `dir` (in this process's mount namespace, the host's).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        // /proc/mounts escapes spaces as \040.
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn remove_contents(dir: &Path, keep: &[&str], report: &mut Report) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if keep.iter().any(|k| e.file_name() == *k) {
            continue;
        }
        let path = e.path();
        let result = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(err) = result {
            report.left.push(format!("{}: {err}", path.display()));
        }
    }
}

/// Fails unless the environment is gone: for tests of teardown and for `tikv-env down`'s exit
/// status.
pub fn check_gone(report: &Report) -> Result<(), Error> {
    if report.left.is_empty() {
        Ok(())
    } else {
        Err(Error::Leftovers(report.left.clone()))
    }
}

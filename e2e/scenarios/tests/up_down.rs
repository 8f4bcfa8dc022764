//! `just up` brings examples/basic to Ready, and a second `just up` leaves it running; `just down`
//! leaves no process behind — neither the ones it started nor any of their descendants
//! (pd-server, tikv-sim, etcd, kube-apiserver...) — and removes the pods' volumes.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Every descendant of `roots` (and the roots), from /proc.
fn descendants(roots: &BTreeSet<u32>) -> BTreeSet<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may contain spaces; fields after the closing paren are fixed.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut all = roots.clone();
    loop {
        let more: Vec<u32> = parents
            .iter()
            .filter(|(p, pp)| all.contains(pp) && !all.contains(p))
            .map(|(p, _)| *p)
            .collect();
        if more.is_empty() {
            return all;
        }
        all.extend(more);
    }
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's wait is missing.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn just_up_reaches_ready_and_just_down_leaves_nothing() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let state = std::env::temp_dir().join(format!("e2e-up-down-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let run = |script: &str| {
        Command::new("bash")
            .arg(repo.join("e2e").join(script))
            .env("TIKV_OPERATOR_STATE_DIR", &state)
            .output()
            .unwrap()
    };
    let up = run("up.sh");
    let out =
        String::from_utf8_lossy(&up.stdout).to_string() + &String::from_utf8_lossy(&up.stderr);
    let pids: BTreeSet<u32> = std::fs::read_to_string(state.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    let tree = descendants(&pids);
    // A second `just up` finds everything running and leaves it alone.
    let again = run("up.sh");
    let again_out = String::from_utf8_lossy(&again.stdout).to_string();
    let pids_after = std::fs::read_to_string(state.join("pids")).unwrap_or_default();
    let volumes = state.join("node-agent");
    let had_volumes = volumes.exists();
    let down = run("down.sh");
    assert!(
        up.status.success() && out.contains("Cluster basic is Ready"),
        "just up failed:\n{out}"
    );
    assert!(
        again.status.success() && again_out.contains("already up"),
        "the second just up: {again_out}"
    );
    let pids_after: BTreeSet<u32> = pids_after
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert_eq!(pids_after, pids, "the second just up started nothing new");
    assert!(
        down.status.success(),
        "just down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(
        tree.len() > pids.len(),
        "the environment had child processes (PD, stores, servers)"
    );
    // Watchdogs kill the servers as their owners exit; give the kernel a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut left: Vec<u32> = tree.iter().copied().filter(|p| alive(*p)).collect();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
        left.retain(|p| alive(*p));
    }
    let names: Vec<String> = left
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .map(|c| c.replace('\0', " "))
        .collect();
    assert!(left.is_empty(), "processes left after just down: {names:?}");
    assert!(!state.join("pids").exists());
    assert!(
        had_volumes && !volumes.exists(),
        "just down removed the pods' volumes"
    );
}

//! An environment whose `tikv-env` is SIGKILLed is torn down by its watchdog all the same: no
//! process, network namespace or cgroup of it is left, and its directory is emptied. (Orderly
//! teardown is checked by the up/down test in e2e/scenarios.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_env::State;

#[test]
fn a_killed_environment_is_cleaned_up_by_its_watchdog() {
    let exe = Path::new(env!("CARGO_BIN_EXE_tikv-env"));
    let dir = std::env::temp_dir().join(format!("tikv-env-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // One worker is enough to have containers, shims and cgroups.
    let mut env = Command::new(exe)
        .args(["up", "--workers", "1", "--state"])
        .arg(&dir)
        .arg("--images")
        .arg(exe.with_file_name("images"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = false;
    for line in BufReader::new(env.stdout.take().unwrap()).lines() {
        if line.unwrap() == "ready" {
            ready = true;
            break;
        }
    }
    assert!(
        ready,
        "tikv-env up did not get ready (exit: {:?})",
        env.try_wait()
    );
    let state = State::load(&dir).unwrap();
    let procs = e2e_env::teardown::processes(&state);
    assert!(procs.len() > 10, "the environment runs: {procs:?}");
    assert!(!e2e_env::teardown::cgroup_roots(&state).is_empty());

    env.kill().unwrap();
    let _ = env.wait();

    let deadline = Instant::now() + Duration::from_secs(60);
    let gone = || {
        procs.iter().all(|p| !testenv::process::is_alive(*p))
            && state
                .plan
                .nodes
                .iter()
                .all(|n| !e2e_env::net::exists(&n.netns))
            && e2e_env::teardown::cgroup_roots(&state).is_empty()
            && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none())
    };
    while !gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: Vec<u32> = procs
        .iter()
        .copied()
        .filter(|p| testenv::process::is_alive(*p))
        .collect();
    let netns: Vec<&str> = state
        .plan
        .nodes
        .iter()
        .map(|n| n.netns.as_str())
        .filter(|n| e2e_env::net::exists(n))
        .collect();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty()
            && netns.is_empty()
            && e2e_env::teardown::cgroup_roots(&state).is_empty()
            && files.is_empty(),
        "left after SIGKILL: processes {left:?}, network namespaces {netns:?}, cgroups {:?}, files {files:?}",
        e2e_env::teardown::cgroup_roots(&state)
    );
    let _ = std::fs::remove_dir(&dir);
}

//! Startup errors and teardown: no server outlives the control plane or the process holding it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testenv::process::is_alive;
use testenv::{ControlPlane, ControlPlaneOptions, Error};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Waits until `done` holds, checking every 50 ms; false after `timeout`.
async fn within(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test]
async fn dropping_a_control_plane_kills_its_servers_and_removes_its_dir() {
    let cp = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .expect("starting a control plane");
    let pids = cp.server_pids();
    let names: Vec<_> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler"
        ]
    );
    assert!(pids.iter().all(|(_, pid)| is_alive(*pid)));
    let dir = cp.dir().to_path_buf();
    assert!(dir.join("kube-apiserver.log").exists());
    // It is really up: the API server answers and our CRDs are served.
    let groups: kube::Api<api::v1alpha1::TiKVGroup> = kube::Api::namespaced(cp.client(), "default");
    assert!(
        groups
            .list(&Default::default())
            .await
            .expect("listing TiKVGroups")
            .items
            .is_empty()
    );

    drop(cp);
    // Drop waits for the servers, so they are gone when it returns.
    for (name, pid) in &pids {
        assert!(
            !is_alive(*pid),
            "{name} ({pid}) outlived the dropped control plane"
        );
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[tokio::test]
async fn sigkill_of_the_owning_process_kills_the_servers_and_removes_the_dir() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testenv-up"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting testenv-up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut info = BTreeMap::new();
    let ready = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "ready" {
                return true;
            }
            if let Some((k, v)) = line.split_once('=') {
                info.insert(k.to_string(), v.to_string());
            }
        }
        false
    })
    .await
    .expect("testenv-up did not get ready in time");
    if !ready {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "testenv-up exited before it was ready: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pids: Vec<(String, u32)> = info
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("pid.")?.to_string(), v.parse().ok()?)))
        .collect();
    assert_eq!(pids.len(), 4, "{info:?}");
    assert!(pids.iter().all(|(_, pid)| is_alive(*pid)), "{pids:?}");
    let dir = PathBuf::from(&info["dir"]);
    assert!(dir.is_dir());

    // SIGKILL: no destructor, no signal handler runs in testenv-up.
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let all_dead = within(Duration::from_secs(10), || {
        pids.iter().all(|(_, pid)| !is_alive(*pid))
    })
    .await;
    assert!(
        all_dead,
        "servers alive 10 s after SIGKILL of their owner: {:?}",
        alive(&pids)
    );
    assert!(
        within(Duration::from_secs(20), || !dir.exists()).await,
        "{} was not removed",
        dir.display()
    );
}

fn alive(pids: &[(String, u32)]) -> Vec<&(String, u32)> {
    pids.iter().filter(|(_, pid)| is_alive(*pid)).collect()
}

#[test]
fn a_missing_binary_says_how_to_build_it() {
    let err = testenv::bin_path("no-such-binary").unwrap_err();
    assert!(matches!(err, Error::BinaryMissing { .. }));
    let message = err.to_string();
    assert!(message.contains("`no-such-binary` is missing"), "{message}");
    assert!(message.contains("e2e/tools/build.sh"), "{message}");
    // The real ones are there (the other tests need them).
    for name in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
    ] {
        testenv::bin_path(name).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn starting_without_binaries_fails_with_how_to_build_them() {
    // In a child process, because the bin dir comes from the environment.
    let empty = std::env::temp_dir().join(format!("testenv-empty-bin-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testenv-up"))
        .env(testenv::BIN_DIR_ENV, &empty)
        .output()
        .expect("running testenv-up");
    std::fs::remove_dir_all(&empty).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`etcd` is missing"), "{stderr}");
    assert!(
        stderr.contains(&empty.join("etcd").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("Run `e2e/tools/build.sh`"), "{stderr}");
}

#[tokio::test]
async fn a_server_that_fails_to_start_is_reported_with_its_log() {
    let options = ControlPlaneOptions {
        apiserver_args: vec!["--no-such-flag".into()],
        with_controller_manager: false,
        with_scheduler: false,
        ..Default::default()
    };
    let err = ControlPlane::start(options)
        .await
        .expect_err("an unknown flag must stop the API server");
    let Error::ServerExited {
        server, log, tail, ..
    } = &err
    else {
        panic!("expected ServerExited, got {err}")
    };
    assert_eq!(server, "kube-apiserver");
    assert!(tail.contains("unknown flag: --no-such-flag"), "{tail}");
    assert!(tail.lines().count() <= testenv::process::LOG_TAIL_LINES);
    assert!(err.to_string().contains("unknown flag: --no-such-flag"));
    // What had started (etcd) is stopped and the directory removed.
    let dir: &Path = log.parent().unwrap();
    assert!(
        !dir.exists(),
        "{} left behind after a failed start",
        dir.display()
    );
}

#[test]
fn the_shared_control_plane_is_started_once() {
    // From a plain test (no runtime) as well as from async ones.
    let a = testenv::shared();
    let b = std::thread::spawn(testenv::shared).join().unwrap();
    assert!(std::ptr::eq(a, b));
    assert!(a.server_url().starts_with("https://127.0.0.1:"));
    assert!(a.kubeconfig_path().is_file());
    eprintln!("shared control plane started in {:?}", a.startup_time());
}

#[tokio::test]
async fn a_taken_port_is_recognised_as_a_port_conflict() {
    // Start retries with new ports on a conflict; forcing the API server onto a taken port
    // (later flags win) makes every attempt fail, and shows that the real bind error is
    // recognised.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let options = ControlPlaneOptions {
        apiserver_args: vec![format!("--secure-port={port}")],
        with_controller_manager: false,
        with_scheduler: false,
        ..Default::default()
    };
    let err = ControlPlane::start(options)
        .await
        .expect_err("the port is taken");
    assert!(
        err.is_port_conflict(),
        "not recognised as a port conflict: {err}"
    );
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

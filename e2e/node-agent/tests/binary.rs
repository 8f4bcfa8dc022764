//! The `node-agent` binary: faults through the `fault` subcommand (annotations), and no process
//! outlives an agent killed with SIGKILL; the next agent removes the dead one's hosts block.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::{HostPathVolumeSource, Node, Pod, Volume, VolumeMount};
use kube::api::{Api, PostParams};

const BIN: &str = env!("CARGO_BIN_EXE_node-agent");

/// Kills the agent process if the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fault(kubeconfig: &std::path::Path, args: &[&str]) {
    let out = Command::new(BIN)
        .arg("fault")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node-agent fault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_faults_and_sigkill_leaves_no_process() {
    let began = Instant::now();
    let cp = testenv::shared();
    let client = cp.client();
    let ns = cp.create_namespace("bin").await;
    let state = std::env::temp_dir().join(format!("node-agent-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let out = state.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let agent = Command::new(BIN)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args([
            "--nodes",
            "1",
            "--node-prefix",
            "na-bin",
            "--test-images",
            "--state-dir",
        ])
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = KillOnDrop(agent);
    // The agent prints "node-agent <id> running nodes [...]" once started.
    let stderr = agent.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("node-agent ")
                && rest.contains("running nodes")
            {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
        }
    });
    let id = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("agent started");

    // `$$$$` is `$$` after kubelet's `$(VAR)` expansion (`$$` escapes `$`).
    let mut pod = Pod::default();
    pod.metadata.name = Some("bin-0".into());
    let spec = pod.spec.get_or_insert_default();
    spec.node_selector = Some(labels(&[("kubernetes.io/hostname", "na-bin-0")]));
    spec.termination_grace_period_seconds = Some(2);
    spec.volumes = Some(vec![Volume {
        name: "out".into(),
        host_path: Some(HostPathVolumeSource {
            path: out.to_string_lossy().into_owned(),
            type_: None,
        }),
        ..Default::default()
    }]);
    spec.containers = vec![k8s_openapi::api::core::v1::Container {
        name: "main".into(),
        image: Some(node_agent::TEST_SHELL_IMAGE.into()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo $$$$ > /mnt/out/pid; exec sleep 3600".into(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "out".into(),
            mount_path: "/mnt/out".into(),
            ..Default::default()
        }]),
        ..Default::default()
    }];
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(&pods, "bin-0", 60, "pod Ready", ready).await;

    let kubeconfig = cp.kubeconfig_path().to_path_buf();
    fault(&kubeconfig, &["kill", &format!("{ns}/bin-0")]);
    wait_for(&pods, "bin-0", 30, "restart after `fault kill`", |p| {
        restarts(p) == 1 && ready(p)
    })
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_ready = |n: Option<&Node>| {
        n.and_then(|n| {
            n.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status.clone())
        })
    };
    fault(&kubeconfig, &["node", "na-bin-0", "NotReady"]);
    wait_for(&nodes, "na-bin-0", 20, "node NotReady", |n| {
        node_ready(n).as_deref() == Some("False")
    })
    .await;
    fault(&kubeconfig, &["node", "na-bin-0", "Ready"]);
    wait_for(&nodes, "na-bin-0", 20, "node Ready", |n| {
        node_ready(n).as_deref() == Some("True")
    })
    .await;
    wait_for(&pods, "bin-0", 30, "pod Ready again", ready).await;

    let pid: i32 = eventually(10, "pid file of the restarted container", || async {
        let pid: i32 = std::fs::read_to_string(out.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    })
    .await;
    assert!(
        std::fs::read_to_string("/etc/hosts")
            .unwrap()
            .contains(&format!("# BEGIN node-agent {id}"))
    );
    drop(agent);
    eventually(10, "container process killed by its watchdog", || async {
        (!alive(pid)).then_some(())
    })
    .await;

    // The next agent on the machine removes the dead agent's hosts block.
    let env = start("after-kill", 1).await;
    assert!(
        !std::fs::read_to_string("/etc/hosts")
            .unwrap()
            .contains(&format!("node-agent {id} "))
    );
    env.shutdown().await;
    let _ = std::fs::remove_dir_all(&state);
    eprintln!(
        "cli_faults_and_sigkill_leaves_no_process took {:?}",
        began.elapsed()
    );
}

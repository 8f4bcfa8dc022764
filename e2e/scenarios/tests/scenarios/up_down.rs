//! `just up` brings examples/basic to Ready on real nodes with the operator installed by Helm; a
//! second `just up` says so and starts nothing; from the host, kubectl works through the loopback
//! forward (get, logs, exec, port-forward) and `just exec` runs a program in the cluster network;
//! `just down` leaves nothing behind: no process (control plane, containerd, shims, containers,
//! kubelets), no network namespace, no cgroup, no mount, no node directory — only the logs.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_env::State;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn kubectl(state: &Path) -> Command {
    let mut c = Command::new(testenv::bin_path("kubectl").unwrap());
    c.arg("--kubeconfig").arg(state.join("kubeconfig"));
    c
}

fn alive(pid: u32) -> bool {
    testenv::process::is_alive(pid)
}

#[test]
fn just_up_reaches_ready_on_real_nodes_and_just_down_leaves_nothing() {
    let state_dir = std::env::temp_dir().join(format!("e2e-up-down-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let run = |script: &str| {
        Command::new("bash")
            .arg(repo().join("e2e").join(script))
            .env("TIKV_OPERATOR_STATE_DIR", &state_dir)
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let up = run("up.sh");
    let up_secs = started.elapsed().as_secs_f64();
    let out = text(&up);
    let mut checks = Vec::new();
    let ok = up.status.success() && out.contains("Cluster basic is Ready");
    if !ok {
        let _ = run("down.sh");
        panic!("just up failed:\n{out}");
    }
    println!("just up: {up_secs:.1} s");
    let state = State::load(&state_dir).unwrap();
    let pid: u32 = std::fs::read_to_string(state_dir.join("tikv-env.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // A second `just up` finds it running and starts nothing.
    let again = run("up.sh");
    checks.push((
        again.status.success() && text(&again).contains("already up"),
        format!("the second just up: {}", text(&again)),
    ));

    // From the host: kubectl through the forward, with logs, exec and port-forward.
    let tikv_pods = kubectl(&state_dir)
        .args([
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=tikv",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    let tikv_pod = String::from_utf8_lossy(&tikv_pods.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    checks.push((
        !tikv_pod.is_empty(),
        format!("kubectl get pods: {}", text(&tikv_pods)),
    ));
    let get = kubectl(&state_dir).args(["get", "tikv"]).output().unwrap();
    checks.push((
        get.status.success() && text(&get).contains("basic-tikv-"),
        format!("kubectl get tikv: {}", text(&get)),
    ));
    let exec = kubectl(&state_dir)
        .args([
            "exec",
            &tikv_pod,
            "--",
            "sh",
            "-c",
            "ls /tikv-server && echo exec-ok",
        ])
        .output()
        .unwrap();
    checks.push((
        text(&exec).contains("exec-ok"),
        format!("kubectl exec: {}", text(&exec)),
    ));
    let pd_pod = String::from_utf8_lossy(
        &kubectl(&state_dir)
            .args([
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=pd",
                "-o",
                "name",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .next()
    .unwrap_or_default()
    .to_string();
    let logs = kubectl(&state_dir)
        .args(["logs", &pd_pod])
        .output()
        .unwrap();
    checks.push((
        logs.status.success() && text(&logs).contains("PD"),
        format!(
            "kubectl logs {pd_pod}: {}",
            text(&logs).chars().take(300).collect::<String>()
        ),
    ));
    checks.push(port_forward(&state_dir, &pd_pod));
    // `just exec`: a host program in the cluster network, with cluster DNS.
    let exec_in = Command::new(tikv_env())
        .args(["exec", "--state"])
        .arg(&state_dir)
        .args(["--", "getent", "hosts", "basic-pd.default.svc"])
        .output()
        .unwrap();
    checks.push((
        exec_in.status.success() && text(&exec_in).contains("10.96."),
        format!(
            "tikv-env exec -- getent hosts basic-pd.default.svc: {}",
            text(&exec_in)
        ),
    ));

    // What is there to vanish: processes, containers, namespaces, cgroups.
    let mut procs = e2e_env::teardown::processes(&state);
    procs.insert(pid);
    let shims = procs
        .iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.starts_with("containerd-shim"))
        })
        .count();
    let containers: usize = state
        .plan
        .nodes
        .iter()
        .map(|n| {
            e2e_env::node::crictl(&state, &n.name, &["ps", "-q"])
                .map(|o| o.lines().count())
                .unwrap_or(0)
        })
        .sum();
    let netns: Vec<String> = state.plan.nodes.iter().map(|n| n.netns.clone()).collect();
    let cgroups_before = e2e_env::teardown::cgroup_roots(&state);
    checks.push((shims >= 6, format!("{shims} containerd shims while up")));
    checks.push((containers >= 9, format!("{containers} containers while up")));
    checks.push((
        netns.iter().all(|n| e2e_env::net::exists(n)),
        format!("network namespaces {netns:?} while up"),
    ));
    checks.push((!cgroups_before.is_empty(), "node cgroups while up".into()));

    let down = run("down.sh");
    checks.push((down.status.success(), format!("just down: {}", text(&down))));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left: BTreeSet<u32> = procs.iter().copied().filter(|p| alive(*p)).collect();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left.retain(|p| alive(*p));
    }
    let names: Vec<String> = left
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .map(|c| c.replace('\0', " "))
        .collect();
    checks.push((
        left.is_empty(),
        format!("processes left after just down: {names:?}"),
    ));
    let netns_left: Vec<&String> = netns.iter().filter(|n| e2e_env::net::exists(n)).collect();
    checks.push((
        netns_left.is_empty(),
        format!("network namespaces left: {netns_left:?}"),
    ));
    let cgroups_left = e2e_env::teardown::cgroup_roots(&state);
    checks.push((
        cgroups_left.is_empty(),
        format!("cgroups left: {cgroups_left:?}"),
    ));
    let mounts = e2e_env::teardown::mounts_under(&state_dir);
    checks.push((mounts.is_empty(), format!("mounts left: {mounts:?}")));
    let kept: Vec<String> = std::fs::read_dir(&state_dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let node_dirs_gone = state.plan.nodes.iter().all(|n| {
        let dir = state.node_dir(&n.name);
        !dir.join("var").exists() && !dir.join("run").exists()
    });
    checks.push((
        node_dirs_gone && kept.iter().all(|k| k == "logs" || k == "nodes"),
        format!("left in the state dir: {kept:?} (node var/run gone: {node_dirs_gone})"),
    ));
    checks.push((
        state_dir.join("logs/tikv-env.log").exists(),
        "the logs stay".into(),
    ));
    let failed: Vec<&String> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, m)| m)
        .collect();
    assert!(failed.is_empty(), "failed checks:\n{failed:#?}");
    let _ = std::fs::remove_dir_all(&state_dir);
}

/// tikv-env of this build.
fn tikv_env() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("tikv-env")
}

/// `kubectl port-forward` to PD's client port, then PD's health through it, from the host.
fn port_forward(state: &Path, pod: &str) -> (bool, String) {
    let mut pf = kubectl(state)
        .args(["port-forward", pod, ":2379"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "Forwarding from 127.0.0.1:PORT -> 2379". The pipe stays open until the end: kubectl
    // writes a line per connection and would die of SIGPIPE.
    let mut line = String::new();
    let mut out = BufReader::new(pf.stdout.take().unwrap());
    let _ = out.read_line(&mut line);
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse::<u16>().ok());
    let answer = port.and_then(|port| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET /pd/api/v1/health HTTP/1.0\r\nHost: pd\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    });
    let _ = pf.kill();
    let _ = pf.wait();
    drop(out);
    let body = answer.unwrap_or_default();
    (
        body.lines().next().is_some_and(|l| l.contains(" 200 "))
            && body.contains("\"health\": true"),
        format!("kubectl port-forward {pod} ({line:?}): {body}"),
    )
}

//! Pods as processes, against the real control plane of `testenv` (API server, controller
//! manager, scheduler): volumes, restarts, DNS, probes, faults, deletion, exit codes, images.

mod common;

use std::net::IpAddr;
use std::time::Instant;

use common::*;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, ExecAction, HTTPGetAction, HostPathVolumeSource, Node,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Probe, Secret, SecretVolumeSource, Service, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use node_agent::{KILL_ANNOTATION, NodeFault};

fn pvc(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn config_map(name: &str, key: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([(key.to_string(), value.to_string())].into()),
        ..Default::default()
    }
}

async fn pvc_dir(env: &Env, claim: &str) -> std::path::PathBuf {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &env.ns);
    let bound = wait_for(&pvcs, claim, 30, "PVC bound", |c| {
        c.and_then(|c| c.status.as_ref()?.phase.clone()).as_deref() == Some("Bound")
    })
    .await
    .unwrap();
    let pv_name = bound.spec.unwrap().volume_name.unwrap();
    let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
    let pv = pvs.get(&pv_name).await.unwrap();
    std::path::PathBuf::from(pv.spec.unwrap().host_path.unwrap().path)
}

fn stateful_pod(env: &Env, name: &str) -> k8s_openapi::api::core::v1::Pod {
    let script = r#"
echo "boot $POD_NAME $POD_IP" >> /var/lib/na-test/boots
cp /etc/na-secret/token /var/lib/na-test/token
while true; do
  cat /etc/na-test/greeting > /var/lib/na-test/seen.tmp && mv /var/lib/na-test/seen.tmp /var/lib/na-test/seen
  sleep 0.2
done"#;
    let mut pod = env.sh_pod(name, script);
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "greeting".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("token".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data".into(),
                read_only: None,
            }),
            ..Default::default()
        },
    ]);
    spec.containers[0].volume_mounts = Some(vec![
        VolumeMount {
            name: "config".into(),
            mount_path: "/etc/na-test".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "secret".into(),
            mount_path: "/etc/na-secret".into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/na-test".into(),
            ..Default::default()
        },
    ]);
    pod
}

/// A pod with a ConfigMap, a Secret and a PVC: it sees its files, ConfigMap updates arrive, the
/// PVC data survives a killed process and a recreated pod, and the PVC's directory goes with the
/// PVC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_and_pvc_survive_restarts() {
    let began = Instant::now();
    let env = start("volumes", 3).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    cms.create(
        &PostParams::default(),
        &config_map("greeting", "greeting", "hello"),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("token".into()),
                    ..Default::default()
                },
                string_data: Some([("token".to_string(), "s3cret".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &env.ns);
    pvcs.create(&PostParams::default(), &pvc("data"))
        .await
        .unwrap();
    env.create(&stateful_pod(&env, "store-0")).await;
    let pods = env.pods();
    let pod = wait_for(&pods, "store-0", 60, "pod Ready", ready)
        .await
        .unwrap();
    let status = pod.status.clone().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("127."), "loopback pod IP, got {ip}");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(
        env.agent
            .node_names()
            .contains(pod.spec.as_ref().unwrap().node_name.as_ref().unwrap())
    );

    let dir = pvc_dir(&env, "data").await;
    assert!(
        dir.starts_with(&env.state_dir),
        "PVC directory under the state dir: {}",
        dir.display()
    );
    let seen = dir.join("seen");
    let boots = dir.join("boots");
    eventually(10, "the pod reads its ConfigMap", || async {
        (std::fs::read_to_string(&seen).ok()? == "hello").then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&boots).unwrap(),
        format!("boot store-0 {ip}\n")
    );
    eventually(10, "the pod reads its Secret", || async {
        (std::fs::read_to_string(dir.join("token")).ok()? == "s3cret").then_some(())
    })
    .await;
    // The container path is a private bind mount: the host's /var/lib/na-test stays empty.
    assert!(!std::path::Path::new("/var/lib/na-test/boots").exists());

    // ConfigMap updates reach the running container, as with kubelet.
    cms.patch(
        "greeting",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"greeting": "bonjour"}})),
    )
    .await
    .unwrap();
    eventually(20, "the ConfigMap update", || async {
        (std::fs::read_to_string(&seen).ok()? == "bonjour").then_some(())
    })
    .await;

    // Kill the process: it restarts (restartPolicy Always) and sees its data.
    assert_eq!(env.agent.kill_pod(&env.ns, "store-0").await.unwrap(), 1);
    let pod = wait_for(&pods, "store-0", 30, "restart after kill", |p| {
        restarts(p) == 1 && ready(p)
    })
    .await
    .unwrap();
    let cs = main_status(Some(&pod)).unwrap();
    let last = cs.last_state.unwrap().terminated.unwrap();
    assert_eq!(
        (last.exit_code, last.signal, last.reason.as_deref()),
        (137, Some(9), Some("Error"))
    );
    assert_eq!(
        pod.status.unwrap().pod_ip.as_deref(),
        Some(ip.as_str()),
        "address kept for the pod's lifetime"
    );
    eventually(10, "second boot recorded", || async {
        (std::fs::read_to_string(&boots).ok()?.lines().count() == 2).then_some(())
    })
    .await;

    // Delete and recreate the pod: same PVC, same data.
    pods.delete("store-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&pods, "store-0", 30, "pod deleted", |p| p.is_none()).await;
    env.create(&stateful_pod(&env, "store-0")).await;
    wait_for(&pods, "store-0", 60, "recreated pod Ready", ready).await;
    eventually(10, "third boot recorded", || async {
        (std::fs::read_to_string(&boots).ok()?.lines().count() == 3).then_some(())
    })
    .await;

    // Deleting pod and PVC removes the volume and its directory.
    pods.delete("store-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&pods, "store-0", 30, "pod deleted", |p| p.is_none()).await;
    pvcs.delete("data", &DeleteParams::default()).await.unwrap();
    eventually(30, "PVC directory removed", || async {
        (!dir.exists()).then_some(())
    })
    .await;
    env.shutdown().await;
    eprintln!(
        "configmap_and_pvc_survive_restarts took {:?}",
        began.elapsed()
    );
}

/// Pod host names (headless Service of the pod's subdomain) and Service names resolve for any
/// process on the machine; a ClusterIP Service only lists ready pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_and_readiness_follows_probe() {
    let began = Instant::now();
    let env = start("dns", 2).await;
    let marker = env.state_dir.join("ready-marker");
    let svcs: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    for (name, headless, publish) in [("peer", true, true), ("front", false, false)] {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(labels(&[("app", "dns")])),
                cluster_ip: headless.then(|| "None".to_string()),
                publish_not_ready_addresses: Some(publish),
                ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                    port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        };
        svcs.create(&PostParams::default(), &svc).await.unwrap();
    }
    let mut pod = env.sh_pod("web-0", "exec sleep 3600");
    pod.metadata.labels = Some(labels(&[("app", "dns")]));
    let spec = pod.spec.as_mut().unwrap();
    spec.hostname = Some("web-0".into());
    spec.subdomain = Some("peer".into());
    spec.containers[0].readiness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "test".into(),
                "-f".into(),
                marker.to_string_lossy().into_owned(),
            ]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    });
    env.create(&pod).await;
    let pods = env.pods();
    let pod = wait_for(&pods, "web-0", 60, "pod Running", |p| {
        phase(p).as_deref() == Some("Running")
    })
    .await
    .unwrap();
    let ip: IpAddr = pod
        .status
        .as_ref()
        .unwrap()
        .pod_ip
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!ready(Some(&pod)), "not ready before the probe succeeds");
    let ns = &env.ns;
    // publishNotReadyAddresses: the pod's own name resolves before it is ready...
    assert_eq!(resolve(&format!("web-0.peer.{ns}.svc")).await, vec![ip]);
    assert_eq!(
        resolve(&format!("web-0.peer.{ns}.svc.cluster.local")).await,
        vec![ip]
    );
    // ...but the ClusterIP service has no endpoint yet.
    assert!(resolve(&format!("front.{ns}.svc")).await.is_empty());

    std::fs::write(&marker, "").unwrap();
    wait_for(
        &pods,
        "web-0",
        20,
        "pod Ready after the probe passes",
        ready,
    )
    .await;
    eventually(10, "service name resolves", || async {
        (resolve(&format!("front.{ns}.svc.cluster.local")).await == vec![ip]).then_some(())
    })
    .await;
    assert_eq!(resolve(&format!("front.{ns}.svc")).await, vec![ip]);
    assert_eq!(resolve(&format!("peer.{ns}.svc")).await, vec![ip]);
    // Another process (getent, through nsswitch) sees the same.
    let out = std::process::Command::new("getent")
        .args(["hosts", &format!("front.{ns}.svc")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&ip.to_string()));

    std::fs::remove_file(&marker).unwrap();
    let pod = wait_for(
        &pods,
        "web-0",
        20,
        "pod not Ready after the probe fails",
        |p| condition(p, "Ready") == Some(false),
    )
    .await
    .unwrap();
    assert_eq!(phase(Some(&pod)).as_deref(), Some("Running"));
    eventually(10, "service name gone", || async {
        resolve(&format!("front.{ns}.svc"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&pods, "web-0", 30, "pod deleted", |p| p.is_none()).await;
    assert!(
        resolve(&format!("web-0.peer.{ns}.svc")).await.is_empty(),
        "names go with the pod"
    );
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(hosts.contains(&format!("# BEGIN node-agent {}", env.agent.id())));
    let id = env.agent.id().to_string();
    env.shutdown().await;
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        !hosts.contains(&format!("node-agent {id}")),
        "hosts block removed on shutdown"
    );
    eprintln!(
        "names_resolve_and_readiness_follows_probe took {:?}",
        began.elapsed()
    );
}

/// A TCP readiness probe passes only while something listens on its port: of two pods running
/// the same server, the one probing the served port is Ready and the other is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_probe_follows_the_listening_socket() {
    let env = start("tcp", 1).await;
    let tcp_pod = |name: &str, port: i32| {
        let mut pod = env.sh_pod(name, "exec python3 -m http.server --bind \"$POD_IP\" 8080");
        pod.spec.as_mut().unwrap().containers[0].readiness_probe = Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            period_seconds: Some(1),
            timeout_seconds: Some(1),
            failure_threshold: Some(1),
            ..Default::default()
        });
        pod
    };
    env.create(&tcp_pod("open-0", 8080)).await;
    env.create(&tcp_pod("closed-0", 8081)).await;
    let pods = env.pods();
    wait_for(
        &pods,
        "open-0",
        60,
        "the pod probing its served port Ready",
        ready,
    )
    .await;
    // Both servers run by now; give the other pod's probe a few periods.
    wait_for(&pods, "closed-0", 30, "the other pod Running", |p| {
        p.and_then(|p| p.status.as_ref()?.phase.clone()).as_deref() == Some("Running")
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let closed = pods.get("closed-0").await.unwrap();
    assert_eq!(condition(Some(&closed), "Ready"), Some(false));
    env.shutdown().await;
}

/// Freezing a pod fails its HTTP readiness probe; a NotReady node is reported in the node's
/// and (through the controller manager) the pod's status; Down freezes the processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_and_node_faults_are_reported() {
    let began = Instant::now();
    let env = start("faults", 1).await;
    let mut pod = env.sh_pod(
        "http-0",
        "exec python3 -m http.server --bind \"$POD_IP\" 8080",
    );
    pod.spec.as_mut().unwrap().containers[0].readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(8080),
            path: Some("/".into()),
            ..Default::default()
        }),
        period_seconds: Some(1),
        timeout_seconds: Some(1),
        failure_threshold: Some(1),
        ..Default::default()
    });
    env.create(&pod).await;
    let pods = env.pods();
    let pod = wait_for(&pods, "http-0", 60, "pod Ready", ready)
        .await
        .unwrap();
    let node = pod.spec.unwrap().node_name.unwrap();

    assert_eq!(env.agent.freeze_pod(&env.ns, "http-0").await.unwrap(), 1);
    wait_for(&pods, "http-0", 20, "frozen pod not Ready", |p| {
        condition(p, "Ready") == Some(false)
    })
    .await;
    env.agent.thaw_pod(&env.ns, "http-0").await.unwrap();
    wait_for(&pods, "http-0", 20, "thawed pod Ready", ready).await;

    let nodes: Api<Node> = Api::all(env.client.clone());
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
    env.agent
        .set_node_fault(&node, NodeFault::NotReady)
        .unwrap();
    wait_for(&nodes, &node, 20, "node NotReady", |n| {
        node_ready(n).as_deref() == Some("False")
    })
    .await;
    // The node's pods are marked not ready (as the node lifecycle controller would).
    let p = wait_for(&pods, "http-0", 20, "pod marked not ready", |p| {
        condition(p, "Ready") == Some(false)
    })
    .await
    .unwrap();
    let cond = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(cond.reason.as_deref(), Some("NodeNotReady"));
    env.agent.set_node_fault(&node, NodeFault::None).unwrap();
    wait_for(&nodes, &node, 20, "node Ready again", |n| {
        node_ready(n).as_deref() == Some("True")
    })
    .await;
    wait_for(&pods, "http-0", 30, "pod Ready again", ready).await;

    // Down: the processes are frozen (the agent stops reporting, so check the process state).
    let (_, pid) = env.agent.pod_processes(&env.ns, "http-0").await.unwrap()[0].clone();
    env.agent.set_node_fault(&node, NodeFault::Down).unwrap();
    let state = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    eventually(10, "process stopped", || async {
        state(pid).contains(") T ").then_some(())
    })
    .await;
    wait_for(&nodes, &node, 20, "node NotReady (down)", |n| {
        node_ready(n).as_deref() == Some("False")
    })
    .await;
    env.agent.set_node_fault(&node, NodeFault::None).unwrap();
    eventually(10, "process thawed", || async {
        (!state(pid).contains(") T ")).then_some(())
    })
    .await;
    wait_for(
        &pods,
        "http-0",
        30,
        "pod Ready after the node is back",
        ready,
    )
    .await;
    env.shutdown().await;
    eprintln!(
        "freeze_and_node_faults_are_reported took {:?}",
        began.elapsed()
    );
}

/// Deleting a pod sends SIGTERM (the process sees it) and the process is gone before the pod
/// object is; a kill through the annotation restarts the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_annotation_and_graceful_deletion() {
    let began = Instant::now();
    let env = start("delete", 1).await;
    let out = env.state_dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // The emptyDir outlives container restarts (not the pod); `$$$$` is `$$` after expansion.
    let script = "echo $$$$ >> /var/lib/na-scratch/starts; cp /var/lib/na-scratch/starts /mnt/out/starts; \
                  trap 'echo term > /mnt/out/term; exit 0' TERM; while :; do sleep 0.1; done";
    let mut pod = env.sh_pod("grace-0", script);
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        Volume {
            name: "out".into(),
            host_path: Some(HostPathVolumeSource {
                path: out.to_string_lossy().into_owned(),
                type_: None,
            }),
            ..Default::default()
        },
        Volume {
            name: "scratch".into(),
            empty_dir: Some(Default::default()),
            ..Default::default()
        },
    ]);
    spec.containers[0].volume_mounts = Some(vec![
        VolumeMount {
            name: "out".into(),
            mount_path: "/mnt/out".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "scratch".into(),
            mount_path: "/var/lib/na-scratch".into(),
            ..Default::default()
        },
    ]);
    env.create(&pod).await;
    let pods = env.pods();
    wait_for(&pods, "grace-0", 60, "pod Ready", ready).await;

    let patch = serde_json::json!({"metadata": {"annotations": {KILL_ANNOTATION: "1"}}});
    pods.patch("grace-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let pod = wait_for(
        &pods,
        "grace-0",
        30,
        "restart after the kill annotation",
        |p| restarts(p) == 1 && ready(p),
    )
    .await
    .unwrap();
    assert_eq!(
        main_status(Some(&pod))
            .unwrap()
            .last_state
            .unwrap()
            .terminated
            .unwrap()
            .exit_code,
        137
    );
    eventually(10, "two starts recorded in the emptyDir", || async {
        (std::fs::read_to_string(out.join("starts"))
            .ok()?
            .lines()
            .count()
            == 2)
            .then_some(())
    })
    .await;

    let pids = env.agent.pod_processes(&env.ns, "grace-0").await.unwrap();
    assert_eq!(pids.len(), 1);
    let pid = pids[0].1;
    assert!(alive(pid));
    pods.delete("grace-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&pods, "grace-0", 30, "pod object deleted", |p| p.is_none()).await;
    assert!(
        !alive(pid),
        "process stopped before the pod object was deleted"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("term")).unwrap(),
        "term\n",
        "the process got SIGTERM"
    );
    env.shutdown().await;
    eprintln!(
        "kill_annotation_and_graceful_deletion took {:?}",
        began.elapsed()
    );
}

/// restartPolicy Never/OnFailure with exit codes give Failed/Succeeded phases; an unknown image
/// is reported and runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_phases_and_unknown_images() {
    let began = Instant::now();
    let env = start("phases", 1).await;
    let pods = env.pods();
    let mut failing = env.sh_pod("fail-0", "exit 3");
    failing.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    env.create(&failing).await;
    let mut ok = env.sh_pod("ok-0", "exit 0");
    ok.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    env.create(&ok).await;
    let mut retry = env.sh_pod("retry-0", "exit 1");
    retry.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    env.create(&retry).await;
    let mut init = env.sh_pod("init-0", "test \"$(cat /var/lib/na-init/x)\" = from-init");
    let spec = init.spec.as_mut().unwrap();
    spec.restart_policy = Some("Never".into());
    spec.volumes = Some(vec![Volume {
        name: "w".into(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }]);
    spec.containers[0].volume_mounts = Some(vec![VolumeMount {
        name: "w".into(),
        mount_path: "/var/lib/na-init".into(),
        ..Default::default()
    }]);
    let mut first = spec.containers[0].clone();
    first.name = "init".into();
    first.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "sleep 1; echo from-init > /var/lib/na-init/x".into(),
    ]);
    spec.init_containers = Some(vec![first]);
    env.create(&init).await;
    let mut unknown = env.sh_pod("nginx-0", "");
    unknown.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.27".into());
    env.create(&unknown).await;

    let p = wait_for(&pods, "fail-0", 60, "Failed", |p| {
        phase(p).as_deref() == Some("Failed")
    })
    .await
    .unwrap();
    let t = main_status(Some(&p))
        .unwrap()
        .state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    let p = wait_for(&pods, "ok-0", 60, "Succeeded", |p| {
        phase(p).as_deref() == Some("Succeeded")
    })
    .await
    .unwrap();
    let t = main_status(Some(&p))
        .unwrap()
        .state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    let p = wait_for(&pods, "retry-0", 60, "restarted on failure", |p| {
        restarts(p) >= 2
    })
    .await
    .unwrap();
    assert_eq!(phase(Some(&p)).as_deref(), Some("Running"));
    let p = wait_for(
        &pods,
        "init-0",
        60,
        "Succeeded after the init container",
        |p| phase(p).as_deref() == Some("Succeeded"),
    )
    .await
    .unwrap();
    let init_status = &p
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .as_ref()
        .unwrap()[0];
    let t = init_status
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(condition(Some(&p), "Initialized"), Some(true));
    let p = wait_for(&pods, "nginx-0", 60, "ErrImagePull", |p| {
        main_status(p)
            .and_then(|c| c.state?.waiting?.reason)
            .as_deref()
            == Some("ErrImagePull")
    })
    .await
    .unwrap();
    let waiting = main_status(Some(&p))
        .unwrap()
        .state
        .unwrap()
        .waiting
        .unwrap();
    assert!(
        waiting
            .message
            .unwrap()
            .contains("no local program for image \"nginx:1.27\"")
    );
    assert_eq!(phase(Some(&p)).as_deref(), Some("Pending"));
    assert!(
        env.agent
            .pod_processes(&env.ns, "nginx-0")
            .await
            .unwrap()
            .is_empty()
    );
    env.shutdown().await;
    eprintln!(
        "exit_codes_phases_and_unknown_images took {:?}",
        began.elapsed()
    );
}

/// The real pd-server runs from the `pingcap/pd` image with a ConfigMap, a PVC and advertise
/// URLs on its pod host name, and answers on that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pd_server_runs_from_the_pd_image() {
    let began = Instant::now();
    let env = start("pd", 3).await;
    let ns = env.ns.clone();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &config_map("pd", "pd.toml", "[log]\nlevel = \"info\"\n"),
    )
    .await
    .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &ns);
    pvcs.create(&PostParams::default(), &pvc("pd-data"))
        .await
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(env.client.clone(), &ns);
    let peer = Service {
        metadata: ObjectMeta {
            name: Some("pd-peer".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "pd")])),
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                port: 2380,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    svcs.create(&PostParams::default(), &peer).await.unwrap();
    let mut pod = env.sh_pod("pd-0", "");
    pod.metadata.labels = Some(labels(&[("app", "pd")]));
    let spec = pod.spec.as_mut().unwrap();
    spec.hostname = Some("pd-0".into());
    spec.subdomain = Some("pd-peer".into());
    let c = &mut spec.containers[0];
    c.image = Some("docker.io/pingcap/pd:v8.5.0".into());
    let url = "$(POD_NAME).pd-peer.$(NS).svc";
    c.command = Some(vec!["/pd-server".into()]);
    c.args = Some(vec![
        "--name=$(POD_NAME)".into(),
        "--client-urls=http://$(POD_IP):2379".into(),
        "--peer-urls=http://$(POD_IP):2380".into(),
        format!("--advertise-client-urls=http://{url}:2379"),
        format!("--advertise-peer-urls=http://{url}:2380"),
        format!("--initial-cluster=$(POD_NAME)=http://{url}:2380"),
        "--data-dir=/var/lib/pd".into(),
        "--config=/etc/pd/pd.toml".into(),
    ]);
    c.readiness_probe = Some(Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(2379),
            path: Some("/pd/api/v1/health".into()),
            ..Default::default()
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    c.volume_mounts = Some(vec![
        VolumeMount {
            name: "config".into(),
            mount_path: "/etc/pd".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/pd".into(),
            ..Default::default()
        },
    ]);
    spec.volumes = Some(vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "pd".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "pd-data".into(),
                read_only: None,
            }),
            ..Default::default()
        },
    ]);
    env.create(&pod).await;
    let pods = env.pods();
    let pod = wait_for(&pods, "pd-0", 120, "pd-0 Ready", ready)
        .await
        .unwrap();
    let status = pod.status.clone().unwrap();
    let (ip, host_ip) = (status.pod_ip.unwrap(), status.host_ip.unwrap());
    let host = format!("pd-0.pd-peer.{ns}.svc");
    let members = http_get(&host, 2379, "/pd/api/v1/members").await.unwrap();
    assert!(members.starts_with("HTTP/1.1 200"), "{members}");
    assert!(
        members.contains("\"name\": \"pd-0\"") || members.contains("\"name\":\"pd-0\""),
        "{members}"
    );
    assert!(
        members.contains(&format!("http://{host}:2379")),
        "advertised on the pod host name: {members}"
    );
    // It listens on its own address only.
    assert!(
        http_get(&ip, 2379, "/pd/api/v1/version")
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(&host_ip, 2379, "/pd/api/v1/version")
            .await
            .is_err(),
        "nothing listens on the node's address"
    );
    // Its data directory is the PVC.
    let dir = pvc_dir(&env, "pd-data").await;
    assert!(
        dir.join("member").is_dir(),
        "PD data in the PVC directory {}",
        dir.display()
    );
    let log_dir = env
        .agent
        .pod_log_dir(&ns, "pd-0", pod.metadata.uid.as_deref().unwrap());
    let log = std::fs::read_to_string(log_dir.join("main/0.log")).unwrap();
    assert!(log.contains("PD config"), "pd-server log captured");
    env.shutdown().await;
    eprintln!(
        "pd_server_runs_from_the_pd_image took {:?}",
        began.elapsed()
    );
}

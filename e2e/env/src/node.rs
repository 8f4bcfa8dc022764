//! A real node: containerd, kubelet and kube-proxy in the node's network namespace and in a mount
//! namespace of its own.
//!
//! The mount namespace is held by a `sleep` (the "holder") that set it up; the node's processes
//! join it with `nsenter`. In it, node-private directories are bind-mounted over `/var` and `/run`
//! (so containerd, kubelet and the CNI plugins run with their default paths and never touch the
//! host's), and stand-in files over the VM-wide sysctls the kubelet would otherwise rewrite
//! (`vm.overcommit_memory`, `kernel.panic`, ...). Every mount the node makes (containers' overlay
//! roots, volume tmpfs, pod network namespaces) happens in that namespace and disappears with it.
//!
//! Pods' cgroups live under the node's `cgroupRoot` (cgroupfs driver, cgroup v1), which this
//! module creates in every hierarchy; [`crate::teardown`] removes them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testenv::process::Server;

use crate::Error;
use crate::cmd::{self, run};
use crate::plan::{
    CLUSTER_CIDR, CLUSTER_DOMAIN, CONTROL_PLANE_IP, CONTROL_PLANE_ROLE, NodePlan, Role, ZONE_LABEL,
};
use crate::state::State;

/// The sandbox image containerd gives every pod (built by `images/build.sh`).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10.1";

/// The VM-wide sysctls the kubelet sets when they differ from what it wants; each gets a stand-in
/// file in the node's mount namespace.
const KUBELET_SYSCTLS: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// inotify instances per user that several environments at once need: each kubelet takes six,
/// its containerd, the control plane and the add-ons more, all as root. Debian's default of 128
/// runs out with two or three environments (kind documents the same limit for its nodes).
const INOTIFY_INSTANCES: u64 = 1024;

/// Raises `fs.inotify.max_user_instances` to [`INOTIFY_INSTANCES`] when it is lower (it only
/// bounds a per-user count; nothing else changes). Without it a kubelet starts without its
/// cAdvisor and certificate watches ("too many open files") and never registers its node.
pub fn raise_inotify_instances() {
    let path = Path::new("/proc/sys/fs/inotify/max_user_instances");
    let current: Option<u64> = std::fs::read_to_string(path)
        .ok()
        .and_then(|v| v.trim().parse().ok());
    if current.is_some_and(|v| v < INOTIFY_INSTANCES)
        && let Err(e) = std::fs::write(path, INOTIFY_INSTANCES.to_string())
    {
        tracing::warn!(error = %e, ?current, "cannot raise fs.inotify.max_user_instances; kubelets may fail to start");
    }
}

/// How long a node's processes may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The holder's script: `$1` is the node directory. Prints `ready` once the mounts are in place.
/// The node's resolv.conf names a resolver where nothing listens: an image that was not imported
/// fails to pull at once, and no lookup leaves the machine.
const HOLDER: &str = r#"set -e
d=$1
for s in $(cat "$d/sysctl/list"); do
  mount --bind "$d/sysctl/$(echo "$s" | tr / _)" "/proc/sys/$s"
done
mount --bind "$d/var" /var
mount --bind "$d/run" /run
mount --bind "$d/resolv.conf" /etc/resolv.conf
echo ready
exec sleep infinity
"#;

/// containerd's configuration: CRI with runc on cgroupfs, a sandbox image that is imported (no
/// registry), `restrict_oom_score_adj` (this VM cannot lower an OOM score), CNI from Debian's
/// plugins with the node's own conf dir. Root and state are the defaults, inside the node's
/// `/var` and `/run`. Plugins that would touch the host (`opt` writes `/opt/containerd`) or
/// cannot work here are off.
pub fn containerd_config(cni_conf_dir: &Path) -> String {
    format!(
        r#"version = 2
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{}"
"#,
        cni_conf_dir.display()
    )
}

/// The pod network of a node: a `cni0` bridge as the pods' gateway (so traffic between pods of
/// different nodes is routed by the nodes, as in kubenet), addresses from the node's pod CIDR.
pub fn cni_config(node: &NodePlan) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "tikv-env",
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": node.pod_cidr, "gateway": node.pod_gateway.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }],
    })
    .to_string()
}

/// Paths the kubelet configuration refers to.
pub struct KubeletPaths<'a> {
    /// CA of client certificates (the API server's requests to the kubelet).
    pub client_ca: &'a Path,
    /// The resolv.conf the kubelet bases pods' DNS on (the node's own: the kubelet adds cluster
    /// DNS and the search list).
    pub resolv_conf: &'a Path,
}

/// The kubelet's configuration. Things that matter on this machine: cgroupfs on cgroup v1
/// (allowed in 1.34 with `failCgroupV1: false`), the node's own cgroup root, no eviction or image
/// garbage collection on a shared disk (the images cannot be pulled again), API server requests
/// authenticated by certificate and authorized through the API server.
pub fn kubelet_config(node: &NodePlan, paths: &KubeletPaths) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failCgroupV1: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: {ip}
healthzBindAddress: {ip}
readOnlyPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
clusterDNS: [{dns}]
clusterDomain: {CLUSTER_DOMAIN}
resolvConf: {resolv}
evictionHard: {{memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
"#,
        cgroup_root = node.cgroup_root,
        ip = node.ip,
        ca = paths.client_ca.display(),
        dns = CONTROL_PLANE_IP,
        resolv = paths.resolv_conf.display(),
    )
}

/// kube-proxy's configuration: iptables mode, the cluster CIDR (traffic from outside it to a
/// ClusterIP is masqueraded, so replies come back through this node), no conntrack sysctls (those
/// are VM-wide), health on the node's address.
pub fn kube_proxy_config(node: &NodePlan, kubeconfig: &Path) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
mode: iptables
clusterCIDR: {CLUSTER_CIDR}
hostnameOverride: {name}
bindAddress: {ip}
healthzBindAddress: {ip}:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
"#,
        kubeconfig = kubeconfig.display(),
        name = node.name,
        ip = node.ip,
    )
}

/// The kubelet's flags besides its config file: identity, address and what it registers with.
pub fn kubelet_args(node: &NodePlan, dir: &Path) -> Vec<String> {
    let mut args = vec![
        format!("--config={}", dir.join("kubelet.yaml").display()),
        format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()),
        format!("--hostname-override={}", node.name),
        format!("--node-ip={}", node.ip),
    ];
    match node.role {
        Role::Worker => {
            if let Some(zone) = &node.zone {
                args.push(format!("--node-labels={ZONE_LABEL}={zone}"));
            }
        }
        // The role label is set once the node exists (a kubelet may not set it on itself).
        Role::ControlPlane => args.push(format!(
            "--register-with-taints={CONTROL_PLANE_ROLE}:NoSchedule"
        )),
    }
    args
}

/// The processes of one running node.
pub struct Node {
    /// Its plan.
    pub plan: NodePlan,
    /// In start order; stopped in reverse.
    processes: Vec<Server>,
}

impl Node {
    /// Prepares the node's directory and cgroup root, starts its holder and containerd, and
    /// imports the images (`(repository, archive)`) into its containerd. The kubelet starts with
    /// [`Node::start_kubelet`].
    pub fn start_runtime(
        state: &State,
        plan: &NodePlan,
        images: &[(String, PathBuf)],
    ) -> Result<Node, Error> {
        let dir = state.node_dir(&plan.name);
        prepare(&dir, plan)?;
        let logs = dir.join("logs");
        let mut node = Node {
            plan: plan.clone(),
            processes: Vec::new(),
        };
        let holder = Server::spawn(
            "holder",
            Path::new("unshare"),
            [
                "--mount".to_string(),
                "--propagation=private".into(),
                "nsenter".into(),
                format!("--net=/run/netns/{}", plan.netns),
                "sh".into(),
                "-c".into(),
                HOLDER.into(),
                "sh".into(),
                dir.display().to_string(),
            ],
            &logs,
        )?;
        node.processes.push(holder);
        wait(&mut node.processes, "holder", || {
            std::fs::read_to_string(logs.join("holder.log"))
                .is_ok_and(|l| l.lines().any(|l| l == "ready"))
        })?;
        let containerd = node.spawn(
            state,
            "containerd",
            &[format!(
                "--config={}",
                dir.join("containerd.toml").display()
            )],
        )?;
        node.processes.push(containerd);
        let socket = state.containerd_socket(&plan.name);
        wait(&mut node.processes, "containerd", || {
            socket.exists()
                && cmd::run("ctr", ["-a", &socket.display().to_string(), "version"]).is_ok()
        })?;
        for (repo, archive) in images {
            cmd::run(
                "ctr",
                [
                    "-a",
                    &socket.display().to_string(),
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    "--base-name",
                    repo,
                    &archive.display().to_string(),
                ],
            )?;
        }
        Ok(node)
    }

    /// Starts the kubelet and kube-proxy.
    pub fn start_kubelet(&mut self, state: &State) -> Result<(), Error> {
        let dir = state.node_dir(&self.plan.name);
        let kubelet = self.spawn(state, "kubelet", &kubelet_args(&self.plan, &dir))?;
        self.processes.push(kubelet);
        let proxy = self.spawn(
            state,
            "kube-proxy",
            &[format!(
                "--config={}",
                dir.join("kube-proxy.yaml").display()
            )],
        )?;
        self.processes.push(proxy);
        Ok(())
    }

    /// Fails with the log of any of its processes that exited.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        for p in &mut self.processes {
            p.ensure_running()?;
        }
        Ok(())
    }

    /// Starts `program` (from the Go-built bin dir when it is there, else `PATH`) in the node's
    /// namespaces, logging to the node's `logs/`.
    fn spawn(&self, state: &State, program: &str, args: &[String]) -> Result<Server, Error> {
        let holder = self
            .processes
            .first()
            .and_then(Server::pid)
            .ok_or_else(|| Error::NotFound(format!("the holder of node {}", self.plan.name)))?;
        let path = testenv::bin_path(program)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| program.to_string());
        let mut full = vec![
            "-t".to_string(),
            holder.to_string(),
            "-m".into(),
            "-n".into(),
            path,
        ];
        full.extend(args.iter().cloned());
        Ok(Server::spawn(
            program,
            Path::new("nsenter"),
            full,
            &state.node_dir(&self.plan.name).join("logs"),
        )?)
    }

    /// Kills the node's processes, newest first (the holder last: its mount namespace goes when
    /// the last process in it is gone). Containers and shims are [`crate::teardown`]'s job.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.stop();
        }
    }
}

/// The node directory: configuration files, `var/` and `run/` for the mount namespace, stand-ins
/// for the kubelet's sysctls (with the VM's values), PV directories; and the cgroup root.
fn prepare(dir: &Path, plan: &NodePlan) -> Result<(), Error> {
    for sub in [
        "var/lib",
        "var/log",
        "run",
        "logs",
        "sysctl",
        "cni",
        "local-path",
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(Error::io(format!("creating {}", d.display())))?;
    }
    let var_run = dir.join("var/run");
    if !var_run.exists() {
        std::os::unix::fs::symlink("/run", &var_run)
            .map_err(Error::io(format!("creating {}", var_run.display())))?;
    }
    let mut present = Vec::new();
    for s in KUBELET_SYSCTLS {
        let Ok(value) = std::fs::read_to_string(Path::new("/proc/sys").join(s)) else {
            continue; // Not in this kernel: nothing to protect.
        };
        write(&dir.join("sysctl").join(s.replace('/', "_")), &value)?;
        present.push(s);
    }
    write(&dir.join("sysctl/list"), &present.join("\n"))?;
    write(
        &dir.join("containerd.toml"),
        &containerd_config(&dir.join("cni")),
    )?;
    write(&dir.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
    write(&dir.join("cni/10-tikv-env.conflist"), &cni_config(plan))?;
    for h in cgroup_hierarchies()? {
        let d = h.join(plan.cgroup_root.trim_start_matches('/'));
        std::fs::create_dir_all(&d)
            .map_err(Error::io(format!("creating cgroup {}", d.display())))?;
    }
    Ok(())
}

/// The mounted cgroup v1 hierarchies (`/sys/fs/cgroup/cpu`, ...), without the cgroup2 `unified`
/// one, which kubelet does not use (runc adds to it on its own; teardown covers it).
pub fn cgroup_hierarchies() -> Result<Vec<PathBuf>, Error> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(Error::io("reading /proc/self/mounts"))?;
    Ok(mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, path, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup").then(|| PathBuf::from(path))
        })
        .collect())
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(Error::io(format!("writing {}", path.display())))
}

/// Polls `ready` until it holds, failing early with the log of a process that exited.
fn wait(
    processes: &mut [Server],
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        for p in processes.iter_mut() {
            p.ensure_running()?;
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = processes
                .last()
                .map(|p| p.log_tail(testenv::process::LOG_TAIL_LINES))
                .unwrap_or_default();
            return Err(Error::NotReady {
                what: what.into(),
                timeout: START_TIMEOUT,
                detail: tail,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `crictl` against a node's containerd.
pub fn crictl(state: &State, node: &str, args: &[&str]) -> Result<String, Error> {
    let crictl = testenv::bin_path("crictl")?;
    let mut c = std::process::Command::new(crictl);
    c.arg(format!(
        "--runtime-endpoint=unix://{}",
        state.containerd_socket(node).display()
    ))
    .arg("--timeout=10s")
    .args(args);
    cmd::output(&mut c)
}

/// Fails with what to install when a program a node needs is missing.
pub fn require_tools() -> Result<(), Error> {
    for (tool, package) in [
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("ctr", "containerd"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("iptables", "iptables"),
        ("ip", "iproute2"),
    ] {
        if run("sh", ["-c", &format!("command -v {tool}")]).is_err() {
            return Err(Error::MissingTool {
                name: tool.into(),
                hint: format!("install the Debian package {package} (e2e/tools/deps.sh does)"),
            });
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Err(Error::MissingTool {
            name: "/usr/lib/cni/bridge".into(),
            hint: "install the Debian package containernetworking-plugins (e2e/tools/deps.sh does)"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    #[test]
    fn containerd_uses_runc_on_cgroupfs_and_the_imported_pause_image() {
        let c = containerd_config(Path::new("/env/nodes/node-0/cni"));
        assert!(c.contains(r#"sandbox_image = "registry.k8s.io/pause:3.10.1""#));
        assert!(c.contains("restrict_oom_score_adj = true"));
        assert!(c.contains("SystemdCgroup = false"));
        assert!(c.contains(r#"conf_dir = "/env/nodes/node-0/cni""#));
        assert!(c.contains(r#""io.containerd.internal.v1.opt""#));
    }

    #[test]
    fn the_pod_network_is_the_node_cidr_behind_a_gateway_bridge() {
        let p = Plan::new("x", 3);
        let c: serde_json::Value = serde_json::from_str(&cni_config(&p.workers()[2])).unwrap();
        let bridge = &c["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.244.3.1");
    }

    #[test]
    fn kubelet_and_kube_proxy_are_configured_for_this_node() {
        let p = Plan::new("x", 3);
        let w = &p.workers()[0];
        let paths = KubeletPaths {
            client_ca: Path::new("/env/ca.crt"),
            resolv_conf: Path::new("/env/node-resolv.conf"),
        };
        let k = kubelet_config(w, &paths);
        for want in [
            "cgroupDriver: cgroupfs",
            "cgroupRoot: /tkv-x-node-0",
            "failCgroupV1: false",
            "address: 10.200.0.11",
            "clusterDNS: [10.200.0.1]",
            "x509: {clientCAFile: /env/ca.crt}",
            "resolvConf: /env/node-resolv.conf",
            "imageGCHighThresholdPercent: 100",
        ] {
            assert!(k.contains(want), "{want} in\n{k}");
        }
        let kp = kube_proxy_config(w, Path::new("/env/proxy.kubeconfig"));
        assert!(kp.contains("hostnameOverride: node-0"));
        assert!(kp.contains("clusterCIDR: 10.244.0.0/16"));
        assert!(kp.contains("healthzBindAddress: 10.200.0.11:10256"));
        assert!(kp.contains("maxPerCore: 0"));
        let args = kubelet_args(w, Path::new("/env/nodes/node-0"));
        assert!(args.contains(&"--node-labels=topology.kubernetes.io/zone=zone-a".to_string()));
        assert!(args.contains(&"--hostname-override=node-0".to_string()));
        let cp_args = kubelet_args(p.control_plane(), Path::new("/env/nodes/control-plane"));
        assert!(cp_args.contains(
            &"--register-with-taints=node-role.kubernetes.io/control-plane:NoSchedule".to_string()
        ));
        assert!(!cp_args.iter().any(|a| a.starts_with("--node-labels")));
    }
}

//! The PD- and TiKV-specific parts of the pod: program, flags, ports, probes.

use std::collections::BTreeMap;

use api::v1alpha1::{PD, TiKV};
use kube::{Resource, ResourceExt};

use crate::kind::InstanceKind;

use crate::resources::pod::{self, CONFIG_DIR, CONFIG_FILE, PodInputs, TlsMount, fqdn, image_ref};

/// Default data directory of PD.
pub const PD_DATA_DIR: &str = "/var/lib/pd";
/// Default data directory of TiKV.
pub const TIKV_DATA_DIR: &str = "/var/lib/tikv";
/// Where PD's certificate Secret is mounted (TLS on).
pub const PD_TLS_DIR: &str = "/var/lib/pd-tls";
/// Where TiKV's certificate Secret is mounted (TLS on).
pub const TIKV_TLS_DIR: &str = "/var/lib/tikv-tls";

/// The shortest termination grace period of a pod: PD hands its leadership over and TiKV
/// flushes on SIGTERM.
const MIN_TERMINATION_GRACE_SECONDS: i64 = 60;

/// Time a store needs after its graceful shutdown to close its engines and exit.
const TIKV_EXIT_MARGIN_SECONDS: i64 = 30;

/// TiKV's default `server.graceful-shutdown-timeout`.
const TIKV_GRACEFUL_SHUTDOWN_DEFAULT: std::time::Duration = std::time::Duration::from_secs(20);

/// The termination grace period of a TiKV pod: its `server.graceful-shutdown-timeout` (the time
/// it takes on SIGTERM to hand its leaders over, whoever deleted the pod) plus time to exit, so
/// the kubelet never SIGKILLs a store in the middle of the hand-off.
pub fn tikv_termination_grace_seconds(config: Option<&str>) -> i64 {
    let graceful = config
        .and_then(|c| c.parse::<toml::Table>().ok())
        .and_then(|t| {
            let server = t.get("server")?.as_table()?;
            api::duration::parse(server.get("graceful-shutdown-timeout")?.as_str()?)
        })
        .unwrap_or(TIKV_GRACEFUL_SHUTDOWN_DEFAULT);
    (graceful.as_secs_f64().ceil() as i64 + TIKV_EXIT_MARGIN_SECONDS)
        .max(MIN_TERMINATION_GRACE_SECONDS)
}

/// Program and flags of a PD member. It listens on every address of its pod (the pod's own
/// network namespace), so probes, Services and `kubectl port-forward` (which dials localhost in
/// the pod) all reach it; it advertises its stable DNS name. Members listed in `initialMembers`
/// bootstrap together with `--initial-cluster`; others `--join` the running cluster through the
/// PD client Service.
/// PD ignores both once its data directory has a member (a restart never re-bootstraps).
/// With `tls`, every URL is `https` and PD serves and dials with the mounted certificate.
pub fn pd_command(
    pd: &PD,
    namespace: &str,
    data_dir: &str,
    join_url: &str,
    tls: bool,
) -> Vec<String> {
    let ports = &pd.spec.template.server.ports;
    let name = pd.name_any();
    let host = fqdn(&name, &pd.spec.subdomain, namespace);
    let scheme = if tls { "https" } else { "http" };
    let mut args = vec![
        "/pd-server".to_string(),
        format!("--name={name}"),
        format!("--data-dir={data_dir}"),
        format!("--client-urls={scheme}://0.0.0.0:{}", ports.client.port),
        format!(
            "--advertise-client-urls={scheme}://{host}:{}",
            ports.client.port
        ),
        format!("--peer-urls={scheme}://0.0.0.0:{}", ports.peer.port),
        format!(
            "--advertise-peer-urls={scheme}://{host}:{}",
            ports.peer.port
        ),
        format!("--config={CONFIG_DIR}/{CONFIG_FILE}"),
    ];
    if tls {
        args.extend([
            format!("--cacert={PD_TLS_DIR}/{}", tls::CA),
            format!("--cert={PD_TLS_DIR}/{}", tls::CERT),
            format!("--key={PD_TLS_DIR}/{}", tls::KEY),
        ]);
    }
    if pd.spec.initial_members.is_empty() {
        args.push(format!("--join={join_url}"));
    } else {
        let peers: Vec<String> = pd
            .spec
            .initial_members
            .iter()
            .map(|m| {
                format!(
                    "{m}={scheme}://{}:{}",
                    fqdn(m, &pd.spec.subdomain, namespace),
                    ports.peer.port
                )
            })
            .collect();
        args.push(format!("--initial-cluster={}", peers.join(",")));
    }
    args
}

/// Program and flags of a TiKV store: listening on every address of its pod, advertising its
/// stable DNS name.
pub fn tikv_command(tikv: &TiKV, namespace: &str, data_dir: &str, pd_url: &str) -> Vec<String> {
    let ports = &tikv.spec.template.server.ports;
    let host = fqdn(&tikv.name_any(), &tikv.spec.subdomain, namespace);
    let mut args = vec![
        "/tikv-server".to_string(),
        format!("--pd={pd_url}"),
        format!("--addr=0.0.0.0:{}", ports.client.port),
        format!("--advertise-addr={host}:{}", ports.client.port),
        format!("--status-addr=0.0.0.0:{}", ports.status.port),
        format!("--advertise-status-addr={host}:{}", ports.status.port),
        format!("--data-dir={data_dir}"),
        format!("--config={CONFIG_DIR}/{CONFIG_FILE}"),
    ];
    let labels = store_labels(tikv);
    if !labels.is_empty() {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        args.push(format!("--labels={}", l.join(",")));
    }
    args
}

/// The store labels PD sees: `zone`, `region` and `host` from the node topology the store is
/// pinned to (what PD's location labels isolate replicas by), plus the user's own labels.
pub fn store_labels(tikv: &TiKV) -> BTreeMap<String, String> {
    const FROM_TOPOLOGY: [(&str, &str); 3] = [
        ("topology.kubernetes.io/zone", "zone"),
        ("topology.kubernetes.io/region", "region"),
        ("kubernetes.io/hostname", "host"),
    ];
    let mut labels = tikv.spec.template.server.labels.clone();
    if let Some(topology) = &tikv.spec.topology {
        for (node_label, store_label) in FROM_TOPOLOGY {
            if let Some(v) = topology.get(node_label) {
                labels.insert(store_label.to_string(), v.clone());
            }
        }
    }
    labels
}

/// The advertised client address of a store, as PD records it.
pub fn tikv_address(tikv: &TiKV, namespace: &str) -> String {
    format!(
        "{}:{}",
        fqdn(&tikv.name_any(), &tikv.spec.subdomain, namespace),
        tikv.spec.template.server.ports.client.port
    )
}

/// Pod inputs of a PD member; `tls_secret`: its certificate (TLS on).
pub fn pd_pod_inputs<'a>(
    pd: &'a PD,
    namespace: &'a str,
    join_url: &str,
    tls_secret: Option<&str>,
) -> Option<PodInputs<'a>> {
    let spec = &pd.spec.template;
    let data = pod::data_dir(&spec.volumes, PD_DATA_DIR)?;
    Some(PodInputs {
        name: pd.meta().name.as_deref().unwrap_or_default(),
        namespace,
        labels: pd.labels().clone(),
        owner: pd.controller_owner_ref(&())?,
        subdomain: &pd.spec.subdomain,
        topology: pd.spec.topology.as_ref(),
        component: PD::COMPONENT,
        image: image_ref(&spec.image, &spec.version),
        command: pd_command(pd, namespace, &data, join_url, tls_secret.is_some()),
        ports: vec![
            ("client", spec.server.ports.client.port),
            ("peer", spec.server.ports.peer.port),
        ],
        readiness: pod::tcp_probe(spec.server.ports.client.port),
        metrics_port: spec.server.ports.client.port,
        volumes: &spec.volumes,
        data_path: PD_DATA_DIR,
        resources: spec.resources.as_ref(),
        overlay: spec.overlay.as_ref(),
        termination_grace_seconds: MIN_TERMINATION_GRACE_SECONDS,
        tls: tls_secret.map(|s| TlsMount::new(s, PD_TLS_DIR)),
    })
}

/// Pod inputs of a TiKV store; `tls_secret`: its certificate (TLS on; the files are in its
/// config's `[security]`).
pub fn tikv_pod_inputs<'a>(
    tikv: &'a TiKV,
    namespace: &'a str,
    pd_url: &str,
    tls_secret: Option<&str>,
) -> Option<PodInputs<'a>> {
    let spec = &tikv.spec.template;
    let data = pod::data_dir(&spec.volumes, TIKV_DATA_DIR)?;
    Some(PodInputs {
        name: tikv.meta().name.as_deref().unwrap_or_default(),
        namespace,
        labels: tikv.labels().clone(),
        owner: tikv.controller_owner_ref(&())?,
        subdomain: &tikv.spec.subdomain,
        topology: tikv.spec.topology.as_ref(),
        component: TiKV::COMPONENT,
        image: image_ref(&spec.image, &spec.version),
        command: tikv_command(tikv, namespace, &data, pd_url),
        ports: vec![
            ("client", spec.server.ports.client.port),
            ("status", spec.server.ports.status.port),
        ],
        // With TLS the status port wants a client certificate, which the kubelet has not.
        readiness: match tls_secret {
            None => pod::http_probe("/status", spec.server.ports.status.port),
            Some(_) => pod::tcp_probe(spec.server.ports.status.port),
        },
        metrics_port: spec.server.ports.status.port,
        volumes: &spec.volumes,
        data_path: TIKV_DATA_DIR,
        resources: spec.resources.as_ref(),
        overlay: spec.overlay.as_ref(),
        termination_grace_seconds: tikv_termination_grace_seconds(spec.config.as_deref()),
        tls: tls_secret.map(|s| TlsMount::new(s, TIKV_TLS_DIR)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::pod::build_pod;

    fn pd(initial: &[&str]) -> PD {
        let mut pd: PD = serde_yaml::from_str(
            r#"
apiVersion: core.tikv.org/v1alpha1
kind: PD
metadata: {name: basic-pd-abc, namespace: ns, uid: u1, labels: {tikv.org/revision: r1}}
spec:
  cluster: {name: basic}
  subdomain: basic-pd-peer
  version: v8.5.0
  volumes: [{name: data, mounts: [{type: data}], storage: 1Gi}]
  overlay:
    pod:
      metadata: {labels: {team: storage}}
      spec:
        tolerations: [{key: dedicated, operator: Exists}]
        containers: [{name: pd, env: [{name: GODEBUG, value: "madvdontneed=1"}]}]
"#,
        )
        .unwrap();
        pd.spec.initial_members = initial.iter().map(|s| s.to_string()).collect();
        pd
    }

    #[test]
    fn a_store_gets_time_to_hand_its_leaders_over_before_it_is_killed() {
        assert_eq!(tikv_termination_grace_seconds(None), 60);
        assert_eq!(
            tikv_termination_grace_seconds(Some("[server]\ngraceful-shutdown-timeout = \"2m\"\n")),
            150
        );
        assert_eq!(
            tikv_termination_grace_seconds(Some("[server]\ngraceful-shutdown-timeout = \"5s\"\n")),
            60
        );
        assert_eq!(tikv_termination_grace_seconds(Some("[raftstore]\n")), 60);
    }

    #[test]
    fn initial_members_bootstrap_others_join() {
        let args = pd_command(
            &pd(&["basic-pd-abc", "basic-pd-def"]),
            "ns",
            "/var/lib/pd",
            "http://basic-pd.ns.svc:2379",
            false,
        );
        assert!(args.contains(&"--initial-cluster=basic-pd-abc=http://basic-pd-abc.basic-pd-peer.ns.svc:2380,basic-pd-def=http://basic-pd-def.basic-pd-peer.ns.svc:2380".to_string()));
        assert!(!args.iter().any(|a| a.starts_with("--join")));
        assert!(args.contains(&"--client-urls=http://0.0.0.0:2379".to_string()));
        assert!(args.contains(
            &"--advertise-client-urls=http://basic-pd-abc.basic-pd-peer.ns.svc:2379".to_string()
        ));
        let join = pd_command(
            &pd(&[]),
            "ns",
            "/var/lib/pd",
            "http://basic-pd.ns.svc:2379",
            false,
        );
        assert!(join.contains(&"--join=http://basic-pd.ns.svc:2379".to_string()));
        assert!(!join.iter().any(|a| a.starts_with("--initial-cluster")));
    }

    #[test]
    fn pd_pod_has_stable_identity_volumes_and_overlay() {
        let p = pd(&[]);
        let pod = build_pod(&pd_pod_inputs(&p, "ns", "http://basic-pd.ns.svc:2379", None).unwrap())
            .unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("basic-pd-abc"));
        assert_eq!(spec.subdomain.as_deref(), Some("basic-pd-peer"));
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("pingcap/pd:v8.5.0"));
        let mounts: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert_eq!(mounts, [("config", CONFIG_DIR), ("data", PD_DATA_DIR)]);
        let pvc = spec.volumes.as_ref().unwrap()[1]
            .persistent_volume_claim
            .as_ref()
            .unwrap();
        assert_eq!(pvc.claim_name, "data-basic-pd-abc");
        // Overlay: env merged into the same container, tolerations added, labels added.
        let env: Vec<_> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "POD_IP", "GODEBUG"]);
        assert_eq!(spec.containers.len(), 1);
        assert_eq!(
            spec.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels["team"], "storage");
        // PD serves its metrics on the client port.
        let annotations = pod.metadata.annotations.unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "2379");
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
        assert_eq!(labels["tikv.org/revision"], "r1");
        assert_eq!(pod.metadata.owner_references.unwrap()[0].kind, "PD");
    }

    #[test]
    fn tikv_flags_and_image_references() {
        let t: TiKV = serde_yaml::from_str(
            r#"
apiVersion: core.tikv.org/v1alpha1
kind: TiKV
metadata: {name: basic-tikv-x, namespace: ns, uid: u2}
spec:
  cluster: {name: basic}
  subdomain: basic-tikv-peer
  version: v8.5.0
  server: {labels: {rack: r1}}
  volumes: [{name: data, mounts: [{type: data, mountPath: /data}], storage: 1Gi}]
  overlay: {pod: {metadata: {annotations: {prometheus.io/scrape: "false"}}}}
"#,
        )
        .unwrap();
        let inputs = tikv_pod_inputs(&t, "ns", "http://basic-pd.ns.svc:2379", None).unwrap();
        // TiKV serves its metrics on the status port; the user may turn scraping off.
        let annotations = build_pod(&inputs).unwrap().metadata.annotations.unwrap();
        assert_eq!(annotations["prometheus.io/port"], "20180");
        assert_eq!(annotations["prometheus.io/scrape"], "false");
        assert!(inputs.command.contains(&"--data-dir=/data".to_string()));
        assert!(
            inputs.command.contains(
                &"--advertise-addr=basic-tikv-x.basic-tikv-peer.ns.svc:20160".to_string()
            )
        );
        assert!(inputs.command.contains(&"--labels=rack=r1".to_string()));
        assert_eq!(
            tikv_address(&t, "ns"),
            "basic-tikv-x.basic-tikv-peer.ns.svc:20160"
        );
        assert_eq!(image_ref("pingcap/tikv", "v8.5.0"), "pingcap/tikv:v8.5.0");
        assert_eq!(
            image_ref("registry:5000/pingcap/tikv", "v8.5.0"),
            "registry:5000/pingcap/tikv:v8.5.0"
        );
        assert_eq!(
            image_ref("pingcap/tikv:nightly", "v8.5.0"),
            "pingcap/tikv:nightly"
        );
    }
}

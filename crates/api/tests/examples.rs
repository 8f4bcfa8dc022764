//! Every manifest under examples/ is valid against the Rust types, and the defaults users rely on
//! are filled in.

use api::v1alpha1::{Cluster, PD, PDGroup, TiKV, TiKVGroup};
use serde::Deserialize;

/// All YAML documents under examples/, with the file they came from.
fn documents() -> Vec<(String, serde_yaml::Value)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap();
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let value = serde_yaml::Value::deserialize(doc).unwrap();
                    if !value.is_null() {
                        out.push((path.display().to_string(), value));
                    }
                }
            }
        }
    }
    out
}

/// Parses a document as its kind; unknown fields are errors (a typo in an example is a bug).
fn check(file: &str, doc: serde_yaml::Value) -> String {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let strict = |doc: serde_yaml::Value| -> Result<(), String> {
        let json = serde_json::to_value(&doc).map_err(|e| e.to_string())?;
        let back = match kind.as_str() {
            "Cluster" => serde_json::to_value(
                serde_json::from_value::<Cluster>(json.clone()).map_err(|e| e.to_string())?,
            ),
            "PDGroup" => serde_json::to_value(
                serde_json::from_value::<PDGroup>(json.clone()).map_err(|e| e.to_string())?,
            ),
            "TiKVGroup" => serde_json::to_value(
                serde_json::from_value::<TiKVGroup>(json.clone()).map_err(|e| e.to_string())?,
            ),
            "PD" => serde_json::to_value(
                serde_json::from_value::<PD>(json.clone()).map_err(|e| e.to_string())?,
            ),
            "TiKV" => serde_json::to_value(
                serde_json::from_value::<TiKV>(json.clone()).map_err(|e| e.to_string())?,
            ),
            other => return Err(format!("unexpected kind {other:?}")),
        }
        .map_err(|e| e.to_string())?;
        // Every field the example sets must survive the round trip: nothing is silently dropped.
        contains(&back, &json).map_err(|path| format!("field {path} was dropped by the Rust types"))
    };
    strict(doc).unwrap_or_else(|e| panic!("{file}: {kind}: {e}"));
    kind
}

/// Whether `have` contains everything in `want` (objects by key, the rest equal).
fn contains(have: &serde_json::Value, want: &serde_json::Value) -> Result<(), String> {
    match (have, want) {
        (serde_json::Value::Object(h), serde_json::Value::Object(w)) => {
            for (k, v) in w {
                let hv = h.get(k).ok_or_else(|| k.clone())?;
                contains(hv, v).map_err(|p| format!("{k}.{p}"))?;
            }
            Ok(())
        }
        (serde_json::Value::Array(h), serde_json::Value::Array(w)) if h.len() == w.len() => h
            .iter()
            .zip(w)
            .enumerate()
            .try_for_each(|(i, (h, w))| contains(h, w).map_err(|p| format!("[{i}]{p}"))),
        (h, w) if h == w => Ok(()),
        // Quantities like 20Gi stay strings; numbers written as strings are fine too.
        (h, w) if h.as_str().is_some() && h.as_str() == w.as_str() => Ok(()),
        _ => Err(String::new()),
    }
}

#[test]
fn every_example_parses_and_keeps_every_field() {
    let docs = documents();
    assert!(!docs.is_empty(), "no examples found");
    for (file, doc) in docs {
        // cert-manager's objects (examples/tls-cert-manager) are checked against cert-manager's
        // CRDs by the e2e `tls` scenario.
        if doc["apiVersion"].as_str() == Some("cert-manager.io/v1") {
            let kind = doc["kind"].as_str().unwrap_or_default();
            assert!(["Issuer", "Certificate"].contains(&kind), "{file}: {kind}");
            continue;
        }
        check(&file, doc);
    }
}

#[test]
fn basic_example_is_a_cluster_with_three_pd_and_three_tikv() {
    let docs: Vec<_> = documents()
        .into_iter()
        .filter(|(f, _)| f.contains("/basic/"))
        .collect();
    let kinds: Vec<String> = docs.iter().map(|(f, d)| check(f, d.clone())).collect();
    for k in ["Cluster", "PDGroup", "TiKVGroup"] {
        assert_eq!(
            kinds.iter().filter(|x| *x == k).count(),
            1,
            "basic has one {k}"
        );
    }
    let get = |kind: &str| {
        let (_, d) = docs
            .iter()
            .find(|(_, d)| d["kind"].as_str() == Some(kind))
            .unwrap();
        serde_json::to_value(d).unwrap()
    };
    let pd: PDGroup = serde_json::from_value(get("PDGroup")).unwrap();
    let tikv: TiKVGroup = serde_json::from_value(get("TiKVGroup")).unwrap();
    assert_eq!((pd.spec.replicas, tikv.spec.replicas), (3, 3));
    assert_eq!(pd.spec.cluster.name, tikv.spec.cluster.name);
    // Defaults users expect when they leave fields out.
    assert_eq!(pd.spec.template.spec.image, "pingcap/pd");
    assert_eq!(pd.spec.template.spec.server.ports.client.port, 2379);
    assert_eq!(pd.spec.template.spec.server.ports.peer.port, 2380);
    assert_eq!(tikv.spec.template.spec.image, "pingcap/tikv");
    assert_eq!(tikv.spec.template.spec.server.ports.client.port, 20160);
    assert_eq!(tikv.spec.template.spec.server.ports.status.port, 20180);
    assert_eq!(tikv.spec.update_policy.max_unavailable, 1);
    assert_eq!(tikv.spec.update_policy.leader_eviction_timeout, "10m");
}

#[test]
fn instance_spec_inlines_the_template_and_round_trips() {
    let yaml = r#"
apiVersion: core.tikv.org/v1alpha1
kind: TiKV
metadata: {name: basic-tikv-abc123}
spec:
  cluster: {name: basic}
  subdomain: basic-tikv-peer
  topology: {topology.kubernetes.io/zone: zone-a}
  offline: true
  version: v8.5.0
  volumes: [{name: data, mounts: [{type: data}], storage: 20Gi}]
status:
  id: "4"
  state: Up
  leaderCount: 12
  regionCount: 30
  currentRevision: basic-tikv-5d8f
  conditions:
  - {type: Ready, status: "True", reason: StoreUp, message: "", lastTransitionTime: "2026-01-01T00:00:00Z"}
"#;
    let tikv: TiKV = serde_yaml::from_str(yaml).unwrap();
    assert!(tikv.spec.offline);
    assert_eq!(tikv.spec.template.version, "v8.5.0");
    assert_eq!(tikv.spec.template.server.ports.client.port, 20160);
    let status = tikv.status.clone().unwrap();
    assert_eq!(
        status.common.current_revision.as_deref(),
        Some("basic-tikv-5d8f")
    );
    assert_eq!(status.common.conditions[0].type_, "Ready");
    assert_eq!(
        (status.leader_count, status.region_count),
        (Some(12), Some(30))
    );
    let back: TiKV = serde_json::from_value(serde_json::to_value(&tikv).unwrap()).unwrap();
    assert_eq!(back, tikv);
}

//! A minimal local-volume provisioner.
//!
//! The agent installs the StorageClass [`STORAGE_CLASS`] (provisioner [`PROVISIONER`],
//! `volumeBindingMode: WaitForFirstConsumer`, marked as the cluster default). For a claim of
//! that class the real kube-scheduler picks a node for the first pod that uses it and writes
//! the node into the claim's `volume.kubernetes.io/selected-node` annotation; the agent running
//! that node then creates a `hostPath` PersistentVolume pre-bound to the claim (`claimRef`),
//! with node affinity to that node, backed by a directory under its state directory.
//! kube-controller-manager's PV controller binds the pair and the scheduler binds the pod —
//! the same flow as a real local-path provisioner, so several agents on one control plane
//! never serve each other's claims.
//!
//! Claims of any other class (or of none) are provisioned at once by whichever agent sees them
//! first, without node affinity (nothing else would ever bind them here).
//!
//! When a claim is deleted, the agent deletes its PV and directory (the PV's reclaim policy is
//! `Retain` so that the controller manager, which has no hostPath deleter, leaves that to us).
//! Capacity is the requested size, but nothing enforces it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::node::AGENT_LABEL;

/// Annotation on the PVs the agent creates.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The provisioner name.
pub const PROVISIONER: &str = "node-agent.tikv.org";
/// The StorageClass the agent installs (default class, `WaitForFirstConsumer`).
pub const STORAGE_CLASS: &str = "node-agent";
/// Annotation the scheduler sets on a `WaitForFirstConsumer` claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The StorageClass [`STORAGE_CLASS`]. Pure.
pub fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(
                [(
                    "storageclass.kubernetes.io/is-default-class".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        reclaim_policy: Some("Delete".into()),
        ..Default::default()
    }
}

/// What the agent should do about a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provision {
    /// Nothing (bound, being deleted, another agent's node, or waiting for the scheduler).
    Skip,
    /// Create a volume with node affinity to this node (one of ours).
    OnNode(String),
    /// Create a volume without node affinity.
    Anywhere,
}

/// Decides whether and how to provision `pvc`, for an agent running `is_ours` nodes. Pure.
pub fn decide(pvc: &PersistentVolumeClaim, is_ours: &dyn Fn(&str) -> bool) -> Provision {
    if !needs_volume(pvc) {
        return Provision::Skip;
    }
    let selected = pvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE));
    match selected {
        Some(node) if is_ours(node) => Provision::OnNode(node.clone()),
        Some(_) => Provision::Skip,
        None if pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            == Some(STORAGE_CLASS) =>
        {
            Provision::Skip
        }
        None => Provision::Anywhere,
    }
}

/// The directory of a claim's volume: `<state dir>/pvc/<namespace>_<name>_<uid>`. Pure.
pub fn claim_dir(state_dir: &Path, pvc: &PersistentVolumeClaim) -> PathBuf {
    state_dir.join("pvc").join(format!(
        "{}_{}_{}",
        pvc.metadata.namespace.as_deref().unwrap_or_default(),
        pvc.metadata.name.as_deref().unwrap_or_default(),
        pvc.metadata.uid.as_deref().unwrap_or_default()
    ))
}

/// Whether the agent should provision a volume for `pvc`: not being deleted, no volume chosen,
/// not bound. Pure.
pub fn needs_volume(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata.deletion_timestamp.is_none()
        && pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty)
        && pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound")
}

/// The PV for `pvc` (name `pvc-<uid>`), pre-bound to it. Pure.
pub fn volume_for(
    pvc: &PersistentVolumeClaim,
    dir: &Path,
    agent_id: &str,
    node: Option<&str>,
) -> PersistentVolume {
    let spec = pvc.spec.clone().unwrap_or_default();
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned())
        .unwrap_or_else(|| Quantity("1Gi".into()));
    let access_modes = spec
        .access_modes
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!(
                "pvc-{}",
                pvc.metadata.uid.as_deref().unwrap_or_default()
            )),
            labels: Some([(AGENT_LABEL.to_string(), agent_id.to_string())].into()),
            annotations: Some([(PROVISIONED_BY.to_string(), PROVISIONER.to_string())].into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), storage)])),
            access_modes: Some(access_modes),
            volume_mode: spec.volume_mode.clone(),
            storage_class_name: spec.storage_class_name.clone(),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            host_path: Some(HostPathVolumeSource {
                path: dir.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: node.map(|n| VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: crate::node::HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![n.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: pvc.metadata.namespace.clone(),
                name: pvc.metadata.name.clone(),
                uid: pvc.metadata.uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// For a PV the agent provisioned under `state_dir`: the claim (namespace, name, uid) it
/// belongs to and its directory. `None` for any other PV. Pure.
pub fn owned_volume(
    pv: &PersistentVolume,
    state_dir: &Path,
) -> Option<(String, String, String, PathBuf)> {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .map(String::as_str)
        == Some(PROVISIONER);
    let spec = pv.spec.as_ref()?;
    let path = PathBuf::from(&spec.host_path.as_ref()?.path);
    if !ours || !path.starts_with(state_dir.join("pvc")) {
        return None;
    }
    let c = spec.claim_ref.as_ref()?;
    Some((c.namespace.clone()?, c.name.clone()?, c.uid.clone()?, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, VolumeResourceRequirements,
    };

    fn pvc() -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data-tikv-0".into()),
                namespace: Some("ns".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some("standard".into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity("10Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn provisions_pre_bound_volume() {
        let state = Path::new("/state");
        let claim = pvc();
        assert!(needs_volume(&claim));
        let dir = claim_dir(state, &claim);
        assert_eq!(dir, PathBuf::from("/state/pvc/ns_data-tikv-0_u-1"));
        assert_eq!(decide(&claim, &|_| true), Provision::Anywhere);
        let pv = volume_for(&claim, &dir, "b100-p1", None);
        assert!(pv.spec.as_ref().unwrap().node_affinity.is_none());
        assert_eq!(pv.metadata.name.as_deref(), Some("pvc-u-1"));
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(
            spec.capacity.as_ref().unwrap()["storage"],
            Quantity("10Gi".into())
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(spec.claim_ref.as_ref().unwrap().uid.as_deref(), Some("u-1"));
        assert_eq!(
            spec.access_modes.as_ref().unwrap(),
            &vec!["ReadWriteOnce".to_string()]
        );
        assert_eq!(
            owned_volume(&pv, state),
            Some((
                "ns".into(),
                "data-tikv-0".into(),
                "u-1".into(),
                PathBuf::from("/state/pvc/ns_data-tikv-0_u-1")
            ))
        );
        assert_eq!(owned_volume(&pv, Path::new("/other")), None);
        let mut wffc = claim.clone();
        wffc.spec.as_mut().unwrap().storage_class_name = Some(STORAGE_CLASS.into());
        assert_eq!(
            decide(&wffc, &|_| true),
            Provision::Skip,
            "waits for the scheduler"
        );
        wffc.metadata.annotations = Some([(SELECTED_NODE.to_string(), "n-1".to_string())].into());
        assert_eq!(
            decide(&wffc, &|n| n == "n-1"),
            Provision::OnNode("n-1".into())
        );
        assert_eq!(
            decide(&wffc, &|n| n == "n-2"),
            Provision::Skip,
            "another agent's node"
        );
        let pv = volume_for(&wffc, &dir, "b100-p1", Some("n-1"));
        let terms = pv
            .spec
            .unwrap()
            .node_affinity
            .unwrap()
            .required
            .unwrap()
            .node_selector_terms;
        assert_eq!(
            terms[0].match_expressions.as_ref().unwrap()[0].values,
            Some(vec!["n-1".to_string()])
        );
        let mut bound = claim.clone();
        bound.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..Default::default()
        });
        assert!(!needs_volume(&bound));
        assert_eq!(decide(&bound, &|_| true), Provision::Skip);
    }
}

//! `kubectl tikv restart`: a rolling restart of a group, carried out by the operator. The command
//! only changes the group's template (the `tikv.org/restarted-at` annotation, like `kubectl
//! rollout restart` does for a Deployment); the new template is a new revision, which the group
//! rolls out the safe way: TiKV stores one at a time (or a zone at a time) with their leaders
//! evicted first, PD members one at a time with the leader last, never losing PD's quorum.

use api::v1alpha1::{Cluster, PDGroup, TiKVGroup};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::Error;

/// Which kind of group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// A PDGroup.
    Pd,
    /// A TiKVGroup.
    Tikv,
}

impl GroupKind {
    /// The kind's name.
    pub fn kind(self) -> &'static str {
        match self {
            GroupKind::Pd => "PDGroup",
            GroupKind::Tikv => "TiKVGroup",
        }
    }
}

/// `tikvgroup/NAME`, `tkvg/NAME`, `pdgroup/NAME`, `pdg/NAME` name their kind; a bare `NAME` may
/// be either.
pub fn parse_target(arg: &str) -> Result<(Option<GroupKind>, &str), Error> {
    match arg.split_once('/') {
        None => Ok((None, arg)),
        Some((kind, name)) => {
            let kind = match kind.to_ascii_lowercase().as_str() {
                "tikvgroup" | "tikvgroups" | "tkvg" => GroupKind::Tikv,
                "pdgroup" | "pdgroups" | "pdg" => GroupKind::Pd,
                other => {
                    return Err(Error::NotFound(format!(
                        "{other} is not a group kind: use tikvgroup/NAME or pdgroup/NAME"
                    )));
                }
            };
            Ok((Some(kind), name))
        }
    }
}

/// The merge patch that restarts a group: the annotation in its template, set to `now`.
pub fn patch(now: Timestamp) -> serde_json::Value {
    serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        api::labels::RESTARTED_AT: now.to_string()
    }}}}})
}

/// What was restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restarted {
    /// Its kind.
    pub kind: GroupKind,
    /// Its name.
    pub name: String,
    /// Its Cluster.
    pub cluster: String,
    /// The Cluster is paused: nothing restarts until it is resumed.
    pub paused: bool,
}

/// Restarts the group `target` in `ns` at `now`.
pub async fn restart(
    client: &Client,
    ns: &str,
    target: &str,
    now: Timestamp,
) -> Result<Restarted, Error> {
    let (kind, name) = parse_target(target)?;
    let pds: Api<PDGroup> = Api::namespaced(client.clone(), ns);
    let tikvs: Api<TiKVGroup> = Api::namespaced(client.clone(), ns);
    let read = |what: &str| Error::kube(format!("reading {what} {ns}/{name}"));
    let pd = match kind {
        Some(GroupKind::Tikv) => None,
        _ => pds.get_opt(name).await.map_err(read("PDGroup"))?,
    };
    let tikv = match kind {
        Some(GroupKind::Pd) => None,
        _ => tikvs.get_opt(name).await.map_err(read("TiKVGroup"))?,
    };
    let params = PatchParams {
        field_manager: Some("kubectl-tikv".into()),
        ..Default::default()
    };
    let patch = Patch::Merge(patch(now));
    let write = |k: &str| Error::kube(format!("patching {k} {ns}/{name}"));
    let (kind, cluster) = match (pd, tikv) {
        (Some(_), Some(_)) => {
            return Err(Error::Ambiguous(format!(
                "both a PDGroup and a TiKVGroup are called {name}: say pdgroup/{name} or tikvgroup/{name}"
            )));
        }
        (Some(g), None) => {
            pds.patch(name, &params, &patch)
                .await
                .map_err(write("PDGroup"))?;
            (GroupKind::Pd, g.spec.cluster.name)
        }
        (None, Some(g)) => {
            tikvs
                .patch(name, &params, &patch)
                .await
                .map_err(write("TiKVGroup"))?;
            (GroupKind::Tikv, g.spec.cluster.name)
        }
        (None, None) => {
            return Err(Error::NotFound(format!(
                "there is no {} {name} in namespace {ns}",
                kind.map_or("PDGroup or TiKVGroup", GroupKind::kind)
            )));
        }
    };
    let paused = Api::<Cluster>::namespaced(client.clone(), ns)
        .get_opt(&cluster)
        .await
        .map_err(Error::kube(format!("reading Cluster {ns}/{cluster}")))?
        .is_some_and(|c| c.spec.paused);
    Ok(Restarted {
        kind,
        name: name.to_string(),
        cluster,
        paused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("basic-tikv").unwrap(), (None, "basic-tikv"));
        assert_eq!(
            parse_target("tkvg/basic-tikv").unwrap(),
            (Some(GroupKind::Tikv), "basic-tikv")
        );
        assert_eq!(
            parse_target("PDGroup/basic-pd").unwrap(),
            (Some(GroupKind::Pd), "basic-pd")
        );
        assert!(parse_target("deployment/x").is_err());
        let p = patch(Timestamp::from_second(1_800_000_000).unwrap());
        assert_eq!(
            p["spec"]["template"]["metadata"]["annotations"]["tikv.org/restarted-at"],
            "2027-01-15T08:00:00Z"
        );
    }
}

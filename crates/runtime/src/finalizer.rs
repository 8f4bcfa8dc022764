//! Adding and removing one finalizer without disturbing anyone else's.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Makes `finalizer` present on `obj` or not. The patch carries the resourceVersion, so it fails
/// (and the reconcile retries) when someone else changed the list in between.
pub async fn set<K>(
    api: &Api<K>,
    obj: &K,
    finalizer: &str,
    present: bool,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let has = obj.finalizers().iter().any(|f| f == finalizer);
    if has == present {
        return Ok(());
    }
    let mut finalizers: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .collect();
    let owned = finalizer.to_string();
    if present {
        finalizers.push(&owned);
    }
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

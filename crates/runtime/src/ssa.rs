//! Server-side apply: every write of desired state goes through these, with the controller's
//! own field manager, so controllers never overwrite each other's fields.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Applies `obj` (which must carry apiVersion, kind and name) as `manager`, taking ownership of
/// the fields it sets.
pub async fn apply<K>(api: &Api<K>, manager: &str, name: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// Applies the status of an object: `status` is the whole status this manager owns.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    manager: &str,
    name: &str,
    status: &S,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    S: Serialize,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(body),
    )
    .await
}

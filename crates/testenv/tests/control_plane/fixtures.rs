//! Objects of our kinds as JSON, the smallest that the API server accepts, and helpers to change
//! them by JSON pointer and to check the API server's answer.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::Status;
use serde_json::{Value, json};

use api::v1alpha1::{Cluster, PD, PDGroup, TiKV, TiKVGroup};

/// Our five kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    PDGroup,
    PD,
    TiKVGroup,
    TiKV,
}

pub use Kind::*;

/// The four kinds that refer to a Cluster and carry a component template.
pub const COMPONENT_KINDS: [Kind; 4] = [PDGroup, PD, TiKVGroup, TiKV];
/// Every kind.
pub const ALL_KINDS: [Kind; 5] = [Cluster, PDGroup, PD, TiKVGroup, TiKV];

impl Kind {
    pub fn resource(self) -> ApiResource {
        match self {
            Cluster => ApiResource::erase::<Cluster>(&()),
            PDGroup => ApiResource::erase::<PDGroup>(&()),
            PD => ApiResource::erase::<PD>(&()),
            TiKVGroup => ApiResource::erase::<TiKVGroup>(&()),
            TiKV => ApiResource::erase::<TiKV>(&()),
        }
    }

    pub fn api(self, client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &self.resource())
    }

    /// JSON pointer of the component template spec (`version`, `volumes`, `overlay`...).
    pub fn template_spec(self) -> &'static str {
        match self {
            PDGroup | TiKVGroup => "/spec/template/spec",
            PD | TiKV => "/spec",
            Cluster => panic!("a Cluster has no template"),
        }
    }

    /// Longest name the CEL rules allow.
    pub fn max_name_len(self) -> usize {
        match self {
            Cluster | PDGroup | TiKVGroup => 40,
            PD | TiKV => 47,
        }
    }

    /// A valid object named `name`.
    pub fn good(self, name: &str) -> Value {
        let template = json!({
            "version": "v8.5.0",
            "volumes": [{"name": "data", "mounts": [{"type": "data"}], "storage": "10Gi"}],
        });
        let spec = match self {
            Cluster => json!({}),
            PDGroup | TiKVGroup => json!({
                "cluster": {"name": "basic"},
                "replicas": 3,
                "template": {"spec": template},
            }),
            PD | TiKV => {
                let mut spec = template;
                let component = if self == PD { "pd" } else { "tikv" };
                spec["cluster"] = json!({"name": "basic"});
                spec["subdomain"] = json!(format!("basic-{component}-peer"));
                spec["topology"] = json!({"topology.kubernetes.io/zone": "zone-a"});
                spec
            }
        };
        let ar = self.resource();
        json!({
            "apiVersion": ar.api_version,
            "kind": ar.kind,
            "metadata": {"name": name},
            "spec": spec,
        })
    }
}

/// Sets the value at a JSON pointer, creating missing objects on the way.
pub fn set(v: &mut Value, pointer: &str, value: Value) {
    let mut cur = v;
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        cur = match cur {
            Value::Array(items) => &mut items[part.parse::<usize>().expect("array index")],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .unwrap()
                    .entry(part)
                    .or_insert(Value::Null)
            }
        };
    }
    *cur = value;
}

/// Removes the value at a JSON pointer (which must exist).
pub fn remove(v: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("pointer");
    let removed = v
        .pointer_mut(parent)
        .and_then(|p| p.as_object_mut())
        .and_then(|o| o.remove(last));
    assert!(removed.is_some(), "nothing at {pointer}");
}

pub fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a Kubernetes object")
}

/// Creates `v`; panics with the API server's message if it is refused.
pub async fn create_ok(api: &Api<DynamicObject>, v: Value) -> DynamicObject {
    let name = v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.create(&PostParams::default(), &obj(v))
        .await
        .unwrap_or_else(|e| panic!("creating {name} should succeed: {e}"))
}

/// Reads `name`, applies `change` to its JSON and writes it back (PUT).
pub async fn update(
    api: &Api<DynamicObject>,
    name: &str,
    change: impl FnOnce(&mut Value),
) -> Result<DynamicObject, kube::Error> {
    let current = api.get(name).await?;
    let mut v = serde_json::to_value(&current).unwrap();
    change(&mut v);
    api.replace(name, &PostParams::default(), &obj(v)).await
}

/// Asserts that the API server refused the request as invalid (422) and quoted `message`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, kube::Error>, message: &str) {
    match result {
        Err(kube::Error::Api(status)) if is_invalid(&status, message) => {}
        Err(kube::Error::Api(status)) => panic!(
            "expected 422 Invalid quoting {message:?}, got {} {}: {}",
            status.code, status.reason, status.message
        ),
        other => panic!("expected 422 Invalid quoting {message:?}, got {other:?}"),
    }
}

fn is_invalid(status: &Status, message: &str) -> bool {
    status.code == 422 && status.reason == "Invalid" && status.message.contains(message)
}

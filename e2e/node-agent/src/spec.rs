//! Pure resolution of a container's environment and arguments, as kubelet does it.
//!
//! - [`expand`] is kubelet's `$(VAR)` expansion (`third_party/forked/golang/expansion`):
//!   `$(NAME)` is replaced when `NAME` is defined and kept literally otherwise, `$$` is an
//!   escaped `$`, and any other `$` is kept.
//! - [`resolve_env`] builds the environment: `envFrom` first, then `env` in order (later
//!   definitions win); plain values are expanded with the variables defined before them;
//!   `valueFrom` supports `fieldRef`, `resourceFieldRef`, `configMapKeyRef` and `secretKeyRef`.
//! - [`program_args`] applies the argument convention: `command[1..]` followed by `args`, each
//!   expanded with the final environment.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};

/// Read access to the objects a container's environment may reference.
pub trait Lookup {
    /// The ConfigMap `namespace/name`, if it exists.
    fn config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>>;
    /// The Secret `namespace/name`, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>>;
}

/// Facts about the pod that are not in its object yet (or are decided by the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    /// The pod's IP.
    pub pod_ip: String,
    /// The IP of the node the pod runs on.
    pub host_ip: String,
    /// The node's allocatable CPU in millicores (used for unset CPU limits).
    pub node_cpu_millis: u64,
    /// The node's allocatable memory in bytes (used for unset memory limits).
    pub node_memory_bytes: u64,
}

/// Why a container's configuration cannot be built. Reported as `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A referenced ConfigMap does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A referenced Secret does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// A referenced key is missing.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Object name.
        name: String,
        /// The key.
        key: String,
    },
    /// A `fieldRef` path this agent does not support.
    #[error("unsupported fieldRef fieldPath {0:?}")]
    FieldPath(String),
    /// A `resourceFieldRef` this agent does not support, or a bad quantity.
    #[error("unsupported resourceFieldRef: {0}")]
    Resource(String),
    /// An env var without value and valueFrom source.
    #[error("env var {0} has an empty valueFrom")]
    EmptyValueFrom(String),
}

const OPERATOR: u8 = b'$';

/// kubelet's `$(VAR)` expansion. Pure.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == OPERATOR && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                OPERATOR => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Not an expression: keep the operator and the next character.
                    let ch = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// An ordered environment with unique names; a later definition replaces the value in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    /// Sets `name` (replacing an earlier value, keeping its position).
    pub fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// All variables in definition order.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

fn field_value(pod: &Pod, facts: &PodFacts, path: &str) -> Result<String, SpecError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let inner = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(inner.to_string())
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        _ => {
            if let Some(key) = subscript("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(SpecError::FieldPath(path.to_string()));
            }
        }
    })
}

/// Parses a Kubernetes quantity (`100m`, `2`, `1Gi`, `1.5G`, `1e3`) into a number. Pure.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (num, suffix) = if suffix.is_empty() && (num.contains('e') || num.contains('E')) {
        (num, "")
    } else {
        (num, suffix)
    };
    let value: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(value * factor)
}

fn resource_value(
    container: &Container,
    facts: &PodFacts,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, SpecError> {
    let resources = container.resources.as_ref();
    let get = |map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               key: &str| { map.and_then(|m| m.get(key)).map(|q| q.0.clone()) };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| SpecError::Resource(resource.to_string()))?;
    let node_default = match name {
        "cpu" => format!("{}m", facts.node_cpu_millis),
        "memory" => facts.node_memory_bytes.to_string(),
        "ephemeral-storage" => facts.node_memory_bytes.to_string(),
        _ => return Err(SpecError::Resource(resource.to_string())),
    };
    let raw = match kind {
        "limits" => get(limits, name).unwrap_or(node_default),
        "requests" => get(requests, name)
            .or_else(|| get(limits, name))
            .unwrap_or_else(|| "0".into()),
        _ => return Err(SpecError::Resource(resource.to_string())),
    };
    let value =
        parse_quantity(&raw).ok_or_else(|| SpecError::Resource(format!("bad quantity {raw:?}")))?;
    let divisor = divisor.unwrap_or("1");
    let div = parse_quantity(divisor)
        .filter(|d| *d > 0.0)
        .ok_or_else(|| SpecError::Resource(format!("bad divisor {divisor:?}")))?;
    // kubelet rounds up (e.g. 250m CPU with divisor 1 is 1).
    Ok(format!("{}", (value / div).ceil() as u64))
}

fn value_from(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    lookup: &dyn Lookup,
    name: &str,
    source: &EnvVarSource,
) -> Result<Option<String>, SpecError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(f) = &source.field_ref {
        return field_value(pod, facts, &f.field_path).map(Some);
    }
    if let Some(r) = &source.resource_field_ref {
        return resource_value(
            container,
            facts,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
        )
        .map(Some);
    }
    if let Some(sel) = &source.config_map_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(cm) = lookup.config_map(ns, &sel.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(SpecError::ConfigMapNotFound(sel.name.clone()))
            };
        };
        let v = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&sel.key))
            .cloned()
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(&sel.key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
        return match v {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(SpecError::KeyNotFound {
                kind: "ConfigMap",
                namespace: ns.to_string(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    if let Some(sel) = &source.secret_key_ref {
        let optional = sel.optional.unwrap_or(false);
        let Some(secret) = lookup.secret(ns, &sel.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(SpecError::SecretNotFound(sel.name.clone()))
            };
        };
        let v = secret_value(&secret, &sel.key);
        return match v {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(SpecError::KeyNotFound {
                kind: "Secret",
                namespace: ns.to_string(),
                name: sel.name.clone(),
                key: sel.key.clone(),
            }),
        };
    }
    Err(SpecError::EmptyValueFrom(name.to_string()))
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        })
}

/// Builds a container's environment like kubelet (without service-link variables). Pure.
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    lookup: &dyn Lookup,
) -> Result<Env, SpecError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env = Env::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match lookup.config_map(ns, &r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(&format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(SpecError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match lookup.secret(ns, &r.name) {
                Some(s) => {
                    for k in s.data.iter().flatten().map(|(k, _)| k) {
                        if let Some(v) = secret_value(&s, k) {
                            env.set(&format!("{prefix}{k}"), v);
                        }
                    }
                }
                None if r.optional.unwrap_or(false) => {}
                None => return Err(SpecError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        match &var.value_from {
            Some(source) => {
                if let Some(v) = value_from(pod, container, facts, lookup, &var.name, source)? {
                    env.set(&var.name, v);
                }
            }
            None => {
                let raw = var.value.clone().unwrap_or_default();
                let expanded = expand(&raw, |n| env.get(n).map(str::to_string));
                env.set(&var.name, expanded);
            }
        }
    }
    Ok(env)
}

/// The program's arguments: `command[1..]` followed by `args`, each expanded with `env`. Pure.
pub fn program_args(container: &Container, env: &Env) -> Vec<String> {
    let lookup = |n: &str| env.get(n).map(str::to_string);
    container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(|a| expand(a, lookup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapKeySelector, EnvVar, ObjectFieldSelector, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Objects {
        cms: HashMap<String, Arc<ConfigMap>>,
        secrets: HashMap<String, Arc<Secret>>,
    }
    impl Lookup for Objects {
        fn config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>> {
            self.cms.get(&format!("{namespace}/{name}")).cloned()
        }
        fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
            self.secrets.get(&format!("{namespace}/{name}")).cloned()
        }
    }

    fn facts() -> PodFacts {
        PodFacts {
            pod_ip: "127.100.1.7".into(),
            host_ip: "127.100.0.1".into(),
            node_cpu_millis: 64_000,
            node_memory_bytes: 1 << 40,
        }
    }

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("pd-0".into());
        pod.metadata.namespace = Some("ns1".into());
        pod.metadata.labels = Some([("app".to_string(), "pd".to_string())].into());
        pod.spec = Some(PodSpec {
            node_name: Some("node-1".into()),
            ..Default::default()
        });
        pod
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn plain(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    #[test]
    fn expansion_matches_kubelet() {
        let vars: HashMap<&str, &str> = [("A", "x"), ("EMPTY", "")].into();
        let l = |n: &str| vars.get(n).map(|v| v.to_string());
        assert_eq!(expand("$(A)", l), "x");
        assert_eq!(expand("a-$(A)-b", l), "a-x-b");
        assert_eq!(expand("$(B)", l), "$(B)");
        assert_eq!(expand("$$(A)", l), "$(A)");
        assert_eq!(expand("$$$(A)", l), "$x");
        assert_eq!(expand("$A", l), "$A");
        assert_eq!(expand("$(A", l), "$(A");
        assert_eq!(expand("$", l), "$");
        assert_eq!(expand("a$", l), "a$");
        assert_eq!(expand("$(EMPTY)z", l), "z");
        assert_eq!(expand("ü$(A)ü$é", l), "üxü$é");
        assert_eq!(expand("", l), "");
    }

    #[test]
    fn env_and_args_are_resolved() {
        let mut objects = Objects::default();
        let cm = ConfigMap {
            data: Some([("level".to_string(), "debug".to_string())].into()),
            ..Default::default()
        };
        objects.cms.insert("ns1/cfg".into(), Arc::new(cm));
        let secret = Secret {
            data: Some([("token".to_string(), ByteString(b"s3cret".to_vec()))].into()),
            ..Default::default()
        };
        objects.secrets.insert("ns1/sec".into(), Arc::new(secret));
        let container = Container {
            name: "pd".into(),
            command: Some(vec!["/pd-server".into(), "--name=$(POD_NAME)".into()]),
            args: Some(vec![
                "--client-urls=http://$(POD_IP):2379".into(),
                "--advertise=$(POD_NAME).pd-peer.$(NS).svc".into(),
                "--x=$(UNSET)".into(),
                "--lvl=$(LEVEL)".into(),
            ]),
            env: Some(vec![
                field("POD_NAME", "metadata.name"),
                field("NS", "metadata.namespace"),
                field("POD_IP", "status.podIP"),
                field("NODE", "spec.nodeName"),
                field("APP", "metadata.labels['app']"),
                plain("URL", "http://$(POD_IP):2379/$(NOPE)"),
                EnvVar {
                    name: "LEVEL".into(),
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "level".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "TOKEN".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(k8s_openapi::api::core::v1::SecretKeySelector {
                            name: "sec".into(),
                            key: "token".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let env = resolve_env(&pod(), &container, &facts(), &objects).unwrap();
        assert_eq!(env.get("POD_NAME"), Some("pd-0"));
        assert_eq!(env.get("NS"), Some("ns1"));
        assert_eq!(env.get("POD_IP"), Some("127.100.1.7"));
        assert_eq!(env.get("NODE"), Some("node-1"));
        assert_eq!(env.get("APP"), Some("pd"));
        assert_eq!(env.get("URL"), Some("http://127.100.1.7:2379/$(NOPE)"));
        assert_eq!(env.get("LEVEL"), Some("debug"));
        assert_eq!(env.get("TOKEN"), Some("s3cret"));
        assert_eq!(
            program_args(&container, &env),
            vec![
                "--name=pd-0",
                "--client-urls=http://127.100.1.7:2379",
                "--advertise=pd-0.pd-peer.ns1.svc",
                "--x=$(UNSET)",
                "--lvl=debug",
            ]
        );
    }

    #[test]
    fn later_env_values_see_only_earlier_ones() {
        let container = Container {
            env: Some(vec![
                plain("A", "$(B)"),
                plain("B", "b"),
                plain("C", "$(B)$(A)"),
                plain("A", "again"),
            ]),
            ..Default::default()
        };
        let env = resolve_env(&pod(), &container, &facts(), &Objects::default()).unwrap();
        assert_eq!(env.vars()[0], ("A".to_string(), "again".to_string()));
        assert_eq!(env.get("C"), Some("b$(B)"));
    }

    #[test]
    fn missing_references_are_config_errors() {
        let container = Container {
            env: Some(vec![EnvVar {
                name: "L".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "absent".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let err = resolve_env(&pod(), &container, &facts(), &Objects::default()).unwrap_err();
        assert_eq!(err.to_string(), "configmap \"absent\" not found");
        let bad = Container {
            env: Some(vec![field("X", "status.phase")]),
            ..Default::default()
        };
        assert!(matches!(
            resolve_env(&pod(), &bad, &facts(), &Objects::default()),
            Err(SpecError::FieldPath(_))
        ));
    }

    #[test]
    fn resource_field_refs_round_up() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2x"), None);
        let c = Container {
            resources: Some(ResourceRequirements {
                limits: Some([("memory".to_string(), Quantity("1Gi".into()))].into()),
                requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            resource_value(&c, &facts(), "requests.cpu", None).unwrap(),
            "1"
        );
        assert_eq!(
            resource_value(&c, &facts(), "requests.cpu", Some("1m")).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(&c, &facts(), "limits.memory", Some("1Mi")).unwrap(),
            "1024"
        );
        assert_eq!(
            resource_value(&c, &facts(), "limits.cpu", None).unwrap(),
            "64"
        );
        assert!(resource_value(&c, &facts(), "limits.gpu", None).is_err());
    }
}

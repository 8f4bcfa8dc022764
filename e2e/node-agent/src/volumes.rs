//! Pod volumes as directories on this machine.
//!
//! [`plan_volume`] (pure) decides what a volume is: a set of files (ConfigMap, Secret,
//! downward API, projected), an `emptyDir`, a `hostPath`, or a PVC resolved through its bound
//! PersistentVolume to a directory. [`write_payload`] materialises a set of files the way
//! kubelet's atomic writer does — a timestamped directory, a `..data` symlink swapped with a
//! rename, and one top-level symlink per entry — so a program that keeps a file open or watches
//! the directory sees a complete old or a complete new version, never a mix. Updates of the
//! ConfigMap are written again into the same directory, so they show up inside the container's
//! bind mount (except for `subPath` mounts, which, as in kubelet, are not updated).
//! [`mount_plan`] (pure) turns a container's `volumeMounts` into bind mounts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
    ServiceAccountTokenProjection, Volume,
};

use crate::spec::{self, Env, Lookup, PodFacts, SpecError};

/// Default file mode of ConfigMap, Secret, downward API and projected files (kubelet's 0644).
pub const DEFAULT_MODE: u32 = 0o644;

/// Read access to what volumes reference.
pub trait VolumeLookup: Lookup {
    /// The PVC `namespace/name`.
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    /// The PV `name`.
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>>;
}

/// One file of a volume: content and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    /// The bytes.
    pub data: Vec<u8>,
    /// Unix permission bits.
    pub mode: u32,
}

/// Files of a volume, keyed by relative path.
pub type Payload = BTreeMap<String, FileContent>;

/// What a volume is on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePlan {
    /// Files written by the agent into the pod's volume directory.
    Files(Payload),
    /// An empty directory private to the pod (also for `medium: Memory`: no tmpfs is mounted).
    EmptyDir,
    /// A directory of the host, used in place.
    HostPath {
        /// The path.
        path: PathBuf,
        /// Create it when missing (`DirectoryOrCreate`, or no type).
        create: bool,
    },
    /// A persistent volume's directory.
    Claim {
        /// The directory (the PV's `hostPath` or `local` path).
        path: PathBuf,
    },
}

/// Why a volume cannot be set up (yet). Shown in the container's waiting message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeError {
    /// A ConfigMap, Secret or key is missing, or a downward API field is unsupported.
    #[error("volume {volume:?}: {source}")]
    Spec {
        /// Volume name.
        volume: String,
        /// Cause.
        #[source]
        source: SpecError,
    },
    /// The PVC does not exist.
    #[error("persistentvolumeclaim \"{0}\" not found")]
    ClaimNotFound(String),
    /// The PVC is not bound to a PV yet (or its PV is not visible yet).
    #[error("persistentvolumeclaim \"{0}\" is not bound yet")]
    ClaimNotBound(String),
    /// The PV has no path this agent can use.
    #[error("persistentvolume {0:?} is neither hostPath nor local")]
    UnsupportedPv(String),
    /// A volume type this agent does not run.
    #[error(
        "volume {0:?} has a type node-agent does not support (supported: configMap, secret, downwardAPI, projected, emptyDir, hostPath, persistentVolumeClaim)"
    )]
    Unsupported(String),
    /// A mount refers to a volume the pod does not declare.
    #[error("volumeMount refers to unknown volume {0:?}")]
    UnknownVolume(String),
    /// A path leaves its directory (`..`) or is not absolute where it must be.
    #[error("invalid path {0:?}")]
    InvalidPath(String),
    /// A service account token could not be obtained.
    #[error("volume {0:?}: no service account token available")]
    TokenUnavailable(String),
}

fn relative_ok(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// The object a set of keys comes from (for messages and the `optional` flag).
struct KeySource<'a> {
    volume: &'a str,
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    optional: bool,
}

fn key_items(
    src: &KeySource<'_>,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    match items {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileContent {
                        data: v.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                if !relative_ok(&item.path) {
                    return Err(VolumeError::InvalidPath(item.path.clone()));
                }
                match data.get(&item.key) {
                    Some(v) => {
                        let mode = item.mode.map_or(default_mode, |m| m as u32);
                        out.insert(
                            item.path.clone(),
                            FileContent {
                                data: v.clone(),
                                mode,
                            },
                        );
                    }
                    None if src.optional => {}
                    None => {
                        return Err(VolumeError::Spec {
                            volume: src.volume.to_string(),
                            source: SpecError::KeyNotFound {
                                kind: src.kind,
                                namespace: src.namespace.to_string(),
                                name: src.name.to_string(),
                                key: item.key.clone(),
                            },
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Files of a ConfigMap or Secret source, of a volume or of a projected volume. A missing object
/// is an error unless the source is optional.
fn source_files(
    lookup: &dyn VolumeLookup,
    src: &KeySource<'_>,
    items: Option<&Vec<KeyToPath>>,
    mode: u32,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let secret = src.kind == "Secret";
    let data = if secret {
        lookup
            .secret(src.namespace, src.name)
            .map(|o| secret_data(&o))
    } else {
        lookup
            .config_map(src.namespace, src.name)
            .map(|o| config_map_data(&o))
    };
    match data {
        Some(data) => key_items(src, &data, items, mode, out),
        None if src.optional => Ok(()),
        None => Err(VolumeError::Spec {
            volume: src.volume.into(),
            source: if secret {
                SpecError::SecretNotFound(src.name.to_string())
            } else {
                SpecError::ConfigMapNotFound(src.name.to_string())
            },
        }),
    }
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    data
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    data.extend(
        s.data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    data
}

/// Formats labels or annotations like the downward API (`key="value"` lines, sorted).
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.iter()
        .flat_map(|m| m.iter())
        .map(|(k, v)| format!("{k}={}\n", serde_json::Value::String(v.clone())))
        .collect()
}

fn downward_items(
    pod: &Pod,
    facts: &PodFacts,
    volume: &str,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: u32,
    lookup: &dyn Lookup,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    let spec_err = |source| VolumeError::Spec {
        volume: volume.to_string(),
        source,
    };
    for item in items {
        if !relative_ok(&item.path) {
            return Err(VolumeError::InvalidPath(item.path.clone()));
        }
        let value = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                _ => {
                    let container = Container {
                        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
                            name: "V".into(),
                            value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                                field_ref: Some(f.clone()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    };
                    let env =
                        spec::resolve_env(pod, &container, facts, lookup).map_err(spec_err)?;
                    env.get("V").unwrap_or_default().to_string()
                }
            }
        } else if let Some(r) = &item.resource_field_ref {
            let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
            let name = r.container_name.as_deref().unwrap_or_default();
            let container = containers
                .clone()
                .find(|c| c.name == name)
                .or_else(|| containers.clone().next())
                .cloned()
                .unwrap_or_default();
            let c = Container {
                env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
                    name: "V".into(),
                    value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                        resource_field_ref: Some(r.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..container
            };
            let env = spec::resolve_env(pod, &c, facts, lookup).map_err(spec_err)?;
            env.get("V").unwrap_or_default().to_string()
        } else {
            continue;
        };
        let mode = item.mode.map_or(default_mode, |m| m as u32);
        out.insert(
            item.path.clone(),
            FileContent {
                data: value.into_bytes(),
                mode,
            },
        );
    }
    Ok(())
}

/// Decides what `volume` is for `pod`. Pure given its inputs; `token` answers service account
/// token projections.
pub fn plan_volume(
    pod: &Pod,
    volume: &Volume,
    facts: &PodFacts,
    lookup: &dyn VolumeLookup,
    token: &dyn Fn(&ServiceAccountTokenProjection) -> Option<String>,
) -> Result<VolumePlan, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = volume.name.as_str();
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let optional = cm.optional.unwrap_or(false);
        let mut out = Payload::new();
        source_files(
            lookup,
            &KeySource {
                volume: name,
                kind: "ConfigMap",
                namespace: ns,
                name: &cm.name,
                optional,
            },
            cm.items.as_ref(),
            mode,
            &mut out,
        )?;
        return Ok(VolumePlan::Files(out));
    }
    if let Some(s) = &volume.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let mode = s.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let optional = s.optional.unwrap_or(false);
        let mut out = Payload::new();
        source_files(
            lookup,
            &KeySource {
                volume: name,
                kind: "Secret",
                namespace: ns,
                name: &secret_name,
                optional,
            },
            s.items.as_ref(),
            mode,
            &mut out,
        )?;
        return Ok(VolumePlan::Files(out));
    }
    if let Some(d) = &volume.downward_api {
        let mode = d.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let mut out = Payload::new();
        downward_items(
            pod,
            facts,
            name,
            d.items.as_deref().unwrap_or_default(),
            mode,
            lookup,
            &mut out,
        )?;
        return Ok(VolumePlan::Files(out));
    }
    if let Some(p) = &volume.projected {
        let mode = p.default_mode.map_or(DEFAULT_MODE, |m| m as u32);
        let mut out = Payload::new();
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let optional = cm.optional.unwrap_or(false);
                source_files(
                    lookup,
                    &KeySource {
                        volume: name,
                        kind: "ConfigMap",
                        namespace: ns,
                        name: &cm.name,
                        optional,
                    },
                    cm.items.as_ref(),
                    mode,
                    &mut out,
                )?;
            }
            if let Some(s) = &source.secret {
                let optional = s.optional.unwrap_or(false);
                source_files(
                    lookup,
                    &KeySource {
                        volume: name,
                        kind: "Secret",
                        namespace: ns,
                        name: &s.name,
                        optional,
                    },
                    s.items.as_ref(),
                    mode,
                    &mut out,
                )?;
            }
            if let Some(d) = &source.downward_api {
                downward_items(
                    pod,
                    facts,
                    name,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    lookup,
                    &mut out,
                )?;
            }
            if let Some(t) = &source.service_account_token {
                if !relative_ok(&t.path) {
                    return Err(VolumeError::InvalidPath(t.path.clone()));
                }
                let tok = token(t).ok_or_else(|| VolumeError::TokenUnavailable(name.into()))?;
                out.insert(
                    t.path.clone(),
                    FileContent {
                        data: tok.into_bytes(),
                        mode: 0o600.max(mode & 0o600),
                    },
                );
            }
            if source.cluster_trust_bundle.is_some() {
                return Err(VolumeError::Unsupported(name.into()));
            }
        }
        return Ok(VolumePlan::Files(out));
    }
    if volume.empty_dir.is_some() {
        return Ok(VolumePlan::EmptyDir);
    }
    if let Some(h) = &volume.host_path {
        if !h.path.starts_with('/') {
            return Err(VolumeError::InvalidPath(h.path.clone()));
        }
        let create = matches!(
            h.type_.as_deref(),
            None | Some("") | Some("DirectoryOrCreate")
        );
        return Ok(VolumePlan::HostPath {
            path: PathBuf::from(&h.path),
            create,
        });
    }
    if let Some(c) = &volume.persistent_volume_claim {
        let pvc = lookup
            .pvc(ns, &c.claim_name)
            .ok_or_else(|| VolumeError::ClaimNotFound(c.claim_name.clone()))?;
        let pv_name = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|_| pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .ok_or_else(|| VolumeError::ClaimNotBound(c.claim_name.clone()))?;
        let pv = lookup
            .pv(&pv_name)
            .ok_or_else(|| VolumeError::ClaimNotBound(c.claim_name.clone()))?;
        let spec = pv.spec.as_ref();
        let path = spec
            .and_then(|s| {
                s.host_path
                    .as_ref()
                    .map(|h| h.path.clone())
                    .or_else(|| s.local.as_ref().map(|l| l.path.clone()))
            })
            .ok_or_else(|| VolumeError::UnsupportedPv(pv_name.clone()))?;
        return Ok(VolumePlan::Claim {
            path: PathBuf::from(path),
        });
    }
    Err(VolumeError::Unsupported(name.into()))
}

/// Whether a volume's contents are managed by the agent and must be mounted read-only (kubelet
/// mounts ConfigMap, Secret, downward API and projected volumes read-only).
pub fn is_read_only_source(volume: &Volume) -> bool {
    volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
}

/// A bind mount inside a container's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Directory or file on the host.
    pub source: PathBuf,
    /// Path inside the container (the same file system, seen through the bind mount).
    pub target: PathBuf,
    /// Remount read-only.
    pub read_only: bool,
}

/// Turns `container.volumeMounts` into bind mounts, parents before children. `dirs` maps each
/// volume name to its directory on the host. Pure.
pub fn mount_plan(
    pod: &Pod,
    container: &Container,
    dirs: &HashMap<String, PathBuf>,
    env: &Env,
) -> Result<Vec<Mount>, VolumeError> {
    let volumes: HashMap<&str, &Volume> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .get(m.name.as_str())
            .ok_or_else(|| VolumeError::UnknownVolume(m.name.clone()))?;
        let dir = dirs
            .get(&m.name)
            .ok_or_else(|| VolumeError::UnknownVolume(m.name.clone()))?;
        if !m.mount_path.starts_with('/') {
            return Err(VolumeError::InvalidPath(m.mount_path.clone()));
        }
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => spec::expand(e, |n| env.get(n).map(str::to_string)),
            _ => String::new(),
        };
        let source = if sub.is_empty() {
            dir.clone()
        } else if relative_ok(&sub) {
            dir.join(&sub)
        } else {
            return Err(VolumeError::InvalidPath(sub));
        };
        mounts.push(Mount {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: m.read_only.unwrap_or(false) || is_read_only_source(volume),
        });
    }
    mounts.sort_by_key(|m| m.target.components().count());
    Ok(mounts)
}

/// Reads the payload currently published in `dir` (through `..data`).
fn current_payload(dir: &Path) -> Option<Payload> {
    use std::os::unix::fs::PermissionsExt;
    let data = dir.join("..data");
    let root = std::fs::canonicalize(&data).ok()?;
    let mut out = Payload::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()? {
            let entry = entry.ok()?;
            let path = entry.path();
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(&root)
                    .ok()?
                    .to_string_lossy()
                    .into_owned();
                let data = std::fs::read(&path).ok()?;
                out.insert(
                    rel,
                    FileContent {
                        data,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Some(out)
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Publishes `payload` into `dir` atomically (kubelet's atomic writer layout). Returns whether
/// anything changed.
pub fn write_payload(dir: &Path, payload: &Payload) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if current_payload(dir).as_ref() == Some(payload) {
        return Ok(false);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let version = format!("..{stamp}");
    let version_dir = dir.join(&version);
    std::fs::create_dir(&version_dir)?;
    for (rel, file) in payload {
        let path = version_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&version, &tmp_link)?;
    std::fs::rename(&tmp_link, dir.join("..data"))?;
    let wanted: std::collections::BTreeSet<&str> = payload.keys().map(|k| top_level(k)).collect();
    for top in &wanted {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "..data" || name == version {
            continue;
        }
        if name.starts_with("..") {
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        } else if !wanted.contains(name.as_str()) && entry.file_type()?.is_symlink() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, PodSpec, VolumeMount};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("node-agent-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn file(s: &str) -> FileContent {
        FileContent {
            data: s.as_bytes().to_vec(),
            mode: DEFAULT_MODE,
        }
    }

    #[test]
    fn atomic_writer_publishes_and_replaces() {
        let dir = tmp("atomic");
        let mut p = Payload::new();
        p.insert("a.toml".into(), file("one"));
        p.insert("sub/b".into(), file("two"));
        assert!(write_payload(&dir, &p).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a.toml")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "two");
        assert!(
            !write_payload(&dir, &p).unwrap(),
            "unchanged payload is not rewritten"
        );
        let mut q = Payload::new();
        q.insert("a.toml".into(), file("three"));
        assert!(write_payload(&dir, &q).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.join("a.toml")).unwrap(),
            "three"
        );
        assert!(!dir.join("sub").exists(), "stale entries are removed");
        let versions = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(versions, 1, "old versions are removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mounts_are_ordered_and_read_only_for_config() {
        let pod = Pod {
            spec: Some(PodSpec {
                volumes: Some(vec![
                    Volume {
                        name: "cfg".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "c".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: "data".into(),
                        empty_dir: Some(Default::default()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = Container {
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "cfg".into(),
                    mount_path: "/var/lib/x/conf/file.toml".into(),
                    sub_path: Some("file.toml".into()),
                    ..Default::default()
                },
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/var/lib/x".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let dirs: HashMap<String, PathBuf> = [
            ("cfg".to_string(), PathBuf::from("/s/cfg")),
            ("data".to_string(), PathBuf::from("/s/data")),
        ]
        .into();
        let m = mount_plan(&pod, &container, &dirs, &Env::default()).unwrap();
        assert_eq!(
            m[0],
            Mount {
                source: "/s/data".into(),
                target: "/var/lib/x".into(),
                read_only: false
            }
        );
        assert_eq!(
            m[1],
            Mount {
                source: "/s/cfg/file.toml".into(),
                target: "/var/lib/x/conf/file.toml".into(),
                read_only: true
            }
        );
        let bad = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/x".into(),
                sub_path: Some("../escape".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(matches!(
            mount_plan(&pod, &bad, &dirs, &Env::default()),
            Err(VolumeError::InvalidPath(_))
        ));
    }
}

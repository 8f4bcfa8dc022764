//! A reconcile's decision as a value: what to ask of PD, what to do with the ConfigMap, PVCs and
//! pod, what to report (status, Events) and when to look again. Each component's pure `decide`
//! makes one; [`super::execute`] carries it out. The decisions PD and TiKV share are here too:
//! whether the spec and the Cluster let the instance run, what happens to the pod, the status.

use api::conditions::synced;
use api::events;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use operator_runtime::conditions::{self, NewCondition};
use operator_runtime::tls_secret;

use super::facts::{Facts, Restart, tls_secret_name};
use crate::kind::InstanceKind;
pub use crate::metrics::Observation;
use crate::resources::{self, Desired, Invalid};
use crate::status;

/// The finalizer that keeps an instance until PD no longer depends on it (member removed, store
/// Tombstone).
pub const FINALIZER: &str = "core.tikv.org/pd-cleanup";

/// The finalizer of an instance that stays: added if it is missing.
pub fn finalizer_for<K: InstanceKind>(obj: &K) -> Finalizer {
    if obj
        .meta()
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
    {
        Finalizer::Keep
    } else {
        Finalizer::Add
    }
}

/// What happens to the finalizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finalizer {
    /// Leave it as it is.
    Keep,
    /// Add it (before anything else is done).
    Add,
    /// Remove it (after everything else): the object goes.
    Remove,
}

/// One request to PD that changes something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PdOp {
    /// Hand PD leadership to the member `to`.
    TransferLeader {
        /// Member name.
        to: String,
    },
    /// Remove the member from PD.
    RemoveMember {
        /// Member name.
        name: String,
    },
    /// Add the store to the evict-leader scheduler.
    StartEviction {
        /// Store id.
        store: u64,
    },
    /// Remove the store's evict-leader entry.
    EndEviction {
        /// Store id.
        store: u64,
    },
    /// Ask PD to remove the store (Offline, then Tombstone).
    RemoveStore {
        /// Store id.
        store: u64,
    },
    /// Cancel the removal of an Offline store.
    CancelRemoval {
        /// Store id.
        store: u64,
    },
}

/// What to report when PD refuses a request: a False condition and a Warning Event, both with
/// PD's own message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Condition type.
    pub condition: &'static str,
    /// Condition reason.
    pub reason: &'static str,
    /// Event reason.
    pub event: &'static str,
}

/// A PD request, the Event that announces it once done, and what a refusal means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdStep {
    /// The request.
    pub op: PdOp,
    /// Published when PD did it (not when it was done already).
    pub event: Option<Event>,
    /// `None`: a refusal fails the reconcile.
    pub on_refusal: Option<Refusal>,
}

impl PdStep {
    /// `op`, announced by a Normal Event.
    pub fn new(op: PdOp, reason: &'static str, note: String) -> Self {
        Self {
            op,
            event: Some(Event::normal(reason, note)),
            on_refusal: None,
        }
    }

    /// `op`, without an Event.
    pub fn quiet(op: PdOp) -> Self {
        Self {
            op,
            event: None,
            on_refusal: None,
        }
    }
}

/// A Kubernetes Event about the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// One of [`api::events`].
    pub reason: &'static str,
    /// What happened, for people.
    pub note: String,
}

impl Event {
    /// A Normal Event.
    pub fn normal(reason: &'static str, note: String) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            note,
        }
    }

    /// A Warning Event.
    pub fn warning(reason: &'static str, note: String) -> Self {
        Self {
            type_: EventType::Warning,
            reason,
            note,
        }
    }
}

/// What happens to the pod.
#[derive(Clone, Debug, PartialEq)]
pub enum PodOp {
    /// Nothing.
    Keep,
    /// Create it (after the ConfigMap and PVCs).
    Create(Box<Pod>),
    /// Delete the pod with this UID, never one that replaced it meanwhile.
    Delete {
        /// The UID the decision was made on.
        uid: String,
    },
}

/// The decision of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<K: InstanceKind> {
    /// The finalizer.
    pub finalizer: Finalizer,
    /// PD requests, in order, before anything below.
    pub pd: Vec<PdStep>,
    /// The ConfigMap and PVCs to apply (before a pod is created, or while it is not ready).
    pub apply: Option<(ConfigMap, Vec<PersistentVolumeClaim>)>,
    /// The pod.
    pub pod: PodOp,
    /// The status to report, written only when it differs from the stored one; `None`: none.
    pub status: Option<K::Status>,
    /// Events, published after everything else succeeded.
    pub events: Vec<Event>,
    /// What the metrics learn from this reconcile, recorded once everything else succeeded.
    pub observe: Vec<Observation>,
    /// When to look again.
    pub requeue: Action,
}

impl<K: InstanceKind> Plan<K> {
    /// Nothing to do but look again: `requeue`.
    pub fn wait(requeue: Action) -> Self {
        Self {
            finalizer: Finalizer::Keep,
            pd: Vec::new(),
            apply: None,
            pod: PodOp::Keep,
            status: None,
            events: Vec::new(),
            observe: Vec::new(),
            requeue,
        }
    }
}

/// The finalizer goes, and with it the object.
pub fn released<K: InstanceKind>() -> Plan<K> {
    Plan {
        finalizer: Finalizer::Remove,
        ..Plan::wait(Action::await_change())
    }
}

/// What a deleted instance does before PD is asked: once its Cluster is gone PD no longer
/// matters (released); while it is paused it waits (unpausing changes the Cluster, which wakes
/// it). `None`: it is PD's turn.
pub fn leave_without_pd<K: InstanceKind>(facts: &Facts<K>) -> Option<Plan<K>> {
    if facts.cluster_gone() {
        Some(released())
    } else if facts.paused() {
        Some(Plan::wait(Action::await_change()))
    } else {
        None
    }
}

/// Whether the instance may run: the objects it needs, or why not (its `Synced` condition).
#[derive(Clone, Debug, PartialEq)]
pub enum Sync {
    /// The objects to run.
    Run(Box<Desired>),
    /// Why nothing may be changed or created.
    Blocked {
        /// `Synced=False` reason.
        reason: &'static str,
        /// Its message.
        message: String,
        /// Only the user can unblock it: wait for a change, do not poll.
        until_changed: bool,
        /// A Warning Event the first time (when the stored reason differs).
        event: Option<Event>,
    },
}

/// Whether `facts`' instance may run, with PD at `pd_url`.
pub fn sync<K: InstanceKind>(facts: &Facts<K>, pd_url: Option<&str>) -> Sync {
    // `warn`: the Event reason of a Warning published the first time it blocks for `reason`.
    let blocked =
        |reason: &'static str, message: String, until_changed, warn: Option<&'static str>| {
            let first = !conditions::has_reason(facts.conditions(), synced::TYPE, reason);
            let event = warn
                .filter(|_| first)
                .map(|r| Event::warning(r, message.clone()));
            Sync::Blocked {
                reason,
                message,
                until_changed,
                event,
            }
        };
    let Some(cluster) = &facts.cluster else {
        let message = format!(
            "Cluster {} does not exist",
            api::v1alpha1::HasCluster::cluster_name(facts.obj)
        );
        // The Cluster watch wakes the instance when it appears.
        let warn = Some(events::CLUSTER_NOT_FOUND);
        return blocked(synced::CLUSTER_NOT_FOUND, message, true, warn);
    };
    if cluster.spec.paused {
        let message = "the cluster is paused; nothing is changed".to_string();
        return blocked(synced::PAUSED, message, false, None);
    }
    let Some(pd_url) = pd_url else {
        let message = "waiting for the Cluster to report PD's URL".to_string();
        return blocked(synced::WAITING_FOR_PD, message, true, None);
    };
    let tls_secret = if cluster.tls_enabled() {
        let name = tls_secret_name(facts.obj);
        if let Err(message) = tls_problem(facts, &name) {
            // Polled: Secrets are not watched (RBAC: get only).
            let warn = Some(events::INVALID_TLS_SECRET);
            return blocked(synced::INVALID_TLS_SECRET, message, false, warn);
        }
        Some(name)
    } else {
        None
    };
    match resources::desired(facts.obj, &facts.namespace, pd_url, tls_secret.as_deref()) {
        Ok(d) => Sync::Run(Box::new(d)),
        Err(Invalid::Config(message)) => blocked(
            synced::INVALID_CONFIG,
            message,
            true,
            Some(events::INVALID_CONFIG),
        ),
        Err(Invalid::Spec(message)) => blocked(
            synced::INVALID_SPEC,
            message,
            true,
            Some(events::INVALID_SPEC),
        ),
    }
}

/// Why the instance's certificate Secret `name` (as read) cannot be used now: missing, a key
/// missing, not PEM, a key that is not the certificate's, not issued by `ca.crt`, expired or not
/// yet valid, not for server and client auth, or not for the names others reach the instance at.
pub fn tls_problem<K: InstanceKind>(facts: &Facts<K>, name: &str) -> Result<(), String> {
    let usage = tls::Usage::Peer {
        names: facts.obj.tls_names(&facts.namespace),
    };
    let secret = facts.tls_secret.as_ref();
    tls_secret::usable(&facts.namespace, name, secret, &usage, facts.now).map(drop)
}

/// The pod part of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PodPlan {
    /// ConfigMap and PVCs to apply.
    pub apply: Option<(ConfigMap, Vec<PersistentVolumeClaim>)>,
    /// The pod operation.
    pub op: PodOp,
    /// The pod as it will be afterwards (`None`: gone or about to be created).
    pub after: Option<Pod>,
    /// The `Synced` condition.
    pub synced: NewCondition,
    /// Events of the above.
    pub events: Vec<Event>,
}

/// What happens to the pod: created when missing (unless suspended), deleted when it must
/// restart and `may_restart`, else kept. The ConfigMap and PVCs are applied before a pod is
/// created and while it is not ready (they may be why); a ready pod at its revision runs what
/// they hold, so they are left alone (no writes while nothing changes).
pub fn pod_plan<K: InstanceKind>(facts: &Facts<K>, sync: &Sync, may_restart: bool) -> PodPlan {
    let name = facts.obj.meta().name.clone().unwrap_or_default();
    let mut plan = PodPlan {
        apply: None,
        op: PodOp::Keep,
        after: facts.pod.clone(),
        synced: NewCondition::new(synced::TYPE, true, synced::SYNCED, ""),
        events: Vec::new(),
    };
    let desired = match sync {
        Sync::Blocked {
            reason,
            message,
            event,
            ..
        } => {
            plan.synced = NewCondition::new(synced::TYPE, false, *reason, message.clone());
            plan.events.extend(event.clone());
            return plan;
        }
        Sync::Run(d) => d,
    };
    match &facts.pod {
        None if facts.suspending() => {}
        None => {
            plan.op = PodOp::Create(Box::new(desired.pod.clone()));
            plan.events.push(Event::normal(
                events::POD_CREATED,
                format!("Created pod {name}"),
            ));
        }
        Some(p) if p.meta().deletion_timestamp.is_some() => {}
        Some(p) => match facts.restart() {
            Some(why) if may_restart => {
                plan.op = PodOp::Delete {
                    uid: p.meta().uid.clone().unwrap_or_default(),
                };
                plan.after = None;
                let note = match why {
                    Restart::Suspend => format!("Deleted pod {name}: the cluster is suspended"),
                    Restart::Outdated { running, wanted } => format!(
                        "Deleted pod {name} to restart it at revision {}: it ran {}",
                        wanted.as_deref().unwrap_or("(none)"),
                        running.as_deref().unwrap_or("no revision"),
                    ),
                };
                plan.events.push(Event::normal(events::POD_DELETED, note));
            }
            _ => {}
        },
    }
    // Suspended once the pod is gone or going (it does not come back).
    if facts.suspending()
        && plan
            .after
            .as_ref()
            .is_none_or(|p| p.meta().deletion_timestamp.is_some())
    {
        plan.synced = NewCondition::new(
            synced::TYPE,
            false,
            synced::SUSPENDED,
            "the cluster is suspended: no pod runs",
        );
    }
    let not_ready = plan
        .after
        .as_ref()
        .is_some_and(|p| !status::pod_ready(Some(p)));
    if matches!(plan.op, PodOp::Create(_)) || not_ready {
        plan.apply = Some((desired.config_map.clone(), desired.pvcs.clone()));
    }
    plan
}

/// The status to report: the stored one with `new` conditions merged in (transition times kept),
/// the observed generation, the revision of the pod once it is ready, and the kind's own fields
/// set by `fill`. A pod that cannot run (image, version, command) is the user's to fix: its
/// first sight adds a Warning Event to `events`.
pub fn status<K: InstanceKind>(
    facts: &Facts<K>,
    new: &[NewCondition],
    pod_after: Option<&Pod>,
    events: &mut Vec<Event>,
    fill: impl FnOnce(&mut K::Status),
) -> K::Status {
    if let Some((reason, message)) = status::pod_problem(pod_after)
        && !conditions::has_reason(facts.conditions(), api::conditions::ready::TYPE, &reason)
    {
        events.push(Event::warning(
            events::POD_CANNOT_RUN,
            format!("{reason}: {message}"),
        ));
    }
    let generation = facts.obj.meta().generation;
    let mut st = facts.obj.status_or_default();
    let common = K::common(&mut st);
    common.observed_generation = generation;
    common.conditions = conditions::merge(&common.conditions, new, generation, Time(facts.now));
    if status::pod_ready(pod_after) {
        common.current_revision = pod_after
            .and_then(|p| api::labels::revision(p.meta()))
            .map(String::from);
    }
    fill(&mut st);
    st
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use api::v1alpha1::{PD, TiKV};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use serde_json::json;
    use testenv::pki::{Ca, Leaf, Pair};

    use super::*;
    use crate::instance::fixtures::*;

    fn secret(ca: &Ca, pair: &Pair) -> Secret {
        testenv::pki::secret("certs", ca, pair)
    }

    fn tls_cluster() -> api::v1alpha1::Cluster {
        cluster(json!({"tlsCluster": {"enabled": true}}))
    }

    /// The store `t1` at r2 with its pod at r1: it would restart if it could.
    fn outdated() -> TiKV {
        tikv("r2", json!({}), json!({"currentRevision": "r1"}))
    }

    const TIKV_NAMES: &[&str] = &["t1.basic-tikv-peer.ns.svc"];

    #[test]
    fn an_unusable_certificate_secret_blocks_everything_and_names_the_secret() {
        let ca = Ca::new("cluster").unwrap();
        let other = Ca::new("other").unwrap();
        let good = ca.issue(&Leaf::peer("tikv", TIKV_NAMES)).unwrap();
        let mut no_key = secret(&ca, &good);
        no_key.data.as_mut().unwrap().remove(tls::KEY);
        let mut foreign_key = secret(&ca, &good);
        foreign_key.data.as_mut().unwrap().insert(
            tls::KEY.into(),
            ByteString(ca.issue(&Leaf::client("x")).unwrap().key.into_bytes()),
        );
        let mut expired = Leaf::peer("tikv", TIKV_NAMES);
        expired.not_after = UNIX_EPOCH + Duration::from_secs(now().as_second() as u64 - 60);
        let table: Vec<(&str, Option<Secret>, &str)> = vec![
            ("missing", None, "does not exist"),
            ("no key", Some(no_key), "has no tls.key"),
            ("foreign key", Some(foreign_key), "tls.key is not the key"),
            (
                "another CA",
                Some(secret(
                    &ca,
                    &other.issue(&Leaf::peer("t", TIKV_NAMES)).unwrap(),
                )),
                "is not issued by a CA in ca.crt",
            ),
            (
                "other names",
                Some(secret(
                    &ca,
                    &ca.issue(&Leaf::peer("t", &["x.ns.svc"])).unwrap(),
                )),
                "tls.crt is not valid",
            ),
            (
                "client only",
                Some(secret(&ca, &ca.issue(&Leaf::client("t")).unwrap())),
                "tls.crt is not valid",
            ),
            (
                "expired",
                Some(secret(&ca, &ca.issue(&expired).unwrap())),
                "tls.crt is not valid",
            ),
        ];
        let t = outdated();
        for (case, s, want) in table {
            let mut f = facts(&t, Some(tls_cluster()), Some(pod("t1", "r1", true)));
            f.tls_secret = s;
            let sync = sync(&f, f.pd_url());
            let Sync::Blocked {
                reason,
                message,
                until_changed,
                event,
            } = &sync
            else {
                panic!("{case}: not blocked: {sync:?}");
            };
            assert_eq!(*reason, synced::INVALID_TLS_SECRET, "{case}");
            assert!(
                message.starts_with("TLS Secret ns/basic-tikv-cluster-secret ")
                    && message.contains(want),
                "{case}: {message}"
            );
            assert!(!until_changed, "{case}: Secrets are polled");
            let event = event.as_ref().expect("a Warning the first time");
            assert_eq!(
                (event.type_, event.reason),
                (EventType::Warning, events::INVALID_TLS_SECRET)
            );
            // Nothing restarts (the new pod could not run either), nothing is applied.
            let plan = pod_plan(&f, &sync, true);
            assert_eq!((&plan.op, &plan.apply), (&PodOp::Keep, &None), "{case}");
            assert_eq!(plan.synced.reason, synced::INVALID_TLS_SECRET);
        }
        // Said once: with the condition stored, no second Event.
        let told = tikv(
            "r2",
            json!({}),
            json!({"currentRevision": "r1",
                   "conditions": [condition("Synced", "False", "InvalidTLSSecret", 10)]}),
        );
        let f = facts(&told, Some(tls_cluster()), Some(pod("t1", "r1", true)));
        assert!(matches!(
            sync(&f, f.pd_url()),
            Sync::Blocked { event: None, .. }
        ));
        // Without TLS the Secret is not needed.
        let f = facts(&t, Some(cluster(json!({}))), Some(pod("t1", "r1", true)));
        assert!(matches!(sync(&f, f.pd_url()), Sync::Run(_)));
    }

    fn run<K: InstanceKind>(f: &Facts<K>) -> Desired {
        match sync(f, Some("https://basic-pd.ns.svc:2379")) {
            Sync::Run(d) => *d,
            other => panic!("blocked: {other:?}"),
        }
    }

    fn volume_secret(pod: &Pod) -> Option<String> {
        let volumes = pod.spec.as_ref()?.volumes.as_ref()?;
        let v = volumes.iter().find(|v| v.name == "cluster-tls")?;
        v.secret.as_ref()?.secret_name.clone()
    }

    #[test]
    fn a_usable_secret_is_mounted_and_tls_configured() {
        let ca = Ca::new("cluster").unwrap();
        // TiKV: the Secret its template names; [security] in its config; a TCP probe.
        let t = tikv(
            "r1",
            json!({"tls": {"secretName": "tikv-certs"}}),
            json!({}),
        );
        let mut f = facts(&t, Some(tls_cluster()), None);
        f.tls_secret = Some(secret(
            &ca,
            &ca.issue(&Leaf::peer("t", TIKV_NAMES)).unwrap(),
        ));
        let d = run(&f);
        assert_eq!(volume_secret(&d.pod).as_deref(), Some("tikv-certs"));
        let config: toml::Table = d.config_map.data.unwrap()["config.toml"].parse().unwrap();
        assert_eq!(
            config["security"]["cert-path"].as_str(),
            Some("/var/lib/tikv-tls/tls.crt")
        );
        let c = &d.pod.spec.as_ref().unwrap().containers[0];
        assert!(c.readiness_probe.as_ref().unwrap().tcp_socket.is_some());
        assert!(
            c.command
                .as_ref()
                .unwrap()
                .contains(&"--pd=https://basic-pd.ns.svc:2379".to_string())
        );

        // PD: its group's default Secret, valid for its own name and the Service; https URLs
        // and the files as flags.
        let p = pd("r1", json!({}));
        let mut f = facts(&p, Some(tls_cluster()), None);
        let names = ["pd-b.basic-pd-peer.ns.svc", "basic-pd.ns.svc"];
        f.tls_secret = Some(secret(&ca, &ca.issue(&Leaf::peer("pd", &names)).unwrap()));
        let d = run(&f);
        assert_eq!(
            volume_secret(&d.pod).as_deref(),
            Some("basic-pd-cluster-secret")
        );
        let args = d.pod.spec.as_ref().unwrap().containers[0]
            .command
            .clone()
            .unwrap();
        for want in [
            "--client-urls=https://0.0.0.0:2379",
            "--advertise-peer-urls=https://pd-b.basic-pd-peer.ns.svc:2380",
            "--cacert=/var/lib/pd-tls/ca.crt",
            "--cert=/var/lib/pd-tls/tls.crt",
            "--key=/var/lib/pd-tls/tls.key",
        ] {
            assert!(args.contains(&want.to_string()), "{want} in {args:?}");
        }
        // Valid for the member's name only: stores could not reach it through the Service.
        f.tls_secret = Some(secret(
            &ca,
            &ca.issue(&Leaf::peer("pd", &names[..1])).unwrap(),
        ));
        assert!(matches!(sync(&f, f.pd_url()), Sync::Blocked { .. }));
        // The files are the operator's.
        let mut owns: PD = p.clone();
        owns.spec.template.config = Some("[security]\ncert-path = \"/x\"\n".into());
        let mut f = facts(&owns, Some(tls_cluster()), None);
        f.tls_secret = Some(secret(&ca, &ca.issue(&Leaf::peer("pd", &names)).unwrap()));
        assert!(matches!(
            sync(&f, f.pd_url()),
            Sync::Blocked {
                reason: synced::INVALID_CONFIG,
                ..
            }
        ));
    }

    #[test]
    fn the_operators_client_certificate_must_be_for_client_auth_from_the_ca() {
        let client_tls = |ns: &str, name: &str, s: Option<&Secret>, now| {
            tls_secret::usable(ns, name, s, &tls::Usage::Client, now)
        };
        let ca = Ca::new("cluster").unwrap();
        let name = "basic-cluster-client-secret";
        let ok = secret(&ca, &ca.issue(&Leaf::client("operator")).unwrap());
        let m = client_tls("ns", name, Some(&ok), now()).unwrap();
        assert_eq!(m.ca, ca.pem().as_bytes());
        let missing = client_tls("ns", name, None, now()).unwrap_err();
        assert_eq!(
            missing,
            "TLS Secret ns/basic-cluster-client-secret does not exist"
        );
        let foreign = Ca::new("other").unwrap();
        let bad = secret(&ca, &foreign.issue(&Leaf::client("operator")).unwrap());
        let err = client_tls("ns", name, Some(&bad), now()).unwrap_err();
        assert!(err.contains("is not issued by a CA in ca.crt"), "{err}");
    }
}

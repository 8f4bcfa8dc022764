//! Pure status computation of an instance from its pod and what PD reports.

use k8s_openapi::api::core::v1::Pod;
use operator_runtime::conditions::{self, NewCondition};

/// What PD says about a PD member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    /// Member name (the PD object's name).
    pub name: String,
    /// Member id.
    pub id: u64,
    /// Is the PD leader.
    pub leader: bool,
    /// PD's health check of the member.
    pub healthy: bool,
}

/// What PD says about a TiKV store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreInfo {
    /// Store id.
    pub id: u64,
    /// `state_name`: Up, Disconnected, Down, Offline, Tombstone.
    pub state: String,
    /// Region leaders on the store.
    pub leader_count: i64,
    /// Region peers on the store.
    pub region_count: i64,
}

/// Whether the pod runs and passes its readiness probe.
pub fn pod_ready(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waiting reasons that mean the container cannot run as specified (wrong image or version,
/// bad command) rather than that it is still starting.
const POD_PROBLEMS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why the pod's container cannot run, as the kubelet reports it: (reason, message).
pub fn pod_problem(pod: Option<&Pod>) -> Option<(String, String)> {
    let statuses = pod?.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let w = c.state.as_ref()?.waiting.as_ref()?;
        let reason = w.reason.as_deref().filter(|r| POD_PROBLEMS.contains(r))?;
        let message = format!(
            "container {} ({}): {}",
            c.name,
            c.image,
            w.message.as_deref().unwrap_or(reason)
        );
        Some((reason.to_string(), message))
    })
}

/// Ready=False because of the pod: its container's own reason when it cannot run, else a
/// generic not-ready.
fn pod_not_ready(pod: Option<&Pod>) -> NewCondition {
    match pod_problem(pod) {
        Some((reason, message)) => NewCondition::new("Ready", false, reason, message),
        None => NewCondition::new(
            "Ready",
            false,
            "PodNotReady",
            "the pod is not running or not ready",
        ),
    }
}

/// Ready condition of a PD member.
pub fn pd_ready(pod: Option<&Pod>, member: Option<&MemberInfo>) -> NewCondition {
    match (pod_ready(pod), member) {
        (false, _) => pod_not_ready(pod),
        (true, None) => NewCondition::new(
            "Ready",
            false,
            "NotMember",
            "PD does not list this member yet",
        ),
        (true, Some(m)) if !m.healthy => NewCondition::new(
            "Ready",
            false,
            "Unhealthy",
            "PD reports the member unhealthy",
        ),
        (true, Some(_)) => NewCondition::new("Ready", true, "Healthy", "member is healthy"),
    }
}

/// Ready condition of a TiKV store.
pub fn tikv_ready(pod: Option<&Pod>, store: Option<&StoreInfo>) -> NewCondition {
    match (pod_ready(pod), store) {
        (false, _) => pod_not_ready(pod),
        (true, None) => NewCondition::new(
            "Ready",
            false,
            "StoreNotRegistered",
            "the store has not registered with PD yet",
        ),
        (true, Some(s)) if s.state == "Up" => {
            NewCondition::new("Ready", true, "StoreUp", format!("store {} is Up", s.id))
        }
        (true, Some(s)) => NewCondition::new(
            "Ready",
            false,
            format!("Store{}", s.state),
            format!("store {} is {}", s.id, s.state),
        ),
    }
}

/// `StoreDown`: PD reports the store Down (no heartbeat for longer than its
/// `max-store-down-time`). Its lastTransitionTime is when the failover period starts.
pub fn store_down(store: Option<&StoreInfo>) -> NewCondition {
    match store {
        None => NewCondition {
            type_: "StoreDown",
            status: conditions::UNKNOWN,
            reason: "NoStore".into(),
            message: "PD does not know the store".into(),
        },
        Some(s) => NewCondition::new(
            "StoreDown",
            s.state == "Down",
            if s.state == "Down" { "Down" } else { "NotDown" },
            format!("PD reports store {} as {}", s.id, s.state),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    fn pod(ready: bool) -> Pod {
        Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tikv_ready_needs_a_ready_pod_and_an_up_store() {
        let up = StoreInfo {
            id: 4,
            state: "Up".into(),
            ..Default::default()
        };
        let down = StoreInfo {
            id: 4,
            state: "Disconnected".into(),
            ..Default::default()
        };
        assert_eq!(tikv_ready(None, Some(&up)).reason, "PodNotReady");
        assert_eq!(
            tikv_ready(Some(&pod(true)), None).reason,
            "StoreNotRegistered"
        );
        assert_eq!(
            tikv_ready(Some(&pod(true)), Some(&down)).reason,
            "StoreDisconnected"
        );
        let ok = tikv_ready(Some(&pod(true)), Some(&up));
        assert_eq!((ok.status, ok.reason.as_str()), ("True", "StoreUp"));
        assert_eq!(tikv_ready(Some(&pod(false)), Some(&up)).status, "False");
    }

    #[test]
    fn pd_ready_needs_a_healthy_member() {
        let m = MemberInfo {
            name: "a".into(),
            id: 1,
            leader: false,
            healthy: true,
        };
        assert_eq!(pd_ready(Some(&pod(true)), Some(&m)).status, "True");
        assert_eq!(
            pd_ready(
                Some(&pod(true)),
                Some(&MemberInfo {
                    healthy: false,
                    ..m.clone()
                })
            )
            .reason,
            "Unhealthy"
        );
        assert_eq!(pd_ready(Some(&pod(true)), None).reason, "NotMember");
    }

    #[test]
    fn a_pod_that_cannot_run_says_why() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "status": {"containerStatuses": [{
                "name": "tikv", "image": "pingcap/tikv:v99.0.0", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "no such version"}}
            }]}
        }))
        .unwrap();
        let c = tikv_ready(Some(&p), None);
        assert_eq!((c.status, c.reason.as_str()), ("False", "ErrImagePull"));
        assert_eq!(
            c.message,
            "container tikv (pingcap/tikv:v99.0.0): no such version"
        );
        // Still starting is not a problem.
        let mut starting = p.clone();
        starting
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state
            .as_mut()
            .unwrap()
            .waiting
            .as_mut()
            .unwrap()
            .reason = Some("ContainerCreating".into());
        assert_eq!(pd_ready(Some(&starting), None).reason, "PodNotReady");
    }
}

//! Pure conditions of an instance, from its pod and what PD reports about it.

use api::conditions::{ready, store_down};
use k8s_openapi::api::core::v1::Pod;
use operator_runtime::conditions::NewCondition;

use crate::pd::facts::Member;
use crate::tikv::facts::Store;
use api::v1alpha1::StoreState;

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
        Some((reason, message)) => NewCondition::new(ready::TYPE, false, reason, message),
        None => NewCondition::new(
            ready::TYPE,
            false,
            ready::POD_NOT_READY,
            "the pod is not running or not ready",
        ),
    }
}

/// Ready=False because PD could not be asked.
fn pd_unreachable(error: &str) -> NewCondition {
    NewCondition::new(
        ready::TYPE,
        false,
        ready::PD_UNREACHABLE,
        format!("cannot ask PD: {error}"),
    )
}

/// Ready condition of a PD member; `member` is what PD says about it (`Err`: PD could not be
/// asked).
pub fn pd_ready(pod: Option<&Pod>, member: Result<Option<&Member>, &str>) -> NewCondition {
    match (pod_ready(pod), member) {
        (false, _) => pod_not_ready(pod),
        (true, Err(e)) => pd_unreachable(e),
        (true, Ok(None)) => NewCondition::new(
            ready::TYPE,
            false,
            ready::NOT_MEMBER,
            "PD does not list this member yet",
        ),
        (true, Ok(Some(m))) if !m.healthy => NewCondition::new(
            ready::TYPE,
            false,
            ready::UNHEALTHY,
            "PD reports the member unhealthy",
        ),
        (true, Ok(Some(_))) => {
            NewCondition::new(ready::TYPE, true, ready::HEALTHY, "member is healthy")
        }
    }
}

/// Ready condition of a TiKV store; `store` is what PD says about it (`Err`: PD could not be
/// asked).
pub fn tikv_ready(pod: Option<&Pod>, store: Result<Option<&Store>, &str>) -> NewCondition {
    match (pod_ready(pod), store) {
        (false, _) => pod_not_ready(pod),
        (true, Err(e)) => pd_unreachable(e),
        (true, Ok(None)) => NewCondition::new(
            ready::TYPE,
            false,
            ready::STORE_NOT_REGISTERED,
            "the store has not registered with PD yet",
        ),
        (true, Ok(Some(s))) => NewCondition::new(
            ready::TYPE,
            s.state == StoreState::Up,
            s.state.ready_reason(),
            format!("store {} is {}", s.id, s.state),
        ),
    }
}

/// `StoreDown`: PD reports the store Down (no heartbeat for longer than its
/// `max-store-down-time`). Its lastTransitionTime is when the failover period starts.
pub fn store_down(store: Option<&Store>) -> NewCondition {
    match store {
        None => NewCondition::unknown(
            store_down::TYPE,
            store_down::NO_STORE,
            "PD does not know the store",
        ),
        Some(s) => {
            let down = s.state == StoreState::Down;
            NewCondition::new(
                store_down::TYPE,
                down,
                if down {
                    store_down::DOWN
                } else {
                    store_down::NOT_DOWN
                },
                format!("PD reports store {} as {}", s.id, s.state),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    pub(crate) fn pod(ready: bool) -> Pod {
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

    fn store(state: StoreState) -> Store {
        Store {
            id: 4,
            state,
            leader_count: 0,
            region_count: 0,
            region_size_mib: 0,
            zone: None,
        }
    }

    #[test]
    fn tikv_ready_needs_a_ready_pod_and_an_up_store() {
        let (up, gone) = (store(StoreState::Up), store(StoreState::Disconnected));
        assert_eq!(tikv_ready(None, Ok(Some(&up))).reason, "PodNotReady");
        assert_eq!(
            tikv_ready(Some(&pod(true)), Ok(None)).reason,
            "StoreNotRegistered"
        );
        assert_eq!(
            tikv_ready(Some(&pod(true)), Ok(Some(&gone))).reason,
            "StoreDisconnected"
        );
        let ok = tikv_ready(Some(&pod(true)), Ok(Some(&up)));
        assert_eq!((ok.status, ok.reason.as_str()), ("True", "StoreUp"));
        assert_eq!(tikv_ready(Some(&pod(false)), Ok(Some(&up))).status, "False");
        let unknown = tikv_ready(Some(&pod(true)), Err("connection refused"));
        assert_eq!(
            (unknown.status, unknown.reason.as_str()),
            ("False", "PDUnreachable")
        );
        assert!(unknown.message.contains("connection refused"));
    }

    #[test]
    fn store_down_is_what_pd_says() {
        assert_eq!(store_down(Some(&store(StoreState::Down))).status, "True");
        assert_eq!(
            store_down(Some(&store(StoreState::Disconnected))).reason,
            "NotDown"
        );
        assert_eq!(store_down(None).status, "Unknown");
    }

    #[test]
    fn pd_ready_needs_a_healthy_member() {
        let m = Member {
            name: "a".into(),
            id: 1,
            leader: false,
            healthy: true,
            client_urls: Vec::new(),
        };
        assert_eq!(pd_ready(Some(&pod(true)), Ok(Some(&m))).status, "True");
        let sick = Member {
            healthy: false,
            ..m.clone()
        };
        assert_eq!(
            pd_ready(Some(&pod(true)), Ok(Some(&sick))).reason,
            "Unhealthy"
        );
        assert_eq!(pd_ready(Some(&pod(true)), Ok(None)).reason, "NotMember");
        assert_eq!(
            pd_ready(Some(&pod(true)), Err("no leader")).reason,
            "PDUnreachable"
        );
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
        let c = tikv_ready(Some(&p), Ok(None));
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
        assert_eq!(pd_ready(Some(&starting), Ok(None)).reason, "PodNotReady");
    }
}

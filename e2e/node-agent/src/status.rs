//! Pure computation of a pod's status from what the agent knows about its containers, following
//! kubelet's rules (`getPhase`, `GeneratePodReadyCondition`, container state reasons).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A pod's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart on any exit (the default).
    Always,
    /// Restart on non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Parses `spec.restartPolicy` (default `Always`).
    pub fn parse(s: Option<&str>) -> RestartPolicy {
        match s {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that exited with `code` is restarted.
    pub fn restarts(self, code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// Exit code (`128 + signal` for signals).
    pub exit_code: i32,
    /// The signal, if one ended it.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, ...
    pub reason: String,
    /// Optional message.
    pub message: Option<String>,
    /// When it started.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
}

impl Termination {
    /// The kubelet reason for an exit code: `Completed` for 0, `Error` otherwise.
    pub fn reason_for(code: i32) -> &'static str {
        if code == 0 { "Completed" } else { "Error" }
    }
}

/// A container's current state as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running: `ContainerCreating`, `CrashLoopBackOff`, `ErrImagePull`, ...
    Waiting {
        /// Reason.
        reason: String,
        /// Message.
        message: Option<String>,
    },
    /// Running since.
    Running {
        /// Start time.
        started_at: Timestamp,
    },
    /// Ended and not restarted (yet, or ever).
    Terminated(Termination),
}

/// Everything the status needs about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// Container name.
    pub name: String,
    /// Image as in the spec.
    pub image: String,
    /// Id of the current (or last) process instance.
    pub container_id: Option<String>,
    /// The program the image maps to (reported as `imageID`).
    pub image_id: String,
    /// Current state.
    pub state: State,
    /// The previous termination.
    pub last_termination: Option<Termination>,
    /// Restart count.
    pub restart_count: i32,
    /// Readiness (probe or, without a probe, running).
    pub ready: bool,
    /// Started (startup probe passed, or running without one).
    pub started: bool,
}

/// Everything the status needs about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Init containers in order.
    pub init_containers: Vec<ContainerView>,
    /// App containers.
    pub containers: Vec<ContainerView>,
    /// The restart policy.
    pub restart_policy: RestartPolicy,
    /// The pod's address, once allocated.
    pub pod_ip: Option<Ipv4Addr>,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// When the agent first saw the pod.
    pub start_time: Timestamp,
    /// Condition types listed in `spec.readinessGates`.
    pub readiness_gates: Vec<String>,
}

/// Phase by kubelet's rules. Pure.
pub fn phase(view: &PodView) -> &'static str {
    // Init containers: a failed one that will not be retried fails the pod; unfinished ones
    // keep it Pending.
    let init_done = view
        .init_containers
        .iter()
        .all(|c| matches!(&c.state, State::Terminated(t) if t.exit_code == 0));
    if !init_done {
        let failed_for_good = view.restart_policy == RestartPolicy::Never
            && view
                .init_containers
                .iter()
                .any(|c| matches!(&c.state, State::Terminated(t) if t.exit_code != 0));
        return if failed_for_good { "Failed" } else { "Pending" };
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &view.containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } if c.last_termination.is_some() => stopped += 1,
            State::Waiting { .. } => waiting += 1,
        }
    }
    if view.containers.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match view.restart_policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded
                && view
                    .containers
                    .iter()
                    .all(|c| matches!(c.state, State::Terminated(_))) =>
            {
                "Succeeded"
            }
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        };
    }
    "Pending"
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn termination_state(t: &Termination) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: t.started_at.map(time),
            finished_at: Some(time(t.finished_at)),
            container_id: None,
        }),
        ..Default::default()
    }
}

fn container_status(c: &ContainerView) -> ContainerStatus {
    let state = match &c.state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        State::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        State::Terminated(t) => termination_state(t),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.container_id.clone(),
        ready: c.ready,
        started: Some(c.started),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: Some(
            c.last_termination
                .as_ref()
                .map(termination_state)
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

fn condition(
    previous: &[PodCondition],
    now: Timestamp,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        last_transition_time: Some(last),
        last_probe_time: None,
        observed_generation: None,
    }
}

const OWN_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

/// The complete pod status. Conditions of other writers (e.g. `PodScheduled`,
/// `DisruptionTarget`) are carried over from `previous`; ours keep their `lastTransitionTime`
/// while their status does not change. Pure.
pub fn compute_status(view: &PodView, previous: Option<&PodStatus>, now: Timestamp) -> PodStatus {
    let prev_conditions: &[PodCondition] = previous
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let phase = phase(view);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let init_done = view
        .init_containers
        .iter()
        .all(|c| matches!(&c.state, State::Terminated(t) if t.exit_code == 0));
    let unready: Vec<&str> = view
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let containers_ready = unready.is_empty() && !terminal;
    let gates_missing: Vec<&str> = view
        .readiness_gates
        .iter()
        .filter(|g| {
            !prev_conditions
                .iter()
                .any(|c| &c.type_ == *g && c.status == "True")
        })
        .map(String::as_str)
        .collect();
    let ready = containers_ready && gates_missing.is_empty();
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let unready_msg = (!unready.is_empty())
        .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    let ready_msg = if !containers_ready {
        unready_msg.clone()
    } else {
        Some(format!(
            "corresponding condition of pod readiness gate {:?} does not exist.",
            gates_missing.join(" ")
        ))
    };
    let uninit: Vec<&str> = view
        .init_containers
        .iter()
        .filter(|c| !matches!(&c.state, State::Terminated(t) if t.exit_code == 0))
        .map(|c| c.name.as_str())
        .collect();
    let mut conditions: Vec<PodCondition> = prev_conditions
        .iter()
        .filter(|c| !OWN_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    conditions.push(condition(
        prev_conditions,
        now,
        "PodReadyToStartContainers",
        view.pod_ip.is_some(),
        None,
        None,
    ));
    conditions.push(condition(
        prev_conditions,
        now,
        "Initialized",
        init_done,
        Some("ContainersNotInitialized"),
        Some(format!(
            "containers with incomplete status: [{}]",
            uninit.join(" ")
        )),
    ));
    conditions.push(condition(
        prev_conditions,
        now,
        "ContainersReady",
        containers_ready,
        Some(not_ready_reason),
        unready_msg,
    ));
    let ready_reason = if containers_ready {
        "ReadinessGatesNotReady"
    } else {
        not_ready_reason
    };
    conditions.push(condition(
        prev_conditions,
        now,
        "Ready",
        ready,
        Some(ready_reason),
        ready_msg,
    ));
    let ips = view.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(view.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: view.host_ip.to_string(),
        }]),
        pod_ip: view.pod_ip.map(|ip| ip.to_string()),
        pod_ips: ips,
        start_time: Some(time(view.start_time)),
        init_container_statuses: (!view.init_containers.is_empty())
            .then(|| view.init_containers.iter().map(container_status).collect()),
        container_statuses: Some(view.containers.iter().map(container_status).collect()),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, state: State, last: Option<Termination>, ready: bool) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: "img".into(),
            container_id: None,
            image_id: "x".into(),
            state,
            last_termination: last,
            restart_count: 0,
            ready,
            started: ready,
        }
    }

    fn term(code: i32) -> Termination {
        Termination {
            exit_code: code,
            signal: None,
            reason: Termination::reason_for(code).into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn view(containers: Vec<ContainerView>, policy: RestartPolicy) -> PodView {
        PodView {
            init_containers: vec![],
            containers,
            restart_policy: policy,
            pod_ip: Some(Ipv4Addr::new(127, 100, 1, 1)),
            host_ip: Ipv4Addr::new(127, 100, 0, 1),
            start_time: Timestamp::UNIX_EPOCH,
            readiness_gates: vec![],
        }
    }

    fn waiting(reason: &str) -> State {
        State::Waiting {
            reason: reason.into(),
            message: None,
        }
    }

    fn running() -> State {
        State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn phases() {
        use RestartPolicy::*;
        assert_eq!(
            phase(&view(
                vec![c("a", waiting("ContainerCreating"), None, false)],
                Always
            )),
            "Pending"
        );
        assert_eq!(
            phase(&view(vec![c("a", running(), None, true)], Always)),
            "Running"
        );
        assert_eq!(
            phase(&view(
                vec![c("a", waiting("CrashLoopBackOff"), Some(term(1)), false)],
                Always
            )),
            "Running"
        );
        assert_eq!(
            phase(&view(
                vec![c("a", State::Terminated(term(0)), None, false)],
                Never
            )),
            "Succeeded"
        );
        assert_eq!(
            phase(&view(
                vec![c("a", State::Terminated(term(0)), None, false)],
                OnFailure
            )),
            "Succeeded"
        );
        assert_eq!(
            phase(&view(
                vec![c("a", State::Terminated(term(3)), None, false)],
                Never
            )),
            "Failed"
        );
        assert_eq!(
            phase(&view(
                vec![c("a", State::Terminated(term(3)), None, false)],
                OnFailure
            )),
            "Running"
        );
        assert_eq!(
            phase(&view(
                vec![
                    c("a", State::Terminated(term(0)), None, false),
                    c("b", running(), None, true)
                ],
                Never
            )),
            "Running"
        );
        let mut v = view(vec![c("a", waiting("PodInitializing"), None, false)], Never);
        v.init_containers = vec![c("i", State::Terminated(term(1)), None, false)];
        assert_eq!(phase(&v), "Failed");
        v.restart_policy = Always;
        assert_eq!(phase(&v), "Pending");
    }

    #[test]
    fn ready_conditions_and_transition_times() {
        let v = view(
            vec![
                c("a", running(), None, true),
                c("b", running(), None, false),
            ],
            RestartPolicy::Always,
        );
        let t1 = Timestamp::from_second(1000).unwrap();
        let s = compute_status(&v, None, t1);
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        assert_eq!(s.pod_ip.as_deref(), Some("127.100.1.1"));
        assert!(!s.container_statuses.as_ref().unwrap()[1].ready);
        // Same state later keeps the transition time; a change takes the new time.
        let t2 = Timestamp::from_second(2000).unwrap();
        let s2 = compute_status(&v, Some(&s), t2);
        let r2 = s2
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(r2.last_transition_time, Some(Time(t1)));
        let all = view(
            vec![c("a", running(), None, true), c("b", running(), None, true)],
            RestartPolicy::Always,
        );
        let s3 = compute_status(&all, Some(&s2), t2);
        let r3 = s3
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (r3.status.as_str(), r3.last_transition_time.clone()),
            ("True", Some(Time(t2)))
        );
    }

    #[test]
    fn foreign_conditions_and_readiness_gates() {
        let mut v = view(vec![c("a", running(), None, true)], RestartPolicy::Always);
        v.readiness_gates = vec!["example.com/gate".into()];
        let prev = PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let s = compute_status(&v, Some(&prev), Timestamp::UNIX_EPOCH);
        let conds = s.conditions.unwrap();
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == "PodScheduled" && c.status == "True")
        );
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == "ContainersReady" && c.status == "True")
        );
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        );
        let mut prev2 = prev.clone();
        prev2.conditions.as_mut().unwrap().push(PodCondition {
            type_: "example.com/gate".into(),
            status: "True".into(),
            ..Default::default()
        });
        let s = compute_status(&v, Some(&prev2), Timestamp::UNIX_EPOCH);
        assert!(
            s.conditions
                .unwrap()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
    }

    #[test]
    fn restart_policy() {
        assert!(RestartPolicy::parse(None).restarts(0));
        assert!(!RestartPolicy::parse(Some("OnFailure")).restarts(0));
        assert!(RestartPolicy::parse(Some("OnFailure")).restarts(137));
        assert!(!RestartPolicy::parse(Some("Never")).restarts(1));
    }
}

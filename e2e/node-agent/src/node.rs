//! Node objects: registration, status heartbeats, leases in `kube-node-lease`, and the
//! NotReady / Down faults.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

/// Label with the id of the agent that runs a node (`b<block>-p<pid>-<n>`).
pub const AGENT_LABEL: &str = "node-agent.tikv.org/agent";
/// Zone label.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Host name label.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Node annotation that injects a fault: `NotReady`, `Down` or `Ready` (no fault).
pub const FAULT_ANNOTATION: &str = "node-agent.tikv.org/fault";
/// Namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration (kubelet's default).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Allocatable CPU of every node, in cores.
pub const NODE_CPU_CORES: u64 = 1000;
/// Allocatable memory of every node, in bytes (1 TiB).
pub const NODE_MEMORY_BYTES: u64 = 1 << 40;
/// Allocatable pods of every node.
pub const NODE_PODS: u64 = 1000;

/// A node's injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeFault {
    /// Healthy: heartbeats, Ready condition True, pods managed.
    #[default]
    None,
    /// The "kubelet" stops: no heartbeats or lease renewals, Ready condition False; its pods'
    /// Ready condition becomes False at once (what the controller manager's node lifecycle
    /// controller would do after its grace period), then their statuses are no longer updated
    /// and no pod on the node is started, restarted or deleted. The processes keep running.
    NotReady,
    /// As [`NodeFault::NotReady`], and every process of the node's pods is frozen (`SIGSTOP`),
    /// so peers see it as unreachable. Clearing the fault thaws them.
    Down,
}

impl NodeFault {
    /// Parses the [`FAULT_ANNOTATION`] value. Pure.
    pub fn parse(s: &str) -> Option<NodeFault> {
        match s.trim() {
            "" | "Ready" | "None" => Some(NodeFault::None),
            "NotReady" => Some(NodeFault::NotReady),
            "Down" => Some(NodeFault::Down),
            _ => None,
        }
    }
}

/// The Node object (metadata and spec) of node `name`. Pure.
pub fn node_object(name: &str, zone: &str, agent_id: &str) -> Node {
    let labels: BTreeMap<String, String> = [
        (HOSTNAME_LABEL, name),
        (ZONE_LABEL, zone),
        ("topology.kubernetes.io/region", "local"),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", std::env::consts::ARCH),
        (AGENT_LABEL, agent_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    }
}

fn resources() -> BTreeMap<String, Quantity> {
    [
        ("cpu", NODE_CPU_CORES.to_string()),
        ("memory", NODE_MEMORY_BYTES.to_string()),
        ("ephemeral-storage", NODE_MEMORY_BYTES.to_string()),
        ("pods", NODE_PODS.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect()
}

fn condition(
    previous: &[NodeCondition],
    now: Timestamp,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> NodeCondition {
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(last),
    }
}

/// The node's status for a heartbeat. Pure.
pub fn node_status(
    name: &str,
    ip: Ipv4Addr,
    fault: NodeFault,
    previous: &[NodeCondition],
    now: Timestamp,
) -> NodeStatus {
    let (ready, reason, message) = match fault {
        NodeFault::None => ("True", "KubeletReady", "node-agent is posting ready status"),
        NodeFault::NotReady => (
            "False",
            "NodeAgentFault",
            "node-agent fault injection: the node is NotReady",
        ),
        NodeFault::Down => (
            "False",
            "NodeAgentFault",
            "node-agent fault injection: the node is down",
        ),
    };
    NodeStatus {
        conditions: Some(vec![
            condition(previous, now, "Ready", ready, reason, message),
            condition(
                previous,
                now,
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "node-agent",
            ),
            condition(
                previous,
                now,
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "node-agent",
            ),
            condition(
                previous,
                now,
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "node-agent",
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        capacity: Some(resources()),
        allocatable: Some(resources()),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 0 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.into(),
            boot_id: String::new(),
            container_runtime_version: format!("node-agent://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: "v1.34.0-node-agent".into(),
            machine_id: String::new(),
            operating_system: "linux".into(),
            os_image: "node-agent (processes on the local machine)".into(),
            system_uuid: String::new(),
            swap: None,
        }),
        ..Default::default()
    }
}

/// The node's lease, owned by the Node (so it is garbage-collected with it). Pure.
pub fn lease_object(name: &str, node_uid: &str, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.into(),
                uid: node_uid.into(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_labels_and_status() {
        let n = node_object("n-1", "zone-b", "b100-p1");
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels[ZONE_LABEL], "zone-b");
        assert_eq!(labels[HOSTNAME_LABEL], "n-1");
        assert_eq!(labels[AGENT_LABEL], "b100-p1");
        let t1 = Timestamp::from_second(10).unwrap();
        let s = node_status(
            "n-1",
            Ipv4Addr::new(127, 100, 0, 1),
            NodeFault::None,
            &[],
            t1,
        );
        let ready = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );
        let t2 = Timestamp::from_second(20).unwrap();
        let s2 = node_status(
            "n-1",
            Ipv4Addr::new(127, 100, 0, 1),
            NodeFault::None,
            s.conditions.as_ref().unwrap(),
            t2,
        );
        let r2 = &s2.conditions.as_ref().unwrap()[0];
        assert_eq!(r2.last_transition_time, Some(Time(t1)));
        assert_eq!(r2.last_heartbeat_time, Some(Time(t2)));
        let s3 = node_status(
            "n-1",
            Ipv4Addr::new(127, 100, 0, 1),
            NodeFault::Down,
            s2.conditions.as_ref().unwrap(),
            t2,
        );
        let r3 = &s3.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (r3.status.as_str(), r3.last_transition_time.clone()),
            ("False", Some(Time(t2)))
        );
        assert_eq!(s.allocatable.unwrap()["pods"], Quantity("1000".into()));
    }

    #[test]
    fn fault_annotation_values() {
        assert_eq!(NodeFault::parse("Down"), Some(NodeFault::Down));
        assert_eq!(NodeFault::parse("NotReady"), Some(NodeFault::NotReady));
        assert_eq!(NodeFault::parse(""), Some(NodeFault::None));
        assert_eq!(NodeFault::parse("Ready"), Some(NodeFault::None));
        assert_eq!(NodeFault::parse("bogus"), None);
    }
}

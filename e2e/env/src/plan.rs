//! The environment's layout, decided once from its id and node count: names, addresses, CIDRs,
//! cgroup roots. Pure, so the whole address plan is visible (and tested) in one place.
//!
//! Every environment has network namespaces of its own, so every environment uses the same
//! addresses: they never meet.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The bridge in the control-plane namespace that joins every node ("the switch").
pub const BRIDGE: &str = "tkvbr0";
/// Address of the control-plane host on the bridge: the API server, CoreDNS.
pub const CONTROL_PLANE_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// Prefix length of the bridge network (10.200.0.0/24).
pub const FABRIC_PREFIX: u8 = 24;
/// ClusterIP range; kube-proxy in every namespace turns these into pod addresses.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// All pod addresses; each node gets a /24 of it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The cluster DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The label that names a worker's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Taint and label of the control-plane node (as kubeadm and kind set them).
pub const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";

/// What a node is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The control-plane host: also a node, tainted `NoSchedule`, so that its kube-proxy has a
    /// Node and programs there reach ClusterIPs. Runs only pods that tolerate the taint (the
    /// e2e scenarios put the operator there).
    ControlPlane,
    /// Runs the pods.
    Worker,
}

/// One node of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Node name (also its `kubernetes.io/hostname`).
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// `topology.kubernetes.io/zone` (workers).
    pub zone: Option<String>,
    /// Its network namespace (`/run/netns/NAME`).
    pub netns: String,
    /// Its address on the bridge (kubelet and kube-proxy listen here).
    pub ip: Ipv4Addr,
    /// The device that carries its traffic: the bridge on the control-plane host, `eth0` on a
    /// worker.
    pub uplink: String,
    /// On a worker: the other end of its `eth0`, a port of the bridge in the control-plane
    /// namespace (unplugging it cuts the node off).
    pub bridge_port: Option<String>,
    /// Its pods' addresses, a /24 of [`CLUSTER_CIDR`].
    pub pod_cidr: String,
    /// The pods' gateway (`cni0` in the node namespace).
    pub pod_gateway: Ipv4Addr,
    /// kubelet's `cgroupRoot`, the same path in every cgroup v1 hierarchy.
    pub cgroup_root: String,
}

/// The whole layout of one environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Short id that makes the names of this environment's namespaces and cgroups unique.
    pub id: String,
    /// `nodes[0]` is the control-plane host, then the workers.
    pub nodes: Vec<NodePlan>,
}

impl Plan {
    /// The layout for `workers` worker nodes (zones `zone-a`, `zone-b`, `zone-c`, then again
    /// from `zone-a`). `id` must be short (names of namespaces include it).
    pub fn new(id: &str, workers: usize) -> Plan {
        let node = |i: usize, name: String, role: Role| {
            let ip = Ipv4Addr::new(10, 200, 0, if i == 0 { 1 } else { 10 + i as u8 });
            let netns = if role == Role::ControlPlane {
                format!("tkv-{id}-cp")
            } else {
                format!("tkv-{id}-{name}")
            };
            NodePlan {
                zone: (role == Role::Worker)
                    .then(|| format!("zone-{}", char::from(b'a' + ((i - 1) % 3) as u8))),
                netns,
                ip,
                uplink: if role == Role::ControlPlane {
                    BRIDGE.into()
                } else {
                    "eth0".into()
                },
                bridge_port: (role == Role::Worker).then(|| format!("veth-{}", i - 1)),
                pod_cidr: format!("10.244.{i}.0/24"),
                pod_gateway: Ipv4Addr::new(10, 244, i as u8, 1),
                cgroup_root: format!("/tkv-{id}-{name}"),
                name,
                role,
            }
        };
        let mut nodes = vec![node(0, "control-plane".into(), Role::ControlPlane)];
        nodes.extend((1..=workers).map(|i| node(i, format!("node-{}", i - 1), Role::Worker)));
        Plan {
            id: id.to_string(),
            nodes,
        }
    }

    /// The control-plane host.
    pub fn control_plane(&self) -> &NodePlan {
        &self.nodes[0]
    }

    /// The worker nodes.
    pub fn workers(&self) -> &[NodePlan] {
        &self.nodes[1..]
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every network namespace of the environment.
    pub fn netns_names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.netns.as_str()).collect()
    }

    /// The routes a node needs beyond its own networks: every other node's pods through that
    /// node, and the ClusterIP range on its uplink (kube-proxy rewrites those packets before
    /// they leave; without any route a program could not even send them).
    pub fn routes(&self, node: &NodePlan) -> Vec<(String, Route)> {
        let mut routes: Vec<(String, Route)> = self
            .nodes
            .iter()
            .filter(|n| n.name != node.name)
            .map(|n| (n.pod_cidr.clone(), Route::Via(n.ip)))
            .collect();
        routes.push((SERVICE_CIDR.into(), Route::Dev(node.uplink.clone())));
        routes
    }
}

/// Where a route goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through this gateway.
    Via(Ipv4Addr),
    /// Out of this device.
    Dev(String),
}

/// An id for an environment kept in `dir`: eight hex digits of a hash of the path, so the same
/// directory always names the same namespaces (a later `tikv-env down` finds them) and two
/// checkouts never collide.
pub fn id_for(dir: &std::path::Path) -> String {
    // FNV-1a: tiny, stable across Rust versions (unlike `DefaultHasher`).
    let mut h: u32 = 0x811c_9dc5;
    for b in dir.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_workers_in_three_zones_behind_a_control_plane_host() {
        let p = Plan::new("ab12cd34", 3);
        assert_eq!(p.nodes.len(), 4);
        let cp = p.control_plane();
        assert_eq!(
            (cp.name.as_str(), cp.role, cp.ip, cp.netns.as_str()),
            (
                "control-plane",
                Role::ControlPlane,
                CONTROL_PLANE_IP,
                "tkv-ab12cd34-cp"
            )
        );
        assert_eq!(cp.uplink, BRIDGE);
        assert_eq!(cp.bridge_port, None);
        let zones: Vec<_> = p
            .workers()
            .iter()
            .map(|n| n.zone.clone().unwrap())
            .collect();
        assert_eq!(zones, ["zone-a", "zone-b", "zone-c"]);
        let w = &p.workers()[1];
        assert_eq!(w.name, "node-1");
        assert_eq!(w.netns, "tkv-ab12cd34-node-1");
        assert_eq!(w.ip, Ipv4Addr::new(10, 200, 0, 12));
        assert_eq!(w.pod_cidr, "10.244.2.0/24");
        assert_eq!(w.pod_gateway, Ipv4Addr::new(10, 244, 2, 1));
        assert_eq!(w.bridge_port.as_deref(), Some("veth-1"));
        assert_eq!(w.cgroup_root, "/tkv-ab12cd34-node-1");
        // Interface names must fit IFNAMSIZ (15 bytes).
        assert!(
            p.nodes
                .iter()
                .all(|n| n.uplink.len() <= 15
                    && n.bridge_port.as_ref().is_none_or(|b| b.len() <= 15))
        );
        assert_eq!(p.node("node-2").unwrap().zone.as_deref(), Some("zone-c"));
        assert_eq!(
            Plan::new("x", 4).workers()[3].zone.as_deref(),
            Some("zone-a")
        );
    }

    #[test]
    fn every_node_routes_the_others_pods_and_the_service_range() {
        let p = Plan::new("x", 3);
        let routes = p.routes(&p.workers()[0]);
        assert_eq!(
            routes,
            [
                ("10.244.0.0/24".to_string(), Route::Via(CONTROL_PLANE_IP)),
                (
                    "10.244.2.0/24".into(),
                    Route::Via(Ipv4Addr::new(10, 200, 0, 12))
                ),
                (
                    "10.244.3.0/24".into(),
                    Route::Via(Ipv4Addr::new(10, 200, 0, 13))
                ),
                (SERVICE_CIDR.into(), Route::Dev("eth0".into())),
            ]
        );
        let cp_routes = p.routes(p.control_plane());
        assert_eq!(cp_routes.len(), 4);
        assert_eq!(
            cp_routes[3],
            (SERVICE_CIDR.into(), Route::Dev(BRIDGE.into()))
        );
    }

    #[test]
    fn ids_are_stable_and_differ_by_directory() {
        let a = id_for(std::path::Path::new("/work/a/.local"));
        assert_eq!(a, id_for(std::path::Path::new("/work/a/.local")));
        assert_ne!(a, id_for(std::path::Path::new("/work/b/.local")));
        assert_eq!(a.len(), 8);
    }
}
